/*
 * kv_fetch.h - a decode worker's side of disaggregated serving: the KV of
 * a prompt that a prefill worker computed is fetched over the data plane
 * (net/kv_xfer.h) straight into the blocks the engine gave the pending
 * request, and then the engine is told how much of the prompt it has
 * (engine_kv_filled): all that was fetched, or nothing (the fallback: the
 * engine prefills the prompt itself, the answer is the same).
 *
 *   kv_fetch_start(blocks, n_reused)   from the request's on_kv_blocks:
 *       blocks [n_reused, n_blocks) are fetched (the leading ones came
 *       from this worker's prefix cache), the hold is released
 *   kv_fetch_job_cancel()              the request was cancelled: the
 *       fetch stops and the engine request is cancelled once no byte can
 *       be written to its blocks any more
 *   kv_fetch_release()                 a kv_source not fetched from: its
 *       hold is released all the same
 *
 * Mock engines (no KV data): the same control path moves 0 bytes, then a
 * timer waits for the time the bytes a real model's blocks would have
 * take at bandwidth_gbps.
 *
 * Counted (kv_fetch_stats): fetches ok and failed, bytes (modelled for
 * mock engines), fetch seconds, prompts prefilled remotely and locally,
 * and the local prefills of requests that came with a kv_source by cause.
 *
 * Threading: everything on the loop thread.  Free it before the engine:
 * fetches still running are cancelled then.  Errors: 0 / -errno.
 */
#ifndef DYN_SERVE_KV_FETCH_H
#define DYN_SERVE_KV_FETCH_H

#include "core/metrics.h"
#include "core/proto/generate.h"
#include "net/kv_xfer.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct engine;
struct kv_fetch;
struct kv_fetch_job;

/* Why a request with a kv_source was prefilled here after all. */
enum kv_fallback {
	KV_FALLBACK_LAYOUT,		/* the kv_source's layout is not ours */
	KV_FALLBACK_FETCH_FAILED,	/* peer gone, hold released, broken transfer */
	KV_FALLBACK_CANCELLED,		/* the request was cancelled meanwhile */
	KV_FALLBACK_N
};
/* "layout", "fetch_failed", "cancelled" (the metric's cause label). */
extern const char *const kv_fallback_names[];

struct kv_fetch_conf {
	enum kvx_transport transport;
	const char *layout;		/* the KV layout fingerprint */
	int block_size;
	size_t block_bytes;		/* one block's bytes on the wire (0: mock) */
	size_t model_block_bytes;	/* mock: a real model's block, for the
					   modelled time and the stats */
	double bandwidth_gbps;		/* mock: GB/s */
	struct ssl_ctx_st *tls;		/* --kv-transfer-tls: kvx_borrower_new's */
};

struct kv_fetch_stats {
	uint64_t ok, failed, bytes;
	struct metrics_hist seconds;	/* fetch times (ok ones) */
	uint64_t remote, local;		/* prompts by where their KV came from */
	uint64_t fallbacks[KV_FALLBACK_N];
};

int kv_fetch_new(struct event_base *base, struct engine *e, const struct kv_fetch_conf *c,
		 struct kv_fetch **out);
/* Cancel what is running, free.  NULL is fine. */
void kv_fetch_free(struct kv_fetch *f);

/* Whether src's blocks fit this worker's KV pool (its layout and block
 * size); a warning names both layouts when not. */
int kv_fetch_fits(const struct kv_fetch *f, const struct gen_kv_source *src);
/* A prompt computed here in full; why, when it came with a kv_source
 * (else -1). */
void kv_fetch_local(struct kv_fetch *f, int fallback);

/* Fill pending request id (its first pending_tokens prompt tokens are
 * src's) with blocks [n_reused, n_blocks) of src's hold; engine_kv_filled
 * is called when done.  *slot holds the job until it ends (then NULL). */
void kv_fetch_start(struct kv_fetch *f, uint64_t id, const struct gen_kv_source *src,
		    int pending_tokens, const int32_t *blocks, int n_blocks, int n_reused,
		    struct kv_fetch_job **slot);
/* The request is cancelled, or ended: stop, then engine_cancel() it; the
 * job's slot is cleared at once. */
void kv_fetch_job_cancel(struct kv_fetch_job *j);
/* Release src's hold on its lender without fetching (a request that
 * needs none of its blocks, or is cancelled before its fetch starts), so
 * that the blocks go back to the lender now, not at its
 * --kv-hold-timeout.  kv_fetch_start() releases the hold itself. */
void kv_fetch_release(struct kv_fetch *f, const struct gen_kv_source *src);

const struct kv_fetch_stats *kv_fetch_stats(const struct kv_fetch *f);

#endif
