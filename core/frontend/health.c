/*
 * health.c - the frontend's health checks of its workers (see
 * internal.h).  Every --health-check-interval each worker with an
 * instance record is asked NS/COMP/health on the request plane (the
 * worker answers from its event loop, and says "stalled:" when its engine
 * has requests but makes no step).  A worker that does not answer within
 * --health-check-timeout, whose connection fails, or that says it is
 * stalled, is unhealthy: no request is routed to it, and its streams
 * move to other workers (handler.c), until a check is answered again.
 * Any other answer, an error included (a draining worker refuses new
 * calls), shows the worker alive.
 */
#include "core/frontend/internal.h"
#include "core/log.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "frontend"

struct fe_health {
	struct frontend *f;
	uint64_t id;
	uint64_t sent_ms;		/* the check in flight (or the last) */
	struct rpc_stream *check;	/* in flight, NULL when none */
	int unhealthy;
	int present;			/* seen in this tick's sweep */
};

static struct fe_health *find(const struct frontend *f, uint64_t id)
{
	for (size_t i = 0; i < f->nhealth; i++)
		if (f->health[i]->id == id)
			return f->health[i];
	return NULL;
}

int fe_health_unhealthy(const struct frontend *f, uint64_t id)
{
	const struct fe_health *h = find(f, id);
	return h && h->unhealthy;
}

size_t fe_health_nunhealthy(const struct frontend *f)
{
	size_t n = 0;
	for (size_t i = 0; i < f->nhealth; i++)
		n += f->health[i]->unhealthy != 0;
	return n;
}

static void set_unhealthy(struct fe_health *h, const char *why)
{
	if (!h->unhealthy)
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 " is unhealthy (%s): not routed to until "
			 "it answers a health check", h->id, why);
	h->unhealthy = 1;
}

void fe_health_stalled(struct frontend *f, uint64_t id, const char *why)
{
	struct fe_health *h = find(f, id);
	if (h)
		set_unhealthy(h, why);
	else	/* not checked (checks off, or too new): no check could clear it */
		fe_instance_mark_down(f, id);
}

static void answered(struct fe_health *h, int ok, const char *why)
{
	h->check = NULL;
	h->f->health_checks[ok ? 0 : 1]++;
	if (!ok) {
		set_unhealthy(h, why);
	} else if (h->unhealthy) {
		LOG_INFO(LOG_MOD, "worker %016" PRIx64 " answers its health check again",
			 h->id);
		h->unhealthy = 0;
		/* the calls that failed while it was stopped marked it down */
		fe_instance_clear_down(h->f, h->id);
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

static void send_check(struct fe_health *h, const char *addr, const char *path, uint64_t now)
{
	/* the health endpoint is the generate endpoint's sibling */
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;
	char ep[512];
	if (!slash || n + sizeof("/health") > sizeof(ep))
		return;
	memcpy(ep, path, n);
	memcpy(ep + n, "/health", sizeof("/health"));
	h->sent_ms = now;
	if (rpc_call(h->f->rpc, addr, ep, "{}", 2, 0, &check_cbs, h, &h->check) < 0) {
		h->check = NULL;
		answered(h, 0, "it could not be reached");
	}
}

/* One worker of the sweep: time out its check, or send the next. */
static void sweep_worker(struct frontend *f, const struct disc_worker *w, uint64_t now)
{
	const char *addr = disc_address(f->disc, w->id);
	struct fe_health *h = find(f, w->id);
	if (!addr)
		return;
	if (!h) {
		h = xcalloc(1, sizeof(*h));
		h->f = f;
		h->id = w->id;
		h->sent_ms = now;	/* the first check one interval from now */
		f->health = xrealloc(f->health, (f->nhealth + 1) * sizeof(*f->health));
		f->health[f->nhealth++] = h;
	}
	if (h->present)
		return;		/* a worker serving several models: once */
	h->present = 1;
	if (h->check && now - h->sent_ms >= (uint64_t)f->o.health_check_timeout_ms) {
		rpc_stream_cancel(h->check);
		answered(h, 0, "no answer to its health check");
	}
	if (!h->check && now - h->sent_ms >= (uint64_t)f->o.health_check_interval_ms)
		send_check(h, addr, w->path, now);
}

static void drop(struct fe_health *h)
{
	if (h->check)
		rpc_stream_cancel(h->check);
	free(h);
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	struct frontend *f = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	for (size_t i = 0; i < f->nhealth; i++)
		f->health[i]->present = 0;
	for (struct fe_model *m = f->models; m; m = m->next)
		for (int r = 0; r < DISC_NROLES; r++)
			for (size_t i = 0, n = disc_model_nworkers(m->d, (enum disc_role)r); i < n;
			     i++)
				sweep_worker(f, disc_model_worker(m->d, (enum disc_role)r, i), now);
	/* workers gone from the registry */
	size_t k = 0;
	for (size_t i = 0; i < f->nhealth; i++) {
		if (f->health[i]->present)
			f->health[k++] = f->health[i];
		else
			drop(f->health[i]);
	}
	f->nhealth = k;
}

void fe_health_start(struct frontend *f)
{
	if (f->o.health_check_interval_ms <= 0)
		return;
	/* a few ticks per interval, so a timeout is seen soon after it passes */
	int64_t every = f->o.health_check_interval_ms / 4;
	if (every > 1000)
		every = 1000;
	if (every < 50)
		every = 50;
	struct timeval tv = { every / 1000, (every % 1000) * 1000 };
	f->health_timer = event_new(f->base, -1, EV_PERSIST, tick, f);
	event_add(f->health_timer, &tv);
}

void fe_health_stop(struct frontend *f)
{
	if (f->health_timer)
		event_free(f->health_timer);
	f->health_timer = NULL;
	for (size_t i = 0; i < f->nhealth; i++)
		drop(f->health[i]);
	free(f->health);
	f->health = NULL;
	f->nhealth = 0;
}
