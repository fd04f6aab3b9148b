/*
 * test_tok.c - unit tests for the parts of core/tok that need no oracle
 * process: the hash tables, UTF-8 repair (against Python's
 * bytes.decode("utf-8", "replace") results, Unicode 15 table 3-8), the
 * JSON reader, the Oniguruma-compatible regex rewriting (against
 * Oniguruma's classes as measured through HF), loader errors on malformed
 * and truncated files, thread safety, and the incremental detokenizer.
 * Conformance with HF itself is test/integration/tok_conformance.py.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/hash.h"
#include "core/tok/json.h"
#include "core/tok/tok.h"
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODELS "../shared/models"

static char *model_path(const char *model, const char *file)
{
	static char buf[4][512];
	static int k;
	char *b = buf[k++ % 4];
	/* tests run from the repository root */
	snprintf(b, 512, "%s/%s%s%s", MODELS, model, file ? "/" : "", file ? file : "");
	return b;
}

/* The fixtures in ../shared/models are always there (CI too), so a
 * missing one fails the test instead of passing it unchecked. */
#define NEED_FIXTURE(path) \
	CHECK_MSG(access((path), R_OK) == 0, "fixture %s is missing", (path))

/* ---- hash tables -------------------------------------------------------- */

TEST(strmap_insert_lookup_overwrite)
{
	struct strbuf pool = STRBUF_INIT;
	struct strmap m;
	uint32_t *off = malloc(100000 * sizeof(*off)), *len = malloc(100000 * sizeof(*len));

	tok_strmap_init(&m, 10);	/* small hint: must grow */
	for (int i = 0; i < 100000; i++) {
		off[i] = (uint32_t)pool.len;
		sb_addf(&pool, "key-%d", i * 7);
		len[i] = (uint32_t)(pool.len - off[i]);
	}
	for (int i = 0; i < 100000; i++)
		tok_strmap_put(&m, pool.buf, off[i], len[i], i);
	CHECK_INT(m.n, 100000);
	for (int i = 0; i < 100000; i++)
		CHECK_INT(tok_strmap_get(&m, pool.buf, pool.buf + off[i], len[i]), i);
	CHECK_INT(tok_strmap_get(&m, pool.buf, "key-1", 5), -1);
	CHECK_INT(tok_strmap_get(&m, pool.buf, "", 0), -1);
	/* the last value for a key wins, and the count does not change */
	tok_strmap_put(&m, pool.buf, off[5], len[5], 42);
	CHECK_INT(tok_strmap_get(&m, pool.buf, "key-35", 6), 42);
	CHECK_INT(m.n, 100000);
	/* an empty key is a key like any other */
	size_t e = pool.len;
	tok_strmap_put(&m, pool.buf, (uint32_t)e, 0, 7);
	CHECK_INT(tok_strmap_get(&m, pool.buf, "", 0), 7);
	tok_strmap_free(&m);
	sb_release(&pool);
	free(off);
	free(len);
}

TEST(pairmap_insert_lookup_overwrite)
{
	struct pairmap m;
	tok_pairmap_init(&m, 0);
	for (uint32_t a = 0; a < 300; a++)
		for (uint32_t b = 0; b < 300; b++)
			tok_pairmap_put(&m, a, b, a * 300 + b, a ^ b);
	CHECK_INT(m.n, 90000);
	for (uint32_t a = 0; a < 300; a++) {
		for (uint32_t b = 0; b < 300; b++) {
			const struct pairmap_ent *e = tok_pairmap_get(&m, a, b);
			CHECK(e != NULL);
			CHECK_INT(e->rank, a * 300 + b);
			CHECK_INT(e->id, a ^ b);
		}
	}
	CHECK(tok_pairmap_get(&m, 300, 0) == NULL);
	CHECK(tok_pairmap_get(&m, 0xFFFFFFFFu, 0xFFFFFFFEu) == NULL);
	tok_pairmap_put(&m, 1, 2, 5, 6);
	CHECK_INT(tok_pairmap_get(&m, 1, 2)->rank, 5);
	CHECK_INT(m.n, 90000);
	tok_pairmap_free(&m);
}

/* ---- UTF-8 ---------------------------------------------------------------- */

static void check_sanitize(const char *in, size_t n, const char *want)
{
	struct strbuf out = STRBUF_INIT;
	tok_utf8_sanitize(in, n, &out);
	CHECK_MSG(out.len == strlen(want) && !memcmp(out.buf, want, out.len),
		  "sanitize gave %zu bytes \"%s\", expected \"%s\"", out.len, out.buf, want);
	CHECK(tok_utf8_is_valid(out.buf, out.len));
	sb_release(&out);
}

#define R "\xEF\xBF\xBD"

TEST(utf8_sanitize_maximal_subparts)
{
	/* expected values: Python bytes.decode("utf-8", "replace") */
	check_sanitize("\xC0\xAF", 2, R R);
	check_sanitize("\xE0\x80\xAF", 3, R R R);
	check_sanitize("\xF4\x90\x80\x80", 4, R R R R);
	check_sanitize("\xE1\x80" "A", 3, R "A");
	check_sanitize("\xF0\x9F\x98", 3, R);
	check_sanitize("\xED\xA0\x80", 3, R R R);
	check_sanitize("a\xF1\x80\x80\xE1\x80\xC2" "b\x80" "c\x80\xBF" "d", 13,
		       "a" R R R "b" R "c" R R "d");
	check_sanitize("\xFE\xFF", 2, R R);
	check_sanitize("\xF0\x9F\x98\x80", 4, "\xF0\x9F\x98\x80");
	check_sanitize("plain ascii", 11, "plain ascii");
	struct strbuf out = STRBUF_INIT;
	tok_utf8_sanitize("a\0b", 3, &out);	/* NUL is valid UTF-8 */
	CHECK(out.len == 3 && !memcmp(out.buf, "a\0b", 3));
	sb_release(&out);
}

TEST(utf8_valid_and_incomplete_tail)
{
	CHECK(tok_utf8_is_valid("", 0));
	CHECK(tok_utf8_is_valid("h\xC3\xA9llo \xE4\xBD\xA0 \xF0\x9F\x98\x80", 15));
	CHECK_INT(tok_utf8_valid_prefix("abc\xC3", 4), 3);
	CHECK_INT(tok_utf8_valid_prefix("abcdefghijklmnop\xFF", 17), 16);
	CHECK_INT(tok_utf8_incomplete_tail("abc", 3), 0);
	CHECK_INT(tok_utf8_incomplete_tail("a\xE4", 2), 1);
	CHECK_INT(tok_utf8_incomplete_tail("a\xE4\xBD", 3), 2);
	CHECK_INT(tok_utf8_incomplete_tail("\xE4\xBD\xA0", 3), 0);
	CHECK_INT(tok_utf8_incomplete_tail("\xF0\x9F\x98", 3), 3);
	CHECK_INT(tok_utf8_incomplete_tail("\xED\xA0", 2), 0);	/* never valid */
	CHECK_INT(tok_utf8_incomplete_tail("\x80", 1), 0);
	char buf[4];
	CHECK_INT(tok_utf8_encode(0x10FFFF, buf), 4);
	CHECK(!memcmp(buf, "\xF4\x8F\xBF\xBF", 4));
	uint32_t cp;
	CHECK_INT(tok_utf8_decode((const unsigned char *)"\xE2\x96\x81", &cp), 3);
	CHECK_INT(cp, 0x2581);
}

/* ---- JSON ------------------------------------------------------------------ */

static int parse(const char *text, struct tj_doc *doc, unsigned flags)
{
	static char buf[8192];
	size_t n = strlen(text);
	memcpy(buf, text, n + 1);
	return tok_tj_parse(doc, buf, n, flags, "test.json");
}

TEST(json_values_and_escapes)
{
	struct tj_doc d;
	CHECK_INT(parse(" {\"a\": [1, -2.5e1, true, false, null], \"s\": \"x\\u00e9\\ud83d\\ude00\\n\\\"\", "
			"\"e\": {}, \"z\": []} ", &d, 0), 0);
	CHECK_INT(d.root.type, TJ_OBJ);
	CHECK_INT(d.root.len, 4);
	const struct tj *a = tok_tj_get(&d.root, "a");
	CHECK(a && a->type == TJ_ARR && a->len == 5);
	CHECK(a->u.kid[0].u.num == 1 && a->u.kid[1].u.num == -25);
	CHECK_INT(a->u.kid[2].type, TJ_TRUE);
	CHECK_INT(a->u.kid[4].type, TJ_NULL);
	const struct tj *s = tok_tj_get(&d.root, "s");
	CHECK_STR(s->u.s, "x\xC3\xA9\xF0\x9F\x98\x80\n\"");
	CHECK_INT(s->len, 9);
	CHECK_INT(tok_tj_get(&d.root, "e")->len, 0);
	CHECK(tok_tj_get(&d.root, "missing") == NULL);
	tok_tj_free(&d);
	/* \u0000 makes a string with a NUL inside */
	CHECK_INT(parse("\"a\\u0000b\"", &d, 0), 0);
	CHECK_INT(d.root.len, 3);
	tok_tj_free(&d);
}

TEST(json_surrogateescape)
{
	struct tj_doc d;
	CHECK(parse("\"\\udcff\"", &d, 0) < 0);	/* strict: lone surrogate */
	CHECK(strstr(err_msg(), "surrogate"));
	CHECK_INT(parse("\"a\\udce4\\udcbdb\\ud800\"", &d, TJ_SURROGATEESCAPE), 0);
	CHECK_INT(d.root.len, 7);
	CHECK(!memcmp(d.root.u.s, "a\xE4\xBD" "b" R, 7));
	tok_tj_free(&d);
}

static void check_json_error(const char *text, const char *want)
{
	struct tj_doc d;
	int rc = parse(text, &d, 0);
	CHECK_MSG(rc < 0, "parsed \"%s\" without error", text);
	CHECK_MSG(strstr(err_msg(), want) != NULL, "error \"%s\" lacks \"%s\"", err_msg(), want);
}

TEST(json_errors_name_the_place)
{
	check_json_error("{\"a\": 1,\n \"b\" 2}", "line 2, column 6: expected ':'");
	check_json_error("[1, 2", "unexpected end of input");
	check_json_error("\"abc", "truncated");
	check_json_error("[01]", "expected ',' or ']'");
	check_json_error("[1.]", "invalid number");
	check_json_error("{\"a\":tru}", "invalid literal");
	check_json_error("\"a\tb\"", "control character");
	check_json_error("\"\\x\"", "invalid escape");
	check_json_error("[1] 2", "trailing characters");
	check_json_error("\"\xC3\x28\"", "invalid UTF-8");
	check_json_error("", "value expected");
	/* deep nesting is refused, not a stack overflow */
	static char deep[4096];
	memset(deep, '[', 2000);
	deep[2000] = '\0';
	check_json_error(deep, "nested too deeply");
}

/* ---- regex ------------------------------------------------------------------ */

static int re_matches(const char *pat, const char *subject)
{
	struct tok_re re;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	struct tok_re_iter it;
	size_t s, e;
	int rc;
	CHECK_MSG(tok_re_compile(&re, pat, strlen(pat), 0) == 0, "compile %s: %s", pat, err_msg());
	tok_re_iter_init(&it, &re, md, subject, strlen(subject));
	rc = tok_re_next(&it, &s, &e);
	pcre2_match_data_free(md);
	tok_re_free(&re);
	return rc == 1 && s == 0 && e == strlen(subject);
}

TEST(regex_oniguruma_classes)
{
	/* Oniguruma's \s is White_Space: NEL and NBSP yes, U+180E no */
	CHECK(re_matches("\\s", "\xC2\x85"));
	CHECK(re_matches("\\s", "\xC2\xA0"));
	CHECK(re_matches("\\s", "\xE3\x80\x80"));
	CHECK(!re_matches("\\s", "\xE1\xA0\x8E"));
	CHECK(re_matches("[^\\s\\p{L}]", "\xE1\xA0\x8E"));
	CHECK(re_matches("\\S", "\xE1\xA0\x8E"));
	/* \w: superscript two and circled letters yes, circled digits no */
	CHECK(re_matches("\\w", "\xC2\xB2"));
	CHECK(re_matches("\\w", "\xE2\x92\xB6"));
	CHECK(!re_matches("\\w", "\xE2\x91\xA0"));
	CHECK(re_matches("\\w+", "a_\xC3\xA9\xD9\xA3"));
	/* \h is a hex digit, \uHHHH a code point, ^ $ line anchors */
	CHECK(re_matches("\\h+", "09afAF"));
	CHECK(!re_matches("\\h", "g"));
	CHECK(re_matches("\\u0041", "A"));
	CHECK(re_matches("(?i:'s)", "'\xC5\xBF"));	/* long s folds to s */
	struct tok_re re;
	CHECK(tok_re_compile(&re, "[a[b]]", 6, 0) < 0);
	CHECK(strstr(err_msg(), "nested"));
	CHECK(tok_re_compile(&re, "(a", 2, 0) < 0);
	CHECK(tok_re_compile(&re, "a.b*", 4, 1) == 0);	/* literal */
	tok_re_free(&re);
}

TEST(regex_classes_follow_unicode_16)
{
	/* characters Unicode 15.0-16.0 assigned (UnicodeData.txt 16.0):
	 * U+11F02 KAWI SIGN REPHA (Lo), U+31350 CJK Ext H (Lo), U+1D2C0
	 * KAKTOVIK NUMERAL ZERO (No), U+16D70 KIRAT RAI DIGIT ZERO (Nd),
	 * U+1E5FF OL ONAL ABBREVIATION SIGN (Po), U+10D6E GARAY HYPHEN (Pd).
	 * (re_matches runs the iterator, which picks the extended regex for
	 * subjects holding such characters.) */
	const char *kawi = "\xF0\x91\xBC\x82", *cjk_h = "\xF0\xB1\x8D\x90";
	const char *kaktovik = "\xF0\x9D\x8B\x80", *kirat = "\xF0\x96\xB5\xB0";
	const char *onal = "\xF0\x9E\x97\xBF", *garay = "\xF0\x90\xB5\xAE";
	CHECK(re_matches("\\p{L}", kawi));
	CHECK(re_matches("\\p{Lo}", cjk_h));
	CHECK(re_matches("\\pL", cjk_h));
	CHECK(re_matches("\\p{^N}", cjk_h));
	CHECK(!re_matches("\\P{L}", kawi));
	CHECK(!re_matches("\\p{^L}", kawi));
	CHECK(!re_matches("[^\\r\\n\\p{L}\\p{N}]", cjk_h));
	CHECK(re_matches("[\\p{Lu}\\p{Lo}]", kawi));
	CHECK(re_matches("\\p{N}", kaktovik));
	CHECK(re_matches("\\p{No}", kaktovik));
	CHECK(!re_matches("\\p{Nd}", kaktovik));
	CHECK(!re_matches("[^\\s\\p{L}\\p{N}]", kaktovik));
	CHECK(re_matches("\\d", kirat));
	CHECK(re_matches("[\\d]", kirat));
	CHECK(!re_matches("\\D", kirat));
	CHECK(re_matches("\\w", kirat));
	CHECK(!re_matches("\\W", kirat));
	CHECK(re_matches("\\p{P}", onal));
	CHECK(re_matches("[\\p{P}\\p{S}]", garay));
	CHECK(re_matches("\\p{Pd}", garay));
	CHECK(!re_matches("\\p{L}", onal));
	/* U+0897 ARABIC PEPET (Mn, 16.0), a 3-byte character below U+1000 */
	CHECK(re_matches("\\p{M}", "\xE0\xA2\x97"));
	CHECK(re_matches("a[\\p{L}\\p{M}]+", "a\xE0\xA2\x97"));
	CHECK(!re_matches("[^\\p{M}]", "\xE0\xA2\x97"));
	/* property names are case-insensitive, as in Oniguruma */
	CHECK(re_matches("\\p{lo}", kawi));
	/* the extended pattern JITs wherever the plain one does (Llama 3's) */
	const char *llama3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
		"\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
	struct tok_re re;
	CHECK_INT(tok_re_compile(&re, llama3, strlen(llama3), 0), 0);
	CHECK(re.code16 != NULL);
	CHECK(re.jit16 == re.jit);
	tok_re_free(&re);
	CHECK_INT(tok_re_compile(&re, "a|\\s+", 5, 0), 0);
	CHECK(re.code16 == NULL);	/* nothing changed: compiled once */
	tok_re_free(&re);
}

TEST(regex_empty_matches_follow_onig)
{
	/* "x*" over "axxb": empty at 0, "xx", empty at 4 (not at 3) */
	struct tok_re re;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	struct tok_re_iter it;
	size_t s, e, got[8][2], n = 0;
	CHECK_INT(tok_re_compile(&re, "x*", 2, 0), 0);
	tok_re_iter_init(&it, &re, md, "axxb", 4);
	while (n < 8 && tok_re_next(&it, &s, &e) == 1) {
		got[n][0] = s;
		got[n][1] = e;
		n++;
	}
	pcre2_match_data_free(md);
	tok_re_free(&re);
	CHECK_INT(n, 3);
	CHECK(got[0][0] == 0 && got[0][1] == 0);
	CHECK(got[1][0] == 1 && got[1][1] == 3);
	CHECK(got[2][0] == 4 && got[2][1] == 4);
}

/* ---- loading errors ----------------------------------------------------------- */

static void check_load_error(const char *json, const char *want)
{
	struct tok *tok = NULL;
	int rc = tok_load_mem(json, strlen(json), NULL, 0, "t.json", &tok);
	CHECK_MSG(rc < 0, "loaded %s", json);
	CHECK(tok == NULL);
	CHECK_MSG(strstr(err_msg(), want) != NULL, "error \"%s\" lacks \"%s\"", err_msg(), want);
}

#define BPE_HEAD "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, " \
	"\"merges\": [\"a b\"]}"

TEST(load_malformed_files)
{
	check_load_error("[]", "expected a JSON object at the top, found an array");
	check_load_error("42", "expected a JSON object at the top, found a number");
	check_load_error("{}", "missing \"model\"");
	check_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": []}}", "model.vocab: expected an object");
	check_load_error("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}, \"max_input_chars_per_word\": -1}}",
			 "model.max_input_chars_per_word");
	check_load_error("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "\"Unigram\" models are not supported");
	check_load_error("{\"model\": {\"type\": \"WordLevel\", \"vocab\": {}}}", "not supported");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": []}}", "model.vocab: expected an object");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}}}", "model.vocab[\"a\"]");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a c\"]}}",
			 "model.merges[0]: token \"c\"");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a\"]}}",
			 "merged token \"aa\"");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"aa\"]}}",
			 "model.merges[0]");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [[\"a\"]]}}",
			 "model.merges[0]");
	check_load_error("{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [], \"dropout\": 0.1}}",
			 "dropout");
	check_load_error("{\"version\": \"2.0\", \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}",
			 "version");
	check_load_error(BPE_HEAD ", \"normalizer\": {\"type\": \"Precompiled\"}}", "normalizer: normalizer type \"Precompiled\"");
	check_load_error(BPE_HEAD ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {}]}}",
			 "normalizer.normalizers[1]: missing \"type\"");
	check_load_error(BPE_HEAD ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\"}}",
			 "pre_tokenizer.pattern.Regex: bad regex");
	check_load_error(BPE_HEAD ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Foo\": \"a\"}, \"behavior\": \"Isolated\"}}",
			 "pre_tokenizer.pattern");
	check_load_error(BPE_HEAD ", \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"String\": \"a\"}, \"behavior\": \"Sideways\"}}",
			 "unknown split behavior");
	check_load_error(BPE_HEAD ", \"pre_tokenizer\": {\"type\": \"UnicodeScripts\"}}", "not supported");
	check_load_error(BPE_HEAD ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"ab\"}}",
			 "single character");
	check_load_error(BPE_HEAD ", \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": [{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}], \"special_tokens\": {}}}",
			 "special token \"<s>\" is missing");
	check_load_error(BPE_HEAD ", \"decoder\": {\"type\": \"CTC\"}}", "decoder: decoder type \"CTC\"");
	check_load_error(BPE_HEAD ", \"added_tokens\": {}}", "added_tokens: expected an array");
	check_load_error(BPE_HEAD ", \"added_tokens\": [{\"id\": 3}]}", "added_tokens[0]: missing \"content\"");
	check_load_error(BPE_HEAD ", \"added_tokens\": [{\"id\": 3, \"content\": \"x\", \"special\": \"yes\"}]}",
			 "added_tokens[0].special: expected a boolean");
}

TEST(load_truncated_qwen3_never_crashes)
{
	const char *path = model_path("qwen3-0.6b-shape", "tokenizer.json");
	struct strbuf sb = STRBUF_INIT;
	NEED_FIXTURE(path);
	CHECK_INT(sb_read_file(&sb, path, 64u << 20), 0);
	for (int i = 0; i < 20; i++) {
		/* 20 points spread over the file, including the first bytes */
		size_t cut = i == 0 ? 1 : sb.len / 20 * (size_t)i + (size_t)i * 37;
		struct tok *tok = NULL;
		int rc = tok_load_mem(sb.buf, cut, NULL, 0, "qwen3", &tok);
		CHECK_MSG(rc < 0, "truncated at %zu of %zu bytes, loaded anyway", cut, sb.len);
		CHECK(tok == NULL);
		CHECK_MSG(strstr(err_msg(), "qwen3") && strlen(err_msg()) > 10,
			  "cut %zu: message \"%s\"", cut, err_msg());
	}
	/* and the whole file loads */
	struct tok *tok = NULL;
	CHECK_MSG(tok_load_mem(sb.buf, sb.len, NULL, 0, "qwen3", &tok) == 0, "%s", err_msg());
	CHECK_INT(tok_vocab_size(tok), 151669);
	tok_free(tok);
	sb_release(&sb);
}

/* ---- a loaded tokenizer ------------------------------------------------------- */

static struct tok *load_model(const char *model)
{
	struct tok *tok = NULL;
	NEED_FIXTURE(model_path(model, "tokenizer.json"));
	CHECK_MSG(tok_load(model_path(model, NULL), &tok) == 0, "%s", err_msg());
	return tok;
}

TEST(lookups_and_config)
{
	struct tok *tok = load_model("stories260K");
	/* tokenizer_config.json: bos <s> = 1, eos </s> = 2 */
	CHECK_INT(tok_bos_id(tok), 1);
	CHECK_INT(tok_eos_id(tok), 2);
	CHECK_INT(tok_add_bos(tok), 1);
	CHECK_INT(tok_add_eos(tok), 0);
	CHECK_INT(tok_vocab_size(tok), 512);
	for (int32_t id = 0; id < 512; id++) {
		size_t len;
		const char *s = tok_id_to_token(tok, id, &len);
		CHECK(s != NULL);
		CHECK_INT(tok_token_to_id(tok, s, len), id);
	}
	CHECK(tok_id_to_token(tok, 512, NULL) == NULL);
	CHECK(tok_id_to_token(tok, -1, NULL) == NULL);
	CHECK(tok_is_special(tok, 1) && tok_is_special(tok, 2) && !tok_is_special(tok, 3));
	CHECK_INT(tok_token_to_id(tok, "<0x0A>", 6), 13);
	tok_free(tok);
}

struct enc_job {
	const struct tok *tok;
	const char **texts;
	int n;
	struct tok_ids *want;
	int bad;
};

static const char *texts[] = {
	"Hello world, this is a test of many threads.",
	"Once upon a time there was a little dog named Spot.",
	"\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C! \xF0\x9F\x98\x80",
	"<s>special</s> tokens   and    spaces\n\n\tand tabs",
	"invalid \xFF\xFE bytes",
	"",
};

static void *enc_thread(void *arg)
{
	struct enc_job *j = arg;
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < j->n; i++) {
			struct tok_ids ids = TOK_IDS_INIT;
			if (tok_encode(j->tok, j->texts[i], strlen(j->texts[i]), round & 1, &ids) < 0)
				j->bad++;
			/* compare with the single-threaded result for this mode */
			const struct tok_ids *w = &j->want[i * 2 + (round & 1)];
			if (ids.n != w->n || (ids.n && memcmp(ids.v, w->v, ids.n * sizeof(int32_t))))
				j->bad++;
			tok_ids_release(&ids);
		}
	}
	return NULL;
}

TEST(encode_is_thread_safe)
{
	const char *models[] = { "tinyllama-1.1b-shape", "qwen3-0.6b-shape" };
	for (size_t m = 0; m < 2; m++) {
		struct tok *tok = load_model(models[m]);
		int n = (int)(sizeof(texts) / sizeof(texts[0]));
		struct tok_ids want[2 * 8];
		pthread_t th[4];
		struct enc_job job[4];
		memset(want, 0, sizeof(want));
		for (int i = 0; i < n; i++)
			for (int s = 0; s < 2; s++)
				CHECK_INT(tok_encode(tok, texts[i], strlen(texts[i]), s, &want[i * 2 + s]), 0);
		for (int t = 0; t < 4; t++) {
			job[t] = (struct enc_job){ tok, texts, n, want, 0 };
			pthread_create(&th[t], NULL, enc_thread, &job[t]);
		}
		for (int t = 0; t < 4; t++) {
			pthread_join(th[t], NULL);
			CHECK_INT(job[t].bad, 0);
		}
		for (int i = 0; i < 2 * n; i++)
			tok_ids_release(&want[i]);
		tok_free(tok);
	}
}

TEST(stream_holds_back_partial_characters)
{
	struct tok *tok = load_model("stories260K");
	/* stories260K spells CJK and emoji with byte-fallback tokens */
	const char *text = "Hi \xE5\xAE\x83\xE6\x98\xAF \xF0\x9F\x98\x80 end";
	struct tok_ids ids = TOK_IDS_INIT;
	struct strbuf full = STRBUF_INIT, all = STRBUF_INIT, delta = STRBUF_INIT;
	CHECK_INT(tok_encode(tok, text, strlen(text), 0, &ids), 0);
	CHECK_INT(tok_decode(tok, ids.v, ids.n, 0, &full), 0);
	struct tok_stream *st = tok_stream_new(tok, 0);
	int held = 0;
	for (size_t i = 0; i < ids.n; i++) {
		sb_reset(&delta);
		CHECK_INT(tok_stream_put(st, ids.v[i], &delta), 0);
		CHECK(tok_utf8_is_valid(delta.buf, delta.len));
		CHECK(!strstr(delta.buf, R));
		size_t len;
		const char *piece = tok_id_to_token(tok, ids.v[i], &len);
		if (len == 6 && !memcmp(piece, "<0x", 3) && !delta.len)
			held++;
		sb_add(&all, delta.buf, delta.len);
	}
	sb_reset(&delta);
	CHECK_INT(tok_stream_flush(st, &delta), 0);
	sb_add(&all, delta.buf, delta.len);
	CHECK(held >= 4);	/* the first bytes of each character waited */
	CHECK_STR(all.buf, full.buf);
	CHECK_STR(full.buf, "Hi \xE5\xAE\x83\xE6\x98\xAF \xF0\x9F\x98\x80 end");
	tok_stream_free(st);

	/* an incomplete character at the very end comes out at the flush */
	st = tok_stream_new(tok, 0);
	int32_t e5 = tok_token_to_id(tok, "<0xE5>", 6);
	sb_reset(&all);
	sb_reset(&delta);
	CHECK_INT(tok_stream_put(st, e5, &delta), 0);
	CHECK_INT(delta.len, 0);
	CHECK_INT(tok_stream_flush(st, &delta), 0);
	CHECK_STR(delta.buf, R);
	tok_stream_free(st);

	/* priming with the prompt keeps the first token's space */
	struct tok_ids tmp = TOK_IDS_INIT;
	CHECK_INT(tok_encode(tok, "Once upon", 9, 0, &tmp), 0);
	st = tok_stream_new(tok, 0);
	tok_stream_prime(st, tmp.v, tmp.n - 1);
	sb_reset(&delta);
	CHECK_INT(tok_stream_put(st, tmp.v[tmp.n - 1], &delta), 0);
	CHECK_INT(tok_stream_flush(st, &delta), 0);
	CHECK_STR(delta.buf, " upon");
	tok_stream_free(st);
	tok_ids_release(&tmp);
	tok_ids_release(&ids);
	sb_release(&full);
	sb_release(&all);
	sb_release(&delta);
	tok_free(tok);
}

/* Stream ids (looked up by token text) and return the deltas joined with
 * '|' between them, the flush's last. */
static void stream_pieces(const struct tok *tok, int skip, const char *const *pieces, size_t n,
			  struct strbuf *out)
{
	struct tok_stream *st = tok_stream_new(tok, skip);
	struct strbuf delta = STRBUF_INIT;
	for (size_t i = 0; i <= n; i++) {
		sb_reset(&delta);
		if (i < n) {
			int32_t id = tok_token_to_id(tok, pieces[i], strlen(pieces[i]));
			CHECK_MSG(id >= 0, "no token %s", pieces[i]);
			CHECK_INT(tok_stream_put(st, id, &delta), 0);
		} else {
			CHECK_INT(tok_stream_flush(st, &delta), 0);
		}
		CHECK(tok_utf8_is_valid(delta.buf, delta.len));
		sb_add(out, delta.buf, delta.len);
		if (i < n)
			sb_addch(out, '|');
	}
	sb_release(&delta);
	tok_stream_free(st);
}

TEST(stream_byte_run_decodes_as_a_whole)
{
	/* HF's ByteFallback decodes a run of byte tokens at once: not valid
	 * UTF-8 as a whole means one U+FFFD per byte, even for a valid start.
	 * Expected texts: tokenizers 0.22.1 decode() of the same ids. */
	struct tok *tok = load_model("stories260K");
	struct strbuf got = STRBUF_INIT;
	static const char *const c3_a9_ff[] = { "<0xC3>", "<0xA9>", "<0xFF>" };
	static const char *const x1e_c3[] = { "<0x1E>", "<0xC3>" };
	static const char *const c3_a9_caret[] = { "<0xC3>", "<0xA9>", "<0x5E>", "\xE2\x96\x81" "a" };
	static const char *const c3_a9_eos_ff[] = { "<0xC3>", "<0xA9>", "</s>", "<0xFF>" };

	stream_pieces(tok, 0, c3_a9_ff, 3, &got);
	CHECK_STR(got.buf, "|||" R R R);	/* held until the end, as decode */
	sb_reset(&got);
	stream_pieces(tok, 1, x1e_c3, 2, &got);
	CHECK_STR(got.buf, "||" R R);
	sb_reset(&got);
	/* a valid run is released by the next ordinary token */
	stream_pieces(tok, 0, c3_a9_caret, 4, &got);
	CHECK_STR(got.buf, "|||\xC3\xA9^ a|");
	sb_reset(&got);
	/* a special token ends the run when kept, and joins two runs when skipped */
	stream_pieces(tok, 0, c3_a9_eos_ff, 4, &got);
	CHECK_STR(got.buf, "||\xC3\xA9</s>||" R);
	sb_reset(&got);
	stream_pieces(tok, 1, c3_a9_eos_ff, 4, &got);
	CHECK_STR(got.buf, "||||" R R R);
	sb_release(&got);
	tok_free(tok);
}

/* A Strip decoder that may take two leading spaces (stories260K's, made
 * to strip up to 2): a window whose context is a lone space must not let
 * it reach into the next token's text (found by fuzz_tok_load).  The
 * full decode of the same ids: "a  he". */
TEST(stream_strip_start_2_after_a_space)
{
	const char *path = model_path("stories260K", "tokenizer.json");
	struct strbuf sb = STRBUF_INIT, got = STRBUF_INIT;
	NEED_FIXTURE(path);
	CHECK_INT(sb_read_file(&sb, path, 1u << 20), 0);
	char *start = strstr(sb.buf, "\"start\": 1");
	CHECK(start != NULL);
	start[strlen("\"start\": ")] = '2';
	struct tok *tok = NULL;
	CHECK_MSG(tok_load_mem(sb.buf, sb.len, NULL, 0, "strip2", &tok) == 0, "%s", err_msg());
	static const char *const pieces[] = { "a", "\xE2\x96\x81", "\xE2\x96\x81he" };
	stream_pieces(tok, 0, pieces, 3, &got);
	CHECK_STR(got.buf, "a| | he|");
	sb_release(&got);
	sb_release(&sb);
	tok_free(tok);
}

TEST(decode_after_a_context)
{
	/* What a token adds after others, as tokenizers 0.22.1 gives it:
	 * decode(ctx + [id])[len(decode(ctx)):]; alone, SentencePiece drops
	 * the piece's leading space. */
	struct tok *tok = load_model("stories260K");
	struct strbuf got = STRBUF_INIT;
	struct tok_ids ctx = TOK_IDS_INIT;
	int32_t a = tok_token_to_id(tok, "\xE2\x96\x81" "a", 4), bos = tok_bos_id(tok);

	CHECK(a >= 0);
	CHECK_INT(tok_encode(tok, "Once upon", 9, 0, &ctx), 0);
	tok_decode_after(tok, ctx.v, ctx.n, a, &got);
	CHECK_STR(got.buf, " a");
	tok_decode_after(tok, NULL, 0, a, &got);
	CHECK_STR(got.buf, "a");
	tok_decode_after(tok, ctx.v, ctx.n, bos, &got);	/* a special id reads as itself */
	CHECK_STR(got.buf, "<s>");
	tok_ids_release(&ctx);
	sb_release(&got);
	tok_free(tok);
}

TEST(stream_with_a_strip_of_the_text_end)
{
	/* A Strip with stop > 0 after Fuse (found by fuzz_tok_load): a window
	 * ending in a space defers it, the next window began with it and
	 * stripped it again.  Expected text: the chain applied to the whole,
	 * "d" + " " + " " + "u" fused, nothing to strip at either end. */
	static const char json[] =
		"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"<unk>\": 0, "
		"\"d\xE2\x96\x81\": 1, \"\xE2\x96\x81\": 2, \"u\": 3}, \"merges\": []}, "
		"\"decoder\": {\"type\": \"Sequence\", \"decoders\": ["
		"{\"type\": \"Replace\", \"pattern\": {\"String\": \"\xE2\x96\x81\"}, "
		"\"content\": \" \"}, {\"type\": \"ByteFallback\"}, {\"type\": \"Fuse\"}, "
		"{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 1}]}}";
	static const char *const pieces[] = { "d\xE2\x96\x81", "\xE2\x96\x81", "u" };
	struct tok *tok = NULL;
	struct strbuf got = STRBUF_INIT, full = STRBUF_INIT;
	int32_t ids[] = { 1, 2, 3 };

	CHECK_MSG(tok_load_mem(json, strlen(json), NULL, 0, "strip.json", &tok) == 0, "%s",
		  err_msg());
	CHECK_INT(tok_decode(tok, ids, 3, 0, &full), 0);
	CHECK_STR(full.buf, "d  u");
	stream_pieces(tok, 0, pieces, 3, &got);
	CHECK_STR(got.buf, "|||d  u");	/* held to the flush: equal to the decode */
	sb_release(&got);
	sb_release(&full);
	tok_free(tok);
}

/* WordPiece: the word limit and a missing unk token give the unk id or a
 * clear error, not garbage ids. */
TEST(wordpiece_unk)
{
	static const char json[] = "{\"model\": {\"type\": \"WordPiece\", \"max_input_chars_per_word\": 3,"
		" \"vocab\": {\"[UNK]\": 0, \"ab\": 1, \"##c\": 2, \"a\": 3}},"
		" \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}";
	static const char nounk[] = "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"<u>\","
		" \"vocab\": {\"a\": 0}}}";
	struct tok *tok = NULL;
	struct tok_ids ids = TOK_IDS_INIT;

	CHECK(tok_load_mem(json, strlen(json), NULL, 0, "t.json", &tok) == 0);
	CHECK(tok_encode(tok, "abc a abcd ax", 13, 0, &ids) == 0);
	CHECK(ids.n == 5);
	CHECK(ids.v[0] == 1 && ids.v[1] == 2 && ids.v[2] == 3 && ids.v[3] == 0 && ids.v[4] == 0);
	tok_ids_release(&ids);
	tok_free(tok);
	CHECK(tok_load_mem(nounk, strlen(nounk), NULL, 0, "t.json", &tok) == 0);
	CHECK(tok_encode(tok, "b", 1, 0, &ids) < 0);
	CHECK(strstr(err_msg(), "\"<u>\" is not in the vocabulary") != NULL);
	tok_ids_release(&ids);
	tok_free(tok);
}

int main(void)
{
	return RUN_TESTS();
}
