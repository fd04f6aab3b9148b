/*
 * serve.c - "dyn serve": a worker (man dyn-serve(1)).
 *
 * Resolves the model, serves NS/COMPONENT/generate on the request plane
 * with the chosen engine (builtin, mock: the same engine without compute,
 * or echo), registers the instance and the model card
 * under the process lease, and serves /health, /live and /metrics on the
 * system port.  SIGINT/SIGTERM: the card and instance records go at once,
 * in-flight requests drain for the grace period.
 */
#include "cmd/cmd.h"
#include "cmd/engine_opts.h"
#include "cmd/http_url.h"
#include "cmd/worker.h"
#include "core/engine/engine.h"
#include "core/frontend/frontend.h"
#include "core/serve/builtin.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/model/model.h"
#include "core/runtime.h"
#include "core/proto/card.h"
#include "core/serve/card_publish.h"
#include "core/serve/echo.h"
#include "core/serve/kv_pub.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/http.h"
#include "net/rpc.h"
#include "store/store.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "serve"

struct worker {
	struct runtime *rt;
	struct rpc_server *rpc;
	struct echo_engine *echo;
	struct builtin_engine *builtin;
	struct engine *e;
	struct model *m;
	struct endpoint_service *svc;
	struct http_server *sys;
	struct kv_pub *kvp;
	char *card_key;
	const char *name, *engine;
};

static void worker_stop(void *arg)
{
	struct worker *w = arg;
	kv_pub_stop(w->kvp);
	if (w->card_key && w->rt->store) {
		if (store_delete(w->rt->store, w->card_key) < 0)
			LOG_WARN(LOG_MOD, "removing model card: %s", err_msg());
	}
}

/* One metric family with a single sample. */
static void metric(struct strbuf *out, const char *name, const char *type, const char *help,
		   const char *labels, double v)
{
	metrics_family(out, name, type, help);
	metrics_value(out, name, labels, v);
}

static void sys_metrics(struct worker *w, struct strbuf *out)
{
	struct worker_stats st;
	struct rpc_server_stats rs;
	struct strbuf l = STRBUF_INIT;

	if (w->builtin)
		builtin_engine_stats(w->builtin, &st);
	else
		echo_engine_stats(w->echo, &st);
	rpc_server_stats(w->rpc, &rs);
	metrics_label(&l, "model", w->name);
	metrics_label(&l, "engine", w->engine);
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
		int ok = !w->rt->shutting_down;
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

/* ---- a worker, also used in-process by dyn run --http ---------------------- */

/* Free a worker that failed to start, keeping the error that stopped it
 * (the cleanup's own store errors would replace it). */
static int start_failed(struct worker *w, int rc)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	worker_free(w);
	return err_set(rc, "%s", msg);
}

int worker_start(struct runtime *rt, const struct worker_conf *c, struct worker **out)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	struct runtime_hooks hooks;
	struct strbuf meta = STRBUF_INIT;
	rpc_handler_fn fn;
	void *fn_arg;
	int rc;

	w->rt = rt;
	w->name = c->served;
	w->m = c->m;
	w->e = c->e;
	w->kvp = c->kvp;
	w->engine = c->engine ? c->engine : w->e ? "builtin" : "echo";
	if (w->e) {
		rc = builtin_engine_new(rt->base, w->m, w->e, &w->builtin);
		if (rc < 0) {
			return start_failed(w, rc);
		}
		fn = builtin_engine_handle;
		fn_arg = w->builtin;
	} else {
		echo_engine_new(rt->base, c->echo_delay, &w->echo);
		fn = echo_engine_handle;
		fn_arg = w->echo;
	}
	rpc_server_new(rt->base, NULL, &w->rpc);
	sb_addf(&meta, "{\"role\":\"%s\",\"engine\":\"%s\",\"model\":", c->role, w->engine);
	sb_add_json_str(&meta, c->served, strlen(c->served));
	sb_addch(&meta, '}');
	rc = rpc_server_listen(w->rpc, c->host, c->port);
	if (rc == 0)
		rc = endpoint_serve(rt, w->rpc, c->ns, c->component, "generate", fn, fn_arg,
				    meta.buf, &w->svc);
	if (rc == 0 && w->kvp)
		rc = kv_pub_serve(w->kvp, w->rpc, c->ns, c->component, w->e);
	sb_release(&meta);
	if (rc < 0) {
		return start_failed(w, rc);
	}
	struct model_card card = {
		.name = (char *)c->served, .model = (char *)c->model, .ns = (char *)c->ns,
		.component = (char *)c->component, .endpoint = "generate",
		.instance_id = endpoint_service_id(w->svc), .engine = (char *)w->engine,
		.context_length = c->ctx_len, .kv_block_size = c->block_size,
		.kv_capacity_blocks = c->kv_blocks, .max_num_seqs = c->max_seqs,
	};
	if (w->e) {
		struct engine_stats es;
		engine_stats(w->e, &es);
		card.context_length = engine_max_model_len(w->e);
		card.kv_block_size = es.block_size;
		card.kv_capacity_blocks = es.kv_blocks_total;
	}
	rc = card_publish(rt->store, rt->lease, &card, c->dir, &w->card_key);
	for (int i = 0; i < CARD_MAX_FILES; i++)
		free(card.files[i].prefix);
	if (rc < 0)
		return start_failed(w, rc);
	if (c->sys_port >= 0) {
		http_server_new(rt->base, NULL, sys_handler, w, &w->sys);
		rc = http_server_listen(w->sys, c->host, c->sys_port);
		if (rc < 0) {
			err_set(rc, "system port: %s", err_msg());
			return start_failed(w, rc);
		}
	}
	hooks = (struct runtime_hooks){ worker_stop, NULL, w };
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
	return w->sys ? http_server_port(w->sys) : -1;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	http_server_free(w->sys);
	rpc_server_free(w->rpc);	/* cancels live calls (and their engine requests) */
	kv_pub_detach_engine(w->kvp);
	engine_free(w->e);		/* aborts the rest; final outputs are queued */
	kv_pub_free(w->kvp);		/* after the engine: its hooks may still run */
	builtin_engine_free(w->builtin);
	echo_engine_free(w->echo);
	endpoint_service_free(w->svc);
	model_free(w->m);
	free(w->card_key);
	free(w);
}

/* ---- dyn serve ------------------------------------------------------------ */

static const char *const engines[] = { "auto", "builtin", "mock", "echo", NULL };
static const char *const roles[] = { "agg", NULL };

/* The served name of a model given by path: its folder's name. */
static const char *default_served_name(const char *model, const struct model_source *src)
{
	if (src->repo)
		return model;
	const char *slash = strrchr(src->dir, '/');
	return slash && slash[1] ? slash + 1 : src->dir;
}

/* Does the resolved model come with safetensors weights? */
static int has_weights(const struct model_source *src)
{
	if (src->weights)
		return 1;
	DIR *d = opendir(src->dir);
	struct dirent *de;
	int found = 0;
	if (!d)
		return 0;
	while (!found && (de = readdir(d))) {
		size_t n = strlen(de->d_name);
		found = n > 12 && !strcmp(de->d_name + n - 12, ".safetensors");
		found |= n > 23 && !strcmp(de->d_name + n - 23, ".safetensors.index.json");
	}
	closedir(d);
	return found;
}

/* The model folder has a chat template that a frontend can render. */
static int model_dir_has_chat_template(const char *dir)
{
	struct tmpl_chat *c;
	int has = tmpl_chat_load(dir, &c) == 0;
	if (has)
		tmpl_chat_free(c);
	err_clear();
	return has;
}

int cmd_serve(int argc, char **argv)
{
	const char *model = "", *served = "", *engine = "auto", *role = "agg";
	const char *ns = "dyn", *component = "backend", *store_url = "", *host = "127.0.0.1";
	long port = 0, sys_port = -1, lease_ttl = STORE_DEFAULT_TTL_MS, echo_delay = 10;
	long ctx_len = 0, kv_blocks = 0;
	double grace = 30, speedup = 1;
	struct cmd_engine_args eng = CMD_ENGINE_ARGS_INIT;
	unsigned eng_given = cmd_engine_args_given(argc, argv);
	const struct opt opts[] = {
		{ "model", OPT_STRING, &model, "MODEL",
		  "model folder, checkpoint file or hub id ORG/NAME (required)", 0, 0, NULL },
		{ "served-model-name", OPT_STRING, &served, "NAME",
		  "name clients use in requests (default: the hub id, or the folder name)", 0, 0, NULL },
		{ "engine", OPT_ENUM, &engine, "ENGINE",
		  "what generates tokens: builtin (the model), mock (no compute: the real "
		  "scheduler and KV cache, timed by a model of a GPU), echo (streams the prompt "
		  "back), auto (builtin when the model has weights or --load-format dummy, else "
		  "echo)", 0, 0, engines },
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
		CMD_ENGINE_OPTS(eng),
		{ "speedup-ratio", OPT_DOUBLE, &speedup, "X",
		  "mock engine: run the timing model X times faster than real time", 1e-3, 1e6,
		  NULL },
		{ "context-length", OPT_INT, &ctx_len, "TOKENS",
		  "echo engine: context length to advertise (0 = the model's max_position_embeddings)",
		  0, 1 << 30, NULL },
		{ "kv-capacity-blocks", OPT_INT, &kv_blocks, "N",
		  "echo engine: KV cache blocks to advertise (0 = enough for max-num-seqs full "
		  "contexts)", 0, 1L << 40, NULL },
		{ "token-echo-delay-ms", OPT_INT, &echo_delay, "MS",
		  "echo engine: pause between streamed tokens", 0, 60000, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"serve", "--model MODEL [OPTIONS]",
		"Run a worker: serve a model's generate endpoint on the request plane.",
		"Registers its instance (NS/COMPONENT/generate) and the model card (config,\n"
		"tokenizer and chat template files, context length, KV block size and\n"
		"capacity, max sequences) in the store under its lease, so frontends\n"
		"anywhere find it.  Requests are pre-tokenized; responses stream token ids,\n"
		"logprobs, the finish reason and usage.  --engine builtin runs the model on\n"
		"the CPU engine (the engine options apply); --engine mock needs only the\n"
		"model's config and tokenizer: it schedules and caches like builtin but\n"
		"sleeps for each step's predicted time instead of computing, and emits\n"
		"random tokens (defaults: --block-size 64, 16384 blocks, --max-num-seqs\n"
		"256, --max-num-batched-tokens 8192; see dyn-serve(1) for its timing\n"
		"model); --engine echo streams the prompt's tokens back\n"
		"--token-echo-delay-ms apart.",
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
	if (cmd_check_name(cmd.name, "--namespace", ns) ||
	    cmd_check_name(cmd.name, "--component", component))
		return EXIT_USAGE;
	struct cmd_progress progress = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &progress };
	struct model_load_opts lo = { .hub = &hub };
	struct engine_opts eo;
	if (cmd_engine_args_apply(cmd.name, &eng, &lo, &eo) ||
	    cmd_check_revision(cmd.name, model, eng.revision))
		return EXIT_USAGE;
	hub.revision = eng.revision;

	struct model_source src;
	struct model_desc desc;
	/* Weights are fetched (hub ids) unless the echo engine or dummy weights
	 * make them unnecessary. */
	int mock = !strcmp(engine, "mock");
	if (mock) {
		cmd_engine_args_apply_mock(&eng, eng_given, speedup, &eo);
		lo.format = MODEL_LOAD_DUMMY;	/* config only: no weights at all */
		lo.flags = MODEL_LOAD_META;
	}
	rc = model_resolve(model, &hub, strcmp(engine, "echo") && !mock &&
			   lo.format != MODEL_LOAD_DUMMY, &src);
	cmd_progress_done(&progress);
	if (rc < 0)
		return cmd_fail(cmd.name, "%s", err_msg());
	if (model_desc_load(src.dir, &desc) < 0) {
		model_source_free(&src);
		return cmd_fail(cmd.name, "%s", err_msg());
	}
	if (!strcmp(engine, "auto"))
		engine = lo.format == MODEL_LOAD_DUMMY || has_weights(&src) ? "builtin" : "echo";
	if (!*served)
		served = default_served_name(model, &src);
	if (!card_name_valid(served)) {
		model_source_free(&src);
		return cmd_usage_error(cmd.name, "bad --served-model-name '%s'", served);
	}
	if (!ctx_len)
		ctx_len = desc.max_position_embeddings;
	if (!kv_blocks)
		kv_blocks = eng.max_num_seqs * ((ctx_len + eng.block_size - 1) / eng.block_size);

	struct runtime rt = { 0 };
	struct worker *w = NULL;
	struct worker_conf wc = {
		.served = served, .model = model, .dir = src.dir, .ns = ns,
		.component = component, .role = role, .host = host, .port = (int)port,
		.sys_port = (int)sys_port, .echo_delay = echo_delay, .ctx_len = ctx_len,
		.block_size = eng.block_size, .kv_blocks = kv_blocks, .max_seqs = eo.max_num_seqs,
		.engine = engine,
	};
	int status = 1;

	if ((rc = runtime_init(&rt, (int64_t)(grace * 1000))) < 0 ||
	    (rc = runtime_open_store(&rt, store_url, lease_ttl)) < 0) {
		status = cmd_store_fail(cmd.name, rc);
		goto out;
	}
	if (!strcmp(engine, "builtin") || mock) {
		rc = model_load(model, &lo, &wc.m);
		if (rc == 0) {
			wc.kvp = kv_pub_new(rt.base);
			kv_pub_hooks(wc.kvp, &eo.events);
			eo.on_step = kv_pub_on_engine_step;
			eo.step_arg = wc.kvp;
		}
		if (rc == 0 && (rc = engine_new(wc.m, &eo, &wc.e)) < 0) {
			model_free(wc.m);
			wc.m = NULL;
			kv_pub_free(wc.kvp);
			wc.kvp = NULL;
		}
		if (rc < 0) {
			cmd_fail(cmd.name, "%s", err_msg());
			goto out;
		}
		LOG_INFO(LOG_MOD, "%s: %s", served, engine_describe(wc.e));
	}
	rc = worker_start(&rt, &wc, &w);
	wc.m = NULL;	/* the worker owns them now */
	wc.e = NULL;
	wc.kvp = NULL;
	if (rc < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	printf("worker %s (engine %s) instance %016" PRIx64 " generate at %s/%s/generate %s",
	       served, w->engine, worker_instance_id(w), ns, component, worker_address(w));
	if (w->sys)
		printf(" system port %d", worker_system_port(w));
	/* Whether frontends can serve chat for it (make run prints the chat
	 * curl line only then): a template that loads and compiles. */
	printf("; chat template: %s\n", model_dir_has_chat_template(src.dir) ? "yes" : "no");
	fflush(stdout);
	runtime_run(&rt);
	status = 0;
out:
	if (w)
		worker_free(w);
	else if (wc.e || wc.m) {
		engine_free(wc.e);
		model_free(wc.m);
		kv_pub_free(wc.kvp);
	}
	runtime_free(&rt);
	model_source_free(&src);
	return status;
}

/* ---- dyn run MODEL --http: a frontend and a worker in one process ---------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) < 0 ? 0 : 0;
}

int cmd_serve_http(const char *model, struct model *m, struct engine *e, int max_num_seqs,
		   const char *host, int port)
{
	char dir[] = "/tmp/dyn-run-XXXXXX";
	struct runtime rt = { 0 };
	struct worker *w = NULL;
	struct frontend *f = NULL;
	struct runtime_hooks hooks;
	struct strbuf url = STRBUF_INIT;
	int status = 1, have_dir = 0;
	const char *served = default_served_name(model, &m->src);
	struct worker_conf wc = {
		.served = served, .model = model, .dir = m->src.dir, .ns = "dyn",
		.component = "backend", .role = "agg", .host = "127.0.0.1", .port = 0,
		.sys_port = -1, .m = m, .e = e, .max_seqs = max_num_seqs,
	};

	/* The frontend finds workers through a store: here a private one, in
	 * a temporary folder removed on exit. */
	if (!mkdtemp(dir)) {
		cmd_fail("run", "creating a temporary folder: %s", strerror(errno));
		engine_free(e);
		model_free(m);
		return 1;
	}
	have_dir = 1;
	sb_addf(&url, "file://%s", dir);
	if (runtime_init(&rt, 5000) < 0 || runtime_open_store(&rt, url.buf, STORE_DEFAULT_TTL_MS) < 0) {
		cmd_fail("run", "%s", err_msg());
		engine_free(e);
		model_free(m);
		goto out;
	}
	int chat = m->has_chat_template;
	if (worker_start(&rt, &wc, &w) < 0) {	/* owns m and e from here */
		cmd_fail("run", "%s", err_msg());
		goto out;
	}
	struct frontend_opts fo = { .host = host, .port = port };
	if (frontend_new(rt.base, rt.store, &fo, &f) < 0) {
		cmd_fail("run", "%s", err_msg());
		goto out;
	}
	frontend_hooks(f, &hooks);
	runtime_add_hooks(&rt, &hooks);
	char base[320];
	http_url_for(base, sizeof(base), host, frontend_port(f));
	printf("frontend listening on %s (model %s, engine %s)\n", base, served,
	       engine_describe(e));
	/* A model without a chat template serves completions only. */
	if (chat)
		printf("try: curl %s/v1/chat/completions -H 'Content-Type: "
		       "application/json' -d '{\"model\":\"%s\",\"messages\":[{\"role\":"
		       "\"user\",\"content\":\"Once upon a time\"}]}'\n", base, served);
	else
		printf("try: curl %s/v1/completions -H 'Content-Type: "
		       "application/json' -d '{\"model\":\"%s\",\"prompt\":\"Once upon a time\"}'\n",
		       base, served);
	fflush(stdout);
	runtime_run(&rt);
	status = 0;
out:
	frontend_free(f);
	worker_free(w);
	runtime_free(&rt);
	if (have_dir)
		nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	sb_release(&url);
	return status;
}
