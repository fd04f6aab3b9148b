/*
 * kernels.h - the CPU backend's hot loops, with an instruction set chosen
 * at run time: AVX-512F when the CPU has it, else AVX2+FMA, else portable
 * C (kernels_impl.h holds the per-ISA tables).
 *
 * Matrix products are chosen by instruction set and by the weights' dtype:
 * kern_gemm_for() is the lookup (NULL for a dtype without a kernel, which
 * the backend reports as an unsupported weight type, never a crash).
 *
 * kernels_init() detects the CPU once and picks the best table (idempotent;
 * call it before starting threads that use the kernels); kernels_use()
 * switches to a named table (tests compare every one with a reference).
 * The kernels themselves are pure and thread-safe.
 */
#ifndef DYN_CPU_KERNELS_H
#define DYN_CPU_KERNELS_H

#include "core/model/dtype.h"

#include <stddef.h>

/* Detect features and pick implementations; returns their name
 * ("avx512", "avx2+fma" or "portable"). */
const char *kernels_init(void);

/* The i-th table this build has (best first), NULL past the end. */
const char *kernels_name(int i);
/* Switch to the named table: 0, or -ENOTSUP when this CPU cannot run it
 * and -ENOENT when the build has no such table.  Not thread-safe: only
 * while no kernel runs. */
int kernels_use(const char *name);

/* sum_i a[i] * b[i] */
float kern_dot(const float *a, const float *b, int n);
/* y[i] += s * x[i] */
void kern_axpy(float *y, float s, const float *x, int n);
/*
 * GEMM tile: for rows r in [r0, r1) of W [rows, cols] and tokens t in
 * [0, n): y[t * ldy + r] = dot(x[t * cols ..], W[r * cols ..]) (+ bias[r]).
 * Few tokens (decode) read each weight once for all of them; from
 * KERN_PACKED_MIN_TOKENS (12) tokens, a packed-panel GEMM (prefill).
 */
void kern_gemm(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
	       int r1, const float *bias);

/*
 * kern_gemm for weights w of some dtype, F32 out.  x: F32 rows for F32,
 * BF16 and F16 weights; for the block types (dtype_is_quant: Q8_0, Q4_0)
 * the rows as kern_act_quant wrote them, the GEMM being integer dot
 * products of each weight block with the activations' block, times the
 * two scales (as llama.cpp computes them).  Their panel types (Q8_0_P8,
 * Q4_0_P8: the whole matrix repacked, dtype.h) compute the same from
 * panels read in order; r0 must be a multiple of 8 and r1 too unless it
 * is the matrix's last row + 1 (a range never splits a panel).
 */
typedef void (*kern_gemm_fn)(float *y, int ldy, const void *x, int n, const void *w, int cols,
			     int r0, int r1, const float *bias);
/* The current table's GEMM for weights of dtype wt (the portable one when
 * the table lacks it); NULL when no table has one. */
kern_gemm_fn kern_gemm_for(enum dtype wt);

/*
 * Activations of the block types' GEMMs: each row of cols (a multiple of
 * 32) F32 as 32-element blocks of int8 with an F32 scale, made once per
 * matmul for all its weights: per block, amax = max|x|, d = amax / 127,
 * q = x * (127 / amax) rounded to nearest even; d = 0 and q = 0 when
 * 127 / amax is not finite (amax 0 or below ~3.7e-37), d = NaN and q = 0
 * for a block holding a NaN or an infinity (so its products are NaN).  A
 * row is cols int8, then the cols / 32 scales, then the cols / 32 sums of
 * each block's q (int32): kern_act_bytes(n, cols) bytes for n rows, row t
 * at t * kern_act_bytes(1, cols).
 */
size_t kern_act_bytes(int n, int cols);
void kern_act_quant(void *xq, const float *x, int n, int cols);

/* KV cache element types the attention kernels read: F32, BF16, F16. */
int kern_kv_dtype_ok(enum dtype t);

/*
 * Attention of group query heads sharing one KV head over n >= 1 cached
 * positions: out[g] = sum_i softmax_i(scale * q[g] . k[i]) v[i], heads of
 * hd floats contiguous in q and out; k[i] and v[i] point at the rows, hd
 * elements of dtype kvt (kern_kv_dtype_ok), widened to F32 as they are
 * read, every sum in F32.  scores: scratch of group * n floats.
 */
void kern_attend(float *out, const float *q, int group, int hd, const void *const *k,
		 const void *const *v, enum dtype kvt, int n, float scale, float *scores);

#endif
