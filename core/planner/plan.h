/*
 * plan.h - how many workers the next interval needs: from a profile
 * (profile.h), the predicted load and the latency targets (SLA mode), or
 * from the workers' live load reports alone (load mode).  Pure functions;
 * thread-safe.
 *
 * SLA mode, per pool (all rates per second, times in ms):
 *
 *   prefill  c_p = observed TTFT / expected TTFT, where expected is the
 *            profile's TTFT at the observed ISL inflated for the observed
 *            utilisation rho = demand / (workers x profile throughput),
 *            capped at 0.95: ttft / (1 - rho) (a queue of one server);
 *            c_p is clamped to [1/PLAN_CORR_MAX, PLAN_CORR_MAX], 1 when
 *            nothing was observed.  One request alone then takes
 *            t1 = c_p ttft(isl); a worker may run at most
 *            rho_max = 1 - t1 / TTFT target busy (so its queue keeps TTFT
 *            under the target) and serves rho_max tps(isl) / c_p tokens/s.
 *            prefill workers = ceil(rate x isl / that).
 *   decode   c_d = observed ITL / the profile's ITL at the observed
 *            concurrency per decode worker, or at the profile's first
 *            point when below it (a sequence is never faster than alone);
 *            clamped likewise; 1 if none.
 *            The ITL target becomes ITL target / c_d; c* = the largest
 *            concurrency whose profiled ITL meets it; a worker serves
 *            tps(c*) / c_d tokens/s.  decode workers = ceil(rate x osl / that).
 *   headroom with quantile q in (0, 1) (0: none, the pools sized for the
 *            mean load as above) each pool is sized for the q-quantile of
 *            its load, not its mean, since arrivals are Poisson and a burst
 *            lands on workers sized for the mean (plan_poisson_quantile()):
 *            prefill: a worker meets the TTFT target while the requests
 *            arriving within one TTFT target T fit its k = prefill_tps x
 *            T / isl slots (at rho_max it serves k in T); the arrivals in T
 *            are Poisson of mean m = rate x T, so prefill workers =
 *            ceil(Q_q(m) / k) (with no headroom m / k, the count above);
 *            decode: the sequences decoding at once are Poisson (M/G/inf)
 *            of mean L = c* x (the decode workers above, unrounded:
 *            Little's law at c* per worker), so decode workers =
 *            ceil(Q_q(L) / c*).
 *   fixed    corr_prefill / corr_decode > 0 in the input replace the
 *            observed factors (clamped likewise): the simulation's model
 *            of what a live planner measures.
 *   aggregated (one pool serving both): ceil(prefill share + decode
 *            share), the shares being the unrounded counts above.
 *
 * A target that even one request alone cannot meet (t1 >= TTFT target, or
 * c* = 0) is infeasible: the plan says so (why) and that pool's need is
 * max_workers, so the budget gives it the most it can.
 * Budget: each pool gets at least min_workers; the pools together at most
 * max_workers; over the budget they are cut in proportion to their need.
 * With a GPU budget (max_gpus > 0; a prefill, decode or aggregated worker
 * takes gpus_prefill, gpus_decode or gpus_agg GPUs) the workers' GPUs
 * together are at most max_gpus too: aggregated, floor(max_gpus /
 * gpus_agg) workers; disaggregated, over it the GPUs are shared in
 * proportion to each pool's need in GPUs (need x its GPUs per worker),
 * prefill rounded to the nearest, at least min_workers each, and decode
 * takes the whole workers that the rest holds.
 *
 * Surge (between decisions): n requests arrived over the last w seconds;
 * the rate they show at least, r = (n - PLAN_SURGE_Z sqrt(n)) / w (a
 * one-sided 95% bound of a Poisson count: a quiet pool's noise does not
 * trip it), is planned for as above with the factors of the decision in
 * effect; a pool that needs more workers than it runs grows at once,
 * none shrinks.  The trend predictor sees a ramp one interval late; this
 * sees it within w seconds.
 *
 * Load mode (no profile): with n workers, i requests in flight per worker
 * (the frontends' count), w requests waiting per worker and KV use k
 * (0..1; both from the workers' load reports, 0 when none report):
 * n + 1 if i > queue_high, w > waiting_high or k > kv_high; n - 1 if
 * i <= queue_low, w = 0 and the KV use spread over n - 1 workers,
 * k n / (n - 1), stays below kv_low; else n; within the budget.
 */
#ifndef DYN_PLANNER_PLAN_H
#define DYN_PLANNER_PLAN_H

#include "core/planner/profile.h"

#include <stdbool.h>

#define PLAN_CORR_MAX 4.0
#define PLAN_RHO_CAP 0.95

struct plan_limits {
	int min_workers;	/* per pool, >= 0 */
	int max_workers;	/* all pools together, >= min (x2 when disaggregated) */
	int max_gpus;		/* all workers' GPUs together; 0: no GPU budget */
	int gpus_prefill, gpus_decode, gpus_agg;	/* per worker, >= 1 */
};

struct plan_input {
	/* predicted for the next interval */
	double rate, isl, osl;
	/* observed in the last interval (0: not observed) */
	double obs_rate, obs_isl, obs_ttft_ms, obs_itl_ms;
	double obs_decode_concurrency;	/* active sequences per decode worker */
	int cur_prefill, cur_decode;	/* workers that served it */
	double corr_prefill, corr_decode;	/* > 0: fixed factors, not observed */
	/* targets */
	double ttft_ms, itl_ms;
	double quantile;		/* headroom: in (0, 1); 0: none (the mean) */
	bool disagg;
};

struct plan_result {
	int prefill, decode;		/* decode is the only pool when aggregated */
	double need_prefill, need_decode;	/* unrounded, before the budget */
	double corr_prefill, corr_decode;
	double prefill_tps, decode_tps;	/* per-worker capacity used */
	double max_concurrency;		/* c* */
	/* headroom: mean loads (requests arriving within one TTFT target,
	 * sequences decoding at once) and what the pools are sized for */
	double load_prefill, load_decode, sized_prefill, sized_decode;
	bool infeasible, over_budget;
	char why[160];			/* when infeasible */
};

/* The smallest k with P(X <= k) >= q for X Poisson of mean m (m when q
 * is 0: the mean itself; 0 when m <= 0); q in [0, 1). */
double plan_poisson_quantile(double m, double q);

/* SLA mode. */
void plan_sla(const struct profile *p, const struct plan_input *in,
	      const struct plan_limits *lim, struct plan_result *out);

/* Scale-down delay: a pool shrinks only to the largest count wanted over
 * its last `window` decisions (and grows at once), so one quiet or noisy
 * interval does not take away the workers the next one needs.  window 1:
 * no delay. */
#define PLAN_HOLD_MAX 64

struct plan_hold {
	int window;			/* 1..PLAN_HOLD_MAX */
	int want[PLAN_HOLD_MAX];	/* ring of the last counts wanted */
	long n;
};

/* Record want; the count to run.  window < 1 counts as 1. */
int plan_hold(struct plan_hold *h, int want);
/* r's counts held (prefill by hp when disaggregated, decode or the
 * aggregated pool by hd), where the held counts fit the budget. */
void plan_delay(struct plan_hold *hp, struct plan_hold *hd, const struct plan_limits *lim,
		bool disagg, struct plan_result *r);

#define PLAN_SURGE_Z 1.645

/* The surge rate of n arrivals over window_s > 0 seconds (0 when none). */
double plan_surge_rate(double n, double window_s);
/* The decision in effect was planned for last and runs last_r's counts:
 * 1 with *out when rate (plan_surge_rate()) needs more workers in a pool
 * (out: plan_sla() for it with last_r's correction factors fixed, each
 * pool at least last_r's count), else 0. */
int plan_surge(const struct profile *p, const struct plan_input *last,
	       const struct plan_result *last_r, double rate, const struct plan_limits *lim,
	       struct plan_result *out);

struct load_thresholds {
	double queue_high, queue_low;	/* requests in flight per worker */
	double waiting_high;		/* requests waiting per worker */
	double kv_high, kv_low;		/* KV use, 0..1 */
};

/* What load mode sees of one pool, per worker. */
struct load_obs {
	double inflight, waiting, kv_use;
};

/* Load mode: the count for one pool of n workers (see above); the GPU
 * budget counts them as aggregated workers. */
int plan_load(int n, const struct load_obs *o, const struct load_thresholds *t,
	      const struct plan_limits *lim);

#endif
