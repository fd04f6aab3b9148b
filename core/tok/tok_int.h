/*
 * tok_int.h - the tokenizer's internal data structures, shared by the
 * files of core/tok (not part of the public API: see tok.h).
 *
 * A struct tok is built once by load.c and then never modified, which is
 * what makes it safe to share between threads.  Strings (token texts,
 * added-token contents) live in one pool (tok->pool) and are referenced
 * by offset and length.
 */
#ifndef DYN_TOK_INT_H
#define DYN_TOK_INT_H

#include "core/tok/tok.h"
#include "core/tok/hash.h"
#include "core/strbuf.h"

#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

struct tj;

/* ---- reading tokenizer.json fields (jget.c) ------------------------------
 * path names the object in messages ("pre_tokenizer.pretokenizers[0]"). */

/* A string member; required: error if missing (else *s = NULL). */
int tok_jget_str(const struct tj *obj, const char *key, const char *path, int required,
	     const char **s, size_t *len);
/* A boolean member (def if missing or null). */
int tok_jget_bool(const struct tj *obj, const char *key, const char *path, int def,
	      int *out);
/* An integer member in [lo, hi] (def if missing or null). */
int tok_jget_int(const struct tj *obj, const char *key, const char *path, long def,
	     long lo, long hi, long *out);
/* The "type" member of a component object. */
int tok_jget_type(const struct tj *obj, const char *path, const char **type);
/* A single character given as a string ("▁"). */
int tok_jget_char(const struct tj *obj, const char *key, const char *path,
	      uint32_t def, uint32_t *out);
/* A {"String": s} or {"Regex": r} pattern: a literal copy in *lit or a
 * compiled regex in *re. */
struct tok_re;
int tok_jget_pattern(const struct tj *obj, const char *key, const char *path,
		 char **lit, size_t *litlen, struct tok_re *re);
/* Build "path.key" / "path[i]" into buf. */
const char *tok_jpath(char *buf, size_t size, const char *path, const char *key, long idx);

/* ---- regex (regex.c): PCRE2 with the semantics of Oniguruma, which HF uses */

struct tok_re {
	pcre2_code *code;	/* Unicode classes of PCRE2's own tables (14.0) */
	int jit;
	/* The same with the classes extended to Unicode 16.0, or NULL when
	 * the pattern has no class that changed.  Slower (the added ranges
	 * are tested one by one), so used only on subjects that hold a
	 * character whose category changed. */
	pcre2_code *code16;
	int jit16;
};

/* Compile an Oniguruma-syntax pattern (as found in tokenizer.json);
 * literal: escape it (a "String" pattern).  Returns 0 or -EINVAL. */
int tok_re_compile(struct tok_re *re, const char *pat, size_t len, int literal);
void tok_re_free(struct tok_re *re);

/* Match iteration with HF's (onig crate's) rules: an empty match right
 * where the previous match ended is skipped.  The subject must be valid
 * UTF-8. */
struct tok_re_iter {
	const struct tok_re *re;
	pcre2_code *code;	/* re->code or re->code16, for this subject */
	int jit;
	const char *s;
	size_t len, pos;
	long last_end;		/* -1: none yet */
	pcre2_match_data *md;
};
void tok_re_iter_init(struct tok_re_iter *it, const struct tok_re *re,
		      pcre2_match_data *md, const char *s, size_t len);
/* 1: a match in [*ms, *me); 0: no more; <0: error (err_msg set). */
int tok_re_next(struct tok_re_iter *it, size_t *ms, size_t *me);

/* ---- Unicode character classes (uni.c), as Rust's char methods ---------- */

int tok_uni_is_whitespace(uint32_t cp);	/* White_Space (char::is_whitespace) */
int tok_uni_is_numeric(uint32_t cp);	/* N* (char::is_numeric) */
int tok_uni_is_punct(uint32_t cp);		/* ASCII punctuation or P* */
int tok_uni_is_word(uint32_t cp);		/* regex crate \w */
int tok_uni_is_other(uint32_t cp);		/* Cc Cf Co Cs (not Cn) */
int tok_uni_is_mark_nonspacing(uint32_t cp);	/* Mn */
/* Append the lowercase of cp (Rust char::to_lowercase). */
void tok_uni_lower(uint32_t cp, struct strbuf *out);

/* ---- normalizers (norm.c) ----------------------------------------------- */

enum norm_type {
	NORM_SEQ, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_LOWER,
	NORM_STRIP, NORM_REPLACE, NORM_PREPEND, NORM_BERT,
};

struct norm {
	enum norm_type type;
	struct norm **kids;	/* NORM_SEQ */
	size_t nkids;
	char *pat;		/* NORM_REPLACE with a String pattern */
	size_t patlen;
	struct tok_re re;	/* NORM_REPLACE with a Regex pattern (code != NULL) */
	char *content;		/* NORM_REPLACE, NORM_PREPEND */
	size_t clen;
	int left, right;	/* NORM_STRIP */
	/* NORM_BERT: the BertNormalizer's steps, in this order */
	int clean_text, chinese, strip_accents, lowercase;
};

int tok_norm_parse(const struct tj *v, const char *path, struct norm **out);
void tok_norm_free(struct norm *n);
/*
 * Normalize in[0..len) (valid UTF-8) into out (reset first).  *at_start
 * says whether the text begins at offset 0 of the original input; it is
 * cleared when normalization removes the leading characters (needed for
 * Metaspace's prepend_scheme "first").  md: scratch match data.
 */
int tok_norm_apply(const struct norm *n, const char *in, size_t len,
	       struct strbuf *out, int *at_start, pcre2_match_data *md);

/* ---- pre-tokenizers (pretok.c) ------------------------------------------ */

enum split_behavior {
	SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
	SPLIT_CONTIGUOUS,
};

enum pretok_type {
	PRE_SEQ, PRE_SPLIT, PRE_BYTELEVEL, PRE_METASPACE, PRE_DIGITS, PRE_PUNCT,
	PRE_WHITESPACE, PRE_WSPLIT, PRE_BERT, PRE_CHARDELIM,
};

struct pretok {
	enum pretok_type type;
	struct pretok **kids;	/* PRE_SEQ */
	size_t nkids;
	struct tok_re re;	/* PRE_SPLIT (regex), PRE_WHITESPACE, PRE_BYTELEVEL use_regex */
	char *lit;		/* PRE_SPLIT with a String pattern */
	size_t litlen;
	enum split_behavior behavior;
	int invert;
	int add_prefix_space, use_regex;	/* PRE_BYTELEVEL */
	uint32_t repl;		/* PRE_METASPACE replacement; PRE_CHARDELIM delimiter */
	int prepend;		/* PRE_METASPACE: 0 never, 1 first, 2 always */
	int split;		/* PRE_METASPACE */
	int individual_digits;	/* PRE_DIGITS */
};

/* A piece of text on its way to the model: text in the encoder's arena. */
struct piece {
	uint32_t off, len;
	int32_t id;		/* >= 0: already a token (an added token) */
	uint32_t at_start;	/* begins at offset 0 of the original input */
};

struct pieces {
	struct piece *v;
	size_t n, alloc;
};

void tok_pieces_push(struct pieces *p, uint32_t off, uint32_t len, int32_t id,
		 uint32_t at_start);

int tok_pretok_parse(const struct tj *v, const char *path, struct pretok **out);
void tok_pretok_free(struct pretok *p);
/* Run p over the pieces in *in (text in *arena), leaving the result in
 * *in; *tmp is scratch.  The arena may grow. */
int tok_pretok_apply(const struct pretok *p, struct strbuf *arena, struct pieces *in,
		 struct pieces *tmp, pcre2_match_data *md);

/* ---- the BPE model (bpe.c) ---------------------------------------------- */

struct bpe {
	struct strmap vocab;	/* token text -> id (texts in tok->pool) */
	uint32_t nvocab;	/* number of entries (HF get_vocab_size) */
	struct pairmap merges;	/* (left id, right id) -> (rank, merged id) */
	char *unk;		/* unk_token text or NULL */
	int fuse_unk, byte_fallback, ignore_merges;
	char *prefix, *suffix;	/* continuing_subword_prefix, end_of_word_suffix */
	size_t prefix_len, suffix_len;
	int32_t byte_ids[256];	/* "<0xXX>" ids for byte fallback, -1 if absent */
	int32_t *char_ids;	/* id of each code point < BPE_DIRECT, -1 = none */
	/* Without a pre-tokenizer, SentencePiece-style text reaches the model
	 * as one long word.  When no token has U+2581 after another
	 * character, no merge can cross the point before a U+2581 that
	 * follows another character, so words are cut there: the result is
	 * the same and short words can be cached. */
	int presplit;
	/* A WordPiece model instead (wordpiece.c): the vocabulary, unk and
	 * prefix above, no merges. */
	int wordpiece;
	size_t max_input_chars;	/* longer words are unk */
	int32_t unk_id;		/* the unk token's id, -1 if not in the vocabulary */
};
#define BPE_DIRECT 0x800

/* Tokenize one word (valid UTF-8, non-empty), appending ids.  cache may
 * be NULL. */
struct tok_cache;
int tok_bpe_word(const struct tok *tok, struct tok_cache *cache, const char *w,
		 size_t len, struct tok_ids *out);

/* The same for the WordPiece model. */
int tok_wordpiece_word(const struct tok *tok, const char *w, size_t len, struct tok_ids *out);

/* ---- per-thread state (tls.c) -------------------------------------------- */

/* A direct-mapped cache of short words' ids, one per (thread, tokenizer):
 * a loaded tokenizer stays immutable and shareable. */
#define TOK_CACHE_SLOTS 4096
#define TOK_CACHE_KEY 58
#define TOK_CACHE_IDS 16

struct tok_cache_slot {
	uint32_t hash;
	uint8_t klen, nids;	/* klen 0: empty */
	char key[TOK_CACHE_KEY];
	int32_t ids[TOK_CACHE_IDS];
};

struct tok_cache {
	uint64_t uid;		/* the tokenizer it belongs to */
	struct tok_cache_slot slot[TOK_CACHE_SLOTS];
};

/* Scratch buffers an encode call reuses on the same thread. */
struct tok_scratch {
	struct strbuf clean, arena;
	struct pieces segs, a, b;
	struct tok_ids ids;
	pcre2_match_data *md;
	int busy;
};

/* This thread's cache for tok. */
struct tok_cache *tok_cache_get(const struct tok *tok);
/* This thread's scratch (NULL if already in use); give it back with
 * tok_scratch_put, which trims buffers that grew very large. */
struct tok_scratch *tok_scratch_get(void);
void tok_scratch_put(struct tok_scratch *s);

/* ---- post-processors (post.c) ------------------------------------------- */

enum post_type { POST_SEQ, POST_TEMPLATE, POST_NOOP };

struct post {
	enum post_type type;
	struct post **kids;
	size_t nkids;
	int32_t *single;	/* POST_TEMPLATE: ids, POST_SEQ_A (-1) for the text */
	size_t nsingle;
};
#define POST_SEQ_A (-1)

int tok_post_parse(const struct tok *tok, const struct tj *v, const char *path,
	       struct post **out);
void tok_post_free(struct post *p);
/* Apply to ids (the encoding of the text) in place. */
void tok_post_apply(const struct post *p, struct tok_ids *ids);

/* ---- decoders (decoder.c) ----------------------------------------------- */

enum dec_type {
	DEC_SEQ, DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK,
	DEC_FUSE, DEC_STRIP, DEC_WORDPIECE,
};

struct dec {
	enum dec_type type;
	struct dec **kids;
	size_t nkids;
	char *pat;		/* DEC_REPLACE (String pattern) */
	size_t patlen;
	struct tok_re re;	/* DEC_REPLACE (Regex pattern) */
	char *content;		/* DEC_REPLACE */
	size_t clen;
	uint32_t ch;		/* DEC_STRIP content; DEC_METASPACE replacement */
	size_t start, stop;	/* DEC_STRIP */
	int prepend;		/* DEC_METASPACE: prepend_scheme != never */
	int cleanup;		/* DEC_WORDPIECE (prefix in content) */
};

int tok_dec_parse(const struct tj *v, const char *path, struct dec **out);
void tok_dec_free(struct dec *d);

/* A list of strings (token texts on their way through the decoders). */
struct strlist {
	struct strbuf text;
	uint32_t *off, *len;
	size_t n, alloc;
};
#define STRLIST_INIT { STRBUF_INIT, NULL, NULL, 0, 0 }
void tok_strlist_reset(struct strlist *l);
void tok_strlist_release(struct strlist *l);
void tok_strlist_push(struct strlist *l, const char *s, size_t len);
/* Run the decoder chain over l (in place; tmp is scratch). */
int tok_dec_apply(const struct dec *d, struct strlist *l, struct strlist *tmp);
/* The byte a ByteFallback token text "<0xXX>" stands for, or -1 (the
 * ByteFallback decoder's own test). */
int tok_dec_fallback_byte(const char *s, size_t n);
/* For the incremental detokenizer: how the chain's ByteFallback step sees
 * tokens.  NONE: there is none.  TOKENS: one, and only per-token steps
 * (Replace, Strip, Metaspace) come before it, so tok_dec_bf_byte() tells
 * which tokens reach it as bytes.  OPAQUE: tokens are joined before it
 * (ByteLevel, Fuse) or there are several. */
enum dec_bf_mode { DEC_BF_NONE, DEC_BF_TOKENS, DEC_BF_OPAQUE };
enum dec_bf_mode tok_dec_bf_mode(const struct dec *d);
/* The byte that token text s becomes at the first ByteFallback step (the
 * steps before it applied to s alone, as the first token of the text or
 * as a later one), or -1 if it is not a byte token there. */
int tok_dec_bf_byte(const struct dec *d, const char *s, size_t n, int first);
/* Does the chain strip characters at the end of the joined text (a Strip
 * with stop > 0 after Fuse or ByteLevel)?  Then what the end of a window
 * decodes to depends on the tokens after it. */
int tok_dec_strips_text_end(const struct dec *d);

/* ---- added tokens (added.c) --------------------------------------------- */

/* Flags per id (tok->id_flags). */
#define TF_ADDED	0x01	/* an added token (tokenizer.json added_tokens) */
#define TF_SPECIAL	0x02	/* its text is a special token's */
#define TF_SINGLE_WORD	0x04
#define TF_LSTRIP	0x08
#define TF_RSTRIP	0x10

struct trie_node {
	int32_t child, sibling;	/* node indexes, -1 = none */
	int32_t id;		/* token id ending here, -1 = none */
	uint8_t byte;
};

struct trie {
	struct trie_node *v;
	size_t n, alloc;
	uint8_t first[256];	/* bytes a pattern can start with */
	int empty;		/* no patterns */
};

void tok_trie_init(struct trie *t);
void tok_trie_free(struct trie *t);
void tok_trie_add(struct trie *t, const char *s, size_t len, int32_t id);

/* The splits of text: added tokens found with trie t (id >= 0) and the
 * text between them (id -1), covering all of text, empty pieces dropped;
 * offsets relative to text, added to base. */
void tok_added_split(const struct tok *tok, const struct trie *t, const char *text,
		 size_t len, uint32_t base, int at_start, struct pieces *out);

/* ---- the tokenizer ------------------------------------------------------- */

struct tok_str {
	uint32_t off, len;	/* in tok->pool; len UINT32_MAX = no token */
};

struct tok {
	char *pool;		/* all token texts */
	size_t pool_len;
	struct tok_str *id2str;	/* nids entries */
	uint8_t *id_flags;	/* TF_* per id */
	uint32_t nids;

	struct bpe bpe;
	struct strmap added;	/* added token text -> id */
	struct trie raw_trie;	/* added tokens with normalized=false */
	struct trie norm_trie;	/* normalized=true, matched on normalized text */
	char *norm_pool;	/* normalized contents for norm_trie */

	struct norm *norm;
	struct pretok *pre;
	struct post *post;
	struct dec *dec;

	int32_t bos_id, eos_id, pad_id, unk_id;
	int add_bos, add_eos;
	uint64_t uid;		/* unique per load (keys the per-thread caches) */
};

/* Text of id (NULL if none). */
static inline const char *tok_str_of(const struct tok *tok, uint32_t id, size_t *len)
{
	if (id >= tok->nids || tok->id2str[id].len == UINT32_MAX)
		return NULL;
	*len = tok->id2str[id].len;
	return tok->pool + tok->id2str[id].off;
}

/* tokenizer_config.json (config.c). */
int tok_config_apply(struct tok *tok, char *json, size_t len, const char *what);

/* The GPT-2 byte <-> unicode mapping (bytelevel.c). */
extern char tok_byte_utf8_tab[256][3];	/* byte -> UTF-8 of its char */
extern uint8_t tok_byte_utf8_len_tab[256];	/* (1 or 2 bytes) */
/* The byte a byte-level char stands for, or -1. */
int tok_char_byte(uint32_t cp);

#endif
