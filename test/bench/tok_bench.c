/*
 * tok_bench.c - tokenizer throughput: load time, then single-threaded
 * encoding and decoding of a list of documents.  Driven by tok_bench.py,
 * which measures Hugging Face tokenizers on the same documents.
 *
 *   tok_bench MODEL_DIR DOCS.jsonl [SECONDS]
 *
 * DOCS.jsonl: one JSON string per line.  Prints one JSON object:
 * {"load_ms", "docs", "bytes", "tokens", "encode_s", "encode_mb_s",
 *  "decode_mb_s", "ids_hash"} where ids_hash is an FNV-1a hash over all ids
 * (lets the driver check that both sides produced the same tokens).
 */
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/json.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct doc {
	char *s;
	size_t len;
};

int main(int argc, char **argv)
{
	struct strbuf file = STRBUF_INIT;
	struct doc *docs = NULL;
	size_t ndocs = 0, bytes = 0;
	double seconds = argc > 3 ? atof(argv[3]) : 2.0;
	struct tok *tok;

	if (argc < 3) {
		fprintf(stderr, "usage: tok_bench MODEL_DIR DOCS.jsonl [SECONDS]\n");
		return 2;
	}
	uint64_t t0 = mono_ns();
	if (tok_load(argv[1], &tok) < 0) {
		fprintf(stderr, "tok_bench: %s\n", err_msg());
		return 1;
	}
	double load_ms = (double)(mono_ns() - t0) / 1e6;
	if (sb_read_file(&file, argv[2], 1u << 30) < 0) {
		fprintf(stderr, "tok_bench: %s\n", err_msg());
		return 1;
	}
	for (char *p = file.buf, *end = file.buf + file.len; p < end;) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		struct tj_doc d;
		if (n && tok_tj_parse(&d, p, n, TJ_SURROGATEESCAPE, argv[2]) == 0 &&
		    d.root.type == TJ_STR) {
			docs = xrealloc(docs, (ndocs + 1) * sizeof(*docs));
			docs[ndocs].s = xstrndup(d.root.u.s, d.root.len);
			docs[ndocs].len = d.root.len;
			bytes += d.root.len;
			ndocs++;
			tok_tj_free(&d);
		}
		p += n + 1;
	}

	/* encode: repeat the whole set until `seconds` have passed */
	struct tok_ids ids = TOK_IDS_INIT;
	size_t tokens = 0, rounds = 0;
	uint64_t hash = 1469598103934665603ull;
	uint64_t start = mono_ns(), now;
	do {
		for (size_t i = 0; i < ndocs; i++) {
			ids.n = 0;
			if (tok_encode(tok, docs[i].s, docs[i].len, 0, &ids) < 0) {
				fprintf(stderr, "tok_bench: %s\n", err_msg());
				return 1;
			}
			if (rounds == 0) {
				tokens += ids.n;
				for (size_t k = 0; k < ids.n; k++) {
					hash ^= (uint32_t)ids.v[k];
					hash *= 1099511628211ull;
				}
			}
		}
		rounds++;
		now = mono_ns();
	} while ((double)(now - start) / 1e9 < seconds);
	double enc_s = (double)(now - start) / 1e9 / (double)rounds;

	/* decode the ids of every document */
	struct tok_ids *all = xcalloc(ndocs, sizeof(*all));
	for (size_t i = 0; i < ndocs; i++)
		tok_encode(tok, docs[i].s, docs[i].len, 0, &all[i]);
	struct strbuf text = STRBUF_INIT;
	size_t drounds = 0;
	start = mono_ns();
	do {
		for (size_t i = 0; i < ndocs; i++) {
			sb_reset(&text);
			tok_decode(tok, all[i].v, all[i].n, 0, &text);
		}
		drounds++;
		now = mono_ns();
	} while ((double)(now - start) / 1e9 < seconds / 2);
	double dec_s = (double)(now - start) / 1e9 / (double)drounds;

	printf("{\"load_ms\": %.1f, \"docs\": %zu, \"bytes\": %zu, \"tokens\": %zu, "
	       "\"encode_s\": %.6f, \"encode_mb_s\": %.2f, \"decode_mb_s\": %.2f, "
	       "\"ids_hash\": \"%016llx\"}\n",
	       load_ms, ndocs, bytes, tokens, enc_s, (double)bytes / enc_s / 1e6,
	       (double)bytes / dec_s / 1e6, (unsigned long long)hash);
	for (size_t i = 0; i < ndocs; i++) {
		free(docs[i].s);
		tok_ids_release(&all[i]);
	}
	free(all);
	free(docs);
	tok_ids_release(&ids);
	sb_release(&text);
	sb_release(&file);
	tok_free(tok);
	return 0;
}
