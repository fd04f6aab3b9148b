/*
 * added.c - finding added tokens in text, as HF's AddedVocabulary.
 *
 * Matching is leftmost-longest (HF uses an Aho-Corasick automaton with
 * MatchKind::LeftmostLongest): a byte trie walked from each position that
 * can start a token.  A match is then checked and widened as HF does:
 * single_word tokens must not touch word characters on either side (the
 * match is dropped, and scanning resumes after it), lstrip / rstrip tokens
 * swallow the whitespace before / after them.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void tok_trie_init(struct trie *t)
{
	memset(t, 0, sizeof(*t));
	t->empty = 1;
	t->alloc = 16;
	t->v = xmalloc(t->alloc * sizeof(*t->v));
	t->v[0] = (struct trie_node){ -1, -1, -1, 0 };
	t->n = 1;
}

void tok_trie_free(struct trie *t)
{
	free(t->v);
	memset(t, 0, sizeof(*t));
}

static int32_t child(const struct trie *t, int32_t node, uint8_t byte)
{
	for (int32_t c = t->v[node].child; c >= 0; c = t->v[c].sibling)
		if (t->v[c].byte == byte)
			return c;
	return -1;
}

void tok_trie_add(struct trie *t, const char *s, size_t len, int32_t id)
{
	int32_t node = 0;
	if (!len)
		return;
	for (size_t i = 0; i < len; i++) {
		uint8_t byte = (uint8_t)s[i];
		int32_t c = child(t, node, byte);
		if (c < 0) {
			if (t->n == t->alloc) {
				t->alloc *= 2;
				t->v = xrealloc(t->v, t->alloc * sizeof(*t->v));
			}
			c = (int32_t)t->n++;
			t->v[c] = (struct trie_node){ -1, t->v[node].child, -1, byte };
			t->v[node].child = c;
		}
		node = c;
	}
	if (t->v[node].id < 0)	/* the first token given for a text wins */
		t->v[node].id = id;
	t->first[(uint8_t)s[0]] = 1;
	t->empty = 0;
}

/* Longest token starting at s[0..n): its length, id in *id; 0 if none. */
static size_t longest(const struct trie *t, const char *s, size_t n, int32_t *id)
{
	int32_t node = 0;
	size_t best = 0;
	for (size_t i = 0; i < n; i++) {
		node = child(t, node, (uint8_t)s[i]);
		if (node < 0)
			break;
		if (t->v[node].id >= 0) {
			best = i + 1;
			*id = t->v[node].id;
		}
	}
	return best;
}

/* The character before s[pos] / at s[pos]. */
static uint32_t char_before(const char *s, size_t pos)
{
	size_t b = pos - 1;
	uint32_t cp;
	while (b > 0 && ((unsigned char)s[b] & 0xC0) == 0x80)
		b--;
	tok_utf8_decode((const unsigned char *)s + b, &cp);
	return cp;
}

static uint32_t char_at(const char *s, size_t pos)
{
	uint32_t cp;
	tok_utf8_decode((const unsigned char *)s + pos, &cp);
	return cp;
}

void tok_added_split(const struct tok *tok, const struct trie *t, const char *text,
		 size_t len, uint32_t base, int at_start, struct pieces *out)
{
	size_t start_offset = 0, pos = 0;

	if (t->empty) {
		if (len)
			tok_pieces_push(out, base, (uint32_t)len, -1, (uint32_t)at_start);
		return;
	}
	while (pos < len) {
		if (!t->first[(uint8_t)text[pos]]) {
			pos++;
			continue;
		}
		int32_t id = -1;
		size_t mlen = longest(t, text + pos, len - pos, &id);
		if (!mlen) {
			pos++;
			continue;
		}
		size_t start = pos, stop = pos + mlen;
		uint8_t f = tok->id_flags[id];
		pos = stop;
		if (f & TF_SINGLE_WORD) {
			int start_space = start == 0 || !tok_uni_is_word(char_before(text, start));
			int stop_space = stop == len || !tok_uni_is_word(char_at(text, stop));
			if (!start_space || !stop_space)
				continue;
		}
		if (f & TF_LSTRIP) {
			size_t ns = start;
			while (ns > 0) {
				size_t b = ns - 1;
				while (b > 0 && ((unsigned char)text[b] & 0xC0) == 0x80)
					b--;
				if (!tok_uni_is_whitespace(char_at(text, b)))
					break;
				ns = b;
			}
			start = ns > start_offset ? ns : start_offset;
		}
		if (f & TF_RSTRIP) {
			while (stop < len) {
				uint32_t cp;
				size_t l = tok_utf8_decode((const unsigned char *)text + stop, &cp);
				if (!tok_uni_is_whitespace(cp))
					break;
				stop += l;
			}
		}
		if (start_offset < start)
			tok_pieces_push(out, base + (uint32_t)start_offset,
				    (uint32_t)(start - start_offset), -1,
				    (uint32_t)(at_start && start_offset == 0));
		tok_pieces_push(out, base + (uint32_t)start, (uint32_t)(stop - start), id, 0);
		start_offset = stop;
	}
	if (start_offset < len)
		tok_pieces_push(out, base + (uint32_t)start_offset, (uint32_t)(len - start_offset),
			    -1, (uint32_t)(at_start && start_offset == 0));
}
