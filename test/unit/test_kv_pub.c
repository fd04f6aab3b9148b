/*
 * test_kv_pub.c - a worker's KV event endpoints (core/serve/kv_pub.h) over
 * the real request plane on 127.0.0.1: block manager hooks called from
 * another thread (as the engine's step thread does) reach a subscriber as
 * numbered events, a late subscriber resynchronizes from kv_dump, and
 * stopping ends the subscriptions.  The reference is the list of hook
 * calls the test made.
 */
#include "core/router/indexer.h"
#include "core/proto/kv_events.h"
#include "core/router/kv_sync.h"
#include "core/serve/kv_pub.h"
#include "core/util.h"
#include "net/rpc.h"
#include "check.h"
#include "run_loop.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A router-side subscriber: a kv_sync over its own index. */
struct subscriber {
	struct indexer *ix;
	struct kv_sync sync;
	uint64_t max_id_seen;
	int ids_consecutive, msgs, loads, ended, dumps;
	int64_t total_blocks;
};

static void sub_apply(struct subscriber *s, const void *data, size_t len)
{
	struct kv_msg m;
	if (!len || kv_msg_decode(data, len, &m) < 0)
		return;
	s->msgs++;
	if (m.has_load) {
		s->loads++;
		s->total_blocks = m.load.total_blocks;
	}
	if (m.is_dump)
		s->dumps++;
	for (size_t i = 0; !m.is_dump && i < m.n_events; i++) {
		if (s->max_id_seen && m.events[i].event_id != s->max_id_seen + 1)
			s->ids_consecutive = 0;
		s->max_id_seen = m.events[i].event_id;
	}
	kv_sync_apply(&s->sync, s->ix, &m);
	kv_msg_release(&m);
}

static void on_data(struct rpc_stream *st, const void *d, size_t len, unsigned fl, void *arg)
{
	(void)st;
	(void)fl;
	sub_apply(arg, d, len);
}

static void on_end(struct rpc_stream *st, const void *d, size_t len, unsigned fl, void *arg)
{
	struct subscriber *s = arg;
	(void)st;
	(void)fl;
	sub_apply(s, d, len);
	s->ended = 1;
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct subscriber *s = arg;
	(void)st;
	(void)code;
	(void)msg;
	s->ended = -1;
}

static const struct rpc_stream_cbs cbs = { on_data, on_end, on_error };

/* The engine thread's part: a chain of 3 blocks, then block 2 evicted. */
static struct kv_events hooks;

static void *engine_thread(void *arg)
{
	(void)arg;
	hooks.stored(hooks.arg, 0, 0, 101, 1);
	hooks.stored(hooks.arg, 101, 1, 102, 2);
	hooks.stored(hooks.arg, 102, 1, 103, 3);
	hooks.removed(hooks.arg, 103);
	return NULL;
}

static int holds_two(void *arg)
{
	struct subscriber *s = arg;
	return indexer_holds(s->ix, 7, 101) && indexer_holds(s->ix, 7, 102) &&
	       !indexer_holds(s->ix, 7, 103) && s->sync.last_id >= 2;
}

static int has_msg(void *arg)
{
	return ((struct subscriber *)arg)->msgs > 0;
}

static int ended(void *arg)
{
	return ((struct subscriber *)arg)->ended != 0;
}

static int two_ended(void *arg)
{
	struct subscriber *s = arg;
	return s[0].ended && s[1].ended;
}

TEST(events_dump_and_stop)
{
	struct event_base *base = event_base_new();
	struct rpc_server *srv;
	struct rpc_client *cli;
	char addr[64];

	CHECK(rpc_server_new(base, NULL, &srv) == 0);
	CHECK(rpc_server_listen(srv, "127.0.0.1", 0) == 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(srv));
	CHECK(rpc_client_new(base, NULL, &cli) == 0);
	struct kv_pub *p = kv_pub_new(base);
	kv_pub_hooks(p, &hooks);
	CHECK(kv_pub_serve(p, srv, "ns", "w", NULL) == 0);

	struct subscriber s[2];
	memset(s, 0, sizeof(s));
	for (int i = 0; i < 2; i++) {
		s[i].ix = indexer_new();
		s[i].ids_consecutive = 1;
		kv_sync_init(&s[i].sync, 7);
	}
	/* First subscriber: from before any event. */
	CHECK(rpc_call(cli, addr, "ns/w/kv_events", "{}", 2, 0, &cbs, &s[0], NULL) == 0);
	CHECK(run_until(base, has_msg, &s[0], 2000));
	CHECK_MSG(s[0].loads >= 1, "the first message carries the load");

	pthread_t th;
	pthread_create(&th, NULL, engine_thread, NULL);
	pthread_join(th, NULL);
	CHECK_MSG(run_until(base, holds_two, &s[0], 2000), "last id %llu",
		  (unsigned long long)s[0].sync.last_id);
	CHECK(s[0].ids_consecutive);
	/* one chain of stored blocks is one event, the removal another */
	CHECK_INT((int)s[0].max_id_seen, 2);
	CHECK_INT((int)indexer_worker_blocks(s[0].ix, 7), 2);

	/* A late subscriber has missed ids 1..2: it needs and gets a dump. */
	kv_sync_request_resync(&s[1].sync);
	CHECK(rpc_call(cli, addr, "ns/w/kv_events", "{}", 2, 0, &cbs, &s[1], NULL) == 0);
	CHECK(rpc_call(cli, addr, "ns/w/kv_dump", "{}", 2, 0, &cbs, &s[1], NULL) == 0);
	CHECK(run_until(base, holds_two, &s[1], 2000));
	CHECK_INT(s[1].dumps, 1);
	CHECK(!s[1].sync.need_resync);
	CHECK_INT((int)s[1].sync.last_id, 2);

	/* Graceful stop ends both subscriptions with END. */
	kv_pub_stop(p);
	CHECK(run_until(base, two_ended, s, 2000));
	CHECK_INT(s[0].ended, 1);
	CHECK_INT(s[1].ended, 1);
	/* ...and refuses new ones. */
	struct subscriber late;
	memset(&late, 0, sizeof(late));
	late.ix = indexer_new();
	kv_sync_init(&late.sync, 7);
	CHECK(rpc_call(cli, addr, "ns/w/kv_events", "{}", 2, 0, &cbs, &late, NULL) == 0);
	CHECK(run_until(base, ended, &late, 2000));
	CHECK_INT(late.ended, -1);

	rpc_client_free(cli);
	rpc_server_free(srv);
	kv_pub_free(p);
	for (int i = 0; i < 2; i++)
		indexer_free(s[i].ix);
	indexer_free(late.ix);
	event_base_free(base);
}

int main(void)
{
	return RUN_TESTS();
}
