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
 *   \p{X} \P{X} \d \D  (X a general category: L, Lu, N, Nd, P, S, ...)
 *       PCRE2 10.42's tables are Unicode 14.0, Oniguruma's 16.0.  The
 *       characters 16.0 adds to the category (unicode_ranges.h, generated)
 *       are appended: \p{L} -> [\p{L}\x{..}-\x{..}], \P{L} -> [^\p{L}...],
 *       inside a class (plain or [^...]) the items are appended to it.
 *       PCRE2 tests such items one by one (a 25-30% slower encode), so
 *       each pattern is compiled twice, with and without them, and the
 *       extended one is used only for subjects holding a character whose
 *       category changed; on all others the two match alike.
 *
 * Inside a character class \S, \W cannot be expanded and keep PCRE2's
 * meaning (which differs only for U+180E and marks), and \P{X}, \D keep
 * PCRE2's Unicode 14 meaning (a class item cannot remove characters).
 * Scripts (\p{Han}) and the C categories keep Unicode 14 too; so does
 * \p{Mn} for U+1171E, the one character whose category changed (Mn to Mc).
 * No common tokenizer pattern uses any of these.
 */
#include "core/tok/tok_int.h"
#define TOK_UNI_WANT_CLASSES
#include "core/tok/unicode_ranges.h"
#include "core/tok/utf8.h"
#include "core/err.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define WS_ITEMS "\\t-\\r\\x20\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
/* \w: these categories (each with its Unicode 16 additions) and WORD_EXTRA */
static const char *const word_props[] = {"L", "M", "Nd", "Nl", "Pc"};
#define WORD_EXTRA "\\x{B2}\\x{B3}\\x{B9}\\x{BC}-\\x{BE}" \
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

/* The Unicode 16 additions to general category NAME (len n), or NULL. */
static const char *uni_extra(const char *name, size_t n)
{
	for (size_t k = 0; k < sizeof(tok_uni_extras) / sizeof(tok_uni_extras[0]); k++) {
		const char *e = tok_uni_extras[k].name;
		if (strlen(e) == n && strncasecmp(e, name, n) == 0)
			return tok_uni_extras[k].items;
	}
	return NULL;
}

/* Append \p{NAME} followed by its Unicode 16 additions (class items). */
static void add_prop_items(struct strbuf *sb, const char *name, size_t n)
{
	const char *extra = uni_extra(name, n);
	sb_adds(sb, "\\p{");
	sb_add(sb, name, n);
	sb_addch(sb, '}');
	if (extra)
		sb_adds(sb, extra);
}

static void add_word_set(struct strbuf *sb, int in_class, int negate, int uni16)
{
	if (!in_class)
		sb_adds(sb, negate ? "[^" : "[");
	for (size_t k = 0; k < sizeof(word_props) / sizeof(word_props[0]); k++) {
		if (uni16) {
			add_prop_items(sb, word_props[k], strlen(word_props[k]));
		} else {
			sb_adds(sb, "\\p{");
			sb_adds(sb, word_props[k]);
			sb_addch(sb, '}');
		}
	}
	sb_adds(sb, WORD_EXTRA);
	if (!in_class)
		sb_addch(sb, ']');
}

/*
 * A property escape at p[0..n) (p[0] == '\\', p[1] 'p' or 'P'): \pX or
 * \p{[^]NAME}.  Writes its translation and returns the length consumed,
 * or 0 when it is malformed (then it is copied as it is, for PCRE2 to
 * report).
 */
static size_t translate_prop(const char *p, size_t n, int in_class, int uni16,
			     struct strbuf *sb)
{
	int negate = p[1] == 'P';
	const char *name;
	size_t nlen, used;

	if (n < 3)
		return 0;
	if (p[2] == '{') {
		const char *end = memchr(p + 3, '}', n - 3);
		if (!end)
			return 0;
		name = p + 3;
		nlen = (size_t)(end - name);
		used = (size_t)(end + 1 - p);
		if (nlen && name[0] == '^') {
			negate = !negate;
			name++;
			nlen--;
		}
	} else {
		name = p + 2;
		nlen = 1;
		used = 3;
	}
	if (!uni16 || !uni_extra(name, nlen) || (negate && in_class)) {
		/* no additions, or not expressible: PCRE2's own meaning */
		sb_add(sb, p, used);
		return used;
	}
	if (!in_class)
		sb_adds(sb, negate ? "[^" : "[");
	add_prop_items(sb, name, nlen);
	if (!in_class)
		sb_addch(sb, ']');
	return used;
}

/* Rewrite an Oniguruma pattern for PCRE2 (see the file comment). */
static int translate(const char *p, size_t n, int uni16, struct strbuf *sb)
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
				add_word_set(sb, in_class, 0, uni16);
				i += 2;
				continue;
			case 'W':
				if (in_class)
					sb_adds(sb, "\\W");
				else
					add_word_set(sb, 0, 1, uni16);
				i += 2;
				continue;
			case 'd':
			case 'D':
				/* PCRE2 (UCP) and Oniguruma: \d is \p{Nd} */
				translate_prop(e == 'd' ? "\\p{Nd}" : "\\P{Nd}", 6, in_class, uni16, sb);
				i += 2;
				continue;
			case 'p':
			case 'P': {
				size_t used = translate_prop(p + i, n - i, in_class, uni16, sb);
				if (used) {
					i += used;
					continue;
				}
				break;
			}
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

static int compile_one(const char *pat, size_t len, pcre2_code **code, int *jit)
{
	int errcode;
	PCRE2_SIZE erroff;

	*code = pcre2_compile((PCRE2_SPTR)pat, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE,
			      &errcode, &erroff, NULL);
	if (!*code) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(errcode, msg, sizeof(msg));
		return err_set(-EINVAL, "bad regex at offset %zu: %s", (size_t)erroff,
			       (const char *)msg);
	}
	*jit = pcre2_jit_compile(*code, PCRE2_JIT_COMPLETE) == 0;
	return 0;
}

int tok_re_compile(struct tok_re *re, const char *pat, size_t len, int literal)
{
	struct strbuf sb = STRBUF_INIT, sb16 = STRBUF_INIT;
	int rc = 0;

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
		rc = translate(pat, len, 0, &sb);
		if (rc == 0)
			rc = translate(pat, len, 1, &sb16);
		if (rc < 0)
			goto out;
	}
	rc = compile_one(sb.buf, sb.len, &re->code, &re->jit);
	if (rc == 0 && sb16.len && (sb16.len != sb.len || memcmp(sb16.buf, sb.buf, sb.len))) {
		rc = compile_one(sb16.buf, sb16.len, &re->code16, &re->jit16);
		if (rc < 0)
			tok_re_free(re);
	}
out:
	sb_release(&sb);
	sb_release(&sb16);
	return rc;
}

void tok_re_free(struct tok_re *re)
{
	if (re->code)
		pcre2_code_free(re->code);
	if (re->code16)
		pcre2_code_free(re->code16);
	memset(re, 0, sizeof(*re));
}

/* Does s hold a code point whose category changed after Unicode 14.0?  (All
 * are past U+07FF, so only 3- and 4-byte sequences are decoded.) */
_Static_assert(TOK_UNI_CHANGED_MIN >= 0x800, "has_changed_char skips 2-byte characters");
static int has_changed_char(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	while (p < end) {
		unsigned char c = *p;
		if (c < 0xE0) {
			p++;
			continue;
		}
		uint32_t cp;
		if (c < 0xF0) {
			if (end - p < 3)
				return 0;
			cp = (uint32_t)(c & 0x0F) << 12 | (uint32_t)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
			p += 3;
		} else {
			if (end - p < 4)
				return 0;
			cp = (uint32_t)(c & 0x07) << 18 | (uint32_t)(p[1] & 0x3F) << 12 |
			     (uint32_t)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
			p += 4;
		}
		size_t lo = 0, hi = sizeof(tok_uni_changed) / sizeof(tok_uni_changed[0]);
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;
			if (cp > tok_uni_changed[mid][1])
				lo = mid + 1;
			else if (cp < tok_uni_changed[mid][0])
				hi = mid;
			else
				return 1;
		}
	}
	return 0;
}

void tok_re_iter_init(struct tok_re_iter *it, const struct tok_re *re,
		      pcre2_match_data *md, const char *s, size_t len)
{
	it->re = re;
	it->code = re->code;
	it->jit = re->jit;
	if (re->code16 && has_changed_char(s, len)) {
		it->code = re->code16;
		it->jit = re->jit16;
	}
	it->s = s;
	it->len = len;
	it->pos = 0;
	it->last_end = -1;
	it->md = md;
}

static int match_at(const struct tok_re_iter *it, size_t pos)
{
	int rc;
	if (it->jit) {
		rc = pcre2_jit_match(it->code, (PCRE2_SPTR)it->s, it->len, pos, 0, it->md, NULL);
		if (rc != PCRE2_ERROR_JIT_STACKLIMIT)
			return rc;
	}
	return pcre2_match(it->code, (PCRE2_SPTR)it->s, it->len, pos, PCRE2_NO_UTF_CHECK,
			   it->md, NULL);
}

int tok_re_next(struct tok_re_iter *it, size_t *ms, size_t *me)
{
	for (;;) {
		if (it->pos > it->len)
			return 0;
		int rc = match_at(it, it->pos);
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
