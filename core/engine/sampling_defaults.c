/*
 * sampling_defaults.c - generation_config.json's defaults over a fallback
 * (sampling_defaults.h).
 */
#include "core/engine/sampling_defaults.h"

#include "core/model/model.h"

/* The model's value when the sampler accepts it (NAN, the "absent" mark,
 * fails every comparison), else the fallback. */
static double in_range(double v, double lo, int lo_open, double hi, double fallback)
{
	int above = lo_open ? v > lo : v >= lo;
	return above && v <= hi ? v : fallback;
}

void sampling_defaults(const struct model_gen_defaults *g, double fallback_temp,
		       struct sampling_params *p)
{
	sampling_params_init(p);
	p->temperature = in_range(g->temperature, 0, 0, 1e6, fallback_temp);
	p->top_p = in_range(g->top_p, 0, 1, 1, 1.0);
	p->top_k = g->top_k > 0 ? g->top_k : 0;
	p->min_p = in_range(g->min_p, 0, 0, 1, 0.0);
	p->repetition_penalty = in_range(g->repetition_penalty, 0, 1, 1e6, 1.0);
}
