/*
 * router_bench.c - the prefix index (core/router/indexer.h) at scale
 * ('make bench' via test/bench/router.sh), against a naive baseline
 * measured in the same run: per-worker hash sets, a request's overlap
 * found by walking every worker's set from the first block.
 *
 *   router_bench [WORKERS [PAIRS [REQUESTS]]]     (1000 1000000 20000)
 *
 * Workload: 400 shared "system prompt" prefixes of 4-32 blocks; each
 * worker holds conversations = one prefix + its own tail (8-224 blocks),
 * stored as KV "stored" events of up to 16 blocks, until PAIRS (block,
 * worker) pairs are indexed.  Requests (64-256 blocks): 50% continue a
 * cached conversation (partly or fully cached on one worker), 30% share
 * only a system prompt, 20% share nothing.  Then a churn phase: removed
 * events for whole conversations and stored events for new ones, mixed
 * with find_matches, as a router sees them (single thread).
 * Throughputs are per CPU-second of the benchmark's thread.
 */
#include "core/router/indexer.h"
#include "core/router/kv_events.h"
#include "core/router/u64map.h"
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
	struct indexer_block blk[16];
	size_t events = 0;
	uint64_t t0 = cpu_ns();
	for (size_t c = 0; c < nconvs; c++) {
		const struct conv *cv = &convs[c];
		for (size_t i = 0; i < cv->n; i += 16) {
			size_t m = cv->n - i < 16 ? cv->n - i : 16;
			for (size_t k = 0; k < m; k++)
				blk[k] = (struct indexer_block){ cv->h[i + k], 0 };
			indexer_store(ix, cv->worker, i ? cv->h[i - 1] : 0, i > 0, blk, m);
			events++;
		}
	}
	double t_ins = (double)(cpu_ns() - t0) / 1e9;
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
	       "(naive %.2fM blocks/s)\n", events, total, t_ins, events / t_ins / 1e6,
	       total / t_ins / 1e6, total / t_ins_naive / 1e6);

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
				blk[k] = (struct indexer_block){ cv->h[b + k], 0 };
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

	/* ---- the wire: decode + gap check + apply, 16-block stored events ---- */
	struct strbuf sb = STRBUF_INIT;
	struct indexer *ix2 = indexer_new();
	struct kv_sync sync;
	size_t nmsg = 20000, ev_per_msg = 4, wire_bytes = 0;
	kv_sync_init(&sync, 7);
	struct kv_event evs[4];
	struct indexer_block wb[4][16];
	char **msgs = xmalloc(nmsg * sizeof(*msgs));
	size_t *lens = xmalloc(nmsg * sizeof(*lens));
	uint64_t id = 0;
	for (size_t i = 0; i < nmsg; i++) {
		for (size_t e = 0; e < ev_per_msg; e++) {
			for (int k = 0; k < 16; k++)
				wb[e][k] = (struct indexer_block){ rnd(), rnd() };
			evs[e] = (struct kv_event){ .event_id = ++id, .kind = KV_EV_STORED,
						    .has_parent = 1, .parent_hash = rnd(),
						    .blocks = wb[e], .n = 16 };
		}
		struct kv_msg m = { evs, ev_per_msg, 0, { 0 }, 0, 0 };
		sb_reset(&sb);
		kv_msg_encode(&m, &sb);
		msgs[i] = xstrdup(sb.buf);
		lens[i] = sb.len;
		wire_bytes += sb.len;
	}
	t0 = cpu_ns();
	for (size_t i = 0; i < nmsg; i++) {
		struct kv_msg m;
		if (kv_msg_decode(msgs[i], lens[i], &m) < 0 ||
		    kv_sync_apply(&sync, ix2, &m) != KV_SYNC_OK) {
			fprintf(stderr, "router_bench: wire decode failed\n");
			return 1;
		}
		kv_msg_release(&m);
	}
	double t_wire = (double)(cpu_ns() - t0) / 1e9;
	double wire_eps = (double)(nmsg * ev_per_msg) / t_wire;
	printf("wire: %zu messages (%zu stored events of 16 blocks, %.1f MB JSON) decoded and "
	       "applied in %.3f s: %.2fM events/s, %.0f MB/s\n", nmsg, nmsg * ev_per_msg,
	       wire_bytes / 1e6, t_wire, wire_eps / 1e6, wire_bytes / t_wire / 1e6);

	printf("(checksum %llu)\n", (unsigned long long)(check + hits_nv));
	printf("FIGURE router_find_matches_p50 %.2f us %.4f naive_per_worker_sets\n", p50, p50 / p50n);
	printf("FIGURE router_find_matches_p99 %.2f us %.4f naive_per_worker_sets\n", p99, p99 / p99n);
	printf("FIGURE router_insert_blocks %.2f Mblocks/s %.2f naive_per_worker_sets\n",
	       total / t_ins / 1e6, t_ins_naive / t_ins);
	printf("FIGURE router_churn_ops %.2f Mops/s %.2f naive_per_worker_sets\n",
	       ops / t_churn / 1e6, (ops / t_churn) / ops_nv);
	printf("FIGURE router_events_applied %.2f Mevents/s - -\n", ev_churn / t_churn / 1e6);
	printf("FIGURE router_blocks_applied %.2f Mblocks/s - -\n", blk_churn / t_churn / 1e6);
	printf("FIGURE router_wire_events %.2f Mevents/s - -\n", wire_eps / 1e6);

	for (size_t i = 0; i < nmsg; i++)
		free(msgs[i]);
	free(msgs);
	free(lens);
	sb_release(&sb);
	indexer_free(ix);
	indexer_free(ix2);
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
