/*
 * gguf_tok.c - GGUF tokenizer metadata (llama.cpp's tokenizer.ggml.*
 * keys) written out as the tokenizer.json and tokenizer_config.json that
 * describe the same tokenizer, for dyn's tokenizer (core/tok) to load as
 * it loads any Hugging Face tokenizer: one tokenizer engine for both.
 *
 * The two vocabulary models llama.cpp's converter writes:
 *   - "gpt2": byte-level BPE.  tokens (in byte-level form), merges ("a
 *     b"), and tokenizer.ggml.pre naming the pre-tokenizer, which is HF's
 *     for that family (table below).  Tokens of type NORMAL (or BYTE)
 *     form the BPE vocabulary; CONTROL tokens are special added tokens,
 *     USER_DEFINED ones plain added tokens, UNUSED ones (the converter's
 *     [PAD] fillers) nothing.
 *   - "llama": SentencePiece BPE.  tokens and scores, with byte fallback
 *     when there are BYTE tokens.  The merges are made from the scores as
 *     transformers makes them from a tokenizer.model: every split of a
 *     piece into two pieces is a merge, ranked by the piece's score
 *     (highest first), then its id, the lengths of the left and right
 *     pieces in characters and their ids; a SentencePiece BPE merges the
 *     highest-scoring pair first, which is what the ranks say.  (Pieces
 *     over 256 bytes, far beyond SentencePiece's limit, get no merges.)  All
 *     tokens are in the vocabulary; CONTROL and UNKNOWN tokens are also
 *     special added tokens, USER_DEFINED ones plain added tokens.  Text
 *     gets U+2581 for spaces and (add_space_prefix, default on) one in
 *     front, as HF's Llama tokenizer.json does.
 * add_bos_token / add_eos_token (defaults: on for llama, off for gpt2)
 * become the post-processor; bos/eos/unk/padding ids and chat_template
 * go to tokenizer_config.json.
 */
#include "core/model/gguf.h"
#include "core/model/model_int.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN, TT_CONTROL, TT_USER, TT_UNUSED, TT_BYTE };

#define MAX_TOKENS (1u << 24)
/* Pieces longer than this get no merges (SentencePiece's own limit is 16
 * characters; the split search costs the square of the length). */
#define MERGE_MAX_LEN 256

/* HF pre-tokenizers of the "gpt2" families (by tokenizer.ggml.pre). */
#define BYTELEVEL(regex) "{\"type\":\"ByteLevel\",\"add_prefix_space\":false," \
	"\"trim_offsets\":true,\"use_regex\":" regex "}"
static const struct {
	const char *name;
	const char *normalizer;	/* JSON */
	const char *split;	/* a Split regex before a ByteLevel without one, or NULL */
	const char *pre;	/* else: the whole pre-tokenizer, JSON */
	int ignore_merges;
} pres[] = {
	{ "llama-bpe", "null",
	  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
	  "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", NULL, 1 },
	{ "qwen2", "{\"type\":\"NFC\"}",
	  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?"
	  "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", NULL, 0 },
	{ "smollm", "null", NULL,
	  "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
	  "\"individual_digits\":true}," BYTELEVEL("true") "]}", 0 },
	{ "gpt-2", "null", NULL, BYTELEVEL("true"), 0 },
};

struct vocab {
	const struct gguf *g;
	const struct gguf_kv *tokens, *types, *scores, *merges;
	uint32_t n;
	int spm;
	int64_t bos, eos, unk, pad;
	int add_bos, add_eos, add_space;
};

static int type_of(const struct vocab *v, uint32_t id)
{
	return v->types ? (int)gguf_arr_int(v->types, id) : TT_NORMAL;
}

static int in_vocab(const struct vocab *v, uint32_t id)
{
	int t = type_of(v, id);
	return v->spm || t == TT_NORMAL || t == TT_BYTE || t == TT_UNKNOWN;
}

static void add_str(struct strbuf *sb, struct gguf_str s)
{
	sb_add_json_str(sb, s.s, (size_t)s.len);
}

/* ---- SentencePiece merges ------------------------------------------------------ */

/* Token text -> id, open addressing (first id of a text wins). */
struct tokmap {
	int32_t *slot;
	size_t mask;
	const struct gguf_kv *tokens;
};

#define FNV_BASIS 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

static uint64_t hash(const char *s, size_t n)
{
	uint64_t h = FNV_BASIS;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * FNV_PRIME;
	return h;
}

/* The id of s[0..n) whose hash is h, or -1. */
static int32_t tokmap_find(const struct tokmap *m, const char *s, size_t n, uint64_t h)
{
	for (size_t i = h & m->mask;; i = (i + 1) & m->mask) {
		int32_t id = m->slot[i];
		if (id < 0)
			return -1;
		struct gguf_str t = gguf_arr_str(m->tokens, (uint64_t)id);
		if (t.len == n && !memcmp(t.s, s, n))
			return id;
	}
}

static int32_t tokmap_get(const struct tokmap *m, const char *s, size_t n)
{
	return tokmap_find(m, s, n, hash(s, n));
}

static void tokmap_build(struct tokmap *m, const struct gguf_kv *tokens, uint32_t n)
{
	size_t cap = 16;
	while (cap < 2 * (size_t)n)
		cap *= 2;
	m->mask = cap - 1;
	m->tokens = tokens;
	m->slot = xmalloc(cap * sizeof(*m->slot));
	memset(m->slot, 0xff, cap * sizeof(*m->slot));
	for (uint32_t id = 0; id < n; id++) {
		struct gguf_str t = gguf_arr_str(tokens, id);
		if (tokmap_get(m, t.s, (size_t)t.len) >= 0)
			continue;
		size_t i = hash(t.s, (size_t)t.len) & m->mask;
		while (m->slot[i] >= 0)
			i = (i + 1) & m->mask;
		m->slot[i] = (int32_t)id;
	}
}

struct merge {
	int32_t l, r, t;
	float score;
	uint32_t llen, rlen;	/* in characters */
};

static uint32_t utf8_chars(const char *s, size_t n)
{
	uint32_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

static int cmp_merge(const void *a, const void *b)
{
	const struct merge *x = a, *y = b;
	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
#define CMP(f) if (x->f != y->f) return x->f < y->f ? -1 : 1
	CMP(t);
	CMP(llen);
	CMP(rlen);
	CMP(l);
	CMP(r);
#undef CMP
	return 0;
}

static void spm_merges(const struct vocab *v, struct strbuf *out)
{
	struct tokmap map;
	struct merge *m = NULL;
	size_t n = 0, cap = 0;

	tokmap_build(&map, v->tokens, v->n);
	for (uint32_t id = 0; id < v->n; id++) {
		struct gguf_str t = gguf_arr_str(v->tokens, id);
		uint64_t h = FNV_BASIS;	/* of t's first k bytes */
		if (t.len > MERGE_MAX_LEN)
			continue;
		for (size_t k = 1; k < t.len; k++) {
			h = (h ^ (unsigned char)t.s[k - 1]) * FNV_PRIME;
			if (((unsigned char)t.s[k] & 0xc0) == 0x80)
				continue;	/* split between characters only */
			int32_t l = tokmap_find(&map, t.s, k, h);
			int32_t r = l < 0 ? -1 : tokmap_get(&map, t.s + k, (size_t)t.len - k);
			if (r < 0)
				continue;
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				m = xrealloc(m, cap * sizeof(*m));
			}
			m[n++] = (struct merge){ l, r, (int32_t)id,
				v->scores ? (float)gguf_arr_f64(v->scores, id) : 0,
				utf8_chars(t.s, k), utf8_chars(t.s + k, (size_t)t.len - k) };
		}
	}
	if (n)
		qsort(m, n, sizeof(*m), cmp_merge);
	for (size_t i = 0; i < n; i++) {
		sb_adds(out, i ? ",[" : "[");
		add_str(out, gguf_arr_str(v->tokens, (uint64_t)m[i].l));
		sb_addch(out, ',');
		add_str(out, gguf_arr_str(v->tokens, (uint64_t)m[i].r));
		sb_addch(out, ']');
	}
	free(m);
	free(map.slot);
}

/* ---- the files -------------------------------------------------------------------- */

static int get_id(const struct gguf *g, const char *key, uint32_t n, int64_t *out)
{
	int rc = gguf_get_int(g, key, out);
	if (rc <= 0) {
		*out = -1;
		return rc;
	}
	if (*out < 0 || *out >= n)
		return err_set(-EINVAL, "%s: %s = %lld is not a token id (%u tokens)", g->path,
			       key, (long long)*out, n);
	return 0;
}

static int get_bool(const struct gguf *g, const char *key, int def, int *out)
{
	int64_t b;
	int rc = gguf_get_int(g, key, &b);
	*out = rc == 1 ? b != 0 : def;
	return rc < 0 ? rc : 0;
}

static int read_vocab(const struct gguf *g, struct vocab *v)
{
	struct gguf_str model;
	int rc;

	memset(v, 0, sizeof(*v));
	v->g = g;
	if ((rc = gguf_get_str(g, "tokenizer.ggml.model", &model)) < 0)
		return rc;
	if (rc == 0)
		return err_set(-EINVAL, "%s: no tokenizer.ggml.model (and no tokenizer.json "
			       "beside it)", g->path);
	if (model.len == 5 && !memcmp(model.s, "llama", 5))
		v->spm = 1;
	else if (!(model.len == 4 && !memcmp(model.s, "gpt2", 4)))
		return err_set(-ENOTSUP, "%s: tokenizer.ggml.model '%.*s' is not supported (gpt2, "
			       "llama); put the model's tokenizer.json beside the file", g->path,
			       (int)(model.len > 40 ? 40 : model.len), model.s);
	if ((rc = gguf_get_arr(g, "tokenizer.ggml.tokens", GGUF_STRING, &v->tokens)) < 0)
		return rc;
	if (rc == 0 || !v->tokens->n || v->tokens->n > MAX_TOKENS)
		return err_set(-EINVAL, "%s: tokenizer.ggml.tokens is missing, empty or longer "
			       "than %u", g->path, MAX_TOKENS);
	v->n = (uint32_t)v->tokens->n;
	if ((rc = gguf_get_arr(g, "tokenizer.ggml.token_type", GGUF_I32, &v->types)) < 0 ||
	    (rc = gguf_get_arr(g, "tokenizer.ggml.scores", GGUF_F32, &v->scores)) < 0 ||
	    (rc = gguf_get_arr(g, "tokenizer.ggml.merges", GGUF_STRING, &v->merges)) < 0)
		return rc;
	if ((v->types && v->types->n != v->n) || (v->scores && v->scores->n != v->n))
		return err_set(-EINVAL, "%s: tokenizer.ggml.token_type or scores does not have "
			       "one entry per token (%u)", g->path, v->n);
	if (!v->spm && !v->merges)
		return err_set(-EINVAL, "%s: a gpt2 tokenizer without tokenizer.ggml.merges",
			       g->path);
	if ((rc = get_id(g, "tokenizer.ggml.bos_token_id", v->n, &v->bos)) < 0 ||
	    (rc = get_id(g, "tokenizer.ggml.eos_token_id", v->n, &v->eos)) < 0 ||
	    (rc = get_id(g, "tokenizer.ggml.unknown_token_id", v->n, &v->unk)) < 0 ||
	    (rc = get_id(g, "tokenizer.ggml.padding_token_id", v->n, &v->pad)) < 0 ||
	    (rc = get_bool(g, "tokenizer.ggml.add_bos_token", v->spm, &v->add_bos)) < 0 ||
	    (rc = get_bool(g, "tokenizer.ggml.add_eos_token", 0, &v->add_eos)) < 0 ||
	    (rc = get_bool(g, "tokenizer.ggml.add_space_prefix", 1, &v->add_space)) < 0)
		return rc;
	for (uint32_t id = 0; v->spm && v->unk < 0 && id < v->n; id++)
		if (type_of(v, id) == TT_UNKNOWN)
			v->unk = id;
	if ((v->add_bos && v->bos < 0) || (v->add_eos && v->eos < 0))
		return err_set(-EINVAL, "%s: add_bos_token/add_eos_token without the token id",
			       g->path);
	return 0;
}

/* One entry of a TemplateProcessing's single list and special_tokens. */
static void special_piece(const struct vocab *v, int64_t id, struct strbuf *single,
			  struct strbuf *specials, int listed)
{
	struct gguf_str t = gguf_arr_str(v->tokens, (uint64_t)id);

	sb_adds(single, single->len ? ",{\"SpecialToken\":{\"id\":" : "{\"SpecialToken\":{\"id\":");
	add_str(single, t);
	sb_adds(single, ",\"type_id\":0}}");
	if (listed)
		return;
	if (specials->len)
		sb_addch(specials, ',');
	add_str(specials, t);
	sb_adds(specials, ":{\"id\":");
	add_str(specials, t);
	sb_addf(specials, ",\"ids\":[%lld],\"tokens\":[", (long long)id);
	add_str(specials, t);
	sb_adds(specials, "]}");
}

static void post_processor(const struct vocab *v, struct strbuf *out)
{
	struct strbuf single = STRBUF_INIT, specials = STRBUF_INIT;

	if (!v->add_bos && !v->add_eos) {
		sb_adds(out, "null");
		return;
	}
	if (v->add_bos)
		special_piece(v, v->bos, &single, &specials, 0);
	sb_adds(&single, single.len ? ",{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}"
				    : "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}");
	if (v->add_eos)
		special_piece(v, v->eos, &single, &specials, v->add_bos && v->eos == v->bos);
	sb_addf(out, "{\"type\":\"TemplateProcessing\",\"single\":[%s],\"pair\":[],"
		"\"special_tokens\":{%s}}", single.buf, specials.buf);
	sb_release(&single);
	sb_release(&specials);
}

static int pre_tokenizer(const struct vocab *v, struct strbuf *out, int *ignore_merges)
{
	const struct gguf *g = v->g;
	struct gguf_str pre = { "gpt-2", 5 };
	int rc = gguf_get_str(g, "tokenizer.ggml.pre", &pre);

	if (rc < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(pres); i++) {
		if (pre.len != strlen(pres[i].name) || memcmp(pre.s, pres[i].name, pre.len))
			continue;
		sb_addf(out, ",\"normalizer\":%s,\"pre_tokenizer\":", pres[i].normalizer);
		if (pres[i].split) {
			sb_adds(out, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\","
				"\"pattern\":{\"Regex\":");
			sb_add_json_str(out, pres[i].split, strlen(pres[i].split));
			sb_adds(out, "},\"behavior\":\"Isolated\",\"invert\":false},"
				BYTELEVEL("false") "]}");
		} else {
			sb_adds(out, pres[i].pre);
		}
		*ignore_merges = pres[i].ignore_merges;
		return 0;
	}
	return err_set(-ENOTSUP, "%s: tokenizer.ggml.pre '%.*s' is not supported (llama-bpe, "
		       "qwen2, smollm, gpt-2); put the model's tokenizer.json beside the file",
		       g->path, (int)(pre.len > 40 ? 40 : pre.len), pre.s);
}

static void config_token(const struct vocab *v, const char *key, int64_t id, struct strbuf *out)
{
	sb_addf(out, ",\"%s\":", key);
	if (id < 0)
		sb_adds(out, "null");
	else
		add_str(out, gguf_arr_str(v->tokens, (uint64_t)id));
}

int model_gguf_tokenizer(const struct gguf *g, struct strbuf *json, struct strbuf *config)
{
	struct vocab v;
	struct gguf_str tmpl;
	int rc, ignore_merges = 0, byte_fallback = 0, first;

	if ((rc = read_vocab(g, &v)) < 0)
		return rc;
	sb_adds(json, "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
		"\"added_tokens\":[");
	first = 1;
	for (uint32_t id = 0; id < v.n; id++) {
		int t = type_of(&v, id);
		byte_fallback |= t == TT_BYTE;
		if (t != TT_CONTROL && t != TT_USER && !(v.spm && t == TT_UNKNOWN))
			continue;
		sb_addf(json, "%s{\"id\":%u,\"content\":", first ? "" : ",", id);
		add_str(json, gguf_arr_str(v.tokens, id));
		sb_addf(json, ",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
			"\"normalized\":false,\"special\":%s}", t == TT_USER ? "false" : "true");
		first = 0;
	}
	sb_adds(json, "]");
	if (v.spm) {
		sb_adds(json, ",\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[");
		if (v.add_space)
			sb_adds(json, "{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},");
		sb_adds(json, "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":"
			"\"\xe2\x96\x81\"}]},\"pre_tokenizer\":null");
	} else if ((rc = pre_tokenizer(&v, json, &ignore_merges)) < 0) {
		return rc;
	}
	sb_adds(json, ",\"post_processor\":");
	post_processor(&v, json);
	if (v.spm)
		sb_addf(json, ",\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\","
			"\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
			"{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}%s]}",
			v.add_space ? ",{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}" : "");
	else
		sb_adds(json, ",\"decoder\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true,"
			"\"trim_offsets\":true,\"use_regex\":true}");
	sb_adds(json, ",\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":");
	if (v.spm && v.unk >= 0)
		add_str(json, gguf_arr_str(v.tokens, (uint64_t)v.unk));
	else
		sb_adds(json, "null");
	sb_addf(json, ",\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,"
		"\"fuse_unk\":%s,\"byte_fallback\":%s,\"ignore_merges\":%s,\"vocab\":{",
		v.spm ? "true" : "false", v.spm && byte_fallback ? "true" : "false",
		ignore_merges ? "true" : "false");
	first = 1;
	for (uint32_t id = 0; id < v.n; id++) {
		if (!in_vocab(&v, id))
			continue;
		if (!first)
			sb_addch(json, ',');
		add_str(json, gguf_arr_str(v.tokens, id));
		sb_addf(json, ":%u", id);
		first = 0;
	}
	sb_adds(json, "},\"merges\":[");
	if (v.spm) {
		spm_merges(&v, json);
	} else {
		for (uint64_t i = 0; i < v.merges->n; i++) {
			if (i)
				sb_addch(json, ',');
			add_str(json, gguf_arr_str(v.merges, i));
		}
	}
	sb_adds(json, "]}}\n");

	sb_addf(config, "{\"add_bos_token\":%s,\"add_eos_token\":%s",
		v.add_bos ? "true" : "false", v.add_eos ? "true" : "false");
	config_token(&v, "bos_token", v.bos, config);
	config_token(&v, "eos_token", v.eos, config);
	config_token(&v, "unk_token", v.unk, config);
	config_token(&v, "pad_token", v.pad, config);
	if ((rc = gguf_get_str(g, "tokenizer.chat_template", &tmpl)) < 0)
		return rc;
	if (rc == 1) {
		sb_adds(config, ",\"chat_template\":");
		add_str(config, tmpl);
	}
	sb_adds(config, "}\n");
	return 0;
}
