/*
 * bpe.c - the BPE model: one pre-tokenized word to ids, as HF's
 * models::bpe (merge_word + Word::merge_all).
 *
 * A word starts as one symbol per character (with continuing_subword_prefix
 * on all but the first and end_of_word_suffix on the last, when set);
 * characters missing from the vocabulary become byte-fallback tokens
 * "<0xXX>" or the unk token (fused into one when fuse_unk), or vanish when
 * there is neither.  Then the adjacent pair with the lowest merge rank is
 * merged, leftmost first on ties, until no pair has a merge.  Short words
 * use a rank scan over an array; long ones (whitespace or digit runs) a
 * binary heap, O(n log n), like HF.  With ignore_merges a word that is
 * itself in the vocabulary is taken whole.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_MAX 48	/* words up to this many symbols use the rank scan */

struct sym {
	int32_t id;
	int32_t prev, next;	/* heap variant: linked list; -1 = none */
	uint32_t len;		/* 0 = merged away */
};

struct symbuf {
	struct sym *v;
	size_t n, alloc;
	struct sym local[SCAN_MAX];
};

static void sym_push(struct symbuf *b, int32_t id, uint32_t len)
{
	if (b->n == b->alloc) {
		size_t na = b->alloc * 2;
		if (b->v == b->local) {
			b->v = xmalloc(na * sizeof(*b->v));
			memcpy(b->v, b->local, b->n * sizeof(*b->v));
		} else {
			b->v = xrealloc(b->v, na * sizeof(*b->v));
		}
		b->alloc = na;
	}
	b->v[b->n++] = (struct sym){ id, -1, -1, len };
}

/* Rank of merging a and b (UINT32_MAX if none); the merged id in *id. */
static inline uint32_t merge_rank(const struct bpe *m, int32_t a, int32_t b, int32_t *id)
{
	const struct pairmap_ent *e = tok_pairmap_get(&m->merges, (uint32_t)a, (uint32_t)b);
	if (!e)
		return UINT32_MAX;
	*id = (int32_t)e->id;
	return e->rank;
}

static void merge_scan(const struct bpe *m, struct symbuf *b)
{
	uint32_t rank[SCAN_MAX];
	int32_t nid[SCAN_MAX];
	size_t n = b->n;
	struct sym *s = b->v;

	if (n < 2)
		return;
	for (size_t i = 0; i + 1 < n; i++)
		rank[i] = merge_rank(m, s[i].id, s[i + 1].id, &nid[i]);
	for (;;) {
		uint32_t best = UINT32_MAX;
		size_t bi = 0;
		for (size_t i = 0; i + 1 < n; i++) {
			if (rank[i] < best) {
				best = rank[i];
				bi = i;
			}
		}
		if (best == UINT32_MAX)
			break;
		s[bi].id = nid[bi];
		s[bi].len += s[bi + 1].len;
		memmove(s + bi + 1, s + bi + 2, (n - bi - 2) * sizeof(*s));
		memmove(rank + bi + 1, rank + bi + 2, (n - bi - 2) * sizeof(*rank));
		memmove(nid + bi + 1, nid + bi + 2, (n - bi - 2) * sizeof(*nid));
		n--;
		if (bi > 0)
			rank[bi - 1] = merge_rank(m, s[bi - 1].id, s[bi].id, &nid[bi - 1]);
		if (bi + 1 < n)
			rank[bi] = merge_rank(m, s[bi].id, s[bi + 1].id, &nid[bi]);
	}
	b->n = n;
}

/* ---- heap variant (HF's merge_all) --------------------------------------- */

struct qent {
	uint32_t rank;
	uint32_t pos;
	int32_t id;
};

static inline int q_less(const struct qent *a, const struct qent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

struct queue {
	struct qent *v;
	size_t n, alloc;
};

static void q_push(struct queue *q, struct qent e)
{
	if (q->n == q->alloc) {
		q->alloc = q->alloc ? q->alloc * 2 : 64;
		q->v = xrealloc(q->v, q->alloc * sizeof(*q->v));
	}
	size_t i = q->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!q_less(&e, &q->v[p]))
			break;
		q->v[i] = q->v[p];
		i = p;
	}
	q->v[i] = e;
}

static struct qent q_pop(struct queue *q)
{
	struct qent top = q->v[0], last = q->v[--q->n];
	size_t i = 0, n = q->n;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && q_less(&q->v[c + 1], &q->v[c]))
			c++;
		if (!q_less(&q->v[c], &last))
			break;
		q->v[i] = q->v[c];
		i = c;
	}
	if (n)
		q->v[i] = last;
	return top;
}

static void merge_heap(const struct bpe *m, struct symbuf *b)
{
	struct sym *s = b->v;
	size_t n = b->n;
	struct queue q = { 0 };
	int32_t id;

	for (size_t i = 0; i < n; i++) {
		s[i].prev = (int32_t)i - 1;
		s[i].next = i + 1 < n ? (int32_t)i + 1 : -1;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		uint32_t r = merge_rank(m, s[i].id, s[i + 1].id, &id);
		if (r != UINT32_MAX)
			q_push(&q, (struct qent){ r, (uint32_t)i, id });
	}
	while (q.n) {
		struct qent top = q_pop(&q);
		struct sym *cur = &s[top.pos];
		if (cur->len == 0 || cur->next < 0)
			continue;
		struct sym right = s[cur->next];
		uint32_t r = merge_rank(m, cur->id, right.id, &id);
		if (r == UINT32_MAX || id != top.id)
			continue;	/* stale entry */
		cur->id = top.id;
		cur->len += right.len;
		s[cur->next].len = 0;
		cur->next = right.next;
		if (right.next >= 0)
			s[right.next].prev = (int32_t)top.pos;
		if (cur->prev >= 0) {
			r = merge_rank(m, s[cur->prev].id, cur->id, &id);
			if (r != UINT32_MAX)
				q_push(&q, (struct qent){ r, (uint32_t)cur->prev, id });
		}
		if (cur->next >= 0) {
			r = merge_rank(m, cur->id, s[cur->next].id, &id);
			if (r != UINT32_MAX)
				q_push(&q, (struct qent){ r, top.pos, id });
		}
	}
	free(q.v);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i].len)
			s[k++] = s[i];
	b->n = k;
}

/* ---- word to symbols ------------------------------------------------------ */

static int32_t lookup_piece(const struct tok *tok, const char *s, size_t len)
{
	return tok_strmap_get(&tok->bpe.vocab, tok->pool, s, len);
}

int tok_bpe_word(const struct tok *tok, struct tok_cache *cache, const char *w,
	     size_t len, struct tok_ids *out)
{
	const struct bpe *m = &tok->bpe;
	struct symbuf b;
	int32_t unk_id = -1;
	uint32_t unk_len = 0;
	int have_unk = 0, rc = 0;
	char stackbuf[64];
	char *tmp = stackbuf;
	size_t tmpcap = sizeof(stackbuf);

	if (m->ignore_merges) {
		int32_t id = lookup_piece(tok, w, len);
		if (id >= 0) {
			tok_ids_push(out, id);
			return 0;
		}
	}
	struct tok_cache_slot *slot = NULL;
	uint32_t hash = 0;
	if (cache && len <= TOK_CACHE_KEY) {
		hash = (uint32_t)tok_hash(w, len);
		slot = &cache->slot[hash & (TOK_CACHE_SLOTS - 1)];
		if (slot->klen == len && slot->hash == hash && !memcmp(slot->key, w, len)) {
			for (unsigned i = 0; i < slot->nids; i++)
				tok_ids_push(out, slot->ids[i]);
			return 0;
		}
	}
	b.v = b.local;
	b.n = 0;
	b.alloc = SCAN_MAX;

	int plain = !m->prefix_len && !m->suffix_len;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		size_t cl = tok_utf8_decode((const unsigned char *)w + i, &cp);
		const char *piece = w + i;
		size_t plen = cl;
		int32_t id;

		if (plain) {
			id = cp < BPE_DIRECT ? m->char_ids[cp] : lookup_piece(tok, piece, plen);
		} else {
			size_t need = cl + m->prefix_len + m->suffix_len;
			if (need > tmpcap) {
				if (tmp != stackbuf)
					free(tmp);
				tmp = xmalloc(need);
				tmpcap = need;
			}
			plen = 0;
			if (i > 0 && m->prefix_len) {
				memcpy(tmp, m->prefix, m->prefix_len);
				plen = m->prefix_len;
			}
			memcpy(tmp + plen, w + i, cl);
			plen += cl;
			if (i + cl == len && m->suffix_len) {
				memcpy(tmp + plen, m->suffix, m->suffix_len);
				plen += m->suffix_len;
			}
			piece = tmp;
			id = lookup_piece(tok, piece, plen);
		}
		i += cl;
		if (id >= 0) {
			if (have_unk) {
				sym_push(&b, unk_id, unk_len);
				have_unk = 0;
			}
			sym_push(&b, id, (uint32_t)cl);
			continue;
		}
		if (m->byte_fallback) {
			size_t k;
			for (k = 0; k < plen; k++)
				if (m->byte_ids[(unsigned char)piece[k]] < 0)
					break;
			if (k == plen) {
				for (k = 0; k < plen; k++)
					sym_push(&b, m->byte_ids[(unsigned char)piece[k]], 1);
				continue;
			}
		}
		if (m->unk) {
			int32_t uid = lookup_piece(tok, m->unk, strlen(m->unk));
			if (uid < 0) {
				rc = err_set(-EINVAL, "the unk token \"%s\" is not in the vocabulary",
					     m->unk);
				goto out;
			}
			if (have_unk && m->fuse_unk) {
				unk_len += (uint32_t)cl;
			} else {
				if (have_unk)
					sym_push(&b, unk_id, unk_len);
				unk_id = uid;
				unk_len = (uint32_t)cl;
				have_unk = 1;
			}
		}
	}
	if (have_unk)
		sym_push(&b, unk_id, unk_len);

	if (b.n <= SCAN_MAX && b.v == b.local)
		merge_scan(m, &b);
	else
		merge_heap(m, &b);
	for (size_t i = 0; i < b.n; i++)
		tok_ids_push(out, b.v[i].id);
	if (slot && b.n <= TOK_CACHE_IDS) {
		slot->hash = hash;
		slot->klen = (uint8_t)len;
		slot->nids = (uint8_t)b.n;
		memcpy(slot->key, w, len);
		for (size_t i = 0; i < b.n; i++)
			slot->ids[i] = b.v[i].id;
	}
out:
	if (b.v != b.local)
		free(b.v);
	if (tmp != stackbuf)
		free(tmp);
	return rc;
}

