/*
 * jget.c - typed access to tokenizer.json members, with error messages
 * that name the JSON path of the bad field.
 */
#include "core/tok/tok_int.h"
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *tok_jpath(char *buf, size_t size, const char *path, const char *key, long idx)
{
	if (key)
		snprintf(buf, size, "%s%s%s", path, *path ? "." : "", key);
	else
		snprintf(buf, size, "%s[%ld]", path, idx);
	return buf;
}

int tok_jget_str(const struct tj *obj, const char *key, const char *path, int required,
	     const char **s, size_t *len)
{
	const struct tj *v = tok_tj_get(obj, key);
	*s = NULL;
	if (len)
		*len = 0;
	if (!v || (v->type == TJ_NULL && !required)) {
		if (required)
			return err_set(-EINVAL, "%s: missing \"%s\"", path, key);
		return 0;
	}
	if (v->type != TJ_STR)
		return err_set(-EINVAL, "%s.%s: expected a string, found %s", path, key,
			       tok_tj_type_name(v));
	*s = v->u.s;
	if (len)
		*len = v->len;
	return 0;
}

int tok_jget_bool(const struct tj *obj, const char *key, const char *path, int def,
	      int *out)
{
	const struct tj *v = tok_tj_get(obj, key);
	if (!v || v->type == TJ_NULL) {
		*out = def;
		return 0;
	}
	if (v->type != TJ_TRUE && v->type != TJ_FALSE)
		return err_set(-EINVAL, "%s.%s: expected a boolean, found %s", path, key,
			       tok_tj_type_name(v));
	*out = v->type == TJ_TRUE;
	return 0;
}

int tok_jget_int(const struct tj *obj, const char *key, const char *path, long def,
	     long lo, long hi, long *out)
{
	const struct tj *v = tok_tj_get(obj, key);
	if (!v || v->type == TJ_NULL) {
		*out = def;
		return 0;
	}
	if (!tok_tj_is_int(v, (double)lo, (double)hi))
		return err_set(-EINVAL, "%s.%s: expected an integer in [%ld, %ld]", path,
			       key, lo, hi);
	*out = (long)v->u.num;
	return 0;
}

int tok_jget_type(const struct tj *obj, const char *path, const char **type)
{
	if (!obj || obj->type != TJ_OBJ)
		return err_set(-EINVAL, "%s: expected an object, found %s", path,
			       tok_tj_type_name(obj));
	return tok_jget_str(obj, "type", path, 1, type, NULL);
}

int tok_jget_char(const struct tj *obj, const char *key, const char *path,
	      uint32_t def, uint32_t *out)
{
	const char *s;
	size_t n;
	int rc = tok_jget_str(obj, key, path, 0, &s, &n);
	if (rc < 0)
		return rc;
	if (!s) {
		*out = def;
		return 0;
	}
	if (n == 0 || tok_utf8_char_len((unsigned char)s[0]) != n)
		return err_set(-EINVAL, "%s.%s: expected a single character", path, key);
	tok_utf8_decode((const unsigned char *)s, out);
	return 0;
}

int tok_jget_pattern(const struct tj *obj, const char *key, const char *path,
		 char **lit, size_t *litlen, struct tok_re *re)
{
	const struct tj *v = tok_tj_get(obj, key);
	char sub[256];
	*lit = NULL;
	*litlen = 0;
	memset(re, 0, sizeof(*re));
	if (!v)
		return err_set(-EINVAL, "%s: missing \"%s\"", path, key);
	tok_jpath(sub, sizeof(sub), path, key, 0);
	if (v->type != TJ_OBJ || v->len != 1 ||
	    (strcmp(v->u.kid[0].key, "String") && strcmp(v->u.kid[0].key, "Regex")))
		return err_set(-EINVAL, "%s: expected {\"String\": ...} or {\"Regex\": ...}", sub);
	const struct tj *p = &v->u.kid[0];
	if (p->type != TJ_STR)
		return err_set(-EINVAL, "%s.%s: expected a string, found %s", sub, p->key,
			       tok_tj_type_name(p));
	if (!strcmp(p->key, "String")) {
		*lit = xstrndup(p->u.s, p->len);
		*litlen = p->len;
		return 0;
	}
	int rc = tok_re_compile(re, p->u.s, p->len, 0);
	if (rc < 0)
		return err_wrap(rc, "%s.Regex", sub);
	return 0;
}
