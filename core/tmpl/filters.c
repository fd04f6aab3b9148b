/*
 * filters.c - jinja2's built-in filters and tests, with jinja2 3.1's
 * argument names, defaults and quirks (|int turns "42.5" into 42, |unique
 * and |sort ignore case by default, |map/|select/|items return one-shot
 * iterators, |title splits words its own way ...), and transformers'
 * |tojson (json.dumps with ensure_ascii=False, indent, separators,
 * sort_keys: no HTML escaping).
 *
 * |wordwrap is in wordwrap.c.  |random and |urlize are known (so
 * templates using them compile as in jinja2) but fail, naming the
 * filter, when called.
 */
#include "core/tmpl/internal.h"

#include <errno.h>
#include <fenv.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TVF_GROUP TVF_KEYS	/* on a tuple: groupby's (grouper, list) */

/* ---- helpers -------------------------------------------------------------- */

/* jinja2's soft_str: strings (Markup too) stay, the rest becomes str(). */
static struct tv soft_str(struct rt *rt, struct tv v)
{
	if (v.kind == TV_STR)
		return v;
	return rt_to_str(rt, v);
}

static int64_t int_arg(struct rt *rt, struct tv v, const char *what)
{
	if (v.kind == TV_INT)
		return v.i;
	if (v.kind == TV_BOOL)
		return v.b;
	if (v.kind == TV_FLOAT && v.f == floor(v.f) && fabs(v.f) < 9e18)
		return (int64_t)v.f;
	rt_fail(rt, "%s must be an integer, not %s", what, tv_type_name(v));
}

static struct tv iter_list(struct rt *rt, struct tv *items, size_t n, unsigned flags)
{
	struct tv l = tv_list_new(&rt->ar, n, flags);
	if (n)
		memcpy(l.l->v, items, n * sizeof(struct tv));
	return l;
}

static struct tv ignore_case(struct rt *rt, struct tv v)
{
	return v.kind == TV_STR ? str_lower(rt, v) : v;
}

/* jinja2's make_attrgetter: "a.b.0" looked up with getitem per part. */
static struct tv attr_get(struct rt *rt, struct tv item, struct tv attribute, bool lower, struct tv def)
{
	if (attribute.kind == TV_NONE) {
		/* no attribute: the item itself */
	} else if (attribute.kind == TV_INT) {
		item = rt_getitem(rt, item, attribute);
		if (def.kind != TV_NONE && item.kind == TV_UNDEF)
			item = def;
	} else {
		struct tv a = soft_str(rt, attribute);
		const char *p = a.s.p, *end = p + a.s.n;
		for (;;) {
			const char *dot = memchr(p, '.', (size_t)(end - p));
			const char *pe = dot ? dot : end;
			struct tv key = tv_strn(p, (size_t)(pe - p));
			bool digits = pe > p;
			for (const char *q = p; q < pe; q++)
				if (*q < '0' || *q > '9')
					digits = false;
			if (digits && pe - p < 18) {
				/* strings are not NUL-terminated where they end */
				char num[20];
				memcpy(num, p, (size_t)(pe - p));
				num[pe - p] = '\0';
				key = tv_int(strtoll(num, NULL, 10));
			}
			item = rt_getitem(rt, item, key);
			if (def.kind != TV_NONE && item.kind == TV_UNDEF)
				item = def;
			if (!dot)
				break;
			p = dot + 1;
		}
	}
	return lower ? ignore_case(rt, item) : item;
}

/* Stable merge sort of idx[] by keys (rt_order), optionally reversed. */
struct sorter {
	struct rt *rt;
	struct tv *keys;
	bool reverse;
};

static bool sort_before(struct sorter *s, size_t a, size_t b)
{
	/* is element b strictly before element a? (then b must move first) */
	int c = rt_order(s->rt, s->keys[b], s->keys[a]);
	return s->reverse ? c > 0 : c < 0;
}

static void merge_sort(struct sorter *s, size_t *idx, size_t *tmp, size_t n)
{
	if (n < 2)
		return;
	size_t h = n / 2;
	merge_sort(s, idx, tmp, h);
	merge_sort(s, idx + h, tmp, n - h);
	size_t i = 0, j = h, k = 0;
	while (i < h && j < n) {
		if (sort_before(s, idx[i], idx[j]))
			tmp[k++] = idx[j++];
		else
			tmp[k++] = idx[i++];
	}
	while (i < h)
		tmp[k++] = idx[i++];
	while (j < n)
		tmp[k++] = idx[j++];
	memcpy(idx, tmp, n * sizeof(size_t));
}

static size_t *sorted_order(struct rt *rt, struct tv *keys, size_t n, bool reverse)
{
	size_t *idx = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(size_t));
	size_t *tmp = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(size_t));
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	struct sorter s = { rt, keys, reverse };
	merge_sort(&s, idx, tmp, n);
	return idx;
}

/* Parse a Python int() literal: whitespace, sign, underscores, base prefix. */
static bool parse_py_int(struct tv s, int base, int64_t *out)
{
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end && py_isspace((unsigned char)*p))
		p++;
	while (end > p && py_isspace((unsigned char)end[-1]))
		end--;
	bool neg = false;
	if (p < end && (*p == '+' || *p == '-'))
		neg = *p++ == '-';
	if (end - p >= 2 && p[0] == '0') {
		char c = (char)(p[1] | 0x20);
		int pb = c == 'x' ? 16 : c == 'o' ? 8 : c == 'b' ? 2 : 0;
		if (pb && (base == 0 || base == pb)) {
			base = pb;
			p += 2;
			if (p < end && *p == '_')
				p++;
		}
	}
	if (base == 0)
		base = 10;
	if (p >= end)
		return false;
	uint64_t v = 0;
	bool prev_us = true;
	for (; p < end; p++) {
		if (*p == '_') {
			if (prev_us)
				return false;
			prev_us = true;
			continue;
		}
		int d;
		char c = *p;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
			d = (c | 0x20) - 'a' + 10;
		else
			return false;
		if (d >= base)
			return false;
		if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
			return false;
		v = v * (uint64_t)base + (uint64_t)d;
		prev_us = false;
	}
	if (prev_us)
		return false;
	if (v > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return false;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return true;
}

/* Python float(str). */
static bool parse_py_float(struct rt *rt, struct tv s, double *out)
{
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end && py_isspace((unsigned char)*p))
		p++;
	while (end > p && py_isspace((unsigned char)end[-1]))
		end--;
	if (p >= end)
		return false;
	char *buf = ar_alloc_raw(&rt->ar, (size_t)(end - p) + 1);
	size_t k = 0;
	for (const char *q = p; q < end; q++) {
		if (*q == '_') {
			if (q == p || q + 1 >= end || !(q[-1] >= '0' && q[-1] <= '9') ||
			    !(q[1] >= '0' && q[1] <= '9'))
				return false;
			continue;
		}
		buf[k++] = *q;
	}
	buf[k] = '\0';
	/* strtod also takes hex floats and "infinity"/"nan(...)": Python
	 * accepts inf, infinity, nan (any case) but not hex. */
	for (size_t i = 0; i < k; i++)
		if (buf[i] == 'x' || buf[i] == 'X' || buf[i] == '(')
			return false;
	char *e;
	double v = strtod(buf, &e);
	if (*e || e == buf)
		return false;
	*out = v;
	return true;
}

/* ---- the filters ------------------------------------------------------------- */

#define ARGS(fname, ...)                                                     \
	static const char *const names_[] = { __VA_ARGS__ };                 \
	enum { NP_ = sizeof(names_) / sizeof(names_[0]) };                   \
	bool given_[NP_];                                                     \
	bind_args(rt, fname, cv, names_, NP_, a, given_)

static void no_args(struct rt *rt, const char *fname, const struct callv *cv)
{
	if (cv->npos || cv->nkw)
		rt_fail(rt, "%s() takes no arguments", fname);
}

static struct tv f_abs(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "abs", cv);
	if (v.kind == TV_INT) {
		if (v.i == INT64_MIN)
			rt_fail(rt, "integer result too large");
		return tv_int(v.i < 0 ? -v.i : v.i);
	}
	if (v.kind == TV_BOOL)
		return tv_int(v.b);
	if (v.kind == TV_FLOAT)
		return tv_float(fabs(v.f));
	if (v.kind == TV_UNDEF)
		rt_fail_undef(rt, v);
	rt_fail(rt, "bad operand type for abs(): '%s'", tv_type_name(v));
}

static struct tv f_attr(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_none() };
	ARGS("attr", "name");
	struct tv name = soft_str(rt, a[0]);
	char *s = ar_strndup(&rt->ar, name.s.p, name.s.n);
	return rt_getattr_only(rt, v, s, name.s.n);
}

static struct tv f_batch(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_none(), tv_none() };
	ARGS("batch", "linecount", "fill_with");
	int64_t count = int_arg(rt, a[0], "linecount");
	if (count <= 0)
		rt_fail(rt, "batch() linecount must be positive");
	struct tlist *items = rt_iterate(rt, v);
	size_t nb = (items->n + (size_t)count - 1) / (size_t)count;
	struct tv out = tv_list_new(&rt->ar, nb, TVF_ITER);
	for (size_t b = 0; b < nb; b++) {
		size_t start = b * (size_t)count;
		size_t n = items->n - start < (size_t)count ? items->n - start : (size_t)count;
		size_t len = n;
		if (n < (size_t)count && a[1].kind != TV_NONE)
			len = (size_t)count;
		struct tv l = tv_list_new(&rt->ar, len, 0);
		memcpy(l.l->v, items->v + start, n * sizeof(struct tv));
		for (size_t i = n; i < len; i++)
			l.l->v[i] = a[1];
		out.l->v[b] = l;
	}
	return out;
}

static struct tv f_capitalize(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "capitalize", cv);
	return str_capitalize(rt, soft_str(rt, v));
}

static struct tv f_center(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_int(80) };
	ARGS("center", "width");
	return str_center(rt, soft_str(rt, v), int_arg(rt, a[0], "width"), " ", 1);
}

static struct tv f_default(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_strn("", 0), tv_bool(false) };
	ARGS("default", "default_value", "boolean");
	if (v.kind == TV_UNDEF || (tv_truthy(a[1]) && !tv_truthy(v)))
		return a[0];
	return v;
}

static struct tv pair(struct rt *rt, struct tv k, struct tv v)
{
	struct tv p = tv_list_new(&rt->ar, 2, TVF_TUPLE);
	p.l->v[0] = k;
	p.l->v[1] = v;
	return p;
}

static struct tv f_dictsort(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[3] = { tv_bool(false), tv_strn("key", 3), tv_bool(false) };
	ARGS("dictsort", "case_sensitive", "by", "reverse");
	int pos;
	if (a[1].kind == TV_STR && a[1].s.n == 3 && !memcmp(a[1].s.p, "key", 3))
		pos = 0;
	else if (a[1].kind == TV_STR && a[1].s.n == 5 && !memcmp(a[1].s.p, "value", 5))
		pos = 1;
	else
		rt_fail(rt, "You can only sort by either \"key\" or \"value\"");
	if (v.kind == TV_UNDEF)
		rt_fail_undef(rt, v);
	if (v.kind != TV_DICT)
		rt_fail(rt, "'%s' object has no attribute 'items'", tv_type_name(v));
	size_t n = v.d->n;
	struct tv *keys = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(struct tv));
	for (size_t i = 0; i < n; i++) {
		struct tv k = pos ? v.d->v[i] : v.d->k[i];
		keys[i] = tv_truthy(a[0]) ? k : ignore_case(rt, k);
	}
	size_t *idx = sorted_order(rt, keys, n, tv_truthy(a[2]));
	struct tv out = tv_list_new(&rt->ar, n, 0);
	for (size_t i = 0; i < n; i++)
		out.l->v[i] = pair(rt, v.d->k[idx[i]], v.d->v[idx[i]]);
	return out;
}

static struct tv f_escape(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "escape", cv);
	if (v.kind == TV_STR && (v.flags & TVF_MARKUP))
		return v;
	return str_escape_html(rt, rt_to_str(rt, v));
}

static struct tv f_forceescape(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "forceescape", cv);
	struct tv s = rt_to_str(rt, v);
	s.flags = 0;
	return str_escape_html(rt, s);
}

static struct tv f_filesizeformat(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_bool(false) };
	ARGS("filesizeformat", "binary");
	double bytes;
	if (tv_is_num(v))
		bytes = tv_as_double(v);
	else if (v.kind != TV_STR || !parse_py_float(rt, v, &bytes))
		rt_fail(rt, "could not convert %s to float", tv_type_name(v));
	bool binary = tv_truthy(a[0]);
	double base = binary ? 1024 : 1000;
	static const char *const dec[] = { "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB" };
	static const char *const bin[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB" };
	char buf[64];
	if (bytes == 1)
		return tv_strz("1 Byte");
	if (bytes < base) {
		snprintf(buf, sizeof(buf), "%.0f Bytes", trunc(bytes));
		return rt_str(rt, buf, strlen(buf));
	}
	double unit = base;
	int i;
	for (i = 0; i < 8; i++) {
		unit *= base;
		if (bytes < unit)
			break;
	}
	if (i == 8)
		i = 7;
	snprintf(buf, sizeof(buf), "%.1f %s", base * bytes / unit, binary ? bin[i] : dec[i]);
	return rt_str(rt, buf, strlen(buf));
}

static struct tv f_first(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "first", cv);
	struct tlist *l = rt_iterate(rt, v);
	if (!l->n) {
		struct tv u = tv_undef("\1No first item, sequence was empty.", NULL);
		return u;
	}
	return l->v[0];
}

static struct tv f_last(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "last", cv);
	if (v.kind == TV_LIST && (v.flags & TVF_ITER))
		rt_fail(rt, "'generator' object is not reversible");
	struct tlist *l = rt_iterate(rt, v);
	if (!l->n)
		return tv_undef("\1No last item, sequence was empty.", NULL);
	return l->v[l->n - 1];
}

static struct tv f_float(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_float(0.0) };
	ARGS("float", "default");
	double d;
	switch (v.kind) {
	case TV_FLOAT:
		return v;
	case TV_INT:
	case TV_BOOL:
	case TV_BIGINT:
		return tv_float(tv_as_double(v));
	case TV_STR:
		if (parse_py_float(rt, v, &d))
			return tv_float(d);
		return a[0];
	case TV_UNDEF:
		rt_fail_undef(rt, v);
	default:
		return a[0];
	}
}

static struct tv f_format(struct rt *rt, struct tv v, const struct callv *cv)
{
	if (cv->npos && cv->nkw)
		rt_fail(rt, "can't handle positional and keyword arguments at the same time");
	struct tv args;
	if (cv->nkw) {
		struct dict_builder db;
		db_init(&db, &rt->ar, cv->nkw);
		for (size_t i = 0; i < cv->nkw; i++)
			db_put(&db, tv_strz(cv->kwn[i]), cv->kwv[i]);
		args = db_done(&db);
	} else {
		args = iter_list(rt, cv->pos, cv->npos, TVF_TUPLE);
	}
	return str_percent_format(rt, soft_str(rt, v), args);
}

static struct tv f_groupby(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[3] = { tv_none(), tv_none(), tv_bool(false) };
	ARGS("groupby", "attribute", "default", "case_sensitive");
	bool cs = tv_truthy(a[2]);
	struct tlist *items = rt_iterate(rt, v);
	size_t n = items->n;
	struct tv *keys = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(struct tv));
	for (size_t i = 0; i < n; i++)
		keys[i] = attr_get(rt, items->v[i], a[0], !cs, a[1]);
	size_t *idx = sorted_order(rt, keys, n, false);
	struct tv out = tv_list_new(&rt->ar, n, 0);
	size_t ng = 0;
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		while (j < n && tv_equal(keys[idx[j]], keys[idx[i]]))
			j++;
		struct tv members = tv_list_new(&rt->ar, j - i, 0);
		for (size_t k = i; k < j; k++)
			members.l->v[k - i] = items->v[idx[k]];
		struct tv grouper = cs ? keys[idx[i]] : attr_get(rt, members.l->v[0], a[0], false, a[1]);
		struct tv g = pair(rt, grouper, members);
		g.flags |= TVF_GROUP;
		out.l->v[ng++] = g;
		i = j;
	}
	out.l->n = ng;
	return out;
}

static struct tv f_indent(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[3] = { tv_int(4), tv_bool(false), tv_bool(false) };
	ARGS("indent", "width", "first", "blank");
	/* jinja2 does s += "\n" first: only strings get through */
	if (v.kind == TV_UNDEF)
		rt_fail_undef(rt, v);
	if (v.kind != TV_STR)
		rt_fail(rt, "unsupported operand type(s) for +=: '%s' and 'str'", tv_type_name(v));
	struct tv s = v;
	struct tv ind;
	if (a[0].kind == TV_STR) {
		ind = a[0];
	} else {
		int64_t w = int_arg(rt, a[0], "width");
		if (w > 100000)
			rt_fail(rt, "indent width too large");
		if (w < 0)
			w = 0;
		char *sp = ar_alloc_raw(&rt->ar, (size_t)w + 1);
		memset(sp, ' ', (size_t)w);
		ind = tv_strn(sp, (size_t)w);
	}
	/* s += "\n"; lines = s.splitlines() */
	struct tv sn = tv_strn(ar_strndup(&rt->ar, s.s.p, s.s.n), s.s.n);
	{
		char *p = ar_alloc_raw(&rt->ar, s.s.n + 2);
		memcpy(p, s.s.p, s.s.n);
		p[s.s.n] = '\n';
		p[s.s.n + 1] = '\0';
		sn = tv_strn(p, s.s.n + 1);
	}
	struct tv lines = str_splitlines(rt, sn, false);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	if (tv_truthy(a[1]))
		ab_add(&b, ind.s.p, ind.s.n);
	if (tv_truthy(a[2])) {
		for (size_t i = 0; i < lines.l->n; i++) {
			if (i) {
				ab_addch(&b, '\n');
				ab_add(&b, ind.s.p, ind.s.n);
			}
			ab_add(&b, lines.l->v[i].s.p, lines.l->v[i].s.n);
		}
	} else {
		for (size_t i = 0; i < lines.l->n; i++) {
			struct tv line = lines.l->v[i];
			if (i) {
				ab_addch(&b, '\n');
				if (line.s.n)
					ab_add(&b, ind.s.p, ind.s.n);
			}
			ab_add(&b, line.s.p, line.s.n);
		}
	}
	struct tv r = tv_strn(b.p ? b.p : "", b.n);
	r.flags = s.flags & TVF_MARKUP;
	return r;
}

static struct tv f_int(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_int(0), tv_int(10) };
	ARGS("int", "default", "base");
	int64_t i;
	double d;
	switch (v.kind) {
	case TV_INT:
	case TV_BIGINT:
		return v;
	case TV_BOOL:
		return tv_int(v.b);
	case TV_FLOAT:
		if (isnan(v.f))
			return a[0];
		if (isinf(v.f))
			rt_fail(rt, "cannot convert float infinity to integer");
		if (fabs(v.f) >= 9.2e18)
			rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
		return tv_int((int64_t)v.f);
	case TV_STR: {
		int64_t base = int_arg(rt, a[1], "base");
		/* a bad base is a ValueError, which |int turns into the default */
		if ((base == 0 || (base >= 2 && base <= 36)) && parse_py_int(v, (int)base, &i))
			return tv_int(i);
		if (parse_py_float(rt, v, &d)) {
			if (isnan(d))
				return a[0];
			if (isinf(d))
				rt_fail(rt, "cannot convert float infinity to integer");
			if (fabs(d) >= 9.2e18)
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int((int64_t)d);
		}
		return a[0];
	}
	case TV_UNDEF:
		rt_fail_undef(rt, v);
	default:
		return a[0];
	}
}

static struct tv f_items(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "items", cv);
	if (v.kind == TV_UNDEF)
		return tv_list_new(&rt->ar, 0, TVF_ITER);
	if (v.kind != TV_DICT)
		rt_fail(rt, "Can only get item pairs from a mapping.");
	struct tv out = tv_list_new(&rt->ar, v.d->n, TVF_ITER);
	for (size_t i = 0; i < v.d->n; i++)
		out.l->v[i] = pair(rt, v.d->k[i], v.d->v[i]);
	return out;
}

static struct tv f_join(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_strn("", 0), tv_none() };
	ARGS("join", "d", "attribute");
	struct tlist *items = rt_iterate(rt, v);
	struct tv sep = rt_to_str(rt, a[0]);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	for (size_t i = 0; i < items->n; i++) {
		if (i)
			ab_add(&b, sep.s.p, sep.s.n);
		struct tv x = items->v[i];
		if (a[1].kind != TV_NONE)
			x = attr_get(rt, x, a[1], false, tv_none());
		tv_str_append(&b, x);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv f_length(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "length", cv);
	return tv_int((int64_t)rt_len(rt, v));
}

static struct tv f_list(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "list", cv);
	struct tlist *l = rt_iterate(rt, v);
	return iter_list(rt, l->v, l->n, 0);
}

static struct tv f_lower(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "lower", cv);
	return str_lower(rt, soft_str(rt, v));
}

static struct tv f_upper(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "upper", cv);
	return str_upper(rt, soft_str(rt, v));
}

static struct tv f_map(struct rt *rt, struct tv v, const struct callv *cv)
{
	if (!tv_truthy(v))
		return tv_list_new(&rt->ar, 0, TVF_ITER);
	struct tlist *items = rt_iterate(rt, v);
	struct tv out = tv_list_new(&rt->ar, items->n, TVF_ITER);
	size_t ai = SIZE_MAX, di = SIZE_MAX;
	for (size_t k = 0; k < cv->nkw; k++) {
		if (!strcmp(cv->kwn[k], "attribute"))
			ai = k;
		else if (!strcmp(cv->kwn[k], "default"))
			di = k;
	}
	if (!cv->npos && ai != SIZE_MAX) {
		for (size_t k = 0; k < cv->nkw; k++)
			if (k != ai && k != di)
				rt_fail(rt, "Unexpected keyword argument '%s'", cv->kwn[k]);
		struct tv def = di != SIZE_MAX ? cv->kwv[di] : tv_none();
		for (size_t i = 0; i < items->n; i++)
			out.l->v[i] = attr_get(rt, items->v[i], cv->kwv[ai], false, def);
		return out;
	}
	if (!cv->npos)
		rt_fail(rt, "map requires a filter argument");
	struct tv name = soft_str(rt, cv->pos[0]);
	char *fname = ar_strndup(&rt->ar, name.s.p, name.s.n);
	const struct filter_def *f = filter_find(fname);
	if (!f)
		rt_fail(rt, "No filter named '%s'.", fname);
	struct callv rest = { cv->pos + 1, cv->npos - 1, cv->kwn, cv->kwv, cv->nkw };
	for (size_t i = 0; i < items->n; i++)
		out.l->v[i] = filter_apply(rt, f, items->v[i], &rest);
	return out;
}

static struct tv minmax(struct rt *rt, struct tv v, const struct callv *cv, bool want_max)
{
	struct tv a[2] = { tv_bool(false), tv_none() };
	ARGS(want_max ? "max" : "min", "case_sensitive", "attribute");
	struct tlist *items = rt_iterate(rt, v);
	if (!items->n)
		return tv_undef("\1No aggregated item, sequence was empty.", NULL);
	bool lower = !tv_truthy(a[0]);
	size_t best = 0;
	struct tv bestk = attr_get(rt, items->v[0], a[1], lower, tv_none());
	for (size_t i = 1; i < items->n; i++) {
		struct tv k = attr_get(rt, items->v[i], a[1], lower, tv_none());
		int c = rt_order(rt, k, bestk);
		if (want_max ? c > 0 : c < 0) {
			best = i;
			bestk = k;
		}
	}
	return items->v[best];
}

static struct tv f_max(struct rt *rt, struct tv v, const struct callv *cv)
{
	return minmax(rt, v, cv, true);
}
static struct tv f_min(struct rt *rt, struct tv v, const struct callv *cv)
{
	return minmax(rt, v, cv, false);
}

static struct tv f_pprint(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "pprint", cv);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	tv_repr_append(&b, v);
	return tv_strn(b.p ? b.p : "", b.n);
}

/* select/reject/selectattr/rejectattr */
static struct tv select_common(struct rt *rt, struct tv v, const struct callv *cv, bool keep,
			       bool by_attr)
{
	if (!tv_truthy(v))
		return tv_list_new(&rt->ar, 0, TVF_ITER);
	struct tlist *items = rt_iterate(rt, v);
	size_t off = 0;
	struct tv attr = tv_none();
	if (by_attr) {
		if (!cv->npos)
			rt_fail(rt, "Missing parameter for attribute name");
		attr = cv->pos[0];
		off = 1;
	}
	const struct test_def *t = NULL;
	struct callv rest = { NULL, 0, cv->kwn, cv->kwv, cv->nkw };
	if (cv->npos > off) {
		struct tv name = soft_str(rt, cv->pos[off]);
		char *tname = ar_strndup(&rt->ar, name.s.p, name.s.n);
		t = test_find(tname);
		if (!t)
			rt_fail(rt, "No test named '%s'.", tname);
		rest.pos = cv->pos + off + 1;
		rest.npos = cv->npos - off - 1;
	}
	struct tv out = tv_list_new(&rt->ar, items->n, TVF_ITER);
	size_t n = 0;
	for (size_t i = 0; i < items->n; i++) {
		struct tv x = by_attr ? attr_get(rt, items->v[i], attr, false, tv_none()) : items->v[i];
		bool r = t ? test_apply(rt, t, x, &rest) : tv_truthy(x);
		if (r == keep)
			out.l->v[n++] = items->v[i];
	}
	out.l->n = n;
	return out;
}

static struct tv f_select(struct rt *rt, struct tv v, const struct callv *cv)
{
	return select_common(rt, v, cv, true, false);
}
static struct tv f_reject(struct rt *rt, struct tv v, const struct callv *cv)
{
	return select_common(rt, v, cv, false, false);
}
static struct tv f_selectattr(struct rt *rt, struct tv v, const struct callv *cv)
{
	return select_common(rt, v, cv, true, true);
}
static struct tv f_rejectattr(struct rt *rt, struct tv v, const struct callv *cv)
{
	return select_common(rt, v, cv, false, true);
}

static struct tv f_replace(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[3] = { tv_none(), tv_none(), tv_none() };
	ARGS("replace", "old", "new", "count");
	if (!given_[0] || !given_[1])
		rt_fail(rt, "replace() missing required arguments 'old' and 'new'");
	int64_t count = a[2].kind == TV_NONE ? -1 : int_arg(rt, a[2], "count");
	struct tv s = rt_to_str(rt, v);
	return str_replace(rt, s, rt_to_str(rt, a[0]), rt_to_str(rt, a[1]), count);
}

static struct tv f_reverse(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "reverse", cv);
	if (v.kind == TV_STR) {
		/* s[::-1] by code points */
		size_t n = utf8_len(v.s.p, v.s.n);
		char *out = ar_alloc_raw(&rt->ar, v.s.n + 1);
		const char *p = v.s.p + v.s.n;
		size_t o = 0;
		for (size_t i = 0; i < n; i++) {
			const char *q = p - 1;
			while (q > v.s.p && ((unsigned char)*q & 0xc0) == 0x80)
				q--;
			memcpy(out + o, q, (size_t)(p - q));
			o += (size_t)(p - q);
			p = q;
		}
		out[o] = '\0';
		return tv_strn(out, o);
	}
	if (v.kind == TV_LIST && (v.flags & TVF_ITER))
		rt_fail(rt, "argument to reversed() must be a sequence");
	struct tlist *l = rt_iterate(rt, v);
	struct tv out = tv_list_new(&rt->ar, l->n, TVF_ITER);
	for (size_t i = 0; i < l->n; i++)
		out.l->v[i] = l->v[l->n - 1 - i];
	return out;
}

/* Python's round(x, ndigits) for floats: correctly rounded, ties to even. */
static double py_round(double x, int64_t nd)
{
	if (!isfinite(x))
		return x;
	if (nd > 300)
		return x;
	if (nd >= 0) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%.*f", (int)nd, x);
		return strtod(buf, NULL);
	}
	if (nd < -308)
		return copysign(0.0, x);
	double p = pow(10.0, (double)-nd);
	double y = x / p;
	int saved = fegetround();
	fesetround(FE_TONEAREST);
	double z = nearbyint(y);
	fesetround(saved);
	return z * p;
}

static struct tv f_round(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_int(0), tv_strn("common", 6) };
	ARGS("round", "precision", "method");
	struct tv m = soft_str(rt, a[1]);
	int method;
	if (m.s.n == 6 && !memcmp(m.s.p, "common", 6))
		method = 0;
	else if (m.s.n == 4 && !memcmp(m.s.p, "ceil", 4))
		method = 1;
	else if (m.s.n == 5 && !memcmp(m.s.p, "floor", 5))
		method = 2;
	else
		rt_fail(rt, "method must be common, ceil or floor");
	if (v.kind == TV_UNDEF)
		rt_fail_undef(rt, v);
	if (!tv_is_num(v))
		rt_fail(rt, "type %s doesn't define __round__ method", tv_type_name(v));
	int64_t prec = int_arg(rt, a[0], "precision");
	if (method == 0) {
		if (v.kind == TV_INT || v.kind == TV_BOOL) {
			int64_t i = v.kind == TV_BOOL ? v.b : v.i;
			if (prec >= 0)
				return tv_int(i);
			if (prec < -18)
				return tv_int(0);
			int64_t p = 1;
			for (int64_t k = 0; k < -prec; k++)
				p *= 10;
			int64_t q = i / p, r = i % p;
			if (r < 0) {
				r += p;
				q -= 1;
			}
			if (r * 2 > p || (r * 2 == p && (q & 1)))
				q += 1;
			int64_t out;
			if (__builtin_mul_overflow(q, p, &out))
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			return tv_int(out);
		}
		return tv_float(py_round(tv_as_double(v), prec));
	}
	double p = pow(10.0, (double)prec);
	double x = tv_as_double(v) * p;
	double r = method == 1 ? ceil(x) : floor(x);
	return tv_float(r / p);
}

static struct tv f_safe(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "safe", cv);
	struct tv s = rt_to_str(rt, v);
	s.flags |= TVF_MARKUP;
	return s;
}

static struct tv f_slice(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_none(), tv_none() };
	ARGS("slice", "slices", "fill_with");
	int64_t slices = int_arg(rt, a[0], "slices");
	if (slices <= 0)
		rt_fail(rt, "slice() slices must be positive");
	if (slices > 100000)
		rt_fail(rt, "slice() too many slices");
	struct tlist *seq = rt_iterate(rt, v);
	size_t length = seq->n, per = length / (size_t)slices, extra = length % (size_t)slices;
	size_t offset = 0;
	struct tv out = tv_list_new(&rt->ar, (size_t)slices, TVF_ITER);
	for (size_t s = 0; s < (size_t)slices; s++) {
		size_t start = offset + s * per;
		if (s < extra)
			offset++;
		size_t end = offset + (s + 1) * per;
		bool fill = a[1].kind != TV_NONE && s >= extra;
		struct tv l = tv_list_new(&rt->ar, end - start + (fill ? 1 : 0), 0);
		if (end > start)
			memcpy(l.l->v, seq->v + start, (end - start) * sizeof(struct tv));
		if (fill)
			l.l->v[end - start] = a[1];
		out.l->v[s] = l;
	}
	return out;
}

static struct tv f_sort(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[3] = { tv_bool(false), tv_bool(false), tv_none() };
	ARGS("sort", "reverse", "case_sensitive", "attribute");
	struct tlist *items = rt_iterate(rt, v);
	size_t n = items->n;
	bool lower = !tv_truthy(a[1]);
	struct tv *keys = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(struct tv));
	/* attribute "a,b" sorts by several keys: a tuple of them */
	struct tv attr = a[2];
	size_t nparts = 1;
	struct tv *parts = &attr;
	if (attr.kind == TV_STR && memchr(attr.s.p, ',', attr.s.n)) {
		struct tv split = str_split(rt, attr, tv_strn(",", 1), -1, false);
		parts = split.l->v;
		nparts = split.l->n;
	}
	/* jinja2's make_multi_attrgetter: the key is always a list, so equal
	 * keys (even Undefined ones) are never ordered with '<' */
	for (size_t i = 0; i < n; i++) {
		struct tv k = tv_list_new(&rt->ar, nparts, 0);
		for (size_t j = 0; j < nparts; j++)
			k.l->v[j] = attr_get(rt, items->v[i], parts[j], lower, tv_none());
		keys[i] = k;
	}
	size_t *idx = sorted_order(rt, keys, n, tv_truthy(a[0]));
	struct tv out = tv_list_new(&rt->ar, n, 0);
	for (size_t i = 0; i < n; i++)
		out.l->v[i] = items->v[idx[i]];
	return out;
}

static struct tv f_string(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "string", cv);
	return soft_str(rt, v);
}

static struct tv f_striptags(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "striptags", cv);
	struct tv s = rt_to_str(rt, v);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	const char *p = s.s.p, *end = p + s.s.n;
	bool space = false;
	while (p < end) {
		if (end - p >= 4 && !memcmp(p, "<!--", 4)) {
			const char *c = memmem(p + 4, (size_t)(end - p - 4), "-->", 3);
			if (c) {
				p = c + 3;
				continue;
			}
		}
		if (*p == '<') {
			const char *c = memchr(p, '>', (size_t)(end - p));
			if (c) {
				p = c + 1;
				continue;
			}
		}
		const char *q = p;
		uint32_t c = utf8_next(&q, end);
		if (py_isspace(c)) {
			space = true;
		} else {
			if (space && b.n)
				ab_addch(&b, ' ');
			space = false;
			/* unescape the common entities */
			static const struct { const char *e; const char *r; } ents[] = {
				{ "&amp;", "&" }, { "&lt;", "<" }, { "&gt;", ">" }, { "&quot;", "\"" },
				{ "&#34;", "\"" }, { "&#39;", "'" }, { "&apos;", "'" }, { "&nbsp;", "\xc2\xa0" },
			};
			size_t i;
			for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
				size_t el = strlen(ents[i].e);
				if ((size_t)(end - p) >= el && !memcmp(p, ents[i].e, el)) {
					ab_adds(&b, ents[i].r);
					q = p + el;
					break;
				}
			}
			if (i == sizeof(ents) / sizeof(ents[0]))
				ab_add(&b, p, (size_t)(q - p));
		}
		p = q;
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv f_sum(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_none(), tv_int(0) };
	ARGS("sum", "attribute", "start");
	struct tlist *items = rt_iterate(rt, v);
	struct tv acc = a[1];
	for (size_t i = 0; i < items->n; i++) {
		struct tv x = a[0].kind != TV_NONE ? attr_get(rt, items->v[i], a[0], false, tv_none())
						   : items->v[i];
		if (x.kind == TV_STR)
			rt_fail(rt, "unsupported operand type(s) for +: '%s' and 'str'", tv_type_name(acc));
		if (!tv_is_num(acc) || !tv_is_num(x)) {
			if (x.kind == TV_UNDEF)
				rt_fail_undef(rt, x);
			rt_fail(rt, "unsupported operand type(s) for +: '%s' and '%s'", tv_type_name(acc),
				tv_type_name(x));
		}
		if ((acc.kind == TV_INT || acc.kind == TV_BOOL) && (x.kind == TV_INT || x.kind == TV_BOOL)) {
			int64_t r;
			int64_t ai = acc.kind == TV_BOOL ? acc.b : acc.i, xi = x.kind == TV_BOOL ? x.b : x.i;
			if (__builtin_add_overflow(ai, xi, &r))
				rt_fail(rt, "integer result too large (dyn's integers are 64-bit)");
			acc = tv_int(r);
		} else {
			acc = tv_float(tv_as_double(acc) + tv_as_double(x));
		}
	}
	return acc;
}

static bool title_sep(uint32_t c)
{
	return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
}

static struct tv f_title(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "title", cv);
	struct tv s = soft_str(rt, v);
	/* re.split(r"([-\s({\[<]+)"): each piece, separators included,
	 * gets item[0].upper() + item[1:].lower() */
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		const char *q = p;
		bool sep = title_sep(utf8_next(&q, end));
		const char *e = q;
		while (e < end) {
			const char *r = e;
			if (title_sep(utf8_next(&r, end)) != sep)
				break;
			e = r;
		}
		struct tv first = tv_strn(p, (size_t)(q - p));
		struct tv up = str_upper(rt, first);
		ab_add(&b, up.s.p, up.s.n);
		struct tv rest = str_lower(rt, tv_strn(q, (size_t)(e - q)));
		ab_add(&b, rest.s.p, rest.s.n);
		p = e;
	}
	struct tv r = tv_strn(b.p ? b.p : "", b.n);
	r.flags = s.flags & TVF_MARKUP;
	return r;
}

static struct tv f_tojson(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[4] = { tv_bool(false), tv_none(), tv_none(), tv_bool(false) };
	ARGS("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
	const char *indent = NULL;
	size_t indent_n = 0;
	bool have_indent = a[1].kind != TV_NONE;
	if (a[1].kind == TV_STR) {
		indent = a[1].s.p;
		indent_n = a[1].s.n;
	} else if (have_indent) {
		int64_t w = int_arg(rt, a[1], "indent");
		if (w > 1000)
			rt_fail(rt, "tojson indent too large");
		if (w < 0)
			w = 0;
		char *sp = ar_alloc_raw(&rt->ar, (size_t)w + 1);
		memset(sp, ' ', (size_t)w);
		sp[w] = '\0';
		indent = sp;
		indent_n = (size_t)w;
	}
	const char *item_sep = NULL, *key_sep = NULL;
	if (a[2].kind != TV_NONE) {
		struct tlist *l = a[2].kind == TV_LIST ? a[2].l : NULL;
		if (!l || l->n != 2 || l->v[0].kind != TV_STR || l->v[1].kind != TV_STR)
			rt_fail(rt, "tojson separators must be a pair of strings");
		item_sep = ar_strndup(&rt->ar, l->v[0].s.p, l->v[0].s.n);
		key_sep = ar_strndup(&rt->ar, l->v[1].s.p, l->v[1].s.n);
	}
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	tv_to_json(rt, &b, v, tv_truthy(a[0]), indent, indent_n, have_indent, item_sep, key_sep,
		   tv_truthy(a[3]));
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv f_trim(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_none() };
	ARGS("trim", "chars");
	if (a[0].kind != TV_NONE && a[0].kind != TV_STR)
		rt_fail(rt, "strip arg must be None or str");
	return str_strip(rt, soft_str(rt, v), a[0], 3);
}

static struct tv f_truncate(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[4] = { tv_int(255), tv_bool(false), tv_strn("...", 3), tv_none() };
	ARGS("truncate", "length", "killwords", "end", "leeway");
	struct tv end = soft_str(rt, a[2]);
	int64_t length = int_arg(rt, a[0], "length");
	int64_t leeway = a[3].kind == TV_NONE ? 5 : int_arg(rt, a[3], "leeway");
	int64_t endlen = (int64_t)utf8_len(end.s.p, end.s.n);
	if (length < endlen)
		rt_fail(rt, "expected length >= %" PRId64 ", got %" PRId64, endlen, length);
	if (leeway < 0)
		rt_fail(rt, "expected leeway >= 0, got %" PRId64, leeway);
	/* jinja2 takes len() of the value as it is: short lists pass through */
	int64_t len = (int64_t)rt_len(rt, v);
	if (len <= length + leeway)
		return v;
	if (v.kind != TV_STR)
		rt_fail(rt, "'%s' object has no attribute 'rsplit'", tv_type_name(v));
	struct tv s = v;
	size_t cut = utf8_offset(s.s.p, s.s.n, (size_t)(length - endlen));
	struct tv head = tv_strn(s.s.p, cut);
	if (!tv_truthy(a[1])) {
		const char *sp = NULL;
		for (size_t i = cut; i-- > 0;)
			if (s.s.p[i] == ' ') {
				sp = s.s.p + i;
				break;
			}
		if (sp)
			head = tv_strn(s.s.p, (size_t)(sp - s.s.p));
	}
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	ab_add(&b, head.s.p, head.s.n);
	ab_add(&b, end.s.p, end.s.n);
	return tv_strn(b.p, b.n);
}

static struct tv f_unique(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[2] = { tv_bool(false), tv_none() };
	ARGS("unique", "case_sensitive", "attribute");
	struct tlist *items = rt_iterate(rt, v);
	bool lower = !tv_truthy(a[0]);
	struct tv out = tv_list_new(&rt->ar, items->n, TVF_ITER);
	struct tv *seen = ar_alloc_raw(&rt->ar, (items->n + 1) * sizeof(struct tv));
	size_t n = 0;
	for (size_t i = 0; i < items->n; i++) {
		struct tv key = attr_get(rt, items->v[i], a[1], lower, tv_none());
		if (!tv_hashable(key))
			rt_fail(rt, "unhashable type: '%s'", tv_type_name(key));
		bool dup = false;
		for (size_t k = 0; k < n && !dup; k++)
			dup = tv_equal(seen[k], key);
		if (dup)
			continue;
		rt_step(rt);
		seen[n] = key;
		out.l->v[n++] = items->v[i];
	}
	out.l->n = n;
	return out;
}

static void url_quote(struct abuf *b, struct tv s, bool for_qs)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < s.s.n; i++) {
		unsigned char c = (unsigned char)s.s.p[i];
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '_' || c == '.' || c == '-' || c == '~' || (c == '/' && !for_qs)) {
			ab_addch(b, (char)c);
		} else if (c == ' ' && for_qs) {
			ab_addch(b, '+');
		} else {
			ab_addch(b, '%');
			ab_addch(b, hex[c >> 4]);
			ab_addch(b, hex[c & 15]);
		}
	}
}

static struct tv f_urlencode(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "urlencode", cv);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	if (v.kind == TV_STR || !(v.kind == TV_LIST || v.kind == TV_DICT)) {
		url_quote(&b, rt_to_str(rt, v), false);
		return tv_strn(b.p ? b.p : "", b.n);
	}
	struct tlist *items;
	if (v.kind == TV_DICT) {
		items = tv_list_new(&rt->ar, v.d->n, 0).l;
		for (size_t i = 0; i < v.d->n; i++)
			items->v[i] = pair(rt, v.d->k[i], v.d->v[i]);
	} else {
		items = v.l;
	}
	for (size_t i = 0; i < items->n; i++) {
		struct tlist *kv = rt_iterate(rt, items->v[i]);
		if (kv->n != 2)
			rt_fail(rt, "urlencode needs key/value pairs");
		if (i)
			ab_addch(&b, '&');
		url_quote(&b, rt_to_str(rt, kv->v[0]), true);
		ab_addch(&b, '=');
		url_quote(&b, rt_to_str(rt, kv->v[1]), true);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv f_wordcount(struct rt *rt, struct tv v, const struct callv *cv)
{
	no_args(rt, "wordcount", cv);
	struct tv s = soft_str(rt, v);
	const char *p = s.s.p, *end = p + s.s.n;
	int64_t n = 0;
	bool in_word = false;
	while (p < end) {
		uint32_t c = utf8_next(&p, end);
		bool w = c == '_' || cp_isalnum(c);
		if (w && !in_word)
			n++;
		in_word = w;
	}
	return tv_int(n);
}

static struct tv f_xmlattr(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[1] = { tv_bool(true) };
	ARGS("xmlattr", "autospace");
	if (v.kind != TV_DICT)
		rt_fail(rt, "'%s' object has no attribute 'items'", tv_type_name(v));
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	bool any = false;
	for (size_t i = 0; i < v.d->n; i++) {
		struct tv k = v.d->k[i], x = v.d->v[i];
		if (x.kind == TV_NONE || x.kind == TV_UNDEF)
			continue;
		struct tv ks = rt_to_str(rt, k);
		for (size_t j = 0; j < ks.s.n; j++)
			if (strchr(" \t\n\r\f\v/>=", ks.s.p[j]))
				rt_fail(rt, "Invalid character in attribute name: '%.*s'", (int)ks.s.n, ks.s.p);
		if (any || tv_truthy(a[0]))
			ab_addch(&b, ' ');
		struct tv ke = str_escape_html(rt, ks), ve = str_escape_html(rt, rt_to_str(rt, x));
		ab_add(&b, ke.s.p, ke.s.n);
		ab_adds(&b, "=\"");
		ab_add(&b, ve.s.p, ve.s.n);
		ab_addch(&b, '"');
		any = true;
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv f_wordwrap(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv a[4] = { tv_int(79), tv_bool(true), tv_none(), tv_bool(true) };
	ARGS("wordwrap", "width", "break_long_words", "wrapstring", "break_on_hyphens");
	if (v.kind != TV_STR)
		rt_fail(rt, "'%s' object has no attribute 'splitlines'", tv_type_name(v));
	/* no wrapstring: the environment's newline_sequence */
	struct tv wrap = a[2].kind == TV_NONE ? tv_strz("\n") : soft_str(rt, a[2]);
	return str_wordwrap(rt, v, int_arg(rt, a[0], "width"), tv_truthy(a[1]), wrap, tv_truthy(a[3]));
}

/* Filters jinja2 has and dyn does not: known names (so the template
 * compiles, as in jinja2) that fail when applied. */
#define UNSUPPORTED NULL

static const struct filter_def filters[] = {
	{ "abs", f_abs }, { "attr", f_attr }, { "batch", f_batch },
	{ "capitalize", f_capitalize }, { "center", f_center }, { "count", f_length },
	{ "d", f_default }, { "default", f_default }, { "dictsort", f_dictsort },
	{ "e", f_escape }, { "escape", f_escape }, { "filesizeformat", f_filesizeformat },
	{ "first", f_first }, { "float", f_float }, { "forceescape", f_forceescape },
	{ "format", f_format }, { "groupby", f_groupby }, { "indent", f_indent },
	{ "int", f_int }, { "items", f_items }, { "join", f_join }, { "last", f_last },
	{ "length", f_length }, { "list", f_list }, { "lower", f_lower }, { "map", f_map },
	{ "max", f_max }, { "min", f_min }, { "pprint", f_pprint }, { "random", UNSUPPORTED },
	{ "reject", f_reject }, { "rejectattr", f_rejectattr }, { "replace", f_replace },
	{ "reverse", f_reverse }, { "round", f_round }, { "safe", f_safe },
	{ "select", f_select }, { "selectattr", f_selectattr }, { "slice", f_slice },
	{ "sort", f_sort }, { "string", f_string }, { "striptags", f_striptags },
	{ "sum", f_sum }, { "title", f_title }, { "tojson", f_tojson }, { "trim", f_trim },
	{ "truncate", f_truncate }, { "unique", f_unique }, { "upper", f_upper },
	{ "urlencode", f_urlencode }, { "urlize", UNSUPPORTED }, { "wordcount", f_wordcount },
	{ "wordwrap", f_wordwrap }, { "xmlattr", f_xmlattr },
};

const struct filter_def *filter_find(const char *name)
{
	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++)
		if (!strcmp(filters[i].name, name))
			return &filters[i];
	return NULL;
}

struct tv filter_apply(struct rt *rt, const struct filter_def *f, struct tv v, const struct callv *cv)
{
	/* filters over strings scan them: charge for the bytes (what they
	 * build is charged by the arena) */
	rt_work_str(rt, v);
	for (size_t i = 0; i < cv->npos; i++)
		rt_work_str(rt, cv->pos[i]);
	for (size_t i = 0; i < cv->nkw; i++)
		rt_work_str(rt, cv->kwv[i]);
	rt_step(rt);
	if (!f->fn)
		rt_fail(rt, "filter '%s' is not supported by dyn's template engine", f->name);
	return f->fn(rt, v, cv);
}

/* ---- tests ----------------------------------------------------------------- */

static struct tv one_arg(struct rt *rt, const char *name, const struct callv *cv)
{
	if (cv->npos + cv->nkw != 1)
		rt_fail(rt, "test '%s' takes exactly one argument", name);
	return cv->npos ? cv->pos[0] : cv->kwv[0];
}

static bool t_defined(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind != TV_UNDEF;
}
static bool t_undefined(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_UNDEF;
}
static bool t_none(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_NONE;
}
static bool t_boolean(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_BOOL;
}
static bool t_false(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_BOOL && !v.b;
}
static bool t_true(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_BOOL && v.b;
}
static bool t_integer(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_INT || v.kind == TV_BIGINT;
}
static bool t_float(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_FLOAT;
}
static bool t_number(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return tv_is_num(v);
}
static bool t_string(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_STR;
}
static bool t_mapping(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_DICT;
}
static bool t_escaped(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_STR && (v.flags & TVF_MARKUP);
}

static bool t_iterable(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_STR || v.kind == TV_LIST || v.kind == TV_DICT || v.kind == TV_UNDEF ||
	       v.kind == TV_LOOP;
}

static bool t_sequence(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_STR || (v.kind == TV_LIST && !(v.flags & TVF_ITER)) ||
	       v.kind == TV_DICT || v.kind == TV_UNDEF;
}

static bool t_callable(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)rt;
	(void)cv;
	return v.kind == TV_MACRO || v.kind == TV_FUNC || v.kind == TV_METHOD ||
	       v.kind == TV_JOINER || v.kind == TV_LOOP;
}

static int64_t mod_int(struct rt *rt, struct tv v, int64_t m, const char *test)
{
	if (v.kind == TV_INT || v.kind == TV_BOOL) {
		int64_t x = v.kind == TV_BOOL ? v.b : v.i;
		if (m == -1)
			return 0;
		int64_t r = x % m;
		if (r != 0 && ((r < 0) != (m < 0)))
			r += m;
		return r;
	}
	if (v.kind == TV_FLOAT) {
		double r = fmod(v.f, (double)m);
		if (r != 0 && ((r < 0) != (m < 0)))
			r += (double)m;
		return r == 0 ? 0 : (r == 1 ? 1 : 2);
	}
	if (v.kind == TV_UNDEF)
		rt_fail_undef(rt, v);
	rt_fail(rt, "test '%s' needs a number, not %s", test, tv_type_name(v));
}

static bool t_odd(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	return mod_int(rt, v, 2, "odd") == 1;
}
static bool t_even(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	return mod_int(rt, v, 2, "even") == 0;
}

static bool t_divisibleby(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv n = one_arg(rt, "divisibleby", cv);
	if ((n.kind == TV_INT && n.i == 0) || (n.kind == TV_FLOAT && n.f == 0))
		rt_fail(rt, "integer modulo by zero");
	if (n.kind == TV_INT && (v.kind == TV_INT || v.kind == TV_BOOL))
		return mod_int(rt, v, n.i, "divisibleby") == 0;
	if (tv_is_num(n) && tv_is_num(v))
		return fmod(tv_as_double(v), tv_as_double(n)) == 0;
	rt_fail(rt, "test 'divisibleby' needs numbers");
}

static bool t_lower(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	struct tv s = rt_to_str(rt, v), l = str_lower(rt, s), u = str_upper(rt, s);
	/* islower(): has a cased char and no upper case one */
	return tv_equal(s, l) && !tv_equal(s, u);
}

static bool t_upper(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	struct tv s = rt_to_str(rt, v), l = str_lower(rt, s), u = str_upper(rt, s);
	return tv_equal(s, u) && !tv_equal(s, l);
}

static bool t_eq(struct rt *rt, struct tv v, const struct callv *cv)
{
	return tv_equal(v, one_arg(rt, "eq", cv));
}
static bool t_ne(struct rt *rt, struct tv v, const struct callv *cv)
{
	return !tv_equal(v, one_arg(rt, "ne", cv));
}
static bool t_lt(struct rt *rt, struct tv v, const struct callv *cv)
{
	return rt_compare(rt, CMP_LT, v, one_arg(rt, "lt", cv));
}
static bool t_le(struct rt *rt, struct tv v, const struct callv *cv)
{
	return rt_compare(rt, CMP_LE, v, one_arg(rt, "le", cv));
}
static bool t_gt(struct rt *rt, struct tv v, const struct callv *cv)
{
	return rt_compare(rt, CMP_GT, v, one_arg(rt, "gt", cv));
}
static bool t_ge(struct rt *rt, struct tv v, const struct callv *cv)
{
	return rt_compare(rt, CMP_GE, v, one_arg(rt, "ge", cv));
}
static bool t_in(struct rt *rt, struct tv v, const struct callv *cv)
{
	return rt_compare(rt, CMP_IN, v, one_arg(rt, "in", cv));
}

static bool t_sameas(struct rt *rt, struct tv v, const struct callv *cv)
{
	struct tv o = one_arg(rt, "sameas", cv);
	if (v.kind != o.kind)
		return false;
	switch (v.kind) {
	case TV_NONE:
	case TV_UNDEF:
		return v.kind == TV_NONE;
	case TV_BOOL:
		return v.b == o.b;
	case TV_INT:
		return v.i == o.i && v.i >= -5 && v.i <= 256;
	case TV_STR:
		return v.s.p == o.s.p && v.s.n == o.s.n;
	case TV_LIST:
		return v.l == o.l;
	case TV_DICT:
		return v.d == o.d;
	default:
		return tv_equal(v, o);
	}
}

static bool t_filter(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	if (v.kind != TV_STR)
		return false;
	char *name = ar_strndup(&rt->ar, v.s.p, v.s.n);
	return filter_find(name) != NULL;
}

static bool t_test(struct rt *rt, struct tv v, const struct callv *cv)
{
	(void)cv;
	if (v.kind != TV_STR)
		return false;
	char *name = ar_strndup(&rt->ar, v.s.p, v.s.n);
	return test_find(name) != NULL;
}

static const struct test_def tests[] = {
	{ "boolean", t_boolean }, { "callable", t_callable }, { "defined", t_defined },
	{ "divisibleby", t_divisibleby }, { "eq", t_eq }, { "equalto", t_eq }, { "==", t_eq },
	{ "escaped", t_escaped }, { "even", t_even }, { "false", t_false }, { "filter", t_filter },
	{ "float", t_float }, { "ge", t_ge }, { ">=", t_ge }, { "gt", t_gt },
	{ "greaterthan", t_gt }, { ">", t_gt }, { "in", t_in }, { "integer", t_integer },
	{ "iterable", t_iterable }, { "le", t_le }, { "<=", t_le }, { "lower", t_lower },
	{ "lt", t_lt }, { "lessthan", t_lt }, { "<", t_lt }, { "mapping", t_mapping },
	{ "ne", t_ne }, { "!=", t_ne }, { "none", t_none }, { "number", t_number },
	{ "odd", t_odd }, { "sameas", t_sameas }, { "sequence", t_sequence },
	{ "string", t_string }, { "test", t_test }, { "true", t_true },
	{ "undefined", t_undefined }, { "upper", t_upper },
};

const struct test_def *test_find(const char *name)
{
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
		if (!strcmp(tests[i].name, name))
			return &tests[i];
	return NULL;
}

bool test_apply(struct rt *rt, const struct test_def *t, struct tv v, const struct callv *cv)
{
	rt_step(rt);
	return t->fn(rt, v, cv);
}
