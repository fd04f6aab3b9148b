/*
 * echo.h - the echo engine: a worker "generate" handler that streams the
 * prompt's token ids back, one per DATA frame, delay_ms apart (0: as fast
 * as the connection takes them).  Used to test and benchmark everything
 * around an engine (frontend, routing, streaming, cancellation) with
 * exactly known output.
 *
 * Semantics (proto.h): up to max_tokens ids are sent (finish_reason
 * "length" if that cut the prompt short, else "stop"); an id listed in
 * stop_token_ids ends the stream before it with "stop"; with logprobs
 * every token has logprob 0 and itself as the only alternative, and so
 * has every prompt token after the first with prompt_logprobs (rank 1),
 * sent first.  A
 * cancelled call stops at once and frees its state.
 *
 * Threading: the engine and its calls belong to the event_base's thread.
 */
#ifndef DYN_SERVE_ECHO_H
#define DYN_SERVE_ECHO_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_call;

struct echo_engine;

struct worker_stats {
	uint64_t requests, finished, cancelled, failed;
	uint64_t prompt_tokens, generated_tokens;
	long active;
};

int echo_engine_new(struct event_base *base, long delay_ms, struct echo_engine **out);
/* Cancels nothing: free after the rpc server (whose calls it serves). */
void echo_engine_free(struct echo_engine *e);
/* rpc_handler_fn: arg is the engine. */
void echo_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			unsigned flags, void *arg);
void echo_engine_stats(const struct echo_engine *e, struct worker_stats *out);

#endif
