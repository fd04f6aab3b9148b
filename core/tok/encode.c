/*
 * encode.c - text to ids and ids to text (see tok.h for the pipeline),
 * plus the vocabulary lookups.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT (64u << 20)	/* 16M tokens and more: no prompt is that long */
#define MAX_ARENA (1u << 30)	/* offsets in the arena are 32-bit */

void tok_ids_push(struct tok_ids *ids, int32_t id)
{
	if (ids->n == ids->alloc) {
		ids->alloc = ids->alloc ? ids->alloc * 2 : 64;
		ids->v = xrealloc(ids->v, ids->alloc * sizeof(*ids->v));
	}
	ids->v[ids->n++] = id;
}

void tok_ids_release(struct tok_ids *ids)
{
	free(ids->v);
	ids->v = NULL;
	ids->n = ids->alloc = 0;
}

/* Cut before each U+2581 that follows another character (see struct bpe). */
static int presplit_word(const struct tok *tok, struct tok_cache *cache, const char *w,
			 size_t len, struct tok_ids *ids)
{
	static const char meta[] = "\xE2\x96\x81";
	size_t start = 0, pos = 0;

	while (pos < len) {
		const char *m = memmem(w + pos, len - pos, meta, 3);
		if (!m)
			break;
		size_t at = (size_t)(m - w);
		if (at > start && (at - start < 3 || memcmp(w + at - 3, meta, 3))) {
			int rc = tok_bpe_word(tok, cache, w + start, at - start, ids);
			if (rc < 0)
				return rc;
			start = at;
		}
		pos = at + 3;
	}
	return tok_bpe_word(tok, cache, w + start, len - start, ids);
}

static int encode(const struct tok *tok, const char *text, size_t len,
		  int add_special_tokens, struct tok_ids *out, struct tok_scratch *sc)
{
	struct tok_cache *cache = tok_cache_get(tok);
	struct tok_ids *ids = &sc->ids;
	int rc = 0;

	sc->segs.n = sc->a.n = sc->b.n = ids->n = 0;
	if (!tok_utf8_is_valid(text, len)) {
		sb_reset(&sc->clean);
		tok_utf8_sanitize(text, len, &sc->clean);
		text = sc->clean.buf;
		len = sc->clean.len;
	}
	tok_added_split(tok, &tok->raw_trie, text, len, 0, 1, &sc->segs);
	for (size_t i = 0; i < sc->segs.n && rc == 0; i++) {
		const struct piece *seg = &sc->segs.v[i];
		if (seg->id >= 0) {
			tok_ids_push(ids, seg->id);
			continue;
		}
		int at_start = (int)seg->at_start;
		rc = tok_norm_apply(tok->norm, text + seg->off, seg->len, &sc->arena, &at_start,
				    sc->md);
		if (rc < 0)
			break;
		if (sc->arena.len > MAX_ARENA / 4) {
			rc = err_set(-E2BIG, "text too long to tokenize after normalization");
			break;
		}
		sc->a.n = 0;
		tok_added_split(tok, &tok->norm_trie, sc->arena.buf, sc->arena.len, 0, at_start,
				&sc->a);
		if (tok->pre && (rc = tok_pretok_apply(tok->pre, &sc->arena, &sc->a, &sc->b,
						       sc->md)) < 0)
			break;
		for (size_t k = 0; k < sc->a.n && rc == 0; k++) {
			const struct piece *p = &sc->a.v[k];
			if (p->id >= 0)
				tok_ids_push(ids, p->id);
			else if (p->len && tok->bpe.wordpiece)
				rc = tok_wordpiece_word(tok, sc->arena.buf + p->off, p->len, ids);
			else if (p->len && tok->bpe.presplit)
				rc = presplit_word(tok, cache, sc->arena.buf + p->off, p->len, ids);
			else if (p->len)
				rc = tok_bpe_word(tok, cache, sc->arena.buf + p->off, p->len, ids);
		}
	}
	if (rc == 0) {
		if (add_special_tokens)
			tok_post_apply(tok->post, ids);
		for (size_t i = 0; i < ids->n; i++)
			tok_ids_push(out, ids->v[i]);
	}
	return rc;
}

int tok_encode(const struct tok *tok, const char *text, size_t len,
	       int add_special_tokens, struct tok_ids *out)
{
	struct tok_scratch *sc, own;
	int rc;

	if (len > MAX_TEXT)
		return err_set(-E2BIG, "text too long to tokenize (%zu bytes)", len);
	sc = tok_scratch_get();
	if (!sc) {
		/* (re-entered on this thread: use private buffers) */
		memset(&own, 0, sizeof(own));
		sb_init(&own.clean, 0);
		sb_init(&own.arena, 0);
		own.md = pcre2_match_data_create(1, NULL);
		if (!own.md)
			abort();
		rc = encode(tok, text, len, add_special_tokens, out, &own);
		sb_release(&own.clean);
		sb_release(&own.arena);
		free(own.segs.v);
		free(own.a.v);
		free(own.b.v);
		tok_ids_release(&own.ids);
		pcre2_match_data_free(own.md);
		return rc;
	}
	rc = encode(tok, text, len, add_special_tokens, out, sc);
	tok_scratch_put(sc);
	return rc;
}

int tok_decode(const struct tok *tok, const int32_t *ids, size_t n,
	       int skip_special_tokens, struct strbuf *out)
{
	struct strlist l = STRLIST_INIT, tmp = STRLIST_INIT;
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		size_t len;
		const char *s;
		if (ids[i] < 0 || !(s = tok_str_of(tok, (uint32_t)ids[i], &len)))
			continue;
		if (skip_special_tokens && (tok->id_flags[ids[i]] & TF_SPECIAL))
			continue;
		tok_strlist_push(&l, s, len);
	}
	if (tok->dec)
		rc = tok_dec_apply(tok->dec, &l, &tmp);
	if (rc == 0) {
		for (size_t i = 0; i < l.n; i++) {
			if (!tok->dec && i)
				sb_addch(out, ' ');
			sb_add(out, l.text.buf + l.off[i], l.len[i]);
		}
	}
	tok_strlist_release(&l);
	tok_strlist_release(&tmp);
	return rc;
}

void tok_decode_after(const struct tok *tok, const int32_t *ctx, size_t n, int32_t id,
		      struct strbuf *out)
{
	sb_reset(out);
	if (tok_is_special(tok, id)) {
		tok_decode(tok, &id, 1, 0, out);
		return;
	}
	/* a few tokens of context, per logprob alternative: no allocation */
	int32_t small[16], *w = n < 16 ? small : xmalloc((n + 1) * sizeof(*w));
	if (n)	/* ctx may be NULL with no context */
		memcpy(w, ctx, n * sizeof(*w));
	w[n] = id;
	struct strbuf head = STRBUF_INIT;
	tok_decode(tok, w, n, 1, &head);
	tok_decode(tok, w, n + 1, 1, out);
	size_t same = 0;
	while (same < head.len && same < out->len && head.buf[same] == out->buf[same])
		same++;
	/* back to a character boundary */
	while (same > 0 && same < out->len && ((unsigned char)out->buf[same] & 0xc0) == 0x80)
		same--;
	sb_remove(out, 0, same);
	sb_release(&head);
	if (w != small)
		free(w);
}

size_t tok_vocab_size(const struct tok *tok)
{
	return tok->nids;
}

int32_t tok_token_to_id(const struct tok *tok, const char *s, size_t len)
{
	int32_t id = tok_strmap_get(&tok->added, tok->pool, s, len);
	if (id < 0)
		id = tok_strmap_get(&tok->bpe.vocab, tok->pool, s, len);
	return id;
}

const char *tok_id_to_token(const struct tok *tok, int32_t id, size_t *len)
{
	size_t l;
	const char *s = id >= 0 ? tok_str_of(tok, (uint32_t)id, &l) : NULL;
	if (len)
		*len = s ? l : 0;
	return s;
}

int tok_is_special(const struct tok *tok, int32_t id)
{
	return id >= 0 && (uint32_t)id < tok->nids && (tok->id_flags[id] & TF_SPECIAL);
}

int32_t tok_bos_id(const struct tok *tok) { return tok->bos_id; }
int32_t tok_eos_id(const struct tok *tok) { return tok->eos_id; }
int32_t tok_pad_id(const struct tok *tok) { return tok->pad_id; }
int32_t tok_unk_id(const struct tok *tok) { return tok->unk_id; }
int tok_add_bos(const struct tok *tok) { return tok->add_bos; }
int tok_add_eos(const struct tok *tok) { return tok->add_eos; }
