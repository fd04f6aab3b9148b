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

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

/* Parse options for cmd.  Returns -1 to go on; otherwise the exit status
 * to return at once (0 after printing --help, 2 after printing a usage
 * error "dyn NAME: message"). */
int cmd_options(const struct opt_cmd *cmd, int argc, char **argv, int *nargs);
/* cmd_options() for a command that takes options only: an argument left
 * over is a usage error ("unexpected argument 'X'"). */
int cmd_options_only(const struct opt_cmd *cmd, int argc, char **argv);

/* Print "dyn NAME: message" to stderr and return EXIT_USAGE. */
int cmd_usage_error(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Print "dyn NAME: message" (or the err_msg()) and return 1. */
int cmd_fail(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* A store could not be opened (store_open() or store_process_open()
 * returned rc): print "dyn NAME: message" and return EXIT_USAGE for a
 * malformed URL (-EINVAL, -ENOTSUP), else 1 (a store that exists but is
 * unreadable or corrupt is a runtime failure). */
int cmd_store_fail(const char *name, int rc);

/* Commands made of verbs (dyn model info, dyn rpc call ...): run the verb
 * named by argv[1] with argv shifted by one (the verb is its argv[0]).
 * No verb or an unknown one: a usage error naming the closest verb;
 * --help, -h or help: usage(stdout) and 0. */
struct cmd_verb {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};
int cmd_dispatch_verbs(const char *cmd, const struct cmd_verb *verbs, size_t n_verbs,
		       void (*usage)(FILE *out), int argc, char **argv);

/* The KV routing options of dyn frontend and dyn router (opt table
 * entries; weight and temp are doubles, kv_events an int). */
#define CMD_KV_ROUTER_OPTS(weight, temp, kv_events)                                        \
	{ "kv-overlap-score-weight", OPT_DOUBLE, &(weight), "W",                            \
	  "kv mode: weight of the blocks to prefill against the blocks being decoded",      \
	  0, 1e6, NULL },                                                                   \
	{ "router-temperature", OPT_DOUBLE, &(temp), "T",                                    \
	  "kv mode: 0 picks the lowest cost; T > 0 samples with weight exp(-cost/T)",       \
	  0, 1e6, NULL },                                                                   \
	{ "kv-events", OPT_BOOL, &(kv_events), NULL,                                         \
	  "kv mode: use the workers' KV events (--no-kv-events: predict their caches "     \
	  "from the router's own decisions)", 0, 0, NULL }

/* --tool-call-parser and --reasoning-parser (core/parse/parse.h), for dyn
 * frontend and dyn run --http; cmd_check_parsers() checks the names. */
#define CMD_PARSER_OPTS(tool, rsn, for_what)                                               \
	{ "tool-call-parser", OPT_STRING, &(tool), "NAME",                                   \
	  for_what "parse chat output into tool_calls: hermes, mistral, llama3_json, "       \
	  "pythonic, deepseek_v3, deepseek_v31, phi4, qwen3_coder, kimi_k2, glm45, gpt_oss, " \
	  "or auto (each model's, from its chat template)", 0, 0, NULL },                    \
	{ "reasoning-parser", OPT_STRING, &(rsn), "NAME",                                    \
	  for_what "parse chat output into reasoning_content: deepseek_r1, qwen3, granite, "  \
	  "gpt_oss, or auto", 0, 0, NULL }
int cmd_check_parsers(const char *cmd, const char *tool, const char *rsn);

/* --max-local-prefill-length and --max-prefill-queue (core/router/disagg.h),
 * for dyn frontend and dyn router. */
#define CMD_DISAGG_OPTS(local, queue)                                                      \
	{ "max-local-prefill-length", OPT_INT, &(local), "TOKENS",                           \
	  "disaggregated serving: prefill on the decode worker when fewer prompt tokens "   \
	  "than this are not cached there", 0, 1L << 30, NULL },                           \
	{ "max-prefill-queue", OPT_INT, &(queue), "TOKENS",                                  \
	  "disaggregated serving: prefill on the decode worker when every prefill "         \
	  "worker has more prompt tokens than this waiting", 0, 1L << 40, NULL }

/* --health-check-interval and --health-check-timeout (SECONDS, doubles;
 * core/discovery/health.h), for dyn frontend and dyn router. */
#define CMD_HEALTH_CHECK_OPTS(every, timeout)                                              \
	{ "health-check-interval", OPT_DOUBLE, &(every), "SECONDS",                          \
	  "ask every worker this often whether it runs (0: never); one that does not "      \
	  "answer is not routed to until it does", 0, 3600, NULL },                        \
	{ "health-check-timeout", OPT_DOUBLE, &(timeout), "SECONDS",                         \
	  "how long a worker has to answer a health check", 0.05, 3600, NULL }
/* Their values as worker_health_opts' milliseconds (0 seconds: never). */
#define CMD_HEALTH_CHECK_MS(seconds) ((seconds) > 0 ? (int64_t)((seconds) * 1000) : -1)

/* --rpc-tls-cert, --rpc-tls-key and --rpc-tls-ca: mutual TLS on the
 * request plane (net/rpc.h), for every command that serves or calls it. */
#define CMD_RPC_TLS_OPTS(cert, key, ca)                                                     \
	{ "rpc-tls-cert", OPT_STRING, &(cert), "PEM",                                         \
	  "request plane over mutual TLS: this process's certificate (chain)", 0, 0, NULL }, \
	{ "rpc-tls-key", OPT_STRING, &(key), "PEM",                                           \
	  "request plane over mutual TLS: the certificate's private key", 0, 0, NULL },      \
	{ "rpc-tls-ca", OPT_STRING, &(ca), "PEM",                                             \
	  "request plane over mutual TLS: the cluster CA that every peer's certificate "     \
	  "must come from", 0, 0, NULL }
/* Turn the request plane's TLS on when the three are given (none: plain
 * TCP).  Returns -1 to go on, else the exit status after printing why:
 * EXIT_USAGE for some but not all given, 1 for files that do not load. */
int cmd_rpc_tls(const char *cmd, const char *cert, const char *key, const char *ca);

/* 0 when name is a valid namespace or component name, else print a usage
 * error for cmd naming the option (e.g. "--namespace") and return
 * EXIT_USAGE. */
int cmd_check_name(const char *cmd, const char *option, const char *name);

int cmd_help(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_store(int argc, char **argv);
int cmd_rpc(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_template(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_frontend(int argc, char **argv);
int cmd_router(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_planner(int argc, char **argv);
int cmd_run(int argc, char **argv);

/* Hub download progress (cmd/progress.c): a bar on stderr when it is a
 * terminal, else a log line every 10 s and one per finished file.  Use as
 * hub_opts.progress with progress_arg pointing to a zeroed struct
 * cmd_progress; call cmd_progress_done() when the download returns. */
struct hub_progress;
struct cmd_progress {
	int checked;		/* tty has been set */
	int tty;		/* stderr is a terminal */
	int drawn;		/* a bar is on screen, without its newline */
	unsigned long long last_ns;
	unsigned long long start_ns;
};
void cmd_hub_progress(void *arg, const struct hub_progress *p);
void cmd_progress_done(struct cmd_progress *p);
/* --revision REV, in every command that names a MODEL (a path or a hub
 * id): which branch, tag or commit of a hub id.  One definition, so the
 * option reads the same everywhere (model_files.c). */
#define CMD_REVISION_OPT(var)                                                         \
	{ "revision", OPT_STRING, &(var), "REV",                                      \
	  "hub branch, tag or commit when MODEL is a hub id ORG/NAME (default main)", 0, 0, \
	  NULL }
/* 0 if revision (NULL: not given) can go with model: a valid branch, tag
 * or commit name, and model (NULL: none given) a hub id rather than a
 * local path; else prints a usage error "dyn CMD: --revision ..." and
 * returns EXIT_USAGE. */
int cmd_check_revision(const char *cmd, const char *model, const char *revision);
/* A model named by a path or a hub id, for commands that read only its
 * tokenizer/config files: an existing path (a folder, or a file such as
 * tokenizer.json) is taken as it is, except a .gguf file, for which the
 * folder model_resolve() makes is given (removed at exit); an ORG/NAME id
 * is resolved through
 * the hub cache at revision (NULL: main) without weights (downloading
 * what is missing, with progress).  Returns 0 and *path (free() it), or
 * prints "dyn CMD: error" and returns the exit status (2 for a revision
 * that cmd_check_revision() refuses, else 1) (model_files.c). */
int cmd_model_files(const char *cmd, const char *name, const char *revision, char **path);
/* The name a served model gets unless given one (dyn serve, dyn run
 * --http): the hub id model, or the folder name of a path, or a GGUF's
 * file name (model_files.c). */
struct model_source;
const char *cmd_default_served_name(const char *model, const struct model_source *src);
/* Weight loading progress (model_load_opts.progress, arg a zeroed struct
 * cmd_progress): a bar on a terminal, erased when loading ends; nothing
 * otherwise. */
void cmd_load_progress(void *arg, uint64_t done, uint64_t total);

/* The git commit dyn was built from (main.c), or "unknown". */
extern const char dyn_git_commit[];

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
