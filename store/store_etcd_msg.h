/*
 * store_etcd_msg.h - the etcd v3 JSON gateway's replies and watch stream
 * as the etcd backend (store_etcd.c) reads them, kept apart from the
 * network code so that the fuzz target and the tests can feed them any
 * bytes.  Not for use outside store/.
 *
 * Keys and values arrive base64-encoded, int64 fields as JSON strings.
 * Revisions here are dyn's: etcd's less ETCD_REV_BASE (etcd counts an
 * empty store as revision 1, dyn's backends as 0).
 */
#ifndef DYN_STORE_ETCD_MSG_H
#define DYN_STORE_ETCD_MSG_H

#include "store/store_backend.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define ETCD_REV_BASE 1

/* A watch stream line longer than this is refused (the stream restarts):
 * a peer that never sends a newline must not grow memory without end. */
#define ETCD_WATCH_LINE_MAX (16u << 20)

struct strbuf;

/* An int64 field sent as a string (or a number); 0 if absent. */
int64_t etcd_jint(const cJSON *o, const char *name);

/* The kvs of a kv/range reply (sorted by key as etcd sends them) and,
 * if rev, the revision of its header.  -EIO with err_set() when a kv is
 * malformed (bad base64, empty key, a NUL in the key). */
int etcd_parse_kvs(const cJSON *reply, struct store_kv **kvs, size_t *n, int64_t *rev);

/* A gateway error reply as an errno-style code with err_set(): -ENOENT
 * (not found), -ESTALE (compacted), -EACCES (authentication), else -EIO. */
int etcd_reply_error(const cJSON *j, long status);

/* What a watch stream has said so far.  The backend guards it with its
 * cursor's lock; the changes queue is drained by the store's loop. */
struct etcd_watch {
	struct store_change *q;	/* events not yet taken */
	size_t n, cap;
	int64_t next_rev;	/* where a reconnect resumes */
	int stale;		/* compacted past next_rev: re-list */
	int down;		/* not connected; msg says why */
	int reauth;		/* refused, likely for the token */
	int restart;		/* end this stream and open another */
	char msg[256];
};

/* Apply one message (one line of the stream). */
void etcd_watch_apply(struct etcd_watch *w, const char *p, size_t len);

/*
 * Feed bytes of the stream: every complete line of line+p is applied and
 * what follows the last newline stays in line.  A partial line longer
 * than max is dropped and the stream marked for a restart (w->restart,
 * w->msg): -E2BIG; else 0.
 */
int etcd_watch_feed(struct etcd_watch *w, struct strbuf *line, const char *p, size_t len,
		    size_t max);

#endif
