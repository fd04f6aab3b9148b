/*
 * fuzz_grammar.c - libFuzzer target for the grammar compilers
 * (core/grammar): the first byte picks the front end (GBNF, regex, choice,
 * JSON Schema, tool calls), the rest is the spec.  Run with `make fuzz`;
 * seeds in fuzz_grammar.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks:
 *  - compiling never crashes: a grammar, or an error with a message;
 *  - a compiled grammar can be matched: masks over a small vocabulary
 *    (every byte, and a few multi-byte tokens) agree with accepting each
 *    allowed token, along a path of allowed tokens, and terminate.
 */
#include "core/err.h"
#include "core/grammar/grammar.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_grammar: invariant broken: %s\n", what);
		abort();
	}
}

#define NV 264

static struct gvocab *vocab(void)
{
	static struct gvocab *v;
	static char bytes[256];
	static const char *ptr[NV];
	static uint32_t lens[NV];
	static const char *multi[] = { "\": ", "{\"", "true", "\\u00", "\xc3\xa9", "ab", "12" };
	if (v)
		return v;
	for (int i = 0; i < 256; i++) {
		bytes[i] = (char)i;
		ptr[i] = &bytes[i];
		lens[i] = 1;
	}
	for (int i = 0; i < 7; i++) {
		ptr[256 + i] = multi[i];
		lens[256 + i] = (uint32_t)strlen(multi[i]);
	}
	int32_t eos = NV - 1;
	ptr[eos] = NULL;
	lens[eos] = 0;
	v = gvocab_new(NV, ptr, lens, &eos, 1);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum grammar_kind kinds[] = {
		GRAMMAR_GBNF, GRAMMAR_REGEX, GRAMMAR_CHOICE, GRAMMAR_JSON_SCHEMA, GRAMMAR_TOOL_CALLS,
	};
	if (size < 1 || size > 4096)
		return 0;
	struct grammar *g;
	if (grammar_compile(kinds[data[0] % 5], (const char *)data + 1, size - 1, data[0] & 0x80 ?
			    GRAMMAR_LENIENT : 0, &g) < 0) {
		check(err_msg()[0] != 0, "an error without a message");
		return 0;
	}
	struct gvocab *v = vocab();
	struct gmatch *m = gmatch_new(g, v);
	uint32_t bits[(NV + 31) / 32];
	for (int step = 0; step < 16 && !gmatch_done(m); step++) {
		int n = gmatch_mask(m, bits), pick = -1;
		for (int t = 0; t < NV && pick < 0; t++)
			if (bits[t >> 5] >> (t & 31) & 1)
				pick = t;
		check((n > 0) == (pick >= 0), "the mask count");
		if (pick < 0)
			break;
		check(gmatch_accept(m, pick) == 0, "an allowed token refused");
	}
	gmatch_free(m);
	grammar_unref(g);
	return 0;
}
