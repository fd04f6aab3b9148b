/*
 * hub.c - download a model snapshot from a Hugging Face hub endpoint into
 * the hub cache with libcurl: revision lookup, per-file HEAD for ETag and
 * size, resumable GET into blobs/ETAG.incomplete, size and checksum
 * checks, then the snapshot symlink (see hub.h; cache layout in
 * hub_cache.c).
 */
#include "core/fsutil.h"
#include "core/model/hub.h"
#include "core/model/digest.h"
#include "core/model/hub_int.h"
#include "core/model/safetensors.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define API_BODY_MAX (32u << 20)
#define ERR_BODY_MAX 4096
#define MAX_REDIRECTS 5
#define MAX_FAILS 5		/* consecutive attempts without progress */
#define INDEX_NAME "model.safetensors.index.json"
#define INDEX_MAX (64u << 20)

struct http_resp {
	long status;
	char etag[256];
	char linked_etag[256];
	char commit[64];
	char error_code[64];
	char error_message[256];
	char location[2048];
	int64_t linked_size;
	int64_t content_length;
	int64_t range_start;		/* from Content-Range, -1 if none */
};

struct file_job {
	char *name;
	char etag[256];
	uint64_t size;
	int done;			/* already in the snapshot */
	int skip;			/* weights the checkpoint does not use */
};

struct pull {
	const char *repo;
	const char *revision;
	const struct hub_opts *opts;
	struct hub_env env;
	char *repo_dir;
	char commit[41];
	struct file_job *files;
	size_t nfiles;
	int fetch_count;		/* files to fetch */
	int fetch_index;
	uint64_t total, done_before;	/* bytes over fetched files */
	uint64_t t0_ns, last_progress_ns;
	struct hub_result *res;
};

/* One request in flight. */
struct xfer {
	struct http_resp *resp;
	struct strbuf *body;		/* non-file body (JSON, error text) */
	size_t body_max;
	int fd;				/* download target, or -1 */
	uint64_t have;			/* bytes in fd before this request */
	uint64_t written;		/* bytes written to fd by this request */
	int started;
	int bad_range;
	int restarted;			/* the server ignored Range: the file began again */
	int write_errno;
	struct pull *pull;		/* for progress, or NULL */
	struct file_job *job;
	/* A server that accepts and then says nothing: say what we wait for. */
	const char *url;
	uint64_t t0_ns;
	long next_notice_s, limit_s;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void resp_reset(struct http_resp *r)
{
	memset(r, 0, sizeof(*r));
	r->linked_size = -1;
	r->content_length = -1;
	r->range_start = -1;
}

/* Copy a header value, trimmed, into dst[size]. */
static void header_value(char *dst, size_t size, const char *v, size_t n)
{
	while (n && isspace((unsigned char)*v))
		v++, n--;
	while (n && isspace((unsigned char)v[n - 1]))
		n--;
	if (n >= size)
		n = size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int64_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v > INT64_MAX)
		return -1;
	return (int64_t)v;
}

static size_t on_header(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	struct http_resp *r = x->resp;
	size_t len = size * n;
	char val[2048];
	const char *colon;

	if (len >= 5 && !strncmp(buf, "HTTP/", 5)) {
		const char *sp = memchr(buf, ' ', len);
		resp_reset(r);
		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		return len;
	}
	colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - buf);
	header_value(val, sizeof(val), colon + 1, len - nlen - 1);
#define IS(name) (nlen == sizeof(name) - 1 && !strncasecmp(buf, name, nlen))
	if (IS("etag"))
		header_value(r->etag, sizeof(r->etag), val, strlen(val));
	else if (IS("x-linked-etag"))
		header_value(r->linked_etag, sizeof(r->linked_etag), val, strlen(val));
	else if (IS("x-repo-commit"))
		header_value(r->commit, sizeof(r->commit), val, strlen(val));
	else if (IS("x-error-code"))
		header_value(r->error_code, sizeof(r->error_code), val, strlen(val));
	else if (IS("x-error-message"))
		header_value(r->error_message, sizeof(r->error_message), val, strlen(val));
	else if (IS("location"))
		header_value(r->location, sizeof(r->location), val, strlen(val));
	else if (IS("x-linked-size"))
		r->linked_size = parse_size(val);
	else if (IS("content-length"))
		r->content_length = parse_size(val);
	else if (IS("content-range") && !strncasecmp(val, "bytes ", 6))
		r->range_start = parse_size(strndupa(val + 6, strcspn(val + 6, "-")));
#undef IS
	return len;
}

static void report_progress(struct pull *p, struct file_job *job, uint64_t file_done,
			    int finished)
{
	uint64_t now = mono_ns();
	struct hub_progress hp;

	if (!p->opts->progress)
		return;
	if (!finished && now - p->last_progress_ns < 100000000u)
		return;
	p->last_progress_ns = now;
	hp = (struct hub_progress){
		.repo = p->repo,
		.file = job->name,
		.file_index = p->fetch_index,
		.file_count = p->fetch_count,
		.file_done = file_done,
		.file_total = job->size,
		.done = p->done_before + file_done,
		.total = p->total,
		.elapsed_s = (double)(now - p->t0_ns) / 1e9,
		.file_finished = finished,
	};
	p->opts->progress(p->opts->progress_arg, &hp);
}

static size_t on_body(char *buf, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	long st = x->resp->status;

	if (x->fd >= 0 && (st == 200 || st == 206)) {
		if (!x->started) {
			x->started = 1;
			if (st == 206 && x->resp->range_start != (int64_t)x->have) {
				x->bad_range = 1;
				return 0;
			}
			if (st == 200 && x->have) {	/* the server ignored Range */
				if (ftruncate(x->fd, 0) < 0 || lseek(x->fd, 0, SEEK_SET) < 0) {
					x->write_errno = errno;
					return 0;
				}
				x->have = 0;
				x->restarted = 1;
			}
		}
		for (size_t off = 0; off < len;) {
			ssize_t w = write(x->fd, buf + off, len - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				x->write_errno = errno;
				return 0;
			}
			off += (size_t)w;
		}
		x->written += len;
		if (x->pull)
			report_progress(x->pull, x->job, x->have + x->written, 0);
		return len;
	}
	if (x->body && x->body->len < x->body_max)
		sb_add(x->body, buf, len < x->body_max - x->body->len ? len : x->body_max - x->body->len);
	return len;
}

enum req_kind { REQ_API, REQ_HEAD, REQ_GET };

/*
 * One HTTP request.  Returns the curl code; *resp holds the final
 * response's status and headers.
 */
#define SILENCE_FIRST_NOTICE_S 3
#define SILENCE_NOTICE_EVERY_S 10

/* libcurl's transfer callback: while nothing at all has come back, a
 * warning every so often names the URL and when this attempt gives up. */
static int on_xferinfo(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct xfer *x = arg;
	(void)dltotal, (void)ultotal, (void)ulnow;
	if (dlnow > 0 || x->resp->status)
		return 0;
	long waited = (long)((mono_ns() - x->t0_ns) / 1000000000u);
	if (waited >= x->next_notice_s) {
		LOG_WARN("hub", "no answer yet from %s after %ld s (this attempt gives up after "
			 "%ld s)", x->url, waited, x->limit_s);
		x->next_notice_s = waited + SILENCE_NOTICE_EVERY_S;
	}
	return 0;
}

static CURLcode http_do(const struct hub_env *env, enum req_kind kind, const char *url,
			struct xfer *x, char *errbuf)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hdrs = NULL;
	char range[64], auth[4096 + 32];
	CURLcode rc;

	if (!c)
		return CURLE_FAILED_INIT;
	resp_reset(x->resp);
	errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "dyn/" DYN_VERSION);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, env->etag_timeout);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (env->token && strlen(env->token) < 4096) {
		/* libcurl does not pass a custom Authorization header on to
		 * another host when it follows a redirect. */
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", env->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	switch (kind) {
	case REQ_API:
		curl_easy_setopt(c, CURLOPT_TIMEOUT, env->etag_timeout * 3);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
		break;
	case REQ_HEAD:
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		curl_easy_setopt(c, CURLOPT_TIMEOUT, env->etag_timeout);
		hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
		break;
	case REQ_GET:
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)MAX_REDIRECTS);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, env->download_timeout);
		hdrs = curl_slist_append(hdrs, "Accept-Encoding: identity");
		if (x->have) {
			snprintf(range, sizeof(range), "Range: bytes=%llu-",
				 (unsigned long long)x->have);
			hdrs = curl_slist_append(hdrs, range);
		}
		break;
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	x->url = url;
	x->t0_ns = mono_ns();
	x->next_notice_s = SILENCE_FIRST_NOTICE_S;
	x->limit_s = kind == REQ_API ? env->etag_timeout * 3 : kind == REQ_HEAD ? env->etag_timeout
			: env->download_timeout;
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_xferinfo);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	rc = curl_easy_perform(c);
	if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR) {
		long st = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
		if (st)
			x->resp->status = st;
		if (kind == REQ_HEAD && x->resp->status >= 300 && x->resp->status < 400) {
			char *redir = NULL;
			curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &redir);
			if (redir)
				snprintf(x->resp->location, sizeof(x->resp->location), "%s", redir);
		}
	}
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return rc;
}

static int transient_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_GOT_NOTHING:
	case CURLE_COULDNT_CONNECT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static const char *curl_why(CURLcode rc, const char *errbuf)
{
	return errbuf && errbuf[0] ? errbuf : curl_easy_strerror(rc);
}

/* Strip W/ and quotes from an ETag. */
static void normalize_etag(char *e)
{
	char *s = e;
	size_t n;

	if (!strncmp(s, "W/", 2))
		s += 2;
	n = strlen(s);
	if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
		s++;
		n -= 2;
	}
	memmove(e, s, n);
	e[n] = '\0';
}

static int safe_etag(const char *e)
{
	if (!e[0] || strlen(e) > 200)
		return 0;
	for (const char *p = e; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return 0;
	return e[0] != '.';
}

/* The error for a non-success HTTP status of a request about what. */
static int http_error(const struct pull *p, const struct http_resp *r, const char *what,
		      const struct strbuf *body)
{
	const char *msg = r->error_message[0] ? r->error_message : "";

	if (r->status == 401 || r->status == 403) {
		if (p->env.token)
			return err_set(-EACCES, "access to %s denied by %s (HTTP %ld): the "
				       "token in HF_TOKEN does not grant access to this gated or "
				       "private repository%s%s", p->repo, p->env.endpoint,
				       r->status, msg[0] ? ": " : "", msg);
		return err_set(-EACCES, "access to %s denied by %s (HTTP %ld): the repository "
			       "is gated or private (or does not exist); set HF_TOKEN to a token "
			       "with access%s%s", p->repo, p->env.endpoint, r->status,
			       msg[0] ? ": " : "", msg);
	}
	if (r->status == 404) {
		if (!strcmp(r->error_code, "RevisionNotFound"))
			return err_set(-ENOENT, "revision '%s' not found in %s on %s",
				       p->revision, p->repo, p->env.endpoint);
		if (!strcmp(r->error_code, "RepoNotFound"))
			return err_set(-ENOENT, "repository %s not found on %s", p->repo,
				       p->env.endpoint);
		return err_set(-ENOENT, "%s not found on %s (HTTP 404)", what, p->env.endpoint);
	}
	return err_set(-EIO, "%s: HTTP %ld from %s%s%.200s", what, r->status, p->env.endpoint,
		       msg[0] || (body && body->len) ? ": " : "",
		       msg[0] ? msg : body ? body->buf : "");
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* GET the revision info: commit and file list. */
static int fetch_revision(struct pull *p, int *unreachable)
{
	struct strbuf url = STRBUF_INIT, body = STRBUF_INIT, what = STRBUF_INIT;
	struct http_resp r;
	struct xfer x = { .resp = &r, .body = &body, .body_max = API_BODY_MAX, .fd = -1 };
	char errbuf[CURL_ERROR_SIZE];
	char *rev_esc = curl_easy_escape(NULL, p->revision, 0);
	cJSON *root = NULL;
	const cJSON *sha, *sib;
	CURLcode cc;
	int rc = 0;

	*unreachable = 0;
	sb_addf(&url, "%s/api/models/%s/revision/%s", p->env.endpoint, p->repo,
		rev_esc ? rev_esc : p->revision);
	curl_free(rev_esc);
	sb_addf(&what, "repository %s (revision %s)", p->repo, p->revision);
	for (int attempt = 0;; attempt++) {
		sb_reset(&body);
		cc = http_do(&p->env, REQ_API, url.buf, &x, errbuf);
		int retry = (cc != CURLE_OK && transient_curl(cc) && cc != CURLE_COULDNT_CONNECT) ||
			    (cc == CURLE_OK && (r.status >= 500 || r.status == 429));
		if (!retry || attempt >= 2)
			break;
		LOG_WARN("hub", "%s: %s; trying again (attempt %d of 3)", url.buf,
			 cc != CURLE_OK ? curl_why(cc, errbuf) : "server busy", attempt + 2);
		sleep_ms(250u << attempt);
	}
	if (cc != CURLE_OK) {
		*unreachable = 1;
		rc = err_set(-EIO, "cannot reach %s: %s", p->env.endpoint, curl_why(cc, errbuf));
		goto out;
	}
	if (r.status < 200 || r.status >= 300) {
		rc = http_error(p, &r, what.buf, &body);
		goto out;
	}
	root = cJSON_ParseWithLength(body.buf, body.len);
	sha = root ? cJSON_GetObjectItemCaseSensitive(root, "sha") : NULL;
	sib = root ? cJSON_GetObjectItemCaseSensitive(root, "siblings") : NULL;
	if (!cJSON_IsString(sha) || !hub_is_commit(sha->valuestring) || !cJSON_IsArray(sib)) {
		rc = err_set(-EIO, "%s: %s returned an unexpected answer (no commit \"sha\" "
			     "or \"siblings\" list)", what.buf, url.buf);
		goto out;
	}
	memcpy(p->commit, sha->valuestring, 41);
	size_t n = (size_t)cJSON_GetArraySize(sib);
	p->files = xcalloc(n ? n : 1, sizeof(*p->files));
	for (const cJSON *s = sib->child; s; s = s->next) {
		const cJSON *f = cJSON_GetObjectItemCaseSensitive(s, "rfilename");
		if (!cJSON_IsString(f) || !hub_wanted_file(f->valuestring, p->opts->skip_weights))
			continue;
		p->files[p->nfiles++].name = xstrdup(f->valuestring);
	}
out:
	cJSON_Delete(root);
	sb_release(&url);
	sb_release(&body);
	sb_release(&what);
	return rc;
}

/* {endpoint}/{repo}/resolve/{commit}/{file}, the file name escaped. */
static void resolve_url(struct strbuf *url, const struct pull *p, const struct file_job *job)
{
	char *esc = curl_easy_escape(NULL, job->name, 0);

	sb_addf(url, "%s/%s/resolve/%s/%s", p->env.endpoint, p->repo, p->commit,
		esc ? esc : job->name);
	curl_free(esc);
}

/* HEAD a file: its ETag and size, following same-host redirects. */
static int head_file(struct pull *p, struct file_job *job)
{
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT;
	struct http_resp r;
	struct xfer x = { .resp = &r, .fd = -1 };
	char errbuf[CURL_ERROR_SIZE];
	CURLcode cc = CURLE_OK;
	int rc = 0;

	resolve_url(&url, p, job);
	sb_addf(&what, "file %s in %s (revision %s)", job->name, p->repo, p->revision);
	for (int hops = 0, attempt = 0;;) {
		cc = http_do(&p->env, REQ_HEAD, url.buf, &x, errbuf);
		if ((cc != CURLE_OK && transient_curl(cc)) ||
		    (cc == CURLE_OK && (r.status >= 500 || r.status == 429))) {
			if (++attempt >= MAX_FAILS)
				break;
			sleep_ms(250u << (attempt - 1));
			continue;
		}
		if (cc != CURLE_OK)
			break;
		int redirect = r.status >= 300 && r.status < 400;
		/* A CDN redirect carries the file's metadata; a redirect
		 * without it (a renamed repo) is followed. */
		if (redirect && !r.linked_etag[0] && !r.etag[0] && r.location[0] &&
		    ++hops <= MAX_REDIRECTS) {
			sb_reset(&url);
			sb_adds(&url, r.location);
			continue;
		}
		break;
	}
	if (cc != CURLE_OK) {
		rc = err_set(-EIO, "%s: %s", what.buf, curl_why(cc, errbuf));
		goto out;
	}
	if (r.status >= 400 || r.status < 200) {
		rc = http_error(p, &r, what.buf, NULL);
		goto out;
	}
	if (r.commit[0] && strcmp(r.commit, p->commit))
		LOG_WARN("hub", "%s: the hub answered for commit %s, expected %s", what.buf,
			 r.commit, p->commit);
	snprintf(job->etag, sizeof(job->etag), "%s", r.linked_etag[0] ? r.linked_etag : r.etag);
	normalize_etag(job->etag);
	if (!safe_etag(job->etag)) {
		rc = err_set(-EIO, "%s: the hub sent %s ETag", what.buf,
			     job->etag[0] ? "an unusable" : "no");
		goto out;
	}
	int64_t size = r.linked_size >= 0 ? r.linked_size :
		       r.status < 300 ? r.content_length : -1;
	if (size < 0) {
		rc = err_set(-EIO, "%s: the hub sent no file size", what.buf);
		goto out;
	}
	job->size = (uint64_t)size;
out:
	sb_release(&url);
	sb_release(&what);
	return rc;
}

static int file_size_of(const char *path, uint64_t *size)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return -errno;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* The blob's contents match its ETag (when the ETag is a content hash). */
static int verify_blob(const char *path, const char *etag, const char *what)
{
	char hex[65];
	size_t n = strlen(etag);
	int is_hex = 1, rc;

	for (const char *s = etag; *s; s++)
		is_hex &= isxdigit((unsigned char)*s) && !isupper((unsigned char)*s);
	if (!is_hex || (n != 64 && n != 40)) {
		LOG_DEBUG("hub", "%s: ETag %s is not a content hash; size checked only", what, etag);
		return 0;
	}
	rc = n == 64 ? digest_file_sha256(path, hex) : digest_file_git_sha1(path, hex);
	if (rc < 0)
		return rc;
	if (strcmp(hex, etag))
		return err_set(-EIO, "%s: checksum mismatch: the download has %s %s, the hub "
			       "announced %s (the partial file was removed; retry)",
			       what, n == 64 ? "SHA-256" : "git SHA-1", hex, etag);
	return 0;
}

/* Download one file into blobs/ETAG (resuming), verified. */
static int fetch_blob(struct pull *p, struct file_job *job)
{
	struct strbuf blob = STRBUF_INIT, inc = STRBUF_INIT, lock = STRBUF_INIT;
	struct strbuf url = STRBUF_INIT, what = STRBUF_INIT, body = STRBUF_INIT;
	struct strbuf blobs = STRBUF_INIT;
	char *lock_dir = hub_lock_dir(p->env.cache, p->repo);
	char errbuf[CURL_ERROR_SIZE], why[CURL_ERROR_SIZE + 160];
	int lock_fd = -1, fd = -1, rc, fails = 0;
	uint64_t have = 0, size = 0;
	uint64_t most = 0;	/* the largest the partial file has been */

	sb_addf(&blobs, "%s/blobs", p->repo_dir);
	sb_addf(&blob, "%s/%s", blobs.buf, job->etag);
	sb_addf(&inc, "%s.incomplete", blob.buf);
	sb_addf(&lock, "%s/%s.lock", lock_dir, job->etag);
	resolve_url(&url, p, job);
	sb_addf(&what, "%s/%s", p->repo, job->name);
	if ((rc = fs_mkdirs(lock_dir, 0755)) < 0 || (rc = fs_mkdirs(blobs.buf, 0755)) < 0)
		goto out;
	lock_fd = open(lock.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (lock_fd < 0) {
		rc = err_set(-errno, "%s: %s", lock.buf, strerror(errno));
		goto out;
	}
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		LOG_INFO("hub", "%s: waiting for another process that is downloading it", what.buf);
		while (flock(lock_fd, LOCK_EX) < 0 && errno == EINTR)
			;
	}
	if (file_size_of(blob.buf, &size) == 0 && size == job->size)
		goto done;	/* already there (or another process fetched it) */
	fd = open(inc.buf, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = err_set(-errno, "%s: %s", inc.buf, strerror(errno));
		goto out;
	}
	for (;;) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0) {
			rc = err_set(-errno, "%s: %s", inc.buf, strerror(errno));
			goto out;
		}
		have = (uint64_t)end;
		if (have > most)
			most = have;
		if (have > job->size) {
			unlink(inc.buf);
			rc = err_set(-EIO, "%s: size mismatch: received %llu bytes, more than the "
				     "%llu the hub announced", what.buf, (unsigned long long)have,
				     (unsigned long long)job->size);
			goto out;
		}
		if (have == job->size)
			break;
		if (have)
			LOG_INFO("hub", "%s: resuming at byte %llu of %llu", what.buf,
				 (unsigned long long)have, (unsigned long long)job->size);
		struct http_resp r;
		struct xfer x = { .resp = &r, .body = &body, .body_max = ERR_BODY_MAX,
				  .fd = fd, .have = have, .pull = p, .job = job };
		sb_reset(&body);
		report_progress(p, job, have, 0);
		CURLcode cc = http_do(&p->env, REQ_GET, url.buf, &x, errbuf);
		if (x.write_errno) {
			rc = err_set(-x.write_errno, "%s: %s", inc.buf, strerror(x.write_errno));
			goto out;
		}
		if (cc == CURLE_OK && r.status == 416) {
			/* Nothing at or after byte `have`: the file is shorter
			 * than announced. */
			unlink(inc.buf);
			rc = err_set(-EIO, "%s: size mismatch: the server has no bytes from %llu "
				     "on, but the hub announced %llu bytes", what.buf,
				     (unsigned long long)have, (unsigned long long)job->size);
			goto out;
		}
		if (x.bad_range) {
			LOG_WARN("hub", "%s: the server did not resume at byte %llu; starting over",
				 what.buf, (unsigned long long)have);
			if (ftruncate(fd, 0) < 0) {
				rc = err_set(-errno, "%s: %s", inc.buf, strerror(errno));
				goto out;
			}
			if (++fails >= MAX_FAILS) {
				rc = err_set(-EIO, "%s: the server keeps failing to resume", what.buf);
				goto out;
			}
			continue;
		}
		int server_busy = cc == CURLE_OK && (r.status >= 500 || r.status == 429);
		uint64_t now_have = x.have + x.written;
		if (cc == CURLE_OK && r.status != 200 && r.status != 206 && !server_busy) {
			rc = http_error(p, &r, what.buf, &body);
			goto out;
		}
		if (cc != CURLE_OK && !transient_curl(cc)) {
			rc = err_set(-EIO, "%s: %s", what.buf, curl_why(cc, errbuf));
			goto out;
		}
		if (cc == CURLE_OK && !server_busy && now_have >= job->size)
			continue;	/* complete, or too long: checked above */
		/* Interrupted, short, or a transient server error: retry,
		 * giving up after MAX_FAILS attempts in a row without progress.
		 * Progress means the file grew past the largest it has been:
		 * a server that ignores Range (or resumes at the wrong byte)
		 * starts it over, and a line that drops at the same byte
		 * each time would otherwise loop for ever. */
		if (cc != CURLE_OK)
			snprintf(why, sizeof(why), "%s", curl_why(cc, errbuf));
		else if (server_busy)
			snprintf(why, sizeof(why), "HTTP %ld", r.status);
		else
			snprintf(why, sizeof(why), "the response ended early");
		if (x.restarted)
			snprintf(why + strlen(why), sizeof(why) - strlen(why),
				 "; the server ignored the Range request and sent the file "
				 "from byte 0");
		fails = now_have > most ? 0 : fails + 1;
		if (now_have > most)
			most = now_have;
		if (fails >= MAX_FAILS) {
			rc = err_set(-EIO, "download of %s failed at byte %llu of %llu (%s; "
				     "%d attempts in a row without progress; the partial file "
				     "is kept; run again to resume)",
				     what.buf, (unsigned long long)now_have,
				     (unsigned long long)job->size, why, MAX_FAILS);
			goto out;
		}
		LOG_WARN("hub", "%s: download interrupted at byte %llu of %llu (%s); retrying",
			 what.buf, (unsigned long long)now_have,
			 (unsigned long long)job->size, why);
		sleep_ms(fails ? 250u << (fails - 1) : 100u);
	}
	if (fsync(fd) < 0) {
		rc = err_set(-errno, "%s: %s", inc.buf, strerror(errno));
		goto out;
	}
	close(fd);
	fd = -1;
	if ((rc = verify_blob(inc.buf, job->etag, what.buf)) < 0) {
		unlink(inc.buf);
		goto out;
	}
	if (rename(inc.buf, blob.buf) < 0) {
		rc = err_set(-errno, "rename %s: %s", blob.buf, strerror(errno));
		goto out;
	}
	p->res->files_fetched++;
	p->res->bytes_fetched += job->size;
done:
	report_progress(p, job, job->size, 1);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (lock_fd >= 0)
		close(lock_fd);	/* releases the lock */
	free(lock_dir);
	sb_release(&blobs);
	sb_release(&blob);
	sb_release(&inc);
	sb_release(&lock);
	sb_release(&url);
	sb_release(&what);
	sb_release(&body);
	return rc;
}

/* snapshots/COMMIT/FILE already resolves to a file. */
static int in_snapshot(const struct pull *p, const char *file)
{
	struct strbuf path = STRBUF_INIT;
	struct stat st;
	int ok;

	sb_addf(&path, "%s/snapshots/%s/%s", p->repo_dir, p->commit, file);
	ok = stat(path.buf, &st) == 0 && S_ISREG(st.st_mode);
	sb_release(&path);
	return ok;
}

static struct file_job *find_job(struct pull *p, const char *name)
{
	for (size_t i = 0; i < p->nfiles; i++)
		if (!strcmp(p->files[i].name, name))
			return &p->files[i];
	return NULL;
}

static int is_weights(const char *name)
{
	size_t n = strlen(name);
	return n > 12 && !strcmp(name + n - 12, ".safetensors");
}

/* HEAD, fetch and link one file on its own (with its own progress count). */
static int fetch_one(struct pull *p, struct file_job *j)
{
	int rc;

	if ((rc = head_file(p, j)) < 0)
		return rc;
	p->fetch_count = p->fetch_index = 1;
	p->total = j->size;
	p->t0_ns = mono_ns();
	rc = fetch_blob(p, j);
	if (rc == 0)
		rc = hub_link_snapshot(p->repo_dir, p->commit, j->name, j->etag);
	p->fetch_count = p->fetch_index = 0;
	p->total = 0;
	return rc;
}

/*
 * Which of the listed weights the checkpoint uses, as the loader picks
 * them (st_set_open): the shards model.safetensors.index.json names (it
 * is fetched first), else model.safetensors alone, else every
 * *.safetensors.  Repositories often ship a consolidated copy next to the
 * shards; fetching it too would double the download.
 */
static int select_weights(struct pull *p)
{
	struct file_job *index = find_job(p, INDEX_NAME);
	struct strbuf path = STRBUF_INIT, text = STRBUF_INIT;
	cJSON *root = NULL;
	const cJSON *map;
	int rc = 0;

	if (!index) {
		if (find_job(p, "model.safetensors"))
			for (size_t i = 0; i < p->nfiles; i++)
				p->files[i].skip = is_weights(p->files[i].name) &&
						   strcmp(p->files[i].name, "model.safetensors");
		return 0;
	}
	if (!in_snapshot(p, INDEX_NAME) && (rc = fetch_one(p, index)) < 0)
		goto out;
	index->done = 1;
	sb_addf(&path, "%s/snapshots/%s/%s", p->repo_dir, p->commit, INDEX_NAME);
	if ((rc = sb_read_file(&text, path.buf, INDEX_MAX)) < 0) {
		rc = err_wrap(rc, "%s/%s", p->repo, INDEX_NAME);
		goto out;
	}
	root = cJSON_ParseWithLength(text.buf, text.len);
	map = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
	if (!cJSON_IsObject(map)) {
		rc = err_set(-EINVAL, "%s/%s: %s", p->repo, INDEX_NAME,
			     root ? "no \"weight_map\" object" : "not valid JSON");
		goto out;
	}
	for (size_t i = 0; i < p->nfiles; i++)
		p->files[i].skip = is_weights(p->files[i].name);
	for (const cJSON *e = map->child; e; e = e->next) {
		struct file_job *j;
		if (!cJSON_IsString(e) || !st_shard_name_ok(e->valuestring)) {
			rc = err_set(-EINVAL, "%s/%s: tensor '%s' maps to a bad file name",
				     p->repo, INDEX_NAME, e->string);
			goto out;
		}
		if (!is_weights(e->valuestring) || !(j = find_job(p, e->valuestring))) {
			rc = err_set(-ENOENT, "%s/%s: tensor '%s' is in %.200s, which is not a "
				     ".safetensors file the repository lists at its top level",
				     p->repo, INDEX_NAME, e->string, e->valuestring);
			goto out;
		}
		j->skip = 0;
	}
out:
	cJSON_Delete(root);
	sb_release(&path);
	sb_release(&text);
	return rc;
}

static void pull_free(struct pull *p)
{
	for (size_t i = 0; i < p->nfiles; i++)
		free(p->files[i].name);
	free(p->files);
	free(p->repo_dir);
	hub_env_free(&p->env);
}

int hub_snapshot(const char *repo, const struct hub_opts *opts, struct hub_result *res)
{
	static const struct hub_opts no_opts;
	struct pull p = { .repo = repo, .opts = opts ? opts : &no_opts, .res = res };
	int rc, unreachable;

	memset(res, 0, sizeof(*res));
	p.revision = p.opts->revision && *p.opts->revision ? p.opts->revision : "main";
	if (!hub_is_repo_id(repo))
		return err_set(-EINVAL, "'%s' is not a hub repository id (ORG/NAME)", repo);
	if (!hub_valid_revision(p.revision))
		return err_set(-EINVAL, "'%s' is not a valid revision", p.revision);
	if ((rc = hub_env_load(&p.env)) < 0)
		goto out;
	if (p.env.offline) {
		rc = hub_cached_snapshot(repo, p.revision, res);
		if (rc < 0)
			err_wrap(rc, "HF_HUB_OFFLINE is set");
		goto out;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		rc = err_set(-EIO, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		goto out;
	}
	p.repo_dir = hub_repo_dir(p.env.cache, repo);
	rc = fetch_revision(&p, &unreachable);
	if (rc < 0) {
		if (!unreachable)
			goto out;
		char why[512];
		snprintf(why, sizeof(why), "%s", err_msg());
		if (hub_cached_snapshot(repo, p.revision, res) == 0) {
			LOG_WARN("hub", "%s; using the cached snapshot %s", why, res->commit);
			rc = 0;
		} else {
			rc = err_set(-EIO, "%s, and %s (revision %s) is not in the cache", why,
				     repo, p.revision);
		}
		goto out;
	}
	if ((rc = hub_write_ref(p.repo_dir, p.revision, p.commit)) < 0)
		goto out;
	if (!p.opts->skip_weights && (rc = select_weights(&p)) < 0)
		goto out;
	int any_weights = 0;
	for (size_t i = 0; i < p.nfiles; i++) {
		struct file_job *j = &p.files[i];
		any_weights |= is_weights(j->name) && !j->skip;
		j->done |= in_snapshot(&p, j->name);
	}
	if (!p.opts->skip_weights && !any_weights)
		LOG_WARN("hub", "%s has no .safetensors weights (other formats are not supported)",
			 repo);
	for (size_t i = 0; i < p.nfiles; i++) {
		struct file_job *j = &p.files[i];
		if (j->done || j->skip)
			continue;
		if ((rc = head_file(&p, j)) < 0)
			goto out;
		p.total += j->size;
		p.fetch_count++;
	}
	p.t0_ns = mono_ns();
	for (size_t i = 0; i < p.nfiles; i++) {
		struct file_job *j = &p.files[i];
		if (j->done || j->skip)
			continue;
		p.fetch_index++;
		if ((rc = fetch_blob(&p, j)) < 0)
			goto out;
		if ((rc = hub_link_snapshot(p.repo_dir, p.commit, j->name, j->etag)) < 0)
			goto out;
		p.done_before += j->size;
	}
	/* An empty selection still gets its snapshot folder. */
	struct strbuf snap = STRBUF_INIT;
	sb_addf(&snap, "%s/snapshots/%s", p.repo_dir, p.commit);
	if ((rc = fs_mkdirs(snap.buf, 0755)) < 0) {
		sb_release(&snap);
		goto out;
	}
	res->snapshot_dir = sb_detach(&snap, NULL);
	res->commit = xstrdup(p.commit);
	LOG_DEBUG("hub", "%s@%s: %d files fetched (%llu bytes)", repo, p.commit,
		  res->files_fetched, (unsigned long long)res->bytes_fetched);
out:
	if (rc < 0)
		hub_result_free(res);
	pull_free(&p);
	return rc;
}
