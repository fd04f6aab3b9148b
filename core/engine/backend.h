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
 * n_blocks * block_size rows of kv_dim floats; a token's row ("slot") is
 * block_id * block_size + position % block_size.  Attention reads it
 * directly through each sequence's block table.
 *
 * Errors: ops on valid shapes cannot fail; alloc/create return negative
 * codes with err_msg().  Thread-safety: a backend belongs to the engine's
 * step thread; ops may use the backend's own worker threads inside.
 */
#ifndef DYN_ENGINE_BACKEND_H
#define DYN_ENGINE_BACKEND_H

#include "core/model/model.h"

#include <stddef.h>
#include <stdint.h>

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
	/* Copy n floats of backend memory to host memory. */
	void (*to_host)(struct backend *b, float *dst, const float *src, size_t n);
};

struct backend {
	const struct backend_ops *ops;
	int n_threads;		/* CPU threads it computes with */
	const char *simd;	/* kernels in use: "avx512", "avx2+fma", "portable" */
};

/* The CPU backend (core/cpu/): n_threads <= 0 picks the physical core
 * count (hwloc). */
int cpu_backend_new(int n_threads, struct backend **out);

#endif
