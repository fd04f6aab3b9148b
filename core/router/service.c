/*
 * service.c - the standalone router service (service.h).
 *
 * Models are kept for the process's life once seen (an empty view costs
 * little), so an open route call never outlives the view it counts in.
 * Open route calls are kept in `held`, found by route id through a map.
 */
#include "core/router/service.h"

#include "core/discovery/health.h"
#include "core/discovery/registry.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/proto/route.h"
#include "core/u64map.h"
#include "core/runtime.h"
#include "core/proto/card.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/rpc.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "router"

/* The routing view of one model (a model's view outlives its workers). */
struct svc_model {
	struct kv_router_model *kv;
	struct svc_model *next;
};

/* An open route call: a request in flight. */
struct held {
	struct router_service *s;
	uint64_t id;
	struct rpc_call *call;
	struct kv_router_model *m;
};

struct router_service {
	struct runtime *rt;
	char *ns;
	struct rpc_client *rpc;
	struct kv_router *kr;
	struct discovery *disc;
	struct worker_health *health;	/* unhealthy workers are not chosen */
	struct svc_model *models;
	struct endpoint_service *eps[3];
	struct held **held;
	size_t nheld;
	struct u64map held_ix;		/* route id -> index in held */
	uint64_t seq;
	uint64_t routed, refused, first_tokens;
	uint64_t disagg[DISAGG_NDECISIONS];
	int stopping;
};

/* ---- the registry's models and workers ------------------------------------- */

static const char *worker_addr(void *arg, uint64_t worker)
{
	struct router_service *s = arg;
	return worker_health_unhealthy(s->health, worker) ? NULL : disc_address(s->disc, worker);
}

static struct svc_model *view_find(struct router_service *s, const char *name)
{
	for (struct svc_model *m = s->models; m; m = m->next)
		if (!strcmp(kv_router_model_name(m->kv), name))
			return m;
	return NULL;
}

static void on_model_added(struct disc_model *dm, void *arg)
{
	struct router_service *s = arg;
	const char *name = disc_model_name(dm);
	if (view_find(s, name))
		return;
	struct svc_model *m = xcalloc(1, sizeof(*m));
	m->kv = kv_router_model_new(s->kr, name, (int)disc_model_card(dm)->kv_block_size);
	m->next = s->models;
	s->models = m;
	LOG_INFO(LOG_MOD, "model %s added (KV block size %d)", name,
		 kv_router_model_block_size(m->kv));
}

static void on_worker_added(struct disc_model *dm, const struct disc_worker *w, void *arg)
{
	struct svc_model *m = view_find(arg, disc_model_name(dm));
	if (!m)
		return;
	kv_router_add_worker(m->kv, w->id, w->path, w->card->kv_block_size,
			     w->role == DISC_ROLE_PREFILL ? ROUTE_ROLE_PREFILL : ROUTE_ROLE_DECODE);
	LOG_INFO(LOG_MOD, "model %s: %s worker %016" PRIx64 " added (%zu)", disc_model_name(dm),
		 disc_role_name(w->role), w->id, kv_router_model_workers(m->kv));
}

static void on_worker_removed(struct disc_model *dm, const struct disc_worker *w, void *arg)
{
	struct svc_model *m = view_find(arg, disc_model_name(dm));
	if (m)
		kv_router_remove_worker(m->kv, w->id);
}

/* ---- open route calls ----------------------------------------------------------- */

static void held_drop(struct held *h)
{
	struct router_service *s = h->s;
	const uint32_t *p = u64map_get(&s->held_ix, h->id);
	if (p) {
		uint32_t i = *p;
		u64map_del(&s->held_ix, h->id);
		if (i != s->nheld - 1) {
			s->held[i] = s->held[s->nheld - 1];
			u64map_put(&s->held_ix, s->held[i]->id, i);
		}
		s->nheld--;
	}
	kv_router_finish(h->m, h->id);
	free(h);
}

/* The client cancelled the route call or went away: the request ended. */
static void on_held_cancel(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	(void)why;
	held_drop(arg);
	rpc_call_finish(call);
}

static void on_route(struct rpc_call *call, const void *payload, size_t len, unsigned flags,
		     void *arg)
{
	struct router_service *s = arg;
	struct route_request rq;
	struct kv_router_plan p;
	struct svc_model *m;
	uint64_t *hashes = NULL;
	size_t n;
	(void)flags;

	if (s->stopping) {
		rpc_call_error(call, 503, "the router is stopping");
		return;
	}
	if (route_request_decode(payload, len, &rq) < 0) {
		s->refused++;
		rpc_call_error(call, 400, "%s", err_msg());
		return;
	}
	m = view_find(s, rq.model);
	if (!m) {
		s->refused++;
		rpc_call_error(call, 404, "the router knows no model '%s'", rq.model);
		route_request_release(&rq);
		return;
	}
	if (rq.has_tokens) {
		n = kv_router_hashes(m->kv, rq.token_ids, rq.n_tokens, &hashes);
	} else {
		hashes = rq.hashes;
		n = rq.n_hashes;
		rq.hashes = NULL;
	}
	size_t prompt_tokens = rq.prompt_tokens ? rq.prompt_tokens
			       : rq.has_tokens ? rq.n_tokens
			       : n * (size_t)kv_router_model_block_size(m->kv);
	if (kv_router_plan(m->kv, rq.request_id, hashes, n, prompt_tokens, rq.exclude, &p) < 0) {
		s->refused++;
		rpc_call_error(call, 503, "%s", err_msg());
		goto out;
	}
	struct held *h = xcalloc(1, sizeof(*h));
	*h = (struct held){ s, ++s->seq, call, m->kv };
	kv_router_dispatch(m->kv, h->id, p.decode.worker, hashes, n, p.decode.overlap);
	if (p.prefill)	/* ends with the request's first token */
		kv_router_dispatch(m->kv, h->id, p.prefill, hashes, n, p.prefill_overlap);
	s->held = xrealloc(s->held, (s->nheld + 1) * sizeof(*s->held));
	u64map_put(&s->held_ix, h->id, (uint32_t)s->nheld);
	s->held[s->nheld++] = h;
	s->routed++;
	s->disagg[p.decision]++;

	/* the decode (or agg) worker streams; the prefill worker goes first */
	const struct route_worker w[2] = { { p.decode.worker, p.prefill ? ROUTE_ROLE_DECODE
									  : ROUTE_ROLE_AGG },
					   { p.prefill, ROUTE_ROLE_PREFILL } };
	struct strbuf b = STRBUF_INIT;
	route_reply_encode(h->id, &p.decode, w, p.prefill ? 2 : 1,
			   disagg_decision_name(p.decision), n, &b);
	if (rpc_call_send(call, b.buf, b.len, 0) < 0) {
		held_drop(h);
		rpc_call_finish(call);
	} else {
		rpc_call_on_cancel(call, on_held_cancel, h);
	}
	sb_release(&b);
out:
	free(hashes);
	route_request_release(&rq);
}

static void on_first_token(struct rpc_call *call, const void *payload, size_t len,
			   unsigned flags, void *arg)
{
	struct router_service *s = arg;
	uint64_t id;
	(void)flags;
	if (route_first_token_decode(payload, len, &id) < 0) {
		rpc_call_error(call, 400, "%s", err_msg());
		return;
	}
	const uint32_t *p = u64map_get(&s->held_ix, id);
	if (p) {
		kv_router_first_token(s->held[*p]->m, id);
		s->first_tokens++;
	}
	rpc_call_end(call, "{}", 2, 0);
}

static void on_dump(struct rpc_call *call, const void *payload, size_t len, unsigned flags,
		    void *arg)
{
	struct strbuf b = STRBUF_INIT;
	(void)payload;
	(void)len;
	(void)flags;
	router_service_state_json(arg, &b);
	rpc_call_end(call, b.buf, b.len, 0);
	sb_release(&b);
}

/* Shutdown: stop routing, end the open calls (their requests go on). */
static void hook_stop(void *arg)
{
	struct router_service *s = arg;
	s->stopping = 1;
	while (s->nheld) {
		struct held *h = s->held[s->nheld - 1];
		struct rpc_call *call = h->call;
		held_drop(h);
		rpc_call_error(call, 503, "the router is stopping");
	}
	kv_router_stop(s->kr);
}

/* ---- the service ------------------------------------------------------------ */

int router_service_new(struct runtime *rt, struct rpc_server *srv,
		       const struct router_service_opts *o, struct router_service **out)
{
	static const char *const eps[3] = { ROUTER_EP_ROUTE, ROUTER_EP_FIRST_TOKEN,
					    ROUTER_EP_DUMP };
	const rpc_handler_fn fns[3] = { on_route, on_first_token, on_dump };
	static const struct disc_events disc_ev = { on_model_added, NULL, on_worker_added,
						    on_worker_removed };
	struct router_service *s = xcalloc(1, sizeof(*s));
	struct kv_router_config kc = o->kv;
	struct strbuf meta = STRBUF_INIT;
	struct runtime_hooks hooks = { .stop_accepting = hook_stop, .arg = s };
	int rc;

	s->rt = rt;
	s->ns = xstrdup(o->ns);
	if (!kc.metrics_prefix)
		kc.metrics_prefix = "dyn_router";
	rpc_client_new(rt->base, NULL, &s->rpc);
	s->kr = kv_router_new(rt->base, s->rpc, &kc, worker_addr, s);
	runtime_add_hooks(rt, &hooks);
	rc = disc_new(rt->base, rt->store, NULL, &s->disc);
	if (rc == 0)
		rc = disc_subscribe(s->disc, &disc_ev, s);
	if (rc == 0) {
		struct worker_health_opts ho = {
			.interval_ms = o->health_check_interval_ms ? o->health_check_interval_ms
								   : WORKER_HEALTH_INTERVAL_MS,
			.timeout_ms = o->health_check_timeout_ms,
		};
		rc = worker_health_new(rt->base, s->rpc, s->disc, &ho, &s->health);
	}
	sb_addf(&meta, "{\"role\":\"router\",\"mode\":\"%s\",\"kv_events\":%s}",
		router_mode_name(kc.mode), kc.no_kv_events ? "false" : "true");
	for (int i = 0; i < 3 && rc == 0; i++)
		rc = endpoint_serve(rt, srv, o->ns, ROUTER_COMPONENT, eps[i], fns[i], s, meta.buf,
				    &s->eps[i]);
	sb_release(&meta);
	if (rc < 0) {
		router_service_free(s);
		return rc;
	}
	*out = s;
	return 0;
}

uint64_t router_service_id(const struct router_service *s)
{
	return s->eps[0] ? endpoint_service_id(s->eps[0]) : 0;
}

void router_service_state_json(const struct router_service *s, struct strbuf *out)
{
	const struct kv_router_config *c = kv_router_config(s->kr);
	size_t nmodels = 0;
	for (const struct svc_model *m = s->models; m; m = m->next)
		nmodels++;
	sb_adds(out, "{\"router\":{\"namespace\":");
	sb_add_json_str(out, s->ns, strlen(s->ns));
	sb_addf(out, ",\"instance_id\":\"%016" PRIx64 "\",\"mode\":\"%s\",\"kv_events\":%s,"
		"\"models\":%zu,\"inflight\":%zu},\"workers\":", router_service_id(s),
		router_mode_name(c->mode), c->no_kv_events ? "false" : "true", nmodels, s->nheld);
	kv_router_workers_json(s->kr, out);
	sb_addch(out, '}');
}

void router_service_metrics(const struct router_service *s, struct strbuf *out)
{
	const struct {
		const char *name, *type, *help;
		double v;
	} m[] = {
		{ "dyn_router_route_requests_total", "counter", "Route calls answered with a worker.",
		  (double)s->routed },
		{ "dyn_router_route_refused_total", "counter",
		  "Route calls refused (bad request, unknown model, no worker).", (double)s->refused },
		{ "dyn_router_first_tokens_total", "counter",
		  "First-token notifications received for requests in flight.",
		  (double)s->first_tokens },
		{ "dyn_router_inflight_requests", "gauge",
		  "Requests routed whose route call is still open.", (double)s->nheld },
		{ "dyn_router_unhealthy_workers", "gauge",
		  "Workers not chosen because a health check failed, until they answer again.",
		  (double)worker_health_nunhealthy(s->health) },
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		metrics_family(out, m[i].name, m[i].type, m[i].help);
		metrics_value(out, m[i].name, "", m[i].v);
	}
	metrics_family(out, "dyn_router_disagg_decisions_total", "counter",
		       "Where routed requests' prompts are prefilled: on a prefill worker "
		       "(remote) or on the decode worker, and why (docs/disaggregation.md).");
	for (int d = 0; d < DISAGG_NDECISIONS; d++) {
		char l[64];
		snprintf(l, sizeof(l), "decision=\"%s\"",
			 disagg_decision_name((enum disagg_decision)d));
		metrics_value(out, "dyn_router_disagg_decisions_total", l, (double)s->disagg[d]);
	}
	kv_router_metrics(s->kr, out);
}

void router_service_free(struct router_service *s)
{
	if (!s)
		return;
	while (s->nheld) {
		struct held *h = s->held[s->nheld - 1];
		struct rpc_call *call = h->call;
		held_drop(h);
		rpc_call_finish(call);
	}
	free(s->held);
	u64map_release(&s->held_ix);
	kv_router_stop(s->kr);
	worker_health_stop(s->health);
	disc_free(s->disc);
	worker_health_free(s->health);
	while (s->models) {
		struct svc_model *m = s->models;
		s->models = m->next;
		kv_router_model_free(m->kv);
		free(m);
	}
	kv_router_free(s->kr);
	rpc_client_free(s->rpc);
	for (int i = 0; i < 3; i++)
		endpoint_service_free(s->eps[i]);
	free(s->ns);
	free(s);
}
