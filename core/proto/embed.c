/*
 * embed.c - the embed protocol's messages (see embed.h).
 */
#include "core/proto/embed.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64_encode(const uint8_t *p, size_t n, struct strbuf *out)
{
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		char q[4] = { b64[v >> 18], b64[(v >> 12) & 63],
			      i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '=' };
		sb_add(out, q, 4);
	}
}

/* Decode s (length a multiple of 4) into out[0..*n). -1 if malformed. */
static int b64_decode(const char *s, size_t len, uint8_t *out, size_t *n)
{
	size_t k = 0;
	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		uint32_t v = 0;
		int pad = 0;
		for (int j = 0; j < 4; j++) {
			const char *c = s[i + j] == '=' ? NULL : memchr(b64, s[i + j], 64);
			if (!c && (s[i + j] != '=' || i + 4 < len || j < 2))
				return -1;
			pad += !c;
			v = v << 6 | (c ? (uint32_t)(c - b64) : 0);
		}
		out[k++] = (uint8_t)(v >> 16);
		if (pad < 2)
			out[k++] = (uint8_t)(v >> 8);
		if (pad < 1)
			out[k++] = (uint8_t)v;
	}
	*n = k;
	return 0;
}

void embed_b64_floats(const float *v, size_t n, struct strbuf *out)
{
	uint8_t *p = xmalloc(n * 4 + 1);
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &v[i], 4);
		p[4 * i] = (uint8_t)u;
		p[4 * i + 1] = (uint8_t)(u >> 8);
		p[4 * i + 2] = (uint8_t)(u >> 16);
		p[4 * i + 3] = (uint8_t)(u >> 24);
	}
	b64_encode(p, n * 4, out);
	free(p);
}

void embed_request_encode(const int32_t *const *ids, const size_t *lens, size_t n,
			  struct strbuf *out)
{
	sb_adds(out, "{\"inputs\":[");
	for (size_t i = 0; i < n; i++) {
		sb_adds(out, i ? ",[" : "[");
		for (size_t k = 0; k < lens[i]; k++)
			sb_addf(out, k ? ",%d" : "%d", ids[i][k]);
		sb_addch(out, ']');
	}
	sb_adds(out, "]}");
}

void embed_request_release(struct embed_request *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->ids[i]);
	free(r->ids);
	free(r->lens);
	r->ids = NULL;
	r->lens = NULL;
	r->n = 0;
}

int embed_request_parse(const char *json, size_t len, struct embed_request *out)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *in, *item, *id;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	in = cJSON_GetObjectItemCaseSensitive(root, "inputs");
	if (!cJSON_IsArray(in) || !cJSON_GetArraySize(in) ||
	    cJSON_GetArraySize(in) > EMBED_MAX_INPUTS) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "inputs: expected 1 to %d arrays of token ids",
			       EMBED_MAX_INPUTS);
	}
	out->ids = xcalloc((size_t)cJSON_GetArraySize(in), sizeof(*out->ids));
	out->lens = xcalloc((size_t)cJSON_GetArraySize(in), sizeof(*out->lens));
	cJSON_ArrayForEach(item, in) {
		size_t i = out->n++, k = 0;
		if (!cJSON_IsArray(item) || !cJSON_GetArraySize(item)) {
			rc = err_set(-EINVAL, "inputs[%zu]: expected a non-empty array of token ids", i);
			break;
		}
		out->ids[i] = xmalloc((size_t)cJSON_GetArraySize(item) * sizeof(int32_t));
		cJSON_ArrayForEach(id, item) {
			if (!cJSON_IsNumber(id) || id->valuedouble < 0 ||
			    id->valuedouble > INT32_MAX || id->valuedouble != (int32_t)id->valuedouble) {
				rc = err_set(-EINVAL, "inputs[%zu]: token ids are integers >= 0", i);
				break;
			}
			out->ids[i][k++] = (int32_t)id->valuedouble;
		}
		out->lens[i] = k;
		if (rc < 0)
			break;
	}
	cJSON_Delete(root);
	if (rc < 0)
		embed_request_release(out);
	return rc;
}

void embed_response_encode(const float *vecs, size_t n, int dim, long prompt_tokens,
			   struct strbuf *out)
{
	sb_adds(out, "{\"embeddings\":[");
	for (size_t i = 0; i < n; i++) {
		sb_adds(out, i ? ",\"" : "\"");
		embed_b64_floats(vecs + i * (size_t)dim, (size_t)dim, out);
		sb_addch(out, '"');
	}
	sb_addf(out, "],\"prompt_tokens\":%ld}", prompt_tokens);
}

int embed_response_parse(const char *json, size_t len, float **vecs, size_t *n, int *dim,
			 long *prompt_tokens)
{
	cJSON *root = cJSON_ParseWithLength(json, len), *e;
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "embeddings");
	const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "prompt_tokens");
	int rc = 0;

	*vecs = NULL;
	*n = 0;
	*dim = 0;
	if (!cJSON_IsArray(list) || !cJSON_IsNumber(pt)) {
		cJSON_Delete(root);
		return err_set(-EINVAL, "embed response: expected embeddings and prompt_tokens");
	}
	*prompt_tokens = (long)pt->valuedouble;
	size_t cap = (size_t)cJSON_GetArraySize(list);
	cJSON_ArrayForEach(e, list) {
		size_t bytes;
		size_t slen = cJSON_IsString(e) ? strlen(e->valuestring) : 0;
		uint8_t *raw = xmalloc(slen / 4 * 3 + 3);
		if (!slen || b64_decode(e->valuestring, slen, raw, &bytes) < 0 || bytes % 4 ||
		    (*n && bytes / 4 != (size_t)*dim)) {
			free(raw);
			rc = err_set(-EINVAL, "embed response: embeddings[%zu] is not base64 of "
				     "%s floats", *n, *n ? "as many" : "whole");
			break;
		}
		if (!*n) {
			*dim = (int)(bytes / 4);
			*vecs = xmalloc(cap * bytes);
		}
		for (size_t k = 0; k < bytes / 4; k++) {
			uint32_t u = raw[4 * k] | (uint32_t)raw[4 * k + 1] << 8 |
				     (uint32_t)raw[4 * k + 2] << 16 | (uint32_t)raw[4 * k + 3] << 24;
			memcpy(&(*vecs)[*n * (size_t)*dim + k], &u, 4);
		}
		free(raw);
		(*n)++;
	}
	cJSON_Delete(root);
	if (rc < 0) {
		free(*vecs);
		*vecs = NULL;
		*n = 0;
	}
	return rc;
}
