/*
 * builtin.c - the builtin engine behind "generate" (see builtin.h).
 */
#include "core/serve/builtin.h"
#include "core/proto/generate.h"
#include "core/serve/kv_fetch.h"
#include "core/serve/kv_lend.h"
#include "core/engine/engine.h"
#include "core/engine/sampling_defaults.h"
#include "core/err.h"
#include "core/grammar/grammar.h"
#include "core/log.h"
#include "core/model/model.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOG_MOD "serve"

struct builtin_job;

/* One engine output, or a pending request's KV blocks (kv_blocks set),
 * copied off the step thread. */
struct bout {
	struct builtin_job *job;
	int32_t *kv_blocks;
	int n_kv_blocks, n_reused;
	int32_t token;
	float logprob;
	int prompt_pos, rank;		/* a prompt token's logprob (engine.h) */
	int n_top;
	int32_t top_ids[SAMPLING_MAX_LOGPROBS];
	float top_lps[SAMPLING_MAX_LOGPROBS];
	enum engine_finish finish;
	int n_prompt, n_generated, n_cached;
	char *error;
};

struct builtin_engine {
	struct event_base *base;
	struct sampling_params defaults;	/* the model's (sampling_defaults.h) */
	struct engine *e;
	int efd;
	struct event *wake;
	struct worker_stats st;
	pthread_mutex_t mu;
	struct bout *q;			/* under mu */
	size_t nq, capq;
	int signalled;			/* under mu: efd written, not yet read */
	struct bout *work;		/* loop thread: the batch being sent */
	size_t capwork;
	struct strbuf buf;
	struct builtin_disagg d;
	char layout[96];
	char tcp[128];			/* prefill: the data port, for kv_source */
	int ucx, tls;
	const struct model *m;
	struct gvocab *gv;		/* the model's token bytes, on the first
					   structured-output request */
};

struct builtin_job {
	struct builtin_engine *b;
	struct rpc_call *call;		/* NULL once cancelled */
	uint64_t id;
	int logprobs;
	int prefill;			/* answer a kv_source, not tokens */
	int score;			/* max_tokens 0 with prompt logprobs: the
					   engine's one token is not sent */
	struct gen_kv_source src;	/* decode: where the pending K/V is */
	int src_held;			/* src's hold is ours to release */
	int pending;			/* its prompt tokens */
	struct kv_fetch_job *fetch;	/* while they are fetched */
	/* loop thread: the tokens of the current batch, sent as one frame */
	int32_t *ids;
	struct gen_logprob *lps;
	size_t n, cap;
	struct gen_logprob *plps;	/* prompt logprobs, sent before the tokens */
	size_t n_plps, cap_plps;
	struct builtin_job *next_touched;
	int touched;
	struct bout *last;		/* the batch's last output (finish, usage) */
};

/* ---- engine thread -------------------------------------------------------- */

/* Queue x for the loop thread and wake it. */
static void enqueue(struct builtin_engine *b, const struct bout *x)
{
	pthread_mutex_lock(&b->mu);
	if (b->nq == b->capq) {
		b->capq = b->capq ? 2 * b->capq : 64;
		b->q = xrealloc(b->q, b->capq * sizeof(*b->q));
	}
	b->q[b->nq++] = *x;
	int wake = !b->signalled;
	b->signalled = 1;
	pthread_mutex_unlock(&b->mu);
	if (wake) {
		uint64_t one = 1;
		ssize_t rc = write(b->efd, &one, sizeof(one));
		(void)rc;	/* EAGAIN: already readable */
	}
}

static void on_output(void *arg, const struct engine_output *o)
{
	struct builtin_job *j = arg;
	struct bout x = { .job = j, .token = o->token, .logprob = o->logprob,
			  .prompt_pos = o->prompt_pos, .rank = o->rank,
			  .finish = o->finish, .n_prompt = o->n_prompt,
			  .n_generated = o->n_generated, .n_cached = o->n_cached };
	if (j->logprobs >= 0 || o->prompt_pos) {
		x.n_top = o->n_top < SAMPLING_MAX_LOGPROBS ? o->n_top : SAMPLING_MAX_LOGPROBS;
		if (x.n_top > 0) {
			memcpy(x.top_ids, o->top_ids, sizeof(int32_t) * (size_t)x.n_top);
			memcpy(x.top_lps, o->top_logprobs, sizeof(float) * (size_t)x.n_top);
		}
	}
	if (o->finish == ENGINE_FINISH_ERROR)
		x.error = xstrdup(o->error ? o->error : "the engine step failed");
	enqueue(j->b, &x);
}

/* The blocks of a pending request (decode role): the loop fetches them. */
static void on_kv_blocks(void *arg, uint64_t id, const int32_t *blocks, int n_blocks,
			 int n_reused)
{
	struct builtin_job *j = arg;
	struct bout x = { .job = j, .token = -1, .n_kv_blocks = n_blocks, .n_reused = n_reused };
	(void)id;
	x.kv_blocks = xmalloc((size_t)(n_blocks ? n_blocks : 1) * sizeof(*x.kv_blocks));
	memcpy(x.kv_blocks, blocks, (size_t)n_blocks * sizeof(*blocks));
	enqueue(j->b, &x);
}

/* ---- loop thread ---------------------------------------------------------- */

static const char *finish_reason(enum engine_finish f)
{
	return f == ENGINE_FINISH_LENGTH ? "length" : f == ENGINE_FINISH_STOP ? "stop" : "cancelled";
}

/* The lender's hold of a kv_source this request does not fetch from goes
 * back now, not at its --kv-hold-timeout. */
static void release_source(struct builtin_job *j)
{
	if (!j->src_held)
		return;
	j->src_held = 0;
	kv_fetch_release(j->b->d.fetch, &j->src);
}

static void job_free(struct builtin_job *j)
{
	free(j->ids);
	free(j->lps);
	free(j->plps);
	free(j);
}

/* A prefill worker's answer: the prompt's blocks become a hold, named by
 * a kv_source. */
static void answer_prefill(struct builtin_engine *b, struct builtin_job *j,
			   const struct bout *x)
{
	struct gen_kv_source src = { .worker = b->d.instance_id, .ucx = b->ucx, .tls = b->tls,
				     .block_size = b->d.block_size };
	int n_tokens = 0;

	if (kv_lend_hold(b->d.lend, j->id, &src.handle, &n_tokens) < 0) {
		b->st.failed++;
		rpc_call_error(j->call, FRAME_ERR_INTERNAL, "holding the prompt's KV: %s",
			       err_msg());
		engine_kv_release(b->e, j->id);
		return;
	}
	snprintf(src.tcp, sizeof(src.tcp), "%s", b->tcp);
	snprintf(src.layout, sizeof(src.layout), "%s", b->layout);
	src.n_tokens = n_tokens < x->n_prompt ? n_tokens : x->n_prompt;
	sb_reset(&b->buf);
	gen_output_encode_kv(&b->buf, &src, x->n_prompt, x->n_cached);
	rpc_call_send(j->call, b->buf.buf, b->buf.len, 0);
	b->st.finished++;
	rpc_call_end(j->call, NULL, 0, 0);
}

/* Send what a batch brought for j: its tokens in one frame, and its end. */
static void flush_job(struct builtin_engine *b, struct builtin_job *j)
{
	struct bout *x = j->last;
	struct rpc_call *call = j->call;
	int held = j->prefill && (x->finish == ENGINE_FINISH_STOP ||
				  x->finish == ENGINE_FINISH_LENGTH);

	if (x->finish && j->fetch)	/* ended while fetching (the engine's wait) */
		kv_fetch_job_cancel(j->fetch);
	if (!call && held)		/* cancelled as it ended: nobody takes them */
		engine_kv_release(b->e, j->id);
	if (call) {
		if (x->finish == ENGINE_FINISH_ERROR) {
			b->st.failed++;
			rpc_call_error(call, FRAME_ERR_INTERNAL, "%s", x->error);
		} else if (x->finish == ENGINE_FINISH_ABORT) {
			/* Not asked by the client: the engine is shutting down. */
			b->st.failed++;
			rpc_call_error(call, FRAME_ERR_UNAVAILABLE, "the worker is shutting down");
		} else if (held) {
			answer_prefill(b, j, x);
		} else if (j->n_plps) {	/* the prompt's logprobs, before any token */
			sb_reset(&b->buf);
			gen_output_encode_prompt(&b->buf, j->plps, j->n_plps);
			rpc_call_send(call, b->buf.buf, b->buf.len, 0);
		}
		if (!held && x->finish != ENGINE_FINISH_ERROR && x->finish != ENGINE_FINISH_ABORT &&
		    !j->prefill && (j->n || x->finish)) {
			sb_reset(&b->buf);
			gen_output_encode(&b->buf, j->ids, j->n, j->logprobs >= 0 ? j->lps : NULL,
					  !x->finish ? NULL : j->score ? "length"
						     : finish_reason(x->finish),
					  x->n_prompt, j->score ? 0 : x->n_generated, x->n_cached);
			rpc_call_send(call, b->buf.buf, b->buf.len, 0);
			if (x->finish) {
				b->st.finished++;
				rpc_call_end(call, NULL, 0, 0);
			}
		}
		if (x->finish)
			j->call = NULL;
	}
	j->n = 0;
	j->n_plps = 0;
	j->touched = 0;
	j->last = NULL;
	if (x->finish) {
		b->st.active--;
		job_free(j);
	}
}

static void drain(struct builtin_engine *b)
{
	struct builtin_job *touched = NULL;
	size_t n;

	pthread_mutex_lock(&b->mu);
	n = b->nq;
	if (n > b->capwork) {
		b->capwork = n;
		b->work = xrealloc(b->work, n * sizeof(*b->work));
	}
	if (n)
		memcpy(b->work, b->q, n * sizeof(*b->q));
	b->nq = 0;
	b->signalled = 0;
	pthread_mutex_unlock(&b->mu);
	/* Gather per request (nothing follows a request's final output). */
	for (size_t i = 0; i < n; i++) {
		struct bout *x = &b->work[i];
		struct builtin_job *j = x->job;
		if (x->kv_blocks) {
			/* Not when cancelled meanwhile: the engine frees
			 * them (and the hold was released then). */
			if (j->call) {
				j->src_held = 0;	/* the fetch releases it */
				kv_fetch_start(b->d.fetch, j->id, &j->src, j->pending, x->kv_blocks,
					       x->n_kv_blocks, x->n_reused, &j->fetch);
			}
			continue;
		}
		if (!j->touched) {
			j->touched = 1;
			j->next_touched = touched;
			touched = j;
		}
		j->last = x;
		if (x->prompt_pos) {
			if (j->n_plps == j->cap_plps) {
				j->cap_plps = j->cap_plps ? 2 * j->cap_plps : 64;
				j->plps = xrealloc(j->plps, j->cap_plps * sizeof(*j->plps));
			}
			struct gen_logprob *lp = &j->plps[j->n_plps++];
			lp->logprob = x->logprob;
			lp->rank = x->rank;
			lp->ntop = x->n_top;
			for (int k = 0; k < x->n_top; k++) {
				lp->top_ids[k] = x->top_ids[k];
				lp->top_lps[k] = x->top_lps[k];
			}
			continue;
		}
		if (x->token < 0 || j->prefill || j->score)	/* a prefill's token is the decode worker's */
			continue;
		b->st.generated_tokens++;
		if (j->n == j->cap) {
			j->cap = j->cap ? 2 * j->cap : 16;
			j->ids = xrealloc(j->ids, j->cap * sizeof(*j->ids));
			if (j->logprobs >= 0)
				j->lps = xrealloc(j->lps, j->cap * sizeof(*j->lps));
		}
		j->ids[j->n] = x->token;
		if (j->logprobs >= 0) {
			struct gen_logprob *lp = &j->lps[j->n];
			lp->logprob = x->logprob;
			lp->ntop = x->n_top;
			for (int k = 0; k < x->n_top; k++) {
				lp->top_ids[k] = x->top_ids[k];
				lp->top_lps[k] = x->top_lps[k];
			}
		}
		j->n++;
	}
	while (touched) {
		struct builtin_job *j = touched;
		touched = j->next_touched;
		flush_job(b, j);
	}
	for (size_t i = 0; i < n; i++) {
		free(b->work[i].error);
		free(b->work[i].kv_blocks);
	}
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;
	(void)what;
	ssize_t rc = read(fd, &v, sizeof(v));
	(void)rc;
	drain(arg);
}

static void job_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct builtin_job *j = arg;
	(void)why;
	j->b->st.cancelled++;
	LOG_DEBUG(LOG_MOD, "request %llu cancelled: aborting engine request %llu",
		  (unsigned long long)rpc_call_id(call), (unsigned long long)j->id);
	j->call = NULL;
	release_source(j);	/* not fetching yet: it never will */
	if (j->fetch)	/* the request is cancelled once its blocks are left alone */
		kv_fetch_job_cancel(j->fetch);
	else
		engine_cancel(j->b->e, j->id);	/* the final ABORT output frees j */
	rpc_call_finish(call);
}

static double pick(double v, double dflt)
{
	return isnan(v) ? dflt : v;
}

static int build_params(const struct builtin_engine *b, const struct gen_request *r,
			struct sampling_params *p)
{
	*p = b->defaults;
	p->temperature = pick(r->s.temperature, p->temperature);
	p->top_p = pick(r->s.top_p, p->top_p);
	if (r->s.top_k >= 0)
		p->top_k = (int)r->s.top_k;
	p->min_p = pick(r->s.min_p, p->min_p);
	p->presence_penalty = pick(r->s.presence_penalty, 0);
	p->frequency_penalty = pick(r->s.frequency_penalty, 0);
	p->repetition_penalty = pick(r->s.repetition_penalty, p->repetition_penalty);
	if (r->s.has_seed) {
		p->has_seed = 1;
		p->seed = r->s.seed;
	}
	if (r->max_tokens > INT32_MAX || r->min_tokens > INT32_MAX)
		return err_set(-EINVAL, "max_tokens/min_tokens out of range");
	p->max_tokens = r->max_tokens > 0 ? (int)r->max_tokens : 0;
	p->min_tokens = r->min_tokens > 0 ? (int)r->min_tokens : 0;
	p->ignore_eos = r->ignore_eos;
	if (r->n_stop_ids > SAMPLING_MAX_STOP)
		return err_set(-EINVAL, "at most %d stop_token_ids are supported",
			       SAMPLING_MAX_STOP);
	for (size_t i = 0; i < r->n_stop_ids; i++)
		p->stop_token_ids[i] = r->stop_token_ids[i];
	p->n_stop_token_ids = (int)r->n_stop_ids;
	if (r->s.n_bias > SAMPLING_MAX_BIAS)
		return err_set(-EINVAL, "logit_bias: at most %d entries", SAMPLING_MAX_BIAS);
	for (size_t i = 0; i < r->s.n_bias; i++) {
		p->bias_ids[i] = r->s.bias_ids[i];
		p->bias[i] = (float)r->s.bias[i];
	}
	p->n_bias = (int)r->s.n_bias;
	p->prompt_logprobs = r->prompt_logprobs >= 0;
	p->prompt_top = r->prompt_logprobs < 0 ? 0
			: r->prompt_logprobs > SAMPLING_MAX_LOGPROBS ? SAMPLING_MAX_LOGPROBS
								     : r->prompt_logprobs;
	p->logprobs = r->logprobs < 0 ? -1
		      : r->logprobs > SAMPLING_MAX_LOGPROBS ? SAMPLING_MAX_LOGPROBS
							    : r->logprobs;
	return 0;
}

/* The disagg member: a prefill computes the prompt and holds its blocks;
 * a decode worker waits for the blocks of a kv_source that fits.  Returns
 * why a decode worker prefills a kv_source's prompt itself (or -1). */
static int disagg_setup(struct builtin_engine *b, const struct gen_request *req,
			struct builtin_job *j, struct engine_request *er)
{
	if (req->prefill_only) {
		j->prefill = 1;
		er->hold_kv = 1;
		er->params.max_tokens = 1;
		er->params.min_tokens = 0;
		return -1;
	}
	if (!req->kv_source || req->prompt_logprobs >= 0)	/* those need every logit here */
		return -1;
	if (!b->d.fetch) {
		LOG_DEBUG(LOG_MOD, "a kv_source sent to a worker that is not a decode worker: "
			  "prefilling");
		return -1;
	}
	if (gen_kv_source_parse(req->kv_source, strlen(req->kv_source), &j->src) < 0)
		return KV_FALLBACK_LAYOUT;
	j->src_held = 1;
	if (!kv_fetch_fits(b->d.fetch, &j->src)) {
		release_source(j);
		return KV_FALLBACK_LAYOUT;
	}
	/* The last prompt token is always computed here: it gives the first
	 * token, exactly as an aggregated worker would. */
	long pending = j->src.n_tokens < (long)req->n_tokens - 1 ? j->src.n_tokens
								  : (long)req->n_tokens - 1;
	if (pending <= 0) {	/* a one-token prompt: nothing to fetch */
		release_source(j);
		return -1;
	}
	j->pending = (int)pending;
	er->kv_pending_tokens = j->pending;
	er->on_kv_blocks = on_kv_blocks;
	return -1;
}

/* The request's grammar as a matcher over the model's vocabulary (*out
 * NULL when the request has none). */
static int grammar_matcher(struct builtin_engine *b, const struct gen_request *r,
			   struct gmatch **out)
{
	*out = NULL;
	if (!r->grammar_kind)
		return 0;
	int kind = grammar_kind_parse(r->grammar_kind);
	if (kind < 0)
		return err_set(-EINVAL, "grammar.kind: unknown kind '%s'", r->grammar_kind);
	if (!b->gv) {
		struct tok *tok;
		const struct model_desc *d = &b->m->desc;
		if (tok_load(b->m->src.dir, &tok) < 0)
			return err_wrap(-EINVAL, "structured output needs the model's tokenizer");
		int32_t eos[MODEL_MAX_EOS];
		for (int i = 0; i < d->n_eos; i++)
			eos[i] = d->eos_token_ids[i];
		b->gv = gvocab_from_tok(tok, d->vocab_size, eos, d->n_eos);
		tok_free(tok);
	}
	struct grammar *g;
	if (grammar_get(kind, r->grammar_spec, strlen(r->grammar_spec),
			r->grammar_lenient ? GRAMMAR_LENIENT : 0, &g) < 0)
		return -EINVAL;
	*out = gmatch_new(g, b->gv);
	grammar_unref(g);
	/* a migrated request: its output so far ends the prompt */
	for (size_t i = r->n_tokens - (size_t)r->grammar_done; i < r->n_tokens; i++)
		if (gmatch_accept(*out, r->token_ids[i]) < 0) {
			gmatch_free(*out);
			*out = NULL;
			return err_wrap(-EINVAL, "grammar.done: token %zu", i);
		}
	return 0;
}

void builtin_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			   unsigned flags, void *arg)
{
	struct builtin_engine *b = arg;
	struct gen_request req;
	struct sampling_params sp;
	(void)flags;

	b->st.requests++;
	if (gen_request_parse(payload, len, &req) < 0 || build_params(b, &req, &sp) < 0) {
		b->st.failed++;
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST, "%s", err_msg());
		gen_request_release(&req);
		return;
	}
	if (req.prefill_only && !b->d.lend) {
		b->st.failed++;
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST, "disagg.prefill: this worker is not "
			       "a prefill worker (dyn serve --role prefill)");
		gen_request_release(&req);
		return;
	}
	if (req.prefill_only && req.prompt_logprobs >= 0) {
		b->st.failed++;
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST, "prompt_logprobs: a prefill worker "
			       "does not compute them (their request is prefilled where it decodes)");
		gen_request_release(&req);
		return;
	}
	if (req.max_tokens == 0 && !req.prefill_only && req.prompt_logprobs < 0) {
		/* nothing to generate */
		struct strbuf out = STRBUF_INIT;
		gen_output_encode(&out, NULL, 0, NULL, "length", (long)req.n_tokens, 0, 0);
		rpc_call_send(call, out.buf, out.len, 0);
		rpc_call_end(call, NULL, 0, 0);
		sb_release(&out);
		b->st.finished++;
		gen_request_release(&req);
		return;
	}
	struct builtin_job *j = xcalloc(1, sizeof(*j));
	j->b = b;
	j->call = call;
	j->logprobs = sp.logprobs;
	if (req.max_tokens == 0 && !req.prefill_only) {	/* prompt logprobs only */
		j->score = 1;
		sp.max_tokens = 1;
		sp.min_tokens = 0;
	}
	struct engine_request er = { .prompt = req.token_ids, .n_prompt = (int)req.n_tokens,
				     .params = sp, .on_output = on_output, .arg = j };
	int local = disagg_setup(b, &req, j, &er);
	if (req.n_tokens > INT32_MAX || grammar_matcher(b, &req, &er.grammar) < 0 ||
	    engine_submit(b->e, &er, &j->id) < 0) {
		gmatch_free(er.grammar);
		b->st.failed++;
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST, "%s", err_msg());
		release_source(j);
		job_free(j);
		gen_request_release(&req);
		return;
	}
	if (b->d.fetch && !j->pending)
		kv_fetch_local(b->d.fetch, local);
	b->st.active++;
	b->st.prompt_tokens += req.n_tokens;
	rpc_call_on_cancel(call, job_cancelled, j);
	gen_request_release(&req);
}

int builtin_engine_new(struct event_base *base, const struct model *m, struct engine *e,
		       struct builtin_engine **out)
{
	struct builtin_engine *b = xcalloc(1, sizeof(*b));
	b->base = base;
	b->m = m;
	sampling_defaults(&m->desc.gen, SAMPLING_FALLBACK_TEMPERATURE, &b->defaults);
	b->e = e;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0) {
		int rc = err_set(-errno, "eventfd: %s", strerror(errno));
		free(b);
		return rc;
	}
	pthread_mutex_init(&b->mu, NULL);
	sb_init(&b->buf, 0);
	b->wake = event_new(base, b->efd, EV_READ | EV_PERSIST, on_wake, b);
	event_add(b->wake, NULL);
	*out = b;
	return 0;
}

void builtin_engine_free(struct builtin_engine *b)
{
	if (!b)
		return;
	drain(b);	/* the engine is gone: its last outputs free the jobs */
	event_free(b->wake);
	close(b->efd);
	pthread_mutex_destroy(&b->mu);
	free(b->q);
	free(b->work);
	sb_release(&b->buf);
	gvocab_free(b->gv);
	free(b);
}

int builtin_engine_disagg(struct builtin_engine *b, const struct builtin_disagg *d)
{
	b->d = *d;
	snprintf(b->layout, sizeof(b->layout), "%s", d->layout ? d->layout : "");
	b->d.layout = b->layout;
	if (!d->lend)
		return 0;
	/* kv_source's tcp and ucx come from the lender's own address. */
	const char *addr = kv_lend_addr_json(d->lend);
	cJSON *j = cJSON_Parse(addr);
	const cJSON *tcp = cJSON_GetObjectItemCaseSensitive(j, "tcp");
	int ok = cJSON_IsString(tcp) && strlen(tcp->valuestring) < sizeof(b->tcp);
	if (ok) {
		snprintf(b->tcp, sizeof(b->tcp), "%s", tcp->valuestring);
		b->ucx = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ucx"));
		b->tls = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tls"));
	}
	cJSON_Delete(j);
	return ok ? 0 : err_set(-EINVAL, "the data port's address is not understood: %s", addr);
}

void builtin_engine_stats(const struct builtin_engine *b, struct worker_stats *out)
{
	*out = b->st;
}
