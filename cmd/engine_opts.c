/*
 * engine_opts.c - engine options shared by dyn run and dyn serve (see
 * engine_opts.h).
 */
#include "cmd/engine_opts.h"
#include "cmd/cmd.h"
#include "core/err.h"

int cmd_engine_args_apply(const char *cmd, const struct cmd_engine_args *a,
			  struct model_load_opts *lo, struct engine_opts *eo)
{
	if (lo && model_load_format_parse(a->load_format, &lo->format) < 0)
		return cmd_usage_error(cmd, "%s", err_msg());
	engine_opts_init(eo);
	eo->threads = (int)a->threads;
	eo->block_size = (int)a->block_size;
	eo->kv_cache_tokens = (int)a->kv_cache_tokens;
	eo->max_num_seqs = (int)a->max_num_seqs;
	eo->max_num_batched_tokens = (int)a->max_num_batched_tokens;
	eo->max_model_len = (int)a->max_model_len;
	return 0;
}
