/*
 * profile.c - "dyn profile": measure what one worker can do, for the
 * planner (man dyn-profile(1); the format is core/planner/profile.h).
 *
 * Prefill: for each input length, requests one at a time asking for one
 * token; TTFT is their median, throughput the input length over it.  The
 * length recorded is the server's count of prompt tokens (usage), since
 * the prompt's words need not be one token each.
 * Decode: for each concurrency, that many requests in flight (closed loop)
 * generating --osl tokens each (ignore_eos); ITL is the median gap between
 * tokens, throughput the output tokens over the run's wall time.
 */
#include "cmd/cmd.h"
#include "core/bench/run.h"
#include "core/bench/stats.h"
#include "core/bench/words.h"
#include "core/bench/workload.h"
#include "core/err.h"
#include "core/planner/profile.h"
#include "core/strbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NAME "profile"

/* "128,512,2048" -> v[], ascending and positive; count or -1. */
static int parse_list(const char *opt, const char *s, double *v, int cap)
{
	int n = 0;
	while (*s) {
		char *end;
		errno = 0;
		double x = strtod(s, &end);
		if (end == s || errno || !(x >= 1) || x > 1e7 || (*end && *end != ',') || n == cap ||
		    (n && x <= v[n - 1])) {
			cmd_usage_error(NAME, "%s: '%s' is not an ascending list of at most %d "
					"numbers >= 1", opt, s, cap);
			return -1;
		}
		v[n++] = (double)(long)x;
		s = *end ? end + 1 : end;
	}
	if (!n)
		cmd_usage_error(NAME, "%s: empty list", opt);
	return n ? n : -1;
}

struct point_run {
	const char *url, *model, *api_key;
	struct bench_words *words;
	double timeout_s;
	long requests;
};

/* One closed-loop run of `requests` requests of isl/osl at concurrency c. */
static int run_point(const struct point_run *pr, long isl, long osl, long c,
		     struct bench_run_result *res)
{
	struct bench_workload_cfg wc = {
		.isl = isl, .osl = osl, .dist = BENCH_DIST_FIXED, .turns = 1,
		.seed = (uint64_t)(isl * 7919 + c), .words = pr->words,
	};
	struct bench_workload *wl;
	if (bench_workload_new(&wc, &wl) < 0)
		return -1;
	struct bench_run_cfg rc = {
		.url = pr->url, .model = pr->model, .api_key = pr->api_key,
		.concurrency = c, .num_requests = pr->requests > c ? pr->requests : c,
		.warmup = c, .timeout_ms = (long)(pr->timeout_s * 1000), .ignore_eos = 1,
		.seed = 1,
	};
	int rc_ = bench_run(&rc, wl, res);
	bench_workload_free(wl);
	if (rc_ < 0)
		return -1;
	for (size_t i = 0; i < res->n; i++)
		if (res->recs[i].error[0]) {
			err_set(-EIO, "isl %ld concurrency %ld: a request failed: %s%s%s", isl, c,
				res->recs[i].error, res->recs[i].error_msg ? ": " : "",
				res->recs[i].error_msg ? res->recs[i].error_msg : "");
			bench_run_free(res);
			return -1;
		}
	return 0;
}

static double median(double *v, size_t n)
{
	struct bench_stat s;
	bench_stat_compute(v, n, &s);
	return s.p50;
}

static int measure(const struct point_run *pr, const double *isl, int n_isl, const double *conc,
		   int n_conc, long decode_isl, long osl, struct profile *p)
{
	for (int i = 0; i < n_isl; i++) {
		struct bench_run_result res;
		if (run_point(pr, (long)isl[i], 1, 1, &res) < 0)
			return -1;
		double *t = calloc(res.n, sizeof(*t)), *u = calloc(res.n, sizeof(*u));
		for (size_t k = 0; k < res.n; k++) {
			t[k] = res.recs[k].ttft_ms;
			u[k] = res.recs[k].usage_in > 0 ? (double)res.recs[k].usage_in : isl[i];
		}
		double ttft = median(t, res.n), x = median(u, res.n);
		free(t);
		free(u);
		bench_run_free(&res);
		if (i > 0 && x <= p->prefill[i - 1].x)
			return err_set(-EINVAL, "--isl %.0f: the server counted %.0f prompt tokens, "
				       "no more than the length before", isl[i], x);
		p->prefill[i] = (struct profile_point){ x, ttft, x * 1000 / ttft };
		fprintf(stderr, "dyn profile: prefill isl %.0f (%.0f tokens): ttft %.2f ms\n",
			isl[i], x, ttft);
	}
	p->n_prefill = n_isl;
	for (int i = 0; i < n_conc; i++) {
		struct bench_run_result res;
		if (run_point(pr, decode_isl, osl, (long)conc[i], &res) < 0)
			return -1;
		size_t n_gaps = 0, k = 0;
		long out = 0;
		for (size_t r = 0; r < res.n; r++) {
			n_gaps += res.recs[r].n_itl;
			out += res.recs[r].out_tokens;
		}
		double *g = calloc(n_gaps ? n_gaps : 1, sizeof(*g));
		for (size_t r = 0; r < res.n; r++)
			for (size_t j = 0; j < res.recs[r].n_itl; j++)
				g[k++] = res.recs[r].itl[j];
		double itl = median(g, n_gaps), wall = res.wall_s;
		free(g);
		bench_run_free(&res);
		if (!(itl > 0) || !(wall > 0))
			return err_set(-EIO, "concurrency %.0f: no inter-token gaps measured "
				       "(--osl must be at least 2)", conc[i]);
		p->decode[i] = (struct profile_point){ conc[i], itl, out / wall };
		fprintf(stderr, "dyn profile: decode concurrency %.0f: itl %.2f ms, %.0f tokens/s\n",
			conc[i], itl, out / wall);
	}
	p->n_decode = n_conc;
	return 0;
}

int cmd_profile(int argc, char **argv)
{
	const char *url = "http://127.0.0.1:8000", *model = "", *api_key = NULL, *out = "-";
	const char *isl_s = "128,512,1024,2048", *conc_s = "1,2,4,8,16,32", *engine = "";
	long osl = 64, decode_isl = 128, requests = 8;
	double timeout = 300;
	const struct opt opts[] = {
		{ "url", OPT_STRING, &url, "URL", "the frontend serving the worker (one worker of "
		  "the model behind it)", 0, 0, NULL },
		{ "model", OPT_STRING, &model, "NAME", "model name (default: the first of GET "
		  "/v1/models)", 0, 0, NULL },
		{ "engine", OPT_STRING, &engine, "NAME", "engine name recorded in the profile",
		  0, 0, NULL },
		{ "isl", OPT_STRING, &isl_s, "LIST", "prefill: input lengths to measure "
		  "(comma-separated, ascending)", 0, 0, NULL },
		{ "concurrency", OPT_STRING, &conc_s, "LIST", "decode: concurrencies to measure "
		  "(comma-separated, ascending)", 0, 0, NULL },
		{ "osl", OPT_INT, &osl, "N", "decode: output tokens per request", 2, 1000000, NULL },
		{ "decode-isl", OPT_INT, &decode_isl, "N", "decode: input tokens per request",
		  1, 1000000, NULL },
		{ "requests", OPT_INT, &requests, "N", "measured requests per point (at least the "
		  "concurrency)", 1, 1000000, NULL },
		{ "timeout", OPT_DOUBLE, &timeout, "SECONDS", "per request", 0.1, 86400, NULL },
		{ "api-key", OPT_STRING, &api_key, "KEY", "send 'Authorization: Bearer KEY'",
		  0, 0, NULL },
		{ "output", OPT_STRING, &out, "PATH", "write the profile here (- : stdout)",
		  0, 0, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		NAME, "[OPTIONS]",
		"Measure one worker's prefill and decode performance for dyn planner.",
		"Sends requests through a frontend with one worker of the model behind\n"
		"it.  Prefill: for each --isl, --requests requests one at a time, each\n"
		"asking for one token: TTFT (median) and input tokens/s.  Decode: for\n"
		"each --concurrency, that many requests in flight generating --osl\n"
		"tokens: ITL (median) and output tokens/s.  Writes the JSON profile\n"
		"that dyn planner --profile reads (format in dyn-profile(1)).",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	double isl[PROFILE_MAX_POINTS], conc[PROFILE_MAX_POINTS];
	int n_isl = parse_list("--isl", isl_s, isl, PROFILE_MAX_POINTS);
	if (n_isl < 0)
		return EXIT_USAGE;
	int n_conc = parse_list("--concurrency", conc_s, conc, PROFILE_MAX_POINTS);
	if (n_conc < 0)
		return EXIT_USAGE;

	struct strbuf ep = STRBUF_INIT, murl = STRBUF_INIT;
	size_t n = strlen(url);
	while (n && url[n - 1] == '/')
		n--;
	sb_add(&ep, url, n);
	sb_adds(&ep, "/v1/completions");
	sb_add(&murl, url, n);
	sb_adds(&murl, "/v1/models");
	char *model_buf = NULL;
	int status = 1;
	if (!*model) {
		if (bench_first_model(murl.buf, api_key, 30000, &model_buf) < 0) {
			cmd_fail(NAME, "no --model given and none found: %s", err_msg());
			goto out;
		}
		model = model_buf;
	}
	struct bench_words words;
	bench_words_builtin(&words);
	struct point_run pr = { ep.buf, model, api_key, &words, timeout, requests };
	static struct profile p;
	snprintf(p.model, sizeof(p.model), "%s", model);
	snprintf(p.engine, sizeof(p.engine), "%s", engine);
	rc = measure(&pr, isl, n_isl, conc, n_conc, decode_isl, osl, &p);
	bench_words_free(&words);
	if (rc < 0) {
		cmd_fail(NAME, "%s", err_msg());
		goto out;
	}
	char *json = profile_to_json(&p);
	FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
	if (!f) {
		cmd_fail(NAME, "--output %s: %s", out, strerror(errno));
	} else {
		fprintf(f, "%s\n", json);
		status = (f != stdout ? fclose(f) : fflush(f)) ? cmd_fail(NAME, "--output %s: write "
							  "failed", out) : 0;
	}
	free(json);
out:
	free(model_buf);
	sb_release(&ep);
	sb_release(&murl);
	return status;
}
