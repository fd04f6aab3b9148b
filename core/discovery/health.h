/*
 * health.h - health checks of the workers a registry knows, for the roles
 * that route to them (the frontend, the router service).
 *
 * Every interval each worker with an instance record is asked
 * NS/COMP/health on the request plane (the sibling of its generate
 * endpoint; a worker answers from its event loop, and with a 503
 * "stalled:" error, net/frame.h, when its engine has requests and makes
 * no step).  A worker that does not answer within the timeout, whose
 * connection fails, or that says it stalled, is unhealthy until it
 * answers a check again.  Any other answer, an error included (a
 * draining worker refuses new calls), shows that it runs.
 *
 * Threading: the event_base's thread.  Logging module "health".
 */
#ifndef DYN_DISCOVERY_HEALTH_H
#define DYN_DISCOVERY_HEALTH_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_client;
struct discovery;
struct worker_health;

struct worker_health_opts {
	int64_t interval_ms;		/* <= 0: no checks (nothing is unhealthy
					   unless reported stalled) */
	int64_t timeout_ms;
	/* called when an unhealthy worker answers again (may be NULL) */
	void (*recovered)(void *arg, uint64_t id);
	void *arg;
};

#define WORKER_HEALTH_INTERVAL_MS 5000
#define WORKER_HEALTH_TIMEOUT_MS 3000

/* Follow d's workers (disc_subscribe) and check them over rpc. */
int worker_health_new(struct event_base *base, struct rpc_client *rpc, struct discovery *d,
		      const struct worker_health_opts *o, struct worker_health **out);
/* Cancel the checks in flight and stop (before rpc_client_free); events
 * of the registry are ignored from here on. */
void worker_health_stop(struct worker_health *h);
/* After disc_free() (the registry holds the subscription until then). */
void worker_health_free(struct worker_health *h);

int worker_health_unhealthy(const struct worker_health *h, uint64_t id);
size_t worker_health_nunhealthy(const struct worker_health *h);
/* A user saw worker id make no progress: unhealthy until a check is
 * answered.  -ENOENT when id is not checked (checks off, or unknown):
 * nothing would clear the mark. */
int worker_health_stalled(struct worker_health *h, uint64_t id, const char *why);
/* Checks answered and failed so far. */
void worker_health_counts(const struct worker_health *h, uint64_t *ok, uint64_t *failed);

#endif
