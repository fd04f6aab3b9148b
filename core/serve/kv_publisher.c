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
};

struct pub_block {
	uint64_t seq, parent, local;
	int has_parent;
};

struct kv_publisher {
	struct pub_op *ops;
	size_t n_ops, ops_alloc;
	uint64_t last_id;
	/* the mirror: blocks stored as of last_id */
	struct pub_block *blk;
	size_t n_blk, blk_alloc;
	struct u64map where;	/* seq -> index in blk */
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
	free(p->blk);
	u64map_release(&p->where);
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
	pub_push(arg, (struct pub_op){ KV_EV_STORED, has_parent, parent, seq, local });
}

static void hook_removed(void *arg, uint64_t seq)
{
	pub_push(arg, (struct pub_op){ KV_EV_REMOVED, 0, 0, seq, 0 });
}

static void hook_cleared(void *arg)
{
	pub_push(arg, (struct pub_op){ KV_EV_CLEARED, 0, 0, 0, 0 });
}

void kv_publisher_hooks(struct kv_publisher *p, struct kv_events *out)
{
	out->stored = hook_stored;
	out->removed = hook_removed;
	out->cleared = hook_cleared;
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

static void mirror_apply(struct kv_publisher *p, const struct pub_op *op)
{
	if (op->kind == KV_EV_CLEARED) {
		u64map_release(&p->where);
		p->n_blk = 0;
	} else if (op->kind == KV_EV_STORED) {
		if (u64map_get(&p->where, op->seq))
			return;
		if (p->n_blk == p->blk_alloc) {
			p->blk_alloc = p->blk_alloc ? p->blk_alloc * 2 : 64;
			p->blk = xrealloc(p->blk, p->blk_alloc * sizeof(*p->blk));
		}
		p->blk[p->n_blk] = (struct pub_block){ op->seq, op->parent, op->local,
						       op->has_parent };
		u64map_put(&p->where, op->seq, (uint32_t)p->n_blk);
		p->n_blk++;
	} else {
		const uint32_t *w = u64map_get(&p->where, op->seq);
		if (!w)
			return;
		uint32_t i = *w;
		u64map_del(&p->where, op->seq);
		if (i != p->n_blk - 1) {
			p->blk[i] = p->blk[p->n_blk - 1];
			u64map_put(&p->where, p->blk[i].seq, i);
		}
		p->n_blk--;
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
		int extend = cur && cur->kind == op->kind &&
			     ((op->kind == KV_EV_REMOVED) ||
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
	struct block_hash_pair *blocks = xcalloc(p->n_blk ? p->n_blk : 1, sizeof(*blocks));
	struct kv_event *events = xcalloc(p->n_blk ? p->n_blk : 1, sizeof(*events));
	for (size_t i = 0; i < p->n_blk; i++) {
		const struct pub_block *b = &p->blk[i];
		blocks[i] = (struct block_hash_pair){ b->seq, b->local };
		events[i] = (struct kv_event){ .kind = KV_EV_STORED, .has_parent = b->has_parent,
					       .parent_hash = b->parent, .blocks = &blocks[i],
					       .n = 1 };
	}
	struct kv_msg m = { .events = events, .n_events = p->n_blk, .is_dump = 1,
			    .dump_last_id = p->last_id };
	kv_msg_encode(&m, wire, out);
	free(events);
	free(blocks);
}
