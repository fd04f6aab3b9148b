/*
 * runtime.c - event loop, process lease and graceful shutdown (see runtime.h).
 */
#include "core/runtime.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DRAIN_POLL_MS 20

struct runtime_priv {
	struct event *sigint, *sigterm, *drain_timer;
	struct runtime_hooks *hooks;
	size_t nhooks;
	uint64_t drain_deadline_ms;
	int signals;
	int aborted;			/* the abort hooks ran */
	int finished;			/* the shutdown is complete */
};

static long total_in_flight(struct runtime *rt)
{
	long n = 0;
	for (size_t i = 0; i < rt->priv->nhooks; i++)
		if (rt->priv->hooks[i].in_flight)
			n += rt->priv->hooks[i].in_flight(rt->priv->hooks[i].arg);
	return n;
}

static void finish_shutdown(struct runtime *rt)
{
	rt->priv->finished = 1;
	for (size_t i = 0; i < rt->priv->nhooks; i++)
		if (rt->priv->hooks[i].drained)
			rt->priv->hooks[i].drained(rt->priv->hooks[i].arg);
	event_base_loopbreak(rt->base);
}

static void drain_tick(evutil_socket_t fd, short what, void *arg)
{
	struct runtime *rt = arg;
	long busy = total_in_flight(rt);
	(void)fd;
	(void)what;

	if (busy == 0) {
		LOG_INFO("runtime", "drained; exiting");
		finish_shutdown(rt);
		return;
	}
	if (mono_ms() >= rt->priv->drain_deadline_ms) {
		if (rt->priv->aborted) {
			LOG_WARN("runtime", "%ld request(s) still in flight after the abort; exiting",
				 busy);
			finish_shutdown(rt);
			return;
		}
		int aborts = 0;
		for (size_t i = 0; i < rt->priv->nhooks; i++)
			aborts += rt->priv->hooks[i].abort != NULL;
		LOG_WARN("runtime", "grace period over with %ld request(s) in flight; %s", busy,
			 aborts ? "ending them" : "exiting");
		if (!aborts) {
			finish_shutdown(rt);
			return;
		}
		rt->priv->aborted = 1;
		for (size_t i = 0; i < rt->priv->nhooks; i++)
			if (rt->priv->hooks[i].abort)
				rt->priv->hooks[i].abort(rt->priv->hooks[i].arg);
		rt->priv->drain_deadline_ms = mono_ms() + RUNTIME_ABORT_FLUSH_MS;
	}
	struct timeval tv = { 0, DRAIN_POLL_MS * 1000 };
	evtimer_add(rt->priv->drain_timer, &tv);
}

void runtime_shutdown(struct runtime *rt, const char *why)
{
	if (rt->shutting_down)
		return;
	rt->shutting_down = 1;
	LOG_INFO("runtime", "shutting down (%s); draining for up to %lld ms",
		 why, (long long)rt->grace_ms);
	for (size_t i = 0; i < rt->priv->nhooks; i++)
		if (rt->priv->hooks[i].stop_accepting)
			rt->priv->hooks[i].stop_accepting(rt->priv->hooks[i].arg);
	rt->priv->drain_deadline_ms = mono_ms() + (uint64_t)rt->grace_ms;
	/* The first check after one loop turn: what the caller just queued
	 * (a drain request's answer) goes out before an idle process ends. */
	struct timeval now = { 0, 0 };
	evtimer_add(rt->priv->drain_timer, &now);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct runtime *rt = arg;
	(void)what;
	if (++rt->priv->signals > 1) {
		static const char msg[] = "dyn: second signal, exiting now\n";
		ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)n;
		_exit(130);
	}
	runtime_shutdown(rt, sig == SIGINT ? "SIGINT" : "SIGTERM");
}

int runtime_init(struct runtime *rt, int64_t grace_ms)
{
	memset(rt, 0, sizeof(*rt));
	rt->grace_ms = grace_ms;
	rt->priv = xcalloc(1, sizeof(*rt->priv));
	rt->base = event_base_new();
	if (!rt->base)
		return err_set(-ENOMEM, "cannot create event loop");
	/* A dead peer must be an error on write, not a process kill. */
	signal(SIGPIPE, SIG_IGN);
	rt->priv->sigint = evsignal_new(rt->base, SIGINT, on_signal, rt);
	rt->priv->sigterm = evsignal_new(rt->base, SIGTERM, on_signal, rt);
	rt->priv->drain_timer = evtimer_new(rt->base, drain_tick, rt);
	if (!rt->priv->sigint || !rt->priv->sigterm || !rt->priv->drain_timer ||
	    evsignal_add(rt->priv->sigint, NULL) || evsignal_add(rt->priv->sigterm, NULL))
		return err_set(-ENOMEM, "cannot install signal handlers");
	return 0;
}

void runtime_add_hooks(struct runtime *rt, const struct runtime_hooks *h)
{
	rt->priv->hooks = xrealloc(rt->priv->hooks,
				   (rt->priv->nhooks + 1) * sizeof(*h));
	rt->priv->hooks[rt->priv->nhooks++] = *h;
}

int runtime_run(struct runtime *rt)
{
	if (!rt->priv->finished)
		event_base_dispatch(rt->base);
	return 0;
}

int runtime_run_until(struct runtime *rt, int (*done)(void *arg), void *arg, int64_t max_ms)
{
	uint64_t end = mono_ms() + (uint64_t)max_ms;
	struct timeval step = { 0, 10 * 1000 };
	while (!done(arg)) {
		if (rt->priv->finished || rt->shutting_down || mono_ms() >= end)
			return 0;
		event_base_loopexit(rt->base, &step);
		event_base_dispatch(rt->base);
	}
	return 1;
}

void runtime_lease_renewed(struct runtime *rt)
{
	for (size_t i = 0; i < rt->priv->nhooks; i++)
		if (rt->priv->hooks[i].lease_renewed)
			rt->priv->hooks[i].lease_renewed(rt->priv->hooks[i].arg);
}

void runtime_free(struct runtime *rt)
{
	if (!rt->priv)
		return;
	for (size_t i = 0; i < rt->priv->nhooks; i++)
		if (rt->priv->hooks[i].release)
			rt->priv->hooks[i].release(rt->priv->hooks[i].arg);
	if (rt->priv->sigint)
		event_free(rt->priv->sigint);
	if (rt->priv->sigterm)
		event_free(rt->priv->sigterm);
	if (rt->priv->drain_timer)
		event_free(rt->priv->drain_timer);
	free(rt->priv->hooks);
	free(rt->priv);
	if (rt->base)
		event_base_free(rt->base);
	memset(rt, 0, sizeof(*rt));
}
