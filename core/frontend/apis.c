/*
 * apis.c - what the Responses and Messages APIs share (see apis.h): one
 * response's state, and the dispatch to their writers.  An open text
 * block (content or reasoning) is closed when text of the other kind or
 * a tool call comes, and at the end.
 */
#include "core/frontend/apis.h"
#include "core/frontend/oai.h"
#include "net/http.h"

#include <string.h>

void fe_alt_init(struct fe_alt *a, enum fe_api api, const char *id, const char *model,
		 const char *echo, long created, int stream)
{
	memset(a, 0, sizeof(*a));
	a->api = api;
	a->id = id;
	a->model = model;
	a->echo = echo ? echo : "";
	a->created = created;
	a->stream = stream;
	a->open = -1;
	sb_init(&a->cur, 0);
	sb_init(&a->items, 0);
}

void fe_alt_release(struct fe_alt *a)
{
	sb_release(&a->cur);
	sb_release(&a->items);
}

void fe_alt_begin(struct fe_alt *a, long input_tokens, struct strbuf *out)
{
	a->input_tokens = input_tokens;
	if (a->api == FE_API_MESSAGES)
		fe_msg_begin(a, out);
	else
		fe_resp_begin(a, out);
}

static void close_open(struct fe_alt *a, struct strbuf *out)
{
	if (a->open < 0)
		return;
	if (a->api == FE_API_MESSAGES)
		fe_msg_close(a, out);
	else
		fe_resp_close(a, out);
	a->open = -1;
	a->nitems++;
	sb_reset(&a->cur);
}

void fe_alt_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out)
{
	int kind = !!reasoning;
	if (!n)
		return;
	if (a->open != kind)
		close_open(a, out);
	if (a->api == FE_API_MESSAGES)
		fe_msg_text(a, reasoning, text, n, out);
	else
		fe_resp_text(a, reasoning, text, n, out);
	a->open = kind;
	sb_add(&a->cur, text, n);
}

void fe_alt_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		 struct strbuf *out)
{
	close_open(a, out);
	if (a->api == FE_API_MESSAGES)
		fe_msg_call(a, call_id, name, args, out);
	else
		fe_resp_call(a, call_id, name, args, out);
	a->nitems++;
}

void fe_alt_end(struct fe_alt *a, const char *finish, const char *stop_seq, long output_tokens,
		struct strbuf *out)
{
	close_open(a, out);
	if (a->api == FE_API_MESSAGES)
		fe_msg_end(a, finish, stop_seq, output_tokens, out);
	else
		fe_resp_end(a, finish, output_tokens, out);
}

void fe_alt_error(enum fe_api api, int status, const char *msg, const char *param, int stream,
		  struct strbuf *out)
{
	if (api == FE_API_MESSAGES)
		fe_msg_error(status, msg, stream, out);
	else if (stream)
		oai_sse_error(status, msg, param, out);
	else
		http_error_json(status, msg, param, NULL, out);
}

const char *fe_alt_call_prefix(enum fe_api api)
{
	return api == FE_API_MESSAGES ? "toolu_" : "call_";
}
