/*
 * simulate.c - trace replay against a profile (see simulate.h).
 */
#include "core/planner/simulate.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct dworker {
	double *end;	/* end times of the sequences it holds */
	int n, cap;
	double up;	/* started at (ms) */
};

/* One request's decode, judged once the replay is over. */
struct seq {
	int w;			/* decode worker */
	double first, end;	/* its first and last token */
	bool ok_ttft;
};

struct sim {
	const struct sim_cfg *cfg;
	struct seq *seqs;	/* one per request served */
	long n_seqs;
	double *pfree;		/* prefill servers: when each is free */
	struct dworker *dw;
	int np, nd, cap;
	struct predictor rate, isl, osl;
	struct plan_hold hold[2];	/* prefill, decode */
	long win_n;
	double win_isl, win_osl;
	double t0;	/* the first arrival: boundaries count from it */
	struct sim_decision last;	/* the decision in effect */
	bool have_last;
	double acc_ms;	/* worker-seconds counted up to here (from t0) */
};

/* Sequences of w still running at t (finished ones dropped). */
static int running(struct dworker *w, double t)
{
	int k = 0;
	for (int i = 0; i < w->n; i++)
		if (w->end[i] > t)
			w->end[k++] = w->end[i];
	w->n = k;
	return k;
}

static double factor(double c)
{
	return c > 0 ? c : 1;
}

/* The workers planned so far count up to t_ms. */
static void account(struct sim *s, double t_ms, struct sim_result *res)
{
	res->worker_s += (s->cfg->disagg ? s->np + s->nd : s->nd) * (t_ms - s->acc_ms) / 1000;
	s->acc_ms = t_ms;
}

/* Hold d's counts (plan_delay()) and run them from t_ms. */
static void apply(struct sim *s, struct sim_decision *d, double t_ms, struct sim_result *res)
{
	const struct sim_cfg *c = s->cfg;
	plan_delay(&s->hold[0], &s->hold[1], &c->lim, c->disagg, &d->r);
	int np = c->disagg ? d->r.prefill : d->r.decode, nd = d->r.decode;
	np = np < 1 ? 1 : np;
	nd = nd < 1 ? 1 : nd;
	account(s, t_ms, res);
	/* the workers added start up before they take work */
	double up = s->t0 + t_ms + c->startup_s * 1000;
	for (int i = s->np; i < np; i++)
		if (s->pfree[i] < up)
			s->pfree[i] = up;
	for (int i = s->nd; i < nd; i++)
		s->dw[i].up = up;
	s->np = np;
	s->nd = nd;
	res->decisions++;
	s->last = *d;
	s->have_last = true;
	if (c->decision)
		c->decision(c->arg, d);
}

/* A surge step at t_ms with n arrivals in the window before it. */
static void surge(struct sim *s, double t_ms, long n, struct sim_result *res)
{
	const struct sim_cfg *c = s->cfg;
	struct sim_decision d = { .t_s = t_ms / 1000, .surge = true, .in = s->last.in };
	d.obs_rate = n / c->surge_s;
	d.in.rate = plan_surge_rate((double)n, c->surge_s);
	if (s->have_last && plan_surge(c->p, &s->last.in, &s->last.r, d.in.rate, &c->lim, &d.r))
		apply(s, &d, t_ms, res);
}

static void tick(struct sim *s, double t_ms, struct sim_result *res)
{
	const struct sim_cfg *c = s->cfg;
	struct sim_decision d = { .t_s = t_ms / 1000 };
	d.obs_rate = s->win_n / c->interval_s;
	d.obs_isl = s->win_n ? s->win_isl / s->win_n : 0;
	d.obs_osl = s->win_n ? s->win_osl / s->win_n : 0;
	predictor_observe(&s->rate, d.obs_rate);
	/* lengths of an empty interval say nothing: keep the last ones */
	if (s->win_n) {
		predictor_observe(&s->isl, d.obs_isl);
		predictor_observe(&s->osl, d.obs_osl);
	}
	d.in = (struct plan_input){
		.rate = predictor_peak(&s->rate, 0.5 + c->startup_s / c->interval_s,
				       1.5 + c->startup_s / c->interval_s),
		.isl = predictor_next(&s->isl), .osl = predictor_next(&s->osl),
		.corr_prefill = factor(c->corr_prefill), .corr_decode = factor(c->corr_decode),
		.ttft_ms = c->ttft_ms, .itl_ms = c->itl_ms, .quantile = c->quantile,
		.disagg = c->disagg,
	};
	plan_sla(c->p, &d.in, &c->lim, &d.r);
	apply(s, &d, t_ms, res);
	s->win_n = 0;
	s->win_isl = s->win_osl = 0;
}

static void serve(struct sim *s, const struct sim_req *q, struct sim_result *res)
{
	const struct sim_cfg *c = s->cfg;
	int best = 0;
	for (int i = 1; i < s->np; i++)
		if (s->pfree[i] < s->pfree[best])
			best = i;
	double start = q->t_ms > s->pfree[best] ? q->t_ms : s->pfree[best];
	double first = start + factor(c->corr_prefill) * profile_ttft_ms(c->p, q->isl);
	s->pfree[best] = first;

	/* worker 0 never starts late: the pool's first workers are up at 0 */
	int w = 0, wn = running(&s->dw[0], first);
	for (int i = 1; i < s->nd; i++) {
		if (s->dw[i].up > first)
			continue;
		int k = running(&s->dw[i], first);
		if (k < wn) {
			w = i;
			wn = k;
		}
	}
	double itl = factor(c->corr_decode) * profile_itl_ms(c->p, wn + 1);
	struct dworker *dw = &s->dw[w];
	if (dw->n == dw->cap) {
		dw->cap = dw->cap ? 2 * dw->cap : 16;
		dw->end = xrealloc(dw->end, (size_t)dw->cap * sizeof(*dw->end));
	}
	dw->end[dw->n++] = first + (q->osl > 1 ? (q->osl - 1) * itl : 0);

	bool ok_t = first - q->t_ms <= c->ttft_ms;
	s->seqs[s->n_seqs++] = (struct seq){ w, first, dw->end[dw->n - 1], ok_t };
	res->n++;
	res->met_ttft += ok_t;
	s->win_n++;
	s->win_isl += q->isl;
	s->win_osl += q->osl;
}

static int seq_cmp(const void *a, const void *b)
{
	const struct seq *x = a, *y = b;
	if (x->w != y->w)
		return x->w < y->w ? -1 : 1;
	return x->first < y->first ? -1 : x->first > y->first;
}

/* Each request's ITL: c_d itl(its worker's sequences averaged over its
 * decode, itself included), as a client averages its token gaps; those
 * that joined after it slow it too, those that ended free it.  A sweep
 * per worker: a sequence overlapping [first, end) starts after
 * first - the longest decode. */
static void judge(struct sim *s, struct sim_result *res)
{
	const struct sim_cfg *c = s->cfg;
	struct seq *q = s->seqs;
	long n = s->n_seqs;
	double longest = 0;
	for (long i = 0; i < n; i++)
		if (q[i].end - q[i].first > longest)
			longest = q[i].end - q[i].first;
	qsort(q, (size_t)n, sizeof(*q), seq_cmp);
	for (long i = 0, lo = 0; i < n; i++) {
		double dur = q[i].end - q[i].first;
		bool ok = true;
		if (lo < i && q[lo].w != q[i].w)
			lo = i;
		while (q[lo].first < q[i].first - longest)
			lo++;
		if (dur > 0) {
			double busy = 0;
			for (long j = lo; j < n && q[j].w == q[i].w && q[j].first < q[i].end; j++) {
				double a = q[j].first > q[i].first ? q[j].first : q[i].first;
				double b = q[j].end < q[i].end ? q[j].end : q[i].end;
				busy += b > a ? b - a : 0;
			}
			ok = factor(c->corr_decode) * profile_itl_ms(c->p, busy / dur) <= c->itl_ms;
		}
		res->met_itl += ok;
		res->met_both += ok && q[i].ok_ttft;
	}
}

int sim_run(const struct sim_cfg *cfg, const struct sim_req *reqs, long n,
	    struct sim_result *res)
{
	memset(res, 0, sizeof(*res));
	for (long i = 1; i < n; i++)
		if (reqs[i].t_ms < reqs[i - 1].t_ms)
			return err_set(-EINVAL, "trace: request %ld arrives before the one before it",
				       i);
	struct sim s = { .cfg = cfg, .cap = cfg->lim.max_workers > 0 ? cfg->lim.max_workers : 1 };
	int rc = predictor_init(&s.rate, cfg->kind, cfg->window, cfg->alpha, cfg->beta);
	if (rc)
		return rc;
	s.hold[0].window = s.hold[1].window = cfg->hold;
	predictor_init(&s.isl, cfg->kind, cfg->window, cfg->alpha, cfg->beta);
	predictor_init(&s.osl, cfg->kind, cfg->window, cfg->alpha, cfg->beta);
	s.pfree = xcalloc((size_t)s.cap, sizeof(*s.pfree));
	s.seqs = xcalloc(n ? (size_t)n : 1, sizeof(*s.seqs));
	s.dw = xcalloc((size_t)s.cap, sizeof(*s.dw));
	s.np = s.nd = cfg->lim.min_workers > 1 ? cfg->lim.min_workers : 1;
	if (s.np > s.cap)
		s.np = s.nd = s.cap;

	double iv = cfg->interval_s * 1000, next = iv;
	double t0 = s.t0 = n ? reqs[0].t_ms : 0;
	/* the next surge step (every second after a boundary, before the
	 * next one) and the first arrival in its window */
	double sg = cfg->surge_s > 0 ? 1000 : INFINITY;
	long lo = 0;
	for (long i = 0; i < n; i++) {
		while (reqs[i].t_ms - t0 >= (sg < next ? sg : next)) {
			if (sg < next) {
				while (reqs[lo].t_ms - t0 < sg - cfg->surge_s * 1000)
					lo++;
				surge(&s, sg, i - lo, res);
				sg += 1000;
				continue;
			}
			tick(&s, next, res);
			if (cfg->surge_s > 0)
				sg = next + 1000;
			next += iv;
		}
		serve(&s, &reqs[i], res);
	}
	if (n)	/* to the end of the interval holding the last arrival */
		account(&s, next, res);
	res->duration_s = n ? next / 1000 : 0;
	judge(&s, res);
	free(s.seqs);
	for (int i = 0; i < s.cap; i++)
		free(s.dw[i].end);
	free(s.dw);
	free(s.pfree);
	return 0;
}
