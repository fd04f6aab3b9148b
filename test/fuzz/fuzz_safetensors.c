/*
 * fuzz_safetensors.c - libFuzzer target for the safetensors header parser
 * (core/model/safetensors.c): any byte string is parsed as a whole file
 * image and as a bare header; whatever is accepted must describe tensors
 * that lie inside the image, which this target reads end to end.
 *
 *   make fuzz FUZZ_SECONDS=20     (seeds: test/fuzz/fuzz_safetensors.seed/)
 */
#include "core/model/safetensors.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const struct st_file *f, const uint8_t *base, size_t size)
{
	volatile uint8_t sink = 0;

	for (size_t i = 0; i < f->ntensors; i++) {
		const struct st_tensor *t = &f->tensors[i];
		if (!t->nbytes)
			continue;
		const uint8_t *p = t->data;
		if (base && (p < base || p + t->nbytes > base + size))
			abort();	/* accepted a tensor outside the file */
		if (base) {
			sink ^= p[0];
			sink ^= p[t->nbytes - 1];
		}
	}
	(void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file f;

	if (st_parse_image(data, size, &f) == 0) {
		touch(&f, data, size);
		st_file_release(&f);
	}
	/* The same bytes as a header, with a data section of 4 KiB. */
	if (st_parse_header((const char *)data, size, 8 + (uint64_t)size + 4096, &f) == 0) {
		for (size_t i = 0; i < f.ntensors; i++)
			if (f.tensors[i].offset + f.tensors[i].nbytes > 4096)
				abort();
		st_file_release(&f);
	}
	return 0;
}
