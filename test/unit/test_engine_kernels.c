/*
 * test_engine_kernels.c - the CPU backend's SIMD kernels against plain
 * double-precision loops: GEMM tiles for decode (few tokens) and prefill
 * (packed panels, many tokens) on shapes with remainder rows, tokens and
 * columns, with and without bias, into a larger leading dimension.
 */
#include "check.h"

#include "core/cpu/kernels.h"

#include <math.h>
#include <stdlib.h>

static float frand(unsigned *s)
{
	*s = *s * 1103515245u + 12345u;
	return (float)((*s >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* Max relative error of kern_gemm over rows [r0, r1) against doubles. */
static double gemm_err(int n, int rows, int cols, int r0, int r1, int with_bias)
{
	unsigned s = (unsigned)(n * 131 + rows * 7 + cols);
	int ldy = rows + 3;
	float *w = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
	float *x = malloc(sizeof(float) * (size_t)n * (size_t)cols);
	float *b = malloc(sizeof(float) * (size_t)rows);
	float *y = malloc(sizeof(float) * (size_t)n * (size_t)ldy);
	double worst = 0;

	for (long i = 0; i < (long)rows * cols; i++)
		w[i] = frand(&s);
	for (long i = 0; i < (long)n * cols; i++)
		x[i] = frand(&s);
	for (int i = 0; i < rows; i++)
		b[i] = frand(&s);
	for (long i = 0; i < (long)n * ldy; i++)
		y[i] = 12345.0f;
	kern_gemm(y, ldy, x, n, w, cols, r0, r1, with_bias ? b : NULL);
	for (int t = 0; t < n; t++)
		for (int r = 0; r < rows; r++) {
			float got = y[(size_t)t * (size_t)ldy + (size_t)r];
			if (r < r0 || r >= r1) {	/* untouched */
				if (got != 12345.0f)
					worst = INFINITY;
				continue;
			}
			double ref = with_bias ? b[r] : 0, mag = fabs(ref);
			for (int k = 0; k < cols; k++) {
				double p = (double)x[(size_t)t * (size_t)cols + (size_t)k] *
					   (double)w[(size_t)r * (size_t)cols + (size_t)k];
				ref += p;
				mag += fabs(p);
			}
			double e = fabs((double)got - ref) / (mag + 1e-30);
			if (e > worst)
				worst = e;
		}
	free(w);
	free(x);
	free(b);
	free(y);
	return worst;
}

TEST(gemm_matches_reference)
{
	kernels_init();
	/* n, rows, cols, r0, r1, bias */
	static const int cases[][6] = {
		{ 1, 64, 64, 0, 64, 0 },	/* decode GEMV */
		{ 1, 36, 72, 0, 36, 1 },	/* GEMV, 16-wide loop + 8 remainder */
		{ 4, 20, 40, 4, 20, 0 },	/* 4 x 3 tile + one 4 x 1 token */
		{ 3, 40, 72, 8, 40, 1 },	/* few tokens, 4 x 3 tiles */
		{ 7, 20, 13, 0, 20, 1 },	/* cols not a multiple of 8 */
		{ 12, 32, 64, 0, 32, 0 },	/* packed panels, just enough tokens */
		{ 29, 48, 576, 16, 48, 1 },	/* packed, two column blocks, remainder tokens */
		{ 50, 37, 1000, 0, 37, 1 },	/* packed + remainder rows, uneven blocks */
		{ 64, 16, 1536, 0, 16, 0 },	/* five column blocks */
		{ 13, 24, 30, 3, 21, 1 },	/* unaligned row range, odd cols */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const int *c = cases[i];
		double e = gemm_err(c[0], c[1], c[2], c[3], c[4], c[5]);
		/* F32 accumulation over up to 1536 terms: relative to the sum of
		 * magnitudes, well under 1e-5 */
		CHECK_MSG(e < 1e-5, "case %zu (n %d rows %d cols %d): relative error %g", i, c[0],
			  c[1], c[2], e);
	}
}

TEST(dot_and_axpy_match_reference)
{
	unsigned s = 7;
	float a[203], b[203], y[203], y0[203];

	kernels_init();
	for (int i = 0; i < 203; i++) {
		a[i] = frand(&s);
		b[i] = frand(&s);
		y[i] = y0[i] = frand(&s);
	}
	for (int n = 0; n <= 203; n += 29) {
		double ref = 0, mag = 0;
		for (int i = 0; i < n; i++) {
			ref += (double)a[i] * b[i];
			mag += fabs((double)a[i] * b[i]);
		}
		CHECK(fabs(kern_dot(a, b, n) - ref) <= 1e-6 * (mag + 1e-30) + 1e-12);
	}
	kern_axpy(y, 0.5f, a, 203);
	for (int i = 0; i < 203; i++)
		CHECK(fabsf(y[i] - (y0[i] + 0.5f * a[i])) < 1e-6f);
}

int main(void)
{
	return RUN_TESTS();
}
