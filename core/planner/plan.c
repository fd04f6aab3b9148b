/*
 * plan.c - replica counts (see plan.h).
 */
#include "core/planner/plan.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static double clamp_corr(double c)
{
	if (!(c > 0))
		return 1;
	if (c > PLAN_CORR_MAX)
		return PLAN_CORR_MAX;
	if (c < 1 / PLAN_CORR_MAX)
		return 1 / PLAN_CORR_MAX;
	return c;
}

static double prefill_corr(const struct profile *p, const struct plan_input *in)
{
	if (!(in->obs_ttft_ms > 0) || !(in->obs_isl > 0))
		return 1;
	double rho = 0;
	if (in->cur_prefill > 0)
		rho = in->obs_rate * in->obs_isl /
		      (in->cur_prefill * profile_prefill_tps(p, in->obs_isl));
	if (rho > PLAN_RHO_CAP)
		rho = PLAN_RHO_CAP;
	return clamp_corr(in->obs_ttft_ms / (profile_ttft_ms(p, in->obs_isl) / (1 - rho)));
}

static double decode_corr(const struct profile *p, const struct plan_input *in)
{
	if (!(in->obs_itl_ms > 0) || !(in->obs_decode_concurrency > 0))
		return 1;
	/* a sequence is never faster than alone: no extrapolating below */
	double c = in->obs_decode_concurrency;
	if (c < p->decode[0].x)
		c = p->decode[0].x;
	return clamp_corr(in->obs_itl_ms / profile_itl_ms(p, c));
}

/* The most aggregated workers the budget holds. */
static int agg_max(const struct plan_limits *lim)
{
	int m = lim->max_workers;
	if (lim->max_gpus > 0 && lim->max_gpus / lim->gpus_agg < m)
		m = lim->max_gpus / lim->gpus_agg;
	return m;
}

/* Disaggregated pools over the GPU budget: share it by need in GPUs. */
static void gpu_budget(struct plan_result *r, const struct plan_limits *lim, int *p, int *d)
{
	int g = lim->max_gpus, gp = lim->gpus_prefill, gd = lim->gpus_decode;
	int lo = lim->min_workers;
	if (g <= 0 || *p * gp + *d * gd <= g)
		return;
	r->over_budget = !r->infeasible;
	double np = r->need_prefill * gp, nd = r->need_decode * gd;
	double share = np + nd > 0 ? np / (np + nd) : 0.5;
	int pp = (int)lround(g * share / gp);
	if (pp < lo)
		pp = lo;
	if (pp > (g - lo * gd) / gp)
		pp = (g - lo * gd) / gp;
	int dd = (g - pp * gp) / gd;
	if (dd > lim->max_workers - pp)
		dd = lim->max_workers - pp;
	*p = pp;
	*d = dd;
}

/* Fit the counts into the budget; proportional cut when over it. */
static void budget(struct plan_result *r, bool disagg, const struct plan_limits *lim)
{
	int lo = lim->min_workers;
	if (!disagg) {
		int n = r->decode, hi = agg_max(lim);
		r->over_budget = n > hi && !r->infeasible;
		r->decode = n < lo ? lo : n > hi ? hi : n;
		r->prefill = 0;
		return;
	}
	int p = r->prefill < lo ? lo : r->prefill;
	int d = r->decode < lo ? lo : r->decode;
	if (p + d > lim->max_workers) {
		r->over_budget = !r->infeasible;
		double share = r->need_prefill + r->need_decode > 0 ?
				       r->need_prefill / (r->need_prefill + r->need_decode) : 0.5;
		p = (int)lround(lim->max_workers * share);
		if (p < lo)
			p = lo;
		if (p > lim->max_workers - lo)
			p = lim->max_workers - lo;
		d = lim->max_workers - p;
	}
	gpu_budget(r, lim, &p, &d);
	r->prefill = p;
	r->decode = d;
}

double plan_poisson_quantile(double m, double q)
{
	if (!(q > 0))
		return m;
	if (!(m > 0))
		return 0;
	/* P(X = k) by its recurrence, in logs: e^-m underflows past m ~ 745;
	 * the cap only guards against rounding never quite reaching q */
	double lp = -m, cdf = exp(lp), lm = log(m);
	long k = 0, cap = (long)(m + 40 * sqrt(m) + 40);
	while (cdf < q && k < cap) {
		k++;
		lp += lm - log((double)k);
		cdf += exp(lp);
	}
	return (double)k;
}

void plan_sla(const struct profile *p, const struct plan_input *in,
	      const struct plan_limits *lim, struct plan_result *r)
{
	memset(r, 0, sizeof(*r));
	r->corr_prefill = in->corr_prefill > 0 ? clamp_corr(in->corr_prefill) : prefill_corr(p, in);
	r->corr_decode = in->corr_decode > 0 ? clamp_corr(in->corr_decode) : decode_corr(p, in);

	double t1 = r->corr_prefill * profile_ttft_ms(p, in->isl);
	double rho_max = 1 - t1 / in->ttft_ms;
	if (rho_max <= 0) {
		r->infeasible = true;
		snprintf(r->why, sizeof(r->why),
			 "TTFT target %.1f ms is below one request's %.1f ms at ISL %.0f",
			 in->ttft_ms, t1, in->isl);
		r->need_prefill = lim->max_workers;
	} else {
		r->prefill_tps = rho_max * profile_prefill_tps(p, in->isl) / r->corr_prefill;
		/* in requests arriving within one TTFT target (plan.h) */
		double t = in->ttft_ms / 1000;
		r->load_prefill = in->rate * t;
		r->sized_prefill = plan_poisson_quantile(r->load_prefill, in->quantile);
		r->need_prefill = r->sized_prefill * in->isl / (r->prefill_tps * t);
	}

	r->max_concurrency = profile_max_concurrency(p, in->itl_ms / r->corr_decode);
	if (r->max_concurrency <= 0) {
		if (!r->infeasible)
			snprintf(r->why, sizeof(r->why),
				 "ITL target %.1f ms is below one sequence's %.1f ms",
				 in->itl_ms, r->corr_decode * profile_itl_ms(p, p->decode[0].x));
		r->infeasible = true;
		r->need_decode = lim->max_workers;
	} else {
		r->decode_tps = profile_decode_tps(p, r->max_concurrency) / r->corr_decode;
		/* in sequences decoding at once, c* per worker (plan.h) */
		r->load_decode = in->rate * in->osl / r->decode_tps * r->max_concurrency;
		r->sized_decode = plan_poisson_quantile(r->load_decode, in->quantile);
		r->need_decode = r->sized_decode / r->max_concurrency;
	}

	if (in->disagg) {
		r->prefill = (int)ceil(r->need_prefill - 1e-9);
		r->decode = (int)ceil(r->need_decode - 1e-9);
	} else {
		r->decode = (int)ceil(r->need_prefill + r->need_decode - 1e-9);
	}
	budget(r, in->disagg, lim);
}

int plan_load(int n, const struct load_obs *o, const struct load_thresholds *t,
	      const struct plan_limits *lim)
{
	int want = n, hi = agg_max(lim);
	double k = o->kv_use;
	if (o->inflight > t->queue_high || o->waiting > t->waiting_high || k > t->kv_high)
		want = n + 1;
	else if (n > 1 && o->inflight <= t->queue_low && o->waiting <= 0 &&
		 k * n / (n - 1) < t->kv_low)
		want = n - 1;
	if (want < lim->min_workers)
		want = lim->min_workers;
	if (want > hi)
		want = hi;
	return want;
}

int plan_hold(struct plan_hold *h, int want)
{
	int w = h->window < 1 ? 1 : h->window > PLAN_HOLD_MAX ? PLAN_HOLD_MAX : h->window;
	h->want[h->n++ % PLAN_HOLD_MAX] = want;
	int k = h->n < w ? (int)h->n : w, m = want;
	for (int i = 1; i <= k; i++)
		if (h->want[(h->n - i) % PLAN_HOLD_MAX] > m)
			m = h->want[(h->n - i) % PLAN_HOLD_MAX];
	return m;
}

/* p + d workers (p 0 when aggregated) within the budget */
static bool fits(const struct plan_limits *lim, bool disagg, int p, int d)
{
	int gpus = disagg ? p * lim->gpus_prefill + d * lim->gpus_decode : d * lim->gpus_agg;
	return p + d <= lim->max_workers && !(lim->max_gpus > 0 && gpus > lim->max_gpus);
}

double plan_surge_rate(double n, double window_s)
{
	double r = (n - PLAN_SURGE_Z * sqrt(n)) / window_s;
	return r > 0 ? r : 0;
}

int plan_surge(const struct profile *p, const struct plan_input *last,
	       const struct plan_result *last_r, double rate, const struct plan_limits *lim,
	       struct plan_result *out)
{
	if (!(rate > last->rate))
		return 0;
	struct plan_input in = *last;
	in.rate = rate;
	in.corr_prefill = last_r->corr_prefill;
	in.corr_decode = last_r->corr_decode;
	plan_sla(p, &in, lim, out);
	int grow = out->decode > last_r->decode || (in.disagg && out->prefill > last_r->prefill);
	if (out->prefill < last_r->prefill)
		out->prefill = last_r->prefill;
	if (out->decode < last_r->decode)
		out->decode = last_r->decode;
	return grow && fits(lim, in.disagg, in.disagg ? out->prefill : 0, out->decode);
}

void plan_delay(struct plan_hold *hp, struct plan_hold *hd, const struct plan_limits *lim,
		bool disagg, struct plan_result *r)
{
	int p = disagg ? plan_hold(hp, r->prefill) : 0, d = plan_hold(hd, r->decode);
	if (!fits(lim, disagg, p, d))
		return;
	r->prefill = p;
	r->decode = d;
}
