/*
 * test_model.c - config parsing, model loading (real stories260K weights,
 * synthetic checkpoints of every supported architecture and dtype, dummy
 * weights), checks of missing or misshapen tensors, the resolver, and the
 * memory bound: weights stay mapped, peak RSS under weights + 5%, and a
 * BF16 checkpoint served by the engine (its CPU kernels compute with the
 * mapped BF16 weights) peaks at weights + KV pool + a few MB, not twice
 * the weights; GGUF metadata of every kind read back, and every
 * truncation of a GGUF image refused.
 */
#include "test/unit/check.h"

#include "core/engine/engine.h"
#include "core/byteorder.h"
#include "core/err.h"
#include "core/model/gguf.h"
#include "core/model/model.h"
#include "test/unit/engine_collect.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MODELS "../shared/models"

static char tmpdir[256];

static const char *tmp_path(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
static const char *tmp_path(const char *fmt, ...)
{
	static char path[4][512];
	static int slot;
	char name[256];
	va_list ap;

	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "%s/dyn-model.XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(tmpdir))
			abort();
	}
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	slot = (slot + 1) % 4;
	snprintf(path[slot], sizeof(path[slot]), "%s/%s", tmpdir, name);
	return path[slot];
}

static void write_text(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		abort();
	close(fd);
}

/* ---- a small safetensors writer for synthetic checkpoints ---- */

struct wt {
	char name[96];
	const char *dtype;	/* "F32", "F16", "BF16", "I32" */
	int ndim;
	uint64_t shape[2];
};

struct wlist {
	struct wt t[256];
	int n;
};

static void wl_add(struct wlist *l, const char *dtype, uint64_t d0, uint64_t d1,
		   const char *fmt, int layer)
{
	struct wt *t = &l->t[l->n++];
	snprintf(t->name, sizeof(t->name), fmt, layer);
	t->dtype = dtype;
	t->ndim = d1 ? 2 : 1;
	t->shape[0] = d0;
	t->shape[1] = d1;
}

static size_t esize(const char *dtype)
{
	return !strcmp(dtype, "F32") || !strcmp(dtype, "I32") ? 4 : 2;
}

/* Element i of tensor k: k/64-steps exactly representable in F16/BF16. */
static float value_of(int k, uint64_t i)
{
	return (float)((int)((i * 7 + (uint64_t)k * 13) % 251) - 125) / 64.0f;
}

static void encode(const char *dtype, float v, unsigned char *out)
{
	if (!strcmp(dtype, "F32")) {
		memcpy(out, &v, 4);
	} else if (!strcmp(dtype, "I32")) {
		int32_t x = (int32_t)v;
		memcpy(out, &x, 4);
	} else {
		/* Exact for our values: hand-built encodings, independent of
		 * the code under test. */
		uint32_t u;
		memcpy(&u, &v, 4);
		uint16_t h;
		if (!strcmp(dtype, "BF16")) {
			h = (uint16_t)(u >> 16);
		} else {	/* F16 of a normal value with <= 10 fraction bits */
			uint32_t sign = (u >> 16) & 0x8000u;
			int exp = (int)((u >> 23) & 0xff);
			h = v == 0 ? (uint16_t)sign :
			    (uint16_t)(sign | (uint32_t)(exp - 127 + 15) << 10 | ((u >> 13) & 0x3ffu));
		}
		memcpy(out, &h, 2);
	}
}

static void write_checkpoint(const char *path, const struct wlist *l)
{
	struct strbuf h = STRBUF_INIT;
	uint64_t off = 0;
	unsigned char prefix[8], buf[4096];
	int fd;

	sb_addch(&h, '{');
	for (int k = 0; k < l->n; k++) {
		const struct wt *t = &l->t[k];
		uint64_t n = t->shape[0] * (t->ndim > 1 ? t->shape[1] : 1);
		sb_addf(&h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu", k ? "," : "", t->name,
			t->dtype, (unsigned long long)t->shape[0]);
		if (t->ndim > 1)
			sb_addf(&h, ",%llu", (unsigned long long)t->shape[1]);
		sb_addf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
			(unsigned long long)(off + n * esize(t->dtype)));
		off += n * esize(t->dtype);
	}
	sb_addch(&h, '}');
	while (h.len % 8)
		sb_addch(&h, ' ');
	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, prefix, 8) != 8 || write(fd, h.buf, h.len) != (ssize_t)h.len)
		abort();
	for (int k = 0; k < l->n; k++) {
		const struct wt *t = &l->t[k];
		uint64_t n = t->shape[0] * (t->ndim > 1 ? t->shape[1] : 1);
		size_t es = esize(t->dtype), fill = 0;
		for (uint64_t i = 0; i < n; i++) {
			encode(t->dtype, value_of(k, i), buf + fill);
			fill += es;
			if (fill == sizeof(buf) || i + 1 == n) {
				if (write(fd, buf, fill) != (ssize_t)fill)
					abort();
				fill = 0;
			}
		}
	}
	close(fd);
	sb_release(&h);
}

struct shape {
	const char *arch;
	int hidden, layers, heads, kv, head_dim, inter, vocab, tie;
};

static void write_config(const char *dir, const struct shape *s, const char *extra)
{
	char text[2048];
	snprintf(text, sizeof(text),
		 "{\"architectures\":[\"%s\"],\"hidden_size\":%d,\"num_hidden_layers\":%d,"
		 "\"num_attention_heads\":%d,\"num_key_value_heads\":%d,\"head_dim\":%d,"
		 "\"intermediate_size\":%d,\"vocab_size\":%d,\"tie_word_embeddings\":%s,"
		 "\"rms_norm_eps\":1e-6,\"max_position_embeddings\":256%s%s}",
		 s->arch, s->hidden, s->layers, s->heads, s->kv, s->head_dim, s->inter, s->vocab,
		 s->tie ? "true" : "false", extra ? "," : "", extra ? extra : "");
	mkdir(dir, 0755);
	write_text(tmp_path("%s/config.json", strrchr(dir, '/') + 1), text);
}

/* The Hugging Face tensor list of an architecture (written from the
 * transformers modelling code's parameter names, not from our loader). */
static void hf_tensors(struct wlist *l, const struct shape *s, const char *dt)
{
	int q = s->heads * s->head_dim, kv = s->kv * s->head_dim, h = s->hidden;
	int qwen2 = !strcmp(s->arch, "Qwen2ForCausalLM"), qwen3 = !strcmp(s->arch, "Qwen3ForCausalLM");

	l->n = 0;
	wl_add(l, dt, (uint64_t)s->vocab, (uint64_t)h, "model.embed_tokens.weight", 0);
	for (int i = 0; i < s->layers; i++) {
		wl_add(l, dt, (uint64_t)h, 0, "model.layers.%d.input_layernorm.weight", i);
		wl_add(l, dt, (uint64_t)q, (uint64_t)h, "model.layers.%d.self_attn.q_proj.weight", i);
		wl_add(l, dt, (uint64_t)kv, (uint64_t)h, "model.layers.%d.self_attn.k_proj.weight", i);
		wl_add(l, dt, (uint64_t)kv, (uint64_t)h, "model.layers.%d.self_attn.v_proj.weight", i);
		if (qwen2) {
			wl_add(l, dt, (uint64_t)q, 0, "model.layers.%d.self_attn.q_proj.bias", i);
			wl_add(l, dt, (uint64_t)kv, 0, "model.layers.%d.self_attn.k_proj.bias", i);
			wl_add(l, dt, (uint64_t)kv, 0, "model.layers.%d.self_attn.v_proj.bias", i);
		}
		if (qwen3) {
			wl_add(l, dt, (uint64_t)s->head_dim, 0, "model.layers.%d.self_attn.q_norm.weight", i);
			wl_add(l, dt, (uint64_t)s->head_dim, 0, "model.layers.%d.self_attn.k_norm.weight", i);
		}
		wl_add(l, dt, (uint64_t)h, (uint64_t)q, "model.layers.%d.self_attn.o_proj.weight", i);
		wl_add(l, dt, (uint64_t)h, 0, "model.layers.%d.post_attention_layernorm.weight", i);
		wl_add(l, dt, (uint64_t)s->inter, (uint64_t)h, "model.layers.%d.mlp.gate_proj.weight", i);
		wl_add(l, dt, (uint64_t)s->inter, (uint64_t)h, "model.layers.%d.mlp.up_proj.weight", i);
		wl_add(l, dt, (uint64_t)h, (uint64_t)s->inter, "model.layers.%d.mlp.down_proj.weight", i);
	}
	wl_add(l, dt, (uint64_t)h, 0, "model.norm.weight", 0);
	if (!s->tie)
		wl_add(l, dt, (uint64_t)s->vocab, (uint64_t)h, "lm_head.weight", 0);
}

static uint64_t list_params(const struct wlist *l)
{
	uint64_t n = 0;
	for (int k = 0; k < l->n; k++)
		n += l->t[k].shape[0] * (l->t[k].ndim > 1 ? l->t[k].shape[1] : 1);
	return n;
}

static const struct model_tensor *find_tensor(const struct model *m, const char *name);

struct find_ctx {
	const char *name;
	const struct model_tensor *hit;
};

static int find_cb(void *arg, const struct model_tensor *t)
{
	struct find_ctx *c = arg;
	if (!strcmp(t->name, c->name)) {
		c->hit = t;
		return 1;
	}
	return 0;
}

static const struct model_tensor *find_tensor(const struct model *m, const char *name)
{
	struct find_ctx c = { name, NULL };
	model_for_each_tensor(m, find_cb, &c);
	return c.hit;
}

/* The mapping in /proc/self/maps that holds p, its file name in path. */
static int mapping_of(const void *p, char *path, size_t size)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[1024];
	int found = 0;

	path[0] = '\0';
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx", &lo, &hi) != 2)
			continue;
		if ((uintptr_t)p >= lo && (uintptr_t)p < hi) {
			char *slash = strchr(line, '/');
			snprintf(path, size, "%s", slash ? slash : "");
			path[strcspn(path, "\n")] = '\0';
			found = 1;
			break;
		}
	}
	if (f)
		fclose(f);
	return found;
}

/* ---- config ---- */

TEST(config_llama3)
{
	struct model_desc d;

	CHECK_INT(model_desc_load(MODELS "/llama-3.2-1b-shape", &d), 0);
	CHECK_INT(d.arch, MODEL_ARCH_LLAMA);
	CHECK_STR(d.architecture, "LlamaForCausalLM");
	CHECK_INT(d.hidden_size, 2048);
	CHECK_INT(d.num_layers, 16);
	CHECK_INT(d.num_heads, 32);
	CHECK_INT(d.num_kv_heads, 8);
	CHECK_INT(d.head_dim, 64);
	CHECK_INT(d.intermediate_size, 8192);
	CHECK_INT(d.vocab_size, 128256);
	CHECK_INT(d.max_position_embeddings, 131072);
	CHECK(d.rope.theta == 500000.0);
	CHECK_INT(d.rope.type, MODEL_ROPE_LLAMA3);
	CHECK(d.rope.factor == 32 && d.rope.low_freq_factor == 1 && d.rope.high_freq_factor == 4);
	CHECK_INT(d.rope.original_max_position_embeddings, 8192);
	CHECK(d.rms_norm_eps == 1e-5);
	CHECK_INT(d.tie_word_embeddings, 1);
	CHECK_INT(d.dtype, DTYPE_BF16);
	CHECK_INT(d.bos_token_id, 128000);
	CHECK_INT(d.n_eos, 3);
	CHECK(d.eos_token_ids[0] == 128001 && d.eos_token_ids[2] == 128009);
	CHECK(!d.qkv_bias && !d.qk_norm);
	CHECK(model_desc_params(&d) == 1235814400ull);	/* Llama-3.2-1B's published count */
}

TEST(config_qwen_families)
{
	struct model_desc d;

	CHECK_INT(model_desc_load(MODELS "/qwen2.5-0.5b-shape", &d), 0);
	CHECK_INT(d.arch, MODEL_ARCH_QWEN2);
	CHECK_INT(d.head_dim, 64);		/* 896 / 14: implicit */
	CHECK_INT(d.qkv_bias, 1);
	CHECK_INT(d.o_bias, 0);
	CHECK_INT(d.qk_norm, 0);
	CHECK(model_desc_params(&d) == 494032768ull);
	CHECK_INT(model_desc_load(MODELS "/qwen3-0.6b-shape", &d), 0);
	CHECK_INT(d.arch, MODEL_ARCH_QWEN3);
	CHECK_INT(d.head_dim, 128);		/* explicit; 16 * 128 != 1024 */
	CHECK_INT(d.qk_norm, 1);
	CHECK_INT(d.qkv_bias, 0);
	CHECK(model_desc_params(&d) == 596049920ull);
	CHECK_INT(model_desc_load(MODELS "/tinyllama-1.1b-shape", &d), 0);
	CHECK_INT(d.tie_word_embeddings, 0);
	CHECK_INT(d.head_dim, 64);
	CHECK(model_desc_params(&d) == 1100048384ull);
}

#define BAD_CONFIG(json, want)                                                       \
	do {                                                                         \
		struct model_desc d_;                                                \
		const char *j_ = json;                                               \
		CHECK_MSG(model_desc_parse(j_, strlen(j_), NULL, 0, &d_) < 0,        \
			  "accepted %s", j_);                                        \
		CHECK_MSG(strstr(err_msg(), want), "'%s' lacks '%s'", err_msg(), want); \
	} while (0)

#define BASE "\"hidden_size\":64,\"num_hidden_layers\":2,\"num_attention_heads\":8," \
	     "\"intermediate_size\":128,\"vocab_size\":100"

TEST(config_errors)
{
	BAD_CONFIG("{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}",
		   "architecture GPT2LMHeadModel is not supported");
	BAD_CONFIG("{" BASE "}", "no \"architectures\"");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",", "not valid JSON");
	BAD_CONFIG("[]", "not a JSON object");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"],\"num_hidden_layers\":2,"
		   "\"num_attention_heads\":8,\"intermediate_size\":128,\"vocab_size\":100}",
		   "\"hidden_size\" is missing");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"num_key_value_heads\":3}",
		   "num_key_value_heads 3 does not divide num_attention_heads 8");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":-5,"
		   "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"intermediate_size\":128,"
		   "\"vocab_size\":100}", "\"hidden_size\" = -5 is out of range");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":60,"
		   "\"num_hidden_layers\":2,\"num_attention_heads\":8,\"intermediate_size\":128,"
		   "\"vocab_size\":100}", "does not divide hidden_size");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
		   ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}",
		   "rope_scaling type 'yarn' is not supported");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
		   ",\"quantization_config\":{\"bits\":4}}", "quantized");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"hidden_act\":\"gelu\"}",
		   "hidden_act 'gelu'");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"torch_dtype\":\"int8\"}",
		   "torch_dtype 'int8'");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"eos_token_id\":\"x\"}",
		   "eos_token_id");
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64,"
		   "\"num_hidden_layers\":1e9,\"num_attention_heads\":8,\"intermediate_size\":128,"
		   "\"vocab_size\":100}", "out of range");
	/* Python's json keeps the last of duplicate keys, cJSON the first:
	 * refuse rather than disagree with the reference. */
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE ",\"vocab_size\":7}",
		   "\"vocab_size\" appears twice");
}

/* transformers 5 writes RoPE settings (theta included) under
 * "rope_parameters"; they must be read, not silently dropped. */
TEST(config_rope_parameters)
{
	struct model_desc d;
	const char *cfg = "{\"architectures\":[\"LlamaForCausalLM\"]," BASE
		",\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,"
		"\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
		"\"original_max_position_embeddings\":8192}}";
	CHECK_INT(model_desc_parse(cfg, strlen(cfg), NULL, 0, &d), 0);
	CHECK(d.rope.theta == 500000.0);
	CHECK_INT(d.rope.type, MODEL_ROPE_LLAMA3);
	CHECK(d.rope.factor == 8.0);
	const char *plain = "{\"architectures\":[\"Qwen3ForCausalLM\"]," BASE
		",\"rope_parameters\":{\"rope_theta\":1000000.0}}";
	CHECK_INT(model_desc_parse(plain, strlen(plain), NULL, 0, &d), 0);
	CHECK(d.rope.theta == 1000000.0);
	CHECK_INT(d.rope.type, MODEL_ROPE_DEFAULT);
	BAD_CONFIG("{\"architectures\":[\"LlamaForCausalLM\"]," BASE
		   ",\"rope_parameters\":{\"rope_type\":\"yarn\",\"factor\":4}}",
		   "rope_parameters type 'yarn' is not supported");
}

TEST(config_generation_config)
{
	struct model_desc d;
	const char *cfg = "{\"architectures\":[\"MistralForCausalLM\"]," BASE
			  ",\"eos_token_id\":2,\"bos_token_id\":1,\"sliding_window\":4096,"
			  "\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}";
	const char *gen = "{\"bos_token_id\":5,\"eos_token_id\":[2,7],\"temperature\":0.6,"
			  "\"top_p\":0.9,\"top_k\":20,\"do_sample\":true}";

	CHECK_INT(model_desc_parse(cfg, strlen(cfg), gen, strlen(gen), &d), 0);
	CHECK_INT(d.arch, MODEL_ARCH_MISTRAL);
	CHECK_INT(d.sliding_window, 4096);
	CHECK_INT(d.rope.type, MODEL_ROPE_LINEAR);
	CHECK(d.rope.factor == 2.0);
	CHECK_INT(d.bos_token_id, 5);
	CHECK_INT(d.n_eos, 2);
	CHECK(d.eos_token_ids[0] == 2 && d.eos_token_ids[1] == 7);
	CHECK(d.gen.temperature == 0.6 && d.gen.top_p == 0.9);
	CHECK_INT(d.gen.top_k, 20);
	CHECK_INT(d.gen.do_sample, 1);
	CHECK(isnan(d.gen.repetition_penalty));
	CHECK_INT(d.tie_word_embeddings, 0);	/* transformers' default for Mistral */
	CHECK(model_desc_parse(cfg, strlen(cfg), "{", 1, &d) < 0);
	CHECK(strstr(err_msg(), "generation_config.json"));
}

/* ---- loading ---- */

TEST(stories260k_real_weights)
{
	struct model *m;
	struct model_load_opts o = { 0 };
	char path[512];

	CHECK_INT(model_load(MODELS "/stories260K", &o, &m), 0);
	CHECK_INT(m->format, MODEL_LOAD_SAFETENSORS);
	CHECK_INT(m->n_files, 1);
	CHECK(m->n_params == 260032);		/* 512*64 + 5*45440 + 64 */
	CHECK(m->weight_bytes == 260032 * 4);
	CHECK_INT(m->weights_dtype, DTYPE_F32);
	CHECK_INT(m->w.n_layers, 5);
	CHECK(m->w.lm_head.data == m->w.embed.data);	/* tied */
	CHECK_INT(m->w.embed.shape[0], 512);
	CHECK_INT(m->w.embed.shape[1], 64);
	for (int i = 0; i < 5; i++) {
		const struct model_layer *l = &m->w.layers[i];
		CHECK(l->wq.shape[0] == 64 && l->wq.shape[1] == 64);
		CHECK(l->wk.shape[0] == 32 && l->wk.shape[1] == 64);
		CHECK(l->wv.shape[0] == 32 && l->wv.shape[1] == 64);
		CHECK(l->wo.shape[0] == 64 && l->wo.shape[1] == 64);
		CHECK(l->w_gate.shape[0] == 172 && l->w_up.shape[0] == 172);
		CHECK(l->w_down.shape[0] == 64 && l->w_down.shape[1] == 172);
		CHECK(l->attn_norm.ndim == 1 && l->ffn_norm.shape[0] == 64);
		CHECK(!model_tensor_present(&l->bq) && !model_tensor_present(&l->q_norm));
		CHECK(l->wq.data && l->w_down.data && l->wq.dtype == DTYPE_F32);
	}
	/* Mapped from the file, not copied. */
	CHECK(mapping_of(m->w.layers[3].w_up.data, path, sizeof(path)));
	CHECK_MSG(strstr(path, "stories260K/model.safetensors"), "mapped from '%.200s'", path);
	CHECK(m->tokenizer_path && strstr(m->tokenizer_path, "tokenizer.json"));
	CHECK(m->has_chat_template && !m->chat_template_path);
	CHECK(m->generation_config_path != NULL);
	/* Row access widens to F32: the same bytes for an F32 tensor. */
	float row[64];
	model_tensor_row_f32(&m->w.embed, 7, row);
	CHECK(!memcmp(row, (const float *)m->w.embed.data + 7 * 64, sizeof(row)));
	model_free(m);
}

static const struct shape tiny_llama = { "LlamaForCausalLM", 32, 2, 4, 2, 8, 48, 50, 0 };
static const struct shape tiny_qwen2 = { "Qwen2ForCausalLM", 32, 2, 4, 2, 8, 48, 50, 1 };
static const struct shape tiny_qwen3 = { "Qwen3ForCausalLM", 32, 2, 4, 2, 16, 48, 50, 1 };
static const struct shape tiny_mistral = { "MistralForCausalLM", 32, 2, 4, 4, 8, 48, 50, 0 };

/* Write dir/config.json and dir/model.safetensors for s in dtype dt. */
static const char *make_model(const char *name, const struct shape *s, const char *dt,
			      struct wlist *l)
{
	static char dir[512];
	snprintf(dir, sizeof(dir), "%s", tmp_path("%s", name));
	write_config(dir, s, NULL);
	hf_tensors(l, s, dt);
	write_checkpoint(tmp_path("%s/model.safetensors", name), l);
	return dir;
}

static struct wlist wl;

static void check_values(const struct model *m, const struct wlist *l, int widened)
{
	for (int k = 0; k < l->n; k++) {
		const struct model_tensor *t = find_tensor(m, l->t[k].name);
		CHECK_MSG(t, "tensor %s not bound", l->t[k].name);
		CHECK(t->numel == l->t[k].shape[0] * (l->t[k].ndim > 1 ? l->t[k].shape[1] : 1));
		if (widened)
			CHECK_INT(t->dtype, DTYPE_F32);
		float v;
		for (uint64_t i = 0; i < t->numel; i += 1 + t->numel / 97) {
			dtype_to_f32(&v, (const char *)t->data + i * dtype_size(t->dtype), t->dtype, 1);
			CHECK_MSG(v == value_of(k, i), "%s[%llu] = %g, expected %g", t->name,
				  (unsigned long long)i, v, value_of(k, i));
		}
	}
}

TEST(every_architecture_and_dtype)
{
	const struct shape *shapes[] = { &tiny_llama, &tiny_qwen2, &tiny_qwen3, &tiny_mistral };
	const char *dtypes[] = { "F32", "F16", "BF16" };

	for (size_t a = 0; a < ARRAY_SIZE(shapes); a++) {
		for (size_t t = 0; t < ARRAY_SIZE(dtypes); t++) {
			char name[64];
			struct model *m;
			struct model_load_opts o = { 0 };
			snprintf(name, sizeof(name), "arch%zu-%s", a, dtypes[t]);
			const char *dir = make_model(name, shapes[a], dtypes[t], &wl);
			CHECK_MSG(model_load(dir, &o, &m) == 0, "%s: %s", name, err_msg());
			CHECK(m->n_params == list_params(&wl));
			CHECK(m->n_params == model_desc_params(&m->desc));
			CHECK_INT(m->weights_dtype, dtype_from_name(dtypes[t]));
			CHECK(m->weight_bytes == m->n_params * esize(dtypes[t]));
			check_values(m, &wl, 0);
			if (shapes[a] == &tiny_qwen2)
				CHECK(model_tensor_present(&m->w.layers[1].bk) &&
				      !model_tensor_present(&m->w.layers[1].bo));
			if (shapes[a] == &tiny_qwen3)
				CHECK(m->w.layers[0].q_norm.shape[0] == 16 &&
				      m->w.layers[0].wq.shape[0] == 64);
			if (!shapes[a]->tie)
				CHECK(m->w.lm_head.data != m->w.embed.data && m->w.lm_head.data);
			model_free(m);

			o.flags = MODEL_LOAD_F32;
			CHECK_MSG(model_load(dir, &o, &m) == 0, "%s: %s", name, err_msg());
			CHECK_INT(m->weights_dtype, DTYPE_F32);
			CHECK(m->weight_bytes == m->n_params * 4);
			check_values(m, &wl, 1);
			model_free(m);
		}
	}
}

#define LOAD_FAILS(dir, want)                                                          \
	do {                                                                           \
		struct model *m_;                                                      \
		CHECK_MSG(model_load(dir, NULL, &m_) < 0, "loaded %.200s", dir);        \
		CHECK_MSG(strstr(err_msg(), want), "'%s' lacks '%s'", err_msg(), want); \
	} while (0)

TEST(bad_checkpoints)
{
	const char *dir;

	dir = make_model("missing", &tiny_llama, "F32", &wl);
	wl.t[5] = wl.t[--wl.n];		/* drop layer 0's o_proj */
	write_checkpoint(tmp_path("missing/model.safetensors"), &wl);
	LOAD_FAILS(dir, "tensor model.layers.0.self_attn.o_proj.weight is missing");

	dir = make_model("shape", &tiny_llama, "F32", &wl);
	wl.t[3].shape[0] = 8;		/* k_proj [8, 32], not [16, 32] */
	write_checkpoint(tmp_path("shape/model.safetensors"), &wl);
	LOAD_FAILS(dir, "model.layers.0.self_attn.k_proj.weight has shape [8, 32], but "
			"config.json implies [16, 32]");

	dir = make_model("dtype", &tiny_llama, "F32", &wl);
	wl.t[2].dtype = "I32";
	write_checkpoint(tmp_path("dtype/model.safetensors"), &wl);
	LOAD_FAILS(dir, "has dtype I32");

	dir = make_model("noweights", &tiny_llama, "F32", &wl);
	unlink(tmp_path("noweights/model.safetensors"));
	LOAD_FAILS(dir, "no .safetensors weights");

	dir = make_model("noconfig", &tiny_llama, "F32", &wl);
	unlink(tmp_path("noconfig/config.json"));
	LOAD_FAILS(dir, "no config.json");

	/* Truncated mid-data. */
	dir = make_model("trunc", &tiny_llama, "F32", &wl);
	CHECK_INT(truncate(tmp_path("trunc/model.safetensors"), 5000), 0);
	LOAD_FAILS(dir, "out of range");
}

TEST(sharded_and_single_file_sources)
{
	struct model *m;
	struct wlist a, b;
	const char *dir = make_model("shards", &tiny_qwen2, "BF16", &wl);
	struct strbuf idx = STRBUF_INIT;

	unlink(tmp_path("shards/model.safetensors"));
	a.n = b.n = 0;
	for (int k = 0; k < wl.n; k++) {
		if (k < wl.n / 2)
			a.t[a.n++] = wl.t[k];
		else
			b.t[b.n++] = wl.t[k];
	}
	write_checkpoint(tmp_path("shards/model-00001-of-00002.safetensors"), &a);
	write_checkpoint(tmp_path("shards/model-00002-of-00002.safetensors"), &b);
	sb_adds(&idx, "{\"metadata\":{\"total_size\":0},\"weight_map\":{");
	for (int k = 0; k < wl.n; k++)
		sb_addf(&idx, "%s\"%s\":\"model-0000%d-of-00002.safetensors\"", k ? "," : "",
			wl.t[k].name, k < wl.n / 2 ? 1 : 2);
	sb_adds(&idx, "}}");
	write_text(tmp_path("shards/model.safetensors.index.json"), idx.buf);
	CHECK_MSG(model_load(dir, NULL, &m) == 0, "%s", err_msg());
	CHECK_INT(m->n_files, 2);
	CHECK(m->n_params == list_params(&wl));
	model_free(m);
	/* The index file itself names the model. */
	CHECK_INT(model_load(tmp_path("shards/model.safetensors.index.json"), NULL, &m), 0);
	CHECK_INT(m->n_files, 2);
	model_free(m);
	/* A missing shard is named. */
	unlink(tmp_path("shards/model-00002-of-00002.safetensors"));
	LOAD_FAILS(dir, "model-00002-of-00002.safetensors");
	sb_release(&idx);

	/* One .safetensors file given directly; config.json from its folder. */
	make_model("single", &tiny_llama, "F16", &wl);
	CHECK_INT(model_load(tmp_path("single/model.safetensors"), NULL, &m), 0);
	CHECK(strstr(m->src.weights, "single/model.safetensors"));
	CHECK_INT(m->weights_dtype, DTYPE_F16);
	model_free(m);
	/* config.json given directly. */
	CHECK_INT(model_load(tmp_path("single/config.json"), NULL, &m), 0);
	model_free(m);
}

TEST(meta_only_load_maps_nothing)
{
	struct model *m;
	struct model_load_opts o = { .flags = MODEL_LOAD_META };

	CHECK_INT(model_load(MODELS "/stories260K", &o, &m), 0);
	CHECK(m->w.embed.data == NULL && m->w.layers[0].wq.data == NULL);
	CHECK(m->n_params == 260032);
	model_free(m);
	o.format = MODEL_LOAD_DUMMY;
	CHECK_INT(model_load(MODELS "/llama-3.2-1b-shape", &o, &m), 0);
	CHECK(m->n_params == 1235814400ull);
	CHECK(m->weight_bytes == 1235814400ull * 4);
	CHECK(m->w.embed.data == NULL);
	model_free(m);
}

TEST(dummy_weights)
{
	struct model *a, *b, *c;
	struct model_load_opts o = { .format = MODEL_LOAD_DUMMY, .seed = 42 };

	/* No weight files are needed. */
	make_model("dummy", &tiny_qwen3, "F32", &wl);
	unlink(tmp_path("dummy/model.safetensors"));
	CHECK_INT(model_load(tmp_path("dummy"), &o, &a), 0);
	CHECK_INT(model_load(tmp_path("dummy"), &o, &b), 0);
	o.seed = 43;
	CHECK_INT(model_load(tmp_path("dummy"), &o, &c), 0);
	CHECK_INT(a->format, MODEL_LOAD_DUMMY);
	CHECK(a->n_params == list_params(&wl));
	CHECK(!memcmp(a->w.layers[1].wk.data, b->w.layers[1].wk.data, a->w.layers[1].wk.nbytes));
	CHECK(memcmp(a->w.layers[1].wk.data, c->w.layers[1].wk.data, a->w.layers[1].wk.nbytes));
	/* Norms are 1, matrices uniform within +-1/sqrt(fan_in), not constant. */
	const float *norm = a->w.layers[0].q_norm.data, *wo = a->w.layers[0].wo.data;
	for (int i = 0; i < 16; i++)
		CHECK(norm[i] == 1.0f);
	double bound = 1 / sqrt(64.0), sum = 0, sq = 0;	/* o_proj fan_in = 4 heads * 16 */
	for (uint64_t i = 0; i < a->w.layers[0].wo.numel; i++) {
		CHECK(isfinite(wo[i]) && fabs(wo[i]) <= bound);
		sum += wo[i];
		sq += wo[i] * wo[i];
	}
	double n = (double)a->w.layers[0].wo.numel, var = sq / n - (sum / n) * (sum / n);
	CHECK_MSG(fabs(var - bound * bound / 3) < 0.2 * bound * bound / 3, "variance %g", var);
	model_free(a);
	model_free(b);
	model_free(c);

	/* BF16 dummies hold the BF16 rounding of the same values. */
	o.seed = 42;
	o.dummy_dtype = DTYPE_BF16;
	CHECK_INT(model_load(tmp_path("dummy"), &o, &b), 0);
	o.dummy_dtype = DTYPE_F32;
	CHECK_INT(model_load(tmp_path("dummy"), &o, &a), 0);
	CHECK_INT(b->w.layers[0].wq.dtype, DTYPE_BF16);
	CHECK(b->weight_bytes == b->n_params * 2);
	const uint16_t *h = b->w.layers[0].wq.data;
	const float *f = a->w.layers[0].wq.data;
	for (int i = 0; i < 100; i++)
		CHECK(fabsf(bf16_to_f32(h[i]) - f[i]) <= fabsf(f[i]) / 128);
	model_free(a);
	model_free(b);
}

TEST(resolver)
{
	struct model_source src;

	CHECK_INT(model_resolve(MODELS "/stories260K", NULL, 1, &src), 0);
	CHECK(src.dir[0] == '/' && strstr(src.dir, "stories260K") && !src.weights && !src.repo);
	model_source_free(&src);
	CHECK_INT(model_resolve(MODELS "/stories260K/model.safetensors", NULL, 1, &src), 0);
	CHECK(strstr(src.weights, "stories260K/model.safetensors"));
	model_source_free(&src);
	CHECK(model_resolve(MODELS "/stories260K/tok512.model", NULL, 1, &src) == -EINVAL);
	CHECK(model_resolve("no/such/path", NULL, 1, &src) == -ENOENT);
	CHECK(strstr(err_msg(), "not a hub id"));
	CHECK(model_resolve("", NULL, 1, &src) < 0);
	/* A hub id, offline, with an empty cache: a clear error. */
	setenv("HF_HUB_OFFLINE", "1", 1);
	setenv("HF_HUB_CACHE", tmp_path("empty-cache"), 1);
	CHECK(model_resolve("some-org/some-model", NULL, 1, &src) == -ENOENT);
	CHECK_MSG(strstr(err_msg(), "some-org/some-model") && strstr(err_msg(), "HF_HUB_OFFLINE") &&
		  strstr(err_msg(), "not in the hub cache"), "%s", err_msg());
	unsetenv("HF_HUB_OFFLINE");
	unsetenv("HF_HUB_CACHE");
	CHECK(hub_is_repo_id("Qwen/Qwen3-0.6B") && hub_is_repo_id("a/b.c_d-e"));
	CHECK(!hub_is_repo_id("Qwen") && !hub_is_repo_id("a/b/c") && !hub_is_repo_id("a--b/c") &&
	      !hub_is_repo_id("../x") && !hub_is_repo_id("a/..") && !hub_is_repo_id("/a/b") &&
	      !hub_is_repo_id("a/b c"));
}

/* ---- memory ---- */

static long status_kb(const char *field)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long v = -1;
	size_t n = strlen(field);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, n) && line[n] == ':')
			v = atol(line + n + 1);
	if (f)
		fclose(f);
	return v;
}

struct mem_result {
	long base_kb, hwm_kb;
	double kv_bytes;	/* the engine's KV pool (with_engine) */
	unsigned long long weight_bytes;
	int ok;
	char why[200];
};

static int touch_cb(void *arg, const struct model_tensor *t)
{
	volatile unsigned char *sum = arg;
	long page = sysconf(_SC_PAGESIZE);
	for (uint64_t i = 0; i < t->nbytes; i += (uint64_t)page / 2)
		*sum += ((const unsigned char *)t->data)[i];
	*sum += ((const unsigned char *)t->data)[t->nbytes - 1];
	return 0;
}

/* A few tokens of a 32-token prompt through an engine on m (2 threads);
 * its KV pool's bytes into r. */
static void serve_a_request(const struct model *m, struct mem_result *r)
{
	struct engine_opts o;
	struct engine *e;
	struct collect c;
	int32_t prompt[32];

	engine_opts_init(&o);
	o.threads = 2;
	o.kv_cache_tokens = 256;
	if (engine_new(m, &o, &e) < 0) {
		snprintf(r->why, sizeof(r->why), "engine: %s", err_msg());
		return;
	}
	for (int i = 0; i < 32; i++)
		prompt[i] = (i * 37 + 5) % m->desc.vocab_size;
	collect_init(&c);
	struct engine_request q = { .prompt = prompt, .n_prompt = 32, .on_output = on_output,
				    .arg = &c };
	sampling_params_init(&q.params);
	q.params.max_tokens = 4;
	q.params.ignore_eos = 1;
	if (engine_submit(e, &q, NULL) < 0 || collect_wait(&c, 30000) < 0 || c.n != 4)
		snprintf(r->why, sizeof(r->why), "engine: no 4 tokens (%s)", err_msg());
	struct engine_stats st;
	engine_stats(e, &st);
	r->kv_bytes = (double)st.kv_blocks_total * st.block_size * 2.0 * m->desc.num_layers *
		      m->desc.num_kv_heads * m->desc.head_dim * sizeof(float);
	engine_free(e);
}

/* In a child (so its peak is its own): load, read every weight page (and
 * with_engine, serve a request), report VmRSS before and VmHWM after. */
static void measure(const char *dir, const struct model_load_opts *lo, int with_engine,
		    struct mem_result *r)
{
	int fds[2];
	pid_t pid;

	memset(r, 0, sizeof(*r));
	if (pipe(fds) < 0)
		abort();
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct model *m;
		unsigned char sum = 0;
		int fd = open("/proc/self/clear_refs", O_WRONLY);
		if (fd >= 0) {	/* reset VmHWM to the current RSS */
			if (write(fd, "5", 1) < 0)
				r->why[0] = '\0';
			close(fd);
		}
		r->base_kb = status_kb("VmRSS");
		if (model_load(dir, lo, &m) < 0) {
			snprintf(r->why, sizeof(r->why), "load: %s", err_msg());
		} else {
			model_for_each_tensor(m, touch_cb, &sum);
			if (with_engine)
				serve_a_request(m, r);
			r->hwm_kb = status_kb("VmHWM");
			r->weight_bytes = m->weight_bytes;
			char path[512];
			r->ok = mapping_of(m->w.layers[0].wq.data, path, sizeof(path)) ? 1 : 2;
			if (!(lo->flags & MODEL_LOAD_F32) && !lo->quantize &&
			    lo->format != MODEL_LOAD_DUMMY && !strstr(path, "model.safetensors"))
				snprintf(r->why, sizeof(r->why), "weights not mapped from the file "
					 "(in '%.120s')", path);
			model_free(m);
		}
		if (write(fds[1], r, sizeof(*r)) != (ssize_t)sizeof(*r))
			_exit(1);
		_exit(0);
	}
	close(fds[1]);
	if (read(fds[0], r, sizeof(*r)) != (ssize_t)sizeof(*r))
		snprintf(r->why, sizeof(r->why), "child died");
	close(fds[0]);
	waitpid(pid, NULL, 0);
}

static const struct shape big = { "LlamaForCausalLM", 512, 8, 8, 8, 64, 1536, 8192, 1 };

static void check_peak(const char *what, const struct mem_result *r)
{
	CHECK_MSG(!r->why[0], "%s", r->why);
	double weights_kb = (double)r->weight_bytes / 1024, used = (double)(r->hwm_kb - r->base_kb);
	fprintf(stderr, "%s: weights %.1f MiB, peak RSS growth %.1f MiB (%.3f x), "
		"baseline %.1f MiB\n", what, weights_kb / 1024, used / 1024, used / weights_kb,
		(double)r->base_kb / 1024);
	CHECK_MSG(used <= weights_kb * 1.05, "%s: peak grew by %.0f kB for %.0f kB of weights",
		  what, used, weights_kb);
	CHECK_MSG(used >= weights_kb * 0.9, "%s: weights not all read (%.0f kB of %.0f kB)",
		  what, used, weights_kb);
}

TEST(peak_rss_stays_under_weights_plus_5_percent)
{
	struct mem_result r;

	make_model("big", &big, "F32", &wl);	/* 31.5M parameters: 126 MB */
	struct model_load_opts lo = { 0 };
	measure(tmp_path("big"), &lo, 0, &r);
	check_peak("F32 checkpoint, mapped", &r);
	CHECK(r.weight_bytes > 100000000ull);
	/* BF16 widened to F32: the copies are the weights; each source
	 * tensor is dropped once converted. */
	make_model("big16", &big, "BF16", &wl);
	lo.flags = MODEL_LOAD_F32;
	measure(tmp_path("big16"), &lo, 0, &r);
	check_peak("BF16 checkpoint widened to F32", &r);
	/* BF16 as the engine's CPU backend computes with it: mapped, 2 bytes
	 * a weight, and serving adds the KV pool, activations, logits and thread
	 * stacks (measured ~15 MB; bound 32 MB),
	 * never a widened copy (which would double the growth) */
	unsigned flags;
	struct engine_opts eo;
	engine_opts_init(&eo);
	CHECK(engine_weight_load_flags(&eo, &flags) == 0);
	CHECK_INT(flags & MODEL_LOAD_F32, 0);
	lo.flags = flags;
	measure(tmp_path("big16"), &lo, 1, &r);
	CHECK_MSG(!r.why[0], "%s", r.why);
	CHECK(r.weight_bytes == list_params(&wl) * 2);
	double used = (double)(r.hwm_kb - r.base_kb) * 1024;
	fprintf(stderr, "BF16 checkpoint served by the engine: weights %.1f MB, KV pool %.1f MB, "
		"peak RSS growth %.1f MB\n", (double)r.weight_bytes / 1e6, r.kv_bytes / 1e6,
		used / 1e6);
	CHECK_MSG(used <= (double)r.weight_bytes * 1.05 + r.kv_bytes + 32e6,
		  "BF16 served: peak grew by %.1f MB for %.1f MB of weights + %.1f MB of KV",
		  used / 1e6, (double)r.weight_bytes / 1e6, r.kv_bytes / 1e6);
	unlink(tmp_path("big/model.safetensors"));
	unlink(tmp_path("big16/model.safetensors"));
}

/* Bytes of s's tensors with the projections (cols % 32 == 0) in blocks of
 * bb bytes (Q8_0: 34, Q4_0: 18) and the rest (embedding, norms) in a dtype
 * of es bytes. */
static uint64_t quant_bytes(const struct shape *s, int es, uint64_t bb)
{
	uint64_t h = (uint64_t)s->hidden, q = (uint64_t)s->heads * (uint64_t)s->head_dim;
	uint64_t kv = (uint64_t)s->kv * (uint64_t)s->head_dim, ff = (uint64_t)s->inter;
	uint64_t proj = h * q * 2 + h * kv * 2 + h * ff * 3;	/* q, o; k, v; gate, up, down */
	uint64_t other = (uint64_t)s->vocab * h + (uint64_t)s->layers * 2 * h + h;

	return (uint64_t)s->layers * proj / 32 * bb + other * (uint64_t)es +
	       (s->tie ? 0 : (uint64_t)s->vocab * h / 32 * bb);
}

/*
 * --quantize q8_0 / q4_0: a BF16 dummy model quantized peaks at its
 * quantized weights (8.5 or 4.5 bits a projection weight; the embedding
 * stays BF16), ~0.59 (Q8_0) or ~0.37 (Q4_0) of the BF16 one's peak for this
 * shape (an eighth of its parameters are the embedding), and serving adds
 * what it does for BF16; a BF16 checkpoint quantized peaks at the
 * quantized weights plus a tensor's worth of source pages, never a widened
 * copy.  Dummy quantized weights are the F32 dummy weights quantized
 * (generated a chunk of rows at a time), and a metadata-only load reports
 * the quantized sizes (stories260K's: dyn model info's figures,
 * hand-checked: 260032 params, 171520 of them in 30 matrices quantized,
 * the rest F32).
 */
static void quantized_memory(enum dtype qt, uint64_t bb, uint64_t stories_bytes)
{
	struct mem_result r16, rq;
	struct model_load_opts lo = { .format = MODEL_LOAD_DUMMY, .dummy_dtype = DTYPE_BF16 };

	make_model("bigq", &big, "BF16", &wl);
	measure(tmp_path("bigq"), &lo, 0, &r16);
	CHECK_MSG(!r16.why[0], "%s", r16.why);
	lo.quantize = qt;
	measure(tmp_path("bigq"), &lo, 0, &rq);
	CHECK_MSG(!rq.why[0], "%s", rq.why);
	CHECK(r16.weight_bytes == list_params(&wl) * 2);
	CHECK(rq.weight_bytes == quant_bytes(&big, 2, bb));
	double g16 = (double)(r16.hwm_kb - r16.base_kb), gq = (double)(rq.hwm_kb - rq.base_kb);
	double wr = (double)rq.weight_bytes / (double)r16.weight_bytes;
	fprintf(stderr, "dummy: BF16 weights %.1f MB peak +%.1f MB; %s weights %.1f MB "
		"peak +%.1f MB (%.3f x)\n", (double)r16.weight_bytes / 1e6, g16 * 1024 / 1e6,
		dtype_name(qt), (double)rq.weight_bytes / 1e6, gq * 1024 / 1e6, gq / g16);
	CHECK_MSG(gq / g16 > wr - 0.08 && gq / g16 < wr + 0.06, "%s peak %.0f kB, BF16 %.0f kB",
		  dtype_name(qt), gq, g16);
	/* serving adds the KV pool, activations and stacks (see above); the
	 * matrices repacked for the CPU's kernels as the engine loads them
	 * (MODEL_LOAD_PANELS), in place */
	lo.flags = MODEL_LOAD_PANELS;
	measure(tmp_path("bigq"), &lo, 1, &rq);
	CHECK_MSG(!rq.why[0], "%s", rq.why);
	gq = (double)(rq.hwm_kb - rq.base_kb) * 1024;
	fprintf(stderr, "dummy %s served: peak +%.1f MB (KV pool %.1f MB)\n", dtype_name(qt),
		gq / 1e6, rq.kv_bytes / 1e6);
	CHECK_MSG(gq <= (double)rq.weight_bytes * 1.05 + rq.kv_bytes + 32e6,
		  "%s served: peak grew by %.1f MB", dtype_name(qt), gq / 1e6);
	/* quantizing the checkpoint (and repacking): the quantized weights,
	 * plus at most the source pages of the tensor being quantized (1.5 MB
	 * here) */
	lo.format = MODEL_LOAD_SAFETENSORS;
	measure(tmp_path("bigq"), &lo, 0, &rq);
	CHECK_MSG(!rq.why[0], "%s", rq.why);
	gq = (double)(rq.hwm_kb - rq.base_kb) * 1024;
	fprintf(stderr, "BF16 checkpoint quantized: %s weights %.1f MB, peak +%.1f MB\n",
		dtype_name(qt), (double)rq.weight_bytes / 1e6, gq / 1e6);
	CHECK(rq.weight_bytes == quant_bytes(&big, 2, bb));
	CHECK_MSG(gq <= (double)rq.weight_bytes * 1.05 + 2e6 && gq >= rq.weight_bytes * 0.9,
		  "peak grew by %.1f MB for %.1f MB of %s weights", gq / 1e6,
		  (double)rq.weight_bytes / 1e6, dtype_name(qt));
	unlink(tmp_path("bigq/model.safetensors"));

	/* dummy quantized = the F32 dummy quantized (several generator
	 * chunks), and repacked = that repacked */
	struct model *f, *q, *qp;
	lo.flags = 0;
	lo.format = MODEL_LOAD_DUMMY;
	lo.dummy_dtype = DTYPE_F32;
	lo.quantize = DTYPE_UNKNOWN;
	CHECK_INT(model_load(tmp_path("bigq"), &lo, &f), 0);
	lo.quantize = qt;
	CHECK_INT(model_load(tmp_path("bigq"), &lo, &q), 0);
	const struct model_tensor *tf = &f->w.layers[3].w_down, *tq = &q->w.layers[3].w_down;
	CHECK_INT(tq->dtype, qt);
	CHECK(tq->nbytes == tf->numel / 32 * bb);
	unsigned char *want = malloc((size_t)tq->nbytes);
	dtype_quantize(want, tf->data, qt, (size_t)tf->numel);
	CHECK(!memcmp(want, tq->data, (size_t)tq->nbytes));
	lo.flags = MODEL_LOAD_PANELS;
	CHECK_INT(model_load(tmp_path("bigq"), &lo, &qp), 0);
	const struct model_tensor *tp = &qp->w.layers[3].w_down;
	CHECK_INT(tp->dtype, dtype_panel_of(qt));
	CHECK(tp->nbytes == tq->nbytes);
	dtype_repack(want, tq->data, tp->dtype, (size_t)tq->shape[0], (size_t)tq->shape[1]);
	CHECK(!memcmp(want, tp->data, (size_t)tp->nbytes));
	CHECK_INT(qp->w.embed.dtype, DTYPE_F32);	/* gathered by rows: as it was */
	model_free(qp);
	lo.flags = 0;
	free(want);
	CHECK_INT(q->w.embed.dtype, DTYPE_F32);
	CHECK(!memcmp(q->w.embed.data, f->w.embed.data, (size_t)f->w.embed.nbytes));
	CHECK_INT(q->quantized, qt);
	CHECK_INT(q->n_quantized, 7 * big.layers);
	CHECK_INT(q->n_unquantized, 0);
	model_free(f);
	model_free(q);

	/* metadata only: the sizes a full load would have */
	lo.flags = MODEL_LOAD_META;
	lo.format = MODEL_LOAD_AUTO;
	CHECK_INT(model_load(MODELS "/stories260K", &lo, &q), 0);
	CHECK(q->w.layers[0].wq.data == NULL && q->w.layers[0].wq.dtype == qt);
	CHECK_INT(q->w.layers[0].w_down.dtype, DTYPE_F32);	/* 172 columns */
	CHECK_INT(q->n_quantized, 30);
	CHECK(q->weight_bytes == stories_bytes);
	CHECK(stories_bytes == (260032 - 171520) * 4 + 171520 / 32 * bb);
	model_free(q);
}

TEST(q4_0_quantized_memory)
{
	quantized_memory(DTYPE_Q4_0, 18, 450528);
}

TEST(q8_0_quantized_memory)
{
	struct model_load_opts lo = { .flags = MODEL_LOAD_META };
	struct model *q;

	quantized_memory(DTYPE_Q8_0, 34, 536288);
	lo.quantize = DTYPE_F16;
	CHECK_INT(model_load(MODELS "/stories260K", &lo, &q), -EINVAL);
}

/* ---- GGUF metadata (core/model/gguf.h) ------------------------------------------ */

struct img {
	uint8_t b[1024];
	size_t n;
};

static void put(struct img *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put64(struct img *m, uint64_t v)
{
	put_le64(m->b + m->n, v);
	m->n += 8;
}

static void put32(struct img *m, uint32_t v)
{
	put_le32(m->b + m->n, v);
	m->n += 4;
}

static void key(struct img *m, const char *k, enum gguf_type t)
{
	put64(m, strlen(k));
	put(m, k, strlen(k));
	put32(m, t);
}

TEST(gguf_metadata_types)
{
	struct img m = { .n = 0 };
	struct gguf g;
	struct gguf_str s;
	const struct gguf_kv *arr;
	int64_t v;
	double f;
	float half = 0.5f;
	uint32_t bits;

	put(&m, "GGUF", 4);
	put32(&m, 3);
	put64(&m, 1);		/* tensors */
	put64(&m, 6);		/* metadata */
	key(&m, "i8", GGUF_I8);
	put(&m, "\xfe", 1);
	key(&m, "u64", GGUF_U64);
	put64(&m, 1ull << 40);
	key(&m, "f32", GGUF_F32);
	memcpy(&bits, &half, 4);
	put32(&m, bits);
	key(&m, "s", GGUF_STRING);
	put64(&m, 3);
	put(&m, "abc", 3);
	key(&m, "sarr", GGUF_ARRAY);
	put32(&m, GGUF_STRING);
	put64(&m, 2);
	put64(&m, 1);
	put(&m, "x", 1);
	put64(&m, 2);
	put(&m, "yz", 2);
	key(&m, "iarr", GGUF_ARRAY);
	put32(&m, GGUF_I16);
	put64(&m, 2);
	put(&m, "\xff\xff\x02\x00", 4);
	put64(&m, 1);		/* tensor "t": F16 [3, 2] at 0 */
	put(&m, "t", 1);
	put32(&m, 2);
	put64(&m, 3);
	put64(&m, 2);
	put32(&m, 1);
	put64(&m, 0);
	m.n = (m.n + 31) / 32 * 32 + 12;	/* aligned data: 6 F16 values */
	memset(m.b + m.n - 12, 0x3c, 12);
	CHECK_MSG(gguf_parse(m.b, m.n, "mem.gguf", &g) == 0, "%s", err_msg());
	CHECK_INT(g.version, 3);
	CHECK_INT(gguf_get_int(&g, "i8", &v), 1);
	CHECK_INT(v, -2);
	CHECK_INT(gguf_get_int(&g, "u64", &v), 1);
	CHECK(v == 1ll << 40);
	CHECK_INT(gguf_get_f64(&g, "f32", &f), 1);
	CHECK(f == 0.5);
	CHECK_INT(gguf_get_str(&g, "s", &s), 1);
	CHECK(s.len == 3 && !memcmp(s.s, "abc", 3));
	CHECK_INT(gguf_get_int(&g, "nothere", &v), 0);
	CHECK(gguf_get_int(&g, "s", &v) < 0 && strstr(err_msg(), "mem.gguf: metadata s is a string"));
	CHECK_INT(gguf_get_arr(&g, "sarr", GGUF_STRING, &arr), 1);
	CHECK(arr->n == 2 && gguf_arr_str(arr, 1).len == 2 && !memcmp(gguf_arr_str(arr, 1).s, "yz", 2));
	CHECK_INT(gguf_get_arr(&g, "iarr", GGUF_I32, &arr), 1);
	CHECK(gguf_arr_int(arr, 0) == -1 && gguf_arr_int(arr, 1) == 2);
	CHECK(gguf_get_arr(&g, "iarr", GGUF_STRING, &arr) < 0);
	const struct gguf_tensor *t = gguf_find_tensor(&g, "t");
	CHECK(t && t->dtype == DTYPE_F16 && t->ndim == 2 && t->ne[0] == 3 && t->ne[1] == 2 &&
	      t->nbytes == 12 && t->data == m.b + m.n - 12);
	gguf_close(&g);
	/* every truncation of it is refused with a message, never read past */
	for (size_t n = 0; n < m.n; n++) {
		err_clear();
		CHECK_MSG(gguf_parse(m.b, n, "cut.gguf", &g) < 0 && strstr(err_msg(), "cut.gguf"),
			  "cut at %zu", n);
	}
}

static void remove_tmpdir(void)
{
	char cmd[300];

	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

int main(void)
{
	atexit(remove_tmpdir);
	return RUN_TESTS();
}
