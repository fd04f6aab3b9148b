/*
 * backend_cuda.c - the ops of core/engine/backend.h on an NVIDIA GPU (see
 * backend_cuda.h).
 *
 * Everything runs on one stream in order; only to_host, the KV block
 * copies and free wait for it.  Weights are uploaded once by
 * prepare_weights, found again by their host address.  The host arrays an
 * op is given (token ids, positions, slots, block tables) are the step's,
 * uploaded by begin() through pinned staging memory.
 *
 * CUDA graphs: a decode step (one token per sequence) of n tokens is
 * recorded once per (n, block-table stride) as a graph from embed to the
 * last layer, and replayed afterwards: its ops then do nothing until
 * copy_rows launches the graph.  The tail (copy_rows, final norm, lm_head,
 * to_host) runs eagerly since its row count varies.  What the graph reads
 * lies at fixed device addresses (step inputs, scratch); growing one of
 * them drops the graphs.
 *
 * A failing CUDA call inside an op (the ops cannot return errors: a lost
 * device, a kernel fault) is reported and aborts the process.
 */
#include "gpu/backend_cuda.h"
#include "gpu/attn_plan.h"
#include "gpu/cuda_api.h"
#include "gpu/fatbin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kernel { K_EMBED, K_NARROW, K_ADD_BIAS, K_RMSNORM, K_ROPE, K_SILU_MUL, K_ADD, K_KV_WRITE,
	      K_COPY_ROWS, K_ATTEND, K_COUNT };
static const char *const kernel_names[K_COUNT] = {
	"embed", "narrow", "add_bias", "rmsnorm", "rope", "silu_mul", "add", "kv_write",
	"copy_rows", "attend",
};

/* kernels.cu's DT_* */
enum { DT_F32, DT_F16, DT_BF16 };

#define MAX_GRAPHS 64
#define MAX_GRAPH_TOKENS 256
#define BLAS_WORKSPACE (32u << 20)

struct weight {
	const void *host;
	CUdeviceptr dev;
};

struct graph {
	int n, stride;
	CUgraphExec exec;
	unsigned long long used;	/* step count at last use */
};

/* A device buffer that grows (its address then changes). */
struct dbuf {
	CUdeviceptr p;
	size_t bytes;
};

enum mode { EAGER, CAPTURE, REPLAY };

struct cuda_backend {
	struct backend base;
	const struct cuda_api *cu;
	CUdevice dev;
	CUcontext ctx;
	CUmodule mod;
	CUstream s;
	cublasHandle_t blas;
	CUfunction k[K_COUNT];
	CUdeviceptr blas_ws;
	size_t budget, used;		/* bytes for weights and KV; taken so far */

	struct weight *w;		/* sorted by host */
	int n_w, max_cols;
	const float *inv_freq_host;	/* rope's table, uploaded once */
	CUdeviceptr inv_freq;

	CUdeviceptr *kp, *vp;		/* per layer */
	size_t kv_bytes;		/* of c->used */
	int n_layers, n_blocks, block_size, kv_dim;
	size_t kv_elem;

	/* the step's inputs: host pointers begin() was given, device copies */
	const int32_t *h_tokens, *h_pos, *h_slots;
	struct dbuf d_in, xh, rows;	/* tokens|pos|slots|items|tables; GEMM input; copy_rows */
	int32_t *stage;			/* pinned, stage_bytes */
	size_t stage_bytes;
	CUdeviceptr d_tokens, d_pos, d_slots, d_items, d_tables;
	int n_items, att_rows, stride;

	enum mode mode;
	int cur;			/* graph being captured or replayed */
	struct graph graphs[MAX_GRAPHS];
	unsigned long long steps;
	char gpu_name[96];		/* base.simd: the engine's startup line */
};

static struct cuda_backend *cb(struct backend *b)
{
	return (struct cuda_backend *)b;
}

static double mem_util = 0.9;
static int use_graphs = 1;

void cuda_backend_set_memory_utilization(double fraction)
{
	mem_util = fraction;
}

void cuda_backend_set_graphs(int on)
{
	use_graphs = on;
}

static void check(CUresult rc, const char *what)
{
	if (rc) {
		LOG_ERROR("cuda", "%s failed: %s", what, cuda_error(rc));
		abort();
	}
}

static void check_blas(cublasStatus_t rc, const char *what)
{
	if (rc) {
		LOG_ERROR("cuda", "%s failed: cuBLAS status %d", what, rc);
		abort();
	}
}

static int dtype_code(enum dtype t)
{
	return t == DTYPE_BF16 ? DT_BF16 : t == DTYPE_F16 ? DT_F16 : DT_F32;
}

static CUdeviceptr dptr(const void *p)
{
	return (CUdeviceptr)(uintptr_t)p;
}

static void launch(struct cuda_backend *c, enum kernel k, unsigned grid, unsigned block,
		   unsigned shared, void **args)
{
	check(c->cu->cuLaunchKernel(c->k[k], grid, 1, 1, block, 1, 1, shared, c->s, args, NULL),
	      kernel_names[k]);
}

/* Blocks for a grid-stride kernel over n elements. */
static unsigned blocks(size_t n)
{
	size_t g = (n + 255) / 256;
	return g < 1 ? 1 : g > 8192 ? 8192 : (unsigned)g;
}

static void ctx(struct cuda_backend *c)
{
	check(c->cu->cuCtxSetCurrent(c->ctx), "cuCtxSetCurrent");
}

static void drop_graphs(struct cuda_backend *c)
{
	for (int i = 0; i < MAX_GRAPHS; i++)
		if (c->graphs[i].exec) {
			c->cu->cuGraphExecDestroy(c->graphs[i].exec);
			c->graphs[i] = (struct graph){ 0 };
		}
}

/* Grow b to bytes (contents lost); 1 when its address changed. */
static int dbuf_reserve(struct cuda_backend *c, struct dbuf *b, size_t bytes)
{
	if (bytes <= b->bytes)
		return 0;
	bytes = bytes * 3 / 2 + 4096;
	if (b->p)
		check(c->cu->cuMemFree(b->p), "cuMemFree");
	check(c->cu->cuMemAlloc(&b->p, bytes), "cuMemAlloc (step buffers)");
	b->bytes = bytes;
	drop_graphs(c);
	return 1;
}

/* End a recording or replay in flight: its work is launched. */
static void finish_graph(struct cuda_backend *c)
{
	const struct cuda_api *cu = c->cu;
	struct graph *g = &c->graphs[c->cur];

	if (c->mode == CAPTURE) {
		CUgraph graph;
		check(cu->cuStreamEndCapture(c->s, &graph), "cuStreamEndCapture");
		check(cu->cuGraphInstantiate(&g->exec, graph, 0), "cuGraphInstantiate");
		cu->cuGraphDestroy(graph);
	}
	if (c->mode != EAGER)
		check(cu->cuGraphLaunch(g->exec, c->s), "cuGraphLaunch");
	c->mode = EAGER;
}

static void sync(struct cuda_backend *c)
{
	finish_graph(c);
	check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
}

/* ---- memory ---- */

static float *cuda_alloc(struct backend *b, size_t n_floats)
{
	struct cuda_backend *c = cb(b);
	CUdeviceptr p;

	ctx(c);
	if (c->cu->cuMemAlloc(&p, n_floats * sizeof(float) + 16))
		return NULL;
	check(c->cu->cuMemsetD8Async(p, 0, n_floats * sizeof(float), c->s), "cuMemsetD8Async");
	check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
	return (float *)(uintptr_t)p;
}

static void cuda_release(struct backend *b, float *p)
{
	struct cuda_backend *c = cb(b);

	if (!p)
		return;
	ctx(c);
	sync(c);
	c->cu->cuMemFree(dptr(p));
}

static int weight_cmp(const void *a, const void *b)
{
	const struct weight *x = a, *y = b;
	return (uintptr_t)x->host < (uintptr_t)y->host ? -1 : (uintptr_t)x->host > (uintptr_t)y->host;
}

static CUdeviceptr weight(struct cuda_backend *c, const struct model_tensor *t)
{
	struct weight key = { t->data, 0 };
	struct weight *w = bsearch(&key, c->w, (size_t)c->n_w, sizeof(*w), weight_cmp);

	if (!w) {
		LOG_ERROR("cuda", "tensor %s was not uploaded by prepare_weights", t->name);
		abort();
	}
	return w->dev;
}

/* model_for_each_tensor's visitor: count (dev == 0 pass) or upload each
 * distinct tensor once (tied weights share their data). */
struct upload {
	struct cuda_backend *c;
	int copy;
	uint64_t bytes;
	CUresult rc;
};

static int upload_tensor(void *arg, const struct model_tensor *t)
{
	struct upload *u = arg;
	struct cuda_backend *c = u->c;
	CUdeviceptr p = 0;

	if (!t->data)
		return 0;
	for (int i = 0; i < c->n_w; i++)
		if (c->w[i].host == t->data)
			return 0;
	if (t->ndim == 2 && t->shape[1] > c->max_cols)
		c->max_cols = (int)t->shape[1];
	u->bytes += t->nbytes;
	if (u->copy && ((u->rc = c->cu->cuMemAlloc(&p, t->nbytes)) ||
			(u->rc = c->cu->cuMemcpyHtoD(p, t->data, t->nbytes)))) {
		if (p)
			c->cu->cuMemFree(p);
		return 1;
	}
	c->w = xrealloc(c->w, (size_t)(c->n_w + 1) * sizeof(*c->w));
	c->w[c->n_w++] = (struct weight){ t->data, p };
	return 0;
}

static void free_weights(struct cuda_backend *c)
{
	for (int i = 0; i < c->n_w; i++)
		if (c->w[i].dev)
			c->cu->cuMemFree(c->w[i].dev);
	free(c->w);
	c->w = NULL;
	c->n_w = 0;
}

static int cuda_prepare_weights(struct backend *b, const struct model *m)
{
	struct cuda_backend *c = cb(b);
	const struct model_desc *d = &m->desc;
	struct upload u = { c, 0, 0, 0 };

	if (d->head_dim > 256 || d->num_heads % d->num_kv_heads ||
	    d->num_heads / d->num_kv_heads > 32)
		return err_set(-ENOTSUP, "the cuda backend attends over head_dim up to 256 and at "
				       "most 32 query heads per KV head (this model: head_dim %d, "
				       "%d/%d heads)", d->head_dim, d->num_heads, d->num_kv_heads);
	ctx(c);
	model_for_each_tensor(m, upload_tensor, &u);	/* count */
	free_weights(c);
	if (u.bytes > c->budget)
		return err_set(-ENOMEM, "the model's weights (%.2f GiB) do not fit in the GPU "
				       "memory budget of %.2f GiB (--gpu-memory-utilization %.2f "
				       "of the free memory)", (double)u.bytes / (1u << 30),
			       (double)c->budget / (1u << 30), mem_util);
	u = (struct upload){ c, 1, 0, 0 };
	if (model_for_each_tensor(m, upload_tensor, &u) || u.rc) {
		free_weights(c);
		return err_set(-ENOMEM, "uploading the weights: %s", cuda_error(u.rc));
	}
	qsort(c->w, (size_t)c->n_w, sizeof(*c->w), weight_cmp);
	c->used += u.bytes;
	LOG_INFO("cuda", "weights: %d tensors, %.2f GiB on the GPU", c->n_w,
		 (double)u.bytes / (1u << 30));
	return 0;
}

/* ---- the KV pool ---- */

static void kv_free_all(struct cuda_backend *c)
{
	for (int l = 0; l < c->n_layers; l++) {
		if (c->kp[l])
			c->cu->cuMemFree(c->kp[l]);
		if (c->vp[l])
			c->cu->cuMemFree(c->vp[l]);
	}
	free(c->kp);
	free(c->vp);
	c->kp = c->vp = NULL;
	c->n_layers = 0;
	c->used -= c->kv_bytes;
	c->kv_bytes = 0;
}

static int cuda_kv_create(struct backend *b, int n_layers, int n_blocks, int block_size,
			  int kv_dim)
{
	struct cuda_backend *c = cb(b);
	size_t layer = (size_t)n_blocks * (size_t)block_size * (size_t)kv_dim * c->kv_elem;
	size_t total = 2 * (size_t)n_layers * layer;

	ctx(c);
	sync(c);
	kv_free_all(c);
	if (c->used + total > c->budget)
		return err_set(-ENOMEM, "the KV cache (%.2f GiB) does not fit in the GPU memory "
				       "left (%.2f of %.2f GiB: --gpu-memory-utilization %.2f of "
				       "the free memory); lower --kv-cache-tokens or --max-num-seqs",
			       (double)total / (1u << 30),
			       (double)(c->budget - c->used) / (1u << 30),
			       (double)c->budget / (1u << 30), mem_util);
	c->kp = xcalloc((size_t)n_layers, sizeof(*c->kp));
	c->vp = xcalloc((size_t)n_layers, sizeof(*c->vp));
	c->n_layers = n_layers;
	for (int l = 0; l < n_layers; l++) {
		CUresult rc;
		if ((rc = c->cu->cuMemAlloc(&c->kp[l], layer)) ||
		    (rc = c->cu->cuMemAlloc(&c->vp[l], layer))) {
			kv_free_all(c);
			return err_set(-ENOMEM, "KV cache: %s", cuda_error(rc));
		}
	}
	c->n_blocks = n_blocks;
	c->block_size = block_size;
	c->kv_dim = kv_dim;
	c->kv_bytes = total;
	c->used += total;
	return 0;
}

static void cuda_kv_layout(struct backend *b, struct kv_layout *out)
{
	struct cuda_backend *c = cb(b);

	kv_layout_init(out, c->n_layers, c->n_blocks, c->block_size, c->kv_dim, b->kv_dtype,
		       c->kv_elem);
}

/* Copy a block's host image to (to_host) or from the pool. */
static void kv_block_copy(struct cuda_backend *c, int32_t block, void *host, int to_host)
{
	size_t lb = (size_t)c->block_size * (size_t)c->kv_dim * c->kv_elem;
	char *h = host;

	ctx(c);
	sync(c);
	for (int l = 0; l < c->n_layers; l++)
		for (int kv = 0; kv < 2; kv++, h += lb) {
			CUdeviceptr d = (kv ? c->vp[l] : c->kp[l]) + (size_t)block * lb;
			check(to_host ? c->cu->cuMemcpyDtoHAsync(h, d, lb, c->s)
				      : c->cu->cuMemcpyHtoDAsync(d, h, lb, c->s), "KV block copy");
		}
	check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
}

static void cuda_kv_block_read(struct backend *b, int32_t block, void *host)
{
	kv_block_copy(cb(b), block, host, 1);
}

static void cuda_kv_block_write(struct backend *b, int32_t block, const void *host)
{
	kv_block_copy(cb(b), block, (void *)host, 0);
}

/* ---- the step ---- */

/* The graph for (n, stride), or a free (least recently used) slot. */
static int graph_slot(struct cuda_backend *c, int n, int stride, int *found)
{
	int lru = 0;

	for (int i = 0; i < MAX_GRAPHS; i++) {
		struct graph *g = &c->graphs[i];
		if (g->exec && g->n == n && g->stride == stride) {
			*found = 1;
			return i;
		}
		if (!g->exec || (c->graphs[lru].exec && g->used < c->graphs[lru].used))
			lru = i;
	}
	*found = 0;
	if (c->graphs[lru].exec)
		c->cu->cuGraphExecDestroy(c->graphs[lru].exec);
	c->graphs[lru] = (struct graph){ n, stride, NULL, 0 };
	return lru;
}

static void cuda_begin(struct backend *b, const struct backend_step *st)
{
	struct cuda_backend *c = cb(b);
	const struct attn_batch *ab = st->ab;
	const struct cuda_api *cu = c->cu;
	int n = st->n_tokens, kvh = ab->n_kv_heads, decode = n == st->n_seqs;
	int group = ab->n_heads / kvh, width = attn_table_width(ab);

	ctx(c);
	sync(c);		/* the staging memory is free again */
	/* decode graphs see a table stride that changes rarely: a power of 2 */
	c->stride = width;
	if (decode)
		for (c->stride = 16; c->stride < width; c->stride *= 2)
			;
	size_t n_items_cap = (size_t)n * (size_t)kvh;
	size_t words = 3 * (size_t)n + 4 * n_items_cap + (size_t)st->n_seqs * (size_t)c->stride;
	if (words * 4 > c->stage_bytes) {
		if (c->stage)
			cu->cuMemFreeHost(c->stage);
		c->stage_bytes = words * 4 * 3 / 2 + 4096;
		check(cu->cuMemAllocHost((void **)&c->stage, c->stage_bytes), "cuMemAllocHost");
	}
	dbuf_reserve(c, &c->d_in, words * 4);
	dbuf_reserve(c, &c->xh, (size_t)n * (size_t)c->max_cols * 2);

	int32_t *p = c->stage;
	memcpy(p, st->tokens, (size_t)n * 4);
	memcpy(p + n, ab->pos, (size_t)n * 4);
	memcpy(p + 2 * n, st->slots, (size_t)n * 4);
	struct attn_item *items = (struct attn_item *)(p + 3 * n);
	c->n_items = attn_plan(ab, items);
	c->att_rows = 0;
	for (int i = 0; i < c->n_items; i++)
		if (items[i].n_tokens * group > c->att_rows)
			c->att_rows = items[i].n_tokens * group;
	int32_t *tables = p + 3 * n + 4 * n_items_cap;
	attn_flatten_tables(ab, st->n_seqs, c->stride, tables);
	check(cu->cuMemcpyHtoDAsync(c->d_in.p, p, words * 4, c->s), "step inputs");
	c->d_tokens = c->d_in.p;
	c->d_pos = c->d_tokens + (size_t)n * 4;
	c->d_slots = c->d_pos + (size_t)n * 4;
	c->d_items = c->d_slots + (size_t)n * 4;
	c->d_tables = c->d_items + n_items_cap * 16;
	c->h_tokens = st->tokens;
	c->h_pos = ab->pos;
	c->h_slots = st->slots;
	c->steps++;

	/* a decode step: one token in each item (a graph records its launch
	 * shapes); the first step uploads rope's table: no recording before */
	decode = use_graphs && decode && c->n_items == n * kvh && n <= MAX_GRAPH_TOKENS;
	if (decode && c->inv_freq) {
		int found;
		c->cur = graph_slot(c, n, c->stride, &found);
		c->graphs[c->cur].used = c->steps;
		c->mode = found ? REPLAY : CAPTURE;
		if (!found)
			check(cu->cuStreamBeginCapture(c->s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL),
			      "cuStreamBeginCapture");
	}
}

/* The device copy of one of the step's host arrays. */
static CUdeviceptr step_array(struct cuda_backend *c, const int32_t *h)
{
	CUdeviceptr d = h == c->h_tokens ? c->d_tokens : h == c->h_pos ? c->d_pos
						: h == c->h_slots ? c->d_slots : 0;
	if (!d) {
		LOG_ERROR("cuda", "an op was given a host array begin() did not see");
		abort();
	}
	return d;
}

static void cuda_embed(struct backend *b, float *y, const struct model_tensor *emb,
		       const int32_t *ids, int n)
{
	struct cuda_backend *c = cb(b);
	CUdeviceptr w = weight(c, emb), d_ids = step_array(c, ids);
	int wt = dtype_code(emb->dtype), dim = (int)emb->shape[1];

	if (c->mode == REPLAY)
		return;
	launch(c, K_EMBED, blocks((size_t)n * dim), 256, 0,
	       (void *[]){ &y, &w, &wt, &d_ids, &n, &dim });
}

static void cuda_matmul_multi(struct backend *b, int count, float *const *y, const float *x,
			      int n, const struct model_tensor *const *w,
			      const struct model_tensor *const *bias)
{
	struct cuda_backend *c = cb(b);
	int cols = (int)w[0]->shape[1];
	enum dtype narrowed = DTYPE_F32;	/* what c->xh holds of x */
	const float one = 1, zero = 0;

	if (c->mode == REPLAY)
		return;
	for (int i = 0; i < count; i++) {
		int rows = (int)w[i]->shape[0], t = dtype_code(w[i]->dtype);
		CUdeviceptr wd = weight(c, w[i]);
		const void *in = x;
		int in_type = CUDA_R_32F, w_type = CUDA_R_32F;
		if (t != DT_F32) {
			if (narrowed != w[i]->dtype) {
				size_t nx = (size_t)n * (size_t)cols;
				launch(c, K_NARROW, blocks(nx), 256, 0,
				       (void *[]){ &c->xh.p, &t, &x, &nx });
				narrowed = w[i]->dtype;
			}
			in = (const void *)(uintptr_t)c->xh.p;
			in_type = w_type = t == DT_BF16 ? CUDA_R_16BF : CUDA_R_16F;
		}
		/* row-major y[n, rows] = x[n, cols] W^T is column-major
		 * y^T[rows, n] = W'^T x^T with W' = W^T [cols, rows] */
		check_blas(c->cu->cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, n, cols,
					       &one, (const void *)(uintptr_t)wd, w_type, cols,
					       in, in_type, cols, &zero, y[i], CUDA_R_32F, rows,
					       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
			   "cublasGemmEx");
		if (bias && bias[i] && model_tensor_present(bias[i])) {
			CUdeviceptr bd = weight(c, bias[i]);
			int bt = dtype_code(bias[i]->dtype);
			launch(c, K_ADD_BIAS, blocks((size_t)n * rows), 256, 0,
			       (void *[]){ (void *)&y[i], &bd, &bt, &n, &rows });
		}
	}
}

static void cuda_matmul(struct backend *b, float *y, const float *x, int n,
			const struct model_tensor *w, const struct model_tensor *bias)
{
	cuda_matmul_multi(b, 1, &y, x, n, &w, &bias);
}

static void cuda_rmsnorm(struct backend *b, float *y, const float *x,
			 const struct model_tensor *w, int n_rows, int dim, float eps)
{
	struct cuda_backend *c = cb(b);
	CUdeviceptr wd = weight(c, w);
	int wt = dtype_code(w->dtype);

	if (c->mode == REPLAY)
		return;
	launch(c, K_RMSNORM, (unsigned)n_rows, dim >= 1024 ? 256 : 128, 0,
	       (void *[]){ &y, &x, &wd, &wt, &dim, &eps });
}

static void cuda_rope(struct backend *b, float *x, int n, int n_heads, int head_dim,
		      const int32_t *pos, const float *inv_freq)
{
	struct cuda_backend *c = cb(b);
	CUdeviceptr d_pos = step_array(c, pos);

	if (c->mode == REPLAY)
		return;
	if (inv_freq != c->inv_freq_host) {	/* one model: once (never while recording) */
		if (!c->inv_freq)
			check(c->cu->cuMemAlloc(&c->inv_freq, 256 * sizeof(float)), "cuMemAlloc");
		check(c->cu->cuMemcpyHtoDAsync(c->inv_freq, inv_freq,
					       (size_t)head_dim / 2 * sizeof(float), c->s),
		      "rope table");
		check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
		c->inv_freq_host = inv_freq;
	}
	launch(c, K_ROPE, blocks((size_t)n * n_heads * head_dim / 2), 256, 0,
	       (void *[]){ &x, &n, &n_heads, &head_dim, &d_pos, &c->inv_freq });
}

static void cuda_silu_mul(struct backend *b, float *gate, const float *up, size_t n)
{
	struct cuda_backend *c = cb(b);

	if (c->mode != REPLAY)
		launch(c, K_SILU_MUL, blocks(n), 256, 0, (void *[]){ &gate, &up, &n });
}

static void cuda_add(struct backend *b, float *y, const float *x, size_t n)
{
	struct cuda_backend *c = cb(b);

	if (c->mode != REPLAY)
		launch(c, K_ADD, blocks(n), 256, 0, (void *[]){ &y, &x, &n });
}

static void cuda_kv_write(struct backend *b, int layer, const float *k, const float *v, int n,
			  const int32_t *slots)
{
	struct cuda_backend *c = cb(b);
	CUdeviceptr d_slots = step_array(c, slots);
	int kt = dtype_code(b->kv_dtype);

	if (c->mode == REPLAY)
		return;
	launch(c, K_KV_WRITE, blocks((size_t)n * c->kv_dim), 256, 0,
	       (void *[]){ &c->kp[layer], &c->vp[layer], &kt, &k, &v, &n, &c->kv_dim,
			   &d_slots });
}

static void cuda_attention(struct backend *b, int layer, float *out, const float *q,
			   const struct attn_batch *ab)
{
	struct cuda_backend *c = cb(b);
	int kt = dtype_code(b->kv_dtype), bs = ab->block_size, nh = ab->n_heads;
	int nkv = ab->n_kv_heads, hd = ab->head_dim, win = ab->sliding_window;
	float scale = ab->scale;

	if (c->mode == REPLAY)
		return;
	launch(c, K_ATTEND, (unsigned)c->n_items, 32u * (unsigned)c->att_rows,
	       (unsigned)attn_shared_bytes(c->att_rows, hd),
	       (void *[]){ &out, &q, &c->kp[layer], &c->vp[layer], &kt, &c->d_items,
			   &c->d_pos, &c->d_tables, &c->stride, &bs, &nh, &nkv, &hd, &win,
			   &scale });
}

static void cuda_copy_rows(struct backend *b, float *dst, const float *src, size_t width,
			   const int32_t *rows, int n)
{
	struct cuda_backend *c = cb(b);

	finish_graph(c);	/* the layers (recorded or replayed) run first */
	dbuf_reserve(c, &c->rows, (size_t)n * 4);
	check(c->cu->cuMemcpyHtoDAsync(c->rows.p, rows, (size_t)n * 4, c->s), "copy_rows");
	launch(c, K_COPY_ROWS, blocks((size_t)n * width), 256, 0,
	       (void *[]){ &dst, &src, &width, &c->rows.p, &n });
	/* rows is the caller's pageable memory: the copy must be done */
	check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
}

static void cuda_to_host(struct backend *b, float *dst, const float *src, size_t n)
{
	struct cuda_backend *c = cb(b);

	finish_graph(c);
	check(c->cu->cuMemcpyDtoHAsync(dst, dptr(src), n * sizeof(float), c->s), "to_host");
	check(c->cu->cuStreamSynchronize(c->s), "cuStreamSynchronize");
}

/* ---- the backend ---- */

static void cuda_free(struct backend *b)
{
	struct cuda_backend *c = cb(b);
	const struct cuda_api *cu = c->cu;

	if (c->ctx) {
		ctx(c);
		if (c->s)
			sync(c);
	}
	drop_graphs(c);
	kv_free_all(c);
	free_weights(c);
	struct dbuf *bufs[] = { &c->d_in, &c->xh, &c->rows };
	for (size_t i = 0; i < ARRAY_SIZE(bufs); i++)
		if (bufs[i]->p)
			cu->cuMemFree(bufs[i]->p);
	if (c->inv_freq)
		cu->cuMemFree(c->inv_freq);
	if (c->stage)
		cu->cuMemFreeHost(c->stage);
	if (c->blas_ws)
		cu->cuMemFree(c->blas_ws);
	if (c->blas)
		cu->cublasDestroy(c->blas);
	if (c->s)
		cu->cuStreamDestroy(c->s);
	if (c->mod)
		cu->cuModuleUnload(c->mod);
	if (c->ctx)
		cu->cuDevicePrimaryCtxRelease(c->dev);
	free(c);
}

static const struct backend_ops cuda_ops = {
	.name = "cuda",
	.free = cuda_free,
	.alloc = cuda_alloc,
	.release = cuda_release,
	.prepare_weights = cuda_prepare_weights,
	.kv_create = cuda_kv_create,
	.kv_layout = cuda_kv_layout,
	.kv_block_read = cuda_kv_block_read,
	.kv_block_write = cuda_kv_block_write,
	.begin = cuda_begin,
	.embed = cuda_embed,
	.matmul = cuda_matmul,
	.matmul_multi = cuda_matmul_multi,
	.rmsnorm = cuda_rmsnorm,
	.rope = cuda_rope,
	.silu_mul = cuda_silu_mul,
	.add = cuda_add,
	.kv_write = cuda_kv_write,
	.attention = cuda_attention,
	.copy_rows = cuda_copy_rows,
	.to_host = cuda_to_host,
};

static int cuda_available(void)
{
	if (!*cuda_fatbin_archs)
		return err_set(-ENOTSUP, "the cuda backend's kernels are not built in this binary "
					 "(built without nvcc, or with CUDA=0)");
	return cuda_load() ? 0 : -ENODEV;
}

/* The driver's context, module, stream and cuBLAS handle for GPU 0. */
static int open_device(struct cuda_backend *c)
{
	const struct cuda_api *cu = c->cu;
	size_t free_b = 0, total_b = 0;
	CUresult rc;

	if ((rc = cu->cuDeviceGet(&c->dev, 0)) ||
	    (rc = cu->cuDevicePrimaryCtxRetain(&c->ctx, c->dev)))
		return err_set(-ENODEV, "GPU 0: %s", cuda_error(rc));
	cu->cuDeviceGetName(c->gpu_name, sizeof(c->gpu_name), c->dev);
	ctx(c);
	if ((rc = cu->cuModuleLoadData(&c->mod, cuda_fatbin)))
		return err_set(-ENOTSUP, "loading the kernels (built for %s) on GPU 0: %s",
			       cuda_fatbin_archs, cuda_error(rc));
	for (int i = 0; i < K_COUNT; i++)
		if ((rc = cu->cuModuleGetFunction(&c->k[i], c->mod, kernel_names[i])))
			return err_set(-ENOTSUP, "kernel %s: %s", kernel_names[i], cuda_error(rc));
	/* attend's shared memory at head_dim 256 is past the default 48 KiB */
	if ((rc = cu->cuFuncSetAttribute(c->k[K_ATTEND],
					 CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
					 (int)attn_shared_bytes(32, 256))))
		return err_set(-ENOTSUP, "attend's shared memory: %s", cuda_error(rc));
	if ((rc = cu->cuStreamCreate(&c->s, CU_STREAM_NON_BLOCKING)) ||
	    (rc = cu->cuMemGetInfo(&free_b, &total_b)) ||
	    (rc = cu->cuMemAlloc(&c->blas_ws, BLAS_WORKSPACE)))
		return err_set(-ENOMEM, "GPU 0: %s", cuda_error(rc));
	/* an explicit workspace: cuBLAS allocates nothing while a graph records */
	if (cu->cublasCreate(&c->blas) || cu->cublasSetStream(c->blas, c->s) ||
	    cu->cublasSetWorkspace(c->blas, (void *)(uintptr_t)c->blas_ws, BLAS_WORKSPACE))
		return err_set(-ENODEV, "cuBLAS could not start on GPU 0");
	c->budget = (size_t)((double)free_b * mem_util);
	return 0;
}

static int cuda_create(const struct backend_config *cfg, struct backend **out)
{
	enum dtype kv = cfg && cfg->kv_dtype ? cfg->kv_dtype : DTYPE_F32;
	struct cuda_backend *c;
	int rc;

	if (kv != DTYPE_F32 && kv != DTYPE_BF16 && kv != DTYPE_F16)
		return err_set(-EINVAL, "the cuda backend keeps no KV cache of %s (f32, bf16 or "
					"f16)", dtype_name(kv));
	if (!(mem_util > 0 && mem_util <= 1))
		return err_set(-EINVAL, "--gpu-memory-utilization %g is not in (0, 1]", mem_util);
	if ((rc = cuda_available()) < 0)
		return rc;
	c = xcalloc(1, sizeof(*c));
	c->cu = cuda_load();
	c->base.ops = &cuda_ops;
	c->base.n_threads = 1;
	c->base.simd = c->gpu_name;
	c->base.kv_dtype = kv;
	c->kv_elem = dtype_size(kv);
	if ((rc = open_device(c)) < 0) {
		cuda_free(&c->base);
		return rc;
	}
	*out = &c->base;
	return 0;
}

static int cuda_supports_weight_dtype(enum dtype t)
{
	return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
}

const struct backend_type backend_cuda = {
	.name = "cuda",
	.available = cuda_available,
	.create = cuda_create,
	.supports_weight_dtype = cuda_supports_weight_dtype,
};
