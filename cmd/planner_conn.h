/*
 * planner_conn.h - the live planner's connectors: how a decision ("role R
 * should have N workers") reaches the world.  A connector is a small
 * vtable so that each kind plugs in without touching the planner loop.
 *
 *   virtual  writes each decision to the store for an external system to
 *            act on (keys in dyn-planner(1)):
 *              NS/planner/decision        the decision's JSON line
 *              NS/planner/workers/ROLE    the desired count, decimal text
 *            ROLE is agg (one pool), prefill or decode.  The keys carry
 *            no lease: they outlive the planner, as a last decision should.
 *   local    runs workers on this machine: each is `/bin/sh -c "exec CMD"`
 *            (CMD the --worker-cmd template, its standard output sent to
 *            the planner's standard error, DYN_ROLE=ROLE in its
 *            environment, which dyn serve reads as --role).  Scaling up
 *            starts workers; scaling down sends SIGTERM to the newest of
 *            the role, which drains (it leaves the frontends' worker set,
 *            finishes its streams within its grace period and exits:
 *            dyn-serve(1)); a worker that exited without being asked is
 *            reaped, counted in failures and replaced at the next
 *            decision.  free() stops every worker it started (SIGTERM,
 *            then a hard stop after 60 s) and waits for them.
 *   slurm    the same, inside a Slurm allocation: each worker is a job
 *            step, `srun --overlap --nodes=1 --ntasks=1 --nodelist=NODE
 *            --job-name=dyn-planner-PID-wSEQ /bin/sh -c "exec CMD"`, on
 *            the allocated node with the fewest of the planner's workers
 *            (planner_slurm.c).  A drain is `scancel --signal=TERM
 *            JOB.STEP`; the hard stop `scancel JOB.STEP` and SIGKILL to
 *            srun.  An srun that fails (bad command, no resources) exits:
 *            a failure like a crashed worker.
 *
 * Both (the pool of planner_proc.h): after 3 workers in a row each died
 * within 10 s of its start, the command is taken to fail, not the luck:
 * scale() fails (-ECHILD, err_msg() naming the last exit status and the
 * command) and the planner stops (exit 1).  poll() between decisions
 * reaps, so such a death is timed when it happens, whatever the interval.
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
	void (*poll)(struct planner_conn *c);	/* between decisions; may be NULL */
	void (*free)(struct planner_conn *c);
	long failures;		/* workers that exited unasked */
};

/* The virtual connector on st (borrowed) under namespace ns (copied). */
int planner_conn_virtual(struct store *st, const char *ns, struct planner_conn **out);

/* The local connector running cmd (copied) for each worker. */
int planner_conn_local(const char *cmd, struct planner_conn **out);

/* The slurm connector running cmd (copied) for each worker in the
 * allocation of $SLURM_JOB_ID over the nodes of $SLURM_JOB_NODELIST. */
int planner_conn_slurm(const char *cmd, struct planner_conn **out);

#endif
