/*
 * serve.c - "dyn serve": a worker (man dyn-serve(1)).
 *
 * Parses the options, resolves the model (an engine "auto" becomes builtin
 * or echo), loads it for the builtin and mock engines, and runs the worker
 * component (core/serve/worker.h) on a runtime until SIGINT/SIGTERM.
 */
#include "cmd/cmd.h"
#include "cmd/engine_opts.h"
#include "core/embed/embed.h"
#include "core/engine/engine.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/proto/card.h"
#include "core/runtime.h"
#include "core/serve/worker.h"
#include "core/tmpl/tmpl.h"
#include "net/tls.h"
#include "store/process.h"
#include "store/store.h"

#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const engines[] = { "auto", "builtin", "mock", "echo", "embed", NULL };

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
	long ctx_len = 0, kv_blocks = 0, kv_port = 0, kv_hold_ms = 30000;
	double grace = 30, speedup = 1, kv_bandwidth = 25;
	const char *kv_transport = "auto";
	const char *tool_parser = "", *rsn_parser = "";
	const char *rpc_cert = "", *rpc_key = "", *rpc_ca = "";
	int kv_tls = 0;
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
		  "back), embed (an embedding model, for /v1/embeddings: a BERT-style encoder or "
		  "a decoder with sentence-transformers' modules.json), auto (embed for those, "
		  "else builtin when the model has weights or --load-format dummy, else echo)",
		  0, 0, engines },
		{ "role", OPT_ENUM, &role, "ROLE",
		  "worker role: agg (prefill and decode), prefill (lends its prompts' KV to "
		  "decode workers), decode (fetches a prompt's KV from a prefill worker); "
		  "builtin and mock engines only for prefill and decode", 0, 0, worker_role_names },
		{ "kv-transport", OPT_ENUM, &kv_transport, "T",
		  "how KV blocks move between prefill and decode workers: tcp, ucx, auto (ucx "
		  "where both sides have it, else tcp)", 0, 0, kvx_transport_names },
		{ "kv-transfer-tls", OPT_BOOL, &kv_tls, NULL,
		  "prefill and decode roles: encrypt KV transfers with TLS, with the "
		  "--rpc-tls-* certificates (mutual, the same CA; transport tcp only). Both "
		  "sides must say it: a decode worker prefills locally what a prefill worker "
		  "with a different setting holds", 0, 0, NULL },
		{ "kv-port", OPT_INT, &kv_port, "PORT",
		  "prefill role: the KV data port (0 = any free port)", 0, 65535, NULL },
		{ "kv-hold-timeout", OPT_INT, &kv_hold_ms, "MS",
		  "prefill role: release a prompt's held KV blocks not fetched by then", 1,
		  86400000, NULL },
		{ "kv-transfer-bandwidth", OPT_DOUBLE, &kv_bandwidth, "GBPS",
		  "mock engine, decode role: the bandwidth a KV fetch's time is modelled with",
		  1e-6, 1e6, NULL },
		{ "namespace", OPT_STRING, &ns, "NS", "namespace of the generate endpoint", 0, 0, NULL },
		{ "component", OPT_STRING, &component, "NAME", "component of the generate endpoint",
		  0, 0, NULL },
		{ "store", OPT_STRING, &store_url, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: file://$XDG_RUNTIME_DIR/dyn)",
		  0, 0, NULL },
		{ "host", OPT_STRING, &host, "ADDR", "request-plane address to listen on and advertise",
		  0, 0, NULL },
		{ "port", OPT_INT, &port, "PORT", "request-plane TCP port (0 = any free port)", 0, 65535, NULL },
		{ "system-port", OPT_INT, &sys_port, "PORT",
		  "serve /health, /live and /metrics here (0 = any free port, -1 = off)", -1, 65535, NULL },
		{ "lease-ttl", OPT_INT, &lease_ttl, "MS",
		  "process lease TTL: records of a crashed worker vanish after this", 100, 3600000, NULL },
		{ "grace-period", OPT_DOUBLE, &grace, "SECONDS",
		  "drain (SIGTERM, SIGINT or a drain request): let in-flight requests finish for this long, then end the rest with the migrate error (dyn-serve(1) FAULT TOLERANCE)", 0, 86400, NULL },
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
		CMD_PARSER_OPTS(tool_parser, rsn_parser, "the model card asks frontends to "),
		CMD_RPC_TLS_OPTS(rpc_cert, rpc_key, rpc_ca),
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
		"--token-echo-delay-ms apart; --engine embed serves an embedding model\n"
		"(its card says so: frontends route only /v1/embeddings to it).\n\n"
		"SIGTERM, SIGINT or a drain request ('dyn rpc call --address HOST:PORT\n"
		"NS/COMPONENT/drain') drains the worker: it leaves the store at once,\n"
		"lets requests in flight finish for --grace-period seconds, ends the rest\n"
		"with a 503 'migrate:' error that frontends re-send, and exits 0; a\n"
		"second signal exits at once.  An unavailable store does not stop it: it\n"
		"registers again when the store returns (dyn-serve(1) FAULT TOLERANCE).",
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
	    cmd_check_name(cmd.name, "--component", component) ||
	    cmd_check_parsers(cmd.name, tool_parser, rsn_parser))
		return EXIT_USAGE;
	if (kv_tls && !*rpc_cert)
		return cmd_usage_error(cmd.name, "--kv-transfer-tls needs --rpc-tls-cert, "
				       "--rpc-tls-key and --rpc-tls-ca");
	if (kv_tls && !strcmp(role, "agg"))
		return cmd_usage_error(cmd.name, "--kv-transfer-tls is for roles prefill and decode");
	if (kv_tls && !strcmp(kv_transport, "ucx"))
		return cmd_usage_error(cmd.name, "--kv-transfer-tls needs --kv-transport tcp or "
				       "auto (UCX transfers are not encrypted)");
	if ((rc = cmd_rpc_tls(cmd.name, rpc_cert, rpc_key, rpc_ca)) >= 0)
		return rc;
	struct cmd_progress progress = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &progress };
	struct model_load_opts lo = { .hub = &hub };
	struct engine_opts eo;
	if (cmd_engine_args_apply(cmd.name, &eng, &lo, &eo) ||
	    cmd_check_revision(cmd.name, model, eng.revision))
		return EXIT_USAGE;
	hub.revision = eng.revision;

	struct model_source src;
	struct model_desc desc = { 0 };
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
	if (!strcmp(engine, "auto") && embedder_supports(src.dir))
		engine = "embed";
	int embed = !strcmp(engine, "embed");
	if (!embed && model_desc_load(src.dir, &desc) < 0) {
		model_source_free(&src);
		return cmd_fail(cmd.name, "%s", err_msg());
	}
	if (!strcmp(engine, "auto")) {
		engine = lo.format == MODEL_LOAD_DUMMY || has_weights(&src) ? "builtin" : "echo";
		if (!strcmp(engine, "echo"))	/* not what a user who named a model expects */
			fprintf(stderr, "dyn serve: warning: %s has no weights (*.safetensors): "
					"serving the echo engine, which streams the prompt back; "
					"--engine echo says so, --load-format dummy gives random "
					"weights\n", model);
	}
	if (!*served)
		served = cmd_default_served_name(model, &src);
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
		.component = component, .host = host, .engine = engine, .port = (int)port,
		.sys_port = (int)sys_port, .eo = &eo, .kv_events = 1, .echo_delay = echo_delay,
		.ctx_len = ctx_len, .block_size = eng.block_size, .kv_blocks = kv_blocks,
		.max_seqs = eo.max_num_seqs, .kv_port = (int)kv_port, .kv_hold_ms = kv_hold_ms,
		.kv_bandwidth_gbps = kv_bandwidth,
		.tool_call_parser = tool_parser, .reasoning_parser = rsn_parser,
	};
	int status = 1;

	for (int i = 0; worker_role_names[i]; i++)
		if (!strcmp(role, worker_role_names[i]))
			wc.role = (enum worker_role)i;
	for (int i = 0; kvx_transport_names[i]; i++)
		if (!strcmp(kv_transport, kvx_transport_names[i]))
			wc.kv_transport = (enum kvx_transport)i;
	/* Its own context: the request plane's lives inside net/rpc.c. */
	if (kv_tls && tls_ctx_new(TLS_MUTUAL, rpc_cert, rpc_key, rpc_ca, &wc.kv_tls) < 0) {
		cmd_fail(cmd.name, "KV transfer TLS: %s", err_msg());
		goto out;
	}
	if ((rc = runtime_init(&rt, (int64_t)(grace * 1000))) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	/* The model first: the lease is renewed by the event loop, which does
	 * not run yet, and a load may take longer than --lease-ttl. */
	if ((!strcmp(engine, "builtin") || mock) && (rc = model_load(model, &lo, &wc.m)) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	if ((rc = store_process_open(&rt, store_url, lease_ttl)) < 0) {
		status = cmd_store_fail(cmd.name, rc);
		model_free(wc.m);
		goto out;
	}
	rc = worker_start(&rt, &wc, &w);	/* owns wc.m from here on */
	if (rc < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	printf("worker %s (engine %s) instance %016" PRIx64 " generate at %s/%s/generate %s",
	       served, worker_engine_name(w), worker_instance_id(w), ns, component,
	       worker_address(w));
	if (worker_system_port(w) >= 0)
		printf(" system port %d", worker_system_port(w));
	/* Whether frontends can serve chat for it (make run prints the chat
	 * curl line only then): a template that loads and compiles. */
	printf("; chat template: %s\n", !embed && model_dir_has_chat_template(src.dir) ? "yes" : "no");
	fflush(stdout);
	runtime_run(&rt);
	status = 0;
out:
	worker_free(w);
	tls_ctx_free(wc.kv_tls);
	runtime_free(&rt);
	model_source_free(&src);
	return status;
}
