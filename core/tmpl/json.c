/*
 * json.c - JSON in and out of template values, as Python's json module
 * does it: json.loads() (ints stay ints, NaN/Infinity accepted, duplicate
 * keys keep the last value in the first place) and json.dumps() with
 * ensure_ascii, indent, separators and sort_keys (what transformers' tojson
 * filter calls).
 */
#include "core/tmpl/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 512

struct jp {
	struct arena *ar;
	const char *p, *start, *end;
	char *err;
	size_t errn;
	int depth;
	bool failed;
};

static bool jfail(struct jp *j, const char *what)
{
	if (!j->failed)
		snprintf(j->err, j->errn, "invalid JSON at offset %zu: %s",
			 (size_t)(j->p - j->start), what);
	j->failed = true;
	return false;
}

static void skip_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static bool lit(struct jp *j, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(j->end - j->p) >= n && !memcmp(j->p, word, n)) {
		j->p += n;
		return true;
	}
	return false;
}

static int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static bool parse_string(struct jp *j, struct tv *out)
{
	j->p++;	/* opening quote */
	const char *s = j->p;
	bool plain = true;
	while (j->p < j->end && *j->p != '"') {
		unsigned char c = (unsigned char)*j->p;
		if (c < 0x20)
			return jfail(j, "control character in string");
		if (c == '\\') {
			plain = false;
			j->p++;
			if (j->p >= j->end)
				break;
		}
		j->p++;
	}
	if (j->p >= j->end)
		return jfail(j, "unterminated string");
	size_t n = (size_t)(j->p - s);
	j->p++;
	if (!utf8_valid(s, n))
		return jfail(j, "invalid UTF-8 in string");
	if (plain) {
		*out = tv_strn(ar_strndup(j->ar, s, n), n);
		return true;
	}
	char *buf = ar_alloc_raw(j->ar, n + 1), *o = buf;
	for (const char *p = s; p < s + n;) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p++;
		switch (*p++) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			if (s + n - p < 4 || hex4(p) < 0)
				return jfail(j, "bad \\u escape");
			uint32_t cp = (uint32_t)hex4(p);
			p += 4;
			if (cp >= 0xd800 && cp <= 0xdbff && s + n - p >= 6 && p[0] == '\\' &&
			    p[1] == 'u' && hex4(p + 2) >= 0xdc00 && hex4(p + 2) <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)hex4(p + 2) - 0xdc00);
				p += 6;
			}
			/* lone surrogates cannot be UTF-8: U+FFFD (utf8_encode) */
			o += utf8_encode(o, cp);
			break;
		}
		default:
			return jfail(j, "bad escape in string");
		}
	}
	*o = '\0';
	*out = tv_strn(buf, (size_t)(o - buf));
	return true;
}

static bool parse_number(struct jp *j, struct tv *out)
{
	const char *s = j->p;
	bool is_float = false;
	if (*j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0') {
		j->p++;
	} else if (j->p < j->end && *j->p >= '1' && *j->p <= '9') {
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	} else {
		j->p = s;
		if (lit(j, "-Infinity")) {
			*out = tv_float(-INFINITY);
			return true;
		}
		return jfail(j, "bad number");
	}
	if (j->p < j->end && *j->p == '.' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9') {
		is_float = true;
		j->p++;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		const char *e = j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
			is_float = true;
			while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
				j->p++;
		} else {
			j->p = e;
		}
	}
	size_t n = (size_t)(j->p - s);
	char tmp[64];
	char *text = n < sizeof(tmp) ? tmp : ar_alloc_raw(j->ar, n + 1);
	memcpy(text, s, n);
	text[n] = '\0';
	if (is_float) {
		*out = tv_float(strtod(text, NULL));
		return true;
	}
	errno = 0;
	long long v = strtoll(text, NULL, 10);
	if (errno == ERANGE) {
		struct tv b = { .kind = TV_BIGINT };
		b.s.p = ar_strndup(j->ar, s, n);
		b.s.n = n;
		*out = b;
		return true;
	}
	*out = tv_int(v);
	return true;
}

static bool parse_value(struct jp *j, struct tv *out);

static bool parse_array(struct jp *j, struct tv *out)
{
	j->p++;
	struct tv *items = NULL;
	size_t n = 0, cap = 0;
	skip_ws(j);
	if (j->p < j->end && *j->p == ']') {
		j->p++;
		*out = tv_list_new(j->ar, 0, 0);
		return true;
	}
	for (;;) {
		struct tv v;
		if (!parse_value(j, &v))
			return false;
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			items = ar_realloc(j->ar, items, cap * sizeof(*items), ncap * sizeof(*items));
			cap = ncap;
		}
		items[n++] = v;
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == ']') {
			j->p++;
			break;
		}
		return jfail(j, "expected ',' or ']'");
	}
	*out = tv_list_new(j->ar, 0, 0);
	out->l->n = n;
	out->l->v = items;
	return true;
}

static bool parse_object(struct jp *j, struct tv *out)
{
	struct dict_builder db;
	j->p++;
	db_init(&db, j->ar, 8);
	skip_ws(j);
	if (j->p < j->end && *j->p == '}') {
		j->p++;
		*out = db_done(&db);
		return true;
	}
	for (;;) {
		struct tv k, v;
		skip_ws(j);
		if (j->p >= j->end || *j->p != '"')
			return jfail(j, "expected a string key");
		if (!parse_string(j, &k))
			return false;
		skip_ws(j);
		if (j->p >= j->end || *j->p != ':')
			return jfail(j, "expected ':'");
		j->p++;
		if (!parse_value(j, &v))
			return false;
		db_put(&db, k, v);
		skip_ws(j);
		if (j->p < j->end && *j->p == ',') {
			j->p++;
			continue;
		}
		if (j->p < j->end && *j->p == '}') {
			j->p++;
			break;
		}
		return jfail(j, "expected ',' or '}'");
	}
	*out = db_done(&db);
	return true;
}

static bool parse_value(struct jp *j, struct tv *out)
{
	skip_ws(j);
	if (j->p >= j->end)
		return jfail(j, "unexpected end");
	if (++j->depth > JSON_MAX_DEPTH)
		return jfail(j, "nested too deeply");
	bool ok;
	switch (*j->p) {
	case '{':
		ok = parse_object(j, out);
		break;
	case '[':
		ok = parse_array(j, out);
		break;
	case '"':
		ok = parse_string(j, out);
		break;
	default:
		if (lit(j, "true")) {
			*out = tv_bool(true);
			ok = true;
		} else if (lit(j, "false")) {
			*out = tv_bool(false);
			ok = true;
		} else if (lit(j, "null")) {
			*out = tv_none();
			ok = true;
		} else if (lit(j, "NaN")) {
			*out = tv_float(NAN);
			ok = true;
		} else if (lit(j, "Infinity")) {
			*out = tv_float(INFINITY);
			ok = true;
		} else {
			ok = parse_number(j, out);
		}
	}
	j->depth--;
	return ok;
}

int json_to_tv(struct arena *a, const char *s, size_t n, struct tv *out, char *err, size_t errn)
{
	struct jp j = { .ar = a, .p = s, .start = s, .end = s + n, .err = err, .errn = errn };
	if (!parse_value(&j, out))
		return -EINVAL;
	skip_ws(&j);
	if (j.p != j.end) {
		jfail(&j, "extra data after the value");
		return -EINVAL;
	}
	return 0;
}

/* ---- json.dumps -------------------------------------------------------- */

struct jout {
	struct rt *rt;
	struct abuf *b;
	bool ascii, have_indent, sort_keys;
	const char *indent;
	size_t indent_n;
	const char *item_sep, *key_sep;
	int level;
};

static void put_escaped(struct jout *o, const char *s, size_t n)
{
	struct abuf *b = o->b;
	const char *p = s, *end = s + n;
	ab_addch(b, '"');
	while (p < end) {
		const char *start = p;
		uint32_t c = utf8_next(&p, end);
		switch (c) {
		case '"': ab_adds(b, "\\\""); continue;
		case '\\': ab_adds(b, "\\\\"); continue;
		case '\n': ab_adds(b, "\\n"); continue;
		case '\r': ab_adds(b, "\\r"); continue;
		case '\t': ab_adds(b, "\\t"); continue;
		case '\b': ab_adds(b, "\\b"); continue;
		case '\f': ab_adds(b, "\\f"); continue;
		}
		if (c < 0x20) {
			ab_addf(b, "\\u%04x", c);
		} else if (o->ascii && c > 0x7e) {
			if (c >= 0x10000) {
				uint32_t v = c - 0x10000;
				ab_addf(b, "\\u%04x\\u%04x", 0xd800 + (v >> 10), 0xdc00 + (v & 0x3ff));
			} else {
				ab_addf(b, "\\u%04x", c);
			}
		} else {
			ab_add(b, start, (size_t)(p - start));
		}
	}
	ab_addch(b, '"');
}

static void put_float(struct abuf *b, double f)
{
	if (isnan(f))
		ab_adds(b, "NaN");
	else if (isinf(f))
		ab_adds(b, f < 0 ? "-Infinity" : "Infinity");
	else
		fmt_float_repr(b, f);
}

static void newline_indent(struct jout *o)
{
	ab_addch(o->b, '\n');
	for (int i = 0; i < o->level; i++)
		ab_add(o->b, o->indent, o->indent_n);
}

static void put_value(struct jout *o, struct tv v);

static void put_key(struct jout *o, struct tv k)
{
	switch (k.kind) {
	case TV_STR:
		put_escaped(o, k.s.p, k.s.n);
		return;
	case TV_BOOL:
		ab_adds(o->b, k.b ? "\"true\"" : "\"false\"");
		return;
	case TV_NONE:
		ab_adds(o->b, "\"null\"");
		return;
	case TV_INT:
		ab_addf(o->b, "\"%" PRId64 "\"", k.i);
		return;
	case TV_BIGINT:
		ab_addch(o->b, '"');
		ab_add(o->b, k.s.p, k.s.n);
		ab_addch(o->b, '"');
		return;
	case TV_FLOAT:
		ab_addch(o->b, '"');
		put_float(o->b, k.f);
		ab_addch(o->b, '"');
		return;
	default:
		rt_fail(o->rt, "keys must be str, int, float, bool or None, not %s", tv_type_name(k));
	}
}

static void put_value(struct jout *o, struct tv v)
{
	struct rt *rt = o->rt;
	rt_step(rt);
	switch (v.kind) {
	case TV_NONE:
		ab_adds(o->b, "null");
		return;
	case TV_BOOL:
		ab_adds(o->b, v.b ? "true" : "false");
		return;
	case TV_INT:
		ab_addf(o->b, "%" PRId64, v.i);
		return;
	case TV_BIGINT:
		ab_add(o->b, v.s.p, v.s.n);
		return;
	case TV_FLOAT:
		put_float(o->b, v.f);
		return;
	case TV_STR:
		put_escaped(o, v.s.p, v.s.n);
		return;
	case TV_LIST:
		if (v.flags & TVF_ITER)
			break;
		if (v.l->n == 0) {
			ab_adds(o->b, "[]");
			return;
		}
		ab_addch(o->b, '[');
		o->level++;
		if (o->have_indent)
			newline_indent(o);
		for (size_t i = 0; i < v.l->n; i++) {
			if (i) {
				ab_adds(o->b, o->item_sep);
				if (o->have_indent)
					newline_indent(o);
			}
			put_value(o, v.l->v[i]);
		}
		o->level--;
		if (o->have_indent)
			newline_indent(o);
		ab_addch(o->b, ']');
		return;
	case TV_DICT: {
		if (v.d->n == 0) {
			ab_adds(o->b, "{}");
			return;
		}
		size_t n = v.d->n;
		size_t *order = ar_alloc_raw(&rt->ar, n * sizeof(size_t));
		for (size_t i = 0; i < n; i++)
			order[i] = i;
		if (o->sort_keys) {
			/* insertion sort keeps it simple; dicts here are small */
			for (size_t i = 1; i < n; i++) {
				size_t x = order[i], k = i;
				while (k > 0 && rt_order(rt, v.d->k[x], v.d->k[order[k - 1]]) < 0) {
					order[k] = order[k - 1];
					k--;
				}
				order[k] = x;
			}
		}
		ab_addch(o->b, '{');
		o->level++;
		if (o->have_indent)
			newline_indent(o);
		for (size_t i = 0; i < n; i++) {
			if (i) {
				ab_adds(o->b, o->item_sep);
				if (o->have_indent)
					newline_indent(o);
			}
			put_key(o, v.d->k[order[i]]);
			ab_adds(o->b, o->key_sep);
			put_value(o, v.d->v[order[i]]);
		}
		o->level--;
		if (o->have_indent)
			newline_indent(o);
		ab_addch(o->b, '}');
		return;
	}
	default:
		break;
	}
	rt_fail(rt, "Object of type %s is not JSON serializable", tv_type_name(v));
}

void tv_to_json(struct rt *rt, struct abuf *b, struct tv v, bool ensure_ascii,
		const char *indent, size_t indent_n, bool have_indent,
		const char *item_sep, const char *key_sep, bool sort_keys)
{
	struct jout o = {
		.rt = rt, .b = b, .ascii = ensure_ascii, .have_indent = have_indent,
		.sort_keys = sort_keys, .indent = indent ? indent : "", .indent_n = indent_n,
		.item_sep = item_sep ? item_sep : (have_indent ? "," : ", "),
		.key_sep = key_sep ? key_sep : ": ",
	};
	put_value(&o, v);
}
