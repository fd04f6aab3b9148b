/*
 * planner_obs.c - frontends and workers' load from the store (planner_obs.h).
 */
#include "cmd/planner_obs.h"
#include "core/discovery/registry.h"
#include "core/err.h"
#include "core/proto/kv_events.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/rpc.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

int planner_frontends(struct store *st, const char *ns, char ***urls, int *n)
{
	struct strbuf prefix = STRBUF_INIT;
	struct store_kv *kvs;
	size_t nkv;
	sb_addf(&prefix, "v1/frontends/%s/", ns);
	int rc = store_list(st, prefix.buf, &kvs, &nkv, NULL);
	sb_release(&prefix);
	if (rc < 0)
		return rc;
	char **v = xcalloc(nkv ? nkv : 1, sizeof(*v));
	int k = 0;
	for (size_t i = 0; i < nkv; i++) {
		cJSON *j = cJSON_ParseWithLength(kvs[i].value, kvs[i].len);
		const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "url");
		if (cJSON_IsString(u))
			v[k++] = xstrdup(u->valuestring);
		cJSON_Delete(j);
	}
	store_kvs_free(kvs, nkv);
	*urls = v;
	*n = k;
	return 0;
}

void planner_urls_free(char **urls, int n)
{
	for (int i = 0; i < n; i++)
		free(urls[i]);
	free(urls);
}

/* Append 'name' to list unless it is there already. */
static void add_name(struct strbuf *list, const char *name)
{
	struct strbuf q = STRBUF_INIT;
	sb_addf(&q, "'%s'", name);
	if (!strstr(list->buf, q.buf))
		sb_addf(list, "%s%s", list->len ? ", " : "", q.buf);
	sb_release(&q);
}

int planner_models(struct store *st, const char *ns, const char *model, struct strbuf *others,
		   int *found)
{
	struct store_kv *kvs;
	size_t nkv;
	*found = 0;
	int rc = store_list(st, "v1/models/", &kvs, &nkv, NULL);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < nkv; i++) {
		cJSON *j = cJSON_ParseWithLength(kvs[i].value, kvs[i].len);
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "name");
		const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "namespace");
		if (cJSON_IsString(n) && cJSON_IsString(s) && !strcmp(s->valuestring, ns)) {
			if (!strcmp(n->valuestring, model))
				*found = 1;
			else
				add_name(others, n->valuestring);
		}
		cJSON_Delete(j);
	}
	store_kvs_free(kvs, nkv);
	return 0;
}

struct ask {
	struct planner_load *out;
	enum disc_role role;
	int *pending;
	struct event_base *base;
};

static void ask_done(struct ask *a)
{
	if (--*a->pending == 0)
		event_base_loopbreak(a->base);
}

static void on_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		    void *arg)
{
	struct ask *a = arg;
	struct kv_msg m;
	(void)flags;
	if (kv_msg_decode(data, len, &m) == 0 && m.has_load) {
		a->out->workers[a->role]++;
		a->out->waiting[a->role] += (double)m.load.waiting;
		a->out->kv_active[a->role] += (double)m.load.active_blocks;
		a->out->kv_total[a->role] += (double)m.load.total_blocks;
	}
	kv_msg_release(&m);
	rpc_stream_cancel(st);	/* one report is all the planner needs */
	ask_done(a);
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	(void)st, (void)data, (void)len, (void)flags;
	ask_done(arg);
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	(void)st, (void)code, (void)msg;
	ask_done(arg);
}

static void on_timeout(evutil_socket_t fd, short what, void *base)
{
	(void)fd, (void)what;
	event_base_loopbreak(base);
}

static enum disc_role meta_role(const char *metadata)
{
	enum disc_role role = DISC_ROLE_AGG;
	cJSON *j = cJSON_Parse(metadata);
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "role");
	if (cJSON_IsString(r) && disc_role_parse(r->valuestring, &role) < 0)
		role = DISC_ROLE_AGG;
	cJSON_Delete(j);
	return role;
}

int planner_worker_load(struct store *s, const char *ns, struct planner_load *out)
{
	static const struct rpc_stream_cbs cbs = { on_data, on_end, on_error };
	struct endpoint_instance *v;
	size_t n;
	memset(out, 0, sizeof(*out));
	int rc = endpoint_list(s, ns, &v, &n);
	if (rc < 0)
		return rc;
	struct event_base *base = event_base_new();
	struct rpc_client *cli;
	struct rpc_client_opts co = { .connect_timeout_ms = PLANNER_LOAD_WAIT_MS };
	rpc_client_new(base, &co, &cli);
	struct ask *asks = xcalloc(n ? n : 1, sizeof(*asks));
	int pending = 0;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v[i].endpoint, "generate"))
			continue;
		struct ask *a = &asks[i];
		char path[3 * (ENDPOINT_NAME_MAX + 1)];
		snprintf(path, sizeof(path), "%s/%s/kv_events", v[i].ns, v[i].component);
		*a = (struct ask){ out, meta_role(v[i].metadata), &pending, base };
		pending++;
		if (rpc_call(cli, v[i].address, path, "{}", 2, 0, &cbs, a, NULL) < 0)
			pending--;
	}
	if (pending) {
		struct timeval tv = { PLANNER_LOAD_WAIT_MS / 1000, PLANNER_LOAD_WAIT_MS % 1000 * 1000 };
		struct event *t = evtimer_new(base, on_timeout, base);
		evtimer_add(t, &tv);
		event_base_dispatch(base);
		event_free(t);
	}
	rpc_client_free(cli);	/* cancels the streams that did not answer */
	event_base_free(base);
	free(asks);
	endpoint_instances_free(v, n);
	return 0;
}
