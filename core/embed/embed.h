/*
 * embed.h - sentence embeddings from a model folder, as sentence-transformers
 * computes them: tokenize ([CLS] text [SEP] for BERT), run the encoder,
 * pool the last hidden states (mean, cls, max or last token, as the
 * Pooling module's config.json says) and L2-normalize when modules.json
 * lists a Normalize module.
 *
 * Inputs longer than the model's limit (sentence_bert_config.json's
 * max_seq_length, else max_position_embeddings) are refused (-E2BIG),
 * where sentence-transformers would cut them silently.
 *
 * Ownership: embedder_open() returns an embedder freed with
 * embedder_free().  Not thread-safe: one embedder_run() at a time.
 * Errors: negative errno with err_msg() set.
 */
#ifndef DYN_EMBED_EMBED_H
#define DYN_EMBED_EMBED_H

#include "core/tok/tok.h"

#include <stddef.h>

struct embedder;

enum embed_pooling { EMBED_POOL_MEAN, EMBED_POOL_CLS, EMBED_POOL_MAX, EMBED_POOL_LAST };

/* Is dir a model dyn embeds: a BERT encoder (config.json model_type
 * "bert"), or any model with a sentence-transformers modules.json (a
 * decoder such as Qwen3-Embedding, run by decoder.h)? */
int embedder_supports(const char *dir);

int embedder_open(const char *dir, int threads, struct embedder **out);
void embedder_free(struct embedder *e);

int embedder_dim(const struct embedder *e);
int embedder_max_tokens(const struct embedder *e);
int embedder_normalizes(const struct embedder *e);
/* May its vectors be cut to fewer dimensions (a Matryoshka model: its
 * config_sentence_transformers.json has "truncate_dim")? */
int embedder_truncatable(const struct embedder *e);
enum embed_pooling embedder_pooling(const struct embedder *e);
const struct tok *embedder_tok(const struct embedder *e);

/* The ids of text with the special tokens; -E2BIG when longer than the
 * limit, -EINVAL for an empty text. */
int embedder_tokenize(const struct embedder *e, const char *text, size_t len,
		      struct tok_ids *out);

/* Embeddings of n inputs (ids[i]: lens[i] token ids, 1..max_tokens of
 * them, checked) into out[n, dim]. */
int embedder_run(struct embedder *e, const int32_t *const *ids, const size_t *lens, int n,
		 float *out);

/* Pool hidden[len, dim] of one sequence into out[dim] and normalize it if
 * asked: shared with decoder models used as embedders. */
void embed_pool(enum embed_pooling p, int normalize, const float *hidden, int len, int dim,
		float *out);

/* Scale v[dim] to unit L2 norm (left as is when zero). */
void embed_normalize(float *v, int dim);

#endif
