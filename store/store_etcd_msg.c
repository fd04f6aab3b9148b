/*
 * store_etcd_msg.c - reading the etcd v3 gateway's replies and watch
 * stream (store_etcd_msg.h).  Everything etcd sends is untrusted: each
 * field is type-checked, base64 is decoded strictly, and a message that
 * does not make sense is skipped or ends the stream, never trusted.
 */
#include "store/store_etcd_msg.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ETCD_NOT_FOUND 5		/* gRPC codes in the gateway's errors */
#define ETCD_OUT_OF_RANGE 11
#define ETCD_UNAUTHENTICATED 16

int64_t etcd_jint(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (cJSON_IsString(v))
		return strtoll(v->valuestring, NULL, 10);
	/* a number past int64 (or not finite) would not convert: 0, as absent */
	if (cJSON_IsNumber(v) && fabs(v->valuedouble) < 9.2e18)
		return (int64_t)v->valuedouble;
	return 0;
}

/* Decode a base64 field: 0, or -1 if malformed. */
static int jb64(const cJSON *o, const char *name, struct strbuf *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (!v)
		return 0;	/* proto3 leaves out empty values */
	if (!cJSON_IsString(v))
		return -1;
	return store_b64_decode(v->valuestring, strlen(v->valuestring), out);
}

static char *detach(struct strbuf *sb, size_t *len)
{
	char *s = sb_detach(sb, len);
	return s ? s : xstrdup("");
}

/* A kv of a range or watch reply into out (key, value, lease, revision). */
static int parse_kv(const cJSON *kv, struct store_kv *out)
{
	struct strbuf k = STRBUF_INIT, v = STRBUF_INIT;
	if (!cJSON_IsObject(kv) || jb64(kv, "key", &k) < 0 || jb64(kv, "value", &v) < 0 ||
	    !k.len || memchr(k.buf, 0, k.len)) {
		sb_release(&k);
		sb_release(&v);
		return err_set(-EIO, "etcd sent a malformed key/value");
	}
	out->key = detach(&k, NULL);
	out->value = detach(&v, &out->len);
	out->lease = etcd_jint(kv, "lease");
	out->mod_revision = etcd_jint(kv, "mod_revision") - ETCD_REV_BASE;
	return 0;
}

int etcd_parse_kvs(const cJSON *reply, struct store_kv **kvs, size_t *n, int64_t *rev)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(reply, "kvs"), *kv;
	size_t cnt = cJSON_IsArray(arr) ? (size_t)cJSON_GetArraySize(arr) : 0, i = 0;
	struct store_kv *v = xcalloc(cnt ? cnt : 1, sizeof(*v));
	int rc = 0;

	if (arr && !cJSON_IsArray(arr))
		rc = err_set(-EIO, "etcd sent a range reply whose kvs is no list");
	for (kv = cnt ? arr->child : NULL; kv && rc == 0; kv = kv->next)
		if ((rc = parse_kv(kv, &v[i])) == 0)
			i++;
	if (rc < 0) {
		store_kvs_free(v, i);
		return rc;
	}
	if (rev)
		*rev = etcd_jint(cJSON_GetObjectItemCaseSensitive(reply, "header"), "revision") -
		       ETCD_REV_BASE;
	*kvs = v;
	*n = i;
	return 0;
}

int etcd_reply_error(const cJSON *j, long status)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "message");
	if (!cJSON_IsString(m))
		m = cJSON_GetObjectItemCaseSensitive(j, "error");
	const char *msg = cJSON_IsString(m) ? m->valuestring : "no message";
	int code = (int)etcd_jint(j, "code");
	if (code == ETCD_NOT_FOUND)
		return err_set(-ENOENT, "%s", msg);
	if (code == ETCD_OUT_OF_RANGE && strstr(msg, "compacted"))
		return err_set(-ESTALE, "%s", msg);
	if (code == ETCD_UNAUTHENTICATED || strstr(msg, "auth") || strstr(msg, "user name") ||
	    strstr(msg, "permission denied"))
		return err_set(-EACCES, "etcd refuses: %s", msg);
	return err_set(-EIO, "etcd error (HTTP %ld): %s", status, msg);
}

/* ------------------------------------------------------- watches */

void etcd_watch_apply(struct etcd_watch *w, const char *p, size_t len)
{
	cJSON *j = cJSON_ParseWithLength(p, len);
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "result"), *ev;

	if (!cJSON_IsObject(r)) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
		snprintf(w->msg, sizeof(w->msg), "watch: %s",
			 cJSON_IsString(m) ? m->valuestring : "malformed message");
		w->reauth = cJSON_IsString(m) && strstr(m->valuestring, "auth");
		w->restart = 1;
		goto out;
	}
	if (etcd_jint(r, "compact_revision") > 0) {
		w->stale = 1;
		goto out;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "canceled"))) {
		const cJSON *m = cJSON_GetObjectItemCaseSensitive(r, "cancel_reason");
		snprintf(w->msg, sizeof(w->msg), "watch canceled: %s",
			 cJSON_IsString(m) ? m->valuestring : "no reason");
		w->reauth = 1;		/* the likely reason: an invalid token */
		w->restart = 1;		/* etcd keeps the stream open: leave it */
		goto out;
	}
	if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "created")))
		w->down = 0;
	const cJSON *evs = cJSON_GetObjectItemCaseSensitive(r, "events");
	if (!cJSON_IsArray(evs))
		evs = NULL;
	cJSON_ArrayForEach(ev, evs) {
		struct store_kv kv = { 0 };
		if (parse_kv(cJSON_GetObjectItemCaseSensitive(ev, "kv"), &kv) < 0)
			continue;
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(ev, "type");
		struct store_change *c = store_change_push(&w->q, &w->n, &w->cap);
		c->type = cJSON_IsString(t) && !strcmp(t->valuestring, "DELETE") ?
			  STORE_EV_DELETE : STORE_EV_PUT;
		c->key = kv.key;
		c->value = kv.value;
		c->len = kv.len;
		if (c->type == STORE_EV_DELETE) {	/* a delete has no value */
			c->value[0] = '\0';
			c->len = 0;
		}
		c->lease = kv.lease;
		c->rev = kv.mod_revision;
		if (c->rev >= w->next_rev)
			w->next_rev = c->rev + 1;
	}
out:
	cJSON_Delete(j);
}

int etcd_watch_feed(struct etcd_watch *w, struct strbuf *line, const char *p, size_t len,
		    size_t max)
{
	char *nl;
	sb_add(line, p, len);
	while (line->len && (nl = memchr(line->buf, '\n', line->len))) {
		size_t m = (size_t)(nl - line->buf);
		if (m)
			etcd_watch_apply(w, line->buf, m);
		sb_remove(line, 0, m + 1);
	}
	if (line->len <= max)
		return 0;
	sb_reset(line);
	snprintf(w->msg, sizeof(w->msg),
		 "watch: a message of over %zu bytes without its end; restarting the stream",
		 max);
	w->restart = 1;
	return -E2BIG;
}
