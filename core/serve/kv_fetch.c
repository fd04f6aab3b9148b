/*
 * kv_fetch.c - a decode worker's KV fetches (see kv_fetch.h).
 */
#include "core/serve/kv_fetch.h"

#include "core/engine/engine.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "serve"

const char *const kv_fallback_names[] = {
	[KV_FALLBACK_LAYOUT] = "layout",
	[KV_FALLBACK_FETCH_FAILED] = "fetch_failed",
	[KV_FALLBACK_CANCELLED] = "cancelled",
	NULL,
};

struct kv_fetch {
	struct event_base *base;
	struct engine *e;
	struct kvx_borrower *b;
	struct kv_fetch_conf c;
	char layout[96];
	int segs_per_block;		/* engine_kv_segments of one block */
	struct kv_fetch_job *jobs;	/* running */
	struct kv_fetch_stats st;
};

struct kv_fetch_job {
	struct kv_fetch *f;
	uint64_t id;
	uint64_t worker;		/* the lender, for messages */
	int pending;			/* prompt tokens whose K/V come from it */
	struct kvx_fetch *xf;		/* while the data plane works */
	struct event *timer;		/* mock: the modelled transfer time */
	uint64_t bytes;
	uint64_t start_ns;
	int cancelled;
	struct kv_fetch_job **slot;
	struct kv_fetch_job *prev, *next;
};

int kv_fetch_fits(const struct kv_fetch *f, const struct gen_kv_source *src)
{
	if (!strcmp(src->layout, f->layout) && src->block_size == f->c.block_size)
		return 1;
	LOG_WARN(LOG_MOD, "KV of worker %016llx has layout %s (block size %ld), this worker's "
		 "is %s (block size %d): prefilling locally",
		 (unsigned long long)src->worker, src->layout, src->block_size, f->layout,
		 f->c.block_size);
	return 0;
}

void kv_fetch_local(struct kv_fetch *f, int fallback)
{
	f->st.local++;
	if (fallback >= 0 && fallback < KV_FALLBACK_N)
		f->st.fallbacks[fallback]++;
}

static void job_end(struct kv_fetch_job *j)
{
	struct kv_fetch *f = j->f;
	if (j->slot)
		*j->slot = NULL;
	if (j->prev)
		j->prev->next = j->next;
	else
		f->jobs = j->next;
	if (j->next)
		j->next->prev = j->prev;
	if (j->timer)
		event_free(j->timer);
	free(j);
}

/* The fetched tokens are there: the engine computes the rest. */
static void job_filled(struct kv_fetch_job *j)
{
	struct kv_fetch *f = j->f;
	f->st.ok++;
	f->st.remote++;
	f->st.bytes += j->bytes;
	metrics_hist_observe(&f->st.seconds, (double)(mono_ns() - j->start_ns) / 1e9);
	if (engine_kv_filled(f->e, j->id, j->pending) < 0)
		LOG_DEBUG(LOG_MOD, "request %llu: %s", (unsigned long long)j->id, err_msg());
	job_end(j);
}

/* Nothing usable arrived: the engine prefills it all. */
static void job_fallback(struct kv_fetch_job *j, enum kv_fallback why)
{
	struct kv_fetch *f = j->f;
	if (why == KV_FALLBACK_CANCELLED) {
		f->st.fallbacks[why]++;
		engine_cancel(f->e, j->id);	/* its blocks are no longer written */
	} else {
		f->st.failed++;
		kv_fetch_local(f, why);
		if (engine_kv_filled(f->e, j->id, 0) < 0)
			LOG_DEBUG(LOG_MOD, "request %llu: %s", (unsigned long long)j->id, err_msg());
	}
	job_end(j);
}

static void on_model_time(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	job_filled(arg);
}

static void on_done(void *arg, int rc, uint64_t n_bytes)
{
	struct kv_fetch_job *j = arg;
	struct kv_fetch *f = j->f;

	j->xf = NULL;
	if (j->cancelled) {
		job_fallback(j, KV_FALLBACK_CANCELLED);
		return;
	}
	if (rc < 0) {
		LOG_WARN(LOG_MOD, "request %llu: fetching its KV from worker %016llx: %s; "
			 "prefilling locally", (unsigned long long)j->id,
			 (unsigned long long)j->worker, err_msg());
		job_fallback(j, KV_FALLBACK_FETCH_FAILED);
		return;
	}
	if (!f->c.model_block_bytes || !j->bytes) {
		j->bytes = n_bytes;
		job_filled(j);
		return;
	}
	/* Mock: 0 bytes moved; wait as long as the real ones would take. */
	double s = (double)j->bytes / (f->c.bandwidth_gbps * 1e9);
	struct timeval tv = { (time_t)s, (suseconds_t)((s - floor(s)) * 1e6) };
	j->timer = evtimer_new(f->base, on_model_time, j);
	evtimer_add(j->timer, &tv);
}

void kv_fetch_start(struct kv_fetch *f, uint64_t id, const struct gen_kv_source *src,
		    int pending_tokens, const int32_t *blocks, int n_blocks, int n_reused,
		    struct kv_fetch_job **slot)
{
	struct kv_fetch_job *j = xcalloc(1, sizeof(*j));
	int count = n_blocks - n_reused, n_dst = 0, rc = 0;
	int cap = count > 0 && f->segs_per_block ? count * f->segs_per_block : 1;
	struct iovec *dst = xmalloc((size_t)cap * sizeof(*dst));

	j->f = f;
	j->id = id;
	j->worker = src->worker;
	j->pending = pending_tokens;
	j->start_ns = mono_ns();
	j->slot = slot;
	*slot = j;
	j->next = f->jobs;
	if (f->jobs)
		f->jobs->prev = j;
	f->jobs = j;
	if (f->c.model_block_bytes) {
		j->bytes = (uint64_t)count * f->c.model_block_bytes;
	} else {
		for (int i = n_reused; i < n_blocks && rc >= 0; i++) {
			rc = engine_kv_segments(f->e, blocks[i], dst + n_dst, cap - n_dst);
			n_dst += rc > 0 ? rc : 0;
		}
	}
	struct kvx_fetch_req r = {
		.tcp_addr = src->tcp, .lender_ucx = src->ucx, .lender_tls = src->tls,
		.handle = src->handle, .first = (uint32_t)n_reused, .count = (uint32_t)count, .dst = dst,
		.n_dst = n_dst, .block_bytes = f->c.block_bytes, .layout = f->layout,
		.release = 1,
	};
	if (rc >= 0)
		rc = kvx_fetch_start(f->b, &r, on_done, j, &j->xf);
	free(dst);
	if (rc < 0) {
		LOG_WARN(LOG_MOD, "request %llu: no KV fetch from worker %016llx: %s; "
			 "prefilling locally", (unsigned long long)id,
			 (unsigned long long)src->worker, err_msg());
		j->xf = NULL;
		job_fallback(j, KV_FALLBACK_FETCH_FAILED);
	}
}

static void on_released(void *arg, int rc, uint64_t n_bytes)
{
	(void)arg;
	(void)n_bytes;
	if (rc < 0)	/* the lender's --kv-hold-timeout releases it then */
		LOG_DEBUG(LOG_MOD, "releasing a KV hold: %s", err_msg());
}

void kv_fetch_release(struct kv_fetch *f, const struct gen_kv_source *src)
{
	struct kvx_fetch_req r = {
		.tcp_addr = src->tcp, .lender_ucx = src->ucx, .lender_tls = src->tls,
		.handle = src->handle, .block_bytes = f->c.block_bytes, .layout = f->layout, .release = 1,
	};
	if (kvx_fetch_start(f->b, &r, on_released, NULL, NULL) < 0)
		LOG_DEBUG(LOG_MOD, "releasing the KV hold of worker %016llx: %s",
			  (unsigned long long)src->worker, err_msg());
}

void kv_fetch_job_cancel(struct kv_fetch_job *j)
{
	if (j->slot) {
		*j->slot = NULL;
		j->slot = NULL;
	}
	if (j->xf) {		/* its done call cancels the request */
		j->cancelled = 1;
		kvx_fetch_cancel(j->xf);
	} else {		/* mock: waiting for the modelled time */
		job_fallback(j, KV_FALLBACK_CANCELLED);
	}
}

int kv_fetch_new(struct event_base *base, struct engine *e, const struct kv_fetch_conf *c,
		 struct kv_fetch **out)
{
	struct kv_fetch *f = xcalloc(1, sizeof(*f));
	struct kv_layout kl;
	f->base = base;
	f->e = e;
	f->c = *c;
	snprintf(f->layout, sizeof(f->layout), "%s", c->layout);
	f->c.layout = f->layout;
	f->segs_per_block = engine_kv_layout(e, &kl) == 0 ? 2 * kl.n_layers : 0;
	metrics_hist_init(&f->st.seconds, metrics_latency_buckets, metrics_latency_nbuckets);
	int rc = kvx_borrower_new(base, c->transport, c->tls, &f->b);
	if (rc < 0) {
		free(f);
		return rc;
	}
	*out = f;
	return 0;
}

void kv_fetch_free(struct kv_fetch *f)
{
	if (!f)
		return;
	kvx_borrower_free(f->b);	/* running fetches end (their done calls) */
	while (f->jobs)			/* mock ones waiting for their time */
		job_fallback(f->jobs, KV_FALLBACK_CANCELLED);
	free(f);
}

const struct kv_fetch_stats *kv_fetch_stats(const struct kv_fetch *f)
{
	return &f->st;
}
