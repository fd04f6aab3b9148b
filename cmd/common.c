/*
 * common.c - helpers shared by the subcommands (see cmd.h).
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>

int cmd_options(const struct opt_cmd *cmd, int argc, char **argv, int *nargs)
{
	int rc = opt_parse(cmd, argc, argv, nargs);
	if (rc == OPT_HELP) {
		opt_usage(cmd, stdout);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "dyn %s: %s\n", cmd->name, err_msg());
		return EXIT_USAGE;
	}
	return -1;
}

/* "dyn NAME: message" on stderr, then return status. */
static int report(int status, const char *name, const char *fmt, va_list ap)
{
	fprintf(stderr, "dyn %s: ", name);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	return status;
}

int cmd_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = report(EXIT_USAGE, name, fmt, ap);
	va_end(ap);
	return rc;
}

int cmd_fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = report(1, name, fmt, ap);
	va_end(ap);
	return rc;
}

const char *cmd_suggest(const char *name)
{
	const char *names[64];
	size_t n = 0;

	for (const struct cmd_entry *c = dyn_commands; c->name && n < 63; c++)
		names[n++] = c->name;
	names[n] = NULL;
	return str_closest(name, names);
}
