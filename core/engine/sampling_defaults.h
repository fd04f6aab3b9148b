/*
 * sampling_defaults.h - a model's sampling defaults: the one place where
 * generation_config.json's temperature, top_p, top_k, min_p and
 * repetition_penalty are merged over a fallback.  Used by the worker
 * (fields absent from a request) and by `dyn run` (options not given).
 *
 * Semantics, those of vLLM's OpenAI server: a field the model's
 * generation_config.json gives is the default; a field it does not give,
 * or gives outside the sampler's range (top_p 0, repetition_penalty 0...),
 * takes the fallback: top_p 1, top_k 0 (all tokens), min_p 0,
 * repetition_penalty 1, and the temperature the caller passes:
 * SAMPLING_FALLBACK_TEMPERATURE (1, as vLLM and the OpenAI API) for the
 * worker, 0 (greedy) for `dyn run`, as dyn-run(1) documents.  do_sample
 * is ignored, as vLLM does (transformers would make do_sample:false
 * greedy whatever the temperature).  Every other field of the result is
 * sampling_params_init()'s.
 *
 * Pure function, thread-safe.
 */
#ifndef DYN_ENGINE_SAMPLING_DEFAULTS_H
#define DYN_ENGINE_SAMPLING_DEFAULTS_H

#include "core/engine/sampler.h"

struct model_gen_defaults;

#define SAMPLING_FALLBACK_TEMPERATURE 1.0

/* Fill p with g's defaults over the fallback (temperature: fallback_temp). */
void sampling_defaults(const struct model_gen_defaults *g, double fallback_temp,
		       struct sampling_params *p);

#endif
