/*
 * planner.c - "dyn planner": size the prefill and decode pools from a
 * worker profile, latency targets and a budget (man dyn-planner(1); the
 * logic is in core/planner/).  --simulate replays a trace; without it the
 * planner runs live on the frontends' metrics and acts through a connector
 * (planner_conn.h).
 */
#include "cmd/cmd.h"
#include "cmd/planner_conn.h"
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
	sb_addf(sb, "{\"t_s\":%.3f,\"observed\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g,"
		"\"ttft_ms\":%.4g,\"itl_ms\":%.4g},"
		"\"predicted\":{\"rate\":%.4g,\"isl\":%.4g,\"osl\":%.4g},"
		"\"correction\":{\"prefill\":%.4g,\"decode\":%.4g},"
		"\"capacity\":{\"prefill_tokens_per_s\":%.4g,\"decode_tokens_per_s\":%.4g,"
		"\"max_concurrency\":%.4g},"
		"\"need\":{\"prefill\":%.4g,\"decode\":%.4g},",
		d->t_s, d->obs_rate, d->obs_isl, d->obs_osl, d->in.obs_ttft_ms, d->in.obs_itl_ms,
		d->in.rate, d->in.isl, d->in.osl, r->corr_prefill, r->corr_decode, r->prefill_tps,
		r->decode_tps, r->max_concurrency, r->need_prefill, r->need_decode);
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

/* What the frontends' /metrics said at one moment: counters summed over
 * the frontends, the worker gauges the largest any frontend sees (they all
 * see the same workers). */
struct fe_obs {
	double requests, in_tokens, out_tokens, ttft_sum, ttft_n, itl_sum, itl_n, inflight;
	double workers[3];	/* agg, prefill, decode */
	int ok;			/* frontends that answered */
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

static void observe(char *const *urls, int n, struct fe_obs *o)
{
	memset(o, 0, sizeof(*o));
	for (int i = 0; i < n; i++) {
		struct strbuf b = STRBUF_INIT;
		if (fetch_metrics(urls[i], &b) == 0) {
			const char *t = b.buf;
			o->ok++;
			o->requests += prom_sum(t, "dyn_frontend_requests_total", NULL, NULL, NULL);
			o->in_tokens += prom_sum(t, "dyn_frontend_input_tokens_total", NULL, NULL, NULL);
			o->out_tokens += prom_sum(t, "dyn_frontend_output_tokens_total", NULL, NULL, NULL);
			o->ttft_sum += prom_sum(t, "dyn_frontend_time_to_first_token_seconds_sum", NULL, NULL, NULL);
			o->ttft_n += prom_sum(t, "dyn_frontend_time_to_first_token_seconds_count", NULL, NULL, NULL);
			o->itl_sum += prom_sum(t, "dyn_frontend_inter_token_latency_seconds_sum", NULL, NULL, NULL);
			o->itl_n += prom_sum(t, "dyn_frontend_inter_token_latency_seconds_count", NULL, NULL, NULL);
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

/* Sleep s seconds unless a stop signal comes first. */
static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	while (!stop_flag && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* What the planner's /metrics says: the last decision, shared with the
 * system port's thread. */
static struct {
	pthread_mutex_t mu;
	int desired[3], current[3];
	double rate, isl, osl, corr[2];
	long decisions, failures;
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
	pthread_mutex_unlock(&pm.mu);
	sb_release(&l);
}

static void pm_record(const struct sim_decision *d, const int cur[3])
{
	pthread_mutex_lock(&pm.mu);
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
	char **frontends;
	int nfront;
	const struct profile *p;	/* NULL: load mode */
	struct sim_cfg sc;		/* targets, limits, predictor */
	struct load_thresholds th;
	long iterations;		/* 0: until a signal */
	struct planner_conn *conn;
};

static int run_live(const struct live_cfg *lc)
{
	const struct sim_cfg *sc = &lc->sc;
	struct predictor pr[3];	/* rate, isl, osl */
	for (int i = 0; i < 3; i++)
		predictor_init(&pr[i], sc->kind, sc->window, sc->alpha, sc->beta);
	struct sigaction sa = { .sa_handler = on_stop };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	struct fe_obs prev, cur;
	observe(lc->frontends, lc->nfront, &prev);
	uint64_t t0 = mono_ns(), tprev = t0;
	int failed = 0;
	for (long k = 0; !stop_flag && (!lc->iterations || k < lc->iterations); k++) {
		nap(sc->interval_s);
		if (stop_flag)
			break;
		observe(lc->frontends, lc->nfront, &cur);
		uint64_t now = mono_ns();
		double dt = (double)(now - tprev) / 1e9;
		if (!cur.ok) {
			fprintf(stderr, "dyn planner: no frontend answered; keeping the last decision\n");
			continue;
		}
		double nreq = delta(cur.requests, prev.requests);
		struct sim_decision d = { .t_s = (double)(now - t0) / 1e9 };
		d.obs_rate = nreq / dt;
		d.obs_isl = nreq ? delta(cur.in_tokens, prev.in_tokens) / nreq : 0;
		d.obs_osl = nreq ? delta(cur.out_tokens, prev.out_tokens) / nreq : 0;
		double nt = delta(cur.ttft_n, prev.ttft_n), ni = delta(cur.itl_n, prev.itl_n);
		predictor_observe(&pr[0], d.obs_rate);
		if (nreq) {	/* lengths of an idle interval are unknown, not 0 */
			predictor_observe(&pr[1], d.obs_isl);
			predictor_observe(&pr[2], d.obs_osl);
		}
		int agg = (int)cur.workers[0], npre = (int)cur.workers[1], ndec = (int)cur.workers[2];
		d.in = (struct plan_input){
			.rate = predictor_next(&pr[0]), .isl = predictor_next(&pr[1]),
			.osl = predictor_next(&pr[2]), .obs_rate = d.obs_rate, .obs_isl = d.obs_isl,
			.obs_ttft_ms = nt ? delta(cur.ttft_sum, prev.ttft_sum) / nt * 1e3 : 0,
			.obs_itl_ms = ni ? delta(cur.itl_sum, prev.itl_sum) / ni * 1e3 : 0,
			.cur_prefill = sc->disagg ? npre : 0, .cur_decode = sc->disagg ? ndec : agg,
			.ttft_ms = sc->ttft_ms, .itl_ms = sc->itl_ms, .disagg = sc->disagg,
		};
		int served = sc->disagg ? ndec : agg;
		d.in.obs_decode_concurrency = served ? cur.inflight / served : 0;
		if (lc->p) {
			plan_sla(lc->p, &d.in, &sc->lim, &d.r);
		} else {
			d.r = (struct plan_result){ .corr_prefill = 1, .corr_decode = 1 };
			d.r.decode = plan_load(agg, agg ? cur.inflight / agg : cur.inflight, 0, &lc->th,
					       &sc->lim);
			d.r.need_decode = d.r.decode;
		}
		struct strbuf sb = STRBUF_INIT;
		decision_json(&sb, &d);
		sb_addf(&sb, ",\"mode\":\"%s\",\"inflight\":%.4g,\"current\":{\"agg\":%d,"
			"\"prefill\":%d,\"decode\":%d},\"connector\":\"%s\"}", lc->p ? "sla" : "load",
			cur.inflight, agg, npre, ndec, lc->conn->name);
		printf("%s\n", sb.buf);
		fflush(stdout);
		pm_record(&d, (int[3]){ agg, npre, ndec });
		int rc = lc->conn->decision(lc->conn, sb.buf);
		if (rc >= 0 && sc->disagg) {
			rc = lc->conn->scale(lc->conn, "prefill", d.r.prefill);
			if (rc >= 0)
				rc = lc->conn->scale(lc->conn, "decode", d.r.decode);
		} else if (rc >= 0) {
			rc = lc->conn->scale(lc->conn, "agg", d.r.decode);
		}
		pthread_mutex_lock(&pm.mu);
		pm.failures = lc->conn->failures;
		pthread_mutex_unlock(&pm.mu);
		if (rc < 0) {
			fprintf(stderr, "dyn planner: connector %s: %s\n", lc->conn->name, err_msg());
			failed = 1;
		}
		sb_release(&sb);
		prev = cur;
		tprev = now;
	}
	return failed;
}

/* Set up the frontends' list, the store and the connector; run. */
static int live(const char *frontends, const char *store_opt, const char *ns,
		const char *connector, const char *worker_cmd, long sys_port, struct live_cfg *lc)
{
	char *list = xstrdup(frontends), *save = NULL;
	char *urls[64];
	int n = 0;
	for (char *u = strtok_r(list, ",", &save); u; u = strtok_r(NULL, ",", &save)) {
		if (n == 64 || (strncmp(u, "http://", 7) && strncmp(u, "https://", 8))) {
			int rc = cmd_usage_error(NAME, n == 64 ? "--frontend: more than 64 URLs" :
						 "--frontend %s: not an http:// URL", u);
			free(list);
			return rc;
		}
		urls[n++] = u;
	}
	if (!n) {
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
		rc = planner_conn_virtual(st, ns, &lc->conn);
	if (rc < 0) {
		rc = cmd_fail(NAME, "--connector %s: %s", connector, err_msg());
		store_close(st);
		free(list);
		return rc;
	}
	lc->frontends = urls;
	lc->nfront = n;
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
	double ttft = 500, itl = 50, interval = 60, alpha = 0.5, beta = 0.5;
	long min_w = 1, max_w = 8, window = 5, block_len = 512;
	int disagg = 0;
	const char *frontends = NULL, *connector = "virtual", *store_opt = "", *ns = "dyn";
	const char *worker_cmd = NULL;
	long iterations = 0, sys_port = -1;
	double queue_high = 2, queue_low = 0.5;
	const struct opt opts[] = {
		{ "frontend", OPT_STRING, &frontends, "URL[,URL...]", "live: the frontends whose "
		  "/metrics the planner reads (http://HOST:PORT)", 0, 0, NULL },
		{ "connector", OPT_ENUM, &connector, "KIND", "live: how decisions are acted on",
		  0, 0, connectors },
		{ "worker-cmd", OPT_STRING, &worker_cmd, "CMD", "local, slurm: the shell command "
		  "that starts one worker, DYN_ROLE (agg, prefill or decode) in its environment "
		  "(e.g. 'dyn serve --model M --engine mock')", 0, 0, NULL },
		{ "store", OPT_STRING, &store_opt, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: "
		  "file://$XDG_RUNTIME_DIR/dyn)", 0, 0, NULL },
		{ "namespace", OPT_STRING, &ns, "NS", "namespace of the decision keys", 0, 0, NULL },
		{ "system-port", OPT_INT, &sys_port, "PORT", "live: serve /health, /live and "
		  "/metrics (dyn_planner_*) here (0 = any free port, -1 = off)", -1, 65535, NULL },
		{ "iterations", OPT_INT, &iterations, "N", "live: stop after N decisions (default: "
		  "run until SIGINT or SIGTERM)", 0, 1000000000, NULL },
		{ "queue-high", OPT_DOUBLE, &queue_high, "N", "load mode: add a worker above this "
		  "many requests in flight per worker", 0, 1e9, NULL },
		{ "queue-low", OPT_DOUBLE, &queue_low, "N", "load mode: remove one at or below this "
		  "many per worker", 0, 1e9, NULL },
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
		NAME, "(--simulate TRACE --profile PATH | --frontend URL) [OPTIONS]",
		"Size the prefill and decode pools for latency targets within a budget.",
		"Every --adjustment-interval the planner predicts the next interval's\n"
		"request rate, input and output lengths (--load-predictor), and from the\n"
		"worker profile (dyn profile) computes the workers that meet --ttft and\n"
		"--itl, within --min-workers and --max-workers.\n\n"
		"--simulate replays a trace against the profile (a discrete-event model,\n"
		"dyn-planner(1)): each decision is printed as one JSON line with its\n"
		"inputs, then a summary line with the predicted SLA attainment and the\n"
		"worker-seconds used.\n\n"
		"Without --simulate the planner runs live: every interval it reads the\n"
		"/metrics of the --frontend URLs (requests, ISL, OSL, TTFT, ITL, requests\n"
		"in flight, workers per role), prints the decision as one JSON line and\n"
		"hands it to the --connector (virtual: the store keys NS/planner/decision\n"
		"and NS/planner/workers/ROLE; local: starts --worker-cmd workers, drains\n"
		"the newest with SIGTERM on scale-down, replaces crashed ones; slurm: the\n"
		"same inside a Slurm allocation, each worker an srun job step on one of\n"
		"its nodes, drained with scancel --signal=TERM).  With --profile it plans\n"
		"for the targets; without, it scales one pool on requests in flight per\n"
		"worker (--queue-high, --queue-low).",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (!trace && !frontends)
		return cmd_usage_error(NAME, "--simulate TRACE or --frontend URL is required");
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
	static struct profile p;
	if (profile_path && profile_load(profile_path, &p) < 0)
		return cmd_fail(NAME, "%s", err_msg());
	if (!trace)
		return live(frontends, store_opt, ns, connector, worker_cmd, sys_port,
			    &(struct live_cfg){
			.p = profile_path ? &p : NULL, .iterations = iterations,
			.th = { queue_high, queue_low, 2, 1 },	/* KV use is not read yet */
			.sc = {
				.ttft_ms = ttft, .itl_ms = itl, .disagg = disagg,
				.lim = { (int)min_w, (int)max_w }, .interval_s = interval,
				.kind = predictor_kind_parse(predictor), .window = (int)window,
				.alpha = alpha, .beta = beta,
			} });
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
