/*
 * kernels_avx2.c - AVX2+FMA kernels (see kernels_impl.h).
 *
 * Decode, one token: a GEMV reading the weights as one sequential stream
 * (gemv_avx2).  A few tokens: a tile of R weight rows x N tokens keeps R*N
 * vector accumulators and reads each weight once for all N tokens; the
 * next R rows (contiguous after these) are prefetched into L2 at the pace
 * the current ones are read, so the memory system streams ahead of the
 * row-by-row accesses (the hardware prefetcher stops at 4 KB pages).
 * Prefill (many tokens): 16-row panels of W packed k-major and an
 * outer-product 16 rows x 6 tokens micro-kernel (see gemm_packed).
 *
 * Each kernel is written once for any weight dtype (a constant argument
 * of the always-inlined body) and instantiated for F32, BF16 and F16:
 * load_w8 widens 8 weights as it loads them, the packed panels hold them
 * widened.  Q8_0 and Q4_0: kernels_qdot.h's kernels on int8 activations,
 * the products by vpmaddubsw (unsigned x signed bytes, pairs summed to
 * int16) and vpmaddwd (pairs to int32): Q8_0 as |w| times x with w's
 * sign, Q4_0 as its nibbles (0..15) times x, less 8 * sum(x).
 * The table needs F16C as well (every AVX2 CPU has it).
 */
#include "core/cpu/kernels_impl.h"

#if KERN_X86
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

static int avx2_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
	       kern_cpu_has_f16c();
}

/* Lanes [0, n) set (n <= 8), for masked loads of a row's tail. */
AVX2 static inline __m256i tail_mask(int n)
{
	return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* 8 weights of dtype wt (F32, BF16, F16) from element i of w, as F32 (wt is a constant
 * where this is inlined, so only one branch remains). */
INLINE AVX2 __m256 load_w8(const void *w, size_t i, enum dtype wt)
{
	const __m128i *h = (const __m128i *)((const uint16_t *)w + i);

	if (wt == DTYPE_BF16)	/* a BF16 is the high half of an F32 */
		return _mm256_castsi256_ps(
			_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(h)), 16));
	if (wt == DTYPE_F16)
		return _mm256_cvtph_ps(_mm_loadu_si128(h));
	return _mm256_loadu_ps((const float *)w + i);
}

/* The same for a row's tail: n (1..7; 8 or more: 8) weights, zeros after. */
INLINE AVX2 __m256 load_w8_tail(const void *w, size_t i, int n, enum dtype wt)
{
	uint16_t h[8] = { 0 };

	if (wt == DTYPE_F32)
		return _mm256_maskload_ps((const float *)w + i, tail_mask(n));
	/* AVX2 has no 16-bit masked load */
	memcpy(h, (const uint16_t *)w + i, sizeof(uint16_t) * (size_t)(n < 8 ? n : 8));
	return load_w8(h, 0, wt);
}

/* One weight as F32 (for packing panels). */
INLINE AVX2 float weight_at(const void *w, size_t i, enum dtype wt)
{
	if (wt == DTYPE_BF16)
		return bf16_to_f32(((const uint16_t *)w)[i]);
	if (wt == DTYPE_F16)
		return _cvtsh_ss(((const uint16_t *)w)[i]);
	return ((const float *)w)[i];
}

AVX2 static float dot_avx2(const float *a, const float *b, int n)
{
	__m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
	int i = 0;

	for (; i + 16 <= n; i += 16) {
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
		s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
	}
	for (; i + 8 <= n; i += 8)
		s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
	float s = kern_hsum256(_mm256_add_ps(s0, s1));
	for (; i < n; i++)
		s += a[i] * b[i];
	return s;
}

AVX2 static void axpy_avx2(float *y, float s, const float *x, int n)
{
	__m256 vs = _mm256_set1_ps(s);
	int i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(vs, _mm256_loadu_ps(x + i),
							_mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] += s * x[i];
}

/* 8 K/V elements of dtype kt from element c of a row of hd (a masked
 * tail past its end). */
INLINE AVX2 __m256 load_kv8(const void *r, int c, int hd, enum dtype kt)
{
	return hd - c >= 8 ? load_w8(r, (size_t)c, kt) : load_w8_tail(r, (size_t)c, hd - c, kt);
}

/* Attention halves (kernels_impl.h): inline dots and axpys over each key
 * and value row, read (and widened) once for all heads of the group; kt is
 * a constant where these are inlined. */
INLINE AVX2 void qk_any(float *s, int lds, const float *q, int group, int hd,
			const void *const *k, int n, float scale, enum dtype kt)
{
	for (int i = 0; i < n; i++) {
		const void *kr = k[i];
		for (int g = 0; g < group; g++) {
			const float *qg = q + (size_t)g * (size_t)hd;
			__m256 acc = _mm256_setzero_ps();
			for (int c = 0; c < hd; c += 8)
				acc = _mm256_fmadd_ps(_mm256_maskload_ps(qg + c, tail_mask(hd - c)),
						      load_kv8(kr, c, hd, kt), acc);
			s[(size_t)g * (size_t)lds + (size_t)i] = kern_hsum256(acc) * scale;
		}
	}
}

INLINE AVX2 void pv_any(float *o, const float *p, int ldp, int group, int hd,
			const void *const *v, int n, enum dtype vt)
{
	for (int g = 0; g < group; g++)
		for (int c = 0; c < hd; c += 8)
			_mm256_maskstore_ps(o + (size_t)g * (size_t)hd + c, tail_mask(hd - c),
					    _mm256_setzero_ps());
	for (int i = 0; i < n; i++) {
		const void *vr = v[i];
		for (int c = 0; c < hd; c += 8) {
			__m256i m = tail_mask(hd - c);
			__m256 vv = load_kv8(vr, c, hd, vt);
			for (int g = 0; g < group; g++) {
				float *og = o + (size_t)g * (size_t)hd + c;
				__m256 pg = _mm256_set1_ps(p[(size_t)g * (size_t)ldp + (size_t)i]);
				_mm256_maskstore_ps(og, m, _mm256_fmadd_ps(pg, vv,
							_mm256_maskload_ps(og, m)));
			}
		}
	}
}

AVX2 static void qk_avx2(float *s, int lds, const float *q, int group, int hd,
			 const void *const *k, enum dtype kt, int n, float scale)
{
	if (kt == DTYPE_BF16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_BF16);
	else if (kt == DTYPE_F16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F16);
	else
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F32);
}

AVX2 static void pv_avx2(float *o, const float *p, int ldp, int group, int hd,
			 const void *const *v, enum dtype vt, int n)
{
	if (vt == DTYPE_BF16)
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_BF16);
	else if (vt == DTYPE_F16)
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_F16);
	else
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_F32);
}

/*
 * R rows (from r) x N tokens; any cols.  R, N and the weights' dtype wt
 * are constants at every call site, so the loops unroll and the
 * accumulators live in registers (R * N <= 12 of the 16).  The x loads are
 * pinned to registers (the empty asm): folded into every FMA they would
 * double the loads per FMA.  prefetch: stream the next R rows in (off for
 * a second token chunk over the same rows).
 */
INLINE AVX2 void tile_avx2(float *y, int ldy, const float *x, const void *w, int cols, int r,
			   const float *bias, int R, int N, int prefetch, enum dtype wt)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols);
	const char *wr[4], *next = (const char *)w + (size_t)(r + R) * row_bytes;
	const float *xt[6];
	__m256 acc[4][6];
	int k = 0;

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		wr[i] = (const char *)w + (size_t)(r + i) * row_bytes;
#pragma GCC unroll 6
	for (int t = 0; t < N; t++)
		xt[t] = x + (size_t)t * (size_t)cols;
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 6
		for (int t = 0; t < N; t++)
			acc[i][t] = _mm256_setzero_ps();
	for (; k + 16 <= cols; k += 16) {
		__m256 w0[4], w1[4];
		/* one line of each row per 64 bytes read (every other step
		 * for 16-bit weights) */
		int fetch = prefetch && k % kern_weights_per_line(wt) == 0;
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			/* R lines of the next rows per R lines read: into L1
			 * for the GEMV, into L2 for several tokens, whose
			 * activations need L1 */
			const char *p = next + kern_weight_bytes(wt, (size_t)k) * (size_t)R +
					64 * (size_t)i;
			if (fetch && N == 1)
				_mm_prefetch(p, _MM_HINT_T0);
			else if (fetch)
				_mm_prefetch(p, _MM_HINT_T1);
			w0[i] = load_w8(wr[i], (size_t)k, wt);
			w1[i] = load_w8(wr[i], (size_t)k + 8, wt);
		}
#pragma GCC unroll 6
		for (int t = 0; t < N; t++) {
			__m256 v = _mm256_loadu_ps(xt[t] + k), u = _mm256_loadu_ps(xt[t] + k + 8);
			__asm__("" : "+x"(v), "+x"(u));
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][t] = _mm256_fmadd_ps(w1[i], u,
							    _mm256_fmadd_ps(w0[i], v, acc[i][t]));
		}
	}
	for (; k < cols; k += 8) {	/* tail: 8 columns at a time, the last masked */
		__m256i m = tail_mask(cols - k);
		__m256 wv[4];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++)
			wv[i] = load_w8_tail(wr[i], (size_t)k, cols - k, wt);
#pragma GCC unroll 6
		for (int t = 0; t < N; t++) {
			__m256 v = _mm256_maskload_ps(xt[t] + k, m);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][t] = _mm256_fmadd_ps(wv[i], v, acc[i][t]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		float b = bias ? bias[r + i] : 0.0f;
#pragma GCC unroll 6
		for (int t = 0; t < N; t++)
			y[(size_t)t * (size_t)ldy + (size_t)(r + i)] = kern_hsum256(acc[i][t]) + b;
	}
}

/*
 * The GEMV (one token): rows one after the other, each read front to back
 * with four accumulators, so the weights are one sequential stream that
 * the hardware prefetchers follow (across 2 MB pages), plus a software
 * prefetch 256 bytes ahead.  Measured on Zen 4: ~97% of a plain read's
 * bandwidth, 5-10% more than four interleaved rows.
 */
#define GEMV_PREFETCH 256

INLINE AVX2 void gemv_avx2(float *y, const float *x, const void *w, enum dtype wt, int cols,
			   int r0, int r1, const float *bias)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols);

	for (int r = r0; r < r1; r++) {
		const char *wr = (const char *)w + (size_t)r * row_bytes;
		const char *ahead = wr + GEMV_PREFETCH;
		__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
		int k = 0;

		for (; k + 32 <= cols; k += 32) {	/* 32 weights: 128, 64 or 34 bytes */
			_mm_prefetch(ahead + kern_weight_bytes(wt, (size_t)k), _MM_HINT_T0);
			if (wt == DTYPE_F32)
				_mm_prefetch(ahead + kern_weight_bytes(wt, (size_t)k) + 64, _MM_HINT_T0);
			a0 = _mm256_fmadd_ps(load_w8(wr, (size_t)k, wt), _mm256_loadu_ps(x + k), a0);
			a1 = _mm256_fmadd_ps(load_w8(wr, (size_t)k + 8, wt),
					     _mm256_loadu_ps(x + k + 8), a1);
			a2 = _mm256_fmadd_ps(load_w8(wr, (size_t)k + 16, wt),
					     _mm256_loadu_ps(x + k + 16), a2);
			a3 = _mm256_fmadd_ps(load_w8(wr, (size_t)k + 24, wt),
					     _mm256_loadu_ps(x + k + 24), a3);
		}
		for (; k < cols; k += 8) {
			__m256i m = tail_mask(cols - k);
			a0 = _mm256_fmadd_ps(load_w8_tail(wr, (size_t)k, cols - k, wt),
					     _mm256_maskload_ps(x + k, m), a0);
		}
		y[r] = kern_hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) +
		       (bias ? bias[r] : 0.0f);
	}
}

/* Tiles for each weight dtype: tile_<dtype>_<R>x<N>. */
#define TILE(R, N, sfx, wt)                                                                 \
	AVX2 static void tile_##sfx##_##R##x##N(float *y, int ldy, const float *x,           \
						const void *w, int cols, int r,              \
						const float *bias, int prefetch)             \
	{                                                                                   \
		tile_avx2(y, ldy, x, w, cols, r, bias, R, N, prefetch, wt);                 \
	}
#define TILES(sfx, wt)                                                                      \
	TILE(4, 1, sfx, wt)                                                                 \
	TILE(2, 2, sfx, wt) TILE(2, 3, sfx, wt) TILE(2, 4, sfx, wt) TILE(2, 5, sfx, wt)     \
	TILE(2, 6, sfx, wt)                                                                 \
	TILE(1, 1, sfx, wt) TILE(1, 2, sfx, wt) TILE(1, 3, sfx, wt) TILE(1, 4, sfx, wt)     \
	TILE(1, 5, sfx, wt) TILE(1, 6, sfx, wt)                                             \
	static const kern_tile_fn wide_##sfx[MAX_N + 1] = {                                 \
		0, tile_##sfx##_4x1, tile_##sfx##_2x2, tile_##sfx##_2x3, tile_##sfx##_2x4,  \
		tile_##sfx##_2x5, tile_##sfx##_2x6                                          \
	};                                                                                  \
	static const kern_tile_fn narrow_##sfx[MAX_N + 1] = {                               \
		0, tile_##sfx##_1x1, tile_##sfx##_1x2, tile_##sfx##_1x3, tile_##sfx##_1x4,  \
		tile_##sfx##_1x5, tile_##sfx##_1x6                                          \
	};                                                                                  \
	static const struct kern_tiles tiles_##sfx = { MAX_N, wide_##sfx, narrow_##sfx,     \
						       wide_rows };

#define MAX_N 6
/* [N]: the widest tile's rows for N tokens (4 rows for the GEMV). */
static const int wide_rows[MAX_N + 1] = { 0, 4, 2, 2, 2, 2, 2 };
TILES(f32, DTYPE_F32)
TILES(bf16, DTYPE_BF16)
TILES(f16, DTYPE_F16)
#undef TILES
#undef TILE

/*
 * Prefill GEMM for 16 rows at a time, outer-product form: the 16 rows x KC
 * columns of W are packed k-major into a 16 KB panel that stays in L1, and
 * each step multiplies two panel vectors (16 rows) by one broadcast
 * activation of 6 tokens (12 accumulators, results stored as whole vectors,
 * no horizontal sums).  Dot-product tiles keep re-reading W and the token
 * tile from L2 for every tile, and were L2-bound.
 */
#define PACK_ROWS 16
#define PACK_KC 320

AVX2 static void pk_6(float *y, int ldy, const float *x, int cols, const float *panel, int kc,
		      int first, const float *bias)
{
	__m256 a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51;
	float *y0 = y, *y1 = y0 + ldy, *y2 = y1 + ldy, *y3 = y2 + ldy, *y4 = y3 + ldy,
	      *y5 = y4 + ldy;
	const float *x0 = x, *x1 = x0 + cols, *x2 = x1 + cols, *x3 = x2 + cols, *x4 = x3 + cols,
		    *x5 = x4 + cols;

	if (first) {
		__m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
		__m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
		a00 = a10 = a20 = a30 = a40 = a50 = b0;
		a01 = a11 = a21 = a31 = a41 = a51 = b1;
	} else {
		a00 = _mm256_loadu_ps(y0), a01 = _mm256_loadu_ps(y0 + 8);
		a10 = _mm256_loadu_ps(y1), a11 = _mm256_loadu_ps(y1 + 8);
		a20 = _mm256_loadu_ps(y2), a21 = _mm256_loadu_ps(y2 + 8);
		a30 = _mm256_loadu_ps(y3), a31 = _mm256_loadu_ps(y3 + 8);
		a40 = _mm256_loadu_ps(y4), a41 = _mm256_loadu_ps(y4 + 8);
		a50 = _mm256_loadu_ps(y5), a51 = _mm256_loadu_ps(y5 + 8);
	}
	for (int k = 0; k < kc; k++) {
		__m256 w0 = _mm256_load_ps(panel + k * PACK_ROWS),
		       w1 = _mm256_load_ps(panel + k * PACK_ROWS + 8), b;
		b = _mm256_broadcast_ss(x0 + k);
		a00 = _mm256_fmadd_ps(w0, b, a00);
		a01 = _mm256_fmadd_ps(w1, b, a01);
		b = _mm256_broadcast_ss(x1 + k);
		a10 = _mm256_fmadd_ps(w0, b, a10);
		a11 = _mm256_fmadd_ps(w1, b, a11);
		b = _mm256_broadcast_ss(x2 + k);
		a20 = _mm256_fmadd_ps(w0, b, a20);
		a21 = _mm256_fmadd_ps(w1, b, a21);
		b = _mm256_broadcast_ss(x3 + k);
		a30 = _mm256_fmadd_ps(w0, b, a30);
		a31 = _mm256_fmadd_ps(w1, b, a31);
		b = _mm256_broadcast_ss(x4 + k);
		a40 = _mm256_fmadd_ps(w0, b, a40);
		a41 = _mm256_fmadd_ps(w1, b, a41);
		b = _mm256_broadcast_ss(x5 + k);
		a50 = _mm256_fmadd_ps(w0, b, a50);
		a51 = _mm256_fmadd_ps(w1, b, a51);
	}
	_mm256_storeu_ps(y0, a00), _mm256_storeu_ps(y0 + 8, a01);
	_mm256_storeu_ps(y1, a10), _mm256_storeu_ps(y1 + 8, a11);
	_mm256_storeu_ps(y2, a20), _mm256_storeu_ps(y2 + 8, a21);
	_mm256_storeu_ps(y3, a30), _mm256_storeu_ps(y3 + 8, a31);
	_mm256_storeu_ps(y4, a40), _mm256_storeu_ps(y4 + 8, a41);
	_mm256_storeu_ps(y5, a50), _mm256_storeu_ps(y5 + 8, a51);
}

AVX2 static void pk_1(float *y, const float *x, const float *panel, int kc, int first,
		      const float *bias)
{
	__m256 a0, a1;

	if (first) {
		a0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
		a1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
	} else {
		a0 = _mm256_loadu_ps(y);
		a1 = _mm256_loadu_ps(y + 8);
	}
	for (int k = 0; k < kc; k++) {
		__m256 b = _mm256_broadcast_ss(x + k);
		a0 = _mm256_fmadd_ps(_mm256_load_ps(panel + k * PACK_ROWS), b, a0);
		a1 = _mm256_fmadd_ps(_mm256_load_ps(panel + k * PACK_ROWS + 8), b, a1);
	}
	_mm256_storeu_ps(y, a0);
	_mm256_storeu_ps(y + 8, a1);
}

/* Rows [r0, r1) (a multiple of 16 apart) for tokens [0, n).  Column
 * blocks outermost: the block's activations (n x kc, ~640 KB for 512
 * tokens) stay in L2 while every 16-row panel of the range uses them. */
INLINE AVX2 void gemm_packed(float *y, int ldy, const float *x, int n, const void *w,
			     enum dtype wt, int cols, int r0, int r1, const float *bias)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols);
	_Alignas(32) float panel[PACK_KC * PACK_ROWS];
	int nb = (cols + PACK_KC - 1) / PACK_KC, step = ((cols + nb - 1) / nb + 7) / 8 * 8;

	for (int k0 = 0; k0 < cols; k0 += step) {	/* nb even blocks of <= PACK_KC */
		int kc = cols - k0 < step ? cols - k0 : step;
		for (int r = r0; r < r1; r += PACK_ROWS) {
			const float *b = bias ? bias + r : NULL;
			for (int i = 0; i < PACK_ROWS; i++) {
				const char *wr = (const char *)w + (size_t)(r + i) * row_bytes;
				for (int k = 0; k < kc; k++)
					panel[k * PACK_ROWS + i] = weight_at(wr, (size_t)(k0 + k), wt);
			}
			int t = 0;
			for (; t + 6 <= n; t += 6)
				pk_6(y + (size_t)t * (size_t)ldy + r, ldy,
				     x + (size_t)t * (size_t)cols + k0, cols, panel, kc, k0 == 0, b);
			for (; t < n; t++)
				pk_1(y + (size_t)t * (size_t)ldy + r, x + (size_t)t * (size_t)cols + k0,
				     panel, kc, k0 == 0, b);
		}
	}
}

AVX2 void kern_avx2_gemm_packed(float *y, int ldy, const float *x, int n, const void *w,
				enum dtype wt, int cols, int r0, int r1, const float *bias)
{
	switch (wt) {	/* one instance per dtype, the packing inlined */
	case DTYPE_BF16: gemm_packed(y, ldy, x, n, w, DTYPE_BF16, cols, r0, r1, bias); break;
	case DTYPE_F16: gemm_packed(y, ldy, x, n, w, DTYPE_F16, cols, r0, r1, bias); break;
	default: gemm_packed(y, ldy, x, n, w, DTYPE_F32, cols, r0, r1, bias); break;
	}
}

INLINE AVX2 void gemm_avx2(float *y, int ldy, const float *x, int n, const void *w,
			   enum dtype wt, const struct kern_tiles *tiles, int cols, int r0,
			   int r1, const float *bias)
{
	if (n >= KERN_PACKED_MIN_TOKENS) {	/* prefill: packed panels, the rest below */
		int r16 = r0 + (r1 - r0) / PACK_ROWS * PACK_ROWS;
		gemm_packed(y, ldy, x, n, w, wt, cols, r0, r16, bias);
		r0 = r16;
	}
	if (n == 1) {
		gemv_avx2(y, x, w, wt, cols, r0, r1, bias);
		return;
	}
	for (int t0 = 0; t0 < n && r0 < r1; t0 += KERN_PACKED_MIN_TOKENS - 1) {
		int nt = n - t0 < KERN_PACKED_MIN_TOKENS - 1 ? n - t0 : KERN_PACKED_MIN_TOKENS - 1;
		kern_gemm_few(tiles, y + (size_t)t0 * (size_t)ldy, ldy,
			      x + (size_t)t0 * (size_t)cols, nt, w, cols, r0, r1, bias);
	}
}

#define GEMM_OF(sfx, wt)                                                                    \
	AVX2 static void gemm_avx2_##sfx(float *y, int ldy, const void *x, int n,            \
					 const void *w, int cols, int r0, int r1,            \
					 const float *bias)                                  \
	{                                                                                   \
		gemm_avx2(y, ldy, x, n, w, wt, &tiles_##sfx, cols, r0, r1, bias);           \
	}
GEMM_OF(f32, DTYPE_F32)
GEMM_OF(bf16, DTYPE_BF16)
GEMM_OF(f16, DTYPE_F16)
#undef GEMM_OF

/* kern_act_quant (see kernels.c's act_quant_c, which this matches bit for
 * bit: the same F32 operations, eight lanes at a time). */
AVX2 void kern_avx2_act_quant(void *xq, const float *x, int n, int cols)
{
	const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);

	for (int t = 0; t < n; t++) {
		struct kern_act_row r = kern_act_row_at(xq, t, cols);
		int8_t *q = r.q;
		float *d = r.d;
		int32_t *sum = r.sum;
		const float *xr = x + (size_t)t * (size_t)cols;
		for (int b = 0; b < cols / 32; b++, q += 32, xr += 32) {
			__m256 v[4], m = _mm256_setzero_ps();
			int bad = 0;
			for (int j = 0; j < 4; j++) {
				v[j] = _mm256_loadu_ps(xr + 8 * j);
				__m256 a = _mm256_andnot_ps(sign, v[j]);
				m = _mm256_max_ps(m, a);
				bad |= _mm256_movemask_ps(_mm256_cmp_ps(a, big, _CMP_NLE_UQ));
			}
			m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 1));
			m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0x4e));
			m = _mm256_max_ps(m, _mm256_shuffle_ps(m, m, 0xb1));
			float amax = _mm256_cvtss_f32(m);
			float id = kern_act_block_scale(amax, bad, &d[b]);
			__m256i i[4];
			for (int j = 0; j < 4; j++)
				i[j] = _mm256_cvtps_epi32(_mm256_round_ps(
					_mm256_mul_ps(v[j], _mm256_set1_ps(id)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
			/* to int8: the packs interleave 128-bit lanes, the permute
			 * puts them back in order */
			__m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i[0], i[1]),
						       _mm256_packs_epi32(i[2], i[3]));
			p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
			p = bad ? _mm256_setzero_si256() : p;
			_mm256_storeu_si256((__m256i *)q, p);
			/* the sum: |q| <= 127, so pairs of 1 * q fit int16 */
			__m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), p),
						      _mm256_set1_epi16(1));
			__m128i h = _mm_add_epi32(_mm256_castsi256_si128(s),
						  _mm256_extracti128_si256(s, 1));
			h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
			h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
			sum[b] = _mm_cvtsi128_si32(h);
		}
	}
}

/* kernels_qdot.h's dot products by vpmaddubsw: Q8_0 as |w| times x with
 * w's sign, Q4_0 as nibbles (0..15) times x, less 8 * sum(x).  No int16
 * saturates: |x| <= 127, so pairs of |w| x are at most 2 * 128 * 127, of
 * nibbles x 2 * 15 * 127 (and 8 of those 8 * 2 * 15 * 127). */
struct qd_w {
	__m256i a, s;
};
struct qd_x {
	__m256i q, c;	/* c: Q4_0's 8 * x's pair sums (int16) */
};

#define QD_TARGET AVX2
#define QD_SIGNS 1
/* qd_dotk's offset: Q8_0: |w| times x with w's sign (K 0); Q4_0: nibbles times x (K 8). */
#define QD_K(wt) ((wt) == DTYPE_Q4_0 ? 8 : 0)
/* one: with 16 registers the interleaved sums spill (measured no faster) */
#define QD_GROUP 1
#include "core/cpu/kernels_qdot.h"

INLINE AVX2 struct qd_w qd_w_load(const unsigned char *b, enum dtype wt)
{
	struct qd_w r;

	r.s = qd_block_bytes(b, wt);
	r.a = wt == DTYPE_Q4_0 ? r.s : _mm256_abs_epi8(r.s);	/* -128: 128 (unsigned) */
	return r;
}

INLINE AVX2 struct qd_x qd_x_load(const int8_t *q, enum dtype wt)
{
	struct qd_x r;

	r.q = _mm256_loadu_si256((const __m256i *)q);
	r.c = wt == DTYPE_Q4_0 ? _mm256_maddubs_epi16(_mm256_set1_epi8(8), r.q) : r.q;
	return r;
}

INLINE AVX2 __m256i qd_dot(struct qd_w w, struct qd_x x, enum dtype wt)
{
	__m256i p = wt == DTYPE_Q4_0
			    ? _mm256_sub_epi16(_mm256_maddubs_epi16(w.a, x.q), x.c)
			    : _mm256_maddubs_epi16(w.a, _mm256_sign_epi8(x.q, w.s));
	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

INLINE AVX2 void qd_panel_put(struct qd_pblk *p, const __m256i t[8], enum dtype wt)
{
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++) {
		p->q[j] = wt == DTYPE_Q4_0 ? t[j] : _mm256_abs_epi8(t[j]);
		p->s[j] = t[j];
	}
}

/* Q4_0's products summed in int16 (at most 8 * 2 * 15 * 127), madd'ed
 * once at the end, less 8 * sum(x). */
INLINE AVX2 __m256i qd_acc0(int32_t sum, enum dtype wt)
{
	(void)sum;
	(void)wt;
	return _mm256_setzero_si256();
}

INLINE AVX2 __m256i qd_step(__m256i acc, const struct qd_pblk *p, int j, __m256i xb,
			    enum dtype wt)
{
	if (wt == DTYPE_Q4_0)
		return _mm256_add_epi16(acc, _mm256_maddubs_epi16(p->q[j], xb));
	return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(p->q[j],
						_mm256_sign_epi8(xb, p->s[j])), _mm256_set1_epi16(1)));
}

INLINE AVX2 __m256i qd_acc_end(__m256i acc, int32_t sum, enum dtype wt)
{
	if (wt != DTYPE_Q4_0)
		return acc;
	return _mm256_sub_epi32(_mm256_madd_epi16(acc, _mm256_set1_epi16(1)),
				_mm256_set1_epi32(8 * sum));
}

/* Q8_0: |w| times x with w's sign (K 0); Q4_0: nibbles times x (K 8). */
INLINE AVX2 __m256i qd_dotk(const unsigned char *b, const int8_t *x, enum dtype wt)
{
	__m256i w = qd_block_bytes(b, wt), q = _mm256_loadu_si256((const __m256i *)x);
	__m256i p = wt == DTYPE_Q4_0 ? _mm256_maddubs_epi16(w, q)
				     : _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q, w));
	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

QD_KERNELS(q8_0, DTYPE_Q8_0)
QD_KERNELS(q4_0, DTYPE_Q4_0)

const struct kern_impl kern_avx2 = {
	.name = "avx2+fma",
	.supported = avx2_supported,
	.dot = dot_avx2,
	.axpy = axpy_avx2,
	.gemm = { [DTYPE_F32] = gemm_avx2_f32, [DTYPE_BF16] = gemm_avx2_bf16,
		  [DTYPE_F16] = gemm_avx2_f16, [DTYPE_Q8_0] = qd_gemm_q8_0,
		  [DTYPE_Q4_0] = qd_gemm_q4_0, [DTYPE_Q8_0_P8] = qd_gemm_p8_q8_0,
		  [DTYPE_Q4_0_P8] = qd_gemm_p8_q4_0 },
	.act_quant = kern_avx2_act_quant,
	.qk = qk_avx2,
	.pv = pv_avx2,
};
#endif
