/*
 * endpoint.c - instance records in the store: serving (register under
 * the process lease, deregister on shutdown) and discovery (list / watch
 * and pick).  See endpoint.h.
 */
#include "net/endpoint.h"
#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define LOG_MOD "endpoint"

int endpoint_name_valid(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return n >= 1 && n <= ENDPOINT_NAME_MAX;
}

int endpoint_path_parse(const char *path, int min_parts,
			char ns[ENDPOINT_NAME_MAX + 1], char comp[ENDPOINT_NAME_MAX + 1],
			char ep[ENDPOINT_NAME_MAX + 1], int *nparts)
{
	char *parts[3] = { ns, comp, ep };
	const char *p = path;
	int n = 0;

	ns[0] = comp[0] = ep[0] = '\0';
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		if (n == 3 || len == 0 || len > ENDPOINT_NAME_MAX)
			goto bad;
		memcpy(parts[n], p, len);
		parts[n][len] = '\0';
		if (!endpoint_name_valid(parts[n]))
			goto bad;
		n++;
		if (!slash)
			break;
		p = slash + 1;	/* a trailing slash ("ns/") is fine */
	}
	if (n < min_parts)
		goto bad;
	if (nparts)
		*nparts = n;
	return 0;
bad:
	ns[0] = comp[0] = ep[0] = '\0';
	return err_set(-EINVAL, "bad endpoint path '%s' (expected %s; names of "
		       "[A-Za-z0-9_.-], at most %d characters)", path,
		       min_parts >= 3 ? "NAMESPACE/COMPONENT/ENDPOINT"
				      : "NAMESPACE[/COMPONENT[/ENDPOINT]]",
		       ENDPOINT_NAME_MAX);
}

void endpoint_prefix(struct strbuf *out, const char *ns, const char *comp, const char *ep)
{
	sb_adds(out, ENDPOINT_KEY_ROOT);
	if (!ns || !*ns)
		return;
	sb_addf(out, "%s/", ns);
	if (!comp || !*comp)
		return;
	sb_addf(out, "%s/", comp);
	if (!ep || !*ep)
		return;
	sb_addf(out, "%s/", ep);
}

/* ---- records ----------------------------------------------------------- */

static char *json_string(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	return cJSON_IsString(v) && v->valuestring ? xstrdup(v->valuestring) : NULL;
}

void endpoint_instance_clear(struct endpoint_instance *inst)
{
	free(inst->ns);
	free(inst->component);
	free(inst->endpoint);
	free(inst->address);
	free(inst->transport);
	free(inst->metadata);
	free(inst->key);
	free(inst->path);
	memset(inst, 0, sizeof(*inst));
}

/* Is c allowed in a host name or IPv4 address of an instance record? */
static int host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '-' || c == '_';
}

int endpoint_address_valid(const char *address)
{
	const char *colon = strrchr(address, ':');
	if (!colon || colon == address)
		return 0;
	/* Port: 1-5 decimal digits, 1-65535 (no sign, space or leading
	 * characters that strtol would forgive). */
	const char *port = colon + 1;
	size_t plen = strlen(port);
	long p = 0;
	if (plen < 1 || plen > 5)
		return 0;
	for (size_t i = 0; i < plen; i++) {
		if (port[i] < '0' || port[i] > '9')
			return 0;
		p = p * 10 + (port[i] - '0');
	}
	if (p < 1 || p > 65535)
		return 0;
	size_t hlen = (size_t)(colon - address);
	if (address[0] == '[') {
		/* "[V6]:PORT", optionally with a zone ("[fe80::1%eth0]:PORT") */
		char v6[INET6_ADDRSTRLEN];
		if (hlen < 3 || address[hlen - 1] != ']')
			return 0;
		const char *h = address + 1;
		size_t n = hlen - 2;
		const char *pct = memchr(h, '%', n);
		size_t alen = pct ? (size_t)(pct - h) : n;
		if (alen == 0 || alen >= sizeof(v6))
			return 0;
		if (pct) {
			size_t zlen = n - alen - 1;
			if (zlen == 0 || zlen > 64)
				return 0;
			for (size_t i = 0; i < zlen; i++)
				if (!host_char(pct[1 + i]))
					return 0;
		}
		memcpy(v6, h, alen);
		v6[alen] = '\0';
		struct in6_addr a6;
		return inet_pton(AF_INET6, v6, &a6) == 1;
	}
	/* A host name or IPv4 address; a bare IPv6 address is ambiguous
	 * ("::1:80") and must be bracketed. */
	if (hlen > ENDPOINT_HOST_MAX)
		return 0;
	for (size_t i = 0; i < hlen; i++)
		if (!host_char(address[i]))
			return 0;
	return 1;
}

int endpoint_instance_parse(const char *key, const char *json, size_t len,
			    struct endpoint_instance *out)
{
	memset(out, 0, sizeof(*out));
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "instance record %s: not a JSON object", key);
	}
	out->key = xstrdup(key);
	out->ns = json_string(root, "namespace");
	out->component = json_string(root, "component");
	out->endpoint = json_string(root, "endpoint");
	out->address = json_string(root, "address");
	out->transport = json_string(root, "transport");
	char *id = json_string(root, "instance_id");
	const cJSON *pid = cJSON_GetObjectItemCaseSensitive(root, "pid");
	const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "metadata");
	int rc = 0;
	char *end = NULL;

	if (!out->ns || !out->component || !out->endpoint || !out->address || !id) {
		rc = err_set(-EINVAL, "instance record %s: lacks namespace, component, "
			     "endpoint, address or instance_id (as strings)", key);
		goto done;
	}
	if (!endpoint_address_valid(out->address)) {
		rc = err_set(-EINVAL, "instance record %s: bad address '%.300s' (expected "
			     "HOST:PORT or [IPV6]:PORT, port 1-65535)", key, out->address);
		goto done;
	}
	if (!endpoint_name_valid(out->ns) || !endpoint_name_valid(out->component) ||
	    !endpoint_name_valid(out->endpoint)) {
		rc = err_set(-EINVAL, "instance record %s: bad endpoint name '%.70s/%.70s/%.70s' "
			     "(names of [A-Za-z0-9_.-], 1-%d characters)", key, out->ns,
			     out->component, out->endpoint, ENDPOINT_NAME_MAX);
		goto done;
	}
	/* 1-16 hex digits exactly: strtoull alone would also take a sign,
	 * spaces or "0x". */
	size_t idlen = strspn(id, "0123456789abcdefABCDEF");
	if (idlen == 0 || idlen > 16 || id[idlen]) {
		rc = err_set(-EINVAL, "instance record %s: bad instance_id '%.40s'", key, id);
		goto done;
	}
	out->id = strtoull(id, &end, 16);
	if (!out->transport)
		out->transport = xstrdup("tcp");
	/* Informational only; anything but a plausible pid counts as unknown
	 * (and a huge double must not reach the cast). */
	out->pid = cJSON_IsNumber(pid) && pid->valuedouble >= 1 && pid->valuedouble <= INT_MAX
			   ? (long)pid->valuedouble : 0;
	if (cJSON_IsObject(meta)) {
		char *m = cJSON_PrintUnformatted(meta);
		out->metadata = xstrdup(m ? m : "{}");
		free(m);
	} else {
		out->metadata = xstrdup("{}");
	}
	struct strbuf path = STRBUF_INIT;
	sb_addf(&path, "%s/%s/%s", out->ns, out->component, out->endpoint);
	out->path = sb_detach(&path, NULL);
done:
	free(id);
	cJSON_Delete(root);
	if (rc < 0)
		endpoint_instance_clear(out);
	return rc;
}

/* ---- serving ----------------------------------------------------------- */

struct endpoint_service {
	struct runtime *rt;
	char *key, *value;
	uint64_t id;
	int registered;
};

static uint64_t random_id(void)
{
	uint64_t v = 0;
	if (getrandom(&v, sizeof(v), 0) != sizeof(v))
		v = mono_ns() ^ ((uint64_t)getpid() << 32);
	return v ? v : 1;
}

static void deregister_hook(void *arg)
{
	endpoint_service_deregister(arg);
}

/* The lease was lost and replaced: the same record under the new one. */
static void reregister_hook(void *arg)
{
	struct endpoint_service *e = arg;
	if (!e->registered || !e->rt->store)
		return;
	if (store_put(e->rt->store, e->key, e->value, strlen(e->value), e->rt->lease) < 0)
		LOG_WARN(LOG_MOD, "registering %s again: %s", e->key, err_msg());
	else
		LOG_INFO(LOG_MOD, "registered %s again", e->key);
}

int endpoint_serve(struct runtime *rt, struct rpc_server *srv, const char *ns,
		   const char *comp, const char *ep, rpc_handler_fn fn, void *arg,
		   const char *metadata, struct endpoint_service **out)
{
	char name[3 * (ENDPOINT_NAME_MAX + 1)];
	int rc;

	if (!endpoint_name_valid(ns) || !endpoint_name_valid(comp) || !endpoint_name_valid(ep))
		return err_set(-EINVAL, "bad endpoint %s/%s/%s (names of [A-Za-z0-9_.-], "
			       "1-%d characters)", ns, comp, ep, ENDPOINT_NAME_MAX);
	if (!rt->store)
		return err_set(-EINVAL, "cannot register %s/%s/%s: no store open", ns, comp, ep);
	if (rpc_server_port(srv) <= 0)
		return err_set(-EINVAL, "cannot register %s/%s/%s: server is not listening",
			       ns, comp, ep);
	if (!endpoint_address_valid(rpc_server_address(srv)))
		return err_set(-EINVAL, "cannot register %s/%s/%s: address '%s' would not be "
			       "usable by clients", ns, comp, ep, rpc_server_address(srv));
	cJSON *meta = NULL;
	if (metadata && *metadata) {
		meta = cJSON_Parse(metadata);
		if (!cJSON_IsObject(meta)) {
			cJSON_Delete(meta);
			return err_set(-EINVAL, "endpoint metadata is not a JSON object: %s",
				       metadata);
		}
	}
	snprintf(name, sizeof(name), "%s/%s/%s", ns, comp, ep);
	rc = rpc_server_handle(srv, name, fn, arg);
	if (rc < 0) {
		cJSON_Delete(meta);
		return rc;
	}

	struct endpoint_service *e = xcalloc(1, sizeof(*e));
	struct strbuf key = STRBUF_INIT, val = STRBUF_INIT;
	e->rt = rt;
	e->id = rt->lease ? (uint64_t)rt->lease : random_id();
	endpoint_prefix(&key, ns, comp, ep);
	sb_addf(&key, "%016" PRIx64, e->id);
	e->key = sb_detach(&key, NULL);

	sb_adds(&val, "{\"namespace\":");
	sb_add_json_str(&val, ns, strlen(ns));
	sb_adds(&val, ",\"component\":");
	sb_add_json_str(&val, comp, strlen(comp));
	sb_adds(&val, ",\"endpoint\":");
	sb_add_json_str(&val, ep, strlen(ep));
	sb_addf(&val, ",\"instance_id\":\"%016" PRIx64 "\",\"address\":", e->id);
	sb_add_json_str(&val, rpc_server_address(srv), strlen(rpc_server_address(srv)));
	sb_addf(&val, ",\"transport\":\"tcp\",\"pid\":%ld,\"metadata\":", (long)getpid());
	if (meta) {
		char *m = cJSON_PrintUnformatted(meta);
		sb_adds(&val, m ? m : "{}");
		free(m);
		cJSON_Delete(meta);
	} else {
		sb_adds(&val, "{}");
	}
	sb_addch(&val, '}');
	rc = store_put(rt->store, e->key, val.buf, val.len, rt->lease);
	e->value = sb_detach(&val, NULL);
	if (rc < 0) {
		rc = err_wrap(rc, "registering %s", e->key);
		free(e->key);
		free(e->value);
		free(e);
		return rc;
	}
	e->registered = 1;
	struct runtime_hooks h = { .stop_accepting = deregister_hook,
				   .lease_renewed = reregister_hook, .arg = e };
	runtime_add_hooks(rt, &h);
	LOG_INFO(LOG_MOD, "serving %s at %s (instance %016" PRIx64 ")", name,
		 rpc_server_address(srv), e->id);
	*out = e;
	return 0;
}

uint64_t endpoint_service_id(const struct endpoint_service *e)
{
	return e->id;
}

const char *endpoint_service_key(const struct endpoint_service *e)
{
	return e->key;
}

int endpoint_service_deregister(struct endpoint_service *e)
{
	if (!e->registered)
		return 0;
	e->registered = 0;
	if (!e->rt->store)
		return 0;
	int rc = store_delete(e->rt->store, e->key);
	if (rc < 0 && rc != -ENOENT) {
		LOG_WARN(LOG_MOD, "deregistering %s: %s", e->key, err_msg());
		return rc;
	}
	LOG_INFO(LOG_MOD, "deregistered %s", e->key);
	return 0;
}

void endpoint_service_free(struct endpoint_service *e)
{
	if (!e)
		return;
	endpoint_service_deregister(e);
	free(e->key);
	free(e->value);
	free(e);
}

/* ---- discovery: one-shot list ------------------------------------------ */

int endpoint_list(struct store *s, const char *path, struct endpoint_instance **out,
		  size_t *n)
{
	char ns[ENDPOINT_NAME_MAX + 1], comp[ENDPOINT_NAME_MAX + 1], ep[ENDPOINT_NAME_MAX + 1];
	struct strbuf prefix = STRBUF_INIT;
	struct store_kv *kvs;
	size_t nkv;
	int rc = endpoint_path_parse(path ? path : "", 0, ns, comp, ep, NULL);

	if (rc < 0)
		return rc;
	endpoint_prefix(&prefix, ns, comp, ep);
	rc = store_list(s, prefix.buf, &kvs, &nkv, NULL);
	sb_release(&prefix);
	if (rc < 0)
		return rc;
	struct endpoint_instance *v = xcalloc(nkv ? nkv : 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < nkv; i++) {
		if (endpoint_instance_parse(kvs[i].key, kvs[i].value, kvs[i].len, &v[k]) < 0) {
			LOG_WARN(LOG_MOD, "skipping malformed %s", err_msg());
			continue;
		}
		k++;
	}
	store_kvs_free(kvs, nkv);
	*out = v;
	*n = k;
	return 0;
}

void endpoint_instances_free(struct endpoint_instance *v, size_t n)
{
	if (!v)
		return;
	for (size_t i = 0; i < n; i++)
		endpoint_instance_clear(&v[i]);
	free(v);
}

/* ---- discovery: live watch --------------------------------------------- */

struct endpoint_watch {
	struct store_watch *watch;
	struct endpoint_watch_cbs cbs;
	void *arg;
	struct endpoint_instance **items;	/* sorted by key */
	size_t n, cap;
	size_t rr;
	uint64_t rng;
	int synced;
};

/* Index of key, or where it would go (*found = 0). */
static size_t watch_search(const struct endpoint_watch *w, const char *key, int *found)
{
	size_t lo = 0, hi = w->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(w->items[mid]->key, key);
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

static void watch_event(const struct store_event *ev, void *arg)
{
	struct endpoint_watch *w = arg;
	int found;
	size_t i;

	switch (ev->type) {
	case STORE_EV_SYNCED:
		w->synced = 1;
		if (w->cbs.synced)
			w->cbs.synced(w->arg);
		return;
	case STORE_EV_PUT: {
		struct endpoint_instance *inst = xcalloc(1, sizeof(*inst));
		if (endpoint_instance_parse(ev->kv.key, ev->kv.value, ev->kv.len, inst) < 0) {
			LOG_WARN(LOG_MOD, "ignoring malformed %s", err_msg());
			free(inst);
			/* A record replaced by a malformed one no longer names a
			 * usable instance: forget the old one, as on a delete. */
			struct store_event del = { .type = STORE_EV_DELETE, .kv = ev->kv };
			watch_event(&del, w);
			return;
		}
		i = watch_search(w, inst->key, &found);
		if (found) {
			endpoint_instance_clear(w->items[i]);
			free(w->items[i]);
			w->items[i] = inst;
		} else {
			if (w->n == w->cap) {
				w->cap = w->cap ? w->cap * 2 : 8;
				w->items = xrealloc(w->items, w->cap * sizeof(*w->items));
			}
			memmove(w->items + i + 1, w->items + i, (w->n - i) * sizeof(*w->items));
			w->items[i] = inst;
			w->n++;
		}
		LOG_DEBUG(LOG_MOD, "instance %016" PRIx64 " of %s at %s %s", inst->id,
			  inst->path, inst->address, found ? "updated" : "added");
		if (w->cbs.added)
			w->cbs.added(inst, w->arg);
		return;
	}
	case STORE_EV_DELETE: {
		i = watch_search(w, ev->kv.key, &found);
		if (!found)
			return;
		struct endpoint_instance *inst = w->items[i];
		memmove(w->items + i, w->items + i + 1, (w->n - i - 1) * sizeof(*w->items));
		w->n--;
		LOG_DEBUG(LOG_MOD, "instance %016" PRIx64 " of %s removed", inst->id, inst->path);
		if (w->cbs.removed)
			w->cbs.removed(inst, w->arg);
		endpoint_instance_clear(inst);
		free(inst);
		return;
	}
	}
}

int endpoint_watch(struct store *s, const char *ns, const char *comp, const char *ep,
		   const struct endpoint_watch_cbs *cbs, void *arg,
		   struct endpoint_watch **out)
{
	if (!endpoint_name_valid(ns) || !endpoint_name_valid(comp) || !endpoint_name_valid(ep))
		return err_set(-EINVAL, "bad endpoint %s/%s/%s", ns, comp, ep);
	struct endpoint_watch *w = xcalloc(1, sizeof(*w));
	struct strbuf prefix = STRBUF_INIT;
	if (cbs)
		w->cbs = *cbs;
	w->arg = arg;
	w->rng = random_id() | 1;
	endpoint_prefix(&prefix, ns, comp, ep);
	int rc = store_watch(s, prefix.buf, watch_event, w, &w->watch);
	sb_release(&prefix);
	if (rc < 0) {
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

void endpoint_watch_free(struct endpoint_watch *w)
{
	if (!w)
		return;
	if (w->watch)
		store_unwatch(w->watch);
	for (size_t i = 0; i < w->n; i++) {
		endpoint_instance_clear(w->items[i]);
		free(w->items[i]);
	}
	free(w->items);
	free(w);
}

int endpoint_watch_synced(const struct endpoint_watch *w)
{
	return w->synced;
}

size_t endpoint_watch_count(const struct endpoint_watch *w)
{
	return w->n;
}

const struct endpoint_instance *endpoint_watch_at(const struct endpoint_watch *w, size_t i)
{
	return i < w->n ? w->items[i] : NULL;
}

const struct endpoint_instance *endpoint_watch_find(const struct endpoint_watch *w,
						    uint64_t id)
{
	for (size_t i = 0; i < w->n; i++)
		if (w->items[i]->id == id)
			return w->items[i];
	return NULL;
}

const struct endpoint_instance *endpoint_watch_pick(struct endpoint_watch *w,
						    enum endpoint_pick how)
{
	if (!w->n)
		return NULL;
	if (how == ENDPOINT_PICK_RANDOM) {
		/* xorshift64 */
		w->rng ^= w->rng << 13;
		w->rng ^= w->rng >> 7;
		w->rng ^= w->rng << 17;
		return w->items[w->rng % w->n];
	}
	return w->items[w->rr++ % w->n];
}
