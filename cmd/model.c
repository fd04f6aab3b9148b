/*
 * model.c - "dyn model": inspect a model (info) or download one from the
 * Hugging Face hub into the shared hub cache (pull).
 */
#include "cmd/cmd.h"
#include "core/err.h"
#include "core/log.h"
#include "core/model/digest.h"
#include "core/model/hub.h"
#include "core/model/model.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *load_format = "auto";
static const char *quantize = "none";
static const char *revision;
static int json_output, list_tensors;
static long seed;

static const struct opt info_opts[] = {
	{ "load-format", OPT_ENUM, &load_format, "FORMAT",
	  "weights: safetensors, dummy (random, no weight files) or auto", 0, 0,
	  model_load_format_names },
	{ "quantize", OPT_ENUM, &quantize, "TYPE",
	  "describe the model as dyn run --quantize TYPE loads it (q8_0, q4_0: the projection "
	  "matrices with cols % 32 == 0 quantized; with --tensors, their bytes hashed)", 0, 0,
	  model_quantize_names },
	CMD_REVISION_OPT(revision),
	{ "json", OPT_BOOL, &json_output, NULL, "print one JSON object", 0, 0, NULL },
	{ "tensors", OPT_BOOL, &list_tensors, NULL,
	  "also list every tensor with its dtype, shape and SHA-256", 0, 0, NULL },
	{ "seed", OPT_INT, &seed, "N", "seed of the dummy weights", 0, 2147483647, NULL },
	{ 0 },
};

static const struct opt pull_opts[] = {
	{ "revision", OPT_STRING, &revision, "REV", "hub branch, tag or commit (default main)",
	  0, 0, NULL },
	{ 0 },
};

static const struct opt_cmd info_cmd = {
	.name = "model info",
	.usage = "[OPTIONS] MODEL",
	.summary = "Describe a model: architecture, shapes, parameter count, dtype, weight\n"
		   "bytes, context length, tokenizer and chat template.  MODEL is a folder,\n"
		   "a .safetensors file or index, a .gguf file, or a hub id ORG/NAME (fetched\n"
		   "if needed).  Every tensor is checked against the shape config.json (or\n"
		   "the GGUF metadata) implies.",
	.opts = info_opts,
};

static const struct opt_cmd pull_cmd = {
	.name = "model pull",
	.usage = "[--revision REV] ORG/NAME",
	.summary = "Download a model from the Hugging Face hub (HF_ENDPOINT) into the hub\n"
		   "cache (HF_HUB_CACHE, HF_HOME) and print the snapshot folder.  Partial\n"
		   "downloads resume.  Gated models need HF_TOKEN.",
	.opts = pull_opts,
};

static void overview(FILE *out)
{
	fprintf(out, "usage: dyn model info [OPTIONS] MODEL\n"
		     "       dyn model pull [--revision REV] ORG/NAME\n\n"
		     "Inspect a model, or download one from the Hugging Face hub.\n\n");
	opt_usage(&info_cmd, out);
	fputc('\n', out);
	opt_usage(&pull_cmd, out);
}

/* 1234567 -> "1,234,567" */
static const char *grouped(char *buf, size_t size, unsigned long long v)
{
	char tmp[32];
	int n = snprintf(tmp, sizeof(tmp), "%llu", v), o = 0;

	for (int i = 0; i < n && (size_t)o + 2 < size; i++) {
		if (i && (n - i) % 3 == 0)
			buf[o++] = ',';
		buf[o++] = tmp[i];
	}
	buf[o] = '\0';
	return buf;
}

static const char *short_count(char *buf, size_t size, double v, const char *const *units,
			       double base)
{
	int u = 0;

	while (v >= base && units[u + 1]) {
		v /= base;
		u++;
	}
	snprintf(buf, size, u ? "%.1f%s" : "%.0f%s", v, units[u]);
	return buf;
}

static const char *const count_units[] = { "", "K", "M", "B", "T", NULL };
static const char *const byte_units[] = { " B", " KiB", " MiB", " GiB", " TiB", NULL };

struct tensor_list {
	struct strbuf *sb;
	int n;
	int json;
};

static int tensor_sha(const struct model_tensor *t, char hex[65])
{
	unsigned char d[32];
	struct sha256 c;

	if (!t->data) {
		hex[0] = '\0';
		return 0;
	}
	sha256_init(&c);
	sha256_update(&c, t->data, (size_t)t->nbytes);
	sha256_final(&c, d);
	digest_hex(d, 32, hex);
	return 0;
}

static int add_tensor(void *arg, const struct model_tensor *t)
{
	struct tensor_list *tl = arg;
	char hex[65], shape[64];

	tensor_sha(t, hex);
	if (t->ndim == 2)
		snprintf(shape, sizeof(shape), "%lld, %lld", (long long)t->shape[0],
			 (long long)t->shape[1]);
	else
		snprintf(shape, sizeof(shape), "%lld", (long long)t->shape[0]);
	if (tl->json) {
		sb_adds(tl->sb, tl->n++ ? "," : "");
		sb_adds(tl->sb, "{\"name\":");
		sb_add_json_str(tl->sb, t->name, strlen(t->name));
		sb_addf(tl->sb, ",\"dtype\":\"%s\",\"shape\":[%s],\"bytes\":%llu,\"sha256\":\"%s\"}",
			dtype_name(t->dtype), shape, (unsigned long long)t->nbytes, hex);
	} else {
		sb_addf(tl->sb, "  %-48s %-4s [%s] %s\n", t->name, dtype_name(t->dtype), shape, hex);
	}
	return 0;
}

/* The shortest decimal that reads back as v. */
static void json_num(struct strbuf *sb, const char *key, double v)
{
	char buf[40];

	if (!isfinite(v)) {
		sb_addf(sb, ",\"%s\":null", key);
		return;
	}
	for (int prec = 6; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	sb_addf(sb, ",\"%s\":%s", key, buf);
}

static void json_str(struct strbuf *sb, const char *key, const char *v)
{
	sb_addf(sb, ",\"%s\":", key);
	if (v)
		sb_add_json_str(sb, v, strlen(v));
	else
		sb_adds(sb, "null");
}

static void print_json(const struct model *m)
{
	const struct model_desc *d = &m->desc;
	struct strbuf sb = STRBUF_INIT;

	sb_adds(&sb, "{\"model\":");
	sb_add_json_str(&sb, m->name, strlen(m->name));
	json_str(&sb, "path", m->format == MODEL_LOAD_GGUF ? m->src.weights : m->src.dir);
	json_str(&sb, "repo", m->src.repo);
	json_str(&sb, "commit", m->src.commit);
	json_str(&sb, "architecture", d->architecture);
	json_str(&sb, "model_type", d->model_type);
	sb_addf(&sb, ",\"hidden_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
		"\"num_key_value_heads\":%d,\"head_dim\":%d,\"intermediate_size\":%d,"
		"\"vocab_size\":%d,\"max_position_embeddings\":%d,\"sliding_window\":%d",
		d->hidden_size, d->num_layers, d->num_heads, d->num_kv_heads, d->head_dim,
		d->intermediate_size, d->vocab_size, d->max_position_embeddings,
		d->sliding_window);
	json_num(&sb, "rope_theta", d->rope.theta);
	if (d->rope.type == MODEL_ROPE_DEFAULT) {
		sb_adds(&sb, ",\"rope_scaling\":null");
	} else {
		sb_addf(&sb, ",\"rope_scaling\":{\"rope_type\":\"%s\"",
			model_rope_type_name(d->rope.type));
		json_num(&sb, "factor", d->rope.factor);
		if (d->rope.type == MODEL_ROPE_LLAMA3) {
			json_num(&sb, "low_freq_factor", d->rope.low_freq_factor);
			json_num(&sb, "high_freq_factor", d->rope.high_freq_factor);
			sb_addf(&sb, ",\"original_max_position_embeddings\":%d",
				d->rope.original_max_position_embeddings);
		}
		sb_addch(&sb, '}');
	}
	json_num(&sb, "rms_norm_eps", d->rms_norm_eps);
	sb_addf(&sb, ",\"tie_word_embeddings\":%s,\"qkv_bias\":%s,\"o_bias\":%s,\"qk_norm\":%s",
		d->tie_word_embeddings ? "true" : "false", d->qkv_bias ? "true" : "false",
		d->o_bias ? "true" : "false", d->qk_norm ? "true" : "false");
	json_str(&sb, "torch_dtype", dtype_torch_name(d->dtype));
	json_str(&sb, "weights_dtype", dtype_name(m->weights_dtype));
	json_str(&sb, "quantized", m->quantized ? dtype_name(m->quantized) : NULL);
	sb_addf(&sb, ",\"quantized_matrices\":%d,\"unquantized_matrices\":%d", m->n_quantized,
		m->n_unquantized);
	json_str(&sb, "load_format", model_load_format_name(m->format));
	sb_addf(&sb, ",\"files\":%zu,\"parameters\":%llu,\"weight_bytes\":%llu", m->n_files,
		(unsigned long long)m->n_params, (unsigned long long)m->weight_bytes);
	sb_addf(&sb, ",\"bos_token_id\":");
	if (d->bos_token_id >= 0)
		sb_addf(&sb, "%d", d->bos_token_id);
	else
		sb_adds(&sb, "null");
	sb_adds(&sb, ",\"eos_token_ids\":[");
	for (int i = 0; i < d->n_eos; i++)
		sb_addf(&sb, "%s%d", i ? "," : "", d->eos_token_ids[i]);
	sb_addf(&sb, "],\"tokenizer\":%s,\"chat_template\":%s",
		m->tokenizer_path ? "true" : "false", m->has_chat_template ? "true" : "false");
	if (list_tensors) {
		struct tensor_list tl = { &sb, 0, 1 };
		sb_adds(&sb, ",\"tensors\":[");
		model_for_each_tensor(m, add_tensor, &tl);
		sb_addch(&sb, ']');
	}
	sb_adds(&sb, "}\n");
	fputs(sb.buf, stdout);
	sb_release(&sb);
}

static void print_text(const struct model *m)
{
	const struct model_desc *d = &m->desc;
	char a[48], b[48];

	printf("model:         %s\n", m->name);
	printf("path:          %s\n", m->format == MODEL_LOAD_GGUF ? m->src.weights : m->src.dir);
	if (m->src.repo)
		printf("hub:           %s @ %s\n", m->src.repo, m->src.commit);
	printf("architecture:  %s%s%s%s\n", d->architecture, d->model_type[0] ? " (" : "",
	       d->model_type, d->model_type[0] ? ")" : "");
	printf("layers:        %d\n", d->num_layers);
	printf("hidden size:   %d\n", d->hidden_size);
	printf("attention:     %d query heads, %d key/value heads%s, head_dim %d%s%s%s\n",
	       d->num_heads, d->num_kv_heads, d->num_kv_heads < d->num_heads ? " (GQA)" : "",
	       d->head_dim, d->qkv_bias ? ", q/k/v bias" : "", d->o_bias ? ", o bias" : "",
	       d->qk_norm ? ", q/k norm" : "");
	printf("intermediate:  %d (SiLU-gated MLP)\n", d->intermediate_size);
	printf("vocabulary:    %d\n", d->vocab_size);
	printf("context:       %d tokens%s", d->max_position_embeddings,
	       d->sliding_window ? "" : "\n");
	if (d->sliding_window)
		printf(", sliding window %d\n", d->sliding_window);
	printf("rope:          theta %g", d->rope.theta);
	if (d->rope.type == MODEL_ROPE_LLAMA3)
		printf(", llama3 scaling (factor %g, low %g, high %g, original context %d)\n",
		       d->rope.factor, d->rope.low_freq_factor, d->rope.high_freq_factor,
		       d->rope.original_max_position_embeddings);
	else if (d->rope.type == MODEL_ROPE_LINEAR)
		printf(", linear scaling (factor %g)\n", d->rope.factor);
	else
		printf("\n");
	printf("rms_norm_eps:  %g\n", d->rms_norm_eps);
	printf("lm_head:       %s\n", d->tie_word_embeddings ? "tied to the embeddings" : "separate");
	printf("parameters:    %s (%s)\n", grouped(a, sizeof(a), m->n_params),
	       short_count(b, sizeof(b), (double)m->n_params, count_units, 1000));
	printf("dtype:         %s (config), weights %s\n", dtype_torch_name(d->dtype),
	       dtype_name(m->weights_dtype));
	if (m->quantized)
		printf("quantized:     %s: %d matrices; %d kept as stored (cols not a multiple "
		       "of 32)\n", dtype_name(m->quantized), m->n_quantized, m->n_unquantized);
	printf("weight bytes:  %s (%s)\n", grouped(a, sizeof(a), m->weight_bytes),
	       short_count(b, sizeof(b), (double)m->weight_bytes, byte_units, 1024));
	if (m->format == MODEL_LOAD_DUMMY)
		printf("load format:   dummy (random weights)\n");
	else if (m->format == MODEL_LOAD_GGUF)
		printf("load format:   gguf (version %d)\n", m->gguf_version);
	else
		printf("load format:   safetensors (%zu file%s)\n", m->n_files,
		       m->n_files == 1 ? "" : "s");
	printf("tokens:        bos %d, eos", d->bos_token_id);
	for (int i = 0; i < d->n_eos; i++)
		printf("%s%d", i ? ", " : " ", d->eos_token_ids[i]);
	printf("%s\n", d->n_eos ? "" : " none");
	printf("tokenizer:     %s\n", m->src.gguf_tokenizer ? "GGUF metadata" :
	       m->tokenizer_path ? "tokenizer.json" : "none");
	printf("chat template: %s\n", m->chat_template_path ? "chat_template.jinja" :
	       !m->has_chat_template ? "none" : m->src.gguf_tokenizer ? "GGUF metadata" :
	       "in tokenizer_config.json");
	if (list_tensors) {
		struct strbuf sb = STRBUF_INIT;
		struct tensor_list tl = { &sb, 0, 0 };
		model_for_each_tensor(m, add_tensor, &tl);
		printf("tensors:\n%s", sb.buf);
		sb_release(&sb);
	}
}

static int model_info(int argc, char **argv)
{
	struct cmd_progress prog = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &prog };
	struct model_load_opts lo = { .hub = &hub };
	struct model *m;
	int nargs, rc = cmd_options(&info_cmd, argc, argv, &nargs);

	if (rc >= 0)
		return rc;
	if (nargs == 0)
		return cmd_usage_error("model info", "expected a MODEL (a folder or ORG/NAME)");
	if (nargs > 1)
		return cmd_usage_error("model info", "expected one MODEL, got %d arguments", nargs);
	if (cmd_check_revision("model info", argv[0], revision))
		return EXIT_USAGE;
	model_load_format_parse(load_format, &lo.format);
	model_quantize_parse(quantize, &lo.quantize);
	lo.seed = (uint64_t)seed;
	lo.flags = list_tensors ? 0 : MODEL_LOAD_META;
	hub.revision = revision;
	rc = model_load(argv[0], &lo, &m);
	cmd_progress_done(&prog);
	if (rc < 0)
		return cmd_fail("model info", "%s", err_msg());
	if (json_output)
		print_json(m);
	else
		print_text(m);
	model_free(m);
	return 0;
}

static int model_pull(int argc, char **argv)
{
	struct cmd_progress prog = { 0 };
	struct hub_opts hub = { .progress = cmd_hub_progress, .progress_arg = &prog };
	struct hub_result res;
	char size[32];
	int nargs, rc = cmd_options(&pull_cmd, argc, argv, &nargs);

	if (rc >= 0)
		return rc;
	if (nargs != 1)
		return cmd_usage_error("model pull", "expected one hub id ORG/NAME");
	if (!hub_is_repo_id(argv[0]))
		return cmd_usage_error("model pull", "'%s' is not a hub id (ORG/NAME)", argv[0]);
	if (revision && !hub_valid_revision(revision))
		return cmd_usage_error("model pull", "--revision: '%s' is not a branch, tag or commit",
				       revision);
	hub.revision = revision;
	rc = hub_snapshot(argv[0], &hub, &res);
	cmd_progress_done(&prog);
	if (rc < 0)
		return cmd_fail("model pull", "%s", err_msg());
	short_count(size, sizeof(size), (double)res.bytes_fetched, byte_units, 1024);
	LOG_INFO("hub", "%s @ %s: %d file%s fetched (%s)%s", argv[0], res.commit,
		 res.files_fetched, res.files_fetched == 1 ? "" : "s", size,
		 res.from_cache ? ", from the cache" : "");
	printf("%s\n", res.snapshot_dir);
	hub_result_free(&res);
	return 0;
}

int cmd_model(int argc, char **argv)
{
	static const struct cmd_verb verbs[] = {
		{ "info", model_info, "what a model is: architecture, shapes, sizes, files" },
		{ "pull", model_pull, "download a model from the Hugging Face hub" },
	};
	return cmd_dispatch_verbs("model", verbs, ARRAY_SIZE(verbs), overview, argc, argv);
}
