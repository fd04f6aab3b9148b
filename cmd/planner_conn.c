/*
 * planner_conn.c - the live planner's connectors (planner_conn.h).
 */
#include "cmd/planner_conn.h"
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
	v->c = (struct planner_conn){ "virtual", v_scale, v_decision, v_free };
	v->st = st;
	v->ns = xstrdup(ns);
	*out = &v->c;
	return 0;
}

/* ---- local ---------------------------------------------------------------- */

#define LOCAL_MAX 1024
#define LOCAL_STOP_S 60
#define LOCAL_QUICK_S 10	/* a worker that dies this soon failed to start */
#define LOCAL_QUICK_MAX 3

struct lconn {
	struct planner_conn c;
	char *cmd;
	pid_t live[LOCAL_MAX];		/* started, oldest first */
	uint64_t started[LOCAL_MAX];	/* mono_ns() of each */
	int nlive;
	int quick_exits;		/* in a row: workers dead within LOCAL_QUICK_S */
	int last_status;
	pid_t draining[LOCAL_MAX];	/* sent SIGTERM, not reaped yet */
	int ndraining;
};

/* Describe a wait status. */
static void status_text(int st, char *buf, size_t n)
{
	if (WIFEXITED(st))
		snprintf(buf, n, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, n, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, n, "status %d", st);
}

/* Reap whatever exited: a draining worker is done; a live one crashed. */
static void l_reap(struct lconn *l)
{
	int st;
	pid_t pid;
	while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
		for (int i = 0; i < l->ndraining; i++)
			if (l->draining[i] == pid) {
				fprintf(stderr, "dyn planner: worker %d drained and exited\n", (int)pid);
				l->draining[i] = l->draining[--l->ndraining];
			}
		for (int i = 0; i < l->nlive; i++)
			if (l->live[i] == pid) {
				char why[64];
				status_text(st, why, sizeof(why));
				fprintf(stderr, "dyn planner: worker %d exited unasked (%s); "
					"it will be replaced\n", (int)pid, why);
				if (mono_ns() - l->started[i] < LOCAL_QUICK_S * 1000000000ULL)
					l->quick_exits++;
				else
					l->quick_exits = 0;
				l->last_status = st;
				memmove(&l->live[i], &l->live[i + 1],
					(size_t)(l->nlive - i - 1) * sizeof(pid_t));
				memmove(&l->started[i], &l->started[i + 1],
					(size_t)(l->nlive - i - 1) * sizeof(uint64_t));
				l->nlive--;
			}
	}
}

static int l_scale(struct planner_conn *c, const char *role, int n)
{
	struct lconn *l = (struct lconn *)c;
	(void)role;
	l_reap(l);
	if (l->quick_exits >= LOCAL_QUICK_MAX) {
		char why[64];
		status_text(l->last_status, why, sizeof(why));
		return err_set(-ECHILD, "the worker command failed %d times in a row, each "
			       "within %d s of its start (last: %s): %s", l->quick_exits,
			       LOCAL_QUICK_S, why, l->cmd + strlen("exec "));
	}
	while (l->nlive < n && l->nlive < LOCAL_MAX) {
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0)
			return err_set(-errno, "fork: %s", strerror(errno));
		if (!pid) {
			dup2(2, 1);	/* the planner's stdout carries only decisions */
			signal(SIGINT, SIG_DFL);
			signal(SIGTERM, SIG_DFL);
			execl("/bin/sh", "sh", "-c", l->cmd, (char *)NULL);
			_exit(127);
		}
		fprintf(stderr, "dyn planner: started worker %d\n", (int)pid);
		l->started[l->nlive] = mono_ns();
		l->live[l->nlive++] = pid;
	}
	while (l->nlive > n && l->ndraining < LOCAL_MAX) {
		pid_t pid = l->live[--l->nlive];
		fprintf(stderr, "dyn planner: draining worker %d\n", (int)pid);
		kill(pid, SIGTERM);
		l->draining[l->ndraining++] = pid;
	}
	return 0;
}

static int l_decision(struct planner_conn *c, const char *json)
{
	(void)c;
	(void)json;
	return 0;
}

static void l_free(struct planner_conn *c)
{
	struct lconn *l = (struct lconn *)c;
	l_scale(c, "agg", 0);
	time_t end = time(NULL) + LOCAL_STOP_S;
	while (l->ndraining) {
		if (time(NULL) > end)
			for (int i = 0; i < l->ndraining; i++)
				kill(l->draining[i], SIGKILL);
		l_reap(l);
		if (l->ndraining)
			nanosleep(&(struct timespec){ 0, 50000000 }, NULL);
	}
	free(l->cmd);
	free(l);
}

int planner_conn_local(const char *cmd, struct planner_conn **out)
{
	struct lconn *l = xcalloc(1, sizeof(*l));
	l->c = (struct planner_conn){ "local", l_scale, l_decision, l_free };
	struct strbuf sb = STRBUF_INIT;
	sb_addf(&sb, "exec %s", cmd);	/* the worker itself gets the signals */
	size_t len;
	l->cmd = sb_detach(&sb, &len);
	*out = &l->c;
	return 0;
}
