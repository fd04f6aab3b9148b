/*
 * kernels_avx512.c - AVX-512F kernels (see kernels_impl.h).
 *
 * Decode (few tokens): tiles of R weight rows x N tokens like the AVX2
 * ones, with 32 vector registers: up to 24 accumulators (3 rows x 8
 * tokens), so a batch of 8 reads each weight once, and 16-column steps
 * that read one 64-byte line per row; the next R rows are prefetched into
 * L2 at the pace the current ones are read (see kernels_avx2.c).  Row
 * tails use masked loads.  The GEMV (one token) and prefill use the AVX2
 * kernels: the GEMV is memory-bound and its 512-bit variants measured
 * 3-10% slower on Zen 4, and the packed prefill GEMM is as fast on CPUs
 * that split 512-bit operations in two.
 */
#include "core/cpu/kernels_impl.h"

#if KERN_X86
#include <immintrin.h>
#include <stddef.h>

#define AVX512 __attribute__((target("avx512f,avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

static int avx512_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
	       __builtin_cpu_supports("fma");
}

/* Lanes [0, n) of 16 set (n in 1..16). */
AVX512 static inline __mmask16 tail_mask(int n)
{
	return (__mmask16)((1u << n) - 1u);
}

AVX512 static float dot_avx512(const float *a, const float *b, int n)
{
	__m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
	int i = 0;

	for (; i + 32 <= n; i += 32) {
		s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
		s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
	}
	for (; i < n; i += 16) {
		__mmask16 m = tail_mask(n - i < 16 ? n - i : 16);
		s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i),
				     s0);
	}
	return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

AVX512 static void axpy_avx512(float *y, float s, const float *x, int n)
{
	__m512 vs = _mm512_set1_ps(s);

	for (int i = 0; i < n; i += 16) {
		__mmask16 m = tail_mask(n - i < 16 ? n - i : 16);
		_mm512_mask_storeu_ps(y + i, m,
				      _mm512_fmadd_ps(vs, _mm512_maskz_loadu_ps(m, x + i),
						      _mm512_maskz_loadu_ps(m, y + i)));
	}
}

/* Attention halves (kernels_impl.h): inline dots and axpys over each key
 * and value row, read once for all heads of the group. */
AVX512 static void qk_avx512(float *s, int lds, const float *q, int group, int hd,
			     const float *const *k, int n, float scale)
{
	for (int i = 0; i < n; i++) {
		const float *kr = k[i];
		for (int g = 0; g < group; g++) {
			const float *qg = q + (size_t)g * (size_t)hd;
			__m512 acc = _mm512_setzero_ps();
			for (int c = 0; c < hd; c += 16) {
				__mmask16 m = tail_mask(hd - c < 16 ? hd - c : 16);
				acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qg + c),
						      _mm512_maskz_loadu_ps(m, kr + c), acc);
			}
			s[(size_t)g * (size_t)lds + (size_t)i] = _mm512_reduce_add_ps(acc) * scale;
		}
	}
}

AVX512 static void pv_avx512(float *o, const float *p, int ldp, int group, int hd,
			     const float *const *v, int n)
{
	for (int g = 0; g < group; g++)
		for (int c = 0; c < hd; c += 16)
			_mm512_mask_storeu_ps(o + (size_t)g * (size_t)hd + c,
					      tail_mask(hd - c < 16 ? hd - c : 16),
					      _mm512_setzero_ps());
	for (int i = 0; i < n; i++) {
		const float *vr = v[i];
		for (int c = 0; c < hd; c += 16) {
			__mmask16 m = tail_mask(hd - c < 16 ? hd - c : 16);
			__m512 vv = _mm512_maskz_loadu_ps(m, vr + c);
			for (int g = 0; g < group; g++) {
				float *og = o + (size_t)g * (size_t)hd + c;
				__m512 pg = _mm512_set1_ps(p[(size_t)g * (size_t)ldp + (size_t)i]);
				_mm512_mask_storeu_ps(og, m, _mm512_fmadd_ps(pg, vv,
							_mm512_maskz_loadu_ps(m, og)));
			}
		}
	}
}

/*
 * R rows (from r) x N tokens, any cols; R and N constant at each call
 * site (R * N <= 24 accumulators).  The x loads are pinned to registers
 * (the empty asm): folded into the FMAs they would be loaded R times.
 */
INLINE AVX512 void tile_avx512(float *y, int ldy, const float *x, const float *w, int cols,
			       int r, const float *bias, int R, int N, int prefetch)
{
	const float *wr[4], *xt[8];
	__m512 acc[4][8];
	const char *next = (const char *)(w + (size_t)(r + R) * (size_t)cols);
	int k = 0;

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		wr[i] = w + (size_t)(r + i) * (size_t)cols;
#pragma GCC unroll 8
	for (int t = 0; t < N; t++)
		xt[t] = x + (size_t)t * (size_t)cols;
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 8
		for (int t = 0; t < N; t++)
			acc[i][t] = _mm512_setzero_ps();
	for (; k + 16 <= cols; k += 16) {
		__m512 wv[4];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			/* R lines of the next rows per R lines read: into L1
			 * for the GEMV, into L2 for several tokens, whose
			 * activations need L1 */
			const char *p = next + (size_t)k * 4 * (size_t)R + 64 * (size_t)i;
			if (prefetch && N == 1)
				_mm_prefetch(p, _MM_HINT_T0);
			else if (prefetch)
				_mm_prefetch(p, _MM_HINT_T1);
			wv[i] = _mm512_loadu_ps(wr[i] + k);
		}
#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			__m512 v = _mm512_loadu_ps(xt[t] + k);
			__asm__("" : "+v"(v));
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][t] = _mm512_fmadd_ps(wv[i], v, acc[i][t]);
		}
	}
	if (k < cols) {
		__mmask16 m = tail_mask(cols - k);
		__m512 wv[4];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			wv[i] = _mm512_maskz_loadu_ps(m, wr[i] + k);
#pragma GCC unroll 8
		for (int t = 0; t < N; t++) {
			__m512 v = _mm512_maskz_loadu_ps(m, xt[t] + k);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][t] = _mm512_fmadd_ps(wv[i], v, acc[i][t]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		float b = bias ? bias[r + i] : 0.0f;
#pragma GCC unroll 8
		for (int t = 0; t < N; t++)
			y[(size_t)t * (size_t)ldy + (size_t)(r + i)] =
				_mm512_reduce_add_ps(acc[i][t]) + b;
	}
}

#define TILE(R, N)                                                                          \
	AVX512 static void tile_##R##x##N(float *y, int ldy, const float *x, const float *w, \
					  int cols, int r, const float *bias, int prefetch) \
	{                                                                                   \
		tile_avx512(y, ldy, x, w, cols, r, bias, R, N, prefetch);                   \
	}
TILE(4, 1) TILE(4, 2) TILE(4, 3) TILE(4, 4)
TILE(3, 5) TILE(3, 6) TILE(3, 7) TILE(3, 8)
TILE(1, 1) TILE(1, 2) TILE(1, 3) TILE(1, 4) TILE(1, 5) TILE(1, 6) TILE(1, 7) TILE(1, 8)
#undef TILE

#define MAX_N 8
static const kern_tile_fn wide[MAX_N + 1] = { 0,        tile_4x1, tile_4x2, tile_4x3, tile_4x4,
					      tile_3x5, tile_3x6, tile_3x7, tile_3x8 };
static const int wide_rows[MAX_N + 1] = { 0, 4, 4, 4, 4, 3, 3, 3, 3 };
static const kern_tile_fn narrow[MAX_N + 1] = { 0,        tile_1x1, tile_1x2, tile_1x3,
						tile_1x4, tile_1x5, tile_1x6, tile_1x7,
						tile_1x8 };

static const struct kern_tiles tiles = { MAX_N, wide, narrow, wide_rows };

AVX512 static void gemm_avx512(float *y, int ldy, const float *x, int n, const void *weights,
			       int cols, int r0, int r1, const float *bias)
{
	const float *w = weights;

	if (n == 1) {	/* the GEMV: see the top of this file */
		kern_avx2.gemm[DTYPE_F32](y, ldy, x, n, w, cols, r0, r1, bias);
		return;
	}
	if (n >= KERN_PACKED_MIN_TOKENS) {	/* prefill: packed 16-row panels */
		int r16 = r0 + (r1 - r0) / 16 * 16;
		kern_avx2_gemm_packed(y, ldy, x, n, w, cols, r0, r16, bias);
		r0 = r16;
	}
	for (int t0 = 0; t0 < n && r0 < r1; t0 += KERN_PACKED_MIN_TOKENS - 1) {
		int nt = n - t0 < KERN_PACKED_MIN_TOKENS - 1 ? n - t0 : KERN_PACKED_MIN_TOKENS - 1;
		kern_gemm_few(&tiles, y + (size_t)t0 * (size_t)ldy, ldy,
			      x + (size_t)t0 * (size_t)cols, nt, w, cols, r0, r1, bias);
	}
}

const struct kern_impl kern_avx512 = {
	.name = "avx512",
	.supported = avx512_supported,
	.dot = dot_avx512,
	.axpy = axpy_avx512,
	.gemm = { [DTYPE_F32] = gemm_avx512 },
	.qk = qk_avx512,
	.pv = pv_avx512,
};
#endif
