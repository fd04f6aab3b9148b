/*
 * rpc.c - "dyn rpc": serve, list, call and benchmark request-plane
 * endpoints (man dyn-rpc(1)).
 *
 *   dyn rpc serve   serve the diagnostic endpoints NS/C/echo and NS/C/stream,
 *                   registered in the store, until SIGINT/SIGTERM
 *   dyn rpc ls      list instance records
 *   dyn rpc call    discover an instance of NS/C/EP, call it, print the frames
 *   dyn rpc bench   round trips/s and streamed frames/s against raw TCP
 *
 * The diagnostic handlers and the raw-TCP baseline server are in
 * rpc_diag.c, the benchmark in rpc_bench.c (shared API: rpc_int.h).
 */
#include "cmd/cmd.h"
#include "cmd/rpc_int.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "store/process.h"
#include "store/store.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOG_MOD "rpc"
/* ---- dyn rpc serve ------------------------------------------------------------ */

static const char *opt_ns = "dyn";
static const char *opt_component = "rpc";
static const char *opt_store = "";

static int rpc_serve(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	long port = 0, lease_ttl = STORE_DEFAULT_TTL_MS, raw_port = -1;
	double grace = 30;
	const struct opt opts[] = {
		{ "namespace", OPT_STRING, &opt_ns, "NS", "namespace of the endpoints", 0, 0, NULL },
		{ "component", OPT_STRING, &opt_component, "NAME", "component of the endpoints", 0, 0, NULL },
		{ "host", OPT_STRING, &host, "ADDR", "address to listen on and advertise", 0, 0, NULL },
		{ "port", OPT_INT, &port, "PORT", "TCP port (0 = any free port)", 0, 65535, NULL },
		{ "store", OPT_STRING, &opt_store, "URL",
		  "discovery store (file://DIR, sqlite://PATH or etcd://HOST:PORT[,...]; default: file://$XDG_RUNTIME_DIR/dyn)", 0, 0, NULL },
		{ "lease-ttl", OPT_INT, &lease_ttl, "MS",
		  "process lease TTL: records of a crashed server vanish after this", 100, 3600000, NULL },
		{ "grace-period", OPT_DOUBLE, &grace, "SECONDS",
		  "on SIGINT/SIGTERM, wait this long for in-flight calls", 0, 86400, NULL },
		{ "raw-port", OPT_INT, &raw_port, "PORT",
		  "also serve the raw-TCP baseline of 'dyn rpc bench' here (-1 = off)", -1, 65535, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"rpc serve", "[OPTIONS]",
		"Serve the diagnostic endpoints NS/COMPONENT/echo and NS/COMPONENT/stream.",
		"echo answers with the request payload in one END frame.  stream takes\n"
		"{\"count\":N,\"size\":BYTES,\"interval_ms\":T} and sends N DATA frames\n"
		"{\"seq\":I} (padded to BYTES) then END.  Both are registered in the store\n"
		"under the process lease; the bound address is printed on stdout.",
		opts,
	};
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (cmd_check_name(cmd.name, "--namespace", opt_ns) ||
	    cmd_check_name(cmd.name, "--component", opt_component))
		return EXIT_USAGE;

	struct runtime rt;
	struct rpc_server *srv = NULL;
	struct endpoint_service *echo = NULL, *stream = NULL;
	struct runtime_hooks hooks;
	int status = 1;

	if (runtime_init(&rt, (int64_t)(grace * 1000)) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	if ((rc = store_process_open(&rt, opt_store, lease_ttl)) < 0) {
		status = cmd_store_fail(cmd.name, rc);
		goto out;
	}
	/* A loaded machine may have stalled us past a short lease since it
	 * was granted: one found gone is replaced before records go under it. */
	if (rt.store && rt.lease)
		store_lease_check(rt.store, rt.lease);
	rpc_server_new(rt.base, NULL, &srv);
	if (rpc_server_listen(srv, host, (int)port) < 0 ||
	    endpoint_serve(&rt, srv, opt_ns, opt_component, "echo", rpc_diag_echo, NULL,
			   NULL, &echo) < 0 ||
	    endpoint_serve(&rt, srv, opt_ns, opt_component, "stream", rpc_diag_stream,
			   rt.base, NULL, &stream) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	rpc_server_hooks(srv, &hooks);
	runtime_add_hooks(&rt, &hooks);
	if (raw_port >= 0) {
		int bound;
		if (rpc_raw_server_start(host, (int)raw_port, &bound) < 0) {
			cmd_fail(cmd.name, "%s", err_msg());
			goto out;
		}
		printf("raw tcp baseline on %s:%d\n", host, bound);
	}
	printf("listening on %s instance %016" PRIx64 " endpoints %s/%s/echo %s/%s/stream\n",
	       rpc_server_address(srv), endpoint_service_id(echo), opt_ns, opt_component,
	       opt_ns, opt_component);
	runtime_run(&rt);
	status = 0;
out:
	/* Calls still running after the grace period are cancelled here. */
	rpc_server_free(srv);
	endpoint_service_free(echo);
	endpoint_service_free(stream);
	runtime_free(&rt);
	return status;
}

/* ---- dyn rpc ls ------------------------------------------------------------------ */

/* The "role" an instance record's metadata gives (a worker's agg,
 * prefill or decode, a router's router), "-" when none. */
static const char *metadata_role(const char *metadata, char *buf, size_t size)
{
	cJSON *meta = cJSON_Parse(metadata);
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(meta, "role");
	snprintf(buf, size, "%s", cJSON_IsString(r) && *r->valuestring ? r->valuestring : "-");
	cJSON_Delete(meta);
	return buf;
}

static int rpc_ls(int argc, char **argv)
{
	int json = 0;
	char role[16];
	const struct opt opts[] = {
		{ "store", OPT_STRING, &opt_store, "URL", "discovery store URL", 0, 0, NULL },
		{ "json", OPT_BOOL, &json, NULL, "print the records as JSON lines", 0, 0, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"rpc ls", "[OPTIONS] [NAMESPACE[/COMPONENT[/ENDPOINT]]]",
		"List the endpoint instances registered in the store.",
		"ROLE is the role a record's metadata gives (a worker's agg, prefill or\n"
		"decode; a router's router), - when it gives none.", opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs > 1)
		return cmd_usage_error(cmd.name, "expected at most one NAMESPACE[/COMPONENT[/ENDPOINT]]");
	const char *path = nargs ? argv[0] : "";
	char ns[ENDPOINT_NAME_MAX + 1], comp[ENDPOINT_NAME_MAX + 1], ep[ENDPOINT_NAME_MAX + 1];
	if (endpoint_path_parse(path, 0, ns, comp, ep, NULL) < 0)
		return cmd_usage_error(cmd.name, "%s", err_msg());

	struct store *st;
	struct endpoint_instance *v;
	size_t n;
	rc = store_open(*opt_store ? opt_store : store_default_url(), NULL, &st);
	if (rc < 0)
		return cmd_store_fail(cmd.name, rc);
	rc = endpoint_list(st, path, &v, &n);
	if (rc == 0 && n == 0 && !json)	/* say where nothing was found */
		fprintf(stderr, "dyn rpc ls: no instances%s%s in %s (--store or DYN_STORE picks "
				"another store)\n", *path ? " under " : "", path, store_url(st));
	store_close(st);
	if (rc < 0)
		return cmd_fail(cmd.name, "%s", err_msg());
	if (!json && n)
		printf("%-40s %-16s %-24s %-8s %s\n", "ENDPOINT", "INSTANCE", "ADDRESS", "ROLE",
		       "PID");
	for (size_t i = 0; i < n; i++) {
		if (json)
			printf("{\"endpoint\":\"%s\",\"instance_id\":\"%016" PRIx64
			       "\",\"address\":\"%s\",\"transport\":\"%s\",\"pid\":%ld,"
			       "\"metadata\":%s}\n", v[i].path, v[i].id, v[i].address,
			       v[i].transport, v[i].pid, v[i].metadata);
		else
			printf("%-40s %016" PRIx64 " %-24s %-8s %ld\n", v[i].path, v[i].id,
			       v[i].address, metadata_role(v[i].metadata, role, sizeof(role)),
			       v[i].pid);
	}
	endpoint_instances_free(v, n);
	return 0;
}

/* ---- dyn rpc call ----------------------------------------------------------------- */

struct caller {
	struct event_base *base;
	struct rpc_client *cli;
	struct endpoint_watch *watch;
	struct rpc_stream *st;
	const char *path, *payload, *address;
	uint64_t instance;
	int want_instance, count_only, started;
	long frames, next_seq;
	int in_order;
	int status;		/* exit status once done; -1 while running */
	uint64_t tried[8];	/* instances that failed before answering */
	int ntried;
	double wait_s;		/* --wait */
	struct event *wait_timer;
	struct store *store;
};

static void caller_finish(struct caller *c, int status)
{
	if (c->status < 0)
		c->status = status;
	event_base_loopbreak(c->base);
}

/* The "seq" of a stream frame, or -1. */
static long frame_seq(const char *p, size_t len)
{
	static const char key[] = "\"seq\":";
	/* Padded frames keep seq at the end; look there first. */
	size_t from = len > 40 ? len - 40 : 0;
	const char *at = memmem(p + from, len - from, key, sizeof(key) - 1);
	if (!at && from)
		at = memmem(p, len, key, sizeof(key) - 1);
	if (!at)
		return -1;
	at += sizeof(key) - 1;
	long v = 0;
	int digits = 0;
	for (; at < p + len && *at >= '0' && *at <= '9' && digits < 18; at++, digits++)
		v = v * 10 + (*at - '0');
	return digits ? v : -1;
}

static void print_payload(const void *data, size_t len, unsigned flags)
{
	if (flags & FRAME_FLAG_BINARY) {
		printf("<%zu bytes of binary data>\n", len);
		return;
	}
	fwrite(data, 1, len, stdout);
	fputc('\n', stdout);
}

static void caller_data(struct rpc_stream *st, const void *data, size_t len,
			unsigned flags, void *arg)
{
	struct caller *c = arg;
	(void)st;
	if (frame_seq(data, len) != c->next_seq)
		c->in_order = 0;
	c->next_seq++;
	c->frames++;
	if (!c->count_only)
		print_payload(data, len, flags);
}

static void caller_end(struct rpc_stream *st, const void *data, size_t len,
		       unsigned flags, void *arg)
{
	struct caller *c = arg;
	(void)st;
	c->st = NULL;
	if (c->count_only)
		printf("%ld frames, %s\n", c->frames, c->in_order ? "in order" : "out of order");
	else if (len)
		print_payload(data, len, flags);
	caller_finish(c, 0);
}

static void caller_try(struct caller *c);

static void caller_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct caller *c = arg;
	(void)st;
	c->st = NULL;
	/* An instance that cannot be reached at all (crashed; its record not
	 * yet expired) is skipped in favour of another one. */
	if (code < 0 && c->frames == 0 && c->watch && !c->want_instance &&
	    c->ntried < (int)ARRAY_SIZE(c->tried)) {
		LOG_WARN(LOG_MOD, "%s: instance %016" PRIx64 ": %s; trying another", c->path,
			 c->tried[c->ntried], msg);
		c->ntried++;
		c->started = 0;
		caller_try(c);
		if (c->started)
			return;
	}
	if (c->count_only)
		printf("%ld frames, %s\n", c->frames, c->in_order ? "in order" : "out of order");
	if (code > 0)
		fprintf(stderr, "dyn rpc call: %s: error %d: %s\n", c->path, code, msg);
	else
		fprintf(stderr, "dyn rpc call: %s: %s\n", c->path, msg);
	caller_finish(c, 1);
}

static void caller_start(struct caller *c, const char *address)
{
	static const struct rpc_stream_cbs cbs = { caller_data, caller_end, caller_error };
	c->started = 1;
	LOG_DEBUG(LOG_MOD, "calling %s at %s", c->path, address);
	if (rpc_call(c->cli, address, c->path, c->payload, strlen(c->payload), 0, &cbs, c,
		     &c->st) < 0) {
		fprintf(stderr, "dyn rpc call: %s\n", err_msg());
		caller_finish(c, 1);
	}
}

static int caller_tried(const struct caller *c, uint64_t id)
{
	for (int i = 0; i < c->ntried; i++)
		if (c->tried[i] == id)
			return 1;
	return 0;
}

/* Discovery: call a suitable instance once the store has been read: the
 * one asked for, else a random one not tried yet. */
static void caller_try(struct caller *c)
{
	const struct endpoint_instance *inst = NULL;

	if (c->started || c->status >= 0 || !endpoint_watch_synced(c->watch))
		return;
	if (c->want_instance) {
		inst = endpoint_watch_find(c->watch, c->instance);
	} else {
		size_t n = endpoint_watch_count(c->watch);
		const struct endpoint_instance *first = endpoint_watch_pick(c->watch,
									    ENDPOINT_PICK_RANDOM);
		size_t start = 0;
		while (first && endpoint_watch_at(c->watch, start) != first)
			start++;
		for (size_t i = 0; first && i < n && !inst; i++) {
			const struct endpoint_instance *cand =
				endpoint_watch_at(c->watch, (start + i) % n);
			if (!caller_tried(c, cand->id))
				inst = cand;
		}
	}
	if (!inst)
		return;
	if (c->ntried < (int)ARRAY_SIZE(c->tried))
		c->tried[c->ntried] = inst->id;
	caller_start(c, inst->address);
}

static void caller_added(const struct endpoint_instance *inst, void *arg)
{
	(void)inst;
	caller_try(arg);
}

static void no_instance(struct caller *c, const char *after)
{
	fprintf(stderr, "dyn rpc call: no instance of %s%s in %s%s\n", c->path,
		c->want_instance ? " with that --instance" : "", store_url(c->store), after);
	caller_finish(c, 1);
}

static void caller_wait_over(evutil_socket_t fd, short what, void *arg)
{
	struct caller *c = arg;
	(void)fd;
	(void)what;
	if (!c->started)
		no_instance(c, " (waited for --wait)");
}

static void caller_synced(void *arg)
{
	struct caller *c = arg;
	caller_try(c);
	if (c->started || c->status >= 0)
		return;
	if (c->wait_s <= 0) {
		no_instance(c, "");
		return;
	}
	LOG_DEBUG(LOG_MOD, "no instance of %s yet; waiting up to %g s", c->path, c->wait_s);
	struct timeval tv = { (time_t)c->wait_s,
			      (suseconds_t)((c->wait_s - (double)(time_t)c->wait_s) * 1e6) };
	c->wait_timer = evtimer_new(c->base, caller_wait_over, c);
	evtimer_add(c->wait_timer, &tv);
}

/* Cancel the stream in progress (if any), print what arrived and why it
 * stopped; returns whether there was a stream. */
static int caller_abort(struct caller *c, const char *why)
{
	if (!c->st)
		return 0;
	rpc_stream_cancel(c->st);
	c->st = NULL;
	if (c->count_only)
		printf("%ld frames, %s\n", c->frames, c->in_order ? "in order" : "out of order");
	fprintf(stderr, "dyn rpc call: %s: %s; stream cancelled after %ld frames\n",
		c->path, why, c->frames);
	return 1;
}

static void caller_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct caller *c = arg;
	(void)fd;
	(void)what;
	if (!caller_abort(c, "timed out")) {
		if (!c->started)
			fprintf(stderr, "dyn rpc call: no instance of %s found before --timeout\n",
				c->path);
		else
			fprintf(stderr, "dyn rpc call: %s: timed out\n", c->path);
	}
	caller_finish(c, 1);
}

static void caller_signal(evutil_socket_t sig, short what, void *arg)
{
	struct caller *c = arg;
	(void)what;
	caller_abort(c, "interrupted");
	caller_finish(c, sig == SIGINT ? 130 : 143);
}

static int rpc_call_cmd(int argc, char **argv)
{
	const char *instance = "", *address = "";
	double timeout = 0, wait = 0;
	int count_only = 0;
	const struct opt opts[] = {
		{ "store", OPT_STRING, &opt_store, "URL", "discovery store URL", 0, 0, NULL },
		{ "instance", OPT_STRING, &instance, "ID",
		  "call this instance (hex id, as 'dyn rpc ls' shows)", 0, 0, NULL },
		{ "address", OPT_STRING, &address, "HOST:PORT",
		  "call this address directly, without discovery", 0, 0, NULL },
		{ "timeout", OPT_DOUBLE, &timeout, "SECONDS",
		  "cancel the call and fail after this long (0 = never)", 0, 1e6, NULL },
		{ "wait", OPT_DOUBLE, &wait, "SECONDS",
		  "wait this long for an instance to appear (0 = fail at once)", 0, 1e6, NULL },
		{ "count-only", OPT_BOOL, &count_only, NULL,
		  "print only the number of DATA frames and whether their \"seq\" ran 0,1,2...", 0, 0, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"rpc call", "[OPTIONS] NAMESPACE/COMPONENT/ENDPOINT [PAYLOAD]",
		"Call an endpoint and print each response frame as a line.",
		"The instance is found through the store (a random one unless\n"
		"--instance is given).  PAYLOAD is JSON text (default {}).  Exit status 1\n"
		"if the call fails, times out or finds no instance.",
		opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs < 1 || nargs > 2)
		return cmd_usage_error(cmd.name, "expected NAMESPACE/COMPONENT/ENDPOINT [PAYLOAD]");
	char ns[ENDPOINT_NAME_MAX + 1], comp[ENDPOINT_NAME_MAX + 1], ep[ENDPOINT_NAME_MAX + 1];
	int parts;
	if (endpoint_path_parse(argv[0], 3, ns, comp, ep, &parts) < 0)
		return cmd_usage_error(cmd.name, "%s", err_msg());
	if (*address && !endpoint_address_valid(address))
		return cmd_usage_error(cmd.name, "--address: '%s' is not HOST:PORT", address);

	struct caller c = { 0 };
	char path[3 * (ENDPOINT_NAME_MAX + 1)];
	snprintf(path, sizeof(path), "%s/%s/%s", ns, comp, ep);
	c.path = path;
	c.payload = nargs > 1 ? argv[1] : "{}";
	c.count_only = count_only;
	c.in_order = 1;
	c.status = -1;
	if (*instance) {
		char *end;
		errno = 0;
		c.instance = strtoull(instance, &end, 16);
		if (errno || *end || !*instance)
			return cmd_usage_error(cmd.name, "--instance: '%s' is not a hex instance id",
					       instance);
		c.want_instance = 1;
	}

	signal(SIGPIPE, SIG_IGN);
	struct event *timer = NULL, *sigint = NULL, *sigterm = NULL;
	c.wait_s = wait;
	c.base = event_base_new();
	if (!c.base)
		return cmd_fail(cmd.name, "cannot create event loop");
	rpc_client_new(c.base, NULL, &c.cli);
	sigint = evsignal_new(c.base, SIGINT, caller_signal, &c);
	sigterm = evsignal_new(c.base, SIGTERM, caller_signal, &c);
	evsignal_add(sigint, NULL);
	evsignal_add(sigterm, NULL);
	if (timeout > 0) {
		struct timeval tv = { (time_t)timeout,
				      (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6) };
		timer = evtimer_new(c.base, caller_timeout, &c);
		evtimer_add(timer, &tv);
	}
	if (*address) {
		caller_start(&c, address);
	} else {
		static const struct endpoint_watch_cbs wcbs = { caller_added, NULL, caller_synced };
		rc = store_open(*opt_store ? opt_store : store_default_url(), c.base, &c.store);
		if (rc < 0)
			c.status = cmd_store_fail(cmd.name, rc);
		else if (endpoint_watch(c.store, ns, comp, ep, &wcbs, &c, &c.watch) < 0)
			c.status = cmd_fail(cmd.name, "%s", err_msg());
	}
	if (c.status < 0)
		event_base_dispatch(c.base);
	if (c.st)
		rpc_stream_cancel(c.st);
	rpc_client_free(c.cli);	/* flushes a pending CANCEL */
	endpoint_watch_free(c.watch);
	if (c.store)
		store_close(c.store);
	if (timer)
		event_free(timer);
	if (c.wait_timer)
		event_free(c.wait_timer);
	event_free(sigint);
	event_free(sigterm);
	event_base_free(c.base);
	return c.status < 0 ? 1 : c.status;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static const struct cmd_verb verbs[] = {
	{ "serve", rpc_serve, "serve the echo and stream diagnostic endpoints" },
	{ "ls", rpc_ls, "list endpoint instances registered in the store" },
	{ "call", rpc_call_cmd, "call NS/COMP/EP and print the response frames" },
	{ "bench", rpc_bench, "measure round trips/s and frames/s against raw TCP" },
};

static void rpc_usage(FILE *out)
{
	fprintf(out, "usage: dyn rpc VERB [OPTIONS] [ARGS]\n\n"
		"Serve, list, call and benchmark request-plane endpoints.\n\nVerbs:\n");
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		fprintf(out, "  %-8s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(out, "\nRun 'dyn rpc VERB --help' for a verb's options; see dyn-rpc(1),\n"
		"which also documents the wire format.\n");
}

int cmd_rpc(int argc, char **argv)
{
	return cmd_dispatch_verbs("rpc", verbs, ARRAY_SIZE(verbs), rpc_usage, argc, argv);
}
