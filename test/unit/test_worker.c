/*
 * test_worker.c - the worker component (core/serve/worker.h) on a runtime
 * with a private file store: each engine row of its handler table serves
 * generate calls over the real request plane, the instance record carries
 * the role and engine, the card the engine's limits; bad configurations
 * are refused.  References: the request/response JSON of dyn-serve(1)
 * (core/proto/generate.h), the record formats of dyn-store(5), the echo
 * engine's documented output (the prompt back), and stories260K's
 * published greedy continuation (expected_greedy_from_bos.txt).
 */
#include "check.h"
#include "core/engine/engine.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/runtime.h"
#include "core/serve/worker.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/rpc.h"
#include "store/process.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#define STORIES "../shared/models/stories260K"

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* ---- a generate call's collected output ------------------------------------ */

struct call {
	int32_t ids[512];
	int n, ended, failed;
	char finish[32];
};

static void on_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		    void *arg)
{
	struct call *c = arg;
	cJSON *j = cJSON_ParseWithLength(data, len), *t;
	(void)st;
	(void)flags;
	cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(j, "token_ids"))
		if (c->n < (int)ARRAY_SIZE(c->ids))
			c->ids[c->n++] = (int32_t)t->valuedouble;
	cJSON *f = cJSON_GetObjectItemCaseSensitive(j, "finish_reason");
	if (cJSON_IsString(f))
		snprintf(c->finish, sizeof(c->finish), "%s", f->valuestring);
	cJSON_Delete(j);
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	(void)st;
	(void)data;
	(void)len;
	(void)flags;
	((struct call *)arg)->ended = 1;
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	(void)st;
	fprintf(stderr, "generate failed: %d %s\n", code, msg);
	((struct call *)arg)->failed = 1;
}

/* Call NS/COMP/generate on the worker with body and run the loop until
 * the stream ends. */
static void generate(struct runtime *rt, struct worker *w, const char *body, struct call *c)
{
	static const struct rpc_stream_cbs cbs = { on_data, on_end, on_error };
	struct rpc_client *cli;
	struct event *t = event_new(rt->base, -1, EV_PERSIST, tick, NULL);
	struct timeval tv = { 0, 5000 };
	uint64_t end = mono_ms() + 20000;

	memset(c, 0, sizeof(*c));
	CHECK(rpc_client_new(rt->base, NULL, &cli) == 0);
	CHECK(rpc_call(cli, worker_address(w), "tns/tc/generate", body, strlen(body), 0, &cbs, c,
		       NULL) == 0);
	event_add(t, &tv);
	while (!c->ended && !c->failed && mono_ms() < end)
		event_base_loop(rt->base, EVLOOP_ONCE);
	event_free(t);
	rpc_client_free(cli);
	CHECK(c->ended && !c->failed);
}

/* ---- the store's records -------------------------------------------------- */

/* The one record under prefix, parsed. */
static cJSON *record(struct runtime *rt, const char *prefix)
{
	struct store_kv *kvs;
	size_t n;
	CHECK(store_list(rt->store, prefix, &kvs, &n, NULL) == 0);
	CHECK_MSG(n == 1, "%zu records under %s", n, prefix);
	cJSON *j = cJSON_Parse(kvs[0].value);
	store_kvs_free(kvs, n);
	CHECK(j);
	return j;
}

static const char *jstr(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsString(v) ? v->valuestring : "";
}

static long jnum(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

static void rt_open(struct runtime *rt)
{
	char dir[] = "/tmp/dyn-test-worker.XXXXXX", url[64];
	CHECK(mkdtemp(dir));
	snprintf(url, sizeof(url), "file://%s", dir);
	memset(rt, 0, sizeof(*rt));
	CHECK(runtime_init(rt, 1000) == 0);
	CHECK_MSG(store_process_open(rt, url, 10000) == 0, "%s", err_msg());
}

static const struct worker_conf base_conf = {
	.served = "tiny", .model = STORIES, .dir = STORIES, .ns = "tns", .component = "tc",
	.host = "127.0.0.1", .role = WORKER_ROLE_AGG, .port = 0, .sys_port = -1,
	.echo_delay = 0, .ctx_len = 333, .block_size = 16, .kv_blocks = 99, .max_seqs = 7,
};

/* The instance record's metadata and the card, as dyn-store(5) gives them. */
static void check_records(struct runtime *rt, struct worker *w, const char *engine,
			  long ctx_len, long block_size)
{
	char key[128];
	cJSON *inst = record(rt, "v1/instances/tns/tc/generate/");
	cJSON *meta = cJSON_GetObjectItemCaseSensitive(inst, "metadata");
	CHECK_STR(jstr(meta, "role"), "agg");
	CHECK_STR(jstr(meta, "engine"), engine);
	CHECK_STR(jstr(meta, "model"), "tiny");
	CHECK_STR(jstr(inst, "address"), worker_address(w));
	cJSON_Delete(inst);
	snprintf(key, sizeof(key), "v1/models/tiny/%016" PRIx64, worker_instance_id(w));
	cJSON *card = record(rt, key);
	CHECK_STR(jstr(card, "engine"), engine);
	CHECK_INT(jnum(card, "context_length"), ctx_len);
	CHECK_INT(jnum(card, "kv_block_size"), block_size);
	CHECK_INT(jnum(card, "max_num_seqs"), 7);
	cJSON_Delete(card);
}

TEST(echo_row_streams_the_prompt_back)
{
	struct runtime rt;
	struct worker *w = NULL;
	struct worker_conf c = base_conf;
	struct call out;

	rt_open(&rt);
	c.engine = "echo";
	c.sys_port = 0;
	CHECK_MSG(worker_start(&rt, &c, &w) == 0, "%s", err_msg());
	CHECK_STR(worker_engine_name(w), "echo");
	CHECK(worker_system_port(w) > 0);
	check_records(&rt, w, "echo", 333, 16);
	generate(&rt, w, "{\"token_ids\":[5,6,7,8],\"stop\":{\"max_tokens\":3}}", &out);
	CHECK_INT(out.n, 3);
	CHECK(out.ids[0] == 5 && out.ids[1] == 6 && out.ids[2] == 7);
	CHECK_STR(out.finish, "length");
	worker_free(w);
	runtime_free(&rt);
}

TEST(builtin_row_runs_the_model)
{
	struct runtime rt;
	struct worker *w = NULL;
	struct worker_conf c = base_conf;
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	struct engine_opts eo;
	struct tok *tok;
	struct strbuf text = STRBUF_INIT, ref = STRBUF_INIT;
	struct call out;

	rt_open(&rt);
	engine_opts_init(&eo);
	eo.threads = 1;
	eo.max_num_seqs = 7;
	c.engine = "builtin";
	c.eo = &eo;
	c.kv_events = 1;
	CHECK_MSG(model_load(STORIES, &lo, &c.m) == 0, "%s", err_msg());
	CHECK_MSG(worker_start(&rt, &c, &w) == 0, "%s", err_msg());
	CHECK_INT(worker_system_port(w), -1);
	/* the engine's limits, not the echo ones of the conf */
	check_records(&rt, w, "builtin", 512, 16);
	/* greedy from BOS: the published continuation */
	generate(&rt, w, "{\"token_ids\":[1],\"sampling\":{\"temperature\":0},"
			 "\"stop\":{\"max_tokens\":40}}", &out);
	CHECK_INT(out.n, 40);
	CHECK_STR(out.finish, "length");
	CHECK(tok_load(STORIES, &tok) == 0);
	CHECK(tok_decode(tok, out.ids, (size_t)out.n, 1, &text) == 0);
	tok_free(tok);
	CHECK(sb_read_file(&ref, STORIES "/expected_greedy_from_bos.txt", 1 << 20) == 0);
	CHECK_MSG(text.len > 40 && !strncmp(ref.buf, text.buf, text.len), "got '%s'", text.buf);
	sb_release(&text);
	sb_release(&ref);
	worker_free(w);
	runtime_free(&rt);
}

TEST(refuses_bad_configurations)
{
	struct runtime rt;
	struct worker *w = NULL;
	struct worker_conf c = base_conf;
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	struct engine_opts eo;

	rt_open(&rt);
	engine_opts_init(&eo);
	c.engine = "nope";
	CHECK_INT(worker_start(&rt, &c, &w), -EINVAL);
	CHECK(strstr(err_msg(), "nope"));
	c.engine = "builtin";	/* without a model */
	CHECK_INT(worker_start(&rt, &c, &w), -EINVAL);
	/* a model given to a refused worker is freed with it (ASan: no leak) */
	CHECK(model_load(STORIES, &lo, &c.m) == 0);
	c.role = (enum worker_role)7;
	c.eo = &eo;
	CHECK_INT(worker_start(&rt, &c, &w), -EINVAL);
	CHECK(w == NULL);
	runtime_free(&rt);
}

int main(void)
{
	return RUN_TESTS();
}
