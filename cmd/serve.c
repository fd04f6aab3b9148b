/*
 * serve.c - "dyn serve": a worker (man dyn-serve(1)).
 *
 * Resolves the model, serves NS/COMPONENT/generate on the request plane
 * with the chosen engine, registers the instance and the model card
 * under the process lease, and serves /health, /live and /metrics on the
 * system port.  SIGINT/SIGTERM: the card and instance records go at once,
 * in-flight requests drain for the grace period.
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/model/model.h"
#include "core/runtime.h"
#include "core/serve/card.h"
#include "core/serve/echo.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/http.h"
#include "net/rpc.h"
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "serve"

struct worker {
	struct runtime rt;
	struct rpc_server *rpc;
	struct echo_engine *echo;
	struct endpoint_service *svc;
	struct http_server *sys;
	char *card_key;
	const char *name, *engine;
};

static void worker_stop(void *arg)
{
	struct worker *w = arg;
	if (w->card_key && w->rt.store) {
		if (store_delete(w->rt.store, w->card_key) < 0)
			LOG_WARN(LOG_MOD, "removing model card: %s", err_msg());
	}
}

static void sys_metrics(struct worker *w, struct strbuf *out)
{
	struct engine_stats st;
	struct rpc_server_stats rs;
	struct strbuf l = STRBUF_INIT;

	echo_engine_stats(w->echo, &st);
	rpc_server_stats(w->rpc, &rs);
	metrics_label(&l, "model", w->name);
	metrics_label(&l, "engine", w->engine);
	metrics_family(out, "dyn_worker_requests_total", "counter",
		       "Generate requests received.");
	metrics_value(out, "dyn_worker_requests_total", l.buf, (double)st.requests);
	metrics_family(out, "dyn_worker_requests_finished_total", "counter",
		       "Generate requests that ran to their end.");
	metrics_value(out, "dyn_worker_requests_finished_total", l.buf, (double)st.finished);
	metrics_family(out, "dyn_worker_requests_cancelled_total", "counter",
		       "Generate requests cancelled or disconnected by the client.");
	metrics_value(out, "dyn_worker_requests_cancelled_total", l.buf, (double)st.cancelled);
	metrics_family(out, "dyn_worker_requests_failed_total", "counter",
		       "Generate requests refused or failed.");
	metrics_value(out, "dyn_worker_requests_failed_total", l.buf, (double)st.failed);
	metrics_family(out, "dyn_worker_active_requests", "gauge",
		       "Generate requests in progress.");
	metrics_value(out, "dyn_worker_active_requests", l.buf, (double)st.active);
	metrics_family(out, "dyn_worker_prompt_tokens_total", "counter",
		       "Prompt tokens received.");
	metrics_value(out, "dyn_worker_prompt_tokens_total", l.buf, (double)st.prompt_tokens);
	metrics_family(out, "dyn_worker_generated_tokens_total", "counter",
		       "Tokens streamed back.");
	metrics_value(out, "dyn_worker_generated_tokens_total", l.buf,
		      (double)st.generated_tokens);
	metrics_family(out, "dyn_worker_rpc_connections", "gauge",
		       "Open request-plane connections.");
	metrics_value(out, "dyn_worker_rpc_connections", l.buf, (double)rs.connections_open);
	sb_release(&l);
}

static void sys_handler(struct http_req *r, void *arg)
{
	struct worker *w = arg;
	const char *path = http_req_path(r), *method = http_req_method(r);
	struct strbuf body = STRBUF_INIT;

	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		static const char m[] = "{\"error\":{\"message\":\"method not allowed\","
					"\"type\":\"invalid_request_error\",\"param\":null,"
					"\"code\":405}}";
		http_reply(r, 405, "application/json", m, sizeof(m) - 1, "Allow: GET\r\n");
		return;
	}
	if (!strcmp(path, "/health")) {
		int ok = !w->rt.shutting_down;
		sb_addf(&body, "{\"status\":\"%s\",\"model\":", ok ? "healthy" : "stopping");
		sb_add_json_str(&body, w->name, strlen(w->name));
		sb_addf(&body, ",\"instance_id\":\"%016" PRIx64 "\"}", endpoint_service_id(w->svc));
		http_reply(r, ok ? 200 : 503, "application/json", body.buf, body.len, NULL);
	} else if (!strcmp(path, "/live")) {
		static const char m[] = "{\"status\":\"live\"}";
		http_reply(r, 200, "application/json", m, sizeof(m) - 1, NULL);
	} else if (!strcmp(path, "/metrics")) {
		sys_metrics(w, &body);
		http_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", body.buf, body.len,
			   NULL);
	} else {
		static const char m[] = "{\"error\":{\"message\":\"not found\","
					"\"type\":\"invalid_request_error\",\"param\":null,"
					"\"code\":404}}";
		http_reply(r, 404, "application/json", m, sizeof(m) - 1, NULL);
	}
	sb_release(&body);
}

static const char *const engines[] = { "echo", NULL };
static const char *const roles[] = { "agg", NULL };

/* The served name of a model given by path: its folder's name. */
static const char *default_served_name(const char *model, const struct model_source *src)
{
	if (src->repo)
		return model;
	const char *slash = strrchr(src->dir, '/');
	return slash && slash[1] ? slash + 1 : src->dir;
}

int cmd_serve(int argc, char **argv)
{
	const char *model = "", *served = "", *engine = "echo", *role = "agg";
	const char *ns = "dyn", *component = "backend", *store_url = "", *host = "127.0.0.1";
	long port = 0, sys_port = -1, lease_ttl = STORE_DEFAULT_TTL_MS, echo_delay = 10;
	long ctx_len = 0, block_size = 16, max_seqs = 256, kv_blocks = 0;
	double grace = 30;
	const struct opt opts[] = {
		{ "model", OPT_STRING, &model, "MODEL",
		  "model folder, checkpoint file or hub id ORG/NAME (required)", 0, 0, NULL },
		{ "served-model-name", OPT_STRING, &served, "NAME",
		  "name clients use in requests (default: the hub id, or the folder name)", 0, 0, NULL },
		{ "engine", OPT_ENUM, &engine, "ENGINE",
		  "what generates tokens: echo streams the prompt back", 0, 0, engines },
		{ "role", OPT_ENUM, &role, "ROLE", "worker role: agg (prefill and decode)", 0, 0, roles },
		{ "namespace", OPT_STRING, &ns, "NS", "namespace of the generate endpoint", 0, 0, NULL },
		{ "component", OPT_STRING, &component, "NAME", "component of the generate endpoint",
		  0, 0, NULL },
		{ "store", OPT_STRING, &store_url, "URL",
		  "discovery store (file://DIR or sqlite://PATH; default: file://$XDG_RUNTIME_DIR/dyn)",
		  0, 0, NULL },
		{ "host", OPT_STRING, &host, "ADDR", "request-plane address to listen on and advertise",
		  0, 0, NULL },
		{ "port", OPT_INT, &port, "PORT", "request-plane TCP port (0 = any free port)", 0, 65535, NULL },
		{ "system-port", OPT_INT, &sys_port, "PORT",
		  "serve /health, /live and /metrics here (0 = any free port, -1 = off)", -1, 65535, NULL },
		{ "lease-ttl", OPT_INT, &lease_ttl, "MS",
		  "process lease TTL: records of a crashed worker vanish after this", 100, 3600000, NULL },
		{ "grace-period", OPT_DOUBLE, &grace, "SECONDS",
		  "on SIGINT/SIGTERM, wait this long for in-flight requests", 0, 86400, NULL },
		{ "context-length", OPT_INT, &ctx_len, "TOKENS",
		  "context length to advertise (0 = the model's max_position_embeddings)", 0, 1 << 30, NULL },
		{ "kv-block-size", OPT_INT, &block_size, "TOKENS", "tokens per KV cache block", 1, 1024, NULL },
		{ "max-num-seqs", OPT_INT, &max_seqs, "N", "sequences run at once", 1, 1 << 20, NULL },
		{ "kv-capacity-blocks", OPT_INT, &kv_blocks, "N",
		  "KV cache blocks to advertise (0 = enough for max-num-seqs full contexts)", 0, 1L << 40, NULL },
		{ "token-echo-delay-ms", OPT_INT, &echo_delay, "MS",
		  "echo engine: pause between streamed tokens", 0, 60000, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"serve", "--model MODEL [OPTIONS]",
		"Run a worker: serve a model's generate endpoint on the request plane.",
		"Registers its instance (NS/COMPONENT/generate) and the model card (config,\n"
		"tokenizer and chat template files, context length, KV block size and\n"
		"capacity) in the store under its lease, so frontends anywhere find it.\n"
		"Requests are pre-tokenized; responses stream token ids.  The builtin\n"
		"engine is not in this build yet: only --engine echo, which streams the\n"
		"prompt's tokens back --token-echo-delay-ms apart.",
		opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs == 1 && !*model)
		model = argv[0];
	else if (nargs > 0)
		return cmd_usage_error(cmd.name, "unexpected argument '%s'", argv[0]);
	if (!*model)
		return cmd_usage_error(cmd.name, "--model MODEL is required");
	if (!endpoint_name_valid(ns) || !endpoint_name_valid(component))
		return cmd_usage_error(cmd.name, "bad --namespace or --component (1-%d characters "
				       "of [A-Za-z0-9_.-])", ENDPOINT_NAME_MAX);

	struct model_source src;
	struct model_desc desc;
	if (model_resolve(model, NULL, 0, &src) < 0)
		return cmd_fail(cmd.name, "%s", err_msg());
	if (model_desc_load(src.dir, &desc) < 0) {
		model_source_free(&src);
		return cmd_fail(cmd.name, "%s", err_msg());
	}
	if (!*served)
		served = default_served_name(model, &src);
	if (!card_name_valid(served)) {
		model_source_free(&src);
		return cmd_usage_error(cmd.name, "bad --served-model-name '%s'", served);
	}
	if (!ctx_len)
		ctx_len = desc.max_position_embeddings;
	if (!kv_blocks)
		kv_blocks = max_seqs * ((ctx_len + block_size - 1) / block_size);

	struct worker w = { 0 };
	struct runtime_hooks hooks;
	int status = 1;
	w.name = served;
	w.engine = engine;

	if (runtime_init(&w.rt, (int64_t)(grace * 1000)) < 0 ||
	    runtime_open_store(&w.rt, store_url, lease_ttl) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	echo_engine_new(w.rt.base, echo_delay, &w.echo);
	rpc_server_new(w.rt.base, NULL, &w.rpc);
	struct strbuf meta = STRBUF_INIT;
	sb_addf(&meta, "{\"role\":\"%s\",\"engine\":\"%s\",\"model\":", role, engine);
	sb_add_json_str(&meta, served, strlen(served));
	sb_addch(&meta, '}');
	rc = rpc_server_listen(w.rpc, host, (int)port);
	if (rc == 0)
		rc = endpoint_serve(&w.rt, w.rpc, ns, component, "generate", echo_engine_handle,
				    w.echo, meta.buf, &w.svc);
	sb_release(&meta);
	if (rc < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	struct model_card card = {
		.name = (char *)served, .model = (char *)model, .ns = (char *)ns,
		.component = (char *)component, .endpoint = "generate",
		.instance_id = endpoint_service_id(w.svc), .engine = (char *)engine,
		.context_length = ctx_len, .kv_block_size = block_size,
		.kv_capacity_blocks = kv_blocks, .max_num_seqs = max_seqs,
	};
	rc = card_publish(w.rt.store, w.rt.lease, &card, src.dir, &w.card_key);
	for (int i = 0; i < CARD_MAX_FILES; i++)
		free(card.files[i].prefix);
	if (rc < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	if (sys_port >= 0) {
		http_server_new(w.rt.base, NULL, sys_handler, &w, &w.sys);
		if (http_server_listen(w.sys, host, (int)sys_port) < 0) {
			cmd_fail(cmd.name, "system port: %s", err_msg());
			goto out;
		}
	}
	hooks = (struct runtime_hooks){ worker_stop, NULL, &w };
	runtime_add_hooks(&w.rt, &hooks);
	rpc_server_hooks(w.rpc, &hooks);
	runtime_add_hooks(&w.rt, &hooks);
	printf("worker %s (engine %s) instance %016" PRIx64 " generate at %s/%s/generate %s",
	       served, engine, endpoint_service_id(w.svc), ns, component,
	       rpc_server_address(w.rpc));
	if (w.sys)
		printf(" system port %d", http_server_port(w.sys));
	printf("\n");
	runtime_run(&w.rt);
	status = 0;
out:
	http_server_free(w.sys);
	rpc_server_free(w.rpc);
	echo_engine_free(w.echo);
	endpoint_service_free(w.svc);
	free(w.card_key);
	runtime_free(&w.rt);
	model_source_free(&src);
	return status;
}
