/*
 * process.c - the process's store connection and lease (process.h).
 */
#include "store/process.h"

#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/util.h"
#include "store/store.h"

#include <event2/event.h>
#include <stdlib.h>

#define REGRANT_RETRY_MS 1000

struct process_lease {
	struct runtime *rt;
	int64_t ttl_ms;
	struct event *retry;		/* re-grant after a failed try */
};

static void lease_lost(void *arg);

/* A new lease, then the records bound to it put again; retried while the
 * store refuses. */
static void regrant(evutil_socket_t fd, short what, void *arg)
{
	struct process_lease *pl = arg;
	struct runtime *rt = pl->rt;
	(void)fd;
	(void)what;

	if (rt->shutting_down || !rt->store)
		return;
	if (store_lease_grant(rt->store, pl->ttl_ms, &rt->lease) < 0 ||
	    store_lease_autorenew(rt->store, rt->lease, lease_lost, pl) < 0) {
		LOG_DEBUG("runtime", "granting a new lease: %s (retrying)", err_msg());
		rt->lease = 0;
		struct timeval tv = { REGRANT_RETRY_MS / 1000, (REGRANT_RETRY_MS % 1000) * 1000 };
		evtimer_add(pl->retry, &tv);
		return;
	}
	LOG_WARN("runtime", "new store lease %016llx: registering again",
		 (unsigned long long)rt->lease);
	runtime_lease_renewed(rt);
}

/* The lease expired while we were alive (the store was unavailable past
 * its TTL, or was wiped): our records are gone.  Serving goes on; we put
 * them back under a new lease. */
static void lease_lost(void *arg)
{
	struct process_lease *pl = arg;
	struct runtime *rt = pl->rt;
	if (rt->shutting_down)
		return;
	LOG_WARN("runtime", "store lease %016llx expired: our records are gone; registering again",
		 (unsigned long long)rt->lease);
	rt->lease = 0;
	regrant(-1, 0, pl);
}

static void revoke_lease(void *arg)
{
	struct process_lease *pl = arg;
	struct runtime *rt = pl->rt;
	evtimer_del(pl->retry);
	if (rt->lease && rt->store) {
		if (store_lease_revoke(rt->store, rt->lease) < 0)
			LOG_WARN("runtime", "revoking lease: %s", err_msg());
		rt->lease = 0;
	}
}

static void close_store(void *arg)
{
	struct process_lease *pl = arg;
	struct runtime *rt = pl->rt;
	if (rt->store)
		store_close(rt->store);
	rt->store = NULL;
	event_free(pl->retry);
	free(pl);
}

int store_process_open(struct runtime *rt, const char *url, int64_t ttl_ms)
{
	int rc = store_open(url && *url ? url : store_default_url(), rt->base, &rt->store);
	if (rc < 0)
		return rc;
	struct process_lease *pl = xcalloc(1, sizeof(*pl));
	pl->rt = rt;
	pl->ttl_ms = ttl_ms;
	pl->retry = evtimer_new(rt->base, regrant, pl);
	if (!pl->retry)
		abort();
	struct runtime_hooks h = { .arg = pl, .drained = revoke_lease, .release = close_store };
	runtime_add_hooks(rt, &h);
	rc = store_lease_grant(rt->store, ttl_ms, &rt->lease);
	if (rc < 0)
		return err_wrap(rc, "granting process lease");
	rc = store_lease_autorenew(rt->store, rt->lease, lease_lost, pl);
	if (rc < 0)
		return rc;
	LOG_DEBUG("runtime", "store %s, lease %016llx (ttl %lld ms)", store_url(rt->store),
		  (unsigned long long)rt->lease, (long long)ttl_ms);
	return 0;
}
