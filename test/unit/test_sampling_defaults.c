/*
 * test_sampling_defaults.c - generation_config.json's defaults over the
 * fallback (core/engine/sampling_defaults.h), read through the model
 * config parser as the worker and dyn run read them.  The expected values
 * are the ones the generation_config.json files publish (the shared
 * stories260K fixture; the published files of Qwen3-0.6B,
 * Qwen2.5-0.5B-Instruct and Llama-3.2-1B-Instruct, paired with the shape
 * fixtures' config.json) and the fallbacks vLLM uses for the OpenAI API
 * (temperature 1, top_p 1, top_k off, min_p 0, repetition_penalty 1).
 */
#include "core/engine/sampling_defaults.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/strbuf.h"
#include "check.h"

#include <math.h>

#define MODELS "../shared/models"

/* The desc of the shape fixture's config.json with gen as its
 * generation_config.json (NULL: none). */
static void desc_with(const char *model, const char *gen, struct model_desc *d)
{
	struct strbuf cfg = STRBUF_INIT, path = STRBUF_INIT;
	sb_addf(&path, MODELS "/%s/config.json", model);
	CHECK_MSG(sb_read_file(&cfg, path.buf, 1 << 20) == 0, "%s: %s", path.buf, err_msg());
	int rc = model_desc_parse(cfg.buf, cfg.len, gen, gen ? strlen(gen) : 0, d);
	sb_release(&cfg);
	sb_release(&path);
	CHECK_MSG(rc == 0, "%s", err_msg());
}

#define CHECK_NEAR(a, b) CHECK_MSG(fabs((double)(a) - (double)(b)) < 1e-12, \
				   "%s == %g, expected %g", #a, (double)(a), (double)(b))

/* Every field but the five merged ones is sampling_params_init()'s. */
static void check_rest_untouched(const struct sampling_params *p)
{
	struct sampling_params init;
	sampling_params_init(&init);
	CHECK_INT(p->has_seed, init.has_seed);
	CHECK_NEAR(p->presence_penalty, init.presence_penalty);
	CHECK_NEAR(p->frequency_penalty, init.frequency_penalty);
	CHECK_INT(p->max_tokens, init.max_tokens);
	CHECK_INT(p->min_tokens, init.min_tokens);
	CHECK_INT(p->ignore_eos, init.ignore_eos);
	CHECK_INT(p->n_stop_token_ids, init.n_stop_token_ids);
	CHECK_INT(p->logprobs, -1);
}

TEST(stories260k_gives_none_fallbacks_apply)
{
	struct model_desc d;
	struct sampling_params p;
	CHECK_MSG(model_desc_load(MODELS "/stories260K", &d) == 0, "%s", err_msg());
	CHECK_INT(d.max_position_embeddings, 512);	/* the file was read */
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.temperature, 1.0);
	CHECK_NEAR(p.top_p, 1.0);
	CHECK_INT(p.top_k, 0);
	CHECK_NEAR(p.min_p, 0.0);
	CHECK_NEAR(p.repetition_penalty, 1.0);
	check_rest_untouched(&p);
	/* dyn run's fallback: greedy */
	sampling_defaults(&d.gen, 0, &p);
	CHECK_NEAR(p.temperature, 0.0);
	CHECK_NEAR(p.top_p, 1.0);
	check_rest_untouched(&p);
}

TEST(qwen3_published_defaults)
{
	static const char gen[] = "{\"bos_token_id\":151643,\"do_sample\":true,"
				  "\"eos_token_id\":[151645,151643],\"pad_token_id\":151643,"
				  "\"temperature\":0.6,\"top_k\":20,\"top_p\":0.95,"
				  "\"transformers_version\":\"4.51.0\"}";
	struct model_desc d;
	struct sampling_params p;
	desc_with("qwen3-0.6b-shape", gen, &d);
	/* the model's values win over either fallback */
	for (int run = 0; run < 2; run++) {
		sampling_defaults(&d.gen, run ? 0 : SAMPLING_FALLBACK_TEMPERATURE, &p);
		CHECK_NEAR(p.temperature, 0.6);
		CHECK_INT(p.top_k, 20);
		CHECK_NEAR(p.top_p, 0.95);
		CHECK_NEAR(p.min_p, 0.0);
		CHECK_NEAR(p.repetition_penalty, 1.0);
		check_rest_untouched(&p);
	}
}

TEST(qwen25_instruct_published_defaults)
{
	static const char gen[] = "{\"bos_token_id\":151643,\"pad_token_id\":151643,"
				  "\"do_sample\":true,\"eos_token_id\":[151645,151643],"
				  "\"repetition_penalty\":1.1,\"temperature\":0.7,\"top_p\":0.8,"
				  "\"top_k\":20,\"transformers_version\":\"4.37.0\"}";
	struct model_desc d;
	struct sampling_params p;
	desc_with("qwen2.5-0.5b-shape", gen, &d);
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.temperature, 0.7);
	CHECK_NEAR(p.top_p, 0.8);
	CHECK_INT(p.top_k, 20);
	CHECK_NEAR(p.repetition_penalty, 1.1);
	CHECK_NEAR(p.min_p, 0.0);
}

TEST(llama32_instruct_published_defaults)
{
	static const char gen[] = "{\"bos_token_id\":128000,\"do_sample\":true,"
				  "\"eos_token_id\":[128001,128008,128009],\"temperature\":0.6,"
				  "\"top_p\":0.9,\"transformers_version\":\"4.45.0.dev0\"}";
	struct model_desc d;
	struct sampling_params p;
	desc_with("llama-3.2-1b-shape", gen, &d);
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.temperature, 0.6);
	CHECK_NEAR(p.top_p, 0.9);
	CHECK_INT(p.top_k, 0);
	CHECK_NEAR(p.repetition_penalty, 1.0);
}

TEST(min_p_is_read)
{
	struct model_desc d;
	struct sampling_params p;
	desc_with("qwen3-0.6b-shape", "{\"min_p\":0.05,\"temperature\":0.8}", &d);
	sampling_defaults(&d.gen, 0, &p);
	CHECK_NEAR(p.min_p, 0.05);
	CHECK_NEAR(p.temperature, 0.8);
}

/* vLLM ignores do_sample: a temperature stays the default. */
TEST(do_sample_false_is_ignored)
{
	struct model_desc d;
	struct sampling_params p;
	desc_with("qwen3-0.6b-shape", "{\"do_sample\":false,\"temperature\":0.7}", &d);
	CHECK_INT(d.gen.do_sample, 0);
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.temperature, 0.7);
}

/* Values the parser accepts but the sampler would refuse count as absent,
 * so a request that names no sampling field never fails on them. */
TEST(out_of_sampler_range_counts_as_absent)
{
	struct model_desc d;
	struct sampling_params p;
	desc_with("qwen3-0.6b-shape",
		  "{\"top_p\":0,\"repetition_penalty\":0,\"top_k\":0,\"temperature\":0}", &d);
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.top_p, 1.0);
	CHECK_NEAR(p.repetition_penalty, 1.0);
	CHECK_INT(p.top_k, 0);
	CHECK_NEAR(p.temperature, 0.0);	/* 0 is a valid temperature: greedy */
	CHECK(sampling_params_check(&p, d.vocab_size) == 0);
}

TEST(no_generation_config)
{
	struct model_desc d;
	struct sampling_params p;
	desc_with("smollm2-135m-shape", NULL, &d);
	sampling_defaults(&d.gen, SAMPLING_FALLBACK_TEMPERATURE, &p);
	CHECK_NEAR(p.temperature, 1.0);
	CHECK_NEAR(p.top_p, 1.0);
	CHECK_INT(p.top_k, 0);
	CHECK_NEAR(p.min_p, 0.0);
	CHECK_NEAR(p.repetition_penalty, 1.0);
	check_rest_untouched(&p);
}

int main(void)
{
	return RUN_TESTS();
}
