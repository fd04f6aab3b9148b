/*
 * common.c - helpers shared by the subcommands (see cmd.h).
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/parse/parse.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/rpc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

int cmd_options_only(const struct opt_cmd *cmd, int argc, char **argv)
{
	int nargs, rc = cmd_options(cmd, argc, argv, &nargs);
	if (rc < 0 && nargs > 0)
		return cmd_usage_error(cmd->name, "unexpected argument '%s'", argv[0]);
	return rc;
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

int cmd_store_fail(const char *name, int rc)
{
	if (rc == -EINVAL || rc == -ENOTSUP)
		return cmd_usage_error(name, "%s", err_msg());
	return cmd_fail(name, "%s", err_msg());
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

int cmd_dispatch_verbs(const char *cmd, const struct cmd_verb *verbs, size_t n_verbs,
		       void (*usage)(FILE *out), int argc, char **argv)
{
	struct strbuf list;
	const char *names[n_verbs + 1];
	int rc;

	sb_init(&list, 0);
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
			  !strcmp(argv[1], "help"))) {
		usage(stdout);
		sb_release(&list);
		return 0;
	}
	for (size_t i = 0; i < n_verbs; i++) {
		if (argc >= 2 && !strcmp(argv[1], verbs[i].name)) {
			sb_release(&list);
			return verbs[i].fn(argc - 1, argv + 1);
		}
		names[i] = verbs[i].name;
		sb_addf(&list, "%s%s", i ? ", " : "", verbs[i].name);
	}
	names[n_verbs] = NULL;
	const char *near = argc >= 2 ? str_closest(argv[1], names) : NULL;
	if (argc < 2)
		rc = cmd_usage_error(cmd, "expected a verb: %s (see 'dyn %s --help')", list.buf, cmd);
	else if (near)
		rc = cmd_usage_error(cmd, "'%s' is not a verb of dyn %s (did you mean '%s'?)", argv[1], cmd,
				     near);
	else
		rc = cmd_usage_error(cmd, "'%s' is not a verb of dyn %s (%s)", argv[1], cmd, list.buf);
	sb_release(&list);
	return rc;
}

int cmd_check_parsers(const char *cmd, const char *tool, const char *rsn)
{
	if (*tool && strcmp(tool, "auto") && parse_tool_by_name(tool) < 0)
		return cmd_usage_error(cmd, "--tool-call-parser: unknown parser '%s' (known: %s, "
				       "auto)", tool, parse_tool_names());
	if (*rsn && strcmp(rsn, "auto") && parse_reasoning_by_name(rsn) < 0)
		return cmd_usage_error(cmd, "--reasoning-parser: unknown parser '%s' (known: %s, "
				       "auto)", rsn, parse_reasoning_names());
	return 0;
}

int cmd_check_name(const char *cmd, const char *option, const char *name)
{
	if (endpoint_name_valid(name))
		return 0;
	return cmd_usage_error(cmd, "bad %s '%s' (1-%d characters of [A-Za-z0-9_.-])", option,
			       name, ENDPOINT_NAME_MAX);
}

int cmd_rpc_tls(const char *cmd, const char *cert, const char *key, const char *ca)
{
	int given = !!*cert + !!*key + !!*ca;
	if (!given)
		return -1;
	if (given < 3)
		return cmd_usage_error(cmd, "--rpc-tls-cert, --rpc-tls-key and --rpc-tls-ca go "
				       "together");
	if (rpc_tls_configure(cert, key, ca) < 0)
		return cmd_fail(cmd, "request plane TLS: %s", err_msg());
	return -1;
}
