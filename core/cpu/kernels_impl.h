/*
 * kernels_impl.h - internal to core/cpu: one table of kernel functions per
 * instruction set (kernels.c: portable C; kernels_avx2.c: AVX2+FMA;
 * kernels_avx512.c: AVX-512F).  kernels.c picks one at run time; each SIMD
 * file compiles its functions with __attribute__((target)) so the build
 * needs no -m flags and runs on any x86-64.
 *
 * Every table computes the same things as kernels.h describes; they differ
 * only in summation order (float rounding).  The GEMM is keyed by the
 * weights' dtype as well (as ggml's per-type tables): a table fills the
 * entries it has kernels for, and a new weight type (int8) is a new entry.
 * F32, BF16 and F16 exist in every table: the 16-bit ones widen each
 * weight to F32 as it is loaded (BF16: a shift; F16: F16C's vcvtph2ps) and
 * multiply-add F32 activations into F32 accumulators, so they compute
 * exactly what the F32 kernels compute on the widened weights (a fused
 * multiply-add of a widened weight is exact up to the sum's rounding).
 * AVX-512 BF16's vdpbf16ps is not used: it needs the activations rounded
 * to BF16 too, and decode is bound by reading the weights, not by FMAs.
 * Q8_0 and Q4_0 (dtype.h; rows of whole 32-weight blocks, so cols % 32 ==
 * 0) are computed in integers, as llama.cpp does: the activations
 * quantized once per matmul (kern_act_quant, by the table's act_quant),
 * then per block an int32 dot product of the weights' int8 (Q4_0: nibbles
 * less 8) with the activations' int8, times both scales, summed in F32.
 * The SIMD tables share the loops (kernels_qdot.h: 8-row transposed
 * panels for several tokens, a sequential GEMV for one) and differ in the
 * byte dot products: AVX2's vpmaddubsw, AVX-512 VNNI's vpdpbusd.  Their
 * panel types (Q8_0_P8, Q4_0_P8: the loader repacks the matrices once,
 * dtype.h) skip the gathering: every table has a GEMM for them.
 */
#ifndef DYN_CPU_KERNELS_IMPL_H
#define DYN_CPU_KERNELS_IMPL_H

#include "core/cpu/kernels.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8))
#define KERN_X86 1
#else
#define KERN_X86 0
#endif

struct kern_impl {
	const char *name;
	/* nonzero when this CPU can run the table (checked by cpuid) */
	int (*supported)(void);
	float (*dot)(const float *a, const float *b, int n);
	void (*axpy)(float *y, float s, const float *x, int n);
	/* by weight dtype; NULL where the table has no kernel */
	kern_gemm_fn gemm[DTYPE_COUNT];
	/* kern_act_quant */
	void (*act_quant)(void *xq, const float *x, int n, int cols);
	/* attention halves (kern_attend does the softmax between them):
	 * s[g * lds + i] = scale * q[g] . k[i]; o[g] = sum_i p[g * ldp + i] v[i]
	 * for g < group heads of hd floats (contiguous in q and o); the K/V
	 * rows of dtype kt / vt (F32, BF16, F16) widened as they are loaded */
	void (*qk)(float *s, int lds, const float *q, int group, int hd, const void *const *k,
		   enum dtype kt, int n, float scale);
	void (*pv)(float *o, const float *p, int ldp, int group, int hd, const void *const *v,
		   enum dtype vt, int n);
};

extern const struct kern_impl kern_portable;
#if KERN_X86
#include <cpuid.h>
#include <immintrin.h>

/* F16C from cpuid leaf 1 (ECX bit 29): clang before 15 does not know
 * "f16c" in __builtin_cpu_supports. */
static inline int kern_cpu_has_f16c(void)
{
	unsigned a, b, c, d;
	return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* The sum of a vector's 8 floats, for the SIMD tables (whose targets
 * include AVX, so it inlines into theirs). */
__attribute__((target("avx"))) static inline float kern_hsum256(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

extern const struct kern_impl kern_avx2;
extern const struct kern_impl kern_avx512;
/* The AVX2 prefill GEMM (16-row packed panels) for weights of dtype wt
 * (F32, BF16, F16), shared by the AVX-512 table: rows [r0, r1) must be a
 * multiple of 16 apart. */
void kern_avx2_gemm_packed(float *y, int ldy, const float *x, int n, const void *w,
			   enum dtype wt, int cols, int r0, int r1, const float *bias);
/* The AVX2 activation quantizer, shared by the AVX-512 table. */
void kern_avx2_act_quant(void *xq, const float *x, int n, int cols);
#endif

/* Bytes of the first k weights of a row of a GEMM dtype (F32, BF16, F16;
 * Q8_0, Q4_0 for k a multiple of 32): inline, so that the kernels' strides
 * are constants where the dtype is. */
static inline size_t kern_weight_bytes(enum dtype wt, size_t k)
{
	if (wt == DTYPE_Q8_0)
		return k / Q8_0_BLOCK * Q8_0_BLOCK_BYTES;
	if (wt == DTYPE_Q4_0)
		return k / Q4_0_BLOCK * Q4_0_BLOCK_BYTES;
	return k * (wt == DTYPE_F32 ? 4 : 2);
}

/* Weights per 64-byte line of a float GEMM dtype (F32, BF16, F16), for
 * prefetching a line per line read. */
static inline int kern_weights_per_line(enum dtype wt)
{
	return wt == DTYPE_F32 ? 16 : 32;
}

/* The bytes of one row of activations (kern_act_quant). */
static inline size_t kern_act_row_bytes(int cols)
{
	return (size_t)cols + (size_t)cols / 32 * (sizeof(float) + sizeof(int32_t));
}

/* Row t of quantized activations: its int8 values, then its blocks'
 * scales, then their sums. */
struct kern_act_row {
	int8_t *q;
	float *d;
	int32_t *sum;
};

static inline struct kern_act_row kern_act_row_at(void *xq, int t, int cols)
{
	struct kern_act_row r;
	r.q = (int8_t *)xq + (size_t)t * kern_act_row_bytes(cols);
	r.d = (float *)(r.q + cols);
	r.sum = (int32_t *)(r.d + cols / 32);
	return r;
}

/* A block's scale (*d) and the factor that quantizes it, from its largest
 * magnitude; bad: it holds a NaN or an inf (d NaN, all zero, so products
 * are NaN as in F32).  An amax of 0, or so small that 127 / amax
 * overflows, makes the block all zero. */
static inline float kern_act_block_scale(float amax, int bad, float *d)
{
	float id = bad || !(127.0f / amax <= FLT_MAX) ? 0.0f : 127.0f / amax;
	*d = bad ? NAN : id > 0 ? amax / 127.0f : 0.0f;
	return id;
}

/* Tokens from which gemm switches to the packed prefill kernel. */
#define KERN_PACKED_MIN_TOKENS 12

/*
 * Decode-sized GEMM (a few tokens) from register tiles, shared by the
 * SIMD tables: a tile computes R weight rows x N tokens (prefetch: also
 * fetch the next rows); wide[N] is the widest tile for N tokens
 * (wide_rows[N] rows) and narrow[N] the one-row tile, for N <= max_n.
 */
typedef void (*kern_tile_fn)(float *y, int ldy, const float *x, const void *w, int cols,
			     int r, const float *bias, int prefetch);

struct kern_tiles {
	int max_n;
	const kern_tile_fn *wide, *narrow;
	const int *wide_rows;
};

/* Rows [r0, r1) x tokens [0, n), n small: row groups outermost, so each
 * weight comes from memory once and from L1 for the other token chunks
 * (chunks of at most max_n tokens, as even as possible). */
static inline void kern_gemm_few(const struct kern_tiles *t, float *y, int ldy, const float *x,
				 int n, const void *w, int cols, int r0, int r1,
				 const float *bias)
{
	int chunks = (n + t->max_n - 1) / t->max_n, rows = t->wide_rows[(n + chunks - 1) / chunks];

	for (int r = r0; r < r1; r += rows) {
		if (r + rows > r1)
			rows = 1;
		for (int c = 0, t0 = 0; c < chunks; c++) {
			int nt = (n - t0) / (chunks - c);
			const float *xc = x + (size_t)t0 * (size_t)cols;
			float *yc = y + (size_t)t0 * (size_t)ldy;
			if (rows > 1 && t->wide_rows[nt] == rows)
				t->wide[nt](yc, ldy, xc, w, cols, r, bias, c == 0);
			else	/* single rows (a remainder, or a chunk for fewer rows) */
				for (int i = 0; i < rows; i++)
					t->narrow[nt](yc, ldy, xc, w, cols, r + i, bias, c == 0);
			t0 += nt;
		}
	}
}

#endif
