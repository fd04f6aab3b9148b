/*
 * main.c - the dyn executable: find the subcommand and run it.
 *
 * git-style: "dyn CMD [ARGS]" runs cmd_CMD from cmd/.  Busybox-style: a
 * link named "dyn-CMD" runs CMD.  Global options before the command:
 * --help, --version.
 */
#include "cmd/cmd.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>

#define CMD(name, fn, summary) { name, fn, summary }

const struct cmd_entry dyn_commands[] = {
	CMD("help", cmd_help, "show help for dyn or one of its commands"),
	CMD("version", cmd_version, "print version, build options and the runtimes found"),
	CMD("store", cmd_store, "inspect and edit the discovery store"),
	CMD("rpc", cmd_rpc, "serve, list, call and benchmark request-plane endpoints"),
	CMD("tokenize", cmd_tokenize, "encode text to token ids with a model's tokenizer"),
	CMD("detokenize", cmd_detokenize, "decode token ids to text with a model's tokenizer"),
	CMD("model", cmd_model, "inspect a model, or download one from the Hugging Face hub"),
	CMD("template", cmd_template, "render a model's chat template for a conversation"),
	CMD("bench", cmd_bench, "benchmark an OpenAI-compatible server (TTFT, ITL, throughput, goodput)"),
	CMD("serve", cmd_serve, "run a worker: serve a model on the request plane"),
	CMD("frontend", cmd_frontend, "serve the OpenAI-compatible HTTP API, routing to workers"),
	CMD("router", cmd_router, "run the KV router service shared by the frontends of a namespace"),
	CMD("profile", cmd_profile, "measure a worker's prefill and decode performance for the planner"),
	CMD("planner", cmd_planner, "size the prefill and decode pools for latency targets (--simulate: replay a trace)"),
	CMD("run", cmd_run, "chat with a model in the terminal, or answer one prompt"),
	{ NULL, NULL, NULL },
};

const struct cmd_entry *cmd_lookup(const char *name)
{
	for (const struct cmd_entry *c = dyn_commands; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

/* Here alone, so that a new commit rebuilds this file only (Makefile). */
const char dyn_git_commit[] = DYN_GIT_COMMIT;

static int unknown_command(const char *name)
{
	const char *near = cmd_suggest(name);

	if (near)
		fprintf(stderr, "dyn: '%s' is not a dyn command (did you mean '%s'?)\n",
			name, near);
	else
		fprintf(stderr, "dyn: '%s' is not a dyn command (see 'dyn help')\n",
			name);
	return EXIT_USAGE;
}

int main(int argc, char **argv)
{
	const char *self = strrchr(argv[0], '/');
	self = self ? self + 1 : argv[0];

	log_init();
	setvbuf(stdout, NULL, _IOLBF, 0);
	platform_raise_nofile();

	/* dyn-CMD ARGS... behaves as dyn CMD ARGS... */
	if (!strncmp(self, "dyn-", 4) && self[4]) {
		const struct cmd_entry *c = cmd_lookup(self + 4);
		if (!c)
			return unknown_command(self + 4);
		argv[0] = (char *)c->name;
		return c->fn(argc, argv);
	}
	if (argc < 2) {		/* as git: the usage, and a failure status */
		cmd_help(1, argv);
		return 1;
	}
	const char *name = argv[1];
	if (!strcmp(name, "--help") || !strcmp(name, "-h"))
		return cmd_help(1, argv);
	if (!strcmp(name, "--version"))
		name = "version";
	if (name[0] == '-') {
		static const char *const global_opts[] = { "--help", "--version", NULL };
		const char *near = str_closest(name, global_opts);
		if (near)
			fprintf(stderr, "dyn: unknown option '%s' (did you mean '%s'?)\n", name, near);
		else
			fprintf(stderr, "dyn: unknown option '%s' (see 'dyn help')\n", name);
		return EXIT_USAGE;
	}
	const struct cmd_entry *c = cmd_lookup(name);
	if (!c)
		return unknown_command(name);
	argv[1] = (char *)c->name;
	return c->fn(argc - 1, argv + 1);
}
