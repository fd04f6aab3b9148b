/*
 * hash.c - the tokenizer's open-addressing tables (see hash.h).
 */
#include "core/tok/hash.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

uint64_t tok_hash(const void *s, size_t len)
{
	return XXH3_64bits(s, len);
}

static uint32_t capacity_for(size_t n)
{
	size_t cap = 16;
	while (cap * 5 / 8 < n + 1)
		cap *= 2;
	return (uint32_t)cap;
}

static void tok_strmap_alloc(struct strmap *m, uint32_t cap)
{
	m->v = xmalloc((size_t)cap * sizeof(*m->v));
	for (uint32_t i = 0; i < cap; i++)
		m->v[i].len = UINT32_MAX;
	m->mask = cap - 1;
	m->n = 0;
}

void tok_strmap_init(struct strmap *m, size_t hint)
{
	tok_strmap_alloc(m, capacity_for(hint));
}

void tok_strmap_free(struct strmap *m)
{
	free(m->v);
	memset(m, 0, sizeof(*m));
}

static void tok_strmap_insert(struct strmap *m, const char *pool, struct strmap_ent e)
{
	for (uint32_t i = e.hash & m->mask;; i = (i + 1) & m->mask) {
		struct strmap_ent *s = &m->v[i];
		if (s->len == UINT32_MAX) {
			*s = e;
			m->n++;
			return;
		}
		if (s->hash == e.hash && s->len == e.len &&
		    !memcmp(pool + s->off, pool + e.off, e.len)) {
			s->val = e.val;
			return;
		}
	}
}

void tok_strmap_put(struct strmap *m, const char *pool, uint32_t off, uint32_t len,
		int32_t val)
{
	if ((size_t)(m->n + 1) * 8 > (size_t)(m->mask + 1) * 5) {
		struct strmap old = *m;
		tok_strmap_alloc(m, (old.mask + 1) * 2);
		for (uint32_t i = 0; i <= old.mask; i++)
			if (old.v[i].len != UINT32_MAX)
				tok_strmap_insert(m, pool, old.v[i]);
		free(old.v);
	}
	struct strmap_ent e = {
		.off = off, .len = len, .val = val,
		.hash = (uint32_t)tok_hash(pool + off, len),
	};
	tok_strmap_insert(m, pool, e);
}

int32_t tok_strmap_get(const struct strmap *m, const char *pool, const char *s,
		   size_t len)
{
	if (!m->v || len >= UINT32_MAX)
		return -1;
	uint32_t h = (uint32_t)tok_hash(s, len);
	for (uint32_t i = h & m->mask;; i = (i + 1) & m->mask) {
		const struct strmap_ent *e = &m->v[i];
		if (e->len == UINT32_MAX)
			return -1;
		if (e->hash == h && e->len == len && !memcmp(pool + e->off, s, len))
			return e->val;
	}
}

static void tok_pairmap_alloc(struct pairmap *m, uint32_t cap)
{
	m->v = xmalloc((size_t)cap * sizeof(*m->v));
	for (uint32_t i = 0; i < cap; i++)
		m->v[i].key = UINT64_MAX;
	m->mask = cap - 1;
	m->n = 0;
}

void tok_pairmap_init(struct pairmap *m, size_t hint)
{
	tok_pairmap_alloc(m, capacity_for(hint));
}

void tok_pairmap_free(struct pairmap *m)
{
	free(m->v);
	memset(m, 0, sizeof(*m));
}

static void tok_pairmap_insert(struct pairmap *m, struct pairmap_ent e)
{
	for (uint32_t i = tok_pairmap_slot(e.key, m->mask);; i = (i + 1) & m->mask) {
		struct pairmap_ent *s = &m->v[i];
		if (s->key == UINT64_MAX) {
			*s = e;
			m->n++;
			return;
		}
		if (s->key == e.key) {
			*s = e;
			return;
		}
	}
}

void tok_pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
	if ((size_t)(m->n + 1) * 8 > (size_t)(m->mask + 1) * 5) {
		struct pairmap old = *m;
		tok_pairmap_alloc(m, (old.mask + 1) * 2);
		for (uint32_t i = 0; i <= old.mask; i++)
			if (old.v[i].key != UINT64_MAX)
				tok_pairmap_insert(m, old.v[i]);
		free(old.v);
	}
	tok_pairmap_insert(m, (struct pairmap_ent){ (uint64_t)a << 32 | b, rank, id });
}
