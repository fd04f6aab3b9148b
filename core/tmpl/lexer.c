/*
 * lexer.c - Jinja2 tokenizer (see lexer.h).  It mirrors the rules of
 * jinja2's regex lexer for the default delimiters with trim_blocks and
 * lstrip_blocks enabled:
 *
 *   - "{%-", "{{-", "{#-" strip all whitespace before the tag; "-%}",
 *     "-}}", "-#}" strip all whitespace after it;
 *   - trim_blocks: the first newline after "%}" or "#}" is removed ("+%}"
 *     keeps it);
 *   - lstrip_blocks: spaces and tabs between the start of a line and "{%"
 *     or "{#" are removed ("{%+" keeps them); not for "{{";
 *   - inside a tag, "%}" / "}}" only end it when brackets are balanced.
 */
#include "core/tmpl/lexer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

struct lexer {
	struct arena *ar;
	const char *src;
	size_t n, pos;
	uint32_t line;
	bool line_starting;
	struct token *toks;
	size_t ntoks, cap;
	char balance[256];
	int nbalance;
	char *err;
	size_t errn;
};

static int lex_error(struct lexer *lx, const char *fmt, const char *arg)
{
	char msg[200];
	snprintf(msg, sizeof(msg), fmt, arg);
	snprintf(lx->err, lx->errn, "line %u: %s", lx->line, msg);
	return -EINVAL;
}

static struct token *push(struct lexer *lx, int type, uint32_t line)
{
	if (lx->ntoks == lx->cap) {
		size_t cap = lx->cap ? lx->cap * 2 : 256;
		lx->toks = ar_realloc(lx->ar, lx->toks, lx->cap * sizeof(struct token),
				      cap * sizeof(struct token));
		lx->cap = cap;
	}
	struct token *t = &lx->toks[lx->ntoks++];
	memset(t, 0, sizeof(*t));
	t->type = (uint8_t)type;
	t->line = line;
	return t;
}

static uint32_t count_nl(const char *s, size_t n)
{
	uint32_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += s[i] == '\n';
	return c;
}

/* Length of the Python-whitespace run at s (up to end). */
static size_t ws_run(const char *s, const char *end)
{
	const char *p = s;
	while (p < end) {
		const char *q = p;
		if (!py_isspace(utf8_next(&q, end)))
			break;
		p = q;
	}
	return (size_t)(p - s);
}

/* Length of text without trailing Python whitespace (str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n)
{
	size_t keep = 0;
	const char *p = s, *end = s + n;
	while (p < end) {
		uint32_t c = utf8_next(&p, end);
		if (!py_isspace(c))
			keep = (size_t)(p - s);
	}
	return keep;
}

/* Emit data text [s, s+n) after whitespace control for a following tag
 * with sign ('-', '+' or 0); lstrip applies to blocks and comments. */
static void emit_data(struct lexer *lx, const char *s, size_t n, char sign, bool lstrip_ok)
{
	uint32_t line = lx->line;
	size_t keep = n;
	if (sign == '-') {
		keep = rstrip_len(s, n);
	} else if (sign != '+' && lstrip_ok) {
		size_t l_pos = 0;
		for (size_t i = n; i > 0; i--) {
			if (s[i - 1] == '\n') {
				l_pos = i;
				break;
			}
		}
		if ((l_pos > 0 || lx->line_starting) && l_pos < n &&
		    ws_run(s + l_pos, s + n) == n - l_pos)
			keep = l_pos;
	}
	if (keep) {
		struct token *t = push(lx, T_DATA, line);
		t->s = s;
		t->n = keep;
	}
	lx->line += count_nl(s, n);
}

static bool at(struct lexer *lx, const char *lit)
{
	size_t n = strlen(lit);
	return lx->n - lx->pos >= n && !memcmp(lx->src + lx->pos, lit, n);
}

/* Python unicode-escape decoding of a string literal body. */
static int unescape(struct lexer *lx, const char *s, size_t n, struct token *t)
{
	char *out = ar_alloc_raw(lx->ar, n * 2 + 16), *o = out;
	const char *p = s, *end = s + n;
	while (p < end) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		p++;
		if (p >= end) {
			*o++ = '\\';
			break;
		}
		char c = *p++;
		uint32_t cp;
		int digits;
		switch (c) {
		case '\n': continue;
		case '\\': *o++ = '\\'; continue;
		case '\'': *o++ = '\''; continue;
		case '"': *o++ = '"'; continue;
		case 'a': *o++ = '\a'; continue;
		case 'b': *o++ = '\b'; continue;
		case 'f': *o++ = '\f'; continue;
		case 'n': *o++ = '\n'; continue;
		case 'r': *o++ = '\r'; continue;
		case 't': *o++ = '\t'; continue;
		case 'v': *o++ = '\v'; continue;
		case 'x': digits = 2; goto hex;
		case 'u': digits = 4; goto hex;
		case 'U': digits = 8; goto hex;
		case 'N':
			return lex_error(lx, "%s", "\\N{...} escapes are not supported");
		default:
			break;
		}
		if (c >= '0' && c <= '7') {
			cp = (uint32_t)(c - '0');
			for (int i = 0; i < 2 && p < end && *p >= '0' && *p <= '7'; i++)
				cp = cp * 8 + (uint32_t)(*p++ - '0');
			o += utf8_encode(o, cp);
			continue;
		}
		if ((unsigned char)c >= 0x80) {
			/* backslashreplace turned the character into \xNN,
			 * \uNNNN or \UNNNNNNNN after this (now literal)
			 * backslash, and those letters stay as they are. */
			const char *q = p - 1;
			cp = utf8_next(&q, end);
			p = q;
			*o++ = '\\';
			if (cp < 0x100)
				o += sprintf(o, "x%02x", cp);
			else if (cp < 0x10000)
				o += sprintf(o, "u%04x", cp);
			else
				o += sprintf(o, "U%08x", cp);
			continue;
		}
		*o++ = '\\';
		*o++ = c;
		continue;
hex:
		cp = 0;
		for (int i = 0; i < digits; i++) {
			if (p >= end)
				return lex_error(lx, "%s", "truncated escape in string");
			char h = *p++;
			int v;
			if (h >= '0' && h <= '9')
				v = h - '0';
			else if (h >= 'a' && h <= 'f')
				v = h - 'a' + 10;
			else if (h >= 'A' && h <= 'F')
				v = h - 'A' + 10;
			else
				return lex_error(lx, "%s", "truncated escape in string");
			cp = cp * 16 + (uint32_t)v;
		}
		if (cp > 0x10ffff)
			return lex_error(lx, "%s", "illegal Unicode character in string");
		o += utf8_encode(o, cp);
	}
	*o = '\0';
	t->s = out;
	t->n = (size_t)(o - out);
	return 0;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* (\d+_)*\d+ at p: returns length or 0. */
static size_t digits_us(const char *p, const char *end)
{
	const char *q = p;
	if (q >= end || !is_digit(*q))
		return 0;
	while (q < end) {
		if (is_digit(*q)) {
			q++;
		} else if (*q == '_' && q + 1 < end && is_digit(q[1])) {
			q++;
		} else {
			break;
		}
	}
	return (size_t)(q - p);
}

/* float_re at pos: returns its length or 0. */
static size_t match_float(struct lexer *lx)
{
	const char *p = lx->src + lx->pos, *end = lx->src + lx->n;
	if (lx->pos > 0 && lx->src[lx->pos - 1] == '.')
		return 0;
	size_t n = digits_us(p, end);
	if (!n)
		return 0;
	const char *q = p + n;
	const char *frac_end = NULL;
	if (q < end && *q == '.') {
		size_t f = digits_us(q + 1, end);
		if (f)
			frac_end = q + 1 + f;
	}
	const char *e = frac_end ? frac_end : q;
	if (e < end && (*e == 'e' || *e == 'E')) {
		const char *x = e + 1;
		if (x < end && (*x == '+' || *x == '-'))
			x++;
		size_t d = digits_us(x, end);
		if (d)
			return (size_t)(x + d - p);
	}
	if (frac_end)
		return (size_t)(frac_end - p);
	return 0;
}

static bool in_class(char c, int base)
{
	if (base == 2)
		return c == '0' || c == '1';
	if (base == 8)
		return c >= '0' && c <= '7';
	if (base == 16)
		return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
	return is_digit(c);
}

/* integer_re at pos: length or 0; *base receives the base. */
static size_t match_int(struct lexer *lx, int *base)
{
	const char *p = lx->src + lx->pos, *end = lx->src + lx->n;
	if (p >= end || !is_digit(*p))
		return 0;
	if (*p == '0' && p + 1 < end && strchr("bBoOxX", p[1]) && p[1]) {
		int b = (p[1] | 0x20) == 'b' ? 2 : (p[1] | 0x20) == 'o' ? 8 : 16;
		const char *q = p + 2;
		size_t groups = 0;
		for (;;) {
			const char *r = q;
			if (r < end && *r == '_')
				r++;
			if (r < end && in_class(*r, b)) {
				q = r + 1;
				groups++;
			} else {
				break;
			}
		}
		if (groups) {
			*base = b;
			return (size_t)(q - p);
		}
	}
	*base = 10;
	const char *q = p + 1;
	char want = *p == '0' ? '0' : 0;
	for (;;) {
		const char *r = q;
		if (r < end && *r == '_')
			r++;
		if (r < end && (want ? *r == want : is_digit(*r)))
			q = r + 1;
		else
			break;
	}
	return (size_t)(q - p);
}

static bool ident_start(uint32_t c)
{
	if (c < 0x80)
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
	case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
		return true;
	default:
		return false;
	}
}

static bool ident_cont(uint32_t c)
{
	if (ident_start(c) || (c >= '0' && c <= '9'))
		return true;
	if (c < 0x80)
		return false;
	switch (utf8proc_category((utf8proc_int32_t)c)) {
	case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ND:
	case UTF8PROC_CATEGORY_PC:
		return true;
	default:
		return false;
	}
}

static const struct { const char *s; int op; } operators[] = {
	{ "//", P_FLOORDIV }, { "**", P_POW }, { "==", P_EQ }, { "!=", P_NE },
	{ ">=", P_GTEQ }, { "<=", P_LTEQ },
	{ "+", P_ADD }, { "-", P_SUB }, { "/", P_DIV }, { "*", P_MUL }, { "%", P_MOD },
	{ "~", P_TILDE }, { "[", P_LBRACKET }, { "]", P_RBRACKET }, { "(", P_LPAREN },
	{ ")", P_RPAREN }, { "{", P_LBRACE }, { "}", P_RBRACE }, { ">", P_GT },
	{ "<", P_LT }, { "=", P_ASSIGN }, { ".", P_DOT }, { ":", P_COLON },
	{ "|", P_PIPE }, { ",", P_COMMA }, { ";", P_SEMICOLON },
};

/* Tokens inside {{ }} or {% %}; on return pos is after the end tag. */
static int lex_tag(struct lexer *lx, bool block)
{
	const char *end = lx->src + lx->n;
	lx->nbalance = 0;
	for (;;) {
		const char *p = lx->src + lx->pos;
		if (lx->pos >= lx->n)
			return 0;	/* the parser reports the missing end */
		size_t ws = ws_run(p, end);
		if (ws) {
			lx->line += count_nl(p, ws);
			lx->pos += ws;
			continue;
		}
		if (lx->nbalance == 0) {
			if (block && at(lx, "+%}")) {
				push(lx, T_BLOCK_END, lx->line);
				lx->pos += 3;
				lx->line_starting = false;
				return 0;
			}
			if (at(lx, block ? "-%}" : "-}}")) {
				push(lx, block ? T_BLOCK_END : T_VAR_END, lx->line);
				lx->pos += 3;
				size_t w = ws_run(lx->src + lx->pos, end);
				lx->line += count_nl(lx->src + lx->pos, w);
				lx->line_starting = w > 0 && lx->src[lx->pos + w - 1] == '\n';
				if (w == 0)
					lx->line_starting = false;
				lx->pos += w;
				return 0;
			}
			if (at(lx, block ? "%}" : "}}")) {
				push(lx, block ? T_BLOCK_END : T_VAR_END, lx->line);
				lx->pos += 2;
				lx->line_starting = false;
				if (block && lx->pos < lx->n && lx->src[lx->pos] == '\n') {
					lx->pos++;
					lx->line++;
					lx->line_starting = true;
				}
				return 0;
			}
		}
		size_t len = match_float(lx);
		if (len) {
			char buf[128];
			size_t k = 0;
			for (size_t i = 0; i < len && k + 1 < sizeof(buf); i++)
				if (p[i] != '_')
					buf[k++] = p[i];
			buf[k] = '\0';
			struct token *t = push(lx, T_FLOAT, lx->line);
			t->f = strtod(buf, NULL);
			lx->pos += len;
			continue;
		}
		int base;
		len = match_int(lx, &base);
		if (len) {
			char buf[128];
			size_t k = 0;
			size_t skip = base == 10 ? 0 : 2;
			for (size_t i = skip; i < len && k + 1 < sizeof(buf); i++)
				if (p[i] != '_')
					buf[k++] = p[i];
			buf[k] = '\0';
			errno = 0;
			unsigned long long v = strtoull(buf, NULL, base);
			struct token *t = push(lx, T_INT, lx->line);
			if (errno == ERANGE || v > (unsigned long long)INT64_MAX || len >= sizeof(buf)) {
				if (base != 10)
					return lex_error(lx, "%s", "integer literal too large");
				t->type = T_BIGINT;
				t->s = ar_strndup(lx->ar, buf, k);
				t->n = k;
			} else {
				t->i = (int64_t)v;
			}
			lx->pos += len;
			continue;
		}
		{
			const char *q = p;
			uint32_t c = utf8_next(&q, end);
			if (ident_start(c)) {
				while (q < end) {
					const char *r = q;
					if (!ident_cont(utf8_next(&r, end)))
						break;
					q = r;
				}
				struct token *t = push(lx, T_NAME, lx->line);
				t->n = (size_t)(q - p);
				t->s = ar_strndup(lx->ar, p, t->n);
				lx->pos += t->n;
				continue;
			}
		}
		if (*p == '\'' || *p == '"') {
			char quote = *p;
			const char *q = p + 1;
			while (q < end && *q != quote) {
				if (*q == '\\' && q + 1 < end)
					q++;
				q++;
			}
			if (q < end) {
				struct token *t = push(lx, T_STRING, lx->line);
				int rc = unescape(lx, p + 1, (size_t)(q - p - 1), t);
				if (rc)
					return rc;
				lx->line += count_nl(p, (size_t)(q - p));
				lx->pos += (size_t)(q + 1 - p);
				continue;
			}
		}
		size_t i;
		for (i = 0; i < sizeof(operators) / sizeof(operators[0]); i++)
			if (at(lx, operators[i].s))
				break;
		if (i < sizeof(operators) / sizeof(operators[0])) {
			int op = operators[i].op;
			if (op == P_LBRACE || op == P_LPAREN || op == P_LBRACKET) {
				if (lx->nbalance >= (int)sizeof(lx->balance))
					return lex_error(lx, "%s", "brackets nested too deeply");
				lx->balance[lx->nbalance++] = op == P_LBRACE ? '}' : op == P_LPAREN ? ')' : ']';
			} else if (op == P_RBRACE || op == P_RPAREN || op == P_RBRACKET) {
				char c = operators[i].s[0];
				if (lx->nbalance == 0) {
					char what[2] = { c, 0 };
					return lex_error(lx, "unexpected '%s'", what);
				}
				char want = lx->balance[--lx->nbalance];
				if (want != c) {
					char what[32];
					snprintf(what, sizeof(what), "%c', expected '%c", c, want);
					return lex_error(lx, "unexpected '%s'", what);
				}
			}
			struct token *t = push(lx, T_OP, lx->line);
			t->op = (uint8_t)op;
			lx->pos += strlen(operators[i].s);
			continue;
		}
		char what[8];
		const char *q = p;
		utf8_next(&q, end);
		snprintf(what, sizeof(what), "%.*s", (int)(q - p), p);
		return lex_error(lx, "unexpected char '%s'", what);
	}
}

/* The end of a raw block: {%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?). */
static bool match_endraw(struct lexer *lx, size_t at_pos, size_t *end_pos, char *sign)
{
	const char *s = lx->src, *end = s + lx->n;
	size_t p = at_pos + 2;
	*sign = 0;
	if (p < lx->n && (s[p] == '-' || s[p] == '+'))
		*sign = s[p++];
	p += ws_run(s + p, end);
	if (lx->n - p < 6 || memcmp(s + p, "endraw", 6))
		return false;
	p += 6;
	p += ws_run(s + p, end);
	if (lx->n - p >= 3 && !memcmp(s + p, "+%}", 3)) {
		*end_pos = p + 3;
		return true;
	}
	if (lx->n - p >= 3 && !memcmp(s + p, "-%}", 3)) {
		p += 3;
		*end_pos = p + ws_run(s + p, end);
		return true;
	}
	if (lx->n - p >= 2 && !memcmp(s + p, "%}", 2)) {
		p += 2;
		if (p < lx->n && s[p] == '\n')
			p++;
		*end_pos = p;
		return true;
	}
	return false;
}

/* {%[-+]?\s*raw\s*(-%}\s*|%}) at pos: end offset or 0. */
static size_t match_raw_begin(struct lexer *lx, size_t at_pos)
{
	const char *s = lx->src, *end = s + lx->n;
	size_t p = at_pos + 2;
	if (p < lx->n && (s[p] == '-' || s[p] == '+'))
		p++;
	p += ws_run(s + p, end);
	if (lx->n - p < 3 || memcmp(s + p, "raw", 3))
		return 0;
	p += 3;
	p += ws_run(s + p, end);
	if (lx->n - p >= 3 && !memcmp(s + p, "-%}", 3)) {
		p += 3;
		return p + ws_run(s + p, end);
	}
	if (lx->n - p >= 2 && !memcmp(s + p, "%}", 2))
		return p + 2;
	return 0;
}

int lex(struct arena *a, const char *src_in, size_t n_in, struct token **out, size_t *nout,
	char *err, size_t errn)
{
	/* Normalise newlines and drop one trailing newline. */
	char *src = ar_alloc_raw(a, n_in + 1);
	size_t n = 0;
	for (size_t i = 0; i < n_in; i++) {
		if (src_in[i] == '\r') {
			src[n++] = '\n';
			if (i + 1 < n_in && src_in[i + 1] == '\n')
				i++;
		} else {
			src[n++] = src_in[i];
		}
	}
	if (n && src[n - 1] == '\n')
		n--;
	src[n] = '\0';

	struct lexer lx = { .ar = a, .src = src, .n = n, .line = 1, .line_starting = true,
			    .err = err, .errn = errn };
	int rc = 0;
	while (lx.pos < lx.n) {
		/* Find the next tag start. */
		size_t tag = lx.pos;
		char kind = 0;
		for (; tag + 1 < lx.n; tag++) {
			if (src[tag] == '{' && (src[tag + 1] == '{' || src[tag + 1] == '%' ||
						src[tag + 1] == '#')) {
				kind = src[tag + 1];
				break;
			}
		}
		if (!kind) {
			emit_data(&lx, src + lx.pos, lx.n - lx.pos, 0, false);
			lx.pos = lx.n;
			break;
		}
		char sign = 0;
		if (tag + 2 < lx.n && (src[tag + 2] == '-' || src[tag + 2] == '+'))
			sign = src[tag + 2];
		size_t raw_end = kind == '%' ? match_raw_begin(&lx, tag) : 0;
		emit_data(&lx, src + lx.pos, tag - lx.pos, sign, kind != '{');
		if (raw_end) {
			lx.line += count_nl(src + tag, raw_end - tag);
			lx.line_starting = src[raw_end - 1] == '\n';
			lx.pos = raw_end;
			size_t p = lx.pos, endp = 0;
			char esign = 0;
			for (; p + 1 < lx.n; p++)
				if (src[p] == '{' && src[p + 1] == '%' && match_endraw(&lx, p, &endp, &esign))
					break;
			if (p + 1 >= lx.n) {
				rc = lex_error(&lx, "%s", "Missing end of raw directive");
				break;
			}
			emit_data(&lx, src + lx.pos, p - lx.pos, esign, true);
			lx.line += count_nl(src + p, endp - p);
			lx.line_starting = src[endp - 1] == '\n';
			lx.pos = endp;
			continue;
		}
		lx.pos = tag + 2 + (sign ? 1 : 0);
		lx.line_starting = false;
		if (kind == '#') {
			size_t p = lx.pos;
			while (p + 1 < lx.n && !(src[p] == '#' && src[p + 1] == '}'))
				p++;
			if (p + 1 >= lx.n) {
				rc = lex_error(&lx, "%s", "Missing end of comment tag");
				break;
			}
			size_t endp = p + 2;
			if (p > lx.pos && src[p - 1] == '-') {
				endp += ws_run(src + endp, src + lx.n);
			} else if (p > lx.pos && src[p - 1] == '+') {
				/* keeps the newline */
			} else if (endp < lx.n && src[endp] == '\n') {
				endp++;
			}
			lx.line += count_nl(src + lx.pos, endp - lx.pos);
			lx.line_starting = endp > 0 && src[endp - 1] == '\n';
			lx.pos = endp;
			continue;
		}
		bool block = kind == '%';
		push(&lx, block ? T_BLOCK_BEGIN : T_VAR_BEGIN, lx.line);
		rc = lex_tag(&lx, block);
		if (rc)
			break;
	}
	if (rc)
		return rc;
	push(&lx, T_EOF, lx.line);
	*out = lx.toks;
	*nout = lx.ntoks;
	return 0;
}

const char *tok_describe(const struct token *t, char *buf, size_t n)
{
	switch (t->type) {
	case T_EOF: return "end of template";
	case T_DATA: return "template data";
	case T_VAR_BEGIN: return "begin of print statement";
	case T_VAR_END: return "end of print statement";
	case T_BLOCK_BEGIN: return "begin of statement block";
	case T_BLOCK_END: return "end of statement block";
	case T_NAME:
		snprintf(buf, n, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s);
		return buf;
	case T_STRING: return "string";
	case T_INT:
	case T_BIGINT: return "integer";
	case T_FLOAT: return "float";
	case T_OP:
		for (size_t i = 0; i < sizeof(operators) / sizeof(operators[0]); i++)
			if (operators[i].op == t->op) {
				snprintf(buf, n, "'%s'", operators[i].s);
				return buf;
			}
		return "operator";
	}
	return "token";
}
