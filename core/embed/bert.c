/*
 * bert.c - the BERT forward pass (see bert.h).
 *
 *   x = LayerNorm(word[id] + position[p] + token_type[0])
 *   per layer:
 *     q, k, v = x Wq + bq, x Wk + bk, x Wv + bv
 *     a = softmax(q k^T / sqrt(head_dim)) v     (per head, within the sequence)
 *     x = LayerNorm(x + a Wo + bo)
 *     x = LayerNorm(x + gelu(x Wi + bi) Wo2 + bo2)
 */
#include "core/embed/bert.h"
#include "core/cpu/kernels.h"
#include "core/cpu/pool.h"
#include "core/err.h"
#include "core/model/safetensors.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct linear {
	const void *w;		/* [rows, cols] */
	const float *bias;	/* [rows] */
	int rows, cols;
	kern_gemm_fn gemm;
};

struct norm {
	const float *w, *b;
};

struct bert_layer {
	struct linear q, k, v, o, up, down;
	struct norm att_norm, out_norm;
};

struct bert {
	struct bert_config c;
	struct st_set *st;
	const float *word, *pos, *type;
	struct norm emb_norm;
	struct bert_layer *l;
	struct pool *pool;
};

/* ---- loading -------------------------------------------------------------- */

static int cfg_int(const cJSON *j, const char *key, int def, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
	if (!v) {
		if (def < 0)
			return err_set(-EINVAL, "config.json: missing \"%s\"", key);
		*out = def;
		return 0;
	}
	if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1 << 20 ||
	    v->valuedouble != (int)v->valuedouble)
		return err_set(-EINVAL, "config.json: \"%s\" must be a positive integer", key);
	*out = (int)v->valuedouble;
	return 0;
}

cJSON *bert_read_json(const char *dir, const char *name)
{
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	cJSON *j = NULL;

	sb_addf(&path, "%s/%s", dir, name);
	if (sb_read_file(&text, path.buf, 16u << 20) == 0)
		j = cJSON_ParseWithLength(text.buf, text.len);
	sb_release(&path);
	sb_release(&text);
	return j;
}

int bert_is_bert(const char *dir)
{
	cJSON *j = bert_read_json(dir, "config.json");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "model_type");
	int yes = cJSON_IsString(t) && !strcmp(t->valuestring, "bert");
	cJSON_Delete(j);
	return yes;
}

static int parse_config(const char *dir, struct bert_config *c)
{
	cJSON *j = bert_read_json(dir, "config.json");
	const cJSON *v;
	int rc;

	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return err_set(-EINVAL, "%s/config.json: missing or not a JSON object", dir);
	}
	if ((rc = cfg_int(j, "hidden_size", -1, &c->hidden)) < 0 ||
	    (rc = cfg_int(j, "num_hidden_layers", -1, &c->layers)) < 0 ||
	    (rc = cfg_int(j, "num_attention_heads", -1, &c->heads)) < 0 ||
	    (rc = cfg_int(j, "intermediate_size", -1, &c->intermediate)) < 0 ||
	    (rc = cfg_int(j, "max_position_embeddings", 512, &c->max_positions)) < 0 ||
	    (rc = cfg_int(j, "type_vocab_size", 2, &c->type_vocab)) < 0 ||
	    (rc = cfg_int(j, "vocab_size", -1, &c->vocab)) < 0)
		goto out;
	c->eps = 1e-12;
	v = cJSON_GetObjectItemCaseSensitive(j, "layer_norm_eps");
	if (cJSON_IsNumber(v))
		c->eps = v->valuedouble;
	v = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
	if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "gelu"))) {
		rc = err_set(-EINVAL, "config.json: hidden_act \"%s\" is not supported (only gelu)",
			     cJSON_IsString(v) ? v->valuestring : "?");
		goto out;
	}
	v = cJSON_GetObjectItemCaseSensitive(j, "position_embedding_type");
	if (v && (!cJSON_IsString(v) || strcmp(v->valuestring, "absolute"))) {
		rc = err_set(-EINVAL, "config.json: position_embedding_type \"%s\" is not supported "
			     "(only absolute)", cJSON_IsString(v) ? v->valuestring : "?");
		goto out;
	}
	if (c->hidden % c->heads)
		rc = err_set(-EINVAL, "config.json: hidden_size %d is not a multiple of "
			     "num_attention_heads %d", c->hidden, c->heads);
out:
	cJSON_Delete(j);
	return rc;
}

/* A tensor of the given shape ("bert." prefix optional, as some
 * checkpoints name them); F32 unless any_dtype. */
static int tensor(struct bert *b, const char *name, uint64_t d0, uint64_t d1, int any_dtype,
		  const struct st_tensor **out)
{
	char full[160];
	const struct st_tensor *t = st_set_find(b->st, name);

	if (!t) {
		snprintf(full, sizeof(full), "bert.%s", name);
		t = st_set_find(b->st, full);
	}
	if (!t)
		return err_set(-EINVAL, "weights: tensor %s is missing", name);
	if (t->ndim != (d1 ? 2 : 1) || t->shape[0] != d0 || (d1 && t->shape[1] != d1))
		return err_set(-EINVAL, "weights: %s has the wrong shape (expected [%llu%s%llu])",
			       name, (unsigned long long)d0, d1 ? ", " : "",
			       (unsigned long long)d1);
	if (!any_dtype && t->dtype != DTYPE_F32)
		return err_set(-EINVAL, "weights: %s is %s (only F32 supported for it)", name,
			       dtype_name(t->dtype));
	*out = t;
	return 0;
}

static int load_f32(struct bert *b, const char *name, uint64_t d0, uint64_t d1,
		    const float **out)
{
	const struct st_tensor *t;
	int rc = tensor(b, name, d0, d1, 0, &t);
	if (rc == 0)
		*out = t->data;
	return rc;
}

static int load_linear(struct bert *b, const char *prefix, int rows, int cols, struct linear *l)
{
	char name[160];
	const struct st_tensor *t;
	int rc;

	snprintf(name, sizeof(name), "%s.weight", prefix);
	if ((rc = tensor(b, name, (uint64_t)rows, (uint64_t)cols, 1, &t)) < 0)
		return rc;
	l->gemm = kern_gemm_for(t->dtype);
	if (!l->gemm)
		return err_set(-EINVAL, "weights: %s is %s, which has no CPU kernel", name,
			       dtype_name(t->dtype));
	l->w = t->data;
	l->rows = rows;
	l->cols = cols;
	snprintf(name, sizeof(name), "%s.bias", prefix);
	return load_f32(b, name, (uint64_t)rows, 0, &l->bias);
}

static int load_norm(struct bert *b, const char *prefix, struct norm *n)
{
	char name[160];
	int rc;

	snprintf(name, sizeof(name), "%s.weight", prefix);
	if ((rc = load_f32(b, name, (uint64_t)b->c.hidden, 0, &n->w)) < 0)
		return rc;
	snprintf(name, sizeof(name), "%s.bias", prefix);
	return load_f32(b, name, (uint64_t)b->c.hidden, 0, &n->b);
}

static int load_weights(struct bert *b)
{
	const struct bert_config *c = &b->c;
	uint64_t h = (uint64_t)c->hidden;
	char p[128];
	int rc;

	if ((rc = load_f32(b, "embeddings.word_embeddings.weight", (uint64_t)c->vocab, h,
			   &b->word)) < 0 ||
	    (rc = load_f32(b, "embeddings.position_embeddings.weight",
			   (uint64_t)c->max_positions, h, &b->pos)) < 0 ||
	    (rc = load_f32(b, "embeddings.token_type_embeddings.weight",
			   (uint64_t)c->type_vocab, h, &b->type)) < 0 ||
	    (rc = load_norm(b, "embeddings.LayerNorm", &b->emb_norm)) < 0)
		return rc;
	b->l = xcalloc((size_t)c->layers, sizeof(*b->l));
	for (int i = 0; i < c->layers; i++) {
		struct bert_layer *L = &b->l[i];
#define LIN(field, name, rows, cols) \
		(snprintf(p, sizeof(p), "encoder.layer.%d.%s", i, name), \
		 load_linear(b, p, rows, cols, &L->field))
#define NORM(field, name) \
		(snprintf(p, sizeof(p), "encoder.layer.%d.%s", i, name), load_norm(b, p, &L->field))
		if ((rc = LIN(q, "attention.self.query", c->hidden, c->hidden)) < 0 ||
		    (rc = LIN(k, "attention.self.key", c->hidden, c->hidden)) < 0 ||
		    (rc = LIN(v, "attention.self.value", c->hidden, c->hidden)) < 0 ||
		    (rc = LIN(o, "attention.output.dense", c->hidden, c->hidden)) < 0 ||
		    (rc = NORM(att_norm, "attention.output.LayerNorm")) < 0 ||
		    (rc = LIN(up, "intermediate.dense", c->intermediate, c->hidden)) < 0 ||
		    (rc = LIN(down, "output.dense", c->hidden, c->intermediate)) < 0 ||
		    (rc = NORM(out_norm, "output.LayerNorm")) < 0)
			return rc;
#undef LIN
#undef NORM
	}
	return 0;
}

int bert_open(const char *dir, int threads, struct bert **out)
{
	struct bert *b = xcalloc(1, sizeof(*b));
	int rc;

	*out = NULL;
	kernels_init();
	if ((rc = parse_config(dir, &b->c)) < 0 ||
	    (rc = st_set_open(dir, ST_MAP, &b->st)) < 0 ||
	    (rc = load_weights(b)) < 0 ||
	    (rc = pool_new(threads < 1 ? 1 : threads, &b->pool)) < 0) {
		err_wrap(rc, "%s", dir);
		bert_free(b);
		return rc;
	}
	*out = b;
	return 0;
}

void bert_free(struct bert *b)
{
	if (!b)
		return;
	if (b->pool)
		pool_free(b->pool);
	if (b->st)
		st_set_close(b->st);
	free(b->l);
	free(b);
}

const struct bert_config *bert_config(const struct bert *b)
{
	return &b->c;
}

/* ---- the forward pass ------------------------------------------------------- */

#define ROWS_PER_TASK 128

struct lin_job {
	const struct linear *l;
	float *y;
	const float *x;
	int n;
};

static void lin_task(void *arg, int task, int thread)
{
	const struct lin_job *j = arg;
	int r0 = task * ROWS_PER_TASK, r1 = r0 + ROWS_PER_TASK;

	(void)thread;
	if (r1 > j->l->rows)
		r1 = j->l->rows;
	j->l->gemm(j->y, j->l->rows, j->x, j->n, j->l->w, j->l->cols, r0, r1, j->l->bias);
}

/* y[n, rows] = x[n, cols] W^T + bias */
static void linear(struct bert *b, float *y, const float *x, int n, const struct linear *l)
{
	struct lin_job j = { l, y, x, n };
	pool_run(b->pool, (l->rows + ROWS_PER_TASK - 1) / ROWS_PER_TASK, lin_task, &j);
}

/* Row-wise steps (LayerNorm, GELU) run on the pool too, TOKENS_PER_TASK
 * rows a task: serial, they would take a fifth of the time. */
#define TOKENS_PER_TASK 16

struct rows_job {
	float *x;
	const float *r;		/* add_norm: the residual, or NULL */
	const struct norm *nm;
	double eps;
	int n, width;
};

/* x[t] = LayerNorm(x[t] + r[t]) over rows [t0, t1) */
static void add_norm_rows(const struct rows_job *j, int t0, int t1)
{
	float *x = j->x;
	const float *r = j->r;
	const struct norm *nm = j->nm;
	int h = j->width;

	for (int t = t0; t < t1; t++) {
		float *row = x + (size_t)t * h;
		double mean = 0, var = 0;
		if (r)
			for (int i = 0; i < h; i++)
				row[i] += r[(size_t)t * h + i];
		for (int i = 0; i < h; i++)
			mean += row[i];
		mean /= h;
		for (int i = 0; i < h; i++)
			var += (row[i] - mean) * (row[i] - mean);
		float inv = (float)(1.0 / sqrt(var / h + j->eps));
		for (int i = 0; i < h; i++)
			row[i] = (float)(row[i] - mean) * inv * nm->w[i] + nm->b[i];
	}
}

static float gelu(float x)
{
	return 0.5f * x * (1.0f + erff(x * (float)M_SQRT1_2));
}

static void rows_task(void *arg, int task, int thread)
{
	const struct rows_job *j = arg;
	int t0 = task * TOKENS_PER_TASK, t1 = t0 + TOKENS_PER_TASK;

	(void)thread;
	if (t1 > j->n)
		t1 = j->n;
	if (j->nm) {
		add_norm_rows(j, t0, t1);
		return;
	}
	for (size_t i = (size_t)t0 * j->width; i < (size_t)t1 * j->width; i++)
		j->x[i] = gelu(j->x[i]);
}

static void add_norm(struct bert *b, float *x, const float *r, int n, const struct norm *nm)
{
	struct rows_job j = { x, r, nm, b->c.eps, n, b->c.hidden };
	pool_run(b->pool, (n + TOKENS_PER_TASK - 1) / TOKENS_PER_TASK, rows_task, &j);
}

static void gelu_rows(struct bert *b, float *x, int n)
{
	struct rows_job j = { x, NULL, NULL, 0, n, b->c.intermediate };
	pool_run(b->pool, (n + TOKENS_PER_TASK - 1) / TOKENS_PER_TASK, rows_task, &j);
}

struct att_job {
	const struct bert_config *c;
	const float *q, *k, *v;
	float *out;
	const int *start;
	int max_len;
	const void **ptrs;	/* per thread: 2 * max_len pointers */
	float *scores;		/* per thread: max_len floats */
};

/* One (sequence, head): every token of the sequence attends to all of it. */
static void att_task(void *arg, int task, int thread)
{
	const struct att_job *j = arg;
	int h = j->c->hidden, hd = h / j->c->heads;
	int s = task / j->c->heads, head = task % j->c->heads;
	int s0 = j->start[s], len = j->start[s + 1] - s0;
	const void **kp = j->ptrs + (size_t)thread * 2 * j->max_len, **vp = kp + j->max_len;
	float *scores = j->scores + (size_t)thread * j->max_len;
	float scale = 1.0f / sqrtf((float)hd);

	for (int i = 0; i < len; i++) {
		kp[i] = j->k + (size_t)(s0 + i) * h + head * hd;
		vp[i] = j->v + (size_t)(s0 + i) * h + head * hd;
	}
	for (int t = s0; t < s0 + len; t++) {
		size_t at = (size_t)t * h + head * hd;
		kern_attend(j->out + at, j->q + at, 1, hd, kp, vp, DTYPE_F32, len, scale, scores);
	}
}

int bert_forward(struct bert *b, const int32_t *tokens, const int *start, int n_seqs,
		 float *x)
{
	const struct bert_config *c = &b->c;
	int n = start[n_seqs], h = c->hidden, max_len = 0;

	for (int s = 0; s < n_seqs; s++) {
		int len = start[s + 1] - start[s];
		if (len < 1 || len > c->max_positions)
			return err_set(-EINVAL, "encoder: a sequence of %d tokens (1 to %d)", len,
				       c->max_positions);
		if (len > max_len)
			max_len = len;
	}
	for (int t = 0; t < n; t++)
		if (tokens[t] < 0 || tokens[t] >= c->vocab)
			return err_set(-EINVAL, "encoder: token id %d outside the vocabulary (%d)",
				       tokens[t], c->vocab);
	size_t nh = (size_t)n * h;
	float *q = xmalloc(nh * sizeof(float)), *k = xmalloc(nh * sizeof(float));
	float *v = xmalloc(nh * sizeof(float)), *att = xmalloc(nh * sizeof(float));
	float *up = xmalloc((size_t)n * c->intermediate * sizeof(float));
	int nt = pool_size(b->pool);
	struct att_job aj = {
		c, q, k, v, att, start, max_len,
		xmalloc((size_t)nt * 2 * max_len * sizeof(float *)),
		xmalloc((size_t)nt * max_len * sizeof(float)),
	};

	for (int s = 0; s < n_seqs; s++)
		for (int t = start[s]; t < start[s + 1]; t++) {
			const float *we = b->word + (size_t)tokens[t] * h;
			const float *pe = b->pos + (size_t)(t - start[s]) * h;
			for (int i = 0; i < h; i++)
				x[(size_t)t * h + i] = we[i] + pe[i] + b->type[i];
		}
	add_norm(b, x, NULL, n, &b->emb_norm);
	for (int l = 0; l < c->layers; l++) {
		const struct bert_layer *L = &b->l[l];
		linear(b, q, x, n, &L->q);
		linear(b, k, x, n, &L->k);
		linear(b, v, x, n, &L->v);
		pool_run(b->pool, n_seqs * c->heads, att_task, &aj);
		linear(b, q, att, n, &L->o);
		add_norm(b, x, q, n, &L->att_norm);
		linear(b, up, x, n, &L->up);
		gelu_rows(b, up, n);
		linear(b, q, up, n, &L->down);
		add_norm(b, x, q, n, &L->out_norm);
	}
	free(q);
	free(k);
	free(v);
	free(att);
	free(up);
	free(aj.ptrs);
	free(aj.scores);
	return 0;
}
