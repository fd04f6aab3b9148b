/*
 * offload.c - worker threads and two queues (offload.h): jobs to run,
 * and jobs run, whose arrival an eventfd tells the loop about.
 */
#include "core/offload.h"

#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct job {
	offload_fn work, done;
	void *arg;
	struct job *next;
};

struct queue {
	struct job *head, **tail;
};

struct offload {
	pthread_t *threads;
	int n_threads;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct queue todo, done;	/* under mu */
	int stop;			/* under mu */
	int efd;
	struct event *wake;
};

static void queue_push(struct queue *q, struct job *j)
{
	j->next = NULL;
	*q->tail = j;
	q->tail = &j->next;
}

static struct job *queue_take_all(struct queue *q)
{
	struct job *all = q->head;
	q->head = NULL;
	q->tail = &q->head;
	return all;
}

static void *run(void *arg)
{
	struct offload *o = arg;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		while (!o->todo.head && !o->stop)
			pthread_cond_wait(&o->cv, &o->mu);
		if (o->stop)
			break;
		struct job *j = o->todo.head;
		o->todo.head = j->next;
		if (!o->todo.head)
			o->todo.tail = &o->todo.head;
		pthread_mutex_unlock(&o->mu);
		j->work(j->arg);
		pthread_mutex_lock(&o->mu);
		queue_push(&o->done, j);
		uint64_t one = 1;
		/* A full counter still wakes the loop: nothing to handle. */
		(void)!write(o->efd, &one, sizeof(one));
	}
	pthread_mutex_unlock(&o->mu);
	return NULL;
}

static void deliver(struct job *j)
{
	while (j) {
		struct job *next = j->next;
		j->done(j->arg);
		free(j);
		j = next;
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct offload *o = arg;
	uint64_t n;
	(void)what;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&o->mu);
	struct job *all = queue_take_all(&o->done);
	pthread_mutex_unlock(&o->mu);
	deliver(all);
}

int offload_new_threads(struct event_base *base, int n_threads, struct offload **out)
{
	struct offload *o = xcalloc(1, sizeof(*o));
	int rc;
	o->todo.tail = &o->todo.head;
	o->done.tail = &o->done.head;
	o->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (o->efd < 0) {
		rc = err_set(-errno, "eventfd: %s", strerror(errno));
		free(o);
		return rc;
	}
	pthread_mutex_init(&o->mu, NULL);
	pthread_cond_init(&o->cv, NULL);
	o->wake = event_new(base, o->efd, EV_READ | EV_PERSIST, on_wake, o);
	if (n_threads < 1)
		n_threads = 1;
	o->threads = xcalloc((size_t)n_threads, sizeof(*o->threads));
	for (; o->n_threads < n_threads; o->n_threads++) {
		rc = pthread_create(&o->threads[o->n_threads], NULL, run, o);
		if (rc) {
			offload_free(o);
			return err_set(-rc, "starting an offload thread: %s", strerror(rc));
		}
	}
	event_add(o->wake, NULL);
	*out = o;
	return 0;
}

int offload_new(struct event_base *base, struct offload **out)
{
	return offload_new_threads(base, 1, out);
}

void offload_submit(struct offload *o, offload_fn work, offload_fn done, void *arg)
{
	struct job *j = xcalloc(1, sizeof(*j));
	*j = (struct job){ work, done, arg, NULL };
	pthread_mutex_lock(&o->mu);
	queue_push(&o->todo, j);
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->mu);
}

void offload_free(struct offload *o)
{
	if (!o)
		return;
	pthread_mutex_lock(&o->mu);
	o->stop = 1;
	pthread_cond_broadcast(&o->cv);
	pthread_mutex_unlock(&o->mu);
	for (int i = 0; i < o->n_threads; i++)
		pthread_join(o->threads[i], NULL);
	/* Run ones first, in order, then the ones that never ran. */
	deliver(queue_take_all(&o->done));
	deliver(queue_take_all(&o->todo));
	event_free(o->wake);
	close(o->efd);
	pthread_cond_destroy(&o->cv);
	pthread_mutex_destroy(&o->mu);
	free(o->threads);
	free(o);
}
