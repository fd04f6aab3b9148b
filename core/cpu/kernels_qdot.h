/*
 * kernels_qdot.h - the block types' GEMM (Q8_0, Q4_0 weights; int8
 * activations from kern_act_quant), written once for the SIMD tables:
 * included by kernels_avx2.c and kernels_avx512.c, which differ only in
 * how weights meet activations.  The includer defines
 *   QD_TARGET      the function attribute of its instruction set;
 *   QD_SIGNS       1 if its panels keep the weights' signs apart (AVX2);
 *   QD_GROUP       tokens whose sums the batched GEMM interleaves (as
 *                  many as its registers hold);
 *   qd_panel_put(p, t, wt)   fill a panel block from 8 rows' transposed
 *                  bytes (below);
 *   qd_acc0(sum, wt), qd_step(acc, p, j, xb, wt), qd_acc_end(acc, sum,
 *                  wt)   a panel block . 32 activations (sum: theirs) as
 *                  a sum started, 4 of them (xb: broadcast) at offset 4j
 *                  added, and finished: per 32-bit lane (row), the
 *                  block's dot product (qd_dot8 below);
 *   struct qd_w, qd_w_load(block, wt), struct qd_x, qd_x_load(q, wt),
 *   qd_dot(w, x, wt)   one row's block . one token's block as eight
 *                  int32 partial sums (the rows left over, below);
 *   qd_dotk(block, x, wt), QD_K(wt)   the same of (w + QD_K) . x, for
 *                  the GEMV to correct with the activations' sums;
 * all on 256-bit vectors, defined after this file (which declares them
 * and qd_block_bytes, for them to use).  QD_KERNELS(sfx, wt) then defines
 * static qd_gemm_<sfx> (kern_gemm_fn) for Q8_0 or Q4_0, and
 * qd_gemm_p8_<sfx> for its panel type (Q8_0_P8, Q4_0_P8: repacked at
 * load, dtype.h).
 *
 * Rows go 8 at a time through panels: a run of QD_KC blocks of the 8
 * rows transposed so that 32-bit lane r of a vector holds row r's 4
 * weights (bytes) at one offset, then for each token every 4 activations
 * broadcast meet all 8 rows in one instruction, each lane summing its
 * row's products; so a block's scales are applied once per 8 rows (a
 * vector of the 8 rows' scales times the token's), the results are 8
 * rows of y without horizontal sums, and each weight, read from memory
 * once into the panel, serves every token.  Tokens go QD_N at a time
 * (their F32 sums in registers across the run; runs after the first add
 * to what y holds).  Rows left over (fewer than 8) go one at a time: per
 * block, qd_dot's partial sums times dw * dx, summed horizontally at the
 * end.  A panel prefetches the next 8 rows' blocks as it reads its own,
 * the GEMV its row QD_AHEAD bytes ahead.
 *
 * The panel types hold the panels' bytes already transposed, in the
 * order they are read (each block's scales, then its quants: one
 * stream): filling a panel is a sequential copy (with the table's own
 * transform: AVX2's magnitudes, AVX-512's offset), the products prefetch
 * the runs ahead a block at a time, and one token (the GEMV) takes each
 * block of 8 rows to registers, 8 rows of y at a time.  The tokens' dot products
 * of a block run QD_GROUP at a time interleaved: one token's 8 steps
 * depend on each other, and in a row they kept the batched GEMM waiting
 * on the multiply-adds' latency (measured about 2x slower on Zen 4).
 */
#ifndef QD_TARGET
#error "define QD_TARGET and the block dot products before including kernels_qdot.h"
#endif

#define QD_N 8
#define QD_KC 16
#define QD_TOKENS 4
#define QD_AHEAD 512

/* One block of a panel: q[j] (and s[j]) lane r: row r's bytes 4j..4j+3
 * as qd_panel_put makes them; d: the 8 rows' scales. */
struct qd_pblk {
	__m256i q[8];
#if QD_SIGNS
	__m256i s[8];
#endif
	__m256 d;
};

#define QD_INLINE static inline __attribute__((always_inline)) QD_TARGET

QD_INLINE void qd_panel_put(struct qd_pblk *p, const __m256i t[8], enum dtype wt);
QD_INLINE __m256i qd_acc0(int32_t sum, enum dtype wt);
QD_INLINE __m256i qd_step(__m256i acc, const struct qd_pblk *p, int j, __m256i xb, enum dtype wt);
QD_INLINE __m256i qd_acc_end(__m256i acc, int32_t sum, enum dtype wt);
QD_INLINE struct qd_w qd_w_load(const unsigned char *b, enum dtype wt);
QD_INLINE struct qd_x qd_x_load(const int8_t *q, enum dtype wt);
QD_INLINE __m256i qd_dot(struct qd_w w, struct qd_x x, enum dtype wt);
QD_INLINE __m256i qd_dotk(const unsigned char *b, const int8_t *x, enum dtype wt);

/* Activations x[4j..4j+3] broadcast to every 32-bit lane. */
QD_INLINE __m256i qd_x4(const int8_t *x, int j)
{
	int32_t x4;
	memcpy(&x4, x + 4 * j, 4);
	return _mm256_set1_epi32(x4);
}

/* A panel block . 32 activations x (sum: theirs), lane r row r's. */
QD_INLINE __m256i qd_dot8(const struct qd_pblk *p, const int8_t *x, int32_t sum, enum dtype wt)
{
	__m256i acc = qd_acc0(sum, wt);
#pragma GCC unroll 8
	for (int j = 0; j < 8; j++)
		acc = qd_step(acc, p, j, qd_x4(x, j), wt);
	return qd_acc_end(acc, sum, wt);
}

/* The F16 scale a Q8_0 / Q4_0 block starts with, broadcast. */
QD_TARGET static inline __m256 qd_scale(const unsigned char *b)
{
	uint16_t d;
	memcpy(&d, b, 2);
	return _mm256_set1_ps(_cvtsh_ss(d));
}

/* The F16 scales of 8 blocks at p, p + stride, ... as F32, built in a
 * register (16-bit stores then a vector load stall the GEMV, measured). */
QD_INLINE __m256 qd_scales8(const unsigned char *p, size_t stride)
{
#define QD_H(i) (short)(p[(i) * stride] | p[(i) * stride + 1] << 8)
	return _mm256_cvtph_ps(_mm_setr_epi16(QD_H(0), QD_H(1), QD_H(2), QD_H(3), QD_H(4), QD_H(5),
					      QD_H(6), QD_H(7)));
#undef QD_H
}

/* A block's 32 weights as bytes in order: Q8_0's int8; Q4_0's nibbles
 * (0..15: the low ones are weights 0..15, the high ones 16..31). */
QD_INLINE __m256i
qd_block_bytes(const unsigned char *b, enum dtype wt)
{
	if (wt == DTYPE_Q4_0) {
		__m128i v = _mm_loadu_si128((const __m128i *)(b + 2));
		return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v),
					_mm256_set1_epi8(0xf));
	}
	return _mm256_loadu_si256((const __m256i *)(b + 2));
}

/* Blocks [b0, b0 + kb) of rows r..r+7 into panel p (NULL: nothing for
 * qd_micro to prefetch, this prefetches its own). */
QD_INLINE const char *
qd_pack(struct qd_pblk *p, const void *w, int cols, int r, int b0, int kb, enum dtype wt)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols), bb = kern_weight_bytes(wt, 32);
	const unsigned char *wr = (const unsigned char *)w + (size_t)r * row_bytes +
				  (size_t)b0 * bb;

	for (int b = 0; b < kb; b++, wr += bb) {
		__m256i v[8], t[8], u[8];
		uint16_t d[8];	/* (measured faster here than qd_scales8) */
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++) {
			const unsigned char *blk = wr + (size_t)i * row_bytes;
			/* the same block of the next 8 rows: read after this
			 * panel's tokens, so in cache by then */
			_mm_prefetch((const char *)blk + 8 * row_bytes, _MM_HINT_T0);
			v[i] = qd_block_bytes(blk, wt);
			memcpy(&d[i], blk, 2);
		}
		/* transpose 8 x 8 32-bit elements: v[i] lane j -> t[j] lane i */
#pragma GCC unroll 4
		for (int i = 0; i < 8; i += 2) {
			u[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
			u[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
		}
#pragma GCC unroll 2
		for (int i = 0; i < 8; i += 4) {
			v[i] = _mm256_unpacklo_epi64(u[i], u[i + 2]);
			v[i + 1] = _mm256_unpackhi_epi64(u[i], u[i + 2]);
			v[i + 2] = _mm256_unpacklo_epi64(u[i + 1], u[i + 3]);
			v[i + 3] = _mm256_unpackhi_epi64(u[i + 1], u[i + 3]);
		}
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			t[j] = _mm256_permute2x128_si256(v[j], v[j + 4], 0x20);
			t[j + 4] = _mm256_permute2x128_si256(v[j], v[j + 4], 0x31);
		}
		qd_panel_put(p + b, t, wt);
		p[b].d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
	}
	return NULL;
}

/* An 8-row block of a Q8_0_P8 / Q4_0_P8 panel (dtype.h: quants at q,
 * scales at d) into p, as qd_pack makes it. */
QD_INLINE void qd_panel_load(struct qd_pblk *p, const unsigned char *q, const unsigned char *d,
			     enum dtype wt)
{
	__m256i t[8];

	if (wt == DTYPE_Q4_0) {
#pragma GCC unroll 4
		for (int j = 0; j < 4; j++) {
			__m256i v = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
			t[j] = _mm256_and_si256(v, _mm256_set1_epi8(0xf));
			t[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0xf));
		}
	} else {
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
			t[j] = _mm256_loadu_si256((const __m256i *)(q + 32 * j));
	}
	qd_panel_put(p, t, wt);
	p->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)d));
}

/* Bytes of a panel block (dtype.h): 16 of scales, then the quants. */
#define QD_PB(wt) ((wt) == DTYPE_Q4_0 ? 144 : 272)

/* qd_pack's work for a repacked matrix: rows r..r+7 are a panel, its
 * blocks in order, so this is a sequential read with no transpose. */
QD_INLINE const char *
qd_pack_p8(struct qd_pblk *p, const void *w, int cols, int r, int b0, int kb, enum dtype wt)
{
	const unsigned char *blk = (const unsigned char *)w +
				   (size_t)r * kern_weight_bytes(wt, (size_t)cols) +
				   (size_t)b0 * QD_PB(wt);

	for (int b = 0; b < kb; b++, blk += QD_PB(wt))
		qd_panel_load(p + b, blk + 16, blk, wt);
	/* the bytes after (the next runs' blocks, or the next panel's),
	 * for qd_micro to prefetch while it multiplies */
	return (const char *)blk;
}

/* The GEMV (one token) on a repacked matrix, panel at row r: each block
 * meets the token's block in registers, lane i row r + i's dot product
 * (no horizontal sums). */
QD_INLINE void qd_gemv_p8(float *y, const char *xq, const void *w, int cols, int r,
			  const float *bias, enum dtype wt)
{
	int nb = cols / 32;
	const unsigned char *blk = (const unsigned char *)w +
				   (size_t)r * kern_weight_bytes(wt, (size_t)cols);
	const float *dx = (const float *)(xq + cols);
	const int32_t *sum = (const int32_t *)(dx + nb);
	__m256 acc = _mm256_setzero_ps();

	for (int b = 0; b < nb; b++, blk += QD_PB(wt)) {
		struct qd_pblk p;
		_mm_prefetch((const char *)blk + QD_AHEAD, _MM_HINT_T0);
		qd_panel_load(&p, blk + 16, blk, wt);
		__m256i i = qd_dot8(&p, (const int8_t *)xq + 32 * b, sum[b], wt);
		acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(i),
				      _mm256_mul_ps(p.d, _mm256_broadcast_ss(dx + b)), acc);
	}
	_mm256_storeu_ps(y + r, bias ? _mm256_add_ps(acc, _mm256_loadu_ps(bias + r)) : acc);
}

/* Block b's activation sum of row t of quantized activations xq. */
QD_INLINE int32_t qd_act_sum(const char *xq, int t, int cols, int b)
{
	return kern_act_row_at((void *)(uintptr_t)xq, t, cols).sum[b];
}

/* Rows r..r+7 (panel p: blocks [b0, b0 + kb)) x N tokens (a constant
 * where inlined); first: y starts at 0, else adds to y; bias (non-NULL
 * on the last run) added at the end. */
QD_INLINE void
qd_micro(float *y, int ldy, const char *xq, int cols, const struct qd_pblk *p, int b0, int kb,
	 int r, int first, const float *bias, const char *pf, int N, enum dtype wt)
{
	size_t xrow = kern_act_row_bytes(cols);
	__m256 acc[QD_N];

#pragma GCC unroll 8
	for (int t = 0; t < N; t++)
		acc[t] = first ? _mm256_setzero_ps()
			       : _mm256_loadu_ps(y + (size_t)t * (size_t)ldy + (size_t)r);
	for (int b = 0; b < kb; b++) {
		/* pf's bytes a run on, a block's worth per block: the reads
		 * spread over the products rather than in a burst (measured
		 * ~20% faster at 8 tokens than prefetching in the pack; two
		 * runs ahead better than one) */
		for (int l = 0; pf && l < QD_PB(wt); l += 64)
			_mm_prefetch(pf + (size_t)(b + QD_KC) * QD_PB(wt) + l, _MM_HINT_T0);
#pragma GCC unroll 8
		for (int t0 = 0; t0 < N; t0 += QD_GROUP) {
			/* QD_GROUP tokens' sums side by side, each step of one
			 * in the shadow of the others' (one token's steps in a
			 * row wait on each other) */
			int g = N - t0 < QD_GROUP ? N - t0 : QD_GROUP;
			__m256i i[QD_GROUP];
#pragma GCC unroll 8
			for (int t = 0; t < g; t++)
				i[t] = qd_acc0(qd_act_sum(xq, t0 + t, cols, b0 + b), wt);
#pragma GCC unroll 8
			for (int j = 0; j < 8; j++)
#pragma GCC unroll 8
				for (int t = 0; t < g; t++)
					i[t] = qd_step(i[t], p + b, j,
						       qd_x4((const int8_t *)xq + (size_t)(t0 + t) * xrow +
								     32 * (b0 + b), j),
						       wt);
#pragma GCC unroll 8
			for (int t = 0; t < g; t++) {
				const float *d = (const float *)(xq + (size_t)(t0 + t) * xrow + cols);
				__m256i sum = qd_acc_end(i[t], qd_act_sum(xq, t0 + t, cols, b0 + b), wt);
				acc[t0 + t] = _mm256_fmadd_ps(
					_mm256_cvtepi32_ps(sum),
					_mm256_mul_ps(p[b].d, _mm256_broadcast_ss(d + b0 + b)), acc[t0 + t]);
			}
		}
	}
#pragma GCC unroll 8
	for (int t = 0; t < N; t++)
		_mm256_storeu_ps(y + (size_t)t * (size_t)ldy + (size_t)r,
				 bias ? _mm256_add_ps(acc[t], _mm256_loadu_ps(bias + r)) : acc[t]);
}

/* One row r x N tokens, all blocks (the rows left over). */
QD_INLINE void
qd_row(float *y, int ldy, const char *xq, const void *w, int cols, int r, const float *bias,
       int N, enum dtype wt)
{
	size_t bb = kern_weight_bytes(wt, 32), xrow = kern_act_row_bytes(cols);
	const unsigned char *wr = (const unsigned char *)w + (size_t)r * kern_weight_bytes(wt,
											   (size_t)cols);
	__m256 acc[QD_TOKENS];

#pragma GCC unroll 4
	for (int t = 0; t < N; t++)
		acc[t] = _mm256_setzero_ps();
	for (int b = 0; b < cols / 32; b++) {
		const unsigned char *blk = wr + (size_t)b * bb;
		struct qd_w wv = qd_w_load(blk, wt);
		__m256 dw = qd_scale(blk);
#pragma GCC unroll 4
		for (int t = 0; t < N; t++) {
			const char *xr = xq + (size_t)t * xrow;
			struct qd_x xv = qd_x_load((const int8_t *)xr + 32 * b, wt);
			__m256 dx = _mm256_broadcast_ss((const float *)(xr + cols) + b);
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(qd_dot(wv, xv, wt)),
						 _mm256_mul_ps(dw, dx), acc[t]);
		}
	}
#pragma GCC unroll 4
	for (int t = 0; t < N; t++)
		y[(size_t)t * (size_t)ldy + (size_t)r] = kern_hsum256(acc[t]) + (bias ? bias[r] : 0.0f);
}

/*
 * The GEMV (one token), row r: its blocks one after the other (one
 * sequential stream, as the F32 GEMV), 8 at a time: qd_dotk's partial
 * sums of (w + K) . x reduced by horizontal adds to one vector, lane i
 * block i's, less K times the activations' block sums, times a vector of
 * the 8 blocks' dw * dx; so a block's scales, its conversion and its
 * correction cost a lane rather than a vector each.
 */
QD_INLINE void qd_gemv(float *y, const char *xq, const void *w, int cols, int r,
		       const float *bias, enum dtype wt)
{
	size_t bb = kern_weight_bytes(wt, 32);
	const unsigned char *wr = (const unsigned char *)w + (size_t)r * kern_weight_bytes(wt,
											   (size_t)cols);
	const float *dx = (const float *)(xq + cols);
	const int32_t *sum = (const int32_t *)(dx + cols / 32);
	const __m256i k = _mm256_set1_epi32(QD_K(wt));
	int nb = cols / 32, b = 0;
	__m256 acc = _mm256_setzero_ps();
	float tail = 0;

	for (; b + 8 <= nb; b += 8) {
		__m256i v[8];
#pragma GCC unroll 8
		for (int i = 0; i < 8; i++) {
			const unsigned char *blk = wr + (size_t)(b + i) * bb;
			_mm_prefetch((const char *)blk + QD_AHEAD, _MM_HINT_T0);
			v[i] = qd_dotk(blk, (const int8_t *)xq + 32 * (b + i), wt);
		}
#pragma GCC unroll 4
		for (int i = 0; i < 8; i += 2)
			v[i] = _mm256_hadd_epi32(v[i], v[i + 1]);
		v[0] = _mm256_hadd_epi32(v[0], v[2]);
		v[4] = _mm256_hadd_epi32(v[4], v[6]);
		__m256i s = _mm256_add_epi32(_mm256_permute2x128_si256(v[0], v[4], 0x20),
					     _mm256_permute2x128_si256(v[0], v[4], 0x31));
		if (QD_K(wt) != 0)	/* exact: |K * sum| <= 128 * 32 * 127 */
			s = _mm256_sub_epi32(s, _mm256_mullo_epi32(_mm256_loadu_si256(
							(const __m256i *)(sum + b)), k));
		__m256 sc = _mm256_mul_ps(qd_scales8(wr + (size_t)b * bb, bb), _mm256_loadu_ps(dx + b));
		acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc);
	}
	for (; b < nb; b++) {	/* the last blocks, one at a time */
		const unsigned char *blk = wr + (size_t)b * bb;
		__m256i p = qd_dotk(blk, (const int8_t *)xq + 32 * b, wt);
		p = _mm256_sub_epi32(p, _mm256_setr_epi32(QD_K(wt) * sum[b], 0, 0, 0, 0, 0, 0, 0));
		uint16_t d;
		memcpy(&d, blk, 2);
		tail += kern_hsum256(_mm256_cvtepi32_ps(p)) * (_cvtsh_ss(d) * dx[b]);
	}
	y[r] = kern_hsum256(acc) + tail + (bias ? bias[r] : 0.0f);
}

typedef void (*qd_micro_fn)(float *y, int ldy, const char *xq, int cols,
			    const struct qd_pblk *p, int b0, int kb, int r, int first,
			    const float *bias, const char *pf);
typedef const char *(*qd_pack_fn)(struct qd_pblk *p, const void *w, int cols, int r, int b0,
				  int kb);
typedef void (*qd_row_fn)(float *y, int ldy, const char *xq, const void *w, int cols, int r,
			  const float *bias);

#define QD_MICRO(N, sfx, wt)                                                                \
	QD_TARGET static void qd_micro_##sfx##_##N(float *y, int ldy, const char *xq, int cols, \
						   const struct qd_pblk *p, int b0, int kb,  \
						   int r, int first, const float *bias,      \
						   const char *pf)                           \
	{                                                                                   \
		qd_micro(y, ldy, xq, cols, p, b0, kb, r, first, bias, pf, N, wt);           \
	}
#define QD_ROW(N, sfx, wt)                                                                  \
	QD_TARGET static void qd_row_##sfx##_##N(float *y, int ldy, const char *xq,          \
						 const void *w, int cols, int r,             \
						 const float *bias)                          \
	{                                                                                   \
		qd_row(y, ldy, xq, w, cols, r, bias, N, wt);                                \
	}
#define QD_KERNELS(sfx, wt)                                                                 \
	QD_MICRO(1, sfx, wt) QD_MICRO(2, sfx, wt) QD_MICRO(3, sfx, wt) QD_MICRO(4, sfx, wt) \
	QD_MICRO(5, sfx, wt) QD_MICRO(6, sfx, wt) QD_MICRO(7, sfx, wt) QD_MICRO(8, sfx, wt) \
	QD_ROW(1, sfx, wt) QD_ROW(2, sfx, wt) QD_ROW(3, sfx, wt) QD_ROW(4, sfx, wt)         \
	static const qd_micro_fn qd_micros_##sfx[QD_N + 1] = {                              \
		0, qd_micro_##sfx##_1, qd_micro_##sfx##_2, qd_micro_##sfx##_3,              \
		qd_micro_##sfx##_4, qd_micro_##sfx##_5, qd_micro_##sfx##_6,                 \
		qd_micro_##sfx##_7, qd_micro_##sfx##_8                                      \
	};                                                                                  \
	static const qd_row_fn qd_rows_##sfx[QD_TOKENS + 1] = {                             \
		0, qd_row_##sfx##_1, qd_row_##sfx##_2, qd_row_##sfx##_3, qd_row_##sfx##_4   \
	};                                                                                  \
	QD_TARGET static void qd_gemv_##sfx(float *y, const char *xq, const void *w, int cols,  \
					    int r, const float *bias)                       \
	{                                                                                   \
		qd_gemv(y, xq, w, cols, r, bias, wt);                                       \
	}                                                                                   \
	QD_TARGET static const char *qd_pack_##sfx(struct qd_pblk *p, const void *w, int cols, \
						   int r, int b0, int kb)                    \
	{                                                                                   \
		return qd_pack(p, w, cols, r, b0, kb, wt);                                  \
	}                                                                                   \
	QD_TARGET static void qd_gemm_##sfx(float *y, int ldy, const void *xq, int n,       \
					    const void *w, int cols, int r0, int r1,        \
					    const float *bias)                              \
	{                                                                                   \
		if (n == 1)                                                                 \
			for (int r = r0; r < r1; r++)                                       \
				qd_gemv_##sfx(y, xq, w, cols, r, bias);                     \
		else                                                                        \
			qd_gemm(y, ldy, xq, n, w, cols, r0, r1, bias, qd_pack_##sfx,        \
				qd_micros_##sfx, qd_rows_##sfx);                            \
	}                                                                                   \
	QD_TARGET static const char *qd_pack_p8_##sfx(struct qd_pblk *p, const void *w,      \
						      int cols, int r, int b0, int kb)       \
	{                                                                                   \
		return qd_pack_p8(p, w, cols, r, b0, kb, wt);                               \
	}                                                                                   \
	QD_TARGET static void qd_gemm_p8_##sfx(float *y, int ldy, const void *xq, int n,    \
					       const void *w, int cols, int r0, int r1,     \
					       const float *bias)                           \
	{                                                                                   \
		int r = r0;                                                                 \
		if (n > 1) {                                                                \
			qd_gemm(y, ldy, xq, n, w, cols, r0, r1, bias, qd_pack_p8_##sfx,     \
				qd_micros_##sfx, qd_rows_##sfx);                            \
			return;                                                             \
		}                                                                           \
		for (; r + 8 <= r1; r += 8)                                                 \
			qd_gemv_p8(y, xq, w, cols, r, bias, wt);                            \
		for (; r < r1; r++)	/* the rows after the last panel */                 \
			qd_gemv_##sfx(y, xq, w, cols, r, bias);                             \
	}

QD_INLINE void
qd_gemm(float *y, int ldy, const void *xq, int n, const void *w, int cols, int r0, int r1,
	const float *bias, qd_pack_fn pack, const qd_micro_fn *micro, const qd_row_fn *row)
{
	size_t xrow = kern_act_row_bytes(cols);
	int nb = cols / 32, r = r0;
	struct qd_pblk panel[QD_KC];

	for (; r + 8 <= r1; r += 8)
		for (int b0 = 0; b0 < nb; b0 += QD_KC) {
			int kb = nb - b0 < QD_KC ? nb - b0 : QD_KC;
			const char *pf = pack(panel, w, cols, r, b0, kb);
			for (int t = 0; t < n; t += QD_N)
				micro[n - t < QD_N ? n - t : QD_N](
					y + (size_t)t * (size_t)ldy, ldy,
					(const char *)xq + (size_t)t * xrow, cols, panel, b0, kb, r,
					b0 == 0, b0 + kb == nb ? bias : NULL, t ? NULL : pf);
		}
	for (; r < r1; r++)
		for (int t = 0; t < n; t += QD_TOKENS)
			row[n - t < QD_TOKENS ? n - t : QD_TOKENS](
				y + (size_t)t * (size_t)ldy, ldy, (const char *)xq + (size_t)t * xrow,
				w, cols, r, bias);
}

