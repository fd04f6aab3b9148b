/*
 * frame.h - the request-plane wire format: length-prefixed frames.
 *
 * Every frame is a fixed 24-byte little-endian header followed by
 * `length` payload bytes (man dyn-rpc(1), WIRE FORMAT, is the reference):
 *
 *   offset size  field
 *   0      2     magic      0x44 0x59 ("DY")
 *   2      1     version    1
 *   3      1     kind       enum frame_kind
 *   4      2     flags      FRAME_FLAG_*; undefined bits must be 0
 *   6      2     reserved   must be 0
 *   8      8     id         request id (stream id), non-zero except PING/PONG
 *   16     4     length     payload bytes after the header
 *   20     4     aux        REQUEST: endpoint name length; ERROR: error code;
 *                           every other kind: 0
 *
 * Payloads are JSON text unless FRAME_FLAG_BINARY is set (raw bytes).
 * A REQUEST payload is the endpoint name (aux bytes, visible ASCII)
 * immediately followed by the request body.
 *
 * Everything here is pure (no I/O, no globals): encoders append to a
 * strbuf, the decoder reads a byte buffer.  frame_reader adds the
 * buffering for a byte stream that arrives in arbitrary pieces.
 * Thread-safety: functions are reentrant; a frame_reader belongs to one
 * thread.  Errors set err_msg() (module "frame").
 */
#ifndef DYN_NET_FRAME_H
#define DYN_NET_FRAME_H

#include "core/strbuf.h"

#include <stddef.h>
#include <stdint.h>

#define FRAME_MAGIC0 0x44		/* 'D' */
#define FRAME_MAGIC1 0x59		/* 'Y' */
#define FRAME_VERSION 1
#define FRAME_HEADER_SIZE 24
#define FRAME_DEFAULT_MAX_PAYLOAD (32u << 20)	/* 32 MiB */
#define FRAME_MAX_ENDPOINT 255		/* longest endpoint name in a REQUEST */

enum frame_kind {
	FRAME_REQUEST = 1,	/* client -> server: endpoint name + body; opens stream id */
	FRAME_DATA = 2,		/* server -> client: one response item */
	FRAME_END = 3,		/* server -> client: last frame of a stream (payload optional) */
	FRAME_ERROR = 4,	/* server -> client: stream failed; aux = code, payload = message */
	FRAME_CANCEL = 5,	/* either way: abandon stream id (client: stop producing) */
	FRAME_PING = 6,		/* either way: liveness probe; answered by PONG */
	FRAME_PONG = 7,		/* reply to PING with the same id and payload */
};
#define FRAME_KIND_MAX FRAME_PONG

/* Flags (u16).  Only defined bits may be set. */
#define FRAME_FLAG_BINARY 0x0001u	/* payload is raw bytes, not JSON text */
#define FRAME_FLAGS_KNOWN FRAME_FLAG_BINARY

/* Error codes carried by ERROR frames (aux).  HTTP-like on purpose; an
 * application may use other positive values. */
#define FRAME_ERR_BAD_REQUEST 400	/* the request payload was not acceptable */
#define FRAME_ERR_NO_ENDPOINT 404	/* no handler for the endpoint name */
#define FRAME_ERR_TOO_LARGE 413		/* a response would exceed the frame limit */
#define FRAME_ERR_INTERNAL 500		/* the handler failed */
#define FRAME_ERR_UNAVAILABLE 503	/* the server is shutting down */

/* How a 503's message begins when the server is draining (shutting down
 * gracefully, dyn-serve(1) FAULT TOLERANCE):
 *   "draining: ..."  the request was refused before it started: send it
 *                    as it is to another instance;
 *   "migrate: ..."   the request was started and ended part way (the
 *                    grace period ran out): what was streamed is valid;
 *                    the rest may be asked of another instance (for the
 *                    generate endpoint: core/proto/generate.h). */
#define FRAME_DRAINING "draining:"
#define FRAME_MIGRATE "migrate:"
/* How a 503 of a worker's health endpoint begins when its engine has
 * requests and makes no progress (dyn-serve(1) FAULT TOLERANCE). */
#define FRAME_STALLED "stalled:"

/* A decoded frame.  payload (and endpoint/body for REQUEST) point into
 * the buffer that was decoded and are valid only as long as it is. */
struct frame {
	enum frame_kind kind;
	uint16_t flags;
	uint64_t id;
	uint32_t aux;
	const uint8_t *payload;
	uint32_t length;
	/* REQUEST only: the endpoint name (not NUL-terminated) and the body. */
	const char *endpoint;
	size_t endpoint_len;
	const uint8_t *body;
	size_t body_len;
};

/* "REQUEST", "DATA", ...; "?" for an unknown value. */
const char *frame_kind_name(int kind);

/* Write the header for a frame into out.  No validation. */
void frame_header_put(uint8_t out[FRAME_HEADER_SIZE], enum frame_kind kind,
		      uint16_t flags, uint64_t id, uint32_t length, uint32_t aux);

/* Append one whole frame (header + payload) to sb. */
void frame_append(struct strbuf *sb, enum frame_kind kind, uint16_t flags,
		  uint64_t id, uint32_t aux, const void *payload, size_t len);

/* Append a REQUEST frame: endpoint name then body. Returns 0, or -EINVAL
 * for a bad name / -EMSGSIZE when name + body exceed max_payload. */
int frame_append_request(struct strbuf *sb, uint64_t id, uint16_t flags,
			 const char *endpoint, const void *body, size_t len,
			 size_t max_payload);

/* Is name a valid endpoint name: 1..FRAME_MAX_ENDPOINT visible ASCII
 * bytes (0x21..0x7e)? */
int frame_endpoint_valid(const char *name, size_t len);

/* Decoder results (negative values are errors). */
#define FRAME_NEED_MORE 0
#define FRAME_OK 1

/*
 * Decode the frame at the start of buf[0..len).
 *  FRAME_OK:        *f is filled, *used = bytes the frame occupies.
 *  FRAME_NEED_MORE: the frame is incomplete; *used = how many bytes the
 *                   whole frame needs once known (FRAME_HEADER_SIZE while
 *                   the header itself is incomplete).
 *  < 0:             the stream is not valid dyn framing; err_msg() says why:
 *                   -EBADMSG bad magic, -EPROTONOSUPPORT other version,
 *                   -EPROTO bad kind/flags/reserved/fields,
 *                   -EMSGSIZE payload longer than max_payload.
 * Header errors are reported as soon as the header is complete (an
 * oversized frame is refused before its payload arrives).
 */
int frame_decode(const void *buf, size_t len, size_t max_payload,
		 struct frame *f, size_t *used);

/*
 * frame_reader: frames out of a byte stream that arrives in pieces.
 * Bytes go in with frame_reader_feed() (copy) or, without a copy, by
 * writing into frame_reader_space() then frame_reader_commit().
 * frame_reader_next() returns frames in order; each frame's pointers stay
 * valid until the next feed/space call.  An error is sticky: the stream
 * cannot be resynchronised.
 */
struct frame_reader {
	struct strbuf buf;
	size_t off;		/* start of the first undecoded byte */
	size_t max_payload;
	int error;		/* sticky negative code once failed */
};

void frame_reader_init(struct frame_reader *r, size_t max_payload);
void frame_reader_release(struct frame_reader *r);
void frame_reader_feed(struct frame_reader *r, const void *data, size_t len);
/* Room to write at least min(want, what the current frame still needs)
 * bytes; *avail = writable bytes at the returned pointer. */
void *frame_reader_space(struct frame_reader *r, size_t want, size_t *avail);
void frame_reader_commit(struct frame_reader *r, size_t n);
/* FRAME_OK with *f, FRAME_NEED_MORE, or the (sticky) negative error. */
int frame_reader_next(struct frame_reader *r, struct frame *f);
/* Bytes received but not yet returned as frames. */
static inline size_t frame_reader_pending(const struct frame_reader *r)
{
	return r->buf.len - r->off;
}

#endif
