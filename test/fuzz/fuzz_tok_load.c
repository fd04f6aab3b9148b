/*
 * fuzz_tok_load.c - libFuzzer target for the tokenizer.json loader
 * (core/tok/tok.h).  Run with `make fuzz`; seeds in fuzz_tok_load.seed/.
 *
 * The input is a tokenizer.json file.  A bad one must be refused with an
 * error message, never a crash, hang or sanitizer report.  A good one is
 * used: a few texts are encoded (with and without special tokens),
 * decoded, and streamed, and these invariants are checked:
 *  - every id encode returns is a valid id of the tokenizer;
 *  - decode returns valid UTF-8;
 *  - the streamed deltas are valid UTF-8 and add up to the full decode,
 *    both for ids that came from encoding text and for arbitrary ids
 *    (taken from the input bytes, unknown ids included).
 */
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/tok/utf8.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_tok_load: invariant broken: %s\n", what);
		abort();
	}
}

static const char *const texts[] = {
	"Hello world! It's 2024, isn't it?",
	"<s>x</s> <|endoftext|>  \n\t  tabs\tand   spaces",
	"\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80 caf\xC3\xA9 e\xCC\x81",
	"bad \xFF\xFE utf-8 \xE4\xBD",
	"",
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_configure("error", NULL);	/* id-mismatch warnings would flood the log */
	return 0;
}

/* Decode ids in full and streamed (with and without skipping special
 * tokens); the two must agree exactly. */
static void check_decode(const struct tok *tok, const struct tok_ids *ids, int skip)
{
	struct strbuf text = STRBUF_INIT, streamed = STRBUF_INIT, delta = STRBUF_INIT;
	int decoded = tok_decode(tok, ids->v, ids->n, skip, &text) == 0;

	if (decoded)
		check(tok_utf8_is_valid(text.buf, text.len), "decode gave invalid UTF-8");
	struct tok_stream *st = tok_stream_new(tok, skip);
	int ok = 1;
	for (size_t k = 0; k <= ids->n && ok; k++) {
		sb_reset(&delta);
		ok = (k < ids->n ? tok_stream_put(st, ids->v[k], &delta) :
		      tok_stream_flush(st, &delta)) == 0;
		check(tok_utf8_is_valid(delta.buf, delta.len), "a stream delta is invalid UTF-8");
		sb_add(&streamed, delta.buf, delta.len);
	}
	tok_stream_free(st);
	/* a decoder error (a regex limit) may hit one and not the other */
	if (ok && decoded)
		check(streamed.len == text.len && !memcmp(streamed.buf, text.buf, text.len),
		      "the streamed deltas differ from the full decode");
	sb_release(&text);
	sb_release(&streamed);
	sb_release(&delta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct tok *tok = NULL;

	if (tok_load_mem((const char *)data, size, NULL, 0, "fuzz", &tok) < 0) {
		check(err_msg()[0] != '\0', "an error without a message");
		check(tok == NULL, "an error with a tokenizer");
		return 0;
	}
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		for (int special = 0; special < 2; special++) {
			struct tok_ids ids = TOK_IDS_INIT;
			if (tok_encode(tok, texts[i], strlen(texts[i]), special, &ids) < 0) {
				check(err_msg()[0] != '\0', "encode error without a message");
				tok_ids_release(&ids);
				continue;
			}
			for (size_t k = 0; k < ids.n; k++)
				check(ids.v[k] >= 0 && (size_t)ids.v[k] < tok_vocab_size(tok),
				      "encode returned an unknown id");
			check_decode(tok, &ids, special);
			tok_ids_release(&ids);
		}
	}
	/* arbitrary ids: the input's bytes, over the vocabulary and a little
	 * beyond it (unknown ids are skipped) */
	struct tok_ids ids = TOK_IDS_INIT;
	size_t vocab = tok_vocab_size(tok);
	for (size_t k = 0; k < size && ids.n < 64; k++)
		tok_ids_push(&ids, (int32_t)((data[k] * 131u + k) % (vocab + 2)));
	check_decode(tok, &ids, 0);
	check_decode(tok, &ids, 1);
	tok_ids_release(&ids);
	tok_free(tok);
	return 0;
}
