/*
 * wordpiece.c - the WordPiece model: one pre-tokenized word to ids, as
 * HF's models::wordpiece.
 *
 * Greedy longest match first: from the start of the word, the longest
 * prefix in the vocabulary is taken, then the longest continuation (looked
 * up with continuing_subword_prefix, "##"), and so on.  A word with more
 * than max_input_chars_per_word characters, or with a position where no
 * piece matches, becomes the single unk token.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static size_t count_chars(const char *w, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)w[i] & 0xC0) != 0x80;
	return n;
}

int tok_wordpiece_word(const struct tok *tok, const char *w, size_t len, struct tok_ids *out)
{
	const struct bpe *m = &tok->bpe;
	struct strbuf sub = STRBUF_INIT;
	size_t first = out->n, start = 0;

	if (count_chars(w, len) > m->max_input_chars)
		goto unk;
	while (start < len) {
		size_t end = len;
		int32_t id = -1;
		while (start < end) {
			sb_reset(&sub);
			if (start > 0)
				sb_add(&sub, m->prefix, m->prefix_len);
			sb_add(&sub, w + start, end - start);
			id = tok_strmap_get(&m->vocab, tok->pool, sub.buf, sub.len);
			if (id >= 0)
				break;
			do	/* drop the last character */
				end--;
			while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
		}
		if (id < 0)
			goto unk;
		tok_ids_push(out, id);
		start = end;
	}
	sb_release(&sub);
	return 0;
unk:
	sb_release(&sub);
	out->n = first;
	if (m->unk_id < 0)
		return err_set(-EINVAL, "WordPiece: the unk token \"%s\" is not in the vocabulary",
			       m->unk ? m->unk : "");
	tok_ids_push(out, m->unk_id);
	return 0;
}
