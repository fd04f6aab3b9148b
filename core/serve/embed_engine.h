/*
 * embed_engine.h - the embed engine: a worker handler that answers embed
 * requests (core/proto/embed.h) with an embedding model (core/embed/embed.h).
 *
 * A request is computed whole, on the event loop's thread, when it
 * arrives: requests are short (at most EMBED_MAX_INPUTS inputs of the
 * model's few hundred tokens) and one batch at a time is what the CPU
 * can do anyway.
 *
 * Threading: the engine and its calls belong to the event_base's thread.
 */
#ifndef DYN_SERVE_EMBED_ENGINE_H
#define DYN_SERVE_EMBED_ENGINE_H

#include "core/serve/echo.h"	/* struct worker_stats */

struct rpc_call;
struct embed_engine;

/* dir: the model folder; threads: CPU threads (0: one per physical core). */
int embed_engine_new(const char *dir, int threads, struct embed_engine **out);
void embed_engine_free(struct embed_engine *e);
/* rpc_handler_fn: arg is the engine. */
void embed_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			 unsigned flags, void *arg);
void embed_engine_stats(const struct embed_engine *e, struct worker_stats *out);
/* What its card advertises. */
int embed_engine_dim(const struct embed_engine *e);
int embed_engine_truncatable(const struct embed_engine *e);
int embed_engine_max_tokens(const struct embed_engine *e);

#endif
