/*
 * route.c - the standalone router's request-plane protocol (route.h).
 */
#include "core/proto/route.h"

#include "core/err.h"
#include "core/strbuf.h"
#include "core/tok/utf8.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A 1-16 digit hex string -> *v. */
static int hex_u64(const cJSON *j, uint64_t *v)
{
	const char *s = cJSON_IsString(j) ? j->valuestring : NULL;
	size_t n = s ? strlen(s) : 0;
	if (!n || n > 16 || strspn(s, "0123456789abcdefABCDEF") != n)
		return -1;
	*v = strtoull(s, NULL, 16);
	return 0;
}

/* A non-negative integer number (exact below 2^53) -> *v. */
static int num_u64(const cJSON *j, uint64_t *v)
{
	if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > 9007199254740992.0 ||
	    floor(j->valuedouble) != j->valuedouble)
		return -1;
	*v = (uint64_t)j->valuedouble;
	return 0;
}

static cJSON *parse_object(const char *json, size_t len, const char *what)
{
	cJSON *root = cJSON_ParseWithLength(json, len);
	if (!cJSON_IsObject(root)) {
		cJSON_Delete(root);
		err_set(-EINVAL, "%s: not a JSON object", what);
		return NULL;
	}
	return root;
}

void route_request_encode(const char *model, const char *request_id, const uint64_t *hashes,
			  size_t n, uint64_t exclude, size_t prompt_tokens, struct strbuf *out)
{
	sb_adds(out, "{\"model\":");
	sb_add_json_str(out, model, strlen(model));
	if (request_id && *request_id) {
		sb_adds(out, ",\"request_id\":");
		sb_add_json_str(out, request_id, strlen(request_id));
	}
	if (exclude)
		sb_addf(out, ",\"exclude\":\"%016" PRIx64 "\"", exclude);
	if (prompt_tokens)
		sb_addf(out, ",\"prompt_tokens\":%zu", prompt_tokens);
	sb_adds(out, ",\"block_hashes\":[");
	for (size_t i = 0; i < n; i++)
		sb_addf(out, i ? ",\"%016" PRIx64 "\"" : "\"%016" PRIx64 "\"", hashes[i]);
	sb_adds(out, "]}");
}

void route_request_release(struct route_request *r)
{
	free(r->model);
	free(r->request_id);
	free(r->hashes);
	free(r->token_ids);
	memset(r, 0, sizeof(*r));
}

static int request_fields(const cJSON *root, struct route_request *r)
{
	const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(root, "request_id");
	const cJSON *ex = cJSON_GetObjectItemCaseSensitive(root, "exclude");
	const cJSON *bh = cJSON_GetObjectItemCaseSensitive(root, "block_hashes");
	const cJSON *ti = cJSON_GetObjectItemCaseSensitive(root, "token_ids");
	const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "prompt_tokens");
	const cJSON *e;
	size_t i = 0;
	uint64_t v;

	if (!cJSON_IsString(model) || !*model->valuestring ||
	    !tok_utf8_is_valid(model->valuestring, strlen(model->valuestring)))
		return err_set(-EINVAL, "route: \"model\" must be a non-empty UTF-8 string");
	r->model = xstrdup(model->valuestring);
	if (id && (!cJSON_IsString(id) ||
		   !tok_utf8_is_valid(id->valuestring, strlen(id->valuestring))))
		return err_set(-EINVAL, "route: \"request_id\" must be a UTF-8 string");
	r->request_id = xstrdup(id ? id->valuestring : "");
	if (ex && hex_u64(ex, &r->exclude) < 0)
		return err_set(-EINVAL, "route: \"exclude\" must be a hex worker id");
	if (pt && (num_u64(pt, &v) < 0 || v > INT32_MAX))
		return err_set(-EINVAL, "route: \"prompt_tokens\" must be a token count");
	r->prompt_tokens = pt ? (size_t)v : 0;
	if (bh) {
		if (!cJSON_IsArray(bh))
			return err_set(-EINVAL, "route: \"block_hashes\" must be an array");
		r->has_hashes = 1;
		r->n_hashes = (size_t)cJSON_GetArraySize(bh);
		r->hashes = xmalloc((r->n_hashes + 1) * sizeof(*r->hashes));
		cJSON_ArrayForEach(e, bh)
			if (hex_u64(e, &r->hashes[i++]) < 0)
				return err_set(-EINVAL, "route: block hash %zu is not a hex string",
					       i - 1);
	} else if (ti) {
		if (!cJSON_IsArray(ti))
			return err_set(-EINVAL, "route: \"token_ids\" must be an array");
		r->has_tokens = 1;
		r->n_tokens = (size_t)cJSON_GetArraySize(ti);
		r->token_ids = xmalloc((r->n_tokens + 1) * sizeof(*r->token_ids));
		cJSON_ArrayForEach(e, ti) {
			if (num_u64(e, &v) < 0 || v > INT32_MAX)
				return err_set(-EINVAL, "route: token id %zu is not a token id", i);
			r->token_ids[i++] = (int32_t)v;
		}
	} else {
		return err_set(-EINVAL, "route: give \"block_hashes\" or \"token_ids\"");
	}
	return 0;
}

int route_request_decode(const char *json, size_t len, struct route_request *out)
{
	memset(out, 0, sizeof(*out));
	cJSON *root = parse_object(json, len, "route request");
	if (!root)
		return -EINVAL;
	int rc = request_fields(root, out);
	cJSON_Delete(root);
	if (rc < 0)
		route_request_release(out);
	return rc;
}

static const char *const role_names[] = { "agg", "prefill", "decode" };

static const char *role_name(enum route_role role)
{
	return (unsigned)role < 3 ? role_names[role] : "?";
}

static int role_parse(const char *name, enum route_role *out)
{
	for (unsigned i = 0; i < 3; i++)
		if (!strcmp(name, role_names[i])) {
			*out = (enum route_role)i;
			return 0;
		}
	return -EINVAL;
}

/* The entry that streams the tokens ("agg" or "decode"), or NULL. */
static const struct route_worker *streamer(const struct route_worker *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (w[i].role != ROUTE_ROLE_PREFILL)
			return &w[i];
	return NULL;
}

void route_reply_encode(uint64_t route_id, const struct route_choice *d,
			const struct route_worker *workers, size_t n_workers,
			const char *disagg, size_t request_blocks, struct strbuf *out)
{
	const struct route_worker *s = streamer(workers, n_workers);
	sb_addf(out, "{\"route_id\":%" PRIu64 ",\"worker_id\":\"%016" PRIx64 "\",", route_id,
		s ? s->worker : 0);
	if (disagg) {
		sb_adds(out, "\"disagg\":");
		sb_add_json_str(out, disagg, strlen(disagg));
		sb_addch(out, ',');
	}
	sb_adds(out, "\"workers\":[");
	for (size_t i = 0; i < n_workers; i++)
		sb_addf(out, "%s{\"worker_id\":\"%016" PRIx64 "\",\"role\":\"%s\"}", i ? "," : "",
			workers[i].worker, role_name(workers[i].role));
	sb_addf(out, "],\"overlap_blocks\":%u,\"request_blocks\":%zu,\"cost\":%.6g,"
		"\"candidates\":[", d->overlap, request_blocks, d->cost);
	for (size_t i = 0; i < d->n_cands; i++) {
		const struct route_candidate *c = &d->cands[i];
		sb_addf(out, "%s{\"worker_id\":\"%016" PRIx64 "\",\"overlap_blocks\":%u,"
			"\"prefill_blocks\":%.6g,\"decode_blocks\":%.6g,\"cost\":%.6g}",
			i ? "," : "", c->worker, c->overlap, c->prefill_blocks, c->decode_blocks,
			c->cost);
	}
	sb_adds(out, "]}");
}

uint64_t route_reply_worker_as(const struct route_reply *r, enum route_role role)
{
	for (size_t i = 0; i < r->n_workers; i++)
		if (r->workers[i].role == role)
			return r->workers[i].worker;
	return 0;
}

/* The reply's "workers" (absent: the one agg worker of "worker_id"); one
 * of them streams, and it is the one "worker_id" names. */
static int reply_workers(const cJSON *root, struct route_reply *r)
{
	const cJSON *ws = cJSON_GetObjectItemCaseSensitive(root, "workers"), *e;
	if (!ws) {
		r->workers[0] = (struct route_worker){ r->worker, ROUTE_ROLE_AGG };
		r->n_workers = 1;
		return 0;
	}
	if (!cJSON_IsArray(ws) || cJSON_GetArraySize(ws) > ROUTE_MAX_WORKERS)
		return err_set(-EINVAL, "route reply: \"workers\" must be an array of at most %d",
			       ROUTE_MAX_WORKERS);
	cJSON_ArrayForEach(e, ws) {
		struct route_worker *w = &r->workers[r->n_workers++];
		const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
		if (hex_u64(cJSON_GetObjectItemCaseSensitive(e, "worker_id"), &w->worker) < 0 ||
		    !cJSON_IsString(role) || role_parse(role->valuestring, &w->role) < 0)
			return err_set(-EINVAL, "route reply: workers[%zu] needs a hex worker_id "
				       "and a role (agg, prefill or decode)", r->n_workers - 1);
	}
	size_t streamers = 0;
	for (size_t i = 0; i < r->n_workers; i++)
		streamers += r->workers[i].role != ROUTE_ROLE_PREFILL;
	const struct route_worker *s = streamer(r->workers, r->n_workers);
	if (streamers != 1 || s->worker != r->worker)
		return err_set(-EINVAL, "route reply: \"workers\" must name worker_id as its one "
			       "agg or decode worker");
	return 0;
}

int route_reply_decode(const char *json, size_t len, struct route_reply *out)
{
	memset(out, 0, sizeof(*out));
	cJSON *root = parse_object(json, len, "route reply");
	if (!root)
		return -EINVAL;
	uint64_t ov = 0, rb = 0;
	const cJSON *cost = cJSON_GetObjectItemCaseSensitive(root, "cost");
	const cJSON *dis = cJSON_GetObjectItemCaseSensitive(root, "disagg");
	int rc = 0;
	if (num_u64(cJSON_GetObjectItemCaseSensitive(root, "route_id"), &out->route_id) < 0 ||
	    hex_u64(cJSON_GetObjectItemCaseSensitive(root, "worker_id"), &out->worker) < 0 ||
	    num_u64(cJSON_GetObjectItemCaseSensitive(root, "overlap_blocks"), &ov) < 0 ||
	    num_u64(cJSON_GetObjectItemCaseSensitive(root, "request_blocks"), &rb) < 0 ||
	    ov > UINT32_MAX)
		rc = err_set(-EINVAL, "route reply: missing or bad route_id, worker_id, "
			     "overlap_blocks or request_blocks");
	else if (dis && (!cJSON_IsString(dis) || strlen(dis->valuestring) >= sizeof(out->disagg)))
		rc = err_set(-EINVAL, "route reply: \"disagg\" must be a short string");
	else
		rc = reply_workers(root, out);
	if (rc == 0 && dis)
		snprintf(out->disagg, sizeof(out->disagg), "%s", dis->valuestring);
	out->overlap = (uint32_t)ov;
	out->request_blocks = (size_t)rb;
	out->cost = cJSON_IsNumber(cost) ? cost->valuedouble : 0;
	cJSON_Delete(root);
	return rc;
}

void route_first_token_encode(uint64_t route_id, struct strbuf *out)
{
	sb_addf(out, "{\"route_id\":%" PRIu64 "}", route_id);
}

int route_first_token_decode(const char *json, size_t len, uint64_t *route_id)
{
	cJSON *root = parse_object(json, len, "first_token");
	if (!root)
		return -EINVAL;
	int rc = num_u64(cJSON_GetObjectItemCaseSensitive(root, "route_id"), route_id);
	cJSON_Delete(root);
	return rc < 0 ? err_set(-EINVAL, "first_token: \"route_id\" must be a number") : 0;
}
