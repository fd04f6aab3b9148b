/*
 * store.c - the discovery store's generic layer (see store.h): URL
 * parsing and backend choice, argument validation, lease auto-renewal
 * timers and the watch machinery (snapshot, SYNCED, then the change feed
 * polled from a timer on the event_base, re-snapshotting after a
 * compaction).  The backends live in store_file.c, store_sqlite.c and
 * store_etcd.c behind the vtable of store_backend.h.
 */
#include "store/store.h"
#include "store/store_backend.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define WATCH_POLL_MS 50	/* change-feed poll period while watches exist */
#define REAP_MS 250		/* expired-lease reaping period */
#define RENEW_MIN_MS 10
#define BUSY_OUTAGE_MS 1000	/* held by another process this long: an outage */

struct store_renew {
	struct store *s;
	int64_t lease;
	int64_t ttl_ms, every_ms;
	uint64_t last_ms;		/* last renewal (monotonic) */
	struct event *ev;
	void (*lost)(void *arg);
	void *arg;
	int retrying;			/* the last renewal failed */
};

struct known_key {
	char *key;
	int64_t rev;
};

struct store_watch {
	struct store *s;
	char *prefix;
	size_t plen;
	store_watch_fn fn;
	void *arg;
	void *cursor;
	int64_t rev;			/* last revision seen by this watch */
	struct known_key *known;	/* keys the caller was told exist, sorted */
	size_t nknown, known_cap;
	struct store_kv *pending;	/* initial snapshot, not yet delivered */
	size_t npending;
	int synced;
	int dead;			/* unwatched during a delivery */
};

struct store {
	char *url;
	const struct store_backend_ops *ops;
	struct store_backend *b;
	struct event_base *base;
	struct event *timer;
	struct store_watch **watches;
	size_t nwatches;
	struct store_renew **renews;
	size_t nrenews;
	uint64_t next_reap_ms;
	int delivering;			/* depth of callbacks in progress */
	unsigned down;			/* enum store_op: the kinds failing now */
	unsigned generation;		/* the backend's, as last seen */
	uint64_t down_since_ms;
	uint64_t busy_since_ms[3];	/* by enum store_op's bit: held by another process since */
	int closing;			/* store_close() called from a callback */
};

/* ---------------------------------------------------------------- helpers */

int store_utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned c = s[i];
		size_t n;
		uint32_t cp, min;

		if (c < 0x80) {
			if (c == 0)
				return 0;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; min = 0x80; }
		else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; min = 0x800; }
		else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; min = 0x10000; }
		else
			return 0;
		if (len - i < n)
			return 0;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n;
	}
	return 1;
}

int store_kv_cmp(const void *a, const void *b)
{
	return strcmp(((const struct store_kv *)a)->key,
		      ((const struct store_kv *)b)->key);
}

int64_t store_random_id(void)
{
	uint64_t v = 0;

	if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		v = ((uint64_t)ts.tv_nsec << 32) ^ (uint64_t)ts.tv_sec ^
		    ((uint64_t)getpid() << 16) ^ mono_ns();
		v *= 0x9e3779b97f4a7c15ull;
	}
	v &= 0x7fffffffffffffffull;
	return v ? (int64_t)v : 1;
}

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void store_b64_encode(struct strbuf *sb, const unsigned char *p, size_t len)
{
	size_t i = 0;
	for (; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		sb_addch(sb, b64chars[v >> 18]);
		sb_addch(sb, b64chars[(v >> 12) & 63]);
		sb_addch(sb, b64chars[(v >> 6) & 63]);
		sb_addch(sb, b64chars[v & 63]);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		sb_addch(sb, b64chars[v >> 18]);
		sb_addch(sb, b64chars[(v >> 12) & 63]);
		sb_adds(sb, "==");
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		sb_addch(sb, b64chars[v >> 18]);
		sb_addch(sb, b64chars[(v >> 12) & 63]);
		sb_addch(sb, b64chars[(v >> 6) & 63]);
		sb_addch(sb, '=');
	}
}

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Strict: length a multiple of 4, padding only at the end. */
int store_b64_decode(const char *s, size_t len, struct strbuf *out)
{
	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int v[4], pad = 0;
		for (int k = 0; k < 4; k++) {
			unsigned char c = (unsigned char)s[i + k];
			if (c == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
				continue;
			}
			if (pad)
				return -1;	/* data after padding */
			v[k] = b64_val(c);
			if (v[k] < 0)
				return -1;
		}
		uint32_t x = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 |
			     (uint32_t)v[2] << 6 | (uint32_t)v[3];
		sb_addch(out, (int)(x >> 16));
		if (pad < 2)
			sb_addch(out, (int)((x >> 8) & 0xff));
		if (pad < 1)
			sb_addch(out, (int)(x & 0xff));
	}
	return 0;
}

void store_changes_free(struct store_change *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(c[i].key);
		free(c[i].value);
	}
	free(c);
}

struct store_change *store_change_push(struct store_change **arr, size_t *n,
				       size_t *cap)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 16;
		*arr = xrealloc(*arr, *cap * sizeof(**arr));
	}
	struct store_change *c = &(*arr)[(*n)++];
	memset(c, 0, sizeof(*c));
	return c;
}

void store_kv_free(struct store_kv *kv)
{
	if (!kv)
		return;
	free(kv->key);
	free(kv->value);
	memset(kv, 0, sizeof(*kv));
}

void store_kvs_free(struct store_kv *kvs, size_t n)
{
	if (!kvs)
		return;
	for (size_t i = 0; i < n; i++)
		store_kv_free(&kvs[i]);
	free(kvs);
}

static int check_key(const char *key)
{
	if (!key || !*key)
		return err_set(-EINVAL, "store: empty key");
	size_t len = strlen(key);
	if (len > STORE_KEY_MAX)
		return err_set(-EINVAL, "store: key longer than %d bytes", STORE_KEY_MAX);
	if (!store_utf8_valid(key, len))
		return err_set(-EINVAL, "store: key is not valid UTF-8");
	return 0;
}

static int check_prefix(const char *prefix)
{
	if (!prefix)
		return err_set(-EINVAL, "store: NULL prefix");
	size_t len = strlen(prefix);
	if (len > STORE_KEY_MAX || !store_utf8_valid(prefix, len))
		return err_set(-EINVAL, "store: prefix is not a valid key prefix");
	return 0;
}

static int check_lease(int64_t lease)
{
	if (lease < 0)
		return err_set(-EINVAL, "store: bad lease id %lld", (long long)lease);
	return 0;
}

/* ------------------------------------------------------------------ URLs */

const char *store_default_url(void)
{
	static char buf[PATH_MAX + 16];
	const char *xdg = getenv("XDG_RUNTIME_DIR");

	if (xdg && *xdg)
		snprintf(buf, sizeof(buf), "file://%s/dyn", xdg);
	else
		snprintf(buf, sizeof(buf), "file:///tmp/dyn-%u", (unsigned)getuid());
	return buf;
}

static const struct store_backend_ops *const backends[] = {
	&store_file_ops,
	&store_sqlite_ops,
	&store_etcd_ops,
};

static int parse_url(const char *url, const struct store_backend_ops **ops,
		     const char **path)
{
	if (!url || !*url)
		return err_set(-EINVAL, "empty store URL (use file://DIR, sqlite://PATH or etcd://HOST:PORT)");
	const char *sep = strstr(url, "://");
	if (!sep)
		return err_set(-EINVAL,
			       "'%s' is not a store URL (use file://DIR, sqlite://PATH or etcd://HOST:PORT)",
			       url);
	size_t slen = (size_t)(sep - url);
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++) {
		if (strlen(backends[i]->scheme) == slen &&
		    !strncmp(url, backends[i]->scheme, slen)) {
			*ops = backends[i];
			*path = sep + 3;
			if (!**path)
				return err_set(-EINVAL, "'%s': missing path after %.*s://",
					       url, (int)slen, url);
			if ((*ops)->check && (*ops)->check(*path) < 0)
				return err_wrap(-EINVAL, "'%s'", url);
			return 0;
		}
	}
	return err_set(-EINVAL, "'%s': unknown store scheme '%.*s' "
		       "(accepted: file://DIR, sqlite://PATH, etcd://HOST:PORT[,...])", url, (int)slen, url);
}

/* ------------------------------------------------------- open and close */

int store_open(const char *url, struct event_base *base, struct store **out)
{
	const struct store_backend_ops *ops = NULL;
	const char *path = NULL;
	struct store_backend *b = NULL;

	*out = NULL;
	int rc = parse_url(url, &ops, &path);
	if (rc < 0)
		return rc;
	rc = ops->open(path, &b);
	/* -EINVAL and -ENOTSUP mean "bad URL" to callers (a usage error);
	 * whatever the backend met (a file system without flock, a store
	 * of another format) is a failure to open an existing store. */
	if (rc == -EINVAL || rc == -ENOTSUP)
		rc = -EIO;
	if (rc < 0)
		return err_wrap(rc, "store %s", url);
	struct store *s = xcalloc(1, sizeof(*s));
	s->url = xstrdup(url);
	s->ops = ops;
	s->b = b;
	s->base = base;
	if (ops->generation)
		s->generation = ops->generation(b);
	*out = s;
	LOG_DEBUG("store", "opened %s", url);
	return 0;
}

static void watch_free(struct store_watch *w)
{
	if (w->cursor)
		w->s->ops->cursor_close(w->s->b, w->cursor);
	for (size_t i = 0; i < w->nknown; i++)
		free(w->known[i].key);
	free(w->known);
	store_kvs_free(w->pending, w->npending);
	free(w->prefix);
	free(w);
}

static void renew_free(struct store_renew *r)
{
	if (r->ev)
		event_free(r->ev);
	free(r);
}

static void store_free_now(struct store *s)
{
	for (size_t i = 0; i < s->nwatches; i++)
		watch_free(s->watches[i]);
	free(s->watches);
	for (size_t i = 0; i < s->nrenews; i++)
		renew_free(s->renews[i]);
	free(s->renews);
	if (s->timer)
		event_free(s->timer);
	s->ops->close(s->b);
	free(s->url);
	free(s);
}

void store_close(struct store *s)
{
	if (!s)
		return;
	if (s->delivering) {
		/* Called from a watch or lease callback: finish at the end
		 * of the tick, when no frame uses s any more. */
		s->closing = 1;
		return;
	}
	store_free_now(s);
}

const char *store_url(const struct store *s)
{
	return s->url;
}

/* ------------------------------------------------------ synchronous ops */

/* Renew the auto-renewed leases that are due, from a synchronous call: a
 * caller making many blocking writes in a row (a worker publishing its
 * model files while dozens of others do the same) starves the event loop
 * that runs the renewal timer, and would lose its lease mid-way.  A
 * failure is left to the timer, which reports a lost lease. */
/* A renewal from the loop: without waiting on the network when the
 * backend can (the result is then that of the previous renewal). */
static int renew_now(struct store *s, int64_t lease)
{
	if (s->ops->lease_keepalive_nb)
		return s->ops->lease_keepalive_nb(s->b, lease);
	return s->ops->lease_keepalive(s->b, lease);
}

static void renew_overdue(struct store *s)
{
	uint64_t now = mono_ms();
	for (size_t i = 0; i < s->nrenews; i++) {
		struct store_renew *r = s->renews[i];
		if (now - r->last_ms >= (uint64_t)r->every_ms &&
		    renew_now(s, r->lease) == 0)
			r->last_ms = mono_ms();
	}
}

int store_put(struct store *s, const char *key, const void *val, size_t len,
	      int64_t lease)
{
	int rc;
	if ((rc = check_key(key)) < 0 || (rc = check_lease(lease)) < 0)
		return rc;
	if (len > STORE_VALUE_MAX)
		return err_set(-EINVAL, "store: value of %zu bytes is over the %d-byte limit",
			       len, STORE_VALUE_MAX);
	if (!val && len)
		return err_set(-EINVAL, "store: NULL value");
	rc = s->ops->put(s->b, key, val ? val : "", len, lease, 0);
	renew_overdue(s);
	return rc;
}

int store_create(struct store *s, const char *key, const void *val, size_t len,
		 int64_t lease)
{
	int rc;
	if ((rc = check_key(key)) < 0 || (rc = check_lease(lease)) < 0)
		return rc;
	if (len > STORE_VALUE_MAX)
		return err_set(-EINVAL, "store: value of %zu bytes is over the %d-byte limit",
			       len, STORE_VALUE_MAX);
	if (!val && len)
		return err_set(-EINVAL, "store: NULL value");
	rc = s->ops->put(s->b, key, val ? val : "", len, lease, 1);
	renew_overdue(s);
	return rc;
}

int store_get(struct store *s, const char *key, struct store_kv *out)
{
	int rc;
	memset(out, 0, sizeof(*out));
	if ((rc = check_key(key)) < 0)
		return rc;
	return s->ops->get(s->b, key, out);
}

int store_delete(struct store *s, const char *key)
{
	int rc;
	if ((rc = check_key(key)) < 0)
		return rc;
	return s->ops->del(s->b, key);
}

int store_list(struct store *s, const char *prefix, struct store_kv **kvs,
	       size_t *n, int64_t *rev)
{
	int64_t r = 0;
	int rc;

	*kvs = NULL;
	*n = 0;
	if ((rc = check_prefix(prefix)) < 0)
		return rc;
	rc = s->ops->list(s->b, prefix, kvs, n, &r);
	if (rc == 0 && rev)
		*rev = r;
	return rc;
}

int store_lease_grant(struct store *s, int64_t ttl_ms, int64_t *lease)
{
	if (ttl_ms <= 0 || ttl_ms > STORE_TTL_MAX_MS)
		return err_set(-EINVAL, "store: lease TTL %lld ms out of range (1 ms .. 1 year)",
			       (long long)ttl_ms);
	return s->ops->lease_grant(s->b, ttl_ms, lease);
}

int store_lease_keepalive(struct store *s, int64_t lease)
{
	if (lease <= 0)
		return err_set(-EINVAL, "store: bad lease id %lld", (long long)lease);
	return s->ops->lease_keepalive(s->b, lease);
}

static void renew_remove(struct store *s, size_t i)
{
	renew_free(s->renews[i]);
	memmove(&s->renews[i], &s->renews[i + 1],
		(s->nrenews - i - 1) * sizeof(*s->renews));
	s->nrenews--;
}

int store_lease_revoke(struct store *s, int64_t lease)
{
	if (lease <= 0)
		return err_set(-EINVAL, "store: bad lease id %lld", (long long)lease);
	for (size_t i = 0; i < s->nrenews; i++) {
		if (s->renews[i]->lease == lease) {
			renew_remove(s, i);
			break;
		}
	}
	return s->ops->lease_revoke(s->b, lease);
}

/* -------------------------------------------------- timers: housekeeping */

/* The loop's own operations, whose failures make an outage. */
enum store_op { OP_RENEW = 1, OP_REAP = 2, OP_WATCH = 4 };

static const char *op_name(enum store_op op)
{
	return op == OP_RENEW ? "renewing a lease" : op == OP_REAP ? "reaping leases" : "watching";
}

/* Track the store's availability as the loop's own operations see it, so
 * that an outage is logged once when it begins and once when it ends, not
 * at every retry.  An outage lasts while any kind of operation that failed
 * has not succeeded since (a locked sqlite file still lets watches read,
 * but not leases renew).  rc: the operation's result; -ENOENT and -ESTALE
 * are answers, so the store is up.  Returns rc. */
static int note_health(struct store *s, int rc, enum store_op op)
{
	/* Held by another process: not an outage unless it lasts (a process
	 * hung holding the store, a sqlite transaction left open). */
	uint64_t *busy = &s->busy_since_ms[__builtin_ctz(op)];
	if (rc == -EBUSY) {
		uint64_t now = mono_ms();
		if (!*busy)
			*busy = now;
		if (now - *busy < BUSY_OUTAGE_MS)
			return rc;
	} else {
		*busy = 0;
	}
	if (rc == 0 || rc == -ENOENT || rc == -ESTALE) {
		if (s->down & op) {
			s->down &= ~op;
			if (!s->down)
				LOG_WARN("store", "%s is back after %.1f s", s->url,
					 (double)(mono_ms() - s->down_since_ms) / 1000);
		}
		return rc;
	}
	if (!s->down) {
		s->down_since_ms = mono_ms();
		LOG_ERROR("store", "%s is unavailable (%s: %s); serving on with what we know "
			  "and retrying", s->url, op_name(op), err_msg());
	}
	s->down |= op;
	return rc;
}

static void housekeeping(evutil_socket_t fd, short what, void *arg);

/* (Re)arm the housekeeping timer: watch polls and lease reaping. */
static void arm_timer(struct store *s, int64_t delay_ms)
{
	if (!s->base || (!s->nwatches && !s->nrenews))
		return;
	if (!s->timer) {
		s->timer = evtimer_new(s->base, housekeeping, s);
		if (!s->timer) {
			LOG_ERROR("store", "cannot create a timer: watches stop");
			return;
		}
	}
	if (delay_ms < 0)
		delay_ms = s->nwatches ? WATCH_POLL_MS : REAP_MS;
	struct timeval tv = { (time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000 };
	evtimer_add(s->timer, &tv);
}

static void renew_gone(struct store *s, struct store_renew *r);

static void renew_tick(evutil_socket_t fd, short what, void *arg)
{
	struct store_renew *r = arg;
	struct store *s = r->s;
	(void)fd;
	(void)what;

	int rc = note_health(s, renew_now(s, r->lease), OP_RENEW);
	if (rc != -ENOENT && (rc < 0) != r->retrying) {
		/* Failing, retry every REAP_MS rather than every TTL/3: once the
		 * store is back the lease is renewed before it can be reaped. */
		int64_t ms = rc < 0 && r->every_ms > REAP_MS ? REAP_MS : r->every_ms;
		struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
		r->retrying = rc < 0;
		event_add(r->ev, &tv);
	}
	if (rc == 0) {
		r->last_ms = mono_ms();
		return;
	}
	if (rc != -ENOENT)
		return;		/* retried at the next tick */
	renew_gone(s, r);
}

/* Its lease is gone: stop renewing it and tell its owner. */
static void renew_gone(struct store *s, struct store_renew *r)
{
	LOG_WARN("store", "lease %016llx is gone (expired or revoked)",
		 (unsigned long long)r->lease);
	void (*lost)(void *) = r->lost;
	void *larg = r->arg;
	for (size_t i = 0; i < s->nrenews; i++) {
		if (s->renews[i] == r) {
			renew_remove(s, i);
			break;
		}
	}
	if (lost) {
		s->delivering++;
		lost(larg);
		s->delivering--;
		if (s->closing && !s->delivering)
			store_free_now(s);
	}
}

int store_lease_check(struct store *s, int64_t lease)
{
	for (size_t i = 0; i < s->nrenews; i++) {
		struct store_renew *r = s->renews[i];
		if (r->lease != lease)
			continue;
		int rc = s->ops->lease_keepalive(s->b, lease);
		if (rc == 0)
			r->last_ms = mono_ms();
		else if (rc == -ENOENT)
			renew_gone(s, r);
		return rc;
	}
	return store_lease_keepalive(s, lease);
}

int store_lease_autorenew(struct store *s, int64_t lease,
			  void (*lost)(void *arg), void *arg)
{
	int64_t ttl;

	if (!s->base)
		return err_set(-EINVAL, "store: lease auto-renewal needs an event loop");
	if (lease <= 0)
		return err_set(-EINVAL, "store: bad lease id %lld", (long long)lease);
	for (size_t i = 0; i < s->nrenews; i++)
		if (s->renews[i]->lease == lease)
			return 0;
	int rc = s->ops->lease_ttl(s->b, lease, &ttl);
	if (rc < 0)
		return rc;
	struct store_renew *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->lease = lease;
	r->ttl_ms = ttl;
	r->lost = lost;
	r->arg = arg;
	r->ev = event_new(s->base, -1, EV_PERSIST, renew_tick, r);
	if (!r->ev) {
		free(r);
		return err_set(-ENOMEM, "store: cannot create a timer");
	}
	int64_t every = ttl / 3 > RENEW_MIN_MS ? ttl / 3 : RENEW_MIN_MS;
	r->every_ms = every;
	r->last_ms = mono_ms();
	struct timeval tv = { (time_t)(every / 1000), (suseconds_t)(every % 1000) * 1000 };
	event_add(r->ev, &tv);
	s->renews = xrealloc(s->renews, (s->nrenews + 1) * sizeof(*s->renews));
	s->renews[s->nrenews++] = r;
	if (!s->timer || !evtimer_pending(s->timer, NULL))
		arm_timer(s, REAP_MS);	/* reap while we hold a lease */
	return 0;
}

/* ------------------------------------------------------------- watches */

static size_t known_find(const struct store_watch *w, const char *key, int *found)
{
	size_t lo = 0, hi = w->nknown;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(w->known[mid].key, key);
		if (c == 0) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

static void known_set(struct store_watch *w, const char *key, int64_t rev)
{
	int found;
	size_t i = known_find(w, key, &found);
	if (found) {
		w->known[i].rev = rev;
		return;
	}
	if (w->nknown == w->known_cap) {
		w->known_cap = w->known_cap ? w->known_cap * 2 : 16;
		w->known = xrealloc(w->known, w->known_cap * sizeof(*w->known));
	}
	memmove(&w->known[i + 1], &w->known[i], (w->nknown - i) * sizeof(*w->known));
	w->known[i].key = xstrdup(key);
	w->known[i].rev = rev;
	w->nknown++;
}

static void known_del(struct store_watch *w, const char *key)
{
	int found;
	size_t i = known_find(w, key, &found);
	if (!found)
		return;
	free(w->known[i].key);
	memmove(&w->known[i], &w->known[i + 1], (w->nknown - i - 1) * sizeof(*w->known));
	w->nknown--;
}

/* Call the watch function; returns 0 to go on, -1 if the watch or the
 * store went away meanwhile. */
static int deliver(struct store_watch *w, enum store_event_type type,
		   const char *key, const char *value, size_t len,
		   int64_t lease, int64_t rev)
{
	struct store_event ev;
	memset(&ev, 0, sizeof(ev));
	ev.type = type;
	ev.kv.key = (char *)key;
	ev.kv.value = (char *)(value ? value : "");
	ev.kv.len = value ? len : 0;
	ev.kv.lease = lease;
	ev.kv.mod_revision = rev;
	if (type == STORE_EV_SYNCED) {
		memset(&ev.kv, 0, sizeof(ev.kv));
	}
	w->s->delivering++;
	w->fn(&ev, w->arg);
	w->s->delivering--;
	return w->dead || w->s->closing ? -1 : 0;
}

static int by_mod_rev(const void *a, const void *b)
{
	int64_t x = ((const struct store_kv *)a)->mod_revision;
	int64_t y = ((const struct store_kv *)b)->mod_revision;
	return x < y ? -1 : x > y;
}

/* The feed was compacted past this watch's cursor: list again and tell
 * the caller what changed, as puts in revision order, then deletes. */
static void resnapshot(struct store_watch *w)
{
	struct store *s = w->s;
	struct store_kv *kvs;
	size_t n;
	int64_t rev;

	if (w->cursor) {
		s->ops->cursor_close(s->b, w->cursor);
		w->cursor = NULL;
	}
	/* Failing, the watch keeps what it delivered and tries again. */
	int (*list)(struct store_backend *, const char *, struct store_kv **, size_t *,
		    int64_t *) = s->ops->list_nb ? s->ops->list_nb : s->ops->list;
	if (note_health(s, list(s->b, w->prefix, &kvs, &n, &rev), OP_WATCH) < 0)
		return;
	if (s->ops->cursor_open(s->b, w->prefix, rev, &w->cursor) < 0) {
		LOG_WARN("store", "watch %s: %s", w->prefix, err_msg());
		w->cursor = NULL;
		store_kvs_free(kvs, n);
		return;
	}
	LOG_DEBUG("store", "watch '%s' fell behind a compaction: re-snapshot at %lld",
		  w->prefix, (long long)rev);
	w->rev = rev;

	/* Deleted: known but absent now (kvs and known are both sorted). */
	char **gone = NULL;
	size_t ngone = 0, j = 0;
	for (size_t i = 0; i < w->nknown; i++) {
		while (j < n && strcmp(kvs[j].key, w->known[i].key) < 0)
			j++;
		if (j < n && !strcmp(kvs[j].key, w->known[i].key))
			continue;
		gone = xrealloc(gone, (ngone + 1) * sizeof(*gone));
		gone[ngone++] = xstrdup(w->known[i].key);
	}
	/* Changed or new. */
	struct store_kv *changed = xcalloc(n ? n : 1, sizeof(*changed));
	size_t nchanged = 0;
	for (size_t i = 0; i < n; i++) {
		int found;
		size_t k = known_find(w, kvs[i].key, &found);
		if (found && w->known[k].rev == kvs[i].mod_revision)
			continue;
		changed[nchanged++] = kvs[i];
	}
	qsort(changed, nchanged, sizeof(*changed), by_mod_rev);

	int stop = 0;
	for (size_t i = 0; i < nchanged && !stop; i++) {
		known_set(w, changed[i].key, changed[i].mod_revision);
		stop = deliver(w, STORE_EV_PUT, changed[i].key, changed[i].value,
			       changed[i].len, changed[i].lease,
			       changed[i].mod_revision) < 0;
	}
	for (size_t i = 0; i < ngone && !stop; i++) {
		known_del(w, gone[i]);
		stop = deliver(w, STORE_EV_DELETE, gone[i], NULL, 0, 0, rev) < 0;
	}
	for (size_t i = 0; i < ngone; i++)
		free(gone[i]);
	free(gone);
	free(changed);
	store_kvs_free(kvs, n);
}

static void watch_poll(struct store_watch *w)
{
	struct store *s = w->s;

	if (!w->synced) {
		for (size_t i = 0; i < w->npending; i++) {
			struct store_kv *kv = &w->pending[i];
			if (deliver(w, STORE_EV_PUT, kv->key, kv->value, kv->len,
				    kv->lease, kv->mod_revision) < 0)
				return;
		}
		store_kvs_free(w->pending, w->npending);
		w->pending = NULL;
		w->npending = 0;
		w->synced = 1;
		if (deliver(w, STORE_EV_SYNCED, NULL, NULL, 0, 0, 0) < 0)
			return;
	}
	if (!w->cursor) {
		resnapshot(w);
		return;
	}

	struct store_change *ch = NULL;
	size_t n = 0;
	int rc = note_health(s, s->ops->changes(s->b, w->cursor, &ch, &n), OP_WATCH);
	if (rc == -ESTALE) {
		resnapshot(w);
		return;
	}
	if (rc < 0)
		return;		/* polled again at the next tick */
	for (size_t i = 0; i < n; i++) {
		struct store_change *c = &ch[i];
		if (c->rev < w->rev)
			continue;	/* a transaction's changes share a revision */
		w->rev = c->rev;
		if (strncmp(c->key, w->prefix, w->plen))
			continue;
		if (c->type == STORE_EV_PUT) {
			known_set(w, c->key, c->rev);
		} else {
			int found;
			known_find(w, c->key, &found);
			if (!found)
				continue;	/* never told: nothing to delete */
			known_del(w, c->key);
		}
		if (deliver(w, c->type, c->key, c->value, c->len, c->lease, c->rev) < 0)
			break;
	}
	store_changes_free(ch, n);
}

static void reap_dead(struct store *s)
{
	size_t j = 0;
	for (size_t i = 0; i < s->nwatches; i++) {
		if (s->watches[i]->dead)
			watch_free(s->watches[i]);
		else
			s->watches[j++] = s->watches[i];
	}
	s->nwatches = j;
}

static void housekeeping(evutil_socket_t fd, short what, void *arg)
{
	struct store *s = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;

	if (now >= s->next_reap_ms) {
		note_health(s, s->ops->reap(s->b), OP_REAP);
		s->next_reap_ms = now + REAP_MS;
	}
	if (s->ops->generation && s->ops->generation(s->b) != s->generation) {
		/* a store opened anew: renew every lease now (those unknown
		 * there are reported lost and registered again) */
		s->generation = s->ops->generation(s->b);
		for (size_t i = 0; i < s->nrenews; i++)
			event_active(s->renews[i]->ev, EV_TIMEOUT, 0);
	}
	s->delivering++;	/* watches may be unwatched from callbacks */
	for (size_t i = 0; i < s->nwatches && !s->closing; i++)
		if (!s->watches[i]->dead)
			watch_poll(s->watches[i]);
	s->delivering--;
	if (s->closing) {
		store_free_now(s);
		return;
	}
	reap_dead(s);
	arm_timer(s, -1);
}

int store_watch(struct store *s, const char *prefix, store_watch_fn fn,
		void *arg, struct store_watch **out)
{
	struct store_kv *kvs;
	size_t n;
	int64_t rev;
	int rc;

	*out = NULL;
	if (!s->base)
		return err_set(-EINVAL, "store: watches need an event loop");
	if (!fn)
		return err_set(-EINVAL, "store: watch without a callback");
	if ((rc = check_prefix(prefix)) < 0)
		return rc;
	rc = s->ops->list(s->b, prefix, &kvs, &n, &rev);
	if (rc < 0)
		return rc;
	struct store_watch *w = xcalloc(1, sizeof(*w));
	w->s = s;
	w->prefix = xstrdup(prefix);
	w->plen = strlen(prefix);
	w->fn = fn;
	w->arg = arg;
	w->rev = rev;
	rc = s->ops->cursor_open(s->b, prefix, rev, &w->cursor);
	if (rc < 0) {
		store_kvs_free(kvs, n);
		free(w->prefix);
		free(w);
		return rc;
	}
	w->pending = kvs;
	w->npending = n;
	for (size_t i = 0; i < n; i++)
		known_set(w, kvs[i].key, kvs[i].mod_revision);
	s->watches = xrealloc(s->watches, (s->nwatches + 1) * sizeof(*s->watches));
	s->watches[s->nwatches++] = w;
	arm_timer(s, 0);	/* deliver the snapshot from the loop, soon */
	*out = w;
	return 0;
}

void store_unwatch(struct store_watch *w)
{
	if (!w)
		return;
	struct store *s = w->s;
	if (s->delivering) {
		w->dead = 1;
		return;
	}
	for (size_t i = 0; i < s->nwatches; i++) {
		if (s->watches[i] == w) {
			memmove(&s->watches[i], &s->watches[i + 1],
				(s->nwatches - i - 1) * sizeof(*s->watches));
			s->nwatches--;
			break;
		}
	}
	watch_free(w);
}
