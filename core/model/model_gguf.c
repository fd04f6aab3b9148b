/*
 * model_gguf.c - GGUF checkpoints (llama.cpp's files) as dyn models.
 *
 * Resolving a .gguf file makes a private folder with the files of a
 * Hugging Face model folder, so that everything that reads a model's
 * folder (the config parser, the tokenizer, the chat template, the model
 * card a worker publishes) works on a GGUF unchanged:
 *   - config.json from the <arch>.* hyperparameters (architectures
 *     llama, mistral, qwen2, qwen3), the vocabulary size from token_embd,
 *     tie_word_embeddings from the absence of output.weight;
 *   - tokenizer.json and tokenizer_config.json from tokenizer.ggml.* and
 *     tokenizer.chat_template (gguf_tok.c), unless the GGUF's own folder
 *     has a tokenizer.json: then that one (and its tokenizer_config.json,
 *     chat_template.jinja and generation_config.json) are linked instead.
 * Binding then maps llama.cpp's tensor names (token_embd, blk.N.attn_q,
 * ...) to the Hugging Face names the specs use, and the tensors go
 * through the same checks and conversions as a safetensors checkpoint's
 * (weights.c), in place in the mapping.
 *
 * RoPE and Q/K row order: Hugging Face's Llama rotates halves (dimension
 * i of a head pairs with i + D/2); llama.cpp's converter permutes the rows
 * of the Q and K projections (and their biases) of llama-architecture
 * models so that the pairs become adjacent (2j, 2j + 1), which is what its
 * interleaved RoPE rotates.  dyn's attention is HF's rotate-half for every
 * architecture, so for llama and mistral files those rows are put back in
 * HF's order at load (a copy of the Q and K matrices only; weights.c,
 * copy_rows); qwen2 and qwen3 files are converted without the permutation
 * (llama.cpp uses its NEOX rotate-half RoPE for them) and load as stored.
 */
#include "core/model/gguf.h"
#include "core/model/model_int.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct gguf_arch {
	const char *name;		/* general.architecture */
	const char *hf;			/* config.json architectures[0] */
	int permuted;			/* converter permuted Q/K rows */
} archs[] = {
	{ "llama", "LlamaForCausalLM", 1 },
	{ "mistral", "MistralForCausalLM", 1 },
	{ "qwen2", "Qwen2ForCausalLM", 0 },
	{ "qwen3", "Qwen3ForCausalLM", 0 },
};

static int arch_of(const struct gguf *g, const struct gguf_arch **out)
{
	struct gguf_str a;
	int rc = gguf_get_str(g, "general.architecture", &a);

	if (rc < 0)
		return rc;
	if (rc == 0)
		return err_set(-EINVAL, "%s: no general.architecture", g->path);
	for (size_t i = 0; i < ARRAY_SIZE(archs); i++)
		if (a.len == strlen(archs[i].name) && !memcmp(a.s, archs[i].name, a.len)) {
			*out = &archs[i];
			return 0;
		}
	return err_set(-ENOTSUP, "%s: architecture '%.*s' is not supported (llama, mistral, "
		       "qwen2, qwen3)", g->path, (int)(a.len > 40 ? 40 : a.len), a.s);
}

/* ---- tensor names ------------------------------------------------------------ */

static const struct {
	const char *gguf, *hf;
} layer_names[] = {
	{ "attn_norm.weight", "input_layernorm.weight" },
	{ "attn_q.weight", "self_attn.q_proj.weight" },
	{ "attn_q.bias", "self_attn.q_proj.bias" },
	{ "attn_k.weight", "self_attn.k_proj.weight" },
	{ "attn_k.bias", "self_attn.k_proj.bias" },
	{ "attn_v.weight", "self_attn.v_proj.weight" },
	{ "attn_v.bias", "self_attn.v_proj.bias" },
	{ "attn_output.weight", "self_attn.o_proj.weight" },
	{ "attn_output.bias", "self_attn.o_proj.bias" },
	{ "attn_q_norm.weight", "self_attn.q_norm.weight" },
	{ "attn_k_norm.weight", "self_attn.k_norm.weight" },
	{ "ffn_norm.weight", "post_attention_layernorm.weight" },
	{ "ffn_gate.weight", "mlp.gate_proj.weight" },
	{ "ffn_up.weight", "mlp.up_proj.weight" },
	{ "ffn_down.weight", "mlp.down_proj.weight" },
};

/* The Hugging Face name of a GGUF tensor name, or NULL (not one the
 * forward pass uses). */
static char *hf_name(const char *name)
{
	struct strbuf sb = STRBUF_INIT;
	unsigned long layer;
	char *end;

	if (!strcmp(name, "token_embd.weight"))
		return xstrdup("model.embed_tokens.weight");
	if (!strcmp(name, "output_norm.weight"))
		return xstrdup("model.norm.weight");
	if (!strcmp(name, "output.weight"))
		return xstrdup("lm_head.weight");
	if (strncmp(name, "blk.", 4) || !isdigit((unsigned char)name[4]))
		return NULL;
	layer = strtoul(name + 4, &end, 10);
	if (*end != '.' || layer > 1000000)
		return NULL;
	for (size_t i = 0; i < ARRAY_SIZE(layer_names); i++)
		if (!strcmp(end + 1, layer_names[i].gguf)) {
			sb_addf(&sb, "model.layers.%lu.%s", layer, layer_names[i].hf);
			return sb_detach(&sb, NULL);
		}
	return NULL;
}

/* ---- config.json --------------------------------------------------------------- */

/* <arch>.key as an integer: required (def < 0) or def. */
static int hparam(const struct gguf *g, const struct gguf_arch *a, const char *key, int64_t def,
		  int64_t *out)
{
	char k[128];
	int rc;

	snprintf(k, sizeof(k), "%s.%s", a->name, key);
	if ((rc = gguf_get_int(g, k, out)) < 0)
		return rc;
	if (rc == 0 && def < 0)
		return err_set(-EINVAL, "%s: metadata %s is missing", g->path, k);
	if (rc == 0)
		*out = def;
	else if (*out < 0 || *out > INT32_MAX)
		return err_set(-EINVAL, "%s: metadata %s = %lld is out of range", g->path, k,
			       (long long)*out);
	return 0;
}

static int hparam_f(const struct gguf *g, const struct gguf_arch *a, const char *key,
		    double *out)
{
	char k[128];
	snprintf(k, sizeof(k), "%s.%s", a->name, key);
	return gguf_get_f64(g, k, out);
}

/* A number as its shortest decimal when it is a float (GGUF stores most
 * of them as F32: 1e-05, not 9.9999997473787516e-06, as config.json
 * would have it), else in full. */
static void add_number(struct strbuf *out, double v)
{
	char buf[40];

	for (int prec = 1; prec <= 9 && (double)(float)v == v; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if ((float)strtod(buf, NULL) == (float)v) {
			sb_adds(out, buf);
			return;
		}
	}
	sb_addf(out, "%.17g", v);
}

/* Does rope_freqs (llama.cpp's per-frequency divisors, n of them) hold
 * the Llama 3 scaling with these parameters, as forward.c computes it? */
static int llama3_match(const float *div, int n, double theta, double factor, double low,
			double high, double old)
{
	for (int i = 0; i < n; i++) {
		double f = 1.0 / pow(theta, (double)(2 * i) / (2 * n));
		double wl = 2 * M_PI / f, want = 1;
		if (wl > old / low)
			want = factor;
		else if (!(wl < old / high)) {
			double s = (old / wl - low) / (high - low);
			want = 1 / ((1 - s) / factor + s);
		}
		if (!(fabs(div[i] - want) <= 1e-4 * want))
			return 0;
	}
	return 1;
}

/* rope_freqs.weight: accepted when it is Llama 3's scaling (low 1, high
 * 4, the original context from the metadata or 8192, as all Llama 3.x
 * checkpoints have), written as config.json's rope_scaling. */
static int rope_freqs(const struct gguf *g, const struct gguf_arch *a, int head_dim,
		      double theta, struct strbuf *out)
{
	const struct gguf_tensor *t = gguf_find_tensor(g, "rope_freqs.weight");
	int64_t old = 8192;
	float *div;
	int ok = 0, rc;

	if (!t)
		return 0;
	if (t->ndim != 1 || t->ne[0] != (uint64_t)head_dim / 2 || t->dtype != DTYPE_F32)
		return err_set(-EINVAL, "%s: rope_freqs.weight is not %d F32 values", g->path,
			       head_dim / 2);
	if ((rc = hparam(g, a, "rope.scaling.original_context_length", 8192, &old)) < 0)
		return rc;
	div = xmalloc((size_t)t->ne[0] * sizeof(float));
	dtype_to_f32(div, t->data, DTYPE_F32, (size_t)t->ne[0]);
	double factor = 0;
	for (uint64_t i = 0; i < t->ne[0]; i++)
		factor = div[i] > factor ? div[i] : factor;
	ok = old > 0 && factor >= 1 &&
	     llama3_match(div, (int)t->ne[0], theta, factor, 1, 4, (double)old);
	free(div);
	if (!ok)
		return err_set(-ENOTSUP, "%s: rope_freqs.weight is not Llama 3 RoPE scaling "
			       "(the only per-frequency scaling dyn reads)", g->path);
	sb_adds(out, ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":");
	add_number(out, factor);
	sb_addf(out, ",\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
		"\"original_max_position_embeddings\":%lld}", (long long)old);
	return 0;
}

static void token_id_field(const struct gguf *g, const char *key, const char *name,
			   struct strbuf *out)
{
	int64_t id;
	if (gguf_get_int(g, key, &id) == 1 && id >= 0 && id < INT32_MAX)
		sb_addf(out, ",\"%s\":%lld", name, (long long)id);
}

/* config.json for the GGUF's hyperparameters. */
static int hf_config(const struct gguf *g, const struct gguf_arch *a, struct strbuf *out)
{
	int64_t hidden, layers, ff, heads, kv_heads, head_dim, ctx, v, window;
	double theta = 10000, eps = 1e-5, factor;
	struct gguf_str st;
	const struct gguf_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
	int rc;

	if ((rc = hparam(g, a, "embedding_length", -1, &hidden)) < 0 ||
	    (rc = hparam(g, a, "block_count", -1, &layers)) < 0 ||
	    (rc = hparam(g, a, "feed_forward_length", -1, &ff)) < 0 ||
	    (rc = hparam(g, a, "attention.head_count", -1, &heads)) < 0 ||
	    (rc = hparam(g, a, "attention.head_count_kv", heads, &kv_heads)) < 0 ||
	    (rc = hparam(g, a, "context_length", 2048, &ctx)) < 0 ||
	    (rc = hparam(g, a, "attention.key_length", 0, &head_dim)) < 0 ||
	    (rc = hparam(g, a, "attention.value_length", head_dim, &v)) < 0 ||
	    (rc = hparam(g, a, "attention.sliding_window", 0, &window)) < 0 ||
	    (rc = hparam_f(g, a, "rope.freq_base", &theta)) < 0 ||
	    (rc = hparam_f(g, a, "attention.layer_norm_rms_epsilon", &eps)) < 0)
		return rc;
	if (v != head_dim)
		return err_set(-ENOTSUP, "%s: key_length %lld and value_length %lld differ",
			       g->path, (long long)head_dim, (long long)v);
	if (!emb || emb->ndim != 2 || emb->ne[1] > INT32_MAX)
		return err_set(-EINVAL, "%s: no 2-D token_embd.weight (the vocabulary)", g->path);
	sb_addf(out, "{\"architectures\":[\"%s\"],\"model_type\":\"%s\",\"hidden_size\":%lld,"
		"\"num_hidden_layers\":%lld,\"intermediate_size\":%lld,"
		"\"num_attention_heads\":%lld,\"num_key_value_heads\":%lld,"
		"\"max_position_embeddings\":%lld,\"vocab_size\":%llu,\"hidden_act\":\"silu\","
		"\"tie_word_embeddings\":%s", a->hf, a->name, (long long)hidden, (long long)layers,
		(long long)ff, (long long)heads, (long long)kv_heads, (long long)ctx,
		(unsigned long long)emb->ne[1],
		gguf_find_tensor(g, "output.weight") ? "false" : "true");
	sb_adds(out, ",\"rms_norm_eps\":");
	add_number(out, eps);
	sb_adds(out, ",\"rope_theta\":");
	add_number(out, theta);
	if (head_dim)
		sb_addf(out, ",\"head_dim\":%lld", (long long)head_dim);
	if (a->permuted && gguf_find_tensor(g, "blk.0.attn_q.bias"))
		sb_adds(out, ",\"attention_bias\":true");
	if (window)
		sb_addf(out, ",\"sliding_window\":%lld%s", (long long)window,
			strcmp(a->name, "mistral") ? ",\"use_sliding_window\":true" : "");
	if (dtype_is_weight(emb->dtype))
		sb_addf(out, ",\"torch_dtype\":\"%s\"", dtype_torch_name(emb->dtype));
	char key[128];
	snprintf(key, sizeof(key), "%s.rope.scaling.type", a->name);
	if ((rc = gguf_get_str(g, key, &st)) < 0)
		return rc;
	if (rc == 1 && !(st.len == 4 && !memcmp(st.s, "none", 4))) {
		if (!(st.len == 6 && !memcmp(st.s, "linear", 6)))
			return err_set(-ENOTSUP, "%s: %s '%.*s' is not supported (none, linear)",
				       g->path, key, (int)(st.len > 40 ? 40 : st.len), st.s);
		if ((rc = hparam_f(g, a, "rope.scaling.factor", &factor)) < 0)
			return rc;
		if (rc == 0)
			return err_set(-EINVAL, "%s: linear RoPE scaling without a factor", g->path);
		sb_adds(out, ",\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":");
		add_number(out, factor);
		sb_addch(out, '}');
	} else if ((rc = rope_freqs(g, a, (int)(head_dim ? head_dim : heads ? hidden / heads : 0),
				    theta, out)) < 0) {
		return rc;
	}
	token_id_field(g, "tokenizer.ggml.bos_token_id", "bos_token_id", out);
	token_id_field(g, "tokenizer.ggml.padding_token_id", "pad_token_id", out);
	/* end of generation: eos, and the end-of-turn / end-of-message tokens */
	const char *eos_keys[] = { "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
				   "tokenizer.ggml.eom_token_id" };
	int n = 0;
	for (size_t i = 0; i < ARRAY_SIZE(eos_keys); i++) {
		int64_t id;
		if (gguf_get_int(g, eos_keys[i], &id) == 1 && id >= 0 && id < INT32_MAX)
			sb_addf(out, "%s%lld", n++ ? "," : ",\"eos_token_id\":[", (long long)id);
	}
	if (n)
		sb_addch(out, ']');
	sb_adds(out, "}\n");
	return 0;
}

/* ---- the folder ----------------------------------------------------------------- */

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

char *model_gguf_in_dir(const char *dir)
{
	struct strbuf sb = STRBUF_INIT;
	char *found = NULL;
	int n = 0;
	DIR *d;
	struct dirent *de;

	sb_addf(&sb, "%s/config.json", dir);
	if (access(sb.buf, F_OK) == 0 || !(d = opendir(dir))) {
		sb_release(&sb);
		return NULL;
	}
	while ((de = readdir(d)))
		if (de->d_name[0] != '.' && ends_with(de->d_name, ".gguf") && !n++) {
			sb_reset(&sb);
			sb_addf(&sb, "%s/%s", dir, de->d_name);
			found = xstrdup(sb.buf);
		}
	closedir(d);
	sb_release(&sb);
	if (n != 1) {
		free(found);
		return NULL;
	}
	return found;
}

static const char *const folder_files[] = {
	"config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
	"generation_config.json",
};

void model_gguf_dir_remove(const char *dir)
{
	struct strbuf sb = STRBUF_INIT;

	for (size_t i = 0; i < ARRAY_SIZE(folder_files); i++) {
		sb_reset(&sb);
		sb_addf(&sb, "%s/%s", dir, folder_files[i]);
		unlink(sb.buf);
	}
	rmdir(dir);
	sb_release(&sb);
}

static int write_file(const char *dir, const char *name, const struct strbuf *data)
{
	struct strbuf path = STRBUF_INIT;
	FILE *f;
	int rc = 0;

	sb_addf(&path, "%s/%s", dir, name);
	f = fopen(path.buf, "w");
	if (!f || fwrite(data->buf, 1, data->len, f) != data->len)
		rc = err_set(-EIO, "%s: %s", path.buf, strerror(errno));
	if (f && fclose(f) && !rc)
		rc = err_set(-EIO, "%s: %s", path.buf, strerror(errno));
	sb_release(&path);
	return rc;
}

/* Link the tokenizer files of the GGUF's folder (those present). */
static int link_tokenizer(const char *from, const char *dir)
{
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	int rc = 0;

	for (size_t i = 1; i < ARRAY_SIZE(folder_files) && !rc; i++) {
		sb_reset(&a);
		sb_reset(&b);
		sb_addf(&a, "%s/%s", from, folder_files[i]);
		sb_addf(&b, "%s/%s", dir, folder_files[i]);
		if (access(a.buf, F_OK) == 0 && symlink(a.buf, b.buf) < 0)
			rc = err_set(-errno, "%s: %s", b.buf, strerror(errno));
	}
	sb_release(&a);
	sb_release(&b);
	return rc;
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	return slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
}

int model_gguf_resolve(const char *path, struct model_source *src)
{
	struct gguf g;
	const struct gguf_arch *a;
	struct strbuf cfg = STRBUF_INIT, tok = STRBUF_INIT, tcfg = STRBUF_INIT, tmp = STRBUF_INIT;
	char *from = dir_of(path), *beside;
	int rc;

	memset(src, 0, sizeof(*src));
	if ((rc = gguf_open(path, &g)) < 0) {
		free(from);
		return rc;
	}
	sb_addf(&tmp, "%s/tokenizer.json", from);
	beside = access(tmp.buf, F_OK) == 0 ? from : NULL;
	if ((rc = arch_of(&g, &a)) < 0 || (rc = hf_config(&g, a, &cfg)) < 0 ||
	    (!beside && (rc = model_gguf_tokenizer(&g, &tok, &tcfg)) < 0))
		goto out;
	/* the checks config.json gets, with the GGUF named */
	struct model_desc desc;
	if ((rc = model_desc_parse(cfg.buf, cfg.len, NULL, 0, &desc)) < 0) {
		err_wrap(rc, "%s: its metadata as", path);
		goto out;
	}
	const char *base = getenv("TMPDIR");
	sb_reset(&tmp);
	sb_addf(&tmp, "%s/dyn-gguf-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(tmp.buf)) {
		rc = err_set(-errno, "%s: making a folder for its metadata: %s", path,
			     strerror(errno));
		goto out;
	}
	src->tmpdir = xstrdup(tmp.buf);
	src->dir = xstrdup(tmp.buf);
	src->weights = xstrdup(path);
	src->gguf_tokenizer = !beside;
	if ((rc = write_file(src->dir, "config.json", &cfg)) < 0)
		goto out;
	if (beside)
		rc = link_tokenizer(from, src->dir);
	else if ((rc = write_file(src->dir, "tokenizer.json", &tok)) == 0)
		rc = write_file(src->dir, "tokenizer_config.json", &tcfg);
	LOG_DEBUG("model", "%s: GGUF v%u, %s, %zu tensors; files in %s (tokenizer %s)", path,
		  g.version, a->name, g.ntensors, src->dir, beside ? "beside it" : "from metadata");
out:
	if (rc < 0)
		model_source_free(src);
	gguf_close(&g);
	sb_release(&cfg);
	sb_release(&tok);
	sb_release(&tcfg);
	sb_release(&tmp);
	free(from);
	return rc;
}

/* ---- the weights ---------------------------------------------------------------- */

void model_gguf_free(struct gguf *g)
{
	if (g) {
		gguf_close(g);
		free(g);
	}
}

int model_bind_gguf(struct model *m, const char *path, const struct model_load_opts *o)
{
	struct model_priv *p = m->priv;
	const struct gguf_arch *a;
	struct st_file f = { 0 };
	int rc;

	p->gguf = xcalloc(1, sizeof(*p->gguf));
	if ((rc = gguf_open(path, p->gguf)) < 0 || (rc = arch_of(p->gguf, &a)) < 0)
		return rc;
	p->rope_permuted = a->permuted;
	m->n_files = 1;
	m->gguf_version = (int)p->gguf->version;
	f.path = xstrdup(path);
	f.file_size = p->gguf->image_len;
	f.data_start = p->gguf->data_start;
	f.tensors = xcalloc(p->gguf->ntensors + 1, sizeof(*f.tensors));
	for (size_t i = 0; i < p->gguf->ntensors; i++) {
		const struct gguf_tensor *gt = &p->gguf->tensors[i];
		char *name = hf_name(gt->name);
		if (!name) {
			LOG_DEBUG("model", "%s: tensor %s is not used", path, gt->name);
			continue;
		}
		struct st_tensor *t = &f.tensors[f.ntensors++];
		t->name = name;
		t->dtype = gt->dtype;
		t->ndim = gt->ndim;
		for (int d = 0; d < gt->ndim; d++)	/* GGUF lists the innermost first */
			t->shape[d] = gt->ne[gt->ndim - 1 - d];
		t->numel = gt->numel;
		t->offset = gt->offset;
		t->nbytes = gt->nbytes;
		t->data = (o->flags & MODEL_LOAD_META) ? NULL : gt->data;
	}
	if ((rc = st_set_adopt(&f, &p->st)) < 0 || (rc = model_bind_set(m, o)) < 0)
		return err_wrap(rc, "%s", path);
	return 0;
}
