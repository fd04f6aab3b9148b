/*
 * router_bench.c - the prefix index (core/router/indexer.h) at scale
 * ('make bench' via test/bench/router.sh), against a naive baseline
 * measured in the same run: per-worker hash sets, a request's overlap
 * found by walking every worker's set from the first block.
 *
 *   router_bench [WORKERS [PAIRS [REQUESTS [TRACE]]]]     (1000 1000000 20000)
 *
 * Workload: 400 shared "system prompt" prefixes of 4-32 blocks; each
 * worker holds conversations = one prefix + its own tail (8-224 blocks),
 * stored as KV "stored" events of up to 16 blocks, until PAIRS (block,
 * worker) pairs are indexed.  Requests (64-256 blocks): 50% continue a
 * cached conversation (partly or fully cached on one worker), 30% share
 * only a system prompt, 20% share nothing.  Then a churn phase: removed
 * events for whole conversations and stored events for new ones, mixed
 * with find_matches, as a router sees them (single thread).  Then the
 * wire: the same stored events encoded as JSON and in the binary form
 * (kv_events.h), decoded and applied through the gap detector.  Last,
 * replays whose ops/s compare with Dynamo's indexer figures (4M ops/s for
 * its first radix tree, ~7M per core for the flash indexer): ops counted
 * as Dynamo's mooncake_bench counts them, one op per find_matches and per
 * KV event, with the event sizes of its mock engine (see "Dynamo-style
 * replay" below), once with WORKERS LRU caches of PAIRS / WORKERS blocks
 * and once in Dynamo's default shape (256 workers whose caches never
 * evict); TRACE is the Mooncake trace (JSONL), synthetic without.
 * Throughputs are per CPU-second of the benchmark's thread.
 */
#include "core/router/indexer.h"
#include "core/proto/kv_events.h"
#include "core/router/kv_sync.h"
#include "core/u64map.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Throughput phases are timed in this thread's CPU time, so that other
 * load on the machine does not count; per-call latencies use the
 * monotonic clock (preemption shows in p99, for both sides alike). */
static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t rs = 0x243f6a8885a308d3ull;

static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static size_t rndr(size_t lo, size_t hi)	/* [lo, hi] */
{
	return lo + (size_t)(rnd() % (hi - lo + 1));
}

#define NPREFIX 400
#define MAXLEN 256

struct conv {
	uint32_t worker;
	uint32_t n;
	uint64_t *h;
};

static uint64_t prefix[NPREFIX][32];
static uint32_t prefix_len[NPREFIX];
static struct conv *convs;
static size_t nconvs, conv_alloc;

static void make_conv(struct conv *c, uint32_t worker)
{
	uint32_t p = (uint32_t)rndr(0, NPREFIX - 1);
	uint32_t tail = (uint32_t)rndr(8, 224);
	c->worker = worker;
	c->n = prefix_len[p] + tail;
	c->h = xmalloc(c->n * sizeof(*c->h));
	memcpy(c->h, prefix[p], prefix_len[p] * sizeof(uint64_t));
	for (uint32_t i = prefix_len[p]; i < c->n; i++)
		c->h[i] = rnd();
}

/* ---- the naive baseline ------------------------------------------------- */

struct naive {
	struct u64map *sets;
	size_t nw;
};

static void naive_store(struct naive *nv, uint32_t w, const uint64_t *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		u64map_put(&nv->sets[w], h[i], 0);
}

static void naive_remove(struct naive *nv, uint32_t w, const uint64_t *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		u64map_del(&nv->sets[w], h[i]);
}

static size_t naive_find(struct naive *nv, const uint64_t *h, size_t n, uint32_t *depth)
{
	size_t hits = 0;
	for (size_t w = 0; w < nv->nw; w++) {
		size_t d = 0;
		while (d < n && u64map_get(&nv->sets[w], h[d]))
			d++;
		depth[w] = (uint32_t)d;
		hits += d > 0;
	}
	return hits;
}

/* ---- requests -------------------------------------------------------------- */

static uint64_t reqs[64][MAXLEN];
static size_t req_n[64];

static void make_request(uint64_t *h, size_t *n)
{
	size_t len = rndr(64, 256), r = rndr(0, 99), k = 0;
	if (r < 50 && nconvs) {
		const struct conv *c = &convs[rndr(0, nconvs - 1)];
		size_t keep = rndr(c->n / 2, c->n);
		for (; k < keep && k < len; k++)
			h[k] = c->h[k];
	} else if (r < 80) {
		uint32_t p = (uint32_t)rndr(0, NPREFIX - 1);
		for (; k < prefix_len[p]; k++)
			h[k] = prefix[p][k];
	}
	for (; k < len; k++)
		h[k] = rnd();
	*n = len;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(uint64_t *v, size_t n, double p)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1000.0;	/* ns -> us */
}

/* ---- Dynamo-style replay: rops counted as Dynamo's mooncake_bench ---------- */

/*
 * ai-dynamo/dynamo lib/kv-router/benches/mooncake_bench.rs replays the
 * Mooncake trace: requests are spread at random over the workers, each
 * worker's share runs through a mock engine (prefix caching, LRU
 * eviction) that emits KV events, and the indexer under test gets every
 * request as one find_matches and every event as one apply_event; its
 * "rops/s" is (requests + events) / time.  The mock engine's events are:
 * stored = the blocks a request's prefill newly computed (one event),
 * stored = one block completed during decode, removed = one evicted
 * block.  The same here: the trace (or, without it, a synthetic one of
 * the same shape) is copied with disjoint hash spaces until the
 * workers' caches overflow, the per-worker LRU simulation turns it into
 * an op list beforehand, and only applying the rops is timed.
 */
struct trace_req {
	uint32_t n, in_len, out_len;
	uint64_t *ids;
};

static struct trace_req *tr;
static size_t ntr;

static int load_trace(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0, alloc = 0;
	while (getline(&line, &cap, f) > 0) {
		char *p = strstr(line, "\"hash_ids\"");
		char *in = strstr(line, "\"input_length\"");
		char *out = strstr(line, "\"output_length\"");
		if (!p || !in || !out || !(p = strchr(p, '[')))
			continue;
		if (ntr == alloc) {
			alloc = alloc ? alloc * 2 : 4096;
			tr = xrealloc(tr, alloc * sizeof(*tr));
		}
		struct trace_req *r = &tr[ntr++];
		memset(r, 0, sizeof(*r));
		r->in_len = (uint32_t)strtoul(strchr(in, ':') + 1, NULL, 10);
		r->out_len = (uint32_t)strtoul(strchr(out, ':') + 1, NULL, 10);
		size_t ra = 0;
		for (p++;;) {
			char *end;
			while (*p == ' ' || *p == ',')
				p++;
			uint64_t v = strtoull(p, &end, 10);
			if (end == p)
				break;
			p = end;
			if (r->n == ra) {
				ra = ra ? ra * 2 : 32;
				r->ids = xrealloc(r->ids, ra * sizeof(*r->ids));
			}
			r->ids[r->n++] = v;
		}
	}
	free(line);
	fclose(f);
	return ntr ? 0 : -1;
}

/* Without the trace file: 4,000 requests of its shape (30 blocks of 512
 * tokens on average; system prompts and multi-turn continuations). */
static void synth_trace(void)
{
	uint64_t next_id = 0;
	ntr = 4000;
	tr = xcalloc(ntr, sizeof(*tr));
	for (size_t i = 0; i < ntr; i++) {
		struct trace_req *r = &tr[i];
		size_t keep = 0;
		const struct trace_req *base = NULL;
		if (i >= 50 && rndr(0, 99) < 60) {
			base = &tr[rndr(i > 400 ? i - 400 : 0, i - 1)];
			keep = rndr(1, base->n);
		}
		r->n = (uint32_t)(keep + rndr(2, 40));
		r->ids = xmalloc(r->n * sizeof(*r->ids));
		for (size_t k = 0; k < r->n; k++)
			r->ids[k] = k < keep ? base->ids[k] : next_id++;
		r->in_len = r->n * 512 - (uint32_t)rndr(0, 511);
		r->out_len = (uint32_t)rndr(10, 300);
	}
}

enum { OP_FIND, OP_STORED, OP_REMOVED };

struct op {
	uint32_t kind, worker, n;
	size_t at;		/* into op_h (find, removed) or op_b (stored) */
};

static struct op *rops;
static size_t nops, ops_alloc;
static uint64_t *op_h;
static size_t n_op_h, op_h_alloc;
static struct block_hash_pair *op_b;
static size_t n_op_b, op_b_alloc;

static struct op *op_push(uint32_t kind, uint32_t worker)
{
	if (nops == ops_alloc) {
		ops_alloc = ops_alloc ? ops_alloc * 2 : 65536;
		rops = xrealloc(rops, ops_alloc * sizeof(*rops));
	}
	struct op *o = &rops[nops++];
	o->kind = kind;
	o->worker = worker;
	o->n = 0;
	o->at = kind == OP_STORED ? n_op_b : n_op_h;
	return o;
}

static void op_h_add(struct op *o, uint64_t h)
{
	if (n_op_h == op_h_alloc) {
		op_h_alloc = op_h_alloc ? op_h_alloc * 2 : 1 << 20;
		op_h = xrealloc(op_h, op_h_alloc * sizeof(*op_h));
	}
	op_h[n_op_h++] = h;
	o->n++;
}

static void op_b_add(struct op *o, uint64_t seq, uint64_t local)
{
	if (n_op_b == op_b_alloc) {
		op_b_alloc = op_b_alloc ? op_b_alloc * 2 : 1 << 20;
		op_b = xrealloc(op_b, op_b_alloc * sizeof(*op_b));
	}
	op_b[n_op_b++] = (struct block_hash_pair){ seq, local };
	o->n++;
}

/* Per-worker LRU of cached blocks: a pool of list nodes. */
struct lru_node {
	uint64_t h;
	uint32_t prev, next;
};

static struct lru_node *pool;
static size_t pool_n, pool_alloc;
static uint32_t pool_free = UINT32_MAX;

struct wcache {
	struct u64map where;	/* seq hash -> pool index */
	uint32_t head, tail;	/* head: most recent */
	size_t n;
};

static void lru_unlink(struct wcache *c, uint32_t i)
{
	struct lru_node *x = &pool[i];
	if (x->prev != UINT32_MAX)
		pool[x->prev].next = x->next;
	else
		c->head = x->next;
	if (x->next != UINT32_MAX)
		pool[x->next].prev = x->prev;
	else
		c->tail = x->prev;
}

static void lru_push_front(struct wcache *c, uint32_t i)
{
	pool[i].prev = UINT32_MAX;
	pool[i].next = c->head;
	if (c->head != UINT32_MAX)
		pool[c->head].prev = i;
	c->head = i;
	if (c->tail == UINT32_MAX)
		c->tail = i;
}

/* Touch h in c (adding it if new); returns 1 when it was new.  Evicts the
 * least recent block first when full, as one removed event. */
static int lru_use(struct wcache *c, uint32_t w, uint64_t h, size_t capacity)
{
	const uint32_t *v = u64map_get(&c->where, h);
	if (v) {
		lru_unlink(c, *v);
		lru_push_front(c, *v);
		return 0;
	}
	if (c->n >= capacity) {
		uint32_t t = c->tail;
		struct op *o = op_push(OP_REMOVED, w);
		op_h_add(o, pool[t].h);
		lru_unlink(c, t);
		u64map_del(&c->where, pool[t].h);
		pool[t].next = pool_free;
		pool_free = t;
		c->n--;
	}
	uint32_t i;
	if (pool_free != UINT32_MAX) {
		i = pool_free;
		pool_free = pool[i].next;
	} else {
		if (pool_n == pool_alloc) {
			pool_alloc = pool_alloc ? pool_alloc * 2 : 1 << 20;
			pool = xrealloc(pool, pool_alloc * sizeof(*pool));
		}
		i = (uint32_t)pool_n++;
	}
	pool[i].h = h;
	u64map_put(&c->where, h, i);
	lru_push_front(c, i);
	c->n++;
	return 1;
}

static uint64_t chain(uint64_t parent, uint64_t local)
{
	return u64map_mix(parent * 0x9e3779b97f4a7c15ull + local);
}

/* Build the op list; returns the index of the first op after warm-up
 * (when the caches first hold 95% of their capacity). */
static size_t build_replay(size_t nw, size_t capacity, size_t copies)
{
	struct wcache *wc = xcalloc(nw, sizeof(*wc));
	uint64_t seq[4096], local[4096];
	size_t cached = 0, warm = 0;
	uint64_t max_id = 0, decode_id = 1ull << 62;
	for (size_t r = 0; r < ntr; r++)
		for (uint32_t k = 0; k < tr[r].n; k++)
			max_id = tr[r].ids[k] > max_id ? tr[r].ids[k] : max_id;
	for (size_t w = 0; w < nw; w++)
		wc[w].head = wc[w].tail = UINT32_MAX;
	for (size_t r = 0; r < ntr; r++) {
		for (size_t d = 0; d < copies; d++) {
			const struct trace_req *q = &tr[r];
			uint32_t w = (uint32_t)rndr(0, nw - 1), n = q->n < 4096 ? q->n : 4096;
			struct wcache *c = &wc[w];
			for (uint32_t k = 0; k < n; k++) {
				local[k] = u64map_mix(q->ids[k] + (max_id + 1) * d + 1);
				seq[k] = k ? chain(seq[k - 1], local[k]) : local[k];
			}
			struct op *o = op_push(OP_FIND, w);
			for (uint32_t k = 0; k < n; k++)
				op_h_add(o, seq[k]);
			/* prefill: the blocks not cached become one stored event
			 * (evictions, one removed event each, come first) */
			size_t nst = 0, first_new = n;
			uint64_t nseq[4096], nloc[4096];
			for (uint32_t k = 0; k < n; k++) {
				size_t before = c->n;
				if (lru_use(c, w, seq[k], capacity)) {
					if (first_new == n)
						first_new = k;
					nseq[nst] = seq[k];
					nloc[nst++] = local[k];
				}
				cached += c->n - before;
			}
			if (nst) {
				struct op *s = op_push(OP_STORED, w);
				for (size_t k = 0; k < nst; k++)
					op_b_add(s, nseq[k], nloc[k]);
			}
			/* decode: each block the output completes, one event */
			uint32_t tail_tokens = q->in_len % 512 + q->out_len;
			uint64_t parent = n ? seq[n - 1] : 0;
			for (uint32_t b = 0; b < tail_tokens / 512; b++) {
				uint64_t loc = u64map_mix(decode_id++), h = chain(parent, loc);
				size_t before = c->n;
				lru_use(c, w, h, capacity);
				cached += c->n - before;
				struct op *s = op_push(OP_STORED, w);
				op_b_add(s, h, loc);
				parent = h;
			}
			if (!warm && cached >= nw * capacity * 95 / 100)
				warm = nops;
		}
	}
	for (size_t w = 0; w < nw; w++)
		u64map_release(&wc[w].where);
	free(wc);
	return warm;
}

static void apply_op(struct indexer *ix, const struct op *o, uint64_t *check)
{
	const struct indexer_match *m;
	switch (o->kind) {
	case OP_FIND:
		*check += indexer_find_matches(ix, op_h + o->at, o->n, &m);
		break;
	case OP_STORED:
		indexer_store(ix, o->worker, 0, 0, op_b + o->at, o->n);
		break;
	default:
		*check += indexer_remove(ix, o->worker, op_h + o->at, o->n);
		break;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct replay_res {
	double ops_s, p99;	/* medians over the runs */
	size_t ops, pairs;
	size_t n_find, n_st, n_rm, b_find, b_st, b_rm;
};

/*
 * Build the op list for nw workers of capacity blocks over copies of the
 * trace, then apply it reps times to a fresh index (the warm-up part
 * untimed), each request's events as one message through the gap
 * detector, as a router gets them.
 */
static int replay_run(size_t nw, size_t capacity, size_t copies, int reps, uint64_t *check,
		      struct replay_res *res)
{
	nops = n_op_h = n_op_b = pool_n = 0;
	pool_free = UINT32_MAX;
	size_t warm = build_replay(nw, capacity, copies);
	memset(res, 0, sizeof(*res));
	for (size_t i = warm; i < nops; i++) {
		int k = (int)rops[i].kind;
		size_t *cnt = k == OP_FIND ? &res->n_find : k == OP_STORED ? &res->n_st : &res->n_rm;
		size_t *blk = k == OP_FIND ? &res->b_find : k == OP_STORED ? &res->b_st : &res->b_rm;
		++*cnt;
		*blk += rops[i].n;
	}
	/* The events a request caused reach the router together (one
	 * flush of the worker's publisher), as one message. */
	struct kv_sync *syncs = xcalloc(nw, sizeof(*syncs));
	uint64_t *ev_ids = xcalloc(nw, sizeof(*ev_ids));
	struct kv_msg *msgs_r = xcalloc(nops - warm + 1, sizeof(*msgs_r));
	struct kv_event *evs_r = xcalloc(nops - warm + 1, sizeof(*evs_r));
	size_t *msg_at = xmalloc((nops - warm + 1) * sizeof(*msg_at)), n_msgs = 0, n_evs = 0;
	for (size_t i = warm; i < nops;) {
		if (rops[i].kind == OP_FIND) {
			msg_at[n_msgs] = i;
			msgs_r[n_msgs++] = (struct kv_msg){ 0 };
			i++;
			continue;
		}
		uint32_t w = rops[i].worker;
		struct kv_msg *mm = &msgs_r[n_msgs];
		msg_at[n_msgs++] = i;
		mm->events = &evs_r[n_evs];
		for (; i < nops && rops[i].kind != OP_FIND && rops[i].worker == w; i++) {
			struct kv_event *e = &evs_r[n_evs++];
			e->event_id = ++ev_ids[w];
			e->kind = rops[i].kind == OP_STORED ? KV_EV_STORED : KV_EV_REMOVED;
			e->n = rops[i].n;
			if (e->kind == KV_EV_STORED)
				e->blocks = op_b + rops[i].at;
			else
				e->hashes = op_h + rops[i].at;
			mm->n_events++;
		}
	}
	uint64_t *lat_r = xmalloc((res->n_find ? res->n_find : 1) * sizeof(*lat_r));
	double ops_s[8], p99s[8];
	int rc = 0;
	reps = reps < 8 ? reps : 8;
	for (int rep = 0; rep < reps && rc == 0; rep++) {
		struct indexer *ix = indexer_new();
		for (size_t i = 0; i < warm; i++)
			apply_op(ix, &rops[i], check);
		for (size_t w = 0; w < nw; w++)
			kv_sync_init(&syncs[w], w);
		size_t nl = 0;
		uint64_t t0 = cpu_ns();
		for (size_t k = 0; k < n_msgs; k++) {
			const struct op *o = &rops[msg_at[k]];
			if (o->kind == OP_FIND) {
				uint64_t s = mono_ns();
				apply_op(ix, o, check);
				lat_r[nl++] = mono_ns() - s;
			} else if (kv_sync_apply(&syncs[o->worker], ix, &msgs_r[k]) != KV_SYNC_OK) {
				fprintf(stderr, "router_bench: replay gap\n");
				rc = -1;
				break;
			}
		}
		double t = (double)(cpu_ns() - t0) / 1e9;
		size_t applied = 0;
		for (size_t w = 0; w < nw; w++)
			applied += syncs[w].applied;
		if (rc == 0 && applied != res->n_st + res->n_rm) {
			fprintf(stderr, "router_bench: replay applied %zu of %zu events\n", applied,
				res->n_st + res->n_rm);
			rc = -1;
		}
		ops_s[rep] = (double)(nops - warm) / t;
		p99s[rep] = nl ? pct(lat_r, nl, 0.99) : 0;
		res->pairs = indexer_pairs(ix);
		indexer_free(ix);
	}
	qsort(ops_s, (size_t)reps, sizeof(double), cmp_double);
	qsort(p99s, (size_t)reps, sizeof(double), cmp_double);
	res->ops_s = ops_s[reps / 2];
	res->p99 = p99s[reps / 2];
	res->ops = nops - warm;
	free(lat_r);
	free(syncs);
	free(ev_ids);
	free(msgs_r);
	free(evs_r);
	free(msg_at);
	return rc;
}

static void replay_print(const struct replay_res *r, const char *what)
{
	printf("  %s: %zu find_matches (%.1f blocks avg), %zu stored events (%.1f blocks avg), "
	       "%zu removed events (%.1f blocks avg)\n", what, r->n_find,
	       r->n_find ? (double)r->b_find / r->n_find : 0, r->n_st,
	       r->n_st ? (double)r->b_st / r->n_st : 0, r->n_rm,
	       r->n_rm ? (double)r->b_rm / r->n_rm : 0);
	printf("  %zu ops (each request's events as one message through the gap detector): "
	       "%.2fM ops/s (requests + events; median of runs), find_matches p99 %.2f us\n",
	       r->ops, r->ops_s / 1e6, r->p99);
}

int main(int argc, char **argv)
{
	size_t nw = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
	size_t pairs = argc > 2 ? strtoul(argv[2], NULL, 10) : 1000000;
	size_t nreq = argc > 3 ? strtoul(argv[3], NULL, 10) : 20000;
	size_t nreq_naive = nreq / 10 ? nreq / 10 : 1;

	for (int p = 0; p < NPREFIX; p++) {
		prefix_len[p] = (uint32_t)rndr(4, 32);
		for (uint32_t i = 0; i < prefix_len[p]; i++)
			prefix[p][i] = rnd();
	}
	/* conversations until the target number of pairs */
	size_t total = 0;
	while (total < pairs) {
		if (nconvs == conv_alloc) {
			conv_alloc = conv_alloc ? conv_alloc * 2 : 4096;
			convs = xrealloc(convs, conv_alloc * sizeof(*convs));
		}
		make_conv(&convs[nconvs], (uint32_t)(nconvs % nw));
		total += convs[nconvs++].n;
	}

	/* ---- insert: stored events of up to 16 blocks ---- */
	struct indexer *ix = indexer_new();
	struct naive nv = { xcalloc(nw, sizeof(struct u64map)), nw };
	struct block_hash_pair blk[16];
	size_t events = 0;
	uint64_t t0 = cpu_ns();
	for (size_t c = 0; c < nconvs; c++) {
		const struct conv *cv = &convs[c];
		for (size_t i = 0; i < cv->n; i += 16) {
			size_t m = cv->n - i < 16 ? cv->n - i : 16;
			for (size_t k = 0; k < m; k++)
				blk[k] = (struct block_hash_pair){ cv->h[i + k], 0 };
			indexer_store(ix, cv->worker, i ? cv->h[i - 1] : 0, i > 0, blk, m);
			events++;
		}
	}
	double t_ins = (double)(cpu_ns() - t0) / 1e9;
	/* the same into an index sized ahead (indexer_reserve) */
	struct indexer *ixr = indexer_new();
	t0 = cpu_ns();
	indexer_reserve(ixr, total);
	for (size_t c = 0; c < nconvs; c++) {
		const struct conv *cv = &convs[c];
		for (size_t i = 0; i < cv->n; i += 16) {
			size_t m = cv->n - i < 16 ? cv->n - i : 16;
			for (size_t k = 0; k < m; k++)
				blk[k] = (struct block_hash_pair){ cv->h[i + k], 0 };
			indexer_store(ixr, cv->worker, i ? cv->h[i - 1] : 0, i > 0, blk, m);
		}
	}
	double t_ins_r = (double)(cpu_ns() - t0) / 1e9;
	if (indexer_pairs(ixr) != indexer_pairs(ix) || indexer_blocks(ixr) != indexer_blocks(ix)) {
		fprintf(stderr, "router_bench: reserved index differs\n");
		return 1;
	}
	indexer_free(ixr);
	t0 = cpu_ns();
	for (size_t c = 0; c < nconvs; c++)
		for (size_t i = 0; i < convs[c].n; i += 16) {
			size_t m = convs[c].n - i < 16 ? convs[c].n - i : 16;
			naive_store(&nv, convs[c].worker, convs[c].h + i, m);
		}
	double t_ins_naive = (double)(cpu_ns() - t0) / 1e9;
	printf("index: %zu workers, %zu conversations, %zu (block, worker) pairs, %zu distinct blocks\n",
	       nw, nconvs, indexer_pairs(ix), indexer_blocks(ix));
	printf("insert: %zu stored events (%zu blocks) in %.3f s: %.2fM events/s, %.2fM blocks/s "
	       "(naive %.2fM blocks/s; into an index reserved ahead %.2fM blocks/s)\n", events,
	       total, t_ins, events / t_ins / 1e6, total / t_ins / 1e6, total / t_ins_naive / 1e6,
	       total / t_ins_r / 1e6);

	/* ---- find_matches ---- */
	uint64_t *lat = xmalloc(nreq * sizeof(*lat)), *lat_nv = xmalloc(nreq_naive * sizeof(*lat_nv));
	uint32_t *depth = xmalloc(nw * sizeof(*depth));
	size_t hits = 0, blocks_q = 0, hits_nv = 0;
	uint64_t check = 0;
	for (int k = 0; k < 64; k++)
		make_request(reqs[k], &req_n[k]);
	/* same requests for both, and agreement on the first ones */
	for (size_t q = 0; q < nreq_naive; q++) {
		int k = (int)(q % 64);
		if (q % 64 == 63)
			make_request(reqs[rndr(0, 63)], &req_n[k]);
		uint64_t s = mono_ns();
		hits_nv += naive_find(&nv, reqs[k], req_n[k], depth);
		lat_nv[q] = mono_ns() - s;
		if (q < 64) {
			const struct indexer_match *m;
			size_t nm = indexer_find_matches(ix, reqs[k], req_n[k], &m);
			size_t agree = 0, nz = 0;
			for (size_t w = 0; w < nw; w++)
				nz += depth[w] > 0;
			for (size_t i = 0; i < nm; i++)
				agree += depth[m[i].worker] == m[i].depth;
			if (agree != nm || nm != nz) {
				fprintf(stderr, "router_bench: index and baseline disagree\n");
				return 1;
			}
		}
	}
	uint64_t tq = cpu_ns();
	for (size_t q = 0; q < nreq; q++) {
		int k = (int)(q % 64);
		if (q % 64 == 63)
			make_request(reqs[rndr(0, 63)], &req_n[k]);
		const struct indexer_match *m;
		uint64_t s = mono_ns();
		size_t nm = indexer_find_matches(ix, reqs[k], req_n[k], &m);
		lat[q] = mono_ns() - s;
		hits += nm;
		blocks_q += req_n[k];
		for (size_t i = 0; i < nm; i++)
			check += m[i].depth;
	}
	double t_q = (double)(cpu_ns() - tq) / 1e9;
	double p50 = pct(lat, nreq, 0.50), p99 = pct(lat, nreq, 0.99);
	double p50n = pct(lat_nv, nreq_naive, 0.50), p99n = pct(lat_nv, nreq_naive, 0.99);
	printf("find_matches: %zu requests of 64-256 blocks (avg %.0f), %.2f matching workers each, "
	       "matched %.1f blocks avg\n", nreq, (double)blocks_q / nreq, (double)hits / nreq,
	       hits ? (double)check / hits : 0.0);
	printf("  index: p50 %.2f us, p99 %.2f us, %.0f requests/s (with the request loop)\n",
	       p50, p99, nreq / t_q);
	printf("  naive: p50 %.2f us, p99 %.2f us (%zu requests)\n", p50n, p99n, nreq_naive);

	/* ---- churn: removed + stored events mixed with find_matches ---- */
	size_t churn = nconvs / 2, ev_churn = 0, ops = 0, fm = 0, blk_churn = 0;
	uint64_t hs[MAXLEN];
	t0 = cpu_ns();
	for (size_t i = 0; i < churn; i++) {
		struct conv *cv = &convs[rndr(0, nconvs - 1)];
		for (size_t b = 0; b < cv->n; b += 64) {	/* removed: up to 64 per event */
			size_t m = cv->n - b < 64 ? cv->n - b : 64;
			indexer_remove(ix, cv->worker, cv->h + b, m);
			ev_churn++;
			blk_churn += m;
		}
		uint32_t w = cv->worker;
		free(cv->h);
		make_conv(cv, w);
		for (size_t b = 0; b < cv->n; b += 16) {
			size_t m = cv->n - b < 16 ? cv->n - b : 16;
			for (size_t k = 0; k < m; k++)
				blk[k] = (struct block_hash_pair){ cv->h[b + k], 0 };
			indexer_store(ix, cv->worker, b ? cv->h[b - 1] : 0, b > 0, blk, m);
			ev_churn++;
			blk_churn += m;
		}
		if (i % 2 == 0) {
			size_t n;
			make_request(hs, &n);
			const struct indexer_match *m;
			check += indexer_find_matches(ix, hs, n, &m);
			fm++;
		}
	}
	double t_churn = (double)(cpu_ns() - t0) / 1e9;
	ops = ev_churn + fm;
	printf("churn: %zu events (%zu blocks) + %zu find_matches in %.3f s: %.2fM ops/s "
	       "(%.2fM events/s, %.2fM blocks/s)\n", ev_churn, blk_churn, fm, t_churn,
	       ops / t_churn / 1e6, ev_churn / t_churn / 1e6, blk_churn / t_churn / 1e6);

	/* the naive baseline on the same kind of churn (fewer rounds) */
	size_t churn_nv = churn / 4, ev_nv = 0, fm_nv = 0;
	t0 = cpu_ns();
	for (size_t i = 0; i < churn_nv; i++) {
		struct conv *cv = &convs[rndr(0, nconvs - 1)];
		for (size_t b = 0; b < cv->n; b += 64) {
			size_t m = cv->n - b < 64 ? cv->n - b : 64;
			naive_remove(&nv, cv->worker, cv->h + b, m);
			ev_nv++;
		}
		for (size_t b = 0; b < cv->n; b += 16) {
			size_t m = cv->n - b < 16 ? cv->n - b : 16;
			naive_store(&nv, cv->worker, cv->h + b, m);
			ev_nv++;
		}
		if (i % 2 == 0) {
			size_t n;
			make_request(hs, &n);
			check += naive_find(&nv, hs, n, depth);
			fm_nv++;
		}
	}
	double t_churn_nv = (double)(cpu_ns() - t0) / 1e9;
	double ops_nv = (double)(ev_nv + fm_nv) / t_churn_nv;
	printf("  naive churn: %.3fM ops/s\n", ops_nv / 1e6);

	/* ---- the wire: decode + gap check + apply, 16-block stored events,
	 * in the JSON form and in the binary form (kv_events.h) ---- */
	struct strbuf sb = STRBUF_INIT;
	size_t nmsg = 20000, ev_per_msg = 4;
	struct kv_event evs[4];
	struct block_hash_pair wb[4][16];
	char **msgs = xmalloc(nmsg * sizeof(*msgs));
	size_t *lens = xmalloc(nmsg * sizeof(*lens));
	double wire_eps[2], wire_mbs[2], wire_bpb[2];
	for (int form = 0; form < 2; form++) {
		enum kv_wire wire = form ? KV_WIRE_BINARY : KV_WIRE_JSON;
		struct indexer *ix2 = indexer_new();
		struct kv_sync sync;
		size_t wire_bytes = 0;
		uint64_t id = 0;
		kv_sync_init(&sync, 7);
		uint64_t saved = rs;
		rs = 0x5eed5eed5eedull;	/* the same events in both forms */
		for (size_t i = 0; i < nmsg; i++) {
			for (size_t e = 0; e < ev_per_msg; e++) {
				for (int k = 0; k < 16; k++)
					wb[e][k] = (struct block_hash_pair){ rnd(), rnd() };
				evs[e] = (struct kv_event){ .event_id = ++id, .kind = KV_EV_STORED,
							    .has_parent = 1, .parent_hash = rnd(),
							    .blocks = wb[e], .n = 16 };
			}
			struct kv_msg m = { .events = evs, .n_events = ev_per_msg };
			sb_reset(&sb);
			kv_msg_encode(&m, wire, &sb);
			msgs[i] = xmalloc(sb.len);
			memcpy(msgs[i], sb.buf, sb.len);
			lens[i] = sb.len;
			wire_bytes += sb.len;
		}
		rs = saved;
		uint64_t tw = cpu_ns();
		for (size_t i = 0; i < nmsg; i++) {
			struct kv_msg m;
			if (kv_msg_decode(msgs[i], lens[i], &m) < 0 ||
			    kv_sync_apply(&sync, ix2, &m) != KV_SYNC_OK) {
				fprintf(stderr, "router_bench: wire decode failed\n");
				return 1;
			}
			kv_msg_release(&m);
		}
		double t_wire = (double)(cpu_ns() - tw) / 1e9;
		/* the decode alone (no index): what the codec costs */
		tw = cpu_ns();
		for (size_t i = 0; i < nmsg; i++) {
			struct kv_msg m;
			if (kv_msg_decode(msgs[i], lens[i], &m) < 0)
				return 1;
			check += m.n_events;
			kv_msg_release(&m);
		}
		double t_dec = (double)(cpu_ns() - tw) / 1e9;
		wire_eps[form] = (double)(nmsg * ev_per_msg) / t_wire;
		wire_mbs[form] = wire_bytes / t_wire / 1e6;
		wire_bpb[form] = (double)wire_bytes / (double)(nmsg * ev_per_msg * 16);
		printf("wire (%s): %zu messages (%zu stored events of 16 blocks, %.1f MB, %.1f bytes "
		       "a block) decoded and applied in %.3f s: %.2fM events/s, %.0f MB/s; decode "
		       "alone %.2fM events/s\n", form ? "binary" : "JSON", nmsg, nmsg * ev_per_msg,
		       wire_bytes / 1e6, wire_bpb[form], t_wire, wire_eps[form] / 1e6,
		       wire_mbs[form], (double)(nmsg * ev_per_msg) / t_dec / 1e6);
		for (size_t i = 0; i < nmsg; i++)
			free(msgs[i]);
		indexer_free(ix2);
	}
	free(msgs);
	free(lens);
	sb_release(&sb);

	/* ---- Dynamo-style replay: ours (1,000 LRU workers at 1M pairs, 94% of
	 * the ops one-block removals) and Dynamo's default shape (256 workers
	 * whose caches never evict, the index growing from empty) ---- */
	const char *trace_path = argc > 4 ? argv[4] : NULL;
	int have_trace = trace_path && load_trace(trace_path) == 0;
	if (!have_trace)
		synth_trace();
	size_t capacity = pairs / nw, trace_blocks = 0;
	for (size_t r = 0; r < ntr; r++)
		trace_blocks += tr[r].n;
	struct replay_res rr, rd;
	size_t copies = (3 * nw * capacity + trace_blocks - 1) / trace_blocks;
	if (replay_run(nw, capacity, copies, 3, &check, &rr) < 0)
		return 1;
	printf("replay (Dynamo's op count): %s%s, %zu copies in disjoint hash spaces, %zu workers "
	       "of %zu blocks (LRU), index at %zu pairs\n", have_trace ? "trace " : "synthetic trace",
	       have_trace ? trace_path : "", copies, nw, capacity, rr.pairs);
	replay_print(&rr, "after warm-up");
	/* Dynamo's default: 256 workers, 1M blocks each (no evictions); the
	 * trace copied until the index holds about as many pairs as above */
	size_t d_copies = (pairs + trace_blocks - 1) / trace_blocks;
	if (replay_run(256, 1000000, d_copies, 5, &check, &rd) < 0)
		return 1;
	printf("replay, Dynamo's default shape: %zu copies, 256 workers of 1M blocks (no "
	       "evictions), from an empty index to %zu pairs\n", d_copies, rd.pairs);
	replay_print(&rd, "all ops");

	printf("(checksum %llu)\n", (unsigned long long)(check + hits_nv));
	printf("FIGURE router_find_matches_p50 %.2f us %.4f naive_per_worker_sets\n", p50, p50 / p50n);
	printf("FIGURE router_find_matches_p99 %.2f us %.4f naive_per_worker_sets\n", p99, p99 / p99n);
	printf("FIGURE router_insert_blocks %.2f Mblocks/s %.2f naive_per_worker_sets\n",
	       total / t_ins / 1e6, t_ins_naive / t_ins);
	printf("FIGURE router_insert_blocks_reserved %.2f Mblocks/s %.2f naive_per_worker_sets\n",
	       total / t_ins_r / 1e6, t_ins_naive / t_ins_r);
	printf("FIGURE router_churn_ops %.2f Mops/s %.2f naive_per_worker_sets\n",
	       ops / t_churn / 1e6, (ops / t_churn) / ops_nv);
	printf("FIGURE router_events_applied %.2f Mevents/s - -\n", ev_churn / t_churn / 1e6);
	printf("FIGURE router_blocks_applied %.2f Mblocks/s - -\n", blk_churn / t_churn / 1e6);
	printf("FIGURE router_wire_events %.2f Mevents/s %.2f json_wire\n", wire_eps[1] / 1e6,
	       wire_eps[1] / wire_eps[0]);
	printf("FIGURE router_wire_events_json %.2f Mevents/s - -\n", wire_eps[0] / 1e6);
	printf("FIGURE router_wire_bytes_per_block %.1f bytes %.3f json_wire\n", wire_bpb[1],
	       wire_bpb[1] / wire_bpb[0]);
	printf("FIGURE router_replay_ops %.2f Mops/s %.2f dynamo_flash_indexer_7M_per_core\n",
	       rr.ops_s / 1e6, rr.ops_s / 7e6);
	printf("FIGURE router_replay_find_matches_p99 %.2f us - -\n", rr.p99);
	printf("FIGURE router_replay_dynamo_default_ops %.2f Mops/s %.2f "
	       "dynamo_flash_indexer_7M_per_core\n", rd.ops_s / 1e6, rd.ops_s / 7e6);
	printf("FIGURE router_replay_dynamo_default_find_matches_p99 %.2f us - -\n", rd.p99);

	indexer_free(ix);
	free(rops);
	free(op_h);
	free(op_b);
	free(pool);
	for (size_t r = 0; r < ntr; r++)
		free(tr[r].ids);
	free(tr);
	for (size_t w = 0; w < nw; w++)
		u64map_release(&nv.sets[w]);
	free(nv.sets);
	for (size_t c = 0; c < nconvs; c++)
		free(convs[c].h);
	free(convs);
	free(lat);
	free(lat_nv);
	free(depth);
	return 0;
}
