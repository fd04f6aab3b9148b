/*
 * dummy.c - the "dummy" load format: deterministic random weights of the
 * config's shapes, for benchmarks and load tests without weight files.
 *
 * Each tensor draws from its own generator, seeded from the load seed and
 * the tensor's name, so the values do not depend on load order.  Matrices
 * and biases are uniform in [-1/sqrt(fan_in), 1/sqrt(fan_in)) (the usual
 * scale that keeps activations of order one), norms are 1: a forward
 * pass stays finite.  A quantized load (model_load_opts.quantize)
 * quantizes the F32 values of the matrices it applies to, a chunk of rows
 * at a time (the generator can start anywhere: a chunk never holds the
 * whole F32 tensor).
 */
#include "core/model/model_int.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;	/* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
	return h;
}

/* Uniform in [-1, 1) from 24 random bits. */
static inline float unit(uint32_t bits)
{
	return (float)(int32_t)(bits >> 8) / 8388608.0f - 1.0f;
}

static inline void store(void *dst, size_t i, float v, enum dtype dt)
{
	if (dt == DTYPE_F32) {
		memcpy((char *)dst + 4 * i, &v, 4);
	} else {
		uint16_t h = dt == DTYPE_BF16 ? f32_to_bf16(v) : f32_to_f16(v);
		memcpy((char *)dst + 2 * i, &h, 2);
	}
}

/* Elements [i0, i1) of the tensor (i0 even) into dst[0 .. i1 - i0). */
static void fill(const struct tensor_spec *s, void *dst, enum dtype dt, uint64_t seed, size_t i0,
		 size_t i1)
{
	size_t n = i1 - i0;
	/* splitmix64 draws one value per two elements: skip i0 / 2 draws */
	uint64_t st = (seed ^ name_hash(s->name)) + i0 / 2 * 0x9e3779b97f4a7c15ull;

	if (s->kind == SPEC_NORM) {
		for (size_t i = 0; i < n; i++)
			store(dst, i, 1.0f, dt);
		return;
	}
	float scale = 1.0f / sqrtf((float)s->fan_in);
	uint64_t r = 0;
	if (dt == DTYPE_F32) {	/* the common case, kept tight */
		float *f = dst;
		for (size_t i = 0; i < n; i++) {
			if (!(i & 1))
				r = splitmix64(&st);
			f[i] = scale * unit((uint32_t)(i & 1 ? r >> 32 : r));
		}
		return;
	}
	for (size_t i = 0; i < n; i++) {	/* the same values, rounded */
		if (!(i & 1))
			r = splitmix64(&st);
		store(dst, i, scale * unit((uint32_t)(i & 1 ? r >> 32 : r)), dt);
	}
}

#define QUANT_CHUNK (1u << 16)	/* F32 values generated at a time */

/* Rows of a [rows, cols] matrix generated at a time. */
static size_t chunk_rows(size_t cols)
{
	return cols < QUANT_CHUNK ? QUANT_CHUNK / cols : 1;
}

/* A quantized matrix: rows generated in F32 a chunk at a time into buf
 * (chunk_rows(cols) * cols floats). */
static void fill_quantized(const struct tensor_spec *s, void *dst, enum dtype q, uint64_t seed,
			   float *buf)
{
	size_t cols = (size_t)s->slot->shape[1], rows = (size_t)s->slot->shape[0];
	size_t chunk = chunk_rows(cols);

	for (size_t r = 0; r < rows; r += chunk) {
		size_t nr = rows - r < chunk ? rows - r : chunk;
		fill(s, buf, DTYPE_F32, seed, r * cols, (r + nr) * cols);
		dtype_quantize((char *)dst + dtype_bytes(q, r * cols), buf, q, nr * cols);
	}
}

int model_bind_dummy(struct model *m, const struct model_load_opts *o, enum dtype dt)
{
	uint64_t seed = o->seed;
	unsigned flags = o->flags;
	struct model_priv *p = m->priv;
	size_t total = 0, off = 0, scratch = 0;	/* floats for fill_quantized */

	if (dt == DTYPE_UNKNOWN)
		dt = DTYPE_F32;
	if (flags & MODEL_LOAD_F32)
		dt = DTYPE_F32;
	if (!dtype_is_weight(dt))
		return err_set(-EINVAL, "dummy weights: dtype %s is not F32, F16 or BF16",
			       dtype_name(dt));
	for (size_t i = 0; i < p->nspecs; i++) {
		struct model_tensor *t = p->specs[i].slot;
		t->dtype = model_spec_quantized(&p->specs[i], o->quantize) ? o->quantize : dt;
		t->nbytes = dtype_bytes(t->dtype, (size_t)t->numel);
		if (t->dtype != dt) {
			size_t cols = (size_t)t->shape[1], need = chunk_rows(cols) * cols;
			scratch = need > scratch ? need : scratch;
		}
		total += ((size_t)t->nbytes + 63) / 64 * 64;
	}
	if (flags & MODEL_LOAD_META)
		return 0;
	p->arena = model_arena_alloc(total);
	if (!p->arena)
		return err_set(-ENOMEM, "dummy weights: cannot allocate %zu bytes", total);
	p->arena_len = total;
	float *buf = scratch ? xmalloc(scratch * sizeof(float)) : NULL;	/* one for all */
	for (size_t i = 0; i < p->nspecs; i++) {
		struct model_tensor *t = p->specs[i].slot;
		void *dst = (char *)p->arena + off;
		if (t->dtype == dt)
			fill(&p->specs[i], dst, dt, seed, 0, (size_t)t->numel);
		else
			fill_quantized(&p->specs[i], dst, t->dtype, seed, buf);
		t->data = dst;
		off += ((size_t)t->nbytes + 63) / 64 * 64;
		if (o->progress)	/* a large model takes seconds to make */
			o->progress(o->progress_arg, off, total);
	}
	free(buf);
	mprotect(p->arena, p->arena_len, PROT_READ);
	return 0;
}
