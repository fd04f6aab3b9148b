/*
 * metrics.h - aggregate figures of a benchmark run, its human table and
 * its JSON document.
 *
 * Aggregates over the measured (non-warm-up) requests: request and
 * output-token throughput over the run's wall time (first request sent to
 * last byte received), goodput (requests/s that succeeded and met every
 * SLO), errors by kind, and count/mean/std/min/max/p50/p90/p95/p99 of
 * TTFT, ITL (all gaps of all successful requests), TPOT, end-to-end
 * latency and input/output tokens.  Failed requests count as errors and
 * are left out of the latency and token figures.  Input tokens are the
 * server's usage.prompt_tokens when it reports them (they include the chat
 * template and BOS), else the prompt's count as built; requests where both
 * are known and differ are counted (the cross-check).
 *
 * SLO spec (--goodput): comma-separated KEY=VALUE with KEY ttft, itl (the
 * request's mean inter-token latency, i.e. TPOT), tpot (same) or e2e and
 * VALUE a duration with unit ms or s ("ttft=200ms,itl=25ms").
 *
 * Ownership: bench_agg_compute allocates nothing; the agg's kind_msg
 * pointers borrow the result's records (valid while the result lives).
 * Pure functions otherwise; thread-safe.
 */
#ifndef DYN_BENCH_METRICS_H
#define DYN_BENCH_METRICS_H

#include "core/bench/run.h"
#include "core/bench/stats.h"

struct strbuf;
struct tok;

struct bench_slo {
	double ttft_ms, tpot_ms, e2e_ms;	/* 0: no target */
	int set;
};

#define BENCH_MAX_KINDS 16

struct bench_agg {
	long requests, ok, errors;
	double wall_s;
	double req_tput, out_tput, total_tput;	/* per second */
	double goodput;				/* good requests/s (-1: no SLO) */
	long good;
	struct bench_stat ttft, itl, tpot, e2e, isl, osl;
	char kind[BENCH_MAX_KINDS][24];
	long kind_n[BENCH_MAX_KINDS];
	const char *kind_msg[BENCH_MAX_KINDS];	/* first error message of each kind */
	int nkinds;
	double cpu_pct;
	long usage_in_mismatch;		/* server prompt_tokens != our count */
	long usage_in_checked;		/* requests with both counts */
	long tok_out_mismatch;		/* our tokenizer's count != server's */
	long tok_out_checked;
	long total_in, total_out;
};

int bench_slo_parse(const char *spec, struct bench_slo *slo);
/* Count each record's received text with tok (sets rec->tok_out). */
void bench_count_output(struct bench_run_result *res, const struct tok *tok);
void bench_agg_compute(const struct bench_run_result *res, const struct bench_slo *slo,
		       struct bench_agg *agg);

/* The load generator used more than BENCH_CPU_WARN_PCT of a core over a
 * run long enough to judge (BENCH_CPU_MIN_WALL_S): it may have been the
 * bottleneck.  Shorter runs divide start-up CPU by almost no time. */
#define BENCH_CPU_WARN_PCT 90.0
#define BENCH_CPU_MIN_WALL_S 1.0
int bench_agg_cpu_saturated(const struct bench_agg *a);

/* The end-of-run table (title is the first line), then the first error
 * message of each kind. */
void bench_agg_table(const struct bench_agg *agg, const char *title, struct strbuf *out);

/* JSON: an aggregate object, and one run object
 * {"label","config":{...},"partial","cancelled","aggregate":{...},
 * "records":[...]} (partial: interrupted, cancelled requests left out).  config is
 * a JSON object text (may be NULL).  A statistic without samples is
 * {"n":0} with every figure null (there is no latency of zero requests). */
void bench_agg_json(const struct bench_agg *agg, struct strbuf *out);
void bench_run_json(const char *label, const char *config, const struct bench_agg *agg,
		    const struct bench_run_result *res, struct strbuf *out);

#endif
