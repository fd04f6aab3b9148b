/*
 * model_files.c - a model named by a path or a hub id, for the commands
 * that read only its tokenizer and config files (tokenize, detokenize,
 * template, bench --tokenizer).  See cmd.h.
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/model/hub.h"
#include "core/model/model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cmd_model_files(const char *cmd, const char *name, char **path)
{
	struct stat st;

	*path = NULL;
	/* A path that exists is used as it is: a folder, or a file such as
	 * tokenizer.json that model_resolve() would not take. */
	if (stat(name, &st) == 0 || !hub_is_repo_id(name)) {
		*path = strdup(name);
		if (!*path)
			return cmd_fail(cmd, "out of memory");
		return 0;
	}
	struct cmd_progress progress = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &progress };
	struct model_source src;
	int rc = model_resolve(name, &hub, 0, &src);
	cmd_progress_done(&progress);
	if (rc < 0)
		return cmd_fail(cmd, "%s", err_msg());
	*path = src.dir;
	src.dir = NULL;
	model_source_free(&src);
	return 0;
}
