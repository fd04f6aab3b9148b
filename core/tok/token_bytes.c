/*
 * token_bytes.c - the bytes a token adds to the text (tok.h).
 */
#include "core/strbuf.h"
#include "core/tok/tok.h"
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"

static int has_bytelevel(const struct dec *d)
{
	if (!d)
		return 0;
	if (d->type == DEC_BYTELEVEL)
		return 1;
	for (size_t i = 0; i < d->nkids; i++)
		if (has_bytelevel(d->kids[i]))
			return 1;
	return 0;
}

int tok_token_bytes(const struct tok *tok, int32_t id, struct strbuf *out)
{
	size_t n;
	const char *s;

	sb_reset(out);
	if (id < 0 || !(s = tok_str_of(tok, (uint32_t)id, &n)))
		return -1;
	if (tok->id_flags[id] & TF_SPECIAL)
		return -1;
	if (tok->id_flags[id] & TF_ADDED) {
		sb_add(out, s, n);
		return 0;
	}
	if (has_bytelevel(tok->dec)) {
		for (size_t i = 0; i < n;) {
			uint32_t cp;
			size_t l = tok_utf8_decode((const unsigned char *)s + i, &cp);
			int b = tok_char_byte(cp);
			if (b >= 0)
				sb_addch(out, b);
			else
				sb_add(out, s + i, l);
			i += l;
		}
		return 0;
	}
	int b = tok_dec_fallback_byte(s, n);
	if (b >= 0) {
		sb_addch(out, b);
		return 0;
	}
	for (size_t i = 0; i < n; i++) {	/* U+2581 is a space */
		if (i + 2 < n && (uint8_t)s[i] == 0xe2 && (uint8_t)s[i + 1] == 0x96 &&
		    (uint8_t)s[i + 2] == 0x81) {
			sb_addch(out, ' ');
			i += 2;
		} else {
			sb_addch(out, s[i]);
		}
	}
	return 0;
}
