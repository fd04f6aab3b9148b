/*
 * kernels.c - dot products and GEMM tiles for the CPU backend, portable
 * and AVX2/FMA (see kernels.h).  The AVX2 functions carry
 * __attribute__((target)) so the file builds with default flags and runs
 * on any x86-64; the choice is made once from __builtin_cpu_supports().
 *
 * Few tokens (decode): dot-product micro-kernels, 4 weight rows x 3 tokens
 * (12 accumulators) or 4 rows x 1 token (GEMV, prefetching the next rows);
 * tokens are walked in tiles that stay in cache while a thread sweeps its
 * rows.  Many tokens (prefill, n >= 12): 16-row panels of W packed k-major
 * and an outer-product 16 rows x 6 tokens micro-kernel (see gemm_packed).
 */
#include "core/cpu/kernels.h"

#include <stdint.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

#define TOKEN_TILE 24

/* ---- portable ----------------------------------------------------------- */

static float dot_c(const float *a, const float *b, int n)
{
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int i = 0;

	for (; i + 4 <= n; i += 4) {
		s0 += a[i] * b[i];
		s1 += a[i + 1] * b[i + 1];
		s2 += a[i + 2] * b[i + 2];
		s3 += a[i + 3] * b[i + 3];
	}
	for (; i < n; i++)
		s0 += a[i] * b[i];
	return (s0 + s1) + (s2 + s3);
}

static void axpy_c(float *y, float s, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += s * x[i];
}

static void gemm_c(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
		   int r1, const float *bias)
{
	for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
		int t1 = t0 + TOKEN_TILE < n ? t0 + TOKEN_TILE : n;
		for (int r = r0; r < r1; r++) {
			const float *wr = w + (size_t)r * (size_t)cols;
			float b = bias ? bias[r] : 0.0f;
			for (int t = t0; t < t1; t++)
				y[(size_t)t * (size_t)ldy + (size_t)r] =
					dot_c(x + (size_t)t * (size_t)cols, wr, cols) + b;
		}
	}
}

/* ---- AVX2 + FMA ---------------------------------------------------------- */

#if HAVE_X86
#define AVX2 __attribute__((target("avx2,fma")))

AVX2 static inline float hsum256(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
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
	float s = hsum256(_mm256_add_ps(s0, s1));
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

/* 4 rows x 3 tokens; cols % 8 == 0. */
AVX2 static void mk_4x3(float *y, int ldy, const float *x, const float *w, int cols, int r,
			const float *bias)
{
	const float *w0 = w + (size_t)r * (size_t)cols, *w1 = w0 + cols, *w2 = w1 + cols,
		    *w3 = w2 + cols;
	const float *x0 = x, *x1 = x + cols, *x2 = x1 + cols;
	__m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00,
	       a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;

	for (int i = 0; i < cols; i += 8) {
		__m256 v0 = _mm256_loadu_ps(x0 + i), v1 = _mm256_loadu_ps(x1 + i),
		       v2 = _mm256_loadu_ps(x2 + i), wv;
		wv = _mm256_loadu_ps(w0 + i);
		a00 = _mm256_fmadd_ps(wv, v0, a00);
		a01 = _mm256_fmadd_ps(wv, v1, a01);
		a02 = _mm256_fmadd_ps(wv, v2, a02);
		wv = _mm256_loadu_ps(w1 + i);
		a10 = _mm256_fmadd_ps(wv, v0, a10);
		a11 = _mm256_fmadd_ps(wv, v1, a11);
		a12 = _mm256_fmadd_ps(wv, v2, a12);
		wv = _mm256_loadu_ps(w2 + i);
		a20 = _mm256_fmadd_ps(wv, v0, a20);
		a21 = _mm256_fmadd_ps(wv, v1, a21);
		a22 = _mm256_fmadd_ps(wv, v2, a22);
		wv = _mm256_loadu_ps(w3 + i);
		a30 = _mm256_fmadd_ps(wv, v0, a30);
		a31 = _mm256_fmadd_ps(wv, v1, a31);
		a32 = _mm256_fmadd_ps(wv, v2, a32);
	}
	float b0 = bias ? bias[r] : 0, b1 = bias ? bias[r + 1] : 0, b2 = bias ? bias[r + 2] : 0,
	      b3 = bias ? bias[r + 3] : 0;
	float *y0 = y + r, *y1 = y0 + ldy, *y2 = y1 + ldy;
	y0[0] = hsum256(a00) + b0, y0[1] = hsum256(a10) + b1, y0[2] = hsum256(a20) + b2,
	y0[3] = hsum256(a30) + b3;
	y1[0] = hsum256(a01) + b0, y1[1] = hsum256(a11) + b1, y1[2] = hsum256(a21) + b2,
	y1[3] = hsum256(a31) + b3;
	y2[0] = hsum256(a02) + b0, y2[1] = hsum256(a12) + b1, y2[2] = hsum256(a22) + b2,
	y2[3] = hsum256(a32) + b3;
}

/* 4 rows x 1 token; cols % 8 == 0 (the decode GEMV). */
AVX2 static void mk_4x1(float *y, const float *x, const float *w, int cols, int r,
			const float *bias)
{
	const float *w0 = w + (size_t)r * (size_t)cols, *w1 = w0 + cols, *w2 = w1 + cols,
		    *w3 = w2 + cols;
	__m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
	const char *next = (const char *)(w3 + cols);	/* the next 4 rows */
	int i = 0;

	/* Two 64-byte lines of each row per iteration; the next group of rows
	 * (contiguous after these) is prefetched at the same pace, so the
	 * memory system streams ahead of the short row-by-row accesses. */
	for (; i + 16 <= cols; i += 16) {
		__m256 v = _mm256_loadu_ps(x + i), u = _mm256_loadu_ps(x + i + 8);
		_mm_prefetch(next + (size_t)i * 16, _MM_HINT_T0);
		_mm_prefetch(next + (size_t)i * 16 + 64, _MM_HINT_T0);
		_mm_prefetch(next + (size_t)i * 16 + 128, _MM_HINT_T0);
		_mm_prefetch(next + (size_t)i * 16 + 192, _MM_HINT_T0);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), v, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), v, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), v, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), v, a3);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i + 8), u, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i + 8), u, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i + 8), u, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i + 8), u, a3);
	}
	for (; i < cols; i += 8) {
		__m256 v = _mm256_loadu_ps(x + i);
		a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + i), v, a0);
		a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + i), v, a1);
		a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + i), v, a2);
		a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + i), v, a3);
	}
	y[r] = hsum256(a0) + (bias ? bias[r] : 0);
	y[r + 1] = hsum256(a1) + (bias ? bias[r + 1] : 0);
	y[r + 2] = hsum256(a2) + (bias ? bias[r + 2] : 0);
	y[r + 3] = hsum256(a3) + (bias ? bias[r + 3] : 0);
}

/*
 * Prefill GEMM for 16 rows at a time, outer-product form: the 16 rows x KC
 * columns of W are packed k-major into a 16 KB panel that stays in L1, and
 * each step multiplies two panel vectors (16 rows) by one broadcast
 * activation of 6 tokens (12 accumulators, results stored as whole vectors,
 * no horizontal sums).  The dot-product kernels above keep re-reading W and
 * the token tile from L2 for every 4 x 3 tile, and were L2-bound.
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
AVX2 static void gemm_packed(float *y, int ldy, const float *x, int n, const float *w, int cols,
			     int r0, int r1, const float *bias)
{
	_Alignas(32) float panel[PACK_KC * PACK_ROWS];
	int nb = (cols + PACK_KC - 1) / PACK_KC, step = ((cols + nb - 1) / nb + 7) / 8 * 8;

	for (int k0 = 0; k0 < cols; k0 += step) {	/* nb even blocks of <= PACK_KC */
		int kc = cols - k0 < step ? cols - k0 : step;
		for (int r = r0; r < r1; r += PACK_ROWS) {
			const float *b = bias ? bias + r : NULL;
			for (int i = 0; i < PACK_ROWS; i++) {
				const float *wr = w + (size_t)(r + i) * (size_t)cols + k0;
				for (int k = 0; k < kc; k++)
					panel[k * PACK_ROWS + i] = wr[k];
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

AVX2 static void gemm_avx2(float *y, int ldy, const float *x, int n, const float *w, int cols,
			   int r0, int r1, const float *bias)
{
	if (n >= 12) {	/* prefill: packed panels of 16 rows, the rest below */
		int r16 = r0 + (r1 - r0) / PACK_ROWS * PACK_ROWS;
		gemm_packed(y, ldy, x, n, w, cols, r0, r16, bias);
		if (r16 == r1)
			return;
		r0 = r16;
	}
	if (cols % 8) {
		gemm_c(y, ldy, x, n, w, cols, r0, r1, bias);
		return;
	}
	for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
		int t1 = t0 + TOKEN_TILE < n ? t0 + TOKEN_TILE : n;
		int r = r0;
		for (; r + 4 <= r1; r += 4) {
			int t = t0;
			for (; t + 3 <= t1; t += 3)
				mk_4x3(y + (size_t)t * (size_t)ldy, ldy, x + (size_t)t * (size_t)cols,
				       w, cols, r, bias);
			for (; t < t1; t++)
				mk_4x1(y + (size_t)t * (size_t)ldy, x + (size_t)t * (size_t)cols, w,
				       cols, r, bias);
		}
		for (; r < r1; r++) {
			const float *wr = w + (size_t)r * (size_t)cols;
			for (int t = t0; t < t1; t++)
				y[(size_t)t * (size_t)ldy + (size_t)r] =
					dot_avx2(x + (size_t)t * (size_t)cols, wr, cols) +
					(bias ? bias[r] : 0);
		}
	}
}
#endif

/* ---- dispatch ----------------------------------------------------------- */

static float (*dot_impl)(const float *, const float *, int) = dot_c;
static void (*axpy_impl)(float *, float, const float *, int) = axpy_c;
static void (*gemm_impl)(float *, int, const float *, int, const float *, int, int, int,
			 const float *) = gemm_c;
static const char *impl_name = "scalar";

const char *kernels_init(void)
{
#if HAVE_X86
	static int done;
	if (!done) {
		__builtin_cpu_init();
		if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
			dot_impl = dot_avx2;
			axpy_impl = axpy_avx2;
			gemm_impl = gemm_avx2;
			impl_name = "avx2+fma";
		}
		done = 1;
	}
#endif
	return impl_name;
}

float kern_dot(const float *a, const float *b, int n)
{
	return dot_impl(a, b, n);
}

void kern_axpy(float *y, float s, const float *x, int n)
{
	axpy_impl(y, s, x, n);
}

void kern_gemm(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
	       int r1, const float *bias)
{
	gemm_impl(y, ldy, x, n, w, cols, r0, r1, bias);
}
