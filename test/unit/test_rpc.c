/*
 * test_rpc.c - request-plane server and client (net/rpc.h) in one process
 * on 127.0.0.1, one event loop.  Misbehaving peers are played by raw
 * sockets that write bytes laid out by hand from dyn-rpc(1).
 */
#include "check.h"
#include "core/err.h"
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
#include <fcntl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- loop helpers --------------------------------------------------- */

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Run base until *flag is non-zero or ms pass; returns *flag. */
static int run_until(struct event_base *base, const int *flag, int ms)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	uint64_t end = mono_ms() + (uint64_t)ms;
	event_add(t, &tv);
	while (!*flag && mono_ms() < end)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *flag;
}

static void run_for(struct event_base *base, int ms)
{
	int never = 0;
	run_until(base, &never, ms);
}

/* ---- server-side handlers -------------------------------------------- */

static void echo_handler(struct rpc_call *call, const void *p, size_t len,
			 unsigned flags, void *arg)
{
	(void)arg;
	rpc_call_end(call, p, len, flags);
}

/* A producer of "count" frames {"seq":N}; obeys backpressure, or ticks
 * one frame per timer when interval_ms > 0. */
struct producer {
	struct rpc_call *call;
	struct event *timer;
	long count, next, size;
	int cancelled;		/* saw on_cancel */
	enum rpc_cancel_reason why;
	int done;
	size_t max_buffered;
};

static struct producer *last_producer;

static void producer_stop(struct producer *p)
{
	if (p->timer)
		event_free(p->timer);
	p->timer = NULL;
	p->done = 1;
}

static void producer_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct producer *p = arg;
	p->cancelled = 1;
	p->why = why;
	producer_stop(p);
	rpc_call_finish(call);
	p->call = NULL;
}

static void produce(struct producer *p);

static void producer_drained(struct rpc_call *call, void *arg)
{
	(void)call;
	produce(arg);
}

static void produce_one(struct producer *p)
{
	char buf[70000];
	int n = snprintf(buf, sizeof(buf), "{\"seq\":%ld", p->next);
	if (p->size > n + 1) {
		memset(buf + n, ' ', (size_t)(p->size - n - 1));
		n = (int)p->size - 1;
	}
	buf[n++] = '}';
	CHECK_INT(rpc_call_send(p->call, buf, (size_t)n, 0), 0);
	p->next++;
	if (rpc_call_buffered(p->call) > p->max_buffered)
		p->max_buffered = rpc_call_buffered(p->call);
}

static void produce(struct producer *p)
{
	while (p->next < p->count && rpc_call_writable(p->call))
		produce_one(p);
	if (p->next == p->count) {
		rpc_call_end(p->call, NULL, 0, 0);
		p->call = NULL;
		producer_stop(p);
	} else {
		rpc_call_on_drain(p->call, producer_drained, p);
	}
}

static void producer_tick(evutil_socket_t fd, short what, void *arg)
{
	struct producer *p = arg;
	(void)fd;
	(void)what;
	produce_one(p);
	if (p->next == p->count) {
		rpc_call_end(p->call, NULL, 0, 0);
		p->call = NULL;
		producer_stop(p);
	}
}

static struct event_base *test_base;

/* Request: "COUNT[,INTERVAL_MS[,SIZE]]" (plain text keeps the test
 * independent of any JSON code). */
static void stream_handler(struct rpc_call *call, const void *payload, size_t len,
			   unsigned flags, void *arg)
{
	char req[64];
	long interval = 0;
	struct producer *p = xcalloc(1, sizeof(*p));
	(void)flags;
	(void)arg;

	snprintf(req, sizeof(req), "%.*s", (int)len, (const char *)payload);
	p->call = call;
	sscanf(req, "%ld,%ld,%ld", &p->count, &interval, &p->size);
	if (last_producer)
		free(last_producer);
	last_producer = p;
	rpc_call_on_cancel(call, producer_cancelled, p);
	if (interval > 0) {
		struct timeval tv = { 0, interval * 1000 };
		p->timer = event_new(test_base, -1, EV_PERSIST, producer_tick, p);
		event_add(p->timer, &tv);
	} else {
		produce(p);
	}
}

/* Never answers on its own: finishes only when cancelled. */
static struct rpc_call *held_call;
static int held_cancelled;
static enum rpc_cancel_reason held_why;

static void held_on_cancel(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	(void)arg;
	held_cancelled = 1;
	held_why = why;
	rpc_call_finish(call);
	held_call = NULL;
}

static void hold_handler(struct rpc_call *call, const void *p, size_t len,
			 unsigned flags, void *arg)
{
	(void)p;
	(void)len;
	(void)flags;
	(void)arg;
	held_call = call;
	rpc_call_on_cancel(call, held_on_cancel, NULL);
}

/* ---- fixture ---------------------------------------------------------- */

static struct rpc_server *srv;
static struct rpc_client *cli;
static char addr[64];

static void setup(const struct rpc_server_opts *so, const struct rpc_client_opts *co)
{
	test_base = event_base_new();
	CHECK(test_base != NULL);
	CHECK_INT(rpc_server_new(test_base, so, &srv), 0);
	CHECK_INT(rpc_server_handle(srv, "t/c/echo", echo_handler, NULL), 0);
	CHECK_INT(rpc_server_handle(srv, "t/c/stream", stream_handler, NULL), 0);
	CHECK_INT(rpc_server_handle(srv, "t/c/hold", hold_handler, NULL), 0);
	CHECK_INT(rpc_server_handle(srv, "t/c/echo", echo_handler, NULL), -EEXIST);
	CHECK_INT(rpc_server_listen(srv, "127.0.0.1", 0), 0);
	CHECK(rpc_server_port(srv) > 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rpc_server_port(srv));
	CHECK_STR(rpc_server_address(srv), addr);
	CHECK_INT(rpc_client_new(test_base, co, &cli), 0);
	held_call = NULL;
	held_cancelled = 0;
}

static void teardown(void)
{
	rpc_client_free(cli);
	rpc_server_free(srv);
	cli = NULL;
	srv = NULL;
	free(last_producer);
	last_producer = NULL;
	event_base_free(test_base);
	test_base = NULL;
}

/* ---- client-side recorder --------------------------------------------- */

struct recorder {
	long frames;
	long next_seq;		/* expected next sequence number */
	int in_order;
	int ended, failed, code;
	char msg[256];
	struct strbuf last;	/* last DATA or END payload */
	long cancel_after;	/* cancel the stream after this many frames */
	struct rpc_stream *st;
};

static void rec_init(struct recorder *r)
{
	memset(r, 0, sizeof(*r));
	r->in_order = 1;
	sb_init(&r->last, 0);
}

static void rec_data(struct rpc_stream *st, const void *d, size_t len, unsigned flags,
		     void *arg)
{
	struct recorder *r = arg;
	long seq = -1;
	(void)flags;
	sb_reset(&r->last);
	sb_add(&r->last, d, len);
	if (sscanf(r->last.buf, "{\"seq\":%ld", &seq) != 1 || seq != r->next_seq)
		r->in_order = 0;
	r->next_seq++;
	r->frames++;
	if (r->cancel_after && r->frames == r->cancel_after) {
		rpc_stream_cancel(st);
		r->ended = -1;	/* "done" for run_until */
	}
}

static void rec_end(struct rpc_stream *st, const void *d, size_t len, unsigned flags,
		    void *arg)
{
	struct recorder *r = arg;
	(void)st;
	(void)flags;
	sb_reset(&r->last);
	sb_add(&r->last, d, len);
	r->ended = 1;
}

static void rec_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct recorder *r = arg;
	(void)st;
	r->failed = 1;
	r->code = code;
	snprintf(r->msg, sizeof(r->msg), "%s", msg);
}

static const struct rpc_stream_cbs rec_cbs = { rec_data, rec_end, rec_error };

static int rec_done(const struct recorder *r)
{
	return r->ended || r->failed;
}

/* Wait on a recorder: run until it ended or failed. */
static int wait_rec(struct recorder *r, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;
	while (!rec_done(r) && mono_ms() < end) {
		int f = 0;
		run_until(test_base, &f, 5);
	}
	return rec_done(r);
}

/* ---- raw sockets ------------------------------------------------------ */

static int raw_connect(int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return -1;
	return fd;
}

/* A REQUEST frame laid out by hand from the man page. */
static size_t raw_request(uint8_t *out, uint64_t id, const char *ep, const char *body)
{
	size_t nl = strlen(ep), bl = strlen(body), len = nl + bl;
	memset(out, 0, 24);
	out[0] = 'D';
	out[1] = 'Y';
	out[2] = 1;
	out[3] = 1;	/* REQUEST */
	for (int i = 0; i < 8; i++)
		out[8 + i] = (uint8_t)(id >> (8 * i));
	for (int i = 0; i < 4; i++) {
		out[16 + i] = (uint8_t)(len >> (8 * i));
		out[20 + i] = (uint8_t)(nl >> (8 * i));
	}
	memcpy(out + 24, ep, nl);
	memcpy(out + 24 + nl, body, bl);
	return 24 + len;
}

/* Has the peer closed fd (EOF/RST seen without blocking)? */
static int raw_closed(int fd)
{
	char buf[65536];
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0)
			return 1;
		if (n < 0)
			return errno != EAGAIN && errno != EWOULDBLOCK;
	}
}

/* ---- tests ------------------------------------------------------------ */

TEST(echo_round_trip)
{
	struct recorder r;
	setup(NULL, NULL);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{\"hello\":\"world\"}", 17, 0, &rec_cbs,
			   &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_MSG(r.ended == 1, "echo failed: %d %s", r.code, r.msg);
	CHECK_INT(r.frames, 0);
	CHECK_STR(r.last.buf, "{\"hello\":\"world\"}");
	CHECK_INT(rpc_server_in_flight(srv), 0);
	sb_release(&r.last);
	teardown();
}

/* Big frames take the no-copy write path when the connection is idle
 * and the queued path otherwise: both must deliver every byte. */
static void check_large_payloads(void)
{
	enum { N = 6 };
	static struct recorder r[N];
	size_t sizes[N] = { 32u << 10, 65536, 200000, 1u << 20, 3u << 20, 100 };
	setup(NULL, NULL);
	char *big = xmalloc(3u << 20);
	for (size_t i = 0; i < (3u << 20); i++)
		big[i] = (char)(i * 131 + (i >> 12));
	for (int i = 0; i < N; i++) {
		rec_init(&r[i]);
		CHECK_INT(rpc_call(cli, addr, "t/c/echo", big + i, sizes[i] - (size_t)i,
				   FRAME_FLAG_BINARY, &rec_cbs, &r[i], NULL), 0);
	}
	for (int i = 0; i < N; i++) {
		CHECK(wait_rec(&r[i], 5000));
		CHECK_MSG(r[i].ended == 1, "call %d failed: %d %s", i, r[i].code, r[i].msg);
		CHECK_INT(r[i].last.len, sizes[i] - (size_t)i);
		CHECK(memcmp(r[i].last.buf, big + i, r[i].last.len) == 0);
		sb_release(&r[i].last);
	}
	/* One at a time: always the direct path. */
	for (int i = 0; i < 3; i++) {
		rec_init(&r[0]);
		CHECK_INT(rpc_call(cli, addr, "t/c/echo", big + 7, 500000, FRAME_FLAG_BINARY,
				   &rec_cbs, &r[0], NULL), 0);
		CHECK(wait_rec(&r[0], 5000));
		CHECK_INT(r[0].ended, 1);
		CHECK_INT(r[0].last.len, 500000);
		CHECK(memcmp(r[0].last.buf, big + 7, 500000) == 0);
		sb_release(&r[0].last);
	}
	free(big);
	teardown();
}

TEST(large_payloads_round_trip_intact)
{
	check_large_payloads();
}

TEST(unknown_endpoint_is_404)
{
	struct recorder r;
	setup(NULL, NULL);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/nope", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, 404);
	CHECK(strstr(r.msg, "t/c/nope") != NULL);
	sb_release(&r.last);
	teardown();
}

static void check_stream_10000(void)
{
	struct recorder r;
	struct rpc_server_opts so = { .high_water = 64 << 10 };
	setup(&so, NULL);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "10000", 5, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 10000));
	CHECK_MSG(r.ended == 1, "stream failed: %d %s", r.code, r.msg);
	CHECK_INT(r.frames, 10000);
	CHECK(r.in_order);
	CHECK_INT(rpc_server_in_flight(srv), 0);
	sb_release(&r.last);
	teardown();
}

TEST(stream_10000_frames_in_order)
{
	check_stream_10000();
}

TEST(backpressure_bounds_output)
{
	/* A client that never reads: the producer must stop at the high-water
	 * mark instead of buffering 10,000 x 64 KiB. */
	struct rpc_server_opts so = { .high_water = 1 << 20 };
	uint8_t req[128];
	setup(&so, NULL);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	size_t n = raw_request(req, 1, "t/c/stream", "10000,0,65536");
	CHECK_INT(write(fd, req, n), (long)n);
	run_for(test_base, 300);
	CHECK(last_producer != NULL);
	CHECK(!last_producer->done);
	CHECK_MSG(last_producer->next < 200, "produced %ld frames into a stalled connection",
		  last_producer->next);
	CHECK(last_producer->max_buffered < (1u << 20) + 70000);
	/* Reading drains it: the producer resumes. */
	long before = last_producer->next;
	for (int i = 0; i < 20; i++) {
		char buf[1 << 16];
		while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
			;
		run_for(test_base, 10);
	}
	CHECK(last_producer->next > before);
	close(fd);
	run_for(test_base, 50);
	CHECK(last_producer->cancelled);
	CHECK_INT(last_producer->why, RPC_CANCEL_DISCONNECT);
	teardown();
}

TEST(cancel_mid_stream_stops_producer)
{
	struct recorder r;
	setup(NULL, NULL);
	rec_init(&r);
	r.cancel_after = 20;
	/* 1,000,000 frames one per millisecond: only a cancel ends it soon. */
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "1000000,1", 9, 0, &rec_cbs, &r,
			   &r.st), 0);
	CHECK(wait_rec(&r, 5000));
	CHECK_INT(r.ended, -1);
	CHECK_INT(r.frames, 20);
	run_for(test_base, 100);
	CHECK(last_producer != NULL);
	CHECK(last_producer->cancelled);
	CHECK_INT(last_producer->why, RPC_CANCEL_CLIENT);
	long produced = last_producer->next;
	CHECK_MSG(produced < 200, "producer made %ld frames", produced);
	run_for(test_base, 50);
	CHECK_INT(last_producer->next, produced);	/* really stopped */
	CHECK_INT(r.frames, 20);			/* nothing after cancel */
	CHECK_INT(rpc_server_in_flight(srv), 0);
	struct rpc_server_stats ss;
	rpc_server_stats(srv, &ss);
	CHECK_INT(ss.calls_cancelled, 1);
	sb_release(&r.last);
	teardown();
}

TEST(client_disconnect_reaches_handler)
{
	uint8_t req[128];
	setup(NULL, NULL);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	size_t n = raw_request(req, 9, "t/c/hold", "{}");
	CHECK_INT(write(fd, req, n), (long)n);
	int started = 0;
	for (int i = 0; i < 100 && !started; i++) {
		run_for(test_base, 10);
		started = held_call != NULL;
	}
	CHECK(started);
	CHECK_INT(rpc_server_in_flight(srv), 1);
	close(fd);
	CHECK(run_until(test_base, &held_cancelled, 2000));
	CHECK_INT(held_why, RPC_CANCEL_DISCONNECT);
	CHECK_INT(rpc_server_in_flight(srv), 0);
	teardown();
}

TEST(refused_connection_reports_error)
{
	struct recorder r;
	setup(NULL, NULL);
	/* A port that was just free: bind, note, close. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	getsockname(fd, (struct sockaddr *)&sa, &len);
	close(fd);
	char dead[64];
	snprintf(dead, sizeof(dead), "127.0.0.1:%d", ntohs(sa.sin_port));
	rec_init(&r);
	CHECK_INT(rpc_call(cli, dead, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(!rec_done(&r));	/* never from inside rpc_call */
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, -ECONNREFUSED);
	/* Bad addresses fail synchronously. */
	CHECK_INT(rpc_call(cli, "nocolon", "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), -EINVAL);
	CHECK_INT(rpc_call(cli, "127.0.0.1:0", "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL),
		  -EINVAL);
	CHECK_INT(rpc_call(cli, addr, "bad name", "{}", 2, 0, &rec_cbs, &r, NULL), -EINVAL);
	sb_release(&r.last);
	teardown();
}

/* Is a non-blocking connect on fd still pending after ms? */
static int connect_pending(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLOUT };
	return poll(&p, 1, ms) == 0;
}

/*
 * A listener that never accepts, with backlog 0 and its accept queue
 * filled: Linux drops further SYNs, so a new connect to it stays in
 * SYN_SENT (retried for about two minutes) and only a client-side
 * timeout can end it.  Filler sockets go to fill[] (-1 where unused);
 * returns the listener, or -1 if no connect could be made to hang.
 */
static int hanging_listener(int *port, int fill[], int nfill)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int hung = 0;

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 0) < 0)
		return -1;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	*port = ntohs(sa.sin_port);
	for (int i = 0; i < nfill; i++)
		fill[i] = -1;
	for (int i = 0; i < nfill && !hung; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		if (connect(fill[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		    errno == EINPROGRESS)
			hung = connect_pending(fill[i], 100);
	}
	if (!hung) {
		close(lfd);
		return -1;
	}
	return lfd;
}

TEST(connect_timeout_reports_timed_out)
{
	struct recorder r;
	struct rpc_client_opts co = { .connect_timeout_ms = 200 };
	int fill[8], port, lfd;
	char hang[64];

	setup(NULL, &co);
	lfd = hanging_listener(&port, fill, 8);
	CHECK_MSG(lfd >= 0, "could not make a loopback connect hang");
	snprintf(hang, sizeof(hang), "127.0.0.1:%d", port);
	rec_init(&r);
	uint64_t t0 = mono_ms();
	CHECK_INT(rpc_call(cli, hang, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 5000));
	uint64_t took = mono_ms() - t0;
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, -ETIMEDOUT);
	CHECK_MSG(took >= 150 && took <= 3000, "connect timeout after %llu ms",
		  (unsigned long long)took);
	CHECK_MSG(strstr(r.msg, "connect to") && strstr(r.msg, hang) &&
		  strstr(r.msg, "timed out"), "error message: %s", r.msg);
	/* The client is still usable: a call to the real server succeeds. */
	struct recorder e;
	rec_init(&e);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{\"ok\":1}", 8, 0, &rec_cbs, &e, NULL), 0);
	CHECK(wait_rec(&e, 3000));
	CHECK_INT(e.ended, 1);
	CHECK_STR(e.last.buf, "{\"ok\":1}");
	for (int i = 0; i < 8; i++)
		if (fill[i] >= 0)
			close(fill[i]);
	close(lfd);
	sb_release(&r.last);
	sb_release(&e.last);
	teardown();
}

TEST(malformed_bytes_close_only_that_connection)
{
	struct recorder r, e;
	setup(NULL, NULL);
	rec_init(&r);
	/* A slow stream on the pooled connection, in flight throughout. */
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "50,2", 4, 0, &rec_cbs, &r, NULL), 0);
	run_for(test_base, 20);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_INT(write(fd, junk, sizeof(junk) - 1), (long)sizeof(junk) - 1);
	int closed = 0;
	for (int i = 0; i < 200 && !closed; i++) {
		run_for(test_base, 5);
		closed = raw_closed(fd);
	}
	CHECK_MSG(closed, "server kept the malformed connection open");
	close(fd);
	struct rpc_server_stats ss;
	rpc_server_stats(srv, &ss);
	CHECK_INT(ss.protocol_errors, 1);
	/* The other client is unaffected. */
	CHECK(wait_rec(&r, 5000));
	CHECK_MSG(r.ended == 1, "stream failed: %d %s", r.code, r.msg);
	CHECK_INT(r.frames, 50);
	CHECK(r.in_order);
	rec_init(&e);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "1", 1, 0, &rec_cbs, &e, NULL), 0);
	CHECK(wait_rec(&e, 3000));
	CHECK_INT(e.ended, 1);
	struct rpc_client_stats cs;
	rpc_client_stats(cli, &cs);
	CHECK_INT(cs.connections_opened, 1);
	sb_release(&r.last);
	sb_release(&e.last);
	teardown();
}

TEST(oversized_frame_rejected)
{
	struct recorder r, e;
	struct rpc_server_opts so = { .max_frame = 1 << 20 };
	struct rpc_client_opts co = { .max_frame = 1 << 20 };
	setup(&so, NULL);
	/* The client's own limit is checked before anything is sent. */
	struct rpc_client *small;
	CHECK_INT(rpc_client_new(test_base, &co, &small), 0);
	char *big = xcalloc(1, 2 << 20);
	memset(big, 'x', 2 << 20);
	rec_init(&r);
	CHECK_INT(rpc_call(small, addr, "t/c/echo", big, 2 << 20, FRAME_FLAG_BINARY,
			   &rec_cbs, &r, NULL), -EMSGSIZE);
	rpc_client_free(small);
	/* A peer with a bigger limit: the server refuses the frame by closing
	 * that connection; the stream sees an error, never a crash. */
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", big, 2 << 20, FRAME_FLAG_BINARY,
			   &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 5000));
	CHECK_INT(r.failed, 1);
	CHECK(r.code < 0);
	struct rpc_server_stats ss;
	rpc_server_stats(srv, &ss);
	CHECK_INT(ss.protocol_errors, 1);
	/* A new call gets a new connection and works. */
	rec_init(&e);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", big, 1000, FRAME_FLAG_BINARY,
			   &rec_cbs, &e, NULL), 0);
	CHECK(wait_rec(&e, 3000));
	CHECK_INT(e.ended, 1);
	CHECK_INT(e.last.len, 1000);
	free(big);
	sb_release(&r.last);
	sb_release(&e.last);
	teardown();
}

TEST(pooled_connection_reused_and_multiplexed)
{
	enum { N = 200 };
	static struct recorder r[N];
	setup(NULL, NULL);
	/* Sequential calls ... */
	for (int i = 0; i < 20; i++) {
		rec_init(&r[0]);
		CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r[0], NULL), 0);
		CHECK(wait_rec(&r[0], 3000));
		CHECK_INT(r[0].ended, 1);
		sb_release(&r[0].last);
	}
	/* ... and many concurrent ones, each with its own payload. */
	for (int i = 0; i < N; i++) {
		char p[32];
		int n = snprintf(p, sizeof(p), "{\"i\":%d}", i);
		rec_init(&r[i]);
		CHECK_INT(rpc_call(cli, addr, "t/c/echo", p, (size_t)n, 0, &rec_cbs, &r[i],
				   NULL), 0);
	}
	for (int i = 0; i < N; i++) {
		char p[32];
		snprintf(p, sizeof(p), "{\"i\":%d}", i);
		CHECK(wait_rec(&r[i], 3000));
		CHECK_INT(r[i].ended, 1);
		CHECK_STR(r[i].last.buf, p);
		sb_release(&r[i].last);
	}
	struct rpc_client_stats cs;
	struct rpc_server_stats ss;
	rpc_client_stats(cli, &cs);
	rpc_server_stats(srv, &ss);
	CHECK_INT(cs.connections_opened, 1);
	CHECK_INT(ss.connections_accepted, 1);
	CHECK_INT(ss.calls_started, 20 + N);
	teardown();
}

TEST(idle_pooled_connection_closes)
{
	struct recorder r;
	struct rpc_client_opts co = { .idle_timeout_ms = 40 };
	setup(NULL, &co);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	run_for(test_base, 200);
	struct rpc_client_stats cs;
	rpc_client_stats(cli, &cs);
	CHECK_INT(cs.connections_open, 0);
	sb_release(&r.last);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.ended, 1);
	rpc_client_stats(cli, &cs);
	CHECK_INT(cs.connections_opened, 2);
	sb_release(&r.last);
	teardown();
}

TEST(server_dies_mid_stream)
{
	struct recorder r;
	setup(NULL, NULL);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "1000000,1", 9, 0, &rec_cbs, &r, NULL), 0);
	run_for(test_base, 50);
	CHECK(r.frames > 0);
	rpc_server_free(srv);	/* its producer sees RPC_CANCEL_SERVER */
	srv = NULL;
	CHECK(last_producer->cancelled);
	CHECK_INT(last_producer->why, RPC_CANCEL_SERVER);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, -ECONNRESET);
	sb_release(&r.last);
	teardown();
}

TEST(stop_accepting_drains)
{
	struct recorder r, e;
	setup(NULL, NULL);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "30,2", 4, 0, &rec_cbs, &r, NULL), 0);
	run_for(test_base, 20);
	CHECK_INT(rpc_server_in_flight(srv), 1);
	rpc_server_stop_accepting(srv);
	/* New requests on the existing connection: 503; the old stream ends. */
	rec_init(&e);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &e, NULL), 0);
	CHECK(wait_rec(&e, 3000));
	CHECK_INT(e.code, 503);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.ended, 1);
	CHECK_INT(r.frames, 30);
	CHECK_INT(rpc_server_in_flight(srv), 0);
	/* And nobody new gets in. */
	CHECK(raw_connect(rpc_server_port(srv)) < 0);
	sb_release(&r.last);
	sb_release(&e.last);
	teardown();
}

TEST(drain_waits_for_unsent_answers)
{
	/* A finished call whose answer is still in the server's buffer (the
	 * client reads slowly) keeps the runtime's drain waiting. */
	enum { BODY = 24u << 20 };
	struct runtime_hooks h;
	setup(NULL, NULL);
	rpc_server_hooks(srv, &h);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_SETFL, O_NONBLOCK) == 0);
	uint8_t *req = xcalloc(1, BODY + 64);
	size_t len = raw_request(req, 1, "t/c/echo", ""), sent = 0;
	/* raw_request lays out an empty body; make it BODY bytes of 'x' */
	memset(req + len, 'x', BODY);
	size_t total = len + BODY;
	for (int i = 0; i < 4; i++)
		req[16 + i] = (uint8_t)((8 + BODY) >> (8 * i));
	uint64_t end = mono_ms() + 20000;
	while (sent < total && mono_ms() < end) {
		ssize_t n = send(fd, req + sent, total - sent, MSG_NOSIGNAL);
		if (n > 0)
			sent += (size_t)n;
		run_for(test_base, 1);
	}
	CHECK_INT(sent, total);
	run_for(test_base, 200);
	CHECK_INT(rpc_server_in_flight(srv), 0);
	CHECK_MSG(h.in_flight(h.arg) >= 1, "the unsent answer is not counted");
	/* Read the whole answer: nothing is left to wait for. */
	size_t got = 0;
	static char buf[1 << 16];
	while (h.in_flight(h.arg) > 0 && mono_ms() < end) {
		ssize_t n;
		while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
			got += (size_t)n;
		run_for(test_base, 1);
	}
	/* (the rest is in the kernel's buffers, sent even after an exit) */
	CHECK_INT(h.in_flight(h.arg), 0);
	CHECK(got > 0);
	close(fd);
	free(req);
	teardown();
}

TEST(abort_calls_ends_streams_with_the_error)
{
	struct recorder r;
	setup(NULL, NULL);
	rec_init(&r);
	/* 1000 frames 20 ms apart: still running when aborted. */
	CHECK_INT(rpc_call(cli, addr, "t/c/stream", "1000,20", 7, 0, &rec_cbs, &r, NULL), 0);
	run_for(test_base, 100);
	CHECK_INT(rpc_server_in_flight(srv), 1);
	rpc_server_stop_accepting(srv);
	CHECK_INT(rpc_server_abort_calls(srv, 503, "migrate: test"), 1);
	/* The handler heard of it as a server cancel and finished the call. */
	CHECK(last_producer->cancelled);
	CHECK_INT(last_producer->why, RPC_CANCEL_SERVER);
	CHECK_INT(rpc_server_in_flight(srv), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, 503);
	CHECK_STR(r.msg, "migrate: test");
	CHECK(r.frames > 0 && r.frames < 1000 && r.in_order);
	CHECK_INT(rpc_server_abort_calls(srv, 503, "again"), 0);
	sb_release(&r.last);
	teardown();
}

TEST(ping_answered_with_pong)
{
	uint8_t ping[24 + 4] = { 'D', 'Y', 1, 6 };
	uint8_t got[28];
	setup(NULL, NULL);
	ping[8] = 0x2a;		/* id 42 */
	ping[16] = 4;		/* length */
	memcpy(ping + 24, "abcd", 4);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	CHECK_INT(write(fd, ping, sizeof(ping)), (long)sizeof(ping));
	size_t have = 0;
	for (int i = 0; i < 200 && have < sizeof(got); i++) {
		run_for(test_base, 5);
		ssize_t n = recv(fd, got + have, sizeof(got) - have, MSG_DONTWAIT);
		if (n > 0)
			have += (size_t)n;
	}
	CHECK_INT(have, sizeof(got));
	CHECK_INT(got[3], 7);	/* PONG */
	CHECK_INT(got[8], 0x2a);
	CHECK(memcmp(got + 24, "abcd", 4) == 0);
	close(fd);
	teardown();
}

TEST(silent_peer_detected_by_keepalive)
{
	/* A "server" that accepts and reads but never answers, not even PING. */
	struct recorder r;
	struct rpc_client_opts co = { .keepalive_ms = 40 };
	setup(NULL, &co);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && listen(lfd, 4) == 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	char silent[64];
	snprintf(silent, sizeof(silent), "127.0.0.1:%d", ntohs(sa.sin_port));
	rec_init(&r);
	uint64_t t0 = mono_ms();
	CHECK_INT(rpc_call(cli, silent, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_INT(r.failed, 1);
	CHECK_INT(r.code, -ETIMEDOUT);
	uint64_t took = mono_ms() - t0;
	CHECK_MSG(took >= 60 && took < 1000, "keepalive failure after %llu ms",
		  (unsigned long long)took);
	close(lfd);
	sb_release(&r.last);
	teardown();
}

/* ---- the component model (net/endpoint.h) ------------------------------- */

TEST(endpoint_paths)
{
	char ns[65], comp[65], ep[65];
	int n = -1;

	CHECK_INT(endpoint_path_parse("a/b/c", 3, ns, comp, ep, &n), 0);
	CHECK_INT(n, 3);
	CHECK_STR(ns, "a");
	CHECK_STR(comp, "b");
	CHECK_STR(ep, "c");
	CHECK_INT(endpoint_path_parse("dyn", 0, ns, comp, ep, &n), 0);
	CHECK_INT(n, 1);
	CHECK_STR(comp, "");
	CHECK_INT(endpoint_path_parse("dyn/", 0, ns, comp, ep, &n), 0);
	CHECK_INT(n, 1);
	CHECK_INT(endpoint_path_parse("", 0, ns, comp, ep, &n), 0);
	CHECK_INT(n, 0);
	CHECK_INT(endpoint_path_parse("a/b", 3, ns, comp, ep, &n), -EINVAL);
	CHECK_INT(endpoint_path_parse("a/b/c/d", 0, ns, comp, ep, &n), -EINVAL);
	CHECK_INT(endpoint_path_parse("a//c", 0, ns, comp, ep, &n), -EINVAL);
	CHECK_INT(endpoint_path_parse("a/b c/d", 0, ns, comp, ep, &n), -EINVAL);
	CHECK(endpoint_name_valid("x.y-z_9"));
	CHECK(!endpoint_name_valid(""));
	CHECK(!endpoint_name_valid("a/b"));

	struct strbuf sb = STRBUF_INIT;
	endpoint_prefix(&sb, "n", "c", "e");
	CHECK_STR(sb.buf, "v1/instances/n/c/e/");
	sb_reset(&sb);
	endpoint_prefix(&sb, "n", "", "");
	CHECK_STR(sb.buf, "v1/instances/n/");
	sb_release(&sb);
}

/* A record as dyn-store(5) lays it out, with the address given. */
static int parse_with_address(const char *address, struct endpoint_instance *inst)
{
	char val[512];
	snprintf(val, sizeof(val),
		 "{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\","
		 "\"instance_id\":\"00000000000000a1\",\"address\":\"%s\","
		 "\"transport\":\"tcp\",\"pid\":7,\"metadata\":{}}", address);
	return endpoint_instance_parse("v1/instances/n/c/e/00000000000000a1", val, strlen(val),
				       inst);
}

TEST(instance_record_parse_rejects_malformed)
{
	struct endpoint_instance inst;
	const char *key = "v1/instances/n/c/e/00000000000000a1";

	/* A good record decodes; IPv6 addresses in brackets are fine. */
	static const char *const good[] = {
		"127.0.0.1:1", "127.0.0.1:65535", "localhost:8080", "node-7.cluster_a.example:80",
		"[::1]:4000", "[fe80::1%eth0]:4000", "[::ffff:127.0.0.1]:9",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		CHECK_MSG(parse_with_address(good[i], &inst) == 0, "%s rejected: %s", good[i],
			  err_msg());
		CHECK_STR(inst.address, good[i]);
		CHECK_STR(inst.path, "n/c/e");
		CHECK(inst.id == 0xa1);
		CHECK_INT(inst.pid, 7);
		endpoint_instance_clear(&inst);
	}

	/* Addresses no client could connect to. */
	static const char *const bad[] = {
		"", "nocolon", ":80", "host:", "host:0", "host:65536", "host:99999",
		"host:123456", "host:-1", "host:+80", "host: 80", "host:80 ", "host:8o",
		"host:0x50", "::1:80", "[::1]", "[::1]:", "[::1]:0", "[]:80", "[::1:80",
		"::1]:80", "[not-v6]:80", "[::1%]:80", "[::1]x:80", "ho st:80", "host\\n:80",
		"a/b:80", "[127.0.0.1]:80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CHECK_MSG(parse_with_address(bad[i], &inst) == -EINVAL, "'%s' accepted", bad[i]);
		CHECK_MSG(strstr(err_msg(), "bad address"), "%s", err_msg());
		CHECK(inst.key == NULL && inst.address == NULL);	/* cleared */
	}
	char longhost[300];
	memset(longhost, 'h', 254);
	strcpy(longhost + 254, ":80");
	CHECK_INT(parse_with_address(longhost, &inst), -EINVAL);
	longhost[253] = ':';
	strcpy(longhost + 254, "80");	/* 253 characters: the DNS limit */
	CHECK_INT(parse_with_address(longhost, &inst), 0);
	endpoint_instance_clear(&inst);

	/* Not JSON, not an object, fields missing or of the wrong type. */
	static const char *const junk[] = {
		"", "nope", "{", "[]", "\"str\"", "42", "null",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"a1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"address\":\"h:1\"}",
		"{\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"a1\",\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"a1\","
		"\"address\":80}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":161,"
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"xyz\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\","
		"\"instance_id\":\"00000000000000001\",\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"-1\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\" a1\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"0xa1\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n/x\",\"component\":\"c\",\"endpoint\":\"e\",\"instance_id\":\"a1\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"\",\"endpoint\":\"e\",\"instance_id\":\"a1\","
		"\"address\":\"h:1\"}",
		"{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e e\",\"instance_id\":\"a1\","
		"\"address\":\"h:1\"}",
	};
	for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
		CHECK_MSG(endpoint_instance_parse(key, junk[i], strlen(junk[i]), &inst) == -EINVAL,
			  "accepted: %s", junk[i]);
		/* "instance record KEY: why" */
		char want[128];
		snprintf(want, sizeof(want), "instance record %s: ", key);
		CHECK_MSG(strstr(err_msg(), want), "%s", err_msg());
		CHECK(inst.key == NULL);
	}
	/* The length bounds the parse: a good record cut short is junk. */
	const char *whole = "{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\","
			    "\"instance_id\":\"a1\",\"address\":\"h:1\"}";
	CHECK_INT(endpoint_instance_parse(key, whole, strlen(whole), &inst), 0);
	CHECK_STR(inst.transport, "tcp");	/* the default */
	CHECK_STR(inst.metadata, "{}");
	CHECK_INT(inst.pid, 0);		/* absent: unknown */
	endpoint_instance_clear(&inst);
	CHECK_INT(endpoint_instance_parse(key, whole, strlen(whole) - 1, &inst), -EINVAL);
	/* A pid that is no pid is unknown, not an error (nor a bad cast). */
	const char *hugepid = "{\"namespace\":\"n\",\"component\":\"c\",\"endpoint\":\"e\","
			      "\"instance_id\":\"A1\",\"address\":\"h:1\",\"pid\":1e300}";
	CHECK_INT(endpoint_instance_parse(key, hugepid, strlen(hugepid), &inst), 0);
	CHECK_INT(inst.pid, 0);
	CHECK(inst.id == 0xa1);
	endpoint_instance_clear(&inst);
}

static char store_dir[128];

static const char *temp_store(void)
{
	static char url[160];
	snprintf(store_dir, sizeof(store_dir), "%s/dyn-test-rpc.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(store_dir) != NULL);
	snprintf(url, sizeof(url), "file://%s", store_dir);
	return url;
}

static void remove_store(void)
{
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", store_dir);
	CHECK_INT(system(cmd), 0);
}

/* The record endpoint_serve() writes, read back with cJSON against the
 * layout in dyn-store(5) / dyn-rpc(1). */
TEST(endpoint_serve_registers_and_deregisters)
{
	struct runtime rt;
	struct rpc_server *s;
	struct endpoint_service *e;
	struct store_kv kv;
	char key[128], id[17];

	CHECK_INT(runtime_init(&rt, 1000), 0);
	CHECK_INT(store_process_open(&rt, temp_store(), 5000), 0);
	CHECK(rt.lease != 0);
	CHECK_INT(rpc_server_new(rt.base, NULL, &s), 0);
	CHECK_INT(rpc_server_listen(s, "127.0.0.1", 0), 0);
	CHECK_INT(endpoint_serve(&rt, s, "ns1", "comp", "echo", echo_handler, NULL,
				 "{\"model\":\"m\"}", &e), 0);
	snprintf(id, sizeof(id), "%016llx", (unsigned long long)rt.lease);
	snprintf(key, sizeof(key), "v1/instances/ns1/comp/echo/%s", id);
	CHECK_STR(endpoint_service_key(e), key);
	CHECK_INT(store_get(rt.store, key, &kv), 0);
	CHECK(kv.lease == rt.lease);
	cJSON *j = cJSON_Parse(kv.value);
	CHECK(j != NULL);
	CHECK_STR(cJSON_GetObjectItem(j, "namespace")->valuestring, "ns1");
	CHECK_STR(cJSON_GetObjectItem(j, "component")->valuestring, "comp");
	CHECK_STR(cJSON_GetObjectItem(j, "endpoint")->valuestring, "echo");
	CHECK_STR(cJSON_GetObjectItem(j, "instance_id")->valuestring, id);
	CHECK_STR(cJSON_GetObjectItem(j, "address")->valuestring, rpc_server_address(s));
	CHECK_STR(cJSON_GetObjectItem(j, "transport")->valuestring, "tcp");
	CHECK_INT(cJSON_GetObjectItem(j, "pid")->valuedouble, getpid());
	CHECK_STR(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "model")->valuestring,
		  "m");
	cJSON_Delete(j);
	store_kv_free(&kv);

	/* One-shot listing decodes it. */
	struct endpoint_instance *v;
	size_t n;
	CHECK_INT(endpoint_list(rt.store, "ns1", &v, &n), 0);
	CHECK_INT(n, 1);
	CHECK_STR(v[0].path, "ns1/comp/echo");
	CHECK(v[0].id == (uint64_t)rt.lease);
	endpoint_instances_free(v, n);

	/* Shutdown removes the record at once (the hook), lease revoked after. */
	runtime_shutdown(&rt, "test");
	CHECK_INT(store_get(rt.store, key, &kv), -ENOENT);
	endpoint_service_free(e);
	rpc_server_free(s);
	runtime_free(&rt);
	remove_store();
}

struct seen_instances {
	int added, removed, synced;
	uint64_t last_removed;
};

static void w_added(const struct endpoint_instance *i, void *arg)
{
	(void)i;
	((struct seen_instances *)arg)->added++;
}

static void w_removed(const struct endpoint_instance *i, void *arg)
{
	((struct seen_instances *)arg)->removed++;
	((struct seen_instances *)arg)->last_removed = i->id;
}

static void w_synced(void *arg)
{
	((struct seen_instances *)arg)->synced = 1;
}

static void put_record(struct store *st, const char *ep, const char *id, int port)
{
	char key[128], val[512];
	snprintf(key, sizeof(key), "v1/instances/ns2/c/%s/%s", ep, id);
	snprintf(val, sizeof(val),
		 "{\"namespace\":\"ns2\",\"component\":\"c\",\"endpoint\":\"%s\","
		 "\"instance_id\":\"%s\",\"address\":\"127.0.0.1:%d\","
		 "\"transport\":\"tcp\",\"pid\":1,\"metadata\":{}}", ep, id, port);
	CHECK_INT(store_put(st, key, val, strlen(val), 0), 0);
}

TEST(endpoint_watch_tracks_instances)
{
	struct event_base *base = event_base_new();
	struct store *st;
	struct endpoint_watch *w;
	struct seen_instances seen = { 0 };
	static const struct endpoint_watch_cbs cbs = { w_added, w_removed, w_synced };

	CHECK_INT(store_open(temp_store(), base, &st), 0);
	put_record(st, "gen", "00000000000000a1", 1001);
	put_record(st, "gen2", "00000000000000ff", 1009);	/* other endpoint */
	CHECK_INT(endpoint_watch(st, "ns2", "c", "gen", &cbs, &seen, &w), 0);
	CHECK(run_until(base, &seen.synced, 3000));
	CHECK_INT(seen.added, 1);
	CHECK_INT(endpoint_watch_count(w), 1);

	put_record(st, "gen", "00000000000000b2", 1002);
	put_record(st, "gen", "00000000000000c3", 1003);
	for (int i = 0; i < 300 && endpoint_watch_count(w) < 3; i++)
		run_for(base, 10);
	CHECK_INT(endpoint_watch_count(w), 3);
	CHECK_INT(seen.added, 3);
	CHECK_STR(endpoint_watch_find(w, 0xb2)->address, "127.0.0.1:1002");
	CHECK(endpoint_watch_find(w, 0xff) == NULL);
	/* Round robin visits each once per cycle. */
	int hits[3] = { 0 };
	for (int i = 0; i < 9; i++) {
		const struct endpoint_instance *in = endpoint_watch_pick(w, ENDPOINT_PICK_ROUND_ROBIN);
		hits[in->id == 0xa1 ? 0 : in->id == 0xb2 ? 1 : 2]++;
	}
	CHECK(hits[0] == 3 && hits[1] == 3 && hits[2] == 3);
	CHECK(endpoint_watch_pick(w, ENDPOINT_PICK_RANDOM) != NULL);

	CHECK_INT(store_delete(st, "v1/instances/ns2/c/gen/00000000000000b2"), 0);
	for (int i = 0; i < 300 && seen.removed < 1; i++)
		run_for(base, 10);
	CHECK_INT(seen.removed, 1);
	CHECK(seen.last_removed == 0xb2);
	CHECK_INT(endpoint_watch_count(w), 2);
	/* A malformed record is ignored, not fatal. */
	CHECK_INT(store_put(st, "v1/instances/ns2/c/gen/bad", "nope", 4, 0), 0);
	put_record(st, "gen", "00000000000000d4", 99999);	/* no such port */
	run_for(base, 150);
	CHECK_INT(endpoint_watch_count(w), 2);
	CHECK(endpoint_watch_find(w, 0xd4) == NULL);
	/* A record replaced by a malformed one: the instance is gone. */
	put_record(st, "gen", "00000000000000a1", 0);
	for (int i = 0; i < 300 && seen.removed < 2; i++)
		run_for(base, 10);
	CHECK_INT(seen.removed, 2);
	CHECK(seen.last_removed == 0xa1);
	CHECK_INT(endpoint_watch_count(w), 1);
	for (int i = 0; i < 5; i++)
		CHECK(endpoint_watch_pick(w, ENDPOINT_PICK_RANDOM)->id == 0xc3);

	/* A one-shot listing skips the same records. */
	struct endpoint_instance *v;
	size_t n;
	CHECK_INT(endpoint_list(st, "ns2/c/gen", &v, &n), 0);
	CHECK_INT(n, 1);
	CHECK(v[0].id == 0xc3);
	CHECK_STR(v[0].address, "127.0.0.1:1003");
	endpoint_instances_free(v, n);

	endpoint_watch_free(w);
	store_close(st);
	event_base_free(base);
	remove_store();
}

/* ---- TLS (each test runs in its own process: the setting is global) ---- */

static char pki[128];

/* A CA and a certificate from it, made with the openssl command line;
 * 0 when there is no openssl to make them. */
static int make_pki(const char *ca, const char *leaf)
{
	char cmd[2048];
	snprintf(pki, sizeof(pki), "%s/dyn-test-tls.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(pki) != NULL);
	snprintf(cmd, sizeof(cmd),
		 "cd '%s' && E='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
		 "openssl req -x509 $E -keyout %s.key -out %s.pem -subj /CN=%s -days 2 && "
		 "openssl req $E -keyout %s.key -out %s.csr -subj /CN=%s && "
		 "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -CAcreateserial "
		 "-out %s.pem -days 2", pki, ca, ca, ca, leaf, leaf, leaf, leaf, ca, ca, leaf);
	char quiet[2100];
	snprintf(quiet, sizeof(quiet), "(%s) >/dev/null 2>&1", cmd);
	return system(quiet) == 0;
}

static int tls_on(const char *ca, const char *leaf)
{
	char c[200], k[200], a[200];
	if (!make_pki(ca, leaf))
		return 0;
	snprintf(c, sizeof(c), "%s/%s.pem", pki, leaf);
	snprintf(k, sizeof(k), "%s/%s.key", pki, leaf);
	snprintf(a, sizeof(a), "%s/%s.pem", pki, ca);
	CHECK_INT(rpc_tls_configure(c, k, a), 0);
	CHECK(rpc_tls_enabled());
	return 1;
}

static void pki_remove(void)
{
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
	CHECK_INT(system(cmd), 0);
}

/* Megabytes each way and thousands of frames: partial TLS writes, and
 * records decrypted beyond what one read takes, lose nothing. */
TEST(tls_large_payloads_and_streams_intact)
{
	if (!tls_on("ca", "node")) {
		printf("SKIP: no openssl command\n");
		return;
	}
	check_large_payloads();
	check_stream_10000();
	pki_remove();
}

/* A plain-TCP client of a TLS server: its bytes are no handshake, the
 * server drops only that connection and serves TLS clients on. */
TEST(tls_server_drops_plain_client)
{
	struct recorder r;
	uint8_t req[128];
	if (!tls_on("ca", "node")) {
		printf("SKIP: no openssl command\n");
		return;
	}
	setup(NULL, NULL);
	int fd = raw_connect(rpc_server_port(srv));
	CHECK(fd >= 0);
	size_t n = raw_request(req, 1, "t/c/echo", "{}");
	CHECK_INT(send(fd, req, n, 0), (ssize_t)n);
	run_for(test_base, 200);
	CHECK(raw_closed(fd));
	close(fd);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_MSG(r.ended == 1, "echo failed: %d %s", r.code, r.msg);
	sb_release(&r.last);
	teardown();
	pki_remove();
}

/* A peer that connects and never finishes its handshake (or, in plain
 * TCP, never sends a frame) is dropped after hello_timeout_ms; one that
 * speaks in time keeps its connection. */
static void check_silent_peer_dropped(void)
{
	struct rpc_server_opts so = { .hello_timeout_ms = 300 };
	struct recorder r;
	uint8_t req[128];
	setup(&so, NULL);
	int quiet = raw_connect(rpc_server_port(srv));
	CHECK(quiet >= 0);
	/* The start of a ClientHello / a frame header, never finished. */
	size_t n = raw_request(req, 1, "t/c/echo", "{}");
	CHECK_INT(send(quiet, rpc_tls_enabled() ? (const void *)"\x16\x03\x01" : req, 3, 0), 3);
	run_for(test_base, 100);
	CHECK(!raw_closed(quiet));
	run_for(test_base, 1500);
	CHECK(raw_closed(quiet));
	close(quiet);
	if (!rpc_tls_enabled()) {
		int fd = raw_connect(rpc_server_port(srv));
		CHECK_INT(send(fd, req, n, 0), (ssize_t)n);
		run_for(test_base, 1500);
		CHECK(!raw_closed(fd));
		close(fd);
	}
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_MSG(r.ended == 1, "echo failed: %d %s", r.code, r.msg);
	run_for(test_base, 1000);	/* past the timeout: the client's is kept */
	sb_release(&r.last);
	rec_init(&r);
	CHECK_INT(rpc_call(cli, addr, "t/c/echo", "{}", 2, 0, &rec_cbs, &r, NULL), 0);
	CHECK(wait_rec(&r, 3000));
	CHECK_MSG(r.ended == 1, "echo failed: %d %s", r.code, r.msg);
	struct rpc_server_stats st;
	rpc_server_stats(srv, &st);
	CHECK_INT(st.connections_accepted, rpc_tls_enabled() ? 2 : 3);
	sb_release(&r.last);
	teardown();
}

TEST(silent_peer_dropped)
{
	check_silent_peer_dropped();
}

TEST(tls_stalled_handshake_dropped)
{
	if (!tls_on("ca", "node")) {
		printf("SKIP: no openssl command\n");
		return;
	}
	check_silent_peer_dropped();
	pki_remove();
}

/* Files that do not load are refused with their name. */
TEST(tls_configure_bad_files)
{
	CHECK_INT(rpc_tls_configure("/nonexistent/c.pem", "/nonexistent/k.pem",
				    "/nonexistent/ca.pem"), -EINVAL);
	CHECK(strstr(err_msg(), "/nonexistent/c.pem") != NULL);
	CHECK(!rpc_tls_enabled());
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	return RUN_TESTS();
}
