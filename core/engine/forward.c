/*
 * forward.c - one transformer step for a mixed batch (see forward.h).
 *
 * Per layer, as Hugging Face's modeling_llama / qwen2 / qwen3:
 *   h   = rmsnorm(x) ; q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
 *   Qwen3: q, k = per-head rmsnorm(q), rmsnorm(k)
 *   q, k = rope(q), rope(k) ; store k, v in the paged pool
 *   x  += attention(q, pool) Wo
 *   h   = rmsnorm(x) ; x += (silu(h Wgate) * (h Wup)) Wdown
 * then the final norm and lm_head for the rows that need logits.
 */
#include "core/engine/forward.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct forward {
	const struct model *m;
	struct backend *b;
	int block_size, max_tokens;
	int q_dim, kv_dim;
	float *inv_freq;		/* host, head_dim / 2 */
	/* activations [max_tokens, width] in backend memory */
	float *x, *h, *q, *k, *v, *att, *gate, *up;
	float *out_h, *logits;		/* [max_tokens, hidden], [max_tokens, vocab] */
};

void forward_rope_inv_freq(const struct model_desc *d, float *inv_freq)
{
	int half = d->head_dim / 2;
	const struct model_rope *r = &d->rope;

	for (int i = 0; i < half; i++) {
		/* transformers: 1 / base ** (arange(0, dim, 2).float() / dim), in F32 */
		float e = (float)(2 * i) / (float)d->head_dim;
		float f = 1.0f / powf((float)r->theta, e);
		if (r->type == MODEL_ROPE_LINEAR) {
			f = f / (float)r->factor;
		} else if (r->type == MODEL_ROPE_LLAMA3) {
			double old = r->original_max_position_embeddings;
			double low_wl = old / r->low_freq_factor, high_wl = old / r->high_freq_factor;
			double wl = 2 * M_PI / f;
			double g = wl > low_wl ? f / r->factor : f;
			if (!(wl < high_wl) && !(wl > low_wl)) {
				double s = (old / wl - r->low_freq_factor) /
					   (r->high_freq_factor - r->low_freq_factor);
				g = (1 - s) * g / r->factor + s * g;
			}
			f = (float)g;
		}
		inv_freq[i] = f;
	}
}

int forward_new(const struct model *m, struct backend *b, int block_size, int max_tokens,
		int max_out, struct forward **out)
{
	const struct model_desc *d = &m->desc;
	struct forward *f = xcalloc(1, sizeof(*f));
	size_t n = (size_t)max_tokens, n_out = (size_t)(max_out < max_tokens ? max_out : max_tokens);

	if (b->ops->prepare_weights) {
		int rc = b->ops->prepare_weights(b, m);
		if (rc < 0) {
			free(f);
			return rc;
		}
	}
	f->m = m;
	f->b = b;
	f->block_size = block_size;
	f->max_tokens = max_tokens;
	f->q_dim = d->num_heads * d->head_dim;
	f->kv_dim = d->num_kv_heads * d->head_dim;
	f->inv_freq = xcalloc((size_t)d->head_dim / 2 + 1, sizeof(float));
	forward_rope_inv_freq(d, f->inv_freq);
	float **bufs[] = { &f->x, &f->h, &f->q, &f->k, &f->v, &f->att, &f->gate, &f->up,
			   &f->out_h, &f->logits };
	size_t widths[] = { (size_t)d->hidden_size, (size_t)d->hidden_size, (size_t)f->q_dim,
			    (size_t)f->kv_dim, (size_t)f->kv_dim, (size_t)f->q_dim,
			    (size_t)d->intermediate_size, (size_t)d->intermediate_size,
			    (size_t)d->hidden_size, (size_t)d->vocab_size };
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++) {
		int out_rows = bufs[i] == &f->out_h || bufs[i] == &f->logits;
		*bufs[i] = b->ops->alloc(b, (out_rows ? n_out : n) * widths[i]);
		if (!*bufs[i]) {
			forward_free(f);
			return err_set(-ENOMEM, "forward: cannot allocate activations for %d tokens",
				       max_tokens);
		}
	}
	*out = f;
	return 0;
}

void forward_free(struct forward *f)
{
	if (!f)
		return;
	float *bufs[] = { f->x, f->h, f->q, f->k, f->v, f->att, f->gate, f->up, f->out_h,
			  f->logits };
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++)
		if (bufs[i])
			f->b->ops->release(f->b, bufs[i]);
	free(f->inv_freq);
	free(f);
}

/* Projections of one input: one backend call when it can take them all. */
static void project(struct forward *f, int count, float *const *y, const float *x, int n,
		    const struct model_tensor *const *w, const struct model_tensor *const *bias)
{
	const struct backend_ops *o = f->b->ops;

	if (o->matmul_multi) {
		o->matmul_multi(f->b, count, y, x, n, w, bias);
		return;
	}
	for (int i = 0; i < count; i++)
		o->matmul(f->b, y[i], x, n, w[i], bias[i]);
}

static void attention_block(struct forward *f, const struct model_layer *L, int layer,
			    const struct fwd_batch *bt, const struct attn_batch *ab)
{
	const struct model_desc *d = &f->m->desc;
	const struct backend_ops *o = f->b->ops;
	struct backend *b = f->b;
	int n = bt->n;
	float eps = (float)d->rms_norm_eps;

	o->rmsnorm(b, f->h, f->x, &L->attn_norm, n, d->hidden_size, eps);
	float *qkv[3] = { f->q, f->k, f->v };
	const struct model_tensor *w[3] = { &L->wq, &L->wk, &L->wv };
	const struct model_tensor *bias[3] = { d->qkv_bias ? &L->bq : NULL,
					       d->qkv_bias ? &L->bk : NULL,
					       d->qkv_bias ? &L->bv : NULL };
	project(f, 3, qkv, f->h, n, w, bias);
	if (d->qk_norm) {
		o->rmsnorm(b, f->q, f->q, &L->q_norm, n * d->num_heads, d->head_dim, eps);
		o->rmsnorm(b, f->k, f->k, &L->k_norm, n * d->num_kv_heads, d->head_dim, eps);
	}
	o->rope(b, f->q, n, d->num_heads, d->head_dim, bt->pos, f->inv_freq);
	o->rope(b, f->k, n, d->num_kv_heads, d->head_dim, bt->pos, f->inv_freq);
	o->kv_write(b, layer, f->k, f->v, n, bt->slot);
	o->attention(b, layer, f->att, f->q, ab);
	o->matmul(b, f->h, f->att, n, &L->wo, d->o_bias ? &L->bo : NULL);
	o->add(b, f->x, f->h, (size_t)n * (size_t)d->hidden_size);
}

static void mlp_block(struct forward *f, const struct model_layer *L, int n)
{
	const struct model_desc *d = &f->m->desc;
	const struct backend_ops *o = f->b->ops;
	struct backend *b = f->b;

	o->rmsnorm(b, f->h, f->x, &L->ffn_norm, n, d->hidden_size, (float)d->rms_norm_eps);
	float *gate_up[2] = { f->gate, f->up };
	const struct model_tensor *w[2] = { &L->w_gate, &L->w_up }, *bias[2] = { NULL, NULL };
	project(f, 2, gate_up, f->h, n, w, bias);
	o->silu_mul(b, f->gate, f->up, (size_t)n * (size_t)d->intermediate_size);
	o->matmul(b, f->h, f->gate, n, &L->w_down, NULL);
	o->add(b, f->x, f->h, (size_t)n * (size_t)d->hidden_size);
}

int forward_run(struct forward *f, const struct fwd_batch *bt, float *logits)
{
	const struct model_desc *d = &f->m->desc;
	const struct model_weights *w = &f->m->w;
	const struct backend_ops *o = f->b->ops;
	struct backend *b = f->b;
	size_t hidden = (size_t)d->hidden_size;

	if (bt->n <= 0 || bt->n > f->max_tokens)
		return err_set(-EINVAL, "forward: batch of %d tokens (limit %d)", bt->n,
			       f->max_tokens);
	for (int t = 0; t < bt->n; t++)
		if (bt->tokens[t] < 0 || bt->tokens[t] >= d->vocab_size)
			return err_set(-EINVAL, "forward: token id %d outside the vocabulary (%d)",
				       bt->tokens[t], d->vocab_size);
	struct attn_batch ab = {
		.n_tokens = bt->n,
		.pos = bt->pos,
		.seq = bt->seq,
		.tables = bt->tables,
		.block_size = f->block_size,
		.n_heads = d->num_heads,
		.n_kv_heads = d->num_kv_heads,
		.head_dim = d->head_dim,
		.sliding_window = d->sliding_window,
		.scale = 1.0f / sqrtf((float)d->head_dim),
	};

	if (o->begin) {
		struct backend_step st = { bt->n, bt->tokens, bt->slot, &ab, bt->n_seqs };
		o->begin(b, &st);
	}
	o->embed(b, f->x, &w->embed, bt->tokens, bt->n);
	for (int l = 0; l < d->num_layers; l++) {
		attention_block(f, &w->layers[l], l, bt, &ab);
		mlp_block(f, &w->layers[l], bt->n);
	}
	if (bt->n_out <= 0)
		return 0;
	/* gather the rows that need logits, then norm + lm_head on those only */
	o->copy_rows(b, f->out_h, f->x, hidden, bt->out_idx, bt->n_out);
	o->rmsnorm(b, f->out_h, f->out_h, &w->final_norm, bt->n_out, d->hidden_size,
		   (float)d->rms_norm_eps);
	o->matmul(b, f->logits, f->out_h, bt->n_out, &w->lm_head, NULL);
	o->to_host(b, logits, f->logits, (size_t)bt->n_out * (size_t)d->vocab_size);
	return 0;
}
