/*
 * card_publish.c - a worker publishes its model card and the model's
 * files, chunked, in the store under its lease (card_publish.h).
 */
#include "core/serve/card_publish.h"

#include "core/err.h"
#include "core/proto/card.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* Read dir/name into f and put its chunks under the instance's prefix. */
static int publish_file(struct store *s, int64_t lease, uint64_t instance_id,
			const struct strbuf *data, const char *name, struct card_file *f)
{
	struct strbuf key = STRBUF_INIT;
	int rc = 0;

	snprintf(f->name, sizeof(f->name), "%s", name);
	f->bytes = data->len;
	f->xxh3 = XXH3_64bits(data->buf, data->len);
	f->chunks = (long)((data->len + CARD_CHUNK - 1) / CARD_CHUNK);
	card_file_prefix(instance_id, f->name, &key);
	free(f->prefix);
	f->prefix = xstrdup(key.buf);
	for (long k = 0; k < f->chunks && rc == 0; k++) {
		sb_reset(&key);
		card_chunk_key(f, k, &key);
		size_t off = (size_t)k * CARD_CHUNK;
		size_t n = data->len - off < CARD_CHUNK ? data->len - off : CARD_CHUNK;
		rc = store_put(s, key.buf, data->buf + off, n, lease);
	}
	sb_release(&key);
	return rc;
}

int card_publish(struct store *s, int64_t lease, struct model_card *c,
		 const char *dir, char **key_out)
{
	struct strbuf data = STRBUF_INIT, key = STRBUF_INIT, val = STRBUF_INIT;
	int rc = 0;

	c->nfiles = 0;
	for (int i = 0; i < CARD_MAX_FILES && rc == 0; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, card_file_names[i]);
		sb_reset(&data);
		if (sb_read_file(&data, path, 256u << 20) < 0) {
			if (i == 0 || i == 1) {
				rc = err_set(-ENOENT, "model card: %s is missing", path);
				break;
			}
			continue;	/* optional file */
		}
		rc = publish_file(s, lease, c->instance_id, &data, card_file_names[i],
				  &c->files[c->nfiles++]);
	}
	if (rc == 0) {
		card_encode(c, &val);
		card_key(c, &key);
		rc = store_put(s, key.buf, val.buf, val.len, lease);
		if (rc == 0 && key_out)
			*key_out = xstrdup(key.buf);
	}
	sb_release(&data);
	sb_release(&key);
	sb_release(&val);
	return rc < 0 ? err_wrap(rc, "publishing model card") : 0;
}
