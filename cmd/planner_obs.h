/*
 * planner_obs.h - what the live planner finds in the store besides its
 * own keys (dyn-planner(1)):
 *
 *   frontends  every v1/frontends/NS/ID record (dyn-store(5), put by each
 *              dyn frontend under its process lease): their URLs
 *   models     the model cards (v1/models/NAME/ID) of ns's workers
 *   load       the workers' load reports: each worker of the namespace
 *              (its v1/instances/NS/COMP/generate/ID record) is asked
 *              for one message of its NS/COMP/kv_events subscription, the
 *              one a subscriber gets at once (core/proto/kv_events.h),
 *              which is then cancelled: its waiting requests and its KV
 *              blocks (of decoding sequences, and the pool's), summed per
 *              role.  The router reads the same reports, kept open.
 *              A worker that does not answer within PLANNER_LOAD_WAIT_MS
 *              (or has no KV events: the echo engine) is not counted.
 *
 * Planner thread only.  Errors: -errno with err_msg().
 */
#ifndef DYN_CMD_PLANNER_OBS_H
#define DYN_CMD_PLANNER_OBS_H

struct store;
struct strbuf;

#define PLANNER_LOAD_WAIT_MS 2000

/* The frontends' URLs (malloc'd array of malloc'd strings, key order;
 * records that are not JSON with a "url" string are skipped). */
int planner_frontends(struct store *st, const char *ns, char ***urls, int *n);
void planner_urls_free(char **urls, int n);

/* The models the workers of ns serve (their cards, v1/models/): *found
 * when one is named model; the others' names, quoted and comma-separated,
 * appended to others. */
int planner_models(struct store *st, const char *ns, const char *model, struct strbuf *others,
		   int *found);

/* Per role: agg, prefill, decode (disc_role order). */
struct planner_load {
	int workers[3];			/* that reported */
	double waiting[3];		/* requests waiting, summed */
	double kv_active[3];		/* KV blocks of decoding sequences, summed */
	double kv_total[3];		/* KV pool blocks, summed */
};

int planner_worker_load(struct store *st, const char *ns, struct planner_load *out);

#endif
