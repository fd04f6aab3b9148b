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

int cmd_usage_error(const char *name, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dyn %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

int cmd_fail(const char *name, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dyn %s: ", name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
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
