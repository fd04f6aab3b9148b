/*
 * parse.c - the GBNF and regex front ends (one parser, two lexical
 * modes): literals, classes, groups, alternation and quantifiers become
 * builder rules (grammar_int.h).  Dialects: docs/structured-output.md.
 */
#include "core/grammar/grammar_int.h"
#include "core/err.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEST 256

struct parser {
	struct gbuild *b;
	const char *s;
	size_t n, i;
	int regex;		/* 0: GBNF */
	int nest;
};

/* Codepoint ranges of a class. */
struct cset {
	uint32_t *lo, *hi;
	size_t n, cap;
};

static void cs_add(struct cset *c, uint32_t lo, uint32_t hi)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->lo = xrealloc(c->lo, c->cap * sizeof(uint32_t));
		c->hi = xrealloc(c->hi, c->cap * sizeof(uint32_t));
	}
	c->lo[c->n] = lo;
	c->hi[c->n++] = hi;
}

static void cs_release(struct cset *c)
{
	free(c->lo);
	free(c->hi);
	memset(c, 0, sizeof(*c));
}

/* Sort and merge; then optionally complement within [0, 0x10ffff]. */
static void cs_normalize(struct cset *c, int negate)
{
	for (size_t i = 1; i < c->n; i++)	/* insertion sort: classes are small */
		for (size_t j = i; j > 0 && c->lo[j - 1] > c->lo[j]; j--) {
			uint32_t t = c->lo[j]; c->lo[j] = c->lo[j - 1]; c->lo[j - 1] = t;
			t = c->hi[j]; c->hi[j] = c->hi[j - 1]; c->hi[j - 1] = t;
		}
	size_t k = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (k && c->lo[i] <= c->hi[k - 1] + 1) {
			if (c->hi[i] > c->hi[k - 1])
				c->hi[k - 1] = c->hi[i];
		} else {
			c->lo[k] = c->lo[i];
			c->hi[k++] = c->hi[i];
		}
	}
	c->n = k;
	if (!negate)
		return;
	struct cset o = { 0 };
	uint32_t next = 0;
	for (size_t i = 0; i < c->n; i++) {
		if (c->lo[i] > next)
			cs_add(&o, next, c->lo[i] - 1);
		next = c->hi[i] + 1;
	}
	if (next <= 0x10ffff)
		cs_add(&o, next, 0x10ffff);
	cs_release(c);
	*c = o;
}

static int perr(struct parser *p, const char *what)
{
	return err_set(-EINVAL, "%s: %s at offset %zu", p->regex ? "regex" : "grammar", what,
		       p->i);
}

static int eof(const struct parser *p)
{
	return p->i >= p->n;
}

static int peek(const struct parser *p)
{
	return eof(p) ? -1 : (uint8_t)p->s[p->i];
}

/* One UTF-8 character of the source (invalid UTF-8 is refused). */
static int next_cp(struct parser *p, uint32_t *cp)
{
	const uint8_t *u = (const uint8_t *)p->s + p->i;
	size_t left = p->n - p->i;
	int len = u[0] < 0x80 ? 1 : (u[0] & 0xe0) == 0xc0 ? 2 : (u[0] & 0xf0) == 0xe0 ? 3
		  : (u[0] & 0xf8) == 0xf0 ? 4 : 0;
	if (!len || (size_t)len > left)
		return perr(p, "invalid UTF-8");
	uint32_t c = len == 1 ? u[0] : len == 2 ? u[0] & 0x1fu : len == 3 ? u[0] & 0x0fu
									 : u[0] & 0x07u;
	for (int k = 1; k < len; k++) {
		if ((u[k] & 0xc0) != 0x80)
			return perr(p, "invalid UTF-8");
		c = c << 6 | (u[k] & 0x3fu);
	}
	p->i += (size_t)len;
	*cp = c;
	return 0;
}

static int hexval(int c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int hex_digits(struct parser *p, int count, uint32_t *cp)
{
	uint32_t v = 0;
	for (int k = 0; k < count; k++) {
		int h = hexval(peek(p));
		if (h < 0)
			return perr(p, "bad hex escape");
		v = v * 16 + (uint32_t)h;
		p->i++;
	}
	*cp = v;
	return 0;
}

/* Perl class escapes (regex): \d \w \s and their negations. */
static int class_escape(int c, struct cset *cs)
{
	struct cset t = { 0 };
	int neg = isupper(c);
	switch (tolower(c)) {
	case 'd':
		cs_add(&t, '0', '9');
		break;
	case 'w':
		cs_add(&t, '0', '9');
		cs_add(&t, 'A', 'Z');
		cs_add(&t, '_', '_');
		cs_add(&t, 'a', 'z');
		break;
	case 's':
		cs_add(&t, '\t', '\r');
		cs_add(&t, ' ', ' ');
		break;
	default:
		return 0;
	}
	cs_normalize(&t, neg);
	for (size_t i = 0; i < t.n; i++)
		cs_add(cs, t.lo[i], t.hi[i]);
	cs_release(&t);
	return 1;
}

/* After a backslash: one codepoint into *cp (returns 0), or a class
 * escape added to cs (returns 1; only where cs is given). */
static int escape(struct parser *p, uint32_t *cp, struct cset *cs)
{
	if (eof(p))
		return perr(p, "dangling backslash");
	int c = peek(p);
	p->i++;
	switch (c) {
	case 'n': *cp = '\n'; return 0;
	case 'r': *cp = '\r'; return 0;
	case 't': *cp = '\t'; return 0;
	case 'f': *cp = '\f'; return 0;
	case 'v': *cp = '\v'; return 0;
	case '0': *cp = 0; return 0;
	case 'x':
		if (peek(p) == '{') {
			p->i++;
			uint32_t v = 0;
			int nd = 0;
			while (hexval(peek(p)) >= 0 && nd < 8) {
				v = v * 16 + (uint32_t)hexval(peek(p));
				p->i++;
				nd++;
			}
			if (!nd || peek(p) != '}' || v > 0x10ffff)
				return perr(p, "bad \\x{...} escape");
			p->i++;
			*cp = v;
			return 0;
		}
		return hex_digits(p, 2, cp);
	case 'u':
		return hex_digits(p, 4, cp);
	case 'U':
		if (p->regex)
			break;
		if (hex_digits(p, 8, cp) < 0 || *cp > 0x10ffff)
			return perr(p, "bad \\U escape");
		return 0;
	}
	if (p->regex && strchr("dwsDWS", c)) {
		if (!cs)
			return perr(p, "class escape outside a class");
		class_escape(c, cs);
		return 1;
	}
	if (p->regex && (isalnum(c) || c >= 0x80)) {
		char msg[64];
		snprintf(msg, sizeof(msg), "unsupported escape \\%c", c);
		p->i--;
		return perr(p, msg);
	}
	if (!p->regex && c != '"' && c != '\\' && c != ']' && c != '[' && c != '-' &&
	    c != '^')
		return perr(p, "unknown escape");
	*cp = (uint32_t)c;
	return 0;
}

/* [...] after the '[': into seq. */
static int parse_class(struct parser *p, struct gseq *seq)
{
	struct cset cs = { 0 };
	int neg = 0, rc = 0, first = 1;

	if (peek(p) == '^') {
		neg = 1;
		p->i++;
	}
	for (;;) {
		if (eof(p)) {
			rc = perr(p, "unterminated class");
			goto out;
		}
		int c = peek(p);
		if (c == ']' && !(first && p->regex)) {
			p->i++;
			break;
		}
		first = 0;
		uint32_t lo, hi;
		if (c == '\\') {
			p->i++;
			if ((rc = escape(p, &lo, &cs)) < 0)
				goto out;
			if (rc == 1) {
				rc = 0;
				continue;
			}
		} else if (p->regex && c == '[' && p->i + 1 < p->n && p->s[p->i + 1] == ':') {
			rc = perr(p, "POSIX classes are not supported");
			goto out;
		} else if ((rc = next_cp(p, &lo)) < 0) {
			goto out;
		}
		hi = lo;
		if (peek(p) == '-' && p->i + 1 < p->n && p->s[p->i + 1] != ']') {
			p->i++;
			if (peek(p) == '\\') {
				p->i++;
				if ((rc = escape(p, &hi, NULL)) < 0)
					goto out;
			} else if ((rc = next_cp(p, &hi)) < 0) {
				goto out;
			}
			if (hi < lo) {
				rc = perr(p, "class range out of order");
				goto out;
			}
		}
		cs_add(&cs, lo, hi);
	}
	cs_normalize(&cs, neg);
	gb_class(p->b, seq, cs.lo, cs.hi, cs.n);
out:
	cs_release(&cs);
	return rc;
}

static void push_cp(struct parser *p, struct gseq *seq, uint32_t cp)
{
	uint32_t lo = cp, hi = cp;
	if (cp < 0x80) {
		char c = (char)cp;
		gb_literal(p->b, seq, &c, 1);
	} else {
		gb_class(p->b, seq, &lo, &hi, 1);
	}
}

static void skip_ws(struct parser *p)
{
	if (p->regex)
		return;
	while (!eof(p)) {
		int c = peek(p);
		if (c == '#') {
			while (!eof(p) && peek(p) != '\n')
				p->i++;
		} else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
			p->i++;
		} else {
			break;
		}
	}
}

static int is_name_char(int c)
{
	return c >= 0 && (isalnum(c) || c == '-' || c == '_');
}

static size_t name_len(const struct parser *p, size_t at)
{
	size_t k = at;
	while (k < p->n && is_name_char((uint8_t)p->s[k]))
		k++;
	return k - at;
}

/* GBNF: does a rule definition ("name ::=") start here? */
static int rule_starts(const struct parser *p)
{
	size_t k = p->i + name_len(p, p->i);
	if (k == p->i)
		return 0;
	while (k < p->n && (p->s[k] == ' ' || p->s[k] == '\t' || p->s[k] == '\n' ||
			    p->s[k] == '\r'))
		k++;
	return k + 3 <= p->n && !memcmp(p->s + k, "::=", 3);
}

static int parse_alts(struct parser *p, uint32_t rule);

static int parse_count(struct parser *p, long *v)
{
	if (!isdigit(peek(p)))
		return perr(p, "expected a number");
	*v = 0;
	while (isdigit(peek(p))) {
		*v = *v * 10 + (peek(p) - '0');
		if (*v > 100000)
			return perr(p, "repetition count above 100000");
		p->i++;
	}
	return 0;
}

/* Quantifiers after the item at seq[start..]. */
static int parse_postfix(struct parser *p, struct gseq *seq, size_t start)
{
	skip_ws(p);
	{
		int c = peek(p);
		long min, max;
		if (c == '*') {
			min = 0; max = -1;
		} else if (c == '+') {
			min = 1; max = -1;
		} else if (c == '?') {
			min = 0; max = 1;
		} else if (c == '{') {
			size_t save = p->i++;
			skip_ws(p);
			if (!isdigit(peek(p))) {
				if (p->regex) {	/* a literal brace, as in most engines */
					p->i = save;
					return 0;
				}
				return perr(p, "expected a repetition count");
			}
			if (parse_count(p, &min) < 0)
				return -EINVAL;
			skip_ws(p);
			max = min;
			if (peek(p) == ',') {
				p->i++;
				skip_ws(p);
				max = -1;
				if (isdigit(peek(p)) && parse_count(p, &max) < 0)
					return -EINVAL;
				skip_ws(p);
			}
			if (peek(p) != '}')
				return perr(p, "expected '}'");
			if (max >= 0 && max < min)
				return perr(p, "repetition {m,n} with n < m");
		} else {
			return 0;
		}
		p->i++;
		if (p->regex && (peek(p) == '?' || peek(p) == '+')) {
			if (peek(p) == '+')
				return perr(p, "possessive quantifiers are not supported");
			p->i++;	/* lazy: the same language */
		}
		return gb_repeat(p->b, seq, start, min, max);
	}
}

/* One item (with its quantifiers) appended to seq; 1 when none starts here. */
static int parse_item(struct parser *p, struct gseq *seq)
{
	size_t start = seq->n;
	int c = peek(p);
	uint32_t cp;

	if (c < 0 || c == '|' || c == ')')
		return 1;
	if (c == '(') {
		if (++p->nest > MAX_NEST)
			return perr(p, "groups nested too deep");
		p->i++;
		if (p->regex && peek(p) == '?') {
			if (p->i + 1 < p->n && p->s[p->i + 1] == ':')
				p->i += 2;
			else
				return perr(p, "lookaround and inline flags are not supported");
		}
		uint32_t r = gb_rule_new(p->b);
		if (parse_alts(p, r) < 0)
			return -EINVAL;
		if (peek(p) != ')')
			return perr(p, "expected ')'");
		p->i++;
		p->nest--;
		gseq_push(seq, GE_REF, r);
	} else if (c == '[') {
		p->i++;
		if (parse_class(p, seq) < 0)
			return -EINVAL;
	} else if (c == '.') {
		p->i++;
		uint32_t lo[2] = { 0, '\n' + 1 }, hi[2] = { '\n' - 1, 0x10ffff };
		if (p->regex)
			gb_class(p->b, seq, lo, hi, 2);
		else
			gb_class(p->b, seq, lo + 0, hi + 1, 1);	/* GBNF: any character */
	} else if (!p->regex && c == '"') {
		p->i++;
		for (;;) {
			if (eof(p) || peek(p) == '\n')
				return perr(p, "unterminated string");
			if (peek(p) == '"') {
				p->i++;
				break;
			}
			if (peek(p) == '\\') {
				p->i++;
				if (escape(p, &cp, NULL) < 0)
					return -EINVAL;
			} else if (next_cp(p, &cp) < 0) {
				return -EINVAL;
			}
			push_cp(p, seq, cp);
		}
		if (seq->n == start) {	/* "" : the empty string */
			skip_ws(p);
			return 0;
		}
	} else if (!p->regex && is_name_char(c)) {
		size_t l = name_len(p, p->i);
		gseq_push(seq, GE_REF, gb_rule_named(p->b, p->s + p->i, l));
		p->i += l;
	} else if (p->regex && c == '\\') {
		p->i++;
		struct cset cs = { 0 };
		int rc = escape(p, &cp, &cs);
		if (rc == 1)
			gb_class(p->b, seq, cs.lo, cs.hi, cs.n);
		cs_release(&cs);
		if (rc < 0)
			return rc;
		if (rc == 0)
			push_cp(p, seq, cp);
	} else if (p->regex && (c == '*' || c == '+' || c == '?' || c == '{')) {
		if (c == '{') {
			p->i++;
			push_cp(p, seq, '{');
		} else {
			return perr(p, "quantifier without an item");
		}
	} else if (p->regex && (c == '^' || c == '$')) {
		return perr(p, "anchors are only supported at the ends of the pattern");
	} else if (p->regex) {
		if (next_cp(p, &cp) < 0)
			return -EINVAL;
		push_cp(p, seq, cp);
	} else {
		return perr(p, "unexpected character");
	}
	return parse_postfix(p, seq, start);
}

static int parse_seq(struct parser *p, struct gseq *seq)
{
	for (;;) {
		skip_ws(p);
		if (!p->regex && rule_starts(p))
			return 0;
		int rc = parse_item(p, seq);
		if (rc < 0)
			return rc;
		if (rc == 1)
			return 0;
	}
}

static int parse_alts(struct parser *p, uint32_t rule)
{
	for (;;) {
		struct gseq seq = { 0 };
		if (parse_seq(p, &seq) < 0) {
			gseq_release(&seq);
			return -EINVAL;
		}
		gb_add_alt(p->b, rule, &seq);
		skip_ws(p);
		if (peek(p) != '|')
			return 0;
		p->i++;
	}
}

int gbnf_parse(struct gbuild *b, const char *text, size_t len, uint32_t *root)
{
	struct parser p = { .b = b, .s = text, .n = len };
	int have_root = 0;

	for (;;) {
		skip_ws(&p);
		if (eof(&p))
			break;
		size_t l = name_len(&p, p.i);
		if (!l || !rule_starts(&p))
			return perr(&p, "expected a rule (name ::= ...)");
		uint32_t r = gb_rule_named(b, p.s + p.i, l);
		if (b->rules[r].defined) {
			char msg[160];
			snprintf(msg, sizeof(msg), "rule '%s' defined twice", b->rules[r].name);
			return perr(&p, msg);
		}
		b->rules[r].defined = 1;
		if (l == 4 && !memcmp(p.s + p.i, "root", 4))
			have_root = 1;
		p.i += l;
		skip_ws(&p);
		p.i += 3;	/* "::=", as rule_starts saw */
		if (parse_alts(&p, r) < 0)
			return -EINVAL;
		skip_ws(&p);
		if (!eof(&p) && peek(&p) == ')')
			return perr(&p, "unbalanced ')'");
	}
	if (!have_root)
		return err_set(-EINVAL, "grammar: no 'root' rule");
	*root = gb_rule_named(b, "root", 4);
	return 0;
}

int regex_parse(struct gbuild *b, const char *re, size_t len, uint32_t *root)
{
	struct parser p = { .b = b, .s = re, .n = len, .regex = 1 };

	if (len && re[0] == '^')
		p.i = 1;
	if (len > p.i && re[len - 1] == '$' && !(len >= 2 && re[len - 2] == '\\'))
		p.n = len - 1;
	uint32_t r = gb_rule_new(b);
	if (parse_alts(&p, r) < 0)
		return -EINVAL;
	if (!eof(&p))
		return perr(&p, "unbalanced ')'");
	*root = r;
	return 0;
}
