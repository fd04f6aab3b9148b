/*
 * test_mock.c - the mock engine: its timing model against values worked
 * out by hand from Dynamo's mocker polynomials (DESIGN.md section 1), the
 * scheduler's admission watermark against block arithmetic, and the engine
 * in mock mode on a config-only model (qwen3-0.6b-shape has no weights):
 * exactly max_tokens ordinary tokens, seeded runs reproducible, the prefix
 * cache reported, queued prefill tokens, cancel freeing the blocks,
 * engine_free() cutting a long simulated step short, the control path
 * of K/V held and pending (prefix reuse, fills, timeouts) without data,
 * and a request whose grammar mask is cold not stalling the others.
 */
#include "test/unit/check.h"
#include "test/unit/engine_collect.h"
#include "core/proto/block_hash.h"

#include "core/engine/engine.h"
#include "core/kv/block_manager.h"
#include "core/engine/mock.h"
#include "core/engine/sched.h"
#include "core/err.h"
#include "core/grammar/grammar.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SHAPE "../shared/models/qwen3-0.6b-shape"
#define QWEN_EOS 151645

#define CHECK_NEAR(a, b, tol)                                                     \
	do {                                                                      \
		double a_ = (a), b_ = (b);                                        \
		if (!(fabs(a_ - b_) <= (tol)))                                    \
			CHECK_FAIL("%s == %.9g, expected %.9g", #a, a_, b_);      \
	} while (0)

/* ---- timing model --------------------------------------------------------- */

TEST(timing_polynomials)
{
	struct mock_timing m;
	mock_timing_init(&m);
	/* 4.209989e-7 * 1000^2 + 1.518344e-2 * 1000 + 16.50142
	 *   = 0.4209989 + 15.18344 + 16.50142 */
	CHECK_NEAR(mock_prefill_ms(&m, 1000), 32.1058589, 1e-9);
	/* 4096^2 = 16777216: 7.063219... + 62.19137... + 16.50142 */
	CHECK_NEAR(mock_prefill_ms(&m, 4096), 85.75597972, 1e-6);
	CHECK_NEAR(mock_prefill_ms(&m, 8192), 169.1369184, 1e-6);
	/* -25.74 * 0.25 + 54.01 * 0.5 + 5.74 = -6.435 + 27.005 + 5.74 */
	CHECK_NEAR(mock_decode_ms(&m, 0.5), 26.31, 1e-9);
	CHECK_NEAR(mock_decode_ms(&m, 0.0), 5.74, 1e-12);
	/* -25.74 + 54.01 + 5.74 */
	CHECK_NEAR(mock_decode_ms(&m, 1.0), 34.01, 1e-9);
	/* -25.74 * 0.81 + 54.01 * 0.9 + 5.74 = -20.8494 + 48.609 + 5.74 */
	CHECK_NEAR(mock_decode_ms(&m, 0.9), 33.4996, 1e-9);
	/* the 1 ms floor: 5.74 - 54.01 - 25.74 < 1 */
	CHECK_NEAR(mock_decode_ms(&m, -1.0), 1.0, 0);
}

TEST(timing_steps_and_speedup)
{
	struct mock_timing m;
	mock_timing_init(&m);
	CHECK_NEAR(mock_step_ms(&m, 0, 0.5, 0), 0, 0);	/* nothing to do */
	CHECK_NEAR(mock_step_ms(&m, 1000, 0.5, 0), 32.1058589, 1e-9);	/* prefill only */
	CHECK_NEAR(mock_step_ms(&m, 0, 0.5, 7), 26.31, 1e-9);	/* decode only */
	/* mixed batch: 32.1058589 + 26.31 */
	CHECK_NEAR(mock_step_ms(&m, 1000, 0.5, 3), 58.4158589, 1e-9);
	m.speedup = 2;
	CHECK_NEAR(mock_step_ms(&m, 1000, 0.5, 3), 29.20792945, 1e-9);
	m.speedup = 100;
	CHECK_NEAR(mock_step_ms(&m, 0, 0.0, 1), 0.0574, 1e-12);
}

TEST(mock_tokens_ordinary_and_seeded)
{
	struct sampling_params p;
	struct sample_state a, b;
	int32_t banned[2] = { 1500, 1501 };
	int seen_low = 0, seen_high = 0;

	sampling_params_init(&p);
	p.has_seed = 1;
	p.seed = 42;
	sample_state_init(&a, &p);
	sample_state_init(&b, &p);
	for (int i = 0; i < 20000; i++) {
		int32_t t = mock_token(&a, (uint64_t)i, 151936, banned, 2);
		CHECK(t == mock_token(&b, (uint64_t)i, 151936, banned, 2));
		CHECK_MSG(t >= 1000 && t < 30000 && t != 1500 && t != 1501, "token %d", t);
		seen_low |= t < 2000;
		seen_high |= t >= 29000;
	}
	CHECK_MSG(seen_low && seen_high, "tokens cover the range");
	/* a tiny vocabulary: all of it */
	for (int i = 0; i < 1000; i++) {
		int32_t t = mock_token(&a, (uint64_t)i, 512, banned, 0);
		CHECK(t >= 0 && t < 512);
	}
	CHECK_NEAR(mock_token_logprob(151936), -log(29000.0), 1e-12);
}

/* ---- admission watermark -------------------------------------------------- */

static struct seq *new_seq(uint64_t id, int n_tokens)
{
	struct seq *q = xcalloc(1, sizeof(*q));
	q->id = id;
	q->cap = n_tokens;
	q->tokens = xcalloc((size_t)n_tokens, sizeof(int32_t));
	for (int i = 0; i < n_tokens; i++)
		q->tokens[i] = (int32_t)(id * 1000 + (uint64_t)i);
	q->n_tokens = q->n_prompt = n_tokens;
	return q;
}

static void free_seq(struct seq *q)
{
	seq_release(q);
	free(q);
}

TEST(watermark_admission)
{
	/* 100 blocks of 4 tokens, watermark 0.01: admission may fill 99. */
	struct kv_manager *kv;
	struct sched s;
	struct seq *out[8];
	CHECK(kv_new(100, 4, &kv) == 0);
	struct sched_opts so = { 8, 4096, 0, 0.01 };
	sched_init(&s, &so, kv);

	/* 400 tokens = 100 blocks > 99: never admitted, even to an empty pool */
	struct seq *big = new_seq(1, 400);
	sched_add(&s, big);
	CHECK_INT(sched_schedule(&s, out), 0);
	CHECK_INT(s.n_waiting, 1);
	CHECK_INT(kv_used(kv), 0);
	sched_remove(&s, big);
	free_seq(big);

	/* 396 tokens = 99 blocks: exactly at the mark, admitted */
	struct seq *a = new_seq(2, 396);
	sched_add(&s, a);
	CHECK_INT(sched_schedule(&s, out), 1);
	CHECK_INT(kv_used(kv), 99);
	sched_remove(&s, a);
	free_seq(a);

	/* 50 + 50 blocks = 100 > 99: the second waits */
	struct seq *b = new_seq(3, 200), *c = new_seq(4, 200), *d = new_seq(5, 192);
	sched_add(&s, b);
	sched_add(&s, c);
	CHECK_INT(sched_schedule(&s, out), 1);
	CHECK(out[0] == b);
	CHECK_INT(kv_used(kv), 50);
	CHECK_INT(s.n_waiting, 1);
	sched_remove(&s, c);
	/* b decodes its token 201: a 51st block; then 49 more would make 100 */
	sched_advance(&s, out, 1);
	seq_push(b, 7);
	struct seq *c2 = new_seq(8, 196);
	sched_add(&s, c2);
	CHECK_INT(sched_schedule(&s, out), 1);
	CHECK_INT(kv_used(kv), 51);
	sched_remove(&s, c2);
	free_seq(c2);
	/* ... but 48 more make 99: admitted */
	sched_advance(&s, out, 1);
	seq_push(b, 7);
	sched_add(&s, d);
	int n = sched_schedule(&s, out);
	CHECK_INT(n, 2);	/* b (its next token) and d */
	CHECK(out[1] == d);
	CHECK_INT(kv_used(kv), 99);

	/* without a watermark the same two fill the whole pool */
	sched_remove(&s, b);
	sched_remove(&s, d);
	sched_release(&s);
	so.watermark = 0;
	sched_init(&s, &so, kv);
	struct seq *e = new_seq(6, 200), *f = new_seq(7, 200);
	sched_add(&s, e);
	sched_add(&s, f);
	CHECK_INT(sched_schedule(&s, out), 2);
	CHECK_INT(kv_used(kv), 100);
	sched_remove(&s, e);
	sched_remove(&s, f);
	sched_release(&s);
	kv_free(kv);
	free_seq(b);
	free_seq(c);
	free_seq(d);
	free_seq(e);
	free_seq(f);
}

/* ---- waiting for KV ------------------------------------------------------- */

/* A sequence whose first 9 tokens' K/V come from elsewhere: admitted in
 * its turn to the pending list with 3 blocks of 4 (nothing scheduled, not
 * counted as running, a later sequence still runs), then once filled it
 * computes only tokens 9..13, its two full blocks registered by hash. */
TEST(sched_pending_kv_then_filled)
{
	struct kv_manager *kv;
	struct sched s;
	struct seq *out[4];
	CHECK(kv_new(10, 4, &kv) == 0);
	struct sched_opts so = { 1, 64, 1, 0 };	/* one running sequence at most */
	sched_init(&s, &so, kv);
	struct seq *p = new_seq(1, 14), *o = new_seq(2, 3);
	p->kv_pending = 9;
	sched_add(&s, p);
	sched_add(&s, o);
	CHECK_INT(sched_schedule(&s, out), 1);
	CHECK(out[0] == o);
	CHECK(p->state == SEQ_PENDING_KV && s.n_pending == 1 && s.pending[0] == p);
	CHECK_INT(p->n_blocks, 3);
	CHECK_INT(p->n_computed, 0);
	CHECK_INT(kv_used(kv), 4);
	/* 14 - 9 tokens still to compute count as queued prefill */
	CHECK_INT((int)sched_queued_prefill_tokens(&s), 5 + 3);
	sched_advance(&s, out, 1);
	sched_remove(&s, o);
	uint64_t loc[3], seq[3];
	CHECK_INT((int)block_hash_sequence(p->tokens, 14, 4, loc, seq), 3);
	CHECK(!kv_contains(kv, seq[0]));
	sched_kv_filled(&s, p, 9);
	CHECK(kv_contains(kv, seq[0]) && kv_contains(kv, seq[1]) && !kv_contains(kv, seq[2]));
	CHECK_INT(s.n_pending, 0);
	CHECK_INT(sched_schedule(&s, out), 1);
	CHECK(out[0] == p);
	CHECK_INT(p->n_computed, 9);
	CHECK_INT(p->chunk, 5);
	CHECK_INT(p->n_blocks, 4);	/* 14 tokens */
	CHECK_INT(p->n_cached, 0);	/* filled in, not from the prefix cache */
	/* removal frees the blocks of a pending sequence too */
	struct seq *q = new_seq(3, 6);
	q->kv_pending = 5;
	sched_add(&s, q);
	sched_advance(&s, out, 1);
	sched_schedule(&s, out);
	CHECK(q->state == SEQ_WAITING);	/* admission in order, within max_num_seqs */
	sched_remove(&s, p);
	CHECK_INT(sched_schedule(&s, out), 0);
	CHECK(q->state == SEQ_PENDING_KV);
	CHECK_INT(kv_used(kv), 2);
	sched_remove(&s, q);
	CHECK_INT(kv_used(kv), 0);
	sched_release(&s);
	kv_free(kv);
	free_seq(p);
	free_seq(o);
	free_seq(q);
}

/* Pending sequences reuse the cached blocks their pending tokens fall in
 * (blocks of 4): one whose cache covers more than its 9 pending tokens
 * takes three blocks and nothing new, and a fill below them counts as
 * them; one sharing only the first block takes it and two new ones, and a
 * fill of 6 has it compute from the middle of its second block. */
TEST(sched_pending_reuses_cached_blocks)
{
	struct kv_manager *kv;
	struct sched s;
	struct seq *out[4];
	CHECK(kv_new(10, 4, &kv) == 0);
	struct sched_opts so = { 4, 64, 1, 0 };
	sched_init(&s, &so, kv);
	struct seq *a = new_seq(1, 14), *p = new_seq(2, 14), *q = new_seq(3, 14);
	memcpy(p->tokens, a->tokens, 14 * sizeof(int32_t));
	memcpy(q->tokens, a->tokens, 4 * sizeof(int32_t));
	sched_add(&s, a);
	CHECK_INT(sched_schedule(&s, out), 1);
	sched_advance(&s, out, 1);	/* 14 computed: three full blocks */
	sched_remove(&s, a);
	CHECK_INT(kv_cached(kv), 3);

	p->kv_pending = 9;
	q->kv_pending = 9;
	sched_add(&s, p);
	sched_add(&s, q);
	/* queued: 14 - 12 cached for p, 14 - 9 pending for q */
	CHECK_INT((int)sched_queued_prefill_tokens(&s), 2 + 5);
	CHECK_INT(sched_schedule(&s, out), 0);
	CHECK(p->state == SEQ_PENDING_KV && q->state == SEQ_PENDING_KV);
	CHECK_INT(p->n_blocks, 3);
	CHECK_INT(p->n_computed, 12);	/* its reused blocks */
	CHECK_INT(q->n_blocks, 3);
	CHECK_INT(q->n_computed, 4);
	CHECK(p->table[0] == q->table[0]);
	CHECK_INT(kv_used(kv), 5);
	CHECK_INT((int)s.cache_hit_tokens, 12 + 4);
	CHECK_INT((int)sched_queued_prefill_tokens(&s), 2 + 5);

	sched_kv_filled(&s, p, 5);	/* fewer than its 12 reused */
	sched_kv_filled(&s, q, 6);
	CHECK_INT(s.n_pending, 0);
	CHECK_INT(sched_schedule(&s, out), 2);
	/* q was filled last, so it is first in the queue again */
	CHECK(out[0] == q && out[1] == p);
	CHECK_INT(q->n_computed, 6);
	CHECK_INT(q->chunk, 8);
	CHECK_INT(q->n_blocks, 4);
	CHECK_INT(q->n_cached, 4);
	CHECK_INT(p->n_computed, 12);
	CHECK_INT(p->chunk, 2);
	CHECK_INT(p->n_cached, 12);
	CHECK_INT((int)s.cache_hit_tokens, 12 + 4);
	sched_advance(&s, out, 2);
	sched_remove(&s, p);
	sched_remove(&s, q);
	CHECK_INT(kv_used(kv), 0);
	sched_release(&s);
	kv_free(kv);
	free_seq(a);
	free_seq(p);
	free_seq(q);
}

/* ---- the engine in mock mode ---------------------------------------------- */

static struct model *shape(void)
{
	static struct model *m;
	struct model_load_opts lo = { .format = MODEL_LOAD_DUMMY, .flags = MODEL_LOAD_META };
	if (!m && model_load(SHAPE, &lo, &m) < 0) {
		fprintf(stderr, "load: %s\n", err_msg());
		return NULL;
	}
	return m;
}

static struct engine *mock_engine(double speedup, int batched)
{
	struct engine_opts o;
	struct engine *e = NULL;
	engine_opts_init_mock(&o);
	o.mock_timing.speedup = speedup;
	if (batched)
		o.max_num_batched_tokens = batched;
	if (engine_new(shape(), &o, &e) < 0)
		fprintf(stderr, "engine_new: %s\n", err_msg());
	return e;
}

static void submit(struct engine *e, const int32_t *prompt, int n, int max_tokens,
		   uint64_t seed, struct collect *c)
{
	struct engine_request r = { .prompt = prompt, .n_prompt = n, .on_output = on_output,
				    .arg = c };
	sampling_params_init(&r.params);
	r.params.max_tokens = max_tokens;
	r.params.has_seed = seed != 0;
	r.params.seed = seed;
	c->e = e;
	CHECK_MSG(engine_submit(e, &r, &c->id) == 0, "submit: %s", err_msg());
}

static struct engine_stats settled_stats(struct engine *e)
{
	struct engine_stats st;
	for (int i = 0; i < 200; i++) {
		engine_stats(e, &st);
		if (st.running + st.waiting == 0 && st.kv_blocks_used == 0)
			break;
		usleep(10000);
	}
	return st;
}

TEST(engine_no_weights_needed)
{
	struct model *m = shape();
	CHECK_MSG(m != NULL, "config-only load");
	CHECK(m->w.layers[0].wq.data == NULL);	/* really no weights */
	struct engine *e = mock_engine(1e4, 0);
	CHECK(e != NULL);
	struct engine_stats st;
	engine_stats(e, &st);
	CHECK_INT(st.kv_blocks_total, 16384);
	CHECK_INT(st.block_size, 64);
	CHECK_INT(engine_max_model_len(e), 40960);	/* config's context */
	CHECK(strstr(engine_describe(e), "mock") != NULL);
	engine_free(e);
}

TEST(engine_exact_length_ordinary_tokens_seeded)
{
	struct engine *e = mock_engine(1e4, 0);
	int32_t prompt[300];
	for (int i = 0; i < 300; i++)
		prompt[i] = 2000 + i;
	struct collect a, b;
	collect_init(&a);
	collect_init(&b);
	submit(e, prompt, 300, 200, 7, &a);
	submit(e, prompt, 300, 200, 7, &b);
	CHECK(collect_wait(&a, 10000) && collect_wait(&b, 10000));
	CHECK_INT(a.finish, ENGINE_FINISH_LENGTH);
	CHECK_INT(a.n, 200);
	CHECK_INT(b.n, 200);
	CHECK_INT(a.n_prompt, 300);
	for (int i = 0; i < 200; i++) {
		CHECK(a.tokens[i] == b.tokens[i]);	/* same seed, same tokens */
		CHECK(a.tokens[i] != QWEN_EOS && a.tokens[i] >= 1000 && a.tokens[i] < 30000);
	}
	/* a stop id is never produced either: the request still runs to length */
	struct collect c;
	collect_init(&c);
	struct engine_request r = { .prompt = prompt, .n_prompt = 300, .on_output = on_output,
				    .arg = &c };
	sampling_params_init(&r.params);
	r.params.max_tokens = 100;
	r.params.has_seed = 1;
	r.params.seed = 7;
	r.params.n_stop_token_ids = 1;
	r.params.stop_token_ids[0] = a.tokens[0];
	CHECK(engine_submit(e, &r, NULL) == 0);
	CHECK(collect_wait(&c, 10000));
	CHECK_INT(c.finish, ENGINE_FINISH_LENGTH);
	CHECK_INT(c.n, 100);
	for (int i = 0; i < 100; i++)
		CHECK(c.tokens[i] != a.tokens[0]);
	engine_free(e);
}

TEST(engine_prefix_cache_reported)
{
	struct engine *e = mock_engine(1e4, 0);
	int32_t prompt[1000];
	for (int i = 0; i < 1000; i++)
		prompt[i] = 3000 + i;
	struct collect a, b;
	collect_init(&a);
	submit(e, prompt, 1000, 4, 0, &a);
	CHECK(collect_wait(&a, 10000));
	CHECK_INT(a.n_cached, 0);
	collect_init(&b);
	submit(e, prompt, 1000, 4, 0, &b);
	CHECK(collect_wait(&b, 10000));
	/* full 64-token blocks of the prompt, its last token recomputed:
	 * floor(999 / 64) = 15 blocks */
	CHECK_INT(b.n_cached, 15 * 64);
	struct engine_stats st = settled_stats(e);
	CHECK_INT(st.cache_hit_tokens, 960);
	CHECK_INT(st.kv_blocks_used, 0);
	CHECK(st.kv_blocks_cached >= 15);
	engine_free(e);
}

TEST(engine_queued_prefill_and_quick_free)
{
	/* speed-up 1e-3: the first prefill step lasts about 17 s */
	struct engine *e = mock_engine(1e-3, 128);
	int32_t p1[500], p2[300];
	for (int i = 0; i < 500; i++)
		p1[i] = 5000 + i;
	for (int i = 0; i < 300; i++)
		p2[i] = 9000 + i;
	struct collect a, b;
	collect_init(&a);
	collect_init(&b);
	submit(e, p1, 500, 10, 0, &a);
	struct engine_stats st;
	for (int i = 0; i < 200; i++) {	/* the first chunk is running */
		engine_stats(e, &st);
		if (st.running == 1)
			break;
		usleep(10000);
	}
	CHECK_INT(st.running, 1);
	CHECK_INT(st.queued_prefill_tokens, 500);	/* nothing computed yet */
	CHECK(st.kv_blocks_used > 0);
	CHECK_INT(st.kv_blocks_decoding, 0);		/* prefilling: not decode work */
	submit(e, p2, 300, 10, 0, &b);
	engine_stats(e, &st);
	CHECK_INT(st.queued_prefill_tokens, 800);	/* + the queued request */
	uint64_t t0 = mono_ms();
	engine_free(e);
	double took = (double)(mono_ms() - t0);
	CHECK_MSG(took < 2000, "engine_free took %.0f ms", took);
	CHECK(a.done && b.done);
	CHECK_INT(a.finish, ENGINE_FINISH_ABORT);
	CHECK_INT(b.finish, ENGINE_FINISH_ABORT);
}

TEST(engine_load_counts_a_request_as_prefill_or_decode)
{
	/* One sequence at a time: while one decodes, the next waits.  Its
	 * queued prefill tokens leave out the prefix it will find cached;
	 * the decoding blocks are the running one's, not the waiting one's. */
	struct engine_opts o;
	struct engine *e = NULL;
	engine_opts_init_mock(&o);
	o.mock_timing.speedup = 1;
	o.max_num_seqs = 1;
	CHECK_INT(engine_new(shape(), &o, &e), 0);
	int32_t p1[500], x[130];
	for (int i = 0; i < 500; i++)
		p1[i] = 5000 + i;
	for (int i = 0; i < 130; i++)
		x[i] = 20000 + i;
	struct collect a, b, c;
	collect_init(&a);
	collect_init(&b);
	collect_init(&c);
	submit(e, p1, 500, 1, 0, &a);		/* caches 7 full blocks of 64 */
	CHECK(collect_wait(&a, 5000));
	submit(e, x, 130, 400, 0, &b);		/* decodes for ~2.5 s */
	struct engine_stats st;
	for (int i = 0; i < 300; i++) {
		engine_stats(e, &st);
		if (b.n > 2)
			break;
		usleep(10000);
	}
	submit(e, p1, 500, 1, 0, &c);		/* waits behind x */
	usleep(50000);
	engine_stats(e, &st);
	CHECK_INT(st.running, 1);
	CHECK_INT(st.waiting, 1);
	CHECK_INT(st.queued_prefill_tokens, 500 - 7 * 64);
	/* x's blocks (130 tokens and what it generated so far) */
	CHECK(st.kv_blocks_decoding >= 3 && st.kv_blocks_decoding <= (130 + 400 + 63) / 64);
	CHECK_INT(st.kv_blocks_decoding, st.kv_blocks_used);
	engine_free(e);
}

TEST(engine_cancel_frees_blocks)
{
	struct engine *e = mock_engine(100, 0);
	int32_t prompt[200];
	for (int i = 0; i < 200; i++)
		prompt[i] = 4000 + i;
	struct collect a;
	collect_init(&a);
	a.cancel_after = 5;
	pthread_mutex_lock(&a.mu);	/* id set before the first output */
	struct engine_request r = { .prompt = prompt, .n_prompt = 200, .on_output = on_output,
				    .arg = &a };
	sampling_params_init(&r.params);	/* no max_tokens: until the context is full */
	a.e = e;
	int rc = engine_submit(e, &r, &a.id);
	pthread_mutex_unlock(&a.mu);
	CHECK(rc == 0);
	CHECK(collect_wait(&a, 20000));
	CHECK_INT(a.finish, ENGINE_FINISH_ABORT);
	CHECK(a.n >= 5 && a.n <= 6);
	struct engine_stats st = settled_stats(e);
	CHECK_INT(st.kv_blocks_used, 0);
	CHECK_INT(st.running + st.waiting, 0);
	engine_free(e);
}

/* Disaggregation's shape without data: a prefill engine holds a request's
 * blocks after its one token, a decode engine takes the request with its
 * prompt's K/V pending and is told they are in from inside on_kv_blocks
 * (on its step thread: the call runs at once); no KV data to move in mock
 * mode. */
struct fill_now {
	struct collect c;
	struct engine *e;
	int fill;			/* tokens to say are filled (< 0: none) */
	uint64_t id;
	int n_blocks, n_reused, rc;
};

static void fill_at_once(void *arg, uint64_t id, const int32_t *blocks, int n, int n_reused)
{
	struct fill_now *f = arg;
	(void)blocks;
	f->id = id;
	f->n_blocks = n;
	f->n_reused = n_reused;
	if (f->fill >= 0)
		f->rc = engine_kv_filled(f->e, id, f->fill);
}

static void fill_output(void *arg, const struct engine_output *o)
{
	on_output(&((struct fill_now *)arg)->c, o);
}

TEST(engine_mock_logit_bias_bans_and_prompt_logprobs)
{
	struct engine *e = mock_engine(1e4, 0);
	int32_t prompt[70];
	for (int i = 0; i < 70; i++)
		prompt[i] = 4000 + i;
	struct collect a;
	collect_init(&a);
	struct engine_request r = { .prompt = prompt, .n_prompt = 70, .on_output = on_output,
				    .arg = &a };
	sampling_params_init(&r.params);
	r.params.max_tokens = 4000;
	r.params.prompt_logprobs = 1;
	r.params.prompt_top = 1;
	/* 300 of the ~29,000 ids mock_token draws from (1000 ..) are banned:
	 * 4000 draws would meet them ~40 times */
	r.params.n_bias = SAMPLING_MAX_BIAS;
	for (int i = 0; i < SAMPLING_MAX_BIAS; i++) {
		r.params.bias_ids[i] = 1000 + i;
		r.params.bias[i] = -100;
	}
	CHECK(engine_submit(e, &r, NULL) == 0);
	CHECK(collect_wait(&a, 20000));
	CHECK_INT(a.n, 4000);
	CHECK_INT(a.n_plps, 69);
	CHECK(a.plps_in_order);
	int banned = 0;
	for (int i = 0; i < a.n; i++)
		banned += a.tokens[i] >= 1000 && a.tokens[i] < 1000 + SAMPLING_MAX_BIAS;
	CHECK_INT(banned, 0);
	/* not with the prompt's K/V computed elsewhere */
	r.kv_pending_tokens = 10;
	CHECK_INT(engine_submit(e, &r, NULL), -EINVAL);
	engine_free(e);
}

TEST(engine_hold_and_pending_kv_without_data)
{
	struct engine *pre = mock_engine(1e4, 0), *dec = mock_engine(1e4, 0);
	int32_t prompt[200], block[4];
	for (int i = 0; i < 200; i++)
		prompt[i] = 4000 + i;
	struct collect a;
	collect_init(&a);
	struct engine_request r = { .prompt = prompt, .n_prompt = 200, .on_output = on_output,
				    .arg = &a, .hold_kv = 1 };
	sampling_params_init(&r.params);
	r.params.max_tokens = 1;
	uint64_t id;
	CHECK(engine_submit(pre, &r, &id) == 0);
	CHECK(collect_wait(&a, 20000));
	int n_tokens;
	CHECK_INT(engine_kv_blocks(pre, id, block, 4, &n_tokens), 4);	/* 200 / 64 */
	CHECK_INT(n_tokens, 200);
	struct kv_layout l;
	CHECK_INT(engine_kv_layout(pre, &l), -ENOTSUP);
	CHECK_INT(engine_kv_read(pre, block[0], &l), -ENOTSUP);
	CHECK_INT(engine_kv_release(pre, id), 0);
	CHECK_INT(settled_stats(pre).kv_blocks_used, 0);

	struct fill_now f = { .e = dec, .fill = 199 };
	collect_init(&f.c);
	struct engine_request d = { .prompt = prompt, .n_prompt = 200, .on_output = fill_output,
				    .arg = &f, .kv_pending_tokens = 199,
				    .on_kv_blocks = fill_at_once };
	sampling_params_init(&d.params);
	d.params.max_tokens = 3;
	CHECK(engine_submit(dec, &d, NULL) == 0);
	CHECK(collect_wait(&f.c, 20000));
	CHECK_INT(f.n_blocks, 4);
	CHECK_INT(f.rc, 0);
	CHECK_INT(f.c.finish, ENGINE_FINISH_LENGTH);
	CHECK_INT(f.c.n, 3);
	CHECK_INT(f.n_reused, 0);
	CHECK_INT(f.c.n_cached, 0);	/* copied in, not from its prefix cache */
	CHECK_INT(settled_stats(dec).kv_blocks_used, 0);
	engine_free(pre);
	engine_free(dec);
}

/* Submit prompt (200 tokens) to e with n_pending tokens' K/V to come,
 * f->fill of them said filled from inside on_kv_blocks. */
static void submit_pending(struct engine *e, const int32_t *prompt, int n_pending, int wait_ms,
			   struct fill_now *f)
{
	collect_init(&f->c);
	f->e = e;
	f->n_blocks = f->n_reused = f->rc = 0;
	struct engine_request d = { .prompt = prompt, .n_prompt = 200, .on_output = fill_output,
				    .arg = f, .kv_pending_tokens = n_pending, .kv_wait_ms = wait_ms,
				    .on_kv_blocks = fill_at_once };
	sampling_params_init(&d.params);
	d.params.max_tokens = 3;
	CHECK(engine_submit(e, &d, NULL) == 0);
}

/* The control path of a decode engine, no data: prefix reuse for pending
 * requests, a fill refused, timeouts and cancels freeing blocks, no pool
 * memory to show. */
TEST(engine_pending_kv_reuse_and_ends_without_data)
{
	struct engine *dec = mock_engine(1e4, 0);
	int32_t prompt[200];
	for (int i = 0; i < 200; i++)
		prompt[i] = 5000 + i;
	struct iovec iov[4];
	CHECK_INT(engine_kv_segments(dec, 0, iov, 4), -ENOTSUP);
	CHECK_INT(engine_kv_regions(dec, iov, 4), -ENOTSUP);

	/* a collector per request; cold: four new blocks, filled at once;
	 * 203 tokens leave 3 cached */
	struct fill_now runs[5] = { { .fill = 199 }, { .fill = 199 }, { .fill = 0 }, { .fill = 200 },
				    { .fill = -1 } };
	struct fill_now *f = &runs[0];
	submit_pending(dec, prompt, 199, 0, f);
	CHECK(collect_wait(&f->c, 20000));
	CHECK_INT(f->rc, 0);
	CHECK_INT(f->n_blocks, 4);
	CHECK_INT(f->n_reused, 0);
	CHECK_INT(f->c.n_cached, 0);
	CHECK_INT(settled_stats(dec).kv_blocks_cached, 3);
	/* warm: three reused, the fourth new */
	f = &runs[1];
	submit_pending(dec, prompt, 199, 0, f);
	CHECK(collect_wait(&f->c, 20000));
	CHECK_INT(f->rc, 0);
	CHECK_INT(f->n_blocks, 4);
	CHECK_INT(f->n_reused, 3);
	CHECK_INT(f->c.n, 3);
	CHECK_INT(f->c.n_cached, 192);
	/* 100 pending fall in two blocks, both cached: nothing new; the
	 * fallback computes from 128 */
	f = &runs[2];
	submit_pending(dec, prompt, 100, 0, f);
	CHECK(collect_wait(&f->c, 20000));
	CHECK_INT(f->rc, 0);
	CHECK_INT(f->n_blocks, 2);
	CHECK_INT(f->n_reused, 2);
	CHECK_INT(f->c.n_cached, 128);
	CHECK_INT(f->c.finish, ENGINE_FINISH_LENGTH);

	/* more than pending is refused, the request waits on and times out */
	f = &runs[3];
	submit_pending(dec, prompt, 199, 50, f);
	CHECK(collect_wait(&f->c, 20000));
	CHECK_INT(f->rc, -EINVAL);
	CHECK_INT(f->c.finish, ENGINE_FINISH_ERROR);
	CHECK_INT(f->c.n, 0);
	struct engine_stats st = settled_stats(dec);
	CHECK_INT(st.kv_blocks_used, 0);
	CHECK_INT(st.pending_kv, 0);
	CHECK_INT(engine_kv_filled(dec, f->id, 0), -ENOENT);
	/* a cancel while pending */
	f = &runs[4];
	submit_pending(dec, prompt, 199, 0, f);
	for (int i = 0; i < 200; i++) {
		engine_stats(dec, &st);
		if (st.pending_kv == 1)
			break;
		usleep(10000);
	}
	CHECK_INT(st.pending_kv, 1);
	CHECK_INT((int)st.queued_prefill_tokens, 200 - 199);
	CHECK_INT(st.kv_blocks_used, 4);
	CHECK_INT(engine_cancel(dec, f->id), 0);
	CHECK(collect_wait(&f->c, 20000));
	CHECK_INT(f->c.finish, ENGINE_FINISH_ABORT);
	st = settled_stats(dec);
	CHECK_INT(st.kv_blocks_used, 0);
	CHECK_INT(st.pending_kv, 0);
	engine_free(dec);
}

/* Outputs of every request stamped in the order the engine made them. */
static atomic_int out_clock;

struct stamped {
	struct collect c;
	int first, last;	/* stamps of the first and last output */
};

static void on_stamped(void *arg, const struct engine_output *o)
{
	struct stamped *s = arg;
	int t = atomic_fetch_add(&out_clock, 1) + 1;
	if (!s->first)
		s->first = t;
	s->last = t;
	on_output(&s->c, o);
}

/* The first mask of a grammar over Qwen3's 151,936 ids walks the whole
 * vocabulary (milliseconds): meanwhile a plain request submitted after it
 * runs to its end.  Computed on the step thread (as before the grammar
 * thread), it would delay the plain request's first token instead. */
TEST(engine_cold_grammar_mask_does_not_stall_others)
{
	struct tok *tok;
	CHECK_MSG(tok_load(SHAPE, &tok) == 0, "tokenizer: %s", err_msg());
	int32_t eos = QWEN_EOS;
	struct gvocab *v = gvocab_from_tok(tok, 151936, &eos, 1);
	/* permissive: the first walk goes through nearly every token */
	const char *re = "[^\\n]+\\.";
	struct grammar *g;
	CHECK(grammar_compile(GRAMMAR_REGEX, re, strlen(re), 0, &g) == 0);
	struct engine *e = mock_engine(1e4, 0);
	int32_t prompt[8] = { 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007 };
	struct stamped gr = { 0 }, plain = { 0 };
	collect_init(&gr.c);
	collect_init(&plain.c);
	struct engine_request r = { .prompt = prompt, .n_prompt = 8, .on_output = on_stamped,
				    .arg = &gr, .grammar = gmatch_new(g, v) };
	sampling_params_init(&r.params);
	r.params.max_tokens = 40;
	CHECK(engine_submit(e, &r, NULL) == 0);
	r.grammar = NULL;
	r.arg = &plain;
	r.params.max_tokens = 8;
	CHECK(engine_submit(e, &r, NULL) == 0);
	CHECK(collect_wait(&plain.c, 20000) && collect_wait(&gr.c, 20000));
	CHECK_INT(plain.c.n, 8);
	CHECK_MSG(plain.last < gr.first, "the plain request ended at output %d, after the "
		  "grammar's first token (output %d)", plain.last, gr.first);
	/* the constrained text, checked by hand: no newline; ended by EOS
	 * (the grammar accepting), at a '.', or by max_tokens */
	struct strbuf text = STRBUF_INIT;
	tok_decode(tok, gr.c.tokens, (size_t)gr.c.n, 1, &text);
	CHECK_MSG(text.len >= 1 && !memchr(text.buf, '\n', text.len), "'%.*s'", (int)text.len,
		  text.buf);
	if (gr.c.finish == ENGINE_FINISH_STOP)
		CHECK_MSG(text.buf[text.len - 1] == '.', "'%.*s'", (int)text.len, text.buf);
	else
		CHECK(gr.c.finish == ENGINE_FINISH_LENGTH && gr.c.n == 40);
	sb_release(&text);
	engine_free(e);
	grammar_unref(g);
	gvocab_free(v);
	tok_free(tok);
}

int main(void)
{
	return RUN_TESTS();
}
