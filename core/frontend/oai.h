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

/* Chat's first chunk: the assistant role, empty content. */
void oai_sse_role(const struct oai_head *h, struct strbuf *out);
/* Text of choice index, and the logprob entries gathered (then forgotten). */
void oai_sse_text(const struct oai_head *h, int index, const char *text, size_t n,
		  struct oai_logprobs *lp, struct strbuf *out);
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

/* Append choice index (text, logprobs, finish_reason) to choices, a list
 * being built (comma-separated). */
void oai_choice(enum oai_api api, int index, const char *text, size_t n,
		struct oai_logprobs *lp, const char *finish_reason, struct strbuf *choices);
/*
 * tool_choice required / named (dyn-frontend(1) STRUCTURED OUTPUT): text
 * made of hermes-style calls, "<tool_call>\n" {"name":..,"arguments":{..}}
 * "\n</tool_call>" joined by "\n", becomes the list
 * [{"id":"call_ID_K","type":"function","function":{"name":..,
 * "arguments":"JSON text"}}] (with "index":K first when with_index, for
 * stream deltas) in out.  Returns the number of calls, or -1 (out
 * untouched) when text is not such calls.
 */
int oai_tool_calls(const char *text, size_t n, const char *id, int with_index,
		   struct strbuf *out);
/* A chat choice answering calls (from oai_tool_calls): content null,
 * finish_reason "tool_calls". */
void oai_choice_tool_calls(int index, const struct strbuf *calls, struct oai_logprobs *lp,
			   struct strbuf *choices);
/* The streamed delta carrying calls (then oai_sse_finish "tool_calls"). */
void oai_sse_tool_calls(const struct oai_head *h, int index, const struct strbuf *calls,
			struct oai_logprobs *lp, struct strbuf *out);
/* The response body around the choices. */
void oai_body(const struct oai_head *h, const struct strbuf *choices, const struct oai_usage *u,
	      struct strbuf *out);

#endif
