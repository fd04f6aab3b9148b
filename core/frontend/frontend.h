/*
 * frontend.h - the OpenAI-compatible HTTP frontend (dyn frontend).
 *
 * Watches the discovery store for model cards and worker instances
 * (models appear in /v1/models with their first worker and disappear
 * with their last, without a restart), and serves:
 *   POST /v1/chat/completions, POST /v1/completions, GET /v1/models,
 *   GET /v1/models/{model}, GET /health, GET /live, GET /metrics,
 *   GET /openapi.json
 * Per request: validate, render the chat template, tokenize, route to a
 * worker's generate endpoint (round-robin, random, or KV-aware: the
 * worker with the lowest cost given its cached prefix and load; through the
 * shared router service, dyn router, while one of opts.ns is registered),
 * stream token ids
 * back, detokenize incrementally, apply stop strings (text past a stop
 * string is never sent, even when it spans tokens) and answer in
 * OpenAI's shapes, streamed as Server-Sent Events or whole; chat output
 * can be parsed into tool calls and reasoning (opts.tool_call_parser,
 * reasoning_parser).  A stream
 * whose worker fails or drains continues on another worker from the
 * tokens generated so far (migration; the client sees one stream).  A client
 * that disconnects cancels its request on the worker.  Errors are
 * OpenAI-shaped JSON with the matching status (dyn-frontend(1)).
 *
 * Threading: everything runs on the event_base's thread.  The store must
 * have been opened on that base (watches).  Errors: 0 / -errno with
 * err_msg().  Logging module "frontend".
 */
#ifndef DYN_FRONTEND_H
#define DYN_FRONTEND_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct runtime_hooks;
struct store;
struct frontend;
struct ssl_ctx_st;

enum frontend_router { FRONTEND_ROUTE_ROUND_ROBIN, FRONTEND_ROUTE_RANDOM, FRONTEND_ROUTE_KV };

struct frontend_opts {
	const char *host;		/* NULL/"" = 0.0.0.0 */
	int port;			/* 0 = any free port */
	const char *api_key;		/* NULL/"" = no authentication */
	enum frontend_router router;
	double overlap_weight;		/* kv: --kv-overlap-score-weight */
	double temperature;		/* kv: --router-temperature */
	int no_kv_events;		/* kv: approximate mode only */
	const char *ns;			/* namespace of the router service (NULL: "dyn") */
	size_t max_body_bytes;		/* 0 = 32 MiB */
	int64_t request_timeout_ms;	/* whole HTTP request must arrive; 0 = 30 s */
	int64_t idle_timeout_ms;	/* keep-alive; 0 = 120 s */
	const char *allowed_origins;	/* CORS (net/http.h); NULL/"" = off */
	struct ssl_ctx_st *tls;		/* HTTPS (net/http.h); NULL = HTTP; not owned */
	/* disaggregated serving (docs/disaggregation.md): prefill on the
	 * decode worker when fewer prompt tokens than this are not cached
	 * there, or when every prefill worker has more than this waiting;
	 * how long a remote prefill may take */
	long max_local_prefill_length;	/* tokens */
	long max_prefill_queue;		/* tokens */
	int64_t prefill_timeout_ms;	/* 0 = 30 s */
	/* a stream that breaks (its worker lost, draining, or refusing) goes
	 * on on another worker, at most this many times per choice (0: the
	 * client gets the error) */
	int migration_limit;
	/* health (dyn-frontend(1) FAULT TOLERANCE): every worker is checked
	 * this often (<= 0: never) and is unhealthy, not routed to, when it
	 * does not answer within the timeout; a stream that sends nothing
	 * for progress_timeout_ms (<= 0: no limit) after its first token
	 * moves to another worker.  0 = the defaults (core/discovery/
	 * health.h, and below). */
	int64_t health_check_interval_ms, health_check_timeout_ms;
	int64_t progress_timeout_ms;
	/* chat output parsed into tool calls and reasoning (core/parse/
	 * parse.h, dyn-frontend(1) TOOL CALLS, REASONING): a format's name,
	 * "auto" (each model's own, from its chat template) or NULL/""
	 * (none: the output is content) */
	const char *tool_call_parser, *reasoning_parser;
};

#define FRONTEND_MIGRATION_LIMIT_DEFAULT 3
#define FRONTEND_PROGRESS_TIMEOUT_MS 60000

int frontend_new(struct event_base *base, struct store *store,
		 const struct frontend_opts *opts, struct frontend **out);
int frontend_port(const struct frontend *f);
/* 1 once the workers and models in the store at the start are known and
 * loaded (registry.h disc_settled); a struct frontend * for
 * runtime_run_until(). */
int frontend_ready(void *f);
/* Stop accepting / count requests in flight, for core/runtime.h. */
void frontend_hooks(struct frontend *f, struct runtime_hooks *out);
/* Close every connection (cancelling worker calls) and free.  Not from
 * inside a callback. */
void frontend_free(struct frontend *f);

#endif
