/*
 * embeddings.c - POST /v1/embeddings: OpenAI's embeddings API over the
 * workers that serve an embedding model (their card has "embedding").
 *
 * The body's input (a string, a list of strings, a list of token ids or a
 * list of such lists) is tokenized here with the model's tokenizer (its
 * special tokens added, as sentence-transformers does; token ids are
 * taken as given), checked against the model's token limit, and sent to
 * one worker in one embed call (core/proto/embed.h); a worker that cannot
 * be reached is marked down and the call goes to another once.  With
 * "dimensions" below the model's size (models that allow it), each vector
 * is cut to that many and scaled to unit length again, as OpenAI does.
 * encoding_format "base64" gives each vector as the base64 of its
 * little-endian float32s.
 */
#include "core/frontend/internal.h"
#include "core/err.h"
#include "core/log.h"
#include "core/proto/embed.h"
#include "core/tok/tok.h"
#include "core/util.h"
#include "net/http.h"
#include "net/rpc.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "frontend"

struct fe_embed {
	struct frontend *f;
	struct http_req *http;		/* NULL once answered or gone */
	struct fe_model *m;
	struct fe_stats *stats;
	struct tok_ids *inputs;
	size_t n;
	long tokens;
	int dimensions;			/* 0: the model's */
	int base64;
	int tries;
	uint64_t worker;
	struct rpc_stream *st;
	struct strbuf resp;		/* the worker's DATA frame */
};

static void embed_free(struct fe_embed *c)
{
	if (c->st)
		rpc_stream_cancel(c->st);
	for (size_t i = 0; i < c->n; i++)
		tok_ids_release(&c->inputs[i]);
	free(c->inputs);
	sb_release(&c->resp);
	if (c->stats)
		c->stats->inflight--;
	if (c->m)
		fe_model_put(c->f, c->m);
	c->f->inflight--;
	free(c);
}

static void reply_error(struct fe_embed *c, int status, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void reply_error(struct fe_embed *c, int status, const char *param, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fe_stats_count(c->stats ? c->stats : fe_stats_get(c->f, ""), "embeddings", status);
	if (c->http)
		http_reply_error(c->http, status, msg, param,
				 status == 404 ? "model_not_found" : NULL, NULL);
	c->http = NULL;
	embed_free(c);
}

static void on_client_close(struct http_req *r, void *arg)
{
	struct fe_embed *c = arg;
	(void)r;
	c->http = NULL;
	embed_free(c);
}

/* The inputs of the body's "input": 0, or -EINVAL / -E2BIG with a
 * message.  One text or one list of ids is a list of one. */
static int parse_input(struct fe_embed *c, const cJSON *in)
{
	const struct tok *tok = c->m->tok;
	int single = cJSON_IsString(in) || (cJSON_IsArray(in) && cJSON_IsNumber(in->child));
	int texts = cJSON_IsString(single ? in : in->child);
	size_t n = single ? 1 : cJSON_IsArray(in) ? (size_t)cJSON_GetArraySize(in) : 0;
	const cJSON *it;

	if (!single && !cJSON_IsArray(in))
		return err_set(-EINVAL, "'input' must be a string, a list of strings, a list of "
			       "token ids or a list of lists of token ids");
	if (n == 0 || n > EMBED_MAX_INPUTS)
		return err_set(-EINVAL, "'input' must hold 1 to %d inputs", EMBED_MAX_INPUTS);
	c->inputs = xcalloc(n, sizeof(*c->inputs));
	for (size_t i = 0; i < n; i++) {
		const cJSON *x = single ? in : cJSON_GetArrayItem(in, (int)i);
		struct tok_ids *ids = &c->inputs[c->n++];
		if (texts && cJSON_IsString(x)) {
			size_t len = strlen(x->valuestring);
			if (!len)
				return err_set(-EINVAL, "input %zu is empty", i);
			if (tok_encode(tok, x->valuestring, len, 1, ids) < 0)
				return err_set(-EINVAL, "input %zu: %s", i, err_msg());
		} else if (!texts && cJSON_IsArray(x) && cJSON_GetArraySize(x) > 0) {
			cJSON_ArrayForEach(it, x) {
				if (!cJSON_IsNumber(it) || it->valuedouble < 0 ||
				    it->valuedouble >= (double)tok_vocab_size(tok) ||
				    it->valuedouble != (int32_t)it->valuedouble)
					return err_set(-EINVAL, "input %zu: token ids must be integers "
						       "in [0, %zu)", i, tok_vocab_size(tok));
				tok_ids_push(ids, (int32_t)it->valuedouble);
			}
		} else {
			return err_set(-EINVAL, "input %zu: expected a non-empty %s", i,
				       texts ? "string" : "list of token ids");
		}
		if ((long)ids->n > c->m->context_length)
			return err_set(-E2BIG, "input %zu has %zu tokens, more than the %ld the "
				       "model '%s' takes", i, ids->n, c->m->context_length,
				       c->m->name);
		c->tokens += (long)ids->n;
	}
	return 0;
}

static void call_worker(struct fe_embed *c);

/* The worker's answer: the OpenAI response. */
static void answer(struct fe_embed *c)
{
	float *vecs;
	size_t n;
	int dim;
	long pt;
	struct strbuf b = STRBUF_INIT;

	if (embed_response_parse(c->resp.buf, c->resp.len, &vecs, &n, &dim, &pt) < 0 ||
	    n != c->n) {
		reply_error(c, 502, NULL, "bad answer from the worker: %s",
			    n != c->n ? "wrong number of vectors" : err_msg());
		return;
	}
	int d = c->dimensions && c->dimensions < dim ? c->dimensions : dim;
	sb_adds(&b, "{\"object\":\"list\",\"data\":[");
	for (size_t i = 0; i < n; i++) {
		float *v = vecs + i * (size_t)dim;
		if (d < dim) {	/* cut, then unit length again */
			double ss = 0;
			for (int k = 0; k < d; k++)
				ss += (double)v[k] * v[k];
			float inv = ss > 0 ? (float)(1.0 / sqrt(ss)) : 1.0f;
			for (int k = 0; k < d; k++)
				v[k] *= inv;
		}
		sb_addf(&b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":",
			i ? "," : "", i);
		if (c->base64) {
			sb_addch(&b, '"');
			embed_b64_floats(v, (size_t)d, &b);
			sb_addch(&b, '"');
		} else {
			sb_addch(&b, '[');
			for (int k = 0; k < d; k++)	/* %.9g: the float exactly */
				sb_addf(&b, k ? ",%.9g" : "%.9g", v[k]);
			sb_addch(&b, ']');
		}
		sb_addch(&b, '}');
	}
	sb_adds(&b, "],\"model\":");
	sb_add_json_str(&b, c->m->name, strlen(c->m->name));
	sb_addf(&b, ",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}", pt, pt);
	c->stats->input_tokens += (uint64_t)pt;
	fe_stats_count(c->stats, "embeddings", 200);
	http_reply(c->http, 200, "application/json", b.buf, b.len, NULL);
	c->http = NULL;
	sb_release(&b);
	free(vecs);
	embed_free(c);
}

static void on_data(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		    void *arg)
{
	struct fe_embed *c = arg;
	(void)st;
	(void)flags;
	sb_add(&c->resp, data, len);
}

static void on_end(struct rpc_stream *st, const void *data, size_t len, unsigned flags,
		   void *arg)
{
	struct fe_embed *c = arg;
	(void)st;
	(void)data;
	(void)len;
	(void)flags;
	c->st = NULL;	/* the stream is done: not to be cancelled */
	answer(c);
}

static void on_error(struct rpc_stream *st, int code, const char *msg, void *arg)
{
	struct fe_embed *c = arg;
	(void)st;
	c->st = NULL;
	if (code < 0 || code == 503) {	/* unreachable or draining: another worker */
		fe_instance_mark_down(c->f, c->worker);
		if (c->tries < 2) {
			call_worker(c);
			return;
		}
	}
	reply_error(c, code == 400 ? 400 : code == 503 ? 503 : 502, code == 400 ? "input" : NULL,
		    "the worker failed: %s", msg);
}

static void call_worker(struct fe_embed *c)
{
	static const struct rpc_stream_cbs cbs = { on_data, on_end, on_error };
	const char *path, *addr = fe_model_pick(c->f, c->m, FE_POOL_DECODE, c->worker,
						 &c->worker, &path);
	struct strbuf body = STRBUF_INIT;

	c->tries++;
	if (!addr) {
		reply_error(c, 503, NULL, "no worker of model '%s' is available", c->m->name);
		return;
	}
	const int32_t **ids = xcalloc(c->n, sizeof(*ids));
	size_t *lens = xcalloc(c->n, sizeof(*lens));
	for (size_t i = 0; i < c->n; i++) {
		ids[i] = c->inputs[i].v;
		lens[i] = c->inputs[i].n;
	}
	sb_reset(&c->resp);
	embed_request_encode(ids, lens, c->n, &body);
	free(ids);
	free(lens);
	int rc = rpc_call(c->f->rpc, addr, path, body.buf, body.len, 0, &cbs, c, &c->st);
	sb_release(&body);
	if (rc < 0) {
		c->st = NULL;
		reply_error(c, 502, NULL, "calling the worker: %s", err_msg());
	}
}

void fe_handle_embeddings(struct frontend *f, struct http_req *r)
{
	size_t len;
	const char *body = http_req_body(r, &len);
	struct fe_embed *c = xcalloc(1, sizeof(*c));
	cJSON *j = cJSON_ParseWithLength(body, len);
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
	const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(j, "encoding_format");
	const cJSON *dims = cJSON_GetObjectItemCaseSensitive(j, "dimensions");
	const cJSON *input = cJSON_GetObjectItemCaseSensitive(j, "input");

	c->f = f;
	c->http = r;
	sb_init(&c->resp, 0);
	f->inflight++;
	if (!cJSON_IsObject(j)) {
		reply_error(c, 400, NULL, "the body must be a JSON object");
		goto out;
	}
	if (!cJSON_IsString(model)) {
		reply_error(c, 400, "model", "'model' must be a string naming the model");
		goto out;
	}
	if (fmt && !cJSON_IsNull(fmt) && (!cJSON_IsString(fmt) ||
	    (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64")))) {
		reply_error(c, 400, "encoding_format", "'encoding_format' must be \"float\" or "
			    "\"base64\"");
		goto out;
	}
	c->base64 = cJSON_IsString(fmt) && !strcmp(fmt->valuestring, "base64");
	if (dims && !cJSON_IsNull(dims) && (!cJSON_IsNumber(dims) || dims->valuedouble < 1 ||
	    dims->valuedouble > 1 << 20 || dims->valuedouble != (int)dims->valuedouble)) {
		reply_error(c, 400, "dimensions", "'dimensions' must be a positive integer");
		goto out;
	}
	c->dimensions = cJSON_IsNumber(dims) ? (int)dims->valuedouble : 0;
	c->m = fe_model_get(f, model->valuestring);
	if (!c->m) {
		reply_error(c, 404, "model", "The model '%.400s' does not exist", model->valuestring);
		goto out;
	}
	c->stats = fe_stats_get(f, c->m->name);
	c->stats->inflight++;
	if (c->m->embedding_dim <= 0) {
		reply_error(c, 400, "model", "model '%s' is not an embedding model; use "
			    "/v1/chat/completions or /v1/completions", c->m->name);
		goto out;
	}
	if (c->dimensions && c->dimensions != c->m->embedding_dim &&
	    (!c->m->embedding_truncatable || c->dimensions > c->m->embedding_dim)) {
		if (c->m->embedding_truncatable)
			reply_error(c, 400, "dimensions", "'dimensions' must be at most %ld for "
				    "model '%s'", c->m->embedding_dim, c->m->name);
		else
			reply_error(c, 400, "dimensions", "model '%s' does not support "
				    "'dimensions' other than its %ld", c->m->name,
				    c->m->embedding_dim);
		goto out;
	}
	if (!input) {
		reply_error(c, 400, "input", "'input' is required");
		goto out;
	}
	if (parse_input(c, input) < 0) {
		reply_error(c, 400, "input", "%s", err_msg());
		goto out;
	}
	http_req_on_close(r, on_client_close, c);
	call_worker(c);
out:
	cJSON_Delete(j);
}
