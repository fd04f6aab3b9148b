/*
 * grammar.c - compiling by kind, the shared compile cache, reference
 * counts, and vocabularies from tokenizers (grammar.h).
 */
#include "core/grammar/grammar_int.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
	[GRAMMAR_GBNF] = "grammar", [GRAMMAR_REGEX] = "regex", [GRAMMAR_CHOICE] = "choice",
	[GRAMMAR_JSON_SCHEMA] = "json", [GRAMMAR_JSON_OBJECT] = "json_object",
	[GRAMMAR_TOOL_CALL] = "tool_call", [GRAMMAR_TOOL_CALLS] = "tool_calls",
};

int grammar_kind_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
		if (!strcmp(name, kind_names[i]))
			return (int)i;
	return -1;
}

const char *grammar_kind_name(enum grammar_kind k)
{
	return kind_names[k];
}

/* choice: a JSON array of strings, one alternative each. */
static int choice_compile(struct gbuild *b, const char *spec, size_t len, uint32_t *root)
{
	cJSON *a = cJSON_ParseWithLength(spec, len);
	int rc = 0;

	if (!cJSON_IsArray(a) || !cJSON_GetArraySize(a)) {
		rc = err_set(-EINVAL, "choice: expected a non-empty array of strings");
		goto out;
	}
	*root = gb_rule_new(b);
	const cJSON *it;
	cJSON_ArrayForEach(it, a) {
		if (!cJSON_IsString(it)) {
			rc = err_set(-EINVAL, "choice: expected a non-empty array of strings");
			goto out;
		}
		struct gseq s = { 0 };
		gb_literal(b, &s, it->valuestring, strlen(it->valuestring));
		gb_add_alt(b, *root, &s);
	}
out:
	cJSON_Delete(a);
	return rc;
}

int grammar_compile(enum grammar_kind kind, const char *spec, size_t len, unsigned flags,
		    struct grammar **out)
{
	struct gbuild b;
	uint32_t root = 0;
	int rc;

	if (len > GRAMMAR_MAX_SPEC)
		return err_set(-E2BIG, "%s: the specification is larger than %u bytes",
			       kind_names[kind], GRAMMAR_MAX_SPEC);
	gb_init(&b);
	switch (kind) {
	case GRAMMAR_GBNF:
		rc = gbnf_parse(&b, spec, len, &root);
		break;
	case GRAMMAR_REGEX:
		rc = regex_parse(&b, spec, len, &root);
		break;
	case GRAMMAR_CHOICE:
		rc = choice_compile(&b, spec, len, &root);
		break;
	case GRAMMAR_JSON_SCHEMA:
		rc = schema_compile(&b, spec, len, flags, 0, &root);
		break;
	case GRAMMAR_JSON_OBJECT:
		rc = schema_compile(&b, "{\"type\":\"object\"}", 17, flags, 0, &root);
		break;
	case GRAMMAR_TOOL_CALL:
	case GRAMMAR_TOOL_CALLS:
		rc = schema_compile(&b, spec, len, flags, kind == GRAMMAR_TOOL_CALL ? 1 : -1,
				    &root);
		break;
	default:
		rc = err_set(-EINVAL, "unknown grammar kind");
	}
	if (rc >= 0)
		rc = gb_finish(&b, root, out);
	gb_release(&b);
	return rc;
}

struct grammar *grammar_ref(struct grammar *g)
{
	atomic_fetch_add(&g->refs, 1);
	return g;
}

void grammar_unref(struct grammar *g)
{
	if (!g || atomic_fetch_sub(&g->refs, 1) != 1)
		return;
	grammar_cache_release(g);
	pthread_mutex_destroy(&g->mu);
	free(g->el);
	free(g->alt);
	free(g->rule_alt);
	free(g->sets);
	free(g);
}

/* The compile cache: the last CACHE_SIZE distinct specs, most recent
 * first.  Each entry holds a reference. */
#define CACHE_SIZE 64
static struct cache_ent {
	enum grammar_kind kind;
	unsigned flags;
	char *spec;
	size_t len;
	struct grammar *g;
} cache[CACHE_SIZE];
static int n_cache;
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

int grammar_get(enum grammar_kind kind, const char *spec, size_t len, unsigned flags,
		struct grammar **out)
{
	pthread_mutex_lock(&cache_mu);
	for (int i = 0; i < n_cache; i++) {
		struct cache_ent e = cache[i];
		if (e.kind == kind && e.flags == flags && e.len == len && !memcmp(e.spec, spec, len)) {
			memmove(cache + 1, cache, (size_t)i * sizeof(*cache));
			cache[0] = e;
			*out = grammar_ref(e.g);
			pthread_mutex_unlock(&cache_mu);
			return 0;
		}
	}
	pthread_mutex_unlock(&cache_mu);
	struct grammar *g;
	int rc = grammar_compile(kind, spec, len, flags, &g);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&cache_mu);
	if (n_cache == CACHE_SIZE) {
		free(cache[CACHE_SIZE - 1].spec);
		grammar_unref(cache[CACHE_SIZE - 1].g);
		n_cache--;
	}
	memmove(cache + 1, cache, (size_t)n_cache * sizeof(*cache));
	cache[0] = (struct cache_ent){ kind, flags, xmalloc(len + 1), len, grammar_ref(g) };
	memcpy(cache[0].spec, spec, len);
	n_cache++;
	pthread_mutex_unlock(&cache_mu);
	*out = g;
	return 0;
}

struct gvocab *gvocab_from_tok(const struct tok *tok, int vocab_size, const int32_t *eos,
			       int n_eos)
{
	struct strbuf all = STRBUF_INIT, one = STRBUF_INIT;
	size_t *off = xmalloc((size_t)(vocab_size ? vocab_size : 1) * sizeof(size_t));
	uint32_t *lens = xcalloc((size_t)(vocab_size ? vocab_size : 1), sizeof(uint32_t));
	const char **bytes = xcalloc((size_t)(vocab_size ? vocab_size : 1), sizeof(char *));

	for (int i = 0; i < vocab_size; i++) {
		off[i] = all.len;
		if (tok_token_bytes(tok, i, &one) == 0) {
			lens[i] = (uint32_t)one.len;
			sb_add(&all, one.buf, one.len);
		}
	}
	for (int i = 0; i < vocab_size; i++)
		bytes[i] = lens[i] ? all.buf + off[i] : NULL;
	struct gvocab *v = gvocab_new(vocab_size, bytes, lens, eos, n_eos);
	sb_release(&all);
	sb_release(&one);
	free(off);
	free(lens);
	free(bytes);
	return v;
}
