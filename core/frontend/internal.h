/*
 * internal.h - what the frontend's files share (not a public API).
 *
 *   models.c    the frontend's use of the discovery registry: its models,
 *               worker selection (round-robin / random, down marks)
 *   request.c   OpenAI request bodies -> struct fe_params (validation)
 *   handler.c   HTTP routing; one generation request's life: prompts,
 *               worker calls, streaming, following call_sm.h
 *   call_sm.c   a choice's state machine (route -> remote step ->
 *               stream), its migrations and output token ids (call_sm.h)
 *   embeddings.c  /v1/embeddings: inputs, the worker's embed call, the answer
 *   oai.c       OpenAI's response shapes (oai.h)
 *   apis.c      the Responses (responses.c) and Messages (messages.c)
 *               APIs as chat completions (apis.h)
 *   logprobs.c  logprob entries lined up with the text (logprobs.h)
 *   metrics.c   per-model counters and histograms, /metrics text
 *   openapi.c   the /openapi.json document
 *   route.c     the embedded KV router and the shared router service
 */
#ifndef DYN_FRONTEND_INTERNAL_H
#define DYN_FRONTEND_INTERNAL_H

#include "core/discovery/health.h"
#include "core/discovery/registry.h"
#include "core/frontend/frontend.h"
#include "core/metrics.h"
#include "core/router/kv_router.h"	/* and its disagg.h */
#include "core/proto/card.h"
#include "core/proto/generate.h"
#include "core/strbuf.h"

#include <stdint.h>

struct http_server;
struct http_req;
struct rpc_client;
struct rpc_stream;
struct discovery;
struct disc_model;
struct endpoint_watch;
struct event;
struct tok;
struct tmpl_chat;

#define FE_MAX_STOPS 16
#define FE_MAX_CONSTRAINTS 8
#define FE_MAX_N 16			/* 'n': samples per prompt */

/* Why a remote prefill failed (the decode worker then prefills). */
enum fe_prefill_cause { FE_PREFILL_ERROR, FE_PREFILL_TIMEOUT, FE_PREFILL_NO_KV_SOURCE };
#define FE_PREFILL_NCAUSES 3
extern const char *const fe_prefill_causes[FE_PREFILL_NCAUSES];	/* their metric labels */
#define FE_MAX_PROMPTS 256

/* Why a worker's stream broke when it was migrated (call_sm.h): the call
 * could not connect, the connection was lost, the worker is draining
 * ("draining:" / "migrate:" 503s, net/frame.h), or another 503. */
enum fe_mig_cause { FE_MIG_CONNECT, FE_MIG_DISCONNECT, FE_MIG_DRAINING, FE_MIG_UNAVAILABLE,
		    FE_MIG_STALLED };
#define FE_MIG_NCAUSES 5
extern const char *const fe_mig_causes[FE_MIG_NCAUSES];	/* their metric labels */
/* Why a broken stream was not migrated: its migrations were used up (or
 * --migration-limit 0), or no other worker was left. */
enum fe_mig_failure { FE_MIG_FAIL_LIMIT, FE_MIG_FAIL_NO_WORKER };
#define FE_MIG_NFAILURES 2
extern const char *const fe_mig_failures[FE_MIG_NFAILURES];

/* One prompt of a completions batch ('prompt' as a list). */
struct fe_prompt {
	char *text;
	int32_t *ids;
	size_t n_ids;
	int is_ids;
};

/* Counters of one served model name (kept for the process's life). */
struct fe_stats {
	char *model;
	long inflight;
	uint64_t input_tokens, output_tokens;
	struct metrics_hist ttft, itl, duration;
	struct fe_status_count {
		char endpoint[24];
		int status;
		uint64_t n;
	} *counts;
	size_t ncounts;
	struct fe_stats *next;
};

/* The frontend's view of a model of the discovery registry
 * (core/discovery/registry.h): what requests read, borrowed from the
 * registry's model, which is referenced while this lives. */
struct fe_model {
	struct disc_model *d;
	const char *name;
	int refs;			/* f->models (while listed) + requests */
	struct tok *tok;
	/* The model's chat template; NULL when it has none (chat requests
	 * are then refused with 400, as vLLM does) or when it does not
	 * compile: chat_error then holds the compile error (500). */
	const struct tmpl_chat *chat;
	const char *chat_error;
	long context_length;		/* refreshed as workers come */
	long embedding_dim;		/* > 0: an embedding model (card.h) */
	int embedding_truncatable;
	long created;
	size_t rr, rr_prefill;		/* round-robin turns of the pools */
	int block_size;			/* tokens per KV block, from the first card */
	struct kv_router_model *kv;	/* --router-mode kv (route.c): NULL otherwise */
	int tool, rsn;			/* its output's parsers (enum parse_tool, parse_reasoning) */
	struct fe_model *next;
};

/* A worker marked down after a failed call. */
struct fe_down {
	uint64_t id;
	uint64_t until_ms;
};

struct frontend {
	struct event_base *base;
	struct store *store;
	struct frontend_opts o;
	char *api_key;
	struct http_server *http;
	struct rpc_client *rpc;
	struct discovery *disc;
	struct fe_model *models;	/* the ready models of disc */
	struct fe_down *downs;
	size_t ndowns;
	struct fe_stats *stats;
	uint64_t req_seq;
	uint64_t id_prefix;		/* random per process: ids unique across replicas */
	/* route.c */
	struct kv_router *kr;		/* --router-mode kv: NULL otherwise */
	uint64_t route_seq;
	struct endpoint_watch *svc_watch;	/* NS/router/route instances */
	uint64_t svc_id;		/* the one announced in the log (0: none) */
	uint64_t svc_down_until_ms;	/* after a failed call */
	uint64_t svc_calls, svc_fallbacks;
	/* disaggregation: the options, decisions made, remote prefills
	 * that failed */
	struct disagg_config disagg_cfg;
	uint64_t disagg[DISAGG_NDECISIONS];
	uint64_t prefill_failures[FE_PREFILL_NCAUSES];
	/* migration: streams sent on to another worker, and those that
	 * could not be */
	uint64_t migrations[FE_MIG_NCAUSES];
	uint64_t migration_failures[FE_MIG_NFAILURES];
	long inflight;
	int stopping;
	struct worker_health *health;	/* unhealthy workers are not routed to */
};

/* models.c */
int fe_models_start(struct frontend *f);
void fe_models_stop(struct frontend *f);
struct fe_model *fe_model_get(struct frontend *f, const char *name);	/* +1 ref */
void fe_model_put(struct frontend *f, struct fe_model *m);
/* A model's workers are in two pools: the decode pool (its agg and
 * decode workers: those that stream tokens) and the prefill pool (the
 * prefill workers the registry did not refuse for their KV layout). */
enum fe_pool { FE_POOL_DECODE, FE_POOL_PREFILL };
/* Pick a worker of pool for m in turn (or at random), skipping exclude
 * (0 = none) and, while others are left, workers marked down; NULL when
 * none.  *id receives the instance id. */
const char *fe_model_pick(struct frontend *f, struct fe_model *m, enum fe_pool pool,
			  uint64_t exclude, uint64_t *id, const char **path);
/* The tool-call and reasoning formats (enum parse_tool, parse_reasoning)
 * a chat template writes, from its renderings of probe conversations
 * (core/parse/parse.h parse_tool_detect): what "auto" picks. */
void fe_detect_parsers(const struct tmpl_chat *chat, int *tool, int *rsn);
/* Is worker id of pool usable now (instance known, not marked down)? */
int fe_model_usable(struct frontend *f, const struct fe_model *m, enum fe_pool pool,
		    uint64_t id, const char **addr, const char **path);
void fe_instance_mark_down(struct frontend *f, uint64_t id);
void fe_instance_clear_down(struct frontend *f, uint64_t id);
/* Workers of m of a role with an instance record (routable). */
size_t fe_model_routable(struct frontend *f, const struct fe_model *m, enum disc_role role);
/* Workers of the pool, and those usable now. */
size_t fe_model_nworkers(const struct fe_model *m, enum fe_pool pool);
size_t fe_model_nusable(struct frontend *f, const struct fe_model *m, enum fe_pool pool);

/* The address of instance id when usable now (known, not marked down),
 * else NULL. */
const char *fe_instance_address(struct frontend *f, uint64_t id);

/* route.c: choosing a worker beyond round-robin / random. */
void fe_route_init(struct frontend *f);
/* Cancel the KV event subscriptions and the service watch (before
 * rpc_client_free); fe_route_free() after the models are gone. */
void fe_route_stop(struct frontend *f);
void fe_route_free(struct frontend *f);
void fe_route_model_init(struct frontend *f, struct fe_model *m, long block_size);
void fe_route_model_free(struct fe_model *m);
void fe_route_add_worker(struct fe_model *m, uint64_t id, const char *path, long block_size,
			 enum fe_pool pool);
void fe_route_remove_worker(struct fe_model *m, uint64_t id);
/* The block sequence hashes of a prompt with m's block size when a router
 * will look at them (*out: malloc'd, NULL when none); returns their count. */
size_t fe_route_hashes(struct frontend *f, const struct fe_model *m, const int32_t *ids,
		       size_t n, uint64_t **out);

/* Where a request goes: the worker that streams its tokens ("agg" or
 * "decode"), whether its prompt is prefilled elsewhere first
 * (core/router/disagg.h) and on which prefill worker (0: none). */
struct fe_route_plan {
	uint64_t worker, prefill;
	uint32_t overlap, prefill_overlap;
	enum disagg_decision decision;
};

/* One request's routing state (zero-initialised; fe_route_end() ends it). */
typedef void (*fe_routed_fn)(void *arg, int ok, const struct fe_route_plan *plan);
struct fe_route {
	struct frontend *f;
	struct fe_model *m;
	uint64_t local;			/* in flight in the embedded router (0: not) */
	uint64_t local_prefill;		/* its remote prefill, the same */
	/* the router service */
	struct rpc_stream *st;		/* the open route call */
	uint64_t svc_id;		/* its route id once decided */
	char *svc_addr, *svc_ft;	/* its address and first_token endpoint */
	struct event *timer;
	int waiting;
	const char *req_id;
	fe_routed_fn cb;
	void *cb_arg;
};
/*
 * Ask the router service for a worker (exclude: one not to pick, 0 none).
 * 0: asked; cb(arg, ok, plan) follows from the loop (ok 0: the
 * service failed or had no answer; route on the embedded router).  < 0:
 * no service in use now.
 */
int fe_route_service(struct fe_route *r, struct frontend *f, struct fe_model *m,
		     const char *req_id, const uint64_t *hashes, size_t n, size_t prompt_tokens,
		     uint64_t exclude, fe_routed_fn cb, void *arg);
/* The service's choice is not used (the worker is unknown here). */
void fe_route_unused(struct fe_route *r);
/* The embedded router's plan (m must have a KV view) for a prompt of
 * prompt_tokens tokens, or -1 when there is no worker. */
int fe_route_select(struct frontend *f, struct fe_model *m, const char *req_id,
		    const uint64_t *hashes, size_t n, size_t prompt_tokens, uint64_t exclude,
		    struct fe_route_plan *plan);
/* The request goes where plan says: count it in the embedded router. */
void fe_route_dispatch(struct fe_route *r, struct frontend *f, struct fe_model *m,
		       const struct fe_route_plan *plan, const uint64_t *hashes, size_t n);
/* Its remote prefill ended (done or failed): uncount it there. */
void fe_route_prefill_end(struct fe_route *r);
void fe_route_first_token(struct fe_route *r);
/* The request ended (or goes elsewhere): uncount it, close the route call. */
void fe_route_end(struct fe_route *r);
void fe_route_metrics(struct frontend *f, struct strbuf *out);

/* request.c */
enum fe_kind { FE_CHAT, FE_COMPLETION };

struct fe_params {
	enum fe_kind kind;
	char *model;
	int stream, include_usage, echo;
	int logprobs;			/* -1 none; chat: top_logprobs count */
	int prompt_logprobs;		/* vLLM's: -1 none, else alternatives per token */
	char *stops[FE_MAX_STOPS];
	size_t nstops;
	int include_stop;		/* include_stop_str_in_output: keep the stop string */
	int n;				/* samples per prompt (choices n per prompt) */
	char bias_error[96];		/* a logit_bias key that is not an id ("": none) */
	long max_tokens;		/* -1 = not given */
	struct gen_request gen;		/* sampling + stop ids (tokens filled later) */
	char *template_json;		/* chat: what tmpl_chat_render_request gets */
	char *tools_json;		/* chat: its tools (a JSON array), or NULL */
	int tool_choice_none;		/* tool_choice "none": no calls are parsed */
	char *prompt_text;		/* completions: a text prompt */
	int32_t *prompt_ids;		/* completions: a token prompt */
	size_t n_prompt_ids;
	int has_prompt_ids;
	struct fe_prompt *prompts;	/* completions batch: nprompts >= 2 of them, */
	size_t nprompts;		/* answered one after the other */
	struct fe_constraint {		/* structured output asked for */
		const char *param;	/* the field it came in */
		int kind;		/* enum grammar_kind */
		char *spec;
		int lenient;
	} cons[FE_MAX_CONSTRAINTS];
	int n_cons;
	int forced_tools;		/* tool_choice required / named: the output is
					   hermes-style calls, answered as tool_calls */
};

/* Parse and validate body; on error returns -EINVAL with err_msg() and
 * *param naming the offending field (or NULL). */
int fe_params_parse(enum fe_kind kind, const char *body, size_t len, struct fe_params *p,
		    const char **param);
void fe_params_release(struct fe_params *p);
/* The structured output constraint noted by fe_params_parse, checked
 * once the model is known (an unknown model is a 404 first): at most one,
 * and it must compile (core/grammar/grammar.h); then p->gen carries it.
 * -EINVAL with *param naming the field (a 400). */
int fe_params_constrain(struct fe_params *p, const char **param);

/* metrics.c */
struct fe_stats *fe_stats_get(struct frontend *f, const char *model);
void fe_stats_count(struct fe_stats *s, const char *endpoint, int status);
void fe_metrics_write(struct frontend *f, struct strbuf *out);
void fe_stats_free_all(struct frontend *f);

/* openapi.c */
/* The /openapi.json document, with bearer auth (--api-key) or without. */
extern const char fe_openapi_json_keyed[], fe_openapi_json_open[];

/* handler.c */
void fe_http_handler(struct http_req *r, void *arg);

/* embeddings.c: POST /v1/embeddings */
void fe_handle_embeddings(struct frontend *f, struct http_req *r);

#endif
