/*
 * card.c - publish, parse and fetch model cards (see card.h).
 */
#include "core/serve/card.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

const char *const card_file_names[CARD_MAX_FILES] = {
	"config.json", "tokenizer.json", "tokenizer_config.json",
	"generation_config.json", "chat_template.jinja",
};

int card_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > CARD_NAME_MAX || name[0] == '/' || name[n - 1] == '/')
		return 0;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		if (*p < 0x21 || *p == 0x7f)
			return 0;
	return 1;
}

static void add_str(struct strbuf *sb, const char *name, const char *v)
{
	sb_addf(sb, ",\"%s\":", name);
	sb_add_json_str(sb, v ? v : "", v ? strlen(v) : 0);
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
		struct card_file *f = &c->files[c->nfiles++];
		snprintf(f->name, sizeof(f->name), "%s", card_file_names[i]);
		f->bytes = data.len;
		f->xxh3 = XXH3_64bits(data.buf, data.len);
		f->chunks = (long)((data.len + CARD_CHUNK - 1) / CARD_CHUNK);
		sb_reset(&key);
		sb_addf(&key, CARD_FILES_ROOT "%016" PRIx64 "/%s/", c->instance_id, f->name);
		free(f->prefix);
		f->prefix = xstrdup(key.buf);
		for (long k = 0; k < f->chunks && rc == 0; k++) {
			sb_setlen(&key, strlen(f->prefix));
			sb_addf(&key, "%04ld", k);
			size_t off = (size_t)k * CARD_CHUNK;
			size_t n = data.len - off < CARD_CHUNK ? data.len - off : CARD_CHUNK;
			rc = store_put(s, key.buf, data.buf + off, n, lease);
		}
	}
	if (rc == 0) {
		sb_adds(&val, "{\"name\":");
		sb_add_json_str(&val, c->name, strlen(c->name));
		add_str(&val, "model", c->model);
		add_str(&val, "namespace", c->ns);
		add_str(&val, "component", c->component);
		add_str(&val, "endpoint", c->endpoint);
		sb_addf(&val, ",\"instance_id\":\"%016" PRIx64 "\"", c->instance_id);
		add_str(&val, "engine", c->engine);
		sb_addf(&val, ",\"context_length\":%ld,\"kv_block_size\":%ld,"
			"\"kv_capacity_blocks\":%ld,\"max_num_seqs\":%ld,\"files\":{",
			c->context_length, c->kv_block_size, c->kv_capacity_blocks,
			c->max_num_seqs);
		for (int i = 0; i < c->nfiles; i++) {
			const struct card_file *f = &c->files[i];
			sb_addf(&val, "%s\"%s\":{\"bytes\":%zu,\"xxh3\":\"%016" PRIx64 "\","
				"\"chunks\":%ld,\"key\":", i ? "," : "", f->name, f->bytes, f->xxh3,
				f->chunks);
			sb_add_json_str(&val, f->prefix, strlen(f->prefix));
			sb_addch(&val, '}');
		}
		sb_adds(&val, "}}");
		sb_reset(&key);
		sb_addf(&key, CARD_KEY_ROOT "%s/%016" PRIx64, c->name, c->instance_id);
		rc = store_put(s, key.buf, val.buf, val.len, lease);
		if (rc == 0 && key_out)
			*key_out = xstrdup(key.buf);
	}
	sb_release(&data);
	sb_release(&key);
	sb_release(&val);
	return rc < 0 ? err_wrap(rc, "publishing model card") : 0;
}

static char *dup_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return xstrdup(cJSON_IsString(v) ? v->valuestring : "");
}

static long get_long(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

void card_clear(struct model_card *c)
{
	free(c->name);
	free(c->model);
	free(c->ns);
	free(c->component);
	free(c->endpoint);
	free(c->engine);
	for (int i = 0; i < CARD_MAX_FILES; i++)
		free(c->files[i].prefix);
	memset(c, 0, sizeof(*c));
}

int card_parse(const char *key, const char *json, size_t len, struct model_card *c)
{
	memset(c, 0, sizeof(*c));
	if (strncmp(key, CARD_KEY_ROOT, strlen(CARD_KEY_ROOT)))
		return err_set(-EINVAL, "%s is not a model card key", key);
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "model card %s is not a JSON object", key);
	}
	c->name = dup_str(root, "name");
	c->model = dup_str(root, "model");
	c->ns = dup_str(root, "namespace");
	c->component = dup_str(root, "component");
	c->endpoint = dup_str(root, "endpoint");
	c->engine = dup_str(root, "engine");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "instance_id");
	c->instance_id = cJSON_IsString(id) ? strtoull(id->valuestring, NULL, 16) : 0;
	c->context_length = get_long(root, "context_length");
	c->kv_block_size = get_long(root, "kv_block_size");
	c->kv_capacity_blocks = get_long(root, "kv_capacity_blocks");
	c->max_num_seqs = get_long(root, "max_num_seqs");
	const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files"), *f;
	cJSON_ArrayForEach(f, files) {
		if (c->nfiles >= CARD_MAX_FILES || !f->string || strlen(f->string) >= 32)
			break;
		struct card_file *cf = &c->files[c->nfiles];
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(f, "key");
		const cJSON *x = cJSON_GetObjectItemCaseSensitive(f, "xxh3");
		if (!cJSON_IsString(k) || !cJSON_IsString(x))
			continue;
		snprintf(cf->name, sizeof(cf->name), "%s", f->string);
		cf->bytes = (size_t)get_long(f, "bytes");
		cf->chunks = get_long(f, "chunks");
		cf->xxh3 = strtoull(x->valuestring, NULL, 16);
		cf->prefix = xstrdup(k->valuestring);
		c->nfiles++;
	}
	cJSON_Delete(root);
	if (!card_name_valid(c->name) || !c->instance_id || !*c->endpoint ||
	    c->context_length <= 0) {
		card_clear(c);
		return err_set(-EINVAL, "model card %s lacks name, instance_id, endpoint or "
			       "context_length", key);
	}
	return 0;
}

const struct card_file *card_file_find(const struct model_card *c, const char *name)
{
	for (int i = 0; i < c->nfiles; i++)
		if (!strcmp(c->files[i].name, name))
			return &c->files[i];
	return NULL;
}

int card_fetch_file(struct store *s, const struct card_file *f, struct strbuf *out)
{
	size_t start = out->len;
	struct strbuf key = STRBUF_INIT;
	int rc = 0;

	for (long k = 0; k < f->chunks && rc == 0; k++) {
		struct store_kv kv;
		sb_reset(&key);
		sb_addf(&key, "%s%04ld", f->prefix, k);
		rc = store_get(s, key.buf, &kv);
		if (rc == 0) {
			sb_add(out, kv.value, kv.len);
			store_kv_free(&kv);
		}
	}
	sb_release(&key);
	if (rc < 0)
		return err_wrap(rc, "fetching %s", f->name);
	if (out->len - start != f->bytes ||
	    XXH3_64bits(out->buf + start, out->len - start) != f->xxh3) {
		sb_setlen(out, start);
		return err_set(-EIO, "model file %s: size or digest does not match its card",
			       f->name);
	}
	return 0;
}
