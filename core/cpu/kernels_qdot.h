/*
 * kernels_qdot.h - the block types' GEMM (Q8_0, Q4_0 weights; int8
 * activations from kern_act_quant), written once for the SIMD tables:
 * included by kernels_avx2.c and kernels_avx512.c, which differ only in
 * how one weight block meets one activation block.  The includer defines
 *   QD_TARGET      the function attribute of its instruction set;
 *   struct qd_w    a weight block made ready (qd_w_load(block, wt));
 *   struct qd_x    an activation block made ready (qd_x_load(q, wt));
 *   qd_dot(w, x, wt)  their 32 products as eight int32 partial sums;
 *   QD_ROWS        the rows of a tile (tokens: QD_TOKENS, 4);
 * all __m256i-wide, so the same loop serves both.  What this defines:
 * static qd_gemm_q8_0 and qd_gemm_q4_0 (kern_gemm_fn).
 *
 * A tile is R weight rows x N tokens, whole rows: per block, each row's
 * block is loaded and made ready once for the N tokens and each token's
 * once for the R rows (so a batch reads each weight from memory once),
 * and each (row, token) adds float(dot) * (dw * dx) to its F32 vector.
 * Rows of a range go QD_ROWS at a time (then single rows), tokens in
 * chunks of QD_CHUNK (their activations stay in L2 while the range's
 * rows sweep them) and QD_TOKENS at a time.  A line of each row is
 * prefetched QD_AHEAD bytes ahead as it is read, for the decode GEMV's
 * streams.
 */
#ifndef QD_TARGET
#error "define QD_TARGET and the block dot product before including kernels_qdot.h"
#endif

#define QD_TOKENS 4
#define QD_CHUNK 64
#define QD_AHEAD 512

QD_TARGET static inline float qd_hsum(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

/* The F16 scale a Q8_0 / Q4_0 block starts with, broadcast. */
QD_TARGET static inline __m256 qd_scale(const unsigned char *b)
{
	uint16_t d;
	memcpy(&d, b, 2);
	return _mm256_set1_ps(_cvtsh_ss(d));
}

/* R rows from r x N tokens (R, N, wt constants where inlined). */
static inline __attribute__((always_inline)) QD_TARGET void
qd_tile(float *y, int ldy, const char *xq, const void *w, int cols, int r, const float *bias,
	int R, int N, enum dtype wt)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols), bb = kern_weight_bytes(wt, 32);
	size_t xrow = kern_act_row_bytes(cols);
	const unsigned char *wr[QD_ROWS];
	__m256 acc[QD_ROWS][QD_TOKENS];

#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
		wr[i] = (const unsigned char *)w + (size_t)(r + i) * row_bytes;
#pragma GCC unroll 4
	for (int i = 0; i < R; i++)
#pragma GCC unroll 4
		for (int t = 0; t < N; t++)
			acc[i][t] = _mm256_setzero_ps();
	for (int b = 0; b < cols / 32; b++) {
		struct qd_w wv[QD_ROWS];
		__m256 dw[QD_ROWS];
#pragma GCC unroll 4
		for (int i = 0; i < R; i++) {
			const unsigned char *blk = wr[i] + (size_t)b * bb;
			_mm_prefetch((const char *)blk + QD_AHEAD, _MM_HINT_T0);
			wv[i] = qd_w_load(blk, wt);
			dw[i] = qd_scale(blk);
		}
#pragma GCC unroll 4
		for (int t = 0; t < N; t++) {
			const char *xr = xq + (size_t)t * xrow;
			struct qd_x xv = qd_x_load((const int8_t *)xr + 32 * b, wt);
			__m256 dx = _mm256_broadcast_ss((const float *)(xr + cols) + b);
#pragma GCC unroll 4
			for (int i = 0; i < R; i++)
				acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qd_dot(wv[i], xv, wt)),
							    _mm256_mul_ps(dw[i], dx), acc[i][t]);
		}
	}
#pragma GCC unroll 4
	for (int i = 0; i < R; i++) {
		float bi = bias ? bias[r + i] : 0.0f;
#pragma GCC unroll 4
		for (int t = 0; t < N; t++)
			y[(size_t)t * (size_t)ldy + (size_t)(r + i)] = qd_hsum(acc[i][t]) + bi;
	}
}

typedef void (*qd_tile_fn)(float *y, int ldy, const char *xq, const void *w, int cols, int r,
			   const float *bias);

/* Tiles of QD_ROWS rows and of one row, for 1..QD_TOKENS tokens. */
#define QD_TILE(R, N, sfx, wt)                                                              \
	QD_TARGET static void qd_tile_##sfx##_##R##x##N(float *y, int ldy, const char *xq,   \
							const void *w, int cols, int r,      \
							const float *bias)                   \
	{                                                                                   \
		qd_tile(y, ldy, xq, w, cols, r, bias, R, N, wt);                            \
	}
#define QD_TILES(sfx, wt)                                                                   \
	QD_TILE(QD_ROWS, 1, sfx, wt) QD_TILE(QD_ROWS, 2, sfx, wt)                           \
	QD_TILE(QD_ROWS, 3, sfx, wt) QD_TILE(QD_ROWS, 4, sfx, wt)                           \
	QD_TILE(1, 1, sfx, wt) QD_TILE(1, 2, sfx, wt) QD_TILE(1, 3, sfx, wt)                \
	QD_TILE(1, 4, sfx, wt)                                                              \
	static const qd_tile_fn qd_wide_##sfx[QD_TOKENS + 1] = {                            \
		0, qd_tile_##sfx##_##QD_ROWS##x1, qd_tile_##sfx##_##QD_ROWS##x2,            \
		qd_tile_##sfx##_##QD_ROWS##x3, qd_tile_##sfx##_##QD_ROWS##x4                \
	};                                                                                  \
	static const qd_tile_fn qd_narrow_##sfx[QD_TOKENS + 1] = {                          \
		0, qd_tile_##sfx##_1x1, qd_tile_##sfx##_1x2, qd_tile_##sfx##_1x3,           \
		qd_tile_##sfx##_1x4                                                         \
	};

static inline __attribute__((always_inline)) void
qd_gemm(float *y, int ldy, const void *xq, int n, const void *w, int cols, int r0, int r1,
	const float *bias, const qd_tile_fn *wide, const qd_tile_fn *narrow)
{
	size_t xrow = kern_act_row_bytes(cols);

	for (int c0 = 0; c0 < n; c0 += QD_CHUNK) {
		int c1 = c0 + QD_CHUNK < n ? c0 + QD_CHUNK : n;
		for (int r = r0; r < r1;) {
			int R = r1 - r >= QD_ROWS ? QD_ROWS : 1;
			for (int t = c0; t < c1; t += QD_TOKENS) {
				int N = c1 - t < QD_TOKENS ? c1 - t : QD_TOKENS;
				(R > 1 ? wide : narrow)[N](y + (size_t)t * (size_t)ldy, ldy,
							   (const char *)xq + (size_t)t * xrow, w,
							   cols, r, bias);
			}
			r += R;
		}
	}
}

QD_TILES(q8_0, DTYPE_Q8_0)
QD_TILES(q4_0, DTYPE_Q4_0)

QD_TARGET static void qd_gemm_q8_0(float *y, int ldy, const void *xq, int n, const void *w,
				   int cols, int r0, int r1, const float *bias)
{
	qd_gemm(y, ldy, xq, n, w, cols, r0, r1, bias, qd_wide_q8_0, qd_narrow_q8_0);
}

QD_TARGET static void qd_gemm_q4_0(float *y, int ldy, const void *xq, int n, const void *w,
				   int cols, int r0, int r1, const float *bias)
{
	qd_gemm(y, ldy, xq, n, w, cols, r0, r1, bias, qd_wide_q4_0, qd_narrow_q4_0);
}

#undef QD_TILES
#undef QD_TILE
