/*
 * cmd.h - the subcommands of dyn and what they share.
 *
 * Each subcommand is one file in cmd/ with one entry point
 *     int cmd_NAME(int argc, char **argv);   argv[0] is the command name
 * that parses its options with its own opt table (core/opt.h), wires
 * components together and returns the process exit status:
 * 0 success, 1 runtime failure, 2 usage error.  Only cmd/ prints to the
 * user and decides exit codes; everything below returns errors.
 */
#ifndef DYN_CMD_H
#define DYN_CMD_H

#include "core/opt.h"

#define EXIT_USAGE 2

/* Parse options for cmd.  Returns -1 to go on; otherwise the exit status
 * to return at once (0 after printing --help, 2 after printing a usage
 * error "dyn NAME: message"). */
int cmd_options(const struct opt_cmd *cmd, int argc, char **argv, int *nargs);

/* Print "dyn NAME: message" to stderr and return EXIT_USAGE. */
int cmd_usage_error(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print "dyn NAME: message" (or the err_msg()) and return 1. */
int cmd_fail(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_rpc(int argc, char **argv);

/* The command table (main.c), for help and suggestions. */
struct cmd_entry {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};
extern const struct cmd_entry dyn_commands[];
const struct cmd_entry *cmd_lookup(const char *name);
/* The command name closest to name (a likely typo), or NULL. */
const char *cmd_suggest(const char *name);

#endif
