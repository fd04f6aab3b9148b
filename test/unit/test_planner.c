/*
 * test_planner.c - the planner's library (core/planner/): predictors,
 * profiles and replica counts.
 *
 * Every expected value is worked out by hand in the comment above it,
 * from the formulas in predict.h and plan.h, not by running the code.
 */
#include "core/err.h"
#include "core/planner/plan.h"
#include "core/planner/predict.h"
#include "core/planner/prom.h"
#include "core/planner/profile.h"
#include "core/planner/simulate.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NEAR(a, b) (fabs((a) - (b)) < 1e-6)

/* ---- predictors ---------------------------------------------------------- */

TEST(predict_constant)
{
	struct predictor p;
	CHECK(predictor_init(&p, PRED_CONSTANT, 0, 0, 0) == 0);
	CHECK(predictor_next(&p) == 0);
	predictor_observe(&p, 5);
	predictor_observe(&p, 7);
	CHECK(predictor_next(&p) == 7);
	predictor_observe(&p, -3);	/* a negative rate counts as 0 */
	CHECK(predictor_next(&p) == 0);
}

TEST(predict_moving_average)
{
	struct predictor p;
	CHECK(predictor_init(&p, PRED_MOVING_AVERAGE, 3, 0, 0) == 0);
	predictor_observe(&p, 1);
	predictor_observe(&p, 2);
	CHECK(NEAR(predictor_next(&p), 1.5));	/* fewer than the window: (1+2)/2 */
	predictor_observe(&p, 3);
	predictor_observe(&p, 4);
	CHECK(NEAR(predictor_next(&p), 3));	/* (2+3+4)/3 */
	/* the ring wraps: 70 more observations of 10, then 1, 2, 3 */
	for (int i = 0; i < 70; i++)
		predictor_observe(&p, 10);
	predictor_observe(&p, 1);
	predictor_observe(&p, 2);
	predictor_observe(&p, 3);
	CHECK(NEAR(predictor_next(&p), 2));
}

TEST(predict_holt)
{
	struct predictor p;
	CHECK(predictor_init(&p, PRED_HOLT, 0, 0.5, 0.5) == 0);
	/* x=10: level 10, trend 0 -> 10 */
	predictor_observe(&p, 10);
	CHECK(NEAR(predictor_next(&p), 10));
	/* x=20: level .5*20 + .5*(10+0) = 15, trend .5*5 + 0 = 2.5 -> 17.5 */
	predictor_observe(&p, 20);
	CHECK(NEAR(predictor_next(&p), 17.5));
	/* x=30: level 15 + 8.75 = 23.75, trend .5*8.75 + .5*2.5 = 5.625 -> 29.375 */
	predictor_observe(&p, 30);
	CHECK(NEAR(predictor_next(&p), 29.375));
	/* x=0: level .5*29.375 = 14.6875, trend .5*(-9.0625) + 2.8125 = -1.71875
	 * -> 12.96875 */
	predictor_observe(&p, 0);
	CHECK(NEAR(predictor_next(&p), 12.96875));

	/* alpha = beta = 1: 10 then 0 gives level 0, trend -10: clamped to 0 */
	CHECK(predictor_init(&p, PRED_HOLT, 0, 1, 1) == 0);
	predictor_observe(&p, 10);
	predictor_observe(&p, 0);
	CHECK(predictor_next(&p) == 0);
}

/* h intervals ahead: holt after 10, 20, 30 (level 23.75, trend 5.625, as
 * above) says 23.75 + 2 x 5.625 = 35 two ahead and 23.75 + 1.5 x 5.625 =
 * 32.1875 one and a half ahead; constant and moving-average have no trend. */
TEST(predict_ahead)
{
	struct predictor p;
	CHECK(predictor_init(&p, PRED_HOLT, 0, 0.5, 0.5) == 0);
	CHECK(predictor_ahead(&p, 2) == 0);
	predictor_observe(&p, 10);
	predictor_observe(&p, 20);
	predictor_observe(&p, 30);
	CHECK(NEAR(predictor_ahead(&p, 1), 29.375));
	CHECK(NEAR(predictor_ahead(&p, 2), 35));
	CHECK(NEAR(predictor_ahead(&p, 1.5), 32.1875));
	/* a falling trend far ahead: clamped at 0 (level 14.6875, trend -1.71875) */
	predictor_observe(&p, 0);
	CHECK(NEAR(predictor_ahead(&p, 3), 14.6875 - 3 * 1.71875));
	CHECK(predictor_ahead(&p, 10) == 0);

	/* the peak from 0.5 to 1.5 ahead: falling, the near end 14.6875 -
	 * 0.5 x 1.71875 = 13.828125 */
	CHECK(NEAR(predictor_peak(&p, 0.5, 1.5), 13.828125));

	CHECK(predictor_init(&p, PRED_HOLT, 0, 0.5, 0.5) == 0);
	predictor_observe(&p, 10);
	predictor_observe(&p, 20);
	predictor_observe(&p, 30);
	/* rising, the far end: 23.75 + 1.5 x 5.625 */
	CHECK(NEAR(predictor_peak(&p, 0.5, 1.5), 32.1875));

	CHECK(predictor_init(&p, PRED_CONSTANT, 0, 0, 0) == 0);
	predictor_observe(&p, 10);
	predictor_observe(&p, 30);
	CHECK(predictor_ahead(&p, 3) == 30);
	CHECK(predictor_peak(&p, 0.5, 1.5) == 30);
	CHECK(predictor_init(&p, PRED_MOVING_AVERAGE, 2, 0, 0) == 0);
	predictor_observe(&p, 10);
	predictor_observe(&p, 30);
	CHECK(NEAR(predictor_ahead(&p, 3), 20));
}

TEST(predict_bad_parameters)
{
	struct predictor p;
	CHECK(predictor_init(&p, PRED_MOVING_AVERAGE, 0, 0, 0) == -EINVAL);
	CHECK(strstr(err_msg(), "window 0") != NULL);
	CHECK(predictor_init(&p, PRED_MOVING_AVERAGE, PRED_WINDOW_MAX + 1, 0, 0) == -EINVAL);
	CHECK(predictor_init(&p, PRED_HOLT, 0, 0, 0.5) == -EINVAL);
	CHECK(predictor_init(&p, PRED_HOLT, 0, 0.5, 1.5) == -EINVAL);
	CHECK(predictor_kind_parse("holt") == PRED_HOLT);
	CHECK(predictor_kind_parse("moving-average") == PRED_MOVING_AVERAGE);
	CHECK(predictor_kind_parse("constant") == PRED_CONSTANT);
	CHECK(predictor_kind_parse("arima") == -1);
}

/* ---- profiles ------------------------------------------------------------ */

/* prefill: (100 tok, 20 ms, 5000 tok/s), (1000, 100, 10000);
 * decode: (1 seq, 10 ms, 100 tok/s), (10, 20, 500), (50, 60, 800) */
static const char PROFILE[] =
	"{\"version\": 1, \"model\": \"m\", \"engine\": \"mock\","
	" \"prefill\": [{\"isl\": 100, \"ttft_ms\": 20, \"tokens_per_s\": 5000},"
	"               {\"isl\": 1000, \"ttft_ms\": 100, \"tokens_per_s\": 10000}],"
	" \"decode\": [{\"concurrency\": 1, \"itl_ms\": 10, \"tokens_per_s\": 100},"
	"              {\"concurrency\": 10, \"itl_ms\": 20, \"tokens_per_s\": 500},"
	"              {\"concurrency\": 50, \"itl_ms\": 60, \"tokens_per_s\": 800}]}";

static void load(struct profile *p)
{
	int rc = profile_parse(PROFILE, strlen(PROFILE), p);
	CHECK_MSG(rc == 0, "%s", err_msg());
}

TEST(profile_lookups)
{
	struct profile p;
	load(&p);
	CHECK_STR(p.model, "m");
	CHECK_STR(p.engine, "mock");
	CHECK(p.n_prefill == 2 && p.n_decode == 3);
	/* 550 is halfway from 100 to 1000 */
	CHECK(NEAR(profile_ttft_ms(&p, 550), 60));
	CHECK(NEAR(profile_prefill_tps(&p, 550), 7500));
	/* beyond the range: the end segment extended, 1900 -> 100 + 80*900/900 */
	CHECK(NEAR(profile_ttft_ms(&p, 1900), 180));
	/* 30 is halfway from 10 to 50 */
	CHECK(NEAR(profile_itl_ms(&p, 30), 40));
	CHECK(NEAR(profile_decode_tps(&p, 30), 650));
	/* ITL 15 ms: between (1, 10) and (10, 20): 1 + 9*5/10 = 5.5 */
	CHECK(NEAR(profile_max_concurrency(&p, 15), 5.5));
	CHECK(NEAR(profile_max_concurrency(&p, 20), 10));
	CHECK(NEAR(profile_max_concurrency(&p, 1000), 50));	/* not beyond the range */
	CHECK(profile_max_concurrency(&p, 9) == 0);
}

TEST(profile_round_trip)
{
	struct profile p, q;
	load(&p);
	char *s = profile_to_json(&p);
	CHECK(profile_parse(s, strlen(s), &q) == 0);
	free(s);
	CHECK(memcmp(&p, &q, sizeof(p)) == 0);
}

TEST(profile_bad_input)
{
	static const struct {
		const char *json, *msg;
	} cases[] = {
		{ "not json", "not a JSON object" },
		{ "{\"version\": 2}", "\"version\" must be 1" },
		{ "{\"version\": 1, \"prefill\": [], \"decode\": []}", "\"prefill\" must be a non-empty" },
		{ "{\"version\": 1, \"prefill\": [{\"isl\": 1, \"ttft_ms\": 1, \"tokens_per_s\": 1}]}",
		  "\"decode\" must be a non-empty" },
		{ "{\"version\": 1, \"prefill\": [{\"isl\": 1, \"ttft_ms\": -1, \"tokens_per_s\": 1}]}",
		  "prefill[0].ttft_ms must be a positive number" },
		{ "{\"version\": 1, \"prefill\": [{\"isl\": 5, \"ttft_ms\": 1, \"tokens_per_s\": 1},"
		  "{\"isl\": 5, \"ttft_ms\": 2, \"tokens_per_s\": 1}]}",
		  "prefill[1].isl is not above" },
		{ "{\"version\": 1, \"prefill\": [{\"isl\": 1, \"ttft_ms\": 1, \"tokens_per_s\": 1}],"
		  " \"decode\": [{\"concurrency\": 1, \"itl_ms\": 1}]}",
		  "decode[0].tokens_per_s must be" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct profile p;
		CHECK(profile_parse(cases[i].json, strlen(cases[i].json), &p) == -EINVAL);
		CHECK_MSG(strstr(err_msg(), cases[i].msg) != NULL, "case %zu: %s", i, err_msg());
	}
	struct profile p;
	CHECK(profile_load("/nonexistent/profile.json", &p) < 0);
	CHECK(strstr(err_msg(), "/nonexistent/profile.json") != NULL);
}

/* ---- replica counts ------------------------------------------------------ */

TEST(poisson_quantile)
{
	/* Poisson(2): P(X <= k) for k = 0..5 is 0.1353, 0.4060, 0.6767,
	 * 0.8571, 0.9473, 0.9834 (e^-2 2^k / k!, summed by hand) */
	CHECK(plan_poisson_quantile(2, 0.95) == 5);
	CHECK(plan_poisson_quantile(2, 0.9) == 4);
	CHECK(plan_poisson_quantile(2, 0.5) == 2);
	/* e^-0.05 = 0.9512 reaches 0.95 at 0; e^-0.06 = 0.9418 does not */
	CHECK(plan_poisson_quantile(0.05, 0.95) == 0);
	CHECK(plan_poisson_quantile(0.06, 0.95) == 1);
	/* Poisson(10): P(X <= 14) = 0.9165, P(X <= 15) = 0.9513 (tables) */
	CHECK(plan_poisson_quantile(10, 0.95) == 15);
	/* no headroom: the mean itself; no load: none */
	CHECK(plan_poisson_quantile(2.5, 0) == 2.5);
	CHECK(plan_poisson_quantile(0, 0.95) == 0);
	/* past e^-m's underflow: the median of a Poisson of integer mean is
	 * the mean; the 95th percentile of Poisson(1000) by the normal
	 * approximation, 1000 + 1.645 sqrt(1000) = 1052.0, within one */
	CHECK(plan_poisson_quantile(1000, 0.5) == 1000);
	double q = plan_poisson_quantile(1000, 0.95);
	CHECK_MSG(q >= 1051 && q <= 1053, "%g", q);
}

/* One hand-worked plan: the input, the limits, what comes out (need and
 * capacities < 0: not checked). */
struct plan_case {
	const char *what;
	struct plan_input in;
	struct plan_limits lim;
	int prefill, decode;	/* prefill 0: aggregated */
	bool over_budget, infeasible;
	double need_prefill, need_decode;
	double prefill_tps, max_concurrency, decode_tps;
	const char *why;	/* in r.why when infeasible */
};

#define IN(rate_, isl_, osl_, ttft_, itl_, q_, disagg_)                              \
	{ .rate = rate_, .isl = isl_, .osl = osl_, .ttft_ms = ttft_, .itl_ms = itl_,        \
	  .quantile = q_, .disagg = disagg_ }
#define LIM(lo, hi) { lo, hi, 0, 1, 1, 1 }
#define GPUS(g) { 1, 8, .max_gpus = g, .gpus_prefill = 1, .gpus_decode = 2, .gpus_agg = 3 }
#define EX1(disagg) IN(10, 550, 100, 200, 15, 0, disagg)
#define NONE -1, -1, -1, -1, -1

/*
 * Example 1: 10 req/s of ISL 550, OSL 100; TTFT 200 ms, ITL 15 ms; nothing
 * observed (factors 1).
 *   prefill: t1 = ttft(550) = 60, rho_max = 1 - 60/200 = 0.7, a worker
 *            serves 0.7 * 7500 = 5250 tok/s of 10 * 550 = 5500: need
 *            1.0476 -> 2
 *   decode:  c* = 5.5, tps(5.5) = 100 + 400 * 4.5/9 = 300 tok/s of
 *            10 * 100 = 1000: need 3.333 -> 4
 *   aggregated: ceil(1.0476 + 3.333) = 5; idle: each pool at the minimum.
 * Over a budget of 4: prefill's share 1.0476 / 4.381 = 0.239,
 * round(4 * 0.239) = 1 prefill, 3 decode; aggregated 4.
 * TTFT target 50 ms (one request alone takes 60): prefill's need is
 * max_workers = 6, decode's 3.333; share 6/9.333 = 0.643, round(6 * 0.643)
 * = 4 prefill, 2 decode.  ITL 9 ms, below one sequence's 10 ms: aggregated
 * gets the maximum, 6.
 * GPU budget, prefill workers of 1 GPU, decode 2, aggregated 3, within 8
 * workers: 10 GPUs hold 2 + 4x2.  7 do not: needs in GPUs 1.0476 and 6.667,
 * prefill's share 1.0476 / 7.714 = 0.1358, round(7 x 0.1358 / 1) = 1
 * prefill, decode floor((7 - 1) / 2) = 3; aggregated (need 5)
 * floor(7 / 3) = 2.  3 GPUs (the least that holds the minimum, 1 + 1 x 2):
 * round(3 x 0.1358) = 0, raised to the minimum 1; decode (3 - 1) / 2 = 1.
 *
 * Headroom: 10 req/s of ISL 550, OSL 50; TTFT 200, ITL 20; quantile 0.95.
 *   prefill: a worker 5250 tok/s as above, k = 5250 x 0.2 / 550 = 1.909
 *            requests per TTFT target; arrivals in 0.2 s Poisson of mean
 *            m = 2, 95th percentile 5 (P(X <= 4) = 0.9473, P(X <= 5) =
 *            0.9834): need 5 / 1.909 = 2.619 -> 3 (the mean: 2 / 1.909 =
 *            1.0476 -> 2)
 *   decode:  c* = 10 (ITL 20), tps 500 of 10 x 50 = 500: 1 worker at the
 *            mean, L = 10 sequences; 95th percentile of Poisson(10) 15:
 *            need 15 / 10 = 1.5 -> 2 (the mean: 1)
 *   aggregated: ceil(2.619 + 1.5) = 5 (the mean: ceil(1.0476 + 1) = 3).
 */
static const struct plan_case plan_cases[] = {
	{ "example 1", EX1(true), LIM(1, 8), 2, 4, false, false,
	  5500.0 / 5250, 1000.0 / 300, 5250, 5.5, 300, NULL },
	{ "aggregated", EX1(false), LIM(1, 8), 0, 5, false, false, NONE, NULL },
	{ "idle", IN(0, 550, 100, 200, 15, 0, true), LIM(1, 8), 1, 1, false, false,
	  0, 0, -1, -1, -1, NULL },
	{ "over budget", EX1(true), LIM(1, 4), 1, 3, true, false, NONE, NULL },
	{ "over budget, aggregated", EX1(false), LIM(1, 4), 0, 4, true, false, NONE, NULL },
	{ "TTFT below one request's", IN(10, 550, 100, 50, 15, 0, true), LIM(1, 6), 4, 2,
	  false, true, 6, -1, -1, -1, -1, "TTFT target 50.0 ms" },
	{ "ITL below one sequence's", IN(10, 550, 100, 200, 9, 0, false), LIM(1, 6), 0, 6,
	  false, true, NONE, "ITL target 9.0 ms" },
	{ "10 GPUs", EX1(true), GPUS(10), 2, 4, false, false, NONE, NULL },
	{ "7 GPUs", EX1(true), GPUS(7), 1, 3, true, false, NONE, NULL },
	{ "7 GPUs, aggregated", EX1(false), GPUS(7), 0, 2, true, false, NONE, NULL },
	{ "3 GPUs", EX1(true), GPUS(3), 1, 1, true, false, NONE, NULL },
	{ "headroom", IN(10, 550, 50, 200, 20, 0.95, true), LIM(1, 16), 3, 2, false, false,
	  5 / (5250 * 0.2 / 550), 1.5, 5250, 10, 500, NULL },
	{ "headroom, aggregated", IN(10, 550, 50, 200, 20, 0.95, false), LIM(1, 16), 0, 5,
	  false, false, NONE, NULL },
	{ "no headroom", IN(10, 550, 50, 200, 20, 0, true), LIM(1, 16), 2, 1, false, false,
	  5500.0 / 5250, 1, -1, -1, -1, NULL },
	{ "no headroom, aggregated", IN(10, 550, 50, 200, 20, 0, false), LIM(1, 16), 0, 3,
	  false, false, NONE, NULL },
};

#define UNCHECKED_OR_NEAR(want, got) ((want) < 0 || NEAR(want, got))

TEST(plan_hand_worked)
{
	struct profile p;
	load(&p);
	for (size_t i = 0; i < sizeof(plan_cases) / sizeof(plan_cases[0]); i++) {
		const struct plan_case *c = &plan_cases[i];
		struct plan_result r;
		plan_sla(&p, &c->in, &c->lim, &r);
		CHECK_MSG(r.prefill == c->prefill && r.decode == c->decode, "%s: %d + %d",
			  c->what, r.prefill, r.decode);
		CHECK_MSG(r.over_budget == c->over_budget && r.infeasible == c->infeasible,
			  "%s: over budget %d, infeasible %d", c->what, r.over_budget,
			  r.infeasible);
		CHECK_MSG(UNCHECKED_OR_NEAR(c->need_prefill, r.need_prefill) &&
			  UNCHECKED_OR_NEAR(c->need_decode, r.need_decode), "%s: need %g + %g",
			  c->what, r.need_prefill, r.need_decode);
		CHECK_MSG(UNCHECKED_OR_NEAR(c->prefill_tps, r.prefill_tps) &&
			  UNCHECKED_OR_NEAR(c->max_concurrency, r.max_concurrency) &&
			  UNCHECKED_OR_NEAR(c->decode_tps, r.decode_tps), "%s: %g tok/s, c* %g, "
			  "%g tok/s", c->what, r.prefill_tps, r.max_concurrency, r.decode_tps);
		CHECK_MSG(!c->why || strstr(r.why, c->why), "%s: %s", c->what, r.why);
		CHECK_MSG(r.corr_prefill == 1 && r.corr_decode == 1, "%s", c->what);
	}
}

/* Observed: 25 req/s of ISL 100 on 1 prefill worker, TTFT 120 ms; ITL 30 ms
 * at 10 sequences per decode worker.  Predicted 10 req/s, ISL 100, OSL 100;
 * targets TTFT 200, ITL 30.
 * c_p: rho = 25*100/5000 = 0.5, expected 20/(1-0.5) = 40, c_p = 120/40 = 3;
 *      t1 = 3*20 = 60, rho_max = 0.7, a worker 0.7*5000/3 = 1166.67 tok/s of
 *      1000: need 0.857 -> 1.
 * c_d = 30 / itl(10) = 1.5; target 30/1.5 = 20 -> c* = 10, tps 500/1.5 =
 *      333.33 of 1000: need exactly 3 -> 3. */
TEST(plan_corrections)
{
	struct profile p;
	load(&p);
	struct plan_input in = {
		.rate = 10, .isl = 100, .osl = 100,
		.obs_rate = 25, .obs_isl = 100, .obs_ttft_ms = 120,
		.obs_itl_ms = 30, .obs_decode_concurrency = 10,
		.cur_prefill = 1, .cur_decode = 2,
		.ttft_ms = 200, .itl_ms = 30, .disagg = true,
	};
	struct plan_limits lim = { 1, 10, 0, 1, 1, 1 };
	struct plan_result r;
	plan_sla(&p, &in, &lim, &r);
	CHECK(NEAR(r.corr_prefill, 3));
	CHECK(NEAR(r.corr_decode, 1.5));
	CHECK(NEAR(r.prefill_tps, 0.7 * 5000 / 3));
	CHECK(NEAR(r.max_concurrency, 10));
	CHECK(NEAR(r.decode_tps, 500 / 1.5));
	CHECK(r.prefill == 1 && r.decode == 3);

	/* ITL 12 ms at 0.1 sequences per worker: against itl(1) = 10, the
	 * profile's first point (extrapolated, itl(0.1) would be 9: 1.333) */
	in.obs_itl_ms = 12;
	in.obs_decode_concurrency = 0.1;
	plan_sla(&p, &in, &lim, &r);
	CHECK(NEAR(r.corr_decode, 1.2));

	/* TTFT 100x the expected: c_p clamped at PLAN_CORR_MAX */
	in.obs_ttft_ms = 4000;
	plan_sla(&p, &in, &lim, &r);
	CHECK(r.corr_prefill == PLAN_CORR_MAX);

	/* fixed factors 2 and 2 win over the observed ones:
	 * t1 = 40, rho_max = 0.8, a worker 0.8 * 5000 / 2 = 2000 tok/s of 1000:
	 * need 0.5 -> 1; ITL 30 / 2 = 15 -> c* = 5.5, tps(5.5) = 300 / 2 = 150
	 * of 1000: need 6.667 -> 7 */
	in.corr_prefill = 2;
	in.corr_decode = 2;
	plan_sla(&p, &in, &lim, &r);
	CHECK(r.corr_prefill == 2 && r.corr_decode == 2);
	CHECK(NEAR(r.prefill_tps, 2000) && NEAR(r.need_prefill, 0.5));
	CHECK(NEAR(r.max_concurrency, 5.5) && NEAR(r.decode_tps, 150));
	CHECK(r.prefill == 1 && r.decode == 7);
	/* and are clamped too */
	in.corr_prefill = 10;
	plan_sla(&p, &in, &lim, &r);
	CHECK(r.corr_prefill == PLAN_CORR_MAX);
}

/* Scale-down delay of 3 decisions: wanted 5, 2, 1, 1, 6 -> run 5, 5, 5,
 * 2 (the last three wanted 2, 1, 1), 6 (up at once); window 1 is none. */
TEST(plan_hold_delays_scale_down)
{
	struct plan_hold h = { .window = 3 };
	CHECK(plan_hold(&h, 5) == 5);
	CHECK(plan_hold(&h, 2) == 5);
	CHECK(plan_hold(&h, 1) == 5);
	CHECK(plan_hold(&h, 1) == 2);
	CHECK(plan_hold(&h, 6) == 6);
	struct plan_hold none = { .window = 1 };
	CHECK(plan_hold(&none, 5) == 5 && plan_hold(&none, 1) == 1);

	/* disaggregated within 4 workers, window 2: (1, 3) then (3, 1); held
	 * (3, 3) is over the budget, so the plan stands */
	struct plan_hold hp = { .window = 2 }, hd = { .window = 2 };
	struct plan_limits lim = { 1, 4, 0, 1, 1, 1 };
	struct plan_result r = { .prefill = 1, .decode = 3 };
	plan_delay(&hp, &hd, &lim, true, &r);
	CHECK(r.prefill == 1 && r.decode == 3);
	r = (struct plan_result){ .prefill = 3, .decode = 1 };
	plan_delay(&hp, &hd, &lim, true, &r);
	CHECK(r.prefill == 3 && r.decode == 1);
	/* then (1, 1): held (3, 1) fits */
	r = (struct plan_result){ .prefill = 1, .decode = 1 };
	plan_delay(&hp, &hd, &lim, true, &r);
	CHECK(r.prefill == 3 && r.decode == 1);
	/* aggregated: 2 then 1 held at 2 */
	struct plan_hold ha = { .window = 2 };
	r = (struct plan_result){ .decode = 2 };
	plan_delay(NULL, &ha, &lim, false, &r);
	r = (struct plan_result){ .decode = 1 };
	plan_delay(NULL, &ha, &lim, false, &r);
	CHECK(r.decode == 2 && r.prefill == 0);
}

/* Surge rate: (n - 1.645 sqrt(n)) / w: 16 in 2 s: (16 - 6.58) / 2 =
 * 4.71; 2 arrivals: below 0, so 0.
 * The decision in effect planned 1 req/s of ISL 100, OSL 100, TTFT 200,
 * ITL 30, disaggregated: prefill t1 = 20, rho_max = 0.9, 4500 tok/s ->
 * 1; decode: itl(c) = 30 at c* = 20, tps(20) = 575 -> 1.  A surge of
 * 10 req/s: prefill 1000 / 4500 -> 1, decode 1000 / 575 = 1.74 -> 2: grow.
 * 2 req/s: 200 / 575 -> 1, no growth; 0.5 req/s: below the plan's rate.
 * With decode's factor 2 in effect: ITL 15 -> c* = 5.5, tps(5.5) = 300 / 2
 * = 150: 1000 / 150 = 6.67 -> 7. */
TEST(plan_surge_steps)
{
	CHECK(NEAR(plan_surge_rate(16, 2), (16 - 1.645 * 4) / 2));
	CHECK(plan_surge_rate(2, 2) == 0 && plan_surge_rate(0, 2) == 0);
	struct profile p;
	load(&p);
	struct plan_input last = { .rate = 1, .isl = 100, .osl = 100, .ttft_ms = 200,
				   .itl_ms = 30, .disagg = true };
	struct plan_limits lim = { 1, 10, 0, 1, 1, 1 };
	struct plan_result lr, r;
	plan_sla(&p, &last, &lim, &lr);
	CHECK(lr.prefill == 1 && lr.decode == 1);
	CHECK(plan_surge(&p, &last, &lr, 10, &lim, &r) == 1);
	CHECK(r.prefill == 1 && r.decode == 2 && NEAR(r.max_concurrency, 20));
	CHECK(plan_surge(&p, &last, &lr, 2, &lim, &r) == 0);
	CHECK(plan_surge(&p, &last, &lr, 0.5, &lim, &r) == 0);
	/* no pool shrinks: 3 prefill workers stay */
	struct plan_result big = lr;
	big.prefill = 3;
	CHECK(plan_surge(&p, &last, &big, 10, &lim, &r) == 1 && r.prefill == 3 && r.decode == 2);
	/* 3 + 2 is over a budget of 4: no step */
	struct plan_limits four = { 1, 4, 0, 1, 1, 1 };
	CHECK(plan_surge(&p, &last, &big, 10, &four, &r) == 0);
	/* the factors of the decision in effect */
	lr.corr_decode = 2;
	CHECK(plan_surge(&p, &last, &lr, 10, &lim, &r) == 1);
	CHECK(r.corr_decode == 2 && NEAR(r.max_concurrency, 5.5) && r.decode == 7);
}

TEST(plan_load_thresholds)
{
	struct load_thresholds t = { .queue_high = 2, .queue_low = 0, .waiting_high = 1,
				     .kv_high = 0.8, .kv_low = 0.6 };
	struct plan_limits lim = { 1, 3, 0, 1, 1, 1 };
#define LOAD(n, i, w, k) plan_load(n, &(struct load_obs){ i, w, k }, &t, &lim)
	CHECK(LOAD(2, 3, 0, 0.1) == 3);		/* in flight over 2 */
	CHECK(LOAD(2, 0, 0, 0.9) == 3);		/* KV over 0.8 */
	CHECK(LOAD(2, 1, 1.5, 0.1) == 3);	/* waiting over 1 */
	CHECK(LOAD(2, 1, 1, 0.1) == 2);		/* waiting 1: not over */
	CHECK(LOAD(3, 5, 0, 0.9) == 3);		/* at the maximum */
	CHECK(LOAD(2, 0, 0, 0.25) == 1);	/* 0.25*2/1 = 0.5 < 0.6 */
	CHECK(LOAD(2, 0, 0, 0.35) == 2);	/* 0.7 on one: stay */
	CHECK(LOAD(2, 0, 0.5, 0.1) == 2);	/* a request waits: stay */
	CHECK(LOAD(2, 1, 0, 0.1) == 2);		/* in flight over 0: stay */
	CHECK(LOAD(1, 0, 0, 0) == 1);		/* never below one */
	/* a GPU budget of 5 at 2 GPUs a worker holds 2 */
	lim.max_gpus = 5;
	lim.gpus_agg = 2;
	CHECK(LOAD(2, 3, 0, 0) == 2);
	lim.max_gpus = 0;
	lim.min_workers = 2;
	CHECK(LOAD(3, 0, 0, 0) == 2);
	CHECK(LOAD(2, 0, 0, 0) == 2);
#undef LOAD
}

/* ---- simulation --------------------------------------------------------- */

struct decisions {
	struct sim_decision d[4];
	int n;
};

static void on_decision(void *arg, const struct sim_decision *d)
{
	struct decisions *ds = arg;
	if (ds->n < 4)
		ds->d[ds->n] = *d;
	ds->n++;
}

/* n requests of ISL isl, OSL osl from t_ms on, gap_ms apart. */
struct burst {
	int n;
	double t_ms, gap_ms, isl, osl;
};

/* One hand-worked replay of the config TTFT 50 ms, ITL 15 ms,
 * disaggregated, 1..10 workers, 1 s intervals, constant predictor, with
 * what differs (0: as there); what comes out (< 0: not checked). */
struct sim_case {
	const char *what;
	double ttft_ms, itl_ms, corr_prefill, corr_decode, startup_s, quantile;
	struct burst b[2];
	long met_ttft, met_itl, met_both, decisions;
	int prefill[2], decode[2];	/* the first two decisions' counts */
	double obs_rate[2];		/* and the rates they saw */
	double prefill_tps, max_concurrency;	/* the first's */
	double worker_s, duration_s;
};

/*
 * "3 + 1": three requests of ISL 100, OSL 2 at t = 0 on one prefill server:
 *   first tokens at 20, 40, 60 ms (TTFT 20, 40, 60: two within 50).  Each
 *   decodes one more token alone on the one decode worker (the one before
 *   ended 10 ms after its first token, before the next one's): ITL
 *   itl(1) = 10 <= 15.  At t = 1 s the planner sees 3 req/s of ISL 100,
 *   OSL 2: prefill 3 * 100 / (0.6 * 5000) = 0.1 -> 1; decode 6 / 300 -> 1.
 *   A fourth request at 1.5 s: TTFT 20, ITL 10.  The replay ends at 2 s:
 *   2 x 2 worker-seconds.
 * "3 + 1, corrected": the same with correction factors 2 (prefill) and 1.2
 *   (decode): each prefill takes 40 ms, first tokens at 40, 80, 120 (one
 *   TTFT within 50); ITL 1.2 x itl(1) = 12 <= 15, each alone (the one
 *   before ended 12 ms after its first token).  At t = 1 s the planner
 *   plans with those factors: prefill t1 = 40, rho_max = 0.2,
 *   0.2 x 5000 / 2 = 500 tok/s of 300: 0.6 -> 1; decode ITL 15 / 1.2 =
 *   12.5 -> c* = 3.25, tps 200 / 1.2 of 6: -> 1.  The fourth: TTFT 40,
 *   ITL 12.
 * "30 then quiet": 30 requests of ISL 1000, OSL 2 in the first second,
 *   TTFT target 200: prefill t1 = 100, rho_max = 1 - 100/200 = 0.5, a
 *   worker 5000 tok/s of 30000 -> 6; decode 60 / 300 = 0.2 -> 1.  A quiet
 *   second (no arrival) then brings the rate to 0: back to 1 + 1 at
 *   t = 2 s.  Worker-seconds: 2 (first second) + 7 (second) + 2 (third,
 *   holding the last request at 2.5 s).
 * "30 then quiet, headroom": the same with quantile 0.95: prefill
 *   arrivals in 0.2 s Poisson of mean 6, 95th percentile 10 (P(X <= 9) =
 *   0.9161, P(X <= 10) = 0.9574), a worker k = 5000 x 0.2 / 1000 = 1 per
 *   TTFT target: need 10; decode L = 0.2 x c* 5.5 = 1.1 sequences, 95th
 *   percentile 3 (P(X <= 2) = 0.9004, P(X <= 3) = 0.9743): need 3 / 5.5 =
 *   0.545 -> 1.  11 is over the 10 workers: prefill's share
 *   10 / 10.545 = 0.948, round(9.48) = 9, decode 1.  Worker-seconds
 *   2 + 10 + 2.
 * "start-up": six requests of ISL 1000 (100 ms of prefill), 150 ms apart,
 *   in the first second: TTFT 100 each.  TTFT target 150: rho_max = 1/3, a
 *   worker 3333 tok/s of 6000 -> 2 prefill workers at t = 1 s.  Two
 *   requests at 1.2 s: with no start-up time the new server takes the
 *   second, TTFT 100; started 0.5 s late (up at 1.5 s), it waits for the
 *   first server's 1.3 s: TTFT 200, a miss.
 * "ITL over the decode", one decode worker: A (ISL 100, OSL 11) arrives at
 *   0: first token at 20, alone: ends 20 + 10 x 10 = 120.  B (the same) at
 *   50: first at 70, joins A: itl(2) = 10 + 10/9, ends 70 + 10 x 11.111 =
 *   181.111.  Over its decode A averages 1.5 sequences (alone 20..70, with
 *   B 70..120): itl(1.5) = 10.556; B 1 + 50 / 111.111 = 1.45: itl 10.5.
 *   Against a target of 10.52 A misses, B meets (at join time it would be
 *   the other way round: 10 and 11.111); 10.54: still B only; 10.56: both;
 *   10.49: neither.
 */
#define THREE_ONE { { 3, 0, 0, 100, 2 }, { 1, 1500, 0, 100, 2 } }
#define THIRTY { { 30, 0, 1000.0 / 30, 1000, 2 }, { 1, 2500, 0, 1000, 2 } }
#define SIX_TWO { { 6, 0, 150, 1000, 2 }, { 2, 1200, 0, 1000, 2 } }
#define A_B { { 2, 0, 50, 100, 11 } }
#define NO2 { -1, -1 }
static const struct sim_case sim_cases[] = {
	{ "3 + 1", 0, 0, 0, 0, 0, 0, THREE_ONE, 3, 4, 3, 1, { 1, -1 }, { 1, -1 }, { 3, -1 },
	  -1, -1, 4, 2 },
	{ "3 + 1, corrected", 0, 0, 2, 1.2, 0, 0, THREE_ONE, 2, 4, 2, 1, { 1, -1 }, { 1, -1 },
	  NO2, 500, 3.25, -1, -1 },
	{ "30 then quiet", 200, 0, 0, 0, 0, 0, THIRTY, -1, -1, -1, 2, { 6, 1 }, { 1, 1 },
	  { 30, 0 }, -1, -1, 11, 3 },
	{ "30 then quiet, headroom", 200, 0, 0, 0, 0, 0.95, THIRTY, -1, -1, -1, 2, { 9, 1 },
	  { 1, 1 }, { 30, 0 }, -1, -1, 14, 3 },
	{ "start-up none", 150, 0, 0, 0, 0, 0, SIX_TWO, 8, -1, -1, 1, { 2, -1 }, NO2, NO2,
	  -1, -1, -1, -1 },
	{ "start-up 0.5 s", 150, 0, 0, 0, 0.5, 0, SIX_TWO, 7, -1, -1, 1, { 2, -1 }, NO2, NO2,
	  -1, -1, -1, -1 },
	{ "ITL 10.52", 0, 10.52, 0, 0, 0, 0, A_B, 2, 1, 1, -1, NO2, NO2, NO2, -1, -1, -1, -1 },
	{ "ITL 10.54", 0, 10.54, 0, 0, 0, 0, A_B, 2, 1, 1, -1, NO2, NO2, NO2, -1, -1, -1, -1 },
	{ "ITL 10.56", 0, 10.56, 0, 0, 0, 0, A_B, 2, 2, 2, -1, NO2, NO2, NO2, -1, -1, -1, -1 },
	{ "ITL 10.49", 0, 10.49, 0, 0, 0, 0, A_B, 2, 0, 0, -1, NO2, NO2, NO2, -1, -1, -1, -1 },
};

#define UNCHECKED_OR(want, got) ((want) < 0 || (want) == (got))

TEST(sim_hand_worked)
{
	struct profile p;
	load(&p);
	for (size_t i = 0; i < sizeof(sim_cases) / sizeof(sim_cases[0]); i++) {
		const struct sim_case *k = &sim_cases[i];
		struct decisions ds = { 0 };
		struct sim_cfg c = {
			.p = &p, .ttft_ms = k->ttft_ms ? k->ttft_ms : 50,
			.itl_ms = k->itl_ms ? k->itl_ms : 15, .quantile = k->quantile,
			.disagg = true, .lim = { 1, 10, 0, 1, 1, 1 }, .interval_s = 1,
			.kind = PRED_CONSTANT, .startup_s = k->startup_s,
			.corr_prefill = k->corr_prefill, .corr_decode = k->corr_decode,
			.decision = on_decision, .arg = &ds,
		};
		struct sim_req q[40];
		long n = 0;
		for (int j = 0; j < 2; j++)
			for (int m = 0; m < k->b[j].n; m++)
				q[n++] = (struct sim_req){ k->b[j].t_ms + m * k->b[j].gap_ms,
							   k->b[j].isl, k->b[j].osl };
		struct sim_result r;
		CHECK_MSG(sim_run(&c, q, n, &r) == 0 && r.n == n, "%s", k->what);
		CHECK_MSG(UNCHECKED_OR(k->met_ttft, r.met_ttft) &&
			  UNCHECKED_OR(k->met_itl, r.met_itl) &&
			  UNCHECKED_OR(k->met_both, r.met_both), "%s: met %ld %ld %ld", k->what,
			  r.met_ttft, r.met_itl, r.met_both);
		CHECK_MSG(UNCHECKED_OR(k->decisions, r.decisions) && ds.n == r.decisions,
			  "%s: %ld decisions", k->what, r.decisions);
		for (int j = 0; j < 2 && j < ds.n; j++) {
			const struct sim_decision *d = &ds.d[j];
			CHECK_MSG(NEAR(d->t_s, j + 1) && UNCHECKED_OR(k->prefill[j], d->r.prefill) &&
				  UNCHECKED_OR(k->decode[j], d->r.decode) &&
				  UNCHECKED_OR_NEAR(k->obs_rate[j], d->obs_rate), "%s: decision %d: "
				  "%d + %d at %g req/s", k->what, j, d->r.prefill, d->r.decode,
				  d->obs_rate);
			CHECK_MSG(NEAR(d->r.corr_prefill, k->corr_prefill ? k->corr_prefill : 1) &&
				  NEAR(d->r.corr_decode, k->corr_decode ? k->corr_decode : 1),
				  "%s", k->what);
		}
		CHECK_MSG(ds.n == 0 || (UNCHECKED_OR_NEAR(k->prefill_tps, ds.d[0].r.prefill_tps) &&
			  UNCHECKED_OR_NEAR(k->max_concurrency, ds.d[0].r.max_concurrency)),
			  "%s: %g tok/s, c* %g", k->what, ds.d[0].r.prefill_tps,
			  ds.d[0].r.max_concurrency);
		CHECK_MSG(UNCHECKED_OR_NEAR(k->worker_s, r.worker_s) &&
			  UNCHECKED_OR_NEAR(k->duration_s, r.duration_s), "%s: %g worker-s over %g s",
			  k->what, r.worker_s, r.duration_s);
	}
}

/* Surge steps, 5 s intervals, a 2 s window, TTFT 200, ITL 30, ISL and OSL
 * 100 (the plans
 * of plan_surge_steps): one request at 0 (the decision at 5 s: 1 + 1),
 * then 40 from 5.5 s, 50 ms apart.  At 6 s the window [4, 6) holds 10:
 * (10 - 1.645 sqrt(10)) / 2 = 2.40 req/s, one decode worker still serves
 * it; at 7 s [5, 7) holds 30: 10.49 req/s, decode 2 at once.  No arrival
 * after 7.45 s: the replay ends at 10 s.  Worker-seconds 2 x 5 + 2 x 2 +
 * 3 x 3 = 23; without surge steps 20, and only the decision at 5 s. */
TEST(sim_surge)
{
	struct profile p;
	load(&p);
	struct sim_req q[41] = { { 0, 100, 100 } };
	for (int m = 0; m < 40; m++)
		q[m + 1] = (struct sim_req){ 5500 + m * 50.0, 100, 100 };
	for (int surge = 0; surge <= 2; surge += 2) {
		struct decisions ds = { 0 };
		struct sim_cfg c = { .p = &p, .ttft_ms = 200, .itl_ms = 30, .disagg = true,
				     .lim = { 1, 10, 0, 1, 1, 1 }, .interval_s = 5,
				     .kind = PRED_CONSTANT, .surge_s = surge,
				     .decision = on_decision, .arg = &ds };
		struct sim_result r;
		CHECK(sim_run(&c, q, 41, &r) == 0 && r.n == 41);
		CHECK_MSG(ds.n == (surge ? 2 : 1) && r.decisions == ds.n, "surge %d: %d", surge,
			  ds.n);
		CHECK(NEAR(ds.d[0].t_s, 5) && !ds.d[0].surge && ds.d[0].r.decode == 1);
		CHECK_MSG(NEAR(r.worker_s, surge ? 23 : 20), "surge %d: %g worker-s", surge,
			  r.worker_s);
		if (!surge)
			continue;
		const struct sim_decision *d = &ds.d[1];
		CHECK(NEAR(d->t_s, 7) && d->surge && NEAR(d->obs_rate, 15));
		CHECK(NEAR(d->in.rate, (30 - 1.645 * sqrt(30)) / 2));
		CHECK(d->r.prefill == 1 && d->r.decode == 2);
	}
}

TEST(sim_unordered)
{
	struct profile p;
	load(&p);
	struct sim_cfg c = { .p = &p, .ttft_ms = 50, .itl_ms = 15, .lim = { 1, 10, 0, 1, 1, 1 },
			     .interval_s = 1 };
	struct sim_req bad[] = { { 10, 1, 1 }, { 5, 1, 1 } };
	struct sim_result r;
	CHECK(sim_run(&c, bad, 2, &r) == -EINVAL);
}

/* ---- Prometheus text ------------------------------------------------------ */

/* Sums by exact name and label; hand-added: decode 2 + 3 = 5, all roles
 * 1 + 2 + 3 = 6; x_sum is not x; comments and bad values are skipped. */
TEST(prom_sum_samples)
{
	const char *t = "# HELP w workers\n# TYPE w gauge\n"
			"w{model=\"m\",role=\"agg\"} 1\n"
			"w{model=\"m\",role=\"decode\"} 2\n"
			"w{model=\"n\",role=\"decode\"} 3\n"
			"w_sum 100\nx 7.5\nx_sum 9\nbad{role=\"decode\"} zz\nbare 4";
	int n;
	CHECK(NEAR(prom_sum(t, "w", "role", "decode", &n), 5) && n == 2);
	CHECK(NEAR(prom_sum(t, "w", NULL, NULL, &n), 6) && n == 3);
	CHECK(NEAR(prom_sum(t, "x", NULL, NULL, &n), 7.5) && n == 1);
	CHECK(NEAR(prom_sum(t, "x_sum", NULL, NULL, &n), 9) && n == 1);
	CHECK(prom_sum(t, "x", "role", "decode", &n) == 0 && n == 0);
	CHECK(prom_sum(t, "bad", "role", "decode", &n) == 0 && n == 0);
	CHECK(NEAR(prom_sum(t, "bare", NULL, NULL, &n), 4) && n == 1);
	CHECK(prom_sum("", "w", NULL, NULL, &n) == 0 && n == 0);
}

int main(void)
{
	return RUN_TESTS();
}
