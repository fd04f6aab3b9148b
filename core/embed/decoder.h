/*
 * decoder.h - a decoder-only model (Llama, Qwen2, Qwen3: what core/model
 * loads) run as a sentence encoder, as sentence-transformers runs
 * Qwen3-Embedding: causal attention within each sequence, the last hidden
 * states after the final RMSNorm (the pooling then takes the last token's).
 *
 * Weights are loaded as F32 (MODEL_LOAD_F32).  A batch is packed as in
 * bert.h.  Ownership and threading as bert.h.
 */
#ifndef DYN_EMBED_DECODER_H
#define DYN_EMBED_DECODER_H

#include <stdint.h>

struct decoder_enc;

int decoder_open(const char *dir, int threads, struct decoder_enc **out);
void decoder_free(struct decoder_enc *d);
int decoder_dim(const struct decoder_enc *d);
int decoder_max_positions(const struct decoder_enc *d);
/* Final hidden states [start[n_seqs], dim] of the packed sequences. */
int decoder_forward(struct decoder_enc *d, const int32_t *tokens, const int *start, int n_seqs,
		    float *hidden);

#endif
