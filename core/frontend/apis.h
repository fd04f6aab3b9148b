/*
 * apis.h - the Responses API (POST /v1/responses, responses.c) and
 * Anthropic's Messages API (POST /v1/messages, messages.c) on top of the
 * chat-completions path: a request is translated into a chat completions
 * body (then parsed, rendered, routed and generated as one), and the
 * chat path's output (content, reasoning and tool calls, from
 * core/parse/parse.h) is written in the API's own shapes.
 *
 * Stateless: everything a response needs comes with its request.  No I/O,
 * no global state; a struct fe_alt belongs to one request.
 */
#ifndef DYN_FRONTEND_APIS_H
#define DYN_FRONTEND_APIS_H

#include "core/strbuf.h"

#include <stddef.h>

enum fe_api { FE_API_CHAT, FE_API_RESPONSES, FE_API_MESSAGES };

/*
 * Translate body into a chat completions body (*chat, malloc'd) and, for
 * the Responses API, the request fields its response objects repeat
 * (*echo: members of an object, each followed by a comma).  -EINVAL with
 * err_msg() and *param naming the offending field.
 */
int fe_responses_to_chat(const char *body, size_t len, char **chat, char **echo,
			 const char **param);
/* count: a /v1/messages/count_tokens body (no max_tokens) */
int fe_messages_to_chat(const char *body, size_t len, int count, char **chat,
			const char **param);

/* One response being written. */
struct fe_alt {
	enum fe_api api;
	const char *id, *model, *echo;
	long created;
	int stream;
	int open;			/* the open text block: -1 none, 0 content, 1 reasoning */
	int nitems;			/* output items / content blocks started */
	long seq;			/* Responses: the next sequence_number */
	long input_tokens;
	struct strbuf cur;		/* the open block's text */
	struct strbuf items;		/* the output items / content blocks ended */
};

void fe_alt_init(struct fe_alt *a, enum fe_api api, const char *id, const char *model,
		 const char *echo, long created, int stream);
void fe_alt_release(struct fe_alt *a);
/* Each appends to out the events it takes when streamed (nothing else). */
/* The stream begins (the prompt has input_tokens tokens). */
void fe_alt_begin(struct fe_alt *a, long input_tokens, struct strbuf *out);
/* Text: content, or reasoning (reasoning set). */
void fe_alt_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out);
/* A whole tool call (args: a JSON text). */
void fe_alt_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		 struct strbuf *out);
/* The end: finish is the chat finish_reason ("stop", "length",
 * "tool_calls"), stop_seq the stop string hit (or NULL).  Streamed: the
 * last events; else the whole body. */
void fe_alt_end(struct fe_alt *a, const char *finish, const char *stop_seq, long output_tokens,
		struct strbuf *out);

/* An error body of api (OpenAI's shape for the Responses API), or the
 * error event that ends a stream. */
void fe_alt_error(enum fe_api api, int status, const char *msg, const char *param, int stream,
		  struct strbuf *out);

/* The id prefix of a tool call ("call_" / "toolu_"). */
const char *fe_alt_call_prefix(enum fe_api api);

/* What apis.c dispatches to: the Responses API's writers (responses.c)
 * and the Messages API's (messages.c), as fe_alt_*. */
void fe_resp_begin(struct fe_alt *a, struct strbuf *out);
void fe_resp_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out);
void fe_resp_close(struct fe_alt *a, struct strbuf *out);
void fe_resp_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		  struct strbuf *out);
void fe_resp_end(struct fe_alt *a, const char *finish, long output_tokens, struct strbuf *out);
void fe_msg_begin(struct fe_alt *a, struct strbuf *out);
void fe_msg_text(struct fe_alt *a, int reasoning, const char *text, size_t n, struct strbuf *out);
void fe_msg_close(struct fe_alt *a, struct strbuf *out);
void fe_msg_call(struct fe_alt *a, const char *call_id, const char *name, const char *args,
		 struct strbuf *out);
void fe_msg_end(struct fe_alt *a, const char *finish, const char *stop_seq, long output_tokens,
		struct strbuf *out);
void fe_msg_error(int status, const char *msg, int stream, struct strbuf *out);

#endif
