/*
 * kv_xfer_wire.c - encode and parse the KV data port's messages (see
 * kv_xfer_wire.h).
 */
#include "net/kv_xfer_wire.h"
#include "core/byteorder.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>

/* Largest errno a reply may carry: anything above is not an errno. */
#define MAX_STATUS 4095u

int kvx_req_encode(uint8_t out[KVX_REQ_MAX], const struct kvx_req *r)
{
	size_t n = strlen(r->layout);
	if (n > KVX_MAX_LAYOUT)
		return err_set(-EINVAL, "KV layout fingerprint of %zu bytes (at most %d)", n,
			       KVX_MAX_LAYOUT);
	memcpy(out, KVX_MAGIC, 4);
	put_le16(out + 4, KVX_VERSION);
	put_le16(out + 6, r->op);
	put_le64(out + 8, r->handle);
	put_le32(out + 16, r->first);
	put_le32(out + 20, r->count);
	put_le64(out + 24, r->block_bytes);
	put_le16(out + 32, (uint16_t)n);
	memcpy(out + KVX_REQ_HEAD, r->layout, n);
	return KVX_REQ_HEAD + (int)n;
}

int kvx_req_parse(const uint8_t *buf, size_t len, struct kvx_req *r, size_t *used)
{
	*used = KVX_REQ_HEAD;
	if (len >= 4 && memcmp(buf, KVX_MAGIC, 4))
		return err_set(-EBADMSG, "not a KV transfer request (bad magic %02x%02x%02x%02x)",
			       buf[0], buf[1], buf[2], buf[3]);
	if (len < KVX_REQ_HEAD)
		return KVX_NEED_MORE;
	uint16_t version = get_le16(buf + 4), layout_len = get_le16(buf + 32);
	if (version != KVX_VERSION)
		return err_set(-EPROTONOSUPPORT, "KV transfer version %u (this side speaks %d)",
			       version, KVX_VERSION);
	r->op = get_le16(buf + 6);
	r->handle = get_le64(buf + 8);
	r->first = get_le32(buf + 16);
	r->count = get_le32(buf + 20);
	r->block_bytes = get_le64(buf + 24);
	if (r->op < KVX_OP_FETCH_TCP || r->op > KVX_OP_RELEASE)
		return err_set(-EPROTO, "unknown KV transfer op %u", r->op);
	if (layout_len > KVX_MAX_LAYOUT)
		return err_set(-EPROTO, "KV layout fingerprint of %u bytes (at most %d)",
			       layout_len, KVX_MAX_LAYOUT);
	if (r->op == KVX_OP_RELEASE) {
		if (r->first || r->count)
			return err_set(-EPROTO, "RELEASE with blocks (first %u, count %u)",
				       r->first, r->count);
	} else if (r->count == 0 || r->count > KVX_MAX_BLOCKS) {
		return err_set(-EPROTO, "FETCH of %u blocks (1 to %u)", r->count, KVX_MAX_BLOCKS);
	} else if ((uint64_t)r->first + r->count > UINT32_MAX) {
		return err_set(-EPROTO, "FETCH of blocks past 2^32 (first %u, count %u)", r->first,
			       r->count);
	}
	*used = KVX_REQ_HEAD + (size_t)layout_len;
	if (len < *used)
		return KVX_NEED_MORE;
	if (memchr(buf + KVX_REQ_HEAD, 0, layout_len))
		return err_set(-EPROTO, "KV layout fingerprint with a NUL byte");
	memcpy(r->layout, buf + KVX_REQ_HEAD, layout_len);
	r->layout[layout_len] = '\0';
	return KVX_OK;
}

/* Each step below either needs more bytes (returns with *used set) or
 * moves pos past a field it checked. */
#define NEED(n)                          \
	do {                             \
		*used = pos + (n);       \
		if (len < *used)         \
			return KVX_NEED_MORE; \
	} while (0)

/* NEED(n), asking for least bytes (>= n) when short. */
#define NEED_AT_LEAST(n, least)                  \
	do {                                     \
		if (len < pos + (n)) {           \
			*used = pos + (least);   \
			return KVX_NEED_MORE;    \
		}                                \
	} while (0)

int kvx_reply_parse(const uint8_t *buf, size_t len, int op, struct kvx_reply *r, size_t *used)
{
	size_t pos = 0;

	memset(r, 0, sizeof(*r));
	NEED(8);
	r->status = get_le32(buf);
	r->msg_len = get_le32(buf + 4);
	if (r->status > MAX_STATUS)
		return err_set(-EPROTO, "KV transfer reply with status %u (not an errno)", r->status);
	if (r->msg_len > KVX_MAX_MSG)
		return err_set(-EPROTO, "KV transfer reply with a message of %u bytes (at most %u)",
			       r->msg_len, KVX_MAX_MSG);
	pos = 8;
	NEED(r->msg_len);
	r->msg = (const char *)buf + pos;
	pos += r->msg_len;
	if (r->status || op == KVX_OP_RELEASE) {
		*used = pos;
		return KVX_OK;
	}
	if (op == KVX_OP_FETCH_TCP) {
		NEED(8);
		r->n_bytes = get_le64(buf + pos);
		*used = pos + 8;
		return KVX_OK;
	}
	NEED(4);
	r->ucx_addr_len = get_le32(buf + pos);
	if (r->ucx_addr_len == 0 || r->ucx_addr_len > KVX_MAX_UCX_ADDR)
		return err_set(-EPROTO, "UCX worker address of %u bytes (1 to %u)",
			       r->ucx_addr_len, KVX_MAX_UCX_ADDR);
	pos += 4;
	NEED(r->ucx_addr_len);
	r->ucx_addr = buf + pos;
	pos += r->ucx_addr_len;
	NEED(4);
	r->n_seg = get_le32(buf + pos);
	if (r->n_seg > KVX_MAX_SEGS)
		return err_set(-EPROTO, "UCX reply with %u segments (at most %u)", r->n_seg,
			       KVX_MAX_SEGS);
	pos += 4;
	r->segs = buf + pos;
	/* Short of a segment, ask for it and for the least the segments after
	 * it take (21 bytes each): a reader then reads a reply of thousands
	 * of segments in a few rounds, not two per segment. */
	for (uint32_t i = 0; i < r->n_seg; i++) {
		size_t after = (size_t)(r->n_seg - i - 1) * 21;
		NEED_AT_LEAST(20, 21 + after);
		uint32_t rkey_len = get_le32(buf + pos + 16);
		if (rkey_len == 0 || rkey_len > KVX_MAX_RKEY)
			return err_set(-EPROTO, "UCX segment %u with an rkey of %u bytes (1 to %u)",
				       i, rkey_len, KVX_MAX_RKEY);
		pos += 20;
		NEED_AT_LEAST(rkey_len, rkey_len + after);
		pos += rkey_len;
	}
	*used = pos;
	return KVX_OK;
}

#undef NEED
#undef NEED_AT_LEAST

void kvx_reply_ucx_seg(const uint8_t **p, struct kvx_ucx_seg *s)
{
	const uint8_t *q = *p;
	s->addr = get_le64(q);
	s->len = get_le64(q + 8);
	s->rkey_len = get_le32(q + 16);
	s->rkey = q + 20;
	*p = q + 20 + s->rkey_len;
}

static void add_le32(struct strbuf *sb, uint32_t v)
{
	uint8_t b[4];
	put_le32(b, v);
	sb_add(sb, b, sizeof(b));
}

static void add_le64(struct strbuf *sb, uint64_t v)
{
	uint8_t b[8];
	put_le64(b, v);
	sb_add(sb, b, sizeof(b));
}

void kvx_reply_add_status(struct strbuf *sb, uint32_t status, const char *msg)
{
	size_t n = msg ? strlen(msg) : 0;
	if (n > KVX_MAX_MSG)
		n = KVX_MAX_MSG;
	add_le32(sb, status);
	add_le32(sb, (uint32_t)n);
	sb_add(sb, msg ? msg : "", n);
}

void kvx_reply_add_n_bytes(struct strbuf *sb, uint64_t n_bytes)
{
	add_le64(sb, n_bytes);
}

void kvx_reply_add_ucx_head(struct strbuf *sb, const void *addr, uint32_t addr_len,
			    uint32_t n_seg)
{
	add_le32(sb, addr_len);
	sb_add(sb, addr, addr_len);
	add_le32(sb, n_seg);
}

void kvx_reply_add_ucx_seg(struct strbuf *sb, uint64_t addr, uint64_t len, const void *rkey,
			   uint32_t rkey_len)
{
	add_le64(sb, addr);
	add_le64(sb, len);
	add_le32(sb, rkey_len);
	sb_add(sb, rkey, rkey_len);
}
