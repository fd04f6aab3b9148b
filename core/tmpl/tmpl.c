/*
 * tmpl.c - the public surface of the template engine that is not
 * rendering itself: compiling templates, building variables from JSON,
 * and parsing the fixed "now" used by strftime_now().
 */
#include "core/tmpl/internal.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Compile memory: generous for any real template, bounded for hostile ones. */
#define COMPILE_MEMORY_BASE (16u << 20)
#define COMPILE_MEMORY_PER_BYTE 64u

int tmpl_compile(const char *src, size_t len, const char *name, struct tmpl **out)
{
	*out = NULL;
	if (!name)
		name = "template";
	if (!utf8_valid(src, len))
		return err_set(-EINVAL, "%s: template is not valid UTF-8", name);
	if (memchr(src, '\0', len))
		return err_set(-EINVAL, "%s: template contains a NUL byte", name);
	struct tmpl *t = xcalloc(1, sizeof(*t));
	t->name = xstrdup(name);
	size_t cap = COMPILE_MEMORY_BASE;
	if (len < (SIZE_MAX - cap) / COMPILE_MEMORY_PER_BYTE)
		cap += len * COMPILE_MEMORY_PER_BYTE;
	ar_init(&t->ar, cap, NULL, NULL);	/* tmpl_parse installs its handler */
	char err[600];
	err[0] = '\0';
	int rc = tmpl_parse(t, src, len, err, sizeof(err));
	if (rc < 0) {
		rc = err_set(rc, "%s: %s", name, err);
		tmpl_free(t);
		return rc;
	}
	/* no allocation happens after compile: drop the handler that points
	 * into the parser's (arena) state */
	t->ar.oom = NULL;
	t->ar.oom_ctx = NULL;
	*out = t;
	return 0;
}

void tmpl_free(struct tmpl *t)
{
	if (!t)
		return;
	ar_free_all(&t->ar);
	free(t->name);
	free(t);
}

/* ---- variables --------------------------------------------------------- */

static void vars_oom(void *ctx, size_t want)
{
	(void)ctx;
	fprintf(stderr, "dyn: out of memory (%zu bytes)\n", want);
	abort();
}

struct tmpl_vars *tmpl_vars_new(void)
{
	struct tmpl_vars *v = xcalloc(1, sizeof(*v));
	ar_init(&v->ar, 0, vars_oom, NULL);
	return v;
}

void tmpl_vars_free(struct tmpl_vars *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->names[i]);
	free(v->names);
	free(v->vals);
	ar_free_all(&v->ar);
	free(v);
}

static void vars_put(struct tmpl_vars *v, const char *name, size_t n, struct tv val)
{
	for (size_t i = 0; i < v->n; i++) {
		if (strlen(v->names[i]) == n && !memcmp(v->names[i], name, n)) {
			v->vals[i] = val;
			return;
		}
	}
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 16;
		v->names = xrealloc(v->names, v->cap * sizeof(char *));
		v->vals = xrealloc(v->vals, v->cap * sizeof(struct tv));
	}
	v->names[v->n] = xstrndup(name, n);
	v->vals[v->n] = val;
	v->n++;
}

void vars_put_value(struct tmpl_vars *v, const char *name, struct tv val)
{
	vars_put(v, name, strlen(name), val);
}

bool vars_get_value(const struct tmpl_vars *v, const char *name, struct tv *out)
{
	for (size_t i = v ? v->n : 0; i-- > 0;) {
		if (!strcmp(v->names[i], name)) {
			*out = v->vals[i];
			return true;
		}
	}
	return false;
}

int tmpl_vars_set_json(struct tmpl_vars *v, const char *name, const char *json, size_t len)
{
	struct tv val;
	char err[200];
	if (json_to_tv(&v->ar, json, len, &val, err, sizeof(err)) < 0)
		return err_set(-EINVAL, "%s: %s", name, err);
	vars_put(v, name, strlen(name), val);
	return 0;
}

int tmpl_vars_set_str(struct tmpl_vars *v, const char *name, const char *s)
{
	size_t n = strlen(s);
	if (!utf8_valid(s, n))
		return err_set(-EINVAL, "%s: not valid UTF-8", name);
	vars_put(v, name, strlen(name), tv_strn(ar_strndup(&v->ar, s, n), n));
	return 0;
}

int tmpl_vars_set_bool(struct tmpl_vars *v, const char *name, bool b)
{
	vars_put(v, name, strlen(name), tv_bool(b));
	return 0;
}

int tmpl_vars_set_none(struct tmpl_vars *v, const char *name)
{
	vars_put(v, name, strlen(name), tv_none());
	return 0;
}

int tmpl_vars_merge_json(struct tmpl_vars *v, const char *json, size_t len)
{
	struct tv val;
	char err[200];
	if (json_to_tv(&v->ar, json, len, &val, err, sizeof(err)) < 0)
		return err_set(-EINVAL, "%s", err);
	if (val.kind != TV_DICT)
		return err_set(-EINVAL, "expected a JSON object of variables");
	for (size_t i = 0; i < val.d->n; i++)
		vars_put(v, val.d->k[i].s.p, val.d->k[i].s.n, val.d->v[i]);
	return 0;
}

bool tmpl_vars_has(const struct tmpl_vars *v, const char *name)
{
	for (size_t i = 0; v && i < v->n; i++)
		if (!strcmp(v->names[i], name))
			return true;
	return false;
}

/* ---- the time strftime_now() sees ----------------------------------------- */

int tmpl_parse_now(const char *s, struct tm *tm)
{
	int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
	memset(tm, 0, sizeof(*tm));
	if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3)
		goto bad;
	const char *p = s + n;
	if (*p == 'T' || *p == ' ') {
		int k = 0;
		if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &k) != 2)
			goto bad;
		p += 1 + k;
		if (*p == ':') {
			if (sscanf(p + 1, "%2d%n", &sec, &k) != 1)
				goto bad;
			p += 1 + k;
		}
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1)
		goto bad;
	tm->tm_year = y - 1900;
	tm->tm_mon = mo - 1;
	tm->tm_mday = d;
	tm->tm_hour = h;
	tm->tm_min = mi;
	tm->tm_sec = sec;
	/* weekday and day of the year, independent of the time zone */
	struct tm tmp = *tm;
	time_t t = timegm(&tmp);
	struct tm check;
	gmtime_r(&t, &check);
	if (check.tm_mday != d || check.tm_mon != mo - 1)
		goto bad;
	tm->tm_wday = check.tm_wday;
	tm->tm_yday = check.tm_yday;
	tm->tm_isdst = 0;
	return 0;
bad:
	return err_set(-EINVAL, "'%s' is not a date (YYYY-MM-DD[THH:MM[:SS]])", s);
}
