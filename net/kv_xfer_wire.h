/*
 * kv_xfer_wire.h - the KV data port's messages (net/kv_xfer.h states the
 * format; man 7 dyn-kv-transfer is the reference): encoders and strict,
 * pure parsers, shared by the lender, the borrower, both transports and
 * the fuzzer.  Errors set err_msg() and say which field is wrong.
 */
#ifndef DYN_NET_KV_XFER_WIRE_H
#define DYN_NET_KV_XFER_WIRE_H

#include "core/strbuf.h"

#include <stddef.h>
#include <stdint.h>

#define KVX_MAGIC "DYKV"
#define KVX_VERSION 1
#define KVX_REQ_HEAD 34			/* request bytes before the layout */
#define KVX_MAX_LAYOUT 255
#define KVX_REQ_MAX (KVX_REQ_HEAD + KVX_MAX_LAYOUT)
#define KVX_MAX_BLOCKS 65536u		/* blocks in one FETCH */
#define KVX_MAX_MSG 1024u		/* an error reply's message */
#define KVX_MAX_UCX_ADDR 65536u		/* a UCP worker address */
#define KVX_MAX_RKEY 4096u		/* one packed rkey */
#define KVX_MAX_SEGS (1u << 20)		/* segments in one FETCH_UCX reply */

enum kvx_op { KVX_OP_FETCH_TCP = 1, KVX_OP_FETCH_UCX = 2, KVX_OP_RELEASE = 3 };

struct kvx_req {
	uint16_t op;
	uint64_t handle;
	uint32_t first, count;
	uint64_t block_bytes;
	char layout[KVX_MAX_LAYOUT + 1];	/* NUL-terminated */
};

/* Encode r into out; returns its length, or -EINVAL for a layout longer
 * than KVX_MAX_LAYOUT. */
int kvx_req_encode(uint8_t out[KVX_REQ_MAX], const struct kvx_req *r);

/* Results of the parsers (negative values are errors). */
#define KVX_NEED_MORE 0
#define KVX_OK 1

/* The request at the start of buf[0..len): KVX_OK with *r and *used (its
 * bytes); KVX_NEED_MORE with *used = the bytes it needs once known; or
 * -EBADMSG (magic), -EPROTONOSUPPORT (version), -EPROTO (op, a count over
 * KVX_MAX_BLOCKS, blocks past 2^32, RELEASE with blocks, a layout over
 * KVX_MAX_LAYOUT or with a NUL). */
int kvx_req_parse(const uint8_t *buf, size_t len, struct kvx_req *r, size_t *used);

/* A reply's head: for FETCH_TCP with status 0 it ends with n_bytes (the
 * block bytes follow it); for FETCH_UCX with status 0 the UCX description
 * is part of it (segments left encoded: kvx_reply_ucx_seg reads them). */
struct kvx_reply {
	uint32_t status;
	const char *msg;		/* msg_len bytes, not NUL-terminated */
	uint32_t msg_len;
	uint64_t n_bytes;		/* FETCH_TCP */
	const uint8_t *ucx_addr;	/* FETCH_UCX: worker address */
	uint32_t ucx_addr_len;
	uint32_t n_seg;
	const uint8_t *segs;		/* the first segment's record */
};

struct kvx_ucx_seg {
	uint64_t addr, len;
	const uint8_t *rkey;
	uint32_t rkey_len;
};

/* The reply head at the start of buf[0..len) to a request of op: KVX_OK
 * with *r and *used; KVX_NEED_MORE with *used = the bytes needed so far
 * known (read exactly that many more before the next call: a FETCH_TCP
 * head is never over-read into the block bytes); or -EPROTO for a field
 * past its limit (message, address, segment count, rkey length). */
int kvx_reply_parse(const uint8_t *buf, size_t len, int op, struct kvx_reply *r, size_t *used);

/* The segment at *p (a parsed reply's segs, then where the last call left
 * it); advances *p. */
void kvx_reply_ucx_seg(const uint8_t **p, struct kvx_ucx_seg *s);

/* Append a reply head: status and message; for FETCH_TCP with status 0
 * then n_bytes (kvx_reply_add_n_bytes). */
void kvx_reply_add_status(struct strbuf *sb, uint32_t status, const char *msg);
void kvx_reply_add_n_bytes(struct strbuf *sb, uint64_t n_bytes);
/* FETCH_UCX with status 0, after kvx_reply_add_status: the address, then
 * n_seg segments with kvx_reply_add_ucx_seg. */
void kvx_reply_add_ucx_head(struct strbuf *sb, const void *addr, uint32_t addr_len,
			    uint32_t n_seg);
void kvx_reply_add_ucx_seg(struct strbuf *sb, uint64_t addr, uint64_t len, const void *rkey,
			   uint32_t rkey_len);

#endif
