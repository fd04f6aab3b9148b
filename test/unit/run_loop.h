/*
 * run_loop.h - driving a libevent loop from a unit test: until a
 * condition holds (bounded in time), or for a while.
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

#endif
