/*
 * worker.c - the worker component (worker.h): the engine handler table,
 * the generate endpoint and instance record, the model card, KV events,
 * the system port and graceful shutdown.
 */
#include "core/serve/worker.h"

#include "core/engine/engine.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/model/model.h"
#include "core/proto/card.h"
#include "core/runtime.h"
#include "core/serve/builtin.h"
#include "core/serve/card_publish.h"
#include "core/serve/echo.h"
#include "core/serve/embed_engine.h"
#include "core/serve/kv_fetch.h"
#include "core/serve/kv_lend.h"
#include "core/serve/kv_pub.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "net/sysport.h"
#include "store/store.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "serve"

const char *const worker_role_names[] = {
	[WORKER_ROLE_AGG] = "agg", [WORKER_ROLE_PREFILL] = "prefill",
	[WORKER_ROLE_DECODE] = "decode", NULL
};

struct worker {
	struct runtime *rt;
	const struct engine_handler *h;
	void *hs;			/* the handler's state */
	struct rpc_server *rpc;
	struct engine *e;		/* builtin, mock */
	struct model *m;
	struct kv_pub *kvp;		/* NULL: no KV events */
	struct kv_lend *lend;		/* prefill role */
	struct kv_fetch *fetch;		/* decode role */
	char layout[96];		/* the KV layout fingerprint (builtin, mock) */
	int block_size;
	size_t block_bytes;		/* one KV block on the wire (0: mock) */
	size_t model_block_bytes;	/* mock: what a real model's block has */
	struct endpoint_service *svc;
	struct sysport *sys;
	char *card_key;
	const char *name;
	struct worker_conf conf;	/* to publish the card again */
	/* graceful drain (dyn-serve(1) FAULT TOLERANCE) */
	long drain_in_flight;		/* requests running when it began */
	long drain_migrated;		/* ended with the "migrate" error */
	int drain_aborted;		/* the grace period is over */
	/* the health endpoint: the engine's step count and when it last
	 * moved (or had nothing to do) */
	uint64_t health_steps, health_moved_ms;
};

/* An engine with requests that has made no step for this long is
 * reported stalled by the health endpoint (a step of a long prompt chunk
 * on a slow CPU takes seconds, never a minute). */
#define WORKER_STALL_MS 60000

/* ---- engine handlers -------------------------------------------------------- */

/* What serves an engine's generate calls.  needs_engine: the worker makes a
 * struct engine for it from the model and the engine options. */
struct engine_handler {
	const char *name;
	int needs_engine;
	int (*open)(struct worker *w, const struct worker_conf *c);
	rpc_handler_fn handle;
	void (*stats)(const void *hs, struct worker_stats *out);
	void (*close)(void *hs);	/* after the rpc server and the engine are gone */
};

static int builtin_open(struct worker *w, const struct worker_conf *c)
{
	struct builtin_engine *b;
	int rc = builtin_engine_new(w->rt->base, c->m, w->e, &b);
	if (rc == 0)
		w->hs = b;
	return rc;
}

static void builtin_stats(const void *hs, struct worker_stats *out)
{
	builtin_engine_stats(hs, out);
}

static void builtin_close(void *hs)
{
	builtin_engine_free(hs);
}

static int echo_open(struct worker *w, const struct worker_conf *c)
{
	struct echo_engine *e;
	int rc = echo_engine_new(w->rt->base, c->echo_delay, &e);
	if (rc == 0)
		w->hs = e;
	return rc;
}

static void echo_stats(const void *hs, struct worker_stats *out)
{
	echo_engine_stats(hs, out);
}

static void echo_close(void *hs)
{
	echo_engine_free(hs);
}

static int embed_open(struct worker *w, const struct worker_conf *c)
{
	struct embed_engine_conf ec = { c->dir, 0, 1, 1 };
	struct embed_engine *e;
	int rc;

	if (c->eo) {
		ec.threads = c->eo->threads;
		ec.max_seqs = c->eo->max_num_seqs;
		ec.max_tokens = c->eo->max_num_batched_tokens;
	}
	rc = embed_engine_new(w->rt->base, &ec, &e);
	if (rc == 0)
		w->hs = e;
	return rc;
}

static void embed_stats(const void *hs, struct worker_stats *out)
{
	embed_engine_stats(hs, out);
}

static void embed_close(void *hs)
{
	embed_engine_free(hs);
}

/* mock is the builtin engine in mock mode (engine.h): the same handler. */
static const struct engine_handler handlers[] = {
	{ "builtin", 1, builtin_open, builtin_engine_handle, builtin_stats, builtin_close },
	{ "mock", 1, builtin_open, builtin_engine_handle, builtin_stats, builtin_close },
	{ "echo", 0, echo_open, echo_engine_handle, echo_stats, echo_close },
	{ "embed", 0, embed_open, embed_engine_handle, embed_stats, embed_close },
};

const char *const worker_engine_names[] = { "builtin", "mock", "echo", "embed", NULL };

static const struct engine_handler *handler_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
		if (!strcmp(handlers[i].name, name))
			return &handlers[i];
	return NULL;
}

/* engine_opts.kv_alloc of a prefill worker (arg: its kv_transport). */
static void *kv_pool_alloc(void *arg, size_t bytes)
{
	return kvx_pool_alloc(*(const enum kvx_transport *)arg, bytes);
}

static void kv_pool_free(void *arg, void *p)
{
	(void)arg;
	kvx_pool_free(p);
}

/* The engine for m, publishing its KV block events when kv_events; a
 * prefill worker's KV pool in memory its data plane can lend best. */
static int engine_make(struct worker *w, const struct worker_conf *c)
{
	struct engine_opts eo = *c->eo;
	int rc;

	if (c->role == WORKER_ROLE_PREFILL) {
		eo.kv_alloc = kv_pool_alloc;
		eo.kv_free = kv_pool_free;
		eo.kv_arg = (void *)&c->kv_transport;
	}

	if (c->kv_events) {
		w->kvp = kv_pub_new(w->rt->base);
		kv_pub_hooks(w->kvp, &eo.events);
		eo.on_step = kv_pub_on_engine_step;
		eo.step_arg = w->kvp;
	}
	rc = engine_new(c->m, &eo, &w->e);
	if (rc == 0)
		LOG_INFO(LOG_MOD, "%s: %s", c->served, engine_describe(w->e));
	return rc;
}

/* ---- disaggregated roles --------------------------------------------------------- */

/* One metric family with a single sample. */
static void metric(struct strbuf *out, const char *name, const char *type, const char *help,
		   const char *labels, double v)
{
	metrics_family(out, name, type, help);
	metrics_value(out, name, labels, v);
}

/* One family over the KV tiers G2..to, label tier="G2".. */
static void tier_family(struct strbuf *out, const char *labels, const char *name,
			const char *type, const char *help, const uint64_t *v, int to)
{
	struct strbuf l = STRBUF_INIT;

	metrics_family(out, name, type, help);
	for (int t = KV_TIER_HOST; t <= to; t++) {
		sb_reset(&l);
		sb_adds(&l, labels);
		metrics_label(&l, "tier", kv_tier_name(t));
		metrics_value(out, name, l.buf, (double)v[t]);
	}
	sb_release(&l);
}

/* The lower KV tiers (dyn-serve(1) KV CACHE TIERS). */
static void tier_metrics(struct worker *w, const char *labels, struct strbuf *out)
{
	struct kv_tiers_stats ts;

	if (engine_kv_tiers_stats(w->e, &ts) < 0)
		return;
	tier_family(out, labels, "dyn_worker_kv_tier_blocks", "gauge",
		    "KV blocks held in a lower tier (G2 host memory, G3 local disk, G4 those this "
		    "worker wrote to the shared directory).", ts.blocks, KV_TIER_SHARED);
	tier_family(out, labels, "dyn_worker_kv_tier_bytes", "gauge",
		    "Bytes of the KV blocks held in a lower tier (G3, G4: files, headers "
		    "included).", ts.bytes, KV_TIER_SHARED);
	tier_family(out, labels, "dyn_worker_kv_tier_offloads_total", "counter",
		    "KV blocks written into a lower tier.", ts.offloads, KV_TIER_SHARED);
	tier_family(out, labels, "dyn_worker_kv_tier_onboards_total", "counter",
		    "KV blocks read back from a lower tier for a prompt (its prefix hits).",
		    ts.onboards, KV_TIER_SHARED);
	metric(out, "dyn_worker_kv_tier_corrupt_total", "counter",
	       "Block files dropped as corrupt, truncated or foreign (recomputed).", labels,
	       (double)ts.corrupt);
	metric(out, "dyn_worker_kv_tier_dropped_total", "counter",
	       "KV blocks that left G2 with no tier below to take them.", labels,
	       (double)ts.dropped);
}

/* The KV layout fingerprint and block bytes: the engine's real pool, or
 * for the mock engine (no data: 0 bytes on the wire) the bf16 pool a GPU
 * would hold for this model. */
static void kv_layout_describe(struct worker *w, const struct model_desc *d)
{
	struct kv_layout kl;
	struct engine_stats es;
	engine_stats(w->e, &es);
	w->block_size = es.block_size;
	if (engine_kv_layout(w->e, &kl) == 0) {
		gen_kv_layout_fingerprint(w->layout, sizeof(w->layout), kl.n_layers,
					  d->num_kv_heads, d->head_dim, kl.block_size,
					  dtype_name(kl.dtype));
		w->block_bytes = kl.block_bytes;
	} else {
		gen_kv_layout_fingerprint(w->layout, sizeof(w->layout), d->num_layers,
					  d->num_kv_heads, d->head_dim, es.block_size, "BF16");
		w->model_block_bytes = 2 * (size_t)d->num_layers * (size_t)es.block_size *
				       (size_t)d->num_kv_heads * (size_t)d->head_dim * 2;
	}
}

/* A prefill worker's data port, a decode worker's fetcher. */
static int disagg_open(struct worker *w, const struct worker_conf *c)
{
	if (c->role == WORKER_ROLE_AGG)
		return 0;
	if (!w->e)
		return err_set(-EINVAL, "the %s engine has no KV cache: it serves role agg only, "
			       "not %s", w->h->name, worker_role_names[c->role]);
	kv_layout_describe(w, &c->m->desc);
	if (c->role == WORKER_ROLE_PREFILL) {
		struct kv_lend_conf lc = {
			c->host, c->kv_port, c->kv_transport, w->layout, w->block_bytes,
			w->block_bytes ? w->block_bytes : w->model_block_bytes,
			c->kv_hold_ms > 0 ? c->kv_hold_ms : 30000, c->kv_tls,
		};
		return kv_lend_new(w->rt->base, w->e, &lc, &w->lend);
	}
	struct kv_fetch_conf fc = {
		c->kv_transport, w->layout, w->block_size, w->block_bytes, w->model_block_bytes,
		c->kv_bandwidth_gbps > 0 ? c->kv_bandwidth_gbps : 25, c->kv_tls,
	};
	return kv_fetch_new(w->rt->base, w->e, &fc, &w->fetch);
}

/* The requests of the roles go to the handler (builtin, mock). */
static int disagg_serve(struct worker *w)
{
	if (!w->lend && !w->fetch)
		return 0;
	struct builtin_disagg d = { w->lend, w->fetch, endpoint_service_id(w->svc), w->layout,
				    w->block_size };
	return builtin_engine_disagg(w->hs, &d);
}

static void disagg_metrics(struct worker *w, const char *labels, struct strbuf *out)
{
	struct strbuf l = STRBUF_INIT;
	uint64_t ok = 0, failed = 0, bytes = 0;
	const char *dir = w->lend ? "out" : "in";
	const struct kv_fetch_stats *fs = w->fetch ? kv_fetch_stats(w->fetch) : NULL;
	struct kv_lend_stats ls;

	if (w->lend) {
		kv_lend_stats(w->lend, &ls);
		ok = ls.lent;
		failed = ls.refused;
		bytes = ls.bytes;
	} else {
		ok = fs->ok;
		failed = fs->failed;
		bytes = fs->bytes;
	}
	metrics_family(out, "dyn_worker_kv_transfers_total", "counter",
		       "KV transfers: fetched (in, decode workers) or lent (out, prefill workers).");
	for (int r = 0; r < 2; r++) {
		sb_reset(&l);
		sb_adds(&l, labels);
		metrics_label(&l, "direction", dir);
		metrics_label(&l, "result", r ? "failed" : "ok");
		metrics_value(out, "dyn_worker_kv_transfers_total", l.buf, (double)(r ? failed : ok));
	}
	sb_reset(&l);
	sb_adds(&l, labels);
	metrics_label(&l, "direction", dir);
	metric(out, "dyn_worker_kv_transfer_bytes_total", "counter",
	       "KV bytes moved (modelled for mock engines).", l.buf, (double)bytes);
	if (w->lend) {
		metric(out, "dyn_worker_kv_holds", "gauge",
		       "Prompts whose KV blocks are held for a decode worker.", labels,
		       (double)ls.holds);
		metric(out, "dyn_worker_kv_hold_expired_total", "counter",
		       "KV holds released by --kv-hold-timeout.", labels, (double)ls.expired);
	} else {
		metrics_family(out, "dyn_worker_kv_transfer_seconds", "histogram",
			       "Time to fetch a prompt's KV blocks.");
		metrics_hist_write(out, "dyn_worker_kv_transfer_seconds", labels, &fs->seconds);
		metrics_family(out, "dyn_worker_prefill_total", "counter",
			       "Prompts by where their KV was computed.");
		for (int r = 0; r < 2; r++) {
			sb_reset(&l);
			sb_adds(&l, labels);
			metrics_label(&l, "where", r ? "local" : "remote");
			metrics_value(out, "dyn_worker_prefill_total", l.buf,
				      (double)(r ? fs->local : fs->remote));
		}
		metrics_family(out, "dyn_worker_kv_fallbacks_total", "counter",
			       "Prompts sent with a kv_source but prefilled here, by cause.");
		for (int k = 0; k < KV_FALLBACK_N; k++) {
			sb_reset(&l);
			sb_adds(&l, labels);
			metrics_label(&l, "cause", kv_fallback_names[k]);
			metrics_value(out, "dyn_worker_kv_fallbacks_total", l.buf,
				      (double)fs->fallbacks[k]);
		}
	}
	sb_release(&l);
}

/* ---- graceful drain --------------------------------------------------------------- */

static void drain_metrics(struct worker *w, const char *labels, struct strbuf *out)
{
	struct strbuf l = STRBUF_INIT;
	long migrated = w->drain_migrated;
	long left = w->rt->shutting_down ? rpc_server_in_flight(w->rpc) : 0;
	long finished = w->drain_in_flight - migrated - left;

	metric(out, "dyn_worker_draining", "gauge",
	       "1 while the worker drains (SIGTERM or a drain request).", labels,
	       w->rt->shutting_down ? 1 : 0);
	metrics_family(out, "dyn_worker_drained_requests_total", "counter",
		       "Requests running when the drain began, by how they ended.");
	for (int r = 0; r < 2; r++) {
		sb_reset(&l);
		sb_adds(&l, labels);
		metrics_label(&l, "result", r ? "migrated" : "finished");
		metrics_value(out, "dyn_worker_drained_requests_total", l.buf,
			      (double)(r ? migrated : finished > 0 ? finished : 0));
	}
	sb_release(&l);
}

/* The grace period is over: what still runs ends with the typed error a
 * frontend migrates (net/frame.h, core/proto/generate.h). */
static void worker_abort(void *arg)
{
	struct worker *w = arg;
	w->drain_aborted = 1;
	w->drain_migrated = rpc_server_abort_calls(
		w->rpc, FRAME_ERR_UNAVAILABLE,
		FRAME_MIGRATE " the worker's drain grace period ended; continue elsewhere");
	LOG_WARN(LOG_MOD, "grace period over: %ld request(s) ended with the migrate error",
		 w->drain_migrated);
}

/* A prefill worker waits for decode workers to take the KV it holds, up
 * to the end of the grace period. */
static long worker_holds(void *arg)
{
	struct worker *w = arg;
	struct kv_lend_stats ls;
	if (!w->lend || w->drain_aborted)
		return 0;
	kv_lend_stats(w->lend, &ls);
	return (long)ls.holds;
}

static void worker_drained(void *arg)
{
	struct worker *w = arg;
	struct kv_lend_stats ls = { 0 };
	if (w->lend)
		kv_lend_stats(w->lend, &ls);
	long left = ls.holds;
	/* The holds left are released with the data port (worker_free). */
	LOG_INFO(LOG_MOD, "drained: %ld request(s) finished, %ld migrated, %ld KV hold(s) left",
		 w->drain_in_flight - w->drain_migrated, w->drain_migrated, left);
}

/* NS/COMP/drain: begin the drain as SIGTERM would (for a planner scaling
 * down); answers {"draining":true,"in_flight":N} at once. */
static void drain_handle(struct rpc_call *call, const void *payload, size_t len,
			 unsigned flags, void *arg)
{
	struct worker *w = arg;
	char buf[64];
	(void)payload;
	(void)len;
	(void)flags;
	/* This call is in flight too, and is not waited for. */
	int n = snprintf(buf, sizeof(buf), "{\"draining\":true,\"in_flight\":%ld}",
			 rpc_server_in_flight(w->rpc) - 1);
	rpc_call_end(call, buf, (size_t)n, 0);
	runtime_shutdown(w->rt, "drain request");
}

/* NS/COMP/health: the frontends' health check.  Answering at all shows the
 * loop runs (a stopped or wedged process times out); the engine must have
 * stepped within WORKER_STALL_MS while it has requests, else the answer
 * is a 503 "stalled:" error. */
static void health_handle(struct rpc_call *call, const void *payload, size_t len,
			  unsigned flags, void *arg)
{
	struct worker *w = arg;
	uint64_t now = mono_ms();
	(void)payload;
	(void)len;
	(void)flags;
	if (w->e) {
		struct engine_stats st;
		engine_stats(w->e, &st);
		if (st.steps != w->health_steps || st.running + st.waiting == 0 ||
		    !w->health_moved_ms) {
			w->health_steps = st.steps;
			w->health_moved_ms = now;
		} else if (now - w->health_moved_ms > WORKER_STALL_MS) {
			rpc_call_error(call, 503, FRAME_STALLED " the engine made no step in %llu s "
				       "with %d request(s)",
				       (unsigned long long)((now - w->health_moved_ms) / 1000),
				       st.running + st.waiting);
			return;
		}
	}
	static const char ok[] = "{\"status\":\"ok\"}";
	rpc_call_end(call, ok, sizeof(ok) - 1, 0);
}

/* ---- the system port ------------------------------------------------------------ */

static int sys_health(void *arg, struct strbuf *fields)
{
	struct worker *w = arg;
	sb_adds(fields, ",\"model\":");
	sb_add_json_str(fields, w->name, strlen(w->name));
	sb_addf(fields, ",\"instance_id\":\"%016" PRIx64 "\"", endpoint_service_id(w->svc));
	return !w->rt->shutting_down;
}

static void sys_metrics(void *arg, struct strbuf *out)
{
	struct worker *w = arg;
	struct worker_stats st;
	struct rpc_server_stats rs;
	struct strbuf l = STRBUF_INIT;

	w->h->stats(w->hs, &st);
	rpc_server_stats(w->rpc, &rs);
	metrics_label(&l, "model", w->name);
	metrics_label(&l, "engine", w->h->name);
	metric(out, "dyn_worker_requests_total", "counter", "Generate requests received.", l.buf,
	       (double)st.requests);
	metric(out, "dyn_worker_requests_finished_total", "counter",
	       "Generate requests that ran to their end.", l.buf, (double)st.finished);
	metric(out, "dyn_worker_requests_cancelled_total", "counter",
	       "Generate requests cancelled or disconnected by the client.", l.buf,
	       (double)st.cancelled);
	metric(out, "dyn_worker_requests_failed_total", "counter",
	       "Generate requests refused or failed.", l.buf, (double)st.failed);
	metric(out, "dyn_worker_active_requests", "gauge", "Generate requests in progress.", l.buf,
	       (double)st.active);
	metric(out, "dyn_worker_prompt_tokens_total", "counter", "Prompt tokens received.", l.buf,
	       (double)st.prompt_tokens);
	metric(out, "dyn_worker_generated_tokens_total", "counter", "Tokens streamed back.", l.buf,
	       (double)st.generated_tokens);
	metric(out, "dyn_worker_rpc_connections", "gauge", "Open request-plane connections.", l.buf,
	       (double)rs.connections_open);
	if (w->e) {
		struct engine_stats es;
		engine_stats(w->e, &es);
		metric(out, "dyn_worker_running_requests", "gauge",
		       "Sequences the engine is running.", l.buf, es.running);
		metric(out, "dyn_worker_waiting_requests", "gauge",
		       "Sequences waiting for the engine.", l.buf, es.waiting);
		metric(out, "dyn_worker_kv_blocks_used", "gauge",
		       "KV cache blocks held by running sequences.", l.buf, es.kv_blocks_used);
		metric(out, "dyn_worker_kv_blocks_cached", "gauge",
		       "Free KV cache blocks kept for prefix reuse.", l.buf, es.kv_blocks_cached);
		metric(out, "dyn_worker_kv_blocks_capacity", "gauge", "KV cache blocks in the pool.",
		       l.buf, es.kv_blocks_total);
		struct kv_layout kl;
		if (engine_kv_layout(w->e, &kl) == 0)	/* the mock engine holds no data */
			metric(out, "dyn_worker_kv_cache_bytes", "gauge",
			       "Memory of the KV cache pool: its blocks in its element type.", l.buf,
			       (double)kl.n_blocks * (double)kl.block_bytes);
		metric(out, "dyn_worker_prefix_cache_hit_tokens_total", "counter",
		       "Prompt tokens served from the prefix cache.", l.buf,
		       (double)es.cache_hit_tokens);
		metric(out, "dyn_worker_preemptions_total", "counter",
		       "Sequences preempted for lack of KV blocks.", l.buf, (double)es.preemptions);
		metric(out, "dyn_worker_queued_prefill_tokens", "gauge",
		       "Prompt tokens waiting to be computed (queued and partly prefilled requests).",
		       l.buf, (double)es.queued_prefill_tokens);
		metric(out, "dyn_worker_engine_steps_total", "counter", "Engine steps run.", l.buf,
		       (double)es.steps);
	}
	if (w->lend || w->fetch)
		disagg_metrics(w, l.buf, out);
	if (w->e)
		tier_metrics(w, l.buf, out);
	drain_metrics(w, l.buf, out);
	sb_release(&l);
}

/* ---- start and stop ----------------------------------------------------------- */

static void worker_stop(void *arg)
{
	struct worker *w = arg;
	w->drain_in_flight = rpc_server_in_flight(w->rpc);
	kv_pub_stop(w->kvp);
	if (w->card_key && w->rt->store) {
		if (store_delete(w->rt->store, w->card_key) < 0)
			LOG_WARN(LOG_MOD, "removing model card: %s", err_msg());
	}
}

/* Free a worker that failed to start, keeping the error that stopped it
 * (the cleanup's own store errors would replace it). */
static int start_failed(struct worker *w, int rc)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	worker_free(w);
	return err_set(rc, "%s", msg);
}

/* The instance record's metadata: what routers group workers by, and for
 * the prefill and decode roles the KV layout they must share and the
 * prefill worker's data port. */
static void instance_meta(const struct worker *w, const struct worker_conf *c,
			  struct strbuf *out)
{
	sb_addf(out, "{\"role\":\"%s\",\"engine\":\"%s\",\"model\":",
		worker_role_names[c->role], w->h->name);
	sb_add_json_str(out, c->served, strlen(c->served));
	if (w->lend || w->fetch) {
		sb_adds(out, ",\"kv\":{");
		if (w->lend) {	/* {"tcp":..,"ucx":..}: its members go in here */
			const char *addr = kv_lend_addr_json(w->lend);
			size_t n = strlen(addr);
			if (n >= 2 && addr[0] == '{' && addr[n - 1] == '}')
				sb_addf(out, "%.*s,", (int)(n - 2), addr + 1);
		}
		sb_adds(out, "\"layout\":");
		sb_add_json_str(out, w->layout, strlen(w->layout));
		sb_addf(out, ",\"block_size\":%d}", w->block_size);
	}
	sb_addch(out, '}');
}

static int publish_card(struct worker *w, const struct worker_conf *c)
{
	struct model_card card = {
		.name = (char *)c->served, .model = (char *)c->model, .ns = (char *)c->ns,
		.component = (char *)c->component, .endpoint = "generate",
		.instance_id = endpoint_service_id(w->svc), .engine = (char *)w->h->name,
		.context_length = c->ctx_len, .kv_block_size = c->block_size,
		.kv_capacity_blocks = c->kv_blocks, .max_num_seqs = c->max_seqs,
		.tool_call_parser = (char *)c->tool_call_parser,
		.reasoning_parser = (char *)c->reasoning_parser,
	};
	int rc;

	if (w->e) {	/* the engine's real limits */
		struct engine_stats es;
		engine_stats(w->e, &es);
		card.context_length = engine_max_model_len(w->e);
		card.kv_block_size = es.block_size;
		card.kv_capacity_blocks = es.kv_blocks_total;
	}
	struct kv_layout kl;
	char kv_dtype[16] = "";
	if (w->e && engine_kv_layout(w->e, &kl) == 0) {	/* lower case, as in the layout */
		snprintf(kv_dtype, sizeof(kv_dtype), "%s", dtype_name(kl.dtype));
		for (char *p = kv_dtype; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		card.kv_dtype = kv_dtype;
	}
	if (w->h->handle == embed_engine_handle) {
		card.context_length = embed_engine_max_tokens(w->hs);
		card.embedding_dim = embed_engine_dim(w->hs);
		card.embedding_truncatable = embed_engine_truncatable(w->hs);
	}
	rc = card_publish(w->rt->store, w->rt->lease, &card, c->dir, &w->card_key);
	for (int i = 0; i < CARD_MAX_FILES; i++)
		free(card.files[i].prefix);
	return rc;
}

/* The lease was lost and replaced (store/process.h): the card again
 * (the instance record is endpoint.c's). */
static void worker_republish(void *arg)
{
	struct worker *w = arg;
	free(w->card_key);
	w->card_key = NULL;
	if (publish_card(w, &w->conf) < 0)
		LOG_WARN(LOG_MOD, "publishing the model card again: %s", err_msg());
}

int worker_start(struct runtime *rt, const struct worker_conf *c, struct worker **out)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	struct runtime_hooks hooks;
	struct strbuf meta = STRBUF_INIT;
	int rc;

	w->rt = rt;
	w->conf = *c;
	w->name = c->served;
	w->m = c->m;
	w->h = handler_find(c->engine);
	if (!w->h)
		return start_failed(w, err_set(-EINVAL, "unknown engine '%s'", c->engine));
	if ((unsigned)c->role >= ARRAY_SIZE(worker_role_names) - 1)
		return start_failed(w, err_set(-EINVAL, "unknown worker role %d", (int)c->role));
	if (w->h->needs_engine && (!c->m || !c->eo))
		return start_failed(w, err_set(-EINVAL, "engine %s needs a model", c->engine));
	if ((w->h->needs_engine && (rc = engine_make(w, c)) < 0) || (rc = w->h->open(w, c)) < 0 ||
	    (rc = disagg_open(w, c)) < 0)
		return start_failed(w, rc);
	/* Setting the engine up may have outlasted the lease (the loop that
	 * renews it has not run yet): one found gone is replaced now (the
	 * process lease's lost callback), before any record is put under it. */
	if (rt->store && rt->lease)
		store_lease_check(rt->store, rt->lease);
	rpc_server_new(rt->base, NULL, &w->rpc);
	instance_meta(w, c, &meta);
	rc = rpc_server_listen(w->rpc, c->host, c->port);
	if (rc == 0)
		rc = endpoint_serve(rt, w->rpc, c->ns, c->component, "generate", w->h->handle,
				    w->hs, meta.buf, &w->svc);
	if (rc == 0) {
		char path[3 * (ENDPOINT_NAME_MAX + 1)];
		snprintf(path, sizeof(path), "%s/%s/drain", c->ns, c->component);
		rc = rpc_server_handle(w->rpc, path, drain_handle, w);
		if (rc == 0) {
			snprintf(path, sizeof(path), "%s/%s/health", c->ns, c->component);
			rc = rpc_server_handle(w->rpc, path, health_handle, w);
		}
	}
	if (rc == 0)
		rc = disagg_serve(w);
	if (rc == 0 && w->kvp)
		rc = kv_pub_serve(w->kvp, w->rpc, c->ns, c->component, w->e);
	sb_release(&meta);
	if (rc == 0)
		rc = publish_card(w, c);
	if (rc == 0 && c->sys_port >= 0) {
		struct sysport_role role = { sys_health, sys_metrics, NULL, w };
		rc = sysport_new(rt->base, &role, c->host, c->sys_port, &w->sys);
	}
	if (rc < 0)
		return start_failed(w, rc);
	hooks = (struct runtime_hooks){ .stop_accepting = worker_stop, .in_flight = worker_holds,
					.abort = worker_abort, .drained = worker_drained,
					.lease_renewed = worker_republish, .arg = w };
	runtime_add_hooks(rt, &hooks);
	rpc_server_hooks(w->rpc, &hooks);
	runtime_add_hooks(rt, &hooks);
	*out = w;
	return 0;
}

uint64_t worker_instance_id(const struct worker *w)
{
	return endpoint_service_id(w->svc);
}

const char *worker_address(const struct worker *w)
{
	return rpc_server_address(w->rpc);
}

int worker_system_port(const struct worker *w)
{
	return w->sys ? sysport_port(w->sys) : -1;
}

const char *worker_engine_name(const struct worker *w)
{
	return w->h->name;
}

const char *worker_engine_describe(const struct worker *w)
{
	return w->e ? engine_describe(w->e) : w->h->name;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	sysport_free(w->sys);
	rpc_server_free(w->rpc);	/* cancels live calls (and their engine requests) */
	kv_lend_free(w->lend);		/* the data plane lets go of the pool */
	kv_fetch_free(w->fetch);
	kv_pub_detach_engine(w->kvp);
	engine_free(w->e);		/* aborts the rest; final outputs are queued */
	kv_pub_free(w->kvp);		/* after the engine: its hooks may still run */
	if (w->hs)
		w->h->close(w->hs);
	endpoint_service_free(w->svc);
	model_free(w->m);
	free(w->card_key);
	free(w);
}
