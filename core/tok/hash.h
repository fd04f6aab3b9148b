/*
 * hash.h - open-addressing hash tables for the tokenizer (private to core/tok).
 *
 * strmap: byte string -> int32.  Keys are not copied: an entry records the
 * key's offset and length in a caller-owned pool (the vocabulary's string
 * pool), which must not move while the table is in use.
 *
 * pairmap: (uint32 a, uint32 b) -> (uint32 rank, uint32 id), for BPE
 * merges.
 *
 * Linear probing over a power-of-two table kept at most 5/8 full.  Both
 * are filled once at load time and then read-only: lookups are safe from
 * any number of threads; inserts are not.
 */
#ifndef DYN_TOK_HASH_H
#define DYN_TOK_HASH_H

#include <stddef.h>
#include <stdint.h>

struct strmap_ent {
	uint32_t off;	/* key offset in the pool */
	uint32_t len;	/* key length; UINT32_MAX marks an empty slot */
	uint32_t hash;	/* low 32 bits of the key's hash */
	int32_t val;
};

struct strmap {
	struct strmap_ent *v;
	uint32_t mask;	/* capacity - 1 */
	uint32_t n;
};

/* hint: expected number of keys. */
void tok_strmap_init(struct strmap *m, size_t hint);
void tok_strmap_free(struct strmap *m);
/* Insert or overwrite (the last value given for a key wins). */
void tok_strmap_put(struct strmap *m, const char *pool, uint32_t off, uint32_t len,
		int32_t val);
/* The value for s[0..len), or -1. */
int32_t tok_strmap_get(const struct strmap *m, const char *pool, const char *s,
		   size_t len);

/* The string hash used by the tables (also for caches). */
uint64_t tok_hash(const void *s, size_t len);

struct pairmap_ent {
	uint64_t key;	/* a << 32 | b; UINT64_MAX marks an empty slot */
	uint32_t rank, id;
};

struct pairmap {
	struct pairmap_ent *v;
	uint32_t mask, n;
};

void tok_pairmap_init(struct pairmap *m, size_t hint);
void tok_pairmap_free(struct pairmap *m);
/* Insert or overwrite. */
void tok_pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);

static inline uint32_t tok_pairmap_slot(uint64_t key, uint32_t mask)
{
	return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

/* The entry for (a, b), or NULL. */
static inline const struct pairmap_ent *tok_pairmap_get(const struct pairmap *m,
						     uint32_t a, uint32_t b)
{
	uint64_t key = (uint64_t)a << 32 | b;
	if (!m->v)
		return NULL;
	for (uint32_t i = tok_pairmap_slot(key, m->mask);; i = (i + 1) & m->mask) {
		const struct pairmap_ent *e = &m->v[i];
		if (e->key == key)
			return e;
		if (e->key == UINT64_MAX)
			return NULL;
	}
}

#endif
