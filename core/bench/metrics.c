/*
 * metrics.c - aggregates, the human table and the JSON document of a run
 * (see metrics.h).
 */
#include "core/bench/metrics.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_duration_ms(const char *s, size_t len, double *out)
{
	char buf[64];
	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *end;
	double v = strtod(buf, &end);
	if (end == buf || !isfinite(v) || v < 0)
		return -1;
	if (!strcmp(end, "ms") || !*end)
		*out = v;
	else if (!strcmp(end, "s"))
		*out = v * 1000;
	else if (!strcmp(end, "us"))
		*out = v / 1000;
	else
		return -1;
	return 0;
}

int bench_slo_parse(const char *spec, struct bench_slo *slo)
{
	memset(slo, 0, sizeof(*slo));
	if (!spec || !*spec)
		return 0;
	const char *p = spec;
	while (*p) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		const char *eq = memchr(p, '=', len);
		double v;
		if (!eq || parse_duration_ms(eq + 1, len - (size_t)(eq + 1 - p), &v) < 0 || v <= 0)
			return err_set(-EINVAL, "--goodput: '%.*s' is not KEY=DURATION "
				       "(e.g. ttft=200ms,itl=25ms)", (int)len, p);
		size_t kl = (size_t)(eq - p);
		if (kl == 4 && !memcmp(p, "ttft", 4))
			slo->ttft_ms = v;
		else if ((kl == 3 && !memcmp(p, "itl", 3)) || (kl == 4 && !memcmp(p, "tpot", 4)))
			slo->tpot_ms = v;
		else if (kl == 3 && !memcmp(p, "e2e", 3))
			slo->e2e_ms = v;
		else
			return err_set(-EINVAL, "--goodput: unknown SLO '%.*s' (ttft, itl, tpot, e2e)",
				       (int)kl, p);
		slo->set = 1;
		p = comma ? comma + 1 : p + len;
	}
	return 0;
}

void bench_count_output(struct bench_run_result *res, const struct tok *tok)
{
	struct tok_ids ids = TOK_IDS_INIT;
	for (size_t i = 0; i < res->n; i++) {
		struct bench_rec *r = &res->recs[i];
		if (r->error[0] || !r->text)
			continue;
		ids.n = 0;
		if (tok_encode(tok, r->text, strlen(r->text), 0, &ids) == 0)
			r->tok_out = (long)ids.n;
	}
	tok_ids_release(&ids);
}

static void add_kind(struct bench_agg *a, const char *kind, const char *msg)
{
	for (int i = 0; i < a->nkinds; i++) {
		if (!strcmp(a->kind[i], kind)) {
			a->kind_n[i]++;
			if (!a->kind_msg[i])
				a->kind_msg[i] = msg;
			return;
		}
	}
	int i = a->nkinds < BENCH_MAX_KINDS ? a->nkinds++ : BENCH_MAX_KINDS - 1;
	if (i == BENCH_MAX_KINDS - 1 && a->kind_n[i] && strcmp(a->kind[i], "other")) {
		snprintf(a->kind[i], sizeof(a->kind[i]), "other");
	} else {
		snprintf(a->kind[i], sizeof(a->kind[i]), "%s", kind);
		a->kind_msg[i] = msg;
	}
	a->kind_n[i]++;
}

void bench_agg_compute(const struct bench_run_result *res, const struct bench_slo *slo,
		       struct bench_agg *a)
{
	size_t n = res->n, nitl = 0, k = 0;
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < n; i++)
		if (!res->recs[i].error[0])
			nitl += res->recs[i].n_itl;
	double *ttft = xcalloc(n + 1, sizeof(double)), *tpot = xcalloc(n + 1, sizeof(double));
	double *e2e = xcalloc(n + 1, sizeof(double)), *isl = xcalloc(n + 1, sizeof(double));
	double *osl = xcalloc(n + 1, sizeof(double)), *itl = xcalloc(nitl + 1, sizeof(double));
	size_t nt = 0, np = 0, ne = 0, ni = 0, no = 0;

	a->requests = (long)n;
	a->goodput = -1;
	for (size_t i = 0; i < n; i++) {
		const struct bench_rec *r = &res->recs[i];
		if (r->error[0]) {
			a->errors++;
			add_kind(a, r->error, r->error_msg);
			continue;
		}
		a->ok++;
		if (r->ttft_ms >= 0)
			ttft[nt++] = r->ttft_ms;
		if (r->tpot_ms >= 0)
			tpot[np++] = r->tpot_ms;
		e2e[ne++] = r->e2e_ms;
		for (size_t j = 0; j < r->n_itl; j++)
			itl[k++] = r->itl[j];
		/* The server's count (it includes the chat template and BOS
		 * that the prompt built does not), else the built count. */
		long in = r->usage_in >= 0 ? r->usage_in : r->isl;
		if (in >= 0) {
			isl[ni++] = (double)in;
			a->total_in += in;
		}
		osl[no++] = (double)r->out_tokens;
		a->total_out += r->out_tokens;
		if (r->usage_in >= 0 && r->isl >= 0) {
			a->usage_in_checked++;
			if (r->usage_in != r->isl)
				a->usage_in_mismatch++;
		}
		if (r->tok_out >= 0) {
			a->tok_out_checked++;
			if (r->tok_out != r->out_tokens)
				a->tok_out_mismatch++;
		}
		if (slo && slo->set) {
			int good = (!slo->ttft_ms || (r->ttft_ms >= 0 && r->ttft_ms <= slo->ttft_ms)) &&
				   (!slo->tpot_ms || r->tpot_ms < 0 || r->tpot_ms <= slo->tpot_ms) &&
				   (!slo->e2e_ms || r->e2e_ms <= slo->e2e_ms);
			a->good += good;
		}
	}
	a->wall_s = res->wall_s;
	a->cpu_pct = res->cpu_pct;
	if (a->wall_s > 0) {
		a->req_tput = (double)a->ok / a->wall_s;
		a->out_tput = (double)a->total_out / a->wall_s;
		a->total_tput = (double)(a->total_in + a->total_out) / a->wall_s;
		if (slo && slo->set)
			a->goodput = (double)a->good / a->wall_s;
	}
	bench_stat_compute(ttft, nt, &a->ttft);
	bench_stat_compute(itl, k, &a->itl);
	bench_stat_compute(tpot, np, &a->tpot);
	bench_stat_compute(e2e, ne, &a->e2e);
	bench_stat_compute(isl, ni, &a->isl);
	bench_stat_compute(osl, no, &a->osl);
	free(ttft), free(tpot), free(e2e), free(isl), free(osl), free(itl);
}

static void table_row(struct strbuf *o, const char *name, const struct bench_stat *s, int prec)
{
	if (!s->n) {
		sb_addf(o, "%-18s %10s\n", name, "-");
		return;
	}
	sb_addf(o, "%-18s %10.*f %10.*f %10.*f %10.*f %10.*f %10.*f %10.*f\n", name,
		prec, s->mean, prec, s->min, prec, s->p50, prec, s->p90, prec, s->p95,
		prec, s->p99, prec, s->max);
}

void bench_agg_table(const struct bench_agg *a, const char *title, struct strbuf *o)
{
	sb_addf(o, "%s\n", title);
	sb_addf(o, "%-18s %10s %10s %10s %10s %10s %10s %10s\n", "", "mean", "min", "p50",
		"p90", "p95", "p99", "max");
	table_row(o, "TTFT (ms)", &a->ttft, 2);
	table_row(o, "ITL (ms)", &a->itl, 2);
	table_row(o, "TPOT (ms)", &a->tpot, 2);
	table_row(o, "E2E latency (ms)", &a->e2e, 2);
	table_row(o, "Input tokens", &a->isl, 1);
	table_row(o, "Output tokens", &a->osl, 1);
	sb_addf(o, "Requests:                %ld ok, %ld errors", a->ok, a->errors);
	for (int i = 0; i < a->nkinds; i++)
		sb_addf(o, "%s%s %ld", i ? ", " : " (", a->kind[i], a->kind_n[i]);
	sb_adds(o, a->nkinds ? ")\n" : "\n");
	sb_addf(o, "Duration:                %.3f s\n", a->wall_s);
	sb_addf(o, "Request throughput:      %.3f req/s\n", a->req_tput);
	sb_addf(o, "Output token throughput: %.2f tok/s\n", a->out_tput);
	sb_addf(o, "Total token throughput:  %.2f tok/s\n", a->total_tput);
	if (a->goodput >= 0)
		sb_addf(o, "Goodput:                 %.3f req/s (%ld of %ld requests met the SLOs)\n",
			a->goodput, a->good, a->requests);
	if (a->usage_in_mismatch)
		sb_addf(o, "Input tokens:            %ld of %ld requests: the server's prompt_tokens "
			"differ from the prompt built (chat template, BOS); figures use the "
			"server's\n", a->usage_in_mismatch, a->usage_in_checked);
	if (a->tok_out_checked)
		sb_addf(o, "Output token cross-check: %ld of %ld texts re-tokenize to the server's "
			"count\n", a->tok_out_checked - a->tok_out_mismatch, a->tok_out_checked);
	sb_addf(o, "Load generator CPU:      %.1f%% of one core\n", a->cpu_pct);
	for (int i = 0; i < a->nkinds; i++)
		if (a->kind_msg[i] && a->kind_msg[i][0])
			sb_addf(o, "First %s error: %s\n", a->kind[i], a->kind_msg[i]);
}

int bench_agg_cpu_saturated(const struct bench_agg *a)
{
	return a->wall_s >= BENCH_CPU_MIN_WALL_S && a->cpu_pct > BENCH_CPU_WARN_PCT;
}

static void json_num(struct strbuf *o, double v)
{
	if (v != v || v > 1e300 || v < -1e300)
		sb_adds(o, "null");
	else
		sb_addf(o, "%.6g", v);
}

static void json_ms(struct strbuf *o, double v)
{
	if (v < 0)
		sb_adds(o, "null");
	else
		sb_addf(o, "%.4f", v);
}

/* A statistic with no samples has no value: every figure null, not 0. */
static void json_stat(struct strbuf *o, const char *name, const struct bench_stat *s)
{
	if (!s->n) {
		sb_addf(o, "\"%s\":{\"n\":0,\"mean\":null,\"std\":null,\"min\":null,"
			"\"p50\":null,\"p90\":null,\"p95\":null,\"p99\":null,\"max\":null}", name);
		return;
	}
	sb_addf(o, "\"%s\":{\"n\":%zu,\"mean\":", name, s->n);
	json_num(o, s->mean);
	sb_adds(o, ",\"std\":");
	json_num(o, s->std);
	sb_adds(o, ",\"min\":");
	json_num(o, s->min);
	sb_adds(o, ",\"p50\":");
	json_num(o, s->p50);
	sb_adds(o, ",\"p90\":");
	json_num(o, s->p90);
	sb_adds(o, ",\"p95\":");
	json_num(o, s->p95);
	sb_adds(o, ",\"p99\":");
	json_num(o, s->p99);
	sb_adds(o, ",\"max\":");
	json_num(o, s->max);
	sb_addch(o, '}');
}

void bench_agg_json(const struct bench_agg *a, struct strbuf *o)
{
	sb_addf(o, "{\"requests\":%ld,\"completed\":%ld,\"errors\":%ld,\"errors_by_kind\":{",
		a->requests, a->ok, a->errors);
	for (int i = 0; i < a->nkinds; i++)
		sb_addf(o, "%s\"%s\":%ld", i ? "," : "", a->kind[i], a->kind_n[i]);
	sb_adds(o, "},\"duration_s\":");
	json_num(o, a->wall_s);
	sb_adds(o, ",\"request_throughput\":");
	json_num(o, a->req_tput);
	sb_adds(o, ",\"output_token_throughput\":");
	json_num(o, a->out_tput);
	sb_adds(o, ",\"total_token_throughput\":");
	json_num(o, a->total_tput);
	sb_adds(o, ",\"goodput\":");
	if (a->goodput >= 0)
		json_num(o, a->goodput);
	else
		sb_adds(o, "null");
	sb_addf(o, ",\"good_requests\":%ld,\"total_input_tokens\":%ld,\"total_output_tokens\":%ld,",
		a->good, a->total_in, a->total_out);
	json_stat(o, "ttft_ms", &a->ttft);
	sb_addch(o, ',');
	json_stat(o, "itl_ms", &a->itl);
	sb_addch(o, ',');
	json_stat(o, "tpot_ms", &a->tpot);
	sb_addch(o, ',');
	json_stat(o, "e2e_ms", &a->e2e);
	sb_addch(o, ',');
	json_stat(o, "input_tokens", &a->isl);
	sb_addch(o, ',');
	json_stat(o, "output_tokens", &a->osl);
	sb_adds(o, ",\"cpu_percent\":");
	json_num(o, a->cpu_pct);
	sb_addf(o, ",\"usage_input_mismatch\":%ld,\"tokenizer_output_checked\":%ld,"
		"\"tokenizer_output_mismatch\":%ld}", a->usage_in_mismatch, a->tok_out_checked,
		a->tok_out_mismatch);
}

static void json_long(struct strbuf *o, long v)
{
	if (v < 0)
		sb_adds(o, "null");
	else
		sb_addf(o, "%ld", v);
}

void bench_run_json(const char *label, const char *config, const struct bench_agg *agg,
		    const struct bench_run_result *res, struct strbuf *o)
{
	sb_adds(o, "{\"label\":");
	sb_add_json_str(o, label, strlen(label));
	sb_addf(o, ",\"config\":%s,\"partial\":%s,\"cancelled\":%ld,\"aggregate\":",
		config ? config : "{}", res->partial ? "true" : "false", res->cancelled);
	bench_agg_json(agg, o);
	sb_adds(o, ",\"records\":[");
	for (size_t i = 0; i < res->n; i++) {
		const struct bench_rec *r = &res->recs[i];
		sb_addf(o, "%s\n{\"index\":%ld,\"turn\":%d,\"sched_ms\":", i ? "," : "", r->index,
			r->turn);
		json_ms(o, r->sched_ms);
		sb_adds(o, ",\"start_ms\":");
		sb_addf(o, "%.4f", r->start_ms);
		sb_adds(o, ",\"ttft_ms\":");
		json_ms(o, r->ttft_ms);
		sb_adds(o, ",\"tpot_ms\":");
		json_ms(o, r->tpot_ms);
		sb_adds(o, ",\"e2e_ms\":");
		json_ms(o, r->e2e_ms);
		sb_adds(o, ",\"input_tokens\":");
		json_long(o, r->isl);
		sb_adds(o, ",\"requested_output_tokens\":");
		json_long(o, r->osl > 0 ? r->osl : -1);
		sb_adds(o, ",\"output_tokens\":");
		json_long(o, r->error[0] ? -1 : r->out_tokens);
		sb_addf(o, ",\"token_events\":%ld,\"usage_prompt_tokens\":", r->events);
		json_long(o, r->usage_in);
		sb_adds(o, ",\"usage_completion_tokens\":");
		json_long(o, r->usage_out);
		sb_adds(o, ",\"tokenizer_output_tokens\":");
		json_long(o, r->tok_out);
		sb_addf(o, ",\"status\":%ld,\"error\":", r->status);
		if (r->error[0])
			sb_add_json_str(o, r->error, strlen(r->error));
		else
			sb_adds(o, "null");
		if (r->error_msg) {
			sb_adds(o, ",\"error_msg\":");
			sb_add_json_str(o, r->error_msg, strlen(r->error_msg));
		}
		sb_adds(o, ",\"itl_ms\":[");
		for (size_t j = 0; j < r->n_itl; j++)
			sb_addf(o, "%s%.4f", j ? "," : "", r->itl[j]);
		sb_adds(o, "]}");
	}
	sb_adds(o, "]}");
}
