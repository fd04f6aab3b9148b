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
 * This equals the full decode whenever decoding is local, which holds for
 * every decoder here except one corner of HF's ByteFallback: a run of
 * byte tokens that is not valid UTF-8 decodes to one U+FFFD per byte for
 * the whole run, so characters the stream already emitted from the start
 * of such a run (never produced by encoding text) are not taken back.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define PRIME_TOKENS 8

struct tok_stream {
	const struct tok *tok;
	int skip;
	struct tok_ids ids;		/* ids from prefix_off on */
	size_t prefix_off, read_off;	/* indexes into ids */
	struct strbuf prev, cur;
};

struct tok_stream *tok_stream_new(const struct tok *tok, int skip_special_tokens)
{
	struct tok_stream *st = xcalloc(1, sizeof(*st));
	st->tok = tok;
	st->skip = skip_special_tokens;
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

void tok_stream_prime(struct tok_stream *st, const int32_t *ids, size_t n)
{
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

	tok_ids_push(&st->ids, id);
	rc = decode_window(st);
	if (rc < 0)
		return rc;
	if (ends_in_replacement(&st->cur) || !emit(st, delta))
		return 0;
	/* the new context: the tokens just emitted */
	size_t drop = st->read_off;
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
