/*
 * worker.c - the worker component (worker.h): the engine handler table,
 * the generate endpoint and instance record, the model card, KV events,
 * the system port and graceful shutdown.
 */
#include "core/serve/worker.h"

#include "core/engine/engine.h"
#include "core/err.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/model/model.h"
#include "core/proto/card.h"
#include "core/runtime.h"
#include "core/serve/builtin.h"
#include "core/serve/card_publish.h"
#include "core/serve/echo.h"
#include "core/serve/kv_pub.h"
#include "core/strbuf.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "net/rpc.h"
#include "net/sysport.h"
#include "store/store.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "serve"

const char *const worker_role_names[] = { [WORKER_ROLE_AGG] = "agg", NULL };

struct worker {
	struct runtime *rt;
	const struct engine_handler *h;
	void *hs;			/* the handler's state */
	struct rpc_server *rpc;
	struct engine *e;		/* builtin, mock */
	struct model *m;
	struct kv_pub *kvp;		/* NULL: no KV events */
	struct endpoint_service *svc;
	struct sysport *sys;
	char *card_key;
	const char *name;
};

/* ---- engine handlers -------------------------------------------------------- */

/* What serves an engine's generate calls.  needs_engine: the worker makes a
 * struct engine for it from the model and the engine options. */
struct engine_handler {
	const char *name;
	int needs_engine;
	int (*open)(struct worker *w, const struct worker_conf *c);
	rpc_handler_fn handle;
	void (*stats)(const void *hs, struct worker_stats *out);
	void (*close)(void *hs);	/* after the rpc server and the engine are gone */
};

static int builtin_open(struct worker *w, const struct worker_conf *c)
{
	struct builtin_engine *b;
	int rc = builtin_engine_new(w->rt->base, c->m, w->e, &b);
	if (rc == 0)
		w->hs = b;
	return rc;
}

static void builtin_stats(const void *hs, struct worker_stats *out)
{
	builtin_engine_stats(hs, out);
}

static void builtin_close(void *hs)
{
	builtin_engine_free(hs);
}

static int echo_open(struct worker *w, const struct worker_conf *c)
{
	struct echo_engine *e;
	int rc = echo_engine_new(w->rt->base, c->echo_delay, &e);
	if (rc == 0)
		w->hs = e;
	return rc;
}

static void echo_stats(const void *hs, struct worker_stats *out)
{
	echo_engine_stats(hs, out);
}

static void echo_close(void *hs)
{
	echo_engine_free(hs);
}

/* mock is the builtin engine in mock mode (engine.h): the same handler. */
static const struct engine_handler handlers[] = {
	{ "builtin", 1, builtin_open, builtin_engine_handle, builtin_stats, builtin_close },
	{ "mock", 1, builtin_open, builtin_engine_handle, builtin_stats, builtin_close },
	{ "echo", 0, echo_open, echo_engine_handle, echo_stats, echo_close },
};

const char *const worker_engine_names[] = { "builtin", "mock", "echo", NULL };

static const struct engine_handler *handler_find(const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(handlers); i++)
		if (!strcmp(handlers[i].name, name))
			return &handlers[i];
	return NULL;
}

/* The engine for m, publishing its KV block events when kv_events. */
static int engine_make(struct worker *w, const struct worker_conf *c)
{
	struct engine_opts eo = *c->eo;
	int rc;

	if (c->kv_events) {
		w->kvp = kv_pub_new(w->rt->base);
		kv_pub_hooks(w->kvp, &eo.events);
		eo.on_step = kv_pub_on_engine_step;
		eo.step_arg = w->kvp;
	}
	rc = engine_new(c->m, &eo, &w->e);
	if (rc == 0)
		LOG_INFO(LOG_MOD, "%s: %s", c->served, engine_describe(w->e));
	return rc;
}

/* ---- the system port ------------------------------------------------------------ */

static int sys_health(void *arg, struct strbuf *fields)
{
	struct worker *w = arg;
	sb_adds(fields, ",\"model\":");
	sb_add_json_str(fields, w->name, strlen(w->name));
	sb_addf(fields, ",\"instance_id\":\"%016" PRIx64 "\"", endpoint_service_id(w->svc));
	return !w->rt->shutting_down;
}

/* One metric family with a single sample. */
static void metric(struct strbuf *out, const char *name, const char *type, const char *help,
		   const char *labels, double v)
{
	metrics_family(out, name, type, help);
	metrics_value(out, name, labels, v);
}

static void sys_metrics(void *arg, struct strbuf *out)
{
	struct worker *w = arg;
	struct worker_stats st;
	struct rpc_server_stats rs;
	struct strbuf l = STRBUF_INIT;

	w->h->stats(w->hs, &st);
	rpc_server_stats(w->rpc, &rs);
	metrics_label(&l, "model", w->name);
	metrics_label(&l, "engine", w->h->name);
	metric(out, "dyn_worker_requests_total", "counter", "Generate requests received.", l.buf,
	       (double)st.requests);
	metric(out, "dyn_worker_requests_finished_total", "counter",
	       "Generate requests that ran to their end.", l.buf, (double)st.finished);
	metric(out, "dyn_worker_requests_cancelled_total", "counter",
	       "Generate requests cancelled or disconnected by the client.", l.buf,
	       (double)st.cancelled);
	metric(out, "dyn_worker_requests_failed_total", "counter",
	       "Generate requests refused or failed.", l.buf, (double)st.failed);
	metric(out, "dyn_worker_active_requests", "gauge", "Generate requests in progress.", l.buf,
	       (double)st.active);
	metric(out, "dyn_worker_prompt_tokens_total", "counter", "Prompt tokens received.", l.buf,
	       (double)st.prompt_tokens);
	metric(out, "dyn_worker_generated_tokens_total", "counter", "Tokens streamed back.", l.buf,
	       (double)st.generated_tokens);
	metric(out, "dyn_worker_rpc_connections", "gauge", "Open request-plane connections.", l.buf,
	       (double)rs.connections_open);
	if (w->e) {
		struct engine_stats es;
		engine_stats(w->e, &es);
		metric(out, "dyn_worker_running_requests", "gauge",
		       "Sequences the engine is running.", l.buf, es.running);
		metric(out, "dyn_worker_waiting_requests", "gauge",
		       "Sequences waiting for the engine.", l.buf, es.waiting);
		metric(out, "dyn_worker_kv_blocks_used", "gauge",
		       "KV cache blocks held by running sequences.", l.buf, es.kv_blocks_used);
		metric(out, "dyn_worker_kv_blocks_cached", "gauge",
		       "Free KV cache blocks kept for prefix reuse.", l.buf, es.kv_blocks_cached);
		metric(out, "dyn_worker_kv_blocks_capacity", "gauge", "KV cache blocks in the pool.",
		       l.buf, es.kv_blocks_total);
		metric(out, "dyn_worker_prefix_cache_hit_tokens_total", "counter",
		       "Prompt tokens served from the prefix cache.", l.buf,
		       (double)es.cache_hit_tokens);
		metric(out, "dyn_worker_preemptions_total", "counter",
		       "Sequences preempted for lack of KV blocks.", l.buf, (double)es.preemptions);
		metric(out, "dyn_worker_queued_prefill_tokens", "gauge",
		       "Prompt tokens waiting to be computed (queued and partly prefilled requests).",
		       l.buf, (double)es.queued_prefill_tokens);
		metric(out, "dyn_worker_engine_steps_total", "counter", "Engine steps run.", l.buf,
		       (double)es.steps);
	}
	sb_release(&l);
}

/* ---- start and stop ----------------------------------------------------------- */

static void worker_stop(void *arg)
{
	struct worker *w = arg;
	kv_pub_stop(w->kvp);
	if (w->card_key && w->rt->store) {
		if (store_delete(w->rt->store, w->card_key) < 0)
			LOG_WARN(LOG_MOD, "removing model card: %s", err_msg());
	}
}

/* Free a worker that failed to start, keeping the error that stopped it
 * (the cleanup's own store errors would replace it). */
static int start_failed(struct worker *w, int rc)
{
	char msg[512];
	snprintf(msg, sizeof(msg), "%s", err_msg());
	worker_free(w);
	return err_set(rc, "%s", msg);
}

/* The instance record's metadata: what routers group workers by. */
static void instance_meta(const struct worker *w, const struct worker_conf *c,
			  struct strbuf *out)
{
	sb_addf(out, "{\"role\":\"%s\",\"engine\":\"%s\",\"model\":",
		worker_role_names[c->role], w->h->name);
	sb_add_json_str(out, c->served, strlen(c->served));
	sb_addch(out, '}');
}

static int publish_card(struct worker *w, const struct worker_conf *c)
{
	struct model_card card = {
		.name = (char *)c->served, .model = (char *)c->model, .ns = (char *)c->ns,
		.component = (char *)c->component, .endpoint = "generate",
		.instance_id = endpoint_service_id(w->svc), .engine = (char *)w->h->name,
		.context_length = c->ctx_len, .kv_block_size = c->block_size,
		.kv_capacity_blocks = c->kv_blocks, .max_num_seqs = c->max_seqs,
	};
	int rc;

	if (w->e) {	/* the engine's real limits */
		struct engine_stats es;
		engine_stats(w->e, &es);
		card.context_length = engine_max_model_len(w->e);
		card.kv_block_size = es.block_size;
		card.kv_capacity_blocks = es.kv_blocks_total;
	}
	rc = card_publish(w->rt->store, w->rt->lease, &card, c->dir, &w->card_key);
	for (int i = 0; i < CARD_MAX_FILES; i++)
		free(card.files[i].prefix);
	return rc;
}

int worker_start(struct runtime *rt, const struct worker_conf *c, struct worker **out)
{
	struct worker *w = xcalloc(1, sizeof(*w));
	struct runtime_hooks hooks;
	struct strbuf meta = STRBUF_INIT;
	int rc;

	w->rt = rt;
	w->name = c->served;
	w->m = c->m;
	w->h = handler_find(c->engine);
	if (!w->h)
		return start_failed(w, err_set(-EINVAL, "unknown engine '%s'", c->engine));
	if ((unsigned)c->role >= ARRAY_SIZE(worker_role_names) - 1)
		return start_failed(w, err_set(-EINVAL, "unknown worker role %d", (int)c->role));
	if (w->h->needs_engine && (!c->m || !c->eo))
		return start_failed(w, err_set(-EINVAL, "engine %s needs a model", c->engine));
	if ((w->h->needs_engine && (rc = engine_make(w, c)) < 0) || (rc = w->h->open(w, c)) < 0)
		return start_failed(w, rc);
	rpc_server_new(rt->base, NULL, &w->rpc);
	instance_meta(w, c, &meta);
	rc = rpc_server_listen(w->rpc, c->host, c->port);
	if (rc == 0)
		rc = endpoint_serve(rt, w->rpc, c->ns, c->component, "generate", w->h->handle,
				    w->hs, meta.buf, &w->svc);
	if (rc == 0 && w->kvp)
		rc = kv_pub_serve(w->kvp, w->rpc, c->ns, c->component, w->e);
	sb_release(&meta);
	if (rc == 0)
		rc = publish_card(w, c);
	if (rc == 0 && c->sys_port >= 0) {
		struct sysport_role role = { sys_health, sys_metrics, NULL, w };
		rc = sysport_new(rt->base, &role, c->host, c->sys_port, &w->sys);
	}
	if (rc < 0)
		return start_failed(w, rc);
	hooks = (struct runtime_hooks){ .stop_accepting = worker_stop, .arg = w };
	runtime_add_hooks(rt, &hooks);
	rpc_server_hooks(w->rpc, &hooks);
	runtime_add_hooks(rt, &hooks);
	*out = w;
	return 0;
}

uint64_t worker_instance_id(const struct worker *w)
{
	return endpoint_service_id(w->svc);
}

const char *worker_address(const struct worker *w)
{
	return rpc_server_address(w->rpc);
}

int worker_system_port(const struct worker *w)
{
	return w->sys ? sysport_port(w->sys) : -1;
}

const char *worker_engine_name(const struct worker *w)
{
	return w->h->name;
}

const char *worker_engine_describe(const struct worker *w)
{
	return w->e ? engine_describe(w->e) : w->h->name;
}

void worker_free(struct worker *w)
{
	if (!w)
		return;
	sysport_free(w->sys);
	rpc_server_free(w->rpc);	/* cancels live calls (and their engine requests) */
	kv_pub_detach_engine(w->kvp);
	engine_free(w->e);		/* aborts the rest; final outputs are queued */
	kv_pub_free(w->kvp);		/* after the engine: its hooks may still run */
	if (w->hs)
		w->h->close(w->hs);
	endpoint_service_free(w->svc);
	model_free(w->m);
	free(w->card_key);
	free(w);
}
