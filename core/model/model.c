/*
 * model.c - model names to loaded models: resolving a path or hub id,
 * reading the config, choosing the load format, and the model's
 * lifetime (see model.h).
 */
#include "core/model/model_int.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const model_load_format_names[] = { "auto", "safetensors", "dummy", "gguf", NULL };

int model_load_format_parse(const char *s, enum model_load_format *out)
{
	for (int i = 0; model_load_format_names[i]; i++) {
		if (!strcmp(s, model_load_format_names[i])) {
			*out = (enum model_load_format)i;
			return 0;
		}
	}
	return err_set(-EINVAL, "load format '%s' is not one of auto, safetensors, dummy, gguf", s);
}

const char *const model_quantize_names[] = { "none", "q8_0", "q4_0", NULL };

int model_quantize_parse(const char *s, enum dtype *out)
{
	if (!strcmp(s, "none"))
		*out = DTYPE_UNKNOWN;
	else if (!strcmp(s, "q8_0"))
		*out = DTYPE_Q8_0;
	else if (!strcmp(s, "q4_0"))
		*out = DTYPE_Q4_0;
	else
		return err_set(-EINVAL, "quantization '%s' is not one of none, q8_0, q4_0", s);
	return 0;
}

const char *model_load_format_name(enum model_load_format f)
{
	return (unsigned)f <= MODEL_LOAD_GGUF ? model_load_format_names[f] : "?";
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	return slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
}

void model_source_free(struct model_source *src)
{
	if (src->tmpdir)
		model_gguf_dir_remove(src->tmpdir);
	free(src->tmpdir);
	free(src->dir);
	free(src->weights);
	free(src->repo);
	free(src->commit);
	memset(src, 0, sizeof(*src));
}

int model_resolve(const char *name, const struct hub_opts *hub, int need_weights,
		  struct model_source *src)
{
	struct stat st;
	char real[PATH_MAX];

	memset(src, 0, sizeof(*src));
	if (!name || !*name)
		return err_set(-EINVAL, "no model given (a folder, a .safetensors or .gguf file, "
			       "or a hub id ORG/NAME)");
	if (stat(name, &st) == 0) {
		const char *path = realpath(name, real) ? real : name;
		if (S_ISDIR(st.st_mode)) {
			char *gguf = model_gguf_in_dir(path);
			if (gguf) {
				int rc = model_gguf_resolve(gguf, src);
				free(gguf);
				return rc;
			}
			src->dir = xstrdup(path);
			return 0;
		}
		if (S_ISREG(st.st_mode) && ends_with(path, ".gguf"))
			return model_gguf_resolve(path, src);
		if (S_ISREG(st.st_mode) && (ends_with(path, ".safetensors") ||
					    ends_with(path, ".safetensors.index.json"))) {
			src->dir = dir_of(path);
			src->weights = xstrdup(path);
			return 0;
		}
		if (S_ISREG(st.st_mode) && ends_with(path, "config.json")) {
			src->dir = dir_of(path);
			return 0;
		}
		return err_set(-EINVAL, "%s: not a model folder, a .safetensors or .gguf file, "
			       "or a config.json", name);
	}
	if (!hub_is_repo_id(name))
		return err_set(-ENOENT, "model '%s' not found: no such file or folder, and not a "
			       "hub id (ORG/NAME)", name);
	struct hub_opts o = hub ? *hub : (struct hub_opts){ 0 };
	struct hub_result res;
	if (!need_weights)
		o.skip_weights = 1;
	int rc = hub_snapshot(name, &o, &res);
	if (rc < 0) {
		if (rc == -ENOENT || rc == -EACCES)
			err_wrap(rc, "model %s (no such local path; tried the hub)", name);
		return rc;
	}
	src->dir = res.snapshot_dir;
	src->commit = res.commit;
	src->repo = xstrdup(name);
	return 0;
}

static char *file_if_present(const char *dir, const char *name)
{
	struct strbuf sb = STRBUF_INIT;
	sb_addf(&sb, "%s/%s", dir, name);
	if (access(sb.buf, R_OK) == 0)
		return sb_detach(&sb, NULL);
	sb_release(&sb);
	return NULL;
}

/* tokenizer_config.json has a non-null "chat_template". */
static int config_has_template(const char *path)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *j;
	int has = 0;

	if (sb_read_file(&sb, path, 64u << 20) == 0 && (j = cJSON_ParseWithLength(sb.buf, sb.len))) {
		const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
		has = t && (cJSON_IsString(t) || (cJSON_IsArray(t) && cJSON_GetArraySize(t) > 0));
		cJSON_Delete(j);
	}
	err_clear();
	sb_release(&sb);
	return has;
}

static void find_files(struct model *m)
{
	const char *dir = m->src.dir;

	m->config_path = file_if_present(dir, "config.json");
	m->generation_config_path = file_if_present(dir, "generation_config.json");
	m->tokenizer_path = file_if_present(dir, "tokenizer.json");
	m->tokenizer_config_path = file_if_present(dir, "tokenizer_config.json");
	m->chat_template_path = file_if_present(dir, "chat_template.jinja");
	m->has_chat_template = m->chat_template_path ||
			       (m->tokenizer_config_path &&
				config_has_template(m->tokenizer_config_path));
}

int model_load(const char *name, const struct model_load_opts *opts, struct model **out)
{
	static const struct model_load_opts defaults;
	const struct model_load_opts *o = opts ? opts : &defaults;
	struct model *m = xcalloc(1, sizeof(*m));
	int rc;

	*out = NULL;
	if (o->quantize != DTYPE_UNKNOWN && !dtype_is_quant(o->quantize)) {
		free(m);
		return err_set(-EINVAL, "cannot quantize to %s (only Q8_0, Q4_0)",
			       dtype_name(o->quantize));
	}
	m->priv = xcalloc(1, sizeof(*m->priv));
	m->name = xstrdup(name ? name : "");
	if ((rc = model_resolve(name, o->hub, o->format != MODEL_LOAD_DUMMY, &m->src)) < 0)
		goto fail;
	if ((rc = model_desc_load(m->src.dir, &m->desc)) < 0)
		goto fail;
	find_files(m);
	model_specs_build(m);
	m->format = o->format == MODEL_LOAD_DUMMY ? MODEL_LOAD_DUMMY
		  : m->src.tmpdir ? MODEL_LOAD_GGUF : MODEL_LOAD_SAFETENSORS;
	if (o->format != MODEL_LOAD_AUTO && o->format != MODEL_LOAD_DUMMY && o->format != m->format) {
		rc = err_set(-EINVAL, "%s: --load-format %s, but the weights are %s", name,
			     model_load_format_name(o->format), model_load_format_name(m->format));
		goto fail;
	}
	if (m->format == MODEL_LOAD_DUMMY) {
		rc = model_bind_dummy(m, o, o->dummy_dtype);
	} else if (m->format == MODEL_LOAD_GGUF) {
		rc = model_bind_gguf(m, m->src.weights, o);
	} else {
		rc = model_bind_safetensors(m, m->src.weights ? m->src.weights : m->src.dir, o);
		if (rc == -ENODATA)
			rc = err_set(-ENOENT, "%s: no .safetensors weights found (other weight "
				     "formats are not supported; --load-format dummy uses random "
				     "weights)", m->src.dir);
	}
	if (rc == 0 && (o->flags & MODEL_LOAD_PANELS) && !(o->flags & MODEL_LOAD_META))
		rc = model_repack_panels(m);
	if (rc < 0)
		goto fail;
	if (m->desc.tie_word_embeddings) {
		m->w.lm_head = m->w.embed;
	}
	m->weights_dtype = m->w.embed.dtype;
	for (size_t i = 0; i < m->priv->nspecs; i++) {
		const struct tensor_spec *sp = &m->priv->specs[i];
		m->n_params += sp->slot->numel;
		m->weight_bytes += sp->slot->nbytes;
		if (model_spec_quantized(sp, o->quantize))
			m->n_quantized++;
		else if (sp->kind == SPEC_MATRIX && o->quantize != DTYPE_UNKNOWN)
			m->n_unquantized++;
	}
	m->quantized = m->n_quantized ? o->quantize : DTYPE_UNKNOWN;
	LOG_DEBUG("model", "%s: %s, %llu parameters, %llu bytes (%s)", name,
		  m->desc.architecture, (unsigned long long)m->n_params,
		  (unsigned long long)m->weight_bytes, model_load_format_name(m->format));
	*out = m;
	return 0;
fail:
	model_free(m);
	return rc;
}

void model_free(struct model *m)
{
	if (!m)
		return;
	if (m->priv) {
		st_set_close(m->priv->st);
		model_gguf_free(m->priv->gguf);
		if (m->priv->arena)
			munmap(m->priv->arena, m->priv->arena_len);
		free(m->priv->specs);
		free(m->priv);
	}
	free(m->w.layers);
	model_source_free(&m->src);
	free(m->name);
	free(m->config_path);
	free(m->generation_config_path);
	free(m->tokenizer_path);
	free(m->tokenizer_config_path);
	free(m->chat_template_path);
	free(m);
}

int model_for_each_tensor(const struct model *m,
			  int (*fn)(void *arg, const struct model_tensor *t), void *arg)
{
	for (size_t i = 0; i < m->priv->nspecs; i++) {
		int rc = fn(arg, m->priv->specs[i].slot);
		if (rc)
			return rc;
	}
	return 0;
}

void model_tensor_row_f32(const struct model_tensor *t, int64_t r, float *out)
{
	size_t cols = (size_t)(t->ndim > 1 ? t->shape[1] : t->shape[0]);
	dtype_to_f32(out, (const char *)t->data + dtype_bytes(t->dtype, (size_t)r * cols),
		     t->dtype, cols);
}
