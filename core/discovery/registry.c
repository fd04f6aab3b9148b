/*
 * registry.c - the discovery registry (registry.h): models from the
 * store's card and instance watches, their tokenizers prepared on an
 * offload thread (core/offload.h), events to the subscribers.
 */
#include "core/discovery/registry.h"

#include "core/discovery/card_fetch.h"
#include "core/err.h"
#include "core/log.h"
#include "core/offload.h"
#include "core/proto/card.h"
#include "core/strbuf.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "store/store.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MOD "discovery"
#define MAX_SUBS 8
/* The pools: one per role, and the prefill workers refused for their KV
 * layout (registry.h), which subscribers never hear of. */
#define REFUSED DISC_NROLES
#define NPOOLS (DISC_NROLES + 1)

enum model_state { MODEL_LOADING, MODEL_READY, MODEL_FAILED };

struct worker {
	struct disc_worker pub;		/* first: a worker is its pub */
	struct model_card card;
	char *key, *path, *kv_layout;
	int warned;			/* its layout mismatch was logged */
};

struct disc_model {
	char *name;
	int refs;			/* the registry's while listed, + users' */
	enum model_state state;
	int removed;
	long created, context_length;
	struct model_card card;		/* the one whose files are (being) loaded */
	struct tok *tok;
	struct tmpl_chat *chat;
	char *chat_error;
	struct worker **pool[NPOOLS];
	size_t npool[NPOOLS];
	struct disc_model *next;
};

struct instance {
	char *key, *path, *address;
	uint64_t id;
	enum disc_role role;
	char *kv_layout;		/* metadata kv.layout, NULL: none */
	long kv_block_size;
};

struct sub {
	struct disc_events ev;
	void *arg;
};

struct discovery {
	struct store *store;
	char *url;
	struct disc_opts o;
	struct store_watch *card_watch, *inst_watch;
	struct disc_model *models;
	struct instance *insts;
	size_t ninsts;
	struct sub subs[MAX_SUBS];
	int nsubs;
	struct offload *off;		/* DISC_LOAD_TOKENIZER only */
	struct store *thread_store;	/* the offload thread's, opened there */
	int closing;
	int cards_synced, insts_synced;	/* initial snapshots delivered */
};

static const char *const role_names[DISC_NROLES] = { "agg", "prefill", "decode" };

const char *disc_role_name(enum disc_role role)
{
	return (unsigned)role < DISC_NROLES ? role_names[role] : "?";
}

int disc_role_parse(const char *name, enum disc_role *out)
{
	for (int i = 0; i < DISC_NROLES; i++)
		if (!strcmp(name, role_names[i])) {
			*out = (enum disc_role)i;
			return 0;
		}
	return err_set(-EINVAL, "unknown worker role '%s' (agg, prefill or decode)", name);
}

/* ---- models ---------------------------------------------------------------- */

static void worker_free(struct worker *w)
{
	card_clear(&w->card);
	free(w->key);
	free(w->path);
	free(w->kv_layout);
	free(w);
}

static void model_free(struct disc_model *m)
{
	for (int r = 0; r < NPOOLS; r++) {
		for (size_t i = 0; i < m->npool[r]; i++)
			worker_free(m->pool[r][i]);
		free(m->pool[r]);
	}
	card_clear(&m->card);
	tok_free(m->tok);
	tmpl_chat_free(m->chat);
	free(m->chat_error);
	free(m->name);
	free(m);
}

void disc_model_ref(struct disc_model *m)
{
	m->refs++;
}

void disc_model_put(struct disc_model *m)
{
	if (m && --m->refs == 0)
		model_free(m);
}

static struct disc_model *find_model(struct discovery *d, const char *name)
{
	for (struct disc_model *m = d->models; m; m = m->next)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

struct disc_model *disc_model_get(struct discovery *d, const char *name)
{
	struct disc_model *m = find_model(d, name);
	if (!m || m->state != MODEL_READY)
		return NULL;
	m->refs++;
	return m;
}

const char *disc_model_name(const struct disc_model *m) { return m->name; }
long disc_model_created(const struct disc_model *m) { return m->created; }
long disc_model_context_length(const struct disc_model *m) { return m->context_length; }
const struct model_card *disc_model_card(const struct disc_model *m) { return &m->card; }
struct tok *disc_model_tok(const struct disc_model *m) { return m->tok; }
int disc_model_removed(const struct disc_model *m) { return m->removed; }

const struct tmpl_chat *disc_model_chat(const struct disc_model *m, const char **error)
{
	if (error)
		*error = m->chat_error;
	return m->chat;
}

size_t disc_model_nworkers(const struct disc_model *m, enum disc_role role)
{
	return m->npool[role];
}

const struct disc_worker *disc_model_worker(const struct disc_model *m, enum disc_role role,
					    size_t i)
{
	return i < m->npool[role] ? &m->pool[role][i]->pub : NULL;
}

size_t disc_model_kv_mismatches(const struct disc_model *m)
{
	return m->npool[REFUSED];
}

static size_t model_nworkers(const struct disc_model *m)
{
	size_t n = 0;
	for (int r = 0; r < NPOOLS; r++)
		n += m->npool[r];
	return n;
}

/* ---- events ---------------------------------------------------------------- */

static void emit_model(struct discovery *d, struct disc_model *m, int added)
{
	for (int i = 0; i < d->nsubs; i++) {
		const struct disc_events *ev = &d->subs[i].ev;
		void (*fn)(struct disc_model *, void *) = added ? ev->model_added
								: ev->model_removed;
		if (fn)
			fn(m, d->subs[i].arg);
	}
}

static void emit_worker(struct discovery *d, struct disc_model *m, const struct worker *w,
			int added)
{
	if (m->state != MODEL_READY)
		return;		/* announced with the model */
	for (int i = 0; i < d->nsubs; i++) {
		const struct disc_events *ev = &d->subs[i].ev;
		void (*fn)(struct disc_model *, const struct disc_worker *, void *) =
			added ? ev->worker_added : ev->worker_removed;
		if (fn)
			fn(m, &w->pub, d->subs[i].arg);
	}
}

/* A model just became ready: it and its workers, to one subscriber. */
static void announce(const struct sub *s, struct disc_model *m)
{
	if (s->ev.model_added)
		s->ev.model_added(m, s->arg);
	for (int r = 0; r < DISC_NROLES; r++)
		for (size_t i = 0; i < m->npool[r] && s->ev.worker_added; i++)
			s->ev.worker_added(m, &m->pool[r][i]->pub, s->arg);
}

static void model_ready(struct discovery *d, struct disc_model *m)
{
	m->state = MODEL_READY;
	LOG_INFO(LOG_MOD, "model %s added (context %ld)", m->name, m->context_length);
	for (int i = 0; i < d->nsubs; i++)
		announce(&d->subs[i], m);
}

int disc_subscribe(struct discovery *d, const struct disc_events *ev, void *arg)
{
	if (d->nsubs == MAX_SUBS)
		return err_set(-ENOSPC, "discovery: more than %d subscribers", MAX_SUBS);
	struct sub *s = &d->subs[d->nsubs++];
	*s = (struct sub){ *ev, arg };
	for (struct disc_model *m = d->models; m; m = m->next)
		if (m->state == MODEL_READY)
			announce(s, m);
	return 0;
}

/* ---- preparing a model's tokenizer (on the offload thread) ------------------ */

enum { FILE_TOKENIZER, FILE_TOKENIZER_CONFIG, FILE_CHAT_TEMPLATE, NFILES };
static const char *const load_files[NFILES] = { "tokenizer.json", "tokenizer_config.json",
					       "chat_template.jinja" };

struct load_job {
	struct discovery *d;
	struct disc_model *m;		/* referenced */
	char *name;
	uint64_t instance;
	struct card_file files[NFILES];
	int has[NFILES];
	/* results */
	int rc;
	char *error;
	struct tok *tok;
	struct tmpl_chat *chat;
	int chat_rc;			/* -ENOENT: the model has none */
	char *chat_error;
};

static void load_job_free(struct load_job *j)
{
	for (int i = 0; i < NFILES; i++)
		free(j->files[i].prefix);
	tok_free(j->tok);
	tmpl_chat_free(j->chat);
	free(j->chat_error);
	free(j->error);
	free(j->name);
	free(j);
}

/* Fetch the files and compile; no substitute template is ever used. */
static int load_run(struct load_job *j)
{
	struct discovery *d = j->d;
	struct strbuf data[NFILES] = { STRBUF_INIT, STRBUF_INIT, STRBUF_INIT };
	int rc = 0;

	if (!d->thread_store)
		rc = store_open(d->url, NULL, &d->thread_store);
	for (int i = 0; i < NFILES && rc == 0; i++)
		if (j->has[i])
			rc = d->o.fetch(d->thread_store, &j->files[i], &data[i]);
	const char *config = j->has[FILE_TOKENIZER_CONFIG] ? data[FILE_TOKENIZER_CONFIG].buf
							   : NULL;
	const char *jinja = j->has[FILE_CHAT_TEMPLATE] ? data[FILE_CHAT_TEMPLATE].buf : NULL;
	size_t config_len = data[FILE_TOKENIZER_CONFIG].len;
	if (rc == 0)
		rc = tok_load_mem(data[FILE_TOKENIZER].buf, data[FILE_TOKENIZER].len, config,
				  config_len, j->name, &j->tok);
	if (rc == 0) {
		j->chat_rc = -ENOENT;
		if (config || jinja)
			j->chat_rc = tmpl_chat_from_config(config, config_len, jinja,
							   data[FILE_CHAT_TEMPLATE].len, NULL,
							   &j->chat);
		if (j->chat_rc < 0 && j->chat_rc != -ENOENT)
			j->chat_error = xstrdup(err_msg());
	}
	for (int i = 0; i < NFILES; i++)
		sb_release(&data[i]);
	return rc;
}

static void load_work(void *arg)
{
	struct load_job *j = arg;
	j->rc = load_run(j);
	if (j->rc < 0)
		j->error = xstrdup(err_msg());
}

static void load_done(void *arg)
{
	struct load_job *j = arg;
	struct disc_model *m = j->m;

	if (j->d->closing || m->removed)
		goto out;
	if (j->rc < 0) {
		LOG_ERROR(LOG_MOD, "model %s from instance %016" PRIx64 ": %s", m->name,
			  j->instance, j->error ? j->error : "not loaded");
		m->state = MODEL_FAILED;
		goto out;
	}
	m->tok = j->tok;
	m->chat = j->chat;
	m->chat_error = j->chat_error;
	j->tok = NULL;
	j->chat = NULL;
	j->chat_error = NULL;
	if (j->chat_rc == -ENOENT)
		LOG_INFO(LOG_MOD, "model %s has no chat template: its chat requests are refused",
			 m->name);
	else if (m->chat_error)
		LOG_ERROR(LOG_MOD, "model %s: its chat template does not compile (%s): its chat "
			  "requests fail with 500", m->name, m->chat_error);
	model_ready(j->d, m);
out:
	disc_model_put(m);
	load_job_free(j);
}

/* Prepare m from its card m->card, off the loop. */
static void load_start(struct discovery *d, struct disc_model *m)
{
	struct load_job *j = xcalloc(1, sizeof(*j));
	j->d = d;
	j->m = m;
	m->refs++;
	j->name = xstrdup(m->name);
	j->instance = m->card.instance_id;
	j->rc = -ECANCELED;
	for (int i = 0; i < NFILES; i++) {
		const struct card_file *f = card_file_find(&m->card, load_files[i]);
		if (!f)
			continue;
		j->files[i] = *f;
		j->files[i].prefix = xstrdup(f->prefix);
		j->has[i] = 1;
	}
	m->state = MODEL_LOADING;
	if (!j->has[FILE_TOKENIZER]) {
		/* Nothing to fetch: fail now, as the thread would. */
		j->rc = err_set(-EINVAL, "model card of %s has no tokenizer.json", m->name);
		j->error = xstrdup(err_msg());
		load_done(j);
		return;
	}
	offload_submit(d->off, load_work, load_done, j);
}

/* ---- cards ------------------------------------------------------------------ */

static struct instance *find_inst(const struct discovery *d, uint64_t id, const char *path)
{
	for (size_t i = 0; i < d->ninsts; i++)
		if (d->insts[i].id == id && (!path || !strcmp(d->insts[i].path, path)))
			return &d->insts[i];
	return NULL;
}

const char *disc_address(const struct discovery *d, uint64_t id)
{
	const struct instance *in = find_inst(d, id, NULL);
	return in ? in->address : NULL;
}

static void pool_add(struct disc_model *m, int r, struct worker *w)
{
	m->pool[r] = xrealloc(m->pool[r], (m->npool[r] + 1) * sizeof(*m->pool[r]));
	m->pool[r][m->npool[r]++] = w;
}

static void pool_remove(struct disc_model *m, int r, size_t i)
{
	m->pool[r][i] = m->pool[r][--m->npool[r]];
}

/* The worker of card key, its pool (a role or REFUSED) and place there. */
static struct worker *find_worker(struct disc_model *m, const char *key, int *pool,
				  size_t *at)
{
	for (int r = 0; r < NPOOLS; r++)
		for (size_t i = 0; i < m->npool[r]; i++)
			if (!strcmp(m->pool[r][i]->key, key)) {
				*pool = r;
				*at = i;
				return m->pool[r][i];
			}
	return NULL;
}

int disc_kv_layouts_match(const char *a, long ba, const char *b, long bb)
{
	return a && b && !strcmp(a, b) && ba == bb;
}

/* A decode worker whose KV layout prefill worker p does not share, or
 * NULL when p can hand its blocks to every decode worker of m. */
static const struct worker *layout_conflict(const struct disc_model *m, const struct worker *p)
{
	for (size_t i = 0; i < m->npool[DISC_ROLE_DECODE]; i++) {
		const struct worker *w = m->pool[DISC_ROLE_DECODE][i];
		if (w->kv_layout && !disc_kv_layouts_match(p->kv_layout, p->pub.kv_block_size,
							   w->kv_layout, w->pub.kv_block_size))
			return w;
	}
	return NULL;
}

/* Is prefill worker p refused for its layout?  Logged once per worker. */
static int refused(const struct disc_model *m, struct worker *p)
{
	const struct worker *w = layout_conflict(m, p);
	if (w && !p->warned)
		LOG_WARN(LOG_MOD, "model %s: prefill worker %016" PRIx64 " (%s) and decode worker "
			 "%016" PRIx64 " (%s) do not share a KV layout: not disaggregating to it",
			 m->name, p->pub.id, p->kv_layout ? p->kv_layout : "no KV layout",
			 w->pub.id, w->kv_layout);
	p->warned |= w != NULL;
	return w != NULL;
}

/* Put w in the pool of its role (REFUSED for a prefill worker of another
 * layout) and tell the subscribers of the others. */
static void place(struct discovery *d, struct disc_model *m, struct worker *w)
{
	if (w->pub.role == DISC_ROLE_PREFILL && refused(m, w)) {
		pool_add(m, REFUSED, w);
		return;
	}
	pool_add(m, (int)w->pub.role, w);
	emit_worker(d, m, w, 1);
}

/* After the decode pool changed: move prefill workers between the
 * prefill pool and REFUSED as their layouts agree with it or not. */
static void pools_check(struct discovery *d, struct disc_model *m)
{
	for (size_t i = 0; i < m->npool[DISC_ROLE_PREFILL]; i++) {
		struct worker *p = m->pool[DISC_ROLE_PREFILL][i];
		if (!refused(m, p))
			continue;
		emit_worker(d, m, p, 0);
		pool_remove(m, DISC_ROLE_PREFILL, i--);
		pool_add(m, REFUSED, p);
	}
	for (size_t i = 0; i < m->npool[REFUSED]; i++) {
		struct worker *p = m->pool[REFUSED][i];
		if (layout_conflict(m, p))
			continue;
		LOG_INFO(LOG_MOD, "model %s: prefill worker %016" PRIx64 " now shares the decode "
			 "workers' KV layout", m->name, p->pub.id);
		pool_remove(m, REFUSED, i--);
		place(d, m, p);
	}
}

/* w takes what instance record in says (role, KV layout). */
static void worker_take_instance(struct worker *w, const struct instance *in)
{
	w->pub.role = in ? in->role : DISC_ROLE_AGG;
	free(w->kv_layout);
	w->kv_layout = in && in->kv_layout ? xstrdup(in->kv_layout) : NULL;
	w->pub.kv_layout = w->kv_layout;
	w->pub.kv_block_size = in ? in->kv_block_size : 0;
}

static void card_put(struct discovery *d, const struct store_kv *kv)
{
	struct model_card c;
	if (card_parse(kv->key, kv->value, kv->len, &c) < 0) {
		LOG_WARN(LOG_MOD, "%s", err_msg());
		return;
	}
	struct disc_model *m = find_model(d, c.name);
	int created = !m;
	if (created) {
		m = xcalloc(1, sizeof(*m));
		m->name = xstrdup(c.name);
		m->refs = 1;
		m->created = (long)time(NULL);
		m->context_length = c.context_length;
		m->next = d->models;
		d->models = m;
	} else {
		int r;
		size_t at;
		if (c.context_length < m->context_length)
			m->context_length = c.context_length;
		if (find_worker(m, kv->key, &r, &at)) {
			card_clear(&c);
			return;
		}
		const struct card_file *a = card_file_find(&m->card, "tokenizer.json");
		const struct card_file *b = card_file_find(&c, "tokenizer.json");
		if (m->state != MODEL_FAILED && a && b && a->xxh3 != b->xxh3)
			LOG_WARN(LOG_MOD, "instance %016" PRIx64 " serves %s with a different "
				 "tokenizer; using the first one's", c.instance_id, c.name);
	}

	struct worker *w = xcalloc(1, sizeof(*w));
	struct strbuf path = STRBUF_INIT;
	sb_addf(&path, "%s/%s/%s", c.ns, c.component, c.endpoint);
	const struct instance *in = find_inst(d, c.instance_id, path.buf);
	w->key = xstrdup(kv->key);
	w->path = sb_detach(&path, NULL);
	w->card = c;
	w->pub = (struct disc_worker){ .id = c.instance_id, .path = w->path, .card_key = w->key,
				       .card = &w->card };
	worker_take_instance(w, in);
	LOG_INFO(LOG_MOD, "model %s: worker %016" PRIx64 " added (%s, %zu)", m->name, w->pub.id,
		 disc_role_name(w->pub.role), model_nworkers(m) + 1);
	place(d, m, w);
	pools_check(d, m);

	/* A new model, or a failed one trying again with this card's files. */
	if (created || m->state == MODEL_FAILED) {
		card_clear(&m->card);
		if (card_parse(kv->key, kv->value, kv->len, &m->card) < 0)
			return;	/* parsed once already */
		if (d->o.flags & DISC_LOAD_TOKENIZER)
			load_start(d, m);
		else
			model_ready(d, m);
	}
}

static void card_del(struct discovery *d, const char *key)
{
	for (struct disc_model **pm = &d->models; *pm; pm = &(*pm)->next) {
		struct disc_model *m = *pm;
		int r;
		size_t at;
		struct worker *w = find_worker(m, key, &r, &at);
		if (!w)
			continue;
		LOG_INFO(LOG_MOD, "model %s: worker %016" PRIx64 " removed", m->name, w->pub.id);
		if (r != REFUSED)
			emit_worker(d, m, w, 0);
		pool_remove(m, r, at);
		worker_free(w);
		pools_check(d, m);
		if (!model_nworkers(m)) {
			LOG_INFO(LOG_MOD, "model %s removed (no workers)", m->name);
			*pm = m->next;
			m->removed = 1;
			if (m->state == MODEL_READY)
				emit_model(d, m, 0);
			disc_model_put(m);
		}
		return;
	}
}

static void on_card(const struct store_event *ev, void *arg)
{
	struct discovery *d = arg;
	if (ev->type == STORE_EV_PUT)
		card_put(d, &ev->kv);
	else if (ev->type == STORE_EV_DELETE)
		card_del(d, ev->kv.key);
	else
		d->cards_synced = 1;
}

int disc_settled(const struct discovery *d)
{
	if (!d->cards_synced || !d->insts_synced)
		return 0;
	for (const struct disc_model *m = d->models; m; m = m->next)
		if (m->state == MODEL_LOADING)
			return 0;
	return 1;
}

/* ---- instances -------------------------------------------------------------- */

/* What a record's metadata says of the worker: its role and KV layout
 * (anything unreadable: agg, none). */
static void metadata_read(const char *metadata, struct instance *in)
{
	cJSON *meta = cJSON_Parse(metadata);
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(meta, "role");
	const cJSON *kv = cJSON_GetObjectItemCaseSensitive(meta, "kv");
	const cJSON *fp = cJSON_GetObjectItemCaseSensitive(kv, "layout");
	const cJSON *bs = cJSON_GetObjectItemCaseSensitive(kv, "block_size");
	in->role = DISC_ROLE_AGG;
	if (cJSON_IsString(r) && disc_role_parse(r->valuestring, &in->role) < 0)
		in->role = DISC_ROLE_AGG;
	free(in->kv_layout);
	in->kv_layout = cJSON_IsString(fp) ? xstrdup(fp->valuestring) : NULL;
	in->kv_block_size = cJSON_IsNumber(bs) && bs->valuedouble > 0 &&
			    bs->valuedouble < 1e9 ? (long)bs->valuedouble : 0;
	cJSON_Delete(meta);
}

static int same_str(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

/* The instance record of a worker says its role and layout: move it to
 * its pool (subscribers see it leave and come back). */
static void instance_update(struct discovery *d, const struct instance *in)
{
	for (struct disc_model *m = d->models; m; m = m->next) {
		int changed = 0;
		for (int r = 0; r < NPOOLS; r++)
			for (size_t i = 0; i < m->npool[r]; i++) {
				struct worker *w = m->pool[r][i];
				if (w->pub.id != in->id || strcmp(w->path, in->path) ||
				    (w->pub.role == in->role && same_str(w->kv_layout, in->kv_layout) &&
				     w->pub.kv_block_size == in->kv_block_size))
					continue;
				if (r != REFUSED)
					emit_worker(d, m, w, 0);
				pool_remove(m, r, i);
				worker_take_instance(w, in);
				place(d, m, w);
				i--;	/* the last one took its place */
				changed = 1;
			}
		if (changed)
			pools_check(d, m);
	}
}

static void on_instance(const struct store_event *ev, void *arg)
{
	struct discovery *d = arg;
	if (ev->type == STORE_EV_PUT) {
		struct endpoint_instance in;
		if (endpoint_instance_parse(ev->kv.key, ev->kv.value, ev->kv.len, &in) < 0)
			return;
		struct instance *old = NULL;
		for (size_t i = 0; i < d->ninsts && !old; i++)
			if (!strcmp(d->insts[i].key, ev->kv.key))
				old = &d->insts[i];
		if (!old) {
			d->insts = xrealloc(d->insts, (d->ninsts + 1) * sizeof(*d->insts));
			old = &d->insts[d->ninsts++];
			*old = (struct instance){ xstrdup(ev->kv.key), xstrdup(in.path), NULL, in.id,
						  DISC_ROLE_AGG, NULL, 0 };
		}
		free(old->address);
		old->address = xstrdup(in.address);
		metadata_read(in.metadata, old);
		endpoint_instance_clear(&in);
		instance_update(d, old);
	} else if (ev->type == STORE_EV_DELETE) {
		for (size_t i = 0; i < d->ninsts; i++)
			if (!strcmp(d->insts[i].key, ev->kv.key)) {
				free(d->insts[i].key);
				free(d->insts[i].path);
				free(d->insts[i].address);
				free(d->insts[i].kv_layout);
				d->insts[i] = d->insts[--d->ninsts];
				break;
			}
	} else {
		d->insts_synced = 1;
	}
}

/* ---- the registry ------------------------------------------------------------- */

int disc_new(struct event_base *base, struct store *store, const struct disc_opts *o,
	     struct discovery **out)
{
	struct discovery *d = xcalloc(1, sizeof(*d));
	int rc = 0;
	d->store = store;
	d->url = xstrdup(store_url(store));
	if (o)
		d->o = *o;
	if (!d->o.fetch)
		d->o.fetch = card_fetch_file;
	if (d->o.flags & DISC_LOAD_TOKENIZER)
		rc = offload_new(base, &d->off);
	/* Instances first, so that cards find their workers' roles. */
	if (rc == 0)
		rc = store_watch(store, ENDPOINT_KEY_ROOT, on_instance, d, &d->inst_watch);
	if (rc == 0)
		rc = store_watch(store, CARD_KEY_ROOT, on_card, d, &d->card_watch);
	if (rc < 0) {
		disc_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void disc_free(struct discovery *d)
{
	if (!d)
		return;
	d->closing = 1;
	if (d->card_watch)
		store_unwatch(d->card_watch);
	if (d->inst_watch)
		store_unwatch(d->inst_watch);
	offload_free(d->off);		/* the thread is gone: its store is ours */
	if (d->thread_store)
		store_close(d->thread_store);
	while (d->models) {
		struct disc_model *m = d->models;
		d->models = m->next;
		m->removed = 1;
		disc_model_put(m);
	}
	for (size_t i = 0; i < d->ninsts; i++) {
		free(d->insts[i].key);
		free(d->insts[i].path);
		free(d->insts[i].address);
		free(d->insts[i].kv_layout);
	}
	free(d->insts);
	free(d->url);
	free(d);
}
