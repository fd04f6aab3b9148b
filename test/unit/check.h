/*
 * check.h - the unit-test harness: one header, no framework.
 *
 *     TEST(strbuf_grows) { ... CHECK(x == 1); CHECK_STR(a, "b"); }
 *     int main(void) { return RUN_TESTS(); }
 *
 * Each TEST registers itself; RUN_TESTS() runs them in file order (or only
 * those whose name contains $TEST_CASE) and prints one line per test,
 * "PASS: file/name" or "FAIL: file/name: where: what", which test/run.sh
 * counts.  A failed CHECK ends that test and moves on to the next.
 */
#ifndef DYN_CHECK_H
#define DYN_CHECK_H

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*check_fn)(void);

struct check_case {
	const char *name;
	check_fn fn;
};

static struct check_case check_cases[512];
static int check_ncases;
static jmp_buf check_jmp;
static char check_where[512];

#define TEST(name)                                                        \
	static void test_##name(void);                                    \
	__attribute__((constructor)) static void register_##name(void)    \
	{                                                                 \
		if (check_ncases < 512)                                   \
			check_cases[check_ncases++] =                     \
				(struct check_case){ #name, test_##name }; \
	}                                                                 \
	static void test_##name(void)

#define CHECK_FAIL(...)                                                   \
	do {                                                              \
		int n_ = snprintf(check_where, sizeof(check_where),       \
				  "%s:%d: ", __FILE__, __LINE__);         \
		if (n_ > 0 && (size_t)n_ < sizeof(check_where))           \
			snprintf(check_where + n_,                        \
				 sizeof(check_where) - (size_t)n_,        \
				 __VA_ARGS__);                            \
		longjmp(check_jmp, 1);                                    \
	} while (0)

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

/* The test file's base name, for the report lines. */
static inline const char *check_file(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

static inline int check_run(const char *file)
{
	const char *filter = getenv("TEST_CASE");
	char base[128];
	volatile int failed = 0;

	snprintf(base, sizeof(base), "%s", check_file(file));
	char *dot = strrchr(base, '.');
	if (dot)
		*dot = '\0';
	for (volatile int i = 0; i < check_ncases; i++) {
		if (filter && !strstr(check_cases[i].name, filter))
			continue;
		if (setjmp(check_jmp) == 0) {
			check_cases[i].fn();
			printf("PASS: %s/%s\n", base, check_cases[i].name);
		} else {
			printf("FAIL: %s/%s: %s\n", base, check_cases[i].name,
			       check_where);
			failed++;
		}
		fflush(stdout);
	}
	return failed ? 1 : 0;
}

#define RUN_TESTS() check_run(__FILE__)

#endif
