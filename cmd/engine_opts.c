/*
 * engine_opts.c - engine options shared by dyn run and dyn serve (see
 * engine_opts.h).
 */
#include "cmd/engine_opts.h"
#include "cmd/cmd.h"
#include "core/err.h"
#include "gpu/backend_cuda.h"

#include <stdio.h>

#include <stdlib.h>
#include <string.h>

const char *const cmd_device_names[] = { "cpu", "cuda", "auto", NULL };

int cmd_engine_args_apply(const char *cmd, const struct cmd_engine_args *a,
			  struct model_load_opts *lo, struct engine_opts *eo)
{
	if (lo && (model_load_format_parse(a->load_format, &lo->format) < 0 ||
		   model_quantize_parse(a->quantize, &lo->quantize) < 0))
		return cmd_usage_error(cmd, "%s", err_msg());
	engine_opts_init(eo);
	eo->backend = *a->device ? a->device : a->backend;
	cuda_backend_set_memory_utilization(a->gpu_mem_util);
	cuda_backend_set_graphs(a->cuda_graphs);
	if (!strcmp(eo->backend, "auto")) {
		eo->backend = backend_cuda.available() < 0 ? "cpu" : "cuda";
		if (!strcmp(eo->backend, "cpu"))
			fprintf(stderr, "dyn %s: --device auto: no usable GPU (%s); computing on "
				"the CPU\n", cmd, err_msg());
	} else if (!strcmp(eo->backend, "cuda") && backend_cuda.available() < 0) {
		return cmd_usage_error(cmd, "--device cuda: %s", err_msg());
	}
	eo->threads = (int)a->threads;
	eo->block_size = (int)a->block_size;
	eo->kv_cache_tokens = (int)a->kv_cache_tokens;
	if (engine_kv_dtype_parse(a->kv_cache_dtype, &eo->kv_dtype) < 0)
		return cmd_usage_error(cmd, "%s", err_msg());
	eo->max_num_seqs = (int)a->max_num_seqs;
	eo->max_num_batched_tokens = (int)a->max_num_batched_tokens;
	eo->max_model_len = (int)a->max_model_len;
	eo->tiers.host_bytes = (uint64_t)(a->kv_host_gb * (double)(1u << 30));
	eo->tiers.disk_dir = *a->kv_disk_dir ? a->kv_disk_dir : NULL;
	eo->tiers.disk_bytes = (uint64_t)(a->kv_disk_gb * (double)(1u << 30));
	eo->tiers.shared_dir = *a->kv_shared_dir ? a->kv_shared_dir : NULL;
	eo->tiers.shared_bytes = (uint64_t)(a->kv_shared_gb * (double)(1u << 30));
	/* the backend decides the dtypes it computes with as stored */
	unsigned flags;
	if (engine_weight_load_flags(eo, &flags) < 0)
		return cmd_usage_error(cmd, "%s", err_msg());
	if (lo)
		lo->flags |= flags;
	return 0;
}

/* Is --name given in argv (before a lone "--") or DYN_NAME set? */
static int given(int argc, char **argv, const char *name, const char *env)
{
	size_t n = strlen(name);

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--"))
			break;
		if (a[0] == '-' && a[1] == '-' && !strncmp(a + 2, name, n) &&
		    (a[2 + n] == 0 || a[2 + n] == '='))
			return 1;
	}
	return getenv(env) != NULL;
}

unsigned cmd_engine_args_given(int argc, char **argv)
{
	unsigned set = 0;

	if (given(argc, argv, "block-size", "DYN_BLOCK_SIZE"))
		set |= CMD_ENGINE_SET_BLOCK_SIZE;
	if (given(argc, argv, "kv-cache-tokens", "DYN_KV_CACHE_TOKENS"))
		set |= CMD_ENGINE_SET_KV_CACHE_TOKENS;
	if (given(argc, argv, "max-num-seqs", "DYN_MAX_NUM_SEQS"))
		set |= CMD_ENGINE_SET_MAX_NUM_SEQS;
	if (given(argc, argv, "max-num-batched-tokens", "DYN_MAX_NUM_BATCHED_TOKENS"))
		set |= CMD_ENGINE_SET_MAX_NUM_BATCHED_TOKENS;
	return set;
}

void cmd_engine_args_apply_mock(const struct cmd_engine_args *a, unsigned set,
				double speedup, struct engine_opts *eo)
{
	engine_opts_init_mock(eo);
	if (set & CMD_ENGINE_SET_BLOCK_SIZE)
		eo->block_size = (int)a->block_size;
	/* the default pool keeps its block count whatever the block size */
	eo->kv_cache_tokens = (set & CMD_ENGINE_SET_KV_CACHE_TOKENS) && a->kv_cache_tokens > 0
				      ? (int)a->kv_cache_tokens
				      : MOCK_KV_BLOCKS * eo->block_size;
	if (set & CMD_ENGINE_SET_MAX_NUM_SEQS)
		eo->max_num_seqs = (int)a->max_num_seqs;
	if (set & CMD_ENGINE_SET_MAX_NUM_BATCHED_TOKENS)
		eo->max_num_batched_tokens = (int)a->max_num_batched_tokens;
	eo->max_model_len = (int)a->max_model_len;
	eo->mock_timing.speedup = speedup;
}
