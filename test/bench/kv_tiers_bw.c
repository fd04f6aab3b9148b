/*
 * kv_tiers_bw.c - offload and onboard bandwidth of each KV tier
 * (core/kv/tiers.h) against a baseline moving the same bytes in the same
 * run ('make bench' via test/bench/kv_tiers.sh):
 *
 *   kv_tiers_bw [BLOCK_BYTES [BLOCKS [DIR]]]     (1835008 64 $TMPDIR or /tmp)
 *
 * BLOCK_BYTES defaults to a 16-token block of Qwen3-0.6B's F16 K/V.
 *   G2 offload   what the engine's step thread does for an evicted
 *                block: kv_tiers_reserve (a buffer of G2's pool), copy
 *                the block in, kv_tiers_put; against memcpy of the
 *                blocks into buffers allocated (and touched) beforehand
 *                (the best of rounds before and after the tiers').
 *   G2 offload, cold   the same into a new G2 (pool buffers used for the
 *                first time, their pages faulted in by the tiers' thread
 *                meanwhile, or by the copy).
 *   G2 onboard   kv_tiers_load from host memory; against memcpy.
 * Loads and reads go into one buffer of all the blocks, as onboarding's.
 *   G3/G4 offload  the same into tiers with no G2 (every block goes
 *                straight to a file, on the tiers' thread), timed until
 *                the thread is done; against write() of the same bytes,
 *                one block at a time, into one file in the same directory.
 * Except for the cold row, the tiers took as many other blocks first and
 * were left idle 0.3 s (a worker that has run a while: G2 full, its pool's
 * pages faulted in); each G2 put drops G2's LRU block, the files fit.
 *   G3/G4 onboard  kv_tiers_load of each block's file (opened, header and
 *                checksum checked); against read() of that one file, one
 *                block at a time.  Both from the page cache: the files
 *                were just written (a cold disk is slower for both).
 * G3 and G4 are directories under DIR (one filesystem here; G4 is meant
 * for a shared one).  Each figure is the best of 5 rounds.  Prints a
 * table and FIGURE lines (GB/s, ratio to the baseline).
 */
#include "core/kv/tiers.h"
#include "core/err.h"
#include "core/fsutil.h"
#include "core/util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ROUNDS 5

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static size_t bb;
static int nblk;
static unsigned char *src, *dst;	/* nblk blocks each; dst: touched */

static double now_s(void)
{
	return (double)mono_ns() * 1e-9;
}

static void set_flag(void *arg)
{
	__atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
}

/* Wait until the tiers' thread has done what was queued. */
static void settle(struct kv_tiers *t)
{
	int done = 0;
	kv_tiers_run(t, set_flag, &done);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		usleep(200);
}

static double gbps(double s)
{
	return (double)bb * nblk / s / 1e9;
}

/* Seconds to memcpy every block into buffers allocated beforehand. */
static double t_memcpy(void)
{
	double best = 1e9;
	for (int r = 0; r < ROUNDS; r++) {
		double t0 = now_s();
		for (int i = 0; i < nblk; i++)
			memcpy(dst + (size_t)i * bb, src + (size_t)i * bb, bb);
		double s = now_s() - t0;
		best = s < best ? s : best;
	}
	return best;
}

/* Seconds to write every block into one file of dir, then to read it. */
static void t_file(const char *dir, double *w, double *rd)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/plain.bin", dir);
	*w = *rd = 1e9;
	for (int r = 0; r < ROUNDS; r++) {
		unlink(path);
		double t0 = now_s();
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		for (int i = 0; fd >= 0 && i < nblk; i++)
			if (fd_write_all(fd, src + (size_t)i * bb, bb) < 0)
				die("kv_tiers_bw: %s: write failed", path);
		if (fd < 0 || close(fd) < 0)
			die("kv_tiers_bw: %s: cannot write", path);
		double s = now_s() - t0;
		*w = s < *w ? s : *w;
		t0 = now_s();
		fd = open(path, O_RDONLY);
		for (int i = 0; fd >= 0 && i < nblk; i++)
			if (fd_read_full(fd, dst + (size_t)i * bb, bb) < 0)
				die("kv_tiers_bw: %s: read failed", path);
		if (fd < 0)
			die("kv_tiers_bw: %s: cannot read", path);
		close(fd);
		s = now_s() - t0;
		*rd = s < *rd ? s : *rd;
	}
	unlink(path);
}

/* Offload every block as hashes base.. (reserve, copy, put). */
static void put_all(struct kv_tiers *t, uint64_t base)
{
	for (int i = 0; i < nblk; i++) {
		void *buf = kv_tiers_reserve(t, base + (uint64_t)i);
		if (!buf)
			die("kv_tiers_bw: no buffer for block %d", i);
		memcpy(buf, src + (size_t)i * bb, bb);
		kv_tiers_put(t, base + (uint64_t)i, buf);
	}
}

/* Seconds to offload every block into tiers o (and wait for the thread),
 * then to load them all back; checks they did.  warm: into tiers that
 * took as many other blocks before. */
static void t_tiers(struct kv_tiers_opts *o, enum kv_tier want, int warm, double *off,
		    double *on)
{
	*off = *on = 1e9;
	for (int r = 0; r < ROUNDS; r++) {
		struct kv_tiers *t;
		if (kv_tiers_new(o, 0x5eed + (uint64_t)r, bb, &t) < 0)
			die("kv_tiers_bw: %s", err_msg());
		if (warm) {
			put_all(t, 1000000);
			settle(t);
			usleep(300000);
		}
		double t0 = now_s();
		put_all(t, 1000);
		settle(t);
		double s = now_s() - t0;
		*off = s < *off ? s : *off;
		t0 = now_s();
		for (int i = 0; i < nblk; i++)
			if (kv_tiers_load(t, 1000 + (uint64_t)i, dst + (size_t)i * bb) != want)
				die("kv_tiers_bw: block %d did not come back from %s", i,
				    kv_tier_name(want));
		s = now_s() - t0;
		*on = s < *on ? s : *on;
		if (memcmp(dst, src, bb * (size_t)nblk))
			die("kv_tiers_bw: blocks from %s differ", kv_tier_name(want));
		kv_tiers_free(t);
	}
}

static void row(const char *name, const char *dir, double s, double base, const char *bname)
{
	printf("%-14s %-7s %8.2f GB/s %8.2f GB/s %7.3f  (%s)\n", name, dir, gbps(s), gbps(base),
	       base / s, bname);
}

static void figure(const char *name, double s, double base, const char *bname)
{
	printf("FIGURE kv_tiers_bw_%s %.3f GB/s %.3f %s\n", name, gbps(s), base / s, bname);
}

int main(int argc, char **argv)
{
	bb = argc > 1 ? strtoul(argv[1], NULL, 10) : 1835008;
	nblk = argc > 2 ? atoi(argv[2]) : 64;
	const char *base = argc > 3 ? argv[3] : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	if (bb < 64 || nblk < 1)
		die("usage: kv_tiers_bw [BLOCK_BYTES [BLOCKS [DIR]]]");
	char root[4200], g3[4300], g4[4300];
	snprintf(root, sizeof(root), "%s/kv_tiers_bw-XXXXXX", base);
	if (!mkdtemp(root))
		die("kv_tiers_bw: cannot make a directory under %s", base);
	snprintf(g3, sizeof(g3), "%s/g3", root);
	snprintf(g4, sizeof(g4), "%s/g4", root);

	src = xmalloc(bb * (size_t)nblk);
	for (size_t i = 0; i < bb * (size_t)nblk; i++)
		src[i] = (unsigned char)(i * 131 + (i >> 12));
	dst = xmalloc(bb * (size_t)nblk);
	memset(dst, 1, bb * (size_t)nblk);

	double mc = t_memcpy(), fw3, fr3, fw4, fr4;
	struct kv_tiers_opts o2 = { .host_bytes = (uint64_t)bb * (uint64_t)nblk };
	struct kv_tiers_opts o3 = { .disk_dir = g3,
				    .disk_bytes = (uint64_t)(bb + 4096) * nblk * 2 };
	struct kv_tiers_opts o4 = { .shared_dir = g4,
				    .shared_bytes = (uint64_t)(bb + 4096) * nblk * 2 };
	double off2, on2, cold2, on2c, off3, on3, off4, on4;
	t_tiers(&o2, KV_TIER_HOST, 1, &off2, &on2);
	t_tiers(&o2, KV_TIER_HOST, 0, &cold2, &on2c);
	t_tiers(&o3, KV_TIER_DISK, 1, &off3, &on3);
	t_file(g3, &fw3, &fr3);
	t_tiers(&o4, KV_TIER_SHARED, 1, &off4, &on4);
	t_file(g4, &fw4, &fr4);
	double mc2 = t_memcpy();	/* the best of before and after */
	mc = mc2 < mc ? mc2 : mc;

	printf("kv_tiers_bw: %d blocks of %zu bytes (%.0f MiB), best of %d; files in %s "
	       "(page cache)\n", nblk, bb, (double)bb * nblk / (1 << 20), ROUNDS, root);
	printf("%-14s %-7s %13s %13s %7s\n", "", "", "tier", "baseline", "ratio");
	row("G2 offload", "memory", off2, mc, "memcpy");
	row("G2 off. cold", "memory", cold2, mc, "memcpy");
	row("G2 onboard", "memory", on2, mc, "memcpy");
	row("G3 offload", "g3", off3, fw3, "sequential write");
	row("G3 onboard", "g3", on3, fr3, "sequential read");
	row("G4 offload", "g4", off4, fw4, "sequential write");
	row("G4 onboard", "g4", on4, fr4, "sequential read");
	figure("G2_offload", off2, mc, "memcpy");
	figure("G2_offload_cold", cold2, mc, "memcpy");
	figure("G2_onboard", on2, mc, "memcpy");
	figure("G3_offload", off3, fw3, "file_write");
	figure("G3_onboard", on3, fr3, "file_read");
	figure("G4_offload", off4, fw4, "file_write");
	figure("G4_onboard", on4, fr4, "file_read");
	char cmd[4400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "kv_tiers_bw: could not remove %s\n", root);
	free(src);
	free(dst);
	return 0;
}
