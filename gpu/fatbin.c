/*
 * fatbin.c - the embedded kernels' arch list, and a reader of fatbin
 * headers (see fatbin.h).  With nvcc the blob itself comes from
 * fatbin_blob.S (the Makefile assembles it around nvcc's output).
 */
#include "gpu/fatbin.h"

#include <stdint.h>
#include <string.h>

#ifdef DYN_CUDA_ARCHS
const char cuda_fatbin_archs[] = DYN_CUDA_ARCHS;
#else
const char cuda_fatbin_archs[] = "";
const unsigned char cuda_fatbin[1];
const size_t cuda_fatbin_size;
#endif

static uint64_t le(const unsigned char *p, int bytes)
{
	uint64_t v = 0;

	for (int i = bytes - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/*
 * Layout (the CUDA toolkit's fatbinary format): a 16-byte header (magic
 * 0xBA55ED50, u16 version, u16 header size, u64 size of what follows),
 * then entries: u16 kind (1 PTX, 2 cubin), u16, u32 entry header size,
 * u64 payload size, ..., u32 sm arch at offset 28; the payload follows
 * the entry header.
 */
int cuda_fatbin_cubins(const unsigned char *blob, size_t size, int *sm, int cap)
{
	if (size < 16 || le(blob, 4) != 0xBA55ED50u)
		return -1;
	uint64_t hdr = le(blob + 6, 2), end = hdr + le(blob + 8, 8);
	int n = 0;

	if (end > size)
		return -1;
	for (uint64_t off = hdr; off + 32 <= end;) {
		uint64_t eh = le(blob + off + 4, 4), payload = le(blob + off + 8, 8);
		if (eh < 32 || off + eh + payload > end)
			return -1;
		if (le(blob + off, 2) == 2 && n < cap)
			sm[n] = (int)le(blob + off + 28, 4);
		n += le(blob + off, 2) == 2;
		off += eh + payload;
	}
	return n;
}
