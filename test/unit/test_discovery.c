/*
 * test_discovery.c - the discovery registry (core/discovery/registry.h)
 * against a real file:// store, with cards and instance records written
 * the way a worker writes them (core/serve/card_publish.h), and the
 * offload thread under it (core/offload.h).
 */
#include "check.h"
#include "run_loop.h"

#include "core/discovery/card_fetch.h"
#include "core/discovery/health.h"
#include "core/discovery/registry.h"
#include "core/err.h"
#include "core/offload.h"
#include "core/proto/card.h"
#include "core/serve/card_publish.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/frame.h"
#include "net/rpc.h"
#include "store/store.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURE "../shared/models/stories260K"
/* Its tokenizer.json: ids 0..511, "</s>" is id 2. */
#define FIXTURE_VOCAB 512
#define FIXTURE_EOS_ID 2

static char tmpdir[256];

static void sh(const char *fmt, const char *a, const char *b)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), fmt, a, b);
	if (system(cmd) != 0)
		CHECK_FAIL("%.400s failed", cmd);
}

/* A fresh temp dir with a store and model dirs: good (the fixture's
 * tokenizer), bad (a tokenizer.json that is not JSON). */
static void setup(char *url, size_t len)
{
	const char *root = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (tmpdir[0])
		sh("rm -rf '%s'%s", tmpdir, "");
	snprintf(tmpdir, sizeof(tmpdir), "%s/dyn-test-disc.XXXXXX", root);
	CHECK(mkdtemp(tmpdir) != NULL);
	snprintf(url, len, "file://%s/store", tmpdir);
	sh("mkdir -p '%s/good' '%s/bad'", tmpdir, tmpdir);
	char dst[512];
	snprintf(dst, sizeof(dst), "%s/good", tmpdir);
	sh("cp " FIXTURE "/config.json " FIXTURE "/tokenizer.json " FIXTURE
	   "/tokenizer_config.json '%s'%s", dst, "");
	snprintf(dst, sizeof(dst), "%s/bad", tmpdir);
	sh("cp " FIXTURE "/config.json '%s'%s", dst, "");
	sh("printf '{\"model\": [' > '%s/tokenizer.json'%s", dst, "");
}

/* The instance record of the worker holding lease at address (NULL: a
 * made-up one), with metadata meta (a JSON object). */
static void put_instance_at(struct store *s, int64_t lease, const char *address,
			    const char *meta)
{
	char key[256], val[1024], made_up[32];
	uint64_t id = (uint64_t)lease;
	if (!address) {
		snprintf(made_up, sizeof(made_up), "127.0.0.1:%d", (int)(1000 + id % 50000));
		address = made_up;
	}
	snprintf(key, sizeof(key), "v1/instances/dyn/backend/generate/%016" PRIx64, id);
	snprintf(val, sizeof(val),
		 "{\"namespace\":\"dyn\",\"component\":\"backend\",\"endpoint\":\"generate\","
		 "\"instance_id\":\"%016" PRIx64 "\",\"address\":\"%s\","
		 "\"transport\":\"tcp\",\"pid\":1,\"metadata\":%s}",
		 id, address, meta);
	CHECK_INT(store_put(s, key, val, strlen(val), lease), 0);
}

static void put_instance_meta(struct store *s, int64_t lease, const char *meta)
{
	put_instance_at(s, lease, NULL, meta);
}

/* ... with role in its metadata. */
static void put_instance(struct store *s, int64_t lease, const char *role)
{
	char meta[128];
	snprintf(meta, sizeof(meta), "{\"role\":\"%s\"}", role);
	put_instance_meta(s, lease, meta);
}

/* Register a worker of model name under a new lease: an instance record
 * with role (none when NULL) and a card with the files of dir. */
static int64_t publish(struct store *s, const char *name, const char *dir, const char *role,
		       long context)
{
	int64_t lease;
	char path[512];
	CHECK_INT(store_lease_grant(s, 60000, &lease), 0);
	if (role)
		put_instance(s, lease, role);
	snprintf(path, sizeof(path), "%s/%s", tmpdir, dir);
	struct model_card c = { .name = (char *)name, .model = path, .ns = "dyn",
				.component = "backend", .endpoint = "generate",
				.instance_id = (uint64_t)lease, .engine = "echo",
				.context_length = context, .kv_block_size = 16 };
	int rc = card_publish(s, lease, &c, path, NULL);
	for (int i = 0; i < c.nfiles; i++)
		free(c.files[i].prefix);
	CHECK_MSG(rc == 0, "card_publish: %s", err_msg());
	return lease;
}

/* What a subscriber heard. */
struct heard {
	int models_added, models_removed, workers_added, workers_removed;
	enum disc_role last_role;
	char last_model[64];
};

static void h_model_added(struct disc_model *m, void *arg)
{
	struct heard *h = arg;
	h->models_added++;
	snprintf(h->last_model, sizeof(h->last_model), "%s", disc_model_name(m));
}

static void h_model_removed(struct disc_model *m, void *arg)
{
	struct heard *h = arg;
	h->models_removed++;
	CHECK(disc_model_removed(m));
}

static void h_worker_added(struct disc_model *m, const struct disc_worker *w, void *arg)
{
	struct heard *h = arg;
	(void)m;
	h->workers_added++;
	h->last_role = w->role;
}

static void h_worker_removed(struct disc_model *m, const struct disc_worker *w, void *arg)
{
	struct heard *h = arg;
	(void)m;
	(void)w;
	h->workers_removed++;
}

static const struct disc_events heard_ev = { h_model_added, h_model_removed, h_worker_added,
					     h_worker_removed };

struct wait {
	struct discovery *d;
	const char *name;
	struct heard *h;
	int n;
};

static int model_ready(void *arg)
{
	struct wait *w = arg;
	struct disc_model *m = disc_model_get(w->d, w->name);
	disc_model_put(m);
	return m != NULL;
}

static int model_gone(void *arg)
{
	return !model_ready(arg);
}

static int workers_removed(void *arg)
{
	struct wait *w = arg;
	return w->h->workers_removed >= w->n;
}

static int workers_added(void *arg)
{
	struct wait *w = arg;
	return w->h->workers_added >= w->n;
}

static int32_t eos_id(const struct tok *t)
{
	return tok_token_to_id(t, "</s>", 4);
}

/* A registry on a fresh store, and a second handle to publish with. */
struct env {
	struct event_base *base;
	struct store *s, *pub;
	struct discovery *d;
};

static void env_open(struct env *e, const struct disc_opts *o)
{
	char url[512];
	setup(url, sizeof(url));
	e->base = event_base_new();
	CHECK_INT(store_open(url, e->base, &e->s), 0);
	CHECK_INT(store_open(url, NULL, &e->pub), 0);
	CHECK_INT(disc_new(e->base, e->s, o, &e->d), 0);
}

static void env_close(struct env *e)
{
	disc_free(e->d);
	store_close(e->pub);
	store_close(e->s);
	event_base_free(e->base);
}

TEST(models_and_workers_follow_the_store)
{
	struct heard h = { 0 };
	const struct disc_opts o = { .flags = DISC_LOAD_TOKENIZER };
	struct env e;
	env_open(&e, &o);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &h), 0);

	int64_t a = publish(e.pub, "m", "good", "agg", 4096);
	struct wait w = { e.d, "m", &h, 1 };
	CHECK(run_until(e.base, model_ready, &w, 10000));
	CHECK_INT(h.models_added, 1);
	CHECK_STR(h.last_model, "m");
	CHECK_INT(h.workers_added, 1);
	struct disc_model *m = disc_model_get(e.d, "m");
	CHECK_STR(disc_model_name(m), "m");
	CHECK_INT(disc_model_context_length(m), 4096);
	CHECK(disc_model_tok(m) != NULL);
	CHECK_INT(tok_vocab_size(disc_model_tok(m)), FIXTURE_VOCAB);
	CHECK_INT(eos_id(disc_model_tok(m)), FIXTURE_EOS_ID);
	const char *chat_error = "unset";
	CHECK(disc_model_chat(m, &chat_error) != NULL);	/* tokenizer_config.json has one */
	CHECK(chat_error == NULL);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 1);
	const struct disc_worker *wk = disc_model_worker(m, DISC_ROLE_AGG, 0);
	CHECK_INT(wk->id, (uint64_t)a);
	CHECK_STR(wk->path, "dyn/backend/generate");
	CHECK_INT(wk->card->kv_block_size, 16);
	CHECK(disc_address(e.d, (uint64_t)a) != NULL);

	/* A second worker, prefill by its instance record, with a smaller context. */
	int64_t b = publish(e.pub, "m", "good", "prefill", 2048);
	w.n = 2;
	CHECK(run_until(e.base, workers_added, &w, 10000));
	CHECK_INT(h.last_role, DISC_ROLE_PREFILL);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 1);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_PREFILL), 1);
	CHECK_INT(disc_model_worker(m, DISC_ROLE_PREFILL, 0)->id, (uint64_t)b);
	CHECK_INT(disc_model_context_length(m), 2048);
	CHECK_INT(h.models_added, 1);

	/* The first worker's lease ends: it is gone, the model stays. */
	CHECK_INT(store_lease_revoke(e.pub, a), 0);
	w.n = 1;
	CHECK(run_until(e.base, workers_removed, &w, 10000));
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 0);
	CHECK(disc_address(e.d, (uint64_t)a) == NULL);
	CHECK(model_ready(&w));
	CHECK_INT(h.models_removed, 0);

	/* The last one goes: so does the model, while our reference keeps
	 * its tokenizer usable. */
	CHECK_INT(store_lease_revoke(e.pub, b), 0);
	CHECK(run_until(e.base, model_gone, &w, 10000));
	CHECK_INT(h.workers_removed, 2);
	CHECK_INT(h.models_removed, 1);
	CHECK(disc_model_removed(m));
	CHECK_INT(eos_id(disc_model_tok(m)), FIXTURE_EOS_ID);
	disc_model_put(m);

	env_close(&e);
}

/* ---- off the loop --------------------------------------------------------- */

static int slow_fetch(struct store *s, const struct card_file *f, struct strbuf *out)
{
	usleep(500 * 1000);
	return card_fetch_file(s, f, out);
}

TEST(fetching_and_compiling_do_not_block_the_loop)
{
	const struct disc_opts o = { .flags = DISC_LOAD_TOKENIZER, .fetch = slow_fetch };
	struct env e;
	env_open(&e, &o);

	struct loop_ticks t;
	loop_ticks_start(e.base, &t);
	uint64_t start = mono_ms();
	publish(e.pub, "slow", "good", "agg", 512);
	struct wait w = { e.d, "slow", NULL, 0 };
	CHECK(run_until(e.base, model_ready, &w, 20000));
	uint64_t took = mono_ms() - start;
	loop_ticks_stop(&t);
	/* Two files at 500 ms each; a loop that waited for them would show
	 * a gap of 500 ms between ticks. */
	CHECK_MSG(took >= 1000, "ready after %" PRIu64 " ms: the slow fetch was not used", took);
	CHECK_MSG(t.max_gap < 250, "the 10 ms timer waited %" PRIu64 " ms", t.max_gap);
	CHECK_MSG(t.n >= 40, "the 10 ms timer fired %d times in %" PRIu64 " ms", t.n, took);

	/* Freed while a fetch runs: it waits for it and drops the result. */
	publish(e.pub, "slower", "good", "agg", 512);
	struct wait w2 = { e.d, "slower", NULL, 0 };
	run_until(e.base, model_ready, &w2, 300);
	CHECK(!model_ready(&w2));
	env_close(&e);
}

/* ---- broken files ---------------------------------------------------------- */

/* Send stderr to a file of tmpdir; returns what captured_stderr() needs. */
static int capture_stderr(void)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fflush(stderr);
	int saved = dup(2), fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(saved >= 0 && fd >= 0);
	dup2(fd, 2);
	close(fd);
	return saved;
}

/* Put stderr back; returns what was written to it (to free). */
static char *captured_stderr(int saved)
{
	char path[300];
	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	struct strbuf b = STRBUF_INIT;
	CHECK_INT(sb_read_file(&b, path, 1 << 20), 0);
	return sb_detach(&b, NULL);
}

TEST(a_corrupt_tokenizer_is_logged_and_leaves_the_model_unusable)
{
	struct heard h = { 0 };
	const struct disc_opts o = { .flags = DISC_LOAD_TOKENIZER };
	struct env e;
	env_open(&e, &o);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &h), 0);

	/* Jobs run in order: once "good" is ready, "broken" was tried. */
	publish(e.pub, "broken", "bad", "agg", 512);
	publish(e.pub, "good", "good", "agg", 512);
	struct wait w = { e.d, "good", &h, 0 };
	int saved = capture_stderr();
	int ready = run_until(e.base, model_ready, &w, 10000);
	char *log = captured_stderr(saved);
	CHECK(ready);
	CHECK_MSG(strstr(log, "model broken from instance") != NULL, "logged: %s", log);
	free(log);
	CHECK(disc_model_get(e.d, "broken") == NULL);
	CHECK_INT(h.models_added, 1);
	CHECK_STR(h.last_model, "good");

	/* Another worker of it with a good tokenizer: tried again, ready. */
	publish(e.pub, "broken", "good", "agg", 512);
	struct wait wb = { e.d, "broken", &h, 0 };
	CHECK(run_until(e.base, model_ready, &wb, 10000));
	struct disc_model *m = disc_model_get(e.d, "broken");
	CHECK_INT(tok_vocab_size(disc_model_tok(m)), FIXTURE_VOCAB);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 2);
	disc_model_put(m);
	CHECK_INT(h.models_added, 2);
	CHECK_INT(h.workers_added, 3);

	env_close(&e);
}

TEST(without_tokenizers_models_are_ready_at_once_and_late_subscribers_hear_them)
{
	struct heard h = { 0 }, late = { 0 };
	struct env e;
	env_open(&e, NULL);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &h), 0);
	/* A broken tokenizer does not matter here. */
	publish(e.pub, "r", "bad", "agg", 512);
	publish(e.pub, "r", "bad", "decode", 512);
	struct wait w = { e.d, "r", &h, 2 };
	CHECK(run_until(e.base, workers_added, &w, 10000));
	struct disc_model *m = disc_model_get(e.d, "r");
	CHECK(m != NULL);
	CHECK(disc_model_tok(m) == NULL);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 1);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_DECODE), 1);
	disc_model_put(m);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &late), 0);
	CHECK_INT(late.models_added, 1);
	CHECK_INT(late.workers_added, 2);
	env_close(&e);
}

TEST(an_instance_record_seen_after_the_card_moves_the_worker_to_its_role)
{
	struct heard h = { 0 };
	struct env e;
	env_open(&e, NULL);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &h), 0);
	int64_t a = publish(e.pub, "r", "good", NULL, 512);
	publish(e.pub, "r", "good", "agg", 512);
	struct wait w = { e.d, "r", &h, 2 };
	CHECK(run_until(e.base, workers_added, &w, 10000));
	struct disc_model *m = disc_model_get(e.d, "r");
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 2);	/* agg until told */
	CHECK(disc_address(e.d, (uint64_t)a) == NULL);
	put_instance(e.pub, a, "decode");
	w.n = 3;
	CHECK(run_until(e.base, workers_added, &w, 10000));
	CHECK_INT(h.workers_removed, 1);
	CHECK_INT(h.last_role, DISC_ROLE_DECODE);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 1);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_DECODE), 1);
	CHECK_INT(disc_model_worker(m, DISC_ROLE_DECODE, 0)->id, (uint64_t)a);
	CHECK(disc_address(e.d, (uint64_t)a) != NULL);
	disc_model_put(m);
	env_close(&e);
}

/* A worker of role with a KV layout in its record, as dyn serve writes
 * it (docs/disaggregation.md). */
static int64_t publish_kv(struct store *s, const char *role, const char *layout, int block_size)
{
	char meta[256];
	int64_t lease = publish(s, "r", "good", NULL, 512);
	snprintf(meta, sizeof(meta), "{\"role\":\"%s\",\"engine\":\"mock\",\"model\":\"r\","
		 "\"kv\":{\"tcp\":\"127.0.0.1:1\",\"ucx\":false,\"layout\":\"%s\","
		 "\"block_size\":%d}}", role, layout, block_size);
	put_instance_meta(s, lease, meta);
	return lease;
}

/* Model "r" has these many prefill, decode and refused workers. */
struct pools {
	struct discovery *d;
	size_t prefill, decode, refused;
};

static int pools_are(void *arg)
{
	struct pools *p = arg;
	struct disc_model *m = disc_model_get(p->d, "r");
	int ok = m && disc_model_nworkers(m, DISC_ROLE_PREFILL) == p->prefill &&
		 disc_model_nworkers(m, DISC_ROLE_DECODE) == p->decode &&
		 disc_model_kv_mismatches(m) == p->refused;
	disc_model_put(m);
	return ok;
}

TEST(kv_layouts_match_on_fingerprint_and_block_size_only)
{
	CHECK(disc_kv_layouts_match("L5-KV4x8-f32", 16, "L5-KV4x8-f32", 16));
	CHECK(!disc_kv_layouts_match("L5-KV4x8-f32", 16, "L5-KV4x8-f32", 32));
	CHECK(!disc_kv_layouts_match("L5-KV4x8-f32", 16, "L5-KV4x8-bf16", 16));
	CHECK(!disc_kv_layouts_match(NULL, 16, "L5-KV4x8-f32", 16));
	CHECK(!disc_kv_layouts_match("L5-KV4x8-f32", 16, NULL, 16));
}

/* A prefill worker whose layout is not the decode workers' is kept out of
 * the prefill pool while such a decode worker is there, and counted. */
TEST(a_prefill_worker_of_another_kv_layout_is_kept_out_of_the_pool)
{
	struct heard h = { 0 };
	struct env e;
	env_open(&e, NULL);
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &h), 0);
	int64_t dec = publish_kv(e.pub, "decode", "L5-KV4x8-f32", 16);
	int64_t same = publish_kv(e.pub, "prefill", "L5-KV4x8-f32", 16);
	int64_t other = publish_kv(e.pub, "prefill", "L5-KV4x8-f32", 32);
	struct pools p = { e.d, 1, 1, 1 };
	CHECK(run_until(e.base, pools_are, &p, 10000));
	struct disc_model *m = disc_model_get(e.d, "r");
	CHECK_INT(disc_model_worker(m, DISC_ROLE_PREFILL, 0)->id, (uint64_t)same);
	CHECK_STR(disc_model_worker(m, DISC_ROLE_PREFILL, 0)->kv_layout, "L5-KV4x8-f32");
	CHECK_INT(disc_model_worker(m, DISC_ROLE_PREFILL, 0)->kv_block_size, 16);
	/* subscribers never heard of the refused one as a prefill worker */
	int added = h.workers_added, removed = h.workers_removed;

	/* the decode worker goes: nothing to disagree with, it joins */
	CHECK_INT(store_lease_revoke(e.pub, dec), 0);
	p = (struct pools){ e.d, 2, 0, 0 };
	CHECK(run_until(e.base, pools_are, &p, 10000));
	CHECK_INT(h.workers_added, added + 1);
	CHECK_INT(h.workers_removed, removed + 1);

	/* a decode worker of block size 32 comes: the other one is refused */
	publish_kv(e.pub, "decode", "L5-KV4x8-f32", 32);
	p = (struct pools){ e.d, 1, 1, 1 };
	CHECK(run_until(e.base, pools_are, &p, 10000));
	CHECK_INT(disc_model_worker(m, DISC_ROLE_PREFILL, 0)->id, (uint64_t)other);
	disc_model_put(m);
	env_close(&e);
}

TEST(a_second_tokenizer_is_logged_and_the_first_kept)
{
	struct env e;
	const struct disc_opts o = { .flags = DISC_LOAD_TOKENIZER };
	env_open(&e, &o);
	publish(e.pub, "m", "good", "agg", 512);
	struct wait w = { e.d, "m", NULL, 0 };
	CHECK(run_until(e.base, model_ready, &w, 10000));
	struct disc_model *m = disc_model_get(e.d, "m");
	const struct tok *first = disc_model_tok(m);
	/* The same tokenizer with one more byte: another digest. */
	sh("cd '%s' && mkdir other && cp good/* other/ && echo >> other/tokenizer.json%s",
	   tmpdir, "");
	int saved = capture_stderr();
	int64_t b = publish(e.pub, "m", "other", "agg", 512);
	for (uint64_t end = mono_ms() + 10000;
	     disc_model_nworkers(m, DISC_ROLE_AGG) < 2 && mono_ms() < end;)
		run_until(e.base, model_gone, &w, 10);
	char *log = captured_stderr(saved);
	int warned = strstr(log, "with a different tokenizer; using the first one's") != NULL;
	free(log);
	CHECK(warned);
	CHECK_INT(disc_model_nworkers(m, DISC_ROLE_AGG), 2);
	CHECK_INT(disc_model_worker(m, DISC_ROLE_AGG, 1)->id, (uint64_t)b);
	CHECK(disc_model_tok(m) == first);
	disc_model_put(m);
	env_close(&e);
}

/* ---- health checks ------------------------------------------------------------ */

/* A worker's health endpoint that answers as told. */
enum fake_answer { ANSWER_OK, ANSWER_STALLED, ANSWER_DRAINING, ANSWER_NONE };
struct fake_worker {
	enum fake_answer answer;
	struct rpc_call *held;		/* ANSWER_NONE: the call kept open */
	int asked;
};

static void held_cancelled(struct rpc_call *call, enum rpc_cancel_reason why, void *arg)
{
	struct fake_worker *w = arg;
	(void)why;
	if (w->held == call)
		w->held = NULL;
	rpc_call_finish(call);
}

static void fake_health(struct rpc_call *call, const void *p, size_t len, unsigned flags,
			void *arg)
{
	struct fake_worker *w = arg;
	(void)p;
	(void)len;
	(void)flags;
	w->asked++;
	switch (w->answer) {
	case ANSWER_OK:
		rpc_call_end(call, "{\"status\":\"ok\"}", 15, 0);
		break;
	case ANSWER_STALLED:
		rpc_call_error(call, 503, FRAME_STALLED " no step for 61 s");
		break;
	case ANSWER_DRAINING:
		rpc_call_error(call, 503, FRAME_DRAINING " the worker is shutting down");
		break;
	case ANSWER_NONE:
		w->held = call;
		rpc_call_on_cancel(call, held_cancelled, w);
		break;
	}
}

struct health_wait {
	struct worker_health *h;
	uint64_t id;
	int unhealthy;
	uint64_t min_ok;
};

static int health_is(void *arg)
{
	struct health_wait *w = arg;
	uint64_t ok, failed;
	worker_health_counts(w->h, &ok, &failed);
	return worker_health_unhealthy(w->h, w->id) == w->unhealthy && ok >= w->min_ok;
}

static void count_recovery(void *arg, uint64_t id)
{
	(void)id;
	++*(int *)arg;
}

TEST(health_checks_find_workers_that_stall_or_do_not_answer)
{
	struct env e;
	struct fake_worker fw = { 0 };
	struct rpc_server *srv;
	struct rpc_client *cli;
	struct worker_health *h;
	int recovered = 0;
	uint64_t ok, failed;
	env_open(&e, NULL);
	CHECK_INT(rpc_server_new(e.base, NULL, &srv), 0);
	CHECK_INT(rpc_server_handle(srv, "dyn/backend/health", fake_health, &fw), 0);
	CHECK_INT(rpc_server_listen(srv, "127.0.0.1", 0), 0);
	CHECK_INT(rpc_client_new(e.base, NULL, &cli), 0);
	const struct worker_health_opts o = { 100, 100, count_recovery, &recovered };
	CHECK_INT(worker_health_new(e.base, cli, e.d, &o, &h), 0);

	int64_t lease;
	CHECK_INT(store_lease_grant(e.pub, 60000, &lease), 0);
	put_instance_at(e.pub, lease, rpc_server_address(srv), "{\"role\":\"agg\"}");
	char path[512];
	snprintf(path, sizeof(path), "%s/bad", tmpdir);
	struct model_card c = { .name = "h", .model = path, .ns = "dyn", .component = "backend",
				.endpoint = "generate", .instance_id = (uint64_t)lease,
				.engine = "echo", .context_length = 512, .kv_block_size = 16 };
	CHECK_INT(card_publish(e.pub, lease, &c, path, NULL), 0);
	for (int i = 0; i < c.nfiles; i++)
		free(c.files[i].prefix);
	struct health_wait w = { h, (uint64_t)lease, 0, 2 };
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "answered checks: healthy");

	/* "stalled:" is a failed check; "draining:" shows a running loop */
	fw.answer = ANSWER_STALLED;
	w.unhealthy = 1;
	w.min_ok = 0;
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "a stalled engine: unhealthy");
	CHECK_INT(worker_health_nunhealthy(h), 1);
	fw.answer = ANSWER_DRAINING;
	w.unhealthy = 0;
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "a draining worker is alive");
	CHECK_INT(recovered, 1);
	/* no answer within the timeout */
	fw.answer = ANSWER_NONE;
	w.unhealthy = 1;
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "no answer: unhealthy");
	fw.answer = ANSWER_OK;
	w.unhealthy = 0;
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "answering again: healthy");
	CHECK_INT(recovered, 2);
	/* a user's stall report holds until the next answered check */
	CHECK_INT(worker_health_stalled(h, (uint64_t)lease, "a stream made no progress"), 0);
	CHECK(worker_health_unhealthy(h, (uint64_t)lease));
	CHECK_MSG(run_until(e.base, health_is, &w, 5000), "a stall report cleared by a check");
	CHECK_INT(worker_health_stalled(h, 12345, "unknown"), -ENOENT);
	worker_health_counts(h, &ok, &failed);
	CHECK(ok >= 3 && failed >= 2);

	worker_health_stop(h);
	rpc_client_free(cli);
	env_close(&e);
	worker_health_free(h);
	rpc_server_free(srv);
}

TEST(health_checks_off_check_nothing)
{
	struct env e;
	struct worker_health *h;
	env_open(&e, NULL);
	const struct worker_health_opts o = { -1, 0, NULL, NULL };
	CHECK_INT(worker_health_new(e.base, NULL, e.d, &o, &h), 0);
	int64_t lease = publish(e.pub, "h", "bad", "agg", 512);
	struct heard hd = { 0 };
	CHECK_INT(disc_subscribe(e.d, &heard_ev, &hd), 0);
	struct wait w = { e.d, "h", &hd, 1 };
	CHECK(run_until(e.base, workers_added, &w, 10000));
	CHECK_INT(worker_health_stalled(h, (uint64_t)lease, "x"), -ENOENT);
	CHECK(!worker_health_unhealthy(h, (uint64_t)lease));
	worker_health_free(h);
	env_close(&e);
}

TEST(roles_parse_and_name)
{
	enum disc_role r;
	CHECK_INT(disc_role_parse("prefill", &r), 0);
	CHECK_INT(r, DISC_ROLE_PREFILL);
	CHECK_INT(disc_role_parse("decode", &r), 0);
	CHECK_STR(disc_role_name(r), "decode");
	CHECK_INT(disc_role_parse("agg", &r), 0);
	CHECK_INT(r, DISC_ROLE_AGG);
	CHECK_INT(disc_role_parse("both", &r), -EINVAL);
}

/* ---- the offload thread ------------------------------------------------------ */

struct ojob {
	_Atomic int started;
	int seq, ran, done;
	int ran_on_loop, done_on_loop;
	int sleep_ms;
	int *order, *norder;
};

static pthread_t loop_thread;

static void ojob_work(void *arg)
{
	struct ojob *j = arg;
	j->started = 1;
	if (j->sleep_ms)
		usleep((useconds_t)j->sleep_ms * 1000);
	j->ran++;
	j->ran_on_loop = pthread_equal(pthread_self(), loop_thread);
}

static void ojob_done(void *arg)
{
	struct ojob *j = arg;
	j->done++;
	j->done_on_loop = pthread_equal(pthread_self(), loop_thread);
	j->order[(*j->norder)++] = j->seq;
}

static int all_done(void *arg)
{
	struct ojob *j = arg;
	for (int i = 0; i < 3; i++)
		if (!j[i].done)
			return 0;
	return 1;
}

/* Three jobs submitted to a new offload on base; the first sleeps
 * first_ms, the others rest_ms. */
static struct offload *ojobs_start(struct event_base *base, struct ojob *j, int *order,
				   int *n, int first_ms, int rest_ms)
{
	struct offload *o;
	loop_thread = pthread_self();
	for (int i = 0; i < 3; i++)
		j[i] = (struct ojob){ .seq = i, .sleep_ms = i ? rest_ms : first_ms,
				      .order = order, .norder = n };
	CHECK_INT(offload_new(base, &o), 0);
	for (int i = 0; i < 3; i++)
		offload_submit(o, ojob_work, ojob_done, &j[i]);
	return o;
}

TEST(offload_runs_off_the_loop_and_hands_back_in_order)
{
	struct event_base *base = event_base_new();
	int order[3], n = 0;
	struct ojob j[3];
	struct offload *o = ojobs_start(base, j, order, &n, 50, 0);
	CHECK_INT(j[0].done, 0);	/* never from submit */
	CHECK(run_until(base, all_done, j, 5000));
	for (int i = 0; i < 3; i++) {
		CHECK_INT(j[i].ran, 1);
		CHECK_INT(j[i].done, 1);
		CHECK_INT(j[i].ran_on_loop, 0);
		CHECK_INT(j[i].done_on_loop, 1);
		CHECK_INT(order[i], i);
	}
	offload_free(o);
	event_base_free(base);
}

TEST(offload_free_hands_back_every_job_once)
{
	struct event_base *base = event_base_new();
	int order[3], n = 0;
	struct ojob j[3];
	struct offload *o = ojobs_start(base, j, order, &n, 100, 100);
	for (int ms = 0; !j[0].started && ms < 5000; ms++)
		usleep(1000);
	CHECK(j[0].started);	/* the first one is running */
	offload_free(o);
	CHECK_INT(n, 3);
	CHECK_INT(j[0].ran, 1);
	for (int i = 0; i < 3; i++) {
		CHECK_INT(j[i].done, 1);
		CHECK_INT(j[i].done_on_loop, 1);
		CHECK_INT(order[i], i);
	}
	CHECK_INT(j[2].ran, 0);	/* the thread stopped before it */
	event_base_free(base);
}

int main(void)
{
	int rc = RUN_TESTS();
	if (tmpdir[0]) {
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			rc = 1;
	}
	return rc;
}
