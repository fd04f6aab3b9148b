/*
 * kv_publisher.c - numbering and batching a worker's KV events, with a
 * mirror of its stored blocks for dumps (kv_publisher.h).
 */
#include "core/serve/kv_publisher.h"

#include "core/kv/block_manager.h"
#include "core/strbuf.h"
#include "core/u64map.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

struct pub_op {
	enum kv_event_kind kind;
	int has_parent;
	uint64_t parent, seq, local;
	int medium;		/* 1 G1 .. KV_MEDIUM_MAX */
};

struct pub_block {
	uint64_t seq, parent, local;
	int has_parent;
};

/* The blocks of one medium stored as of last_id. */
struct mirror {
	struct pub_block *blk;
	size_t n_blk, blk_alloc;
	struct u64map where;	/* seq -> index in blk */
};

struct kv_publisher {
	struct pub_op *ops;
	size_t n_ops, ops_alloc;
	uint64_t last_id;
	struct mirror mir[KV_MEDIUM_MAX + 1];	/* by medium; [0] unused */
	struct kv_msg scratch;
	size_t ev_alloc;
};

struct kv_publisher *kv_publisher_new(void)
{
	return xcalloc(1, sizeof(struct kv_publisher));
}

void kv_publisher_free(struct kv_publisher *p)
{
	if (!p)
		return;
	free(p->ops);
	for (int k = 1; k <= KV_MEDIUM_MAX; k++) {
		free(p->mir[k].blk);
		u64map_release(&p->mir[k].where);
	}
	for (size_t i = 0; i < p->ev_alloc; i++) {
		free(p->scratch.events[i].blocks);
		free(p->scratch.events[i].hashes);
	}
	free(p->scratch.events);
	free(p);
}

static void pub_push(struct kv_publisher *p, struct pub_op op)
{
	if (p->n_ops == p->ops_alloc) {
		p->ops_alloc = p->ops_alloc ? p->ops_alloc * 2 : 64;
		p->ops = xrealloc(p->ops, p->ops_alloc * sizeof(*p->ops));
	}
	p->ops[p->n_ops++] = op;
}

static void hook_stored(void *arg, uint64_t parent, int has_parent, uint64_t seq, uint64_t local)
{
	pub_push(arg, (struct pub_op){ KV_EV_STORED, has_parent, parent, seq, local, 1 });
}

static void hook_removed(void *arg, uint64_t seq)
{
	pub_push(arg, (struct pub_op){ KV_EV_REMOVED, 0, 0, seq, 0, 1 });
}

static void hook_cleared(void *arg)
{
	pub_push(arg, (struct pub_op){ KV_EV_CLEARED, 0, 0, 0, 0, 1 });
}

static void hook_tiered(void *arg, int tier, int stored, uint64_t seq)
{
	if (tier > 1 && tier <= KV_MEDIUM_MAX)
		pub_push(arg, (struct pub_op){ stored ? KV_EV_STORED : KV_EV_REMOVED, 0, 0, seq,
					       0, tier });
}

void kv_publisher_hooks(struct kv_publisher *p, struct kv_events *out)
{
	out->stored = hook_stored;
	out->removed = hook_removed;
	out->cleared = hook_cleared;
	out->tiered = hook_tiered;
	out->arg = p;
}

size_t kv_publisher_pending(const struct kv_publisher *p)
{
	return p->n_ops;
}

uint64_t kv_publisher_last_id(const struct kv_publisher *p)
{
	return p->last_id;
}

/* A cleared event empties G1 only: the engine's pool was reset, the
 * blocks below stay where they are. */
static void mirror_apply(struct kv_publisher *p, const struct pub_op *op)
{
	struct mirror *m = &p->mir[op->medium];
	if (op->kind == KV_EV_CLEARED) {
		u64map_release(&m->where);
		m->n_blk = 0;
	} else if (op->kind == KV_EV_STORED) {
		if (u64map_get(&m->where, op->seq))
			return;
		if (m->n_blk == m->blk_alloc) {
			m->blk_alloc = m->blk_alloc ? m->blk_alloc * 2 : 64;
			m->blk = xrealloc(m->blk, m->blk_alloc * sizeof(*m->blk));
		}
		m->blk[m->n_blk] = (struct pub_block){ op->seq, op->parent, op->local,
						       op->has_parent };
		u64map_put(&m->where, op->seq, (uint32_t)m->n_blk);
		m->n_blk++;
	} else {
		const uint32_t *w = u64map_get(&m->where, op->seq);
		if (!w)
			return;
		uint32_t i = *w;
		u64map_del(&m->where, op->seq);
		if (i != m->n_blk - 1) {
			m->blk[i] = m->blk[m->n_blk - 1];
			u64map_put(&m->where, m->blk[i].seq, i);
		}
		m->n_blk--;
	}
}

static struct kv_event *scratch_event(struct kv_publisher *p)
{
	struct kv_msg *m = &p->scratch;
	if (m->n_events == p->ev_alloc) {
		size_t na = p->ev_alloc ? p->ev_alloc * 2 : 16;
		m->events = xrealloc(m->events, na * sizeof(*m->events));
		memset(m->events + p->ev_alloc, 0, (na - p->ev_alloc) * sizeof(*m->events));
		p->ev_alloc = na;
	}
	struct kv_event *e = &m->events[m->n_events++];
	e->n = 0;
	e->has_parent = 0;
	e->parent_hash = 0;
	return e;
}

/* Grow e's blocks/hashes to hold n + 1 (capacity tracked in caps[]). */
static void ev_reserve(struct kv_event *e, size_t *cap)
{
	if (e->n < *cap)
		return;
	*cap = *cap ? *cap * 2 : 16;
	if (e->kind == KV_EV_STORED)
		e->blocks = xrealloc(e->blocks, *cap * sizeof(*e->blocks));
	else
		e->hashes = xrealloc(e->hashes, *cap * sizeof(*e->hashes));
}

size_t kv_publisher_flush(struct kv_publisher *p, const struct kv_load *load,
			  enum kv_wire wire, struct strbuf *out)
{
	struct kv_msg *m = &p->scratch;
	struct kv_event *cur = NULL;
	size_t cap = 0;

	m->n_events = 0;
	for (size_t i = 0; i < p->n_ops; i++) {
		const struct pub_op *op = &p->ops[i];
		/* below G1, stored blocks have no chain: any run of one medium */
		int extend = cur && cur->kind == op->kind && cur->medium == op->medium &&
			     ((op->kind == KV_EV_REMOVED) ||
			      (op->kind == KV_EV_STORED && op->medium > 1) ||
			      (op->kind == KV_EV_STORED && op->has_parent &&
			       op->parent == cur->blocks[cur->n - 1].seq_hash));
		if (!extend) {
			cur = scratch_event(p);
			free(cur->blocks);
			free(cur->hashes);
			cur->blocks = NULL;
			cur->hashes = NULL;
			cap = 0;
			cur->kind = op->kind;
			cur->event_id = ++p->last_id;
			cur->has_parent = op->has_parent;
			cur->parent_hash = op->parent;
			cur->medium = op->medium;
		}
		if (op->kind == KV_EV_STORED) {
			ev_reserve(cur, &cap);
			cur->blocks[cur->n++] = (struct block_hash_pair){ op->seq, op->local };
		} else if (op->kind == KV_EV_REMOVED) {
			ev_reserve(cur, &cap);
			cur->hashes[cur->n++] = op->seq;
		}
		mirror_apply(p, op);
	}
	p->n_ops = 0;
	size_t n = m->n_events;
	if (n || load) {
		m->has_load = load != NULL;
		if (load)
			m->load = *load;
		m->is_dump = 0;
		kv_msg_encode(m, wire, out);
	}
	return n;
}

/* A dump is one stored group per block, in either wire form: rare (a
 * router's resync), so it is built as a message and encoded by the codec. */
void kv_publisher_dump(const struct kv_publisher *p, enum kv_wire wire, struct strbuf *out)
{
	size_t n = 0;
	for (int k = 1; k <= KV_MEDIUM_MAX; k++)
		n += p->mir[k].n_blk;
	struct block_hash_pair *blocks = xcalloc(n ? n : 1, sizeof(*blocks));
	struct kv_event *events = xcalloc(n ? n : 1, sizeof(*events));
	size_t i = 0;
	for (int k = 1; k <= KV_MEDIUM_MAX; k++)
		for (size_t j = 0; j < p->mir[k].n_blk; j++, i++) {
			const struct pub_block *b = &p->mir[k].blk[j];
			blocks[i] = (struct block_hash_pair){ b->seq, b->local };
			events[i] = (struct kv_event){ .kind = KV_EV_STORED,
						       .has_parent = b->has_parent,
						       .parent_hash = b->parent,
						       .blocks = &blocks[i], .n = 1, .medium = k };
		}
	struct kv_msg m = { .events = events, .n_events = n, .is_dump = 1,
			    .dump_last_id = p->last_id };
	kv_msg_encode(&m, wire, out);
	free(events);
	free(blocks);
}
