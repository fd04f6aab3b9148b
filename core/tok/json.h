/*
 * json.h - a small, fast JSON reader for tokenizer files (core/tok; also
 * used by `dyn tokenize --jsonl` for its surrogateescape input).
 *
 * tokenizer.json files reach 10+ MB (150k-entry vocabularies, 300k merges);
 * a general-purpose DOM with one malloc per node is several times slower
 * than the rest of loading put together.  This reader parses in place: it
 * takes a writable buffer, decodes strings into it (a decoded string is
 * never longer than its escaped form) and allocates nodes from an arena
 * in a handful of large blocks.  Object members keep their file order.
 *
 * Errors name the line and column ("line 3, column 17: expected ',' or
 * '}'"); truncated input says so.  Nesting is limited (TJ_MAX_DEPTH) so a
 * hostile file cannot exhaust the stack.
 *
 * Not thread-safe while parsing; a parsed document is read-only and may
 * be shared.
 */
#ifndef DYN_TOK_JSON_H
#define DYN_TOK_JSON_H

#include <stddef.h>
#include <stdint.h>

#define TJ_MAX_DEPTH 128

enum tj_type { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

struct tj {
	const char *key;	/* member name (object members only), NUL-terminated */
	union {
		const char *s;	/* TJ_STR: decoded bytes, NUL-terminated (may hold NULs) */
		struct tj *kid;	/* TJ_ARR / TJ_OBJ: len children */
		double num;	/* TJ_NUM */
	} u;
	uint32_t klen;		/* key length */
	uint32_t len;		/* string length, or number of children */
	uint32_t type;		/* enum tj_type */
};

struct tj_arena;

struct tj_doc {
	struct tj root;
	struct tj_arena *arena;
};

/* Parse flags. */
#define TJ_SURROGATEESCAPE 1	/* lone \udc80..\udcff decode to raw bytes 0x80..0xff
				 * (Python's surrogateescape); other lone surrogates
				 * decode to U+FFFD.  Without it they are errors. */

/*
 * Parse buf[0..len) in place (buf is modified and must outlive the
 * document; buf[len] need not be NUL).  what names the input in error
 * messages.  Returns 0 or -EINVAL with err_msg() set.
 */
int tok_tj_parse(struct tj_doc *doc, char *buf, size_t len, unsigned flags,
	     const char *what);
void tok_tj_free(struct tj_doc *doc);

/* The member named key of an object, or NULL (also when obj is not an object). */
const struct tj *tok_tj_get(const struct tj *obj, const char *key);
/* Type name for messages: "null", "a string", ... */
const char *tok_tj_type_name(const struct tj *v);
/* Is v a number holding an integer within [lo, hi]? */
int tok_tj_is_int(const struct tj *v, double lo, double hi);

#endif
