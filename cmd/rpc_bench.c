/*
 * rpc_bench.c - "dyn rpc bench": request-plane round trips per second and
 * streamed frames per second between two processes on loopback, each
 * against a raw TCP echo/stream of the same payload sizes measured in the
 * same run (the baseline the request plane is judged by).
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

static const char *bench_ns = "dyn";
static const char *bench_component = "rpc";

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
		rpc_raw_hello(h, RAW_MODE_ECHO, (uint32_t)size, 0);
		if (fd_write_all(fd, h, sizeof(h)) < 0)
			goto fail;
		while (mono_ns() < end) {
			if (fd_write_all(fd, buf, size) < 0 || fd_read_full(fd, buf, size) < 0)
				goto fail;
			count++;
		}
	} else {
		while (mono_ns() < end) {
			rpc_raw_hello(h, RAW_MODE_STREAM, (uint32_t)size, (uint64_t)frames);
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
	snprintf(ep, sizeof(ep), "%s/%s/echo", bench_ns, bench_component);
	rpc_server_handle(srv, ep, rpc_diag_echo, NULL);
	snprintf(ep, sizeof(ep), "%s/%s/stream", bench_ns, bench_component);
	rpc_server_handle(srv, ep, rpc_diag_stream, base);
	if (rpc_server_listen(srv, "127.0.0.1", 0) < 0 ||
	    rpc_raw_server_start("127.0.0.1", 0, &raw_port) < 0) {
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

int rpc_bench(int argc, char **argv)
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
		{ "namespace", OPT_STRING, &bench_ns, "NS", "namespace of the echo/stream endpoints", 0, 0, NULL },
		{ "component", OPT_STRING, &bench_component, "NAME", "their component", 0, 0, NULL },
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
	int rc = cmd_options_only(&cmd, argc, argv);
	if (rc >= 0)
		return rc;
	if (cmd_check_name(cmd.name, "--namespace", bench_ns) ||
	    cmd_check_name(cmd.name, "--component", bench_component))
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
	snprintf(b.echo_ep, sizeof(b.echo_ep), "%s/%s/echo", bench_ns, bench_component);
	snprintf(b.stream_ep, sizeof(b.stream_ep), "%s/%s/stream", bench_ns, bench_component);

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

