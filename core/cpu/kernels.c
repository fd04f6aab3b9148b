/*
 * kernels.c - the portable kernels and the run-time choice of a table
 * (see kernels.h, kernels_impl.h).
 */
#include "core/cpu/kernels.h"
#include "core/cpu/kernels_impl.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* ---- portable ----------------------------------------------------------- */

static int portable_supported(void)
{
	return 1;
}

/* Element i of weights of dtype wt (F32, BF16, F16; a constant where it
 * is inlined), as F32. */
static inline __attribute__((always_inline)) float weight_at(const void *w, size_t i,
							     enum dtype wt)
{
	if (wt == DTYPE_BF16)
		return bf16_to_f32(((const uint16_t *)w)[i]);
	if (wt == DTYPE_F16)
		return f16_to_f32(((const uint16_t *)w)[i]);
	return ((const float *)w)[i];
}

/* sum_i a[i] * b[i], b of dtype bt: four partial sums (fewer dependent adds). */
static inline __attribute__((always_inline)) float dot_any(const float *a, const void *b, int n,
							   enum dtype bt)
{
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	int i = 0;

	for (; i + 4 <= n; i += 4) {
		s0 += a[i] * weight_at(b, (size_t)i, bt);
		s1 += a[i + 1] * weight_at(b, (size_t)i + 1, bt);
		s2 += a[i + 2] * weight_at(b, (size_t)i + 2, bt);
		s3 += a[i + 3] * weight_at(b, (size_t)i + 3, bt);
	}
	for (; i < n; i++)
		s0 += a[i] * weight_at(b, (size_t)i, bt);
	return (s0 + s1) + (s2 + s3);
}

static float dot_c(const float *a, const float *b, int n)
{
	return dot_any(a, b, n, DTYPE_F32);
}

static void axpy_c(float *y, float s, const float *x, int n)
{
	for (int i = 0; i < n; i++)
		y[i] += s * x[i];
}

/* Tokens in tiles small enough to stay in cache while the rows sweep. */
#define TOKEN_TILE 24

static inline __attribute__((always_inline)) void
gemm_any(float *y, int ldy, const float *x, int n, const void *w, enum dtype wt, int cols, int r0,
	 int r1, const float *bias)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols);

	for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
		int t1 = t0 + TOKEN_TILE < n ? t0 + TOKEN_TILE : n;
		for (int r = r0; r < r1; r++) {
			const void *wr = (const char *)w + (size_t)r * row_bytes;
			float b = bias ? bias[r] : 0.0f;
			for (int t = t0; t < t1; t++)
				y[(size_t)t * (size_t)ldy + (size_t)r] =
					dot_any(x + (size_t)t * (size_t)cols, wr, cols, wt) + b;
		}
	}
}

#define GEMM_OF(suffix, wt)                                                                 \
	static void gemm_##suffix##_c(float *y, int ldy, const void *x, int n, const void *w,  \
				      int cols, int r0, int r1, const float *bias)            \
	{                                                                                   \
		gemm_any(y, ldy, x, n, w, wt, cols, r0, r1, bias);                          \
	}
GEMM_OF(f32, DTYPE_F32)
GEMM_OF(bf16, DTYPE_BF16)
GEMM_OF(f16, DTYPE_F16)
#undef GEMM_OF

/* kern_act_quant (kernels.h); a block with a value that is not finite
 * gets d = NaN and q = 0, so its products are NaN as in F32. */
static void act_quant_c(void *xq, const float *x, int n, int cols)
{
	for (int t = 0; t < n; t++) {
		struct kern_act_row r = kern_act_row_at(xq, t, cols);
		int8_t *q = r.q;
		float *d = r.d;
		int32_t *sum = r.sum;
		const float *xr = x + (size_t)t * (size_t)cols;
		for (int b = 0; b < cols / 32; b++, q += 32, xr += 32) {
			float amax = 0;
			int bad = 0;
			for (int j = 0; j < 32; j++) {
				float a = fabsf(xr[j]);
				amax = a > amax ? a : amax;
				bad |= !(a <= FLT_MAX);
			}
			float id = kern_act_block_scale(amax, bad, &d[b]);
			sum[b] = 0;
			for (int j = 0; j < 32; j++) {
				q[j] = bad ? 0 : (int8_t)nearbyintf(xr[j] * id);
				sum[b] += q[j];
			}
		}
	}
}

/* Weight block b (Q8_0: int8; Q4_0: nibbles less 8; dtype.h) . the
 * activations' block q, exactly. */
static inline __attribute__((always_inline)) int32_t block_idot(const unsigned char *b,
								const int8_t *q, enum dtype wt)
{
	int32_t s = 0;

	for (int j = 0; j < 32; j++) {
		int w = wt == DTYPE_Q4_0 ? (j < 16 ? b[2 + j] & 0xf : b[2 + j - 16] >> 4) - 8
					 : (int8_t)b[2 + j];
		s += w * q[j];
	}
	return s;
}

/* Block b of row r of a panel type's matrix (dtype.h) into blk, as the
 * block type stores it. */
static void panel_block(unsigned char *blk, const unsigned char *w, enum dtype wt, int cols,
			int r, int b)
{
	size_t bb = kern_weight_bytes(wt, 32);
	const unsigned char *pb = w + (size_t)(r & ~7) * kern_weight_bytes(wt, (size_t)cols) +
				  (size_t)b * 8 * bb;

	memcpy(blk, pb + 2 * (size_t)(r & 7), 2);
	for (size_t j = 0; j < (bb - 2) / 4; j++)
		memcpy(blk + 2 + 4 * j, pb + 16 + 32 * j + 4 * (size_t)(r & 7), 4);
}

/* panels: w is of wt's panel type, rows in whole panels below r1 & ~7 */
static inline __attribute__((always_inline)) void
qgemm_any(float *y, int ldy, const void *xq, int n, const void *w, enum dtype wt, int panels,
	  int cols, int r0, int r1, const float *bias)
{
	size_t row_bytes = kern_weight_bytes(wt, (size_t)cols), bb = kern_weight_bytes(wt, 32);

	for (int t0 = 0; t0 < n; t0 += TOKEN_TILE) {
		int t1 = t0 + TOKEN_TILE < n ? t0 + TOKEN_TILE : n;
		for (int r = r0; r < r1; r++) {
			const unsigned char *wr = (const unsigned char *)w + (size_t)r * row_bytes;
			int in_panel = panels && r < (r1 & ~7);
			for (int t = t0; t < t1; t++) {
				const int8_t *q = (const int8_t *)xq + (size_t)t * kern_act_row_bytes(cols);
				const float *d = (const float *)(q + cols);
				float acc = 0;
				for (int b = 0; b < cols / 32; b++) {
					unsigned char pb[Q8_0_BLOCK_BYTES];
					const unsigned char *blk = wr + (size_t)b * bb;
					if (in_panel) {
						panel_block(pb, w, wt, cols, r, b);
						blk = pb;
					}
					float dw = f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
					acc += (float)block_idot(blk, q + 32 * b, wt) * (dw * d[b]);
				}
				y[(size_t)t * (size_t)ldy + (size_t)r] = acc + (bias ? bias[r] : 0.0f);
			}
		}
	}
}

#define QGEMM_C(sfx, wt, panels)                                                            \
	static void gemm_##sfx##_c(float *y, int ldy, const void *x, int n, const void *w,  \
				   int cols, int r0, int r1, const float *bias)             \
	{                                                                                   \
		qgemm_any(y, ldy, x, n, w, wt, panels, cols, r0, r1, bias);                 \
	}
QGEMM_C(q8_0, DTYPE_Q8_0, 0)
QGEMM_C(q4_0, DTYPE_Q4_0, 0)
QGEMM_C(q8_0_p8, DTYPE_Q8_0, 1)
QGEMM_C(q4_0_p8, DTYPE_Q4_0, 1)
#undef QGEMM_C

/* Attention halves over K/V rows of dtype kt (F32, BF16, F16), widened as
 * they are read. */
static inline __attribute__((always_inline)) void
qk_any(float *s, int lds, const float *q, int group, int hd, const void *const *k, int n,
       float scale, enum dtype kt)
{
	for (int g = 0; g < group; g++)
		for (int i = 0; i < n; i++)
			s[(size_t)g * (size_t)lds + (size_t)i] =
				dot_any(q + (size_t)g * (size_t)hd, k[i], hd, kt) * scale;
}

static inline __attribute__((always_inline)) void
pv_any(float *o, const float *p, int ldp, int group, int hd, const void *const *v, int n,
       enum dtype vt)
{
	for (int g = 0; g < group; g++) {
		float *og = o + (size_t)g * (size_t)hd;
		for (int d = 0; d < hd; d++)
			og[d] = 0;
		for (int i = 0; i < n; i++) {
			float pi = p[(size_t)g * (size_t)ldp + (size_t)i];
			for (int d = 0; d < hd; d++)
				og[d] += pi * weight_at(v[i], (size_t)d, vt);
		}
	}
}

static void qk_c(float *s, int lds, const float *q, int group, int hd, const void *const *k,
		 enum dtype kt, int n, float scale)
{
	if (kt == DTYPE_BF16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_BF16);
	else if (kt == DTYPE_F16)
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F16);
	else
		qk_any(s, lds, q, group, hd, k, n, scale, DTYPE_F32);
}

static void pv_c(float *o, const float *p, int ldp, int group, int hd, const void *const *v,
		 enum dtype vt, int n)
{
	if (vt == DTYPE_BF16)
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_BF16);
	else if (vt == DTYPE_F16)
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_F16);
	else
		pv_any(o, p, ldp, group, hd, v, n, DTYPE_F32);
}

const struct kern_impl kern_portable = {
	.name = "portable",
	.supported = portable_supported,
	.dot = dot_c,
	.axpy = axpy_c,
	.gemm = { [DTYPE_F32] = gemm_f32_c, [DTYPE_BF16] = gemm_bf16_c, [DTYPE_F16] = gemm_f16_c,
		  [DTYPE_Q8_0] = gemm_q8_0_c, [DTYPE_Q4_0] = gemm_q4_0_c,
		  [DTYPE_Q8_0_P8] = gemm_q8_0_p8_c, [DTYPE_Q4_0_P8] = gemm_q4_0_p8_c },
	.act_quant = act_quant_c,
	.qk = qk_c,
	.pv = pv_c,
};

/* ---- dispatch ----------------------------------------------------------- */

static const struct kern_impl *const tables[] = {
#if KERN_X86
	&kern_avx512,
	&kern_avx2,
#endif
	&kern_portable,
};

static const struct kern_impl *cur = &kern_portable;

const char *kernels_init(void)
{
	static int done;

	if (!done) {
		for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
			if (tables[i]->supported()) {
				cur = tables[i];
				break;
			}
		done = 1;
	}
	return cur->name;
}

const char *kernels_name(int i)
{
	if (i < 0 || (size_t)i >= sizeof(tables) / sizeof(tables[0]))
		return NULL;
	return tables[i]->name;
}

int kernels_use(const char *name)
{
	kernels_init();
	for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++)
		if (!strcmp(tables[i]->name, name)) {
			if (!tables[i]->supported())
				return -ENOTSUP;
			cur = tables[i];
			return 0;
		}
	return -ENOENT;
}

float kern_dot(const float *a, const float *b, int n)
{
	return cur->dot(a, b, n);
}

void kern_axpy(float *y, float s, const float *x, int n)
{
	cur->axpy(y, s, x, n);
}

void kern_gemm(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
	       int r1, const float *bias)
{
	cur->gemm[DTYPE_F32](y, ldy, x, n, w, cols, r0, r1, bias);
}

size_t kern_act_bytes(int n, int cols)
{
	return (size_t)n * kern_act_row_bytes(cols);
}

void kern_act_quant(void *xq, const float *x, int n, int cols)
{
	cur->act_quant(xq, x, n, cols);
}

kern_gemm_fn kern_gemm_for(enum dtype wt)
{
	if ((int)wt <= DTYPE_UNKNOWN || wt >= DTYPE_COUNT)
		return NULL;
	/* a dtype the chosen instruction set has no kernel for falls back
	 * to the portable one */
	return cur->gemm[wt] ? cur->gemm[wt] : kern_portable.gemm[wt];
}

int kern_kv_dtype_ok(enum dtype t)
{
	return t == DTYPE_F32 || t == DTYPE_BF16 || t == DTYPE_F16;
}

void kern_attend(float *out, const float *q, int group, int hd, const void *const *k,
		 const void *const *v, enum dtype kvt, int n, float scale, float *scores)
{
	cur->qk(scores, n, q, group, hd, k, kvt, n, scale);
	for (int g = 0; g < group; g++) {	/* softmax of each head's row */
		float *s = scores + (size_t)g * (size_t)n, mx = s[0], sum = 0;
		for (int i = 1; i < n; i++)
			mx = s[i] > mx ? s[i] : mx;
		for (int i = 0; i < n; i++) {
			s[i] = expf(s[i] - mx);
			sum += s[i];
		}
		float inv = 1.0f / sum;
		for (int i = 0; i < n; i++)
			s[i] *= inv;
	}
	cur->pv(out, scores, n, group, hd, v, kvt, n);
}
