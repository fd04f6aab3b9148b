/*
 * utf8.c - UTF-8 validation, repair and coding (see utf8.h).
 */
#include "core/tok/utf8.h"
#include "core/strbuf.h"

/*
 * The well-formed byte sequences (Unicode table 3-7): for each lead byte,
 * the range allowed for the second byte; later bytes are always 80..BF.
 */
static inline int second_ok(unsigned lead, unsigned b)
{
	switch (lead) {
	case 0xE0: return b >= 0xA0 && b <= 0xBF;
	case 0xED: return b >= 0x80 && b <= 0x9F;
	case 0xF0: return b >= 0x90 && b <= 0xBF;
	case 0xF4: return b >= 0x80 && b <= 0x8F;
	default: return b >= 0x80 && b <= 0xBF;
	}
}

static inline size_t lead_len(unsigned c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return 2;
	if (c >= 0xE0 && c <= 0xEF)
		return 3;
	if (c >= 0xF0 && c <= 0xF4)
		return 4;
	return 0;
}

size_t tok_utf8_seq_len(const unsigned char *s, size_t n)
{
	size_t len = lead_len(s[0]);
	if (len <= 1)
		return len;
	if (n < len || !second_ok(s[0], s[1]))
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xC0) != 0x80)
			return 0;
	return len;
}

size_t tok_utf8_bad_len(const unsigned char *s, size_t n)
{
	size_t len = lead_len(s[0]);
	if (len <= 1)
		return 1;	/* 80..C1, F5..FF: a subpart of its own */
	if (n < 2 || !second_ok(s[0], s[1]))
		return 1;
	size_t i = 2;
	while (i < len && i < n && (s[i] & 0xC0) == 0x80)
		i++;
	return i;
}

size_t tok_utf8_valid_prefix(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < n) {
		/* ASCII runs, eight bytes at a time */
		while (i + 8 <= n) {
			uint64_t w;
			__builtin_memcpy(&w, s + i, 8);
			if (w & 0x8080808080808080ull)
				break;
			i += 8;
		}
		if (i >= n)
			break;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t len = tok_utf8_seq_len(s + i, n - i);
		if (!len)
			return i;
		i += len;
	}
	return n;
}

void tok_utf8_sanitize(const char *str, size_t n, struct strbuf *out)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	sb_grow(out, n + 8);
	while (i < n) {
		size_t ok = tok_utf8_valid_prefix(str + i, n - i);
		sb_add(out, str + i, ok);
		i += ok;
		if (i >= n)
			break;
		i += tok_utf8_bad_len(s + i, n - i);
		sb_add(out, UTF8_REPLACEMENT, 3);
	}
}

size_t tok_utf8_encode(uint32_t cp, char out[4])
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xC0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xE0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (char)(0xF0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
	out[3] = (char)(0x80 | (cp & 0x3F));
	return 4;
}

size_t tok_utf8_incomplete_tail(const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;

	/* A cut sequence is a lead byte followed by 0..2 continuation
	 * bytes that are a valid start of the sequence. */
	for (size_t back = 1; back <= 3 && back <= n; back++) {
		const unsigned char *p = s + n - back;
		size_t len = lead_len(*p);
		if (len == 0 && (*p & 0xC0) == 0x80)
			continue;	/* continuation byte: look further back */
		if (len <= back)
			return 0;	/* ASCII, invalid, or complete */
		if (back >= 2 && !second_ok(p[0], p[1]))
			return 0;
		for (size_t i = 2; i < back; i++)
			if ((p[i] & 0xC0) != 0x80)
				return 0;
		return back;
	}
	return 0;
}
