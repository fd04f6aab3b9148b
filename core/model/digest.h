/*
 * digest.h - SHA-256 and SHA-1 (FIPS 180-4), streaming, for checking
 * downloaded files against the hub's ETags: large (LFS) files are named
 * by the SHA-256 of their contents, small ones by their git blob id, the
 * SHA-1 of "blob <size>\0" followed by the contents.
 *
 * A context belongs to one thread; the functions keep no global state.
 */
#ifndef DYN_MODEL_DIGEST_H
#define DYN_MODEL_DIGEST_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
	uint32_t h[8];
	uint64_t len;
	unsigned char buf[64];
	size_t nbuf;
};

struct sha1 {
	uint32_t h[5];
	uint64_t len;
	unsigned char buf[64];
	size_t nbuf;
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t len);
void sha256_final(struct sha256 *c, unsigned char out[32]);

void sha1_init(struct sha1 *c);
void sha1_update(struct sha1 *c, const void *data, size_t len);
void sha1_final(struct sha1 *c, unsigned char out[20]);

/* Lower-case hex of n bytes into hex (2n + 1 bytes). */
void digest_hex(const unsigned char *d, size_t n, char *hex);

/* Hex SHA-256 (64 chars) or git blob id (40 chars) of a file's contents.
 * Return 0 or -errno (err.h). */
int digest_file_sha256(const char *path, char hex[65]);
int digest_file_git_sha1(const char *path, char hex[41]);

#endif
