/*
 * util.h - small helpers every module uses: checked allocation, clocks,
 * and "did you mean" suggestions.
 *
 * x*alloc abort on out-of-memory with a message (see strbuf.h for why).
 * All functions are thread-safe.
 */
#ifndef DYN_UTIL_H
#define DYN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* The value of hex digit c (0-9, a-f, A-F), or -1. */
static inline int hex_digit(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Monotonic clock (for durations and timeouts). */
uint64_t mono_ns(void);
static inline uint64_t mono_ms(void) { return mono_ns() / 1000000u; }
/* Wall clock in milliseconds since the epoch (comparable across processes). */
int64_t wall_ms(void);

/* Edit distance between a and b (case-sensitive). */
size_t str_distance(const char *a, const char *b);

/* The candidate closest to word, or NULL if none is close enough to be
 * a plausible typo.  candidates is NULL-terminated. */
const char *str_closest(const char *word, const char *const *candidates);

/* Parse a whole string as a number; return 0 or a negative code with a
 * message naming what (e.g. "--port"). */
int parse_long(const char *s, long *out, const char *what);
int parse_double(const char *s, double *out, const char *what);

#endif
