/*
 * frontend.c - create, run and free the frontend (see frontend.h).
 */
#include "core/frontend/internal.h"
#include "core/discovery/registry.h"
#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/util.h"
#include "net/http.h"
#include "net/rpc.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* A worker unhealthy until now answers: the calls that failed meanwhile
 * marked it down too. */
static void on_recovered(void *arg, uint64_t id)
{
	fe_instance_clear_down(arg, id);
}

int frontend_new(struct event_base *base, struct store *store,
		 const struct frontend_opts *opts, struct frontend **out)
{
	struct frontend *f = xcalloc(1, sizeof(*f));
	struct http_server_opts ho = { 0 };
	int rc;

	f->base = base;
	/* Response ids: a random prefix (replicas in containers all have
	 * PID 1), then a counter.  Without entropy, time and address do. */
	if (getrandom(&f->id_prefix, sizeof(f->id_prefix), GRND_NONBLOCK) !=
	    (ssize_t)sizeof(f->id_prefix))
		f->id_prefix = (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)f;
	f->store = store;
	f->o = *opts;
	if (opts->api_key && *opts->api_key)
		f->api_key = xstrdup(opts->api_key);
	f->o.api_key = NULL;
	ho.max_body = opts->max_body_bytes;
	ho.request_timeout_ms = opts->request_timeout_ms;
	ho.idle_timeout_ms = opts->idle_timeout_ms;
	ho.allowed_origins = opts->allowed_origins;
	ho.tls = opts->tls;
	f->o.allowed_origins = NULL;	/* the HTTP server keeps its copy */
	if (!f->o.progress_timeout_ms)
		f->o.progress_timeout_ms = FRONTEND_PROGRESS_TIMEOUT_MS;
	f->disagg_cfg = (struct disagg_config){ opts->max_local_prefill_length,
						opts->max_prefill_queue };
	rpc_client_new(base, NULL, &f->rpc);
	http_server_new(base, &ho, fe_http_handler, f, &f->http);
	fe_route_init(f);
	rc = fe_models_start(f);
	if (rc == 0) {
		struct worker_health_opts ho = {
			.interval_ms = opts->health_check_interval_ms
					       ? opts->health_check_interval_ms
					       : WORKER_HEALTH_INTERVAL_MS,
			.timeout_ms = opts->health_check_timeout_ms,
			.recovered = on_recovered, .arg = f,
		};
		rc = worker_health_new(base, f->rpc, f->disc, &ho, &f->health);
	}
	if (rc == 0)
		rc = http_server_listen(f->http, opts->host && *opts->host ? opts->host : "0.0.0.0",
					opts->port);
	if (rc < 0) {
		frontend_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

int frontend_port(const struct frontend *f)
{
	return http_server_port(f->http);
}

int frontend_ready(void *f)
{
	return disc_settled(((struct frontend *)f)->disc);
}

static void hook_stop(void *arg)
{
	struct frontend *f = arg;
	f->stopping = 1;
	http_server_stop_accepting(f->http);
}

static long hook_in_flight(void *arg)
{
	struct frontend *f = arg;
	return http_server_in_flight(f->http);
}

void frontend_hooks(struct frontend *f, struct runtime_hooks *out)
{
	*out = (struct runtime_hooks){ .stop_accepting = hook_stop, .in_flight = hook_in_flight,
					.arg = f };
}

void frontend_free(struct frontend *f)
{
	if (!f)
		return;
	/* Connections first: their on_close cancels worker streams. */
	http_server_free(f->http);
	fe_route_stop(f);
	worker_health_stop(f->health);
	rpc_client_free(f->rpc);
	fe_models_stop(f);
	worker_health_free(f->health);
	fe_route_free(f);
	fe_stats_free_all(f);
	free(f->api_key);
	free(f);
}
