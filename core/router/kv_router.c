/*
 * kv_router.c - a router's view of the workers (kv_router.h).
 */
#include "core/router/kv_router.h"

#include "core/proto/block_hash.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/proto/kv_events.h"
#include "core/router/kv_sync.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/rpc.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "router"
#define TICK_MS 100

/* Subscriptions and dumps ask for the compact form (kv_events.h). */
#define WANT_BINARY "{\"wire\":\"binary\"}"

/* One worker of a model, with its KV event subscription. */
struct kvr_worker {
	struct kv_router_model *m;
	struct selector *sel;		/* its pool's */
	int prefill;			/* in the prefill pool */
	uint64_t id;
	char *ev_path, *dump_path;	/* NS/COMP/kv_events, NS/COMP/kv_dump */
	char *addr;			/* where the subscription went */
	struct rpc_stream *st, *dump;
	struct kv_sync sync;
	uint64_t retry_at_ms;
};

struct kv_router_model {
	struct kv_router *r;
	char *name;
	int block_size;
	struct indexer *ix;
	struct selector *sel, *psel;	/* the decode pool's, the prefill pool's */
	struct kvr_worker **w;
	size_t nw;
	struct kv_router_model *next;
};

struct kv_router {
	struct event_base *base;
	struct rpc_client *rpc;
	struct kv_router_config c;
	char *prefix;
	kv_router_addr_fn addr;
	void *addr_arg;
	struct event *timer;		/* subscriptions (re)started */
	struct kv_router_model *models;
	uint64_t decisions, applied, resyncs, msgs;
	struct metrics_hist time, hit;
};

/* ---- subscriptions ------------------------------------------------------ */

static void sub_cancel(struct kvr_worker *w)
{
	if (w->st)
		rpc_stream_cancel(w->st);
	if (w->dump)
		rpc_stream_cancel(w->dump);
	w->st = w->dump = NULL;
}

static void apply(struct kvr_worker *w, const void *data, size_t len);

static void on_dump_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			void *arg)
{
	struct kvr_worker *w = arg;
	(void)st;
	(void)flags;
	w->dump = NULL;
	w->m->r->resyncs++;
	apply(w, data, len);
}

static void on_dump_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct kvr_worker *w = arg;
	(void)st;
	w->dump = NULL;
	LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": KV dump failed (%d): %s", w->id, code, msg);
}

static void on_dump_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			 void *arg)
{
	(void)st;
	(void)flags;
	apply(arg, data, len);
}

static const struct rpc_stream_cbs dump_cbs = { on_dump_data, on_dump_end, on_dump_error };

static void request_dump(struct kvr_worker *w)
{
	if (w->dump)
		return;
	if (rpc_call(w->m->r->rpc, w->addr, w->dump_path, WANT_BINARY, strlen(WANT_BINARY), 0, &dump_cbs, w,
		     &w->dump) < 0) {
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": KV dump: %s", w->id, err_msg());
		w->dump = NULL;
	}
}

/* One message from the worker: events, a dump or a load report. */
static void apply(struct kvr_worker *w, const void *data, size_t len)
{
	struct kv_router_model *m = w->m;
	struct kv_msg msg;
	if (!len)
		return;
	if (kv_msg_decode(data, len, &msg) < 0) {
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 ": bad KV message: %s", w->id, err_msg());
		return;
	}
	uint64_t before = w->sync.applied;
	enum kv_sync_result res = kv_sync_apply(&w->sync, m->ix, &msg);
	m->r->msgs++;
	m->r->applied += w->sync.applied - before;
	if (msg.has_load)
		selector_load_report(w->sel, w->id, &msg.load);
	LOG_TRACE(LOG_MOD, "worker %016" PRIx64 ": %s of %zu events, last id %" PRIu64
		  ", %zu blocks indexed", w->id, msg.is_dump ? "dump" : "batch",
		  msg.n_events, w->sync.last_id, indexer_worker_blocks(m->ix, w->id));
	kv_msg_release(&msg);
	if (res == KV_SYNC_NEED_RESYNC) {
		LOG_DEBUG(LOG_MOD, "worker %016" PRIx64 ": KV event gap after id %" PRIu64
			  "; asking for a dump", w->id, w->sync.last_id);
		request_dump(w);
	}
}

static void on_ev_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		       void *arg)
{
	(void)st;
	(void)flags;
	apply(arg, data, len);
}

static void on_ev_gone(struct kvr_worker *w, const char *why)
{
	w->st = NULL;
	w->retry_at_ms = mono_ms() + KV_ROUTER_RETRY_MS;
	LOG_DEBUG(LOG_MOD, "worker %016" PRIx64 ": KV event stream ended: %s", w->id, why);
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

/* Start (or restart) the subscription to w when it is due. */
static void sub_tick(struct kvr_worker *w, uint64_t now)
{
	struct kv_router *r = w->m->r;
	if (w->st || now < w->retry_at_ms) {
		if (w->st && w->sync.need_resync && !w->dump)
			request_dump(w);
		return;
	}
	const char *addr = r->addr(r->addr_arg, w->id);
	if (!addr)
		return;
	free(w->addr);
	w->addr = xstrdup(addr);
	kv_sync_init(&w->sync, w->id);
	kv_sync_request_resync(&w->sync);
	if (rpc_call(r->rpc, w->addr, w->ev_path, WANT_BINARY, strlen(WANT_BINARY), 0, &ev_cbs, w,
		     &w->st) < 0) {
		w->st = NULL;
		w->retry_at_ms = now + KV_ROUTER_RETRY_MS;
		return;
	}
	LOG_DEBUG(LOG_MOD, "model %s: subscribed to KV events of worker %016" PRIx64 " at %s",
		  w->m->name, w->id, w->addr);
	request_dump(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kv_router *r = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	for (struct kv_router_model *m = r->models; m; m = m->next)
		for (size_t i = 0; i < m->nw; i++)
			sub_tick(m->w[i], now);
}

/* ---- the router ----------------------------------------------------------- */

/* KV hit rate (overlap blocks / request blocks) buckets. */
static const double hit_buckets[] = { 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1 };
/* Decision time buckets in seconds (1 us .. 100 ms). */
static const double decision_buckets[] = { 1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4,
					   5e-4, 1e-3, 5e-3, 1e-2, 1e-1 };

struct kv_router *kv_router_new(struct event_base *base, struct rpc_client *rpc,
				const struct kv_router_config *c, kv_router_addr_fn addr,
				void *arg)
{
	struct kv_router *r = xcalloc(1, sizeof(*r));
	r->base = base;
	r->rpc = rpc;
	r->c = *c;
	r->prefix = xstrdup(c->metrics_prefix ? c->metrics_prefix : "dyn_router");
	r->c.metrics_prefix = r->prefix;
	r->addr = addr;
	r->addr_arg = arg;
	metrics_hist_init(&r->time, decision_buckets,
			  sizeof(decision_buckets) / sizeof(decision_buckets[0]));
	metrics_hist_init(&r->hit, hit_buckets, sizeof(hit_buckets) / sizeof(hit_buckets[0]));
	if (c->mode == ROUTER_MODE_KV && !c->no_kv_events) {
		struct timeval tv = { 0, TICK_MS * 1000 };
		r->timer = event_new(base, -1, EV_PERSIST, on_timer, r);
		if (r->timer)
			event_add(r->timer, &tv);
	}
	return r;
}

void kv_router_stop(struct kv_router *r)
{
	if (!r)
		return;
	if (r->timer) {
		event_free(r->timer);
		r->timer = NULL;
	}
	for (struct kv_router_model *m = r->models; m; m = m->next)
		for (size_t i = 0; i < m->nw; i++) {
			sub_cancel(m->w[i]);
			m->w[i]->retry_at_ms = UINT64_MAX;	/* never again */
		}
}

void kv_router_free(struct kv_router *r)
{
	if (!r)
		return;
	kv_router_stop(r);
	while (r->models)
		kv_router_model_free(r->models);
	free(r->prefix);
	free(r);
}

const struct kv_router_config *kv_router_config(const struct kv_router *r)
{
	return &r->c;
}

/* ---- models and workers ----------------------------------------------------- */

struct kv_router_model *kv_router_model_new(struct kv_router *r, const char *name,
					    int block_size)
{
	struct kv_router_model *m = xcalloc(1, sizeof(*m));
	struct selector_config sc;
	selector_config_default(&sc);
	sc.mode = r->c.mode;
	sc.overlap_weight = r->c.overlap_weight;
	sc.temperature = r->c.temperature;
	sc.block_size = block_size > 0 ? block_size : 16;
	sc.approx_ttl_ms = r->c.no_kv_events && r->c.mode == ROUTER_MODE_KV
			   ? KV_ROUTER_APPROX_TTL_MS : 0;
	sc.predict_ttl_ms = KV_ROUTER_PREDICT_TTL_MS;
	m->r = r;
	m->name = xstrdup(name);
	m->block_size = sc.block_size;
	m->ix = indexer_new();
	m->sel = selector_new(&sc, m->ix);
	m->psel = selector_new(&sc, m->ix);
	m->next = r->models;
	r->models = m;
	return m;
}

static void worker_free(struct kvr_worker *w)
{
	sub_cancel(w);
	free(w->ev_path);
	free(w->dump_path);
	free(w->addr);
	free(w);
}

void kv_router_model_free(struct kv_router_model *m)
{
	if (!m)
		return;
	for (struct kv_router_model **p = &m->r->models; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	for (size_t i = 0; i < m->nw; i++)
		worker_free(m->w[i]);
	free(m->w);
	selector_free(m->sel);
	selector_free(m->psel);
	indexer_free(m->ix);
	free(m->name);
	free(m);
}

const char *kv_router_model_name(const struct kv_router_model *m)
{
	return m->name;
}

int kv_router_model_block_size(const struct kv_router_model *m)
{
	return m->block_size;
}

size_t kv_router_model_workers(const struct kv_router_model *m)
{
	return m->nw;
}

size_t kv_router_model_pool(const struct kv_router_model *m, enum route_role role)
{
	return selector_workers(role == ROUTE_ROLE_PREFILL ? m->psel : m->sel);
}

static struct kvr_worker *worker_find(const struct kv_router_model *m, uint64_t id,
				      size_t *idx)
{
	for (size_t i = 0; i < m->nw; i++)
		if (m->w[i]->id == id) {
			if (idx)
				*idx = i;
			return m->w[i];
		}
	return NULL;
}

void kv_router_add_worker(struct kv_router_model *m, uint64_t worker, const char *path,
			  long block_size, enum route_role role)
{
	if (worker_find(m, worker, NULL))
		return;
	struct kvr_worker *w = xcalloc(1, sizeof(*w));
	const char *slash = strrchr(path, '/');
	int plen = slash ? (int)(slash - path) : 0;
	struct strbuf b = STRBUF_INIT;
	w->m = m;
	w->id = worker;
	w->prefill = role == ROUTE_ROLE_PREFILL;
	w->sel = w->prefill ? m->psel : m->sel;
	sb_addf(&b, "%.*s/kv_events", plen, path);
	w->ev_path = sb_detach(&b, NULL);
	sb_addf(&b, "%.*s/kv_dump", plen, path);
	w->dump_path = sb_detach(&b, NULL);
	kv_sync_init(&w->sync, worker);
	m->w = xrealloc(m->w, (m->nw + 1) * sizeof(*m->w));
	m->w[m->nw++] = w;
	selector_add_worker(w->sel, worker);
	indexer_add_worker(m->ix, worker);
	if (block_size > 0 && block_size != m->block_size)
		LOG_WARN(LOG_MOD, "worker %016" PRIx64 " serves %s with KV block size %ld, not "
			 "%d: its cache will not match the router's hashes", worker, m->name,
			 block_size, m->block_size);
}

void kv_router_remove_worker(struct kv_router_model *m, uint64_t worker)
{
	size_t i, n = indexer_worker_blocks(m->ix, worker);
	struct kvr_worker *w = worker_find(m, worker, &i);
	if (!w)
		return;
	m->w[i] = m->w[--m->nw];
	selector_remove_worker(w->sel, worker);
	worker_free(w);
	indexer_purge(m->ix, worker);
	LOG_INFO(LOG_MOD, "model %s: worker %016" PRIx64 " purged from the index (%zu blocks)",
		 m->name, worker, n);
}

/* ---- routing ------------------------------------------------------------------ */

size_t kv_router_block_hashes(int block_size, const int32_t *ids, size_t n, uint64_t **out)
{
	*out = NULL;
	if (block_size <= 0 || n < (size_t)block_size)
		return 0;
	*out = xmalloc(n / (size_t)block_size * sizeof(**out));
	return block_hash_sequence(ids, n, block_size, NULL, *out);
}

size_t kv_router_hashes(const struct kv_router_model *m, const int32_t *ids, size_t n,
			uint64_t **out)
{
	return kv_router_block_hashes(m->block_size, ids, n, out);
}

/* Which workers a choice may take. */
struct allow {
	uint64_t exclude;		/* not this one (0: none) */
	const struct kv_router *addr;	/* only those with an address (NULL: any) */
};

static int allowed(const struct allow *a, uint64_t worker)
{
	return worker != a->exclude && (!a->addr || a->addr->addr(a->addr->addr_arg, worker));
}

/* Choose in sel a worker a allows: the selector's choice, else the
 * cheapest other candidate, else ask again (round-robin / random list
 * only the chosen one). */
static int select_in(struct kv_router_model *m, struct selector *sel, const uint64_t *hashes,
		     size_t n, const struct allow *a, struct route_choice *d)
{
	if (selector_select(sel, hashes, n, d) < 0)
		return err_set(-ENOENT, "router: no worker of %s", m->name);
	if (allowed(a, d->worker))
		return 0;
	const struct route_candidate *best = NULL;
	for (size_t i = 0; i < d->n_cands; i++)
		if (allowed(a, d->cands[i].worker) && (!best || d->cands[i].cost < best->cost))
			best = &d->cands[i];
	if (best) {
		d->worker = best->worker;
		d->overlap = best->overlap;
		d->cost = best->cost;
		return 0;
	}
	for (size_t tries = 0; tries < 2 * selector_workers(sel) + 2; tries++) {
		if (selector_select(sel, hashes, n, d) < 0)
			break;
		if (allowed(a, d->worker))
			return 0;
	}
	return err_set(-ENOENT, "router: no worker of %s left to choose (one excluded, or "
		       "none reachable)", m->name);
}

int kv_router_select(struct kv_router_model *m, const char *req_id, const uint64_t *hashes,
		     size_t n, uint64_t exclude, struct route_choice *d)
{
	struct kv_router *r = m->r;
	uint64_t t0 = mono_ns();
	const struct allow a = { exclude, NULL };

	selector_expire(m->sel, (int64_t)mono_ms());
	if (select_in(m, m->sel, hashes, n, &a, d) < 0)
		return -ENOENT;
	metrics_hist_observe(&r->time, (double)(mono_ns() - t0) / 1e9);
	if (n)
		metrics_hist_observe(&r->hit, (double)d->overlap / (double)n);
	r->decisions++;
	if (log_enabled(LOG_DEBUG, LOG_MOD)) {
		struct strbuf b = STRBUF_INIT;
		for (size_t i = 0; i < d->n_cands; i++)
			sb_addf(&b, " %016" PRIx64 ":overlap=%u,prefill=%.1f,decode=%.1f,cost=%.2f",
				d->cands[i].worker, d->cands[i].overlap, d->cands[i].prefill_blocks,
				d->cands[i].decode_blocks, d->cands[i].cost);
		LOG_DEBUG(LOG_MOD, "%s: model %s, %zu blocks; chose %016" PRIx64
			  " (overlap %u, cost %.2f); candidates:%s", req_id, m->name, n,
			  d->worker, d->overlap, d->cost, b.len ? b.buf : " none");
		sb_release(&b);
	}
	return 0;
}

int kv_router_plan(struct kv_router_model *m, const char *req_id, const uint64_t *hashes,
		   size_t n, size_t prompt_tokens, uint64_t exclude, struct kv_router_plan *out)
{
	struct kv_router *r = m->r;
	memset(out, 0, sizeof(*out));
	if (kv_router_select(m, req_id, hashes, n, exclude, &out->decode) < 0)
		return -ENOENT;
	/* the prefill workers that can be called now, with their queues */
	int64_t *queued = xmalloc((m->nw + 1) * sizeof(*queued));
	size_t np = 0;
	for (size_t i = 0; i < m->nw; i++) {
		const struct kvr_worker *w = m->w[i];
		if (w->prefill && r->addr(r->addr_arg, w->id))
			queued[np++] = w->sync.has_load ? w->sync.load.queued_prefill_tokens : -1;
	}
	long cached = (long)out->decode.overlap * m->block_size;
	long uncached = (long)prompt_tokens > cached ? (long)prompt_tokens - cached : 0;
	out->decision = disagg_decide(&r->c.disagg, uncached, queued, np);
	free(queued);
	if (out->decision != DISAGG_REMOTE)
		return 0;
	struct route_choice p;
	const struct allow a = { 0, r };
	selector_expire(m->psel, (int64_t)mono_ms());
	if (select_in(m, m->psel, hashes, n, &a, &p) < 0) {
		out->decision = DISAGG_LOCAL_NO_PREFILL;
		return 0;
	}
	out->prefill = p.worker;
	out->prefill_overlap = p.overlap;
	LOG_DEBUG(LOG_MOD, "%s: model %s: prefill on %016" PRIx64 " (overlap %u), decode on %016"
		  PRIx64 " (overlap %u)", req_id, m->name, p.worker, p.overlap, out->decode.worker,
		  out->decode.overlap);
	return 0;
}

int kv_router_dispatch(struct kv_router_model *m, uint64_t req, uint64_t worker,
		       const uint64_t *hashes, size_t n, uint32_t overlap)
{
	const struct kvr_worker *w = worker_find(m, worker, NULL);
	if (!w)
		return err_set(-ENOENT, "router: unknown worker %016" PRIx64, worker);
	return selector_dispatch(w->sel, req, worker, hashes, n, overlap, (int64_t)mono_ms());
}

void kv_router_first_token(struct kv_router_model *m, uint64_t req)
{
	selector_first_token(m->sel, req);
	selector_finish(m->psel, req);	/* its remote prefill is over by now */
}

void kv_router_finish(struct kv_router_model *m, uint64_t req)
{
	selector_finish(m->sel, req);
	selector_finish(m->psel, req);
}

/* ---- observability ---------------------------------------------------------------- */

static void family(struct strbuf *out, const struct kv_router *r, const char *suffix,
		   const char *type, const char *help, char *name, size_t nsz)
{
	snprintf(name, nsz, "%s_%s", r->prefix, suffix);
	metrics_family(out, name, type, help);
}

static double worker_blocks(const struct kv_router_model *m, uint64_t w)
{
	return (double)indexer_worker_blocks(m->ix, w);
}

static double worker_inflight(const struct kv_router_model *m, uint64_t w)
{
	const struct kvr_worker *kw = worker_find(m, w, NULL);
	return kw ? (double)selector_worker_inflight(kw->sel, w) : 0;
}

/* One sample of name per worker (labels model, worker). */
static void per_worker(struct strbuf *out, const struct kv_router *r, const char *name,
		       double (*value)(const struct kv_router_model *m, uint64_t w))
{
	struct strbuf l = STRBUF_INIT;
	for (const struct kv_router_model *m = r->models; m; m = m->next)
		for (size_t i = 0; i < m->nw; i++) {
			char id[20];
			snprintf(id, sizeof(id), "%016" PRIx64, m->w[i]->id);
			sb_reset(&l);
			metrics_label(&l, "model", m->name);
			metrics_label(&l, "worker", id);
			metrics_value(out, name, l.buf, value(m, m->w[i]->id));
		}
	sb_release(&l);
}

void kv_router_metrics(const struct kv_router *r, struct strbuf *out)
{
	char name[128];

	family(out, r, "decisions_total", "counter", "Routing decisions made.", name,
	       sizeof(name));
	metrics_value(out, name, "", (double)r->decisions);
	family(out, r, "decision_seconds", "histogram",
	       "Time to choose a worker for a request.", name, sizeof(name));
	metrics_hist_write(out, name, "", &r->time);
	family(out, r, "kv_hit_rate", "histogram",
	       "Request blocks already cached on the chosen worker / request blocks "
	       "(requests of at least one full block).", name, sizeof(name));
	metrics_hist_write(out, name, "", &r->hit);
	family(out, r, "kv_events_applied_total", "counter",
	       "KV events from workers applied to the prefix index.", name, sizeof(name));
	metrics_value(out, name, "", (double)r->applied);
	family(out, r, "kv_resyncs_total", "counter",
	       "Full KV dumps applied (on subscribing and after a gap in event ids).", name,
	       sizeof(name));
	metrics_value(out, name, "", (double)r->resyncs);
	family(out, r, "worker_blocks", "gauge", "KV blocks indexed per worker.", name,
	       sizeof(name));
	per_worker(out, r, name, worker_blocks);
	family(out, r, "worker_inflight_requests", "gauge",
	       "Requests routed to a worker and not finished.", name, sizeof(name));
	per_worker(out, r, name, worker_inflight);
}

static void worker_json(const struct kv_router_model *m, const struct kvr_worker *w,
			struct strbuf *out)
{
	const struct kv_router *r = m->r;
	const char *addr = r->addr(r->addr_arg, w->id);
	double pre = 0, dec = 0;

	sb_adds(out, "{\"model\":");
	sb_add_json_str(out, m->name, strlen(m->name));
	sb_addf(out, ",\"worker_id\":\"%016" PRIx64 "\",\"role\":\"%s\",\"address\":", w->id,
		w->prefill ? "prefill" : "decode");
	if (addr)
		sb_add_json_str(out, addr, strlen(addr));
	else
		sb_adds(out, "null");
	sb_addf(out, ",\"subscribed\":%s,\"blocks\":%zu,\"last_event_id\":%" PRIu64
		",\"resyncs\":%" PRIu64, w->st ? "true" : "false",
		indexer_worker_blocks(m->ix, w->id), w->sync.last_id, w->sync.resyncs);
	sb_adds(out, ",\"tier_blocks\":{");
	for (int k = 1; k <= INDEXER_MEDIA; k++)
		sb_addf(out, "%s\"G%d\":%zu", k > 1 ? "," : "", k,
			indexer_medium_blocks(m->ix, w->id, k));
	sb_adds(out, "},\"load\":");
	if (w->sync.has_load)
		sb_addf(out, "{\"active_blocks\":%" PRId64 ",\"total_blocks\":%" PRId64
			",\"waiting\":%" PRId64 ",\"queued_prefill_tokens\":%" PRId64 "}",
			w->sync.load.active_blocks, w->sync.load.total_blocks,
			w->sync.load.waiting, w->sync.load.queued_prefill_tokens);
	else
		sb_adds(out, "null");
	selector_worker_load(w->sel, w->id, &pre, &dec);
	sb_addf(out, ",\"inflight\":%zu,\"prefill_blocks\":%.1f,\"decode_blocks\":%.1f}",
		selector_worker_inflight(w->sel, w->id), pre, dec);
}

void kv_router_workers_json(const struct kv_router *r, struct strbuf *out)
{
	int n = 0;
	sb_addch(out, '[');
	for (const struct kv_router_model *m = r->models; m; m = m->next)
		for (size_t i = 0; i < m->nw; i++) {
			if (n++)
				sb_addch(out, ',');
			worker_json(m, m->w[i], out);
		}
	sb_addch(out, ']');
}
