/*
 * selector.c - worker selection and in-flight accounting (selector.h).
 */
#include "core/router/selector.h"

#include "core/err.h"
#include "core/u64map.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <string.h>

struct sworker {
	uint64_t id;
	double prefill, decode;		/* tracked from this selector's requests */
	double off_prefill, off_decode;	/* reported - tracked at the last report */
	size_t inflight;		/* this selector's requests on it */
};

struct sreq {
	uint64_t id;
	uint32_t worker;		/* index in s->w (kept up to date) */
	uint64_t worker_id;
	double prefill, total;
	int decoding;
};

struct ttl_entry {
	int64_t expiry;
	uint64_t worker, hash;
};

struct selector {
	struct selector_config c;
	struct indexer *ix;
	uint64_t rng;
	struct sworker *w;
	size_t nw, w_alloc;
	struct u64map wid;		/* worker id -> index */
	struct sreq *r;
	size_t nr, r_alloc;
	struct u64map rid;		/* req id -> index */
	size_t rr;
	struct route_candidate *cands;
	size_t cands_alloc;
	double *ov;			/* weighted overlap per worker index (scratch) */
	uint32_t *dep;			/* its depth in blocks */
	/* Predicted blocks, with an expiry: in approximate mode the index
	 * itself; with KV events a private index (pix, owned) of the blocks
	 * of recently dispatched requests, until the worker's events say. */
	struct indexer *pred;
	int64_t pred_ttl_ms;
	struct ttl_entry *q;
	size_t q_head, q_len, q_alloc;
	struct u64map ttl;		/* key(worker, hash) -> expiry - ttl_base */
	int64_t ttl_base;
	int ttl_base_set;
};

void selector_config_default(struct selector_config *c)
{
	memset(c, 0, sizeof(*c));
	c->mode = ROUTER_MODE_KV;
	c->overlap_weight = 1.0;
	c->temperature = 0.0;
	c->block_size = 16;
	static const double tw[INDEXER_MEDIA + 1] = { 0, SELECTOR_W_G1, SELECTOR_W_G2,
						       SELECTOR_W_G3, SELECTOR_W_G4 };
	memcpy(c->tier_weight, tw, sizeof(tw));
}

int router_mode_parse(const char *s, enum router_mode *out)
{
	if (!strcmp(s, "kv"))
		*out = ROUTER_MODE_KV;
	else if (!strcmp(s, "round-robin"))
		*out = ROUTER_MODE_ROUND_ROBIN;
	else if (!strcmp(s, "random"))
		*out = ROUTER_MODE_RANDOM;
	else
		return err_set(-EINVAL, "--router-mode: '%s' is not kv, round-robin or random", s);
	return 0;
}

const char *router_mode_name(enum router_mode m)
{
	return m == ROUTER_MODE_KV ? "kv" : m == ROUTER_MODE_ROUND_ROBIN ? "round-robin" : "random";
}

/* splitmix64 */
static uint64_t rng_next(struct selector *s)
{
	uint64_t z = (s->rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static double rng_unit(struct selector *s)
{
	return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static size_t rng_below(struct selector *s, size_t n)
{
	return (size_t)(rng_unit(s) * (double)n) % n;
}

struct selector *selector_new(const struct selector_config *c, struct indexer *ix)
{
	struct selector *s = xcalloc(1, sizeof(*s));
	s->c = *c;
	if (s->c.block_size <= 0)
		s->c.block_size = 16;
	s->ix = ix;
	s->rng = c->seed ? c->seed : mono_ns() ^ (uint64_t)wall_ms();
	if (ix && c->approx_ttl_ms > 0) {
		s->pred = ix;
		s->pred_ttl_ms = c->approx_ttl_ms;
	} else if (ix && c->mode == ROUTER_MODE_KV && c->predict_ttl_ms > 0) {
		s->pred = indexer_new();
		s->pred_ttl_ms = c->predict_ttl_ms;
	}
	return s;
}

void selector_free(struct selector *s)
{
	if (!s)
		return;
	free(s->w);
	u64map_release(&s->wid);
	free(s->r);
	u64map_release(&s->rid);
	free(s->cands);
	free(s->ov);
	free(s->dep);
	free(s->q);
	u64map_release(&s->ttl);
	if (s->pred != s->ix)
		indexer_free(s->pred);
	free(s);
}

void selector_add_worker(struct selector *s, uint64_t worker)
{
	if (u64map_get(&s->wid, worker))
		return;
	if (s->nw == s->w_alloc) {
		s->w_alloc = s->w_alloc ? s->w_alloc * 2 : 16;
		s->w = xrealloc(s->w, s->w_alloc * sizeof(*s->w));
	}
	s->w[s->nw] = (struct sworker){ .id = worker };
	u64map_put(&s->wid, worker, (uint32_t)s->nw);
	s->nw++;
}

static void req_drop(struct selector *s, uint32_t i)
{
	u64map_del(&s->rid, s->r[i].id);
	if (i != s->nr - 1) {
		s->r[i] = s->r[s->nr - 1];
		u64map_put(&s->rid, s->r[i].id, i);
	}
	s->nr--;
}

void selector_remove_worker(struct selector *s, uint64_t worker)
{
	const uint32_t *p = u64map_get(&s->wid, worker);
	if (!p)
		return;
	uint32_t i = *p;
	for (size_t k = s->nr; k-- > 0;)
		if (s->r[k].worker_id == worker)
			req_drop(s, (uint32_t)k);
	u64map_del(&s->wid, worker);
	if (s->pred && s->pred != s->ix)
		indexer_purge(s->pred, worker);
	if (i != s->nw - 1) {
		s->w[i] = s->w[s->nw - 1];
		u64map_put(&s->wid, s->w[i].id, i);
		for (size_t k = 0; k < s->nr; k++)
			if (s->r[k].worker == s->nw - 1)
				s->r[k].worker = i;
	}
	s->nw--;
}

size_t selector_workers(const struct selector *s)
{
	return s->nw;
}

static double eff(double tracked, double off)
{
	double v = tracked + off;
	return v > 0 ? v : 0;
}

static void cands_reserve(struct selector *s, size_t n)
{
	if (s->cands_alloc >= n)
		return;
	s->cands_alloc = n * 2;
	s->cands = xrealloc(s->cands, s->cands_alloc * sizeof(*s->cands));
	s->ov = xrealloc(s->ov, s->cands_alloc * sizeof(*s->ov));
	s->dep = xrealloc(s->dep, s->cands_alloc * sizeof(*s->dep));
}

static void fill_cand(struct selector *s, size_t i, size_t n, struct route_candidate *c)
{
	const struct sworker *w = &s->w[i];
	c->worker = w->id;
	c->overlap = s->dep[i];
	c->prefill_blocks = (double)n - s->ov[i] + eff(w->prefill, w->off_prefill);
	c->decode_blocks = eff(w->decode, w->off_decode);
	c->cost = s->c.overlap_weight * c->prefill_blocks + c->decode_blocks;
}

int selector_select(struct selector *s, const uint64_t *seq_hashes, size_t n,
		    struct route_choice *out)
{
	memset(out, 0, sizeof(*out));
	if (!s->nw)
		return err_set(-ENOENT, "router: no workers");
	cands_reserve(s, s->nw);
	for (size_t i = 0; i < s->nw; i++) {
		s->ov[i] = 0;
		s->dep[i] = 0;
	}
	if (s->ix && n) {
		const struct indexer_tmatch *m;
		size_t nm = indexer_find_tiered(s->ix, seq_hashes, n, s->c.tier_weight, &m);
		for (size_t k = 0; k < nm; k++) {
			const uint32_t *p = u64map_get(&s->wid, m[k].worker);
			if (p) {
				s->ov[*p] = m[k].score;
				s->dep[*p] = m[k].depth;
			}
		}
	}
	if (s->pred && s->pred != s->ix && n) {
		/* a prefix being computed counts as cached where it is computed */
		const struct indexer_match *m;
		size_t nm = indexer_find_matches(s->pred, seq_hashes, n, &m);
		for (size_t k = 0; k < nm; k++) {
			const uint32_t *p = u64map_get(&s->wid, m[k].worker);
			if (p && m[k].depth > s->dep[*p])
				s->dep[*p] = m[k].depth;
			if (p && m[k].depth * s->c.tier_weight[1] > s->ov[*p])
				s->ov[*p] = m[k].depth * s->c.tier_weight[1];
		}
	}
	size_t pick;
	if (s->c.mode != ROUTER_MODE_KV) {
		pick = s->c.mode == ROUTER_MODE_ROUND_ROBIN ? s->rr++ % s->nw : rng_below(s, s->nw);
		fill_cand(s, pick, n, &s->cands[0]);
		out->n_cands = 1;
	} else {
		double lo = INFINITY, hi = -INFINITY;
		for (size_t i = 0; i < s->nw; i++) {
			fill_cand(s, i, n, &s->cands[i]);
			lo = fmin(lo, s->cands[i].cost);
			hi = fmax(hi, s->cands[i].cost);
		}
		out->n_cands = s->nw;
		if (s->c.temperature > 0 && hi > lo) {
			double sum = 0;
			for (size_t i = 0; i < s->nw; i++) {
				double norm = (s->cands[i].cost - lo) / (hi - lo);
				s->ov[i] = exp(-norm / s->c.temperature);
				sum += s->ov[i];
			}
			double r = rng_unit(s) * sum;
			pick = s->nw - 1;
			for (size_t i = 0; i < s->nw; i++) {
				if (r < s->ov[i]) {
					pick = i;
					break;
				}
				r -= s->ov[i];
			}
		} else {
			/* argmin; ties (and T > 0 with equal costs) uniformly */
			size_t nties = 0;
			pick = 0;
			for (size_t i = 0; i < s->nw; i++)
				if (s->cands[i].cost <= lo + 1e-9 * fmax(1.0, fabs(lo)) &&
				    rng_below(s, ++nties) == 0)
					pick = i;
		}
	}
	const struct route_candidate *c = s->c.mode == ROUTER_MODE_KV ? &s->cands[pick]
									 : &s->cands[0];
	out->worker = c->worker;
	out->overlap = c->overlap;
	out->cost = c->cost;
	out->cands = s->cands;
	return 0;
}

int selector_dispatch(struct selector *s, uint64_t req, uint64_t worker,
		      const uint64_t *seq_hashes, size_t n, uint32_t overlap, int64_t now_ms)
{
	const uint32_t *p = u64map_get(&s->wid, worker);
	if (!p)
		return err_set(-ENOENT, "router: unknown worker %016llx",
			       (unsigned long long)worker);
	if (u64map_get(&s->rid, req))
		return err_set(-EEXIST, "router: request %llu already in flight",
			       (unsigned long long)req);
	if (overlap > n)
		overlap = (uint32_t)n;
	if (s->nr == s->r_alloc) {
		s->r_alloc = s->r_alloc ? s->r_alloc * 2 : 64;
		s->r = xrealloc(s->r, s->r_alloc * sizeof(*s->r));
	}
	struct sreq *r = &s->r[s->nr];
	*r = (struct sreq){ req, *p, worker, (double)(n - overlap), (double)n, 0 };
	u64map_put(&s->rid, req, (uint32_t)s->nr);
	s->nr++;
	s->w[*p].prefill += r->prefill;
	s->w[*p].inflight++;

	if (s->pred && n) {
		if (!s->ttl_base_set) {
			s->ttl_base = now_ms;
			s->ttl_base_set = 1;
		}
		int64_t exp_ms = now_ms + s->pred_ttl_ms;
		indexer_store_hashes(s->pred, worker, seq_hashes, n);
		for (size_t i = 0; i < n; i++) {
			if (s->q_head + s->q_len == s->q_alloc) {
				if (s->q_head > s->q_alloc / 2) {
					memmove(s->q, s->q + s->q_head, s->q_len * sizeof(*s->q));
					s->q_head = 0;
				} else {
					s->q_alloc = s->q_alloc ? s->q_alloc * 2 : 256;
					s->q = xrealloc(s->q, s->q_alloc * sizeof(*s->q));
				}
			}
			s->q[s->q_head + s->q_len++] = (struct ttl_entry){ exp_ms, worker,
									    seq_hashes[i] };
			u64map_put(&s->ttl, seq_hashes[i] ^ u64map_mix(worker + 0x5bd1e995u),
				   (uint32_t)(exp_ms - s->ttl_base));
		}
	}
	return 0;
}

static struct sreq *req_find(struct selector *s, uint64_t req, uint32_t *idx)
{
	const uint32_t *p = u64map_get(&s->rid, req);
	if (!p)
		return NULL;
	*idx = *p;
	return &s->r[*p];
}

void selector_first_token(struct selector *s, uint64_t req)
{
	uint32_t i;
	struct sreq *r = req_find(s, req, &i);
	if (!r || r->decoding)
		return;
	struct sworker *w = &s->w[r->worker];
	w->prefill -= r->prefill;
	w->decode += r->total;
	r->decoding = 1;
}

void selector_finish(struct selector *s, uint64_t req)
{
	uint32_t i;
	struct sreq *r = req_find(s, req, &i);
	if (!r)
		return;
	struct sworker *w = &s->w[r->worker];
	if (r->decoding)
		w->decode -= r->total;
	else
		w->prefill -= r->prefill;
	w->inflight--;
	req_drop(s, i);
}

void selector_load_report(struct selector *s, uint64_t worker, const struct kv_load *l)
{
	const uint32_t *p = u64map_get(&s->wid, worker);
	if (!p)
		return;
	struct sworker *w = &s->w[*p];
	double bs = (double)s->c.block_size;
	double qblocks = l->queued_prefill_tokens > 0
			 ? ceil((double)l->queued_prefill_tokens / bs) : 0;
	w->off_prefill = qblocks - w->prefill;
	w->off_decode = (double)(l->active_blocks > 0 ? l->active_blocks : 0) - w->decode;
}

int selector_worker_load(const struct selector *s, uint64_t worker, double *prefill_blocks,
			 double *decode_blocks)
{
	const uint32_t *p = u64map_get(&s->wid, worker);
	if (!p)
		return err_set(-ENOENT, "router: unknown worker");
	const struct sworker *w = &s->w[*p];
	*prefill_blocks = eff(w->prefill, w->off_prefill);
	*decode_blocks = eff(w->decode, w->off_decode);
	return 0;
}

size_t selector_worker_inflight(const struct selector *s, uint64_t worker)
{
	const uint32_t *p = u64map_get(&s->wid, worker);
	return p ? s->w[*p].inflight : 0;
}

size_t selector_expire(struct selector *s, int64_t now_ms)
{
	size_t n = 0;
	while (s->q_len && s->q[s->q_head].expiry <= now_ms) {
		struct ttl_entry e = s->q[s->q_head++];
		s->q_len--;
		uint64_t key = e.hash ^ u64map_mix(e.worker + 0x5bd1e995u);
		const uint32_t *v = u64map_get(&s->ttl, key);
		if (!v || (int64_t)*v + s->ttl_base != e.expiry)
			continue;	/* refreshed later (or gone) */
		u64map_del(&s->ttl, key);
		n += indexer_remove(s->pred, e.worker, &e.hash, 1);
	}
	if (!s->q_len)
		s->q_head = 0;
	return n;
}
