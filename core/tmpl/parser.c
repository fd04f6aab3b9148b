/*
 * parser.c - Jinja2 syntax tree from tokens, following jinja2's parser
 * (operator precedence, tuple rules, statement forms) so that what
 * jinja2 accepts parses the same way and what it rejects is an error.
 *
 * Supported statements: if/elif/else, for (targets, "if" filter, else,
 * recursive), set (expression, block, namespace attribute), macro, call,
 * filter, with, print, break/continue (loopcontrols) and generation
 * (transformers' extension).  block/extends/include/import/autoescape need
 * a loader or autoescaping that chat templates do not have: errors.
 *
 * After parsing, a check walks the tree as jinja2's compiler does: unknown
 * filters and tests are errors unless they sit directly inside an if
 * (or inline if), where they only fail when evaluated.
 */
#include "core/tmpl/lexer.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define MAX_NESTING 256

struct parser {
	struct tmpl *t;
	struct arena *ar;
	struct token *toks;
	size_t ntoks, pos;
	jmp_buf jmp;
	char *err;
	size_t errn;
	int depth;
	int loop_depth;
	/* flags of the macros/call blocks being parsed (innermost last) */
	uint16_t *usage[MAX_NESTING];
	int nusage;
	/* interned names */
	const char **names;
	uint32_t nnames, cap;
	/* the innermost open block tags, for error messages */
	const char *open_tags[MAX_NESTING];
	int ntags;
};

_Noreturn static void pfail(struct parser *p, uint32_t line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void pfail(struct parser *p, uint32_t line, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(p->err, p->errn, "line %u: %s", line, msg);
	longjmp(p->jmp, 1);
}

static void parser_oom(void *ctx, size_t want)
{
	struct parser *p = ctx;
	(void)want;
	snprintf(p->err, p->errn, "template too large to compile");
	longjmp(p->jmp, 1);
}

/* ---- names ----------------------------------------------------------- */

static uint32_t name_hash(const char *s, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 16777619u;
	return h;
}

static const char *intern(struct parser *p, const char *s, size_t n)
{
	if (p->nnames * 2 >= p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 256;
		const char **names = ar_alloc(p->ar, cap * sizeof(char *));
		for (uint32_t i = 0; i < p->cap; i++) {
			const char *x = p->names[i];
			if (!x)
				continue;
			uint32_t h = name_hash(x, strlen(x)) & (cap - 1);
			while (names[h])
				h = (h + 1) & (cap - 1);
			names[h] = x;
		}
		p->names = names;
		p->cap = cap;
	}
	uint32_t h = name_hash(s, n) & (p->cap - 1);
	while (p->names[h]) {
		if (strlen(p->names[h]) == n && !memcmp(p->names[h], s, n))
			return p->names[h];
		h = (h + 1) & (p->cap - 1);
	}
	p->names[h] = ar_strndup(p->ar, s, n);
	p->nnames++;
	return p->names[h];
}

static const char *interns(struct parser *p, const char *s)
{
	return intern(p, s, strlen(s));
}

/* ---- token helpers --------------------------------------------------- */

static struct token *cur(struct parser *p) { return &p->toks[p->pos]; }

static struct token *look(struct parser *p)
{
	return p->pos + 1 < p->ntoks ? &p->toks[p->pos + 1] : &p->toks[p->ntoks - 1];
}

static struct token *next(struct parser *p)
{
	struct token *t = cur(p);
	if (p->pos + 1 < p->ntoks)
		p->pos++;
	return t;
}

static bool is_op(struct token *t, int op) { return t->type == T_OP && t->op == op; }

static bool is_name(struct token *t, const char *name)
{
	return t->type == T_NAME && strlen(name) == t->n && !memcmp(t->s, name, t->n);
}

static bool skip_op(struct parser *p, int op)
{
	if (is_op(cur(p), op)) {
		next(p);
		return true;
	}
	return false;
}

static bool skip_name(struct parser *p, const char *name)
{
	if (is_name(cur(p), name)) {
		next(p);
		return true;
	}
	return false;
}

_Noreturn static void unexpected(struct parser *p, const char *expected)
{
	char buf[64];
	struct token *t = cur(p);
	if (t->type == T_EOF)
		pfail(p, t->line, "unexpected end of template, expected %s", expected);
	pfail(p, t->line, "expected %s, got %s", expected, tok_describe(t, buf, sizeof(buf)));
}

static struct token *expect_op(struct parser *p, int op, const char *what)
{
	if (!is_op(cur(p), op))
		unexpected(p, what);
	return next(p);
}

static struct token *expect_type(struct parser *p, int type, const char *what)
{
	if (cur(p)->type != type)
		unexpected(p, what);
	return next(p);
}

static void expect_name(struct parser *p, const char *name)
{
	if (!is_name(cur(p), name)) {
		char what[64];
		snprintf(what, sizeof(what), "'%s'", name);
		unexpected(p, what);
	}
	next(p);
}

/* ---- node helpers ---------------------------------------------------- */

static struct node *mk(struct parser *p, int type, uint32_t line)
{
	struct node *n = ar_alloc(p->ar, sizeof(*n));
	n->type = (uint8_t)type;
	n->line = line;
	return n;
}

struct vec {
	struct node **v;
	uint32_t n, cap;
};

static void vpush(struct parser *p, struct vec *v, struct node *x)
{
	if (v->n == v->cap) {
		uint32_t cap = v->cap ? v->cap * 2 : 4;
		v->v = ar_realloc(p->ar, v->v, v->cap * sizeof(*v->v), cap * sizeof(*v->v));
		v->cap = cap;
	}
	v->v[v->n++] = x;
}

static struct nlist vdone(struct vec *v)
{
	struct nlist l = { v->v, v->n };
	return l;
}

static void enter(struct parser *p)
{
	if (++p->depth > MAX_NESTING)
		pfail(p, cur(p)->line, "template nested too deeply (more than %d levels)", MAX_NESTING);
}

static void leave(struct parser *p) { p->depth--; }

/* ---- expressions ------------------------------------------------------ */

/* Left-associative chains build trees as deep as they are long: each link
 * counts as a nesting level (chain_enter), released when the chain ends. */
static void chain_enter(struct parser *p, int *links)
{
	enter(p);
	(*links)++;
}

static void chain_leave(struct parser *p, int links)
{
	p->depth -= links;
}


static struct node *parse_expression(struct parser *p, bool with_condexpr);
static struct node *parse_or(struct parser *p);
static struct node *parse_unary(struct parser *p, bool with_filter);
static struct node *parse_primary(struct parser *p);
static struct node *parse_postfix(struct parser *p, struct node *n);
static struct node *parse_filter_expr(struct parser *p, struct node *n);
static struct node *parse_filter(struct parser *p, struct node *n, bool start_inline);

typedef bool (*end_rule)(struct token *);

static bool end_in(struct token *t) { return is_name(t, "in"); }
static bool end_recursive(struct token *t) { return is_name(t, "recursive"); }

static bool is_tuple_end(struct parser *p, end_rule extra)
{
	struct token *t = cur(p);
	if (t->type == T_VAR_END || t->type == T_BLOCK_END || is_op(t, P_RPAREN))
		return true;
	return extra && extra(t);
}

/* jinja2's parse_tuple: mode 0 = full expressions, 1 = no inline if,
 * 2 = primaries only (assignment targets). */
static struct node *parse_tuple(struct parser *p, int mode, end_rule extra, bool explicit_parens)
{
	uint32_t line = cur(p)->line;
	struct vec items = { 0 };
	bool is_tuple = false;
	for (;;) {
		if (items.n)
			expect_op(p, P_COMMA, "','");
		if (is_tuple_end(p, extra))
			break;
		struct node *x;
		if (mode == 2)
			x = parse_primary(p);
		else
			x = parse_expression(p, mode == 0);
		vpush(p, &items, x);
		if (is_op(cur(p), P_COMMA))
			is_tuple = true;
		else
			break;
	}
	if (!is_tuple) {
		if (items.n)
			return items.v[0];
		if (!explicit_parens) {
			char buf[64];
			pfail(p, cur(p)->line, "Expected an expression, got %s",
			      tok_describe(cur(p), buf, sizeof(buf)));
		}
	}
	struct node *n = mk(p, X_TUPLE, line);
	n->args = vdone(&items);
	return n;
}

static struct node *parse_expression(struct parser *p, bool with_condexpr)
{
	enter(p);
	struct node *n;
	if (!with_condexpr) {
		n = parse_or(p);
	} else {
		uint32_t line = cur(p)->line;
		int links = 0;
		n = parse_or(p);
		while (skip_name(p, "if")) {
			chain_enter(p, &links);
			struct node *c = mk(p, X_COND, line);
			c->b = n;
			c->a = parse_or(p);
			if (skip_name(p, "else"))
				c->c = parse_expression(p, true);
			n = c;
			line = cur(p)->line;
		}
		chain_leave(p, links);
	}
	leave(p);
	return n;
}

static struct node *parse_not(struct parser *p);

static struct node *parse_and(struct parser *p)
{
	int links = 0;
	struct node *left = parse_not(p);
	while (is_name(cur(p), "and")) {
		chain_enter(p, &links);
		struct node *n = mk(p, X_AND, next(p)->line);
		n->a = left;
		n->b = parse_not(p);
		left = n;
	}
	chain_leave(p, links);
	return left;
}

static struct node *parse_or(struct parser *p)
{
	int links = 0;
	struct node *left = parse_and(p);
	while (is_name(cur(p), "or")) {
		chain_enter(p, &links);
		struct node *n = mk(p, X_OR, next(p)->line);
		n->a = left;
		n->b = parse_and(p);
		left = n;
	}
	chain_leave(p, links);
	return left;
}

static struct node *parse_math1(struct parser *p);

static struct node *parse_compare(struct parser *p)
{
	uint32_t line = cur(p)->line;
	struct node *expr = parse_math1(p);
	struct vec operands = { 0 };
	uint8_t ops[64];
	uint32_t nops = 0;
	for (;;) {
		struct token *t = cur(p);
		int op = -1;
		if (t->type == T_OP) {
			switch (t->op) {
			case P_EQ: op = CMP_EQ; break;
			case P_NE: op = CMP_NE; break;
			case P_LT: op = CMP_LT; break;
			case P_LTEQ: op = CMP_LE; break;
			case P_GT: op = CMP_GT; break;
			case P_GTEQ: op = CMP_GE; break;
			}
			if (op >= 0)
				next(p);
		} else if (is_name(t, "in")) {
			next(p);
			op = CMP_IN;
		} else if (is_name(t, "not") && is_name(look(p), "in")) {
			next(p);
			next(p);
			op = CMP_NOTIN;
		}
		if (op < 0)
			break;
		if (nops == sizeof(ops))
			pfail(p, t->line, "too many chained comparisons");
		ops[nops++] = (uint8_t)op;
		vpush(p, &operands, parse_math1(p));
	}
	if (!nops)
		return expr;
	struct node *n = mk(p, X_COMPARE, line);
	n->a = expr;
	n->args = vdone(&operands);
	n->ops = ar_alloc(p->ar, nops);
	memcpy(n->ops, ops, nops);
	return n;
}

static struct node *parse_not(struct parser *p)
{
	if (is_name(cur(p), "not")) {
		enter(p);
		struct node *n = mk(p, X_NOT, next(p)->line);
		n->a = parse_not(p);
		leave(p);
		return n;
	}
	return parse_compare(p);
}

static struct node *parse_concat(struct parser *p);

static struct node *parse_math1(struct parser *p)
{
	int links = 0;
	struct node *left = parse_concat(p);
	while (is_op(cur(p), P_ADD) || is_op(cur(p), P_SUB)) {
		chain_enter(p, &links);
		struct token *t = next(p);
		struct node *n = mk(p, X_BIN, t->line);
		n->op = t->op == P_ADD ? OP_ADD : OP_SUB;
		n->a = left;
		n->b = parse_concat(p);
		left = n;
	}
	chain_leave(p, links);
	return left;
}

static struct node *parse_math2(struct parser *p);

static struct node *parse_concat(struct parser *p)
{
	uint32_t line = cur(p)->line;
	struct node *first = parse_math2(p);
	if (!is_op(cur(p), P_TILDE))
		return first;
	struct vec args = { 0 };
	vpush(p, &args, first);
	while (skip_op(p, P_TILDE))
		vpush(p, &args, parse_math2(p));
	struct node *n = mk(p, X_CONCAT, line);
	n->args = vdone(&args);
	return n;
}

static struct node *parse_pow(struct parser *p);

static struct node *parse_math2(struct parser *p)
{
	int links = 0;
	struct node *left = parse_pow(p);
	for (;;) {
		struct token *t = cur(p);
		int op;
		if (is_op(t, P_MUL))
			op = OP_MUL;
		else if (is_op(t, P_DIV))
			op = OP_DIV;
		else if (is_op(t, P_FLOORDIV))
			op = OP_FLOORDIV;
		else if (is_op(t, P_MOD))
			op = OP_MOD;
		else
			break;
		next(p);
		chain_enter(p, &links);
		struct node *n = mk(p, X_BIN, t->line);
		n->op = (uint8_t)op;
		n->a = left;
		n->b = parse_pow(p);
		left = n;
	}
	chain_leave(p, links);
	return left;
}

static struct node *parse_pow(struct parser *p)
{
	int links = 0;
	struct node *left = parse_unary(p, true);
	while (is_op(cur(p), P_POW)) {
		chain_enter(p, &links);
		struct node *n = mk(p, X_BIN, next(p)->line);
		n->op = OP_POW;
		n->a = left;
		n->b = parse_unary(p, true);
		left = n;
	}
	chain_leave(p, links);
	return left;
}

static struct node *parse_unary(struct parser *p, bool with_filter)
{
	struct token *t = cur(p);
	struct node *n;
	enter(p);
	if (is_op(t, P_SUB) || is_op(t, P_ADD)) {
		next(p);
		n = mk(p, is_op(t, P_SUB) ? X_NEG : X_POS, t->line);
		n->a = parse_unary(p, false);
	} else {
		n = parse_primary(p);
	}
	n = parse_postfix(p, n);
	if (with_filter)
		n = parse_filter_expr(p, n);
	leave(p);
	return n;
}

static struct node *parse_list(struct parser *p)
{
	struct token *t = expect_op(p, P_LBRACKET, "'['");
	struct vec items = { 0 };
	while (!is_op(cur(p), P_RBRACKET)) {
		if (items.n)
			expect_op(p, P_COMMA, "','");
		if (is_op(cur(p), P_RBRACKET))
			break;
		vpush(p, &items, parse_expression(p, true));
	}
	expect_op(p, P_RBRACKET, "']'");
	struct node *n = mk(p, X_LIST, t->line);
	n->args = vdone(&items);
	return n;
}

static struct node *parse_dict(struct parser *p)
{
	struct token *t = expect_op(p, P_LBRACE, "'{'");
	struct vec keys = { 0 }, vals = { 0 };
	while (!is_op(cur(p), P_RBRACE)) {
		if (keys.n)
			expect_op(p, P_COMMA, "','");
		if (is_op(cur(p), P_RBRACE))
			break;
		vpush(p, &keys, parse_expression(p, true));
		expect_op(p, P_COLON, "':'");
		vpush(p, &vals, parse_expression(p, true));
	}
	expect_op(p, P_RBRACE, "'}'");
	struct node *n = mk(p, X_DICT, t->line);
	n->args = vdone(&keys);
	n->kwv = vdone(&vals);
	return n;
}

static void note_name_use(struct parser *p, const char *name)
{
	uint16_t flag = 0;
	if (name == p->t->n_varargs)
		flag = NF_VARARGS;
	else if (name == p->t->n_kwargs)
		flag = NF_KWARGS;
	else if (name == p->t->n_caller)
		flag = NF_CALLER;
	if (!flag)
		return;
	for (int i = 0; i < p->nusage; i++)
		*p->usage[i] |= flag;
}

static struct node *parse_primary(struct parser *p)
{
	struct token *t = cur(p);
	struct node *n;
	char buf[64];
	switch (t->type) {
	case T_NAME:
		next(p);
		if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") ||
		    is_name(t, "False")) {
			n = mk(p, X_CONST, t->line);
			n->value = tv_bool(t->s[0] == 't' || t->s[0] == 'T');
		} else if (is_name(t, "none") || is_name(t, "None")) {
			n = mk(p, X_CONST, t->line);
			n->value = tv_none();
		} else {
			n = mk(p, X_NAME, t->line);
			n->name = intern(p, t->s, t->n);
			note_name_use(p, n->name);
		}
		return n;
	case T_STRING: {
		next(p);
		size_t len = t->n;
		const char *s = t->s;
		if (cur(p)->type == T_STRING) {
			struct abuf b;
			ab_init(&b, p->ar, 0);
			ab_add(&b, t->s, t->n);
			while (cur(p)->type == T_STRING) {
				struct token *u = next(p);
				ab_add(&b, u->s, u->n);
			}
			s = b.p ? b.p : "";
			len = b.n;
		}
		n = mk(p, X_CONST, t->line);
		n->value = tv_strn(s, len);
		return n;
	}
	case T_INT:
		next(p);
		n = mk(p, X_CONST, t->line);
		n->value = tv_int(t->i);
		return n;
	case T_BIGINT:
		next(p);
		n = mk(p, X_CONST, t->line);
		n->value.kind = TV_BIGINT;
		n->value.s.p = t->s;
		n->value.s.n = t->n;
		return n;
	case T_FLOAT:
		next(p);
		n = mk(p, X_CONST, t->line);
		n->value = tv_float(t->f);
		return n;
	case T_OP:
		if (t->op == P_LPAREN) {
			next(p);
			n = parse_tuple(p, 0, NULL, true);
			expect_op(p, P_RPAREN, "')'");
			return n;
		}
		if (t->op == P_LBRACKET)
			return parse_list(p);
		if (t->op == P_LBRACE)
			return parse_dict(p);
		break;
	default:
		break;
	}
	if (t->type == T_EOF)
		pfail(p, t->line, "unexpected end of template");
	pfail(p, t->line, "unexpected %s", tok_describe(t, buf, sizeof(buf)));
}

/* Arguments of a call, filter or test: ( args, k=v, *a, **kw ) */
static void parse_call_args(struct parser *p, struct node *n)
{
	struct token *open = expect_op(p, P_LPAREN, "'('");
	struct vec args = { 0 }, kwv = { 0 };
	const char **kwn = NULL;
	uint32_t kwcap = 0;
	bool require_comma = false;
	while (!is_op(cur(p), P_RPAREN)) {
		if (require_comma) {
			expect_op(p, P_COMMA, "','");
			if (is_op(cur(p), P_RPAREN))
				break;
		}
		if (is_op(cur(p), P_MUL)) {
			if (n->c || n->d)
				pfail(p, open->line, "invalid syntax for function call expression");
			next(p);
			n->c = parse_expression(p, true);
		} else if (is_op(cur(p), P_POW)) {
			if (n->d)
				pfail(p, open->line, "invalid syntax for function call expression");
			next(p);
			n->d = parse_expression(p, true);
		} else if (cur(p)->type == T_NAME && is_op(look(p), P_ASSIGN)) {
			if (n->d)
				pfail(p, open->line, "invalid syntax for function call expression");
			struct token *k = next(p);
			next(p);
			if (kwv.n == kwcap) {
				uint32_t cap = kwcap ? kwcap * 2 : 4;
				kwn = ar_realloc(p->ar, kwn, kwcap * sizeof(char *), cap * sizeof(char *));
				kwcap = cap;
			}
			kwn[kwv.n] = intern(p, k->s, k->n);
			vpush(p, &kwv, parse_expression(p, true));
		} else {
			if (n->c || n->d || kwv.n)
				pfail(p, open->line, "invalid syntax for function call expression");
			vpush(p, &args, parse_expression(p, true));
		}
		require_comma = true;
	}
	expect_op(p, P_RPAREN, "')'");
	n->args = vdone(&args);
	n->kwv = vdone(&kwv);
	n->kwn = kwn;
}

static struct node *parse_subscribed(struct parser *p)
{
	uint32_t line = cur(p)->line;
	struct node *parts[3] = { NULL, NULL, NULL };
	if (is_op(cur(p), P_COLON)) {
		next(p);
	} else {
		struct node *x = parse_expression(p, true);
		if (!is_op(cur(p), P_COLON))
			return x;
		next(p);
		parts[0] = x;
	}
	if (!is_op(cur(p), P_COLON) && !is_op(cur(p), P_RBRACKET) && !is_op(cur(p), P_COMMA))
		parts[1] = parse_expression(p, true);
	if (is_op(cur(p), P_COLON)) {
		next(p);
		if (!is_op(cur(p), P_RBRACKET) && !is_op(cur(p), P_COMMA))
			parts[2] = parse_expression(p, true);
	}
	struct node *s = mk(p, X_SLICE, line);
	s->a = parts[0];
	s->b = parts[1];
	s->c = parts[2];
	return s;
}

static struct node *parse_subscript(struct parser *p, struct node *obj)
{
	struct token *t = next(p);
	if (t->type == T_OP && t->op == P_DOT) {
		struct token *a = next(p);
		if (a->type == T_NAME) {
			struct node *n = mk(p, X_GETATTR, t->line);
			n->a = obj;
			n->name = intern(p, a->s, a->n);
			return n;
		}
		if (a->type != T_INT)
			pfail(p, a->line, "expected name or number");
		struct node *k = mk(p, X_CONST, a->line);
		k->value = tv_int(a->i);
		struct node *n = mk(p, X_GETITEM, t->line);
		n->a = obj;
		n->b = k;
		return n;
	}
	/* '[' */
	struct vec args = { 0 };
	while (!is_op(cur(p), P_RBRACKET)) {
		if (args.n)
			expect_op(p, P_COMMA, "','");
		vpush(p, &args, parse_subscribed(p));
	}
	expect_op(p, P_RBRACKET, "']'");
	struct node *n = mk(p, X_GETITEM, t->line);
	n->a = obj;
	if (args.n == 1) {
		n->b = args.v[0];
	} else {
		if (args.n == 0)
			pfail(p, t->line, "expected subscript expression");
		struct node *tup = mk(p, X_TUPLE, t->line);
		tup->args = vdone(&args);
		n->b = tup;
	}
	return n;
}

static struct node *parse_postfix(struct parser *p, struct node *n)
{
	int links = 0;
	for (;; chain_enter(p, &links)) {
		struct token *t = cur(p);
		if (is_op(t, P_DOT) || is_op(t, P_LBRACKET)) {
			n = parse_subscript(p, n);
		} else if (is_op(t, P_LPAREN)) {
			struct node *c = mk(p, X_CALL, t->line);
			c->a = n;
			parse_call_args(p, c);
			n = c;
		} else {
			chain_leave(p, links);
			return n;
		}
	}
}

/* A dotted name after '|' or 'is'. */
static const char *dotted_name(struct parser *p)
{
	struct token *t = expect_type(p, T_NAME, "a name");
	if (!is_op(cur(p), P_DOT))
		return intern(p, t->s, t->n);
	struct abuf b;
	ab_init(&b, p->ar, 0);
	ab_add(&b, t->s, t->n);
	while (skip_op(p, P_DOT)) {
		struct token *u = expect_type(p, T_NAME, "a name");
		ab_addch(&b, '.');
		ab_add(&b, u->s, u->n);
	}
	return intern(p, b.p, b.n);
}

static struct node *parse_filter(struct parser *p, struct node *n, bool start_inline)
{
	int links = 0;
	while (is_op(cur(p), P_PIPE) || start_inline) {
		chain_enter(p, &links);
		if (!start_inline)
			next(p);
		uint32_t line = cur(p)->line;
		struct node *f = mk(p, X_FILTER, line);
		f->name = dotted_name(p);
		f->filter = filter_find(f->name);
		f->a = n;
		if (is_op(cur(p), P_LPAREN))
			parse_call_args(p, f);
		n = f;
		start_inline = false;
	}
	chain_leave(p, links);
	return n;
}

static struct node *parse_test(struct parser *p, struct node *n)
{
	struct token *is = next(p);
	bool negated = skip_name(p, "not");
	struct node *t = mk(p, X_TEST, is->line);
	t->name = dotted_name(p);
	t->test = test_find(t->name);
	t->a = n;
	struct token *c = cur(p);
	if (is_op(c, P_LPAREN)) {
		parse_call_args(p, t);
	} else if ((c->type == T_NAME || c->type == T_STRING || c->type == T_INT ||
		    c->type == T_BIGINT || c->type == T_FLOAT || is_op(c, P_LBRACKET) ||
		    is_op(c, P_LBRACE)) &&
		   !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
		if (is_name(c, "is"))
			pfail(p, c->line, "You cannot chain multiple tests with is");
		struct node *arg = parse_postfix(p, parse_primary(p));
		struct vec args = { 0 };
		vpush(p, &args, arg);
		t->args = vdone(&args);
	}
	if (negated) {
		struct node *nn = mk(p, X_NOT, is->line);
		nn->a = t;
		return nn;
	}
	return t;
}

static struct node *parse_filter_expr(struct parser *p, struct node *n)
{
	int links = 0;
	for (;; chain_enter(p, &links)) {
		struct token *t = cur(p);
		if (is_op(t, P_PIPE)) {
			n = parse_filter(p, n, false);
		} else if (is_name(t, "is")) {
			n = parse_test(p, n);
		} else if (is_op(t, P_LPAREN)) {
			struct node *c = mk(p, X_CALL, t->line);
			c->a = n;
			parse_call_args(p, c);
			n = c;
		} else {
			chain_leave(p, links);
			return n;
		}
	}
}

/* ---- assignment targets ---------------------------------------------- */

static void check_target(struct parser *p, struct node *n)
{
	if (n->type == X_NAME)
		return;
	if (n->type == X_TUPLE) {
		for (uint32_t i = 0; i < n->args.n; i++)
			check_target(p, n->args.v[i]);
		return;
	}
	pfail(p, n->line, "can't assign to this expression");
}

static struct node *parse_assign_target(struct parser *p, bool name_only, end_rule extra,
					bool with_namespace)
{
	struct token *t = cur(p);
	if (with_namespace && t->type == T_NAME && is_op(look(p), P_DOT)) {
		next(p);
		next(p);
		struct token *attr = expect_type(p, T_NAME, "a name");
		struct node *n = mk(p, X_NSREF, t->line);
		n->name = intern(p, t->s, t->n);
		n->name2 = intern(p, attr->s, attr->n);
		return n;
	}
	struct node *n;
	if (name_only) {
		struct token *nt = expect_type(p, T_NAME, "a name");
		n = mk(p, X_NAME, nt->line);
		n->name = intern(p, nt->s, nt->n);
	} else {
		n = parse_tuple(p, 2, extra, false);
	}
	check_target(p, n);
	return n;
}

/* ---- statements ------------------------------------------------------ */

static struct nlist subparse(struct parser *p, const char *const *end_tags);
static struct node *parse_statement(struct parser *p);

static bool at_end_tag(struct parser *p, const char *const *end_tags)
{
	if (!end_tags)
		return false;
	for (int i = 0; end_tags[i]; i++)
		if (is_name(cur(p), end_tags[i]))
			return true;
	return false;
}

_Noreturn static void fail_eof(struct parser *p, const char *const *end_tags)
{
	char want[256] = "";
	size_t o = 0;
	for (int i = 0; end_tags && end_tags[i] && o < sizeof(want) - 40; i++)
		o += (size_t)snprintf(want + o, sizeof(want) - o, "%s'%s'", i ? " or " : "", end_tags[i]);
	pfail(p, cur(p)->line,
	      "Unexpected end of template. Jinja was looking for the following tags: %s. "
	      "The innermost block that needs to be closed is '%s'.",
	      want, p->ntags ? p->open_tags[p->ntags - 1] : "?");
}

/* parse_statements: ':'? '%}' body, stopping at one of end_tags (the tag
 * name is left as the current token, or consumed with drop_needle). */
static struct nlist parse_statements(struct parser *p, const char *const *end_tags, bool drop_needle)
{
	skip_op(p, P_COLON);
	expect_type(p, T_BLOCK_END, "end of statement block");
	struct nlist body = subparse(p, end_tags);
	if (cur(p)->type == T_EOF)
		fail_eof(p, end_tags);
	if (drop_needle)
		next(p);
	return body;
}

static struct nlist subparse(struct parser *p, const char *const *end_tags)
{
	struct vec body = { 0 };
	for (;;) {
		struct token *t = cur(p);
		if (t->type == T_EOF)
			break;
		if (t->type == T_DATA) {
			struct node *n = mk(p, S_DATA, t->line);
			n->value = tv_strn(t->s, t->n);
			vpush(p, &body, n);
			next(p);
		} else if (t->type == T_VAR_BEGIN) {
			next(p);
			struct node *n = mk(p, S_PRINT, t->line);
			n->a = parse_tuple(p, 0, NULL, false);
			expect_type(p, T_VAR_END, "end of print statement");
			vpush(p, &body, n);
		} else if (t->type == T_BLOCK_BEGIN) {
			next(p);
			if (at_end_tag(p, end_tags))
				return vdone(&body);
			struct node *n = parse_statement(p);
			if (n)
				vpush(p, &body, n);
			expect_type(p, T_BLOCK_END, "end of statement block");
		} else {
			char buf[64];
			pfail(p, t->line, "unexpected %s", tok_describe(t, buf, sizeof(buf)));
		}
	}
	return vdone(&body);
}

static const char *const END_IF[] = { "elif", "else", "endif", NULL };
static const char *const END_ENDIF[] = { "endif", NULL };
static const char *const END_FOR[] = { "endfor", "else", NULL };
static const char *const END_ENDFOR[] = { "endfor", NULL };
static const char *const END_SET[] = { "endset", NULL };
static const char *const END_MACRO[] = { "endmacro", NULL };
static const char *const END_CALL[] = { "endcall", NULL };
static const char *const END_FILTER[] = { "endfilter", NULL };
static const char *const END_WITH[] = { "endwith", NULL };
static const char *const END_GENERATION[] = { "endgeneration", NULL };

static struct node *parse_if(struct parser *p)
{
	struct node *result = mk(p, S_IF, next(p)->line), *node = result;
	for (;;) {
		node->a = parse_tuple(p, 1, NULL, false);
		node->body = parse_statements(p, END_IF, false);
		struct token *t = next(p);
		if (is_name(t, "elif")) {
			struct node *e = mk(p, S_IF, cur(p)->line);
			struct node **slot = ar_alloc(p->ar, sizeof(*slot));
			slot[0] = e;
			node->alt.v = slot;
			node->alt.n = 1;
			node = e;
			continue;
		}
		if (is_name(t, "else"))
			node->alt = parse_statements(p, END_ENDIF, true);
		break;
	}
	return result;
}

static struct node *parse_for(struct parser *p)
{
	struct node *n = mk(p, S_FOR, next(p)->line);
	n->a = parse_assign_target(p, false, end_in, false);
	expect_name(p, "in");
	n->b = parse_tuple(p, 1, end_recursive, false);
	if (skip_name(p, "if"))
		n->c = parse_expression(p, true);
	if (skip_name(p, "recursive"))
		n->flags |= NF_RECURSIVE;
	p->loop_depth++;
	n->body = parse_statements(p, END_FOR, false);
	p->loop_depth--;
	struct token *t = next(p);
	if (is_name(t, "else"))
		n->alt = parse_statements(p, END_ENDFOR, true);
	return n;
}

static struct node *parse_set(struct parser *p)
{
	uint32_t line = next(p)->line;
	struct node *target = parse_assign_target(p, false, NULL, true);
	if (skip_op(p, P_ASSIGN)) {
		struct node *n = mk(p, S_SET, line);
		n->a = target;
		n->b = parse_tuple(p, 0, NULL, false);
		return n;
	}
	struct node *n = mk(p, S_SETBLOCK, line);
	n->a = target;
	n->b = parse_filter(p, NULL, false);
	n->body = parse_statements(p, END_SET, true);
	return n;
}

static void parse_signature(struct parser *p, struct node *n)
{
	struct vec params = { 0 }, defaults = { 0 };
	bool have_default = false;
	expect_op(p, P_LPAREN, "'('");
	while (!is_op(cur(p), P_RPAREN)) {
		if (params.n)
			expect_op(p, P_COMMA, "','");
		struct node *arg = parse_assign_target(p, true, NULL, false);
		struct node *def = NULL;
		if (skip_op(p, P_ASSIGN)) {
			def = parse_expression(p, true);
			have_default = true;
		} else if (have_default) {
			pfail(p, arg->line, "non-default argument follows default argument");
		}
		vpush(p, &params, arg);
		vpush(p, &defaults, def);
	}
	expect_op(p, P_RPAREN, "')'");
	n->args = vdone(&params);
	n->kwv = vdone(&defaults);
}

/* Body of a macro-like construct: a new function for break/continue and
 * for varargs/kwargs/caller use. */
static struct nlist parse_function_body(struct parser *p, struct node *n, const char *const *end)
{
	int saved_loops = p->loop_depth;
	p->loop_depth = 0;
	if (p->nusage >= MAX_NESTING)
		pfail(p, n->line, "template nested too deeply");
	p->usage[p->nusage++] = &n->flags;
	struct nlist body = parse_statements(p, end, true);
	p->nusage--;
	p->loop_depth = saved_loops;
	return body;
}

static struct node *parse_macro(struct parser *p)
{
	struct node *n = mk(p, S_MACRO, next(p)->line);
	struct token *name = expect_type(p, T_NAME, "a macro name");
	n->name = intern(p, name->s, name->n);
	/* params are parsed before the body, so a param named like one of the
	 * specials is not counted as a use */
	int saved = p->nusage;
	p->nusage = 0;
	parse_signature(p, n);
	p->nusage = saved;
	n->body = parse_function_body(p, n, END_MACRO);
	return n;
}

static struct node *parse_call_block(struct parser *p)
{
	struct node *n = mk(p, S_CALLBLOCK, next(p)->line);
	if (is_op(cur(p), P_LPAREN))
		parse_signature(p, n);
	struct node *call = parse_expression(p, true);
	if (call->type != X_CALL)
		pfail(p, n->line, "expected call");
	n->a = call;
	n->name = interns(p, "caller");
	n->body = parse_function_body(p, n, END_CALL);
	return n;
}

static struct node *parse_filter_block(struct parser *p)
{
	struct node *n = mk(p, S_FILTERBLOCK, next(p)->line);
	n->b = parse_filter(p, NULL, true);
	n->body = parse_statements(p, END_FILTER, true);
	return n;
}

static struct node *parse_with(struct parser *p)
{
	struct node *n = mk(p, S_WITH, next(p)->line);
	struct vec targets = { 0 }, values = { 0 };
	while (cur(p)->type != T_BLOCK_END) {
		if (targets.n)
			expect_op(p, P_COMMA, "','");
		vpush(p, &targets, parse_assign_target(p, false, NULL, false));
		expect_op(p, P_ASSIGN, "'='");
		vpush(p, &values, parse_expression(p, true));
	}
	n->args = vdone(&targets);
	n->kwv = vdone(&values);
	n->body = parse_statements(p, END_WITH, true);
	return n;
}

static struct node *parse_print(struct parser *p)
{
	struct node *n = mk(p, S_PRINT, next(p)->line);
	struct vec items = { 0 };
	while (cur(p)->type != T_BLOCK_END) {
		if (items.n)
			expect_op(p, P_COMMA, "','");
		vpush(p, &items, parse_expression(p, true));
	}
	/* {% print a, b %} prints each; keep them as a tuple-less list */
	struct node *tup = mk(p, X_CONCAT, n->line);
	tup->args = vdone(&items);
	n->a = tup;
	return n;
}

static struct node *parse_statement(struct parser *p)
{
	struct token *t = cur(p);
	char buf[64];
	if (t->type != T_NAME)
		pfail(p, t->line, "tag name expected, got %s", tok_describe(t, buf, sizeof(buf)));
	enter(p);
	if (p->ntags < MAX_NESTING)
		p->open_tags[p->ntags] = intern(p, t->s, t->n);
	p->ntags++;
	struct node *n = NULL;
	if (is_name(t, "if")) {
		n = parse_if(p);
	} else if (is_name(t, "for")) {
		n = parse_for(p);
	} else if (is_name(t, "set")) {
		n = parse_set(p);
	} else if (is_name(t, "macro")) {
		n = parse_macro(p);
	} else if (is_name(t, "call")) {
		n = parse_call_block(p);
	} else if (is_name(t, "filter")) {
		n = parse_filter_block(p);
	} else if (is_name(t, "with")) {
		n = parse_with(p);
	} else if (is_name(t, "print")) {
		n = parse_print(p);
	} else if (is_name(t, "break") || is_name(t, "continue")) {
		next(p);
		if (!p->loop_depth)
			pfail(p, t->line, "'%s' outside loop", t->s);
		n = mk(p, t->s[0] == 'b' ? S_BREAK : S_CONTINUE, t->line);
	} else if (is_name(t, "generation")) {
		n = mk(p, S_GENERATION, next(p)->line);
		n->name = interns(p, "caller");
		n->body = parse_function_body(p, n, END_GENERATION);
	} else if (is_name(t, "block") || is_name(t, "extends") || is_name(t, "include") ||
		   is_name(t, "import") || is_name(t, "from") || is_name(t, "autoescape")) {
		pfail(p, t->line, "the '%s' tag is not supported in chat templates", t->s);
	} else {
		pfail(p, t->line, "Encountered unknown tag '%.*s'.", (int)(t->n > 60 ? 60 : t->n), t->s);
	}
	p->ntags--;
	leave(p);
	return n;
}

/* ---- the compile-time check of filters and tests --------------------- */

static void check_node(struct parser *p, struct node *n, bool soft);

static void check_list(struct parser *p, struct nlist l, bool soft)
{
	for (uint32_t i = 0; i < l.n; i++)
		check_node(p, l.v[i], soft);
}

static void check_node(struct parser *p, struct node *n, bool soft)
{
	if (!n)
		return;
	switch (n->type) {
	case X_FILTER:
		if (!n->filter) {
			if (!soft)
				pfail(p, n->line, "No filter named '%s'.", n->name);
			n->flags |= NF_SOFT;
		}
		break;
	case X_TEST:
		if (!n->test) {
			if (!soft)
				pfail(p, n->line, "No test named '%s'.", n->name);
			n->flags |= NF_SOFT;
		}
		break;
	case S_IF:
	case X_COND:
		soft = true;
		break;
	case S_FOR:
		check_node(p, n->b, soft);
		check_node(p, n->c, false);
		check_list(p, n->body, false);
		check_list(p, n->alt, false);
		return;
	case S_MACRO:
		check_list(p, n->kwv, false);
		check_list(p, n->body, false);
		return;
	case S_CALLBLOCK:
		check_node(p, n->a, soft);
		check_list(p, n->kwv, false);
		check_list(p, n->body, false);
		return;
	case S_FILTERBLOCK:
	case S_SETBLOCK:
	case S_GENERATION:
		check_node(p, n->b, false);
		check_list(p, n->body, false);
		return;
	case S_WITH:
		check_list(p, n->kwv, soft);
		check_list(p, n->body, false);
		return;
	default:
		break;
	}
	check_node(p, n->a, soft);
	check_node(p, n->b, soft);
	check_node(p, n->c, soft);
	check_node(p, n->d, soft);
	check_list(p, n->args, soft);
	check_list(p, n->kwv, soft);
	check_list(p, n->body, soft);
	check_list(p, n->alt, soft);
}

int tmpl_parse(struct tmpl *t, const char *src, size_t n, char *err, size_t errn)
{
	struct parser *p = ar_alloc(&t->ar, sizeof(*p));
	p->t = t;
	p->ar = &t->ar;
	p->err = err;
	p->errn = errn;
	t->ar.oom = parser_oom;
	t->ar.oom_ctx = p;
	if (setjmp(p->jmp))
		return -EINVAL;
	t->n_loop = interns(p, "loop");
	t->n_caller = interns(p, "caller");
	t->n_varargs = interns(p, "varargs");
	t->n_kwargs = interns(p, "kwargs");
	int rc = lex(&t->ar, src, n, &p->toks, &p->ntoks, err, errn);
	if (rc)
		return rc;
	t->body = subparse(p, NULL);
	if (cur(p)->type != T_EOF) {
		char buf[64];
		pfail(p, cur(p)->line, "unexpected %s", tok_describe(cur(p), buf, sizeof(buf)));
	}
	check_list(p, t->body, false);
	return 0;
}
