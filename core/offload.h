/*
 * offload.h - work taken off an event loop: one thread runs jobs in the
 * order they were submitted (or n threads take them in that order) and
 * hands each back to the loop's thread, where its done callback runs.  For
 * blocking reads, compilations and transfers that a loop callback must not
 * wait for.
 *
 * Ownership and threads: offload_new(), offload_submit() and
 * offload_free() belong to the thread running base.  work(arg) runs on
 * the offload thread and may only touch what arg gives it; done(arg)
 * runs on the loop's thread, exactly once per job: after work(arg) from
 * the loop, or from offload_free() for a job not yet handed back (which
 * may not have run: the job tells by its own state).  Errors: 0 /
 * -errno with err_msg().
 */
#ifndef DYN_OFFLOAD_H
#define DYN_OFFLOAD_H

struct event_base;
struct offload;

typedef void (*offload_fn)(void *arg);

int offload_new(struct event_base *base, struct offload **out);
/* n_threads run jobs concurrently (started in order, done as they end). */
int offload_new_threads(struct event_base *base, int n_threads, struct offload **out);
void offload_submit(struct offload *o, offload_fn work, offload_fn done, void *arg);
/* Wait for the jobs running now, end the threads, then call done for
 * every job left. */
void offload_free(struct offload *o);

#endif
