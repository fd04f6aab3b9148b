/*
 * model.h - find, fetch, validate and map a model for the engine.
 *
 * A model is named the same way everywhere (dyn run, serve, bench
 * --tokenizer, model info): by a path or by a Hugging Face hub id.
 * model_resolve() turns the name into a local directory:
 *   - an existing directory: a Hugging Face model folder (config.json,
 *     tokenizer files, *.safetensors);
 *   - an existing file: a .safetensors file or a *.safetensors.index.json
 *     (the checkpoint; config.json etc. are read from its folder), or a
 *     config.json;
 *   - a .gguf file (gguf.h), or a folder without config.json that holds
 *     exactly one: its metadata is turned into the files a Hugging Face
 *     folder would have, in a private temporary folder (src->dir, removed
 *     by model_source_free()): config.json from the hyperparameters, and
 *     tokenizer.json + tokenizer_config.json (with the chat template)
 *     from the tokenizer metadata unless the GGUF's own folder has a
 *     tokenizer.json, whose files are then linked instead (model_gguf.c);
 *   - otherwise "ORG/NAME": the hub cache, downloading what is missing
 *     (hub.h; HF_HUB_OFFLINE=1 uses the cache only).
 *
 * model_load() then reads config.json (+ generation_config.json) into a
 * struct model_desc, and binds every tensor the forward pass needs into a
 * struct model_weights, checking that each exists with the exact shape the
 * config implies and a supported dtype (F32, F16, BF16).  Supported
 * architectures: LlamaForCausalLM (rope_scaling "llama3" and "linear"
 * included), MistralForCausalLM, Qwen2ForCausalLM (q/k/v biases),
 * Qwen3ForCausalLM (q/k RMSNorm, explicit head_dim); tied or separate
 * lm_head; grouped-query attention.  Anything else is a clear error.
 *
 * Weights stay memory-mapped (no copy) in their on-disk dtype (the CPU
 * backend computes with F32, BF16 and F16 as they are, and with GGUF's
 * Q8_0 matrices and embedding); the one exception is a GGUF llama or
 * mistral file's Q and K projections, whose rows are copied back into
 * Hugging Face's order (model_gguf.c says why); with
 * MODEL_LOAD_F32, F16/BF16 tensors are widened into memory the model owns
 * (F32 tensors are still mapped), for a backend that needs F32.  With
 * quantize DTYPE_Q8_0 or DTYPE_Q4_0 the projection matrices (q/k/v/o,
 * gate/up/down and an untied lm_head) whose rows are whole 32-weight blocks
 * (cols % 32 == 0) are quantized row by row into those blocks (dtype.h)
 * in memory the model
 * owns, each source tensor's mapped pages dropped once done; the others
 * (e.g. a down_proj of 172 columns), the embedding (so a tied lm_head),
 * norms and biases stay as stored.  The dummy load format generates
 * deterministic random weights of the config's shapes instead (no weight
 * files needed): matrices uniform in +-1/sqrt(fan_in), norms 1, so a
 * forward pass stays finite.
 *
 * Tensor layout is Hugging Face's: a projection is [out_features,
 * in_features], row-major, y = W x; the embedding is [vocab, hidden].
 *
 * Ownership and threads: model_load() returns a model that owns all its
 * memory and mappings; model_free() releases them and every pointer taken
 * from it.  A loaded model is never modified: share it across threads
 * freely.  Loading itself is blocking (it may download) and may run on
 * any thread; the progress callback runs on the loading thread.
 */
#ifndef DYN_MODEL_H
#define DYN_MODEL_H

#include "core/model/dtype.h"
#include "core/model/hub.h"

#include <stddef.h>
#include <stdint.h>

enum model_arch {
	MODEL_ARCH_LLAMA = 1,
	MODEL_ARCH_MISTRAL,
	MODEL_ARCH_QWEN2,
	MODEL_ARCH_QWEN3,
};

enum model_rope_type {
	MODEL_ROPE_DEFAULT = 0,	/* plain RoPE with theta */
	MODEL_ROPE_LINEAR,	/* positions divided by factor */
	MODEL_ROPE_LLAMA3,	/* Llama 3.1 frequency-dependent scaling */
};

struct model_rope {
	double theta;				/* rope_theta (default 10000) */
	enum model_rope_type type;
	double factor;				/* linear, llama3 */
	double low_freq_factor;			/* llama3 */
	double high_freq_factor;		/* llama3 */
	int original_max_position_embeddings;	/* llama3 */
};

/* Sampling defaults from generation_config.json (NAN / -1 when absent). */
struct model_gen_defaults {
	double temperature;
	double top_p;
	int top_k;
	double min_p;
	double repetition_penalty;
	int max_length;
	int do_sample;		/* -1 absent, else 0/1 */
};

#define MODEL_MAX_EOS 16

struct model_desc {
	enum model_arch arch;
	char architecture[64];		/* "LlamaForCausalLM" */
	char model_type[32];		/* "llama" ("" if absent) */
	int hidden_size;
	int num_layers;
	int num_heads;			/* query heads */
	int num_kv_heads;		/* divides num_heads (GQA) */
	int head_dim;			/* explicit, or hidden_size / num_heads */
	int intermediate_size;
	int vocab_size;
	int max_position_embeddings;	/* the context length */
	int sliding_window;		/* 0 = full attention */
	struct model_rope rope;
	double rms_norm_eps;
	int tie_word_embeddings;	/* lm_head is the embedding matrix */
	int qkv_bias;			/* q/k/v projections have biases */
	int o_bias;			/* o_proj has a bias */
	int qk_norm;			/* per-head RMSNorm of q and k (Qwen3) */
	enum dtype dtype;		/* config's torch_dtype (F32 if absent) */
	int bos_token_id;		/* -1 if none */
	int pad_token_id;		/* -1 if none */
	int eos_token_ids[MODEL_MAX_EOS];	/* config's, then generation_config's */
	int n_eos;
	struct model_gen_defaults gen;
};

/*
 * Parse config.json text (and generation_config.json text, or NULL) into
 * d, validating every field the engine relies on.  The texts need not be
 * NUL-terminated.  Errors name the field ("config.json: num_key_value_heads
 * 3 does not divide num_attention_heads 8").
 */
int model_desc_parse(const char *config, size_t config_len, const char *gen,
		     size_t gen_len, struct model_desc *d);
/* Read DIR/config.json and DIR/generation_config.json (if present). */
int model_desc_load(const char *dir, struct model_desc *d);

/* Parameter count and the number of tensors the config implies. */
uint64_t model_desc_params(const struct model_desc *d);

const char *model_rope_type_name(enum model_rope_type t);

/* One tensor.  Absent (e.g. a bias the architecture lacks): ndim == 0. */
struct model_tensor {
	const void *data;	/* NULL when absent or loaded with MODEL_LOAD_META */
	enum dtype dtype;	/* F32, F16 or BF16; Q8_0 when quantized at load */
	int ndim;		/* 1 or 2 */
	int64_t shape[2];
	uint64_t numel;
	uint64_t nbytes;
	const char *name;	/* checkpoint name, "model.norm.weight" */
};

static inline int model_tensor_present(const struct model_tensor *t)
{
	return t->ndim > 0;
}

struct model_layer {
	struct model_tensor attn_norm;		/* input_layernorm [hidden] */
	struct model_tensor wq, wk, wv;		/* [heads*head_dim | kv_heads*head_dim, hidden] */
	struct model_tensor bq, bk, bv;		/* biases [out] (qkv_bias) */
	struct model_tensor wo;			/* [hidden, heads*head_dim] */
	struct model_tensor bo;			/* [hidden] (o_bias) */
	struct model_tensor q_norm, k_norm;	/* [head_dim] (qk_norm) */
	struct model_tensor ffn_norm;		/* post_attention_layernorm [hidden] */
	struct model_tensor w_gate, w_up;	/* [intermediate, hidden] */
	struct model_tensor w_down;		/* [hidden, intermediate] */
};

struct model_weights {
	struct model_tensor embed;	/* [vocab, hidden] */
	struct model_layer *layers;	/* num_layers of them */
	int n_layers;
	struct model_tensor final_norm;	/* [hidden] */
	struct model_tensor lm_head;	/* [vocab, hidden]; == embed when tied */
};

enum model_load_format {
	MODEL_LOAD_AUTO = 0,	/* safetensors weights (the only real format) */
	MODEL_LOAD_SAFETENSORS,
	MODEL_LOAD_DUMMY,	/* random weights of the config's shapes */
	MODEL_LOAD_GGUF,	/* a .gguf file (auto picks it for one) */
};

/* --quantize: "none" (DTYPE_UNKNOWN), "q8_0" or "q4_0"; for option
 * tables. */
extern const char *const model_quantize_names[];
int model_quantize_parse(const char *s, enum dtype *out);

/* "auto", "safetensors", "dummy", "gguf"; for option tables. */
extern const char *const model_load_format_names[];
int model_load_format_parse(const char *s, enum model_load_format *out);
const char *model_load_format_name(enum model_load_format f);

#define MODEL_LOAD_META 1u	/* check shapes and dtypes only: map or generate
				   no weight data (tensor data stays NULL) */
#define MODEL_LOAD_F32 2u	/* every tensor as F32 (F16/BF16 widened) */
#define MODEL_LOAD_PANELS 4u	/* projection matrices of a block type (Q8_0,
				   Q4_0) repacked into its panel type (dtype.h)
				   in place: the checkpoint's pages of them are
				   not kept in memory (a mapped file's copied on
				   write, once) */

struct model_load_opts {
	enum model_load_format format;
	unsigned flags;			/* MODEL_LOAD_* */
	enum dtype dummy_dtype;		/* dummy: F32 (default), F16 or BF16 */
	uint64_t seed;			/* dummy: same seed, same weights */
	enum dtype quantize;		/* Q8_0, Q4_0: quantize the projections
					   (see above); DTYPE_UNKNOWN: no */
	const struct hub_opts *hub;	/* for hub ids (NULL: defaults) */
	/* Called after each tensor is read (safetensors) or made (dummy) with
	 * the bytes done of the total (the last call has done == total).  With
	 * a callback, mapped weights are also read in here (every page
	 * touched) rather than on first use, so the progress is the real
	 * loading time. */
	void (*progress)(void *arg, uint64_t done, uint64_t total);
	void *progress_arg;
};

/* Where a model name leads. */
struct model_source {
	char *dir;		/* folder with config.json and tokenizer files */
	char *weights;		/* an explicit checkpoint file, or NULL (the folder) */
	char *repo;		/* hub id when it came from the hub, else NULL */
	char *commit;		/* hub commit of the snapshot, else NULL */
	char *tmpdir;		/* GGUF: the folder made for it (== dir), else NULL */
	int gguf_tokenizer;	/* GGUF: tokenizer files made from its metadata */
};

/*
 * Resolve a model name (see the top of this file).  With need_weights 0 a
 * hub download skips weight files (for tokenizer/config-only uses).
 */
int model_resolve(const char *name, const struct hub_opts *hub, int need_weights,
		  struct model_source *src);
void model_source_free(struct model_source *src);

struct model {
	char *name;			/* as given to model_load() */
	struct model_source src;
	struct model_desc desc;
	struct model_weights w;
	enum model_load_format format;	/* SAFETENSORS, DUMMY or GGUF, never AUTO */
	enum dtype weights_dtype;	/* of the embedding as loaded (the matrices'
					   unless quantized) */
	enum dtype quantized;		/* Q8_0/Q4_0 when the load quantized, else
					   UNKNOWN */
	int n_quantized;		/* matrices quantized */
	int n_unquantized;		/* projections kept as stored (cols % 32) */
	uint64_t n_params;		/* lm_head counted once when tied */
	uint64_t weight_bytes;		/* bytes of those tensors as loaded */
	size_t n_files;			/* weight files read (0 for dummy) */
	int gguf_version;		/* GGUF: the file's format version */
	/* Files next to config.json (NULL when absent). */
	char *config_path;
	char *generation_config_path;
	char *tokenizer_path;			/* tokenizer.json */
	char *tokenizer_config_path;		/* tokenizer_config.json */
	char *chat_template_path;		/* chat_template.jinja */
	int has_chat_template;		/* .jinja or "chat_template" in tokenizer_config */
	struct model_priv *priv;
};

int model_load(const char *name, const struct model_load_opts *opts, struct model **out);
void model_free(struct model *m);

/* The tensors of m in checkpoint order (embed, layers..., norm, lm_head
 * unless tied): call fn for each; stops early if fn returns non-zero. */
int model_for_each_tensor(const struct model *m,
			  int (*fn)(void *arg, const struct model_tensor *t), void *arg);

/* Row r of a [rows, cols] tensor (or all of a 1-D one) widened to F32
 * into out[cols]; the tensor must have data (not a MODEL_LOAD_META load). */
void model_tensor_row_f32(const struct model_tensor *t, int64_t r, float *out);

#endif
