/*
 * process.c - the process's store connection and lease (process.h).
 */
#include "store/process.h"

#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "store/store.h"

static void lease_lost(void *arg)
{
	struct runtime *rt = arg;
	LOG_ERROR("runtime", "store lease %llx expired: our records are gone; shutting down",
		  (unsigned long long)rt->lease);
	rt->lease = 0;
	runtime_shutdown(rt, "lease lost");
}

static void revoke_lease(void *arg)
{
	struct runtime *rt = arg;
	if (rt->lease && rt->store) {
		if (store_lease_revoke(rt->store, rt->lease) < 0)
			LOG_WARN("runtime", "revoking lease: %s", err_msg());
		rt->lease = 0;
	}
}

static void close_store(void *arg)
{
	struct runtime *rt = arg;
	if (rt->store)
		store_close(rt->store);
	rt->store = NULL;
}

int store_process_open(struct runtime *rt, const char *url, int64_t ttl_ms)
{
	int rc = store_open(url && *url ? url : store_default_url(), rt->base, &rt->store);
	if (rc < 0)
		return rc;
	struct runtime_hooks h = { .arg = rt, .drained = revoke_lease, .release = close_store };
	runtime_add_hooks(rt, &h);
	rc = store_lease_grant(rt->store, ttl_ms, &rt->lease);
	if (rc < 0)
		return err_wrap(rc, "granting process lease");
	rc = store_lease_autorenew(rt->store, rt->lease, lease_lost, rt);
	if (rc < 0)
		return rc;
	LOG_DEBUG("runtime", "store %s, lease %llx (ttl %lld ms)", store_url(rt->store),
		  (unsigned long long)rt->lease, (long long)ttl_ms);
	return 0;
}
