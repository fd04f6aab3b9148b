/*
 * handler.c - the frontend's HTTP routes and the life of one generation
 * request (see frontend.h).
 *
 * A request: parse and validate (request.c), find the model, then for
 * each choice (a completions batch has one per prompt, answered one after
 * the other): render the chat template, tokenize, check the context
 * length, and let the request's state machine (call_sm.h) lead it
 * through routing, the remote step and the worker's stream; this file
 * performs the actions it returns.  Worker frames carry token ids; each
 * goes through the incremental detokenizer into `pending`, stop_scan()
 * says how much of `pending` may be sent, the rest waits for more text;
 * logprobs.h lines logprobs up with the text and oai.h writes OpenAI's
 * shapes.  A chat request whose model has output parsers (models.c,
 * core/parse/parse.h) sends that text through its parser: content,
 * reasoning and whole tool calls come out, and what the parser holds back
 * is decided when the choice ends.  The Responses and Messages APIs
 * (apis.h) come as chat requests and leave in their own shapes: emit_*
 * hand them the text, reasoning and calls, call_finish() their end.
 * A streamed response starts with the first worker frame (so
 * that a worker that fails before producing anything can be retried on
 * another one, or answered with a real HTTP status).  The client going
 * away cancels the worker call and frees everything at once.
 *
 * Migration (call_sm.h): when a worker's stream breaks, the next worker
 * gets the prompt followed by the ids the choice got so far, max_tokens
 * and min_tokens less their count, and no remote step; everything the
 * client sees (the detokenizer, the stop-string scan, the logprobs, the
 * usage, the id) belongs to the call and goes on as if nothing happened.
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

/* One generation request: its HTTP exchange, its parameters, where its
 * state machine stands, and the choice being generated. */
struct fe_call {
	/* the exchange */
	struct frontend *f;
	struct http_req *http;		/* NULL once answered */
	const char *endpoint;		/* for the status counts */
	struct fe_stats *stats;
	uint64_t t0, t_last;
	int streaming;			/* the event stream began */
	enum fe_api api;		/* the API it came by (apis.h) */
	int count_only;			/* /v1/messages/count_tokens: the prompt's length */
	struct fe_alt alt;		/* the Responses / Messages API's answer */
	char *echo;			/* the request fields the Responses API repeats */
	const char *stop_str;		/* the stop string hit (in p.stops) */
	/* the request */
	struct fe_params p;
	struct fe_model *m;
	char id[48];
	struct oai_head head;
	struct fe_sm sm;		/* its step, worker, and output ids */
	/* the current choice */
	struct strbuf req_body;		/* the generate request sent to the worker */
	struct tok_stream *detok;
	struct strbuf pending;		/* decoded, not yet sent */
	struct strbuf text;		/* its whole text (not streamed) */
	struct fe_lp lp;
	/* chat output parsed (core/parse/parse.h; NULL: not): its events,
	 * and (not streamed) the reasoning and the tool calls so far */
	struct parser *parser;
	int reasoning_on;		/* it reads reasoning: the message has the fields */
	struct parse_evs evs;
	struct strbuf reasoning, calls;
	int ncalls;
	long cached_tokens;		/* prompt tokens the worker had cached */
	/* prompt logprobs (gen.prompt_logprobs >= 0): those of prompt tokens
	 * 1.. so far; plps_done once all came (an echo's entries are made) */
	struct gen_logprob *plps;
	size_t n_plps, cap_plps;
	int plps_done;
	struct strbuf plps_json;	/* chat: the response's prompt_logprobs */
	int stop_hit;
	char finish[16];
	uint64_t sample_worker;		/* n > 1: where the prompt's first sample went */
	uint64_t *hashes;		/* the prompt's block hashes, for routers */
	size_t nhashes;
	/* migrated after tokens: what the next worker gets as its prompt
	 * (the prompt, then the ids so far; NULL before) */
	int32_t *resume_ids;
	size_t n_resume;
	enum fe_mig_cause mig_cause;	/* why the last stream broke */
	int call_tokens;		/* the current worker call sent ids */
	uint64_t t_frame;		/* when it last sent a frame (ms) */
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
	/* the answer */
	struct oai_usage usage;		/* totals over the choices */
	struct strbuf choices;		/* not streamed: the choices so far */
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
	struct strbuf *sbs[] = { &c->pending, &c->text, &c->req_body, &c->out, &c->choices,
				 &c->reasoning, &c->calls, &c->plps_json };
	for (size_t i = 0; i < sizeof(sbs) / sizeof(sbs[0]); i++)
		sb_init(sbs[i], 0);
	return c;
}

static void prefill_stop(struct fe_call *c);

static void call_free(struct fe_call *c)
{
	struct frontend *f = c->f;
	if (c->st)
		rpc_stream_cancel(c->st);
	if (c->progress_timer)
		event_free(c->progress_timer);
	prefill_stop(c);
	fe_route_end(&c->route);
	free(c->hashes);
	free(c->resume_ids);
	free(c->plps);
	sb_release(&c->plps_json);
	free(c->addr);
	free(c->path);
	free(c->pre_addr);
	free(c->pre_path);
	free(c->kv_source);
	if (c->stats) {
		c->stats->inflight--;
		metrics_hist_observe(&c->stats->duration, (double)(mono_ns() - c->t0) / 1e9);
	}
	f->inflight--;
	tok_stream_free(c->detok);
	parser_free(c->parser);
	parse_evs_release(&c->evs);
	sb_release(&c->reasoning);
	sb_release(&c->calls);
	fe_lp_release(&c->lp);
	fe_sm_release(&c->sm);
	fe_params_release(&c->p);
	fe_alt_release(&c->alt);
	free(c->echo);
	sb_release(&c->pending);
	sb_release(&c->text);
	sb_release(&c->req_body);
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

/* Answer with the error set, in the stream when one was started. */
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

static void call_advance(struct fe_call *c, const struct fe_sm_event *ev);
static void choice_start(struct fe_call *c);

static void advance_kind(struct fe_call *c, enum fe_sm_event_kind kind)
{
	const struct fe_sm_event ev = { .kind = kind };
	call_advance(c, &ev);
}

static void on_client_close(struct http_req *r, void *arg)
{
	struct fe_call *c = arg;
	(void)r;
	LOG_DEBUG(LOG_MOD, "%s: client went away; cancelling", c->id);
	c->http = NULL;
	advance_kind(c, FE_SM_CLIENT_GONE);
}

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
			oai_sse_role(&c->head, &b);
		else
			fe_alt_begin(&c->alt, (long)c->p.gen.n_tokens, &b);
		rc = http_stream_write(c->http, b.buf, b.len);
		sb_release(&b);
	}
	return rc;
}

/* Send text (and the logprobs gathered) as one chunk: content, or
 * reasoning (chat). */
static void emit_text(struct fe_call *c, enum parse_ev_kind kind, const char *text, size_t len)
{
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
		sb_add(kind == PARSE_REASONING ? &c->reasoning : &c->text, text, len);
		return;
	}
	if (!len && !c->lp.out.n)
		return;
	/* the status line and headers before any chunk (a request with
	 * max_tokens 0 echoes its prompt before any worker frame) */
	if (stream_begin(c) < 0)
		return;
	sb_reset(&c->out);
	if (kind == PARSE_REASONING)
		oai_sse_reasoning(&c->head, (int)c->sm.choice, text, len, &c->lp.out, &c->out);
	else
		oai_sse_text(&c->head, (int)c->sm.choice, text, len, &c->lp.out, &c->out);
	http_stream_write(c->http, c->out.buf, c->out.len);
}

/* Send a parsed tool call, with its id: the format's, else "call_" (the
 * Messages API: "toolu_") and 24 random letters and digits (as OpenAI's). */
static void emit_call(struct fe_call *c, const struct parse_ev *e)
{
	static const char abc[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
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
		oai_tool_call(cid, e->name, e->text, &c->calls);
	} else if (stream_begin(c) == 0) {
		sb_reset(&c->out);
		oai_sse_tool_call(&c->head, (int)c->sm.choice, c->ncalls, cid, e->name, e->text,
				  &c->out);
		http_stream_write(c->http, c->out.buf, c->out.len);
	}
	c->ncalls++;
}

/* Send the parser's events. */
static void emit_events(struct fe_call *c)
{
	for (size_t i = 0; i < c->evs.n; i++) {
		const struct parse_ev *e = &c->evs.v[i];
		if (e->kind == PARSE_CALL)
			emit_call(c, e);
		else
			emit_text(c, e->kind, e->text, e->len);
	}
	parse_evs_reset(&c->evs);
}

/* Send text (through the parser when the output is parsed). */
static void emit(struct fe_call *c, const char *text, size_t len)
{
	if (!c->parser) {
		emit_text(c, PARSE_CONTENT, text, len);
		return;
	}
	parser_feed(c->parser, text, len, &c->evs);
	emit_events(c);
}

/* Send what the stop strings allow of pending; final: nothing more comes. */
static void release_pending(struct fe_call *c, int final)
{
	if (c->stop_hit)
		return;
	int hit;
	size_t n = stop_scan((const char *const *)c->p.stops, c->p.nstops, c->pending.buf,
			     c->pending.len, &hit);
	if (final && !hit)
		n = c->pending.len;
	if (hit && c->p.include_stop)
		n += (size_t)hit;	/* vLLM's include_stop_str_in_output */
	emit(c, c->pending.buf, n);
	sb_remove(&c->pending, 0, n);
	if (hit) {
		/* pending now begins with the stop string */
		for (size_t i = 0; i < c->p.nstops && !c->stop_str; i++)
			if (!strncmp(c->pending.buf, c->p.stops[i], strlen(c->p.stops[i])))
				c->stop_str = c->p.stops[i];
		c->stop_hit = 1;
		snprintf(c->finish, sizeof(c->finish), "stop");
		sb_reset(&c->pending);
	}
}

/* vLLM's prompt_logprobs of the choice: a member of its choice
 * (completions) or, once, of the response (chat). */
static void prompt_logprobs_out(struct fe_call *c)
{
	struct strbuf b = STRBUF_INIT;
	if (c->plps_done)
		fe_lp_prompt_json(c->m->tok, c->p.gen.token_ids, c->p.gen.n_tokens, c->plps,
				  c->p.prompt_logprobs, &b);
	else
		sb_adds(&b, "null");	/* the worker did not send them all */
	if (c->head.api == OAI_CHAT) {
		if (!c->sm.choice)
			sb_add(&c->plps_json, b.buf, b.len);
	} else {
		oai_add_member(&c->choices, "prompt_logprobs", b.buf, b.len);
	}
	sb_release(&b);
}

/* The current choice ended: write its end, count it, and let the
 * machine say what follows. */
static void choice_end(struct fe_call *c)
{
	if (!c->finish[0])
		snprintf(c->finish, sizeof(c->finish), "stop");
	fe_lp_end(&c->lp, "", 0);	/* stopped inside a character: the rest never came */
	if (c->parser) {	/* what it held back is decided now */
		parser_finish(c->parser, &c->evs);
		emit_events(c);
		if (c->ncalls && !strcmp(c->finish, "stop"))
			snprintf(c->finish, sizeof(c->finish), "tool_calls");
	}
	if (c->st) {
		rpc_stream_cancel(c->st);
		c->st = NULL;
	}
	size_t n_out;
	fe_sm_output(&c->sm, c->sm.choice, &n_out);
	c->usage.completion_tokens += (long)n_out;
	if (c->sm.choice % (size_t)c->p.n == 0) {	/* n samples: their prompt once */
		c->usage.prompt_tokens += (long)c->p.gen.n_tokens;
		c->usage.cached_tokens += c->cached_tokens;
	}
	sb_reset(&c->out);
	if (c->api != FE_API_CHAT) {
		;	/* one choice: its end is the answer's (call_finish) */
	} else if (c->p.stream) {
		stream_begin(c);
		oai_sse_finish(&c->head, (int)c->sm.choice, c->finish, &c->lp.out, &c->out);
		http_stream_write(c->http, c->out.buf, c->out.len);
	} else {
		const struct oai_parsed x = { c->reasoning_on, &c->reasoning, &c->calls };
		oai_choice(c->head.api, (int)c->sm.choice, c->text.buf, c->text.len,
			   c->parser ? &x : NULL, &c->lp.out, c->finish, &c->choices);
		if (c->p.prompt_logprobs >= 0)
			prompt_logprobs_out(c);
	}
	advance_kind(c, FE_SM_CHOICE_END);
}

/* Every choice ended: the rest of the answer. */
static void call_finish(struct fe_call *c)
{
	struct strbuf *b = &c->out;
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, 200);
	sb_reset(b);
	if (c->api != FE_API_CHAT) {
		if (c->p.stream)
			stream_begin(c);
		c->alt.input_tokens = c->usage.prompt_tokens;
		fe_alt_end(&c->alt, c->finish, c->stop_str, c->usage.completion_tokens, b);
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
static int skipped_special(struct fe_call *c, int32_t id)
{
	size_t n;
	const char *s;
	if (!c->parser || !tok_is_special(c->m->tok, id))
		return 0;
	s = tok_id_to_token(c->m->tok, id, &n);
	return !s || !parse_keeps_special(c->m->tool, c->m->rsn, s, n);
}

/* Take one worker frame; returns 1 once a stop string was hit. */
static int consume(struct fe_call *c, const void *data, size_t len)
{
	struct gen_output o;

	if (gen_output_parse(data, len, &o) < 0) {
		LOG_WARN(LOG_MOD, "%s: bad frame from worker %016" PRIx64 ": %s", c->id,
			 c->sm.worker, err_msg());
		return 0;
	}
	if (c->p.stream && stream_begin(c) < 0) {
		gen_output_release(&o);
		return 0;	/* the client is gone; on_close follows */
	}
	if (o.n_plps && !c->plps_done) {
		if (c->n_plps + o.n_plps > c->cap_plps) {
			c->cap_plps = c->n_plps + o.n_plps;
			c->plps = xrealloc(c->plps, c->cap_plps * sizeof(*c->plps));
		}
		memcpy(c->plps + c->n_plps, o.plps, o.n_plps * sizeof(*c->plps));
		c->n_plps += o.n_plps;
	}
	if (c->p.gen.prompt_logprobs >= 0 && !c->plps_done &&
	    c->n_plps + 1 >= c->p.gen.n_tokens) {	/* all came: an echo's entries first */
		c->plps_done = 1;
		if (c->p.echo)
			fe_lp_prompt(&c->lp, c->p.gen.token_ids, c->p.gen.n_tokens, c->plps);
	}
	uint64_t now = mono_ns();
	size_t n_out;
	fe_sm_output(&c->sm, c->sm.choice, &n_out);
	if (o.n && !c->call_tokens) {	/* this worker's first: the routers count it */
		c->call_tokens = 1;
		fe_route_first_token(&c->route);
	}
	for (size_t i = 0; i < o.n && !c->stop_hit; i++, n_out++) {
		if (c->stats) {
			if (!n_out)
				metrics_hist_observe(&c->stats->ttft, (double)(now - c->t0) / 1e9);
			else
				metrics_hist_observe(&c->stats->itl, (double)(now - c->t_last) / 1e9);
		}
		c->t_last = now;
		const struct fe_sm_event ev = { .kind = FE_SM_TOKENS, .ids = &o.token_ids[i],
						.n_ids = 1 };
		call_advance(c, &ev);
		if (c->stats)	/* counted as they come: cancelled requests too */
			c->stats->output_tokens++;
		size_t before = c->pending.len;
		if (!skipped_special(c, o.token_ids[i]))
			tok_stream_put(c->detok, o.token_ids[i], &c->pending);
		if (o.lps)
			fe_lp_token(&c->lp, o.token_ids[i], &o.lps[i], c->pending.buf + before,
				    c->pending.len - before);
		release_pending(c, 0);
	}
	/* after a migration the worker's prompt holds generated ids: the
	 * client's prompt had at most all of its own cached */
	if (o.cached_tokens >= 0)
		c->cached_tokens = o.cached_tokens < (long)c->p.gen.n_tokens
					   ? o.cached_tokens : (long)c->p.gen.n_tokens;
	if (o.finish_reason[0] && !c->stop_hit)
		snprintf(c->finish, sizeof(c->finish), "%s",
			 !strcmp(o.finish_reason, "length") ? "length" : "stop");
	gen_output_release(&o);
	return c->stop_hit;
}

static void on_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		    void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	(void)flags;
	c->t_frame = mono_ms();
	if (consume(c, data, len))
		choice_end(c);	/* cancels the worker's stream */
}

/* The worker's stream is complete: the text held back goes out. */
static void stream_done(struct fe_call *c)
{
	size_t before = c->pending.len;
	tok_stream_flush(c->detok, &c->pending);
	fe_lp_end(&c->lp, c->pending.buf + before, c->pending.len - before);
	release_pending(c, 1);
	choice_end(c);
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	(void)flags;
	c->st = NULL;
	if (len && consume(c, data, len)) {
		choice_end(c);
		return;
	}
	stream_done(c);
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
static void worker_failed(struct fe_call *c, int code, const char *msg, enum fe_mig_cause cause)
{
	LOG_WARN(LOG_MOD, "%s: worker %016" PRIx64 " failed (%d): %s", c->id, c->sm.worker, code,
		 msg);
	c->mig_cause = cause;
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
	call_advance(c, &ev);
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	c->st = NULL;
	if (c->finish[0]) {	/* its last frame came; only the END was lost */
		stream_done(c);
		return;
	}
	worker_failed(c, code, msg, mig_cause(code, msg));
}

static const struct rpc_stream_cbs worker_cbs = { on_data, on_end, on_error };

/* Once a second while a worker streams: a stream on a worker found
 * unhealthy (core/discovery/health.h) that has been silent for a health
 * check's timeout, or one silent for the progress timeout after its first
 * token (a hung engine), ends as a lost connection would, and the
 * request moves on. */
static void on_progress_tick(evutil_socket_t fd, short what, void *arg)
{
	struct fe_call *c = arg;
	struct frontend *f = c->f;
	uint64_t now = mono_ms();
	char why[128];
	(void)fd;
	(void)what;
	if (!c->st)
		return;
	/* a stream still sending tokens stays, whatever a check said */
	uint64_t quiet = f->o.health_check_timeout_ms > 0 ? (uint64_t)f->o.health_check_timeout_ms
							  : WORKER_HEALTH_TIMEOUT_MS;
	if (worker_health_unhealthy(f->health, c->sm.worker) && now - c->t_frame >= quiet) {
		snprintf(why, sizeof(why), "the worker failed its health check");
	} else if (c->call_tokens && f->o.progress_timeout_ms > 0 &&
		   now - c->t_frame >= (uint64_t)f->o.progress_timeout_ms) {
		snprintf(why, sizeof(why), "no token for %.1f s", (double)(now - c->t_frame) / 1e3);
		if (worker_health_stalled(f->health, c->sm.worker, why) < 0)
			fe_instance_mark_down(f, c->sm.worker);	/* not checked */
	} else {
		return;
	}
	rpc_stream_cancel(c->st);
	c->st = NULL;
	worker_failed(c, -ETIMEDOUT, why, FE_MIG_STALLED);
}

/* The length of the prompt the next worker gets. */
static size_t worker_prompt_len(const struct fe_call *c)
{
	return c->resume_ids ? c->n_resume : c->p.gen.n_tokens;
}

/* MIGRATE: after tokens, the next worker's prompt is the prompt followed
 * by them (routed on its block hashes).  1 when nothing was left to
 * generate: the choice ended. */
static int resume_prepare(struct fe_call *c)
{
	size_t n_out, n = c->p.gen.n_tokens;
	const int32_t *out = fe_sm_output(&c->sm, c->sm.choice, &n_out);
	if (!n_out)
		return 0;	/* the request as it is */
	if ((long)n_out >= c->p.gen.max_tokens) {
		snprintf(c->finish, sizeof(c->finish), "length");
		stream_done(c);
		return 1;
	}
	c->resume_ids = xrealloc(c->resume_ids, (n + n_out) * sizeof(*c->resume_ids));
	memcpy(c->resume_ids, c->p.gen.token_ids, n * sizeof(*c->resume_ids));
	memcpy(c->resume_ids + n, out, n_out * sizeof(*c->resume_ids));
	c->n_resume = n + n_out;
	free(c->hashes);
	c->nhashes = fe_route_hashes(c->f, c->m, c->resume_ids, c->n_resume, &c->hashes);
	return 0;
}

/* CALL_WORKER: send the request to the chosen worker (with the remote
 * prefill's kv_source when it had one; after a migration, with the
 * resumed prompt and the limits less the ids so far). */
static void call_worker(struct fe_call *c)
{
	struct gen_request g = c->p.gen;	/* a view: only encoded */
	g.s.seed += c->sm.choice % (size_t)c->p.n;	/* n samples: seed + index */
	if (c->resume_ids) {
		long done = (long)(c->n_resume - c->p.gen.n_tokens);
		g.token_ids = c->resume_ids;
		g.n_tokens = c->n_resume;
		g.max_tokens -= done;
		g.min_tokens = g.min_tokens > done ? g.min_tokens - done : 0;
		if (g.grammar_kind)
			g.grammar_done = done;
	}
	if (c->plps_done)	/* prompt logprobs: all came, or from the start again */
		g.prompt_logprobs = -1;
	else
		c->n_plps = 0;
	g.kv_source = c->kv_source;
	sb_reset(&c->req_body);
	gen_request_encode(&g, &c->req_body);
	c->call_tokens = 0;
	c->t_frame = mono_ms();
	int rc = rpc_call(c->f->rpc, c->addr, c->path, c->req_body.buf, c->req_body.len, 0,
			  &worker_cbs, c, &c->st);
	if (rc < 0) {
		c->st = NULL;
		worker_failed(c, rc, err_msg(), FE_MIG_CONNECT);
		return;
	}
	if (!c->progress_timer) {
		static const struct timeval second = { 1, 0 };
		c->progress_timer = event_new(c->f->base, -1, EV_PERSIST, on_progress_tick, c);
		event_add(c->progress_timer, &second);
	}
}

/* ---- the remote prefill ---------------------------------------------------- */

/* Close the prefill call and its timer (the prefill worker is told when
 * the call is still open) and uncount it in the router. */
static void prefill_stop(struct fe_call *c)
{
	if (c->pst)
		rpc_stream_cancel(c->pst);
	c->pst = NULL;
	if (c->pre_timer)
		event_free(c->pre_timer);
	c->pre_timer = NULL;
	fe_route_prefill_end(&c->route);
}

/* The remote step failed: the decode worker prefills the prompt itself. */
static void prefill_failed(struct fe_call *c, enum fe_prefill_cause cause, const char *why)
{
	LOG_WARN(LOG_MOD, "%s: remote prefill on %016" PRIx64 " failed (%s): %s; worker %016"
		 PRIx64 " prefills", c->id, c->sm.prefill, fe_prefill_causes[cause], why,
		 c->sm.worker);
	c->f->prefill_failures[cause]++;
	prefill_stop(c);
	free(c->kv_source);
	c->kv_source = NULL;
	advance_kind(c, FE_SM_REMOTE_FAILED);
}

/* A frame of the prefill worker's answer: keep its kv_source.  -1 on a
 * frame that is not one. */
static int prefill_frame(struct fe_call *c, const void *data, size_t len)
{
	struct gen_output o;
	if (gen_output_parse(data, len, &o) < 0)
		return -1;
	if (o.kv_source) {
		free(c->kv_source);
		c->kv_source = o.kv_source;
		o.kv_source = NULL;
	}
	gen_output_release(&o);
	return 0;
}

static void on_prefill_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			    void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	(void)flags;
	if (prefill_frame(c, data, len) < 0)
		prefill_failed(c, FE_PREFILL_ERROR, err_msg());
}

static void on_prefill_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			   void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	(void)flags;
	c->pst = NULL;
	if (len && prefill_frame(c, data, len) < 0) {
		prefill_failed(c, FE_PREFILL_ERROR, err_msg());
		return;
	}
	if (!c->kv_source) {
		prefill_failed(c, FE_PREFILL_NO_KV_SOURCE, "its answer has no kv_source");
		return;
	}
	LOG_DEBUG(LOG_MOD, "%s: prefilled on %016" PRIx64 ": %s", c->id, c->sm.prefill,
		  c->kv_source);
	prefill_stop(c);
	advance_kind(c, FE_SM_REMOTE_DONE);
}

static void on_prefill_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	c->pst = NULL;
	if (code < 0)	/* unreachable: not again for a while */
		fe_instance_mark_down(c->f, c->sm.prefill);
	prefill_failed(c, FE_PREFILL_ERROR, msg);
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
static void remote_step(struct fe_call *c)
{
	struct strbuf b = STRBUF_INIT;
	int64_t ms = c->f->o.prefill_timeout_ms > 0 ? c->f->o.prefill_timeout_ms : 30000;
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	c->pre_timer = evtimer_new(c->f->base, on_prefill_timeout, c);
	evtimer_add(c->pre_timer, &tv);
	c->p.gen.prefill_only = 1;
	gen_request_encode(&c->p.gen, &b);
	c->p.gen.prefill_only = 0;
	int rc = rpc_call(c->f->rpc, c->pre_addr, c->pre_path, b.buf, b.len, 0, &prefill_cbs, c,
			  &c->pst);
	sb_release(&b);
	if (rc < 0) {
		c->pst = NULL;
		fe_instance_mark_down(c->f, c->sm.prefill);
		prefill_failed(c, FE_PREFILL_ERROR, err_msg());
	}
}

/* A plan without a router's view of the caches (round-robin, random):
 * the whole prompt counts as uncached, the prefill queues as unknown;
 * the prefill worker in turn. */
static void plan_in_turn(struct fe_call *c, struct fe_route_plan *plan)
{
	const char *path;
	size_t np = fe_model_nusable(c->f, c->m, FE_POOL_PREFILL);
	plan->prefill = 0;
	plan->decision = disagg_decide(&c->f->disagg_cfg, (long)worker_prompt_len(c), NULL, np);
	if (plan->decision == DISAGG_REMOTE &&
	    !fe_model_pick(c->f, c->m, FE_POOL_PREFILL, 0, &plan->prefill, &path))
		plan->decision = DISAGG_LOCAL_NO_PREFILL;
}

/* Choose the workers: the plan the router service made (when routed), else
 * the embedded router's or the next in turn; the machine takes it from
 * there.  0 (the call may be answered and freed by then), or -EAGAIN when
 * no worker is left. */
static int call_dispatch(struct fe_call *c, const struct fe_route_plan *routed)
{
	const char *path = NULL, *addr = NULL, *pre_path = NULL, *pre_addr = NULL;
	uint64_t exclude = c->sm.exclude;
	struct fe_route_plan plan = { 0 };

	if (routed && routed->worker != exclude &&
	    fe_model_usable(c->f, c->m, FE_POOL_DECODE, routed->worker, &addr, &path)) {
		plan = *routed;
	} else {
		if (routed) {
			LOG_DEBUG(LOG_MOD, "%s: the router service chose %016" PRIx64 ", not usable "
				  "here", c->id, routed->worker);
			fe_route_unused(&c->route);
		}
		if (c->m->kv && fe_route_select(c->f, c->m, c->id, c->hashes, c->nhashes,
						worker_prompt_len(c), exclude, &plan) == 0 &&
		    !fe_model_usable(c->f, c->m, FE_POOL_DECODE, plan.worker, &addr, &path))
			addr = NULL;
	}
	if (!addr) {
		addr = fe_model_pick(c->f, c->m, FE_POOL_DECODE, exclude, &plan.worker, &path);
		if (!addr)
			return -EAGAIN;
		plan_in_turn(c, &plan);
	}
	if (c->resume_ids || c->p.gen.prompt_logprobs >= 0) {
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
	fe_route_dispatch(&c->route, c->f, c->m, &plan, c->hashes, c->nhashes);
	free(c->addr);
	free(c->path);
	free(c->pre_addr);
	free(c->pre_path);
	free(c->kv_source);
	c->addr = xstrdup(addr);
	c->path = xstrdup(path);
	c->pre_addr = pre_addr ? xstrdup(pre_addr) : NULL;
	c->pre_path = pre_path ? xstrdup(pre_path) : NULL;
	c->kv_source = NULL;
	if (c->sm.choice % (size_t)c->p.n == 0)
		c->sample_worker = plan.worker;
	const struct fe_sm_event ev = { .kind = FE_SM_ROUTED, .worker = plan.worker,
					.prefill = plan.prefill };
	call_advance(c, &ev);
	return 0;
}

static void on_routed(void *arg, int ok, const struct fe_route_plan *plan)
{
	struct fe_call *c = arg;
	set_no_worker(c);
	if (call_dispatch(c, ok ? plan : NULL) < 0)
		advance_kind(c, FE_SM_NO_WORKER);
}

/* Route the request (through the router service when one is in use) and
 * send it.  0 (maybe still routing; the call may be answered and freed
 * by then), or -EAGAIN when no worker is left. */
static int call_route(struct fe_call *c)
{
	fe_route_end(&c->route);
	/* a prompt's later samples go where its first one went: its blocks
	 * are in that worker's prefix cache (the prompt is prefilled once) */
	const char *addr, *path;
	if (c->sm.choice % (size_t)c->p.n && !c->resume_ids && c->sample_worker != c->sm.exclude &&
	    fe_model_usable(c->f, c->m, FE_POOL_DECODE, c->sample_worker, &addr, &path)) {
		const struct fe_route_plan pin = { .worker = c->sample_worker,
						   .decision = DISAGG_LOCAL_SHORT };
		return call_dispatch(c, &pin);
	}
	if (fe_route_service(&c->route, c->f, c->m, c->id, c->hashes, c->nhashes,
			     worker_prompt_len(c), c->sm.exclude, on_routed, c) == 0)
		return 0;
	return call_dispatch(c, NULL);
}

/* ---- generation endpoints -------------------------------------------------- */

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
	fe_lp_init(&c->lp, c->m->tok, c->head.api, c->p.logprobs);
	fe_sm_init(&c->sm, (c->p.nprompts ? c->p.nprompts : 1) * (size_t)c->p.n,
		   f->o.migration_limit);

	http_req_on_close(r, on_client_close, c);
	choice_start(c);
}

/* Tokenize the current choice's prompt, check it against the context
 * length and encode the worker request.  -EINVAL with the error set on
 * bad input. */
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
	fe_lp_begin(&c->lp, ids.v, ids.n, echo ? oai_utf8_chars(prompt.buf, prompt.len) : 0);
	c->p.gen.token_ids = ids.v;
	c->p.gen.n_tokens = ids.n;
	ids.v = NULL;
	free(c->hashes);
	c->nhashes = fe_route_hashes(c->f, c->m, c->p.gen.token_ids, c->p.gen.n_tokens,
				     &c->hashes);
	if (c->sm.choice % (size_t)c->p.n == 0)
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
	if (tool || rsn) {
		c->parser = parser_new(tool, c->p.tools_json, rsn,
				       parse_prompt_opens_reasoning(rsn, prompt.buf, prompt.len));
		c->reasoning_on = rsn || tool == PARSE_TOOL_GPT_OSS;
	}
	/* a parser sees the special tokens of its markup (skipped_special) */
	c->detok = tok_stream_new(c->m->tok, !c->parser);
	tok_stream_prime(c->detok, c->p.gen.token_ids, c->p.gen.n_tokens);
	if (echo)
		sb_add(&c->pending, prompt.buf, prompt.len);
	sb_release(&prompt);
	tok_ids_release(&ids);
	return 0;
bad:
	sb_release(&prompt);
	tok_ids_release(&ids);
	return rc < 0 ? rc : -EINVAL;
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

/* Start the machine's current choice: choice i is sample i % n of
 * prompt i / n (a batch has several prompts). */
static void choice_start(struct fe_call *c)
{
	if (c->p.nprompts && c->sm.choice % (size_t)c->p.n == 0) {	/* a batch's next prompt */
		struct fe_prompt *q = &c->p.prompts[c->sm.choice / (size_t)c->p.n];
		free(c->p.prompt_text);
		free(c->p.prompt_ids);
		c->p.prompt_text = q->text;
		c->p.prompt_ids = q->ids;
		c->p.n_prompt_ids = q->n_ids;
		c->p.has_prompt_ids = q->is_ids;
		q->text = NULL;
		q->ids = NULL;
	}
	if (c->sm.choice) {	/* what the last choice left */
		free(c->p.gen.token_ids);
		c->p.gen.token_ids = NULL;
		c->p.gen.n_tokens = 0;
		free(c->resume_ids);
		c->resume_ids = NULL;
		c->n_resume = 0;
		tok_stream_free(c->detok);
		c->detok = NULL;
		parser_free(c->parser);
		c->parser = NULL;
		parse_evs_reset(&c->evs);
		sb_reset(&c->reasoning);
		sb_reset(&c->calls);
		c->ncalls = 0;
		sb_reset(&c->pending);
		sb_reset(&c->text);
		sb_reset(&c->req_body);
		c->cached_tokens = 0;
		c->n_plps = 0;
		c->plps_done = 0;
		c->stop_hit = 0;
		c->finish[0] = 0;
	}
	if (prepare(c) < 0) {
		advance_kind(c, FE_SM_BAD_PROMPT);
		return;
	}
	if (c->count_only) {
		count_reply(c);
		return;
	}
	if (c->p.gen.max_tokens == 0 && c->p.gen.prompt_logprobs < 0) {	/* nothing to do */
		snprintf(c->finish, sizeof(c->finish), "length");
		release_pending(c, 1);
		choice_end(c);
		return;
	}
	set_no_worker(c);
	if (call_route(c) < 0)
		advance_kind(c, FE_SM_NO_WORKER);
}

/* Take event ev and perform the action the machine answers with.  After
 * FINISH, FAIL and DROP the call is freed. */
static void call_advance(struct fe_call *c, const struct fe_sm_event *ev)
{
	enum fe_sm_state from = c->sm.state;
	/* routing again after a failure: a migration, or one that failed */
	int migrating = from == FE_SM_ROUTE && c->sm.exclude;
	enum fe_sm_action act = fe_sm_advance(&c->sm, ev);
	if (migrating && ev->kind == FE_SM_ROUTED)
		c->f->migrations[c->mig_cause]++;
	else if (migrating && ev->kind == FE_SM_NO_WORKER)
		c->f->migration_failures[FE_MIG_FAIL_NO_WORKER]++;
	else if (act == FE_SM_FAIL && ev->kind == FE_SM_WORKER_ERROR &&
		 fe_sm_migratable(ev->code))
		c->f->migration_failures[FE_MIG_FAIL_LIMIT]++;
	if (c->sm.state != from)
		LOG_DEBUG(LOG_MOD, "%s: %s -> %s", c->id, fe_sm_state_name(from),
			  fe_sm_state_name(c->sm.state));
	switch (act) {
	case FE_SM_NONE:
		break;
	case FE_SM_CALL_PREFILL:
		remote_step(c);
		break;
	case FE_SM_CALL_WORKER:
		call_worker(c);
		break;
	case FE_SM_MIGRATE:
		LOG_INFO(LOG_MOD, "%s: migrating from worker %016" PRIx64 " (%s)", c->id,
			 c->sm.exclude, fe_mig_causes[c->mig_cause]);
		fe_instance_mark_down(c->f, c->sm.exclude);
		if (!resume_prepare(c) && call_route(c) < 0)	/* with the worker's error */
			advance_kind(c, FE_SM_NO_WORKER);
		break;
	case FE_SM_NEXT_CHOICE:
		choice_start(c);
		break;
	case FE_SM_FINISH:
		call_finish(c);
		break;
	case FE_SM_FAIL:
		call_fail(c);
		break;
	case FE_SM_DROP:
		if (c->stats)
			fe_stats_count(c->stats, c->endpoint, 499);
		call_free(c);
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
