/*
 * disagg.h - conditional disaggregation (docs/disaggregation.md): once a
 * request's decode worker is chosen, does its prompt go to a prefill
 * worker first, or does the decode worker prefill it itself?
 *
 * Locally, in this order of reasons:
 *   local_no_prefill  the model has no prefill worker (that shares the
 *                     decode workers' KV layout, core/discovery/registry.h)
 *   local_short       the prompt tokens not cached on the decode worker
 *                     are fewer than max_local_prefill_length: moving
 *                     their KV would cost about what computing them does
 *   local_queue       every prefill worker has more than max_prefill_queue
 *                     prompt tokens waiting (their load reports,
 *                     kv_events.h); a worker that has not reported counts
 *                     as idle
 * else remote.  Pure: the frontend and the router service both ask it.
 */
#ifndef DYN_ROUTER_DISAGG_H
#define DYN_ROUTER_DISAGG_H

#include <stddef.h>
#include <stdint.h>

#define DISAGG_MAX_LOCAL_PREFILL_DEFAULT 512
#define DISAGG_MAX_PREFILL_QUEUE_DEFAULT 8192

enum disagg_decision {
	DISAGG_REMOTE,
	DISAGG_LOCAL_SHORT,
	DISAGG_LOCAL_QUEUE,
	DISAGG_LOCAL_NO_PREFILL,
};
#define DISAGG_NDECISIONS 4

struct disagg_config {
	long max_local_prefill_length;	/* tokens (--max-local-prefill-length) */
	long max_prefill_queue;		/* tokens (--max-prefill-queue) */
};

/* uncached_tokens: the prompt's tokens the decode worker does not hold;
 * queued[0..n_prefill): each prefill worker's queued prefill tokens (< 0:
 * not reported; queued NULL: none reported). */
enum disagg_decision disagg_decide(const struct disagg_config *c, long uncached_tokens,
				   const int64_t *queued, size_t n_prefill);
/* "remote", "local_short", "local_queue", "local_no_prefill". */
const char *disagg_decision_name(enum disagg_decision d);
/* -EINVAL for any other name. */
int disagg_decision_parse(const char *name, enum disagg_decision *out);

#endif
