/*
 * fuzz_etcd_msg.c - libFuzzer target for the etcd backend's reading of
 * what an etcd (or anything posing as one) sends (store/store_etcd_msg.h):
 * the watch stream fed in pieces of every size, range replies and error
 * replies.  Any bytes must give changes, an error or a restart, never a
 * crash; every queued change is well formed, the resume revision is past
 * every change queued, and the partial-line buffer stays bounded.
 */
#include "core/strbuf.h"
#include "store/store_etcd_msg.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_kv(const char *key, const char *value, size_t len)
{
	if (!key || !*key || !value || value[len] != '\0')
		abort();
}

static void watch(const uint8_t *data, size_t size, size_t step, size_t max)
{
	struct etcd_watch w = { .next_rev = 1 };
	struct strbuf line = STRBUF_INIT;

	for (size_t off = 0; off < size; off += step) {
		size_t n = off + step > size ? size - off : step;
		int rc = etcd_watch_feed(&w, &line, (const char *)data + off, n, max);
		if ((rc != 0 && rc != -E2BIG) || line.len > max || (rc && !w.restart))
			abort();
	}
	for (size_t i = 0; i < w.n; i++) {
		const struct store_change *c = &w.q[i];
		check_kv(c->key, c->value, c->len);
		if ((c->type != STORE_EV_PUT && c->type != STORE_EV_DELETE) ||
		    (c->type == STORE_EV_DELETE && c->len) || w.next_rev <= c->rev)
			abort();
	}
	store_changes_free(w.q, w.n);
	sb_release(&line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	/* The first byte picks how the stream is cut and the line limit. */
	size_t step = (size_t)(data[0] & 0x3f) + 1;
	size_t max = data[0] & 0x40 ? 64 : ETCD_WATCH_LINE_MAX;
	watch(data + 1, size - 1, step, max);

	cJSON *j = cJSON_ParseWithLength((const char *)data + 1, size - 1);
	if (j) {
		struct store_kv *kvs;
		size_t n;
		int64_t rev;
		if (etcd_parse_kvs(j, &kvs, &n, &rev) == 0) {
			for (size_t i = 0; i < n; i++)
				check_kv(kvs[i].key, kvs[i].value, kvs[i].len);
			store_kvs_free(kvs, n);
		}
		int rc = etcd_reply_error(j, 400);
		if (rc != -ENOENT && rc != -ESTALE && rc != -EACCES && rc != -EIO)
			abort();
		cJSON_Delete(j);
	}
	return 0;
}
