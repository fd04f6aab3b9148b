/*
 * runtime.h - the life of a long-running dyn process: its event loop,
 * the store connection and lease it carries (opened by
 * store/process.h, which this layer does not know), and graceful shutdown.
 *
 * Shutdown: the first SIGINT or SIGTERM (or runtime_shutdown()) calls
 * every registered stop hook (stop accepting work), then waits until all
 * busy hooks report 0 in-flight items or the grace period runs out.  At
 * the end of the grace period the abort hooks end what is left (a worker
 * answers its calls with the "migrate" error), and the loop runs up to
 * RUNTIME_ABORT_FLUSH_MS more so that those answers reach their peers.
 * Then the drained hooks run (the store's revokes the process lease, so
 * that its records vanish at once rather than after the TTL) and
 * runtime_run() ends.  runtime_free() calls the release hooks.  A second
 * signal exits the process immediately with status 130.
 *
 * Lease recovery: when the process lease is found gone while the process
 * is not shutting down (the store was unavailable past the TTL, or was
 * wiped), store/process.c grants a new one into rt->lease and calls the
 * lease_renewed hooks: each puts its records again under the new lease.
 *
 * Threading: everything runs on the runtime's event_base thread.
 */
#ifndef DYN_RUNTIME_H
#define DYN_RUNTIME_H

#include <stdint.h>

struct event_base;
struct store;

struct runtime_hooks {
	void (*stop_accepting)(void *arg);	/* may be NULL */
	long (*in_flight)(void *arg);		/* may be NULL: count of busy items */
	void *arg;
	void (*drained)(void *arg);		/* may be NULL: after the drain */
	void (*release)(void *arg);		/* may be NULL: in runtime_free() */
	void (*abort)(void *arg);		/* may be NULL: grace period over */
	void (*lease_renewed)(void *arg);	/* may be NULL: see above */
};

#define RUNTIME_ABORT_FLUSH_MS 500

struct runtime {
	struct event_base *base;
	struct store *store;		/* NULL until store_process_open() */
	int64_t lease;			/* the process lease, 0 if none */
	int64_t grace_ms;		/* drain limit on shutdown */
	int shutting_down;
	/* private */
	struct runtime_priv *priv;
};

/* Create the event loop and install the signal handlers. */
int runtime_init(struct runtime *rt, int64_t grace_ms);
void runtime_add_hooks(struct runtime *rt, const struct runtime_hooks *h);
/* Run the loop until shutdown completes (at once if it has); returns 0. */
int runtime_run(struct runtime *rt);
/* Run the loop until done(arg), for at most max_ms, or until a shutdown
 * begins; returns 1 if done.  (Startup: a frontend waits for discovery.) */
int runtime_run_until(struct runtime *rt, int (*done)(void *arg), void *arg, int64_t max_ms);
/* Begin a graceful shutdown as if SIGTERM had arrived. */
void runtime_shutdown(struct runtime *rt, const char *why);
/* Call the lease_renewed hooks (store/process.c, after a new lease). */
void runtime_lease_renewed(struct runtime *rt);
/* Free everything (the release hooks first: the store is closed there). */
void runtime_free(struct runtime *rt);

#endif
