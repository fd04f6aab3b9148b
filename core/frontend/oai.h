/*
 * oai.h - OpenAI's response shapes for /v1/chat/completions and
 * /v1/completions: whole JSON bodies, Server-Sent Event chunks, the
 * logprobs objects, usage, and error bodies (dyn-frontend(1); field names
 * and nesting as in OpenAI's API reference).
 *
 * Fed by text (already detokenized and cut at stop strings) and by
 * logprob entries, each with the exact bytes it adds to the text
 * (core/frontend/logprobs.h lines them up); writes JSON into the caller's
 * strbufs.  No I/O, no global state; a struct oai_logprobs belongs to one
 * choice being built (not thread-safe).
 */
#ifndef DYN_FRONTEND_OAI_H
#define DYN_FRONTEND_OAI_H

#include "core/strbuf.h"

#include <stddef.h>

enum oai_api { OAI_CHAT, OAI_COMPLETION };

/* What every body and chunk of one response repeats. */
struct oai_head {
	enum oai_api api;
	const char *id;			/* "chatcmpl-..." / "cmpl-..." */
	long created;			/* Unix seconds */
	const char *model;
	int include_usage;		/* streamed: every chunk carries "usage":null */
};

struct oai_usage {
	long prompt_tokens, completion_tokens;
	long cached_tokens;		/* prompt_tokens_details.cached_tokens */
};

/*
 * The logprob entries of one choice gathered since they were last
 * written.  Chat writes {"content":[{token, logprob, bytes, top_logprobs}]},
 * completions four parallel lists {tokens, token_logprobs, top_logprobs,
 * text_offset}.
 */
struct oai_logprobs {
	enum oai_api api;
	int enabled;			/* requested: else the object is null */
	size_t n;			/* entries gathered */
	struct strbuf content;		/* chat */
	struct strbuf tokens, token_logprobs, top_logprobs, text_offset;	/* completions */
};

void oai_logprobs_init(struct oai_logprobs *lp, enum oai_api api, int enabled);
void oai_logprobs_release(struct oai_logprobs *lp);
/* Forget the entries gathered (a new choice starts). */
void oai_logprobs_reset(struct oai_logprobs *lp);

/* Append one alternative (its text s[0..n), its logprob) to top, a list
 * being built for one entry: chat {"token","logprob","bytes"} objects,
 * completions "text":logprob members. */
void oai_top_add(enum oai_api api, struct strbuf *top, const char *s, size_t n, double logprob);

/* Append one entry: its token's text s[0..n) (as OpenAI writes partial
 * characters, "bytes:\xNN.." when the bytes are not whole UTF-8), its
 * logprob, its alternatives (top, from oai_top_add) and, for completions,
 * text_offset: the characters (Python string indexes) of the choice's
 * text before it. */
void oai_logprobs_add(struct oai_logprobs *lp, const char *s, size_t n, double logprob,
		      const struct strbuf *top, size_t text_offset);

/* Write the logprobs object of the entries gathered (null when not
 * enabled), and forget them. */
void oai_logprobs_json(struct oai_logprobs *lp, struct strbuf *out);

/* The characters (code points) of UTF-8 text s[0..n). */
size_t oai_utf8_chars(const char *s, size_t n);

/* ---- streamed responses: each call appends one "data: ...\n\n" event ---- */

/* Chat's first chunk of choice index: the assistant role, empty content. */
void oai_sse_role(const struct oai_head *h, int index, struct strbuf *out);
/* Text of choice index, and the logprob entries gathered (then forgotten). */
void oai_sse_text(const struct oai_head *h, int index, const char *text, size_t n,
		  struct oai_logprobs *lp, struct strbuf *out);
/* Chat: reasoning text of choice index (as "reasoning_content" and its
 * alias "reasoning"), and the logprob entries gathered. */
void oai_sse_reasoning(const struct oai_head *h, int index, const char *text, size_t n,
		       struct oai_logprobs *lp, struct strbuf *out);
/* Chat: tool call number call of choice index, as OpenAI streams one: a
 * chunk with its index, id, type and name (arguments ""), then one with
 * its arguments (a JSON text). */
void oai_sse_tool_call(const struct oai_head *h, int index, int call, const char *id,
		       const char *name, const char *args, struct strbuf *out);
/* The end of choice index: its finish_reason and the last entries. */
void oai_sse_finish(const struct oai_head *h, int index, const char *finish_reason,
		    struct oai_logprobs *lp, struct strbuf *out);
/* The usage chunk (no choices) that include_usage asks for last. */
void oai_sse_usage(const struct oai_head *h, const struct oai_usage *u, struct strbuf *out);
/* An error after the stream began: the error object (param names the
 * field it concerns, or NULL) and the end of the stream. */
void oai_sse_error(int status, const char *msg, const char *param, struct strbuf *out);
#define OAI_SSE_DONE "data: [DONE]\n\n"

/* ---- whole responses ---- */

/* What a chat message carries besides its text when its output was
 * parsed (core/parse/parse.h): its reasoning ("reasoning_content" and the
 * alias "reasoning", null when none came) when a reasoning parser ran, and
 * its tool calls (calls: the items of the list, comma-separated).  A
 * message of calls or reasoning only has content null. */
struct oai_parsed {
	int reasoning_on;
	const struct strbuf *reasoning;
	const struct strbuf *calls;
};

/* Append one tool call to calls (the items of a tool_calls list). */
void oai_tool_call(const char *id, const char *name, const char *args, struct strbuf *calls);

/* Append choice index (text, logprobs, finish_reason; chat: x, or NULL
 * when the output was not parsed) to choices, a list being built
 * (comma-separated). */
void oai_choice(enum oai_api api, int index, const char *text, size_t n,
		const struct oai_parsed *x, struct oai_logprobs *lp, const char *finish_reason,
		struct strbuf *choices);
/* Add member name (its JSON value json[0..n)) to the object that ends obj. */
void oai_add_member(struct strbuf *obj, const char *name, const char *json, size_t n);
/* The response body around the choices. */
void oai_body(const struct oai_head *h, const struct strbuf *choices, const struct oai_usage *u,
	      struct strbuf *out);

#endif
