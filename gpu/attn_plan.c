/*
 * attn_plan.c - work items and block tables of the CUDA attention kernel
 * (see attn_plan.h).
 */
#include "gpu/attn_plan.h"

#include <string.h>

int attn_tokens_per_item(int group)
{
	return group >= ATTN_ROWS ? 1 : ATTN_ROWS / group;
}

int attn_plan(const struct attn_batch *ab, struct attn_item *items)
{
	int per = attn_tokens_per_item(ab->n_heads / ab->n_kv_heads), n = 0;

	for (int t = 0; t < ab->n_tokens;) {
		/* extend while the next token is the same sequence, later */
		int e = t + 1;
		while (e < ab->n_tokens && e - t < per && ab->seq[e] == ab->seq[t] &&
		       ab->pos[e] > ab->pos[e - 1])
			e++;
		for (int h = 0; h < ab->n_kv_heads; h++)
			items[n++] = (struct attn_item){ t, e - t, ab->seq[t], h };
		t = e;
	}
	return n;
}

int attn_table_width(const struct attn_batch *ab)
{
	int w = 0;

	for (int t = 0; t < ab->n_tokens; t++)
		if (ab->pos[t] / ab->block_size + 1 > w)
			w = ab->pos[t] / ab->block_size + 1;
	return w;
}

void attn_flatten_tables(const struct attn_batch *ab, int n_seqs, int stride, int32_t *out)
{
	int need[n_seqs > 0 ? n_seqs : 1];

	memset(need, 0, sizeof(need));
	for (int t = 0; t < ab->n_tokens; t++)
		if (ab->pos[t] / ab->block_size + 1 > need[ab->seq[t]])
			need[ab->seq[t]] = ab->pos[t] / ab->block_size + 1;
	memset(out, 0, (size_t)n_seqs * (size_t)stride * sizeof(*out));
	for (int s = 0; s < n_seqs; s++)
		memcpy(out + (size_t)s * (size_t)stride, ab->tables[s],
		       (size_t)need[s] * sizeof(*out));
}

size_t attn_shared_bytes(int rows, int head_dim)
{
	return sizeof(float) * ((size_t)rows * (size_t)head_dim +
				(size_t)ATTN_TILE * (size_t)(head_dim + 1) +
				(size_t)ATTN_TILE * (size_t)head_dim);
}
