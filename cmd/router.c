/*
 * router.c - "dyn router": the standalone KV router service that the
 * frontends of a namespace share (man dyn-router(1); the logic is in
 * core/router/service.c), and "dyn router --dump", which asks a running
 * one for its view of the workers.
 */
#include "cmd/cmd.h"
#include "core/discovery/health.h"
#include "core/err.h"
#include "core/log.h"
#include "core/proto/route.h"
#include "core/router/disagg.h"
#include "core/router/service.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "net/endpoint.h"
#include "net/rpc.h"
#include "net/sysport.h"
#include "store/process.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "router"

static const char *const router_modes[] = { "kv", "round-robin", "random", NULL };

/* ---- the system port (net/sysport.h) -------------------------------------------- */

struct sys {
	struct runtime *rt;
	struct router_service *svc;
};

static int sys_health(void *arg, struct strbuf *fields)
{
	struct sys *s = arg;
	sb_addf(fields, ",\"instance_id\":\"%016" PRIx64 "\"", router_service_id(s->svc));
	return !s->rt->shutting_down;
}

static void sys_metrics(void *arg, struct strbuf *out)
{
	struct sys *s = arg;
	router_service_metrics(s->svc, out);
}

static int sys_get_json(void *arg, const char *path, struct strbuf *out)
{
	struct sys *s = arg;
	if (strcmp(path, "/debug/workers"))
		return 0;
	router_service_state_json(s->svc, out);
	return 1;
}

/* ---- dyn router --dump ------------------------------------------------------------ */

struct dumper {
	struct event_base *base;
	struct strbuf out;
	int done, failed;
};

static void dump_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		     void *arg)
{
	struct dumper *d = arg;
	(void)st;
	(void)flags;
	sb_add(&d->out, data, len);
	d->done = 1;
	event_base_loopbreak(d->base);
}

static void dump_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct dumper *d = arg;
	(void)st;
	sb_addf(&d->out, "%s (%d)", msg, code);
	d->failed = 1;
	event_base_loopbreak(d->base);
}

static void dump_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct dumper *d = arg;
	(void)fd;
	(void)what;
	sb_adds(&d->out, "no answer in time");
	d->failed = 1;
	event_base_loopbreak(d->base);
}

static long jnum(const cJSON *o, const char *name)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(j) ? (long)j->valuedouble : -1;
}

static const char *jstr(const cJSON *o, const char *name)
{
	const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(j) ? j->valuestring : "-";
}

/* The dump as a table (one line per worker). */
static int print_table(const char *json, size_t len)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	const cJSON *rt = cJSON_GetObjectItemCaseSensitive(root, "router");
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "workers"), *w;
	if (!cJSON_IsObject(rt) || !cJSON_IsArray(ws)) {
		cJSON_Delete(root);
		return -1;
	}
	printf("router %s (namespace %s, mode %s, KV events %s): %d workers, %ld requests "
	       "in flight\n", jstr(rt, "instance_id"), jstr(rt, "namespace"), jstr(rt, "mode"),
	       cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rt, "kv_events")) ? "on" : "off",
	       cJSON_GetArraySize(ws), jnum(rt, "inflight"));
	printf("%-24s %-16s %-7s %8s %-23s %10s %8s %8s %8s\n", "MODEL", "WORKER", "ROLE",
	       "BLOCKS", "G2/G3/G4", "LAST_EVENT", "ACTIVE", "WAITING", "INFLIGHT");
	cJSON_ArrayForEach(w, ws) {
		const cJSON *load = cJSON_GetObjectItemCaseSensitive(w, "load");
		const cJSON *tb = cJSON_GetObjectItemCaseSensitive(w, "tier_blocks");
		char active[24] = "-", waiting[24] = "-", tiers[80] = "-";
		if (cJSON_IsObject(load)) {
			snprintf(active, sizeof(active), "%ld", jnum(load, "active_blocks"));
			snprintf(waiting, sizeof(waiting), "%ld", jnum(load, "waiting"));
		}
		if (cJSON_IsObject(tb))
			snprintf(tiers, sizeof(tiers), "%ld/%ld/%ld", jnum(tb, "G2"), jnum(tb, "G3"),
				 jnum(tb, "G4"));
		printf("%-24s %-16s %-7s %8ld %-23s %10ld %8s %8s %8ld\n", jstr(w, "model"),
		       jstr(w, "worker_id"), jstr(w, "role"), jnum(w, "blocks"), tiers,
		       jnum(w, "last_event_id"), active, waiting, jnum(w, "inflight"));
	}
	cJSON_Delete(root);
	return 0;
}

static int run_dump(const char *store_url, const char *ns, int json, double timeout)
{
	struct store *st;
	struct endpoint_instance *v = NULL;
	size_t n = 0;
	struct strbuf path = STRBUF_INIT;
	int rc;

	sb_addf(&path, "%s/%s/%s", ns, ROUTER_COMPONENT, ROUTER_EP_DUMP);
	rc = store_open(*store_url ? store_url : store_default_url(), NULL, &st);
	if (rc < 0) {
		sb_release(&path);
		return cmd_store_fail("router", rc);
	}
	rc = endpoint_list(st, path.buf, &v, &n);
	store_close(st);
	if (rc < 0) {
		sb_release(&path);
		return cmd_fail("router", "%s", err_msg());
	}
	if (!n) {
		cmd_fail("router", "no router is registered in namespace %s", ns);
		sb_release(&path);
		return 1;
	}
	struct dumper d = { event_base_new(), STRBUF_INIT, 0, 0 };
	struct rpc_client *cli;
	struct timeval tv = { (time_t)timeout, (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6) };
	struct event *timer = evtimer_new(d.base, dump_timeout, &d);
	static const struct rpc_stream_cbs cbs = { NULL, dump_end, dump_error };
	rpc_client_new(d.base, NULL, &cli);
	evtimer_add(timer, &tv);
	if (rpc_call(cli, v[0].address, path.buf, "{}", 2, 0, &cbs, &d, NULL) < 0) {
		sb_adds(&d.out, err_msg());
		d.failed = 1;
	} else {
		event_base_dispatch(d.base);
	}
	int status = 0;
	if (d.failed || !d.done) {
		status = cmd_fail("router", "asking the router at %s: %s", v[0].address,
				  d.out.buf);
	} else if (json) {
		printf("%s\n", d.out.buf);
	} else if (print_table(d.out.buf, d.out.len) < 0) {
		status = cmd_fail("router", "the router's answer is not a dump: %.200s", d.out.buf);
	}
	rpc_client_free(cli);
	event_free(timer);
	event_base_free(d.base);
	sb_release(&d.out);
	sb_release(&path);
	endpoint_instances_free(v, n);
	return status;
}

/* ---- dyn router ------------------------------------------------------------------- */

int cmd_router(int argc, char **argv)
{
	const char *ns = "dyn", *store_opt = "", *host = "127.0.0.1", *mode = "kv";
	const char *rpc_cert = "", *rpc_key = "", *rpc_ca = "";
	long port = 0, sys_port = -1, lease_ttl = STORE_DEFAULT_TTL_MS;
	double grace = 30, overlap_weight = 1.0, temp = 0, timeout = 5;
	int kv_events = 1, dump = 0, json = 0;
	long max_local = DISAGG_MAX_LOCAL_PREFILL_DEFAULT;
	long max_queue = DISAGG_MAX_PREFILL_QUEUE_DEFAULT;
	double check_every = WORKER_HEALTH_INTERVAL_MS / 1e3;
	double check_timeout = WORKER_HEALTH_TIMEOUT_MS / 1e3;
	const struct opt opts[] = {
		{ "namespace", OPT_STRING, &ns, "NS",
		  "namespace the router serves (its frontends use the same)", 0, 0, NULL },
		{ "store", OPT_STRING, &store_opt, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: file://$XDG_RUNTIME_DIR/dyn)",
		  0, 0, NULL },
		{ "router-mode", OPT_ENUM, &mode, "MODE", "how a worker is chosen per request",
		  0, 0, router_modes },
		CMD_KV_ROUTER_OPTS(overlap_weight, temp, kv_events),
		CMD_DISAGG_OPTS(max_local, max_queue),
		CMD_HEALTH_CHECK_OPTS(check_every, check_timeout),
		{ "host", OPT_STRING, &host, "ADDR", "request-plane address to listen on and advertise",
		  0, 0, NULL },
		{ "port", OPT_INT, &port, "PORT", "request-plane TCP port (0 = any free port)",
		  0, 65535, NULL },
		{ "system-port", OPT_INT, &sys_port, "PORT",
		  "serve /health, /live, /metrics and /debug/workers here (0 = any free port, "
		  "-1 = off)", -1, 65535, NULL },
		{ "lease-ttl", OPT_INT, &lease_ttl, "MS",
		  "process lease TTL: the records of a crashed router vanish after this",
		  100, 3600000, NULL },
		{ "grace-period", OPT_DOUBLE, &grace, "SECONDS",
		  "on SIGINT/SIGTERM, the longest the shutdown may take", 0, 86400, NULL },
		{ "dump", OPT_BOOL, &dump, NULL,
		  "ask the running router of --namespace for its view of the workers, print it "
		  "and exit", 0, 0, NULL },
		{ "json", OPT_BOOL, &json, NULL, "--dump: print the router's JSON as is", 0, 0, NULL },
		{ "timeout", OPT_DOUBLE, &timeout, "SECONDS", "--dump: give up after this long",
		  0.1, 3600, NULL },
		CMD_RPC_TLS_OPTS(rpc_cert, rpc_key, rpc_ca),
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"router", "[OPTIONS]",
		"Run the KV router service that the frontends of a namespace share.",
		"Follows the workers found in the store (their KV events, or with\n"
		"--no-kv-events its own decisions) and registers NS/router/route,\n"
		"first_token and dump under its lease; a frontend of the namespace routes\n"
		"through it while it is registered (and on its embedded router otherwise),\n"
		"so that all of them see one prefix index and one in-flight load.\n"
		"A model with prefill workers is served disaggregated: the reply names a\n"
		"decode worker and, unless the prompt is short or the prefill queues are\n"
		"full, the prefill worker that processes the prompt first.\n"
		"Workers that stop answering health checks are not chosen until they\n"
		"answer again.\n"
		"--dump prints, per worker, its role, indexed blocks, last KV event id\n"
		"and load.",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (cmd_check_name(cmd.name, "--namespace", ns))
		return EXIT_USAGE;
	if ((rc = cmd_rpc_tls(cmd.name, rpc_cert, rpc_key, rpc_ca)) >= 0)
		return rc;
	if (dump)
		return run_dump(store_opt, ns, json, timeout);

	struct runtime rt;
	struct rpc_server *srv = NULL;
	struct sysport *sp = NULL;
	struct router_service *svc = NULL;
	struct router_service_opts so = { .ns = ns };
	struct sys sys = { &rt, NULL };
	int status = 1;

	router_mode_parse(mode, &so.kv.mode);
	so.kv.overlap_weight = overlap_weight;
	so.kv.temperature = temp;
	so.kv.no_kv_events = !kv_events;
	so.kv.disagg = (struct disagg_config){ max_local, max_queue };
	so.health_check_interval_ms = CMD_HEALTH_CHECK_MS(check_every);
	so.health_check_timeout_ms = CMD_HEALTH_CHECK_MS(check_timeout);
	if ((rc = runtime_init(&rt, (int64_t)(grace * 1000))) < 0 ||
	    (rc = store_process_open(&rt, store_opt, lease_ttl)) < 0) {
		status = cmd_store_fail(cmd.name, rc);
		goto out;
	}
	rpc_server_new(rt.base, NULL, &srv);
	if (rpc_server_listen(srv, host, (int)port) < 0 ||
	    router_service_new(&rt, srv, &so, &svc) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	sys.svc = svc;
	struct sysport_role role = { sys_health, sys_metrics, sys_get_json, &sys };
	if (sys_port >= 0 && sysport_new(rt.base, &role, host, (int)sys_port, &sp) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	struct runtime_hooks hooks;
	rpc_server_hooks(srv, &hooks);
	hooks.in_flight = NULL;	/* open route calls end at once (service.h) */
	runtime_add_hooks(&rt, &hooks);
	printf("router instance %016" PRIx64 " listening on %s (namespace %s, mode %s%s, "
	       "store %s)", router_service_id(svc), rpc_server_address(srv), ns, mode,
	       kv_events ? "" : ", no KV events", store_url(rt.store));
	if (sp)
		printf(" system port %d", sysport_port(sp));
	printf("\n");
	LOG_INFO(LOG_MOD, "router %016" PRIx64 " serving %s/%s/%s", router_service_id(svc), ns,
		 ROUTER_COMPONENT, ROUTER_EP_ROUTE);
	runtime_run(&rt);
	status = 0;
out:
	sysport_free(sp);
	rpc_server_free(srv);
	router_service_free(svc);
	runtime_free(&rt);
	return status;
}
