/*
 * run.c - the load generator (see run.h): schedules requests, streams
 * them through net/http_client, parses the SSE chunks and records timings.
 */
#include "core/bench/run.h"
#include "core/err.h"
#include "core/log.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/http_client.h"
#include "net/sse_reader.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define LOG_MOD "bench"
#define ERR_BODY_MAX 200

/* A conversation in progress (multi-turn): its history so far. */
struct conv {
	long index;
	int turn, turns;
	struct strbuf hist;	/* chat: JSON message objects joined by ','; else text */
	long hist_tok;		/* chat with a tokenizer: tokens of the history's texts */
};

struct req {
	struct runner *r;
	size_t rec;		/* index into recs (the array may move) */
	struct conv *conv;
	int warmup;
	uint64_t start_ns, first_ns, last_tok_ns, last_byte_ns;
	struct sse_reader sse;
	struct strbuf text;
	struct strbuf errbody;
	int done_seen, finish_seen, stream_error;
	int too_long;		/* an SSE line over SSE_MAX_LINE ended it */
	struct strbuf prompt;	/* the user message of this turn */
	long prompt_isl;	/* its tokens (-1 unknown) */
};

/* An open-loop arrival waiting for a free slot (concurrency cap): the
 * request it stands for and when it was due. */
struct arrival {
	long index;
	double sched_ms;
};

/* FIFO of arrivals (a ring that grows). */
struct arrivals {
	struct arrival *a;
	size_t head, n, cap;
};

static void arrivals_push(struct arrivals *q, long index, double sched_ms)
{
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		struct arrival *a = xmalloc(cap * sizeof(*a));
		for (size_t i = 0; i < q->n; i++)
			a[i] = q->a[(q->head + i) % q->cap];
		free(q->a);
		q->a = a;
		q->cap = cap;
		q->head = 0;
	}
	q->a[(q->head + q->n) % q->cap] = (struct arrival){ index, sched_ms };
	q->n++;
}

static struct arrival arrivals_pop(struct arrivals *q)
{
	struct arrival a = q->a[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	return a;
}

struct runner {
	const struct bench_run_cfg *cfg;
	struct bench_workload *wl;
	struct event_base *base;
	struct httpc *hc;
	struct event *arrival, *tick, *stop, *grace;
	int interrupted;		/* stop_fd fired: issue nothing more */
	struct bench_item item;		/* scratch: the request being started */
	struct bench_item peek;		/* scratch: the next arrival's timestamp */
	struct arrivals waiting;	/* open loop: arrivals held by the cap */
	int warmup_phase;
	long warm_sent, warm_done, warm_err;
	long sent, done, errors, in_flight;
	long next_index;		/* workload number of the next new request */
	uint64_t t0_ns, last_end_ns;
	uint64_t rng;
	double first_ts;		/* fixed schedule: first timestamp */
	struct bench_rec *recs;
	size_t n, cap;
	int failed;			/* a run-level error (message in err) */
	struct strbuf body;
	char *auth;
	const char *headers[4];
	/* progress */
	long tok_total, tok_prev;
	uint64_t tick_prev_ns;
	double cpu_prev_s;
	double due_ms;			/* open loop: when the next arrival is due */
	double cpu0;			/* CPU seconds at the start of the measured phase */
};

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double ms_since(uint64_t t0, uint64_t t)
{
	return t > t0 ? (double)(t - t0) / 1e6 : -(double)(t0 - t) / 1e6;
}

/* ---- request bodies ------------------------------------------------------ */

static void add_common(struct runner *r, struct strbuf *b, long osl)
{
	const struct bench_run_cfg *c = r->cfg;
	sb_adds(b, "{\"model\":");
	sb_add_json_str(b, c->model, strlen(c->model));
	sb_adds(b, ",\"stream\":true,\"stream_options\":{\"include_usage\":true}");
	if (osl > 0) {
		sb_addf(b, ",\"max_tokens\":%ld", osl);
		if (c->ignore_eos)
			sb_addf(b, ",\"ignore_eos\":true,\"min_tokens\":%ld", osl);
	}
	if (c->extra_body) {
		/* Members of a JSON object: strip its braces. */
		const char *s = strchr(c->extra_body, '{');
		const char *e = strrchr(c->extra_body, '}');
		if (s && e && e > s + 1) {
			struct strbuf inner = STRBUF_INIT;
			sb_add(&inner, s + 1, (size_t)(e - s - 1));
			size_t k = 0;
			while (k < inner.len && (inner.buf[k] == ' ' || inner.buf[k] == '\n'))
				k++;
			if (k < inner.len) {
				sb_addch(b, ',');
				sb_add(b, inner.buf + k, inner.len - k);
			}
			sb_release(&inner);
		}
	}
}

static void build_body(struct runner *r, struct req *q, long osl)
{
	struct strbuf *b = &r->body;
	sb_reset(b);
	add_common(r, b, osl);
	if (r->cfg->chat) {
		sb_adds(b, ",\"messages\":[");
		if (q->conv && q->conv->hist.len) {
			sb_add(b, q->conv->hist.buf, q->conv->hist.len);
			sb_addch(b, ',');
		}
		sb_adds(b, "{\"role\":\"user\",\"content\":");
		sb_add_json_str(b, q->prompt.buf, q->prompt.len);
		sb_adds(b, "}]}");
	} else {
		struct strbuf p = STRBUF_INIT;
		if (q->conv)
			sb_add(&p, q->conv->hist.buf, q->conv->hist.len);
		sb_add(&p, q->prompt.buf, q->prompt.len);
		sb_adds(b, ",\"prompt\":");
		sb_add_json_str(b, p.buf, p.len);
		sb_addch(b, '}');
		sb_release(&p);
	}
}

/* ---- records -------------------------------------------------------------- */

static size_t new_rec(struct runner *r)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 256;
		r->recs = xrealloc(r->recs, r->cap * sizeof(*r->recs));
	}
	struct bench_rec *rec = &r->recs[r->n];
	memset(rec, 0, sizeof(*rec));
	rec->ttft_ms = rec->e2e_ms = rec->tpot_ms = -1;
	rec->usage_in = rec->usage_out = rec->tok_out = -1;
	rec->sched_ms = -1;
	return r->n++;
}

static void rec_add_itl(struct bench_rec *rec, double ms, size_t *cap)
{
	if (rec->n_itl == *cap) {
		*cap = *cap ? *cap * 2 : 64;
		rec->itl = xrealloc(rec->itl, *cap * sizeof(*rec->itl));
	}
	rec->itl[rec->n_itl++] = ms;
}

/* ---- streaming ------------------------------------------------------------- */

static struct bench_rec *req_rec(struct req *q)
{
	return q->warmup ? NULL : &q->r->recs[q->rec];
}

struct ev_ctx {
	struct req *q;
	uint64_t t;
	size_t *itl_cap;
};

static const char *content_of(const cJSON *choice, int chat)
{
	const cJSON *v;
	if (chat) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(choice, "delta");
		v = cJSON_GetObjectItemCaseSensitive(d, "content");
		if (!cJSON_IsString(v) || !v->valuestring[0])
			v = cJSON_GetObjectItemCaseSensitive(d, "reasoning_content");
		if (!cJSON_IsString(v) || !v->valuestring[0])
			v = cJSON_GetObjectItemCaseSensitive(d, "reasoning");
	} else {
		v = cJSON_GetObjectItemCaseSensitive(choice, "text");
	}
	return cJSON_IsString(v) && v->valuestring[0] ? v->valuestring : NULL;
}

static int on_event(void *arg, const char *data, size_t len)
{
	struct ev_ctx *c = arg;
	struct req *q = c->q;
	struct bench_rec *rec = req_rec(q);

	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		q->done_seen = 1;
		return 0;
	}
	cJSON *o = cJSON_ParseWithLength(data, len);
	if (!o)
		return 0;
	if (cJSON_GetObjectItemCaseSensitive(o, "error")) {
		q->stream_error = 1;
		if (!q->errbody.len)
			sb_add(&q->errbody, data, len < ERR_BODY_MAX ? len : ERR_BODY_MAX);
	}
	const cJSON *choices = cJSON_GetObjectItemCaseSensitive(o, "choices");
	const cJSON *ch = cJSON_GetArrayItem(choices, 0);
	if (ch) {
		const char *s = content_of(ch, q->r->cfg->chat);
		if (s) {
			if (!q->first_ns) {
				q->first_ns = c->t;
			} else if (rec) {
				rec_add_itl(rec, (double)(c->t - q->last_tok_ns) / 1e6, c->itl_cap);
			}
			q->last_tok_ns = c->t;
			if (rec)
				rec->events++;
			q->r->tok_total++;
			sb_adds(&q->text, s);
		}
		const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
		if (fr && !cJSON_IsNull(fr))
			q->finish_seen = 1;
	}
	const cJSON *u = cJSON_GetObjectItemCaseSensitive(o, "usage");
	if (rec && cJSON_IsObject(u)) {
		const cJSON *pi = cJSON_GetObjectItemCaseSensitive(u, "prompt_tokens");
		const cJSON *co = cJSON_GetObjectItemCaseSensitive(u, "completion_tokens");
		if (cJSON_IsNumber(pi))
			rec->usage_in = (long)pi->valuedouble;
		if (cJSON_IsNumber(co))
			rec->usage_out = (long)co->valuedouble;
	}
	cJSON_Delete(o);
	return 0;
}

/* Capacity of each record's itl array lives beside the request. */
struct req_full {
	struct req q;
	size_t itl_cap;
};

static int on_data(void *arg, const char *data, size_t len, uint64_t t)
{
	struct req_full *f = arg;
	struct req *q = &f->q;
	struct ev_ctx c = { q, t, &f->itl_cap };

	q->last_byte_ns = t;
	if (q->errbody.len < ERR_BODY_MAX && !q->sse.events && !q->first_ns) {
		size_t room = ERR_BODY_MAX - q->errbody.len;
		sb_add(&q->errbody, data, len < room ? len : room);
	}
	if (sse_feed(&q->sse, data, len, on_event, &c) == SSE_ERR_TOO_LONG) {
		/* A line without end (or a giant event): end this request
		 * rather than buffer without bound. */
		q->stream_error = 1;
		q->too_long = 1;
		return 1;
	}
	return 0;
}

/* A 2xx reply that is no event stream: an OpenAI error object
 * ({"error": ...}) is the server's refusal, anything else (say a
 * non-streaming completion) a reply of the wrong kind. */
static const char *non_stream_kind(const struct req *q)
{
	const char *s = q->errbody.buf;
	size_t n = q->errbody.len, i = 0;
	while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n'))
		i++;
	if (i == n || s[i] != '{')
		return "not_sse";
	cJSON *o = cJSON_ParseWithLength(s + i, n - i);
	int err = o ? cJSON_GetObjectItemCaseSensitive(o, "error") != NULL
		    : memmem(s + i, n - i, "\"error\"", 7) != NULL;	/* cut at ERR_BODY_MAX */
	cJSON_Delete(o);
	return err ? "api_error" : "not_sse";
}

static void start_next(struct runner *r);
static void maybe_finish(struct runner *r);
static int start_req(struct runner *r, struct conv *conv, int warmup, long index,
		     double sched_ms);

static void conv_free(struct conv *c)
{
	if (!c)
		return;
	sb_release(&c->hist);
	free(c);
}

/* Append this turn (user message and the answer) to the history. */
static long count_tokens(const struct runner *r, const char *s, size_t len)
{
	struct tok_ids ids = TOK_IDS_INIT;
	long n = -1;
	if (r->cfg->tok && tok_encode(r->cfg->tok, s, len, 0, &ids) == 0)
		n = (long)ids.n;
	tok_ids_release(&ids);
	return n;
}

static void conv_advance(struct runner *r, struct conv *cv, struct req *q)
{
	if (r->cfg->tok && r->cfg->chat && cv->hist_tok >= 0) {
		long a = count_tokens(r, q->text.buf, q->text.len);
		cv->hist_tok = a < 0 || q->prompt_isl < 0 ? -1 : cv->hist_tok + q->prompt_isl + a;
	}
	if (r->cfg->chat) {
		if (cv->hist.len)
			sb_addch(&cv->hist, ',');
		sb_adds(&cv->hist, "{\"role\":\"user\",\"content\":");
		sb_add_json_str(&cv->hist, q->prompt.buf, q->prompt.len);
		sb_adds(&cv->hist, "},{\"role\":\"assistant\",\"content\":");
		sb_add_json_str(&cv->hist, q->text.buf, q->text.len);
		sb_addch(&cv->hist, '}');
	} else {
		sb_add(&cv->hist, q->prompt.buf, q->prompt.len);
		sb_add(&cv->hist, q->text.buf, q->text.len);
	}
	cv->turn++;
}

static void on_done(void *arg, const struct httpc_done *d)
{
	struct req_full *f = arg;
	struct req *q = &f->q;
	struct runner *r = q->r;
	struct bench_rec *rec = req_rec(q);
	const char *kind = "";

	if (q->too_long)
		kind = "stream_error";
	else if (d->result == HTTPC_CONNECT)
		kind = "connect";
	else if (d->result == HTTPC_TIMEOUT)
		kind = "timeout";
	else if (d->result == HTTPC_DISCONNECT)
		kind = "disconnect";
	else if (d->result == HTTPC_ABORTED)
		kind = r->interrupted ? "cancelled" : "aborted";
	else if (d->result != HTTPC_OK)
		kind = "other";
	else if (d->status < 200 || d->status > 299)
		kind = NULL;	/* http_NNN below */
	else if (q->stream_error)
		kind = "stream_error";
	else if (!q->done_seen && !q->finish_seen && !q->sse.events && !q->first_ns &&
		 q->errbody.len)
		kind = non_stream_kind(q);
	else if (!q->done_seen && !q->finish_seen)
		kind = "disconnect";
	else if (!q->first_ns)
		kind = "empty";

	uint64_t end = q->last_byte_ns ? q->last_byte_ns : d->t_ns;
	/* The conversation goes on if this turn succeeded. */
	struct conv *cv = q->conv;
	if (cv && kind && !kind[0] && cv->turn + 1 < cv->turns && !r->failed &&
	    !r->interrupted) {
		conv_advance(r, cv, q);
	} else {
		conv_free(cv);
		cv = NULL;
	}
	if (rec) {
		rec->status = d->status;
		if (kind)
			snprintf(rec->error, sizeof(rec->error), "%s", kind);
		else
			snprintf(rec->error, sizeof(rec->error), "http_%ld", d->status);
		if (rec->error[0]) {
			struct strbuf m = STRBUF_INIT;
			if (q->too_long)
				sb_addf(&m, "an SSE line or event longer than %u bytes",
					SSE_MAX_LINE);
			else if (d->msg && d->msg[0])
				sb_adds(&m, d->msg);
			/* The body's start says why a request failed, unless
			 * tokens had arrived (then it is just stream data). */
			if (q->errbody.len && !q->too_long &&
			    !(q->first_ns && kind && !strcmp(kind, "disconnect"))) {
				if (m.len)
					sb_adds(&m, ": ");
				for (size_t i = 0; i < q->errbody.len; i++)
					sb_addch(&m, (unsigned char)q->errbody.buf[i] < 32 ? ' '
											   : q->errbody.buf[i]);
			}
			rec->error_msg = m.len ? sb_detach(&m, NULL) : NULL;
			sb_release(&m);
			r->errors++;
		}
		if (q->first_ns)
			rec->ttft_ms = (double)(q->first_ns - q->start_ns) / 1e6;
		rec->e2e_ms = (double)(end - q->start_ns) / 1e6;
		rec->out_tokens = rec->usage_out >= 0 ? rec->usage_out : rec->events;
		if (q->first_ns && rec->out_tokens > 1)
			rec->tpot_ms = (double)(q->last_tok_ns - q->first_ns) / 1e6 /
				       (double)(rec->out_tokens - 1);
		rec->text = sb_detach(&q->text, NULL);
		r->done++;
		if (end > r->last_end_ns)
			r->last_end_ns = end;
	} else {
		r->warm_done++;
		if (kind == NULL || kind[0])
			r->warm_err++;
	}
	r->in_flight--;

	sse_reader_release(&q->sse);
	sb_release(&q->text);
	sb_release(&q->errbody);
	sb_release(&q->prompt);
	int warm = q->warmup;
	free(f);

	if (cv) {
		/* Next turn at once (it is not a new arrival). */
		if (start_req(r, cv, warm, cv->index, -1) < 0)
			r->failed = 1;
	}
	start_next(r);
	maybe_finish(r);
}

/* Input tokens of a later turn of a conversation (-1: unknown). */
static long turn_isl(const struct runner *r, const struct req *q, long prompt_isl)
{
	const struct conv *cv = q->conv;
	if (!r->cfg->tok || !cv)
		return -1;
	if (r->cfg->chat)
		return cv->hist_tok < 0 || prompt_isl < 0 ? -1 : cv->hist_tok + prompt_isl;
	struct strbuf p = STRBUF_INIT;
	sb_add(&p, cv->hist.buf, cv->hist.len);
	sb_add(&p, q->prompt.buf, q->prompt.len);
	long n = count_tokens(r, p.buf, p.len);
	sb_release(&p);
	return n;
}

/* Send one request: request index of the workload (a new conversation,
 * conv NULL), warm-up request number index, or the next turn of conv.
 * sched_ms: when it was due (-1: not an arrival). */
static int start_req(struct runner *r, struct conv *conv, int warmup, long index,
		     double sched_ms)
{
	const struct bench_run_cfg *c = r->cfg;
	struct req_full *f = xcalloc(1, sizeof(*f));
	struct req *q = &f->q;
	int rc;

	q->r = r;
	q->warmup = warmup;
	sse_reader_init(&q->sse);
	sb_init(&q->text, 0);
	sb_init(&q->errbody, 0);
	sb_init(&q->prompt, 0);

	struct bench_item *it = &r->item;
	int turn = conv ? conv->turn : 0;
	if (warmup && !conv)
		rc = bench_workload_warmup_item(r->wl, index, it);
	else
		rc = bench_workload_item(r->wl, index, turn, it);
	if (rc < 0)
		goto fail;
	sb_add(&q->prompt, it->prompt.buf, it->prompt.len);
	q->prompt_isl = it->isl;
	if (!conv && it->turns > 1) {
		conv = xcalloc(1, sizeof(*conv));
		conv->index = index;
		conv->turns = it->turns;
		sb_init(&conv->hist, 0);
	}
	q->conv = conv;
	build_body(r, q, it->osl);
	if (!warmup) {
		q->rec = new_rec(r);
		struct bench_rec *rec = &r->recs[q->rec];
		rec->index = index;
		rec->turn = turn;
		rec->isl = it->isl;
		rec->osl = it->osl;
		rec->sched_ms = sched_ms;
		/* Later turns carry the history: with a tokenizer count the
		 * conversation's texts (chat: every message's content, as the
		 * first turn counts its message; completions: the whole
		 * prompt), else unknown. */
		if (turn > 0)
			rec->isl = turn_isl(r, q, it->isl);
	}

	struct httpc_req hr = {
		.url = c->url,
		.body = r->body.buf,
		.body_len = r->body.len,
		.headers = r->headers,
		.timeout_ms = c->timeout_ms,
		.on_data = on_data,
		.on_done = on_done,
		.arg = f,
	};
	q->start_ns = mono_ns();
	if (!warmup) {
		struct bench_rec *rec = &r->recs[q->rec];
		rec->start_ms = ms_since(r->t0_ns, q->start_ns);
		r->sent++;
	} else {
		r->warm_sent++;
	}
	r->in_flight++;
	rc = httpc_start(r->hc, &hr);
	if (rc < 0) {
		r->in_flight--;
		goto fail;
	}
	return 0;
fail:
	conv_free(q->conv);
	sse_reader_release(&q->sse);
	sb_release(&q->text);
	sb_release(&q->errbody);
	sb_release(&q->prompt);
	free(f);
	r->failed = 1;
	event_base_loopbreak(r->base);
	return rc;
}

/* ---- scheduling ------------------------------------------------------------ */

static int may_issue(struct runner *r)
{
	const struct bench_run_cfg *c = r->cfg;
	if (r->failed || r->interrupted)
		return 0;
	if (r->warmup_phase)
		return r->warm_sent < c->warmup;
	if (c->num_requests > 0 && r->sent + (long)r->waiting.n >= c->num_requests)
		return 0;
	if (c->duration_s > 0 && ms_since(r->t0_ns, mono_ns()) >= c->duration_s * 1000)
		return 0;
	return 1;
}

static int open_loop(const struct runner *r)
{
	return !r->warmup_phase && (r->cfg->rate > 0 || r->cfg->fixed_schedule);
}

/* Closed loop: fill free slots.  Open loop: start waiting arrivals, the
 * oldest first, each as the request it arrived as. */
static void start_next(struct runner *r)
{
	const struct bench_run_cfg *c = r->cfg;
	long cap = c->concurrency;

	if (open_loop(r)) {
		while (r->waiting.n > 0 && (cap <= 0 || r->in_flight < cap) && !r->failed) {
			struct arrival a = arrivals_pop(&r->waiting);
			if (start_req(r, NULL, 0, a.index, a.sched_ms) < 0)
				return;
		}
		return;
	}
	if (cap < 1)
		cap = 1;
	while (r->in_flight < cap && may_issue(r)) {
		long index = r->warmup_phase ? r->warm_sent : r->next_index++;
		if (start_req(r, NULL, r->warmup_phase, index, -1) < 0)
			return;
	}
}

static void begin_measured(struct runner *r);

static void maybe_finish(struct runner *r)
{
	if (r->in_flight > 0)
		return;
	if (r->failed || r->interrupted) {
		event_base_loopbreak(r->base);
		return;
	}
	if (r->warmup_phase) {
		if (r->warm_sent >= r->cfg->warmup)
			begin_measured(r);
		return;
	}
	if (r->waiting.n > 0)
		return;
	if (open_loop(r) && may_issue(r) && evtimer_pending(r->arrival, NULL))
		return;
	if (!open_loop(r) && may_issue(r))
		return;
	event_base_loopbreak(r->base);
}

static void arm_arrival(struct runner *r, double at_ms)
{
	/* libevent measures the timeout from the time it cached when this
	 * loop iteration began; refresh it so the work done since does not
	 * make the timer fire early. */
	event_base_update_cache_time(r->base);
	double now = ms_since(r->t0_ns, mono_ns());
	double wait = at_ms - now;
	if (wait < 0)
		wait = 0;
	struct timeval tv = { (time_t)(wait / 1000), (suseconds_t)(fmod(wait, 1000) * 1000) };
	evtimer_add(r->arrival, &tv);
}

static double next_gap_ms(struct runner *r)
{
	double mean = 1000.0 / r->cfg->rate;
	if (!r->cfg->poisson)
		return mean;
	double u = bench_rand01(&r->rng);
	return -log(1 - u) * mean;
}

static void on_arrival(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	const struct bench_run_cfg *c = r->cfg;
	(void)fd, (void)what;

	if (!may_issue(r)) {
		maybe_finish(r);
		return;
	}
	double sched = r->due_ms;
	if (ms_since(r->t0_ns, mono_ns()) < sched - 0.01) {
		arm_arrival(r, sched);	/* woken early: never send ahead of time */
		return;
	}
	/* This arrival is request next_index, due at sched; it waits in
	 * line when the cap is reached (start_next starts it in order). */
	arrivals_push(&r->waiting, r->next_index++, sched);
	start_next(r);
	if (r->failed)
		return;
	if (!may_issue(r)) {
		maybe_finish(r);
		return;
	}
	if (c->fixed_schedule) {
		long index = r->next_index;
		if (c->num_requests <= 0 && index >= bench_workload_count(r->wl)) {
			maybe_finish(r);
			return;
		}
		if (bench_workload_item(r->wl, index, 0, &r->peek) < 0) {
			r->failed = 1;
			event_base_loopbreak(r->base);
			return;
		}
		double ts = r->peek.ts_ms >= 0 ? r->peek.ts_ms : r->first_ts;
		r->due_ms = (ts - r->first_ts) / (c->speedup > 0 ? c->speedup : 1);
	} else {
		r->due_ms += next_gap_ms(r);
	}
	arm_arrival(r, r->due_ms);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	(void)fd, (void)what;
	uint64_t now = mono_ns();
	double dt = (double)(now - r->tick_prev_ns) / 1e9;
	double cpu = cpu_seconds();
	struct bench_progress p = {
		.elapsed_s = r->warmup_phase ? 0 : ms_since(r->t0_ns, now) / 1000,
		.sent = r->warmup_phase ? r->warm_sent : r->sent,
		.done = r->warmup_phase ? r->warm_done : r->done,
		.errors = r->warmup_phase ? r->warm_err : r->errors,
		.in_flight = r->in_flight,
		.out_tok_s = dt > 0 ? (double)(r->tok_total - r->tok_prev) / dt : 0,
		.cpu_pct = dt > 0 ? (cpu - r->cpu_prev_s) / dt * 100 : 0,
	};
	r->tok_prev = r->tok_total;
	r->tick_prev_ns = now;
	r->cpu_prev_s = cpu;
	r->cfg->progress(r->cfg->progress_arg, &p);
}

/* The grace for the requests in flight after an interruption is over:
 * end the loop; bench_run cancels what is left. */
static void on_grace(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	(void)fd, (void)what;
	event_base_loopbreak(r->base);
}

/* stop_fd became readable (Ctrl-C): issue nothing more, let the requests
 * in flight finish within the grace, then stop. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	struct runner *r = arg;
	const struct bench_run_cfg *c = r->cfg;
	(void)fd, (void)what;

	event_del(r->stop);	/* the byte stays: later runs see it too */
	if (r->interrupted)
		return;
	r->interrupted = 1;
	r->waiting.n = 0;
	evtimer_del(r->arrival);
	if (r->in_flight > 0 && c->grace_s > 0) {
		if (c->progress)
			fprintf(stderr, "\ndyn bench: interrupted: waiting up to %gs for %ld requests "
				"in flight (interrupt again to quit at once)\n", c->grace_s, r->in_flight);
		struct timeval tv = { (time_t)c->grace_s,
				      (suseconds_t)(fmod(c->grace_s, 1) * 1e6) };
		evtimer_add(r->grace, &tv);
		return;
	}
	event_base_loopbreak(r->base);
}

/* Drop the records of requests cancelled by an interruption: they are
 * neither results nor server errors. */
static size_t drop_cancelled(struct bench_rec *recs, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(recs[i].error, "cancelled")) {
			free(recs[i].itl);
			free(recs[i].error_msg);
			free(recs[i].text);
			continue;
		}
		recs[k++] = recs[i];
	}
	return k;
}

static void begin_measured(struct runner *r)
{
	const struct bench_run_cfg *c = r->cfg;

	r->warmup_phase = 0;
	r->t0_ns = mono_ns();
	r->cpu0 = cpu_seconds();
	if (c->fixed_schedule || c->rate > 0) {
		if (c->fixed_schedule) {
			if (bench_workload_item(r->wl, r->next_index, 0, &r->peek) < 0) {
				r->failed = 1;
				event_base_loopbreak(r->base);
				return;
			}
			r->first_ts = r->peek.ts_ms >= 0 ? r->peek.ts_ms : 0;
		}
		r->due_ms = 0;
		arm_arrival(r, 0);
	} else {
		start_next(r);
	}
	maybe_finish(r);
}

int bench_run(const struct bench_run_cfg *cfg, struct bench_workload *wl,
	      struct bench_run_result *out)
{
	struct runner r;
	int rc;

	memset(out, 0, sizeof(*out));
	if (cfg->num_requests <= 0 && cfg->duration_s <= 0 &&
	    !(cfg->fixed_schedule && bench_workload_count(wl) > 0))
		return err_set(-EINVAL, "a run needs a number of requests or a duration");
	memset(&r, 0, sizeof(r));
	r.cfg = cfg;
	r.wl = wl;
	r.rng = cfg->seed ^ 0x5eed;
	r.next_index = cfg->first_index;
	bench_item_init(&r.item);
	bench_item_init(&r.peek);
	sb_init(&r.body, 4096);
	/* Precise timers: by default libevent reads CLOCK_MONOTONIC_COARSE,
	 * whose few-millisecond ticks would skew arrival schedules. */
	struct event_config *ec = event_config_new();
	if (ec) {
		event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
		r.base = event_base_new_with_config(ec);
		event_config_free(ec);
	}
	if (!r.base)
		return err_set(-ENOMEM, "event_base_new failed");
	long conns = cfg->concurrency > 0 ? cfg->concurrency : 0;
	rc = httpc_new(r.base, conns, &r.hc);
	if (rc < 0) {
		event_base_free(r.base);
		return rc;
	}
	size_t nh = 0;
	r.headers[nh++] = "Content-Type: application/json";
	r.headers[nh++] = "Accept: text/event-stream";
	if (cfg->api_key && cfg->api_key[0]) {
		size_t len = strlen(cfg->api_key) + 32;
		r.auth = xmalloc(len);
		snprintf(r.auth, len, "Authorization: Bearer %s", cfg->api_key);
		r.headers[nh++] = r.auth;
	}
	r.headers[nh] = NULL;
	r.arrival = evtimer_new(r.base, on_arrival, &r);
	r.grace = evtimer_new(r.base, on_grace, &r);
	if (cfg->stop_fd > 0) {
		r.stop = event_new(r.base, cfg->stop_fd, EV_READ | EV_PERSIST, on_stop, &r);
		event_add(r.stop, NULL);
	}
	if (cfg->progress && cfg->progress_s > 0) {
		r.tick = event_new(r.base, -1, EV_PERSIST, on_tick, &r);
		struct timeval tv = { (time_t)cfg->progress_s,
				      (suseconds_t)(fmod(cfg->progress_s, 1) * 1e6) };
		r.tick_prev_ns = mono_ns();
		r.cpu_prev_s = cpu_seconds();
		event_add(r.tick, &tv);
	}

	r.t0_ns = mono_ns();
	if (cfg->warmup > 0) {
		r.warmup_phase = 1;
		start_next(&r);
	} else {
		begin_measured(&r);
	}
	if (!r.failed)
		event_base_dispatch(r.base);

	double cpu = cpu_seconds() - r.cpu0;
	uint64_t end = r.last_end_ns > r.t0_ns ? r.last_end_ns : mono_ns();
	out->wall_s = (double)(end - r.t0_ns) / 1e9;
	out->cpu_pct = out->wall_s > 0 ? cpu / out->wall_s * 100 : 0;
	out->warmup_done = r.warm_done;
	out->warmup_errors = r.warm_err;
	httpc_free(r.hc);	/* aborts what is left (after a failure or interruption) */
	out->recs = r.recs;
	out->n = r.n;
	if (r.interrupted) {
		out->partial = 1;
		out->n = drop_cancelled(r.recs, r.n);
		out->cancelled = (long)(r.n - out->n);
	}
	if (r.tick)
		event_free(r.tick);
	if (r.stop)
		event_free(r.stop);
	event_free(r.grace);
	event_free(r.arrival);
	event_base_free(r.base);
	bench_item_release(&r.item);
	bench_item_release(&r.peek);
	free(r.waiting.a);
	sb_release(&r.body);
	free(r.auth);
	if (r.failed) {
		LOG_WARN(LOG_MOD, "run stopped: %s", err_msg());
		return -EIO;
	}
	return 0;
}

void bench_run_free(struct bench_run_result *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->recs[i].itl);
		free(r->recs[i].error_msg);
		free(r->recs[i].text);
	}
	free(r->recs);
	memset(r, 0, sizeof(*r));
}

/* ---- the model list ---------------------------------------------------------- */

#define MODELS_MAX_BYTES (16u << 20)

struct fetch {
	struct event_base *base;
	struct strbuf body;
	struct httpc_done d;
	char msg[256];
};

static int fetch_data(void *arg, const char *data, size_t len, uint64_t t)
{
	struct fetch *f = arg;
	(void)t;
	sb_add(&f->body, data, len);
	return f->body.len > MODELS_MAX_BYTES;
}

static void fetch_done(void *arg, const struct httpc_done *d)
{
	struct fetch *f = arg;
	f->d = *d;
	snprintf(f->msg, sizeof(f->msg), "%s", d->msg ? d->msg : "");
	f->d.msg = f->msg;
	event_base_loopbreak(f->base);
}

int bench_first_model(const char *models_url, const char *api_key, long timeout_ms,
		      char **out)
{
	struct fetch f;
	struct httpc *hc;
	char *auth = NULL;
	const char *headers[3] = { "Accept: application/json", NULL, NULL };
	int rc;

	*out = NULL;
	memset(&f, 0, sizeof(f));
	sb_init(&f.body, 1024);
	f.d.result = HTTPC_OTHER;
	f.base = event_base_new();
	if (!f.base)
		return err_set(-ENOMEM, "event_base_new failed");
	rc = httpc_new(f.base, 1, &hc);
	if (rc < 0) {
		event_base_free(f.base);
		sb_release(&f.body);
		return rc;
	}
	if (api_key && api_key[0]) {
		size_t len = strlen(api_key) + 32;
		auth = xmalloc(len);
		snprintf(auth, len, "Authorization: Bearer %s", api_key);
		headers[1] = auth;
	}
	struct httpc_req hr = {
		.url = models_url, .headers = headers, .timeout_ms = timeout_ms,
		.on_data = fetch_data, .on_done = fetch_done, .arg = &f,
	};
	rc = httpc_start(hc, &hr);
	if (rc == 0)
		event_base_dispatch(f.base);
	httpc_free(hc);
	event_base_free(f.base);
	free(auth);
	if (rc < 0) {
		sb_release(&f.body);
		return rc;
	}
	if (f.d.result != HTTPC_OK) {
		rc = err_set(-EIO, "GET %s: %s%s%s", models_url, httpc_result_name(f.d.result),
			     f.msg[0] ? ": " : "", f.msg);
	} else if (f.d.status != 200) {
		rc = err_set(-EIO, "GET %s: HTTP %ld", models_url, f.d.status);
	} else {
		cJSON *o = cJSON_ParseWithLength(f.body.buf, f.body.len);
		const cJSON *data = cJSON_GetObjectItemCaseSensitive(o, "data");
		const cJSON *id = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id");
		if (!o || !cJSON_IsArray(data))
			rc = err_set(-EIO, "GET %s: not an OpenAI model list", models_url);
		else if (!cJSON_IsString(id) || !id->valuestring[0])
			rc = err_set(-ENOENT, "GET %s: the server lists no models", models_url);
		else
			*out = xstrdup(id->valuestring);
		cJSON_Delete(o);
	}
	sb_release(&f.body);
	return rc;
}
