/*
 * sse_reader.h - incremental parser for a text/event-stream body (the
 * client side of Server-Sent Events, as OpenAI-compatible servers stream).
 *
 * Feed the body in arbitrary pieces; each complete event (ended by a
 * blank line) is handed to the callback with its "data:" lines joined by
 * '\n' (per the WHATWG EventSource rules: one optional space after the
 * colon is dropped, comment lines ":..." and other fields are ignored,
 * CRLF, LF and CR line ends are accepted).  An event whose data is still
 * incomplete when the stream ends is not delivered.
 *
 * Memory is bounded: a line, or an event's data, longer than SSE_MAX_LINE
 * bytes (1 MiB; no OpenAI-style chunk comes near it) makes sse_feed fail
 * with SSE_ERR_TOO_LONG, then and on every later call; the stream is
 * unusable from then on (a server that never sends a newline cannot grow
 * the buffer without bound).
 *
 * Ownership: the reader owns its buffers; the data pointer passed to the
 * callback is valid only during the call.  Not thread-safe (one stream).
 */
#ifndef DYN_NET_SSE_READER_H
#define DYN_NET_SSE_READER_H

#include "core/strbuf.h"

#include <stddef.h>

struct sse_reader {
	struct strbuf line;	/* the line being read */
	struct strbuf data;	/* the event's data so far */
	int has_data;
	int last_cr;		/* previous byte was CR (CRLF handling) */
	size_t events;		/* events delivered */
	int too_long;		/* SSE_MAX_LINE exceeded: the stream is dead */
};

#define SSE_MAX_LINE (1u << 20)
#define SSE_ERR_TOO_LONG (-7)	/* sse_feed: a line or event over SSE_MAX_LINE */

/* Return a positive value from the callback to stop parsing (sse_feed
 * returns it). */
typedef int (*sse_event_fn)(void *arg, const char *data, size_t len);

void sse_reader_init(struct sse_reader *r);
void sse_reader_release(struct sse_reader *r);
/* Parse buf[0..len); returns 0, the callback's non-zero result, or
 * SSE_ERR_TOO_LONG. */
int sse_feed(struct sse_reader *r, const char *buf, size_t len, sse_event_fn fn, void *arg);

#endif
