/*
 * route.c - how the frontend chooses a worker beyond round-robin / random
 * (see internal.h): the embedded KV router (--router-mode kv, the view of
 * the workers in core/router/kv_router.h) and the shared router service
 * (dyn router, core/router/service.h) when one is registered in the
 * store under the frontend's namespace.
 *
 * Embedded: each model has a kv_router_model fed with its workers (from
 * models.c); the address callback gives the KV event subscriptions the
 * worker's instance address unless it is marked down.
 *
 * Service: the frontend watches NS/router/route.  While an instance is
 * registered and not marked down, each request is routed by a route call
 * (core/proto/route.h) that stays open while the request runs;
 * the first token is reported with a first_token call and the request's
 * end by cancelling the route call.  A call that fails or gets no answer
 * within FE_SVC_TIMEOUT_MS marks the service down for FE_SVC_DOWN_MS
 * (logged) and the request is routed by the embedded router instead, as
 * are all requests while no service is registered.  In kv mode the
 * service's decisions are also counted in the embedded router (its load,
 * and in approximate mode its index), so that a fallback starts from a
 * sensible view.
 *
 * Everything runs on the frontend's event thread.
 */
#include "core/frontend/internal.h"
#include "core/err.h"
#include "core/log.h"
#include "core/proto/route.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/rpc.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "router"
#define FE_SVC_TIMEOUT_MS 2000
#define FE_SVC_DOWN_MS 5000

/* ---- the embedded router --------------------------------------------------- */

static const char *worker_addr(void *arg, uint64_t worker)
{
	struct frontend *f = arg;
	return fe_instance_address(f, worker);
}

/* The router service in use now, or NULL. */
static const struct endpoint_instance *svc_current(struct frontend *f)
{
	if (!f->svc_watch || f->svc_down_until_ms > mono_ms())
		return NULL;
	return endpoint_watch_at(f->svc_watch, 0);
}

/* Log which router is in use when that changes. */
static void svc_announce(struct frontend *f)
{
	const struct endpoint_instance *in = f->svc_watch ? endpoint_watch_at(f->svc_watch, 0)
							  : NULL;
	uint64_t id = in ? in->id : 0;
	if (id == f->svc_id)
		return;
	if (in)
		LOG_INFO(LOG_MOD, "using the router service %016" PRIx64 " at %s (%s)", in->id,
			 in->address, in->path);
	else
		LOG_INFO(LOG_MOD, "no router service in namespace %s: using the embedded router "
			 "(%s)", f->o.ns ? f->o.ns : "dyn", f->kr ? "kv" : f->o.router == FRONTEND_ROUTE_RANDOM
						   ? "random" : "round-robin");
	f->svc_id = id;
	f->svc_down_until_ms = 0;
}

static void svc_changed(const struct endpoint_instance *inst, void *arg)
{
	(void)inst;
	svc_announce(arg);
}


void fe_route_init(struct frontend *f)
{
	static const struct endpoint_watch_cbs cbs = { svc_changed, svc_changed, NULL };
	if (f->o.router == FRONTEND_ROUTE_KV) {
		struct kv_router_config c = {
			.mode = ROUTER_MODE_KV,
			.overlap_weight = f->o.overlap_weight,
			.temperature = f->o.temperature,
			.no_kv_events = f->o.no_kv_events,
			.metrics_prefix = "dyn_frontend_router",
			.disagg = f->disagg_cfg,
		};
		f->kr = kv_router_new(f->base, f->rpc, &c, worker_addr, f);
	}
	const char *ns = f->o.ns && *f->o.ns ? f->o.ns : "dyn";
	f->svc_id = UINT64_MAX;	/* the first announcement says which, whatever it is */
	if (endpoint_watch(f->store, ns, ROUTER_COMPONENT, ROUTER_EP_ROUTE, &cbs, f,
			   &f->svc_watch) < 0) {
		LOG_WARN(LOG_MOD, "not looking for a router service: %s", err_msg());
		f->svc_watch = NULL;
	}
	svc_announce(f);
}

void fe_route_stop(struct frontend *f)
{
	kv_router_stop(f->kr);
	endpoint_watch_free(f->svc_watch);
	f->svc_watch = NULL;
}

void fe_route_free(struct frontend *f)
{
	kv_router_free(f->kr);
	f->kr = NULL;
}

void fe_route_model_init(struct frontend *f, struct fe_model *m, long block_size)
{
	m->block_size = block_size > 0 ? (int)block_size : 16;
	if (f->kr)
		m->kv = kv_router_model_new(f->kr, m->name, m->block_size);
}

void fe_route_model_free(struct fe_model *m)
{
	kv_router_model_free(m->kv);
	m->kv = NULL;
}

void fe_route_add_worker(struct fe_model *m, uint64_t id, const char *path, long block_size,
			 enum fe_pool pool)
{
	if (m->kv)
		kv_router_add_worker(m->kv, id, path, block_size, pool == FE_POOL_PREFILL
								  ? ROUTE_ROLE_PREFILL
								  : ROUTE_ROLE_DECODE);
}

void fe_route_remove_worker(struct fe_model *m, uint64_t id)
{
	if (m->kv)
		kv_router_remove_worker(m->kv, id);
}

size_t fe_route_hashes(struct frontend *f, const struct fe_model *m, const int32_t *ids,
		       size_t n, uint64_t **out)
{
	*out = NULL;
	if (!m->kv && !svc_current(f))
		return 0;	/* nobody looks at them */
	return kv_router_block_hashes(m->block_size, ids, n, out);
}

/* ---- one request --------------------------------------------------------------- */

static void svc_fail(struct fe_route *r, const char *why)
{
	struct frontend *f = r->f;
	const struct endpoint_instance *in = svc_current(f);
	f->svc_fallbacks++;
	if (in) {
		LOG_WARN(LOG_MOD, "%s: router service %016" PRIx64 " at %s: %s; using the embedded "
			 "router for %d s", r->req_id, in->id, in->address, why,
			 FE_SVC_DOWN_MS / 1000);
		f->svc_down_until_ms = mono_ms() + FE_SVC_DOWN_MS;
	}
}

static void svc_close(struct fe_route *r)
{
	if (r->timer) {
		event_free(r->timer);
		r->timer = NULL;
	}
	if (r->st)
		rpc_stream_cancel(r->st);
	r->st = NULL;
	r->svc_id = 0;
	r->waiting = 0;
	free(r->svc_addr);
	free(r->svc_ft);
	r->svc_addr = r->svc_ft = NULL;
}

/* The decision (or the failure: plan NULL) reaches the handler. */
static void svc_decided(struct fe_route *r, const struct fe_route_plan *plan)
{
	r->waiting = 0;
	if (r->timer) {
		event_free(r->timer);
		r->timer = NULL;
	}
	r->cb(r->cb_arg, plan != NULL, plan);
}

static void on_svc_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
			void *arg)
{
	struct fe_route *r = arg;
	struct route_reply rep;
	(void)st;
	(void)flags;
	if (!r->waiting)
		return;
	if (route_reply_decode(data, len, &rep) < 0) {
		svc_fail(r, err_msg());
		svc_close(r);
		svc_decided(r, NULL);
		return;
	}
	r->svc_id = rep.route_id;
	struct fe_route_plan plan = { rep.worker, route_reply_worker_as(&rep, ROUTE_ROLE_PREFILL),
				      rep.overlap, 0, DISAGG_LOCAL_NO_PREFILL };
	/* a reason that is missing or does not fit the workers named:
	 * remote when it names a prefill worker, else no prefill worker */
	if (disagg_decision_parse(rep.disagg, &plan.decision) < 0 ||
	    !plan.prefill != (plan.decision != DISAGG_REMOTE))
		plan.decision = plan.prefill ? DISAGG_REMOTE : DISAGG_LOCAL_NO_PREFILL;
	LOG_DEBUG(LOG_MOD, "%s: router service chose %016" PRIx64 " (prefill %016" PRIx64
		  ", overlap %u of %zu blocks, cost %.2f)", r->req_id, plan.worker, plan.prefill,
		  rep.overlap, rep.request_blocks, rep.cost);
	svc_decided(r, &plan);
}

static void on_svc_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		       void *arg)
{
	struct fe_route *r = arg;
	(void)st;
	(void)data;
	(void)len;
	(void)flags;
	r->st = NULL;
	r->svc_id = 0;
	if (r->waiting) {
		svc_fail(r, "the route call ended without a decision");
		svc_close(r);
		svc_decided(r, NULL);
	}
}

static void on_svc_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_route *r = arg;
	(void)st;
	r->st = NULL;
	r->svc_id = 0;
	if (!r->waiting)
		return;	/* the service went away after deciding: nothing to undo */
	if (code == 404 || code == 503)	/* it has no worker for this model yet */
		LOG_DEBUG(LOG_MOD, "%s: router service: %s (%d); routing here", r->req_id, msg,
			  code);
	else
		svc_fail(r, msg);
	r->f->svc_fallbacks += code == 404 || code == 503;
	svc_close(r);
	svc_decided(r, NULL);
}

static const struct rpc_stream_cbs svc_cbs = { on_svc_data, on_svc_end, on_svc_error };

static void on_svc_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct fe_route *r = arg;
	(void)fd;
	(void)what;
	svc_fail(r, "no answer in time");
	svc_close(r);
	svc_decided(r, NULL);
}

int fe_route_service(struct fe_route *r, struct frontend *f, struct fe_model *m,
		     const char *req_id, const uint64_t *hashes, size_t n, size_t prompt_tokens,
		     uint64_t exclude, fe_routed_fn cb, void *arg)
{
	const struct endpoint_instance *in = svc_current(f);
	struct strbuf b = STRBUF_INIT;
	char ep[3 * (ENDPOINT_NAME_MAX + 1)];

	fe_route_end(r);
	if (!in)
		return -ENOENT;
	r->f = f;
	r->m = m;
	r->req_id = req_id;
	r->cb = cb;
	r->cb_arg = arg;
	snprintf(ep, sizeof(ep), "%s/%s/%s", in->ns, ROUTER_COMPONENT, ROUTER_EP_FIRST_TOKEN);
	r->svc_ft = xstrdup(ep);
	r->svc_addr = xstrdup(in->address);
	snprintf(ep, sizeof(ep), "%s/%s/%s", in->ns, ROUTER_COMPONENT, ROUTER_EP_ROUTE);
	route_request_encode(m->name, req_id, hashes, n, exclude, prompt_tokens, &b);
	int rc = rpc_call(f->rpc, in->address, ep, b.buf, b.len, 0, &svc_cbs, r, &r->st);
	sb_release(&b);
	if (rc < 0) {
		r->st = NULL;
		svc_fail(r, err_msg());
		return rc;
	}
	struct timeval tv = { FE_SVC_TIMEOUT_MS / 1000, (FE_SVC_TIMEOUT_MS % 1000) * 1000 };
	r->timer = evtimer_new(f->base, on_svc_timeout, r);
	evtimer_add(r->timer, &tv);
	r->waiting = 1;
	f->svc_calls++;
	return 0;
}

void fe_route_unused(struct fe_route *r)
{
	svc_close(r);
}

int fe_route_select(struct frontend *f, struct fe_model *m, const char *req_id,
		    const uint64_t *hashes, size_t n, size_t prompt_tokens, uint64_t exclude,
		    struct fe_route_plan *plan)
{
	struct kv_router_plan p;
	(void)f;
	if (!m->kv || kv_router_plan(m->kv, req_id, hashes, n, prompt_tokens, exclude, &p) < 0)
		return -1;
	*plan = (struct fe_route_plan){ p.decode.worker, p.prefill, p.decode.overlap,
					p.prefill_overlap, p.decision };
	return 0;
}

void fe_route_dispatch(struct fe_route *r, struct frontend *f, struct fe_model *m,
		       const struct fe_route_plan *plan, const uint64_t *hashes, size_t n)
{
	r->f = f;
	r->m = m;
	if (!m->kv)
		return;
	r->local = ++f->route_seq;
	if (kv_router_dispatch(m->kv, r->local, plan->worker, hashes, n, plan->overlap) < 0)
		r->local = 0;
	if (!plan->prefill)
		return;
	r->local_prefill = ++f->route_seq;
	if (kv_router_dispatch(m->kv, r->local_prefill, plan->prefill, hashes, n,
			       plan->prefill_overlap) < 0)
		r->local_prefill = 0;
}

void fe_route_prefill_end(struct fe_route *r)
{
	if (r->local_prefill && r->m && r->m->kv)
		kv_router_finish(r->m->kv, r->local_prefill);
	r->local_prefill = 0;
}

void fe_route_first_token(struct fe_route *r)
{
	if (r->local && r->m->kv)
		kv_router_first_token(r->m->kv, r->local);
	if (r->st && r->svc_id) {	/* the service counts the request */
		static const struct rpc_stream_cbs none = { NULL, NULL, NULL };
		struct strbuf b = STRBUF_INIT;
		route_first_token_encode(r->svc_id, &b);
		rpc_call(r->f->rpc, r->svc_addr, r->svc_ft, b.buf, b.len, 0, &none, NULL, NULL);
		sb_release(&b);
	}
}

void fe_route_end(struct fe_route *r)
{
	svc_close(r);
	fe_route_prefill_end(r);
	if (r->local && r->m && r->m->kv)
		kv_router_finish(r->m->kv, r->local);
	r->local = 0;
}

/* ---- metrics ------------------------------------------------------------------------ */

void fe_route_metrics(struct frontend *f, struct strbuf *out)
{
	int svc = svc_current(f) != NULL;
	metrics_family(out, "dyn_frontend_router_in_use", "gauge",
		       "Which router chooses the workers now: the shared router service or "
		       "the embedded one (1 for the one in use).");
	metrics_value(out, "dyn_frontend_router_in_use", "router=\"service\"", svc);
	metrics_value(out, "dyn_frontend_router_in_use", "router=\"embedded\"", !svc);
	metrics_family(out, "dyn_frontend_router_service_calls_total", "counter",
		       "Requests sent to the router service for a decision.");
	metrics_value(out, "dyn_frontend_router_service_calls_total", "",
		      (double)f->svc_calls);
	metrics_family(out, "dyn_frontend_router_service_fallbacks_total", "counter",
		       "Requests the router service did not route (failure, timeout, no "
		       "worker): routed by the embedded router.");
	metrics_value(out, "dyn_frontend_router_service_fallbacks_total", "",
		      (double)f->svc_fallbacks);
	if (f->kr)
		kv_router_metrics(f->kr, out);
}
