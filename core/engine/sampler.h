/*
 * sampler.h - turning a sequence's logits into its next token.
 *
 * Order of operations (as vLLM / transformers):
 *   1. logprobs, when asked, from the raw logits (log_softmax, before any
 *      penalty or temperature: vLLM's default "raw" logprobs);
 *   2. penalties: repetition (HF: a seen logit > 0 is divided by it, < 0
 *      multiplied; tokens of prompt and output), presence (minus p once
 *      per token present in the output) and frequency (minus f per
 *      occurrence in the output);
 *   3. logit_bias: its bias added to each listed id's logit (OpenAI's;
 *      -100 in effect bans the token), then min_tokens: the stop ids
 *      passed in are masked out;
 *   4. temperature 0 (or below 1e-5): greedy argmax (lowest id on ties);
 *      otherwise logits / temperature, softmax, then the support is cut by
 *      top_k (the k most likely; ties by lower id), then top_p (the
 *      smallest most-likely-first prefix whose mass reaches top_p: a token
 *      is kept when the mass strictly before it is < top_p), then min_p
 *      (keep p >= min_p * p_max), and a token is drawn from what is left,
 *      renormalised, with the sequence's own random stream.
 * Same seed, same logits, same position -> same token.  The stream is
 * counter-based: the number drawn for the token at position p (its index
 * in prompt + output) is a pure function of (seed, p), never of what was
 * drawn before, so a seeded request resumed elsewhere at position p (its
 * earlier tokens as the prompt) samples exactly as it would have.
 *
 * Thread-safety: a struct sampler (scratch buffers) belongs to one thread;
 * the functions are otherwise pure.
 */
#ifndef DYN_ENGINE_SAMPLER_H
#define DYN_ENGINE_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#define SAMPLING_MAX_STOP 32
#define SAMPLING_MAX_LOGPROBS 20
#define SAMPLING_MAX_BIAS 300		/* logit_bias entries (as OpenAI's limit) */

struct sampling_params {
	double temperature;		/* 0: greedy */
	int top_k;			/* <= 0: off */
	double top_p;			/* 1: off */
	double min_p;			/* 0: off */
	int has_seed;
	uint64_t seed;
	double repetition_penalty;	/* 1: off */
	double presence_penalty;	/* 0: off */
	double frequency_penalty;	/* 0: off */
	int max_tokens;			/* <= 0: until the context is full */
	int min_tokens;			/* stop ids cannot end the output before */
	int ignore_eos;			/* do not stop at the model's EOS ids */
	int32_t stop_token_ids[SAMPLING_MAX_STOP];
	int n_stop_token_ids;
	int logprobs;			/* -1: none; N >= 0: the chosen token's
					   logprob and the N most likely */
	int prompt_logprobs;		/* 0: off; 1: every prompt token's logprob
					   (but the first's) and prompt_top most likely */
	int prompt_top;
	int n_bias;			/* logit_bias: bias[i] added to bias_ids[i] */
	int32_t bias_ids[SAMPLING_MAX_BIAS];
	float bias[SAMPLING_MAX_BIAS];
};

/* Greedy, no penalties, no limits, no logprobs. */
void sampling_params_init(struct sampling_params *p);
/* Check ranges; 0 or -EINVAL with a message naming the field. */
int sampling_params_check(const struct sampling_params *p, int vocab_size);

struct sample_result {
	int32_t token;
	float logprob;			/* of token, when logprobs >= 0 */
	int n_top;
	int32_t top_ids[SAMPLING_MAX_LOGPROBS];
	float top_logprobs[SAMPLING_MAX_LOGPROBS];
};

/* Per-sequence state: the seed of its random stream. */
struct sample_state {
	uint64_t seed;
};
/* Seed a sequence's stream (seed, or a fresh one from the clock and a
 * counter when the params carry none). */
void sample_state_init(struct sample_state *s, const struct sampling_params *p);
/* Uniform double in [0, 1): the draw-th number for position p of the
 * stream (draw > 0 for redraws at one position); pure. */
double sample_uniform(const struct sample_state *s, uint64_t position, uint32_t draw);

struct sampler;
struct sampler *sampler_new(int vocab_size);
void sampler_free(struct sampler *s);

/*
 * Pick the next token, the one at position n_history (which keys the
 * random draw).  logits[vocab] are modified in place.  history is the
 * sequence's tokens (prompt then output); n_output of them (the tail) are
 * output.  masked[n_masked] are ids that may not be drawn (stop ids
 * while below min_tokens).
 */
int sampler_sample(struct sampler *s, const struct sampling_params *p,
		   const struct sample_state *st,
		   float *logits, const int32_t *history, int n_history, int n_output,
		   const int32_t *masked, int n_masked, struct sample_result *out);

/* The logprob of token under logits (log_softmax of the raw logits), its
 * rank (how many ids are at least as likely: 1 = the most likely, as
 * vLLM's) and the n_top most likely: a prompt token's logprobs. */
void sampler_logprob_of(struct sampler *s, const float *logits, int32_t token, int n_top,
			struct sample_result *out, int *rank);

#endif
