/*
 * generate.h - the "generate" request-plane protocol between frontends and
 * workers (dyn serve): pre-tokenized requests in, token ids out.
 *
 * Request (one JSON object, the REQUEST body):
 *   {"token_ids":[1,2,3],
 *    "sampling":{"temperature":T,"top_p":P,"top_k":K,"min_p":M,"seed":S,
 *                "presence_penalty":X,"frequency_penalty":Y,
 *                "repetition_penalty":R,"logit_bias":[[id,B],..]},
 *    "stop":{"max_tokens":N,"min_tokens":N,"ignore_eos":false,
 *            "stop_token_ids":[..]},
 *    "logprobs":K,            (K = top alternatives per token; absent = none)
 *    "prompt_logprobs":K}     (the prompt tokens' logprobs, K alternatives each;
 *                              absent = none)
 * Every sampling field is optional (absent = the model's default).
 *
 * Structured output adds one optional member, "grammar":
 *   {"grammar":{"kind":"json"|"json_object"|"regex"|"choice"|"grammar"|
 *               "tool_calls","spec":"TEXT","lenient":false,"done":N}}
 * the worker constrains the output to it (core/grammar/grammar.h; spec is
 * the schema / regex / choice array / GBNF text as a string) and ends the
 * request ("stop") when it is complete.  done (default 0): the last N
 * prompt tokens are output already generated under the grammar (a
 * migrated request), which the worker's matcher first takes.  A spec that
 * does not compile, or done tokens it refuses, is a 400.
 *
 * Disaggregated serving adds one optional request member, "disagg":
 *   {"disagg":{"prefill":true}}   to a prefill worker: process the prompt,
 *       keep its KV blocks for a decode worker to fetch, and answer with
 *       one DATA frame {"token_ids":[],"kv_source":{..},"finish_reason":
 *       "length","usage":{..}} (completion_tokens 0: the first token comes
 *       from the decode worker) then END;
 *   {"disagg":{"kv_source":{..}}} to a decode worker: fetch the prompt's
 *       KV it does not hold from there, then generate as usual (it
 *       prefills locally when the fetch fails: the stream is the same).
 * kv_source = {"worker":"16 hex digits","tcp":"HOST:PORT","ucx":true|false,
 *              "tls":true (only when the data port speaks only TLS),
 *              "handle":"16 hex digits","n_tokens":N,"block_size":B,
 *              "layout":"fingerprint"}: where the blocks are (the prefill
 * worker's instance id and data port, net/kv_xfer.h), which hold, how
 * many prompt tokens' K/V it has, and their layout.  A frontend passes it
 * on verbatim.  Any role serves a request without "disagg" in full.
 *
 * Response: DATA frames, each
 *   {"token_ids":[..],"logprobs":[{"logprob":L,"top":[[id,L],..]},..],
 *    "finish_reason":null|"stop"|"length"|"cancelled"|"error",
 *    "usage":{"prompt_tokens":P,"completion_tokens":C,
 *             "prompt_tokens_details":{"cached_tokens":K}}}
 * where logprobs (one per token id) appears only when asked for, and
 * finish_reason / usage only on the last DATA frame; then END.  Asked for
 * prompt logprobs, a worker sends them first in frames {"token_ids":[],
 * "prompt_logprobs":[{"logprob":L,"rank":R,"top":[[id,L],..]},..]}: one
 * entry per prompt token from the second on, in order (rank 1: the most
 * likely id).  K (prompt
 * tokens served from the worker's prefix cache) is present only from
 * engines with a prefix cache (builtin, mock).  Errors
 * are ERROR frames (400 bad request, 500 engine failure, 503 busy).  A
 * draining worker (dyn-serve(1) FAULT TOLERANCE) answers 503 with a
 * message that begins with "draining:" (net/frame.h FRAME_DRAINING) to
 * a request it did not start: send it as it is to another worker; and
 * ends a request still running at the end of its grace period with 503
 * "migrate: ..." (FRAME_MIGRATE) after the DATA frames it sent: those
 * tokens stand, and the rest is asked of another worker with the prompt
 * followed by them as the new prompt and max_tokens reduced by their count.
 * dyn-store(5) and dyn-serve(1) document the same.
 *
 * Pure functions; thread-safe; errors as 0 / -EINVAL with err_msg().
 */
#ifndef DYN_PROTO_GENERATE_H
#define DYN_PROTO_GENERATE_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define GEN_MAX_BIAS 300		/* logit_bias entries (OpenAI's limit) */

struct gen_sampling {
	double temperature, top_p, min_p;	/* NAN = default */
	double presence_penalty, frequency_penalty, repetition_penalty; /* NAN = default */
	long top_k;				/* -1 = default */
	int has_seed;
	uint64_t seed;
	int32_t *bias_ids;		/* logit_bias: bias[i] is added to the */
	double *bias;			/* logit of bias_ids[i] (n_bias of them) */
	size_t n_bias;
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
	int prompt_logprobs;		/* the same for the prompt's tokens */
	int prefill_only;		/* "disagg":{"prefill":true} */
	char *kv_source;		/* "disagg":{"kv_source":{..}}: the object's
					   JSON text, verbatim (NULL: none) */
	char *grammar_kind;		/* "grammar" member: NULL when none */
	char *grammar_spec;
	int grammar_lenient;
	long grammar_done;		/* "done": output tokens ending the prompt */
};

/* A kv_source object, parsed. */
struct gen_kv_source {
	uint64_t worker, handle;
	char tcp[128];			/* "HOST:PORT" */
	int ucx;
	int tls;			/* the lender speaks only TLS (absent: no) */
	long n_tokens, block_size;
	char layout[96];
};

/* Parse / write a kv_source object.  -EINVAL naming the bad member. */
int gen_kv_source_parse(const char *json, size_t len, struct gen_kv_source *out);
void gen_kv_source_encode(const struct gen_kv_source *s, struct strbuf *out);
/* The KV layout fingerprint of kv_source.layout and the instance records
 * (dyn-store(5)): "L<layers>-KV<kv heads>x<head dim>-B<block size>-<dtype>"
 * with the dtype's name in lower case, e.g. "L5-KV4x8-B16-f32".  Workers
 * whose fingerprints differ cannot share KV blocks; readers only compare
 * the strings. */
void gen_kv_layout_fingerprint(char *out, size_t cap, int n_layers, int n_kv_heads,
			       int head_dim, int block_size, const char *dtype);

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
	long rank;			/* prompt logprobs: 1 = most likely; 0 absent */
};

/* One decoded response frame. */
struct gen_output {
	int32_t *token_ids;
	size_t n;
	struct gen_logprob *lps;	/* n of them, or NULL */
	struct gen_logprob *plps;	/* prompt logprobs: the next n_plps */
	size_t n_plps;
	char finish_reason[16];		/* "" while not finished */
	long prompt_tokens, completion_tokens;	/* -1 when absent */
	long cached_tokens;			/* -1 when absent */
	char *kv_source;		/* a prefill worker's answer: the object's
					   JSON text, verbatim (NULL: none) */
};

void gen_output_release(struct gen_output *o);
int gen_output_parse(const char *json, size_t len, struct gen_output *out);

/* Append one response frame: ids[0..n) (lps may be NULL), finish_reason
 * NULL while running; usage written when finish_reason is set, with
 * prompt_tokens_details.cached_tokens when cached_tokens >= 0. */
void gen_output_encode(struct strbuf *out, const int32_t *ids, size_t n,
		       const struct gen_logprob *lps, const char *finish_reason,
		       long prompt_tokens, long completion_tokens, long cached_tokens);
/* A frame of prompt logprobs: those of the next n prompt tokens. */
void gen_output_encode_prompt(struct strbuf *out, const struct gen_logprob *lps, size_t n);
/* The same with a kv_source member (a prefill worker's answer). */
void gen_output_encode_kv(struct strbuf *out, const struct gen_kv_source *src,
			  long prompt_tokens, long cached_tokens);

#endif
