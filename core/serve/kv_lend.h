/*
 * kv_lend.h - a prefill worker's lent KV blocks: the blocks of prompts it
 * computed for decode workers, held under unguessable handles until a
 * decode worker releases them or the hold times out, and served on the
 * data plane (net/kv_xfer.h) as a lender.
 *
 *   kv_lend_hold(request id)   after a hold_kv request ended: its blocks
 *                              become a hold with a new random handle
 *   data-plane threads         fetch its blocks (engine_kv_segments), then
 *                              release it (engine_kv_release)
 *   a loop timer               releases holds older than hold_ms that no
 *                              fetch has touched (a fetched hold is the
 *                              lender's to release when its connection
 *                              ends, so that no block in flight is reused)
 *
 * Mock engines have no KV data: a fetch moves 0 bytes, the rest is the
 * same.  Counted (kv_lend_stats): holds, expiries, holds lent (fetched
 * and released) and fetches refused, and the bytes of the blocks fetched
 * (for mock engines, what a real model's would be).
 *
 * Threading: kv_lend_new, _hold, _stats and _free on the loop thread; the
 * hold table is shared with the data-plane threads under a mutex.  Free it
 * before the engine (engine_free): holds left are released then.
 * Errors: 0 / -errno with err_msg().
 */
#ifndef DYN_SERVE_KV_LEND_H
#define DYN_SERVE_KV_LEND_H

#include "net/kv_xfer.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct engine;
struct kv_lend;

struct kv_lend_conf {
	const char *host;		/* the data port's address */
	int port;			/* 0: any free one */
	enum kvx_transport transport;
	const char *layout;		/* the KV layout fingerprint */
	size_t block_bytes;		/* one block's bytes on the wire (0: mock) */
	size_t counted_block_bytes;	/* per block in the stats (mock: a real
					   model's) */
	long hold_ms;			/* a hold not released by then expires */
	struct ssl_ctx_st *tls;		/* --kv-transfer-tls: kvx_lender_new's */
};

struct kv_lend_stats {
	long holds;			/* held now */
	uint64_t expired;		/* released by the timeout */
	uint64_t lent;			/* holds a borrower fetched and released */
	uint64_t refused;		/* fetches refused: unknown handle, blocks
					   beyond the hold */
	uint64_t bytes;			/* of the blocks fetched from those holds */
};

int kv_lend_new(struct event_base *base, struct engine *e, const struct kv_lend_conf *c,
		struct kv_lend **out);
/* Hold the blocks of ended hold_kv request id: *handle names them, *n_tokens
 * is how many prompt tokens' K/V they hold. */
int kv_lend_hold(struct kv_lend *l, uint64_t id, uint64_t *handle, int *n_tokens);
/* {"tcp":"HOST:PORT","ucx":true|false} (kvx_lender_addr_json). */
const char *kv_lend_addr_json(const struct kv_lend *l);
void kv_lend_stats(struct kv_lend *l, struct kv_lend_stats *out);
/* Close the data port and release what is held.  NULL is fine. */
void kv_lend_free(struct kv_lend *l);

#endif
