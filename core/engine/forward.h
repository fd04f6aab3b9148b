/*
 * forward.h - the decoder-only transformer forward pass (Llama, Mistral,
 * Qwen2, Qwen3) over a batch of tokens from several sequences, written
 * once against the backend op interface (backend.h).
 *
 * A step's batch mixes prefill chunks and decode tokens: token t belongs to
 * sequence seq[t] at position pos[t] and its K/V go to slot[t] of the paged
 * pool.  The K/V of every token of the batch are written before attention
 * runs, so a prefill chunk attends causally to itself and to everything
 * the sequence cached in earlier steps.  Logits are computed only for the
 * tokens listed in out_idx.
 *
 * Ownership: forward_new() keeps pointers to the model and the backend
 * (both outlive it), lets the backend prepare the weights (backend.h
 * prepare_weights) and owns its activation buffers.  Not thread-safe:
 * one step at a time, on the engine's step thread.
 */
#ifndef DYN_ENGINE_FORWARD_H
#define DYN_ENGINE_FORWARD_H

#include "core/engine/backend.h"

#include <stdint.h>

struct forward;

struct fwd_batch {
	int n;				/* tokens in the batch */
	const int32_t *tokens;		/* [n] */
	const int32_t *pos;		/* [n] */
	const int32_t *seq;		/* [n] index into tables */
	const int32_t *slot;		/* [n] KV pool row */
	const int32_t *const *tables;	/* block table of each sequence */
	int n_seqs;			/* of tables */
	int n_out;			/* tokens that need logits */
	const int32_t *out_idx;		/* [n_out] indices into the batch */
};

/* max_tokens: the largest batch forward_run() will be given; max_out: the
 * most rows of it that need logits (the activations for logits are sized
 * by it: max_tokens x vocab would be hundreds of MB for large vocabularies). */
int forward_new(const struct model *m, struct backend *b, int block_size, int max_tokens,
		int max_out, struct forward **out);
void forward_free(struct forward *f);

/* Run the batch; logits[n_out, vocab] receive the output rows (host). */
int forward_run(struct forward *f, const struct fwd_batch *batch, float *logits);

/* RoPE inverse frequencies of a model (head_dim / 2 values), with its
 * rope scaling (linear, llama3) applied as transformers does. */
void forward_rope_inv_freq(const struct model_desc *d, float *inv_freq);

#endif
