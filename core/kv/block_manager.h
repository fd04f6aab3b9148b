/*
 * block_manager.h - the paged KV cache's block manager, with prefix caching.
 *
 * Bookkeeping only: the K/V data live in the backend's pool (backend.h),
 * indexed by the block ids handed out here.  A block is
 *   - free:    never held a full hashed block, or was evicted;
 *   - in use:  referenced by one or more sequences (ref > 0); a full block
 *              shared by several sequences with the same prefix is one block;
 *   - cached:  ref 0 but still holding a full, hashed block: reusable by a
 *              request with the same prefix until evicted.
 * Cached blocks are evicted least recently released first, when a new
 * block is needed and no free one is left.
 *
 * Eviction goes through a hook (kv_set_evict): it is called with the block
 * and its sequence hash just before a cached block is reused, while its
 * data are still intact, so that a lower tier can take them.
 *
 * Full blocks are keyed by their sequence hash (block_hash.h).  KV event
 * hooks fire synchronously inside the calls that cause them: stored when a
 * block's hash is registered, removed when a cached block is evicted or
 * cleared, cleared when kv_clear() drops the whole cache.
 *
 * Not thread-safe: owned by the engine's step thread.
 */
#ifndef DYN_KV_BLOCK_MANAGER_H
#define DYN_KV_BLOCK_MANAGER_H

#include "core/model/dtype.h"

#include <stddef.h>
#include <stdint.h>

/* How the backend stores one block (backend.h kv_layout, engine_kv_layout). */
struct kv_layout {
	int n_layers, n_blocks, block_size, kv_dim;
	enum dtype dtype;		/* element type */
	size_t elem_bytes;
	size_t layer_bytes;		/* one block's K (or V) rows of one layer */
	size_t block_bytes;		/* a block's host image: 2 x n_layers x layer_bytes */
};

/* Fill in a layout (the byte sizes follow from the shape). */
void kv_layout_init(struct kv_layout *out, int n_layers, int n_blocks, int block_size,
		    int kv_dim, enum dtype dtype, size_t elem_bytes);

struct kv_events {
	/* parent_hash is 0 with has_parent 0 for a sequence's first block. */
	void (*stored)(void *arg, uint64_t parent_hash, int has_parent, uint64_t seq_hash,
		       uint64_t local_hash);
	void (*removed)(void *arg, uint64_t seq_hash);
	void (*cleared)(void *arg);
	/* A block entered (stored 1) or left (0) a lower KV tier (2 G2 .. 4
	 * G4, core/kv/tiers.h), on any thread; NULL: not wanted.  Set by the
	 * engine on its tiers, never called by the block manager. */
	void (*tiered)(void *arg, int tier, int stored, uint64_t seq_hash);
	void *arg;
};

struct kv_manager;

int kv_new(int n_blocks, int block_size, struct kv_manager **out);
void kv_free(struct kv_manager *kv);
void kv_set_events(struct kv_manager *kv, const struct kv_events *ev);
/* Called with a cached block about to be evicted (before its "removed"
 * event); NULL: none. */
typedef void (*kv_evict_fn)(void *arg, int32_t block, uint64_t seq_hash);
void kv_set_evict(struct kv_manager *kv, kv_evict_fn fn, void *arg);

int kv_block_size(const struct kv_manager *kv);
int kv_total(const struct kv_manager *kv);
/* Blocks referenced by sequences. */
int kv_used(const struct kv_manager *kv);
/* Blocks a kv_alloc() could still return (free + cached). */
int kv_available(const struct kv_manager *kv);
/* Cached (ref 0, hashed) blocks. */
int kv_cached(const struct kv_manager *kv);

/* Take a reference on the block holding seq_hash; its id, or -1 when it is
 * not cached. */
int32_t kv_acquire_cached(struct kv_manager *kv, uint64_t seq_hash);
/* Is seq_hash held (in use or cached)? */
int kv_contains(const struct kv_manager *kv, uint64_t seq_hash);
/* A new block (ref 1), evicting the least recently used cached block if
 * needed; -1 when every block is in use. */
int32_t kv_alloc(struct kv_manager *kv);
/* Register a block that just became full (its K/V computed) under its
 * hash.  A hash already held by another block leaves this one unhashed. */
void kv_commit(struct kv_manager *kv, int32_t block, uint64_t parent_hash, int has_parent,
	       uint64_t seq_hash, uint64_t local_hash);
/* Drop one reference.  Release a sequence's blocks last to first, so that
 * a prefix outlives its tails in the LRU order. */
void kv_release(struct kv_manager *kv, int32_t block);
/* Forget every cached block (blocks in use keep their hashes). */
void kv_clear(struct kv_manager *kv);

#endif
