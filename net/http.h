/*
 * http.h - a small HTTP/1.1 server on libevent bufferevents, for the
 * OpenAI-compatible frontend and the workers' system ports.
 *
 * What it does: request line + headers + Content-Length bodies, keep-alive
 * (HTTP/1.1 default, HTTP/1.0 with "Connection: keep-alive"), pipelined
 * requests answered in order, "Expect: 100-continue", whole responses
 * with Content-Length and streamed responses (chunked transfer coding, or
 * close-delimited for HTTP/1.0) such as Server-Sent Events.  HEAD reaches
 * handlers as GET and is answered with the headers alone.  No thread per
 * connection: thousands of idle streams cost one bufferevent each.
 *
 * Defences: the request head is limited in bytes and header count (431),
 * the body by max_body (413, answered from Content-Length before the body
 * is read, then the connection is closed), a request must arrive whole
 * within request_timeout_ms (slowloris; the connection is closed with
 * 408), idle keep-alive connections are closed after idle_timeout_ms, a
 * malformed head or differing Content-Length headers get 400 and a close,
 * chunked request bodies get 411.  A client that closes its side of the
 * connection (even only for writing) has gone: its request is cancelled,
 * as a proxy in front would do.
 * A client whose unread output exceeds max_output is disconnected.
 *
 * Requests: the handler gets a struct http_req once the whole request
 * (head and body) has arrived and answers now or later (from timers, RPC
 * callbacks...) with http_reply(), or with http_stream_begin(), any
 * number of http_stream_write() and http_stream_end().  http_reply() and
 * http_stream_end() free the request.  If the client goes away first,
 * the on_close callback (http_req_on_close) runs and the request is freed
 * when it returns: a handler that keeps a request across loop turns must
 * set one and drop its pointer there.  Without one, the request is freed
 * silently (fine for handlers that answer at once).
 *
 * Errors: functions return 0 / negative errno with err_msg() set.
 * Logging module "http".  Threading: a server and its requests belong to
 * the thread running its event_base.
 */
#ifndef DYN_NET_HTTP_H
#define DYN_NET_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct runtime_hooks;
struct http_server;
struct http_req;
struct strbuf;
struct ssl_ctx_st;

struct http_server_opts {
	size_t max_body;		/* 0 = 32 MiB */
	size_t max_head;		/* bytes of request line + headers; 0 = 64 KiB */
	int max_headers;		/* 0 = 100 */
	int64_t request_timeout_ms;	/* whole request must arrive; 0 = 30000 */
	int64_t idle_timeout_ms;	/* keep-alive idle; 0 = 120000 */
	size_t max_output;		/* unsent bytes per connection; 0 = 64 MiB */
	/* CORS: the origins browsers may call from, comma-separated, or "*"
	 * for any; NULL or "" = off.  When on, a request whose Origin is
	 * allowed gets Access-Control-Allow-Origin (and Vary: Origin) on its
	 * reply, and a preflight (OPTIONS with Access-Control-Request-Method)
	 * is answered here: 204 with the allowed methods and the requested
	 * headers, or 403 for an origin not allowed.  Off, OPTIONS reaches the
	 * handler like any method.  Copied. */
	const char *allowed_origins;
	/* HTTPS: a context from tls_ctx_new(TLS_SERVER, ...) (net/tls.h),
	 * NULL = plain HTTP.  Not owned: it must outlive the server.  A
	 * failed handshake closes its connection with a log line. */
	struct ssl_ctx_st *tls;
};

typedef void (*http_handler_fn)(struct http_req *r, void *arg);

int http_server_new(struct event_base *base, const struct http_server_opts *opts,
		    http_handler_fn fn, void *arg, struct http_server **out);
/* Bind and listen (port 0 = any free port). */
int http_server_listen(struct http_server *s, const char *host, int port);
int http_server_port(const struct http_server *s);
/* Close the listener (idempotent); open connections finish their
 * requests, and keep-alive connections close after their next reply. */
void http_server_stop_accepting(struct http_server *s);
/* Requests handed to the handler and not yet answered. */
long http_server_in_flight(const struct http_server *s);
long http_server_connections(const struct http_server *s);
void http_server_hooks(struct http_server *s, struct runtime_hooks *out);
/* Close every connection (on_close runs for open requests) and free. */
void http_server_free(struct http_server *s);

/* ---- a request ------------------------------------------------------- */

const char *http_req_method(const struct http_req *r);
/* The path without the query string ("/v1/models"). */
const char *http_req_path(const struct http_req *r);
/* The query string after '?', or "". */
const char *http_req_query(const struct http_req *r);
/* The value of a header (case-insensitive name), or NULL. */
const char *http_req_header(const struct http_req *r, const char *name);
/* The body (NUL-terminated for convenience; *len excludes the NUL). */
const char *http_req_body(const struct http_req *r, size_t *len);
/* "HOST:PORT" of the client. */
const char *http_req_peer(const struct http_req *r);

/* fn runs once if the client disconnects before the reply is complete;
 * r is freed when fn returns. */
void http_req_on_close(struct http_req *r, void (*fn)(struct http_req *r, void *arg),
		       void *arg);

/* Answer with a whole body.  extra_headers: NULL or "Name: value\r\n"...
 * Frees r. */
void http_reply(struct http_req *r, int status, const char *content_type,
		const void *body, size_t len, const char *extra_headers);
/* Start a streamed reply; then http_stream_write() pieces and
 * http_stream_end().  Returns 0, or -EPIPE if the client is gone. */
int http_stream_begin(struct http_req *r, int status, const char *content_type,
		      const char *extra_headers);
int http_stream_write(struct http_req *r, const void *data, size_t len);
/* Finish the stream; frees r. */
void http_stream_end(struct http_req *r);
/* Unsent bytes queued on the request's connection. */
size_t http_req_buffered(const struct http_req *r);

/* "OK", "Not Found", ... for a status code. */
const char *http_status_text(int status);

/*
 * The error body every role answers with, in OpenAI's shape:
 *   {"error":{"message":MSG,"type":TYPE,"param":PARAM|null,"code":CODE|null}}
 * TYPE follows the status: authentication_error (401), not_found_error
 * (404), internal_server_error (500), service_unavailable (503),
 * invalid_request_error (any other).  CODE is, as in OpenAI's API, a short
 * string naming the error ("model_not_found", "invalid_api_key") or null.
 */
void http_error_json(int status, const char *msg, const char *param, const char *code,
		     struct strbuf *out);
/* http_reply() with that body (application/json). */
void http_reply_error(struct http_req *r, int status, const char *msg, const char *param,
		      const char *code, const char *extra_headers);
/* 405 naming the methods the path takes ("GET, HEAD"), in the header
 * Allow and in the message. */
void http_reply_method_not_allowed(struct http_req *r, const char *allow);
/* 404 naming the path. */
void http_reply_no_such_path(struct http_req *r);

#endif
