/*
 * value.c - template values with Python's semantics: truthiness,
 * equality, hashing, str() and repr() (including float.__repr__'s
 * shortest round-trip form), dicts that keep insertion order, and the
 * UTF-8 helpers the string code uses.
 */
#include "core/tmpl/internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct tv tv_strz(const char *s)
{
	return tv_strn(s, strlen(s));
}

/* ---- UTF-8 ------------------------------------------------------------- */

uint32_t utf8_next(const char **pp, const char *end)
{
	const unsigned char *p = (const unsigned char *)*pp;
	uint32_t c = p[0];
	size_t need;

	if (c < 0x80) {
		*pp += 1;
		return c;
	}
	if ((c & 0xe0) == 0xc0) {
		need = 1;
		c &= 0x1f;
	} else if ((c & 0xf0) == 0xe0) {
		need = 2;
		c &= 0x0f;
	} else if ((c & 0xf8) == 0xf0) {
		need = 3;
		c &= 0x07;
	} else {
		*pp += 1;
		return 0xfffd;
	}
	if ((size_t)((const unsigned char *)end - p) <= need) {
		*pp += 1;
		return 0xfffd;
	}
	for (size_t i = 1; i <= need; i++) {
		if ((p[i] & 0xc0) != 0x80) {
			*pp += 1;
			return 0xfffd;
		}
		c = (c << 6) | (p[i] & 0x3f);
	}
	*pp += need + 1;
	return c;
}

size_t utf8_len(const char *s, size_t n)
{
	size_t len = 0;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			len++;
	return len;
}

size_t utf8_offset(const char *s, size_t n, size_t idx)
{
	size_t i = 0;
	while (i < n && idx > 0) {
		i++;
		while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
			i++;
		idx--;
	}
	return i;
}

bool utf8_valid(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;
	while (p < end) {
		unsigned c = *p;
		size_t need;
		uint32_t cp, min;
		if (c < 0x80) {
			p++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			need = 1; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			need = 2; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			need = 3; cp = c & 0x07; min = 0x10000;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= need)
			return false;
		for (size_t i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += need + 1;
	}
	return true;
}

size_t utf8_encode(char *out, uint32_t cp)
{
	if (cp >= 0xd800 && cp <= 0xdfff)
		cp = 0xfffd;
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (cp > 0x10ffff)
		return utf8_encode(out, 0xfffd);
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

bool py_isspace(uint32_t c)
{
	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 ||
	       c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Python's str.isprintable() for one character. */
static bool py_isprintable(uint32_t c)
{
	if (c == ' ')
		return true;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_CC:
	case UTF8PROC_CATEGORY_CF:
	case UTF8PROC_CATEGORY_CS:
	case UTF8PROC_CATEGORY_CO:
	case UTF8PROC_CATEGORY_CN:
	case UTF8PROC_CATEGORY_ZL:
	case UTF8PROC_CATEGORY_ZP:
	case UTF8PROC_CATEGORY_ZS:
		return false;
	default:
		return true;
	}
}

/* ---- lists and dicts ------------------------------------------------- */

struct tv tv_list_new(struct arena *a, size_t n, unsigned flags)
{
	struct tv v = { .kind = TV_LIST, .flags = (uint8_t)flags };
	v.l = ar_alloc(a, sizeof(*v.l));
	v.l->n = n;
	/* never NULL, so that copies of empty lists stay defined behaviour */
	v.l->v = ar_alloc(a, (n ? n : 1) * sizeof(struct tv));
	return v;
}

void db_init(struct dict_builder *b, struct arena *a, size_t hint)
{
	b->ar = a;
	b->n = 0;
	b->cap = hint ? hint : 4;
	b->k = ar_alloc_raw(a, b->cap * sizeof(struct tv));
	b->v = ar_alloc_raw(a, b->cap * sizeof(struct tv));
}

#define INDEX_MIN 9	/* dicts with fewer keys are searched linearly */

static void index_build(struct arena *a, struct tdict *d)
{
	uint32_t cap = 16;
	while (cap < d->n * 2)
		cap *= 2;
	d->idx = ar_alloc(a, cap * sizeof(uint32_t));
	d->nidx = cap;
	for (size_t i = 0; i < d->n; i++) {
		uint32_t h = (uint32_t)tv_hash(d->k[i]) & (cap - 1);
		while (d->idx[h])
			h = (h + 1) & (cap - 1);
		d->idx[h] = (uint32_t)i + 1;
	}
}

static bool find_slot(const struct tv *keys, size_t n, const uint32_t *idx, uint32_t nidx,
		      struct tv key, size_t *pos)
{
	if (idx) {
		if (!tv_hashable(key))
			return false;
		uint32_t h = (uint32_t)tv_hash(key) & (nidx - 1);
		while (idx[h]) {
			if (tv_equal(keys[idx[h] - 1], key)) {
				*pos = idx[h] - 1;
				return true;
			}
			h = (h + 1) & (nidx - 1);
		}
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (tv_equal(keys[i], key)) {
			*pos = i;
			return true;
		}
	}
	return false;
}

void db_put(struct dict_builder *b, struct tv k, struct tv v)
{
	size_t pos;
	/* Builders are small or fed by JSON objects, whose keys rarely
	 * repeat; a linear check keeps Python's "last value, first place". */
	if (b->n < 64 || k.kind != TV_STR) {
		if (find_slot(b->k, b->n, NULL, 0, k, &pos)) {
			b->v[pos] = v;
			return;
		}
	} else {
		for (size_t i = b->n; i-- > 0;) {
			if (b->k[i].s.n == k.s.n && !memcmp(b->k[i].s.p, k.s.p, k.s.n)) {
				b->v[i] = v;
				return;
			}
		}
	}
	if (b->n == b->cap) {
		size_t cap = b->cap * 2;
		b->k = ar_realloc(b->ar, b->k, b->cap * sizeof(struct tv), cap * sizeof(struct tv));
		b->v = ar_realloc(b->ar, b->v, b->cap * sizeof(struct tv), cap * sizeof(struct tv));
		b->cap = cap;
	}
	b->k[b->n] = k;
	b->v[b->n] = v;
	b->n++;
}

struct tv db_done(struct dict_builder *b)
{
	struct tv v = { .kind = TV_DICT };
	v.d = ar_alloc(b->ar, sizeof(*v.d));
	v.d->n = b->n;
	v.d->k = b->k;
	v.d->v = b->v;
	if (b->n >= INDEX_MIN)
		index_build(b->ar, v.d);
	return v;
}

bool tv_dict_get(const struct tdict *d, struct tv key, struct tv *out)
{
	size_t pos;
	if (!find_slot(d->k, d->n, d->idx, d->nidx, key, &pos))
		return false;
	*out = d->v[pos];
	return true;
}

bool tv_dict_gets(const struct tdict *d, const char *key, struct tv *out)
{
	return tv_dict_get(d, tv_strz(key), out);
}

/* ---- Python semantics --------------------------------------------------- */

bool tv_truthy(struct tv v)
{
	switch (v.kind) {
	case TV_UNDEF:
	case TV_NONE:
		return false;
	case TV_BOOL:
		return v.b;
	case TV_INT:
		return v.i != 0;
	case TV_FLOAT:
		return v.f != 0.0;
	case TV_STR:
		return v.s.n > 0;
	case TV_LIST:
		return (v.flags & TVF_ITER) || v.l->n > 0;
	case TV_DICT:
		return v.d->n > 0;
	default:
		return true;
	}
}

double tv_as_double(struct tv v)
{
	switch (v.kind) {
	case TV_BOOL:
		return v.b;
	case TV_INT:
		return (double)v.i;
	case TV_FLOAT:
		return v.f;
	case TV_BIGINT:
		return strtod(v.s.p, NULL);
	default:
		return 0;
	}
}

/* Exact int == float comparison, as Python does it. */
static bool int_eq_float(int64_t i, double f)
{
	if (!isfinite(f) || f != floor(f))
		return false;
	if (f < -9223372036854775808.0 || f >= 9223372036854775808.0)
		return false;
	return (int64_t)f == i;
}

bool tv_equal(struct tv a, struct tv b)
{
	tv_guard();
	if (tv_is_num(a) && tv_is_num(b)) {
		if (a.kind == TV_BIGINT || b.kind == TV_BIGINT) {
			if (a.kind == TV_BIGINT && b.kind == TV_BIGINT)
				return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
			return tv_as_double(a) == tv_as_double(b);
		}
		if (a.kind == TV_FLOAT && b.kind == TV_FLOAT)
			return a.f == b.f;
		if (a.kind == TV_FLOAT)
			return int_eq_float(b.kind == TV_BOOL ? b.b : b.i, a.f);
		if (b.kind == TV_FLOAT)
			return int_eq_float(a.kind == TV_BOOL ? a.b : a.i, b.f);
		int64_t x = a.kind == TV_BOOL ? a.b : a.i;
		int64_t y = b.kind == TV_BOOL ? b.b : b.i;
		return x == y;
	}
	if (a.kind != b.kind)
		return false;
	switch (a.kind) {
	case TV_UNDEF:
	case TV_NONE:
		return true;
	case TV_STR:
		return a.s.n == b.s.n && !memcmp(a.s.p, b.s.p, a.s.n);
	case TV_LIST:
		if ((a.flags & (TVF_TUPLE | TVF_ITER)) != (b.flags & (TVF_TUPLE | TVF_ITER)))
			return false;
		if (a.flags & TVF_ITER)
			return a.l == b.l;
		if (a.l->n != b.l->n)
			return false;
		for (size_t i = 0; i < a.l->n; i++)
			if (!tv_equal(a.l->v[i], b.l->v[i]))
				return false;
		return true;
	case TV_DICT:
		if (a.d->n != b.d->n)
			return false;
		for (size_t i = 0; i < a.d->n; i++) {
			struct tv other;
			if (!tv_dict_get(b.d, a.d->k[i], &other) || !tv_equal(a.d->v[i], other))
				return false;
		}
		return true;
	case TV_NS:
		return a.ns == b.ns;
	case TV_MACRO:
		return a.m == b.m;
	case TV_FUNC:
		return a.id == b.id;
	case TV_METHOD:
		return a.meth->id == b.meth->id && tv_equal(a.meth->self, b.meth->self);
	case TV_LOOP:
		return a.loop == b.loop;
	case TV_CYCLER:
	case TV_JOINER:
		return a.cy == b.cy;
	default:
		return false;
	}
}

bool tv_hashable(struct tv v)
{
	tv_guard();
	if (v.kind == TV_DICT)
		return false;
	if (v.kind == TV_LIST) {
		if (!(v.flags & TVF_TUPLE))
			return (v.flags & TVF_ITER) != 0;
		for (size_t i = 0; i < v.l->n; i++)
			if (!tv_hashable(v.l->v[i]))
				return false;
	}
	return true;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

uint64_t tv_hash(struct tv v)
{
	tv_guard();
	switch (v.kind) {
	case TV_BOOL:
		return mix((uint64_t)v.b);
	case TV_INT:
		return mix((uint64_t)v.i);
	case TV_FLOAT:
		if (isfinite(v.f) && v.f == floor(v.f) && fabs(v.f) < 9.2e18)
			return mix((uint64_t)(int64_t)v.f);
		{
			uint64_t bits;
			memcpy(&bits, &v.f, sizeof(bits));
			return mix(bits);
		}
	case TV_BIGINT: {
		double f = tv_as_double(v);
		uint64_t bits;
		memcpy(&bits, &f, sizeof(bits));
		return mix(bits);
	}
	case TV_STR: {
		uint64_t h = 0xcbf29ce484222325ull;
		for (size_t i = 0; i < v.s.n; i++) {
			h ^= (unsigned char)v.s.p[i];
			h *= 0x100000001b3ull;
		}
		return mix(h);
	}
	case TV_LIST: {
		if (v.flags & TVF_ITER)
			return mix((uint64_t)(uintptr_t)v.l);
		uint64_t h = 0x345678;
		for (size_t i = 0; i < v.l->n; i++)
			h = mix(h ^ tv_hash(v.l->v[i]));
		return h;
	}
	case TV_NS:
	case TV_MACRO:
	case TV_LOOP:
	case TV_CYCLER:
	case TV_JOINER:
		return mix((uint64_t)(uintptr_t)v.ns);
	case TV_FUNC:
		return mix(v.id);
	default:
		return (uint64_t)v.kind * 0x9e3779b97f4a7c15ull;
	}
}

const char *tv_type_name(struct tv v)
{
	switch (v.kind) {
	case TV_UNDEF: return "Undefined";
	case TV_NONE: return "NoneType";
	case TV_BOOL: return "bool";
	case TV_INT:
	case TV_BIGINT: return "int";
	case TV_FLOAT: return "float";
	case TV_STR: return (v.flags & TVF_MARKUP) ? "Markup" : "str";
	case TV_LIST:
		if (v.flags & TVF_ITER)
			return "generator";
		return (v.flags & TVF_TUPLE) ? "tuple" : "list";
	case TV_DICT: return "dict";
	case TV_NS: return "Namespace";
	case TV_MACRO: return "Macro";
	case TV_FUNC: return "function";
	case TV_METHOD: return "builtin_function_or_method";
	case TV_LOOP: return "LoopContext";
	case TV_CYCLER: return "Cycler";
	case TV_JOINER: return "Joiner";
	}
	return "object";
}

/* ---- str() and repr() ------------------------------------------------- */

void fmt_float_repr(struct abuf *b, double f)
{
	char buf[40];
	if (isnan(f)) {
		ab_adds(b, "nan");
		return;
	}
	if (isinf(f)) {
		ab_adds(b, f < 0 ? "-inf" : "inf");
		return;
	}
	int prec;
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec - 1, f);
		if (strtod(buf, NULL) == f)
			break;
	}
	/* buf: [-]d[.ddd]e[+-]XX -> sign, digits, exponent */
	const char *p = buf;
	bool neg = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	char digits[24];
	size_t nd = 0;
	for (; *p && *p != 'e'; p++)
		if (*p != '.')
			digits[nd++] = *p;
	int exp = atoi(p + 1);
	while (nd > 1 && digits[nd - 1] == '0')
		nd--;
	if (neg)
		ab_addch(b, '-');
	if (exp >= -4 && exp < 16) {	/* repr's switch to exponents */
		if (exp >= 0) {
			for (int i = 0; i <= exp; i++)
				ab_addch(b, (size_t)i < nd ? digits[i] : '0');
			ab_addch(b, '.');
			if ((size_t)exp + 1 < nd)
				ab_add(b, digits + exp + 1, nd - (size_t)exp - 1);
			else
				ab_addch(b, '0');
		} else {
			ab_adds(b, "0.");
			for (int i = 0; i < -exp - 1; i++)
				ab_addch(b, '0');
			ab_add(b, digits, nd);
		}
	} else {
		ab_addch(b, digits[0]);
		if (nd > 1) {
			ab_addch(b, '.');
			ab_add(b, digits + 1, nd - 1);
		}
		ab_addf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
	}
}

void fmt_str_repr(struct abuf *b, const char *s, size_t n)
{
	bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
	char quote = has_sq && !has_dq ? '"' : '\'';
	const char *p = s, *end = s + n;

	ab_addch(b, quote);
	while (p < end) {
		const char *start = p;
		uint32_t c = utf8_next(&p, end);
		if (c == (uint32_t)quote || c == '\\') {
			ab_addch(b, '\\');
			ab_addch(b, (char)c);
		} else if (c == '\t') {
			ab_adds(b, "\\t");
		} else if (c == '\n') {
			ab_adds(b, "\\n");
		} else if (c == '\r') {
			ab_adds(b, "\\r");
		} else if (c < 0x20 || c == 0x7f) {
			ab_addf(b, "\\x%02x", c);
		} else if (c < 0x7f) {
			ab_addch(b, (char)c);
		} else if (py_isprintable(c)) {
			ab_add(b, start, (size_t)(p - start));
		} else if (c <= 0xff) {
			ab_addf(b, "\\x%02x", c);
		} else if (c <= 0xffff) {
			ab_addf(b, "\\u%04x", c);
		} else {
			ab_addf(b, "\\U%08x", c);
		}
	}
	ab_addch(b, quote);
}

void tv_undef_msg(struct abuf *b, struct tv v)
{
	const char *name = v.u.name ? v.u.name : "";
	if (!v.u.owner && name[0] == '\1') {
		ab_adds(b, name + 1);
	} else if (!v.u.owner) {
		fmt_str_repr(b, name, strlen(name));
		ab_adds(b, " is undefined");
	} else if (v.flags & TVF_KEYS) {
		ab_adds(b, v.u.owner);
		ab_adds(b, " has no element ");
		ab_adds(b, name);
	} else {
		fmt_str_repr(b, v.u.owner, strlen(v.u.owner));
		ab_adds(b, " has no attribute ");
		fmt_str_repr(b, name, strlen(name));
	}
}

static void repr_items(struct abuf *b, const struct tlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			ab_adds(b, ", ");
		tv_repr_append(b, l->v[i]);
	}
}

static void repr_dict(struct abuf *b, const struct tv *k, const struct tv *v, size_t n)
{
	ab_addch(b, '{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			ab_adds(b, ", ");
		tv_repr_append(b, k[i]);
		ab_adds(b, ": ");
		tv_repr_append(b, v[i]);
	}
	ab_addch(b, '}');
}

void tv_repr_append(struct abuf *b, struct tv v)
{
	tv_guard();
	switch (v.kind) {
	case TV_UNDEF:
		ab_adds(b, "Undefined");
		return;
	case TV_STR:
		if (v.flags & TVF_MARKUP) {
			ab_adds(b, "Markup(");
			fmt_str_repr(b, v.s.p, v.s.n);
			ab_addch(b, ')');
		} else {
			fmt_str_repr(b, v.s.p, v.s.n);
		}
		return;
	case TV_LIST:
		if (v.flags & TVF_ITER) {
			ab_adds(b, "<generator object>");
		} else if (v.flags & TVF_TUPLE) {
			ab_addch(b, '(');
			repr_items(b, v.l);
			if (v.l->n == 1)
				ab_addch(b, ',');
			ab_addch(b, ')');
		} else {
			ab_addch(b, '[');
			repr_items(b, v.l);
			ab_addch(b, ']');
		}
		return;
	case TV_DICT:
		repr_dict(b, v.d->k, v.d->v, v.d->n);
		return;
	case TV_NS:
		ab_adds(b, "<Namespace ");
		repr_dict(b, v.ns->k, v.ns->v, v.ns->n);
		ab_addch(b, '>');
		return;
	case TV_MACRO:
		ab_adds(b, "<Macro ");
		fmt_str_repr(b, v.m->name, strlen(v.m->name));
		ab_addch(b, '>');
		return;
	case TV_FUNC:
		ab_adds(b, "<function>");
		return;
	case TV_METHOD:
		ab_addf(b, "<built-in method of %s object>", tv_type_name(v.meth->self));
		return;
	case TV_LOOP:
		ab_addf(b, "<LoopContext %zu/%zu>", v.loop->index0 + 1, v.loop->items->n);
		return;
	case TV_CYCLER:
		ab_adds(b, "<jinja2.utils.Cycler object>");
		return;
	case TV_JOINER:
		ab_adds(b, "<jinja2.utils.Joiner object>");
		return;
	default:
		tv_str_append(b, v);
	}
}

void tv_str_append(struct abuf *b, struct tv v)
{
	switch (v.kind) {
	case TV_UNDEF:
		return;
	case TV_NONE:
		ab_adds(b, "None");
		return;
	case TV_BOOL:
		ab_adds(b, v.b ? "True" : "False");
		return;
	case TV_INT:
		ab_addf(b, "%" PRId64, v.i);
		return;
	case TV_BIGINT:
	case TV_STR:
		ab_add(b, v.s.p, v.s.n);
		return;
	case TV_FLOAT:
		fmt_float_repr(b, v.f);
		return;
	default:
		tv_repr_append(b, v);
	}
}
