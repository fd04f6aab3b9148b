/*
 * fuzz_store_record.c - libFuzzer target for the file store's record
 * parser (store_file_parse_record, store/store_backend.h): any bytes must
 * give a record or an error, never a crash or a read out of bounds; what
 * parses must format back into a line that parses to the same record
 * (and, written as the store writes it, its ending must tell its lease as
 * the parse does); and any key must encode to a safe file name.
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

/* A record as the store writes it: its ending tells its lease, or
 * nothing, never another lease. */
static void check_ending(const struct store_file_rec *rec, const char *buf, size_t n)
{
	for (size_t k = 1; k <= n; k++) {
		int64_t lease = 0;
		int r = store_file_record_lease(buf + n - k, k, &lease);
		if (r && lease != rec->lease)
			abort();
		if (k == n && r != (rec->lease != 0))
			abort();
	}
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
		if (rec.kind == STORE_REC_KEY && sb.len == size && !memcmp(sb.buf, data, size))
			check_ending(&rec, (const char *)data, size);
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
	/* ... and as a file name: decodes to a key or an error, and the key
	 * encodes to a name that decodes to it again */
	char back[300], name[256], redone[300];
	int64_t lease;
	if (store_file_name_key(key, back, sizeof(back)) == 0 &&
	    store_utf8_valid(back, strlen(back)) &&
	    store_file_key_name(back, name, sizeof(name)) == 0 && name[0] != '~' &&
	    (store_file_name_key(name, redone, sizeof(redone)) != 0 || strcmp(redone, back)))
		abort();
	store_file_record_lease((const char *)data, size, &lease);
	free(key);
	return 0;
}
