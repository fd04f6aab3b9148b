/*
 * err.c - thread-local error messages (see err.h).
 */
#include "core/err.h"

#include <stdio.h>
#include <string.h>

#define ERR_MSG_MAX 1024

static _Thread_local char err_buf[ERR_MSG_MAX];

int err_setv(int code, const char *fmt, va_list ap)
{
	vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
	return code;
}

int err_set(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	err_setv(code, fmt, ap);
	va_end(ap);
	return code;
}

int err_wrap(int code, const char *fmt, ...)
{
	char prefix[ERR_MSG_MAX], old[ERR_MSG_MAX];
	va_list ap;

	memcpy(old, err_buf, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	/* prefix + ": " + old, truncated to fit */
	size_t pl = strlen(prefix), ol = old[0] ? strlen(old) : 0;
	size_t room = sizeof(err_buf) - 1;
	if (pl > room)
		pl = room;
	memcpy(err_buf, prefix, pl);
	if (ol && pl + 2 < room) {
		memcpy(err_buf + pl, ": ", 2);
		pl += 2;
		if (ol > room - pl)
			ol = room - pl;
		memcpy(err_buf + pl, old, ol);
		pl += ol;
	}
	err_buf[pl] = '\0';
	return code;
}

const char *err_msg(void)
{
	return err_buf;
}

void err_clear(void)
{
	err_buf[0] = '\0';
}
