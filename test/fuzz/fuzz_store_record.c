/*
 * fuzz_store_record.c - libFuzzer target for the file store's record
 * parser (store_file_parse_record, store/store_backend.h): any bytes must
 * give a record or an error, never a crash or a read out of bounds; what
 * parses must format back into a line that parses to the same record;
 * and any key must encode to a safe file name.
 */
#include "core/strbuf.h"
#include "store/store_backend.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void same(const struct store_file_rec *a, const struct store_file_rec *b)
{
	if (a->kind != b->kind || a->rev != b->rev || a->lease != b->lease ||
	    a->ttl_ms != b->ttl_ms || a->expires_ms != b->expires_ms || a->len != b->len)
		abort();
	if ((a->key == NULL) != (b->key == NULL) || (a->key && strcmp(a->key, b->key)))
		abort();
	if ((a->value == NULL) != (b->value == NULL) ||
	    (a->value && memcmp(a->value, b->value, a->len)))
		abort();
}

static void check_name(const char *key)
{
	char name[256];
	if (store_file_key_name(key, name, sizeof(name)) < 0)
		return;
	size_t n = strlen(name);
	if (n == 0 || n > 255 || name[0] == '.' || strchr(name, '/'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct store_file_rec rec, again;

	if (store_file_parse_record((const char *)data, size, &rec) == 0) {
		if ((rec.kind == STORE_REC_PUT || rec.kind == STORE_REC_KEY) &&
		    (!rec.key || !rec.value || rec.value[rec.len] != '\0'))
			abort();
		if (rec.key)
			check_name(rec.key);
		struct strbuf sb = STRBUF_INIT;
		store_file_format_record(&sb, &rec);
		if (!sb.len || sb.buf[sb.len - 1] != '\n' || memchr(sb.buf, '\n', sb.len - 1))
			abort();	/* exactly one line */
		if (store_file_parse_record(sb.buf, sb.len, &again) != 0)
			abort();
		same(&rec, &again);
		store_file_rec_free(&again);
		sb_release(&sb);
		store_file_rec_free(&rec);
	}

	/* The input as a key: an encoded file name is always safe. */
	char *key = malloc(size + 1);
	if (!key)
		return 0;
	memcpy(key, data, size);
	key[size] = '\0';
	if (*key && strlen(key) <= STORE_KEY_MAX && store_utf8_valid(key, strlen(key)))
		check_name(key);
	free(key);
	return 0;
}
