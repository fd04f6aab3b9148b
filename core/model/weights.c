/*
 * weights.c - the tensors a forward pass needs (names and shapes implied
 * by the config), and binding them to a safetensors checkpoint: every
 * tensor must exist with the exact shape and a supported dtype.  Mapped
 * data is used in place; only F16/BF16 tensors that must be widened
 * (MODEL_LOAD_F32), misaligned ones and those quantized (--quantize) are
 * copied.
 */
#include "core/model/model_int.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void add(struct model_priv *p, size_t *cap, struct model_tensor *slot,
		enum spec_kind kind, int64_t fan_in, int ndim, int64_t d0, int64_t d1,
		const char *fmt, int layer)
{
	struct tensor_spec *s;

	if (p->nspecs == *cap) {
		*cap = *cap ? 2 * *cap : 64;
		p->specs = xrealloc(p->specs, *cap * sizeof(*p->specs));
	}
	s = &p->specs[p->nspecs++];
	memset(s, 0, sizeof(*s));
	s->slot = slot;
	s->kind = kind;
	s->fan_in = fan_in;
	snprintf(s->name, sizeof(s->name), fmt, layer);
	memset(slot, 0, sizeof(*slot));
	slot->ndim = ndim;
	slot->shape[0] = d0;
	slot->shape[1] = ndim > 1 ? d1 : 0;
	slot->numel = (uint64_t)d0 * (uint64_t)(ndim > 1 ? d1 : 1);
}

void model_specs_build(struct model *m)
{
	const struct model_desc *d = &m->desc;
	struct model_priv *p = m->priv;
	struct model_weights *w = &m->w;
	int64_t h = d->hidden_size, q = (int64_t)d->num_heads * d->head_dim;
	int64_t kv = (int64_t)d->num_kv_heads * d->head_dim, ff = d->intermediate_size;
	size_t cap = 0;

	w->n_layers = d->num_layers;
	w->layers = xcalloc((size_t)d->num_layers, sizeof(*w->layers));
	add(p, &cap, &w->embed, SPEC_EMBED, h, 2, d->vocab_size, h,
	    "model.embed_tokens.weight", 0);
	for (int i = 0; i < d->num_layers; i++) {
		struct model_layer *l = &w->layers[i];
#define L(slot, kind, fan, nd, d0, d1, nm) \
	add(p, &cap, &l->slot, kind, fan, nd, d0, d1, "model.layers.%d." nm, i)
		L(attn_norm, SPEC_NORM, h, 1, h, 0, "input_layernorm.weight");
#define HEADS(n) (p->specs[p->nspecs - 1].rope_heads = (n))
		L(wq, SPEC_MATRIX, h, 2, q, h, "self_attn.q_proj.weight");
		HEADS(d->num_heads);
		if (d->qkv_bias) {
			L(bq, SPEC_BIAS, h, 1, q, 0, "self_attn.q_proj.bias");
			HEADS(d->num_heads);
		}
		L(wk, SPEC_MATRIX, h, 2, kv, h, "self_attn.k_proj.weight");
		HEADS(d->num_kv_heads);
		if (d->qkv_bias) {
			L(bk, SPEC_BIAS, h, 1, kv, 0, "self_attn.k_proj.bias");
			HEADS(d->num_kv_heads);
		}
#undef HEADS
		L(wv, SPEC_MATRIX, h, 2, kv, h, "self_attn.v_proj.weight");
		if (d->qkv_bias)
			L(bv, SPEC_BIAS, h, 1, kv, 0, "self_attn.v_proj.bias");
		L(wo, SPEC_MATRIX, q, 2, h, q, "self_attn.o_proj.weight");
		if (d->o_bias)
			L(bo, SPEC_BIAS, q, 1, h, 0, "self_attn.o_proj.bias");
		if (d->qk_norm) {
			L(q_norm, SPEC_NORM, d->head_dim, 1, d->head_dim, 0, "self_attn.q_norm.weight");
			L(k_norm, SPEC_NORM, d->head_dim, 1, d->head_dim, 0, "self_attn.k_norm.weight");
		}
		L(ffn_norm, SPEC_NORM, h, 1, h, 0, "post_attention_layernorm.weight");
		L(w_gate, SPEC_MATRIX, h, 2, ff, h, "mlp.gate_proj.weight");
		L(w_up, SPEC_MATRIX, h, 2, ff, h, "mlp.up_proj.weight");
		L(w_down, SPEC_MATRIX, ff, 2, h, ff, "mlp.down_proj.weight");
#undef L
	}
	add(p, &cap, &w->final_norm, SPEC_NORM, h, 1, h, 0, "model.norm.weight", 0);
	if (!d->tie_word_embeddings)
		add(p, &cap, &w->lm_head, SPEC_MATRIX, h, 2, d->vocab_size, h, "lm_head.weight", 0);
	for (size_t i = 0; i < p->nspecs; i++)
		p->specs[i].slot->name = p->specs[i].name;
}

void *model_arena_alloc(size_t len)
{
	void *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		return NULL;
#ifdef MADV_HUGEPAGE
	/* Huge pages from the first touch: decode streams every weight each
	 * step, and 4 KB pages cost it a TLB miss and a prefetcher restart
	 * per page (core/cpu/hugepages.h).  Advisory. */
	madvise(a, len, MADV_HUGEPAGE);
#endif
	return a;
}

static void shape_str(char *buf, size_t size, int ndim, const uint64_t *shape)
{
	size_t n = 0;

	n += (size_t)snprintf(buf + n, size - n, "[");
	for (int i = 0; i < ndim && n < size; i++)
		n += (size_t)snprintf(buf + n, size - n, "%s%llu", i ? ", " : "",
				      (unsigned long long)shape[i]);
	if (n < size)
		snprintf(buf + n, size - n, "]");
}

static int check_tensor(const struct model *m, const struct tensor_spec *s,
			const struct st_tensor *t)
{
	const struct model_tensor *slot = s->slot;
	uint64_t want[2] = { (uint64_t)slot->shape[0], (uint64_t)slot->shape[1] };
	char got[128], exp[64];

	shape_str(exp, sizeof(exp), slot->ndim, want);
	if (!t)
		return err_set(-EINVAL, "tensor %s is missing from the checkpoint (%s needs "
			       "it with shape %s)", s->name, m->desc.architecture, exp);
	int same = t->ndim == slot->ndim;
	for (int i = 0; same && i < slot->ndim; i++)
		same = t->shape[i] == want[i];
	if (!same) {
		shape_str(got, sizeof(got), t->ndim, t->shape);
		return err_set(-EINVAL, "tensor %s has shape %s, but %s implies %s", s->name, got,
			       m->priv->gguf ? "the GGUF metadata" : "config.json", exp);
	}
	/* Q8_0 and Q4_0 (GGUF) as --quantize makes them: matrices only */
	if (!dtype_is_weight(t->dtype) &&
	    !(dtype_is_quant(t->dtype) && (s->kind == SPEC_MATRIX || s->kind == SPEC_EMBED)))
		return err_set(-EINVAL, "tensor %s has dtype %s (supported: F32, F16, BF16%s)",
			       s->name, dtype_name(t->dtype),
			       s->kind == SPEC_MATRIX || s->kind == SPEC_EMBED ? ", Q8_0, Q4_0" : "");
	return 0;
}

int model_spec_quantized(const struct tensor_spec *s, enum dtype q)
{
	return dtype_is_quant(q) && s->kind == SPEC_MATRIX &&
	       (size_t)s->slot->shape[1] % dtype_block(q) == 0;
}

/* The dtype tensor t of spec s gets from a load with o. */
static enum dtype loaded_dtype(const struct tensor_spec *s, const struct st_tensor *t,
			       const struct model_load_opts *o)
{
	if (model_spec_quantized(s, o->quantize))
		return o->quantize;
	return (o->flags & MODEL_LOAD_F32) ? DTYPE_F32 : t->dtype;
}

/* Must the tensor be copied (quantized, widened, un-permuted or
 * realigned)? */
static int needs_copy(const struct model_priv *p, const struct tensor_spec *s,
		      const struct st_tensor *t, const struct model_load_opts *o)
{
	size_t align = dtype_size(t->dtype);

	if (!t->data)
		return 0;
	if (loaded_dtype(s, t, o) != t->dtype || (p->rope_permuted && s->rope_heads))
		return 1;
	return align > 1 && (uintptr_t)t->data % align != 0;
}

/*
 * Copy t into dst as slot's dtype, row by row (a row widened to F32 in
 * scratch first when the dtype changes: the source is never widened
 * whole).  heads > 0: t's rows are a Q or K projection (or bias) in the
 * interleaved-RoPE order of llama.cpp's converter, which within each head
 * of D rows put HF row i * D/2 + j (i = 0, 1; j < D/2) at row 2j + i: put
 * them back in HF's rotate-half order.
 */
static void copy_rows(void *dst, const struct st_tensor *t, const struct model_tensor *slot,
		      int heads)
{
	int64_t rows = slot->shape[0], cols = slot->ndim > 1 ? slot->shape[1] : 1;
	int64_t d = heads ? rows / heads : 1;
	size_t in = dtype_bytes(t->dtype, (size_t)cols), out = dtype_bytes(slot->dtype, (size_t)cols);
	float *row = slot->dtype != t->dtype ? xmalloc((size_t)cols * sizeof(float)) : NULL;

	for (int64_t r = 0; r < rows; r++) {
		int64_t i = (r % d) / (d / 2 ? d / 2 : 1), j = (r % d) % (d / 2 ? d / 2 : 1);
		int64_t from = heads ? r - r % d + 2 * j + i : r;
		const char *src = (const char *)t->data + (size_t)from * in;
		char *to = (char *)dst + (size_t)r * out;
		if (!row) {
			memcpy(to, src, in);
		} else if (dtype_is_quant(slot->dtype)) {
			dtype_to_f32(row, src, t->dtype, (size_t)cols);
			dtype_quantize(to, row, slot->dtype, (size_t)cols);
		} else {
			dtype_to_f32((float *)to, src, t->dtype, (size_t)cols);
		}
	}
	free(row);
}

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* Drop the mapped pages of a tensor once it has been copied. */
static void drop_pages(const void *data, size_t len)
{
	long page = sysconf(_SC_PAGESIZE);
	uintptr_t a = round_up((uintptr_t)data, (size_t)page);
	uintptr_t b = ((uintptr_t)data + len) / (uintptr_t)page * (uintptr_t)page;

	if (b > a)
		madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Read every page of a mapped tensor in (for load progress). */
static void touch_pages(const void *data, size_t len)
{
	const volatile unsigned char *c = data;
	long page = sysconf(_SC_PAGESIZE);
	unsigned char sum = 0;

	for (size_t i = 0; i < len; i += (size_t)page)
		sum += c[i];
	if (len)
		sum += c[len - 1];
	(void)sum;
}

int model_repack_panels(struct model *m)
{
	struct model_priv *p = m->priv;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	void *scratch = NULL;
	int rc = 0;

	for (size_t i = 0; i < p->nspecs && !rc; i++) {
		struct model_tensor *t = p->specs[i].slot;
		enum dtype pt = dtype_panel_of(t->dtype);
		if (p->specs[i].kind != SPEC_MATRIX || !t->data || pt == DTYPE_UNKNOWN)
			continue;
		size_t cols = (size_t)t->shape[1], row = dtype_bytes(t->dtype, cols);
		/* writable for the while: arena pages, or private copies of
		 * the mapped file's (read-only again after) */
		uintptr_t a = (uintptr_t)t->data / page * page;
		size_t len = round_up((uintptr_t)t->data + (size_t)t->nbytes - a, page);
		if (mprotect((void *)a, len, PROT_READ | PROT_WRITE) < 0) {
			rc = err_set(-errno, "%s: repacking: mprotect: %s", t->name, strerror(errno));
			break;
		}
		scratch = xrealloc(scratch, 8 * row);
		for (int64_t r = 0; r + 8 <= t->shape[0]; r += 8) {
			char *g = (char *)t->data + (size_t)r * row;
			memcpy(scratch, g, 8 * row);
			dtype_repack(g, scratch, pt, 8, cols);
		}
		mprotect((void *)a, len, PROT_READ);
		t->dtype = pt;
	}
	free(scratch);
	return rc;
}

int model_bind_safetensors(struct model *m, const char *path, const struct model_load_opts *o)
{
	int rc = st_set_open(path, (o->flags & MODEL_LOAD_META) ? 0 : ST_MAP, &m->priv->st);
	if (rc < 0)
		return rc;
	m->n_files = m->priv->st->nfiles;
	return model_bind_set(m, o);
}

int model_bind_set(struct model *m, const struct model_load_opts *o)
{
	struct model_priv *p = m->priv;
	const struct st_tensor **src;
	size_t arena = 0, off = 0;
	uint64_t total = 0, done = 0;
	int rc = 0;

	src = xcalloc(p->nspecs, sizeof(*src));
	for (size_t i = 0; i < p->nspecs; i++) {
		src[i] = st_set_find(p->st, p->specs[i].name);
		if ((rc = check_tensor(m, &p->specs[i], src[i])) < 0)
			goto out;
		if (src[i]->data)
			total += src[i]->nbytes;
		if (needs_copy(p, &p->specs[i], src[i], o))
			arena += round_up(dtype_bytes(loaded_dtype(&p->specs[i], src[i], o),
						      (size_t)src[i]->numel), 64);
	}
	if (m->desc.tie_word_embeddings && st_set_find(p->st, "lm_head.weight"))
		LOG_DEBUG("model", "tied embeddings: the checkpoint's lm_head.weight is not used");
	if (arena) {
		p->arena = model_arena_alloc(arena);
		if (!p->arena) {
			rc = err_set(-ENOMEM, "cannot allocate %zu bytes for converted weights", arena);
			goto out;
		}
		p->arena_len = arena;
	}
	for (size_t i = 0; i < p->nspecs; i++) {
		const struct st_tensor *t = src[i];
		struct model_tensor *slot = p->specs[i].slot;
		int copy = needs_copy(p, &p->specs[i], t, o);
		/* what a full load gives (a MODEL_LOAD_META one too) */
		slot->dtype = loaded_dtype(&p->specs[i], t, o);
		slot->nbytes = dtype_bytes(slot->dtype, (size_t)t->numel);
		slot->data = t->data;
		if (o->progress && t->data) {
			done += t->nbytes;
			if (!copy) {
				touch_pages(t->data, (size_t)t->nbytes);
				o->progress(o->progress_arg, done, total);
			}
		}
		if (!copy)
			continue;
		char *dst = (char *)p->arena + off;
		copy_rows(dst, t, slot, p->rope_permuted ? p->specs[i].rope_heads : 0);
		slot->data = dst;
		off += round_up((size_t)slot->nbytes, 64);
		drop_pages(t->data, (size_t)t->nbytes);
		if (o->progress)
			o->progress(o->progress_arg, done, total);
	}
	if (p->arena)
		mprotect(p->arena, p->arena_len, PROT_READ);
out:
	free(src);
	return rc;
}
