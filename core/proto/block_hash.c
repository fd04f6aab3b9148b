/*
 * block_hash.c - KV block hashes (see block_hash.h): XXH3-64 with seed
 * 1337 over little-endian bytes, chained parent -> child.
 */
#include "core/proto/block_hash.h"

#include <stdlib.h>
#include <xxhash.h>

static void put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

static void put_le64(unsigned char *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

uint64_t block_hash_local(const int32_t *tokens, size_t n)
{
	unsigned char stack[4 * 256] = { 0 };
	unsigned char *buf = n <= 256 ? stack : malloc(4 * n);
	uint64_t h;

	if (!buf)
		abort();	/* like xmalloc: no recovery from OOM here */
	for (size_t i = 0; i < n; i++)
		put_le32(buf + 4 * i, (uint32_t)tokens[i]);
	h = XXH3_64bits_withSeed(buf, 4 * n, BLOCK_HASH_SEED);
	if (buf != stack)
		free(buf);
	return h;
}

uint64_t block_hash_chain(uint64_t parent, uint64_t local)
{
	unsigned char buf[16];

	put_le64(buf, parent);
	put_le64(buf + 8, local);
	return XXH3_64bits_withSeed(buf, sizeof(buf), BLOCK_HASH_SEED);
}

size_t block_hash_sequence(const int32_t *tokens, size_t n, int block_size, uint64_t *local,
			   uint64_t *seq)
{
	size_t nb = block_size > 0 ? n / (size_t)block_size : 0;
	uint64_t parent = 0;

	for (size_t b = 0; b < nb; b++) {
		uint64_t l = block_hash_local(tokens + b * (size_t)block_size, (size_t)block_size);
		uint64_t s = b ? block_hash_chain(parent, l) : l;
		if (local)
			local[b] = l;
		if (seq)
			seq[b] = s;
		parent = s;
	}
	return nb;
}
