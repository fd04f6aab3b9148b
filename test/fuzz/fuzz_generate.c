/*
 * fuzz_generate.c - libFuzzer target for the generate protocol's decoders
 * (core/proto/generate.h): what a worker reads from any client on the
 * request plane (requests, with their "disagg" member), and what a
 * frontend reads back (response frames, a prefill worker's kv_source).
 * Run with `make fuzz`; seeds in fuzz_generate.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks:
 *  - each decoder (request, response frame, kv_source) gets the input and
 *    either fails with a message or succeeds;
 *  - a decoded request has the token ids it counts and at most one of
 *    prefill and kv_source; its kv_source text is a valid kv_source; it
 *    re-encodes to a request that decodes to the same ids, limits and
 *    disagg member;
 *  - a decoded kv_source re-encodes to one that decodes to the same values;
 *  - a decoded frame's kv_source text is a valid kv_source.
 */
#include "core/err.h"
#include "core/proto/generate.h"
#include "core/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_generate: invariant broken: %s\n", what);
		abort();
	}
}

static int same_source(const struct gen_kv_source *a, const struct gen_kv_source *b)
{
	return a->worker == b->worker && a->handle == b->handle && !strcmp(a->tcp, b->tcp) &&
	       a->ucx == b->ucx && a->n_tokens == b->n_tokens && a->block_size == b->block_size &&
	       !strcmp(a->layout, b->layout);
}

static void kv_source(const char *s, size_t n)
{
	struct gen_kv_source a, b;
	if (gen_kv_source_parse(s, n, &a) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	struct strbuf sb = STRBUF_INIT;
	gen_kv_source_encode(&a, &sb);
	check(gen_kv_source_parse(sb.buf, sb.len, &b) == 0, "re-encoded kv_source decodes");
	check(same_source(&a, &b), "kv_source survives");
	sb_release(&sb);
}

static void request(const char *s, size_t n)
{
	struct gen_request r, r2;
	struct gen_kv_source src;
	if (gen_request_parse(s, n, &r) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	check(!r.n_tokens || r.token_ids, "token ids present when counted");
	check(!(r.prefill_only && r.kv_source), "prefill and kv_source exclude each other");
	if (r.kv_source)
		check(gen_kv_source_parse(r.kv_source, strlen(r.kv_source), &src) == 0,
		      "a request's kv_source is valid");
	struct strbuf sb = STRBUF_INIT;
	gen_request_encode(&r, &sb);
	check(gen_request_parse(sb.buf, sb.len, &r2) == 0, "re-encoded request decodes");
	check(r2.n_tokens == r.n_tokens &&
	      (!r.n_tokens || !memcmp(r.token_ids, r2.token_ids, r.n_tokens * sizeof(int32_t))),
	      "token ids survive");
	check(r2.max_tokens == r.max_tokens && r2.min_tokens == r.min_tokens &&
	      r2.logprobs == r.logprobs, "limits survive");
	check(r2.prefill_only == r.prefill_only && !r2.kv_source == !r.kv_source &&
	      (!r.kv_source || !strcmp(r.kv_source, r2.kv_source)), "disagg survives");
	gen_request_release(&r2);
	gen_request_release(&r);
	sb_release(&sb);
}

static void frame(const char *s, size_t n)
{
	struct gen_output o;
	struct gen_kv_source src;
	if (gen_output_parse(s, n, &o) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	check(!o.n || o.token_ids, "token ids present when counted");
	if (o.kv_source)
		check(gen_kv_source_parse(o.kv_source, strlen(o.kv_source), &src) == 0,
		      "a frame's kv_source is valid");
	gen_output_release(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the decoders take JSON text that need not end in NUL: copy without */
	char *s = malloc(size ? size : 1);
	memcpy(s, data, size);
	request(s, size);
	frame(s, size);
	kv_source(s, size);
	free(s);
	return 0;
}
