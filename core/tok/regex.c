/*
 * regex.c - tokenizer.json regexes on PCRE2, with Oniguruma's meanings.
 *
 * HF tokenizers compiles these patterns with Oniguruma (Ruby syntax).
 * PCRE2 (UTF + UCP, JIT) reads the same syntax with a few differences,
 * which the pattern is rewritten to remove before compiling:
 *
 *   \s  Oniguruma: the White_Space property.  PCRE2 also counts U+180E,
 *       so \s becomes the explicit White_Space set.
 *   \w  Oniguruma: Alphabetic, M, Nd, Pc and Latin-1's superscripts and
 *       fractions.  PCRE2 10.42: L, N and '_'.  Spelled out as a class.
 *   \h  Oniguruma: a hex digit.  PCRE2: horizontal space.
 *   \uHHHH  Oniguruma only; becomes \x{HHHH}.
 *   ^ $ are line anchors in Ruby syntax (PCRE2_MULTILINE).
 *
 * Inside a character class \S, \W cannot be expanded and keep PCRE2's
 * meaning (which differs only for U+180E and marks).  Letters and digits
 * (\p{L}, \p{N}) follow PCRE2's Unicode tables (Unicode 14 in PCRE2 10.42;
 * Oniguruma's are newer): characters assigned after Unicode 14 may be
 * classed differently.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>

#define WS_ITEMS "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define WORD_ITEMS "\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}" \
	"\\x{24B6}-\\x{24E9}\\x{1F130}-\\x{1F149}\\x{1F150}-\\x{1F169}\\x{1F170}-\\x{1F189}"
#define HEX_ITEMS "0-9a-fA-F"

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static void add_set(struct strbuf *sb, int in_class, int negate, const char *items)
{
	if (in_class) {
		sb_adds(sb, items);
		return;
	}
	sb_adds(sb, negate ? "[^" : "[");
	sb_adds(sb, items);
	sb_addch(sb, ']');
}

/* Rewrite an Oniguruma pattern for PCRE2 (see the file comment). */
static int translate(const char *p, size_t n, struct strbuf *sb)
{
	int in_class = 0;

	for (size_t i = 0; i < n;) {
		char c = p[i];
		if (c == '\\') {
			if (i + 1 >= n)
				return err_set(-EINVAL, "pattern ends with a backslash");
			char e = p[i + 1];
			switch (e) {
			case 's':
				add_set(sb, in_class, 0, WS_ITEMS);
				i += 2;
				continue;
			case 'S':
				if (in_class)
					sb_adds(sb, "\\S");
				else
					add_set(sb, 0, 1, WS_ITEMS);
				i += 2;
				continue;
			case 'w':
				add_set(sb, in_class, 0, WORD_ITEMS);
				i += 2;
				continue;
			case 'W':
				if (in_class)
					sb_adds(sb, "\\W");
				else
					add_set(sb, 0, 1, WORD_ITEMS);
				i += 2;
				continue;
			case 'h':
				add_set(sb, in_class, 0, HEX_ITEMS);
				i += 2;
				continue;
			case 'H':
				if (in_class)
					return err_set(-EINVAL, "\\H inside a character class is not supported");
				add_set(sb, 0, 1, HEX_ITEMS);
				i += 2;
				continue;
			case 'u':
				if (i + 5 < n && is_hex(p[i + 2]) && is_hex(p[i + 3]) &&
				    is_hex(p[i + 4]) && is_hex(p[i + 5])) {
					sb_adds(sb, "\\x{");
					sb_add(sb, p + i + 2, 4);
					sb_addch(sb, '}');
					i += 6;
					continue;
				}
				break;
			}
			/* any other escape: copy it with the whole character after it */
			size_t cl = tok_utf8_char_len((unsigned char)e);
			if (i + 1 + cl > n)
				cl = n - i - 1;
			sb_add(sb, p + i, 1 + cl);
			i += 1 + cl;
			continue;
		}
		if (c == '[') {
			if (in_class) {
				if (i + 1 < n && p[i + 1] == ':') {
					/* POSIX class [:alpha:]: copy through ":]" */
					const char *end = memmem(p + i, n - i, ":]", 2);
					if (!end)
						return err_set(-EINVAL, "unterminated [: in character class");
					sb_add(sb, p + i, (size_t)(end + 2 - (p + i)));
					i = (size_t)(end + 2 - p);
					continue;
				}
				return err_set(-EINVAL, "nested character classes are not supported");
			}
			in_class = 1;
			sb_addch(sb, '[');
			i++;
			if (i < n && p[i] == '^') {
				sb_addch(sb, '^');
				i++;
			}
			if (i < n && p[i] == ']') {
				sb_adds(sb, "\\]");
				i++;
			}
			continue;
		}
		if (c == ']' && in_class)
			in_class = 0;
		sb_addch(sb, c);
		i++;
	}
	return 0;
}

int tok_re_compile(struct tok_re *re, const char *pat, size_t len, int literal)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = 0, errcode;
	PCRE2_SIZE erroff;

	memset(re, 0, sizeof(*re));
	if (literal) {
		for (size_t i = 0; i < len; i++) {
			unsigned char c = (unsigned char)pat[i];
			if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
					  (c >= 'A' && c <= 'Z'))) {
				if (c < 0x20 || c == 0x7F)
					sb_addf(&sb, "\\x{%x}", c);
				else {
					sb_addch(&sb, '\\');
					sb_addch(&sb, c);
				}
			} else {
				sb_addch(&sb, (char)c);
			}
		}
	} else {
		rc = translate(pat, len, &sb);
		if (rc < 0)
			goto out;
	}
	re->code = pcre2_compile((PCRE2_SPTR)sb.buf, sb.len,
				 PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE, &errcode,
				 &erroff, NULL);
	if (!re->code) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(errcode, msg, sizeof(msg));
		rc = err_set(-EINVAL, "bad regex at offset %zu: %s", (size_t)erroff,
			     (const char *)msg);
		goto out;
	}
	re->jit = pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == 0;
out:
	sb_release(&sb);
	return rc;
}

void tok_re_free(struct tok_re *re)
{
	if (re->code)
		pcre2_code_free(re->code);
	memset(re, 0, sizeof(*re));
}

void tok_re_iter_init(struct tok_re_iter *it, const struct tok_re *re,
		      pcre2_match_data *md, const char *s, size_t len)
{
	it->re = re;
	it->s = s;
	it->len = len;
	it->pos = 0;
	it->last_end = -1;
	it->md = md;
}

static int match_at(const struct tok_re *re, const char *s, size_t len, size_t pos,
		    pcre2_match_data *md)
{
	int rc;
	if (re->jit) {
		rc = pcre2_jit_match(re->code, (PCRE2_SPTR)s, len, pos, 0, md, NULL);
		if (rc != PCRE2_ERROR_JIT_STACKLIMIT)
			return rc;
	}
	return pcre2_match(re->code, (PCRE2_SPTR)s, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
}

int tok_re_next(struct tok_re_iter *it, size_t *ms, size_t *me)
{
	for (;;) {
		if (it->pos > it->len)
			return 0;
		int rc = match_at(it->re, it->s, it->len, it->pos, it->md);
		if (rc == PCRE2_ERROR_NOMATCH)
			return 0;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof(msg));
			return err_set(-EINVAL, "regex match failed: %s", (const char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(it->md);
		size_t s = ov[0], e = ov[1];
		if (s == e && (long)e == it->last_end) {
			/* an empty match where the last one ended: step one char */
			if (it->pos >= it->len)
				it->pos = it->len + 1;
			else
				it->pos += tok_utf8_char_len((unsigned char)it->s[it->pos]);
			continue;
		}
		it->pos = e;
		it->last_end = (long)e;
		*ms = s;
		*me = e;
		return 1;
	}
}
