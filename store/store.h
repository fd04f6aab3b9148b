/*
 * store.h - the discovery store: a small key/value store with leases and
 * prefix watches, shared by every dyn process of a deployment.
 *
 * Backends are chosen by URL:
 *   file://DIR        embedded, one machine (the default; see store_default_url)
 *   sqlite://PATH     embedded, one machine, one SQLite database file
 *   etcd://HOST:PORT[,HOST:PORT...][?user=U&password=P&ca=FILE&tls=1]
 *                     an etcd v3 cluster (its JSON gateway), several hosts
 *
 * Model (deliberately etcd's, so an etcd backend fits without changing callers):
 *  - Keys are UTF-8 strings without NUL ("v1/instances/ns/comp/ep/1a2b"),
 *    values are byte strings (by convention JSON; see dyn-store(5)).
 *  - Every change gets a store-wide revision, strictly increasing.
 *  - A lease has a TTL; keys put with a lease are deleted when the lease
 *    is revoked or not kept alive within its TTL (e.g. the owner crashed).
 *    Deletions caused by expiry are seen by watchers like any delete.
 *    An expired lease is reaped within TTL + 1 s as long as any process
 *    has the store open with a watch or an auto-renewed lease.
 *  - A watch on a prefix first delivers the current contents (a snapshot
 *    of PUT events, then one STORE_EV_SYNCED), then every later change in
 *    revision order, with nothing lost between snapshot and changes.
 *
 * Several processes on one machine may share an embedded store safely:
 * writers are serialised, records are replaced atomically, and a crash
 * mid-write leaves no corrupt record.
 *
 * Threading: a struct store belongs to one thread.  Watch callbacks and
 * lease keep-alive timers run on the event_base given to store_open().
 * Synchronous operations (put/get/list/...) may be used without a base.
 * A struct store must not be used across fork(): open a new one in the
 * child.  A callback may call store_unwatch() and store_close().
 *
 * Errors: negative errno-style codes with err_msg() set; -ENOENT for a
 * missing key or lease, -EEXIST from store_create() when the key exists.
 */
#ifndef DYN_STORE_H
#define DYN_STORE_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct store;
struct store_watch;

#define STORE_DEFAULT_TTL_MS 10000
/* Limits: put/create/lease_grant return -EINVAL beyond them. */
#define STORE_KEY_MAX 4096		/* bytes of a key */
#define STORE_VALUE_MAX (1 << 20)	/* bytes of a value (etcd's is 1.5 MiB) */
#define STORE_TTL_MAX_MS (365LL * 86400 * 1000)

struct store_kv {
	char *key;
	char *value;		/* NUL-terminated for convenience; len excludes it */
	size_t len;
	int64_t lease;		/* 0 = none */
	int64_t mod_revision;	/* revision of the last change to this key */
};

enum store_event_type {
	STORE_EV_PUT,
	STORE_EV_DELETE,	/* value is empty */
	STORE_EV_SYNCED,	/* end of the initial snapshot; kv is zeroed */
};

struct store_event {
	enum store_event_type type;
	struct store_kv kv;	/* borrowed: valid only during the callback */
};

typedef void (*store_watch_fn)(const struct store_event *ev, void *arg);

/* "file://$XDG_RUNTIME_DIR/dyn", or "file:///tmp/dyn-$UID" without it.
 * Returns a static buffer. */
const char *store_default_url(void);

/* Open (creating if needed) the store at url.  base may be NULL for
 * one-shot use (CLI); watches and auto-renewal then are unavailable.
 * Errors: -EINVAL or -ENOTSUP only when the URL itself is wrong (empty,
 * no scheme, unknown or unbuilt scheme, no path): a usage error.  A
 * store that cannot be opened (missing permissions, a directory or file
 * that is not a dyn store, a corrupt database) gives -EIO or another
 * -errno: a runtime failure.  The message names the URL, on one line. */
int store_open(const char *url, struct event_base *base, struct store **out);
/* Stop watches and auto-renewal, revoke nothing, free everything. */
void store_close(struct store *s);
const char *store_url(const struct store *s);

int store_put(struct store *s, const char *key, const void *val, size_t len,
	      int64_t lease);
/* Like put, but fails with -EEXIST if the key already exists. */
int store_create(struct store *s, const char *key, const void *val, size_t len,
		 int64_t lease);
/* On success *out is filled and must be released with store_kv_free(). */
int store_get(struct store *s, const char *key, struct store_kv *out);
int store_delete(struct store *s, const char *key);
/* All keys starting with prefix ("" = everything), sorted by key.
 * Free with store_kvs_free(). rev (optional) = store revision read. */
int store_list(struct store *s, const char *prefix, struct store_kv **kvs,
	       size_t *n, int64_t *rev);
void store_kv_free(struct store_kv *kv);
void store_kvs_free(struct store_kv *kvs, size_t n);

int store_lease_grant(struct store *s, int64_t ttl_ms, int64_t *lease);
int store_lease_keepalive(struct store *s, int64_t lease);	/* -ENOENT if gone */
int store_lease_revoke(struct store *s, int64_t lease);	/* deletes its keys */
/* Keep lease alive from the event loop (every ttl/3) until revoked or the
 * store is closed; store_put/store_create also renew it when it is due,
 * for callers that block the loop with many writes.  If renewal finds the
 * lease gone, lost(arg) is called (may be NULL): the owner must
 * re-register. */
int store_lease_autorenew(struct store *s, int64_t lease,
			  void (*lost)(void *arg), void *arg);
/* Renew lease now (a caller that kept the loop from running for a while,
 * before it puts records under it).  An auto-renewed lease found gone
 * has its lost() called, as the loop would, before -ENOENT returns. */
int store_lease_check(struct store *s, int64_t lease);

/* Watch every key under prefix; see the model above for ordering. */
int store_watch(struct store *s, const char *prefix, store_watch_fn fn,
		void *arg, struct store_watch **out);
void store_unwatch(struct store_watch *w);

#endif
