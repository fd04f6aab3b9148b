/*
 * run_loop.h - driving a libevent loop from a unit test: until a
 * condition holds (bounded in time), or for a while; and measuring how
 * long it stood still.
 */
#ifndef DYN_TEST_RUN_LOOP_H
#define DYN_TEST_RUN_LOOP_H

#include "core/util.h"

#include <event2/event.h>
#include <stdint.h>

/* Run the loop until done(arg) or timeout_ms; returns done(arg). */
static inline int run_until(struct event_base *base, int (*done)(void *), void *arg,
			    int timeout_ms)
{
	uint64_t end = mono_ms() + (uint64_t)timeout_ms;
	while (!done(arg) && mono_ms() < end) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	return done(arg);
}

/* A timer every 10 ms that records the longest wait between its ticks:
 * how long the loop stood still.  loop_ticks_start(), run, then
 * loop_ticks_stop() before the base goes. */
struct loop_ticks {
	struct event *ev;
	uint64_t last, max_gap;
	int n;
};

static inline void loop_ticks_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct loop_ticks *t = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	if (t->last && now - t->last > t->max_gap)
		t->max_gap = now - t->last;
	t->last = now;
	t->n++;
}

static inline void loop_ticks_start(struct event_base *base, struct loop_ticks *t)
{
	struct timeval ten = { 0, 10000 };
	*t = (struct loop_ticks){ 0 };
	t->ev = event_new(base, -1, EV_PERSIST, loop_ticks_on_tick, t);
	event_add(t->ev, &ten);
}

static inline void loop_ticks_stop(struct loop_ticks *t)
{
	event_free(t->ev);
	t->ev = NULL;
}

#endif
