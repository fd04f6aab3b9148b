/*
 * kv_xfer_bench.c - the KV data plane's throughput (net/kv_xfer.h) on
 * loopback ('make bench' via test/bench/kv_xfer.sh), against a baseline
 * measured in the same run: a plain TCP socket pair moving the same
 * bytes in the same messages (the reader asks with a 34-byte request,
 * the writer answers with the bytes from one contiguous buffer, read
 * into one contiguous buffer), which is what the lender and borrower
 * cost at best over TCP.  The lender runs in a child process (the
 * borrower, its loop and the baseline in this one).
 *
 *   kv_xfer_bench [BLOCK_BYTES [MIN_MB]]     (65536 256)
 *
 * For 1, 10, 100 and 1000 blocks per fetch: fetches of one handle from a
 * lender whose pool is laid out per layer (each block is 4 segments far
 * apart, as an engine's pool is) into destination blocks in separate
 * buffers, repeated until MIN_MB have moved (and at least 5 fetches),
 * over tcp and, where UCX loads, over ucx (the ucx lender's pool in
 * memory UCX allocated, as a prefill worker's: kvx_pool_alloc).  Prints
 * a table and FIGURE lines (GB/s, ratio to the raw TCP stream of the
 * same fetch size).
 */
#include "net/kv_xfer.h"
#include "core/err.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEGS 4
#define MAX_BLOCKS 1000
#define LAYOUT "bench"

static size_t block_bytes;
static uint8_t *pool;

static int segments(void *arg, uint64_t handle, uint32_t first, uint32_t count,
		    struct iovec *iov, int cap)
{
	size_t seg = block_bytes / SEGS;
	int n = 0;
	(void)arg;
	if (handle != 1)
		return -ENOENT;
	if ((uint64_t)first + count > MAX_BLOCKS)
		return -ERANGE;
	for (uint32_t b = first; b < first + count; b++)
		for (int s = 0; s < SEGS && n < cap; s++)
			iov[n++] = (struct iovec){ pool + ((size_t)s * MAX_BLOCKS + b) * seg, seg };
	return n;
}

static int regions(void *arg, struct iovec *r, int cap)
{
	(void)arg;
	(void)cap;
	r[0] = (struct iovec){ pool, block_bytes * MAX_BLOCKS };
	return 1;
}

static void release(void *arg, uint64_t handle)
{
	(void)arg;
	(void)handle;
}

struct done {
	int called, rc;
};

static void on_done(void *arg, int rc, uint64_t n)
{
	struct done *d = arg;
	(void)n;
	d->called = 1;
	d->rc = rc;
}

/* A lender in a child process (as in production: its own UCX context,
 * no shortcut within one process); returns its port, *pid and *hold (the
 * pipe whose closing ends it). */
static int lender_process(enum kvx_transport t, pid_t *pid, int *hold)
{
	int up[2], down[2], port = 0;
	if (pipe(up) < 0 || pipe(down) < 0)
		return -1;
	fflush(stdout);
	if ((*pid = fork()) == 0) {
		struct kvx_lender_ops ops = { segments, regions, release, NULL };
		struct kvx_lender *l;
		char c;
		close(up[0]);
		close(down[1]);
		/* The pool where a prefill worker has it (kvx_pool_alloc). */
		uint8_t *p = kvx_pool_alloc(t, block_bytes * MAX_BLOCKS);
		if (p) {
			memcpy(p, pool, block_bytes * MAX_BLOCKS);
			pool = p;
		}
		if (kvx_lender_new("127.0.0.1", 0, t, NULL, LAYOUT, block_bytes, &ops, &l) < 0) {
			fprintf(stderr, "kv_xfer_bench: lender: %s\n", err_msg());
			_exit(1);
		}
		port = kvx_lender_port(l);
		(void)!write(up[1], &port, sizeof(port));
		(void)!read(down[0], &c, 1);
		kvx_lender_free(l);
		_exit(0);
	}
	close(up[1]);
	close(down[0]);
	if (read(up[0], &port, sizeof(port)) != sizeof(port))
		port = -1;
	close(up[0]);
	*hold = down[1];
	return port;
}

/* GB/s of fetches of count blocks from the lender on port; 0 when the
 * transport fails. */
static double kvx_rate(enum kvx_transport t, int port, uint32_t count, size_t min_bytes,
		       uint8_t **dst)
{
	struct kvx_borrower *b;
	struct event_base *base = event_base_new();
	if (kvx_borrower_new(base, t, NULL, &b) < 0) {
		fprintf(stderr, "kv_xfer_bench: %s\n", err_msg());
		exit(1);
	}
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	struct iovec *iov = xcalloc(count, sizeof(*iov));
	for (uint32_t i = 0; i < count; i++)
		iov[i] = (struct iovec){ dst[i], block_bytes };
	struct kvx_fetch_req q = { .tcp_addr = addr, .lender_ucx = t != KVX_TCP, .handle = 1,
				   .count = count, .dst = iov, .n_dst = (int)count,
				   .block_bytes = block_bytes, .layout = LAYOUT,
				   .timeout_ms = 60000 };
	uint64_t bytes = 0, t0 = 0;
	int n = 0;
	double rate = 0;
	/* The first fetch connects (and wires UCX up): not timed. */
	for (int warm = 1; n < 5 || bytes < min_bytes; warm = 0) {
		struct done d = { 0 };
		if (kvx_fetch_start(b, &q, on_done, &d, NULL) < 0) {
			fprintf(stderr, "kv_xfer_bench: %s\n", err_msg());
			exit(1);
		}
		while (!d.called)
			event_base_loop(base, EVLOOP_ONCE);
		if (d.rc) {
			fprintf(stderr, "kv_xfer_bench: fetch: %s\n", err_msg());
			goto out;
		}
		if (warm) {
			t0 = mono_ns();
			continue;
		}
		bytes += (uint64_t)count * block_bytes;
		n++;
	}
	rate = (double)bytes / (double)(mono_ns() - t0);
out:
	kvx_borrower_free(b);
	event_base_free(base);
	free(iov);
	return rate;
}

/* ---- the baseline: a plain socket pair ------------------------------- */

struct raw {
	int fd;
	size_t msg;
	const uint8_t *src;
};

static void *raw_writer(void *arg)
{
	struct raw *r = arg;
	uint8_t req[34];
	for (;;) {
		size_t got = 0;
		while (got < sizeof(req)) {
			ssize_t k = read(r->fd, req + got, sizeof(req) - got);
			if (k <= 0)
				return NULL;
			got += (size_t)k;
		}
		for (size_t off = 0; off < r->msg;) {
			ssize_t k = write(r->fd, r->src + off, r->msg - off);
			if (k <= 0)
				return NULL;
			off += (size_t)k;
		}
	}
}

static double raw_rate(size_t msg, size_t min_bytes, uint8_t *buf)
{
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1) < 0)
		return 0;
	getsockname(lfd, (struct sockaddr *)&a, &len);
	int cfd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(cfd, (struct sockaddr *)&a, sizeof(a)) < 0)
		return 0;
	struct raw r = { accept(lfd, NULL, NULL), msg, pool };
	setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(r.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_t th;
	pthread_create(&th, NULL, raw_writer, &r);
	uint64_t bytes = 0, t0 = 0;
	uint8_t req[34] = { 0 };
	for (int n = -1; n < 5 || bytes < min_bytes; n++) {
		if (n == 0)
			t0 = mono_ns();
		if (write(cfd, req, sizeof(req)) != sizeof(req))
			break;
		for (size_t got = 0; got < msg;) {
			ssize_t k = read(cfd, buf + got, msg - got);
			if (k <= 0)
				return 0;
			got += (size_t)k;
		}
		if (n >= 0)
			bytes += msg;
	}
	double rate = (double)bytes / (double)(mono_ns() - t0);
	close(cfd);
	pthread_join(th, NULL);
	close(r.fd);
	close(lfd);
	return rate;
}

int main(int argc, char **argv)
{
	block_bytes = argc > 1 ? strtoul(argv[1], NULL, 10) : 65536;
	size_t min_bytes = (argc > 2 ? strtoul(argv[2], NULL, 10) : 256) << 20;
	if (block_bytes < SEGS || block_bytes % SEGS) {
		fprintf(stderr, "kv_xfer_bench: BLOCK_BYTES must be a multiple of %d\n", SEGS);
		return 2;
	}
	pool = xmalloc(block_bytes * MAX_BLOCKS);
	for (size_t i = 0; i < block_bytes * MAX_BLOCKS; i++)
		pool[i] = (uint8_t)(i * 7 + (i >> 12));
	uint8_t **dst = xcalloc(MAX_BLOCKS, sizeof(*dst));
	for (int i = 0; i < MAX_BLOCKS; i++)
		dst[i] = xcalloc(1, block_bytes);
	uint8_t *raw_buf = xmalloc(block_bytes * MAX_BLOCKS);
	/* The lenders start before this process loads UCX (it does not
	 * survive a fork). */
	pid_t tcp_pid, ucx_pid;
	int tcp_hold, ucx_hold;
	int tcp_port = lender_process(KVX_TCP, &tcp_pid, &tcp_hold);
	int ucx_port = lender_process(KVX_UCX, &ucx_pid, &ucx_hold);
	const char *why = "the lender could not use it";
	int ucx = kvx_ucx_available(&why) && ucx_port > 0;
	if (tcp_port < 0)
		return 1;

	printf("KV transfer on loopback, blocks of %zu KiB (%d segments each), at least %zu MiB "
	       "per point\n", block_bytes >> 10, SEGS, min_bytes >> 20);
	printf("%-8s %12s %12s %8s %12s %8s\n", "blocks", "raw TCP GB/s", "tcp GB/s", "ratio",
	       "ucx GB/s", "ratio");
	static const uint32_t counts[] = { 1, 10, 100, 1000 };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		uint32_t c = counts[i];
		double raw = raw_rate(c * block_bytes, min_bytes, raw_buf);
		double tcp = kvx_rate(KVX_TCP, tcp_port, c, min_bytes, dst);
		double u = ucx ? kvx_rate(KVX_UCX, ucx_port, c, min_bytes, dst) : 0;
		printf("%-8u %12.2f %12.2f %8.2f", c, raw, tcp, raw > 0 ? tcp / raw : 0);
		if (ucx)
			printf(" %12.2f %8.2f\n", u, raw > 0 ? u / raw : 0);
		else
			printf(" %12s %8s\n", "-", "-");
		printf("FIGURE kv_xfer_tcp_%ux%zuKiB %.3f GB/s %.3f raw_tcp_same_messages\n", c,
		       block_bytes >> 10, tcp, raw > 0 ? tcp / raw : 0);
		if (ucx)
			printf("FIGURE kv_xfer_ucx_%ux%zuKiB %.3f GB/s %.3f raw_tcp_same_messages\n",
			       c, block_bytes >> 10, u, raw > 0 ? u / raw : 0);
	}
	if (!ucx)
		printf("ucx: not measured (%s)\n", why);
	close(tcp_hold);
	close(ucx_hold);
	waitpid(tcp_pid, NULL, 0);
	waitpid(ucx_pid, NULL, 0);
	return 0;
}
