/*
 * test_router.c - the KV router's parts (core/router/) against independent
 * references: the prefix index against a brute-force model (per-worker
 * bitmaps over a universe of block chains) on random workloads; hashes
 * chained as block_hash.h defines them, carried from a real block manager
 * (core/kv/block_manager.h) through the publisher, the wire format and the gap
 * detector into the index; the selector's choice against the cost formula
 * of DESIGN.md computed here by hand, tie-breaks and temperature against
 * the distributions they should follow; in-flight accounting, load-report
 * correction, approximate mode expiry; event encode/decode round trips and
 * malformed input.
 */
#include "test/unit/check.h"

#include "core/proto/block_hash.h"
#include "core/kv/block_manager.h"
#include "core/err.h"
#include "core/router/indexer.h"
#include "core/proto/kv_events.h"
#include "core/serve/kv_publisher.h"
#include "core/router/kv_sync.h"
#include "core/router/selector.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 88172645463325252ull;

static uint64_t rnd(void)
{
	rs ^= rs << 13;
	rs ^= rs >> 7;
	rs ^= rs << 17;
	return rs;
}

static size_t rndn(size_t n)
{
	return (size_t)(rnd() % n);
}

/* ---- indexer vs brute force -------------------------------------------- */

#define U 6000		/* blocks in the universe */
#define W 48		/* workers */
#define MAXD 48		/* deepest chain */

static uint64_t uhash[U];
static int upar[U];		/* parent index or -1 */
static int udepth[U];
static unsigned char held[W][U];	/* the model */
static uint64_t wid[W];
static int wlive[W];

static void build_universe(void)
{
	for (int i = 0; i < U; i++) {
		int p = -1;
		if (i >= 40 && rndn(10) != 0) {
			do
				p = (int)rndn((size_t)i);
			while (udepth[p] >= MAXD - 1);
		}
		upar[i] = p;
		udepth[i] = p < 0 ? 0 : udepth[p] + 1;
		uint64_t local = rnd();
		uhash[i] = p < 0 ? local : block_hash_chain(uhash[p], local);
	}
	uhash[7] = 0;	/* a zero hash must work like any other */
	for (int w = 0; w < W; w++)
		wid[w] = w == 3 ? 0 : rnd();	/* and a zero worker id */
}

/* The chain root..b as indices into path; returns its length. */
static int path_to(int b, int *path)
{
	int n = udepth[b] + 1;
	for (int k = n - 1; k >= 0; k--, b = upar[b])
		path[k] = b;
	return n;
}

static int cmp_match(const void *a, const void *b)
{
	const struct indexer_match *x = a, *y = b;
	return x->worker < y->worker ? -1 : x->worker > y->worker;
}

static void check_find(struct indexer *ix, const int *path, int n)
{
	uint64_t hs[MAXD];
	struct indexer_match want[W], got[W];
	size_t nw = 0;
	for (int k = 0; k < n; k++)
		hs[k] = uhash[path[k]];
	for (int w = 0; w < W; w++) {
		if (!wlive[w])
			continue;
		int d = 0;
		while (d < n && held[w][path[d]])
			d++;
		if (d)
			want[nw++] = (struct indexer_match){ wid[w], (uint32_t)d };
	}
	const struct indexer_match *m;
	size_t nm = indexer_find_matches(ix, hs, (size_t)n, &m);
	CHECK_INT(nm, nw);
	if (nm)
		memcpy(got, m, nm * sizeof(*m));
	qsort(got, nm, sizeof(*got), cmp_match);
	qsort(want, nw, sizeof(*want), cmp_match);
	for (size_t i = 0; i < nw; i++) {
		CHECK(got[i].worker == want[i].worker);
		CHECK_INT(got[i].depth, want[i].depth);
	}
}

static void check_counts(struct indexer *ix)
{
	size_t pairs = 0, blocks = 0, workers = 0;
	for (int w = 0; w < W; w++) {
		size_t c = 0;
		for (int b = 0; b < U; b++)
			c += held[w][b];
		CHECK_INT(indexer_worker_blocks(ix, wid[w]), c);
		pairs += c;
		workers += (size_t)wlive[w];
	}
	for (int b = 0; b < U; b++) {
		int any = 0;
		for (int w = 0; w < W; w++)
			any |= held[w][b];
		blocks += (size_t)any;
	}
	CHECK_INT(indexer_pairs(ix), pairs);
	CHECK_INT(indexer_blocks(ix), blocks);
	CHECK_INT(indexer_workers(ix), workers);
}

TEST(indexer_matches_brute_force_model)
{
	long ops = getenv("ROUTER_TEST_OPS") ? atol(getenv("ROUTER_TEST_OPS")) : 1000000;
	struct indexer *ix = indexer_new();
	int path[MAXD];
	uint64_t hs[MAXD];
	struct block_hash_pair bl[MAXD];
	build_universe();
	memset(held, 0, sizeof(held));
	memset(wlive, 0, sizeof(wlive));
	for (long op = 0; op < ops; op++) {
		int w = (int)rndn(W), r = (int)rndn(1000);
		if (r < 420) {
			/* stored: a tail of a root path (a real worker stores a
			 * chain under a parent it holds; the index must not care) */
			int n = path_to((int)rndn(U), path), from = rndn(3) ? 0 : (int)rndn((size_t)n);
			for (int k = from; k < n; k++) {
				bl[k - from] = (struct block_hash_pair){ uhash[path[k]], (uint64_t)k };
				held[w][path[k]] = 1;
			}
			indexer_store(ix, wid[w], from ? uhash[path[from - 1]] : 0, from > 0, bl,
				      (size_t)(n - from));
			wlive[w] = 1;
		} else if (r < 760) {
			/* removed: random blocks, some not held */
			int n = 1 + (int)rndn(8);
			size_t want = 0;
			for (int k = 0; k < n; k++) {
				int b = (int)rndn(U);
				if (wlive[w] && held[w][b])
					want++;
				held[w][b] = 0;
				hs[k] = uhash[b];
				/* a duplicate in one event counts once */
				for (int q = 0; q < k; q++)
					if (hs[q] == hs[k]) {
						hs[k] = uhash[(b + 1) % U];
						if (held[w][(b + 1) % U] && wlive[w])
							want++;
						held[w][(b + 1) % U] = 0;
						break;
					}
			}
			if (rndn(2))	/* a hint never changes the contents */
				indexer_prefetch(ix, hs, (size_t)n, 1);
			CHECK_INT(indexer_remove(ix, wid[w], hs, (size_t)n), want);
		} else if (r < 762) {
			indexer_clear(ix, wid[w]);
			memset(held[w], 0, U);
		} else if (r < 764) {
			indexer_purge(ix, wid[w]);
			memset(held[w], 0, U);
			wlive[w] = 0;
		} else {
			int n = path_to((int)rndn(U), path);
			check_find(ix, path, n);
		}
		if (op % 50000 == 49999)
			check_counts(ix);
		if (op % 200000 == 100000)	/* a size hint never changes the contents */
			indexer_reserve(ix, indexer_blocks(ix) * (size_t)(1 + op / 200000));
	}
	check_counts(ix);
	/* one worker keeps a request on its own: every path fully matched */
	int n = path_to(U - 1, path);
	for (int k = 0; k < n; k++)
		hs[k] = uhash[path[k]];
	indexer_store_hashes(ix, 12345, hs, (size_t)n);
	CHECK(indexer_holds(ix, 12345, hs[n - 1]));
	const struct indexer_match *m;
	size_t nm = indexer_find_matches(ix, hs, (size_t)n, &m), found = 0;
	for (size_t i = 0; i < nm; i++)
		if (m[i].worker == 12345)
			found = m[i].depth;
	CHECK_INT(found, n);
	CHECK_INT(indexer_find_matches(ix, hs, 0, &m), 0);
	indexer_free(ix);
}

TEST(indexer_many_workers_on_one_prefix)
{
	/* a system prompt on 3,000 workers, each with its own tail */
	struct indexer *ix = indexer_new();
	uint64_t base[4] = { 11, 22, 33, 44 }, req[6];
	for (uint64_t w = 1; w <= 3000; w++) {
		uint64_t h[6];
		memcpy(h, base, sizeof(base));
		h[4] = 1000 + w;
		h[5] = 100000 + w;
		indexer_store_hashes(ix, w, h, w % 2 ? 6 : 4);
	}
	memcpy(req, base, sizeof(base));
	req[4] = 1000 + 77;
	req[5] = 100000 + 77;
	const struct indexer_match *m;
	size_t nm = indexer_find_matches(ix, req, 6, &m);
	CHECK_INT(nm, 3000);
	for (size_t i = 0; i < nm; i++)
		CHECK_INT(m[i].depth, m[i].worker == 77 ? 6 : 4);
	for (uint64_t w = 1; w <= 3000; w += 2)
		indexer_purge(ix, w);
	CHECK_INT(indexer_workers(ix), 1500);
	CHECK_INT(indexer_find_matches(ix, req, 6, &m), 1500);
	CHECK_INT(indexer_blocks(ix), 4);
	indexer_free(ix);
}

/* ---- hashes from a real block manager, through the wire ----------------- */

/* What the engine does for a prompt: allocate, commit each full block. */
static void engine_like_prefill(struct kv_manager *kv, const int32_t *tok, size_t n, int bs,
				int32_t *ids, size_t *nb)
{
	uint64_t local[64], seq[64];
	*nb = block_hash_sequence(tok, n, bs, local, seq);
	for (size_t b = 0; b < *nb; b++) {
		int32_t id = kv_acquire_cached(kv, seq[b]);
		if (id < 0) {
			id = kv_alloc(kv);
			kv_commit(kv, id, b ? seq[b - 1] : 0, b > 0, seq[b], local[b]);
		}
		ids[b] = id;
	}
}

static void release_all(struct kv_manager *kv, const int32_t *ids, size_t nb)
{
	for (size_t b = nb; b-- > 0;)
		kv_release(kv, ids[b]);
}

/* Decode a publisher message and apply it; returns the sync result. */
static int deliver(struct kv_sync *s, struct indexer *ix, const struct strbuf *sb)
{
	struct kv_msg m;
	int rc = kv_msg_decode(sb->buf, sb->len, &m);
	if (rc < 0)
		return rc;
	rc = (int)kv_sync_apply(s, ix, &m);
	kv_msg_release(&m);
	return rc;
}

TEST(events_from_block_manager_reach_the_index)
{
	const int bs = 4;
	struct kv_manager *kv;
	struct kv_publisher *p = kv_publisher_new();
	struct kv_events ev;
	struct indexer *ix = indexer_new();
	struct kv_sync s;
	struct strbuf sb = STRBUF_INIT;
	int32_t a[20], b[20], ida[8], idb[8];
	size_t na, nb;

	CHECK(kv_new(8, bs, &kv) == 0);
	kv_publisher_hooks(p, &ev);
	kv_set_events(kv, &ev);
	kv_sync_init(&s, 42);
	for (int i = 0; i < 20; i++) {
		a[i] = 1000 + i;
		b[i] = i < 9 ? 1000 + i : 7 + i;	/* shares 2 full blocks of 4 */
	}
	engine_like_prefill(kv, a, 20, bs, ida, &na);
	CHECK_INT(na, 5);
	CHECK_INT(kv_publisher_pending(p), 5);
	CHECK_INT(kv_publisher_flush(p, NULL, KV_WIRE_BINARY, &sb), 1);	/* one chain: one event */
	CHECK(sb.len > 0 && sb.buf[0] == 0 && kv_msg_is_binary(sb.buf, sb.len));
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	CHECK_INT(s.last_id, 1);

	/* The request b: its hashes, computed block by block from the
	 * definition (not through block_hash_sequence). */
	uint64_t seq[5], prev = 0;
	for (int k = 0; k < 5; k++) {
		uint64_t l = block_hash_local(b + 4 * k, 4);
		seq[k] = k ? block_hash_chain(prev, l) : l;
		prev = seq[k];
	}
	const struct indexer_match *m;
	CHECK_INT(indexer_find_matches(ix, seq, 5, &m), 1);
	CHECK(m[0].worker == 42);
	CHECK_INT(m[0].depth, 2);

	/* b's prefill: 3 new blocks; the pool (8) forces evictions of a's
	 * cached tail once a is released. */
	release_all(kv, ida, na);
	sb_reset(&sb);
	engine_like_prefill(kv, b, 20, bs, idb, &nb);
	struct kv_load load = { kv_used(kv), kv_total(kv), 0, 0 };
	CHECK_INT(kv_publisher_flush(p, &load, KV_WIRE_JSON, &sb), 1);
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	CHECK(s.has_load && s.load.active_blocks == 5 && s.load.total_blocks == 8);
	CHECK_INT(indexer_find_matches(ix, seq, 5, &m), 1);
	CHECK_INT(m[0].depth, 5);

	/* Fill the pool so cached blocks get evicted: removed events. */
	int32_t c[32], idc[8];
	size_t ncb;
	release_all(kv, idb, nb);
	for (int i = 0; i < 32; i++)
		c[i] = 5000 + i;
	engine_like_prefill(kv, c, 32, bs, idc, &ncb);
	CHECK_INT(ncb, 8);
	sb_reset(&sb);
	CHECK(kv_publisher_flush(p, NULL, KV_WIRE_JSON, &sb) >= 2);
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	/* The index mirrors the block manager exactly. */
	uint64_t all[3][8];
	block_hash_sequence(a, 20, bs, NULL, all[0]);
	block_hash_sequence(b, 20, bs, NULL, all[1]);
	block_hash_sequence(c, 32, bs, NULL, all[2]);
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < (r == 2 ? 8 : 5); k++)
			CHECK_INT(indexer_holds(ix, 42, all[r][k]), kv_contains(kv, all[r][k]));
	CHECK_INT(indexer_worker_blocks(ix, 42), 8);

	/* Lose a message: the next one shows a gap; a dump resyncs. */
	release_all(kv, idc, ncb);
	engine_like_prefill(kv, a, 20, bs, ida, &na);
	sb_reset(&sb);
	CHECK(kv_publisher_flush(p, NULL, KV_WIRE_JSON, &sb) >= 1);	/* dropped on the floor */
	release_all(kv, ida, na);
	kv_clear(kv);
	engine_like_prefill(kv, b, 20, bs, idb, &nb);
	sb_reset(&sb);
	CHECK(kv_publisher_flush(p, NULL, KV_WIRE_JSON, &sb) >= 1);
	uint64_t before = s.last_id;
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_NEED_RESYNC);
	CHECK(s.gaps == 1 && s.last_id == before);
	/* the dump in both forms: the same groups */
	struct strbuf bin = STRBUF_INIT;
	struct kv_msg dj, db;
	sb_reset(&sb);
	kv_publisher_dump(p, KV_WIRE_JSON, &sb);
	CHECK(sb.buf[0] == '{');
	kv_publisher_dump(p, KV_WIRE_BINARY, &bin);
	CHECK(kv_msg_is_binary(bin.buf, bin.len) && bin.len < sb.len);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &dj), 0);
	CHECK_INT(kv_msg_decode(bin.buf, bin.len, &db), 0);
	CHECK(db.is_dump && db.dump_last_id == dj.dump_last_id && db.n_events == dj.n_events);
	for (size_t i = 0; i < dj.n_events; i++)
		CHECK(db.events[i].n == 1 && dj.events[i].n == 1 &&
		      db.events[i].has_parent == dj.events[i].has_parent &&
		      db.events[i].parent_hash == dj.events[i].parent_hash &&
		      db.events[i].blocks[0].seq_hash == dj.events[i].blocks[0].seq_hash &&
		      db.events[i].blocks[0].local_hash == dj.events[i].blocks[0].local_hash);
	kv_msg_release(&dj);
	kv_msg_release(&db);
	sb_release(&bin);
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	CHECK(s.resyncs == 1 && s.last_id == kv_publisher_last_id(p));
	for (int r = 0; r < 3; r++)
		for (int k = 0; k < (r == 2 ? 8 : 5); k++)
			CHECK_INT(indexer_holds(ix, 42, all[r][k]), kv_contains(kv, all[r][k]));
	/* Events continue after the dump; a replayed old message is skipped. */
	release_all(kv, idb, nb);
	kv_clear(kv);
	sb_reset(&sb);
	CHECK(kv_publisher_flush(p, NULL, KV_WIRE_JSON, &sb) >= 1);
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	CHECK_INT(deliver(&s, ix, &sb), KV_SYNC_OK);
	CHECK(s.skipped >= 1);
	for (int k = 0; k < 5; k++)
		CHECK_INT(indexer_holds(ix, 42, all[1][k]), kv_contains(kv, all[1][k]));

	sb_release(&sb);
	kv_free(kv);
	kv_publisher_free(p);
	indexer_free(ix);
}

/* ---- wire format ------------------------------------------------------- */

TEST(events_round_trip)
{
	struct block_hash_pair blocks[3] = { { UINT64_MAX, 0 }, { 1, UINT64_MAX - 1 },
					   { 0x8000000000000001ull, 12345 } };
	uint64_t rem[2] = { 18446744073709551615ull, 0 };
	struct kv_event evs[4] = {
		{ .event_id = 1, .kind = KV_EV_STORED, .has_parent = 1,
		  .parent_hash = 9007199254740993ull, .blocks = blocks, .n = 3 },
		{ .event_id = 2, .kind = KV_EV_STORED, .blocks = blocks, .n = 1 },
		{ .event_id = 3, .kind = KV_EV_REMOVED, .hashes = rem, .n = 2 },
		{ .event_id = UINT64_MAX, .kind = KV_EV_CLEARED },
	};
	struct kv_msg m = { evs, 4, 1, { 5, 100, 2, -1 }, 0, 0, NULL }, d;
	struct strbuf sb = STRBUF_INIT, sb2 = STRBUF_INIT;
	kv_msg_encode(&m, KV_WIRE_JSON, &sb);
	/* 2^53 + 1 must survive (it does not through a double) */
	CHECK(strstr(sb.buf, "\"parent_hash\":9007199254740993,"));
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK_INT(d.n_events, 4);
	CHECK(d.events[0].has_parent && d.events[0].parent_hash == 9007199254740993ull);
	CHECK_INT(d.events[0].n, 3);
	for (int i = 0; i < 3; i++)
		CHECK(d.events[0].blocks[i].seq_hash == blocks[i].seq_hash &&
		      d.events[0].blocks[i].local_hash == blocks[i].local_hash);
	CHECK(!d.events[1].has_parent && d.events[1].kind == KV_EV_STORED);
	CHECK(d.events[2].kind == KV_EV_REMOVED && d.events[2].n == 2 &&
	      d.events[2].hashes[0] == UINT64_MAX && d.events[2].hashes[1] == 0);
	CHECK(d.events[3].kind == KV_EV_CLEARED && d.events[3].event_id == UINT64_MAX);
	CHECK(d.has_load && d.load.active_blocks == 5 && d.load.total_blocks == 100 &&
	      d.load.waiting == 2 && d.load.queued_prefill_tokens == -1);
	kv_msg_encode(&d, KV_WIRE_JSON, &sb2);
	CHECK_STR(sb2.buf, sb.buf);
	kv_msg_release(&d);

	/* a dump, and a message written by hand (whitespace, unknown members
	 * of every shape, members in another order) */
	struct kv_msg dm = { evs, 2, 0, { 0 }, 1, 77, NULL };
	sb_reset(&sb);
	kv_msg_encode(&dm, KV_WIRE_JSON, &sb);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.is_dump && d.dump_last_id == 77 && d.n_events == 2 && d.events[0].n == 3);
	kv_msg_release(&d);
	const char *hand = " { \"x\" : [1, {\"a\": [true, false, null, -1.5e3, \"s\\u00e9\\n\"]}],"
			   "\"events\": [ {\"removed\": {\"seq_hashes\": [3, 4], \"why\": \"lru\"},"
			   " \"event_id\": 7}, {\"event_id\":8, \"cleared\": null} ] } ";
	CHECK_INT(kv_msg_decode(hand, strlen(hand), &d), 0);
	CHECK(d.n_events == 2 && d.events[0].event_id == 7 && d.events[0].n == 2 &&
	      d.events[0].hashes[1] == 4 && d.events[1].kind == KV_EV_CLEARED && !d.has_load);
	kv_msg_release(&d);
	sb_release(&sb);
	sb_release(&sb2);
}

TEST(malformed_events_are_errors)
{
	static const char *const bad[] = {
		"", " ", "[]", "null", "{", "}", "{\"events\":}", "{\"events\":[{}]}",
		"{\"events\":[{\"event_id\":1}]}",
		"{\"events\":[{\"stored\":{\"blocks\":[]}}]}",
		"{\"events\":[{\"event_id\":-1,\"cleared\":{}}]}",
		"{\"events\":[{\"event_id\":1.0,\"cleared\":{}}]}",
		"{\"events\":[{\"event_id\":01,\"cleared\":{}}]}",
		"{\"events\":[{\"event_id\":18446744073709551616,\"cleared\":{}}]}",
		"{\"events\":[{\"event_id\":1,\"cleared\":{},\"removed\":{\"seq_hashes\":[]}}]}",
		"{\"events\":[{\"event_id\":1,\"stored\":{\"parent_hash\":null}}]}",
		"{\"events\":[{\"event_id\":1,\"stored\":{\"blocks\":[{\"local_hash\":1}]}}]}",
		"{\"events\":[{\"event_id\":1,\"stored\":{\"blocks\":[{\"seq_hash\":\"1\"}]}}]}",
		"{\"events\":[{\"event_id\":1,\"removed\":{}}]}",
		"{\"events\":[{\"event_id\":1,\"removed\":{\"seq_hashes\":[1,]}}]}",
		"{\"events\":[{\"event_id\":1,\"cleared\":5}]}",
		"{\"events\":[],\"events\":[]}",
		"{\"events\":[]} x",
		"{\"dump\":{\"stored\":[]}}",
		"{\"events\":[],\"dump\":{\"last_event_id\":1,\"stored\":[]}}",
		"{\"load\":{\"waiting\":1e3}}",
		"{\"load\":{\"waiting\":-9223372036854775809}}",
		"{\"x\":\"\\q\"}", "{\"x\":\"\\u12\"}", "{\"x\":tru}", "{\"x\":\"a\nb\"}",
		"{\"x\" 1}", "{\"x\":1 \"y\":2}", "{\"x\":[1 2]}", "{\"x\":-}", "{\"x\":1.}",
		"{\"x\":1e}", "{\"x\":01}",
	};
	struct kv_msg m;
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		err_clear();
		CHECK_MSG(kv_msg_decode(bad[i], strlen(bad[i]), &m) == -EINVAL,
			  "accepted: %s", bad[i]);
		CHECK(err_msg()[0]);
		CHECK(m.events == NULL && m.n_events == 0);
	}
	/* nesting: bounded, not a stack overflow */
	char deep[4096];
	size_t k = 0;
	k += (size_t)snprintf(deep, sizeof(deep), "{\"x\":");
	for (int i = 0; i < 1000; i++)
		deep[k++] = '[';
	CHECK_INT(kv_msg_decode(deep, k, &m), -EINVAL);
	/* every proper prefix of a valid message is an error */
	const char *ok = "{\"events\":[{\"event_id\":1,\"stored\":{\"parent_hash\":5,"
			 "\"blocks\":[{\"seq_hash\":6,\"local_hash\":7}]}}],"
			 "\"load\":{\"active_blocks\":1,\"total_blocks\":2,\"waiting\":0,"
			 "\"queued_prefill_tokens\":0}}";
	for (size_t n = 0; n < strlen(ok); n++)
		CHECK_MSG(kv_msg_decode(ok, n, &m) == -EINVAL, "prefix %zu accepted", n);
	CHECK_INT(kv_msg_decode(ok, strlen(ok), &m), 0);
	kv_msg_release(&m);
}

/* The binary form, byte by byte as kv_events.h documents it (written out
 * here by hand, not produced by the encoder). */
static const unsigned char hand_bin[] = {
	0x00, 0x4b, 0x56, 0x42, 0x01, 0x01,		/* magic, version 1, load */
	0x05, 0, 0, 0, 0, 0, 0, 0,			/* active_blocks 5 */
	0x64, 0, 0, 0, 0, 0, 0, 0,			/* total_blocks 100 */
	0x02, 0, 0, 0, 0, 0, 0, 0,			/* waiting 2 */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* queued -1 */
	0x03,						/* 3 events */
	0x11, 0x01,					/* stored + parent, id 1 */
	0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, /* parent */
	0x02,						/* 2 blocks */
	0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, /* seq */
	0x21, 0, 0, 0, 0, 0, 0, 0,			/* local */
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* seq */
	0, 0, 0, 0, 0, 0, 0, 0x80,			/* local */
	0x02, 0xac, 0x02,				/* removed, id 300 */
	0x01,						/* 1 hash */
	0x01, 0, 0, 0, 0, 0, 0, 0,
	0x03, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, /* cleared, id 2^64-1 */
};

TEST(binary_form_matches_the_documented_layout)
{
	struct block_hash_pair blocks[2] = { { 0x1112131415161718ull, 0x21 },
					   { UINT64_MAX, 0x8000000000000000ull } };
	uint64_t rem[1] = { 1 };
	struct kv_event evs[3] = {
		{ .event_id = 1, .kind = KV_EV_STORED, .has_parent = 1,
		  .parent_hash = 0x0102030405060708ull, .blocks = blocks, .n = 2 },
		{ .event_id = 300, .kind = KV_EV_REMOVED, .hashes = rem, .n = 1 },
		{ .event_id = UINT64_MAX, .kind = KV_EV_CLEARED },
	};
	struct kv_msg m = { .events = evs, .n_events = 3, .has_load = 1,
			    .load = { 5, 100, 2, -1 } }, d;
	struct strbuf sb = STRBUF_INIT, j1 = STRBUF_INIT, j2 = STRBUF_INIT;

	kv_msg_encode(&m, KV_WIRE_BINARY, &sb);
	CHECK_INT(sb.len, sizeof(hand_bin));
	CHECK(memcmp(sb.buf, hand_bin, sizeof(hand_bin)) == 0);
	CHECK(kv_msg_is_binary(hand_bin, sizeof(hand_bin)));

	/* the hand-written bytes decode to the message: the same JSON */
	CHECK_INT(kv_msg_decode((const char *)hand_bin, sizeof(hand_bin), &d), 0);
	CHECK(d.n_events == 3 && d.has_load && !d.is_dump);
	CHECK(d.events[0].kind == KV_EV_STORED && d.events[0].has_parent &&
	      d.events[0].parent_hash == 0x0102030405060708ull && d.events[0].n == 2 &&
	      d.events[0].blocks[1].local_hash == 0x8000000000000000ull);
	CHECK(d.events[1].kind == KV_EV_REMOVED && d.events[1].event_id == 300 &&
	      d.events[1].n == 1 && d.events[1].hashes[0] == 1);
	CHECK(d.events[2].kind == KV_EV_CLEARED && d.events[2].event_id == UINT64_MAX);
	CHECK(d.load.queued_prefill_tokens == -1 && d.load.total_blocks == 100);
	kv_msg_encode(&m, KV_WIRE_JSON, &j1);
	kv_msg_encode(&d, KV_WIRE_JSON, &j2);
	CHECK_STR(j2.buf, j1.buf);
	kv_msg_release(&d);

	/* a dump: no event ids, groups only; no load */
	static const unsigned char hand_dump[] = {
		0x00, 0x4b, 0x56, 0x42, 0x01, 0x02,
		0x4d, 0, 0, 0, 0, 0, 0, 0,		/* last_event_id 77 */
		0x02,					/* 2 groups */
		0x01, 0x01,				/* no parent, 1 block */
		0x09, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0, 0, 0, 0,
		0x11, 0x09, 0, 0, 0, 0, 0, 0, 0,	/* parent 9 */
		0x00,					/* 0 blocks */
	};
	struct block_hash_pair g0 = { 9, 10 };
	struct kv_event groups[2] = {
		{ .kind = KV_EV_STORED, .blocks = &g0, .n = 1, .event_id = 5 },
		{ .kind = KV_EV_STORED, .has_parent = 1, .parent_hash = 9 },
	};
	struct kv_msg dm = { .events = groups, .n_events = 2, .is_dump = 1, .dump_last_id = 77 };
	sb_reset(&sb);
	kv_msg_encode(&dm, KV_WIRE_BINARY, &sb);
	CHECK_INT(sb.len, sizeof(hand_dump));
	CHECK(memcmp(sb.buf, hand_dump, sizeof(hand_dump)) == 0);
	CHECK_INT(kv_msg_decode((const char *)hand_dump, sizeof(hand_dump), &d), 0);
	CHECK(d.is_dump && d.dump_last_id == 77 && d.n_events == 2 && !d.has_load);
	CHECK(d.events[0].n == 1 && d.events[0].blocks[0].local_hash == 10 &&
	      d.events[1].has_parent && d.events[1].n == 0);
	kv_msg_release(&d);

	/* an empty message: the header and a zero count */
	struct kv_msg empty = { 0 };
	sb_reset(&sb);
	kv_msg_encode(&empty, KV_WIRE_BINARY, &sb);
	CHECK_INT(sb.len, 7);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.n_events == 0 && !d.has_load);
	kv_msg_release(&d);

	/* JSON is still accepted by the same decoder */
	CHECK_INT(kv_msg_decode(j1.buf, j1.len, &d), 0);
	CHECK(d.n_events == 3 && d.events[1].event_id == 300);
	kv_msg_release(&d);
	/* the whole i64 range of a load travels in both forms */
	struct kv_msg lm = { .has_load = 1, .load = { INT64_MIN, INT64_MAX, 0, -1 } };
	sb_reset(&sb);
	kv_msg_encode(&lm, KV_WIRE_JSON, &sb);
	CHECK(strstr(sb.buf, "-9223372036854775808"));
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.load.active_blocks == INT64_MIN && d.load.total_blocks == INT64_MAX);
	kv_msg_release(&d);
	sb_reset(&sb);
	kv_msg_encode(&lm, KV_WIRE_BINARY, &sb);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.load.active_blocks == INT64_MIN && d.load.queued_prefill_tokens == -1);
	kv_msg_release(&d);
	sb_release(&sb);
	sb_release(&j1);
	sb_release(&j2);
}

static uint64_t xs64(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

TEST(binary_form_round_trips_random_messages)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;
#define R() xs64(&x)
	for (int round = 0; round < 200; round++) {
		struct kv_event evs[12];
		struct block_hash_pair blk[12][20];
		uint64_t hs[12][20];
		size_t ne = R() % 12;
		for (size_t i = 0; i < ne; i++) {
			unsigned shift = (unsigned)(R() % 64);
			evs[i] = (struct kv_event){ .event_id = R() >> shift };
			evs[i].kind = (enum kv_event_kind)(1 + R() % 3);
			evs[i].n = evs[i].kind == KV_EV_CLEARED ? 0 : R() % 20;
			evs[i].has_parent = evs[i].kind == KV_EV_STORED && (R() & 1);
			evs[i].parent_hash = evs[i].has_parent ? R() : 0;
			for (size_t k = 0; k < evs[i].n; k++) {
				blk[i][k] = (struct block_hash_pair){ R(), R() };
				hs[i][k] = R();
			}
			evs[i].blocks = evs[i].kind == KV_EV_STORED ? blk[i] : NULL;
			evs[i].hashes = evs[i].kind == KV_EV_REMOVED ? hs[i] : NULL;
		}
		struct kv_msg m = { .events = evs, .n_events = ne, .has_load = (int)(R() & 1),
				    .load = { (int64_t)R(), (int64_t)R(), (int64_t)R(), (int64_t)R() } };
		if (round % 4 == 0) {	/* a dump */
			m.is_dump = 1;
			m.dump_last_id = R();
			for (size_t i = 0; i < ne; i++) {
				evs[i].kind = KV_EV_STORED;
				evs[i].blocks = blk[i];
				evs[i].event_id = 0;
			}
		}
		struct strbuf b = STRBUF_INIT, j1 = STRBUF_INIT, j2 = STRBUF_INIT;
		struct kv_msg d;
		kv_msg_encode(&m, KV_WIRE_BINARY, &b);
		CHECK_INT(kv_msg_decode(b.buf, b.len, &d), 0);
		/* equal as the JSON form renders them */
		kv_msg_encode(&m, KV_WIRE_JSON, &j1);
		kv_msg_encode(&d, KV_WIRE_JSON, &j2);
		CHECK_STR(j2.buf, j1.buf);
		kv_msg_release(&d);
		sb_release(&b);
		sb_release(&j1);
		sb_release(&j2);
	}
#undef R
}

TEST(malformed_binary_is_an_error)
{
	struct kv_msg m;
	unsigned char buf[sizeof(hand_bin) + 1];

	/* every proper prefix, and one trailing byte */
	for (size_t n = 0; n < sizeof(hand_bin); n++) {
		memcpy(buf, hand_bin, n);
		err_clear();
		CHECK_MSG(kv_msg_decode((const char *)buf, n, &m) == -EINVAL,
			  "prefix %zu accepted", n);
		CHECK(err_msg()[0] && m.events == NULL && m.n_events == 0);
	}
	memcpy(buf, hand_bin, sizeof(hand_bin));
	buf[sizeof(hand_bin)] = 0;
	CHECK_INT(kv_msg_decode((const char *)buf, sizeof(hand_bin) + 1, &m), -EINVAL);

	/* single-byte changes at known places */
	static const struct { size_t at; unsigned char v; } bad[] = {
		{ 1, 'X' },		/* magic */
		{ 4, 2 },		/* an unknown version */
		{ 5, 0x05 },		/* an unknown flag */
		{ 38, 0x04 },		/* event count larger than the events */
		{ 38, 0xff },		/* an unterminated count varint */
		{ 39, 0x51 },		/* stored + parent + the unknown bit 0x40 */
		{ 39, 0x00 },		/* kind 0 */
		{ 39, 0x31 },		/* an unknown tag bit */
		{ 49, 0x04 },		/* 4 blocks: more than the bytes left */
		{ 49, 0xff },		/* count varint running into the data */
		{ 82, 0x12 },		/* removed with a parent */
		{ 85, 0x09 },		/* 9 hashes */
		{ 94, 0x13 },		/* cleared with a parent */
		{ 104, 0x02 },		/* the 10th varint byte beyond 64 bits */
	};
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		memcpy(buf, hand_bin, sizeof(hand_bin));
		buf[bad[i].at] = bad[i].v;
		err_clear();
		CHECK_MSG(kv_msg_decode((const char *)buf, sizeof(hand_bin), &m) == -EINVAL,
			  "change %zu accepted", i);
		CHECK(err_msg()[0] && m.events == NULL);
	}
	/* an overlong varint (a redundant zero group) */
	static const unsigned char overlong[] = { 0x00, 0x4b, 0x56, 0x42, 0x01, 0x00, 0x80, 0x00 };
	CHECK_INT(kv_msg_decode((const char *)overlong, sizeof(overlong), &m), -EINVAL);
	/* a count claiming 2^62 events in a short message: an error, no allocation */
	static const unsigned char huge[] = { 0x00, 0x4b, 0x56, 0x42, 0x01, 0x00, 0x80, 0x80, 0x80,
					      0x80, 0x80, 0x80, 0x80, 0x80, 0x40, 0x03, 0x01 };
	CHECK_INT(kv_msg_decode((const char *)huge, sizeof(huge), &m), -EINVAL);
	/* a dump may hold stored groups only */
	static const unsigned char dump_removed[] = { 0x00, 0x4b, 0x56, 0x42, 0x01, 0x02,
						      1, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x02, 0x00 };
	CHECK_INT(kv_msg_decode((const char *)dump_removed, sizeof(dump_removed), &m), -EINVAL);
	/* a leading NUL that is not the magic */
	CHECK_INT(kv_msg_decode("\0{}", 3, &m), -EINVAL);
}

TEST(wire_form_requested)
{
	CHECK_INT(kv_wire_requested("", 0, KV_WIRE_JSON), KV_WIRE_JSON);
	CHECK_INT(kv_wire_requested("{}", 2, KV_WIRE_JSON), KV_WIRE_JSON);
	CHECK_INT(kv_wire_requested("{}", 2, KV_WIRE_BINARY), KV_WIRE_BINARY);
	const char *b = "{\"x\":[1],\"wire\":\"binary\"}", *j = "{\"wire\":\"json\"}";
	CHECK_INT(kv_wire_requested(b, strlen(b), KV_WIRE_JSON), KV_WIRE_BINARY);
	CHECK_INT(kv_wire_requested(j, strlen(j), KV_WIRE_BINARY), KV_WIRE_JSON);
	const char *odd = "{\"wire\":\"morse\"}", *bad = "{\"wire\":";
	CHECK_INT(kv_wire_requested(odd, strlen(odd), KV_WIRE_JSON), KV_WIRE_JSON);
	CHECK_INT(kv_wire_requested(bad, strlen(bad), KV_WIRE_BINARY), KV_WIRE_BINARY);
}

TEST(gap_detection_and_duplicates)
{
	struct indexer *ix = indexer_new();
	struct kv_sync s;
	uint64_t h1 = 101, h2 = 102, h3 = 103;
	struct block_hash_pair b1 = { h1, 1 }, b2 = { h2, 2 }, b3 = { h3, 3 };
	struct kv_event e1 = { .event_id = 1, .kind = KV_EV_STORED, .blocks = &b1, .n = 1 };
	struct kv_event e2 = { .event_id = 2, .kind = KV_EV_STORED, .blocks = &b2, .n = 1 };
	struct kv_event e3 = { .event_id = 3, .kind = KV_EV_STORED, .blocks = &b3, .n = 1 };
	struct kv_msg m1 = { .events = &e1, .n_events = 1 }, m3 = { .events = &e3, .n_events = 1 };
	struct kv_msg m2 = { .events = &e2, .n_events = 1 };
	kv_sync_init(&s, 9);
	CHECK_INT(kv_sync_apply(&s, ix, &m1), KV_SYNC_OK);
	CHECK_INT(kv_sync_apply(&s, ix, &m1), KV_SYNC_OK);	/* duplicate */
	CHECK(s.skipped == 1 && s.applied == 1);
	CHECK_INT(kv_sync_apply(&s, ix, &m3), KV_SYNC_NEED_RESYNC);	/* 2 is missing */
	CHECK(!indexer_holds(ix, 9, h3));
	CHECK_INT(kv_sync_apply(&s, ix, &m2), KV_SYNC_NEED_RESYNC);	/* dropped until dump */
	CHECK(!indexer_holds(ix, 9, h2));
	struct kv_event groups[2] = { e2, e3 };
	struct kv_msg dump = { .events = groups, .n_events = 2, .is_dump = 1, .dump_last_id = 3 };
	CHECK_INT(kv_sync_apply(&s, ix, &dump), KV_SYNC_OK);
	CHECK(!indexer_holds(ix, 9, h1) && indexer_holds(ix, 9, h2) && indexer_holds(ix, 9, h3));
	CHECK_INT(s.last_id, 3);
	/* a router that (re)connects asks for a dump before applying */
	kv_sync_request_resync(&s);
	CHECK_INT(kv_sync_apply(&s, ix, &m1), KV_SYNC_NEED_RESYNC);
	indexer_free(ix);
}

/* ---- selector ---------------------------------------------------------- */

static struct selector *mk_sel(enum router_mode mode, double weight, double temp,
			       struct indexer *ix, int nw)
{
	struct selector_config c;
	selector_config_default(&c);
	c.mode = mode;
	c.overlap_weight = weight;
	c.temperature = temp;
	c.seed = 12345;
	c.block_size = 16;
	struct selector *s = selector_new(&c, ix);
	for (int w = 1; w <= nw; w++)
		selector_add_worker(s, (uint64_t)w);
	return s;
}

TEST(selector_defaults)
{
	struct selector_config c;
	enum router_mode m;
	selector_config_default(&c);
	CHECK(c.mode == ROUTER_MODE_KV && c.overlap_weight == 1.0 && c.temperature == 0.0);
	CHECK(router_mode_parse("round-robin", &m) == 0 && m == ROUTER_MODE_ROUND_ROBIN);
	CHECK(router_mode_parse("kv", &m) == 0 && m == ROUTER_MODE_KV);
	CHECK(router_mode_parse("random", &m) == 0 && m == ROUTER_MODE_RANDOM);
	CHECK_INT(router_mode_parse("kv-aware", &m), -EINVAL);
	struct selector *s = selector_new(&c, NULL);
	struct route_choice d;
	CHECK_INT(selector_select(s, NULL, 0, &d), -ENOENT);
	selector_free(s);
}

TEST(selector_follows_the_cost_formula)
{
	struct indexer *ix = indexer_new();
	uint64_t req[10];
	for (int i = 0; i < 10; i++)
		req[i] = 500 + (uint64_t)i;
	indexer_store_hashes(ix, 1, req, 8);	/* worker 1: 8 of 10 cached */
	indexer_store_hashes(ix, 2, req, 4);	/* worker 2: 4 */
	/* worker 3: nothing */
	for (int weight = 0; weight <= 3; weight++) {
		struct selector *s = mk_sel(ROUTER_MODE_KV, weight, 0, ix, 3);
		/* loads: worker 1 decodes one 12-block request and has a
		 * 3-block prefill queued; worker 2 decodes 4 blocks */
		uint64_t other[12];
		for (int i = 0; i < 12; i++)
			other[i] = 9000 + (uint64_t)i;
		CHECK_INT(selector_dispatch(s, 1, 1, other, 12, 0, 0), 0);
		selector_first_token(s, 1);
		CHECK_INT(selector_dispatch(s, 2, 1, other, 3, 0, 0), 0);
		CHECK_INT(selector_dispatch(s, 3, 2, other, 4, 0, 0), 0);
		selector_first_token(s, 3);
		/* by hand: cost = weight * (10 - overlap + queued) + decode */
		double want[4] = { 0, weight * (10 - 8 + 3) + 12.0, weight * (10 - 4 + 0) + 4.0,
				   weight * 10.0 + 0 };
		int best = 1;
		for (int w = 2; w <= 3; w++)
			if (want[w] < want[best])
				best = w;
		struct route_choice d;
		CHECK_INT(selector_select(s, req, 10, &d), 0);
		CHECK_INT(d.n_cands, 3);
		for (size_t i = 0; i < d.n_cands; i++)
			CHECK(fabs(d.cands[i].cost - want[d.cands[i].worker]) < 1e-9);
		int ties = 0;
		for (int w = 1; w <= 3; w++)
			ties += want[w] == want[best];
		if (ties == 1) {
			CHECK_INT(d.worker, best);
		} else {
			CHECK(want[d.worker] == want[best]);
		}
		CHECK_INT(d.overlap, d.worker == 1 ? 8 : d.worker == 2 ? 4 : 0);
		selector_free(s);
	}
	indexer_free(ix);
}

TEST(selector_ties_are_random)
{
	struct indexer *ix = indexer_new();
	struct selector *s = mk_sel(ROUTER_MODE_KV, 1, 0, ix, 4);
	uint64_t req[3] = { 1, 2, 3 };
	int count[5] = { 0 };
	const int trials = 40000;
	for (int t = 0; t < trials; t++) {
		struct route_choice d;
		CHECK_INT(selector_select(s, req, 3, &d), 0);
		count[d.worker]++;
	}
	/* binomial sd = sqrt(40000 * .25 * .75) ~ 87: allow 5 sd */
	for (int w = 1; w <= 4; w++)
		CHECK_MSG(abs(count[w] - trials / 4) < 450, "worker %d chosen %d times", w, count[w]);
	/* with one cheaper worker, no randomness at T = 0 */
	indexer_store_hashes(ix, 3, req, 1);
	for (int t = 0; t < 1000; t++) {
		struct route_choice d;
		CHECK_INT(selector_select(s, req, 3, &d), 0);
		CHECK_INT(d.worker, 3);
	}
	selector_free(s);
	indexer_free(ix);
}

TEST(selector_temperature)
{
	struct indexer *ix = indexer_new();
	uint64_t req[10];
	for (int i = 0; i < 10; i++)
		req[i] = 77 + (uint64_t)i;
	indexer_store_hashes(ix, 1, req, 10);	/* cost 0 */
	indexer_store_hashes(ix, 2, req, 5);	/* cost 5 */
	/* worker 3: cost 10 */
	double temps[3] = { 0.05, 1.0, 100.0 };
	for (int ti = 0; ti < 3; ti++) {
		double T = temps[ti];
		struct selector *s = mk_sel(ROUTER_MODE_KV, 1, T, ix, 3);
		/* normalised costs 0, .5, 1 */
		double p[4] = { 0, exp(0), exp(-0.5 / T), exp(-1.0 / T) }, sum = p[1] + p[2] + p[3];
		int count[4] = { 0 };
		const int trials = 30000;
		for (int t = 0; t < trials; t++) {
			struct route_choice d;
			CHECK_INT(selector_select(s, req, 10, &d), 0);
			count[d.worker]++;
		}
		for (int w = 1; w <= 3; w++) {
			double want = trials * p[w] / sum;
			double sd = sqrt(trials * (p[w] / sum) * (1 - p[w] / sum));
			CHECK_MSG(fabs(count[w] - want) <= 5 * sd + 1, "T=%g worker %d: %d, want %.0f",
				  T, w, count[w], want);
		}
		selector_free(s);
	}
	indexer_free(ix);
}

TEST(selector_round_robin_and_random)
{
	struct selector *s = mk_sel(ROUTER_MODE_ROUND_ROBIN, 1, 0, NULL, 3);
	struct route_choice d;
	uint64_t seen[6];
	for (int i = 0; i < 6; i++) {
		CHECK_INT(selector_select(s, NULL, 0, &d), 0);
		seen[i] = d.worker;
	}
	CHECK(seen[0] != seen[1] && seen[1] != seen[2] && seen[0] != seen[2]);
	CHECK(seen[3] == seen[0] && seen[4] == seen[1] && seen[5] == seen[2]);
	selector_free(s);
	s = mk_sel(ROUTER_MODE_RANDOM, 1, 0, NULL, 5);
	int count[6] = { 0 };
	for (int t = 0; t < 50000; t++) {
		CHECK_INT(selector_select(s, NULL, 0, &d), 0);
		count[d.worker]++;
	}
	for (int w = 1; w <= 5; w++)
		CHECK_MSG(abs(count[w] - 10000) < 450, "worker %d: %d", w, count[w]);
	selector_free(s);
}

TEST(selector_in_flight_accounting)
{
	struct selector *s = mk_sel(ROUTER_MODE_KV, 1, 0, NULL, 2);
	uint64_t h[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	double pf, dc;
	CHECK_INT(selector_dispatch(s, 10, 1, h, 8, 3, 0), 0);	/* 5 uncached */
	CHECK_INT(selector_dispatch(s, 10, 1, h, 8, 3, 0), -EEXIST);
	CHECK_INT(selector_dispatch(s, 11, 99, h, 8, 3, 0), -ENOENT);
	CHECK_INT(selector_dispatch(s, 11, 1, h, 4, 0, 0), 0);
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 9 && dc == 0);
	selector_first_token(s, 10);
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 4 && dc == 8);
	selector_first_token(s, 10);	/* twice: no effect */
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 4 && dc == 8);
	selector_finish(s, 11);		/* finished before its first token */
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 0 && dc == 8);
	/* a load report: the worker also runs others' requests */
	struct kv_load l = { 20, 100, 1, 40 };	/* 40 tokens = 3 blocks of 16 */
	selector_load_report(s, 1, &l);
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 3 && dc == 20);
	selector_finish(s, 10);		/* ours ends: 8 fewer than reported */
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 3 && dc == 12);
	selector_finish(s, 10);		/* unknown: ignored */
	l = (struct kv_load){ 0, 100, 0, 0 };
	selector_load_report(s, 1, &l);
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 0 && dc == 0);
	CHECK(selector_worker_load(s, 2, &pf, &dc) == 0 && pf == 0 && dc == 0);
	/* removing a worker forgets its requests */
	CHECK_INT(selector_dispatch(s, 20, 2, h, 8, 0, 0), 0);
	CHECK_INT(selector_dispatch(s, 21, 1, h, 8, 0, 0), 0);
	selector_remove_worker(s, 2);
	CHECK_INT(selector_workers(s), 1);
	CHECK_INT(selector_worker_load(s, 2, &pf, &dc), -ENOENT);
	selector_first_token(s, 21);
	CHECK(selector_worker_load(s, 1, &pf, &dc) == 0 && pf == 0 && dc == 8);
	/* the load steers the choice: worker 3 joins idle and wins */
	selector_add_worker(s, 3);
	struct route_choice d;
	CHECK_INT(selector_select(s, h, 8, &d), 0);
	CHECK_INT(d.worker, 3);
	selector_free(s);
}

TEST(selector_approximate_mode_expires)
{
	struct indexer *ix = indexer_new();
	struct selector_config c;
	selector_config_default(&c);
	c.seed = 7;
	c.approx_ttl_ms = 1000;
	struct selector *s = selector_new(&c, ix);
	for (uint64_t w = 1; w <= 4; w++)
		selector_add_worker(s, w);
	uint64_t a[6] = { 1, 2, 3, 4, 5, 6 }, b[3] = { 1, 2, 99 };
	struct route_choice d;
	CHECK_INT(selector_select(s, a, 6, &d), 0);
	uint64_t first = d.worker;
	CHECK_INT(selector_dispatch(s, 1, first, a, 6, d.overlap, 0), 0);
	selector_finish(s, 1);
	/* the same prefix goes to the same worker, with its overlap */
	CHECK_INT(selector_select(s, b, 3, &d), 0);
	CHECK(d.worker == first && d.overlap == 2);
	CHECK_INT(selector_dispatch(s, 2, first, b, 3, 2, 500), 0);	/* refresh 1, 2 */
	selector_finish(s, 2);
	CHECK_INT(selector_expire(s, 999), 0);
	CHECK_INT(indexer_worker_blocks(ix, first), 7);
	CHECK_INT(selector_expire(s, 1000), 4);	/* 3..6 expire; 1, 2 were refreshed */
	CHECK(indexer_holds(ix, first, 1) && indexer_holds(ix, first, 99) &&
	      !indexer_holds(ix, first, 3));
	CHECK_INT(selector_expire(s, 1500), 3);
	CHECK_INT(indexer_pairs(ix), 0);
	/* with the prediction gone, ties again */
	CHECK_INT(selector_select(s, a, 6, &d), 0);
	CHECK_INT(d.overlap, 0);
	selector_free(s);
	indexer_free(ix);
}

TEST(selector_predicts_blocks_being_computed)
{
	/* KV events mode: the index holds only what workers announced.  A
	 * request routed to a worker counts as cached there until its TTL,
	 * in a private index: the main index is never touched. */
	struct indexer *ix = indexer_new();
	struct selector_config c;
	selector_config_default(&c);
	c.seed = 11;
	c.predict_ttl_ms = 1000;
	struct selector *s = selector_new(&c, ix);
	for (uint64_t w = 1; w <= 4; w++)
		selector_add_worker(s, w);
	uint64_t a[6] = { 1, 2, 3, 4, 5, 6 }, b[4] = { 1, 2, 3, 77 };
	struct route_choice d;
	CHECK_INT(selector_select(s, a, 6, &d), 0);
	uint64_t first = d.worker;
	CHECK_INT(selector_dispatch(s, 1, first, a, 6, d.overlap, 0), 0);
	CHECK_INT(indexer_pairs(ix), 0);
	/* a request sharing 3 blocks, while the first is still prefilling,
	 * sees its overlap on the first's worker */
	CHECK_INT(selector_select(s, b, 4, &d), 0);
	size_t k;
	for (k = 0; k < d.n_cands && d.cands[k].worker != first; k++)
		;
	CHECK(k < d.n_cands && d.cands[k].overlap == 3);
	selector_finish(s, 1);
	CHECK_INT(selector_select(s, b, 4, &d), 0);
	CHECK(d.worker == first && d.overlap == 3);
	/* expired: no prediction left, the main index still empty */
	CHECK_INT(selector_expire(s, 1000), 6);
	CHECK_INT(selector_select(s, b, 4, &d), 0);
	CHECK_INT(d.overlap, 0);
	CHECK_INT(indexer_pairs(ix), 0);
	/* a removed worker's predictions go with it */
	CHECK_INT(selector_dispatch(s, 2, 3, a, 6, 0, 2000), 0);
	selector_remove_worker(s, 3);
	CHECK_INT(selector_select(s, a, 6, &d), 0);
	CHECK_INT(d.overlap, 0);
	selector_free(s);
	indexer_free(ix);
}

/* ---- KV tiers ---------------------------------------------------------- */

TEST(tier_medium_on_the_wire)
{
	struct block_hash_pair b = { 0x0102030405060708ull, 0 };
	uint64_t rem = 9;
	struct kv_event evs[2] = {
		{ .event_id = 7, .kind = KV_EV_STORED, .blocks = &b, .n = 1, .medium = 2 },
		{ .event_id = 8, .kind = KV_EV_REMOVED, .hashes = &rem, .n = 1, .medium = 4 },
	};
	struct kv_msg m = { .events = evs, .n_events = 2 }, d;
	struct strbuf sb = STRBUF_INIT;
	/* by hand from kv_events.h: tag = kind | (medium - 1) << 2 */
	static const unsigned char hand[] = {
		0x00, 0x4b, 0x56, 0x42, 0x01, 0x00, 0x02,
		0x05, 0x07, 0x01, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0,
		0x0e, 0x08, 0x01, 0x09, 0, 0, 0, 0, 0, 0, 0,
	};
	kv_msg_encode(&m, KV_WIRE_BINARY, &sb);
	CHECK_INT(sb.len, sizeof(hand));
	CHECK(memcmp(sb.buf, hand, sizeof(hand)) == 0);
	CHECK_INT(kv_msg_decode((const char *)hand, sizeof(hand), &d), 0);
	CHECK(d.n_events == 2 && d.events[0].medium == 2 && d.events[1].medium == 4);
	kv_msg_release(&d);
	sb_reset(&sb);
	kv_msg_encode(&m, KV_WIRE_JSON, &sb);
	CHECK_STR(sb.buf, "{\"events\":[{\"event_id\":7,\"stored\":{\"medium\":\"G2\","
		  "\"parent_hash\":null,\"blocks\":[{\"seq_hash\":72623859790382856,"
		  "\"local_hash\":0}]}},{\"event_id\":8,\"removed\":{\"medium\":\"G4\","
		  "\"seq_hashes\":[9]}}]}");
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.events[0].medium == 2 && d.events[1].medium == 4);
	kv_msg_release(&d);

	/* G1 is written as before: no member, no tag bits (old readers) */
	evs[0].medium = 1;
	evs[1].medium = 0;
	sb_reset(&sb);
	kv_msg_encode(&m, KV_WIRE_JSON, &sb);
	CHECK(!strstr(sb.buf, "medium"));
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK(d.events[0].medium <= 1 && d.events[1].medium <= 1);
	kv_msg_release(&d);

	/* bad media are errors */
	static const char *const bad[] = {
		"{\"events\":[{\"event_id\":1,\"removed\":{\"medium\":\"G5\",\"seq_hashes\":[]}}]}",
		"{\"events\":[{\"event_id\":1,\"removed\":{\"medium\":2,\"seq_hashes\":[]}}]}",
		"{\"events\":[{\"event_id\":1,\"removed\":{\"medium\":\"G2\",\"medium\":\"G2\","
		"\"seq_hashes\":[]}}]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK_MSG(kv_msg_decode(bad[i], strlen(bad[i]), &d) == -EINVAL, "%s", bad[i]);
	unsigned char cleared[] = { 0x00, 0x4b, 0x56, 0x42, 0x01, 0x00, 0x01, 0x07, 0x01 };
	CHECK_INT(kv_msg_decode((const char *)cleared, sizeof(cleared), &d), -EINVAL);
	cleared[7] = 0x03;
	CHECK_INT(kv_msg_decode((const char *)cleared, sizeof(cleared), &d), 0);
	kv_msg_release(&d);
	sb_release(&sb);
}

static void store_m(struct indexer *ix, uint64_t w, int medium, const uint64_t *h, size_t n)
{
	struct block_hash_pair b[8];
	for (size_t i = 0; i < n; i++)
		b[i] = (struct block_hash_pair){ h[i], 0 };
	indexer_store_medium(ix, w, medium, b, n);
}

static const struct indexer_tmatch *tm_of(const struct indexer_tmatch *m, size_t n, uint64_t w)
{
	for (size_t i = 0; i < n; i++)
		if (m[i].worker == w)
			return &m[i];
	return NULL;
}

TEST(indexer_tiers_hand_worked)
{
	static const double wt[INDEXER_MEDIA + 1] = { 0, 1.0, 0.8, 0.5, 0.3 };
	struct indexer *ix = indexer_new();
	uint64_t h[6] = { 100, 101, 102, 103, 104, 105 }, other = 999;
	const struct indexer_tmatch *m;

	/* G1 only: find_matches' depths, weighted */
	indexer_store_hashes(ix, 1, h, 2);
	size_t n = indexer_find_tiered(ix, h, 6, wt, &m);
	CHECK(n == 1 && m[0].worker == 1 && m[0].depth == 2 && fabs(m[0].score - 2.0) < 1e-9);

	/* A (1): G1 h0 h1, G2 h0 h2 h3.  B (2): G1 h0, G3 h1, G4 h2..h5.
	 * C (3): G1 a block of another request only. */
	store_m(ix, 1, 2, (uint64_t[]){ 100, 102, 103 }, 3);
	indexer_store_hashes(ix, 2, h, 1);
	store_m(ix, 2, 3, &h[1], 1);
	store_m(ix, 2, 4, &h[2], 4);
	indexer_store_hashes(ix, 3, &other, 1);
	CHECK_INT(indexer_medium_blocks(ix, 1, 1), 2);
	CHECK_INT(indexer_medium_blocks(ix, 1, 2), 3);
	CHECK_INT(indexer_medium_blocks(ix, 2, 4), 4);
	n = indexer_find_tiered(ix, h, 6, wt, &m);
	CHECK_INT(n, 2);
	/* A: 1 + 1 + .8 + .8, then h4 h5 in B's G4: + .3 + .3 */
	const struct indexer_tmatch *a = tm_of(m, n, 1), *b = tm_of(m, n, 2);
	CHECK(a && a->depth == 6 && fabs(a->score - 4.2) < 1e-9);
	/* B: 1 + .5 + 4 x .3 */
	CHECK(b && b->depth == 6 && fabs(b->score - 2.7) < 1e-9);
	CHECK(!tm_of(m, n, 3));

	/* h0 leaves A's G1: its G2 copy counts (.8); h3 leaves A's G2: G4 (.3) */
	indexer_remove(ix, 1, h, 1);
	CHECK_INT(indexer_remove_medium(ix, 1, 2, &h[3], 1), 1);
	n = indexer_find_tiered(ix, h, 6, wt, &m);
	a = tm_of(m, n, 1);
	CHECK(a && a->depth == 6 && fabs(a->score - (0.8 + 1 + 0.8 + 0.3 + 0.3 + 0.3)) < 1e-9);
	/* h1 gone from A entirely: the walk stops there */
	indexer_remove(ix, 1, &h[1], 1);
	n = indexer_find_tiered(ix, h, 6, wt, &m);
	a = tm_of(m, n, 1);
	CHECK(a && a->depth == 1 && fabs(a->score - 0.8) < 1e-9);
	/* clear forgets every tier of the worker; the others keep theirs */
	indexer_clear(ix, 2);
	CHECK_INT(indexer_medium_blocks(ix, 2, 3), 0);
	CHECK_INT(indexer_medium_blocks(ix, 2, 4), 0);
	CHECK_INT(indexer_medium_blocks(ix, 1, 2), 2);
	indexer_purge(ix, 1);
	CHECK_INT(indexer_medium_blocks(ix, 1, 2), 0);
	n = indexer_find_tiered(ix, h, 6, wt, &m);
	CHECK_INT(n, 0);
	indexer_free(ix);
}

TEST(selector_counts_lower_tiers_for_less)
{
	struct indexer *ix = indexer_new();
	uint64_t req[10];
	for (int i = 0; i < 10; i++)
		req[i] = 700 + (uint64_t)i;
	store_m(ix, 1, 2, req, 8);	/* worker 1: all 10 in G2 */
	store_m(ix, 1, 2, &req[8], 2);
	indexer_store_hashes(ix, 2, req, 7);	/* worker 2: 7 in G1 */
	struct selector *s = mk_sel(ROUTER_MODE_KV, 1.0, 0, ix, 2);
	struct route_choice d;
	/* by hand: cost 1 = 10 - 10 x 0.8 = 2, cost 2 = 10 - 7 = 3 */
	CHECK_INT(selector_select(s, req, 10, &d), 0);
	CHECK_INT(d.worker, 1);
	CHECK_INT(d.overlap, 10);
	for (size_t i = 0; i < d.n_cands; i++)
		CHECK(fabs(d.cands[i].cost - (d.cands[i].worker == 1 ? 2.0 : 3.0)) < 1e-9);
	/* 9 in G1 on worker 2: cost 1 < 2 */
	indexer_store_hashes(ix, 2, req, 9);
	CHECK_INT(selector_select(s, req, 10, &d), 0);
	CHECK_INT(d.worker, 2);
	CHECK(fabs(d.cost - 1.0) < 1e-9);
	selector_free(s);
	indexer_free(ix);
}

TEST(publisher_reports_tiers_in_events_and_dumps)
{
	struct kv_publisher *p = kv_publisher_new();
	struct kv_events hk;
	struct strbuf sb = STRBUF_INIT;
	struct kv_msg d;
	kv_publisher_hooks(p, &hk);
	/* block 41 stored in G1, evicted to G2; 42 in G2 then G3 */
	hk.stored(hk.arg, 0, 0, 41, 1);
	hk.tiered(hk.arg, 2, 1, 41);
	hk.tiered(hk.arg, 2, 1, 42);
	hk.removed(hk.arg, 41);
	hk.tiered(hk.arg, 2, 0, 42);
	hk.tiered(hk.arg, 3, 1, 42);
	CHECK_INT(kv_publisher_flush(p, NULL, KV_WIRE_JSON, &sb), 5);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	CHECK_INT(d.n_events, 5);
	/* one stored event holds both G2 blocks (no chain below G1) */
	CHECK(d.events[1].kind == KV_EV_STORED && d.events[1].medium == 2 && d.events[1].n == 2);
	CHECK(d.events[2].kind == KV_EV_REMOVED && d.events[2].medium <= 1);
	CHECK(d.events[3].kind == KV_EV_REMOVED && d.events[3].medium == 2);
	CHECK(d.events[4].kind == KV_EV_STORED && d.events[4].medium == 3);
	struct indexer *ix = indexer_new();
	struct kv_sync ks;
	kv_sync_init(&ks, 5);
	kv_sync_apply(&ks, ix, &d);
	kv_msg_release(&d);
	CHECK_INT(indexer_medium_blocks(ix, 5, 1), 0);
	CHECK_INT(indexer_medium_blocks(ix, 5, 2), 1);
	CHECK_INT(indexer_medium_blocks(ix, 5, 3), 1);
	/* the dump says the same, to a router starting from nothing */
	sb_reset(&sb);
	kv_publisher_dump(p, KV_WIRE_BINARY, &sb);
	CHECK_INT(kv_msg_decode(sb.buf, sb.len, &d), 0);
	struct indexer *ix2 = indexer_new();
	kv_sync_init(&ks, 5);
	kv_sync_apply(&ks, ix2, &d);
	kv_msg_release(&d);
	for (int k = 1; k <= INDEXER_MEDIA; k++)
		CHECK_INT(indexer_medium_blocks(ix2, 5, k), indexer_medium_blocks(ix, 5, k));
	CHECK(indexer_holds(ix2, 5, 41) == 0);
	indexer_free(ix);
	indexer_free(ix2);
	sb_release(&sb);
	kv_publisher_free(p);
}

int main(void)
{
	return RUN_TESTS();
}
