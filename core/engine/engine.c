/*
 * engine.c - the engine's step loop and its public API (see engine.h).
 *
 * Requests arrive in an inbox (mutex + condition variable); the step
 * thread moves them into the scheduler, runs one forward pass over the
 * batch it picks, samples a token for every sequence whose prompt is fully
 * computed, reports outputs and finishes sequences, and repeats while
 * there is work.  In mock mode the forward pass and the sampler are
 * replaced by a timed sleep and mock tokens (mock.h).
 *
 * The engine_kv_* calls touch the scheduler and the backend, which belong
 * to the step thread: they are queued as step calls that the loop runs
 * between steps while the caller waits.  Ended hold_kv requests sit on a
 * list of their own (held) until released.
 */
#include "core/engine/engine.h"
#include "core/engine/backend.h"
#include "core/engine/forward.h"
#include "core/engine/sched.h"
#include "core/proto/block_hash.h"
#include "core/err.h"
#include "core/grammar/grammar.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct request {
	struct seq q;
	engine_output_fn on_output;
	void *arg;
	struct request *next;		/* inbox link, then held link */
	int hold_kv;
	int kv_wait_ms;
	void (*on_kv_blocks)(void *arg, uint64_t id, const int32_t *blocks, int n_blocks,
			     int n_reused);
	int announced;			/* pending: on_kv_blocks called, deadline set */
	uint64_t *tier_hashes;		/* pending on the KV tiers: the blocks' hashes */
	uint64_t deadline_ns;		/* pending: give up then */
	/* where a tiered request's TTFT goes (the debug log at its first
	 * token): submitted, onboarding started, read, filled */
	uint64_t t_submit, t_onboard, t_read, t_filled;
	int n_onboarded, n_loaded;	/* blocks read; prompt tokens then held */
	struct gmatch *gm;		/* structured output: NULL when free */
};

/* A function to run on the step thread (engine_kv_*). */
struct step_call {
	int (*fn)(struct engine *e, void *arg);
	void *arg;
	int rc, done;
	struct step_call *next;
};

/* A grammar state whose mask is not cached yet: the vocabulary walks
 * that fill it, for the grammar thread, then back to the step thread
 * (masks the grammar's cache could not keep go to the request). */
struct gjob {
	uint64_t id;			/* the request, held meanwhile */
	struct gprep *p;
	struct gjob *next;
};

#define KV_WAIT_MS_DEFAULT 30000
#define TIER_WAIT_MS 5000		/* onboarding longer than this: recompute */

struct engine {
	const struct model *m;
	struct engine_opts o;
	struct backend *b;
	struct forward *fwd;
	struct kv_manager *kv;
	struct sched sched;
	struct sampler *sampler;
	int max_model_len;
	char describe[768];
	pthread_t thread;
	int started;
	struct kv_layout layout;	/* of the backend's pool (not in mock mode) */
	void *evict_buf;		/* a block's data for on_evict */
	struct kv_tiers *tiers;		/* lower KV tiers, or NULL */
	struct request *held;		/* ended hold_kv requests (step thread) */
	int n_held;
	int n_ghold;			/* sequences held for their grammar masks */
	pthread_t gthread;		/* prepares cold grammar masks */
	int gstarted;

	pthread_mutex_t mu;		/* guards everything below */
	pthread_cond_t cv;
	pthread_cond_t call_cv;		/* a step call is done */
	struct step_call *calls;
	struct request *inbox, *inbox_tail;
	long inbox_tokens;		/* prompt tokens in the inbox */
	uint64_t *cancels;
	int n_cancels, cap_cancels;
	uint64_t *live;			/* ids submitted and not finished */
	int n_live, cap_live;
	uint64_t next_id;
	int stop;
	struct engine_stats stats;
	double prefill_tps;		/* measured prefill tokens/s (0: not yet) */
	struct gjob *gjobs, *gjobs_tail;	/* for the grammar thread */
	pthread_cond_t gcv;		/* a job for it, or stop */
	struct gjob *gdone;		/* jobs it finished, for the step thread */
	int have_sched;			/* sched initialised (for engine_free) */

	/* step-thread buffers */
	int32_t *b_tokens, *b_pos, *b_seq, *b_slot, *b_out;
	const int32_t **b_tables;
	struct seq **batch;
	float *logits;
	uint32_t *gmask;		/* a grammar's allowed tokens (vocab bits) */
};

void engine_opts_init(struct engine_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->block_size = 16;
	o->max_num_seqs = 16;
	o->max_num_batched_tokens = 512;
	mock_timing_init(&o->mock_timing);
}

void engine_opts_init_mock(struct engine_opts *o)
{
	engine_opts_init(o);
	o->mock = 1;
	o->block_size = MOCK_BLOCK_SIZE;
	o->kv_cache_tokens = MOCK_KV_BLOCKS * MOCK_BLOCK_SIZE;
	o->max_num_seqs = MOCK_MAX_NUM_SEQS;
	o->max_num_batched_tokens = MOCK_MAX_NUM_BATCHED_TOKENS;
	o->watermark = MOCK_WATERMARK;
}

const char *engine_finish_name(enum engine_finish f)
{
	switch (f) {
	case ENGINE_FINISH_STOP: return "stop";
	case ENGINE_FINISH_LENGTH: return "length";
	case ENGINE_FINISH_ABORT: return "abort";
	case ENGINE_FINISH_ERROR: return "error";
	default: return "";
	}
}

static void *step_main(void *arg);
static void on_evict(void *arg, int32_t block, uint64_t seq_hash);

static const char *backend_name_of(const struct engine_opts *o)
{
	return o->backend && *o->backend ? o->backend : "cpu";
}

int engine_weight_load_flags(const struct engine_opts *o, unsigned *flags)
{
	int rc;
	const struct backend_type *t = backend_lookup(backend_name_of(o), &rc);

	if (!t)
		return rc;
	/* the loader either keeps the stored dtype or widens all to F32 */
	*flags = t->supports_weight_dtype(DTYPE_F16) && t->supports_weight_dtype(DTYPE_BF16)
			 ? 0
			 : MODEL_LOAD_F32;
	/* block types repacked for its kernels where it computes with those */
	if (t->supports_weight_dtype(DTYPE_Q8_0_P8) && t->supports_weight_dtype(DTYPE_Q4_0_P8))
		*flags |= MODEL_LOAD_PANELS;
	return 0;
}

const char *const engine_kv_dtype_names[] = { "auto", "f32", "bf16", "f16", NULL };

int engine_kv_dtype_parse(const char *name, enum dtype *out)
{
	static const enum dtype types[] = { DTYPE_UNKNOWN, DTYPE_F32, DTYPE_BF16, DTYPE_F16 };

	for (int i = 0; engine_kv_dtype_names[i]; i++)
		if (!strcmp(name, engine_kv_dtype_names[i])) {
			*out = types[i];
			return 0;
		}
	return err_set(-EINVAL, "KV cache dtype '%s' is not one of auto, f32, bf16, f16", name);
}

enum dtype engine_kv_dtype_auto(void)
{
	return DTYPE_F16;
}

/* Does the backend take every tensor of the model as it is loaded? */
static int check_weights(const struct model *m, const struct backend_type *t)
{
	const struct model_weights *w = &m->w;

	for (int l = -1; l < w->n_layers; l++) {
		const struct model_layer *L = l >= 0 ? &w->layers[l] : NULL;
		const struct model_tensor *ts[] = {
			L ? &L->wq : &w->embed, L ? &L->wk : &w->lm_head, L ? &L->wv : &w->final_norm,
			L ? &L->wo : NULL, L ? &L->w_gate : NULL, L ? &L->w_up : NULL,
			L ? &L->w_down : NULL, L ? &L->attn_norm : NULL, L ? &L->ffn_norm : NULL,
		};
		for (size_t i = 0; i < ARRAY_SIZE(ts); i++) {
			if (!ts[i] || !model_tensor_present(ts[i]))
				continue;
			if (!ts[i]->data)
				return err_set(-EINVAL, "engine: %s has no data (loaded with "
						       "MODEL_LOAD_META?)", ts[i]->name);
			if (!t->supports_weight_dtype(ts[i]->dtype))
				return err_set(-EINVAL, "engine: the %s backend does not compute "
						       "with %s weights (%s); load them with "
						       "engine_weight_load_flags()", t->name,
					       dtype_name(ts[i]->dtype), ts[i]->name);
		}
	}
	return 0;
}

static int size_pool(struct engine *e, size_t kv_elem_bytes, int *n_blocks)
{
	const struct model_desc *d = &e->m->desc;
	uint64_t per_token = 2ull * (uint64_t)d->num_layers * (uint64_t)d->num_kv_heads *
			     (uint64_t)d->head_dim * kv_elem_bytes;
	uint64_t tokens = (uint64_t)e->o.kv_cache_tokens;
	int ctx = e->o.max_model_len > 0 && e->o.max_model_len < d->max_position_embeddings
			  ? e->o.max_model_len
			  : d->max_position_embeddings;

	if (!tokens) {
		uint64_t budget = e->o.kv_cache_bytes;
		if (!budget) {
			budget = (uint64_t)e->o.max_num_seqs * (uint64_t)ctx * per_token;
			if (budget > (2ull << 30))
				budget = 2ull << 30;
		}
		tokens = budget / per_token;
	}
	uint64_t blocks = tokens / (uint64_t)e->o.block_size;
	if (blocks < 1)
		return err_set(-EINVAL, "KV cache of %llu tokens holds no block of %d",
			       (unsigned long long)tokens, e->o.block_size);
	if (blocks > 1u << 30)
		blocks = 1u << 30;
	*n_blocks = (int)blocks;
	uint64_t cap = blocks * (uint64_t)e->o.block_size;
	e->max_model_len = (uint64_t)ctx < cap ? ctx : (int)cap;
	return 0;
}

/* What names a model's weights, for the KV tiers' keys. */
static const char *model_id(const struct model *m, struct strbuf *sb)
{
	char *dir = realpath(m->src.dir, NULL);

	sb_addf(sb, "%s|%s|%s|%s|%s|%s", dir ? dir : m->src.dir,
		  m->src.weights ? m->src.weights : "", m->src.commit ? m->src.commit : "",
		  model_load_format_name(m->format), dtype_name(m->weights_dtype),
		  dtype_name(m->quantized));
	free(dir);
	return sb->buf;
}

int engine_new(const struct model *m, const struct engine_opts *opts, struct engine **out)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	const struct model_desc *d = &m->desc;
	struct strbuf sb = STRBUF_INIT;
	int rc, n_blocks = 0;

	e->m = m;
	engine_opts_init(&e->o);
	if (opts)
		e->o = *opts;
	if (e->o.block_size <= 0)
		e->o.block_size = 16;
	if (e->o.max_num_seqs <= 0)
		e->o.max_num_seqs = 16;
	if (e->o.max_num_batched_tokens <= 0)
		e->o.max_num_batched_tokens = 512;
	if (e->o.max_num_batched_tokens < e->o.max_num_seqs)
		e->o.max_num_batched_tokens = e->o.max_num_seqs;
	if (e->o.mock && !(e->o.mock_timing.speedup > 0))
		e->o.mock_timing.speedup = 1;
	if (e->o.watermark < 0 || e->o.watermark >= 1)
		e->o.watermark = 0;
	pthread_mutex_init(&e->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);	/* mock sleeps */
	pthread_cond_init(&e->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&e->call_cv, NULL);
	pthread_cond_init(&e->gcv, NULL);
	e->next_id = 1;
	if (!e->o.mock) {
		const struct backend_type *bt = backend_lookup(backend_name_of(&e->o), &rc);
		struct backend_config bc = { .n_threads = e->o.threads,
					     .kv_dtype = e->o.kv_dtype ? e->o.kv_dtype
								       : engine_kv_dtype_auto(),
					     .kv_alloc = e->o.kv_alloc,
					     .kv_free = e->o.kv_free, .kv_arg = e->o.kv_arg };
		if (!bt || (rc = check_weights(m, bt)) < 0 ||
		    (rc = backend_create(bt->name, &bc, &e->b)) < 0)
			goto fail;
	}
	/* mock mode keeps no K/V but sizes its pool as F32 would */
	if ((rc = size_pool(e, e->b ? dtype_size(e->b->kv_dtype) : sizeof(float), &n_blocks)) < 0)
		goto fail;
	if (!e->o.mock) {
		if ((rc = e->b->ops->kv_create(e->b, d->num_layers, n_blocks, e->o.block_size,
					       d->num_kv_heads * d->head_dim)) < 0)
			goto fail;
		if ((rc = forward_new(m, e->b, e->o.block_size, e->o.max_num_batched_tokens,
				       e->o.max_num_seqs + SCHED_PROMPT_LP_ROWS, &e->fwd)) < 0)
			goto fail;
	}
	if ((rc = kv_new(n_blocks, e->o.block_size, &e->kv)) < 0)
		goto fail;
	kv_set_events(e->kv, &e->o.events);
	if (e->b) {
		e->b->ops->kv_layout(e->b, &e->layout);
		if (e->o.on_evict)
			e->evict_buf = xmalloc(e->layout.block_bytes);
	}
	if (!e->b && kv_tiers_wanted(&e->o.tiers))
		LOG_WARN("engine", "the mock engine keeps no K/V: the KV tiers are not used");
	if (e->b && kv_tiers_wanted(&e->o.tiers) &&
	    (rc = kv_tiers_new(&e->o.tiers, kv_tiers_fingerprint(model_id(m, &sb), &e->layout),
			       e->layout.block_bytes, &e->tiers)) < 0)
		goto fail;
	if (e->tiers && e->o.events.tiered)
		kv_tiers_set_moved(e->tiers, e->o.events.tiered, e->o.events.arg);
	if (e->o.on_evict || e->tiers)
		kv_set_evict(e->kv, on_evict, e);
	struct sched_opts so = { e->o.max_num_seqs, e->o.max_num_batched_tokens,
				 !e->o.no_prefix_caching, e->o.watermark };
	sched_init(&e->sched, &so, e->kv);
	e->have_sched = 1;
	size_t nt = (size_t)e->o.max_num_batched_tokens, ns = (size_t)e->o.max_num_seqs;
	e->batch = xcalloc(ns, sizeof(*e->batch));
	e->gmask = xcalloc(((size_t)d->vocab_size + 31) / 32, sizeof(uint32_t));
	if (!e->o.mock) {
		e->sampler = sampler_new(d->vocab_size);
		e->b_tokens = xcalloc(nt, sizeof(int32_t));
		e->b_pos = xcalloc(nt, sizeof(int32_t));
		e->b_seq = xcalloc(nt, sizeof(int32_t));
		e->b_slot = xcalloc(nt, sizeof(int32_t));
		e->b_out = xcalloc(ns + SCHED_PROMPT_LP_ROWS, sizeof(int32_t));
		e->b_tables = xcalloc(ns, sizeof(*e->b_tables));
		e->logits = xcalloc((ns + SCHED_PROMPT_LP_ROWS) * (size_t)d->vocab_size,
				    sizeof(float));
	}
	e->stats.kv_blocks_total = n_blocks;
	e->stats.block_size = e->o.block_size;
	if (e->o.mock)
		snprintf(e->describe, sizeof(e->describe),
			 "mock (no compute, speed-up x%g); KV cache %d blocks x %d tokens; "
			 "context %d", e->o.mock_timing.speedup, n_blocks, e->o.block_size,
			 e->max_model_len);
	else
		snprintf(e->describe, sizeof(e->describe),
			 "%s, %d thread%s, %s; weights %s%s%s; KV cache %s, %d blocks x %d tokens "
			 "(%.1f MB); context %d", e->b->ops->name, e->b->n_threads,
			 e->b->n_threads == 1 ? "" : "s", e->b->simd, dtype_name(m->weights_dtype),
			 m->quantized ? ", projections " : "",
			 m->quantized ? dtype_name(m->quantized) : "", dtype_name(e->layout.dtype),
			 n_blocks, e->o.block_size,
			 (double)n_blocks * (double)e->layout.block_bytes / (1 << 20),
			 e->max_model_len);
	if (e->tiers) {
		size_t n = strlen(e->describe);
		snprintf(e->describe + n, sizeof(e->describe) - n, "; KV tiers %s",
			 kv_tiers_describe(e->tiers));
	}
	LOG_DEBUG("engine", "%s", e->describe);
	rc = pthread_create(&e->thread, NULL, step_main, e);
	if (rc) {
		rc = err_set(-rc, "engine: pthread_create: %s", strerror(rc));
		goto fail;
	}
	e->started = 1;
	sb_release(&sb);
	*out = e;
	return 0;
fail:
	sb_release(&sb);
	engine_free(e);
	return rc;
}

static void free_request(struct request *r)
{
	gmatch_free(r->gm);
	seq_release(&r->q);
	free(r->tier_hashes);
	free(r);
}

/* kv_manager's eviction hook: hand the block's data to on_evict. */
static void on_evict(void *arg, int32_t block, uint64_t seq_hash)
{
	struct engine *e = arg;

	void *buf = e->tiers ? kv_tiers_reserve(e->tiers, seq_hash) : NULL;
	if (buf) {	/* one copy here; the tiers' thread does the rest */
		e->b->ops->kv_block_read(e->b, block, buf);
		kv_tiers_put(e->tiers, seq_hash, buf);
	}
	if (!e->o.on_evict)
		return;
	if (!e->b) {
		e->o.on_evict(e->o.evict_arg, seq_hash, NULL, 0);
		return;
	}
	e->b->ops->kv_block_read(e->b, block, e->evict_buf);
	e->o.on_evict(e->o.evict_arg, seq_hash, e->evict_buf, e->layout.block_bytes);
}

static void emit(struct engine *e, struct request *r, const struct sample_result *sr,
		 enum engine_finish fin, const char *error)
{
	struct seq *q = &r->q;
	struct engine_output o = {
		.id = q->id,
		.token = sr ? sr->token : -1,
		.logprob = sr ? sr->logprob : 0,
		.n_top = sr ? sr->n_top : 0,
		.top_ids = sr ? sr->top_ids : NULL,
		.top_logprobs = sr ? sr->top_logprobs : NULL,
		.finish = fin,
		.n_prompt = q->n_prompt,
		.n_generated = q->n_tokens - q->n_prompt,
		.n_cached = q->n_cached,
		.error = error,
	};
	if (fin != ENGINE_FINISH_NONE) {
		pthread_mutex_lock(&e->mu);
		for (int i = 0; i < e->n_live; i++)
			if (e->live[i] == q->id) {
				e->live[i] = e->live[--e->n_live];
				break;
			}
		pthread_mutex_unlock(&e->mu);
	}
	r->on_output(r->arg, &o);
}

/* End a request: report, give back its blocks (or hold them), free it. */
static void finish(struct engine *e, struct request *r, const struct sample_result *sr,
		   enum engine_finish fin, const char *error)
{
	if (r->q.hold) {	/* its job's notice will find no request */
		r->q.hold = 0;
		e->n_ghold--;
	}
	if (r->hold_kv && (fin == ENGINE_FINISH_STOP || fin == ENGINE_FINISH_LENGTH)) {
		sched_detach(&e->sched, &r->q);
		r->next = e->held;
		e->held = r;
		e->n_held++;
		emit(e, r, sr, fin, error);	/* may release r at once: not touched after */
		return;
	}
	sched_remove(&e->sched, &r->q);
	emit(e, r, sr, fin, error);
	free_request(r);
}

static struct request *find_in(struct seq **list, int n, uint64_t id)
{
	for (int i = 0; i < n; i++)
		if (list[i]->id == id)
			return list[i]->owner;
	return NULL;
}

static struct request *find_seq(struct engine *e, uint64_t id)
{
	struct sched *s = &e->sched;
	struct request *r = find_in(s->running, s->n_running, id);
	if (!r)
		r = find_in(s->waiting, s->n_waiting, id);
	return r ? r : find_in(s->pending, s->n_pending, id);
}

static struct request **find_held(struct engine *e, uint64_t id)
{
	struct request **p = &e->held;
	while (*p && (*p)->q.id != id)
		p = &(*p)->next;
	return *p ? p : NULL;
}

static uint64_t deadline_after(int ms)
{
	return mono_ns() + (uint64_t)(ms > 0 ? ms : KV_WAIT_MS_DEFAULT) * 1000000ull;
}

static int on_step_thread(struct engine *e, int (*fn)(struct engine *, void *), void *arg);
static void tier_recheck(struct engine *e, struct request *r);

/* Onboarding from the KV tiers: a pending request's blocks past its G1
 * prefix are read on the tiers' thread (up to the first one missing), then
 * written into its blocks between steps; it computes the rest itself. */
struct onboard {
	struct engine *e;
	uint64_t id;
	int first, n;			/* its blocks [first, first + n) */
	uint64_t *hashes;		/* theirs */
	char *data;
	uint64_t t_read;		/* when they were read */
};

static int call_tier_fill(struct engine *e, void *arg)
{
	struct onboard *ob = arg;
	struct request *r = find_seq(e, ob->id);

	if (!r || r->q.state != SEQ_PENDING_KV)
		return 0;	/* cancelled or timed out meanwhile: its blocks are gone */
	r->t_read = ob->t_read;
	r->t_filled = mono_ns();
	r->n_onboarded = ob->n;
	for (int i = 0; i < ob->n; i++)
		e->b->ops->kv_block_write(e->b, r->q.table[ob->first + i],
					  ob->data + (size_t)i * e->layout.block_bytes);
	sched_kv_filled(&e->sched, &r->q, ob->n ? (ob->first + ob->n) * e->o.block_size : 0);
	r->n_loaded = r->q.n_computed;
	return 0;
}

static void onboard_run(void *arg)
{
	struct onboard *ob = arg;
	size_t bb = ob->e->layout.block_bytes;
	int want = ob->n;

	ob->data = xmalloc((size_t)(want ? want : 1) * bb);
	for (ob->n = 0; ob->n < want; ob->n++)
		if (kv_tiers_load(ob->e->tiers, ob->hashes[ob->n],
				  ob->data + (size_t)ob->n * bb) == KV_TIER_NONE)
			break;
	ob->t_read = mono_ns();
	on_step_thread(ob->e, call_tier_fill, ob);	/* -ESHUTDOWN: nothing to do */
	free(ob->data);
	free(ob->hashes);
	free(ob);
}

static void onboard_start(struct engine *e, struct request *r, int n_reused)
{
	struct onboard *ob = xcalloc(1, sizeof(*ob));
	int n = r->q.kv_pending / e->o.block_size - n_reused;

	ob->e = e;
	ob->id = r->q.id;
	ob->first = n_reused;
	ob->n = n > 0 ? n : 0;
	ob->hashes = xmalloc((size_t)(ob->n ? ob->n : 1) * sizeof(uint64_t));
	memcpy(ob->hashes, r->tier_hashes + n_reused, (size_t)ob->n * sizeof(uint64_t));
	kv_tiers_run_first(e->tiers, onboard_run, ob);
}

/* Pending requests: tell the new ones their blocks; end those whose K/V
 * did not come in time.  Returns 1 when a callback filled one at once (it
 * waits to run now). */
static int tend_pending(struct engine *e)
{
	struct sched *s = &e->sched;
	int n = s->n_pending;
	struct seq *list[n > 0 ? n : 1];
	uint64_t now = mono_ns();

	/* a copy: callbacks may fill or cancel, changing the list */
	memcpy(list, s->pending, (size_t)n * sizeof(*list));
	for (int i = 0; i < n; i++) {
		struct request *r = list[i]->owner;
		if (r->announced && now >= r->deadline_ns && r->tier_hashes) {
			/* the tiers are slow (a backlog of writes): compute instead */
			LOG_DEBUG("engine", "request %llu: KV tiers too slow; recomputing",
				  (unsigned long long)r->q.id);
			sched_kv_filled(&e->sched, &r->q, 0);
			continue;
		}
		if (r->announced && now >= r->deadline_ns) {
			char msg[128];
			snprintf(msg, sizeof(msg), "the K/V of %d prompt tokens did not arrive "
				 "within %d ms", r->q.kv_pending, r->kv_wait_ms > 0 ? r->kv_wait_ms
				 : KV_WAIT_MS_DEFAULT);
			finish(e, r, NULL, ENGINE_FINISH_ERROR, msg);
			list[i] = NULL;	/* freed */
		}
	}
	int waiting = s->n_waiting;
	for (int i = 0; i < n; i++) {
		if (!list[i] || list[i]->state != SEQ_PENDING_KV)
			continue;
		struct request *r = list[i]->owner;
		if (r->announced)
			continue;
		r->announced = 1;
		r->deadline_ns = deadline_after(r->kv_wait_ms);
		/* pending, n_computed is what its reused blocks hold (sched.h) */
		if (r->tier_hashes) {
			r->t_onboard = mono_ns();
			onboard_start(e, r, r->q.n_computed / e->o.block_size);
		} else if (r->on_kv_blocks)
			r->on_kv_blocks(r->arg, r->q.id, r->q.table, r->q.n_blocks,
					r->q.n_computed / e->o.block_size);
	}
	return s->n_waiting > waiting;
}

/* The nearest deadline of a pending request; 0: none. */
static uint64_t next_deadline(const struct engine *e)
{
	uint64_t t = 0;
	for (int i = 0; i < e->sched.n_pending; i++) {
		const struct request *r = e->sched.pending[i]->owner;
		if (r->announced && (!t || r->deadline_ns < t))
			t = r->deadline_ns;
	}
	return t;
}

static void push_and_emit(struct engine *e, struct request *r, const struct sample_result *sr);

/* The grammar thread: the vocabulary walks of masks met for the first
 * time, which would stall every sequence of the step for up to tens of
 * milliseconds each on a large vocabulary. */
static void *grammar_main(void *arg)
{
	struct engine *e = arg;

	pthread_mutex_lock(&e->mu);
	for (;;) {
		while (!e->stop && !e->gjobs)
			pthread_cond_wait(&e->gcv, &e->mu);
		if (e->stop)
			break;
		struct gjob *j = e->gjobs;
		e->gjobs = j->next;
		pthread_mutex_unlock(&e->mu);
		gprep_run(j->p);
		pthread_mutex_lock(&e->mu);
		j->next = e->gdone;
		e->gdone = j;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	return NULL;
}

/* Before r's next mask: if it is cold, hold r (the scheduler skips it)
 * while the grammar thread prepares it; the others go on. */
static void grammar_prepare(struct engine *e, struct request *r)
{
	struct gprep *p = r->gm && !r->q.hold ? gmatch_prepare(r->gm) : NULL;
	if (!p)
		return;
	if (!e->gstarted) {
		if (pthread_create(&e->gthread, NULL, grammar_main, e)) {
			gprep_free(p);	/* gmatch_mask walks on this thread instead */
			return;
		}
		e->gstarted = 1;
	}
	struct gjob *j = xcalloc(1, sizeof(*j));
	j->id = r->q.id;
	j->p = p;
	pthread_mutex_lock(&e->mu);
	if (e->gjobs)
		e->gjobs_tail->next = j;
	else
		e->gjobs = j;
	e->gjobs_tail = j;
	pthread_cond_signal(&e->gcv);
	pthread_mutex_unlock(&e->mu);
	r->q.hold = 1;
	e->n_ghold++;
}

static void gjobs_free(struct gjob *j)
{
	while (j) {
		struct gjob *next = j->next;
		gprep_free(j->p);
		free(j);
		j = next;
	}
}

/* Requests whose masks the grammar thread prepared (jobs taken from
 * e->gdone under the mutex) run again. */
static void grammar_release(struct engine *e, struct gjob *done)
{
	for (struct gjob *j = done; j; j = j->next) {
		struct request *r = find_seq(e, j->id);
		if (r && r->q.hold) {
			gmatch_adopt(r->gm, j->p);
			r->q.hold = 0;
			e->n_ghold--;
		}
	}
	gjobs_free(done);
}

static int is_stop(const struct engine *e, const struct seq *q, int32_t t)
{
	const struct model_desc *d = &e->m->desc;
	if (!q->params.ignore_eos)
		for (int i = 0; i < d->n_eos; i++)
			if (d->eos_token_ids[i] == t)
				return 1;
	for (int i = 0; i < q->params.n_stop_token_ids; i++)
		if (q->params.stop_token_ids[i] == t)
			return 1;
	return 0;
}

/* The tokens r's grammar allows next, into e->gmask; with none, r ends
 * in an error (the grammar cannot go on with this vocabulary). */
static int grammar_mask(struct engine *e, struct request *r)
{
	if (gmatch_mask(r->gm, e->gmask) > 0)
		return 0;
	finish(e, r, NULL, ENGINE_FINISH_ERROR,
	       "structured output: the grammar allows no token of the vocabulary here");
	return -1;
}

/* logits[t] = -inf for every t not in bits, a word at a time: most
 * words of a mask are all allowed or all refused. */
static void mask_logits(float *logits, const uint32_t *bits, int n)
{
	for (int t0 = 0; t0 < n; t0 += 32) {
		uint32_t z = ~bits[t0 >> 5];
		if (n - t0 < 32)
			z &= (1u << (n - t0)) - 1;
		if (z == UINT32_MAX) {
			for (int k = 0; k < 32; k++)
				logits[t0 + k] = -INFINITY;
			continue;
		}
		for (; z; z &= z - 1)
			logits[t0 + __builtin_ctz(z)] = -INFINITY;
	}
}

/* Sample the next token of q from its logits row and report it. */
/* Where a request's time to first token went, for a debug log. */
static void log_ttft(const struct request *r)
{
	uint64_t now = mono_ns(), t0 = r->t_submit;
	double ms = 1e-6;
	if (!r->t_filled) {
		LOG_DEBUG("engine", "request %llu: first token after %.1f ms, %d of %d prompt "
			  "tokens cached in G1", (unsigned long long)r->q.id, (now - t0) * ms,
			  r->q.n_cached, r->q.n_prompt);
		return;
	}
	LOG_DEBUG("engine", "request %llu: first token after %.1f ms: queued %.1f, %d blocks "
		  "read from the tiers %.1f, filled in %.1f later, then %.1f computing %d of %d "
		  "prompt tokens", (unsigned long long)r->q.id, (now - t0) * ms,
		  (r->t_onboard - t0) * ms, r->n_onboarded, (r->t_read - r->t_onboard) * ms,
		  (r->t_filled - r->t_read) * ms, (now - r->t_filled) * ms,
		  r->q.n_prompt - r->n_loaded, r->q.n_prompt);
}

static void sample_and_emit(struct engine *e, struct request *r, float *logits)
{
	struct seq *q = &r->q;
	const struct model_desc *d = &e->m->desc;
	int32_t masked[MODEL_MAX_EOS + SAMPLING_MAX_STOP];
	int n_masked = 0, n_out = q->n_tokens - q->n_prompt;
	struct sample_result sr;

	if (e->o.on_logits)
		e->o.on_logits(e->o.logits_arg, q->id, q->n_tokens - 1, logits, d->vocab_size);
	if (n_out < q->params.min_tokens) {
		if (!q->params.ignore_eos)
			for (int i = 0; i < d->n_eos; i++)
				masked[n_masked++] = d->eos_token_ids[i];
		for (int i = 0; i < q->params.n_stop_token_ids; i++)
			masked[n_masked++] = q->params.stop_token_ids[i];
	}
	if (r->gm) {
		if (grammar_mask(e, r) < 0)
			return;
		mask_logits(logits, e->gmask, d->vocab_size);
	}
	sampler_sample(e->sampler, &q->params, &q->rng, logits, q->tokens, q->n_tokens, n_out,
		       masked, n_masked, &sr);
	if (!n_out && e->tiers)
		log_ttft(r);
	push_and_emit(e, r, &sr);
}

/* Report the logprobs of q's prompt tokens after positions p0 .. p0 + n - 1
 * from their logits rows (one per position: it predicts the next token). */
static void emit_prompt_lps(struct engine *e, struct request *r, int p0, int n,
			    const float *rows)
{
	struct seq *q = &r->q;
	size_t v = (size_t)e->m->desc.vocab_size;

	for (int k = 0; k < n; k++) {
		struct sample_result sr;
		int pos = p0 + k + 1, rank;
		sampler_logprob_of(e->sampler, rows + (size_t)k * v, q->tokens[pos],
				   q->params.prompt_top, &sr, &rank);
		struct engine_output o = {
			.id = q->id, .token = -1, .logprob = sr.logprob, .n_top = sr.n_top,
			.top_ids = sr.top_ids, .top_logprobs = sr.top_logprobs,
			.prompt_pos = pos, .rank = rank, .n_prompt = q->n_prompt,
			.n_cached = q->n_cached,
		};
		r->on_output(r->arg, &o);
		q->n_prompt_lps = pos;
	}
}

/* Mock mode: a pseudo-random token, never EOS nor a stop id nor one
 * that logit_bias bans (-100); before the first, the prompt logprobs
 * asked for. */
static void mock_emit(struct engine *e, struct request *r)
{
	struct seq *q = &r->q;
	const struct model_desc *d = &e->m->desc;
	int32_t banned[MODEL_MAX_EOS + SAMPLING_MAX_STOP + SAMPLING_MAX_BIAS];
	int n_banned = 0;
	struct sample_result sr = { 0 };

	for (int i = 0; i < d->n_eos; i++)
		banned[n_banned++] = d->eos_token_ids[i];
	for (int i = 0; i < q->params.n_stop_token_ids; i++)
		banned[n_banned++] = q->params.stop_token_ids[i];
	for (int i = 0; i < q->params.n_bias; i++)
		if (q->params.bias[i] <= -100)
			banned[n_banned++] = q->params.bias_ids[i];
	/* prompt logprobs: every id as likely, each prompt token its own top */
	for (int pos = q->n_prompt_lps + 1; q->params.prompt_logprobs && pos < q->n_prompt; pos++) {
		int32_t id = q->tokens[pos];
		float lp = (float)mock_token_logprob(d->vocab_size);
		struct engine_output o = {
			.id = q->id, .token = -1, .logprob = lp, .n_top = q->params.prompt_top > 0,
			.top_ids = &id, .top_logprobs = &lp, .prompt_pos = pos, .rank = 1,
			.n_prompt = q->n_prompt, .n_cached = q->n_cached,
		};
		r->on_output(r->arg, &o);
		q->n_prompt_lps = pos;
	}
	if (r->gm) {	/* a uniform pick among the allowed tokens, EOS included */
		if (grammar_mask(e, r) < 0)
			return;
		int n = 0;
		for (int w = 0; w < (d->vocab_size + 31) / 32; w++)
			n += __builtin_popcount(e->gmask[w]);
		int k = (int)(sample_uniform(&q->rng, (uint64_t)q->n_tokens, 0) * n);
		for (int t = 0; t < d->vocab_size; t++)
			if (e->gmask[t >> 5] >> (t & 31) & 1 && k-- == 0) {
				sr.token = t;
				break;
			}
	} else {
		sr.token = mock_token(&q->rng, (uint64_t)q->n_tokens, d->vocab_size, banned,
				      n_banned);
	}
	if (q->params.logprobs >= 0) {
		sr.logprob = (float)mock_token_logprob(d->vocab_size);
		if (q->params.logprobs > 0) {	/* every id is as likely: the drawn one */
			sr.n_top = 1;
			sr.top_ids[0] = sr.token;
			sr.top_logprobs[0] = sr.logprob;
		}
	}
	push_and_emit(e, r, &sr);
}

/* Append the chosen token to q, report it, finish q if it ends there. */
static void push_and_emit(struct engine *e, struct request *r, const struct sample_result *sr0)
{
	struct seq *q = &r->q;
	struct sample_result sr = *sr0;
	int n_out = q->n_tokens - q->n_prompt;

	seq_push(q, sr.token);
	n_out++;
	enum engine_finish fin = ENGINE_FINISH_NONE;
	if (r->gm && gmatch_accept(r->gm, sr.token) < 0) {
		/* every allowed token was masked (min_tokens holding back the
		 * EOS that alone completes the grammar): end without it */
		finish(e, r, NULL, ENGINE_FINISH_STOP, NULL);
		return;
	}
	if (is_stop(e, q, sr.token) || (r->gm && gmatch_done(r->gm)))
		fin = ENGINE_FINISH_STOP;
	else if ((q->params.max_tokens > 0 && n_out >= q->params.max_tokens) ||
		 q->n_tokens >= e->max_model_len)
		fin = ENGINE_FINISH_LENGTH;
	pthread_mutex_lock(&e->mu);
	e->stats.generated_tokens++;
	pthread_mutex_unlock(&e->mu);
	if (fin != ENGINE_FINISH_NONE) {
		finish(e, r, &sr, fin, NULL);
		return;
	}
	emit(e, r, &sr, ENGINE_FINISH_NONE, NULL);
	grammar_prepare(e, r);
}

static void update_stats(struct engine *e);

/* Mock mode: sleep until ms from now have passed or the engine stops,
 * without holding the mutex.  Returns 1 when stopped. */
static int mock_sleep(struct engine *e, double ms)
{
	struct timespec ts;
	int stop;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	long long ns = (long long)(ms * 1e6);
	ts.tv_sec += (time_t)(ns / 1000000000LL);
	ts.tv_nsec += (long)(ns % 1000000000LL);
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&e->mu);
	/* woken early by submits and cancels: they wait for the next step */
	while (!e->stop && pthread_cond_timedwait(&e->cv, &e->mu, &ts) != ETIMEDOUT)
		;
	stop = e->stop;
	pthread_mutex_unlock(&e->mu);
	return stop;
}

/* Mock mode: the batch's simulated time, then a token for every sequence
 * whose prompt is computed. */
static int mock_step(struct engine *e, int n_seqs)
{
	int prefill_tokens = 0, n_decoding = 0;

	for (int i = 0; i < n_seqs; i++) {
		const struct seq *q = e->batch[i];
		/* decoding: computing the token sampled last step */
		if (q->n_tokens > q->n_prompt && q->n_computed == q->n_tokens - 1 && q->chunk == 1)
			n_decoding++;
		else
			prefill_tokens += q->chunk;
	}
	double u = (double)kv_used(e->kv) / (double)kv_total(e->kv);
	update_stats(e);	/* the batch as it runs, for the whole sleep */
	if (mock_sleep(e, mock_step_ms(&e->o.mock_timing, prefill_tokens, u, n_decoding)))
		return 1;	/* stopping: step_main aborts what is left */
	int sampled[n_seqs > 0 ? n_seqs : 1];
	for (int i = 0; i < n_seqs; i++)
		sampled[i] = e->batch[i]->n_computed + e->batch[i]->chunk == e->batch[i]->n_tokens;
	sched_advance(&e->sched, e->batch, n_seqs);
	for (int i = 0; i < n_seqs; i++)
		if (sampled[i])
			mock_emit(e, e->batch[i]->owner);
	return 1;
}

/* One scheduler step and forward pass; returns 0 when there was nothing
 * to run. */
static int step(struct engine *e)
{
	int bs = e->o.block_size, n_seqs, n = 0, n_out = 0;

	n_seqs = sched_schedule(&e->sched, e->batch);
	int filled = e->sched.n_pending ? tend_pending(e) : 0;
	if (n_seqs == 0) {
		if (filled)
			return 1;	/* it runs next step */
		/* nothing runs and nothing else holds blocks: it will never fit */
		if (e->sched.n_waiting > 0 && e->sched.n_running == 0 && e->sched.n_pending == 0 &&
		    !e->held && !e->n_ghold) {
			struct request *r = e->sched.waiting[0]->owner;
			finish(e, r, NULL, ENGINE_FINISH_ERROR, "request does not fit in the KV cache");
			return 1;
		}
		return 0;
	}
	if (e->o.mock)
		return mock_step(e, n_seqs);
	/* the rows of logits: a sequence's prompt logprobs (positions
	 * lp0[i] .. + n_lp[i] - 1), then its next token's */
	int lp0[n_seqs], n_lp[n_seqs], row0[n_seqs];
	for (int i = 0; i < n_seqs; i++) {
		struct seq *q = e->batch[i];
		e->b_tables[i] = q->table;
		row0[i] = n_out;
		n_lp[i] = 0;
		lp0[i] = 0;
		for (int k = 0; k < q->chunk; k++, n++) {
			int p = q->n_computed + k;
			e->b_tokens[n] = q->tokens[p];
			e->b_pos[n] = p;
			e->b_seq[n] = i;
			e->b_slot[n] = q->table[p / bs] * bs + p % bs;
			if (q->params.prompt_logprobs && p + 1 < q->n_prompt &&
			    p + 1 > q->n_prompt_lps) {	/* not again after a preemption */
				if (!n_lp[i]++)
					lp0[i] = p;
				e->b_out[n_out++] = n;
			}
		}
		if (q->n_computed + q->chunk == q->n_tokens)
			e->b_out[n_out++] = n - 1;
	}
	update_stats(e);	/* the batch as it runs, during a long pass */
	struct fwd_batch fb = { n, e->b_tokens, e->b_pos, e->b_seq, e->b_slot, e->b_tables, n_seqs,
				n_out, e->b_out };
	uint64_t t0 = mono_ns();
	int rc = forward_run(e->fwd, &fb, e->logits);
	if (e->tiers && n > 4 * n_seqs) {	/* mostly prefill: the tiers' cost rule */
		double tps = (double)n * 1e9 / (double)(mono_ns() - t0 + 1);
		pthread_mutex_lock(&e->mu);
		e->prefill_tps = e->prefill_tps > 0 ? 0.7 * e->prefill_tps + 0.3 * tps : tps;
		pthread_mutex_unlock(&e->mu);
	}
	if (rc < 0) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", err_msg());
		LOG_ERROR("engine", "step failed: %s", msg);
		for (int i = 0; i < n_seqs; i++)
			finish(e, e->batch[i]->owner, NULL, ENGINE_FINISH_ERROR, msg);
		return 1;
	}
	int sampled[n_seqs > 0 ? n_seqs : 1];
	for (int i = 0; i < n_seqs; i++)
		sampled[i] = e->batch[i]->n_computed + e->batch[i]->chunk == e->batch[i]->n_tokens;
	sched_advance(&e->sched, e->batch, n_seqs);
	size_t v = (size_t)e->m->desc.vocab_size;
	for (int i = 0; i < n_seqs; i++) {
		if (n_lp[i])
			emit_prompt_lps(e, e->batch[i]->owner, lp0[i], n_lp[i],
					e->logits + (size_t)row0[i] * v);
		if (sampled[i])
			sample_and_emit(e, e->batch[i]->owner,
					e->logits + (size_t)(row0[i] + n_lp[i]) * v);
	}
	return 1;
}

static void update_stats(struct engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->stats.running = e->sched.n_running;
	e->stats.waiting = e->sched.n_waiting;
	e->stats.kv_blocks_used = kv_used(e->kv);
	e->stats.kv_blocks_cached = kv_cached(e->kv);
	e->stats.kv_blocks_decoding = sched_decoding_blocks(&e->sched);
	e->stats.cache_hit_tokens = e->sched.cache_hit_tokens;
	e->stats.preemptions = e->sched.preemptions;
	e->stats.queued_prefill_tokens = sched_queued_prefill_tokens(&e->sched);
	e->stats.pending_kv = e->sched.n_pending;
	e->stats.held_kv = e->n_held;
	pthread_mutex_unlock(&e->mu);
}

/* Run the queued step calls (list: taken from e->calls under the mutex). */
static void run_calls(struct engine *e, struct step_call *list)
{
	for (struct step_call *c = list; c; c = c->next)
		c->rc = c->fn(e, c->arg);
	if (!list)
		return;
	pthread_mutex_lock(&e->mu);
	for (struct step_call *c = list, *next; c; c = next) {
		next = c->next;	/* c lives on its caller's stack: read first */
		c->done = 1;
	}
	pthread_cond_broadcast(&e->call_cv);
	pthread_mutex_unlock(&e->mu);
}

/* Wait for work: requests, cancels, calls; while the last step could run
 * nothing, for something to change; a pending deadline wakes it too. */
static void wait_for_work(struct engine *e, int idle)
{
	while (!e->stop && !e->inbox && !e->n_cancels && !e->calls && !e->gdone &&
	       (idle || e->sched.n_running + e->sched.n_waiting == 0)) {
		uint64_t t = next_deadline(e);
		if (!t) {
			pthread_cond_wait(&e->cv, &e->mu);
			continue;
		}
		struct timespec ts = { (time_t)(t / 1000000000ull), (long)(t % 1000000000ull) };
		if (pthread_cond_timedwait(&e->cv, &e->mu, &ts) == ETIMEDOUT)
			break;
	}
}

static void *step_main(void *arg)
{
	struct engine *e = arg;

	int idle = 0;

	for (;;) {
		pthread_mutex_lock(&e->mu);
		wait_for_work(e, idle);
		struct step_call *calls = e->calls;
		e->calls = NULL;
		struct request *in = e->inbox;
		e->inbox = e->inbox_tail = NULL;
		e->inbox_tokens = 0;
		int n_cancels = e->n_cancels, stop = e->stop;
		uint64_t cancels[n_cancels > 0 ? n_cancels : 1];
		if (n_cancels)
			memcpy(cancels, e->cancels, (size_t)n_cancels * sizeof(uint64_t));
		e->n_cancels = 0;
		struct gjob *gdone = e->gdone;
		e->gdone = NULL;
		pthread_mutex_unlock(&e->mu);

		run_calls(e, calls);
		grammar_release(e, gdone);
		while (in) {
			struct request *r = in;
			in = in->next;
			if (r->tier_hashes)
				tier_recheck(e, r);
			sched_add(&e->sched, &r->q);
			grammar_prepare(e, r);
		}
		for (int i = 0; i < n_cancels; i++) {
			struct request *r = find_seq(e, cancels[i]);
			if (r)
				finish(e, r, NULL, ENGINE_FINISH_ABORT, NULL);
		}
		if (stop)
			break;
		idle = !step(e);
		pthread_mutex_lock(&e->mu);
		e->stats.steps++;
		pthread_mutex_unlock(&e->mu);
		update_stats(e);
		if (e->o.on_step)
			e->o.on_step(e->o.step_arg);
	}
	struct sched *s = &e->sched;
	while (s->n_running + s->n_waiting + s->n_pending > 0) {
		struct seq *q = s->n_running ? s->running[0]
			       : s->n_waiting ? s->waiting[0] : s->pending[0];
		finish(e, q->owner, NULL, ENGINE_FINISH_ABORT, NULL);
	}
	/* calls that came in meanwhile: their callers must not wait forever */
	pthread_mutex_lock(&e->mu);
	struct step_call *calls = e->calls;
	e->calls = NULL;
	pthread_mutex_unlock(&e->mu);
	run_calls(e, calls);
	update_stats(e);
	return NULL;
}

/* Run fn on the step thread and return its result (at once when called
 * there, e.g. from a callback). */
static int on_step_thread(struct engine *e, int (*fn)(struct engine *, void *), void *arg)
{
	if (e->started && pthread_equal(pthread_self(), e->thread))
		return fn(e, arg);
	struct step_call c = { fn, arg, 0, 0, NULL };
	pthread_mutex_lock(&e->mu);
	if (e->stop) {
		pthread_mutex_unlock(&e->mu);
		return err_set(-ESHUTDOWN, "engine is shutting down");
	}
	c.next = e->calls;
	e->calls = &c;
	pthread_cond_signal(&e->cv);
	while (!c.done)
		pthread_cond_wait(&e->call_cv, &e->mu);
	pthread_mutex_unlock(&e->mu);
	return c.rc;
}

struct kv_blocks_call {
	uint64_t id;
	int32_t *blocks;
	int cap, n_tokens;
};

static int call_kv_blocks(struct engine *e, void *arg)
{
	struct kv_blocks_call *c = arg;
	struct request **h = find_held(e, c->id), *r = h ? *h : find_seq(e, c->id);

	if (!r || (!h && r->q.state != SEQ_PENDING_KV))
		return err_set(-ENOENT, "request %llu holds no KV blocks",
			       (unsigned long long)c->id);
	for (int i = 0; i < r->q.n_blocks && i < c->cap; i++)
		c->blocks[i] = r->q.table[i];
	c->n_tokens = h ? r->q.n_computed : r->q.kv_pending;
	return r->q.n_blocks;
}

int engine_kv_blocks(struct engine *e, uint64_t id, int32_t *blocks, int cap, int *n_tokens)
{
	struct kv_blocks_call c = { id, blocks, cap, 0 };
	int rc = on_step_thread(e, call_kv_blocks, &c);
	if (rc >= 0 && n_tokens)
		*n_tokens = c.n_tokens;
	return rc;
}

struct kv_filled_call {
	uint64_t id;
	int n_tokens;
};

static int call_kv_filled(struct engine *e, void *arg)
{
	const struct kv_filled_call *c = arg;
	struct request *r = find_seq(e, c->id);

	if (!r || r->q.state != SEQ_PENDING_KV)
		return err_set(-ENOENT, "request %llu is not waiting for KV blocks",
			       (unsigned long long)c->id);
	if (c->n_tokens < 0 || c->n_tokens > r->q.kv_pending)
		return err_set(-EINVAL, "request %llu: K/V of %d tokens filled, %d pending",
			       (unsigned long long)c->id, c->n_tokens, r->q.kv_pending);
	sched_kv_filled(&e->sched, &r->q, c->n_tokens);
	return 0;
}

int engine_kv_filled(struct engine *e, uint64_t id, int n_tokens)
{
	struct kv_filled_call c = { id, n_tokens };
	return on_step_thread(e, call_kv_filled, &c);
}

static int call_kv_release(struct engine *e, void *arg)
{
	uint64_t id = *(const uint64_t *)arg;
	struct request **h = find_held(e, id);

	if (!h)
		return err_set(-ENOENT, "request %llu holds no KV blocks",
			       (unsigned long long)id);
	struct request *r = *h;
	*h = r->next;
	e->n_held--;
	sched_release_blocks(&e->sched, &r->q);
	free_request(r);
	return 0;
}

int engine_kv_release(struct engine *e, uint64_t id)
{
	return on_step_thread(e, call_kv_release, &id);
}

int engine_kv_layout(const struct engine *e, struct kv_layout *out)
{
	if (!e->b)
		return err_set(-ENOTSUP, "the mock engine keeps no KV data");
	*out = e->layout;
	return 0;
}

struct kv_io_call {
	int32_t block;
	void *host;
	int write;
};

static int call_kv_io(struct engine *e, void *arg)
{
	struct kv_io_call *c = arg;
	if (c->write)
		e->b->ops->kv_block_write(e->b, c->block, c->host);
	else
		e->b->ops->kv_block_read(e->b, c->block, c->host);
	return 0;
}

static int kv_io(struct engine *e, int32_t block, void *host, int write)
{
	if (!e->b)
		return err_set(-ENOTSUP, "the mock engine keeps no KV data");
	if (block < 0 || block >= e->layout.n_blocks)
		return err_set(-EINVAL, "KV block %d outside the pool (%d blocks)", block,
			       e->layout.n_blocks);
	struct kv_io_call c = { block, host, write };
	return on_step_thread(e, call_kv_io, &c);
}

int engine_kv_read(struct engine *e, int32_t block, void *host)
{
	return kv_io(e, block, host, 0);
}

int engine_kv_write(struct engine *e, int32_t block, const void *host)
{
	return kv_io(e, block, (void *)host, 1);
}

/* The pool's addresses are fixed from engine_new on: no step call. */
int engine_kv_segments(const struct engine *e, int32_t block, struct iovec *iov, int cap)
{
	if (!e->b)
		return err_set(-ENOTSUP, "the mock engine keeps no KV data");
	if (!e->b->ops->kv_block_segments)
		return err_set(-ENOTSUP, "the %s backend's KV pool is not in host memory",
			       e->b->ops->name);
	if (block < 0 || block >= e->layout.n_blocks)
		return err_set(-EINVAL, "KV block %d outside the pool (%d blocks)", block,
			       e->layout.n_blocks);
	return e->b->ops->kv_block_segments(e->b, block, iov, cap < 0 ? 0 : cap);
}

int engine_kv_regions(const struct engine *e, struct iovec *regions, int cap)
{
	if (!e->b)
		return err_set(-ENOTSUP, "the mock engine keeps no KV data");
	if (!e->b->ops->kv_regions)
		return err_set(-ENOTSUP, "the %s backend's KV pool is not in host memory",
			       e->b->ops->name);
	return e->b->ops->kv_regions(e->b, regions, cap < 0 ? 0 : cap);
}

/* The prompt's blocks up to the last one a lower tier holds become a
 * pending prefix (the ones still in G1 are reused as always) when
 * loading them beats computing them: the cost rule is the tier's
 * kv_tiers_load_seconds() against the tokens at the measured prefill
 * rate (none measured yet: load). */
static void tier_lookup(struct engine *e, struct request *q)
{
	int bs = e->o.block_size, nb = (q->q.n_prompt - 1) / bs, j;

	if (nb <= 0)
		return;
	uint64_t *h = xmalloc((size_t)nb * sizeof(uint64_t));
	block_hash_sequence(q->q.tokens, (size_t)nb * (size_t)bs, bs, NULL, h);
	enum kv_tier tier = KV_TIER_NONE;
	for (j = nb; j > 0 && !(tier = kv_tiers_find(e->tiers, h[j - 1])); j--)
		;
	pthread_mutex_lock(&e->mu);
	double tps = e->prefill_tps;
	pthread_mutex_unlock(&e->mu);
	if (!j || (tps > 0 && kv_tiers_load_seconds(e->tiers, tier, j) > (double)(j * bs) / tps)) {
		free(h);
		return;
	}
	q->tier_hashes = h;
	q->q.kv_pending = j * bs;
	q->kv_wait_ms = TIER_WAIT_MS;
}

/* On the step thread, as a tiered request is queued: a G1 prefix at
 * least as long as the tiers' needs no onboarding (and a pending length
 * would cap what it reuses). */
static void tier_recheck(struct engine *e, struct request *r)
{
	int bs = e->o.block_size, nb = r->q.kv_pending / bs, b;

	for (b = 0; b < nb && kv_contains(e->kv, r->tier_hashes[b]); b++)
		;
	if (b < nb)
		return;
	free(r->tier_hashes);
	r->tier_hashes = NULL;
	r->q.kv_pending = 0;
	r->kv_wait_ms = 0;
}

int engine_submit(struct engine *e, const struct engine_request *r, uint64_t *id)
{
	const struct model_desc *d = &e->m->desc;
	int rc;

	if (!r->on_output)
		return err_set(-EINVAL, "engine: request without an output callback");
	if (r->n_prompt <= 0)
		return err_set(-EINVAL, "the prompt is empty");
	if (r->n_prompt >= e->max_model_len)
		return err_set(-E2BIG, "the prompt has %d tokens; the context limit is %d",
			       r->n_prompt, e->max_model_len);
	for (int i = 0; i < r->n_prompt; i++)
		if (r->prompt[i] < 0 || r->prompt[i] >= d->vocab_size)
			return err_set(-EINVAL, "prompt token %d (id %d) is outside the vocabulary (%d)",
				       i, r->prompt[i], d->vocab_size);
	if ((rc = sampling_params_check(&r->params, d->vocab_size)) < 0)
		return rc;
	if (r->kv_pending_tokens < 0 || r->kv_pending_tokens >= r->n_prompt)
		return err_set(-EINVAL, "kv_pending_tokens must be in [0, %d] (got %d)",
			       r->n_prompt - 1, r->kv_pending_tokens);
	/* they need every prompt position's logits, computed here */
	if (r->params.prompt_logprobs && r->kv_pending_tokens)
		return err_set(-EINVAL, "prompt_logprobs: not with the prompt's K/V computed "
			       "elsewhere (disaggregated prefill)");
	struct request *q = xcalloc(1, sizeof(*q));
	q->q.cap = r->n_prompt + 16;
	q->q.tokens = xmalloc((size_t)q->q.cap * sizeof(int32_t));
	memcpy(q->q.tokens, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
	q->q.n_tokens = q->q.n_prompt = r->n_prompt;
	q->q.params = r->params;
	q->q.owner = q;
	sample_state_init(&q->q.rng, &r->params);
	q->on_output = r->on_output;
	q->arg = r->arg;
	q->hold_kv = r->hold_kv;
	q->q.kv_pending = r->kv_pending_tokens;
	q->kv_wait_ms = r->kv_wait_ms;
	q->on_kv_blocks = r->on_kv_blocks;
	q->t_submit = mono_ns();
	/* prompt logprobs: every position computed here, nothing loaded */
	if (e->tiers && !r->kv_pending_tokens && !e->o.no_prefix_caching &&
	    !r->params.prompt_logprobs)
		tier_lookup(e, q);
	q->gm = r->grammar;

	pthread_mutex_lock(&e->mu);
	if (e->stop) {
		pthread_mutex_unlock(&e->mu);
		q->gm = NULL;	/* still the caller's */
		free_request(q);
		return err_set(-ESHUTDOWN, "engine is shutting down");
	}
	q->q.id = e->next_id++;
	if (e->n_live == e->cap_live) {
		e->cap_live = e->cap_live ? 2 * e->cap_live : 64;
		e->live = xrealloc(e->live, (size_t)e->cap_live * sizeof(uint64_t));
	}
	e->live[e->n_live++] = q->q.id;
	if (e->inbox_tail)
		e->inbox_tail->next = q;
	else
		e->inbox = q;
	e->inbox_tail = q;
	e->inbox_tokens += r->n_prompt;
	e->stats.prompt_tokens += (uint64_t)r->n_prompt;
	if (id)
		*id = q->q.id;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return 0;
}

int engine_cancel(struct engine *e, uint64_t id)
{
	int found = 0;

	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->n_live; i++)
		if (e->live[i] == id)
			found = 1;
	if (found) {
		if (e->n_cancels == e->cap_cancels) {
			e->cap_cancels = e->cap_cancels ? 2 * e->cap_cancels : 16;
			e->cancels = xrealloc(e->cancels, (size_t)e->cap_cancels * sizeof(uint64_t));
		}
		e->cancels[e->n_cancels++] = id;
		pthread_cond_signal(&e->cv);
	}
	pthread_mutex_unlock(&e->mu);
	return found ? 0 : err_set(-ENOENT, "no request %llu in flight", (unsigned long long)id);
}

void engine_stats(struct engine *e, struct engine_stats *st)
{
	pthread_mutex_lock(&e->mu);
	*st = e->stats;
	st->queued_prefill_tokens += e->inbox_tokens;
	pthread_mutex_unlock(&e->mu);
}

const char *engine_describe(const struct engine *e)
{
	return e->describe;
}

int engine_kv_tiers_stats(struct engine *e, struct kv_tiers_stats *out)
{
	if (!e->tiers)
		return -ENOENT;
	kv_tiers_stats(e->tiers, out);
	return 0;
}

const char *engine_kv_tiers_describe(const struct engine *e)
{
	return e->tiers ? kv_tiers_describe(e->tiers) : NULL;
}

int engine_max_model_len(const struct engine *e)
{
	return e->max_model_len;
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	if (e->started) {
		pthread_mutex_lock(&e->mu);
		e->stop = 1;
		pthread_cond_signal(&e->cv);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->thread, NULL);
	}
	if (e->gstarted) {	/* e->stop is set: it ends after its walk */
		pthread_mutex_lock(&e->mu);
		pthread_cond_signal(&e->gcv);
		pthread_mutex_unlock(&e->mu);
		pthread_join(e->gthread, NULL);
	}
	gjobs_free(e->gjobs);
	gjobs_free(e->gdone);
	kv_tiers_free(e->tiers);	/* its jobs find the engine stopped */
	while (e->inbox) {	/* submitted after the loop's last look */
		struct request *r = e->inbox;
		e->inbox = r->next;
		emit(e, r, NULL, ENGINE_FINISH_ABORT, NULL);
		free_request(r);
	}
	while (e->held) {
		struct request *r = e->held;
		e->held = r->next;
		free_request(r);	/* the pool goes with the engine */
	}
	if (e->have_sched)
		sched_release(&e->sched);
	sampler_free(e->sampler);
	free(e->gmask);
	kv_free(e->kv);
	forward_free(e->fwd);
	if (e->b)
		e->b->ops->free(e->b);
	free(e->b_tokens);
	free(e->b_pos);
	free(e->b_seq);
	free(e->b_slot);
	free(e->b_out);
	free(e->b_tables);
	free(e->batch);
	free(e->logits);
	free(e->evict_buf);
	free(e->cancels);
	free(e->live);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	pthread_cond_destroy(&e->call_cv);
	pthread_cond_destroy(&e->gcv);
	free(e);
}
