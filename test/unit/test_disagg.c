/*
 * test_disagg.c - conditional disaggregation (core/router/disagg.h)
 * against the rules docs/disaggregation.md states, and the router's two
 * pools (kv_router_plan(), core/router/kv_router.h): who may stream, who
 * may prefill, and what a cached prefix does to the decision.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/router/disagg.h"
#include "core/router/kv_router.h"

#include <errno.h>
#include <string.h>

static const struct disagg_config defaults = { DISAGG_MAX_LOCAL_PREFILL_DEFAULT,
					       DISAGG_MAX_PREFILL_QUEUE_DEFAULT };

TEST(the_documented_defaults)
{
	CHECK_INT(DISAGG_MAX_LOCAL_PREFILL_DEFAULT, 512);
	CHECK_INT(DISAGG_MAX_PREFILL_QUEUE_DEFAULT, 8192);
}

TEST(no_prefill_worker_means_local)
{
	CHECK_INT(disagg_decide(&defaults, 100000, NULL, 0), DISAGG_LOCAL_NO_PREFILL);
	CHECK_INT(disagg_decide(&defaults, 0, NULL, 0), DISAGG_LOCAL_NO_PREFILL);
}

/* "shorter than --max-local-prefill-length": 511 of 512 stays, 512 goes. */
TEST(a_short_uncached_part_is_prefilled_locally)
{
	const int64_t q[1] = { 0 };
	CHECK_INT(disagg_decide(&defaults, 511, q, 1), DISAGG_LOCAL_SHORT);
	CHECK_INT(disagg_decide(&defaults, 0, q, 1), DISAGG_LOCAL_SHORT);
	CHECK_INT(disagg_decide(&defaults, 512, q, 1), DISAGG_REMOTE);
	const struct disagg_config always = { 0, 8192 };
	CHECK_INT(disagg_decide(&always, 0, q, 1), DISAGG_REMOTE);
}

/* "every prefill worker's queue holds more than --max-prefill-queue". */
TEST(full_prefill_queues_mean_local)
{
	const int64_t full[2] = { 9000, 8193 }, one_left[2] = { 9000, 8192 };
	const int64_t unreported[2] = { 9000, -1 };
	CHECK_INT(disagg_decide(&defaults, 4096, full, 2), DISAGG_LOCAL_QUEUE);
	CHECK_INT(disagg_decide(&defaults, 4096, one_left, 2), DISAGG_REMOTE);
	CHECK_INT(disagg_decide(&defaults, 4096, unreported, 2), DISAGG_REMOTE);
	CHECK_INT(disagg_decide(&defaults, 4096, NULL, 2), DISAGG_REMOTE);
	/* a short prompt says so before the queues do */
	CHECK_INT(disagg_decide(&defaults, 10, full, 2), DISAGG_LOCAL_SHORT);
}

TEST(decision_names_are_the_metric_labels)
{
	static const char *const names[] = { "remote", "local_short", "local_queue",
					     "local_no_prefill" };
	for (int i = 0; i < DISAGG_NDECISIONS; i++) {
		enum disagg_decision d;
		CHECK_STR(disagg_decision_name((enum disagg_decision)i), names[i]);
		CHECK(disagg_decision_parse(names[i], &d) == 0 && (int)d == i);
	}
	enum disagg_decision d;
	CHECK(disagg_decision_parse("local", &d) == -EINVAL);
	CHECK(disagg_decision_parse("", &d) == -EINVAL);
}

/* ---- the router's pools ------------------------------------------------------ */

#define DEC1 0x1d
#define DEC2 0x2d
#define PRE1 0x1f
#define PRE2 0x2f
#define BS 16

static int prefill_down;

/* Every worker has an address, but prefill workers while prefill_down. */
static const char *addr_of(void *arg, uint64_t worker)
{
	(void)arg;
	return prefill_down && (worker == PRE1 || worker == PRE2) ? NULL : "127.0.0.1:1";
}

/* A model with decode workers DEC1 (agg) and DEC2 (decode) and prefill
 * workers PRE1 and PRE2; approximate mode: a dispatched request's blocks
 * count as cached on its worker. */
static struct kv_router_model *pools(struct kv_router **r, enum router_mode mode)
{
	struct kv_router_config c = { mode, 1.0, 0, 1, "t", defaults };
	*r = kv_router_new(NULL, NULL, &c, addr_of, NULL);
	struct kv_router_model *m = kv_router_model_new(*r, "m", BS);
	kv_router_add_worker(m, DEC1, "dyn/backend/generate", BS, ROUTE_ROLE_AGG);
	kv_router_add_worker(m, PRE1, "dyn/prefill/generate", BS, ROUTE_ROLE_PREFILL);
	kv_router_add_worker(m, DEC2, "dyn/decode/generate", BS, ROUTE_ROLE_DECODE);
	kv_router_add_worker(m, PRE2, "dyn/prefill/generate", BS, ROUTE_ROLE_PREFILL);
	CHECK_INT(kv_router_model_pool(m, ROUTE_ROLE_DECODE), 2);
	CHECK_INT(kv_router_model_pool(m, ROUTE_ROLE_PREFILL), 2);
	return m;
}

/* n block hashes starting at base (one prompt per base). */
static void hashes(uint64_t *h, size_t n, uint64_t base)
{
	for (size_t i = 0; i < n; i++)
		h[i] = base * 1000 + i + 1;
}

TEST(prefill_workers_never_stream_and_decode_workers_never_prefill)
{
	struct kv_router *r;
	struct kv_router_model *m = pools(&r, ROUTER_MODE_KV);
	uint64_t h[40];
	for (uint64_t k = 0; k < 50; k++) {
		struct kv_router_plan p;
		hashes(h, 40, k);
		CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
		CHECK(p.decode.worker == DEC1 || p.decode.worker == DEC2);
		CHECK_INT(p.decision, DISAGG_REMOTE);
		CHECK(p.prefill == PRE1 || p.prefill == PRE2);
		/* a prefill worker holding the whole prompt still does not stream */
		CHECK(kv_router_dispatch(m, 1000 + k, p.prefill, h, 40, 0) == 0);
		kv_router_finish(m, 1000 + k);
	}
	kv_router_model_free(m);
	kv_router_free(r);
}

TEST(the_prefill_worker_is_chosen_by_its_cached_prefix)
{
	struct kv_router *r;
	struct kv_router_model *m = pools(&r, ROUTER_MODE_KV);
	uint64_t h[40];
	struct kv_router_plan p;
	hashes(h, 40, 7);
	CHECK(kv_router_dispatch(m, 1, PRE2, h, 30, 0) == 0);	/* PRE2 holds 30 blocks */
	kv_router_finish(m, 1);
	for (int i = 0; i < 10; i++) {
		CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
		CHECK_INT(p.decision, DISAGG_REMOTE);
		CHECK_INT(p.prefill, PRE2);
		CHECK_INT(p.prefill_overlap, 30);
		CHECK_INT(p.decode.overlap, 0);
	}
	kv_router_model_free(m);
	kv_router_free(r);
}

/* Blocks cached on the decode worker shrink the part to prefill: 40
 * blocks of 16 with 10 uncached is 160 tokens, below 512. */
TEST(a_prefix_cached_on_the_decode_worker_makes_the_prompt_short)
{
	struct kv_router *r;
	struct kv_router_model *m = pools(&r, ROUTER_MODE_KV);
	uint64_t h[40];
	struct kv_router_plan p;
	hashes(h, 40, 9);
	CHECK(kv_router_dispatch(m, 1, DEC2, h, 30, 0) == 0);
	kv_router_finish(m, 1);
	CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
	CHECK_INT(p.decode.worker, DEC2);
	CHECK_INT(p.decode.overlap, 30);
	CHECK_INT(p.decision, DISAGG_LOCAL_SHORT);
	CHECK_INT(p.prefill, 0);
	/* excluding it (it just failed): the other decode worker has nothing
	 * cached, so the prompt is long again */
	CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, DEC2, &p) == 0);
	CHECK_INT(p.decode.worker, DEC1);
	CHECK_INT(p.decision, DISAGG_REMOTE);
	kv_router_model_free(m);
	kv_router_free(r);
}

TEST(prefill_workers_without_an_address_are_not_used)
{
	struct kv_router *r;
	struct kv_router_model *m = pools(&r, ROUTER_MODE_KV);
	uint64_t h[40];
	struct kv_router_plan p;
	hashes(h, 40, 3);
	prefill_down = 1;
	CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
	CHECK_INT(p.decision, DISAGG_LOCAL_NO_PREFILL);
	CHECK_INT(p.prefill, 0);
	prefill_down = 0;
	kv_router_remove_worker(m, PRE1);
	kv_router_remove_worker(m, PRE2);
	CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
	CHECK_INT(p.decision, DISAGG_LOCAL_NO_PREFILL);
	kv_router_model_free(m);
	kv_router_free(r);
}

TEST(round_robin_takes_each_pool_in_turn)
{
	struct kv_router *r;
	struct kv_router_model *m = pools(&r, ROUTER_MODE_ROUND_ROBIN);
	uint64_t h[40];
	int dec[2] = { 0, 0 }, pre[2] = { 0, 0 };
	hashes(h, 40, 5);
	for (int i = 0; i < 10; i++) {
		struct kv_router_plan p;
		CHECK(kv_router_plan(m, "t", h, 40, 40 * BS, 0, &p) == 0);
		CHECK_INT(p.decision, DISAGG_REMOTE);
		CHECK(p.decode.worker == DEC1 || p.decode.worker == DEC2);
		CHECK(p.prefill == PRE1 || p.prefill == PRE2);
		dec[p.decode.worker == DEC2]++;
		pre[p.prefill == PRE2]++;
	}
	CHECK_INT(dec[0], 5);
	CHECK_INT(dec[1], 5);
	CHECK_INT(pre[0], 5);
	CHECK_INT(pre[1], 5);
	kv_router_model_free(m);
	kv_router_free(r);
}

int main(void)
{
	return RUN_TESTS();
}
