/*
 * fuzz_route_proto.c - libFuzzer target for the router service's request
 * decoders (core/proto/route.h): what a `dyn router` reads from any
 * client on the request plane, and what a frontend reads back.  Run with
 * `make fuzz`; seeds in fuzz_route_proto.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks:
 *  - every decoder (route request, route reply, first_token) gets the
 *    input and either fails with a message or succeeds;
 *  - a decoded route request has the counts it says, an optional request
 *    id, and re-encodes (with its block hashes) to a request that decodes
 *    to the same model, id, hashes and exclusion;
 *  - a decoded route reply names one streaming worker (its worker_id)
 *    among at most ROUTE_MAX_WORKERS, and re-encodes to a reply that
 *    decodes to the same route id, workers and overlap;
 *  - a decoded first_token re-encodes to the same route id.
 */
#include "core/err.h"
#include "core/proto/route.h"
#include "core/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_route_proto: invariant broken: %s\n", what);
		abort();
	}
}

static void route_request(const char *s, size_t n)
{
	struct route_request r, r2;
	if (route_request_decode(s, n, &r) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	check(r.model != NULL && r.request_id != NULL, "model and request id set");
	check(!r.n_hashes || r.hashes, "hashes present when counted");
	check(!r.n_tokens || r.token_ids, "token ids present when counted");
	if (r.has_hashes) {
		struct strbuf sb = STRBUF_INIT;
		route_request_encode(r.model, r.request_id, r.hashes, r.n_hashes, r.exclude,
				     r.prompt_tokens, &sb);
		check(route_request_decode(sb.buf, sb.len, &r2) == 0, "re-encoded request decodes");
		check(!strcmp(r.model, r2.model) && !strcmp(r.request_id, r2.request_id),
		      "model and request id survive");
		check(r2.n_hashes == r.n_hashes &&
		      (!r.n_hashes || !memcmp(r.hashes, r2.hashes, r.n_hashes * sizeof(uint64_t))),
		      "hashes survive");
		check(r2.exclude == r.exclude, "exclusion survives");
		check(r2.prompt_tokens == r.prompt_tokens, "prompt length survives");
		route_request_release(&r2);
		sb_release(&sb);
	}
	route_request_release(&r);
}

static void route_reply(const char *s, size_t n)
{
	struct route_reply r, r2;
	if (route_reply_decode(s, n, &r) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	check(r.n_workers >= 1 && r.n_workers <= ROUTE_MAX_WORKERS, "workers counted");
	size_t streamers = 0;
	for (size_t i = 0; i < r.n_workers; i++)
		if (r.workers[i].role != ROUTE_ROLE_PREFILL) {
			streamers++;
			check(r.workers[i].worker == r.worker, "worker_id is the streaming worker");
		}
	check(streamers == 1, "one streaming worker");
	struct route_choice d = { r.worker, r.overlap, 0, NULL, 0 };
	struct strbuf sb = STRBUF_INIT;
	route_reply_encode(r.route_id, &d, r.workers, r.n_workers, r.disagg[0] ? r.disagg : NULL,
			   r.request_blocks, &sb);
	check(route_reply_decode(sb.buf, sb.len, &r2) == 0, "re-encoded reply decodes");
	check(!strcmp(r2.disagg, r.disagg), "disagg survives");
	check(r2.route_id == r.route_id && r2.worker == r.worker && r2.overlap == r.overlap &&
	      r2.n_workers == r.n_workers, "route id, worker and overlap survive");
	for (size_t i = 0; i < r.n_workers; i++)
		check(r2.workers[i].worker == r.workers[i].worker &&
		      r2.workers[i].role == r.workers[i].role, "workers survive");
	sb_release(&sb);
}

static void first_token(const char *s, size_t n)
{
	uint64_t id, id2;
	if (route_first_token_decode(s, n, &id) < 0) {
		check(err_msg()[0] != 0, "a failed decode says why");
		return;
	}
	struct strbuf sb = STRBUF_INIT;
	route_first_token_encode(id, &sb);
	check(route_first_token_decode(sb.buf, sb.len, &id2) == 0 && id2 == id,
	      "route id survives");
	sb_release(&sb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* the decoders take JSON text that need not end in NUL: copy without */
	char *s = malloc(size ? size : 1);
	memcpy(s, data, size);
	route_request(s, size);
	route_reply(s, size);
	first_token(s, size);
	free(s);
	return 0;
}
