/*
 * block_hash.h - the KV block hashes of DESIGN.md (Dynamo's scheme), shared
 * by the engine's prefix cache and the router's prefix index.
 *
 *   local hash of a block  = XXH3-64, seed 1337, over its token ids as
 *                            little-endian u32
 *   sequence hash, block 0 = its local hash
 *   sequence hash, block i = XXH3-64, seed 1337, over the 16 bytes
 *                            le64(seq_hash[i-1]) || le64(local_hash[i])
 *
 * Only full blocks are hashed.  Pure functions, thread-safe.
 */
#ifndef DYN_PROTO_BLOCK_HASH_H
#define DYN_PROTO_BLOCK_HASH_H

#include <stddef.h>
#include <stdint.h>

#define BLOCK_HASH_SEED 1337u

/* A full block's two hashes, as KV events and the prefix index carry them. */
struct block_hash_pair {
	uint64_t seq_hash, local_hash;
};

/* Local hash of n token ids. */
uint64_t block_hash_local(const int32_t *tokens, size_t n);
/* Sequence hash of a block whose parent block has sequence hash parent. */
uint64_t block_hash_chain(uint64_t parent, uint64_t local);

/*
 * Hash every full block of tokens[0..n) (block_size tokens each): writes
 * n / block_size entries to local[] and seq[] (either may be NULL) and
 * returns that count.
 */
size_t block_hash_sequence(const int32_t *tokens, size_t n, int block_size, uint64_t *local,
			   uint64_t *seq);

#endif
