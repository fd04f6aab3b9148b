/*
 * planner.c - "dyn planner": size the prefill and decode pools from a
 * worker profile, latency targets and a budget (man dyn-planner(1); the
 * logic is in core/planner/).  --simulate replays a trace; without it the
 * planner runs live on the frontends' metrics and acts through a connector
 * (planner_conn.h).
 */
#include "cmd/cmd.h"
#include "cmd/planner_conn.h"
#include "cmd/planner_obs.h"
#include "core/bench/words.h"
#include "core/bench/workload.h"
#include "core/err.h"
#include "core/metrics.h"
#include "core/planner/prom.h"
#include "core/planner/simulate.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/sysport.h"
#include "store/store.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#define NAME "planner"

static const char *const connectors[] = { "virtual", "local", "slurm", NULL };
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

/* The members every decision line has (simulated or live), without the
 * closing brace, so that the live planner can add its own. */
static void decision_json(struct strbuf *sb, const struct sim_decision *d)
{
	const struct plan_result *r = &d->r;
	sb_addf(sb, "{\"t_s\":%.3f,\"trigger\":\"%s\",\"observed\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g,"
		"\"ttft_ms\":%.4g,\"itl_ms\":%.4g},"
		"\"predicted\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g},"
		"\"correction\":{\"prefill\":%.4g,\"decode\":%.4g},"
		"\"capacity\":{\"prefill_tokens_per_s\":%.4g,\"decode_tokens_per_s\":%.4g,"
		"\"max_concurrency\":%.4g},"
		"\"need\":{\"prefill\":%.4g,\"decode\":%.4g},",
		d->t_s, d->surge ? "surge" : "interval", d->obs_rate, d->obs_isl, d->obs_osl,
		d->in.obs_ttft_ms, d->in.obs_itl_ms,
		d->in.rate, d->in.isl, d->in.osl, r->corr_prefill, r->corr_decode, r->prefill_tps,
		r->decode_tps, r->max_concurrency, r->need_prefill, r->need_decode);
	sb_addf(sb, "\"headroom\":{\"quantile\":%.4g,\"prefill_requests\":%.4g,"
		"\"prefill_sized\":%.4g,\"decode_sequences\":%.4g,\"decode_sized\":%.4g},",
		d->in.quantile, r->load_prefill, r->sized_prefill, r->load_decode,
		r->sized_decode);
	if (d->in.disagg)
		sb_addf(sb, "\"prefill\":%d,\"decode\":%d", r->prefill, r->decode);
	else
		sb_addf(sb, "\"workers\":%d", r->decode);
	sb_addf(sb, ",\"over_budget\":%s,\"infeasible\":%s", r->over_budget ? "true" : "false",
		r->infeasible ? "true" : "false");
	if (r->infeasible)
		sb_addf(sb, ",\"why\":\"%s\"", r->why);	/* plan.c's own text: no quotes */
}

static void print_decision(void *arg, const struct sim_decision *d)
{
	(void)arg;
	struct strbuf sb = STRBUF_INIT;
	decision_json(&sb, d);
	printf("%s}\n", sb.buf);
	sb_release(&sb);
}

/* ---- the live planner -------------------------------------------------- */

/* The frontends' counters the planner takes deltas of. */
enum { C_REQ, C_IN, C_OUT, C_TTFT_SUM, C_TTFT_N, C_ITL_SUM, C_ITL_N, NC };
static const char *const counters[NC] = {
	"dyn_frontend_requests_total", "dyn_frontend_input_tokens_total",
	"dyn_frontend_output_tokens_total", "dyn_frontend_time_to_first_token_seconds_sum",
	"dyn_frontend_time_to_first_token_seconds_count",
	"dyn_frontend_inter_token_latency_seconds_sum",
	"dyn_frontend_inter_token_latency_seconds_count",
};

struct fe_sample {
	char *url;
	double c[NC];
};

/* What the frontends' /metrics said at one moment (each one's counters;
 * requests in flight summed; the worker gauges the largest any frontend
 * sees: they all see the same workers), and the workers' load reports. */
struct fe_obs {
	struct fe_sample *fe;	/* the frontends that answered */
	int ok;
	double inflight;
	double workers[3];	/* agg, prefill, decode */
	struct planner_load load;
};

static const char *const roles[3] = { "agg", "prefill", "decode" };

static volatile sig_atomic_t stop_flag;

static void on_stop(int sig)
{
	(void)sig;
	stop_flag = 1;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	sb_add(arg, data, size * n);
	return size * n;
}

/* GET url/metrics into body; 0 or -1 with why on stderr. */
static int fetch_metrics(const char *url, struct strbuf *body)
{
	struct strbuf u = STRBUF_INIT;
	char errbuf[CURL_ERROR_SIZE] = "";
	long status = 0;
	sb_addf(&u, "%s/metrics", url);
	CURL *c = curl_easy_init();
	curl_easy_setopt(c, CURLOPT_URL, u.buf);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
	CURLcode cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	int rc = 0;
	if (cc != CURLE_OK || status != 200) {
		fprintf(stderr, "dyn planner: %s: %s\n", u.buf,
			cc != CURLE_OK ? (*errbuf ? errbuf : curl_easy_strerror(cc)) : "not HTTP 200");
		rc = -1;
	}
	sb_release(&u);
	return rc;
}

static void obs_clear(struct fe_obs *o)
{
	for (int i = 0; i < o->ok; i++)
		free(o->fe[i].url);
	free(o->fe);
	memset(o, 0, sizeof(*o));
}

static void observe(char *const *urls, int n, struct fe_obs *o)
{
	memset(o, 0, sizeof(*o));
	o->fe = xcalloc(n ? (size_t)n : 1, sizeof(*o->fe));
	for (int i = 0; i < n; i++) {
		struct strbuf b = STRBUF_INIT;
		if (fetch_metrics(urls[i], &b) == 0) {
			const char *t = b.buf;
			struct fe_sample *f = &o->fe[o->ok++];
			f->url = xstrdup(urls[i]);
			for (int k = 0; k < NC; k++)
				f->c[k] = prom_sum(t, counters[k], NULL, NULL, NULL);
			o->inflight += prom_sum(t, "dyn_frontend_inflight_requests", NULL, NULL, NULL);
			for (int r = 0; r < 3; r++) {
				double w = prom_sum(t, "dyn_frontend_workers", "role", roles[r], NULL);
				if (w > o->workers[r])
					o->workers[r] = w;
			}
		}
		sb_release(&b);
	}
}

/* a - b, or 0 when a counter went back (a frontend restarted). */
static double delta(double a, double b)
{
	return a > b ? a - b : 0;
}

/* The counters' growth from prev to cur, summed over the frontends in
 * both: a frontend's first sample is only its baseline, and one that
 * left takes its last interval with it. */
static void deltas(const struct fe_obs *prev, const struct fe_obs *cur, double out[NC])
{
	memset(out, 0, NC * sizeof(double));
	for (int i = 0; i < cur->ok; i++)
		for (int j = 0; j < prev->ok; j++)
			if (!strcmp(cur->fe[i].url, prev->fe[j].url))
				for (int k = 0; k < NC; k++)
					out[k] += delta(cur->fe[i].c[k], prev->fe[j].c[k]);
}

/* Sleep s seconds unless a stop signal comes first. */
/* Sleep s seconds, polling the connector every second at most. */
static void nap(double s, struct planner_conn *c)
{
	while (!stop_flag && s > 0) {
		double step = s < 1 || !c->poll ? s : 1;
		struct timespec ts = { (time_t)step,
				       (long)((step - (double)(time_t)step) * 1e9) };
		while (!stop_flag && nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		s -= step;
		if (c->poll)
			c->poll(c);
	}
}

/* KV use of role r's workers: their blocks of decoding sequences over
 * their pools (0 when none reported). */
static double kv_use(const struct planner_load *l, int r)
{
	return l->kv_total[r] > 0 ? l->kv_active[r] / l->kv_total[r] : 0;
}

/* What the planner's /metrics says: the last decision, shared with the
 * system port's thread. */
static struct {
	pthread_mutex_t mu;
	int desired[3], current[3];
	double rate, isl, osl, corr[2];
	long decisions, failures;
	int frontends;
	struct planner_load load;
} pm = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int pm_health(void *arg, struct strbuf *fields)
{
	(void)arg;
	(void)fields;
	return 1;
}

static void pm_metrics(void *arg, struct strbuf *out)
{
	(void)arg;
	static const char *const pools[2] = { "prefill", "decode" };
	struct strbuf l = STRBUF_INIT;
	pthread_mutex_lock(&pm.mu);
	metrics_family(out, "dyn_planner_desired_workers", "gauge",
		       "Workers per role the last decision asked for.");
	for (int r = 0; r < 3; r++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "role", roles[r]);
		metrics_value(out, "dyn_planner_desired_workers", l.buf, pm.desired[r]);
	}
	metrics_family(out, "dyn_planner_current_workers", "gauge",
		       "Workers per role the frontends saw at the last decision.");
	for (int r = 0; r < 3; r++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "role", roles[r]);
		metrics_value(out, "dyn_planner_current_workers", l.buf, pm.current[r]);
	}
	metrics_family(out, "dyn_planner_predicted_requests_per_second", "gauge",
		       "Request rate predicted for the next interval.");
	metrics_value(out, "dyn_planner_predicted_requests_per_second", "", pm.rate);
	metrics_family(out, "dyn_planner_predicted_isl", "gauge",
		       "Mean input length predicted for the next interval (tokens).");
	metrics_value(out, "dyn_planner_predicted_isl", "", pm.isl);
	metrics_family(out, "dyn_planner_predicted_osl", "gauge",
		       "Mean output length predicted for the next interval (tokens).");
	metrics_value(out, "dyn_planner_predicted_osl", "", pm.osl);
	metrics_family(out, "dyn_planner_correction_factor", "gauge",
		       "Observed over profiled latency per pool (1 in load mode).");
	for (int i = 0; i < 2; i++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "pool", pools[i]);
		metrics_value(out, "dyn_planner_correction_factor", l.buf, pm.corr[i]);
	}
	metrics_family(out, "dyn_planner_decisions_total", "counter", "Decisions taken.");
	metrics_value(out, "dyn_planner_decisions_total", "", (double)pm.decisions);
	metrics_family(out, "dyn_planner_worker_failures_total", "counter",
		       "Workers the connector started that exited unasked (local, slurm).");
	metrics_value(out, "dyn_planner_worker_failures_total", "", (double)pm.failures);
	metrics_family(out, "dyn_planner_frontends", "gauge",
		       "Frontends whose /metrics answered at the last decision.");
	metrics_value(out, "dyn_planner_frontends", "", pm.frontends);
	metrics_family(out, "dyn_planner_worker_load_reports", "gauge",
		       "Workers per role whose load report the last decision read.");
	for (int r = 0; r < 3; r++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "role", roles[r]);
		metrics_value(out, "dyn_planner_worker_load_reports", l.buf, pm.load.workers[r]);
	}
	metrics_family(out, "dyn_planner_worker_waiting_requests", "gauge",
		       "Requests waiting in the workers' queues per role, summed.");
	for (int r = 0; r < 3; r++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "role", roles[r]);
		metrics_value(out, "dyn_planner_worker_waiting_requests", l.buf,
			      pm.load.waiting[r]);
	}
	metrics_family(out, "dyn_planner_worker_kv_usage", "gauge",
		       "KV blocks of decoding sequences over the KV pool per role, 0..1.");
	for (int r = 0; r < 3; r++) {
		sb_setlen(&l, 0);
		metrics_label(&l, "role", roles[r]);
		metrics_value(out, "dyn_planner_worker_kv_usage", l.buf, kv_use(&pm.load, r));
	}
	pthread_mutex_unlock(&pm.mu);
	sb_release(&l);
}

static void pm_record(const struct sim_decision *d, const int cur[3], const struct fe_obs *o)
{
	pthread_mutex_lock(&pm.mu);
	pm.frontends = o->ok;
	pm.load = o->load;
	memcpy(pm.current, cur, sizeof(pm.current));
	pm.desired[0] = d->in.disagg ? 0 : d->r.decode;
	pm.desired[1] = d->in.disagg ? d->r.prefill : 0;
	pm.desired[2] = d->in.disagg ? d->r.decode : 0;
	pm.rate = d->in.rate;
	pm.isl = d->in.isl;
	pm.osl = d->in.osl;
	pm.corr[0] = d->r.corr_prefill;
	pm.corr[1] = d->r.corr_decode;
	pm.decisions++;
	pthread_mutex_unlock(&pm.mu);
}

static void *sys_thread(void *base)
{
	event_base_dispatch(base);
	return NULL;
}

struct live_cfg {
	char **frontends;		/* --frontend, or NULL: from the store */
	int nfront;
	struct store *st;
	const char *ns;
	const struct profile *p;	/* NULL: load mode */
	const char *profile_path;
	struct sim_cfg sc;		/* targets, limits, predictor */
	struct load_thresholds th;
	long iterations;		/* 0: until a signal */
	struct planner_conn *conn;
};

/* Read the frontends (the given ones, or those in the store) and the
 * workers' load reports. */
static void observe_all(const struct live_cfg *lc, struct fe_obs *o)
{
	char **urls = lc->frontends;
	int n = lc->nfront;
	if (!urls && planner_frontends(lc->st, lc->ns, &urls, &n) < 0) {
		fprintf(stderr, "dyn planner: the frontends of %s: %s\n", lc->ns, err_msg());
		n = 0;
	}
	observe(urls, n, o);
	if (urls != lc->frontends)
		planner_urls_free(urls, n);
	if (planner_worker_load(lc->st, lc->ns, &o->load) < 0)
		fprintf(stderr, "dyn planner: the workers of %s: %s\n", lc->ns, err_msg());
}

/* A profile is of one model: planning another's workers with it would be
 * wrong, so the planner stops (1) when the namespace's workers serve only
 * other models.  0 while they serve its model, or none is known yet. */
static int check_model(const struct live_cfg *lc)
{
	struct strbuf served = STRBUF_INIT;
	int found = 0;
	if (!lc->p || !*lc->p->model ||
	    planner_models(lc->st, lc->ns, lc->p->model, &served, &found) < 0 || found ||
	    !served.len) {
		sb_release(&served);
		return 0;
	}
	fprintf(stderr, "dyn planner: the profile %s is of model '%s', but the workers of "
		"namespace %s serve %s: profile the served model (dyn profile --model)\n",
		lc->profile_path, lc->p->model, lc->ns, served.buf);
	sb_release(&served);
	return 1;
}

/* The load members of a decision line: per role, the workers that
 * reported, their waiting requests and KV use. */
static void load_json(struct strbuf *sb, const struct planner_load *l)
{
	sb_adds(sb, ",\"worker_load\":{");
	for (int r = 0; r < 3; r++)
		sb_addf(sb, "%s\"%s\":{\"workers\":%d,\"waiting\":%.4g,\"kv_use\":%.4g}",
			r ? "," : "", roles[r], l->workers[r], l->waiting[r], kv_use(l, r));
	sb_adds(sb, "}");
}

static void frontends_json(struct strbuf *sb, const struct fe_obs *o)
{
	sb_adds(sb, ",\"frontends\":[");
	for (int i = 0; i < o->ok; i++) {
		if (i)
			sb_adds(sb, ",");
		sb_add_json_str(sb, o->fe[i].url, strlen(o->fe[i].url));
	}
	sb_adds(sb, "]");
}

/* Say on standard error what a decision could not do. */
static void explain(const struct sim_decision *d)
{
	const struct plan_result *r = &d->r;
	int n = d->in.disagg ? r->prefill + r->decode : r->decode;
	if (r->infeasible)
		fprintf(stderr, "dyn planner: the targets cannot be met: %s; keeping the most "
			"the budget allows (%d workers)\n", r->why, n);
	else if (r->over_budget)
		fprintf(stderr, "dyn planner: the load needs %.1f workers, more than the budget "
			"allows; keeping %d\n", d->in.disagg ? r->need_prefill + r->need_decode :
			r->need_decode, n);
}

/* Log decision d (taken on cur, nreq requests) and act on it: 0, or -1
 * when the connector failed. */
static int act(const struct live_cfg *lc, const struct sim_decision *d,
	       const struct fe_obs *cur, double nreq)
{
	const struct sim_cfg *sc = &lc->sc;
	int agg = (int)cur->workers[0], npre = (int)cur->workers[1], ndec = (int)cur->workers[2];
	explain(d);
	struct strbuf sb = STRBUF_INIT;
	decision_json(&sb, d);
	sb_addf(&sb, ",\"mode\":\"%s\",\"requests\":%.0f,\"inflight\":%.4g", lc->p ? "sla" : "load",
		nreq, cur->inflight);
	load_json(&sb, &cur->load);
	frontends_json(&sb, cur);
	sb_addf(&sb, ",\"current\":{\"agg\":%d,\"prefill\":%d,\"decode\":%d},"
		"\"connector\":\"%s\"}", agg, npre, ndec, lc->conn->name);
	printf("%s\n", sb.buf);
	fflush(stdout);
	pm_record(d, (int[3]){ agg, npre, ndec }, cur);
	int rc = lc->conn->decision(lc->conn, sb.buf);
	if (rc >= 0 && sc->disagg) {
		rc = lc->conn->scale(lc->conn, "prefill", d->r.prefill);
		if (rc >= 0)
			rc = lc->conn->scale(lc->conn, "decode", d->r.decode);
	} else if (rc >= 0) {
		rc = lc->conn->scale(lc->conn, "agg", d->r.decode);
	}
	pthread_mutex_lock(&pm.mu);
	pm.failures = lc->conn->failures;
	pthread_mutex_unlock(&pm.mu);
	sb_release(&sb);
	if (rc < 0) {
		fprintf(stderr, "dyn planner: connector %s failed: %s; stopping\n",
			lc->conn->name, err_msg());
		return -1;
	}
	return 0;
}

/* Between decisions: one frontend sample a second, the last
 * surge_s + 1 kept, to count the requests of the surge window. */
struct surge_ring {
	struct fe_obs *obs;
	uint64_t *t_ns;
	int n;		/* slots: surge window + 1 */
	long k;		/* samples taken */
};

/* Wait one interval, sampling the frontends every second (the window
 * runs across decisions); a surge step
 * (plan_surge()) when the requests of the last surge window need more
 * workers than the decision in effect, last (none before the first),
 * runs.  0, or -1 when the connector failed. */
static int watch(const struct live_cfg *lc, struct surge_ring *sr, struct sim_decision *last,
		 int have_last, struct plan_hold hold[2], uint64_t t0)
{
	const struct sim_cfg *sc = &lc->sc;
	for (double left = sc->interval_s; left > 0 && !stop_flag; left -= 1) {
		nap(left < 1 ? left : 1, lc->conn);
		if (!sr->n || stop_flag)
			continue;
		int slot = (int)(sr->k % sr->n);
		char **urls = lc->frontends;
		int n = lc->nfront;
		if (!urls && planner_frontends(lc->st, lc->ns, &urls, &n) < 0)
			n = 0;
		obs_clear(&sr->obs[slot]);
		observe(urls, n, &sr->obs[slot]);
		if (urls != lc->frontends)
			planner_urls_free(urls, n);
		sr->t_ns[slot] = mono_ns();
		/* no step just before a decision, nor before the first */
		if (++sr->k < sr->n || !have_last || left <= 1)
			continue;
		const struct fe_obs *old = &sr->obs[sr->k % sr->n], *cur = &sr->obs[slot];
		if (!old->ok || !cur->ok)
			continue;
		double c[NC];
		deltas(old, cur, c);
		/* arrivals: the requests answered (the counter) and those
		 * still in flight beyond the window's start */
		double arr = c[C_REQ] + cur->inflight - old->inflight;
		arr = arr > 0 ? arr : 0;
		double win = (double)(sr->t_ns[slot] - sr->t_ns[sr->k % sr->n]) / 1e9;
		struct sim_decision d = { .t_s = (double)(sr->t_ns[slot] - t0) / 1e9, .surge = true,
					  .in = last->in };
		d.obs_rate = win > 0 ? arr / win : 0;
		d.in.rate = win > 0 ? plan_surge_rate(arr, win) : 0;
		d.in.obs_ttft_ms = d.in.obs_itl_ms = 0;	/* the window's are not read */
		if (!plan_surge(lc->p, &last->in, &last->r, d.in.rate, &sc->lim, &d.r))
			continue;
		plan_delay(&hold[0], &hold[1], &sc->lim, sc->disagg, &d.r);
		if (act(lc, &d, cur, arr) < 0)
			return -1;
		*last = d;
	}
	return 0;
}

static int run_live(const struct live_cfg *lc)
{
	const struct sim_cfg *sc = &lc->sc;
	struct predictor pr[3];	/* rate, isl, osl */
	struct plan_hold hold[2] = { { .window = sc->hold }, { .window = sc->hold } };
	for (int i = 0; i < 3; i++)
		predictor_init(&pr[i], sc->kind, sc->window, sc->alpha, sc->beta);
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct fe_obs prev, cur;
	observe_all(lc, &prev);
	uint64_t t0 = mono_ns(), tprev = t0;
	int failed = 0, have_last = 0;
	struct sim_decision last = { 0 };
	/* surge steps need a profile (SLA mode) */
	struct surge_ring sr = { .n = lc->p && sc->surge_s > 0 ? (int)sc->surge_s + 1 : 0 };
	sr.obs = xcalloc(sr.n ? (size_t)sr.n : 1, sizeof(*sr.obs));
	sr.t_ns = xcalloc(sr.n ? (size_t)sr.n : 1, sizeof(*sr.t_ns));
	for (long k = 0; !stop_flag && !failed && (!lc->iterations || k < lc->iterations); k++) {
		if (watch(lc, &sr, &last, have_last, hold, t0) < 0) {
			failed = 1;
			break;
		}
		if (stop_flag)
			break;
		if (check_model(lc)) {
			failed = 1;
			break;
		}
		observe_all(lc, &cur);
		uint64_t now = mono_ns();
		double dt = (double)(now - tprev) / 1e9;
		if (!cur.ok) {
			fprintf(stderr, "dyn planner: no frontend answered; keeping the last decision\n");
			obs_clear(&cur);
			continue;
		}
		double c[NC];
		deltas(&prev, &cur, c);
		double nreq = c[C_REQ];
		struct sim_decision d = { .t_s = (double)(now - t0) / 1e9 };
		d.obs_rate = nreq / dt;
		d.obs_isl = nreq ? c[C_IN] / nreq : 0;
		d.obs_osl = nreq ? c[C_OUT] / nreq : 0;
		predictor_observe(&pr[0], d.obs_rate);
		if (nreq) {	/* lengths of an idle interval are unknown, not 0 */
			predictor_observe(&pr[1], d.obs_isl);
			predictor_observe(&pr[2], d.obs_osl);
		}
		int agg = (int)cur.workers[0], npre = (int)cur.workers[1], ndec = (int)cur.workers[2];
		d.in = (struct plan_input){
			/* the most load the workers decided now meet, from
			 * their start-up to the next decision's (predict.h) */
			.rate = predictor_peak(&pr[0], 0.5 + sc->startup_s / sc->interval_s,
					       1.5 + sc->startup_s / sc->interval_s),
			.isl = predictor_next(&pr[1]), .osl = predictor_next(&pr[2]), .obs_rate = d.obs_rate, .obs_isl = d.obs_isl,
			.obs_ttft_ms = c[C_TTFT_N] ? c[C_TTFT_SUM] / c[C_TTFT_N] * 1e3 : 0,
			.obs_itl_ms = c[C_ITL_N] ? c[C_ITL_SUM] / c[C_ITL_N] * 1e3 : 0,
			.cur_prefill = sc->disagg ? npre : 0, .cur_decode = sc->disagg ? ndec : agg,
			.ttft_ms = sc->ttft_ms, .itl_ms = sc->itl_ms, .quantile = sc->quantile,
			.disagg = sc->disagg,
		};
		/* sequences decoding per worker, averaged over the interval
		 * (Little's law: tokens out x ITL / interval), not a sample */
		int served = sc->disagg ? ndec : agg;
		d.in.obs_decode_concurrency =
			served ? c[C_OUT] * d.in.obs_itl_ms / 1e3 / dt / served : 0;
		/* a pool drained during the interval: its latencies are the
		 * drain's (requests caught as a worker stops), not the path's;
		 * the factors of the decision before stand */
		if (have_last && (cur.workers[0] < prev.workers[0] || cur.workers[1] < prev.workers[1] ||
				  cur.workers[2] < prev.workers[2])) {
			d.in.corr_prefill = last.r.corr_prefill;
			d.in.corr_decode = last.r.corr_decode;
		}
		const struct planner_load *ld = &cur.load;
		if (lc->p) {
			plan_sla(lc->p, &d.in, &sc->lim, &d.r);
			plan_delay(&hold[0], &hold[1], &sc->lim, sc->disagg, &d.r);
		} else {
			int nrep = ld->workers[0];
			struct load_obs lo = {
				.inflight = agg ? cur.inflight / agg : cur.inflight,
				.waiting = nrep ? ld->waiting[0] / nrep : 0,
				.kv_use = kv_use(ld, 0),
			};
			d.r = (struct plan_result){ .corr_prefill = 1, .corr_decode = 1 };
			d.r.decode = plan_load(agg, &lo, &lc->th, &sc->lim);
			d.r.need_decode = d.r.decode;
		}
		if (act(lc, &d, &cur, nreq) < 0)
			failed = 1;
		last = d;
		have_last = 1;
		obs_clear(&prev);
		prev = cur;
		tprev = now;
	}
	obs_clear(&prev);
	for (int i = 0; i < sr.n; i++)
		obs_clear(&sr.obs[i]);
	free(sr.obs);
	free(sr.t_ns);
	return failed;
}

/* Set up the frontends' list, the store and the connector; run. */
static int live(const char *frontends, const char *store_opt, const char *connector,
		const char *worker_cmd, long sys_port, struct live_cfg *lc)
{
	char *list = frontends ? xstrdup(frontends) : NULL, *save = NULL;
	char *urls[64];
	int n = 0;
	for (char *u = list ? strtok_r(list, ",", &save) : NULL; u; u = strtok_r(NULL, ",", &save)) {
		if (n == 64 || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))) {
			int rc = cmd_usage_error(NAME, n == 64 ? "--frontend: more than 64 URLs" :
						 "--frontend %s: not an http:// URL", u);
			free(list);
			return rc;
		}
		urls[n++] = u;
	}
	if (list && !n) {
		free(list);
		return cmd_usage_error(NAME, "--frontend: no URL");
	}
	struct store *st;
	int rc = store_open(*store_opt ? store_opt : store_default_url(), NULL, &st);
	if (rc < 0) {
		free(list);
		return cmd_store_fail(NAME, rc);
	}
	if (!strcmp(connector, "slurm"))
		rc = planner_conn_slurm(worker_cmd, &lc->conn);
	else if (!strcmp(connector, "local"))
		rc = planner_conn_local(worker_cmd, &lc->conn);
	else
		rc = planner_conn_virtual(st, lc->ns, &lc->conn);
	if (rc < 0) {
		rc = cmd_fail(NAME, "--connector %s: %s", connector, err_msg());
		store_close(st);
		free(list);
		return rc;
	}
	lc->frontends = list ? urls : NULL;
	lc->nfront = n;
	lc->st = st;
	struct event_base *base = NULL;
	struct sysport *sp = NULL;
	pthread_t th;
	if (sys_port >= 0) {
		static const struct sysport_role role = { pm_health, pm_metrics, NULL, NULL };
		evthread_use_pthreads();
		base = event_base_new();
		if (sysport_new(base, &role, "0.0.0.0", sys_port, &sp) < 0) {
			rc = cmd_fail(NAME, "%s", err_msg());
			goto out;
		}
		fprintf(stderr, "dyn planner: system port %d\n", sysport_port(sp));
		pthread_create(&th, NULL, sys_thread, base);
	}
	rc = run_live(lc);
	if (sp) {
		event_base_loopexit(base, NULL);
		pthread_join(th, NULL);
	}
out:
	sysport_free(sp);
	if (base)
		event_base_free(base);
	lc->conn->free(lc->conn);
	store_close(st);
	free(list);
	return rc;
}

int cmd_planner(int argc, char **argv)
{
	const char *trace = NULL, *profile_path = NULL, *predictor = "constant";
	double ttft = 500, itl = 50, interval = 60, alpha = 0.5, beta = 0.5, startup = 0;
	double headroom = 95;
	long hold = 1, surge = 2;
	const char *correction = NULL;
	long min_w = 1, max_w = 8, window = 5, block_len = 512;
	int disagg = 0;
	const char *frontends = NULL, *connector = "virtual", *store_opt = "", *ns = "dyn";
	const char *worker_cmd = NULL;
	long iterations = 0, sys_port = -1;
	long max_gpus = 0, gpus_prefill = 1, gpus_decode = 1, gpus_agg = 1;
	double queue_high = 2, queue_low = 0.5, waiting_high = 0.5, kv_high = 0.9, kv_low = 0.5;
	const char *rpc_cert = "", *rpc_key = "", *rpc_ca = "";
	const struct opt opts[] = {
		{ "frontend", OPT_STRING, &frontends, "URL[,URL...]", "live: the frontends whose "
		  "/metrics the planner reads (http://HOST:PORT; default: every frontend of the "
		  "namespace, from the store)", 0, 0, NULL },
		{ "connector", OPT_ENUM, &connector, "KIND", "live: how decisions are acted on",
		  0, 0, connectors },
		{ "worker-cmd", OPT_STRING, &worker_cmd, "CMD", "local, slurm: the shell command "
		  "that starts one worker, DYN_ROLE (agg, prefill or decode) in its environment "
		  "(e.g. 'dyn serve --model M --engine mock')", 0, 0, NULL },
		{ "store", OPT_STRING, &store_opt, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: "
		  "file://$XDG_RUNTIME_DIR/dyn)", 0, 0, NULL },
		{ "namespace", OPT_STRING, &ns, "NS", "namespace of the frontends, workers and "
		  "decision keys", 0, 0, NULL },
		CMD_RPC_TLS_OPTS(rpc_cert, rpc_key, rpc_ca),
		{ "system-port", OPT_INT, &sys_port, "PORT", "live: serve /health, /live and "
		  "/metrics (dyn_planner_*) here (0 = any free port, -1 = off)", -1, 65535, NULL },
		{ "iterations", OPT_INT, &iterations, "N", "live: stop after N decisions (default: "
		  "run until SIGINT or SIGTERM)", 0, 1000000000, NULL },
		{ "queue-high", OPT_DOUBLE, &queue_high, "N", "load mode: add a worker above this "
		  "many requests in flight per worker", 0, 1e9, NULL },
		{ "queue-low", OPT_DOUBLE, &queue_low, "N", "load mode: remove one at or below this "
		  "many per worker (and no request waiting, KV use under --kv-low)", 0, 1e9, NULL },
		{ "waiting-high", OPT_DOUBLE, &waiting_high, "N", "load mode: add a worker above "
		  "this many requests waiting in the workers' queues per worker (their load "
		  "reports)", 0, 1e9, NULL },
		{ "kv-high", OPT_DOUBLE, &kv_high, "F", "load mode: add a worker above this KV use "
		  "(0..1, the workers' load reports)", 0, 1, NULL },
		{ "kv-low", OPT_DOUBLE, &kv_low, "F", "load mode: remove one only if the KV use "
		  "spread over one worker fewer stays below this", 0, 1, NULL },
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
		{ "max-gpu-budget", OPT_INT, &max_gpus, "N", "GPUs of all workers together, at "
		  "most (0: no GPU budget)", 0, 1000000, NULL },
		{ "prefill-gpus", OPT_INT, &gpus_prefill, "N", "GPUs a prefill worker takes",
		  1, 100000, NULL },
		{ "decode-gpus", OPT_INT, &gpus_decode, "N", "GPUs a decode worker takes",
		  1, 100000, NULL },
		{ "agg-gpus", OPT_INT, &gpus_agg, "N", "GPUs an aggregated worker takes",
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
		{ "startup-time", OPT_DOUBLE, &startup, "SECONDS", "how long a new worker takes to "
		  "serve: the rate is predicted that much further ahead (holt), and the "
		  "simulation starts added workers that late", 0, 86400, NULL },
		{ "headroom", OPT_DOUBLE, &headroom, "PCT", "size each pool for this percentile "
		  "of its load under Poisson arrivals (requests within one TTFT target, "
		  "sequences decoding at once), not its mean (0: the mean; below 100)",
		  0, 99.99, NULL },
		{ "scale-down-delay", OPT_INT, &hold, "N", "a pool shrinks only to the most "
		  "workers it wanted over the last N decisions (grows at once; 1: at once)",
		  1, PLAN_HOLD_MAX, NULL },
		{ "surge-window", OPT_INT, &surge, "SECONDS", "between decisions, every second: "
		  "when the requests of the last SECONDS need more workers than run, scale "
		  "up at once (0: off)", 0, 60, NULL },
		{ "correction", OPT_STRING, &correction, "P,D", "simulate: the prefill and decode "
		  "correction factors (observed over profiled latency, as a live planner logs "
		  "them): the replay scales the profile's times by them, and the planner "
		  "plans with them (default 1,1)", 0, 0, NULL },
		{ "block-len", OPT_INT, &block_len, "TOKENS", "trace: tokens per hash id",
		  1, 100000000, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		NAME, "[--simulate TRACE --profile PATH | --frontend URL] [OPTIONS]",
		"Size the prefill and decode pools for latency targets within a budget.",
		"Every --adjustment-interval the planner predicts the next interval's\n"
		"request rate, input and output lengths (--load-predictor), and from the\n"
		"worker profile (dyn profile) computes the workers that meet --ttft and\n"
		"--itl, within --min-workers, --max-workers and --max-gpu-budget.\n"
		"Between decisions, every second, a pool grows at once when the\n"
		"requests of the last --surge-window seconds need more workers than it\n"
		"runs (a surge step: the predictor sees a ramp an interval late).\n\n"
		"--simulate replays a trace against the profile (a discrete-event model,\n"
		"dyn-planner(1)): each decision is printed as one JSON line with its\n"
		"inputs, then a summary line with the predicted SLA attainment and the\n"
		"worker-seconds used.\n\n"
		"Without --simulate the planner runs live: every interval it reads the\n"
		"/metrics of the namespace's frontends (found in the store, or the\n"
		"--frontend URLs: requests, ISL, OSL, TTFT, ITL, requests in flight,\n"
		"workers per role) and the workers' load reports (requests waiting, KV\n"
		"use), prints the decision as one JSON line and\n"
		"hands it to the --connector (virtual: the store keys NS/planner/decision\n"
		"and NS/planner/workers/ROLE; local: starts --worker-cmd workers, drains\n"
		"the newest with SIGTERM on scale-down, replaces crashed ones; slurm: the\n"
		"same inside a Slurm allocation, each worker an srun job step on one of\n"
		"its nodes, drained with scancel --signal=TERM).  A worker command that\n"
		"fails 3 times in a row, each within 10 s of its start, stops the planner\n"
		"(exit 1).  With --profile it plans for the targets; without, it scales\n"
		"one pool on requests in flight, waiting and KV use per worker\n"
		"(--queue-high, --queue-low, --waiting-high, --kv-high, --kv-low).",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (trace && !profile_path)
		return cmd_usage_error(NAME, "--simulate needs --profile");
	if (!profile_path && disagg)
		return cmd_usage_error(NAME, "--disagg needs --profile (load mode plans one pool)");
	if (!trace && strcmp(connector, "virtual") && !worker_cmd)
		return cmd_usage_error(NAME, "--connector %s needs --worker-cmd", connector);
	if (queue_low > queue_high)
		return cmd_usage_error(NAME, "--queue-low %g is above --queue-high %g", queue_low,
				       queue_high);
	if (cmd_check_name(NAME, "--namespace", ns))
		return 2;
	if (disagg && max_w < 2 * min_w)
		return cmd_usage_error(NAME, "--max-workers %ld cannot hold two pools of "
				       "--min-workers %ld", max_w, min_w);
	if (max_w < min_w)
		return cmd_usage_error(NAME, "--max-workers %ld is below --min-workers %ld", max_w,
				       min_w);
	long least = disagg ? min_w * (gpus_prefill + gpus_decode) : min_w * gpus_agg;
	if (max_gpus && max_gpus < least)
		return cmd_usage_error(NAME, "--max-gpu-budget %ld cannot hold --min-workers %ld "
				       "(%ld GPUs)", max_gpus, min_w, least);
	if (kv_low > kv_high)
		return cmd_usage_error(NAME, "--kv-low %g is above --kv-high %g", kv_low, kv_high);
	double corr_p = 1, corr_d = 1;
	char end;
	if (correction && (!trace || sscanf(correction, "%lf,%lf%c", &corr_p, &corr_d, &end) != 2 ||
			   !(corr_p >= 1 / PLAN_CORR_MAX && corr_p <= PLAN_CORR_MAX) ||
			   !(corr_d >= 1 / PLAN_CORR_MAX && corr_d <= PLAN_CORR_MAX)))
		return cmd_usage_error(NAME, !trace ? "--correction is for --simulate (a live "
				       "planner measures its factors)" : "--correction %s: not two "
				       "factors P,D in %g..%g", correction, 1 / PLAN_CORR_MAX,
				       PLAN_CORR_MAX);
	if (!trace && (rc = cmd_rpc_tls(NAME, rpc_cert, rpc_key, rpc_ca)) >= 0)
		return rc;
	const struct plan_limits lim = { (int)min_w, (int)max_w, (int)max_gpus, (int)gpus_prefill,
					 (int)gpus_decode, (int)gpus_agg };
	static struct profile p;
	if (profile_path && profile_load(profile_path, &p) < 0)
		return cmd_fail(NAME, "%s", err_msg());
	/* one policy, live or simulated */
	struct sim_cfg sc = {
		.p = &p, .ttft_ms = ttft, .itl_ms = itl, .quantile = headroom / 100,
		.disagg = disagg, .lim = lim, .interval_s = interval,
		.kind = predictor_kind_parse(predictor), .window = (int)window,
		.alpha = alpha, .beta = beta, .startup_s = startup, .hold = (int)hold,
		.surge_s = (double)surge,
	};
	if (!trace)
		return live(frontends, store_opt, connector, worker_cmd, sys_port,
			    &(struct live_cfg){
			.p = profile_path ? &p : NULL, .profile_path = profile_path, .ns = ns,
			.iterations = iterations,
			.th = { queue_high, queue_low, waiting_high, kv_high, kv_low },
			.sc = sc });
	struct sim_req *q;
	long n;
	if (read_trace(trace, block_len, &q, &n) < 0)
		return cmd_fail(NAME, "%s", err_msg());
	sc.corr_prefill = corr_p;
	sc.corr_decode = corr_d;
	sc.decision = print_decision;
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
