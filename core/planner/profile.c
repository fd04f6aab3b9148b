/*
 * profile.c - worker profiles (see profile.h).
 */
#include "core/planner/profile.h"
#include "core/err.h"
#include "core/strbuf.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TINY 1e-9

static int parse_points(const cJSON *root, const char *name, const char *xname,
			const char *msname, struct profile_point *pt, int *n)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, name);
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) == 0)
		return err_set(-EINVAL, "profile: \"%s\" must be a non-empty array", name);
	if (cJSON_GetArraySize(arr) > PROFILE_MAX_POINTS)
		return err_set(-EINVAL, "profile: \"%s\" has more than %d points", name,
			       PROFILE_MAX_POINTS);
	*n = 0;
	const cJSON *e;
	cJSON_ArrayForEach(e, arr) {
		const char *keys[3] = { xname, msname, "tokens_per_s" };
		double v[3];
		for (int k = 0; k < 3; k++) {
			const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, keys[k]);
			if (!cJSON_IsNumber(f) || !(f->valuedouble > 0))
				return err_set(-EINVAL, "profile: %s[%d].%s must be a positive number",
					       name, *n, keys[k]);
			v[k] = f->valuedouble;
		}
		if (*n > 0 && !(v[0] > pt[*n - 1].x))
			return err_set(-EINVAL, "profile: %s[%d].%s is not above the point before",
				       name, *n, xname);
		pt[*n] = (struct profile_point){ v[0], v[1], v[2] };
		(*n)++;
	}
	return 0;
}

static void copy_str(const cJSON *root, const char *name, char *dst, size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
	snprintf(dst, cap, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int profile_parse(const char *json, size_t len, struct profile *p)
{
	memset(p, 0, sizeof(*p));
	cJSON *root = cJSON_ParseWithLength(json, len);
	int rc;
	if (!cJSON_IsObject(root)) {
		rc = err_set(-EINVAL, "profile: not a JSON object");
		goto out;
	}
	const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
	if (!cJSON_IsNumber(ver) || ver->valuedouble != PROFILE_VERSION) {
		rc = err_set(-EINVAL, "profile: \"version\" must be %d", PROFILE_VERSION);
		goto out;
	}
	copy_str(root, "model", p->model, sizeof(p->model));
	copy_str(root, "engine", p->engine, sizeof(p->engine));
	rc = parse_points(root, "prefill", "isl", "ttft_ms", p->prefill, &p->n_prefill);
	if (!rc)
		rc = parse_points(root, "decode", "concurrency", "itl_ms", p->decode, &p->n_decode);
out:
	cJSON_Delete(root);
	return rc;
}

int profile_load(const char *path, struct profile *p)
{
	struct strbuf sb;
	sb_init(&sb, 4096);
	int rc = sb_read_file(&sb, path, 1 << 20);
	if (!rc)
		rc = profile_parse(sb.buf, sb.len, p);
	sb_release(&sb);
	return rc ? err_wrap(rc, "%s", path) : 0;
}

static void add_points(cJSON *root, const char *name, const char *xname, const char *msname,
		       const struct profile_point *pt, int n)
{
	cJSON *arr = cJSON_AddArrayToObject(root, name);
	for (int i = 0; i < n; i++) {
		cJSON *e = cJSON_CreateObject();
		cJSON_AddNumberToObject(e, xname, pt[i].x);
		cJSON_AddNumberToObject(e, msname, pt[i].ms);
		cJSON_AddNumberToObject(e, "tokens_per_s", pt[i].tps);
		cJSON_AddItemToArray(arr, e);
	}
}

char *profile_to_json(const struct profile *p)
{
	cJSON *root = cJSON_CreateObject();
	cJSON_AddNumberToObject(root, "version", PROFILE_VERSION);
	cJSON_AddStringToObject(root, "model", p->model);
	cJSON_AddStringToObject(root, "engine", p->engine);
	add_points(root, "prefill", "isl", "ttft_ms", p->prefill, p->n_prefill);
	add_points(root, "decode", "concurrency", "itl_ms", p->decode, p->n_decode);
	char *s = cJSON_Print(root);
	cJSON_Delete(root);
	return s;
}

/* y at x on the piecewise-linear curve through pt (field by offset). */
static double interp(const struct profile_point *pt, int n, double x, int field)
{
#define Y(i) (field ? pt[i].tps : pt[i].ms)
	if (n == 1)
		return Y(0) > TINY ? Y(0) : TINY;
	int i = 0;
	while (i < n - 2 && x > pt[i + 1].x)
		i++;
	double y = Y(i) + (Y(i + 1) - Y(i)) * (x - pt[i].x) / (pt[i + 1].x - pt[i].x);
#undef Y
	return y > TINY ? y : TINY;
}

double profile_ttft_ms(const struct profile *p, double isl)
{
	return interp(p->prefill, p->n_prefill, isl, 0);
}

double profile_prefill_tps(const struct profile *p, double isl)
{
	return interp(p->prefill, p->n_prefill, isl, 1);
}

double profile_itl_ms(const struct profile *p, double c)
{
	return interp(p->decode, p->n_decode, c, 0);
}

double profile_decode_tps(const struct profile *p, double c)
{
	return interp(p->decode, p->n_decode, c, 1);
}

double profile_max_concurrency(const struct profile *p, double itl_ms)
{
	const struct profile_point *d = p->decode;
	int n = p->n_decode;
	for (int i = n - 1; i >= 0; i--) {
		if (d[i].ms > itl_ms)
			continue;
		if (i == n - 1)
			return d[i].x;
		/* d[i] meets it, d[i + 1] does not: where the segment crosses */
		return d[i].x + (d[i + 1].x - d[i].x) * (itl_ms - d[i].ms) / (d[i + 1].ms - d[i].ms);
	}
	return 0;
}
