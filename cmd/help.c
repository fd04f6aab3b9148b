/*
 * help.c - "dyn help [CMD]": the command list, or one command's --help.
 */
#include "cmd/cmd.h"

#include <stdio.h>
#include <string.h>

static void list_commands(void)
{
	printf("usage: dyn [--version] [--help] COMMAND [ARGS]\n\n"
	       "dyn serves large language models over an OpenAI-compatible API,\n"
	       "on one machine or across a cluster, as one executable.\n\n"
	       "Commands:\n");
	for (const struct cmd_entry *c = dyn_commands; c->name; c++)
		printf("  %-12s %s\n", c->name, c->summary);
	printf("\nRun 'dyn COMMAND --help' or 'man dyn-COMMAND' for a command's options.\n"
	       "Every option --foo-bar can also be set with the environment variable\n"
	       "DYN_FOO_BAR. Logging: DYN_LOG=info (or e.g. \"store=debug,info\"),\n"
	       "DYN_LOG_FORMAT=json. See dyn(1).\n");
}

int cmd_help(int argc, char **argv)
{
	if (argc < 2) {
		list_commands();
		return 0;
	}
	if (argc > 2)
		return cmd_usage_error("help", "expected one command name");
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help")) {
		list_commands();
		return 0;
	}
	const struct cmd_entry *c = cmd_lookup(argv[1]);
	if (!c) {
		const char *near = cmd_suggest(argv[1]);
		if (near)
			return cmd_usage_error("help", "'%s' is not a dyn command (did you mean '%s'?)",
					       argv[1], near);
		return cmd_usage_error("help", "'%s' is not a dyn command", argv[1]);
	}
	char *sub[] = { (char *)c->name, "--help", NULL };
	return c->fn(2, sub);
}
