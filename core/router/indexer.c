/*
 * indexer.c - the global prefix index (indexer.h).
 *
 * Structure.  One open-addressing table (linear probing, backward-shift
 * deletion, load <= 3/4) maps a block's sequence hash straight to its node,
 * stored in the table itself (24 bytes): the sorted dense ids of the
 * workers holding it, inline up to 2 (the common case: a block lives on
 * one or two workers) and on the heap beyond.  Each worker has a reverse
 * set of the hashes it holds, so removing one block is O(1) and purging a
 * worker is O(its blocks).  A sequence hash names the whole prefix, so no
 * explicit tree is needed: find_matches probes the request's hashes in
 * order (prefetching the slots a few blocks ahead), keeps the sorted set
 * of workers still matching, intersects it with each node's set (merge,
 * or binary search when the node's set is much larger) and stops as soon
 * as no worker is left or a hash is unknown.  Cost per request: one probe
 * per matched block plus the shrinking intersections, independent of the
 * number of workers that share nothing with it.
 *
 * Stores and removals are applied 16 blocks at a time: room is made
 * first, then every probe of the batch is prefetched so that their cache
 * misses overlap; the table lives on transparent huge pages once large.
 *
 * Measured (test/bench/router.sh: 1,000 workers, 1M (block, worker)
 * pairs over 870k distinct blocks in 400 shared system prompts plus
 * per-conversation tails; requests of 64-256 blocks; one thread of a
 * shared 2-core VM, CPU time, gcc -O2):
 *   find_matches  p50 0.37 us, p99 2.1-2.3 us, 1.8M requests/s; the
 *                 naive baseline (per-worker hash sets, every worker
 *                 walked from the first block) p50 28-32 us, p99 77-146 us:
 *                 80x faster at p50, and independent of the number of
 *                 workers that share nothing with the request.
 *   events        stored 8.2M blocks/s on insert (naive 20M/s: it
 *                 keeps only the per-worker sets, the price of the global
 *                 table); churn (removed + stored events of 16-64 blocks
 *                 with find_matches mixed in) 9.0M blocks/s = 0.38M
 *                 events/s; through the JSON wire format 0.23-0.27M
 *                 events/s of 16 blocks (3.7-4.3M blocks/s: decoding
 *                 dominates).
 * Without batching, perf put ~70% of a store on the first load of each
 * probe (a cache and TLB miss): overlapping those misses is what
 * matters, and doubled the churn rate in the same run.
 */
#include "core/router/indexer.h"
#include "core/router/u64map.h"

#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define INLINE_WORKERS 2

/* ---- nodes --------------------------------------------------------- */

struct node {
	uint64_t hash;
	uint32_t n;		/* workers holding it; 0 = empty slot */
	uint32_t cap;		/* 0: inline */
	union {
		uint32_t w[INLINE_WORKERS];
		uint32_t *p;
	} u;
};

static inline uint32_t *node_ws(struct node *nd)
{
	return nd->cap ? nd->u.p : nd->u.w;
}

static inline const uint32_t *node_wsc(const struct node *nd)
{
	return nd->cap ? nd->u.p : nd->u.w;
}

/* Position of w in sorted a[0..n), or where it would go. */
static size_t lower_bound(const uint32_t *a, size_t n, uint32_t w)
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

/* Returns 1 if added. */
static int node_add(struct node *nd, uint32_t w)
{
	uint32_t *a = node_ws(nd);
	size_t pos = lower_bound(a, nd->n, w);
	if (pos < nd->n && a[pos] == w)
		return 0;
	uint32_t cap = nd->cap ? nd->cap : INLINE_WORKERS;
	if (nd->n == cap) {
		uint32_t ncap = cap * 2;
		uint32_t *p = xmalloc(ncap * sizeof(*p));
		memcpy(p, a, nd->n * sizeof(*p));
		if (nd->cap)
			free(nd->u.p);
		nd->u.p = p;
		nd->cap = ncap;
		a = p;
	}
	memmove(a + pos + 1, a + pos, (nd->n - pos) * sizeof(*a));
	a[pos] = w;
	nd->n++;
	return 1;
}

/* Returns 1 if removed. */
static int node_del(struct node *nd, uint32_t w)
{
	uint32_t *a = node_ws(nd);
	size_t pos = lower_bound(a, nd->n, w);
	if (pos >= nd->n || a[pos] != w)
		return 0;
	memmove(a + pos, a + pos + 1, (nd->n - pos - 1) * sizeof(*a));
	nd->n--;
	if (nd->cap && nd->n <= INLINE_WORKERS) {
		uint32_t tmp[INLINE_WORKERS];
		memcpy(tmp, a, nd->n * sizeof(*a));
		free(nd->u.p);
		nd->cap = 0;
		memcpy(nd->u.w, tmp, nd->n * sizeof(*a));
	}
	return 1;
}

static int node_has(const struct node *nd, uint32_t w)
{
	const uint32_t *a = node_wsc(nd);
	size_t pos = lower_bound(a, nd->n, w);
	return pos < nd->n && a[pos] == w;
}

/* ---- the index ----------------------------------------------------- */

struct worker {
	uint64_t id;
	struct u64map blocks;	/* seq hashes held (values unused) */
	int live;
};

struct indexer {
	struct node *tab;
	size_t cap, n;		/* cap: power of two */
	size_t pairs;
	struct worker *w;
	size_t nw, w_alloc;
	uint32_t *free_w;
	size_t n_free_w;
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
	for (size_t i = 0; i < ix->nw; i++)
		u64map_release(&ix->w[i].blocks);
	free(ix->w);
	free(ix->free_w);
	u64map_release(&ix->ids);
	free(ix->act);
	free(ix->act2);
	free(ix->out);
	free(ix);
}

static struct node *tab_find(const struct indexer *ix, uint64_t h)
{
	size_t mask = ix->cap - 1, i = u64map_mix(h) & mask;
	while (ix->tab[i].n) {
		if (ix->tab[i].hash == h)
			return &ix->tab[i];
		i = (i + 1) & mask;
	}
	return NULL;
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

/* The node for h; a new one is empty (n 0) and must be filled at once. */
static struct node *tab_get_or_add(struct indexer *ix, uint64_t h)
{
	if ((ix->n + 1) * 4 > ix->cap * 3)
		tab_grow(ix);
	size_t mask = ix->cap - 1, i = u64map_mix(h) & mask;
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

/* Delete the (now empty) node nd. */
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

static void tab_reserve(struct indexer *ix, size_t extra)
{
	while ((ix->n + extra) * 4 > ix->cap * 3)
		tab_grow(ix);
}

#define BATCH 16

/* Store hashes h[0], h[stride], ... (n of them) for slot s, BATCH at a
 * time: room is made first, then every probe of the batch is prefetched
 * so that their cache misses overlap. */
static void store_many(struct indexer *ix, uint32_t s, const uint64_t *h, size_t stride,
		       size_t n)
{
	struct u64map *wb = &ix->w[s].blocks;
	for (size_t i = 0; i < n; i += BATCH) {
		size_t m = n - i < BATCH ? n - i : BATCH;
		uint64_t mixed[BATCH];
		tab_reserve(ix, m);
		u64map_reserve(wb, m);
		for (size_t k = 0; k < m; k++) {
			mixed[k] = u64map_mix(h[(i + k) * stride]);
			__builtin_prefetch(&ix->tab[mixed[k] & (ix->cap - 1)], 1);
			u64map_prefetch(wb, mixed[k]);
		}
		for (size_t k = 0; k < m; k++) {
			uint64_t hk = h[(i + k) * stride];
			struct node *nd = tab_get_or_add(ix, hk);
			if (node_add(nd, s)) {
				u64map_put(wb, hk, 0);
				ix->pairs++;
			}
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
	store_many(ix, s, seq_hashes, 1, n);
}

static int drop_pair(struct indexer *ix, uint32_t s, uint64_t h)
{
	struct node *nd = tab_find(ix, h);
	if (!nd || !node_del(nd, s))
		return 0;
	if (!nd->n)
		tab_del(ix, nd);
	ix->pairs--;
	return 1;
}

size_t indexer_remove(struct indexer *ix, uint64_t worker, const uint64_t *seq_hashes,
		      size_t n)
{
	uint32_t s;
	size_t removed = 0;
	if (!worker_find(ix, worker, &s))
		return 0;
	struct u64map *wb = &ix->w[s].blocks;
	for (size_t i = 0; i < n; i += BATCH) {
		size_t m = n - i < BATCH ? n - i : BATCH;
		for (size_t k = 0; k < m; k++) {
			uint64_t mixed = u64map_mix(seq_hashes[i + k]);
			__builtin_prefetch(&ix->tab[mixed & (ix->cap - 1)], 1);
			u64map_prefetch(wb, mixed);
		}
		for (size_t k = 0; k < m; k++)
			if (u64map_del(wb, seq_hashes[i + k]))
				removed += (size_t)drop_pair(ix, s, seq_hashes[i + k]);
	}
	return removed;
}

static void clear_slot(struct indexer *ix, uint32_t s)
{
	struct u64map *b = &ix->w[s].blocks;
	if (b->has_zero)
		drop_pair(ix, s, 0);
	for (size_t i = 0; i < b->cap; i++)
		if (b->keys[i])
			drop_pair(ix, s, b->keys[i]);
	u64map_release(b);
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
	ix->free_w = xrealloc(ix->free_w, (ix->n_free_w + 1) * sizeof(*ix->free_w));
	ix->free_w[ix->n_free_w++] = s;
}

static void emit(struct indexer *ix, size_t *nout, uint32_t s, uint32_t depth)
{
	if (*nout == ix->out_alloc) {
		ix->out_alloc = ix->out_alloc ? ix->out_alloc * 2 : 64;
		ix->out = xrealloc(ix->out, ix->out_alloc * sizeof(*ix->out));
	}
	ix->out[(*nout)++] = (struct indexer_match){ ix->w[s].id, depth };
}

#define PREFETCH_AHEAD 8

size_t indexer_find_matches(struct indexer *ix, const uint64_t *seq_hashes, size_t n,
			    const struct indexer_match **out)
{
	size_t nout = 0, mask = ix->cap - 1;
	*out = ix->out;
	if (!n)
		return 0;
	for (size_t k = 0; k < n && k < PREFETCH_AHEAD; k++)
		__builtin_prefetch(&ix->tab[u64map_mix(seq_hashes[k]) & mask]);
	const struct node *nd = tab_find(ix, seq_hashes[0]);
	if (!nd)
		return 0;
	if (ix->act_alloc < nd->n) {
		ix->act_alloc = nd->n * 2;
		ix->act = xrealloc(ix->act, ix->act_alloc * sizeof(*ix->act));
		ix->act2 = xrealloc(ix->act2, ix->act_alloc * sizeof(*ix->act2));
	}
	size_t na = nd->n;
	memcpy(ix->act, node_wsc(nd), na * sizeof(*ix->act));
	size_t i;
	for (i = 1; i < n && na; i++) {
		if (i + PREFETCH_AHEAD < n)
			__builtin_prefetch(&ix->tab[u64map_mix(seq_hashes[i + PREFETCH_AHEAD]) & mask]);
		nd = tab_find(ix, seq_hashes[i]);
		if (!nd)
			break;
		const uint32_t *b = node_wsc(nd);
		size_t nb = nd->n, nk = 0;
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
	return nd && node_has(nd, s);
}

size_t indexer_worker_blocks(const struct indexer *ix, uint64_t worker)
{
	uint32_t s;
	return worker_find(ix, worker, &s) ? u64map_size(&ix->w[s].blocks) : 0;
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
