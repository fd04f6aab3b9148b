/*
 * indexer.h - the router's global prefix index: which workers hold which
 * KV blocks (by sequence hash, DESIGN.md section 1 / core/proto/block_hash.h),
 * and, for a request, how many of its leading blocks each worker holds.
 *
 *     struct indexer *ix = indexer_new();
 *     indexer_store(ix, worker, parent, has_parent, blocks, n);   // KV "stored"
 *     indexer_remove(ix, worker, seq_hashes, n);                  // KV "removed"
 *     indexer_clear(ix, worker);                                  // KV "cleared"
 *     indexer_purge(ix, worker);            // the worker is gone
 *     n = indexer_find_matches(ix, req_seq_hashes, n_blocks, &m);
 *     // m[0..n): {worker, depth} for every worker with depth >= 1
 *
 * Workers are named by their 64-bit instance ids (any value); the index
 * maps them to dense slots internally.  A block's sequence hash names its
 * whole prefix, so "worker w holds the first d blocks of the request"
 * is "w holds seq_hash[0..d)"; a block held without its parent never
 * counts (only leading blocks are matched).  Stored blocks are accepted
 * whether or not the worker's index holds their parent (a resync dump
 * may list blocks in any order); the parent hash is not needed for
 * matching and is not kept.
 *
 * Not thread-safe: one thread owns an index (the router's loop).
 */
#ifndef DYN_ROUTER_INDEXER_H
#define DYN_ROUTER_INDEXER_H

#include "core/proto/block_hash.h"

#include <stddef.h>
#include <stdint.h>

struct indexer;

struct indexer_match {
	uint64_t worker;
	uint32_t depth;		/* leading request blocks the worker holds */
};

struct indexer *indexer_new(void);
void indexer_free(struct indexer *ix);

/* Record that worker holds blocks[0..n) (a chain under parent).
 * Registers the worker if new.  Blocks already held are no-ops. */
void indexer_store(struct indexer *ix, uint64_t worker, uint64_t parent, int has_parent,
		   const struct block_hash_pair *blocks, size_t n);
/* Same, for bare sequence hashes. */
void indexer_store_hashes(struct indexer *ix, uint64_t worker, const uint64_t *seq_hashes,
			  size_t n);
/* Forget blocks of worker; unknown ones are ignored.  Returns how many
 * were removed. */
size_t indexer_remove(struct indexer *ix, uint64_t worker, const uint64_t *seq_hashes,
		      size_t n);
/* Forget every block of worker (it stays registered). */
void indexer_clear(struct indexer *ix, uint64_t worker);
/* Forget the worker entirely. */
void indexer_purge(struct indexer *ix, uint64_t worker);
/* Register worker with no blocks (no-op when known). */
void indexer_add_worker(struct indexer *ix, uint64_t worker);
/*
 * Size the table for blocks distinct blocks at once (a hint: e.g. the
 * sum of the workers' KV capacities from their load reports), so that
 * filling it does not rehash it step by step.  Never shrinks; the index
 * still grows past it.
 */
void indexer_reserve(struct indexer *ix, size_t blocks);

/*
 * Overlap of a request (its block sequence hashes, in order) with every
 * worker.  *out points to an array owned by ix, valid until the next
 * call on ix; the return value is its length.  Workers holding no
 * leading block are not listed; order is unspecified.
 */
size_t indexer_find_matches(struct indexer *ix, const uint64_t *seq_hashes, size_t n,
			    const struct indexer_match **out);

/*
 * A hint: the blocks seq_hashes[0], [stride], ... (n of them) are about
 * to be stored, removed or matched.  Starts loading their table slots so
 * that the cache misses of several events overlap (a caller applying a
 * batch of events hints the next ones while applying the current one).
 * No effect on the index's contents.
 */
void indexer_prefetch(const struct indexer *ix, const uint64_t *seq_hashes, size_t n,
		      size_t stride);

/*
 * Lower KV tiers (core/proto/kv_events.h "medium": 2 G2 host memory, 3 G3
 * local disk, 4 G4 a directory shared by the workers).  Each medium is its
 * own set of (block, worker) pairs, independent of G1's: a block can be in
 * G1 and G2 at once.  medium <= 1 is G1 (indexer_store/remove).
 * indexer_clear and indexer_purge forget the worker's blocks in every
 * medium (a cleared event or a resync's dump, which lists them again).
 */
#define INDEXER_MEDIA 4
void indexer_store_medium(struct indexer *ix, uint64_t worker, int medium,
			  const struct block_hash_pair *blocks, size_t n);
size_t indexer_remove_medium(struct indexer *ix, uint64_t worker, int medium,
			     const uint64_t *seq_hashes, size_t n);
/* Blocks the worker holds in medium. */
size_t indexer_medium_blocks(const struct indexer *ix, uint64_t worker, int medium);

struct indexer_tmatch {
	uint64_t worker;
	uint32_t depth;		/* leading request blocks held in some medium */
	double score;		/* sum over them of the best medium's weight */
};
/*
 * Like indexer_find_matches, over every medium: block i counts for worker
 * w with weight[m] of the best medium m in which w holds it (weight[1]:
 * G1), a G4 block for every worker whoever wrote it; the walk stops at the
 * first block w holds nowhere.  Without lower-tier blocks it is
 * find_matches (score = depth x weight[1]); with some, O(workers x depth).
 */
size_t indexer_find_tiered(struct indexer *ix, const uint64_t *seq_hashes, size_t n,
			   const double weight[INDEXER_MEDIA + 1],
			   const struct indexer_tmatch **out);

/* Does worker hold seq_hash? */
int indexer_holds(const struct indexer *ix, uint64_t worker, uint64_t seq_hash);
/* Blocks indexed for worker (0 when unknown). */
size_t indexer_worker_blocks(const struct indexer *ix, uint64_t worker);
/* Distinct blocks, (block, worker) pairs, registered workers. */
size_t indexer_blocks(const struct indexer *ix);
size_t indexer_pairs(const struct indexer *ix);
size_t indexer_workers(const struct indexer *ix);
/* Registered workers' ids into out[0..max); returns the total. */
size_t indexer_worker_ids(const struct indexer *ix, uint64_t *out, size_t max);

#endif
