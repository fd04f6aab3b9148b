/*
 * mock.c - the mock engine's timing model and token source (see mock.h).
 */
#include "core/engine/mock.h"

#include <math.h>

void mock_timing_init(struct mock_timing *m)
{
	*m = (struct mock_timing){
		.prefill = { 16.50142, 1.518344e-2, 4.209989e-7 },
		.decode = { 5.74, 54.01, -25.74 },
		.min_decode_ms = 1.0,
		.speedup = 1.0,
	};
}

double mock_prefill_ms(const struct mock_timing *m, double t)
{
	return m->prefill[0] + m->prefill[1] * t + m->prefill[2] * t * t;
}

double mock_decode_ms(const struct mock_timing *m, double u)
{
	double ms = m->decode[0] + m->decode[1] * u + m->decode[2] * u * u;
	return ms < m->min_decode_ms ? m->min_decode_ms : ms;
}

double mock_step_ms(const struct mock_timing *m, int prefill_tokens, double kv_fraction,
		    int n_decoding)
{
	double ms = 0;
	if (prefill_tokens > 0)
		ms += mock_prefill_ms(m, prefill_tokens);
	if (n_decoding > 0)
		ms += mock_decode_ms(m, kv_fraction);
	return m->speedup > 0 ? ms / m->speedup : ms;
}

static void token_range(int vocab, int *lo, int *hi)
{
	if (vocab < 2000) {
		*lo = 0;
		*hi = vocab;
	} else {
		*lo = 1000;
		*hi = vocab < 30000 ? vocab : 30000;
	}
}

int32_t mock_token(const struct sample_state *st, uint64_t position, int vocab,
		   const int32_t *banned, int n_banned)
{
	int lo, hi;
	int32_t t = 0;

	token_range(vocab, &lo, &hi);
	/* A few redraws at most: the banned ids are a handful out of many. */
	for (int tries = 0; tries < 64; tries++) {
		t = lo + (int32_t)(sample_uniform(st, position, (uint32_t)tries) * (hi - lo));
		if (t >= hi)
			t = hi - 1;
		int bad = 0;
		for (int i = 0; i < n_banned && !bad; i++)
			bad = banned[i] == t;
		if (!bad)
			break;
	}
	return t;
}

double mock_token_logprob(int vocab)
{
	int lo, hi;
	token_range(vocab, &lo, &hi);
	return -log((double)(hi - lo));
}
