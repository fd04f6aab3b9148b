/*
 * pool.c - fork-join thread pool (see pool.h).  A job is published by
 * bumping a generation counter; workers spin on it for a short while, then
 * sleep on a condition variable.  Tasks are claimed with an atomic counter;
 * the job ends when every thread has left it.
 */
#include "core/cpu/pool.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SPIN_NS 200000u	/* a worker spins this long after a job before sleeping */

struct pool {
	int n;
	pthread_t *threads;
	pthread_mutex_t mu;
	pthread_cond_t wake;
	atomic_uint gen;		/* bumped per job */
	atomic_int closed;		/* the current job takes no new workers */
	atomic_int next_task;
	atomic_int active;		/* workers inside the current job */
	atomic_int stop;
	int n_tasks;
	pool_fn fn;
	void *arg;
};

struct worker_arg {
	struct pool *p;
	int id;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void work(struct pool *p, int id)
{
	for (;;) {
		int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
		if (t >= p->n_tasks)
			break;
		p->fn(p->arg, t, id);
	}
}

/*
 * A worker joins a job by incrementing active and then checking that the
 * job is still the one it woke for and not closed; the caller closes the
 * job when all tasks are claimed and then waits only for the workers that
 * joined (seq_cst on both sides: either the caller sees the increment or
 * the worker sees closed).  A worker the OS has not scheduled yet never
 * holds a job up.
 */
static void *worker_main(void *a)
{
	struct worker_arg wa = *(struct worker_arg *)a;
	struct pool *p = wa.p;
	unsigned seen = 0;

	free(a);
	for (;;) {
		unsigned g;
		uint64_t spin_start = 0;
		int spins = 0;
		while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->stop)) {
			cpu_relax();
			if (++spins & 63)
				continue;
			uint64_t now = mono_ns();
			if (!spin_start)
				spin_start = now;
			if (now - spin_start < SPIN_NS)
				continue;
			pthread_mutex_lock(&p->mu);
			while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
				pthread_cond_wait(&p->wake, &p->mu);
			pthread_mutex_unlock(&p->mu);
		}
		if (atomic_load(&p->stop))
			return NULL;
		seen = g;
		atomic_fetch_add(&p->active, 1);
		if (atomic_load(&p->gen) == g && !atomic_load(&p->closed))
			work(p, wa.id);
		atomic_fetch_sub(&p->active, 1);
	}
}

int pool_new(int n_threads, struct pool **out)
{
	struct pool *p = xcalloc(1, sizeof(*p));

	if (n_threads < 1)
		n_threads = 1;
	p->n = n_threads;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->threads = xcalloc((size_t)n_threads, sizeof(pthread_t));
	for (int i = 1; i < n_threads; i++) {
		struct worker_arg *wa = xmalloc(sizeof(*wa));
		wa->p = p;
		wa->id = i;
		int rc = pthread_create(&p->threads[i], NULL, worker_main, wa);
		if (rc) {
			free(wa);
			p->n = i;
			pool_free(p);
			return err_set(-rc, "pool: pthread_create: %s", strerror(rc));
		}
	}
	*out = p;
	return 0;
}

void pool_free(struct pool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	atomic_store(&p->stop, 1);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	for (int i = 1; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->wake);
	free(p->threads);
	free(p);
}

int pool_size(const struct pool *p)
{
	return p->n;
}

void pool_run(struct pool *p, int n_tasks, pool_fn fn, void *arg)
{
	if (n_tasks <= 0)
		return;
	if (p->n == 1 || n_tasks == 1) {
		for (int t = 0; t < n_tasks; t++)
			fn(arg, t, 0);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	p->n_tasks = n_tasks;
	atomic_store(&p->next_task, 0);
	atomic_store(&p->closed, 0);
	pthread_mutex_lock(&p->mu);
	atomic_fetch_add(&p->gen, 1);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->mu);
	work(p, 0);
	atomic_store(&p->closed, 1);
	for (int spins = 0; atomic_load(&p->active) > 0; spins++) {
		if (spins < 4096)
			cpu_relax();
		else
			sched_yield();
	}
}
