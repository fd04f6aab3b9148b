/*
 * kv_publisher.h - the worker side of KV events: turns the block
 * manager's hooks (core/kv/block_manager.h) into numbered, batched messages of
 * the wire format in core/proto/kv_events.h, and keeps a mirror of the
 * blocks stored so that it can answer a router's resync with a dump.
 *
 * Thread-safety: one thread; the hooks run on the engine's step thread,
 * so a caller flushing from another thread locks around hooks and flush.
 */
#ifndef DYN_SERVE_KV_PUBLISHER_H
#define DYN_SERVE_KV_PUBLISHER_H

#include "core/proto/kv_events.h"

#include <stddef.h>
#include <stdint.h>

struct kv_events;
struct strbuf;

struct kv_publisher;

struct kv_publisher *kv_publisher_new(void);
void kv_publisher_free(struct kv_publisher *p);
/* Hooks to install with kv_set_events() / engine_config.events. */
void kv_publisher_hooks(struct kv_publisher *p, struct kv_events *out);
/* Hook calls not yet flushed. */
size_t kv_publisher_pending(const struct kv_publisher *p);
/*
 * Number the pending changes as events (consecutive stored blocks of one
 * chain become one stored event, consecutive removals one removed event)
 * and append them as one message in the form given, with load when not
 * NULL.  Returns the number of events written; nothing is appended when
 * there are none and load is NULL.
 */
size_t kv_publisher_flush(struct kv_publisher *p, const struct kv_load *load,
			  enum kv_wire wire, struct strbuf *out);
/* Append a dump of every block stored as of the last flushed event. */
void kv_publisher_dump(const struct kv_publisher *p, enum kv_wire wire, struct strbuf *out);
/* The id of the last flushed event (0: none). */
uint64_t kv_publisher_last_id(const struct kv_publisher *p);

#endif
