/*
 * block_manager.c - the KV block manager with prefix caching (block_manager.h).
 *
 * Free blocks sit on a stack; cached blocks on a doubly linked LRU list
 * (oldest at the head); hashed blocks (in use or cached) in a chained hash
 * table keyed by sequence hash.
 */
#include "core/kv/block_manager.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>

struct kv_block {
	int32_t ref;
	int hashed;
	uint64_t seq_hash;
	int32_t prev, next;	/* LRU links while cached */
	int32_t chain;		/* hash-table chain */
};

struct kv_manager {
	int n_blocks, block_size;
	struct kv_block *b;
	int32_t *free_stack;
	int n_free;
	int32_t lru_head, lru_tail;
	int n_cached, n_used;
	int32_t *buckets;
	uint32_t mask;
	struct kv_events ev;
	kv_evict_fn evict;
	void *evict_arg;
};

int kv_new(int n_blocks, int block_size, struct kv_manager **out)
{
	if (n_blocks < 1 || block_size < 1)
		return err_set(-EINVAL, "KV cache: %d blocks of %d tokens", n_blocks, block_size);
	struct kv_manager *kv = xcalloc(1, sizeof(*kv));
	uint32_t nb = 16;

	while (nb < (uint32_t)n_blocks * 2)
		nb <<= 1;
	kv->n_blocks = n_blocks;
	kv->block_size = block_size;
	kv->b = xcalloc((size_t)n_blocks, sizeof(*kv->b));
	kv->free_stack = xcalloc((size_t)n_blocks, sizeof(int32_t));
	for (int i = 0; i < n_blocks; i++)
		kv->free_stack[i] = n_blocks - 1 - i;	/* pop 0 first */
	kv->n_free = n_blocks;
	kv->lru_head = kv->lru_tail = -1;
	kv->buckets = xmalloc(nb * sizeof(int32_t));
	for (uint32_t i = 0; i < nb; i++)
		kv->buckets[i] = -1;
	kv->mask = nb - 1;
	*out = kv;
	return 0;
}

void kv_free(struct kv_manager *kv)
{
	if (!kv)
		return;
	free(kv->b);
	free(kv->free_stack);
	free(kv->buckets);
	free(kv);
}

void kv_set_events(struct kv_manager *kv, const struct kv_events *ev)
{
	kv->ev = ev ? *ev : (struct kv_events){ 0 };
}

void kv_set_evict(struct kv_manager *kv, kv_evict_fn fn, void *arg)
{
	kv->evict = fn;
	kv->evict_arg = arg;
}

int kv_block_size(const struct kv_manager *kv) { return kv->block_size; }
int kv_total(const struct kv_manager *kv) { return kv->n_blocks; }
int kv_used(const struct kv_manager *kv) { return kv->n_used; }
int kv_available(const struct kv_manager *kv) { return kv->n_free + kv->n_cached; }
int kv_cached(const struct kv_manager *kv) { return kv->n_cached; }

static int32_t *bucket(struct kv_manager *kv, uint64_t h)
{
	return &kv->buckets[(uint32_t)(h ^ (h >> 32)) & kv->mask];
}

static int32_t find(const struct kv_manager *kv, uint64_t h)
{
	int32_t i = kv->buckets[(uint32_t)(h ^ (h >> 32)) & kv->mask];
	while (i >= 0 && kv->b[i].seq_hash != h)
		i = kv->b[i].chain;
	return i;
}

static void unhash(struct kv_manager *kv, int32_t id)
{
	int32_t *p = bucket(kv, kv->b[id].seq_hash);
	while (*p != id)
		p = &kv->b[*p].chain;
	*p = kv->b[id].chain;
	kv->b[id].hashed = 0;
}

static void lru_unlink(struct kv_manager *kv, int32_t id)
{
	struct kv_block *blk = &kv->b[id];
	if (blk->prev >= 0)
		kv->b[blk->prev].next = blk->next;
	else
		kv->lru_head = blk->next;
	if (blk->next >= 0)
		kv->b[blk->next].prev = blk->prev;
	else
		kv->lru_tail = blk->prev;
	kv->n_cached--;
}

static void lru_append(struct kv_manager *kv, int32_t id)
{
	struct kv_block *blk = &kv->b[id];
	blk->prev = kv->lru_tail;
	blk->next = -1;
	if (kv->lru_tail >= 0)
		kv->b[kv->lru_tail].next = id;
	else
		kv->lru_head = id;
	kv->lru_tail = id;
	kv->n_cached++;
}

int kv_contains(const struct kv_manager *kv, uint64_t seq_hash)
{
	return find(kv, seq_hash) >= 0;
}

int32_t kv_acquire_cached(struct kv_manager *kv, uint64_t seq_hash)
{
	int32_t id = find(kv, seq_hash);
	if (id < 0)
		return -1;
	if (kv->b[id].ref++ == 0) {
		lru_unlink(kv, id);
		kv->n_used++;
	}
	return id;
}

int32_t kv_alloc(struct kv_manager *kv)
{
	int32_t id;

	if (kv->n_free > 0) {
		id = kv->free_stack[--kv->n_free];
	} else if (kv->lru_head >= 0) {
		id = kv->lru_head;
		lru_unlink(kv, id);
		uint64_t h = kv->b[id].seq_hash;
		if (kv->evict)
			kv->evict(kv->evict_arg, id, h);
		unhash(kv, id);
		if (kv->ev.removed)
			kv->ev.removed(kv->ev.arg, h);
	} else {
		return -1;
	}
	kv->b[id].ref = 1;
	kv->b[id].hashed = 0;
	kv->n_used++;
	return id;
}

void kv_commit(struct kv_manager *kv, int32_t id, uint64_t parent_hash, int has_parent,
	       uint64_t seq_hash, uint64_t local_hash)
{
	struct kv_block *blk = &kv->b[id];

	if (blk->hashed || find(kv, seq_hash) >= 0)
		return;
	blk->hashed = 1;
	blk->seq_hash = seq_hash;
	int32_t *p = bucket(kv, seq_hash);
	blk->chain = *p;
	*p = id;
	if (kv->ev.stored)
		kv->ev.stored(kv->ev.arg, parent_hash, has_parent, seq_hash, local_hash);
}

void kv_release(struct kv_manager *kv, int32_t id)
{
	struct kv_block *blk = &kv->b[id];

	if (blk->ref <= 0) {
		LOG_ERROR("kv", "release of free block %d", id);
		return;
	}
	if (--blk->ref > 0)
		return;
	kv->n_used--;
	if (blk->hashed)
		lru_append(kv, id);
	else
		kv->free_stack[kv->n_free++] = id;
}

void kv_clear(struct kv_manager *kv)
{
	while (kv->lru_head >= 0) {
		int32_t id = kv->lru_head;
		lru_unlink(kv, id);
		unhash(kv, id);
		kv->free_stack[kv->n_free++] = id;
	}
	if (kv->ev.cleared)
		kv->ev.cleared(kv->ev.arg);
}

void kv_layout_init(struct kv_layout *out, int n_layers, int n_blocks, int block_size,
		    int kv_dim, enum dtype dtype, size_t elem_bytes)
{
	out->n_layers = n_layers;
	out->n_blocks = n_blocks;
	out->block_size = block_size;
	out->kv_dim = kv_dim;
	out->dtype = dtype;
	out->elem_bytes = elem_bytes;
	out->layer_bytes = (size_t)block_size * (size_t)kv_dim * elem_bytes;
	out->block_bytes = 2 * (size_t)n_layers * out->layer_bytes;
}
