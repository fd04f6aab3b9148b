/*
 * methods.c - what templates call on values: Python's str methods
 * (split, strip, startswith, replace, ...), dict.get/items/keys/values,
 * list.count/index, loop.cycle/changed, cycler, and the globals range(),
 * dict(), namespace(), cycler(), joiner(), raise_exception() and
 * strftime_now().  Methods that would mutate a list or dict are what
 * ImmutableSandboxedEnvironment makes them: an Undefined that raises a
 * security error when called.
 */
#include "core/tmpl/internal.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

/* ---- characters ----------------------------------------------------------- */

uint32_t cp_upper(uint32_t c)
{
	if (c < 0x80)
		return c >= 'a' && c <= 'z' ? c - 32 : c;
	return (uint32_t)utf8proc_toupper((utf8proc_int32_t)c);
}

uint32_t cp_lower(uint32_t c)
{
	if (c < 0x80)
		return c >= 'A' && c <= 'Z' ? c + 32 : c;
	return (uint32_t)utf8proc_tolower((utf8proc_int32_t)c);
}

uint32_t cp_title(uint32_t c)
{
	if (c < 0x80)
		return cp_upper(c);
	return (uint32_t)utf8proc_totitle((utf8proc_int32_t)c);
}

static int cat(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

static bool cp_isalpha(uint32_t c)
{
	if (c < 0x80)
		return (c | 32) >= 'a' && (c | 32) <= 'z';
	int k = cat(c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
	       k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

static bool cp_isdecimal(uint32_t c)
{
	if (c < 0x80)
		return c >= '0' && c <= '9';
	return cat(c) == UTF8PROC_CATEGORY_ND;
}

static bool cp_isnumeric(uint32_t c)
{
	if (c < 0x80)
		return c >= '0' && c <= '9';
	int k = cat(c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool cp_isalnum(uint32_t c) { return cp_isalpha(c) || cp_isnumeric(c); }

static bool cp_iscased(uint32_t c)
{
	int k = cat(c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static bool cp_islower(uint32_t c) { return cat(c) == UTF8PROC_CATEGORY_LL; }
static bool cp_isupper(uint32_t c)
{
	int k = cat(c);
	return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT;
}

/* Full (multi-character) case mappings Python applies that the simple
 * per-character tables do not have. */
static const char *special_upper(uint32_t c)
{
	switch (c) {
	case 0xdf: return "SS";
	case 0x149: return "\xca\xbcN";
	case 0xfb00: return "FF";
	case 0xfb01: return "FI";
	case 0xfb02: return "FL";
	case 0xfb03: return "FFI";
	case 0xfb04: return "FFL";
	case 0xfb05: return "ST";
	case 0xfb06: return "ST";
	default: return NULL;
	}
}

static const char *special_title(uint32_t c)
{
	switch (c) {
	case 0xdf: return "Ss";
	case 0xfb00: return "Ff";
	case 0xfb01: return "Fi";
	case 0xfb02: return "Fl";
	case 0xfb03: return "Ffi";
	case 0xfb04: return "Ffl";
	case 0xfb05: return "St";
	case 0xfb06: return "St";
	default: return NULL;
	}
}

static void add_upper(struct abuf *b, uint32_t c)
{
	const char *s = special_upper(c);
	if (s)
		ab_adds(b, s);
	else
		ab_add_utf8(b, cp_upper(c));
}

static void add_lower(struct abuf *b, uint32_t c)
{
	if (c == 0x130)
		ab_adds(b, "i\xcc\x87");
	else
		ab_add_utf8(b, cp_lower(c));
}

/* Unicode's Cased property: letters with case plus Other_Lowercase /
 * Other_Uppercase symbols (ordinal indicators, roman numerals, circled
 * and squared letters); the Lm ones among those are also case-ignorable,
 * which is what the final-sigma rule looks at first. */
static bool sigma_cased(uint32_t c)
{
	if (c == 0xaa || c == 0xba || (c >= 0x2160 && c <= 0x217f) || (c >= 0x24b6 && c <= 0x24e9) ||
	    (c >= 0x1f130 && c <= 0x1f149) || (c >= 0x1f150 && c <= 0x1f169) ||
	    (c >= 0x1f170 && c <= 0x1f189))
		return true;
	return cp_iscased(c);
}

/* Case_Ignorable: marks, format and modifier characters, and the
 * apostrophes and word-internal punctuation of Word_Break MidLetter,
 * MidNumLet and Single_Quote. */
static bool case_ignorable(uint32_t c)
{
	static const uint32_t mid[] = { 0x27, 0x2e, 0x3a, 0xb7, 0x387, 0x55f, 0x5f4, 0x2018, 0x2019,
					0x2024, 0x2027, 0xfe13, 0xfe52, 0xfe55, 0xff07, 0xff0e, 0xff1a };
	for (size_t i = 0; i < sizeof(mid) / sizeof(mid[0]); i++)
		if (c == mid[i])
			return true;
	if (c < 0x80)
		return c == '^' || c == '`';
	int k = cat(c);
	return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
	       k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK;
}

static uint32_t utf8_prev(const char **p, const char *start)
{
	const char *was = *p, *q = was;
	do
		q--;
	while (q > start && ((unsigned char)*q & 0xc0) == 0x80);
	*p = q;
	return utf8_next(&q, was);
}

/* Lower-case the character c that spans [at, after) of [start, end).  A
 * capital sigma becomes final (U+03C2) the way Python's str.lower() does
 * it: a cased letter before it and none after it, skipping
 * case-ignorable characters both ways. */
static void add_lower_in(struct abuf *b, uint32_t c, const char *start, const char *at, const char *after,
			 const char *end)
{
	if (c != 0x3a3) {
		add_lower(b, c);
		return;
	}
	bool final = false;
	const char *q = at;
	while (q > start) {
		uint32_t d = utf8_prev(&q, start);
		if (!case_ignorable(d)) {
			final = sigma_cased(d);
			break;
		}
	}
	for (q = after; final && q < end;) {
		uint32_t d = utf8_next(&q, end);
		if (!case_ignorable(d)) {
			final = !sigma_cased(d);
			break;
		}
	}
	ab_add_utf8(b, final ? 0x3c2 : 0x3c3);
}

static void add_title(struct abuf *b, uint32_t c)
{
	const char *s = special_title(c);
	if (s)
		ab_adds(b, s);
	else
		ab_add_utf8(b, cp_title(c));
}

static struct tv finish(struct abuf *b, struct tv like)
{
	struct tv r = tv_strn(b->p ? b->p : "", b->n);
	r.flags = like.flags & TVF_MARKUP;
	return r;
}

struct tv str_upper(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end)
		add_upper(&b, utf8_next(&p, end));
	return finish(&b, s);
}

struct tv str_lower(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		const char *at = p;
		uint32_t c = utf8_next(&p, end);
		add_lower_in(&b, c, s.s.p, at, p, end);
	}
	return finish(&b, s);
}

static struct tv str_swapcase(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		const char *at = p;
		uint32_t c = utf8_next(&p, end);
		if (cp_isupper(c))
			add_lower_in(&b, c, s.s.p, at, p, end);
		else if (cp_islower(c))
			add_upper(&b, c);
		else
			ab_add_utf8(&b, c);
	}
	return finish(&b, s);
}

struct tv str_title(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	bool prev_cased = false;
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		const char *at = p;
		uint32_t c = utf8_next(&p, end);
		if (prev_cased)
			add_lower_in(&b, c, s.s.p, at, p, end);
		else
			add_title(&b, c);
		prev_cased = sigma_cased(c);
	}
	return finish(&b, s);
}

struct tv str_capitalize(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	const char *p = s.s.p, *end = p + s.s.n;
	bool first = true;
	while (p < end) {
		const char *at = p;
		uint32_t c = utf8_next(&p, end);
		if (first)
			add_title(&b, c);
		else
			add_lower_in(&b, c, s.s.p, at, p, end);
		first = false;
	}
	return finish(&b, s);
}

struct tv str_escape_html(struct rt *rt, struct tv s)
{
	struct abuf b;
	ab_init(&b, &rt->ar, 0);
	if (s.kind != TV_STR)
		s = rt_to_str(rt, s);
	if (s.flags & TVF_MARKUP)
		return s;
	for (size_t i = 0; i < s.s.n; i++) {
		char c = s.s.p[i];
		switch (c) {
		case '&': ab_adds(&b, "&amp;"); break;
		case '<': ab_adds(&b, "&lt;"); break;
		case '>': ab_adds(&b, "&gt;"); break;
		case '"': ab_adds(&b, "&#34;"); break;
		case '\'': ab_adds(&b, "&#39;"); break;
		default: ab_addch(&b, c);
		}
	}
	struct tv r = tv_strn(b.p ? b.p : "", b.n);
	r.flags = TVF_MARKUP;
	return r;
}

/* ---- strip / split / replace ---------------------------------------------- */

static bool in_chars(uint32_t c, struct tv chars)
{
	if (chars.kind != TV_STR)
		return py_isspace(c);
	const char *p = chars.s.p, *end = p + chars.s.n;
	while (p < end)
		if (utf8_next(&p, end) == c)
			return true;
	return false;
}

struct tv str_strip(struct rt *rt, struct tv s, struct tv chars, int which)
{
	(void)rt;
	const char *p = s.s.p, *end = p + s.s.n;
	const char *start = p, *stop = end;
	if (which & 1) {
		while (start < end) {
			const char *q = start;
			if (!in_chars(utf8_next(&q, end), chars))
				break;
			start = q;
		}
	}
	if (which & 2) {
		/* walk forward remembering the end of the last kept char */
		const char *last = start;
		const char *q = start;
		while (q < end) {
			uint32_t c = utf8_next(&q, end);
			if (!in_chars(c, chars))
				last = q;
		}
		stop = last;
	}
	struct tv r = tv_strn(start, (size_t)(stop - start));
	r.flags = s.flags & TVF_MARKUP;
	return r;
}

static struct tv list_from(struct rt *rt, struct tv *items, size_t n, unsigned flags)
{
	struct tv l = tv_list_new(&rt->ar, n, flags);
	if (n)
		memcpy(l.l->v, items, n * sizeof(struct tv));
	return l;
}

struct vecv { struct tv *v; size_t n, cap; };

static void vv_push(struct rt *rt, struct vecv *v, struct tv x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 8;
		v->v = ar_realloc(&rt->ar, v->v, v->cap * sizeof(struct tv), cap * sizeof(struct tv));
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

struct tv str_split(struct rt *rt, struct tv s, struct tv sep, int64_t maxsplit, bool right)
{
	struct vecv out = { 0 };
	const char *p = s.s.p, *end = p + s.s.n;
	if (maxsplit < 0)
		maxsplit = INT64_MAX;
	if (sep.kind == TV_STR && sep.s.n == 0)
		rt_fail(rt, "empty separator");
	if (sep.kind == TV_STR) {
		if (!right) {
			while (maxsplit-- > 0) {
				const char *hit = memmem(p, (size_t)(end - p), sep.s.p, sep.s.n);
				if (!hit)
					break;
				vv_push(rt, &out, tv_strn(p, (size_t)(hit - p)));
				p = hit + sep.s.n;
			}
			vv_push(rt, &out, tv_strn(p, (size_t)(end - p)));
		} else {
			const char *e = end;
			struct vecv rev = { 0 };
			while (maxsplit-- > 0) {
				const char *hit = NULL;
				if ((size_t)(e - p) >= sep.s.n) {
					for (size_t k = (size_t)(e - p) - sep.s.n + 1; k-- > 0;) {
						if (!memcmp(p + k, sep.s.p, sep.s.n)) {
							hit = p + k;
							break;
						}
					}
				}
				if (!hit)
					break;
				vv_push(rt, &rev, tv_strn(hit + sep.s.n, (size_t)(e - hit - sep.s.n)));
				e = hit;
			}
			vv_push(rt, &rev, tv_strn(p, (size_t)(e - p)));
			for (size_t i = rev.n; i-- > 0;)
				vv_push(rt, &out, rev.v[i]);
		}
		return list_from(rt, out.v, out.n, 0);
	}
	/* whitespace runs, as CPython's split_whitespace/rsplit_whitespace */
	size_t n = utf8_len(s.s.p, s.s.n);
	size_t *off = ar_alloc_raw(&rt->ar, (n + 1) * sizeof(size_t));
	bool *sp = ar_alloc_raw(&rt->ar, n + 1);
	for (size_t k = 0; k < n; k++) {
		off[k] = (size_t)(p - s.s.p);
		sp[k] = py_isspace(utf8_next(&p, end));
	}
	off[n] = s.s.n;
#define PIECE(a, b) tv_strn(s.s.p + off[a], off[b] - off[a])
	if (!right) {
		size_t i = 0, j;
		while (maxsplit-- > 0) {
			while (i < n && sp[i])
				i++;
			if (i == n)
				break;
			j = i++;
			while (i < n && !sp[i])
				i++;
			vv_push(rt, &out, PIECE(j, i));
		}
		if (i < n) {
			while (i < n && sp[i])
				i++;
			if (i != n)
				vv_push(rt, &out, PIECE(i, n));
		}
		return list_from(rt, out.v, out.n, 0);
	}
	int64_t i = (int64_t)n - 1, j;
	while (maxsplit-- > 0) {
		while (i >= 0 && sp[i])
			i--;
		if (i < 0)
			break;
		j = i--;
		while (i >= 0 && !sp[i])
			i--;
		vv_push(rt, &out, PIECE(i + 1, j + 1));
	}
	if (i >= 0) {
		while (i >= 0 && sp[i])
			i--;
		if (i >= 0)
			vv_push(rt, &out, PIECE(0, i + 1));
	}
#undef PIECE
	for (size_t a = 0, b = out.n; b > a + 1; a++, b--) {
		struct tv t = out.v[a];
		out.v[a] = out.v[b - 1];
		out.v[b - 1] = t;
	}
	return list_from(rt, out.v, out.n, 0);
}

static bool is_line_break(uint32_t c)
{
	return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c || c == 0x1d ||
	       c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
}

struct tv str_splitlines(struct rt *rt, struct tv s, bool keepends)
{
	struct vecv out = { 0 };
	const char *p = s.s.p, *end = p + s.s.n, *line = p;
	while (p < end) {
		const char *q = p;
		uint32_t c = utf8_next(&q, end);
		if (!is_line_break(c)) {
			p = q;
			continue;
		}
		const char *eol = p;
		if (c == '\r' && q < end && *q == '\n')
			q++;
		struct tv piece = tv_strn(line, (size_t)((keepends ? q : eol) - line));
		piece.flags = s.flags & TVF_MARKUP;
		vv_push(rt, &out, piece);
		p = line = q;
	}
	if (line < end) {
		struct tv piece = tv_strn(line, (size_t)(end - line));
		piece.flags = s.flags & TVF_MARKUP;
		vv_push(rt, &out, piece);
	}
	return list_from(rt, out.v, out.n, 0);
}

struct tv str_replace(struct rt *rt, struct tv s, struct tv old, struct tv new_, int64_t count)
{
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	if (count < 0)
		count = INT64_MAX;
	const char *p = s.s.p, *end = p + s.s.n;
	if (old.s.n == 0) {
		while (count > 0) {
			ab_add(&b, new_.s.p, new_.s.n);
			count--;
			if (p >= end)
				break;
			const char *q = p;
			utf8_next(&q, end);
			ab_add(&b, p, (size_t)(q - p));
			p = q;
		}
		ab_add(&b, p, (size_t)(end - p));
		return finish(&b, s);
	}
	while (count > 0) {
		const char *hit = memmem(p, (size_t)(end - p), old.s.p, old.s.n);
		if (!hit)
			break;
		ab_add(&b, p, (size_t)(hit - p));
		ab_add(&b, new_.s.p, new_.s.n);
		p = hit + old.s.n;
		count--;
	}
	ab_add(&b, p, (size_t)(end - p));
	return finish(&b, s);
}

struct tv str_center(struct rt *rt, struct tv s, int64_t width, const char *fill, size_t filln)
{
	int64_t len = (int64_t)utf8_len(s.s.p, s.s.n);
	if (width <= len)
		return s;
	if (width > (int64_t)rt->max_output)
		rt_fail(rt, "width too large");
	int64_t marg = width - len;
	int64_t left = marg / 2 + (marg & width & 1);
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	for (int64_t i = 0; i < left; i++)
		ab_add(&b, fill, filln);
	ab_add(&b, s.s.p, s.s.n);
	for (int64_t i = 0; i < marg - left; i++)
		ab_add(&b, fill, filln);
	return finish(&b, s);
}

static struct tv str_pad(struct rt *rt, struct tv s, int64_t width, const char *fill, size_t filln,
			 bool left)
{
	int64_t len = (int64_t)utf8_len(s.s.p, s.s.n);
	if (width <= len)
		return s;
	if (width > (int64_t)rt->max_output)
		rt_fail(rt, "width too large");
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	if (!left)
		ab_add(&b, s.s.p, s.s.n);
	for (int64_t i = 0; i < width - len; i++)
		ab_add(&b, fill, filln);
	if (left)
		ab_add(&b, s.s.p, s.s.n);
	return finish(&b, s);
}

struct tv str_join(struct rt *rt, struct tv sep, struct tlist *items)
{
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	for (size_t i = 0; i < items->n; i++) {
		if (items->v[i].kind != TV_STR)
			rt_fail(rt, "sequence item %zu: expected str instance, %s found", i,
				tv_type_name(items->v[i]));
		if (i)
			ab_add(&b, sep.s.p, sep.s.n);
		ab_add(&b, items->v[i].s.p, items->v[i].s.n);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

/* ---- printf-style formatting (str % args) --------------------------------- */

static int64_t num_to_int(struct rt *rt, struct tv v, char type)
{
	if (v.kind == TV_INT)
		return v.i;
	if (v.kind == TV_BOOL)
		return v.b;
	if (v.kind == TV_FLOAT && (type == 'd' || type == 'i' || type == 'u')) {
		if (!isfinite(v.f))
			rt_fail(rt, "cannot convert float to integer");
		if (fabs(v.f) >= 9.2e18)
			rt_fail(rt, "integer too large (dyn's integers are 64-bit)");
		return (int64_t)v.f;
	}
	rt_fail(rt, "%%%c format: %s is required, not %s", type,
		type == 'c' ? "an integer" : (type == 'x' || type == 'X' || type == 'o') ? "an integer" : "a real number",
		tv_type_name(v));
}

static void pad_text(struct abuf *b, const char *s, size_t n, int64_t width, bool left_align, char fill)
{
	int64_t len = (int64_t)utf8_len(s, n);
	if (!left_align)
		for (int64_t i = len; i < width; i++)
			ab_addch(b, fill);
	ab_add(b, s, n);
	if (left_align)
		for (int64_t i = len; i < width; i++)
			ab_addch(b, ' ');
}

struct tv str_percent_format(struct rt *rt, struct tv fmt, struct tv args)
{
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	struct tv *argv = &args;
	size_t argc = 1, argi = 0;
	bool mapping = args.kind == TV_DICT;
	/* Python: an argument with __getitem__ that is not a tuple (a list, a
	 * dict) never triggers "not all arguments converted" */
	bool subscriptable = mapping || (args.kind == TV_LIST && !(args.flags & (TVF_TUPLE | TVF_ITER)));
	if (args.kind == TV_LIST && (args.flags & TVF_TUPLE)) {
		argv = args.l->v;
		argc = args.l->n;
	}
	const char *p = fmt.s.p, *end = p + fmt.s.n;
	bool used_mapping = false;
	while (p < end) {
		if (*p != '%') {
			const char *q = memchr(p, '%', (size_t)(end - p));
			if (!q)
				q = end;
			ab_add(&b, p, (size_t)(q - p));
			p = q;
			continue;
		}
		p++;
		if (p >= end)
			rt_fail(rt, "incomplete format");
		struct tv arg;
		bool have_arg = false;
		if (*p == '(') {
			const char *k = ++p;
			int depth = 1;
			while (p < end && depth) {
				if (*p == '(')
					depth++;
				else if (*p == ')')
					depth--;
				if (depth)
					p++;
			}
			if (p >= end)
				rt_fail(rt, "incomplete format key");
			if (!mapping)
				rt_fail(rt, "format requires a mapping");
			if (!tv_dict_get(args.d, tv_strn(k, (size_t)(p - k)), &arg))
				rt_fail(rt, "KeyError: '%.*s'", (int)(p - k), k);
			have_arg = true;
			used_mapping = true;
			p++;
		}
		bool left = false, plus = false, space = false, alt = false, zero = false;
		for (; p < end && strchr("-+ #0", *p); p++) {
			if (*p == '-') left = true;
			else if (*p == '+') plus = true;
			else if (*p == ' ') space = true;
			else if (*p == '#') alt = true;
			else zero = true;
		}
		int64_t width = -1, prec = -1;
		if (p < end && *p == '*') {
			p++;
			if (argi >= argc)
				rt_fail(rt, "not enough arguments for format string");
			width = num_to_int(rt, argv[argi++], 'd');
			if (width < 0) {
				left = true;
				width = width == INT64_MIN ? INT64_MAX : -width;
			}
			if (width > 100000)
				rt_fail(rt, "format width too large");
		} else {
			while (p < end && *p >= '0' && *p <= '9') {
				width = (width < 0 ? 0 : width) * 10 + (*p++ - '0');
				if (width > 100000)
					rt_fail(rt, "format width too large");
			}
		}
		if (p < end && *p == '.') {
			p++;
			prec = 0;
			if (p < end && *p == '*') {
				p++;
				if (argi >= argc)
					rt_fail(rt, "not enough arguments for format string");
				prec = num_to_int(rt, argv[argi++], 'd');
				if (prec > 1000)
					rt_fail(rt, "format precision too large");
			} else {
				while (p < end && *p >= '0' && *p <= '9') {
					prec = prec * 10 + (*p++ - '0');
					if (prec > 1000)
						rt_fail(rt, "format precision too large");
				}
			}
		}
		while (p < end && (*p == 'h' || *p == 'l' || *p == 'L'))
			p++;
		if (p >= end)
			rt_fail(rt, "incomplete format");
		char type = *p++;
		if (type == '%') {
			ab_addch(&b, '%');
			continue;
		}
		if (!have_arg) {
			if (mapping && argc == 1 && argv == &args) {
				arg = args;
			} else {
				if (argi >= argc)
					rt_fail(rt, "not enough arguments for format string");
				arg = argv[argi++];
			}
		}
		char spec[32];
		int k = 0;
		spec[k++] = '%';
		if (left) spec[k++] = '-';
		if (plus) spec[k++] = '+';
		if (space) spec[k++] = ' ';
		if (alt) spec[k++] = '#';
		if (zero && !left) spec[k++] = '0';
		switch (type) {
		case 's':
		case 'r':
		case 'a': {
			struct abuf t;
			ab_init(&t, &rt->ar, rt->max_output);
			if (type == 's')
				tv_str_append(&t, arg);
			else
				tv_repr_append(&t, arg);
			size_t n = t.n;
			if (prec >= 0)
				n = utf8_offset(t.p ? t.p : "", t.n, (size_t)prec);
			pad_text(&b, t.p ? t.p : "", n, width, left, ' ');
			break;
		}
		case 'd':
		case 'i':
		case 'u':
		case 'x':
		case 'X':
		case 'o': {
			/* Python's integer conversion: sign, 0x/0o with '#',
			 * precision as minimum digits, then width */
			int64_t v = num_to_int(rt, arg, type);
			uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
			int base = type == 'x' || type == 'X' ? 16 : type == 'o' ? 8 : 10;
			const char *digs = type == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
			char num[80];
			int nd = 0;
			do {
				num[nd++] = digs[mag % (uint64_t)base];
				mag /= (uint64_t)base;
			} while (mag);
			char body[1200];
			size_t bl = 0;
			const char *sign = v < 0 ? "-" : plus ? "+" : space ? " " : "";
			const char *pfx = !alt ? "" : type == 'x' ? "0x" : type == 'X' ? "0X" : type == 'o' ? "0o" : "";
			bl += (size_t)snprintf(body + bl, sizeof(body) - bl, "%s%s", sign, pfx);
			size_t head = bl;
			for (int64_t z = nd; z < prec; z++)
				body[bl++] = '0';
			while (nd > 0)
				body[bl++] = num[--nd];
			body[bl] = '\0';
			int64_t len = (int64_t)bl;
			if (width > len && left) {
				ab_add(&b, body, bl);
				for (int64_t z = len; z < width; z++)
					ab_addch(&b, ' ');
			} else if (width > len && zero) {
				ab_add(&b, body, head);
				for (int64_t z = len; z < width; z++)
					ab_addch(&b, '0');
				ab_add(&b, body + head, bl - head);
			} else {
				for (int64_t z = len; z < width; z++)
					ab_addch(&b, ' ');
				ab_add(&b, body, bl);
			}
			break;
		}
		case 'e':
		case 'E':
		case 'f':
		case 'F':
		case 'g':
		case 'G': {
			if (!tv_is_num(arg))
				rt_fail(rt, "must be real number, not %s", tv_type_name(arg));
			double v = tv_as_double(arg);
			if (width >= 0)
				k += snprintf(spec + k, sizeof(spec) - (size_t)k, "%" PRId64, width);
			k += snprintf(spec + k, sizeof(spec) - (size_t)k, ".%" PRId64, prec >= 0 ? prec : 6);
			snprintf(spec + k, sizeof(spec) - (size_t)k, "%c", type);
			int need = snprintf(NULL, 0, spec, v);
			if (need < 0)
				rt_fail(rt, "bad format");
			char *text = ar_alloc_raw(&rt->ar, (size_t)need + 1);
			snprintf(text, (size_t)need + 1, spec, v);
			ab_add(&b, text, (size_t)need);
			break;
		}
		case 'c': {
			char cbuf[4];
			size_t n;
			if (arg.kind == TV_STR && utf8_len(arg.s.p, arg.s.n) == 1) {
				memcpy(cbuf, arg.s.p, arg.s.n);
				n = arg.s.n;
			} else {
				int64_t v = num_to_int(rt, arg, 'c');
				if (v < 0 || v > 0x10ffff)
					rt_fail(rt, "%%c arg not in range(0x110000)");
				n = utf8_encode(cbuf, (uint32_t)v);
			}
			pad_text(&b, cbuf, n, width, left, ' ');
			break;
		}
		default:
			rt_fail(rt, "unsupported format character '%c'", type);
		}
	}
	if (!used_mapping && !subscriptable && argi < argc)
		rt_fail(rt, "not all arguments converted during string formatting");
	return tv_strn(b.p ? b.p : "", b.n);
}

/* ---- str.format (a useful subset) ------------------------------------------ */

/* Separators every three digits of the integer part of a formatted
 * number ("-1234567.5" -> "-1,234,567.5"). */
static struct tv group_digits(struct rt *rt, struct tv body, char sep)
{
	const char *p = body.s.p, *end = p + body.s.n;
	const char *d = p;
	while (d < end && (*d == '-' || *d == '+' || *d == ' '))
		d++;
	const char *de = d;
	while (de < end && *de >= '0' && *de <= '9')
		de++;
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	ab_add(&b, p, (size_t)(d - p));
	for (const char *q = d; q < de; q++) {
		if (q > d && (de - q) % 3 == 0)
			ab_addch(&b, sep);
		ab_addch(&b, *q);
	}
	ab_add(&b, de, (size_t)(end - de));
	return tv_strn(b.p ? b.p : "", b.n);
}

static struct tv str_format(struct rt *rt, struct tv fmt, const struct callv *cv)
{
	struct abuf b;
	ab_init(&b, &rt->ar, rt->max_output);
	const char *p = fmt.s.p, *end = p + fmt.s.n;
	size_t auto_idx = 0;
	int numbering = 0;	/* 1 automatic "{}", 2 manual "{0}" */
	while (p < end) {
		if (*p == '{' && p + 1 < end && p[1] == '{') {
			ab_addch(&b, '{');
			p += 2;
			continue;
		}
		if (*p == '}' && p + 1 < end && p[1] == '}') {
			ab_addch(&b, '}');
			p += 2;
			continue;
		}
		if (*p == '}')
			rt_fail(rt, "Single '}' encountered in format string");
		if (*p != '{') {
			ab_addch(&b, *p++);
			continue;
		}
		const char *f = ++p;
		while (p < end && *p != '}')
			p++;
		if (p >= end)
			rt_fail(rt, "Single '{' encountered in format string");
		const char *fe = p++;
		const char *colon = memchr(f, ':', (size_t)(fe - f));
		const char *name_end = colon ? colon : fe;
		const char *bang = memchr(f, '!', (size_t)(name_end - f));
		if (bang)
			name_end = bang;
		struct tv arg;
		bool numbered = name_end == f || (*f >= '0' && *f <= '9');
		if (numbered) {
			/* the sandbox's string.Formatter refuses to mix "{}"
			 * with "{0}" (one message for both orders) */
			int mode = name_end == f ? 1 : 2;
			if (numbering && numbering != mode)
				rt_fail(rt, "cannot switch from manual field specification to automatic field numbering");
			numbering = mode;
		}
		if (name_end == f) {
			if (auto_idx >= cv->npos)
				rt_fail(rt, "Replacement index %zu out of range for positional args tuple", auto_idx);
			arg = cv->pos[auto_idx++];
		} else if (*f >= '0' && *f <= '9') {
			size_t idx = (size_t)strtoul(f, NULL, 10);
			if (idx >= cv->npos)
				rt_fail(rt, "Replacement index %zu out of range for positional args tuple", idx);
			arg = cv->pos[idx];
		} else {
			size_t n = (size_t)(name_end - f);
			size_t k;
			for (k = 0; k < cv->nkw; k++)
				if (strlen(cv->kwn[k]) == n && !memcmp(cv->kwn[k], f, n))
					break;
			if (k == cv->nkw)
				rt_fail(rt, "KeyError: '%.*s'", (int)n, f);
			arg = cv->kwv[k];
		}
		if (bang && bang + 1 < fe && bang[1] == 'r') {
			struct abuf t;
			ab_init(&t, &rt->ar, 0);
			tv_repr_append(&t, arg);
			arg = tv_strn(t.p ? t.p : "", t.n);
		}
		if (!colon || colon + 1 == fe) {
			tv_str_append(&b, arg);
			continue;
		}
		/* [[fill]align][sign][0][width][.precision][type] -> % formatting */
		const char *s = colon + 1;
		char fill = ' ', align = 0;
		if (fe - s >= 2 && strchr("<>^=", s[1])) {
			fill = s[0];
			align = s[1];
			s += 2;
		} else if (s < fe && strchr("<>^=", *s)) {
			align = *s++;
		}
		char pspec[64];
		size_t k = 0;
		pspec[k++] = '%';
		if (s < fe && (*s == '+' || *s == '-' || *s == ' '))
			pspec[k++] = *s++;
		bool zero = false;
		if (s < fe && *s == '0' && !align) {
			zero = true;
			s++;
		}
		int64_t width = 0;
		while (s < fe && *s >= '0' && *s <= '9' && width < 100000)
			width = width * 10 + (*s++ - '0');
		char group = 0;	/* ',' or '_': thousands separators */
		if (s < fe && (*s == ',' || *s == '_'))
			group = *s++;
		if (group && zero)
			rt_fail(rt, "format spec with both '0' and '%c' is not supported by dyn", group);
		if (zero && arg.kind != TV_STR) {
			/* '0' pads numbers after the sign: printf's %0Nd */
			k += (size_t)snprintf(pspec + k, sizeof(pspec) - k, "0%" PRId64, width);
			width = 0;
		}
		int64_t prec = -1;
		if (s < fe && *s == '.') {
			s++;
			prec = 0;
			while (s < fe && *s >= '0' && *s <= '9') {
				prec = prec * 10 + (*s++ - '0');
				if (prec > 1000)
					rt_fail(rt, "format precision too large");
			}
		}
		char type = s < fe ? *s : (arg.kind == TV_STR ? 's' : arg.kind == TV_FLOAT ? 'g' : 'd');
		if (type == 'd' && arg.kind == TV_STR)
			rt_fail(rt, "Unknown format code 'd' for object of type 'str'");
		if (group && !strchr("dfFeEgG", type))
			rt_fail(rt, "Cannot specify '%c' with '%c'.", group, type);
		if (prec >= 0)
			k += (size_t)snprintf(pspec + k, sizeof(pspec) - k, ".%" PRId64, prec);
		pspec[k++] = type;
		pspec[k] = '\0';
		struct tv one = tv_list_new(&rt->ar, 1, TVF_TUPLE);
		one.l->v[0] = arg;
		struct tv body;
		if (group && s >= fe && arg.kind == TV_FLOAT && k == 2) {
			/* "{:,}" on a float: str(x) with separators */
			struct abuf t;
			ab_init(&t, &rt->ar, 0);
			tv_str_append(&t, arg);
			body = tv_strn(t.p ? t.p : "", t.n);
		} else {
			body = str_percent_format(rt, tv_strz(ar_strndup(&rt->ar, pspec, k)), one);
		}
		if (group)
			body = group_digits(rt, body, group);
		int64_t len = (int64_t)utf8_len(body.s.p, body.s.n);
		if (!align)
			align = (arg.kind == TV_STR) ? '<' : '>';
		int64_t padn = width > len ? width - len : 0;
		int64_t left = align == '<' ? 0 : align == '^' ? padn / 2 : padn;
		for (int64_t i = 0; i < left; i++)
			ab_addch(&b, fill);
		ab_add(&b, body.s.p, body.s.n);
		for (int64_t i = left; i < padn; i++)
			ab_addch(&b, fill);
	}
	return tv_strn(b.p ? b.p : "", b.n);
}

/* ---- methods ------------------------------------------------------------- */

enum method_id {
	M_NONE,
	/* str */
	M_STARTSWITH, M_ENDSWITH, M_SPLIT, M_RSPLIT, M_STRIP, M_LSTRIP, M_RSTRIP, M_REPLACE,
	M_UPPER, M_LOWER, M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_FIND, M_RFIND,
	M_INDEX, M_RINDEX, M_COUNT, M_JOIN, M_CENTER, M_LJUST, M_RJUST, M_ZFILL, M_ISDIGIT,
	M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_ISNUMERIC, M_ISDECIMAL,
	M_ISTITLE, M_PARTITION, M_RPARTITION, M_SPLITLINES, M_REMOVEPREFIX, M_REMOVESUFFIX,
	M_FORMAT, M_EXPANDTABS,
	/* dict */
	M_GET, M_ITEMS, M_KEYS, M_VALUES, M_COPY,
	/* list */
	M_LCOUNT, M_LINDEX, M_LCOPY,
	/* loop, cycler, float */
	M_CYCLE, M_CHANGED, M_NEXT, M_RESET, M_IS_INTEGER, M_BIT_LENGTH,
};

static const struct { const char *name; int id; } str_methods[] = {
	{ "startswith", M_STARTSWITH }, { "endswith", M_ENDSWITH }, { "split", M_SPLIT },
	{ "rsplit", M_RSPLIT }, { "strip", M_STRIP }, { "lstrip", M_LSTRIP }, { "rstrip", M_RSTRIP },
	{ "replace", M_REPLACE }, { "upper", M_UPPER }, { "lower", M_LOWER }, { "title", M_TITLE },
	{ "capitalize", M_CAPITALIZE }, { "swapcase", M_SWAPCASE }, { "casefold", M_CASEFOLD },
	{ "find", M_FIND }, { "rfind", M_RFIND }, { "index", M_INDEX }, { "rindex", M_RINDEX },
	{ "count", M_COUNT }, { "join", M_JOIN }, { "center", M_CENTER }, { "ljust", M_LJUST },
	{ "rjust", M_RJUST }, { "zfill", M_ZFILL }, { "expandtabs", M_EXPANDTABS }, { "isdigit", M_ISDIGIT }, { "isalpha", M_ISALPHA },
	{ "isalnum", M_ISALNUM }, { "isspace", M_ISSPACE }, { "islower", M_ISLOWER },
	{ "isupper", M_ISUPPER }, { "isnumeric", M_ISNUMERIC }, { "isdecimal", M_ISDECIMAL },
	{ "istitle", M_ISTITLE }, { "partition", M_PARTITION }, { "rpartition", M_RPARTITION },
	{ "splitlines", M_SPLITLINES }, { "removeprefix", M_REMOVEPREFIX },
	{ "removesuffix", M_REMOVESUFFIX }, { "format", M_FORMAT },
};

static const char *const dict_mutators[] = { "pop", "popitem", "setdefault", "update", "clear", NULL };
static const char *const list_mutators[] = { "append", "extend", "insert", "pop", "remove",
					     "reverse", "sort", "clear", NULL };

static bool name_is(const char *name, size_t n, const char *s)
{
	return strlen(s) == n && !memcmp(name, s, n);
}

static struct tv bound(struct rt *rt, struct tv self, int id)
{
	struct tv v = { .kind = TV_METHOD };
	v.meth = ar_alloc(&rt->ar, sizeof(*v.meth));
	v.meth->self = self;
	v.meth->id = id;
	return v;
}

static struct tv unsafe(struct rt *rt, const char *name, size_t n, const char *type)
{
	char buf[160];
	int k = snprintf(buf, sizeof(buf), "\1access to attribute '%.*s' of '%s' object is unsafe.",
			 (int)(n > 60 ? 60 : n), name, type);
	struct tv u = tv_undef(ar_strndup(&rt->ar, buf, (size_t)k), NULL);
	u.flags |= TVF_UNSAFE;
	return u;
}

struct tv method_lookup(struct rt *rt, struct tv self, const char *name, size_t n)
{
	struct tv none = { .kind = TV_UNDEF };
	switch (self.kind) {
	case TV_STR:
		for (size_t i = 0; i < sizeof(str_methods) / sizeof(str_methods[0]); i++)
			if (name_is(name, n, str_methods[i].name))
				return bound(rt, self, str_methods[i].id);
		return none;
	case TV_DICT:
		if (name_is(name, n, "get"))
			return bound(rt, self, M_GET);
		if (name_is(name, n, "items"))
			return bound(rt, self, M_ITEMS);
		if (name_is(name, n, "keys"))
			return bound(rt, self, M_KEYS);
		if (name_is(name, n, "values"))
			return bound(rt, self, M_VALUES);
		if (name_is(name, n, "copy"))
			return bound(rt, self, M_COPY);
		for (int i = 0; dict_mutators[i]; i++)
			if (name_is(name, n, dict_mutators[i]))
				return unsafe(rt, name, n, "dict");
		if (name_is(name, n, "fromkeys"))
			return unsafe(rt, name, n, "dict");
		return none;
	case TV_LIST:
		if (self.flags & TVF_ITER)
			return none;
		if (name_is(name, n, "count"))
			return bound(rt, self, M_LCOUNT);
		if (name_is(name, n, "index"))
			return bound(rt, self, M_LINDEX);
		if (self.flags & TVF_TUPLE)
			return none;
		if (name_is(name, n, "copy"))
			return bound(rt, self, M_LCOPY);
		for (int i = 0; list_mutators[i]; i++)
			if (name_is(name, n, list_mutators[i]))
				return unsafe(rt, name, n, "list");
		return none;
	case TV_LOOP:
		if (name_is(name, n, "cycle"))
			return bound(rt, self, M_CYCLE);
		if (name_is(name, n, "changed"))
			return bound(rt, self, M_CHANGED);
		return none;
	case TV_CYCLER:
		if (name_is(name, n, "next"))
			return bound(rt, self, M_NEXT);
		if (name_is(name, n, "reset"))
			return bound(rt, self, M_RESET);
		if (name_is(name, n, "current"))
			return self.cy->items->n ? self.cy->items->v[self.cy->pos] : tv_none();
		return none;
	case TV_FLOAT:
		if (name_is(name, n, "is_integer"))
			return bound(rt, self, M_IS_INTEGER);
		if (name_is(name, n, "real"))
			return self;
		if (name_is(name, n, "imag"))
			return tv_float(0);
		return none;
	case TV_INT:
	case TV_BOOL:
		if (name_is(name, n, "bit_length"))
			return bound(rt, self, M_BIT_LENGTH);
		if (name_is(name, n, "real"))
			return tv_int(self.kind == TV_BOOL ? self.b : self.i);
		if (name_is(name, n, "imag"))
			return tv_int(0);
		return none;
	default:
		return none;
	}
}

static int64_t arg_int(struct rt *rt, struct tv v, const char *what)
{
	if (v.kind == TV_INT)
		return v.i;
	if (v.kind == TV_BOOL)
		return v.b;
	if (v.kind == TV_NONE)
		return INT64_MIN;
	rt_fail(rt, "%s: '%s' object cannot be interpreted as an integer", what, tv_type_name(v));
}

static struct tv need_str(struct rt *rt, struct tv v, const char *what)
{
	if (v.kind != TV_STR) {
		if (v.kind == TV_UNDEF)
			rt_fail_undef(rt, v);
		rt_fail(rt, "%s: must be str, not %s", what, tv_type_name(v));
	}
	return v;
}

/* Byte range of the code-point range [start, end) with Python's clamping. */
static void cp_range(struct tv s, int64_t start, int64_t end, size_t *b0, size_t *b1)
{
	int64_t len = (int64_t)utf8_len(s.s.p, s.s.n);
	if (start == INT64_MIN)
		start = 0;
	if (end == INT64_MIN)
		end = len;
	if (start < 0)
		start = start + len < 0 ? 0 : start + len;
	if (end < 0)
		end = end + len < 0 ? 0 : end + len;
	if (start > len)
		start = len;
	if (end > len)
		end = len;
	if (end < start)
		end = start;
	*b0 = utf8_offset(s.s.p, s.s.n, (size_t)start);
	*b1 = utf8_offset(s.s.p, s.s.n, (size_t)end);
}

static bool affix_match(struct rt *rt, struct tv s, struct tv affix, int64_t start, int64_t end,
			bool prefix)
{
	size_t b0, b1;
	cp_range(s, start, end, &b0, &b1);
	if (affix.kind == TV_LIST && (affix.flags & TVF_TUPLE)) {
		for (size_t i = 0; i < affix.l->n; i++)
			if (affix_match(rt, s, affix.l->v[i], start, end, prefix))
				return true;
		return false;
	}
	if (affix.kind != TV_STR)
		rt_fail(rt, "%s first arg must be str or a tuple of str, not %s",
			prefix ? "startswith" : "endswith", tv_type_name(affix));
	size_t n = b1 - b0;
	if (affix.s.n > n)
		return false;
	const char *at = prefix ? s.s.p + b0 : s.s.p + b1 - affix.s.n;
	return !memcmp(at, affix.s.p, affix.s.n);
}

static int64_t find_sub(struct tv s, struct tv sub, int64_t start, int64_t end, bool reverse)
{
	size_t b0, b1;
	cp_range(s, start, end, &b0, &b1);
	if (sub.s.n > b1 - b0)
		return -1;
	const char *hit = NULL;
	if (!reverse) {
		hit = sub.s.n ? memmem(s.s.p + b0, b1 - b0, sub.s.p, sub.s.n) : s.s.p + b0;
	} else {
		for (size_t i = b1 - sub.s.n + 1; i-- > b0;) {
			if (!memcmp(s.s.p + i, sub.s.p, sub.s.n)) {
				hit = s.s.p + i;
				break;
			}
		}
	}
	if (!hit)
		return -1;
	return (int64_t)utf8_len(s.s.p, (size_t)(hit - s.s.p));
}

static bool str_all(struct tv s, bool (*pred)(uint32_t))
{
	if (!s.s.n)
		return false;
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end)
		if (!pred(utf8_next(&p, end)))
			return false;
	return true;
}

static bool cp_isspace_fn(uint32_t c) { return py_isspace(c); }

static bool str_case_test(struct tv s, bool lower)
{
	bool cased = false;
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		uint32_t c = utf8_next(&p, end);
		if (lower ? cp_isupper(c) : cp_islower(c))
			return false;
		if (cp_iscased(c))
			cased = true;
	}
	return cased;
}

static bool str_istitle(struct tv s)
{
	bool cased = false, prev_cased = false;
	const char *p = s.s.p, *end = p + s.s.n;
	while (p < end) {
		uint32_t c = utf8_next(&p, end);
		if (cp_isupper(c)) {
			if (prev_cased)
				return false;
			prev_cased = cased = true;
		} else if (cp_islower(c)) {
			if (!prev_cased)
				return false;
			prev_cased = cased = true;
		} else {
			prev_cased = false;
		}
	}
	return cased;
}

static struct tv partition(struct rt *rt, struct tv s, struct tv sep, bool right)
{
	need_str(rt, sep, "partition");
	if (!sep.s.n)
		rt_fail(rt, "empty separator");
	struct tv r = tv_list_new(&rt->ar, 3, TVF_TUPLE);
	const char *hit = NULL;
	if (!right) {
		hit = memmem(s.s.p, s.s.n, sep.s.p, sep.s.n);
	} else if (sep.s.n <= s.s.n) {
		for (size_t i = s.s.n - sep.s.n + 1; i-- > 0;)
			if (!memcmp(s.s.p + i, sep.s.p, sep.s.n)) {
				hit = s.s.p + i;
				break;
			}
	}
	if (!hit) {
		r.l->v[right ? 2 : 0] = s;
		r.l->v[1] = tv_strn("", 0);
		r.l->v[right ? 0 : 2] = tv_strn("", 0);
		return r;
	}
	r.l->v[0] = tv_strn(s.s.p, (size_t)(hit - s.s.p));
	r.l->v[1] = sep;
	r.l->v[2] = tv_strn(hit + sep.s.n, s.s.n - (size_t)(hit - s.s.p) - sep.s.n);
	return r;
}

static void no_args(struct rt *rt, const struct callv *cv)
{
	if (cv->npos || cv->nkw)
		rt_fail(rt, "method takes no arguments (%zu given)", cv->npos + cv->nkw);
}

static struct tv str_method(struct rt *rt, struct tv s, int id, const struct callv *cv)
{
	struct tv a[4] = { tv_none(), tv_none(), tv_none(), tv_none() };
	bool g[4];
	switch (id) {
	case M_UPPER: case M_LOWER: case M_CASEFOLD: case M_TITLE: case M_CAPITALIZE:
	case M_SWAPCASE: case M_ISDIGIT: case M_ISDECIMAL: case M_ISNUMERIC: case M_ISALPHA:
	case M_ISALNUM: case M_ISSPACE: case M_ISLOWER: case M_ISUPPER: case M_ISTITLE:
		no_args(rt, cv);
		break;
	default:
		break;
	}
	switch (id) {
	case M_STARTSWITH:
	case M_ENDSWITH: {
		static const char *const names[] = { "prefix", "start", "end" };
		bind_args(rt, id == M_STARTSWITH ? "startswith" : "endswith", cv, names, 3, a, g);
		if (!g[0])
			rt_fail(rt, "%s() takes at least 1 argument (0 given)",
				id == M_STARTSWITH ? "startswith" : "endswith");
		return tv_bool(affix_match(rt, s, a[0], arg_int(rt, a[1], "start"),
					   arg_int(rt, a[2], "end"), id == M_STARTSWITH));
	}
	case M_SPLIT:
	case M_RSPLIT: {
		static const char *const names[] = { "sep", "maxsplit" };
		a[1] = tv_int(-1);
		bind_args(rt, id == M_SPLIT ? "split" : "rsplit", cv, names, 2, a, g);
		if (a[0].kind != TV_NONE)
			need_str(rt, a[0], "split");
		return str_split(rt, s, a[0], arg_int(rt, a[1], "maxsplit"), id == M_RSPLIT);
	}
	case M_STRIP:
	case M_LSTRIP:
	case M_RSTRIP: {
		static const char *const names[] = { "chars" };
		bind_args(rt, "strip", cv, names, 1, a, g);
		if (a[0].kind != TV_NONE)
			need_str(rt, a[0], "strip arg");
		return str_strip(rt, s, a[0], id == M_STRIP ? 3 : id == M_LSTRIP ? 1 : 2);
	}
	case M_REPLACE: {
		static const char *const names[] = { "old", "new", "count" };
		a[2] = tv_int(-1);
		bind_args(rt, "replace", cv, names, 3, a, g);
		if (!g[0] || !g[1])
			rt_fail(rt, "replace() takes at least 2 arguments");
		need_str(rt, a[0], "replace() argument 1");
		need_str(rt, a[1], "replace() argument 2");
		return str_replace(rt, s, a[0], a[1], arg_int(rt, a[2], "count"));
	}
	case M_UPPER: return str_upper(rt, s);
	case M_LOWER:
	case M_CASEFOLD: return str_lower(rt, s);
	case M_TITLE: return str_title(rt, s);
	case M_CAPITALIZE: return str_capitalize(rt, s);
	case M_SWAPCASE: return str_swapcase(rt, s);
	case M_FIND:
	case M_RFIND:
	case M_INDEX:
	case M_RINDEX:
	case M_COUNT: {
		static const char *const names[] = { "sub", "start", "end" };
		bind_args(rt, "find", cv, names, 3, a, g);
		need_str(rt, a[0], "find() argument");
		int64_t st = arg_int(rt, a[1], "start"), en = arg_int(rt, a[2], "end");
		if (id == M_COUNT) {
			size_t b0, b1;
			cp_range(s, st, en, &b0, &b1);
			if (!a[0].s.n)
				return tv_int((int64_t)utf8_len(s.s.p + b0, b1 - b0) + 1);
			int64_t n = 0;
			const char *p = s.s.p + b0, *e = s.s.p + b1;
			while ((p = memmem(p, (size_t)(e - p), a[0].s.p, a[0].s.n))) {
				n++;
				p += a[0].s.n;
			}
			return tv_int(n);
		}
		int64_t r = find_sub(s, a[0], st, en, id == M_RFIND || id == M_RINDEX);
		if (r < 0 && (id == M_INDEX || id == M_RINDEX))
			rt_fail(rt, "substring not found");
		return tv_int(r);
	}
	case M_JOIN:
		if (cv->npos != 1 || cv->nkw)
			rt_fail(rt, "join() takes exactly one argument");
		return str_join(rt, s, rt_iterate(rt, cv->pos[0]));
	case M_CENTER:
	case M_LJUST:
	case M_RJUST: {
		static const char *const names[] = { "width", "fillchar" };
		a[1] = tv_strn(" ", 1);
		bind_args(rt, "center", cv, names, 2, a, g);
		need_str(rt, a[1], "fillchar");
		if (utf8_len(a[1].s.p, a[1].s.n) != 1)
			rt_fail(rt, "The fill character must be exactly one character long");
		int64_t w = arg_int(rt, a[0], "width");
		if (id == M_CENTER)
			return str_center(rt, s, w, a[1].s.p, a[1].s.n);
		return str_pad(rt, s, w, a[1].s.p, a[1].s.n, id == M_RJUST);
	}
	case M_EXPANDTABS: {
		/* columns count code points; a line break starts column 0 again */
		static const char *const names[] = { "tabsize" };
		bind_args(rt, "expandtabs", cv, names, 1, a, g);
		int64_t tab = g[0] ? arg_int(rt, a[0], "tabsize") : 8;
		struct abuf b;
		ab_init(&b, &rt->ar, rt->max_output);
		int64_t col = 0;
		const char *p = s.s.p, *end = p + s.s.n;
		while (p < end) {
			const char *at = p;
			uint32_t c = utf8_next(&p, end);
			if (c == '\t') {
				if (tab > 0) {
					int64_t pad = tab - col % tab;
					for (int64_t i = 0; i < pad; i++)
						ab_addch(&b, ' ');
					col += pad;
				}
				continue;
			}
			ab_add(&b, at, (size_t)(p - at));
			col = c == '\n' || c == '\r' ? 0 : col + 1;
		}
		return finish(&b, s);
	}
	case M_ZFILL: {
		static const char *const names[] = { "width" };
		bind_args(rt, "zfill", cv, names, 1, a, g);
		int64_t w = arg_int(rt, a[0], "width");
		int64_t len = (int64_t)utf8_len(s.s.p, s.s.n);
		if (w <= len)
			return s;
		if (w > (int64_t)rt->max_output)
			rt_fail(rt, "width too large");
		struct abuf b;
		ab_init(&b, &rt->ar, 0);
		size_t off = 0;
		if (s.s.n && (s.s.p[0] == '+' || s.s.p[0] == '-')) {
			ab_addch(&b, s.s.p[0]);
			off = 1;
		}
		for (int64_t i = len; i < w; i++)
			ab_addch(&b, '0');
		ab_add(&b, s.s.p + off, s.s.n - off);
		return tv_strn(b.p, b.n);
	}
	case M_ISDIGIT:
	case M_ISDECIMAL: return tv_bool(str_all(s, cp_isdecimal));
	case M_ISNUMERIC: return tv_bool(str_all(s, cp_isnumeric));
	case M_ISALPHA: return tv_bool(str_all(s, cp_isalpha));
	case M_ISALNUM: return tv_bool(str_all(s, cp_isalnum));
	case M_ISSPACE: return tv_bool(str_all(s, cp_isspace_fn));
	case M_ISLOWER: return tv_bool(str_case_test(s, true));
	case M_ISUPPER: return tv_bool(str_case_test(s, false));
	case M_ISTITLE: return tv_bool(str_istitle(s));
	case M_PARTITION:
	case M_RPARTITION:
		if (cv->npos != 1)
			rt_fail(rt, "partition() takes exactly one argument");
		return partition(rt, s, cv->pos[0], id == M_RPARTITION);
	case M_SPLITLINES: {
		static const char *const names[] = { "keepends" };
		a[0] = tv_bool(false);
		bind_args(rt, "splitlines", cv, names, 1, a, g);
		return str_splitlines(rt, s, tv_truthy(a[0]));
	}
	case M_REMOVEPREFIX:
	case M_REMOVESUFFIX: {
		if (cv->npos != 1)
			rt_fail(rt, "removeprefix() takes exactly one argument");
		struct tv x = need_str(rt, cv->pos[0], "removeprefix() argument");
		if (x.s.n > s.s.n)
			return s;
		if (id == M_REMOVEPREFIX)
			return memcmp(s.s.p, x.s.p, x.s.n) ? s : tv_strn(s.s.p + x.s.n, s.s.n - x.s.n);
		return memcmp(s.s.p + s.s.n - x.s.n, x.s.p, x.s.n) ? s : tv_strn(s.s.p, s.s.n - x.s.n);
	}
	case M_FORMAT:
		return str_format(rt, s, cv);
	default:
		rt_fail(rt, "internal error: bad string method");
	}
}

struct tv method_call(struct rt *rt, const struct tmethod *m, const struct callv *cv)
{
	struct tv self = m->self;
	struct tv a[2] = { tv_none(), tv_none() };
	bool g[2];
	/* string methods scan their operands: charge for the bytes */
	rt_work_str(rt, self);
	for (size_t i = 0; i < cv->npos; i++)
		rt_work_str(rt, cv->pos[i]);
	for (size_t i = 0; i < cv->nkw; i++)
		rt_work_str(rt, cv->kwv[i]);
	if (self.kind == TV_STR)
		return str_method(rt, self, m->id, cv);
	switch (m->id) {
	case M_ITEMS: case M_KEYS: case M_VALUES: case M_COPY: case M_LCOPY: case M_RESET:
	case M_NEXT: case M_IS_INTEGER: case M_BIT_LENGTH:
		no_args(rt, cv);
		break;
	default:
		break;
	}
	switch (m->id) {
	case M_GET: {
		static const char *const names[] = { "key", "default" };
		bind_args(rt, "get", cv, names, 2, a, g);
		if (!g[0])
			rt_fail(rt, "get expected at least 1 argument, got 0");
		struct tv v;
		if (!tv_hashable(a[0]))
			rt_fail(rt, "unhashable type: '%s'", tv_type_name(a[0]));
		if (tv_dict_get(self.d, a[0], &v))
			return v;
		return a[1];
	}
	case M_ITEMS: {
		struct tv l = tv_list_new(&rt->ar, self.d->n, 0);
		for (size_t i = 0; i < self.d->n; i++) {
			struct tv pair = tv_list_new(&rt->ar, 2, TVF_TUPLE);
			pair.l->v[0] = self.d->k[i];
			pair.l->v[1] = self.d->v[i];
			l.l->v[i] = pair;
		}
		return l;
	}
	case M_KEYS:
	case M_VALUES: {
		struct tv l = tv_list_new(&rt->ar, 0, 0);
		l.l->n = self.d->n;
		l.l->v = m->id == M_KEYS ? self.d->k : self.d->v;
		return l;
	}
	case M_COPY:
	case M_LCOPY:
		return self;
	case M_LCOUNT: {
		if (cv->npos != 1)
			rt_fail(rt, "count() takes exactly one argument");
		int64_t n = 0;
		for (size_t i = 0; i < self.l->n; i++)
			n += tv_equal(self.l->v[i], cv->pos[0]);
		return tv_int(n);
	}
	case M_LINDEX: {
		if (cv->npos < 1)
			rt_fail(rt, "index expected at least 1 argument, got 0");
		for (size_t i = 0; i < self.l->n; i++)
			if (tv_equal(self.l->v[i], cv->pos[0]))
				return tv_int((int64_t)i);
		rt_fail(rt, "value is not in list");
	}
	case M_CYCLE: {
		if (cv->npos == 0)
			rt_fail(rt, "no items for cycling given");
		return cv->pos[self.loop->index0 % cv->npos];
	}
	case M_CHANGED: {
		struct tv now = tv_list_new(&rt->ar, cv->npos, TVF_TUPLE);
		for (size_t i = 0; i < cv->npos; i++)
			now.l->v[i] = cv->pos[i];
		struct tloop *l = self.loop;
		if (l->changed_set && tv_equal(l->last_changed, now))
			return tv_bool(false);
		l->last_changed = now;
		l->changed_set = true;
		return tv_bool(true);
	}
	case M_NEXT: {
		struct tcycler *c = self.cy;
		if (!c->items->n)
			return tv_none();
		struct tv v = c->items->v[c->pos];
		c->pos = (c->pos + 1) % c->items->n;
		return v;
	}
	case M_RESET:
		self.cy->pos = 0;
		return tv_none();
	case M_IS_INTEGER:
		return tv_bool(isfinite(self.f) && self.f == floor(self.f));
	case M_BIT_LENGTH: {
		int64_t v = self.kind == TV_BOOL ? self.b : self.i;
		uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
		int64_t bits = 0;
		for (; mag; mag >>= 1)
			bits++;
		return tv_int(bits);
	}
	default:
		rt_fail(rt, "internal error: bad method");
	}
}

/* ---- globals ------------------------------------------------------------- */

static const struct { const char *name; int id; } globals[] = {
	{ "range", G_RANGE }, { "dict", G_DICT }, { "namespace", G_NAMESPACE },
	{ "cycler", G_CYCLER }, { "joiner", G_JOINER }, { "lipsum", G_LIPSUM },
	{ "raise_exception", G_RAISE }, { "strftime_now", G_STRFTIME },
};

bool global_lookup(const char *name, struct tv *out)
{
	for (size_t i = 0; i < sizeof(globals) / sizeof(globals[0]); i++) {
		if (!strcmp(globals[i].name, name)) {
			struct tv v = { .kind = TV_FUNC, .id = (uint16_t)globals[i].id };
			*out = v;
			return true;
		}
	}
	return false;
}

#define MAX_RANGE 100000

static void dict_from_args(struct rt *rt, struct dict_builder *db, const struct callv *cv, const char *fname)
{
	if (cv->npos > 1)
		rt_fail(rt, "%s expected at most 1 argument, got %zu", fname, cv->npos);
	if (cv->npos == 1) {
		struct tv src = cv->pos[0];
		if (src.kind == TV_DICT) {
			for (size_t i = 0; i < src.d->n; i++)
				db_put(db, src.d->k[i], src.d->v[i]);
		} else {
			struct tlist *items = rt_iterate(rt, src);
			for (size_t i = 0; i < items->n; i++) {
				struct tlist *pair = rt_iterate(rt, items->v[i]);
				if (pair->n != 2)
					rt_fail(rt, "dictionary update sequence element #%zu has length %zu; 2 is required",
						i, pair->n);
				if (!tv_hashable(pair->v[0]))
					rt_fail(rt, "unhashable type: '%s'", tv_type_name(pair->v[0]));
				db_put(db, pair->v[0], pair->v[1]);
			}
		}
	}
	for (size_t k = 0; k < cv->nkw; k++)
		db_put(db, tv_strz(cv->kwn[k]), cv->kwv[k]);
}

static struct tv do_strftime(struct rt *rt, struct tv fmt)
{
	/* Python formats %f, %z and %Z itself; for a naive time those are
	 * "000000", "" and ""; the rest goes to the C library, as in Python. */
	struct abuf f;
	ab_init(&f, &rt->ar, 0);
	for (size_t i = 0; i < fmt.s.n; i++) {
		char c = fmt.s.p[i];
		if (c == '%' && i + 1 < fmt.s.n) {
			char d = fmt.s.p[i + 1];
			if (d == 'f') {
				ab_adds(&f, "000000");
				i++;
				continue;
			}
			if (d == 'z' || d == 'Z') {
				i++;
				continue;
			}
			ab_addch(&f, c);
			ab_addch(&f, d);
			i++;
			continue;
		}
		ab_addch(&f, c);
	}
	if (!f.n)
		return tv_strn("", 0);
	for (size_t cap = 256; cap <= (1u << 20); cap *= 4) {
		char *out = ar_alloc_raw(&rt->ar, cap);
		struct tm tm = rt->now;
		size_t n = strftime(out, cap, f.p, &tm);
		if (n > 0)
			return tv_strn(out, n);
	}
	return tv_strn("", 0);
}

/* Ranges within 0..RANGE_TABLE_MAX use the shared table. */
#define RANGE_TABLE_MAX (2 * MAX_RANGE)

/* range(start, start + n): a view of the render's table of integers (lists
 * are immutable), so that a loop over a range run many times, or ranges
 * of many sizes, take memory for the largest one only.  The table grows
 * by doubling; old tables stay for the lists that point into them. */
static struct tv shared_range(struct rt *rt, size_t start, size_t n)
{
	size_t want = start + n;
	if (want > rt->nints) {
		size_t cap = rt->nints * 2 > want ? rt->nints * 2 : want;
		if (cap < 256)
			cap = 256;
		if (cap > RANGE_TABLE_MAX)
			cap = want;
		struct tv *t = ar_alloc_raw(&rt->ar, cap * sizeof(struct tv));
		for (size_t i = 0; i < cap; i++)
			t[i] = tv_int((int64_t)i);
		rt->ints = t;
		rt->nints = cap;
	}
	struct tv l = { .kind = TV_LIST };
	l.l = ar_alloc(&rt->ar, sizeof(*l.l));
	l.l->n = n;
	l.l->v = rt->ints + start;
	return l;
}

struct tv global_call(struct rt *rt, int id, const struct callv *cv)
{
	switch (id) {
	case G_RANGE: {
		if (cv->nkw)
			rt_fail(rt, "range() takes no keyword arguments");
		if (cv->npos < 1 || cv->npos > 3)
			rt_fail(rt, "range expected 1 to 3 arguments, got %zu", cv->npos);
		int64_t v[3] = { 0, 0, 0 };
		for (size_t i = 0; i < cv->npos; i++) {
			struct tv x = cv->pos[i];
			if (x.kind == TV_INT)
				v[i] = x.i;
			else if (x.kind == TV_BOOL)
				v[i] = x.b;
			else if (x.kind == TV_BIGINT)
				rt_fail(rt, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
					MAX_RANGE);
			else
				rt_fail(rt, "'%s' object cannot be interpreted as an integer", tv_type_name(x));
		}
		int64_t start = 0, stop, step = 1;
		if (cv->npos == 1) {
			stop = v[0];
		} else {
			start = v[0];
			stop = v[1];
			if (cv->npos == 3)
				step = v[2];
		}
		if (step == 0)
			rt_fail(rt, "range() arg 3 must not be zero");
		/* length in long double to avoid overflow */
		long double len = 0;
		if (step > 0 && start < stop)
			len = ((long double)stop - start - 1) / step + 1;
		else if (step < 0 && stop < start)
			len = ((long double)start - stop - 1) / -(long double)step + 1;
		if (len > MAX_RANGE) {
			rt->err_code = -E2BIG;
			rt_fail(rt, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).",
				MAX_RANGE);
		}
		size_t n = (size_t)len;
		if (n && step == 1 && start >= 0 && start + (int64_t)n <= RANGE_TABLE_MAX)
			return shared_range(rt, (size_t)start, n);
		struct tv l = tv_list_new(&rt->ar, n, 0);
		for (size_t i = 0; i < n; i++)
			l.l->v[i] = tv_int(start + (int64_t)i * step);
		return l;
	}
	case G_DICT: {
		struct dict_builder db;
		db_init(&db, &rt->ar, cv->nkw + 4);
		dict_from_args(rt, &db, cv, "dict");
		return db_done(&db);
	}
	case G_NAMESPACE: {
		struct dict_builder db;
		db_init(&db, &rt->ar, cv->nkw + 4);
		dict_from_args(rt, &db, cv, "namespace");
		struct tv ns = { .kind = TV_NS };
		ns.ns = ar_alloc(&rt->ar, sizeof(*ns.ns));
		ns.ns->n = ns.ns->cap = db.n;
		ns.ns->k = db.k;
		ns.ns->v = db.v;
		ns.ns->cap = db.cap;
		for (size_t i = 0; i < db.n; i++)
			if (db.k[i].kind != TV_STR)
				rt_fail(rt, "namespace keywords must be strings");
		return ns;
	}
	case G_CYCLER: {
		struct tv c = { .kind = TV_CYCLER };
		c.cy = ar_alloc(&rt->ar, sizeof(*c.cy));
		struct tv l = tv_list_new(&rt->ar, cv->npos, 0);
		for (size_t i = 0; i < cv->npos; i++)
			l.l->v[i] = cv->pos[i];
		c.cy->items = l.l;
		return c;
	}
	case G_JOINER: {
		static const char *const names[] = { "sep" };
		struct tv a[1] = { tv_strn(", ", 2) };
		bool g[1];
		bind_args(rt, "joiner", cv, names, 1, a, g);
		struct tv s = rt_to_str(rt, a[0]);
		struct tv j = { .kind = TV_JOINER };
		j.cy = ar_alloc(&rt->ar, sizeof(*j.cy));
		j.cy->sep = ar_strndup(&rt->ar, s.s.p, s.s.n);
		j.cy->items = tv_list_new(&rt->ar, 0, 0).l;
		return j;
	}
	case G_LIPSUM:
		rt_fail(rt, "lipsum() is not supported");
	case G_RAISE: {
		if (cv->npos != 1 || cv->nkw)
			rt_fail(rt, "raise_exception() takes exactly one argument (%zu given)", cv->npos + cv->nkw);
		struct tv msg = rt_to_str(rt, cv->pos[0]);
		rt_fail(rt, "%.*s", (int)(msg.s.n > 900 ? 900 : msg.s.n), msg.s.p);
	}
	case G_STRFTIME: {
		if (cv->npos != 1 || cv->nkw)
			rt_fail(rt, "strftime_now() takes exactly one argument (%zu given)", cv->npos + cv->nkw);
		struct tv fmt = cv->pos[0];
		if (fmt.kind != TV_STR)
			rt_fail(rt, "strftime() argument 1 must be str, not %s", tv_type_name(fmt));
		return do_strftime(rt, fmt);
	}
	default:
		rt_fail(rt, "internal error: bad global");
	}
}
