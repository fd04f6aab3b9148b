/*
 * test_harness.c - tests of the unit-test harness itself (check.h).
 *
 * The cases named inner_* are the harness's subjects: they crash, hang,
 * fail, skip and leave state behind on purpose.  They run only when this
 * binary runs itself with DYN_HARNESS_INNER=1; the outer cases start it
 * that way and check what the harness printed for each of them.
 */
#include "test/unit/check.h"

#include <pthread.h>
#include <stdint.h>

/* ---- the subjects (inner mode) ---- */

static int leftover;	/* set by one case, must read 0 in the next */

TEST(inner_a_pass)
{
	CHECK_INT(1 + 1, 2);
}

TEST(inner_b_crash)
{
	abort();
}

TEST(inner_c_after_crash)
{
	CHECK_INT(leftover, 0);
}

TEST(inner_d_fail)
{
	int two = 2;
	CHECK_INT(two, 3);
}

TEST(inner_e_hang)
{
	for (;;)
		pause();
}

TEST(inner_f_sets_state)
{
	leftover = 42;
}

TEST(inner_g_sees_no_state)
{
	CHECK_INT(leftover, 0);
}

TEST(inner_h_skip)
{
	CHECK_SKIP("no fixture here");
}

/* A thread that keeps writing into its starter's stack frame: when the
 * starter's CHECK fails, that frame is gone. */
static void *scribble(void *arg)
{
	volatile uint64_t *slot = arg;
	for (;;)
		*slot += 1;
	return NULL;
}

TEST(inner_i_thread_outlives_check)
{
	volatile uint64_t slot = 0;
	pthread_t t;
	CHECK(pthread_create(&t, NULL, scribble, (void *)&slot) == 0);
	while (slot == 0)
		;
	CHECK_MSG(0, "failed with the thread still running");
}

TEST(inner_j_after_thread)
{
	CHECK_INT(leftover, 0);
}

TEST(inner_k_exits)
{
	exit(3);
}

/* 600 trivial cases: more than the old harness's fixed table held. */
#define MANY1(p) \
	TEST(inner_many_##p) { CHECK(1); }
#define MANY10(p)                                                       \
	MANY1(p##0) MANY1(p##1) MANY1(p##2) MANY1(p##3) MANY1(p##4)     \
	MANY1(p##5) MANY1(p##6) MANY1(p##7) MANY1(p##8) MANY1(p##9)
#define MANY100(p)                                                      \
	MANY10(p##0) MANY10(p##1) MANY10(p##2) MANY10(p##3) MANY10(p##4) \
	MANY10(p##5) MANY10(p##6) MANY10(p##7) MANY10(p##8) MANY10(p##9)
MANY100(a)
MANY100(b)
MANY100(c)
MANY100(d)
MANY100(e)
MANY100(f)

TEST(inner_z)
{
	CHECK(1);
}

TEST(inner_z_last)
{
	CHECK(1);
}

/* ---- the checks (outer mode) ---- */

struct run {
	char *out;	/* everything the inner run printed on stdout */
	int status;	/* its exit status, or -1 */
};

/* Run this binary in inner mode with the extra environment env. */
static struct run run_inner(const char *env)
{
	static char self[4096];
	struct run r = { NULL, -1 };
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return r;
	self[n] = '\0';
	char cmd[8192];
	/* The outer run's own selection (TEST_CASE=...) must not leak in. */
	snprintf(cmd, sizeof(cmd), "env -u TEST_CASE -u TEST_NOFORK DYN_HARNESS_INNER=1 %s '%s' "
		 "2>/dev/null", env, self);
	FILE *p = popen(cmd, "r");
	if (!p)
		return r;
	size_t cap = 1 << 16, len = 0, got;
	r.out = malloc(cap);
	while (r.out && (got = fread(r.out + len, 1, cap - len - 1, p)) > 0) {
		len += got;
		if (cap - len < 4096) {
			char *bigger = realloc(r.out, cap * 2);
			if (!bigger)
				break;
			r.out = bigger;
			cap *= 2;
		}
	}
	if (r.out)
		r.out[len] = '\0';
	int st = pclose(p);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	return r;
}

/* The report line of inner case name (without its newline), or NULL. */
static const char *line_of(const char *out, const char *name, char *buf,
			   size_t size)
{
	for (const char *l = out; l && *l;) {
		const char *end = strchr(l, '\n');
		size_t len = end ? (size_t)(end - l) : strlen(l);
		const char *colon = memchr(l, ':', len);
		const char *slash = memchr(l, '/', len);
		if (colon && slash && slash > colon) {
			const char *nm = slash + 1;
			size_t nlen = strlen(name);
			if (len - (size_t)(nm - l) >= nlen &&
			    !strncmp(nm, name, nlen) &&
			    (nm + nlen == l + len || nm[nlen] == ':')) {
				snprintf(buf, size, "%.*s", (int)len, l);
				return buf;
			}
		}
		l = end ? end + 1 : NULL;
	}
	return NULL;
}

static int count_prefix(const char *out, const char *prefix)
{
	int n = 0;
	size_t plen = strlen(prefix);
	for (const char *l = out; l && *l;) {
		if (!strncmp(l, prefix, plen))
			n++;
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return n;
}

#define CHECK_LINE(out, name, want_prefix)                                 \
	do {                                                               \
		char b_[2048];                                             \
		const char *l_ = line_of(out, name, b_, sizeof(b_));       \
		CHECK_MSG(l_, "no report line for %s", name);              \
		CHECK_MSG(!strncmp(l_, want_prefix, strlen(want_prefix)),  \
			  "%s: got \"%s\", expected it to start \"%s\"",   \
			  name, l_, want_prefix);                          \
	} while (0)

TEST(crash_is_a_fail_and_the_next_case_runs)
{
	struct run r = run_inner("TEST_CASE_TIMEOUT=2");
	CHECK(r.out);
	CHECK_INT(r.status, 1);
	CHECK_LINE(r.out, "inner_a_pass", "PASS: test_harness/inner_a_pass");
	CHECK_LINE(r.out, "inner_b_crash",
		   "FAIL: test_harness/inner_b_crash: killed by signal 6");
	CHECK_LINE(r.out, "inner_c_after_crash",
		   "PASS: test_harness/inner_c_after_crash");
	CHECK_LINE(r.out, "inner_d_fail", "FAIL: test_harness/inner_d_fail: ");
	char b[2048];
	const char *l = line_of(r.out, "inner_d_fail", b, sizeof(b));
	CHECK(l && strstr(l, "test_harness.c:") &&
	      strstr(l, "two == 2, expected 3 == 3"));
	CHECK_LINE(r.out, "inner_e_hang",
		   "FAIL: test_harness/inner_e_hang: timed out after 2s");
	CHECK_LINE(r.out, "inner_f_sets_state",
		   "PASS: test_harness/inner_f_sets_state");
	CHECK_LINE(r.out, "inner_g_sees_no_state",
		   "PASS: test_harness/inner_g_sees_no_state");
	CHECK_LINE(r.out, "inner_h_skip",
		   "SKIP: test_harness/inner_h_skip: ");
	l = line_of(r.out, "inner_h_skip", b, sizeof(b));
	CHECK(l && strstr(l, "no fixture here"));
	CHECK_LINE(r.out, "inner_i_thread_outlives_check",
		   "FAIL: test_harness/inner_i_thread_outlives_check: ");
	l = line_of(r.out, "inner_i_thread_outlives_check", b, sizeof(b));
	CHECK(l && strstr(l, "failed with the thread still running"));
	CHECK_LINE(r.out, "inner_j_after_thread",
		   "PASS: test_harness/inner_j_after_thread");
	CHECK_LINE(r.out, "inner_k_exits",
		   "FAIL: test_harness/inner_k_exits: exited with status 3");
	CHECK_LINE(r.out, "inner_z_last", "PASS: test_harness/inner_z_last");
	/* Exactly the failures above, and one line per case. */
	CHECK_INT(count_prefix(r.out, "FAIL: "), 5);
	CHECK_INT(count_prefix(r.out, "SKIP: "), 1);
	CHECK_INT(count_prefix(r.out, "PASS: "), 7 + 600);
	free(r.out);
}

TEST(more_cases_than_the_old_table_all_run)
{
	struct run r = run_inner("TEST_CASE=inner_many_");
	CHECK(r.out);
	CHECK_INT(r.status, 0);
	CHECK_INT(count_prefix(r.out, "PASS: test_harness/inner_many_"), 600);
	CHECK_INT(count_prefix(r.out, "FAIL: "), 0);
	CHECK_LINE(r.out, "inner_many_f99", "PASS: test_harness/inner_many_f99");
	free(r.out);
}

TEST(a_case_selected_alone_passes)
{
	/* It passes alone: it does not depend on an earlier case. */
	struct run r = run_inner("TEST_CASE=inner_g_sees_no_state");
	CHECK(r.out);
	CHECK_INT(r.status, 0);
	CHECK_STR(r.out, "PASS: test_harness/inner_g_sees_no_state\n");
	free(r.out);

	/* An exact name selects only that case, not those it prefixes. */
	r = run_inner("TEST_CASE=inner_z");
	CHECK(r.out);
	CHECK_STR(r.out, "PASS: test_harness/inner_z\n");
	free(r.out);

	/* A name that is no case's part is an error, not an empty pass. */
	r = run_inner("TEST_CASE=no_such_case");
	CHECK(r.out);
	CHECK_INT(r.status, 1);
	CHECK_STR(r.out, "FAIL: test_harness: TEST_CASE=no_such_case names no case\n");
	free(r.out);
}

TEST(nofork_runs_in_process)
{
	/* State then carries over, which is how the run tells it apart. */
	struct run r = run_inner("TEST_NOFORK=1 TEST_CASE=_state");
	CHECK(r.out);
	CHECK_LINE(r.out, "inner_f_sets_state",
		   "PASS: test_harness/inner_f_sets_state");
	CHECK_LINE(r.out, "inner_g_sees_no_state",
		   "FAIL: test_harness/inner_g_sees_no_state: ");
	free(r.out);
}

/* Keep the cases of one mode only: inner_* or the others. */
static void keep_cases(int inner)
{
	struct check_case **p = &check_first;
	while (*p) {
		if (!strncmp((*p)->name, "inner_", 6) == !inner)
			*p = (*p)->next;
		else
			p = &(*p)->next;
	}
	check_tail = p;
}

int main(void)
{
	keep_cases(getenv("DYN_HARNESS_INNER") != NULL);
	return RUN_TESTS();
}
