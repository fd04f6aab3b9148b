/*
 * stream.c - incremental detokenization (see tok.h).
 *
 * The text a token adds depends on its neighbours (a leading space that
 * the decoder strips only at the very start, a character whose bytes are
 * spread over several tokens), so deltas come from decoding a short
 * window: the tokens since the last emission plus the ones emitted with
 * it (prefix_off .. read_off) as context.  The delta is
 * decode(window) minus decode(context).  Text is held back while it ends
 * in U+FFFD, i.e. while a character may still be incomplete; the final
 * flush releases it.
 *
 * Decoding is local except for HF's ByteFallback decoder, which decodes a
 * whole run of consecutive byte tokens ("<0xXX>") at once: valid UTF-8
 * gives its text, anything else one U+FFFD per byte of the run, so a
 * later byte token can change what the start of the run decodes to.  The
 * stream therefore emits nothing while the last token that reaches the
 * decoder is a byte token; the run is final (and the window decodes as the
 * full text does) once a token of another kind arrives, or at the flush.
 * Ids the decoder never sees (unknown ids, special tokens when they are
 * skipped) are filtered out before it, as in HF, so they neither end a run
 * nor enter the window.  A token is a byte token when its text is
 * "<0xXX>" once the per-token decoders before ByteFallback (Replace
 * U+2581 -> space, Metaspace, Strip) have run on it; a chain that joins
 * tokens before ByteFallback (Fuse, ByteLevel: no published tokenizer)
 * makes every token count as one, so its text comes out at the flush.
 * A chain that strips characters at the end of the joined text (Strip
 * with stop > 0 after Fuse: no published tokenizer) defers a window's
 * trailing characters to a window that may strip them again at its start,
 * so its text comes out at the flush too.
 * (One corner stays: with a Metaspace decoder that drops the first
 * token's U+2581 before ByteFallback, a vocabulary token "U+2581<0xXX>"
 * opening the window would decode as a byte there but not in the full
 * text; no vocabulary has such a token.)
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define PRIME_TOKENS 8
#define CONTEXT_MAX 32	/* tokens a window's context may grow to */

struct tok_stream {
	const struct tok *tok;
	int skip;
	enum dec_bf_mode bf;		/* how its ByteFallback step sees tokens */
	int hold_all;			/* text only at the flush (see above) */
	int seen;			/* a token has reached the decoder */
	struct tok_ids ids;		/* ids from prefix_off on */
	size_t prefix_off, read_off;	/* indexes into ids */
	struct strbuf prev, cur;
};

struct tok_stream *tok_stream_new(const struct tok *tok, int skip_special_tokens)
{
	struct tok_stream *st = xcalloc(1, sizeof(*st));
	st->tok = tok;
	st->skip = skip_special_tokens;
	st->bf = tok_dec_bf_mode(tok->dec);
	st->hold_all = tok_dec_strips_text_end(tok->dec);
	sb_init(&st->prev, 0);
	sb_init(&st->cur, 0);
	return st;
}

void tok_stream_free(struct tok_stream *st)
{
	if (!st)
		return;
	tok_ids_release(&st->ids);
	sb_release(&st->prev);
	sb_release(&st->cur);
	free(st);
}

enum kind { DROPPED, BYTE, TEXT };

/* What the decoder makes of id: nothing (filtered out before decoding, as
 * tok_decode does), a byte of a ByteFallback run, or other text. */
static int reaches_decoder(const struct tok_stream *st, int32_t id, const char **s, size_t *len)
{
	if (id < 0 || !(*s = tok_str_of(st->tok, (uint32_t)id, len)))
		return 0;
	return !(st->skip && (st->tok->id_flags[id] & TF_SPECIAL));
}

static enum kind kind_of(struct tok_stream *st, int32_t id)
{
	size_t len;
	const char *s;
	if (!reaches_decoder(st, id, &s, &len))
		return DROPPED;
	int first = !st->seen;
	st->seen = 1;
	switch (st->bf) {
	case DEC_BF_NONE:
		return TEXT;
	case DEC_BF_TOKENS:
		return tok_dec_bf_byte(st->tok->dec, s, len, first) >= 0 ? BYTE : TEXT;
	case DEC_BF_OPAQUE:
		break;
	}
	return BYTE;
}

void tok_stream_prime(struct tok_stream *st, const int32_t *ids, size_t n)
{
	size_t len;
	const char *s;
	for (size_t i = 0; i < n && !st->seen; i++)
		st->seen = reaches_decoder(st, ids[i], &s, &len);
	if (n > PRIME_TOKENS) {
		ids += n - PRIME_TOKENS;
		n = PRIME_TOKENS;
	}
	st->ids.n = 0;
	for (size_t i = 0; i < n; i++)
		tok_ids_push(&st->ids, ids[i]);
	st->prefix_off = 0;
	st->read_off = n;
}

static int only_spaces(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ')
			return 0;
	return 1;
}

static int ends_in_replacement(const struct strbuf *sb)
{
	return sb->len >= 3 && !memcmp(sb->buf + sb->len - 3, UTF8_REPLACEMENT, 3);
}

/* Emit cur beyond prev into delta; returns 1 if something was emitted. */
static int emit(struct tok_stream *st, struct strbuf *delta)
{
	size_t common = 0;
	if (st->cur.len <= st->prev.len)
		return 0;
	if (!memcmp(st->cur.buf, st->prev.buf, st->prev.len)) {
		common = st->prev.len;
	} else {
		/* the context decoded differently: continue after the common
		 * prefix, at a character boundary */
		while (common < st->prev.len && st->cur.buf[common] == st->prev.buf[common])
			common++;
		while (common > 0 && ((unsigned char)st->cur.buf[common] & 0xC0) == 0x80)
			common--;
	}
	sb_add(delta, st->cur.buf + common, st->cur.len - common);
	return 1;
}

static int decode_window(struct tok_stream *st)
{
	int rc;
	sb_reset(&st->prev);
	sb_reset(&st->cur);
	rc = tok_decode(st->tok, st->ids.v, st->read_off, st->skip, &st->prev);
	if (rc == 0)
		rc = tok_decode(st->tok, st->ids.v, st->ids.n, st->skip, &st->cur);
	return rc;
}

int tok_stream_put(struct tok_stream *st, int32_t id, struct strbuf *delta)
{
	int rc;
	enum kind kind = kind_of(st, id);

	if (kind == DROPPED)
		return 0;	/* changes no text */
	tok_ids_push(&st->ids, id);
	if (kind == BYTE || st->hold_all)
		return 0;	/* the run it belongs to may still change */
	rc = decode_window(st);
	if (rc < 0)
		return rc;
	size_t before = delta->len;
	if (ends_in_replacement(&st->cur) || !emit(st, delta))
		return 0;
	/* the new context: the tokens just emitted; while they are only
	 * spaces, the old context too (a Strip with start > 1 would reach
	 * through a context of fewer spaces into the next window's text) */
	size_t drop = only_spaces(delta->buf + before, delta->len - before) &&
		      st->ids.n < CONTEXT_MAX ? 0 : st->read_off;
	memmove(st->ids.v, st->ids.v + drop, (st->ids.n - drop) * sizeof(*st->ids.v));
	st->ids.n -= drop;
	st->prefix_off = 0;
	st->read_off = st->ids.n;
	return 0;
}

int tok_stream_flush(struct tok_stream *st, struct strbuf *delta)
{
	int rc = decode_window(st);
	if (rc < 0)
		return rc;
	if (!emit(st, delta))
		return 0;
	size_t drop = st->read_off;
	memmove(st->ids.v, st->ids.v + drop, (st->ids.n - drop) * sizeof(*st->ids.v));
	st->ids.n -= drop;
	st->read_off = st->ids.n;
	return 0;
}
