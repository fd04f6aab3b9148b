/*
 * engine_opts.h - the engine and weight-loading options shared by the
 * commands that run the builtin engine (dyn run, dyn serve): one set of
 * names, defaults, ranges and help lines.
 *
 *   static struct cmd_engine_args eng = CMD_ENGINE_ARGS_INIT;
 *   static const struct opt opts[] = { ..., CMD_ENGINE_OPTS(eng), { 0 } };
 *   ...
 *   if (cmd_engine_args_apply("run", &eng, &load_opts, &engine_opts) ||
 *       cmd_check_revision("run", model, eng.revision))
 *           return EXIT_USAGE;
 *   hub_opts.revision = eng.revision;
 */
#ifndef DYN_CMD_ENGINE_OPTS_H
#define DYN_CMD_ENGINE_OPTS_H

#include "cmd/cmd.h"
#include "core/engine/backend.h"
#include "core/engine/engine.h"
#include "core/model/model.h"
#include "core/opt.h"

struct cmd_engine_args {
	const char *backend;
	const char *load_format;
	const char *quantize;
	const char *kv_cache_dtype;
	long threads, block_size, kv_cache_tokens, max_num_seqs, max_num_batched_tokens,
		max_model_len;
	const char *revision;		/* of a hub id MODEL, or NULL */
	double kv_host_gb, kv_disk_gb, kv_shared_gb;	/* KV tiers (core/kv/tiers.h) */
	const char *kv_disk_dir, *kv_shared_dir;
	const char *device;		/* "": --backend's */
	double gpu_mem_util;
	int cuda_graphs;
};

#define CMD_ENGINE_ARGS_INIT { "cpu", "auto", "none", "auto", 0, 16, 0, 16, 512, 0, NULL, \
			       0, 4, 16, "", "", "", 0.9, 1 }

#define CMD_ENGINE_OPTS(a)                                                                  \
	{ "backend", OPT_ENUM, &(a).backend, "NAME",                                         \
	  "compute backend (cpu: F32, F16, BF16 weights as stored, Q8_0, Q4_0; cuda only in " \
	  "a binary built with it)", 0, 0, backend_names },                                  \
	{ "device", OPT_ENUM, &(a).device, "DEVICE",                                         \
	  "where to compute, overriding --backend: cpu, cuda (the first GPU that "           \
	  "CUDA_VISIBLE_DEVICES leaves) or auto (cuda when a GPU is usable, else cpu)",      \
	  0, 0, cmd_device_names },                                                          \
	{ "gpu-memory-utilization", OPT_DOUBLE, &(a).gpu_mem_util, "FRACTION",              \
	  "share of the GPU's free memory that weights and the KV cache may take (cuda)",    \
	  0.01, 1, NULL },                                                                   \
	{ "cuda-graphs", OPT_BOOL, &(a).cuda_graphs, NULL,                                   \
	  "record decode steps as CUDA graphs and replay them (cuda)", 0, 0, NULL },         \
	{ "load-format", OPT_ENUM, &(a).load_format, "FORMAT",                               \
	  "weights: safetensors (F32/F16/BF16, mapped), gguf (F32/F16/BF16/Q8_0, mapped), "   \
	  "dummy (random F32) or auto (by the model's files)", 0, 0,                          \
	  model_load_format_names },                                                         \
	{ "quantize", OPT_ENUM, &(a).quantize, "TYPE",                                       \
	  "quantize the projection matrices at load: q8_0 (GGUF's 8-bit blocks, 8.5 bits a " \
	  "weight), q4_0 (GGUF's 4-bit blocks, 4.5 bits a weight) or none; matrices with "   \
	  "cols % 32 != 0 and the embedding stay as stored",                                 \
	  0, 0, model_quantize_names },                                                      \
	{ "threads", OPT_INT, &(a).threads, "N", "CPU threads (0: one per physical core)", 0, \
	  1024, NULL },                                                                      \
	{ "block-size", OPT_INT, &(a).block_size, "N", "tokens per KV cache block", 1, 1024,  \
	  NULL },                                                                            \
	{ "kv-cache-tokens", OPT_INT, &(a).kv_cache_tokens, "N",                             \
	  "KV cache size in tokens (0: enough for max-num-seqs full contexts, at most 2 GiB)", \
	  0, 1e9, NULL },                                                                    \
	{ "kv-cache-dtype", OPT_ENUM, &(a).kv_cache_dtype, "TYPE",                          \
	  "KV cache element type: f32, bf16, f16 (half the memory of f32; attention widens " \
	  "to f32 as it reads) or auto (f16)", 0, 0, engine_kv_dtype_names },              \
	{ "max-num-seqs", OPT_INT, &(a).max_num_seqs, "N", "sequences per engine step", 1,    \
	  4096, NULL },                                                                      \
	{ "max-num-batched-tokens", OPT_INT, &(a).max_num_batched_tokens, "N",              \
	  "tokens per engine step (prefill chunk size)", 1, 1 << 20, NULL },                 \
	{ "max-model-len", OPT_INT, &(a).max_model_len, "N", "context limit (0: the model's)", \
	  0, 1e9, NULL },                                                                    \
	{ "kv-host-cache-gb", OPT_DOUBLE, &(a).kv_host_gb, "GB",                             \
	  "KV tier G2: host memory for blocks evicted from the KV cache (0: none)", 0, 1e6,   \
	  NULL },                                                                            \
	{ "kv-disk-cache-dir", OPT_STRING, &(a).kv_disk_dir, "DIR",                          \
	  "KV tier G3: a local directory for blocks evicted from G2; kept across restarts",  \
	  0, 0, NULL },                                                                      \
	{ "kv-disk-cache-gb", OPT_DOUBLE, &(a).kv_disk_gb, "GB",                             \
	  "KV tier G3's capacity", 0.000001, 1e9, NULL },                         \
	{ "kv-shared-cache-dir", OPT_STRING, &(a).kv_shared_dir, "DIR",                      \
	  "KV tier G4: a directory shared by workers (network filesystem) for blocks "        \
	  "evicted from the tiers above; read by all", 0, 0, NULL },                         \
	{ "kv-shared-cache-gb", OPT_DOUBLE, &(a).kv_shared_gb, "GB",                         \
	  "what this worker keeps in G4 (its least recently used blocks there go)",         \
	  0.000001, 1e9, NULL },                                                             \
	CMD_REVISION_OPT((a).revision)

/* --device's choices: cpu, cuda, auto. */
extern const char *const cmd_device_names[];

/* Fill the load format, the quantization and the backend's weight-dtype flags into lo (if
 * not NULL) and the engine limits into eo (initialised here).  Returns 0, or EXIT_USAGE after printing a usage
 * error for command cmd. */
int cmd_engine_args_apply(const char *cmd, const struct cmd_engine_args *a,
			  struct model_load_opts *lo, struct engine_opts *eo);

/* Which of the KV/batching limits the user set (on the command line or in
 * the environment): bits of CMD_ENGINE_SET_*.  Call before the options
 * are parsed (parsing reorders argv). */
#define CMD_ENGINE_SET_BLOCK_SIZE 1u
#define CMD_ENGINE_SET_KV_CACHE_TOKENS 2u
#define CMD_ENGINE_SET_MAX_NUM_SEQS 4u
#define CMD_ENGINE_SET_MAX_NUM_BATCHED_TOKENS 8u
unsigned cmd_engine_args_given(int argc, char **argv);

/* Mock engine: eo gets engine_opts_init_mock()'s defaults, overridden by
 * the limits in a that the user set (given: cmd_engine_args_given()), and
 * the speed-up ratio. */
void cmd_engine_args_apply_mock(const struct cmd_engine_args *a, unsigned given,
				double speedup, struct engine_opts *eo);

#endif
