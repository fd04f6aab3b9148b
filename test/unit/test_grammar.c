/*
 * test_grammar.c - the grammar front ends and matcher (core/grammar):
 * sentences accepted and non-sentences refused, as Python's re and the
 * JSON Schema definitions say (cases written from them), compile errors
 * named, masks consistent with accepting token by token (also the
 * cached masks and those prepared on another thread, on stacks deeper
 * than the cache's key).
 *
 * With "--masks" it is the helper of test/integration/grammar_masks.py
 * instead: reads one JSON request on stdin ({"tokenizer":path,
 * "vocab_size":N,"eos":[..],"kind":K,"spec":S,"prefixes":[..]}) and prints
 * {"masks":[[ids..]|null,..],"accepting":[..]} (null: the prefix itself
 * is refused).
 */
#include "check.h"
#include "core/grammar/grammar.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "core/tok/tok.h"

#include <cjson/cJSON.h>
#include <pthread.h>

static int matches(enum grammar_kind k, const char *spec, const char *text)
{
	struct grammar *g;
	if (grammar_compile(k, spec, strlen(spec), 0, &g) < 0) {
		fprintf(stderr, "compile %s: %s\n", spec, err_msg());
		return -1;
	}
	/* a one-byte vocabulary per byte value is enough to drive the matcher */
	static char bytes[256][1];
	static const char *ptr[256];
	static uint32_t lens[256];
	for (int i = 0; i < 256; i++) {
		bytes[i][0] = (char)i;
		ptr[i] = bytes[i];
		lens[i] = 1;
	}
	struct gvocab *v = gvocab_new(256, ptr, lens, NULL, 0);
	struct gmatch *m = gmatch_new(g, v);
	int ok = gmatch_accept_bytes(m, text, strlen(text)) == 0 && gmatch_accepting(m);
	gmatch_free(m);
	gvocab_free(v);
	grammar_unref(g);
	return ok;
}

TEST(regex_accepts_as_python_re_fullmatch)
{
	static const struct { const char *re, *s; int ok; } cases[] = {
		{ "abc", "abc", 1 }, { "abc", "ab", 0 }, { "a|bc", "bc", 1 },
		{ "(ab)+", "ababab", 1 }, { "(ab)+", "", 0 }, { "a{2,3}", "aaa", 1 },
		{ "a{2,3}", "aaaa", 0 }, { "a{2}", "aa", 1 }, { "a{2,}", "aaaaaa", 1 },
		{ "[a-c]*x", "abcabx", 1 }, { "[^a-c]", "d", 1 }, { "[^a-c]", "b", 0 },
		{ "\\d{3}-\\d{4}", "555-1234", 1 }, { "\\w+@\\w+\\.com", "bob@x.com", 1 },
		{ "\\s", " ", 1 }, { "\\S", " ", 0 }, { ".", "\n", 0 }, { ".", "\xc3\xa9", 1 },
		{ "[\\u00e0-\\u00ff]", "\xc3\xa9", 1 }, { "(?:x|y)?z", "z", 1 },
		{ "^ab$", "ab", 1 }, { "a.*?b", "axxb", 1 }, { "[-a]", "-", 1 },
		{ "\\.", "a", 0 }, { "\\.", ".", 1 }, { "x{,2}", "x{,2}", 1 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int got = matches(GRAMMAR_REGEX, cases[i].re, cases[i].s);
		CHECK_MSG(got == cases[i].ok, "regex %s on '%s': %d", cases[i].re, cases[i].s, got);
	}
	/* 4-byte characters through the UTF-8 range split */
	CHECK(matches(GRAMMAR_REGEX, "[\\x{1F600}-\\x{1F64F}]+", "\xf0\x9f\x98\x80\xf0\x9f\x99\x8f") == 1);
	CHECK(matches(GRAMMAR_REGEX, "[^a]", "\xf0\x9f\x98\x80") == 1);
	CHECK(matches(GRAMMAR_REGEX, "[^a]", "\xed\xa0\x80") == 0);	/* a surrogate */
}

TEST(gbnf_accepts_its_language)
{
	const char *g =
		"# arithmetic\n"
		"root ::= expr\n"
		"expr ::= term ( [+-] term )*\n"
		"term ::= num | \"(\" expr \")\"\n"
		"num  ::= [0-9]+\n";
	CHECK(matches(GRAMMAR_GBNF, g, "1+(2-30)") == 1);
	CHECK(matches(GRAMMAR_GBNF, g, "1+") == 0);
	CHECK(matches(GRAMMAR_GBNF, g, "((1))") == 1);
	CHECK(matches(GRAMMAR_GBNF, "root ::= \"a\" x{2,3}\nx ::= \"b\" | \"\"", "abb") == 1);
	CHECK(matches(GRAMMAR_GBNF, "root ::= [\\x41-\\x43] \"\\u00e9\"", "B\xc3\xa9") == 1);
	CHECK(matches(GRAMMAR_GBNF, "root ::= . .", "\n\xe2\x82\xac") == 1);
	/* nullable star: the closure must not loop */
	CHECK(matches(GRAMMAR_GBNF, "root ::= (\"a\"?)* \"b\"", "aab") == 1);
}

TEST(choice_is_exactly_one_string)
{
	const char *c = "[\"yes\",\"no\",\"né\"]";
	CHECK(matches(GRAMMAR_CHOICE, c, "yes") == 1);
	CHECK(matches(GRAMMAR_CHOICE, c, "né") == 1);
	CHECK(matches(GRAMMAR_CHOICE, c, "ye") == 0);
	CHECK(matches(GRAMMAR_CHOICE, c, "yesno") == 0);
}

TEST(json_schema_accepts_instances)
{
	const char *s =
		"{\"type\":\"object\",\"properties\":{"
		"\"name\":{\"type\":\"string\",\"maxLength\":5},"
		"\"age\":{\"type\":\"integer\",\"minimum\":18,\"maximum\":130},"
		"\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":2},"
		"\"kind\":{\"$ref\":\"#/$defs/k\"}},"
		"\"required\":[\"name\",\"age\"],"
		"\"$defs\":{\"k\":{\"anyOf\":[{\"type\":\"null\"},{\"const\":{\"x\":[1,true]}}]}}}";
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"bob\", \"age\": 18}") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"bob\", \"age\": 130, \"tags\": [\"a\", \"b\"]}") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"bob\", \"age\": 131}") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"bob\", \"age\": 17}") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"bobbie\", \"age\": 20}") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"age\": 20}") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"b\", \"age\": 20, \"kind\": {\"x\": [1, true]}}") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"b\", \"age\": 20, \"kind\": null}") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, s, "{\"name\": \"b\", \"age\": 20, \"tags\": [\"a\", \"a\", \"a\"]}") == 0);
	CHECK(matches(GRAMMAR_JSON_OBJECT, "", "{\"a\": [1, {\"b\": null}], \"c\": \"\\u00e9\\n\"}") == 1);
	CHECK(matches(GRAMMAR_JSON_OBJECT, "", "[1]") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":-25,\"maximum\":1234}", "-25") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":-25,\"maximum\":1234}", "-26") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":-25,\"maximum\":1234}", "1235") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"minimum\":-25,\"maximum\":1234}", "999") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"exclusiveMinimum\":7}", "8") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"exclusiveMinimum\":7}", "7") == 0);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"integer\",\"exclusiveMinimum\":7}", "123456789") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"format\":\"date\"}", "\"2024-02-29\"") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}$\"}", "\"AB\"") == 1);
	CHECK(matches(GRAMMAR_JSON_SCHEMA, "{\"type\":[\"string\",\"null\"]}", "null") == 1);
}

TEST(integer_ranges_match_exactly)
{
	/* every value in and around a few ranges, against the arithmetic */
	static const long r[][2] = { { 0, 0 }, { 3, 17 }, { -120, -3 }, { -9, 250 }, { 95, 1005 } };
	for (size_t k = 0; k < sizeof(r) / sizeof(r[0]); k++) {
		char spec[128], num[32];
		snprintf(spec, sizeof(spec), "{\"type\":\"integer\",\"minimum\":%ld,\"maximum\":%ld}",
			 r[k][0], r[k][1]);
		for (long v = r[k][0] - 30; v <= r[k][1] + 30; v++) {
			snprintf(num, sizeof(num), "%ld", v);
			int want = v >= r[k][0] && v <= r[k][1];
			CHECK_MSG(matches(GRAMMAR_JSON_SCHEMA, spec, num) == want, "%s on %s", spec, num);
		}
	}
}

static void compile_error(enum grammar_kind k, const char *spec, const char *want)
{
	struct grammar *g = NULL;
	int rc = grammar_compile(k, spec, strlen(spec), 0, &g);
	CHECK_MSG(rc < 0, "%s compiled", spec);
	CHECK_MSG(strstr(err_msg(), want), "%s: '%s' lacks '%s'", spec, err_msg(), want);
}

TEST(compile_errors_are_named)
{
	compile_error(GRAMMAR_REGEX, "(ab", "expected ')'");
	compile_error(GRAMMAR_REGEX, "a)", "unbalanced");
	compile_error(GRAMMAR_REGEX, "(?=a)", "lookaround");
	compile_error(GRAMMAR_REGEX, "\\1", "unsupported escape");
	compile_error(GRAMMAR_REGEX, "[b-a]", "out of order");
	compile_error(GRAMMAR_REGEX, "a{3,2}", "n < m");
	compile_error(GRAMMAR_REGEX, "*a", "quantifier without");
	compile_error(GRAMMAR_GBNF, "root ::= x", "'x' is used but not defined");
	compile_error(GRAMMAR_GBNF, "a ::= \"x\"", "no 'root'");
	compile_error(GRAMMAR_GBNF, "root ::= root \"a\" | \"b\"", "left recursion");
	compile_error(GRAMMAR_GBNF, "root ::= \"a", "unterminated");
	compile_error(GRAMMAR_CHOICE, "[1]", "array of strings");
	compile_error(GRAMMAR_JSON_SCHEMA, "{\"type\":\"string\",\"contentEncoding\":\"x\"}",
		      "keyword 'contentEncoding' at # is not supported");
	compile_error(GRAMMAR_JSON_SCHEMA, "{\"$ref\":\"#/$defs/nope\"}", "does not resolve");
	compile_error(GRAMMAR_JSON_SCHEMA, "{\"type\":\"wat\"}", "unknown type");
	compile_error(GRAMMAR_JSON_SCHEMA, "{", "not valid JSON");
	compile_error(GRAMMAR_JSON_SCHEMA, "{\"type\":\"number\",\"maximum\":3.5}", "non-integer");
	/* lenient: the same unknown keyword is ignored */
	struct grammar *g;
	const char *s = "{\"type\":\"string\",\"contentEncoding\":\"x\"}";
	CHECK(grammar_compile(GRAMMAR_JSON_SCHEMA, s, strlen(s), GRAMMAR_LENIENT, &g) == 0);
	grammar_unref(g);
}

/* A vocabulary of the n strings toks, then an empty end-of-sequence token. */
static struct gvocab *vocab_of(const char *const *toks, int n)
{
	const char **ptr = xcalloc((size_t)n + 1, sizeof(*ptr));
	uint32_t *lens = xcalloc((size_t)n + 1, sizeof(*lens));
	for (int i = 0; i < n; i++) {
		ptr[i] = toks[i];
		lens[i] = (uint32_t)strlen(toks[i]);
	}
	ptr[n] = "";
	int32_t eos = n;
	struct gvocab *v = gvocab_new(n + 1, ptr, lens, &eos, 1);
	free(ptr);
	free(lens);
	return v;
}

/* Masks against the definition: token t is allowed iff accepting its
 * bytes succeeds (a brute force over the whole vocabulary). */
TEST(masks_equal_brute_force_on_a_small_vocabulary)
{
	static const char *toks[] = { "{", "}", "\"", "\"a", "a\"", "\": ", ", \"", "1", "12",
				      "-", "0", "null", "nu", "true", "a", "b", "ab", "\"}",
				      "\"a\": ", "[", "]", "\xc3", "\xa9", " ", "x", "\\", "n" };
	enum { N = sizeof(toks) / sizeof(toks[0]) };
	struct gvocab *v = vocab_of(toks, N);
	const char *schema = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":[\"integer\",\"null\"]},"
			     "\"b\":{\"type\":\"string\"}},\"required\":[\"a\"]}";
	struct grammar *g;
	CHECK(grammar_compile(GRAMMAR_JSON_SCHEMA, schema, strlen(schema), 0, &g) == 0);
	/* random paths; at every step the mask must equal, for each token,
	 * whether a fresh matcher fed the path and then the token takes it */
	for (unsigned seed = 1; seed <= 20; seed++) {
		struct gmatch *m = gmatch_new(g, v);
		int32_t path[40];
		int np = 0;
		unsigned r = seed;
		for (int step = 0; step < 40 && !gmatch_done(m); step++) {
			uint32_t bits[2];
			int n = gmatch_mask(m, bits), allowed[N + 1], na = 0;
			for (int t = 0; t <= N; t++) {
				struct gmatch *probe = gmatch_new(g, v);
				for (int k = 0; k < np; k++)
					gmatch_accept(probe, path[k]);
				int want = gmatch_accept(probe, t) == 0;
				gmatch_free(probe);
				int in = bits[t >> 5] >> (t & 31) & 1;
				CHECK_MSG(in == want, "seed %u step %d token '%s': mask %d, accept %d",
					  seed, step, t < N ? toks[t] : "<eos>", in, want);
				if (in)
					allowed[na++] = t;
			}
			CHECK(na == n);
			if (!na)
				break;
			r = r * 1103515245u + 12345u;
			int pick = allowed[(r >> 16) % (unsigned)na];
			CHECK(gmatch_accept(m, pick) == 0);
			path[np++] = pick;
		}
		gmatch_free(m);
	}
	grammar_unref(g);
	gvocab_free(v);
}

static void *prep_thread(void *arg)
{
	gprep_run(arg);
	return NULL;
}

/* A long random walk through nested arrays (stacks far deeper than the
 * cache's 32-frame key): at every step the mask of a matcher whose cache
 * fills (half the time prepared by gprep_run on another thread) equals
 * the brute force over the vocabulary, on a second vocabulary of the same
 * tokens (never cached: the grammar's cache is the first one's).  The
 * second's masks, prepared on the other thread half the time, reach it
 * through gmatch_adopt: it then walks nothing itself. */
TEST(cached_and_prepared_masks_equal_brute_force_on_a_long_walk)
{
	static const char *toks[] = { "[", "[[", "[[[[", "]", "]]", "]]]]", ", ", ", [", "],",
				      "], [", "[]", "[], ", "1", "12", ", 3", "]]]]]]]]",
				      /* closing more levels than the cache key holds */
				      "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]", "]]]]]]]]]]]]]]]]]]]]" };
	enum { N = sizeof(toks) / sizeof(toks[0]) };
	struct gvocab *v1 = vocab_of(toks, N);
	struct gvocab *v2 = vocab_of(toks, N);
	const char *schema = "{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"type\":\"array\","
			     "\"items\":{\"anyOf\":[{\"type\":\"integer\"},{\"$ref\":\"#/$defs/a\"}]}}}}";
	struct grammar *g;
	CHECK(grammar_compile(GRAMMAR_JSON_SCHEMA, schema, strlen(schema), 0, &g) == 0);
	int deepest = 0, prepared = 0, adopted = 0;
	for (unsigned seed = 1; seed <= 12; seed++) {
		struct gmatch *m1 = gmatch_new(g, v1), *m2 = gmatch_new(g, v2);
		int32_t path[150];
		int np = 0, depth = 0;
		unsigned r = seed;
		for (int step = 0; step < 150 && !gmatch_done(m1); step++) {
			struct gprep *p = gmatch_prepare(m1);
			if (p && step % 2) {
				pthread_t t;
				CHECK(pthread_create(&t, NULL, prep_thread, p) == 0);
				pthread_join(t, NULL);
				gprep_free(p);
				CHECK_MSG(!gmatch_prepare(m1), "seed %u step %d: still cold", seed,
					  step);
				prepared++;
			} else {
				gprep_free(p);
			}
			uint64_t walks = gmatch_walks(m2);
			struct gprep *p2 = step % 2 ? NULL : gmatch_prepare(m2);
			if (p2) {
				pthread_t t;
				CHECK(pthread_create(&t, NULL, prep_thread, p2) == 0);
				pthread_join(t, NULL);
				gmatch_adopt(m2, p2);
				gprep_free(p2);
				CHECK_MSG(!gmatch_prepare(m2), "seed %u step %d: adopted masks still cold",
					  seed, step);
				adopted++;
			}
			uint32_t b1[1], b2[1];
			int n1 = gmatch_mask(m1, b1), n2 = gmatch_mask(m2, b2), na = 0;
			CHECK_MSG(!p2 || gmatch_walks(m2) == walks, "seed %u step %d: %llu walks on "
				  "the matcher's thread after adopting", seed, step,
				  (unsigned long long)(gmatch_walks(m2) - walks));
			int allowed[N + 1];
			for (int t = 0; t <= N; t++) {
				struct gmatch *probe = gmatch_new(g, v2);
				for (int k = 0; k < np; k++)
					gmatch_accept(probe, path[k]);
				int want = gmatch_accept(probe, t) == 0;
				gmatch_free(probe);
				int in1 = b1[0] >> t & 1, in2 = b2[0] >> t & 1;
				CHECK_MSG(in1 == want && in2 == want, "seed %u step %d depth %d token "
					  "'%s': cached %d, uncached %d, accept %d", seed, step, depth,
					  t < N ? toks[t] : "<eos>", in1, in2, want);
				if (want)
					allowed[na++] = t;
			}
			CHECK(n1 == na && n2 == na);
			if (!na)
				break;
			r = r * 1103515245u + 12345u;
			int pick = allowed[(r >> 16) % (unsigned)na];
			/* mostly deeper in the first 100 steps */
			for (int i = 0; step < 100 && (r & 7) && i < na; i++)
				if (allowed[i] < 3)
					pick = allowed[i];
			CHECK(gmatch_accept(m1, pick) == 0 && gmatch_accept(m2, pick) == 0);
			path[np++] = pick;
			if (pick < N)
				for (const char *c = toks[pick]; *c; c++)
					depth += (*c == '[') - (*c == ']');
			if (depth > deepest)
				deepest = depth;
		}
		gmatch_free(m1);
		gmatch_free(m2);
	}
	CHECK_MSG(deepest > 40, "the walks reached depth %d only", deepest);
	CHECK(prepared > 0 && adopted > 0);
	grammar_unref(g);
	gvocab_free(v1);
	gvocab_free(v2);
}

/* The --masks helper (see the top of this file). */
static int masks_main(void)
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
	const char *kind = cJSON_GetObjectItem(req, "kind")->valuestring;
	const char *spec = cJSON_GetObjectItem(req, "spec")->valuestring;
	struct grammar *g;
	if (grammar_compile(grammar_kind_parse(kind), spec, strlen(spec), 0, &g) < 0) {
		fprintf(stderr, "compile: %s\n", err_msg());
		return 1;
	}
	uint32_t *bits = calloc(((size_t)vs + 31) / 32, 4);
	struct strbuf out = STRBUF_INIT;
	sb_adds(&out, "{\"masks\":[");
	int first = 1;
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(req, "prefixes")) {
		struct gmatch *m = gmatch_new(g, v);
		sb_adds(&out, first ? "" : ",");
		first = 0;
		if (gmatch_accept_bytes(m, it->valuestring, strlen(it->valuestring)) < 0) {
			sb_adds(&out, "null");
		} else {
			gmatch_mask(m, bits);
			sb_addch(&out, '[');
			int f = 1;
			for (int t = 0; t < vs; t++)
				if (bits[t >> 5] >> (t & 31) & 1) {
					sb_addf(&out, f ? "%d" : ",%d", t);
					f = 0;
				}
			sb_addch(&out, ']');
		}
		gmatch_free(m);
	}
	sb_adds(&out, "]}\n");
	fwrite(out.buf, 1, out.len, stdout);
	sb_release(&out);
	sb_release(&in);
	free(bits);
	grammar_unref(g);
	gvocab_free(v);
	tok_free(tok);
	cJSON_Delete(req);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--masks"))
		return masks_main();
	return RUN_TESTS();
}
