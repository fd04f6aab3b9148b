/*
 * models.c - the frontend's use of the discovery registry (see
 * internal.h): a struct fe_model for each ready model of the registry
 * (which fetches the model's files and prepares its tokenizer and chat
 * template off the loop), its workers fed to the embedded router's
 * pools, and picking a worker of a pool round-robin or at random,
 * passing over those marked down after a failed call and unhealthy ones
 * (core/discovery/health.h).
 */
#include "core/frontend/internal.h"
#include "core/discovery/registry.h"
#include "core/log.h"
#include "core/parse/parse.h"
#include "core/proto/card.h"
#include "core/tmpl/tmpl.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define DOWN_MS 5000

static struct fe_model *find_model(struct frontend *f, const struct disc_model *d)
{
	for (struct fe_model *m = f->models; m; m = m->next)
		if (m->d == d)
			return m;
	return NULL;
}

void fe_model_put(struct frontend *f, struct fe_model *m)
{
	(void)f;
	if (!m || --m->refs)
		return;
	fe_route_model_free(m);
	disc_model_put(m->d);
	free(m);
}

struct fe_model *fe_model_get(struct frontend *f, const char *name)
{
	for (struct fe_model *m = f->models; m; m = m->next)
		if (!strcmp(m->name, name)) {
			m->refs++;
			return m;
		}
	return NULL;
}

/* ---- down marks ------------------------------------------------------------- */

/* 1: marked down after a failed call (for DOWN_MS); 2: unhealthy (until
 * a health check is answered). */
static int is_down(const struct frontend *f, uint64_t id, uint64_t now)
{
	if (worker_health_unhealthy(f->health, id))
		return 2;
	for (size_t i = 0; i < f->ndowns; i++)
		if (f->downs[i].id == id)
			return f->downs[i].until_ms > now;
	return 0;
}

void fe_instance_mark_down(struct frontend *f, uint64_t id)
{
	uint64_t now = mono_ms();
	struct fe_down *slot = NULL;
	for (size_t i = 0; i < f->ndowns && !slot; i++)
		if (f->downs[i].id == id || f->downs[i].until_ms <= now)
			slot = &f->downs[i];
	if (!slot) {
		f->downs = xrealloc(f->downs, (f->ndowns + 1) * sizeof(*f->downs));
		slot = &f->downs[f->ndowns++];
	}
	*slot = (struct fe_down){ id, now + DOWN_MS };
}

void fe_instance_clear_down(struct frontend *f, uint64_t id)
{
	for (size_t i = 0; i < f->ndowns; i++)
		if (f->downs[i].id == id)
			f->downs[i].until_ms = 0;
}

const char *fe_instance_address(struct frontend *f, uint64_t id)
{
	return is_down(f, id, mono_ms()) ? NULL : disc_address(f->disc, id);
}

/* ---- picking ---------------------------------------------------------------- */

size_t fe_model_nworkers(const struct fe_model *m, enum fe_pool pool)
{
	if (pool == FE_POOL_PREFILL)
		return disc_model_nworkers(m->d, DISC_ROLE_PREFILL);
	return disc_model_nworkers(m->d, DISC_ROLE_AGG) +
	       disc_model_nworkers(m->d, DISC_ROLE_DECODE);
}

/* Worker i of a pool (the decode pool: the agg workers, then the decode
 * workers). */
static const struct disc_worker *pool_worker(const struct fe_model *m, enum fe_pool pool,
					     size_t i)
{
	if (pool == FE_POOL_PREFILL)
		return disc_model_worker(m->d, DISC_ROLE_PREFILL, i);
	size_t nagg = disc_model_nworkers(m->d, DISC_ROLE_AGG);
	return i < nagg ? disc_model_worker(m->d, DISC_ROLE_AGG, i)
			: disc_model_worker(m->d, DISC_ROLE_DECODE, i - nagg);
}

size_t fe_model_routable(struct frontend *f, const struct fe_model *m, enum disc_role role)
{
	size_t n = 0, all = disc_model_nworkers(m->d, role);
	for (size_t i = 0; i < all; i++)
		if (disc_address(f->disc, disc_model_worker(m->d, role, i)->id))
			n++;
	return n;
}

size_t fe_model_nusable(struct frontend *f, const struct fe_model *m, enum fe_pool pool)
{
	size_t n = 0, all = fe_model_nworkers(m, pool);
	for (size_t i = 0; i < all; i++)
		if (fe_instance_address(f, pool_worker(m, pool, i)->id))
			n++;
	return n;
}

const char *fe_model_pick(struct frontend *f, struct fe_model *m, enum fe_pool pool,
			  uint64_t exclude, uint64_t *id, const char **path)
{
	uint64_t now = mono_ms();
	size_t n = fe_model_nworkers(m, pool);
	size_t *rr = pool == FE_POOL_PREFILL ? &m->rr_prefill : &m->rr;
	if (!n)
		return NULL;
	/* Two passes: healthy workers first, then ones marked down after a
	 * failed call (never unhealthy ones). */
	for (int pass = 0; pass < 2; pass++) {
		size_t start = f->o.router == FRONTEND_ROUTE_RANDOM ? (size_t)random() % n
								    : (*rr)++ % n;
		for (size_t k = 0; k < n; k++) {
			const struct disc_worker *w = pool_worker(m, pool, (start + k) % n);
			const char *addr = disc_address(f->disc, w->id);
			if (!addr || w->id == exclude)
				continue;
			int down = is_down(f, w->id, now);
			if (down == 2 || (pass == 0 && down))
				continue;
			*id = w->id;
			*path = w->path;
			return addr;
		}
	}
	return NULL;
}

int fe_model_usable(struct frontend *f, const struct fe_model *m, enum fe_pool pool,
		    uint64_t id, const char **addr, const char **path)
{
	for (size_t i = 0, n = fe_model_nworkers(m, pool); i < n; i++) {
		const struct disc_worker *w = pool_worker(m, pool, i);
		if (w->id != id)
			continue;
		*addr = fe_instance_address(f, id);
		*path = w->path;
		return *addr != NULL;
	}
	return 0;
}

/* ---- output parsers --------------------------------------------------------- */

/* What "auto" renders to see the model's formats (parse.h): a tool call
 * and its answer, and a generation prompt with thinking switched on.
 * The id is nine letters, as Mistral's templates require. */
#define PROBE_TOOLS "[{\"type\":\"function\",\"function\":{\"name\":\"" PARSE_PROBE_NAME "\"," \
	"\"description\":\"d\",\"parameters\":{\"type\":\"object\",\"properties\":{\"" \
	PARSE_PROBE_ARG "\":{\"type\":\"string\"}}}}}]"
static const char probe_tool[] =
	"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\","
	"\"content\":\"\",\"tool_calls\":[{\"id\":\"abcdefghi\",\"type\":\"function\","
	"\"function\":{\"name\":\"" PARSE_PROBE_NAME "\",\"arguments\":{\"" PARSE_PROBE_ARG
	"\":\"" PARSE_PROBE_VALUE "\"}}}]},{\"role\":\"tool\",\"tool_call_id\":\"abcdefghi\","
	"\"content\":\"r\"}],\"tools\":" PROBE_TOOLS ",\"add_generation_prompt\":true}";
static const char probe_gen[] =
	"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"add_generation_prompt\":true,"
	"\"chat_template_kwargs\":{\"thinking\":true,\"enable_thinking\":false}}";

void fe_detect_parsers(const struct tmpl_chat *chat, int *tool, int *rsn)
{
	struct strbuf t = STRBUF_INIT, g = STRBUF_INIT;
	if (tmpl_chat_render_request(chat, probe_tool, strlen(probe_tool), NULL, &t) < 0)
		sb_reset(&t);
	if (tmpl_chat_render_request(chat, probe_gen, strlen(probe_gen), NULL, &g) < 0)
		sb_reset(&g);
	*tool = parse_tool_detect(t.buf);
	sb_add(&g, t.buf, t.len);
	*rsn = parse_reasoning_detect(g.buf);
	sb_release(&t);
	sb_release(&g);
}

/* m's parsers: those named by the options, else by its card (its first
 * worker's), or with "auto" those of its chat template (none when it has
 * none). */
static void model_parsers(struct frontend *f, struct fe_model *m)
{
	const struct model_card *card = disc_model_card(m->d);
	const char *tp = f->o.tool_call_parser, *rp = f->o.reasoning_parser;
	if (!tp || !*tp)
		tp = card->tool_call_parser;
	if (!rp || !*rp)
		rp = card->reasoning_parser;
	int tauto = tp && !strcmp(tp, "auto"), rauto = rp && !strcmp(rp, "auto");
	int t = tp && *tp && !tauto ? parse_tool_by_name(tp) : -1;
	int r = rp && *rp && !rauto ? parse_reasoning_by_name(rp) : -1;
	m->tool = t < 0 ? PARSE_TOOL_NONE : t;
	m->rsn = r < 0 ? PARSE_RSN_NONE : r;
	if ((tauto || rauto) && m->chat) {
		fe_detect_parsers(m->chat, &t, &r);
		if (tauto)
			m->tool = t;
		if (rauto)
			m->rsn = r;
	}
	if (m->tool || m->rsn)
		LOG_INFO("frontend", "model '%s': tool-call parser %s, reasoning parser %s", m->name,
			 parse_tool_name(m->tool), parse_reasoning_name(m->rsn));
}

/* ---- registry events -------------------------------------------------------- */

static void on_model_added(struct disc_model *d, void *arg)
{
	struct frontend *f = arg;
	struct fe_model *m = xcalloc(1, sizeof(*m));
	disc_model_ref(d);
	m->d = d;
	m->name = disc_model_name(d);
	m->refs = 1;
	m->tok = disc_model_tok(d);
	m->chat = disc_model_chat(d, &m->chat_error);
	model_parsers(f, m);
	m->context_length = disc_model_context_length(d);
	m->created = disc_model_created(d);
	m->embedding_dim = disc_model_card(d)->embedding_dim;
	m->embedding_truncatable = disc_model_card(d)->embedding_truncatable;
	fe_route_model_init(f, m, disc_model_card(d)->kv_block_size);
	m->next = f->models;
	f->models = m;
}

static void on_model_removed(struct disc_model *d, void *arg)
{
	struct frontend *f = arg;
	for (struct fe_model **pm = &f->models; *pm; pm = &(*pm)->next) {
		struct fe_model *m = *pm;
		if (m->d == d) {
			*pm = m->next;
			fe_model_put(f, m);
			return;
		}
	}
}

static void on_worker(struct disc_model *d, const struct disc_worker *w, int added, void *arg)
{
	struct fe_model *m = find_model(arg, d);
	if (!m)
		return;
	m->context_length = disc_model_context_length(d);
	if (added)
		fe_route_add_worker(m, w->id, w->path, w->card->kv_block_size,
				    w->role == DISC_ROLE_PREFILL ? FE_POOL_PREFILL : FE_POOL_DECODE);
	else
		fe_route_remove_worker(m, w->id);
}

static void on_worker_added(struct disc_model *d, const struct disc_worker *w, void *arg)
{
	on_worker(d, w, 1, arg);
}

static void on_worker_removed(struct disc_model *d, const struct disc_worker *w, void *arg)
{
	on_worker(d, w, 0, arg);
}

int fe_models_start(struct frontend *f)
{
	static const struct disc_events ev = { on_model_added, on_model_removed,
					       on_worker_added, on_worker_removed };
	const struct disc_opts o = { .flags = DISC_LOAD_TOKENIZER };
	int rc = disc_new(f->base, f->store, &o, &f->disc);
	if (rc == 0)
		rc = disc_subscribe(f->disc, &ev, f);
	return rc;
}

void fe_models_stop(struct frontend *f)
{
	disc_free(f->disc);
	f->disc = NULL;
	while (f->models) {
		struct fe_model *m = f->models;
		f->models = m->next;
		fe_model_put(f, m);
	}
	free(f->downs);
	f->downs = NULL;
	f->ndowns = 0;
}
