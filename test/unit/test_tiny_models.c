/*
 * test_tiny_models.c - dyn's logits against Hugging Face transformers for
 * tiny random models of every supported architecture (Llama with GQA and
 * llama3 rope scaling and a tied head, Mistral with an untied head, Qwen2
 * with QKV biases, Qwen3 with q/k norms): test/fixtures/tiny-models/, made
 * by test/gen/make_tiny_models.py.  Every greedy step's logits must match
 * within 1e-4 (max abs difference; the logits are of order 1) and the
 * greedy tokens exactly.  The three prompts run concurrently through a
 * pool too small for all of them (preemption and recompute), with 4-token
 * blocks, 5 tokens per step (chunked prefill) and two prompts sharing a
 * 16-token prefix (prefix-cache hits).
 */
#include "test/unit/check.h"

#include "core/engine/engine.h"
#include "core/err.h"
#include "core/strbuf.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>

#define FIX "test/fixtures/tiny-models/"
#define TOL 1e-4

struct ref_prompt {
	int32_t ids[64];
	int n_ids;
	int steps, tokens[8];
	float *logits[8];
};

struct ctx {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct ref_prompt rp[3];
	uint64_t id[3];
	int n_prompts, done;
	int vocab;
	double max_diff;
	int checked;
	int32_t got[3][8];
	int n_got[3];
};

static void on_logits(void *arg, uint64_t id, int pos, const float *lg, int vocab)
{
	struct ctx *c = arg;
	pthread_mutex_lock(&c->mu);
	for (int p = 0; p < c->n_prompts; p++) {
		if (c->id[p] != id)
			continue;
		int step = pos - (c->rp[p].n_ids - 1);
		if (step < 0 || step >= c->rp[p].steps)
			break;
		for (int i = 0; i < vocab; i++) {
			double d = fabs((double)lg[i] - (double)c->rp[p].logits[step][i]);
			if (d > c->max_diff || isnan(d))
				c->max_diff = isnan(d) ? 1e9 : d;
		}
		c->checked++;
	}
	pthread_mutex_unlock(&c->mu);
}

static void on_output(void *arg, const struct engine_output *o)
{
	struct ctx *c = arg;
	pthread_mutex_lock(&c->mu);
	for (int p = 0; p < c->n_prompts; p++)
		if (c->id[p] == o->id && o->token >= 0 && c->n_got[p] < 8)
			c->got[p][c->n_got[p]++] = o->token;
	if (o->finish)
		c->done++;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

static int load_ref(const char *dir, struct ctx *c)
{
	char path[512];
	struct strbuf sb = STRBUF_INIT;
	snprintf(path, sizeof(path), "%s/reference.json", dir);
	if (sb_read_file(&sb, path, 64 << 20) < 0)
		return -1;
	cJSON *root = cJSON_Parse(sb.buf);
	sb_release(&sb);
	cJSON *prompts = cJSON_GetObjectItem(root, "prompts"), *pr;
	c->n_prompts = 0;
	cJSON_ArrayForEach(pr, prompts) {
		struct ref_prompt *r = &c->rp[c->n_prompts++];
		cJSON *x, *st;
		r->n_ids = 0;
		cJSON_ArrayForEach(x, cJSON_GetObjectItem(pr, "ids")) r->ids[r->n_ids++] = x->valueint;
		r->steps = 0;
		cJSON_ArrayForEach(st, cJSON_GetObjectItem(pr, "steps")) {
			int n = cJSON_GetArraySize(cJSON_GetObjectItem(st, "logits")), i = 0;
			r->tokens[r->steps] = cJSON_GetObjectItem(st, "token")->valueint;
			r->logits[r->steps] = malloc(sizeof(float) * (size_t)n);
			cJSON_ArrayForEach(x, cJSON_GetObjectItem(st, "logits"))
				r->logits[r->steps][i++] = (float)x->valuedouble;
			r->steps++;
		}
	}
	cJSON_Delete(root);
	return 0;
}

static void check_model(const char *name)
{
	char dir[256];
	static struct ctx c;
	struct model *m;
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };

	snprintf(dir, sizeof(dir), FIX "%s", name);
	memset(&c, 0, sizeof(c));
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cv, NULL);
	CHECK_MSG(load_ref(dir, &c) == 0, "cannot read %s/reference.json", dir);
	CHECK_MSG(model_load(dir, &lo, &m) == 0, "%s", err_msg());
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 2;
	o.block_size = 4;
	o.kv_cache_tokens = 40;	/* 10 blocks for ~60 tokens of demand */
	o.max_num_batched_tokens = 5;
	o.on_logits = on_logits;
	o.logits_arg = &c;
	struct engine *e;
	CHECK_MSG(engine_new(m, &o, &e) == 0, "%s", err_msg());
	pthread_mutex_lock(&c.mu);	/* ids are known before outputs are matched */
	for (int p = 0; p < c.n_prompts; p++) {
		struct engine_request r = { .prompt = c.rp[p].ids, .n_prompt = c.rp[p].n_ids,
					    .on_output = on_output, .arg = &c };
		sampling_params_init(&r.params);
		r.params.max_tokens = c.rp[p].steps;
		r.params.ignore_eos = 1;
		CHECK(engine_submit(e, &r, &c.id[p]) == 0);
	}
	while (c.done < c.n_prompts)
		pthread_cond_wait(&c.cv, &c.mu);
	pthread_mutex_unlock(&c.mu);
	struct engine_stats st;
	engine_stats(e, &st);
	engine_free(e);
	model_free(m);
	int want_checked = 0;
	for (int p = 0; p < c.n_prompts; p++) {
		want_checked += c.rp[p].steps;
		CHECK_INT(c.n_got[p], c.rp[p].steps);
		for (int s = 0; s < c.rp[p].steps; s++)
			CHECK_MSG(c.got[p][s] == c.rp[p].tokens[s], "%s prompt %d step %d: token %d, HF %d",
				  name, p, s, c.got[p][s], c.rp[p].tokens[s]);
		for (int s = 0; s < c.rp[p].steps; s++)
			free(c.rp[p].logits[s]);
	}
	CHECK_INT(c.checked, want_checked);
	CHECK_MSG(c.max_diff <= TOL, "%s: max |logit diff| %.3g > %g", name, c.max_diff, TOL);
	CHECK_MSG(st.preemptions > 0, "%s: no preemption", name);
}

TEST(llama_gqa_llama3_rope_tied) { check_model("llama-gqa-llama3rope"); }
TEST(mistral_untied) { check_model("mistral"); }
TEST(qwen2_qkv_bias) { check_model("qwen2-bias"); }
TEST(qwen3_qk_norm) { check_model("qwen3-qknorm"); }

int main(void)
{
	return RUN_TESTS();
}
