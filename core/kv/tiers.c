/*
 * tiers.c - G2 host memory, G3 local files, G4 shared files (see tiers.h).
 *
 * One entry per block held in G2 or G3, or written to G4 by this worker,
 * in a hash map (seq hash -> entry index) and on its tier's LRU list
 * (head: most recent).  A G2 block pushed out by a newer one is
 * "spilling" until the thread has written it below; it stays readable
 * from memory meanwhile.  G4's entries are what this worker announced
 * there: at most shared_bytes of them (past that its LRU files there are
 * deleted), and an entry whose file is gone (pruned by the share's owner,
 * or by another worker that wrote the same block) is dropped when a load
 * misses it or when the thread's sweep (every sweep_ms) finds it missing;
 * each drop is a removal event.  A lookup of a block not indexed asks the
 * filesystem: other workers add to G4.
 *
 * The thread's queue: onboarding jobs (kv_tiers_run_first) go before the
 * spills already queued, so a prompt's prefix is not read after the
 * writes of the blocks its own allocation just evicted.  A G3 block
 * moving to G4 is renamed when both are on one filesystem (else copied).
 *
 * The cost rule (kv_tiers_load_seconds): a tier's read bandwidth is taken
 * as G2 2 GB/s, G3 200 MB/s, G4 100 MB/s, below what the development
 * machine measured (360 KB blocks, 256 of them: memcpy 5.8 GB/s, a G2
 * load 4.8 GB/s, a G3 load from the page cache 2.1 GB/s, G3 writes
 * 0.5 GB/s) to leave room for cold disks and network filesystems; the
 * engine onboards when that time is below the time its measured prefill
 * rate needs for the same tokens (smollm2-135m's shape on one core: ~100
 * tokens/s, 160 ms a 16-token block against 2 ms to read it from G3, so
 * on the CPU backend onboarding always wins).
 */
#include "core/kv/tiers.h"
#include "core/byteorder.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/log.h"
#include "core/u64map.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#define LOG_MOD "kv-tiers"

static const char KVB_MAGIC[8] = { 'D', 'Y', 'N', 'K', 'V', 'B', 'L', 'K' };

/* Which file this worker wrote (G4): another worker's copy of the same
 * block, renamed over ours, is another inode or mtime. */
struct fid {
	uint64_t ino;
	int64_t mtime_ns;
};

struct tent {
	uint64_t hash;
	void *data;			/* G2 (and spilling): the block, a pool buffer */
	int tier;			/* KV_TIER_HOST, _DISK or _SHARED; 0: free slot */
	int spilling;
	struct fid id;			/* G4: the file we wrote */
	uint32_t prev, next;		/* LRU links; NIL at the ends */
};

#define NIL UINT32_MAX

struct lru {
	uint32_t head, tail;
	uint64_t n;
};

struct job {
	void (*fn)(void *arg);
	void *arg;
	uint32_t spill;			/* an entry to write below (fn NULL) */
	int first;			/* kv_tiers_run_first's */
	struct job *next;
};

struct kv_tiers {
	struct kv_tiers_opts o;
	char *disk_dir, *shared_dir;
	uint64_t fp;
	size_t bb;			/* block bytes */
	uint64_t file_bytes;		/* header + block */
	char describe[512];

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct u64map map;
	struct tent *ents;
	uint32_t n_ents, cap_ents, free_head;
	uint64_t n_spilling;		/* G2 entries being written below */
	struct lru lru[KV_TIER_COUNT];
	int disk_ok, shared_ok;		/* writes still work */
	struct job *jobs, *jobs_tail;
	int stop;
	pthread_t thread;
	uint64_t next_sweep_ns;		/* G4's next check for vanished files */
	struct kv_tiers_stats st;
	kv_tiers_moved_fn moved;	/* under mu */
	void *moved_arg;

	/* G2's buffers: one mapping of max_bufs blocks (G2's capacity and
	 * room for blocks on their way to a file), handed out in order the
	 * first time (n_carved), then reused from the free stack; the thread
	 * faults pages in ahead of the carving (n_faulted), so that the
	 * step thread's copy never waits for the kernel */
	char *pool;
	size_t pool_bytes;
	uint32_t max_bufs, n_carved, n_faulted, ahead;
	void **free_bufs;
	uint32_t n_free;
};

/* Tell the owner a block entered (stored 1) or left (0) a tier. */
static void moved(const struct kv_tiers *t, uint64_t hash, int tier, int stored)
{
	if (t->moved)
		t->moved(t->moved_arg, tier, stored, hash);
}

const char *kv_tier_name(enum kv_tier tier)
{
	static const char *const names[] = { "none", "G1", "G2", "G3", "G4" };
	return tier < KV_TIER_COUNT ? names[tier] : "?";
}

int kv_tiers_wanted(const struct kv_tiers_opts *o)
{
	return o->host_bytes > 0 || (o->disk_dir && *o->disk_dir) ||
	       (o->shared_dir && *o->shared_dir);
}

uint64_t kv_tiers_fingerprint(const char *model_id, const struct kv_layout *l)
{
	uint8_t b[40];
	put_le64(b, XXH3_64bits(model_id, strlen(model_id)));
	put_le64(b + 8, (uint64_t)l->n_layers);
	put_le64(b + 16, (uint64_t)l->block_size);
	put_le64(b + 24, (uint64_t)l->kv_dim);
	put_le64(b + 32, (uint64_t)l->dtype);
	return XXH3_64bits(b, sizeof(b));
}

/* ---- block files ---------------------------------------------------------- */

void kvb_header_encode(const struct kvb_header *h, unsigned char out[KVB_HEADER_BYTES])
{
	memset(out, 0, KVB_HEADER_BYTES);
	memcpy(out, KVB_MAGIC, 8);
	put_le32(out + 8, KVB_VERSION);
	put_le32(out + 12, KVB_HEADER_BYTES);
	put_le64(out + 16, h->fingerprint);
	put_le64(out + 24, h->seq_hash);
	put_le64(out + 32, h->payload_bytes);
	put_le64(out + 40, h->payload_xxh3);
	put_le64(out + 48, XXH3_64bits(out, 48));
}

int kvb_header_parse(const void *buf, size_t len, struct kvb_header *h)
{
	const uint8_t *p = buf;

	if (len < KVB_HEADER_BYTES)
		return err_set(-EINVAL, "block file: %zu bytes, shorter than its header", len);
	if (memcmp(p, KVB_MAGIC, 8))
		return err_set(-EINVAL, "block file: bad magic");
	if (get_le32(p + 8) != KVB_VERSION || get_le32(p + 12) != KVB_HEADER_BYTES)
		return err_set(-EINVAL, "block file: version %u, header %u bytes not understood",
			       get_le32(p + 8), get_le32(p + 12));
	if (get_le64(p + 48) != XXH3_64bits(p, 48) || get_le64(p + 56))
		return err_set(-EINVAL, "block file: header checksum mismatch");
	h->fingerprint = get_le64(p + 16);
	h->seq_hash = get_le64(p + 24);
	h->payload_bytes = get_le64(p + 32);
	h->payload_xxh3 = get_le64(p + 40);
	return 0;
}

static void file_path(char *out, size_t cap, const char *dir, uint64_t fp, uint64_t hash)
{
	snprintf(out, cap, "%s/%016" PRIx64 "-%016" PRIx64 ".kvb", dir, fp, hash);
}

/* Read and check a block file into out; 0 or -ENOENT (missing) or -EINVAL
 * (not a valid block of ours). */
static int file_read(const struct kv_tiers *t, const char *path, uint64_t hash, void *out)
{
	unsigned char hdr[KVB_HEADER_BYTES];
	struct kvb_header h;
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return errno == ENOENT ? -ENOENT : -EINVAL;
	int rc = -EINVAL;
	if (fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == t->file_bytes &&
	    fd_read_full(fd, hdr, sizeof(hdr)) == 0 && kvb_header_parse(hdr, sizeof(hdr), &h) == 0 &&
	    h.fingerprint == t->fp && h.seq_hash == hash && h.payload_bytes == t->bb &&
	    fd_read_full(fd, out, t->bb) == 0 && XXH3_64bits(out, t->bb) == h.payload_xxh3)
		rc = 0;
	close(fd);
	return rc;
}

/* path.PID-N.what: a name no other process, nor other tiers of this one
 * (two engines sharing G4), uses at the same time. */
static void private_name(char *out, size_t cap, const char *path, const char *what)
{
	static unsigned long n;
	snprintf(out, cap, "%s.%ld-%lu.%s", path, (long)getpid(),
		 __atomic_fetch_add(&n, 1, __ATOMIC_RELAXED), what);
}

static struct fid fid_of(const struct stat *sb)
{
	return (struct fid){ (uint64_t)sb->st_ino,
			     (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec };
}

/* Write a block file through a temporary name (readers never see half);
 * which file it is goes to id. */
static int file_write(const struct kv_tiers *t, const char *dir, uint64_t hash, const void *data,
		      struct fid *id)
{
	struct stat sb;
	char path[4200], tmp[4300];
	unsigned char hdr[KVB_HEADER_BYTES];
	struct kvb_header h = { t->fp, hash, t->bb, XXH3_64bits(data, t->bb) };

	file_path(path, sizeof(path), dir, t->fp, hash);
	private_name(tmp, sizeof(tmp), path, "tmp");
	kvb_header_encode(&h, hdr);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return err_set(-errno, "%s: %s", tmp, strerror(errno));
	int rc = fd_write_all(fd, hdr, sizeof(hdr));
	if (rc == 0)
		rc = fd_write_all(fd, data, t->bb);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	/* after close: a network filesystem has its final mtime then */
	if (rc == 0 && stat(tmp, &sb) < 0)
		rc = -errno;
	if (rc == 0)
		*id = fid_of(&sb);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return err_set(rc, "%s: %s", path, strerror(-rc));
	}
	return 0;
}

/* ---- entries and LRU (under mu) ------------------------------------------ */

static void lru_unlink(struct kv_tiers *t, uint32_t i)
{
	struct tent *e = &t->ents[i];
	struct lru *l = &t->lru[e->tier];
	if (e->prev != NIL)
		t->ents[e->prev].next = e->next;
	else
		l->head = e->next;
	if (e->next != NIL)
		t->ents[e->next].prev = e->prev;
	else
		l->tail = e->prev;
	l->n--;
}

static void lru_push(struct kv_tiers *t, uint32_t i)
{
	struct tent *e = &t->ents[i];
	struct lru *l = &t->lru[e->tier];
	e->prev = NIL;
	e->next = l->head;
	if (l->head != NIL)
		t->ents[l->head].prev = i;
	else
		l->tail = i;
	l->head = i;
	l->n++;
}

static uint32_t ent_new(struct kv_tiers *t, uint64_t hash, int tier)
{
	uint32_t i;
	if (t->free_head != NIL) {
		i = t->free_head;
		t->free_head = t->ents[i].next;
	} else {
		if (t->n_ents == t->cap_ents) {
			t->cap_ents = t->cap_ents ? 2 * t->cap_ents : 256;
			t->ents = xrealloc(t->ents, t->cap_ents * sizeof(*t->ents));
		}
		i = t->n_ents++;
	}
	t->ents[i] = (struct tent){ .hash = hash, .tier = tier };
	u64map_put(&t->map, hash, i);
	lru_push(t, i);
	return i;
}

static void ent_del(struct kv_tiers *t, uint32_t i)
{
	lru_unlink(t, i);
	u64map_del(&t->map, t->ents[i].hash);
	if (t->ents[i].data)
		t->free_bufs[t->n_free++] = t->ents[i].data;
	t->ents[i] = (struct tent){ .next = t->free_head };
	t->free_head = i;
}

static void queue_job(struct kv_tiers *t, struct job *j)
{
	if (j->first) {	/* after the other first ones, before the rest */
		struct job **p = &t->jobs;
		while (*p && (*p)->first)
			p = &(*p)->next;
		j->next = *p;
		*p = j;
		if (!j->next)
			t->jobs_tail = j;
	} else if (t->jobs_tail) {
		t->jobs_tail->next = j;
		t->jobs_tail = j;
	} else {
		t->jobs = t->jobs_tail = j;
	}
	pthread_cond_signal(&t->cv);
}

static void tier_unlink(const struct kv_tiers *t, const char *dir, uint64_t hash)
{
	char path[4200];
	file_path(path, sizeof(path), dir, t->fp, hash);
	unlink(path);
}

/* Delete this worker's G4 file of hash (written as id), but not another
 * worker's copy of the block renamed over it: the file is first renamed
 * aside (atomically: one renamed in at that moment stays), then deleted
 * when it is the one we wrote, else put back. */
static void shared_unlink(const struct kv_tiers *t, uint64_t hash, const struct fid *id)
{
	char path[4200], aside[4300];
	struct stat sb;

	file_path(path, sizeof(path), t->shared_dir, t->fp, hash);
	private_name(aside, sizeof(aside), path, "del");
	if (rename(path, aside) < 0)
		return;	/* gone already */
	struct fid f = { 0, 0 };
	if (stat(aside, &sb) == 0)
		f = fid_of(&sb);
	if (f.ino == id->ino && f.mtime_ns == id->mtime_ns)
		unlink(aside);
	else
		rename(aside, path);
}

/* A block this worker wrote to G4 (file id): indexed, and G4 trimmed to
 * its capacity (unless G2 took the block again meanwhile: then the file
 * goes, so that every file of ours there is indexed). */
static void shared_add(struct kv_tiers *t, uint64_t hash, const struct fid *id)
{
	if (u64map_get(&t->map, hash)) {
		shared_unlink(t, hash, id);
		return;
	}
	t->st.offloads[KV_TIER_SHARED]++;
	moved(t, hash, KV_TIER_SHARED, 1);
	t->ents[ent_new(t, hash, KV_TIER_SHARED)].id = *id;
	struct lru *l = &t->lru[KV_TIER_SHARED];
	while (l->n && l->n * t->file_bytes > t->o.shared_bytes) {
		struct tent *e = &t->ents[l->tail];
		uint64_t h = e->hash;
		shared_unlink(t, h, &e->id);
		ent_del(t, l->tail);
		moved(t, h, KV_TIER_SHARED, 0);
	}
}

/* A G4 entry whose file is gone: dropped, announced removed. */
static void shared_gone(struct kv_tiers *t, uint64_t hash)
{
	const uint32_t *p = u64map_get(&t->map, hash);
	if (p && t->ents[*p].tier == KV_TIER_SHARED) {
		ent_del(t, *p);
		moved(t, hash, KV_TIER_SHARED, 0);
	}
}

/* G3 over its capacity: its LRU files go (to G4 when there is one: the
 * thread copies them, see spill()). */
static void disk_trim(struct kv_tiers *t, uint64_t **to_shared, int *n)
{
	struct lru *l = &t->lru[KV_TIER_DISK];
	while (l->n && l->n * t->file_bytes > t->o.disk_bytes) {
		uint32_t i = l->tail;
		uint64_t h = t->ents[i].hash;
		if (t->shared_dir && t->shared_ok) {
			*to_shared = xrealloc(*to_shared, (size_t)(*n + 1) * sizeof(uint64_t));
			(*to_shared)[(*n)++] = h;
		} else {
			tier_unlink(t, t->disk_dir, h);
		}
		ent_del(t, i);
		moved(t, h, KV_TIER_DISK, 0);
	}
}

/* ---- the thread ------------------------------------------------------------ */

/* Turn a tier's writes off, once, with a warning. */
static void tier_off(struct kv_tiers *t, int *ok, const char *what)
{
	pthread_mutex_lock(&t->mu);
	int was = *ok;
	*ok = 0;
	pthread_mutex_unlock(&t->mu);
	if (was)
		LOG_WARN(LOG_MOD, "%s: %s; it takes no more blocks (fewer tiers from now on)",
			 what, err_msg());
}

/* Write a G2 block below: to G3, else G4. */
static void spill(struct kv_tiers *t, uint32_t i)
{
	pthread_mutex_lock(&t->mu);
	struct tent *e = &t->ents[i];
	uint64_t hash = e->hash;
	void *data = e->data;		/* stays while spilling: only we free it */
	int disk = t->disk_dir && t->disk_ok, shared = t->shared_dir && t->shared_ok;
	pthread_mutex_unlock(&t->mu);

	int done = 0, tier = 0;
	struct fid id;
	if (disk) {
		if (file_write(t, t->disk_dir, hash, data, &id) == 0)
			done = 1, tier = KV_TIER_DISK;
		else
			tier_off(t, &t->disk_ok, "G3 (local disk) write");
	}
	if (!done && shared) {
		if (file_write(t, t->shared_dir, hash, data, &id) == 0)
			done = 1, tier = KV_TIER_SHARED;
		else
			tier_off(t, &t->shared_ok, "G4 (shared) write");
	}
	uint64_t *to_shared = NULL;
	int n_shared = 0;
	pthread_mutex_lock(&t->mu);
	t->n_spilling--;
	if (!tier)
		t->st.dropped++;
	ent_del(t, i);
	if (t->o.host_bytes)
		moved(t, hash, KV_TIER_HOST, 0);
	if (tier == KV_TIER_DISK) {
		t->st.offloads[tier]++;
		moved(t, hash, tier, 1);
		ent_new(t, hash, KV_TIER_DISK);
		disk_trim(t, &to_shared, &n_shared);
	} else if (tier == KV_TIER_SHARED) {
		shared_add(t, hash, &id);
	}
	pthread_mutex_unlock(&t->mu);
	/* G3's LRU files move to G4: renamed on one filesystem, else read
	 * (checked) and written there */
	void *buf = NULL;
	for (int k = 0; k < n_shared; k++) {
		char path[4200], to[4200];
		file_path(path, sizeof(path), t->disk_dir, t->fp, to_shared[k]);
		file_path(to, sizeof(to), t->shared_dir, t->fp, to_shared[k]);
		struct stat sb;
		int ok = stat(path, &sb) == 0 && rename(path, to) == 0;
		if (ok) {
			id = fid_of(&sb);	/* a rename keeps both */
		} else {
			buf = buf ? buf : xmalloc(t->bb);
			if (file_read(t, path, to_shared[k], buf) == 0) {
				ok = file_write(t, t->shared_dir, to_shared[k], buf, &id) == 0;
				if (!ok)
					tier_off(t, &t->shared_ok, "G4 (shared) write");
			}
			unlink(path);
		}
		if (ok) {
			pthread_mutex_lock(&t->mu);
			shared_add(t, to_shared[k], &id);
			pthread_mutex_unlock(&t->mu);
		}
	}
	free(buf);
	free(to_shared);
}

/* G4's entries whose files are gone: dropped (the sweep). */
static void shared_sweep(struct kv_tiers *t)
{
	pthread_mutex_lock(&t->mu);
	struct lru *l = &t->lru[KV_TIER_SHARED];
	size_t n = 0;
	uint64_t *h = xmalloc((l->n ? l->n : 1) * sizeof(uint64_t));
	for (uint32_t i = l->head; i != NIL; i = t->ents[i].next)
		h[n++] = t->ents[i].hash;
	pthread_mutex_unlock(&t->mu);
	for (size_t k = 0; k < n; k++) {
		char path[4200];
		file_path(path, sizeof(path), t->shared_dir, t->fp, h[k]);
		if (access(path, F_OK) < 0 && errno == ENOENT) {
			pthread_mutex_lock(&t->mu);
			shared_gone(t, h[k]);
			pthread_mutex_unlock(&t->mu);
		}
	}
	free(h);
}

/* Under mu: G4 entries to check, and their time has come? */
static int sweep_due(const struct kv_tiers *t)
{
	return t->lru[KV_TIER_SHARED].n && mono_ns() >= t->next_sweep_ns;
}

/* Under mu: G2 buffers to fault in, ahead of the carving (once it has
 * begun: tiers that never see an eviction take no memory)? */
static int fault_due(const struct kv_tiers *t)
{
	return t->n_carved && t->n_faulted < t->max_bufs &&
	       t->n_faulted < t->n_carved + t->ahead;
}

/* Fault in the pages of the next pool buffers (at most 16 MiB); called
 * with mu held, drops it meanwhile.  MADV_POPULATE_WRITE leaves the data
 * alone: the step thread may be writing those buffers already. */
static void fault_ahead(struct kv_tiers *t)
{
	uint32_t n = (uint32_t)((16u << 20) / t->bb);
	n = n ? n : 1;
	n = n < t->max_bufs - t->n_faulted ? n : t->max_bufs - t->n_faulted;
	size_t pg = (size_t)sysconf(_SC_PAGESIZE), a = (size_t)t->n_faulted * t->bb / pg * pg;
	size_t b = (size_t)(t->n_faulted + n) * t->bb;
	pthread_mutex_unlock(&t->mu);
	int rc = madvise(t->pool + a, b - a, MADV_POPULATE_WRITE);
	pthread_mutex_lock(&t->mu);
	if (rc < 0) {	/* an older kernel: pages fault on first use */
		LOG_DEBUG(LOG_MOD, "MADV_POPULATE_WRITE: %s", strerror(errno));
		n = t->max_bufs - t->n_faulted;
	}
	t->n_faulted += n;
}

static void *thread_main(void *arg)
{
	struct kv_tiers *t = arg;

	pthread_mutex_lock(&t->mu);
	for (;;) {
		while (!t->jobs && !t->stop && !sweep_due(t) && !fault_due(t)) {
			if (!t->lru[KV_TIER_SHARED].n) {
				pthread_cond_wait(&t->cv, &t->mu);
				continue;
			}
			uint64_t w = t->next_sweep_ns;
			struct timespec ts = { (time_t)(w / 1000000000ull),
					       (long)(w % 1000000000ull) };
			pthread_cond_timedwait(&t->cv, &t->mu, &ts);
		}
		if (!t->stop && sweep_due(t)) {
			t->next_sweep_ns = mono_ns() + t->o.sweep_ms * 1000000ull;
			pthread_mutex_unlock(&t->mu);
			shared_sweep(t);
			pthread_mutex_lock(&t->mu);
			continue;
		}
		struct job *j = t->jobs;
		if (!j && !t->stop && fault_due(t)) {
			fault_ahead(t);
			continue;
		}
		if (!j)
			break;	/* stopping, all done */
		t->jobs = j->next;
		if (!t->jobs)
			t->jobs_tail = NULL;
		pthread_mutex_unlock(&t->mu);
		if (j->fn)
			j->fn(j->arg);
		else
			spill(t, j->spill);
		free(j);
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* ---- API ------------------------------------------------------------------- */

/* A restarted worker's G3: valid blocks of ours are indexed, bad ones and
 * stale temporaries deleted, others' files left alone. */
static void disk_scan(struct kv_tiers *t)
{
	DIR *d = opendir(t->disk_dir);
	char prefix[32], path[4200];
	void *buf = xmalloc(t->bb);
	struct dirent *de;

	if (!d) {
		free(buf);
		return;
	}
	snprintf(prefix, sizeof(prefix), "%016" PRIx64 "-", t->fp);
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (strncmp(n, prefix, 17))
			continue;
		snprintf(path, sizeof(path), "%s/%s", t->disk_dir, n);
		uint64_t hash;
		char tail[8];
		if (strlen(n) != 17 + 16 + 4 || sscanf(n + 17, "%16" SCNx64 "%7s", &hash, tail) != 2 ||
		    strcmp(tail, ".kvb") || file_read(t, path, hash, buf) < 0) {
			if (!strstr(n, ".tmp"))
				t->st.corrupt++;
			unlink(path);
			continue;
		}
		if (!u64map_get(&t->map, hash))
			ent_new(t, hash, KV_TIER_DISK);
	}
	closedir(d);
	free(buf);
	uint64_t *to_shared = NULL;
	int n = 0;
	t->shared_ok = 0;	/* a smaller capacity than last time: just delete */
	disk_trim(t, &to_shared, &n);
	t->shared_ok = 1;
	free(to_shared);
	if (t->st.corrupt)
		LOG_WARN(LOG_MOD, "%s: %llu invalid block files dropped", t->disk_dir,
			 (unsigned long long)t->st.corrupt);
}

/* G2's pool: its blocks, and KV_TIERS_STAGE_BYTES of blocks on their way
 * to a file (with no file tier: the one pushing G2's LRU block out). */
static int pool_init(struct kv_tiers *t)
{
	uint64_t stage = KV_TIERS_STAGE_BYTES / t->bb;
	if (!t->disk_dir && !t->shared_dir)
		stage = 1;
	else if (stage < 4)
		stage = 4;
	uint64_t n = t->o.host_bytes / t->bb + stage;
	if (n > UINT32_MAX / 2)
		return err_set(-E2BIG, "KV tiers: a G2 of %llu blocks is too many",
			       (unsigned long long)n);
	t->max_bufs = (uint32_t)n;
	t->ahead = KV_TIERS_AHEAD_BYTES / t->bb ? (uint32_t)(KV_TIERS_AHEAD_BYTES / t->bb) : 1;
	t->pool_bytes = (size_t)n * t->bb;
	t->pool = mmap(NULL, t->pool_bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (t->pool == MAP_FAILED) {
		t->pool = NULL;
		return err_set(-ENOMEM, "KV tiers: cannot map %.1f GiB for G2: %s",
			       (double)t->pool_bytes / (1u << 30), strerror(errno));
	}
	t->free_bufs = xmalloc((size_t)n * sizeof(void *));
	return 0;
}

static void human(char *out, size_t cap, uint64_t b)
{
	snprintf(out, cap, "%.1f GiB", (double)b / (1u << 30));
}

int kv_tiers_new(const struct kv_tiers_opts *o, uint64_t fingerprint, size_t block_bytes,
		 struct kv_tiers **out)
{
	struct kv_tiers *t = xcalloc(1, sizeof(*t));
	int rc;

	t->o = *o;
	t->fp = fingerprint;
	t->bb = block_bytes;
	t->file_bytes = KVB_HEADER_BYTES + block_bytes;
	t->free_head = NIL;
	for (int i = 0; i < KV_TIER_COUNT; i++)
		t->lru[i] = (struct lru){ NIL, NIL, 0 };
	t->disk_ok = t->shared_ok = 1;
	if (!t->o.sweep_ms)
		t->o.sweep_ms = KV_TIERS_SWEEP_MS;
	if (!t->o.shared_bytes)
		t->o.shared_bytes = KV_TIERS_SHARED_BYTES;
	t->next_sweep_ns = mono_ns() + t->o.sweep_ms * 1000000ull;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);	/* the sweep's deadline */
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (o->disk_dir && *o->disk_dir) {
		t->disk_dir = xstrdup(o->disk_dir);
		if ((rc = fs_mkdirs(t->disk_dir, 0755)) < 0) {
			LOG_WARN(LOG_MOD, "G3 (local disk) %s: %s; running without it", t->disk_dir,
				 err_msg());
			t->disk_ok = 0;
		} else {
			disk_scan(t);
		}
	}
	if (o->shared_dir && *o->shared_dir) {
		t->shared_dir = xstrdup(o->shared_dir);
		if (fs_mkdirs(t->shared_dir, 0755) < 0)
			LOG_WARN(LOG_MOD, "G4 (shared) %s: %s; reading only", t->shared_dir,
				 err_msg());
	}
	char a[32], b[32], c[32];
	human(a, sizeof(a), o->host_bytes);
	human(b, sizeof(b), o->disk_bytes);
	human(c, sizeof(c), t->o.shared_bytes);
	snprintf(t->describe, sizeof(t->describe), "G2 host %s%s%s%s%s%s%s%s%s%s%s",
		 o->host_bytes ? a : "off", t->disk_dir ? ", G3 disk " : "",
		 t->disk_dir ? t->disk_dir : "", t->disk_dir ? " (" : "", t->disk_dir ? b : "",
		 t->disk_dir ? ")" : "", t->shared_dir ? ", G4 shared " : "",
		 t->shared_dir ? t->shared_dir : "", t->shared_dir ? " (" : "",
		 t->shared_dir ? c : "", t->shared_dir ? " of ours)" : "");
	if ((rc = pool_init(t)) < 0) {
		kv_tiers_free(t);
		return rc;
	}
	if ((rc = pthread_create(&t->thread, NULL, thread_main, t))) {
		rc = err_set(-rc, "kv tiers: pthread_create: %s", strerror(rc));
		kv_tiers_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

void kv_tiers_free(struct kv_tiers *t)
{
	if (!t)
		return;
	if (t->thread) {
		pthread_mutex_lock(&t->mu);
		t->stop = 1;
		pthread_cond_signal(&t->cv);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thread, NULL);
	}
	if (t->pool)
		munmap(t->pool, t->pool_bytes);
	free(t->free_bufs);
	free(t->ents);
	u64map_release(&t->map);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	free(t->disk_dir);
	free(t->shared_dir);
	free(t);
}

/* Under mu: G2's block i leaves: spilled below by the thread, or dropped. */
static void host_evict(struct kv_tiers *t, uint32_t i, int below)
{
	if (below) {
		t->ents[i].spilling = 1;
		t->n_spilling++;
		struct job *j = xcalloc(1, sizeof(*j));
		j->spill = i;
		queue_job(t, j);
		return;
	}
	uint64_t h = t->ents[i].hash;
	t->st.dropped++;
	ent_del(t, i);
	if (t->o.host_bytes)
		moved(t, h, KV_TIER_HOST, 0);
}

void *kv_tiers_reserve(struct kv_tiers *t, uint64_t seq_hash)
{
	void *buf = NULL;

	pthread_mutex_lock(&t->mu);
	const uint32_t *p = u64map_get(&t->map, seq_hash);
	if (p) {	/* below already (a block onboarded earlier) */
		if (t->ents[*p].tier == KV_TIER_HOST) {
			lru_unlink(t, *p);
			lru_push(t, *p);
		}
	} else if (t->n_free) {
		buf = t->free_bufs[--t->n_free];
	} else if (t->n_carved < t->max_bufs) {
		buf = t->pool + (size_t)t->n_carved++ * t->bb;
		if (fault_due(t))
			pthread_cond_signal(&t->cv);
	} else {
		t->st.dropped++;	/* every buffer taken: the writes below lag */
	}
	pthread_mutex_unlock(&t->mu);
	return buf;
}

void kv_tiers_put(struct kv_tiers *t, uint64_t seq_hash, void *buf)
{
	pthread_mutex_lock(&t->mu);
	if (u64map_get(&t->map, seq_hash)) {	/* G4 took it meanwhile */
		t->free_bufs[t->n_free++] = buf;
		pthread_mutex_unlock(&t->mu);
		return;
	}
	uint32_t i = ent_new(t, seq_hash, KV_TIER_HOST);
	t->ents[i].data = buf;
	if (t->o.host_bytes) {
		t->st.offloads[KV_TIER_HOST]++;
		moved(t, seq_hash, KV_TIER_HOST, 1);
	}
	/* G2 over capacity (none: at once): its LRU blocks not yet spilling
	 * go below, or are dropped here when no file tier takes them */
	int below = (t->disk_dir && t->disk_ok) || (t->shared_dir && t->shared_ok);
	struct lru *l = &t->lru[KV_TIER_HOST];
	for (uint32_t k = l->tail; k != NIL && (l->n - t->n_spilling) * t->bb > t->o.host_bytes;) {
		uint32_t prev = t->ents[k].prev;
		if (!t->ents[k].spilling)	/* else its job has it */
			host_evict(t, k, below);
		k = prev;
	}
	pthread_mutex_unlock(&t->mu);
}

void kv_tiers_set_moved(struct kv_tiers *t, kv_tiers_moved_fn fn, void *arg)
{
	pthread_mutex_lock(&t->mu);
	t->moved = fn;
	t->moved_arg = arg;
	for (uint32_t i = 0; i < t->n_ents; i++)
		if (t->ents[i].tier == KV_TIER_DISK ||
		    (t->ents[i].tier == KV_TIER_HOST && t->o.host_bytes))
			moved(t, t->ents[i].hash, t->ents[i].tier, 1);
	pthread_mutex_unlock(&t->mu);
}

enum kv_tier kv_tiers_find(struct kv_tiers *t, uint64_t seq_hash)
{
	pthread_mutex_lock(&t->mu);
	const uint32_t *p = u64map_get(&t->map, seq_hash);
	int tier = p ? t->ents[*p].tier : KV_TIER_NONE;
	pthread_mutex_unlock(&t->mu);
	if (tier || !t->shared_dir)
		return tier;
	char path[4200];
	file_path(path, sizeof(path), t->shared_dir, t->fp, seq_hash);
	return access(path, R_OK) == 0 ? KV_TIER_SHARED : KV_TIER_NONE;
}

/* A bad file: dropped and counted. */
static void drop_file(struct kv_tiers *t, const char *path, int tier, uint64_t hash)
{
	LOG_WARN(LOG_MOD, "%s: not a valid block %016" PRIx64 "; dropped (recomputed)", path,
		 hash);
	pthread_mutex_lock(&t->mu);
	t->st.corrupt++;
	const uint32_t *p = u64map_get(&t->map, hash);
	if (p && t->ents[*p].tier == tier)
		ent_del(t, *p);
	if (tier == KV_TIER_DISK)
		unlink(path);
	moved(t, hash, tier, 0);
	pthread_mutex_unlock(&t->mu);
}

enum kv_tier kv_tiers_load(struct kv_tiers *t, uint64_t seq_hash, void *out)
{
	char path[4200];

	pthread_mutex_lock(&t->mu);
	const uint32_t *p = u64map_get(&t->map, seq_hash);
	int tier = p ? t->ents[*p].tier : KV_TIER_NONE;
	if (tier == KV_TIER_HOST) {
		memcpy(out, t->ents[*p].data, t->bb);
		lru_unlink(t, *p);
		lru_push(t, *p);
		t->st.onboards[tier]++;
		pthread_mutex_unlock(&t->mu);
		return tier;
	}
	if (tier == KV_TIER_DISK || tier == KV_TIER_SHARED) {	/* most recent now */
		lru_unlink(t, *p);
		lru_push(t, *p);
	}
	pthread_mutex_unlock(&t->mu);
	if (tier == KV_TIER_NONE) {
		if (!t->shared_dir)
			return KV_TIER_NONE;
		tier = KV_TIER_SHARED;
	}
	file_path(path, sizeof(path), tier == KV_TIER_DISK ? t->disk_dir : t->shared_dir, t->fp,
		  seq_hash);
	int rc = file_read(t, path, seq_hash, out);
	if (rc == -EINVAL)
		drop_file(t, path, tier, seq_hash);
	if (rc == -ENOENT && tier == KV_TIER_SHARED) {
		pthread_mutex_lock(&t->mu);
		shared_gone(t, seq_hash);
		pthread_mutex_unlock(&t->mu);
	}
	if (rc < 0)
		return KV_TIER_NONE;
	pthread_mutex_lock(&t->mu);
	t->st.onboards[tier]++;
	pthread_mutex_unlock(&t->mu);
	return tier;
}

double kv_tiers_load_seconds(const struct kv_tiers *t, enum kv_tier tier, int n)
{
	double bw = tier == KV_TIER_HOST ? 2e9 : tier == KV_TIER_DISK ? 2e8 : 1e8;
	return (double)n * (double)t->file_bytes / bw;
}

static void run_job(struct kv_tiers *t, void (*fn)(void *arg), void *arg, int first)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->fn = fn;
	j->arg = arg;
	j->first = first;
	pthread_mutex_lock(&t->mu);
	queue_job(t, j);
	pthread_mutex_unlock(&t->mu);
}

void kv_tiers_run(struct kv_tiers *t, void (*fn)(void *arg), void *arg)
{
	run_job(t, fn, arg, 0);
}

void kv_tiers_run_first(struct kv_tiers *t, void (*fn)(void *arg), void *arg)
{
	run_job(t, fn, arg, 1);
}

void kv_tiers_stats(struct kv_tiers *t, struct kv_tiers_stats *out)
{
	pthread_mutex_lock(&t->mu);
	*out = t->st;
	out->blocks[KV_TIER_HOST] = t->lru[KV_TIER_HOST].n - t->n_spilling;
	out->bytes[KV_TIER_HOST] = out->blocks[KV_TIER_HOST] * t->bb;
	out->blocks[KV_TIER_DISK] = t->lru[KV_TIER_DISK].n;
	out->bytes[KV_TIER_DISK] = t->lru[KV_TIER_DISK].n * t->file_bytes;
	out->blocks[KV_TIER_SHARED] = t->lru[KV_TIER_SHARED].n;
	out->bytes[KV_TIER_SHARED] = t->lru[KV_TIER_SHARED].n * t->file_bytes;
	pthread_mutex_unlock(&t->mu);
}

const char *kv_tiers_describe(const struct kv_tiers *t)
{
	return t->describe;
}
