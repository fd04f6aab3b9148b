/*
 * models.c - the frontend's model registry (see internal.h).
 *
 * Two store watches: v1/models/ (cards: which instance serves which
 * served name, and the model's files) and v1/instances/ (instance id ->
 * request-plane address).  A model exists while at least one card names
 * it; a card is routable while its instance record exists.  The first
 * card of a name brings the model's files from the store (once per
 * tokenizer digest) and loads its tokenizer and chat template.
 */
#include "core/frontend/internal.h"
#include "core/discovery/card_fetch.h"
#include "core/err.h"
#include "core/log.h"
#include "core/tmpl/tmpl.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/endpoint.h"
#include "store/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG_MOD "frontend"
#define DOWN_MS 5000

static void model_free(struct fe_model *m)
{
	tok_free(m->tok);
	tmpl_chat_free(m->chat);
	free(m->chat_error);
	for (size_t i = 0; i < m->nworkers; i++) {
		free(m->workers[i].card_key);
		free(m->workers[i].path);
	}
	free(m->workers);
	fe_route_model_free(m);
	free(m->name);
	free(m);
}

void fe_model_put(struct frontend *f, struct fe_model *m)
{
	(void)f;
	if (m && --m->refs == 0)
		model_free(m);
}

static struct fe_model *find_model(struct frontend *f, const char *name)
{
	for (struct fe_model *m = f->models; m; m = m->next)
		if (!strcmp(m->name, name))
			return m;
	return NULL;
}

struct fe_model *fe_model_get(struct frontend *f, const char *name)
{
	struct fe_model *m = find_model(f, name);
	if (!m || !m->ready)
		return NULL;
	m->refs++;
	return m;
}

static struct fe_instance *find_inst(struct frontend *f, uint64_t id)
{
	for (size_t i = 0; i < f->ninsts; i++)
		if (f->insts[i].id == id)
			return &f->insts[i];
	return NULL;
}

void fe_instance_mark_down(struct frontend *f, uint64_t id)
{
	struct fe_instance *in = find_inst(f, id);
	if (in)
		in->down_until_ms = mono_ms() + DOWN_MS;
}

size_t fe_model_routable(struct frontend *f, const struct fe_model *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->nworkers; i++)
		if (find_inst(f, m->workers[i].id))
			n++;
	return n;
}

const char *fe_model_pick(struct frontend *f, struct fe_model *m, uint64_t exclude,
			  uint64_t *id, const char **path)
{
	uint64_t now = mono_ms();
	size_t n = m->nworkers;
	if (!n)
		return NULL;
	/* Two passes: healthy workers first, then ones marked down. */
	for (int pass = 0; pass < 2; pass++) {
		size_t start = f->o.router == FRONTEND_ROUTE_RANDOM ? (size_t)random() % n
								    : m->rr++ % n;
		for (size_t k = 0; k < n; k++) {
			struct fe_worker *w = &m->workers[(start + k) % n];
			struct fe_instance *in = find_inst(f, w->id);
			if (!in || w->id == exclude)
				continue;
			if (pass == 0 && in->down_until_ms > now)
				continue;
			*id = w->id;
			*path = w->path;
			return in->address;
		}
	}
	return NULL;
}

const char *fe_instance_address(struct frontend *f, uint64_t id)
{
	struct fe_instance *in = find_inst(f, id);
	return in && in->down_until_ms <= mono_ms() ? in->address : NULL;
}

int fe_model_usable(struct frontend *f, const struct fe_model *m, uint64_t id,
		    const char **addr, const char **path)
{
	for (size_t i = 0; i < m->nworkers; i++) {
		if (m->workers[i].id != id)
			continue;
		*addr = fe_instance_address(f, id);
		*path = m->workers[i].path;
		return *addr != NULL;
	}
	return 0;
}

/* Compile the model's chat template.  No substitute is ever used: a
 * model without one is served for completions only, and one whose
 * template does not compile keeps the error to answer its chat requests
 * with (a broken model file is the operator's to fix, so it is logged as
 * an error too). */
static void model_load_chat(struct fe_model *m, const char *name, const char *config,
			    size_t config_len, const char *jinja, size_t jinja_len)
{
	int rc = -ENOENT;
	if (config || jinja)
		rc = tmpl_chat_from_config(config, config_len, jinja, jinja_len, NULL, &m->chat);
	if (rc == -ENOENT) {
		LOG_INFO(LOG_MOD, "model %s has no chat template: its chat requests are refused",
			 name);
	} else if (rc < 0) {
		m->chat_error = xstrdup(err_msg());
		LOG_ERROR(LOG_MOD, "model %s: its chat template does not compile (%s): its chat "
			  "requests fail with 500", name, m->chat_error);
	}
}

/* Fetch and load the tokenizer and chat template of a card. */
static int model_load_files(struct frontend *f, struct fe_model *m, const struct model_card *c)
{
	const struct card_file *tj = card_file_find(c, "tokenizer.json");
	const struct card_file *tc = card_file_find(c, "tokenizer_config.json");
	const struct card_file *jj = card_file_find(c, "chat_template.jinja");
	struct strbuf tjs = STRBUF_INIT, tcs = STRBUF_INIT, jjs = STRBUF_INIT;
	int rc = 0;

	if (!tj)
		return err_set(-EINVAL, "model card of %s has no tokenizer.json", c->name);
	rc = card_fetch_file(f->store, tj, &tjs);
	if (!rc && tc)
		rc = card_fetch_file(f->store, tc, &tcs);
	if (!rc && jj)
		rc = card_fetch_file(f->store, jj, &jjs);
	if (!rc)
		rc = tok_load_mem(tjs.buf, tjs.len, tc ? tcs.buf : NULL, tcs.len, c->name, &m->tok);
	if (!rc)
		model_load_chat(m, c->name, tc ? tcs.buf : NULL, tcs.len, jj ? jjs.buf : NULL,
				jjs.len);
	if (!rc)
		m->tok_digest = tj->xxh3;
	sb_release(&tjs);
	sb_release(&tcs);
	sb_release(&jjs);
	return rc;
}

static void card_put(struct frontend *f, const struct store_kv *kv)
{
	struct model_card c;
	if (card_parse(kv->key, kv->value, kv->len, &c) < 0) {
		LOG_WARN(LOG_MOD, "%s", err_msg());
		return;
	}
	struct fe_model *m = find_model(f, c.name);
	if (!m) {
		m = xcalloc(1, sizeof(*m));
		m->name = xstrdup(c.name);
		m->refs = 1;
		m->created = (long)time(NULL);
		m->context_length = c.context_length;
		fe_route_model_init(f, m, c.kv_block_size);
		if (model_load_files(f, m, &c) < 0) {
			LOG_ERROR(LOG_MOD, "model %s from instance %016llx: %s", c.name,
				  (unsigned long long)c.instance_id, err_msg());
			model_free(m);
			card_clear(&c);
			return;
		}
		m->ready = 1;
		m->next = f->models;
		f->models = m;
		LOG_INFO(LOG_MOD, "model %s added (context %ld)", m->name, m->context_length);
	} else if (card_file_find(&c, "tokenizer.json") &&
		   card_file_find(&c, "tokenizer.json")->xxh3 != m->tok_digest) {
		LOG_WARN(LOG_MOD, "instance %016llx serves %s with a different tokenizer; "
			 "using the first one's", (unsigned long long)c.instance_id, c.name);
	}
	if (c.context_length < m->context_length)
		m->context_length = c.context_length;
	for (size_t i = 0; i < m->nworkers; i++)
		if (!strcmp(m->workers[i].card_key, kv->key)) {
			card_clear(&c);
			return;
		}
	m->workers = xrealloc(m->workers, (m->nworkers + 1) * sizeof(*m->workers));
	struct fe_worker *w = &m->workers[m->nworkers++];
	w->id = c.instance_id;
	w->card_key = xstrdup(kv->key);
	size_t n = strlen(c.ns) + strlen(c.component) + strlen(c.endpoint) + 3;
	w->path = xmalloc(n);
	snprintf(w->path, n, "%s/%s/%s", c.ns, c.component, c.endpoint);
	fe_route_add_worker(m, w->id, w->path, c.kv_block_size);
	LOG_INFO(LOG_MOD, "model %s: worker %016llx added (%zu)", m->name,
		 (unsigned long long)w->id, m->nworkers);
	card_clear(&c);
}

static void card_del(struct frontend *f, const char *key)
{
	for (struct fe_model **pm = &f->models; *pm; pm = &(*pm)->next) {
		struct fe_model *m = *pm;
		for (size_t i = 0; i < m->nworkers; i++) {
			if (strcmp(m->workers[i].card_key, key))
				continue;
			LOG_INFO(LOG_MOD, "model %s: worker %016llx removed", m->name,
				 (unsigned long long)m->workers[i].id);
			fe_route_remove_worker(m, m->workers[i].id);
			free(m->workers[i].card_key);
			free(m->workers[i].path);
			m->workers[i] = m->workers[--m->nworkers];
			if (!m->nworkers) {
				LOG_INFO(LOG_MOD, "model %s removed (no workers)", m->name);
				*pm = m->next;
				m->removed = 1;
				fe_model_put(f, m);
			}
			return;
		}
	}
}

static void on_card(const struct store_event *ev, void *arg)
{
	struct frontend *f = arg;
	if (ev->type == STORE_EV_PUT)
		card_put(f, &ev->kv);
	else if (ev->type == STORE_EV_DELETE)
		card_del(f, ev->kv.key);
}

static void on_instance(const struct store_event *ev, void *arg)
{
	struct frontend *f = arg;
	if (ev->type == STORE_EV_PUT) {
		struct endpoint_instance in;
		if (endpoint_instance_parse(ev->kv.key, ev->kv.value, ev->kv.len, &in) < 0)
			return;
		struct fe_instance *old = find_inst(f, in.id);
		if (old) {
			free(old->address);
			old->address = xstrdup(in.address);
			old->down_until_ms = 0;
		} else {
			f->insts = xrealloc(f->insts, (f->ninsts + 1) * sizeof(*f->insts));
			f->insts[f->ninsts++] = (struct fe_instance){
				in.id, xstrdup(in.address), xstrdup(ev->kv.key), 0 };
		}
		endpoint_instance_clear(&in);
	} else if (ev->type == STORE_EV_DELETE) {
		for (size_t i = 0; i < f->ninsts; i++)
			if (!strcmp(f->insts[i].key, ev->kv.key)) {
				free(f->insts[i].address);
				free(f->insts[i].key);
				f->insts[i] = f->insts[--f->ninsts];
				break;
			}
	}
}

int fe_models_start(struct frontend *f)
{
	int rc = store_watch(f->store, ENDPOINT_KEY_ROOT, on_instance, f, &f->inst_watch);
	if (rc == 0)
		rc = store_watch(f->store, CARD_KEY_ROOT, on_card, f, &f->card_watch);
	return rc;
}

void fe_models_stop(struct frontend *f)
{
	if (f->card_watch)
		store_unwatch(f->card_watch);
	if (f->inst_watch)
		store_unwatch(f->inst_watch);
	f->card_watch = f->inst_watch = NULL;
	while (f->models) {
		struct fe_model *m = f->models;
		f->models = m->next;
		fe_model_put(f, m);
	}
	for (size_t i = 0; i < f->ninsts; i++) {
		free(f->insts[i].address);
		free(f->insts[i].key);
	}
	free(f->insts);
	f->insts = NULL;
	f->ninsts = 0;
}
