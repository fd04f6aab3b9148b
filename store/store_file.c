/*
 * store_file.c - the file://DIR backend of the discovery store: a
 * directory of small JSON files shared by every process on one machine.
 *
 *   DIR/FORMAT        "dyn-store file 1"
 *   DIR/lock          flock(2)ed: exclusive by every operation that
 *                     changes or reads key records, shared by watchers
 *                     reading the change log
 *   DIR/log           the change log: a header line, then one JSON line
 *                     per change, revisions consecutive (see below)
 *   DIR/log.1         the previous log segment (after a rotation)
 *   DIR/keys/NAME     one record per key; NAME = the key percent-encoded
 *                     (or "~" + a 128-bit hash for long keys)
 *   DIR/leases/HEX    one record per lease (16 hex digits)
 *   DIR/reap-at       no lease expires before this time (see reap_hint)
 *
 * Every write happens under the exclusive lock: first the change is
 * appended to the log (and fdatasync'ed), then the key record is
 * replaced atomically (temp file, fsync, rename, fsync of the directory).
 * The store revision is the revision of the last log line.  The next
 * locked operation repairs what a crash may have left: it truncates a
 * torn last log line and re-applies the last logged change if its record
 * was not written.
 * Temp files (".tmp.*") exist only while the lock is held and are
 * removed on open.  A log segment over store_file_log_max bytes is
 * rotated to log.1, so the log never holds more than two segments; a
 * watcher that falls behind both gets -ESTALE and re-snapshots.
 * Expired leases are reaped (their keys deleted, delete events logged)
 * by every locked operation and by the watch poll (store.c).
 */
#include "store/store_backend.h"
#include "core/fsutil.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#define FORMAT_LINE "dyn-store file 1\n"
#define NAME_PLAIN_MAX 200	/* longer encoded names are hashed */
#define HEADER_MAX 4096
#define MAX_SAFE_INT 9007199254740992.0	/* 2^53: exact in a double */

size_t store_file_log_max = 256 * 1024;

struct store_backend {
	char *dir;
	int dirfd;
	int lockfd;
	int logfd;		/* open between begin() and end() */
	int locked;
	/* What this handle knows of the current log segment. */
	int log_known;
	ino_t log_ino;		/* identity: inode and header base */
	int64_t log_base;
	off_t log_off;		/* end of the last complete line seen */
	int64_t head;		/* store revision */
	unsigned tmp_seq;
	unsigned gen;		/* bumped when the directory is opened anew */
};

struct fcursor {
	unsigned gen;		/* the backend's when opened */
	char *prefix;
	size_t plen;
	int64_t rev;
	int have_pos;		/* position in the current segment known: */
	ino_t ino;		/* its inode, header base, size and mtime */
	int64_t base;
	off_t off;
	struct timespec mtime;
};

/* ------------------------------------------------------- record codec */

static void add_value(struct strbuf *sb, const char *val, size_t len)
{
	if (store_utf8_valid(val, len)) {
		sb_adds(sb, "\"value\":");
		sb_add_json_str(sb, val, len);
	} else {
		sb_adds(sb, "\"value64\":\"");
		store_b64_encode(sb, (const unsigned char *)val, len);
		sb_addch(sb, '"');
	}
}

static void add_lease(struct strbuf *sb, int64_t lease)
{
	if (lease)
		sb_addf(sb, ",\"lease\":\"%016" PRIx64 "\"", (uint64_t)lease);
}

static void fmt_header(struct strbuf *sb, int64_t base)
{
	sb_addf(sb, "{\"log\":\"dyn-store\",\"version\":1,\"base\":%" PRId64 "}\n", base);
}

static void fmt_event(struct strbuf *sb, int64_t rev, int put, const char *key,
		      const char *val, size_t len, int64_t lease)
{
	sb_addf(sb, "{\"rev\":%" PRId64 ",\"op\":\"%s\",\"key\":", rev, put ? "put" : "del");
	sb_add_json_str(sb, key, strlen(key));
	if (put) {
		sb_addch(sb, ',');
		add_value(sb, val, len);
		add_lease(sb, lease);
	}
	sb_adds(sb, "}\n");
}

static void fmt_key_record(struct strbuf *sb, const char *key, const char *val,
			   size_t len, int64_t lease, int64_t rev)
{
	sb_adds(sb, "{\"key\":");
	sb_add_json_str(sb, key, strlen(key));
	sb_addch(sb, ',');
	add_value(sb, val, len);
	add_lease(sb, lease);
	sb_addf(sb, ",\"mod_revision\":%" PRId64 "}\n", rev);
}

static void fmt_lease(struct strbuf *sb, int64_t lease, int64_t ttl_ms,
		      int64_t expires_ms)
{
	sb_addf(sb, "{\"lease\":\"%016" PRIx64 "\",\"ttl_ms\":%" PRId64
		",\"expires_ms\":%" PRId64 "}\n", (uint64_t)lease, ttl_ms, expires_ms);
}

void store_file_format_record(struct strbuf *sb, const struct store_file_rec *rec)
{
	switch (rec->kind) {
	case STORE_REC_HEADER:
		fmt_header(sb, rec->rev);
		break;
	case STORE_REC_PUT:
	case STORE_REC_DEL:
		fmt_event(sb, rec->rev, rec->kind == STORE_REC_PUT, rec->key,
			  rec->value, rec->len, rec->lease);
		break;
	case STORE_REC_KEY:
		fmt_key_record(sb, rec->key, rec->value, rec->len, rec->lease, rec->rev);
		break;
	case STORE_REC_LEASE:
		fmt_lease(sb, rec->lease, rec->ttl_ms, rec->expires_ms);
		break;
	}
}

static int get_int(const cJSON *obj, const char *name, int64_t min, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsNumber(it))
		return err_set(-EINVAL, "'%s' missing or not a number", name);
	double d = it->valuedouble;
	if (!isfinite(d) || d != floor(d) || d < (double)min || d > MAX_SAFE_INT)
		return err_set(-EINVAL, "'%s' is not an integer in range", name);
	*out = (int64_t)d;
	return 0;
}

static int get_hex(const cJSON *obj, const char *name, int64_t *out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, name);
	uint64_t v = 0;

	if (!cJSON_IsString(it) || !it->valuestring)
		return err_set(-EINVAL, "'%s' missing or not a string", name);
	const char *s = it->valuestring;
	size_t n = strlen(s);
	if (n == 0 || n > 16)
		return err_set(-EINVAL, "'%s' is not 1-16 hex digits", name);
	for (size_t i = 0; i < n; i++) {
		int c = (unsigned char)s[i], d;
		if (c >= '0' && c <= '9') d = c - '0';
		else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
		else
			return err_set(-EINVAL, "'%s' is not hexadecimal", name);
		v = v << 4 | (uint64_t)d;
	}
	if (v > INT64_MAX)
		return err_set(-EINVAL, "'%s' out of range", name);
	*out = (int64_t)v;
	return 0;
}

static int get_key(const cJSON *obj, char **out)
{
	const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, "key");
	if (!cJSON_IsString(it) || !it->valuestring)
		return err_set(-EINVAL, "'key' missing or not a string");
	size_t n = strlen(it->valuestring);
	if (n == 0 || n > STORE_KEY_MAX || !store_utf8_valid(it->valuestring, n))
		return err_set(-EINVAL, "'key' is not a valid key");
	*out = xstrndup(it->valuestring, n);
	return 0;
}

static int get_value(const cJSON *obj, char **out, size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, "value");
	const cJSON *v64 = cJSON_GetObjectItemCaseSensitive(obj, "value64");

	if (v && v64)
		return err_set(-EINVAL, "both 'value' and 'value64'");
	if (cJSON_IsString(v) && v->valuestring) {
		size_t n = strlen(v->valuestring);
		if (n > STORE_VALUE_MAX)
			return err_set(-EINVAL, "'value' too long");
		*out = xstrndup(v->valuestring, n);
		*len = n;
		return 0;
	}
	if (cJSON_IsString(v64) && v64->valuestring) {
		struct strbuf sb = STRBUF_INIT;
		size_t n = strlen(v64->valuestring);
		if (n / 4 * 3 > STORE_VALUE_MAX + 2 ||
		    store_b64_decode(v64->valuestring, n, &sb) < 0 || sb.len > STORE_VALUE_MAX) {
			sb_release(&sb);
			return err_set(-EINVAL, "'value64' is not valid base64");
		}
		*out = sb_detach(&sb, len);
		return 0;
	}
	return err_set(-EINVAL, "'value' missing or not a string");
}

void store_file_rec_free(struct store_file_rec *rec)
{
	free(rec->key);
	free(rec->value);
	memset(rec, 0, sizeof(*rec));
}

static int parse_obj(const cJSON *j, struct store_file_rec *rec)
{
	int rc;
	const cJSON *it;

	if ((it = cJSON_GetObjectItemCaseSensitive(j, "log"))) {
		int64_t version;
		rec->kind = STORE_REC_HEADER;
		if (!cJSON_IsString(it) || !it->valuestring ||
		    strcmp(it->valuestring, "dyn-store"))
			return err_set(-EINVAL, "not a dyn-store log header");
		if ((rc = get_int(j, "version", 0, &version)) < 0)
			return rc;
		if (version != 1)
			return err_set(-EINVAL, "log version %" PRId64 " not supported", version);
		return get_int(j, "base", 0, &rec->rev);
	}
	if ((it = cJSON_GetObjectItemCaseSensitive(j, "rev"))) {
		const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
		if ((rc = get_int(j, "rev", 1, &rec->rev)) < 0)
			return rc;
		if (!cJSON_IsString(op) || !op->valuestring)
			return err_set(-EINVAL, "'op' missing or not a string");
		if (!strcmp(op->valuestring, "del")) {
			rec->kind = STORE_REC_DEL;
			return get_key(j, &rec->key);
		}
		if (strcmp(op->valuestring, "put"))
			return err_set(-EINVAL, "unknown op");
		rec->kind = STORE_REC_PUT;
	} else if (cJSON_GetObjectItemCaseSensitive(j, "key")) {
		rec->kind = STORE_REC_KEY;
		if ((rc = get_int(j, "mod_revision", 1, &rec->rev)) < 0)
			return rc;
	} else if (cJSON_GetObjectItemCaseSensitive(j, "lease")) {
		rec->kind = STORE_REC_LEASE;
		if ((rc = get_hex(j, "lease", &rec->lease)) < 0 ||
		    (rc = get_int(j, "ttl_ms", 1, &rec->ttl_ms)) < 0 ||
		    (rc = get_int(j, "expires_ms", 0, &rec->expires_ms)) < 0)
			return rc;
		if (rec->lease <= 0)
			return err_set(-EINVAL, "lease id 0");
		return 0;
	} else {
		return err_set(-EINVAL, "unknown record");
	}
	/* PUT or KEY */
	if ((rc = get_key(j, &rec->key)) < 0 || (rc = get_value(j, &rec->value, &rec->len)) < 0)
		return rc;
	if (cJSON_GetObjectItemCaseSensitive(j, "lease"))
		return get_hex(j, "lease", &rec->lease);
	return 0;
}

int store_file_parse_record(const char *buf, size_t len, struct store_file_rec *rec)
{
	memset(rec, 0, sizeof(*rec));
	/* The longest line we write: a key and a value of control bytes,
	 * each escaped as \u00XX (6 bytes a byte). */
	if (len > (size_t)(STORE_VALUE_MAX + STORE_KEY_MAX) * 6 + 4096)
		return err_set(-EINVAL, "record too long");
	/* cJSON gets a private NUL-terminated copy: it may never read past. */
	char *copy = xmalloc(len + 1);
	memcpy(copy, buf, len);
	copy[len] = '\0';
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(copy, len, &end, 0);
	int rc = 0;
	if (!j || !cJSON_IsObject(j)) {
		rc = err_set(-EINVAL, "not a JSON object");
	} else {
		for (const char *p = end; p && p < copy + len; p++) {
			if (*p != ' ' && *p != '\n' && *p != '\r' && *p != '\t') {
				rc = err_set(-EINVAL, "trailing bytes after the JSON object");
				break;
			}
		}
		if (rc == 0)
			rc = parse_obj(j, rec);
	}
	cJSON_Delete(j);
	free(copy);
	if (rc < 0)
		store_file_rec_free(rec);
	return rc;
}

/* Percent-encode key bytes: [A-Za-z0-9_-] stay, everything else %XX. */
static void encode_name(struct strbuf *sb, const char *key)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		unsigned c = *p;
		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '_' || c == '-') {
			sb_addch(sb, (int)c);
		} else {
			sb_addch(sb, '%');
			sb_addch(sb, hex[c >> 4]);
			sb_addch(sb, hex[c & 15]);
		}
	}
}

int store_file_key_name(const char *key, char *name, size_t size)
{
	struct strbuf sb = STRBUF_INIT;

	if (!key || !*key)
		return err_set(-EINVAL, "empty key");
	encode_name(&sb, key);
	if (sb.len > NAME_PLAIN_MAX) {
		XXH128_hash_t h = XXH3_128bits(key, strlen(key));
		sb_reset(&sb);
		sb_addf(&sb, "~%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64,
			(uint64_t)h.low64);
	}
	if (sb.len + 1 > size) {
		sb_release(&sb);
		return err_set(-EINVAL, "file name buffer too small");
	}
	memcpy(name, sb.buf, sb.len + 1);
	sb_release(&sb);
	return 0;
}

int store_file_name_key(const char *name, char *key, size_t size)
{
	size_t n = 0;
	if (*name == '~')
		return err_set(-EINVAL, "'%s' is a hashed key name", name);
	for (const char *p = name; *p; p++) {
		int c = (unsigned char)*p;
		if (c == '%') {
			int hi = hex_digit(p[1]), lo = hi < 0 ? -1 : hex_digit(p[2]);
			if (lo < 0)
				return err_set(-EINVAL, "bad escape in key name '%s'", name);
			c = hi << 4 | lo;
			p += 2;
		}
		if (n + 1 >= size)
			return err_set(-EINVAL, "key name '%s' too long", name);
		key[n++] = (char)c;
	}
	key[n] = '\0';
	return n ? 0 : err_set(-EINVAL, "empty key name");
}

/* fmt_key_record() ends a leased record ',"lease":"HEX","mod_revision":N}\n'.
 * Inside a JSON string every quote is escaped, so a quote right after a
 * comma is the record's own.  A record without a lease, or written in
 * another order by hand, is left to the parser. */
int store_file_record_lease(const char *tail, size_t n, int64_t *lease)
{
	static const char rev_tag[] = ",\"mod_revision\":";
	static const char lease_tag[] = ",\"lease\":\"";
	const size_t tl = sizeof(rev_tag) - 1, ll = sizeof(lease_tag) - 1;
	size_t end = n;

	if (end && tail[end - 1] == '\n')
		end--;
	if (!end || tail[--end] != '}')
		return 0;
	size_t digits = end;
	while (digits > 0 && tail[digits - 1] >= '0' && tail[digits - 1] <= '9')
		digits--;
	if (digits == end || digits < tl + 17 + ll || memcmp(tail + digits - tl, rev_tag, tl))
		return 0;
	const char *hex = tail + digits - tl - 17;	/* 16 digits and a quote */
	if (hex[16] != '"' || memcmp(hex - ll, lease_tag, ll))
		return 0;
	uint64_t id = 0;
	for (int i = 0; i < 16; i++) {
		int v = hex_digit((unsigned char)hex[i]);
		if (v < 0 || (hex[i] >= 'A' && hex[i] <= 'F'))
			return 0;
		id = id << 4 | (uint64_t)v;
	}
	if (!id || id > INT64_MAX)
		return 0;
	*lease = (int64_t)id;
	return 1;
}

/* ---------------------------------------------------------- file helpers */

static int read_all_fd(int fd, off_t off, struct strbuf *sb)
{
	char tmp[65536];
	for (;;) {
		ssize_t n = pread(fd, tmp, sizeof(tmp), off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return 0;
		sb_add(sb, tmp, (size_t)n);
		off += n;
	}
}

/* Read DIR/rel into sb.  -ENOENT (message set) if it does not exist. */
static int read_at(struct store_backend *b, const char *rel, struct strbuf *sb)
{
	int fd = openat(b->dirfd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return err_set(-errno, "%s/%s: %s", b->dir, rel, strerror(errno));
	int rc = read_all_fd(fd, 0, sb);
	close(fd);
	if (rc < 0)
		return err_set(rc, "%s/%s: %s", b->dir, rel, strerror(-rc));
	return 0;
}

/* Make the names in DIR/sub durable: crash recovery re-applies only the
 * last logged change, so an earlier rename must not be lost with the
 * directory's unwritten pages. */
static int sync_dir(struct store_backend *b, const char *sub)
{
	int fd = *sub ? openat(b->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : b->dirfd;
	if (fd < 0)
		return err_set(-errno, "%s/%s: %s", b->dir, sub, strerror(errno));
	int rc = fsync(fd) < 0 ? -errno : 0;
	if (fd != b->dirfd)
		close(fd);
	if (rc < 0 && rc != -EINVAL)	/* EINVAL: the file system cannot sync directories */
		return err_set(rc, "%s/%s: fsync: %s", b->dir, sub, strerror(-rc));
	return 0;
}

/* Replace DIR/sub/name atomically: temp file, fsync, rename, fsync the
 * directory. */
static int write_atomic(struct store_backend *b, const char *sub, const char *name,
			const char *data, size_t len)
{
	char tmp[64], dst[512];
	snprintf(tmp, sizeof(tmp), "%s%s.tmp.%ld.%u", sub, *sub ? "/" : "",
		 (long)getpid(), b->tmp_seq++);
	snprintf(dst, sizeof(dst), "%s%s%s", sub, *sub ? "/" : "", name);
	int fd = openat(b->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return err_set(-errno, "%s/%s: %s", b->dir, tmp, strerror(errno));
	int rc = fd_write_all(fd, data, len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(b->dirfd, tmp, b->dirfd, dst) < 0)
		rc = -errno;
	if (rc < 0) {
		unlinkat(b->dirfd, tmp, 0);
		return err_set(rc, "writing %s/%s: %s", b->dir, dst, strerror(-rc));
	}
	return sync_dir(b, sub);
}

/* op may carry LOCK_NB: -EBUSY while another process holds the lock. */
static int do_lock(struct store_backend *b, int op)
{
	while (flock(b->lockfd, op) < 0) {
		if (errno == EWOULDBLOCK && (op & LOCK_NB))
			return err_set(-EBUSY, "%s/lock: held by another process", b->dir);
		if (errno != EINTR)
			return err_set(-errno, "%s/lock: %s", b->dir, strerror(errno));
	}
	return 0;
}

/* ------------------------------------------------------------ key records */

static void key_path(char *path, size_t size, const char *name)
{
	snprintf(path, size, "keys/%s", name);
}

/* Parse a key record; name is its file name.  -EIO for a corrupt one. */
static int parse_key_file(struct store_backend *b, const char *name,
			  const struct strbuf *sb, struct store_file_rec *rec)
{
	char want[256];
	int rc = store_file_parse_record(sb->buf, sb->len, rec);
	if (rc == 0 && rec->kind != STORE_REC_KEY) {
		store_file_rec_free(rec);
		rc = err_set(-EINVAL, "not a key record");
	}
	if (rc == 0 && (store_file_key_name(rec->key, want, sizeof(want)) < 0 ||
			strcmp(want, name))) {
		store_file_rec_free(rec);
		rc = err_set(-EINVAL, "its key does not match the file name");
	}
	if (rc < 0)
		return err_wrap(-EIO, "%s/keys/%s: corrupt record, ignored", b->dir, name);
	return 0;
}

/* Read the record of key: 0, -ENOENT, -EIO (corrupt) or another error. */
static int read_key(struct store_backend *b, const char *key, struct store_file_rec *rec)
{
	char name[256], path[300];
	struct strbuf sb = STRBUF_INIT;

	memset(rec, 0, sizeof(*rec));
	int rc = store_file_key_name(key, name, sizeof(name));
	if (rc < 0)
		return rc;
	key_path(path, sizeof(path), name);
	rc = read_at(b, path, &sb);
	if (rc == 0) {
		rc = parse_key_file(b, name, &sb, rec);
		if (rc == 0 && strcmp(rec->key, key)) {
			store_file_rec_free(rec);
			rc = err_set(-EIO, "%s/keys/%s: hash collision with key '%s'",
				     b->dir, name, key);
		}
	}
	sb_release(&sb);
	return rc;
}

static int write_key(struct store_backend *b, const char *key, const char *val,
		     size_t len, int64_t lease, int64_t rev)
{
	char name[256];
	struct strbuf sb = STRBUF_INIT;
	int rc = store_file_key_name(key, name, sizeof(name));
	if (rc < 0)
		return rc;
	fmt_key_record(&sb, key, val, len, lease, rev);
	rc = write_atomic(b, "keys", name, sb.buf, sb.len);
	sb_release(&sb);
	return rc;
}

static int unlink_key(struct store_backend *b, const char *key)
{
	char name[256], path[300];
	int rc = store_file_key_name(key, name, sizeof(name));
	if (rc < 0)
		return rc;
	key_path(path, sizeof(path), name);
	if (unlinkat(b->dirfd, path, 0) < 0 && errno != ENOENT)
		return err_set(-errno, "%s/%s: %s", b->dir, path, strerror(errno));
	return 0;
}

/* Call fn for every readable key record (corrupt ones are reported and
 * skipped).  name_prefix: only names starting with it, plus hashed ones.
 * quick (may be NULL) sees each name first: 0 when it dealt with it
 * without the record, -EAGAIN to have the record read and given to fn. */
static int scan_keys(struct store_backend *b, const char *name_prefix,
		     int (*quick)(struct store_backend *b, const char *name, void *arg),
		     int (*fn)(struct store_file_rec *rec, void *arg), void *arg)
{
	int fd = openat(b->dirfd, "keys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "%s/keys: %s", b->dir, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return err_set(-errno, "%s/keys: %s", b->dir, strerror(errno));
	}
	size_t plen = name_prefix ? strlen(name_prefix) : 0;
	struct dirent *de;
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;
	while (rc == 0 && (de = readdir(d))) {
		const char *name = de->d_name;
		if (name[0] == '.')
			continue;	/* ".", "..", temp files */
		if (plen && name[0] != '~' && strncmp(name, name_prefix, plen))
			continue;
		char path[300];
		struct store_file_rec rec;
		if (strlen(name) > 255)
			continue;
		if (quick && quick(b, name, arg) == 0)
			continue;
		key_path(path, sizeof(path), name);
		sb_reset(&sb);
		int r = read_at(b, path, &sb);
		if (r == -ENOENT)
			continue;	/* deleted meanwhile */
		if (r == 0)
			r = parse_key_file(b, name, &sb, &rec);
		if (r < 0) {
			LOG_WARN("store", "%s", err_msg());
			continue;
		}
		rc = fn(&rec, arg);
		store_file_rec_free(&rec);
	}
	sb_release(&sb);
	closedir(d);
	return rc;
}

/* ------------------------------------------------------------- the log */

/* Parse the header line of an open log: base revision and where the
 * events start. */
static int read_header(struct store_backend *b, int fd, const char *which,
		       int64_t *base, off_t *hdr_end)
{
	char buf[HEADER_MAX];
	ssize_t n;
	struct store_file_rec rec;

	do
		n = pread(fd, buf, sizeof(buf), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return err_set(-errno, "%s/%s: %s", b->dir, which, strerror(errno));
	char *nl = memchr(buf, '\n', (size_t)n);
	if (!nl)
		return err_set(-EIO, "%s/%s: no header line", b->dir, which);
	if (store_file_parse_record(buf, (size_t)(nl - buf), &rec) < 0 ||
	    rec.kind != STORE_REC_HEADER) {
		store_file_rec_free(&rec);
		return err_set(-EIO, "%s/%s: bad header line", b->dir, which);
	}
	*base = rec.rev;
	*hdr_end = nl - buf + 1;
	return 0;
}

/* Parse the complete lines of fd from off.  fn gets every event record
 * (return non-zero to stop); unparsable lines are reported and skipped.
 * *end = offset after the last complete line; *partial = whether bytes
 * without a final newline follow it. */
static int scan_log(struct store_backend *b, int fd, const char *which, off_t off,
		    off_t *end, int *partial,
		    int (*fn)(struct store_file_rec *rec, void *arg), void *arg)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = read_all_fd(fd, off, &sb);
	if (rc < 0) {
		sb_release(&sb);
		return err_set(rc, "%s/%s: %s", b->dir, which, strerror(-rc));
	}
	size_t pos = 0;
	rc = 0;
	while (pos < sb.len) {
		char *nl = memchr(sb.buf + pos, '\n', sb.len - pos);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (sb.buf + pos));
		struct store_file_rec rec;
		if (store_file_parse_record(sb.buf + pos, len, &rec) < 0) {
			LOG_WARN("store", "%s/%s at byte %lld: bad log line (%s), skipped",
				 b->dir, which, (long long)(off + (off_t)pos), err_msg());
		} else if (rec.kind == STORE_REC_PUT || rec.kind == STORE_REC_DEL) {
			rc = fn(&rec, arg);
		}
		store_file_rec_free(&rec);
		pos += len + 1;
		if (rc)
			break;
	}
	*end = off + (off_t)pos;
	*partial = pos < sb.len && rc == 0;
	sb_release(&sb);
	return rc;
}

struct head_scan {
	int64_t head;
	struct store_file_rec last;	/* the last event seen */
	int have_last;
};

static int head_cb(struct store_file_rec *rec, void *arg)
{
	struct head_scan *h = arg;
	if (rec->rev <= h->head) {
		LOG_WARN("store", "log revision %" PRId64 " after %" PRId64 ", ignored",
			 rec->rev, h->head);
		return 0;
	}
	h->head = rec->rev;
	store_file_rec_free(&h->last);
	h->last = *rec;
	memset(rec, 0, sizeof(*rec));	/* moved */
	h->have_last = 1;
	return 0;
}

static int max_rev_cb(struct store_file_rec *rec, void *arg)
{
	int64_t *max = arg;
	if (rec->rev > *max)
		*max = rec->rev;
	return 0;
}

static int max_rev_file(struct store_backend *b, const char *which, int64_t *max)
{
	int fd = openat(b->dirfd, which, O_RDONLY | O_CLOEXEC);
	off_t end;
	int partial;
	if (fd < 0)
		return 0;
	scan_log(b, fd, which, 0, &end, &partial, max_rev_cb, max);
	close(fd);
	return 0;
}

/* Start a new log segment at base: write it aside, move the current one
 * to log.1, move the new one in.  Under the exclusive lock. */
static int new_segment(struct store_backend *b, int64_t base)
{
	struct strbuf sb = STRBUF_INIT;
	struct stat st;
	int rc;

	fmt_header(&sb, base);
	rc = write_atomic(b, "", "log.new", sb.buf, sb.len);
	sb_release(&sb);
	if (rc < 0)
		return rc;
	if (renameat(b->dirfd, "log", b->dirfd, "log.1") < 0 && errno != ENOENT)
		return err_set(-errno, "%s/log: rotating: %s", b->dir, strerror(errno));
	if (renameat(b->dirfd, "log.new", b->dirfd, "log") < 0)
		return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
	if ((rc = sync_dir(b, "")) < 0)
		return rc;
	if (fstatat(b->dirfd, "log", &st, 0) < 0)
		return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
	b->log_known = 1;
	b->log_ino = st.st_ino;
	b->log_base = base;
	b->log_off = st.st_size;
	b->head = base;
	return 0;
}

static int max_key_rev_cb(struct store_file_rec *rec, void *arg)
{
	return max_rev_cb(rec, arg);
}

/* The log is missing or unreadable: find the highest revision anywhere
 * and start a new segment after it (watchers then re-snapshot). */
static int recover_log(struct store_backend *b, const char *why)
{
	int64_t max = b->log_known ? b->head : 0;
	int rc;

	max_rev_file(b, "log", &max);
	max_rev_file(b, "log.1", &max);
	rc = scan_keys(b, NULL, NULL, max_key_rev_cb, &max);
	if (rc < 0)
		return rc;
	if (why)
		LOG_WARN("store", "%s: %s; starting a new log at revision %" PRId64,
			 b->dir, why, max);
	return new_segment(b, max);
}

/* Make sure the last logged change reached its key record (a writer may
 * have died between the two). */
static int apply_last(struct store_backend *b, struct store_file_rec *ev)
{
	struct store_file_rec cur;
	int rc = read_key(b, ev->key, &cur);
	if (rc < 0 && rc != -ENOENT && rc != -EIO)
		return rc;
	int64_t cur_rev = rc == 0 ? cur.rev : 0;
	int exists = rc != -ENOENT;
	store_file_rec_free(&cur);
	if (ev->kind == STORE_REC_PUT && (rc != 0 || cur_rev < ev->rev)) {
		LOG_WARN("store", "%s: completing an interrupted put of '%s' (revision %" PRId64 ")",
			 b->dir, ev->key, ev->rev);
		return write_key(b, ev->key, ev->value, ev->len, ev->lease, ev->rev);
	}
	if (ev->kind == STORE_REC_DEL && exists && cur_rev < ev->rev) {
		LOG_WARN("store", "%s: completing an interrupted delete of '%s' (revision %" PRId64 ")",
			 b->dir, ev->key, ev->rev);
		return unlink_key(b, ev->key);
	}
	return 0;
}

/* Under the exclusive lock: open the log, learn the head revision from
 * what was appended since this handle last looked, repair a crash. */
static int sync_log(struct store_backend *b)
{
	struct stat st;
	int64_t base;
	off_t start, end;
	int partial;

	for (int attempt = 0;; attempt++) {
		b->logfd = openat(b->dirfd, "log", O_RDWR | O_APPEND | O_CLOEXEC);
		if (b->logfd >= 0)
			break;
		if (errno != ENOENT || attempt > 0)
			return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
		int rc = recover_log(b, b->log_known ? "the log is missing" : NULL);
		if (rc < 0)
			return rc;
	}
	if (fstat(b->logfd, &st) < 0)
		return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
	struct head_scan h = { 0 };
	/* (An inode number can be reused after two rotations: the header's
	 * base revision tells segments apart.) */
	if (b->log_known && st.st_ino == b->log_ino && st.st_size >= b->log_off &&
	    read_header(b, b->logfd, "log", &base, &start) == 0 && base == b->log_base) {
		if (st.st_size == b->log_off)
			return 0;	/* nothing new */
		start = b->log_off;
		h.head = b->head;
	} else {
		if (read_header(b, b->logfd, "log", &base, &start) < 0) {
			char why[512];
			snprintf(why, sizeof(why), "%s", err_msg());
			close(b->logfd);
			b->logfd = -1;
			int rc = recover_log(b, why);
			if (rc < 0)
				return rc;
			b->logfd = openat(b->dirfd, "log", O_RDWR | O_APPEND | O_CLOEXEC);
			if (b->logfd < 0)
				return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
			return 0;
		}
		h.head = base;
		b->log_base = base;
	}
	int rc = scan_log(b, b->logfd, "log", start, &end, &partial, head_cb, &h);
	if (rc < 0) {
		store_file_rec_free(&h.last);
		return rc;
	}
	if (partial) {
		LOG_WARN("store", "%s/log: removing a torn last line (a writer died)", b->dir);
		if (ftruncate(b->logfd, end) < 0) {
			store_file_rec_free(&h.last);
			return err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
		}
	}
	b->log_known = 1;
	b->log_ino = st.st_ino;
	b->log_off = end;
	b->head = h.head;
	rc = h.have_last ? apply_last(b, &h.last) : 0;
	store_file_rec_free(&h.last);
	return rc;
}

static int log_append(struct store_backend *b, const struct strbuf *line)
{
	int rc = fd_write_all(b->logfd, line->buf, line->len);
	if (rc == 0 && fdatasync(b->logfd) < 0)
		LOG_WARN("store", "%s/log: fdatasync: %s", b->dir, strerror(errno));
	if (rc < 0) {
		/* Leave no torn line behind for the next writer to guess at. */
		if (ftruncate(b->logfd, b->log_off) < 0)
			LOG_WARN("store", "%s/log: %s", b->dir, strerror(errno));
		return err_set(rc, "%s/log: %s", b->dir, strerror(-rc));
	}
	b->log_off += (off_t)line->len;
	return 0;
}

/* Log a change and apply it to its key record. */
static int change(struct store_backend *b, int put, const char *key,
		  const char *val, size_t len, int64_t lease)
{
	struct strbuf line = STRBUF_INIT;
	int64_t rev = b->head + 1;

	fmt_event(&line, rev, put, key, val, len, lease);
	int rc = log_append(b, &line);
	sb_release(&line);
	if (rc < 0)
		return rc;
	b->head = rev;
	return put ? write_key(b, key, val, len, lease, rev) : unlink_key(b, key);
}

/* ------------------------------------------------------------ leases */

static void lease_path(char *path, size_t size, int64_t lease)
{
	snprintf(path, size, "leases/%016" PRIx64, (uint64_t)lease);
}

static int read_lease(struct store_backend *b, int64_t lease, struct store_file_rec *rec)
{
	char path[64];
	struct strbuf sb = STRBUF_INIT;

	memset(rec, 0, sizeof(*rec));
	lease_path(path, sizeof(path), lease);
	int rc = read_at(b, path, &sb);
	if (rc == -ENOENT)
		rc = err_set(-ENOENT, "lease %016" PRIx64 " not found", (uint64_t)lease);
	if (rc == 0 && (store_file_parse_record(sb.buf, sb.len, rec) < 0 ||
			rec->kind != STORE_REC_LEASE || rec->lease != lease)) {
		store_file_rec_free(rec);
		rc = err_set(-EIO, "%s/%s: corrupt lease record", b->dir, path);
	}
	sb_release(&sb);
	return rc;
}

struct lease_set {
	int64_t *ids;
	size_t n;
};

static int in_set(const struct lease_set *set, int64_t id)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->ids[i] == id)
			return 1;
	return 0;
}

struct key_list {
	char **keys;
	size_t n;
};

static int collect_lease_keys(struct store_file_rec *rec, void *arg)
{
	void **a = arg;
	const struct lease_set *set = a[0];
	struct key_list *out = a[1];
	if (rec->lease && in_set(set, rec->lease)) {
		out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(*out->keys));
		out->keys[out->n++] = rec->key;
		rec->key = NULL;
	}
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* scan_keys()'s quick look for collect_lease_keys(): a record's lease
 * from its last bytes, its key from its name, so that no megabyte of
 * model file is parsed to learn whose it is. */
static int lease_key_quick(struct store_backend *b, const char *name, void *arg)
{
	void **a = arg;
	const struct lease_set *set = a[0];
	struct key_list *out = a[1];
	char path[300], tail[128], key[STORE_KEY_MAX + 1];
	struct stat st;
	int64_t lease;
	ssize_t n = -1;

	key_path(path, sizeof(path), name);
	int fd = openat(b->dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -EAGAIN;	/* the slow way reports it */
	if (fstat(fd, &st) == 0 && st.st_size > (off_t)sizeof(tail)) {
		do
			n = pread(fd, tail, sizeof(tail), st.st_size - (off_t)sizeof(tail));
		while (n < 0 && errno == EINTR);
	}
	close(fd);
	if (n <= 0 || !store_file_record_lease(tail, (size_t)n, &lease))
		return -EAGAIN;
	if (!in_set(set, lease))
		return 0;
	if (store_file_name_key(name, key, sizeof(key)) < 0)
		return -EAGAIN;
	out->keys = xrealloc(out->keys, (out->n + 1) * sizeof(*out->keys));
	out->keys[out->n++] = xstrdup(key);
	return 0;
}

/* Delete the keys of the leases in set, then the lease records.  Under
 * the exclusive lock. */
static int drop_leases(struct store_backend *b, const struct lease_set *set)
{
	struct key_list kl = { 0 };
	void *a[2] = { (void *)set, &kl };
	int rc = scan_keys(b, NULL, lease_key_quick, collect_lease_keys, a);

	if (kl.n)
		qsort(kl.keys, kl.n, sizeof(*kl.keys), cmp_str);
	for (size_t i = 0; i < kl.n; i++) {
		if (rc == 0)
			rc = change(b, 0, kl.keys[i], NULL, 0, 0);
		free(kl.keys[i]);
	}
	free(kl.keys);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < set->n; i++) {
		char path[64];
		lease_path(path, sizeof(path), set->ids[i]);
		if (unlinkat(b->dirfd, path, 0) < 0 && errno != ENOENT)
			return err_set(-errno, "%s/%s: %s", b->dir, path, strerror(errno));
	}
	return 0;
}

/* The leases whose deadline passed (corrupt lease records count as
 * expired: nobody could renew them), and in *next the earliest deadline
 * of the others (INT64_MAX: none). */
static int expired_leases(struct store_backend *b, struct lease_set *set, int64_t *next)
{
	int fd = openat(b->dirfd, "leases", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "%s/leases: %s", b->dir, strerror(errno));
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return err_set(-errno, "%s/leases: %s", b->dir, strerror(errno));
	}
	int64_t now = wall_ms();
	struct dirent *de;
	set->ids = NULL;
	set->n = 0;
	*next = INT64_MAX;
	while ((de = readdir(d))) {
		const char *name = de->d_name;
		char *end;
		if (name[0] == '.' || strlen(name) != 16)
			continue;
		errno = 0;
		unsigned long long id = strtoull(name, &end, 16);
		if (*end || errno || id == 0 || id > INT64_MAX)
			continue;
		struct store_file_rec rec;
		int rc = read_lease(b, (int64_t)id, &rec);
		if (rc == -ENOENT)
			continue;
		if (rc < 0)
			LOG_WARN("store", "%s: treating it as expired", err_msg());
		if (rc < 0 || rec.expires_ms <= now) {
			set->ids = xrealloc(set->ids, (set->n + 1) * sizeof(*set->ids));
			set->ids[set->n++] = (int64_t)id;
		} else if (rec.expires_ms < *next) {
			*next = rec.expires_ms;
		}
		store_file_rec_free(&rec);
	}
	closedir(d);
	return 0;
}

/*
 * DIR/reap-at holds a time (ms since the epoch) before which no lease can
 * have expired: the earliest deadline seen by the last scan, lowered by
 * every grant of a lease that ends sooner (renewals only move deadlines
 * later).  Written under the exclusive lock, so it never runs ahead of a
 * lease.  It spares the scan of every lease file each reaper would do
 * every REAP_MS, which grows with the square of the number of processes
 * holding leases (64 mock workers: 16% of a core, idle).  Advisory: a
 * missing or unreadable hint means "scan now".
 */
static int64_t reap_hint(struct store_backend *b)
{
	char buf[32];
	int fd = openat(b->dirfd, "reap-at", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = 0;
	char *end;
	errno = 0;
	long long at = strtoll(buf, &end, 10);
	return errno || end == buf || (*end && *end != '\n') ? 0 : (int64_t)at;
}

/* Under the exclusive lock.  Not synced: losing it costs one scan. */
static void set_reap_hint(struct store_backend *b, int64_t at)
{
	char buf[32];
	int len = snprintf(buf, sizeof(buf), "%lld\n", (long long)at);
	int fd = openat(b->dirfd, ".tmp.reap-at", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int ok = fd_write_all(fd, buf, (size_t)len) == 0;
	close(fd);
	if (!ok || renameat(b->dirfd, ".tmp.reap-at", b->dirfd, "reap-at") < 0)
		unlinkat(b->dirfd, "reap-at", 0);
}

static int reap_locked(struct store_backend *b)
{
	struct lease_set set;
	int64_t next = 0;
	if (wall_ms() < reap_hint(b))
		return 0;
	int rc = expired_leases(b, &set, &next);
	if (rc == 0 && set.n) {
		LOG_DEBUG("store", "%s: reaping %zu expired lease(s)", b->dir, set.n);
		rc = drop_leases(b, &set);
	}
	if (rc == 0)
		set_reap_hint(b, next);
	free(set.ids);
	return rc;
}

/* ----------------------------------------------- lock, sync, reap, unlock */

static int file_open(const char *path, struct store_backend **out);

/* Is the store still the directory at its path?  Moved away or removed,
 * it is unavailable: fail with -EAGAIN (not -ENOENT, "no such key or
 * lease", nor -EIO, "corrupt") and keep the handle for when it returns.  A
 * different directory there now (moved back as a copy, or made anew) is
 * opened in its place; leases and watches find out through -ENOENT and
 * -ESTALE (the cursors of the old one are stale) and recover. */
static int check_dir(struct store_backend *b)
{
	struct stat now, ours;
	struct store_backend *nb;

	if (stat(b->dir, &now) < 0)
		return err_set(-EAGAIN, "%s: %s", b->dir, strerror(errno));
	if (!S_ISDIR(now.st_mode))
		return err_set(-EAGAIN, "%s: not a directory", b->dir);
	if (fstat(b->dirfd, &ours) == 0 && now.st_dev == ours.st_dev &&
	    now.st_ino == ours.st_ino)
		return 0;
	if (file_open(b->dir, &nb) < 0)
		return err_set(-EAGAIN, "%s", err_msg());
	LOG_INFO("store", "%s was replaced: using the directory there now", b->dir);
	close(b->lockfd);
	close(b->dirfd);
	free(b->dir);
	nb->gen = b->gen + 1;
	*b = *nb;
	free(nb);
	return 0;
}

/* Lock the store for a change (lock_op: LOCK_EX, or LOCK_EX | LOCK_NB
 * from the loop's timer), repair what a crash left and reap. */
static int begin_lock(struct store_backend *b, int lock_op)
{
	int rc = check_dir(b);
	if (rc < 0)
		return rc;
	rc = do_lock(b, lock_op);
	if (rc < 0)
		return rc;
	b->locked = 1;
	b->logfd = -1;
	rc = sync_log(b);
	if (rc == 0)
		rc = reap_locked(b);
	return rc;
}

static int begin(struct store_backend *b)
{
	return begin_lock(b, LOCK_EX);
}

static void end(struct store_backend *b)
{
	if (b->logfd >= 0 && b->log_off > (off_t)store_file_log_max) {
		if (new_segment(b, b->head) < 0)
			LOG_WARN("store", "rotating the log: %s", err_msg());
	}
	if (b->logfd >= 0)
		close(b->logfd);
	b->logfd = -1;
	if (b->locked)
		flock(b->lockfd, LOCK_UN);
	b->locked = 0;
}

/* --------------------------------------------------------------- open */

static void remove_temp_files(struct store_backend *b, const char *sub)
{
	int fd = openat(b->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, ".tmp.", 5) && strcmp(de->d_name, "log.new"))
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			LOG_DEBUG("store", "%s/%s: removed a stale temp file %s",
				  b->dir, sub, de->d_name);
	}
	closedir(d);
}

static void file_close(struct store_backend *b)
{
	if (!b)
		return;
	if (b->locked)
		end(b);
	if (b->lockfd >= 0)
		close(b->lockfd);
	if (b->dirfd >= 0)
		close(b->dirfd);
	free(b->dir);
	free(b);
}

/* Up to max bytes of s quoted for a one-line message: printable ASCII
 * as it is, anything else (newlines, control bytes, non-ASCII) as \n,
 * \t, \r or \xNN, and "..." when cut short. */
static void quote_for_message(struct strbuf *out, const char *s, size_t len, size_t max)
{
	for (size_t i = 0; i < len && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n')
			sb_adds(out, "\\n");
		else if (c == '\t')
			sb_adds(out, "\\t");
		else if (c == '\r')
			sb_adds(out, "\\r");
		else if (c == '\\')
			sb_adds(out, "\\\\");
		else if (c < 0x20 || c > 0x7e)
			sb_addf(out, "\\x%02x", c);
		else
			sb_addch(out, (char)c);
	}
	if (len > max)
		sb_adds(out, "...");
}

static int check_format(struct store_backend *b)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = read_at(b, "FORMAT", &sb);
	if (rc == -ENOENT) {
		sb_release(&sb);
		return write_atomic(b, "", "FORMAT", FORMAT_LINE, strlen(FORMAT_LINE));
	}
	if (rc == 0 && (sb.len != strlen(FORMAT_LINE) || memcmp(sb.buf, FORMAT_LINE, sb.len))) {
		/* Someone else's directory, or a damaged store: a failure to
		 * report (-EIO), not a bad argument.  Its content is quoted on
		 * one line: it may hold anything. */
		struct strbuf q = STRBUF_INIT;
		size_t len = sb.len;
		if (len && sb.buf[len - 1] == '\n')
			len--;
		quote_for_message(&q, sb.buf, len, 40);
		rc = err_set(-EIO, "%s is not a dyn file store (FORMAT says '%s', expected '%.*s')",
			     b->dir, q.buf, (int)strlen(FORMAT_LINE) - 1, FORMAT_LINE);
		sb_release(&q);
	}
	sb_release(&sb);
	return rc;
}

static int file_open(const char *path, struct store_backend **out)
{
	struct store_backend *b = xcalloc(1, sizeof(*b));
	int rc;

	b->dir = xstrdup(path);
	b->dirfd = b->lockfd = b->logfd = -1;
	if ((rc = fs_mkdirs(path, 0700)) < 0)
		goto fail;
	b->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (b->dirfd < 0) {
		rc = err_set(-errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	b->lockfd = openat(b->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (b->lockfd < 0) {
		rc = err_set(-errno, "%s/lock: %s", path, strerror(errno));
		goto fail;
	}
	if ((rc = do_lock(b, LOCK_EX)) < 0)
		goto fail;
	b->locked = 1;
	rc = check_format(b);
	for (const char *const *sub = (const char *const[]){ "keys", "leases", NULL };
	     rc == 0 && *sub; sub++) {
		if (mkdirat(b->dirfd, *sub, 0700) < 0 && errno != EEXIST)
			rc = err_set(-errno, "%s/%s: %s", path, *sub, strerror(errno));
	}
	if (rc == 0) {
		remove_temp_files(b, ".");
		remove_temp_files(b, "keys");
		remove_temp_files(b, "leases");
		b->logfd = -1;
		rc = sync_log(b);
	}
	end(b);
	if (rc < 0)
		goto fail;
	*out = b;
	return 0;
fail:
	file_close(b);
	return rc;
}

/* ---------------------------------------------------------- operations */

static int file_put(struct store_backend *b, const char *key, const void *val,
		    size_t len, int64_t lease, int create_only)
{
	struct store_file_rec rec;
	int rc = begin(b);
	if (rc < 0)
		goto out;
	if (lease) {
		rc = read_lease(b, lease, &rec);
		store_file_rec_free(&rec);
		if (rc < 0)
			goto out;
	}
	if (create_only) {
		rc = read_key(b, key, &rec);
		store_file_rec_free(&rec);
		if (rc == 0) {
			rc = err_set(-EEXIST, "key '%s' exists", key);
			goto out;
		}
		if (rc == -EIO)
			LOG_WARN("store", "%s; replacing it", err_msg());
		else if (rc != -ENOENT)
			goto out;
	}
	rc = change(b, 1, key, val, len, lease);
out:
	end(b);
	return rc;
}

static int file_get(struct store_backend *b, const char *key, struct store_kv *out)
{
	struct store_file_rec rec;
	int rc = begin(b);
	if (rc == 0)
		rc = read_key(b, key, &rec);
	end(b);
	if (rc == -ENOENT)
		return err_set(-ENOENT, "key '%s' not found", key);
	if (rc < 0)
		return rc;
	out->key = rec.key;
	out->value = rec.value;
	out->len = rec.len;
	out->lease = rec.lease;
	out->mod_revision = rec.rev;
	return 0;
}

static int file_del(struct store_backend *b, const char *key)
{
	struct store_file_rec rec;
	int rc = begin(b);
	if (rc == 0) {
		rc = read_key(b, key, &rec);
		store_file_rec_free(&rec);
		if (rc == -ENOENT)
			rc = err_set(-ENOENT, "key '%s' not found", key);
		else if (rc == 0 || rc == -EIO)
			rc = change(b, 0, key, NULL, 0, 0);
	}
	end(b);
	return rc;
}

struct list_acc {
	const char *prefix;
	size_t plen;
	struct store_kv *kvs;
	size_t n, cap;
};

static int list_cb(struct store_file_rec *rec, void *arg)
{
	struct list_acc *a = arg;
	if (strncmp(rec->key, a->prefix, a->plen))
		return 0;
	if (a->n == a->cap) {
		a->cap = a->cap ? a->cap * 2 : 16;
		a->kvs = xrealloc(a->kvs, a->cap * sizeof(*a->kvs));
	}
	struct store_kv *kv = &a->kvs[a->n++];
	kv->key = rec->key;
	kv->value = rec->value;
	kv->len = rec->len;
	kv->lease = rec->lease;
	kv->mod_revision = rec->rev;
	rec->key = rec->value = NULL;
	return 0;
}

static int list_locked(struct store_backend *b, const char *prefix, struct store_kv **kvs,
		       size_t *n, int64_t *rev, int lock_op)
{
	struct list_acc a = { prefix, strlen(prefix), NULL, 0, 0 };
	struct strbuf enc = STRBUF_INIT;

	encode_name(&enc, prefix);
	int rc = begin_lock(b, lock_op);
	if (rc == 0)
		rc = scan_keys(b, enc.buf, NULL, list_cb, &a);
	*rev = b->head;
	end(b);
	sb_release(&enc);
	if (rc < 0) {
		store_kvs_free(a.kvs, a.n);
		return rc;
	}
	if (a.n)
		qsort(a.kvs, a.n, sizeof(*a.kvs), store_kv_cmp);
	*kvs = a.kvs;
	*n = a.n;
	return 0;
}

static int file_list(struct store_backend *b, const char *prefix,
		     struct store_kv **kvs, size_t *n, int64_t *rev)
{
	return list_locked(b, prefix, kvs, n, rev, LOCK_EX);
}

/* A watch's re-snapshot on the loop: -EBUSY rather than waiting (a
 * watcher falls behind two log segments exactly while a worker writes
 * megabyte records, each of which rotates the log). */
static int file_list_nb(struct store_backend *b, const char *prefix,
			struct store_kv **kvs, size_t *n, int64_t *rev)
{
	return list_locked(b, prefix, kvs, n, rev, LOCK_EX | LOCK_NB);
}

static int file_lease_grant(struct store_backend *b, int64_t ttl_ms, int64_t *lease)
{
	struct strbuf sb = STRBUF_INIT;
	int rc = begin(b);
	if (rc == 0) {
		int64_t id;
		char path[64];
		struct stat st;
		do {
			id = store_random_id();
			lease_path(path, sizeof(path), id);
		} while (fstatat(b->dirfd, path, &st, 0) == 0);
		int64_t expires = wall_ms() + ttl_ms;
		fmt_lease(&sb, id, ttl_ms, expires);
		char name[20];
		snprintf(name, sizeof(name), "%016" PRIx64, (uint64_t)id);
		rc = write_atomic(b, "leases", name, sb.buf, sb.len);
		if (rc == 0)
			*lease = id;
		if (rc == 0 && expires < reap_hint(b))
			set_reap_hint(b, expires);
	}
	end(b);
	sb_release(&sb);
	return rc;
}

static int keepalive(struct store_backend *b, int64_t lease, int lock_op)
{
	struct store_file_rec rec;
	struct strbuf sb = STRBUF_INIT;
	int rc = begin_lock(b, lock_op);	/* reaps it if it expired */
	if (rc == 0)
		rc = read_lease(b, lease, &rec);
	if (rc == -EIO) {	/* garbled on disk: nobody can renew it */
		struct lease_set set = { &lease, 1 };
		LOG_WARN("store", "%s: dropping the lease", err_msg());
		rc = drop_leases(b, &set);
		if (rc == 0)
			rc = err_set(-ENOENT, "lease %016" PRIx64 " not found (its record was "
					      "garbled)", (uint64_t)lease);
	}
	if (rc == 0) {
		char name[20];
		fmt_lease(&sb, lease, rec.ttl_ms, wall_ms() + rec.ttl_ms);
		snprintf(name, sizeof(name), "%016" PRIx64, (uint64_t)lease);
		rc = write_atomic(b, "leases", name, sb.buf, sb.len);
		store_file_rec_free(&rec);
	}
	end(b);
	sb_release(&sb);
	return rc;
}

static int file_lease_keepalive(struct store_backend *b, int64_t lease)
{
	return keepalive(b, lease, LOCK_EX);
}

/* The loop's renewals: -EBUSY while another process holds the store (a
 * worker publishing its model files), and the loop retries soon. */
static int file_lease_keepalive_nb(struct store_backend *b, int64_t lease)
{
	return keepalive(b, lease, LOCK_EX | LOCK_NB);
}

static int file_lease_ttl(struct store_backend *b, int64_t lease, int64_t *ttl_ms)
{
	struct store_file_rec rec;
	int rc = read_lease(b, lease, &rec);
	if (rc == 0)
		*ttl_ms = rec.ttl_ms;
	store_file_rec_free(&rec);
	return rc;
}

static int file_lease_revoke(struct store_backend *b, int64_t lease)
{
	struct store_file_rec rec;
	int rc = begin(b);
	if (rc == 0) {
		rc = read_lease(b, lease, &rec);
		store_file_rec_free(&rec);
		if (rc == 0 || rc == -EIO) {
			struct lease_set set = { &lease, 1 };
			rc = drop_leases(b, &set);
		}
	}
	end(b);
	return rc;
}

static int file_reap(struct store_backend *b)
{
	/* Usually nothing can have expired yet: one small read, no lock. */
	if (wall_ms() < reap_hint(b))
		return 0;
	/* Busy, the holder reaps: every locked operation does. */
	int rc = begin_lock(b, LOCK_EX | LOCK_NB);
	end(b);
	return rc == -EBUSY ? 0 : rc;
}

/* ---------------------------------------------------------- change feed */

static int file_cursor_open(struct store_backend *b, const char *prefix,
			    int64_t rev, void **cursor)
{
	struct fcursor *c = xcalloc(1, sizeof(*c));
	c->gen = b->gen;
	c->prefix = xstrdup(prefix);
	c->plen = strlen(prefix);
	c->rev = rev;
	*cursor = c;
	return 0;
}

static void file_cursor_close(struct store_backend *b, void *cursor)
{
	struct fcursor *c = cursor;
	(void)b;
	if (!c)
		return;
	free(c->prefix);
	free(c);
}

struct feed {
	struct fcursor *c;
	int64_t rev;		/* last revision collected */
	int gap;
	struct store_change *out;
	size_t n, cap;
};

static int feed_cb(struct store_file_rec *rec, void *arg)
{
	struct feed *f = arg;
	if (rec->rev <= f->rev)
		return 0;
	if (rec->rev != f->rev + 1) {
		f->gap = 1;
		return 1;
	}
	f->rev = rec->rev;
	if (strncmp(rec->key, f->c->prefix, f->c->plen))
		return 0;
	struct store_change *ch = store_change_push(&f->out, &f->n, &f->cap);
	ch->type = rec->kind == STORE_REC_PUT ? STORE_EV_PUT : STORE_EV_DELETE;
	ch->key = rec->key;
	ch->value = rec->value;
	ch->len = rec->len;
	ch->lease = rec->lease;
	ch->rev = rec->rev;
	rec->key = rec->value = NULL;
	return 0;
}

/* Collect the events of one segment file after f->rev. */
static int feed_segment(struct store_backend *b, const char *which, int fd,
			struct feed *f, off_t from, off_t *end)
{
	int partial;
	int rc = scan_log(b, fd, which, from, end, &partial, feed_cb, f);
	if (rc < 0)
		return rc;
	return f->gap ? -ESTALE : 0;
}

static int file_changes(struct store_backend *b, void *cursor,
			struct store_change **out, size_t *n)
{
	struct fcursor *c = cursor;
	struct stat st;
	struct feed f = { c, c->rev, 0, NULL, 0, 0 };
	int fd = -1, fd1 = -1, rc;
	int64_t base, base1;
	off_t hdr, hdr1, end;

	*out = NULL;
	*n = 0;
	if ((rc = check_dir(b)) < 0)
		return rc;
	if (c->gen != b->gen)
		return -ESTALE;
	/* Cheap check without the lock: has the log changed at all? */
	if (c->have_pos && fstatat(b->dirfd, "log", &st, 0) == 0 &&
	    st.st_ino == c->ino && st.st_size == c->off &&
	    st.st_mtim.tv_sec == c->mtime.tv_sec && st.st_mtim.tv_nsec == c->mtime.tv_nsec)
		return 0;
	/* Never wait for a writer on the loop: a worker publishing its model
	 * files holds the lock for tens of operations in a row. */
	if ((rc = do_lock(b, LOCK_SH | LOCK_NB)) < 0)
		return rc;
	fd = openat(b->dirfd, "log", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? -ESTALE : err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		rc = err_set(-errno, "%s/log: %s", b->dir, strerror(errno));
		goto out;
	}
	if (read_header(b, fd, "log", &base, &hdr) < 0) {
		rc = -ESTALE;	/* the next writer recovers the log */
		goto out;
	}
	if (c->have_pos && st.st_ino == c->ino && base == c->base && st.st_size >= c->off) {
		rc = feed_segment(b, "log", fd, &f, c->off, &end);
	} else if (c->rev >= base) {
		rc = feed_segment(b, "log", fd, &f, hdr, &end);
	} else {
		/* What we need starts in the previous segment. */
		fd1 = openat(b->dirfd, "log.1", O_RDONLY | O_CLOEXEC);
		if (fd1 < 0 || read_header(b, fd1, "log.1", &base1, &hdr1) < 0 ||
		    c->rev < base1) {
			rc = -ESTALE;
			goto out;
		}
		off_t end1;
		rc = feed_segment(b, "log.1", fd1, &f, hdr1, &end1);
		if (rc == 0 && f.rev != base)
			rc = -ESTALE;	/* log.1 does not end where log starts */
		if (rc == 0)
			rc = feed_segment(b, "log", fd, &f, hdr, &end);
	}
	if (rc == 0) {
		c->rev = f.rev;
		c->have_pos = 1;
		c->ino = st.st_ino;
		c->base = base;
		c->mtime = st.st_mtim;
		c->off = end;
	}
out:
	if (fd >= 0)
		close(fd);
	if (fd1 >= 0)
		close(fd1);
	flock(b->lockfd, LOCK_UN);
	if (rc < 0) {
		store_changes_free(f.out, f.n);
		return rc;
	}
	*out = f.out;
	*n = f.n;
	return 0;
}

const struct store_backend_ops store_file_ops = {
	.scheme = "file",
	.open = file_open,
	.close = file_close,
	.put = file_put,
	.get = file_get,
	.del = file_del,
	.list = file_list,
	.lease_grant = file_lease_grant,
	.lease_keepalive = file_lease_keepalive,
	.lease_keepalive_nb = file_lease_keepalive_nb,
	.list_nb = file_list_nb,
	.lease_revoke = file_lease_revoke,
	.lease_ttl = file_lease_ttl,
	.reap = file_reap,
	.cursor_open = file_cursor_open,
	.changes = file_changes,
	.cursor_close = file_cursor_close,
};
