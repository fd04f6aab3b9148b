/*
 * frontend.c - "dyn frontend": the OpenAI-compatible HTTP API in front of
 * the workers found in the store (man dyn-frontend(1); the logic is in
 * core/frontend/).
 */
#include "cmd/cmd.h"
#include "cmd/http_url.h"
#include "core/discovery/health.h"
#include "core/err.h"
#include "core/frontend/frontend.h"
#include "core/log.h"
#include "core/router/disagg.h"
#include "core/runtime.h"
#include "net/tls.h"
#include "store/process.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define READY_WAIT_MS 10000	/* for discovery to settle at the start */

/* The frontend's record v1/frontends/NS/ID (dyn-store(5)): planners find
 * every frontend of a namespace there.  Under the process lease, so it
 * vanishes when the frontend stops or dies; put again under a new lease. */
struct fe_record {
	struct runtime *rt;
	char key[128];
	char val[512];
};

static void fe_record_put(void *arg)
{
	struct fe_record *r = arg;
	if (store_put(r->rt->store, r->key, r->val, strlen(r->val), r->rt->lease) < 0)
		LOG_WARN("frontend", "%s: %s", r->key, err_msg());
}

/* url_rest: the URL after its scheme ("://HOST:PORT"). */
static void fe_record_init(struct fe_record *r, struct runtime *rt, const char *ns,
			   const char *scheme, const char *url_rest)
{
	r->rt = rt;
	snprintf(r->key, sizeof(r->key), "v1/frontends/%s/%016" PRIx64, ns, (uint64_t)rt->lease);
	snprintf(r->val, sizeof(r->val), "{\"namespace\":\"%s\",\"url\":\"%s%s\",\"pid\":%ld}",
		 ns, scheme, url_rest, (long)getpid());	/* ns is [A-Za-z0-9_.-]; the URL has no quote */
	fe_record_put(r);
	runtime_add_hooks(rt, &(struct runtime_hooks){ .arg = r,
						       .lease_renewed = fe_record_put });
}

static const char *const router_modes[] = { "round-robin", "random", "kv", NULL };

int cmd_frontend(int argc, char **argv)
{
	const char *host = "0.0.0.0", *store_opt = "", *mode = "round-robin", *api_key = "";
	const char *origins = "";
	const char *tls_cert = "", *tls_key = "", *tls_ca = "";
	const char *rpc_cert = "", *rpc_key = "", *rpc_ca = "";
	const char *ns = "dyn";
	const char *tool_parser = "", *rsn_parser = "";
	long port = 8000, max_body = 32L << 20, lease_ttl = STORE_DEFAULT_TTL_MS;
	double grace = 30, req_timeout = 30, idle_timeout = 120, overlap_weight = 1.0, temp = 0;
	long max_local = DISAGG_MAX_LOCAL_PREFILL_DEFAULT;
	long max_queue = DISAGG_MAX_PREFILL_QUEUE_DEFAULT;
	long prefill_timeout = 30000;
	long migration_limit = FRONTEND_MIGRATION_LIMIT_DEFAULT;
	double check_every = WORKER_HEALTH_INTERVAL_MS / 1e3;
	double check_timeout = WORKER_HEALTH_TIMEOUT_MS / 1e3;
	double progress_timeout = FRONTEND_PROGRESS_TIMEOUT_MS / 1e3;
	int kv_events = 1;
	const struct opt opts[] = {
		{ "http-port", OPT_INT, &port, "PORT", "HTTP port (0 = any free port)", 0, 65535, NULL },
		{ "http-host", OPT_STRING, &host, "ADDR", "address to listen on", 0, 0, NULL },
		{ "router-mode", OPT_ENUM, &mode, "MODE", "how a worker is chosen per request",
		  0, 0, router_modes },
		CMD_KV_ROUTER_OPTS(overlap_weight, temp, kv_events),
		CMD_DISAGG_OPTS(max_local, max_queue),
		{ "prefill-timeout", OPT_INT, &prefill_timeout, "MS",
		  "disaggregated serving: a remote prefill taking longer is abandoned and the "
		  "decode worker prefills", 1, 3600000, NULL },
		{ "migration-limit", OPT_INT, &migration_limit, "N",
		  "a stream whose worker fails or drains goes on on another worker from the "
		  "tokens so far, at most N times per request (0: the client gets the error)",
		  0, 100, NULL },
		CMD_HEALTH_CHECK_OPTS(check_every, check_timeout),
		{ "progress-timeout", OPT_DOUBLE, &progress_timeout, "SECONDS",
		  "a stream that sends no token for this long after its first moves to another "
		  "worker, and its worker is unhealthy (0: no limit)", 0, 86400, NULL },
		CMD_PARSER_OPTS(tool_parser, rsn_parser, ""),
		{ "namespace", OPT_STRING, &ns, "NS",
		  "route through the router service (dyn router) of this namespace while one "
		  "is registered", 0, 0, NULL },
		{ "store", OPT_STRING, &store_opt, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: file://$XDG_RUNTIME_DIR/dyn)",
		  0, 0, NULL },
		{ "api-key", OPT_STRING, &api_key, "KEY",
		  "require 'Authorization: Bearer KEY' (or 'x-api-key: KEY') on /v1/ requests",
		  0, 0, NULL },
		{ "allowed-origins", OPT_STRING, &origins, "LIST",
		  "CORS: origins browsers may call the API from, comma-separated "
		  "(https://app.example,http://localhost:3000), or * for any (default: none)",
		  0, 0, NULL },
		{ "tls-cert-path", OPT_STRING, &tls_cert, "PEM",
		  "serve HTTPS with this certificate (chain); needs --tls-key-path", 0, 0, NULL },
		{ "tls-key-path", OPT_STRING, &tls_key, "PEM", "HTTPS: the certificate's private key",
		  0, 0, NULL },
		{ "tls-ca-path", OPT_STRING, &tls_ca, "PEM",
		  "HTTPS: require client certificates from these CAs (mutual TLS)", 0, 0, NULL },
		CMD_RPC_TLS_OPTS(rpc_cert, rpc_key, rpc_ca),
		{ "max-body-bytes", OPT_INT, &max_body, "BYTES",
		  "largest request body accepted (larger: 413)", 1024, 1L << 34, NULL },
		{ "request-timeout", OPT_DOUBLE, &req_timeout, "SECONDS",
		  "a request's head and body must arrive within this (else 408)", 0.1, 3600, NULL },
		{ "idle-timeout", OPT_DOUBLE, &idle_timeout, "SECONDS",
		  "close keep-alive connections idle this long", 0.1, 86400, NULL },
		{ "lease-ttl", OPT_INT, &lease_ttl, "MS", "process lease TTL", 100, 3600000, NULL },
		{ "grace-period", OPT_DOUBLE, &grace, "SECONDS",
		  "on SIGINT/SIGTERM, wait this long for in-flight requests", 0, 86400, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"frontend", "[OPTIONS]",
		"Serve the OpenAI-compatible HTTP API, routing requests to workers.",
		"Models appear in /v1/models when their first worker registers in the\n"
		"store and disappear with their last one.  Endpoints: POST\n"
		"/v1/chat/completions, POST /v1/completions, POST /v1/embeddings (models\n"
		"of the embed engine), GET /v1/models, /health, /live, /metrics,\n"
		"/openapi.json.\n\n"
		"--router-mode kv sends each request to the worker with the lowest cost\n"
		"W * (request blocks not cached there + its queued prefill blocks) +\n"
		"its decoding blocks, following the workers' KV events (or, with\n"
		"--no-kv-events, predicting their caches from its own decisions).\n"
		"While a router service (dyn router) of --namespace is registered, requests\n"
		"are routed by it instead, so that frontends share one view of the workers.\n\n"
		"A model with prefill workers (dyn serve --role prefill) is served\n"
		"disaggregated: the decode worker is chosen among its decode and agg\n"
		"workers, the prompt is prefilled on a prefill worker unless it is short\n"
		"(--max-local-prefill-length) or the prefill queues are full\n"
		"(--max-prefill-queue), and its KV blocks move to the decode worker.\n\n"
		"A stream whose worker is lost, draining or refusing continues on another\n"
		"worker of the model with the prompt and the tokens generated so far\n"
		"(--migration-limit): the client sees one stream.  Workers that stop\n"
		"answering health checks (--health-check-interval) or whose streams stall\n"
		"(--progress-timeout) are not routed to until they answer again.\n\n"
		"With --tool-call-parser and --reasoning-parser, chat output is parsed\n"
		"into message.tool_calls and reasoning_content (streamed as OpenAI\n"
		"does); auto picks each model's formats from its chat template.",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (cmd_check_name(cmd.name, "--namespace", ns))
		return EXIT_USAGE;
	if (cmd_check_parsers(cmd.name, tool_parser, rsn_parser))
		return EXIT_USAGE;
	for (const char *p = origins; *p; p++)	/* they go into reply headers */
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return cmd_usage_error(cmd.name, "--allowed-origins: a control character in "
					       "'%s'", origins);

	if (!*tls_cert != !*tls_key || (*tls_ca && !*tls_cert))
		return cmd_usage_error(cmd.name, "--tls-cert-path and --tls-key-path go together "
				       "(and --tls-ca-path needs them)");
	if ((rc = cmd_rpc_tls(cmd.name, rpc_cert, rpc_key, rpc_ca)) >= 0)
		return rc;

	struct runtime rt;
	struct frontend *f = NULL;
	struct ssl_ctx_st *tls = NULL;
	struct runtime_hooks hooks;
	struct fe_record rec;
	int status = 1;

	if (*tls_cert && tls_ctx_new(TLS_SERVER, tls_cert, tls_key, tls_ca, &tls) < 0)
		return cmd_fail(cmd.name, "HTTPS: %s", err_msg());
	if ((rc = runtime_init(&rt, (int64_t)(grace * 1000))) < 0 ||
	    (rc = store_process_open(&rt, store_opt, lease_ttl)) < 0) {
		status = cmd_store_fail(cmd.name, rc);
		goto out;
	}
	struct frontend_opts fo = {
		.host = host, .port = (int)port, .api_key = api_key, .allowed_origins = origins,
		.tls = tls,
		.router = !strcmp(mode, "random") ? FRONTEND_ROUTE_RANDOM
			: !strcmp(mode, "kv")     ? FRONTEND_ROUTE_KV
						  : FRONTEND_ROUTE_ROUND_ROBIN,
		.overlap_weight = overlap_weight,
		.temperature = temp,
		.no_kv_events = !kv_events,
		.ns = ns,
		.max_body_bytes = (size_t)max_body,
		.request_timeout_ms = (int64_t)(req_timeout * 1000),
		.idle_timeout_ms = (int64_t)(idle_timeout * 1000),
		.max_local_prefill_length = max_local,
		.max_prefill_queue = max_queue,
		.prefill_timeout_ms = prefill_timeout,
		.migration_limit = (int)migration_limit,
		/* 0 in the options means the default: "never" is -1 */
		.health_check_interval_ms = CMD_HEALTH_CHECK_MS(check_every),
		.health_check_timeout_ms = CMD_HEALTH_CHECK_MS(check_timeout),
		.progress_timeout_ms = progress_timeout > 0 ? (int64_t)(progress_timeout * 1000) : -1,
		.tool_call_parser = tool_parser,
		.reasoning_parser = rsn_parser,
	};
	if (frontend_new(rt.base, rt.store, &fo, &f) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	frontend_hooks(f, &hooks);
	runtime_add_hooks(&rt, &hooks);
	/* Restarted next to running workers, serve them from the first
	 * request on: the listening line comes once they are known. */
	if (!runtime_run_until(&rt, frontend_ready, f, READY_WAIT_MS) && !rt.shutting_down)
		LOG_WARN("frontend", "discovery not settled after %d ms; serving what is known",
			 READY_WAIT_MS);
	char url[320];
	/* The URL to try: wildcards as loopback, IPv6 in brackets (make run
	 * reads it from this line). */
	http_url_for(url, sizeof(url), host, frontend_port(f));
	printf("frontend listening on %s%s (store %s, router %s)\n", tls ? "https" : "http",
	       url + strlen("http"), store_url(rt.store), mode);
	fe_record_init(&rec, &rt, ns, tls ? "https" : "http", url + strlen("http"));
	runtime_run(&rt);
	status = 0;
out:
	frontend_free(f);
	runtime_free(&rt);
	tls_ctx_free(tls);
	return status;
}
