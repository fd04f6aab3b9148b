/*
 * kv_xfer.c - the data plane's lender and borrower over TCP (kv_xfer.h);
 * the UCX transport is kv_xfer_ucx.c, the messages kv_xfer_wire.c.
 *
 * Sockets are non-blocking and every read and write waits in poll() for
 * what is left of its deadline, so that a dead or slow peer costs a
 * timeout, never a hung thread; a borrower's cancel shuts its socket down,
 * which wakes that poll at once.  With TLS (--kv-transfer-tls) the same
 * reads and writes go through OpenSSL on the same non-blocking sockets.
 */
#include "net/kv_xfer.h"
#include "net/kv_xfer_ucx.h"
#include "net/kv_xfer_wire.h"
#include "net/sock.h"
#include "net/tls.h"
#include "core/err.h"
#include "core/log.h"
#include "core/offload.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>
#include <openssl/err.h>

#define LOG_MOD "kv_xfer"

#define IO_TIMEOUT_MS 10000	/* a request's bytes, a reply's write */
#define IDLE_TIMEOUT_MS 60000	/* a lender's connection between requests */
#define MAX_CONNS 256		/* a lender's connections at once */
#define FETCH_THREADS 8		/* a borrower's fetches at once */
#define DEFAULT_TIMEOUT_MS 10000
#define MAX_KEPT 1024		/* a borrower's connections kept for later fetches */

const char *const kvx_transport_names[] = { "tcp", "ucx", "auto", NULL };

/* ---- blocking I/O with deadlines on non-blocking sockets ------------- */

/* Wait until fd is ready for events or deadline (mono_ms) passes. */
static int wait_fd(int fd, short events, uint64_t deadline, const char *what)
{
	for (;;) {
		uint64_t now = mono_ms();
		if (now >= deadline)
			return err_set(-ETIMEDOUT, "%s: timed out", what);
		uint64_t left = deadline - now;
		struct pollfd p = { fd, events, 0 };
		int n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return err_set(-errno, "%s: poll: %s", what, strerror(errno));
	}
}

/* One read or write as readv()/sendmsg() report it (-1 with errno EAGAIN:
 * wait for *ev); with ssl, through OpenSSL, one iovec at a time (a read
 * may need to write and a write to read: *ev says which). */
static ssize_t io_some(int fd, SSL *ssl, struct iovec *iov, int n, int writing, short *ev)
{
	size_t k;
	*ev = writing ? POLLOUT : POLLIN;
	if (!ssl && writing) {
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		return sendmsg(fd, &mh, MSG_NOSIGNAL);
	}
	if (!ssl)
		return readv(fd, iov, n);
	ERR_clear_error();
	errno = 0;
	int rc = writing ? SSL_write_ex(ssl, iov->iov_base, iov->iov_len, &k)
			 : SSL_read_ex(ssl, iov->iov_base, iov->iov_len, &k);
	if (rc == 1)
		return (ssize_t)k;
	switch (SSL_get_error(ssl, rc)) {
	case SSL_ERROR_WANT_READ:
		*ev = POLLIN;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_WANT_WRITE:
		*ev = POLLOUT;
		errno = EAGAIN;
		return -1;
	case SSL_ERROR_ZERO_RETURN:	/* close_notify, or EOF (IGNORE_UNEXPECTED_EOF) */
		return 0;
	case SSL_ERROR_SYSCALL:
		if (!errno || errno == EAGAIN)
			errno = ECONNRESET;
		return -1;
	default:
		errno = EPROTO;
		return -1;
	}
}

/* Read or write all of iov[0..n) (which it advances); a peer that closes
 * is -ECONNRESET.  Batches of IOV_MAX per system call. */
static int xfer_iov(int fd, SSL *ssl, struct iovec *iov, int n, int writing, uint64_t deadline,
		    const char *what)
{
	while (n > 0) {
		if (iov->iov_len == 0) {
			iov++, n--;
			continue;
		}
		short ev;
		ssize_t k = io_some(fd, ssl, iov, n < IOV_MAX ? n : IOV_MAX, writing, &ev);
		if (k == 0)
			return err_set(-ECONNRESET, "%s: connection closed by the peer", what);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return err_set(-errno, "%s: %s", what, strerror(errno));
			int rc = wait_fd(fd, ev, deadline, what);
			if (rc < 0)
				return rc;
			continue;
		}
		size_t done = (size_t)k;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++, n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	return 0;
}

static int read_full(int fd, SSL *ssl, void *buf, size_t len, uint64_t deadline,
		     const char *what)
{
	struct iovec iov = { buf, len };
	return xfer_iov(fd, ssl, &iov, 1, 0, deadline, what);
}

static int write_full(int fd, SSL *ssl, const void *buf, size_t len, uint64_t deadline,
		      const char *what)
{
	struct iovec iov = { (void *)buf, len };
	return xfer_iov(fd, ssl, &iov, 1, 1, deadline, what);
}

/* TLS on a connected socket (accepting, or connecting), the handshake
 * done by deadline; *out is set even on failure (the caller frees it). */
static int tls_open(SSL_CTX *ctx, int fd, int accepting, uint64_t deadline, const char *peer,
		    SSL **out)
{
	SSL *ssl = SSL_new(ctx);
	if (!ssl || !SSL_set_fd(ssl, fd)) {
		fprintf(stderr, "dyn: out of memory (TLS)\n");
		abort();
	}
	*out = ssl;
	if (accepting)
		SSL_set_accept_state(ssl);
	else
		SSL_set_connect_state(ssl);
	for (;;) {
		ERR_clear_error();
		int rc = SSL_do_handshake(ssl), e;
		if (rc == 1)
			return 0;
		e = SSL_get_error(ssl, rc);
		if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
			char why[512];
			return err_set(-EPROTO, "TLS handshake with %s failed: %s", peer,
				       tls_handshake_error(ssl, e, why, sizeof(why)));
		}
		if ((rc = wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline,
				  "TLS handshake")) < 0)
			return rc;
	}
}

/* ---- UCX availability ------------------------------------------------- */

/* An RDMA device (InfiniBand, RoCE) is what makes UCX faster than dyn's
 * own TCP: without one UCX moves the bytes over sockets too, and slower. */
static int rdma_device_present(void)
{
	DIR *d = opendir("/sys/class/infiniband");
	struct dirent *e;
	int found = 0;
	while (d && !found && (e = readdir(d)))
		found = e->d_name[0] != '.';
	if (d)
		closedir(d);
	return found;
}

/* What auto means here: ucx where UCX loads and an RDMA device is present,
 * else tcp.  tcp and ucx stay as asked. */
/* What auto means here: ucx, or tcp and *why. */
static enum kvx_transport resolve(enum kvx_transport t, const char **why)
{
	if (t != KVX_AUTO)
		return t;
	if (!kvx_ucx_available(why))
		return KVX_TCP;
	if (!rdma_device_present()) {
		*why = "no RDMA device; --kv-transport ucx forces UCX";
		return KVX_TCP;
	}
	return t;
}

static enum kvx_transport ucx_or_tcp(enum kvx_transport t, const char *side)
{
	const char *why = NULL;
	enum kvx_transport r = resolve(t, &why);
	if (t == KVX_AUTO && r == KVX_TCP)
		LOG_INFO(LOG_MOD, "%s: using tcp (%s)", side, why);
	return r;
}

void *kvx_pool_alloc(enum kvx_transport t, size_t bytes)
{
	const char *why;
	void *p = NULL;
	if (resolve(t, &why) == KVX_UCX && (p = kvx_ucx_pool_alloc(bytes)))
		memset(p, 0, bytes);
	return p;
}

void kvx_pool_free(void *p)
{
	if (p)
		kvx_ucx_pool_free(p);
}

/* ---- lender ------------------------------------------------------------ */

struct lconn {
	struct kvx_lender *l;
	int fd;
	SSL *ssl;		/* NULL: plain TCP */
	pthread_t thread;
	atomic_int finished;
	char peer[NI_MAXHOST + NI_MAXSERV + 16];
	uint64_t *held;		/* handles FETCHed here and not RELEASEd */
	int n_held, cap_held;
	struct lconn *next;
};

struct kvx_lender {
	struct kvx_lender_ops ops;
	char *layout;
	size_t block_bytes;
	int fd, port, stop_fd;
	pthread_t accept_thread;
	pthread_mutex_t mu;
	struct lconn *conns;	/* under mu */
	int n_conns;		/* under mu */
	struct kvx_ucx_lender *ucx;
	SSL_CTX *tls;		/* NULL: plain TCP */
	char addr_json[320];
};

static void held_add(struct lconn *c, uint64_t h)
{
	for (int i = 0; i < c->n_held; i++)
		if (c->held[i] == h)
			return;
	if (c->n_held == c->cap_held) {
		c->cap_held = c->cap_held ? 2 * c->cap_held : 8;
		c->held = xrealloc(c->held, (size_t)c->cap_held * sizeof(*c->held));
	}
	c->held[c->n_held++] = h;
}

static void held_remove(struct lconn *c, uint64_t h)
{
	for (int i = 0; i < c->n_held; i++)
		if (c->held[i] == h) {
			c->held[i] = c->held[--c->n_held];
			return;
		}
}

/* Send a whole reply head (and iov after it); errors end the connection. */
static int send_reply(struct lconn *c, struct strbuf *head, struct iovec *iov, int n)
{
	struct iovec *all = xmalloc(((size_t)n + 1) * sizeof(*all));
	all[0] = (struct iovec){ head->buf, head->len };
	if (n)
		memcpy(all + 1, iov, (size_t)n * sizeof(*iov));
	int rc = xfer_iov(c->fd, c->ssl, all, n + 1, 1, mono_ms() + IO_TIMEOUT_MS, c->peer);
	free(all);
	return rc;
}

static int send_error(struct lconn *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int send_error(struct lconn *c, int code, const char *fmt, ...)
{
	struct strbuf head = STRBUF_INIT, msg = STRBUF_INIT;
	va_list ap;
	va_start(ap, fmt);
	sb_vaddf(&msg, fmt, ap);
	va_end(ap);
	LOG_DEBUG(LOG_MOD, "%s: refused: %s", c->peer, msg.buf);
	kvx_reply_add_status(&head, (uint32_t)code, msg.buf);
	int rc = send_reply(c, &head, NULL, 0);
	sb_release(&head);
	sb_release(&msg);
	return rc;
}

/* The segments of a FETCH, adjacent ones merged; grows the array while
 * ops fill all of it (a full array may mean more were left out). */
static int fetch_segments(struct kvx_lender *l, const struct kvx_req *r, struct iovec **out)
{
	int cap = r->count < 32 ? 64 : (int)r->count * 2, n;
	struct iovec *iov = NULL;
	for (;;) {
		iov = xrealloc(iov, (size_t)cap * sizeof(*iov));
		n = l->ops.segments(l->ops.arg, r->handle, r->first, r->count, iov, cap);
		if (n < cap || cap >= (int)KVX_MAX_SEGS)
			break;
		cap *= 2;
	}
	if (n < 0) {
		free(iov);
		return n;
	}
	int m = 0;
	for (int i = 0; i < n; i++) {
		if (m && (char *)iov[m - 1].iov_base + iov[m - 1].iov_len == iov[i].iov_base)
			iov[m - 1].iov_len += iov[i].iov_len;
		else if (iov[i].iov_len)
			iov[m++] = iov[i];
	}
	*out = iov;
	return m;
}

static int serve_fetch(struct lconn *c, const struct kvx_req *r)
{
	struct kvx_lender *l = c->l;
	struct strbuf head = STRBUF_INIT;
	struct iovec *iov = NULL;
	int rc;

	if (r->block_bytes != l->block_bytes)
		return send_error(c, EPROTO, "block_bytes %llu (borrower) differs from %zu (lender)",
				  (unsigned long long)r->block_bytes, l->block_bytes);
	if (strcmp(r->layout, l->layout))
		return send_error(c, EPROTO, "KV layout '%s' (borrower) differs from '%s' (lender)",
				  r->layout, l->layout);
	if (r->op == KVX_OP_FETCH_UCX && !l->ucx)
		return send_error(c, EPROTONOSUPPORT, "this lender offers tcp only (no UCX)");
	int n = fetch_segments(l, r, &iov);
	if (n == -ENOENT)
		return send_error(c, ENOENT, "handle %016llx is not held (unknown or released)",
				  (unsigned long long)r->handle);
	if (n == -ERANGE)
		return send_error(c, ERANGE, "blocks [%u, %llu) are beyond the hold of handle %016llx",
				  r->first, (unsigned long long)r->first + r->count,
				  (unsigned long long)r->handle);
	if (n < 0)
		return send_error(c, -n, "handle %016llx: %s", (unsigned long long)r->handle,
				  err_msg());
	uint64_t want = (uint64_t)r->count * r->block_bytes, have = 0;
	for (int i = 0; i < n; i++)
		have += iov[i].iov_len;
	if (have != want) {
		free(iov);
		return send_error(c, EIO, "the lender's segments of handle %016llx hold %llu bytes, "
				  "not %u blocks of %llu", (unsigned long long)r->handle,
				  (unsigned long long)have, r->count,
				  (unsigned long long)r->block_bytes);
	}
	held_add(c, r->handle);
	kvx_reply_add_status(&head, 0, NULL);
	if (r->op == KVX_OP_FETCH_TCP) {
		kvx_reply_add_n_bytes(&head, want);
		rc = send_reply(c, &head, iov, n);
	} else if ((rc = kvx_ucx_lender_describe(l->ucx, iov, n, &head)) < 0) {
		sb_reset(&head);
		rc = send_error(c, -rc, "%s", err_msg());
	} else {
		rc = send_reply(c, &head, NULL, 0);
	}
	free(iov);
	sb_release(&head);
	return rc;
}

/* A malformed request: say why (if the peer listens) and end the
 * connection, whose stream cannot be trusted any more. */
static void refuse(struct lconn *c, int code)
{
	struct strbuf head = STRBUF_INIT;
	LOG_WARN(LOG_MOD, "%s: closing the connection: %s", c->peer, err_msg());
	kvx_reply_add_status(&head, (uint32_t)-code, err_msg());
	struct iovec iov = { head.buf, head.len };
	short ev;
	(void)!io_some(c->fd, c->ssl, &iov, 1, 1, &ev);	/* once: the socket does not block */
	sb_release(&head);
}

static void *serve_conn(void *arg)
{
	struct lconn *c = arg;
	struct kvx_lender *l = c->l;
	uint8_t buf[KVX_REQ_MAX];
	struct kvx_req r;

	if (l->tls && tls_open(l->tls, c->fd, 1, mono_ms() + IO_TIMEOUT_MS, c->peer, &c->ssl) < 0) {
		LOG_WARN(LOG_MOD, "refusing %s: %s", c->peer, err_msg());
		goto out;
	}
	for (;;) {
		size_t have = 0, need = KVX_REQ_HEAD;
		int rc;
		short ev = POLLIN;
		/* The next request may take a while; its bytes then may not
		 * (with TLS they may already wait, decrypted, in OpenSSL). */
		if (!(c->ssl && SSL_has_pending(c->ssl)) &&
		    wait_fd(c->fd, POLLIN, mono_ms() + IDLE_TIMEOUT_MS, c->peer) < 0)
			break;
		uint64_t deadline = mono_ms() + IO_TIMEOUT_MS;
		while ((rc = kvx_req_parse(buf, have, &r, &need)) == KVX_NEED_MORE) {
			struct iovec iov = { buf + have, need - have };
			ssize_t k = io_some(c->fd, c->ssl, &iov, 1, 0, &ev);
			if (k == 0 && have == 0)
				goto out;	/* closed between requests */
			if (k == 0) {
				rc = err_set(-ECONNRESET, "connection closed mid-request");
				break;
			}
			if (k < 0 && errno != EAGAIN && errno != EINTR) {
				rc = err_set(-errno, "%s", strerror(errno));
				break;
			}
			if (k < 0 && (rc = wait_fd(c->fd, ev, deadline, "request")) < 0)
				break;
			have += k > 0 ? (size_t)k : 0;
		}
		if (rc < 0) {
			refuse(c, rc);
			break;
		}
		if (r.op == KVX_OP_RELEASE) {
			held_remove(c, r.handle);
			l->ops.release(l->ops.arg, r.handle);
			struct strbuf head = STRBUF_INIT;
			kvx_reply_add_status(&head, 0, NULL);
			rc = send_reply(c, &head, NULL, 0);
			sb_release(&head);
		} else {
			rc = serve_fetch(c, &r);
		}
		if (rc < 0) {
			LOG_DEBUG(LOG_MOD, "%s: %s", c->peer, err_msg());
			break;
		}
	}
out:
	/* A borrower gone without RELEASE: its handles go back now. */
	for (int i = 0; i < c->n_held; i++)
		l->ops.release(l->ops.arg, c->held[i]);
	c->n_held = 0;
	/* The peer sees the end now; the fd itself is closed when the thread
	 * is joined, so that its number is not reused before. */
	shutdown(c->fd, SHUT_RDWR);
	atomic_store(&c->finished, 1);
	return NULL;
}

static void conn_free(struct lconn *c)
{
	pthread_join(c->thread, NULL);
	SSL_free(c->ssl);
	close(c->fd);
	free(c->held);
	free(c);
}

/* Join and free the connections whose threads ended. */
static void reap_conns(struct kvx_lender *l)
{
	pthread_mutex_lock(&l->mu);
	for (struct lconn **p = &l->conns; *p;) {
		struct lconn *c = *p;
		if (atomic_load(&c->finished)) {
			*p = c->next;
			l->n_conns--;
			conn_free(c);
		} else {
			p = &c->next;
		}
	}
	pthread_mutex_unlock(&l->mu);
}

static void accept_one(struct kvx_lender *l)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	reap_conns(l);
	struct lconn *c = xcalloc(1, sizeof(*c));
	c->l = l;
	c->fd = fd;
	char host[NI_MAXHOST], serv[NI_MAXSERV];
	if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), serv, sizeof(serv),
			NI_NUMERICHOST | NI_NUMERICSERV) == 0)
		snprintf(c->peer, sizeof(c->peer), "borrower %s:%s", host, serv);
	else
		snprintf(c->peer, sizeof(c->peer), "borrower");
	sock_tune(fd);
	pthread_mutex_lock(&l->mu);
	int rc = l->n_conns >= MAX_CONNS ? EAGAIN : pthread_create(&c->thread, NULL, serve_conn, c);
	if (rc == 0) {
		c->next = l->conns;
		l->conns = c;
		l->n_conns++;
	}
	pthread_mutex_unlock(&l->mu);
	if (rc) {
		LOG_WARN(LOG_MOD, "%s: refused: %s", c->peer,
			 rc == EAGAIN ? "too many connections" : strerror(rc));
		close(fd);
		free(c);
	}
}

static void *accept_loop(void *arg)
{
	struct kvx_lender *l = arg;
	for (;;) {
		struct pollfd p[2] = { { l->fd, POLLIN, 0 }, { l->stop_fd, POLLIN, 0 } };
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (p[0].revents)
			accept_one(l);
	}
	return NULL;
}

int kvx_lender_new(const char *host, int port, enum kvx_transport t, struct ssl_ctx_st *tls,
		   const char *layout, size_t block_bytes, const struct kvx_lender_ops *ops,
		   struct kvx_lender **out)
{
	if (strlen(layout) > KVX_MAX_LAYOUT)
		return err_set(-EINVAL, "KV layout fingerprint of %zu bytes (at most %d)",
			       strlen(layout), KVX_MAX_LAYOUT);
	if (tls && t == KVX_UCX)
		return err_set(-EINVAL, "--kv-transfer-tls needs --kv-transport tcp or auto "
			       "(UCX transfers are not encrypted)");
	t = tls ? KVX_TCP : ucx_or_tcp(t, "KV lender");
	if (t == KVX_UCX && !kvx_ucx_available(NULL))
		return err_set(-ENOTSUP, "--kv-transport ucx: %s", kvx_ucx_describe());

	struct kvx_lender *l = xcalloc(1, sizeof(*l));
	int rc;
	l->ops = *ops;
	l->layout = xstrdup(layout);
	l->block_bytes = block_bytes;
	l->tls = tls;
	l->fd = l->stop_fd = -1;
	pthread_mutex_init(&l->mu, NULL);
	if (t != KVX_TCP && ops->regions) {
		struct iovec regions[64];
		int n = ops->regions(ops->arg, regions, (int)ARRAY_SIZE(regions));
		if (n > 0 && (rc = kvx_ucx_lender_new(regions, n, &l->ucx)) < 0) {
			if (t == KVX_UCX)
				goto fail;
			LOG_INFO(LOG_MOD, "KV lender: UCX failed (%s): offering tcp only", err_msg());
		}
		if (n <= 0 && t == KVX_UCX) {
			rc = err_set(-ENOTSUP, "--kv-transport ucx: the KV pool has no memory "
				     "regions to register");
			goto fail;
		}
	}
	if ((rc = sock_listen(host, port, 128, &l->fd, &l->port)) < 0)
		goto fail;
	if ((l->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0) {
		rc = err_set(-errno, "eventfd: %s", strerror(errno));
		goto fail;
	}
	char addr[280];
	sock_advertise(addr, sizeof(addr), host, l->port);
	struct strbuf sb = STRBUF_INIT;
	sb_adds(&sb, "{\"tcp\":");
	sb_add_json_str(&sb, addr, strlen(addr));
	sb_addf(&sb, ",\"ucx\":%s%s}", l->ucx ? "true" : "false", tls ? ",\"tls\":true" : "");
	snprintf(l->addr_json, sizeof(l->addr_json), "%s", sb.buf);
	sb_release(&sb);
	if ((rc = pthread_create(&l->accept_thread, NULL, accept_loop, l))) {
		rc = err_set(-rc, "starting the KV lender thread: %s", strerror(rc));
		goto fail;
	}
	LOG_DEBUG(LOG_MOD, "KV lender on %s", l->addr_json);
	*out = l;
	return 0;
fail:
	if (l->fd >= 0)
		close(l->fd);
	if (l->stop_fd >= 0)
		close(l->stop_fd);
	kvx_ucx_lender_free(l->ucx);
	pthread_mutex_destroy(&l->mu);
	free(l->layout);
	free(l);
	return rc;
}

const char *kvx_lender_addr_json(const struct kvx_lender *l)
{
	return l->addr_json;
}

int kvx_lender_port(const struct kvx_lender *l)
{
	return l->port;
}

void kvx_lender_free(struct kvx_lender *l)
{
	if (!l)
		return;
	uint64_t one = 1;
	(void)!write(l->stop_fd, &one, sizeof(one));
	pthread_join(l->accept_thread, NULL);
	close(l->fd);
	close(l->stop_fd);
	pthread_mutex_lock(&l->mu);
	for (struct lconn *c = l->conns; c; c = c->next)
		shutdown(c->fd, SHUT_RDWR);
	struct lconn *all = l->conns;
	l->conns = NULL;
	pthread_mutex_unlock(&l->mu);
	while (all) {
		struct lconn *next = all->next;
		conn_free(all);
		all = next;
	}
	kvx_ucx_lender_free(l->ucx);
	pthread_mutex_destroy(&l->mu);
	free(l->layout);
	free(l);
}

/* ---- borrower ---------------------------------------------------------- */

/* A connection kept between fetches of one handle: closing it would
 * release the handle (the lender's rule), so it stays open until a fetch
 * says release. */
struct kept_conn {
	char *addr;
	uint64_t handle;
	int fd;
	SSL *ssl;
	struct kept_conn *next;
};

struct kvx_borrower {
	struct event_base *base;
	enum kvx_transport t;
	SSL_CTX *tls;				/* NULL: plain TCP */
	struct offload *off;
	pthread_mutex_t mu;
	struct kvx_fetch *live;			/* under mu */
	struct kept_conn *kept;			/* under mu */
	int n_kept;				/* under mu */
	struct kvx_ucx_borrower *ucx;		/* under mu: made on first use */
	int ucx_broken;				/* under mu: auto fell back */
};

struct kvx_fetch {
	struct kvx_borrower *b;
	char *addr, *layout;
	uint64_t handle;
	uint32_t first, count;
	size_t block_bytes;
	struct iovec *dst;
	int n_dst;
	int release, lender_ucx;
	uint64_t deadline;
	kvx_done_fn done;
	void *arg;
	atomic_int canceled;
	int fd;				/* under b->mu; -1 when none */
	SSL *ssl;			/* with b->tls, once connected */
	int rc;
	uint64_t n_bytes;
	char err[512];
	struct kvx_fetch *prev, *next;	/* b->live, under b->mu */
};

static int fetch_err(struct kvx_fetch *f, int rc)
{
	if (atomic_load(&f->canceled))
		return err_set(-ECANCELED, "KV fetch from %s canceled", f->addr);
	return err_wrap(rc, "KV fetch of handle %016llx from %s", (unsigned long long)f->handle,
			f->addr);
}

/* Use f->fd, under b->mu so that a cancel can shut it down. */
static void fetch_set_fd(struct kvx_fetch *f, int fd)
{
	pthread_mutex_lock(&f->b->mu);
	f->fd = fd;
	if (fd >= 0 && atomic_load(&f->canceled))
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&f->b->mu);
}

/* The connection kept for this handle, if any. */
static int take_kept(struct kvx_fetch *f)
{
	struct kvx_borrower *b = f->b;
	int fd = -1;
	pthread_mutex_lock(&b->mu);
	for (struct kept_conn **p = &b->kept; *p; p = &(*p)->next) {
		struct kept_conn *k = *p;
		if (k->handle == f->handle && !strcmp(k->addr, f->addr)) {
			*p = k->next;
			b->n_kept--;
			fd = k->fd;
			f->ssl = k->ssl;
			free(k->addr);
			free(k);
			break;
		}
	}
	pthread_mutex_unlock(&b->mu);
	return fd;
}

/* Keep f's connection for the next fetch of its handle (the oldest kept
 * one goes when there are too many). */
static void keep(struct kvx_fetch *f)
{
	struct kvx_borrower *b = f->b;
	struct kept_conn *k = xcalloc(1, sizeof(*k)), *drop = NULL;
	k->addr = xstrdup(f->addr);
	k->handle = f->handle;
	k->fd = f->fd;
	k->ssl = f->ssl;
	pthread_mutex_lock(&b->mu);
	f->fd = -1;
	f->ssl = NULL;
	k->next = b->kept;
	b->kept = k;
	if (++b->n_kept > MAX_KEPT) {
		struct kept_conn **p = &b->kept;
		while ((*p)->next)
			p = &(*p)->next;
		drop = *p;
		*p = NULL;
		b->n_kept--;
	}
	pthread_mutex_unlock(&b->mu);
	if (drop) {
		SSL_free(drop->ssl);
		close(drop->fd);
		free(drop->addr);
		free(drop);
	}
}

static int fetch_connect(struct kvx_fetch *f)
{
	char host[256];
	int port, rc;
	struct addrinfo *res;

	int kept = take_kept(f);
	if (kept >= 0) {
		fetch_set_fd(f, kept);
		return 0;
	}
	if ((rc = sock_split_address(f->addr, host, sizeof(host), &port)) < 0 ||
	    (rc = sock_resolve(host, port, 0, &res)) < 0)
		return rc;
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = err_set(-errno, "socket: %s", strerror(errno));
		freeaddrinfo(res);
		return rc;
	}
	fetch_set_fd(f, fd);
	sock_tune(fd);
	rc = connect(fd, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (rc < 0 && errno != EINPROGRESS)
		return err_set(-errno, "connect: %s", strerror(errno));
	if (rc < 0) {
		int e = 0;
		socklen_t len = sizeof(e);
		if ((rc = wait_fd(fd, POLLOUT, f->deadline, "connect")) < 0)
			return rc;
		getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
		if (e)
			return err_set(-e, "connect: %s", strerror(e));
	}
	if (f->b->tls)
		return tls_open(f->b->tls, fd, 0, f->deadline, f->addr, &f->ssl);
	return 0;
}

static int send_req(struct kvx_fetch *f, uint16_t op)
{
	struct kvx_req r = { .op = op, .handle = f->handle, .block_bytes = f->block_bytes };
	uint8_t buf[KVX_REQ_MAX];
	if (op != KVX_OP_RELEASE) {
		r.first = f->first;
		r.count = f->count;
	}
	snprintf(r.layout, sizeof(r.layout), "%s", f->layout);
	int n = kvx_req_encode(buf, &r);
	return n < 0 ? n : write_full(f->fd, f->ssl, buf, (size_t)n, f->deadline, "request");
}

/* Read a reply head into *sb (exactly its bytes) and parse it; a refusal
 * is the lender's errno with its message. */
static int read_reply(struct kvx_fetch *f, int op, struct strbuf *sb, struct kvx_reply *r)
{
	size_t need = 8;
	int rc;
	sb_reset(sb);
	while ((rc = kvx_reply_parse((uint8_t *)sb->buf, sb->len, op, r, &need)) == KVX_NEED_MORE) {
		size_t have = sb->len;
		sb_grow(sb, need - have);
		if ((rc = read_full(f->fd, f->ssl, sb->buf + have, need - have, f->deadline,
				    "reply")) < 0)
			return rc;
		sb_setlen(sb, need);
	}
	if (rc < 0)
		return rc;
	if (r->status)
		return err_set(-(int)r->status, "lender: %.*s", (int)r->msg_len, r->msg);
	return 0;
}

static int fetch_tcp(struct kvx_fetch *f, struct strbuf *sb)
{
	struct kvx_reply r;
	int rc;
	uint64_t want = (uint64_t)f->count * f->block_bytes;
	if ((rc = send_req(f, KVX_OP_FETCH_TCP)) < 0 ||
	    (rc = read_reply(f, KVX_OP_FETCH_TCP, sb, &r)) < 0)
		return rc;
	if (r.n_bytes != want)
		return err_set(-EPROTO, "lender sends %llu bytes, %u blocks of %zu are %llu",
			       (unsigned long long)r.n_bytes, f->count, f->block_bytes,
			       (unsigned long long)want);
	/* readv() advances a copy: f->dst stays the caller's view. */
	struct iovec *iov = xmalloc((size_t)(f->n_dst ? f->n_dst : 1) * sizeof(*iov));
	memcpy(iov, f->dst, (size_t)f->n_dst * sizeof(*iov));
	rc = xfer_iov(f->fd, f->ssl, iov, f->n_dst, 0, f->deadline, "block data");
	free(iov);
	if (rc == 0)
		f->n_bytes = want;
	return rc;
}

/* 1 when this fetch uses UCX (*u: the borrower's UCX state), 0 tcp, or
 * an error (ucx asked for and failing). */
static int want_ucx(struct kvx_fetch *f, struct kvx_ucx_borrower **u)
{
	struct kvx_borrower *b = f->b;
	int rc = 0;
	pthread_mutex_lock(&b->mu);
	if (b->t != KVX_TCP && f->lender_ucx && !b->ucx_broken) {
		if (!b->ucx && (rc = kvx_ucx_borrower_new(&b->ucx)) < 0 && b->t == KVX_AUTO) {
			LOG_INFO(LOG_MOD, "KV borrower: UCX failed (%s): using tcp", err_msg());
			b->ucx_broken = 1;
			rc = 0;
		}
		if (b->ucx)
			rc = 1;
		*u = b->ucx;
	}
	pthread_mutex_unlock(&b->mu);
	return rc;
}

/* FETCH_UCX: 1 when auto should fall back to tcp on this connection. */
static int fetch_ucx(struct kvx_fetch *f, struct kvx_ucx_borrower *u, struct strbuf *sb)
{
	struct kvx_reply r;
	int rc;
	if ((rc = send_req(f, KVX_OP_FETCH_UCX)) < 0)
		return rc;
	rc = read_reply(f, KVX_OP_FETCH_UCX, sb, &r);
	if (rc == -EPROTONOSUPPORT && f->b->t == KVX_AUTO)
		return 1;
	if (rc < 0)
		return rc;
	uint64_t want = (uint64_t)f->count * f->block_bytes, have = 0;
	const uint8_t *p = r.segs;
	for (uint32_t i = 0; i < r.n_seg; i++) {
		struct kvx_ucx_seg s;
		kvx_reply_ucx_seg(&p, &s);
		have += s.len;
	}
	if (have != want)
		return err_set(-EPROTO, "lender describes %llu bytes, %u blocks of %zu are %llu",
			       (unsigned long long)have, f->count, f->block_bytes,
			       (unsigned long long)want);
	rc = kvx_ucx_get(u, &r, f->dst, f->n_dst, f->deadline, &f->canceled);
	if (rc == 0) {
		f->n_bytes = want;
		return 0;
	}
	if (rc != -ETIMEDOUT && rc != -ECANCELED && f->b->t == KVX_AUTO) {
		pthread_mutex_lock(&f->b->mu);
		LOG_INFO(LOG_MOD, "KV borrower: UCX failed (%s): using tcp", err_msg());
		f->b->ucx_broken = 1;
		pthread_mutex_unlock(&f->b->mu);
		return 1;
	}
	return rc;
}

static void fetch_work(void *arg)
{
	struct kvx_fetch *f = arg;
	struct strbuf sb = STRBUF_INIT;
	struct kvx_ucx_borrower *u = NULL;
	struct kvx_reply r;
	int rc = 0;

	if (atomic_load(&f->canceled))
		rc = -ECANCELED;
	else
		rc = fetch_connect(f);
	if (rc == 0 && f->count) {
		rc = want_ucx(f, &u);
		if (rc == 1)
			rc = fetch_ucx(f, u, &sb);
		else if (rc == 0)
			rc = 1;
		if (rc == 1)
			rc = fetch_tcp(f, &sb);
	}
	if (rc == 0 && f->release) {
		if ((rc = send_req(f, KVX_OP_RELEASE)) == 0)
			rc = read_reply(f, KVX_OP_RELEASE, &sb, &r);
		/* Blocks that arrived are good; the lender releases them when
		 * this connection closes anyway. */
		if (rc < 0 && f->count) {
			LOG_DEBUG(LOG_MOD, "KV fetch from %s: RELEASE: %s", f->addr, err_msg());
			rc = 0;
		}
	}
	if (rc < 0) {
		rc = fetch_err(f, rc);
		snprintf(f->err, sizeof(f->err), "%s", err_msg());
	}
	f->rc = rc;
	if (rc == 0 && !f->release && !atomic_load(&f->canceled)) {
		keep(f);
	} else if (f->fd >= 0) {
		int fd = f->fd;
		fetch_set_fd(f, -1);
		SSL_free(f->ssl);
		f->ssl = NULL;
		close(fd);
	}
	sb_release(&sb);
}

static void fetch_done(void *arg)
{
	struct kvx_fetch *f = arg;
	struct kvx_borrower *b = f->b;
	int rc = f->rc;

	pthread_mutex_lock(&b->mu);
	if (f->prev)
		f->prev->next = f->next;
	else
		b->live = f->next;
	if (f->next)
		f->next->prev = f->prev;
	pthread_mutex_unlock(&b->mu);
	if (atomic_load(&f->canceled))
		rc = err_set(-ECANCELED, "KV fetch from %s canceled", f->addr);
	else if (rc < 0)
		err_set(rc, "%s", f->err);
	f->done(f->arg, rc, rc == 0 ? f->n_bytes : 0);
	free(f->addr);
	free(f->layout);
	free(f->dst);
	free(f);
}

int kvx_borrower_new(struct event_base *base, enum kvx_transport t, struct ssl_ctx_st *tls,
		     struct kvx_borrower **out)
{
	if (tls && t == KVX_UCX)
		return err_set(-EINVAL, "--kv-transfer-tls needs --kv-transport tcp or auto "
			       "(UCX transfers are not encrypted)");
	t = tls ? KVX_TCP : ucx_or_tcp(t, "KV borrower");
	if (t == KVX_UCX && !kvx_ucx_available(NULL))
		return err_set(-ENOTSUP, "--kv-transport ucx: %s", kvx_ucx_describe());
	struct kvx_borrower *b = xcalloc(1, sizeof(*b));
	int rc = offload_new_threads(base, FETCH_THREADS, &b->off);
	if (rc < 0) {
		free(b);
		return rc;
	}
	b->base = base;
	b->t = t;
	b->tls = tls;
	pthread_mutex_init(&b->mu, NULL);
	*out = b;
	return 0;
}

int kvx_fetch_start(struct kvx_borrower *b, const struct kvx_fetch_req *r, kvx_done_fn done,
		    void *arg, struct kvx_fetch **out)
{
	uint64_t want = (uint64_t)r->count * r->block_bytes, have = 0;
	if (r->count > KVX_MAX_BLOCKS)
		return err_set(-EINVAL, "KV fetch of %u blocks (at most %u)", r->count,
			       KVX_MAX_BLOCKS);
	if (strlen(r->layout) > KVX_MAX_LAYOUT)
		return err_set(-EINVAL, "KV layout fingerprint of %zu bytes (at most %d)",
			       strlen(r->layout), KVX_MAX_LAYOUT);
	if (r->n_dst < 0)
		return err_set(-EINVAL, "KV fetch with %d destination segments", r->n_dst);
	for (int i = 0; i < r->n_dst; i++)
		have += r->dst[i].iov_len;
	if (have != want)
		return err_set(-EINVAL, "KV fetch destination of %llu bytes for %u blocks of %zu",
			       (unsigned long long)have, r->count, r->block_bytes);
	if (!r->count && !r->release)
		return err_set(-EINVAL, "KV fetch of no blocks and no release");
	if (b->t == KVX_UCX && !r->lender_ucx && r->count)
		return err_set(-ENOTSUP, "--kv-transport ucx: lender %s offers tcp only",
			       r->tcp_addr);
	/* Both ends encrypt or neither: a mismatch fails before connecting. */
	if (r->lender_tls && !b->tls)
		return err_set(-EPROTO, "lender %s encrypts KV transfers (--kv-transfer-tls); "
			       "this worker does not", r->tcp_addr);
	if (!r->lender_tls && b->tls)
		return err_set(-EPROTO, "lender %s does not encrypt KV transfers; this worker "
			       "requires it (--kv-transfer-tls)", r->tcp_addr);

	struct kvx_fetch *f = xcalloc(1, sizeof(*f));
	f->b = b;
	f->addr = xstrdup(r->tcp_addr);
	f->layout = xstrdup(r->layout);
	f->handle = r->handle;
	f->first = r->first;
	f->count = r->count;
	f->block_bytes = r->block_bytes;
	f->dst = xmalloc((size_t)(r->n_dst ? r->n_dst : 1) * sizeof(*f->dst));
	if (r->n_dst)	/* a mock or release-only fetch may pass no array */
		memcpy(f->dst, r->dst, (size_t)r->n_dst * sizeof(*f->dst));
	f->n_dst = r->n_dst;
	f->release = r->release;
	f->lender_ucx = r->lender_ucx;
	f->deadline = mono_ms() + (uint64_t)(r->timeout_ms > 0 ? r->timeout_ms
							       : DEFAULT_TIMEOUT_MS);
	f->done = done;
	f->arg = arg;
	f->fd = -1;
	f->rc = -ECANCELED;	/* what done says of a fetch that never ran */
	snprintf(f->err, sizeof(f->err), "KV fetch from %s canceled", f->addr);
	pthread_mutex_lock(&b->mu);
	f->next = b->live;
	if (b->live)
		b->live->prev = f;
	b->live = f;
	pthread_mutex_unlock(&b->mu);
	offload_submit(b->off, fetch_work, fetch_done, f);
	if (out)
		*out = f;
	return 0;
}

static void cancel_locked(struct kvx_fetch *f)
{
	atomic_store(&f->canceled, 1);
	if (f->fd >= 0)
		shutdown(f->fd, SHUT_RDWR);
}

void kvx_fetch_cancel(struct kvx_fetch *f)
{
	pthread_mutex_lock(&f->b->mu);
	cancel_locked(f);
	pthread_mutex_unlock(&f->b->mu);
}

void kvx_borrower_free(struct kvx_borrower *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	for (struct kvx_fetch *f = b->live; f; f = f->next)
		cancel_locked(f);
	pthread_mutex_unlock(&b->mu);
	offload_free(b->off);
	while (b->kept) {
		struct kept_conn *k = b->kept;
		b->kept = k->next;
		SSL_free(k->ssl);
		close(k->fd);
		free(k->addr);
		free(k);
	}
	kvx_ucx_borrower_free(b->ucx);
	pthread_mutex_destroy(&b->mu);
	free(b);
}
