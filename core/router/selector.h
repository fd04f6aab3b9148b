/*
 * selector.h - picks the worker for a request (DESIGN.md section 1):
 *
 *   kv:           cost(w) = overlap_weight * prefill_blocks(w) + decode_blocks(w)
 *                   prefill_blocks(w) = request blocks - weighted overlap(w)
 *                                       + w's queued prefill blocks
 *                   weighted overlap(w) = over the request's leading blocks
 *                                       w holds in some KV tier, the weight
 *                                       of the best tier: tier_weight[]
 *                                       (indexer_find_tiered; a G4 block
 *                                       counts for every worker)
 *                   decode_blocks(w)  = blocks w holds for active requests
 *                 temperature 0: the lowest cost, ties broken at random;
 *                 T > 0: sampled with probability ~ exp(-norm_cost / T), costs
 *                 normalised to [0, 1] by (c - min) / (max - min).
 *   round-robin:  the workers in turn;   random: uniformly at random.
 *
 * Overlaps come from the prefix index (indexer.h, borrowed).  The
 * selector keeps each worker's in-flight load from its own decisions:
 * selector_dispatch() adds a request's uncached blocks to the worker's
 * prefill load, selector_first_token() moves the request to its decode
 * load (all its blocks), selector_finish() removes it.  A worker's load
 * report (kv_events.h) corrects both: the difference between reported
 * and tracked load at report time is kept as an offset until the next
 * report, so requests routed by others and drift are accounted for.
 *
 * Approximate mode (approx_ttl_ms > 0, for workers without KV events):
 * selector_dispatch() records the request's blocks in the index under the
 * chosen worker, and selector_expire() forgets each after approx_ttl_ms
 * (refreshed when routed there again).
 *
 * In-flight prediction (kv mode with KV events, predict_ttl_ms > 0): a
 * worker's KV events announce a prompt's blocks only once it has computed
 * them, so requests sharing a new prefix that arrive together would all
 * see no overlap and be spread over the workers, each computing the
 * prefix.  selector_dispatch() therefore records the request's blocks for
 * predict_ttl_ms in a private index, and overlaps are the larger of the
 * two indexes'.  (The Mooncake replay of test/bench/routing.py does not
 * move with it: its requests sharing a prefix seldom come within one
 * prefill time of each other; bursts of a new shared prompt do.)
 *
 * Not thread-safe: one thread owns a selector and its index.  The RNG is
 * seeded from config.seed (0: from the clock), so tests are reproducible.
 */
#ifndef DYN_ROUTER_SELECTOR_H
#define DYN_ROUTER_SELECTOR_H

#include "core/proto/kv_events.h"
#include "core/proto/route.h"
#include "core/router/indexer.h"

#include <stddef.h>
#include <stdint.h>

enum router_mode { ROUTER_MODE_KV, ROUTER_MODE_ROUND_ROBIN, ROUTER_MODE_RANDOM };

struct selector_config {
	enum router_mode mode;
	double overlap_weight;		/* --kv-overlap-score-weight (default 1.0) */
	double temperature;		/* --router-temperature (default 0) */
	int block_size;			/* tokens per block (queued prefill tokens) */
	int64_t approx_ttl_ms;		/* > 0: approximate mode (--no-kv-events) */
	int64_t predict_ttl_ms;		/* kv mode with events: a dispatched request's
					   blocks count as cached on its worker this
					   long, before its KV events arrive (0: off) */
	uint64_t seed;			/* 0: from the clock */
	double tier_weight[INDEXER_MEDIA + 1];	/* [1] G1 .. [4] G4 (defaults below) */
};

/*
 * What a block cached in a tier is worth against computing it (1.0): an
 * onboarded block still costs its read, and the slower the tier the less
 * it saves.  By the engine's own rule (tiers.c: G2 2 GB/s, G3 200 MB/s,
 * G4 100 MB/s), a 16-token block of Qwen3-0.6B's shape (1.8 MB in f16)
 * reads in 0.9 / 9 / 18 ms: next to the CPU backend's prefill (~0.4 s a
 * block on one core, test/bench/kv_tiers.sh) every tier is nearly free;
 * a GPU computes a block far faster, and there a G3 or G4 read can cost
 * more than the compute.  The weights sit between the
 * two, in the tiers' order, so that a G1 hit beats the same hit lower
 * down and any hit beats none: a heuristic, not a fit to one machine.
 */
#define SELECTOR_W_G1 1.0
#define SELECTOR_W_G2 0.8
#define SELECTOR_W_G3 0.5
#define SELECTOR_W_G4 0.3

void selector_config_default(struct selector_config *c);
/* "kv", "round-robin" or "random"; -EINVAL with a message otherwise. */
int router_mode_parse(const char *s, enum router_mode *out);
const char *router_mode_name(enum router_mode m);

struct selector;

/* ix may be NULL (no overlaps: round-robin / random only, or kv by load). */
struct selector *selector_new(const struct selector_config *c, struct indexer *ix);
void selector_free(struct selector *s);

void selector_add_worker(struct selector *s, uint64_t worker);
/* Forget the worker and its in-flight requests (the caller purges the
 * index). */
void selector_remove_worker(struct selector *s, uint64_t worker);
size_t selector_workers(const struct selector *s);

/* Choose a worker for a request of n blocks (their sequence hashes).
 * -ENOENT with a message when there is no worker. */
int selector_select(struct selector *s, const uint64_t *seq_hashes, size_t n,
		    struct route_choice *out);

/* In-flight accounting.  req ids are the caller's, unique while in flight.
 * dispatch: -ENOENT for an unknown worker, -EEXIST for a known req. */
int selector_dispatch(struct selector *s, uint64_t req, uint64_t worker,
		      const uint64_t *seq_hashes, size_t n, uint32_t overlap, int64_t now_ms);
void selector_first_token(struct selector *s, uint64_t req);
void selector_finish(struct selector *s, uint64_t req);
void selector_load_report(struct selector *s, uint64_t worker, const struct kv_load *l);
/* The load the cost function uses (0 on success, -ENOENT unknown). */
int selector_worker_load(const struct selector *s, uint64_t worker, double *prefill_blocks,
			 double *decode_blocks);
/* Requests dispatched to worker and not finished (0 unknown). */
size_t selector_worker_inflight(const struct selector *s, uint64_t worker);

/* Forget predicted blocks (approximate mode, in-flight prediction) whose
 * TTL ran out by now_ms.  Returns how many were forgotten. */
size_t selector_expire(struct selector *s, int64_t now_ms);

#endif
