/*
 * utf8.h - UTF-8 helpers for the tokenizer (private to core/tok).
 *
 * Invalid input follows one policy everywhere: each maximal ill-formed
 * subpart (Unicode 15, section 3.9, "U+FFFD substitution of maximal
 * subparts") becomes one U+FFFD.  This is what Python's
 * bytes.decode("utf-8", "replace") and Rust's String::from_utf8_lossy do,
 * so text repaired here equals text a Python client would have sent.
 *
 * All functions are pure and thread-safe.
 */
#ifndef DYN_TOK_UTF8_H
#define DYN_TOK_UTF8_H

#include <stddef.h>
#include <stdint.h>

struct strbuf;

#define UTF8_REPLACEMENT "\xEF\xBF\xBD"	/* U+FFFD */

/* Length of the well-formed sequence at s[0..n) (1..4), or 0 if the bytes
 * there are ill-formed or truncated. */
size_t tok_utf8_seq_len(const unsigned char *s, size_t n);

/* Length of the maximal ill-formed subpart at s[0..n) (n >= 1, and s does
 * not start a well-formed sequence): the bytes one U+FFFD replaces. */
size_t tok_utf8_bad_len(const unsigned char *s, size_t n);

/* Offset of the first ill-formed byte, or n if all of s is valid. */
size_t tok_utf8_valid_prefix(const char *s, size_t n);

static inline int tok_utf8_is_valid(const char *s, size_t n)
{
	return tok_utf8_valid_prefix(s, n) == n;
}

/* Append s to out with every maximal ill-formed subpart replaced by U+FFFD. */
void tok_utf8_sanitize(const char *s, size_t n, struct strbuf *out);

/* Decode the code point at s (which must be valid UTF-8); returns its
 * length in bytes. */
static inline size_t tok_utf8_decode(const unsigned char *s, uint32_t *cp)
{
	unsigned c = s[0];
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c < 0xE0) {
		*cp = ((c & 0x1Fu) << 6) | (s[1] & 0x3Fu);
		return 2;
	}
	if (c < 0xF0) {
		*cp = ((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu);
		return 3;
	}
	*cp = ((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
	      (s[3] & 0x3Fu);
	return 4;
}

/* Length of the character whose (valid) lead byte is c. */
static inline size_t tok_utf8_char_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

/* Encode cp (<= 0x10FFFF) into out; returns the length (1..4). */
size_t tok_utf8_encode(uint32_t cp, char out[4]);

/* How many bytes at the end of s[0..n) are the start of a well-formed
 * sequence that is cut short (0..3): bytes a streaming decoder must hold
 * back until the rest arrives. */
size_t tok_utf8_incomplete_tail(const char *s, size_t n);

#endif
