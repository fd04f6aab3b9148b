/*
 * test_kv_xfer.c - the KV data plane (net/kv_xfer.h): a real lender and
 * borrower on loopback in one process.  The lender's pool is a fake with
 * a byte pattern that names each block and offset, laid out as an engine
 * lays it out (per layer, so a block's segments are far apart, over two
 * regions); every fetched byte is compared with the pattern computed
 * here.  Hand-built bytes on raw sockets play broken lenders and broken
 * borrowers.
 */
#include "check.h"
#include "run_loop.h"

#include "net/kv_xfer.h"
#include "net/kv_xfer_wire.h"
#include "net/tls.h"
#include "core/err.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define LAYOUT "test-layout-v1:L4:bs16:f32"
#define N_LAYERS 2
#define SEG_BYTES 1024			/* K or V of one layer of one block */
#define SEGS (2 * N_LAYERS)		/* per block */
#define BLOCK_BYTES (SEGS * SEG_BYTES)
#define POOL_BLOCKS 1024		/* per region */
#define GUARD 64

/* Fixture memory lives until the case's process ends: kept reachable
 * here, so that LeakSanitizer reports only what the library leaks. */
static void *fixture[8192];
static int n_fixture;

static void *keep(void *p)
{
	if (n_fixture < (int)ARRAY_SIZE(fixture))
		fixture[n_fixture++] = p;
	return p;
}

/* --kv-transfer-tls: the contexts lender() and env_init() use, and what
 * fetch() says of the lender (NULL and 0: plain TCP). */
static struct {
	struct ssl_ctx_st *lender, *borrower;
	int lender_tls;
} tls;

/* ---- a fake lender pool ------------------------------------------------ */

static uint8_t pattern(uint32_t block, size_t off)
{
	return (uint8_t)(block * 131u + off * 7u + (off >> 8) * 13u + 1u);
}

struct hold {
	uint64_t handle;
	uint32_t *blocks;	/* pool block ids */
	uint32_t n;
	int released;
	int release_calls;
};

struct fake {
	uint8_t *region[2];	/* even blocks in 0, odd in 1 */
	pthread_mutex_t mu;
	struct hold holds[4];
	int n_holds;
	int mock;		/* no data: 0 segments */
	atomic_int segments_calls;
};

static uint8_t *seg_addr(struct fake *fk, uint32_t block, int seg)
{
	/* Layer-major like a real pool: [seg][block] within a region. */
	size_t slot = block / 2;
	return fk->region[block % 2] + ((size_t)seg * POOL_BLOCKS + slot) * SEG_BYTES;
}

#define REGION_BYTES ((size_t)SEGS * POOL_BLOCKS * SEG_BYTES)

/* A fake pool in regions r0 and r1 (REGION_BYTES each). */
static void fake_init_in(struct fake *fk, uint8_t *r0, uint8_t *r1)
{
	memset(fk, 0, sizeof(*fk));
	pthread_mutex_init(&fk->mu, NULL);
	fk->region[0] = r0;
	fk->region[1] = r1;
	for (uint32_t b = 0; b < 2 * POOL_BLOCKS; b++)
		for (int s = 0; s < SEGS; s++) {
			uint8_t *p = seg_addr(fk, b, s);
			for (size_t i = 0; i < SEG_BYTES; i++)
				p[i] = pattern(b, (size_t)s * SEG_BYTES + i);
		}
}

static void fake_init(struct fake *fk)
{
	fake_init_in(fk, keep(xmalloc(REGION_BYTES)), keep(xmalloc(REGION_BYTES)));
}

/* A hold of n blocks: pool blocks first_block, +3, +6, ... (scattered). */
static uint64_t fake_hold(struct fake *fk, uint64_t handle, uint32_t first_block, uint32_t n)
{
	struct hold *h = &fk->holds[fk->n_holds++];
	h->handle = handle;
	h->n = n;
	h->blocks = keep(xcalloc(n, sizeof(*h->blocks)));
	for (uint32_t i = 0; i < n; i++)
		h->blocks[i] = (first_block + 3 * i) % (2 * POOL_BLOCKS);
	return handle;
}

static struct hold *find_hold(struct fake *fk, uint64_t handle)
{
	for (int i = 0; i < fk->n_holds; i++)
		if (fk->holds[i].handle == handle)
			return &fk->holds[i];
	return NULL;
}

static int fake_segments(void *arg, uint64_t handle, uint32_t first, uint32_t count,
			 struct iovec *iov, int cap)
{
	struct fake *fk = arg;
	int n = 0, rc;
	atomic_fetch_add(&fk->segments_calls, 1);
	pthread_mutex_lock(&fk->mu);
	struct hold *h = find_hold(fk, handle);
	if (!h || h->released)
		rc = -ENOENT;
	else if ((uint64_t)first + count > h->n)
		rc = -ERANGE;
	else {
		for (uint32_t i = 0; i < count && !fk->mock; i++)
			for (int s = 0; s < SEGS && n < cap; s++)
				iov[n++] = (struct iovec){ seg_addr(fk, h->blocks[first + i], s),
							   SEG_BYTES };
		rc = n;
	}
	pthread_mutex_unlock(&fk->mu);
	return rc;
}

static int fake_regions(void *arg, struct iovec *regions, int cap)
{
	struct fake *fk = arg;
	if (fk->mock || cap < 2)
		return 0;
	for (int r = 0; r < 2; r++)
		regions[r] = (struct iovec){ fk->region[r], (size_t)SEGS * POOL_BLOCKS * SEG_BYTES };
	return 2;
}

static void fake_release(void *arg, uint64_t handle)
{
	struct fake *fk = arg;
	pthread_mutex_lock(&fk->mu);
	struct hold *h = find_hold(fk, handle);
	if (h) {
		h->released = 1;
		h->release_calls++;
	}
	pthread_mutex_unlock(&fk->mu);
}

static int release_calls(struct fake *fk, uint64_t handle)
{
	pthread_mutex_lock(&fk->mu);
	int n = find_hold(fk, handle)->release_calls;
	pthread_mutex_unlock(&fk->mu);
	return n;
}

static struct kvx_lender *lender(struct fake *fk, enum kvx_transport t, size_t block_bytes)
{
	struct kvx_lender_ops ops = { fake_segments, fake_regions, fake_release, fk };
	struct kvx_lender *l;
	int rc = kvx_lender_new("127.0.0.1", 0, t, tls.lender, LAYOUT, block_bytes, &ops, &l);
	CHECK_MSG(rc == 0, "kvx_lender_new: %s", err_msg());
	return l;
}

/* ---- the borrower side: destinations with guards ------------------------ */

/* count blocks in separate buffers, each block's buffer cut into 3
 * segments at other places than the lender's, with guard bytes around. */
struct dest {
	uint8_t **buf;
	struct iovec *iov;
	int n_iov;
	uint32_t count;
};

static void dest_init(struct dest *d, uint32_t count)
{
	d->count = count;
	d->buf = keep(xcalloc(count ? count : 1, sizeof(*d->buf)));
	d->iov = keep(xcalloc(3 * (size_t)(count ? count : 1), sizeof(*d->iov)));
	d->n_iov = 0;
	for (uint32_t i = 0; i < count; i++) {
		d->buf[i] = keep(xmalloc(BLOCK_BYTES + 2 * GUARD));
		memset(d->buf[i], 0xEE, BLOCK_BYTES + 2 * GUARD);
		uint8_t *b = d->buf[i] + GUARD;
		size_t cut1 = 100, cut2 = BLOCK_BYTES - 333;
		d->iov[d->n_iov++] = (struct iovec){ b, cut1 };
		d->iov[d->n_iov++] = (struct iovec){ b + cut1, cut2 - cut1 };
		d->iov[d->n_iov++] = (struct iovec){ b + cut2, BLOCK_BYTES - cut2 };
	}
}

static int guards_intact(const struct dest *d)
{
	for (uint32_t i = 0; i < d->count; i++)
		for (size_t j = 0; j < GUARD; j++)
			if (d->buf[i][j] != 0xEE || d->buf[i][GUARD + BLOCK_BYTES + j] != 0xEE)
				return 0;
	return 1;
}

/* The first mismatching byte as "block i offset j", or NULL. */
static const char *dest_check(const struct dest *d, struct fake *fk, uint64_t handle,
			      uint32_t first)
{
	static char why[128];
	struct hold *h = find_hold(fk, handle);
	for (uint32_t i = 0; i < d->count; i++)
		for (size_t j = 0; j < BLOCK_BYTES; j++)
			if (d->buf[i][GUARD + j] != pattern(h->blocks[first + i], j)) {
				snprintf(why, sizeof(why), "block %u byte %zu: %u, expected %u", i,
					 j, d->buf[i][GUARD + j],
					 pattern(h->blocks[first + i], j));
				return why;
			}
	return guards_intact(d) ? NULL : "a guard byte was overwritten";
}

struct result {
	int called, rc;
	uint64_t n_bytes;
	char msg[512];
};

static void on_done(void *arg, int rc, uint64_t n_bytes)
{
	struct result *r = arg;
	r->called++;
	r->rc = rc;
	r->n_bytes = n_bytes;
	snprintf(r->msg, sizeof(r->msg), "%s", rc ? err_msg() : "");
}

static int is_done(void *arg)
{
	return ((struct result *)arg)->called > 0;
}

struct env {
	struct event_base *base;
	struct kvx_borrower *b;
	char addr[64];
};

static void env_init(struct env *e, enum kvx_transport t, int port)
{
	e->base = event_base_new();
	CHECK(e->base);
	int rc = kvx_borrower_new(e->base, t, tls.borrower, &e->b);
	CHECK_MSG(rc == 0, "kvx_borrower_new: %s", err_msg());
	snprintf(e->addr, sizeof(e->addr), "127.0.0.1:%d", port);
}

/* Fetch and wait for done (bounded); returns the result. */
static struct result fetch(struct env *e, uint64_t handle, uint32_t first, struct dest *d,
			   size_t block_bytes, const char *layout, int timeout_ms, int release,
			   int lender_ucx)
{
	struct result r = { 0 };
	struct kvx_fetch_req q = {
		.tcp_addr = e->addr, .lender_ucx = lender_ucx, .lender_tls = tls.lender_tls,
		.handle = handle, .first = first,
		.count = d->count, .dst = d->iov, .n_dst = block_bytes ? d->n_iov : 0,
		.block_bytes = block_bytes, .layout = layout, .timeout_ms = timeout_ms,
		.release = release,
	};
	int rc = kvx_fetch_start(e->b, &q, on_done, &r, NULL);
	CHECK_MSG(rc == 0, "kvx_fetch_start: %s", err_msg());
	CHECK_MSG(run_until(e->base, is_done, &r, timeout_ms + 3000), "done was not called");
	CHECK_INT(r.called, 1);
	return r;
}

static int wait_release_calls(struct fake *fk, uint64_t handle, int n)
{
	uint64_t end = mono_ms() + 3000;
	while (release_calls(fk, handle) < n && mono_ms() < end)
		usleep(1000);
	usleep(50000);	/* and no more after */
	return release_calls(fk, handle) == n;
}

/* ---- fetches that work --------------------------------------------------- */

static void fetch_and_compare(struct fake *fk, enum kvx_transport lt, enum kvx_transport bt,
			      int lender_ucx)
{
	uint64_t h = fake_hold(fk, 0xabc, 5, 1200);
	struct kvx_lender *l = lender(fk, lt, BLOCK_BYTES);
	struct env e;
	env_init(&e, bt, kvx_lender_port(l));
	static const uint32_t counts[] = { 1, 7, 1000 };
	for (size_t i = 0; i < ARRAY_SIZE(counts); i++) {
		struct dest d;
		dest_init(&d, counts[i]);
		uint32_t first = (uint32_t)i * 11;
		struct result r = fetch(&e, h, first, &d, BLOCK_BYTES, LAYOUT, 10000, 0, lender_ucx);
		CHECK_MSG(r.rc == 0, "fetch of %u blocks: %s", counts[i], r.msg);
		CHECK_INT(r.n_bytes, (uint64_t)counts[i] * BLOCK_BYTES);
		const char *why = dest_check(&d, fk, h, first);
		CHECK_MSG(!why, "fetch of %u blocks: %s", counts[i], why);
	}
	/* No RELEASE asked for: the borrower kept its connection for the
	 * handle; freeing it closes that, which releases the handle once. */
	CHECK_INT(release_calls(fk, h), 0);
	kvx_borrower_free(e.b);
	CHECK(wait_release_calls(fk, h, 1));
	kvx_lender_free(l);
	CHECK_INT(release_calls(fk, h), 1);
	event_base_free(e.base);
}

TEST(fetch_1_7_1000_blocks_tcp)
{
	struct fake fk;
	fake_init(&fk);
	fetch_and_compare(&fk, KVX_TCP, KVX_TCP, 0);
}

TEST(fetch_release_calls_release_once)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 7, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 4);
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 1, 0);
	CHECK_MSG(r.rc == 0, "%s", r.msg);
	CHECK_MSG(!dest_check(&d, &fk, h, 0), "%s", dest_check(&d, &fk, h, 0));
	CHECK(wait_release_calls(&fk, h, 1));
	/* Released: the handle is gone for the next borrower. */
	r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -ENOENT);
	CHECK_MSG(strstr(r.msg, "not held"), "message: %s", r.msg);
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	CHECK_INT(release_calls(&fk, h), 1);
	event_base_free(e.base);
}

TEST(release_without_fetch)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 8, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 0);
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 1, 0);
	CHECK_MSG(r.rc == 0, "%s", r.msg);
	CHECK_INT(r.n_bytes, 0);
	CHECK(wait_release_calls(&fk, h, 1));
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(unknown_handle_enoent)
{
	struct fake fk;
	fake_init(&fk);
	fake_hold(&fk, 1, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 2);
	struct result r = fetch(&e, 0xdead, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -ENOENT);
	/* The handle as kv_source objects write it: 16 hex digits. */
	CHECK_MSG(strstr(r.msg, "handle 000000000000dead from") &&
		  strstr(r.msg, "handle 000000000000dead is not held"), "message: %s", r.msg);
	CHECK(guards_intact(&d));
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(layout_mismatch_names_both)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 1, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 2);
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, "other-layout", 5000, 0, 0);
	CHECK_INT(r.rc, -EPROTO);
	CHECK_MSG(strstr(r.msg, "other-layout") && strstr(r.msg, LAYOUT), "message: %s", r.msg);
	CHECK_INT(atomic_load(&fk.segments_calls), 0);	/* refused before any KV moved */
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(block_bytes_mismatch)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 1, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES * 2);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 2);
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -EPROTO);
	CHECK_MSG(strstr(r.msg, "4096") && strstr(r.msg, "8192"), "message: %s", r.msg);
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(count_beyond_hold_erange)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 1, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 3);
	struct result r = fetch(&e, h, 2, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -ERANGE);
	CHECK_MSG(strstr(r.msg, "beyond"), "message: %s", r.msg);
	CHECK(guards_intact(&d));
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(mock_lender_moves_no_bytes)
{
	struct fake fk;
	fake_init(&fk);
	fk.mock = 1;
	uint64_t h = fake_hold(&fk, 3, 0, 10);
	struct kvx_lender *l = lender(&fk, KVX_AUTO, 0);
	CHECK_MSG(strstr(kvx_lender_addr_json(l), "\"ucx\":false"), "%s",
		  kvx_lender_addr_json(l));
	struct env e;
	env_init(&e, KVX_AUTO, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 10);
	struct result r = fetch(&e, h, 0, &d, 0, LAYOUT, 5000, 1, 0);
	CHECK_MSG(r.rc == 0, "%s", r.msg);
	CHECK_INT(r.n_bytes, 0);
	CHECK(wait_release_calls(&fk, h, 1));
	r = fetch(&e, h, 0, &d, 0, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -ENOENT);
	r = fetch(&e, 99, 0, &d, 0, LAYOUT, 5000, 0, 0);
	CHECK_INT(r.rc, -ENOENT);
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(addr_json_and_bad_requests)
{
	struct fake fk;
	fake_init(&fk);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	char want[96];
	snprintf(want, sizeof(want), "{\"tcp\":\"127.0.0.1:%d\",\"ucx\":false}", kvx_lender_port(l));
	CHECK_STR(kvx_lender_addr_json(l), want);
	struct env e;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 2);
	struct kvx_fetch_req q = { .tcp_addr = e.addr, .handle = 1, .count = 2, .dst = d.iov,
				   .n_dst = d.n_iov - 1, .block_bytes = BLOCK_BYTES,
				   .layout = LAYOUT };
	CHECK_INT(kvx_fetch_start(e.b, &q, on_done, NULL, NULL), -EINVAL);
	CHECK_MSG(strstr(err_msg(), "destination"), "%s", err_msg());
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

/* ---- raw sockets: a hand-made borrower -------------------------------- */

static int raw_connect(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	struct timeval tv = { 5, 0 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

static void le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t rd(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* The request's bytes as the man page lays them out. */
static size_t raw_req(uint8_t *out, uint16_t op, uint64_t handle, uint32_t first, uint32_t count,
		      uint64_t block_bytes, const char *layout)
{
	size_t n = strlen(layout);
	memcpy(out, "DYKV", 4);
	le(out + 4, 1, 2);
	le(out + 6, op, 2);
	le(out + 8, handle, 8);
	le(out + 16, first, 4);
	le(out + 20, count, 4);
	le(out + 24, block_bytes, 8);
	le(out + 32, n, 2);
	memcpy(out + 34, layout, n);
	return 34 + n;
}

static int read_n(int fd, void *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t k = recv(fd, (char *)buf + got, n - got, 0);
		if (k <= 0)
			return -1;
		got += (size_t)k;
	}
	return 0;
}

/* Reads a reply's status and message; returns the status (-1: closed). */
static int raw_status(int fd, char *msg, size_t size)
{
	uint8_t h[8];
	if (read_n(fd, h, 8) < 0)
		return -1;
	uint32_t len = (uint32_t)rd(h + 4, 4);
	char buf[2048];
	if (len >= sizeof(buf) || read_n(fd, buf, len) < 0)
		return -1;
	buf[len] = '\0';
	memcpy(msg, buf, len < size ? len + 1 : size);
	msg[size - 1] = '\0';
	return (int)rd(h, 4);
}

static int closed_by_peer(int fd)
{
	char c;
	return recv(fd, &c, 1, 0) == 0;
}

TEST(several_requests_one_connection)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 0x55, 10, 20);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	int fd = raw_connect(kvx_lender_port(l));
	uint8_t req[KVX_REQ_MAX], *data = keep(xmalloc(5 * BLOCK_BYTES)), nb[8];
	char msg[256];
	static const uint32_t ranges[][2] = { { 0, 1 }, { 3, 5 }, { 19, 1 } };
	for (size_t k = 0; k < ARRAY_SIZE(ranges); k++) {
		uint32_t first = ranges[k][0], count = ranges[k][1];
		size_t n = raw_req(req, 1, h, first, count, BLOCK_BYTES, LAYOUT);
		CHECK(send(fd, req, n, 0) == (ssize_t)n);
		CHECK_INT(raw_status(fd, msg, sizeof(msg)), 0);
		CHECK_INT(read_n(fd, nb, 8), 0);
		CHECK_INT(rd(nb, 8), (uint64_t)count * BLOCK_BYTES);
		CHECK_INT(read_n(fd, data, (size_t)count * BLOCK_BYTES), 0);
		for (uint32_t i = 0; i < count; i++)
			for (size_t j = 0; j < BLOCK_BYTES; j++)
				CHECK_MSG(data[i * BLOCK_BYTES + j] ==
						  pattern(find_hold(&fk, h)->blocks[first + i], j),
					  "request %zu block %u byte %zu", k, i, j);
	}
	/* An error reply keeps the connection. */
	size_t n = raw_req(req, 1, 0x999, 0, 1, BLOCK_BYTES, LAYOUT);
	CHECK(send(fd, req, n, 0) == (ssize_t)n);
	CHECK_INT(raw_status(fd, msg, sizeof(msg)), ENOENT);
	n = raw_req(req, 3, h, 0, 0, BLOCK_BYTES, LAYOUT);
	CHECK(send(fd, req, n, 0) == (ssize_t)n);
	CHECK_INT(raw_status(fd, msg, sizeof(msg)), 0);
	CHECK(wait_release_calls(&fk, h, 1));
	close(fd);
	/* Closing after RELEASE releases nothing more. */
	CHECK(wait_release_calls(&fk, h, 1));
	kvx_lender_free(l);
	CHECK_INT(release_calls(&fk, h), 1);
}

TEST(close_after_fetch_releases_once)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 0x66, 0, 8);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	int fd = raw_connect(kvx_lender_port(l));
	uint8_t req[KVX_REQ_MAX];
	char msg[256];
	/* Two FETCHes of one handle, then the borrower goes away. */
	for (int k = 0; k < 2; k++) {
		size_t n = raw_req(req, 1, h, 0, 1, BLOCK_BYTES, LAYOUT);
		CHECK(send(fd, req, n, 0) == (ssize_t)n);
		CHECK_INT(raw_status(fd, msg, sizeof(msg)), 0);
		uint8_t *data = xmalloc(8 + BLOCK_BYTES);
		CHECK_INT(read_n(fd, data, 8 + BLOCK_BYTES), 0);
		free(data);
	}
	CHECK_INT(release_calls(&fk, h), 0);
	close(fd);
	CHECK(wait_release_calls(&fk, h, 1));
	kvx_lender_free(l);
	CHECK_INT(release_calls(&fk, h), 1);
}

TEST(garbage_borrower_closed_others_served)
{
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 0x77, 0, 8);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	int port = kvx_lender_port(l);
	int good = raw_connect(port);	/* open before, used after */
	uint8_t req[KVX_REQ_MAX + 16];
	char msg[256];

	/* Junk. */
	int fd = raw_connect(port);
	CHECK(send(fd, "GET / HTTP/1.1\r\n\r\n", 18, 0) == 18);
	CHECK_INT(raw_status(fd, msg, sizeof(msg)), EBADMSG);
	CHECK(closed_by_peer(fd));
	close(fd);
	/* A huge count. */
	fd = raw_connect(port);
	size_t n = raw_req(req, 1, h, 0, 0xffffffffu, BLOCK_BYTES, LAYOUT);
	CHECK(send(fd, req, n, 0) == (ssize_t)n);
	CHECK_INT(raw_status(fd, msg, sizeof(msg)), EPROTO);
	CHECK_MSG(strstr(msg, "blocks"), "%s", msg);
	CHECK(closed_by_peer(fd));
	close(fd);
	/* Another version, an unknown op, a layout too long. */
	static const struct { int off, bytes; uint64_t v; int status; } bad[] = {
		{ 4, 2, 2, EPROTONOSUPPORT }, { 6, 2, 9, EPROTO }, { 32, 2, 300, EPROTO },
	};
	for (size_t k = 0; k < ARRAY_SIZE(bad); k++) {
		fd = raw_connect(port);
		n = raw_req(req, 1, h, 0, 1, BLOCK_BYTES, LAYOUT);
		le(req + bad[k].off, bad[k].v, bad[k].bytes);
		CHECK(send(fd, req, n, 0) == (ssize_t)n);
		CHECK_INT(raw_status(fd, msg, sizeof(msg)), bad[k].status);
		CHECK(closed_by_peer(fd));
		close(fd);
	}
	/* A request cut short, then silence: the lender waits (its deadline is
	 * long); meanwhile the others are served. */
	int stalled = raw_connect(port);
	CHECK(send(stalled, req, 10, 0) == 10);
	n = raw_req(req, 1, h, 2, 1, BLOCK_BYTES, LAYOUT);
	CHECK(send(good, req, n, 0) == (ssize_t)n);
	CHECK_INT(raw_status(good, msg, sizeof(msg)), 0);
	uint8_t *data = xmalloc(8 + BLOCK_BYTES);
	CHECK_INT(read_n(good, data, 8 + BLOCK_BYTES), 0);
	CHECK_INT(data[8], pattern(find_hold(&fk, h)->blocks[2], 0));
	free(data);
	close(good);
	close(stalled);
	kvx_lender_free(l);
}

/* ---- TLS (--kv-transfer-tls) ------------------------------------------ */

static char pki[128];

/* Two CAs with a certificate from each (the cluster's "ca"/"node", an
 * outsider's "rogue"/"intruder"), made with the openssl command line; 0
 * when there is no openssl to make them. */
static int make_pki(void)
{
	char cmd[2048];
	snprintf(pki, sizeof(pki), "%s/dyn-test-kvtls.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(pki) != NULL);
	snprintf(cmd, sizeof(cmd),
		 "(cd '%s' && E='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
		 "for p in ca:node rogue:intruder; do c=${p%%:*} l=${p#*:}; "
		 "openssl req -x509 $E -keyout $c.key -out $c.pem -subj /CN=$c -days 2 && "
		 "openssl req $E -keyout $l.key -out $l.csr -subj /CN=$l && "
		 "openssl x509 -req -in $l.csr -CA $c.pem -CAkey $c.key -CAcreateserial "
		 "-out $l.pem -days 2 || exit 1; done) >/dev/null 2>&1", pki);
	return system(cmd) == 0;
}

/* A context with leaf's certificate trusting ca (mutual, as dyn serve's). */
static struct ssl_ctx_st *tls_ctx(const char *leaf, const char *ca)
{
	char c[200], k[200], a[200];
	struct ssl_ctx_st *ctx;
	snprintf(c, sizeof(c), "%s/%s.pem", pki, leaf);
	snprintf(k, sizeof(k), "%s/%s.key", pki, leaf);
	snprintf(a, sizeof(a), "%s/%s.pem", pki, ca);
	CHECK_MSG(tls_ctx_new(TLS_MUTUAL, c, k, a, &ctx) == 0, "%s", err_msg());
	return keep(ctx);
}

static void pki_remove(void)
{
	char cmd[200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", pki);
	CHECK_INT(system(cmd), 0);
}

/* Both ends with certificates from the cluster CA: every byte arrives
 * (1000 blocks: many TLS records per reply), kept connections work, the
 * lender advertises "tls". */
TEST(tls_fetch_1_7_1000_blocks)
{
	if (!make_pki()) {
		printf("SKIP: no openssl command\n");
		return;
	}
	struct fake fk;
	fake_init(&fk);
	tls.lender = tls.borrower = tls_ctx("node", "ca");
	tls.lender_tls = 1;
	struct kvx_lender *l = lender(&fk, KVX_AUTO, BLOCK_BYTES);
	char want[96];
	snprintf(want, sizeof(want), "{\"tcp\":\"127.0.0.1:%d\",\"ucx\":false,\"tls\":true}",
		 kvx_lender_port(l));
	CHECK_STR(kvx_lender_addr_json(l), want);
	kvx_lender_free(l);
	fetch_and_compare(&fk, KVX_TCP, KVX_TCP, 0);
	pki_remove();
}

/* What must not reach the blocks of a TLS lender: a borrower whose
 * certificate is from another CA, a plain borrower, raw plain bytes. */
TEST(tls_lender_refuses_foreign_and_plain_peers)
{
	if (!make_pki()) {
		printf("SKIP: no openssl command\n");
		return;
	}
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 0x99, 0, 4);
	tls.lender = tls_ctx("node", "ca");
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct dest d;
	dest_init(&d, 2);
	struct env e;

	/* The intruder trusts the cluster CA, the lender does not trust it. */
	tls.borrower = tls_ctx("intruder", "ca");
	tls.lender_tls = 1;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_MSG(r.rc < 0, "an outsider's certificate was accepted");
	CHECK(guards_intact(&d));
	kvx_borrower_free(e.b);
	event_base_free(e.base);

	/* A plain borrower that believes the lender plain (stale metadata). */
	tls.borrower = NULL;
	tls.lender_tls = 0;
	env_init(&e, KVX_TCP, kvx_lender_port(l));
	r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 0);
	CHECK_MSG(r.rc < 0, "a plain fetch from a TLS lender worked");
	kvx_borrower_free(e.b);
	event_base_free(e.base);

	/* A valid plain FETCH on a raw socket: no handshake, no blocks. */
	int fd = raw_connect(kvx_lender_port(l));
	uint8_t req[KVX_REQ_MAX + 16], buf[4096];
	size_t n = raw_req(req, 1, h, 0, 2, BLOCK_BYTES, LAYOUT), got = 0;
	CHECK(send(fd, req, n, 0) == (ssize_t)n);
	ssize_t k;
	while ((k = recv(fd, buf, sizeof(buf), 0)) > 0)
		got += (size_t)k;
	CHECK_MSG(k == 0, "the lender did not close the connection");
	CHECK_MSG(got < BLOCK_BYTES, "%zu bytes came back", got);
	close(fd);
	CHECK_INT(atomic_load(&fk.segments_calls), 0);	/* no block was ever read */
	kvx_lender_free(l);
	pki_remove();
}

/* A borrower's TLS setting that differs from what the lender advertises
 * fails at once (the worker prefills locally); UCX with TLS is refused. */
TEST(tls_mismatch_and_ucx_refused)
{
	if (!make_pki()) {
		printf("SKIP: no openssl command\n");
		return;
	}
	struct event_base *base = event_base_new();
	struct kvx_borrower *b;
	struct kvx_lender *l;
	struct ssl_ctx_st *ctx = tls_ctx("node", "ca");
	struct dest d;
	dest_init(&d, 1);
	struct kvx_fetch_req q = { .tcp_addr = "127.0.0.1:1", .handle = 1, .count = 1,
				   .dst = d.iov, .n_dst = d.n_iov, .block_bytes = BLOCK_BYTES,
				   .layout = LAYOUT, .lender_tls = 1 };
	CHECK_INT(kvx_borrower_new(base, KVX_TCP, NULL, &b), 0);
	CHECK_INT(kvx_fetch_start(b, &q, on_done, NULL, NULL), -EPROTO);
	CHECK_MSG(strstr(err_msg(), "encrypts KV transfers"), "%s", err_msg());
	kvx_borrower_free(b);
	CHECK_INT(kvx_borrower_new(base, KVX_AUTO, ctx, &b), 0);
	q.lender_tls = 0;
	CHECK_INT(kvx_fetch_start(b, &q, on_done, NULL, NULL), -EPROTO);
	CHECK_MSG(strstr(err_msg(), "requires it"), "%s", err_msg());
	kvx_borrower_free(b);
	CHECK_INT(kvx_borrower_new(base, KVX_UCX, ctx, &b), -EINVAL);
	struct kvx_lender_ops ops = { fake_segments, fake_regions, fake_release, NULL };
	CHECK_INT(kvx_lender_new("127.0.0.1", 0, KVX_UCX, ctx, LAYOUT, BLOCK_BYTES, &ops, &l),
		  -EINVAL);
	CHECK_MSG(strstr(err_msg(), "UCX"), "%s", err_msg());
	event_base_free(base);
	pki_remove();
}

/* ---- raw sockets: a hand-made lender ---------------------------------- */

enum bad_lender { TRUNCATED, GARBAGE, WRONG_N_BYTES, SILENT, SLOW, HUGE_MSG };

struct bad_server {
	int lfd, port;
	enum bad_lender mode;
	pthread_t thread;
};

static void *bad_serve(void *arg)
{
	struct bad_server *s = arg;
	int fd = accept(s->lfd, NULL, NULL);
	if (fd < 0)
		return NULL;
	uint8_t req[KVX_REQ_MAX];
	if (read_n(fd, req, 34) < 0 || read_n(fd, req + 34, (size_t)rd(req + 32, 2)) < 0) {
		close(fd);
		return NULL;
	}
	uint64_t count = rd(req + 20, 4), bytes = count * rd(req + 24, 8);
	uint8_t head[16] = { 0 };
	le(head + 8, s->mode == WRONG_N_BYTES ? bytes + 1 : bytes, 8);
	uint8_t *body = xmalloc(bytes);
	memset(body, 0x5A, bytes);
	switch (s->mode) {
	case TRUNCATED:
		send(fd, head, 16, MSG_NOSIGNAL);
		send(fd, body, bytes / 2 + 17, MSG_NOSIGNAL);	/* mid-block */
		shutdown(fd, SHUT_WR);
		break;
	case GARBAGE:
		send(fd, "\xff\xff\xff\xff garbage garbage", 20, MSG_NOSIGNAL);
		break;
	case WRONG_N_BYTES:
		send(fd, head, 16, MSG_NOSIGNAL);
		send(fd, body, bytes, MSG_NOSIGNAL);
		break;
	case HUGE_MSG:
		le(head + 0, 5, 4);
		le(head + 4, 1u << 30, 4);
		send(fd, head, 8, MSG_NOSIGNAL);
		break;
	case SLOW:
		send(fd, head, 16, MSG_NOSIGNAL);
		send(fd, body, bytes / 3, MSG_NOSIGNAL);
		/* then nothing more */
		__attribute__((fallthrough));
	case SILENT: {
		struct pollfd p = { fd, POLLIN, 0 };
		poll(&p, 1, 20000);	/* until the borrower hangs up */
		break;
	}
	}
	free(body);
	/* Hold the connection until the borrower closes it. */
	char c;
	while (recv(fd, &c, 1, 0) > 0)
		;
	close(fd);
	return NULL;
}

static void bad_start(struct bad_server *s, enum bad_lender mode)
{
	s->mode = mode;
	s->lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	CHECK(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)) == 0 && listen(s->lfd, 4) == 0);
	getsockname(s->lfd, (struct sockaddr *)&a, &len);
	s->port = ntohs(a.sin_port);
	CHECK(pthread_create(&s->thread, NULL, bad_serve, s) == 0);
}

static void bad_case(enum bad_lender mode, int want_rc, const char *want_msg)
{
	struct bad_server s;
	bad_start(&s, mode);
	struct env e;
	env_init(&e, KVX_TCP, s.port);
	struct dest d;
	dest_init(&d, 20);
	uint64_t t0 = mono_ms();
	struct result r = fetch(&e, 1, 0, &d, BLOCK_BYTES, LAYOUT, 1000, 1, 0);
	uint64_t took = mono_ms() - t0;
	CHECK_MSG(r.rc == want_rc, "rc %d (%s), expected %d", r.rc, r.msg, want_rc);
	CHECK_MSG(strstr(r.msg, want_msg), "message: %s", r.msg);
	CHECK_MSG(took < 2500, "took %llu ms", (unsigned long long)took);
	CHECK(guards_intact(&d));
	kvx_borrower_free(e.b);
	pthread_join(s.thread, NULL);
	close(s.lfd);
	event_base_free(e.base);
}

TEST(lender_truncates_mid_block)
{
	bad_case(TRUNCATED, -ECONNRESET, "block data: connection closed");
}

TEST(lender_sends_garbage)
{
	bad_case(GARBAGE, -EPROTO, "not an errno");
}

TEST(lender_sends_wrong_n_bytes)
{
	bad_case(WRONG_N_BYTES, -EPROTO, "81921");
}

TEST(lender_sends_huge_message)
{
	bad_case(HUGE_MSG, -EPROTO, "message");
}

TEST(lender_never_answers)
{
	bad_case(SILENT, -ETIMEDOUT, "timed out");
}

TEST(cancel_during_slow_fetch)
{
	struct bad_server s;
	bad_start(&s, SLOW);
	struct env e;
	env_init(&e, KVX_TCP, s.port);
	struct dest d;
	dest_init(&d, 20);
	struct result r = { 0 };
	struct kvx_fetch *f;
	struct kvx_fetch_req q = { .tcp_addr = e.addr, .handle = 1, .count = 20, .dst = d.iov,
				   .n_dst = d.n_iov, .block_bytes = BLOCK_BYTES, .layout = LAYOUT,
				   .timeout_ms = 20000 };
	CHECK_INT(kvx_fetch_start(e.b, &q, on_done, &r, &f), 0);
	run_until(e.base, is_done, &r, 300);
	CHECK_INT(r.called, 0);
	uint64_t t0 = mono_ms();
	kvx_fetch_cancel(f);
	CHECK(run_until(e.base, is_done, &r, 2000));
	CHECK_MSG(mono_ms() - t0 < 1000, "cancel took %llu ms",
		  (unsigned long long)(mono_ms() - t0));
	CHECK_INT(r.rc, -ECANCELED);
	CHECK(guards_intact(&d));
	/* Some bytes arrived before the cancel; the rest were not written. */
	CHECK(d.buf[19][GUARD] == 0xEE);
	kvx_borrower_free(e.b);
	pthread_join(s.thread, NULL);
	close(s.lfd);
	event_base_free(e.base);
}

TEST(free_borrower_cancels_pending)
{
	struct bad_server s;
	bad_start(&s, SILENT);
	struct env e;
	env_init(&e, KVX_TCP, s.port);
	struct dest d;
	dest_init(&d, 2);
	struct result r = { 0 };
	struct kvx_fetch_req q = { .tcp_addr = e.addr, .handle = 1, .count = 2, .dst = d.iov,
				   .n_dst = d.n_iov, .block_bytes = BLOCK_BYTES, .layout = LAYOUT,
				   .timeout_ms = 20000 };
	CHECK_INT(kvx_fetch_start(e.b, &q, on_done, &r, NULL), 0);
	run_until(e.base, is_done, &r, 200);
	uint64_t t0 = mono_ms();
	kvx_borrower_free(e.b);
	CHECK_INT(r.called, 1);
	CHECK_INT(r.rc, -ECANCELED);
	CHECK(mono_ms() - t0 < 1000);
	pthread_join(s.thread, NULL);
	close(s.lfd);
	event_base_free(e.base);
}

TEST(connect_refused)
{
	/* A port bound but not listening: connections to it are refused. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	getsockname(fd, (struct sockaddr *)&a, &len);
	struct env e;
	env_init(&e, KVX_TCP, ntohs(a.sin_port));
	struct dest d;
	dest_init(&d, 1);
	struct result r = fetch(&e, 1, 0, &d, BLOCK_BYTES, LAYOUT, 1000, 0, 0);
	CHECK_MSG(r.rc == -ECONNREFUSED && strstr(r.msg, "connect"), "rc %d: %s", r.rc, r.msg);
	kvx_borrower_free(e.b);
	event_base_free(e.base);
	close(fd);
}

/* ---- the parsers on hand-made bytes ------------------------------------ */

TEST(request_parser)
{
	uint8_t b[KVX_REQ_MAX];
	struct kvx_req r;
	size_t used;
	size_t n = raw_req(b, 2, 0x1122334455667788ull, 9, 3, 4096, "abc");
	CHECK_INT(kvx_req_parse(b, 10, &r, &used), KVX_NEED_MORE);
	CHECK_INT(used, 34);
	CHECK_INT(kvx_req_parse(b, 34, &r, &used), KVX_NEED_MORE);
	CHECK_INT(used, 37);
	CHECK_INT(kvx_req_parse(b, n, &r, &used), KVX_OK);
	CHECK_INT(used, 37);
	CHECK_INT(r.op, 2);
	CHECK(r.handle == 0x1122334455667788ull);
	CHECK_INT(r.first, 9);
	CHECK_INT(r.count, 3);
	CHECK_INT(r.block_bytes, 4096);
	CHECK_STR(r.layout, "abc");
	/* The encoder writes the same bytes. */
	uint8_t e[KVX_REQ_MAX];
	CHECK_INT(kvx_req_encode(e, &r), (int)n);
	CHECK(!memcmp(e, b, n));
	b[0] = 'X';
	CHECK_INT(kvx_req_parse(b, 4, &r, &used), -EBADMSG);
	raw_req(b, 3, 1, 0, 1, 0, "");
	CHECK_INT(kvx_req_parse(b, 34, &r, &used), -EPROTO);	/* RELEASE with blocks */
	raw_req(b, 1, 1, 0, 0, 0, "");
	CHECK_INT(kvx_req_parse(b, 34, &r, &used), -EPROTO);	/* FETCH of nothing */
	raw_req(b, 1, 1, 0xffffffffu, 2, 0, "");
	CHECK_INT(kvx_req_parse(b, 34, &r, &used), -EPROTO);	/* past 2^32 */
	n = raw_req(b, 1, 1, 0, 1, 0, "a\0b");
	b[33 + 2] = 0;
	le(b + 32, 3, 2);
	CHECK_INT(kvx_req_parse(b, 37, &r, &used), -EPROTO);	/* NUL in layout */
}

TEST(reply_parser)
{
	uint8_t b[256];
	struct kvx_reply r;
	size_t used;
	memset(b, 0, sizeof(b));
	le(b + 8, 12345, 8);
	CHECK_INT(kvx_reply_parse(b, 4, KVX_OP_FETCH_TCP, &r, &used), KVX_NEED_MORE);
	CHECK_INT(used, 8);
	CHECK_INT(kvx_reply_parse(b, 8, KVX_OP_FETCH_TCP, &r, &used), KVX_NEED_MORE);
	CHECK_INT(used, 16);
	CHECK_INT(kvx_reply_parse(b, 16, KVX_OP_FETCH_TCP, &r, &used), KVX_OK);
	CHECK_INT(r.n_bytes, 12345);
	CHECK_INT(kvx_reply_parse(b, 8, KVX_OP_RELEASE, &r, &used), KVX_OK);
	CHECK_INT(used, 8);
	/* An error with its message. */
	le(b, ENOENT, 4);
	le(b + 4, 3, 4);
	memcpy(b + 8, "why", 3);
	CHECK_INT(kvx_reply_parse(b, 11, KVX_OP_FETCH_TCP, &r, &used), KVX_OK);
	CHECK_INT(r.status, ENOENT);
	CHECK(r.msg_len == 3 && !memcmp(r.msg, "why", 3));
	/* UCX: address "AB", two segments with rkeys "k" and "kk". */
	size_t p = 0;
	memset(b, 0, sizeof(b));
	p = 8;
	le(b + p, 2, 4), p += 4;
	memcpy(b + p, "AB", 2), p += 2;
	le(b + p, 2, 4), p += 4;
	le(b + p, 0x1000, 8), le(b + p + 8, 64, 8), le(b + p + 16, 1, 4), p += 20;
	b[p++] = 'k';
	le(b + p, 0x2000, 8), le(b + p + 8, 32, 8), le(b + p + 16, 2, 4), p += 20;
	b[p++] = 'k', b[p++] = 'k';
	CHECK_INT(kvx_reply_parse(b, p - 1, KVX_OP_FETCH_UCX, &r, &used), KVX_NEED_MORE);
	CHECK_INT(used, p);
	CHECK_INT(kvx_reply_parse(b, p, KVX_OP_FETCH_UCX, &r, &used), KVX_OK);
	CHECK_INT(r.n_seg, 2);
	CHECK(r.ucx_addr_len == 2 && !memcmp(r.ucx_addr, "AB", 2));
	const uint8_t *s = r.segs;
	struct kvx_ucx_seg seg;
	kvx_reply_ucx_seg(&s, &seg);
	CHECK(seg.addr == 0x1000 && seg.len == 64 && seg.rkey_len == 1);
	kvx_reply_ucx_seg(&s, &seg);
	CHECK(seg.addr == 0x2000 && seg.len == 32 && seg.rkey_len == 2 && seg.rkey[1] == 'k');
	/* Limits. */
	le(b + 12 + 2, 0xffffffffu, 4);
	CHECK_INT(kvx_reply_parse(b, p, KVX_OP_FETCH_UCX, &r, &used), -EPROTO);
	le(b, 70000, 4);
	CHECK_INT(kvx_reply_parse(b, 8, KVX_OP_FETCH_TCP, &r, &used), -EPROTO);
}

/* ---- UCX ------------------------------------------------------------------ */

static void need_ucx(void)
{
	const char *why;
	if (!kvx_ucx_available(&why))
		CHECK_SKIP("UCX unavailable here: %s", why);
}

TEST(ucx_fetch_1_7_1000_blocks)
{
	need_ucx();
	struct fake fk;
	fake_init(&fk);
	fetch_and_compare(&fk, KVX_UCX, KVX_UCX, 1);
}

/* A pool where a prefill worker lending over UCX has it: memory UCX
 * allocated, which the borrower reads without the lender's worker
 * (ucp_rkey_ptr) where UCX maps it; the same bytes arrive. */
TEST(ucx_fetch_from_ucx_allocated_pool)
{
	need_ucx();
	CHECK(kvx_pool_alloc(KVX_TCP, REGION_BYTES) == NULL);
	uint8_t *r[2];
	for (int i = 0; i < 2; i++) {
		r[i] = kvx_pool_alloc(KVX_UCX, REGION_BYTES);
		CHECK(r[i] != NULL);
		size_t nonzero = 0;
		for (size_t j = 0; j < REGION_BYTES; j++)
			nonzero += r[i][j] != 0;
		CHECK_INT(nonzero, 0);
	}
	struct fake fk;
	fake_init_in(&fk, r[0], r[1]);
	fetch_and_compare(&fk, KVX_UCX, KVX_UCX, 1);
	kvx_pool_free(r[0]);
	kvx_pool_free(r[1]);
}

/* auto offers UCX only where an RDMA device makes it worth it. */
TEST(ucx_auto_lender_offers_ucx_with_rdma)
{
	need_ucx();
	struct fake fk;
	fake_init(&fk);
	struct kvx_lender *l = lender(&fk, KVX_AUTO, BLOCK_BYTES);
	DIR *d = opendir("/sys/class/infiniband");
	struct dirent *e;
	int rdma = 0;
	while (d && !rdma && (e = readdir(d)))
		rdma = e->d_name[0] != '.';
	if (d)
		closedir(d);
	CHECK_MSG(strstr(kvx_lender_addr_json(l), rdma ? "\"ucx\":true" : "\"ucx\":false"),
		  "rdma %d: %s", rdma, kvx_lender_addr_json(l));
	kvx_lender_free(l);
	fake_init(&fk);
	fetch_and_compare(&fk, KVX_AUTO, KVX_AUTO, 1);
}

TEST(ucx_refused_by_tcp_lender)
{
	need_ucx();
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 2, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_TCP, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_UCX, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 2);
	/* The lender's record says tcp only: refused before connecting. */
	struct kvx_fetch_req q = { .tcp_addr = e.addr, .handle = h, .count = 2, .dst = d.iov,
				   .n_dst = d.n_iov, .block_bytes = BLOCK_BYTES, .layout = LAYOUT };
	CHECK_INT(kvx_fetch_start(e.b, &q, on_done, NULL, NULL), -ENOTSUP);
	CHECK_MSG(strstr(err_msg(), "tcp only"), "%s", err_msg());
	/* A borrower told otherwise hears it from the lender. */
	struct result r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 1);
	CHECK_INT(r.rc, -EPROTONOSUPPORT);
	CHECK_MSG(strstr(r.msg, "tcp only"), "%s", r.msg);
	/* auto falls back to tcp on the same connection. */
	kvx_borrower_free(e.b);
	event_base_free(e.base);
	env_init(&e, KVX_AUTO, kvx_lender_port(l));
	r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 1);
	CHECK_MSG(r.rc == 0, "%s", r.msg);
	CHECK(!dest_check(&d, &fk, h, 0));
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	event_base_free(e.base);
}

TEST(ucx_unknown_handle_and_release)
{
	need_ucx();
	struct fake fk;
	fake_init(&fk);
	uint64_t h = fake_hold(&fk, 4, 0, 4);
	struct kvx_lender *l = lender(&fk, KVX_UCX, BLOCK_BYTES);
	struct env e;
	env_init(&e, KVX_UCX, kvx_lender_port(l));
	struct dest d;
	dest_init(&d, 4);
	struct result r = fetch(&e, 0x404, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 0, 1);
	CHECK_INT(r.rc, -ENOENT);
	r = fetch(&e, h, 0, &d, BLOCK_BYTES, LAYOUT, 5000, 1, 1);
	CHECK_MSG(r.rc == 0, "%s", r.msg);
	CHECK(!dest_check(&d, &fk, h, 0));
	CHECK(wait_release_calls(&fk, h, 1));
	kvx_borrower_free(e.b);
	kvx_lender_free(l);
	CHECK_INT(release_calls(&fk, h), 1);
	event_base_free(e.base);
}

TEST(ucx_describe)
{
	const char *d = kvx_ucx_describe();
	CHECK(!strncmp(d, "ucx ", 4));
	if (kvx_ucx_available(NULL))
		CHECK_MSG(d[4] >= '1' && d[4] <= '9', "%s", d);
}

int main(void)
{
	return RUN_TESTS();
}
