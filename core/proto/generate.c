/*
 * generate.c - encode and parse the generate protocol (see generate.h).
 */
#include "core/proto/generate.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gen_request_init(struct gen_request *r)
{
	memset(r, 0, sizeof(*r));
	r->s.temperature = r->s.top_p = r->s.min_p = NAN;
	r->s.presence_penalty = r->s.frequency_penalty = r->s.repetition_penalty = NAN;
	r->s.top_k = -1;
	r->max_tokens = -1;
	r->logprobs = -1;
	r->prompt_logprobs = -1;
}

void gen_request_release(struct gen_request *r)
{
	free(r->token_ids);
	free(r->stop_token_ids);
	free(r->kv_source);
	free(r->grammar_kind);
	free(r->grammar_spec);
	free(r->s.bias_ids);
	free(r->s.bias);
	gen_request_init(r);
}

static void add_double(struct strbuf *out, int *first, const char *name, double v)
{
	if (isnan(v))
		return;
	sb_addf(out, "%s\"%s\":%.17g", *first ? "" : ",", name, v);
	*first = 0;
}

static void add_ids(struct strbuf *out, const int32_t *ids, size_t n)
{
	sb_addch(out, '[');
	for (size_t i = 0; i < n; i++)
		sb_addf(out, i ? ",%d" : "%d", (int)ids[i]);
	sb_addch(out, ']');
}

void gen_request_encode(const struct gen_request *r, struct strbuf *out)
{
	int first = 1;
	sb_adds(out, "{\"token_ids\":");
	add_ids(out, r->token_ids, r->n_tokens);
	sb_adds(out, ",\"sampling\":{");
	add_double(out, &first, "temperature", r->s.temperature);
	add_double(out, &first, "top_p", r->s.top_p);
	add_double(out, &first, "min_p", r->s.min_p);
	add_double(out, &first, "presence_penalty", r->s.presence_penalty);
	add_double(out, &first, "frequency_penalty", r->s.frequency_penalty);
	add_double(out, &first, "repetition_penalty", r->s.repetition_penalty);
	if (r->s.top_k >= 0) {
		sb_addf(out, "%s\"top_k\":%ld", first ? "" : ",", r->s.top_k);
		first = 0;
	}
	if (r->s.has_seed)	/* signed: what parses back to the same bits */
		sb_addf(out, "%s\"seed\":%lld", first ? "" : ",", (long long)(int64_t)r->s.seed);
	if (r->s.n_bias) {
		sb_addf(out, "%s\"logit_bias\":[", first ? "" : ",");
		for (size_t i = 0; i < r->s.n_bias; i++)
			sb_addf(out, "%s[%d,%.17g]", i ? "," : "", (int)r->s.bias_ids[i],
				r->s.bias[i]);
		sb_addch(out, ']');
	}
	sb_addf(out, "},\"stop\":{\"max_tokens\":%ld,\"min_tokens\":%ld,\"ignore_eos\":%s,"
		"\"stop_token_ids\":", r->max_tokens, r->min_tokens,
		r->ignore_eos ? "true" : "false");
	add_ids(out, r->stop_token_ids, r->n_stop_ids);
	sb_addch(out, '}');
	if (r->logprobs >= 0)
		sb_addf(out, ",\"logprobs\":%d", r->logprobs);
	if (r->prompt_logprobs >= 0)
		sb_addf(out, ",\"prompt_logprobs\":%d", r->prompt_logprobs);
	if (r->prefill_only)
		sb_adds(out, ",\"disagg\":{\"prefill\":true}");
	else if (r->kv_source)
		sb_addf(out, ",\"disagg\":{\"kv_source\":%s}", r->kv_source);
	if (r->grammar_kind) {
		sb_adds(out, ",\"grammar\":{\"kind\":");
		sb_add_json_str(out, r->grammar_kind, strlen(r->grammar_kind));
		sb_adds(out, ",\"spec\":");
		sb_add_json_str(out, r->grammar_spec, strlen(r->grammar_spec));
		if (r->grammar_lenient)
			sb_adds(out, ",\"lenient\":true");
		if (r->grammar_done > 0)
			sb_addf(out, ",\"done\":%ld", r->grammar_done);
		sb_addch(out, '}');
	}
	sb_addch(out, '}');
}

void gen_kv_layout_fingerprint(char *out, size_t cap, int n_layers, int n_kv_heads,
			       int head_dim, int block_size, const char *dtype)
{
	int n = snprintf(out, cap, "L%d-KV%dx%d-B%d-", n_layers, n_kv_heads, head_dim,
			 block_size);
	for (const char *c = dtype; n >= 0 && (size_t)n + 1 < cap && *c; c++)
		out[n++] = (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c);
	if (n >= 0 && (size_t)n < cap)
		out[n] = 0;
}

/* A 64-bit id as the protocol writes it: 16 hex digits. */
static int get_hex64(const cJSON *obj, const char *name, uint64_t *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	const char *s = cJSON_IsString(v) ? v->valuestring : "";
	uint64_t x = 0;
	if (strlen(s) != 16)
		return err_set(-EINVAL, "kv_source.%s must be 16 hex digits", name);
	for (int i = 0; i < 16; i++) {
		int d = hex_digit(s[i]);
		if (d < 0)
			return err_set(-EINVAL, "kv_source.%s must be 16 hex digits", name);
		x = x << 4 | (uint64_t)d;
	}
	*out = x;
	return 0;
}

/* An address or a fingerprint: printable ASCII, no spaces. */
static int get_str(const cJSON *obj, const char *name, char *out, size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	size_t n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
	for (size_t i = 0; i < n; i++)
		if (v->valuestring[i] <= ' ' || v->valuestring[i] > '~')
			n = 0;
	if (!n || n >= cap)
		return err_set(-EINVAL, "kv_source.%s must be 1 to %zu printable ASCII "
			       "characters", name, cap - 1);
	memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
	return 0;
}

static int get_count(const cJSON *obj, const char *name, long min, long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
	    v->valuedouble < (double)min || v->valuedouble > INT32_MAX)
		return err_set(-EINVAL, "kv_source.%s must be an integer >= %ld", name, min);
	*out = (long)v->valuedouble;
	return 0;
}

static const char *const kv_source_members[] = {
	"worker", "tcp", "ucx", "tls", "handle", "n_tokens", "block_size", "layout", NULL
};

/* A member of obj whose name is not in names, or NULL. */
static const char *unknown_member(const cJSON *obj, const char *const *names)
{
	const cJSON *m;
	cJSON_ArrayForEach(m, obj) {
		int known = 0;
		for (int i = 0; names[i] && !known; i++)
			known = !strcmp(m->string, names[i]);
		if (!known)
			return m->string;
	}
	return NULL;
}

static int kv_source_read(const cJSON *o, struct gen_kv_source *s)
{
	const char *bad;
	memset(s, 0, sizeof(*s));
	if (!cJSON_IsObject(o))
		return err_set(-EINVAL, "kv_source must be an object");
	if ((bad = unknown_member(o, kv_source_members)))
		return err_set(-EINVAL, "kv_source has an unknown member \"%s\"", bad);
	const cJSON *ucx = cJSON_GetObjectItemCaseSensitive(o, "ucx");
	if (!cJSON_IsBool(ucx))
		return err_set(-EINVAL, "kv_source.ucx must be true or false");
	s->ucx = cJSON_IsTrue(ucx);
	const cJSON *tls = cJSON_GetObjectItemCaseSensitive(o, "tls");
	if (tls && !cJSON_IsBool(tls))
		return err_set(-EINVAL, "kv_source.tls must be true or false");
	s->tls = cJSON_IsTrue(tls);
	int rc = get_hex64(o, "worker", &s->worker);
	if (!rc) rc = get_hex64(o, "handle", &s->handle);
	if (!rc) rc = get_str(o, "tcp", s->tcp, sizeof(s->tcp));
	if (!rc) rc = get_count(o, "n_tokens", 0, &s->n_tokens);
	if (!rc) rc = get_count(o, "block_size", 1, &s->block_size);
	if (!rc) rc = get_str(o, "layout", s->layout, sizeof(s->layout));
	return rc;
}

int gen_kv_source_parse(const char *json, size_t len, struct gen_kv_source *out)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	int rc = kv_source_read(root, out);
	cJSON_Delete(root);
	return rc;
}

void gen_kv_source_encode(const struct gen_kv_source *s, struct strbuf *out)
{
	sb_addf(out, "{\"worker\":\"%016llx\",\"tcp\":", (unsigned long long)s->worker);
	sb_add_json_str(out, s->tcp, strlen(s->tcp));
	sb_addf(out, ",\"ucx\":%s%s,\"handle\":\"%016llx\",\"n_tokens\":%ld,"
		"\"block_size\":%ld,\"layout\":", s->ucx ? "true" : "false",
		s->tls ? ",\"tls\":true" : "",
		(unsigned long long)s->handle, s->n_tokens, s->block_size);
	sb_add_json_str(out, s->layout, strlen(s->layout));
	sb_addch(out, '}');
}

static const char *const disagg_members[] = { "prefill", "kv_source", NULL };

/* The "disagg" member: strict, since a worker that misread it would
 * answer a different question than the frontend asked. */
static int get_disagg(const cJSON *d, struct gen_request *r)
{
	const char *bad;
	if (!d || cJSON_IsNull(d))
		return 0;
	if (!cJSON_IsObject(d))
		return err_set(-EINVAL, "disagg must be an object");
	if ((bad = unknown_member(d, disagg_members)))
		return err_set(-EINVAL, "disagg has an unknown member \"%s\"", bad);
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(d, "prefill");
	const cJSON *src = cJSON_GetObjectItemCaseSensitive(d, "kv_source");
	if (p && !cJSON_IsBool(p))
		return err_set(-EINVAL, "disagg.prefill must be true or false");
	r->prefill_only = cJSON_IsTrue(p);
	if (!src)
		return 0;
	if (r->prefill_only)
		return err_set(-EINVAL, "disagg.prefill and disagg.kv_source exclude each other");
	struct gen_kv_source s;
	int rc = kv_source_read(src, &s);
	if (rc == 0)
		r->kv_source = cJSON_PrintUnformatted(src);
	return rc;
}

static int get_ids(const cJSON *arr, const char *what, int32_t **out, size_t *n)
{
	if (!cJSON_IsArray(arr))
		return err_set(-EINVAL, "%s must be an array of token ids", what);
	size_t cnt = (size_t)cJSON_GetArraySize(arr), i = 0;
	*out = xmalloc((cnt ? cnt : 1) * sizeof(int32_t));
	const cJSON *v;
	cJSON_ArrayForEach(v, arr) {
		if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > INT32_MAX ||
		    v->valuedouble != floor(v->valuedouble)) {
			free(*out);
			*out = NULL;
			return err_set(-EINVAL, "%s[%zu] is not a token id", what, i);
		}
		(*out)[i++] = (int32_t)v->valuedouble;
	}
	*n = cnt;
	return 0;
}

static int get_num(const cJSON *obj, const char *name, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v || cJSON_IsNull(v))
		return 0;
	/* 1e400 reads as inf: nothing here takes it, and it would not re-encode */
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return err_set(-EINVAL, "%s must be a number", name);
	*out = v->valuedouble;
	return 0;
}

/* An integer field: within +-2^53, so that the conversion is defined. */
static int get_long(const cJSON *obj, const char *name, long *out)
{
	double d = NAN;
	int rc = get_num(obj, name, &d);
	if (rc < 0 || isnan(d))
		return rc;
	if (fabs(d) > 9007199254740992.0)
		return err_set(-EINVAL, "%s out of range", name);
	*out = (long)d;
	return 0;
}

/* "logit_bias":[[id,bias],..] */
static int get_bias(const cJSON *v, struct gen_sampling *s)
{
	if (!v)
		return 0;
	if (!cJSON_IsArray(v))
		return err_set(-EINVAL, "logit_bias must be an array of [id, bias] pairs");
	size_t n = (size_t)cJSON_GetArraySize(v);
	s->bias_ids = xcalloc(n ? n : 1, sizeof(int32_t));
	s->bias = xcalloc(n ? n : 1, sizeof(double));
	const cJSON *e;
	cJSON_ArrayForEach(e, v) {
		const cJSON *id = cJSON_GetArrayItem(e, 0), *b = cJSON_GetArrayItem(e, 1);
		if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) != 2 || !cJSON_IsNumber(id) ||
		    !cJSON_IsNumber(b) || id->valuedouble != floor(id->valuedouble) ||
		    id->valuedouble < 0 || id->valuedouble > INT32_MAX || !isfinite(b->valuedouble))
			return err_set(-EINVAL, "logit_bias must be an array of [id, bias] pairs");
		s->bias_ids[s->n_bias] = (int32_t)id->valuedouble;
		s->bias[s->n_bias++] = b->valuedouble;
	}
	return 0;
}

int gen_request_parse(const char *json, size_t len, struct gen_request *r)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	int rc = 0;
	double d;

	gen_request_init(r);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "generate request is not a JSON object");
	}
	rc = get_ids(cJSON_GetObjectItemCaseSensitive(root, "token_ids"), "token_ids",
		     &r->token_ids, &r->n_tokens);
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "sampling");
	if (!rc && s) {
		if (!cJSON_IsObject(s))
			rc = err_set(-EINVAL, "sampling must be an object");
		if (!rc) rc = get_num(s, "temperature", &r->s.temperature);
		if (!rc) rc = get_num(s, "top_p", &r->s.top_p);
		if (!rc) rc = get_num(s, "min_p", &r->s.min_p);
		if (!rc) rc = get_num(s, "presence_penalty", &r->s.presence_penalty);
		if (!rc) rc = get_num(s, "frequency_penalty", &r->s.frequency_penalty);
		if (!rc) rc = get_num(s, "repetition_penalty", &r->s.repetition_penalty);
		if (!rc) rc = get_long(s, "top_k", &r->s.top_k);
		if (!rc) rc = get_bias(cJSON_GetObjectItemCaseSensitive(s, "logit_bias"), &r->s);
		d = NAN;
		if (!rc) rc = get_num(s, "seed", &d);
		if (!rc && !isnan(d)) {
			/* any 64-bit pattern: negative ones as two's complement */
			if (d < -9223372036854775808.0 || d >= 18446744073709551616.0)
				rc = err_set(-EINVAL, "seed out of range");
			r->s.has_seed = 1;
			r->s.seed = rc ? 0 : d < 0 ? (uint64_t)(int64_t)d : (uint64_t)d;
		}
	}
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stop");
	if (!rc && st) {
		if (!cJSON_IsObject(st))
			rc = err_set(-EINVAL, "stop must be an object");
		if (!rc) rc = get_long(st, "max_tokens", &r->max_tokens);
		if (!rc) rc = get_long(st, "min_tokens", &r->min_tokens);
		r->ignore_eos = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "ignore_eos"));
		const cJSON *ids = cJSON_GetObjectItemCaseSensitive(st, "stop_token_ids");
		if (!rc && ids)
			rc = get_ids(ids, "stop_token_ids", &r->stop_token_ids, &r->n_stop_ids);
	}
	d = -1;
	if (!rc) rc = get_num(root, "logprobs", &d);
	r->logprobs = d < 0 ? -1 : d > 20 ? 20 : (int)d;
	d = -1;
	if (!rc) rc = get_num(root, "prompt_logprobs", &d);
	r->prompt_logprobs = d < 0 ? -1 : d > 20 ? 20 : (int)d;
	if (!rc) rc = get_disagg(cJSON_GetObjectItemCaseSensitive(root, "disagg"), r);
	const cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "grammar");
	if (!rc && g) {
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(g, "kind");
		const cJSON *sp = cJSON_GetObjectItemCaseSensitive(g, "spec");
		if (!cJSON_IsString(k) || !cJSON_IsString(sp)) {
			rc = err_set(-EINVAL, "grammar must be {\"kind\":string,\"spec\":string}");
		} else {
			r->grammar_kind = xstrdup(k->valuestring);
			r->grammar_spec = xstrdup(sp->valuestring);
			r->grammar_lenient = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(g, "lenient"));
			rc = get_long(g, "done", &r->grammar_done);
			if (!rc && (r->grammar_done < 0 || (size_t)r->grammar_done > r->n_tokens))
				rc = err_set(-EINVAL, "grammar.done must be in [0, the prompt's length]");
		}
	}
	cJSON_Delete(root);
	if (rc < 0)
		gen_request_release(r);
	return rc;
}

void gen_output_release(struct gen_output *o)
{
	free(o->token_ids);
	free(o->lps);
	free(o->plps);
	free(o->kv_source);
	memset(o, 0, sizeof(*o));
}

/* ,"finish_reason":..,"usage":{..} */
static void add_end(struct strbuf *out, const char *finish_reason, long prompt_tokens,
		    long completion_tokens, long cached_tokens)
{
	sb_addf(out, ",\"finish_reason\":\"%s\",\"usage\":{\"prompt_tokens\":%ld,"
		"\"completion_tokens\":%ld", finish_reason, prompt_tokens, completion_tokens);
	if (cached_tokens >= 0)
		sb_addf(out, ",\"prompt_tokens_details\":{\"cached_tokens\":%ld}",
			cached_tokens);
	sb_addch(out, '}');
}

/* ,"name":[{"logprob":L,("rank":R,)"top":[[id,L],..]},..] */
static void add_lps(struct strbuf *out, const char *name, const struct gen_logprob *lps,
		    size_t n)
{
	sb_addf(out, ",\"%s\":[", name);
	for (size_t i = 0; i < n; i++) {
		sb_addf(out, "%s{\"logprob\":%.9g,", i ? "," : "", lps[i].logprob);
		if (lps[i].rank > 0)
			sb_addf(out, "\"rank\":%ld,", lps[i].rank);
		sb_adds(out, "\"top\":[");
		for (int k = 0; k < lps[i].ntop; k++)
			sb_addf(out, "%s[%d,%.9g]", k ? "," : "", (int)lps[i].top_ids[k],
				lps[i].top_lps[k]);
		sb_adds(out, "]}");
	}
	sb_addch(out, ']');
}

void gen_output_encode(struct strbuf *out, const int32_t *ids, size_t n,
		       const struct gen_logprob *lps, const char *finish_reason,
		       long prompt_tokens, long completion_tokens, long cached_tokens)
{
	sb_adds(out, "{\"token_ids\":");
	add_ids(out, ids, n);
	if (lps)
		add_lps(out, "logprobs", lps, n);
	if (finish_reason)
		add_end(out, finish_reason, prompt_tokens, completion_tokens, cached_tokens);
	sb_addch(out, '}');
}

void gen_output_encode_prompt(struct strbuf *out, const struct gen_logprob *lps, size_t n)
{
	sb_adds(out, "{\"token_ids\":[]");
	add_lps(out, "prompt_logprobs", lps, n);
	sb_addch(out, '}');
}

void gen_output_encode_kv(struct strbuf *out, const struct gen_kv_source *src,
			  long prompt_tokens, long cached_tokens)
{
	sb_adds(out, "{\"token_ids\":[],\"kv_source\":");
	gen_kv_source_encode(src, out);
	add_end(out, "length", prompt_tokens, 0, cached_tokens);
	sb_addch(out, '}');
}

/* A peer's number made safe to convert (out-of-range casts are undefined). */
static double clamp(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* At most max entries of a logprobs array into a new *out; their count. */
static size_t read_lps(const cJSON *arr, size_t max, struct gen_logprob **out)
{
	size_t i = 0;
	const cJSON *e;
	*out = xcalloc(max ? max : 1, sizeof(**out));
	cJSON_ArrayForEach(e, arr) {
		if (i >= max)
			break;
		struct gen_logprob *g = &(*out)[i++];
		const cJSON *lp = cJSON_GetObjectItemCaseSensitive(e, "logprob");
		const cJSON *rank = cJSON_GetObjectItemCaseSensitive(e, "rank");
		g->logprob = cJSON_IsNumber(lp) ? lp->valuedouble : 0;
		g->rank = cJSON_IsNumber(rank) ? (long)clamp(rank->valuedouble, 0, INT32_MAX) : 0;
		const cJSON *top = cJSON_GetObjectItemCaseSensitive(e, "top"), *t;
		cJSON_ArrayForEach(t, top) {
			if (g->ntop >= 20 || cJSON_GetArraySize(t) != 2)
				break;
			g->top_ids[g->ntop] = (int32_t)clamp(cJSON_GetArrayItem(t, 0)->valuedouble,
							     -1, INT32_MAX);
			g->top_lps[g->ntop] = cJSON_GetArrayItem(t, 1)->valuedouble;
			g->ntop++;
		}
	}
	return i;
}

int gen_output_parse(const char *json, size_t len, struct gen_output *o)
{
	memset(o, 0, sizeof(*o));
	o->prompt_tokens = o->completion_tokens = o->cached_tokens = -1;
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "worker response is not a JSON object");
	}
	int rc = get_ids(cJSON_GetObjectItemCaseSensitive(root, "token_ids"), "token_ids",
			 &o->token_ids, &o->n);
	const cJSON *lps = cJSON_GetObjectItemCaseSensitive(root, "logprobs");
	if (!rc && cJSON_IsArray(lps))
		read_lps(lps, o->n, &o->lps);
	const cJSON *plps = cJSON_GetObjectItemCaseSensitive(root, "prompt_logprobs");
	if (!rc && cJSON_IsArray(plps))
		o->n_plps = read_lps(plps, (size_t)cJSON_GetArraySize(plps), &o->plps);
	const cJSON *src = cJSON_GetObjectItemCaseSensitive(root, "kv_source");
	if (!rc && src) {
		struct gen_kv_source s;
		rc = kv_source_read(src, &s);
		if (rc == 0)
			o->kv_source = cJSON_PrintUnformatted(src);
	}
	const cJSON *fr = cJSON_GetObjectItemCaseSensitive(root, "finish_reason");
	if (cJSON_IsString(fr))
		snprintf(o->finish_reason, sizeof(o->finish_reason), "%s", fr->valuestring);
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
	if (cJSON_IsObject(u)) {
		const cJSON *p = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
		const cJSON *c = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
		if (cJSON_IsNumber(p))
			o->prompt_tokens = (long)clamp(p->valuedouble, -1, INT32_MAX);
		if (cJSON_IsNumber(c))
			o->completion_tokens = (long)clamp(c->valuedouble, -1, INT32_MAX);
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens_details");
		const cJSON *k = cJSON_GetObjectItemCaseSensitive(d, "cached_tokens");
		if (cJSON_IsNumber(k))
			o->cached_tokens = (long)clamp(k->valuedouble, -1, INT32_MAX);
	}
	cJSON_Delete(root);
	if (rc < 0)
		gen_output_release(o);
	return rc;
}
