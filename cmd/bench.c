/*
 * bench.c - "dyn bench": load generator and benchmark reporter for any
 * OpenAI-compatible server (man dyn-bench(1)).
 *
 *   dyn bench [OPTIONS]                 run a benchmark (or a sweep of runs)
 *   dyn bench report A.json [B.json..]  compare saved runs, write an SVG plot
 *
 * The work is in core/bench/ (workload, run, metrics, compare, svg) and
 * net/http_client; this file parses options, prints progress and tables
 * and writes the files.
 */
#include "cmd/cmd.h"
#include "core/bench/compare.h"
#include "core/bench/metrics.h"
#include "core/bench/run.h"
#include "core/bench/workload.h"
#include "core/bench/words.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_REQUESTS 100

struct bench_opts {
	const char *url, *model, *endpoint, *api_key;
	long concurrency;
	double rate;
	const char *arrival;
	int fixed_schedule;
	double speedup;
	const char *sweep;
	double duration;
	long num_requests, warmup;
	long isl, osl;
	double isl_stddev, osl_stddev;
	const char *dist;
	long prefix_len, prefix_groups, turns;
	const char *trace, *prompts, *tokenizer, *revision;
	long block_len;
	double scale;
	int ignore_eos;
	const char *extra_body;
	double timeout, grace;
	const char *goodput, *json;
	long seed;
	int progress;
};

/* ---- progress -------------------------------------------------------------- */

struct progress_ctx {
	int tty;
	int drawn;
	const char *label;
	long total;
};

static void on_progress(void *arg, const struct bench_progress *p)
{
	struct progress_ctx *c = arg;
	char line[256];
	char of[32] = "";
	if (c->total > 0)
		snprintf(of, sizeof(of), "/%ld", c->total);
	snprintf(line, sizeof(line), "%s%s %6.1fs  done %ld%s  errors %ld  in flight %ld  "
		 "%.1f tok/s  cpu %.0f%%", c->label, p->elapsed_s <= 0 ? " warm-up" : "",
		 p->elapsed_s, p->done, of, p->errors, p->in_flight, p->out_tok_s, p->cpu_pct);
	if (c->tty) {
		fprintf(stderr, "\r\033[K%s", line);
		c->drawn = 1;
	} else {
		fprintf(stderr, "%s\n", line);
	}
}

static void progress_end(struct progress_ctx *c)
{
	if (c->drawn)
		fprintf(stderr, "\r\033[K");
	c->drawn = 0;
}

/* ---- interruption ----------------------------------------------------------- */

/* The first SIGINT/SIGTERM writes a byte to stop_pipe (the run watches its
 * read end and winds down); a second one exits at once, removing the
 * --json file opened (empty) for the run: no report, no file. */
static volatile sig_atomic_t stop_signal;
static int stop_pipe[2] = { -1, -1 };
static const char *volatile json_to_remove;	/* a regular file we created */

static void on_signal(int sig)
{
	if (stop_signal) {
		if (json_to_remove)
			unlink(json_to_remove);
		_exit(128 + sig);
	}
	stop_signal = sig;
	if (stop_pipe[1] >= 0) {
		ssize_t w = write(stop_pipe[1], "x", 1);
		(void)w;
	}
}

static void signals_install(int on)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (on) {
		stop_signal = 0;
		if (pipe2(stop_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
			stop_pipe[0] = stop_pipe[1] = -1;
		sa.sa_handler = on_signal;
	} else {
		sa.sa_handler = SIG_DFL;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!on) {
		for (int i = 0; i < 2; i++)
			if (stop_pipe[i] >= 0)
				close(stop_pipe[i]);
		stop_pipe[0] = stop_pipe[1] = -1;
	}
}

/* ---- sweeps ---------------------------------------------------------------- */

struct sweep {
	int what;		/* 0 none, 1 concurrency, 2 request-rate */
	double v[64];
	int n;
};

static int parse_sweep(const char *spec, struct sweep *sw)
{
	memset(sw, 0, sizeof(*sw));
	if (!spec || !*spec)
		return 0;
	const char *eq = strchr(spec, '=');
	if (!eq)
		return err_set(-EINVAL, "--sweep: expected concurrency=A,B,... or request-rate=A,B,...");
	if ((size_t)(eq - spec) == 11 && !strncmp(spec, "concurrency", 11))
		sw->what = 1;
	else if ((size_t)(eq - spec) == 12 && !strncmp(spec, "request-rate", 12))
		sw->what = 2;
	else
		return err_set(-EINVAL, "--sweep: '%.*s' cannot be swept (concurrency, request-rate)",
			       (int)(eq - spec), spec);
	const char *p = eq + 1;
	while (*p) {
		char *end;
		double v = strtod(p, &end);
		if (end == p || v <= 0 || (*end && *end != ','))
			return err_set(-EINVAL, "--sweep: bad value list '%s'", eq + 1);
		if (sw->what == 1 && v != floor(v))
			return err_set(-EINVAL, "--sweep: concurrency must be whole numbers");
		if (sw->n == (int)ARRAY_SIZE(sw->v))
			return err_set(-EINVAL, "--sweep: at most %zu values", ARRAY_SIZE(sw->v));
		sw->v[sw->n++] = v;
		p = *end ? end + 1 : end;
	}
	if (!sw->n)
		return err_set(-EINVAL, "--sweep: no values");
	return 0;
}

/* Allow many sockets for thousands of concurrent streams. */
static void config_json(const struct bench_opts *o, const struct bench_run_cfg *c,
			const char *workload, struct strbuf *out)
{
	sb_addf(out, "{\"endpoint\":\"%s\",\"concurrency\":%ld,\"request_rate\":%g,"
		"\"arrival\":\"%s\",\"fixed_schedule\":%s,\"speedup\":%g,\"num_requests\":%ld,"
		"\"duration_s\":%g,\"warmup_requests\":%ld,\"ignore_eos\":%s,\"load\":\"%s\","
		"\"workload\":", o->endpoint, c->concurrency, c->rate, o->arrival,
		c->fixed_schedule ? "true" : "false", c->speedup, c->num_requests, c->duration_s,
		c->warmup, c->ignore_eos ? "true" : "false",
		c->fixed_schedule ? "fixed-schedule" : c->rate > 0 ? "open" : "closed");
	sb_add_json_str(out, workload, strlen(workload));
	sb_addch(out, '}');
}

static int write_file(const char *path, const char *buf, size_t len)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	size_t w = fwrite(buf, 1, len, f);
	int bad = w != len;
	if (fclose(f) != 0 || bad)
		return err_set(-EIO, "%s: write failed", path);
	return 0;
}

/* ---- target URLs ----------------------------------------------------------- */

static int ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);
	return n >= k && !memcmp(s + n - k, suffix, k);
}

/* The completion endpoint and the model list URL for --url, whose path
 * (trailing '/' trimmed) may be empty or any prefix (/v1/... appended),
 * end in /v1 (the OpenAI SDK base URL: /chat/completions or /completions
 * appended), or end in /completions (a full endpoint URL, kept). */
static void target_urls(const char *url, int chat, struct strbuf *ep, struct strbuf *models)
{
	const char *scheme = strstr(url, "://");
	const char *path = strchr(scheme ? scheme + 3 : url, '/');
	size_t n = strlen(url);
	while (n && url[n - 1] == '/' && (!path || url + n > path))
		n--;
	if (!path || url + n < path)
		path = url + n;
	size_t plen = (size_t)(url + n - path);
	const char *api = chat ? "/chat/completions" : "/completions";

	sb_reset(ep);
	sb_reset(models);
	if (ends_with(path, plen, "/completions")) {
		sb_add(ep, url, n);
		size_t base = n - strlen(ends_with(path, plen, "/chat/completions") ?
					 "/chat/completions" : "/completions");
		sb_add(models, url, base);
	} else if (ends_with(path, plen, "/v1")) {
		sb_add(ep, url, n);
		sb_adds(ep, api);
		sb_add(models, url, n);
	} else {
		sb_add(ep, url, n);
		sb_adds(ep, "/v1");
		sb_adds(ep, api);
		sb_add(models, url, n);
		sb_adds(models, "/v1");
	}
	sb_adds(models, "/models");
}

/* ---- dyn bench report ------------------------------------------------------- */

static int bench_report(int argc, char **argv)
{
	const char *svg = NULL;
	const struct opt opts[] = {
		{ "svg", OPT_STRING, &svg, "FILE",
		  "write latency CDFs and throughput vs concurrency as SVG (FILE ends in .svg)",
		  0, 0, NULL },
		{ NULL, 0, NULL, NULL, NULL, 0, 0, NULL },
	};
	const struct opt_cmd cmd = {
		"bench report", "[OPTIONS] A.json [B.json ...]",
		"Compare benchmark results side by side, with ratios to the first file.",
		"Each file is a --json output of dyn bench (every run of a sweep is a\n"
		"column).  Ratios are each column's value divided by the first column's.",
		opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs < 1)
		return cmd_usage_error("bench report", "expected at least one JSON file");
	size_t sl = svg ? strlen(svg) : 0;
	if (svg && (sl < 5 || strcasecmp(svg + sl - 4, ".svg")))
		return cmd_usage_error("bench report", "--svg writes SVG only: '%s' must end in .svg",
				       svg);
	struct bench_cmp *cmp;
	rc = bench_cmp_load((const char *const *)argv, (size_t)nargs, &cmp);
	if (rc < 0)
		return cmd_fail("bench report", "%s", err_msg());
	struct strbuf out = STRBUF_INIT;
	bench_cmp_table(cmp, &out);
	fputs(out.buf, stdout);
	if (svg) {
		sb_reset(&out);
		bench_cmp_svg(cmp, &out);
		rc = write_file(svg, out.buf, out.len);
		if (rc < 0) {
			sb_release(&out);
			bench_cmp_free(cmp);
			return cmd_fail("bench report", "%s", err_msg());
		}
		printf("plot: %s\n", svg);
	}
	sb_release(&out);
	bench_cmp_free(cmp);
	return 0;
}

/* ---- dyn bench (run) ------------------------------------------------------- */

static const char *const endpoints[] = { "chat", "completions", NULL };
static const char *const arrivals[] = { "poisson", "constant", NULL };
static const char *const dists[] = { "normal", "uniform", "fixed", NULL };

int cmd_bench(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "report"))
		return bench_report(argc - 1, argv + 1);

	struct bench_opts o = {
		.url = "http://127.0.0.1:8000", .model = NULL, .endpoint = "chat",
		.concurrency = 0, .arrival = "poisson", .speedup = 1, .isl = 128, .osl = 128,
		.dist = "normal", .prefix_groups = 1, .turns = 1, .block_len = 512, .scale = 1,
		.ignore_eos = 1, .timeout = 600, .grace = 2, .progress = 1,
	};
	const struct opt opts[] = {
		{ "url", OPT_STRING, &o.url, "URL", "server: http://HOST:PORT, its /v1 base URL, or a full .../completions endpoint URL", 0, 0, NULL },
		{ "model", OPT_STRING, &o.model, "NAME", "model name to send (default: the first of GET /v1/models)", 0, 0, NULL },
		{ "endpoint", OPT_ENUM, &o.endpoint, "KIND", "API: /v1/chat/completions or /v1/completions", 0, 0, endpoints },
		{ "api-key", OPT_STRING, &o.api_key, "KEY", "sent as Authorization: Bearer KEY", 0, 0, NULL },
		{ "concurrency", OPT_INT, &o.concurrency, "N", "requests in flight: closed loop (0 = 1), open-loop cap (0 = none)", 0, 1e6, NULL },
		{ "request-rate", OPT_DOUBLE, &o.rate, "R", "open loop: arrivals per second (0 = closed loop)", 0, 1e7, NULL },
		{ "arrival", OPT_ENUM, &o.arrival, "KIND", "open-loop arrival process", 0, 0, arrivals },
		{ "fixed-schedule", OPT_BOOL, &o.fixed_schedule, NULL, "send each request at its trace/file timestamp", 0, 0, NULL },
		{ "speedup", OPT_DOUBLE, &o.speedup, "X", "fixed schedule: divide timestamps by X", 1e-6, 1e9, NULL },
		{ "sweep", OPT_STRING, &o.sweep, "SPEC", "one run per value: concurrency=1,4,16 or request-rate=1,2,4", 0, 0, NULL },
		{ "duration", OPT_DOUBLE, &o.duration, "SECONDS", "stop sending after this long (0 = no limit)", 0, 1e9, NULL },
		{ "num-requests", OPT_INT, &o.num_requests, "N", "requests per run (default 100, or the whole trace)", 0, 1e12, NULL },
		{ "warmup-requests", OPT_INT, &o.warmup, "N", "requests sent first (prompts of their own) and left out of the results", 0, 1e9, NULL },
		{ "isl", OPT_INT, &o.isl, "TOKENS", "synthetic: mean input length", 1, 1e8, NULL },
		{ "osl", OPT_INT, &o.osl, "TOKENS", "synthetic: mean output length (max_tokens)", 1, 1e8, NULL },
		{ "isl-stddev", OPT_DOUBLE, &o.isl_stddev, "TOKENS", "synthetic: input length spread (0 = fixed)", 0, 1e8, NULL },
		{ "osl-stddev", OPT_DOUBLE, &o.osl_stddev, "TOKENS", "synthetic: output length spread (0 = fixed)", 0, 1e8, NULL },
		{ "length-dist", OPT_ENUM, &o.dist, "KIND", "distribution of lengths around the means", 0, 0, dists },
		{ "shared-prefix-len", OPT_INT, &o.prefix_len, "TOKENS", "synthetic: tokens of prefix shared within a group", 0, 1e8, NULL },
		{ "num-prefix-groups", OPT_INT, &o.prefix_groups, "N", "synthetic: number of distinct shared prefixes", 1, 1e8, NULL },
		{ "turns", OPT_INT, &o.turns, "N", "synthetic: turns per conversation (history is resent)", 1, 1000, NULL },
		{ "trace", OPT_STRING, &o.trace, "FILE", "Mooncake JSONL trace (timestamp, input_length, output_length, hash_ids)", 0, 0, NULL },
		{ "block-len", OPT_INT, &o.block_len, "TOKENS", "trace: tokens per hash id", 1, 1e8, NULL },
		{ "length-scale", OPT_DOUBLE, &o.scale, "X", "trace: scale input, output and block lengths by X", 1e-6, 1e6, NULL },
		{ "prompts", OPT_STRING, &o.prompts, "FILE", "JSONL prompt file (text, output_length, timestamp)", 0, 0, NULL },
		{ "tokenizer", OPT_STRING, &o.tokenizer, "MODEL", "the model's tokenizer (a folder, tokenizer.json or hub id): exact prompt token counts, output cross-check", 0, 0, NULL },
		CMD_REVISION_OPT(o.revision),
		{ "ignore-eos", OPT_BOOL, &o.ignore_eos, NULL, "send ignore_eos and min_tokens to force the output length", 0, 0, NULL },
		{ "extra-body", OPT_STRING, &o.extra_body, "JSON", "JSON object whose members are added to every request", 0, 0, NULL },
		{ "timeout", OPT_DOUBLE, &o.timeout, "SECONDS", "per-request time limit (0 = none)", 0, 1e7, NULL },
		{ "grace", OPT_DOUBLE, &o.grace, "SECONDS", "on Ctrl-C: wait this long for requests in flight, then cancel them", 0, 1e6, NULL },
		{ "goodput", OPT_STRING, &o.goodput, "SLOS", "SLOs for goodput, e.g. ttft=200ms,itl=25ms,e2e=2s", 0, 0, NULL },
		{ "json", OPT_STRING, &o.json, "FILE", "write every request record and the aggregates as JSON", 0, 0, NULL },
		{ "seed", OPT_INT, &o.seed, "N", "seed of prompts, lengths and arrivals", 0, 9e18, NULL },
		{ "progress", OPT_BOOL, &o.progress, NULL, "live progress line on stderr", 0, 0, NULL },
		{ NULL, 0, NULL, NULL, NULL, 0, 0, NULL },
	};
	const struct opt_cmd cmd = {
		"bench", "[OPTIONS] | report [--svg FILE] A.json [B.json ...]",
		"Benchmark an OpenAI-compatible server: TTFT, ITL, TPOT, latency, throughput, goodput.",
		"Streams requests (SSE) to --url and measures each token's arrival.\n"
		"Load: closed loop (--concurrency), open loop (--request-rate), trace replay\n"
		"(--fixed-schedule), or a --sweep of runs.  Workload: synthetic (--isl/--osl),\n"
		"a Mooncake trace (--trace) or a prompt file (--prompts).  Without --tokenizer\n"
		"prompts are built from common English words (about one token each).\n"
		"'dyn bench report' compares --json files (see 'dyn bench report --help').",
		opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs)
		return cmd_usage_error("bench", "unexpected argument '%s' (only 'report' is a verb)",
				       argv[0]);
	/* A key with CR/LF would add header lines of its own. */
	for (const char *k = o.api_key; k && *k; k++)
		if ((unsigned char)*k < 0x20 || *k == 0x7f)
			return cmd_usage_error("bench", "--api-key must not contain control characters");
	if (o.trace && o.prompts)
		return cmd_usage_error("bench", "--trace and --prompts exclude each other");
	if (o.fixed_schedule && !o.trace && !o.prompts)
		return cmd_usage_error("bench", "--fixed-schedule needs --trace or --prompts");
	if (o.fixed_schedule && o.rate > 0)
		return cmd_usage_error("bench", "--fixed-schedule and --request-rate exclude each other");
	struct sweep sw;
	struct bench_slo slo;
	if (parse_sweep(o.sweep, &sw) < 0 || bench_slo_parse(o.goodput, &slo) < 0)
		return cmd_usage_error("bench", "%s", err_msg());
	if (sw.what && o.fixed_schedule)
		return cmd_usage_error("bench", "--sweep and --fixed-schedule exclude each other");
	if (o.extra_body) {
		cJSON *x = cJSON_Parse(o.extra_body);
		int ok = cJSON_IsObject(x);
		cJSON_Delete(x);
		if (!ok)
			return cmd_usage_error("bench", "--extra-body must be a JSON object");
	}

	/* Prompt words, from the tokenizer when given. */
	struct tok *tok = NULL;
	struct bench_words words;
	long tok_offset = 0;
	if (!o.tokenizer && cmd_check_revision("bench", NULL, o.revision))
		return EXIT_USAGE;
	if (o.tokenizer) {
		char *path;
		if ((rc = cmd_model_files("bench", o.tokenizer, o.revision, &path)))
			return rc;
		rc = tok_load(path, &tok);
		free(path);
		if (rc < 0)
			return cmd_fail("bench", "%s", err_msg());
		if (bench_words_from_tok(&words, tok) < 0 ||
		    bench_words_check(&words, tok, &tok_offset) < 0) {
			tok_free(tok);
			return cmd_fail("bench", "%s", err_msg());
		}
	} else {
		bench_words_builtin(&words);
	}
	static const char *const dist_names[] = { "fixed", "normal", "uniform" };
	enum bench_dist dist = BENCH_DIST_NORMAL;
	for (int i = 0; i < 3; i++)
		if (!strcmp(o.dist, dist_names[i]))
			dist = (enum bench_dist)i;
	struct bench_workload_cfg wc = {
		.trace = o.trace, .prompts = o.prompts, .isl = o.isl, .osl = o.osl,
		.isl_stddev = o.isl_stddev, .osl_stddev = o.osl_stddev, .dist = dist,
		.prefix_len = o.prefix_len, .prefix_groups = o.prefix_groups, .turns = (int)o.turns,
		.block_len = o.block_len, .scale = o.scale, .seed = (uint64_t)o.seed,
		.words = &words, .tok = tok, .tok_offset = tok_offset,
		.fixed_schedule = o.fixed_schedule,
	};
	struct bench_workload *wl = NULL;
	if (bench_workload_new(&wc, &wl) < 0) {
		int e = cmd_usage_error("bench", "%s", err_msg());
		bench_words_free(&words);
		tok_free(tok);
		return e;
	}
	struct strbuf desc = STRBUF_INIT;
	bench_workload_describe(wl, &desc);

	/* The endpoint URL. */
	struct strbuf url = STRBUF_INIT, murl = STRBUF_INIT;
	target_urls(o.url, !strcmp(o.endpoint, "chat"), &url, &murl);

	/* Without --model, the first model the server lists. */
	char *model_buf = NULL;
	if (!o.model || !*o.model) {
		long tmo = o.timeout > 0 && o.timeout < 30 ? (long)(o.timeout * 1000) : 30000;
		rc = bench_first_model(murl.buf, o.api_key, tmo, &model_buf);
		if (rc < 0) {
			int e = cmd_fail("bench", "no --model given and none found: %s", err_msg());
			sb_release(&url);
			sb_release(&murl);
			sb_release(&desc);
			bench_workload_free(wl);
			bench_words_free(&words);
			tok_free(tok);
			return e;
		}
		o.model = model_buf;
	}
	sb_release(&murl);

	/* The --json file is opened now: a path that cannot be written fails
	 * before any request is sent, not after the run (records lost). */
	FILE *json_file = NULL;
	if (o.json && !(json_file = fopen(o.json, "w"))) {
		int e = cmd_fail("bench", "--json %s: %s", o.json, strerror(errno));
		free(model_buf);
		sb_release(&url);
		sb_release(&desc);
		bench_workload_free(wl);
		bench_words_free(&words);
		tok_free(tok);
		return e;
	}
	struct stat jst;
	if (json_file && fstat(fileno(json_file), &jst) == 0 && S_ISREG(jst.st_mode))
		json_to_remove = o.json;

	long num = o.num_requests;
	if (o.fixed_schedule && (num <= 0 || num > bench_workload_count(wl)))
		num = bench_workload_count(wl);
	if (num <= 0 && o.duration <= 0)
		num = bench_workload_count(wl) > 0 ? bench_workload_count(wl) : DEFAULT_REQUESTS;

	struct progress_ctx pc = { isatty(2), 0, "", num };
	struct strbuf json = STRBUF_INIT, table = STRBUF_INIT, label = STRBUF_INIT;
	struct strbuf conf = STRBUF_INIT;
	sb_adds(&json, "{\"tool\":\"dyn bench\",\"version\":\"" DYN_VERSION "\",\"url\":");
	sb_add_json_str(&json, url.buf, url.len);
	sb_adds(&json, ",\"model\":");
	sb_add_json_str(&json, o.model, strlen(o.model));
	sb_addf(&json, ",\"endpoint\":\"%s\",\"workload\":", o.endpoint);
	sb_add_json_str(&json, desc.buf, desc.len);
	sb_adds(&json, ",\"runs\":[");

	int nruns = sw.what ? sw.n : 1, status = 0;
	long next_index = 0;
	signals_install(1);
	for (int i = 0; i < nruns && !stop_signal; i++) {
		struct bench_run_cfg rc_ = {
			.url = url.buf, .model = o.model, .api_key = o.api_key,
			.chat = !strcmp(o.endpoint, "chat"), .concurrency = o.concurrency,
			.rate = o.rate, .poisson = !strcmp(o.arrival, "poisson"),
			.fixed_schedule = o.fixed_schedule, .speedup = o.speedup,
			.duration_s = o.duration, .num_requests = num, .warmup = o.warmup,
			.timeout_ms = (long)(o.timeout * 1000), .ignore_eos = o.ignore_eos,
			.extra_body = o.extra_body, .first_index = next_index,
			.seed = (uint64_t)o.seed + (uint64_t)i,
			.progress = o.progress ? on_progress : NULL, .progress_arg = &pc,
			.progress_s = pc.tty ? 1 : 10,
			.stop_fd = stop_pipe[0], .grace_s = o.grace,
			.tok = tok, .tok_offset = tok_offset,
		};
		if (sw.what == 2)
			rc_.rate = sw.v[i];
		if (rc_.rate <= 0 && !rc_.fixed_schedule && rc_.concurrency < 1)
			rc_.concurrency = 1;	/* closed loop */
		sb_reset(&label);
		if (sw.what == 1) {
			rc_.concurrency = (long)sw.v[i];
			sb_addf(&label, "concurrency=%ld", rc_.concurrency);
		} else if (sw.what == 2) {
			sb_addf(&label, "request-rate=%g", rc_.rate);
		} else if (rc_.fixed_schedule) {
			sb_addf(&label, "fixed-schedule speedup=%g", rc_.speedup);
		} else if (rc_.rate > 0) {
			sb_addf(&label, "request-rate=%g", rc_.rate);
		} else {
			sb_addf(&label, "concurrency=%ld", rc_.concurrency);
		}
		pc.label = label.buf;

		struct bench_run_result res;
		rc = bench_run(&rc_, wl, &res);
		progress_end(&pc);
		if (rc < 0) {
			cmd_fail("bench", "%s", err_msg());
			bench_run_free(&res);
			status = 1;
			break;
		}
		next_index += (long)res.n;
		if (tok)
			bench_count_output(&res, tok);
		struct bench_agg agg;
		bench_agg_compute(&res, &slo, &agg);
		sb_reset(&table);
		struct strbuf title = STRBUF_INIT;
		sb_addf(&title, "dyn bench: %s model %s, %s, %s", url.buf, o.model, label.buf, desc.buf);
		if (res.partial)
			sb_addf(&title, "\nPARTIAL: interrupted; %ld requests in flight cancelled and "
				"left out", res.cancelled);
		bench_agg_table(&agg, title.buf, &table);
		sb_release(&title);
		fputs(table.buf, stdout);
		if (i + 1 < nruns)
			fputc('\n', stdout);
		if (bench_agg_cpu_saturated(&agg))
			fprintf(stderr, "dyn bench: warning: the load generator used %.0f%% of a CPU core; "
				"it may be the bottleneck (figures can be pessimistic)\n", agg.cpu_pct);
		if (agg.ok == 0)
			status = 1;
		if (o.json) {
			sb_reset(&conf);
			config_json(&o, &rc_, desc.buf, &conf);
			if (i)
				sb_addch(&json, ',');
			bench_run_json(label.buf, conf.buf, &agg, &res, &json);
		}
		bench_run_free(&res);
	}
	if (stop_signal) {
		sb_adds(&json, "],\"interrupted\":true}\n");
		status = 128 + stop_signal;
	} else {
		sb_adds(&json, "]}\n");
	}
	json_to_remove = NULL;
	if (json_file) {
		size_t w = fwrite(json.buf, 1, json.len, json_file);
		if (fclose(json_file) != 0 || w != json.len) {
			cmd_fail("bench", "--json %s: write failed", o.json);
			status = 1;
		}
	}
	signals_install(0);
	sb_release(&json);
	free(model_buf);
	sb_release(&table);
	sb_release(&label);
	sb_release(&conf);
	sb_release(&url);
	sb_release(&desc);
	bench_workload_free(wl);
	bench_words_free(&words);
	tok_free(tok);
	return status;
}
