/*
 * oai.c - OpenAI's response shapes (oai.h).
 */
#include "core/frontend/oai.h"

#include "core/tok/utf8.h"
#include "net/http.h"

#include <math.h>
#include <string.h>

#define FINGERPRINT "dyn-" DYN_VERSION

/* ---- logprobs ------------------------------------------------------------- */

void oai_logprobs_init(struct oai_logprobs *lp, enum oai_api api, int enabled)
{
	lp->api = api;
	lp->enabled = enabled;
	lp->n = 0;
	sb_init(&lp->content, 0);
	sb_init(&lp->tokens, 0);
	sb_init(&lp->token_logprobs, 0);
	sb_init(&lp->top_logprobs, 0);
	sb_init(&lp->text_offset, 0);
}

void oai_logprobs_release(struct oai_logprobs *lp)
{
	sb_release(&lp->content);
	sb_release(&lp->tokens);
	sb_release(&lp->token_logprobs);
	sb_release(&lp->top_logprobs);
	sb_release(&lp->text_offset);
	lp->n = 0;
}

void oai_logprobs_reset(struct oai_logprobs *lp)
{
	sb_reset(&lp->content);
	sb_reset(&lp->tokens);
	sb_reset(&lp->token_logprobs);
	sb_reset(&lp->top_logprobs);
	sb_reset(&lp->text_offset);
	lp->n = 0;
}

size_t oai_utf8_chars(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += ((unsigned char)s[i] & 0xc0) != 0x80;
	return k;
}

/* A token's text as JSON: the text when its bytes are whole characters,
 * else "bytes:\xNN..." as OpenAI writes partial characters. */
static void token_str(struct strbuf *b, const char *s, size_t n)
{
	if (tok_utf8_is_valid(s, n)) {
		sb_add_json_str(b, s, n);
		return;
	}
	sb_adds(b, "\"bytes:");
	for (size_t i = 0; i < n; i++)
		sb_addf(b, "\\\\x%02x", (unsigned char)s[i]);
	sb_addch(b, '"');
}

static void bytes_list(struct strbuf *b, const char *s, size_t n)
{
	sb_adds(b, ",\"bytes\":[");
	for (size_t i = 0; i < n; i++)
		sb_addf(b, i ? ",%u" : "%u", (unsigned char)s[i]);
	sb_addch(b, ']');
}

void oai_top_add(enum oai_api api, struct strbuf *top, const char *s, size_t n, double logprob)
{
	if (top->len)
		sb_addch(top, ',');
	if (api == OAI_CHAT) {
		sb_adds(top, "{\"token\":");
		token_str(top, s, n);
		sb_addf(top, ",\"logprob\":%.9g", logprob);
		bytes_list(top, s, n);
		sb_addch(top, '}');
	} else {
		token_str(top, s, n);
		sb_addf(top, ":%.9g", logprob);
	}
}

void oai_logprobs_add(struct oai_logprobs *lp, const char *s, size_t n, double logprob,
		      const struct strbuf *top, size_t text_offset)
{
	if (lp->api == OAI_CHAT) {
		struct strbuf *c = &lp->content;
		if (lp->n)
			sb_addch(c, ',');
		sb_adds(c, "{\"token\":");
		token_str(c, s, n);
		sb_addf(c, ",\"logprob\":%.9g", logprob);
		bytes_list(c, s, n);
		sb_addf(c, ",\"top_logprobs\":[%s]}", top->buf);
	} else {
		if (lp->n) {
			sb_addch(&lp->tokens, ',');
			sb_addch(&lp->token_logprobs, ',');
			sb_addch(&lp->top_logprobs, ',');
			sb_addch(&lp->text_offset, ',');
		}
		token_str(&lp->tokens, s, n);
		if (isnan(logprob)) {	/* an echoed prompt's first token */
			sb_adds(&lp->token_logprobs, "null");
			sb_adds(&lp->top_logprobs, "null");
		} else {
			sb_addf(&lp->token_logprobs, "%.9g", logprob);
			sb_addf(&lp->top_logprobs, "{%s}", top->buf);
		}
		sb_addf(&lp->text_offset, "%zu", text_offset);
	}
	lp->n++;
}

void oai_logprobs_json(struct oai_logprobs *lp, struct strbuf *out)
{
	if (!lp->enabled) {
		sb_adds(out, "null");
		return;
	}
	if (lp->api == OAI_CHAT)
		sb_addf(out, "{\"content\":[%s]}", lp->content.buf);
	else
		sb_addf(out, "{\"tokens\":[%s],\"token_logprobs\":[%s],\"top_logprobs\":[%s],"
			"\"text_offset\":[%s]}", lp->tokens.buf, lp->token_logprobs.buf,
			lp->top_logprobs.buf, lp->text_offset.buf);
	oai_logprobs_reset(lp);
}

/* ---- streamed ----------------------------------------------------------------- */

/* "data: " and a chunk's members up to its choices list, opened. */
static void chunk_open(const struct oai_head *h, struct strbuf *b)
{
	sb_addf(b, "data: {\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", h->id,
		h->api == OAI_CHAT ? "chat.completion.chunk" : "text_completion", h->created);
	sb_add_json_str(b, h->model, strlen(h->model));
	sb_adds(b, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":[");
}

/* The choices list closed, and the chunk. */
static void chunk_close(const struct oai_head *h, struct strbuf *b)
{
	sb_addch(b, ']');
	if (h->include_usage)
		sb_adds(b, ",\"usage\":null");
	sb_adds(b, "}\n\n");
}

void oai_sse_role(const struct oai_head *h, int index, struct strbuf *out)
{
	chunk_open(h, out);
	sb_addf(out, "{\"index\":%d,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
		"\"logprobs\":null,\"finish_reason\":null}", index);
	chunk_close(h, out);
}

/* A chunk with choice index's text as member key of its delta (chat) or
 * its text (completions). */
static void sse_delta(const struct oai_head *h, int index, const char *key, const char *text,
		      size_t n, struct oai_logprobs *lp, struct strbuf *out)
{
	chunk_open(h, out);
	if (h->api == OAI_CHAT) {
		sb_addf(out, "{\"index\":%d,\"delta\":{", index);
		for (const char *k = key; *k; k += strlen(k) + 1) {	/* "a\0b\0" */
			sb_addf(out, "%s\"%s\":", k == key ? "" : ",", k);
			sb_add_json_str(out, text, n);
		}
		sb_adds(out, "},\"logprobs\":");
	} else {
		sb_addf(out, "{\"index\":%d,\"text\":", index);
		sb_add_json_str(out, text, n);
		sb_adds(out, ",\"logprobs\":");
	}
	oai_logprobs_json(lp, out);
	sb_adds(out, ",\"finish_reason\":null}");
	chunk_close(h, out);
}

void oai_sse_text(const struct oai_head *h, int index, const char *text, size_t n,
		  struct oai_logprobs *lp, struct strbuf *out)
{
	sse_delta(h, index, "content\0", text, n, lp, out);
}

void oai_sse_reasoning(const struct oai_head *h, int index, const char *text, size_t n,
		       struct oai_logprobs *lp, struct strbuf *out)
{
	sse_delta(h, index, "reasoning_content\0reasoning\0", text, n, lp, out);
}

void oai_sse_tool_call(const struct oai_head *h, int index, int call, const char *id,
		       const char *name, const char *args, struct strbuf *out)
{
	chunk_open(h, out);
	sb_addf(out, "{\"index\":%d,\"delta\":{\"tool_calls\":[{\"index\":%d,\"id\":", index,
		call);
	sb_add_json_str(out, id, strlen(id));
	sb_adds(out, ",\"type\":\"function\",\"function\":{\"name\":");
	sb_add_json_str(out, name, strlen(name));
	sb_adds(out, ",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}");
	chunk_close(h, out);
	chunk_open(h, out);
	sb_addf(out, "{\"index\":%d,\"delta\":{\"tool_calls\":[{\"index\":%d,\"function\":"
		"{\"arguments\":", index, call);
	sb_add_json_str(out, args, strlen(args));
	sb_adds(out, "}}]},\"logprobs\":null,\"finish_reason\":null}");
	chunk_close(h, out);
}

void oai_sse_finish(const struct oai_head *h, int index, const char *finish_reason,
		    struct oai_logprobs *lp, struct strbuf *out)
{
	chunk_open(h, out);
	if (h->api == OAI_CHAT)
		sb_addf(out, "{\"index\":%d,\"delta\":{},\"logprobs\":", index);
	else
		sb_addf(out, "{\"index\":%d,\"text\":\"\",\"logprobs\":", index);
	oai_logprobs_json(lp, out);
	sb_addf(out, ",\"finish_reason\":\"%s\"}", finish_reason);
	chunk_close(h, out);
}

static void usage_json(const struct oai_usage *u, struct strbuf *b)
{
	sb_addf(b, "\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
		"\"total_tokens\":%ld,\"prompt_tokens_details\":{\"cached_tokens\":%ld}}",
		u->prompt_tokens, u->completion_tokens, u->prompt_tokens + u->completion_tokens,
		u->cached_tokens);
}

void oai_sse_usage(const struct oai_head *h, const struct oai_usage *u, struct strbuf *out)
{
	chunk_open(h, out);
	sb_adds(out, "],");
	usage_json(u, out);
	sb_adds(out, "}\n\n");
}

void oai_sse_error(int status, const char *msg, const char *param, struct strbuf *out)
{
	sb_adds(out, "data: ");
	http_error_json(status, msg, param, NULL, out);
	sb_adds(out, "\n\n" OAI_SSE_DONE);
}

/* ---- whole ------------------------------------------------------------------- */

void oai_tool_call(const char *id, const char *name, const char *args, struct strbuf *calls)
{
	if (calls->len)
		sb_addch(calls, ',');
	sb_adds(calls, "{\"id\":");
	sb_add_json_str(calls, id, strlen(id));
	sb_adds(calls, ",\"type\":\"function\",\"function\":{\"name\":");
	sb_add_json_str(calls, name, strlen(name));
	sb_adds(calls, ",\"arguments\":");
	sb_add_json_str(calls, args, strlen(args));
	sb_adds(calls, "}}");
}

void oai_choice(enum oai_api api, int index, const char *text, size_t n,
		const struct oai_parsed *x, struct oai_logprobs *lp, const char *finish_reason,
		struct strbuf *choices)
{
	int calls = x && x->calls->len;
	if (choices->len)
		sb_addch(choices, ',');
	sb_addf(choices, "{\"index\":%d,", index);
	if (api == OAI_CHAT) {
		sb_adds(choices, "\"message\":{\"role\":\"assistant\",\"content\":");
		if (!n && x && (calls || x->reasoning->len))	/* all was calls or reasoning */
			sb_adds(choices, "null");
		else
			sb_add_json_str(choices, text, n);
		for (int k = 0; x && x->reasoning_on && k < 2; k++) {
			sb_adds(choices, k ? ",\"reasoning\":" : ",\"reasoning_content\":");
			if (x->reasoning->len)
				sb_add_json_str(choices, x->reasoning->buf, x->reasoning->len);
			else
				sb_adds(choices, "null");
		}
		if (calls)
			sb_addf(choices, ",\"tool_calls\":[%s]", x->calls->buf);
		sb_adds(choices, "},\"logprobs\":");
	} else {
		sb_adds(choices, "\"text\":");
		sb_add_json_str(choices, text, n);
		sb_adds(choices, ",\"logprobs\":");
	}
	oai_logprobs_json(lp, choices);
	sb_addf(choices, ",\"finish_reason\":\"%s\"}", finish_reason);
}

void oai_add_member(struct strbuf *obj, const char *name, const char *json, size_t n)
{
	if (!obj->len || obj->buf[obj->len - 1] != '}')
		return;
	sb_setlen(obj, obj->len - 1);
	sb_addf(obj, ",\"%s\":", name);
	sb_add(obj, json, n);
	sb_addch(obj, '}');
}

void oai_body(const struct oai_head *h, const struct strbuf *choices, const struct oai_usage *u,
	      struct strbuf *out)
{
	sb_addf(out, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", h->id,
		h->api == OAI_CHAT ? "chat.completion" : "text_completion", h->created);
	sb_add_json_str(out, h->model, strlen(h->model));
	sb_adds(out, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":[");
	sb_add(out, choices->buf, choices->len);
	sb_adds(out, "],");
	usage_json(u, out);
	sb_addch(out, '}');
}
