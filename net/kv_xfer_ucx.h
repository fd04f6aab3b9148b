/*
 * kv_xfer_ucx.h - the UCX side of the data plane (net/kv_xfer.h), for
 * net/kv_xfer.c: libucp.so.0 opened with dlopen() on first use, the few
 * UCP types it needs declared here (UCX 1.13's ABI), so that neither the
 * build nor the binary needs UCX.
 *
 * Threads: a lender's UCX state is set up once and then only read (its
 * own thread progresses its worker, for transports that need the target's
 * help); a borrower's UCX state is used by one fetch at a time (the
 * functions take its lock).  Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_NET_KV_XFER_UCX_H
#define DYN_NET_KV_XFER_UCX_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/uio.h>

struct strbuf;
struct kvx_reply;

/* bytes of memory UCX allocates and maps (shared memory where it can),
 * or NULL; kvx_ucx_lender_new() uses its mapping for regions inside it. */
void *kvx_ucx_pool_alloc(size_t bytes);
void kvx_ucx_pool_free(void *p);

struct kvx_ucx_lender;

/* Map the pool's regions and pack their rkeys (once). */
int kvx_ucx_lender_new(const struct iovec *regions, int n, struct kvx_ucx_lender **out);
/* Append what a FETCH_UCX reply says after its status: the worker address
 * and, per segment, address, length and the rkey of the region holding
 * it; -EFAULT for a segment outside every region. */
int kvx_ucx_lender_describe(const struct kvx_ucx_lender *u, const struct iovec *segs, int n,
			    struct strbuf *sb);
void kvx_ucx_lender_free(struct kvx_ucx_lender *u);

struct kvx_ucx_borrower;

int kvx_ucx_borrower_new(struct kvx_ucx_borrower **out);
/* Get the segments a FETCH_UCX reply describes into dst (the same bytes,
 * in order), until done, deadline (mono_ms) or *cancel. -ETIMEDOUT,
 * -ECANCELED, or -EIO and the like for UCX failures; when it returns, UCX
 * writes into dst no more. */
int kvx_ucx_get(struct kvx_ucx_borrower *b, const struct kvx_reply *r, const struct iovec *dst,
		int n_dst, uint64_t deadline_ms, atomic_int *cancel);
void kvx_ucx_borrower_free(struct kvx_ucx_borrower *b);

#endif
