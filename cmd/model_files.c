/*
 * model_files.c - a model named by a path or a hub id, for the commands
 * that read only its tokenizer and config files (tokenize, detokenize,
 * template, bench --tokenizer), and the --revision check every command
 * naming a model shares.  See cmd.h.
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/model/hub.h"
#include "core/model/model.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* A name that model_resolve() and cmd_model_files() take as a local path. */
static int is_local(const char *name)
{
	return exists(name) || !hub_is_repo_id(name);
}

int cmd_check_revision(const char *cmd, const char *model, const char *revision)
{
	if (!revision)
		return 0;
	if (!hub_valid_revision(revision))
		return cmd_usage_error(cmd, "--revision: '%s' is not a branch, tag or commit",
				       revision);
	if (!model)
		return cmd_usage_error(cmd, "--revision applies to a hub id MODEL (ORG/NAME), "
				       "and none was given");
	if (is_local(model))
		return cmd_usage_error(cmd, "--revision applies to hub ids (ORG/NAME), not to "
				       "'%s' (%s)", model, exists(model) ? "a local path" :
				       "not a hub id");
	return 0;
}

/* The folder made for a GGUF file, kept until exit (these commands read
 * one model each). */
static struct model_source gguf_src;

static void gguf_src_free(void)
{
	model_source_free(&gguf_src);
}

int cmd_model_files(const char *cmd, const char *name, const char *revision, char **path)
{
	size_t n = strlen(name);

	*path = NULL;
	if (cmd_check_revision(cmd, name, revision))
		return EXIT_USAGE;
	if (n > 5 && !strcmp(name + n - 5, ".gguf") && exists(name) && !gguf_src.dir) {
		if (model_resolve(name, NULL, 0, &gguf_src) < 0)
			return cmd_fail(cmd, "%s", err_msg());
		atexit(gguf_src_free);
		*path = strdup(gguf_src.dir);
		return *path ? 0 : cmd_fail(cmd, "out of memory");
	}
	/* A path that exists is used as it is: a folder, or a file such as
	 * tokenizer.json that model_resolve() would not take. */
	if (is_local(name)) {
		*path = strdup(name);
		if (!*path)
			return cmd_fail(cmd, "out of memory");
		return 0;
	}
	struct cmd_progress progress = { 0 };
	struct hub_opts hub = { .revision = revision, .progress = cmd_hub_progress,
				.progress_arg = &progress };
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

const char *cmd_default_served_name(const char *model, const struct model_source *src)
{
	if (src->repo)
		return model;
	/* a GGUF's folder is a temporary one: name it by its file */
	const char *path = src->tmpdir ? src->weights : src->dir;
	const char *slash = strrchr(path, '/');
	return slash && slash[1] ? slash + 1 : path;
}
