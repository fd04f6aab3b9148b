/*
 * attn_plan.h - host side of the CUDA attention kernel (kernels.cu,
 * attend): the step's tokens cut into work items, and the block tables
 * flattened for the device.
 *
 * An item is up to attn_tokens_per_item() consecutive tokens of one
 * sequence in position order, for one KV head: its rows are those tokens
 * times the group of query heads sharing the KV head (GQA), one warp per
 * row, at most ATTN_ROWS rows unless one token's group alone is larger.
 * A decode step (one token per sequence) has one token per item.
 *
 * Pure functions of their arguments; thread-safe.
 */
#ifndef DYN_GPU_ATTN_PLAN_H
#define DYN_GPU_ATTN_PLAN_H

#include "core/engine/backend.h"

#include <stdint.h>

#define ATTN_ROWS 16		/* query rows (warps) per item */
#define ATTN_TILE 32		/* keys per tile (one per lane) */

struct attn_item {		/* kernels.cu mirrors it */
	int32_t first_token, n_tokens, seq, kv_head;
};

/* Tokens per item for group = n_heads / n_kv_heads. */
int attn_tokens_per_item(int group);

/* The step's items into items (room for ab->n_tokens * ab->n_kv_heads);
 * returns their number.  Items of one token range are adjacent, one per
 * KV head. */
int attn_plan(const struct attn_batch *ab, struct attn_item *items);

/* Block-table width the step needs: max over tokens of pos / block_size
 * + 1. */
int attn_table_width(const struct attn_batch *ab);

/* ab's n_seqs block tables as one [n_seqs, stride] array (stride >=
 * attn_table_width(ab)); the entries past a table's needed width are 0. */
void attn_flatten_tables(const struct attn_batch *ab, int n_seqs, int stride, int32_t *out);

/* Shared memory bytes of one attend block (rows x head_dim queries, a K
 * tile padded by one float a row, a V tile). */
size_t attn_shared_bytes(int rows, int head_dim);

#endif
