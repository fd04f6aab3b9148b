/*
 * metrics.c - Prometheus text exposition (see metrics.h).
 */
#include "core/metrics.h"
#include "core/strbuf.h"

#include <math.h>
#include <string.h>

const double metrics_latency_buckets[] = {
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
};
const size_t metrics_latency_nbuckets =
	sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n)
{
	memset(h, 0, sizeof(*h));
	h->bounds = bounds;
	h->nbounds = n < METRICS_MAX_BUCKETS ? n : METRICS_MAX_BUCKETS - 1;
}

void metrics_hist_observe(struct metrics_hist *h, double v)
{
	size_t i = 0;
	while (i < h->nbounds && v > h->bounds[i])
		i++;
	h->counts[i]++;		/* i == nbounds: the +Inf bucket */
	h->count++;
	h->sum += v;
}

void metrics_family(struct strbuf *out, const char *name, const char *type,
		    const char *help)
{
	sb_addf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_label(struct strbuf *labels, const char *name, const char *value)
{
	if (labels->len)
		sb_addch(labels, ',');
	sb_addf(labels, "%s=\"", name);
	for (const char *p = value; *p; p++) {
		if (*p == '\\')
			sb_adds(labels, "\\\\");
		else if (*p == '"')
			sb_adds(labels, "\\\"");
		else if (*p == '\n')
			sb_adds(labels, "\\n");
		else
			sb_addch(labels, *p);
	}
	sb_addch(labels, '"');
}

static void add_number(struct strbuf *out, double v)
{
	if (isinf(v))
		sb_adds(out, v > 0 ? "+Inf" : "-Inf");
	else if (isnan(v))
		sb_adds(out, "NaN");
	else if (v == (double)(int64_t)v && fabs(v) < 1e15)
		sb_addf(out, "%lld", (long long)v);
	else
		sb_addf(out, "%.9g", v);
}

void metrics_value(struct strbuf *out, const char *name, const char *labels, double v)
{
	sb_adds(out, name);
	if (labels && *labels)
		sb_addf(out, "{%s}", labels);
	sb_addch(out, ' ');
	add_number(out, v);
	sb_addch(out, '\n');
}

void metrics_hist_write(struct strbuf *out, const char *name, const char *labels,
			const struct metrics_hist *h)
{
	const char *sep = labels && *labels ? "," : "";
	uint64_t cum = 0;
	for (size_t i = 0; i <= h->nbounds; i++) {
		cum += h->counts[i];
		sb_addf(out, "%s_bucket{%s%sle=\"", name, labels ? labels : "", sep);
		if (i < h->nbounds)
			add_number(out, h->bounds[i]);
		else
			sb_adds(out, "+Inf");
		sb_addf(out, "\"} %llu\n", (unsigned long long)cum);
	}
	sb_addf(out, "%s_sum", name);
	if (labels && *labels)
		sb_addf(out, "{%s}", labels);
	sb_addch(out, ' ');
	add_number(out, h->sum);
	sb_addf(out, "\n%s_count", name);
	if (labels && *labels)
		sb_addf(out, "{%s}", labels);
	sb_addf(out, " %llu\n", (unsigned long long)h->count);
}
