/*
 * kv_pub.c - a worker's KV event endpoints (see kv_pub.h).
 *
 * No polling: an idle worker wakes once per KV_PUB_LOAD_MS.  The engine's
 * hooks (KV events, end of a step) "kick" the loop through an eventfd, at
 * most once per flush, and the kick arms a one-shot KV_PUB_FLUSH_MS timer
 * that batches whatever arrives meanwhile into one message.
 */
#include "core/serve/kv_pub.h"
#include "core/engine/engine.h"
#include "core/err.h"
#include "core/log.h"
#include "core/proto/kv_events.h"
#include "core/serve/kv_publisher.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_MOD "kv_events"

struct sub {
	struct rpc_call *call;
	enum kv_wire wire;		/* what it asked for */
	struct sub *next;
};

struct kv_pub {
	struct event_base *base;
	pthread_mutex_t mu;		/* guards pub (hooks vs flush/dump) */
	struct kv_publisher *pub;
	struct kv_events inner;		/* pub's own hooks */
	struct engine *e;
	struct event *timer;		/* one-shot flush, armed by a kick */
	struct event *load_timer;	/* periodic load report */
	int efd;			/* kicks from the engine's thread */
	struct event *wake;
	int kicked;			/* under mu: efd written since the last flush */
	long drop_batches;		/* test hook: event batches not to send */
	struct sub *subs;
	uint64_t last_load_ms;
	struct kv_load last_load;	/* as last sent */
	int stopped;
};

/* Wake the loop to flush soon (called with p->mu held). */
static void kick_locked(struct kv_pub *p)
{
	if (p->kicked || p->efd < 0)
		return;
	p->kicked = 1;
	uint64_t one = 1;
	ssize_t rc = write(p->efd, &one, sizeof(one));
	(void)rc;	/* EAGAIN: already readable */
}

static void h_stored(void *arg, uint64_t parent, int has_parent, uint64_t seq, uint64_t local)
{
	struct kv_pub *p = arg;
	pthread_mutex_lock(&p->mu);
	p->inner.stored(p->inner.arg, parent, has_parent, seq, local);
	kick_locked(p);
	pthread_mutex_unlock(&p->mu);
}

void kv_pub_on_engine_step(void *arg)
{
	struct kv_pub *p = arg;
	pthread_mutex_lock(&p->mu);
	kick_locked(p);
	pthread_mutex_unlock(&p->mu);
}

static void h_removed(void *arg, uint64_t seq)
{
	struct kv_pub *p = arg;
	pthread_mutex_lock(&p->mu);
	p->inner.removed(p->inner.arg, seq);
	kick_locked(p);
	pthread_mutex_unlock(&p->mu);
}

static void h_tiered(void *arg, int tier, int stored, uint64_t seq)
{
	struct kv_pub *p = arg;
	pthread_mutex_lock(&p->mu);
	p->inner.tiered(p->inner.arg, tier, stored, seq);
	kick_locked(p);
	pthread_mutex_unlock(&p->mu);
}

static void h_cleared(void *arg)
{
	struct kv_pub *p = arg;
	pthread_mutex_lock(&p->mu);
	p->inner.cleared(p->inner.arg);
	kick_locked(p);
	pthread_mutex_unlock(&p->mu);
}

struct kv_pub *kv_pub_new(struct event_base *base)
{
	struct kv_pub *p = xcalloc(1, sizeof(*p));
	p->base = base;
	pthread_mutex_init(&p->mu, NULL);
	p->pub = kv_publisher_new();
	kv_publisher_hooks(p->pub, &p->inner);
	p->efd = -1;
	const char *drop = getenv("DYN_KV_EVENTS_DROP");
	p->drop_batches = drop ? strtol(drop, NULL, 10) : 0;
	return p;
}

void kv_pub_hooks(struct kv_pub *p, struct kv_events *out)
{
	*out = (struct kv_events){ h_stored, h_removed, h_cleared, h_tiered, p };
}

static void get_load(struct kv_pub *p, struct kv_load *l)
{
	memset(l, 0, sizeof(*l));
	if (!p->e)
		return;
	struct engine_stats st;
	engine_stats(p->e, &st);
	l->active_blocks = st.kv_blocks_decoding;
	l->total_blocks = st.kv_blocks_total;
	l->waiting = st.waiting;
	l->queued_prefill_tokens = st.queued_prefill_tokens;
}

static void sub_drop(struct kv_pub *p, struct rpc_call *call)
{
	for (struct sub **ps = &p->subs; *ps; ps = &(*ps)->next)
		if ((*ps)->call == call) {
			struct sub *s = *ps;
			*ps = s->next;
			free(s);
			return;
		}
}

static unsigned frame_flags(const struct strbuf *m)
{
	return kv_msg_is_binary(m->buf, m->len) ? FRAME_FLAG_BINARY : 0;
}

/* The JSON form of a binary message (for `dyn rpc call` and other tools). */
static void to_json(const struct strbuf *bin, struct strbuf *out)
{
	struct kv_msg m;
	if (kv_msg_decode(bin->buf, bin->len, &m) == 0)
		kv_msg_encode(&m, KV_WIRE_JSON, out);
	kv_msg_release(&m);
}

/* Send pending events (and the load, when due or with events) to every
 * subscriber.  Called with p->mu held. */
static void flush_locked(struct kv_pub *p, int force_load)
{
	struct strbuf msg = STRBUF_INIT;
	struct kv_load l;
	uint64_t now = mono_ms();
	int with_load = force_load || now - p->last_load_ms >= KV_PUB_LOAD_MS ||
			kv_publisher_pending(p->pub);

	get_load(p, &l);
	if (!with_load && !memcmp(&l, &p->last_load, sizeof(l)))
		return;		/* nothing new: no events, the same load */
	p->last_load = l;
	p->last_load_ms = now;
	int pending = kv_publisher_pending(p->pub) > 0;
	kv_publisher_flush(p->pub, &l, KV_WIRE_BINARY, &msg);
	if (pending && p->drop_batches > 0) {	/* lost on the way: a gap in ids */
		p->drop_batches--;
		LOG_WARN(LOG_MOD, "DYN_KV_EVENTS_DROP: an event batch is not sent");
		sb_release(&msg);
		return;
	}
	struct strbuf json = STRBUF_INIT;	/* for subscribers that want JSON */
	for (struct sub *s = p->subs, *next; s; s = next) {
		next = s->next;
		const struct strbuf *m = &msg;
		if (s->wire == KV_WIRE_JSON) {
			if (!json.len)
				to_json(&msg, &json);
			m = &json;
		}
		if (rpc_call_send(s->call, m->buf, m->len, frame_flags(m)) < 0)
			LOG_DEBUG(LOG_MOD, "subscriber %s: send failed", rpc_call_peer(s->call));
	}
	sb_release(&json);
	sb_release(&msg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kv_pub *p = arg;
	(void)fd;
	(void)what;
	pthread_mutex_lock(&p->mu);
	p->kicked = 0;		/* later changes kick again */
	flush_locked(p, 0);
	pthread_mutex_unlock(&p->mu);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct kv_pub *p = arg;
	uint64_t v;
	(void)what;
	ssize_t rc = read(fd, &v, sizeof(v));
	(void)rc;
	if (!evtimer_pending(p->timer, NULL)) {
		struct timeval tv = { 0, KV_PUB_FLUSH_MS * 1000 };
		evtimer_add(p->timer, &tv);
	}
}

static void on_sub_cancel(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct kv_pub *p = arg;
	(void)why;
	LOG_INFO(LOG_MOD, "subscriber %s left", rpc_call_peer(call));
	sub_drop(p, call);
	rpc_call_finish(call);
}

static void handle_events(struct rpc_call *call, const void *payload, size_t len,
			  unsigned flags, void *arg)
{
	struct kv_pub *p = arg;
	(void)flags;
	if (p->stopped) {
		rpc_call_error(call, 503, "the worker is stopping");
		return;
	}
	struct sub *s = xcalloc(1, sizeof(*s));
	s->call = call;
	s->wire = kv_wire_requested(payload, len, KV_WIRE_JSON);
	s->next = p->subs;
	p->subs = s;
	rpc_call_on_cancel(call, on_sub_cancel, p);
	LOG_INFO(LOG_MOD, "subscriber %s joined", rpc_call_peer(call));
	/* A first message at once: the load, and the last event id so far. */
	pthread_mutex_lock(&p->mu);
	flush_locked(p, 1);
	pthread_mutex_unlock(&p->mu);
}

static void handle_dump(struct rpc_call *call, const void *payload, size_t len,
			unsigned flags, void *arg)
{
	struct kv_pub *p = arg;
	struct strbuf msg = STRBUF_INIT;
	(void)flags;
	pthread_mutex_lock(&p->mu);
	flush_locked(p, 0);	/* subscribers get every event up to the dump's first */
	kv_publisher_dump(p->pub, kv_wire_requested(payload, len, KV_WIRE_JSON), &msg);
	pthread_mutex_unlock(&p->mu);
	rpc_call_end(call, msg.buf, msg.len, frame_flags(&msg));
	sb_release(&msg);
}

int kv_pub_serve(struct kv_pub *p, struct rpc_server *srv, const char *ns, const char *comp,
		 struct engine *e)
{
	char name[512];
	int rc;

	p->e = e;
	snprintf(name, sizeof(name), "%s/%s/kv_events", ns, comp);
	if ((rc = rpc_server_handle(srv, name, handle_events, p)) < 0)
		return rc;
	snprintf(name, sizeof(name), "%s/%s/kv_dump", ns, comp);
	if ((rc = rpc_server_handle(srv, name, handle_dump, p)) < 0)
		return rc;
	struct timeval tv = { KV_PUB_LOAD_MS / 1000, (KV_PUB_LOAD_MS % 1000) * 1000 };
	p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p->efd < 0)
		return err_set(-errno, "kv events: eventfd: %s", strerror(errno));
	p->timer = evtimer_new(p->base, on_timer, p);
	p->load_timer = event_new(p->base, -1, EV_PERSIST, on_timer, p);
	p->wake = event_new(p->base, p->efd, EV_READ | EV_PERSIST, on_wake, p);
	if (!p->timer || !p->load_timer || !p->wake || event_add(p->load_timer, &tv) < 0 ||
	    event_add(p->wake, NULL) < 0)
		return err_set(-ENOMEM, "kv events: cannot start the flush timers");
	return 0;
}

static void end_subs(struct kv_pub *p)
{
	while (p->subs) {
		struct sub *s = p->subs;
		p->subs = s->next;
		rpc_call_end(s->call, NULL, 0, 0);
		free(s);
	}
}

void kv_pub_stop(struct kv_pub *p)
{
	if (!p || p->stopped)
		return;
	p->stopped = 1;
	pthread_mutex_lock(&p->mu);
	flush_locked(p, 0);
	pthread_mutex_unlock(&p->mu);
	end_subs(p);
}

void kv_pub_detach_engine(struct kv_pub *p)
{
	if (!p)
		return;
	if (p->timer)
		event_del(p->timer);
	if (p->load_timer)
		event_del(p->load_timer);
	if (p->wake)
		event_del(p->wake);
	p->e = NULL;
}

void kv_pub_free(struct kv_pub *p)
{
	if (!p)
		return;
	if (p->timer)
		event_free(p->timer);
	if (p->load_timer)
		event_free(p->load_timer);
	if (p->wake)
		event_free(p->wake);
	if (p->efd >= 0)
		close(p->efd);
	end_subs(p);
	kv_publisher_free(p->pub);
	pthread_mutex_destroy(&p->mu);
	free(p);
}
