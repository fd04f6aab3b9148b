/*
 * route.h - the request-plane protocol of the standalone router
 * (dyn router, core/router/service.h) and its clients (the frontend).
 * Payloads are JSON; worker ids and block hashes are 16-digit hex strings
 * (as in instance records and dyn tokenize --block-hashes).  Endpoints,
 * served under NS/router/ (ROUTER_COMPONENT) by one process:
 *
 *   route        {"model":M,"request_id":S,"block_hashes":["hex",..]
 *                 | "token_ids":[N,..],"exclude":"hex","prompt_tokens":N}
 *                request_id (for logs), exclude (a worker not to
 *                choose, e.g. one that just failed) and prompt_tokens
 *                (the prompt's length, for conditional disaggregation;
 *                absent: the token_ids' count, or block_hashes' count
 *                times the block size) are optional; with
 *                token_ids the router hashes them with the model's block
 *                size.  The router chooses a worker, counts the request
 *                as in flight there, and answers one DATA frame
 *                  {"route_id":N,"worker_id":"hex",
 *                   "workers":[{"worker_id":"hex","role":R},..],
 *                   "disagg":D,
 *                   "overlap_blocks":N,"request_blocks":N,"cost":X,
 *                   "candidates":[
 *                     {"worker_id":"hex","overlap_blocks":N,
 *                      "prefill_blocks":X,"decode_blocks":X,"cost":X},..]}
 *                "disagg" (optional) says why the prompt is prefilled
 *                where it is: "remote" (a prefill worker is named),
 *                "local_short", "local_queue" or "local_no_prefill"
 *                (docs/disaggregation.md).
 *                "workers" names every worker the request goes through,
 *                each with its role R: "agg" (the whole request), or
 *                "decode" with (optionally) "prefill" (disaggregated: the
 *                prompt is processed on the prefill worker first).  Exactly
 *                one is "agg" or "decode", and "worker_id" repeats it (the
 *                member clients before "workers" read); a reply without
 *                "workers" means [{"worker_id":worker_id,"role":"agg"}].
 *                The router then keeps the call open while the request runs: the
 *                client cancelling it (or its connection closing) means
 *                the request finished.  ERROR 400 (bad request), 404
 *                (unknown model) or 503 (no worker) instead when no
 *                choice is made.
 *   first_token  {"route_id":N} -> END {}: the request produced its first
 *                token (its blocks move from prefill to decode load).
 *   dump         {} -> END: the router's view, see
 *                router_service_state_json().
 *
 * Pure functions (no I/O, no global state).  Decoders return -EINVAL
 * with err_msg() on malformed input.
 */
#ifndef DYN_PROTO_ROUTE_H
#define DYN_PROTO_ROUTE_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define ROUTER_COMPONENT "router"
#define ROUTER_EP_ROUTE "route"
#define ROUTER_EP_FIRST_TOKEN "first_token"
#define ROUTER_EP_DUMP "dump"

struct route_request {
	char *model, *request_id;	/* request_id: "" when not given */
	uint64_t *hashes;		/* block_hashes */
	size_t n_hashes;
	int32_t *token_ids;		/* token_ids */
	size_t n_tokens;
	int has_hashes, has_tokens;
	uint64_t exclude;		/* 0: none */
	size_t prompt_tokens;		/* 0: not given */
};

/* prompt_tokens 0: not sent. */
void route_request_encode(const char *model, const char *request_id, const uint64_t *hashes,
			  size_t n, uint64_t exclude, size_t prompt_tokens, struct strbuf *out);
int route_request_decode(const char *json, size_t len, struct route_request *out);
void route_request_release(struct route_request *r);

/* One worker the router weighed (a reply's "candidates"). */
struct route_candidate {
	uint64_t worker;
	uint32_t overlap;		/* leading request blocks cached there */
	double prefill_blocks, decode_blocks, cost;
};

/* A choice: the worker chosen and every worker weighed (kv mode; the
 * chosen one only otherwise).  cands are the chooser's. */
struct route_choice {
	uint64_t worker;
	uint32_t overlap;
	double cost;
	const struct route_candidate *cands;
	size_t n_cands;
};

/* What a worker named in a reply does for the request ("role": "agg",
 * "prefill", "decode"). */
enum route_role { ROUTE_ROLE_AGG, ROUTE_ROLE_PREFILL, ROUTE_ROLE_DECODE };
#define ROUTE_MAX_WORKERS 8		/* a reply naming more is malformed */

struct route_worker {
	uint64_t worker;
	enum route_role role;
};

/* A decoded reply: worker is the one that streams the tokens (the "agg" or
 * "decode" entry of workers, equal to "worker_id"). */
struct route_reply {
	uint64_t route_id, worker;
	uint32_t overlap;
	size_t request_blocks;
	double cost;
	struct route_worker workers[ROUTE_MAX_WORKERS];
	size_t n_workers;
	char disagg[24];		/* "disagg": "" when absent */
};

/* The first worker the reply names with role (0: none). */
uint64_t route_reply_worker_as(const struct route_reply *r, enum route_role role);

/* workers[0..n_workers) must hold exactly one "agg" or "decode" entry: it
 * is also written as "worker_id" (d->worker is not); disagg NULL: no
 * "disagg" member. */
void route_reply_encode(uint64_t route_id, const struct route_choice *d,
			const struct route_worker *workers, size_t n_workers,
			const char *disagg, size_t request_blocks, struct strbuf *out);
int route_reply_decode(const char *json, size_t len, struct route_reply *out);

void route_first_token_encode(uint64_t route_id, struct strbuf *out);
int route_first_token_decode(const char *json, size_t len, uint64_t *route_id);

#endif
