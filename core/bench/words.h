/*
 * words.h - deterministic prompt text with a known number of tokens.
 *
 * A prompt is a sequence of words, each written with one leading space
 * (" the cat sat").  With a tokenizer (bench_words_from_tok) the words are
 * taken from the model's own vocabulary: lower-case ASCII words whose
 * " word" text encodes to exactly one token on its own.  Because
 * byte-level and SentencePiece pre-tokenizers split text before each
 * space, a run of such words encodes to exactly one token per word, so
 * token counts are exact (bench_words_check() measures it, including any
 * constant the tokenizer adds at the start of a text).  Without a
 * tokenizer, a built-in list of common English words is used, each one
 * token in the GPT-2, Llama and Qwen vocabularies, so counts are close but
 * not guaranteed.
 *
 * bench_words_block(seed, n) always yields the same n words for the same
 * seed (a trace's hash id, a prefix group, a request number), so equal
 * seeds give equal token blocks and shared prefixes stay shared.
 *
 * Ownership: the word table owns its strings.  Immutable after creation:
 * safe to read from several threads.
 */
#ifndef DYN_BENCH_WORDS_H
#define DYN_BENCH_WORDS_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;
struct tok;

struct bench_words {
	char **w;		/* each " word" */
	size_t n;
	int from_tok;		/* words verified against a tokenizer */
};

/* The built-in English word list. */
void bench_words_builtin(struct bench_words *bw);
/* Words from a tokenizer's vocabulary (at least 16 needed, else -EINVAL). */
int bench_words_from_tok(struct bench_words *bw, const struct tok *tok);
void bench_words_free(struct bench_words *bw);

/* Append n words chosen deterministically from seed to out. */
void bench_words_block(const struct bench_words *bw, uint64_t seed, size_t n,
		       struct strbuf *out);

/*
 * Measure how text built by bench_words_block encodes: *offset is the
 * number of tokens a text has beyond its word count (e.g. a SentencePiece
 * start marker), the same for every length tried, else -EDOM (counts are
 * then not exact).
 */
int bench_words_check(const struct bench_words *bw, const struct tok *tok, long *offset);

/* splitmix64: the generator behind every random choice of dyn bench. */
static inline uint64_t bench_rand(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double bench_rand01(uint64_t *state)
{
	return (double)(bench_rand(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
