/*
 * hub_cache.c - the huggingface_hub cache layout on disk: where the cache
 * is, how a repo id maps to folders, refs, snapshot symlinks, and lookups
 * that need no network (see hub.h).
 */
#include "core/fsutil.h"
#include "core/model/hub.h"
#include "core/model/hub_int.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
static char *hf_home(void)
{
	struct strbuf sb = STRBUF_INIT;
	const char *v;

	if ((v = env_nonempty("HF_HOME")))
		sb_adds(&sb, v);
	else if ((v = env_nonempty("XDG_CACHE_HOME")))
		sb_addf(&sb, "%s/huggingface", v);
	else
		sb_addf(&sb, "%s/.cache/huggingface", env_nonempty("HOME") ? getenv("HOME") : "/tmp");
	return sb_detach(&sb, NULL);
}

char *hub_cache_dir(void)
{
	const char *v;
	char *home, *dir;

	if ((v = env_nonempty("HF_HUB_CACHE")) || (v = env_nonempty("HUGGINGFACE_HUB_CACHE")))
		return xstrdup(v);
	home = hf_home();
	dir = xmalloc(strlen(home) + 5);
	sprintf(dir, "%s/hub", home);
	free(home);
	return dir;
}

static int env_true(const char *name)
{
	const char *v = getenv(name);
	return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") ||
		     !strcasecmp(v, "on"));
}

static long env_seconds(const char *name, long def)
{
	const char *v = env_nonempty(name);
	char *end;
	double d;

	if (!v)
		return def;
	d = strtod(v, &end);
	if (*end || !(d > 0) || d > 86400)
		return def;
	return d < 1 ? 1 : (long)d;
}

int hub_env_load(struct hub_env *e)
{
	const char *v;
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;

	memset(e, 0, sizeof(*e));
	e->cache = hub_cache_dir();
	v = env_nonempty("HF_ENDPOINT");
	e->endpoint = xstrdup(v ? v : "https://huggingface.co");
	while (strlen(e->endpoint) > 1 && e->endpoint[strlen(e->endpoint) - 1] == '/')
		e->endpoint[strlen(e->endpoint) - 1] = '\0';
	if ((v = env_nonempty("HF_TOKEN")) || (v = env_nonempty("HUGGING_FACE_HUB_TOKEN"))) {
		for (const char *c = v; *c; c++)
			if ((unsigned char)*c < 0x20 || *c == 0x7f)
				rc = err_set(-EINVAL, "HF_TOKEN holds a control character "
					     "(a line break?); a token is one line of text");
		if (rc == 0)
			e->token = xstrdup(v);
	} else {
		char *home = hf_home();
		char *path = xmalloc(strlen(home) + 7);
		sprintf(path, "%s/token", home);
		if (sb_read_file(&sb, path, 4096) == 0) {
			while (sb.len && isspace((unsigned char)sb.buf[sb.len - 1]))
				sb_setlen(&sb, sb.len - 1);
			if (sb.len && !strpbrk(sb.buf, "\r\n"))
				e->token = xstrdup(sb.buf);
		}
		err_clear();
		sb_release(&sb);
		free(path);
		free(home);
	}
	e->offline = env_true("HF_HUB_OFFLINE") || env_true("TRANSFORMERS_OFFLINE");
	e->etag_timeout = env_seconds("HF_HUB_ETAG_TIMEOUT", 10);
	e->download_timeout = env_seconds("HF_HUB_DOWNLOAD_TIMEOUT", 30);
	return rc;
}

void hub_env_free(struct hub_env *e)
{
	free(e->cache);
	free(e->endpoint);
	free(e->token);
	memset(e, 0, sizeof(*e));
}

static int id_char(int c)
{
	return isalnum(c) || c == '-' || c == '_' || c == '.';
}

static int id_part(const char *s, size_t n)
{
	if (n == 0 || n > 96)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!id_char((unsigned char)s[i]))
			return 0;
	if (s[0] == '-' || s[0] == '.' || s[n - 1] == '-' || s[n - 1] == '.')
		return 0;
	return 1;
}

int hub_is_repo_id(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash || strchr(slash + 1, '/'))
		return 0;
	if (strstr(s, "--") || strstr(s, ".."))
		return 0;
	return id_part(s, (size_t)(slash - s)) && id_part(slash + 1, strlen(slash + 1));
}

int hub_valid_revision(const char *rev)
{
	if (!rev[0] || rev[0] == '/' || strlen(rev) > 255 || strstr(rev, ".."))
		return 0;
	for (const char *p = rev; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '\\' ||
		    (*p == '/' && p[1] == '/'))
			return 0;
	return rev[strlen(rev) - 1] != '/';
}

int hub_is_commit(const char *s)
{
	size_t n = strlen(s);
	if (n != 40)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
			return 0;
	return 1;
}

char *hub_repo_dir(const char *cache, const char *repo)
{
	struct strbuf sb = STRBUF_INIT;
	const char *slash = strchr(repo, '/');

	sb_addf(&sb, "%s/models--%.*s--%s", cache, (int)(slash - repo), repo, slash + 1);
	return sb_detach(&sb, NULL);
}

char *hub_lock_dir(const char *cache, const char *repo)
{
	struct strbuf sb = STRBUF_INIT;
	const char *slash = strchr(repo, '/');

	sb_addf(&sb, "%s/.locks/models--%.*s--%s", cache, (int)(slash - repo), repo, slash + 1);
	return sb_detach(&sb, NULL);
}

/* Directory part of path (malloc'd). */
static char *parent_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
}

/* Replace path's contents atomically. */
static int write_atomic(const char *path, const char *data, size_t len)
{
	struct strbuf tmp = STRBUF_INIT;
	char *dir = parent_of(path);
	int fd, rc;

	if ((rc = fs_mkdirs(dir, 0755)) < 0)
		goto out;
	sb_addf(&tmp, "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp.buf, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = err_set(-errno, "%s: %s", tmp.buf, strerror(errno));
		goto out;
	}
	if (write(fd, data, len) != (ssize_t)len) {
		rc = err_set(-EIO, "%s: write failed", tmp.buf);
		close(fd);
		unlink(tmp.buf);
		goto out;
	}
	close(fd);
	if (rename(tmp.buf, path) < 0) {
		rc = err_set(-errno, "rename %s: %s", path, strerror(errno));
		unlink(tmp.buf);
	}
out:
	free(dir);
	sb_release(&tmp);
	return rc;
}

int hub_write_ref(const char *repo_dir, const char *revision, const char *commit)
{
	struct strbuf path = STRBUF_INIT;
	struct strbuf old = STRBUF_INIT;
	int rc = 0;

	if (!strcmp(revision, commit))
		return 0;	/* a commit needs no ref */
	sb_addf(&path, "%s/refs/%s", repo_dir, revision);
	if (sb_read_file(&old, path.buf, 4096) < 0 || strcmp(old.buf, commit))
		rc = write_atomic(path.buf, commit, strlen(commit));
	err_clear();
	sb_release(&old);
	sb_release(&path);
	return rc;
}

int hub_read_ref(const char *repo_dir, const char *revision, char commit[41])
{
	struct strbuf path = STRBUF_INIT;
	struct strbuf sb = STRBUF_INIT;
	int rc = -ENOENT;

	if (hub_is_commit(revision)) {
		memcpy(commit, revision, 41);
		return 0;
	}
	sb_addf(&path, "%s/refs/%s", repo_dir, revision);
	if (sb_read_file(&sb, path.buf, 4096) == 0) {
		while (sb.len && isspace((unsigned char)sb.buf[sb.len - 1]))
			sb_setlen(&sb, sb.len - 1);
		if (hub_is_commit(sb.buf)) {
			memcpy(commit, sb.buf, 41);
			rc = 0;
		}
	}
	err_clear();
	sb_release(&sb);
	sb_release(&path);
	return rc;
}

int hub_link_snapshot(const char *repo_dir, const char *commit, const char *file,
		      const char *etag)
{
	struct strbuf link = STRBUF_INIT, target = STRBUF_INIT, tmp = STRBUF_INIT;
	char *dir;
	int rc;

	sb_addf(&link, "%s/snapshots/%s/%s", repo_dir, commit, file);
	dir = parent_of(link.buf);
	if ((rc = fs_mkdirs(dir, 0755)) < 0)
		goto out;
	/* From snapshots/COMMIT/a/b/FILE up to the repo folder. */
	sb_adds(&target, "../../");
	for (const char *p = file; (p = strchr(p, '/')); p++)
		sb_adds(&target, "../");
	sb_addf(&target, "blobs/%s", etag);
	sb_addf(&tmp, "%s.tmp.%d", link.buf, (int)getpid());
	unlink(tmp.buf);
	if (symlink(target.buf, tmp.buf) < 0) {
		rc = err_set(-errno, "symlink %s: %s", link.buf, strerror(errno));
		goto out;
	}
	if (rename(tmp.buf, link.buf) < 0) {
		rc = err_set(-errno, "rename %s: %s", link.buf, strerror(errno));
		unlink(tmp.buf);
	}
out:
	free(dir);
	sb_release(&link);
	sb_release(&target);
	sb_release(&tmp);
	return rc;
}

int hub_wanted_file(const char *name, int skip_weights)
{
	static const char *const always[] = {
		"config.json", "generation_config.json", "tokenizer.json",
		"tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json",
	};
	size_t n = strlen(name);

	if (strchr(name, '/') || name[0] == '.')
		return 0;	/* top-level files only */
	for (const char *c = name; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f || *c == '\\')
			return 0;
	for (size_t i = 0; i < ARRAY_SIZE(always); i++)
		if (!strcmp(name, always[i]))
			return 1;
	if (skip_weights)
		return 0;
	if (!strcmp(name, "model.safetensors.index.json"))
		return 1;
	return n > 12 && !strcmp(name + n - 12, ".safetensors");
}

int hub_cached_snapshot(const char *repo, const char *revision, struct hub_result *res)
{
	char *cache = hub_cache_dir();
	char *repo_dir;
	char commit[41];
	struct strbuf snap = STRBUF_INIT;
	struct stat st;
	int rc = 0;

	memset(res, 0, sizeof(*res));
	if (!revision)
		revision = "main";
	if (!hub_is_repo_id(repo)) {
		free(cache);
		return err_set(-EINVAL, "'%s' is not a hub repository id (ORG/NAME)", repo);
	}
	if (!hub_valid_revision(revision)) {
		free(cache);
		return err_set(-EINVAL, "'%s' is not a valid revision", revision);
	}
	repo_dir = hub_repo_dir(cache, repo);
	if (hub_read_ref(repo_dir, revision, commit) < 0) {
		rc = err_set(-ENOENT, "%s (revision %s) is not in the hub cache %s", repo,
			     revision, cache);
		goto out;
	}
	sb_addf(&snap, "%s/snapshots/%s", repo_dir, commit);
	if (stat(snap.buf, &st) < 0 || !S_ISDIR(st.st_mode)) {
		rc = err_set(-ENOENT, "%s (revision %s, commit %s) is not in the hub cache %s",
			     repo, revision, commit, cache);
		goto out;
	}
	res->snapshot_dir = sb_detach(&snap, NULL);
	res->commit = xstrdup(commit);
	res->from_cache = 1;
out:
	sb_release(&snap);
	free(repo_dir);
	free(cache);
	return rc;
}

void hub_result_free(struct hub_result *res)
{
	free(res->snapshot_dir);
	free(res->commit);
	memset(res, 0, sizeof(*res));
}
