/*
 * card_fetch.c - read a model file a card names from the store
 * (card_fetch.h).
 */
#include "core/discovery/card_fetch.h"

#include "core/err.h"
#include "core/proto/card.h"
#include "core/strbuf.h"
#include "store/store.h"

int card_fetch_file(struct store *s, const struct card_file *f, struct strbuf *out)
{
	size_t start = out->len;
	struct strbuf key = STRBUF_INIT;
	int rc = 0;

	for (long k = 0; k < f->chunks && rc == 0; k++) {
		struct store_kv kv;
		sb_reset(&key);
		card_chunk_key(f, k, &key);
		rc = store_get(s, key.buf, &kv);
		if (rc == 0) {
			sb_add(out, kv.value, kv.len);
			store_kv_free(&kv);
		}
	}
	sb_release(&key);
	if (rc < 0)
		return err_wrap(rc, "fetching %s", f->name);
	rc = card_file_check(f, out->buf + start, out->len - start);
	if (rc < 0)
		sb_setlen(out, start);
	return rc;
}
