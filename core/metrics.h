/*
 * metrics.h - Prometheus text exposition helpers: counters, gauges and
 * histograms written in the text format 0.0.4 (what /metrics serves).
 *
 * The caller keeps the numbers (plain fields in its own structs) and
 * writes them out with these functions when /metrics is asked for; a
 * family's HELP and TYPE lines come first (metrics_family), then one
 * metrics_value / metrics_hist_write per label set.  Labels are given as
 * a ready string built with metrics_label() (escaped), e.g.
 * model="m",status="200".
 *
 * Thread-safety: none; a histogram belongs to one thread.
 */
#ifndef DYN_METRICS_H
#define DYN_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define METRICS_MAX_BUCKETS 24

struct metrics_hist {
	const double *bounds;		/* upper bounds, increasing (no +Inf) */
	size_t nbounds;
	uint64_t counts[METRICS_MAX_BUCKETS];	/* per bucket, not cumulative */
	uint64_t count;
	double sum;
};

/* Latency buckets in seconds, from 1 ms to 60 s. */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_nbuckets;

void metrics_hist_init(struct metrics_hist *h, const double *bounds, size_t n);
void metrics_hist_observe(struct metrics_hist *h, double v);

/* "# HELP name help\n# TYPE name type\n" */
void metrics_family(struct strbuf *out, const char *name, const char *type,
		    const char *help);
/* Append one label pair name="value" (escaped), comma-separated from any
 * earlier pair in labels. */
void metrics_label(struct strbuf *labels, const char *name, const char *value);
/* name{labels} value */
void metrics_value(struct strbuf *out, const char *name, const char *labels, double v);
/* name_bucket{labels,le=".."} ... name_sum, name_count */
void metrics_hist_write(struct strbuf *out, const char *name, const char *labels,
			const struct metrics_hist *h);

#endif
