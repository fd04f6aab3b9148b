/*
 * u64map.h - a small open-addressing map from 64-bit keys (any value,
 * e.g. block hashes) to 32-bit values, for the router's indexes:
 * linear probing, backward-shift deletion (no tombstones), load <= 3/4.
 * Zero-initialise a struct u64map to start; u64map_release() frees it.
 * Not thread-safe.
 */
#ifndef DYN_U64MAP_H
#define DYN_U64MAP_H

#include "core/util.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t u64map_mix(uint64_t x)
{
	x ^= x >> 31;
	x *= 0x7fb5d329728ea185ull;
	x ^= x >> 27;
	x *= 0x81dadef4bc2f4fb5ull;
	x ^= x >> 33;
	return x;
}

/* ---- u64 -> u32 map (key 0 kept aside) ----------------------------- */

struct u64map {
	uint64_t *keys;		/* 0 = empty */
	uint32_t *vals;
	size_t cap, n;		/* cap: power of two or 0 */
	int has_zero;
	uint32_t zero_val;
};

static inline void u64map_release(struct u64map *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static inline size_t u64map_size(const struct u64map *m)
{
	return m->n + (size_t)m->has_zero;
}

static inline const uint32_t *u64map_get(const struct u64map *m, uint64_t k)
{
	if (!k)
		return m->has_zero ? &m->zero_val : NULL;
	if (!m->cap)
		return NULL;
	size_t mask = m->cap - 1, i = u64map_mix(k) & mask;
	while (m->keys[i]) {
		if (m->keys[i] == k)
			return &m->vals[i];
		i = (i + 1) & mask;
	}
	return NULL;
}

static inline void u64map_put_raw(struct u64map *m, uint64_t k, uint32_t v)
{
	size_t mask = m->cap - 1, i = u64map_mix(k) & mask;
	while (m->keys[i]) {
		if (m->keys[i] == k) {
			m->vals[i] = v;
			return;
		}
		i = (i + 1) & mask;
	}
	m->keys[i] = k;
	m->vals[i] = v;
	m->n++;
}

/* Make room for extra more keys without rehashing. */
static inline void u64map_reserve(struct u64map *m, size_t extra)
{
	if ((m->n + extra) * 4 <= m->cap * 3)
		return;
	{
		struct u64map g = { 0 };
		g.cap = m->cap ? m->cap * 2 : 16;
		while ((m->n + extra) * 4 > g.cap * 3)
			g.cap *= 2;
		g.keys = xcalloc(g.cap, sizeof(*g.keys));
		g.vals = xmalloc(g.cap * sizeof(*g.vals));
		for (size_t i = 0; i < m->cap; i++)
			if (m->keys[i])
				u64map_put_raw(&g, m->keys[i], m->vals[i]);
		g.has_zero = m->has_zero;
		g.zero_val = m->zero_val;
		free(m->keys);
		free(m->vals);
		*m = g;
	}
}

static inline void u64map_put(struct u64map *m, uint64_t k, uint32_t v)
{
	if (!k) {
		m->has_zero = 1;
		m->zero_val = v;
		return;
	}
	u64map_reserve(m, 1);
	u64map_put_raw(m, k, v);
}

/* Hint that k is about to be looked up (mixed = u64map_mix(k)). */
static inline void u64map_prefetch(const struct u64map *m, uint64_t mixed)
{
	if (m->cap)
		__builtin_prefetch(&m->keys[mixed & (m->cap - 1)]);
}

/* Returns 1 when k was there. */
static inline int u64map_del(struct u64map *m, uint64_t k)
{
	if (!k) {
		int was = m->has_zero;
		m->has_zero = 0;
		return was;
	}
	if (!m->cap)
		return 0;
	size_t mask = m->cap - 1, i = u64map_mix(k) & mask;
	while (m->keys[i] && m->keys[i] != k)
		i = (i + 1) & mask;
	if (!m->keys[i])
		return 0;
	/* Backward-shift deletion: no tombstones. */
	size_t j = i;
	for (;;) {
		j = (j + 1) & mask;
		if (!m->keys[j])
			break;
		size_t h = u64map_mix(m->keys[j]) & mask;
		/* Move j into the hole at i unless its home lies in (i, j]. */
		if (i <= j ? (h <= i || h > j) : (h <= i && h > j)) {
			m->keys[i] = m->keys[j];
			m->vals[i] = m->vals[j];
			i = j;
		}
	}
	m->keys[i] = 0;
	m->n--;
	return 1;
}

#endif
