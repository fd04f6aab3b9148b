/*
 * test_cuda.c - what of the CUDA backend a machine without a GPU can check:
 * the fatbin embedded in the binary, the attention kernel's work plan, and
 * a C emulation of that kernel (gpu/kernels.cu, attend: key tiles of
 * ATTN_TILE, one warp per query row, online softmax) against the CPU
 * backend's attention on random inputs.
 */
#include "check.h"
#include "gpu/attn_plan.h"
#include "gpu/backend_cuda.h"
#include "gpu/fatbin.h"
#include "core/engine/backend.h"
#include "core/err.h"
#include "core/model/dtype.h"

#include <math.h>
#include <stdint.h>

TEST(fatbin_holds_sm80_and_sm90_cubins)
{
	int sm[8], found80 = 0, found90 = 0;

	if (!*cuda_fatbin_archs)
		CHECK_SKIP("the kernels are not built in (no nvcc at build time, or CUDA=0)");
	CHECK_STR(cuda_fatbin_archs, "sm_80 sm_90");
	int n = cuda_fatbin_cubins(cuda_fatbin, cuda_fatbin_size, sm, 8);
	CHECK_INT(n, 2);
	for (int i = 0; i < n; i++) {
		found80 |= sm[i] == 80;
		found90 |= sm[i] == 90;
	}
	CHECK(found80 && found90);
	/* independently of the fatbin headers: the ELF images inside say
	 * their arch in e_flags bits 8..15 */
	found80 = found90 = 0;
	for (size_t i = 0; i + 52 <= cuda_fatbin_size; i++) {
		const unsigned char *p = cuda_fatbin + i;
		if (memcmp(p, "\177ELF", 4))
			continue;
		uint32_t flags = p[48] | p[49] << 8 | (uint32_t)p[50] << 16 | (uint32_t)p[51] << 24;
		found80 |= (flags >> 8 & 0xff) == 80;
		found90 |= (flags >> 8 & 0xff) == 90;
	}
	CHECK_MSG(found80 && found90, "no sm_80 / sm_90 ELF cubin in the blob");
}

TEST(fatbin_reader_refuses_what_is_no_fatbin)
{
	unsigned char junk[64] = "not a fatbin";
	int sm[2];

	CHECK_INT(cuda_fatbin_cubins(junk, sizeof(junk), sm, 2), -1);
	CHECK_INT(cuda_fatbin_cubins(junk, 3, sm, 2), -1);
	/* a header whose size runs past the blob */
	unsigned char hdr[32] = { 0x50, 0xed, 0x55, 0xba, 1, 0, 16, 0, 0xff, 0xff };
	CHECK_INT(cuda_fatbin_cubins(hdr, sizeof(hdr), sm, 2), -1);
	if (*cuda_fatbin_archs)	/* truncated: the entries no longer fit */
		CHECK_INT(cuda_fatbin_cubins(cuda_fatbin, cuda_fatbin_size / 2, sm, 2), -1);
}

TEST(cuda_backend_without_a_gpu_says_why)
{
	struct backend *b = NULL;
	struct backend_config bc = { .n_threads = 1 };

	/* this test runs where no GPU is usable (a GPU machine runs the
	 * gpu_*.py tests instead) */
	if (backend_cuda.available() == 0)
		CHECK_SKIP("a GPU is usable here");
	CHECK(backend_create("cuda", &bc, &b) < 0 && !b);
	CHECK_MSG(strstr(err_msg(), "libcuda.so.1") || strstr(err_msg(), "cuInit") ||
		  strstr(err_msg(), "no CUDA device") || strstr(err_msg(), "not built in"),
		  "%s", err_msg());
	CHECK(backend_cuda.supports_weight_dtype(DTYPE_BF16) &&
	      backend_cuda.supports_weight_dtype(DTYPE_F16) &&
	      !backend_cuda.supports_weight_dtype(DTYPE_Q8_0));
}

/* ---- the attention kernel, emulated ---- */

static uint64_t rng = 88172645463325252ull;

static float frand(void)	/* [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)(rng >> 40) / (float)(1 << 23) - 1.0f;
}

struct case_shape {
	int n_heads, n_kv_heads, hd, bs, window;
	enum dtype kv;
};

/* The device pool as kv_write stores it: rows of kv_dim at slot. */
static float pool_get(const void *pool, enum dtype t, size_t i)
{
	if (t == DTYPE_F16)
		return f16_to_f32(((const uint16_t *)pool)[i]);
	if (t == DTYPE_BF16)
		return bf16_to_f32(((const uint16_t *)pool)[i]);
	return ((const float *)pool)[i];
}

/*
 * attend for one item, as the kernel does it: warp w is row w (token
 * first_token + w / group, head kv_head * group + w % group), lane j
 * scores key k0 + j of the tile; per tile m_new = max(m, tile max),
 * alpha = exp(m - m_new), l = l alpha + sum of p, acc = acc alpha + sum
 * of p v.
 */
static void emulate_item(float *out, const float *q, const void *kp, const void *vp,
			 enum dtype kt, const struct attn_item *it, const int32_t *pos,
			 const int32_t *tables, int stride, const struct case_shape *c, float scale)
{
	int group = c->n_heads / c->n_kv_heads, rows = it->n_tokens * group, hd = c->hd;
	int kv_dim = c->n_kv_heads * hd, last = pos[it->first_token + it->n_tokens - 1];
	int p0 = pos[it->first_token];
	int first = c->window > 0 && p0 - c->window + 1 > 0 ? p0 - c->window + 1 : 0;
	const int32_t *table = tables + (size_t)it->seq * stride;

	for (int w = 0; w < rows; w++) {
		int t = it->first_token + w / group, h = it->kv_head * group + w % group;
		int my_pos = pos[t];
		int my_lo = c->window > 0 && my_pos - c->window + 1 > 0 ? my_pos - c->window + 1 : 0;
		const float *qr = q + ((size_t)t * c->n_heads + h) * hd;
		float m = -INFINITY, l = 0, acc[256] = { 0 };
		for (int k0 = first - first % ATTN_TILE; k0 <= last; k0 += ATTN_TILE) {
			float s[ATTN_TILE], v[ATTN_TILE][256], mt = -INFINITY;
			for (int j = 0; j < ATTN_TILE; j++) {
				int p = k0 + j;
				size_t slot = p <= last ? (size_t)table[p / c->bs] * c->bs + p % c->bs : 0;
				size_t off = slot * kv_dim + (size_t)it->kv_head * hd;
				s[j] = -INFINITY;
				for (int d = 0; d < hd; d++)
					v[j][d] = p <= last ? pool_get(vp, kt, off + d) : 0;
				if (p < my_lo || p > my_pos)
					continue;
				s[j] = 0;
				for (int d = 0; d < hd; d++)
					s[j] += qr[d] * scale * pool_get(kp, kt, off + d);
				mt = fmaxf(mt, s[j]);
			}
			float m_new = fmaxf(m, mt);
			if (m_new == -INFINITY)
				continue;
			float alpha = expf(m - m_new), sum = 0, e[ATTN_TILE];
			for (int j = 0; j < ATTN_TILE; j++)
				sum += e[j] = expf(s[j] - m_new);
			l = l * alpha + sum;
			m = m_new;
			for (int d = 0; d < hd; d++) {
				float a = acc[d] * alpha;
				for (int j = 0; j < ATTN_TILE; j++)
					a += e[j] * v[j][d];
				acc[d] = a;
			}
		}
		float *o = out + ((size_t)t * c->n_heads + h) * hd;
		for (int d = 0; d < hd; d++)
			o[d] = l > 0 ? acc[d] / l : 0;
	}
}

/*
 * A step of n_seqs sequences: sequence s has ctx[s] tokens cached and
 * new_tokens[s] new ones (decode: 1).  K/V of every position go into a CPU
 * backend (through its kv_write) and into the emulated device pool (same
 * rows); attention of the new tokens from both must agree.
 */
static int run_case(const struct case_shape *c, int n_seqs, const int *ctx, const int *new_tokens,
		    double *max_err)
{
	int kv_dim = c->n_kv_heads * c->hd, qd = c->n_heads * c->hd, n_blocks = 0, n = 0;
	int max_len = 0;
	for (int s = 0; s < n_seqs; s++) {
		int len = ctx[s] + new_tokens[s];
		n_blocks += (len + c->bs - 1) / c->bs;
		n += new_tokens[s];
		max_len = len > max_len ? len : max_len;
	}
	struct backend *b;
	struct backend_config bc = { .n_threads = 1, .kv_dtype = c->kv };
	if (backend_create("cpu", &bc, &b) < 0 || b->ops->kv_create(b, 1, n_blocks, c->bs, kv_dim) < 0)
		return -1;
	/* block tables: blocks handed out in a shuffled order */
	int32_t *order = calloc((size_t)n_blocks, sizeof(int32_t));
	for (int i = 0; i < n_blocks; i++)
		order[i] = i;
	for (int i = n_blocks - 1; i > 0; i--) {
		int j = (int)((frand() + 1) * 0.5f * (float)(i + 1)) % (i + 1);
		int32_t x = order[i];
		order[i] = order[j];
		order[j] = x;
	}
	int32_t **tables = calloc((size_t)n_seqs, sizeof(*tables));
	for (int s = 0, next = 0; s < n_seqs; s++) {
		int nb = (ctx[s] + new_tokens[s] + c->bs - 1) / c->bs;
		tables[s] = order + next;
		next += nb;
	}
	/* every position's K and V (the cached ones, then the step's) */
	size_t rows = (size_t)n_blocks * c->bs;
	float *k = calloc(rows * kv_dim, sizeof(float)), *v = calloc(rows * kv_dim, sizeof(float));
	int32_t *slots = calloc(rows, sizeof(int32_t));
	int n_rows = 0;
	for (int s = 0; s < n_seqs; s++)
		for (int p = 0; p < ctx[s] + new_tokens[s]; p++, n_rows++) {
			slots[n_rows] = tables[s][p / c->bs] * c->bs + p % c->bs;
			for (int d = 0; d < kv_dim; d++) {
				k[(size_t)n_rows * kv_dim + d] = 2 * frand();
				v[(size_t)n_rows * kv_dim + d] = frand();
			}
		}
	b->ops->kv_write(b, 0, k, v, n_rows, slots);
	/* the device pool: the CPU pool's block images are the same rows */
	struct kv_layout lay;
	b->ops->kv_layout(b, &lay);
	char *img = malloc(lay.block_bytes);
	char *kp = malloc(rows * kv_dim * lay.elem_bytes), *vp = malloc(rows * kv_dim * lay.elem_bytes);
	for (int blk = 0; blk < n_blocks; blk++) {
		b->ops->kv_block_read(b, blk, img);
		memcpy(kp + blk * lay.layer_bytes, img, lay.layer_bytes);
		memcpy(vp + blk * lay.layer_bytes, img + lay.layer_bytes, lay.layer_bytes);
	}
	/* the step: the new tokens of each sequence, in order */
	int32_t *pos = calloc((size_t)n, sizeof(int32_t)), *seq = calloc((size_t)n, sizeof(int32_t));
	for (int s = 0, t = 0; s < n_seqs; s++)
		for (int i = 0; i < new_tokens[s]; i++, t++) {
			pos[t] = ctx[s] + i;
			seq[t] = s;
		}
	float *q = calloc((size_t)n * qd, sizeof(float));
	float *want = calloc((size_t)n * qd, sizeof(float)), *got = calloc((size_t)n * qd, sizeof(float));
	for (int i = 0; i < n * qd; i++)
		q[i] = frand();
	struct attn_batch ab = { n, pos, seq, (const int32_t *const *)tables, c->bs, c->n_heads,
				 c->n_kv_heads, c->hd, c->window, 1.0f / sqrtf((float)c->hd) };
	struct backend_step st = { n, seq, slots, &ab, n_seqs };
	b->ops->begin(b, &st);
	b->ops->attention(b, 0, want, q, &ab);

	struct attn_item *items = calloc((size_t)n * c->n_kv_heads, sizeof(*items));
	int n_items = attn_plan(&ab, items);
	int stride = attn_table_width(&ab) + 3;		/* wider than needed, as decode's */
	int32_t *flat = calloc((size_t)n_seqs * stride, sizeof(int32_t));
	attn_flatten_tables(&ab, n_seqs, stride, flat);
	for (int i = 0; i < n_items; i++)
		emulate_item(got, q, kp, vp, c->kv, &items[i], pos, flat, stride, c, ab.scale);
	*max_err = 0;
	for (int i = 0; i < n * qd; i++) {
		double e = fabs((double)got[i] - want[i]);
		*max_err = e > *max_err || isnan(got[i]) ? (isnan(got[i]) ? INFINITY : e) : *max_err;
	}
	free(items); free(flat); free(q); free(want); free(got); free(pos); free(seq);
	free(img); free(kp); free(vp); free(k); free(v); free(slots); free(tables); free(order);
	b->ops->free(b);
	(void)max_len;
	return 0;
}

static const struct case_shape shapes[] = {
	{ 4, 4, 32, 16, 0, DTYPE_F32 },		/* MHA */
	{ 16, 8, 128, 16, 0, DTYPE_F16 },	/* Qwen3-0.6B's attention */
	{ 32, 8, 128, 16, 0, DTYPE_BF16 },	/* Llama 8B's */
	{ 8, 1, 64, 4, 0, DTYPE_F32 },		/* group 8, small blocks */
	{ 32, 1, 32, 16, 0, DTYPE_F32 },	/* group past ATTN_ROWS */
	{ 4, 2, 64, 8, 21, DTYPE_F32 },		/* sliding window */
	{ 8, 4, 8, 16, 0, DTYPE_F32 },		/* stories260K's: head_dim 8 */
};

TEST(tiled_prefill_attention_matches_the_cpu_backend)
{
	/* prompts (no cache), chunked prefill (cached + new), long and short,
	 * several sequences in one step */
	const int ctx[] = { 0, 37, 0, 100 }, fresh[] = { 45, 19, 1, 70 };

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		double err;
		CHECK(run_case(&shapes[i], 4, ctx, fresh, &err) == 0);
		CHECK_MSG(err < 1e-4, "shape %zu: max error %g", i, err);
	}
}

TEST(paged_decode_attention_matches_the_cpu_backend)
{
	const int ctx[] = { 0, 31, 32, 33, 200, 7, 64, 129 }, one[] = { 1, 1, 1, 1, 1, 1, 1, 1 };

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		double err;
		CHECK(run_case(&shapes[i], 8, ctx, one, &err) == 0);
		CHECK_MSG(err < 1e-4, "shape %zu: max error %g", i, err);
	}
}

TEST(attention_plan_covers_each_token_and_kv_head_once)
{
	int32_t pos[40], seq[40];
	const int32_t t0[] = { 0, 1, 2, 3, 4, 5 }, *tables[] = { t0, t0, t0 };
	for (int group = 1; group <= 32; group *= 2) {
		/* three sequences: 20 prompt tokens, 1 decode token, 19 tokens */
		for (int t = 0; t < 40; t++) {
			seq[t] = t < 20 ? 0 : t == 20 ? 1 : 2;
			pos[t] = t < 20 ? t : t == 20 ? 50 : t - 21 + 3;
		}
		struct attn_batch ab = { 40, pos, seq, tables, 16, 2 * group, 2, 32, 0, 1 };
		struct attn_item items[80];
		int hits[40][2] = { { 0 } };
		int n = attn_plan(&ab, items);
		for (int i = 0; i < n; i++) {
			const struct attn_item *it = &items[i];
			CHECK(it->n_tokens >= 1);
			CHECK(it->n_tokens * group <= ATTN_ROWS || it->n_tokens == 1);
			for (int t = it->first_token; t < it->first_token + it->n_tokens; t++) {
				CHECK(seq[t] == it->seq);
				hits[t][it->kv_head]++;
			}
		}
		for (int t = 0; t < 40; t++)
			CHECK(hits[t][0] == 1 && hits[t][1] == 1);
		CHECK_INT(attn_table_width(&ab), 50 / 16 + 1);
	}
}

int main(void)
{
	return RUN_TESTS();
}
