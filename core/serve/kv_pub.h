/*
 * kv_pub.h - a worker's KV event endpoints (issue 9; wire format in
 * core/proto/kv_events.h): the engine's block manager hooks feed a
 * kv_publisher, and two request-plane endpoints serve routers:
 *
 *   NS/COMP/kv_events  a subscription: never ends by itself; a DATA frame
 *                      per batch of events (KV_PUB_FLUSH_MS after the
 *                      first change) with the worker's load (active and
 *                      total blocks, waiting requests, queued prefill
 *                      tokens), a load report alone when the load changed
 *                      (checked KV_PUB_FLUSH_MS after an engine step), and
 *                      one every KV_PUB_LOAD_MS in any case
 *   NS/COMP/kv_dump    one END frame: a dump of every cached block as of
 *                      the last event sent to subscribers
 *
 * A request body {"wire":"binary"} asks for the binary form of
 * kv_events.h (routers do); anything else gets JSON (`dyn rpc call`).
 *
 * Test hook: DYN_KV_EVENTS_DROP=N in the environment makes the first N
 * batches of events vanish (their event ids are used, the messages never
 * sent), so that subscribers see a gap and must resync from a dump.
 *
 * Threading: the hooks (kv_pub_hooks) run on the engine's step thread and
 * take a mutex; everything else belongs to the event_base's thread, which
 * flushes under the same mutex.  The events of a flush are sent to every
 * subscriber before any later dump answer, on the same connection, so a
 * router that applies the dump and then the stream misses nothing.
 */
#ifndef DYN_SERVE_KV_PUB_H
#define DYN_SERVE_KV_PUB_H

#include "core/kv/block_manager.h"

#define KV_PUB_FLUSH_MS 20
#define KV_PUB_LOAD_MS 1000

struct event_base;
struct rpc_server;
struct engine;
struct kv_pub;

struct kv_pub *kv_pub_new(struct event_base *base);
/* Hooks to put in engine_opts.events before engine_new(). */
void kv_pub_hooks(struct kv_pub *p, struct kv_events *out);
/* For engine_opts.on_step (step_arg = p): the load may have changed.
 * Thread-safe (the engine's step thread). */
void kv_pub_on_engine_step(void *arg);
/* Register NS/COMP/kv_events and NS/COMP/kv_dump on srv and start the
 * flush timer; e (may be NULL) gives the load reports. */
int kv_pub_serve(struct kv_pub *p, struct rpc_server *srv, const char *ns, const char *comp,
		 struct engine *e);
/* Graceful shutdown: end the subscriptions (they would count as calls in
 * flight) and refuse new ones.  Idempotent. */
void kv_pub_stop(struct kv_pub *p);
/* Forget the engine (before engine_free()). */
void kv_pub_detach_engine(struct kv_pub *p);
/* Ends the subscriptions.  After rpc_server_free() and engine_free(). */
void kv_pub_free(struct kv_pub *p);

#endif
