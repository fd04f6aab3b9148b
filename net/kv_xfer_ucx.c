/*
 * kv_xfer_ucx.c - the UCX transport of the data plane (kv_xfer_ucx.h).
 *
 * libucp.so.0 is opened on first use; the UCP types below are the parts
 * of UCX 1.13's ABI this file touches (ucp/api/ucp.h): every parameter
 * struct starts with a field_mask saying which fields UCP reads, so each
 * is declared up to its last field used here and padded with zeros.
 * One UCP context per process (made on first use); a worker per lender
 * (with a thread progressing it: over transports such as tcp a get needs
 * the target's worker to answer) and per borrower.
 */
#include "net/kv_xfer.h"
#include "net/kv_xfer_ucx.h"
#include "net/kv_xfer_wire.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the UCP ABI (1.13) ------------------------------------------------ */

typedef int ucs_status_t;		/* UCS_OK 0, UCS_INPROGRESS 1, errors < 0 */
typedef void *ucp_context_h, *ucp_worker_h, *ucp_ep_h, *ucp_mem_h, *ucp_rkey_h;
typedef struct ucp_address ucp_address_t;

#define UCS_OK 0
#define UCS_INPROGRESS 1
#define UCS_ERR_LAST (-100)
#define UCS_PTR_IS_ERR(p) ((uintptr_t)(p) >= (uintptr_t)UCS_ERR_LAST)

#define UCP_API_MAJOR 1
#define UCP_API_MINOR 13
#define UCP_PARAM_FIELD_FEATURES (1u << 0)
#define UCP_FEATURE_RMA (1u << 1)
#define UCP_WORKER_PARAM_FIELD_THREAD_MODE (1u << 0)
#define UCS_THREAD_MODE_SERIALIZED 1
#define UCP_MEM_MAP_PARAM_FIELD_ADDRESS (1u << 0)
#define UCP_MEM_MAP_PARAM_FIELD_LENGTH (1u << 1)
#define UCP_MEM_MAP_PARAM_FIELD_FLAGS (1u << 2)
#define UCP_MEM_MAP_ALLOCATE (1u << 1)
#define UCP_MEM_ATTR_FIELD_ADDRESS (1u << 0)
#define UCP_MEM_ATTR_FIELD_LENGTH (1u << 1)
#define UCP_EP_PARAM_FIELD_REMOTE_ADDRESS (1u << 0)
#define UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE (1u << 1)
#define UCP_ERR_HANDLING_MODE_PEER 1
#define UCP_OP_ATTR_FIELD_FLAGS (1u << 4)
#define UCP_EP_CLOSE_FLAG_FORCE (1u << 0)

struct ucp_params {
	uint64_t field_mask;
	uint64_t features;
	uint8_t pad[256];
};

struct ucp_worker_params {
	uint64_t field_mask;
	int thread_mode;
	uint8_t pad[512];
};

struct ucp_mem_map_params {
	uint64_t field_mask;
	void *address;
	size_t length;
	unsigned flags;
	uint8_t pad[256];
};

struct ucp_mem_attr {
	uint64_t field_mask;
	void *address;
	size_t length;
	uint8_t pad[256];
};

struct ucp_ep_params {
	uint64_t field_mask;
	const ucp_address_t *address;
	int err_mode;
	uint8_t pad[512];
};

struct ucp_request_param {
	uint32_t op_attr_mask;
	uint32_t flags;
	uint8_t pad[256];
};

static struct {
	void (*get_version)(unsigned *, unsigned *, unsigned *);
	ucs_status_t (*init_version)(unsigned, unsigned, const struct ucp_params *, const void *,
				     ucp_context_h *);
	ucs_status_t (*worker_create)(ucp_context_h, const struct ucp_worker_params *,
				      ucp_worker_h *);
	void (*worker_destroy)(ucp_worker_h);
	ucs_status_t (*worker_get_address)(ucp_worker_h, ucp_address_t **, size_t *);
	void (*worker_release_address)(ucp_worker_h, ucp_address_t *);
	unsigned (*worker_progress)(ucp_worker_h);
	ucs_status_t (*mem_map)(ucp_context_h, const struct ucp_mem_map_params *, ucp_mem_h *);
	ucs_status_t (*mem_unmap)(ucp_context_h, ucp_mem_h);
	ucs_status_t (*mem_query)(ucp_mem_h, struct ucp_mem_attr *);
	ucs_status_t (*rkey_pack)(ucp_context_h, ucp_mem_h, void **, size_t *);
	void (*rkey_buffer_release)(void *);
	ucs_status_t (*ep_create)(ucp_worker_h, const struct ucp_ep_params *, ucp_ep_h *);
	void *(*ep_close_nbx)(ucp_ep_h, const struct ucp_request_param *);
	ucs_status_t (*ep_rkey_unpack)(ucp_ep_h, const void *, ucp_rkey_h *);
	void (*rkey_destroy)(ucp_rkey_h);
	ucs_status_t (*rkey_ptr)(ucp_rkey_h, uint64_t, void **);
	void *(*get_nbx)(ucp_ep_h, void *, size_t, uint64_t, ucp_rkey_h,
			 const struct ucp_request_param *);
	ucs_status_t (*request_check_status)(void *);
	void (*request_free)(void *);
	const char *(*status_string)(ucs_status_t);
} ucp;

static const struct {
	const char *name;
	size_t offset;
} ucp_syms[] = {
#define SYM(field, name) { name, offsetof(__typeof__(ucp), field) }
	SYM(get_version, "ucp_get_version"),
	SYM(init_version, "ucp_init_version"),
	SYM(worker_create, "ucp_worker_create"),
	SYM(worker_destroy, "ucp_worker_destroy"),
	SYM(worker_get_address, "ucp_worker_get_address"),
	SYM(worker_release_address, "ucp_worker_release_address"),
	SYM(worker_progress, "ucp_worker_progress"),
	SYM(mem_map, "ucp_mem_map"),
	SYM(mem_unmap, "ucp_mem_unmap"),
	SYM(mem_query, "ucp_mem_query"),
	SYM(rkey_pack, "ucp_rkey_pack"),
	SYM(rkey_buffer_release, "ucp_rkey_buffer_release"),
	SYM(ep_create, "ucp_ep_create"),
	SYM(ep_close_nbx, "ucp_ep_close_nbx"),
	SYM(ep_rkey_unpack, "ucp_ep_rkey_unpack"),
	SYM(rkey_destroy, "ucp_rkey_destroy"),
	SYM(rkey_ptr, "ucp_rkey_ptr"),
	SYM(get_nbx, "ucp_get_nbx"),
	SYM(request_check_status, "ucp_request_check_status"),
	SYM(request_free, "ucp_request_free"),
	SYM(status_string, "ucs_status_string"),
#undef SYM
};

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static ucp_context_h context;
static char describe[256];
static const char *unusable;	/* why not, or NULL when usable */

static void load(void)
{
	/* Without memory events UCX leaves malloc and mmap alone (it would
	 * patch them for the whole process, to keep a cache of registrations
	 * that the pool, mapped once, does not need; the patches also break
	 * sanitizers).  The user's setting wins. */
	setenv("UCX_MEM_EVENTS", "no", 0);
	void *h = dlopen("libucp.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		snprintf(describe, sizeof(describe), "ucx not found (%s)", dlerror());
		unusable = describe;
		return;
	}
	for (size_t i = 0; i < ARRAY_SIZE(ucp_syms); i++) {
		void *fn = dlsym(h, ucp_syms[i].name);
		if (!fn) {
			snprintf(describe, sizeof(describe), "ucx unusable (libucp.so.0 lacks %s)",
				 ucp_syms[i].name);
			unusable = describe;
			return;
		}
		memcpy((char *)&ucp + ucp_syms[i].offset, &fn, sizeof(fn));
	}
	unsigned major, minor, release;
	ucp.get_version(&major, &minor, &release);
	struct ucp_params params = { .field_mask = UCP_PARAM_FIELD_FEATURES,
				     .features = UCP_FEATURE_RMA };
	ucs_status_t st = ucp.init_version(UCP_API_MAJOR, UCP_API_MINOR, &params, NULL, &context);
	if (st != UCS_OK) {
		snprintf(describe, sizeof(describe), "ucx %u.%u.%u unusable (ucp_init: %s)", major,
			 minor, release, ucp.status_string(st));
		unusable = describe;
		return;
	}
	snprintf(describe, sizeof(describe), "ucx %u.%u.%u", major, minor, release);
}

int kvx_ucx_available(const char **why)
{
	pthread_once(&load_once, load);
	if (why)
		*why = unusable;
	return !unusable;
}

const char *kvx_ucx_describe(void)
{
	pthread_once(&load_once, load);
	return describe;
}

static int ucx_err(ucs_status_t st, const char *what)
{
	return err_set(-EIO, "UCX %s: %s", what, ucp.status_string(st));
}

static int worker_new(ucp_worker_h *w)
{
	struct ucp_worker_params params = { .field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
					    .thread_mode = UCS_THREAD_MODE_SERIALIZED };
	if (!kvx_ucx_available(NULL))
		return err_set(-ENOTSUP, "%s", describe);
	ucs_status_t st = ucp.worker_create(context, &params, w);
	return st == UCS_OK ? 0 : ucx_err(st, "worker");
}

/* Wait for a request of UCP's (NULL: done at once) and free it. */
static ucs_status_t wait_request(ucp_worker_h w, void *req)
{
	if (!req)
		return UCS_OK;
	if (UCS_PTR_IS_ERR(req))
		return (ucs_status_t)(intptr_t)req;
	ucs_status_t st;
	while ((st = ucp.request_check_status(req)) == UCS_INPROGRESS)
		ucp.worker_progress(w);
	ucp.request_free(req);
	return st;
}

/* ---- pool memory ------------------------------------------------------- */

/* Memory UCX allocated (kvx_ucx_pool_alloc), mapped once: the lender
 * packs its rkeys from these handles rather than mapping it again. */
struct pool_mem {
	uintptr_t base;
	size_t len;
	ucp_mem_h memh;
	struct pool_mem *next;
};

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_mem *pool_mems;

void *kvx_ucx_pool_alloc(size_t bytes)
{
	struct ucp_mem_map_params mp = {
		.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
			      UCP_MEM_MAP_PARAM_FIELD_FLAGS,
		.length = bytes,
		.flags = UCP_MEM_MAP_ALLOCATE,
	};
	struct ucp_mem_attr ma = { .field_mask = UCP_MEM_ATTR_FIELD_ADDRESS |
						 UCP_MEM_ATTR_FIELD_LENGTH };
	ucp_mem_h memh;
	if (!kvx_ucx_available(NULL) || ucp.mem_map(context, &mp, &memh) != UCS_OK)
		return NULL;
	if (ucp.mem_query(memh, &ma) != UCS_OK || ma.length < bytes) {
		ucp.mem_unmap(context, memh);
		return NULL;
	}
	struct pool_mem *m = xcalloc(1, sizeof(*m));
	m->base = (uintptr_t)ma.address;
	m->len = bytes;
	m->memh = memh;
	pthread_mutex_lock(&pool_mu);
	m->next = pool_mems;
	pool_mems = m;
	pthread_mutex_unlock(&pool_mu);
	return ma.address;
}

void kvx_ucx_pool_free(void *p)
{
	struct pool_mem **pp, *m;
	pthread_mutex_lock(&pool_mu);
	for (pp = &pool_mems; (m = *pp) && m->base != (uintptr_t)p; pp = &m->next)
		;
	if (m)
		*pp = m->next;
	pthread_mutex_unlock(&pool_mu);
	if (m) {
		ucp.mem_unmap(context, m->memh);
		free(m);
	}
}

/* The handle of the UCX-allocated memory holding [base, base+len), or
 * NULL. */
static ucp_mem_h pool_memh(uintptr_t base, size_t len)
{
	ucp_mem_h memh = NULL;
	pthread_mutex_lock(&pool_mu);
	for (struct pool_mem *m = pool_mems; m && !memh; m = m->next)
		if (base >= m->base && base + len <= m->base + m->len)
			memh = m->memh;
	pthread_mutex_unlock(&pool_mu);
	return memh;
}

/* ---- lender ------------------------------------------------------------ */

struct region {
	uintptr_t base;
	size_t len;
	ucp_mem_h memh;
	int mapped;		/* memh is this lender's (else the pool's) */
	void *rkey;
	size_t rkey_len;
};

struct kvx_ucx_lender {
	ucp_worker_h worker;
	void *addr;
	size_t addr_len;
	struct region *regions;
	int n_regions;
	pthread_t thread;
	int running;
	atomic_int stop;
};

/* Progress the worker: gets over transports without one-sided access
 * (tcp, say) need its answers.  Sleeps briefly while idle. */
static void *progress_loop(void *arg)
{
	struct kvx_ucx_lender *u = arg;
	int idle = 0;
	while (!atomic_load(&u->stop)) {
		if (ucp.worker_progress(u->worker))
			idle = 0;
		else if (++idle > 100)
			usleep(100);
	}
	return NULL;
}

int kvx_ucx_lender_new(const struct iovec *regions, int n, struct kvx_ucx_lender **out)
{
	struct kvx_ucx_lender *u = xcalloc(1, sizeof(*u));
	ucp_address_t *addr;
	ucs_status_t st;
	int rc;

	if ((rc = worker_new(&u->worker)) < 0) {
		free(u);
		return rc;
	}
	if ((st = ucp.worker_get_address(u->worker, &addr, &u->addr_len)) != UCS_OK) {
		rc = ucx_err(st, "worker address");
		goto fail;
	}
	u->addr = xmalloc(u->addr_len);
	memcpy(u->addr, addr, u->addr_len);
	ucp.worker_release_address(u->worker, addr);
	u->regions = xcalloc((size_t)n, sizeof(*u->regions));
	for (; u->n_regions < n; u->n_regions++) {
		struct region *r = &u->regions[u->n_regions];
		struct ucp_mem_map_params mp = {
			.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH,
			.address = regions[u->n_regions].iov_base,
			.length = regions[u->n_regions].iov_len,
		};
		void *rkey;
		r->base = (uintptr_t)mp.address;
		r->len = mp.length;
		if (!(r->memh = pool_memh(r->base, r->len))) {
			if ((st = ucp.mem_map(context, &mp, &r->memh)) != UCS_OK) {
				rc = ucx_err(st, "registering the KV pool");
				goto fail;
			}
			r->mapped = 1;
		}
		if ((st = ucp.rkey_pack(context, r->memh, &rkey, &r->rkey_len)) != UCS_OK) {
			if (r->mapped)
				ucp.mem_unmap(context, r->memh);
			rc = ucx_err(st, "packing an rkey");
			goto fail;
		}
		r->rkey = xmalloc(r->rkey_len);
		memcpy(r->rkey, rkey, r->rkey_len);
		ucp.rkey_buffer_release(rkey);
		if (r->rkey_len > KVX_MAX_RKEY) {
			u->n_regions++;
			rc = err_set(-EMSGSIZE, "UCX rkey of %zu bytes (at most %u)", r->rkey_len,
				     KVX_MAX_RKEY);
			goto fail;
		}
	}
	if ((rc = pthread_create(&u->thread, NULL, progress_loop, u))) {
		rc = err_set(-rc, "starting the UCX progress thread: %s", strerror(rc));
		goto fail;
	}
	u->running = 1;
	*out = u;
	return 0;
fail:
	kvx_ucx_lender_free(u);
	return rc;
}

int kvx_ucx_lender_describe(const struct kvx_ucx_lender *u, const struct iovec *segs, int n,
			    struct strbuf *sb)
{
	size_t start = sb->len;
	kvx_reply_add_ucx_head(sb, u->addr, (uint32_t)u->addr_len, (uint32_t)n);
	for (int i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)segs[i].iov_base;
		const struct region *r = NULL;
		for (int j = 0; j < u->n_regions && !r; j++)
			if (a >= u->regions[j].base &&
			    a + segs[i].iov_len <= u->regions[j].base + u->regions[j].len)
				r = &u->regions[j];
		if (!r) {
			sb_setlen(sb, start);
			return err_set(-EFAULT, "KV segment %d (%zu bytes at %p) is outside the "
				       "registered pool", i, segs[i].iov_len, segs[i].iov_base);
		}
		kvx_reply_add_ucx_seg(sb, a, segs[i].iov_len, r->rkey, (uint32_t)r->rkey_len);
	}
	return 0;
}

void kvx_ucx_lender_free(struct kvx_ucx_lender *u)
{
	if (!u)
		return;
	if (u->running) {
		atomic_store(&u->stop, 1);
		pthread_join(u->thread, NULL);
	}
	for (int i = 0; i < u->n_regions; i++) {
		if (u->regions[i].mapped)
			ucp.mem_unmap(context, u->regions[i].memh);
		free(u->regions[i].rkey);
	}
	ucp.worker_destroy(u->worker);
	free(u->regions);
	free(u->addr);
	free(u);
}

/* ---- borrower ---------------------------------------------------------- */

#define MAX_PEERS 64		/* endpoints a borrower keeps */

/* A lender's endpoint and the rkeys unpacked on it, kept for the next
 * fetch from that lender (its worker address names it). */
struct peer {
	uint8_t *addr;
	uint32_t addr_len;
	ucp_ep_h ep;
	struct {
		uint8_t *buf;
		uint32_t len;
		ucp_rkey_h rkey;
	} *keys;
	int n_keys;
	struct peer *next;
};

struct kvx_ucx_borrower {
	pthread_mutex_t mu;
	ucp_worker_h worker;
	struct peer *peers;	/* most recently used first */
	int n_peers;
};

int kvx_ucx_borrower_new(struct kvx_ucx_borrower **out)
{
	struct kvx_ucx_borrower *b = xcalloc(1, sizeof(*b));
	int rc = worker_new(&b->worker);
	if (rc < 0) {
		free(b);
		return rc;
	}
	pthread_mutex_init(&b->mu, NULL);
	*out = b;
	return 0;
}

/* Close p's endpoint (forced: what it still runs ends UCS_ERR_CANCELED)
 * and free it. */
static void peer_free(struct kvx_ucx_borrower *b, struct peer *p)
{
	struct ucp_request_param force = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
					   .flags = UCP_EP_CLOSE_FLAG_FORCE };
	wait_request(b->worker, ucp.ep_close_nbx(p->ep, &force));
	for (int i = 0; i < p->n_keys; i++) {
		ucp.rkey_destroy(p->keys[i].rkey);
		free(p->keys[i].buf);
	}
	free(p->keys);
	free(p->addr);
	free(p);
}

/* The endpoint to the lender at addr, made (and the oldest one dropped)
 * when there is none; moved to the front. */
static int peer_get(struct kvx_ucx_borrower *b, const struct kvx_reply *r, struct peer **out)
{
	struct peer **pp, *p;
	for (pp = &b->peers; (p = *pp); pp = &p->next)
		if (p->addr_len == r->ucx_addr_len && !memcmp(p->addr, r->ucx_addr, p->addr_len)) {
			*pp = p->next;
			break;
		}
	if (!p) {
		struct ucp_ep_params params = {
			.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS |
				      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE,
			.address = (const ucp_address_t *)r->ucx_addr,
			.err_mode = UCP_ERR_HANDLING_MODE_PEER,
		};
		ucp_ep_h ep;
		ucs_status_t st = ucp.ep_create(b->worker, &params, &ep);
		if (st != UCS_OK)
			return ucx_err(st, "connecting to the lender");
		p = xcalloc(1, sizeof(*p));
		p->addr = xmalloc(r->ucx_addr_len);
		memcpy(p->addr, r->ucx_addr, r->ucx_addr_len);
		p->addr_len = r->ucx_addr_len;
		p->ep = ep;
		b->n_peers++;
	}
	p->next = b->peers;
	b->peers = p;
	if (b->n_peers > MAX_PEERS) {
		for (pp = &b->peers; (*pp)->next; pp = &(*pp)->next)
			;
		peer_free(b, *pp);
		*pp = NULL;
		b->n_peers--;
	}
	*out = p;
	return 0;
}

/* Drop the endpoint at the front (after a failure on it). */
static void peer_drop_front(struct kvx_ucx_borrower *b)
{
	struct peer *p = b->peers;
	b->peers = p->next;
	b->n_peers--;
	peer_free(b, p);
}

static int rkey_get(struct peer *p, const struct kvx_ucx_seg *s, ucp_rkey_h *out)
{
	for (int i = 0; i < p->n_keys; i++)
		if (p->keys[i].len == s->rkey_len && !memcmp(p->keys[i].buf, s->rkey, s->rkey_len)) {
			*out = p->keys[i].rkey;
			return 0;
		}
	if (p->n_keys >= (int)KVX_MAX_SEGS)
		return err_set(-EPROTO, "lender sent too many distinct rkeys");
	ucs_status_t st = ucp.ep_rkey_unpack(p->ep, s->rkey, out);
	if (st != UCS_OK)
		return ucx_err(st, "unpacking the lender's rkey");
	p->keys = xrealloc(p->keys, ((size_t)p->n_keys + 1) * sizeof(*p->keys));
	p->keys[p->n_keys].buf = xmalloc(s->rkey_len);
	memcpy(p->keys[p->n_keys].buf, s->rkey, s->rkey_len);
	p->keys[p->n_keys].len = s->rkey_len;
	p->keys[p->n_keys++].rkey = *out;
	return 0;
}

/* Issue the gets: each piece where a lender segment and a destination
 * segment overlap.  Requests still running go to *reqs.  A piece of a
 * lender pool that UCX maps here (shared memory it allocated, on this
 * host: ucp_rkey_ptr) is copied instead: UCX 1.13 gets it through the
 * lender's worker otherwise (dyn-kv-transfer(7)). */
static int issue_gets(struct peer *p, const struct kvx_reply *r, const struct iovec *dst,
		      int n_dst, atomic_int *cancel, void ***reqs, int *n_reqs)
{
	const uint8_t *at = r->segs;
	struct kvx_ucx_seg s = { 0 };
	uint64_t s_off = 0;
	size_t d_off = 0;
	int d = 0, cap = 0, rc;
	struct ucp_request_param none = { 0 };
	ucp_rkey_h rkey = NULL;

	for (uint32_t i = 0; i < r->n_seg;) {
		if (s_off == s.len) {
			kvx_reply_ucx_seg(&at, &s);
			s_off = 0;
			if (s.len == 0) {
				i++;
				continue;
			}
			if ((rc = rkey_get(p, &s, &rkey)) < 0)
				return rc;
		}
		while (d < n_dst && d_off == dst[d].iov_len)
			d++, d_off = 0;
		if (d == n_dst)
			return err_set(-EPROTO, "lender segments exceed the destination");
		size_t n = dst[d].iov_len - d_off;
		if (n > s.len - s_off)
			n = (size_t)(s.len - s_off);
		void *src, *req = NULL;
		if (ucp.rkey_ptr(rkey, s.addr + s_off, &src) == UCS_OK) {
			if (atomic_load(cancel))
				return err_set(-ECANCELED, "UCX get canceled");
			memcpy((char *)dst[d].iov_base + d_off, src, n);
		} else {
			req = ucp.get_nbx(p->ep, (char *)dst[d].iov_base + d_off, n,
					  s.addr + s_off, rkey, &none);
		}
		if (UCS_PTR_IS_ERR(req))
			return ucx_err((ucs_status_t)(intptr_t)req, "get");
		if (req) {
			if (*n_reqs == cap) {
				cap = cap ? 2 * cap : 64;
				*reqs = xrealloc(*reqs, (size_t)cap * sizeof(**reqs));
			}
			(*reqs)[(*n_reqs)++] = req;
		}
		s_off += n;
		d_off += n;
		if (s_off == s.len)
			i++;
	}
	return 0;
}

int kvx_ucx_get(struct kvx_ucx_borrower *b, const struct kvx_reply *r, const struct iovec *dst,
		int n_dst, uint64_t deadline_ms, atomic_int *cancel)
{
	void **reqs = NULL;
	int n_reqs = 0, rc;
	struct peer *p;

	pthread_mutex_lock(&b->mu);
	if ((rc = peer_get(b, r, &p)) < 0) {
		pthread_mutex_unlock(&b->mu);
		return rc;
	}
	rc = issue_gets(p, r, dst, n_dst, cancel, &reqs, &n_reqs);
	/* Progress until every get ends; a failure, the deadline or a cancel
	 * stops waiting. */
	for (int i = 0; rc == 0 && i < n_reqs;) {
		ucs_status_t st = ucp.request_check_status(reqs[i]);
		if (st == UCS_INPROGRESS) {
			ucp.worker_progress(b->worker);
			if (atomic_load(cancel))
				rc = err_set(-ECANCELED, "UCX get canceled");
			else if (mono_ms() >= deadline_ms)
				rc = err_set(-ETIMEDOUT, "UCX get: timed out");
			continue;
		}
		ucp.request_free(reqs[i]);
		reqs[i] = reqs[--n_reqs];
		if (st != UCS_OK)
			rc = ucx_err(st, "get");
	}
	/* After a failure the endpoint goes: its forced close ends the gets
	 * still running (UCS_ERR_CANCELED), after which nothing writes into
	 * dst. */
	if (rc < 0) {
		peer_drop_front(b);
		for (int i = 0; i < n_reqs; i++)
			wait_request(b->worker, reqs[i]);
	}
	pthread_mutex_unlock(&b->mu);
	free(reqs);
	return rc;
}

void kvx_ucx_borrower_free(struct kvx_ucx_borrower *b)
{
	if (!b)
		return;
	while (b->peers)
		peer_drop_front(b);
	ucp.worker_destroy(b->worker);
	pthread_mutex_destroy(&b->mu);
	free(b);
}
