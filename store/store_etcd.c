/*
 * store_etcd.c - the etcd v3 backend (store_backend.h), through etcd's
 * JSON gateway (/v3/kv/..., /v3/lease/..., /v3/watch) with libcurl.
 *
 * URL: etcd://HOST:PORT[,HOST:PORT...][?user=U&password=P&ca=FILE&tls=1]
 * (ca= or tls=1: https; user=: etcd authentication, the token refreshed
 * whenever etcd says it is no longer valid).
 *
 * Keys and values travel base64-encoded; int64 fields as JSON strings.
 * Requests go to the current endpoint and fail over to the next one when
 * it does not answer.  Nothing here waits on the network from the event
 * loop's periodic work: each watch cursor has a thread holding a
 * streaming /v3/watch request (resumed at the last revision seen + 1
 * after a reconnect, -ESTALE once etcd says the revision was compacted),
 * and lease renewals from the loop are handed to a keep-alive thread
 * (lease_keepalive_nb).  The synchronous ops (put, get, list, ...) are
 * one round trip; callers keep them off request paths.
 * etcd expires leases itself, so reap() has nothing to do.
 */
#include "store/store_etcd_msg.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define CONNECT_TIMEOUT_MS 1000
#define REQUEST_TIMEOUT_MS 3000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 2000

struct lease_slot {
	int64_t id;
	int rc;			/* result of the last renewal */
	int pending;		/* queued for the keep-alive thread */
	char msg[256];
};

struct store_backend {
	char **eps;		/* "host:port" */
	size_t neps;
	int https;
	char *ca, *user, *password;

	pthread_mutex_t mu;	/* cur, token */
	size_t cur;		/* the endpoint in use */
	char *token;
	atomic_uint generation;

	CURL *curl;		/* the owner thread's synchronous requests */

	/* keep-alive thread */
	pthread_mutex_t lmu;
	pthread_cond_t lcond;
	pthread_t lthread;
	int lthread_up, lstop;
	struct lease_slot *slots;
	size_t nslots;
};

/* ------------------------------------------------------------ helpers */

static void b64(struct strbuf *sb, const char *p, size_t len)
{
	sb_addch(sb, '"');
	store_b64_encode(sb, (const unsigned char *)p, len);
	sb_addch(sb, '"');
}

/* The end of the range of keys starting with prefix ("" = all keys). */
static void range_end(struct strbuf *sb, const char *prefix)
{
	size_t n = strlen(prefix);
	if (!n) {
		b64(sb, "", 1);		/* "\0": every key */
		return;
	}
	char *e = xstrndup(prefix, n);
	e[n - 1]++;		/* UTF-8 never holds 0xff: no carry */
	b64(sb, e, n);
	free(e);
}

/* ------------------------------------------------------- the URL */

static int parse_params(struct store_backend *b, char *q)
{
	for (char *save = NULL, *p = strtok_r(q, "&", &save); p; p = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(p, '=');
		if (!eq || eq == p)
			return err_set(-EINVAL, "bad parameter '%s' (NAME=VALUE)", p);
		*eq++ = 0;
		char **dst = !strcmp(p, "user") ? &b->user : !strcmp(p, "password") ? &b->password :
			     !strcmp(p, "ca") ? &b->ca : NULL;
		if (dst) {
			free(*dst);
			*dst = xstrdup(eq);
		} else if (!strcmp(p, "tls") && (!strcmp(eq, "0") || !strcmp(eq, "1"))) {
			b->https = *eq == '1';
		} else {
			return err_set(-EINVAL, "unknown parameter '%s' (user, password, ca, tls=0|1)", p);
		}
	}
	if (b->ca)
		b->https = 1;
	if (!b->user != !b->password)
		return err_set(-EINVAL, "user= and password= go together");
	return 0;
}

static int parse_path(const char *path, struct store_backend *b)
{
	char *dup = xstrdup(path);
	char *q = strchr(dup, '?');
	int rc = 0;

	if (q) {
		*q++ = 0;
		rc = parse_params(b, q);
	}
	for (char *rest = dup, *ep; rc == 0 && (ep = strsep(&rest, ","));) {
		char *colon = strrchr(ep, ':'), *end;
		long port = colon ? strtol(colon + 1, &end, 10) : 0;
		if (!colon || colon == ep || !colon[1] || *end || port < 1 || port > 65535 ||
		    strpbrk(ep, "/@ ")) {
			rc = err_set(-EINVAL, "bad endpoint '%s' (HOST:PORT)", ep);
			break;
		}
		b->eps = xrealloc(b->eps, (b->neps + 1) * sizeof(*b->eps));
		b->eps[b->neps++] = xstrdup(ep);
	}
	if (rc == 0 && !b->neps)
		rc = err_set(-EINVAL, "no endpoint (HOST:PORT[,HOST:PORT...])");
	free(dup);
	return rc;
}

static void backend_free(struct store_backend *b)
{
	for (size_t i = 0; i < b->neps; i++)
		free(b->eps[i]);
	free(b->eps);
	free(b->ca);
	free(b->user);
	free(b->password);
	free(b->token);
	free(b->slots);
	if (b->curl)
		curl_easy_cleanup(b->curl);
	pthread_mutex_destroy(&b->mu);
	pthread_mutex_destroy(&b->lmu);
	pthread_cond_destroy(&b->lcond);
	free(b);
}

static struct store_backend *backend_new(void)
{
	struct store_backend *b = xcalloc(1, sizeof(*b));
	pthread_mutex_init(&b->mu, NULL);
	pthread_mutex_init(&b->lmu, NULL);
	pthread_cond_init(&b->lcond, NULL);
	return b;
}

static int etcd_check(const char *path)
{
	struct store_backend *b = backend_new();
	int rc = parse_path(path, b);
	backend_free(b);
	return rc;
}

/* ------------------------------------------------------- requests */

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	sb_add(arg, p, sz * n);
	return sz * n;
}

static size_t current_ep(struct store_backend *b)
{
	pthread_mutex_lock(&b->mu);
	size_t ep = b->cur;
	pthread_mutex_unlock(&b->mu);
	return ep;
}

/* Endpoint ep failed: move on to the next one (unless someone did). */
static void ep_failed(struct store_backend *b, size_t ep)
{
	pthread_mutex_lock(&b->mu);
	if (b->cur == ep && b->neps > 1) {
		b->cur = (ep + 1) % b->neps;
		LOG_WARN("store", "etcd %s does not answer: trying %s", b->eps[ep], b->eps[b->cur]);
	}
	pthread_mutex_unlock(&b->mu);
}

/* Prepare c for a POST of body to path on endpoint ep; the header list
 * returned must be freed after the transfer. */
static struct curl_slist *prepare(struct store_backend *b, CURL *c, size_t ep,
				  const char *path, const char *body, struct strbuf *url)
{
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	sb_reset(url);
	sb_addf(url, "%s://%s/v3/%s", b->https ? "https" : "http", b->eps[ep], path);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url->buf);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPIDLE, 5L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPINTVL, 2L);
	if (b->ca)
		curl_easy_setopt(c, CURLOPT_CAINFO, b->ca);
	pthread_mutex_lock(&b->mu);
	if (b->token) {
		char *hdr = xmalloc(strlen(b->token) + 32);
		sprintf(hdr, "Authorization: %s", b->token);
		h = curl_slist_append(h, hdr);
		free(hdr);
	}
	pthread_mutex_unlock(&b->mu);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	return h;
}

static int post(struct store_backend *b, CURL *c, const char *path, const char *body,
		cJSON **out, int may_auth);

/* Get a new token with the configured user and password. */
static int authenticate(struct store_backend *b, CURL *c)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;
	sb_adds(&body, "{\"name\":");
	sb_add_json_str(&body, b->user, strlen(b->user));
	sb_adds(&body, ",\"password\":");
	sb_add_json_str(&body, b->password, strlen(b->password));
	sb_addch(&body, '}');
	pthread_mutex_lock(&b->mu);
	free(b->token);
	b->token = NULL;
	pthread_mutex_unlock(&b->mu);
	int rc = post(b, c, "auth/authenticate", body.buf, &j, 0);
	sb_release(&body);
	if (rc < 0)
		return rc == -EACCES || rc == -EIO ? err_wrap(-EACCES, "etcd authentication as '%s'",
							     b->user) : rc;
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "token");
	if (!cJSON_IsString(t)) {
		cJSON_Delete(j);
		return err_set(-EACCES, "etcd authentication as '%s': no token (is auth enabled?)",
			       b->user);
	}
	pthread_mutex_lock(&b->mu);
	b->token = xstrdup(t->valuestring);
	pthread_mutex_unlock(&b->mu);
	cJSON_Delete(j);
	return 0;
}

/* POST body to /v3/path, failing over across endpoints; *out = the JSON
 * reply.  An expired token is renewed once (may_auth). */
static int post(struct store_backend *b, CURL *c, const char *path, const char *body,
		cJSON **out, int may_auth)
{
	struct strbuf url = STRBUF_INIT, reply = STRBUF_INIT;
	char why[CURL_ERROR_SIZE + 64] = "";
	int rc = -EIO;

	*out = NULL;
	for (size_t tries = 0; tries < b->neps; tries++) {
		size_t ep = current_ep(b);
		char cerr[CURL_ERROR_SIZE] = "";
		struct curl_slist *h = prepare(b, c, ep, path, body, &url);
		sb_reset(&reply);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)REQUEST_TIMEOUT_MS);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
		CURLcode cc = curl_easy_perform(c);
		curl_slist_free_all(h);
		if (cc != CURLE_OK) {
			snprintf(why, sizeof(why), "%s: %s", b->eps[ep], *cerr ? cerr :
				 curl_easy_strerror(cc));
			if (cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_PEER_FAILED_VERIFICATION ||
			    cc == CURLE_SSL_CONNECT_ERROR) {
				rc = err_set(-EIO, "etcd %s", why);
				goto out;
			}
			ep_failed(b, ep);
			atomic_fetch_add(&b->generation, 1);
			continue;
		}
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		cJSON *j = reply.len ? cJSON_ParseWithLength(reply.buf, reply.len) : NULL;
		if (!cJSON_IsObject(j)) {
			cJSON_Delete(j);
			rc = err_set(-EIO, "%s is not an etcd v3 gateway (HTTP %ld to /v3/%s)",
				     b->eps[ep], status, path);
			goto out;
		}
		if (status == 200 && !cJSON_GetObjectItemCaseSensitive(j, "code")) {
			*out = j;
			rc = 0;
			goto out;
		}
		rc = etcd_reply_error(j, status);
		cJSON_Delete(j);
		if (rc == -EACCES && may_auth && b->user) {
			if ((rc = authenticate(b, c)) < 0)
				goto out;
			may_auth = 0;
			tries--;	/* the same endpoint again, with a token */
			continue;
		}
		goto out;
	}
	rc = err_set(-EIO, "no etcd endpoint answers (%s)", why);
out:
	sb_release(&url);
	sb_release(&reply);
	return rc;
}

static int call(struct store_backend *b, const char *path, const struct strbuf *body,
		cJSON **out)
{
	return post(b, b->curl, path, body->buf, out, 1);
}

/* ------------------------------------------------------- open/close */

static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int etcd_open(const char *path, struct store_backend **out)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct store_backend *b = backend_new();
	cJSON *j = NULL;
	int rc;

	pthread_once(&once, curl_init_once);
	if ((rc = parse_path(path, b)) < 0)
		goto fail;
	b->curl = curl_easy_init();
	if (!b->curl) {
		rc = err_set(-ENOMEM, "cannot create a curl handle");
		goto fail;
	}
	if (b->user && (rc = authenticate(b, b->curl)) < 0)
		goto fail;
	/* Is it etcd, and does it let us read? */
	struct strbuf body = STRBUF_INIT;
	sb_adds(&body, "{\"key\":");
	b64(&body, "dyn", 3);
	sb_adds(&body, ",\"count_only\":true}");
	rc = call(b, "kv/range", &body, &j);
	sb_release(&body);
	if (rc == 0 && !cJSON_GetObjectItemCaseSensitive(j, "header"))
		rc = err_set(-EIO, "%s answers but is not etcd v3", b->eps[current_ep(b)]);
	cJSON_Delete(j);
	if (rc < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	backend_free(b);
	return rc;
}

static void etcd_close(struct store_backend *b)
{
	if (b->lthread_up) {
		pthread_mutex_lock(&b->lmu);
		b->lstop = 1;
		pthread_cond_signal(&b->lcond);
		pthread_mutex_unlock(&b->lmu);
		pthread_join(b->lthread, NULL);
	}
	backend_free(b);
}

/* ------------------------------------------------------- key/value */

static void add_put(struct strbuf *sb, const char *key, const void *val, size_t len,
		    int64_t lease)
{
	sb_adds(sb, "{\"key\":");
	b64(sb, key, strlen(key));
	sb_adds(sb, ",\"value\":");
	b64(sb, val, len);
	if (lease)
		sb_addf(sb, ",\"lease\":\"%" PRId64 "\"", lease);
	sb_addch(sb, '}');
}

static int etcd_put(struct store_backend *b, const char *key, const void *val,
		    size_t len, int64_t lease, int create_only)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;
	int rc;

	if (!create_only) {
		add_put(&body, key, val, len, lease);
		rc = call(b, "kv/put", &body, &j);
	} else {
		/* create-if-absent: put only while the key's create revision is 0 */
		sb_adds(&body, "{\"compare\":[{\"key\":");
		b64(&body, key, strlen(key));
		sb_adds(&body, ",\"result\":\"EQUAL\",\"target\":\"CREATE\",\"create_revision\":\"0\"}],"
			"\"success\":[{\"request_put\":");
		add_put(&body, key, val, len, lease);
		sb_adds(&body, "}]}");
		rc = call(b, "kv/txn", &body, &j);
		if (rc == 0 && !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "succeeded")))
			rc = err_set(-EEXIST, "key '%s' exists", key);
	}
	if (rc == -ENOENT)
		rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	cJSON_Delete(j);
	sb_release(&body);
	return rc;
}

/* A range request; the kvs in *kvs (sorted by key: etcd's default). */
static int range(struct store_backend *b, const char *key, int prefix,
		 struct store_kv **kvs, size_t *n, int64_t *rev)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;

	sb_adds(&body, "{\"key\":");
	if (prefix && !*key)
		b64(&body, "", 1);
	else
		b64(&body, key, strlen(key));
	if (prefix) {
		sb_adds(&body, ",\"range_end\":");
		range_end(&body, key);
	}
	sb_addch(&body, '}');
	int rc = call(b, "kv/range", &body, &j);
	sb_release(&body);
	if (rc < 0)
		return rc;
	rc = etcd_parse_kvs(j, kvs, n, rev);
	cJSON_Delete(j);
	return rc;
}

static int etcd_get(struct store_backend *b, const char *key, struct store_kv *out)
{
	struct store_kv *kvs;
	size_t n;
	int rc = range(b, key, 0, &kvs, &n, NULL);
	if (rc < 0)
		return rc;
	if (!n) {
		free(kvs);
		return err_set(-ENOENT, "key '%s' not found", key);
	}
	*out = kvs[0];
	for (size_t i = 1; i < n; i++)
		store_kv_free(&kvs[i]);
	free(kvs);
	return 0;
}

static int etcd_del(struct store_backend *b, const char *key)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;
	sb_adds(&body, "{\"key\":");
	b64(&body, key, strlen(key));
	sb_addch(&body, '}');
	int rc = call(b, "kv/deleterange", &body, &j);
	sb_release(&body);
	if (rc == 0 && etcd_jint(j, "deleted") == 0)
		rc = err_set(-ENOENT, "key '%s' not found", key);
	cJSON_Delete(j);
	return rc;
}

static int etcd_list(struct store_backend *b, const char *prefix,
		     struct store_kv **kvs, size_t *n, int64_t *rev)
{
	return range(b, prefix, 1, kvs, n, rev);
}

/* ------------------------------------------------------- leases */

static int lease_req(struct store_backend *b, CURL *c, const char *path, int64_t lease,
		     cJSON **out)
{
	char body[64];
	snprintf(body, sizeof(body), "{\"ID\":\"%" PRId64 "\"}", lease);
	int rc = post(b, c, path, body, out, 1);
	if (rc == -ENOENT)
		rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	return rc;
}

static int etcd_lease_grant(struct store_backend *b, int64_t ttl_ms, int64_t *lease)
{
	struct strbuf body = STRBUF_INIT;
	cJSON *j = NULL;
	/* etcd counts whole seconds (and raises tiny TTLs to its minimum) */
	sb_addf(&body, "{\"TTL\":\"%" PRId64 "\"}", (ttl_ms + 999) / 1000);
	int rc = call(b, "lease/grant", &body, &j);
	sb_release(&body);
	if (rc == 0) {
		*lease = etcd_jint(j, "ID");
		if (*lease <= 0)
			rc = err_set(-EIO, "etcd granted no lease");
	}
	cJSON_Delete(j);
	return rc;
}

/* One keep-alive round trip on handle c. */
static int keepalive(struct store_backend *b, CURL *c, int64_t lease)
{
	cJSON *j = NULL;
	int rc = lease_req(b, c, "lease/keepalive", lease, &j);
	if (rc == 0) {
		/* a lease that is gone comes back with no TTL */
		const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result");
		if (etcd_jint(r ? r : j, "TTL") <= 0)
			rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	}
	cJSON_Delete(j);
	return rc;
}

static int etcd_lease_keepalive(struct store_backend *b, int64_t lease)
{
	return keepalive(b, b->curl, lease);
}

static void *keepalive_thread(void *arg)
{
	struct store_backend *b = arg;
	CURL *c = curl_easy_init();

	pthread_mutex_lock(&b->lmu);
	while (!b->lstop) {
		struct lease_slot *s = NULL;
		for (size_t i = 0; i < b->nslots && !s; i++)
			if (b->slots[i].pending)
				s = &b->slots[i];
		if (!s) {
			pthread_cond_wait(&b->lcond, &b->lmu);
			continue;
		}
		int64_t id = s->id;
		pthread_mutex_unlock(&b->lmu);
		int rc = c ? keepalive(b, c, id) : err_set(-ENOMEM, "no curl handle");
		pthread_mutex_lock(&b->lmu);
		for (size_t i = 0; i < b->nslots; i++) {
			if (b->slots[i].id != id)
				continue;
			b->slots[i].rc = rc;
			b->slots[i].pending = 0;
			snprintf(b->slots[i].msg, sizeof(b->slots[i].msg), "%s", rc ? err_msg() : "");
		}
	}
	pthread_mutex_unlock(&b->lmu);
	if (c)
		curl_easy_cleanup(c);
	return NULL;
}

/* Queue a renewal for the keep-alive thread; the previous one's result. */
static int etcd_lease_keepalive_nb(struct store_backend *b, int64_t lease)
{
	int rc = 0;
	pthread_mutex_lock(&b->lmu);
	if (!b->lthread_up) {
		if (pthread_create(&b->lthread, NULL, keepalive_thread, b) != 0) {
			pthread_mutex_unlock(&b->lmu);
			return etcd_lease_keepalive(b, lease);
		}
		b->lthread_up = 1;
	}
	size_t i = 0;
	while (i < b->nslots && b->slots[i].id != lease)
		i++;
	if (i == b->nslots) {
		b->slots = xrealloc(b->slots, (b->nslots + 1) * sizeof(*b->slots));
		memset(&b->slots[i], 0, sizeof(b->slots[i]));
		b->slots[i].id = lease;
		b->nslots++;
	}
	struct lease_slot *s = &b->slots[i];
	if (s->rc < 0) {
		rc = err_set(s->rc, "%s", s->msg);
		s->rc = 0;
		if (rc == -ENOENT) {	/* gone: forget it */
			*s = b->slots[--b->nslots];
			pthread_mutex_unlock(&b->lmu);
			return rc;
		}
	}
	if (!s->pending) {
		s->pending = 1;
		pthread_cond_signal(&b->lcond);
	}
	pthread_mutex_unlock(&b->lmu);
	return rc;
}

static int etcd_lease_revoke(struct store_backend *b, int64_t lease)
{
	cJSON *j = NULL;

	pthread_mutex_lock(&b->lmu);	/* renewed no more */
	for (size_t i = 0; i < b->nslots; i++)
		if (b->slots[i].id == lease)
			b->slots[i] = b->slots[--b->nslots];
	pthread_mutex_unlock(&b->lmu);
	int rc = lease_req(b, b->curl, "lease/revoke", lease, &j);
	cJSON_Delete(j);
	return rc;
}

static int etcd_lease_ttl(struct store_backend *b, int64_t lease, int64_t *ttl_ms)
{
	cJSON *j = NULL;
	int rc = lease_req(b, b->curl, "lease/timetolive", lease, &j);
	if (rc == 0) {
		int64_t granted = etcd_jint(j, "grantedTTL");
		if (etcd_jint(j, "TTL") < 0 || granted <= 0)
			rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
		else
			*ttl_ms = granted * 1000;
	}
	cJSON_Delete(j);
	return rc;
}

static int etcd_reap(struct store_backend *b)
{
	(void)b;
	return 0;	/* etcd expires leases itself */
}

/* Bumped at every failover or watch reconnect: the generic layer then
 * renews every lease at once, so one lost meanwhile is found (and its
 * owner registers again) without waiting a renewal period. */
static unsigned etcd_generation(struct store_backend *b)
{
	return atomic_load(&b->generation);
}

/* ------------------------------------------------------- watches */

struct cursor {
	struct store_backend *b;
	char *prefix;
	pthread_t thread;
	CURLM *multi;
	atomic_int stop;

	pthread_mutex_t mu;	/* w */
	struct etcd_watch w;
	struct strbuf line;	/* a partial message of the stream (thread only) */
};

/* The stream: one JSON message per line. */
static size_t on_stream(char *p, size_t sz, size_t n, void *arg)
{
	struct cursor *k = arg;
	size_t len = sz * n;
	pthread_mutex_lock(&k->mu);
	etcd_watch_feed(&k->w, &k->line, p, len, ETCD_WATCH_LINE_MAX);
	int restart = k->w.restart || k->w.stale;
	pthread_mutex_unlock(&k->mu);
	return atomic_load(&k->stop) || restart ? 0 : len;
}

/* Wait ms, or less if the cursor is closed meanwhile. */
static void nap(struct cursor *k, int ms)
{
	uint64_t until = mono_ms() + (uint64_t)ms;
	while (!atomic_load(&k->stop) && mono_ms() < until)
		curl_multi_poll(k->multi, NULL, 0, (int)(until - mono_ms()), NULL);
}

static void *watch_thread(void *arg)
{
	struct cursor *k = arg;
	struct store_backend *b = k->b;
	CURL *c = curl_easy_init();
	struct strbuf url = STRBUF_INIT, body = STRBUF_INIT;
	int backoff = BACKOFF_MIN_MS;

	while (c && !atomic_load(&k->stop)) {
		pthread_mutex_lock(&k->mu);
		int stale = k->w.stale, reauth = k->w.reauth;
		int64_t from = k->w.next_rev;
		k->w.reauth = k->w.restart = 0;
		pthread_mutex_unlock(&k->mu);
		if (stale)
			break;
		if (reauth && b->user)
			authenticate(b, c);
		sb_reset(&body);
		sb_adds(&body, "{\"create_request\":{\"key\":");
		if (*k->prefix)
			b64(&body, k->prefix, strlen(k->prefix));
		else
			b64(&body, "", 1);
		sb_adds(&body, ",\"range_end\":");
		range_end(&body, k->prefix);
		sb_addf(&body, ",\"start_revision\":\"%" PRId64 "\"}}", from + ETCD_REV_BASE);

		size_t ep = current_ep(b);
		struct curl_slist *h = prepare(b, c, ep, "watch", body.buf, &url);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_stream);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
		sb_reset(&k->line);
		curl_multi_add_handle(k->multi, c);
		uint64_t t0 = mono_ms();
		int running = 1;
		CURLcode cc = CURLE_OK;
		while (running && !atomic_load(&k->stop)) {
			curl_multi_perform(k->multi, &running);
			CURLMsg *m;
			int left;
			while ((m = curl_multi_info_read(k->multi, &left)))
				if (m->msg == CURLMSG_DONE)
					cc = m->data.result;
			if (running)
				curl_multi_poll(k->multi, NULL, 0, 1000, NULL);
		}
		curl_multi_remove_handle(k->multi, c);
		curl_slist_free_all(h);
		if (atomic_load(&k->stop))
			break;
		pthread_mutex_lock(&k->mu);
		if (!k->w.stale) {
			if (!k->w.restart)	/* else msg says why */
				snprintf(k->w.msg, sizeof(k->w.msg), "watch stream from etcd %s ended: %s",
					 b->eps[ep], cc ? curl_easy_strerror(cc) : "closed");
			k->w.down = 1;
		}
		stale = k->w.stale;
		pthread_mutex_unlock(&k->mu);
		if (stale)
			break;
		/* A stream that lived a while was fine: reconnect at once,
		 * elsewhere; else wait longer each time. */
		ep_failed(b, ep);
		atomic_fetch_add(&b->generation, 1);
		if (mono_ms() - t0 > 5000)
			backoff = BACKOFF_MIN_MS;
		nap(k, backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
	sb_release(&url);
	sb_release(&body);
	if (c)
		curl_easy_cleanup(c);
	return NULL;
}

static void cursor_free(struct cursor *k)
{
	if (k->multi)
		curl_multi_cleanup(k->multi);
	store_changes_free(k->w.q, k->w.n);
	sb_release(&k->line);
	pthread_mutex_destroy(&k->mu);
	free(k->prefix);
	free(k);
}

static int etcd_cursor_open(struct store_backend *b, const char *prefix, int64_t rev,
			    void **out)
{
	struct cursor *k = xcalloc(1, sizeof(*k));
	k->b = b;
	k->prefix = xstrdup(prefix);
	k->w.next_rev = rev + 1;
	sb_init(&k->line, 0);
	pthread_mutex_init(&k->mu, NULL);
	k->multi = curl_multi_init();
	if (!k->multi || pthread_create(&k->thread, NULL, watch_thread, k) != 0) {
		cursor_free(k);
		return err_set(-ENOMEM, "cannot start a watch thread");
	}
	*out = k;
	return 0;
}

static int etcd_changes(struct store_backend *b, void *cursor, struct store_change **out,
			size_t *n)
{
	struct cursor *k = cursor;
	int rc = 0;
	(void)b;

	pthread_mutex_lock(&k->mu);
	*out = k->w.q;
	*n = k->w.n;
	k->w.q = NULL;
	k->w.n = k->w.cap = 0;
	if (!*n && k->w.stale)
		rc = err_set(-ESTALE, "etcd compacted the watched revisions");
	else if (!*n && k->w.down)
		rc = err_set(-EIO, "%s", k->w.msg);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

static void etcd_cursor_close(struct store_backend *b, void *cursor)
{
	struct cursor *k = cursor;
	(void)b;
	atomic_store(&k->stop, 1);
	curl_multi_wakeup(k->multi);
	pthread_join(k->thread, NULL);
	cursor_free(k);
}

const struct store_backend_ops store_etcd_ops = {
	.scheme = "etcd",
	.check = etcd_check,
	.open = etcd_open,
	.close = etcd_close,
	.put = etcd_put,
	.get = etcd_get,
	.del = etcd_del,
	.list = etcd_list,
	.lease_grant = etcd_lease_grant,
	.lease_keepalive = etcd_lease_keepalive,
	.lease_keepalive_nb = etcd_lease_keepalive_nb,
	.lease_revoke = etcd_lease_revoke,
	.lease_ttl = etcd_lease_ttl,
	.reap = etcd_reap,
	.generation = etcd_generation,
	.cursor_open = etcd_cursor_open,
	.changes = etcd_changes,
	.cursor_close = etcd_cursor_close,
};
