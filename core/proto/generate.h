/*
 * generate.h - the "generate" request-plane protocol between frontends and
 * workers (dyn serve): pre-tokenized requests in, token ids out.
 *
 * Request (one JSON object, the REQUEST body):
 *   {"token_ids":[1,2,3],
 *    "sampling":{"temperature":T,"top_p":P,"top_k":K,"min_p":M,"seed":S,
 *                "presence_penalty":X,"frequency_penalty":Y,
 *                "repetition_penalty":R},
 *    "stop":{"max_tokens":N,"min_tokens":N,"ignore_eos":false,
 *            "stop_token_ids":[..]},
 *    "logprobs":K}            (K = top alternatives per token; absent = none)
 * Every sampling field is optional (absent = the model's default).
 *
 * Response: DATA frames, each
 *   {"token_ids":[..],"logprobs":[{"logprob":L,"top":[[id,L],..]},..],
 *    "finish_reason":null|"stop"|"length"|"cancelled"|"error",
 *    "usage":{"prompt_tokens":P,"completion_tokens":C,
 *             "prompt_tokens_details":{"cached_tokens":K}}}
 * where logprobs (one per token id) appears only when asked for, and
 * finish_reason / usage only on the last DATA frame; then END.  K (prompt
 * tokens served from the worker's prefix cache) is present only from
 * engines with a prefix cache (builtin, mock).  Errors
 * are ERROR frames (400 bad request, 500 engine failure, 503 busy).
 * dyn-store(5) and dyn-serve(1) document the same.
 *
 * Pure functions; thread-safe; errors as 0 / -EINVAL with err_msg().
 */
#ifndef DYN_PROTO_GENERATE_H
#define DYN_PROTO_GENERATE_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

struct gen_sampling {
	double temperature, top_p, min_p;	/* NAN = default */
	double presence_penalty, frequency_penalty, repetition_penalty; /* NAN = default */
	long top_k;				/* -1 = default */
	int has_seed;
	uint64_t seed;
};

struct gen_request {
	int32_t *token_ids;
	size_t n_tokens;
	struct gen_sampling s;
	long max_tokens;		/* -1 = up to the context length */
	long min_tokens;
	int ignore_eos;
	int32_t *stop_token_ids;
	size_t n_stop_ids;
	int logprobs;			/* -1 none, else number of top alternatives */
};

void gen_request_init(struct gen_request *r);
void gen_request_release(struct gen_request *r);
/* Append r as JSON. */
void gen_request_encode(const struct gen_request *r, struct strbuf *out);
/* Parse a request body.  -EINVAL with a message naming the field. */
int gen_request_parse(const char *json, size_t len, struct gen_request *out);

struct gen_logprob {
	double logprob;
	int32_t top_ids[20];
	double top_lps[20];
	int ntop;
};

/* One decoded response frame. */
struct gen_output {
	int32_t *token_ids;
	size_t n;
	struct gen_logprob *lps;	/* n of them, or NULL */
	char finish_reason[16];		/* "" while not finished */
	long prompt_tokens, completion_tokens;	/* -1 when absent */
	long cached_tokens;			/* -1 when absent */
};

void gen_output_release(struct gen_output *o);
int gen_output_parse(const char *json, size_t len, struct gen_output *out);

/* Append one response frame: ids[0..n) (lps may be NULL), finish_reason
 * NULL while running; usage written when finish_reason is set, with
 * prompt_tokens_details.cached_tokens when cached_tokens >= 0. */
void gen_output_encode(struct strbuf *out, const int32_t *ids, size_t n,
		       const struct gen_logprob *lps, const char *finish_reason,
		       long prompt_tokens, long completion_tokens, long cached_tokens);

#endif
