/*
 * rpc.h - the request plane: a framed, multiplexed RPC over TCP on a
 * libevent loop (wire format: net/frame.h and dyn-rpc(1)).
 *
 * A call sends one REQUEST (endpoint name + payload) and receives a
 * stream of DATA frames ended by END or ERROR.  Many calls share one TCP
 * connection, told apart by request id; the client keeps one pooled
 * connection per address.  Either side may cancel.
 *
 * Server:
 *     rpc_server_new(base, NULL, &srv);
 *     rpc_server_handle(srv, "ns/comp/echo", on_echo, NULL);
 *     rpc_server_listen(srv, "127.0.0.1", 0);   // rpc_server_port() = bound port
 *   A handler gets a struct rpc_call and answers now or later (from
 *   timers, other calls' callbacks...) with rpc_call_send() (DATA),
 *   then exactly one of rpc_call_end(), rpc_call_error() or
 *   rpc_call_finish().  That last call frees the call; until then the
 *   handler owns it, even after a cancel: when the client sends CANCEL
 *   or its connection goes away, the on_cancel callback runs (at once,
 *   from the loop), later sends fail with -ECANCELED, and the handler
 *   must still finish the call (usually from on_cancel itself).
 *   Backpressure: rpc_call_writable() is false while the connection's
 *   unsent output exceeds the high-water mark; rpc_call_on_drain()
 *   asks for a callback once it falls below the low-water mark.
 *   Graceful shutdown: rpc_server_stop_accepting() closes the listener
 *   and answers new requests with ERROR 503 "draining: ..."
 *   (net/frame.h); rpc_server_in_flight()
 *   counts unfinished calls (see rpc_server_hooks() for core/runtime.h).
 *
 * Client:
 *     rpc_client_new(base, NULL, &cli);
 *     rpc_call(cli, "127.0.0.1:4000", "ns/comp/echo", "{}", 2, 0, &cbs, arg, &st);
 *   Callbacks run on the loop, never from inside rpc_call().  A stream
 *   ends with exactly one on_end or on_error (connection refused or
 *   timed out, peer died mid-stream, ERROR frame...), after which the
 *   stream is freed.  rpc_stream_cancel() sends CANCEL, frees the
 *   stream and guarantees no further callbacks; it may be called from
 *   the stream's own callbacks, but not after on_end/on_error returned.
 *
 * Errors: functions return 0 or a negative errno with err_msg() set.
 * Stream errors carry code < 0 for local/transport failures (-errno:
 * -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -EPROTO...) and code > 0 for
 * an ERROR frame from the server (FRAME_ERR_* or application codes).
 * A malformed or oversized frame closes only the connection it came on,
 * with a logged error.  Logging module: "rpc".
 *
 * TLS: rpc_tls_configure() turns mutual TLS on for every server and
 * client created afterwards in this process (one certificate for both
 * sides; net/tls.h TLS_MUTUAL): a server refuses a peer whose
 * certificate is missing or not from the CA, with a log line "refusing
 * connection from HOST:PORT: TLS handshake failed: why", and a client's
 * streams to a server that fails verification end with -EPROTO.  The
 * frames are unchanged inside TLS.  Default: plain TCP.
 *
 * Threading: a server or client and everything created from it belong
 * to the thread running its event_base.  Payload pointers passed to
 * callbacks are valid only during the callback.
 */
#ifndef DYN_NET_RPC_H
#define DYN_NET_RPC_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct runtime_hooks;
struct rpc_server;
struct rpc_call;
struct rpc_client;
struct rpc_stream;

/* Mutual TLS from PEM files (see above); call before any loop runs.
 * 0 or -EINVAL with err_msg() naming the file that does not load. */
int rpc_tls_configure(const char *cert, const char *key, const char *ca);
int rpc_tls_enabled(void);

/* ---- server -------------------------------------------------------- */

struct rpc_server_opts {
	size_t max_frame;	/* payload limit per frame; 0 = 32 MiB */
	size_t high_water;	/* unsent bytes per connection above which a call
				 * is not writable; 0 = 4 MiB */
	size_t low_water;	/* on_drain fires below this; 0 = high_water / 4 */
	int64_t idle_timeout_ms;	/* close connections without calls and
					 * traffic this long; 0 = never */
	int64_t hello_timeout_ms;	/* close a connection that has not finished
					 * its TLS handshake and sent a whole frame
					 * this long after it opened; 0 = 10000 */
};

/* Why a call was cancelled. */
enum rpc_cancel_reason {
	RPC_CANCEL_CLIENT = 1,	/* the client sent CANCEL */
	RPC_CANCEL_DISCONNECT,	/* the client's connection closed or failed */
	RPC_CANCEL_SERVER,	/* the server is being freed */
};

/* payload/len: the request body (flags: FRAME_FLAG_BINARY if raw). */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const void *payload,
			       size_t len, unsigned flags, void *arg);

int rpc_server_new(struct event_base *base, const struct rpc_server_opts *opts,
		   struct rpc_server **out);
/* Register fn for an endpoint name (1-255 visible ASCII characters). */
int rpc_server_handle(struct rpc_server *s, const char *endpoint,
		      rpc_handler_fn fn, void *arg);
/* Bind and listen; host is a numeric address or name, port 0 = any. */
int rpc_server_listen(struct rpc_server *s, const char *host, int port);
int rpc_server_port(const struct rpc_server *s);
/* "HOST:PORT" to advertise: the listen host, or this machine's host name
 * when listening on a wildcard address.  Owned by s. */
const char *rpc_server_address(const struct rpc_server *s);
/* Close the listener; later requests get ERROR 503 whose message begins
 * with FRAME_DRAINING (net/frame.h).  Idempotent. */
void rpc_server_stop_accepting(struct rpc_server *s);
/* End every live call with ERROR code and msg (the client's stream fails
 * with them) and cancel it for its handler (RPC_CANCEL_SERVER), which
 * must finish it as after any cancel.  Returns how many were ended. */
long rpc_server_abort_calls(struct rpc_server *s, int code, const char *msg);
/* Calls started and not yet finished by their handler. */
long rpc_server_in_flight(const struct rpc_server *s);
/* Hooks for runtime_add_hooks(): stop accepting + in-flight count (the
 * calls, and connections with answers not yet written). */
void rpc_server_hooks(struct rpc_server *s, struct runtime_hooks *out);

struct rpc_server_stats {
	uint64_t connections_accepted, connections_open;
	uint64_t calls_started, calls_cancelled, protocol_errors;
};
void rpc_server_stats(const struct rpc_server *s, struct rpc_server_stats *out);

/* Close every connection, cancel every live call (RPC_CANCEL_SERVER) and
 * free the server.  Calls not finished by their on_cancel stay valid
 * for the handler to finish later.  Not from inside a callback of s. */
void rpc_server_free(struct rpc_server *s);

/* ---- a call, server side ------------------------------------------- */

const char *rpc_call_endpoint(const struct rpc_call *c);
uint64_t rpc_call_id(const struct rpc_call *c);
/* "HOST:PORT" of the client (owned by the connection; "" once gone). */
const char *rpc_call_peer(const struct rpc_call *c);

/* Send one DATA frame.  -ECANCELED after a cancel, -EMSGSIZE above the
 * frame limit.  Never blocks: data is queued (see rpc_call_writable). */
int rpc_call_send(struct rpc_call *c, const void *data, size_t len, unsigned flags);
/* Finish with END (data may be NULL/0).  Frees c, whatever the result. */
int rpc_call_end(struct rpc_call *c, const void *data, size_t len, unsigned flags);
/* Finish with ERROR code (> 0) and a message.  Frees c. */
int rpc_call_error(struct rpc_call *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Finish without a result.  After a cancel nothing is sent; on a live
 * call the client gets CANCEL (its stream fails with -ECANCELED).  Frees c. */
void rpc_call_finish(struct rpc_call *c);

/* 1 once cancelled (rpc_call_send would fail). */
int rpc_call_cancelled(const struct rpc_call *c);
/* fn runs once, from the loop, when the call is cancelled (reason). */
void rpc_call_on_cancel(struct rpc_call *c,
			void (*fn)(struct rpc_call *c, enum rpc_cancel_reason why, void *arg),
			void *arg);
/* Unsent bytes queued on the call's connection (0 once cancelled). */
size_t rpc_call_buffered(const struct rpc_call *c);
/* 1 while the connection's unsent output is below the high-water mark. */
int rpc_call_writable(const struct rpc_call *c);
/* fn runs once, from the loop, when unsent output falls below the
 * low-water mark (soon if it already is).  Not called after a cancel.
 * One pending request per call; a new one replaces the old. */
void rpc_call_on_drain(struct rpc_call *c, void (*fn)(struct rpc_call *c, void *arg),
		       void *arg);

/* ---- client -------------------------------------------------------- */

struct rpc_client_opts {
	size_t max_frame;		/* 0 = 32 MiB */
	int64_t connect_timeout_ms;	/* 0 = 5000 */
	int64_t idle_timeout_ms;	/* close a pooled connection without
					 * streams after this; 0 = 60000, <0 never */
	int64_t keepalive_ms;		/* PING a connection with open streams
					 * that was silent this long, and fail it
					 * if still silent after as long again;
					 * 0 = 10000, <0 = off */
};

struct rpc_stream_cbs {
	/* One DATA frame (may be NULL: ignored). */
	void (*on_data)(struct rpc_stream *st, const void *data, size_t len,
			unsigned flags, void *arg);
	/* END: the stream finished; data is END's optional payload. */
	void (*on_end)(struct rpc_stream *st, const void *data, size_t len,
		       unsigned flags, void *arg);
	/* The stream failed: code < 0 local (-errno), > 0 from the server. */
	void (*on_error)(struct rpc_stream *st, int code, const char *msg, void *arg);
};

int rpc_client_new(struct event_base *base, const struct rpc_client_opts *opts,
		   struct rpc_client **out);
/* Free the client, its connections and streams (CANCEL is sent for open
 * streams; no callbacks run).  Not from inside a callback of c. */
void rpc_client_free(struct rpc_client *c);

/*
 * Start a call to endpoint at address ("HOST:PORT", "[V6]:PORT").
 * payload is copied.  On success *out (optional) is the stream handle.
 * Synchronous failures: -EINVAL bad address or endpoint name, -EMSGSIZE
 * payload too large; everything else arrives through on_error.
 */
int rpc_call(struct rpc_client *c, const char *address, const char *endpoint,
	     const void *payload, size_t len, unsigned flags,
	     const struct rpc_stream_cbs *cbs, void *arg, struct rpc_stream **out);

/* Send CANCEL and free st; no callback runs for it afterwards. */
void rpc_stream_cancel(struct rpc_stream *st);
uint64_t rpc_stream_id(const struct rpc_stream *st);

struct rpc_client_stats {
	uint64_t connections_opened, connections_open;
	uint64_t calls_started, protocol_errors;
};
void rpc_client_stats(const struct rpc_client *c, struct rpc_client_stats *out);

#endif
