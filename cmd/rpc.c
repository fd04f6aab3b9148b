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
 * The diagnostic handlers and the raw-TCP baseline server live here too:
 * "serve" and the server process that "bench" forks use the same code.
 */
#include "cmd/cmd.h"
#include "core/fsutil.h"
#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/frame.h"
#include "net/rpc.h"
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
/* Frames per loop turn before the stream producer yields to other work. */
#define STREAM_BATCH_FRAMES 4096
#define STREAM_BATCH_BYTES (256u << 10)
#define RAW_CHUNK (256u << 10)		/* raw baseline: bytes per send() */
#define RAW_MODE_ECHO 1
#define RAW_MODE_STREAM 2

/* ---- the diagnostic endpoints ---------------------------------------------- */

static void echo_handler(struct rpc_call *call, const void *payload, size_t len,
			 unsigned flags, void *arg)
{
	(void)arg;
	rpc_call_end(call, payload, len, flags);
}

/* One "stream" call in progress. */
struct stream_job {
	struct rpc_call *call;
	struct event *ev;	/* interval timer, or "continue" after a yield */
	long count, next, size, interval_ms;
	char *buf;		/* the frame being built */
	size_t tail_at;		/* where the ,"seq":N} tail was last written */
};

static void stream_job_free(struct stream_job *job)
{
	if (job->ev)
		event_free(job->ev);
	free(job->buf);
	free(job);
}

/*
 * Frame i: {"seq":i} or, padded to exactly `size` bytes,
 * {"pad":"xxxx...","seq":i}.  The padding is written once; only the tail
 * changes (and only grows, as i grows), so big frames cost no memset.
 * Sizes too small to pad give the short form.
 */
static void stream_job_init_buf(struct stream_job *job)
{
	job->buf = xmalloc((size_t)job->size + 32);
	if (job->size > 8) {
		memcpy(job->buf, "{\"pad\":\"", 8);
		memset(job->buf + 8, 'x', (size_t)job->size - 8);
	}
}

/* Decimal digits of v, right-aligned to end; returns the first digit. */
static char *put_decimal(char *end, unsigned long v)
{
	do {
		*--end = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return end;
}

static size_t stream_frame(struct stream_job *job, long seq)
{
	/* The tail '","seq":N}' built backwards, without printf: this runs
	 * millions of times a second. */
	char tail[40], *end = tail + sizeof(tail), *p = end;
	*--p = '}';
	p = put_decimal(p, (unsigned long)seq);
	p -= 8;
	memcpy(p, "\",\"seq\":", 8);
	size_t t = (size_t)(end - p);

	if ((size_t)job->size >= 8 + t) {
		memcpy(job->buf + job->size - t, p, t);
		return (size_t)job->size;
	}
	/* Too small to pad: {"seq":N} */
	p += 2;			/* drop the '",' that closed "pad" */
	*--p = '{';
	memcpy(job->buf, p, (size_t)(end - p));
	return (size_t)(end - p);
}

static void stream_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct stream_job *job = arg;
	LOG_INFO(LOG_MOD, "stream %" PRIu64 " stopped early after %ld of %ld frames (%s)",
		 rpc_call_id(call), job->next, job->count,
		 why == RPC_CANCEL_CLIENT ? "cancelled by the client"
		 : why == RPC_CANCEL_DISCONNECT ? "client disconnected"
						: "server stopping");
	stream_job_free(job);
	rpc_call_finish(call);
}

static void stream_produce(struct stream_job *job);

static void stream_drained(struct rpc_call *call, void *arg)
{
	(void)call;
	stream_produce(arg);
}

static void stream_event(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	stream_produce(arg);
}

static void stream_done(struct stream_job *job)
{
	LOG_DEBUG(LOG_MOD, "stream %" PRIu64 " finished: %ld frames",
		  rpc_call_id(job->call), job->count);
	rpc_call_end(job->call, NULL, 0, 0);
	stream_job_free(job);
}

/* Send what the pace and the connection allow, then arrange to go on. */
static void stream_produce(struct stream_job *job)
{
	if (job->interval_ms > 0) {
		if (job->next < job->count) {
			size_t len = stream_frame(job, job->next);
			if (rpc_call_send(job->call, job->buf, len, 0) < 0)
				LOG_WARN(LOG_MOD, "stream: %s", err_msg());
			job->next++;
		}
		if (job->next >= job->count)
			stream_done(job);
		return;
	}
	size_t batch_bytes = 0;
	for (int i = 0; i < STREAM_BATCH_FRAMES && batch_bytes < STREAM_BATCH_BYTES &&
			job->next < job->count && rpc_call_writable(job->call); i++) {
		size_t len = stream_frame(job, job->next);
		rpc_call_send(job->call, job->buf, len, 0);
		batch_bytes += len + FRAME_HEADER_SIZE;
		job->next++;
	}
	if (job->next >= job->count)
		stream_done(job);
	else if (!rpc_call_writable(job->call))
		rpc_call_on_drain(job->call, stream_drained, job);
	else
		event_active(job->ev, EV_TIMEOUT, 1);	/* yield to other work */
}

static long json_long(const cJSON *obj, const char *name, long def, int *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!v)
		return def;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1e15) {
		*bad = 1;
		return def;
	}
	return (long)v->valuedouble;
}

/* Request {"count":N,"size":BYTES,"interval_ms":T}, every field optional. */
static void stream_handler(struct rpc_call *call, const void *payload, size_t len,
			   unsigned flags, void *arg)
{
	struct event_base *base = arg;
	cJSON *req = NULL;
	int bad = 0;
	(void)flags;

	if (len) {
		req = cJSON_ParseWithLength(payload, len);
		if (!cJSON_IsObject(req)) {
			cJSON_Delete(req);
			rpc_call_error(call, FRAME_ERR_BAD_REQUEST,
				       "stream: request must be a JSON object like "
				       "{\"count\":N,\"size\":BYTES,\"interval_ms\":T}");
			return;
		}
	}
	struct stream_job *job = xcalloc(1, sizeof(*job));
	job->call = call;
	job->count = json_long(req, "count", 10, &bad);
	job->size = json_long(req, "size", 0, &bad);
	job->interval_ms = json_long(req, "interval_ms", 0, &bad);
	cJSON_Delete(req);
	if (bad || job->size > (long)FRAME_DEFAULT_MAX_PAYLOAD) {
		free(job);
		rpc_call_error(call, FRAME_ERR_BAD_REQUEST,
			       "stream: count, size (<= %u) and interval_ms must be "
			       "non-negative numbers", FRAME_DEFAULT_MAX_PAYLOAD);
		return;
	}
	stream_job_init_buf(job);
	rpc_call_on_cancel(call, stream_cancelled, job);
	LOG_DEBUG(LOG_MOD, "stream %" PRIu64 " from %s: %ld frames of %ld bytes every %ld ms",
		  rpc_call_id(call), rpc_call_peer(call), job->count, job->size,
		  job->interval_ms);
	if (job->interval_ms > 0) {
		struct timeval tv = { job->interval_ms / 1000, (job->interval_ms % 1000) * 1000 };
		job->ev = event_new(base, -1, EV_PERSIST, stream_event, job);
		event_add(job->ev, &tv);
	} else {
		job->ev = event_new(base, -1, 0, stream_event, job);
	}
	stream_produce(job);	/* the first frame at once */
}

/* ---- raw TCP baseline server (blocking, a thread per connection) ------------ */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static void raw_hello(uint8_t h[16], uint32_t mode, uint32_t size, uint64_t count)
{
	for (int i = 0; i < 4; i++) {
		h[i] = (uint8_t)(mode >> (8 * i));
		h[4 + i] = (uint8_t)(size >> (8 * i));
	}
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)(count >> (8 * i));
}

/* Hello (16 bytes: u32 mode, u32 size, u64 count), then echo SIZE-byte
 * messages until EOF, or send COUNT messages back to back. */
static void *raw_conn_thread(void *arg)
{
	int fd = (int)(intptr_t)arg, one = 1;
	uint8_t h[16];
	char *buf = NULL;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	while (fd_read_full(fd, h, sizeof(h)) == 0) {
		uint32_t mode = le32(h), size = le32(h + 4);
		uint64_t count = (uint64_t)le32(h + 8) | (uint64_t)le32(h + 12) << 32;
		if (size == 0 || size > (64u << 20))
			break;
		size_t chunk = size >= RAW_CHUNK ? size : (RAW_CHUNK / size) * size;
		free(buf);
		buf = xcalloc(1, chunk);
		if (mode == RAW_MODE_ECHO) {
			while (fd_read_full(fd, buf, size) == 0 && fd_write_all(fd, buf, size) == 0)
				;
			break;
		}
		if (mode != RAW_MODE_STREAM)
			break;
		uint64_t left = count * size;
		while (left) {
			size_t n = left < chunk ? (size_t)left : chunk;
			if (fd_write_all(fd, buf, n) < 0)
				break;
			left -= n;
		}
		if (left)
			break;
	}
	free(buf);
	close(fd);
	return NULL;
}

static void *raw_accept_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg;
	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL;
		}
		pthread_t t;
		if (pthread_create(&t, NULL, raw_conn_thread, (void *)(intptr_t)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
}

/* Listen on host:port (0 = any) in a background thread; *bound = port. */
static int raw_server_start(const char *host, int port, int *bound)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE |
				  AI_NUMERICSERV }, *res;
	char serv[16];
	snprintf(serv, sizeof(serv), "%d", port);
	int rc = getaddrinfo(host, serv, &hints, &res);
	if (rc)
		return err_set(-EINVAL, "raw server: cannot resolve %s: %s", host, gai_strerror(rc));
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 64) < 0) {
		int e = errno;
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return err_set(-e, "raw server: listen on %s:%d: %s", host, port, strerror(e));
	}
	freeaddrinfo(res);
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	pthread_t t;
	if (pthread_create(&t, NULL, raw_accept_thread, (void *)(intptr_t)fd) != 0) {
		close(fd);
		return err_set(-EAGAIN, "raw server: cannot start thread");
	}
	pthread_detach(t);
	return 0;
}

/* ---- dyn rpc serve ------------------------------------------------------------ */

static const char *opt_ns = "dyn";
static const char *opt_component = "rpc";
static const char *opt_store = "";

static int check_name(const char *cmd, const char *what, const char *name)
{
	if (endpoint_name_valid(name))
		return 0;
	return cmd_usage_error(cmd, "bad %s '%s' (1-%d characters of [A-Za-z0-9_.-])",
			       what, name, ENDPOINT_NAME_MAX);
}

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
		  "discovery store (file://DIR or sqlite://PATH; default: file://$XDG_RUNTIME_DIR/dyn)", 0, 0, NULL },
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
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs > 0)
		return cmd_usage_error(cmd.name, "unexpected argument '%s'", argv[0]);
	if (check_name(cmd.name, "namespace", opt_ns) || check_name(cmd.name, "component", opt_component))
		return EXIT_USAGE;

	struct runtime rt;
	struct rpc_server *srv = NULL;
	struct endpoint_service *echo = NULL, *stream = NULL;
	struct runtime_hooks hooks;
	int status = 1;

	if (runtime_init(&rt, (int64_t)(grace * 1000)) < 0 ||
	    runtime_open_store(&rt, opt_store, lease_ttl) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	rpc_server_new(rt.base, NULL, &srv);
	if (rpc_server_listen(srv, host, (int)port) < 0 ||
	    endpoint_serve(&rt, srv, opt_ns, opt_component, "echo", echo_handler, NULL,
			   NULL, &echo) < 0 ||
	    endpoint_serve(&rt, srv, opt_ns, opt_component, "stream", stream_handler,
			   rt.base, NULL, &stream) < 0) {
		cmd_fail(cmd.name, "%s", err_msg());
		goto out;
	}
	rpc_server_hooks(srv, &hooks);
	runtime_add_hooks(&rt, &hooks);
	if (raw_port >= 0) {
		int bound;
		if (raw_server_start(host, (int)raw_port, &bound) < 0) {
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

static int rpc_ls(int argc, char **argv)
{
	int json = 0;
	const struct opt opts[] = {
		{ "store", OPT_STRING, &opt_store, "URL", "discovery store URL", 0, 0, NULL },
		{ "json", OPT_BOOL, &json, NULL, "print the records as JSON lines", 0, 0, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"rpc ls", "[OPTIONS] [NAMESPACE[/COMPONENT[/ENDPOINT]]]",
		"List the endpoint instances registered in the store.", NULL, opts,
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
	if (store_open(*opt_store ? opt_store : store_default_url(), NULL, &st) < 0)
		return cmd_fail(cmd.name, "%s", err_msg());
	rc = endpoint_list(st, path, &v, &n);
	store_close(st);
	if (rc < 0)
		return cmd_fail(cmd.name, "%s", err_msg());
	if (!json && n)
		printf("%-40s %-16s %-24s %s\n", "ENDPOINT", "INSTANCE", "ADDRESS", "PID");
	for (size_t i = 0; i < n; i++) {
		if (json)
			printf("{\"endpoint\":\"%s\",\"instance_id\":\"%016" PRIx64
			       "\",\"address\":\"%s\",\"transport\":\"%s\",\"pid\":%ld,"
			       "\"metadata\":%s}\n", v[i].path, v[i].id, v[i].address,
			       v[i].transport, v[i].pid, v[i].metadata);
		else
			printf("%-40s %016" PRIx64 " %-24s %ld\n", v[i].path, v[i].id,
			       v[i].address, v[i].pid);
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

static void caller_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct caller *c = arg;
	(void)fd;
	(void)what;
	if (c->st) {
		rpc_stream_cancel(c->st);
		c->st = NULL;
		if (c->count_only)
			printf("%ld frames, %s\n", c->frames,
			       c->in_order ? "in order" : "out of order");
		fprintf(stderr, "dyn rpc call: %s: timed out; stream cancelled after %ld frames\n",
			c->path, c->frames);
	} else if (!c->started) {
		fprintf(stderr, "dyn rpc call: no instance of %s found before --timeout\n",
			c->path);
	} else {
		fprintf(stderr, "dyn rpc call: %s: timed out\n", c->path);
	}
	caller_finish(c, 1);
}

static void caller_signal(evutil_socket_t sig, short what, void *arg)
{
	struct caller *c = arg;
	(void)what;
	if (c->st) {
		rpc_stream_cancel(c->st);
		c->st = NULL;
		if (c->count_only)
			printf("%ld frames, %s\n", c->frames,
			       c->in_order ? "in order" : "out of order");
		fprintf(stderr, "dyn rpc call: %s: interrupted; stream cancelled after %ld frames\n",
			c->path, c->frames);
	}
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
		if (store_open(*opt_store ? opt_store : store_default_url(), c.base, &c.store) < 0 ||
		    endpoint_watch(c.store, ns, comp, ep, &wcbs, &c, &c.watch) < 0) {
			fprintf(stderr, "dyn rpc call: %s\n", err_msg());
			c.status = 1;
		}
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

/* ---- dyn rpc bench ---------------------------------------------------------------- */

struct bench {
	struct event_base *base;
	struct rpc_client *cli;
	const char *address;
	char echo_ep[160], stream_ep[160];
	char *payload;
	size_t size;
	long frames_per_call;
	uint64_t end_ns;
	long count;		/* round trips or frames */
	int failed, done;
	char error[256];
	struct rpc_stream *st;
	char request[128];
};

static void bench_stop(struct bench *b)
{
	b->done = 1;
	event_base_loopbreak(b->base);
}

static void bench_fail(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct bench *b = arg;
	(void)st;
	b->st = NULL;
	b->failed = 1;
	snprintf(b->error, sizeof(b->error), "%s (%d)", msg, code);
	bench_stop(b);
}

static void bench_echo_issue(struct bench *b);

static void bench_echo_end(struct rpc_stream *st, const void *d, size_t len, unsigned flags,
			   void *arg)
{
	struct bench *b = arg;
	(void)st;
	(void)d;
	(void)flags;
	if (len != b->size) {
		b->failed = 1;
		snprintf(b->error, sizeof(b->error), "echo returned %zu bytes, sent %zu",
			 len, b->size);
		bench_stop(b);
		return;
	}
	b->count++;
	if (mono_ns() >= b->end_ns)
		bench_stop(b);
	else
		bench_echo_issue(b);
}

static void bench_echo_issue(struct bench *b)
{
	static const struct rpc_stream_cbs cbs = { NULL, bench_echo_end, bench_fail };
	if (rpc_call(b->cli, b->address, b->echo_ep, b->payload, b->size, FRAME_FLAG_BINARY,
		     &cbs, b, NULL) < 0) {
		b->failed = 1;
		snprintf(b->error, sizeof(b->error), "%s", err_msg());
		bench_stop(b);
	}
}

static void bench_stream_issue(struct bench *b);

static void bench_stream_data(struct rpc_stream *st, const void *d, size_t len,
			      unsigned flags, void *arg)
{
	struct bench *b = arg;
	(void)d;
	(void)flags;
	if (len != b->size && b->size >= 40) {
		b->failed = 1;
		snprintf(b->error, sizeof(b->error), "frame of %zu bytes, expected %zu", len,
			 b->size);
	}
	if ((++b->count & 255) == 0 && (b->failed || mono_ns() >= b->end_ns)) {
		rpc_stream_cancel(st);
		b->st = NULL;
		bench_stop(b);
	}
}

static void bench_stream_end(struct rpc_stream *st, const void *d, size_t len,
			     unsigned flags, void *arg)
{
	struct bench *b = arg;
	(void)st;
	(void)d;
	(void)len;
	(void)flags;
	b->st = NULL;
	if (mono_ns() >= b->end_ns)
		bench_stop(b);
	else
		bench_stream_issue(b);
}

static void bench_stream_issue(struct bench *b)
{
	static const struct rpc_stream_cbs cbs = { bench_stream_data, bench_stream_end,
						   bench_fail };
	if (rpc_call(b->cli, b->address, b->stream_ep, b->request, strlen(b->request), 0,
		     &cbs, b, &b->st) < 0) {
		b->failed = 1;
		snprintf(b->error, sizeof(b->error), "%s", err_msg());
		bench_stop(b);
	}
}

/* Run one measurement for `seconds`; returns the rate per second or -1. */
static double bench_rpc(struct bench *b, int stream, double seconds, long *ops)
{
	uint64_t start = mono_ns();
	b->count = 0;
	b->failed = b->done = 0;
	b->end_ns = start + (uint64_t)(seconds * 1e9);
	snprintf(b->request, sizeof(b->request), "{\"count\":%ld,\"size\":%zu}",
		 b->frames_per_call, b->size);
	if (stream)
		bench_stream_issue(b);
	else
		bench_echo_issue(b);
	while (!b->done)
		event_base_loop(b->base, EVLOOP_ONCE);
	*ops = b->count;
	if (b->failed)
		return -1;
	return (double)b->count / ((double)(mono_ns() - start) / 1e9);
}

static int raw_connect(const char *address)
{
	char host[256];
	const char *colon = strrchr(address, ':');
	if (!colon || (size_t)(colon - address) >= sizeof(host))
		return err_set(-EINVAL, "bad address '%s'", address);
	memcpy(host, address, (size_t)(colon - address));
	host[colon - address] = '\0';
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV }, *res;
	if (getaddrinfo(host, colon + 1, &hints, &res))
		return err_set(-EINVAL, "cannot resolve '%s'", address);
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen) < 0) {
		int e = errno;
		freeaddrinfo(res);
		if (fd >= 0)
			close(fd);
		return err_set(-e, "connect to %s: %s", address, strerror(e));
	}
	freeaddrinfo(res);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

/* The same two measurements over a bare TCP connection. */
static double bench_raw(const char *address, int stream, size_t size, long frames,
			double seconds, long *ops)
{
	uint64_t start = mono_ns(), end = start + (uint64_t)(seconds * 1e9);
	size_t chunk = size >= RAW_CHUNK ? size : (RAW_CHUNK / size) * size;
	char *buf = xcalloc(1, chunk);
	uint8_t h[16];
	long count = 0;
	int fd = raw_connect(address);

	if (fd < 0) {
		free(buf);
		return -1;
	}
	if (!stream) {
		raw_hello(h, RAW_MODE_ECHO, (uint32_t)size, 0);
		if (fd_write_all(fd, h, sizeof(h)) < 0)
			goto fail;
		while (mono_ns() < end) {
			if (fd_write_all(fd, buf, size) < 0 || fd_read_full(fd, buf, size) < 0)
				goto fail;
			count++;
		}
	} else {
		while (mono_ns() < end) {
			raw_hello(h, RAW_MODE_STREAM, (uint32_t)size, (uint64_t)frames);
			if (fd_write_all(fd, h, sizeof(h)) < 0)
				goto fail;
			uint64_t left = (uint64_t)frames * size, got = 0;
			while (left) {
				ssize_t n = recv(fd, buf, left < chunk ? (size_t)left : chunk, 0);
				if (n <= 0)
					goto fail;
				left -= (uint64_t)n;
				got += (uint64_t)n;
				if (mono_ns() >= end)
					break;
			}
			count += (long)(got / size);
			if (left)
				break;	/* time is up mid-stream: drop the connection */
		}
	}
	close(fd);
	free(buf);
	*ops = count;
	return (double)count / ((double)(mono_ns() - start) / 1e9);
fail:
	err_set(-EIO, "raw tcp baseline at %s failed", address);
	close(fd);
	free(buf);
	return -1;
}

static void bench_child_exit(evutil_socket_t fd, short what, void *arg)
{
	char c;
	(void)what;
	if (read(fd, &c, 1) <= 0)
		event_base_loopbreak(arg);
}

/* The forked server process: RPC + raw baseline; reports both ports on
 * report_fd; exits when life_fd reaches EOF (the parent went away). */
static void bench_server_child(int report_fd, int life_fd)
{
	struct event_base *base = event_base_new();
	struct rpc_server *srv;
	char ep[160];
	int raw_port = 0;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	/* Keep the table readable: the server's per-stream notes only with DYN_LOG. */
	if (!getenv("DYN_LOG"))
		log_configure("warn", getenv("DYN_LOG_FORMAT"));
	rpc_server_new(base, NULL, &srv);
	snprintf(ep, sizeof(ep), "%s/%s/echo", opt_ns, opt_component);
	rpc_server_handle(srv, ep, echo_handler, NULL);
	snprintf(ep, sizeof(ep), "%s/%s/stream", opt_ns, opt_component);
	rpc_server_handle(srv, ep, stream_handler, base);
	if (rpc_server_listen(srv, "127.0.0.1", 0) < 0 ||
	    raw_server_start("127.0.0.1", 0, &raw_port) < 0) {
		dprintf(report_fd, "error %s\n", err_msg());
		_exit(1);
	}
	dprintf(report_fd, "%d %d\n", rpc_server_port(srv), raw_port);
	close(report_fd);
	struct event *life = event_new(base, life_fd, EV_READ | EV_PERSIST, bench_child_exit, base);
	event_add(life, NULL);
	event_base_dispatch(base);
	_exit(0);
}

/* CPU seconds (user + system) used so far by this process plus, if
 * known, the forked server process (from /proc; clock-tick resolution). */
static double cpu_seconds(pid_t child)
{
	struct rusage ru;
	double t = 0;

	if (getrusage(RUSAGE_SELF, &ru) == 0)
		t = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
		    (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	if (child > 0) {
		char path[64], buf[1024];
		unsigned long ut = 0, st = 0;
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
		FILE *f = fopen(path, "r");
		if (f) {
			size_t n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = '\0';
			fclose(f);
			const char *p = strrchr(buf, ')');
			if (p && sscanf(p, ") %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
					&ut, &st) == 2)
				t += (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
		}
	}
	return t;
}

static void fmt_rate(char *buf, size_t size, double v)
{
	if (v == -2)
		snprintf(buf, size, "-");
	else if (v < 0)
		snprintf(buf, size, "failed");
	else if (v >= 1e6)
		snprintf(buf, size, "%.2fM", v / 1e6);
	else if (v >= 1e4)
		snprintf(buf, size, "%.1fk", v / 1e3);
	else
		snprintf(buf, size, "%.0f", v);
}

static void fmt_size(char *buf, size_t size, size_t bytes)
{
	if (bytes >= 1024 && bytes % 1024 == 0)
		snprintf(buf, size, "%zu KiB", bytes / 1024);
	else
		snprintf(buf, size, "%zu B", bytes);
}

static int rpc_bench(int argc, char **argv)
{
	long size = 0, frames = 100000, rounds = 3;
	double duration = 1.0;
	const char *address = "", *raw_address = "";
	const struct opt opts[] = {
		{ "size", OPT_INT, &size, "BYTES",
		  "measure only this payload size (default: 64, 1024 and 65536)", 0, 16 << 20, NULL },
		{ "frames", OPT_INT, &frames, "N", "frames per streaming call", 1, 1e9, NULL },
		{ "rounds", OPT_INT, &rounds, "N",
		  "split each measurement into N interleaved rounds; report the best", 1, 100, NULL },
		{ "duration", OPT_DOUBLE, &duration, "SECONDS", "length of each measurement",
		  0.05, 600, NULL },
		{ "address", OPT_STRING, &address, "HOST:PORT",
		  "measure a running 'dyn rpc serve' instead of a forked server", 0, 0, NULL },
		{ "raw-address", OPT_STRING, &raw_address, "HOST:PORT",
		  "raw TCP baseline of that server ('dyn rpc serve --raw-port')", 0, 0, NULL },
		{ "namespace", OPT_STRING, &opt_ns, "NS", "namespace of the echo/stream endpoints", 0, 0, NULL },
		{ "component", OPT_STRING, &opt_component, "NAME", "their component", 0, 0, NULL },
		{ 0 },
	};
	const struct opt_cmd cmd = {
		"rpc bench", "[OPTIONS]",
		"Measure request round trips/s and streamed frames/s against raw TCP.",
		"Without --address, a server process is forked on 127.0.0.1.  For each\n"
		"payload size the same run measures: echo calls one at a time (round\n"
		"trips/s), streaming calls of --frames DATA frames (frames/s), and the\n"
		"same over a bare TCP connection: SIZE bytes echoed back, and a stream of\n"
		"SIZE-byte messages written back to back in 256 KiB send() calls.",
		opts,
	};
	int nargs, rc = cmd_options(&cmd, argc, argv, &nargs);
	if (rc >= 0)
		return rc;
	if (nargs)
		return cmd_usage_error(cmd.name, "unexpected argument '%s'", argv[0]);
	if (check_name(cmd.name, "namespace", opt_ns) || check_name(cmd.name, "component", opt_component))
		return EXIT_USAGE;

	char rpc_addr[300], raw_addr[300];
	pid_t child = -1;
	int life[2] = { -1, -1 };
	signal(SIGPIPE, SIG_IGN);
	if (!*address) {
		int report[2];
		if (pipe(report) < 0 || pipe(life) < 0)
			return cmd_fail(cmd.name, "pipe: %s", strerror(errno));
		child = fork();
		if (child < 0)
			return cmd_fail(cmd.name, "fork: %s", strerror(errno));
		if (child == 0) {
			close(report[0]);
			close(life[1]);
			bench_server_child(report[1], life[0]);
		}
		close(report[1]);
		close(life[0]);
		char line[512] = "";
		FILE *f = fdopen(report[0], "r");
		int rpc_port = 0, raw_port = 0;
		if (!f || !fgets(line, sizeof(line), f) ||
		    sscanf(line, "%d %d", &rpc_port, &raw_port) != 2) {
			if (f)
				fclose(f);
			close(life[1]);
			waitpid(child, NULL, 0);
			return cmd_fail(cmd.name, "server process failed: %s", line);
		}
		fclose(f);
		snprintf(rpc_addr, sizeof(rpc_addr), "127.0.0.1:%d", rpc_port);
		snprintf(raw_addr, sizeof(raw_addr), "127.0.0.1:%d", raw_port);
	} else {
		snprintf(rpc_addr, sizeof(rpc_addr), "%s", address);
		snprintf(raw_addr, sizeof(raw_addr), "%s", raw_address);
	}

	struct bench b = { 0 };
	b.base = event_base_new();
	rpc_client_new(b.base, NULL, &b.cli);
	b.address = rpc_addr;
	b.frames_per_call = frames;
	snprintf(b.echo_ep, sizeof(b.echo_ep), "%s/%s/echo", opt_ns, opt_component);
	snprintf(b.stream_ep, sizeof(b.stream_ep), "%s/%s/stream", opt_ns, opt_component);

	size_t sizes[3] = { 64, 1024, 65536 }, nsizes = 3;
	if (size > 0) {
		sizes[0] = (size_t)size;
		nsizes = 1;
	}
	printf("rpc bench: rpc %s, raw tcp %s; %.2f s per measurement in %ld rounds (best "
	       "shown); streams of %ld frames\n", rpc_addr, *raw_addr ? raw_addr : "(none)",
	       duration, rounds, frames);
	printf("%-9s | %-29s | %s\n", "", "round trips/s (one in flight)",
	       "streamed frames/s");
	printf("%-9s | %9s %9s %9s | %9s %9s %9s\n", "payload", "rpc", "raw tcp", "ratio",
	       "rpc", "raw tcp", "ratio");
	int status = 0;
	double cpu_us[3][4];
	for (size_t i = 0; i < nsizes; i++) {
		double r[4] = { 0, 0, 0, 0 };
		int failed[4] = { 0, 0, 0, 0 };
		b.size = sizes[i];
		free(b.payload);
		b.payload = xmalloc(b.size);
		memset(b.payload, 'x', b.size);
		long ops;
		double cpu[4] = { 0, 0, 0, 0 };
		long nops[4] = { 0, 0, 0, 0 };
		/* Warm up the connection, allocator and caches. */
		bench_rpc(&b, 0, duration / 10, &ops);
		/* Interleave the four measurements in rounds and keep each one's
		 * best, so that load from elsewhere on the machine skews the
		 * ratios less than one long run of each would. */
		for (long round = 0; round < rounds; round++) {
			double slice = duration / (double)rounds, v;
			for (int k = 0; k < 4; k++) {
				if (failed[k] || ((k & 1) && !*raw_addr))
					continue;
				double cpu0 = cpu_seconds(child);
				ops = 0;
				v = k & 1 ? bench_raw(raw_addr, k == 3, b.size, frames, slice, &ops)
					  : bench_rpc(&b, k == 2, slice, &ops);
				cpu[k] += cpu_seconds(child) - cpu0;
				nops[k] += ops;
				if (v < 0) {
					failed[k] = 1;
					fprintf(stderr, "dyn rpc bench: %s %s: %s\n",
						k & 1 ? "raw tcp" : "rpc", k >= 2 ? "stream" : "echo",
						k & 1 ? err_msg() : b.error);
				} else if (v > r[k]) {
					r[k] = v;
				}
			}
		}
		for (int k = 0; k < 4; k++) {
			if (failed[k])
				r[k] = -1;
			else if ((k & 1) && !*raw_addr)
				r[k] = -2;	/* not measured */
		}
		if (failed[0] || failed[1] || failed[2] || failed[3])
			status = 1;
		for (int k = 0; k < 4; k++)
			cpu_us[i][k] = r[k] > 0 && nops[k] > 0 ? cpu[k] * 1e6 / (double)nops[k] : -1;
		char s[32], a[32], bb[32], c[32], d[32], ra[32], rb[32];
		fmt_size(s, sizeof(s), b.size);
		fmt_rate(a, sizeof(a), r[0]);
		fmt_rate(bb, sizeof(bb), r[1]);
		fmt_rate(c, sizeof(c), r[2]);
		fmt_rate(d, sizeof(d), r[3]);
		snprintf(ra, sizeof(ra), r[0] > 0 && r[1] > 0 ? "%.2fx" : "-", r[0] / r[1]);
		snprintf(rb, sizeof(rb), r[2] > 0 && r[3] > 0 ? "%.2fx" : "-", r[2] / r[3]);
		printf("%-9s | %9s %9s %9s | %9s %9s %9s\n", s, a, bb, ra, c, d, rb);
	}
	if (child > 0) {
		/* CPU time is what load from other processes does not distort:
		 * the cost of each operation to both processes together. */
		printf("\nCPU time per operation, client + server process (us; lower is better)\n");
		printf("%-9s | %9s %9s %9s | %9s %9s %9s\n", "payload", "rpc echo", "raw echo",
		       "rpc/raw", "rpc frame", "raw frame", "rpc/raw");
		for (size_t i = 0; i < nsizes; i++) {
			char s[32], v[4][32], ra[32], rb[32];
			fmt_size(s, sizeof(s), sizes[i]);
			for (int k = 0; k < 4; k++)
				snprintf(v[k], sizeof(v[k]), cpu_us[i][k] < 0 ? "-" : "%.2f",
					 cpu_us[i][k]);
			snprintf(ra, sizeof(ra), cpu_us[i][0] > 0 && cpu_us[i][1] > 0 ? "%.2fx" : "-",
				 cpu_us[i][0] / cpu_us[i][1]);
			snprintf(rb, sizeof(rb), cpu_us[i][2] > 0 && cpu_us[i][3] > 0 ? "%.2fx" : "-",
				 cpu_us[i][2] / cpu_us[i][3]);
			printf("%-9s | %9s %9s %9s | %9s %9s %9s\n", s, v[0], v[1], ra, v[2], v[3], rb);
		}
	}
	free(b.payload);
	rpc_client_free(b.cli);
	event_base_free(b.base);
	if (child > 0) {
		close(life[1]);
		waitpid(child, NULL, 0);
	}
	return status;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *summary;
} verbs[] = {
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
	if (argc < 2) {
		rpc_usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		rpc_usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(argc - 1, argv + 1);
	const char *names[ARRAY_SIZE(verbs) + 1];
	for (size_t i = 0; i < ARRAY_SIZE(verbs); i++)
		names[i] = verbs[i].name;
	names[ARRAY_SIZE(verbs)] = NULL;
	const char *near = str_closest(argv[1], names);
	if (near)
		return cmd_usage_error("rpc", "'%s' is not an rpc verb (did you mean '%s'?)",
				       argv[1], near);
	return cmd_usage_error("rpc", "'%s' is not an rpc verb (see 'dyn rpc --help')", argv[1]);
}
