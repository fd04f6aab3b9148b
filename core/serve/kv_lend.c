/*
 * kv_lend.c - a prefill worker's lent KV blocks (see kv_lend.h).
 */
#include "core/serve/kv_lend.h"

#include "core/engine/engine.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define LOG_MOD "serve"

struct hold {
	uint64_t handle, id;		/* id: the engine request holding the blocks */
	int32_t *blocks;
	int n_blocks;
	uint32_t lo, hi;		/* the blocks fetched: [lo, hi) */
	int fetched;			/* a borrower named their memory: from now
					   on only its release gives them back */
	uint64_t expires_ms;		/* mono_ms() */
};

struct kv_lend {
	struct engine *e;
	struct kvx_lender *lender;
	struct event *timer;
	long hold_ms;
	size_t counted_block_bytes;
	pthread_mutex_t mu;		/* the table and the stats */
	struct hold *holds;
	size_t n, cap;
	struct kv_lend_stats st;
};

/* Under mu: the index of handle's hold, or -1. */
static long find(const struct kv_lend *l, uint64_t handle)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->holds[i].handle == handle)
			return (long)i;
	return -1;
}

/* Under mu: take hold i out of the table (its blocks are the caller's). */
static struct hold take(struct kv_lend *l, size_t i)
{
	struct hold h = l->holds[i];
	l->holds[i] = l->holds[--l->n];
	l->st.holds = (long)l->n;
	return h;
}

/* The blocks go back to the engine's prefix cache. */
static void give_back(struct kv_lend *l, struct hold *h)
{
	if (engine_kv_release(l->e, h->id) < 0)
		LOG_WARN(LOG_MOD, "releasing held KV of request %llu: %s",
			 (unsigned long long)h->id, err_msg());
	free(h->blocks);
}

/* ---- data-plane threads (kvx_lender_ops) ------------------------------------ */

static int op_segments(void *arg, uint64_t handle, uint32_t first, uint32_t count,
		       struct iovec *iov, int cap)
{
	struct kv_lend *l = arg;
	int n = 0;

	pthread_mutex_lock(&l->mu);
	long i = find(l, handle);
	if (i < 0 || (uint64_t)first + count > (uint64_t)l->holds[i].n_blocks) {
		l->st.refused++;
		pthread_mutex_unlock(&l->mu);
		if (i < 0)
			return err_set(-ENOENT, "no KV hold %016llx here (released or expired)",
				       (unsigned long long)handle);
		return err_set(-ERANGE, "blocks %u..%u beyond KV hold %016llx", first,
			       first + count, (unsigned long long)handle);
	}
	/* Under the lock: a concurrent release must not hand the blocks back
	 * while their memory is being named. */
	for (uint32_t k = 0; k < count; k++) {
		int rc = engine_kv_segments(l->e, l->holds[i].blocks[first + k], iov + n, cap - n);
		if (rc == -ENOTSUP) {	/* mock: no data */
			n = 0;
			break;
		}
		if (rc < 0) {
			n = rc;
			break;
		}
		n += rc;
	}
	if (n >= 0)
		l->holds[i].fetched = 1;
	if (n >= 0 && count) {	/* a lender may ask more than once per fetch */
		struct hold *h = &l->holds[i];
		if (h->hi <= h->lo || first < h->lo)
			h->lo = first;
		if (first + count > h->hi)
			h->hi = first + count;
	} else if (n < 0) {
		l->st.refused++;
	}
	pthread_mutex_unlock(&l->mu);
	return n;
}

static int op_regions(void *arg, struct iovec *regions, int cap)
{
	struct kv_lend *l = arg;
	int rc = engine_kv_regions(l->e, regions, cap);
	return rc < 0 ? 0 : rc;	/* none (mock): tcp only */
}

static void op_release(void *arg, uint64_t handle)
{
	struct kv_lend *l = arg;
	struct hold h;

	pthread_mutex_lock(&l->mu);
	long i = find(l, handle);
	if (i >= 0) {
		h = take(l, (size_t)i);
		l->st.lent++;
		l->st.bytes += (uint64_t)(h.hi > h.lo ? h.hi - h.lo : 0) * l->counted_block_bytes;
	}
	pthread_mutex_unlock(&l->mu);
	if (i >= 0)
		give_back(l, &h);
}

/* ---- loop thread ---------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct kv_lend *l = arg;
	uint64_t now = mono_ms();
	(void)fd;
	(void)what;
	for (;;) {
		struct hold h;
		int found = 0;
		pthread_mutex_lock(&l->mu);
		for (size_t i = 0; i < l->n && !found; i++) {
			/* Not under a transfer: the lender releases those when
			 * its connection ends, which has a deadline. */
			if (l->holds[i].expires_ms <= now && !l->holds[i].fetched) {
				h = take(l, i);
				l->st.expired++;
				found = 1;
			}
		}
		pthread_mutex_unlock(&l->mu);
		if (!found)
			break;
		LOG_DEBUG(LOG_MOD, "KV hold %016llx expired unreleased",
			  (unsigned long long)h.handle);
		give_back(l, &h);
	}
}

int kv_lend_hold(struct kv_lend *l, uint64_t id, uint64_t *handle, int *n_tokens)
{
	struct hold h = { .id = id, .expires_ms = mono_ms() + (uint64_t)l->hold_ms };
	int n = engine_kv_blocks(l->e, id, NULL, 0, NULL);
	if (n < 0)
		return n;
	h.blocks = xmalloc((size_t)(n ? n : 1) * sizeof(*h.blocks));
	h.n_blocks = engine_kv_blocks(l->e, id, h.blocks, n, n_tokens);
	/* The handle is all a peer needs to take or drop the blocks: random. */
	if (h.n_blocks != n || getrandom(&h.handle, sizeof(h.handle), 0) != sizeof(h.handle)) {
		int rc = h.n_blocks < 0 ? h.n_blocks
					: err_set(-EIO, "no random handle for a KV hold: %s",
						  strerror(errno));
		free(h.blocks);
		return rc;
	}
	pthread_mutex_lock(&l->mu);
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->holds = xrealloc(l->holds, l->cap * sizeof(*l->holds));
	}
	l->holds[l->n++] = h;
	l->st.holds = (long)l->n;
	pthread_mutex_unlock(&l->mu);
	*handle = h.handle;
	return 0;
}

int kv_lend_new(struct event_base *base, struct engine *e, const struct kv_lend_conf *c,
		struct kv_lend **out)
{
	struct kv_lend *l = xcalloc(1, sizeof(*l));
	const struct kvx_lender_ops ops = { op_segments, op_regions, op_release, l };
	l->e = e;
	l->hold_ms = c->hold_ms;
	l->counted_block_bytes = c->counted_block_bytes;
	pthread_mutex_init(&l->mu, NULL);
	int rc = kvx_lender_new(c->host, c->port, c->transport, c->tls, c->layout,
				c->block_bytes, &ops, &l->lender);
	if (rc < 0) {
		pthread_mutex_destroy(&l->mu);
		free(l);
		return rc;
	}
	/* Expiry is checked a few times per timeout, at most once per 10 ms. */
	long tick = c->hold_ms / 4 < 10 ? 10 : c->hold_ms / 4 > 1000 ? 1000 : c->hold_ms / 4;
	struct timeval tv = { tick / 1000, (tick % 1000) * 1000 };
	l->timer = event_new(base, -1, EV_PERSIST, on_timer, l);
	event_add(l->timer, &tv);
	*out = l;
	return 0;
}

const char *kv_lend_addr_json(const struct kv_lend *l)
{
	return kvx_lender_addr_json(l->lender);
}

void kv_lend_stats(struct kv_lend *l, struct kv_lend_stats *out)
{
	pthread_mutex_lock(&l->mu);
	*out = l->st;
	pthread_mutex_unlock(&l->mu);
}

void kv_lend_free(struct kv_lend *l)
{
	if (!l)
		return;
	kvx_lender_free(l->lender);	/* no op runs after this */
	event_free(l->timer);
	for (size_t i = 0; i < l->n; i++)
		give_back(l, &l->holds[i]);
	free(l->holds);
	pthread_mutex_destroy(&l->mu);
	free(l);
}
