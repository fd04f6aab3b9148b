/*
 * planner_proc.h - the worker processes of the connectors that start
 * them (local, slurm: planner_conn.h).  The pool keeps the workers per
 * role, starts and drains them and reaps what exited; a connector says
 * how one worker is run (exec), asked to drain and stopped hard.
 */
#ifndef DYN_CMD_PLANNER_PROC_H
#define DYN_CMD_PLANNER_PROC_H

#include "cmd/planner_conn.h"

#include <stdint.h>
#include <sys/types.h>

#define PROC_MAX 1024

struct proc_worker {
	pid_t pid;		/* the child: sh (local) or srun (slurm) */
	const char *role;	/* agg, prefill or decode (static) */
	int node;		/* index among the connector's nodes */
	long seq;		/* 1, 2, ... in start order: names the worker */
	uint64_t started;	/* mono_ns() at its start */
};

struct proc_conn {
	struct planner_conn c;	/* first: the vtable is the handle */
	char *cmd;		/* "exec CMD" */
	int nnodes;		/* workers are spread over nodes 0..nnodes-1 */
	struct proc_worker live[PROC_MAX], draining[PROC_MAX];
	int nlive, ndraining;
	long seq;
	int quick;		/* in a row: live workers dead within 10 s of start */
	int last_status;	/* the wait status of the last of them */
	/* In the child (DYN_ROLE set, stdout on stderr): run w; on return
	 * the child exits 127. */
	void (*exec)(struct proc_conn *pc, const struct proc_worker *w);
	/* Ask w to drain; end it now. */
	void (*drain)(struct proc_conn *pc, const struct proc_worker *w);
	void (*kill)(struct proc_conn *pc, const struct proc_worker *w);
	void (*release)(struct proc_conn *pc);	/* the connector's own state */
};

/* Fill pc's pool and vtable for a connector called name running cmd. */
void proc_conn_init(struct proc_conn *pc, const char *name, const char *cmd, int nnodes);

#endif
