/*
 * engine_collect.h - for the engine's unit tests: a request's outputs
 * gathered by its on_output callback (on the engine's step thread), and a
 * wait for its final output (tokens, and their logprobs when the request
 * asks for them).  Optionally cancels the request after
 * cancel_after tokens (set e and id first).
 */
#ifndef DYN_TEST_ENGINE_COLLECT_H
#define DYN_TEST_ENGINE_COLLECT_H

#include "core/engine/engine.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define COLLECT_MAX 4096

struct collect {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int32_t tokens[COLLECT_MAX];
	float logprobs[COLLECT_MAX];
	int n, done, n_cached, n_prompt;
	int n_plps, plps_in_order;	/* prompt logprobs: count, positions 1, 2, .. */
	enum engine_finish finish;
	struct engine *e;
	uint64_t id;
	int cancel_after;
};

static inline void collect_init(struct collect *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
}

static inline void on_output(void *arg, const struct engine_output *o)
{
	struct collect *c = arg;
	pthread_mutex_lock(&c->mu);
	if (o->prompt_pos) {
		c->n_plps++;
		c->plps_in_order = o->prompt_pos == c->n_plps && (c->n_plps == 1 || c->plps_in_order);
	}
	if (o->token >= 0 && c->n < COLLECT_MAX) {
		c->logprobs[c->n] = o->logprob;
		c->tokens[c->n++] = o->token;
	}
	if (c->cancel_after && c->n == c->cancel_after && !o->finish)
		engine_cancel(c->e, c->id);
	if (o->finish) {
		c->done = 1;
		c->finish = o->finish;
		c->n_cached = o->n_cached;
		c->n_prompt = o->n_prompt;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
}

static inline int collect_wait(struct collect *c, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&c->mu);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &ts) == 0)
		;
	int done = c->done;
	pthread_mutex_unlock(&c->mu);
	return done;
}

#endif
