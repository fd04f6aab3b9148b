/*
 * rpc_diag.c - the diagnostic endpoints of "dyn rpc serve" (echo: the
 * payload back in one END frame; stream: N numbered DATA frames, stopping
 * at once on cancel) and the raw-TCP baseline server that "dyn rpc bench"
 * measures the request plane against.  The server process that bench
 * forks and "serve" use this same code.
 */
#include "cmd/cmd.h"
#include "cmd/rpc_int.h"
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

/* ---- the diagnostic endpoints ---------------------------------------------- */

void rpc_diag_echo(struct rpc_call *call, const void *payload, size_t len,
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
void rpc_diag_stream(struct rpc_call *call, const void *payload, size_t len,
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

void rpc_raw_hello(uint8_t h[16], uint32_t mode, uint32_t size, uint64_t count)
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
int rpc_raw_server_start(const char *host, int port, int *bound)
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

