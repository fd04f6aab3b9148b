/*
 * backend.h - the op interface between the engine's forward pass and a
 * compute backend (CPU here; the CUDA backend implements the same table).
 *
 * The forward pass (forward.c) is written once against these ops.  All
 * activation buffers passed to ops are backend memory obtained from
 * ops->alloc (host memory for the CPU backend, device memory for CUDA);
 * weights are struct model_tensor (the backend may keep its own copy,
 * e.g. on the device, keyed by the tensor's address).
 *
 * Shapes: activations are row-major [n_tokens, width].  A projection
 * weight is [out, in] (Hugging Face layout), so matmul computes
 * y[t, o] = sum_i x[t, i] * W[o, i] (+ bias[o]): GEMM for a prefill batch,
 * GEMV when n == 1.
 *
 * The paged KV cache lives in the backend: per layer a K and a V array of
 * n_blocks * block_size rows of kv_dim elements of the backend's KV
 * element type (backend.kv_dtype, chosen by backend_config.kv_dtype: F32,
 * BF16 or F16 on the CPU); a token's row
 * ("slot") is block_id * block_size + position % block_size.  Attention
 * reads it directly through each sequence's block table.  kv_layout
 * describes it; kv_block_read / kv_block_write move one whole block (every
 * layer, K and V) between the pool and a host buffer, the basis of KV
 * transfer between workers and of lower KV tiers.  A block's host image is,
 * for each layer in order, its K rows then its V rows (block_size x kv_dim
 * elements each, row-major), kv_layout.block_bytes in all.  A backend
 * whose pool is host memory also says where those pieces lie
 * (kv_block_segments, kv_regions), so that a transfer moves them without
 * a copy.
 *
 * Registry: the engine creates its backend by name (engine_opts.backend)
 * through backend_lookup(); each backend is a struct backend_type with its
 * weight-dtype policy.  "cpu" is core/cpu, "cuda" gpu/ (gpu/backend_cuda.h:
 * always registered; its available() says why it cannot run: kernels not
 * built in, no driver, no GPU).
 *
 * Weights reach the ops only in dtypes the backend's policy accepts
 * (supports_weight_dtype; the engine checks before it creates the backend).
 *
 * Errors: ops on valid shapes cannot fail; alloc/create return negative
 * codes with err_msg().  Thread-safety: a backend belongs to the engine's
 * step thread; ops may use the backend's own worker threads inside.  The
 * registry is constant and thread-safe.
 */
#ifndef DYN_ENGINE_BACKEND_H
#define DYN_ENGINE_BACKEND_H

#include "core/kv/block_manager.h"
#include "core/model/dtype.h"
#include "core/model/model.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* One forward step's attention inputs (host memory, read by the backend). */
struct attn_batch {
	int n_tokens;
	const int32_t *pos;		/* [n_tokens] absolute positions */
	const int32_t *seq;		/* [n_tokens] index into tables */
	const int32_t *const *tables;	/* per sequence: its block table */
	int block_size;
	int n_heads, n_kv_heads, head_dim;
	int sliding_window;		/* 0: full causal attention */
	float scale;			/* 1/sqrt(head_dim) */
};

/* One forward step's inputs (host memory), given to begin() once before
 * the step's first op. */
struct backend_step {
	int n_tokens;
	const int32_t *tokens;		/* [n_tokens] */
	const int32_t *slots;		/* [n_tokens] KV pool rows */
	const struct attn_batch *ab;	/* positions, sequences, block tables */
	int n_seqs;			/* block tables in ab->tables */
};

struct backend;

struct backend_ops {
	const char *name;
	void (*free)(struct backend *b);
	/* Activation memory (zeroed); NULL on failure. */
	float *(*alloc)(struct backend *b, size_t n_floats);
	void (*release)(struct backend *b, float *p);
	/* The model whose weights the ops will be given, once before the
	 * first op: the backend may prepare them (upload them to a device,
	 * back them with huge pages).  NULL: nothing to prepare. */
	int (*prepare_weights)(struct backend *b, const struct model *m);
	/* Create the paged KV pool: n_layers x n_blocks x block_size x kv_dim
	 * for keys and for values. */
	int (*kv_create)(struct backend *b, int n_layers, int n_blocks, int block_size,
			 int kv_dim);
	/* The pool's shape as kv_create made it (struct kv_layout: core/kv/block_manager.h). */
	void (*kv_layout)(struct backend *b, struct kv_layout *out);
	/* A whole block between the pool and a host buffer of
	 * kv_layout.block_bytes (see the top of this file). */
	void (*kv_block_read)(struct backend *b, int32_t block, void *host);
	void (*kv_block_write)(struct backend *b, int32_t block, const void *host);
	/* Where a block's host image lies in the pool when the pool is host
	 * memory: its 2 x n_layers pieces of layer_bytes in host-image order
	 * (the first cap of them into iov); returns their number.  NULL: the
	 * pool is not host memory. */
	int (*kv_block_segments)(struct backend *b, int32_t block, struct iovec *iov, int cap);
	/* The pool's memory regions, every block's segments inside them (the
	 * first cap into regions); returns their number.  NULL as above. */
	int (*kv_regions)(struct backend *b, struct iovec *regions, int cap);

	/* The step's inputs: the forward pass calls it before each step's
	 * first op, so a device backend uploads them once here (the CPU sizes
	 * its attention scratch).  NULL: nothing to do. */
	void (*begin)(struct backend *b, const struct backend_step *st);

	/* y[n, dim] = embedding rows of ids. */
	void (*embed)(struct backend *b, float *y, const struct model_tensor *emb,
		      const int32_t *ids, int n);
	/* y[n, rows] = x[n, cols] W^T (+ bias); bias may be NULL or absent. */
	void (*matmul)(struct backend *b, float *y, const float *x, int n,
		       const struct model_tensor *w, const struct model_tensor *bias);
	/* count (1..4) projections of the same input in one go:
	 * y[i][n, rows_i] = x[n, cols] W_i^T (+ bias[i]; bias[i] may be NULL),
	 * so the backend can spread them over its threads at once (q/k/v,
	 * gate/up).  NULL: the forward pass calls matmul for each. */
	void (*matmul_multi)(struct backend *b, int count, float *const *y, const float *x, int n,
			     const struct model_tensor *const *w,
			     const struct model_tensor *const *bias);
	/* y[r] = x[r] / rms(x[r]) * w for n_rows rows of dim (y may be x). */
	void (*rmsnorm)(struct backend *b, float *y, const float *x, const struct model_tensor *w,
			int n_rows, int dim, float eps);
	/* Rotate-half RoPE in place on x[n, n_heads, head_dim] at pos[t] with
	 * inv_freq[head_dim / 2]. */
	void (*rope)(struct backend *b, float *x, int n, int n_heads, int head_dim,
		     const int32_t *pos, const float *inv_freq);
	/* gate[i] = silu(gate[i]) * up[i] */
	void (*silu_mul)(struct backend *b, float *gate, const float *up, size_t n);
	/* y[i] += x[i] */
	void (*add)(struct backend *b, float *y, const float *x, size_t n);
	/* Store k, v [n, kv_dim] of layer into the KV pool at slots[n]. */
	void (*kv_write)(struct backend *b, int layer, const float *k, const float *v, int n,
			 const int32_t *slots);
	/* out[n, n_heads*head_dim] = causal softmax(q k^T * scale) v over each
	 * token's sequence (positions 0..pos, read from the paged pool). */
	void (*attention)(struct backend *b, int layer, float *out, const float *q,
			  const struct attn_batch *ab);
	/* dst[i] = src[rows[i]] for n rows of width floats, backend memory
	 * to backend memory. */
	void (*copy_rows)(struct backend *b, float *dst, const float *src, size_t width,
			  const int32_t *rows, int n);
	/* Copy n floats of backend memory to host memory. */
	void (*to_host)(struct backend *b, float *dst, const float *src, size_t n);
};

struct backend {
	const struct backend_ops *ops;
	int n_threads;		/* CPU threads it computes with */
	const char *simd;	/* kernels in use: "avx512", "avx2+fma", "portable" */
	enum dtype kv_dtype;	/* element type of its KV pool (the engine sizes
				   the pool by it) */
};

/* What a backend is built with. */
struct backend_config {
	int n_threads;		/* CPU threads; <= 0: one per physical core */
	/* Element type of the KV pool (DTYPE_UNKNOWN: F32); create fails
	 * with -EINVAL for one the backend cannot attend over. */
	enum dtype kv_dtype;
	/* Host memory for the KV pool (engine_opts.kv_alloc), or NULL. */
	void *(*kv_alloc)(void *arg, size_t bytes);
	void (*kv_free)(void *arg, void *p);
	void *kv_arg;
};

/* A backend the registry can create. */
struct backend_type {
	const char *name;
	/* Can it run here?  0, or a negative code with err_msg() saying why
	 * (no device, not built in).  NULL: always. */
	int (*available)(void);
	int (*create)(const struct backend_config *c, struct backend **out);
	/* Weight-dtype policy: 1 when the backend computes with weights of
	 * dtype t as they are (its kernels read t natively). */
	int (*supports_weight_dtype)(enum dtype t);
};

/* The registry: the backend named name ("cpu"); NULL with err_msg() for
 * an unknown name (-ENOENT in *rc when rc is not NULL). */
const struct backend_type *backend_lookup(const char *name, int *rc);
/* Every name the registry knows, built or not (NULL-terminated; for
 * option tables). */
extern const char *const backend_names[];
/* Create the backend named name: lookup, available(), create(). */
int backend_create(const char *name, const struct backend_config *c, struct backend **out);

/* The CPU backend (core/cpu/backend_cpu.c). */
extern const struct backend_type backend_cpu;

#endif
