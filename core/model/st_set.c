/*
 * st_set.c - a checkpoint made of one or more .safetensors files, found
 * from a directory, a sharded index (model.safetensors.index.json) or a
 * single file, with one name lookup over all of them (see safetensors.h).
 */
#include "core/model/safetensors.h"
#include "core/err.h"
#include "core/log.h"
#include "core/strbuf.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"
#define INDEX_MAX (64u << 20)

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && !strcmp(s + a - b, suffix);
}

static char *path_join(const char *dir, const char *name)
{
	struct strbuf sb = STRBUF_INIT;
	sb_addf(&sb, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
	return sb_detach(&sb, NULL);
}

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	if (slash == path)
		return xstrdup("/");
	return xstrndup(path, (size_t)(slash - path));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp((*(const struct st_tensor *const *)a)->name,
		      (*(const struct st_tensor *const *)b)->name);
}

/* Open the given paths (sorted, unique) into s->files. */
static int open_files(struct st_set *s, char **paths, size_t n, int flags)
{
	s->files = xcalloc(n ? n : 1, sizeof(*s->files));
	for (size_t i = 0; i < n; i++) {
		int rc = st_file_open(paths[i], flags, &s->files[i]);
		if (rc < 0)
			return rc;
		s->nfiles++;
	}
	return 0;
}

static int build_index(struct st_set *s)
{
	size_t n = 0, k = 0;

	for (size_t i = 0; i < s->nfiles; i++)
		n += s->files[i].ntensors;
	s->sorted = xmalloc((n ? n : 1) * sizeof(*s->sorted));
	for (size_t i = 0; i < s->nfiles; i++)
		for (size_t j = 0; j < s->files[i].ntensors; j++) {
			s->sorted[k++] = &s->files[i].tensors[j];
			s->total_bytes += s->files[i].tensors[j].nbytes;
		}
	s->ntensors = n;
	qsort(s->sorted, n, sizeof(*s->sorted), cmp_tensor_name);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(s->sorted[i - 1]->name, s->sorted[i]->name))
			return err_set(-EINVAL, "tensor '%s' is in both %s and %s",
				       s->sorted[i]->name, s->sorted[i - 1]->file->path,
				       s->sorted[i]->file->path);
	return 0;
}

/* A shard name from an index must stay inside the index's folder. */
int st_shard_name_ok(const char *name)
{
	if (!name[0] || name[0] == '/')
		return 0;
	for (const char *p = name; *p;) {
		const char *e = strchrnul(p, '/');
		if ((e - p == 2 && !strncmp(p, "..", 2)) || e == p)
			return 0;
		p = *e ? e + 1 : e;
	}
	return 1;
}

static int open_index(struct st_set *s, const char *index_path, int flags)
{
	struct strbuf sb = STRBUF_INIT;
	cJSON *root = NULL;
	const cJSON *map;
	char **names = NULL, **paths = NULL;
	size_t n = 0, u = 0;
	char *dir = dir_of(index_path);
	int rc;

	if ((rc = sb_read_file(&sb, index_path, INDEX_MAX)) < 0)
		goto out;
	root = cJSON_ParseWithLength(sb.buf, sb.len);
	if (!root) {
		rc = err_set(-EINVAL, "%s: not valid JSON", index_path);
		goto out;
	}
	map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
	if (!cJSON_IsObject(map)) {
		rc = err_set(-EINVAL, "%s: no \"weight_map\" object", index_path);
		goto out;
	}
	for (const cJSON *e = map->child; e; e = e->next)
		n++;
	names = xcalloc(n ? n : 1, sizeof(*names));
	for (const cJSON *e = map->child; e; e = e->next) {
		if (!cJSON_IsString(e) || !st_shard_name_ok(e->valuestring)) {
			rc = err_set(-EINVAL, "%s: tensor '%s' maps to a bad file name",
				     index_path, e->string);
			goto out;
		}
		names[u++] = e->valuestring;
	}
	qsort(names, u, sizeof(*names), cmp_str);
	n = 0;
	for (size_t i = 0; i < u; i++)
		if (!i || strcmp(names[i], names[i - 1]))
			names[n++] = names[i];
	if (!n) {
		rc = err_set(-EINVAL, "%s: \"weight_map\" is empty", index_path);
		goto out;
	}
	paths = xcalloc(n, sizeof(*paths));
	for (size_t i = 0; i < n; i++)
		paths[i] = path_join(dir, names[i]);
	if ((rc = open_files(s, paths, n, flags)) < 0)
		goto out;
	if ((rc = build_index(s)) < 0)
		goto out;
	/* Every tensor the index names must be in the shard it names. */
	for (const cJSON *e = map->child; e; e = e->next) {
		const struct st_tensor *t = st_set_find(s, e->string);
		if (!t) {
			rc = err_set(-EINVAL, "%s: tensor '%s' is listed for %s but not found there",
				     index_path, e->string, e->valuestring);
			goto out;
		}
		char *want = path_join(dir, e->valuestring);
		int same = !strcmp(want, t->file->path);
		free(want);
		if (!same) {
			rc = err_set(-EINVAL, "%s: tensor '%s' is listed for %s but found in %s",
				     index_path, e->string, e->valuestring, t->file->path);
			goto out;
		}
	}
	if (s->ntensors != (size_t)cJSON_GetArraySize(map))
		LOG_DEBUG("model", "%s: shards hold %zu tensors, the index lists %d",
			  index_path, s->ntensors, cJSON_GetArraySize(map));
out:
	if (paths)
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
	free(paths);
	free(names);
	cJSON_Delete(root);
	sb_release(&sb);
	free(dir);
	return rc;
}

/* Every *.safetensors file directly in dir, sorted. */
static int open_dir_files(struct st_set *s, const char *dir, int flags)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **paths = NULL;
	size_t n = 0, alloc = 0;
	int rc;

	if (!d)
		return err_set(-errno, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' || !ends_with(de->d_name, ".safetensors"))
			continue;
		if (n == alloc) {
			alloc = alloc ? 2 * alloc : 8;
			paths = xrealloc(paths, alloc * sizeof(*paths));
		}
		paths[n++] = path_join(dir, de->d_name);
	}
	closedir(d);
	if (!n) {
		free(paths);
		return err_set(-ENODATA, "%s: no .safetensors weights found "
			       "(other weight formats are not supported)", dir);
	}
	qsort(paths, n, sizeof(*paths), cmp_str);
	rc = open_files(s, paths, n, flags);
	if (rc >= 0)
		rc = build_index(s);
	for (size_t i = 0; i < n; i++)
		free(paths[i]);
	free(paths);
	return rc;
}

int st_set_open(const char *path, int flags, struct st_set **out)
{
	struct st_set *s = xcalloc(1, sizeof(*s));
	struct stat st;
	int rc;

	*out = NULL;
	if (stat(path, &st) < 0) {
		rc = err_set(-errno, "%s: %s", path, strerror(errno));
	} else if (S_ISDIR(st.st_mode)) {
		char *index = path_join(path, INDEX_NAME);
		char *single = path_join(path, "model.safetensors");
		if (access(index, F_OK) == 0)
			rc = open_index(s, index, flags);
		else if (access(single, F_OK) != 0)
			rc = open_dir_files(s, path, flags);
		else if ((rc = open_files(s, &single, 1, flags)) >= 0)
			rc = build_index(s);
		free(index);
		free(single);
	} else if (ends_with(path, ".index.json")) {
		rc = open_index(s, path, flags);
	} else {
		char *p = (char *)path;
		rc = open_files(s, &p, 1, flags);
		if (rc >= 0)
			rc = build_index(s);
	}
	if (rc < 0) {
		st_set_close(s);
		return rc;
	}
	*out = s;
	return 0;
}

int st_set_adopt(struct st_file *f, struct st_set **out)
{
	struct st_set *s = xcalloc(1, sizeof(*s));
	int rc;

	s->files = xmalloc(sizeof(*s->files));
	s->files[0] = *f;
	memset(f, 0, sizeof(*f));
	s->nfiles = 1;
	for (size_t i = 0; i < s->files[0].ntensors; i++)
		s->files[0].tensors[i].file = &s->files[0];
	if ((rc = build_index(s)) < 0) {
		st_set_close(s);
		s = NULL;
	}
	*out = s;
	return rc;
}

const struct st_tensor *st_set_find(const struct st_set *s, const char *name)
{
	size_t lo = 0, hi = s->ntensors;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(s->sorted[mid]->name, name);
		if (!c)
			return s->sorted[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

void st_set_close(struct st_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nfiles; i++)
		st_file_release(&s->files[i]);
	free(s->files);
	free(s->sorted);
	free(s);
}
