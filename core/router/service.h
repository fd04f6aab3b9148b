/*
 * service.h - the standalone router service (dyn router, issue 9): one
 * view of the workers (kv_router.h) shared by every frontend of a
 * namespace, so that they route on the same prefix index and the same
 * in-flight load.
 *
 * Discovery is the registry's (core/discovery/registry.h, without
 * tokenizers): each worker of a model is added to its model's view, in
 * the prefill pool or the decode pool (agg and decode workers) by its
 * role; its card leaving the store purges it.  A route reply names the
 * decode worker and, when the prompt is to be prefilled remotely
 * (core/router/disagg.h), the prefill worker.  Instance records give the
 * addresses for the KV event subscriptions.  The service serves NS/router/route,
 * NS/router/first_token and NS/router/dump (protocol: route_proto.h) on
 * the given request-plane server and registers their instance records
 * under the process lease (so frontends find it, and lose it when the
 * process stops or its lease expires).
 *
 * Shutdown: the runtime's stop hook deregisters the records and ends the
 * open route calls (ERROR 503; frontends then count their requests on
 * their embedded routers); nothing is left to drain.
 *
 * Threading: everything on the runtime's event_base thread.  Errors:
 * 0 / -errno with err_msg().  Logging module "router".
 */
#ifndef DYN_ROUTER_SERVICE_H
#define DYN_ROUTER_SERVICE_H

#include "core/router/kv_router.h"

#include <stdint.h>

struct runtime;
struct rpc_server;
struct strbuf;
struct router_service;

struct router_service_opts {
	const char *ns;			/* namespace of the endpoints */
	struct kv_router_config kv;	/* metrics_prefix: "dyn_router" if NULL */
	/* health checks of the workers (core/discovery/health.h): 0 = the
	 * defaults, < 0 interval: none; unhealthy workers are not chosen */
	int64_t health_check_interval_ms, health_check_timeout_ms;
};

/* srv must be listening; rt must have its store open. */
int router_service_new(struct runtime *rt, struct rpc_server *srv,
		       const struct router_service_opts *o, struct router_service **out);
/* The instance id of the service's records. */
uint64_t router_service_id(const struct router_service *s);
/*
 * The state as JSON (what NS/router/dump answers and /debug/workers
 * serves):
 *   {"router":{"namespace":NS,"instance_id":"hex","mode":M,
 *              "kv_events":B,"models":N,"inflight":N},
 *    "workers":[...kv_router_workers_json()...]}
 */
void router_service_state_json(const struct router_service *s, struct strbuf *out);
/* Prometheus text: dyn_router_* (kv_router_metrics() and the service's
 * own counters). */
void router_service_metrics(const struct router_service *s, struct strbuf *out);
/* After runtime_run() returned and the rpc server was freed. */
void router_service_free(struct router_service *s);

#endif
