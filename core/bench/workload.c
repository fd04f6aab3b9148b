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

static long num_field(const cJSON *o, const char *a, const char *b, long def)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, a);
	if (!cJSON_IsNumber(v) && b)
		v = cJSON_GetObjectItemCaseSensitive(o, b);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : def;
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
		cJSON *o = cJSON_ParseWithLength(p, (size_t)(le - p));
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			sb_release(&sb);
			return err_set(-EINVAL, "%s:%zu: not a JSON object", path, lineno);
		}
		if (wl->n == cap) {
			cap = cap ? cap * 2 : 1024;
			wl->e = xrealloc(wl->e, cap * sizeof(*wl->e));
		}
		struct entry *e = &wl->e[wl->n];
		memset(e, 0, sizeof(*e));
		const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
		e->ts_ms = cJSON_IsNumber(ts) ? ts->valuedouble : -1;
		if (wl->kind == 1) {
			e->in_len = num_field(o, "input_length", NULL, -1);
			e->out_len = num_field(o, "output_length", NULL, -1);
			const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "hash_ids");
			if (e->in_len < 1 || e->out_len < 0 || (h && !cJSON_IsArray(h))) {
				cJSON_Delete(o);
				sb_release(&sb);
				return err_set(-EINVAL, "%s:%zu: a trace line needs input_length >= 1, "
					       "output_length and a hash_ids array", path, lineno);
			}
			e->nhash = (size_t)cJSON_GetArraySize(h);
			e->hash = xcalloc(e->nhash + 1, sizeof(*e->hash));
			size_t k = 0;
			const cJSON *x;
			cJSON_ArrayForEach(x, h)
				e->hash[k++] = cJSON_IsNumber(x) ? (int64_t)x->valuedouble : 0;
		} else {
			const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "text");
			if (!cJSON_IsString(t))
				t = cJSON_GetObjectItemCaseSensitive(o, "prompt");
			if (!cJSON_IsString(t)) {
				cJSON_Delete(o);
				sb_release(&sb);
				return err_set(-EINVAL, "%s:%zu: a prompt line needs a \"text\" string",
					       path, lineno);
			}
			e->text = xstrdup(t->valuestring);
			e->out_len = num_field(o, "output_length", "max_tokens", 0);
			e->in_len = -1;
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
