/*
 * frame.c - encode and decode request-plane frames (see frame.h and the
 * WIRE FORMAT section of dyn-rpc(1)).
 */
#include "net/frame.h"
#include "core/byteorder.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>

/* Past this much unused capacity an idle reader gives its memory back. */
#define READER_KEEP_BYTES (4u << 20)

static const char *const kind_names[] = {
	[FRAME_REQUEST] = "REQUEST", [FRAME_DATA] = "DATA", [FRAME_END] = "END",
	[FRAME_ERROR] = "ERROR", [FRAME_CANCEL] = "CANCEL", [FRAME_PING] = "PING",
	[FRAME_PONG] = "PONG",
};

const char *frame_kind_name(int kind)
{
	if (kind < FRAME_REQUEST || kind > FRAME_KIND_MAX)
		return "?";
	return kind_names[kind];
}

void frame_header_put(uint8_t out[FRAME_HEADER_SIZE], enum frame_kind kind,
		      uint16_t flags, uint64_t id, uint32_t length, uint32_t aux)
{
	out[0] = FRAME_MAGIC0;
	out[1] = FRAME_MAGIC1;
	out[2] = FRAME_VERSION;
	out[3] = (uint8_t)kind;
	put_le16(out + 4, flags);
	put_le16(out + 6, 0);
	put_le64(out + 8, id);
	put_le32(out + 16, length);
	put_le32(out + 20, aux);
}

void frame_append(struct strbuf *sb, enum frame_kind kind, uint16_t flags,
		  uint64_t id, uint32_t aux, const void *payload, size_t len)
{
	sb_grow(sb, FRAME_HEADER_SIZE + len);
	frame_header_put((uint8_t *)sb->buf + sb->len, kind, flags, id,
			 (uint32_t)len, aux);
	if (len)
		memcpy(sb->buf + sb->len + FRAME_HEADER_SIZE, payload, len);
	sb_setlen(sb, sb->len + FRAME_HEADER_SIZE + len);
}

int frame_endpoint_valid(const char *name, size_t len)
{
	if (len == 0 || len > FRAME_MAX_ENDPOINT)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x21 || (unsigned char)name[i] > 0x7e)
			return 0;
	return 1;
}

int frame_append_request(struct strbuf *sb, uint64_t id, uint16_t flags,
			 const char *endpoint, const void *body, size_t len,
			 size_t max_payload)
{
	size_t name_len = strlen(endpoint);

	if (!frame_endpoint_valid(endpoint, name_len))
		return err_set(-EINVAL, "bad endpoint name '%s' (1-%d visible ASCII characters)",
			       endpoint, FRAME_MAX_ENDPOINT);
	if (len > max_payload || name_len + len > max_payload)
		return err_set(-EMSGSIZE, "request of %zu bytes exceeds the frame limit of %zu bytes",
			       name_len + len, max_payload);
	size_t total = name_len + len;
	sb_grow(sb, FRAME_HEADER_SIZE + total);
	uint8_t *p = (uint8_t *)sb->buf + sb->len;
	frame_header_put(p, FRAME_REQUEST, flags, id, (uint32_t)total,
			 (uint32_t)name_len);
	memcpy(p + FRAME_HEADER_SIZE, endpoint, name_len);
	if (len)
		memcpy(p + FRAME_HEADER_SIZE + name_len, body, len);
	sb_setlen(sb, sb->len + FRAME_HEADER_SIZE + total);
	return 0;
}

/* Validate a complete header; fill the fixed fields of f. */
static int check_header(const uint8_t *h, size_t max_payload, struct frame *f)
{
	if (h[0] != FRAME_MAGIC0 || h[1] != FRAME_MAGIC1)
		return err_set(-EBADMSG, "bad frame magic 0x%02x%02x (not a dyn request-plane peer?)",
			       h[0], h[1]);
	if (h[2] != FRAME_VERSION)
		return err_set(-EPROTONOSUPPORT, "unsupported frame version %u (this side speaks %d)",
			       h[2], FRAME_VERSION);
	unsigned kind = h[3];
	if (kind < FRAME_REQUEST || kind > FRAME_KIND_MAX)
		return err_set(-EPROTO, "unknown frame kind %u", kind);
	uint16_t flags = get_le16(h + 4);
	if (flags & ~FRAME_FLAGS_KNOWN)
		return err_set(-EPROTO, "%s frame with unknown flags 0x%04x",
			       kind_names[kind], flags);
	if (get_le16(h + 6) != 0)
		return err_set(-EPROTO, "%s frame with non-zero reserved field",
			       kind_names[kind]);
	uint64_t id = get_le64(h + 8);
	uint32_t length = get_le32(h + 16);
	uint32_t aux = get_le32(h + 20);

	if (length > max_payload)
		return err_set(-EMSGSIZE, "%s frame of %u bytes exceeds the limit of %zu bytes",
			       kind_names[kind], length, max_payload);
	if (id == 0 && kind != FRAME_PING && kind != FRAME_PONG)
		return err_set(-EPROTO, "%s frame with request id 0", kind_names[kind]);
	switch (kind) {
	case FRAME_REQUEST:
		if (aux == 0 || aux > FRAME_MAX_ENDPOINT || aux > length)
			return err_set(-EPROTO, "REQUEST frame with bad endpoint name length %u",
				       aux);
		break;
	case FRAME_ERROR:
		if (aux == 0)
			return err_set(-EPROTO, "ERROR frame with error code 0");
		break;
	default:
		if (aux != 0)
			return err_set(-EPROTO, "%s frame with non-zero aux field",
				       kind_names[kind]);
	}
	f->kind = (enum frame_kind)kind;
	f->flags = flags;
	f->id = id;
	f->length = length;
	f->aux = aux;
	return 0;
}

int frame_decode(const void *buf, size_t len, size_t max_payload,
		 struct frame *f, size_t *used)
{
	const uint8_t *p = buf;

	memset(f, 0, sizeof(*f));
	/* Reject garbage as early as the bytes allow, even before a whole
	 * header has arrived. */
	if ((len >= 1 && p[0] != FRAME_MAGIC0) || (len >= 2 && p[1] != FRAME_MAGIC1))
		return err_set(-EBADMSG, "bad frame magic 0x%02x%02x (not a dyn request-plane peer?)",
			       p[0], len >= 2 ? p[1] : 0);
	if (len < FRAME_HEADER_SIZE) {
		*used = FRAME_HEADER_SIZE;
		return FRAME_NEED_MORE;
	}
	int rc = check_header(p, max_payload, f);
	if (rc < 0)
		return rc;
	size_t total = FRAME_HEADER_SIZE + (size_t)f->length;
	*used = total;
	if (len < total)
		return FRAME_NEED_MORE;
	f->payload = p + FRAME_HEADER_SIZE;
	if (f->kind == FRAME_REQUEST) {
		if (!frame_endpoint_valid((const char *)f->payload, f->aux))
			return err_set(-EPROTO, "REQUEST frame with an endpoint name that is not visible ASCII");
		f->endpoint = (const char *)f->payload;
		f->endpoint_len = f->aux;
		f->body = f->payload + f->aux;
		f->body_len = f->length - f->aux;
	}
	return FRAME_OK;
}

void frame_reader_init(struct frame_reader *r, size_t max_payload)
{
	sb_init(&r->buf, 0);
	r->off = 0;
	r->max_payload = max_payload ? max_payload : FRAME_DEFAULT_MAX_PAYLOAD;
	r->error = 0;
}

void frame_reader_release(struct frame_reader *r)
{
	sb_release(&r->buf);
	r->off = 0;
}

/* Move the undecoded tail to the front so the buffer does not creep. */
static void reader_compact(struct frame_reader *r)
{
	size_t pending = r->buf.len - r->off;

	if (r->off == 0)
		return;
	if (pending == 0 && r->buf.alloc > READER_KEEP_BYTES) {
		sb_release(&r->buf);
	} else {
		memmove(r->buf.buf, r->buf.buf + r->off, pending);
		sb_setlen(&r->buf, pending);
	}
	r->off = 0;
}

void *frame_reader_space(struct frame_reader *r, size_t want, size_t *avail)
{
	size_t pending = r->buf.len - r->off;
	size_t need = want;

	/* If the current frame's size is known, make room for all of it. */
	if (pending >= FRAME_HEADER_SIZE) {
		struct frame f;
		size_t total;
		if (frame_decode(r->buf.buf + r->off, pending, r->max_payload, &f,
				 &total) == FRAME_NEED_MORE && total - pending > need)
			need = total - pending;
	}
	if (r->off && (r->off == r->buf.len || r->buf.alloc - r->buf.len - 1 < need))
		reader_compact(r);
	sb_grow(&r->buf, need);
	*avail = r->buf.alloc - r->buf.len - 1;
	return r->buf.buf + r->buf.len;
}

void frame_reader_commit(struct frame_reader *r, size_t n)
{
	sb_setlen(&r->buf, r->buf.len + n);
}

void frame_reader_feed(struct frame_reader *r, const void *data, size_t len)
{
	size_t avail;
	void *p = frame_reader_space(r, len, &avail);
	memcpy(p, data, len);
	frame_reader_commit(r, len);
}

int frame_reader_next(struct frame_reader *r, struct frame *f)
{
	size_t used;

	if (r->error)
		return err_set(r->error, "frame stream already failed");
	int rc = frame_decode(r->buf.buf + r->off, r->buf.len - r->off,
			      r->max_payload, f, &used);
	if (rc < 0) {
		r->error = rc;
		return rc;
	}
	if (rc == FRAME_OK)
		r->off += used;
	return rc;
}
