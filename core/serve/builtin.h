/*
 * builtin.h - the builtin engine behind a worker's "generate" endpoint:
 * requests of the request-plane protocol (proto.h) become engine_submit()
 * calls, and the engine's outputs stream back as DATA frames (token ids,
 * logprobs, finish reason, usage with the prompt tokens served from the
 * prefix cache).  The mock engine is the same struct engine in mock mode
 * (engine.h), served by the same code.
 *
 * The engine produces outputs on its own step thread; they are copied
 * into a mutex-protected queue and an eventfd wakes the event loop, which
 * encodes and sends them.  A call cancelled by its client (CANCEL frame
 * or disconnect) is cancelled in the engine at once, so its KV blocks are
 * freed at the next engine step; its job lives on (detached from the
 * call) until the engine's final output for it arrives.
 *
 * Sampling fields absent from a request take the model's
 * generation_config.json defaults (sampling_defaults.h, fallback
 * temperature 1).
 *
 * Threading: builtin_engine_handle, _stats and _free belong to the
 * event_base's thread.  The engine (struct engine) stays owned by the
 * caller and must outlive the builtin_engine.
 */
#ifndef DYN_SERVE_BUILTIN_H
#define DYN_SERVE_BUILTIN_H

#include "core/serve/echo.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_call;
struct engine;
struct model;

struct builtin_engine;
struct kv_lend;
struct kv_fetch;

/* Disaggregated serving (dyn-serve(1)): a prefill worker answers
 * "disagg":{"prefill":true} with a kv_source naming its held blocks
 * (kv_lend.h); a decode worker fetches the blocks a kv_source names
 * (kv_fetch.h).  Others refuse the first and ignore the second. */
struct builtin_disagg {
	struct kv_lend *lend;		/* prefill role, else NULL */
	struct kv_fetch *fetch;		/* decode role, else NULL */
	uint64_t instance_id;		/* kv_source.worker */
	const char *layout;		/* kv_source.layout (copied) */
	int block_size;
};

int builtin_engine_new(struct event_base *base, const struct model *m, struct engine *e,
		       struct builtin_engine **out);
/* Call after the rpc server was freed and after engine_free(): drains the
 * engine's last outputs and frees the jobs. */
void builtin_engine_free(struct builtin_engine *b);
/* rpc_handler_fn: arg is the builtin_engine. */
void builtin_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			   unsigned flags, void *arg);
/* Take the disaggregated roles' requests (before any request arrives). */
int builtin_engine_disagg(struct builtin_engine *b, const struct builtin_disagg *d);
void builtin_engine_stats(const struct builtin_engine *b, struct worker_stats *out);

#endif
