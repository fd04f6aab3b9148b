/*
 * handler.c - the frontend's HTTP routes and the life of one generation
 * request (see frontend.h).
 *
 * A request: parse and validate (request.c), find the model, then for
 * each prompt (a completions batch has several, answered one after the
 * other): render the chat template, tokenize, check the context length,
 * and run its n samples (group_start()), each a choice with its own
 * state machine (call_sm.h) that leads it through routing, the remote
 * step and the worker's stream; this file performs the actions they
 * return.  Worker frames carry token ids; each goes through the choice's
 * incremental detokenizer into its `pending`, stop_scan() says how much
 * of `pending` may be sent, the rest waits for more text; logprobs.h
 * lines logprobs up with the text and oai.h writes OpenAI's shapes.  A
 * chat request whose model has output parsers (models.c,
 * core/parse/parse.h) sends that text through its parser: content,
 * reasoning and whole tool calls come out, and what the parser holds back
 * is decided when the choice ends.  The Responses and Messages APIs
 * (apis.h) come as chat requests and leave in their own shapes: emit_*
 * hand them the text, reasoning and calls, call_finish() their end.
 * A streamed response starts with the first worker frame (so
 * that a worker that fails before producing anything can be retried on
 * another one, or answered with a real HTTP status).  The client going
 * away, or one choice failing, cancels every worker call and frees
 * everything at once.
 *
 * Migration (call_sm.h): when a worker's stream breaks, the next worker
 * gets the prompt followed by the ids the choice got so far, max_tokens
 * and min_tokens less their count, and no remote step; everything the
 * client sees (the detokenizer, the stop-string scan, the logprobs, the
 * usage, the id) belongs to the choice and goes on as if nothing happened.
 *
 * Disaggregated (docs/disaggregation.md): when the plan names a prefill
 * worker, the remote step sends it the request with
 * "disagg":{"prefill":true} and keeps the kv_source it answers with; the
 * decode worker then gets the request with "disagg":{"kv_source":..}.  A
 * remote step that fails, times out or brings no kv_source is counted,
 * and the decode worker gets the plain request (it prefills itself).
 */
#include "core/frontend/internal.h"
#include "core/frontend/apis.h"
#include "core/frontend/call_sm.h"
#include "core/frontend/logprobs.h"
#include "core/frontend/oai.h"
#include "core/frontend/stop.h"
#include "core/err.h"
#include "core/log.h"
#include "core/parse/parse.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/http.h"
#include "net/rpc.h"
#include "net/sysport.h"

#include <event2/event.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#define LOG_MOD "frontend"
#define FE_COMPLETION_MAX_TOKENS 16	/* /v1/completions without max_tokens */

struct fe_call;

/* One choice: sample i of the call's current prompt, with its own state
 * machine, worker call and output. */
struct fe_sample {
	struct fe_call *c;
	int index;			/* its choice index: prompt * n + i */
	int i;				/* its sample of the prompt (seed + i) */
	int ended;
	struct fe_sm sm;		/* its step, worker, and output ids */
	struct strbuf req_body;		/* the generate request sent to the worker */
	struct tok_stream *detok;
	struct strbuf pending;		/* decoded, not yet sent */
	struct strbuf text;		/* its whole text (not streamed) */
	struct fe_lp lp;
	/* chat output parsed (core/parse/parse.h; NULL: not): its events,
	 * and (not streamed) the reasoning and the tool calls so far */
	struct parser *parser;
	struct parse_evs evs;
	struct strbuf reasoning, calls;
	int ncalls;
	long cached_tokens;		/* prompt tokens the worker had cached */
	/* prompt logprobs (gen.prompt_logprobs >= 0): those of prompt tokens
	 * 1.. so far; plps_done once all came (an echo's entries are made) */
	struct gen_logprob *plps;
	size_t n_plps, cap_plps;
	int plps_done;
	int stop_hit;
	const char *stop_str;		/* the stop string hit (in p.stops) */
	char finish[16];
	/* migrated after tokens: what the next worker gets as its prompt
	 * (the prompt, then the ids so far; NULL before) and its block
	 * hashes */
	int32_t *resume_ids;
	size_t n_resume;
	uint64_t *hashes;
	size_t nhashes;
	enum fe_mig_cause mig_cause;	/* why the last stream broke */
	int call_tokens;		/* the current worker call sent ids */
	uint64_t t_frame;		/* when it last sent a frame (ms) */
	uint64_t t_last;		/* its last token (ns) */
	struct event *progress_timer;	/* watches its progress and health */
	/* the worker */
	struct fe_route route;
	char *addr, *path;		/* the chosen worker's */
	struct rpc_stream *st;
	/* the remote prefill (REMOTE_STEP) */
	char *pre_addr, *pre_path;	/* the prefill worker's */
	struct rpc_stream *pst;
	struct event *pre_timer;
	char *kv_source;		/* its answer, for the decode worker */
	struct strbuf choice;		/* not streamed: its choice object */
};

/* One generation request: its HTTP exchange, its parameters, its current
 * prompt and that prompt's samples. */
struct fe_call {
	/* the exchange */
	struct frontend *f;
	struct http_req *http;		/* NULL once answered */
	const char *endpoint;		/* for the status counts */
	struct fe_stats *stats;
	uint64_t t0;
	int streaming;			/* the event stream began */
	enum fe_api api;		/* the API it came by (apis.h) */
	int count_only;			/* /v1/messages/count_tokens: the prompt's length */
	struct fe_alt alt;		/* the Responses / Messages API's answer */
	char *echo;			/* the request fields the Responses API repeats */
	/* the request */
	struct fe_params p;
	struct fe_model *m;
	char id[48];
	struct oai_head head;
	/* the current prompt (its tokens in p.gen) */
	size_t prompt;
	struct strbuf echo_text;	/* an echo's text: the prompt */
	size_t echo_chars;
	uint64_t *hashes;		/* its block hashes, for routers */
	size_t nhashes;
	int tool, rsn, opens_reasoning;	/* its output's parser (tool || rsn: one) */
	int reasoning_on;		/* it reads reasoning: the message has the fields */
	uint64_t sample_worker;		/* where its first sample went */
	/* its samples: p.n, n_started of them started, n_ended ended */
	struct fe_sample *s;
	int n_started, n_ended;
	struct event *kick;		/* on_kick(): the call's next step */
	/* the answer */
	struct oai_usage usage;		/* totals over the choices */
	struct strbuf choices;		/* not streamed: the choices so far */
	struct strbuf plps_json;	/* chat: the response's prompt_logprobs */
	struct strbuf out;
	/* the error a FAIL action answers with */
	int err_status;
	char err_msg[512];
	const char *err_param;		/* in a stream: the error's param */
};

/* ---- errors ------------------------------------------------------------- */


/* An error in the shape of the API the request came by. */
static void reply_error(struct http_req *r, enum fe_api api, int status, const char *msg,
			const char *param, const char *extra_headers)
{
	if (api != FE_API_MESSAGES) {
		http_reply_error(r, status, msg, param, NULL, extra_headers);
		return;
	}
	struct strbuf b = STRBUF_INIT;
	fe_alt_error(api, status, msg, param, 0, &b);
	http_reply(r, status, "application/json", b.buf, b.len, extra_headers);
	sb_release(&b);
}

/* 404 for a model name no worker serves, as OpenAI answers it. */
static void reply_model_not_found(struct http_req *r, enum fe_api api, const char *name)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "The model '%.400s' does not exist", name);
	if (api == FE_API_MESSAGES)
		reply_error(r, api, 404, msg, "model", NULL);
	else
		http_reply_error(r, 404, msg, "model", "model_not_found", NULL);
}

/* ---- the call ------------------------------------------------------------ */

/* A zeroed call whose strbufs hold the empty string (never NULL: they are
 * printed with %s). */
static struct fe_call *call_new(void)
{
	struct fe_call *c = xcalloc(1, sizeof(*c));
	fe_alt_init(&c->alt, FE_API_CHAT, "", "", NULL, 0, 0);
	struct strbuf *sbs[] = { &c->out, &c->choices, &c->plps_json, &c->echo_text };
	for (size_t i = 0; i < sizeof(sbs) / sizeof(sbs[0]); i++)
		sb_init(sbs[i], 0);
	return c;
}

/* Sample i of the current prompt in its first state. */
static void sample_init(struct fe_call *c, struct fe_sample *s, int i)
{
	memset(s, 0, sizeof(*s));
	s->c = c;
	s->i = i;
	s->index = (int)c->prompt * c->p.n + i;
	struct strbuf *sbs[] = { &s->pending, &s->text, &s->req_body, &s->reasoning, &s->calls,
				 &s->choice };
	for (size_t k = 0; k < sizeof(sbs) / sizeof(sbs[0]); k++)
		sb_init(sbs[k], 0);
	fe_sm_init(&s->sm, c->f->o.migration_limit);
	fe_lp_init(&s->lp, c->m->tok, c->head.api, c->p.logprobs);
}

static void prefill_stop(struct fe_sample *s);

/* Cancel its calls and free what it holds. */
static void sample_release(struct fe_sample *s)
{
	if (s->st)
		rpc_stream_cancel(s->st);
	s->st = NULL;
	if (s->progress_timer)
		event_free(s->progress_timer);
	s->progress_timer = NULL;
	prefill_stop(s);
	fe_route_end(&s->route);
	free(s->hashes);
	free(s->resume_ids);
	free(s->plps);
	free(s->addr);
	free(s->path);
	free(s->pre_addr);
	free(s->pre_path);
	free(s->kv_source);
	tok_stream_free(s->detok);
	parser_free(s->parser);
	parse_evs_release(&s->evs);
	sb_release(&s->reasoning);
	sb_release(&s->calls);
	fe_lp_release(&s->lp);
	fe_sm_release(&s->sm);
	sb_release(&s->pending);
	sb_release(&s->text);
	sb_release(&s->req_body);
	sb_release(&s->choice);
}

static void call_free(struct fe_call *c)
{
	struct frontend *f = c->f;
	for (int i = 0; c->s && i < c->p.n; i++)
		sample_release(&c->s[i]);
	free(c->s);
	if (c->kick)
		event_free(c->kick);
	free(c->hashes);
	sb_release(&c->plps_json);
	sb_release(&c->echo_text);
	if (c->stats) {
		c->stats->inflight--;
		metrics_hist_observe(&c->stats->duration, (double)(mono_ns() - c->t0) / 1e9);
	}
	f->inflight--;
	fe_params_release(&c->p);
	fe_alt_release(&c->alt);
	free(c->echo);
	sb_release(&c->out);
	sb_release(&c->choices);
	fe_model_put(f, c->m);
	free(c);
}

/* The error a FAIL answers with: status and msg; in a stream the error
 * object's param names stream_param. */
static void set_error(struct fe_call *c, int status, const char *stream_param, const char *fmt,
		      ...) __attribute__((format(printf, 4, 5)));
static void set_error(struct fe_call *c, int status, const char *stream_param, const char *fmt,
		      ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->err_msg, sizeof(c->err_msg), fmt, ap);
	va_end(ap);
	c->err_status = status;
	c->err_param = stream_param;
}

/* No worker could take the request: 503. */
static void set_no_worker(struct fe_call *c)
{
	set_error(c, 503, NULL, "no worker is available for model '%s'", c->m->name);
}

/* Answer with the error set, in the stream when one was started; the
 * other choices' calls are cancelled. */
static void call_fail(struct fe_call *c)
{
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, c->err_status);
	if (!c->streaming) {
		reply_error(c->http, c->api, c->err_status, c->err_msg, NULL, NULL);
	} else {
		struct strbuf b = STRBUF_INIT;
		fe_alt_error(c->api, c->err_status, c->err_msg, c->err_param, 1, &b);
		http_stream_write(c->http, b.buf, b.len);
		sb_release(&b);
		http_stream_end(c->http);
	}
	c->http = NULL;
	call_free(c);
}

static void call_advance(struct fe_sample *s, const struct fe_sm_event *ev);

static void advance_kind(struct fe_sample *s, enum fe_sm_event_kind kind)
{
	const struct fe_sm_event ev = { .kind = kind };
	call_advance(s, &ev);
}

/* The client went away: every choice's worker call is cancelled. */
static void on_client_close(struct http_req *r, void *arg)
{
	struct fe_call *c = arg;
	(void)r;
	LOG_DEBUG(LOG_MOD, "%s: client went away; cancelling", c->id);
	c->http = NULL;
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, 499);
	call_free(c);
}

/* The event stream's head, and for chat completions each choice's role
 * chunk (as OpenAI and vLLM send them). */
static int stream_begin(struct fe_call *c)
{
	if (c->streaming)
		return 0;
	c->streaming = 1;
	int rc = http_stream_begin(c->http, 200, "text/event-stream",
				   "Cache-Control: no-cache\r\n");
	if (rc >= 0 && c->p.kind == FE_CHAT) {
		/* its own buffer: callers may be composing a chunk in c->out */
		struct strbuf b = STRBUF_INIT;
		if (c->api == FE_API_CHAT)
			for (int i = 0; i < c->p.n; i++)
				oai_sse_role(&c->head, i, &b);
		else
			fe_alt_begin(&c->alt, (long)c->p.gen.n_tokens, &b);
		rc = http_stream_write(c->http, b.buf, b.len);
		sb_release(&b);
	}
	return rc;
}

/* Send text (and the logprobs gathered) as one chunk: content, or
 * reasoning (chat). */
static void emit_text(struct fe_sample *s, enum parse_ev_kind kind, const char *text, size_t len)
{
	struct fe_call *c = s->c;
	if (c->api != FE_API_CHAT) {
		if (c->p.stream && stream_begin(c) < 0)
			return;
		sb_reset(&c->out);
		fe_alt_text(&c->alt, kind == PARSE_REASONING, text, len, &c->out);
		if (c->out.len)
			http_stream_write(c->http, c->out.buf, c->out.len);
		return;
	}
	if (!c->p.stream) {
		sb_add(kind == PARSE_REASONING ? &s->reasoning : &s->text, text, len);
		return;
	}
	if (!len && !s->lp.out.n)
		return;
	/* the status line and headers before any chunk (a request with
	 * max_tokens 0 echoes its prompt before any worker frame) */
	if (stream_begin(c) < 0)
		return;
	sb_reset(&c->out);
	if (kind == PARSE_REASONING)
		oai_sse_reasoning(&c->head, s->index, text, len, &s->lp.out, &c->out);
	else
		oai_sse_text(&c->head, s->index, text, len, &s->lp.out, &c->out);
	http_stream_write(c->http, c->out.buf, c->out.len);
}

/* Send a parsed tool call, with its id: the format's, else "call_" (the
 * Messages API: "toolu_") and 24 random letters and digits (as OpenAI's). */
static void emit_call(struct fe_sample *s, const struct parse_ev *e)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	struct fe_call *c = s->c;
	char id[40];
	if (!e->id) {
		unsigned char r[24];
		size_t k = (size_t)snprintf(id, sizeof(id), "%s", fe_alt_call_prefix(c->api));
		if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))	/* never short: 24 bytes */
			memset(r, 0, sizeof(r));
		for (size_t i = 0; i < sizeof(r); i++)
			id[k + i] = abc[r[i] % (sizeof(abc) - 1)];
		id[k + sizeof(r)] = 0;
	}
	const char *cid = e->id ? e->id : id;
	if (c->api != FE_API_CHAT) {
		if (c->p.stream && stream_begin(c) < 0)
			return;
		sb_reset(&c->out);
		fe_alt_call(&c->alt, cid, e->name, e->text, &c->out);
		if (c->out.len)
			http_stream_write(c->http, c->out.buf, c->out.len);
	} else if (!c->p.stream) {
		oai_tool_call(cid, e->name, e->text, &s->calls);
	} else if (stream_begin(c) == 0) {
		sb_reset(&c->out);
		oai_sse_tool_call(&c->head, s->index, s->ncalls, cid, e->name, e->text, &c->out);
		http_stream_write(c->http, c->out.buf, c->out.len);
	}
	s->ncalls++;
}

/* Send the parser's events. */
static void emit_events(struct fe_sample *s)
{
	for (size_t i = 0; i < s->evs.n; i++) {
		const struct parse_ev *e = &s->evs.v[i];
		if (e->kind == PARSE_CALL)
			emit_call(s, e);
		else
			emit_text(s, e->kind, e->text, e->len);
	}
	parse_evs_reset(&s->evs);
}

/* Send text (through the parser when the output is parsed). */
static void emit(struct fe_sample *s, const char *text, size_t len)
{
	if (!s->parser) {
		emit_text(s, PARSE_CONTENT, text, len);
		return;
	}
	parser_feed(s->parser, text, len, &s->evs);
	emit_events(s);
}

/* Send what the stop strings allow of pending; final: nothing more comes. */
static void release_pending(struct fe_sample *s, int final)
{
	const struct fe_params *p = &s->c->p;
	if (s->stop_hit)
		return;
	int hit;
	size_t n = stop_scan((const char *const *)p->stops, p->nstops, s->pending.buf,
			     s->pending.len, &hit);
	if (final && !hit)
		n = s->pending.len;
	if (hit && p->include_stop)
		n += (size_t)hit;	/* vLLM's include_stop_str_in_output */
	emit(s, s->pending.buf, n);
	sb_remove(&s->pending, 0, n);
	if (hit) {
		/* pending now begins with the stop string */
		for (size_t i = 0; i < p->nstops && !s->stop_str; i++)
			if (!strncmp(s->pending.buf, p->stops[i], strlen(p->stops[i])))
				s->stop_str = p->stops[i];
		s->stop_hit = 1;
		snprintf(s->finish, sizeof(s->finish), "stop");
		sb_reset(&s->pending);
	}
}

/* vLLM's prompt_logprobs of the choice: a member of its choice
 * (completions) or, once, of the response (chat). */
static void prompt_logprobs_out(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	struct strbuf b = STRBUF_INIT;
	if (s->plps_done)
		fe_lp_prompt_json(c->m->tok, c->p.gen.token_ids, c->p.gen.n_tokens, s->plps,
				  c->p.prompt_logprobs, &b);
	else
		sb_adds(&b, "null");	/* the worker did not send them all */
	if (c->head.api == OAI_CHAT) {
		if (!s->index)
			sb_add(&c->plps_json, b.buf, b.len);
	} else {
		oai_add_member(&s->choice, "prompt_logprobs", b.buf, b.len);
	}
	sb_release(&b);
}

/* A choice ended: write its end, count it, and let its machine say what
 * follows. */
static void choice_end(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	if (!s->finish[0])
		snprintf(s->finish, sizeof(s->finish), "stop");
	fe_lp_end(&s->lp, "", 0);	/* stopped inside a character: the rest never came */
	if (s->parser) {	/* what it held back is decided now */
		parser_finish(s->parser, &s->evs);
		emit_events(s);
		if (s->ncalls && !strcmp(s->finish, "stop"))
			snprintf(s->finish, sizeof(s->finish), "tool_calls");
	}
	/* its worker call is over: cancelled if still open, uncounted in
	 * the router while the prompt's other samples go on */
	if (s->st) {
		rpc_stream_cancel(s->st);
		s->st = NULL;
	}
	if (s->progress_timer) {
		event_free(s->progress_timer);
		s->progress_timer = NULL;
	}
	fe_route_end(&s->route);
	size_t n_out;
	fe_sm_output(&s->sm, &n_out);
	c->usage.completion_tokens += (long)n_out;
	if (!s->i) {	/* n samples: their prompt once */
		c->usage.prompt_tokens += (long)c->p.gen.n_tokens;
		c->usage.cached_tokens += s->cached_tokens;
	}
	sb_reset(&c->out);
	if (c->api != FE_API_CHAT) {
		;	/* one choice: its end is the answer's (call_finish) */
	} else if (c->p.stream) {
		stream_begin(c);
		oai_sse_finish(&c->head, s->index, s->finish, &s->lp.out, &c->out);
		http_stream_write(c->http, c->out.buf, c->out.len);
	} else {
		const struct oai_parsed x = { c->reasoning_on, &s->reasoning, &s->calls };
		oai_choice(c->head.api, s->index, s->text.buf, s->text.len,
			   s->parser ? &x : NULL, &s->lp.out, s->finish, &s->choice);
		if (c->p.prompt_logprobs >= 0)
			prompt_logprobs_out(s);
	}
	advance_kind(s, FE_SM_CHOICE_END);
}

/* Every choice ended: the rest of the answer. */
static void call_finish(struct fe_call *c)
{
	struct strbuf *b = &c->out;
	const struct fe_sample *s = &c->s[0];	/* the other APIs: their one choice */
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, 200);
	sb_reset(b);
	if (c->api != FE_API_CHAT) {
		if (c->p.stream)
			stream_begin(c);
		c->alt.input_tokens = c->usage.prompt_tokens;
		fe_alt_end(&c->alt, s->finish, s->stop_str, c->usage.completion_tokens, b);
		if (c->p.stream) {
			http_stream_write(c->http, b->buf, b->len);
			http_stream_end(c->http);
		} else {
			http_reply(c->http, 200, "application/json", b->buf, b->len, NULL);
		}
	} else if (c->p.stream) {
		if (c->p.include_usage)
			oai_sse_usage(&c->head, &c->usage, b);
		sb_adds(b, OAI_SSE_DONE);
		http_stream_write(c->http, b->buf, b->len);
		http_stream_end(c->http);
	} else {
		oai_body(&c->head, &c->choices, &c->usage, b);
		if (c->plps_json.len)
			oai_add_member(b, "prompt_logprobs", c->plps_json.buf, c->plps_json.len);
		http_reply(c->http, 200, "application/json", b->buf, b->len, NULL);
	}
	c->http = NULL;
	call_free(c);
}

/* ---- worker stream -------------------------------------------------------- */

/* A parsed output's detokenizer keeps special tokens: those that are not
 * its parser's markup are dropped here. */
static int skipped_special(struct fe_sample *s, int32_t id)
{
	const struct fe_model *m = s->c->m;
	size_t n;
	const char *t;
	if (!s->parser || !tok_is_special(m->tok, id))
		return 0;
	t = tok_id_to_token(m->tok, id, &n);
	return !t || !parse_keeps_special(m->tool, m->rsn, t, n);
}

/* The call's next step comes (on_kick()). */
static void kick(struct fe_call *c)
{
	event_active(c->kick, EV_TIMEOUT, 1);
}

/* Take one worker frame; returns 1 once a stop string was hit. */
static int consume(struct fe_sample *s, const void *data, size_t len)
{
	struct fe_call *c = s->c;
	struct gen_output o;

	if (gen_output_parse(data, len, &o) < 0) {
		LOG_WARN(LOG_MOD, "%s: bad frame from worker %016" PRIx64 ": %s", c->id,
			 s->sm.worker, err_msg());
		return 0;
	}
	if (c->p.stream && stream_begin(c) < 0) {
		gen_output_release(&o);
		return 0;	/* the client is gone; on_close follows */
	}
	if (o.n_plps && !s->plps_done) {
		if (s->n_plps + o.n_plps > s->cap_plps) {
			s->cap_plps = s->n_plps + o.n_plps;
			s->plps = xrealloc(s->plps, s->cap_plps * sizeof(*s->plps));
		}
		memcpy(s->plps + s->n_plps, o.plps, o.n_plps * sizeof(*s->plps));
		s->n_plps += o.n_plps;
	}
	if (c->p.gen.prompt_logprobs >= 0 && !s->plps_done &&
	    s->n_plps + 1 >= c->p.gen.n_tokens) {	/* all came: an echo's entries first */
		s->plps_done = 1;
		if (c->p.echo)
			fe_lp_prompt(&s->lp, c->p.gen.token_ids, c->p.gen.n_tokens, s->plps);
	}
	uint64_t now = mono_ns();
	size_t n_out;
	fe_sm_output(&s->sm, &n_out);
	if (o.n && !s->call_tokens) {	/* this worker's first: the routers count it */
		s->call_tokens = 1;
		fe_route_first_token(&s->route);
		if (!s->i && c->n_started < c->p.n)
			kick(c);	/* the prompt's other samples may start */
	}
	for (size_t i = 0; i < o.n && !s->stop_hit; i++, n_out++) {
		if (c->stats) {
			if (!n_out)
				metrics_hist_observe(&c->stats->ttft, (double)(now - c->t0) / 1e9);
			else
				metrics_hist_observe(&c->stats->itl, (double)(now - s->t_last) / 1e9);
		}
		s->t_last = now;
		const struct fe_sm_event ev = { .kind = FE_SM_TOKENS, .ids = &o.token_ids[i],
						.n_ids = 1 };
		call_advance(s, &ev);
		if (c->stats)	/* counted as they come: cancelled requests too */
			c->stats->output_tokens++;
		size_t before = s->pending.len;
		if (!skipped_special(s, o.token_ids[i]))
			tok_stream_put(s->detok, o.token_ids[i], &s->pending);
		if (o.lps)
			fe_lp_token(&s->lp, o.token_ids[i], &o.lps[i], s->pending.buf + before,
				    s->pending.len - before);
		release_pending(s, 0);
	}
	/* after a migration the worker's prompt holds generated ids: the
	 * client's prompt had at most all of its own cached */
	if (o.cached_tokens >= 0)
		s->cached_tokens = o.cached_tokens < (long)c->p.gen.n_tokens
					   ? o.cached_tokens : (long)c->p.gen.n_tokens;
	if (o.finish_reason[0] && !s->stop_hit)
		snprintf(s->finish, sizeof(s->finish), "%s",
			 !strcmp(o.finish_reason, "length") ? "length" : "stop");
	gen_output_release(&o);
	return s->stop_hit;
}

static void on_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		    void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	(void)flags;
	s->t_frame = mono_ms();
	if (consume(s, data, len))
		choice_end(s);	/* cancels the worker's stream */
}

/* The worker's stream is complete: the text held back goes out. */
static void stream_done(struct fe_sample *s)
{
	size_t before = s->pending.len;
	tok_stream_flush(s->detok, &s->pending);
	fe_lp_end(&s->lp, s->pending.buf + before, s->pending.len - before);
	release_pending(s, 1);
	choice_end(s);
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	(void)flags;
	s->st = NULL;
	if (len && consume(s, data, len)) {
		choice_end(s);
		return;
	}
	stream_done(s);
}

/* Why a call failed, for the migration counts (net/rpc.h codes). */
static enum fe_mig_cause mig_cause(int code, const char *msg)
{
	if (code == -ECONNREFUSED || code == -EHOSTUNREACH || code == -ENETUNREACH ||
	    code == -EADDRNOTAVAIL)
		return FE_MIG_CONNECT;
	if (code < 0)
		return FE_MIG_DISCONNECT;
	if (!strncmp(msg, FRAME_DRAINING, strlen(FRAME_DRAINING)) ||
	    !strncmp(msg, FRAME_MIGRATE, strlen(FRAME_MIGRATE)))
		return FE_MIG_DRAINING;
	return FE_MIG_UNAVAILABLE;
}

/* The worker's call failed (code < 0: transport, else its ERROR frame's
 * status, net/rpc.h): set what to answer unless another worker takes the
 * choice on, and let the machine decide. */
static void worker_failed(struct fe_sample *s, int code, const char *msg,
			  enum fe_mig_cause cause)
{
	struct fe_call *c = s->c;
	LOG_WARN(LOG_MOD, "%s: choice %d: worker %016" PRIx64 " failed (%d): %s", c->id, s->index,
		 s->sm.worker, code, msg);
	s->mig_cause = cause;
	/* A transport error names the worker's internal address: that stays
	 * in the log; the client learns what happened, not where. */
	const char *why = code >= 0		    ? msg
			  : cause == FE_MIG_CONNECT ? "the worker could not be reached"
			  : cause == FE_MIG_STALLED ? "the worker stopped making progress"
						    : "the connection to the worker was lost";
	if (c->streaming)
		set_error(c, fe_sm_migratable(code) ? 503 : 500, NULL, "%s", why);
	else if (code == 400)
		set_error(c, 400, NULL, "the worker refused the request: %s", msg);
	else if (fe_sm_migratable(code))
		set_error(c, 503, NULL, "no worker of model '%s' could take the request: %s",
			  c->m->name, why);
	else
		set_error(c, 500, NULL, "the worker failed: %s", msg);
	const struct fe_sm_event ev = { .kind = FE_SM_WORKER_ERROR, .code = code };
	call_advance(s, &ev);
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	s->st = NULL;
	if (s->finish[0]) {	/* its last frame came; only the END was lost */
		stream_done(s);
		return;
	}
	worker_failed(s, code, msg, mig_cause(code, msg));
}

static const struct rpc_stream_cbs worker_cbs = { on_data, on_end, on_error };

/* Once a second while a worker streams: a stream on a worker found
 * unhealthy (core/discovery/health.h) that has been silent for a health
 * check's timeout, or one silent for the progress timeout after its first
 * token (a hung engine), ends as a lost connection would, and the
 * choice moves on. */
static void on_progress_tick(evutil_socket_t fd, short what, void *arg)
{
	struct fe_sample *s = arg;
	struct frontend *f = s->c->f;
	uint64_t now = mono_ms();
	char why[128];
	(void)fd;
	(void)what;
	if (!s->st)
		return;
	/* a stream still sending tokens stays, whatever a check said */
	uint64_t quiet = f->o.health_check_timeout_ms > 0 ? (uint64_t)f->o.health_check_timeout_ms
							  : WORKER_HEALTH_TIMEOUT_MS;
	if (worker_health_unhealthy(f->health, s->sm.worker) && now - s->t_frame >= quiet) {
		snprintf(why, sizeof(why), "the worker failed its health check");
	} else if (s->call_tokens && f->o.progress_timeout_ms > 0 &&
		   now - s->t_frame >= (uint64_t)f->o.progress_timeout_ms) {
		snprintf(why, sizeof(why), "no token for %.1f s", (double)(now - s->t_frame) / 1e3);
		if (worker_health_stalled(f->health, s->sm.worker, why) < 0)
			fe_instance_mark_down(f, s->sm.worker);	/* not checked */
	} else {
		return;
	}
	rpc_stream_cancel(s->st);
	s->st = NULL;
	worker_failed(s, -ETIMEDOUT, why, FE_MIG_STALLED);
}

/* The length of the prompt the next worker gets. */
static size_t worker_prompt_len(const struct fe_sample *s)
{
	return s->resume_ids ? s->n_resume : s->c->p.gen.n_tokens;
}

/* The block hashes of that prompt (*n of them), for routers. */
static const uint64_t *worker_prompt_hashes(const struct fe_sample *s, size_t *n)
{
	*n = s->resume_ids ? s->nhashes : s->c->nhashes;
	return s->resume_ids ? s->hashes : s->c->hashes;
}

/* MIGRATE: after tokens, the next worker's prompt is the prompt followed
 * by them (routed on its block hashes).  1 when nothing was left to
 * generate: the choice ended. */
static int resume_prepare(struct fe_sample *s)
{
	const struct gen_request *g = &s->c->p.gen;
	size_t n_out, n = g->n_tokens;
	const int32_t *out = fe_sm_output(&s->sm, &n_out);
	if (!n_out)
		return 0;	/* the request as it is */
	if ((long)n_out >= g->max_tokens) {
		snprintf(s->finish, sizeof(s->finish), "length");
		stream_done(s);
		return 1;
	}
	s->resume_ids = xrealloc(s->resume_ids, (n + n_out) * sizeof(*s->resume_ids));
	memcpy(s->resume_ids, g->token_ids, n * sizeof(*s->resume_ids));
	memcpy(s->resume_ids + n, out, n_out * sizeof(*s->resume_ids));
	s->n_resume = n + n_out;
	free(s->hashes);
	s->nhashes = fe_route_hashes(s->c->f, s->c->m, s->resume_ids, s->n_resume, &s->hashes);
	return 0;
}

/* CALL_WORKER: send the request to the chosen worker (with the remote
 * prefill's kv_source when it had one; after a migration, with the
 * resumed prompt and the limits less the ids so far). */
static void call_worker(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	struct gen_request g = c->p.gen;	/* a view: only encoded */
	g.s.seed += (uint64_t)s->i;	/* n samples: seed + index */
	if (s->resume_ids) {
		long done = (long)(s->n_resume - c->p.gen.n_tokens);
		g.token_ids = s->resume_ids;
		g.n_tokens = s->n_resume;
		g.max_tokens -= done;
		g.min_tokens = g.min_tokens > done ? g.min_tokens - done : 0;
		if (g.grammar_kind)
			g.grammar_done = done;
	}
	if (s->plps_done)	/* prompt logprobs: all came, or from the start again */
		g.prompt_logprobs = -1;
	else
		s->n_plps = 0;
	g.kv_source = s->kv_source;
	sb_reset(&s->req_body);
	gen_request_encode(&g, &s->req_body);
	s->call_tokens = 0;
	s->t_frame = mono_ms();
	int rc = rpc_call(c->f->rpc, s->addr, s->path, s->req_body.buf, s->req_body.len, 0,
			  &worker_cbs, s, &s->st);
	if (rc < 0) {
		s->st = NULL;
		worker_failed(s, rc, err_msg(), FE_MIG_CONNECT);
		return;
	}
	if (!s->progress_timer) {
		static const struct timeval second = { 1, 0 };
		s->progress_timer = event_new(c->f->base, -1, EV_PERSIST, on_progress_tick, s);
		event_add(s->progress_timer, &second);
	}
}

/* ---- the remote prefill ---------------------------------------------------- */

/* Close the prefill call and its timer (the prefill worker is told when
 * the call is still open) and uncount it in the router. */
static void prefill_stop(struct fe_sample *s)
{
	if (s->pst)
		rpc_stream_cancel(s->pst);
	s->pst = NULL;
	if (s->pre_timer)
		event_free(s->pre_timer);
	s->pre_timer = NULL;
	fe_route_prefill_end(&s->route);
}

/* The remote step failed: the decode worker prefills the prompt itself. */
static void prefill_failed(struct fe_sample *s, enum fe_prefill_cause cause, const char *why)
{
	LOG_WARN(LOG_MOD, "%s: remote prefill on %016" PRIx64 " failed (%s): %s; worker %016"
		 PRIx64 " prefills", s->c->id, s->sm.prefill, fe_prefill_causes[cause], why,
		 s->sm.worker);
	s->c->f->prefill_failures[cause]++;
	prefill_stop(s);
	free(s->kv_source);
	s->kv_source = NULL;
	advance_kind(s, FE_SM_REMOTE_FAILED);
}

/* A frame of the prefill worker's answer: keep its kv_source.  -1 on a
 * frame that is not one. */
static int prefill_frame(struct fe_sample *s, const void *data, size_t len)
{
	struct gen_output o;
	if (gen_output_parse(data, len, &o) < 0)
		return -1;
	if (o.kv_source) {
		free(s->kv_source);
		s->kv_source = o.kv_source;
		o.kv_source = NULL;
	}
	gen_output_release(&o);
	return 0;
}

static void on_prefill_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			    void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	(void)flags;
	if (prefill_frame(s, data, len) < 0)
		prefill_failed(s, FE_PREFILL_ERROR, err_msg());
}

static void on_prefill_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			   void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	(void)flags;
	s->pst = NULL;
	if (len && prefill_frame(s, data, len) < 0) {
		prefill_failed(s, FE_PREFILL_ERROR, err_msg());
		return;
	}
	if (!s->kv_source) {
		prefill_failed(s, FE_PREFILL_NO_KV_SOURCE, "its answer has no kv_source");
		return;
	}
	LOG_DEBUG(LOG_MOD, "%s: prefilled on %016" PRIx64 ": %s", s->c->id, s->sm.prefill,
		  s->kv_source);
	prefill_stop(s);
	advance_kind(s, FE_SM_REMOTE_DONE);
}

static void on_prefill_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_sample *s = arg;
	(void)st;
	s->pst = NULL;
	if (code < 0)	/* unreachable: not again for a while */
		fe_instance_mark_down(s->c->f, s->sm.prefill);
	prefill_failed(s, FE_PREFILL_ERROR, msg);
}

static void on_prefill_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	prefill_failed(arg, FE_PREFILL_TIMEOUT, "no answer in time");
}

static const struct rpc_stream_cbs prefill_cbs = { on_prefill_data, on_prefill_end,
						   on_prefill_error };

/* CALL_PREFILL: the request, marked prefill-only, to the prefill worker
 * of the plan, under --prefill-timeout. */
static void remote_step(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	struct strbuf b = STRBUF_INIT;
	int64_t ms = c->f->o.prefill_timeout_ms > 0 ? c->f->o.prefill_timeout_ms : 30000;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };
	struct gen_request g = c->p.gen;	/* a view: only encoded */

	s->pre_timer = evtimer_new(c->f->base, on_prefill_timeout, s);
	evtimer_add(s->pre_timer, &tv);
	g.prefill_only = 1;
	gen_request_encode(&g, &b);
	int rc = rpc_call(c->f->rpc, s->pre_addr, s->pre_path, b.buf, b.len, 0, &prefill_cbs, s,
			  &s->pst);
	sb_release(&b);
	if (rc < 0) {
		s->pst = NULL;
		fe_instance_mark_down(c->f, s->sm.prefill);
		prefill_failed(s, FE_PREFILL_ERROR, err_msg());
	}
}

/* A plan without a router's view of the caches (round-robin, random):
 * the whole prompt counts as uncached, the prefill queues as unknown;
 * the prefill worker in turn. */
static void plan_in_turn(struct fe_sample *s, struct fe_route_plan *plan)
{
	struct fe_call *c = s->c;
	const char *path;
	size_t np = fe_model_nusable(c->f, c->m, FE_POOL_PREFILL);
	plan->prefill = 0;
	plan->decision = disagg_decide(&c->f->disagg_cfg, (long)worker_prompt_len(s), NULL, np);
	if (plan->decision == DISAGG_REMOTE &&
	    !fe_model_pick(c->f, c->m, FE_POOL_PREFILL, 0, &plan->prefill, &path))
		plan->decision = DISAGG_LOCAL_NO_PREFILL;
}

/* Choose the workers: the plan the router service made (when routed), else
 * the embedded router's or the next in turn; the machine takes it from
 * there.  0 (the call may be answered and freed by then), or -EAGAIN when
 * no worker is left. */
static int call_dispatch(struct fe_sample *s, const struct fe_route_plan *routed)
{
	struct fe_call *c = s->c;
	const char *path = NULL, *addr = NULL, *pre_path = NULL, *pre_addr = NULL;
	uint64_t exclude = s->sm.exclude;
	struct fe_route_plan plan = { 0 };
	size_t nh;
	const uint64_t *hashes = worker_prompt_hashes(s, &nh);

	if (routed && routed->worker != exclude &&
	    fe_model_usable(c->f, c->m, FE_POOL_DECODE, routed->worker, &addr, &path)) {
		plan = *routed;
	} else {
		if (routed) {
			LOG_DEBUG(LOG_MOD, "%s: the router service chose %016" PRIx64 ", not usable "
				  "here", c->id, routed->worker);
			fe_route_unused(&s->route);
		}
		if (c->m->kv && fe_route_select(c->f, c->m, c->id, hashes, nh,
						worker_prompt_len(s), exclude, &plan) == 0 &&
		    !fe_model_usable(c->f, c->m, FE_POOL_DECODE, plan.worker, &addr, &path))
			addr = NULL;
	}
	if (!addr) {
		addr = fe_model_pick(c->f, c->m, FE_POOL_DECODE, exclude, &plan.worker, &path);
		if (!addr)
			return -EAGAIN;
		plan_in_turn(s, &plan);
	}
	if (s->resume_ids || c->p.gen.prompt_logprobs >= 0) {
		/* migrated after tokens: not a new prompt to place; prompt
		 * logprobs: the worker that decodes computes every position */
		plan.prefill = 0;
	} else {
		if (plan.prefill && !fe_model_usable(c->f, c->m, FE_POOL_PREFILL, plan.prefill,
						     &pre_addr, &pre_path)) {
			LOG_DEBUG(LOG_MOD, "%s: prefill worker %016" PRIx64 " not usable here",
				  c->id, plan.prefill);
			plan.prefill = 0;
			plan.decision = DISAGG_LOCAL_NO_PREFILL;
		}
		c->f->disagg[plan.decision]++;
	}
	fe_route_dispatch(&s->route, c->f, c->m, &plan, hashes, nh);
	free(s->addr);
	free(s->path);
	free(s->pre_addr);
	free(s->pre_path);
	free(s->kv_source);
	s->addr = xstrdup(addr);
	s->path = xstrdup(path);
	s->pre_addr = pre_addr ? xstrdup(pre_addr) : NULL;
	s->pre_path = pre_path ? xstrdup(pre_path) : NULL;
	s->kv_source = NULL;
	if (!s->i)
		c->sample_worker = plan.worker;
	const struct fe_sm_event ev = { .kind = FE_SM_ROUTED, .worker = plan.worker,
					.prefill = plan.prefill };
	call_advance(s, &ev);
	return 0;
}

static void on_routed(void *arg, int ok, const struct fe_route_plan *plan)
{
	struct fe_sample *s = arg;
	set_no_worker(s->c);
	if (call_dispatch(s, ok ? plan : NULL) < 0)
		advance_kind(s, FE_SM_NO_WORKER);
}

/* Route the choice (through the router service when one is in use) and
 * send it.  0 (maybe still routing; the call may be answered and freed
 * by then), or -EAGAIN when no worker is left. */
static int call_route(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	const char *addr, *path;
	size_t nh;
	const uint64_t *hashes = worker_prompt_hashes(s, &nh);
	fe_route_end(&s->route);
	/* a prompt's later samples go where its first one went: its blocks
	 * are in that worker's prefix cache (the prompt is prefilled once) */
	if (s->i && !s->resume_ids && c->sample_worker != s->sm.exclude &&
	    fe_model_usable(c->f, c->m, FE_POOL_DECODE, c->sample_worker, &addr, &path)) {
		const struct fe_route_plan pin = { .worker = c->sample_worker,
						   .decision = DISAGG_LOCAL_SHORT };
		return call_dispatch(s, &pin);
	}
	if (fe_route_service(&s->route, c->f, c->m, c->id, hashes, nh, worker_prompt_len(s),
			     s->sm.exclude, on_routed, s) == 0)
		return 0;
	return call_dispatch(s, NULL);
}

/* ---- generation endpoints -------------------------------------------------- */

static void group_start(struct fe_call *c);
static void on_kick(evutil_socket_t fd, short what, void *arg);

/* A request of the Responses or Messages API as a chat completions body
 * (*chat, malloc'd: NULL on error with err_msg() and *param). */
static char *translate(struct fe_call *c, const char *body, size_t len, const char **param)
{
	char *chat = NULL;
	if (c->api == FE_API_RESPONSES)
		fe_responses_to_chat(body, len, &chat, &c->echo, param);
	else
		fe_messages_to_chat(body, len, c->count_only, &chat, param);
	return chat;
}

static void handle_generate(struct frontend *f, struct http_req *r, enum fe_kind kind,
			    enum fe_api api, int count_only)
{
	size_t len;
	const char *body = http_req_body(r, &len), *param = NULL;
	struct fe_call *c = call_new();
	static const char *const eps[] = { "chat_completions", "responses", "messages" };
	const char *ep = kind == FE_COMPLETION ? "completions"
			 : count_only ? "messages_count_tokens" : eps[api];
	char msg[512], *chat = NULL;

	c->f = f;
	c->http = r;
	c->endpoint = ep;
	c->api = api;
	c->count_only = count_only;
	c->t0 = mono_ns();
	f->inflight++;
	if (api != FE_API_CHAT) {
		chat = translate(c, body, len, &param);
		body = chat;
		len = chat ? strlen(chat) : 0;
	}
	if ((api != FE_API_CHAT && !chat) || fe_params_parse(kind, body, len, &c->p, &param) < 0) {
		fe_stats_count(fe_stats_get(f, ""), ep, 400);
		reply_error(r, api, 400, err_msg(), param, NULL);
		free(chat);
		c->http = NULL;
		call_free(c);
		return;
	}
	free(chat);
	c->m = fe_model_get(f, c->p.model);
	if (!c->m) {
		fe_stats_count(fe_stats_get(f, ""), ep, 404);
		reply_model_not_found(r, api, c->p.model);
		c->http = NULL;
		call_free(c);
		return;
	}
	c->stats = fe_stats_get(f, c->m->name);
	c->stats->inflight++;
	if (c->m->embedding_dim > 0) {
		snprintf(msg, sizeof(msg), "model '%s' is an embedding model; use /v1/embeddings",
			 c->m->name);
		fe_stats_count(c->stats, ep, 400);
		reply_error(r, api, 400, msg, "model", NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	if (kind == FE_CHAT && !c->m->chat) {
		/* No substitute template: a model without one is for completions
		 * (400, as vLLM), one whose template is broken is a server-side
		 * fault the client cannot fix (500). */
		int status = c->m->chat_error ? 500 : 400;
		if (c->m->chat_error)
			snprintf(msg, sizeof(msg), "the chat template of model '%s' does not "
				 "compile: %s", c->m->name, c->m->chat_error);
		else
			snprintf(msg, sizeof(msg), "model '%s' has no chat template, so it cannot "
				 "serve chat completions; use /v1/completions", c->m->name);
		fe_stats_count(c->stats, ep, status);
		reply_error(r, api, status, msg, status == 400 ? "model" : NULL, NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	if (fe_params_constrain(&c->p, &param) < 0) {
		fe_stats_count(c->stats, ep, 400);
		reply_error(r, api, 400, err_msg(), param, NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	static const char *const prefixes[] = { "chatcmpl-", "resp_", "msg_" };
	snprintf(c->id, sizeof(c->id), "%s%016" PRIx64 "%016" PRIx64,
		 kind == FE_CHAT ? prefixes[api] : "cmpl-", f->id_prefix, ++f->req_seq);
	fe_alt_release(&c->alt);
	fe_alt_init(&c->alt, api, c->id, c->m->name, c->echo, (long)time(NULL), c->p.stream);
	c->head = (struct oai_head){ kind == FE_CHAT ? OAI_CHAT : OAI_COMPLETION, c->id,
				     (long)time(NULL), c->m->name, c->p.include_usage };
	c->s = xcalloc((size_t)c->p.n, sizeof(*c->s));
	c->kick = event_new(f->base, -1, 0, on_kick, c);

	http_req_on_close(r, on_client_close, c);
	group_start(c);
}

/* Tokenize the current choice's prompt, check it against the context
 * length and encode the worker request.  -EINVAL with the error set on
 * bad input. */

/* Tokenize the current prompt, check it against the context length and
 * set what its samples share.  -EINVAL with the error set on bad input. */
static int prepare(struct fe_call *c)
{
	/* The prompt's token ids. */
	struct tok_ids ids = TOK_IDS_INIT;
	struct strbuf prompt = STRBUF_INIT;
	int rc = 0;
	enum fe_kind kind = c->p.kind;
	if (kind == FE_CHAT) {
		/* handle_generate() answered chat requests to models without one */
		rc = tmpl_chat_render_request(c->m->chat, c->p.template_json,
					      strlen(c->p.template_json), NULL, &prompt);
		if (rc < 0) {
			set_error(c, 400, "prompt", "chat template: %s", err_msg());
			goto bad;
		}
		/* the template writes the special tokens itself, as transformers */
		rc = tok_encode(c->m->tok, prompt.buf, prompt.len, 0, &ids);
	} else if (c->p.has_prompt_ids) {
		size_t vocab = tok_vocab_size(c->m->tok);
		for (size_t i = 0; i < c->p.n_prompt_ids; i++) {
			if ((size_t)c->p.prompt_ids[i] >= vocab) {
				set_error(c, 400, "prompt", "prompt token id %d is outside the "
					  "vocabulary (size %zu)", c->p.prompt_ids[i], vocab);
				rc = -EINVAL;
				goto bad;
			}
			tok_ids_push(&ids, c->p.prompt_ids[i]);
		}
		if (c->p.echo)
			tok_decode(c->m->tok, ids.v, ids.n, 1, &prompt);
	} else {
		sb_adds(&prompt, c->p.prompt_text);
		rc = tok_encode(c->m->tok, prompt.buf, prompt.len, 1, &ids);
	}
	if (rc < 0) {
		set_error(c, 400, "prompt", "tokenizing the prompt: %s", err_msg());
		goto bad;
	}
	size_t vocab = tok_vocab_size(c->m->tok);
	for (size_t i = 0; i < c->p.gen.s.n_bias && !c->p.bias_error[0]; i++)
		if ((size_t)c->p.gen.s.bias_ids[i] >= vocab)
			snprintf(c->p.bias_error, sizeof(c->p.bias_error), "'logit_bias': token id "
				 "%d is outside the vocabulary (size %zu)", c->p.gen.s.bias_ids[i],
				 vocab);
	if (c->p.bias_error[0]) {
		set_error(c, 400, "logit_bias", "%s", c->p.bias_error);
		rc = -EINVAL;
		goto bad;
	}
	long ctx = c->m->context_length;
	if ((long)ids.n >= ctx) {
		set_error(c, 400, "prompt", "This model's maximum context length is %ld tokens, "
			  "but the prompt has %zu tokens", ctx, ids.n);
		rc = -EINVAL;
		goto bad;
	}
	if (c->p.max_tokens < 0) {
		/* As OpenAI: completions default to 16 tokens, chat runs to
		 * the end (of the context). */
		c->p.gen.max_tokens = ctx - (long)ids.n;
		if (kind == FE_COMPLETION && c->p.gen.max_tokens > FE_COMPLETION_MAX_TOKENS)
			c->p.gen.max_tokens = FE_COMPLETION_MAX_TOKENS;
	} else if ((long)ids.n + c->p.max_tokens > ctx && c->api != FE_API_CHAT) {
		/* the Responses and Messages APIs: a bound, as their clients
		 * send one out of habit (the end of the context also ends it) */
		c->p.gen.max_tokens = ctx - (long)ids.n;
	} else if ((long)ids.n + c->p.max_tokens > ctx) {
		set_error(c, 400, "prompt", "This model's maximum context length is %ld tokens; "
			  "the prompt has %zu tokens and max_tokens is %ld", ctx, ids.n,
			  c->p.max_tokens);
		rc = -EINVAL;
		goto bad;
	} else {
		c->p.gen.max_tokens = c->p.max_tokens;
	}
	int echo = kind == FE_COMPLETION && c->p.echo;
	free(c->p.gen.token_ids);
	c->p.gen.token_ids = ids.v;
	c->p.gen.n_tokens = ids.n;
	ids.v = NULL;
	free(c->hashes);
	c->nhashes = fe_route_hashes(c->f, c->m, c->p.gen.token_ids, c->p.gen.n_tokens,
				     &c->hashes);
	c->stats->input_tokens += c->p.gen.n_tokens;
	/* chat output is parsed for calls when the request has tools (and
	 * tool_choice is not "none"), for reasoning always */
	enum parse_tool tool = kind == FE_CHAT && c->p.tools_json && !c->p.tool_choice_none
				       ? c->m->tool : PARSE_TOOL_NONE;
	enum parse_reasoning rsn = kind == FE_CHAT ? c->m->rsn : PARSE_RSN_NONE;
	/* tool_choice required / named: the grammar writes hermes calls,
	 * whatever the model's own format; a grammar constrains the output
	 * from its first token, so none of it is reasoning */
	if (c->p.forced_tools)
		tool = PARSE_TOOL_HERMES;
	if (c->p.gen.grammar_kind)
		rsn = PARSE_RSN_NONE;
	c->tool = tool;
	c->rsn = rsn;
	c->opens_reasoning = parse_prompt_opens_reasoning(rsn, prompt.buf, prompt.len);
	c->reasoning_on = rsn || tool == PARSE_TOOL_GPT_OSS;
	sb_reset(&c->echo_text);
	c->echo_chars = 0;
	if (echo) {
		sb_add(&c->echo_text, prompt.buf, prompt.len);
		c->echo_chars = oai_utf8_chars(prompt.buf, prompt.len);
	}
	sb_release(&prompt);
	tok_ids_release(&ids);
	return 0;
bad:
	sb_release(&prompt);
	tok_ids_release(&ids);
	return rc < 0 ? rc : -EINVAL;
}

/* A sample's output state for the prompt prepare() set. */
static void sample_prime(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	fe_lp_begin(&s->lp, c->p.gen.token_ids, c->p.gen.n_tokens, c->echo_chars);
	if (c->tool || c->rsn)
		s->parser = parser_new(c->tool, c->p.tools_json, c->rsn, c->opens_reasoning);
	/* a parser sees the special tokens of its markup (skipped_special) */
	s->detok = tok_stream_new(c->m->tok, !s->parser);
	tok_stream_prime(s->detok, c->p.gen.token_ids, c->p.gen.n_tokens);
	sb_add(&s->pending, c->echo_text.buf, c->echo_text.len);	/* an echo */
}

/* /v1/messages/count_tokens: the prompt's length, and nothing generated. */
static void count_reply(struct fe_call *c)
{
	c->stats->input_tokens -= c->p.gen.n_tokens;	/* prepare() counted a prompt sent */
	fe_stats_count(c->stats, c->endpoint, 200);
	sb_reset(&c->out);
	sb_addf(&c->out, "{\"input_tokens\":%zu}", c->p.gen.n_tokens);
	http_reply(c->http, 200, "application/json", c->out.buf, c->out.len, NULL);
	c->http = NULL;
	call_free(c);
}

/* Start a sample: route it and call its worker (or end it at once when
 * there is nothing to generate). */
static void sample_start(struct fe_sample *s)
{
	struct fe_call *c = s->c;
	if (c->p.gen.max_tokens == 0 && c->p.gen.prompt_logprobs < 0) {	/* nothing to do */
		snprintf(s->finish, sizeof(s->finish), "length");
		release_pending(s, 1);
		choice_end(s);
		return;
	}
	set_no_worker(c);
	if (call_route(s) < 0)
		advance_kind(s, FE_SM_NO_WORKER);
}

/*
 * Start the call's current prompt (c->prompt; a batch has several, one
 * after the other) with its first sample alone.  Its n - 1 others start
 * once the first has a token (or ended): that worker then holds the
 * prompt's full KV blocks in its prefix cache, and they go to it
 * (call_route()), take the blocks from there and decode in the same
 * batches as the first, all streams open together.  Forking the sequence
 * in the engine would save the wait for one token, but every sample is
 * an ordinary request this way: routing, migration, disaggregation and
 * cancelling work for each as for any other.
 */
static void group_start(struct fe_call *c)
{
	if (c->p.nprompts) {	/* a batch's next prompt */
		struct fe_prompt *q = &c->p.prompts[c->prompt];
		free(c->p.prompt_text);
		free(c->p.prompt_ids);
		c->p.prompt_text = q->text;
		c->p.prompt_ids = q->ids;
		c->p.n_prompt_ids = q->n_ids;
		c->p.has_prompt_ids = q->is_ids;
		q->text = NULL;
		q->ids = NULL;
	}
	for (int i = 0; i < c->p.n; i++) {	/* what the last prompt's left */
		sample_release(&c->s[i]);
		sample_init(c, &c->s[i], i);
	}
	c->n_started = c->n_ended = 0;
	if (prepare(c) < 0) {
		advance_kind(&c->s[0], FE_SM_BAD_PROMPT);
		return;
	}
	if (c->count_only) {
		count_reply(c);
		return;
	}
	for (int i = 0; i < c->p.n; i++)
		sample_prime(&c->s[i]);
	c->n_started = 1;
	sample_start(&c->s[0]);
}

/* Every sample of the prompt ended: their choices in order, then the next
 * prompt or the answer. */
static void group_end(struct fe_call *c)
{
	for (int i = 0; i < c->p.n; i++) {
		const struct strbuf *b = &c->s[i].choice;
		if (!b->len)
			continue;
		if (c->choices.len)
			sb_addch(&c->choices, ',');
		sb_add(&c->choices, b->buf, b->len);
	}
	if (++c->prompt < (c->p.nprompts ? c->p.nprompts : 1))
		group_start(c);
	else
		call_finish(c);
}

/* The call's next step, one per turn of the loop as each may answer the
 * call and free it: the next sample of the prompt once its first has a
 * token or ended (a kick for the one after it first), group_end() once
 * all ended. */
static void on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct fe_call *c = arg;
	const struct fe_sample *first = &c->s[0];
	size_t n0;
	(void)fd;
	(void)what;
	fe_sm_output(&first->sm, &n0);
	if (c->n_started < c->p.n && (n0 || first->ended)) {
		kick(c);
		sample_start(&c->s[c->n_started++]);
	} else if (c->n_ended == c->p.n) {
		group_end(c);
	}
}

/* Take event ev for sample s and perform the action its machine answers
 * with.  After FAIL the call is freed; after FINISH it may be. */
static void call_advance(struct fe_sample *s, const struct fe_sm_event *ev)
{
	struct fe_call *c = s->c;
	enum fe_sm_state from = s->sm.state;
	/* routing again after a failure: a migration, or one that failed */
	int migrating = from == FE_SM_ROUTE && s->sm.exclude;
	enum fe_sm_action act = fe_sm_advance(&s->sm, ev);
	if (migrating && ev->kind == FE_SM_ROUTED)
		c->f->migrations[s->mig_cause]++;
	else if (migrating && ev->kind == FE_SM_NO_WORKER)
		c->f->migration_failures[FE_MIG_FAIL_NO_WORKER]++;
	else if (act == FE_SM_FAIL && ev->kind == FE_SM_WORKER_ERROR &&
		 fe_sm_migratable(ev->code))
		c->f->migration_failures[FE_MIG_FAIL_LIMIT]++;
	if (s->sm.state != from)
		LOG_DEBUG(LOG_MOD, "%s: choice %d: %s -> %s", c->id, s->index,
			  fe_sm_state_name(from), fe_sm_state_name(s->sm.state));
	switch (act) {
	case FE_SM_NONE:
		break;
	case FE_SM_CALL_PREFILL:
		remote_step(s);
		break;
	case FE_SM_CALL_WORKER:
		call_worker(s);
		break;
	case FE_SM_MIGRATE:
		LOG_INFO(LOG_MOD, "%s: choice %d: migrating from worker %016" PRIx64 " (%s)",
			 c->id, s->index, s->sm.exclude, fe_mig_causes[s->mig_cause]);
		fe_instance_mark_down(c->f, s->sm.exclude);
		if (!resume_prepare(s) && call_route(s) < 0)	/* with the worker's error */
			advance_kind(s, FE_SM_NO_WORKER);
		break;
	case FE_SM_FINISH:
		s->ended = 1;
		c->n_ended++;
		kick(c);
		break;
	case FE_SM_FAIL:
		call_fail(c);
		break;
	}
}

/* ---- other routes -------------------------------------------------------- */

static void model_json(struct frontend *f, const struct fe_model *m, struct strbuf *b)
{
	sb_adds(b, "{\"id\":");
	sb_add_json_str(b, m->name, strlen(m->name));
	sb_addf(b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"dyn\","
		"\"context_length\":%ld,\"dyn\":{\"pools\":{\"agg\":%zu,\"prefill\":%zu,"
		"\"decode\":%zu}", m->created, m->context_length,
		fe_model_routable(f, m, DISC_ROLE_AGG), fe_model_routable(f, m, DISC_ROLE_PREFILL),
		fe_model_routable(f, m, DISC_ROLE_DECODE));
	if (m->embedding_dim > 0)
		sb_addf(b, ",\"type\":\"embedding\",\"embedding_dim\":%ld,"
			"\"dimensions_truncatable\":%s", m->embedding_dim,
			m->embedding_truncatable ? "true" : "false");
	sb_adds(b, "}}");
}

static void handle_models(struct frontend *f, struct http_req *r, const char *one)
{
	struct strbuf b = STRBUF_INIT;
	if (one) {
		struct fe_model *m = fe_model_get(f, one);
		if (!m) {
			reply_model_not_found(r, FE_API_CHAT, one);
			fe_stats_count(fe_stats_get(f, ""), "models", 404);
			return;
		}
		model_json(f, m, &b);
		fe_model_put(f, m);
	} else {
		int n = 0;
		sb_adds(&b, "{\"object\":\"list\",\"data\":[");
		for (struct fe_model *m = f->models; m; m = m->next) {
			if (n++)
				sb_addch(&b, ',');
			model_json(f, m, &b);
		}
		sb_adds(&b, "]}");
	}
	fe_stats_count(fe_stats_get(f, ""), "models", 200);
	http_reply(r, 200, "application/json", b.buf, b.len, NULL);
	sb_release(&b);
}

/* The key as "Authorization: Bearer KEY", or as Anthropic's clients send
 * it, "x-api-key: KEY". */
static int authorized(struct frontend *f, struct http_req *r)
{
	if (!f->api_key)
		return 1;
	const char *h = http_req_header(r, "Authorization");
	if (h && !strncasecmp(h, "Bearer ", 7)) {
		h += 7;
		while (*h == ' ')
			h++;
	} else if (!(h = http_req_header(r, "x-api-key"))) {
		return 0;
	}
	size_t a = strlen(h), b = strlen(f->api_key);
	unsigned diff = a != b;
	for (size_t i = 0; i < a && i < b; i++)
		diff |= (unsigned char)(h[i] ^ f->api_key[i]);
	return !diff;
}

/* ---- /health, /live, /metrics (net/sysport.h) ---------------------------- */

static int fe_health(void *arg, struct strbuf *fields)
{
	struct frontend *f = arg;
	int n = 0;
	sb_adds(fields, ",\"models\":[");
	for (struct fe_model *m = f->models; m; m = m->next) {
		if (n++)
			sb_addch(fields, ',');
		sb_add_json_str(fields, m->name, strlen(m->name));
	}
	/* the workers each model could be routed to now (healthy, not
	 * marked down): 0 means its requests would fail */
	sb_adds(fields, "],\"routable\":{");
	n = 0;
	for (struct fe_model *m = f->models; m; m = m->next) {
		if (n++)
			sb_addch(fields, ',');
		sb_add_json_str(fields, m->name, strlen(m->name));
		sb_addf(fields, ":%zu", fe_model_nusable(f, m, FE_POOL_DECODE));
	}
	sb_addch(fields, '}');
	return !f->stopping;
}

static void fe_metrics(void *arg, struct strbuf *out)
{
	fe_metrics_write(arg, out);
}

void fe_http_handler(struct http_req *r, void *arg)
{
	struct frontend *f = arg;
	const char *path = http_req_path(r), *method = http_req_method(r);
	int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
	const struct sysport_role sys = { fe_health, fe_metrics, NULL, f };

	if (sysport_handle(&sys, r))
		return;
	if (!strcmp(path, "/openapi.json")) {
		if (!get)
			return http_reply_method_not_allowed(r, "GET, HEAD");
		const char *doc = f->api_key ? fe_openapi_json_keyed : fe_openapi_json_open;
		http_reply(r, 200, "application/json", doc, strlen(doc), NULL);
	} else if (!strncmp(path, "/v1/", 4) && !authorized(f, r)) {
		static const char msg[] = "Incorrect or missing API key: send it as "
					  "'Authorization: Bearer KEY' or 'x-api-key: KEY'";
		if (!strncmp(path, "/v1/messages", 12))
			reply_error(r, FE_API_MESSAGES, 401, msg, NULL, NULL);
		else
			http_reply_error(r, 401, msg, NULL, "invalid_api_key",
					 "WWW-Authenticate: Bearer\r\n");
	} else if (!strcmp(path, "/v1/chat/completions") || !strcmp(path, "/v1/completions")) {
		if (!post)
			return http_reply_method_not_allowed(r, "POST");
		handle_generate(f, r, path[4] == 'c' && path[5] == 'h' ? FE_CHAT : FE_COMPLETION,
				FE_API_CHAT, 0);
	} else if (!strcmp(path, "/v1/responses") || !strncmp(path, "/v1/messages", 12)) {
		int count = !strcmp(path, "/v1/messages/count_tokens");
		if (strcmp(path, "/v1/responses") && path[12] && !count)
			return http_reply_no_such_path(r);
		if (!post)
			return http_reply_method_not_allowed(r, "POST");
		handle_generate(f, r, FE_CHAT, path[4] == 'r' ? FE_API_RESPONSES : FE_API_MESSAGES,
				count);
	} else if (!strcmp(path, "/v1/embeddings")) {
		if (!post)
			return http_reply_method_not_allowed(r, "POST");
		fe_handle_embeddings(f, r);
	} else if (!strcmp(path, "/v1/models")) {
		if (!get)
			return http_reply_method_not_allowed(r, "GET, HEAD");
		handle_models(f, r, NULL);
	} else if (!strncmp(path, "/v1/models/", 11) && path[11]) {
		if (!get)
			return http_reply_method_not_allowed(r, "GET, HEAD");
		/* Model ids may contain '/' (ORG/NAME); %2F too. */
		struct strbuf name = STRBUF_INIT;
		for (const char *p = path + 11; *p; p++) {
			unsigned v;
			if (*p == '%' && sscanf(p + 1, "%2x", &v) == 1 && p[1] && p[2]) {
				sb_addch(&name, (int)v);
				p += 2;
			} else {
				sb_addch(&name, *p);
			}
		}
		handle_models(f, r, name.buf);
		sb_release(&name);
	} else {
		http_reply_no_such_path(r);
	}
}
