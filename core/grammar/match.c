/*
 * match.c - the matcher: stacks of rule frames advanced byte by byte,
 * token masks from walks over the byte-sorted vocabulary, and their cache
 * by stack (grammar.h).
 */
#include "core/grammar/grammar_int.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define ROOT_PARENT (-1)	/* popping it: the text is a sentence */
#define SENT_PARENT (-2)	/* popping it: leaving a truncated cache key */

struct gvocab {
	int n_vocab;
	uint32_t n_tok;		/* tokens that can be allowed, sorted by bytes */
	int32_t *ids;		/* [n_tok] */
	uint32_t *off, *len;	/* [n_tok] into pool */
	char *pool;
	int32_t *sorted_of;	/* [n_vocab] index into ids, or -1 */
	uint32_t *lcp;		/* [n_tok] bytes token i shares with token i - 1 */
	uint32_t max_len;
	int32_t *eos;
	int n_eos;
};

struct gnode {
	uint32_t pos;		/* the next element of this frame */
	int32_t parent;		/* node, ROOT_PARENT or SENT_PARENT */
};

/* Frames, hash-consed (equal stacks have equal ids), and the scratch of
 * one closure. */
struct gctx {
	const struct grammar *g;
	struct gnode *nodes;
	uint32_t n_nodes, cap_nodes;
	int32_t *ht;			/* node ids, -1 empty */
	uint32_t ht_mask;
	uint64_t *vkey;			/* visited (pos, parent) of this closure */
	uint32_t *vstamp, stamp, vmask, vcount;
	struct gnode *work;
	uint32_t n_work, cap_work;
	/* memo of advance(): (node, byte) or (state id, byte) -> state */
	struct memo { uint64_t key; uint32_t off, n; uint8_t accept, sent; } *memo;
	uint32_t memo_mask, n_memo;
	int32_t *pool;
	uint32_t n_pool, cap_pool;
	/* states of several frames, interned (their frames in pool) */
	struct sint { uint32_t hash, off, n, id; } *sint;
	uint32_t sint_mask, n_sint;
};

/* A state: the frames whose next element is a byte set. */
struct gstate {
	int32_t *v;
	uint32_t n, cap;
	uint8_t accept, sent;
};

#define KEY_DEPTH 32	/* frames of a stack that key the mask cache */
#define CACHE_MAX 2048	/* cached stacks per grammar (each up to vocab/8 bytes) */

/* The tokens a stack allows, keyed by its frames' positions (top first,
 * at most KEY_DEPTH; truncated: the stack goes deeper, and the tokens that
 * pop past the key are "uncertain"). */
struct gposmask {
	uint32_t key[KEY_DEPTH];
	uint32_t n_key;
	int truncated;
	uint32_t hash;
	uint32_t n_acc;
	int32_t *acc;		/* ids, when few */
	uint32_t *acc_bits;	/* else a bitmap of ids */
	uint32_t n_unc;
	uint32_t *unc;		/* sorted indexes, ascending */
};

struct gmatch {
	struct grammar *g;
	const struct gvocab *v;
	struct gctx c;
	struct gstate cur, tmp;
	struct gstate *depth;	/* walk scratch, max_len + 1 */
	uint8_t *psent;
	uint32_t *unc;
	uint32_t n_unc, cap_unc;
	/* masks walked off this thread that the grammar's cache could not
	 * keep (full, or another vocabulary's): used by the next mask */
	struct gposmask **spare;
	uint32_t n_spare;
	uint64_t walks;		/* vocabulary walks gmatch_mask made itself */
	int ended;		/* eos accepted */
};

/* ---- frames and closures ------------------------------------------------- */

static uint64_t node_key(uint32_t pos, int32_t parent)
{
	return (uint64_t)pos << 32 | (uint32_t)parent;
}

static uint32_t hash64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (uint32_t)k;
}

static void ctx_init(struct gctx *c, const struct grammar *g)
{
	memset(c, 0, sizeof(*c));
	c->g = g;
	c->ht_mask = 1023;
	c->ht = xmalloc(1024 * sizeof(int32_t));
	memset(c->ht, 0xff, 1024 * sizeof(int32_t));
	c->vmask = 255;
	c->vkey = xcalloc(256, sizeof(uint64_t));
	c->vstamp = xcalloc(256, sizeof(uint32_t));
}

static void ctx_release(struct gctx *c)
{
	free(c->sint);
	free(c->memo);
	free(c->pool);
	free(c->nodes);
	free(c->ht);
	free(c->vkey);
	free(c->vstamp);
	free(c->work);
	memset(c, 0, sizeof(*c));
}

static int32_t intern(struct gctx *c, uint32_t pos, int32_t parent)
{
	uint64_t k = node_key(pos, parent);
	uint32_t h = hash64(k) & c->ht_mask;
	for (;; h = (h + 1) & c->ht_mask) {
		int32_t id = c->ht[h];
		if (id < 0)
			break;
		if (c->nodes[id].pos == pos && c->nodes[id].parent == parent)
			return id;
	}
	if (c->n_nodes == c->cap_nodes) {
		c->cap_nodes = c->cap_nodes ? 2 * c->cap_nodes : 256;
		c->nodes = xrealloc(c->nodes, c->cap_nodes * sizeof(*c->nodes));
	}
	int32_t id = (int32_t)c->n_nodes++;
	c->nodes[id] = (struct gnode){ pos, parent };
	c->ht[h] = id;
	if (c->n_nodes * 2 > c->ht_mask) {	/* grow and rehash */
		c->ht_mask = c->ht_mask * 2 + 1;
		c->ht = xrealloc(c->ht, (size_t)(c->ht_mask + 1) * sizeof(int32_t));
		memset(c->ht, 0xff, (size_t)(c->ht_mask + 1) * sizeof(int32_t));
		for (uint32_t i = 0; i < c->n_nodes; i++) {
			uint32_t j = hash64(node_key(c->nodes[i].pos, c->nodes[i].parent)) & c->ht_mask;
			while (c->ht[j] >= 0)
				j = (j + 1) & c->ht_mask;
			c->ht[j] = (int32_t)i;
		}
	}
	return id;
}

/* First visit of (pos, parent) in this closure? */
static int visit(struct gctx *c, uint32_t pos, int32_t parent)
{
	uint64_t k = node_key(pos, parent);
	if (c->vcount * 2 >= c->vmask) {
		uint32_t old = c->vmask + 1;
		uint64_t *ok = c->vkey;
		uint32_t *os = c->vstamp;
		c->vmask = old * 2 - 1;
		c->vkey = xcalloc(old * 2, sizeof(uint64_t));
		c->vstamp = xcalloc(old * 2, sizeof(uint32_t));
		for (uint32_t i = 0; i < old; i++)
			if (os[i] == c->stamp) {
				uint32_t j = hash64(ok[i]) & c->vmask;
				while (c->vstamp[j] == c->stamp)
					j = (j + 1) & c->vmask;
				c->vkey[j] = ok[i];
				c->vstamp[j] = c->stamp;
			}
		free(ok);
		free(os);
	}
	uint32_t h = hash64(k) & c->vmask;
	for (; c->vstamp[h] == c->stamp; h = (h + 1) & c->vmask)
		if (c->vkey[h] == k)
			return 0;
	c->vkey[h] = k;
	c->vstamp[h] = c->stamp;
	c->vcount++;
	return 1;
}

static void begin(struct gctx *c, struct gstate *out)
{
	if (++c->stamp == 0) {	/* wrapped: forget every old mark */
		memset(c->vstamp, 0, (size_t)(c->vmask + 1) * sizeof(uint32_t));
		c->stamp = 1;
	}
	c->vcount = 0;
	c->n_work = 0;
	out->n = 0;
	out->accept = out->sent = 0;
}

static void work_push(struct gctx *c, uint32_t pos, int32_t parent)
{
	if (c->n_work == c->cap_work) {
		c->cap_work = c->cap_work ? 2 * c->cap_work : 64;
		c->work = xrealloc(c->work, c->cap_work * sizeof(*c->work));
	}
	c->work[c->n_work++] = (struct gnode){ pos, parent };
}

static void state_push(struct gstate *s, int32_t id)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->v = xrealloc(s->v, s->cap * sizeof(int32_t));
	}
	s->v[s->n++] = id;
}

/* Expand the work list until every frame waits on a byte set. */
static void closure(struct gctx *c, struct gstate *out)
{
	const struct grammar *g = c->g;

	while (c->n_work) {
		struct gnode w = c->work[--c->n_work];
		if (!visit(c, w.pos, w.parent))
			continue;
		const struct gelem *e = &g->el[w.pos];
		if (e->type == GE_BYTES) {
			state_push(out, intern(c, w.pos, w.parent));
		} else if (e->type == GE_END) {
			if (w.parent == ROOT_PARENT)
				out->accept = 1;
			else if (w.parent == SENT_PARENT)
				out->sent = 1;
			else
				work_push(c, c->nodes[w.parent].pos, c->nodes[w.parent].parent);
		} else {
			uint32_t cont = w.pos + 1;
			int32_t np = g->el[cont].type == GE_END ? w.parent : intern(c, cont, w.parent);
			for (uint32_t a = g->rule_alt[e->arg]; a < g->rule_alt[e->arg + 1]; a++)
				work_push(c, g->alt[a], np);
		}
	}
}

static struct memo *memo_slot(struct gctx *c, uint64_t key)
{
	uint32_t h = hash64(key) & c->memo_mask;
	while (c->memo[h].key && c->memo[h].key != key)
		h = (h + 1) & c->memo_mask;
	return &c->memo[h];
}

static void pool_reserve(struct gctx *c, uint32_t n)
{
	if (c->n_pool + n > c->cap_pool) {
		c->cap_pool = (c->n_pool + n) * 2;
		c->pool = xrealloc(c->pool, c->cap_pool * sizeof(int32_t));
	}
}

static struct sint *sint_slot(struct gctx *c, uint32_t hash, const int32_t *v, uint32_t n)
{
	uint32_t h = hash64(hash) & c->sint_mask;
	for (;; h = (h + 1) & c->sint_mask) {
		struct sint *e = &c->sint[h];
		if (!e->n || (e->hash == hash && e->n == n &&
			      !memcmp(c->pool + e->off, v, n * sizeof(int32_t))))
			return e;
	}
}

/* The id of state s (several frames): states met before keep theirs,
 * so their steps are memoised like those of one frame. */
static uint32_t state_id(struct gctx *c, const struct gstate *s)
{
	uint32_t hash = 2166136261u;
	for (uint32_t i = 0; i < s->n; i++)
		hash = (hash ^ (uint32_t)s->v[i]) * 16777619u;
	if (c->n_sint * 2 >= c->sint_mask) {	/* grow and rehash */
		struct sint *old = c->sint;
		uint32_t n = old ? c->sint_mask + 1 : 0;
		c->sint_mask = n ? 2 * n - 1 : 1023;
		c->sint = xcalloc((size_t)c->sint_mask + 1, sizeof(*c->sint));
		for (uint32_t i = 0; i < n; i++)
			if (old[i].n)
				*sint_slot(c, old[i].hash, c->pool + old[i].off, old[i].n) = old[i];
		free(old);
	}
	struct sint *e = sint_slot(c, hash, s->v, s->n);
	if (!e->n) {
		pool_reserve(c, s->n);
		*e = (struct sint){ hash, c->n_pool, s->n, c->n_sint++ };
		memcpy(c->pool + c->n_pool, s->v, s->n * sizeof(int32_t));
		c->n_pool += s->n;
	}
	return e->id;
}

static void memo_store(struct gctx *c, uint64_t key, const struct gstate *out)
{
	if (c->n_memo * 2 >= c->memo_mask) {	/* grow and rehash */
		struct memo *old = c->memo;
		uint32_t n = old ? c->memo_mask + 1 : 0;
		c->memo_mask = n ? 2 * n - 1 : 4095;
		c->memo = xcalloc((size_t)c->memo_mask + 1, sizeof(*c->memo));
		for (uint32_t i = 0; i < n; i++)
			if (old[i].key)
				*memo_slot(c, old[i].key) = old[i];
		free(old);
	}
	pool_reserve(c, out->n);
	struct memo *m = memo_slot(c, key);
	*m = (struct memo){ key, c->n_pool, out->n, out->accept, out->sent };
	if (out->n)
		memcpy(c->pool + c->n_pool, out->v, out->n * sizeof(int32_t));
	c->n_pool += out->n;
	c->n_memo++;
}

static void advance(struct gctx *c, const struct gstate *in, uint8_t byte, struct gstate *out)
{
	uint64_t key = 0;
	/* steps memoised: of one stack by its node, of several by their id */
	if (in->n == 1)
		key = ((uint64_t)(uint32_t)in->v[0] << 8 | byte) + 1;
	else if (in->n > 1)
		key = (1ull << 62 | (uint64_t)state_id(c, in) << 8 | byte) + 1;
	if (key && c->memo) {
		const struct memo *m = memo_slot(c, key);
		if (m->key) {
			out->n = 0;
			for (uint32_t i = 0; i < m->n; i++)
				state_push(out, c->pool[m->off + i]);
			out->accept = m->accept;
			out->sent = m->sent;
			return;
		}
	}
	begin(c, out);
	for (uint32_t i = 0; i < in->n; i++) {
		const struct gnode *n = &c->nodes[in->v[i]];
		if (gset_has(c->g->sets[c->g->el[n->pos].arg], byte))
			work_push(c, n->pos + 1, n->parent);
	}
	closure(c, out);
	if (key)
		memo_store(c, key, out);
}

static void state_copy(struct gstate *dst, const struct gstate *src)
{
	dst->n = 0;
	for (uint32_t i = 0; i < src->n; i++)
		state_push(dst, src->v[i]);
	dst->accept = src->accept;
	dst->sent = src->sent;
}

static void state_release(struct gstate *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ---- vocabulary walks ------------------------------------------------------ */

enum { W_REJECT, W_ACCEPT, W_UNCERTAIN };

typedef void (*walk_fn)(void *arg, uint32_t sorted, int verdict);

/* Walk the sorted tokens idx[0..n) (NULL: all) from s0.  Without
 * sentinel: W_ACCEPT when the token's bytes lead to a live state.  With
 * it (s0 above a SENT_PARENT frame): W_ACCEPT when they do without popping
 * it (or pop it exactly at their end: every frame below can go on),
 * W_UNCERTAIN when they pop it and go on, W_REJECT otherwise. */
static void walk(struct gctx *c, const struct gvocab *v, struct gstate *depth, uint8_t *psent,
		 const uint32_t *idx, uint32_t n, const struct gstate *s0, walk_fn fn, void *arg)
{
	uint32_t have = 0, prev = UINT32_MAX;

	state_copy(&depth[0], s0);
	psent[0] = 0;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t i = idx ? idx[k] : k;
		const uint8_t *tb = (const uint8_t *)v->pool + v->off[i];
		uint32_t tl = v->len[i], d = 0;
		if (prev != UINT32_MAX && !idx) {
			/* what it shares with prev: with the tokens between them
			 * (skipped below) prev shared more than i does */
			d = v->lcp[i] < have ? v->lcp[i] : have;
		} else if (prev != UINT32_MAX) {
			const uint8_t *pb = (const uint8_t *)v->pool + v->off[prev];
			uint32_t lim = have < tl ? have : tl;
			while (d < lim && pb[d] == tb[d])
				d++;
		}
		int dead = 0;
		while (d < tl) {
			advance(c, &depth[d], tb[d], &depth[d + 1]);
			psent[d + 1] = psent[d] | depth[d + 1].sent;
			d++;
			if (!depth[d].n) {
				dead = d < tl || !(depth[d].accept || depth[d].sent);
				break;
			}
		}
		prev = i;
		have = d;
		if (!dead) {
			fn(arg, i, W_ACCEPT);
			continue;
		}
		/* every following token with the same first d bytes dies too */
		int verdict = psent[d] ? W_UNCERTAIN : W_REJECT;
		fn(arg, i, verdict);
		while (k + 1 < n) {
			uint32_t j = idx ? idx[k + 1] : k + 1;
			if (idx ? v->len[j] < d || memcmp(v->pool + v->off[j], tb, d) : v->lcp[j] < d)
				break;
			fn(arg, j, verdict);
			k++;
		}
	}
}

/* ---- the mask cache ----------------------------------------------------------- */

struct collect {
	const struct gvocab *v;
	int32_t *acc;
	uint32_t n_acc, cap_acc;
	uint32_t *unc;
	uint32_t n_unc, cap_unc;
};

static void collect_fn(void *arg, uint32_t i, int verdict)
{
	struct collect *cl = arg;
	if (verdict == W_ACCEPT) {
		if (cl->n_acc == cl->cap_acc) {
			cl->cap_acc = cl->cap_acc ? 2 * cl->cap_acc : 64;
			cl->acc = xrealloc(cl->acc, cl->cap_acc * sizeof(int32_t));
		}
		cl->acc[cl->n_acc++] = cl->v->ids[i];
	} else if (verdict == W_UNCERTAIN) {
		if (cl->n_unc == cl->cap_unc) {
			cl->cap_unc = cl->cap_unc ? 2 * cl->cap_unc : 64;
			cl->unc = xrealloc(cl->unc, cl->cap_unc * sizeof(uint32_t));
		}
		cl->unc[cl->n_unc++] = i;
	}
}

static void posmask_free(struct gposmask *pm)
{
	if (!pm)
		return;
	free(pm->acc);
	free(pm->acc_bits);
	free(pm->unc);
	free(pm);
}

/* The tokens the stack of key allows: one walk of the vocabulary, with
 * a context of its own (any thread; depth, psent: walk scratch). */
static struct gposmask *posmask_compute(const struct grammar *g, const struct gvocab *v,
					const struct gposmask *key, struct gstate *depth,
					uint8_t *psent)
{
	struct gctx c;
	struct gstate s0 = { 0 };
	struct collect cl = { .v = v };

	ctx_init(&c, g);
	int32_t parent = key->truncated ? SENT_PARENT : ROOT_PARENT;
	for (uint32_t i = key->n_key; i-- > 0;)
		parent = intern(&c, key->key[i], parent);
	state_push(&s0, parent);
	walk(&c, v, depth, psent, NULL, v->n_tok, &s0, collect_fn, &cl);
	state_release(&s0);
	ctx_release(&c);
	struct gposmask *pm = xcalloc(1, sizeof(*pm));
	memcpy(pm, key, sizeof(*key));
	pm->n_acc = cl.n_acc;
	if (cl.n_acc > (uint32_t)v->n_vocab / 64) {
		pm->acc_bits = xcalloc(((size_t)v->n_vocab + 31) / 32, sizeof(uint32_t));
		for (uint32_t i = 0; i < cl.n_acc; i++)
			pm->acc_bits[cl.acc[i] >> 5] |= 1u << (cl.acc[i] & 31);
		free(cl.acc);
	} else {
		pm->acc = cl.acc;
	}
	pm->n_unc = cl.n_unc;
	pm->unc = cl.unc;
	return pm;
}

static int same_key(const struct gposmask *a, const struct gposmask *b)
{
	return a->hash == b->hash && a->n_key == b->n_key && a->truncated == b->truncated &&
	       !memcmp(a->key, b->key, a->n_key * sizeof(uint32_t));
}

/* The cache key of the stack whose top frame is node id. */
static void stack_key(const struct gctx *c, int32_t id, struct gposmask *key)
{
	memset(key, 0, sizeof(*key));
	key->hash = 2166136261u;
	for (int32_t x = id; x >= 0 && key->n_key < KEY_DEPTH; x = c->nodes[x].parent) {
		key->key[key->n_key++] = c->nodes[x].pos;
		key->hash = (key->hash ^ c->nodes[x].pos) * 16777619u;
		id = c->nodes[x].parent;
	}
	key->truncated = id >= 0;
	key->hash ^= (uint32_t)key->truncated;
}

/* The cache's slot for key, under g->mu; NULL: the cache is another
 * vocabulary's (the first one a grammar is used with keeps it). */
static struct gposmask **cache_slot(struct grammar *g, const struct gvocab *v,
				    const struct gposmask *key)
{
	if (!g->cache_vocab) {
		g->cache_cap = 2 * CACHE_MAX;
		g->cache = xcalloc(g->cache_cap, sizeof(*g->cache));
		g->cache_vocab = v;
	}
	if (g->cache_vocab != v)
		return NULL;
	uint32_t h = key->hash & (g->cache_cap - 1);
	while (g->cache[h] && !same_key(g->cache[h], key))
		h = (h + 1) & (g->cache_cap - 1);
	return &g->cache[h];
}

static struct gposmask *cache_find(struct grammar *g, const struct gvocab *v,
				   const struct gposmask *key)
{
	pthread_mutex_lock(&g->mu);
	struct gposmask **slot = cache_slot(g, v, key);
	struct gposmask *pm = slot ? *slot : NULL;
	pthread_mutex_unlock(&g->mu);
	return pm;
}

/* Keep pm in the cache, or the entry another thread put there meanwhile
 * (pm freed); *owned: the cache cannot take it, the caller frees it. */
static struct gposmask *cache_put(struct grammar *g, const struct gvocab *v,
				  struct gposmask *pm, int *owned)
{
	*owned = 0;
	pthread_mutex_lock(&g->mu);
	struct gposmask **slot = cache_slot(g, v, pm);
	if (slot && *slot) {
		posmask_free(pm);
		pm = *slot;
	} else if (slot && g->n_cache < CACHE_MAX) {
		*slot = pm;
		g->n_cache++;
	} else {
		*owned = 1;
	}
	pthread_mutex_unlock(&g->mu);
	return pm;
}

/* m's spare mask for key, or NULL. */
static struct gposmask **spare_slot(struct gmatch *m, const struct gposmask *key)
{
	for (uint32_t i = 0; i < m->n_spare; i++)
		if (m->spare[i] && same_key(m->spare[i], key))
			return &m->spare[i];
	return NULL;
}

static void spare_release(struct gmatch *m)
{
	for (uint32_t i = 0; i < m->n_spare; i++)
		posmask_free(m->spare[i]);
	free(m->spare);
	m->spare = NULL;
	m->n_spare = 0;
}

/* The mask of the stack whose top frame is node id; *owned: the caller
 * frees it (not cached).  The cold case walks the vocabulary outside the
 * lock: other matchers of the grammar go on meanwhile. */
static struct gposmask *posmask(struct gmatch *m, int32_t id, int *owned)
{
	struct gposmask key;

	stack_key(&m->c, id, &key);
	*owned = 0;
	struct gposmask *pm = cache_find(m->g, m->v, &key);
	if (pm)
		return pm;
	struct gposmask **spare = spare_slot(m, &key);
	if (spare) {
		pm = *spare;
		*spare = NULL;
		*owned = 1;
		return pm;
	}
	m->walks++;
	return cache_put(m->g, m->v, posmask_compute(m->g, m->v, &key, m->depth, m->psent), owned);
}

void grammar_cache_release(struct grammar *g)
{
	for (uint32_t i = 0; i < g->cache_cap; i++)
		posmask_free(g->cache[i]);
	free(g->cache);
	g->cache = NULL;
	g->cache_cap = g->n_cache = 0;
	g->cache_vocab = NULL;
}

/* ---- preparing masks off the decoding thread ------------------------------- */

struct gprep {
	struct grammar *g;
	const struct gvocab *v;
	struct gposmask *keys;
	struct gposmask **kept;	/* walked but refused by the cache, for gmatch_adopt */
	uint32_t n;
};

struct gprep *gmatch_prepare(struct gmatch *m)
{
	struct gprep *p = NULL;

	if (m->ended)
		return NULL;
	for (uint32_t s = 0; s < m->cur.n; s++) {
		struct gposmask key;
		stack_key(&m->c, m->cur.v[s], &key);
		if (cache_find(m->g, m->v, &key) || spare_slot(m, &key))
			continue;
		if (!p) {
			p = xcalloc(1, sizeof(*p));
			p->g = grammar_ref(m->g);
			p->v = m->v;
			p->keys = xmalloc(m->cur.n * sizeof(*p->keys));
			p->kept = xcalloc(m->cur.n, sizeof(*p->kept));
		}
		p->keys[p->n++] = key;
	}
	return p;
}

void gprep_run(struct gprep *p)
{
	struct gstate *depth = xcalloc((size_t)p->v->max_len + 2, sizeof(*depth));
	uint8_t *psent = xcalloc((size_t)p->v->max_len + 2, 1);

	for (uint32_t i = 0; i < p->n; i++) {
		if (cache_find(p->g, p->v, &p->keys[i]))
			continue;
		int owned;
		struct gposmask *pm = cache_put(p->g, p->v, posmask_compute(p->g, p->v,
							&p->keys[i], depth, psent), &owned);
		if (owned)	/* the cache cannot keep it: the matcher will */
			p->kept[i] = pm;
	}
	for (uint32_t i = 0; i < p->v->max_len + 2; i++)
		state_release(&depth[i]);
	free(depth);
	free(psent);
}

void gmatch_adopt(struct gmatch *m, struct gprep *p)
{
	spare_release(m);
	if (p->v != m->v)
		return;
	m->spare = p->kept;
	m->n_spare = p->n;
	p->kept = NULL;
}

uint64_t gmatch_walks(const struct gmatch *m)
{
	return m->walks;
}

void gprep_free(struct gprep *p)
{
	if (!p)
		return;
	grammar_unref(p->g);
	for (uint32_t i = 0; p->kept && i < p->n; i++)
		posmask_free(p->kept[i]);
	free(p->kept);
	free(p->keys);
	free(p);
}

/* ---- matcher ----------------------------------------------------------------- */

struct gmatch *gmatch_new(struct grammar *g, const struct gvocab *v)
{
	struct gmatch *m = xcalloc(1, sizeof(*m));
	m->g = grammar_ref(g);
	m->v = v;
	ctx_init(&m->c, g);
	m->depth = xcalloc((size_t)v->max_len + 2, sizeof(*m->depth));
	m->psent = xcalloc((size_t)v->max_len + 2, 1);
	begin(&m->c, &m->cur);
	for (uint32_t a = g->rule_alt[g->root]; a < g->rule_alt[g->root + 1]; a++)
		work_push(&m->c, g->alt[a], ROOT_PARENT);
	closure(&m->c, &m->cur);
	return m;
}

void gmatch_free(struct gmatch *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < m->v->max_len + 2; i++)
		state_release(&m->depth[i]);
	free(m->depth);
	free(m->psent);
	state_release(&m->cur);
	state_release(&m->tmp);
	free(m->unc);
	spare_release(m);
	ctx_release(&m->c);
	grammar_unref(m->g);
	free(m);
}

int gmatch_accepting(const struct gmatch *m)
{
	return m->cur.accept;
}

int gmatch_done(const struct gmatch *m)
{
	return m->ended || (m->cur.accept && !m->cur.n);
}

/* Re-intern the current state's frames into a fresh table when the old
 * one is mostly garbage from earlier walks. */
static void compact(struct gmatch *m)
{
	struct gctx *c = &m->c;
	if (c->n_nodes < 65536)
		return;
	struct gctx fresh;
	ctx_init(&fresh, m->g);
	int32_t *map = xmalloc(c->n_nodes * sizeof(int32_t));
	memset(map, 0xff, c->n_nodes * sizeof(int32_t));
	/* parents have lower ids than their children: one pass in id order
	 * over the frames reachable from the state */
	uint8_t *live = xcalloc(c->n_nodes, 1);
	for (uint32_t i = 0; i < m->cur.n; i++)
		for (int32_t x = m->cur.v[i]; x >= 0 && !live[x]; x = c->nodes[x].parent)
			live[x] = 1;
	for (uint32_t i = 0; i < c->n_nodes; i++)
		if (live[i]) {
			int32_t p = c->nodes[i].parent;
			map[i] = intern(&fresh, c->nodes[i].pos, p >= 0 ? map[p] : p);
		}
	for (uint32_t i = 0; i < m->cur.n; i++)
		m->cur.v[i] = map[m->cur.v[i]];
	free(live);
	free(map);
	ctx_release(c);
	*c = fresh;
}

static void set_bit(uint32_t *bits, int32_t id)
{
	bits[id >> 5] |= 1u << (id & 31);
}

struct mask_arg {
	const struct gvocab *v;
	uint32_t *bits;
};

static void mask_fn(void *arg, uint32_t i, int verdict)
{
	struct mask_arg *ma = arg;
	if (verdict == W_ACCEPT)
		set_bit(ma->bits, ma->v->ids[i]);
}

/* Set bits of w[0..n): the hardware instruction where the CPU has it
 * (without it the compiler calls a slow libgcc routine, most of a warm
 * mask's time on a 150k vocabulary). */
static size_t popcount_sw(const uint32_t *w, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += (size_t)__builtin_popcount(w[i]);
	return c;
}

#if defined(__x86_64__)
__attribute__((target("popcnt"))) static size_t popcount_hw(const uint32_t *w, size_t n)
{
	size_t c = 0, i = 0;
	for (; i + 2 <= n; i += 2) {
		uint64_t x;
		memcpy(&x, w + i, sizeof(x));
		c += (size_t)__builtin_popcountll(x);
	}
	if (i < n)
		c += (size_t)__builtin_popcount(w[i]);
	return c;
}

static size_t popcount_words(const uint32_t *w, size_t n)
{
	return __builtin_cpu_supports("popcnt") ? popcount_hw(w, n) : popcount_sw(w, n);
}
#else
#define popcount_words popcount_sw
#endif

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* dst |= src over n words, 64 bits at a time. */
static void or_words(uint32_t *restrict dst, const uint32_t *restrict src, size_t n)
{
	size_t i = 0;
	for (; i + 2 <= n; i += 2) {
		uint64_t a, b;
		memcpy(&a, dst + i, sizeof(a));
		memcpy(&b, src + i, sizeof(b));
		a |= b;
		memcpy(dst + i, &a, sizeof(a));
	}
	if (i < n)
		dst[i] |= src[i];
}

int gmatch_mask(struct gmatch *m, uint32_t *bits)
{
	const struct gvocab *v = m->v;
	size_t words = ((size_t)v->n_vocab + 31) / 32;
	int several = 0;
	/* one stack and no walk: its cached count is the mask's */
	size_t count = 0;
	int counted = m->cur.n == 1;

	if (m->ended || !m->cur.n)
		memset(bits, 0, words * sizeof(uint32_t));
	if (m->ended)
		return 0;
	compact(m);
	m->n_unc = 0;
	for (uint32_t s = 0; s < m->cur.n; s++) {
		int owned;
		struct gposmask *pm = posmask(m, m->cur.v[s], &owned);
		if (!s && pm->acc_bits) {
			memcpy(bits, pm->acc_bits, words * sizeof(uint32_t));
		} else if (pm->acc_bits) {
			or_words(bits, pm->acc_bits, words);
		} else {
			if (!s)
				memset(bits, 0, words * sizeof(uint32_t));
			for (uint32_t i = 0, n = pm->n_acc; i < n; i++)
				set_bit(bits, pm->acc[i]);
		}
		count = pm->n_acc;
		if (pm->n_unc) {
			counted = 0;
			several |= m->n_unc > 0;
			if (m->n_unc + pm->n_unc > m->cap_unc) {
				m->cap_unc = (m->n_unc + pm->n_unc) * 2;
				m->unc = xrealloc(m->unc, m->cap_unc * sizeof(uint32_t));
			}
			memcpy(m->unc + m->n_unc, pm->unc, pm->n_unc * sizeof(uint32_t));
			m->n_unc += pm->n_unc;
		}
		if (owned)
			posmask_free(pm);
	}
	spare_release(m);	/* adopted for this state only */
	if (several) {	/* the walk wants them sorted and unique */
		qsort(m->unc, m->n_unc, sizeof(uint32_t), cmp_u32);
		uint32_t k = 0;
		for (uint32_t i = 0; i < m->n_unc; i++)
			if (!k || m->unc[k - 1] != m->unc[i])
				m->unc[k++] = m->unc[i];
		m->n_unc = k;
	}
	if (m->n_unc) {
		struct mask_arg ma = { v, bits };
		walk(&m->c, v, m->depth, m->psent, m->unc, m->n_unc, &m->cur, mask_fn, &ma);
	}
	if (m->cur.accept)
		for (int i = 0; i < v->n_eos; i++) {
			count += !(bits[v->eos[i] >> 5] >> (v->eos[i] & 31) & 1);
			set_bit(bits, v->eos[i]);
		}
	return counted ? (int)count : (int)popcount_words(bits, words);
}

int gmatch_accept_bytes(struct gmatch *m, const char *s, size_t len)
{
	if (m->ended)
		return err_set(-EINVAL, "the grammar has ended");
	state_copy(&m->tmp, &m->cur);
	for (size_t i = 0; i < len; i++) {
		advance(&m->c, &m->tmp, (uint8_t)s[i], &m->depth[0]);
		state_copy(&m->tmp, &m->depth[0]);
		if (!m->tmp.n && !(i + 1 == len && m->tmp.accept))
			return err_set(-EINVAL, "byte %zu (0x%02x) is not allowed by the grammar",
				       i, (uint8_t)s[i]);
	}
	struct gstate t = m->cur;
	m->cur = m->tmp;
	m->tmp = t;
	return 0;
}

int gmatch_accept(struct gmatch *m, int32_t id)
{
	const struct gvocab *v = m->v;

	if (id < 0 || id >= v->n_vocab)
		return err_set(-EINVAL, "token %d outside the vocabulary", id);
	for (int i = 0; i < v->n_eos; i++)
		if (v->eos[i] == id) {
			if (!m->cur.accept || m->ended)
				return err_set(-EINVAL, "end of text before the grammar is complete");
			m->ended = 1;
			return 0;
		}
	int32_t s = v->sorted_of[id];
	if (s < 0)
		return err_set(-EINVAL, "token %d is never allowed by a grammar", id);
	return gmatch_accept_bytes(m, v->pool + v->off[s], v->len[s]);
}

/* ---- vocabularies ---------------------------------------------------------- */

static int by_bytes(const void *a, const void *b, void *arg)
{
	const struct gvocab *v = arg;
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	uint32_t lx = v->len[x], ly = v->len[y], n = lx < ly ? lx : ly;
	int c = memcmp(v->pool + v->off[x], v->pool + v->off[y], n);
	if (c)
		return c;
	return lx < ly ? -1 : lx > ly;
}

/* A token that can stand for text: not empty, not an eos id. */
static int usable(const struct gvocab *v, int id, const char *const *bytes,
		  const uint32_t *lens)
{
	if (!bytes[id] || !lens[id])
		return 0;
	for (int i = 0; i < v->n_eos; i++)
		if (v->eos[i] == id)
			return 0;
	return 1;
}

struct gvocab *gvocab_new(int vocab_size, const char *const *bytes, const uint32_t *lens,
			  const int32_t *eos, int n_eos)
{
	struct gvocab *v = xcalloc(1, sizeof(*v));
	size_t pool = 0;
	uint32_t n = 0;

	v->n_vocab = vocab_size;
	v->eos = xmalloc((size_t)(n_eos > 0 ? n_eos : 1) * sizeof(int32_t));
	for (int i = 0; i < n_eos; i++)
		if (eos[i] >= 0 && eos[i] < vocab_size)
			v->eos[v->n_eos++] = eos[i];
	for (int i = 0; i < vocab_size; i++)
		if (usable(v, i, bytes, lens)) {
			pool += lens[i];
			n++;
		}
	v->pool = xmalloc(pool ? pool : 1);
	uint32_t *off = xmalloc((n ? n : 1) * sizeof(uint32_t));
	uint32_t *len = xmalloc((n ? n : 1) * sizeof(uint32_t));
	int32_t *ids = xmalloc((n ? n : 1) * sizeof(int32_t));
	uint32_t *order = xmalloc((n ? n : 1) * sizeof(uint32_t));
	size_t p = 0;
	n = 0;
	for (int i = 0; i < vocab_size; i++)
		if (usable(v, i, bytes, lens)) {
			memcpy(v->pool + p, bytes[i], lens[i]);
			off[n] = (uint32_t)p;
			len[n] = lens[i];
			ids[n] = i;
			order[n] = n;
			p += lens[i];
			n++;
		}
	v->off = off;
	v->len = len;
	qsort_r(order, n, sizeof(uint32_t), by_bytes, v);
	v->off = xmalloc((n ? n : 1) * sizeof(uint32_t));
	v->len = xmalloc((n ? n : 1) * sizeof(uint32_t));
	v->ids = xmalloc((n ? n : 1) * sizeof(int32_t));
	v->sorted_of = xmalloc((size_t)(vocab_size ? vocab_size : 1) * sizeof(int32_t));
	memset(v->sorted_of, 0xff, (size_t)vocab_size * sizeof(int32_t));
	for (uint32_t i = 0; i < n; i++) {
		v->off[i] = off[order[i]];
		v->len[i] = len[order[i]];
		v->ids[i] = ids[order[i]];
		v->sorted_of[v->ids[i]] = (int32_t)i;
		if (v->len[i] > v->max_len)
			v->max_len = v->len[i];
	}
	v->n_tok = n;
	v->lcp = xcalloc(n ? n : 1, sizeof(uint32_t));
	for (uint32_t i = 1; i < n; i++) {
		const char *a = v->pool + v->off[i - 1], *b = v->pool + v->off[i];
		uint32_t lim = v->len[i - 1] < v->len[i] ? v->len[i - 1] : v->len[i], d = 0;
		while (d < lim && a[d] == b[d])
			d++;
		v->lcp[i] = d;
	}
	free(off);
	free(len);
	free(ids);
	free(order);
	return v;
}

void gvocab_free(struct gvocab *v)
{
	if (!v)
		return;
	free(v->pool);
	free(v->off);
	free(v->len);
	free(v->ids);
	free(v->sorted_of);
	free(v->lcp);
	free(v->eos);
	free(v);
}
