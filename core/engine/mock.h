/*
 * mock.h - the mock engine's timing model and token source: what stands in
 * for the forward pass and the sampler when an engine runs in mock mode
 * (engine_opts.mock; `dyn serve --engine mock`).
 *
 * Timing (Dynamo's mocker polynomials, so simulated latencies compare
 * with Dynamo's; all times in milliseconds):
 *   prefill(t) = 4.209989e-7 t^2 + 1.518344e-2 t + 16.50142
 *                t = prompt tokens computed in the step (not served from
 *                the prefix cache; a preempted sequence's recompute counts)
 *   decode(u)  = max(1, -25.74 u^2 + 54.01 u + 5.74)
 *                u = fraction of the KV pool's blocks in use
 * A step that holds prefill tokens and decoding sequences (a mixed batch)
 * lasts prefill(t) + decode(u); a step without prefill tokens lasts
 * decode(u); one without decoding sequences lasts prefill(t).  The first
 * token of a prompt comes out of its last prefill step at no decode cost.
 * Every time is divided by the speed-up ratio.
 *
 * Tokens: drawn uniformly from ordinary ids (see mock_token), never an EOS
 * or stop id, so a request runs to max_tokens or the context limit.
 *
 * Pure functions; thread-safe.
 */
#ifndef DYN_ENGINE_MOCK_H
#define DYN_ENGINE_MOCK_H

#include "core/engine/sampler.h"

#include <stdint.h>

struct mock_timing {
	double prefill[3];	/* c0 + c1 t + c2 t^2 */
	double decode[3];	/* c0 + c1 u + c2 u^2 */
	double min_decode_ms;	/* floor of a decode step */
	double speedup;		/* every time is divided by it (> 0) */
};

/* Defaults of the mock engine (Dynamo's mocker). */
#define MOCK_BLOCK_SIZE 64
#define MOCK_KV_BLOCKS 16384
#define MOCK_MAX_NUM_SEQS 256
#define MOCK_MAX_NUM_BATCHED_TOKENS 8192
#define MOCK_WATERMARK 0.01

/* The polynomials above, speed-up 1. */
void mock_timing_init(struct mock_timing *m);

/* Prefill time of t uncached tokens, decode time at KV fraction u (both
 * before the speed-up). */
double mock_prefill_ms(const struct mock_timing *m, double t);
double mock_decode_ms(const struct mock_timing *m, double u);

/* One step's duration after the speed-up: prefill_tokens computed for
 * prompts, n_decoding sequences generating a further token, kv_fraction
 * of the pool in use.  0 when the step does nothing. */
double mock_step_ms(const struct mock_timing *m, int prefill_tokens, double kv_fraction,
		    int n_decoding);

/*
 * A pseudo-random token id from the sequence's stream at position (the
 * token's index in the sequence: pure in (seed, position)).  Ids are drawn
 * from [lo, hi) with lo = 1000 and hi = min(vocab, 30000) (vocab < 2000:
 * [0, vocab)): in byte-level BPE and sentencepiece vocabularies alike
 * these are ordinary text pieces, clear of byte-fallback, control and
 * added special tokens.  An id in banned[n_banned] is redrawn.
 */
int32_t mock_token(const struct sample_state *st, uint64_t position, int vocab,
		   const int32_t *banned, int n_banned);
/* The log-probability of any one id drawn by mock_token (uniform). */
double mock_token_logprob(int vocab);

#endif
