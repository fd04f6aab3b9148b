/*
 * digest.c - SHA-256 and SHA-1 written from FIPS 180-4 (see digest.h).
 */
#include "core/model/digest.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline uint32_t rotr(uint32_t x, unsigned n) { return (x >> n) | (x << (32 - n)); }
static inline uint32_t rotl(uint32_t x, unsigned n) { return (x << n) | (x >> (32 - n)); }

static inline uint32_t be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static const uint32_t K256[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static void sha256_block(uint32_t h[8], const unsigned char *p)
{
	uint32_t w[64], a, b, c, d, e, f, g, k;

	for (int i = 0; i < 16; i++)
		w[i] = be32(p + 4 * i);
	for (int i = 16; i < 64; i++) {
		uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
		uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
		w[i] = w[i - 16] + s0 + w[i - 7] + s1;
	}
	a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
	for (int i = 0; i < 64; i++) {
		uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) +
			      K256[i] + w[i];
		uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
		k = g; g = f; f = e; e = d + t1;
		d = c; c = b; b = a; a = t1 + t2;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d;
	h[4] += e; h[5] += f; h[6] += g; h[7] += k;
}

void sha256_init(struct sha256 *c)
{
	static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
					0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
	memcpy(c->h, iv, sizeof(iv));
	c->len = 0;
	c->nbuf = 0;
}

/* Shared Merkle-Damgard buffering for both hashes. */
static void md_update(uint32_t *h, unsigned char *buf, size_t *nbuf, uint64_t *total,
		      const void *data, size_t len, void (*block)(uint32_t *, const unsigned char *))
{
	const unsigned char *p = data;

	*total += len;
	if (*nbuf) {
		size_t take = 64 - *nbuf < len ? 64 - *nbuf : len;
		memcpy(buf + *nbuf, p, take);
		*nbuf += take;
		p += take;
		len -= take;
		if (*nbuf < 64)
			return;
		block(h, buf);
		*nbuf = 0;
	}
	for (; len >= 64; p += 64, len -= 64)
		block(h, p);
	memcpy(buf, p, len);
	*nbuf = len;
}

static void md_pad(uint32_t *h, unsigned char *buf, size_t nbuf, uint64_t total,
		   void (*block)(uint32_t *, const unsigned char *))
{
	uint64_t bits = total * 8;

	buf[nbuf++] = 0x80;
	if (nbuf > 56) {
		memset(buf + nbuf, 0, 64 - nbuf);
		block(h, buf);
		nbuf = 0;
	}
	memset(buf + nbuf, 0, 56 - nbuf);
	put_be32(buf + 56, (uint32_t)(bits >> 32));
	put_be32(buf + 60, (uint32_t)bits);
	block(h, buf);
}

static void sha256_block_cb(uint32_t *h, const unsigned char *p) { sha256_block(h, p); }

void sha256_update(struct sha256 *c, const void *data, size_t len)
{
	md_update(c->h, c->buf, &c->nbuf, &c->len, data, len, sha256_block_cb);
}

void sha256_final(struct sha256 *c, unsigned char out[32])
{
	md_pad(c->h, c->buf, c->nbuf, c->len, sha256_block_cb);
	for (int i = 0; i < 8; i++)
		put_be32(out + 4 * i, c->h[i]);
}

static void sha1_block(uint32_t *h, const unsigned char *p)
{
	uint32_t w[80], a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];

	for (int i = 0; i < 16; i++)
		w[i] = be32(p + 4 * i);
	for (int i = 16; i < 80; i++)
		w[i] = rotl(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999;
		} else if (i < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1;
		} else if (i < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdc;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6;
		}
		uint32_t t = rotl(a, 5) + f + e + k + w[i];
		e = d; d = c; c = rotl(b, 30); b = a; a = t;
	}
	h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

void sha1_init(struct sha1 *c)
{
	static const uint32_t iv[5] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476, 0xc3d2e1f0 };
	memcpy(c->h, iv, sizeof(iv));
	c->len = 0;
	c->nbuf = 0;
}

void sha1_update(struct sha1 *c, const void *data, size_t len)
{
	md_update(c->h, c->buf, &c->nbuf, &c->len, data, len, sha1_block);
}

void sha1_final(struct sha1 *c, unsigned char out[20])
{
	md_pad(c->h, c->buf, c->nbuf, c->len, sha1_block);
	for (int i = 0; i < 5; i++)
		put_be32(out + 4 * i, c->h[i]);
}

void digest_hex(const unsigned char *d, size_t n, char *hex)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * n] = '\0';
}

/* Feed a file's contents to update(ctx). */
static int hash_file(const char *path, void *ctx, void (*update)(void *, const void *, size_t),
		     uint64_t *size)
{
	enum { BUF = 1 << 16 };
	unsigned char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		int e = errno;
		close(fd);
		return err_set(-e, "%s: %s", path, strerror(e));
	}
	*size = (uint64_t)st.st_size;
	if (!update) {
		close(fd);
		return 0;
	}
	buf = xmalloc(BUF);
	for (;;) {
		ssize_t r = read(fd, buf, BUF);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return err_set(-e, "%s: read error: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		update(ctx, buf, (size_t)r);
	}
	free(buf);
	close(fd);
	return 0;
}

static void sha256_cb(void *c, const void *d, size_t n) { sha256_update(c, d, n); }
static void sha1_cb(void *c, const void *d, size_t n) { sha1_update(c, d, n); }

int digest_file_sha256(const char *path, char hex[65])
{
	struct sha256 c;
	unsigned char d[32];
	uint64_t size;
	int rc;

	sha256_init(&c);
	if ((rc = hash_file(path, &c, sha256_cb, &size)) < 0)
		return rc;
	sha256_final(&c, d);
	digest_hex(d, 32, hex);
	return 0;
}

int digest_file_git_sha1(const char *path, char hex[41])
{
	struct sha1 c;
	unsigned char d[20];
	char head[40];
	uint64_t size = 0;
	int rc;

	if ((rc = hash_file(path, NULL, NULL, &size)) < 0)
		return rc;
	sha1_init(&c);
	int n = snprintf(head, sizeof(head), "blob %llu", (unsigned long long)size);
	sha1_update(&c, head, (size_t)n + 1);	/* the NUL is part of the object */
	if ((rc = hash_file(path, &c, sha1_cb, &size)) < 0)
		return rc;
	sha1_final(&c, d);
	digest_hex(d, 20, hex);
	return 0;
}
