/*
 * lexer.h - Jinja2 tokens (internal to core/tmpl).
 *
 * lex() turns template source into tokens the way jinja2's lexer does with
 * trim_blocks and lstrip_blocks on: newlines normalised to "\n", one
 * trailing newline dropped, "-" and "+" whitespace control on tags,
 * {% raw %} blocks, comments removed, string literals unescaped as Python
 * does.
 */
#ifndef DYN_TMPL_LEXER_H
#define DYN_TMPL_LEXER_H

#include "core/tmpl/internal.h"

enum tok_type {
	T_EOF, T_DATA, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END,
	T_NAME, T_STRING, T_INT, T_FLOAT, T_BIGINT, T_OP,
};

enum tok_op {
	P_ADD = 1, P_SUB, P_DIV, P_FLOORDIV, P_MUL, P_MOD, P_POW, P_TILDE,
	P_LBRACKET, P_RBRACKET, P_LPAREN, P_RPAREN, P_LBRACE, P_RBRACE,
	P_EQ, P_NE, P_GT, P_GTEQ, P_LT, P_LTEQ, P_ASSIGN, P_DOT, P_COLON,
	P_PIPE, P_COMMA, P_SEMICOLON,
};

struct token {
	uint8_t type, op;
	uint32_t line;
	const char *s;		/* DATA/NAME/STRING text (unescaped), BIGINT digits */
	size_t n;
	int64_t i;		/* INT */
	double f;		/* FLOAT */
};

/* Tokenize; the last token is T_EOF.  Returns 0 or -EINVAL with a message
 * "line N: ..." in err. */
int lex(struct arena *a, const char *src, size_t n, struct token **out, size_t *nout,
	char *err, size_t errn);

const char *tok_describe(const struct token *t, char *buf, size_t n);

#endif
