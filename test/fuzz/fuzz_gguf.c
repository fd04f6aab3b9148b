/*
 * fuzz_gguf.c - libFuzzer target for the GGUF reader (core/model/gguf.c)
 * and what is built from its metadata (core/model/gguf_tok.c).
 *
 *   make fuzz FUZZ_SECONDS=20     (seeds: test/fuzz/fuzz_gguf.seed/)
 *
 * Any byte string is parsed as a whole GGUF image.  A refused one must
 * come with an error message; an accepted one must describe tensors that
 * lie inside the image (each is read end to end here), every metadata
 * value must be readable through the getters (strings inside the image),
 * and the tokenizer.json made from its tokenizer metadata, when one is
 * made, must be one that dyn's tokenizer loads or refuses cleanly.
 */
#include "core/err.h"
#include "core/log.h"
#include "core/model/gguf.h"
#include "core/model/model_int.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_gguf: invariant broken: %s\n", what);
		abort();
	}
}

static int inside(const void *p, uint64_t n, const uint8_t *base, size_t size)
{
	const uint8_t *c = p;
	return c >= base && n <= size && c - base <= (ptrdiff_t)(size - n);
}

static void walk(const struct gguf *g, const uint8_t *base, size_t size)
{
	volatile uint8_t sink = 0;

	for (size_t i = 0; i < g->ntensors; i++) {
		const struct gguf_tensor *t = &g->tensors[i];
		check(inside(t->data, t->nbytes, base, size), "tensor outside the image");
		if (t->nbytes)
			sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
	}
	for (size_t i = 0; i < g->nkv; i++) {
		const struct gguf_kv *kv = &g->kv[i];
		const struct gguf_kv *arr;
		struct gguf_str s;
		int64_t v;
		double f;
		gguf_get_int(g, kv->key, &v);
		gguf_get_f64(g, kv->key, &f);
		if (gguf_get_str(g, kv->key, &s) == 1)
			check(inside(s.s, s.len, base, size), "string outside the image");
		if (gguf_get_arr(g, kv->key, GGUF_STRING, &arr) == 1)
			for (uint64_t k = 0; k < arr->n; k++) {
				s = gguf_arr_str(arr, k);
				check(inside(s.s, s.len, base, size), "array string outside the image");
			}
		if (gguf_get_arr(g, kv->key, GGUF_I32, &arr) == 1)
			for (uint64_t k = 0; k < arr->n; k++)
				sink ^= (uint8_t)gguf_arr_int(arr, k);
		if (gguf_get_arr(g, kv->key, GGUF_F32, &arr) == 1)
			for (uint64_t k = 0; k < arr->n; k++)
				sink ^= (uint8_t)(gguf_arr_f64(arr, k) != 0);
	}
	(void)sink;
	err_clear();
}

int LLVMFuzzerInitialize(int *argc, char **argv[])
{
	(void)argc;
	(void)argv;
	log_configure("error", NULL);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct strbuf json = STRBUF_INIT, cfg = STRBUF_INIT;
	struct gguf g;
	struct tok *tok;

	err_clear();
	if (gguf_parse(data, size, "fuzz.gguf", &g) < 0) {
		check(err_msg()[0] != 0, "refused without a message");
		return 0;
	}
	walk(&g, data, size);
	if (model_gguf_tokenizer(&g, &json, &cfg) == 0 &&
	    tok_load_mem(json.buf, json.len, cfg.buf, cfg.len, "fuzz", &tok) == 0)
		tok_free(tok);
	gguf_close(&g);
	sb_release(&json);
	sb_release(&cfg);
	return 0;
}
