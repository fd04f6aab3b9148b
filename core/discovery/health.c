/*
 * health.c - health checks of a registry's workers (see health.h).
 *
 * The workers come from the registry's worker events (one entry per
 * instance, counted once per model it serves); a timer a few times per
 * interval times out the checks in flight and sends those that are due.
 */
#include "core/discovery/health.h"
#include "core/discovery/registry.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "health"

struct checked {
	struct worker_health *h;
	uint64_t id;
	char *endpoint;			/* NS/COMP/health */
	int models;			/* the models it serves */
	uint64_t sent_ms;		/* the check in flight (or the last) */
	struct rpc_stream *check;	/* in flight, NULL when none */
	int unhealthy;
};

struct worker_health {
	struct worker_health_opts o;
	struct rpc_client *rpc;
	struct discovery *disc;
	struct event *timer;
	struct checked **w;
	size_t n;
	uint64_t ok, failed;
	int stopped;
};

static struct checked *find(const struct worker_health *h, uint64_t id, size_t *at)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->w[i]->id == id) {
			if (at)
				*at = i;
			return h->w[i];
		}
	return NULL;
}

int worker_health_unhealthy(const struct worker_health *h, uint64_t id)
{
	const struct checked *c = h ? find(h, id, NULL) : NULL;
	return c && c->unhealthy;
}

size_t worker_health_nunhealthy(const struct worker_health *h)
{
	size_t n = 0;
	for (size_t i = 0; h && i < h->n; i++)
		n += h->w[i]->unhealthy != 0;
	return n;
}

void worker_health_counts(const struct worker_health *h, uint64_t *ok, uint64_t *failed)
{
	*ok = h ? h->ok : 0;
	*failed = h ? h->failed : 0;
}

static void set_unhealthy(struct checked *c, const char *why)
{
	if (!c->unhealthy)
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 " is unhealthy (%s): not routed to until "
			 "it answers a health check", c->id, why);
	c->unhealthy = 1;
}

int worker_health_stalled(struct worker_health *h, uint64_t id, const char *why)
{
	struct checked *c = h && h->o.interval_ms > 0 ? find(h, id, NULL) : NULL;
	if (!c)
		return -ENOENT;
	set_unhealthy(c, why);
	return 0;
}

static void answered(struct checked *c, int ok, const char *why)
{
	struct worker_health *h = c->h;
	c->check = NULL;
	if (!ok) {
		h->failed++;
		set_unhealthy(c, why);
		return;
	}
	h->ok++;
	if (c->unhealthy) {
		LOG_INFO(LOG_MOD, "worker %016" PRIx64 " answers its health check again", c->id);
		c->unhealthy = 0;
		if (h->o.recovered)
			h->o.recovered(h->o.arg, c->id);
	}
}

static void on_check_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			 void *arg)
{
	(void)st;
	(void)data;
	(void)len;
	(void)flags;
	answered(arg, 1, NULL);
}

static void on_check_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	(void)st;
	/* An error frame shows a running loop, unless the worker says its
	 * engine is stuck. */
	int ok = code > 0 && strncmp(msg, FRAME_STALLED, strlen(FRAME_STALLED)) != 0;
	answered(arg, ok, code < 0 ? "its connection failed" : msg);
}

static const struct rpc_stream_cbs check_cbs = { NULL, on_check_end, on_check_error };

static void check_worker(struct checked *c, uint64_t now)
{
	struct worker_health *h = c->h;
	const char *addr = disc_address(h->disc, c->id);
	if (!addr || !c->endpoint)
		return;
	if (c->check && now - c->sent_ms >= (uint64_t)h->o.timeout_ms) {
		rpc_stream_cancel(c->check);
		answered(c, 0, "no answer to its health check");
	}
	if (c->check || now - c->sent_ms < (uint64_t)h->o.interval_ms)
		return;
	c->sent_ms = now;
	if (rpc_call(h->rpc, addr, c->endpoint, "{}", 2, 0, &check_cbs, c, &c->check) < 0) {
		c->check = NULL;
		answered(c, 0, "it could not be reached");
	}
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct worker_health *h = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	for (size_t i = 0; i < h->n; i++)
		check_worker(h->w[i], now);
}

static void worker_added(struct disc_model *m, const struct disc_worker *w, void *arg)
{
	struct worker_health *h = arg;
	(void)m;
	if (h->stopped)
		return;
	struct checked *c = find(h, w->id, NULL);
	if (c) {
		c->models++;
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->h = h;
	c->id = w->id;
	c->models = 1;
	c->sent_ms = mono_ms();		/* the first check one interval from now */
	/* the health endpoint is the generate endpoint's sibling */
	const char *slash = strrchr(w->path, '/');
	if (slash) {
		size_t n = (size_t)(slash - w->path);
		c->endpoint = xmalloc(n + sizeof("/health"));
		memcpy(c->endpoint, w->path, n);
		memcpy(c->endpoint + n, "/health", sizeof("/health"));
	}
	h->w = xrealloc(h->w, (h->n + 1) * sizeof(*h->w));
	h->w[h->n++] = c;
}

static void drop(struct checked *c)
{
	if (c->check)
		rpc_stream_cancel(c->check);
	free(c->endpoint);
	free(c);
}

static void worker_removed(struct disc_model *m, const struct disc_worker *w, void *arg)
{
	struct worker_health *h = arg;
	size_t i;
	(void)m;
	struct checked *c = h->stopped ? NULL : find(h, w->id, &i);
	if (!c || --c->models > 0)
		return;
	drop(c);
	h->w[i] = h->w[--h->n];
}

int worker_health_new(struct event_base *base, struct rpc_client *rpc, struct discovery *d,
		      const struct worker_health_opts *o, struct worker_health **out)
{
	static const struct disc_events ev = { NULL, NULL, worker_added, worker_removed };
	struct worker_health *h = xcalloc(1, sizeof(*h));
	h->o = *o;
	h->rpc = rpc;
	h->disc = d;
	*out = h;
	if (h->o.interval_ms <= 0)
		return 0;
	if (h->o.timeout_ms <= 0)
		h->o.timeout_ms = WORKER_HEALTH_TIMEOUT_MS;
	int rc = disc_subscribe(d, &ev, h);
	if (rc < 0)
		return rc;
	/* a few ticks per interval, so a timeout is seen soon after it passes */
	int64_t every = h->o.interval_ms / 4;
	if (every > 1000)
		every = 1000;
	if (every < 50)
		every = 50;
	struct timeval tv = { every / 1000, (every % 1000) * 1000 };
	h->timer = event_new(base, -1, EV_PERSIST, tick, h);
	if (!h->timer || event_add(h->timer, &tv) < 0)
		return err_set(-ENOMEM, "health checks: cannot create a timer");
	return 0;
}

void worker_health_stop(struct worker_health *h)
{
	if (!h || h->stopped)
		return;
	h->stopped = 1;
	if (h->timer)
		event_free(h->timer);
	h->timer = NULL;
	for (size_t i = 0; i < h->n; i++)
		drop(h->w[i]);
	free(h->w);
	h->w = NULL;
	h->n = 0;
}

void worker_health_free(struct worker_health *h)
{
	if (!h)
		return;
	worker_health_stop(h);
	free(h);
}
