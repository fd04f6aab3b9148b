/*
 * rpc.c - request-plane server and client over TCP on libevent (see rpc.h).
 *
 * Both sides share one connection engine (struct conn): a non-blocking
 * socket, a frame_reader for input and a flat output buffer.  Frames are
 * only appended to the output buffer while callbacks run; one flush event,
 * activated on the first append, writes everything queued during the loop
 * iteration with as few send() calls as possible, and waits for EV_WRITE
 * only when the socket buffer is full.  Streams (client) and calls
 * (server) are found by request id in a small open-addressing map.
 *
 * Lifetimes: a conn is reference counted (its owner list holds one
 * reference, every libevent callback another while it runs) so closing
 * it from anywhere inside a callback is safe; its events are freed with
 * the last reference.  When a connection dies, its calls/streams are
 * first moved out of the map and marked, then told, so user callbacks
 * may cancel or finish any of them without invalidating the walk.
 */
#include "net/rpc.h"
#include "net/listener.h"
#include "net/sock.h"
#include "net/frame.h"
#include "net/tls.h"
#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define LOG_MOD "rpc"
#define READ_CHUNK (256u << 10)		/* bytes asked of each recv() */
#define OUT_KEEP_BYTES (4u << 20)	/* keep this much output buffer when idle */
#define DEFAULT_HIGH_WATER (4u << 20)
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
#define DEFAULT_IDLE_TIMEOUT_MS 60000
#define DEFAULT_HELLO_TIMEOUT_MS 10000
/* A client's handshake that stalls this long fails its calls. */
#define HANDSHAKE_TIMEOUT_MS 10000
#define DEFAULT_KEEPALIVE_MS 10000
#define MAX_ERROR_MESSAGE 4096
#define DIRECT_WRITE_MIN (32u << 10)	/* payloads written without a copy */

/* ---- request id -> object map (linear probing, backward-shift delete) -- */

struct idmap {
	uint64_t *keys;		/* 0 = empty slot (ids are never 0) */
	void **vals;
	size_t cap;		/* power of two, or 0 */
	size_t n;
};

static inline size_t idmap_home(uint64_t key, size_t cap)
{
	uint64_t h = key * 0x9E3779B97F4A7C15ull;
	return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static void *idmap_get(const struct idmap *m, uint64_t key)
{
	if (!m->n)
		return NULL;
	for (size_t i = idmap_home(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == key)
			return m->vals[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static void idmap_insert_slot(struct idmap *m, uint64_t key, void *val)
{
	size_t i = idmap_home(key, m->cap);
	while (m->keys[i])
		i = (i + 1) & (m->cap - 1);
	m->keys[i] = key;
	m->vals[i] = val;
}

/* key must not be present. */
static void idmap_put(struct idmap *m, uint64_t key, void *val)
{
	if ((m->n + 1) * 4 > m->cap * 3) {
		struct idmap old = *m;
		m->cap = old.cap ? old.cap * 2 : 16;
		m->keys = xcalloc(m->cap, sizeof(*m->keys));
		m->vals = xcalloc(m->cap, sizeof(*m->vals));
		for (size_t i = 0; i < old.cap; i++)
			if (old.keys[i])
				idmap_insert_slot(m, old.keys[i], old.vals[i]);
		free(old.keys);
		free(old.vals);
	}
	idmap_insert_slot(m, key, val);
	m->n++;
}

static void idmap_del(struct idmap *m, uint64_t key)
{
	if (!m->n)
		return;
	size_t mask = m->cap - 1, i = idmap_home(key, m->cap);
	while (m->keys[i] != key) {
		if (m->keys[i] == 0)
			return;
		i = (i + 1) & mask;
	}
	/* Shift later members of the probe run back over the hole. */
	for (size_t j = (i + 1) & mask; m->keys[j]; j = (j + 1) & mask) {
		size_t home = idmap_home(m->keys[j], m->cap);
		/* Move j to i unless its home lies cyclically in (i, j]. */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->vals[i] = NULL;
	m->n--;
}

/* Move every value into a new array (*n of them) and empty the map. */
static void **idmap_take_all(struct idmap *m, size_t *n)
{
	void **all = xmalloc((m->n ? m->n : 1) * sizeof(*all));
	size_t k = 0;
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i])
			all[k++] = m->vals[i];
	if (m->cap) {
		memset(m->keys, 0, m->cap * sizeof(*m->keys));
		memset(m->vals, 0, m->cap * sizeof(*m->vals));
	}
	m->n = 0;
	*n = k;
	return all;
}

static void idmap_release(struct idmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

/* ---- objects ---------------------------------------------------------- */

struct handler {
	char *name;
	size_t len;
	rpc_handler_fn fn;
	void *arg;
};

struct conn {
	struct event_base *base;
	struct rpc_server *srv;		/* exactly one of srv / cli is set */
	struct rpc_client *cli;
	int fd;
	SSL *ssl;			/* NULL: plain TCP */
	struct event *rd_ev, *wr_ev, *flush_ev, *timer_ev;
	struct frame_reader in;
	struct strbuf out;
	size_t out_off;			/* bytes of out already sent */
	int refs;
	unsigned closed : 1, connecting : 1, flush_scheduled : 1,
		 write_waiting : 1, ping_outstanding : 1,
		 handshaking : 1,	/* TLS: no frames in or out yet */
		 framed : 1,		/* server: a whole frame has arrived */
		 read_wants_write : 1,	/* TLS: a read waits for the socket to take data */
		 write_wants_read : 1;	/* TLS: a write waits for data to arrive */
	int deferred_err;		/* connect failure to report from the loop */
	char peer[80];			/* "HOST:PORT" (client: as asked for) */
	uint64_t last_rx_ms, last_busy_ms, ping_sent_ms;
	uint64_t opened_ms;		/* TCP up (client) or accepted (server) */
	struct idmap map;		/* id -> rpc_call (server) / rpc_stream (client) */
	uint64_t next_id;		/* client: last request id used */
	/* Server: calls waiting for the output to drain, oldest first. */
	struct rpc_call *drain_head, *drain_tail;
	uint64_t drain_gen;
	struct conn *prev, *next;	/* in the server's or client's list */
};

struct rpc_server {
	struct event_base *base;
	struct rpc_server_opts opts;
	struct listener *listener;
	int port;
	char address[300];
	struct handler *handlers;
	size_t nhandlers;
	struct conn *conns;
	struct rpc_call *calls;		/* every unfinished call */
	long live_calls;
	int stopping;
	struct rpc_server_stats stats;
};

struct rpc_call {
	struct rpc_server *srv;		/* NULL once the server is freed */
	struct conn *conn;		/* NULL once cancelled */
	const struct handler *handler;
	uint64_t id;
	unsigned cancelled : 1, finished : 1, in_batch : 1;
	void (*on_cancel)(struct rpc_call *, enum rpc_cancel_reason, void *);
	void *cancel_arg;
	void (*on_drain)(struct rpc_call *, void *);
	void *drain_arg;
	uint64_t drain_gen;
	struct rpc_call *drain_prev, *drain_next;
	int on_drain_list;
	struct rpc_call *prev, *next;	/* server's list */
};

struct rpc_client {
	struct event_base *base;
	struct rpc_client_opts opts;
	struct conn *conns;
	struct rpc_client_stats stats;
};

struct rpc_stream {
	struct rpc_client *cli;
	struct conn *conn;		/* NULL once ended, failed or cancelled */
	uint64_t id;
	struct rpc_stream_cbs cbs;
	void *arg;
	unsigned in_callback : 1, cancelled : 1, in_batch : 1;
};

static void conn_fail(struct conn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_write(struct conn *c);

/* The request plane's TLS context, set once before any loop runs. */
static SSL_CTX *rpc_tls;

int rpc_tls_configure(const char *cert, const char *key, const char *ca)
{
	SSL_CTX *ctx;
	int rc = tls_ctx_new(TLS_MUTUAL, cert, key, ca, &ctx);
	if (rc < 0)
		return rc;
	tls_ctx_free(rpc_tls);
	rpc_tls = ctx;
	return 0;
}

int rpc_tls_enabled(void)
{
	return rpc_tls != NULL;
}

/* ---- connection engine -------------------------------------------------- */

static size_t conn_max_frame(const struct conn *c)
{
	return c->srv ? c->srv->opts.max_frame : c->cli->opts.max_frame;
}

static inline size_t conn_unsent(const struct conn *c)
{
	return c->out.len - c->out_off;
}

static void conn_hold(struct conn *c)
{
	c->refs++;
}

static void conn_put(struct conn *c)
{
	if (--c->refs > 0)
		return;
	if (c->rd_ev)
		event_free(c->rd_ev);
	if (c->wr_ev)
		event_free(c->wr_ev);
	if (c->flush_ev)
		event_free(c->flush_ev);
	if (c->timer_ev)
		event_free(c->timer_ev);
	SSL_free(c->ssl);
	if (c->fd >= 0)
		close(c->fd);
	frame_reader_release(&c->in);
	sb_release(&c->out);
	idmap_release(&c->map);
	free(c);
}

/* Something was queued: write it once the current callbacks are done. */
static void conn_schedule_flush(struct conn *c)
{
	if (c->flush_scheduled || c->write_waiting || c->connecting || c->handshaking ||
	    c->closed)
		return;
	c->flush_scheduled = 1;
	event_active(c->flush_ev, EV_WRITE, 1);
}

/*
 * Queue one frame whose payload is prefix (a REQUEST's endpoint name, or
 * nothing) then data.  Small frames are copied to the output buffer and
 * go out with everything else queued in this loop turn.  A large frame
 * with nothing queued ahead of it is written straight from the caller's
 * memory (writev of header + payload), saving a copy; whatever the socket
 * does not take is queued.  Write errors are left for the flush to find,
 * so that no callback runs from inside the caller's send.
 */
static void conn_send_parts(struct conn *c, enum frame_kind kind, unsigned flags,
			    uint64_t id, uint32_t aux, const void *prefix, size_t prefix_len,
			    const void *data, size_t len)
{
	uint8_t hdr[FRAME_HEADER_SIZE];
	size_t payload = prefix_len + len, sent = 0;

	flags &= FRAME_FLAGS_KNOWN;
	frame_header_put(hdr, kind, (uint16_t)flags, id, (uint32_t)payload, aux);
	if (payload >= DIRECT_WRITE_MIN && conn_unsent(c) == 0 && !c->connecting &&
	    !c->closed && !c->write_waiting && !c->ssl) {
		struct iovec iov[3] = {
			{ hdr, sizeof(hdr) },
			{ (void *)prefix, prefix_len },
			{ (void *)data, len },
		};
		struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };
		ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
		sent = n > 0 ? (size_t)n : 0;
		if (sent == sizeof(hdr) + payload)
			return;
	}
	/* Queue what is left (all of it, normally). */
	sb_grow(&c->out, sizeof(hdr) + payload - sent);
	const struct { const void *p; size_t n; } parts[3] = {
		{ hdr, sizeof(hdr) }, { prefix, prefix_len }, { data, len },
	};
	for (int i = 0; i < 3; i++) {
		size_t skip = sent < parts[i].n ? sent : parts[i].n;
		sent -= skip;
		if (parts[i].n > skip)
			sb_add(&c->out, (const char *)parts[i].p + skip, parts[i].n - skip);
	}
	conn_schedule_flush(c);
}

static void conn_send(struct conn *c, enum frame_kind kind, unsigned flags,
		      uint64_t id, uint32_t aux, const void *payload, size_t len)
{
	conn_send_parts(c, kind, flags, id, aux, NULL, 0, payload, len);
}

/* No Nagle (writes are batched here already) and, so that a peer whose
 * machine vanished is noticed even on a silent connection, TCP keepalive
 * probes after 30 s of silence, failing the connection ~30 s later. */
static void server_dispatch(struct conn *c, const struct frame *f);
static void client_dispatch(struct conn *c, const struct frame *f);

/* ---- TLS ------------------------------------------------------------------
 * With TLS, reads and writes go through OpenSSL and report as recv() and
 * send() do (-1 with errno EAGAIN: try again on the right event).  A
 * read may need to write (a TLS 1.3 key update) and a write to read:
 * the flags make the other side's event retry them. */

static void conn_wait_writable(struct conn *c)
{
	if (!c->write_waiting) {
		c->write_waiting = 1;
		event_add(c->wr_ev, NULL);
	}
}

static ssize_t tls_result(struct conn *c, int rc, int writing)
{
	switch (SSL_get_error(c->ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		if (writing)
			c->write_wants_read = 1;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		if (!writing) {
			c->read_wants_write = 1;
			conn_wait_writable(c);
		}
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:	/* close_notify, or EOF (IGNORE_UNEXPECTED_EOF) */
		return 0;
	case SSL_ERROR_SYSCALL:
		if (!errno)
			errno = ECONNRESET;
		return -1;
	default:
		errno = EPROTO;
		return -1;
	}
}

static ssize_t conn_recv(struct conn *c, void *buf, size_t len)
{
	size_t got = 0, n;

	if (!c->ssl)
		return recv(c->fd, buf, len, 0);
	/* All that is decrypted, record after record, up to len. */
	while (got < len) {
		ERR_clear_error();
		int rc = SSL_read_ex(c->ssl, (char *)buf + got, len - got, &n);
		if (rc == 1) {
			got += n;
			continue;
		}
		ssize_t r = tls_result(c, rc, 0);
		return got ? (ssize_t)got : r;
	}
	return (ssize_t)got;
}

static ssize_t conn_send_raw(struct conn *c, const void *buf, size_t len)
{
	size_t n;

	if (!c->ssl)
		return send(c->fd, buf, len, MSG_NOSIGNAL);
	c->write_wants_read = 0;	/* set again if this one waits for input */
	ERR_clear_error();
	int rc = SSL_write_ex(c->ssl, buf, len, &n);
	return rc == 1 ? (ssize_t)n : tls_result(c, rc, 1);
}

static void conn_handshake(struct conn *c)
{
	ERR_clear_error();
	int rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		c->handshaking = 0;
		LOG_DEBUG(LOG_MOD, "TLS with %s: %s", c->peer, SSL_get_version(c->ssl));
		event_active(c->rd_ev, EV_READ, 1);	/* frames that came along */
		conn_write(c);
		return;
	}
	int e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ)
		return;		/* the read event is on */
	if (e == SSL_ERROR_WANT_WRITE) {
		conn_wait_writable(c);
		return;
	}
	char why[512];
	tls_handshake_error(c->ssl, e, why, sizeof(why));
	if (c->srv)
		LOG_WARN(LOG_MOD, "refusing connection from %s: TLS handshake failed: %s",
			 c->peer, why);
	else
		LOG_WARN(LOG_MOD, "connection to %s: TLS handshake failed: %s", c->peer, why);
	conn_fail(c, -EPROTO, "TLS handshake with %s failed: %s", c->peer, why);
}

/* Once TCP is up: the handshake runs from the events, never from inside
 * a caller (the client speaks first: its ClientHello waits for EV_WRITE). */
static void conn_tls_start(struct conn *c)
{
	c->ssl = SSL_new(rpc_tls);
	if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
		fprintf(stderr, "dyn: out of memory (TLS)\n");
		abort();
	}
	c->handshaking = 1;
	if (c->srv) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		conn_wait_writable(c);
	}
}

static void conn_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	size_t avail;
	(void)fd;
	(void)what;

	conn_hold(c);
	if (c->handshaking) {
		conn_handshake(c);
		conn_put(c);
		return;
	}
	if (c->write_wants_read) {
		c->write_wants_read = 0;
		c->write_waiting = 0;
		conn_write(c);
		if (c->closed) {
			conn_put(c);
			return;
		}
	}
	void *space = frame_reader_space(&c->in, READ_CHUNK, &avail);
	ssize_t n = conn_recv(c, space, avail);
	if (n > 0) {
		struct frame f;
		int rc = FRAME_NEED_MORE;
		frame_reader_commit(&c->in, (size_t)n);
		c->last_rx_ms = mono_ms();
		c->ping_outstanding = 0;
		while (!c->closed && (rc = frame_reader_next(&c->in, &f)) == FRAME_OK) {
			c->framed = 1;
			if (c->srv)
				server_dispatch(c, &f);
			else
				client_dispatch(c, &f);
		}
		if (!c->closed && rc < 0) {
			if (c->srv)
				c->srv->stats.protocol_errors++;
			else
				c->cli->stats.protocol_errors++;
			char why[256];
			snprintf(why, sizeof(why), "%s", err_msg());
			LOG_ERROR(LOG_MOD, "closing connection %s %s: %s",
				  c->srv ? "from" : "to", c->peer, why);
			conn_fail(c, -EPROTO, "protocol error from %s: %s", c->peer, why);
		}
		/* Decrypted bytes that did not fit wait in OpenSSL, not in
		 * the socket: come back for them. */
		if (!c->closed && c->ssl && SSL_pending(c->ssl) > 0)
			event_active(c->rd_ev, EV_READ, 1);
	} else if (n == 0) {
		conn_fail(c, -ECONNRESET, "connection closed by %s", c->peer);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
		int e = errno;
		conn_fail(c, -e, "receive from %s: %s", c->peer, strerror(e));
	}
	conn_put(c);
}

/* Tell calls waiting for drain (server), oldest first; callbacks may
 * queue more output, register again or finish any call. */
static void conn_notify_drain(struct conn *c)
{
	size_t low = c->srv->opts.low_water;
	uint64_t gen = ++c->drain_gen;

	while (!c->closed && c->drain_head && c->drain_head->drain_gen < gen &&
	       conn_unsent(c) <= low) {
		struct rpc_call *call = c->drain_head;
		c->drain_head = call->drain_next;
		if (c->drain_head)
			c->drain_head->drain_prev = NULL;
		else
			c->drain_tail = NULL;
		call->drain_next = call->drain_prev = NULL;
		call->on_drain_list = 0;
		void (*fn)(struct rpc_call *, void *) = call->on_drain;
		call->on_drain = NULL;
		if (fn)
			fn(call, call->drain_arg);
	}
}

static void conn_write(struct conn *c)
{
	if (c->closed || c->connecting || c->handshaking)
		return;
	conn_hold(c);
	while (conn_unsent(c) > 0) {
		ssize_t n = conn_send_raw(c, c->out.buf + c->out_off, conn_unsent(c));
		if (n > 0) {
			c->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (c->write_wants_read)
				c->write_waiting = 1;	/* the read event retries */
			else
				conn_wait_writable(c);
			break;
		}
		int e = n < 0 ? errno : EPIPE;
		conn_fail(c, -e, "send to %s: %s", c->peer, strerror(e));
		conn_put(c);
		return;
	}
	if (conn_unsent(c) == 0) {
		if (c->out.alloc > OUT_KEEP_BYTES)
			sb_release(&c->out);
		else
			sb_reset(&c->out);
		c->out_off = 0;
	} else if (c->out_off > (1u << 20) && c->out_off > conn_unsent(c)) {
		/* Slide the unsent tail to the front now and then. */
		memmove(c->out.buf, c->out.buf + c->out_off, conn_unsent(c));
		sb_setlen(&c->out, conn_unsent(c));
		c->out_off = 0;
	}
	if (c->srv && c->drain_head && conn_unsent(c) <= c->srv->opts.low_water)
		conn_notify_drain(c);
	conn_put(c);
}

static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	c->flush_scheduled = 0;
	conn_hold(c);
	if (c->deferred_err) {
		int e = -c->deferred_err;
		conn_fail(c, -e, "connect to %s: %s", c->peer, strerror(e));
	} else {
		conn_write(c);
	}
	conn_put(c);
}

static void client_conn_connected(struct conn *c);

static void conn_writable_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	conn_hold(c);
	c->write_waiting = 0;
	if (c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (what & EV_TIMEOUT)
			conn_fail(c, -ETIMEDOUT, "connect to %s: timed out after %lld ms",
				  c->peer, (long long)c->cli->opts.connect_timeout_ms);
		else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
			conn_fail(c, -(err ? err : errno), "connect to %s: %s", c->peer,
				  strerror(err ? err : errno));
		else
			client_conn_connected(c);
	} else if (c->handshaking) {
		conn_handshake(c);
	} else {
		if (c->read_wants_write) {
			c->read_wants_write = 0;
			conn_read_cb(c->fd, EV_READ, c);
		}
		conn_write(c);
	}
	conn_put(c);
}

static void server_conn_closed(struct conn *c, enum rpc_cancel_reason why);
static void client_conn_closed(struct conn *c, int code, const char *msg);

/* Close c (idempotent): unlink it, then tell its calls or streams. */
static void conn_fail(struct conn *c, int code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (c->closed)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->closed = 1;
	conn_hold(c);
	event_del(c->rd_ev);
	event_del(c->wr_ev);
	event_del(c->flush_ev);
	event_del(c->timer_ev);
	SSL_free(c->ssl);
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	LOG_DEBUG(LOG_MOD, "connection %s closed: %s", c->peer, msg);
	if (c->srv)
		server_conn_closed(c, code == -ESHUTDOWN ? RPC_CANCEL_SERVER
							 : RPC_CANCEL_DISCONNECT);
	else
		client_conn_closed(c, code, msg);
	conn_put(c);	/* the owner list's reference */
	conn_put(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct conn *conn_new(struct event_base *base, int fd)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->fd = fd;
	c->refs = 1;
	sb_init(&c->out, 0);
	c->rd_ev = event_new(base, fd, EV_READ | EV_PERSIST, conn_read_cb, c);
	c->wr_ev = event_new(base, fd, EV_WRITE, conn_writable_cb, c);
	c->flush_ev = event_new(base, -1, 0, conn_flush_cb, c);
	c->timer_ev = event_new(base, -1, EV_PERSIST, conn_timer_cb, c);
	if (!c->rd_ev || !c->wr_ev || !c->flush_ev || !c->timer_ev) {
		fprintf(stderr, "dyn: out of memory (libevent)\n");
		abort();
	}
	c->last_rx_ms = c->last_busy_ms = mono_ms();
	return c;
}

static void conn_start_timer(struct conn *c, int64_t a, int64_t b)
{
	/* Tick often enough to honour the shorter of two timeouts (<=0: off). */
	int64_t t = a > 0 && (b <= 0 || a < b) ? a : b;
	if (t <= 0)
		return;
	t /= 4;
	if (t < 5)
		t = 5;
	if (t > 1000)
		t = 1000;
	struct timeval tv = { (time_t)(t / 1000), (suseconds_t)((t % 1000) * 1000) };
	event_add(c->timer_ev, &tv);
}

/* ---- server --------------------------------------------------------- */

static void call_free_now(struct rpc_call *call);

static void drain_list_remove(struct rpc_call *call)
{
	struct conn *c = call->conn;
	if (!call->on_drain_list)
		return;
	if (call->drain_prev)
		call->drain_prev->drain_next = call->drain_next;
	else if (c)
		c->drain_head = call->drain_next;
	if (call->drain_next)
		call->drain_next->drain_prev = call->drain_prev;
	else if (c)
		c->drain_tail = call->drain_prev;
	call->drain_prev = call->drain_next = NULL;
	call->on_drain_list = 0;
	call->on_drain = NULL;
}

static void server_conn_closed(struct conn *c, enum rpc_cancel_reason why)
{
	struct rpc_server *s = c->srv;
	size_t n;
	struct rpc_call **calls = (struct rpc_call **)idmap_take_all(&c->map, &n);

	if (c->prev)
		c->prev->next = c->next;
	else if (s->conns == c)
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	s->stats.connections_open--;
	for (size_t i = 0; i < n; i++) {
		drain_list_remove(calls[i]);
		calls[i]->conn = NULL;
		calls[i]->cancelled = 1;
		calls[i]->in_batch = 1;
		s->stats.calls_cancelled++;
	}
	c->drain_head = c->drain_tail = NULL;
	for (size_t i = 0; i < n; i++) {
		struct rpc_call *call = calls[i];
		if (!call->finished && call->on_cancel) {
			void (*fn)(struct rpc_call *, enum rpc_cancel_reason, void *) =
				call->on_cancel;
			call->on_cancel = NULL;
			fn(call, why, call->cancel_arg);
		}
	}
	for (size_t i = 0; i < n; i++) {
		calls[i]->in_batch = 0;
		if (calls[i]->finished)
			call_free_now(calls[i]);
	}
	free(calls);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;

	conn_hold(c);
	if (c->srv) {
		int64_t idle = c->srv->opts.idle_timeout_ms;
		int64_t hello = c->srv->opts.hello_timeout_ms;
		/* A peer that never speaks the protocol must not hold a
		 * connection (and its file descriptor) for ever. */
		if (!c->framed && now - c->opened_ms >= (uint64_t)hello)
			conn_fail(c, -ETIMEDOUT, "%s from %s did not finish in %lld ms",
				  c->handshaking ? "TLS handshake" : "first frame", c->peer,
				  (long long)hello);
		else if (idle > 0 && c->map.n == 0 && now - c->last_rx_ms >= (uint64_t)idle &&
		    now - c->last_busy_ms >= (uint64_t)idle)
			conn_fail(c, -ETIMEDOUT, "idle for %lld ms", (long long)idle);
	} else {
		const struct rpc_client_opts *o = &c->cli->opts;
		if (c->handshaking && now - c->opened_ms >= HANDSHAKE_TIMEOUT_MS) {
			conn_fail(c, -ETIMEDOUT, "TLS handshake with %s did not finish in %d ms",
				  c->peer, HANDSHAKE_TIMEOUT_MS);
		} else if (c->map.n == 0) {
			if (o->idle_timeout_ms > 0 &&
			    now - c->last_busy_ms >= (uint64_t)o->idle_timeout_ms)
				conn_fail(c, -ETIMEDOUT, "idle for %lld ms",
					  (long long)o->idle_timeout_ms);
		} else if (o->keepalive_ms > 0) {
			uint64_t ka = (uint64_t)o->keepalive_ms;
			if (c->ping_outstanding && now - c->ping_sent_ms >= ka) {
				conn_fail(c, -ETIMEDOUT, "no reply from %s for %llu ms",
					  c->peer, (unsigned long long)(now - c->last_rx_ms));
			} else if (!c->ping_outstanding && now - c->last_rx_ms >= ka) {
				c->ping_outstanding = 1;
				c->ping_sent_ms = now;
				conn_send(c, FRAME_PING, 0, 0, 0, NULL, 0);
			}
		}
	}
	conn_put(c);
}

static const struct handler *find_handler(const struct rpc_server *s,
					  const char *name, size_t len)
{
	for (size_t i = 0; i < s->nhandlers; i++)
		if (s->handlers[i].len == len && !memcmp(s->handlers[i].name, name, len))
			return &s->handlers[i];
	return NULL;
}

static void server_send_error(struct conn *c, uint64_t id, int code, const char *msg)
{
	size_t len = strlen(msg);
	if (len > conn_max_frame(c))
		len = conn_max_frame(c);
	conn_send(c, FRAME_ERROR, 0, id, (uint32_t)code, msg, len);
}

static void server_request(struct conn *c, const struct frame *f)
{
	struct rpc_server *s = c->srv;

	if (idmap_get(&c->map, f->id)) {
		s->stats.protocol_errors++;
		LOG_ERROR(LOG_MOD, "closing connection from %s: request id %llu reused while active",
			  c->peer, (unsigned long long)f->id);
		conn_fail(c, -EPROTO, "request id reused");
		return;
	}
	const struct handler *h = find_handler(s, f->endpoint, f->endpoint_len);
	if (!h) {
		char msg[320];
		snprintf(msg, sizeof(msg), "no endpoint '%.*s' here", (int)f->endpoint_len,
			 f->endpoint);
		LOG_DEBUG(LOG_MOD, "%s: %s", c->peer, msg);
		server_send_error(c, f->id, FRAME_ERR_NO_ENDPOINT, msg);
		return;
	}
	if (s->stopping) {
		server_send_error(c, f->id, FRAME_ERR_UNAVAILABLE,
				  FRAME_DRAINING " the server is shutting down; try another");
		return;
	}
	struct rpc_call *call = xcalloc(1, sizeof(*call));
	call->srv = s;
	call->conn = c;
	call->handler = h;
	call->id = f->id;
	call->next = s->calls;
	if (s->calls)
		s->calls->prev = call;
	s->calls = call;
	s->live_calls++;
	s->stats.calls_started++;
	idmap_put(&c->map, f->id, call);
	c->last_busy_ms = c->last_rx_ms;
	h->fn(call, f->body, f->body_len, f->flags, h->arg);
}

static void cancel_call(struct rpc_call *call, enum rpc_cancel_reason why)
{
	struct conn *c = call->conn;

	drain_list_remove(call);
	idmap_del(&c->map, call->id);
	call->conn = NULL;
	call->cancelled = 1;
	if (call->srv)
		call->srv->stats.calls_cancelled++;
	void (*fn)(struct rpc_call *, enum rpc_cancel_reason, void *) = call->on_cancel;
	call->on_cancel = NULL;
	if (fn)
		fn(call, why, call->cancel_arg);	/* may free call */
}

static void server_dispatch(struct conn *c, const struct frame *f)
{
	switch (f->kind) {
	case FRAME_REQUEST:
		server_request(c, f);
		break;
	case FRAME_CANCEL: {
		struct rpc_call *call = idmap_get(&c->map, f->id);
		LOG_TRACE(LOG_MOD, "%s: CANCEL %llu%s", c->peer,
			  (unsigned long long)f->id, call ? "" : " (already done)");
		if (call)
			cancel_call(call, RPC_CANCEL_CLIENT);
		break;
	}
	case FRAME_PING:
		conn_send(c, FRAME_PONG, f->flags, f->id, 0, f->payload, f->length);
		break;
	case FRAME_PONG:
		break;
	default:
		c->srv->stats.protocol_errors++;
		LOG_ERROR(LOG_MOD, "closing connection from %s: unexpected %s frame from a client",
			  c->peer, frame_kind_name(f->kind));
		conn_fail(c, -EPROTO, "unexpected %s frame", frame_kind_name(f->kind));
	}
}

static void server_accept_cb(int fd, const char *peer, void *arg)
{
	struct rpc_server *s = arg;

	sock_tune(fd);
	struct conn *c = conn_new(s->base, fd);
	c->srv = s;
	frame_reader_init(&c->in, s->opts.max_frame);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->stats.connections_accepted++;
	s->stats.connections_open++;
	event_add(c->rd_ev, NULL);
	c->opened_ms = mono_ms();
	conn_start_timer(c, s->opts.idle_timeout_ms, s->opts.hello_timeout_ms);
	if (rpc_tls)
		conn_tls_start(c);
	LOG_DEBUG(LOG_MOD, "connection from %s", c->peer);
}

int rpc_server_new(struct event_base *base, const struct rpc_server_opts *opts,
		   struct rpc_server **out)
{
	struct rpc_server *s = xcalloc(1, sizeof(*s));

	if (opts)
		s->opts = *opts;
	if (!s->opts.max_frame)
		s->opts.max_frame = FRAME_DEFAULT_MAX_PAYLOAD;
	if (s->opts.max_frame > UINT32_MAX)
		s->opts.max_frame = UINT32_MAX;
	if (!s->opts.high_water)
		s->opts.high_water = DEFAULT_HIGH_WATER;
	if (!s->opts.low_water || s->opts.low_water > s->opts.high_water)
		s->opts.low_water = s->opts.high_water / 4;
	if (s->opts.hello_timeout_ms <= 0)
		s->opts.hello_timeout_ms = DEFAULT_HELLO_TIMEOUT_MS;
	s->base = base;
	*out = s;
	return 0;
}

int rpc_server_handle(struct rpc_server *s, const char *endpoint,
		      rpc_handler_fn fn, void *arg)
{
	size_t len = strlen(endpoint);
	if (!frame_endpoint_valid(endpoint, len))
		return err_set(-EINVAL, "bad endpoint name '%s' (1-%d visible ASCII characters)",
			       endpoint, FRAME_MAX_ENDPOINT);
	if (find_handler(s, endpoint, len))
		return err_set(-EEXIST, "endpoint '%s' is already served", endpoint);
	s->handlers = xrealloc(s->handlers, (s->nhandlers + 1) * sizeof(*s->handlers));
	s->handlers[s->nhandlers++] = (struct handler){ xstrdup(endpoint), len, fn, arg };
	return 0;
}

int rpc_server_listen(struct rpc_server *s, const char *host, int port)
{
	if (s->listener)
		return err_set(-EALREADY, "server is already listening on port %d", s->port);
	int rc = listener_open(s->base, host, port, 1024, LOG_MOD, server_accept_cb, s,
			       &s->listener);
	if (rc < 0)
		return rc;
	s->port = listener_port(s->listener);

	sock_advertise(s->address, sizeof(s->address), host, s->port);
	LOG_DEBUG(LOG_MOD, "listening on %s", s->address);
	return 0;
}

int rpc_server_port(const struct rpc_server *s)
{
	return s->port;
}

const char *rpc_server_address(const struct rpc_server *s)
{
	return s->address;
}

void rpc_server_stop_accepting(struct rpc_server *s)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	listener_free(s->listener);
	s->listener = NULL;
	LOG_DEBUG(LOG_MOD, "stopped accepting; %ld call(s) in flight", s->live_calls);
}

long rpc_server_abort_calls(struct rpc_server *s, int code, const char *msg)
{
	long n = 0;
	/* A handler's on_cancel may finish other calls too: find the next
	 * live one afresh each time. */
	for (;;) {
		struct rpc_call *call = s->calls;
		while (call && (call->cancelled || call->finished || !call->conn))
			call = call->next;
		if (!call)
			return n;
		server_send_error(call->conn, call->id, code, msg);
		cancel_call(call, RPC_CANCEL_SERVER);
		n++;
	}
}

long rpc_server_in_flight(const struct rpc_server *s)
{
	return s->live_calls;
}

static void hook_stop(void *arg)
{
	rpc_server_stop_accepting(arg);
}

/* Calls, and connections whose answers are not all written yet: a
 * draining process waits for both, so that no call's last frame is lost
 * in an unsent buffer when it exits. */
static long hook_in_flight(void *arg)
{
	const struct rpc_server *s = arg;
	long n = rpc_server_in_flight(s);
	for (const struct conn *c = s->conns; c; c = c->next)
		if (!c->closed && c->out.len > c->out_off)
			n++;
	return n;
}

void rpc_server_hooks(struct rpc_server *s, struct runtime_hooks *out)
{
	*out = (struct runtime_hooks){ .stop_accepting = hook_stop, .in_flight = hook_in_flight,
					.arg = s };
}

void rpc_server_stats(const struct rpc_server *s, struct rpc_server_stats *out)
{
	*out = s->stats;
}

void rpc_server_free(struct rpc_server *s)
{
	if (!s)
		return;
	rpc_server_stop_accepting(s);
	while (s->conns)
		conn_fail(s->conns, -ESHUTDOWN, "server stopped");
	/* Calls the handlers still hold outlive the server. */
	for (struct rpc_call *call = s->calls, *next; call; call = next) {
		next = call->next;
		call->srv = NULL;
		call->prev = call->next = NULL;
	}
	for (size_t i = 0; i < s->nhandlers; i++)
		free(s->handlers[i].name);
	free(s->handlers);
	free(s);
}

/* ---- a call, server side ------------------------------------------- */

const char *rpc_call_endpoint(const struct rpc_call *c)
{
	return c->handler->name;
}

uint64_t rpc_call_id(const struct rpc_call *c)
{
	return c->id;
}

const char *rpc_call_peer(const struct rpc_call *c)
{
	return c->conn ? c->conn->peer : "";
}

int rpc_call_cancelled(const struct rpc_call *c)
{
	return c->cancelled;
}

static void call_free_now(struct rpc_call *call)
{
	struct rpc_server *s = call->srv;
	if (s) {
		if (call->prev)
			call->prev->next = call->next;
		else
			s->calls = call->next;
		if (call->next)
			call->next->prev = call->prev;
		s->live_calls--;
	}
	free(call);
}

/* The handler is done with call. */
static void call_release(struct rpc_call *call)
{
	if (call->finished)
		return;
	call->finished = 1;
	if (call->conn) {
		drain_list_remove(call);
		idmap_del(&call->conn->map, call->id);
		call->conn->last_busy_ms = mono_ms();
		call->conn = NULL;
	}
	if (!call->in_batch)
		call_free_now(call);
}

int rpc_call_send(struct rpc_call *c, const void *data, size_t len, unsigned flags)
{
	if (!c->conn)
		return err_set(-ECANCELED, "call %llu was cancelled", (unsigned long long)c->id);
	if (len > conn_max_frame(c->conn))
		return err_set(-EMSGSIZE, "DATA of %zu bytes exceeds the frame limit of %zu bytes",
			       len, conn_max_frame(c->conn));
	conn_send(c->conn, FRAME_DATA, flags, c->id, 0, data, len);
	return 0;
}

int rpc_call_end(struct rpc_call *c, const void *data, size_t len, unsigned flags)
{
	int rc = 0;
	if (!c->conn) {
		rc = err_set(-ECANCELED, "call %llu was cancelled", (unsigned long long)c->id);
	} else if (len > conn_max_frame(c->conn)) {
		rc = err_set(-EMSGSIZE, "END of %zu bytes exceeds the frame limit of %zu bytes",
			     len, conn_max_frame(c->conn));
		server_send_error(c->conn, c->id, FRAME_ERR_TOO_LARGE,
				  "response exceeds the frame size limit");
	} else {
		conn_send(c->conn, FRAME_END, flags, c->id, 0, data, len);
	}
	call_release(c);
	return rc;
}

int rpc_call_error(struct rpc_call *c, int code, const char *fmt, ...)
{
	int rc = 0;
	if (!c->conn) {
		rc = err_set(-ECANCELED, "call %llu was cancelled", (unsigned long long)c->id);
	} else {
		char msg[MAX_ERROR_MESSAGE];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		server_send_error(c->conn, c->id, code > 0 ? code : FRAME_ERR_INTERNAL, msg);
	}
	call_release(c);
	return rc;
}

void rpc_call_finish(struct rpc_call *c)
{
	/* Finishing a live call without a final frame would leave the
	 * client waiting: tell it the stream is abandoned. */
	if (c->conn)
		conn_send(c->conn, FRAME_CANCEL, 0, c->id, 0, NULL, 0);
	call_release(c);
}

void rpc_call_on_cancel(struct rpc_call *c,
			void (*fn)(struct rpc_call *, enum rpc_cancel_reason, void *),
			void *arg)
{
	c->on_cancel = fn;
	c->cancel_arg = arg;
}

size_t rpc_call_buffered(const struct rpc_call *c)
{
	return c->conn ? conn_unsent(c->conn) : 0;
}

int rpc_call_writable(const struct rpc_call *c)
{
	return c->conn && conn_unsent(c->conn) < c->srv->opts.high_water;
}

void rpc_call_on_drain(struct rpc_call *c, void (*fn)(struct rpc_call *, void *),
		       void *arg)
{
	struct conn *conn = c->conn;
	if (!conn)
		return;
	drain_list_remove(c);
	c->on_drain = fn;
	c->drain_arg = arg;
	if (!fn)
		return;
	c->drain_gen = conn->drain_gen;
	c->drain_prev = conn->drain_tail;
	c->drain_next = NULL;
	if (conn->drain_tail)
		conn->drain_tail->drain_next = c;
	else
		conn->drain_head = c;
	conn->drain_tail = c;
	c->on_drain_list = 1;
	/* Already drained: let the flush event deliver it from the loop. */
	if (!conn->flush_scheduled && !conn->write_waiting) {
		conn->flush_scheduled = 1;
		event_active(conn->flush_ev, EV_WRITE, 1);
	}
}

/* ---- client --------------------------------------------------------- */

static void stream_free(struct rpc_stream *st)
{
	free(st);
}

static void client_unlink(struct conn *c)
{
	struct rpc_client *cli = c->cli;
	if (c->prev)
		c->prev->next = c->next;
	else if (cli->conns == c)
		cli->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	cli->stats.connections_open--;
}

static void client_conn_closed(struct conn *c, int code, const char *msg)
{
	size_t n;
	struct rpc_stream **sts = (struct rpc_stream **)idmap_take_all(&c->map, &n);

	client_unlink(c);
	for (size_t i = 0; i < n; i++) {
		sts[i]->conn = NULL;
		sts[i]->in_batch = 1;
	}
	for (size_t i = 0; i < n; i++) {
		struct rpc_stream *st = sts[i];
		if (!st->cancelled && st->cbs.on_error) {
			st->in_callback = 1;
			st->cbs.on_error(st, code, msg, st->arg);
			st->in_callback = 0;
		}
		st->cancelled = 1;
	}
	for (size_t i = 0; i < n; i++)
		stream_free(sts[i]);
	free(sts);
}

static void client_conn_connected(struct conn *c)
{
	c->connecting = 0;
	c->last_rx_ms = c->opened_ms = mono_ms();
	event_add(c->rd_ev, NULL);
	conn_start_timer(c, c->cli->opts.idle_timeout_ms, c->cli->opts.keepalive_ms);
	LOG_DEBUG(LOG_MOD, "connected to %s", c->peer);
	if (rpc_tls)
		conn_tls_start(c);
	else
		conn_write(c);
}

/* The stream got its final frame (or was cancelled): forget its id. */
static void stream_detach(struct rpc_stream *st)
{
	struct conn *c = st->conn;
	if (!c)
		return;
	idmap_del(&c->map, st->id);
	if (c->map.n == 0)
		c->last_busy_ms = mono_ms();
	st->conn = NULL;
}

static void client_dispatch(struct conn *c, const struct frame *f)
{
	switch (f->kind) {
	case FRAME_PING:
		conn_send(c, FRAME_PONG, f->flags, f->id, 0, f->payload, f->length);
		return;
	case FRAME_PONG:
		return;
	case FRAME_REQUEST:
		c->cli->stats.protocol_errors++;
		LOG_ERROR(LOG_MOD, "closing connection to %s: a server sent a REQUEST frame",
			  c->peer);
		conn_fail(c, -EPROTO, "protocol error from %s: unexpected REQUEST frame",
			  c->peer);
		return;
	default:
		break;
	}
	struct rpc_stream *st = idmap_get(&c->map, f->id);
	if (!st) {
		/* Frames still in flight after a cancel end up here. */
		LOG_TRACE(LOG_MOD, "%s: %s for unknown stream %llu ignored", c->peer,
			  frame_kind_name(f->kind), (unsigned long long)f->id);
		return;
	}
	st->in_callback = 1;
	switch (f->kind) {
	case FRAME_DATA:
		if (st->cbs.on_data)
			st->cbs.on_data(st, f->payload, f->length, f->flags, st->arg);
		st->in_callback = 0;
		if (st->cancelled)
			stream_free(st);
		return;
	case FRAME_END:
		stream_detach(st);
		if (st->cbs.on_end)
			st->cbs.on_end(st, f->payload, f->length, f->flags, st->arg);
		break;
	case FRAME_ERROR: {
		char msg[MAX_ERROR_MESSAGE];
		size_t n = f->length < sizeof(msg) - 1 ? f->length : sizeof(msg) - 1;
		memcpy(msg, f->payload, n);
		msg[n] = '\0';
		stream_detach(st);
		if (st->cbs.on_error)
			st->cbs.on_error(st, f->aux > INT32_MAX ? INT32_MAX : (int)f->aux,
					 msg, st->arg);
		break;
	}
	case FRAME_CANCEL:
		stream_detach(st);
		if (st->cbs.on_error)
			st->cbs.on_error(st, -ECANCELED, "the server abandoned the stream",
					 st->arg);
		break;
	default:
		break;
	}
	stream_free(st);
}

int rpc_client_new(struct event_base *base, const struct rpc_client_opts *opts,
		   struct rpc_client **out)
{
	struct rpc_client *c = xcalloc(1, sizeof(*c));
	if (opts)
		c->opts = *opts;
	if (!c->opts.max_frame)
		c->opts.max_frame = FRAME_DEFAULT_MAX_PAYLOAD;
	if (c->opts.max_frame > UINT32_MAX)
		c->opts.max_frame = UINT32_MAX;
	if (!c->opts.connect_timeout_ms)
		c->opts.connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (!c->opts.idle_timeout_ms)
		c->opts.idle_timeout_ms = DEFAULT_IDLE_TIMEOUT_MS;
	if (!c->opts.keepalive_ms)
		c->opts.keepalive_ms = DEFAULT_KEEPALIVE_MS;
	c->base = base;
	*out = c;
	return 0;
}

/* A new connection to address; connect errors are reported from the loop. */
static int client_connect(struct rpc_client *cli, const char *address, struct conn **out)
{
	char host[256];
	int port = 0, rc;
	struct addrinfo *res;

	if (strlen(address) >= sizeof(((struct conn *)0)->peer))
		return err_set(-EINVAL, "bad address '%s' (too long)", address);
	rc = sock_split_address(address, host, sizeof(host), &port);
	if (rc < 0)
		return rc;
	rc = sock_resolve(host, port, 0, &res);
	if (rc < 0)
		return rc;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int e = errno;
		freeaddrinfo(res);
		return err_set(-e, "socket: %s", strerror(e));
	}
	sock_tune(fd);
	struct conn *c = conn_new(cli->base, fd);
	c->cli = cli;
	frame_reader_init(&c->in, cli->opts.max_frame);
	snprintf(c->peer, sizeof(c->peer), "%s", address);
	c->connecting = 1;
	if (connect(fd, res->ai_addr, res->ai_addrlen) == 0) {
		c->connecting = 0;
		event_add(c->rd_ev, NULL);
		conn_start_timer(c, cli->opts.idle_timeout_ms, cli->opts.keepalive_ms);
		if (rpc_tls)
			conn_tls_start(c);
	} else if (errno == EINPROGRESS) {
		int64_t t = cli->opts.connect_timeout_ms;
		struct timeval tv = { (time_t)(t / 1000), (suseconds_t)((t % 1000) * 1000) };
		c->write_waiting = 1;
		event_add(c->wr_ev, t > 0 ? &tv : NULL);
	} else {
		c->deferred_err = -errno;
		c->flush_scheduled = 1;
		event_active(c->flush_ev, EV_WRITE, 1);
	}
	freeaddrinfo(res);
	c->next = cli->conns;
	if (cli->conns)
		cli->conns->prev = c;
	cli->conns = c;
	cli->stats.connections_opened++;
	cli->stats.connections_open++;
	*out = c;
	return 0;
}

int rpc_call(struct rpc_client *cli, const char *address, const char *endpoint,
	     const void *payload, size_t len, unsigned flags,
	     const struct rpc_stream_cbs *cbs, void *arg, struct rpc_stream **out)
{
	struct conn *c;
	size_t name_len = strlen(endpoint);
	int rc;

	if (!frame_endpoint_valid(endpoint, name_len))
		return err_set(-EINVAL, "bad endpoint name '%s' (1-%d visible ASCII characters)",
			       endpoint, FRAME_MAX_ENDPOINT);
	if (len > cli->opts.max_frame || name_len + len > cli->opts.max_frame)
		return err_set(-EMSGSIZE, "request of %zu bytes exceeds the frame limit of %zu bytes",
			       name_len + len, cli->opts.max_frame);
	for (c = cli->conns; c; c = c->next)
		if (!strcmp(c->peer, address))
			break;
	if (!c) {
		rc = client_connect(cli, address, &c);
		if (rc < 0)
			return rc;
	}
	struct rpc_stream *st = xcalloc(1, sizeof(*st));
	st->cli = cli;
	st->conn = c;
	st->id = ++c->next_id;
	if (cbs)
		st->cbs = *cbs;
	st->arg = arg;
	idmap_put(&c->map, st->id, st);
	conn_send_parts(c, FRAME_REQUEST, flags, st->id, (uint32_t)name_len, endpoint,
			name_len, payload, len);
	cli->stats.calls_started++;
	if (out)
		*out = st;
	return 0;
}

void rpc_stream_cancel(struct rpc_stream *st)
{
	if (st->cancelled)
		return;
	st->cancelled = 1;
	struct conn *c = st->conn;
	if (c) {
		stream_detach(st);
		if (!c->closed)
			conn_send(c, FRAME_CANCEL, 0, st->id, 0, NULL, 0);
	}
	if (!st->in_callback && !st->in_batch)
		stream_free(st);
}

uint64_t rpc_stream_id(const struct rpc_stream *st)
{
	return st->id;
}

void rpc_client_stats(const struct rpc_client *c, struct rpc_client_stats *out)
{
	*out = c->stats;
}

void rpc_client_free(struct rpc_client *cli)
{
	if (!cli)
		return;
	while (cli->conns) {
		struct conn *c = cli->conns;
		size_t n;
		struct rpc_stream **sts = (struct rpc_stream **)idmap_take_all(&c->map, &n);
		/* Best effort: tell the server to stop producing. */
		for (size_t i = 0; i < n; i++) {
			if (!c->connecting)
				frame_append(&c->out, FRAME_CANCEL, 0, sts[i]->id, 0, NULL, 0);
			stream_free(sts[i]);
		}
		free(sts);
		if (!c->connecting && conn_unsent(c))
			(void)!send(c->fd, c->out.buf + c->out_off, conn_unsent(c),
				    MSG_NOSIGNAL | MSG_DONTWAIT);
		conn_fail(c, -ESHUTDOWN, "client closed");
	}
	free(cli);
}
