/*
 * store_sqlite.c - the sqlite://PATH backend of the discovery store: one
 * SQLite database file (WAL mode) shared by the processes of one machine.
 *
 *   kv(key TEXT PRIMARY KEY, value BLOB, lease INTEGER, mod_rev INTEGER)
 *   leases(id INTEGER PRIMARY KEY, ttl_ms INTEGER, expires_ms INTEGER)
 *   events(rev INTEGER PRIMARY KEY AUTOINCREMENT, type INTEGER, key TEXT,
 *          value BLOB, lease INTEGER)     type 0 = put, 1 = delete
 *   meta(name TEXT PRIMARY KEY, value INTEGER)   'compacted': every event
 *          with rev <= value has been pruned
 *
 * Every change is one IMMEDIATE transaction that first reaps expired
 * leases, then inserts an event (its AUTOINCREMENT rowid is the new store
 * revision) and updates kv.  The store revision is events' entry in
 * sqlite_sequence, so it survives pruning.  Watchers poll events with
 * rev > cursor; events older than the last store_sqlite_keep_events are
 * pruned on write, and a cursor behind the pruned ones gets -ESTALE.
 *
 * A file removed or replaced while open (an operator putting a corrupt
 * store aside) is noticed before each operation: the file now at the
 * path is opened (never created: a new process makes a new store, as
 * with the file backend), cursors get -ESTALE and resync, and leases
 * unknown there are granted again by store.c.  Until then every
 * operation fails and the processes serve on with what they know.
 */
#include "store/store_backend.h"
#include "core/fsutil.h"
#include "core/err.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 10000
/* The event loop's periodic writes (lease renewal, reaping) wait this
 * long only: while another process holds the write lock longer, they fail
 * and are retried at the next tick instead of stalling the loop. */
#define LOOP_BUSY_TIMEOUT_MS 200
#define SCHEMA_VERSION 1

int64_t store_sqlite_keep_events = 10000;

struct store_backend {
	sqlite3 *db;			/* NULL after a failed reopen */
	char *path;
	dev_t dev;			/* the file open */
	ino_t ino;
	unsigned gen;			/* files opened so far */
};

struct scursor {
	char *prefix;
	int64_t rev;
	unsigned gen;			/* the file its rev belongs to */
};

static int db_err(struct store_backend *b, int rc, const char *what)
{
	int code = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED ? -EBUSY :
		   (rc & 0xff) == SQLITE_NOMEM ? -ENOMEM : -EIO;
	return err_set(code, "%s: %s: %s", b->path, what,
		       b->db ? sqlite3_errmsg(b->db) : sqlite3_errstr(rc));
}

static int exec(struct store_backend *b, const char *sql)
{
	int rc = sqlite3_exec(b->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_err(b, rc, sql);
}

/*
 * Prepare sql and bind its parameters, described by fmt: 'i' int64_t,
 * 't' const char * (text), 'b' const void *, size_t (blob).
 */
static int prep(struct store_backend *b, sqlite3_stmt **st, const char *sql,
		const char *fmt, ...)
{
	va_list ap;
	int rc = sqlite3_prepare_v2(b->db, sql, -1, st, NULL);
	if (rc != SQLITE_OK) {
		*st = NULL;
		return db_err(b, rc, "prepare");
	}
	int nparams = sqlite3_bind_parameter_count(*st);
	va_start(ap, fmt);
	for (int i = 1; fmt && *fmt && i <= nparams && rc == SQLITE_OK; fmt++, i++) {
		switch (*fmt) {
		case 'i':
			rc = sqlite3_bind_int64(*st, i, va_arg(ap, int64_t));
			break;
		case 't':
			rc = sqlite3_bind_text(*st, i, va_arg(ap, const char *), -1,
					       SQLITE_TRANSIENT);
			break;
		case 'b': {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			rc = sqlite3_bind_blob64(*st, i, n ? p : "", n, SQLITE_TRANSIENT);
			break;
		}
		}
	}
	va_end(ap);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(*st);
		*st = NULL;
		return db_err(b, rc, "bind");
	}
	return 0;
}

/* Run a statement that returns no rows (or ignore them). */
static int run(struct store_backend *b, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc = sqlite3_prepare_v2(b->db, sql, -1, &st, NULL);
	if (rc != SQLITE_OK)
		return db_err(b, rc, "prepare");
	int nparams = sqlite3_bind_parameter_count(st);
	va_start(ap, fmt);
	for (int i = 1; fmt && *fmt && i <= nparams && rc == SQLITE_OK; fmt++, i++) {
		if (*fmt == 'i') {
			rc = sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		} else if (*fmt == 't') {
			rc = sqlite3_bind_text(st, i, va_arg(ap, const char *), -1,
					       SQLITE_TRANSIENT);
		} else {
			const void *p = va_arg(ap, const void *);
			size_t n = va_arg(ap, size_t);
			rc = sqlite3_bind_blob64(st, i, n ? p : "", n, SQLITE_TRANSIENT);
		}
	}
	va_end(ap);
	if (rc == SQLITE_OK) {
		do
			rc = sqlite3_step(st);
		while (rc == SQLITE_ROW);
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE || rc == SQLITE_OK ? 0 : db_err(b, rc, "step");
}

/* Step a prepared query: 1 = row, 0 = done, < 0 error. */
static int step(struct store_backend *b, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return db_err(b, rc, "step");
}

static char *col_text(sqlite3_stmt *st, int i)
{
	const unsigned char *t = sqlite3_column_text(st, i);
	int n = sqlite3_column_bytes(st, i);
	return xstrndup(t ? (const char *)t : "", (size_t)n);
}

static char *col_blob(sqlite3_stmt *st, int i, size_t *len)
{
	const void *p = sqlite3_column_blob(st, i);
	int n = sqlite3_column_bytes(st, i);
	char *v = xmalloc((size_t)n + 1);
	if (n > 0 && p)
		memcpy(v, p, (size_t)n);
	else
		n = 0;
	v[n] = '\0';
	*len = (size_t)n;
	return v;
}

/* One-row integer query; *out untouched (and 0 returned) if no row. */
static int query_int(struct store_backend *b, int64_t *out, int *found,
		     const char *sql, int64_t arg)
{
	sqlite3_stmt *st;
	int rc = prep(b, &st, sql, "i", arg);
	if (rc < 0)
		return rc;
	rc = step(b, st);
	if (found)
		*found = rc == 1;
	if (rc == 1)
		*out = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc < 0 ? rc : 0;
}

static int head_rev(struct store_backend *b, int64_t *rev)
{
	*rev = 0;
	return query_int(b, rev, NULL,
			 "SELECT seq FROM sqlite_sequence WHERE name = 'events'", 0);
}

/* ------------------------------------------------------------ changes */

static int log_event(struct store_backend *b, int del, const char *key,
		     const void *val, size_t len, int64_t lease, int64_t *rev)
{
	int rc = run(b, "INSERT INTO events(type, key, value, lease) VALUES(?1, ?2, ?3, ?4)",
		     "itbi", (int64_t)del, key, val ? val : "", del ? (size_t)0 : len,
		     del ? (int64_t)0 : lease);
	if (rc == 0)
		*rev = sqlite3_last_insert_rowid(b->db);
	return rc;
}

static int del_key(struct store_backend *b, const char *key)
{
	int64_t rev;
	int rc = log_event(b, 1, key, NULL, 0, 0, &rev);
	if (rc == 0)
		rc = run(b, "DELETE FROM kv WHERE key = ?1", "t", key);
	return rc;
}

/* Delete a lease and its keys (in key order).  Inside a transaction. */
static int drop_lease(struct store_backend *b, int64_t lease)
{
	sqlite3_stmt *st;
	char **keys = NULL;
	size_t n = 0;
	int rc = prep(b, &st, "SELECT key FROM kv WHERE lease = ?1 ORDER BY key", "i", lease);
	if (rc < 0)
		return rc;
	while ((rc = step(b, st)) == 1) {
		keys = xrealloc(keys, (n + 1) * sizeof(*keys));
		keys[n++] = col_text(st, 0);
	}
	sqlite3_finalize(st);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0)
			rc = del_key(b, keys[i]);
		free(keys[i]);
	}
	free(keys);
	if (rc == 0)
		rc = run(b, "DELETE FROM leases WHERE id = ?1", "i", lease);
	return rc;
}

static int reap_in_tx(struct store_backend *b)
{
	sqlite3_stmt *st;
	int64_t *ids = NULL;
	size_t n = 0;
	int rc = prep(b, &st, "SELECT id FROM leases WHERE expires_ms <= ?1", "i", wall_ms());
	if (rc < 0)
		return rc;
	while ((rc = step(b, st)) == 1) {
		ids = xrealloc(ids, (n + 1) * sizeof(*ids));
		ids[n++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (n)
		LOG_DEBUG("store", "%s: reaping %zu expired lease(s)", b->path, n);
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = drop_lease(b, ids[i]);
	free(ids);
	return rc;
}

/* BEGIN IMMEDIATE (the busy timeout waits for other writers), then reap. */
static int begin_write(struct store_backend *b)
{
	int rc = exec(b, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	rc = reap_in_tx(b);
	if (rc < 0)
		exec(b, "ROLLBACK");
	return rc;
}

/* Commit (rc == 0) or roll back (rc < 0, message kept); returns rc. */
static int finish(struct store_backend *b, int rc)
{
	if (rc == 0)
		return exec(b, "COMMIT");
	if (!sqlite3_get_autocommit(b->db))
		sqlite3_exec(b->db, "ROLLBACK", NULL, NULL, NULL);	/* keeps err_msg() */
	return rc;
}

/* Reap from readers too, but only take the write lock when needed. */
static int reap_if_needed(struct store_backend *b)
{
	int64_t one = 0;
	int found = 0;
	int rc = query_int(b, &one, &found,
			   "SELECT 1 FROM leases WHERE expires_ms <= ?1 LIMIT 1", wall_ms());
	if (rc < 0 || !found)
		return rc;
	rc = begin_write(b);
	if (rc < 0)
		return rc;
	return finish(b, 0);
}

static int prune(struct store_backend *b, int64_t head)
{
	int64_t upto = head - store_sqlite_keep_events;
	if (upto <= 0)
		return 0;
	int rc = run(b, "DELETE FROM events WHERE rev <= ?1", "i", upto);
	if (rc == 0 && sqlite3_changes(b->db) > 0)
		rc = run(b, "UPDATE meta SET value = ?1 WHERE name = 'compacted' AND value < ?1",
			 "i", upto);
	return rc;
}

/* ---------------------------------------------------------- open/close */

static void sqlite_close(struct store_backend *b)
{
	if (!b)
		return;
	if (b->db)
		sqlite3_close_v2(b->db);
	free(b->path);
	free(b);
}

static const char schema[] =
	"CREATE TABLE IF NOT EXISTS kv(key TEXT PRIMARY KEY, value BLOB NOT NULL,"
	" lease INTEGER NOT NULL DEFAULT 0, mod_rev INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS kv_lease ON kv(lease) WHERE lease != 0;"
	"CREATE TABLE IF NOT EXISTS leases(id INTEGER PRIMARY KEY,"
	" ttl_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS leases_expiry ON leases(expires_ms);"
	"CREATE TABLE IF NOT EXISTS events(rev INTEGER PRIMARY KEY AUTOINCREMENT,"
	" type INTEGER NOT NULL, key TEXT NOT NULL, value BLOB, lease INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE IF NOT EXISTS meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
	"INSERT OR IGNORE INTO meta(name, value) VALUES('compacted', 0);";

static int sqlite_open_locked(struct store_backend *b, const char *path, int create);

/* Open (create: or make) the database at b->path and note which file it
 * is. */
static int open_db(struct store_backend *b, int create)
{
	const char *path = b->path;
	int rc;

	if (create && (rc = fs_mkdirs_parent(path, 0700)) < 0)
		return rc;
	/* Creating the database and switching it to WAL must not race with
	 * another process doing the same: SQLite answers a concurrent
	 * journal-mode change with SQLITE_BUSY or an I/O error, without
	 * waiting.  Opening is serialised by a lock file next to it. */
	char *lock_path = xmalloc(strlen(path) + 6);
	sprintf(lock_path, "%s.lock", path);
	int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 || flock(lock_fd, LOCK_EX) < 0) {
		rc = err_set(-errno, "%s: %s", lock_path, strerror(errno));
		free(lock_path);
		if (lock_fd >= 0)
			close(lock_fd);
		return rc;
	}
	free(lock_path);
	rc = sqlite_open_locked(b, path, create);
	struct stat st;
	if (rc == 0 && stat(path, &st) < 0)
		rc = err_set(-errno, "%s: %s", path, strerror(errno));
	close(lock_fd);	/* releases the flock */
	if (rc < 0) {
		sqlite3_close_v2(b->db);
		b->db = NULL;
		return rc;
	}
	b->dev = st.st_dev;
	b->ino = st.st_ino;
	b->gen++;
	return 0;
}

static int sqlite_open(const char *path, struct store_backend **out)
{
	struct store_backend *b = xcalloc(1, sizeof(*b));
	b->path = xstrdup(path);
	int rc = open_db(b, 1);
	if (rc < 0) {
		sqlite_close(b);
		return rc;
	}
	*out = b;
	return 0;
}

/* Before each operation: the file at the path must be the one open. */
#define CHECK_FILE(b)                          \
	do {                                   \
		int file_rc_ = check_file(b);  \
		if (file_rc_ < 0)              \
			return file_rc_;       \
	} while (0)

static int check_file(struct store_backend *b)
{
	struct stat st;
	if (b->db && stat(b->path, &st) == 0 && st.st_dev == b->dev && st.st_ino == b->ino)
		return 0;
	if (b->db) {
		sqlite3_close_v2(b->db);
		b->db = NULL;
	}
	if (access(b->path, F_OK) < 0)
		return err_set(-EIO, "%s: %s", b->path, strerror(errno));
	int rc = open_db(b, 0);
	if (rc == 0)
		LOG_INFO("store", "%s was replaced: the new file is used", b->path);
	return rc;
}

/* The part of opening that runs under the open lock. */
static int sqlite_open_locked(struct store_backend *b, const char *path, int create)
{
	int64_t version = 0;
	int rc = sqlite3_open_v2(path, &b->db,
			     SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0) |
			     SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK)
		return db_err(b, rc, "open");
	sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS);
	sqlite3_extended_result_codes(b->db, 1);
	if ((rc = exec(b, "PRAGMA journal_mode=WAL")) < 0 ||
	    (rc = exec(b, "PRAGMA synchronous=NORMAL")) < 0)
		return rc;
	if ((rc = exec(b, "BEGIN IMMEDIATE")) < 0)
		return rc;
	rc = query_int(b, &version, NULL, "PRAGMA user_version", 0);
	if (rc == 0 && version == 0) {
		int64_t ntables = 0;
		rc = query_int(b, &ntables, NULL,
			       "SELECT count(*) FROM sqlite_master", 0);
		if (rc == 0 && ntables > 0)
			rc = err_set(-EIO, "%s is an SQLite database but not a dyn store",
				     path);
		if (rc == 0)
			rc = exec(b, schema);
		if (rc == 0)
			rc = exec(b, "PRAGMA user_version = 1");
	} else if (rc == 0 && version != SCHEMA_VERSION) {
		rc = err_set(-EIO, "%s: store schema version %lld not supported",
			     path, (long long)version);
	}
	return finish(b, rc);
}

/* ---------------------------------------------------------- operations */

static int sqlite_put(struct store_backend *b, const char *key, const void *val,
		      size_t len, int64_t lease, int create_only)
{
	CHECK_FILE(b);
	int64_t rev, one;
	int found;
	int rc = begin_write(b);
	if (rc < 0)
		return rc;
	if (lease) {
		rc = query_int(b, &one, &found, "SELECT 1 FROM leases WHERE id = ?1", lease);
		if (rc == 0 && !found)
			rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	}
	if (rc == 0 && create_only) {
		sqlite3_stmt *st;
		rc = prep(b, &st, "SELECT 1 FROM kv WHERE key = ?1", "t", key);
		if (rc == 0) {
			rc = step(b, st);
			sqlite3_finalize(st);
			if (rc == 1)
				rc = err_set(-EEXIST, "key '%s' exists", key);
		}
	}
	if (rc == 0)
		rc = log_event(b, 0, key, val, len, lease, &rev);
	if (rc == 0)
		rc = run(b, "INSERT INTO kv(key, value, lease, mod_rev) VALUES(?1, ?2, ?3, ?4)"
			 " ON CONFLICT(key) DO UPDATE SET value = excluded.value,"
			 " lease = excluded.lease, mod_rev = excluded.mod_rev",
			 "tbii", key, val, len, lease, rev);
	if (rc == 0)
		rc = prune(b, rev);
	return finish(b, rc);
}

static int sqlite_get(struct store_backend *b, const char *key, struct store_kv *out)
{
	CHECK_FILE(b);
	sqlite3_stmt *st;
	int rc = reap_if_needed(b);
	if (rc < 0)
		return rc;
	rc = prep(b, &st, "SELECT value, lease, mod_rev FROM kv WHERE key = ?1", "t", key);
	if (rc < 0)
		return rc;
	rc = step(b, st);
	if (rc == 1) {
		out->key = xstrdup(key);
		out->value = col_blob(st, 0, &out->len);
		out->lease = sqlite3_column_int64(st, 1);
		out->mod_revision = sqlite3_column_int64(st, 2);
		rc = 0;
	} else if (rc == 0) {
		rc = err_set(-ENOENT, "key '%s' not found", key);
	}
	sqlite3_finalize(st);
	return rc;
}

static int sqlite_del(struct store_backend *b, const char *key)
{
	CHECK_FILE(b);
	sqlite3_stmt *st;
	int rc = begin_write(b);
	if (rc < 0)
		return rc;
	rc = prep(b, &st, "SELECT 1 FROM kv WHERE key = ?1", "t", key);
	if (rc == 0) {
		rc = step(b, st);
		sqlite3_finalize(st);
		if (rc == 0)
			rc = err_set(-ENOENT, "key '%s' not found", key);
		else if (rc == 1)
			rc = del_key(b, key);
	}
	if (rc == 0) {
		int64_t head;
		rc = head_rev(b, &head);
		if (rc == 0)
			rc = prune(b, head);
	}
	return finish(b, rc);
}

/* The smallest string greater than every string starting with prefix
 * (prefix is valid UTF-8, so its last byte is below 0xff). */
static char *prefix_end(const char *prefix)
{
	char *e = xstrdup(prefix);
	size_t n = strlen(e);
	e[n - 1] = (char)((unsigned char)e[n - 1] + 1);
	return e;
}

static int sqlite_list(struct store_backend *b, const char *prefix,
		       struct store_kv **kvs, size_t *n, int64_t *rev)
{
	CHECK_FILE(b);
	sqlite3_stmt *st = NULL;
	struct store_kv *arr = NULL;
	size_t cnt = 0, cap = 0;
	char *hi = NULL;
	int rc = reap_if_needed(b);
	if (rc < 0)
		return rc;
	if ((rc = exec(b, "BEGIN")) < 0)
		return rc;
	if (*prefix) {
		hi = prefix_end(prefix);
		rc = prep(b, &st, "SELECT key, value, lease, mod_rev FROM kv"
			  " WHERE key >= ?1 AND key < ?2 ORDER BY key", "tt", prefix, hi);
	} else {
		rc = prep(b, &st, "SELECT key, value, lease, mod_rev FROM kv ORDER BY key", "");
	}
	while (rc == 0 && (rc = step(b, st)) == 1) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 16;
			arr = xrealloc(arr, cap * sizeof(*arr));
		}
		struct store_kv *kv = &arr[cnt++];
		kv->key = col_text(st, 0);
		kv->value = col_blob(st, 1, &kv->len);
		kv->lease = sqlite3_column_int64(st, 2);
		kv->mod_revision = sqlite3_column_int64(st, 3);
		rc = 0;
	}
	sqlite3_finalize(st);
	free(hi);
	if (rc == 0)
		rc = head_rev(b, rev);
	rc = finish(b, rc);
	if (rc < 0) {
		store_kvs_free(arr, cnt);
		return rc;
	}
	*kvs = arr;
	*n = cnt;
	return 0;
}

static int sqlite_lease_grant(struct store_backend *b, int64_t ttl_ms, int64_t *lease)
{
	CHECK_FILE(b);
	int rc = begin_write(b);
	if (rc < 0)
		return rc;
	for (;;) {
		int64_t id = store_random_id(), one;
		int found;
		rc = query_int(b, &one, &found, "SELECT 1 FROM leases WHERE id = ?1", id);
		if (rc < 0)
			break;
		if (found)
			continue;
		rc = run(b, "INSERT INTO leases(id, ttl_ms, expires_ms) VALUES(?1, ?2, ?3)",
			 "iii", id, ttl_ms, wall_ms() + ttl_ms);
		if (rc == 0)
			*lease = id;
		break;
	}
	return finish(b, rc);
}

static int sqlite_lease_keepalive(struct store_backend *b, int64_t lease)
{
	CHECK_FILE(b);
	sqlite3_busy_timeout(b->db, LOOP_BUSY_TIMEOUT_MS);
	int rc = begin_write(b);	/* reaps it if it expired */
	if (rc == 0) {
		rc = run(b, "UPDATE leases SET expires_ms = ?1 + ttl_ms WHERE id = ?2",
			 "ii", wall_ms(), lease);
		if (rc == 0 && sqlite3_changes(b->db) == 0)
			rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
		rc = finish(b, rc);
	}
	sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS);
	return rc;
}

static int sqlite_lease_ttl(struct store_backend *b, int64_t lease, int64_t *ttl_ms)
{
	CHECK_FILE(b);
	int found = 0;
	int rc = query_int(b, ttl_ms, &found, "SELECT ttl_ms FROM leases WHERE id = ?1", lease);
	if (rc == 0 && !found)
		rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	return rc;
}

static int sqlite_lease_revoke(struct store_backend *b, int64_t lease)
{
	CHECK_FILE(b);
	int64_t one;
	int found;
	int rc = begin_write(b);
	if (rc < 0)
		return rc;
	rc = query_int(b, &one, &found, "SELECT 1 FROM leases WHERE id = ?1", lease);
	if (rc == 0 && !found)
		rc = err_set(-ENOENT, "lease %016llx not found", (unsigned long long)lease);
	if (rc == 0)
		rc = drop_lease(b, lease);
	return finish(b, rc);
}

static int sqlite_reap(struct store_backend *b)
{
	CHECK_FILE(b);
	sqlite3_busy_timeout(b->db, LOOP_BUSY_TIMEOUT_MS);
	int rc = reap_if_needed(b);
	sqlite3_busy_timeout(b->db, BUSY_TIMEOUT_MS);
	return rc;
}

static unsigned sqlite_generation(struct store_backend *b)
{
	return b->gen;
}

/* ---------------------------------------------------------- change feed */

static int sqlite_cursor_open(struct store_backend *b, const char *prefix,
			      int64_t rev, void **cursor)
{
	struct scursor *c = xcalloc(1, sizeof(*c));
	c->prefix = xstrdup(prefix);
	c->rev = rev;
	c->gen = b->gen;
	*cursor = c;
	return 0;
}

static void sqlite_cursor_close(struct store_backend *b, void *cursor)
{
	struct scursor *c = cursor;
	(void)b;
	if (!c)
		return;
	free(c->prefix);
	free(c);
}

static int sqlite_changes(struct store_backend *b, void *cursor,
			  struct store_change **out, size_t *n)
{
	CHECK_FILE(b);
	struct scursor *c = cursor;
	struct store_change *arr = NULL;
	size_t cnt = 0, cap = 0;
	sqlite3_stmt *st = NULL;
	int64_t head = 0, compacted = 0;
	char *hi = NULL;

	*out = NULL;
	*n = 0;
	if (c->gen != b->gen) {	/* another file since: its revisions are not ours */
		c->gen = b->gen;
		return -ESTALE;
	}
	int rc = exec(b, "BEGIN");
	if (rc < 0)
		return rc;
	rc = head_rev(b, &head);
	if (rc == 0 && head <= c->rev)
		return finish(b, 0);	/* nothing new */
	if (rc == 0)
		rc = query_int(b, &compacted, NULL,
			       "SELECT value FROM meta WHERE name = 'compacted'", 0);
	if (rc == 0 && c->rev < compacted) {
		finish(b, 0);
		return -ESTALE;
	}
	if (rc == 0 && *c->prefix) {
		hi = prefix_end(c->prefix);
		rc = prep(b, &st, "SELECT rev, type, key, value, lease FROM events"
			  " WHERE rev > ?1 AND rev <= ?2 AND key >= ?3 AND key < ?4 ORDER BY rev",
			  "iitt", c->rev, head, c->prefix, hi);
	} else if (rc == 0) {
		rc = prep(b, &st, "SELECT rev, type, key, value, lease FROM events"
			  " WHERE rev > ?1 AND rev <= ?2 ORDER BY rev", "ii", c->rev, head);
	}
	while (rc == 0 && (rc = step(b, st)) == 1) {
		struct store_change *ch = store_change_push(&arr, &cnt, &cap);
		ch->rev = sqlite3_column_int64(st, 0);
		ch->type = sqlite3_column_int64(st, 1) ? STORE_EV_DELETE : STORE_EV_PUT;
		ch->key = col_text(st, 2);
		ch->value = col_blob(st, 3, &ch->len);
		ch->lease = sqlite3_column_int64(st, 4);
		rc = 0;
	}
	sqlite3_finalize(st);
	free(hi);
	rc = finish(b, rc);
	if (rc < 0) {
		store_changes_free(arr, cnt);
		return rc;
	}
	c->rev = head;
	*out = arr;
	*n = cnt;
	return 0;
}

const struct store_backend_ops store_sqlite_ops = {
	.scheme = "sqlite",
	.open = sqlite_open,
	.close = sqlite_close,
	.put = sqlite_put,
	.get = sqlite_get,
	.del = sqlite_del,
	.list = sqlite_list,
	.lease_grant = sqlite_lease_grant,
	.lease_keepalive = sqlite_lease_keepalive,
	.lease_revoke = sqlite_lease_revoke,
	.lease_ttl = sqlite_lease_ttl,
	.reap = sqlite_reap,
	.generation = sqlite_generation,
	.cursor_open = sqlite_cursor_open,
	.changes = sqlite_changes,
	.cursor_close = sqlite_cursor_close,
};
