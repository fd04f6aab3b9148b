/*
 * load.c - building a struct tok from tokenizer.json (see tok.h).
 *
 * Mirrors HF's deserialization: the model (BPE with its vocabulary and
 * merges, or WordPiece with its vocabulary), then the normalizer, pre-tokenizer, post-processor and
 * decoder, then the added tokens, which get their ids exactly as HF's
 * AddedVocabulary assigns them (an existing token keeps its id, a new one
 * takes the next free id after the model's vocabulary).
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ID ((1u << 24) - 1)	/* no real vocabulary comes near 16M ids */
#define MAX_FILE (1u << 30)

static atomic_uint_fast64_t next_uid = 1;

/* One entry of added_tokens. */
struct added_in {
	const char *content;
	uint32_t len;
	int single_word, lstrip, rstrip, normalized, special;
	int64_t file_id;	/* the id the file gives, -1 if none */
};

static uint32_t pool_add(struct strbuf *pool, const char *s, size_t len)
{
	uint32_t off = (uint32_t)pool->len;
	sb_add(pool, s, len);
	sb_addch(pool, '\0');	/* keeps every token NUL-terminated */
	return off;
}

/* ---- the model ------------------------------------------------------------ */

static int parse_merge(const struct tj *m, const char *path, size_t i, const char **a,
		       size_t *alen, const char **b, size_t *blen)
{
	if (m->type == TJ_STR) {
		const char *sp = memchr(m->u.s, ' ', m->len);
		if (!sp)
			return err_set(-EINVAL, "%s.merges[%zu]: expected \"left right\"", path, i);
		*a = m->u.s;
		*alen = (size_t)(sp - m->u.s);
		*b = sp + 1;
		*blen = m->len - *alen - 1;
		return 0;
	}
	if (m->type == TJ_ARR && m->len == 2 && m->u.kid[0].type == TJ_STR &&
	    m->u.kid[1].type == TJ_STR) {
		*a = m->u.kid[0].u.s;
		*alen = m->u.kid[0].len;
		*b = m->u.kid[1].u.s;
		*blen = m->u.kid[1].len;
		return 0;
	}
	return err_set(-EINVAL, "%s.merges[%zu]: expected \"left right\" or [\"left\", \"right\"]",
		       path, i);
}

static int opt_str(const struct tj *obj, const char *key, const char *path, char **out,
		   size_t *len)
{
	const char *s;
	size_t n;
	int rc = tok_jget_str(obj, key, path, 0, &s, &n);
	if (rc < 0)
		return rc;
	*out = s && n ? xstrndup(s, n) : NULL;
	*len = s ? n : 0;
	return 0;
}

/* model.vocab: token -> id */
static int load_vocab(struct tok *tok, const struct tj *model, struct strbuf *pool,
		      uint32_t *max_id)
{
	struct bpe *m = &tok->bpe;
	const struct tj *vocab = tok_tj_get(model, "vocab");

	if (!vocab || vocab->type != TJ_OBJ)
		return err_set(-EINVAL, "model.vocab: expected an object, found %s",
			       tok_tj_type_name(vocab));
	tok_strmap_init(&m->vocab, vocab->len);
	for (uint32_t i = 0; i < vocab->len; i++) {
		const struct tj *e = &vocab->u.kid[i];
		if (!tok_tj_is_int(e, 0, MAX_ID))
			return err_set(-EINVAL, "model.vocab[\"%.40s\"]: expected an id in [0, %u], found %s",
				       e->key, MAX_ID, e->type == TJ_NUM ? "another number" :
				       tok_tj_type_name(e));
		uint32_t id = (uint32_t)e->u.num;
		uint32_t off = pool_add(pool, e->key, e->klen);
		tok_strmap_put(&m->vocab, pool->buf, off, e->klen, (int32_t)id);
		if (id > *max_id)
			*max_id = id;
	}
	m->nvocab = m->vocab.n;
	return 0;
}

/* The WordPiece model's settings (HF's defaults where absent); the unk id
 * is looked up once the pool is final (model_tables). */
static int load_wordpiece(struct tok *tok, const struct tj *model)
{
	static const char path[] = "model";
	struct bpe *m = &tok->bpe;
	const char *s;
	size_t len;
	long max;
	int rc;

	m->wordpiece = 1;
	tok_pairmap_init(&m->merges, 0);
	if ((rc = tok_jget_str(model, "unk_token", path, 0, &s, &len)) < 0)
		return rc;
	m->unk = s ? xstrndup(s, len) : xstrdup("[UNK]");
	if ((rc = tok_jget_str(model, "continuing_subword_prefix", path, 0, &s, &len)) < 0)
		return rc;
	m->prefix = s ? xstrndup(s, len) : xstrdup("##");
	m->prefix_len = s ? len : 2;
	if ((rc = tok_jget_int(model, "max_input_chars_per_word", path, 100, 0, LONG_MAX,
			       &max)) < 0)
		return rc;
	m->max_input_chars = (size_t)max;
	return 0;
}

static int load_model(struct tok *tok, const struct tj *model, struct strbuf *pool,
		      uint32_t *max_id)
{
	static const char path[] = "model";
	struct bpe *m = &tok->bpe;
	const struct tj *merges, *v;
	const char *type;
	int rc;
	double dropout = 0;

	if (!model || model->type != TJ_OBJ)
		return err_set(-EINVAL, "model: expected an object, found %s", tok_tj_type_name(model));
	rc = tok_jget_str(model, "type", path, 0, &type, NULL);
	if (rc < 0)
		return rc;
	if (type && !strcmp(type, "WordPiece")) {
		if ((rc = load_vocab(tok, model, pool, max_id)) < 0)
			return rc;
		return load_wordpiece(tok, model);
	}
	if (type && strcmp(type, "BPE"))
		return err_set(-EINVAL, "model.type: \"%s\" models are not supported (only BPE "
			       "and WordPiece)", type);
	if (!type && !tok_tj_get(model, "merges"))
		return err_set(-EINVAL, "model: not a BPE model (no \"type\" and no \"merges\"); "
			       "only BPE is supported");
	v = tok_tj_get(model, "dropout");
	if (v && v->type == TJ_NUM)
		dropout = v->u.num;
	else if (v && v->type != TJ_NULL)
		return err_set(-EINVAL, "model.dropout: expected a number or null");
	if (dropout > 0)
		return err_set(-EINVAL, "model.dropout: BPE dropout (%g) is not supported", dropout);
	if ((rc = tok_jget_bool(model, "fuse_unk", path, 0, &m->fuse_unk)) < 0 ||
	    (rc = tok_jget_bool(model, "byte_fallback", path, 0, &m->byte_fallback)) < 0 ||
	    (rc = tok_jget_bool(model, "ignore_merges", path, 0, &m->ignore_merges)) < 0)
		return rc;
	size_t unklen;
	if ((rc = opt_str(model, "unk_token", path, &m->unk, &unklen)) < 0 ||
	    (rc = opt_str(model, "continuing_subword_prefix", path, &m->prefix, &m->prefix_len)) < 0 ||
	    (rc = opt_str(model, "end_of_word_suffix", path, &m->suffix, &m->suffix_len)) < 0)
		return rc;

	if ((rc = load_vocab(tok, model, pool, max_id)) < 0)
		return rc;

	merges = tok_tj_get(model, "merges");
	if (merges && merges->type != TJ_ARR && merges->type != TJ_NULL)
		return err_set(-EINVAL, "model.merges: expected an array, found %s",
			       tok_tj_type_name(merges));
	tok_pairmap_init(&m->merges, merges && merges->type == TJ_ARR ? merges->len : 0);
	struct strbuf cat = STRBUF_INIT;
	for (uint32_t i = 0; merges && merges->type == TJ_ARR && i < merges->len; i++) {
		const char *a = NULL, *b = NULL;
		size_t alen = 0, blen = 0;
		rc = parse_merge(&merges->u.kid[i], path, i, &a, &alen, &b, &blen);
		if (rc < 0)
			break;
		int32_t ia = tok_strmap_get(&m->vocab, pool->buf, a, alen);
		int32_t ib = tok_strmap_get(&m->vocab, pool->buf, b, blen);
		if (ia < 0 || ib < 0) {
			rc = err_set(-EINVAL, "model.merges[%u]: token \"%.*s\" is not in the vocabulary",
				     i, (int)(ia < 0 ? alen : blen), ia < 0 ? a : b);
			break;
		}
		if (blen < m->prefix_len) {
			rc = err_set(-EINVAL, "model.merges[%u]: \"%.*s\" is shorter than the subword prefix",
				     i, (int)blen, b);
			break;
		}
		sb_reset(&cat);
		sb_add(&cat, a, alen);
		sb_add(&cat, b + m->prefix_len, blen - m->prefix_len);
		int32_t in = tok_strmap_get(&m->vocab, pool->buf, cat.buf, cat.len);
		if (in < 0) {
			rc = err_set(-EINVAL, "model.merges[%u]: merged token \"%.*s\" is not in the vocabulary",
				     i, (int)cat.len, cat.buf);
			break;
		}
		tok_pairmap_put(&m->merges, (uint32_t)ia, (uint32_t)ib, i, (uint32_t)in);
	}
	sb_release(&cat);
	return rc;
}

/* Lookup tables the encoder uses instead of hashing single characters. */
static void model_tables(struct tok *tok)
{
	struct bpe *m = &tok->bpe;
	char buf[8];

	for (unsigned b = 0; b < 256; b++) {
		snprintf(buf, sizeof(buf), "<0x%02X>", b);
		m->byte_ids[b] = tok_strmap_get(&m->vocab, tok->pool, buf, 6);
	}
	/* (also: no prefix/suffix, which depend on the word's extent, and
	 * U+2581 itself in the vocabulary, so unknown runs end there) */
	m->presplit = !m->wordpiece && !tok->pre && !m->ignore_merges && !m->prefix_len && !m->suffix_len &&
		      tok_strmap_get(&m->vocab, tok->pool, "\xE2\x96\x81", 3) >= 0;
	for (uint32_t i = 0; m->presplit && i <= m->vocab.mask; i++) {
		const struct strmap_ent *e = &m->vocab.v[i];
		if (e->len == UINT32_MAX)
			continue;
		const char *t = tok->pool + e->off, *p = t, *end = t + e->len;
		while ((p = memmem(p, (size_t)(end - p), "\xE2\x96\x81", 3))) {
			if (p > t && (p - t < 3 || memcmp(p - 3, "\xE2\x96\x81", 3))) {
				m->presplit = 0;
				break;
			}
			p += 3;
		}
	}
	m->unk_id = m->unk ? tok_strmap_get(&m->vocab, tok->pool, m->unk, strlen(m->unk)) : -1;
	m->char_ids = xmalloc(BPE_DIRECT * sizeof(*m->char_ids));
	for (uint32_t cp = 0; cp < BPE_DIRECT; cp++) {
		size_t n = tok_utf8_encode(cp, buf);
		m->char_ids[cp] = tok_strmap_get(&m->vocab, tok->pool, buf, n);
	}
}

/* ---- added tokens ----------------------------------------------------------- */

static int parse_added(const struct tj *list, struct added_in **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (!list || list->type == TJ_NULL)
		return 0;
	if (list->type != TJ_ARR)
		return err_set(-EINVAL, "added_tokens: expected an array, found %s",
			       tok_tj_type_name(list));
	struct added_in *a = xcalloc(list->len ? list->len : 1, sizeof(*a));
	for (uint32_t i = 0; i < list->len; i++) {
		const struct tj *t = &list->u.kid[i];
		char path[64];
		const char *s;
		size_t len;
		int rc;
		snprintf(path, sizeof(path), "added_tokens[%u]", i);
		if (t->type != TJ_OBJ) {
			free(a);
			return err_set(-EINVAL, "%s: expected an object, found %s", path,
				       tok_tj_type_name(t));
		}
		if ((rc = tok_jget_str(t, "content", path, 1, &s, &len)) < 0 ||
		    (rc = tok_jget_bool(t, "single_word", path, 0, &a[i].single_word)) < 0 ||
		    (rc = tok_jget_bool(t, "lstrip", path, 0, &a[i].lstrip)) < 0 ||
		    (rc = tok_jget_bool(t, "rstrip", path, 0, &a[i].rstrip)) < 0 ||
		    (rc = tok_jget_bool(t, "normalized", path, 1, &a[i].normalized)) < 0 ||
		    (rc = tok_jget_bool(t, "special", path, 0, &a[i].special)) < 0) {
			free(a);
			return rc;
		}
		const struct tj *id = tok_tj_get(t, "id");
		if (id && !tok_tj_is_int(id, 0, UINT32_MAX)) {
			free(a);
			return err_set(-EINVAL, "%s.id: expected a non-negative integer", path);
		}
		a[i].content = s;
		a[i].len = (uint32_t)len;
		a[i].file_id = id ? (int64_t)id->u.num : -1;
	}
	*out = a;
	*n = list->len;
	return 0;
}

static int same_token(const struct added_in *a, const struct added_in *b)
{
	return a->len == b->len && !memcmp(a->content, b->content, a->len) &&
	       a->single_word == b->single_word && a->lstrip == b->lstrip &&
	       a->rstrip == b->rstrip && a->normalized == b->normalized &&
	       a->special == b->special;
}

struct added_state {
	struct added_in *in;
	size_t n;
	int32_t *id_of;		/* per input token: assigned id, -1 = ignored */
	uint32_t *off_of;	/* per input token: its content in the pool */
	size_t *order;		/* pattern order: specials first, then the rest */
	size_t norder;
	struct strmap special;	/* special contents */
	struct tok_ids by_id;	/* (id, input index) pairs for map_r */
};

/* Assign ids as HF's AddedVocabulary::add_tokens, in file order. */
static int assign_added(struct tok *tok, struct strbuf *pool, struct added_state *st,
			uint32_t *max_id)
{
	size_t nvocab = tok->bpe.nvocab;
	int64_t max_added = -1;
	size_t *specials = xcalloc(st->n + 1, sizeof(size_t));
	size_t *others = xcalloc(st->n + 1, sizeof(size_t));
	size_t nspec = 0, noth = 0;
	/* map_r: id -> input index, as a small open list (ids are few) */
	struct strmap mapr_index;	/* content -> input index of map_r[added id] */

	tok_strmap_init(&tok->added, st->n);
	tok_strmap_init(&st->special, st->n);
	tok_strmap_init(&mapr_index, st->n);
	st->id_of = xcalloc(st->n + 1, sizeof(int32_t));
	st->off_of = xcalloc(st->n + 1, sizeof(uint32_t));
	for (size_t i = 0; i < st->n; i++) {
		struct added_in *t = &st->in[i];
		st->id_of[i] = -1;
		if (!t->len)
			continue;
		uint32_t off = pool_add(pool, t->content, t->len);
		st->off_of[i] = off;
		int in_special = tok_strmap_get(&st->special, pool->buf, t->content, t->len) >= 0;
		if (t->special && !in_special) {
			tok_strmap_put(&st->special, pool->buf, off, t->len, 1);
			specials[nspec++] = i;
			in_special = 1;
		}
		int32_t existing = tok_strmap_get(&tok->added, pool->buf, t->content, t->len);
		if (existing >= 0) {
			int32_t prev = tok_strmap_get(&mapr_index, pool->buf, t->content, t->len);
			if (prev >= 0 && same_token(&st->in[prev], t))
				continue;
		}
		int32_t id = existing;
		if (id < 0)
			id = tok_strmap_get(&tok->bpe.vocab, pool->buf, t->content, t->len);
		if (id < 0) {
			if (max_added < 0)
				id = (int32_t)nvocab;
			else if (max_added >= (int64_t)nvocab || nvocab == 0)
				id = (int32_t)(max_added + 1);
			else
				id = (int32_t)nvocab;
		}
		if ((uint32_t)id > MAX_ID) {
			free(specials);
			free(others);
			tok_strmap_free(&mapr_index);
			return err_set(-EINVAL, "added_tokens[%zu]: id out of range", i);
		}
		if (id > max_added)
			max_added = id;
		tok_strmap_put(&tok->added, pool->buf, off, t->len, id);
		tok_strmap_put(&mapr_index, pool->buf, off, t->len, (int32_t)i);
		st->id_of[i] = id;
		if ((uint32_t)id > *max_id)
			*max_id = (uint32_t)id;
		if (!in_special)
			others[noth++] = i;
		if (t->file_id >= 0 && t->file_id != id)
			LOG_WARN("tok", "added token \"%.*s\" was expected to have id %lld but got %d "
				 "(as Hugging Face assigns it)", (int)t->len, t->content,
				 (long long)t->file_id, id);
	}
	st->order = xcalloc(nspec + noth + 1, sizeof(size_t));
	memcpy(st->order, specials, nspec * sizeof(size_t));
	memcpy(st->order + nspec, others, noth * sizeof(size_t));
	st->norder = nspec + noth;
	free(specials);
	free(others);
	tok_strmap_free(&mapr_index);
	return 0;
}

static int build_tables(struct tok *tok, struct added_state *st, uint32_t max_id)
{
	struct bpe *m = &tok->bpe;

	/* ids index arrays: refuse a tiny file that claims a huge id */
	if ((uint64_t)max_id > 4 * ((uint64_t)m->nvocab + st->n) + 65536)
		return err_set(-EINVAL, "token id %u is far beyond the %u tokens defined (ids this "
			       "sparse are not supported)", max_id, m->nvocab + (uint32_t)st->n);
	tok->nids = max_id + 1;
	tok->id2str = xmalloc((size_t)tok->nids * sizeof(*tok->id2str));
	tok->id_flags = xcalloc(tok->nids, 1);
	for (uint32_t i = 0; i < tok->nids; i++)
		tok->id2str[i].len = UINT32_MAX;
	for (uint32_t i = 0; i <= m->vocab.mask; i++) {
		const struct strmap_ent *e = &m->vocab.v[i];
		if (e->len != UINT32_MAX)
			tok->id2str[e->val] = (struct tok_str){ e->off, e->len };
	}
	/* added tokens override (map_r: the last token given an id wins) */
	for (size_t i = 0; i < st->n; i++) {
		int32_t id = st->id_of[i];
		if (id < 0)
			continue;
		const struct added_in *t = &st->in[i];
		tok->id2str[id] = (struct tok_str){ st->off_of[i], t->len };
		uint8_t f = TF_ADDED;
		if (t->single_word)
			f |= TF_SINGLE_WORD;
		if (t->lstrip)
			f |= TF_LSTRIP;
		if (t->rstrip)
			f |= TF_RSTRIP;
		tok->id_flags[id] = f;
	}
	/* special: the id's text is one of the special tokens */
	for (uint32_t j = 0; j <= st->special.mask; j++) {
		const struct strmap_ent *e = &st->special.v[j];
		if (e->len == UINT32_MAX)
			continue;
		const char *s = tok->pool + e->off;
		int32_t ids[2] = {
			tok_strmap_get(&tok->added, tok->pool, s, e->len),
			tok_strmap_get(&m->vocab, tok->pool, s, e->len),
		};
		for (int k = 0; k < 2; k++) {
			size_t len;
			const char *t = ids[k] >= 0 ? tok_str_of(tok, (uint32_t)ids[k], &len) : NULL;
			if (t && len == e->len && !memcmp(t, s, len))
				tok->id_flags[ids[k]] |= TF_SPECIAL;
		}
	}
	return 0;
}

/* The tries for matching added tokens, in HF's pattern order. */
static int build_tries(struct tok *tok, struct added_state *st)
{
	struct strbuf normed = STRBUF_INIT, all = STRBUF_INIT;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	struct { uint32_t off, len; int32_t id; } *np = NULL;
	size_t nn = 0;
	int rc = 0;

	tok_trie_init(&tok->raw_trie);
	tok_trie_init(&tok->norm_trie);
	for (size_t k = 0; k < st->norder; k++) {
		const struct added_in *t = &st->in[st->order[k]];
		int32_t id = tok_strmap_get(&tok->added, tok->pool, t->content, t->len);
		if (id < 0)
			continue;
		if (!t->normalized) {
			tok_trie_add(&tok->raw_trie, t->content, t->len, id);
			continue;
		}
		int at_start = 1;
		rc = tok_norm_apply(tok->norm, t->content, t->len, &normed, &at_start, md);
		if (rc < 0)
			break;
		np = xrealloc(np, (nn + 1) * sizeof(*np));
		np[nn].off = (uint32_t)all.len;
		np[nn].len = (uint32_t)normed.len;
		np[nn].id = id;
		nn++;
		sb_add(&all, normed.buf, normed.len);
	}
	for (size_t i = 0; rc == 0 && i < nn; i++)
		tok_trie_add(&tok->norm_trie, all.buf + np[i].off, np[i].len, np[i].id);
	free(np);
	sb_release(&normed);
	sb_release(&all);
	pcre2_match_data_free(md);
	return rc;
}

/* ---- the whole file ----------------------------------------------------------- */

void tok_free(struct tok *tok)
{
	if (!tok)
		return;
	tok_strmap_free(&tok->bpe.vocab);
	tok_pairmap_free(&tok->bpe.merges);
	free(tok->bpe.unk);
	free(tok->bpe.prefix);
	free(tok->bpe.suffix);
	free(tok->bpe.char_ids);
	tok_strmap_free(&tok->added);
	tok_trie_free(&tok->raw_trie);
	tok_trie_free(&tok->norm_trie);
	tok_norm_free(tok->norm);
	tok_pretok_free(tok->pre);
	tok_post_free(tok->post);
	tok_dec_free(tok->dec);
	free(tok->id2str);
	free(tok->id_flags);
	free(tok->pool);
	free(tok);
}

/* Parse json (writable, parsed in place) into a tokenizer. */
static int load_json(char *json, size_t len, const char *what, struct tok **out)
{
	struct tj_doc doc;
	struct tok *tok;
	struct strbuf pool = STRBUF_INIT;
	struct added_state st = { 0 };
	uint32_t max_id = 0;
	const struct tj *root, *v;
	int rc;

	*out = NULL;
	if (len > MAX_FILE)
		return err_set(-EFBIG, "%s: file too large (%zu bytes)", what, len);
	rc = tok_tj_parse(&doc, json, len, 0, what);
	if (rc < 0)
		return rc;
	root = &doc.root;
	if (root->type != TJ_OBJ) {
		/* name the type before freeing the document that holds it */
		rc = err_set(-EINVAL, "%s: expected a JSON object at the top, found %s", what,
			     tok_tj_type_name(root));
		tok_tj_free(&doc);
		return rc;
	}
	tok = xcalloc(1, sizeof(*tok));
	tok->bos_id = tok->eos_id = tok->pad_id = tok->unk_id = -1;
	tok->add_bos = tok->add_eos = -1;
	sb_init(&pool, len / 2 + 64);

	v = tok_tj_get(root, "version");
	if (v && (v->type != TJ_STR || strcmp(v->u.s, "1.0"))) {
		rc = err_set(-EINVAL, "version: unknown tokenizer version (expected \"1.0\")");
		goto fail;
	}
	if (!tok_tj_get(root, "model")) {
		rc = err_set(-EINVAL, "missing \"model\" (is this a tokenizer.json file?)");
		goto fail;
	}
	rc = load_model(tok, tok_tj_get(root, "model"), &pool, &max_id);
	if (rc < 0)
		goto fail;
	if ((rc = tok_norm_parse(tok_tj_get(root, "normalizer"), "normalizer", &tok->norm)) < 0 ||
	    (rc = tok_pretok_parse(tok_tj_get(root, "pre_tokenizer"), "pre_tokenizer", &tok->pre)) < 0 ||
	    (rc = tok_post_parse(tok, tok_tj_get(root, "post_processor"), "post_processor", &tok->post)) < 0 ||
	    (rc = tok_dec_parse(tok_tj_get(root, "decoder"), "decoder", &tok->dec)) < 0)
		goto fail;
	rc = parse_added(tok_tj_get(root, "added_tokens"), &st.in, &st.n);
	if (rc < 0)
		goto fail;
	rc = assign_added(tok, &pool, &st, &max_id);
	if (rc < 0)
		goto fail;
	tok->pool_len = pool.len;
	tok->pool = sb_detach(&pool, NULL);
	if ((rc = build_tables(tok, &st, max_id)) < 0 || (rc = build_tries(tok, &st)) < 0)
		goto fail;
	model_tables(tok);
	/* check the post-processor's ids */
	tok->uid = atomic_fetch_add(&next_uid, 1);
	free(st.in);
	free(st.id_of);
	free(st.off_of);
	free(st.order);
	tok_strmap_free(&st.special);
	tok_tj_free(&doc);
	*out = tok;
	return 0;
fail:
	if (!strstr(err_msg(), what))
		err_wrap(rc, "%s", what);
	free(st.in);
	free(st.id_of);
	free(st.off_of);
	free(st.order);
	tok_strmap_free(&st.special);
	sb_release(&pool);
	tok_free(tok);
	tok_tj_free(&doc);
	return rc;
}

int tok_load_mem(const char *json, size_t len, const char *config,
		 size_t config_len, const char *what, struct tok **out)
{
	char *buf = xmalloc(len + 1);
	int rc;

	memcpy(buf, json, len);
	buf[len] = '\0';
	rc = load_json(buf, len, what ? what : "tokenizer.json", out);
	free(buf);
	if (rc < 0 || !config)
		return rc;
	buf = xmalloc(config_len + 1);
	memcpy(buf, config, config_len);
	buf[config_len] = '\0';
	rc = tok_config_apply(*out, buf, config_len, "tokenizer_config.json");
	free(buf);
	if (rc < 0) {
		tok_free(*out);
		*out = NULL;
	}
	return rc;
}

int tok_load(const char *path, struct tok **out)
{
	struct stat stbuf;
	struct strbuf json_path = STRBUF_INIT, cfg_path = STRBUF_INIT;
	struct strbuf json = STRBUF_INIT, cfg = STRBUF_INIT;
	int rc;

	*out = NULL;
	if (stat(path, &stbuf) < 0)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	if (S_ISDIR(stbuf.st_mode)) {
		sb_addf(&json_path, "%s/tokenizer.json", path);
		sb_addf(&cfg_path, "%s/tokenizer_config.json", path);
	} else {
		const char *slash = strrchr(path, '/');
		sb_adds(&json_path, path);
		if (slash)
			sb_add(&cfg_path, path, (size_t)(slash - path) + 1);
		sb_adds(&cfg_path, "tokenizer_config.json");
	}
	rc = sb_read_file(&json, json_path.buf, MAX_FILE);
	if (rc < 0) {
		if (rc == -ENOENT && S_ISDIR(stbuf.st_mode))
			rc = err_set(rc, "%s: no tokenizer.json in this model directory", path);
		goto out;
	}
	rc = load_json(json.buf, json.len, json_path.buf, out);
	if (rc < 0)
		goto out;
	if (sb_read_file(&cfg, cfg_path.buf, 64u << 20) == 0) {
		rc = tok_config_apply(*out, cfg.buf, cfg.len, cfg_path.buf);
		if (rc < 0) {
			tok_free(*out);
			*out = NULL;
		}
	}
	if (*out)
		LOG_DEBUG("tok", "loaded %s: %u ids, %u merges", json_path.buf, (*out)->nids,
			  (*out)->bpe.merges.n);
out:
	sb_release(&json_path);
	sb_release(&cfg_path);
	sb_release(&json);
	sb_release(&cfg);
	return rc;
}
