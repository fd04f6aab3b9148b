/*
 * fuzz_parse.c - libFuzzer target for the tool-call and reasoning
 * parsers (core/parse/parse.h).  Input: a byte choosing the tool-call
 * format, a byte choosing the reasoning format (and whether the output
 * starts inside the reasoning), then the model's output.  Run with
 * `make fuzz`; seeds in fuzz_parse.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks:
 *  - the events of the output fed whole equal those of it fed in pieces
 *    (cut where the input says) and byte by byte;
 *  - every call has a name and arguments that are a JSON object;
 *  - no text is made up: content and reasoning together never hold more
 *    than the output.
 */
#include "core/parse/parse.h"
#include "core/strbuf.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_parse: invariant broken: %s\n", what);
		abort();
	}
}

static const char tools[] =
	"[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\","
	"\"properties\":{\"a\":{\"type\":\"integer\"},\"k\":{\"type\":\"string\"}}}}}]";

/* The events joined into one text; mode 0 whole, 1 cut where the input
 * says, 2 byte by byte. */
static void run(int tool, int rsn, int in, const uint8_t *s, size_t n, int mode,
		struct strbuf *out)
{
	struct parser *p = parser_new(tool, tools, rsn, in);
	struct parse_evs e = { 0 };
	size_t at = 0;
	for (size_t i = 1; i <= n; i++)
		if (i == n || mode == 2 || (mode == 1 && (s[i] + i) % 5 == 0)) {
			parser_feed(p, (const char *)s + at, i - at, &e);
			at = i;
		}
	parser_finish(p, &e);
	size_t plain = 0;
	for (size_t i = 0; i < e.n; i++) {
		const struct parse_ev *v = &e.v[i];
		sb_addf(out, "%d:", v->kind);
		sb_add(out, v->text, v->len);
		if (v->kind == PARSE_CALL) {
			cJSON *a = cJSON_Parse(v->text);
			check(a && cJSON_IsObject(a), "call arguments not a JSON object");
			check(v->name && v->name[0], "call without a name");
			cJSON_Delete(a);
			sb_addf(out, "|%s|%s", v->name, v->id ? v->id : "");
		} else {
			check(v->len > 0, "empty text event");
			plain += v->len;
		}
		sb_addch(out, '\n');
	}
	check(plain <= n, "more content and reasoning than output");
	parse_evs_release(&e);
	parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	int tool = data[0] % PARSE_TOOL_N, rsn = data[1] % PARSE_RSN_N, in = (data[1] >> 4) & 1;
	const uint8_t *s = data + 2;
	size_t n = size - 2;
	struct strbuf whole = STRBUF_INIT, cut = STRBUF_INIT, bytes = STRBUF_INIT;
	run(tool, rsn, in, s, n, 0, &whole);
	run(tool, rsn, in, s, n, 1, &cut);
	run(tool, rsn, in, s, n, 2, &bytes);
	check(whole.len == cut.len && !memcmp(whole.buf, cut.buf, whole.len),
	      "fed in pieces differs from fed whole");
	check(whole.len == bytes.len && !memcmp(whole.buf, bytes.buf, whole.len),
	      "fed byte by byte differs from fed whole");
	sb_release(&whole);
	sb_release(&cut);
	sb_release(&bytes);
	return 0;
}
