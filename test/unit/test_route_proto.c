/*
 * test_route_proto.c - the router service's wire protocol
 * (core/proto/route.h) against the JSON that dyn-router(1)
 * documents, and kv_router's exclude rule.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/router/kv_router.h"
#include "core/proto/route.h"
#include "core/strbuf.h"

#include <errno.h>
#include <string.h>

TEST(route_request_as_documented)
{
	const uint64_t h[2] = { 0x9f86d081884c7d65ull, 0xffffffffffffffffull };
	struct strbuf b = STRBUF_INIT;
	route_request_encode("stories260K", "cmpl-1", h, 2, 0x1a2b3c4d5e6f7081ull, 40, &b);
	CHECK_STR(b.buf, "{\"model\":\"stories260K\",\"request_id\":\"cmpl-1\","
		  "\"exclude\":\"1a2b3c4d5e6f7081\",\"prompt_tokens\":40,"
		  "\"block_hashes\":[\"9f86d081884c7d65\",\"ffffffffffffffff\"]}");
	struct route_request r;
	CHECK(route_request_decode(b.buf, b.len, &r) == 0);
	CHECK_STR(r.model, "stories260K");
	CHECK_STR(r.request_id, "cmpl-1");
	CHECK(r.has_hashes && !r.has_tokens && r.n_hashes == 2);
	CHECK(r.hashes[0] == h[0] && r.hashes[1] == h[1]);
	CHECK(r.exclude == 0x1a2b3c4d5e6f7081ull);
	CHECK(r.prompt_tokens == 40);
	route_request_release(&r);
	sb_reset(&b);
	route_request_encode("m", "", h, 0, 0, 0, &b);	/* optional members left out */
	CHECK_STR(b.buf, "{\"model\":\"m\",\"block_hashes\":[]}");
	CHECK(route_request_decode(b.buf, b.len, &r) == 0 && r.prompt_tokens == 0);
	route_request_release(&r);
	sb_release(&b);
}

TEST(route_request_with_token_ids)
{
	static const char j[] = "{\"model\":\"m\",\"token_ids\":[1,2,2147483647]}";
	struct route_request r;
	CHECK(route_request_decode(j, sizeof(j) - 1, &r) == 0);
	CHECK(r.has_tokens && !r.has_hashes && r.n_tokens == 3);
	CHECK(r.token_ids[0] == 1 && r.token_ids[2] == 2147483647);
	CHECK_STR(r.request_id, "");
	CHECK(r.exclude == 0);
	route_request_release(&r);
}

TEST(malformed_route_requests_are_errors)
{
	static const char *const bad[] = {
		"", "[]", "{\"block_hashes\":[]}", "{\"model\":\"\",\"block_hashes\":[]}",
		"{\"model\":\"m\"}", "{\"model\":\"m\",\"block_hashes\":[12]}",
		"{\"model\":\"m\",\"block_hashes\":[\"xyz\"]}",
		"{\"model\":\"m\",\"block_hashes\":[\"10000000000000000\"]}",
		"{\"model\":\"m\",\"token_ids\":[-1]}", "{\"model\":\"m\",\"token_ids\":[1.5]}",
		"{\"model\":\"m\",\"token_ids\":[2147483648]}",
		"{\"model\":\"m\",\"block_hashes\":[],\"exclude\":5}",
		"{\"model\":\"m\",\"block_hashes\":[],\"prompt_tokens\":-1}",
		"{\"model\":\"m\",\"block_hashes\":[],\"prompt_tokens\":\"9\"}",
		"{\"model\":\"m\",\"block_hashes\":{}}", "{\"model\":7,\"token_ids\":[]}",
		/* not UTF-8 (found by fuzz_route_proto) */
		"{\"model\":\"m\xff\",\"token_ids\":[]}",
		"{\"model\":\"m\",\"request_id\":\"c\xc3(\",\"token_ids\":[]}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct route_request r;
		CHECK_MSG(route_request_decode(bad[i], strlen(bad[i]), &r) == -EINVAL, "%s",
			  bad[i]);
		CHECK(r.model == NULL && r.hashes == NULL && r.token_ids == NULL);
	}
}

TEST(route_reply_and_first_token_as_documented)
{
	const struct route_candidate c[1] = { { 0x1a2b3c4d5e6f7081ull, 4, 2, 0, 2 } };
	struct route_choice d = { 0x1a2b3c4d5e6f7081ull, 4, 2, c, 1 };
	const struct route_worker w[1] = { { 0x1a2b3c4d5e6f7081ull, ROUTE_ROLE_AGG } };
	struct strbuf b = STRBUF_INIT;
	route_reply_encode(7, &d, w, 1, NULL, 6, &b);
	CHECK_STR(b.buf, "{\"route_id\":7,\"worker_id\":\"1a2b3c4d5e6f7081\",\"workers\":["
		  "{\"worker_id\":\"1a2b3c4d5e6f7081\",\"role\":\"agg\"}],\"overlap_blocks\":4,"
		  "\"request_blocks\":6,\"cost\":2,\"candidates\":[{\"worker_id\":"
		  "\"1a2b3c4d5e6f7081\",\"overlap_blocks\":4,\"prefill_blocks\":2,"
		  "\"decode_blocks\":0,\"cost\":2}]}");
	struct route_reply r;
	CHECK(route_reply_decode(b.buf, b.len, &r) == 0);
	CHECK(r.route_id == 7 && r.worker == 0x1a2b3c4d5e6f7081ull && r.overlap == 4);
	CHECK(r.request_blocks == 6 && r.cost == 2);
	CHECK(r.n_workers == 1 && r.workers[0].worker == 0x1a2b3c4d5e6f7081ull &&
	      r.workers[0].role == ROUTE_ROLE_AGG);
	CHECK(route_reply_decode("{\"route_id\":7}", 14, &r) == -EINVAL);

	uint64_t id = 0;
	sb_reset(&b);
	route_first_token_encode(12345, &b);
	CHECK_STR(b.buf, "{\"route_id\":12345}");
	CHECK(route_first_token_decode(b.buf, b.len, &id) == 0 && id == 12345);
	CHECK(route_first_token_decode("{\"route_id\":\"1\"}", 16, &id) == -EINVAL);
	sb_release(&b);
}

/* A disaggregated choice names the decode worker as worker_id and the
 * prefill worker beside it, in the order given. */
TEST(route_reply_with_a_prefill_worker_as_documented)
{
	struct route_choice d = { 0xd, 0, 3.5, NULL, 0 };
	const struct route_worker w[2] = { { 0xd, ROUTE_ROLE_DECODE },
					   { 0xa0a0a0a0a0a0a0a0ull, ROUTE_ROLE_PREFILL } };
	struct strbuf b = STRBUF_INIT;
	route_reply_encode(8, &d, w, 2, "remote", 0, &b);
	CHECK_STR(b.buf, "{\"route_id\":8,\"worker_id\":\"000000000000000d\",\"disagg\":\"remote\","
		  "\"workers\":["
		  "{\"worker_id\":\"000000000000000d\",\"role\":\"decode\"},"
		  "{\"worker_id\":\"a0a0a0a0a0a0a0a0\",\"role\":\"prefill\"}],"
		  "\"overlap_blocks\":0,\"request_blocks\":0,\"cost\":3.5,\"candidates\":[]}");
	static const char doc[] =
		"{\"route_id\":9,\"worker_id\":\"1a2b3c4d5e6f7081\",\"workers\":["
		"{\"worker_id\":\"00000000000000ff\",\"role\":\"prefill\"},"
		"{\"worker_id\":\"1a2b3c4d5e6f7081\",\"role\":\"decode\"}],"
		"\"overlap_blocks\":0,\"request_blocks\":2,\"cost\":1,\"disagg\":\"remote\"}";
	struct route_reply r;
	CHECK(route_reply_decode(doc, sizeof(doc) - 1, &r) == 0);
	CHECK_STR(r.disagg, "remote");
	CHECK(r.worker == 0x1a2b3c4d5e6f7081ull && r.n_workers == 2);
	CHECK(r.workers[0].worker == 0xff && r.workers[0].role == ROUTE_ROLE_PREFILL);
	CHECK(r.workers[1].worker == 0x1a2b3c4d5e6f7081ull &&
	      r.workers[1].role == ROUTE_ROLE_DECODE);
	CHECK(route_reply_worker_as(&r, ROUTE_ROLE_PREFILL) == 0xff);
	CHECK(route_reply_worker_as(&r, ROUTE_ROLE_DECODE) == 0x1a2b3c4d5e6f7081ull);
	CHECK(route_reply_worker_as(&r, ROUTE_ROLE_AGG) == 0);
	sb_release(&b);
}

/* A reply from a router that predates "workers": its worker_id does the
 * whole request. */
TEST(route_reply_without_workers_is_one_agg_worker)
{
	static const char old[] = "{\"route_id\":3,\"worker_id\":\"00000000000000aa\","
				  "\"overlap_blocks\":1,\"request_blocks\":2,\"cost\":0.5}";
	struct route_reply r;
	CHECK(route_reply_decode(old, sizeof(old) - 1, &r) == 0);
	CHECK(r.worker == 0xaa && r.n_workers == 1);
	CHECK(r.workers[0].worker == 0xaa && r.workers[0].role == ROUTE_ROLE_AGG);
	CHECK(route_reply_worker_as(&r, ROUTE_ROLE_PREFILL) == 0);
	CHECK_STR(r.disagg, "");
}

TEST(malformed_route_replies_are_errors)
{
#define HEAD "{\"route_id\":1,\"worker_id\":\"0a\",\"overlap_blocks\":0,\"request_blocks\":0,"
	static const char *const bad[] = {
		HEAD "\"workers\":{}}",
		HEAD "\"disagg\":1}",
		HEAD "\"disagg\":\"a reason far too long to be one of the four\"}",
		HEAD "\"workers\":[]}",	/* nobody streams */
		HEAD "\"workers\":[{\"worker_id\":\"0a\"}]}",
		HEAD "\"workers\":[{\"worker_id\":\"0a\",\"role\":\"mixed\"}]}",
		HEAD "\"workers\":[{\"worker_id\":10,\"role\":\"agg\"}]}",
		/* worker_id is not the streaming worker */
		HEAD "\"workers\":[{\"worker_id\":\"0b\",\"role\":\"agg\"}]}",
		HEAD "\"workers\":[{\"worker_id\":\"0a\",\"role\":\"prefill\"}]}",
		/* two streaming workers */
		HEAD "\"workers\":[{\"worker_id\":\"0a\",\"role\":\"decode\"},"
		"{\"worker_id\":\"0b\",\"role\":\"agg\"}]}",
		HEAD "\"workers\":[" "{\"worker_id\":\"1\",\"role\":\"prefill\"},"
		"{\"worker_id\":\"2\",\"role\":\"prefill\"},{\"worker_id\":\"3\",\"role\":\"prefill\"},"
		"{\"worker_id\":\"4\",\"role\":\"prefill\"},{\"worker_id\":\"5\",\"role\":\"prefill\"},"
		"{\"worker_id\":\"6\",\"role\":\"prefill\"},{\"worker_id\":\"7\",\"role\":\"prefill\"},"
		"{\"worker_id\":\"8\",\"role\":\"prefill\"},{\"worker_id\":\"0a\",\"role\":\"decode\"}]}",
	};
#undef HEAD
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct route_reply r;
		CHECK_MSG(route_reply_decode(bad[i], strlen(bad[i]), &r) == -EINVAL, "%s", bad[i]);
	}
}

static const char *no_addr(void *arg, uint64_t worker)
{
	(void)arg;
	(void)worker;
	return NULL;
}

/* A worker excluded (it just failed) is never chosen while another is
 * left, even when it holds the whole prefix; with no other: -ENOENT. */
TEST(kv_router_select_skips_the_excluded_worker)
{
	const struct kv_router_config c = { ROUTER_MODE_KV, 1.0, 0, 1, "t", { 512, 8192 } };
	struct kv_router *r = kv_router_new(NULL, NULL, &c, no_addr, NULL);
	struct kv_router_model *m = kv_router_model_new(r, "m", 16);
	const uint64_t h[3] = { 11, 12, 13 };
	struct route_choice d;

	kv_router_add_worker(m, 1, "dyn/backend/generate", 16, ROUTE_ROLE_AGG);
	kv_router_add_worker(m, 2, "dyn/backend/generate", 16, ROUTE_ROLE_AGG);
	CHECK(kv_router_dispatch(m, 100, 1, h, 3, 0) == 0);	/* approximate: 1 holds h */
	kv_router_finish(m, 100);
	CHECK(kv_router_select(m, "a", h, 3, 0, &d) == 0 && d.worker == 1 && d.overlap == 3);
	for (int i = 0; i < 20; i++)
		CHECK(kv_router_select(m, "b", h, 3, 1, &d) == 0 && d.worker == 2 &&
		      d.overlap == 0);
	kv_router_remove_worker(m, 2);
	CHECK(kv_router_select(m, "c", h, 3, 1, &d) == -ENOENT);
	kv_router_model_free(m);
	kv_router_free(r);
}

int main(void)
{
	return RUN_TESTS();
}
