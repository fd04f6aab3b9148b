/*
 * compare.c - side-by-side comparison and plot of saved results (see
 * compare.h).
 */
#include "core/bench/compare.h"
#include "core/bench/stats.h"
#include "core/bench/svg.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (1ull << 32)

struct column {
	char *name;
	int file;		/* which file it came from */
	const cJSON *agg;	/* into the file's document */
	double x;		/* concurrency or request rate */
	int open;		/* open loop (x is a rate) */
	double *ttft, *itl;	/* sorted samples */
	size_t nttft, nitl;
};

struct bench_cmp {
	cJSON **docs;
	size_t ndocs;
	struct column *col;
	size_t ncol;
};

static const char *const colors[] = {
	"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
};

static double num(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void collect(struct column *c, const cJSON *recs)
{
	size_t cap_t = 64, cap_i = 256;
	const cJSON *r;
	c->ttft = xmalloc(cap_t * sizeof(double));
	c->itl = xmalloc(cap_i * sizeof(double));
	cJSON_ArrayForEach(r, recs) {
		const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
		if (e && !cJSON_IsNull(e))
			continue;
		double t = num(r, "ttft_ms");
		if (!isnan(t)) {
			if (c->nttft == cap_t)
				c->ttft = xrealloc(c->ttft, (cap_t *= 2) * sizeof(double));
			c->ttft[c->nttft++] = t;
		}
		const cJSON *g;
		cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(r, "itl_ms")) {
			if (!cJSON_IsNumber(g))
				continue;
			if (c->nitl == cap_i)
				c->itl = xrealloc(c->itl, (cap_i *= 2) * sizeof(double));
			c->itl[c->nitl++] = g->valuedouble;
		}
	}
	qsort(c->ttft, c->nttft, sizeof(double), cmp_d);
	qsort(c->itl, c->nitl, sizeof(double), cmp_d);
}

int bench_cmp_load(const char *const *paths, size_t n, struct bench_cmp **out)
{
	struct bench_cmp *c = xcalloc(1, sizeof(*c));
	c->docs = xcalloc(n, sizeof(*c->docs));
	for (size_t i = 0; i < n; i++) {
		struct strbuf sb = STRBUF_INIT;
		int rc = sb_read_file(&sb, paths[i], MAX_FILE_BYTES);
		if (rc < 0) {
			sb_release(&sb);
			bench_cmp_free(c);
			return rc;
		}
		cJSON *d = cJSON_ParseWithLength(sb.buf, sb.len);
		sb_release(&sb);
		const cJSON *runs = cJSON_GetObjectItemCaseSensitive(d, "runs");
		if (!cJSON_IsArray(runs) || !cJSON_GetArraySize(runs)) {
			cJSON_Delete(d);
			bench_cmp_free(c);
			return err_set(-EINVAL, "%s: not a dyn bench --json result (no runs)", paths[i]);
		}
		c->docs[c->ndocs++] = d;
		int nr = cJSON_GetArraySize(runs);
		c->col = xrealloc(c->col, (c->ncol + (size_t)nr) * sizeof(*c->col));
		const cJSON *run;
		cJSON_ArrayForEach(run, runs) {
			struct column *col = &c->col[c->ncol++];
			memset(col, 0, sizeof(*col));
			const cJSON *label = cJSON_GetObjectItemCaseSensitive(run, "label");
			struct strbuf nm = STRBUF_INIT;
			sb_adds(&nm, base_name(paths[i]));
			if (nr > 1 && cJSON_IsString(label))
				sb_addf(&nm, ":%s", label->valuestring);
			col->name = sb_detach(&nm, NULL);
			col->file = (int)i;
			col->agg = cJSON_GetObjectItemCaseSensitive(run, "aggregate");
			const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(run, "config");
			double rate = num(cfg, "request_rate");
			col->open = !isnan(rate) && rate > 0;
			col->x = col->open ? rate : num(cfg, "concurrency");
			collect(col, cJSON_GetObjectItemCaseSensitive(run, "records"));
		}
	}
	*out = c;
	return 0;
}

void bench_cmp_free(struct bench_cmp *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ncol; i++) {
		free(c->col[i].name);
		free(c->col[i].ttft);
		free(c->col[i].itl);
	}
	free(c->col);
	for (size_t i = 0; i < c->ndocs; i++)
		cJSON_Delete(c->docs[i]);
	free(c->docs);
	free(c);
}

/* A table row: the figure at aggregate[key][sub] (sub NULL: aggregate[key]). */
struct row {
	const char *title, *key, *sub;
};

static const struct row rows[] = {
	{ "requests completed", "completed", NULL },
	{ "errors", "errors", NULL },
	{ "request throughput (req/s)", "request_throughput", NULL },
	{ "output throughput (tok/s)", "output_token_throughput", NULL },
	{ "goodput (req/s)", "goodput", NULL },
	{ "TTFT p50 (ms)", "ttft_ms", "p50" },
	{ "TTFT p90 (ms)", "ttft_ms", "p90" },
	{ "TTFT p99 (ms)", "ttft_ms", "p99" },
	{ "ITL p50 (ms)", "itl_ms", "p50" },
	{ "ITL p90 (ms)", "itl_ms", "p90" },
	{ "ITL p99 (ms)", "itl_ms", "p99" },
	{ "TPOT p50 (ms)", "tpot_ms", "p50" },
	{ "E2E p50 (ms)", "e2e_ms", "p50" },
	{ "E2E p99 (ms)", "e2e_ms", "p99" },
	{ "input tokens mean", "input_tokens", "mean" },
	{ "output tokens mean", "output_tokens", "mean" },
	{ "load generator CPU %", "cpu_percent", NULL },
};

static double row_value(const struct column *c, const struct row *r)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(c->agg, r->key);
	if (r->sub) {
		/* No samples (files of older versions wrote 0s): no value. */
		const cJSON *n = cJSON_GetObjectItemCaseSensitive(v, "n");
		if (cJSON_IsNumber(n) && n->valuedouble == 0)
			return NAN;
		v = cJSON_GetObjectItemCaseSensitive(v, r->sub);
	}
	return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

void bench_cmp_table(const struct bench_cmp *c, struct strbuf *o)
{
	int w = 12;
	for (size_t i = 0; i < c->ncol; i++) {
		int l = (int)strlen(c->col[i].name);
		if (l + 10 > w)
			w = l + 10;
	}
	if (w > 40)
		w = 40;
	sb_addf(o, "%-28s", "");
	for (size_t i = 0; i < c->ncol; i++)
		sb_addf(o, " %*.*s", w, w, c->col[i].name);
	sb_addch(o, '\n');
	for (size_t r = 0; r < ARRAY_SIZE(rows); r++) {
		sb_addf(o, "%-28s", rows[r].title);
		double base = row_value(&c->col[0], &rows[r]);
		for (size_t i = 0; i < c->ncol; i++) {
			double v = row_value(&c->col[i], &rows[r]);
			char cell[96];
			if (isnan(v))
				snprintf(cell, sizeof(cell), "-");
			else if (i == 0 || isnan(base) || base == 0)
				snprintf(cell, sizeof(cell), "%.2f", v);
			else
				snprintf(cell, sizeof(cell), "%.2f (%.2fx)", v, v / base);
			sb_addf(o, " %*s", w, cell);
		}
		sb_addch(o, '\n');
	}
	if (c->ncol > 1)
		sb_adds(o, "(ratios: each value divided by the first column's)\n");
}

/* ---- plot ------------------------------------------------------------------ */

struct panel {
	double x0, y0, w, h;		/* plot area in pixels */
	double xlo, xhi, ylo, yhi;	/* data range */
};

static double px(const struct panel *p, double x)
{
	return p->x0 + (x - p->xlo) / (p->xhi - p->xlo) * p->w;
}

static double py(const struct panel *p, double y)
{
	return p->y0 + p->h - (y - p->ylo) / (p->yhi - p->ylo) * p->h;
}

static void axes(struct strbuf *o, struct panel *p, const char *title, const char *xl,
		 const char *yl)
{
	double t[16];
	int n;
	char buf[32];

	if (!(p->xhi > p->xlo))
		p->xhi = p->xlo + 1;
	if (!(p->yhi > p->ylo))
		p->yhi = p->ylo + 1;
	svg_rect(o, p->x0, p->y0, p->w, p->h, "none", "#444");
	svg_text(o, p->x0 + p->w / 2, p->y0 - 10, 14, "middle", title);
	svg_text(o, p->x0 + p->w / 2, p->y0 + p->h + 36, 12, "middle", xl);
	svg_text(o, p->x0 - 45, p->y0 - 10, 12, "start", yl);
	svg_ticks(p->xlo, p->xhi, t, 16, &n);
	for (int i = 0; i < n; i++) {
		double x = px(p, t[i]);
		svg_line(o, x, p->y0 + p->h, x, p->y0 + p->h + 5, "#444", 1);
		svg_line(o, x, p->y0, x, p->y0 + p->h, "#eee", 1);
		snprintf(buf, sizeof(buf), "%g", t[i]);
		svg_text(o, x, p->y0 + p->h + 18, 11, "middle", buf);
	}
	svg_ticks(p->ylo, p->yhi, t, 16, &n);
	for (int i = 0; i < n; i++) {
		double y = py(p, t[i]);
		svg_line(o, p->x0 - 5, y, p->x0, y, "#444", 1);
		svg_line(o, p->x0, y, p->x0 + p->w, y, "#eee", 1);
		snprintf(buf, sizeof(buf), "%g", t[i]);
		svg_text(o, p->x0 - 8, y + 4, 11, "end", buf);
	}
}

/* A CDF panel of samples per column (x clipped at the largest p99). */
static void cdf_panel(struct strbuf *o, const struct bench_cmp *c, struct panel *p, int itl,
		      const char *title)
{
	double hi = 0;
	for (size_t i = 0; i < c->ncol; i++) {
		const double *v = itl ? c->col[i].itl : c->col[i].ttft;
		size_t n = itl ? c->col[i].nitl : c->col[i].nttft;
		double q = bench_percentile(v, n, 99.5);
		if (q > hi)
			hi = q;
	}
	p->xlo = 0;
	p->xhi = hi > 0 ? hi * 1.05 : 1;
	p->ylo = 0;
	p->yhi = 1;
	axes(o, p, title, "milliseconds", "fraction of samples");
	for (size_t i = 0; i < c->ncol; i++) {
		const double *v = itl ? c->col[i].itl : c->col[i].ttft;
		size_t n = itl ? c->col[i].nitl : c->col[i].nttft;
		if (!n)
			continue;
		/* At most 400 points: one per quantile step. */
		size_t m = n < 400 ? n : 400;
		double *xs = xmalloc((m + 1) * sizeof(double)), *ys = xmalloc((m + 1) * sizeof(double));
		size_t k = 0;
		xs[k] = px(p, v[0] < p->xhi ? v[0] : p->xhi);
		ys[k++] = py(p, 0);
		for (size_t j = 1; j <= m; j++) {
			size_t idx = (size_t)((double)j / (double)m * (double)(n - 1));
			double x = v[idx] < p->xhi ? v[idx] : p->xhi;
			xs[k] = px(p, x);
			ys[k++] = py(p, (double)(idx + 1) / (double)n);
		}
		svg_polyline(o, xs, ys, k, colors[i % ARRAY_SIZE(colors)], 1.8);
		free(xs);
		free(ys);
	}
}

static void tput_panel(struct strbuf *o, const struct bench_cmp *c, struct panel *p)
{
	int open = 0;
	p->xlo = 0, p->xhi = 0, p->ylo = 0, p->yhi = 0;
	for (size_t i = 0; i < c->ncol; i++) {
		double y = num(c->col[i].agg, "output_token_throughput");
		if (!isnan(c->col[i].x) && c->col[i].x > p->xhi)
			p->xhi = c->col[i].x;
		if (!isnan(y) && y > p->yhi)
			p->yhi = y;
		open |= c->col[i].open;
	}
	p->xhi *= 1.1;
	p->yhi *= 1.1;
	axes(o, p, "output throughput vs load", open ? "concurrency / request rate (req/s)"
						    : "concurrency", "tokens/s");
	for (size_t f = 0; f < c->ndocs; f++) {
		double xs[256], ys[256];
		size_t k = 0;
		const char *color = NULL;
		for (size_t i = 0; i < c->ncol && k < 256; i++) {
			if (c->col[i].file != (int)f)
				continue;
			double y = num(c->col[i].agg, "output_token_throughput");
			if (isnan(c->col[i].x) || isnan(y))
				continue;
			if (!color)
				color = colors[i % ARRAY_SIZE(colors)];
			xs[k] = px(p, c->col[i].x);
			ys[k++] = py(p, y);
		}
		for (size_t j = 1; j < k; j++)	/* sweeps come in increasing order */
			svg_line(o, xs[j - 1], ys[j - 1], xs[j], ys[j], color, 1.8);
		for (size_t j = 0; j < k; j++)
			svg_circle(o, xs[j], ys[j], 3.5, color);
	}
}

void bench_cmp_svg(const struct bench_cmp *c, struct strbuf *o)
{
	int W = 1260, H = 420 + 18 * (int)c->ncol;
	svg_begin(o, W, H);
	svg_text(o, W / 2.0, 22, 16, "middle", "dyn bench report");
	struct panel a = { 70, 60, 320, 280, 0, 0, 0, 0 };
	struct panel b = { 480, 60, 320, 280, 0, 0, 0, 0 };
	struct panel t = { 890, 60, 320, 280, 0, 0, 0, 0 };
	cdf_panel(o, c, &a, 0, "TTFT CDF");
	cdf_panel(o, c, &b, 1, "ITL CDF");
	tput_panel(o, c, &t);
	for (size_t i = 0; i < c->ncol; i++) {
		double y = 400 + 18 * (double)i;
		svg_line(o, 70, y - 4, 100, y - 4, colors[i % ARRAY_SIZE(colors)], 3);
		svg_text(o, 108, y, 12, "start", c->col[i].name);
	}
	svg_end(o);
}
