/*
 * http.c - HTTP/1.1 server on bufferevents (see http.h).
 *
 * A connection is a small state machine: IDLE (waiting for a request),
 * HEAD (some bytes of a head arrived), BODY (head parsed, waiting for
 * Content-Length bytes), BUSY (the handler has the request), CLOSING
 * (flushing a last reply).  One timer per connection enforces the idle
 * and whole-request deadlines.  Work that must not run inside a handler's
 * own call (parsing the next pipelined request, closing after an output
 * overflow) is deferred to the connection's "resume" event.
 */
#include "net/http.h"
#include "net/listener.h"
#include "core/err.h"
#include "core/log.h"
#include "core/runtime.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define LOG_MOD "http"

/* After an error answer: input read and dropped before the close. */
#define LINGER_MAX_BYTES (64u << 20)
#define LINGER_MAX_MS 5000

enum conn_state { ST_IDLE, ST_HEAD, ST_BODY, ST_BUSY, ST_CLOSING };

struct http_hdr {
	const char *name, *value;
};

struct http_conn;

struct http_req {
	struct http_conn *conn;
	char *head;			/* the request head, split in place */
	const char *method, *path, *query;
	struct http_hdr *hdrs;
	int nhdrs;
	struct strbuf body;
	int http10, keep_alive, streaming, chunked_out;
	int head_only;			/* a HEAD request: headers, no body */
	const char *cors_origin;	/* the allowed Origin to name, or NULL */
	void (*on_close)(struct http_req *r, void *arg);
	void *on_close_arg;
};

struct http_conn {
	struct http_server *srv;
	struct bufferevent *bev;
	struct event *timer, *resume;
	enum conn_state state;
	struct http_req *req;		/* being read (BODY) or handled (BUSY) */
	size_t body_need;
	int dead;			/* close at the next resume */
	size_t linger;			/* ST_CLOSING: input bytes still to discard */
	int shut;			/* our side of the connection is shut */
	int handshaken;			/* TLS: a request was read */
	char peer[64];
	struct http_conn *prev, *next;
};

struct http_server {
	struct event_base *base;
	struct http_server_opts o;
	http_handler_fn fn;
	void *arg;
	struct listener *listener;
	char *origins;			/* ",a,b," or "*"; NULL: CORS off */
	int port, stopping;
	struct http_conn *conns;
	long nconns, in_flight;
};

const char *http_status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

/* ---- connections ------------------------------------------------------ */

static void req_free(struct http_req *r)
{
	if (!r)
		return;
	free(r->head);
	free(r->hdrs);
	sb_release(&r->body);
	free(r);
}

static void conn_free(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_req *r = c->req;

	c->req = NULL;
	if (r) {
		if (c->state == ST_BUSY || c->state == ST_CLOSING) {
			if (c->state == ST_BUSY)
				s->in_flight--;
			if (r->on_close)
				r->on_close(r, r->on_close_arg);
		}
		req_free(r);
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nconns--;
	bufferevent_free(c->bev);
	event_free(c->timer);
	event_free(c->resume);
	free(c);
}

static void timer_set(struct http_conn *c, int64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000) };
	evtimer_add(c->timer, &tv);
}

static void conn_schedule(struct http_conn *c)
{
	event_active(c->resume, EV_TIMEOUT, 1);
}

/* Write a complete error reply outside any handler and close. */
static void conn_error_close(struct http_conn *c, int status, const char *msg)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct strbuf body = STRBUF_INIT;

	http_error_json(status, msg, NULL, NULL, &body);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			    status, http_status_text(status), body.len);
	evbuffer_add(out, body.buf, body.len);
	sb_release(&body);
	LOG_DEBUG(LOG_MOD, "%s: %d %s", c->peer, status, msg);
	if (c->req) {
		req_free(c->req);
		c->req = NULL;
	}
	/* Lingering close (as nginx does): a client that sends its whole body
	 * before it reads would get a reset instead of this answer if unread
	 * input were left behind at close.  Read and discard what it sends,
	 * up to a bound, while the answer goes out; then shut our side and
	 * wait for its end, within the timer. */
	c->state = ST_CLOSING;
	c->linger = LINGER_MAX_BYTES;
	evtimer_del(c->timer);
	timer_set(c, LINGER_MAX_MS);	/* a peer that does not read gets no longer */
	evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
	bufferevent_enable(c->bev, EV_READ);
}

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	size_t n = strlen(s);
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	return s;
}

static int token_char(int ch)
{
	return ch > 0x20 && ch < 0x7f && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* Parse head (NUL-terminated, CRLF lines, no final blank line) into r.
 * Returns 0 or an HTTP status with *why set. */
static int parse_head(struct http_server *s, struct http_req *r, const char **why)
{
	char *line = r->head, *eol = strstr(line, "\r\n");
	if (eol)
		*eol = '\0';
	char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || strchr(sp2 + 1, ' ')) {
		*why = "malformed request line";
		return 400;
	}
	*sp1 = *sp2 = '\0';
	r->method = line;
	for (const char *p = line; *p; p++)
		if (!token_char((unsigned char)*p)) {
			*why = "malformed method";
			return 400;
		}
	if (!*r->method) {
		*why = "malformed method";
		return 400;
	}
	char *target = sp1 + 1, *ver = sp2 + 1;
	if (!strcmp(ver, "HTTP/1.1"))
		r->http10 = 0;
	else if (!strcmp(ver, "HTTP/1.0"))
		r->http10 = 1;
	else if (!strncmp(ver, "HTTP/", 5)) {
		*why = "only HTTP/1.0 and HTTP/1.1 are served";
		return 505;
	} else {
		*why = "malformed request line";
		return 400;
	}
	/* Absolute form: keep the path. */
	if (!strncasecmp(target, "http://", 7) || !strncasecmp(target, "https://", 8)) {
		char *p = strchr(strstr(target, "//") + 2, '/');
		target = p ? p : (char *)"/";
	}
	if (target[0] != '/') {
		*why = "malformed request target";
		return 400;
	}
	for (const char *p = target; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			*why = "malformed request target";
			return 400;
		}
	char *q = strchr(target, '?');
	if (q) {
		*q = '\0';
		r->query = q + 1;
	} else {
		r->query = "";
	}
	r->path = target;
	/* HEAD is GET without the body: handlers see GET, replies drop it. */
	if (!strcmp(r->method, "HEAD")) {
		r->method = "GET";
		r->head_only = 1;
	}

	int cap = 16;
	r->hdrs = xmalloc((size_t)cap * sizeof(*r->hdrs));
	line = eol ? eol + 2 : NULL;
	while (line && *line) {
		eol = strstr(line, "\r\n");
		if (eol)
			*eol = '\0';
		if (*line == ' ' || *line == '\t') {
			*why = "obsolete header line folding";
			return 400;
		}
		char *colon = strchr(line, ':');
		if (!colon || colon == line) {
			*why = "malformed header line";
			return 400;
		}
		*colon = '\0';
		for (const char *p = line; *p; p++)
			if (!token_char((unsigned char)*p)) {
				*why = "malformed header name";
				return 400;
			}
		if (r->nhdrs >= s->o.max_headers) {
			*why = "too many header fields";
			return 431;
		}
		if (r->nhdrs == cap) {
			cap *= 2;
			r->hdrs = xrealloc(r->hdrs, (size_t)cap * sizeof(*r->hdrs));
		}
		r->hdrs[r->nhdrs].name = line;
		r->hdrs[r->nhdrs].value = trim(colon + 1);
		r->nhdrs++;
		line = eol ? eol + 2 : NULL;
	}
	const char *conn = http_req_header(r, "Connection");
	r->keep_alive = !r->http10;
	if (conn && strcasestr(conn, "close"))
		r->keep_alive = 0;
	else if (conn && strcasestr(conn, "keep-alive"))
		r->keep_alive = 1;
	return 0;
}

/* The request's Origin when CORS allows it ("*" for any), else NULL. */
static const char *cors_allowed(const struct http_server *s, const struct http_req *r)
{
	if (!s->origins)
		return NULL;
	const char *origin = http_req_header(r, "Origin");
	if (!origin || !*origin)
		return NULL;
	if (!strcmp(s->origins, "*"))
		return "*";
	size_t n = strlen(origin);
	for (const char *p = strstr(s->origins, origin); p; p = strstr(p + 1, origin))
		if (p[-1] == ',' && p[n] == ',')
			return origin;
	return NULL;
}

/* A CORS preflight: what the browser may send from an allowed origin. */
static void cors_preflight(struct http_req *r)
{
	if (!r->cors_origin) {
		http_reply_error(r, 403, "this origin may not call the API (--allowed-origins)",
				 NULL, NULL, NULL);
		return;
	}
	struct strbuf extra = STRBUF_INIT;
	const char *want = http_req_header(r, "Access-Control-Request-Headers");
	sb_adds(&extra, "Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\n"
			"Access-Control-Max-Age: 600\r\nAccess-Control-Allow-Headers: ");
	/* The headers asked for, as a list of tokens (nothing else gets into
	 * the reply's head), or the two an OpenAI client sends. */
	size_t start = extra.len;
	for (const char *p = want ? want : ""; *p; p++)
		if (token_char((unsigned char)*p) || *p == ',' || *p == ' ')
			sb_addch(&extra, *p);
	if (extra.len == start)
		sb_adds(&extra, "Authorization, Content-Type");
	sb_adds(&extra, "\r\n");
	http_reply(r, 204, NULL, NULL, 0, extra.buf);
	sb_release(&extra);
}

static void dispatch(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct http_req *r = c->req;
	c->state = ST_BUSY;
	evtimer_del(c->timer);
	s->in_flight++;
	if (s->stopping)
		r->keep_alive = 0;
	r->cors_origin = cors_allowed(s, r);
	if (s->origins && !strcmp(r->method, "OPTIONS") &&
	    http_req_header(r, "Access-Control-Request-Method")) {
		cors_preflight(r);
		return;
	}
	s->fn(r, s->arg);
}

/* Parse what the input buffer holds; dispatch complete requests. */
/* ST_CLOSING after an error: input is read and dropped until the bound. */
static void linger_discard(struct http_conn *c, struct evbuffer *in, size_t avail)
{
	evbuffer_drain(in, avail);
	if (avail >= c->linger)
		conn_free(c);
	else
		c->linger -= avail;
}

static void conn_process(struct http_conn *c)
{
	struct http_server *s = c->srv;
	struct evbuffer *in = bufferevent_get_input(c->bev);

	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (c->state == ST_BUSY) {
			/* Pipelined input waits; stop reading if it piles up. */
			if (avail > s->o.max_head)
				bufferevent_disable(c->bev, EV_READ);
			return;
		}
		if (c->state == ST_CLOSING) {
			if (c->linger)
				linger_discard(c, in, avail);
			return;
		}
		if (c->state == ST_IDLE) {
			/* Robustness: blank lines before a request are ignored. */
			while (avail >= 2) {
				unsigned char two[2];
				evbuffer_copyout(in, two, 2);
				if (two[0] != '\r' || two[1] != '\n')
					break;
				evbuffer_drain(in, 2);
				avail -= 2;
			}
			if (!avail)
				return;
			c->state = ST_HEAD;
			timer_set(c, s->o.request_timeout_ms);
		}
		if (c->state == ST_HEAD) {
			struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
			if (end.pos < 0) {
				if (avail > s->o.max_head)
					conn_error_close(c, 431, "request head too large");
				return;
			}
			if ((size_t)end.pos + 4 > s->o.max_head) {
				conn_error_close(c, 431, "request head too large");
				return;
			}
			struct http_req *r = xcalloc(1, sizeof(*r));
			r->conn = c;
			r->head = xmalloc((size_t)end.pos + 1);
			evbuffer_remove(in, r->head, (size_t)end.pos);
			r->head[end.pos] = '\0';
			evbuffer_drain(in, 4);
			c->req = r;
			if (memchr(r->head, '\0', (size_t)end.pos)) {
				conn_error_close(c, 400, "NUL byte in request head");
				return;
			}
			const char *why = NULL;
			int status = parse_head(s, r, &why);
			if (status) {
				conn_error_close(c, status, why);
				return;
			}
			const char *te = http_req_header(r, "Transfer-Encoding");
			if (te && strcasecmp(te, "identity")) {
				conn_error_close(c, 411, "chunked request bodies are not "
						 "supported: send Content-Length");
				return;
			}
			const char *cl = http_req_header(r, "Content-Length");
			/* Differing lengths would let a proxy and this server split
			 * the stream differently (request smuggling). */
			for (int i = 0; cl && i < r->nhdrs; i++)
				if (!strcasecmp(r->hdrs[i].name, "Content-Length") &&
				    strcmp(r->hdrs[i].value, cl)) {
					conn_error_close(c, 400, "conflicting Content-Length headers");
					return;
				}
			long n = 0;
			if (cl) {
				char *endp;
				errno = 0;
				unsigned long long v = strtoull(cl, &endp, 10);
				if (!*cl || *endp || errno || cl[0] == '-' || cl[0] == '+') {
					conn_error_close(c, 400, "bad Content-Length");
					return;
				}
				if (v > s->o.max_body) {
					char msg[128];
					snprintf(msg, sizeof(msg), "request body of %llu bytes is over "
						 "the limit of %zu bytes", v, s->o.max_body);
					conn_error_close(c, 413, msg);
					return;
				}
				n = (long)v;
			}
			c->body_need = (size_t)n;
			sb_init(&r->body, c->body_need + 1);
			c->state = ST_BODY;
			const char *expect = http_req_header(r, "Expect");
			if (expect && !strcasecmp(expect, "100-continue") && n > 0 && !r->http10)
				evbuffer_add_printf(bufferevent_get_output(c->bev),
						    "HTTP/1.1 100 Continue\r\n\r\n");
			avail = evbuffer_get_length(in);
		}
		if (c->state == ST_BODY) {
			struct http_req *r = c->req;
			size_t want = c->body_need - r->body.len;
			size_t take = avail < want ? avail : want;
			if (take) {
				sb_grow(&r->body, take);
				evbuffer_remove(in, r->body.buf + r->body.len, take);
				sb_setlen(&r->body, r->body.len + take);
			}
			if (r->body.len < c->body_need)
				return;
			dispatch(c);
			if (c->dead) {
				conn_schedule(c);
				return;
			}
		}
	}
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	(void)bev;
	c->handshaken = 1;
	conn_process(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	(void)bev;
	if (c->state != ST_CLOSING || evbuffer_get_length(bufferevent_get_output(c->bev)))
		return;
	if (!c->linger) {
		conn_free(c);
	} else if (!c->shut) {	/* answered: the peer sees its end, we drain */
		c->shut = 1;
		shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	}
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		/* A TLS handshake that failed: say why (a client without the
		 * certificate asked for, one that does not trust ours...). */
		if (c->srv->o.tls && !c->handshaken && (what & BEV_EVENT_ERROR)) {
			char why[512];
			unsigned long e;
			why[0] = 0;
			while ((e = bufferevent_get_openssl_error(c->bev)) != 0)
				if (!why[0])
					ERR_error_string_n(e, why, sizeof(why));
			long v = SSL_get_verify_result(bufferevent_openssl_get_ssl(c->bev));
			LOG_INFO(LOG_MOD, "%s: TLS handshake failed: %s%s%s", c->peer,
				 why[0] ? why : "connection closed", v != X509_V_OK ? ": " : "",
				 v != X509_V_OK ? X509_verify_cert_error_string(v) : "");
		}
		LOG_TRACE(LOG_MOD, "%s: connection closed", c->peer);
		conn_free(c);
	}
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	(void)fd;
	(void)what;
	switch (c->state) {
	case ST_IDLE:
	case ST_CLOSING:
		conn_free(c);
		break;
	case ST_HEAD:
	case ST_BODY:
		LOG_DEBUG(LOG_MOD, "%s: request not complete in time", c->peer);
		conn_error_close(c, 408, "the request did not arrive in time");
		break;
	case ST_BUSY:
		break;
	}
}

static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct http_conn *c = arg;
	(void)fd;
	(void)what;
	if (c->dead) {
		conn_free(c);
		return;
	}
	if (c->state == ST_IDLE) {
		bufferevent_enable(c->bev, EV_READ);
		conn_process(c);
	}
}

static void server_accept_cb(int fd, const char *peer, void *arg)
{
	struct http_server *s = arg;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct http_conn *c = xcalloc(1, sizeof(*c));
	c->srv = s;
	if (s->o.tls) {
		SSL *ssl = SSL_new(s->o.tls);
		c->bev = ssl ? bufferevent_openssl_socket_new(s->base, fd, ssl,
							      BUFFEREVENT_SSL_ACCEPTING,
							      BEV_OPT_CLOSE_ON_FREE) : NULL;
		if (!c->bev) {
			LOG_WARN(LOG_MOD, "%s: no TLS session (out of memory?)", peer);
			SSL_free(ssl);
			close(fd);
			free(c);
			return;
		}
		/* Clients that close without close_notify are just gone. */
		bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	} else {
		c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	c->timer = evtimer_new(s->base, conn_timer_cb, c);
	c->resume = event_new(s->base, -1, 0, conn_resume_cb, c);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	s->nconns++;
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	timer_set(c, s->o.idle_timeout_ms);
}

/* ---- server ------------------------------------------------------------ */

int http_server_new(struct event_base *base, const struct http_server_opts *opts,
		    http_handler_fn fn, void *arg, struct http_server **out)
{
	struct http_server *s = xcalloc(1, sizeof(*s));
	if (opts)
		s->o = *opts;
	if (!s->o.max_body)
		s->o.max_body = 32u << 20;
	if (!s->o.max_head)
		s->o.max_head = 64u << 10;
	if (!s->o.max_headers)
		s->o.max_headers = 100;
	if (!s->o.request_timeout_ms)
		s->o.request_timeout_ms = 30000;
	if (!s->o.idle_timeout_ms)
		s->o.idle_timeout_ms = 120000;
	if (!s->o.max_output)
		s->o.max_output = 64u << 20;
	if (s->o.allowed_origins && *s->o.allowed_origins) {
		struct strbuf o = STRBUF_INIT;
		if (strcmp(s->o.allowed_origins, "*"))	/* bracketed, to match whole items */
			sb_addch(&o, ',');
		for (const char *p = s->o.allowed_origins; *p; p++)
			if (*p != ' ')
				sb_addch(&o, *p);
		if (strcmp(s->o.allowed_origins, "*"))
			sb_addch(&o, ',');
		s->origins = sb_detach(&o, NULL);
	}
	s->o.allowed_origins = NULL;	/* s->origins is the copy */
	s->base = base;
	s->fn = fn;
	s->arg = arg;
	*out = s;
	return 0;
}

int http_server_listen(struct http_server *s, const char *host, int port)
{
	if (s->listener)
		return err_set(-EALREADY, "already listening on port %d", s->port);
	int rc = listener_open(s->base, host, port, 4096, LOG_MOD, server_accept_cb, s,
			       &s->listener);
	if (rc < 0)
		return rc;
	s->port = listener_port(s->listener);
	LOG_DEBUG(LOG_MOD, "listening on %s:%d", host ? host : "*", s->port);
	return 0;
}

int http_server_port(const struct http_server *s)
{
	return s->port;
}

void http_server_stop_accepting(struct http_server *s)
{
	if (s->stopping)
		return;
	s->stopping = 1;
	listener_free(s->listener);
	s->listener = NULL;
	/* Idle keep-alive connections: close now. */
	for (struct http_conn *c = s->conns; c; c = c->next)
		if (c->state == ST_IDLE) {
			c->dead = 1;
			conn_schedule(c);
		}
}

long http_server_in_flight(const struct http_server *s)
{
	return s->in_flight;
}

long http_server_connections(const struct http_server *s)
{
	return s->nconns;
}

static void hook_stop(void *arg)
{
	http_server_stop_accepting(arg);
}

static long hook_in_flight(void *arg)
{
	return http_server_in_flight(arg);
}

void http_server_hooks(struct http_server *s, struct runtime_hooks *out)
{
	*out = (struct runtime_hooks){ .stop_accepting = hook_stop, .in_flight = hook_in_flight,
					.arg = s };
}

void http_server_free(struct http_server *s)
{
	if (!s)
		return;
	http_server_stop_accepting(s);
	while (s->conns)
		conn_free(s->conns);
	free(s->origins);
	free(s);
}

/* ---- requests ------------------------------------------------------------ */

const char *http_req_method(const struct http_req *r) { return r->method; }
const char *http_req_path(const struct http_req *r) { return r->path; }
const char *http_req_query(const struct http_req *r) { return r->query; }
const char *http_req_peer(const struct http_req *r) { return r->conn->peer; }

const char *http_req_header(const struct http_req *r, const char *name)
{
	for (int i = 0; i < r->nhdrs; i++)
		if (!strcasecmp(r->hdrs[i].name, name))
			return r->hdrs[i].value;
	return NULL;
}

const char *http_req_body(const struct http_req *r, size_t *len)
{
	if (len)
		*len = r->body.len;
	return r->body.buf;
}

void http_req_on_close(struct http_req *r, void (*fn)(struct http_req *r, void *arg),
		       void *arg)
{
	r->on_close = fn;
	r->on_close_arg = arg;
}

size_t http_req_buffered(const struct http_req *r)
{
	return evbuffer_get_length(bufferevent_get_output(r->conn->bev));
}

static void put_head(struct http_req *r, int status, const char *type, long long len,
		     const char *extra)
{
	struct evbuffer *out = bufferevent_get_output(r->conn->bev);
	evbuffer_add_printf(out, "HTTP/1.%d %d %s\r\n", r->http10 ? 0 : 1, status,
			    http_status_text(status));
	if (type)
		evbuffer_add_printf(out, "Content-Type: %s\r\n", type);
	if (len >= 0 && status != 204)	/* a 204 has no body and says no length */
		evbuffer_add_printf(out, "Content-Length: %lld\r\n", len);
	else if (r->chunked_out)
		evbuffer_add_printf(out, "Transfer-Encoding: chunked\r\n");
	if (r->keep_alive && r->http10)
		evbuffer_add_printf(out, "Connection: keep-alive\r\n");
	else if (!r->keep_alive)
		evbuffer_add_printf(out, "Connection: close\r\n");
	if (r->cors_origin)
		evbuffer_add_printf(out, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n",
				    r->cors_origin);
	if (extra)
		evbuffer_add(out, extra, strlen(extra));
	evbuffer_add(out, "\r\n", 2);
}

/* The request is answered: free it and go on with the connection. */
static void req_done(struct http_req *r)
{
	struct http_conn *c = r->conn;
	struct http_server *s = c->srv;
	int keep = r->keep_alive;

	req_free(r);
	c->req = NULL;
	s->in_flight--;
	if (c->dead) {
		c->state = ST_CLOSING;
		conn_schedule(c);
		return;
	}
	if (!keep) {
		c->state = ST_CLOSING;
		bufferevent_disable(c->bev, EV_READ);
		timer_set(c, 5000);
		if (!evbuffer_get_length(bufferevent_get_output(c->bev))) {
			c->dead = 1;
			conn_schedule(c);
		}
		return;
	}
	c->state = ST_IDLE;
	timer_set(c, s->o.idle_timeout_ms);
	conn_schedule(c);	/* a pipelined request may be waiting */
}

void http_reply(struct http_req *r, int status, const char *content_type,
		const void *body, size_t len, const char *extra_headers)
{
	put_head(r, status, content_type, (long long)len, extra_headers);
	/* A reply to HEAD has the headers of the body it does not carry. */
	if (len && !r->head_only)
		evbuffer_add(bufferevent_get_output(r->conn->bev), body, len);
	req_done(r);
}

static int check_output(struct http_req *r)
{
	struct http_conn *c = r->conn;
	if (c->dead)
		return -EPIPE;
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > c->srv->o.max_output) {
		LOG_WARN(LOG_MOD, "%s: client does not read its stream; closing", c->peer);
		c->dead = 1;
		conn_schedule(c);
		return -EPIPE;
	}
	return 0;
}

int http_stream_begin(struct http_req *r, int status, const char *content_type,
		      const char *extra_headers)
{
	r->streaming = 1;
	if (r->http10)
		r->keep_alive = 0;
	else
		r->chunked_out = 1;
	put_head(r, status, content_type, -1, extra_headers);
	return check_output(r);
}

int http_stream_write(struct http_req *r, const void *data, size_t len)
{
	if (!len || r->head_only)
		return 0;
	int rc = check_output(r);
	if (rc < 0)
		return rc;
	struct evbuffer *out = bufferevent_get_output(r->conn->bev);
	if (r->chunked_out) {
		evbuffer_add_printf(out, "%zx\r\n", len);
		evbuffer_add(out, data, len);
		evbuffer_add(out, "\r\n", 2);
	} else {
		evbuffer_add(out, data, len);
	}
	return 0;
}

void http_stream_end(struct http_req *r)
{
	if (r->chunked_out && !r->conn->dead && !r->head_only)
		evbuffer_add(bufferevent_get_output(r->conn->bev), "0\r\n\r\n", 5);
	req_done(r);
}

static const char *error_type(int status)
{
	switch (status) {
	case 401: return "authentication_error";
	case 404: return "not_found_error";
	case 500: return "internal_server_error";
	case 503: return "service_unavailable";
	default: return "invalid_request_error";
	}
}

void http_error_json(int status, const char *msg, const char *param, const char *code,
		     struct strbuf *out)
{
	sb_adds(out, "{\"error\":{\"message\":");
	sb_add_json_str(out, msg, strlen(msg));
	sb_addf(out, ",\"type\":\"%s\",\"param\":", error_type(status));
	if (param)
		sb_add_json_str(out, param, strlen(param));
	else
		sb_adds(out, "null");
	sb_adds(out, ",\"code\":");
	if (code)
		sb_add_json_str(out, code, strlen(code));
	else
		sb_adds(out, "null");
	sb_adds(out, "}}");
}

void http_reply_error(struct http_req *r, int status, const char *msg, const char *param,
		      const char *code, const char *extra_headers)
{
	struct strbuf b = STRBUF_INIT;
	http_error_json(status, msg, param, code, &b);
	http_reply(r, status, "application/json", b.buf, b.len, extra_headers);
	sb_release(&b);
}

void http_reply_method_not_allowed(struct http_req *r, const char *allow)
{
	char extra[64], msg[128];
	snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
	snprintf(msg, sizeof(msg), "method %.20s is not allowed here (use %s)", r->method, allow);
	http_reply_error(r, 405, msg, NULL, NULL, extra);
}

void http_reply_no_such_path(struct http_req *r)
{
	char msg[256];
	snprintf(msg, sizeof(msg), "no such path: %.200s", r->path);
	http_reply_error(r, 404, msg, NULL, NULL, NULL);
}
