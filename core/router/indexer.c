/*
 * indexer.c - the global prefix index (indexer.h).
 *
 * Structure.  One open-addressing table (linear probing, backward-shift
 * deletion, load <= 3/4, on transparent huge pages once large) maps a
 * block's sequence hash straight to its node, stored in the table itself
 * in 16 bytes (four to a cache line): the hash, and either its single
 * holder inline (a worker's dense slot and the block's position in that
 * worker's array of held hashes) or a pointer to a holder set (sorted
 * worker slots, contiguous, then their positions) for shared blocks.  A
 * sequence hash names the whole prefix, so no explicit tree is needed.
 * Because each holder records where the block sits in its worker's
 * array:
 *   - store is one probe per block plus an append (or the reuse of a
 *     hole) in the worker's array: no per-worker hash set to update;
 *   - remove is one probe: the holder goes, its position becomes a hole
 *     on the worker's free stack;
 *   - clear/purge walk the worker's array (holes included: an entry is
 *     live iff its node lists the worker at that position): O(its blocks).
 * find_matches probes the request's hashes in order, prefetching the
 * slots 16 blocks ahead.  When the first block has one holder (a
 * conversation's own tail) it only checks that worker block by block;
 * otherwise it keeps the sorted set of workers still matching and
 * intersects it with each node's holders (equal sets: one memcmp; else
 * merge, or binary search when the node's set is much larger), stopping
 * as soon as no worker is left or a hash is unknown.  Stores and
 * removals go 16 blocks at a time, every probe of a batch prefetched
 * first, and kv_sync_apply hints the next events' blocks with
 * indexer_prefetch().  indexer_reserve() sizes the table ahead.
 *
 * Why 16-byte nodes with the holder arrays split: the previous layout
 * (32-byte nodes, {worker, position} pairs interleaved) doubled the
 * bytes find_matches touches per shared block and raised its p50 from
 * 0.38 to 0.6 us with 7% more instructions (callgrind): the cost is
 * memory, not work.  Halving the node also halves the table (32 MB at
 * 1M blocks) and the page zeroing of each growth.
 *
 * A shared block's set stays a set when it shrinks to one holder: the
 * LRU replay evicts and re-stores shared blocks all the time, and
 * converting back and forth cost a malloc and a free each (with a
 * one-entry worker-slot cache, -12% instructions in the replay).
 *
 * Measured (test/bench/router.sh: 1,000 workers, 1M (block, worker) pairs;
 * one thread of a shared 2-core VM, CPU time, gcc -O2; medians of 5 runs,
 * noisy, +-30%; the 32-byte-node version of 7ddf1f6 in brackets, same
 * runs):
 *   find_matches  p50 0.38 us (0.62), p99 2.0 us (2.6), for requests of
 *                 64-256 blocks; the naive baseline (per-worker hash
 *                 sets) p50 27-58 us.
 *   insert        11.2M blocks/s from empty (8.8M), 15.1M/s into a table
 *                 reserved ahead (naive per-worker sets 15-20M/s).
 *   replay        the Mooncake trace counted as Dynamo's mooncake_bench
 *                 counts ops (one find_matches or one KV event = one op;
 *                 a prefill's new blocks as one stored event, one per
 *                 decode block, one removed event per evicted block):
 *                 1,000 LRU workers of 1,000 blocks 4.4M ops/s (3.2M;
 *                 94% of the ops one-block removals, and as many blocks
 *                 stored); Dynamo's default shape (256 workers, no
 *                 evictions, from empty) 1.1M ops/s, whose ops are stored
 *                 events of 25 blocks and requests of 30 blocks (~30M
 *                 block operations/s).  Dynamo's flash indexer: ~7M ops/s
 *                 per core on server hardware.
 */
#include "core/router/indexer.h"
#include "core/u64map.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- nodes --------------------------------------------------------- */

/*
 * A block, stored in the table itself: 16 bytes, four to a cache line.
 * v says who holds it:
 *   0                  an empty slot;
 *   low bit set        one holder (the common case: a conversation's
 *                      tail): its dense worker slot in bits 1-31, the
 *                      block's position in that worker's array of held
 *                      hashes in bits 32-63;
 *   otherwise          a pointer to the block's holder set (2 or more
 *                      holders, or 1 left after removals).
 * The position is what makes a removal O(1): the worker's entry becomes
 * a hole at once, without a search.
 */
struct node {
	uint64_t hash;
	uint64_t v;
};

_Static_assert(sizeof(struct node) == 16, "four nodes to a cache line");

/* Holders of a shared block: w[0..n) sorted (the worker slots, contiguous
 * so that find_matches compares and merges them as plain arrays), then
 * pos[0..n) at w + cap. */
struct hset {
	uint32_t n, cap;
	uint32_t w[];
};

#define MAX_SLOTS (1u << 31)

static inline uint64_t single(uint32_t w, uint32_t pos)
{
	return (uint64_t)pos << 32 | (uint64_t)w << 1 | 1;
}

static inline int is_single(uint64_t v)
{
	return (int)(v & 1);
}

static inline uint32_t single_w(uint64_t v)
{
	return (uint32_t)v >> 1;
}

static inline uint32_t single_pos(uint64_t v)
{
	return (uint32_t)(v >> 32);
}

static inline struct hset *hset_of(uint64_t v)
{
	return (struct hset *)(uintptr_t)v;
}

static inline uint32_t *hset_pos(struct hset *hs)
{
	return hs->w + hs->cap;
}

static struct hset *hset_alloc(uint32_t cap)
{
	struct hset *hs = xmalloc(sizeof(*hs) + 2 * (size_t)cap * sizeof(uint32_t));
	hs->n = 0;
	hs->cap = cap;
	return hs;
}

/* Position of worker w in the sorted a[0..n), or where it would go. */
static inline size_t lower_bound(const uint32_t *a, size_t n, uint32_t w)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (a[mid] < w)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of w in the sorted a[0..n), or -1. */
static inline long find_w(const uint32_t *a, size_t n, uint32_t w)
{
	if (n <= 8) {
		for (size_t i = 0; i < n; i++)
			if (a[i] == w)
				return (long)i;
		return -1;
	}
	size_t i = lower_bound(a, n, w);
	return i < n && a[i] == w ? (long)i : -1;
}

/*
 * Add holder (w, pos) to the occupied node nd unless w holds it already.
 * Returns 1 if added.
 */
static int node_add(struct node *nd, uint32_t w, uint32_t pos)
{
	if (is_single(nd->v)) {
		uint32_t w0 = single_w(nd->v), p0 = single_pos(nd->v);
		if (w0 == w)
			return 0;
		struct hset *hs = hset_alloc(4);
		int first = w < w0;
		hs->w[0] = first ? w : w0;
		hs->w[1] = first ? w0 : w;
		hset_pos(hs)[0] = first ? pos : p0;
		hset_pos(hs)[1] = first ? p0 : pos;
		hs->n = 2;
		nd->v = (uint64_t)(uintptr_t)hs;
		return 1;
	}
	struct hset *hs = hset_of(nd->v);
	size_t at = lower_bound(hs->w, hs->n, w);
	if (at < hs->n && hs->w[at] == w)
		return 0;
	if (hs->n == hs->cap) {
		struct hset *nh = hset_alloc(hs->cap * 2);
		memcpy(nh->w, hs->w, hs->n * sizeof(uint32_t));
		memcpy(hset_pos(nh), hset_pos(hs), hs->n * sizeof(uint32_t));
		nh->n = hs->n;
		free(hs);
		hs = nh;
		nd->v = (uint64_t)(uintptr_t)hs;
	}
	uint32_t *ps = hset_pos(hs);
	for (size_t k = hs->n; k > at; k--) {	/* short: no memmove call */
		hs->w[k] = hs->w[k - 1];
		ps[k] = ps[k - 1];
	}
	hs->w[at] = w;
	ps[at] = pos;
	hs->n++;
	return 1;
}

/*
 * Drop holder w from nd if it holds the block (and, when want_pos is not
 * UINT32_MAX, at that position).  Returns 1 and its position in *pos if
 * dropped; nd->v is 0 once nobody holds it.
 */
static int node_drop(struct node *nd, uint32_t w, uint32_t want_pos, uint32_t *pos)
{
	if (is_single(nd->v)) {
		if (single_w(nd->v) != w ||
		    (want_pos != UINT32_MAX && single_pos(nd->v) != want_pos))
			return 0;
		*pos = single_pos(nd->v);
		nd->v = 0;
		return 1;
	}
	struct hset *hs = hset_of(nd->v);
	long at = find_w(hs->w, hs->n, w);
	uint32_t *ps = hset_pos(hs);
	if (at < 0 || (want_pos != UINT32_MAX && ps[at] != want_pos))
		return 0;
	*pos = ps[at];
	for (size_t k = (size_t)at + 1; k < hs->n; k++) {
		hs->w[k - 1] = hs->w[k];
		ps[k - 1] = ps[k];
	}
	/* A set that shrinks to one holder stays a set: a shared block
	 * evicted on one worker is often stored on another soon, and going
	 * back and forth between inline and set cost a malloc and a free
	 * each time. */
	if (--hs->n == 0) {
		free(hs);
		nd->v = 0;
	}
	return 1;
}

static int node_holds(const struct node *nd, uint32_t w)
{
	if (is_single(nd->v))
		return single_w(nd->v) == w;
	const struct hset *hs = hset_of(nd->v);
	return find_w(hs->w, hs->n, w) >= 0;
}

/* ---- the index ----------------------------------------------------- */

/* A worker's blocks: held[0..len) with holes (positions of removed
 * blocks, on the free stack, reused first).  An entry is live iff the
 * node of its hash lists this worker at this position, so a stale hole
 * needs no marker. */
struct worker {
	uint64_t id;
	uint64_t *held;
	uint32_t *free;
	uint32_t len, cap, n_free, free_cap;
	uint32_t n;		/* blocks held */
	int live;
};

struct indexer {
	struct node *tab;
	size_t cap, n;		/* cap: power of two */
	size_t pairs;
	struct worker *w;
	size_t nw, w_alloc;
	uint32_t *free_w;
	size_t n_free_w, free_w_alloc;
	struct u64map ids;	/* worker id -> dense slot */
	uint64_t last_id;	/* a one-entry cache of ids -> slot: the events */
	uint32_t last_slot;	/* of one message are one worker's */
	int last_ok;
	/* find_matches scratch */
	uint32_t *act, *act2;
	size_t act_alloc;
	struct indexer_match *out;
	size_t out_alloc;
	/* lower KV tiers (G2..G4): an index each, made on their first block */
	struct indexer *below[INDEXER_MEDIA + 1];
	struct indexer_tmatch *tout;
	size_t tout_alloc;
};

/* Big tables come from mmap (zeroed lazily) with transparent huge pages
 * asked for: a probe is a random access, and 4 KiB pages would add a TLB
 * miss to most of them. */
#define TAB_MMAP_BYTES (4u << 20)

static struct node *tab_alloc(size_t cap)
{
	size_t bytes = cap * sizeof(struct node);
	if (bytes < TAB_MMAP_BYTES)
		return xcalloc(cap, sizeof(struct node));
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return xcalloc(cap, sizeof(struct node));	/* aborts if that fails too */
#ifdef MADV_HUGEPAGE
	madvise(p, bytes, MADV_HUGEPAGE);
#endif
	return p;
}

static void tab_release(struct node *t, size_t cap)
{
	size_t bytes = cap * sizeof(struct node);
	if (bytes < TAB_MMAP_BYTES || munmap(t, bytes) != 0)
		free(t);
}

struct indexer *indexer_new(void)
{
	struct indexer *ix = xcalloc(1, sizeof(*ix));
	ix->cap = 1024;
	ix->tab = tab_alloc(ix->cap);
	return ix;
}

void indexer_free(struct indexer *ix)
{
	if (!ix)
		return;
	for (size_t i = 0; i < ix->cap; i++)
		if (ix->tab[i].v && !is_single(ix->tab[i].v))
			free(hset_of(ix->tab[i].v));
	tab_release(ix->tab, ix->cap);
	for (size_t i = 0; i < ix->nw; i++) {
		free(ix->w[i].held);
		free(ix->w[i].free);
	}
	free(ix->w);
	free(ix->free_w);
	u64map_release(&ix->ids);
	free(ix->act);
	free(ix->act2);
	free(ix->out);
	for (int k = 2; k <= INDEXER_MEDIA; k++)
		indexer_free(ix->below[k]);
	free(ix->tout);
	free(ix);
}

static inline struct node *tab_find_m(const struct indexer *ix, uint64_t h, uint64_t mixed)
{
	size_t mask = ix->cap - 1, i = mixed & mask;
	while (ix->tab[i].v) {
		if (ix->tab[i].hash == h)
			return &ix->tab[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

static inline struct node *tab_find(const struct indexer *ix, uint64_t h)
{
	return tab_find_m(ix, h, u64map_mix(h));
}

static inline void tab_prefetch(const struct indexer *ix, uint64_t mixed, int write)
{
	if (write)
		__builtin_prefetch(&ix->tab[mixed & (ix->cap - 1)], 1);
	else
		__builtin_prefetch(&ix->tab[mixed & (ix->cap - 1)], 0);
}

static void tab_grow(struct indexer *ix)
{
	size_t ncap = ix->cap * 2, mask = ncap - 1;
	struct node *nt = tab_alloc(ncap);
	for (size_t i = 0; i < ix->cap; i++) {
		if (!ix->tab[i].v)
			continue;
		size_t j = u64map_mix(ix->tab[i].hash) & mask;
		while (nt[j].v)
			j = (j + 1) & mask;
		nt[j] = ix->tab[i];
	}
	tab_release(ix->tab, ix->cap);
	ix->tab = nt;
	ix->cap = ncap;
}

/* Make room for extra more nodes: no growth (and no node moves) until
 * that many have been added. */
static void tab_reserve(struct indexer *ix, size_t extra)
{
	while ((ix->n + extra) * 4 > ix->cap * 3)
		tab_grow(ix);
}

void indexer_reserve(struct indexer *ix, size_t blocks)
{
	if (blocks > ix->n)
		tab_reserve(ix, blocks - ix->n);
}

/* The node for h, or a new empty one (v 0) that the caller fills at
 * once; room must have been reserved. */
static inline struct node *tab_get_or_add(struct indexer *ix, uint64_t h, uint64_t mixed)
{
	size_t mask = ix->cap - 1, i = mixed & mask;
	while (ix->tab[i].v) {
		if (ix->tab[i].hash == h)
			return &ix->tab[i];
		i = (i + 1) & mask;
	}
	ix->tab[i].hash = h;
	ix->n++;
	return &ix->tab[i];
}

/* Delete the (now empty) node nd: backward shift, no tombstones. */
static void tab_del(struct indexer *ix, struct node *nd)
{
	size_t mask = ix->cap - 1, i = (size_t)(nd - ix->tab), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!ix->tab[j].v)
			break;
		size_t h = u64map_mix(ix->tab[j].hash) & mask;
		if (i <= j ? (h <= i || h > j) : (h <= i && h > j)) {
			ix->tab[i] = ix->tab[j];
			i = j;
		}
	}
	memset(&ix->tab[i], 0, sizeof(ix->tab[i]));
	ix->n--;
}

static uint32_t worker_slot(struct indexer *ix, uint64_t id)
{
	if (ix->last_ok && ix->last_id == id)
		return ix->last_slot;
	const uint32_t *v = u64map_get(&ix->ids, id);
	if (v) {
		ix->last_id = id;
		ix->last_slot = *v;
		ix->last_ok = 1;
		return *v;
	}
	uint32_t s;
	if (ix->n_free_w) {
		s = ix->free_w[--ix->n_free_w];
	} else {
		if (ix->nw == ix->w_alloc) {
			ix->w_alloc = ix->w_alloc ? ix->w_alloc * 2 : 16;
			ix->w = xrealloc(ix->w, ix->w_alloc * sizeof(*ix->w));
		}
		if (ix->nw >= MAX_SLOTS)
			abort();	/* 2^31 workers: not a real cluster */
		s = (uint32_t)ix->nw++;
		memset(&ix->w[s], 0, sizeof(ix->w[s]));
	}
	ix->w[s].id = id;
	ix->w[s].live = 1;
	u64map_put(&ix->ids, id, s);
	ix->last_id = id;
	ix->last_slot = s;
	ix->last_ok = 1;
	return s;
}

static int worker_find(const struct indexer *ix, uint64_t id, uint32_t *out)
{
	if (ix->last_ok && ix->last_id == id) {
		*out = ix->last_slot;
		return 1;
	}
	const uint32_t *v = u64map_get(&ix->ids, id);
	if (!v)
		return 0;
	*out = *v;
	return 1;
}

/* worker_find, remembering the answer for the next call. */
static int worker_find_rw(struct indexer *ix, uint64_t id, uint32_t *out)
{
	if (!worker_find(ix, id, out))
		return 0;
	ix->last_id = id;
	ix->last_slot = *out;
	ix->last_ok = 1;
	return 1;
}

void indexer_add_worker(struct indexer *ix, uint64_t worker)
{
	worker_slot(ix, worker);
}

static void worker_reserve(struct worker *wk, size_t extra)
{
	if (wk->len + extra <= wk->cap)
		return;
	size_t ncap = wk->cap ? wk->cap : 16;
	while (ncap < wk->len + extra)
		ncap *= 2;
	if (ncap > UINT32_MAX)
		abort();	/* 4G blocks on one worker: not a real cache */
	wk->held = xrealloc(wk->held, ncap * sizeof(*wk->held));
	wk->cap = (uint32_t)ncap;
}

#define BATCH 16

/* Store hashes h[0], h[stride], ... (n of them) for slot s, BATCH at a
 * time: room is made first, then every probe of the batch is prefetched
 * so that their cache misses overlap. */
static void store_many(struct indexer *ix, uint32_t s, const uint64_t *h, size_t stride,
		       size_t n)
{
	struct worker *wk = &ix->w[s];
	worker_reserve(wk, n);
	for (size_t i = 0; i < n; i += BATCH) {
		size_t m = n - i < BATCH ? n - i : BATCH;
		uint64_t mixed[BATCH];
		tab_reserve(ix, m);
		for (size_t k = 0; k < m; k++) {
			mixed[k] = u64map_mix(h[(i + k) * stride]);
			tab_prefetch(ix, mixed[k], 1);
		}
		for (size_t k = 0; k < m; k++) {
			uint64_t hk = h[(i + k) * stride];
			struct node *nd = tab_get_or_add(ix, hk, mixed[k]);
			uint32_t pos = wk->n_free ? wk->free[wk->n_free - 1] : wk->len;
			if (!nd->v)
				nd->v = single(s, pos);
			else if (!node_add(nd, s, pos))
				continue;	/* already held */
			if (wk->n_free)
				wk->n_free--;
			else
				wk->len++;
			wk->held[pos] = hk;
			wk->n++;
			ix->pairs++;
		}
	}
}

void indexer_store(struct indexer *ix, uint64_t worker, uint64_t parent, int has_parent,
		   const struct block_hash_pair *blocks, size_t n)
{
	(void)parent;
	(void)has_parent;
	_Static_assert(sizeof(struct block_hash_pair) == 2 * sizeof(uint64_t), "block layout");
	uint32_t s = worker_slot(ix, worker);
	if (n)
		store_many(ix, s, &blocks[0].seq_hash, 2, n);
}

void indexer_store_hashes(struct indexer *ix, uint64_t worker, const uint64_t *seq_hashes,
			  size_t n)
{
	uint32_t s = worker_slot(ix, worker);
	if (n)
		store_many(ix, s, seq_hashes, 1, n);
}

/* Drop worker s from block h (mixed = its mix).  Returns 1 if it held it. */
static int drop_pair(struct indexer *ix, uint32_t s, uint64_t h, uint64_t mixed)
{
	struct node *nd = tab_find_m(ix, h, mixed);
	if (!nd)
		return 0;
	uint32_t pos;
	if (!node_drop(nd, s, UINT32_MAX, &pos))
		return 0;
	if (!nd->v)
		tab_del(ix, nd);
	ix->pairs--;
	/* a hole in the worker's array, for its next block */
	struct worker *wk = &ix->w[s];
	if (wk->n_free == wk->free_cap) {
		wk->free_cap = wk->free_cap ? wk->free_cap * 2 : 16;
		wk->free = xrealloc(wk->free, wk->free_cap * sizeof(*wk->free));
	}
	wk->free[wk->n_free++] = pos;
	wk->n--;
	return 1;
}

size_t indexer_remove(struct indexer *ix, uint64_t worker, const uint64_t *seq_hashes,
		      size_t n)
{
	uint32_t s;
	size_t removed = 0;
	if (!worker_find_rw(ix, worker, &s))
		return 0;
	for (size_t i = 0; i < n; i += BATCH) {
		size_t m = n - i < BATCH ? n - i : BATCH;
		uint64_t mixed[BATCH];
		for (size_t k = 0; k < m; k++) {
			mixed[k] = u64map_mix(seq_hashes[i + k]);
			tab_prefetch(ix, mixed[k], 1);
		}
		for (size_t k = 0; k < m; k++)
			removed += (size_t)drop_pair(ix, s, seq_hashes[i + k], mixed[k]);
	}
	return removed;
}

/* Drop every block of slot s. */
static void clear_slot(struct indexer *ix, uint32_t s)
{
	struct worker *wk = &ix->w[s];
	for (size_t i = 0; i < wk->len; i += BATCH) {
		size_t m = wk->len - i < BATCH ? wk->len - i : BATCH;
		uint64_t mixed[BATCH];
		for (size_t k = 0; k < m; k++) {
			mixed[k] = u64map_mix(wk->held[i + k]);
			tab_prefetch(ix, mixed[k], 1);
		}
		for (size_t k = 0; k < m; k++) {
			struct node *nd = tab_find_m(ix, wk->held[i + k], mixed[k]);
			uint32_t pos;
			if (!nd || !node_drop(nd, s, (uint32_t)(i + k), &pos))
				continue;	/* a hole */
			if (!nd->v)
				tab_del(ix, nd);
		}
	}
	ix->pairs -= wk->n;
	free(wk->held);
	free(wk->free);
	wk->held = NULL;
	wk->free = NULL;
	wk->n = wk->len = wk->cap = wk->n_free = wk->free_cap = 0;
}

void indexer_clear(struct indexer *ix, uint64_t worker)
{
	uint32_t s;
	if (worker_find(ix, worker, &s))
		clear_slot(ix, s);
	for (int k = 2; k <= INDEXER_MEDIA; k++)
		if (ix->below[k])
			indexer_clear(ix->below[k], worker);
}

void indexer_purge(struct indexer *ix, uint64_t worker)
{
	uint32_t s;
	for (int k = 2; k <= INDEXER_MEDIA; k++)
		if (ix->below[k])
			indexer_purge(ix->below[k], worker);
	if (!worker_find(ix, worker, &s))
		return;
	clear_slot(ix, s);
	ix->w[s].live = 0;
	u64map_del(&ix->ids, worker);
	ix->last_ok = 0;
	if (ix->n_free_w == ix->free_w_alloc) {
		ix->free_w_alloc = ix->free_w_alloc ? ix->free_w_alloc * 2 : 16;
		ix->free_w = xrealloc(ix->free_w, ix->free_w_alloc * sizeof(*ix->free_w));
	}
	ix->free_w[ix->n_free_w++] = s;
}

void indexer_prefetch(const struct indexer *ix, const uint64_t *seq_hashes, size_t n,
		      size_t stride)
{
	for (size_t i = 0; i < n; i++)
		tab_prefetch(ix, u64map_mix(seq_hashes[i * stride]), 1);
}

static void emit(struct indexer *ix, size_t *nout, uint32_t s, uint32_t depth)
{
	if (*nout == ix->out_alloc) {
		ix->out_alloc = ix->out_alloc ? ix->out_alloc * 2 : 64;
		ix->out = xrealloc(ix->out, ix->out_alloc * sizeof(*ix->out));
	}
	ix->out[(*nout)++] = (struct indexer_match){ ix->w[s].id, depth };
}

#define PREFETCH_AHEAD 16

/* The holders of an occupied node: n of them at *w (for a single one,
 * in *one). */
static inline size_t node_holders(const struct node *nd, const uint32_t **w, uint32_t *one)
{
	if (is_single(nd->v)) {
		*one = single_w(nd->v);
		*w = one;
		return 1;
	}
	const struct hset *hs = hset_of(nd->v);
	*w = hs->w;
	return hs->n;
}

size_t indexer_find_matches(struct indexer *ix, const uint64_t *seq_hashes, size_t n,
			    const struct indexer_match **out)
{
	size_t nout = 0;
	*out = ix->out;
	if (!n)
		return 0;
	for (size_t k = 0; k < n && k < PREFETCH_AHEAD; k++)
		tab_prefetch(ix, u64map_mix(seq_hashes[k]), 0);
	const struct node *nd = tab_find(ix, seq_hashes[0]);
	if (!nd)
		return 0;
	const uint32_t *b;
	uint32_t one;
	size_t na = node_holders(nd, &b, &one), i;
	if (na == 1) {
		/* the common tail: one worker, followed with compares only */
		uint32_t w = b[0];
		for (i = 1; i < n; i++) {
			if (i + PREFETCH_AHEAD < n)
				tab_prefetch(ix, u64map_mix(seq_hashes[i + PREFETCH_AHEAD]), 0);
			nd = tab_find(ix, seq_hashes[i]);
			if (!nd || !node_holds(nd, w))
				break;
		}
		emit(ix, &nout, w, (uint32_t)i);
		*out = ix->out;
		return nout;
	}
	if (ix->act_alloc < na) {
		ix->act_alloc = na * 2;
		ix->act = xrealloc(ix->act, ix->act_alloc * sizeof(*ix->act));
		ix->act2 = xrealloc(ix->act2, ix->act_alloc * sizeof(*ix->act2));
	}
	memcpy(ix->act, b, na * sizeof(*b));
	for (i = 1; i < n && na; i++) {
		if (i + PREFETCH_AHEAD < n)
			tab_prefetch(ix, u64map_mix(seq_hashes[i + PREFETCH_AHEAD]), 0);
		nd = tab_find(ix, seq_hashes[i]);
		if (!nd)
			break;
		size_t nb = node_holders(nd, &b, &one), nk = 0;
		if (na == 1) {		/* one worker goes on */
			if (find_w(b, nb, ix->act[0]) >= 0)
				continue;
			emit(ix, &nout, ix->act[0], (uint32_t)i);
			na = 0;
			break;
		}
		if (nb == na && memcmp(b, ix->act, na * sizeof(*b)) == 0)
			continue;	/* the same workers go on */
		if (nb > 8 * na) {
			for (size_t a = 0; a < na; a++) {
				size_t p = lower_bound(b, nb, ix->act[a]);
				if (p < nb && b[p] == ix->act[a])
					ix->act2[nk++] = ix->act[a];
				else
					emit(ix, &nout, ix->act[a], (uint32_t)i);
			}
		} else {
			size_t a = 0, c = 0;
			while (a < na) {
				if (c < nb && b[c] < ix->act[a]) {
					c++;
				} else if (c < nb && b[c] == ix->act[a]) {
					ix->act2[nk++] = ix->act[a];
					a++;
					c++;
				} else {
					emit(ix, &nout, ix->act[a], (uint32_t)i);
					a++;
				}
			}
		}
		uint32_t *t = ix->act;
		ix->act = ix->act2;
		ix->act2 = t;
		na = nk;
	}
	for (size_t a = 0; a < na; a++)
		emit(ix, &nout, ix->act[a], (uint32_t)i);
	*out = ix->out;
	return nout;
}

int indexer_holds(const struct indexer *ix, uint64_t worker, uint64_t seq_hash)
{
	uint32_t s;
	if (!worker_find(ix, worker, &s))
		return 0;
	const struct node *nd = tab_find(ix, seq_hash);
	return nd && node_holds(nd, s);
}

size_t indexer_worker_blocks(const struct indexer *ix, uint64_t worker)
{
	uint32_t s;
	return worker_find(ix, worker, &s) ? ix->w[s].n : 0;
}

size_t indexer_blocks(const struct indexer *ix)
{
	return ix->n;
}

size_t indexer_pairs(const struct indexer *ix)
{
	return ix->pairs;
}

size_t indexer_workers(const struct indexer *ix)
{
	return u64map_size(&ix->ids);
}

size_t indexer_worker_ids(const struct indexer *ix, uint64_t *out, size_t max)
{
	size_t k = 0;
	for (size_t i = 0; i < ix->nw; i++) {
		if (!ix->w[i].live)
			continue;
		if (k < max)
			out[k] = ix->w[i].id;
		k++;
	}
	return k;
}

/* ---- lower tiers ------------------------------------------------------ */

void indexer_store_medium(struct indexer *ix, uint64_t worker, int medium,
			  const struct block_hash_pair *blocks, size_t n)
{
	if (medium <= 1 || medium > INDEXER_MEDIA) {
		indexer_store(ix, worker, 0, 0, blocks, n);
		return;
	}
	indexer_add_worker(ix, worker);	/* listed for find_tiered */
	if (!ix->below[medium])
		ix->below[medium] = indexer_new();
	indexer_store(ix->below[medium], worker, 0, 0, blocks, n);
}

size_t indexer_remove_medium(struct indexer *ix, uint64_t worker, int medium,
			     const uint64_t *seq_hashes, size_t n)
{
	if (medium <= 1 || medium > INDEXER_MEDIA)
		return indexer_remove(ix, worker, seq_hashes, n);
	return ix->below[medium] ? indexer_remove(ix->below[medium], worker, seq_hashes, n) : 0;
}

size_t indexer_medium_blocks(const struct indexer *ix, uint64_t worker, int medium)
{
	if (medium <= 1 || medium > INDEXER_MEDIA)
		return indexer_worker_blocks(ix, worker);
	return ix->below[medium] ? indexer_worker_blocks(ix->below[medium], worker) : 0;
}

static void temit(struct indexer *ix, size_t *nout, struct indexer_tmatch m)
{
	if (*nout == ix->tout_alloc) {
		ix->tout_alloc = ix->tout_alloc ? ix->tout_alloc * 2 : 64;
		ix->tout = xrealloc(ix->tout, ix->tout_alloc * sizeof(*ix->tout));
	}
	ix->tout[(*nout)++] = m;
}

/* The weight of the best medium holding h for worker s (G4: any worker's
 * G4, the directory is shared); 0: none. */
static double best_weight(const struct indexer *ix, uint32_t s, uint64_t id, uint64_t h,
			  const double *weight)
{
	const struct node *nd = tab_find(ix, h);
	if (nd && node_holds(nd, s))
		return weight[1];
	double best = 0;
	for (int k = 2; k <= INDEXER_MEDIA; k++) {
		const struct indexer *b = ix->below[k];
		if (!b || weight[k] <= best)
			continue;
		if (k == INDEXER_MEDIA ? tab_find(b, h) != NULL : indexer_holds(b, id, h))
			best = weight[k];
	}
	return best;
}

size_t indexer_find_tiered(struct indexer *ix, const uint64_t *seq_hashes, size_t n,
			   const double weight[INDEXER_MEDIA + 1],
			   const struct indexer_tmatch **out)
{
	size_t nout = 0;
	int tiers = 0;
	for (int k = 2; k <= INDEXER_MEDIA; k++)
		tiers |= ix->below[k] && ix->below[k]->pairs;
	if (!tiers) {	/* G1 only: the fast path */
		const struct indexer_match *m;
		size_t nm = indexer_find_matches(ix, seq_hashes, n, &m);
		for (size_t k = 0; k < nm; k++)
			temit(ix, &nout, (struct indexer_tmatch){ m[k].worker, m[k].depth,
								  m[k].depth * weight[1] });
		*out = ix->tout;
		return nout;
	}
	/* every worker, block by block: O(workers x blocks held) */
	for (uint32_t s = 0; s < ix->nw; s++) {
		if (!ix->w[s].live)
			continue;
		struct indexer_tmatch m = { ix->w[s].id, 0, 0 };
		for (size_t i = 0; i < n; i++) {
			double wt = best_weight(ix, s, m.worker, seq_hashes[i], weight);
			if (wt <= 0)
				break;
			m.depth++;
			m.score += wt;
		}
		if (m.depth)
			temit(ix, &nout, m);
	}
	*out = ix->tout;
	return nout;
}
