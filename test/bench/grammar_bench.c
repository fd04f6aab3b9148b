/*
 * grammar_bench.c - the cost of structured output (core/grammar): compile
 * time and the time to compute the allowed-token mask per generated
 * token.  Driven by grammar_bench.py: reads {"tokenizer":dir,
 * "vocab_size":N,"eos":[..],"kind":K,"spec":S,"text":T} on stdin, walks
 * the tokens of T (a valid output) computing the mask before each, and
 * prints {"compile_ms":..,"n_tokens":..,"cold_us":..,"warm_us":..,
 * "warm_max_us":..}: cold is the first pass (the per-position token cache
 * being filled), warm the passes after it, each with a new matcher over
 * the same compiled grammar ("reps" of them, default 20): per token, the
 * mean of the least disturbed pass (the machine is shared) and the worst
 * token of any pass.
 */
#include "core/err.h"
#include "core/grammar/grammar.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double pass(struct grammar *g, struct gvocab *v, const struct tok_ids *ids,
		   uint32_t *bits, double *worst)
{
	struct gmatch *m = gmatch_new(g, v);
	double total = 0;
	*worst = 0;
	for (size_t i = 0; i < ids->n; i++) {
		uint64_t t0 = mono_ns();
		gmatch_mask(m, bits);
		double us = (double)(mono_ns() - t0) / 1e3;
		total += us;
		if (us > *worst)
			*worst = us;
		if (gmatch_accept(m, ids->v[i]) < 0) {
			fprintf(stderr, "token %zu of the text is not allowed: %s\n", i, err_msg());
			exit(1);
		}
	}
	gmatch_free(m);
	return total / (double)(ids->n ? ids->n : 1);
}

int main(void)
{
	struct strbuf in = STRBUF_INIT;
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof(buf), stdin)) > 0)
		sb_add(&in, buf, n);
	cJSON *req = cJSON_ParseWithLength(in.buf, in.len);
	struct tok *tok;
	if (!req || tok_load(cJSON_GetObjectItem(req, "tokenizer")->valuestring, &tok) < 0) {
		fprintf(stderr, "bad request or tokenizer: %s\n", err_msg());
		return 1;
	}
	int vs = cJSON_GetObjectItem(req, "vocab_size")->valueint;
	int32_t eos[8];
	int n_eos = 0;
	const cJSON *it;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(req, "eos"))
		if (n_eos < 8)
			eos[n_eos++] = it->valueint;
	struct gvocab *v = gvocab_from_tok(tok, vs, eos, n_eos);
	const char *spec = cJSON_GetObjectItem(req, "spec")->valuestring;
	const char *text = cJSON_GetObjectItem(req, "text")->valuestring;
	struct grammar *g;
	uint64_t t0 = mono_ns();
	if (grammar_compile(grammar_kind_parse(cJSON_GetObjectItem(req, "kind")->valuestring),
			    spec, strlen(spec), 0, &g) < 0) {
		fprintf(stderr, "compile: %s\n", err_msg());
		return 1;
	}
	double compile_ms = (double)(mono_ns() - t0) / 1e6;
	struct tok_ids ids = TOK_IDS_INIT;
	tok_encode(tok, text, strlen(text), 0, &ids);
	tok_ids_push(&ids, eos[0]);
	uint32_t *bits = xcalloc(((size_t)vs + 31) / 32, sizeof(uint32_t));
	const cJSON *jr = cJSON_GetObjectItem(req, "reps");
	int reps = cJSON_IsNumber(jr) && jr->valueint > 0 ? jr->valueint : 20;
	double worst_cold, worst = 0, warm = 0;
	double cold = pass(g, v, &ids, bits, &worst_cold);
	for (int r = 0; r < reps; r++) {
		double w, mean = pass(g, v, &ids, bits, &w);
		if (!r || mean < warm)
			warm = mean;
		if (w > worst)
			worst = w;
	}
	printf("{\"compile_ms\":%.3f,\"n_tokens\":%zu,\"cold_us\":%.1f,\"cold_max_us\":%.1f,"
	       "\"warm_us\":%.1f,\"warm_max_us\":%.1f}\n", compile_ms, ids.n, cold, worst_cold,
	       warm, worst);
	free(bits);
	tok_ids_release(&ids);
	grammar_unref(g);
	gvocab_free(v);
	tok_free(tok);
	cJSON_Delete(req);
	sb_release(&in);
	return 0;
}
