/*
 * embed_engine.h - the embed engine: a worker handler that answers embed
 * requests (core/proto/embed.h) with an embedding model (core/embed/embed.h).
 *
 * The encoder runs on a thread of its own (core/offload.h), one batch at
 * a time, so the event loop keeps answering health checks, other calls,
 * lease renewals and drain while it computes.  A batch is inputs of the
 * waiting requests, taken in turn, at most max_seqs inputs and
 * max_tokens tokens (one input at least); a request with inputs left
 * waits again behind those that came after it, so a large request
 * shares the encoder with small ones rather than holding it.  A request
 * is answered once all its inputs are computed.  A cancelled request's
 * inputs not yet in a batch are never computed, and the running batch's
 * vectors for it are dropped.
 *
 * Threading: the engine and its calls belong to the event_base's thread.
 */
#ifndef DYN_SERVE_EMBED_ENGINE_H
#define DYN_SERVE_EMBED_ENGINE_H

#include "core/serve/echo.h"	/* struct worker_stats */

struct event_base;
struct rpc_call;
struct embed_engine;

struct embed_engine_conf {
	const char *dir;	/* the model folder */
	int threads;		/* CPU threads (0: one per physical core) */
	int max_seqs;		/* inputs a batch (>= 1) */
	int max_tokens;		/* tokens a batch (>= 1) */
};

int embed_engine_new(struct event_base *base, const struct embed_engine_conf *c,
		     struct embed_engine **out);
/* After the rpc server (whose calls it serves): waits for the running
 * batch. */
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
