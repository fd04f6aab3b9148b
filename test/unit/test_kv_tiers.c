/*
 * test_kv_tiers.c - the KV tiers' store (core/kv/tiers.h) on its own: the
 * block file header, G2's and G3's LRU order, a restart's scan, foreign
 * and bad files.  (Outputs of requests served from each tier are checked
 * in test_engine.c.)
 */
#include "test/unit/check.h"

#include "core/kv/tiers.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BB 100

/* A block leaving G1 as the engine hands it over: block v's bytes. */
static void put(struct kv_tiers *t, uint64_t hash, int v)
{
	unsigned char *p = kv_tiers_reserve(t, hash);
	CHECK(p);
	for (int i = 0; i < BB; i++)
		p[i] = (unsigned char)(v * 7 + i);
	kv_tiers_put(t, hash, p);
}

static int is_block(const unsigned char *p, int v)
{
	for (int i = 0; i < BB; i++)
		if (p[i] != (unsigned char)(v * 7 + i))
			return 0;
	return 1;
}

/* Wait until the tiers' thread has done what was queued before. */
static void set_flag(void *arg)
{
	__atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
}

static void settle(struct kv_tiers *t)
{
	int done = 0;
	kv_tiers_run(t, set_flag, &done);
	for (int i = 0; i < 1000 && !__atomic_load_n(&done, __ATOMIC_ACQUIRE); i++)
		usleep(5000);
	CHECK(done);
}

static char *mkdir_tmp(void)
{
	char *d = xstrdup("/tmp/dyn-kvt-XXXXXX");
	CHECK(mkdtemp(d));
	return d;
}

static void rm_dir(const char *d)
{
	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", d);
	CHECK(system(cmd) == 0);
}

static int n_files(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	CHECK(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

TEST(header_round_trip_and_every_bit_flip_refused)
{
	struct kvb_header h = { 0x1122334455667788ull, 0x99aabbccddeeff00ull, 5120, 42 }, g;
	unsigned char b[KVB_HEADER_BYTES];
	kvb_header_encode(&h, b);
	CHECK(!memcmp(b, "DYNKVBLK", 8));
	CHECK_INT(kvb_header_parse(b, sizeof(b), &g), 0);
	CHECK(g.fingerprint == h.fingerprint && g.seq_hash == h.seq_hash &&
	      g.payload_bytes == h.payload_bytes && g.payload_xxh3 == h.payload_xxh3);
	CHECK_INT(kvb_header_parse(b, sizeof(b) - 1, &g), -EINVAL);
	for (int bit = 0; bit < 8 * KVB_HEADER_BYTES; bit++) {
		b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		CHECK_MSG(kvb_header_parse(b, sizeof(b), &g) == -EINVAL, "bit %d flipped passed",
			  bit);
		b[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
}

TEST(host_tier_lru)
{
	struct kv_tiers_opts o = { .host_bytes = 2 * BB };
	struct kv_tiers *t;
	unsigned char out[BB];
	struct kv_tiers_stats st;

	CHECK_INT(kv_tiers_new(&o, 1, BB, &t), 0);
	put(t, 11, 1);
	put(t, 12, 2);
	CHECK_INT(kv_tiers_load(t, 11, out), KV_TIER_HOST);	/* 11 most recent */
	CHECK(is_block(out, 1));
	put(t, 13, 3);	/* 12 goes: nothing below */
	settle(t);
	CHECK_INT(kv_tiers_find(t, 12), KV_TIER_NONE);
	CHECK_INT(kv_tiers_find(t, 11), KV_TIER_HOST);
	CHECK_INT(kv_tiers_find(t, 13), KV_TIER_HOST);
	CHECK_INT(kv_tiers_load(t, 12, out), KV_TIER_NONE);
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.blocks[KV_TIER_HOST], 2);
	CHECK_INT((int)st.dropped, 1);
	CHECK_INT((int)st.offloads[KV_TIER_HOST], 3);
	CHECK_INT((int)st.onboards[KV_TIER_HOST], 1);
	kv_tiers_free(t);
}

/* G2's buffers are reused: with no tier below, a G2 of two blocks never
 * needs a third buffer but the one whose block pushes the LRU out. */
TEST(host_tier_reuses_its_buffers)
{
	struct kv_tiers_opts o = { .host_bytes = 2 * BB };
	struct kv_tiers *t;
	unsigned char out[BB];
	struct kv_tiers_stats st;
	void *seen[4];
	int n_seen = 0;

	CHECK_INT(kv_tiers_new(&o, 1, BB, &t), 0);
	for (int i = 0; i < 50; i++) {
		unsigned char *p = kv_tiers_reserve(t, 100 + (uint64_t)i);
		CHECK_MSG(p, "no buffer for block %d", i);
		int k = 0;
		while (k < n_seen && seen[k] != p)
			k++;
		if (k == n_seen) {
			CHECK_MSG(n_seen < 3, "a fourth buffer for block %d", i);
			seen[n_seen++] = p;
		}
		for (int j = 0; j < BB; j++)
			p[j] = (unsigned char)(i * 7 + j);
		kv_tiers_put(t, 100 + (uint64_t)i, p);
	}
	CHECK_INT(kv_tiers_load(t, 148, out), KV_TIER_HOST);
	CHECK(is_block(out, 48));
	CHECK_INT(kv_tiers_load(t, 149, out), KV_TIER_HOST);
	CHECK(is_block(out, 49));
	CHECK_INT(kv_tiers_find(t, 147), KV_TIER_NONE);
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.dropped, 48);
	/* a block the tiers hold needs no buffer (no copy) */
	CHECK(!kv_tiers_reserve(t, 149));
	kv_tiers_free(t);
}

TEST(disk_tier_lru_restart_and_foreign_files)
{
	char *dir = mkdir_tmp();
	struct kv_tiers_opts o = { .disk_dir = dir,
				   .disk_bytes = 2 * (KVB_HEADER_BYTES + BB) + 10 };
	struct kv_tiers *t;
	unsigned char out[BB];

	CHECK_INT(kv_tiers_new(&o, 7, BB, &t), 0);
	for (int i = 1; i <= 3; i++)
		put(t, 20 + (uint64_t)i, i);	/* no G2: straight to G3 */
	settle(t);
	CHECK_INT(n_files(dir), 2);
	CHECK_INT(kv_tiers_find(t, 21), KV_TIER_NONE);	/* the least recent went */
	CHECK_INT(kv_tiers_load(t, 22, out), KV_TIER_DISK);
	CHECK(is_block(out, 2));
	kv_tiers_free(t);

	/* restarted: both found again; another fingerprint sees none of them */
	CHECK_INT(kv_tiers_new(&o, 7, BB, &t), 0);
	CHECK_INT(kv_tiers_find(t, 22), KV_TIER_DISK);
	CHECK_INT(kv_tiers_find(t, 23), KV_TIER_DISK);
	CHECK_INT(kv_tiers_load(t, 23, out), KV_TIER_DISK);
	CHECK(is_block(out, 3));
	kv_tiers_free(t);
	CHECK_INT(kv_tiers_new(&o, 8, BB, &t), 0);
	CHECK_INT(kv_tiers_find(t, 22), KV_TIER_NONE);
	kv_tiers_free(t);
	CHECK_INT(n_files(dir), 2);	/* left alone */

	/* another block's file under 22's name: its header says so: dropped */
	char a[400], b[400];
	snprintf(a, sizeof(a), "%s/%016llx-%016llx.kvb", dir, 7ull, 22ull);
	snprintf(b, sizeof(b), "%s/%016llx-%016llx.kvb", dir, 7ull, 23ull);
	CHECK(rename(b, a) == 0);
	CHECK_INT(kv_tiers_new(&o, 7, BB, &t), 0);
	struct kv_tiers_stats st;
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.corrupt, 1);
	CHECK_INT(kv_tiers_find(t, 22), KV_TIER_NONE);
	CHECK_INT(n_files(dir), 0);
	kv_tiers_free(t);
	rm_dir(dir);
	free(dir);
}

TEST(shared_tier_written_by_one_read_by_another)
{
	char *dir = mkdir_tmp();
	struct kv_tiers_opts o = { .shared_dir = dir };
	struct kv_tiers *w1, *w2;
	unsigned char out[BB];

	CHECK_INT(kv_tiers_new(&o, 9, BB, &w1), 0);
	CHECK_INT(kv_tiers_new(&o, 9, BB, &w2), 0);
	put(w1, 31, 5);
	settle(w1);
	CHECK_INT(kv_tiers_find(w2, 31), KV_TIER_SHARED);
	CHECK_INT(kv_tiers_load(w2, 31, out), KV_TIER_SHARED);
	CHECK(is_block(out, 5));
	/* a truncated shared file is not served, and not deleted (not ours) */
	char p[400];
	snprintf(p, sizeof(p), "%s/%016llx-%016llx.kvb", dir, 9ull, 31ull);
	CHECK(truncate(p, 70) == 0);
	CHECK_INT(kv_tiers_load(w2, 31, out), KV_TIER_NONE);
	struct kv_tiers_stats st;
	kv_tiers_stats(w2, &st);
	CHECK_INT((int)st.corrupt, 1);
	CHECK_INT(n_files(dir), 1);
	kv_tiers_free(w1);
	kv_tiers_free(w2);
	rm_dir(dir);
	free(dir);
}

/* The tier moves reported, in order, as "+G2:31" / "-G2:31". */
static void log_moved(void *arg, int tier, int stored, uint64_t hash)
{
	struct strbuf *sb = arg;
	sb_addf(sb, "%s%cG%d:%llu", sb->len ? " " : "", stored ? '+' : '-', tier,
		(unsigned long long)hash);
}

TEST(moves_between_tiers_are_reported)
{
	char *disk = mkdir_tmp(), *shared = mkdir_tmp();
	struct kv_tiers_opts o = { .host_bytes = BB, .disk_dir = disk,
				   .disk_bytes = KVB_HEADER_BYTES + BB, .shared_dir = shared };
	struct kv_tiers *t;
	struct strbuf log = STRBUF_INIT;

	/* G2, G3 one block each: each put pushes the previous block down */
	CHECK_INT(kv_tiers_new(&o, 5, BB, &t), 0);
	kv_tiers_set_moved(t, log_moved, &log);
	for (int i = 1; i <= 3; i++) {
		put(t, 30 + (uint64_t)i, i);
		settle(t);
	}
	CHECK_STR(log.buf ? log.buf : "", "+G2:31 +G2:32 -G2:31 +G3:31 +G2:33 -G2:32 +G3:32 "
		  "-G3:31 +G4:31");
	kv_tiers_free(t);

	/* restarted: what G3 holds is reported at once; a bad G4 file is
	 * reported gone */
	sb_reset(&log);
	CHECK_INT(kv_tiers_new(&o, 5, BB, &t), 0);
	kv_tiers_set_moved(t, log_moved, &log);
	CHECK_STR(log.buf ? log.buf : "", "+G3:32");
	char path[400];
	unsigned char out[BB];
	snprintf(path, sizeof(path), "%s/%016llx-%016llx.kvb", shared, 5ull, 31ull);
	CHECK(truncate(path, 10) == 0);
	CHECK_INT(kv_tiers_load(t, 31, out), KV_TIER_NONE);
	CHECK_STR(log.buf, "+G3:32 -G4:31");
	kv_tiers_free(t);
	sb_release(&log);
	rm_dir(disk);
	rm_dir(shared);
	free(disk);
	free(shared);
}

/* G4 keeps this worker's LRU blocks up to its capacity, and forgets the
 * ones whose files vanish (the sweep, or a load that misses): each with
 * a removal event, its blocks in the stats. */
TEST(shared_tier_bounded_and_vanished_files_forgotten)
{
	char *shared = mkdir_tmp();
	struct kv_tiers_opts o = { .shared_dir = shared, .shared_bytes = 2 * (KVB_HEADER_BYTES + BB),
				   .sweep_ms = 20 };
	struct kv_tiers *t;
	struct kv_tiers_stats st;
	struct strbuf log = STRBUF_INIT;
	unsigned char out[BB];
	char path[400];

	CHECK_INT(kv_tiers_new(&o, 6, BB, &t), 0);
	kv_tiers_set_moved(t, log_moved, &log);
	for (int i = 1; i <= 3; i++) {
		put(t, 40 + (uint64_t)i, i);
		settle(t);
	}
	CHECK_STR(log.buf ? log.buf : "", "+G4:41 +G4:42 +G4:43 -G4:41");
	CHECK_INT(n_files(shared), 2);
	CHECK_INT(kv_tiers_find(t, 41), KV_TIER_NONE);
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.blocks[KV_TIER_SHARED], 2);
	CHECK_INT((int)st.offloads[KV_TIER_SHARED], 3);

	/* a file pruned by someone else: the sweep drops its entry */
	snprintf(path, sizeof(path), "%s/%016llx-%016llx.kvb", shared, 6ull, 42ull);
	CHECK(unlink(path) == 0);
	for (int i = 0; i < 400; i++) {
		kv_tiers_stats(t, &st);
		if (st.blocks[KV_TIER_SHARED] < 2)
			break;
		usleep(5000);
	}
	CHECK_INT((int)st.blocks[KV_TIER_SHARED], 1);
	kv_tiers_free(t);	/* the thread is done with log */
	CHECK_STR(log.buf, "+G4:41 +G4:42 +G4:43 -G4:41 -G4:42");

	/* a load that misses drops it too (no sweep in the meantime) */
	sb_reset(&log);
	o.sweep_ms = 600000;
	CHECK_INT(kv_tiers_new(&o, 6, BB, &t), 0);
	kv_tiers_set_moved(t, log_moved, &log);
	put(t, 51, 1);
	settle(t);
	CHECK_INT(kv_tiers_load(t, 51, out), KV_TIER_SHARED);
	CHECK(is_block(out, 1));
	snprintf(path, sizeof(path), "%s/%016llx-%016llx.kvb", shared, 6ull, 51ull);
	CHECK(unlink(path) == 0);
	CHECK_INT(kv_tiers_load(t, 51, out), KV_TIER_NONE);
	CHECK_STR(log.buf, "+G4:51 -G4:51");
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.blocks[KV_TIER_SHARED], 0);
	kv_tiers_free(t);
	sb_release(&log);
	rm_dir(shared);
	free(shared);
}

/* Two workers that wrote the same G4 block: the file is the last
 * writer's, and the other's LRU must not delete it; its writer's does. */
TEST(shared_tier_deletes_only_the_file_it_wrote)
{
	char *shared = mkdir_tmp();
	struct kv_tiers_opts o = { .shared_dir = shared, .shared_bytes = KVB_HEADER_BYTES + BB };
	struct kv_tiers *w1, *w2;
	struct strbuf log = STRBUF_INIT;
	unsigned char out[BB];
	char path[400];

	CHECK_INT(kv_tiers_new(&o, 4, BB, &w1), 0);
	CHECK_INT(kv_tiers_new(&o, 4, BB, &w2), 0);
	kv_tiers_set_moved(w1, log_moved, &log);
	put(w1, 61, 1);
	settle(w1);
	put(w2, 61, 1);		/* w2's copy replaces w1's file */
	settle(w2);
	put(w1, 62, 2);		/* w1 holds one block: 61 is its LRU */
	settle(w1);
	CHECK_STR(log.buf ? log.buf : "", "+G4:61 +G4:62 -G4:61");
	snprintf(path, sizeof(path), "%s/%016llx-%016llx.kvb", shared, 4ull, 61ull);
	CHECK_MSG(access(path, F_OK) == 0, "w1 deleted w2's file of 61");
	CHECK_INT(kv_tiers_load(w2, 61, out), KV_TIER_SHARED);
	CHECK(is_block(out, 1));
	put(w2, 63, 3);		/* w2's LRU 61 is its own file: deleted */
	settle(w2);
	CHECK_MSG(access(path, F_OK) < 0, "w2 kept its file of 61");
	CHECK_INT(n_files(shared), 2);	/* 62 and 63 */

	/* w1's file of 62 pruned, and w2 writes 62 anew (the inode may be
	 * the same number): w1's LRU leaves w2's file alone */
	snprintf(path, sizeof(path), "%s/%016llx-%016llx.kvb", shared, 4ull, 62ull);
	CHECK(unlink(path) == 0);
	usleep(2000);	/* another mtime, whatever the clock's grain */
	put(w2, 62, 2);
	settle(w2);
	put(w1, 64, 4);
	settle(w1);
	CHECK_INT(kv_tiers_load(w2, 62, out), KV_TIER_SHARED);
	CHECK(is_block(out, 2));
	kv_tiers_free(w1);
	kv_tiers_free(w2);
	sb_release(&log);
	rm_dir(shared);
	free(shared);
}

/* kv_tiers_run_first jobs run before the writes queued earlier. */
static int gate, order[3], n_order;
static void wait_gate(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&gate, __ATOMIC_ACQUIRE))
		usleep(1000);
}

static void note(void *arg)
{
	order[n_order++] = (int)(intptr_t)arg;
}

TEST(first_jobs_go_before_queued_ones)
{
	struct kv_tiers_opts o = { .host_bytes = BB };
	struct kv_tiers *t;

	CHECK_INT(kv_tiers_new(&o, 1, BB, &t), 0);
	kv_tiers_run(t, wait_gate, NULL);	/* holds the thread */
	usleep(20000);
	kv_tiers_run(t, note, (void *)1);
	kv_tiers_run_first(t, note, (void *)2);
	kv_tiers_run_first(t, note, (void *)3);
	__atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
	settle(t);
	CHECK_INT(n_order, 3);
	CHECK_INT(order[0], 2);
	CHECK_INT(order[1], 3);
	CHECK_INT(order[2], 1);
	kv_tiers_free(t);
}

/* Blocks on their way to a file wait in G2's pool; when the writes lag
 * so far that every buffer is taken, an evicted block is dropped
 * (counted), never waited for. */
TEST(lagging_writes_drop_blocks_instead_of_waiting)
{
	size_t bb = KV_TIERS_STAGE_BYTES / 4;	/* a pool of four, no G2 */
	char *dir = mkdir_tmp();
	struct kv_tiers_opts o = { .disk_dir = dir, .disk_bytes = 1ull << 32 };
	struct kv_tiers *t;
	struct kv_tiers_stats st;

	CHECK_INT(kv_tiers_new(&o, 3, bb, &t), 0);
	__atomic_store_n(&gate, 0, __ATOMIC_RELEASE);
	kv_tiers_run(t, wait_gate, NULL);	/* the writes wait */
	for (int i = 0; i < 4; i++) {
		unsigned char *p = kv_tiers_reserve(t, 70 + (uint64_t)i);
		CHECK_MSG(p, "no buffer for block %d", i);
		p[0] = (unsigned char)i;
		kv_tiers_put(t, 70 + (uint64_t)i, p);
	}
	CHECK(!kv_tiers_reserve(t, 80));
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.dropped, 1);
	rm_dir(dir);	/* the four writes then fail at once */
	__atomic_store_n(&gate, 1, __ATOMIC_RELEASE);
	settle(t);
	kv_tiers_stats(t, &st);
	CHECK_INT((int)st.dropped, 5);
	kv_tiers_free(t);
	free(dir);
}

int main(void)
{
	return RUN_TESTS();
}
