/*
 * engine.h - the inference engine: one model, one backend, a paged KV
 * cache with prefix caching, a continuous-batching scheduler and a
 * sampler, driven by a step loop on the engine's own thread.  Used by
 * `dyn run` and by the worker (`dyn serve`).
 *
 *   engine_new(model, opts)      start the step thread
 *   engine_submit(request)       prompt token ids + sampling options,
 *                                returns a request id
 *   ... on_output(arg, out)      one call per generated token, the last
 *                                with finish != ENGINE_FINISH_NONE
 *   engine_cancel(id)            the request ends (ENGINE_FINISH_ABORT) and
 *                                its KV blocks are freed at the next step
 *   engine_stats()               running, waiting, KV blocks, cache hits
 *   engine_free()                aborts what is left, joins the thread
 *
 * KV blocks as a movable resource (for disaggregated prefill/decode, KV
 * tiers):
 *   - a request with hold_kv keeps its blocks when it ends (stop or
 *     length): engine_kv_blocks() lists them, engine_kv_read() copies
 *     their data out, engine_kv_release() gives them back;
 *   - a request with kv_pending_tokens = N waits, when its turn comes,
 *     with blocks for its first N prompt tokens (on_kv_blocks names them:
 *     the leading ones reused from the prefix cache hold their K/V
 *     already, the rest are new) until engine_kv_filled() says how many of
 *     those tokens' K/V were written (engine_kv_write(), or straight into
 *     engine_kv_segments()); it then computes only the rest of its prompt.
 *     A cancel, or kv_wait_ms without the fill, ends it (ENGINE_FINISH_ABORT
 *     / ENGINE_FINISH_ERROR) and frees its blocks;
 *   - engine_opts.on_evict sees each cached block's data (and sequence
 *     hash) just before the pool reuses it.
 * A block's data is the backend's host image (struct kv_layout, core/kv/block_manager.h).
 *
 * Thread-safety: engine_submit, engine_cancel and engine_stats may be
 * called from any thread, concurrently (also from inside on_output).  The
 * engine_kv_* calls may too; they run on the step thread between steps
 * (the caller waits for that; from inside a callback they run at once).
 * on_output runs on the engine's step thread, in token order per request;
 * it must return quickly (copy what it needs, signal another thread) and
 * must not call engine_free.  After the final output of a request its
 * callback is never called again for it.  The struct engine_output and the
 * arrays it points to are valid only during the call.
 *
 * Mock mode (engine_opts.mock): no backend, no forward pass, no weights
 * (a model loaded with MODEL_LOAD_META will do): the scheduler, the KV
 * block manager with its prefix cache and events, preemption and the
 * request lifecycle are the real ones, but each step sleeps for the time
 * core/engine/mock.h predicts for its batch and every sequence gets a
 * pseudo-random token (deterministic per request seed, never EOS or a
 * stop id).  The sleep holds no lock: submit, cancel and stats stay
 * responsive, and engine_free() interrupts it.
 *
 * Backend: engine_opts.backend names it in the registry (backend.h;
 * "cpu" by default).  The backend decides which weight dtypes it computes
 * with: load the model with engine_weight_load_flags() and engine_new()
 * refuses weights of a dtype the backend does not take.
 *
 * The model must outlive the engine; the engine never modifies it.
 * Errors: 0 / negative errno with err_msg() set on the calling thread.
 */
#ifndef DYN_ENGINE_H
#define DYN_ENGINE_H

#include "core/kv/block_manager.h"
#include "core/kv/tiers.h"
#include "core/engine/mock.h"
#include "core/engine/sampler.h"
#include "core/model/model.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct engine;

struct engine_opts {
	const char *backend;		/* registry name (backend.h); NULL: "cpu" */
	int threads;			/* CPU threads; <= 0: physical cores */
	int block_size;			/* tokens per KV block (default 16) */
	int kv_cache_tokens;		/* KV pool size in tokens; 0: from the budget */
	enum dtype kv_dtype;		/* KV pool element type (F32, BF16, F16);
					   DTYPE_UNKNOWN: engine_kv_dtype_auto() */
	uint64_t kv_cache_bytes;	/* KV pool budget when kv_cache_tokens is 0
					   (0: enough for max_num_seqs full contexts,
					   at most 2 GiB) */
	int max_num_seqs;		/* sequences per step (default 16) */
	int max_num_batched_tokens;	/* tokens per step (default 512) */
	int max_model_len;		/* context limit; 0: the model's */
	int no_prefix_caching;		/* 1: never reuse cached blocks */
	double watermark;		/* admit new sequences only while this
					   fraction of the KV pool stays free (0) */
	int mock;			/* 1: mock mode (see above) */
	struct mock_timing mock_timing;	/* mock mode: the step-time model */
	struct kv_events events;	/* KV event hooks, called on the step thread */
	/* Test hook: the logits of every sampled position (before sampling),
	 * called on the step thread. */
	void (*on_logits)(void *arg, uint64_t id, int position, const float *logits, int vocab);
	void *logits_arg;
	/* Called on the step thread after every step (the stats may have
	 * changed); must return quickly. */
	void (*on_step)(void *arg);
	void *step_arg;
	/* A cached block is about to be evicted: its sequence hash and data
	 * (kv_layout.block_bytes; NULL and 0 in mock mode), on the step thread.
	 * NULL: evictions drop the data. */
	void (*on_evict)(void *arg, uint64_t seq_hash, const void *data, size_t bytes);
	void *evict_arg;
	/* Zeroed host memory for the KV pool's arrays (the data plane's:
	 * kvx_pool_alloc), freed with kv_free; NULL back, or no kv_alloc:
	 * the backend allocates them itself. */
	/* Lower KV tiers (tiers.h; all zero: none): blocks evicted from the
	 * pool go there, and a prompt whose prefix a tier holds waits, as a
	 * pending request, for those blocks to be copied back.  They are
	 * keyed by the model (its folder's real path, checkpoint, hub commit,
	 * load format, weight dtypes) and the pool's layout. */
	struct kv_tiers_opts tiers;
	void *(*kv_alloc)(void *arg, size_t bytes);
	void (*kv_free)(void *arg, void *p);
	void *kv_arg;
};

/* The defaults above. */
void engine_opts_init(struct engine_opts *o);
/* Mock mode with the mock engine's defaults (mock.h): block size 64,
 * 16,384 blocks, 256 sequences, 8,192 tokens per step, watermark 0.01,
 * speed-up 1. */
void engine_opts_init_mock(struct engine_opts *o);

enum engine_finish {
	ENGINE_FINISH_NONE = 0,
	ENGINE_FINISH_STOP,	/* EOS or a stop token id (the token is reported) */
	ENGINE_FINISH_LENGTH,	/* max_tokens or the context limit */
	ENGINE_FINISH_ABORT,	/* cancelled, or the engine shut down */
	ENGINE_FINISH_ERROR,	/* the step failed; see error */
};
const char *engine_finish_name(enum engine_finish f);	/* "stop", "length" ... */

struct engine_output {
	uint64_t id;
	int32_t token;			/* -1 when the output carries no token */
	float logprob;			/* when logprobs >= 0 */
	int n_top;
	const int32_t *top_ids;
	const float *top_logprobs;
	enum engine_finish finish;
	int n_prompt;			/* prompt tokens */
	int n_generated;		/* output tokens so far, this one included */
	/* prompt logprobs (sampling_params.prompt_logprobs): > 0 when this
	 * output (token -1) is the logprob of prompt token prompt_pos, with
	 * its rank (1: the most likely) and the most likely in top_ids */
	int prompt_pos, rank;
	int n_cached;			/* prompt tokens served from the prefix cache
					   (not those whose K/V were filled in) */
	const char *error;		/* ENGINE_FINISH_ERROR: why */
};

typedef void (*engine_output_fn)(void *arg, const struct engine_output *out);

struct engine_request {
	const int32_t *prompt;		/* copied by engine_submit */
	int n_prompt;
	struct sampling_params params;
	engine_output_fn on_output;
	void *arg;
	/* KV blocks (see the top of this file; 0 / NULL: off) */
	int hold_kv;			/* keep the blocks after a stop or length end */
	int kv_pending_tokens;		/* 1 .. n_prompt - 1: their K/V come from elsewhere */
	int kv_wait_ms;			/* for them (<= 0: 30,000) */
	/* The blocks for the pending tokens, on the step thread (arg as above);
	 * the first n_reused came from the prefix cache with their K/V. */
	void (*on_kv_blocks)(void *arg, uint64_t id, const int32_t *blocks, int n_blocks,
			     int n_reused);
	/* Structured output (core/grammar/grammar.h): a matcher over this
	 * model's vocabulary, taken over by a successful engine_submit.  Each
	 * step samples only among the tokens it allows (EOS only where the
	 * grammar accepts; mock mode draws uniformly among them) and the
	 * request stops once the grammar is complete.  A mask met for the
	 * first time (a walk of the vocabulary, up to tens of ms on a large
	 * one) is prepared on the engine's grammar thread while the
	 * request waits and the others run on. */
	struct gmatch *grammar;
};

struct engine_stats {
	int running, waiting;
	int kv_blocks_used, kv_blocks_total, kv_blocks_cached;
	int kv_blocks_decoding;		/* held by sequences past their prompt */
	int block_size;
	uint64_t cache_hit_tokens;	/* prompt tokens taken from the prefix
					   cache, all admissions */
	uint64_t prompt_tokens, generated_tokens;
	uint64_t preemptions;
	uint64_t steps;
	int pending_kv;			/* requests waiting for their K/V */
	int held_kv;			/* ended requests holding their blocks */
	long queued_prefill_tokens;	/* prompt tokens to compute: of queued
					   requests (less their cached prefix),
					   and the rest of running prefills */
};

/* The model_load() flags the backend of o needs (MODEL_LOAD_F32 when its
 * kernels do not take every weight dtype natively); 0 or a negative code
 * for an unknown backend. */
int engine_weight_load_flags(const struct engine_opts *o, unsigned *flags);

/* The KV cache dtypes by name ("auto", "f32", "bf16", "f16"; for option
 * tables) and a name's dtype (auto: DTYPE_UNKNOWN); -EINVAL with
 * err_msg() for another name. */
extern const char *const engine_kv_dtype_names[];
int engine_kv_dtype_parse(const char *name, enum dtype *out);
/* What auto stores: F16 (as llama.cpp's default cache): half of F32's
 * bytes, like BF16, with 3 more fraction bits (logprobs ~8x closer to
 * F32 KV's than BF16's on the tests' models: test/integration/kv_dtype.py);
 * the CPU backend saturates K and V at F16's +-65504 as it stores them. */
enum dtype engine_kv_dtype_auto(void);

int engine_new(const struct model *m, const struct engine_opts *o, struct engine **out);
void engine_free(struct engine *e);

/* Queue a request; *id receives its id.  Errors return -E2BIG for a prompt
 * that fills the context, -EINVAL for others (an empty prompt, bad
 * sampling options), and no callback is made. */
int engine_submit(struct engine *e, const struct engine_request *r, uint64_t *id);
/* Cancel a request; -ENOENT if it is unknown or already finished. */
int engine_cancel(struct engine *e, uint64_t id);
void engine_stats(struct engine *e, struct engine_stats *st);

/* The blocks of request id, held (hold_kv, ended) or pending (waiting for
 * its K/V): up to cap ids into blocks; returns their number, with
 * *n_tokens (if not NULL) the tokens whose K/V they hold; -ENOENT. */
int engine_kv_blocks(struct engine *e, uint64_t id, int32_t *blocks, int cap, int *n_tokens);
/* A pending request's first n_tokens have their K/V in its blocks (at
 * most its kv_pending_tokens; fewer than its reused blocks hold count as
 * those): it goes on and computes the rest of its prompt itself (0: all of
 * it but the reused blocks, the fallback).  -ENOENT if it is not pending,
 * -EINVAL for n_tokens < 0 or > kv_pending_tokens (it stays pending). */
int engine_kv_filled(struct engine *e, uint64_t id, int n_tokens);
/* Give back the blocks an ended hold_kv request holds (-ENOENT). */
int engine_kv_release(struct engine *e, uint64_t id);
/* The pool's layout; -ENOTSUP in mock mode (no data). */
int engine_kv_layout(const struct engine *e, struct kv_layout *out);
/* One block's data to / from a host buffer of kv_layout.block_bytes
 * (-EINVAL for a block outside the pool, -ENOTSUP in mock mode).  Meant
 * for blocks held or pending; any other block may change at any step. */
int engine_kv_read(struct engine *e, int32_t block, void *host);
int engine_kv_write(struct engine *e, int32_t block, const void *host);
/* The pool memory of one block as segments in host-image order (per
 * layer its K rows then its V rows: 2 x n_layers of layer_bytes), for
 * transfers without a copy: the first cap into iov, their number returned;
 * -ENOTSUP where the pool is not host memory (or in mock mode), -EINVAL
 * for a block outside the pool.  The same rules as engine_kv_read/write
 * apply to when the memory may be touched. */
int engine_kv_segments(const struct engine *e, int32_t block, struct iovec *iov, int cap);
/* The pool's memory regions (for registering with a network library),
 * every block's segments inside them: the first cap into regions, their
 * number returned, or -ENOTSUP. */
int engine_kv_regions(const struct engine *e, struct iovec *regions, int cap);

/* The KV tiers' counters (-ENOENT without tiers) and description (NULL). */
int engine_kv_tiers_stats(struct engine *e, struct kv_tiers_stats *out);
const char *engine_kv_tiers_describe(const struct engine *e);

/* What the engine computes with ("cpu, 2 threads, avx2+fma") and its limits. */
const char *engine_describe(const struct engine *e);
int engine_max_model_len(const struct engine *e);

#endif
