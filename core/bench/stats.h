/*
 * stats.h - summary statistics for benchmark samples: mean, min, max,
 * standard deviation and percentiles.
 *
 * Percentiles interpolate linearly between the closest ranks (numpy's
 * default "linear" method, which vLLM's benchmark and AIPerf use too), so
 * figures compare with theirs.  Pure functions; thread-safe.
 */
#ifndef DYN_BENCH_STATS_H
#define DYN_BENCH_STATS_H

#include <stddef.h>

struct bench_stat {
	size_t n;
	double mean, min, max, std;
	double p50, p90, p95, p99;
};

/* Sort v[0..n) in place and fill *s (all zero when n == 0). */
void bench_stat_compute(double *v, size_t n, struct bench_stat *s);
/* The q-th percentile (0..100) of sorted v[0..n); 0 when n == 0. */
double bench_percentile(const double *sorted, size_t n, double q);

#endif
