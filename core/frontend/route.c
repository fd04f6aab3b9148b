/*
 * route.c - KV-aware worker selection for the frontend (--router-mode kv;
 * see internal.h and core/router/selector.h).
 *
 * Each model has its own prefix index and selector (a model's workers
 * share one block size, taken from the first card: the request's block
 * sequence hashes must be computed with the worker's block size to match
 * what the workers cache).  Workers join the selector and the index with
 * their card and are purged with it (the card disappears from the store
 * when the worker stops or its lease expires).
 *
 * KV events (the default): the frontend subscribes to each worker's
 * NS/COMP/kv_events stream (core/serve/kv_pub.h) once both its card and
 * its instance record are known, asks for a dump (NS/COMP/kv_dump) on
 * connect and whenever kv_sync detects a gap in event ids, and applies
 * events, dumps and load reports to the index and the selector.  A
 * subscription that fails is retried every FE_SUB_RETRY_MS while the
 * worker's card exists.
 *
 * With --no-kv-events the index is filled in approximate mode instead:
 * each decision records the request's blocks under the chosen worker for
 * FE_APPROX_TTL_MS (refreshed when routed there again).
 *
 * Everything runs on the frontend's event thread.
 */
#include "core/frontend/internal.h"
#include "core/engine/block_hash.h"
#include "core/err.h"
#include "core/log.h"
#include "core/router/kv_events.h"
#include "core/util.h"
#include "net/rpc.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "router"
#define FE_APPROX_TTL_MS 120000
#define FE_SUB_TICK_MS 100
#define FE_SUB_RETRY_MS 1000

struct fe_sub {
	struct frontend *f;
	struct fe_model *m;
	uint64_t worker;
	char *ev_path, *dump_path, *addr;
	struct rpc_stream *st, *dump;
	struct kv_sync sync;
	uint64_t retry_at_ms;
};

static void sub_cancel(struct fe_sub *s)
{
	if (s->st)
		rpc_stream_cancel(s->st);
	if (s->dump)
		rpc_stream_cancel(s->dump);
	s->st = s->dump = NULL;
}

static void sub_free(struct fe_sub *s)
{
	sub_cancel(s);
	free(s->ev_path);
	free(s->dump_path);
	free(s->addr);
	free(s);
}

static void apply(struct fe_sub *s, const void *data, size_t len);
static void request_dump(struct fe_sub *s);

static void on_dump_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			void *arg)
{
	struct fe_sub *s = arg;
	(void)st;
	(void)flags;
	s->dump = NULL;
	s->f->kv_resyncs++;
	apply(s, data, len);
}

static void on_dump_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_sub *s = arg;
	(void)st;
	s->dump = NULL;
	LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": KV dump failed (%d): %s", s->worker, code, msg);
}

static void on_dump_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			 void *arg)
{
	(void)st;
	(void)flags;
	apply(arg, data, len);
}

static const struct rpc_stream_cbs dump_cbs = { on_dump_data, on_dump_end, on_dump_error };

static void request_dump(struct fe_sub *s)
{
	if (s->dump)
		return;
	if (rpc_call(s->f->rpc, s->addr, s->dump_path, "{}", 2, 0, &dump_cbs, s, &s->dump) < 0) {
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": KV dump: %s", s->worker, err_msg());
		s->dump = NULL;
	}
}

/* One message from the worker: events, a dump or a load report. */
static void apply(struct fe_sub *s, const void *data, size_t len)
{
	struct kv_msg msg;
	if (!len)
		return;
	if (kv_msg_decode(data, len, &msg) < 0) {
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": bad KV message: %s", s->worker, err_msg());
		return;
	}
	uint64_t before = s->sync.applied;
	enum kv_sync_result r = kv_sync_apply(&s->sync, s->m->ix, &msg);
	s->f->kv_msgs++;
	s->f->kv_applied += s->sync.applied - before;
	if (msg.has_load)
		selector_load_report(s->m->sel, s->worker, &msg.load);
	LOG_TRACE(LOG_MOD, "worker %016" PRIx64 ": %s of %zu events, last id %" PRIu64
		  ", %zu blocks indexed", s->worker, msg.is_dump ? "dump" : "batch",
		  msg.n_events, s->sync.last_id, indexer_worker_blocks(s->m->ix, s->worker));
	kv_msg_release(&msg);
	if (r == KV_SYNC_NEED_RESYNC) {
		LOG_DEBUG(LOG_MOD, "worker %016" PRIx64 ": KV event gap after id %" PRIu64
			  "; asking for a dump", s->worker, s->sync.last_id);
		request_dump(s);
	}
}

static void on_ev_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		       void *arg)
{
	(void)st;
	(void)flags;
	apply(arg, data, len);
}

static void on_ev_gone(struct fe_sub *s, const char *why)
{
	s->st = NULL;
	s->retry_at_ms = mono_ms() + FE_SUB_RETRY_MS;
	LOG_DEBUG(LOG_MOD, "worker %016" PRIx64 ": KV event stream ended: %s", s->worker, why);
}

static void on_ev_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		      void *arg)
{
	(void)st;
	(void)data;
	(void)len;
	(void)flags;
	on_ev_gone(arg, "end");
}

static void on_ev_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	(void)st;
	(void)code;
	on_ev_gone(arg, msg);
}

static const struct rpc_stream_cbs ev_cbs = { on_ev_data, on_ev_end, on_ev_error };

static struct fe_sub *sub_find(struct fe_model *m, uint64_t worker, size_t *idx)
{
	for (size_t i = 0; i < m->nsubs; i++)
		if (m->subs[i]->worker == worker) {
			if (idx)
				*idx = i;
			return m->subs[i];
		}
	return NULL;
}

/* Start (or restart) the subscription to worker w of m when it is due. */
static void sub_tick(struct frontend *f, struct fe_model *m, uint64_t w, uint64_t now)
{
	const char *addr, *path;
	struct fe_sub *s = sub_find(m, w, NULL);

	if (s && (s->st || now < s->retry_at_ms)) {
		if (s->st && s->sync.need_resync && !s->dump)
			request_dump(s);
		return;
	}
	if (!fe_model_usable(f, m, w, &addr, &path))
		return;
	if (!s) {
		s = xcalloc(1, sizeof(*s));
		s->f = f;
		s->m = m;
		s->worker = w;
		m->subs = xrealloc(m->subs, (m->nsubs + 1) * sizeof(*m->subs));
		m->subs[m->nsubs++] = s;
	}
	const char *slash = strrchr(path, '/');
	size_t plen = slash ? (size_t)(slash - path) : 0;
	free(s->ev_path);
	free(s->dump_path);
	free(s->addr);
	s->ev_path = xmalloc(plen + 16);
	s->dump_path = xmalloc(plen + 16);
	snprintf(s->ev_path, plen + 16, "%.*s/kv_events", (int)plen, path);
	snprintf(s->dump_path, plen + 16, "%.*s/kv_dump", (int)plen, path);
	s->addr = xstrdup(addr);
	kv_sync_init(&s->sync, w);
	kv_sync_request_resync(&s->sync);
	if (rpc_call(f->rpc, s->addr, s->ev_path, "{}", 2, 0, &ev_cbs, s, &s->st) < 0) {
		s->st = NULL;
		s->retry_at_ms = now + FE_SUB_RETRY_MS;
		return;
	}
	LOG_DEBUG(LOG_MOD, "model %s: subscribed to KV events of worker %016" PRIx64 " at %s",
		  m->name, w, s->addr);
	request_dump(s);
}

static void on_route_timer(evutil_socket_t fd, short what, void *arg)
{
	struct frontend *f = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	for (struct fe_model *m = f->models; m; m = m->next) {
		if (!m->sel)
			continue;
		for (size_t i = 0; i < m->nworkers; i++)
			sub_tick(f, m, m->workers[i].id, now);
	}
}

void fe_route_stop(struct frontend *f)
{
	if (f->route_timer) {
		event_free(f->route_timer);
		f->route_timer = NULL;
	}
	for (struct fe_model *m = f->models; m; m = m->next) {
		for (size_t i = 0; i < m->nsubs; i++)
			sub_free(m->subs[i]);
		free(m->subs);
		m->subs = NULL;
		m->nsubs = 0;
	}
}

/* KV hit rate (overlap blocks / request blocks) buckets. */
static const double hit_buckets[] = { 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1 };
/* Decision time buckets in seconds (1 us .. 100 ms). */
static const double decision_buckets[] = { 1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
					   5e-4, 1e-3, 5e-3, 1e-2, 1e-1 };

void fe_route_init(struct frontend *f)
{
	metrics_hist_init(&f->route_time, decision_buckets,
			  sizeof(decision_buckets) / sizeof(decision_buckets[0]));
	metrics_hist_init(&f->route_hit, hit_buckets, sizeof(hit_buckets) / sizeof(hit_buckets[0]));
	if (f->o.router == FRONTEND_ROUTE_KV && !f->o.no_kv_events) {
		struct timeval tv = { 0, FE_SUB_TICK_MS * 1000 };
		f->route_timer = event_new(f->base, -1, EV_PERSIST, on_route_timer, f);
		if (f->route_timer)
			event_add(f->route_timer, &tv);
	}
}

void fe_route_model_init(struct frontend *f, struct fe_model *m, long block_size)
{
	if (f->o.router != FRONTEND_ROUTE_KV)
		return;
	struct selector_config sc;
	selector_config_default(&sc);
	sc.mode = ROUTER_MODE_KV;
	sc.overlap_weight = f->o.overlap_weight;
	sc.temperature = f->o.temperature;
	sc.block_size = block_size > 0 ? (int)block_size : 16;
	sc.approx_ttl_ms = f->o.no_kv_events ? FE_APPROX_TTL_MS : 0;
	m->block_size = sc.block_size;
	m->ix = indexer_new();
	m->sel = selector_new(&sc, m->ix);
}

void fe_route_model_free(struct fe_model *m)
{
	for (size_t i = 0; i < m->nsubs; i++)
		sub_free(m->subs[i]);
	free(m->subs);
	m->subs = NULL;
	m->nsubs = 0;
	selector_free(m->sel);
	indexer_free(m->ix);
	m->sel = NULL;
	m->ix = NULL;
}

void fe_route_add_worker(struct fe_model *m, uint64_t id)
{
	if (!m->sel)
		return;
	selector_add_worker(m->sel, id);
	indexer_add_worker(m->ix, id);
}

void fe_route_remove_worker(struct fe_model *m, uint64_t id)
{
	if (!m->sel)
		return;
	size_t n = indexer_worker_blocks(m->ix, id), i;
	struct fe_sub *s = sub_find(m, id, &i);
	if (s) {
		m->subs[i] = m->subs[--m->nsubs];
		sub_free(s);
	}
	selector_remove_worker(m->sel, id);
	indexer_purge(m->ix, id);
	LOG_INFO(LOG_MOD, "model %s: worker %016" PRIx64 " purged from the index (%zu blocks)",
		 m->name, id, n);
}

size_t fe_route_hashes(const struct fe_model *m, const int32_t *ids, size_t n, uint64_t **out)
{
	*out = NULL;
	if (!m->sel || m->block_size <= 0 || n < (size_t)m->block_size)
		return 0;
	size_t nb = n / (size_t)m->block_size;
	*out = xmalloc(nb * sizeof(**out));
	return block_hash_sequence(ids, n, m->block_size, NULL, *out);
}

int fe_route_select(struct frontend *f, struct fe_model *m, const char *req_id,
		    const uint64_t *hashes, size_t n, uint64_t *worker)
{
	struct selector_decision d;
	uint64_t t0 = mono_ns();

	selector_expire(m->sel, (int64_t)mono_ms());
	if (selector_select(m->sel, hashes, n, &d) < 0)
		return -1;
	metrics_hist_observe(&f->route_time, (double)(mono_ns() - t0) / 1e9);
	if (n)
		metrics_hist_observe(&f->route_hit, (double)d.overlap / (double)n);
	f->route_decisions++;
	if (log_enabled(LOG_DEBUG, LOG_MOD)) {
		struct strbuf b = STRBUF_INIT;
		for (size_t i = 0; i < d.n_cands; i++)
			sb_addf(&b, " %016" PRIx64 ":overlap=%u,prefill=%.1f,decode=%.1f,cost=%.2f",
				d.cands[i].worker, d.cands[i].overlap, d.cands[i].prefill_blocks,
				d.cands[i].decode_blocks, d.cands[i].cost);
		LOG_DEBUG(LOG_MOD, "%s: model %s, %zu blocks; chose %016" PRIx64
			  " (overlap %u, cost %.2f); candidates:%s", req_id, m->name, n,
			  d.worker, d.overlap, d.cost, b.len ? b.buf : " none");
		sb_release(&b);
	}
	*worker = d.worker;
	return (int)d.overlap;
}

void fe_route_dispatch(struct fe_model *m, uint64_t req, uint64_t worker,
		       const uint64_t *hashes, size_t n, uint32_t overlap)
{
	if (m->sel)
		selector_dispatch(m->sel, req, worker, hashes, n, overlap, (int64_t)mono_ms());
}

void fe_route_first_token(struct fe_model *m, uint64_t req)
{
	if (m->sel)
		selector_first_token(m->sel, req);
}

void fe_route_finish(struct fe_model *m, uint64_t req)
{
	if (m->sel)
		selector_finish(m->sel, req);
}

void fe_route_metrics(struct frontend *f, struct strbuf *out)
{
	if (f->o.router != FRONTEND_ROUTE_KV)
		return;
	metrics_family(out, "dyn_frontend_router_decisions_total", "counter",
		       "KV routing decisions made.");
	metrics_value(out, "dyn_frontend_router_decisions_total", "", (double)f->route_decisions);
	metrics_family(out, "dyn_frontend_router_decision_seconds", "histogram",
		       "Time to choose a worker for a request (KV router).");
	metrics_hist_write(out, "dyn_frontend_router_decision_seconds", "", &f->route_time);
	metrics_family(out, "dyn_frontend_router_kv_hit_rate", "histogram",
		       "Request blocks already cached on the chosen worker / request blocks "
		       "(requests of at least one full block).");
	metrics_hist_write(out, "dyn_frontend_router_kv_hit_rate", "", &f->route_hit);
	metrics_family(out, "dyn_frontend_router_kv_events_applied_total", "counter",
		       "KV events from workers applied to the prefix index.");
	metrics_value(out, "dyn_frontend_router_kv_events_applied_total", "",
		      (double)f->kv_applied);
	metrics_family(out, "dyn_frontend_router_kv_resyncs_total", "counter",
		       "Full KV dumps applied (on subscribing and after a gap in event ids).");
	metrics_value(out, "dyn_frontend_router_kv_resyncs_total", "", (double)f->kv_resyncs);
}
