/*
 * fuzz_kvb_header.c - libFuzzer target for the KV tiers' block file
 * header parser (core/kv/tiers.h).  Run with `make fuzz`; seeds in
 * fuzz_kvb_header.seed/.
 *
 * Checked for every input, besides the sanitizers' memory checks: the
 * parse either fails with -EINVAL or succeeds; a header that parses
 * re-encodes to exactly its first KVB_HEADER_BYTES bytes (one form).
 */
#include "core/kv/tiers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvb_header h;
	unsigned char again[KVB_HEADER_BYTES];
	int rc = kvb_header_parse(data, size, &h);

	if (rc < 0) {
		if (rc != -EINVAL)
			abort();
		return 0;
	}
	kvb_header_encode(&h, again);
	if (memcmp(again, data, KVB_HEADER_BYTES)) {
		fprintf(stderr, "a parsed header re-encodes differently\n");
		abort();
	}
	return 0;
}
