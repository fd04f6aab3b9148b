/*
 * test_engine_backend.c - the backend seam (core/engine/backend.h): the
 * registry (names, "cuda" registered but not usable without a GPU, unknown
 * names), the weight-dtype
 * policy (the CPU takes exactly the dtypes its kernel table has a GEMM for,
 * the engine refuses others with an error and asks the loader to widen),
 * and the data-moving ops: a KV block's host image against the documented
 * layout (rows stored by kv_write, the op the forward pass uses, land where
 * the layout says), block write/read round trips that leave other blocks
 * alone, and copy_rows.
 */
#include "check.h"

#include "core/cpu/kernels.h"
#include "core/engine/backend.h"
#include "core/engine/engine.h"
#include "core/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

TEST(registry_names_and_errors)
{
	int rc = 0;
	const struct backend_type *t = backend_lookup("cpu", &rc);
	CHECK(t && !strcmp(t->name, "cpu"));
	const struct backend_type *cuda = backend_lookup("cuda", &rc);
	CHECK(cuda && !strcmp(cuda->name, "cuda") && cuda->available);
	CHECK(!backend_lookup("tpu", &rc));
	CHECK_INT(rc, -ENOENT);
	CHECK_MSG(strstr(err_msg(), "cpu") && strstr(err_msg(), "cuda"), "%s", err_msg());
	int n = 0, saw_cpu = 0;
	for (const char *name; (name = backend_names[n]); n++)
		saw_cpu |= !strcmp(name, "cpu");
	CHECK(n >= 2 && saw_cpu);
	struct backend *b = NULL;
	struct backend_config bc = { .n_threads = 1 };
	if (cuda->available() < 0) {	/* no GPU here (test_cuda says more) */
		CHECK_INT(backend_create("cuda", &bc, &b), cuda->available());
		CHECK(!b);
	}
	CHECK_INT(backend_create("cpu", &bc, &b), 0);
	CHECK(b && b->n_threads == 1 && b->kv_dtype == DTYPE_F32);
	b->ops->free(b);
}

TEST(weight_dtype_policy_follows_the_kernel_table)
{
	const struct backend_type *t = backend_lookup("cpu", NULL);
	CHECK(t);
	static const enum dtype all[] = { DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_I8, DTYPE_F64,
					  DTYPE_Q8_0 };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		CHECK_MSG(t->supports_weight_dtype(all[i]) ==
				  (kern_gemm_for(all[i]) != NULL &&
				   (dtype_is_weight(all[i]) || all[i] == DTYPE_Q8_0)),
			  "%s", dtype_name(all[i]));
	CHECK(t->supports_weight_dtype(DTYPE_F32) && t->supports_weight_dtype(DTYPE_Q8_0));
	CHECK(!kern_gemm_for(DTYPE_UNKNOWN) && !kern_gemm_for(DTYPE_COUNT));
	/* the engine tells the loader: widen unless F16 and BF16 both run */
	struct engine_opts o;
	engine_opts_init(&o);
	unsigned flags = 99;
	CHECK_INT(engine_weight_load_flags(&o, &flags), 0);
	CHECK_INT(flags & ~MODEL_LOAD_PANELS, t->supports_weight_dtype(DTYPE_BF16) &&
						      t->supports_weight_dtype(DTYPE_F16)
					      ? 0
					      : MODEL_LOAD_F32);
	/* and to repack the block types: the CPU computes with their panels */
	CHECK(t->supports_weight_dtype(DTYPE_Q8_0_P8) && t->supports_weight_dtype(DTYPE_Q4_0_P8));
	CHECK_INT(flags & MODEL_LOAD_PANELS, MODEL_LOAD_PANELS);
	o.backend = "cuda";	/* BF16 and F16 as stored, built in or not */
	CHECK_INT(engine_weight_load_flags(&o, &flags), 0);
	CHECK_INT(flags, 0);
	o.backend = "nope";
	CHECK_INT(engine_weight_load_flags(&o, &flags), -ENOENT);
}

/* BF16 weights as stored (no widening): the engine refuses them with an
 * error naming the dtype while the CPU has no BF16 kernel, and runs the
 * same model once it is loaded with the flags it asks for. */
TEST(engine_refuses_weights_the_backend_cannot_take)
{
	struct model_load_opts lo = { .format = MODEL_LOAD_DUMMY, .dummy_dtype = DTYPE_BF16 };
	struct model *m;
	struct engine *e = NULL;
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 1;
	if (backend_lookup("cpu", NULL)->supports_weight_dtype(DTYPE_BF16))
		return;	/* a BF16 kernel exists: nothing to refuse */
	CHECK_MSG(model_load("../shared/models/stories260K", &lo, &m) == 0, "%s", err_msg());
	CHECK_INT(engine_new(m, &o, &e), -EINVAL);
	CHECK_MSG(strstr(err_msg(), "BF16"), "%s", err_msg());
	model_free(m);
	unsigned flags;
	CHECK_INT(engine_weight_load_flags(&o, &flags), 0);
	lo.flags = flags;
	CHECK_MSG(model_load("../shared/models/stories260K", &lo, &m) == 0, "%s", err_msg());
	CHECK_MSG(engine_new(m, &o, &e) == 0, "%s", err_msg());
	engine_free(e);
	model_free(m);
}

enum { LAYERS = 3, BLOCKS = 5, BS = 4, KVD = 6 };

static struct backend *pool_backend(void)
{
	struct backend *b;
	struct backend_config bc = { .n_threads = 1 };
	if (backend_create("cpu", &bc, &b) < 0 ||
	    b->ops->kv_create(b, LAYERS, BLOCKS, BS, KVD) < 0)
		return NULL;
	return b;
}

TEST(kv_layout_matches_the_pool)
{
	struct backend *b = pool_backend();
	struct kv_layout l;
	CHECK(b);
	b->ops->kv_layout(b, &l);
	CHECK(l.n_layers == LAYERS && l.n_blocks == BLOCKS && l.block_size == BS &&
	      l.kv_dim == KVD);
	CHECK(l.dtype == b->kv_dtype && l.elem_bytes == dtype_size(l.dtype));
	CHECK_INT((int)l.layer_bytes, BS * KVD * (int)l.elem_bytes);
	CHECK_INT((int)l.block_bytes, 2 * LAYERS * BS * KVD * (int)l.elem_bytes);
	b->ops->free(b);
}

/* Rows stored by kv_write (slot = block * BS + offset) appear in the block's
 * host image at layer l: K at 2l * layer_bytes, V after it, row offset. */
TEST(kv_block_image_follows_the_documented_layout)
{
	struct backend *b = pool_backend();
	struct kv_layout l;
	CHECK(b);
	b->ops->kv_layout(b, &l);
	CHECK(l.dtype == DTYPE_F32);
	float *k = b->ops->alloc(b, KVD), *v = b->ops->alloc(b, KVD);
	int32_t slot = 3 * BS + 2;
	for (int layer = 0; layer < LAYERS; layer++) {
		for (int i = 0; i < KVD; i++) {
			k[i] = (float)(100 * layer + i);
			v[i] = (float)(-100 * layer - i - 1);
		}
		b->ops->kv_write(b, layer, k, v, 1, &slot);
	}
	float *img = calloc(1, l.block_bytes);
	b->ops->kv_block_read(b, 3, img);
	size_t row = (size_t)KVD, per_layer = l.layer_bytes / sizeof(float);
	for (int layer = 0; layer < LAYERS; layer++)
		for (int i = 0; i < KVD; i++) {
			CHECK(img[2 * (size_t)layer * per_layer + 2 * row + (size_t)i] ==
			      (float)(100 * layer + i));
			CHECK(img[(2 * (size_t)layer + 1) * per_layer + 2 * row + (size_t)i] ==
			      (float)(-100 * layer - i - 1));
		}
	/* everything else in the block is still zero */
	int nonzero = 0;
	for (size_t i = 0; i < l.block_bytes / sizeof(float); i++)
		nonzero += img[i] != 0;
	CHECK_INT(nonzero, 2 * LAYERS * KVD - 1);	/* k[0] of layer 0 is 0 */
	free(img);
	b->ops->release(b, k);
	b->ops->release(b, v);
	b->ops->free(b);
}

/* A 16-bit pool: kv_write rounds each element once to the pool's dtype
 * (to nearest even), the host image holds 2-byte elements at the same
 * places, half the bytes of F32; a dtype the kernels cannot read is
 * refused. */
TEST(kv_pool_of_16_bit_elements)
{
	static const enum dtype types[] = { DTYPE_BF16, DTYPE_F16 };
	/* 1 + 2^-8 + 2^-11 + 2^-13 is past the half-way point of both: BF16
	 * (7 fraction bits) rounds it up to 1 + 2^-7, F16 (10) to 1 + 5 x 2^-10;
	 * truncation would give 0x3f80 and 0x3c04 */
	const float x = 1.0f + 0x1p-8f + 0x1p-11f + 0x1p-13f;
	const uint16_t want[] = { 0x3f81, 0x3c05 };

	for (size_t ti = 0; ti < 2; ti++) {
		struct backend *b;
		struct backend_config bc = { .n_threads = 1, .kv_dtype = types[ti] };
		struct kv_layout l;
		CHECK(backend_create("cpu", &bc, &b) == 0);
		CHECK(b->ops->kv_create(b, LAYERS, BLOCKS, BS, KVD) == 0);
		b->ops->kv_layout(b, &l);
		CHECK(l.dtype == types[ti] && l.elem_bytes == 2);
		CHECK_INT((int)l.block_bytes, 2 * LAYERS * BS * KVD * 2);
		float *k = b->ops->alloc(b, KVD), *v = b->ops->alloc(b, KVD);
		int32_t slot = 1 * BS + 3;
		for (int i = 0; i < KVD; i++) {
			k[i] = x;
			v[i] = (float)-i;	/* small integers: exact in both */
		}
		k[KVD - 1] = -1e6f;	/* past F16's range: saturates there */
		b->ops->kv_write(b, LAYERS - 1, k, v, 1, &slot);
		uint16_t *img = calloc(1, l.block_bytes);
		b->ops->kv_block_read(b, 1, img);
		size_t per_layer = l.layer_bytes / 2, at = 3 * (size_t)KVD;
		for (int i = 0; i < KVD; i++) {
			uint16_t kh = img[2 * (size_t)(LAYERS - 1) * per_layer + at + (size_t)i];
			uint16_t vh = img[(2 * (size_t)(LAYERS - 1) + 1) * per_layer + at + (size_t)i];
			uint16_t kw = i < KVD - 1 ? want[ti] : ti ? 0xfbff : f32_to_bf16(-1e6f);
			CHECK_MSG(kh == kw, "%s: k[%d] = %#x", dtype_name(types[ti]), i, kh);
			float vf = types[ti] == DTYPE_BF16 ? bf16_to_f32(vh) : f16_to_f32(vh);
			CHECK(vf == (float)-i);
		}
		free(img);
		b->ops->release(b, k);
		b->ops->release(b, v);
		b->ops->free(b);
	}
	struct backend *b = NULL;
	struct backend_config bc = { .n_threads = 1, .kv_dtype = DTYPE_Q8_0 };
	CHECK(backend_create("cpu", &bc, &b) == -EINVAL);
	CHECK(strstr(err_msg(), "KV cache of Q8_0") != NULL);
}

TEST(kv_block_write_read_round_trip)
{
	struct backend *b = pool_backend();
	struct kv_layout l;
	CHECK(b);
	b->ops->kv_layout(b, &l);
	unsigned char *in = malloc(l.block_bytes), *out = malloc(l.block_bytes),
		      *zero = calloc(1, l.block_bytes);
	for (size_t i = 0; i < l.block_bytes; i++)
		in[i] = (unsigned char)(i * 131 + 7);
	b->ops->kv_block_write(b, 2, in);
	b->ops->kv_block_read(b, 2, out);
	CHECK(!memcmp(in, out, l.block_bytes));
	for (int j = 0; j < BLOCKS; j++) {
		if (j == 2)
			continue;
		b->ops->kv_block_read(b, j, out);
		CHECK_MSG(!memcmp(out, zero, l.block_bytes), "block %d was touched", j);
	}
	/* and moved on: block 2's image written into block 4 */
	b->ops->kv_block_read(b, 2, out);
	b->ops->kv_block_write(b, 4, out);
	b->ops->kv_block_read(b, 4, out);
	CHECK(!memcmp(in, out, l.block_bytes));
	free(in);
	free(out);
	free(zero);
	b->ops->free(b);
}

TEST(copy_rows_gathers)
{
	struct backend *b = pool_backend();
	CHECK(b);
	float *src = b->ops->alloc(b, 5 * 3), *dst = b->ops->alloc(b, 3 * 3), host[9];
	for (int i = 0; i < 15; i++)
		src[i] = (float)i;
	int32_t rows[3] = { 4, 0, 2 };
	b->ops->copy_rows(b, dst, src, 3, rows, 3);
	b->ops->to_host(b, host, dst, 9);
	static const float want[9] = { 12, 13, 14, 0, 1, 2, 6, 7, 8 };
	CHECK(!memcmp(host, want, sizeof(want)));
	b->ops->release(b, src);
	b->ops->release(b, dst);
	b->ops->free(b);
}

int main(void)
{
	return RUN_TESTS();
}
