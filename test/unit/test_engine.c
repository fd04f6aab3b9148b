/*
 * test_engine.c - the engine against independent references: stories260K
 * greedy decoding must reproduce the published text byte for byte (single
 * sequence, and a batch of concurrent sequences through a tiny KV pool so
 * that prefix-cache hits, chunked prefill and preemption all happen);
 * the block manager's LRU and events; the sampler's support cuts against
 * hand-computed distributions; seeded sampling reproducible.
 *
 * With arguments "hash BLOCK_SIZE ID,ID,..." it prints the sequence hashes
 * of the full blocks instead (for test/integration/block_hash.py).
 */
#include "test/unit/check.h"
#include "test/unit/engine_collect.h"

#include "core/proto/block_hash.h"
#include "core/engine/engine.h"
#include "core/engine/kv.h"
#include "core/engine/sampler.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODELS "../shared/models"
#define STORIES MODELS "/stories260K"

/* Wait for a request's end (generously: sanitizer builds are slow). */
#define WAIT_MS 120000

static struct model *stories(void)
{
	static struct model *m;
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	if (!m && model_load(STORIES, &lo, &m) < 0) {
		fprintf(stderr, "load: %s\n", err_msg());
		return NULL;
	}
	return m;
}

static char *read_text(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	if (sb_read_file(&sb, path, 1 << 20) < 0)
		return NULL;
	return sb_detach(&sb, NULL);
}

/* Decode ids like the reference: tokens after BOS, special ones skipped. */
static char *decode(const int32_t *ids, int n)
{
	static struct tok *tok;
	struct strbuf sb = STRBUF_INIT;
	if (!tok && tok_load(STORIES, &tok) < 0)
		return NULL;
	tok_decode(tok, ids, (size_t)n, 1, &sb);
	return sb_detach(&sb, NULL);
}

/* Stats are published after each step, so just after the last output
 * they may lag one step: wait (at most 2 s) until the engine is idle. */
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

/* The greedy continuation of BOS: the first 199 output ids, made by
 * greedy_reference(). */
static int32_t greedy_ref[256];
static int n_greedy_ref;

static void run_one(struct engine *e, const int32_t *prompt, int n, int max_tokens,
		    struct collect *c)
{
	struct engine_request r = { .prompt = prompt, .n_prompt = n, .on_output = on_output,
				    .arg = c };
	sampling_params_init(&r.params);
	r.params.max_tokens = max_tokens;
	collect_init(c);
	CHECK_MSG(engine_submit(e, &r, NULL) == 0, "submit: %s", err_msg());
}

/* Fill greedy_ref once per process (each test case runs in a process of
 * its own, so every case that continues the reference calls this) and
 * check it against the reference text.  Returns n_greedy_ref. */
static int greedy_reference(void)
{
	if (n_greedy_ref)
		return n_greedy_ref;
	struct model *m = stories();
	CHECK(m);
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 2;
	struct engine *e;
	CHECK_MSG(engine_new(m, &o, &e) == 0, "%s", err_msg());
	int32_t bos = 1;
	struct collect c;
	run_one(e, &bos, 1, 200, &c);
	CHECK(collect_wait(&c, WAIT_MS));
	engine_free(e);
	CHECK_INT(c.n, 200);
	CHECK_INT(c.finish, ENGINE_FINISH_LENGTH);
	char *want = read_text(STORIES "/expected_greedy_from_bos.txt");
	char *got = decode(c.tokens, c.n);
	CHECK(want && got);
	CHECK_STR(got, want);
	free(want);
	free(got);
	memcpy(greedy_ref, c.tokens, sizeof(int32_t) * 199);
	n_greedy_ref = 199;
	return n_greedy_ref;
}

TEST(stories_greedy_from_bos)
{
	CHECK_INT(greedy_reference(), 199);
}

/*
 * Eight concurrent sequences, each prompted with BOS + a prefix of the
 * reference output, must continue it exactly.  A pool of 48 blocks of 4
 * tokens (192 tokens for ~1000 tokens of demand) and 7 tokens per step
 * force chunked prefill, shared prefix blocks and preemption/recompute.
 */
TEST(stories_batch_small_pool)
{
	CHECK_INT(greedy_reference(), 199);
	struct model *m = stories();
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 2;
	o.block_size = 4;
	o.kv_cache_tokens = 48 * 4;
	o.max_num_batched_tokens = 7;
	o.max_num_seqs = 6;
	struct engine *e;
	CHECK_MSG(engine_new(m, &o, &e) == 0, "%s", err_msg());
	static const int plen[] = { 1, 9, 30, 30, 57, 5, 100, 13 };
	enum { N = 8 };
	static int32_t prompts[N][200];
	struct collect c[N];
	for (int i = 0; i < N; i++) {
		prompts[i][0] = 1;
		memcpy(prompts[i] + 1, greedy_ref, sizeof(int32_t) * (size_t)(plen[i] - 1));
		run_one(e, prompts[i], plen[i], 140 - plen[i] % 50, &c[i]);
	}
	for (int i = 0; i < N; i++)
		CHECK(collect_wait(&c[i], WAIT_MS));
	struct engine_stats st = settled_stats(e);
	engine_free(e);
	for (int i = 0; i < N; i++) {
		int want = 140 - plen[i] % 50;
		if (plen[i] + want > 192)
			want = 192 - plen[i];
		CHECK_MSG(c[i].n == want, "seq %d: %d tokens, expected %d", i, c[i].n, want);
		for (int k = 0; k < c[i].n && plen[i] - 1 + k < n_greedy_ref; k++)
			CHECK_MSG(c[i].tokens[k] == greedy_ref[plen[i] - 1 + k],
				  "seq %d (prompt %d) diverges at output %d", i, plen[i], k);
	}
	CHECK_MSG(st.preemptions > 0, "no preemption happened");
	CHECK_MSG(st.cache_hit_tokens > 0, "no prefix-cache hit");
	CHECK_INT(st.running + st.waiting, 0);
	CHECK_INT(st.kv_blocks_used, 0);
}

/* A repeated prompt is served from the prefix cache (all full blocks but
 * the one holding the last token), with the same continuation. */
TEST(stories_prefix_cache_hit)
{
	CHECK_INT(greedy_reference(), 199);
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 1;
	struct engine *e;
	CHECK_MSG(engine_new(stories(), &o, &e) == 0, "%s", err_msg());
	int32_t p[40];
	p[0] = 1;
	memcpy(p + 1, greedy_ref, sizeof(int32_t) * 39);
	struct collect a, b;
	run_one(e, p, 40, 20, &a);
	CHECK(collect_wait(&a, WAIT_MS));
	run_one(e, p, 40, 20, &b);
	CHECK(collect_wait(&b, WAIT_MS));
	engine_free(e);
	CHECK_INT(a.n_cached, 0);
	CHECK_INT(b.n_cached, 32);
	CHECK_INT(a.n, 20);
	CHECK(!memcmp(a.tokens, b.tokens, sizeof(int32_t) * 20));
	CHECK(!memcmp(a.tokens, greedy_ref + 39, sizeof(int32_t) * 20));
}

struct cancel_ctx {
	struct collect c;
	struct engine *e;
	uint64_t id;
};

static void cancel_after_3(void *arg, const struct engine_output *o)
{
	struct cancel_ctx *x = arg;
	on_output(&x->c, o);
	if (o->n_generated == 3 && !o->finish)
		engine_cancel(x->e, o->id);
}

TEST(cancel_frees_blocks)
{
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 1;
	struct engine *e;
	CHECK_MSG(engine_new(stories(), &o, &e) == 0, "%s", err_msg());
	struct cancel_ctx x;
	collect_init(&x.c);
	x.e = e;
	int32_t bos = 1;
	struct engine_request r = { .prompt = &bos, .n_prompt = 1, .on_output = cancel_after_3,
				    .arg = &x };
	sampling_params_init(&r.params);
	CHECK(engine_submit(e, &r, &x.id) == 0);
	CHECK(collect_wait(&x.c, WAIT_MS));
	struct engine_stats st = settled_stats(e);
	CHECK_INT(x.c.finish, ENGINE_FINISH_ABORT);
	CHECK(x.c.n >= 3 && x.c.n <= 4);
	CHECK_INT(st.kv_blocks_used, 0);
	CHECK(engine_cancel(e, x.id) == -ENOENT);
	/* bad requests are refused up front */
	int32_t bad = 100000;
	r.prompt = &bad;
	CHECK(engine_submit(e, &r, NULL) == -EINVAL);
	r.prompt = &bos;
	r.params.top_p = 0;
	CHECK(engine_submit(e, &r, NULL) == -EINVAL);
	engine_free(e);
}

TEST(seeded_sampling_reproducible)
{
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 2;
	struct engine *e;
	CHECK_MSG(engine_new(stories(), &o, &e) == 0, "%s", err_msg());
	int32_t bos = 1;
	struct collect c[3];
	for (int i = 0; i < 3; i++) {
		struct engine_request r = { .prompt = &bos, .n_prompt = 1, .on_output = on_output,
					    .arg = &c[i] };
		sampling_params_init(&r.params);
		r.params.temperature = 1.0;
		r.params.top_p = 0.95;
		r.params.has_seed = 1;
		r.params.seed = i == 2 ? 7 : 42;
		r.params.max_tokens = 60;
		collect_init(&c[i]);
		CHECK(engine_submit(e, &r, NULL) == 0);
	}
	for (int i = 0; i < 3; i++)
		CHECK(collect_wait(&c[i], WAIT_MS));
	engine_free(e);
	CHECK(c[0].n == c[1].n && !memcmp(c[0].tokens, c[1].tokens, sizeof(int32_t) * (size_t)c[0].n));
	CHECK(c[0].n != c[2].n || memcmp(c[0].tokens, c[2].tokens, sizeof(int32_t) * (size_t)c[0].n));
}

TEST(stop_and_min_tokens)
{
	CHECK_INT(greedy_reference(), 199);
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 1;
	struct engine *e;
	CHECK_MSG(engine_new(stories(), &o, &e) == 0, "%s", err_msg());
	int32_t bos = 1;
	struct collect c;
	struct engine_request r = { .prompt = &bos, .n_prompt = 1, .on_output = on_output, .arg = &c };
	sampling_params_init(&r.params);
	/* stop at the 5th reference token */
	r.params.stop_token_ids[0] = greedy_ref[4];
	r.params.n_stop_token_ids = 1;
	collect_init(&c);
	CHECK(engine_submit(e, &r, NULL) == 0);
	CHECK(collect_wait(&c, WAIT_MS));
	int first = 0;
	while (greedy_ref[first] != greedy_ref[4])
		first++;
	CHECK_INT(c.n, first + 1);
	CHECK_INT(c.finish, ENGINE_FINISH_STOP);
	engine_free(e);
}

/* ---- block manager ------------------------------------------------------ */

struct ev_log {
	int stored, removed, cleared;
	uint64_t last_removed;
};
static void ev_stored(void *a, uint64_t p, int hp, uint64_t s, uint64_t l)
{
	(void)p, (void)hp, (void)s, (void)l;
	((struct ev_log *)a)->stored++;
}
static void ev_removed(void *a, uint64_t s)
{
	((struct ev_log *)a)->removed++;
	((struct ev_log *)a)->last_removed = s;
}
static void ev_cleared(void *a)
{
	((struct ev_log *)a)->cleared++;
}

TEST(kv_lru_and_events)
{
	struct kv_manager *kv;
	struct ev_log log = { 0 };
	struct kv_events ev = { ev_stored, ev_removed, ev_cleared, &log };
	CHECK(kv_new(3, 16, &kv) == 0);
	kv_set_events(kv, &ev);
	int32_t a = kv_alloc(kv), b = kv_alloc(kv), c = kv_alloc(kv);
	CHECK(a >= 0 && b >= 0 && c >= 0 && kv_alloc(kv) == -1);
	kv_commit(kv, a, 0, 0, 100, 100);
	kv_commit(kv, b, 100, 1, 200, 7);
	kv_commit(kv, c, 0, 0, 100, 100);	/* duplicate hash: stays unhashed */
	CHECK_INT(log.stored, 2);
	kv_release(kv, c);
	kv_release(kv, b);
	kv_release(kv, a);	/* LRU: b older than a */
	CHECK_INT(kv_used(kv), 0);
	CHECK_INT(kv_cached(kv), 2);
	CHECK_INT(kv_available(kv), 3);
	CHECK(kv_acquire_cached(kv, 100) == a);
	kv_release(kv, a);	/* a now most recent */
	int32_t x = kv_alloc(kv);	/* the free one */
	CHECK(x == c);
	int32_t y = kv_alloc(kv);	/* evicts the least recent: b */
	CHECK(y == b);
	CHECK_INT(log.removed, 1);
	CHECK(log.last_removed == 200);
	CHECK(!kv_contains(kv, 200) && kv_contains(kv, 100));
	kv_release(kv, x);
	kv_release(kv, y);
	kv_clear(kv);
	CHECK_INT(log.cleared, 1);
	CHECK(!kv_contains(kv, 100));
	CHECK_INT(kv_available(kv), 3);
	kv_free(kv);
}

TEST(block_hash_chain_shape)
{
	int32_t t[40];
	uint64_t loc[3], seq[3];
	for (int i = 0; i < 40; i++)
		t[i] = i * 7;
	CHECK_INT(block_hash_sequence(t, 40, 16, loc, seq), 2);
	CHECK(seq[0] == loc[0]);
	CHECK(seq[1] == block_hash_chain(seq[0], loc[1]));
	CHECK(loc[1] == block_hash_local(t + 16, 16));
	CHECK(loc[0] != loc[1]);
}

/* ---- sampler ------------------------------------------------------------ */

/* Logits whose softmax is exactly probs (up to rounding). */
static void logits_of(const double *probs, int n, float *out)
{
	for (int i = 0; i < n; i++)
		out[i] = probs[i] > 0 ? (float)log(probs[i]) : -INFINITY;
}

/* Draw many tokens; counts[] of each. */
static void draw_many(const struct sampling_params *p, const double *probs, int n, int draws,
		      int *counts)
{
	struct sampler *s = sampler_new(n);
	struct sample_state st;
	float lg[16];
	struct sampling_params q = *p;
	q.has_seed = 1;
	q.seed = 1234;
	sample_state_init(&st, &q);
	memset(counts, 0, sizeof(int) * (size_t)n);
	for (int d = 0; d < draws; d++) {
		struct sample_result r;
		logits_of(probs, n, lg);
		sampler_sample(s, &q, &st, lg, NULL, 0, 0, NULL, 0, &r);
		counts[r.token]++;
	}
	sampler_free(s);
}

/* probabilities 0.4 0.25 0.15 0.1 0.05 0.03 0.02 (sum 1) */
static const double P7[7] = { 0.05, 0.4, 0.03, 0.25, 0.15, 0.02, 0.1 };

TEST(sampler_top_k)
{
	struct sampling_params p;
	int cnt[7];
	sampling_params_init(&p);
	p.temperature = 1;
	p.top_k = 3;	/* ids 1, 3, 4: 0.4, 0.25, 0.15 of mass 0.8 */
	draw_many(&p, P7, 7, 20000, cnt);
	CHECK(cnt[0] == 0 && cnt[2] == 0 && cnt[5] == 0 && cnt[6] == 0);
	CHECK(fabs(cnt[1] / 20000.0 - 0.5) < 0.02);
	CHECK(fabs(cnt[3] / 20000.0 - 0.3125) < 0.02);
	CHECK(fabs(cnt[4] / 20000.0 - 0.1875) < 0.02);
}

TEST(sampler_top_p)
{
	struct sampling_params p;
	int cnt[7];
	sampling_params_init(&p);
	p.temperature = 1;
	/* sorted 0.4 0.25 0.15 0.1 ...: mass before 0.1 is 0.8 >= 0.75, so
	 * the nucleus is {1, 3, 4} */
	p.top_p = 0.75;
	draw_many(&p, P7, 7, 20000, cnt);
	CHECK(cnt[0] == 0 && cnt[2] == 0 && cnt[5] == 0 && cnt[6] == 0);
	CHECK(cnt[1] > 0 && cnt[3] > 0 && cnt[4] > 0);
	CHECK(fabs(cnt[1] / 20000.0 - 0.5) < 0.02);
	/* 0.81: mass before 0.1 is 0.8 < 0.81, so id 6 joins */
	p.top_p = 0.81;
	draw_many(&p, P7, 7, 20000, cnt);
	CHECK(cnt[6] > 0 && cnt[0] == 0);
	CHECK(fabs(cnt[6] / 20000.0 - 0.1 / 0.9) < 0.02);
}

TEST(sampler_min_p_and_temperature)
{
	struct sampling_params p;
	int cnt[7];
	sampling_params_init(&p);
	p.temperature = 1;
	p.min_p = 0.3;	/* keep p >= 0.12: ids 1, 3, 4 */
	draw_many(&p, P7, 7, 20000, cnt);
	CHECK(cnt[0] == 0 && cnt[6] == 0 && cnt[4] > 0);
	/* temperature 0.5 squares the odds: 0.4^2 : 0.25^2 ... */
	sampling_params_init(&p);
	p.temperature = 0.5;
	p.top_k = 2;
	draw_many(&p, P7, 7, 20000, cnt);
	double want = 0.16 / (0.16 + 0.0625);
	CHECK(fabs(cnt[1] / 20000.0 - want) < 0.02);
	/* greedy */
	sampling_params_init(&p);
	draw_many(&p, P7, 7, 10, cnt);
	CHECK_INT(cnt[1], 10);
}

TEST(sampler_penalties_and_logprobs)
{
	struct sampler *s = sampler_new(4);
	struct sampling_params p;
	struct sample_state st = { 1 };
	struct sample_result r;
	float lg[4] = { 2.0f, 1.0f, -1.0f, 0.5f };
	int32_t hist[3] = { 0, 0, 2 };	/* prompt {0}, output {0, 2} */
	sampling_params_init(&p);
	p.repetition_penalty = 2.0;	/* 2 -> 1, -1 -> -2 */
	p.frequency_penalty = 0.25;	/* id 0 once in output: -0.25 */
	p.presence_penalty = 0.5;	/* ids 0, 2: -0.5 */
	p.logprobs = 2;
	sampler_sample(s, &p, &st, lg, hist, 3, 2, NULL, 0, &r);
	/* 0: 1 - .25 - .5 = .25; 1: 1; 2: -2.5; 3: .5 -> greedy 1 */
	CHECK_INT(r.token, 1);
	CHECK(fabs(lg[0] - 0.25f) < 1e-6 && fabs(lg[2] + 2.75f) < 1e-6);
	double lse = log(exp(2.0) + exp(1.0) + exp(-1.0) + exp(0.5));
	CHECK(fabs(r.logprob - (1.0 - lse)) < 1e-5);	/* raw logprob */
	CHECK_INT(r.n_top, 2);
	CHECK(r.top_ids[0] == 0 && r.top_ids[1] == 1);
	CHECK(fabs(r.top_logprobs[0] - (2.0 - lse)) < 1e-5);
	/* masking (min_tokens) */
	float lg2[4] = { 2.0f, 1.0f, -1.0f, 0.5f };
	int32_t mask = 0;
	sampling_params_init(&p);
	sampler_sample(s, &p, &st, lg2, NULL, 0, 0, &mask, 1, &r);
	CHECK_INT(r.token, 1);
	sampler_free(s);
}

/* ---- hash printing mode ------------------------------------------------- */

static int print_hashes(int argc, char **argv)
{
	int bs = argc > 2 ? atoi(argv[2]) : 16;
	int32_t ids[4096];
	size_t n = 0;
	for (char *p = argc > 3 ? argv[3] : ""; *p && n < 4096;) {
		ids[n++] = (int32_t)strtol(p, &p, 10);
		if (*p == ',')
			p++;
	}
	uint64_t loc[4096], seq[4096];
	size_t nb = block_hash_sequence(ids, n, bs, loc, seq);
	for (size_t i = 0; i < nb; i++)
		printf("%llu %llu\n", (unsigned long long)loc[i], (unsigned long long)seq[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "hash"))
		return print_hashes(argc, argv);
	return RUN_TESTS();
}
