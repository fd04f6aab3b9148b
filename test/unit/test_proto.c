/*
 * test_proto.c - the contracts of core/proto against their documentation,
 * not against each other: an encoder's output and a parser's input are
 * compared with the JSON that the man pages document (read from
 * man/dyn-serve.1 and man/dyn-store.5 by the test, so that code and docs
 * cannot drift apart), and the KV event forms with the layout that
 * core/proto/kv_events.h documents, written out here by hand.
 *
 * Values a parser returns are compared with the document's own values as
 * cJSON reads them; structs an encoder takes are filled from those values
 * too, never from the parser under test.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/proto/card.h"
#include "core/proto/embed.h"
#include "core/proto/generate.h"
#include "core/proto/kv_events.h"
#include "core/strbuf.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>

/* ---- documents and JSON comparison -------------------------------------- */

/*
 * The first literal display (.Bd -literal ... .Ed) of a man page that
 * contains needle, as plain text: mandoc escapes undone and the "..." that
 * marks an elided list member dropped, so that it parses as JSON.
 * Malloc'd; NULL if none.
 */
static char *man_literal(const char *page, const char *needle)
{
	struct strbuf src = STRBUF_INIT, block = STRBUF_INIT;
	if (sb_read_file(&src, page, 1 << 20) < 0)
		return NULL;
	char *found = NULL;
	int in = 0;
	for (char *line = src.buf; line && *line && !found;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		if (!in && !strncmp(line, ".Bd -literal", 12)) {
			in = 1;
			sb_reset(&block);
		} else if (in && len == 3 && !strncmp(line, ".Ed", 3)) {
			in = 0;
			if (strstr(block.buf ? block.buf : "", needle))
				found = sb_detach(&block, NULL);
		} else if (in) {
			for (size_t i = 0; i < len; i++) {
				if (line[i] == '\\' && i + 1 < len && line[i + 1] == '&') {
					i++;
				} else if (line[i] == '\\' && i + 1 < len && line[i + 1] == 'e') {
					sb_addch(&block, '\\');
					i++;
				} else if (line[i] == ',' && !strncmp(line + i, ",...", 4)) {
					i += 3;
				} else {
					sb_addch(&block, line[i]);
				}
			}
			sb_addch(&block, '\n');
		}
		line = nl ? nl + 1 : NULL;
	}
	sb_release(&block);
	sb_release(&src);
	return found;
}

/* The first difference between two JSON values, described in out (path
 * first); returns 0 when they are the same (numbers within 1e-9
 * relative), whatever the order of object members. */
static int json_diff(const cJSON *a, const cJSON *b, const char *path, char *out,
		     size_t size)
{
	char sub[512];
	if (!a || !b || (a->type & 0xff) != (b->type & 0xff)) {
		snprintf(out, size, "%s: %s in the output, %s in the document", path,
			 a ? "differs in type" : "missing", b ? "present" : "absent");
		return 1;
	}
	if (cJSON_IsNumber(a)) {
		double x = a->valuedouble, y = b->valuedouble;
		if (fabs(x - y) > 1e-9 * fmax(1, fabs(y))) {
			snprintf(out, size, "%s: %.17g in the output, %.17g in the document",
				 path, x, y);
			return 1;
		}
	} else if (cJSON_IsString(a)) {
		if (strcmp(a->valuestring, b->valuestring)) {
			snprintf(out, size, "%s: \"%s\" in the output, \"%s\" in the document",
				 path, a->valuestring, b->valuestring);
			return 1;
		}
	} else if (cJSON_IsArray(a)) {
		int na = cJSON_GetArraySize(a), nb = cJSON_GetArraySize(b);
		if (na != nb) {
			snprintf(out, size, "%s: %d elements in the output, %d in the document",
				 path, na, nb);
			return 1;
		}
		for (int i = 0; i < na; i++) {
			snprintf(sub, sizeof(sub), "%s[%d]", path, i);
			if (json_diff(cJSON_GetArrayItem(a, i), cJSON_GetArrayItem(b, i), sub,
				      out, size))
				return 1;
		}
	} else if (cJSON_IsObject(a)) {
		const cJSON *m;
		cJSON_ArrayForEach(m, b) {
			snprintf(sub, sizeof(sub), "%s.%s", path, m->string);
			if (json_diff(cJSON_GetObjectItemCaseSensitive(a, m->string), m, sub,
				      out, size))
				return 1;
		}
		cJSON_ArrayForEach(m, a) {
			if (!cJSON_GetObjectItemCaseSensitive(b, m->string)) {
				snprintf(out, size, "%s.%s: in the output, not in the document",
					 path, m->string);
				return 1;
			}
		}
	}
	return 0;
}

/* CHECK that the JSON text got has the same members and values as doc. */
#define CHECK_JSON_AS_DOC(got, doc)                                          \
	do {                                                                 \
		cJSON *g_ = cJSON_Parse(got);                                \
		char d_[600];                                                \
		CHECK_MSG(g_, "output is not JSON: %s", got);                \
		int bad_ = json_diff(g_, (doc), "$", d_, sizeof(d_));        \
		cJSON_Delete(g_);                                            \
		CHECK_MSG(!bad_, "%s; output: %s", d_, got);                 \
	} while (0)

/* A member of the document by a path of names (ends with NULL). */
static const cJSON *vat(const cJSON *j, va_list ap, char *path, size_t size)
{
	size_t len = 0;
	path[0] = '\0';
	for (const char *k; j && (k = va_arg(ap, const char *));) {
		if (len < size)
			len += (size_t)snprintf(path + len, size - len, ".%s", k);
		j = cJSON_GetObjectItemCaseSensitive(j, k);
	}
	return j;
}

static const cJSON *at(const cJSON *j, ...)
{
	char path[256];
	va_list ap;
	va_start(ap, j);
	j = vat(j, ap, path, sizeof(path));
	va_end(ap);
	return j;
}

/* A documented number, or string, that must be present. */
static double doc_num(const cJSON *j, ...)
{
	char path[256];
	va_list ap;
	va_start(ap, j);
	j = vat(j, ap, path, sizeof(path));
	va_end(ap);
	CHECK_MSG(cJSON_IsNumber(j), "the document has no number at %s", path);
	return j->valuedouble;
}

static char *doc_str(const cJSON *j, ...)
{
	char path[256];
	va_list ap;
	va_start(ap, j);
	j = vat(j, ap, path, sizeof(path));
	va_end(ap);
	CHECK_MSG(cJSON_IsString(j), "the document has no string at %s", path);
	return j->valuestring;
}

#define DOC_NUM(...) doc_num(__VA_ARGS__, NULL)
#define DOC_STR(...) doc_str(__VA_ARGS__, NULL)

/* The document's integer array into ids (at most cap); returns its length. */
static size_t doc_ids(const cJSON *arr, int32_t *ids, size_t cap)
{
	size_t n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, arr) {
		if (n < cap)
			ids[n] = (int32_t)e->valuedouble;
		n++;
	}
	return n;
}

static cJSON *man_json(const char *page, const char *needle)
{
	char *text = man_literal(page, needle);
	if (!text)
		return NULL;
	cJSON *j = cJSON_Parse(text);
	free(text);
	return j;
}

#define SERVE_MAN "man/dyn-serve.1"
#define STORE_MAN "man/dyn-store.5"

/* ---- the generate protocol (dyn-serve(1)) ------------------------------- */

static cJSON *doc_request(void)
{
	return man_json(SERVE_MAN, "\"sampling\"");
}

static cJSON *doc_frame(void)
{
	return man_json(SERVE_MAN, "\"finish_reason\"");
}

TEST(generate_request_parse_reads_the_documented_request)
{
	cJSON *doc = doc_request();
	CHECK_MSG(doc, "no JSON request with \"sampling\" in " SERVE_MAN);
	char *text = cJSON_PrintUnformatted(doc);
	struct gen_request r;
	CHECK_MSG(gen_request_parse(text, strlen(text), &r) == 0, "%s", err_msg());
	free(text);

	int32_t ids[16];
	size_t n = doc_ids(at(doc, "token_ids", NULL), ids, 16);
	CHECK(n > 0);
	CHECK_INT(r.n_tokens, n);
	CHECK(!memcmp(r.token_ids, ids, n * sizeof(int32_t)));
	CHECK(r.s.temperature == DOC_NUM(doc, "sampling", "temperature"));
	CHECK(r.s.top_p == DOC_NUM(doc, "sampling", "top_p"));
	CHECK(r.s.min_p == DOC_NUM(doc, "sampling", "min_p"));
	CHECK(r.s.presence_penalty == DOC_NUM(doc, "sampling", "presence_penalty"));
	CHECK(r.s.frequency_penalty == DOC_NUM(doc, "sampling", "frequency_penalty"));
	CHECK(r.s.repetition_penalty == DOC_NUM(doc, "sampling", "repetition_penalty"));
	CHECK_INT(r.s.top_k, DOC_NUM(doc, "sampling", "top_k"));
	CHECK(r.s.has_seed);
	CHECK_INT(r.s.seed, DOC_NUM(doc, "sampling", "seed"));
	CHECK_INT(r.max_tokens, DOC_NUM(doc, "stop", "max_tokens"));
	CHECK_INT(r.min_tokens, DOC_NUM(doc, "stop", "min_tokens"));
	CHECK_INT(r.ignore_eos, cJSON_IsTrue(at(doc, "stop", "ignore_eos", NULL)));
	n = doc_ids(at(doc, "stop", "stop_token_ids", NULL), ids, 16);
	CHECK(n > 0);
	CHECK_INT(r.n_stop_ids, n);
	CHECK(!memcmp(r.stop_token_ids, ids, n * sizeof(int32_t)));
	CHECK_INT(r.logprobs, DOC_NUM(doc, "logprobs"));
	gen_request_release(&r);

	/* The documented ignore_eos the other way round is read too. */
	cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(doc, "stop"),
					       "ignore_eos", cJSON_CreateTrue());
	text = cJSON_PrintUnformatted(doc);
	CHECK(gen_request_parse(text, strlen(text), &r) == 0);
	CHECK_INT(r.ignore_eos, 1);
	gen_request_release(&r);
	free(text);
	cJSON_Delete(doc);
}

TEST(generate_request_encode_writes_the_documented_request)
{
	cJSON *doc = doc_request();
	CHECK_MSG(doc, "no JSON request with \"sampling\" in " SERVE_MAN);
	int32_t ids[16], stop[16];
	struct gen_request r;
	gen_request_init(&r);
	r.token_ids = ids;
	r.n_tokens = doc_ids(at(doc, "token_ids", NULL), ids, 16);
	r.s.temperature = DOC_NUM(doc, "sampling", "temperature");
	r.s.top_p = DOC_NUM(doc, "sampling", "top_p");
	r.s.min_p = DOC_NUM(doc, "sampling", "min_p");
	r.s.presence_penalty = DOC_NUM(doc, "sampling", "presence_penalty");
	r.s.frequency_penalty = DOC_NUM(doc, "sampling", "frequency_penalty");
	r.s.repetition_penalty = DOC_NUM(doc, "sampling", "repetition_penalty");
	r.s.top_k = (long)DOC_NUM(doc, "sampling", "top_k");
	r.s.has_seed = 1;
	r.s.seed = (uint64_t)DOC_NUM(doc, "sampling", "seed");
	r.max_tokens = (long)DOC_NUM(doc, "stop", "max_tokens");
	r.min_tokens = (long)DOC_NUM(doc, "stop", "min_tokens");
	r.ignore_eos = cJSON_IsTrue(at(doc, "stop", "ignore_eos", NULL));
	r.stop_token_ids = stop;
	r.n_stop_ids = doc_ids(at(doc, "stop", "stop_token_ids", NULL), stop, 16);
	r.logprobs = (int)DOC_NUM(doc, "logprobs");
	r.prompt_logprobs = (int)DOC_NUM(doc, "prompt_logprobs");
	int32_t bias_ids[4];
	double bias[4];
	const cJSON *e, *lb = at(doc, "sampling", "logit_bias", NULL);
	cJSON_ArrayForEach(e, lb) {
		if (r.s.n_bias == 4 || cJSON_GetArraySize(e) != 2)
			break;
		bias_ids[r.s.n_bias] = (int32_t)cJSON_GetArrayItem(e, 0)->valuedouble;
		bias[r.s.n_bias++] = cJSON_GetArrayItem(e, 1)->valuedouble;
	}
	r.s.bias_ids = bias_ids;
	r.s.bias = bias;
	struct strbuf out = STRBUF_INIT;
	gen_request_encode(&r, &out);
	CHECK_JSON_AS_DOC(out.buf, doc);
	sb_release(&out);

	/* Sampling fields left at the model's default are absent, and so are
	 * logprobs not asked for (as documented). */
	gen_request_init(&r);
	r.token_ids = ids;
	r.n_tokens = 1;
	gen_request_encode(&r, &out);
	cJSON *min = cJSON_Parse(out.buf);
	CHECK_MSG(min, "not JSON: %s", out.buf);
	CHECK_INT(cJSON_GetArraySize(at(min, "sampling", NULL)), 0);
	CHECK(!at(min, "logprobs", NULL));
	cJSON_Delete(min);
	sb_release(&out);
	cJSON_Delete(doc);
}

TEST(generate_output_parse_reads_the_documented_frame)
{
	cJSON *doc = doc_frame();
	CHECK_MSG(doc, "no JSON frame with \"finish_reason\" in " SERVE_MAN);
	char *text = cJSON_PrintUnformatted(doc);
	struct gen_output o;
	CHECK_MSG(gen_output_parse(text, strlen(text), &o) == 0, "%s", err_msg());
	free(text);

	int32_t ids[16];
	size_t n = doc_ids(at(doc, "token_ids", NULL), ids, 16);
	CHECK_INT(o.n, n);
	CHECK(!memcmp(o.token_ids, ids, n * sizeof(int32_t)));
	CHECK_STR(o.finish_reason, DOC_STR(doc, "finish_reason"));
	CHECK_INT(o.prompt_tokens, DOC_NUM(doc, "usage", "prompt_tokens"));
	CHECK_INT(o.completion_tokens, DOC_NUM(doc, "usage", "completion_tokens"));
	CHECK_INT(o.cached_tokens,
		  DOC_NUM(doc, "usage", "prompt_tokens_details", "cached_tokens"));
	const cJSON *lps = at(doc, "logprobs", NULL);
	CHECK_INT(cJSON_GetArraySize(lps), n);
	CHECK(o.lps);
	for (size_t i = 0; i < n; i++) {
		const cJSON *lp = cJSON_GetArrayItem(lps, (int)i);
		CHECK(o.lps[i].logprob == DOC_NUM(lp, "logprob"));
		const cJSON *top = at(lp, "top", NULL);
		CHECK_INT(o.lps[i].ntop, cJSON_GetArraySize(top));
		for (int k = 0; k < o.lps[i].ntop; k++) {
			const cJSON *pair = cJSON_GetArrayItem(top, k);
			CHECK_INT(o.lps[i].top_ids[k], cJSON_GetArrayItem(pair, 0)->valuedouble);
			CHECK(o.lps[i].top_lps[k] == cJSON_GetArrayItem(pair, 1)->valuedouble);
		}
	}
	gen_output_release(&o);
	cJSON_Delete(doc);
}

TEST(generate_output_encode_writes_the_documented_frame)
{
	cJSON *doc = doc_frame();
	CHECK_MSG(doc, "no JSON frame with \"finish_reason\" in " SERVE_MAN);
	int32_t ids[16];
	size_t n = doc_ids(at(doc, "token_ids", NULL), ids, 16);
	CHECK(n > 0 && n <= 16);
	struct gen_logprob lps[16];
	memset(lps, 0, sizeof(lps));
	const cJSON *dl = at(doc, "logprobs", NULL);
	for (size_t i = 0; i < n; i++) {
		const cJSON *lp = cJSON_GetArrayItem(dl, (int)i), *pair;
		lps[i].logprob = DOC_NUM(lp, "logprob");
		cJSON_ArrayForEach(pair, at(lp, "top", NULL)) {
			CHECK(lps[i].ntop < 20);
			lps[i].top_ids[lps[i].ntop] = (int32_t)cJSON_GetArrayItem(pair, 0)->valuedouble;
			lps[i].top_lps[lps[i].ntop++] = cJSON_GetArrayItem(pair, 1)->valuedouble;
		}
	}
	struct strbuf out = STRBUF_INIT;
	gen_output_encode(&out, ids, n, lps, DOC_STR(doc, "finish_reason"),
			  (long)DOC_NUM(doc, "usage", "prompt_tokens"),
			  (long)DOC_NUM(doc, "usage", "completion_tokens"),
			  (long)DOC_NUM(doc, "usage", "prompt_tokens_details", "cached_tokens"));
	CHECK_JSON_AS_DOC(out.buf, doc);
	sb_reset(&out);

	/* A frame before the last carries token_ids only; without logprobs
	 * asked for there are none; without a prefix cache no details. */
	cJSON *part = cJSON_CreateObject();
	cJSON_AddItemToObject(part, "token_ids",
			      cJSON_Duplicate(at(doc, "token_ids", NULL), 1));
	gen_output_encode(&out, ids, n, NULL, NULL, 3, 16, 2);
	CHECK_JSON_AS_DOC(out.buf, part);
	sb_reset(&out);
	cJSON_AddItemToObject(part, "finish_reason", cJSON_CreateString("stop"));
	cJSON *usage = cJSON_Duplicate(at(doc, "usage", NULL), 1);
	cJSON_DeleteItemFromObjectCaseSensitive(usage, "prompt_tokens_details");
	cJSON_AddItemToObject(part, "usage", usage);
	gen_output_encode(&out, ids, n, NULL, "stop",
			  (long)DOC_NUM(doc, "usage", "prompt_tokens"),
			  (long)DOC_NUM(doc, "usage", "completion_tokens"), -1);
	CHECK_JSON_AS_DOC(out.buf, part);
	cJSON_Delete(part);
	sb_release(&out);
	cJSON_Delete(doc);
}

/* Every finish reason dyn-serve(1) lists survives the wire. */
TEST(generate_finish_reasons_as_documented)
{
	static const char *const reasons[] = { "stop", "length", "cancelled", "error" };
	for (size_t i = 0; i < sizeof(reasons) / sizeof(*reasons); i++) {
		struct strbuf b = STRBUF_INIT;
		sb_addf(&b, "{\"token_ids\":[],\"finish_reason\":\"%s\","
			    "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":0}}",
			reasons[i]);
		struct gen_output o;
		CHECK_MSG(gen_output_parse(b.buf, b.len, &o) == 0, "%s", err_msg());
		CHECK_STR(o.finish_reason, reasons[i]);
		CHECK_INT(o.cached_tokens, -1);
		gen_output_release(&o);
		sb_release(&b);
	}
	struct strbuf page = STRBUF_INIT;
	CHECK(sb_read_file(&page, SERVE_MAN, 1 << 20) == 0);
	for (size_t i = 0; i < sizeof(reasons) / sizeof(*reasons); i++) {
		char ql[64];
		snprintf(ql, sizeof(ql), ".Ql %s", reasons[i]);
		CHECK_MSG(strstr(page.buf, ql), SERVE_MAN " does not list \"%s\"", reasons[i]);
	}
	sb_release(&page);
}

/* ---- disaggregated serving (dyn-serve(1) DISAGGREGATED SERVING) --------- */

/* A member of a JSON tree against a document's member. */
#define json_as_doc(got, doc)                                                \
	do {                                                                 \
		char *t_ = cJSON_PrintUnformatted(got);                      \
		CHECK_JSON_AS_DOC(t_, (doc));                                \
		free(t_);                                                    \
	} while (0)

static cJSON *doc_prefill_request(void)
{
	return man_json(SERVE_MAN, "\"prefill\"");
}

static cJSON *doc_kv_answer(void)
{
	return man_json(SERVE_MAN, "\"token_ids\":[],");
}

static cJSON *doc_decode_request(void)
{
	return man_json(SERVE_MAN, "\"disagg\":{\"kv_source\"");
}

/* A kv_source struct from the document's values. */
static void doc_kv_source(const cJSON *src, struct gen_kv_source *s)
{
	memset(s, 0, sizeof(*s));
	s->worker = strtoull(DOC_STR(src, "worker"), NULL, 16);
	s->handle = strtoull(DOC_STR(src, "handle"), NULL, 16);
	snprintf(s->tcp, sizeof(s->tcp), "%s", DOC_STR(src, "tcp"));
	s->ucx = cJSON_IsTrue(at(src, "ucx", NULL));
	s->tls = cJSON_IsTrue(at(src, "tls", NULL));
	s->n_tokens = (long)DOC_NUM(src, "n_tokens");
	s->block_size = (long)DOC_NUM(src, "block_size");
	snprintf(s->layout, sizeof(s->layout), "%s", DOC_STR(src, "layout"));
}

static int kv_source_equal(const struct gen_kv_source *a, const struct gen_kv_source *b)
{
	return a->worker == b->worker && a->handle == b->handle && !strcmp(a->tcp, b->tcp) &&
	       a->ucx == b->ucx && a->tls == b->tls && a->n_tokens == b->n_tokens &&
	       a->block_size == b->block_size && !strcmp(a->layout, b->layout);
}

/* "tls" (--kv-transfer-tls): true round-trips, absent is false and not
 * written, anything but a boolean is refused. */
TEST(generate_kv_source_tls)
{
	static const char plain[] = "{\"worker\":\"0000000000000001\",\"tcp\":\"h:1\","
		"\"ucx\":false,\"handle\":\"0000000000000002\",\"n_tokens\":3,"
		"\"block_size\":16,\"layout\":\"L\"}";
	static const char tls[] = "{\"worker\":\"0000000000000001\",\"tcp\":\"h:1\","
		"\"ucx\":false,\"tls\":true,\"handle\":\"0000000000000002\",\"n_tokens\":3,"
		"\"block_size\":16,\"layout\":\"L\"}";
	struct gen_kv_source s;
	struct strbuf out = STRBUF_INIT;
	CHECK_MSG(gen_kv_source_parse(plain, strlen(plain), &s) == 0, "%s", err_msg());
	CHECK_INT(s.tls, 0);
	gen_kv_source_encode(&s, &out);
	CHECK_STR(out.buf, plain);
	CHECK_MSG(gen_kv_source_parse(tls, strlen(tls), &s) == 0, "%s", err_msg());
	CHECK_INT(s.tls, 1);
	sb_reset(&out);
	gen_kv_source_encode(&s, &out);
	CHECK_STR(out.buf, tls);
	static const char bad[] = "{\"worker\":\"0000000000000001\",\"tcp\":\"h:1\","
		"\"ucx\":false,\"tls\":1,\"handle\":\"0000000000000002\",\"n_tokens\":3,"
		"\"block_size\":16,\"layout\":\"L\"}";
	CHECK_INT(gen_kv_source_parse(bad, strlen(bad), &s), -EINVAL);
	CHECK_MSG(strstr(err_msg(), "kv_source.tls"), "%s", err_msg());
	sb_release(&out);
}

TEST(generate_prefill_request_as_documented)
{
	cJSON *doc = doc_prefill_request();
	CHECK_MSG(doc, "no JSON request with \"prefill\" in " SERVE_MAN);
	char *text = cJSON_PrintUnformatted(doc);
	struct gen_request r;
	CHECK_MSG(gen_request_parse(text, strlen(text), &r) == 0, "%s", err_msg());
	CHECK_INT(r.prefill_only, cJSON_IsTrue(at(doc, "disagg", "prefill", NULL)));
	CHECK_INT(r.prefill_only, 1);
	CHECK(!r.kv_source);
	struct strbuf out = STRBUF_INIT;
	gen_request_encode(&r, &out);
	cJSON *got = cJSON_Parse(out.buf);
	CHECK_MSG(got, "not JSON: %s", out.buf);
	json_as_doc(at(got, "disagg", NULL), at(doc, "disagg", NULL));
	cJSON_Delete(got);
	sb_release(&out);
	gen_request_release(&r);
	free(text);
	cJSON_Delete(doc);
}

TEST(generate_kv_source_answer_as_documented)
{
	cJSON *doc = doc_kv_answer();
	CHECK_MSG(doc, "no kv_source answer in " SERVE_MAN);
	const cJSON *dsrc = at(doc, "kv_source", NULL);
	CHECK(dsrc);
	struct gen_kv_source want, got;
	doc_kv_source(dsrc, &want);

	/* encode: the documented frame, member for member */
	struct strbuf out = STRBUF_INIT;
	gen_output_encode_kv(&out, &want, (long)DOC_NUM(doc, "usage", "prompt_tokens"),
			     (long)DOC_NUM(doc, "usage", "prompt_tokens_details", "cached_tokens"));
	CHECK_JSON_AS_DOC(out.buf, doc);
	sb_release(&out);
	CHECK_INT(DOC_NUM(doc, "usage", "completion_tokens"), 0);

	/* parse: kv_source comes back as its own text, which parses as the
	 * document's values */
	char *text = cJSON_PrintUnformatted(doc);
	struct gen_output o;
	CHECK_MSG(gen_output_parse(text, strlen(text), &o) == 0, "%s", err_msg());
	free(text);
	CHECK(o.kv_source);
	CHECK_INT(o.n, 0);
	CHECK_STR(o.finish_reason, DOC_STR(doc, "finish_reason"));
	CHECK_MSG(gen_kv_source_parse(o.kv_source, strlen(o.kv_source), &got) == 0, "%s",
		  err_msg());
	CHECK(kv_source_equal(&got, &want));
	CHECK_JSON_AS_DOC(o.kv_source, dsrc);
	gen_output_release(&o);

	/* gen_kv_source_encode alone writes the documented object */
	gen_kv_source_encode(&want, &out);
	CHECK_JSON_AS_DOC(out.buf, dsrc);
	sb_release(&out);
	cJSON_Delete(doc);
}

TEST(generate_decode_request_as_documented)
{
	cJSON *doc = doc_decode_request();
	CHECK_MSG(doc, "no JSON request with disagg.kv_source in " SERVE_MAN);
	const cJSON *dsrc = at(doc, "disagg", "kv_source", NULL);
	struct gen_kv_source want, got;
	doc_kv_source(dsrc, &want);
	char *text = cJSON_PrintUnformatted(doc);
	struct gen_request r;
	CHECK_MSG(gen_request_parse(text, strlen(text), &r) == 0, "%s", err_msg());
	free(text);
	CHECK(!r.prefill_only);
	CHECK(r.kv_source);
	CHECK_JSON_AS_DOC(r.kv_source, dsrc);
	CHECK(gen_kv_source_parse(r.kv_source, strlen(r.kv_source), &got) == 0);
	CHECK(kv_source_equal(&got, &want));
	/* re-encoded, the request carries the same disagg member */
	struct strbuf out = STRBUF_INIT;
	gen_request_encode(&r, &out);
	cJSON *enc = cJSON_Parse(out.buf);
	CHECK_MSG(enc, "not JSON: %s", out.buf);
	json_as_doc(at(enc, "disagg", NULL), at(doc, "disagg", NULL));
	cJSON_Delete(enc);
	sb_release(&out);
	gen_request_release(&r);

	/* the same kv_source in an answer and in a decode request */
	cJSON *answer = doc_kv_answer();
	CHECK(answer);
	json_as_doc(at(answer, "kv_source", NULL), dsrc);
	cJSON_Delete(answer);
	cJSON_Delete(doc);
}

/* The documented fingerprint is that of the documented example: 5
 * layers, 4 KV heads of 8 dimensions (stories260K), 16-token blocks, f32. */
TEST(generate_kv_layout_fingerprint_as_documented)
{
	cJSON *doc = doc_kv_answer();
	CHECK(doc);
	char fp[96];
	gen_kv_layout_fingerprint(fp, sizeof(fp), 5, 4, 8,
				  (int)DOC_NUM(doc, "kv_source", "block_size"), "F32");
	CHECK_STR(fp, DOC_STR(doc, "kv_source", "layout"));
	gen_kv_layout_fingerprint(fp, sizeof(fp), 28, 8, 128, 64, "BF16");
	CHECK_STR(fp, "L28-KV8x128-B64-bf16");
	gen_kv_layout_fingerprint(fp, 8, 28, 8, 128, 64, "BF16");	/* truncated, terminated */
	CHECK_STR(fp, "L28-KV8");
	cJSON_Delete(doc);
}

/* Bad disagg members are refused, each error naming what is wrong. */
/* The "grammar" member as documented: read from a literal request, and
 * written back to the same members. */
TEST(generate_grammar_as_documented)
{
	static const char req[] = "{\"token_ids\":[5,6,7],\"grammar\":{\"kind\":\"regex\","
				  "\"spec\":\"a\\\\d+\",\"lenient\":true,\"done\":2}}";
	struct gen_request r;
	CHECK_MSG(gen_request_parse(req, strlen(req), &r) == 0, "%s", err_msg());
	CHECK_STR(r.grammar_kind, "regex");
	CHECK_STR(r.grammar_spec, "a\\d+");
	CHECK_INT(r.grammar_lenient, 1);
	CHECK_INT(r.grammar_done, 2);
	struct strbuf b = STRBUF_INIT;
	gen_request_encode(&r, &b);
	CHECK_MSG(strstr(b.buf, "\"grammar\":{\"kind\":\"regex\",\"spec\":\"a\\\\d+\","
			 "\"lenient\":true,\"done\":2}"), "%s", b.buf);
	sb_release(&b);
	gen_request_release(&r);
	static const char *const bad[] = {
		"{\"token_ids\":[5],\"grammar\":{\"kind\":\"regex\"}}",
		"{\"token_ids\":[5],\"grammar\":{\"kind\":1,\"spec\":\"a\"}}",
		"{\"token_ids\":[5],\"grammar\":{\"kind\":\"regex\",\"spec\":\"a\",\"done\":2}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK_MSG(gen_request_parse(bad[i], strlen(bad[i]), &r) == -EINVAL, "accepted %s",
			  bad[i]);
}

TEST(generate_disagg_strict)
{
	static const char src_ok[] = "{\"worker\":\"3f1a9c0e5b7d2468\",\"tcp\":\"h:1\","
				     "\"ucx\":false,\"handle\":\"9e2b4c6d8f0a1357\","
				     "\"n_tokens\":3,\"block_size\":16,\"layout\":\"L\"}";
	static const struct { const char *disagg, *names; } bad[] = {
		{ "{\"prefil\":true}", "prefil" },
		{ "{\"prefill\":\"yes\"}", "disagg.prefill" },
		{ "[]", "disagg" },
		{ "{\"kv_source\":5}", "kv_source" },
		{ "{\"kv_source\":{}}", "kv_source." },
		{ "{\"prefill\":true,\"kv_source\":%s}", "exclude" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct strbuf b = STRBUF_INIT;
		sb_adds(&b, "{\"token_ids\":[1],\"disagg\":");
		sb_addf(&b, bad[i].disagg, src_ok);
		sb_addch(&b, '}');
		struct gen_request r;
		CHECK_MSG(gen_request_parse(b.buf, b.len, &r) == -EINVAL, "accepted %s", b.buf);
		CHECK_MSG(strstr(err_msg(), bad[i].names), "%s: %s", b.buf, err_msg());
		sb_release(&b);
	}
	static const struct { const char *from, *to, *names; } mut[] = {
		{ "3f1a9c0e5b7d2468", "3f1a9c0e5b7d246", "kv_source.worker" },
		{ "9e2b4c6d8f0a1357", "9e2b4c6d8f0a135g", "kv_source.handle" },
		{ "\"ucx\":false", "\"ucx\":0", "kv_source.ucx" },
		{ "\"n_tokens\":3", "\"n_tokens\":-1", "kv_source.n_tokens" },
		{ "\"block_size\":16", "\"block_size\":0", "kv_source.block_size" },
		{ "\"tcp\":\"h:1\"", "\"tcp\":\"\"", "kv_source.tcp" },
		{ "\"layout\":\"L\"", "\"layout\":\"L\",\"extra\":1", "extra" },
	};
	struct gen_kv_source s;
	CHECK_MSG(gen_kv_source_parse(src_ok, strlen(src_ok), &s) == 0, "%s", err_msg());
	for (size_t i = 0; i < sizeof(mut) / sizeof(*mut); i++) {
		char buf[512];
		const char *at_ = strstr(src_ok, mut[i].from);
		CHECK(at_);
		snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at_ - src_ok), src_ok, mut[i].to,
			 at_ + strlen(mut[i].from));
		CHECK_MSG(gen_kv_source_parse(buf, strlen(buf), &s) == -EINVAL, "accepted %s", buf);
		CHECK_MSG(strstr(err_msg(), mut[i].names), "%s: %s", buf, err_msg());
	}
	CHECK(gen_kv_source_parse("{", 1, &s) == -EINVAL);
	/* An answer with a broken kv_source is refused too. */
	struct gen_output o;
	const char *ans = "{\"token_ids\":[],\"kv_source\":{\"worker\":\"x\"}}";
	CHECK(gen_output_parse(ans, strlen(ans), &o) == -EINVAL);
	/* A request without disagg has none. */
	struct gen_request r;
	CHECK(gen_request_parse("{\"token_ids\":[1]}", 17, &r) == 0);
	CHECK(!r.prefill_only && !r.kv_source);
	gen_request_release(&r);
}

/* Numbers a parser cannot convert are refused; a negative seed keeps its
 * 64 bits through an encode and a parse. */
TEST(generate_numbers_in_range)
{
	static const char *const bad[] = {
		"{\"token_ids\":[1],\"stop\":{\"max_tokens\":1e300}}",
		"{\"token_ids\":[1],\"stop\":{\"min_tokens\":-1e300}}",
		"{\"token_ids\":[1],\"sampling\":{\"top_k\":1e400}}",
		"{\"token_ids\":[1],\"sampling\":{\"seed\":1e20}}",
		"{\"token_ids\":[1],\"sampling\":{\"temperature\":1e400}}",
	};
	struct gen_request r, r2;
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		CHECK_MSG(gen_request_parse(bad[i], strlen(bad[i]), &r) == -EINVAL, "accepted %s",
			  bad[i]);
	const char *neg = "{\"token_ids\":[1],\"sampling\":{\"seed\":-1}}";
	CHECK(gen_request_parse(neg, strlen(neg), &r) == 0);
	CHECK(r.s.has_seed && r.s.seed == UINT64_MAX);
	struct strbuf out = STRBUF_INIT;
	gen_request_encode(&r, &out);
	CHECK_MSG(gen_request_parse(out.buf, out.len, &r2) == 0, "%s: %s", out.buf, err_msg());
	CHECK(r2.s.has_seed && r2.s.seed == UINT64_MAX);
	gen_request_release(&r);
	gen_request_release(&r2);
	sb_release(&out);
	/* a frame's out-of-range counts do not crash the reader */
	const char *f = "{\"token_ids\":[],\"finish_reason\":\"stop\",\"usage\":{\"prompt_tokens\":"
			"1e300,\"completion_tokens\":-1e300},\"logprobs\":[]}";
	struct gen_output o;
	CHECK(gen_output_parse(f, strlen(f), &o) == 0);
	CHECK(o.prompt_tokens == INT32_MAX && o.completion_tokens == -1);
	gen_output_release(&o);
	/* kv_source strings are printable ASCII */
	struct gen_kv_source src;
	const char *u = "{\"worker\":\"3f1a9c0e5b7d2468\",\"tcp\":\"h:1\",\"ucx\":false,"
			"\"handle\":\"9e2b4c6d8f0a1357\",\"n_tokens\":3,\"block_size\":16,"
			"\"layout\":\"L5 x\"}";
	CHECK(gen_kv_source_parse(u, strlen(u), &src) == -EINVAL);
	CHECK(strstr(err_msg(), "kv_source.layout"));
}

/* ---- the model card record (dyn-store(5)) ------------------------------- */

static cJSON *doc_card(void)
{
	return man_json(STORE_MAN, "\"kv_block_size\"");
}

/* The card's key, as dyn-store(5)'s key layout builds it. */
static void doc_card_key(const cJSON *doc, char *key, size_t size)
{
	snprintf(key, size, "v1/models/%s/%s", DOC_STR(doc, "name"),
		 DOC_STR(doc, "instance_id"));
}

TEST(card_parse_reads_the_documented_card)
{
	cJSON *doc = doc_card();
	CHECK_MSG(doc, "no JSON card with \"kv_block_size\" in " STORE_MAN);
	char *text = cJSON_PrintUnformatted(doc), key[512];
	doc_card_key(doc, key, sizeof(key));
	struct model_card c;
	CHECK_MSG(card_parse(key, text, strlen(text), &c) == 0, "%s", err_msg());
	free(text);
	CHECK_STR(c.name, DOC_STR(doc, "name"));
	CHECK_STR(c.model, DOC_STR(doc, "model"));
	CHECK_STR(c.ns, DOC_STR(doc, "namespace"));
	CHECK_STR(c.component, DOC_STR(doc, "component"));
	CHECK_STR(c.endpoint, DOC_STR(doc, "endpoint"));
	CHECK_STR(c.engine, DOC_STR(doc, "engine"));
	CHECK(c.instance_id == strtoull(DOC_STR(doc, "instance_id"), NULL, 16));
	CHECK_INT(c.context_length, DOC_NUM(doc, "context_length"));
	CHECK_INT(c.kv_block_size, DOC_NUM(doc, "kv_block_size"));
	CHECK_INT(c.kv_capacity_blocks, DOC_NUM(doc, "kv_capacity_blocks"));
	CHECK_INT(c.max_num_seqs, DOC_NUM(doc, "max_num_seqs"));
	CHECK_STR(c.kv_dtype, DOC_STR(doc, "kv_dtype"));
	CHECK_STR(c.tool_call_parser, DOC_STR(doc, "tool_call_parser"));
	CHECK_STR(c.reasoning_parser, "");	/* not given */
	const cJSON *files = at(doc, "files", NULL), *f;
	CHECK(cJSON_GetArraySize(files) > 0);
	CHECK_INT(c.nfiles, cJSON_GetArraySize(files));
	cJSON_ArrayForEach(f, files) {
		const struct card_file *cf = card_file_find(&c, f->string);
		CHECK_MSG(cf, "file %s not in the parsed card", f->string);
		CHECK_INT(cf->bytes, DOC_NUM(f, "bytes"));
		CHECK_INT(cf->chunks, DOC_NUM(f, "chunks"));
		CHECK(cf->xxh3 == strtoull(DOC_STR(f, "xxh3"), NULL, 16));
		CHECK_STR(cf->prefix, DOC_STR(f, "key"));
	}
	card_clear(&c);
	cJSON_Delete(doc);
}

TEST(card_encode_writes_the_documented_card)
{
	cJSON *doc = doc_card();
	CHECK_MSG(doc, "no JSON card with \"kv_block_size\" in " STORE_MAN);
	struct model_card c;
	memset(&c, 0, sizeof(c));
	c.name = DOC_STR(doc, "name");
	c.model = DOC_STR(doc, "model");
	c.ns = DOC_STR(doc, "namespace");
	c.component = DOC_STR(doc, "component");
	c.endpoint = DOC_STR(doc, "endpoint");
	c.engine = DOC_STR(doc, "engine");
	c.instance_id = strtoull(DOC_STR(doc, "instance_id"), NULL, 16);
	c.context_length = (long)DOC_NUM(doc, "context_length");
	c.kv_block_size = (long)DOC_NUM(doc, "kv_block_size");
	c.kv_capacity_blocks = (long)DOC_NUM(doc, "kv_capacity_blocks");
	c.max_num_seqs = (long)DOC_NUM(doc, "max_num_seqs");
	c.kv_dtype = DOC_STR(doc, "kv_dtype");
	c.tool_call_parser = DOC_STR(doc, "tool_call_parser");
	c.reasoning_parser = "";	/* not given: not written */
	const cJSON *f;
	cJSON_ArrayForEach(f, at(doc, "files", NULL)) {
		CHECK(c.nfiles < CARD_MAX_FILES);
		struct card_file *cf = &c.files[c.nfiles++];
		snprintf(cf->name, sizeof(cf->name), "%s", f->string);
		cf->bytes = (size_t)DOC_NUM(f, "bytes");
		cf->chunks = (long)DOC_NUM(f, "chunks");
		cf->xxh3 = strtoull(DOC_STR(f, "xxh3"), NULL, 16);
		cf->prefix = DOC_STR(f, "key");
	}
	struct strbuf out = STRBUF_INIT;
	card_encode(&c, &out);
	CHECK_JSON_AS_DOC(out.buf, doc);
	/* The key and the file keys follow the documented layout. */
	char key[512];
	doc_card_key(doc, key, sizeof(key));
	sb_reset(&out);
	card_key(&c, &out);
	CHECK_STR(out.buf, key);
	sb_reset(&out);
	card_file_prefix(c.instance_id, c.files[0].name, &out);
	CHECK_STR(out.buf, c.files[0].prefix);
	sb_reset(&out);
	card_chunk_key(&c.files[0], 3, &out);
	char chunk[600];
	snprintf(chunk, sizeof(chunk), "%s0003", c.files[0].prefix);
	CHECK_STR(out.buf, chunk);
	sb_release(&out);
	cJSON_Delete(doc);
}

/* ---- KV events (the layout core/proto/kv_events.h documents) ------------ */

/* A message with one event of each kind and a load, and its JSON form as
 * the header documents it (hashes below 2^53, so that cJSON compares them
 * exactly; the exact 64-bit case is kv_events_json_hashes_are_exact). */
static struct block_hash_pair kv_blocks1[] = { { 11, 12 }, { 13, 14 } };
static struct block_hash_pair kv_blocks2[] = { { 21, 22 } };
static uint64_t kv_removed[] = { 11, 13 };

static struct kv_msg kv_sample(struct kv_event ev[4])
{
	ev[0] = (struct kv_event){ .event_id = 7, .kind = KV_EV_STORED,
				   .blocks = kv_blocks1, .n = 2 };
	ev[1] = (struct kv_event){ .event_id = 8, .kind = KV_EV_STORED, .has_parent = 1,
				   .parent_hash = 13, .blocks = kv_blocks2, .n = 1 };
	ev[2] = (struct kv_event){ .event_id = 9, .kind = KV_EV_REMOVED,
				   .hashes = kv_removed, .n = 2 };
	ev[3] = (struct kv_event){ .event_id = 10, .kind = KV_EV_CLEARED };
	return (struct kv_msg){ .events = ev, .n_events = 4, .has_load = 1,
				.load = { 3, 64, 1, 100 } };
}

static const char kv_sample_json[] =
	"{\"events\":["
	"{\"event_id\":7,\"stored\":{\"parent_hash\":null,"
	"\"blocks\":[{\"seq_hash\":11,\"local_hash\":12},{\"seq_hash\":13,\"local_hash\":14}]}},"
	"{\"event_id\":8,\"stored\":{\"parent_hash\":13,"
	"\"blocks\":[{\"seq_hash\":21,\"local_hash\":22}]}},"
	"{\"event_id\":9,\"removed\":{\"seq_hashes\":[11,13]}},"
	"{\"event_id\":10,\"cleared\":{}}],"
	"\"load\":{\"active_blocks\":3,\"total_blocks\":64,\"waiting\":1,"
	"\"queued_prefill_tokens\":100}}";

/* The same message in the binary form, byte by byte from the layout. */
static const unsigned char kv_sample_bin[] = {
	0x00, 0x4b, 0x56, 0x42,	/* magic */
	1,			/* version */
	0x01,			/* flags: load */
	3, 0, 0, 0, 0, 0, 0, 0,	/* active_blocks */
	64, 0, 0, 0, 0, 0, 0, 0,	/* total_blocks */
	1, 0, 0, 0, 0, 0, 0, 0,	/* waiting */
	100, 0, 0, 0, 0, 0, 0, 0,	/* queued_prefill_tokens */
	4,			/* events */
	0x01, 7, 2,		/* stored, id 7, no parent, 2 blocks */
	11, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0,
	13, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0,
	0x11, 8,		/* stored with a parent, id 8 */
	13, 0, 0, 0, 0, 0, 0, 0, 1,
	21, 0, 0, 0, 0, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0,
	0x02, 9, 2,		/* removed, id 9, 2 hashes */
	11, 0, 0, 0, 0, 0, 0, 0, 13, 0, 0, 0, 0, 0, 0, 0,
	0x03, 10,		/* cleared, id 10 */
};

/* CHECK that m holds the sample message. */
static void check_kv_sample(const struct kv_msg *m)
{
	CHECK_INT(m->n_events, 4);
	CHECK(m->has_load && !m->is_dump);
	CHECK_INT(m->load.active_blocks, 3);
	CHECK_INT(m->load.total_blocks, 64);
	CHECK_INT(m->load.waiting, 1);
	CHECK_INT(m->load.queued_prefill_tokens, 100);
	const struct kv_event *e = m->events;
	CHECK(e[0].kind == KV_EV_STORED && e[0].event_id == 7 && !e[0].has_parent);
	CHECK(e[0].n == 2 && e[0].blocks[0].seq_hash == 11 && e[0].blocks[0].local_hash == 12 &&
	      e[0].blocks[1].seq_hash == 13 && e[0].blocks[1].local_hash == 14);
	CHECK(e[1].kind == KV_EV_STORED && e[1].event_id == 8 && e[1].has_parent &&
	      e[1].parent_hash == 13);
	CHECK(e[1].n == 1 && e[1].blocks[0].seq_hash == 21 && e[1].blocks[0].local_hash == 22);
	CHECK(e[2].kind == KV_EV_REMOVED && e[2].event_id == 9 && e[2].n == 2 &&
	      e[2].hashes[0] == 11 && e[2].hashes[1] == 13);
	CHECK(e[3].kind == KV_EV_CLEARED && e[3].event_id == 10);
}

TEST(kv_events_json_as_documented)
{
	struct kv_event ev[4];
	struct kv_msg m = kv_sample(ev);
	struct strbuf out = STRBUF_INIT;
	kv_msg_encode(&m, KV_WIRE_JSON, &out);
	cJSON *doc = cJSON_Parse(kv_sample_json);
	CHECK(doc);
	CHECK_JSON_AS_DOC(out.buf, doc);
	cJSON_Delete(doc);
	sb_release(&out);

	struct kv_msg got;
	CHECK_MSG(kv_msg_decode(kv_sample_json, strlen(kv_sample_json), &got) == 0, "%s",
		  err_msg());
	check_kv_sample(&got);
	kv_msg_release(&got);
}

TEST(kv_events_binary_as_documented)
{
	struct kv_event ev[4];
	struct kv_msg m = kv_sample(ev);
	struct strbuf out = STRBUF_INIT;
	kv_msg_encode(&m, KV_WIRE_BINARY, &out);
	CHECK_INT(out.len, sizeof(kv_sample_bin));
	for (size_t i = 0; i < out.len; i++)
		CHECK_MSG((unsigned char)out.buf[i] == kv_sample_bin[i],
			  "byte %zu is 0x%02x, the layout says 0x%02x", i,
			  (unsigned char)out.buf[i], kv_sample_bin[i]);
	sb_release(&out);

	CHECK(kv_msg_is_binary(kv_sample_bin, sizeof(kv_sample_bin)));
	struct kv_msg got;
	CHECK_MSG(kv_msg_decode((const char *)kv_sample_bin, sizeof(kv_sample_bin), &got) == 0,
		  "%s", err_msg());
	check_kv_sample(&got);
	kv_msg_release(&got);
}

TEST(kv_events_dump_as_documented)
{
	struct kv_event ev[2] = {
		{ .kind = KV_EV_STORED, .blocks = kv_blocks1, .n = 2 },
		{ .kind = KV_EV_STORED, .has_parent = 1, .parent_hash = 13,
		  .blocks = kv_blocks2, .n = 1 },
	};
	struct kv_msg m = { .events = ev, .n_events = 2, .is_dump = 1, .dump_last_id = 12 };
	static const char doc_json[] =
		"{\"dump\":{\"last_event_id\":12,\"stored\":["
		"{\"parent_hash\":null,\"blocks\":[{\"seq_hash\":11,\"local_hash\":12},"
		"{\"seq_hash\":13,\"local_hash\":14}]},"
		"{\"parent_hash\":13,\"blocks\":[{\"seq_hash\":21,\"local_hash\":22}]}]}}";
	struct strbuf out = STRBUF_INIT;
	kv_msg_encode(&m, KV_WIRE_JSON, &out);
	cJSON *doc = cJSON_Parse(doc_json);
	CHECK(doc);
	CHECK_JSON_AS_DOC(out.buf, doc);
	cJSON_Delete(doc);

	/* Binary: the dump flag, the last id as 8 bytes before the count,
	 * groups without event ids. */
	static const unsigned char doc_bin[] = {
		0x00, 0x4b, 0x56, 0x42, 1, 0x02,
		12, 0, 0, 0, 0, 0, 0, 0,	/* last_event_id */
		2,
		0x01, 2,
		11, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0,
		13, 0, 0, 0, 0, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0,
		0x11, 13, 0, 0, 0, 0, 0, 0, 0, 1,
		21, 0, 0, 0, 0, 0, 0, 0, 22, 0, 0, 0, 0, 0, 0, 0,
	};
	sb_reset(&out);
	kv_msg_encode(&m, KV_WIRE_BINARY, &out);
	CHECK_INT(out.len, sizeof(doc_bin));
	CHECK(!memcmp(out.buf, doc_bin, sizeof(doc_bin)));
	sb_release(&out);

	struct kv_msg got;
	CHECK_MSG(kv_msg_decode(doc_json, strlen(doc_json), &got) == 0, "%s", err_msg());
	CHECK(got.is_dump && got.dump_last_id == 12 && got.n_events == 2);
	CHECK(got.events[1].has_parent && got.events[1].parent_hash == 13);
	kv_msg_release(&got);
}

/* Hashes are JSON numbers written exactly, all 64 bits, and varints
 * take as many 7-bit groups as the value needs. */
TEST(kv_events_json_hashes_are_exact)
{
	struct block_hash_pair big[] = { { UINT64_MAX, 0x8000000000000001ull } };
	struct kv_event ev = { .event_id = 300, .kind = KV_EV_STORED, .blocks = big, .n = 1 };
	struct kv_msg m = { .events = &ev, .n_events = 1 };
	struct strbuf out = STRBUF_INIT;
	kv_msg_encode(&m, KV_WIRE_JSON, &out);
	CHECK_STR(out.buf, "{\"events\":[{\"event_id\":300,\"stored\":{\"parent_hash\":null,"
			   "\"blocks\":[{\"seq_hash\":18446744073709551615,"
			   "\"local_hash\":9223372036854775809}]}}]}");
	struct kv_msg got;
	CHECK(kv_msg_decode(out.buf, out.len, &got) == 0);
	CHECK(got.events[0].blocks[0].seq_hash == UINT64_MAX);
	CHECK(got.events[0].blocks[0].local_hash == 0x8000000000000001ull);
	kv_msg_release(&got);

	sb_reset(&out);
	kv_msg_encode(&m, KV_WIRE_BINARY, &out);
	static const unsigned char want[] = {
		0x00, 0x4b, 0x56, 0x42, 1, 0x00, 1,
		0x01, 0xac, 0x02, 1,	/* 300 = 0b10_0101100: 0xac 0x02 */
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0x01, 0, 0, 0, 0, 0, 0, 0x80,
	};
	CHECK_INT(out.len, sizeof(want));
	CHECK(!memcmp(out.buf, want, sizeof(want)));
	sb_release(&out);
}

/* An embedding model's card: the "embedding" member both ways; a
 * generative model's card has none. */
TEST(card_embedding_member)
{
	struct model_card c = { .name = "m", .model = "m", .ns = "dyn", .component = "backend",
				.endpoint = "generate", .engine = "embed", .instance_id = 1,
				.context_length = 256, .embedding_dim = 384,
				.embedding_truncatable = 1 }, back;
	struct strbuf sb = STRBUF_INIT;

	card_encode(&c, &sb);
	CHECK(strstr(sb.buf, "\"embedding\":{\"dim\":384,\"truncatable\":true}") != NULL);
	CHECK_INT(card_parse("v1/models/m/0000000000000001", sb.buf, sb.len, &back), 0);
	CHECK(back.embedding_dim == 384 && back.embedding_truncatable == 1);
	card_clear(&back);
	sb_reset(&sb);
	c.embedding_dim = 0;
	card_encode(&c, &sb);
	CHECK(strstr(sb.buf, "embedding") == NULL);
	sb_release(&sb);
}

/* The embed protocol: base64 of little-endian float32 (1.0f is 00 00 80 3F:
 * "AACAPw=="), and a response parses back to the same floats. */
TEST(embed_messages)
{
	const float v[3] = { 1.0f, -2.5f, 3.25e-8f };
	const int32_t a[] = { 101, 7, 102 }, b[] = { 5 };
	const int32_t *ids[] = { a, b };
	const size_t lens[] = { 3, 1 };
	struct strbuf sb = STRBUF_INIT;
	struct embed_request req;
	float *back;
	size_t n;
	int dim;
	long pt;

	embed_b64_floats(v, 1, &sb);
	CHECK_STR(sb.buf, "AACAPw==");
	sb_reset(&sb);
	embed_response_encode(v, 1, 3, 4, &sb);
	CHECK_INT(embed_response_parse(sb.buf, sb.len, &back, &n, &dim, &pt), 0);
	CHECK(n == 1 && dim == 3 && pt == 4 && !memcmp(back, v, sizeof(v)));
	free(back);
	sb_reset(&sb);
	embed_request_encode(ids, lens, 2, &sb);
	CHECK_STR(sb.buf, "{\"inputs\":[[101,7,102],[5]]}");
	CHECK_INT(embed_request_parse(sb.buf, sb.len, &req), 0);
	CHECK(req.n == 2 && req.lens[0] == 3 && req.ids[0][2] == 102 && req.ids[1][0] == 5);
	embed_request_release(&req);
	CHECK(embed_request_parse("{\"inputs\":[[1,-2]]}", 19, &req) < 0);
	CHECK(embed_request_parse("{\"inputs\":[]}", 13, &req) < 0);
	CHECK(embed_response_parse("{\"embeddings\":[\"AAA\"],\"prompt_tokens\":1}", 39, &back,
				   &n, &dim, &pt) < 0);
	sb_release(&sb);
}

int main(void)
{
	return RUN_TESTS();
}
