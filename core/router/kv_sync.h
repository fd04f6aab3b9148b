/*
 * kv_sync.h - the router side of KV events: per-worker gap detection that
 * applies a worker's messages (core/proto/kv_events.h) to the prefix
 * index in order, and asks for a dump when events were missed.
 *
 * Event ids: per worker, starting at 1, +1 per event; id > last + 1 means
 * events were missed (resync from a dump); ids <= last are duplicates.
 * Thread-safety: a kv_sync belongs to one thread.
 */
#ifndef DYN_ROUTER_KV_SYNC_H
#define DYN_ROUTER_KV_SYNC_H

#include "core/proto/kv_events.h"
#include "core/router/indexer.h"

#include <stdint.h>

enum kv_sync_result {
	KV_SYNC_OK = 0,			/* applied (or nothing to do) */
	KV_SYNC_NEED_RESYNC = 1,	/* a gap: ask the worker for a dump */
};

struct kv_sync {
	uint64_t worker;
	uint64_t last_id;	/* last event applied (0: none yet) */
	int need_resync;	/* waiting for a dump; events are dropped */
	uint64_t applied, skipped, dropped, resyncs, gaps;
	int has_load;
	struct kv_load load;	/* the latest report */
};

void kv_sync_init(struct kv_sync *s, uint64_t worker);
/*
 * Apply a message from s->worker to ix: events in order (duplicates
 * skipped; a gap drops the rest and sets need_resync), a dump (replaces
 * the worker's blocks and sets last_id to the dump's), a load report
 * (kept in s).  Returns KV_SYNC_NEED_RESYNC while a dump is needed.
 * The next events' blocks are prefetched (indexer_prefetch) while one is
 * applied, so a message of many small events costs overlapping cache
 * misses rather than one full miss each.
 */
enum kv_sync_result kv_sync_apply(struct kv_sync *s, struct indexer *ix, const struct kv_msg *m);
/* Ask for a dump from now on (e.g. on (re)connect). */
void kv_sync_request_resync(struct kv_sync *s);

#endif
