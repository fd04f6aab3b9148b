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
 *
 * BF16 and F16: each fixture (and stories260K) rounded to BF16 and to F16
 * (st_convert.h) runs with its weights as they are mapped (the backend's
 * 16-bit kernels, no widened copy) and, as the control, widened to F32 at
 * load (the F32 kernels checked above against transformers): the logits
 * must agree within 1e-5, since the products are exact in F32 and only
 * the summation order may differ (measured: identical); and against
 * transformers' F32 logits on the unrounded weights within what rounding
 * the weights costs: at most 0.02 (BF16, 8 significant bits; measured up
 * to 0.0031) and 0.003 (F16, 11 bits; measured up to 0.00032) on logits of
 * order 1, with the same greedy tokens but for near ties (see
 * check_vs_reference).
 */
#include "test/unit/check.h"
#include "test/unit/st_convert.h"

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
	int checked;
	int32_t got[3][8];
	int n_got[3];
	float *got_logits[3][8];	/* each step's logits, as computed */
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
		if (!c->got_logits[p][step])
			c->got_logits[p][step] = malloc(sizeof(float) * (size_t)vocab);
		memcpy(c->got_logits[p][step], lg, sizeof(float) * (size_t)vocab);
		c->vocab = vocab;
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

/* Run the reference's prompts through dir's model loaded with flags;
 * c gets the outputs and each step's logits.  want: the dtype the weights
 * must be computed in. */
static void run_model(const char *dir, unsigned flags, enum dtype want, struct ctx *c)
{
	struct model *m;
	struct model_load_opts lo = { .flags = flags };

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	CHECK_MSG(load_ref(dir, c) == 0, "cannot read %s/reference.json", dir);
	CHECK_MSG(model_load(dir, &lo, &m) == 0, "%s", err_msg());
	CHECK_MSG(m->weights_dtype == want, "%s: weights %s",
		  dir, dtype_name(m->weights_dtype));
	struct engine_opts o;
	engine_opts_init(&o);
	o.threads = 2;
	o.block_size = 4;
	o.kv_cache_tokens = 40;	/* 10 blocks for ~60 tokens of demand */
	o.kv_dtype = DTYPE_F32;	/* the 1e-4 bound is of F32 K/V (kv_dtype.py
				   checks the 16-bit ones against it) */
	o.max_num_batched_tokens = 5;
	o.on_logits = on_logits;
	o.logits_arg = c;
	struct engine *e;
	CHECK_MSG(engine_new(m, &o, &e) == 0, "%s", err_msg());
	pthread_mutex_lock(&c->mu);	/* ids are known before outputs are matched */
	for (int p = 0; p < c->n_prompts; p++) {
		struct engine_request r = { .prompt = c->rp[p].ids, .n_prompt = c->rp[p].n_ids,
					    .on_output = on_output, .arg = c };
		sampling_params_init(&r.params);
		r.params.max_tokens = c->rp[p].steps;
		r.params.ignore_eos = 1;
		CHECK(engine_submit(e, &r, &c->id[p]) == 0);
	}
	while (c->done < c->n_prompts)
		pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	struct engine_stats st;
	engine_stats(e, &st);
	engine_free(e);
	model_free(m);
	int want_checked = 0;
	for (int p = 0; p < c->n_prompts; p++) {
		want_checked += c->rp[p].steps;
		CHECK_INT(c->n_got[p], c->rp[p].steps);
	}
	CHECK_INT(c->checked, want_checked);
	CHECK_MSG(st.preemptions > 0, "%s: no preemption", dir);
}

static void free_ctx(struct ctx *c)
{
	for (int p = 0; p < c->n_prompts; p++)
		for (int s = 0; s < c->rp[p].steps; s++) {
			free(c->rp[p].logits[s]);
			free(c->got_logits[p][s]);
		}
}

/*
 * Each step's logits within tol of the reference's, and the same greedy
 * tokens; with ties_ok, a different token where the reference's top two
 * are within 2 * tol (rounded weights may break a near tie the other way),
 * after which the prompt's contexts differ and its later steps are not
 * compared.
 */
static void check_vs_reference(const char *what, const struct ctx *c, double tol, int ties_ok)
{
	double worst = 0;

	for (int p = 0; p < c->n_prompts; p++)
		for (int s = 0; s < c->rp[p].steps; s++) {
			const float *ref = c->rp[p].logits[s], *got = c->got_logits[p][s];
			for (int i = 0; i < c->vocab; i++)
				worst = isnan(got[i]) ? INFINITY : fmax(worst, fabs((double)got[i] - ref[i]));
			int tok = c->got[p][s], want = c->rp[p].tokens[s];
			if (tok == want)
				continue;
			double margin = (double)ref[want] - ref[tok];
			CHECK_MSG(ties_ok && margin <= 2 * tol,
				  "%s prompt %d step %d: token %d, HF %d (HF margin %.3g)", what, p, s,
				  tok, want, margin);
			break;
		}
	if (ties_ok)
		fprintf(stderr, "  %s: logits %.2g from HF's on the F32 weights\n", what, worst);
	CHECK_MSG(worst <= tol, "%s: max |logit diff| from HF %.3g > %g", what, worst, tol);
}

static void check_model(const char *name)
{
	char dir[256];
	static struct ctx c;

	snprintf(dir, sizeof(dir), FIX "%s", name);
	run_model(dir, MODEL_LOAD_F32, DTYPE_F32, &c);
	check_vs_reference(name, &c, TOL, 0);
	free_ctx(&c);
}

#define HALF_VS_F32 1e-5	/* the same products, summed in another order */

/*
 * src (an F32 checkpoint) rounded to dt: computed natively and widened on
 * the prompts of ref_dir/reference.json, against each other and (hf_tol >
 * 0, ref_dir's own model) against the reference's logits.
 */
static void check_half(const char *src, const char *ref_dir, enum dtype dt, double hf_tol)
{
	static struct ctx native, widened;
	char dir[512], cmd[1100];

	snprintf(dir, sizeof(dir), "%s/dyn-half.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(dir) != NULL);
	CHECK(st_convert(src, dir, dt) == 0);
	snprintf(cmd, sizeof(cmd), "cp '%s/reference.json' '%s/'", ref_dir, dir);
	CHECK(system(cmd) == 0);
	run_model(dir, 0, dt, &native);
	run_model(dir, MODEL_LOAD_F32, DTYPE_F32, &widened);
	double diff = 0;
	for (int p = 0; p < native.n_prompts; p++) {
		for (int s = 0; s < native.rp[p].steps; s++) {
			CHECK_MSG(native.got[p][s] == widened.got[p][s],
				  "%s %s prompt %d step %d: token %d, widened %d", src, dtype_name(dt),
				  p, s, native.got[p][s], widened.got[p][s]);
			for (int i = 0; i < native.vocab; i++)
				diff = fmax(diff, fabs((double)native.got_logits[p][s][i] -
						       widened.got_logits[p][s][i]));
		}
	}
	fprintf(stderr, "  %s %s: logits %.2g from widened F32\n", src, dtype_name(dt), diff);
	CHECK_MSG(diff <= HALF_VS_F32, "%s %s: logits differ from the F32 kernels' by %.3g", src,
		  dtype_name(dt), diff);
	if (hf_tol > 0) {
		char what[300];
		snprintf(what, sizeof(what), "%s %s", src, dtype_name(dt));
		check_vs_reference(what, &native, hf_tol, 1);
	}
	free_ctx(&native);
	free_ctx(&widened);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
}

#define BF16_VS_HF 0.02		/* 8 significant bits per weight */
#define F16_VS_HF 0.003		/* 11 */

static void check_model_half(const char *name)
{
	char dir[256];

	snprintf(dir, sizeof(dir), FIX "%s", name);
	check_half(dir, dir, DTYPE_BF16, BF16_VS_HF);
	check_half(dir, dir, DTYPE_F16, F16_VS_HF);
}

TEST(llama_gqa_llama3_rope_tied) { check_model("llama-gqa-llama3rope"); }
TEST(mistral_untied) { check_model("mistral"); }
TEST(qwen2_qkv_bias) { check_model("qwen2-bias"); }
TEST(qwen3_qk_norm) { check_model("qwen3-qknorm"); }
TEST(llama_bf16_f16) { check_model_half("llama-gqa-llama3rope"); }
TEST(mistral_bf16_f16) { check_model_half("mistral"); }
TEST(qwen2_bf16_f16) { check_model_half("qwen2-bias"); }
TEST(qwen3_bf16_f16) { check_model_half("qwen3-qknorm"); }

/* stories260K (no HF logits here: test_engine checks its F32 greedy text),
 * natively against widened, on another fixture's prompts (ids < 256) */
TEST(stories260k_bf16_f16)
{
	check_half("../shared/models/stories260K", FIX "mistral", DTYPE_BF16, 0);
	check_half("../shared/models/stories260K", FIX "mistral", DTYPE_F16, 0);
}

int main(void)
{
	return RUN_TESTS();
}
