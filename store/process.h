/*
 * process.h - a long-running process's store connection and lease, tied to
 * its runtime (core/runtime.h): the store is opened on the runtime's loop,
 * the process lease is granted and kept alive from it, the lease is
 * revoked once the runtime has drained on shutdown (the process's records
 * vanish at once rather than after the TTL), and the store is closed when
 * the runtime is freed.  A lease that expires anyway (the loop was stuck
 * past the TTL) means the records are gone: the runtime shuts down.
 *
 * Threading: the runtime's loop thread.  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_STORE_PROCESS_H
#define DYN_STORE_PROCESS_H

#include <stdint.h>

struct runtime;

/* Open the store at url (NULL or "" = store_default_url()) into rt->store
 * and grant the process lease of ttl_ms into rt->lease. */
int store_process_open(struct runtime *rt, const char *url, int64_t ttl_ms);

#endif
