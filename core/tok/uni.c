/*
 * uni.c - Unicode character classes with the meanings Rust gives them
 * (HF tokenizers is written in Rust), from utf8proc's tables.
 *
 * utf8proc 2.8's tables are Unicode 15.0; Rust's (so HF's Lowercase
 * normalizer) 16.0: the capitals added in 16.0 are lowercased from
 * unicode_ranges.h (generated).  The categories here keep utf8proc's 15.0.
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"
#define TOK_UNI_WANT_LOWER
#include "core/tok/unicode_ranges.h"

#include <utf8proc.h>

int tok_uni_is_whitespace(uint32_t cp)
{
	/* The White_Space property: stable since Unicode 6.3. */
	if (cp <= 0x20)
		return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
	if (cp < 0x85)
		return 0;
	switch (cp) {
	case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
	case 0x202F: case 0x205F: case 0x3000:
		return 1;
	}
	return cp >= 0x2000 && cp <= 0x200A;
}

static int category(uint32_t cp)
{
	return utf8proc_category((utf8proc_int32_t)cp);
}

int tok_uni_is_numeric(uint32_t cp)
{
	if (cp < 0x80)
		return cp >= '0' && cp <= '9';
	int c = category(cp);
	return c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
	       c == UTF8PROC_CATEGORY_NO;
}

int tok_uni_is_punct(uint32_t cp)
{
	if (cp < 0x80)
		return (cp >= 0x21 && cp <= 0x2F) || (cp >= 0x3A && cp <= 0x40) ||
		       (cp >= 0x5B && cp <= 0x60) || (cp >= 0x7B && cp <= 0x7E);
	int c = category(cp);
	return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

int tok_uni_is_word(uint32_t cp)
{
	/* The regex crate's \w: Alphabetic, M, Nd, Pc, Join_Control.
	 * Alphabetic is approximated by L, Nl and the Other_Alphabetic
	 * symbols (circled letters); its marks are inside M anyway. */
	if (cp < 0x80)
		return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') ||
		       (cp >= 'A' && cp <= 'Z') || cp == '_';
	if (cp == 0x200C || cp == 0x200D)
		return 1;
	if ((cp >= 0x24B6 && cp <= 0x24E9) || (cp >= 0x1F130 && cp <= 0x1F149) ||
	    (cp >= 0x1F150 && cp <= 0x1F169) || (cp >= 0x1F170 && cp <= 0x1F189))
		return 1;
	switch (category(cp)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
	case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_NL:
	case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC:
	case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
	case UTF8PROC_CATEGORY_PC:
		return 1;
	}
	return 0;
}

int tok_uni_is_other(uint32_t cp)
{
	/* (Cn not included: the unicode_categories crate HF uses has no
	 * table for unassigned code points) */
	int c = category(cp);
	return c >= UTF8PROC_CATEGORY_CC && c <= UTF8PROC_CATEGORY_CO;
}

int tok_uni_is_mark_nonspacing(uint32_t cp)
{
	return category(cp) == UTF8PROC_CATEGORY_MN;
}

void tok_uni_lower(uint32_t cp, struct strbuf *out)
{
	char buf[4];
	if (cp < 0x80) {
		sb_addch(out, cp >= 'A' && cp <= 'Z' ? (int)(cp + 32) : (int)cp);
		return;
	}
	if (cp == 0x130) {	/* the one unconditional multi-char lowercase */
		sb_add(out, "i\xCC\x87", 3);
		return;
	}
	size_t lo = 0, hi = sizeof(tok_uni_lower_extra) / sizeof(tok_uni_lower_extra[0]);
	while (lo < hi) {	/* the newer capitals first */
		size_t mid = (lo + hi) / 2;
		if (tok_uni_lower_extra[mid][0] == cp) {
			sb_add(out, buf, tok_utf8_encode(tok_uni_lower_extra[mid][1], buf));
			return;
		}
		if (tok_uni_lower_extra[mid][0] < cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	uint32_t lc = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
	sb_add(out, buf, tok_utf8_encode(lc, buf));
}
