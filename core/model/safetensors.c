/*
 * safetensors.c - parse and map one .safetensors file (see safetensors.h).
 *
 * The header is untrusted input: every number is range-checked before any
 * arithmetic that could overflow, and the JSON text is copied into a
 * NUL-terminated buffer before cJSON sees it.
 */
#include "core/model/safetensors.h"
#include "core/err.h"
#include "core/util.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define JSON_INT_MAX 9007199254740992.0	/* 2^53: exact in a double */

int st_check_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *header_len)
{
	uint64_t n = 0;

	for (int i = 7; i >= 0; i--)
		n = (n << 8) | prefix[i];
	*header_len = n;
	if (file_size < 8)
		return err_set(-EINVAL, "file too short (%llu bytes) for a safetensors header",
			       (unsigned long long)file_size);
	if (n < 2)
		return err_set(-EINVAL, "header length %llu is too small",
			       (unsigned long long)n);
	if (n > ST_HEADER_MAX)
		return err_set(-EINVAL, "header length %llu exceeds the format's limit of %u bytes",
			       (unsigned long long)n, ST_HEADER_MAX);
	if (n > file_size - 8)
		return err_set(-EINVAL, "header length %llu runs past the end of the file "
			       "(%llu bytes): truncated or not a safetensors file",
			       (unsigned long long)n, (unsigned long long)file_size);
	return 0;
}

/* A JSON number that is a non-negative integer below 2^53. */
static int json_u64(const cJSON *j, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return -1;
	double d = j->valuedouble;
	if (!(d >= 0 && d <= JSON_INT_MAX) || floor(d) != d)
		return -1;
	*out = (uint64_t)d;
	return 0;
}

static int parse_tensor(const cJSON *item, uint64_t data_len, struct st_tensor *t)
{
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
	const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
	const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
	uint64_t begin, end, numel = 1, bytes;

	if (!cJSON_IsObject(item))
		return err_set(-EINVAL, "tensor '%s': entry is not a JSON object", t->name);
	if (!cJSON_IsString(dt))
		return err_set(-EINVAL, "tensor '%s': missing or non-string \"dtype\"", t->name);
	t->dtype = dtype_from_name(dt->valuestring);
	if (t->dtype == DTYPE_UNKNOWN)
		return err_set(-EINVAL, "tensor '%s': unknown dtype '%.32s'", t->name,
			       dt->valuestring);
	if (!cJSON_IsArray(shape))
		return err_set(-EINVAL, "tensor '%s': missing or non-array \"shape\"", t->name);
	int nd = cJSON_GetArraySize(shape);
	if (nd > ST_MAX_DIMS)
		return err_set(-EINVAL, "tensor '%s': %d dimensions (at most %d supported)",
			       t->name, nd, ST_MAX_DIMS);
	t->ndim = 0;
	for (const cJSON *d = shape->child; d; d = d->next) {
		uint64_t v;
		if (json_u64(d, &v) < 0)
			return err_set(-EINVAL, "tensor '%s': shape entry %d is not a "
				       "non-negative integer", t->name, t->ndim);
		t->shape[t->ndim++] = v;
		if (__builtin_mul_overflow(numel, v, &numel))
			return err_set(-EINVAL, "tensor '%s': shape overflows", t->name);
	}
	if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
	    json_u64(offs->child, &begin) < 0 || json_u64(offs->child->next, &end) < 0)
		return err_set(-EINVAL, "tensor '%s': \"data_offsets\" must be two "
			       "non-negative integers", t->name);
	if (begin > end)
		return err_set(-EINVAL, "tensor '%s': data_offsets [%llu, %llu] end before they begin",
			       t->name, (unsigned long long)begin, (unsigned long long)end);
	if (end > data_len)
		return err_set(-EINVAL, "tensor '%s': data_offsets [%llu, %llu] out of range: "
			       "the data section holds %llu bytes (file truncated?)",
			       t->name, (unsigned long long)begin, (unsigned long long)end,
			       (unsigned long long)data_len);
	if (__builtin_mul_overflow(numel, (uint64_t)dtype_size(t->dtype), &bytes))
		return err_set(-EINVAL, "tensor '%s': shape overflows", t->name);
	if (bytes != end - begin)
		return err_set(-EINVAL, "tensor '%s': %llu elements of %s need %llu bytes "
			       "but data_offsets [%llu, %llu] span %llu",
			       t->name, (unsigned long long)numel, dtype_name(t->dtype),
			       (unsigned long long)bytes,
			       (unsigned long long)begin, (unsigned long long)end,
			       (unsigned long long)(end - begin));
	t->numel = numel;
	t->offset = begin;
	t->nbytes = bytes;
	return 0;
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp((*(const struct st_tensor *const *)a)->name,
		      (*(const struct st_tensor *const *)b)->name);
}

static int cmp_offset(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

/*
 * Names unique; the byte spans, in offset order, tile the data section
 * exactly: no overlap, no gap, nothing after the last tensor (as the
 * reference parser requires: unaccounted bytes mean a corrupt or
 * mis-assembled file).
 */
static int check_layout(struct st_file *f, uint64_t data_len)
{
	const struct st_tensor **v;
	uint64_t covered = 0;	/* bytes [0, covered) belong to tensors so far */
	int rc = 0;

	v = xmalloc((f->ntensors ? f->ntensors : 1) * sizeof(*v));
	for (size_t i = 0; i < f->ntensors; i++)
		v[i] = &f->tensors[i];
	qsort(v, f->ntensors, sizeof(*v), cmp_name);
	for (size_t i = 1; i < f->ntensors && !rc; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name))
			rc = err_set(-EINVAL, "tensor '%s' appears twice in the header",
				     v[i]->name);
	qsort(v, f->ntensors, sizeof(*v), cmp_offset);
	for (size_t i = 0; i < f->ntensors && !rc; i++) {
		const struct st_tensor *a = i ? v[i - 1] : NULL, *b = v[i];
		if (a && b->offset < covered)
			rc = err_set(-EINVAL, "tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap",
				     a->name, (unsigned long long)a->offset,
				     (unsigned long long)(a->offset + a->nbytes), b->name,
				     (unsigned long long)b->offset,
				     (unsigned long long)(b->offset + b->nbytes));
		else if (b->offset > covered && a)
			rc = err_set(-EINVAL, "%llu unused bytes in the data section between "
				     "tensors '%s' (ends at %llu) and '%s' (begins at %llu)",
				     (unsigned long long)(b->offset - covered), a->name,
				     (unsigned long long)covered, b->name,
				     (unsigned long long)b->offset);
		else if (b->offset > covered)
			rc = err_set(-EINVAL, "%llu unused bytes at the start of the data section, "
				     "before tensor '%s' (begins at %llu)",
				     (unsigned long long)b->offset, b->name,
				     (unsigned long long)b->offset);
		else
			covered = b->offset + b->nbytes;
	}
	if (!rc && covered != data_len)
		rc = err_set(-EINVAL, "%llu trailing bytes after the last tensor: the tensors "
			     "cover %llu of the data section's %llu bytes",
			     (unsigned long long)(data_len - covered),
			     (unsigned long long)covered, (unsigned long long)data_len);
	free(v);
	return rc;
}

static int parse_metadata(const cJSON *meta, struct st_file *f)
{
	if (!cJSON_IsObject(meta))
		return err_set(-EINVAL, "\"__metadata__\" is not a JSON object");
	for (const cJSON *m = meta->child; m; m = m->next) {
		if (!cJSON_IsString(m))
			return err_set(-EINVAL, "\"__metadata__\" value '%s' is not a string",
				       m->string);
		if (!strcmp(m->string, "format") && !f->format)
			f->format = xstrdup(m->valuestring);
	}
	return 0;
}

int st_parse_header(const char *json, size_t json_len, uint64_t file_size,
		    struct st_file *f)
{
	char *text = xmalloc(json_len + 1);
	const char *end = NULL;
	cJSON *root;
	uint64_t data_len;
	size_t n = 0;
	int rc = 0;

	memset(f, 0, sizeof(*f));
	if (file_size < 8 + (uint64_t)json_len) {
		free(text);
		return err_set(-EINVAL, "header runs past the end of the file");
	}
	data_len = file_size - 8 - json_len;
	f->file_size = file_size;
	f->data_start = 8 + json_len;
	memcpy(text, json, json_len);
	text[json_len] = '\0';
	root = cJSON_ParseWithLengthOpts(text, json_len, &end, 0);
	if (!root) {
		size_t at = end && end >= text && end <= text + json_len ? (size_t)(end - text) : 0;
		free(text);
		return err_set(-EINVAL, "header is not valid JSON (error near byte %zu of %zu)",
			       at, json_len);
	}
	for (const char *p = end; p && p < text + json_len; p++) {
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			rc = err_set(-EINVAL, "header has trailing bytes after its JSON "
				     "(at byte %zu of %zu)", (size_t)(p - text), json_len);
			goto out;
		}
	}
	if (!cJSON_IsObject(root)) {
		rc = err_set(-EINVAL, "header is not a JSON object");
		goto out;
	}
	for (const cJSON *it = root->child; it; it = it->next)
		n++;
	f->tensors = xcalloc(n ? n : 1, sizeof(*f->tensors));
	for (const cJSON *it = root->child; it; it = it->next) {
		if (!strcmp(it->string, "__metadata__")) {
			if ((rc = parse_metadata(it, f)) < 0)
				goto out;
			continue;
		}
		struct st_tensor *t = &f->tensors[f->ntensors++];
		t->name = xstrdup(it->string);
		t->file = f;
		if ((rc = parse_tensor(it, data_len, t)) < 0)
			goto out;
	}
	rc = check_layout(f, data_len);
out:
	cJSON_Delete(root);
	free(text);
	if (rc < 0)
		st_file_release(f);
	return rc;
}

int st_parse_image(const void *buf, size_t len, struct st_file *f)
{
	uint64_t n;
	int rc;

	memset(f, 0, sizeof(*f));
	if (len < 8)
		return err_set(-EINVAL, "file too short (%zu bytes) for a safetensors header", len);
	if ((rc = st_check_prefix(buf, len, &n)) < 0)
		return rc;
	if ((rc = st_parse_header((const char *)buf + 8, (size_t)n, len, f)) < 0)
		return rc;
	for (size_t i = 0; i < f->ntensors; i++)
		f->tensors[i].data = (const char *)buf + f->data_start + f->tensors[i].offset;
	return 0;
}

void st_file_release(struct st_file *f)
{
	for (size_t i = 0; i < f->ntensors; i++)
		free((char *)f->tensors[i].name);
	free(f->tensors);
	free(f->format);
	free(f->path);
	if (f->map)
		munmap(f->map, f->map_len);
	memset(f, 0, sizeof(*f));
}

static int read_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t r = pread(fd, p, len, (off_t)off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		p += r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int st_file_open(const char *path, int flags, struct st_file *f)
{
	unsigned char prefix[8];
	struct stat st;
	uint64_t n;
	char *json = NULL;
	int fd, rc;

	memset(f, 0, sizeof(*f));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		rc = err_set(-errno, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(-EINVAL, "%s: not a regular file", path);
		goto fail;
	}
	if ((uint64_t)st.st_size < 8) {
		rc = err_set(-EINVAL, "%s: file too short (%lld bytes) for a safetensors header",
			     path, (long long)st.st_size);
		goto fail;
	}
	if ((rc = read_full(fd, prefix, 8, 0)) < 0) {
		rc = err_set(rc, "%s: read error: %s", path, strerror(-rc));
		goto fail;
	}
	if ((rc = st_check_prefix(prefix, (uint64_t)st.st_size, &n)) < 0) {
		rc = err_wrap(rc, "%s", path);
		goto fail;
	}
	json = xmalloc((size_t)n);
	if ((rc = read_full(fd, json, (size_t)n, 8)) < 0) {
		rc = err_set(rc, "%s: read error: %s", path, strerror(-rc));
		goto fail;
	}
	if ((rc = st_parse_header(json, (size_t)n, (uint64_t)st.st_size, f)) < 0) {
		rc = err_wrap(rc, "%s", path);
		goto fail;
	}
	free(json);
	json = NULL;
	f->path = xstrdup(path);
	if (flags & ST_MAP) {
		if ((uint64_t)st.st_size > SIZE_MAX) {
			rc = err_set(-EFBIG, "%s: too large to map", path);
			goto fail;
		}
		void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (map == MAP_FAILED) {
			rc = err_set(-errno, "%s: mmap: %s", path, strerror(errno));
			goto fail;
		}
		f->map = map;
		f->map_len = (size_t)st.st_size;
		for (size_t i = 0; i < f->ntensors; i++)
			f->tensors[i].data = (const char *)map + f->data_start + f->tensors[i].offset;
	}
	close(fd);
	return 0;
fail:
	free(json);
	st_file_release(f);
	close(fd);
	return rc;
}
