/*
 * planner_slurm.c - the planner's slurm connector (planner_conn.h): the
 * local connector's worker pool (planner_proc.h) with each worker an srun
 * job step of the allocation the planner runs in.
 */
#include "cmd/planner_conn.h"
#include "cmd/planner_proc.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct sconn {
	struct proc_conn pc;	/* first */
	char *job;		/* $SLURM_JOB_ID */
	char **nodes;		/* the allocation's host names */
	pid_t pid;		/* the planner's (exec runs in a child) */
};

/* Run a Slurm command (argv, no shell); its standard output into out when
 * out is given.  0 when it exited 0, else -1 (its stderr is the planner's). */
static int run(char *const argv[], struct strbuf *out)
{
	int fd[2];
	if (pipe(fd) < 0)
		return -1;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		close(fd[0]);
		close(fd[1]);
		return -1;
	}
	if (!pid) {
		close(fd[0]);
		dup2(out ? fd[1] : 2, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "dyn planner: %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fd[1]);
	char buf[4096];
	ssize_t n;
	while ((n = read(fd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR))
		if (n > 0 && out)
			sb_add(out, buf, (size_t)n);
	close(fd[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -1;
}

/* Unique in the job: the steps of two planners do not mix. */
static void step_name(const struct sconn *s, const struct proc_worker *w, char *buf, size_t n)
{
	snprintf(buf, n, "dyn-planner-%d-w%ld", (int)s->pid, w->seq);
}

static void s_exec(struct proc_conn *pc, const struct proc_worker *w)
{
	struct sconn *s = (struct sconn *)pc;
	char name[64], jn[80], nl[300];
	step_name(s, w, name, sizeof(name));
	snprintf(jn, sizeof(jn), "--job-name=%s", name);
	snprintf(nl, sizeof(nl), "--nodelist=%s", s->nodes[w->node]);
	fprintf(stderr, "dyn planner: worker %d (%s #%ld): srun step %s on %s\n",
		(int)getpid(), w->role, w->seq, name, s->nodes[w->node]);
	execlp("srun", "srun", "--overlap", "--nodes=1", "--ntasks=1", nl, jn, "/bin/sh", "-c",
	       pc->cmd, (char *)NULL);
	fprintf(stderr, "dyn planner: srun: %s\n", strerror(errno));
}

/* w's step as JOB.STEP into id, from squeue; 0, or -1 when it has none
 * (yet: srun still waits for resources, or no more). */
static int step_id(struct sconn *s, const struct proc_worker *w, char *id, size_t n)
{
	char name[64];
	step_name(s, w, name, sizeof(name));
	struct strbuf out = STRBUF_INIT;
	/* squeue --name does not select steps; %j is cut at 8 without a width */
	char *argv[] = { "squeue", "--steps", "--noheader", "--format=%i %200j", "--jobs", s->job,
			 NULL };
	int found = -1;
	char *save = NULL, *in;
	for (char *l = run(argv, &out) ? NULL : strtok_r(out.buf, "\n", &save);
	     l && found; l = strtok_r(NULL, "\n", &save)) {
		char *sid = strtok_r(l, " ", &in), *sname = strtok_r(NULL, " ", &in);
		if (sid && sname && !strcmp(sname, name) && strlen(sid) < n) {
			strcpy(id, sid);
			found = 0;
		}
	}
	sb_release(&out);
	return found;
}

/* Drain: SIGTERM to the step's task (dyn serve drains, exits, srun ends).
 * A step not running yet is only an srun waiting: SIGTERM cancels it. */
static void s_drain(struct proc_conn *pc, const struct proc_worker *w)
{
	struct sconn *s = (struct sconn *)pc;
	char id[64];
	if (step_id(s, w, id, sizeof(id)) < 0) {
		kill(w->pid, SIGTERM);
		return;
	}
	char *argv[] = { "scancel", "--signal=TERM", id, NULL };
	if (run(argv, NULL) < 0) {
		fprintf(stderr, "dyn planner: scancel --signal=TERM %s failed; ending its srun\n",
			id);
		kill(w->pid, SIGTERM);
	}
}

static void s_kill(struct proc_conn *pc, const struct proc_worker *w)
{
	struct sconn *s = (struct sconn *)pc;
	char id[64];
	if (step_id(s, w, id, sizeof(id)) == 0) {
		char *argv[] = { "scancel", id, NULL };
		run(argv, NULL);
	}
	kill(w->pid, SIGKILL);
}

static void s_release(struct proc_conn *pc)
{
	struct sconn *s = (struct sconn *)pc;
	for (int i = 0; i < pc->nnodes; i++)
		free(s->nodes[i]);
	free(s->nodes);
	free(s->job);
}

int planner_conn_slurm(const char *cmd, struct planner_conn **out)
{
	const char *job = getenv("SLURM_JOB_ID"), *list = getenv("SLURM_JOB_NODELIST");
	if (!job || !*job || !list || !*list)
		return err_set(-EINVAL, "not inside a Slurm allocation (SLURM_JOB_ID and "
			       "SLURM_JOB_NODELIST unset): run the planner in sbatch or salloc");
	struct strbuf hosts = STRBUF_INIT;
	char *argv[] = { "scontrol", "show", "hostnames", (char *)list, NULL };
	if (run(argv, &hosts) < 0) {
		sb_release(&hosts);
		return err_set(-EINVAL, "scontrol show hostnames %s failed", list);
	}
	char **nodes = NULL, *save = NULL;
	int n = 0;
	for (char *h = strtok_r(hosts.buf, "\n", &save); h; h = strtok_r(NULL, "\n", &save)) {
		nodes = xrealloc(nodes, (size_t)(n + 1) * sizeof(*nodes));
		nodes[n++] = xstrdup(h);
	}
	sb_release(&hosts);
	if (!n)	/* scontrol exits 0 on a list it cannot read */
		return err_set(-EINVAL, "SLURM_JOB_NODELIST %s: scontrol show hostnames finds "
			       "no node in it", list);
	struct sconn *s = xcalloc(1, sizeof(*s));
	proc_conn_init(&s->pc, "slurm", cmd, n);
	s->pc.exec = s_exec;
	s->pc.drain = s_drain;
	s->pc.kill = s_kill;
	s->pc.release = s_release;
	s->job = xstrdup(job);
	s->nodes = nodes;
	s->pid = getpid();
	fprintf(stderr, "dyn planner: slurm job %s, %d node%s (%s)\n", job, n, n > 1 ? "s" : "",
		list);
	*out = &s->pc.c;
	return 0;
}
