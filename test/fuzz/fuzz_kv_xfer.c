/*
 * fuzz_kv_xfer.c - libFuzzer target for the KV data port's parsers
 * (net/kv_xfer_wire.h).  Run with `make fuzz`; seeds in
 * fuzz_kv_xfer.seed/.
 *
 * The first input byte picks the parser (0 mod 4: a request, as a lender
 * reads it; else a reply to op 1 FETCH_TCP, 2 FETCH_UCX or 3 RELEASE, as
 * a borrower reads it); the rest is the peer's bytes.  Checked for every
 * input, besides the sanitizers' memory checks:
 *  - reading the way the lender and borrower do (start with the head,
 *    then exactly the bytes the parser says it needs) reaches the same
 *    verdict as parsing the whole input at once, never asking for fewer
 *    bytes than it has;
 *  - what a parse accepts lies inside the input: a request re-encodes to
 *    exactly its bytes, a reply's message, UCX address and segments end
 *    where it says it ends, each within the limits.
 */
#include "net/kv_xfer_wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_kv_xfer: invariant broken: %s\n", what);
		abort();
	}
}

/* Parse as a reader of a stream does: grow the visible prefix to exactly
 * what the parser asks for. */
static int incremental(const uint8_t *data, size_t size, int op, size_t *used)
{
	size_t have = op ? 8 : KVX_REQ_HEAD;
	for (;;) {
		struct kvx_req q;
		struct kvx_reply r;
		size_t n = have < size ? have : size;
		int rc = op ? kvx_reply_parse(data, n, op, &r, used)
			    : kvx_req_parse(data, n, &q, used);
		if (rc != KVX_NEED_MORE)
			return rc;
		check(*used > n, "need-more asks for more than it has");
		if (n == size)
			return rc;
		have = *used;
	}
}

static void check_request(const uint8_t *data, size_t size)
{
	struct kvx_req q;
	size_t used, used2;
	int rc = kvx_req_parse(data, size, &q, &used);
	check(incremental(data, size, 0, &used2) == rc, "same verdict read in steps");
	if (rc != KVX_OK)
		return;
	check(used == used2 && used <= size, "request inside input");
	check(q.op >= KVX_OP_FETCH_TCP && q.op <= KVX_OP_RELEASE, "known op");
	check(q.op == KVX_OP_RELEASE ? !q.first && !q.count
				     : q.count >= 1 && q.count <= KVX_MAX_BLOCKS, "count limit");
	uint8_t re[KVX_REQ_MAX];
	int n = kvx_req_encode(re, &q);
	check(n == (int)used && !memcmp(re, data, used), "one encoding");
}

static void check_reply(const uint8_t *data, size_t size, int op)
{
	struct kvx_reply r;
	size_t used, used2;
	int rc = kvx_reply_parse(data, size, op, &r, &used);
	check(incremental(data, size, op, &used2) == rc, "same verdict read in steps");
	if (rc != KVX_OK)
		return;
	check(used == used2 && used <= size, "reply inside input");
	check(r.msg_len <= KVX_MAX_MSG && (const uint8_t *)r.msg + r.msg_len <= data + used,
	      "message inside reply");
	if (op != KVX_OP_FETCH_UCX || r.status)
		return;
	check(r.ucx_addr + r.ucx_addr_len <= data + used, "address inside reply");
	check(r.n_seg <= KVX_MAX_SEGS, "segment limit");
	const uint8_t *p = r.segs;
	for (uint32_t i = 0; i < r.n_seg; i++) {
		struct kvx_ucx_seg s;
		kvx_reply_ucx_seg(&p, &s);
		check(s.rkey_len >= 1 && s.rkey_len <= KVX_MAX_RKEY, "rkey limit");
		check(p <= data + used, "segment inside reply");
	}
	check(p == data + used, "segments end the reply");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int op = data[0] % 4;
	/* A copy of exactly the peer's bytes, so that ASan sees any over-read. */
	uint8_t *buf = malloc(size - 1 ? size - 1 : 1);
	memcpy(buf, data + 1, size - 1);
	if (op == 0)
		check_request(buf, size - 1);
	else
		check_reply(buf, size - 1, op);
	free(buf);
	return 0;
}
