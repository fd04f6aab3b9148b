/*
 * planner_conn.c - the live planner's connectors (planner_conn.h).
 */
#include "cmd/planner_conn.h"
#include "cmd/planner_proc.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct vconn {
	struct planner_conn c;		/* first: the vtable is the handle */
	struct store *st;
	char *ns;
};

static int vput(struct vconn *v, const char *suffix, const char *val)
{
	struct strbuf key = STRBUF_INIT;
	sb_addf(&key, "%s/planner/%s", v->ns, suffix);
	int rc = store_put(v->st, key.buf, val, strlen(val), 0);
	sb_release(&key);
	return rc;
}

static int v_scale(struct planner_conn *c, const char *role, int n)
{
	char suffix[64], val[16];
	snprintf(suffix, sizeof(suffix), "workers/%s", role);
	snprintf(val, sizeof(val), "%d", n);
	return vput((struct vconn *)c, suffix, val);
}

static int v_decision(struct planner_conn *c, const char *json)
{
	return vput((struct vconn *)c, "decision", json);
}

static void v_free(struct planner_conn *c)
{
	struct vconn *v = (struct vconn *)c;
	free(v->ns);
	free(v);
}

int planner_conn_virtual(struct store *st, const char *ns, struct planner_conn **out)
{
	struct vconn *v = xcalloc(1, sizeof(*v));
	v->c = (struct planner_conn){ "virtual", v_scale, v_decision, NULL, v_free, 0 };
	v->st = st;
	v->ns = xstrdup(ns);
	*out = &v->c;
	return 0;
}

/* ---- the worker pool of local and slurm --------------------------------- */

#define PROC_STOP_S 60
#define PROC_QUICK_S 10		/* a worker dead this soon after its start failed to start */
#define PROC_QUICK_MAX 3	/* so many in a row: the command fails */

static const char *const proc_roles[] = { "agg", "prefill", "decode" };

static void w_name(const struct proc_worker *w, char *buf, size_t n)
{
	snprintf(buf, n, "worker %d (%s #%ld)", (int)w->pid, w->role, w->seq);
}

/* How a child ended, for the log. */
static void how(int st, char *buf, size_t n)
{
	if (WIFSIGNALED(st))
		snprintf(buf, n, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, n, "exit status %d", WEXITSTATUS(st));
}

/* Reap whatever exited: a draining worker is done; a live one failed.
 * Also between decisions (poll), so a quick death is timed as such. */
static void p_reap(struct proc_conn *pc)
{
	int st;
	pid_t pid;
	char name[96], end[32];
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (int i = 0; i < pc->ndraining; i++)
			if (pc->draining[i].pid == pid) {
				w_name(&pc->draining[i], name, sizeof(name));
				how(st, end, sizeof(end));
				fprintf(stderr, "dyn planner: %s drained and exited (%s)\n", name, end);
				pc->draining[i] = pc->draining[--pc->ndraining];
			}
		for (int i = 0; i < pc->nlive; i++)
			if (pc->live[i].pid == pid) {
				w_name(&pc->live[i], name, sizeof(name));
				how(st, end, sizeof(end));
				fprintf(stderr, "dyn planner: %s exited unasked (%s; %ld failures "
					"so far); it will be replaced\n", name, end, ++pc->c.failures);
				if (mono_ns() - pc->live[i].started < PROC_QUICK_S * 1000000000ULL)
					pc->quick++;
				else
					pc->quick = 0;
				pc->last_status = st;
				memmove(&pc->live[i], &pc->live[i + 1],
					(size_t)(pc->nlive - i - 1) * sizeof(pc->live[0]));
				pc->nlive--;
			}
	}
}

/* The node with the fewest live workers. */
static int p_node(const struct proc_conn *pc)
{
	int best = 0, best_n = PROC_MAX + 1;
	for (int k = 0; k < pc->nnodes; k++) {
		int n = 0;
		for (int i = 0; i < pc->nlive; i++)
			n += pc->live[i].node == k;
		if (n < best_n) {
			best = k;
			best_n = n;
		}
	}
	return best;
}

static void p_poll(struct planner_conn *c)
{
	p_reap((struct proc_conn *)c);
}

/* Start or drain role's workers until it has n. */
static int p_resize(struct proc_conn *pc, const char *role, int n)
{
	for (int i = 0; i < 3; i++)
		if (!strcmp(role, proc_roles[i]))
			role = proc_roles[i];	/* static: it outlives the decision */
	int have = 0;
	for (int i = 0; i < pc->nlive; i++)
		have += !strcmp(pc->live[i].role, role);
	for (; have < n && pc->nlive < PROC_MAX; have++) {
		struct proc_worker w = { .role = role, .node = p_node(pc), .seq = ++pc->seq,
					 .started = mono_ns() };
		fflush(NULL);
		w.pid = fork();
		if (w.pid < 0)
			return err_set(-errno, "fork: %s", strerror(errno));
		if (!w.pid) {
			dup2(2, 1);	/* the planner's stdout carries only decisions */
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			setenv("DYN_ROLE", role, 1);
			pc->exec(pc, &w);
			_exit(127);
		}
		char name[96];
		w_name(&w, name, sizeof(name));
		fprintf(stderr, "dyn planner: started %s\n", name);
		pc->live[pc->nlive++] = w;
	}
	for (int i = pc->nlive - 1; i >= 0 && have > n && pc->ndraining < PROC_MAX; i--) {
		if (strcmp(pc->live[i].role, role))
			continue;
		struct proc_worker w = pc->live[i];
		char name[96];
		w_name(&w, name, sizeof(name));
		fprintf(stderr, "dyn planner: draining %s\n", name);
		pc->drain(pc, &w);
		pc->draining[pc->ndraining++] = w;
		memmove(&pc->live[i], &pc->live[i + 1], (size_t)(pc->nlive - i - 1) * sizeof(w));
		pc->nlive--;
		have--;
	}
	return 0;
}

/* Workers that keep dying at once mean a bad command (or no resources),
 * not bad luck: replacing them forever would hide it. */
static int p_scale(struct planner_conn *c, const char *role, int n)
{
	struct proc_conn *pc = (struct proc_conn *)c;
	p_reap(pc);
	if (pc->quick >= PROC_QUICK_MAX) {
		char end[32];
		how(pc->last_status, end, sizeof(end));
		return err_set(-ECHILD, "the worker command failed %d times in a row, each "
			       "within %d s of its start (last: %s): %s", pc->quick, PROC_QUICK_S,
			       end, pc->cmd + strlen("exec "));
	}
	return p_resize(pc, role, n);
}

static int p_decision(struct planner_conn *c, const char *json)
{
	(void)c;
	(void)json;
	return 0;
}

static void p_free(struct planner_conn *c)
{
	struct proc_conn *pc = (struct proc_conn *)c;
	p_reap(pc);
	for (int i = 0; i < 3; i++)
		p_resize(pc, proc_roles[i], 0);
	time_t end = time(NULL) + PROC_STOP_S;
	int killed = 0;
	while (pc->ndraining) {
		if (!killed && time(NULL) > end) {
			for (int i = 0; i < pc->ndraining; i++)
				pc->kill(pc, &pc->draining[i]);
			killed = 1;
		}
		p_reap(pc);
		if (pc->ndraining)
			nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	}
	if (pc->release)
		pc->release(pc);
	free(pc->cmd);
	free(pc);
}

void proc_conn_init(struct proc_conn *pc, const char *name, const char *cmd, int nnodes)
{
	pc->c = (struct planner_conn){ name, p_scale, p_decision, p_poll, p_free, 0 };
	struct strbuf sb = STRBUF_INIT;
	sb_addf(&sb, "exec %s", cmd);	/* the worker itself gets the signals */
	size_t len;
	pc->cmd = sb_detach(&sb, &len);
	pc->nnodes = nnodes > 0 ? nnodes : 1;
}

/* ---- local ---------------------------------------------------------------- */

static void l_exec(struct proc_conn *pc, const struct proc_worker *w)
{
	(void)w;
	execl("/bin/sh", "sh", "-c", pc->cmd, (char *)NULL);
}

static void l_drain(struct proc_conn *pc, const struct proc_worker *w)
{
	(void)pc;
	kill(w->pid, SIGTERM);
}

static void l_kill(struct proc_conn *pc, const struct proc_worker *w)
{
	(void)pc;
	kill(w->pid, SIGKILL);
}

int planner_conn_local(const char *cmd, struct planner_conn **out)
{
	struct proc_conn *pc = xcalloc(1, sizeof(*pc));
	proc_conn_init(pc, "local", cmd, 1);
	pc->exec = l_exec;
	pc->drain = l_drain;
	pc->kill = l_kill;
	*out = &pc->c;
	return 0;
}
