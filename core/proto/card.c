/*
 * card.c - the model card record: encode, parse, keys (card.h).
 */
#include "core/proto/card.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

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

void card_encode(const struct model_card *c, struct strbuf *out)
{
	sb_adds(out, "{\"name\":");
	sb_add_json_str(out, c->name, strlen(c->name));
	add_str(out, "model", c->model);
	add_str(out, "namespace", c->ns);
	add_str(out, "component", c->component);
	add_str(out, "endpoint", c->endpoint);
	sb_addf(out, ",\"instance_id\":\"%016" PRIx64 "\"", c->instance_id);
	add_str(out, "engine", c->engine);
	if (c->embedding_dim > 0)
		sb_addf(out, ",\"embedding\":{\"dim\":%ld,\"truncatable\":%s}", c->embedding_dim,
			c->embedding_truncatable ? "true" : "false");
	sb_addf(out, ",\"context_length\":%ld,\"kv_block_size\":%ld,"
		"\"kv_capacity_blocks\":%ld", c->context_length, c->kv_block_size,
		c->kv_capacity_blocks);
	if (c->kv_dtype)
		add_str(out, "kv_dtype", c->kv_dtype);
	sb_addf(out, ",\"max_num_seqs\":%ld", c->max_num_seqs);
	if (c->tool_call_parser && *c->tool_call_parser)	/* only when chosen */
		add_str(out, "tool_call_parser", c->tool_call_parser);
	if (c->reasoning_parser && *c->reasoning_parser)
		add_str(out, "reasoning_parser", c->reasoning_parser);
	sb_adds(out, ",\"files\":{");
	for (int i = 0; i < c->nfiles; i++) {
		const struct card_file *f = &c->files[i];
		sb_addf(out, "%s\"%s\":{\"bytes\":%zu,\"xxh3\":\"%016" PRIx64 "\","
			"\"chunks\":%ld,\"key\":", i ? "," : "", f->name, f->bytes, f->xxh3,
			f->chunks);
		sb_add_json_str(out, f->prefix, strlen(f->prefix));
		sb_addch(out, '}');
	}
	sb_adds(out, "}}");
}

void card_key(const struct model_card *c, struct strbuf *out)
{
	sb_addf(out, CARD_KEY_ROOT "%s/%016" PRIx64, c->name, c->instance_id);
}

void card_file_prefix(uint64_t instance_id, const char *file, struct strbuf *out)
{
	sb_addf(out, CARD_FILES_ROOT "%016" PRIx64 "/%s/", instance_id, file);
}

void card_chunk_key(const struct card_file *f, long chunk, struct strbuf *out)
{
	sb_addf(out, "%s%04ld", f->prefix, chunk);
}

int card_file_check(const struct card_file *f, const void *data, size_t len)
{
	if (len != f->bytes || XXH3_64bits(data, len) != f->xxh3)
		return err_set(-EIO, "model file %s: size or digest does not match its card",
			       f->name);
	return 0;
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
	free(c->kv_dtype);
	free(c->tool_call_parser);
	free(c->reasoning_parser);
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
	const cJSON *kvd = cJSON_GetObjectItemCaseSensitive(root, "kv_dtype");
	c->kv_dtype = cJSON_IsString(kvd) ? xstrdup(kvd->valuestring) : NULL;
	c->tool_call_parser = dup_str(root, "tool_call_parser");
	c->reasoning_parser = dup_str(root, "reasoning_parser");
	const cJSON *emb = cJSON_GetObjectItemCaseSensitive(root, "embedding");
	c->embedding_dim = get_long(emb, "dim");
	c->embedding_truncatable = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(emb, "truncatable"));
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
