/*
 * worker.h - the worker component: a model's "generate" endpoint on the
 * request plane, its model card, its KV events and its system port, on a
 * runtime's event loop.  What `dyn serve` runs, and what `dyn run --http`
 * runs in-process next to a frontend.
 *
 * Engines: one handler per engine (a table in worker.c): "builtin" runs the
 * model on the engine (builtin.h), "mock" is the same engine in mock mode
 * (no compute), "echo" streams the prompt back (echo.h), "embed" answers
 * embed requests with an embedding model (embed_engine.h).
 *
 * Roles: a worker has one role, recorded in its instance record
 * ({"role":...,"engine":...,"model":...,"kv":{..}}, dyn-store(5)) so that
 * routers can group workers by it: agg (prefill and decode in one
 * worker), prefill (also lends the KV of prompts it computed, on a data
 * port: kv_lend.h) and decode (also fetches a prompt's KV from a prefill
 * worker: kv_fetch.h).  Every role serves plain requests in full; the echo
 * engine (no KV cache) is agg only.
 *
 * Started, a worker registers its instance and publishes its card bound
 * to the runtime's lease (again under a new lease when the old one was
 * lost: store/process.h), and registers shutdown hooks on the runtime:
 * on SIGINT/SIGTERM or a call to its NS/COMP/drain endpoint the card and
 * instance record go at once, in-flight requests (and a prefill worker's
 * KV holds) drain for the grace period, and the calls still running then
 * end with ERROR 503 "migrate: ..." (net/frame.h; dyn-serve(1) FAULT
 * TOLERANCE).
 *
 * Ownership: the worker owns the model given in worker_conf (also when
 * worker_start fails), and the engine and KV event publisher it makes.
 * Threading: everything on the runtime's event_base thread.  Errors: 0 /
 * -errno with err_msg().
 */
#ifndef DYN_SERVE_WORKER_H
#define DYN_SERVE_WORKER_H

#include "net/kv_xfer.h"

#include <stdint.h>

struct runtime;
struct model;
struct engine;
struct engine_opts;
struct worker;

enum worker_role { WORKER_ROLE_AGG, WORKER_ROLE_PREFILL, WORKER_ROLE_DECODE };

/* The role names, indexed by enum worker_role, NULL-terminated (for an
 * OPT_ENUM option). */
extern const char *const worker_role_names[];
/* The engine names worker_conf.engine accepts, NULL-terminated. */
extern const char *const worker_engine_names[];

struct worker_conf {
	const char *served;		/* served model name */
	const char *model;		/* as given (recorded in the card) */
	const char *dir;		/* folder of config/tokenizer files for the card */
	const char *ns, *component, *host;
	enum worker_role role;
	const char *engine;		/* one of worker_engine_names */
	int port, sys_port;		/* sys_port -1: no system port */
	/* builtin and mock: the model (owned by the worker from worker_start()
	 * on) and the options of the engine the worker makes for it */
	struct model *m;
	const struct engine_opts *eo;
	int kv_events;			/* builtin, mock: serve KV events */
	/* echo: its delay and the limits its card advertises; max_seqs is
	 * advertised by every engine */
	long echo_delay, ctx_len, block_size, kv_blocks, max_seqs;
	/* prefill and decode roles (dyn-serve(1) DISAGGREGATED SERVING) */
	enum kvx_transport kv_transport;
	int kv_port;			/* prefill: the data port (0: any free one) */
	long kv_hold_ms;		/* prefill: a hold's timeout */
	double kv_bandwidth_gbps;	/* mock decode: the modelled transfer rate */
	struct ssl_ctx_st *kv_tls;	/* --kv-transfer-tls: a TLS_MUTUAL context */
	/* the card's output parsers for frontends without their own (NULL:
	 * none; model_card) */
	const char *tool_call_parser, *reasoning_parser;
};

/* Start serving, publish the card, register shutdown hooks on rt (whose
 * store must be open).  c's strings must stay valid while the worker
 * runs. */
int worker_start(struct runtime *rt, const struct worker_conf *c, struct worker **out);
uint64_t worker_instance_id(const struct worker *w);
const char *worker_address(const struct worker *w);
int worker_system_port(const struct worker *w);	/* -1 if none */
const char *worker_engine_name(const struct worker *w);
/* What the engine computes with (engine_describe()), or "echo". */
const char *worker_engine_describe(const struct worker *w);
/* Stop and free (with the engine and model it owns).  Not from a
 * callback.  NULL is fine. */
void worker_free(struct worker *w);

#endif
