/*
 * decoder.c - a decoder-only model as a sentence encoder (see decoder.h).
 *
 * Per layer, as transformers' modeling_qwen3 / llama without a KV cache:
 *   h = rmsnorm(x); q, k, v = h Wq (+b), h Wk (+b), h Wv (+b)
 *   Qwen3: q, k = per-head rmsnorm; q, k = rope(q), rope(k) (rotate-half)
 *   x += causal_attention(q, k, v) Wo (+b)
 *   x += (silu(rmsnorm(x) Wgate) * (rmsnorm(x) Wup)) Wdown
 * then the final rmsnorm.
 */
#include "core/embed/decoder.h"
#include "core/cpu/kernels.h"
#include "core/cpu/pool.h"
#include "core/engine/forward.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct decoder_enc {
	struct model *m;
	struct pool *pool;
	float *inv_freq;
};

int decoder_open(const char *dir, int threads, struct decoder_enc **out)
{
	struct decoder_enc *d = xcalloc(1, sizeof(*d));
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	int rc;

	*out = NULL;
	kernels_init();
	if ((rc = model_load(dir, &lo, &d->m)) < 0 ||
	    (rc = pool_new(threads < 1 ? 1 : threads, &d->pool)) < 0) {
		decoder_free(d);
		return rc;
	}
	d->inv_freq = xcalloc((size_t)d->m->desc.head_dim / 2 + 1, sizeof(float));
	forward_rope_inv_freq(&d->m->desc, d->inv_freq);
	*out = d;
	return 0;
}

void decoder_free(struct decoder_enc *d)
{
	if (!d)
		return;
	if (d->pool)
		pool_free(d->pool);
	model_free(d->m);
	free(d->inv_freq);
	free(d);
}

int decoder_dim(const struct decoder_enc *d) { return d->m->desc.hidden_size; }
int decoder_max_positions(const struct decoder_enc *d)
{
	return d->m->desc.max_position_embeddings;
}

#define ROWS_PER_TASK 128

struct lin_job {
	const struct model_tensor *w, *b;
	float *y;
	const float *x;
	int n;
};

static void lin_task(void *arg, int task, int thread)
{
	const struct lin_job *j = arg;
	int rows = (int)j->w->shape[0], r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;

	(void)thread;
	kern_gemm(j->y, rows, j->x, j->n, j->w->data, (int)j->w->shape[1], r0,
		  r1 < rows ? r1 : rows, j->b ? (const float *)j->b->data : NULL);
}

static void linear(struct decoder_enc *d, float *y, const float *x, int n,
		   const struct model_tensor *w, const struct model_tensor *b)
{
	struct lin_job j = { w, b && model_tensor_present(b) ? b : NULL, y, x, n };
	pool_run(d->pool, ((int)w->shape[0] + ROWS_PER_TASK - 1) / ROWS_PER_TASK, lin_task, &j);
}

/* y[r] = rmsnorm(x[r]) * w over rows of width len (y may be x) */
static void rmsnorm(float *y, const float *x, int rows, int len, const float *w, double eps)
{
	for (int r = 0; r < rows; r++) {
		const float *xr = x + (size_t)r * len;
		float *yr = y + (size_t)r * len;
		float ss = 0;
		for (int i = 0; i < len; i++)
			ss += xr[i] * xr[i];
		float inv = 1.0f / sqrtf(ss / (float)len + (float)eps);
		for (int i = 0; i < len; i++)
			yr[i] = w[i] * (xr[i] * inv);
	}
}

/* rotate-half RoPE of heads [hd] of each token at its position */
static void rope(float *x, int n, int heads, int hd, const int *pos, const float *inv_freq)
{
	int half = hd / 2;
	for (int t = 0; t < n; t++)
		for (int h = 0; h < heads; h++) {
			float *v = x + ((size_t)t * heads + h) * hd;
			for (int i = 0; i < half; i++) {
				float a = (float)pos[t] * inv_freq[i], c = cosf(a), s = sinf(a);
				float x0 = v[i], x1 = v[i + half];
				v[i] = x0 * c - x1 * s;
				v[i + half] = x1 * c + x0 * s;
			}
		}
}

struct att_job {
	const struct model_desc *md;
	const float *q, *k, *v;
	float *out;
	const int *start;
	int max_len;
	const void **ptrs;
	float *scores;
};

/* One (sequence, KV head): each token attends to itself and those before. */
static void att_task(void *arg, int task, int thread)
{
	const struct att_job *j = arg;
	const struct model_desc *md = j->md;
	int hd = md->head_dim, group = md->num_heads / md->num_kv_heads;
	int qd = md->num_heads * hd, kd = md->num_kv_heads * hd;
	int s = task / md->num_kv_heads, kvh = task % md->num_kv_heads;
	int s0 = j->start[s], len = j->start[s + 1] - s0;
	const void **kp = j->ptrs + (size_t)thread * 2 * j->max_len, **vp = kp + j->max_len;
	float *scores = j->scores + (size_t)thread * group * j->max_len;

	for (int i = 0; i < len; i++) {
		kp[i] = j->k + (size_t)(s0 + i) * kd + kvh * hd;
		vp[i] = j->v + (size_t)(s0 + i) * kd + kvh * hd;
	}
	for (int i = 0; i < len; i++) {
		size_t at = (size_t)(s0 + i) * qd + (size_t)kvh * group * hd;
		kern_attend(j->out + at, j->q + at, group, hd, kp, vp, DTYPE_F32, i + 1,
			    1.0f / sqrtf((float)hd), scores);
	}
}

int decoder_forward(struct decoder_enc *d, const int32_t *tokens, const int *start, int n_seqs,
		    float *x)
{
	const struct model_desc *md = &d->m->desc;
	const struct model_weights *w = &d->m->w;
	int n = start[n_seqs], h = md->hidden_size, max_len = 0, nt = pool_size(d->pool);
	int qd = md->num_heads * md->head_dim, kd = md->num_kv_heads * md->head_dim;
	double eps = md->rms_norm_eps;

	for (int s = 0; s < n_seqs; s++) {
		int len = start[s + 1] - start[s];
		if (len < 1 || len > md->max_position_embeddings)
			return err_set(-EINVAL, "decoder: a sequence of %d tokens (1 to %d)", len,
				       md->max_position_embeddings);
		if (len > max_len)
			max_len = len;
	}
	for (int t = 0; t < n; t++)
		if (tokens[t] < 0 || tokens[t] >= md->vocab_size)
			return err_set(-EINVAL, "decoder: token id %d outside the vocabulary (%d)",
				       tokens[t], md->vocab_size);
	int *pos = xmalloc((size_t)n * sizeof(int));
	float *hb = xmalloc((size_t)n * h * sizeof(float));
	float *q = xmalloc((size_t)n * qd * sizeof(float)), *att = xmalloc((size_t)n * qd * sizeof(float));
	float *k = xmalloc((size_t)n * kd * sizeof(float)), *v = xmalloc((size_t)n * kd * sizeof(float));
	float *gate = xmalloc((size_t)n * md->intermediate_size * sizeof(float));
	float *up = xmalloc((size_t)n * md->intermediate_size * sizeof(float));
	int group = md->num_heads / md->num_kv_heads;
	struct att_job aj = { md, q, k, v, att, start, max_len,
			      xmalloc((size_t)nt * 2 * max_len * sizeof(float *)),
			      xmalloc((size_t)nt * group * max_len * sizeof(float)) };

	for (int s = 0; s < n_seqs; s++)
		for (int t = start[s]; t < start[s + 1]; t++)
			pos[t] = t - start[s];
	for (int t = 0; t < n; t++)
		memcpy(x + (size_t)t * h, (const float *)w->embed.data + (size_t)tokens[t] * h,
		       (size_t)h * sizeof(float));
	for (int l = 0; l < md->num_layers; l++) {
		const struct model_layer *L = &w->layers[l];
		rmsnorm(hb, x, n, h, L->attn_norm.data, eps);
		linear(d, q, hb, n, &L->wq, md->qkv_bias ? &L->bq : NULL);
		linear(d, k, hb, n, &L->wk, md->qkv_bias ? &L->bk : NULL);
		linear(d, v, hb, n, &L->wv, md->qkv_bias ? &L->bv : NULL);
		if (md->qk_norm) {
			rmsnorm(q, q, n * md->num_heads, md->head_dim, L->q_norm.data, eps);
			rmsnorm(k, k, n * md->num_kv_heads, md->head_dim, L->k_norm.data, eps);
		}
		rope(q, n, md->num_heads, md->head_dim, pos, d->inv_freq);
		rope(k, n, md->num_kv_heads, md->head_dim, pos, d->inv_freq);
		pool_run(d->pool, n_seqs * md->num_kv_heads, att_task, &aj);
		linear(d, hb, att, n, &L->wo, md->o_bias ? &L->bo : NULL);
		for (size_t i = 0; i < (size_t)n * h; i++)
			x[i] += hb[i];
		rmsnorm(hb, x, n, h, L->ffn_norm.data, eps);
		linear(d, gate, hb, n, &L->w_gate, NULL);
		linear(d, up, hb, n, &L->w_up, NULL);
		for (size_t i = 0; i < (size_t)n * md->intermediate_size; i++)
			gate[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
		linear(d, hb, gate, n, &L->w_down, NULL);
		for (size_t i = 0; i < (size_t)n * h; i++)
			x[i] += hb[i];
	}
	rmsnorm(x, x, n, h, w->final_norm.data, eps);
	free(pos);
	free(hb);
	free(q);
	free(att);
	free(k);
	free(v);
	free(gate);
	free(up);
	free(aj.ptrs);
	free(aj.scores);
	return 0;
}
