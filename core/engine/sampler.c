/*
 * sampler.c - penalties, greedy and stochastic sampling with top_k, top_p
 * and min_p, logprobs (see sampler.h).
 *
 * Cutting the support needs the most likely tokens in order, but not the
 * whole vocabulary sorted: candidates are the tokens with probability at
 * least tau, tau halved until their mass covers top_p (every token below
 * tau then has all of them before it, so it is outside the nucleus) and
 * they number at least top_k.  Only those are sorted.
 */
#include "core/engine/sampler.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct sampler {
	int vocab;
	float *prob;		/* [vocab] */
	int32_t *cand;		/* [vocab] candidate ids */
	int32_t *count;		/* [vocab] occurrences in the output, kept zeroed */
	uint8_t *seen;		/* [vocab] in prompt or output, kept zeroed */
};

void sampling_params_init(struct sampling_params *p)
{
	memset(p, 0, sizeof(*p));
	p->top_p = 1.0;
	p->repetition_penalty = 1.0;
	p->logprobs = -1;
}

int sampling_params_check(const struct sampling_params *p, int vocab)
{
	if (!(p->temperature >= 0) || p->temperature > 1e6)
		return err_set(-EINVAL, "temperature must be >= 0 (got %g)", p->temperature);
	if (!(p->top_p > 0 && p->top_p <= 1))
		return err_set(-EINVAL, "top_p must be in (0, 1] (got %g)", p->top_p);
	if (!(p->min_p >= 0 && p->min_p <= 1))
		return err_set(-EINVAL, "min_p must be in [0, 1] (got %g)", p->min_p);
	if (!(p->repetition_penalty > 0) || p->repetition_penalty > 1e6)
		return err_set(-EINVAL, "repetition_penalty must be > 0 (got %g)",
			       p->repetition_penalty);
	if (!(fabs(p->presence_penalty) <= 2) || !(fabs(p->frequency_penalty) <= 2))
		return err_set(-EINVAL, "presence_penalty and frequency_penalty must be in [-2, 2]");
	if (p->logprobs > SAMPLING_MAX_LOGPROBS)
		return err_set(-EINVAL, "logprobs must be at most %d (got %d)",
			       SAMPLING_MAX_LOGPROBS, p->logprobs);
	if (p->min_tokens < 0 || (p->max_tokens > 0 && p->min_tokens > p->max_tokens))
		return err_set(-EINVAL, "min_tokens must be in [0, max_tokens] (got %d)",
			       p->min_tokens);
	if (p->n_stop_token_ids < 0 || p->n_stop_token_ids > SAMPLING_MAX_STOP)
		return err_set(-EINVAL, "at most %d stop token ids", SAMPLING_MAX_STOP);
	for (int i = 0; i < p->n_stop_token_ids; i++)
		if (p->stop_token_ids[i] < 0 || p->stop_token_ids[i] >= vocab)
			return err_set(-EINVAL, "stop token id %d outside the vocabulary",
				       p->stop_token_ids[i]);
	if (p->prompt_logprobs && (p->prompt_top < 0 || p->prompt_top > SAMPLING_MAX_LOGPROBS))
		return err_set(-EINVAL, "prompt_logprobs must be in [0, %d] (got %d)",
			       SAMPLING_MAX_LOGPROBS, p->prompt_top);
	if (p->n_bias < 0 || p->n_bias > SAMPLING_MAX_BIAS)
		return err_set(-EINVAL, "logit_bias: at most %d entries", SAMPLING_MAX_BIAS);
	for (int i = 0; i < p->n_bias; i++) {
		if (p->bias_ids[i] < 0 || p->bias_ids[i] >= vocab)
			return err_set(-EINVAL, "logit_bias: token id %d is outside the vocabulary "
				       "(%d)", p->bias_ids[i], vocab);
		if (!(fabsf(p->bias[i]) <= 100))
			return err_set(-EINVAL, "logit_bias: bias %g of token %d is not in "
				       "[-100, 100]", p->bias[i], p->bias_ids[i]);
	}
	return 0;
}

/* A 64-bit finaliser (bijective, every input bit avalanches), the mixing
 * step of splitmix64. */
static uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void sample_state_init(struct sample_state *s, const struct sampling_params *p)
{
	static atomic_uint_fast64_t counter;

	if (p->has_seed) {
		s->seed = p->seed;
	} else {
		uint64_t c = atomic_fetch_add(&counter, 1) + 1;
		s->seed = mix64(mono_ns() + c * 0x9e3779b97f4a7c15ull);
	}
}

/* Counter-based: mix the seed with the position, then with the redraw
 * index, each through the finaliser (two rounds keep nearby (p, draw)
 * pairs of one seed, and nearby seeds, uncorrelated). */
double sample_uniform(const struct sample_state *s, uint64_t position, uint32_t draw)
{
	uint64_t z = mix64(s->seed + (position + 1) * 0x9e3779b97f4a7c15ull);
	z = mix64(z ^ ((uint64_t)draw * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull));
	return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

struct sampler *sampler_new(int vocab)
{
	struct sampler *s = xcalloc(1, sizeof(*s));
	s->vocab = vocab;
	s->prob = xcalloc((size_t)vocab, sizeof(float));
	s->cand = xcalloc((size_t)vocab, sizeof(int32_t));
	s->count = xcalloc((size_t)vocab, sizeof(int32_t));
	s->seen = xcalloc((size_t)vocab, 1);
	return s;
}

void sampler_free(struct sampler *s)
{
	if (!s)
		return;
	free(s->prob);
	free(s->cand);
	free(s->count);
	free(s->seen);
	free(s);
}

static void penalties(struct sampler *s, const struct sampling_params *p, float *logits,
		      const int32_t *hist, int n_hist, int n_out)
{
	int v = s->vocab;

	if (p->repetition_penalty != 1.0) {
		float rp = (float)p->repetition_penalty;
		for (int i = 0; i < n_hist; i++) {
			int32_t t = hist[i];
			if (t < 0 || t >= v || s->seen[t])
				continue;
			s->seen[t] = 1;
			logits[t] = logits[t] > 0 ? logits[t] / rp : logits[t] * rp;
		}
		for (int i = 0; i < n_hist; i++)
			if (hist[i] >= 0 && hist[i] < v)
				s->seen[hist[i]] = 0;
	}
	if (p->presence_penalty != 0 || p->frequency_penalty != 0) {
		const int32_t *out = hist + n_hist - n_out;
		for (int i = 0; i < n_out; i++)
			if (out[i] >= 0 && out[i] < v)
				s->count[out[i]]++;
		for (int i = 0; i < n_out; i++) {
			int32_t t = out[i];
			if (t < 0 || t >= v || !s->count[t])
				continue;
			logits[t] -= (float)p->frequency_penalty * (float)s->count[t] +
				     (float)p->presence_penalty;
			s->count[t] = 0;
		}
	}
}

/* log_softmax of the raw logits for the chosen token and the top n. */
static void logprobs(struct sampler *s, const float *logits, int n_top,
		     struct sample_result *out, float *lse_out)
{
	int v = s->vocab;
	float mx = -INFINITY;
	double sum = 0;

	for (int i = 0; i < v; i++)
		if (logits[i] > mx)
			mx = logits[i];
	for (int i = 0; i < v; i++)
		sum += exp((double)(logits[i] - mx));
	float lse = mx + (float)log(sum);
	*lse_out = lse;
	out->n_top = 0;
	for (int k = 0; k < n_top && k < v; k++) {
		/* selection of the k-th best: n_top is small */
		int32_t best = -1;
		for (int i = 0; i < v; i++) {
			int taken = 0;
			for (int j = 0; j < out->n_top; j++)
				if (out->top_ids[j] == i)
					taken = 1;
			if (!taken && (best < 0 || logits[i] > logits[best]))
				best = i;
		}
		out->top_ids[out->n_top] = best;
		out->top_logprobs[out->n_top++] = logits[best] - lse;
	}
}

void sampler_logprob_of(struct sampler *s, const float *logits, int32_t token, int n_top,
			struct sample_result *out, int *rank)
{
	float lse;

	memset(out, 0, sizeof(*out));
	logprobs(s, logits, n_top, out, &lse);
	out->token = token;
	out->logprob = logits[token] - lse;
	*rank = 0;
	for (int i = 0; i < s->vocab; i++)
		*rank += logits[i] >= logits[token];
}

static int32_t argmax(const float *x, int n)
{
	int32_t best = 0;
	for (int i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return best;
}

static int by_prob_desc(const void *a, const void *b, void *arg)
{
	const float *sort_prob = arg;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	if (sort_prob[x] != sort_prob[y])
		return sort_prob[x] > sort_prob[y] ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int32_t draw(struct sampler *s, const struct sampling_params *p,
		    const struct sample_state *st, uint64_t position, const float *logits)
{
	int v = s->vocab;
	float *prob = s->prob, inv_t = (float)(1.0 / p->temperature), mx = -INFINITY;
	double sum = 0;

	for (int i = 0; i < v; i++)
		if (logits[i] > mx)
			mx = logits[i];
	for (int i = 0; i < v; i++) {
		prob[i] = expf((logits[i] - mx) * inv_t);
		sum += prob[i];
	}
	for (int i = 0; i < v; i++)
		prob[i] = (float)(prob[i] / sum);

	/* candidates: every token, or those above tau when a cut applies */
	int n = 0, k = p->top_k > 0 && p->top_k < v ? p->top_k : v;
	if (k == v && p->top_p >= 1.0) {
		for (int i = 0; i < v; i++)
			s->cand[n++] = i;
	} else {
		float pmax = 1.0f / (float)v;
		for (int i = 0; i < v; i++)
			if (prob[i] > pmax)
				pmax = prob[i];
		for (float tau = pmax;; tau *= 0.5f) {
			double mass = 0;
			n = 0;
			for (int i = 0; i < v; i++)
				if (prob[i] >= tau) {
					s->cand[n++] = i;
					mass += prob[i];
				}
			if ((n >= k && mass >= p->top_p) || tau == 0 || n == v)
				break;
			if (tau < 1e-30f)
				tau = 0;
		}
		qsort_r(s->cand, (size_t)n, sizeof(int32_t), by_prob_desc, prob);
	}
	if (n > k)
		n = k;
	if (p->top_p < 1.0) {
		double mass = 0, before = 0;
		for (int i = 0; i < n; i++)
			mass += prob[s->cand[i]];
		int keep = 0;
		for (; keep < n; keep++) {
			if (before / mass >= p->top_p)
				break;
			before += prob[s->cand[keep]];
		}
		n = keep > 0 ? keep : 1;
	}
	if (p->min_p > 0) {
		float pm = 0;
		for (int i = 0; i < n; i++)
			if (prob[s->cand[i]] > pm)
				pm = prob[s->cand[i]];
		int m = 0;
		for (int i = 0; i < n; i++)
			if (prob[s->cand[i]] >= (float)p->min_p * pm)
				s->cand[m++] = s->cand[i];
		n = m;
	}
	double mass = 0;
	for (int i = 0; i < n; i++)
		mass += prob[s->cand[i]];
	double u = sample_uniform(st, position, 0) * mass, acc = 0;
	for (int i = 0; i < n; i++) {
		acc += prob[s->cand[i]];
		if (u < acc)
			return s->cand[i];
	}
	return s->cand[n - 1];
}

int sampler_sample(struct sampler *s, const struct sampling_params *p,
		   const struct sample_state *st,
		   float *logits, const int32_t *hist, int n_hist, int n_out,
		   const int32_t *masked, int n_masked, struct sample_result *out)
{
	float lse = 0;

	memset(out, 0, sizeof(*out));
	if (p->logprobs >= 0)
		logprobs(s, logits, p->logprobs, out, &lse);
	/* the chosen token's logprob comes from the raw logits too */
	float *raw = NULL;
	if (p->logprobs >= 0 &&
	    (p->repetition_penalty != 1.0 || p->presence_penalty != 0 ||
	     p->frequency_penalty != 0 || p->n_bias > 0 || n_masked > 0)) {
		raw = xmalloc((size_t)s->vocab * sizeof(float));
		memcpy(raw, logits, (size_t)s->vocab * sizeof(float));
	}
	penalties(s, p, logits, hist, n_hist, n_out);
	for (int i = 0; i < p->n_bias; i++)
		logits[p->bias_ids[i]] += p->bias[i];
	for (int i = 0; i < n_masked; i++)
		if (masked[i] >= 0 && masked[i] < s->vocab)
			logits[masked[i]] = -INFINITY;
	if (p->temperature < 1e-5)
		out->token = argmax(logits, s->vocab);
	else
		out->token = draw(s, p, st, (uint64_t)n_hist, logits);
	if (p->logprobs >= 0)
		out->logprob = (raw ? raw : logits)[out->token] - lse;
	free(raw);
	return 0;
}
