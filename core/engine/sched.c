/*
 * sched.c - continuous batching with chunked prefill, prefix-cache reuse
 * and preemption by recompute (see sched.h).
 */
#include "core/engine/sched.h"
#include "core/proto/block_hash.h"
#include "core/log.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

void sched_init(struct sched *s, const struct sched_opts *o, struct kv_manager *kv)
{
	memset(s, 0, sizeof(*s));
	s->o = *o;
	s->kv = kv;
	s->cap = 16;
	s->running = xcalloc((size_t)s->cap, sizeof(*s->running));
	s->waiting = xcalloc((size_t)s->cap, sizeof(*s->waiting));
	s->pending = xcalloc((size_t)s->cap, sizeof(*s->pending));
}

void sched_release(struct sched *s)
{
	free(s->running);
	free(s->waiting);
	free(s->pending);
	memset(s, 0, sizeof(*s));
}

static void grow(struct sched *s)
{
	if (s->n_running + s->n_waiting + s->n_pending + 1 <= s->cap)
		return;
	s->cap *= 2;
	s->running = xrealloc(s->running, (size_t)s->cap * sizeof(*s->running));
	s->waiting = xrealloc(s->waiting, (size_t)s->cap * sizeof(*s->waiting));
	s->pending = xrealloc(s->pending, (size_t)s->cap * sizeof(*s->pending));
}

void seq_push(struct seq *q, int32_t token)
{
	if (q->n_tokens == q->cap) {
		q->cap = q->cap ? 2 * q->cap : 64;
		q->tokens = xrealloc(q->tokens, (size_t)q->cap * sizeof(int32_t));
	}
	q->tokens[q->n_tokens++] = token;
}

void seq_release(struct seq *q)
{
	free(q->tokens);
	free(q->table);
	free(q->hashes);
	free(q->locals);
}

/* Make the hashes of q's first n full blocks known. */
static void know_hashes(struct seq *q, int bs, int n)
{
	if (n > q->hash_cap) {
		q->hash_cap = n > 2 * q->hash_cap ? n : 2 * q->hash_cap;
		q->hashes = xrealloc(q->hashes, (size_t)q->hash_cap * sizeof(uint64_t));
		q->locals = xrealloc(q->locals, (size_t)q->hash_cap * sizeof(uint64_t));
	}
	for (int b = q->n_known; b < n; b++) {
		uint64_t local = block_hash_local(q->tokens + (size_t)b * (size_t)bs, (size_t)bs);
		q->locals[b] = local;
		q->hashes[b] = b ? block_hash_chain(q->hashes[b - 1], local) : local;
	}
	if (n > q->n_known)
		q->n_known = n;
}

static void list_remove(struct seq **list, int *n, struct seq *q)
{
	for (int i = 0; i < *n; i++)
		if (list[i] == q) {
			memmove(list + i, list + i + 1, (size_t)(*n - i - 1) * sizeof(*list));
			(*n)--;
			return;
		}
}

/* Give back every block of q, last to first, and forget its progress. */
static void free_blocks(struct sched *s, struct seq *q)
{
	for (int i = q->n_blocks - 1; i >= 0; i--)
		kv_release(s->kv, q->table[i]);
	q->n_blocks = 0;
	q->n_hashed = 0;
	q->n_computed = 0;
}

void sched_release_blocks(struct sched *s, struct seq *q)
{
	free_blocks(s, q);
}

void sched_add(struct sched *s, struct seq *q)
{
	grow(s);
	q->state = SEQ_WAITING;
	s->waiting[s->n_waiting++] = q;
}

void sched_detach(struct sched *s, struct seq *q)
{
	list_remove(s->running, &s->n_running, q);
	list_remove(s->waiting, &s->n_waiting, q);
	list_remove(s->pending, &s->n_pending, q);
}

void sched_remove(struct sched *s, struct seq *q)
{
	sched_detach(s, q);
	free_blocks(s, q);
}

static void table_push(struct seq *q, int32_t id)
{
	if (q->n_blocks == q->table_cap) {
		q->table_cap = q->table_cap ? 2 * q->table_cap : 16;
		q->table = xrealloc(q->table, (size_t)q->table_cap * sizeof(int32_t));
	}
	q->table[q->n_blocks++] = id;
}

/* Ensure q has blocks for its first n tokens; 0, or -1 when the pool is
 * exhausted (blocks taken so far are kept). */
static int ensure_blocks(struct sched *s, struct seq *q, int n)
{
	int bs = kv_block_size(s->kv), need = (n + bs - 1) / bs;

	while (q->n_blocks < need) {
		int32_t id = kv_alloc(s->kv);
		if (id < 0)
			return -1;
		table_push(q, id);
	}
	return 0;
}

static void push_front_waiting(struct sched *s, struct seq *q)
{
	grow(s);
	q->state = SEQ_WAITING;
	memmove(s->waiting + 1, s->waiting, (size_t)s->n_waiting * sizeof(*s->waiting));
	s->waiting[0] = q;
	s->n_waiting++;
}

/* Preempt the newest running sequence: back to the head of the queue. */
static struct seq *preempt_newest(struct sched *s)
{
	struct seq *v = s->running[--s->n_running];

	free_blocks(s, v);
	v->n_preemptions++;
	s->preemptions++;
	push_front_waiting(s, v);
	LOG_DEBUG("sched", "preempted sequence %llu (%d tokens) to free KV blocks",
		  (unsigned long long)v->id, v->n_tokens);
	return v;
}

/* How many leading full blocks q's admission may take from the prefix
 * cache: never the block of its last token (computed for its logits), and
 * for K/V arriving from elsewhere only the blocks those tokens fall in. */
static int reusable_blocks(const struct sched *s, const struct seq *q)
{
	int bs = kv_block_size(s->kv), nb = (q->n_tokens - 1) / bs;

	if (q->kv_pending > 0 && nb > (q->kv_pending + bs - 1) / bs)
		nb = (q->kv_pending + bs - 1) / bs;
	return nb;
}

/* Tokens of a waiting sequence that its admission would take from the
 * prefix cache as things stand (take_cached_prefix() without taking). */
static int cached_prefix_tokens(const struct sched *s, struct seq *q)
{
	if (!s->o.prefix_caching || q->params.prompt_logprobs || q->n_computed > 0 ||
	    q->n_blocks > 0)
		return 0;
	int bs = kv_block_size(s->kv), nb = reusable_blocks(s, q), b;

	know_hashes(q, bs, nb);
	for (b = 0; b < nb && kv_contains(s->kv, q->hashes[b]); b++)
		;
	return b * bs;
}

/* Reuse the leading cached blocks of a sequence being admitted (one with
 * no blocks yet); returns the tokens they hold, now computed. */
static int take_cached_prefix(struct sched *s, struct seq *q)
{
	int bs = kv_block_size(s->kv), nb = reusable_blocks(s, q);

	if (!s->o.prefix_caching || q->params.prompt_logprobs || q->n_blocks > 0)
		return 0;
	know_hashes(q, bs, nb);
	for (int b = 0; b < nb; b++) {
		int32_t id = kv_acquire_cached(s->kv, q->hashes[b]);
		if (id < 0)
			break;
		table_push(q, id);
		q->n_hashed = b + 1;
	}
	q->n_computed = q->n_blocks * bs;
	return q->n_computed;
}

/* Would the blocks q still needs for its first n tokens keep the pool's
 * use within (1 - watermark)?  (Reused cached blocks are counted in use
 * already.) */
static int watermark_allows(const struct sched *s, const struct seq *q, int n)
{
	int bs = kv_block_size(s->kv), need = (n + bs - 1) / bs - q->n_blocks;

	if (s->o.watermark <= 0 || need <= 0)
		return 1;
	return (double)(kv_used(s->kv) + need) <= (1.0 - s->o.watermark) * kv_total(s->kv);
}

/* A chunk of q within the step's rows for prompt logprobs (*rows left). */
static int lp_cap(const struct seq *q, int chunk, int *rows)
{
	if (!q->params.prompt_logprobs || q->n_computed >= q->n_prompt - 1)
		return chunk;
	if (chunk > *rows)
		chunk = *rows;
	*rows -= chunk;
	return chunk;
}

int sched_schedule(struct sched *s, struct seq **out)
{
	int budget = s->o.max_num_batched_tokens, n = 0, lp_rows = SCHED_PROMPT_LP_ROWS;

	/* running sequences first, oldest first */
	for (int i = 0; i < s->n_running && budget > 0; i++) {
		struct seq *q = s->running[i];
		if (q->hold)
			continue;
		int chunk = q->n_tokens - q->n_computed;
		if (chunk > budget)
			chunk = budget;
		chunk = lp_cap(q, chunk, &lp_rows);
		if (chunk <= 0)
			continue;
		while (ensure_blocks(s, q, q->n_computed + chunk) < 0) {
			struct seq *v = preempt_newest(s);
			if (v == q)
				break;
		}
		if (q->state != SEQ_RUNNING)
			break;	/* q preempted itself: everything after it is gone too */
		q->chunk = chunk;
		out[n++] = q;
		budget -= chunk;
	}
	/* then admit waiting sequences, in order; one whose K/V arrive from
	 * elsewhere gets the blocks for them and waits on the pending list */
	for (int w = 0; w < s->n_waiting && budget > 0 && s->n_running < s->o.max_num_seqs;) {
		struct seq *q = s->waiting[w];
		if (q->hold) {	/* the next in line go first */
			w++;
			continue;
		}
		int first = !q->admitted;
		/* a sequence whose K/V were filled in already holds its blocks */
		int cached = take_cached_prefix(s, q);
		int chunk = q->n_tokens - q->n_computed;
		if (chunk > budget)
			chunk = budget;
		chunk = lp_cap(q, chunk, &lp_rows);
		if (chunk <= 0)
			break;	/* no rows left for its logprobs: next step */
		int upto = q->kv_pending > 0 ? q->kv_pending : q->n_computed + chunk;
		if (!watermark_allows(s, q, upto) || ensure_blocks(s, q, upto) < 0) {
			free_blocks(s, q);
			break;
		}
		memmove(s->waiting + w, s->waiting + w + 1,
			(size_t)(s->n_waiting - w - 1) * sizeof(*s->waiting));
		s->n_waiting--;
		q->admitted = 1;
		if (first)
			q->n_cached = cached;
		s->cache_hit_tokens += (uint64_t)cached;
		if (q->kv_pending > 0) {
			q->state = SEQ_PENDING_KV;
			s->pending[s->n_pending++] = q;
			continue;
		}
		q->state = SEQ_RUNNING;
		s->running[s->n_running++] = q;
		q->chunk = chunk;
		out[n++] = q;
		budget -= chunk;
	}
	return n;
}

/* Register q's blocks that its computed tokens fill. */
static void commit_full_blocks(struct sched *s, struct seq *q)
{
	int bs = kv_block_size(s->kv), full = q->n_computed / bs;

	know_hashes(q, bs, full);
	for (; q->n_hashed < full; q->n_hashed++) {
		int b = q->n_hashed;
		kv_commit(s->kv, q->table[b], b ? q->hashes[b - 1] : 0, b > 0, q->hashes[b],
			  q->locals[b]);
	}
}

void sched_kv_filled(struct sched *s, struct seq *q, int n_tokens)
{
	list_remove(s->pending, &s->n_pending, q);
	if (n_tokens > q->n_computed)	/* else its reused blocks hold more */
		q->n_computed = n_tokens;
	q->kv_pending = 0;
	commit_full_blocks(s, q);
	push_front_waiting(s, q);
}

void sched_advance(struct sched *s, struct seq **batch, int n)
{
	for (int i = 0; i < n; i++) {
		struct seq *q = batch[i];
		q->n_computed += q->chunk;
		q->chunk = 0;
		commit_full_blocks(s, q);
	}
}

int sched_decoding_blocks(const struct sched *s)
{
	int n = 0;
	for (int i = 0; i < s->n_running; i++)
		if (s->running[i]->n_computed >= s->running[i]->n_prompt)
			n += s->running[i]->n_blocks;
	int used = kv_used(s->kv);
	return n < used ? n : used;
}

long sched_queued_prefill_tokens(const struct sched *s)
{
	long n = 0;

	/* what admission will not take from the prefix cache: a router
	 * weighing a worker's queue must not count cached prefixes as work */
	for (int i = 0; i < s->n_waiting; i++) {
		struct seq *q = s->waiting[i];
		int done = cached_prefix_tokens(s, q);	/* or arriving from elsewhere */
		n += q->n_tokens - q->n_computed - (q->kv_pending > done ? q->kv_pending : done);
	}
	for (int i = 0; i < s->n_pending; i++) {
		const struct seq *q = s->pending[i];
		n += q->n_tokens - (q->kv_pending > q->n_computed ? q->kv_pending : q->n_computed);
	}
	for (int i = 0; i < s->n_running; i++) {
		const struct seq *q = s->running[i];
		int rest = q->n_tokens - q->n_computed;
		/* a decoding sequence has exactly its last sampled token left */
		if (q->n_tokens == q->n_prompt ? rest > 0 : rest > 1)
			n += rest;
	}
	return n;
}
