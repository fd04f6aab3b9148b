/*
 * opt.h - declarative command-line options.
 *
 * Each command describes its options in one table; that table alone
 * drives parsing, the environment fallback, validation and --help, so
 * the three can never disagree.  Accepted forms:
 *
 *   --name VALUE   --name=VALUE   --flag   --no-flag   --   (ends options)
 *
 * Options may appear before, between or after positional arguments.
 * An option not given on the command line is taken from the environment
 * variable DYN_NAME (upper case, '-' -> '_'), else keeps the default that
 * the caller stored in *value before parsing.
 *
 * Errors (unknown option with a "did you mean", missing value, bad
 * number, out of range, not one of the choices) come back as a negative
 * code with the message in err_msg(); nothing is printed here.
 */
#ifndef DYN_OPT_H
#define DYN_OPT_H

#include <stdio.h>

enum opt_type {
	OPT_BOOL,	/* int *: 0 or 1 */
	OPT_INT,	/* long * */
	OPT_DOUBLE,	/* double * */
	OPT_STRING,	/* const char **: points into argv or environ */
	OPT_ENUM,	/* const char **: one of choices */
};

struct opt {
	const char *name;	/* long name without "--"; NULL ends a table */
	enum opt_type type;
	void *value;
	const char *argname;	/* metavariable shown in --help ("PORT") */
	const char *help;	/* one line */
	double min, max;	/* inclusive range for INT/DOUBLE if min < max */
	const char *const *choices;	/* OPT_ENUM: NULL-terminated */
};

struct opt_cmd {
	const char *name;	/* "store", or "store ls" for sub-verbs */
	const char *usage;	/* "[OPTIONS] ls [PREFIX]" */
	const char *summary;	/* one line: what the command does */
	const char *details;	/* optional extra paragraph(s) for --help */
	const struct opt *opts;
};

#define OPT_HELP 1	/* opt_parse() result: --help was given */

/*
 * Parse argv[1..argc) (argv[0] is the command name).  On success returns
 * 0 (or OPT_HELP) and moves the positional arguments to argv[0..*nargs).
 */
int opt_parse(const struct opt_cmd *cmd, int argc, char **argv, int *nargs);

/* Print the --help text (built from the table and current defaults). */
void opt_usage(const struct opt_cmd *cmd, FILE *out);

/* The environment variable for an option name: "http-port" ->
 * "DYN_HTTP_PORT".  buf must hold strlen(name) + 5 bytes. */
void opt_env_name(const char *name, char *buf, size_t size);

/* Parse a boolean word (1/0, true/false, yes/no, on/off); -1 if none. */
int opt_parse_bool(const char *s);

#endif
