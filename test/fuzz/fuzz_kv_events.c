/*
 * fuzz_kv_events.c - libFuzzer target for the KV event decoder
 * (core/proto/kv_events.h).  Run with `make fuzz`; seeds in
 * fuzz_kv_events.seed/.
 *
 * Inputs are either form (JSON, or binary: a leading NUL and the magic;
 * the seeds hold both).  Checked for every input, besides the
 * sanitizers' memory checks:
 *  - decoding either fails with -EINVAL and leaves an empty message, or
 *    succeeds;
 *  - a decoded message re-encodes to JSON that decodes to the same
 *    message and re-encodes to the same bytes (one canonical form);
 *  - it re-encodes to the binary form, which decodes to the same
 *    message; a binary input that decodes re-encodes to exactly its own
 *    bytes (the binary form is canonical too);
 *  - applying it to an index through the gap detector never breaks the
 *    index's counts (pairs >= blocks, the worker's blocks <= pairs).
 */
#include "core/router/indexer.h"
#include "core/proto/kv_events.h"
#include "core/router/kv_sync.h"
#include "core/strbuf.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_kv_events: invariant broken: %s\n", what);
		abort();
	}
}

static int same_event(const struct kv_event *a, const struct kv_event *b, int dump)
{
	if (a->kind != b->kind || a->n != b->n || (!dump && a->event_id != b->event_id))
		return 0;
	if (a->kind == KV_EV_STORED) {
		if (a->has_parent != b->has_parent || (a->has_parent && a->parent_hash != b->parent_hash))
			return 0;
		for (size_t i = 0; i < a->n; i++)
			if (a->blocks[i].seq_hash != b->blocks[i].seq_hash ||
			    a->blocks[i].local_hash != b->blocks[i].local_hash)
				return 0;
	} else if (a->kind == KV_EV_REMOVED) {
		if (a->n && memcmp(a->hashes, b->hashes, a->n * sizeof(*a->hashes)))
			return 0;
	}
	return 1;
}

static void check_same(const struct kv_msg *m, const struct kv_msg *m2)
{
	check(m2->n_events == m->n_events && m2->is_dump == m->is_dump &&
	      m2->has_load == m->has_load && m2->dump_last_id == m->dump_last_id, "same message");
	if (m->has_load)
		check(!memcmp(&m->load, &m2->load, sizeof(m->load)), "same load");
	for (size_t i = 0; i < m->n_events; i++)
		check(same_event(&m->events[i], &m2->events[i], m->is_dump), "same events");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv_msg m, m2;
	struct strbuf a = STRBUF_INIT, b = STRBUF_INIT;
	int rc = kv_msg_decode((const char *)data, size, &m);

	if (rc < 0) {
		check(rc == -EINVAL, "error code");
		check(!m.events && !m.n_events, "empty after an error");
		return 0;
	}
	kv_msg_encode(&m, KV_WIRE_JSON, &a);
	check(kv_msg_decode(a.buf, a.len, &m2) == 0, "re-encoded message decodes");
	check_same(&m, &m2);
	kv_msg_encode(&m2, KV_WIRE_JSON, &b);
	check(a.len == b.len && !memcmp(a.buf, b.buf, a.len), "one canonical encoding");
	kv_msg_release(&m2);

	sb_reset(&a);
	kv_msg_encode(&m, KV_WIRE_BINARY, &a);
	check(kv_msg_is_binary(a.buf, a.len), "binary magic");
	check(kv_msg_decode(a.buf, a.len, &m2) == 0, "binary re-encoding decodes");
	check_same(&m, &m2);
	if (kv_msg_is_binary(data, size))
		check(a.len == size && !memcmp(a.buf, data, size), "binary input is canonical");

	struct indexer *ix = indexer_new();
	struct kv_sync s;
	kv_sync_init(&s, 1);
	kv_sync_apply(&s, ix, &m);
	check(indexer_pairs(ix) >= indexer_blocks(ix), "pairs >= blocks");
	check(indexer_worker_blocks(ix, 1) == indexer_pairs(ix), "one worker's blocks");
	indexer_free(ix);
	kv_msg_release(&m);
	kv_msg_release(&m2);
	sb_release(&a);
	sb_release(&b);
	return 0;
}
