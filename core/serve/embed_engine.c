/*
 * embed_engine.c - the embed engine (see embed_engine.h): requests wait in
 * a queue; the loop hands the next batch of them to the offload thread,
 * which runs the encoder, and answers them when the batch comes back.
 */
#include "core/serve/embed_engine.h"
#include "core/embed/embed.h"
#include "core/err.h"
#include "core/offload.h"
#include "core/platform.h"
#include "core/proto/embed.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/rpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct ejob {
	struct embed_engine *e;
	struct rpc_call *call;		/* NULL once cancelled */
	struct embed_request req;
	long tokens;
	size_t taken, computed;		/* inputs handed to batches, back from them */
	float *vecs;			/* [req.n, dim] */
	int running;			/* some inputs are in the running batch */
	struct ejob *next;		/* in the queue */
};

/* One run of the encoder: slices of jobs' inputs, back to back. */
struct slice {
	struct ejob *job;
	size_t first, n;
};

struct batch {
	struct embed_engine *e;
	struct slice *slices;
	int n_slices;
	const int32_t **ids;
	size_t *lens;
	int n;
	float *vecs;			/* [n, dim] */
	int rc;
	char *error;			/* err_msg() of the offload thread */
};

struct embed_engine {
	struct embedder *emb;
	struct offload *off;
	int max_seqs, max_tokens;
	struct ejob *head, **tail;	/* jobs with inputs not yet taken */
	int running;			/* a batch is on the offload thread */
	int closing;
	struct worker_stats st;
};

int embed_engine_new(struct event_base *base, const struct embed_engine_conf *c,
		     struct embed_engine **out)
{
	struct embed_engine *e = xcalloc(1, sizeof(*e));
	int rc = embedder_open(c->dir, c->threads > 0 ? c->threads : platform_cores(), &e->emb);
	if (rc == 0 && (rc = offload_new(base, &e->off)) < 0)
		embedder_free(e->emb);
	if (rc < 0) {
		free(e);
		return rc;
	}
	e->max_seqs = c->max_seqs > 0 ? c->max_seqs : 1;
	e->max_tokens = c->max_tokens > 0 ? c->max_tokens : 1;
	e->tail = &e->head;
	*out = e;
	return 0;
}

static void job_free(struct ejob *j)
{
	j->e->st.active--;
	embed_request_release(&j->req);
	free(j->vecs);
	free(j);
}

static void queue_push(struct embed_engine *e, struct ejob *j)
{
	j->next = NULL;
	*e->tail = j;
	e->tail = &j->next;
}

static void queue_remove(struct embed_engine *e, struct ejob *j)
{
	for (struct ejob **p = &e->head; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			if (!j->next)
				e->tail = p;
			return;
		}
}

void embed_engine_free(struct embed_engine *e)
{
	if (!e)
		return;
	e->closing = 1;
	/* The rpc server's cancels emptied the queue; the running batch ends
	 * and drops its cancelled jobs. */
	offload_free(e->off);
	embedder_free(e->emb);
	free(e);
}

void embed_engine_stats(const struct embed_engine *e, struct worker_stats *out)
{
	*out = e->st;
}

int embed_engine_dim(const struct embed_engine *e) { return embedder_dim(e->emb); }
int embed_engine_truncatable(const struct embed_engine *e) { return embedder_truncatable(e->emb); }
int embed_engine_max_tokens(const struct embed_engine *e) { return embedder_max_tokens(e->emb); }

static void batch_work(void *arg)
{
	struct batch *b = arg;
	b->rc = embedder_run(b->e->emb, b->ids, b->lens, b->n, b->vecs);
	if (b->rc < 0)
		b->error = xstrdup(err_msg());
}

static void job_answer(struct ejob *j)
{
	struct embed_engine *e = j->e;
	struct strbuf out = STRBUF_INIT;

	rpc_call_on_cancel(j->call, NULL, NULL);	/* answered here, whatever happens */
	e->st.finished++;
	e->st.prompt_tokens += (uint64_t)j->tokens;
	embed_response_encode(j->vecs, j->req.n, embedder_dim(e->emb), j->tokens, &out);
	rpc_call_send(j->call, out.buf, out.len, 0);
	rpc_call_end(j->call, NULL, 0, 0);
	sb_release(&out);
}

/* A job's slice is back: answer the job once all its inputs are, drop it
 * if it was cancelled or the batch failed. */
static void slice_done(const struct batch *b, const struct slice *s, const float *vecs)
{
	struct ejob *j = s->job;
	struct embed_engine *e = b->e;
	size_t dim = (size_t)embedder_dim(e->emb);

	j->running = 0;
	if (j->call && b->rc < 0) {
		queue_remove(e, j);
		rpc_call_on_cancel(j->call, NULL, NULL);
		e->st.failed++;
		rpc_call_error(j->call, 500, "%s", b->error);
		j->call = NULL;
	}
	if (!j->call) {		/* not in the queue any more */
		job_free(j);
		return;
	}
	memcpy(j->vecs + s->first * dim, vecs, s->n * dim * sizeof(float));
	j->computed += s->n;
	if (j->computed == j->req.n) {
		job_answer(j);
		job_free(j);
	}
}

static void batch_start(struct embed_engine *e);

static void batch_done(void *arg)
{
	struct batch *b = arg;
	struct embed_engine *e = b->e;
	const float *v = b->vecs;

	for (int i = 0; i < b->n_slices; i++) {
		slice_done(b, &b->slices[i], v);
		v += b->slices[i].n * (size_t)embedder_dim(e->emb);
	}
	free(b->slices);
	free(b->ids);
	free(b->lens);
	free(b->vecs);
	free(b->error);
	free(b);
	e->running = 0;
	if (!e->closing)
		batch_start(e);
}

/* Inputs from the waiting jobs in turn, while they fit (at least one).  A
 * job with inputs left goes to the back of the queue, so that a large
 * request shares the encoder with those that came after it. */
static void batch_start(struct embed_engine *e)
{
	struct batch *b;
	struct ejob *rest = NULL;
	long tokens = 0;
	int cap = 0;

	if (e->running || !e->head)
		return;
	b = xcalloc(1, sizeof(*b));
	b->e = e;
	while (e->head && !rest) {
		struct ejob *j = e->head;
		size_t first = j->taken;

		while (j->taken < j->req.n && (b->n == 0 || (b->n < e->max_seqs &&
		       tokens + (long)j->req.lens[j->taken] <= e->max_tokens))) {
			if (b->n == cap) {
				cap = cap ? 2 * cap : 16;
				b->ids = xrealloc(b->ids, (size_t)cap * sizeof(*b->ids));
				b->lens = xrealloc(b->lens, (size_t)cap * sizeof(*b->lens));
			}
			b->ids[b->n] = j->req.ids[j->taken];
			b->lens[b->n++] = j->req.lens[j->taken];
			tokens += (long)j->req.lens[j->taken++];
		}
		if (j->taken == first)	/* the batch is full */
			break;
		b->slices = xrealloc(b->slices, (size_t)(b->n_slices + 1) * sizeof(*b->slices));
		b->slices[b->n_slices++] = (struct slice){ j, first, j->taken - first };
		j->running = 1;
		e->head = j->next;
		if (!e->head)
			e->tail = &e->head;
		if (j->taken < j->req.n)
			rest = j;
	}
	if (rest)
		queue_push(e, rest);
	b->vecs = xmalloc((size_t)b->n * (size_t)embedder_dim(e->emb) * sizeof(float));
	e->running = 1;
	offload_submit(e->off, batch_work, batch_done, b);
}

static void job_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct ejob *j = arg;
	struct embed_engine *e = j->e;

	(void)why;
	e->st.cancelled++;
	j->call = NULL;
	rpc_call_finish(call);
	/* Its inputs not taken yet are never computed; a running slice's
	 * end frees it. */
	queue_remove(e, j);
	if (!j->running)
		job_free(j);
}

void embed_engine_handle(struct rpc_call *call, const void *payload, size_t len,
			 unsigned flags, void *arg)
{
	struct embed_engine *e = arg;
	struct ejob *j = xcalloc(1, sizeof(*j));
	size_t vocab = tok_vocab_size(embedder_tok(e->emb));
	size_t max = (size_t)embedder_max_tokens(e->emb);

	(void)flags;
	e->st.requests++;
	e->st.active++;
	j->e = e;
	j->call = call;
	if (embed_request_parse(payload, len, &j->req) < 0) {
		e->st.failed++;
		rpc_call_error(call, 400, "%s", err_msg());
		job_free(j);
		return;
	}
	/* Checked here, so that one bad request fails alone, not its batch. */
	for (size_t i = 0; i < j->req.n; i++) {
		if (!j->req.lens[i] || j->req.lens[i] > max) {
			e->st.failed++;
			rpc_call_error(call, 400, "inputs[%zu]: %zu tokens (1 to %zu allowed)", i,
				       j->req.lens[i], max);
			job_free(j);
			return;
		}
		j->tokens += (long)j->req.lens[i];
		for (size_t k = 0; k < j->req.lens[i]; k++)
			if ((size_t)j->req.ids[i][k] >= vocab) {
				e->st.failed++;
				rpc_call_error(call, 400, "inputs[%zu]: token id %d is outside the "
					       "vocabulary (%zu)", i, j->req.ids[i][k], vocab);
				job_free(j);
				return;
			}
	}
	j->vecs = xmalloc(j->req.n * (size_t)embedder_dim(e->emb) * sizeof(float));
	rpc_call_on_cancel(call, job_cancelled, j);
	queue_push(e, j);
	batch_start(e);
}
