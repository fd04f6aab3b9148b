/*
 * store_backend.h - internal interface between the generic store layer
 * (store.c) and its backends (store_file.c, store_sqlite.c, later etcd).
 * Not for use outside store/ (and the store's tests and fuzz target).
 *
 * The generic layer validates arguments (keys, values, TTLs, lease ids),
 * owns the event_base side (lease auto-renewal timers, the watch poll
 * timer, the snapshot/SYNCED/changes sequence of every watch, and the
 * re-snapshot after a compaction) and calls a backend through the vtable
 * below.  A backend only has to provide synchronous operations plus a
 * change feed ("every change after revision R"), so a push-based backend
 * (etcd's watch stream) can implement changes() by draining a queue that
 * its stream fills.
 *
 * Conventions for every op: return 0 or a negative errno-style code with
 * err_set() called; -ENOENT for a missing key or lease, -EEXIST from
 * put(create_only) on an existing key, -ESTALE from changes() when the
 * events after the cursor are gone (compacted): the caller re-snapshots.
 * reap() and changes() run on the loop's timer, so they must not wait on
 * another process: -EBUSY when the store is held right now; the loop
 * tries again at its next tick (and reports an outage if it lasts).
 * A backend instance belongs to one thread (that of its struct store).
 */
#ifndef DYN_STORE_BACKEND_H
#define DYN_STORE_BACKEND_H

#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

struct store_backend;		/* each backend defines its own */

/* One change from the feed.  Owned by the array returned by changes(). */
struct store_change {
	enum store_event_type type;	/* STORE_EV_PUT or STORE_EV_DELETE */
	char *key;
	char *value;		/* NUL-terminated; NULL/empty for deletes */
	size_t len;
	int64_t lease;
	int64_t rev;
};

struct store_backend_ops {
	const char *scheme;	/* "file", "sqlite", "etcd" */
	/* Optional: check the part of the URL after "scheme://" without
	 * opening anything; -EINVAL (a usage error) when it is malformed. */
	int (*check)(const char *path);
	int (*open)(const char *path, struct store_backend **out);
	void (*close)(struct store_backend *b);

	int (*put)(struct store_backend *b, const char *key, const void *val,
		   size_t len, int64_t lease, int create_only);
	int (*get)(struct store_backend *b, const char *key, struct store_kv *out);
	int (*del)(struct store_backend *b, const char *key);
	/* Sorted by key; *rev = the store revision the snapshot is at. */
	int (*list)(struct store_backend *b, const char *prefix,
		    struct store_kv **kvs, size_t *n, int64_t *rev);

	/* Optional: list() for a watch's re-snapshot on the loop, -EBUSY
	 * instead of waiting for another process. */
	int (*list_nb)(struct store_backend *b, const char *prefix,
		       struct store_kv **kvs, size_t *n, int64_t *rev);

	int (*lease_grant)(struct store_backend *b, int64_t ttl_ms, int64_t *lease);
	int (*lease_keepalive)(struct store_backend *b, int64_t lease);
	/* Optional, for the loop's renewals: a store a network round trip
	 * away starts renewing lease without waiting and returns the result
	 * of the previous renewal (0 before any); a store on disk renews it
	 * unless another process holds the store (-EBUSY). */
	int (*lease_keepalive_nb)(struct store_backend *b, int64_t lease);
	int (*lease_revoke)(struct store_backend *b, int64_t lease);
	/* The TTL the lease was granted with (for auto-renewal). */
	int (*lease_ttl)(struct store_backend *b, int64_t lease, int64_t *ttl_ms);
	/* Delete the keys of every expired lease (logging delete events). */
	int (*reap)(struct store_backend *b);
	/* Optional: how many times the storage behind the URL was opened
	 * anew (a replaced sqlite file); when it changes, the leases are
	 * renewed at once, so their owners learn they are gone and register
	 * again without waiting a renewal period. */
	unsigned (*generation)(struct store_backend *b);

	/* A change feed positioned after revision rev.  changes() returns
	 * (in *out, free with store_changes_free) every change with a
	 * revision > the cursor, in revision order, and advances the cursor;
	 * it may leave out keys not under prefix.  -ESTALE: the feed cannot
	 * continue from the cursor (compacted); close it and re-snapshot. */
	int (*cursor_open)(struct store_backend *b, const char *prefix,
			   int64_t rev, void **cursor);
	int (*changes)(struct store_backend *b, void *cursor,
		       struct store_change **out, size_t *n);
	void (*cursor_close)(struct store_backend *b, void *cursor);
};

extern const struct store_backend_ops store_file_ops;
extern const struct store_backend_ops store_sqlite_ops;
extern const struct store_backend_ops store_etcd_ops;

void store_changes_free(struct store_change *c, size_t n);
/* Append to a growable change array (*cap is its capacity). */
struct store_change *store_change_push(struct store_change **arr, size_t *n,
				       size_t *cap);

/* Helpers shared by the backends (store.c). */
int store_utf8_valid(const char *s, size_t len);
int store_kv_cmp(const void *a, const void *b);	/* qsort by key */
/* 63-bit random lease id, never 0. */
int64_t store_random_id(void);
/* Standard base64 with padding; decode is strict (length a multiple of
 * 4, padding only at the end) and returns 0 or -1. */
struct strbuf;
void store_b64_encode(struct strbuf *sb, const unsigned char *p, size_t len);
int store_b64_decode(const char *s, size_t len, struct strbuf *out);

/*
 * The file backend's record codec (store_file.c), exposed for the fuzz
 * target and the tests.  One line of text is one JSON object, one of:
 *   log header  {"log":"dyn-store","version":1,"base":R}
 *   log event   {"rev":R,"op":"put","key":K,"value":V|"value64":B,"lease":"HEX"}
 *               {"rev":R,"op":"del","key":K}
 *   key record  {"key":K,"value":V|"value64":B,"lease":"HEX","mod_revision":R}
 *   lease       {"lease":"HEX","ttl_ms":T,"expires_ms":E}
 * store_file_parse_record() accepts any bytes: it returns 0 and fills rec,
 * or -EINVAL with err_msg() set; it never reads outside buf[0..len).
 */
enum store_file_rec_kind {
	STORE_REC_HEADER,
	STORE_REC_PUT,
	STORE_REC_DEL,
	STORE_REC_KEY,
	STORE_REC_LEASE,
};

struct store_file_rec {
	enum store_file_rec_kind kind;
	char *key;		/* PUT, DEL, KEY */
	char *value;		/* PUT, KEY: NUL-terminated, len excludes it */
	size_t len;
	int64_t lease;		/* PUT, KEY (0 = none), LEASE */
	int64_t rev;		/* PUT, DEL: the event's; KEY: mod_revision; HEADER: base */
	int64_t ttl_ms, expires_ms;	/* LEASE */
};

int store_file_parse_record(const char *buf, size_t len, struct store_file_rec *rec);
void store_file_rec_free(struct store_file_rec *rec);
/* Append rec as one line (the inverse of the parser). */
void store_file_format_record(struct strbuf *sb, const struct store_file_rec *rec);
/* Encode key as a file name (NUL-terminated, at most 255 bytes, no '/',
 * never starting with '.').  Returns 0 or -EINVAL. */
int store_file_key_name(const char *key, char *name, size_t size);
/* The key a plain (not hashed: no leading '~') file name encodes, into
 * key (size bytes).  Returns 0 or -EINVAL. */
int store_file_name_key(const char *name, char *key, size_t size);
/* The lease of a key record read from its last n bytes, without parsing
 * the value before them: 1 and *lease when the tail is the ending that
 * the store writes for a leased record, 0 when it is not (no lease, or
 * not the store's layout: parse the whole record). */
int store_file_record_lease(const char *tail, size_t n, int64_t *lease);

/* Test hooks: the log segment size that triggers rotation (file) and the
 * number of events kept (sqlite).  Tests shrink them to force compaction. */
extern size_t store_file_log_max;
extern int64_t store_sqlite_keep_events;

#endif
