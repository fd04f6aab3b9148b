/*
 * check.h - the unit-test harness: one header, no framework.
 *
 *     TEST(strbuf_grows) { ... CHECK(x == 1); CHECK_STR(a, "b"); }
 *     int main(void) { return RUN_TESTS(); }
 *
 * Each TEST registers itself (a linked list: no limit on their number);
 * RUN_TESTS() runs them in file order and prints one line per test,
 * "PASS: file/name", "FAIL: file/name: where: what" or
 * "SKIP: file/name: why", which test/run.sh counts.
 *
 * Every case runs in a child process of its own (fork per case), so a case
 * sees none of the state an earlier case left behind, a failed CHECK cannot
 * leave threads writing into a stack that is reused, and a crash or a hang
 * ends only that case: the parent reports it as the case's FAIL (with the
 * signal, the exit status or the time limit) and goes on with the next.
 * A case that needs something expensive builds it lazily in a fixture
 * function of its own; each child builds it again.
 *
 * Environment:
 *   TEST_CASE=name      run only the case of that exact name, or, when no
 *                       case has that name, those whose name contains it
 *   TEST_CASE_TIMEOUT=s a case's time limit in seconds (default 240)
 *   TEST_NOFORK=1       run the cases in this process (for a debugger);
 *                       a crash then ends the whole run
 *
 * Cases run one at a time; the macros are for the case's own thread only.
 */
#ifndef DYN_CHECK_H
#define DYN_CHECK_H

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef void (*check_fn)(void);

struct check_case {
	const char *name;
	check_fn fn;
	struct check_case *next;
};

/* The outcome a case leaves for the parent, in memory shared with it. */
enum { CHECK_RUNNING, CHECK_FAILED, CHECK_SKIPPED };
struct check_result {
	int state;
	char where[1024];
};

static struct check_case *check_first, **check_tail = &check_first;
static struct check_result check_local, *check_res = &check_local;
static jmp_buf check_jmp;

#define TEST(name)                                                        \
	static void test_##name(void);                                    \
	static struct check_case check_case_##name = { #name, test_##name, \
						       NULL };            \
	__attribute__((constructor)) static void register_##name(void)    \
	{                                                                 \
		*check_tail = &check_case_##name;                         \
		check_tail = &check_case_##name.next;                     \
	}                                                                 \
	static void test_##name(void)

/* End the case with state (CHECK_FAILED or CHECK_SKIPPED) and a message. */
#define CHECK_END_(state_, ...)                                           \
	do {                                                              \
		char *w_ = check_res->where;                              \
		int n_ = snprintf(w_, sizeof(check_res->where),           \
				  "%s:%d: ", __FILE__, __LINE__);         \
		if (n_ > 0 && (size_t)n_ < sizeof(check_res->where))      \
			snprintf(w_ + n_,                                 \
				 sizeof(check_res->where) - (size_t)n_,   \
				 __VA_ARGS__);                            \
		check_res->state = (state_);                              \
		longjmp(check_jmp, 1);                                    \
	} while (0)

#define CHECK_FAIL(...) CHECK_END_(CHECK_FAILED, __VA_ARGS__)

/* The case cannot run here (a missing fixture, say): report SKIP. */
#define CHECK_SKIP(...) CHECK_END_(CHECK_SKIPPED, __VA_ARGS__)

#define CHECK(cond)                                                       \
	do {                                                              \
		if (!(cond))                                              \
			CHECK_FAIL("CHECK(%s) failed", #cond);            \
	} while (0)

#define CHECK_MSG(cond, ...)                                              \
	do {                                                              \
		if (!(cond))                                              \
			CHECK_FAIL(__VA_ARGS__);                          \
	} while (0)

#define CHECK_INT(a, b)                                                   \
	do {                                                              \
		long long a_ = (long long)(a), b_ = (long long)(b);       \
		if (a_ != b_)                                             \
			CHECK_FAIL("%s == %lld, expected %s == %lld", #a,  \
				   a_, #b, b_);                           \
	} while (0)

#define CHECK_STR(a, b)                                                   \
	do {                                                              \
		const char *a_ = (a), *b_ = (b);                          \
		if (!a_ || !b_ || strcmp(a_, b_))                         \
			CHECK_FAIL("%s == \"%s\", expected \"%s\"", #a,    \
				   a_ ? a_ : "(null)", b_ ? b_ : "(null)"); \
	} while (0)

/* The test file's base name without extension, for the report lines. */
static inline void check_base(const char *path, char *out, size_t size)
{
	const char *s = strrchr(path, '/');
	snprintf(out, size, "%s", s ? s + 1 : path);
	char *dot = strrchr(out, '.');
	if (dot)
		*dot = '\0';
}

/* Run one case here; its outcome is left in *check_res. */
static inline void check_call(const struct check_case *c)
{
	check_res->state = CHECK_RUNNING;
	check_res->where[0] = '\0';
	if (setjmp(check_jmp) == 0)
		c->fn();
}

static inline double check_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run c in a child process and describe a failure in why (empty: passed).
 * Returns the case's state as the parent saw it. */
static inline int check_fork(const struct check_case *c, double timeout,
			     const sigset_t *old_mask, char *why, size_t size)
{
	why[0] = '\0';
	check_res->state = CHECK_RUNNING;
	check_res->where[0] = '\0';
	fflush(NULL);	/* or the child would write the parent's buffers again */
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, size, "fork: %s", strerror(errno));
		return CHECK_FAILED;
	}
	if (pid == 0) {
		sigprocmask(SIG_SETMASK, old_mask, NULL);
		check_call(c);
		fflush(NULL);
		/* exit() runs the test's atexit cleanups (and LeakSanitizer)
		 * in this child; the outcome is already in shared memory, so
		 * whatever a failed case's threads do meanwhile cannot hide it. */
		exit(check_res->state == CHECK_FAILED ? 1 : 0);
	}

	/* Wait for the child, waking on SIGCHLD (blocked, so it stays
	 * pending) or at least every 100 ms. */
	double deadline = check_now() + timeout;
	int status = 0;
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			snprintf(why, size, "waitpid: %s", strerror(errno));
			return CHECK_FAILED;
		}
		double left = deadline - check_now();
		if (left <= 0) {
			kill(pid, SIGKILL);
			while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
				;
			snprintf(why, size, "timed out after %gs%s%s", timeout,
				 check_res->where[0] ? "; last: " : "",
				 check_res->where);
			return CHECK_FAILED;
		}
		sigset_t chld;
		sigemptyset(&chld);
		sigaddset(&chld, SIGCHLD);
		if (left > 0.1)
			left = 0.1;
		struct timespec ts = { 0, (long)(left * 1e9) };
		sigtimedwait(&chld, NULL, &ts);
	}

	if (check_res->state == CHECK_FAILED) {
		snprintf(why, size, "%s", check_res->where);
		return CHECK_FAILED;
	}
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		snprintf(why, size, "killed by signal %d (%s)%s%s", sig,
			 strsignal(sig),
			 check_res->state == CHECK_SKIPPED ? " after: " : "",
			 check_res->state == CHECK_SKIPPED ? check_res->where : "");
		return CHECK_FAILED;
	}
	if (WEXITSTATUS(status) != 0) {
		/* exit() from inside the case, or a sanitizer's report at exit
		 * (LeakSanitizer): the details are on stderr. */
		snprintf(why, size, "exited with status %d (see stderr)",
			 WEXITSTATUS(status));
		return CHECK_FAILED;
	}
	if (check_res->state == CHECK_SKIPPED)
		snprintf(why, size, "%s", check_res->where);
	return check_res->state;
}

static inline int check_run(const char *file)
{
	const char *filter = getenv("TEST_CASE");
	const char *t = getenv("TEST_CASE_TIMEOUT");
	double timeout = t && atof(t) > 0 ? atof(t) : 240;
	int nofork = getenv("TEST_NOFORK") && strcmp(getenv("TEST_NOFORK"), "0");
	char base[128], why[sizeof(check_res->where) + 64];
	int failed = 0, ran = 0, exact = 0;

	check_base(file, base, sizeof(base));
	if (filter && !*filter)
		filter = NULL;
	for (struct check_case *c = check_first; filter && c; c = c->next)
		if (!strcmp(c->name, filter))
			exact = 1;

	sigset_t chld, old_mask;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	if (!nofork) {
		void *shared = mmap(NULL, sizeof(struct check_result),
				    PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (shared == MAP_FAILED) {
			printf("FAIL: %s: mmap: %s\n", base, strerror(errno));
			return 1;
		}
		check_res = shared;
		sigprocmask(SIG_BLOCK, &chld, &old_mask);
	}

	for (struct check_case *c = check_first; c; c = c->next) {
		if (filter && (exact ? strcmp(c->name, filter)
				     : !strstr(c->name, filter)))
			continue;
		ran++;
		int state;
		if (nofork) {
			check_call(c);
			state = check_res->state;
			snprintf(why, sizeof(why), "%s", check_res->where);
		} else {
			state = check_fork(c, timeout, &old_mask, why,
					   sizeof(why));
		}
		if (state == CHECK_FAILED) {
			printf("FAIL: %s/%s: %s\n", base, c->name, why);
			failed++;
		} else if (state == CHECK_SKIPPED) {
			printf("SKIP: %s/%s: %s\n", base, c->name, why);
		} else {
			printf("PASS: %s/%s\n", base, c->name);
		}
		fflush(stdout);
	}
	if (!nofork)
		sigprocmask(SIG_SETMASK, &old_mask, NULL);
	if (filter && !ran) {
		printf("FAIL: %s: TEST_CASE=%s names no case\n", base, filter);
		return 1;
	}
	return failed ? 1 : 0;
}

#define RUN_TESTS() check_run(__FILE__)

#endif
