/*
 * planner.c - "dyn planner": size the prefill and decode pools from a
 * worker profile, latency targets and a budget (man dyn-planner(1); the
 * logic is in core/planner/).  This version replays a trace
 * (--simulate); the live planner and its connectors are to come.
 */
#include "cmd/cmd.h"
#include "core/bench/words.h"
#include "core/bench/workload.h"
#include "core/err.h"
#include "core/planner/simulate.h"
#include "core/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "planner"

static const char *const predictors[] = { "constant", "moving-average", "holt", NULL };

/* The trace's arrivals and lengths, through dyn bench's trace reader. */
static int read_trace(const char *path, long block_len, struct sim_req **out, long *n_out)
{
	struct bench_words words;
	bench_words_builtin(&words);
	struct bench_workload_cfg wc = {
		.trace = path, .turns = 1, .block_len = block_len, .scale = 1, .words = &words,
		.fixed_schedule = 1,
	};
	struct bench_workload *wl;
	int rc = bench_workload_new(&wc, &wl);
	if (rc < 0) {
		bench_words_free(&words);
		return rc;
	}
	long n = bench_workload_count(wl);
	struct sim_req *q = xcalloc((size_t)(n ? n : 1), sizeof(*q));
	struct bench_item it;
	bench_item_init(&it);
	for (long i = 0; i < n && rc >= 0; i++) {
		rc = bench_workload_item(wl, i, 0, &it);
		q[i] = (struct sim_req){ it.ts_ms, (double)it.isl, it.osl > 0 ? (double)it.osl : 1 };
	}
	bench_item_release(&it);
	bench_workload_free(wl);
	bench_words_free(&words);
	if (rc < 0) {
		free(q);
		return rc;
	}
	*out = q;
	*n_out = n;
	return 0;
}

static void print_decision(void *arg, const struct sim_decision *d)
{
	(void)arg;
	const struct plan_result *r = &d->r;
	printf("{\"t_s\":%.3f,\"observed\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g},"
	       "\"predicted\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g},"
	       "\"correction\":{\"prefill\":%.4g,\"decode\":%.4g},"
	       "\"capacity\":{\"prefill_tokens_per_s\":%.4g,\"decode_tokens_per_s\":%.4g,"
	       "\"max_concurrency\":%.4g},"
	       "\"need\":{\"prefill\":%.4g,\"decode\":%.4g},",
	       d->t_s, d->obs_rate, d->obs_isl, d->obs_osl, d->in.rate, d->in.isl, d->in.osl,
	       r->corr_prefill, r->corr_decode, r->prefill_tps, r->decode_tps, r->max_concurrency,
	       r->need_prefill, r->need_decode);
	if (d->in.disagg)
		printf("\"prefill\":%d,\"decode\":%d", r->prefill, r->decode);
	else
		printf("\"workers\":%d", r->decode);
	printf(",\"over_budget\":%s,\"infeasible\":%s", r->over_budget ? "true" : "false",
	       r->infeasible ? "true" : "false");
	if (r->infeasible)
		printf(",\"why\":\"%s\"", r->why);	/* plan.c's own text: no quotes */
	printf("}\n");
}

int cmd_planner(int argc, char **argv)
{
	const char *trace = NULL, *profile_path = NULL, *predictor = "constant";
	double ttft = 500, itl = 50, interval = 60, alpha = 0.5, beta = 0.5;
	long min_w = 1, max_w = 8, window = 5, block_len = 512;
	int disagg = 0;
	const struct opt opts[] = {
		{ "simulate", OPT_STRING, &trace, "TRACE", "replay this trace (Mooncake JSONL, as "
		  "dyn bench --trace reads) against --profile", 0, 0, NULL },
		{ "profile", OPT_STRING, &profile_path, "PATH", "the worker profile (dyn profile)",
		  0, 0, NULL },
		{ "ttft", OPT_DOUBLE, &ttft, "MS", "time-to-first-token target", 0.001, 1e9, NULL },
		{ "itl", OPT_DOUBLE, &itl, "MS", "inter-token latency target", 0.001, 1e9, NULL },
		{ "adjustment-interval", OPT_DOUBLE, &interval, "SECONDS",
		  "how often the pools are sized", 0.001, 86400, NULL },
		{ "min-workers", OPT_INT, &min_w, "N", "workers per pool, at least", 1, 100000, NULL },
		{ "max-workers", OPT_INT, &max_w, "N", "workers of all pools together, at most",
		  1, 100000, NULL },
		{ "disagg", OPT_BOOL, &disagg, NULL, "plan separate prefill and decode pools "
		  "(default: one pool of aggregated workers)", 0, 0, NULL },
		{ "load-predictor", OPT_ENUM, &predictor, "KIND", "how the next interval's load is "
		  "predicted", 0, 0, predictors },
		{ "window", OPT_INT, &window, "N", "moving-average: intervals averaged",
		  1, PRED_WINDOW_MAX, NULL },
		{ "holt-alpha", OPT_DOUBLE, &alpha, "A", "holt: level smoothing, in (0, 1]",
		  1e-6, 1, NULL },
		{ "holt-beta", OPT_DOUBLE, &beta, "B", "holt: trend smoothing, in (0, 1]",
		  1e-6, 1, NULL },
		{ "block-len", OPT_INT, &block_len, "TOKENS", "trace: tokens per hash id",
		  1, 100000000, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		NAME, "--simulate TRACE --profile PATH [OPTIONS]",
		"Size the prefill and decode pools for latency targets within a budget.",
		"Every --adjustment-interval the planner predicts the next interval's\n"
		"request rate, input and output lengths (--load-predictor), and from the\n"
		"worker profile (dyn profile) computes the workers that meet --ttft and\n"
		"--itl, within --min-workers and --max-workers.\n\n"
		"--simulate replays a trace against the profile (a discrete-event model,\n"
		"dyn-planner(1)): each decision is printed as one JSON line with its\n"
		"inputs, then a summary line with the predicted SLA attainment and the\n"
		"worker-seconds used.  The live planner (connectors) is not built yet:\n"
		"--simulate is required.",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (!trace)
		return cmd_usage_error(NAME, "--simulate TRACE is required (the live planner is "
				       "not built yet)");
	if (!profile_path)
		return cmd_usage_error(NAME, "--profile is required");
	if (disagg && max_w < 2 * min_w)
		return cmd_usage_error(NAME, "--max-workers %ld cannot hold two pools of "
				       "--min-workers %ld", max_w, min_w);
	if (max_w < min_w)
		return cmd_usage_error(NAME, "--max-workers %ld is below --min-workers %ld", max_w,
				       min_w);
	static struct profile p;
	if (profile_load(profile_path, &p) < 0)
		return cmd_fail(NAME, "%s", err_msg());
	struct sim_req *q;
	long n;
	if (read_trace(trace, block_len, &q, &n) < 0)
		return cmd_fail(NAME, "%s", err_msg());
	struct sim_cfg sc = {
		.p = &p, .ttft_ms = ttft, .itl_ms = itl, .disagg = disagg,
		.lim = { (int)min_w, (int)max_w }, .interval_s = interval,
		.kind = predictor_kind_parse(predictor), .window = (int)window,
		.alpha = alpha, .beta = beta, .decision = print_decision,
	};
	struct sim_result r;
	rc = sim_run(&sc, q, n, &r);
	free(q);
	if (rc < 0)
		return cmd_fail(NAME, "%s", err_msg());
	printf("{\"summary\":{\"requests\":%ld,\"sla_attainment\":%.4f,\"ttft_attainment\":%.4f,"
	       "\"itl_attainment\":%.4f,\"worker_seconds\":%.6g,\"duration_s\":%.6g,"
	       "\"decisions\":%ld}}\n",
	       r.n, r.n ? (double)r.met_both / r.n : 1, r.n ? (double)r.met_ttft / r.n : 1,
	       r.n ? (double)r.met_itl / r.n : 1, r.worker_s, r.duration_s, r.decisions);
	return fflush(stdout) ? 1 : 0;
}
