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
 *
 * Weights F32, BF16, F16: the tiles are written once with the dtype a
 * constant (load_w16 widens 16 weights as it loads them) and instantiated
 * per dtype, as in kernels_avx2.c (whose F16C kernels this table uses).
 * Q8_0 and Q4_0, where the CPU has AVX-512 VNNI (and VL): kernels_qdot.h's
 * kernels with vpdpbusd on 256-bit vectors (512-bit ones are split in two
 * on Zen 4), unsigned x signed bytes summed four at a time into int32
 * (see qd_step below).  Without VNNI, the AVX2 table's.
 */
#include "core/cpu/kernels_impl.h"

#if KERN_X86
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

static int avx512_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
	       __builtin_cpu_supports("fma") && kern_cpu_has_f16c();
}

/* Lanes [0, n) of 16 set (n in 1..16). */
AVX512 static inline __mmask16 tail_mask(int n)
{
	return (__mmask16)((1u << n) - 1u);
}

/* 16 weights of dtype wt (F32, BF16, F16; a constant where inlined) from
 * element i, as F32. */
INLINE AVX512 __m512 load_w16(const void *w, size_t i, enum dtype wt)
{
	const __m256i *h = (const __m256i *)((const uint16_t *)w + i);

	if (wt == DTYPE_BF16)	/* a BF16 is the high half of an F32 */
		return _mm512_castsi512_ps(
			_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(h)), 16));
	if (wt == DTYPE_F16)
		return _mm512_cvtph_ps(_mm256_loadu_si256(h));
	return _mm512_loadu_ps((const float *)w + i);
}

/* A row's tail: n (1..15) weights, zeros after. */
INLINE AVX512 __m512 load_w16_tail(const void *w, size_t i, int n, enum dtype wt)
{
	uint16_t h[16] = { 0 };

	if (wt == DTYPE_F32)
		return _mm512_maskz_loadu_ps(tail_mask(n), (const float *)w + i);
	/* 16-bit masked loads need AVX-512BW, which this table does not ask for */
	memcpy(h, (const uint16_t *)w + i, sizeof(uint16_t) * (size_t)n);
	return load_w16(h, 0, wt);
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

/* 16 K/V elements of dtype kt from element c of a row of hd (a masked
 * tail past its end). */
INLINE AVX512 __m512 load_kv16(const void *r, int c, int hd, enum dtype kt)
{
	return hd - c >= 16 ? load_w16(r, (size_t)c, kt)
			    : load_w16_tail(r, (size_t)c, hd - c, kt);
}

/* Attention halves (kernels_impl.h): inline dots and axpys over each key
 * and value row, read (and widened) once for all heads of the group; kt is
 * a constant where these are inlined. */
INLINE AVX512 void qk_any(float *s, int lds, const float *q, int group, int hd,
			  const void *const *k, int n, float scale, enum dtype kt)
{
	for (int i = 0; i < n; i++) {
		const void *kr = k[i];
		for (int g = 0; g < group; g++) {
			const float *qg = q + (size_t)g * (size_t)hd;
			__m512 acc = _mm512_setzero_ps();
			for (int c = 0; c < hd; c += 16) {
				__mmask16 m = tail_mask(hd - c < 16 ? hd - c : 16);
				acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, qg + c),
						      load_kv16(kr, c, hd, kt), acc);
			}
			s[(size_t)g * (size_t)lds + (size_t)i] = _mm512_reduce_add_ps(acc) * scale;
		}
	}
}

INLINE AVX512 void pv_any(float *o, const float *p, int ldp, int group, int hd,
			  const void *const *v, int n, enum dtype vt)
{
	for (int g = 0; g < group; g++)
		for (int c = 0; c < hd; c += 16)
			_mm512_mask_storeu_ps(o + (size_t)g * (size_t)hd + c,
					      tail_mask(hd - c < 16 ? hd - c : 16),
					      _mm512_setzero_ps());
	for (int i = 0; i < n; i++) {
		const void *vr = v[i];
		for (int c = 0; c < hd; c += 16) {
			__mmask16 m = tail_mask(hd - c < 16 ? hd - c : 16);
			__m512 vv = load_kv16(vr, c, hd, vt);
			for (int g = 0; g < group; g++) {
				float *og = o + (size_t)g * (size_t)hd + c;
				__m512 pg = _mm512_set1_ps(p[(size_t)g * (size_t)ldp + (size_t)i]);
				_mm512_mask_storeu_ps(og, m, _mm512_fmadd_ps(pg, vv,
							_mm512_maskz_loadu_ps(m, og)));
			}
		}
	}
}

AVX512 static void qk_avx512(float *s, int lds, const float *q, int group, int hd,
			     const void *const *k, enum dtype kt, int n, float scale)
{
	if (kt == DTYPE_BF16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_BF16);
	else if (kt == DTYPE_F16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F16);
	else
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F32);
}

AVX512 static void pv_avx512(float *o, const float *p, int ldp, int group, int hd,
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
 * R rows (from r) x N tokens, any cols; R, N and the weights' dtype wt
 * constant at each call site (R * N <= 24 accumulators).  The x loads are
 * pinned to registers (the empty asm): folded into the FMAs they would be
 * loaded R times.
 */
INLINE AVX512 void tile_avx512(float *y, int ldy, const float *x, const void *w, int cols,
			       int r, const float *bias, int R, int N, int prefetch, enum dtype wt)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols);
	const char *wr[4], *next = (const char *)w + (size_t)(r + R) * row_bytes;
	const float *xt[8];
	__m512 acc[4][8];
	int k = 0;

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		wr[i] = (const char *)w + (size_t)(r + i) * row_bytes;
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
			wv[i] = load_w16(wr[i], (size_t)k, wt);
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
			wv[i] = load_w16_tail(wr[i], (size_t)k, cols - k, wt);
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

/* Tiles for each weight dtype: tile_<dtype>_<R>x<N>. */
#define TILE(R, N, sfx, wt)                                                                 \
	AVX512 static void tile_##sfx##_##R##x##N(float *y, int ldy, const float *x,         \
						  const void *w, int cols, int r,            \
						  const float *bias, int prefetch)           \
	{                                                                                   \
		tile_avx512(y, ldy, x, w, cols, r, bias, R, N, prefetch, wt);               \
	}
#define TILES(sfx, wt)                                                                      \
	TILE(4, 1, sfx, wt) TILE(4, 2, sfx, wt) TILE(4, 3, sfx, wt) TILE(4, 4, sfx, wt)     \
	TILE(3, 5, sfx, wt) TILE(3, 6, sfx, wt) TILE(3, 7, sfx, wt) TILE(3, 8, sfx, wt)     \
	TILE(1, 1, sfx, wt) TILE(1, 2, sfx, wt) TILE(1, 3, sfx, wt) TILE(1, 4, sfx, wt)     \
	TILE(1, 5, sfx, wt) TILE(1, 6, sfx, wt) TILE(1, 7, sfx, wt) TILE(1, 8, sfx, wt)     \
	static const kern_tile_fn wide_##sfx[MAX_N + 1] = {                                 \
		0, tile_##sfx##_4x1, tile_##sfx##_4x2, tile_##sfx##_4x3, tile_##sfx##_4x4,  \
		tile_##sfx##_3x5, tile_##sfx##_3x6, tile_##sfx##_3x7, tile_##sfx##_3x8      \
	};                                                                                  \
	static const kern_tile_fn narrow_##sfx[MAX_N + 1] = {                               \
		0, tile_##sfx##_1x1, tile_##sfx##_1x2, tile_##sfx##_1x3, tile_##sfx##_1x4,  \
		tile_##sfx##_1x5, tile_##sfx##_1x6, tile_##sfx##_1x7, tile_##sfx##_1x8      \
	};                                                                                  \
	static const struct kern_tiles tiles_##sfx = { MAX_N, wide_##sfx, narrow_##sfx,     \
						       wide_rows };

#define MAX_N 8
static const int wide_rows[MAX_N + 1] = { 0, 4, 4, 4, 4, 3, 3, 3, 3 };
TILES(f32, DTYPE_F32)
TILES(bf16, DTYPE_BF16)
TILES(f16, DTYPE_F16)
#undef TILES
#undef TILE

INLINE AVX512 void gemm_avx512(float *y, int ldy, const float *x, int n, const void *w,
			       enum dtype wt, const struct kern_tiles *tiles, int cols, int r0,
			       int r1, const float *bias)
{
	if (n == 1) {	/* the GEMV: see the top of this file */
		kern_avx2.gemm[wt](y, ldy, x, n, w, cols, r0, r1, bias);
		return;
	}
	if (n >= KERN_PACKED_MIN_TOKENS) {	/* prefill: packed 16-row panels */
		int r16 = r0 + (r1 - r0) / 16 * 16;
		kern_avx2_gemm_packed(y, ldy, x, n, w, wt, cols, r0, r16, bias);
		r0 = r16;
	}
	for (int t0 = 0; t0 < n && r0 < r1; t0 += KERN_PACKED_MIN_TOKENS - 1) {
		int nt = n - t0 < KERN_PACKED_MIN_TOKENS - 1 ? n - t0 : KERN_PACKED_MIN_TOKENS - 1;
		kern_gemm_few(tiles, y + (size_t)t0 * (size_t)ldy, ldy,
			      x + (size_t)t0 * (size_t)cols, nt, w, cols, r0, r1, bias);
	}
}

#define GEMM_OF(sfx, wt)                                                                    \
	AVX512 static void gemm_avx512_##sfx(float *y, int ldy, const void *x, int n,        \
					     const void *w, int cols, int r0, int r1,        \
					     const float *bias)                              \
	{                                                                                   \
		gemm_avx512(y, ldy, x, n, w, wt, &tiles_##sfx, cols, r0, r1, bias);         \
	}
GEMM_OF(f32, DTYPE_F32)
GEMM_OF(bf16, DTYPE_BF16)
GEMM_OF(f16, DTYPE_F16)
#undef GEMM_OF

/* kernels_qdot.h's dot products with VNNI's vpdpbusd (unsigned x signed
 * bytes, four a lane into int32, no saturation).  Panels: Q8_0's weights
 * as w + 128 (w ^ 0x80) times x, less 128 * sum(x); Q4_0's nibbles times
 * x, less 8 * sum(x), the sums from kern_act_quant.  Single rows: Q8_0 as
 * (x + 128) . w less 128 * sum(w), Q4_0 as nibbles . x less 8 * sum(x),
 * each correction made once per block for the tokens or rows. */
#define VNNI __attribute__((target("avx512f,avx512vl,avx512vnni,avx2,fma,f16c")))

static int vnni_supported(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vl");
}

struct qd_w {
	__m256i q, c;	/* c: Q8_0's -128 * sum(w) per four bytes */
};
struct qd_x {
	__m256i q, c;	/* c: Q4_0's -8 * sum(x) per four bytes */
};

#define QD_TARGET VNNI
#define QD_SIGNS 0
/* qd_dotk's offset: Q8_0: w + 128 (w ^ 0x80) times x (K 128); Q4_0: nibbles times x (K 8). */
#define QD_K(wt) ((wt) == DTYPE_Q4_0 ? 8 : 128)
/* all 8: AVX-512VL has 32 registers */
#define QD_GROUP 8
#include "core/cpu/kernels_qdot.h"

INLINE VNNI struct qd_w qd_w_load(const unsigned char *b, enum dtype wt)
{
	struct qd_w r;

	r.q = qd_block_bytes(b, wt);
	r.c = wt == DTYPE_Q4_0 ? r.q
			       : _mm256_sub_epi32(_mm256_setzero_si256(),
						  _mm256_dpbusd_epi32(_mm256_setzero_si256(),
								      _mm256_set1_epi8((char)0x80),
								      r.q));
	return r;
}

INLINE VNNI struct qd_x qd_x_load(const int8_t *q, enum dtype wt)
{
	struct qd_x r;

	r.q = _mm256_loadu_si256((const __m256i *)q);
	if (wt == DTYPE_Q4_0)
		r.c = _mm256_sub_epi32(_mm256_setzero_si256(),
				       _mm256_dpbusd_epi32(_mm256_setzero_si256(),
							   _mm256_set1_epi8(8), r.q));
	else
		r.q = r.c = _mm256_xor_si256(r.q, _mm256_set1_epi8((char)0x80));
	return r;
}

INLINE VNNI __m256i qd_dot(struct qd_w w, struct qd_x x, enum dtype wt)
{
	return wt == DTYPE_Q4_0 ? _mm256_dpbusd_epi32(x.c, w.q, x.q)
				: _mm256_dpbusd_epi32(w.c, x.q, w.q);
}

INLINE VNNI void qd_panel_put(struct qd_pblk *p, const __m256i t[8], enum dtype wt)
{
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)
		p->q[j] = wt == DTYPE_Q4_0 ? t[j]
					   : _mm256_xor_si256(t[j], _mm256_set1_epi8((char)0x80));
}

/* The correction starts the sum: Q8_0 -128 * sum(x), Q4_0 -8 * sum(x). */
INLINE VNNI __m256i qd_acc0(int32_t sum, enum dtype wt)
{
	return _mm256_set1_epi32((wt == DTYPE_Q4_0 ? -8 : -128) * sum);
}

INLINE VNNI __m256i qd_step(__m256i acc, const struct qd_pblk *p, int j, __m256i xb,
			    enum dtype wt)
{
	(void)wt;
	return _mm256_dpbusd_epi32(acc, p->q[j], xb);
}

INLINE VNNI __m256i qd_acc_end(__m256i acc, int32_t sum, enum dtype wt)
{
	(void)sum;
	(void)wt;
	return acc;
}

/* Q8_0: w + 128 (w ^ 0x80) times x (K 128); Q4_0: nibbles times x (K 8). */
INLINE VNNI __m256i qd_dotk(const unsigned char *b, const int8_t *x, enum dtype wt)
{
	__m256i w = qd_block_bytes(b, wt);
	if (wt != DTYPE_Q4_0)
		w = _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80));
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), w,
				   _mm256_loadu_si256((const __m256i *)x));
}

QD_KERNELS(q8_0, DTYPE_Q8_0)
QD_KERNELS(q4_0, DTYPE_Q4_0)

#define QGEMM_OF(sfx, wt)                                                                   \
	AVX512 static void gemm_avx512_##sfx(float *y, int ldy, const void *x, int n,        \
					     const void *w, int cols, int r0, int r1,        \
					     const float *bias)                              \
	{                                                                                   \
		if (vnni_supported())                                                       \
			qd_gemm_##sfx(y, ldy, x, n, w, cols, r0, r1, bias);                 \
		else                                                                        \
			kern_avx2.gemm[wt](y, ldy, x, n, w, cols, r0, r1, bias);            \
	}
QGEMM_OF(q8_0, DTYPE_Q8_0)
QGEMM_OF(q4_0, DTYPE_Q4_0)
QGEMM_OF(p8_q8_0, DTYPE_Q8_0_P8)
QGEMM_OF(p8_q4_0, DTYPE_Q4_0_P8)
#undef QGEMM_OF

const struct kern_impl kern_avx512 = {
	.name = "avx512",
	.supported = avx512_supported,
	.dot = dot_avx512,
	.axpy = axpy_avx512,
	.gemm = { [DTYPE_F32] = gemm_avx512_f32, [DTYPE_BF16] = gemm_avx512_bf16,
		  [DTYPE_F16] = gemm_avx512_f16, [DTYPE_Q8_0] = gemm_avx512_q8_0,
		  [DTYPE_Q4_0] = gemm_avx512_q4_0, [DTYPE_Q8_0_P8] = gemm_avx512_p8_q8_0,
		  [DTYPE_Q4_0_P8] = gemm_avx512_p8_q4_0 },
	.act_quant = kern_avx2_act_quant,
	.qk = qk_avx512,
	.pv = pv_avx512,
};
#endif
