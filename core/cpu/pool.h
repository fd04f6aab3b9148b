/*
 * pool.h - a small fork-join thread pool for the CPU backend's kernels.
 *
 * pool_run() hands out tasks 0..n-1 to the pool's threads (the calling
 * thread is thread 0 and works too) and returns when all are done.  Tasks
 * are claimed dynamically from an atomic counter, so uneven tasks balance.
 * Workers spin briefly after a job before sleeping, so the hundreds of
 * small jobs of one decode step do not each pay a wake-up.
 *
 * Thread-safety: one pool_run() at a time per pool (the engine's step
 * thread owns it).  pool_new/pool_free from the owning thread.
 */
#ifndef DYN_CPU_POOL_H
#define DYN_CPU_POOL_H

struct pool;

/* fn(arg, task, thread): thread in [0, pool_size()) indexes per-thread
 * scratch. */
typedef void (*pool_fn)(void *arg, int task, int thread);

/* n_threads >= 1 (1: no worker threads, everything on the caller). */
int pool_new(int n_threads, struct pool **out);
void pool_free(struct pool *p);
int pool_size(const struct pool *p);
void pool_run(struct pool *p, int n_tasks, pool_fn fn, void *arg);

#endif
