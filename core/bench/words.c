/*
 * words.c - deterministic prompt words (see words.h).
 */
#include "core/bench/words.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TOK_WORDS 8192

static const char *const builtin[] = {
	"the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with",
	"be", "by", "on", "not", "he", "this", "are", "or", "his", "from", "at", "which",
	"but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we",
	"can", "her", "has", "there", "been", "if", "more", "when", "will", "would", "who",
	"so", "no", "time", "people", "water", "world", "year", "day", "way", "man",
	"thing", "woman", "life", "child", "house", "school", "state", "family", "student",
	"group", "country", "problem", "hand", "part", "place", "case", "week", "company",
	"system", "program", "question", "work", "government", "number", "night", "point",
	"home", "room", "mother", "area", "money", "story", "fact", "month", "lot", "right",
	"study", "book", "eye", "job", "word", "business", "issue", "side", "kind", "head",
	"service", "friend", "father", "power", "hour", "game", "line", "end", "member",
	"law", "car", "city", "community", "name", "president", "team", "minute", "idea",
	"kid", "body", "information", "back", "parent", "face", "others", "level", "office",
	"door", "health", "person", "art", "war", "history", "party", "result", "change",
	"morning", "reason", "research", "girl", "guy", "moment", "air", "teacher", "force",
	"education", "good", "new", "first", "last", "long", "great", "little", "own",
	"other", "old", "big", "high", "different", "small", "large", "next", "early",
	"young", "important", "few", "public", "bad", "same", "able", "red", "blue", "green",
	"light", "river", "mountain", "tree", "garden", "music", "market", "road", "table",
};

void bench_words_builtin(struct bench_words *bw)
{
	bw->n = ARRAY_SIZE(builtin);
	bw->w = xcalloc(bw->n, sizeof(*bw->w));
	bw->from_tok = 0;
	for (size_t i = 0; i < bw->n; i++) {
		size_t len = strlen(builtin[i]);
		bw->w[i] = xmalloc(len + 2);
		bw->w[i][0] = ' ';
		memcpy(bw->w[i] + 1, builtin[i], len + 1);
	}
}

static int all_lower(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 'a' || s[i] > 'z')
			return 0;
	return 1;
}

int bench_words_from_tok(struct bench_words *bw, const struct tok *tok)
{
	size_t V = tok_vocab_size(tok), cap = 256;
	struct strbuf text = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;

	memset(bw, 0, sizeof(*bw));
	bw->w = xcalloc(cap, sizeof(*bw->w));
	bw->from_tok = 1;
	for (size_t id = 0; id < V && bw->n < MAX_TOK_WORDS; id++) {
		if (tok_is_special(tok, (int32_t)id))
			continue;
		int32_t i32 = (int32_t)id;
		sb_reset(&text);
		if (tok_decode(tok, &i32, 1, 1, &text) < 0)
			continue;
		/* The token must stand for " word": decode drops a leading
		 * SentencePiece space at the start of a text, so accept
		 * "word" too when the piece itself starts with U+2581. */
		size_t plen;
		const char *piece = tok_id_to_token(tok, i32, &plen);
		const char *w = text.buf;
		size_t wl = text.len;
		if (wl && w[0] == ' ') {
			w++, wl--;
		} else if (!(piece && plen >= 3 && !memcmp(piece, "\xe2\x96\x81", 3))) {
			continue;
		}
		if (wl < 1 || wl > 12 || !all_lower(w, wl))
			continue;
		struct strbuf cand = STRBUF_INIT;
		sb_addch(&cand, ' ');
		sb_add(&cand, w, wl);
		/* " word word": the second copy must be exactly [id]. */
		ids.n = 0;
		struct strbuf two = STRBUF_INIT;
		sb_add(&two, cand.buf, cand.len);
		sb_add(&two, cand.buf, cand.len);
		size_t n1;
		int ok = tok_encode(tok, cand.buf, cand.len, 0, &ids) == 0;
		n1 = ids.n;
		ids.n = 0;
		ok = ok && tok_encode(tok, two.buf, two.len, 0, &ids) == 0 &&
		     ids.n == n1 + 1 && ids.v[ids.n - 1] == i32;
		sb_release(&two);
		if (!ok) {
			sb_release(&cand);
			continue;
		}
		if (bw->n == cap) {
			cap *= 2;
			bw->w = xrealloc(bw->w, cap * sizeof(*bw->w));
		}
		bw->w[bw->n++] = sb_detach(&cand, NULL);
	}
	sb_release(&text);
	tok_ids_release(&ids);
	if (bw->n < 16) {
		size_t n = bw->n;
		bench_words_free(bw);
		return err_set(-EINVAL, "the tokenizer has only %zu single-token lower-case "
			       "words (16 needed to build prompts)", n);
	}
	return 0;
}

void bench_words_free(struct bench_words *bw)
{
	for (size_t i = 0; i < bw->n; i++)
		free(bw->w[i]);
	free(bw->w);
	memset(bw, 0, sizeof(*bw));
}

void bench_words_block(const struct bench_words *bw, uint64_t seed, size_t n,
		       struct strbuf *out)
{
	uint64_t st = seed * 0x2545f4914f6cdd1dull + 1;
	for (size_t i = 0; i < n; i++) {
		const char *w = bw->w[bench_rand(&st) % bw->n];
		sb_adds(out, w);
	}
}

int bench_words_check(const struct bench_words *bw, const struct tok *tok, long *offset)
{
	static const size_t lens[] = { 1, 7, 100, 1000 };
	struct strbuf text = STRBUF_INIT;
	struct tok_ids ids = TOK_IDS_INIT;
	long off = 0;
	int rc = 0;

	for (size_t i = 0; i < ARRAY_SIZE(lens) && !rc; i++) {
		for (uint64_t seed = 1; seed <= 3 && !rc; seed++) {
			sb_reset(&text);
			ids.n = 0;
			bench_words_block(bw, seed * 7919 + i, lens[i], &text);
			rc = tok_encode(tok, text.buf, text.len, 0, &ids);
			if (rc < 0)
				break;
			long o = (long)ids.n - (long)lens[i];
			if (i == 0 && seed == 1)
				off = o;
			else if (o != off)
				rc = err_set(-EDOM, "prompt token counts are not exact with this "
					     "tokenizer (%zu words gave %zu tokens)", lens[i], ids.n);
		}
	}
	sb_release(&text);
	tok_ids_release(&ids);
	if (!rc)
		*offset = off;
	return rc;
}
