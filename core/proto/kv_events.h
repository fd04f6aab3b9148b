/*
 * kv_events.h - the wire format of KV events and load reports between
 * workers and routers (DESIGN.md "KV events").  The worker side that
 * numbers and batches them is core/serve/kv_publisher.h; the router side
 * that applies them to its prefix index is core/router/kv_sync.h.
 *
 * Wire format: one message per request-plane frame on the event
 * subscription, in one of two forms that kv_msg_decode() tells apart by
 * the first byte (a NUL: binary; anything else: JSON):
 *
 * JSON form (KV_WIRE_JSON: what a worker sends a subscriber that does not
 * ask for binary, e.g. `dyn rpc call`).  Hashes and ids are unsigned 64-bit
 * integers written as JSON numbers (exact: the decoder never goes through
 * double).
 *
 *   {"events":[
 *      {"event_id":N,"stored":{"medium":M,"parent_hash":H|null,
 *                              "blocks":[{"seq_hash":H,"local_hash":H},..]}},
 *      {"event_id":N,"removed":{"medium":M,"seq_hashes":[H,..]}},
 *      {"event_id":N,"cleared":{}}],
 *    "load":{"active_blocks":A,"total_blocks":T,"waiting":W,
 *            "queued_prefill_tokens":Q}}
 *
 * "medium" (optional; absent: "G1") names the KV tier (core/kv/tiers.h)
 * the blocks entered or left: "G1" the engine's pool, "G2" host memory,
 * "G3" local disk, "G4" the shared directory.  A block evicted from G1
 * to G2 is a removed event (G1) and a stored event with medium "G2"; the
 * tiers are independent sets (a block onboarded back into G1 stays in
 * G2).  Stored events below G1 have no parent and local hashes 0.
 *
 * Both members are optional.  A full dump (the answer to a resync
 * request) is {"dump":{"last_event_id":N,"stored":[STORED,..]}} where each
 * STORED is the object under "stored" above: the worker's whole cache as
 * of event N.  Unknown members are ignored (forward compatibility);
 * anything else malformed is an error (-EINVAL, err_msg() says what),
 * never a crash.
 *
 * Binary form, version 1 (KV_WIRE_BINARY: what routers ask for with a
 * request body {"wire":"binary"}: 17 bytes a block against 72 in JSON,
 * and 30-40x faster to decode; test/bench/router.sh measures both).  Little-endian; H is a u64 (8
 * bytes), V an unsigned LEB128 varint (7 bits a byte, low group first, at
 * most 10 bytes, minimal: no redundant final zero group):
 *
 *   offset 0  4 bytes  magic 00 4B 56 42 ("\0KVB")
 *          4  1 byte   version, 1 (a reader rejects versions it lacks)
 *          5  1 byte   flags: 0x01 load follows, 0x02 a dump; others 0
 *   [load]  4 x i64    active_blocks, total_blocks, waiting,
 *                      queued_prefill_tokens (two's complement)
 *   [dump]  H          last_event_id
 *           V          number of events (a dump: of stored groups)
 *   then each event:
 *           1 byte     tag: kind in bits 0-1 (1 stored, 2 removed,
 *                      3 cleared), bits 2-3 the medium less one (0 G1
 *                      .. 3 G4; stored and removed only: a version 1
 *                      reader written before tiers rejects them, and a
 *                      worker without tiers never sets them), 0x10 = a
 *                      parent hash follows (stored only); other bits 0
 *           V          event_id (absent in a dump's groups)
 *   stored: [H parent_hash] V n, then n x (H seq_hash, H local_hash)
 *   removed: V n, then n x H seq_hash
 *   cleared: nothing more
 *
 * The frame carrying it should have FRAME_FLAG_BINARY (net/frame.h).
 * A decoder needs nothing else to tell the forms apart; a change of
 * layout takes a new version number.  The message must end exactly after
 * its last event.  The decoder trusts
 * no count: each is checked against the bytes left before anything is
 * allocated, so input that is truncated, lies about a count or carries
 * trailing bytes is -EINVAL with the byte offset in err_msg(), never an
 * over-read; at most KV_MSG_MAX_EVENTS events a message.
 *
 * Event ids: per worker, starting at 1, +1 per event; a router that sees
 * id > last + 1 has missed events and must resync from a dump; ids <= last
 * are duplicates and are skipped.
 *
 * Thread-safety: the codec is pure.
 */
#ifndef DYN_PROTO_KV_EVENTS_H
#define DYN_PROTO_KV_EVENTS_H

#include "core/proto/block_hash.h"

#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum kv_event_kind { KV_EV_STORED = 1, KV_EV_REMOVED, KV_EV_CLEARED };

struct kv_event {
	uint64_t event_id;
	enum kv_event_kind kind;
	int has_parent;			/* stored */
	uint64_t parent_hash;		/* stored */
	struct block_hash_pair *blocks;	/* stored: n of them */
	uint64_t *hashes;		/* removed: n of them */
	size_t n;
	int medium;			/* stored, removed: 1 G1 (0 reads as 1) .. 4 G4 */
};

#define KV_MEDIUM_MAX 4

/* A worker's load, as the cost function of selector.h counts it: the
 * blocks of requests that are decoding (a prefilling request counts in
 * queued_prefill_tokens only), all blocks, requests waiting, and prompt
 * tokens still to compute. */
struct kv_load {
	int64_t active_blocks, total_blocks, waiting, queued_prefill_tokens;
};

struct kv_msg {
	struct kv_event *events;
	size_t n_events;
	int has_load;
	struct kv_load load;
	int is_dump;			/* events are the dump's stored groups */
	uint64_t dump_last_id;
	void *mem;			/* decoder's: one block holding events and
					 * their arrays (NULL: each is malloc'd) */
};

#define KV_JSON_MAX_DEPTH 32

/* The binary form's constants (see above). */
#define KV_BIN_MAGIC 0x00, 0x4b, 0x56, 0x42
#define KV_BIN_VERSION 1
#define KV_BIN_HEADER 6
#define KV_BIN_F_LOAD 0x01
#define KV_BIN_F_DUMP 0x02
#define KV_BIN_KIND_MASK 0x03
#define KV_BIN_HAS_PARENT 0x10
#define KV_BIN_MEDIUM_MASK 0x0c
#define KV_BIN_MEDIUM_SHIFT 2
#define KV_MSG_MAX_EVENTS (1u << 22)

/* Which form an encoder writes. */
enum kv_wire { KV_WIRE_BINARY = 0, KV_WIRE_JSON = 1 };

void kv_msg_release(struct kv_msg *m);
/* Parse one message, either form.  -EINVAL (err_msg) on malformed input;
 * *out is then empty. */
int kv_msg_decode(const char *data, size_t len, struct kv_msg *out);
/* Does data start as a binary message (its magic)?  (A frame carrying
 * one should have FRAME_FLAG_BINARY set.) */
int kv_msg_is_binary(const void *data, size_t len);
/* Append m in the form given (the dump form when m->is_dump). */
void kv_msg_encode(const struct kv_msg *m, enum kv_wire wire, struct strbuf *out);
/*
 * The form a subscription or dump request asks for: its body's "wire"
 * member, "binary" or "json" (e.g. {"wire":"binary"}); dflt when the body
 * is empty, not JSON, or has no such member.  Lets a worker answer old
 * tools (`dyn rpc call` sends {}) in JSON and new routers in binary.
 */
enum kv_wire kv_wire_requested(const void *req, size_t len, enum kv_wire dflt);

#endif
