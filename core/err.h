/*
 * err.h - error reporting for every layer below cmd/.
 *
 * Functions return 0 on success or a negative errno-style code on failure
 * and record a human-readable message in thread-local storage; the caller
 * (ultimately cmd/) decides whether to print it.  Typical use:
 *
 *     if (fd < 0)
 *             return err_set(-errno, "open %s: %s", path, strerror(errno));
 *
 * The message survives until the next err_set() on the same thread.
 * Thread-safety: each thread has its own message.
 */
#ifndef DYN_ERR_H
#define DYN_ERR_H

#include <stdarg.h>

/* Record a message and return code (which should be negative). */
int err_set(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
int err_setv(int code, const char *fmt, va_list ap);

/* Prefix the current message with "prefix: " and return code unchanged. */
int err_wrap(int code, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The last message recorded on this thread ("" if none). */
const char *err_msg(void);

void err_clear(void);

#endif
