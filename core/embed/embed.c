/*
 * embed.c - sentence embeddings (see embed.h): the sentence-transformers
 * configuration (modules.json, the Pooling module's config.json,
 * sentence_bert_config.json) around the BERT encoder.
 */
#include "core/embed/embed.h"
#include "core/embed/bert.h"
#include "core/embed/decoder.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EMBED_PASS_TOKENS 8192

struct embedder {
	struct bert *bert;		/* an encoder, or */
	struct decoder_enc *dec;	/* a decoder model (last-token pooling) */
	struct tok *tok;
	enum embed_pooling pooling;
	int normalize, max_tokens, dim, truncatable;
};

int embedder_supports(const char *dir)
{
	cJSON *mods = bert_read_json(dir, "modules.json");
	int st = cJSON_IsArray(mods);
	cJSON_Delete(mods);
	return bert_is_bert(dir) || st;
}

static int flag(const cJSON *j, const char *key)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, key));
}

/* modules.json: the Pooling module's mode and whether a Normalize module
 * follows.  No modules.json: mean pooling, no normalization (what
 * sentence-transformers does with a plain transformers model). */
static int parse_modules(const char *dir, struct embedder *e)
{
	cJSON *mods = bert_read_json(dir, "modules.json"), *m;
	int rc = 0;

	e->pooling = EMBED_POOL_MEAN;
	if (!mods)
		return 0;
	if (!cJSON_IsArray(mods)) {
		cJSON_Delete(mods);
		return err_set(-EINVAL, "%s/modules.json: expected an array", dir);
	}
	cJSON_ArrayForEach(m, mods) {
		const cJSON *type = cJSON_GetObjectItemCaseSensitive(m, "type");
		const cJSON *path = cJSON_GetObjectItemCaseSensitive(m, "path");
		if (!cJSON_IsString(type))
			continue;
		const char *t = strrchr(type->valuestring, '.');
		t = t ? t + 1 : type->valuestring;
		if (!strcmp(t, "Normalize")) {
			e->normalize = 1;
		} else if (!strcmp(t, "Pooling") && cJSON_IsString(path)) {
			struct strbuf p = STRBUF_INIT;
			sb_addf(&p, "%s/config.json", path->valuestring);
			cJSON *pc = bert_read_json(dir, p.buf);
			int modes = 0;
			if (flag(pc, "pooling_mode_mean_tokens"))
				modes++, e->pooling = EMBED_POOL_MEAN;
			if (flag(pc, "pooling_mode_cls_token"))
				modes++, e->pooling = EMBED_POOL_CLS;
			if (flag(pc, "pooling_mode_max_tokens"))
				modes++, e->pooling = EMBED_POOL_MAX;
			if (flag(pc, "pooling_mode_lasttoken"))
				modes++, e->pooling = EMBED_POOL_LAST;
			if (!pc || modes != 1 || flag(pc, "pooling_mode_mean_sqrt_len_tokens") ||
			    flag(pc, "pooling_mode_weightedmean_tokens"))
				rc = err_set(-EINVAL, "%s/%s: expected exactly one pooling mode of mean, "
					     "cls, max or lasttoken", dir, p.buf);
			cJSON_Delete(pc);
			sb_release(&p);
		} else if (strcmp(t, "Transformer")) {
			rc = err_set(-EINVAL, "%s/modules.json: module %s is not supported", dir,
				     type->valuestring);
		}
		if (rc < 0)
			break;
	}
	cJSON_Delete(mods);
	return rc;
}

int embedder_open(const char *dir, int threads, struct embedder **out)
{
	struct embedder *e = xcalloc(1, sizeof(*e));
	int rc;

	*out = NULL;
	if (!embedder_supports(dir)) {
		free(e);
		return err_set(-EINVAL, "%s: not an embedding model (a BERT-style encoder, or a "
			       "decoder model with the sentence-transformers modules.json)", dir);
	}
	if ((rc = bert_is_bert(dir) ? bert_open(dir, threads, &e->bert)
				    : decoder_open(dir, threads, &e->dec)) < 0 ||
	    (rc = tok_load(dir, &e->tok)) < 0 ||
	    (rc = parse_modules(dir, e)) < 0) {
		embedder_free(e);
		return rc;
	}
	e->dim = e->bert ? bert_config(e->bert)->hidden : decoder_dim(e->dec);
	e->max_tokens = e->bert ? bert_config(e->bert)->max_positions
				: decoder_max_positions(e->dec);
	cJSON *sb = bert_read_json(dir, "sentence_bert_config.json");
	const cJSON *msl = cJSON_GetObjectItemCaseSensitive(sb, "max_seq_length");
	if (cJSON_IsNumber(msl) && msl->valuedouble >= 1 && msl->valuedouble < e->max_tokens)
		e->max_tokens = (int)msl->valuedouble;
	cJSON_Delete(sb);
	sb = bert_read_json(dir, "config_sentence_transformers.json");
	e->truncatable = cJSON_GetObjectItemCaseSensitive(sb, "truncate_dim") != NULL;
	cJSON_Delete(sb);
	*out = e;
	return 0;
}

void embedder_free(struct embedder *e)
{
	if (!e)
		return;
	bert_free(e->bert);
	decoder_free(e->dec);
	tok_free(e->tok);
	free(e);
}

int embedder_dim(const struct embedder *e) { return e->dim; }
int embedder_max_tokens(const struct embedder *e) { return e->max_tokens; }
int embedder_normalizes(const struct embedder *e) { return e->normalize; }
int embedder_truncatable(const struct embedder *e) { return e->truncatable; }
enum embed_pooling embedder_pooling(const struct embedder *e) { return e->pooling; }
const struct tok *embedder_tok(const struct embedder *e) { return e->tok; }

int embedder_tokenize(const struct embedder *e, const char *text, size_t len,
		      struct tok_ids *out)
{
	size_t first = out->n;
	int rc;

	if (!len)
		return err_set(-EINVAL, "empty input");
	if ((rc = tok_encode(e->tok, text, len, 1, out)) < 0)
		return rc;
	if (out->n - first > (size_t)e->max_tokens)
		return err_set(-E2BIG, "input of %zu tokens is longer than the model's limit of %d",
			       out->n - first, e->max_tokens);
	return 0;
}

void embed_normalize(float *v, int dim)
{
	double ss = 0;
	for (int i = 0; i < dim; i++)
		ss += (double)v[i] * v[i];
	if (ss <= 0)
		return;
	/* torch.nn.functional.normalize: v / max(norm, 1e-12) */
	float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
	for (int i = 0; i < dim; i++)
		v[i] *= inv;
}

void embed_pool(enum embed_pooling p, int normalize, const float *hidden, int len, int dim,
		float *out)
{
	switch (p) {
	case EMBED_POOL_CLS:
		memcpy(out, hidden, (size_t)dim * sizeof(float));
		break;
	case EMBED_POOL_LAST:
		memcpy(out, hidden + (size_t)(len - 1) * dim, (size_t)dim * sizeof(float));
		break;
	case EMBED_POOL_MAX:
		memcpy(out, hidden, (size_t)dim * sizeof(float));
		for (int t = 1; t < len; t++)
			for (int i = 0; i < dim; i++)
				out[i] = fmaxf(out[i], hidden[(size_t)t * dim + i]);
		break;
	case EMBED_POOL_MEAN:
		for (int i = 0; i < dim; i++) {
			double s = 0;
			for (int t = 0; t < len; t++)
				s += hidden[(size_t)t * dim + i];
			out[i] = (float)(s / len);
		}
		break;
	}
	if (normalize)
		embed_normalize(out, dim);
}

/* Inputs [0, n) in one encoder pass. */
static int run_pass(struct embedder *e, const int32_t *const *ids, const size_t *lens, int n,
		    float *out)
{
	int *start = xmalloc(((size_t)n + 1) * sizeof(int));
	size_t total = 0;
	int rc;

	for (int i = 0; i < n; i++) {
		start[i] = (int)total;
		total += lens[i];
	}
	start[n] = (int)total;
	int32_t *tokens = xmalloc(total * sizeof(int32_t));
	float *hidden = xmalloc(total * (size_t)e->dim * sizeof(float));
	for (int i = 0; i < n; i++)
		memcpy(tokens + start[i], ids[i], lens[i] * sizeof(int32_t));
	rc = e->bert ? bert_forward(e->bert, tokens, start, n, hidden)
		     : decoder_forward(e->dec, tokens, start, n, hidden);
	for (int i = 0; rc == 0 && i < n; i++)
		embed_pool(e->pooling, e->normalize, hidden + (size_t)start[i] * e->dim,
			   start[i + 1] - start[i], e->dim, out + (size_t)i * e->dim);
	free(tokens);
	free(hidden);
	free(start);
	return rc;
}

int embedder_run(struct embedder *e, const int32_t *const *ids, const size_t *lens, int n,
		 float *out)
{
	int rc = 0;

	for (int i = 0; i < n; i++)
		if (!lens[i] || lens[i] > (size_t)e->max_tokens)
			return err_set(lens[i] ? -E2BIG : -EINVAL,
				       "input %d: %zu tokens (1 to %d allowed)", i, lens[i],
				       e->max_tokens);
	/* passes of at most EMBED_PASS_TOKENS tokens: the activations of a
	 * large request stay bounded (about 14 KB a token for MiniLM) */
	for (int i = 0, j; rc == 0 && i < n; i = j) {
		size_t tokens = lens[i];
		for (j = i + 1; j < n && tokens + lens[j] <= EMBED_PASS_TOKENS; j++)
			tokens += lens[j];
		rc = run_pass(e, ids + i, lens + i, j - i, out + (size_t)i * e->dim);
	}
	return rc;
}
