/*
 * arena.c - the template engine's allocator and byte buffers (see
 * internal.h).  Small objects are bump-allocated from 64 KiB chunks; large
 * blocks get their own malloc() so that a growing buffer can be resized in
 * place.  Every byte is counted against the arena's cap.
 */
#include "core/tmpl/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_SIZE	(64u << 10)
#define BIG_THRESHOLD	(8u << 10)

struct chunk { struct chunk *next; size_t size; };

struct arena_big {
	struct arena_big *prev, *next;
	size_t size;
	size_t fill;	/* blocks from ar_extend(): bytes given out; also keeps
			 * the payload 16-byte aligned */
};

void ar_init(struct arena *a, size_t cap, void (*oom)(void *, size_t), void *ctx)
{
	memset(a, 0, sizeof(*a));
	a->cap = cap;
	a->oom = oom;
	a->oom_ctx = ctx;
}

void ar_free_all(struct arena *a)
{
	struct chunk *c = a->chunks;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	struct arena_big *b = a->big;
	while (b) {
		struct arena_big *next = b->next;
		free(b);
		b = next;
	}
	a->chunks = NULL;
	a->big = NULL;
	a->cur = a->end = NULL;
	a->used = 0;
	memset(a->ext, 0, sizeof(a->ext));
}

static void *take(struct arena *a, size_t n)
{
	if (n > SIZE_MAX / 2 || (a->cap && a->used + n > a->cap)) {
		a->oom(a->oom_ctx, n);
		abort();	/* oom does not return */
	}
	void *p = malloc(n);
	if (!p) {
		a->oom(a->oom_ctx, n);
		abort();
	}
	a->used += n;
	return p;
}

static void *big_alloc(struct arena *a, size_t n)
{
	struct arena_big *b = take(a, sizeof(*b) + n);
	b->size = n;
	b->fill = 0;
	b->prev = NULL;
	b->next = a->big;
	if (a->big)
		a->big->prev = b;
	a->big = b;
	return b + 1;
}

void *ar_alloc_raw(struct arena *a, size_t n)
{
	n = (n + 7) & ~(size_t)7;
	if (n == 0)
		n = 8;
	a->work += n;
	if (n >= BIG_THRESHOLD)
		return big_alloc(a, n);
	if ((size_t)(a->end - a->cur) < n) {
		struct chunk *c = take(a, CHUNK_SIZE);
		c->next = a->chunks;
		c->size = CHUNK_SIZE;
		a->chunks = c;
		a->cur = (char *)(c + 1);
		a->end = (char *)c + CHUNK_SIZE;
	}
	void *p = a->cur;
	a->cur += n;
	return p;
}

void *ar_alloc(struct arena *a, size_t n)
{
	void *p = ar_alloc_raw(a, n);
	memset(p, 0, n);
	return p;
}

static bool is_big(struct arena *a, void *p, size_t n)
{
	(void)a;
	return p && ((n + 7) & ~(size_t)7) >= BIG_THRESHOLD;
}

void *ar_realloc(struct arena *a, void *old, size_t oldn, size_t newn)
{
	if (newn <= oldn && old)
		return old;
	if (is_big(a, old, oldn) && newn >= BIG_THRESHOLD) {
		struct arena_big *b = (struct arena_big *)old - 1;
		size_t grow = newn - b->size;
		/* realloc() may move the block: it can no longer grow in place */
		for (unsigned i = 0; i < sizeof(a->ext) / sizeof(a->ext[0]); i++)
			if (a->ext[i] == b)
				a->ext[i] = NULL;
		if (newn > SIZE_MAX / 2 || (a->cap && a->used + grow > a->cap)) {
			a->oom(a->oom_ctx, newn);
			abort();
		}
		struct arena_big *prev = b->prev, *next = b->next;
		struct arena_big *nb = realloc(b, sizeof(*b) + newn);
		if (!nb) {
			a->oom(a->oom_ctx, newn);
			abort();
		}
		a->used += grow;
		a->work += grow;
		nb->size = newn;
		if (prev)
			prev->next = nb;
		else
			a->big = nb;
		if (next)
			next->prev = nb;
		return nb + 1;
	}
	void *p = ar_alloc_raw(a, newn);
	if (old && oldn)
		memcpy(p, old, oldn);
	return p;
}

char *ar_strndup(struct arena *a, const char *s, size_t n)
{
	char *p = ar_alloc_raw(a, n + 1);
	if (n)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void *ar_extend(struct arena *a, const void *p, size_t n, size_t extra)
{
	const char *s = p;
	if (extra > SIZE_MAX / 4 || n > SIZE_MAX / 4) {
		a->oom(a->oom_ctx, SIZE_MAX / 2);
		abort();
	}
	size_t need = n + extra;
	bool grow = false;
	for (unsigned i = 0; n && i < sizeof(a->ext) / sizeof(a->ext[0]); i++) {
		struct arena_big *b = a->ext[i];
		if (!b)
			continue;
		const char *data = (const char *)(b + 1);
		if (s < data || s + n != data + b->fill)
			continue;
		size_t off = (size_t)(s - data);
		if (off + need + 1 <= b->size) {
			b->fill = off + need;
			a->work += extra;
			return (void *)s;
		}
		grow = true;
		break;
	}
	char *q;
	if (need + 1 < BIG_THRESHOLD) {
		q = ar_alloc_raw(a, need + 1);
	} else {
		size_t cap = ((grow ? 2 * need : need) + 1 + 7) & ~(size_t)7;
		q = big_alloc(a, cap);
		a->work += cap;
		struct arena_big *b = (struct arena_big *)q - 1;
		b->fill = need;
		a->ext[a->ext_next++ % (sizeof(a->ext) / sizeof(a->ext[0]))] = b;
	}
	if (n)
		memcpy(q, s, n);
	return q;
}

/* ---- abuf ------------------------------------------------------------- */

void ab_init(struct abuf *b, struct arena *ar, size_t limit)
{
	b->ar = ar;
	b->p = NULL;
	b->n = b->cap = 0;
	b->limit = limit;
}

static void ab_reserve(struct abuf *b, size_t extra)
{
	size_t need = b->n + extra;
	if (need < b->n || (b->limit && need > b->limit)) {
		b->ar->oom(b->ar->oom_ctx, SIZE_MAX);
		abort();
	}
	if (need + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap * 2 : 64;
	while (cap < need + 1)
		cap *= 2;
	b->p = ar_realloc(b->ar, b->p, b->cap, cap);
	b->cap = cap;
}

void ab_add(struct abuf *b, const char *s, size_t n)
{
	if (!n)
		return;
	ab_reserve(b, n);
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = '\0';
}

void ab_adds(struct abuf *b, const char *s)
{
	ab_add(b, s, strlen(s));
}

void ab_addch(struct abuf *b, char c)
{
	ab_reserve(b, 1);
	b->p[b->n++] = c;
	b->p[b->n] = '\0';
}

void ab_addf(struct abuf *b, const char *fmt, ...)
{
	char tmp[256];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof(tmp)) {
		ab_add(b, tmp, (size_t)n);
		return;
	}
	ab_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->n += (size_t)n;
}

void ab_add_utf8(struct abuf *b, uint32_t cp)
{
	char tmp[4];
	ab_add(b, tmp, utf8_encode(tmp, cp));
}
