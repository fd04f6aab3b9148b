/*
 * bytelevel.c - GPT-2's byte <-> character mapping used by byte-level BPE.
 *
 * Printable bytes (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) stand for themselves;
 * the other 68 bytes map, in byte order, to U+0100.. U+0143.  So a space
 * is "Ġ" (U+0120) and a newline "Ċ" (U+010A).
 */
#include "core/tok/tok_int.h"
#include "core/tok/utf8.h"

static uint32_t byte_cp(unsigned b)
{
	if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE)
		return b;
	if (b <= 0x20)
		return 256 + b;
	if (b >= 0x7F && b <= 0xA0)
		return 256 + 33 + (b - 0x7F);
	return 256 + 67;	/* 0xAD */
}

/* Filled by a constructor: a constant table without 256 hand-written rows. */
char tok_byte_utf8_tab[256][3];
uint8_t tok_byte_utf8_len_tab[256];

__attribute__((constructor)) static void bytelevel_init(void)
{
	for (unsigned b = 0; b < 256; b++) {
		char buf[4];
		size_t n = tok_utf8_encode(byte_cp(b), buf);
		tok_byte_utf8_tab[b][0] = buf[0];
		tok_byte_utf8_tab[b][1] = n > 1 ? buf[1] : 0;
		tok_byte_utf8_len_tab[b] = (uint8_t)n;
	}
}

int tok_char_byte(uint32_t cp)
{
	if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) ||
	    (cp >= 0xAE && cp <= 0xFF))
		return (int)cp;
	if (cp < 256 || cp > 256 + 67)
		return -1;
	unsigned n = cp - 256;
	if (n <= 32)
		return (int)n;
	if (n <= 66)
		return (int)(0x7F + n - 33);
	return 0xAD;
}
