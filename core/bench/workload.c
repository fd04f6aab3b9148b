/*
 * workload.c - synthetic, trace and prompt-file workloads (see workload.h).
 */
#include "core/bench/workload.h"
#include "core/err.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (1ull << 32)
/* Seeds of the different kinds of blocks, so they never collide. */
#define SALT_PREFIX 0x7072656669780000ull
#define SALT_UNIQUE 0x756e697175650000ull
#define SALT_TRACE  0x7472616365000000ull
#define SALT_TURN   0x7475726e00000000ull
#define SALT_WARMUP 0x7761726d00000000ull

struct entry {
	double ts_ms;
	long in_len, out_len;
	int64_t *hash;
	size_t nhash;
	char *text;		/* prompt files */
};

struct bench_workload {
	struct bench_workload_cfg cfg;
	struct entry *e;
	size_t n;
	int kind;		/* 0 synthetic, 1 trace, 2 prompts */
	char *path;
};

void bench_item_init(struct bench_item *it)
{
	memset(it, 0, sizeof(*it));
	sb_init(&it->prompt, 0);
	it->ts_ms = -1;
	it->turns = 1;
}

void bench_item_release(struct bench_item *it)
{
	sb_release(&it->prompt);
}

/* Longest input or output a file may ask for (the --isl/--osl cap). */
#define MAX_LEN 100000000L

/* o[a] (else o[b]) as a whole number in [lo, hi]: 1 found, 0 absent,
 * -1 not a finite whole number in range (a string, 1.5, 1e12, 1e999...). */
static int int_field(const cJSON *o, const char *a, const char *b, double lo, double hi,
		     long *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
	if (!v && b)
		v = cJSON_GetObjectItemCaseSensitive(o, b);
	if (!v || cJSON_IsNull(v))
		return 0;
	if (!cJSON_IsNumber(v))
		return -1;
	double d = v->valuedouble;
	if (!isfinite(d) || d != floor(d) || d < lo || d > hi)
		return -1;
	*out = (long)d;
	return 1;
}

/* One line's object: the JSON value alone (whitespace around it only). */
static cJSON *parse_line(const char *p, size_t len)
{
	const char *end = NULL;
	cJSON *o = cJSON_ParseWithLengthOpts(p, len, &end, 0);
	if (!o)
		return NULL;
	for (; end && end < p + len; end++) {
		if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\0') {
			cJSON_Delete(o);
			return NULL;
		}
	}
	return o;
}

/* The line's fields into e; a negative code with the message naming
 * path:lineno when a field is missing or malformed. */
static int parse_entry(const struct bench_workload *wl, const cJSON *o, struct entry *e,
		       const char *path, size_t lineno)
{
	const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
	e->ts_ms = -1;
	if (ts && !cJSON_IsNull(ts)) {
		if (!cJSON_IsNumber(ts) || !isfinite(ts->valuedouble) || ts->valuedouble < 0 ||
		    ts->valuedouble > 1e15)
			return err_set(-EINVAL, "%s:%zu: timestamp must be a finite number of "
				       "milliseconds >= 0", path, lineno);
		e->ts_ms = ts->valuedouble;
	} else if (wl->cfg.fixed_schedule) {
		return err_set(-EINVAL, "%s:%zu: --fixed-schedule needs a timestamp on every line",
			       path, lineno);
	}
	if (wl->kind == 1) {
		const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hash_ids");
		if (int_field(o, "input_length", NULL, 1, MAX_LEN, &e->in_len) != 1 ||
		    int_field(o, "output_length", NULL, 0, MAX_LEN, &e->out_len) != 1 ||
		    (h && !cJSON_IsArray(h)))
			return err_set(-EINVAL, "%s:%zu: a trace line needs whole-number "
				       "input_length (1..%ld), output_length (0..%ld) and a "
				       "hash_ids array", path, lineno, MAX_LEN, MAX_LEN);
		double scaled = (double)e->in_len * wl->cfg.scale;
		if (scaled > (double)MAX_LEN || (double)e->out_len * wl->cfg.scale > (double)MAX_LEN)
			return err_set(-EINVAL, "%s:%zu: lengths scaled by --length-scale exceed "
				       "%ld tokens", path, lineno, MAX_LEN);
		e->nhash = (size_t)cJSON_GetArraySize(h);
		e->hash = xcalloc(e->nhash + 1, sizeof(*e->hash));
		size_t k = 0;
		const cJSON *x;
		cJSON_ArrayForEach(x, h) {
			/* Whole numbers exactly representable in a double. */
			if (!cJSON_IsNumber(x) || !isfinite(x->valuedouble) ||
			    x->valuedouble != floor(x->valuedouble) ||
			    fabs(x->valuedouble) > 9007199254740992.0)
				return err_set(-EINVAL, "%s:%zu: hash_ids[%zu] is not a whole number",
					       path, lineno, k);
			e->hash[k++] = (int64_t)x->valuedouble;
		}
	} else {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
		if (!cJSON_IsString(t))
			t = cJSON_GetObjectItemCaseSensitive(o, "prompt");
		if (!cJSON_IsString(t))
			return err_set(-EINVAL, "%s:%zu: a prompt line needs a \"text\" string",
				       path, lineno);
		e->out_len = 0;
		if (int_field(o, "output_length", "max_tokens", 0, MAX_LEN, &e->out_len) < 0)
			return err_set(-EINVAL, "%s:%zu: output_length must be a whole number "
				       "0..%ld", path, lineno, MAX_LEN);
		e->text = xstrdup(t->valuestring);
		e->in_len = -1;
	}
	return 0;
}

static int load_jsonl(struct bench_workload *wl, const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = sb_read_file(&sb, path, MAX_FILE_BYTES);
	if (rc < 0)
		return rc;
	size_t cap = 0, lineno = 0;
	char *p = sb.buf, *end = sb.buf + sb.len;
	while (p < end) {
		char *nl = memchr(p, '\n', (size_t)(end - p));
		char *le = nl ? nl : end;
		lineno++;
		char *q = p;
		while (q < le && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		if (q == le) {
			p = le + 1;
			continue;
		}
		cJSON *o = parse_line(p, (size_t)(le - p));
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			sb_release(&sb);
			return err_set(-EINVAL, "%s:%zu: not a JSON object (one per line)", path,
				       lineno);
		}
		if (wl->n == cap) {
			cap = cap ? cap * 2 : 1024;
			wl->e = xrealloc(wl->e, cap * sizeof(*wl->e));
		}
		struct entry *e = &wl->e[wl->n];
		memset(e, 0, sizeof(*e));
		rc = parse_entry(wl, o, e, path, lineno);
		if (rc < 0) {
			free(e->hash);
			free(e->text);
			cJSON_Delete(o);
			sb_release(&sb);
			return rc;
		}
		cJSON_Delete(o);
		wl->n++;
		p = le + 1;
	}
	sb_release(&sb);
	if (!wl->n)
		return err_set(-EINVAL, "%s: no requests in the file", path);
	return 0;
}

int bench_workload_new(const struct bench_workload_cfg *cfg, struct bench_workload **out)
{
	struct bench_workload *wl = xcalloc(1, sizeof(*wl));
	int rc = 0;

	wl->cfg = *cfg;
	if (wl->cfg.turns < 1)
		wl->cfg.turns = 1;
	if (wl->cfg.block_len < 1)
		wl->cfg.block_len = 512;
	if (wl->cfg.scale <= 0)
		wl->cfg.scale = 1;
	if (cfg->trace) {
		wl->kind = 1;
		rc = load_jsonl(wl, cfg->trace);
	} else if (cfg->prompts) {
		wl->kind = 2;
		rc = load_jsonl(wl, cfg->prompts);
	} else if (cfg->isl < 1) {
		rc = err_set(-EINVAL, "--isl must be at least 1");
	} else if (cfg->prefix_len >= cfg->isl) {
		rc = err_set(-EINVAL, "--shared-prefix-len (%ld) must be below --isl (%ld)",
			     cfg->prefix_len, cfg->isl);
	}
	if (rc < 0) {
		bench_workload_free(wl);
		return rc;
	}
	*out = wl;
	return 0;
}

void bench_workload_free(struct bench_workload *wl)
{
	if (!wl)
		return;
	for (size_t i = 0; i < wl->n; i++) {
		free(wl->e[i].hash);
		free(wl->e[i].text);
	}
	free(wl->e);
	free(wl);
}

long bench_workload_count(const struct bench_workload *wl)
{
	return (long)wl->n;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t s = a ^ (b * 0x9e3779b97f4a7c15ull);
	return bench_rand(&s);
}

/* A length drawn around mean (>= 1). */
static long draw(const struct bench_workload *wl, long mean, double sd, uint64_t seed)
{
	if (sd <= 0 || wl->cfg.dist == BENCH_DIST_FIXED)
		return mean;
	uint64_t st = seed;
	double x;
	if (wl->cfg.dist == BENCH_DIST_UNIFORM) {
		double half = sd * sqrt(3.0);
		x = (double)mean - half + 2 * half * bench_rand01(&st);
	} else {
		double u1 = bench_rand01(&st), u2 = bench_rand01(&st);
		if (u1 < 1e-300)
			u1 = 1e-300;
		x = (double)mean + sd * sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
	}
	long v = lround(x);
	return v < 1 ? 1 : v;
}

/* Words for n tokens: the tokenizer's constant offset comes off the first
 * block of a text only. */
static long words_for(const struct bench_workload *wl, long tokens)
{
	long n = tokens - (wl->cfg.tok ? wl->cfg.tok_offset : 0);
	return n < 1 ? 1 : n;
}

static int synthetic(struct bench_workload *wl, long index, int turn, struct bench_item *it)
{
	const struct bench_workload_cfg *c = &wl->cfg;
	uint64_t s = mix(c->seed, (uint64_t)index) ^ ((uint64_t)turn << 48);
	long isl = draw(wl, c->isl, c->isl_stddev, mix(s, 1));
	long osl = draw(wl, c->osl, c->osl_stddev, mix(s, 2));
	long prefix = (turn == 0 && c->prefix_len > 0) ? c->prefix_len : 0;

	if (prefix >= isl)
		isl = prefix + 1;
	long words = words_for(wl, isl);
	long body = words - prefix;
	if (body < 1)
		body = 1, words = prefix + 1;
	if (prefix) {
		long groups = c->prefix_groups > 0 ? c->prefix_groups : 1;
		uint64_t g = (uint64_t)(index % groups);
		bench_words_block(c->words, mix(c->seed ^ SALT_PREFIX, g), (size_t)prefix, &it->prompt);
	}
	bench_words_block(c->words, mix(c->seed ^ (turn ? SALT_TURN : SALT_UNIQUE), s),
			  (size_t)body, &it->prompt);
	it->isl = words + (c->tok ? c->tok_offset : 0);
	it->osl = osl;
	it->turns = c->turns;
	return 0;
}

static int trace(struct bench_workload *wl, long index, struct bench_item *it)
{
	const struct bench_workload_cfg *c = &wl->cfg;
	const struct entry *e = &wl->e[(size_t)index % wl->n];
	long block = lround((double)c->block_len * c->scale);
	long in = lround((double)e->in_len * c->scale);
	if (block < 1)
		block = 1;
	if (in < 1)
		in = 1;
	long words = words_for(wl, in);
	long left = words;
	for (size_t b = 0; left > 0; b++) {
		long n = left < block ? left : block;
		uint64_t seed = b < e->nhash ? mix(c->seed ^ SALT_TRACE, (uint64_t)e->hash[b])
					     : mix(c->seed ^ SALT_UNIQUE, mix((uint64_t)index, b));
		bench_words_block(c->words, seed, (size_t)n, &it->prompt);
		left -= n;
	}
	it->isl = words + (c->tok ? c->tok_offset : 0);
	it->osl = e->out_len ? lround((double)e->out_len * c->scale) : 0;
	if (e->out_len && it->osl < 1)
		it->osl = 1;
	it->ts_ms = e->ts_ms;
	it->turns = 1;
	return 0;
}

static int prompts(struct bench_workload *wl, long index, struct bench_item *it)
{
	const struct entry *e = &wl->e[(size_t)index % wl->n];
	sb_adds(&it->prompt, e->text);
	it->isl = -1;
	if (wl->cfg.tok) {
		struct tok_ids ids = TOK_IDS_INIT;
		if (tok_encode(wl->cfg.tok, e->text, strlen(e->text), 0, &ids) == 0)
			it->isl = (long)ids.n;
		tok_ids_release(&ids);
	}
	it->osl = e->out_len > 0 ? e->out_len : wl->cfg.osl;
	it->ts_ms = e->ts_ms;
	it->turns = 1;
	return 0;
}

int bench_workload_item(struct bench_workload *wl, long index, int turn, struct bench_item *it)
{
	sb_reset(&it->prompt);
	it->ts_ms = -1;
	it->isl = -1;
	it->osl = 0;
	if (wl->kind == 1)
		return trace(wl, index, it);
	if (wl->kind == 2)
		return prompts(wl, index, it);
	return synthetic(wl, index, turn, it);
}

int bench_workload_warmup_item(struct bench_workload *wl, long k, struct bench_item *it)
{
	const struct bench_workload_cfg *c = &wl->cfg;
	uint64_t s = mix(c->seed ^ SALT_WARMUP, (uint64_t)k);
	long isl, osl;

	sb_reset(&it->prompt);
	if (wl->kind == 1) {
		/* The lengths of a trace entry, none of its blocks. */
		const struct entry *e = &wl->e[(size_t)k % wl->n];
		isl = lround((double)e->in_len * c->scale);
		osl = e->out_len ? lround((double)e->out_len * c->scale) : 0;
		if (e->out_len && osl < 1)
			osl = 1;
	} else if (wl->kind == 2) {
		const struct entry *e = &wl->e[(size_t)k % wl->n];
		isl = c->isl > 0 ? c->isl : 128;
		osl = e->out_len > 0 ? e->out_len : c->osl;
	} else {
		isl = draw(wl, c->isl, c->isl_stddev, mix(s, 1));
		osl = draw(wl, c->osl, c->osl_stddev, mix(s, 2));
	}
	if (isl < 1)
		isl = 1;
	long words = words_for(wl, isl);
	bench_words_block(c->words, mix(s, 3), (size_t)words, &it->prompt);
	it->isl = words + (c->tok ? c->tok_offset : 0);
	it->osl = osl;
	it->ts_ms = -1;
	it->turns = 1;
	return 0;
}

void bench_workload_describe(const struct bench_workload *wl, struct strbuf *out)
{
	const struct bench_workload_cfg *c = &wl->cfg;
	static const char *const dn[] = { "fixed", "normal", "uniform" };

	if (wl->kind == 1) {
		sb_addf(out, "trace %s (%zu requests, block %ld tokens, length scale %g)",
			c->trace, wl->n, c->block_len, c->scale);
	} else if (wl->kind == 2) {
		sb_addf(out, "prompts %s (%zu prompts)", c->prompts, wl->n);
	} else {
		int fixed = c->dist == BENCH_DIST_FIXED || (c->isl_stddev <= 0 && c->osl_stddev <= 0);
		sb_addf(out, "synthetic isl=%ld osl=%ld (%s", c->isl, c->osl, dn[fixed ? 0 : c->dist]);
		if (!fixed)
			sb_addf(out, ", stddev %g/%g", c->isl_stddev, c->osl_stddev);
		sb_addf(out, ")");
		if (c->prefix_len)
			sb_addf(out, " shared prefix %ld tokens x %ld groups", c->prefix_len,
				c->prefix_groups > 0 ? c->prefix_groups : 1);
		if (c->turns > 1)
			sb_addf(out, " %d turns", c->turns);
	}
	sb_addf(out, ", prompts %s", c->tok ? "from the tokenizer (exact token counts)"
					    : "from built-in words (about one token each)");
}
