/*
 * kv_sync.c - per-worker gap detection applying KV events to the prefix
 * index (kv_sync.h).
 */
#include "core/router/kv_sync.h"

#include <string.h>

void kv_sync_init(struct kv_sync *s, uint64_t worker)
{
	memset(s, 0, sizeof(*s));
	s->worker = worker;
}

void kv_sync_request_resync(struct kv_sync *s)
{
	s->need_resync = 1;
}

static void apply_event(struct indexer *ix, uint64_t w, const struct kv_event *e)
{
	switch (e->kind) {
	case KV_EV_STORED:
		if (e->medium > 1)
			indexer_store_medium(ix, w, e->medium, e->blocks, e->n);
		else
			indexer_store(ix, w, e->parent_hash, e->has_parent, e->blocks, e->n);
		break;
	case KV_EV_REMOVED:
		indexer_remove_medium(ix, w, e->medium, e->hashes, e->n);
		break;
	case KV_EV_CLEARED:
		indexer_clear(ix, w);
		break;
	}
}

/* Blocks of an event worth hinting ahead (a long stored chain prefetches
 * its own blocks as it goes). */
#define PREFETCH_BLOCKS 24

static size_t hinted_blocks(const struct kv_event *e)
{
	if (e->kind != KV_EV_STORED && e->kind != KV_EV_REMOVED)
		return 0;
	return e->n < PREFETCH_BLOCKS ? e->n : PREFETCH_BLOCKS;
}

static size_t prefetch_event(const struct indexer *ix, const struct kv_event *e)
{
	size_t n = hinted_blocks(e);
	if (e->kind == KV_EV_STORED && n)
		indexer_prefetch(ix, &e->blocks[0].seq_hash, n, 2);
	else if (n)
		indexer_prefetch(ix, e->hashes, n, 1);
	return n;
}

enum kv_sync_result kv_sync_apply(struct kv_sync *s, struct indexer *ix, const struct kv_msg *m)
{
	if (m->is_dump) {
		indexer_clear(ix, s->worker);
		indexer_add_worker(ix, s->worker);
		for (size_t i = 0; i < m->n_events; i++)
			apply_event(ix, s->worker, &m->events[i]);
		s->last_id = m->dump_last_id;
		s->need_resync = 0;
		s->resyncs++;
	} else {
		size_t ahead = 0, inflight = 0;
		for (size_t i = 0; i < m->n_events; i++) {
			const struct kv_event *e = &m->events[i];
			/* keep the next events' blocks loading while this one is
			 * applied: a removed event is often one evicted block,
			 * one cache miss, and misses overlap only if started early */
			while (ahead < m->n_events && (ahead <= i || inflight < PREFETCH_BLOCKS))
				inflight += prefetch_event(ix, &m->events[ahead++]);
			inflight -= inflight < hinted_blocks(e) ? inflight : hinted_blocks(e);
			if (s->need_resync) {
				s->dropped++;
			} else if (e->event_id <= s->last_id) {
				s->skipped++;
			} else if (e->event_id != s->last_id + 1) {
				s->need_resync = 1;
				s->gaps++;
				s->dropped++;
			} else {
				apply_event(ix, s->worker, e);
				s->last_id = e->event_id;
				s->applied++;
			}
		}
	}
	if (m->has_load) {
		s->has_load = 1;
		s->load = m->load;
	}
	return s->need_resync ? KV_SYNC_NEED_RESYNC : KV_SYNC_OK;
}
