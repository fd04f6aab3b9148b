/*
 * tls.c - per-thread state of the encoder: the word caches and scratch
 * buffers.  Keeping them per thread is what lets a loaded tokenizer stay
 * immutable and be shared by any number of threads without locks.  The
 * state is freed when its thread exits (a pthread key destructor).
 */
#include "core/tok/tok_int.h"
#include "core/util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NCACHES 2	/* tokenizers a thread alternates between, cached at once */
#define SCRATCH_KEEP (1u << 20)	/* larger buffers are freed after use */

struct tok_tls {
	struct tok_cache *cache[NCACHES];
	unsigned next;		/* round-robin eviction */
	struct tok_scratch scratch;
};

static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void scratch_release(struct tok_scratch *s)
{
	sb_release(&s->clean);
	sb_release(&s->arena);
	free(s->segs.v);
	free(s->a.v);
	free(s->b.v);
	tok_ids_release(&s->ids);
	memset(&s->segs, 0, sizeof(s->segs));
	memset(&s->a, 0, sizeof(s->a));
	memset(&s->b, 0, sizeof(s->b));
}

static void tls_destroy(void *p)
{
	struct tok_tls *t = p;
	for (int i = 0; i < NCACHES; i++)
		free(t->cache[i]);
	scratch_release(&t->scratch);
	if (t->scratch.md)
		pcre2_match_data_free(t->scratch.md);
	free(t);
}

static void tls_init(void)
{
	if (pthread_key_create(&tls_key, tls_destroy))
		abort();
}

static struct tok_tls *tls(void)
{
	pthread_once(&tls_once, tls_init);
	struct tok_tls *t = pthread_getspecific(tls_key);
	if (!t) {
		t = xcalloc(1, sizeof(*t));
		sb_init(&t->scratch.clean, 0);
		sb_init(&t->scratch.arena, 0);
		t->scratch.md = pcre2_match_data_create(1, NULL);
		if (!t->scratch.md)
			abort();
		pthread_setspecific(tls_key, t);
	}
	return t;
}

struct tok_cache *tok_cache_get(const struct tok *tok)
{
	struct tok_tls *t = tls();
	for (int i = 0; i < NCACHES; i++)
		if (t->cache[i] && t->cache[i]->uid == tok->uid)
			return t->cache[i];
	unsigned k = t->next++ % NCACHES;
	if (!t->cache[k])
		t->cache[k] = xmalloc(sizeof(struct tok_cache));
	for (size_t i = 0; i < TOK_CACHE_SLOTS; i++)
		t->cache[k]->slot[i].klen = 0;
	t->cache[k]->uid = tok->uid;
	return t->cache[k];
}

struct tok_scratch *tok_scratch_get(void)
{
	struct tok_tls *t = tls();
	if (t->scratch.busy)
		return NULL;
	t->scratch.busy = 1;
	return &t->scratch;
}

void tok_scratch_put(struct tok_scratch *s)
{
	if (s->clean.alloc > SCRATCH_KEEP || s->arena.alloc > SCRATCH_KEEP ||
	    s->a.alloc * sizeof(struct piece) > SCRATCH_KEEP ||
	    s->ids.alloc * sizeof(int32_t) > SCRATCH_KEEP)
		scratch_release(s);
	s->busy = 0;
}
