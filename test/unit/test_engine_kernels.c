/*
 * test_engine_kernels.c - the CPU backend's kernels against plain
 * double-precision loops, for every kernel table this CPU can run
 * (portable, AVX2+FMA, AVX-512): GEMM tiles for decode (1..11 tokens) and
 * prefill (packed panels, many tokens) on shapes with remainder rows,
 * tokens and columns (tails of every width), with and without bias, into
 * a larger leading dimension, for F32, BF16, F16, Q8_0 and Q4_0 weights
 * (the 16-bit ones also against the F32 kernel on the widened weights;
 * Q8_0 and Q4_0 on int8 activations: against the same quantized math in
 * doubles, with the activations quantized here, for 1..20 tokens and row
 * ranges with remainders; and on raw blocks with extreme scales, -128,
 * all-zero and non-finite blocks); the activation quantizer bit for bit
 * against one written here; dot products and axpy of every length;
 * attention over strided, out-of-order K/V rows with head tails.
 * And the forward pass: a batch of 8 decode tokens (one per sequence)
 * gives the same logits and greedy tokens as 8 sequences decoded one at a
 * time (the batch goes through the multi-token tiles, single tokens
 * through the GEMV), on stories260K and the tiny fixture models.
 */
#include "check.h"

#include "core/cpu/kernels.h"
#include "core/engine/forward.h"
#include "core/err.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static float frand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* Weights as dtype wt hold them: F32 values rounded to BF16 or F16, or
 * quantized to Q8_0 or Q4_0 blocks (in w16) and back (in w), so the
 * references see exactly the stored values. */
static void round_weights(float *w, uint16_t *w16, size_t n, enum dtype wt)
{
	if (wt == DTYPE_Q8_0) {
		const unsigned char *b = (const unsigned char *)w16;
		q8_0_quantize(w16, w, n);
		for (size_t i = 0; i < n; i++) {	/* block i / 32: scale, then 32 int8 */
			const unsigned char *blk = b + i / 32 * 34;
			w[i] = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) *
			       (float)(int8_t)blk[2 + i % 32];
		}
		return;
	}
	if (wt == DTYPE_Q4_0) {
		const unsigned char *b = (const unsigned char *)w16;
		q4_0_quantize(w16, w, n);
		for (size_t i = 0; i < n; i++) {	/* block i / 32: scale, 16 bytes */
			const unsigned char *blk = b + i / 32 * 18;
			size_t j = i % 32;	/* low nibbles first, then high */
			int q = j < 16 ? blk[2 + j] & 0xf : blk[2 + j - 16] >> 4;
			w[i] = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) * (float)(q - 8);
		}
		return;
	}
	for (size_t i = 0; i < n && wt != DTYPE_F32; i++) {
		w16[i] = wt == DTYPE_BF16 ? f32_to_bf16(w[i]) : f32_to_f16(w[i]);
		w[i] = wt == DTYPE_BF16 ? bf16_to_f32(w16[i]) : f16_to_f32(w16[i]);
	}
}

/* The activations' quantization as kernels.h states it, written here:
 * per 32-block d = amax / 127, q = x * (127 / amax) rounded to nearest
 * even; all zero when 127 / amax overflows; q = 0 and d = NaN for a block
 * with a non-finite value. */
static void ref_act_quant(int8_t *q, float *d, const float *x, int cols)
{
	for (int b = 0; b < cols / 32; b++) {
		float amax = 0;
		int finite = 1;
		for (int j = 0; j < 32; j++) {
			finite &= isfinite(x[32 * b + j]);
			amax = fmaxf(amax, fabsf(x[32 * b + j]));
		}
		int zero = !finite || isinf(127.0f / amax);
		d[b] = !finite ? NAN : zero ? 0.0f : amax / 127.0f;
		for (int j = 0; j < 32; j++)
			q[32 * b + j] = zero ? 0 : (int8_t)lrintf(x[32 * b + j] * (127.0f / amax));
	}
}

/* Weight j of a Q8_0 / Q4_0 block as its integer (Q4_0: nibble less 8). */
static int block_q(const unsigned char *blk, int j, enum dtype wt)
{
	if (wt == DTYPE_Q8_0)
		return (int8_t)blk[2 + j];
	return (j < 16 ? blk[2 + j] & 0xf : blk[2 + j - 16] >> 4) - 8;
}

/* Row r x token t of a block GEMM in doubles, from raw blocks w and the
 * activations quantized by ref_act_quant; *mag: the sum of magnitudes. */
static double ref_qdot(const unsigned char *w, enum dtype wt, int cols, int r, const float *x,
		       double *mag)
{
	int8_t q[1536];
	float d[1536 / 32];
	size_t bb = wt == DTYPE_Q8_0 ? 34 : 18;
	double ref = 0;

	ref_act_quant(q, d, x, cols);
	*mag = 0;
	for (int b = 0; b < cols / 32; b++) {
		const unsigned char *blk = w + ((size_t)r * (size_t)(cols / 32) + (size_t)b) * bb;
		double s = (double)f16_to_f32((uint16_t)(blk[0] | blk[1] << 8)) * (double)d[b];
		long dot = 0, abs = 0;
		for (int j = 0; j < 32; j++) {
			dot += (long)block_q(blk, j, wt) * q[32 * b + j];
			abs += labs((long)block_q(blk, j, wt) * q[32 * b + j]);
		}
		ref += s * (double)dot;
		*mag += fabs(s) * (double)abs;
	}
	return ref;
}

/* y = the GEMM for weights of dtype wt of x (F32 rows), w holding rows
 * rows of dtype_unpanel(wt) (repacked here for a panel type), quantizing
 * x first for the block types. */
static void gemm_any(enum dtype wt, float *y, int ldy, const float *x, int n, const void *w,
		     int rows, int cols, int r0, int r1, const float *bias)
{
	enum dtype bt = dtype_unpanel(wt);
	void *xq = NULL, *wp = NULL;

	if (dtype_is_quant(bt)) {
		xq = malloc(kern_act_bytes(n, cols));
		kern_act_quant(xq, x, n, cols);
	}
	if (bt != wt) {
		wp = malloc(dtype_bytes(bt, (size_t)rows * (size_t)cols));
		dtype_repack(wp, w, wt, (size_t)rows, (size_t)cols);
	}
	kern_gemm_for(wt)(y, ldy, xq ? xq : (const void *)x, n, wp ? wp : w, cols, r0, r1, bias);
	free(xq);
	free(wp);
}

/* A row range a panel type's GEMM takes (kernels.h): [r0, r1) widened or
 * narrowed to panel bounds, r1 kept at the last row. */
static void panel_range(enum dtype wt, int rows, int *r0, int *r1)
{
	if (dtype_unpanel(wt) != wt) {
		*r0 &= ~7;
		if (*r1 != rows)
			*r1 &= ~7;
	}
}

/*
 * Max relative error of the GEMM for weights of dtype wt over rows [r0, r1)
 * against doubles on the stored weights (block types: on int8
 * activations); *vs_f32: the max relative difference from kern_gemm (F32)
 * on the widened weights (0 for the block types, which compute otherwise).
 */
static double gemm_err(enum dtype wt, int n, int rows, int cols, int r0, int r1, int with_bias,
		       double *vs_f32)
{
	unsigned s = (unsigned)(n * 131 + rows * 7 + cols);
	int ldy = rows + 3;
	size_t nw = (size_t)rows * (size_t)cols;
	float *w = calloc(nw, sizeof(float));
	uint16_t *w16 = malloc(sizeof(uint16_t) * nw);
	float *x = malloc(sizeof(float) * (size_t)n * (size_t)cols);
	float *b = malloc(sizeof(float) * (size_t)rows);
	float *y = malloc(sizeof(float) * (size_t)n * (size_t)ldy);
	float *y32 = malloc(sizeof(float) * (size_t)n * (size_t)ldy);
	double worst = 0;

	for (size_t i = 0; i < nw; i++)
		w[i] = frand(&s);
	round_weights(w, w16, nw, dtype_unpanel(wt));
	for (long i = 0; i < (long)n * cols; i++)
		x[i] = frand(&s);
	for (int i = 0; i < rows; i++)
		b[i] = frand(&s);
	for (long i = 0; i < (long)n * ldy; i++)
		y[i] = y32[i] = 12345.0f;
	gemm_any(wt, y, ldy, x, n, wt == DTYPE_F32 ? (const void *)w : w16, rows, cols, r0, r1,
		 with_bias ? b : NULL);
	kern_gemm(y32, ldy, x, n, w, cols, r0, r1, with_bias ? b : NULL);
	*vs_f32 = 0;
	for (int t = 0; t < n; t++)
		for (int r = 0; r < rows; r++) {
			float got = y[(size_t)t * (size_t)ldy + (size_t)r];
			float f32 = y32[(size_t)t * (size_t)ldy + (size_t)r];
			if (r < r0 || r >= r1) {	/* untouched */
				if (got != 12345.0f)
					worst = INFINITY;
				continue;
			}
			double ref = with_bias ? b[r] : 0, mag = fabs(ref);
			if (dtype_is_quant(dtype_unpanel(wt))) {
				double m;
				ref += ref_qdot((const unsigned char *)w16, dtype_unpanel(wt), cols, r,
						x + (size_t)t * (size_t)cols, &m);
				mag += m;
			}
			for (int k = 0; k < cols && dtype_block(wt) == 1; k++) {
				double p = (double)x[(size_t)t * (size_t)cols + (size_t)k] *
					   (double)w[(size_t)r * (size_t)cols + (size_t)k];
				ref += p;
				mag += fabs(p);
			}
			double e = fabs((double)got - ref) / (mag + 1e-30);
			if (e > worst)
				worst = e;
			e = fabs((double)got - f32) / (mag + 1e-30);
			if (e > *vs_f32 && dtype_block(wt) == 1)
				*vs_f32 = e;
		}
	free(w);
	free(w16);
	free(x);
	free(b);
	free(y);
	free(y32);
	return worst;
}

/* Run body once per kernel table the CPU supports (reported by name). */
#define FOR_EACH_TABLE(name)                                                     \
	for (int ti_ = 0; (name = kernels_name(ti_)) != NULL; ti_++)             \
		if (kernels_use(name) == -ENOTSUP)                               \
			fprintf(stderr, "  (%s kernels: not supported here)\n", name); \
		else

TEST(gemm_matches_reference)
{
	/* n, rows, cols, r0, r1, bias */
	static const int cases[][6] = {
		{ 1, 64, 64, 0, 64, 0 },	/* decode GEMV */
		{ 1, 36, 72, 0, 36, 1 },	/* GEMV, 16-wide loop + 8 remainder */
		{ 1, 7, 33, 1, 7, 1 },		/* GEMV, remainder rows, 1-column tail */
		{ 2, 9, 47, 0, 9, 0 },		/* 2 tokens, tail of 15 */
		{ 4, 20, 40, 4, 20, 0 },	/* 4 tokens */
		{ 3, 40, 72, 8, 40, 1 },	/* few tokens */
		{ 5, 19, 100, 0, 19, 1 },
		{ 6, 23, 17, 2, 23, 0 },
		{ 7, 20, 13, 0, 20, 1 },	/* cols not a multiple of 8 */
		{ 8, 35, 576, 0, 35, 1 },	/* batch-8 decode, remainder rows */
		{ 8, 48, 1536, 0, 48, 0 },
		{ 9, 25, 31, 0, 25, 1 },	/* two token chunks */
		{ 11, 31, 129, 5, 31, 1 },
		{ 12, 32, 64, 0, 32, 0 },	/* packed panels, just enough tokens */
		{ 29, 48, 576, 16, 48, 1 },	/* packed, two column blocks, remainder tokens */
		{ 50, 37, 1000, 0, 37, 1 },	/* packed + remainder rows, uneven blocks */
		{ 64, 16, 1536, 0, 16, 0 },	/* five column blocks */
		{ 13, 24, 30, 3, 21, 1 },	/* unaligned row range, odd cols */
	};
	static const enum dtype dtypes[] = { DTYPE_F32,  DTYPE_BF16,    DTYPE_F16,
					     DTYPE_Q8_0, DTYPE_Q4_0,    DTYPE_Q8_0_P8,
					     DTYPE_Q4_0_P8 };
	const char *name;

	FOR_EACH_TABLE(name)
	for (size_t d = 0; d < sizeof(dtypes) / sizeof(dtypes[0]); d++) {
		enum dtype wt = dtypes[d];
		double vs_f32;
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			const int *c = cases[i];
			int r0 = c[3], r1 = c[4];
			if (dtype_block(wt) > 1 && c[2] % 32)	/* rows of whole blocks only */
				continue;
			panel_range(wt, c[1], &r0, &r1);
			double e = gemm_err(wt, c[0], c[1], c[2], r0, r1, c[5], &vs_f32);
			/* F32 accumulation over up to 1536 terms: relative to the sum
			 * of magnitudes, well under 1e-5; the 16-bit kernels compute
			 * the F32 kernel's products exactly (widened weights), only
			 * summed in another order; the block types' integer dots are
			 * exact, each times its scales in F32 */
			CHECK_MSG(e < 1e-5, "%s %s: case %zu (n %d rows %d cols %d): relative error %g",
				  name, dtype_name(wt), i, c[0], c[1], c[2], e);
			CHECK_MSG(vs_f32 < 1e-6, "%s %s: case %zu: %g from the F32 kernel", name,
				  dtype_name(wt), i, vs_f32);
		}
		/* Q8_0, Q4_0: every token count from the GEMV to packed
		 * panels, row ranges with remainders of every tile height */
		for (int n = 1; n <= 20 && dtype_block(wt) > 1; n++)
			for (int cols = 32; cols <= 160; cols += 64)
				for (int r0 = 0; r0 <= 3; r0++) {
					int r1 = 16 + 7 * r0 + n % 5, rows = r1 + 2 * (n & 1), a = r0;
					panel_range(wt, rows, &a, &r1);
					double e = gemm_err(wt, n, rows, cols, a, r1, (n + r0) & 1,
							    &vs_f32);
					CHECK_MSG(e < 1e-5 && vs_f32 < 1e-6,
						  "%s %s: n %d cols %d rows [%d, %d): relative "
						  "error %g (%g from F32)", name, dtype_name(wt), n,
						  cols, r0, r1, e, vs_f32);
				}
		/* every token count and every column tail on a small shape */
		for (int n = 1; n <= 13 && dtype_block(wt) == 1; n++)
			for (int cols = 1; cols <= 40; cols += 3) {
				double e = gemm_err(wt, n, 11, cols, 1, 10, n & 1, &vs_f32);
				CHECK_MSG(e < 1e-5 && vs_f32 < 1e-6,
					  "%s %s: n %d cols %d: relative error %g (%g from F32)",
					  name, dtype_name(wt), n, cols, e, vs_f32);
			}
	}
	kernels_use(kernels_init());
}

/* Each table's activation quantizer against ref_act_quant, bit for bit:
 * random rows at several magnitudes, ties (x * 127 / amax = k + 0.5 go
 * to even), all-zero and single-value blocks, NaN and infinity. */
TEST(act_quant_matches_reference)
{
	enum { COLS = 11 * 32, N = 3 };
	static const float mags[] = { 1, 1e-20f, 1e20f, 0, 3e-38f, 8e-37f };
	float x[N * COLS];
	int8_t want_q[COLS];
	float want_d[COLS / 32];
	unsigned s = 99;
	const char *name;

	for (int i = 0; i < N * COLS; i++)
		x[i] = frand(&s) * mags[i / 32 % 6];
	/* block 6: ties around amax 127 (id exactly 1) */
	static const float ties[] = { 127, 2.5f, -3.5f, 0.5f, -0.5f, 126.5f, -126.5f, 1.5f };
	for (int j = 0; j < 32; j++)
		x[6 * 32 + j] = ties[j % 8];
	for (int j = 0; j < 32; j++)	/* block 7: one value; block 8: negative max */
		x[7 * 32 + j] = j == 5 ? -2.0f : 0.0f, x[8 * 32 + j] = -(float)j;
	x[9 * 32 + 3] = NAN;
	x[10 * 32 + 31] = -INFINITY;
	x[COLS + 4 * 32 + 1] = INFINITY;
	size_t rb = kern_act_bytes(1, COLS);
	CHECK(rb == COLS + COLS / 32 * 8 && kern_act_bytes(N, COLS) == N * rb);
	unsigned char *xq = malloc(kern_act_bytes(N, COLS));

	FOR_EACH_TABLE(name)
	{
		memset(xq, 0x55, kern_act_bytes(N, COLS));
		kern_act_quant(xq, x, N, COLS);
		for (int t = 0; t < N; t++) {
			const int8_t *q = (const int8_t *)(xq + (size_t)t * rb);
			const float *d = (const float *)(q + COLS);
			const int32_t *sum = (const int32_t *)(d + COLS / 32);
			ref_act_quant(want_q, want_d, x + t * COLS, COLS);
			for (int b = 0; b < COLS / 32; b++) {
				int32_t want_s = 0;
				for (int j = 0; j < 32; j++)
					want_s += want_q[32 * b + j];
				CHECK_MSG(sum[b] == want_s, "%s: row %d block %d: sum %d, want %d",
					  name, t, b, sum[b], want_s);
				CHECK_MSG(memcmp(q + 32 * b, want_q + 32 * b, 32) == 0,
					  "%s: row %d block %d: q differs", name, t, b);
				CHECK_MSG(d[b] == want_d[b] || (isnan(d[b]) && isnan(want_d[b])),
					  "%s: row %d block %d: d %g, want %g", name, t, b, d[b],
					  want_d[b]);
			}
		}
		const int8_t *q = (const int8_t *)xq;	/* the ties, as stated */
		CHECK(q[6 * 32] == 127 && q[6 * 32 + 1] == 2 && q[6 * 32 + 2] == -4 &&
		      q[6 * 32 + 3] == 0 && q[6 * 32 + 4] == 0 && q[6 * 32 + 5] == 126 &&
		      q[6 * 32 + 6] == -126 && q[6 * 32 + 7] == 2);
		CHECK(q[7 * 32 + 5] == -127 && q[8 * 32 + 31] == -127 && q[9 * 32] == 0);
	}
	kernels_use(kernels_init());
	free(xq);
}

/* A random F16 scale for raw blocks: mostly ordinary, sometimes extreme
 * (largest, smallest subnormal), zero or negative. */
static uint16_t rand_scale(unsigned *s)
{
	switch ((*s = *s * 1103515245u + 12345u) >> 16 & 7) {
	case 0: return 0x7bff;	/* 65504 */
	case 1: return 0x0001;	/* 2^-24 */
	case 2: return 0;
	case 3: return f32_to_f16(-0.01f);
	default: return f32_to_f16(0.001f + (frand(s) + 0.5f) * 0.05f);
	}
}

/*
 * The block GEMMs on raw blocks (every byte value, -128 included, every
 * nibble) against ref_qdot in doubles, for every table: odd shapes and
 * row ranges, token counts across the tile widths, F16 scales from the
 * smallest subnormal to 65504, activation blocks from 1e-20 to 1e20,
 * all-zero weight and activation blocks, the largest int16 pair sums
 * (-128 x 127 everywhere), infinite and NaN weight scales, and non-finite
 * activations (NaN out); and the same on the panel types (repacked).
 */
TEST(qdot_gemm_matches_reference)
{
	/* n, rows, cols, r0, r1 */
	static const int cases[][5] = {
		{ 1, 7, 32, 0, 7 },   { 2, 5, 96, 1, 5 },    { 3, 9, 160, 0, 9 },
		{ 4, 6, 64, 2, 6 },   { 5, 11, 352, 0, 11 }, { 8, 13, 320, 3, 13 },
		{ 9, 4, 32, 0, 4 },   { 13, 10, 96, 1, 9 },  { 1, 3, 1536, 0, 3 },
		{ 70, 9, 64, 0, 9 },	/* 8-row panels, 9 token groups */
		{ 3, 17, 1056, 0, 17 },	/* panel runs of 16, 16 and 1 blocks */
		{ 9, 21, 544, 2, 21 },
		{ 1, 19, 352, 0, 19 },	/* GEMV: two panels, 3 rows after */
		{ 1, 24, 96, 8, 24 },
	};
	/* the panel types on the same blocks, row ranges on panel bounds */
	static const enum dtype types[] = { DTYPE_Q8_0, DTYPE_Q4_0, DTYPE_Q8_0_P8, DTYPE_Q4_0_P8 };
	static const float mags[] = { 1, 1e-20f, 1e20f, 0, 0.3f, 7 };
	const char *name;

	FOR_EACH_TABLE(name)
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		enum dtype wt = types[ti], bt = dtype_unpanel(wt);
		int n = cases[ci][0], rows = cases[ci][1], cols = cases[ci][2];
		int r0 = cases[ci][3], r1 = cases[ci][4], nb = cols / 32, ldy = rows + 1;
		size_t bb = bt == DTYPE_Q8_0 ? 34 : 18;
		unsigned s = (unsigned)(ci * 31 + ti % 2 + 1);

		panel_range(wt, rows, &r0, &r1);
		unsigned char *w = malloc((size_t)rows * (size_t)nb * bb);
		float *x = malloc(sizeof(float) * (size_t)n * (size_t)cols);
		float *y = malloc(sizeof(float) * (size_t)n * (size_t)ldy);

		for (int r = 0; r < rows; r++)
			for (int b = 0; b < nb; b++) {
				unsigned char *blk = w + ((size_t)r * (size_t)nb + (size_t)b) * bb;
				uint16_t d = rand_scale(&s);
				blk[0] = (unsigned char)d;
				blk[1] = (unsigned char)(d >> 8);
				for (size_t j = 2; j < bb; j++) {
					s = s * 1103515245u + 12345u;
					blk[j] = (unsigned char)(s >> 16);
				}
				if ((r + b) % 7 == 3)	/* all-zero quants */
					memset(blk + 2, bt == DTYPE_Q8_0 ? 0 : 0x88, bb - 2);
				if ((r + 2 * b) % 5 == 1)	/* Q8_0 -128, Q4_0 -8 */
					memset(blk + 2, bt == DTYPE_Q8_0 ? 0x80 : 0, bb - 2);
				if (r == 5 && b == nb - 1)	/* scale +inf, -inf, NaN */
					blk[1] = ci % 3 == 0 ? 0x7c : ci % 3 == 1 ? 0xfc : 0x7e,
					blk[0] = 0;
			}
		for (int t = 0; t < n; t++)
			for (int k = 0; k < cols; k++) {
				int b = k / 32;
				float v = frand(&s) * mags[(t + b) % 6];
				if ((t + b) % 4 == 2)	/* all equal: q all 127 */
					v = 0.25f;
				x[(size_t)t * (size_t)cols + (size_t)k] = v;
			}
		if (ci == 3)	/* a NaN in token 1's block 0 */
			x[cols + 7] = NAN;
		if (ci == 5)	/* an infinity in token 2's last block */
			x[2 * cols + cols - 1] = -INFINITY;
		for (int i = 0; i < n * ldy; i++)
			y[i] = 12345.0f;
		gemm_any(wt, y, ldy, x, n, w, rows, cols, r0, r1, NULL);
		for (int t = 0; t < n; t++)
			for (int r = 0; r < rows; r++) {
				float got = y[t * ldy + r];
				if (r < r0 || r >= r1) {
					CHECK_MSG(got == 12345.0f, "%s %s: case %zu: row %d written",
						  name, dtype_name(wt), ci, r);
					continue;
				}
				double mag, ref = ref_qdot(w, bt, cols, r, x + (size_t)t * (size_t)cols,
							   &mag);
				CHECK_MSG(isnan(ref)   ? isnan(got)
					  /* an infinite scale times partial sums, one
					   * of them 0, may give NaN rather than inf */
					  : isinf(ref) ? (double)got == ref || isnan(got)
						       : fabs((double)got - ref) <= 1e-5 * mag + 1e-37,
					  "%s %s: case %zu (n %d cols %d) token %d row %d: %.9g, "
					  "want %.9g", name, dtype_name(wt), ci, n, cols, t, r, got, ref);
			}
		free(w);
		free(x);
		free(y);
	}
	kernels_use(kernels_init());
}

/* dtype_repack's layout, byte for byte as dtype.h words it: 11 rows of
 * random blocks (one panel, 3 rows after it). */
TEST(repack_layout_as_documented)
{
	enum { ROWS = 11, NB = 3 };
	static const enum dtype types[] = { DTYPE_Q8_0_P8, DTYPE_Q4_0_P8 };

	for (size_t ti = 0; ti < 2; ti++) {
		enum dtype pt = types[ti], bt = dtype_unpanel(pt);
		size_t bb = bt == DTYPE_Q8_0 ? 34 : 18, qb = 8 * (bb - 2), row = NB * bb;
		unsigned char in[ROWS * NB * 34], out[ROWS * NB * 34];
		unsigned s = 7;
		CHECK(dtype_panel_of(bt) == pt && dtype_bytes(pt, 64) == dtype_bytes(bt, 64));
		for (size_t i = 0; i < sizeof(in); i++)
			in[i] = (unsigned char)((s = s * 1103515245u + 12345u) >> 16);
		dtype_repack(out, in, pt, ROWS, NB * 32);
		for (int r = 0; r < 8; r++)
			for (int b = 0; b < NB; b++) {
				const unsigned char *blk = in + r * row + b * bb;
				const unsigned char *pb = out + b * (16 + qb);	/* scales, quants */
				CHECK(!memcmp(pb + 2 * r, blk, 2));
				for (size_t j = 0; j < qb / 32; j++)
					for (int k = 0; k < 4; k++)	/* weights 4j + k (and + 16) */
						CHECK(pb[16 + 32 * j + 4 * r + k] == blk[2 + 4 * j + k]);
			}
		CHECK(!memcmp(out + 8 * row, in + 8 * row, 3 * row));
		float f[32];
		CHECK(dtype_to_f32(f, out, pt, 32) == -EINVAL);
	}
}

TEST(dot_and_axpy_match_reference)
{
	unsigned s = 7;
	float a[203], b[203], y[203], y0[203];
	const char *name;

	for (int i = 0; i < 203; i++) {
		a[i] = frand(&s);
		b[i] = frand(&s);
		y0[i] = frand(&s);
	}
	FOR_EACH_TABLE(name)
	for (int n = 0; n <= 203; n += (n < 40 ? 1 : 29)) {
		double ref = 0, mag = 0;
		for (int i = 0; i < n; i++) {
			ref += (double)a[i] * b[i];
			mag += fabs((double)a[i] * b[i]);
		}
		CHECK_MSG(fabs(kern_dot(a, b, n) - ref) <= 1e-6 * (mag + 1e-30) + 1e-12,
			  "%s: dot of %d", name, n);
		for (int i = 0; i < 203; i++)
			y[i] = y0[i];
		kern_axpy(y, 0.5f, a, n);
		for (int i = 0; i < 203; i++) {
			double want = i < n ? (double)y0[i] + 0.5 * a[i] : y0[i];
			CHECK_MSG(fabs(y[i] - want) < 1e-6, "%s: axpy of %d, element %d", name, n,
				  i);
		}
	}
	kernels_use(kernels_init());
}

/* Attention over K/V rows of each KV dtype against a double reference on
 * the rows as stored (rounded to that dtype). */
TEST(attend_matches_reference)
{
	/* group, head_dim, positions: tails of every kind */
	static const int cases[][3] = {
		{ 1, 8, 1 }, { 2, 8, 17 }, { 3, 64, 40 }, { 2, 128, 33 }, { 4, 20, 9 },
		{ 1, 72, 5 }, { 5, 3, 12 }, { 2, 100, 64 },
	};
	static const enum dtype kvts[] = { DTYPE_F32, DTYPE_BF16, DTYPE_F16 };
	const char *name;

	FOR_EACH_TABLE(name)
	for (size_t ti = 0; ti < sizeof(kvts) / sizeof(kvts[0]); ti++)
	for (size_t ci = 0; ci < sizeof(cases) / sizeof(cases[0]); ci++) {
		enum dtype kt = kvts[ti];
		int group = cases[ci][0], hd = cases[ci][1], n = cases[ci][2], w = hd + 5;
		size_t es = dtype_size(kt), nkv = (size_t)(2 * n * w);
		unsigned s = (unsigned)(ci * 977 + 3);
		float *q = malloc(sizeof(float) * (size_t)(group * hd));
		float *out = malloc(sizeof(float) * (size_t)(group * hd));
		float *kv = malloc(sizeof(float) * nkv);	/* as stored, widened */
		char *kvs = malloc(es * nkv);			/* as stored */
		float *scores = malloc(sizeof(float) * (size_t)(group * n));
		const void **k = malloc(sizeof(*k) * (size_t)n), **v = malloc(sizeof(*v) * (size_t)n);
		const float **kf = malloc(sizeof(*kf) * (size_t)n);
		const float **vf = malloc(sizeof(*vf) * (size_t)n);

		for (int i = 0; i < group * hd; i++)
			q[i] = 4 * frand(&s);
		for (size_t i = 0; i < nkv; i++) {
			float x = frand(&s);
			uint16_t h = kt == DTYPE_BF16 ? f32_to_bf16(x) : f32_to_f16(x);
			if (kt == DTYPE_F32)
				memcpy(kvs + i * es, &x, 4);
			else
				memcpy(kvs + i * es, &h, 2);
			/* BF16 widens by a shift; F16 by the library's widening */
			kv[i] = kt == DTYPE_F32 ? x : kt == DTYPE_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
			if (kt != DTYPE_F32)	/* the rounding is to the nearest */
				CHECK(fabsf(kv[i] - x) <= fabsf(x) * (kt == DTYPE_BF16 ? 0x1p-8f
											: 0x1p-11f));
		}
		for (int i = 0; i < n; i++) {	/* rows out of order, strided */
			size_t ko = (size_t)((n - 1 - i) * w), vo = (size_t)((n + i) * w);
			k[i] = kvs + ko * es;
			v[i] = kvs + vo * es;
			kf[i] = kv + ko;
			vf[i] = kv + vo;
		}
		float scale = 1.0f / sqrtf((float)hd);
		kern_attend(out, q, group, hd, k, v, kt, n, scale, scores);
		for (int g = 0; g < group; g++) {
			double sc[64], mx = -1e300, sum = 0;
			for (int i = 0; i < n; i++) {
				double d = 0;
				for (int c = 0; c < hd; c++)
					d += (double)q[g * hd + c] * kf[i][c];
				sc[i] = d * scale;
				mx = fmax(mx, sc[i]);
			}
			for (int i = 0; i < n; i++)
				sum += (sc[i] = exp(sc[i] - mx));
			for (int c = 0; c < hd; c++) {
				double ref = 0;
				for (int i = 0; i < n; i++)
					ref += sc[i] / sum * vf[i][c];
				CHECK_MSG(fabs(out[g * hd + c] - ref) < 1e-5,
					  "%s %s: group %d hd %d n %d: head %d [%d] %g vs %g", name,
					  dtype_name(kt), group, hd, n, g, c, out[g * hd + c], ref);
			}
		}
		free(q);
		free(out);
		free(kv);
		free(kvs);
		free(scores);
		free(k);
		free(v);
		free(kf);
		free(vf);
	}
	kernels_use(kernels_init());
}

TEST(best_table_chosen)
{
	const char *best = kernels_init();
	int found = 0;

	for (int i = 0; kernels_name(i); i++)
		found |= !strcmp(kernels_name(i), best);
	CHECK(found);
	CHECK(kernels_use("no-such-isa") == -ENOENT);
	CHECK(kernels_use("portable") == 0);
	kernels_use(best);
}

/* ---- batch-8 decode against 8 batch-1 decodes ---------------------------- */

#define NSEQ 8
#define STEPS 12
#define BLOCK 16
#define MAX_BLOCKS 4	/* per sequence: prompt + STEPS < 64 positions */

struct seq_run {
	int32_t table[MAX_BLOCKS];
	int32_t tokens[64];
	int n;			/* tokens so far (prompt + generated) */
	int n_prompt;
};

static int argmax(const float *v, int n)
{
	int best = 0;
	for (int i = 1; i < n; i++)
		if (v[i] > v[best])
			best = i;
	return best;
}

/* One forward step over the given tokens (index k of s[] at pos s[k].n-1
 * or a whole prompt); logits of the last token of each listed sequence. */
static int step(struct forward *f, struct seq_run *s, const int *which, int nw, int prompt,
		float *logits)
{
	int32_t tok[64], pos[64], seq[64], slot[64], out[NSEQ];
	const int32_t *tables[NSEQ];
	int n = 0;

	for (int i = 0; i < NSEQ; i++)
		tables[i] = s[i].table;
	for (int w = 0; w < nw; w++) {
		struct seq_run *r = &s[which[w]];
		int from = prompt ? 0 : r->n - 1;
		for (int p = from; p < r->n; p++, n++) {
			tok[n] = r->tokens[p];
			pos[n] = p;
			seq[n] = which[w];
			slot[n] = r->table[p / BLOCK] * BLOCK + p % BLOCK;
		}
		out[w] = n - 1;
	}
	struct fwd_batch b = { n, tok, pos, seq, slot, tables, NSEQ, nw, out };
	return forward_run(f, &b, logits);
}

static void batch_matches_single(const char *dir, int threads)
{
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	struct model *m;
	struct backend *be;
	struct forward *f;
	struct backend_config bc = { .n_threads = threads };

	CHECK_MSG(model_load(dir, &lo, &m) == 0, "%s: %s", dir, err_msg());
	const struct model_desc *d = &m->desc;
	int vocab = d->vocab_size;
	CHECK(backend_create("cpu", &bc, &be) == 0);
	CHECK(be->ops->kv_create(be, d->num_layers, NSEQ * MAX_BLOCKS, BLOCK,
				 d->num_kv_heads * d->head_dim) == 0);
	CHECK(forward_new(m, be, BLOCK, 64, NSEQ, &f) == 0);
	float *ref = malloc(sizeof(float) * (size_t)NSEQ * STEPS * (size_t)vocab);
	float *got = malloc(sizeof(float) * (size_t)NSEQ * (size_t)vocab);
	struct seq_run s[NSEQ];

	/* 8 batch-1 decodes, one sequence after the other (prompts of 2..9
	 * tokens: some prefills take the packed kernel, some the tiles) */
	for (int i = 0; i < NSEQ; i++) {
		s[i].n = s[i].n_prompt = 2 + i;
		for (int b = 0; b < MAX_BLOCKS; b++)
			s[i].table[b] = i * MAX_BLOCKS + b;
		s[i].tokens[0] = 1;
		for (int k = 1; k < s[i].n; k++)
			s[i].tokens[k] = (k * 37 + i * 101 + 5) % vocab;
		CHECK(step(f, s, &i, 1, 1, got) == 0);
		for (int t = 0; t < STEPS; t++) {
			float *lg = ref + ((size_t)i * STEPS + (size_t)t) * (size_t)vocab;
			if (t)
				CHECK(step(f, s, &i, 1, 0, lg) == 0);
			else
				memcpy(lg, got, sizeof(float) * (size_t)vocab);
			s[i].tokens[s[i].n++] = argmax(lg, vocab);
		}
	}
	/* the same, all 8 in one batch per step, fed the tokens chosen above
	 * (the KV slots are rewritten with the batch's own values) */
	int all[NSEQ];
	for (int i = 0; i < NSEQ; i++) {
		all[i] = i;
		s[i].n = s[i].n_prompt;
	}
	CHECK(step(f, s, all, NSEQ, 1, got) == 0);
	for (int t = 0; t < STEPS; t++) {
		if (t)
			CHECK(step(f, s, all, NSEQ, 0, got) == 0);
		for (int i = 0; i < NSEQ; i++) {
			const float *a = ref + ((size_t)i * STEPS + (size_t)t) * (size_t)vocab;
			const float *g = got + (size_t)i * (size_t)vocab;
			double scale = 0, diff = 0;
			for (int v = 0; v < vocab; v++) {
				scale = fmax(scale, fabs(a[v]));
				diff = fmax(diff, fabs((double)a[v] - g[v]));
			}
			/* different summation orders in F32: 1e-4 of the largest logit */
			CHECK_MSG(diff <= 1e-4 * scale + 1e-6,
				  "%s (%s, %d threads): seq %d step %d: logits differ by %g (max %g)",
				  dir, be->simd, threads, i, t, diff, scale);
			CHECK_MSG(argmax(g, vocab) == s[i].tokens[s[i].n_prompt + t],
				  "%s (%s): seq %d step %d: token %d in the batch, %d alone", dir,
				  be->simd, i, t, argmax(g, vocab), s[i].tokens[s[i].n_prompt + t]);
			s[i].n++;
		}
	}
	free(ref);
	free(got);
	forward_free(f);
	be->ops->free(be);
	model_free(m);
}

TEST(batch8_decode_matches_batch1)
{
	static const char *const dirs[] = {
		"../shared/models/stories260K",	/* GQA, 172-wide MLP (tails) */
		"test/fixtures/tiny-models/qwen2-bias",
		"test/fixtures/tiny-models/qwen3-qknorm",
	};
	const char *name;

	FOR_EACH_TABLE(name)
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		batch_matches_single(dirs[i], 1);
		batch_matches_single(dirs[i], 2);
	}
	kernels_use(kernels_init());
}

int main(void)
{
	return RUN_TESTS();
}
