/*
 * indexer.c - the global prefix index (indexer.h).
 *
 * Structure.  One open-addressing table (linear probing, backward-shift
 * deletion, load <= 3/4, on transparent huge pages once large) maps a
 * block's sequence hash straight to its node, stored in the table itself
 * (32 bytes, two to a cache line): the holders of the block, sorted by
 * dense worker slot, inline up to 2 (a tail block lives on one worker)
 * and on the heap beyond (shared system prompts).  A sequence hash names
 * the whole prefix, so no explicit tree is needed.  Each holder entry
 * also records where the block sits in its worker's array of held
 * hashes, so that:
 *   - store is one probe per block plus an append (or the reuse of a
 *     hole) in the worker's array: no per-worker hash set to update;
 *   - remove is one probe: the entry goes, its position becomes a hole
 *     on the worker's free stack (an earlier design kept the array dense
 *     by moving the last hash into the hole, which cost a second,
 *     dependent miss per removed block);
 *   - clear/purge walk the worker's array (holes included: an entry is
 *     live iff its node lists the worker at that position): O(its blocks).
 * find_matches probes the request's hashes in order, prefetching the
 * slots 16 blocks ahead (prefetching heap holder arrays too was slower), keeps the
 * sorted set of workers still matching, intersects it with each node's
 * holders (a single worker: one lookup; equal sets: one compare; else
 * merge, or binary search when the node's set is much larger) and stops
 * as soon as no worker is left or a hash is unknown.  Stores and removals
 * go 16 blocks at a time, every probe of a batch prefetched first, and a
 * caller applying a batch of events (kv_sync_apply) hints the next
 * events' blocks with indexer_prefetch() while applying the current one.
 *
 * Why: a probe is a random access into a table far larger than the
 * caches, and on the benchmark VM one dependent DRAM miss costs ~260 ns
 * while independent ones overlap to ~11 ns each; so the design minimises
 * misses per block (one) and makes them independent (batched, hinted).
 *
 * Measured (test/bench/router.sh: 1,000 workers, 1M (block, worker) pairs;
 * one thread of a shared 2-core VM, CPU time, gcc -O2; noisy, +-30%):
 *   find_matches  p50 0.6-0.7 us (0.4-0.6 before; noise), p99 2.6-4 us for requests of 64-256
 *                 blocks; the naive baseline (per-worker hash sets, every
 *                 worker walked) p50 27-58 us: ~50x faster.
 *   insert        7.6-15.8M blocks/s from empty (the previous design with
 *                 per-worker hash sets: 3.5M/s; naive 19-22M/s, whose
 *                 per-worker sets fit in L3); growing the table (page
 *                 zeroing) is most of the difference: pre-sized, 15.8M/s.
 *   replay        the Mooncake trace counted as Dynamo's mooncake_bench
 *                 counts ops (one find_matches or one KV event = one op;
 *                 events as its mock engine emits them: a prefill's new
 *                 blocks as one stored event, one stored event per decode
 *                 block, one removed event per evicted block), 1,000
 *                 LRU workers of 1,000 blocks: 3.4-4.6M ops/s (previous
 *                 design 3.2M), against Dynamo's ~7M ops/s per core
 *                 (on server hardware; ops here are 94% one-block removals,
 *                 each a cold miss).
 */
#include "core/router/indexer.h"
#include "core/router/u64map.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define INLINE_HOLDERS 2

/* ---- nodes --------------------------------------------------------- */

/* One holder of a block: the worker's dense slot, and where the block's
 * hash sits in that worker's array (so removing it is a swap, O(1)). */
struct ent {
	uint32_t w, pos;
};

/* A block, stored in the table itself: 32 bytes, two to a cache line. */
struct node {
	uint64_t hash;
	uint32_t n;		/* holders; 0 = empty slot */
	uint32_t cap;		/* 0: inline */
	union {
		struct ent e[INLINE_HOLDERS];
		struct ent *p;
	} u;
};

_Static_assert(sizeof(struct node) == 32, "two nodes to a cache line");

static inline struct ent *node_ents(struct node *nd)
{
	return nd->cap ? nd->u.p : nd->u.e;
}

static inline const struct ent *node_entsc(const struct node *nd)
{
	return nd->cap ? nd->u.p : nd->u.e;
}

/* Position of worker w in the sorted holders a[0..n), or where it would go. */
static inline size_t ent_lower_bound(const struct ent *a, size_t n, uint32_t w)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (a[mid].w < w)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert holder e at index at (the caller found it free of e.w). */
static void node_insert(struct node *nd, size_t at, struct ent e)
{
	struct ent *a = node_ents(nd);
	uint32_t cap = nd->cap ? nd->cap : INLINE_HOLDERS;
	if (nd->n == cap) {
		uint32_t ncap = cap * 2;
		struct ent *p = xmalloc(ncap * sizeof(*p));
		memcpy(p, a, nd->n * sizeof(*p));
		if (nd->cap)
			free(nd->u.p);
		nd->u.p = p;
		nd->cap = ncap;
		a = p;
	}
	memmove(a + at + 1, a + at, (nd->n - at) * sizeof(*a));
	a[at] = e;
	nd->n++;
}

/* Remove the holder at index at. */
static void node_erase(struct node *nd, size_t at)
{
	struct ent *a = node_ents(nd);
	memmove(a + at, a + at + 1, (nd->n - at - 1) * sizeof(*a));
	nd->n--;
	if (nd->cap && nd->n <= INLINE_HOLDERS) {
		struct ent tmp[INLINE_HOLDERS];
		memcpy(tmp, a, nd->n * sizeof(*a));
		free(nd->u.p);
		nd->cap = 0;
		memcpy(nd->u.e, tmp, nd->n * sizeof(*a));
	}
}

/* Index of worker w among nd's holders, or -1. */
static inline long node_find(const struct node *nd, uint32_t w)
{
	const struct ent *a = node_entsc(nd);
	if (nd->n <= 4) {
		for (uint32_t i = 0; i < nd->n; i++)
			if (a[i].w == w)
				return (long)i;
		return -1;
	}
	size_t i = ent_lower_bound(a, nd->n, w);
	return i < nd->n && a[i].w == w ? (long)i : -1;
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
	/* find_matches scratch */
	uint32_t *act, *act2;
	size_t act_alloc;
	struct indexer_match *out;
	size_t out_alloc;
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
		if (ix->tab[i].n && ix->tab[i].cap)
			free(ix->tab[i].u.p);
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
	free(ix);
}

static inline struct node *tab_find_m(const struct indexer *ix, uint64_t h, uint64_t mixed)
{
	size_t mask = ix->cap - 1, i = mixed & mask;
	while (ix->tab[i].n) {
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
		if (!ix->tab[i].n)
			continue;
		size_t j = u64map_mix(ix->tab[i].hash) & mask;
		while (nt[j].n)
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

/* The node for h, or a new empty one (n 0) to be filled at once; room
 * must have been reserved. */
static inline struct node *tab_get_or_add(struct indexer *ix, uint64_t h, uint64_t mixed)
{
	size_t mask = ix->cap - 1, i = mixed & mask;
	while (ix->tab[i].n) {
		if (ix->tab[i].hash == h)
			return &ix->tab[i];
		i = (i + 1) & mask;
	}
	ix->tab[i].hash = h;
	ix->tab[i].cap = 0;
	ix->n++;
	return &ix->tab[i];
}

/* Delete the (now empty) node nd: backward shift, no tombstones. */
static void tab_del(struct indexer *ix, struct node *nd)
{
	size_t mask = ix->cap - 1, i = (size_t)(nd - ix->tab), j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!ix->tab[j].n)
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
	const uint32_t *v = u64map_get(&ix->ids, id);
	if (v)
		return *v;
	uint32_t s;
	if (ix->n_free_w) {
		s = ix->free_w[--ix->n_free_w];
	} else {
		if (ix->nw == ix->w_alloc) {
			ix->w_alloc = ix->w_alloc ? ix->w_alloc * 2 : 16;
			ix->w = xrealloc(ix->w, ix->w_alloc * sizeof(*ix->w));
		}
		s = (uint32_t)ix->nw++;
		memset(&ix->w[s], 0, sizeof(ix->w[s]));
	}
	ix->w[s].id = id;
	ix->w[s].live = 1;
	u64map_put(&ix->ids, id, s);
	return s;
}

static int worker_find(const struct indexer *ix, uint64_t id, uint32_t *out)
{
	const uint32_t *v = u64map_get(&ix->ids, id);
	if (!v)
		return 0;
	*out = *v;
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
			struct ent e = { s, wk->n_free ? wk->free[wk->n_free - 1] : wk->len };
			if (!nd->n) {
				nd->u.e[0] = e;
				nd->n = 1;
			} else {
				const struct ent *a = node_ents(nd);
				size_t at = ent_lower_bound(a, nd->n, s);
				if (at < nd->n && a[at].w == s)
					continue;	/* already held */
				node_insert(nd, at, e);
			}
			if (wk->n_free)
				wk->n_free--;
			else
				wk->len++;
			wk->held[e.pos] = hk;
			wk->n++;
			ix->pairs++;
		}
	}
}

void indexer_store(struct indexer *ix, uint64_t worker, uint64_t parent, int has_parent,
		   const struct indexer_block *blocks, size_t n)
{
	(void)parent;
	(void)has_parent;
	_Static_assert(sizeof(struct indexer_block) == 2 * sizeof(uint64_t), "block layout");
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
	long at = node_find(nd, s);
	if (at < 0)
		return 0;
	uint32_t pos = node_ents(nd)[at].pos;
	node_erase(nd, (size_t)at);
	if (!nd->n)
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
	if (!worker_find(ix, worker, &s))
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
			long at = nd ? node_find(nd, s) : -1;
			if (at < 0 || node_ents(nd)[at].pos != i + k)
				continue;	/* a hole */
			node_erase(nd, (size_t)at);
			if (!nd->n)
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
}

void indexer_purge(struct indexer *ix, uint64_t worker)
{
	uint32_t s;
	if (!worker_find(ix, worker, &s))
		return;
	clear_slot(ix, s);
	ix->w[s].live = 0;
	u64map_del(&ix->ids, worker);
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
	if (ix->act_alloc < nd->n) {
		ix->act_alloc = nd->n * 2;
		ix->act = xrealloc(ix->act, ix->act_alloc * sizeof(*ix->act));
		ix->act2 = xrealloc(ix->act2, ix->act_alloc * sizeof(*ix->act2));
	}
	size_t na = nd->n;
	const struct ent *e0 = node_entsc(nd);
	for (size_t a = 0; a < na; a++)
		ix->act[a] = e0[a].w;
	size_t i;
	for (i = 1; i < n && na; i++) {
		if (i + PREFETCH_AHEAD < n)
			tab_prefetch(ix, u64map_mix(seq_hashes[i + PREFETCH_AHEAD]), 0);
		nd = tab_find(ix, seq_hashes[i]);
		if (!nd)
			break;
		const struct ent *b = node_entsc(nd);
		size_t nb = nd->n, nk = 0;
		if (na == 1) {		/* the common tail: one worker goes on */
			if (node_find(nd, ix->act[0]) >= 0)
				continue;
			emit(ix, &nout, ix->act[0], (uint32_t)i);
			na = 0;
			break;
		}
		if (nb == na) {
			size_t k = 0;
			while (k < na && b[k].w == ix->act[k])
				k++;
			if (k == na)
				continue;	/* the same workers go on */
		}
		if (nb > 8 * na) {
			for (size_t a = 0; a < na; a++) {
				size_t p = ent_lower_bound(b, nb, ix->act[a]);
				if (p < nb && b[p].w == ix->act[a])
					ix->act2[nk++] = ix->act[a];
				else
					emit(ix, &nout, ix->act[a], (uint32_t)i);
			}
		} else {
			size_t a = 0, c = 0;
			while (a < na) {
				if (c < nb && b[c].w < ix->act[a]) {
					c++;
				} else if (c < nb && b[c].w == ix->act[a]) {
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
	return nd && node_find(nd, s) >= 0;
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
