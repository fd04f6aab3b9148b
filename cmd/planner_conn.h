/*
 * planner_conn.h - the live planner's connectors: how a decision ("role R
 * should have N workers") reaches the world.  A connector is a small
 * vtable so that another one (Slurm: srun steps / sbatch jobs) plugs in
 * without touching the planner loop.
 *
 *   virtual  writes each decision to the store for an external system to
 *            act on (keys in dyn-planner(1)):
 *              NS/planner/decision        the decision's JSON line
 *              NS/planner/workers/ROLE    the desired count, decimal text
 *            ROLE is agg (one pool), prefill or decode.  The keys carry
 *            no lease: they outlive the planner, as a last decision should.
 *   local    runs workers on this machine: each is `/bin/sh -c "exec CMD"`
 *            (CMD the --worker-cmd template, its standard output sent to
 *            the planner's standard error).  Scaling up starts workers;
 *            scaling down sends SIGTERM to the newest, which drains (it
 *            leaves the frontends' worker set, finishes its streams within
 *            its grace period and exits: dyn-serve(1)); a worker that
 *            exited without being asked is reaped and replaced at the next
 *            decision; after 3 in a row that each died within 10 s of
 *            its start, the command is taken to fail and scale() fails
 *            (-ECHILD, the last exit status and the command in err_msg()).
 *            free() stops every worker it started (SIGTERM,
 *            then SIGKILL after 60 s) and waits for them.  One pool: the
 *            role is always agg.
 *
 * Runs on the planner's thread only.  Errors: -errno with err_msg().
 */
#ifndef DYN_CMD_PLANNER_CONN_H
#define DYN_CMD_PLANNER_CONN_H

struct store;

struct planner_conn {
	const char *name;
	/* Ask for n workers of role; json is the whole decision. */
	int (*scale)(struct planner_conn *c, const char *role, int n);
	int (*decision)(struct planner_conn *c, const char *json);
	void (*free)(struct planner_conn *c);
};

/* The virtual connector on st (borrowed) under namespace ns (copied). */
int planner_conn_virtual(struct store *st, const char *ns, struct planner_conn **out);

/* The local connector running cmd (copied) for each worker. */
int planner_conn_local(const char *cmd, struct planner_conn **out);

#endif
