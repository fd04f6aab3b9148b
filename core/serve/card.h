/*
 * card.h - model cards: how a worker tells frontends what it serves.
 *
 * A worker publishes, bound to its process lease (dyn-store(5)):
 *   v1/models/{served name}/{instance id, 16 hex}   the card (JSON)
 *   v1/model-files/{instance id}/{file}/{NNNN}      the files, in chunks
 * The card names the instance's endpoint, its engine limits (context
 * length, KV block size and capacity, max sequences) and, for each of
 * config.json, tokenizer.json, tokenizer_config.json,
 * generation_config.json and chat_template.jinja that exist, its size,
 * XXH3-64 digest, chunk count and key prefix, so that a frontend on
 * another machine needs no shared disk.  Files are chunked because
 * store values are limited to 1 MiB and tokenizer.json files are often
 * larger.
 *
 * Threading: like the store.  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_SERVE_CARD_H
#define DYN_SERVE_CARD_H

#include <stddef.h>
#include <stdint.h>

struct store;
struct strbuf;

#define CARD_KEY_ROOT "v1/models/"
#define CARD_FILES_ROOT "v1/model-files/"
#define CARD_CHUNK (768u << 10)
#define CARD_MAX_FILES 5
#define CARD_NAME_MAX 256

extern const char *const card_file_names[CARD_MAX_FILES];

struct card_file {
	char name[32];		/* "tokenizer.json" */
	size_t bytes;
	uint64_t xxh3;
	long chunks;
	char *prefix;		/* "v1/model-files/ID/tokenizer.json/" */
};

struct model_card {
	char *name;		/* served model name */
	char *model;		/* what the worker loaded (path or hub id) */
	char *ns, *component, *endpoint;
	uint64_t instance_id;
	char *engine;
	long context_length, kv_block_size, kv_capacity_blocks, max_num_seqs;
	struct card_file files[CARD_MAX_FILES];
	int nfiles;
};

/* Is name acceptable as a served model name (1-256 bytes, printable,
 * no leading/trailing '/')? */
int card_name_valid(const char *name);

/* Publish the card c and the files found in dir under lease.  Fills
 * c->files.  *key_out (malloc'd) is the card key. */
int card_publish(struct store *s, int64_t lease, struct model_card *c,
		 const char *dir, char **key_out);

/* Decode a card record.  -EINVAL if malformed. */
int card_parse(const char *key, const char *json, size_t len, struct model_card *out);
void card_clear(struct model_card *c);

/* The card's file by name, or NULL. */
const struct card_file *card_file_find(const struct model_card *c, const char *name);
/* Read a file's chunks from the store into out (appending) and check
 * its size and digest. */
int card_fetch_file(struct store *s, const struct card_file *f, struct strbuf *out);

#endif
