/*
 * config.c - config.json and generation_config.json -> struct model_desc
 * (see model.h).  Every number the engine sizes memory or loops by is
 * range-checked here, so that a hostile config cannot make later
 * arithmetic overflow.
 */
#include "core/model/model.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONFIG_MAX (4u << 20)
#define DIM_MAX (1 << 20)		/* hidden, intermediate, head_dim */
#define VOCAB_MAX (1 << 24)
#define LAYERS_MAX 4096
#define CTX_MAX (1 << 30)

static const struct {
	const char *name;
	enum model_arch arch;
} archs[] = {
	{ "LlamaForCausalLM", MODEL_ARCH_LLAMA },
	{ "MistralForCausalLM", MODEL_ARCH_MISTRAL },
	{ "Qwen2ForCausalLM", MODEL_ARCH_QWEN2 },
	{ "Qwen3ForCausalLM", MODEL_ARCH_QWEN3 },
};

const char *model_rope_type_name(enum model_rope_type t)
{
	switch (t) {
	case MODEL_ROPE_LINEAR: return "linear";
	case MODEL_ROPE_LLAMA3: return "llama3";
	default: return "default";
	}
}

static cJSON *parse_json(const char *text, size_t len, const char *what)
{
	char *copy = xstrndup(text, len);
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(copy, len, &end, 0);

	size_t at = end && end >= copy && end <= copy + len ? (size_t)(end - copy) : 0;
	if (j && at < len && copy[at + strspn(copy + at, " \t\r\n")]) {
		cJSON_Delete(j);
		j = NULL;
		at += strspn(copy + at, " \t\r\n");
	}
	if (!j) {
		err_set(-EINVAL, "%s: not valid JSON (error near byte %zu)", what, at);
	} else if (!cJSON_IsObject(j)) {
		err_set(-EINVAL, "%s: not a JSON object", what);
		cJSON_Delete(j);
		j = NULL;
	} else {
		/* Python keeps the last of duplicate keys, cJSON the first:
		 * refuse rather than read a config differently from the
		 * reference implementation. */
		const char *dup = NULL;
		for (const cJSON *a = j->child; a && !dup; a = a->next)
			for (const cJSON *b = a->next; b && !dup; b = b->next)
				if (!strcmp(a->string, b->string))
					dup = a->string;
		if (dup) {
			err_set(-EINVAL, "%s: key \"%.60s\" appears twice", what, dup);
			cJSON_Delete(j);
			j = NULL;
		}
	}
	free(copy);
	return j;
}

/* An integer field in [lo, hi]; absent: *out = def, or an error if def < lo. */
static int get_int(const cJSON *o, const char *key, long lo, long hi, long def, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v)) {
		if (def < lo)
			return err_set(-EINVAL, "config.json: \"%s\" is missing", key);
		*out = (int)def;
		return 0;
	}
	if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble)
		return err_set(-EINVAL, "config.json: \"%s\" is not an integer", key);
	if (v->valuedouble < (double)lo || v->valuedouble > (double)hi)
		return err_set(-EINVAL, "config.json: \"%s\" = %.0f is out of range [%ld, %ld]",
			       key, v->valuedouble, lo, hi);
	*out = (int)v->valuedouble;
	return 0;
}

static int get_double(const cJSON *o, const char *key, double lo, double hi, double def,
		      double *out, const char *file)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v)) {
		*out = def;
		return 0;
	}
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi))
		return err_set(-EINVAL, "%s: \"%s\" must be a number in [%g, %g]", file, key,
			       lo, hi);
	*out = v->valuedouble;
	return 0;
}

static int get_bool(const cJSON *o, const char *key, int def, int *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v)) {
		*out = def;
		return 0;
	}
	if (!cJSON_IsBool(v))
		return err_set(-EINVAL, "config.json: \"%s\" is not true or false", key);
	*out = cJSON_IsTrue(v);
	return 0;
}

static int add_eos(struct model_desc *d, double v, const char *file)
{
	if (floor(v) != v || v < 0 || v >= VOCAB_MAX)
		return err_set(-EINVAL, "%s: eos_token_id %g is not a token id", file, v);
	for (int i = 0; i < d->n_eos; i++)
		if (d->eos_token_ids[i] == (int)v)
			return 0;
	if (d->n_eos == MODEL_MAX_EOS)
		return err_set(-EINVAL, "%s: more than %d eos_token_id values", file, MODEL_MAX_EOS);
	d->eos_token_ids[d->n_eos++] = (int)v;
	return 0;
}

/* eos_token_id: an integer or a list of them. */
static int parse_eos(const cJSON *o, struct model_desc *d, const char *file)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
	int rc;

	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsNumber(v))
		return add_eos(d, v->valuedouble, file);
	if (!cJSON_IsArray(v))
		return err_set(-EINVAL, "%s: eos_token_id is neither a number nor a list", file);
	for (const cJSON *e = v->child; e; e = e->next) {
		if (!cJSON_IsNumber(e))
			return err_set(-EINVAL, "%s: eos_token_id list holds a non-number", file);
		if ((rc = add_eos(d, e->valuedouble, file)) < 0)
			return rc;
	}
	return 0;
}

static int token_id(const cJSON *o, const char *key, int *out, const char *file)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);

	if (!v || cJSON_IsNull(v))
		return 0;
	if (cJSON_IsArray(v))	/* a few configs list several: take the first */
		v = v->child;
	if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble ||
	    v->valuedouble < 0 || v->valuedouble >= VOCAB_MAX)
		return err_set(-EINVAL, "%s: \"%s\" is not a token id", file, key);
	*out = (int)v->valuedouble;
	return 0;
}

/* RoPE scaling from the object rs, found under the key "key" of
 * config.json: "rope_scaling" (transformers 4), or "rope_parameters"
 * (transformers 5, which also moves rope_theta there). */
static int parse_rope_scaling(const cJSON *rs, const char *key, struct model_desc *d)
{
	const cJSON *type;
	const char *name;
	int rc;

	d->rope.type = MODEL_ROPE_DEFAULT;
	d->rope.factor = 1;
	if (!rs || cJSON_IsNull(rs))
		return 0;
	if (!cJSON_IsObject(rs))
		return err_set(-EINVAL, "config.json: \"%s\" is not an object", key);
	type = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
	if (!type)
		type = cJSON_GetObjectItemCaseSensitive(rs, "type");
	if (!type && !strcmp(key, "rope_parameters"))
		return 0;	/* only rope_theta: plain RoPE */
	if (!cJSON_IsString(type))
		return err_set(-EINVAL, "config.json: \"%s\" has no \"rope_type\"", key);
	name = type->valuestring;
	if (!strcmp(name, "default"))
		return 0;
	if (strcmp(name, "linear") && strcmp(name, "llama3"))
		return err_set(-ENOTSUP, "config.json: %s type '%.40s' is not supported "
			       "(supported: default, linear, llama3)", key, name);
	if ((rc = get_double(rs, "factor", 1e-6, 1e6, NAN, &d->rope.factor, "config.json")) < 0)
		return rc;
	if (isnan(d->rope.factor))
		return err_set(-EINVAL, "config.json: %s \"factor\" is missing", key);
	if (!strcmp(name, "linear")) {
		d->rope.type = MODEL_ROPE_LINEAR;
		return 0;
	}
	d->rope.type = MODEL_ROPE_LLAMA3;
	if ((rc = get_double(rs, "low_freq_factor", 1e-6, 1e6, 1, &d->rope.low_freq_factor,
			     "config.json")) < 0 ||
	    (rc = get_double(rs, "high_freq_factor", 1e-6, 1e6, 4, &d->rope.high_freq_factor,
			     "config.json")) < 0)
		return rc;
	if (!(d->rope.high_freq_factor > d->rope.low_freq_factor))
		return err_set(-EINVAL, "config.json: %s high_freq_factor must exceed "
			       "low_freq_factor", key);
	return get_int(rs, "original_max_position_embeddings", 1, CTX_MAX, 8192,
		       &d->rope.original_max_position_embeddings);
}

static int parse_generation(const char *gen, size_t gen_len, struct model_desc *d)
{
	const char *file = "generation_config.json";
	cJSON *g = parse_json(gen, gen_len, file);
	const cJSON *v;
	int rc;

	if (!g)
		return -EINVAL;
	if ((rc = token_id(g, "bos_token_id", &d->bos_token_id, file)) < 0 ||
	    (rc = token_id(g, "pad_token_id", &d->pad_token_id, file)) < 0 ||
	    (rc = parse_eos(g, d, file)) < 0 ||
	    (rc = get_double(g, "temperature", 0, 1e6, NAN, &d->gen.temperature, file)) < 0 ||
	    (rc = get_double(g, "top_p", 0, 1, NAN, &d->gen.top_p, file)) < 0 ||
	    (rc = get_double(g, "min_p", 0, 1, NAN, &d->gen.min_p, file)) < 0 ||
	    (rc = get_double(g, "repetition_penalty", 0, 1e6, NAN,
			     &d->gen.repetition_penalty, file)) < 0)
		goto out;
	if ((v = cJSON_GetObjectItemCaseSensitive(g, "top_k")) && cJSON_IsNumber(v) &&
	    v->valuedouble >= 0 && v->valuedouble < VOCAB_MAX)
		d->gen.top_k = (int)v->valuedouble;
	if ((v = cJSON_GetObjectItemCaseSensitive(g, "max_length")) && cJSON_IsNumber(v) &&
	    v->valuedouble >= 0 && v->valuedouble < CTX_MAX)
		d->gen.max_length = (int)v->valuedouble;
	if ((v = cJSON_GetObjectItemCaseSensitive(g, "do_sample")) && cJSON_IsBool(v))
		d->gen.do_sample = cJSON_IsTrue(v);
out:
	cJSON_Delete(g);
	return rc;
}

int model_desc_parse(const char *config, size_t config_len, const char *gen,
		     size_t gen_len, struct model_desc *d)
{
	cJSON *root = parse_json(config, config_len, "config.json");
	const cJSON *v, *arch;
	int rc = 0, head_dim_default;

	memset(d, 0, sizeof(*d));
	d->bos_token_id = d->pad_token_id = -1;
	d->gen = (struct model_gen_defaults){ .temperature = NAN, .top_p = NAN, .top_k = -1,
					      .min_p = NAN, .repetition_penalty = NAN,
					      .max_length = -1, .do_sample = -1 };
	if (!root)
		return -EINVAL;
	arch = cJSON_GetObjectItemCaseSensitive(root, "architectures");
	if (cJSON_IsArray(arch) && cJSON_GetArraySize(arch) >= 1 && cJSON_IsString(arch->child))
		snprintf(d->architecture, sizeof(d->architecture), "%s", arch->child->valuestring);
	else {
		rc = err_set(-EINVAL, "config.json: no \"architectures\" list");
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(archs); i++)
		if (!strcmp(archs[i].name, d->architecture))
			d->arch = archs[i].arch;
	if (!d->arch) {
		rc = err_set(-ENOTSUP, "architecture %s is not supported (supported: "
			     "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, "
			     "Qwen3ForCausalLM)", d->architecture);
		goto out;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "model_type")) && cJSON_IsString(v))
		snprintf(d->model_type, sizeof(d->model_type), "%s", v->valuestring);
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "quantization_config")) &&
	    !cJSON_IsNull(v)) {
		rc = err_set(-ENOTSUP, "config.json: quantized checkpoints are not supported "
			     "(use an F32, F16 or BF16 model)");
		goto out;
	}
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "hidden_act")) && cJSON_IsString(v) &&
	    strcmp(v->valuestring, "silu")) {
		rc = err_set(-ENOTSUP, "config.json: hidden_act '%.40s' is not supported (silu)",
			     v->valuestring);
		goto out;
	}
	if ((rc = get_int(root, "hidden_size", 1, DIM_MAX, -1, &d->hidden_size)) < 0 ||
	    (rc = get_int(root, "num_hidden_layers", 1, LAYERS_MAX, -1, &d->num_layers)) < 0 ||
	    (rc = get_int(root, "num_attention_heads", 1, DIM_MAX, -1, &d->num_heads)) < 0 ||
	    (rc = get_int(root, "num_key_value_heads", 1, DIM_MAX, d->num_heads,
			  &d->num_kv_heads)) < 0 ||
	    (rc = get_int(root, "intermediate_size", 1, DIM_MAX, -1, &d->intermediate_size)) < 0 ||
	    (rc = get_int(root, "vocab_size", 1, VOCAB_MAX, -1, &d->vocab_size)) < 0 ||
	    (rc = get_int(root, "max_position_embeddings", 1, CTX_MAX, 2048,
			  &d->max_position_embeddings)) < 0)
		goto out;
	head_dim_default = d->hidden_size / d->num_heads;
	if ((rc = get_int(root, "head_dim", 1, DIM_MAX, head_dim_default ? head_dim_default : -1,
			  &d->head_dim)) < 0)
		goto out;
	if (!cJSON_GetObjectItemCaseSensitive(root, "head_dim") &&
	    d->hidden_size % d->num_heads) {
		rc = err_set(-EINVAL, "config.json: num_attention_heads %d does not divide "
			     "hidden_size %d (and no head_dim is given)", d->num_heads,
			     d->hidden_size);
		goto out;
	}
	if (d->num_kv_heads > d->num_heads || d->num_heads % d->num_kv_heads) {
		rc = err_set(-EINVAL, "config.json: num_key_value_heads %d does not divide "
			     "num_attention_heads %d", d->num_kv_heads, d->num_heads);
		goto out;
	}
	if ((uint64_t)d->num_heads * (uint64_t)d->head_dim > DIM_MAX) {
		rc = err_set(-EINVAL, "config.json: num_attention_heads * head_dim is too large");
		goto out;
	}
	if (d->head_dim % 2) {
		rc = err_set(-EINVAL, "config.json: head_dim %d is odd (RoPE needs pairs)",
			     d->head_dim);
		goto out;
	}
	const cJSON *rope_params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
	const cJSON *rope_scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
	if (rope_params && !cJSON_IsNull(rope_params) && !cJSON_IsObject(rope_params)) {
		rc = err_set(-EINVAL, "config.json: \"rope_parameters\" is not an object");
		goto out;
	}
	if (!cJSON_IsObject(rope_params))
		rope_params = NULL;
	/* Top-level keys win: transformers 4 spelling, or both written. */
	const cJSON *theta_from = rope_params &&
		!cJSON_GetObjectItemCaseSensitive(root, "rope_theta") ? rope_params : root;
	int scaling_from_params = (!rope_scaling || cJSON_IsNull(rope_scaling)) && rope_params;
	if ((rc = get_double(theta_from, "rope_theta", 1, 1e12, 10000, &d->rope.theta,
			     "config.json")) < 0 ||
	    (rc = get_double(root, "rms_norm_eps", 0, 1, 1e-6, &d->rms_norm_eps,
			     "config.json")) < 0 ||
	    (rc = parse_rope_scaling(scaling_from_params ? rope_params : rope_scaling,
				     scaling_from_params ? "rope_parameters" : "rope_scaling",
				     d)) < 0)
		goto out;
	if ((v = cJSON_GetObjectItemCaseSensitive(root, "partial_rotary_factor")) &&
	    cJSON_IsNumber(v) && v->valuedouble != 1) {
		rc = err_set(-ENOTSUP, "config.json: partial_rotary_factor is not supported");
		goto out;
	}
	/* transformers' Llama, Mistral, Qwen2 and Qwen3 configs all default
	 * to separate embeddings. */
	if ((rc = get_bool(root, "tie_word_embeddings", 0, &d->tie_word_embeddings)) < 0)
		goto out;
	int attention_bias, mlp_bias;
	if ((rc = get_bool(root, "attention_bias", 0, &attention_bias)) < 0 ||
	    (rc = get_bool(root, "mlp_bias", 0, &mlp_bias)) < 0)
		goto out;
	if (mlp_bias) {
		rc = err_set(-ENOTSUP, "config.json: mlp_bias is not supported");
		goto out;
	}
	switch (d->arch) {
	case MODEL_ARCH_QWEN2:
		d->qkv_bias = 1;	/* always, whatever attention_bias says */
		d->o_bias = 0;
		break;
	case MODEL_ARCH_QWEN3:
		d->qk_norm = 1;
		/* fall through */
	default:
		d->qkv_bias = d->o_bias = attention_bias;
		break;
	}
	/* Sliding windows: Mistral's sliding_window; Qwen2/3 only when
	 * use_sliding_window is set. */
	int use_sw = d->arch == MODEL_ARCH_MISTRAL;
	if ((d->arch == MODEL_ARCH_QWEN2 || d->arch == MODEL_ARCH_QWEN3) &&
	    (rc = get_bool(root, "use_sliding_window", 0, &use_sw)) < 0)
		goto out;
	if (use_sw && (rc = get_int(root, "sliding_window", 0, CTX_MAX, 0,
				    &d->sliding_window)) < 0)
		goto out;
	v = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
	if (!v || cJSON_IsNull(v))
		v = cJSON_GetObjectItemCaseSensitive(root, "dtype");
	d->dtype = DTYPE_F32;
	if (cJSON_IsString(v)) {
		d->dtype = dtype_from_torch(v->valuestring);
		if (!dtype_is_weight(d->dtype)) {
			rc = err_set(-ENOTSUP, "config.json: torch_dtype '%.40s' is not supported "
				     "(float32, float16, bfloat16)", v->valuestring);
			goto out;
		}
	}
	if ((rc = token_id(root, "bos_token_id", &d->bos_token_id, "config.json")) < 0 ||
	    (rc = token_id(root, "pad_token_id", &d->pad_token_id, "config.json")) < 0 ||
	    (rc = parse_eos(root, d, "config.json")) < 0)
		goto out;
	if (gen && (rc = parse_generation(gen, gen_len, d)) < 0)
		goto out;
out:
	cJSON_Delete(root);
	return rc;
}

int model_desc_load(const char *dir, struct model_desc *d)
{
	struct strbuf path = STRBUF_INIT, cfg = STRBUF_INIT, gen = STRBUF_INIT;
	int rc, have_gen;

	sb_addf(&path, "%s/config.json", dir);
	if ((rc = sb_read_file(&cfg, path.buf, CONFIG_MAX)) < 0) {
		if (rc == -ENOENT)
			err_set(rc, "%s: no config.json (not a Hugging Face model folder)", dir);
		goto out;
	}
	sb_reset(&path);
	sb_addf(&path, "%s/generation_config.json", dir);
	have_gen = access(path.buf, F_OK) == 0;
	if (have_gen && (rc = sb_read_file(&gen, path.buf, CONFIG_MAX)) < 0)
		goto out;
	rc = model_desc_parse(cfg.buf, cfg.len, have_gen ? gen.buf : NULL, gen.len, d);
	if (rc < 0)
		err_wrap(rc, "%s", dir);
out:
	sb_release(&path);
	sb_release(&cfg);
	sb_release(&gen);
	return rc;
}

uint64_t model_desc_params(const struct model_desc *d)
{
	uint64_t h = (uint64_t)d->hidden_size, hd = (uint64_t)d->head_dim;
	uint64_t q = (uint64_t)d->num_heads * hd, kv = (uint64_t)d->num_kv_heads * hd;
	uint64_t layer = h				/* input_layernorm */
		       + h * q + 2 * h * kv + q * h	/* q, k, v, o */
		       + h				/* post_attention_layernorm */
		       + 3 * h * (uint64_t)d->intermediate_size;
	if (d->qkv_bias)
		layer += q + 2 * kv;
	if (d->o_bias)
		layer += h;
	if (d->qk_norm)
		layer += 2 * hd;
	uint64_t n = (uint64_t)d->vocab_size * h + (uint64_t)d->num_layers * layer + h;
	if (!d->tie_word_embeddings)
		n += (uint64_t)d->vocab_size * h;
	return n;
}
