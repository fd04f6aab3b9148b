/*
 * kv_xfer.h - the data plane: KV blocks move from the worker that holds
 * them (a prefill worker, the "lender") to the worker that needs them (a
 * decode worker, the "borrower"), straight between the two KV pools.
 *
 * One interface, two transports (--kv-transport tcp|ucx|auto):
 *   - tcp: dyn's own framing on a TCP connection to the lender's data
 *     port (below).  The lender writes block data with writev() straight
 *     from its pool's memory (the segments its ops name: no per-block
 *     copy), several blocks per message; the borrower reads straight into
 *     its own pool's segments.  Every length is checked against what the
 *     borrower expects; every read and write has a deadline.
 *   - ucx: UCX (libucp.so.0, opened with dlopen() on first use, so that one
 *     binary runs with or without it).  The control messages still go over
 *     the TCP connection; the bytes move as UCX RMA gets: the lender maps
 *     its pool's regions once (kvx_lender_ops.regions) and sends its UCP
 *     worker address and packed rkeys in the reply, the borrower gets each
 *     segment into its own pool and then says RELEASE.  A pool that UCX
 *     allocated (kvx_pool_alloc) and maps into the borrower (same host,
 *     shared memory) is copied from directly instead: UCX 1.13 emulates
 *     gets from shared memory through the lender's worker otherwise.
 *   - auto: ucx when UCX loads here, an RDMA device is present and the
 *     lender offers it, else tcp.
 * TLS (--kv-transfer-tls): given a TLS_MUTUAL context (net/tls.h), a
 * lender accepts and a borrower connects only with TLS, both presenting
 * certificates from the cluster CA; the transport is then tcp (ucx with
 * TLS is refused: UCX moves bytes outside the TCP connection).  The
 * lender advertises "tls":true; a borrower whose TLS setting differs from
 * the lender's refuses the fetch (EPROTO) before connecting.
 *
 * Wire format on the data port (all integers little-endian):
 *   request  "DYKV" u16 version(1) u16 op u64 handle u32 first u32 count
 *            u64 block_bytes u16 layout_len, layout bytes
 *            op 1 FETCH_TCP: send blocks [first, first+count) of handle;
 *            op 2 FETCH_UCX: describe them for RMA gets; op 3 RELEASE:
 *            the borrower is done with handle (first/count 0).
 *   reply    u32 status (0 ok, else an errno), u32 msg_len, msg bytes,
 *            then for FETCH_TCP with status 0: u64 n_bytes (= count x
 *            block_bytes) and the blocks' bytes, block after block, each
 *            block as the layout orders it (kv_layout: per layer K rows then
 *            V rows); for FETCH_UCX with status 0: u32 addr_len, the UCP
 *            worker address, u32 n_seg, then per segment u64 remote address,
 *            u64 length, u32 rkey_len, rkey bytes.
 * layout is the KV layout fingerprint both sides compute (an opaque
 * string to this layer: the worker makes it); a FETCH whose fingerprint or block_bytes
 * differs from the lender's is refused (EPROTO, with both named) before a
 * byte of KV moves.  man 7 dyn-kv-transfer documents the same.
 *
 * Threads: a lender serves each connection on a thread of its own (its
 * ops are called there, concurrently); a borrower's fetch runs on a
 * thread of its own and its done callback is called on the event loop
 * given to kvx_borrower_new().  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_NET_KV_XFER_H
#define DYN_NET_KV_XFER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct event_base;
struct ssl_ctx_st;	/* OpenSSL's SSL_CTX */

enum kvx_transport { KVX_TCP, KVX_UCX, KVX_AUTO };

/* "tcp", "ucx", "auto", NULL-terminated (an OPT_ENUM option's names). */
extern const char *const kvx_transport_names[];

/* Whether UCX can be used in this process (loads it on the first call);
 * *why (may be NULL) says why not. */
int kvx_ucx_available(const char **why);
/* "ucx 1.13.1" or "ucx not found (libucp.so.0: ...)", for `dyn version`. */
const char *kvx_ucx_describe(void);

/* ---- lender (prefill worker) ------------------------------------------- */

struct kvx_lender_ops {
	/* The memory of blocks [first, first + count) of handle, as segments
	 * in wire order; returns how many (<= cap), -ENOENT for a handle not
	 * (or no longer) held, -ERANGE for blocks beyond it.  Mock engines
	 * (no data) return 0 segments and the fetch moves 0 bytes. */
	int (*segments)(void *arg, uint64_t handle, uint32_t first, uint32_t count,
			struct iovec *iov, int cap);
	/* The pool's memory regions, for UCX registration (once, at start);
	 * NULL or 0 regions: this lender offers tcp only. */
	int (*regions)(void *arg, struct iovec *regions, int cap);
	/* The borrower is done with handle (RELEASE, or its connection closed
	 * after a FETCH of it). */
	void (*release)(void *arg, uint64_t handle);
	void *arg;
};

struct kvx_lender;

/* Listen on host:port (port 0: any free one) for borrowers; transports
 * offered: tcp always, ucx too when t is KVX_UCX or KVX_AUTO and UCX loads
 * (KVX_UCX without UCX fails).  layout/block_bytes: what FETCHes must
 * match. */
/* Memory for the KV pool of a lender that lends over transport t: where
 * t is ucx, or auto choosing it, memory UCX allocates (shared memory
 * where it can), which UCX borrowers on this host copy from directly
 * rather than getting it through the lender's UCX worker (10x faster:
 * dyn-kv-transfer(7)); zeroed.  NULL for tcp or when UCX cannot: the
 * caller allocates the pool itself.  Free it with kvx_pool_free(). */
void *kvx_pool_alloc(enum kvx_transport t, size_t bytes);
void kvx_pool_free(void *p);

/* tls: NULL, or a TLS_MUTUAL context (kept, not owned) for --kv-transfer-tls. */
int kvx_lender_new(const char *host, int port, enum kvx_transport t, struct ssl_ctx_st *tls,
		   const char *layout, size_t block_bytes, const struct kvx_lender_ops *ops,
		   struct kvx_lender **out);
/* Its address for the instance record and for kv_source objects:
 * {"tcp":"HOST:PORT","ucx":true|false}, with ,"tls":true under TLS. */
const char *kvx_lender_addr_json(const struct kvx_lender *l);
int kvx_lender_port(const struct kvx_lender *l);
/* Close the port, end every connection (threads joined). */
void kvx_lender_free(struct kvx_lender *l);

/* ---- borrower (decode worker) ------------------------------------------ */

struct kvx_borrower;
struct kvx_fetch;

struct kvx_fetch_req {
	const char *tcp_addr;		/* "HOST:PORT" of the lender's data port */
	int lender_ucx;			/* the lender offers ucx */
	int lender_tls;			/* the lender speaks only TLS */
	uint64_t handle;
	uint32_t first, count;		/* blocks of the lender's hold */
	const struct iovec *dst;	/* where they go: count blocks' segments in
					   wire order (copied; the memory must stay
					   valid until done) */
	int n_dst;
	size_t block_bytes;
	const char *layout;
	int timeout_ms;			/* the whole fetch; <= 0: 10,000 */
	int release;			/* send RELEASE after (or instead, count 0);
					   without it the connection stays open for
					   the next fetch of handle (the lender
					   releases it when that closes) */
};

/* done(arg, rc, n_bytes) on the loop thread: rc 0 when every byte arrived,
 * else -errno with err_msg() set on the loop thread for that call; the
 * borrower never marks partly written blocks as good: the caller treats a
 * failed fetch's destination as garbage. */
typedef void (*kvx_done_fn)(void *arg, int rc, uint64_t n_bytes);

/* tls as kvx_lender_new's: fetches then go only to lenders with "tls". */
int kvx_borrower_new(struct event_base *base, enum kvx_transport t, struct ssl_ctx_st *tls,
		     struct kvx_borrower **out);
/* Start a fetch; *out (may be NULL) can cancel it until done is called. */
int kvx_fetch_start(struct kvx_borrower *b, const struct kvx_fetch_req *r, kvx_done_fn done,
		    void *arg, struct kvx_fetch **out);
/* done is then called with -ECANCELED (soon, from the loop), never later
 * than that; after it the destination is no longer written. */
void kvx_fetch_cancel(struct kvx_fetch *f);
/* Cancels what is left (their done calls are made), joins the threads. */
void kvx_borrower_free(struct kvx_borrower *b);

#endif
