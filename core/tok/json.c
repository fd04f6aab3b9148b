/*
 * json.c - in-place JSON reader with an arena (see json.h).
 *
 * Recursive descent over the buffer.  Children of the container being
 * parsed collect on one shared stack; when the container closes they are
 * copied to the arena in one piece, so every array and object is a
 * contiguous run of nodes.
 */
#include "core/tok/json.h"
#include "core/tok/utf8.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct tj_arena {
	struct tj_arena *next;
	size_t used, cap;
	struct tj v[];
};

struct parser {
	char *buf, *p, *end;
	unsigned flags;
	const char *what;
	struct tj *stack;
	size_t sn, salloc;
	struct tj_arena *arena;
};

static struct tj *arena_alloc(struct parser *ps, size_t n)
{
	struct tj_arena *a = ps->arena;
	if (!a || a->cap - a->used < n) {
		size_t cap = n > 65536 ? n : 65536;
		a = xmalloc(sizeof(*a) + cap * sizeof(struct tj));
		a->used = 0;
		a->cap = cap;
		a->next = ps->arena;
		ps->arena = a;
	}
	struct tj *r = a->v + a->used;
	a->used += n;
	return r;
}

static int fail(struct parser *ps, const char *at, const char *msg)
{
	size_t line = 1, col = 1;
	for (const char *q = ps->buf; q < at && q < ps->end; q++) {
		if (*q == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)*q & 0xC0) != 0x80) {
			col++;
		}
	}
	if (at >= ps->end)
		return err_set(-EINVAL, "%s: unexpected end of input after line %zu (truncated file?): %s",
			       ps->what, line, msg);
	return err_set(-EINVAL, "%s: line %zu, column %zu: %s", ps->what, line, col, msg);
}

static inline void skip_ws(struct parser *ps)
{
	char *p = ps->p;
	while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	ps->p = p;
}

static int hex4(const char *p, const char *end, unsigned *out)
{
	unsigned v = 0;
	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

/* ps->p is just past the opening quote.  Decodes in place. */
static int parse_string(struct parser *ps, const char **out, uint32_t *outlen)
{
	char *start = ps->p, *src = ps->p, *dst = ps->p, *end = ps->end;

	for (;;) {
		/* plain run */
		char *run = src;
		while (src < end && *src != '"' && *src != '\\' &&
		       (unsigned char)*src >= 0x20)
			src++;
		if (dst != run)
			memmove(dst, run, (size_t)(src - run));
		dst += src - run;
		if (src >= end)
			return fail(ps, end, "unterminated string");
		if (*src == '"')
			break;
		if ((unsigned char)*src < 0x20)
			return fail(ps, src, "control character inside a string (must be escaped)");
		/* escape */
		if (src + 1 >= end)
			return fail(ps, end, "unterminated escape in string");
		char e = src[1];
		src += 2;
		switch (e) {
		case '"': *dst++ = '"'; break;
		case '\\': *dst++ = '\\'; break;
		case '/': *dst++ = '/'; break;
		case 'b': *dst++ = '\b'; break;
		case 'f': *dst++ = '\f'; break;
		case 'n': *dst++ = '\n'; break;
		case 'r': *dst++ = '\r'; break;
		case 't': *dst++ = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (hex4(src, end, &cp) < 0)
				return fail(ps, src, "bad \\u escape (need 4 hex digits)");
			src += 4;
			if (cp >= 0xD800 && cp <= 0xDBFF && end - src >= 6 && src[0] == '\\' &&
			    src[1] == 'u' && hex4(src + 2, end, &lo) == 0 &&
			    lo >= 0xDC00 && lo <= 0xDFFF) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				src += 6;
			} else if (cp >= 0xD800 && cp <= 0xDFFF) {
				if (!(ps->flags & TJ_SURROGATEESCAPE))
					return fail(ps, src - 6, "lone surrogate in \\u escape");
				if (cp >= 0xDC80 && cp <= 0xDCFF) {
					*dst++ = (char)(cp - 0xDC00);
					break;
				}
				cp = 0xFFFD;
			}
			dst += tok_utf8_encode(cp, dst);
			break;
		}
		default:
			return fail(ps, src - 2, "invalid escape in string");
		}
	}
	*dst = '\0';	/* dst <= src: the closing quote or earlier */
	*out = start;
	*outlen = (uint32_t)(dst - start);
	ps->p = src + 1;
	return 0;
}

static int parse_number(struct parser *ps, struct tj *v)
{
	char *p = ps->p, *end = ps->end, *s = p;
	int neg = 0, simple = 1;
	uint64_t iv = 0;
	int digits = 0;

	if (p < end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p >= end || *p < '0' || *p > '9')
		return fail(ps, p, "invalid number");
	if (*p == '0') {
		p++;
		digits = 1;
	} else {
		while (p < end && *p >= '0' && *p <= '9') {
			if (digits < 18)
				iv = iv * 10 + (uint64_t)(*p - '0');
			else
				simple = 0;
			digits++;
			p++;
		}
	}
	if (p < end && *p == '.') {
		simple = 0;
		p++;
		if (p >= end || *p < '0' || *p > '9')
			return fail(ps, p, "invalid number (digit expected after '.')");
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		simple = 0;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (p >= end || *p < '0' || *p > '9')
			return fail(ps, p, "invalid number (digit expected in exponent)");
		while (p < end && *p >= '0' && *p <= '9')
			p++;
	}
	v->type = TJ_NUM;
	if (simple) {
		v->u.num = neg ? -(double)iv : (double)iv;
	} else {
		char tmp[64];
		size_t n = (size_t)(p - s);
		if (n >= sizeof(tmp)) {
			char *big = xstrndup(s, n);
			v->u.num = strtod(big, NULL);
			free(big);
		} else {
			memcpy(tmp, s, n);
			tmp[n] = '\0';
			v->u.num = strtod(tmp, NULL);
		}
	}
	ps->p = p;
	return 0;
}

static void push(struct parser *ps, const struct tj *v)
{
	if (ps->sn == ps->salloc) {
		ps->salloc = ps->salloc ? ps->salloc * 2 : 1024;
		ps->stack = xrealloc(ps->stack, ps->salloc * sizeof(struct tj));
	}
	ps->stack[ps->sn++] = *v;
}

static int parse_value(struct parser *ps, struct tj *v, int depth);

static int finish_container(struct parser *ps, struct tj *v, size_t base)
{
	size_t n = ps->sn - base;
	if (n > UINT32_MAX)
		return fail(ps, ps->p, "container too large");
	v->len = (uint32_t)n;
	v->u.kid = NULL;
	if (n) {
		v->u.kid = arena_alloc(ps, n);
		memcpy(v->u.kid, ps->stack + base, n * sizeof(struct tj));
	}
	ps->sn = base;
	return 0;
}

static int parse_array(struct parser *ps, struct tj *v, int depth)
{
	size_t base = ps->sn;
	struct tj kid;

	v->type = TJ_ARR;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return finish_container(ps, v, base);
	}
	for (;;) {
		int rc = parse_value(ps, &kid, depth + 1);
		if (rc < 0)
			return rc;
		kid.key = NULL;
		kid.klen = 0;
		push(ps, &kid);
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "unterminated array");
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == ']') {
			ps->p++;
			return finish_container(ps, v, base);
		}
		return fail(ps, ps->p, "expected ',' or ']' in array");
	}
}

static int parse_object(struct parser *ps, struct tj *v, int depth)
{
	size_t base = ps->sn;
	struct tj kid;

	v->type = TJ_OBJ;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return finish_container(ps, v, base);
	}
	for (;;) {
		const char *key;
		uint32_t klen;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != '"')
			return fail(ps, ps->p, "expected a string key in object");
		ps->p++;
		int rc = parse_string(ps, &key, &klen);
		if (rc < 0)
			return rc;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return fail(ps, ps->p, "expected ':' after object key");
		ps->p++;
		rc = parse_value(ps, &kid, depth + 1);
		if (rc < 0)
			return rc;
		kid.key = key;
		kid.klen = klen;
		push(ps, &kid);
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "unterminated object");
		if (*ps->p == ',') {
			ps->p++;
			continue;
		}
		if (*ps->p == '}') {
			ps->p++;
			return finish_container(ps, v, base);
		}
		return fail(ps, ps->p, "expected ',' or '}' in object");
	}
}

static int literal(struct parser *ps, const char *word, size_t n, uint32_t type,
		   struct tj *v)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n))
		return fail(ps, ps->p, "invalid literal");
	ps->p += n;
	v->type = type;
	v->len = 0;
	v->u.s = NULL;
	return 0;
}

static int parse_value(struct parser *ps, struct tj *v, int depth)
{
	if (depth > TJ_MAX_DEPTH)
		return fail(ps, ps->p, "nested too deeply");
	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, ps->p, "value expected");
	v->len = 0;
	switch (*ps->p) {
	case '{':
		ps->p++;
		return parse_object(ps, v, depth);
	case '[':
		ps->p++;
		return parse_array(ps, v, depth);
	case '"':
		ps->p++;
		v->type = TJ_STR;
		return parse_string(ps, &v->u.s, &v->len);
	case 't':
		return literal(ps, "true", 4, TJ_TRUE, v);
	case 'f':
		return literal(ps, "false", 5, TJ_FALSE, v);
	case 'n':
		return literal(ps, "null", 4, TJ_NULL, v);
	default:
		if (*ps->p == '-' || (*ps->p >= '0' && *ps->p <= '9'))
			return parse_number(ps, v);
		return fail(ps, ps->p, "unexpected character (value expected)");
	}
}

static void free_arena(struct tj_arena *a)
{
	while (a) {
		struct tj_arena *next = a->next;
		free(a);
		a = next;
	}
}

int tok_tj_parse(struct tj_doc *doc, char *buf, size_t len, unsigned flags,
	     const char *what)
{
	struct parser ps = {
		.buf = buf, .p = buf, .end = buf + len, .flags = flags,
		.what = what ? what : "JSON",
	};
	int rc;

	memset(doc, 0, sizeof(*doc));
	size_t ok = tok_utf8_valid_prefix(buf, len);
	if (ok != len) {
		rc = fail(&ps, buf + ok, "invalid UTF-8");
		goto out;
	}
	rc = parse_value(&ps, &doc->root, 0);
	if (rc == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			rc = fail(&ps, ps.p, "trailing characters after the JSON value");
	}
out:
	free(ps.stack);
	if (rc < 0) {
		free_arena(ps.arena);
		memset(doc, 0, sizeof(*doc));
		return rc;
	}
	doc->root.key = NULL;
	doc->root.klen = 0;
	doc->arena = ps.arena;
	return 0;
}

void tok_tj_free(struct tj_doc *doc)
{
	free_arena(doc->arena);
	memset(doc, 0, sizeof(*doc));
}

const struct tj *tok_tj_get(const struct tj *obj, const char *key)
{
	if (!obj || obj->type != TJ_OBJ)
		return NULL;
	size_t kl = strlen(key);
	for (uint32_t i = 0; i < obj->len; i++) {
		const struct tj *m = &obj->u.kid[i];
		if (m->klen == kl && !memcmp(m->key, key, kl))
			return m;
	}
	return NULL;
}

const char *tok_tj_type_name(const struct tj *v)
{
	if (!v)
		return "missing";
	switch (v->type) {
	case TJ_NULL: return "null";
	case TJ_FALSE:
	case TJ_TRUE: return "a boolean";
	case TJ_NUM: return "a number";
	case TJ_STR: return "a string";
	case TJ_ARR: return "an array";
	case TJ_OBJ: return "an object";
	}
	return "?";
}

int tok_tj_is_int(const struct tj *v, double lo, double hi)
{
	return v && v->type == TJ_NUM && v->u.num >= lo && v->u.num <= hi &&
	       floor(v->u.num) == v->u.num;
}
