/*
 * backend_cpu.c - the CPU backend ("cpu" in the registry): the ops of
 * core/engine/backend.h in F32 on host memory, spread over a thread pool
 * (pool.h) with SIMD kernels (kernels.h).
 *
 * Weight dtypes: a matrix of dtype t is multiplied by the kernel table's
 * GEMM for t (kern_gemm_for); the policy says yes to exactly the dtypes
 * with a GEMM (F32, BF16 and F16, and Q8_0 and Q4_0 for matrices the loader
 * quantized, and their panel types: repacked at load, MODEL_LOAD_PANELS),
 * so BF16/F16 checkpoints are computed with as they are mapped, never
 * widened into a copy.  For Q8_0 and Q4_0 a matmul
 * quantizes its input once (kern_act_quant, by token chunks over the
 * threads for prefill), for all its weights of those types.  Vectors (norms,
 * biases: a few KB per layer) of another weight dtype are widened as they
 * are used, into per-op scratch, and embedding rows as they are gathered;
 * so a new GEMM entry is all a new weight type needs.  The KV pool holds
 * F32, BF16 or F16 (backend_config.kv_dtype): kv_write rounds each K and V
 * element once as it stores it, and the attention kernels widen them as
 * they read them (kern_attend), so the pool's bytes are all that changes.
 *
 * Work split: matmul by blocks of output rows (each thread streams its own
 * rows of W once for the whole batch; projections of one input, q/k/v and
 * gate/up, are one job); attention by (token, KV head), each task serving
 * the query heads of its group from one read of K and V, on the calling
 * thread alone when the context is short; element-wise ops by row ranges.
 * Every fork-join costs microseconds, and a worker the OS preempts holds
 * the step up: a decode step has a handful per layer.
 *
 * Weights: prepare_weights moves the weight matrices into huge pages
 * (hugepages.h), which the decode GEMV streams ~25% faster.
 */
#include "core/engine/backend.h"
#include "core/cpu/hugepages.h"
#include "core/cpu/kernels.h"
#include "core/cpu/pool.h"
#include "core/err.h"
#include "core/log.h"
#include "core/platform.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* decode: a multiple of the kernels' 3- and 4-row tiles and of 8 (a task
 * starts and ends on a panel of the panel types, dtype.h) */
#define ROWS_PER_TASK 48

struct cpu_backend {
	struct backend base;
	struct pool *pool;
	/* paged KV pool */
	int n_layers, n_blocks, block_size, kv_dim;
	size_t kv_elem;			/* bytes of a base.kv_dtype element */
	char **k, **v;			/* [layer] -> n_blocks*block_size*kv_dim elements */
	/* backend_config's KV allocator; kv_ext: k and v came from it */
	void *(*kv_alloc)(void *arg, size_t bytes);
	void (*kv_free)(void *arg, void *p);
	void *kv_arg;
	int kv_ext;
	/* per-thread attention scratch (row pointers, scores), sized by
	 * begin() for the step's longest context; scratch_len in bytes */
	void **scratch;
	size_t scratch_len;
	int step_max_pos;		/* the step's highest position */
	/* vectors of a non-F32 weight widened for one op (WIDEN_SLOTS at once) */
	float *widen[5];
	size_t widen_len[5];
	/* a matmul's activations quantized for Q8_0 / Q4_0 weights */
	void *xq;
	size_t xq_len;
};

#define WIDEN_SLOTS 5

static struct cpu_backend *cpu(struct backend *b)
{
	return (struct cpu_backend *)b;
}

/* A weight vector as F32: its own data, or widened into slot. */
static const float *f32(struct cpu_backend *c, const struct model_tensor *t, int slot)
{
	if (!t || !model_tensor_present(t))
		return NULL;
	if (t->dtype == DTYPE_F32)
		return t->data;
	if (c->widen_len[slot] < t->numel) {
		c->widen[slot] = xrealloc(c->widen[slot], (size_t)t->numel * sizeof(float));
		c->widen_len[slot] = (size_t)t->numel;
	}
	dtype_to_f32(c->widen[slot], t->data, t->dtype, (size_t)t->numel);
	return c->widen[slot];
}

static int cpu_supports_weight_dtype(enum dtype t)
{
	return (dtype_is_weight(t) || dtype_is_quant(dtype_unpanel(t))) && kern_gemm_for(t) != NULL;
}

static float *cpu_alloc(struct backend *b, size_t n)
{
	(void)b;
	void *p = NULL;
	if (posix_memalign(&p, 64, (n ? n : 1) * sizeof(float)))
		return NULL;
	memset(p, 0, (n ? n : 1) * sizeof(float));
	return p;
}

static void cpu_release(struct backend *b, float *p)
{
	(void)b;
	free(p);
}

static int cpu_prepare_weights(struct backend *b, const struct model *m)
{
	uint64_t t0 = mono_ns();
	size_t huge = hugepages_weights(m);

	(void)b;
	LOG_DEBUG("cpu", "weights: %zu of %llu MB in huge pages (%.2f s)", huge >> 20,
		  (unsigned long long)(m->weight_bytes >> 20), (double)(mono_ns() - t0) / 1e9);
	return 0;
}

/* Free the K and V arrays made so far (NULL: none), leaving NULLs. */
static void kv_free_arrays(struct cpu_backend *c)
{
	for (int l = 0; l < c->n_layers && c->k; l++) {
		if (c->kv_ext) {
			if (c->k[l])
				c->kv_free(c->kv_arg, c->k[l]);
			if (c->v[l])
				c->kv_free(c->kv_arg, c->v[l]);
		} else {
			free(c->k[l]);
			free(c->v[l]);
		}
		c->k[l] = c->v[l] = NULL;
	}
}

static int cpu_kv_create(struct backend *b, int n_layers, int n_blocks, int block_size, int kv_dim)
{
	struct cpu_backend *c = cpu(b);
	size_t n = (size_t)n_blocks * (size_t)block_size * (size_t)kv_dim * c->kv_elem;

	c->n_layers = n_layers;
	c->n_blocks = n_blocks;
	c->block_size = block_size;
	c->kv_dim = kv_dim;
	c->k = xcalloc((size_t)n_layers, sizeof(char *));
	c->v = xcalloc((size_t)n_layers, sizeof(char *));
	/* All arrays from the configured allocator, or none. */
	c->kv_ext = c->kv_alloc != NULL;
	for (int l = 0; l < n_layers && c->kv_ext; l++) {
		c->k[l] = c->kv_alloc(c->kv_arg, n);
		c->v[l] = c->kv_alloc(c->kv_arg, n);
		if (!c->k[l] || !c->v[l]) {
			kv_free_arrays(c);
			c->kv_ext = 0;
		}
	}
	for (int l = 0; l < n_layers && !c->kv_ext; l++) {
		c->k[l] = (char *)cpu_alloc(b, (n + sizeof(float) - 1) / sizeof(float));
		c->v[l] = (char *)cpu_alloc(b, (n + sizeof(float) - 1) / sizeof(float));
		if (!c->k[l] || !c->v[l])
			return err_set(-ENOMEM, "KV cache: cannot allocate %zu MB",
				       2 * n * (size_t)n_layers >> 20);
	}
	return 0;
}

static void cpu_kv_layout(struct backend *b, struct kv_layout *out)
{
	struct cpu_backend *c = cpu(b);

	kv_layout_init(out, c->n_layers, c->n_blocks, c->block_size, c->kv_dim, b->kv_dtype,
		       c->kv_elem);
}

/* A block's rows are contiguous in each layer's K and V arrays: piece i
 * of its host image (layer i / 2, K when i is even, V when odd) is one run
 * of layer_bytes there. */
static size_t piece_bytes(const struct cpu_backend *c)
{
	return (size_t)c->block_size * (size_t)c->kv_dim * c->kv_elem;
}

static char *block_piece(const struct cpu_backend *c, int32_t block, int i)
{
	return (i % 2 ? c->v : c->k)[i / 2] + (size_t)block * piece_bytes(c);
}

static void cpu_kv_block_read(struct backend *b, int32_t block, void *host)
{
	struct cpu_backend *c = cpu(b);
	size_t len = piece_bytes(c);

	for (int i = 0; i < 2 * c->n_layers; i++)
		memcpy((char *)host + (size_t)i * len, block_piece(c, block, i), len);
}

static void cpu_kv_block_write(struct backend *b, int32_t block, const void *host)
{
	struct cpu_backend *c = cpu(b);
	size_t len = piece_bytes(c);

	for (int i = 0; i < 2 * c->n_layers; i++)
		memcpy(block_piece(c, block, i), (const char *)host + (size_t)i * len, len);
}

static int cpu_kv_block_segments(struct backend *b, int32_t block, struct iovec *iov, int cap)
{
	struct cpu_backend *c = cpu(b);

	for (int i = 0; i < 2 * c->n_layers && i < cap; i++)
		iov[i] = (struct iovec){ block_piece(c, block, i), piece_bytes(c) };
	return 2 * c->n_layers;
}

/* Each layer's K and V arrays, in host-image order. */
static int cpu_kv_regions(struct backend *b, struct iovec *regions, int cap)
{
	struct cpu_backend *c = cpu(b);

	for (int i = 0; i < 2 * c->n_layers && i < cap; i++)
		regions[i] = (struct iovec){ block_piece(c, 0, i),
					     (size_t)c->n_blocks * piece_bytes(c) };
	return 2 * c->n_layers;
}

/* Size every thread's attention scratch for the step's longest context
 * once, rather than in each layer's attention. */
static void cpu_begin(struct backend *b, const struct backend_step *st)
{
	struct cpu_backend *c = cpu(b);
	const struct attn_batch *ab = st->ab;
	int max_pos = 0, group = ab->n_heads / ab->n_kv_heads;

	for (int t = 0; t < ab->n_tokens; t++)
		if (ab->pos[t] > max_pos)
			max_pos = ab->pos[t];
	c->step_max_pos = max_pos;
	size_t ctx = (size_t)max_pos + 1;
	size_t need = ctx * 2 * sizeof(void *) + ctx * (size_t)group * sizeof(float);
	if (need > c->scratch_len) {
		for (int i = 0; i < b->n_threads; i++)
			c->scratch[i] = xrealloc(c->scratch[i], need);
		c->scratch_len = need;
	}
}

static void cpu_embed(struct backend *b, float *y, const struct model_tensor *emb,
		      const int32_t *ids, int n)
{
	size_t dim = (size_t)emb->shape[1], row = dtype_bytes(emb->dtype, dim);

	(void)b;
	for (int t = 0; t < n; t++)	/* rows widen to F32 (a copy for F32) */
		dtype_to_f32(y + (size_t)t * dim, (const char *)emb->data + (size_t)ids[t] * row,
			     emb->dtype, dim);
}

/*
 * Prefill (many tokens): tasks of 32 rows over all tokens (the kernels pack
 * them into 16-row panels and keeps each column block of the activations
 * in L2 for both panels); every weight is read once per matmul, and the
 * shapes' row counts (multiples of 32) split evenly over two threads.
 * Decode: tasks of ROWS_PER_TASK rows.  Projections of one input (q/k/v,
 * gate/up) are one job: one fork-join instead of three or two.
 */
#define PREFILL_ROWS_PER_TASK 32	/* a multiple of 8, as ROWS_PER_TASK */
#define PREFILL_MIN_TOKENS 12	/* kernels.c packs panels from 12 tokens */

/* One job: up to 4 weights of the same input, as one list of row tasks. */
#define MATMUL_MAX 4

struct matmul_part {
	float *y;
	kern_gemm_fn gemm;		/* for the weights' dtype */
	const void *x;			/* the job's x, or xq for a block type */
	const void *w;
	const float *bias;
	int rows, cols;
	int first_task;		/* tasks [first_task, next part's) are this part's */
};

struct matmul_job {
	const float *x;
	void *xq;
	int n, cols, rows_per_task, count;
	struct matmul_part part[MATMUL_MAX];
};

static void matmul_task(void *arg, int task, int thread)
{
	struct matmul_job *j = arg;
	int i = j->count - 1;

	(void)thread;
	while (i > 0 && task < j->part[i].first_task)
		i--;
	const struct matmul_part *p = &j->part[i];
	int r0 = (task - p->first_task) * j->rows_per_task, r1 = r0 + j->rows_per_task;
	if (r1 > p->rows)
		r1 = p->rows;
	p->gemm(p->y, p->rows, p->x, j->n, p->w, p->cols, r0, r1, p->bias);
}

/* Prefill: the activations quantized a chunk of tokens a task. */
#define QUANT_TOKENS 16

static void quant_task(void *arg, int task, int thread)
{
	struct matmul_job *j = arg;
	int t0 = task * QUANT_TOKENS, nt = j->n - t0 < QUANT_TOKENS ? j->n - t0 : QUANT_TOKENS;

	(void)thread;
	kern_act_quant((char *)j->xq + kern_act_bytes(t0, j->cols),
		       j->x + (size_t)t0 * (size_t)j->cols, nt, j->cols);
}

static void cpu_matmul_multi(struct backend *b, int count, float *const *y, const float *x, int n,
			     const struct model_tensor *const *w,
			     const struct model_tensor *const *bias)
{
	if (count > MATMUL_MAX) {	/* the interface allows 4; be safe */
		cpu_matmul_multi(b, MATMUL_MAX, y, x, n, w, bias);
		cpu_matmul_multi(b, count - MATMUL_MAX, y + MATMUL_MAX, x, n, w + MATMUL_MAX,
				 bias + MATMUL_MAX);
		return;
	}
	if (count <= 0)
		return;
	struct cpu_backend *c = cpu(b);
	struct matmul_job j = { x, NULL, n, (int)w[0]->shape[1],
				n >= PREFILL_MIN_TOKENS ? PREFILL_ROWS_PER_TASK : ROWS_PER_TASK,
				count, { { 0 } } };
	int tasks = 0;

	for (int i = 0; i < count; i++)	/* one input: its cols are the same */
		if (dtype_is_quant(dtype_unpanel(w[i]->dtype)) && !j.xq) {
			size_t need = kern_act_bytes(n, j.cols);
			if (need > c->xq_len) {
				c->xq = xrealloc(c->xq, need);
				c->xq_len = need;
			}
			j.xq = c->xq;
			if (n >= PREFILL_MIN_TOKENS)
				pool_run(c->pool, (n + QUANT_TOKENS - 1) / QUANT_TOKENS, quant_task,
					 &j);
			else
				kern_act_quant(j.xq, x, n, j.cols);
		}
	for (int i = 0; i < count; i++) {
		struct matmul_part *p = &j.part[i];
		p->y = y[i];
		p->gemm = kern_gemm_for(w[i]->dtype);	/* the engine checked the dtypes */
		p->x = dtype_is_quant(dtype_unpanel(w[i]->dtype)) ? j.xq : (const void *)x;
		p->w = w[i]->data;
		p->bias = f32(cpu(b), bias[i], i);
		p->rows = (int)w[i]->shape[0];
		p->cols = (int)w[i]->shape[1];
		p->first_task = tasks;
		tasks += (p->rows + j.rows_per_task - 1) / j.rows_per_task;
	}
	pool_run(cpu(b)->pool, tasks, matmul_task, &j);
}

static void cpu_matmul(struct backend *b, float *y, const float *x, int n,
		       const struct model_tensor *w, const struct model_tensor *bias)
{
	cpu_matmul_multi(b, 1, &y, x, n, &w, &bias);
}

static void cpu_rmsnorm(struct backend *b, float *y, const float *x, const struct model_tensor *w,
			int n_rows, int dim, float eps)
{
	const float *g = f32(cpu(b), w, WIDEN_SLOTS - 1);

	for (int r = 0; r < n_rows; r++) {
		const float *xr = x + (size_t)r * (size_t)dim;
		float *yr = y + (size_t)r * (size_t)dim;
		float ss = kern_dot(xr, xr, dim);
		float inv = 1.0f / sqrtf(ss / (float)dim + eps);
		for (int i = 0; i < dim; i++)
			yr[i] = g[i] * (xr[i] * inv);
	}
}

static void cpu_rope(struct backend *b, float *x, int n, int n_heads, int head_dim,
		     const int32_t *pos, const float *inv_freq)
{
	int half = head_dim / 2;
	float cs[512], sn[512];

	(void)b;
	for (int t = 0; t < n; t++) {
		for (int i = 0; i < half; i++) {
			float a = (float)pos[t] * inv_freq[i];
			cs[i] = cosf(a);
			sn[i] = sinf(a);
		}
		for (int h = 0; h < n_heads; h++) {
			float *v = x + ((size_t)t * (size_t)n_heads + (size_t)h) * (size_t)head_dim;
			for (int i = 0; i < half; i++) {
				float x0 = v[i], x1 = v[i + half];
				v[i] = x0 * cs[i] - x1 * sn[i];
				v[i + half] = x1 * cs[i] + x0 * sn[i];
			}
		}
	}
}

struct ew_job {
	float *y;
	const float *x;
	size_t n;
	int kind;	/* 0 add, 1 silu_mul */
};

#define EW_CHUNK 16384

static void ew_task(void *arg, int task, int thread)
{
	struct ew_job *j = arg;
	size_t i0 = (size_t)task * EW_CHUNK, i1 = i0 + EW_CHUNK < j->n ? i0 + EW_CHUNK : j->n;

	(void)thread;
	if (j->kind == 0) {
		for (size_t i = i0; i < i1; i++)
			j->y[i] += j->x[i];
	} else {
		for (size_t i = i0; i < i1; i++) {
			float g = j->y[i];
			j->y[i] = g / (1.0f + expf(-g)) * j->x[i];
		}
	}
}

static void ew_run(struct backend *b, float *y, const float *x, size_t n, int kind)
{
	struct ew_job j = { y, x, n, kind };
	pool_run(cpu(b)->pool, (int)((n + EW_CHUNK - 1) / EW_CHUNK), ew_task, &j);
}

static void cpu_silu_mul(struct backend *b, float *gate, const float *up, size_t n)
{
	ew_run(b, gate, up, n, 1);
}

static void cpu_add(struct backend *b, float *y, const float *x, size_t n)
{
	ew_run(b, y, x, n, 0);
}

#define F16_MAX 65504.0f

/* n F32 values as KV elements of dtype t, rounded to nearest even; F16
 * saturates at +-65504 (an outlier past its range becoming inf would turn
 * the softmax into NaN). */
static void kv_store(void *dst, const float *src, size_t n, enum dtype t)
{
	uint16_t *h = dst;

	if (t == DTYPE_BF16)
		for (size_t i = 0; i < n; i++)
			h[i] = f32_to_bf16(src[i]);
	else if (t == DTYPE_F16)
		for (size_t i = 0; i < n; i++)
			h[i] = f32_to_f16(fminf(fmaxf(src[i], -F16_MAX), F16_MAX));
	else
		memcpy(dst, src, n * sizeof(float));
}

static void cpu_kv_write(struct backend *b, int layer, const float *k, const float *v, int n,
			 const int32_t *slots)
{
	struct cpu_backend *c = cpu(b);
	size_t d = (size_t)c->kv_dim, row = d * c->kv_elem;

	for (int t = 0; t < n; t++) {
		kv_store(c->k[layer] + (size_t)slots[t] * row, k + (size_t)t * d, d, b->kv_dtype);
		kv_store(c->v[layer] + (size_t)slots[t] * row, v + (size_t)t * d, d, b->kv_dtype);
	}
}

struct attn_job {
	struct cpu_backend *c;
	int layer;
	float *out;
	const float *q;
	const struct attn_batch *ab;
};

/* One (token, kv head): softmax(q k^T) v for the query heads of the group,
 * which are contiguous in q and out (kern_attend reads each K and V row
 * once for all of them). */
static void attn_task(void *arg, int task, int thread)
{
	struct attn_job *j = arg;
	const struct attn_batch *ab = j->ab;
	struct cpu_backend *c = j->c;
	int t = task / ab->n_kv_heads, kvh = task % ab->n_kv_heads;
	int group = ab->n_heads / ab->n_kv_heads, hd = ab->head_dim, bs = ab->block_size;
	int pos = ab->pos[t], first = 0;
	const int32_t *table = ab->tables[ab->seq[t]];
	size_t row = (size_t)c->kv_dim * c->kv_elem, qd = (size_t)ab->n_heads * (size_t)hd;
	size_t off = (size_t)t * qd + (size_t)kvh * (size_t)group * (size_t)hd;
	const char *kl = c->k[j->layer] + (size_t)kvh * (size_t)hd * c->kv_elem;
	const char *vl = c->v[j->layer] + (size_t)kvh * (size_t)hd * c->kv_elem;

	if (ab->sliding_window > 0 && pos - ab->sliding_window + 1 > 0)
		first = pos - ab->sliding_window + 1;
	int n = pos + 1 - first;
	/* scratch: key rows, value rows, then the scores */
	const void **krow = c->scratch[thread], **vrow = krow + n;
	float *scores = (float *)(vrow + n);
	for (int p = first; p <= pos; p++) {
		size_t slot = (size_t)table[p / bs] * (size_t)bs + (size_t)(p % bs);
		krow[p - first] = kl + slot * row;
		vrow[p - first] = vl + slot * row;
	}
	kern_attend(j->out + off, j->q + off, group, hd, krow, vrow, c->base.kv_dtype, n, ab->scale,
		    scores);
}

#define ATTN_INLINE_FMAS (1 << 18)

static void cpu_attention(struct backend *b, int layer, float *out, const float *q,
			  const struct attn_batch *ab)
{
	struct cpu_backend *c = cpu(b);
	int max_pos = c->step_max_pos;	/* begin() sized the scratch for it */
	struct attn_job j = { c, layer, out, q, ab };
	int tasks = ab->n_tokens * ab->n_kv_heads;
	/* a short context's attention (tens of microseconds) costs less than
	 * the fork-join around it: the calling thread does it alone */
	if ((double)ab->n_tokens * ab->n_heads * (max_pos + 1) * ab->head_dim < ATTN_INLINE_FMAS) {
		for (int t = 0; t < tasks; t++)
			attn_task(&j, t, 0);
		return;
	}
	pool_run(c->pool, tasks, attn_task, &j);
}

static void cpu_copy_rows(struct backend *b, float *dst, const float *src, size_t width,
			  const int32_t *rows, int n)
{
	(void)b;
	for (int i = 0; i < n; i++)
		memcpy(dst + (size_t)i * width, src + (size_t)rows[i] * width, width * sizeof(float));
}

static void cpu_to_host(struct backend *b, float *dst, const float *src, size_t n)
{
	(void)b;
	memcpy(dst, src, n * sizeof(float));
}

static void cpu_free(struct backend *b)
{
	struct cpu_backend *c = cpu(b);

	if (!c)
		return;
	kv_free_arrays(c);
	free(c->k);
	free(c->v);
	for (int i = 0; i < b->n_threads; i++)
		free(c->scratch[i]);
	free(c->scratch);
	for (int i = 0; i < WIDEN_SLOTS; i++)
		free(c->widen[i]);
	free(c->xq);
	pool_free(c->pool);
	free(c);
}

static const struct backend_ops cpu_ops = {
	.name = "cpu",
	.free = cpu_free,
	.alloc = cpu_alloc,
	.release = cpu_release,
	.prepare_weights = cpu_prepare_weights,
	.kv_create = cpu_kv_create,
	.kv_layout = cpu_kv_layout,
	.kv_block_read = cpu_kv_block_read,
	.kv_block_write = cpu_kv_block_write,
	.kv_block_segments = cpu_kv_block_segments,
	.kv_regions = cpu_kv_regions,
	.begin = cpu_begin,
	.embed = cpu_embed,
	.matmul = cpu_matmul,
	.matmul_multi = cpu_matmul_multi,
	.rmsnorm = cpu_rmsnorm,
	.rope = cpu_rope,
	.silu_mul = cpu_silu_mul,
	.add = cpu_add,
	.kv_write = cpu_kv_write,
	.attention = cpu_attention,
	.copy_rows = cpu_copy_rows,
	.to_host = cpu_to_host,
};

static int cpu_create(const struct backend_config *cfg, struct backend **out)
{
	struct cpu_backend *c;
	int n_threads = cfg ? cfg->n_threads : 0;
	enum dtype kv_dtype = cfg && cfg->kv_dtype ? cfg->kv_dtype : DTYPE_F32;

	if (n_threads <= 0) {
		n_threads = platform_cores();
		if (n_threads <= 0)
			n_threads = 1;
	}
	if (!kern_kv_dtype_ok(kv_dtype))
		return err_set(-EINVAL, "the cpu backend keeps no KV cache of %s (f32, bf16 or f16)",
			       dtype_name(kv_dtype));
	c = xcalloc(1, sizeof(*c));
	c->base.ops = &cpu_ops;
	c->base.simd = kernels_init();
	c->base.kv_dtype = kv_dtype;
	c->kv_elem = dtype_size(kv_dtype);
	int rc = pool_new(n_threads, &c->pool);
	if (rc < 0) {
		free(c);
		return rc;
	}
	c->base.n_threads = n_threads;
	if (cfg && cfg->kv_alloc && cfg->kv_free) {
		c->kv_alloc = cfg->kv_alloc;
		c->kv_free = cfg->kv_free;
		c->kv_arg = cfg->kv_arg;
	}
	c->scratch = xcalloc((size_t)n_threads, sizeof(void *));
	LOG_DEBUG("cpu", "backend: %d threads, %s kernels", n_threads, c->base.simd);
	*out = &c->base;
	return 0;
}

const struct backend_type backend_cpu = {
	.name = "cpu",
	.create = cpu_create,
	.supports_weight_dtype = cpu_supports_weight_dtype,
};
