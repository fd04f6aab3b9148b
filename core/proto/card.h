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
 * The worker's side (writing them) is core/serve/card_publish.h, the
 * reading side core/discovery/card_fetch.h; this module is the record
 * itself: pure functions, thread-safe.  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_PROTO_CARD_H
#define DYN_PROTO_CARD_H

#include <stddef.h>
#include <stdint.h>

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
	char *kv_dtype;		/* KV cache element type ("f16"); NULL: the
				   engine keeps no KV data (the member is left out) */
	/* the worker's choice of output parsers (core/parse/parse.h: a name
	 * or "auto"; "" or NULL: none), for frontends without their own */
	char *tool_call_parser, *reasoning_parser;
	/* An embedding model ("embedding":{"dim":D,"truncatable":B} in the
	 * record): served on /v1/embeddings only.  embedding_dim 0: a
	 * generative model. */
	long embedding_dim;
	int embedding_truncatable;	/* may its vectors be cut to fewer dims? */
	struct card_file files[CARD_MAX_FILES];
	int nfiles;
};

/* Is name acceptable as a served model name (1-256 bytes, printable,
 * no leading/trailing '/')? */
int card_name_valid(const char *name);

/* Append the card record's JSON (dyn-store(5)). */
void card_encode(const struct model_card *c, struct strbuf *out);
/* Append the card's key: CARD_KEY_ROOT "NAME/INSTANCE". */
void card_key(const struct model_card *c, struct strbuf *out);
/* Append the key prefix of an instance's file: CARD_FILES_ROOT "INSTANCE/FILE/". */
void card_file_prefix(uint64_t instance_id, const char *file, struct strbuf *out);
/* Append the key of a file's chunk: PREFIX "NNNN". */
void card_chunk_key(const struct card_file *f, long chunk, struct strbuf *out);
/* Do len bytes at data match the size and digest f gives?  0, else -EIO. */
int card_file_check(const struct card_file *f, const void *data, size_t len);

/* Decode a card record.  -EINVAL if malformed. */
int card_parse(const char *key, const char *json, size_t len, struct model_card *out);
void card_clear(struct model_card *c);

/* The card's file by name, or NULL. */
const struct card_file *card_file_find(const struct model_card *c, const char *name);

#endif
