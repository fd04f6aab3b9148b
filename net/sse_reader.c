/*
 * sse_reader.c - text/event-stream parsing (see sse_reader.h).
 */
#include "net/sse_reader.h"

#include <string.h>

void sse_reader_init(struct sse_reader *r)
{
	memset(r, 0, sizeof(*r));
	sb_init(&r->line, 256);
	sb_init(&r->data, 256);
}

void sse_reader_release(struct sse_reader *r)
{
	sb_release(&r->line);
	sb_release(&r->data);
}

/* One complete line (without its end). */
static int take_line(struct sse_reader *r, sse_event_fn fn, void *arg)
{
	const char *s = r->line.buf;
	size_t n = r->line.len;
	int rc = 0;

	if (n == 0) {
		if (r->has_data) {
			r->events++;
			rc = fn(arg, r->data.buf, r->data.len);
		}
		sb_reset(&r->data);
		r->has_data = 0;
		return rc;
	}
	if (s[0] == ':')
		return 0;
	const char *colon = memchr(s, ':', n);
	size_t flen = colon ? (size_t)(colon - s) : n;
	if (flen != 4 || memcmp(s, "data", 4))
		return 0;
	const char *v = colon ? colon + 1 : s + n;
	size_t vlen = (size_t)(s + n - v);
	if (vlen && *v == ' ')
		v++, vlen--;
	if (r->data.len + vlen + 1 > SSE_MAX_LINE) {
		r->too_long = 1;
		return SSE_ERR_TOO_LONG;
	}
	if (r->has_data)
		sb_addch(&r->data, '\n');
	sb_add(&r->data, v, vlen);
	r->has_data = 1;
	return 0;
}

int sse_feed(struct sse_reader *r, const char *buf, size_t len, sse_event_fn fn, void *arg)
{
	size_t i = 0;

	if (r->too_long)
		return SSE_ERR_TOO_LONG;
	while (i < len) {
		char c = buf[i];
		if (c == '\n' && r->last_cr) {	/* the LF of a CRLF */
			r->last_cr = 0;
			i++;
			continue;
		}
		r->last_cr = 0;
		if (c == '\n' || c == '\r') {
			r->last_cr = c == '\r';
			int rc = take_line(r, fn, arg);
			sb_reset(&r->line);
			i++;
			if (rc)
				return rc;
			continue;
		}
		/* Copy the run of ordinary bytes at once. */
		size_t j = i;
		while (j < len && buf[j] != '\n' && buf[j] != '\r')
			j++;
		if (r->line.len + (j - i) > SSE_MAX_LINE) {
			r->too_long = 1;
			sb_release(&r->line);
			sb_init(&r->line, 0);
			return SSE_ERR_TOO_LONG;
		}
		sb_add(&r->line, buf + i, j - i);
		i = j;
	}
	return 0;
}
