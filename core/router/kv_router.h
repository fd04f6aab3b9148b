/*
 * kv_router.h - a router's view of the workers (issue 9), shared by the
 * frontend's embedded router (core/frontend/route.c) and the standalone
 * service (core/router/service.h, dyn router):
 *
 *   struct kv_router         the process's part: configuration, the KV
 *                            event subscriptions' retry timer, counters and
 *                            histograms for /metrics, the per-worker state
 *                            for debugging (JSON)
 *   struct kv_router_model   one per served model name: its prefix index
 *                            (indexer.h), its selector (selector.h) and
 *                            its workers, each with its KV event
 *                            subscription and gap detector (kv_events.h)
 *
 * Pools (docs/disaggregation.md): a model's workers are in two pools, the
 * decode pool (agg and decode workers: the ones that stream tokens) and
 * the prefill pool, each with its own selector (load, round-robin turn)
 * over the model's one prefix index, so that a prompt cached on a prefill
 * worker is found there too.  kv_router_select() chooses in the decode
 * pool; kv_router_plan() also decides whether the prompt is prefilled
 * on a prefill worker first (disagg.h) and chooses that one.
 *
 * A model's workers share one block size (from the first card): request
 * block hashes must be computed with the workers' block size to match
 * what they cache.  The owner adds a worker with its card and removes it
 * when the card leaves the store; removal purges it from the index.
 *
 * KV events (unless config.no_kv_events): for every worker whose address
 * the owner's addr callback gives, the router subscribes to
 * NS/COMP/kv_events (core/serve/kv_pub.h; NS/COMP taken from the worker's
 * generate path), asks NS/COMP/kv_dump for a full dump on connect and
 * whenever an event id gap shows, and applies events, dumps and load
 * reports to the index and the selector.  A failed subscription is
 * retried every KV_ROUTER_RETRY_MS while the worker is known.
 * With no_kv_events the index is predicted from the router's own
 * decisions instead (approximate mode: a request's blocks count as cached
 * on its worker for KV_ROUTER_APPROX_TTL_MS, refreshed when routed there
 * again).
 *
 * Decisions are logged at debug level (module "router": overlap, load
 * and cost of every candidate, the worker chosen).
 *
 * Ownership: models belong to their creator and must be freed before the
 * router; kv_router_stop() (before the rpc client is freed) cancels every
 * subscription.  Threading: everything on the event_base's thread.
 */
#ifndef DYN_ROUTER_KV_ROUTER_H
#define DYN_ROUTER_KV_ROUTER_H

#include "core/router/disagg.h"
#include "core/router/selector.h"

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct rpc_client;
struct strbuf;

#define KV_ROUTER_APPROX_TTL_MS 120000
/* With KV events: how long a routed request's blocks count as cached on
 * its worker before the worker's events confirm them (selector.h). */
#define KV_ROUTER_PREDICT_TTL_MS 5000
#define KV_ROUTER_RETRY_MS 1000

struct kv_router_config {
	enum router_mode mode;
	double overlap_weight;		/* --kv-overlap-score-weight */
	double temperature;		/* --router-temperature */
	int no_kv_events;		/* approximate mode */
	const char *metrics_prefix;	/* "dyn_frontend_router", "dyn_router" */
	struct disagg_config disagg;	/* kv_router_plan() */
};

/* The request-plane address ("HOST:PORT") at which worker can be called
 * now, or NULL (no instance record, or marked down). */
typedef const char *(*kv_router_addr_fn)(void *arg, uint64_t worker);

struct kv_router;
struct kv_router_model;

struct kv_router *kv_router_new(struct event_base *base, struct rpc_client *rpc,
				const struct kv_router_config *c, kv_router_addr_fn addr,
				void *arg);
/* Cancel every subscription and the timer (before rpc_client_free). */
void kv_router_stop(struct kv_router *r);
void kv_router_free(struct kv_router *r);
const struct kv_router_config *kv_router_config(const struct kv_router *r);

/* A model's view (block_size <= 0: 16). */
struct kv_router_model *kv_router_model_new(struct kv_router *r, const char *name,
					    int block_size);
void kv_router_model_free(struct kv_router_model *m);
const char *kv_router_model_name(const struct kv_router_model *m);
int kv_router_model_block_size(const struct kv_router_model *m);
size_t kv_router_model_workers(const struct kv_router_model *m);

/* path: the worker's generate endpoint "NS/COMP/EP"; block_size: from its
 * card (a mismatch with the model's is logged); role: ROUTE_ROLE_PREFILL
 * joins the prefill pool, the others the decode pool.  Known workers:
 * no-op. */
void kv_router_add_worker(struct kv_router_model *m, uint64_t worker, const char *path,
			  long block_size, enum route_role role);
void kv_router_remove_worker(struct kv_router_model *m, uint64_t worker);

/* The block sequence hashes of a prompt with block_size tokens per
 * block (*out: malloc'd, NULL when none); returns their count. */
size_t kv_router_block_hashes(int block_size, const int32_t *ids, size_t n, uint64_t **out);
/* The same with m's block size. */
size_t kv_router_hashes(const struct kv_router_model *m, const int32_t *ids, size_t n,
			uint64_t **out);
/*
 * Choose a worker for a request (req_id names it in the log) other than
 * exclude (0: none).  Counts the decision in the metrics.  -ENOENT with
 * a message when there is none.  out->cands: see selector.h.
 */
int kv_router_select(struct kv_router_model *m, const char *req_id, const uint64_t *hashes,
		     size_t n, uint64_t exclude, struct route_choice *out);

/* Where a request goes: its decode (or agg) worker, and whether and where
 * its prompt is prefilled first. */
struct kv_router_plan {
	struct route_choice decode;	/* as kv_router_select() */
	enum disagg_decision decision;
	uint64_t prefill;		/* DISAGG_REMOTE: the prefill worker, else 0 */
	uint32_t prefill_overlap;	/* its leading request blocks cached there */
};
/*
 * The decode worker as kv_router_select() chooses it, then the decision
 * (disagg.h) for a prompt of prompt_tokens tokens of which the decode
 * worker holds decode.overlap blocks, over the prefill workers the addr
 * callback gives an address for (not down), and for a remote prefill the
 * prefill worker (KV-aware or in turn over those, as the mode says).
 * -ENOENT as kv_router_select().
 */
int kv_router_plan(struct kv_router_model *m, const char *req_id, const uint64_t *hashes,
		   size_t n, size_t prompt_tokens, uint64_t exclude, struct kv_router_plan *out);
/* Workers of the model in the prefill pool and in the decode pool. */
size_t kv_router_model_pool(const struct kv_router_model *m, enum route_role role);
/* In-flight accounting (req: the caller's id, unique while in flight in
 * the worker's pool).  A remote prefill is dispatched to its prefill
 * worker as a request of its own (under the same id or another); it ends
 * with kv_router_finish(), or with kv_router_first_token() of its id. */
int kv_router_dispatch(struct kv_router_model *m, uint64_t req, uint64_t worker,
		       const uint64_t *hashes, size_t n, uint32_t overlap);
void kv_router_first_token(struct kv_router_model *m, uint64_t req);
void kv_router_finish(struct kv_router_model *m, uint64_t req);

/* Prometheus text: decisions, decision time, KV hit rate, events
 * applied, resyncs, and per worker its indexed blocks and requests in
 * flight (labels model, worker). */
void kv_router_metrics(const struct kv_router *r, struct strbuf *out);
/*
 * A JSON array, one object per worker of every model:
 *   {"model":M,"worker_id":"16 hex","role":"prefill"|"decode",
 *    "address":"HOST:PORT"|null,
 *    "subscribed":B,"blocks":N,"last_event_id":N,"resyncs":N,
 *    "load":{"active_blocks":N,"total_blocks":N,"waiting":N,
 *            "queued_prefill_tokens":N}|null,
 *    "inflight":N,"prefill_blocks":X,"decode_blocks":X}
 * (load: the worker's latest report; inflight: requests dispatched and
 * not finished; prefill/decode_blocks: the load the cost function uses).
 */
void kv_router_workers_json(const struct kv_router *r, struct strbuf *out);

#endif
