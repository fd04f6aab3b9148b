/*
 * simulate.h - a discrete-event replay of a request trace against a
 * profile, with the planner sizing the pools every interval: the decisions
 * it would take, the SLA attainment the profile predicts, worker-seconds.
 *
 * Model (times from the profile times the correction factors c_p, c_d
 * of the config, 1 when 0: what the live path adds to the profile):
 *   prefill  a FIFO pool of servers; a request arriving at a starts on
 *            the active server free first, at s = max(a, free), and holds
 *            it for c_p ttft(isl): TTFT = s + c_p ttft(isl) - a
 *   decode   at its first token the request joins the started decode
 *            worker with the fewest sequences still running; with c
 *            sequences there (itself included) it ends (osl - 1) x
 *            c_d itl(c) later.  Requests join in arrival order.  Its ITL
 *            (for the SLA) is c_d itl(the sequences on its worker averaged
 *            over its decode, itself included): a client averages its
 *            token gaps, and those that join later slow it too.
 *   planner  at every interval boundary T it observes the requests that
 *            arrived in [T - interval, T) (rate, mean ISL and OSL), feeds
 *            the predictors and applies plan_sla() at once (with the
 *            config's headroom quantile, as the live planner), with c_p and
 *            c_d as its correction factors (a live planner measures
 *            them) and the rate predicted 1 + startup_s / interval
 *            intervals ahead (predictor_ahead(): the load the workers it
 *            starts will meet); removed workers finish what they hold
 *            (drain) but take nothing new; added ones take work from
 *            T + startup_s; a pool shrinks only as plan_delay() lets it
 *            (hold).  Aggregated plans give both pools the one count.
 *   surge    with surge_s > 0, every second between boundaries (T + 1,
 *            T + 2, ... s) the requests that arrived in the last surge_s
 *            seconds go to plan_surge() against the decision in effect
 *            (from the first boundary on); a pool it grows takes work
 *            startup_s later, and the step counts as a decision for the
 *            hold, as the live planner's.
 *   start    each pool at max(min_workers, 1); the replay ends at the
 *            first interval boundary after the last arrival.
 *   worker-seconds  the workers planned (prefill + decode when
 *            disaggregated) x the time they were planned for.
 * A request meets the SLA when TTFT <= ttft_ms and ITL <= itl_ms (an
 * osl-1 request has no ITL and meets that part).
 */
#ifndef DYN_PLANNER_SIMULATE_H
#define DYN_PLANNER_SIMULATE_H

#include "core/planner/plan.h"
#include "core/planner/predict.h"

struct sim_req {
	double t_ms, isl, osl;	/* arrival (ascending), lengths */
};

struct sim_decision {
	double t_s;			/* the boundary, or the surge's second */
	bool surge;			/* a surge step (plan_surge()) */
	double obs_rate, obs_isl, obs_osl;
	struct plan_input in;		/* predictions and targets */
	struct plan_result r;
};

struct sim_cfg {
	const struct profile *p;
	double ttft_ms, itl_ms;
	double quantile;	/* plan_input's headroom */
	bool disagg;
	struct plan_limits lim;
	double interval_s;
	enum predictor_kind kind;
	int window;
	double alpha, beta;
	double startup_s;		/* a new worker's start-up time, >= 0 */
	double surge_s;			/* surge window, s; 0: no surge steps */
	int hold;			/* scale-down delay in decisions (plan_delay()) */
	double corr_prefill, corr_decode;	/* c_p, c_d; 0: 1 */
	void (*decision)(void *arg, const struct sim_decision *d);	/* or NULL */
	void *arg;
};

struct sim_result {
	long n, met_ttft, met_itl, met_both;
	double worker_s, duration_s;
	long decisions;
};

/* Replay reqs[0..n) (arrivals ascending, else -EINVAL).  0 or -errno. */
int sim_run(const struct sim_cfg *cfg, const struct sim_req *reqs, long n,
	    struct sim_result *out);

#endif
