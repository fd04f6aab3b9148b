/*
 * worker.h - a worker (the "generate" endpoint, its model card and its
 * system port) on a runtime's loop: what dyn serve runs, and what dyn run
 * --http runs in-process next to a frontend.
 */
#ifndef DYN_CMD_WORKER_H
#define DYN_CMD_WORKER_H

#include <stdint.h>

struct runtime;
struct model;
struct engine;
struct worker;

struct worker_conf {
	const char *served;		/* served model name */
	const char *model;		/* as given (recorded in the card) */
	const char *dir;		/* folder of config/tokenizer files for the card */
	const char *ns, *component, *role, *host;
	int port, sys_port;		/* sys_port -1: no system port */
	/* builtin or mock engine: both set, and owned by the worker from
	 * worker_start() on (also when it fails); NULL: the echo engine */
	struct model *m;
	struct engine *e;
	/* builtin engine: its KV event publisher (kv_pub_hooks() installed in
	 * the engine's options), owned like m and e; NULL: no KV events */
	struct kv_pub *kvp;
	/* the engine's name in the card, metrics and logs ("builtin" when e
	 * is set and this is NULL; "mock" for an engine in mock mode) */
	const char *engine;
	/* echo engine: its delay and the limits its card advertises */
	long echo_delay, ctx_len, block_size, kv_blocks, max_seqs;
};

/* Start serving, publish the card, register shutdown hooks on rt (whose
 * store must be open).  0 or -errno with err_msg(). */
int worker_start(struct runtime *rt, const struct worker_conf *c, struct worker **out);
uint64_t worker_instance_id(const struct worker *w);
const char *worker_address(const struct worker *w);
int worker_system_port(const struct worker *w);	/* -1 if none */
/* Stop and free (with the engine and model it owns).  Not from a callback. */
void worker_free(struct worker *w);

/* dyn run MODEL --http: serve m on the engine e (both owned from here on)
 * behind a frontend on host:port in this process, until SIGINT/SIGTERM.
 * Returns the exit status. */
int cmd_serve_http(const char *model, struct model *m, struct engine *e, int max_num_seqs,
		   const char *host, int port);

#endif
