/*
 * echo.c - the echo engine (see echo.h).
 */
#include "core/serve/echo.h"
#include "core/proto/generate.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "echo"
#define BATCH 256	/* tokens per loop turn when delay is 0 */

struct echo_engine {
	struct event_base *base;
	long delay_ms;
	struct worker_stats st;
};

struct echo_job {
	struct echo_engine *e;
	struct rpc_call *call;
	struct event *ev;
	struct gen_request req;
	size_t next, limit;
	struct strbuf buf;
};

int echo_engine_new(struct event_base *base, long delay_ms, struct echo_engine **out)
{
	struct echo_engine *e = xcalloc(1, sizeof(*e));
	e->base = base;
	e->delay_ms = delay_ms < 0 ? 0 : delay_ms;
	*out = e;
	return 0;
}

void echo_engine_free(struct echo_engine *e)
{
	free(e);
}

void echo_engine_stats(const struct echo_engine *e, struct worker_stats *out)
{
	*out = e->st;
}

static void job_free(struct echo_job *j)
{
	j->e->st.active--;
	event_free(j->ev);
	gen_request_release(&j->req);
	sb_release(&j->buf);
	free(j);
}

static void job_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct echo_job *j = arg;
	(void)why;
	j->e->st.cancelled++;
	LOG_DEBUG(LOG_MOD, "request %llu cancelled after %zu tokens",
		  (unsigned long long)rpc_call_id(call), j->next);
	job_free(j);
	rpc_call_finish(call);
}

static int is_stop_id(const struct gen_request *r, int32_t id)
{
	for (size_t i = 0; i < r->n_stop_ids; i++)
		if (r->stop_token_ids[i] == id)
			return 1;
	return 0;
}

static void job_step(struct echo_job *j);

static void job_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	job_step(arg);
}

static void job_drained(struct rpc_call *call, void *arg)
{
	(void)call;
	job_step(arg);
}

static void job_finish(struct echo_job *j, const char *reason)
{
	struct gen_logprob lp = { 0 };
	sb_reset(&j->buf);
	gen_output_encode(&j->buf, NULL, 0, j->req.logprobs >= 0 ? &lp : NULL, reason,
			  (long)j->req.n_tokens, (long)j->next, -1);
	j->e->st.finished++;
	rpc_call_send(j->call, j->buf.buf, j->buf.len, 0);
	rpc_call_end(j->call, NULL, 0, 0);
	job_free(j);
}

static void job_step(struct echo_job *j)
{
	int n = j->e->delay_ms > 0 ? 1 : BATCH;
	for (int i = 0; i < n; i++) {
		if (j->next >= j->limit) {
			job_finish(j, j->limit < j->req.n_tokens ? "length" : "stop");
			return;
		}
		int32_t id = j->req.token_ids[j->next];
		if (is_stop_id(&j->req, id)) {
			job_finish(j, "stop");
			return;
		}
		struct gen_logprob lp = { .logprob = 0, .ntop = 1 };
		lp.top_ids[0] = id;
		sb_reset(&j->buf);
		gen_output_encode(&j->buf, &id, 1, j->req.logprobs >= 0 ? &lp : NULL, NULL, 0, 0, -1);
		if (rpc_call_send(j->call, j->buf.buf, j->buf.len, 0) < 0)
			return;	/* cancelled: on_cancel frees */
		j->next++;
		j->e->st.generated_tokens++;
		if (!rpc_call_writable(j->call)) {
			rpc_call_on_drain(j->call, job_drained, j);
			return;
		}
	}
	if (j->e->delay_ms > 0) {
		struct timeval tv = { j->e->delay_ms / 1000, (j->e->delay_ms % 1000) * 1000 };
		event_add(j->ev, &tv);
	} else {
		event_active(j->ev, EV_TIMEOUT, 1);
	}
}

void echo_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			unsigned flags, void *arg)
{
	struct echo_engine *e = arg;
	struct echo_job *j = xcalloc(1, sizeof(*j));
	(void)flags;

	e->st.requests++;
	if (gen_request_parse(payload, len, &j->req) < 0 ||
	    (j->req.grammar_kind && err_set(-EINVAL, "structured output needs the builtin or "
					    "mock engine, not echo") < 0)) {
		e->st.failed++;
		gen_request_release(&j->req);
		free(j);
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST, "%s", err_msg());
		return;
	}
	if (j->req.prompt_logprobs >= 0 && j->req.n_tokens > 1) {	/* each certain, as its tokens */
		size_t n = j->req.n_tokens - 1;
		struct gen_logprob *lps = xcalloc(n, sizeof(*lps));
		for (size_t i = 0; i < n; i++) {
			lps[i].rank = 1;
			lps[i].ntop = j->req.prompt_logprobs > 0;
			lps[i].top_ids[0] = j->req.token_ids[i + 1];
		}
		sb_reset(&j->buf);
		gen_output_encode_prompt(&j->buf, lps, n);
		rpc_call_send(call, j->buf.buf, j->buf.len, 0);
		free(lps);
	}
	e->st.active++;
	e->st.prompt_tokens += j->req.n_tokens;
	j->e = e;
	j->call = call;
	j->limit = j->req.n_tokens;
	if (j->req.max_tokens >= 0 && (size_t)j->req.max_tokens < j->limit)
		j->limit = (size_t)j->req.max_tokens;
	j->ev = event_new(e->base, -1, 0, job_event, j);
	rpc_call_on_cancel(call, job_cancelled, j);
	if (e->delay_ms > 0) {
		struct timeval tv = { e->delay_ms / 1000, (e->delay_ms % 1000) * 1000 };
		event_add(j->ev, &tv);
	} else {
		job_step(j);
	}
}
