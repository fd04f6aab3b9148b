/*
 * bert.h - the BERT encoder (all-MiniLM-L6-v2 and other sentence-embedding
 * models of the BertModel architecture): a bidirectional transformer with
 * absolute position and token-type embeddings, post-LayerNorm and GELU
 * (erf), as transformers' modeling_bert, on the CPU kernels.
 *
 * Loaded from a model folder's config.json and safetensors (mapped; the
 * projection matrices may be F32, F16 or BF16, everything else F32).
 *
 * A call runs a batch of sequences packed one after another (no padding):
 * each token attends to all tokens of its own sequence only, which is what
 * the attention mask of a padded batch achieves.
 *
 * Ownership: bert_open() returns an encoder freed with bert_free(); it
 * keeps the weights mapped and a thread pool.  Not thread-safe: one
 * bert_forward() at a time.  Errors: negative errno with err_msg() set.
 */
#ifndef DYN_EMBED_BERT_H
#define DYN_EMBED_BERT_H

#include <stdint.h>

struct bert;

struct bert_config {
	int hidden, layers, heads, intermediate, max_positions, type_vocab, vocab;
	double eps;
};

/* dir: the model folder; threads >= 1. */
int bert_open(const char *dir, int threads, struct bert **out);
void bert_free(struct bert *b);
const struct bert_config *bert_config(const struct bert *b);

/* Is the folder's config.json a BERT model?  (model_type "bert") */
int bert_is_bert(const char *dir);

/* DIR/NAME parsed as JSON (cJSON_Delete it), or NULL when it is missing,
 * unreadable, over 16 MiB or not JSON: the model folder's optional files. */
struct cJSON *bert_read_json(const char *dir, const char *name);

/*
 * Last hidden states of n_seqs sequences: sequence s is
 * tokens[start[s] .. start[s + 1]), at most max_positions long.
 * hidden receives [start[n_seqs], hidden] floats.
 */
int bert_forward(struct bert *b, const int32_t *tokens, const int *start, int n_seqs,
		 float *hidden);

#endif
