/*
 * tiers.h - the KV cache's lower tiers: blocks evicted from the engine's
 * pool (G1) are kept, in this order, in
 *   G2  host memory (--kv-host-cache-gb), LRU;
 *   G3  a local directory (--kv-disk-cache-dir, --kv-disk-cache-gb), LRU,
 *       one file per block, found again by a restarted worker;
 *   G4  a shared directory (--kv-shared-cache-dir) that several workers
 *       write (write to a temporary name, then rename) and read; each
 *       keeps at most --kv-shared-cache-gb of the blocks it wrote there,
 *       LRU, and forgets those whose files vanish.
 * A block leaves a tier for the next configured one below it (G2's LRU
 * block to G3, G3's to G4; with a tier left out, the next one down takes
 * it; G4's LRU files of a worker are deleted).
 *
 * Blocks are keyed by sequence hash (block_hash.h) within a fingerprint of
 * the model and the KV layout (kv_tiers_fingerprint): files carry it in
 * their name and header, so another model or layout never matches.
 *
 * Block file (G3, G4): "<fingerprint hex>-<sequence hash hex>.kvb", a
 * 64-byte header, little-endian, then the block's host image:
 *    0  magic "DYNKVBLK"       32  payload bytes (u64)
 *    8  version (u32) = 1      40  XXH3-64 of the payload
 *   12  header bytes (u32)=64  48  XXH3-64 of bytes 0..47
 *   16  fingerprint (u64)      56  zero
 *   24  sequence hash (u64)
 * A file whose header, length, names or checksum do not agree is dropped
 * (deleted in G3, left alone in G4) and counted corrupt; never served.
 *
 * Errors writing G3 (a full disk, a read-only directory) turn G3 off with
 * one warning; G4 likewise; what was there keeps being read while it
 * reads well.  Nothing here fails a request: a miss is a recompute.
 *
 * G2's memory is one mapping of its capacity (and room for blocks on
 * their way to a file), a pool of block buffers: a block dropped or
 * written below frees its buffer for the next.  The tiers' thread faults
 * its pages in ahead of use, so an evicted block costs the step thread one
 * copy into memory that is there already.
 *
 * G4 files are shared: a worker deletes one (its LRU past capacity) only
 * when it is the file it wrote (same inode and mtime; another worker
 * that wrote the same block renamed its own copy over it, which stays).
 *
 * Threading: every call is thread-safe.  kv_tiers_reserve() and
 * kv_tiers_put() (the engine's step thread) only link the block into G2;
 * spills to files and the jobs of kv_tiers_run() run on the tiers' own
 * thread.
 */
#ifndef DYN_KV_TIERS_H
#define DYN_KV_TIERS_H

#include "core/kv/block_manager.h"

#include <stddef.h>
#include <stdint.h>

enum kv_tier { KV_TIER_NONE = 0, KV_TIER_G1 = 1, KV_TIER_HOST, KV_TIER_DISK, KV_TIER_SHARED,
	       KV_TIER_COUNT };

struct kv_tiers_opts {
	uint64_t host_bytes;		/* G2 capacity; 0: no G2 */
	const char *disk_dir;		/* G3 directory (made if missing); NULL: none */
	uint64_t disk_bytes;		/* G3 capacity (files, headers included) */
	const char *shared_dir;		/* G4 directory; NULL: none */
	uint64_t shared_bytes;		/* what this worker keeps in G4; 0: 16 GiB */
	unsigned sweep_ms;		/* G4's check for vanished files; 0: 5 s */
};

#define KV_TIERS_SHARED_BYTES (16ull << 30)
#define KV_TIERS_SWEEP_MS 5000
/* G2's pool has room for this many bytes of blocks on their way to a
 * file besides G2's own; its pages are faulted in this far ahead of use */
#define KV_TIERS_STAGE_BYTES (256ull << 20)
#define KV_TIERS_AHEAD_BYTES (64ull << 20)

/* Per tier (index enum kv_tier); blocks and bytes: G2, G3, and the G4
 * blocks this worker wrote and still finds there. */
struct kv_tiers_stats {
	uint64_t blocks[KV_TIER_COUNT], bytes[KV_TIER_COUNT];
	uint64_t offloads[KV_TIER_COUNT];	/* blocks written into the tier */
	uint64_t onboards[KV_TIER_COUNT];	/* blocks read back from it */
	uint64_t corrupt;			/* files dropped */
	uint64_t dropped;			/* G2's LRU blocks with no tier below */
};

struct kv_tiers;

/* Any tier configured? */
int kv_tiers_wanted(const struct kv_tiers_opts *o);
/* The key space of a model (model_id: what names its weights) and layout. */
uint64_t kv_tiers_fingerprint(const char *model_id, const struct kv_layout *l);
/* Start the tiers for blocks of block_bytes; G3's directory is scanned:
 * its valid blocks are there at once. */
int kv_tiers_new(const struct kv_tiers_opts *o, uint64_t fingerprint, size_t block_bytes,
		 struct kv_tiers **out);
/* Waits for the jobs queued, stops the thread. */
void kv_tiers_free(struct kv_tiers *t);

/*
 * A block leaves G1, in two steps (the engine's step thread): a buffer of
 * G2's pool (block_bytes), or NULL when the tiers hold the block already
 * (G2's copy counts as used now) or every buffer is taken by blocks still
 * being written below (the block is dropped, counted); the caller copies
 * the block in and hands it over with kv_tiers_put.
 */
void *kv_tiers_reserve(struct kv_tiers *t, uint64_t seq_hash);
void kv_tiers_put(struct kv_tiers *t, uint64_t seq_hash, void *buf);
/*
 * fn(arg, tier, stored, seq_hash) whenever a block enters (stored 1) or
 * leaves (0) G2 or G3, is written to G4, or leaves G4 (this worker's LRU
 * block deleted, its file found gone, or found corrupt: left there, this
 * worker will not read it); the blocks already in G2/G3 are reported
 * stored at once.  fn runs under the tiers' lock, on any thread: it must
 * not call back into t.  (The KV events' tiers, kv_events.h.)
 */
typedef void (*kv_tiers_moved_fn)(void *arg, int tier, int stored, uint64_t seq_hash);
void kv_tiers_set_moved(struct kv_tiers *t, kv_tiers_moved_fn fn, void *arg);
/* The tier holding seq_hash, or KV_TIER_NONE (G4: a file by that name). */
enum kv_tier kv_tiers_find(struct kv_tiers *t, uint64_t seq_hash);
/* Copy the block into out (block_bytes); the tier it came from, or
 * KV_TIER_NONE (missing, or dropped as corrupt).  Counts an onboard. */
enum kv_tier kv_tiers_load(struct kv_tiers *t, uint64_t seq_hash, void *out);
/* Seconds to load n blocks from tier, by the rule in tiers.c. */
double kv_tiers_load_seconds(const struct kv_tiers *t, enum kv_tier tier, int n);
/* Run fn(arg) on the tiers' thread (after what was queued before). */
void kv_tiers_run(struct kv_tiers *t, void (*fn)(void *arg), void *arg);
/* Likewise, but before the writes queued (after the other first ones):
 * for onboarding, which a request waits for. */
void kv_tiers_run_first(struct kv_tiers *t, void (*fn)(void *arg), void *arg);
void kv_tiers_stats(struct kv_tiers *t, struct kv_tiers_stats *out);
/* "host 1.0 GiB, disk /d (4.0 GiB), shared /s" */
const char *kv_tiers_describe(const struct kv_tiers *t);
const char *kv_tier_name(enum kv_tier tier);	/* "G1".."G4" */

/* The block file header (exposed for tests and the fuzz target). */
#define KVB_HEADER_BYTES 64
#define KVB_VERSION 1
struct kvb_header {
	uint64_t fingerprint, seq_hash, payload_bytes, payload_xxh3;
};
void kvb_header_encode(const struct kvb_header *h, unsigned char out[KVB_HEADER_BYTES]);
/* 0, or -EINVAL with err_msg() for a header that is not one. */
int kvb_header_parse(const void *buf, size_t len, struct kvb_header *h);

#endif
