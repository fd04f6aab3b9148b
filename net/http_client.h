/*
 * http_client.h - many concurrent streaming HTTP requests on one libevent
 * loop (libcurl multi interface driven by curl_multi_socket_action).
 *
 * Why libcurl multi rather than an own client on bufferevents: it brings
 * a complete, proven HTTP/1.1 implementation (chunked and close-delimited
 * bodies, keep-alive connection reuse, proxies, TLS for https:// targets)
 * whose per-transfer cost is small enough for thousands of concurrent
 * streams, and the socket_action interface lets our own event loop own
 * every socket, so we still see the moment each socket becomes readable.
 * That moment is the arrival timestamp given to on_data: the monotonic
 * clock read once per event-loop turn, when libevent reports the turn's
 * first ready socket (right after its poll returned), before libcurl
 * reads any of them.  Every socket reported ready in that turn gets the
 * same timestamp, so many ready sockets handled in one turn do not skew
 * each other's timestamps by the time spent parsing the others (data
 * libcurl reads outside a socket event, e.g. on its timer, gets the clock
 * read then).
 *
 * Usage:
 *     struct httpc *hc;
 *     httpc_new(base, max_conns, &hc);
 *     struct httpc_req r = { .url = ..., .body = ..., .on_data = ..., .on_done = ... };
 *     httpc_start(hc, &r);               // copies what it needs from r
 *     event_base_dispatch(base);
 *     httpc_free(hc);                    // aborts transfers still running
 *
 * Callbacks run on the loop thread.  on_data may return non-zero to abort
 * the transfer (it then ends with HTTPC_ABORTED).  on_data must not call
 * httpc_* functions (libcurl forbids re-entering the multi handle from its
 * callbacks); on_done may (it runs outside libcurl).
 *
 * Ownership: header and body strings are copied.  Thread-safety: an httpc
 * and its requests belong to the thread running its event_base.
 */
#ifndef DYN_NET_HTTP_CLIENT_H
#define DYN_NET_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct httpc;

/* How a transfer ended (beyond the HTTP status). */
enum httpc_result {
	HTTPC_OK = 0,		/* complete response received */
	HTTPC_CONNECT,		/* could not resolve or connect */
	HTTPC_DISCONNECT,	/* connection lost or response truncated */
	HTTPC_TIMEOUT,		/* --timeout expired */
	HTTPC_ABORTED,		/* on_data asked to stop, or httpc_free() */
	HTTPC_OTHER,		/* anything else (see msg) */
};

struct httpc_done {
	enum httpc_result result;
	long status;		/* HTTP status, 0 if none was received */
	uint64_t t_ns;		/* mono_ns() when the transfer ended */
	const char *msg;	/* libcurl's message ("" when OK) */
};

struct httpc_req {
	const char *url;
	const char *method;		/* NULL: POST when body, else GET */
	const char *body;		/* may be NULL */
	size_t body_len;
	const char *const *headers;	/* "Name: value", NULL-terminated; may be NULL */
	long timeout_ms;		/* whole transfer; 0 = none */
	/* Response body bytes as they arrive; t_ns = arrival (see above). */
	int (*on_data)(void *arg, const char *data, size_t len, uint64_t t_ns);
	/* Called exactly once per started request. */
	void (*on_done)(void *arg, const struct httpc_done *d);
	void *arg;
};

/* max_conns: cap on open connections (0 = no cap; kept for reuse). */
int httpc_new(struct event_base *base, long max_conns, struct httpc **out);
/* Start a request.  Returns 0 (on_done will follow) or a negative code. */
int httpc_start(struct httpc *hc, const struct httpc_req *req);
/* Number of transfers in progress. */
long httpc_active(const struct httpc *hc);
/* Abort everything (on_done is called with HTTPC_ABORTED) and free. */
void httpc_free(struct httpc *hc);

const char *httpc_result_name(enum httpc_result r);

#endif
