/*
 * handler.c - the frontend's HTTP routes and the life of one generation
 * request (see frontend.h).
 *
 * A request: parse and validate (request.c), find the model, render the
 * chat template, tokenize, check the context length, pick a worker and
 * call its generate endpoint.  Worker frames carry token ids; each goes
 * through the incremental detokenizer into `pending`, stop_scan() says
 * how much of `pending` may be sent, the rest waits for more text.  A
 * streamed response starts with the first worker frame (so that a worker
 * that fails before producing anything can be retried on another one,
 * or answered with a real HTTP status).  The client going away cancels
 * the worker call and frees everything at once.
 */
#include "core/frontend/internal.h"
#include "core/frontend/stop.h"
#include "core/err.h"
#include "core/log.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/http.h"
#include "net/rpc.h"
#include "net/sysport.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>
#include <unistd.h>

#define LOG_MOD "frontend"
#define FINGERPRINT "dyn-" DYN_VERSION
#define LP_CONTEXT 6			/* text tokens the alternatives read after */
#define FE_COMPLETION_MAX_TOKENS 16	/* /v1/completions without max_tokens */

struct fe_lp_entry;

struct fe_call {
	struct frontend *f;
	struct http_req *http;
	struct fe_model *m;
	struct fe_stats *stats;
	struct fe_params p;
	const char *endpoint;
	char id[48];
	long created;
	struct tok_stream *detok;
	struct strbuf pending;		/* decoded, not yet sent */
	struct strbuf text;		/* whole text (non-streamed) */
	struct strbuf lp_a, lp_b, lp_c, lp_d;	/* logprobs pieces (see add_logprobs) */
	struct strbuf req_body;		/* the generate request, kept for retries */
	struct strbuf out;
	long completion_tokens;
	long cached_tokens;		/* prompt tokens the worker had cached */
	size_t text_chars;		/* characters of text so far (text_offset) */
	struct fe_lp_entry *held;	/* logprob entries waiting for their bytes */
	size_t nheld, aheld;
	int stop_hit, streaming, tries, finished;
	char finish[16];
	/* A completions batch ('prompt' as a list) is answered one prompt
	 * after the other on this call: choice index, totals, choices so far. */
	int index;
	long prompt_total, completion_total, cached_total;
	struct strbuf choices;
	struct rpc_stream *st;
	int32_t ctx[LP_CONTEXT];	/* the last text tokens (alternatives' context) */
	size_t nctx;
	uint64_t worker;
	uint64_t t0, t_last;
	/* KV routing (route.c): the prompt's block hashes, the routed request */
	uint64_t *hashes;
	size_t nhashes;
	struct fe_route route;
	uint64_t exclude;		/* the worker that just failed (0: none) */
};

/* ---- errors ------------------------------------------------------------- */

static const char *error_type(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 404: return "not_found_error";
	case 500: return "internal_server_error";
	case 503: return "service_unavailable";
	default: return "invalid_request_error";
	}
}

static void error_json(struct strbuf *b, int status, const char *msg, const char *param,
		       const char *code)
{
	sb_adds(b, "{\"error\":{\"message\":");
	sb_add_json_str(b, msg, strlen(msg));
	sb_addf(b, ",\"type\":\"%s\",\"param\":", error_type(status));
	if (param)
		sb_add_json_str(b, param, strlen(param));
	else
		sb_adds(b, "null");
	sb_adds(b, ",\"code\":");
	if (code)
		sb_add_json_str(b, code, strlen(code));
	else
		sb_addf(b, "%d", status);
	sb_adds(b, "}}");
}

static void reply_error(struct http_req *r, int status, const char *msg, const char *param,
			const char *code, const char *extra)
{
	struct strbuf b = STRBUF_INIT;
	error_json(&b, status, msg, param, code);
	http_reply(r, status, "application/json", b.buf, b.len, extra);
	sb_release(&b);
}

/* ---- the call ------------------------------------------------------------ */

/* A zeroed call whose strbufs hold the empty string (never NULL: they are
 * printed with %s). */
static struct fe_call *call_new(void)
{
	struct fe_call *c = xcalloc(1, sizeof(*c));
	struct strbuf *sbs[] = { &c->pending, &c->text, &c->lp_a, &c->lp_b, &c->lp_c,
				 &c->lp_d, &c->req_body, &c->out, &c->choices };
	for (size_t i = 0; i < sizeof(sbs) / sizeof(sbs[0]); i++)
		sb_init(sbs[i], 0);
	return c;
}

static void lp_drop_held(struct fe_call *c);

static void call_free(struct fe_call *c)
{
	struct frontend *f = c->f;
	if (c->st)
		rpc_stream_cancel(c->st);
	fe_route_end(&c->route);
	free(c->hashes);
	if (c->stats) {
		c->stats->inflight--;
		metrics_hist_observe(&c->stats->duration, (double)(mono_ns() - c->t0) / 1e9);
	}
	f->inflight--;
	tok_stream_free(c->detok);
	lp_drop_held(c);
	free(c->held);
	fe_params_release(&c->p);
	sb_release(&c->pending);
	sb_release(&c->text);
	sb_release(&c->lp_a);
	sb_release(&c->lp_b);
	sb_release(&c->lp_c);
	sb_release(&c->lp_d);
	sb_release(&c->req_body);
	sb_release(&c->out);
	sb_release(&c->choices);
	fe_model_put(f, c->m);
	free(c);
}

static void call_error(struct fe_call *c, int status, const char *msg, const char *code)
{
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, status);
	reply_error(c->http, status, msg, NULL, code, NULL);
	c->http = NULL;
	call_free(c);
}

/* Answer status with msg, in the stream when one was started (the error
 * object's param then names stream_param), and free the call. */
static void call_fail(struct fe_call *c, int status, const char *msg, const char *stream_param)
{
	if (!c->streaming) {
		call_error(c, status, msg, NULL);
		return;
	}
	struct strbuf b = STRBUF_INIT;
	sb_adds(&b, "data: ");
	error_json(&b, status, msg, stream_param, NULL);
	sb_adds(&b, "\n\ndata: [DONE]\n\n");
	http_stream_write(c->http, b.buf, b.len);
	sb_release(&b);
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, status);
	http_stream_end(c->http);
	c->http = NULL;
	call_free(c);
}

/* No worker could take the request: 503. */
static void fail_no_worker(struct fe_call *c)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "no worker is available for model '%s'", c->m->name);
	call_fail(c, 503, msg, NULL);
}

static void on_client_close(struct http_req *r, void *arg)
{
	struct fe_call *c = arg;
	(void)r;
	LOG_DEBUG(LOG_MOD, "%s: client went away; cancelling", c->id);
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, 499);
	c->http = NULL;
	call_free(c);
}

static void chunk_head(struct fe_call *c, struct strbuf *b)
{
	sb_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", c->id,
		c->p.kind == FE_CHAT ? "chat.completion.chunk" : "text_completion", c->created);
	sb_add_json_str(b, c->m->name, strlen(c->m->name));
	sb_adds(b, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":[");
}

/* The logprobs object of the entries gathered in lp_* (then reset). */
static void logprobs_json(struct fe_call *c, struct strbuf *b)
{
	if (c->p.logprobs < 0) {
		sb_adds(b, "null");
		return;
	}
	if (c->p.kind == FE_CHAT)
		sb_addf(b, "{\"content\":[%s]}", c->lp_a.buf);
	else
		sb_addf(b, "{\"tokens\":[%s],\"token_logprobs\":[%s],\"top_logprobs\":[%s],"
			"\"text_offset\":[%s]}", c->lp_a.buf, c->lp_b.buf, c->lp_c.buf, c->lp_d.buf);
	sb_reset(&c->lp_a);
	sb_reset(&c->lp_b);
	sb_reset(&c->lp_c);
	sb_reset(&c->lp_d);
}

/* ---- logprobs ---------------------------------------------------------------
 *
 * Each sampled token's entry carries exactly the bytes it adds to the text
 * (its piece of the detokenizer's delta), so that the entries' bytes join
 * to the text, a leading space after a skipped special token included.  A
 * token that ends inside a character gets no delta of its own (the
 * detokenizer holds the character back): its entry waits in `held` until
 * the character completes, and then takes its raw bytes from the front of
 * that delta (as OpenAI does, its token reads "bytes:\xNN" when they are
 * not a whole character).  When the character never completes (an invalid
 * byte run, which the text shows as U+FFFD), each held byte piece keeps its
 * own raw byte and the replacement characters are text only.  Alternatives
 * (top_logprobs) read as they would after the last few text tokens.
 */

struct fe_lp_entry {
	int32_t id;
	int special;
	size_t nbytes;			/* raw bytes it brings (estimate, for held ones) */
	char raw[1];			/* held byte pieces: their byte */
	size_t nraw;			/* 0: not known */
	double logprob;
	struct strbuf top;		/* its top_logprobs, rendered */
};

/* Remember id as text context for the alternatives (special ids add none). */
static void lp_context_push(struct fe_call *c, int32_t id)
{
	if (tok_is_special(c->m->tok, id))
		return;
	if (c->nctx == LP_CONTEXT) {
		memmove(c->ctx, c->ctx + 1, (LP_CONTEXT - 1) * sizeof(c->ctx[0]));
		c->nctx--;
	}
	c->ctx[c->nctx++] = id;
}

/* The text id would add after the context; special ids read as themselves. */
static void text_in_context(struct fe_call *c, int32_t id, struct strbuf *out)
{
	sb_reset(out);
	if (tok_is_special(c->m->tok, id)) {
		tok_decode(c->m->tok, &id, 1, 0, out);
		return;
	}
	int32_t w[LP_CONTEXT + 1];
	memcpy(w, c->ctx, c->nctx * sizeof(w[0]));
	w[c->nctx] = id;
	struct strbuf head = STRBUF_INIT;
	tok_decode(c->m->tok, w, c->nctx, 1, &head);
	tok_decode(c->m->tok, w, c->nctx + 1, 1, out);
	size_t same = 0;
	while (same < head.len && same < out->len && head.buf[same] == out->buf[same])
		same++;
	/* back to a character boundary */
	while (same > 0 && same < out->len && ((unsigned char)out->buf[same] & 0xc0) == 0x80)
		same--;
	sb_remove(out, 0, same);
	sb_release(&head);
	/* A byte-fallback piece inside a character: its raw byte, as the
	 * sampled token's entry has it. */
	size_t len;
	const char *ts = tok_id_to_token(c->m->tok, id, &len);
	int partial = c->nheld || (out->len >= 3 && !memcmp(out->buf + out->len - 3,
							     "\xef\xbf\xbd", 3));
	if (partial && ts && len == 6 && !strncmp(ts, "<0x", 3) && ts[5] == '>') {
		char hex[3] = { ts[3], ts[4], 0 };
		sb_reset(out);
		sb_addch(out, (int)strtoul(hex, NULL, 16));
	}
}

/* Whether id is a byte-fallback piece "<0xNN>". */
static int is_byte_piece(const struct tok *tok, int32_t id)
{
	size_t len;
	const char *s = tok_id_to_token(tok, id, &len);
	return s && len == 6 && !strncmp(s, "<0x", 3) && s[5] == '>';
}

/* How many raw bytes a token brings when it is part of a split character:
 * one for a byte-fallback piece "<0xNN>", else one per character of its
 * token string (byte-level vocabularies map each byte to one character). */
static size_t raw_byte_count(const struct tok *tok, int32_t id)
{
	size_t len, n = 0;
	const char *s = tok_id_to_token(tok, id, &len);
	if (!s)
		return 0;
	if (len == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>')
		return 1;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

static int utf8_whole(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		unsigned char b = (unsigned char)s[i];
		size_t k = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 :
			   (b & 0xf8) == 0xf0 ? 4 : 0;
		if (!k || i + k > n)
			return 0;
		for (size_t j = 1; j < k; j++)
			if (((unsigned char)s[i + j] & 0xc0) != 0x80)
				return 0;
		i += k;
	}
	return 1;
}

/* A token's text as JSON: the text when its bytes are whole characters,
 * else "bytes:\xNN..." as OpenAI writes partial characters. */
static void add_token_str(struct strbuf *b, const char *s, size_t n)
{
	if (utf8_whole(s, n)) {
		sb_add_json_str(b, s, n);
		return;
	}
	sb_adds(b, "\"bytes:");
	for (size_t i = 0; i < n; i++)
		sb_addf(b, "\\\\x%02x", (unsigned char)s[i]);
	sb_addch(b, '"');
}

static void add_bytes(struct strbuf *b, const char *s, size_t n)
{
	sb_adds(b, ",\"bytes\":[");
	for (size_t i = 0; i < n; i++)
		sb_addf(b, i ? ",%u" : "%u", (unsigned char)s[i]);
	sb_addch(b, ']');
}

static size_t utf8_chars(const char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += ((unsigned char)s[i] & 0xc0) != 0x80;
	return k;
}

/* Append entry e, whose text is s[0..n), to the logprobs pieces; the
 * text offset moves past it when advance is set. */
static void lp_write(struct fe_call *c, const struct fe_lp_entry *e, const char *s, size_t n,
		     int advance)
{
	if (c->p.kind == FE_CHAT) {
		struct strbuf *a = &c->lp_a;
		if (a->len)
			sb_addch(a, ',');
		sb_adds(a, "{\"token\":");
		add_token_str(a, s, n);
		sb_addf(a, ",\"logprob\":%.9g", e->logprob);
		add_bytes(a, s, n);
		sb_addf(a, ",\"top_logprobs\":[%s]}", e->top.buf);
	} else {
		if (c->lp_a.len) {
			sb_addch(&c->lp_a, ',');
			sb_addch(&c->lp_b, ',');
			sb_addch(&c->lp_c, ',');
			sb_addch(&c->lp_d, ',');
		}
		add_token_str(&c->lp_a, s, n);
		sb_addf(&c->lp_b, "%.9g", e->logprob);
		sb_addf(&c->lp_c, "{%s}", e->top.buf);
		/* text_offset: characters (Python string indexes) before it */
		sb_addf(&c->lp_d, "%zu", c->text_chars);
	}
	if (!e->special && advance)
		c->text_chars += utf8_chars(s, n);
}

/* Whether d[0..n) starts with the raw bytes of the held entries from the
 * first-th on: 0 when it does not (the detokenizer replaced an invalid byte
 * run with U+FFFD), 1 when it does or when some raw bytes are not known. */
static int lp_held_match(const struct fe_call *c, size_t first, const char *d, size_t n)
{
	size_t off = 0;
	for (size_t i = first; i < c->nheld; i++) {
		const struct fe_lp_entry *e = &c->held[i];
		if (!e->nraw)
			return 1;
		if (e->nraw > n - off || memcmp(d + off, e->raw, e->nraw))
			return 0;
		off += e->nraw;
	}
	return 1;
}

/* Text arrived (delta, maybe empty at the end): the held entries take
 * their bytes from its front, in order; the last one, or `cur` when given,
 * takes the rest. */
static void lp_release(struct fe_call *c, const char *d, size_t n, const struct fe_lp_entry *cur)
{
	size_t off = 0;
	if (c->nheld && !lp_held_match(c, 0, d, n)) {
		/* An invalid run: the text has replacement characters where
		 * the held tokens' bytes were.  Each held token of the run
		 * still reads as its own raw bytes (as OpenAI writes them) and
		 * points into the replacement text; held tokens that begin the
		 * character after it, and the token after them, keep their own
		 * text. */
		if (cur)
			while (n - off >= 3 && !memcmp(d + off, "\xef\xbf\xbd", 3))
				off += 3;
		else
			off = n;
		size_t run = 1;
		while (run < c->nheld && !lp_held_match(c, run, d + off, n - off))
			run++;
		size_t start = c->text_chars, chars = utf8_chars(d, off);
		for (size_t i = 0; i < run; i++) {
			struct fe_lp_entry *e = &c->held[i];
			c->text_chars = start + (i < chars ? i : chars);
			lp_write(c, e, e->raw, e->nraw, 0);
			sb_release(&e->top);
		}
		c->text_chars = start + chars;
		c->nheld -= run;
		memmove(c->held, c->held + run, c->nheld * sizeof(*c->held));
	}
	for (size_t i = 0; i < c->nheld; i++) {
		struct fe_lp_entry *e = &c->held[i];
		size_t k = e->nbytes < n - off ? e->nbytes : n - off;
		if (!cur && i + 1 == c->nheld)
			k = n - off;
		lp_write(c, e, d + off, k, 1);
		off += k;
		sb_release(&e->top);
	}
	c->nheld = 0;
	if (cur)
		lp_write(c, cur, d + off, n - off, 1);
}

/* Token id was sampled and added delta[0..n) to the text. */
static void add_logprobs(struct fe_call *c, int32_t id, const struct gen_logprob *lp,
			 const char *delta, size_t n)
{
	struct fe_lp_entry e = { .id = id, .logprob = lp->logprob,
				 .special = tok_is_special(c->m->tok, id) };
	struct strbuf t = STRBUF_INIT;
	int ntop = lp->ntop < c->p.logprobs ? lp->ntop : c->p.logprobs;
	sb_init(&e.top, 0);
	for (int k = 0; k < ntop; k++) {
		text_in_context(c, lp->top_ids[k], &t);
		if (k)
			sb_addch(&e.top, ',');
		if (c->p.kind == FE_CHAT) {
			sb_adds(&e.top, "{\"token\":");
			add_token_str(&e.top, t.buf, t.len);
			sb_addf(&e.top, ",\"logprob\":%.9g", lp->top_lps[k]);
			add_bytes(&e.top, t.buf, t.len);
			sb_addch(&e.top, '}');
		} else {
			add_token_str(&e.top, t.buf, t.len);
			sb_addf(&e.top, ":%.9g", lp->top_lps[k]);
		}
	}
	if (e.special) {
		/* skipped in the text: it reads as itself and moves nothing */
		sb_reset(&t);
		tok_decode(c->m->tok, &id, 1, 0, &t);
		lp_write(c, &e, t.buf, t.len, 1);
		sb_release(&e.top);
	} else if (!n && (text_in_context(c, id, &t), t.len)) {
		/* held back: part of a character still incomplete */
		e.nbytes = raw_byte_count(c->m->tok, id);
		/* a byte piece's raw byte, as text_in_context() gives it (other
		 * tokens' bytes are not known here) */
		if (is_byte_piece(c->m->tok, id) && t.len == 1) {
			e.raw[0] = t.buf[0];
			e.nraw = 1;
		}
		if (c->nheld == c->aheld) {
			c->aheld = c->aheld ? 2 * c->aheld : 4;
			c->held = xrealloc(c->held, c->aheld * sizeof(*c->held));
		}
		c->held[c->nheld++] = e;
	} else {
		lp_release(c, delta, n, &e);
		sb_release(&e.top);
	}
	lp_context_push(c, id);
	sb_release(&t);
}

static void lp_drop_held(struct fe_call *c)
{
	for (size_t i = 0; i < c->nheld; i++)
		sb_release(&c->held[i].top);
	c->nheld = 0;
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
		sb_adds(&b, "data: ");
		chunk_head(c, &b);
		sb_adds(&b, "{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
			"\"logprobs\":null,\"finish_reason\":null}]");
		if (c->p.include_usage)
			sb_adds(&b, ",\"usage\":null");
		sb_adds(&b, "}\n\n");
		rc = http_stream_write(c->http, b.buf, b.len);
		sb_release(&b);
	}
	return rc;
}

/* Send text (and the logprobs gathered) as one chunk. */
static void emit(struct fe_call *c, const char *text, size_t len, int force)
{
	if (!c->p.stream) {
		sb_add(&c->text, text, len);
		return;
	}
	if (!len && !force && !c->lp_a.len)
		return;
	/* the status line and headers before any chunk (a request with
	 * max_tokens 0 echoes its prompt before any worker frame) */
	if (stream_begin(c) < 0)
		return;
	sb_reset(&c->out);
	sb_adds(&c->out, "data: ");
	chunk_head(c, &c->out);
	if (c->p.kind == FE_CHAT) {
		sb_addf(&c->out, "{\"index\":%d,\"delta\":{\"content\":", c->index);
		sb_add_json_str(&c->out, text, len);
		sb_adds(&c->out, "},\"logprobs\":");
	} else {
		sb_addf(&c->out, "{\"index\":%d,\"text\":", c->index);
		sb_add_json_str(&c->out, text, len);
		sb_adds(&c->out, ",\"logprobs\":");
	}
	logprobs_json(c, &c->out);
	sb_adds(&c->out, ",\"finish_reason\":null}]");
	if (c->p.include_usage)
		sb_adds(&c->out, ",\"usage\":null");
	sb_adds(&c->out, "}\n\n");
	http_stream_write(c->http, c->out.buf, c->out.len);
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
	emit(c, c->pending.buf, n, 0);
	sb_remove(&c->pending, 0, n);
	if (hit) {
		c->stop_hit = 1;
		snprintf(c->finish, sizeof(c->finish), "stop");
		sb_reset(&c->pending);
	}
}

static void usage_json(struct fe_call *c, struct strbuf *b)
{
	long pt = c->prompt_total, ct = c->completion_total;
	sb_addf(b, "\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,"
		"\"total_tokens\":%ld,\"prompt_tokens_details\":{\"cached_tokens\":%ld}}", pt, ct,
		pt + ct, c->cached_total);
}

static void run_prompt(struct fe_call *c);

static void call_finish(struct fe_call *c)
{
	struct strbuf *b = &c->out;
	if (!c->finish[0])
		snprintf(c->finish, sizeof(c->finish), "stop");
	if (c->nheld)	/* stopped inside a character: the rest never came */
		lp_release(c, "", 0, NULL);
	if (c->st) {
		rpc_stream_cancel(c->st);
		c->st = NULL;
	}
	c->prompt_total += (long)c->p.gen.n_tokens;
	c->completion_total += c->completion_tokens;
	c->cached_total += c->cached_tokens;
	/* This choice's end. */
	if (c->p.stream)
		stream_begin(c);
	sb_reset(b);
	if (c->p.stream) {
		sb_adds(b, "data: ");
		chunk_head(c, b);
		if (c->p.kind == FE_CHAT)
			sb_addf(b, "{\"index\":%d,\"delta\":{},\"logprobs\":", c->index);
		else
			sb_addf(b, "{\"index\":%d,\"text\":\"\",\"logprobs\":", c->index);
		logprobs_json(c, b);
		sb_addf(b, ",\"finish_reason\":\"%s\"}]", c->finish);
		if (c->p.include_usage)
			sb_adds(b, ",\"usage\":null");
		sb_adds(b, "}\n\n");
		http_stream_write(c->http, b->buf, b->len);
	} else {
		struct strbuf *ch = &c->choices;
		if (ch->len)
			sb_addch(ch, ',');
		sb_addf(ch, "{\"index\":%d,", c->index);
		if (c->p.kind == FE_CHAT) {
			sb_adds(ch, "\"message\":{\"role\":\"assistant\",\"content\":");
			sb_add_json_str(ch, c->text.buf, c->text.len);
			sb_adds(ch, "},\"logprobs\":");
		} else {
			sb_adds(ch, "\"text\":");
			sb_add_json_str(ch, c->text.buf, c->text.len);
			sb_adds(ch, ",\"logprobs\":");
		}
		logprobs_json(c, ch);
		sb_addf(ch, ",\"finish_reason\":\"%s\"}", c->finish);
	}
	if (c->p.nprompts && (size_t)c->index + 1 < c->p.nprompts) {
		c->index++;
		run_prompt(c);	/* the next prompt of the batch */
		return;
	}
	if (c->stats)
		fe_stats_count(c->stats, c->endpoint, 200);
	sb_reset(b);
	if (c->p.stream) {
		if (c->p.include_usage) {
			sb_adds(b, "data: ");
			chunk_head(c, b);
			sb_adds(b, "],");
			usage_json(c, b);
			sb_adds(b, "}\n\n");
		}
		sb_adds(b, "data: [DONE]\n\n");
		http_stream_write(c->http, b->buf, b->len);
		http_stream_end(c->http);
	} else {
		sb_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%ld,\"model\":", c->id,
			c->p.kind == FE_CHAT ? "chat.completion" : "text_completion", c->created);
		sb_add_json_str(b, c->m->name, strlen(c->m->name));
		sb_adds(b, ",\"system_fingerprint\":\"" FINGERPRINT "\",\"choices\":[");
		sb_add(b, c->choices.buf, c->choices.len);
		sb_adds(b, "],");
		usage_json(c, b);
		sb_addch(b, '}');
		http_reply(c->http, 200, "application/json", b->buf, b->len, NULL);
	}
	c->http = NULL;
	call_free(c);
}

/* ---- worker stream -------------------------------------------------------- */

static int call_start(struct fe_call *c, uint64_t exclude);

/* Take one worker frame; returns 1 once a stop string was hit. */
static int consume(struct fe_call *c, const void *data, size_t len)
{
	struct gen_output o;

	if (gen_output_parse(data, len, &o) < 0) {
		LOG_WARN(LOG_MOD, "%s: bad frame from worker %016" PRIx64 ": %s", c->id,
			 c->worker, err_msg());
		return 0;
	}
	if (c->p.stream && stream_begin(c) < 0) {
		gen_output_release(&o);
		return 0;	/* the client is gone; on_close follows */
	}
	uint64_t now = mono_ns();
	if (o.n && !c->completion_tokens)
		fe_route_first_token(&c->route);
	for (size_t i = 0; i < o.n && !c->stop_hit; i++) {
		if (c->stats) {
			if (!c->completion_tokens)
				metrics_hist_observe(&c->stats->ttft, (double)(now - c->t0) / 1e9);
			else
				metrics_hist_observe(&c->stats->itl, (double)(now - c->t_last) / 1e9);
		}
		c->t_last = now;
		c->completion_tokens++;
		if (c->stats)	/* counted as they come: cancelled requests too */
			c->stats->output_tokens++;
		size_t before = c->pending.len;
		tok_stream_put(c->detok, o.token_ids[i], &c->pending);
		if (o.lps && c->p.logprobs >= 0)
			add_logprobs(c, o.token_ids[i], &o.lps[i], c->pending.buf + before,
				     c->pending.len - before);
		release_pending(c, 0);
	}
	if (o.cached_tokens >= 0)
		c->cached_tokens = o.cached_tokens;
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
	if (consume(c, data, len))
		call_finish(c);	/* cancels the worker's stream */
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	(void)flags;
	c->st = NULL;
	if (len && consume(c, data, len)) {
		call_finish(c);
		return;
	}
	size_t before = c->pending.len;
	tok_stream_flush(c->detok, &c->pending);
	if (c->nheld)
		lp_release(c, c->pending.buf + before, c->pending.len - before, NULL);
	release_pending(c, 1);
	call_finish(c);
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_call *c = arg;
	(void)st;
	c->st = NULL;
	LOG_WARN(LOG_MOD, "%s: worker %016" PRIx64 " failed (%d): %s", c->id, c->worker, code, msg);
	/* Nothing reached the client yet: another worker may do. */
	if (!c->completion_tokens && (code < 0 || code == 503) &&
	    c->tries <= (int)fe_model_nworkers(c->m)) {
		fe_instance_mark_down(c->f, c->worker);
		if (call_start(c, c->worker) == 0)
			return;
	}
	if (c->streaming) {
		call_fail(c, 500, msg, NULL);
		return;
	}
	char m[512];
	if (code == 400) {
		snprintf(m, sizeof(m), "the worker refused the request: %s", msg);
		call_error(c, 400, m, NULL);
	} else if (code < 0 || code == 503) {
		snprintf(m, sizeof(m), "no worker of model '%s' could take the request: %s",
			 c->m->name, msg);
		call_error(c, 503, m, NULL);
	} else {
		snprintf(m, sizeof(m), "the worker failed: %s", msg);
		call_error(c, 500, m, NULL);
	}
}

static const struct rpc_stream_cbs worker_cbs = { on_data, on_end, on_error };

/* Send the request to a worker: the one the router service chose (when
 * routed), else the embedded router's or the next in turn.  0, or
 * -EAGAIN when none is left. */
static int call_dispatch(struct fe_call *c, int routed, uint64_t w, uint32_t overlap)
{
	const char *path = NULL, *addr = NULL;

	if (routed && w != c->exclude && fe_model_usable(c->f, c->m, w, &addr, &path)) {
		c->worker = w;
	} else {
		if (routed) {
			LOG_DEBUG(LOG_MOD, "%s: the router service chose %016" PRIx64 ", not usable "
				  "here", c->id, w);
			fe_route_unused(&c->route);
		}
		int ov = c->m->kv ? fe_route_select(c->f, c->m, c->id, c->hashes, c->nhashes,
						    c->exclude, &w) : -1;
		if (ov >= 0 && fe_model_usable(c->f, c->m, w, &addr, &path))
			c->worker = w;
		else
			addr = NULL;
		overlap = ov > 0 ? (uint32_t)ov : 0;
	}
	if (!addr)
		addr = fe_model_pick(c->f, c->m, c->exclude, &c->worker, &path);
	if (!addr)
		return -EAGAIN;
	fe_route_dispatch(&c->route, c->f, c->m, c->worker, c->hashes, c->nhashes, overlap);
	c->tries++;
	int rc = rpc_call(c->f->rpc, addr, path, c->req_body.buf, c->req_body.len, 0,
			  &worker_cbs, c, &c->st);
	if (rc < 0) {
		LOG_WARN(LOG_MOD, "%s: calling %s: %s", c->id, addr, err_msg());
		return -EAGAIN;
	}
	return 0;
}

static void on_routed(void *arg, int ok, uint64_t worker, uint32_t overlap)
{
	struct fe_call *c = arg;
	if (call_dispatch(c, ok, worker, overlap) < 0)
		fail_no_worker(c);
}

/* Route the request (through the router service when one is in use) and
 * send it.  0 (maybe still routing), or -EAGAIN when no worker is left. */
static int call_start(struct fe_call *c, uint64_t exclude)
{
	fe_route_end(&c->route);
	c->exclude = exclude;
	if (fe_route_service(&c->route, c->f, c->m, c->id, c->hashes, c->nhashes, exclude,
			     on_routed, c) == 0)
		return 0;
	return call_dispatch(c, 0, 0, 0);
}

/* ---- generation endpoints -------------------------------------------------- */

static void handle_generate(struct frontend *f, struct http_req *r, enum fe_kind kind)
{
	size_t len;
	const char *body = http_req_body(r, &len), *param;
	struct fe_call *c = call_new();
	const char *ep = kind == FE_CHAT ? "chat_completions" : "completions";
	char msg[512];

	c->f = f;
	c->http = r;
	c->endpoint = ep;
	c->t0 = mono_ns();
	f->inflight++;
	if (fe_params_parse(kind, body, len, &c->p, &param) < 0) {
		fe_stats_count(fe_stats_get(f, ""), ep, 400);
		reply_error(r, 400, err_msg(), param, NULL, NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	c->m = fe_model_get(f, c->p.model);
	if (!c->m) {
		snprintf(msg, sizeof(msg), "The model '%s' does not exist", c->p.model);
		fe_stats_count(fe_stats_get(f, ""), ep, 404);
		reply_error(r, 404, msg, "model", "model_not_found", NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	c->stats = fe_stats_get(f, c->m->name);
	c->stats->inflight++;
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
		reply_error(r, status, msg, status == 400 ? "model" : NULL, NULL, NULL);
		c->http = NULL;
		call_free(c);
		return;
	}
	snprintf(c->id, sizeof(c->id), "%s-%016" PRIx64 "%016" PRIx64,
		 kind == FE_CHAT ? "chatcmpl" : "cmpl", f->id_prefix, ++f->req_seq);
	c->created = (long)time(NULL);

	http_req_on_close(r, on_client_close, c);
	run_prompt(c);
}

/* Tokenize the current prompt, check it against the context length and
 * encode the worker request.  -EINVAL with msg on bad input. */
static int prepare(struct fe_call *c, char *msg, size_t msz)
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
			snprintf(msg, msz, "chat template: %s", err_msg());
			goto bad;
		}
		/* the template writes the special tokens itself, as transformers */
		rc = tok_encode(c->m->tok, prompt.buf, prompt.len, 0, &ids);
	} else if (c->p.has_prompt_ids) {
		size_t vocab = tok_vocab_size(c->m->tok);
		for (size_t i = 0; i < c->p.n_prompt_ids; i++) {
			if ((size_t)c->p.prompt_ids[i] >= vocab) {
				snprintf(msg, msz, "prompt token id %d is outside the "
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
		snprintf(msg, msz, "tokenizing the prompt: %s", err_msg());
		goto bad;
	}
	long ctx = c->m->context_length;
	if ((long)ids.n >= ctx) {
		snprintf(msg, msz, "This model's maximum context length is %ld tokens, "
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
	} else if ((long)ids.n + c->p.max_tokens > ctx) {
		snprintf(msg, msz, "This model's maximum context length is %ld tokens; "
			 "the prompt has %zu tokens and max_tokens is %ld", ctx, ids.n,
			 c->p.max_tokens);
		rc = -EINVAL;
		goto bad;
	} else {
		c->p.gen.max_tokens = c->p.max_tokens;
	}
	c->nctx = 0;
	for (size_t i = ids.n > LP_CONTEXT ? ids.n - LP_CONTEXT : 0; i < ids.n; i++)
		lp_context_push(c, ids.v[i]);
	c->p.gen.token_ids = ids.v;
	c->p.gen.n_tokens = ids.n;
	ids.v = NULL;
	free(c->hashes);
	c->nhashes = fe_route_hashes(c->f, c->m, c->p.gen.token_ids, c->p.gen.n_tokens,
				     &c->hashes);
	c->stats->input_tokens += c->p.gen.n_tokens;
	gen_request_encode(&c->p.gen, &c->req_body);
	c->detok = tok_stream_new(c->m->tok, 1);
	tok_stream_prime(c->detok, c->p.gen.token_ids, c->p.gen.n_tokens);
	if (kind == FE_COMPLETION && c->p.echo) {
		sb_add(&c->pending, prompt.buf, prompt.len);
		for (size_t i = 0; i < prompt.len; i++)
			c->text_chars += ((unsigned char)prompt.buf[i] & 0xc0) != 0x80;
	}
	sb_release(&prompt);
	tok_ids_release(&ids);
	return 0;
bad:
	sb_release(&prompt);
	tok_ids_release(&ids);
	return rc < 0 ? rc : -EINVAL;
}

/* Start (the next prompt of) a call; on failure it is answered and freed. */
static void run_prompt(struct fe_call *c)
{
	char msg[512];

	if (c->p.nprompts) {	/* a batch: take prompt number index */
		struct fe_prompt *q = &c->p.prompts[c->index];
		free(c->p.prompt_text);
		free(c->p.prompt_ids);
		c->p.prompt_text = q->text;
		c->p.prompt_ids = q->ids;
		c->p.n_prompt_ids = q->n_ids;
		c->p.has_prompt_ids = q->is_ids;
		q->text = NULL;
		q->ids = NULL;
		free(c->p.gen.token_ids);
		c->p.gen.token_ids = NULL;
		c->p.gen.n_tokens = 0;
		tok_stream_free(c->detok);
		c->detok = NULL;
		sb_reset(&c->pending);
		sb_reset(&c->text);
		sb_reset(&c->req_body);
		c->completion_tokens = 0;
		c->cached_tokens = 0;
		c->text_chars = 0;
		lp_drop_held(c);
		c->stop_hit = 0;
		c->tries = 0;
		c->finish[0] = 0;
	}
	if (prepare(c, msg, sizeof(msg)) < 0) {
		call_fail(c, 400, msg, "prompt");
		return;
	}
	if (c->p.gen.max_tokens == 0) {	/* nothing to generate */
		snprintf(c->finish, sizeof(c->finish), "length");
		release_pending(c, 1);
		call_finish(c);
		return;
	}
	if (call_start(c, 0) < 0)
		fail_no_worker(c);
}

/* ---- other routes -------------------------------------------------------- */

static void model_json(struct frontend *f, const struct fe_model *m, struct strbuf *b)
{
	(void)f;
	sb_adds(b, "{\"id\":");
	sb_add_json_str(b, m->name, strlen(m->name));
	sb_addf(b, ",\"object\":\"model\",\"created\":%ld,\"owned_by\":\"dyn\","
		"\"context_length\":%ld}", m->created, m->context_length);
}

static void handle_models(struct frontend *f, struct http_req *r, const char *one)
{
	struct strbuf b = STRBUF_INIT;
	if (one) {
		struct fe_model *m = fe_model_get(f, one);
		if (!m) {
			char msg[512];
			snprintf(msg, sizeof(msg), "The model '%.400s' does not exist", one);
			reply_error(r, 404, msg, "model", "model_not_found", NULL);
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

static int authorized(struct frontend *f, struct http_req *r)
{
	if (!f->api_key)
		return 1;
	const char *h = http_req_header(r, "Authorization");
	if (!h || strncasecmp(h, "Bearer ", 7))
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	size_t a = strlen(h), b = strlen(f->api_key);
	unsigned diff = a != b;
	for (size_t i = 0; i < a && i < b; i++)
		diff |= (unsigned char)(h[i] ^ f->api_key[i]);
	return !diff;
}

static void method_not_allowed(struct http_req *r, const char *allow)
{
	char extra[64], msg[128];
	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	snprintf(msg, sizeof(msg), "method %.20s is not allowed here (use %s)",
		 http_req_method(r), allow);
	reply_error(r, 405, msg, NULL, NULL, extra);
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
	sb_addch(fields, ']');
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
			return method_not_allowed(r, "GET");
		http_reply(r, 200, "application/json", fe_openapi_json, strlen(fe_openapi_json),
			   NULL);
	} else if (!strncmp(path, "/v1/", 4) && !authorized(f, r)) {
		reply_error(r, 401, "Incorrect or missing API key: send it as "
			    "'Authorization: Bearer KEY'", NULL, "invalid_api_key",
			    "WWW-Authenticate: Bearer\r\n");
	} else if (!strcmp(path, "/v1/chat/completions") || !strcmp(path, "/v1/completions")) {
		if (!post)
			return method_not_allowed(r, "POST");
		handle_generate(f, r, path[4] == 'c' && path[5] == 'h' ? FE_CHAT : FE_COMPLETION);
	} else if (!strcmp(path, "/v1/models")) {
		if (!get)
			return method_not_allowed(r, "GET");
		handle_models(f, r, NULL);
	} else if (!strncmp(path, "/v1/models/", 11) && path[11]) {
		if (!get)
			return method_not_allowed(r, "GET");
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
		char msg[256];
		snprintf(msg, sizeof(msg), "no such path: %.200s", path);
		reply_error(r, 404, msg, NULL, NULL, NULL);
	}
}
