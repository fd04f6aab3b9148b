/*
 * gguf.c - the GGUF reader (see gguf.h).  A cursor walks the image; every
 * read checks the bytes left first, and every count is bounded by the
 * bytes its elements would need before anything is allocated for it.
 */
#include "core/model/gguf.h"
#include "core/byteorder.h"
#include "core/err.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC "GGUF"
#define DEFAULT_ALIGNMENT 32
#define MAX_ALIGNMENT (1u << 20)
#define MAX_NAME 4096		/* keys and tensor names */
#define MAX_NESTING 4		/* arrays of arrays */

/* GGML tensor types dyn reads, and the names of some it does not (for
 * messages).  A new block type is one line here (and its dtype). */
static const struct {
	uint32_t ggml;
	const char *name;
	enum dtype dtype;	/* DTYPE_UNKNOWN: not supported */
} ggml_types[] = {
	{ 0, "F32", DTYPE_F32 },
	{ 1, "F16", DTYPE_F16 },
	{ 2, "Q4_0", DTYPE_Q4_0 },
	{ 3, "Q4_1", DTYPE_UNKNOWN },
	{ 6, "Q5_0", DTYPE_UNKNOWN },
	{ 7, "Q5_1", DTYPE_UNKNOWN },
	{ 8, "Q8_0", DTYPE_Q8_0 },
	{ 9, "Q8_1", DTYPE_UNKNOWN },
	{ 10, "Q2_K", DTYPE_UNKNOWN },
	{ 11, "Q3_K", DTYPE_UNKNOWN },
	{ 12, "Q4_K", DTYPE_UNKNOWN },
	{ 13, "Q5_K", DTYPE_UNKNOWN },
	{ 14, "Q6_K", DTYPE_UNKNOWN },
	{ 15, "Q8_K", DTYPE_UNKNOWN },
	{ 24, "I8", DTYPE_UNKNOWN },
	{ 25, "I16", DTYPE_UNKNOWN },
	{ 26, "I32", DTYPE_UNKNOWN },
	{ 27, "I64", DTYPE_UNKNOWN },
	{ 28, "F64", DTYPE_UNKNOWN },
	{ 30, "BF16", DTYPE_BF16 },
};

const char *gguf_ggml_type_name(uint32_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(ggml_types); i++)
		if (ggml_types[i].ggml == type)
			return ggml_types[i].name;
	return NULL;
}

static enum dtype ggml_dtype(uint32_t type)
{
	for (size_t i = 0; i < ARRAY_SIZE(ggml_types); i++)
		if (ggml_types[i].ggml == type)
			return ggml_types[i].dtype;
	return DTYPE_UNKNOWN;
}

static const char *const type_names[GGUF_TYPE_COUNT] = {
	"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
	"u64", "i64", "f64",
};

/* Bytes of a scalar value (0 for string and array). */
static const uint8_t type_size[GGUF_TYPE_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

const char *gguf_type_name(enum gguf_type t)
{
	return (unsigned)t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

struct cur {
	const unsigned char *p;
	uint64_t pos, len;
	const char *what;
};

static int need(struct cur *c, uint64_t n, const char *of)
{
	if (c->len - c->pos < n)
		return err_set(-EINVAL, "%s: truncated: %s needs %llu bytes at offset %llu, "
			       "%llu left", c->what, of, (unsigned long long)n,
			       (unsigned long long)c->pos, (unsigned long long)(c->len - c->pos));
	return 0;
}

static int rd_u32(struct cur *c, uint32_t *v, const char *of)
{
	int rc = need(c, 4, of);
	if (rc == 0) {
		*v = get_le32(c->p + c->pos);
		c->pos += 4;
	}
	return rc;
}

static int rd_u64(struct cur *c, uint64_t *v, const char *of)
{
	int rc = need(c, 8, of);
	if (rc == 0) {
		*v = get_le64(c->p + c->pos);
		c->pos += 8;
	}
	return rc;
}

static int rd_str(struct cur *c, struct gguf_str *s, const char *of)
{
	uint64_t n;
	int rc = rd_u64(c, &n, of);
	if (rc == 0 && (rc = need(c, n, of)) == 0) {
		s->s = (const char *)c->p + c->pos;
		s->len = n;
		c->pos += n;
	}
	return rc;
}

/* A copy of s as a C string; NULs and overlong names refused. */
static int name_dup(struct cur *c, const struct gguf_str *s, const char *of, char **out)
{
	if (!s->len || s->len > MAX_NAME || memchr(s->s, 0, s->len))
		return err_set(-EINVAL, "%s: %s at offset %llu is empty, longer than %d bytes or "
			       "holds a NUL", c->what, of, (unsigned long long)c->pos, MAX_NAME);
	*out = xstrndup(s->s, s->len);
	return 0;
}

/* Skip a value of type t (its bytes must be there); for string arrays
 * with offs, record each element's offset from base. */
static int skip_value(struct cur *c, uint32_t t, int depth, const char *key)
{
	struct gguf_str s;
	uint32_t et;
	uint64_t n;
	int rc;

	if (t >= GGUF_TYPE_COUNT)
		return err_set(-EINVAL, "%s: key %s: unknown value type %u", c->what, key, t);
	if (t == GGUF_STRING)
		return rd_str(c, &s, key);
	if (t != GGUF_ARRAY) {
		if ((rc = need(c, type_size[t], key)) == 0)
			c->pos += type_size[t];
		return rc;
	}
	if (depth >= MAX_NESTING)
		return err_set(-EINVAL, "%s: key %s: arrays nested more than %d deep", c->what, key,
			       MAX_NESTING);
	if ((rc = rd_u32(c, &et, key)) < 0 || (rc = rd_u64(c, &n, key)) < 0)
		return rc;
	if (et >= GGUF_TYPE_COUNT)
		return err_set(-EINVAL, "%s: key %s: unknown array element type %u", c->what, key,
			       et);
	if (type_size[et]) {
		if (n > (c->len - c->pos) / type_size[et])
			return need(c, UINT64_MAX, key);
		c->pos += n * type_size[et];
		return 0;
	}
	for (uint64_t i = 0; i < n; i++)
		if ((rc = skip_value(c, et, depth + 1, key)) < 0)
			return rc;
	return 0;
}

static int parse_kv(struct cur *c, struct gguf_kv *kv)
{
	struct gguf_str key;
	uint32_t t;
	int rc;

	if ((rc = rd_str(c, &key, "a metadata key")) < 0 ||
	    (rc = name_dup(c, &key, "a metadata key", &kv->key)) < 0 ||
	    (rc = rd_u32(c, &t, kv->key)) < 0)
		return rc;
	if (t >= GGUF_TYPE_COUNT)
		return err_set(-EINVAL, "%s: key %s: unknown value type %u", c->what, kv->key, t);
	kv->type = (enum gguf_type)t;
	if (t != GGUF_ARRAY) {
		kv->val = c->p + c->pos;
		return skip_value(c, t, 0, kv->key);
	}
	uint64_t start = c->pos;
	uint32_t et;
	if ((rc = rd_u32(c, &et, kv->key)) < 0 || (rc = rd_u64(c, &kv->n, kv->key)) < 0)
		return rc;
	kv->arr_type = (enum gguf_type)et;
	kv->val = c->p + c->pos;
	c->pos = start;
	if ((rc = skip_value(c, GGUF_ARRAY, 0, kv->key)) < 0)
		return rc;
	if (et == GGUF_STRING) {
		/* the walk above proved that n strings fit in the file */
		struct cur s = { kv->val, 0, (uint64_t)(c->p + c->pos - kv->val), c->what };
		kv->str_off = xmalloc((size_t)(kv->n ? kv->n : 1) * sizeof(*kv->str_off));
		for (uint64_t i = 0; i < kv->n; i++) {
			struct gguf_str str;
			kv->str_off[i] = s.pos;
			rd_str(&s, &str, kv->key);
		}
	}
	return 0;
}

static int parse_tensor(struct cur *c, struct gguf_tensor *t)
{
	struct gguf_str name;
	uint32_t nd, type;
	int rc;

	if ((rc = rd_str(c, &name, "a tensor name")) < 0 ||
	    (rc = name_dup(c, &name, "a tensor name", &t->name)) < 0 ||
	    (rc = rd_u32(c, &nd, t->name)) < 0)
		return rc;
	if (nd < 1 || nd > GGUF_MAX_DIMS)
		return err_set(-EINVAL, "%s: tensor %s has %u dimensions (1 to %d)", c->what,
			       t->name, nd, GGUF_MAX_DIMS);
	t->ndim = (int)nd;
	t->numel = 1;
	for (uint32_t i = 0; i < nd; i++) {
		if ((rc = rd_u64(c, &t->ne[i], t->name)) < 0)
			return rc;
		if (!t->ne[i] || t->ne[i] > INT64_MAX / t->numel)
			return err_set(-EINVAL, "%s: tensor %s: dimension %u is %llu (zero or too "
				       "large)", c->what, t->name, i,
				       (unsigned long long)t->ne[i]);
		t->numel *= t->ne[i];
	}
	if ((rc = rd_u32(c, &type, t->name)) < 0 || (rc = rd_u64(c, &t->offset, t->name)) < 0)
		return rc;
	t->dtype = ggml_dtype(type);
	if (t->dtype == DTYPE_UNKNOWN) {
		const char *n = gguf_ggml_type_name(type);
		if (!n)
			return err_set(-EINVAL, "%s: tensor %s has unknown type number %u",
				       c->what, t->name, type);
		return err_set(-ENOTSUP, "%s: tensor %s has type %s, which dyn does not read "
			       "(supported: F32, F16, BF16, Q8_0, Q4_0)", c->what, t->name, n);
	}
	size_t block = dtype_block(t->dtype);
	if (t->ne[0] % block)
		return err_set(-EINVAL, "%s: tensor %s: %llu elements per row is not a whole "
			       "number of %s blocks", c->what, t->name,
			       (unsigned long long)t->ne[0], dtype_name(t->dtype));
	if (t->numel / block > UINT64_MAX / dtype_bytes(t->dtype, block))
		return err_set(-EINVAL, "%s: tensor %s is too large", c->what, t->name);
	t->nbytes = t->numel / block * dtype_bytes(t->dtype, block);
	return 0;
}

static int cmp_tensor_name(const void *a, const void *b)
{
	return strcmp((*(const struct gguf_tensor *const *)a)->name,
		      (*(const struct gguf_tensor *const *)b)->name);
}

static int cmp_tensor_off(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Names unique, spans inside the data section and disjoint. */
static int check_tensors(const struct cur *c, struct gguf *g)
{
	const struct gguf_tensor **v = xmalloc((g->ntensors ? g->ntensors : 1) * sizeof(*v));
	uint64_t data_len = g->image_len - g->data_start;
	int rc = 0;

	for (size_t i = 0; i < g->ntensors; i++)
		v[i] = &g->tensors[i];
	qsort(v, g->ntensors, sizeof(*v), cmp_tensor_name);
	for (size_t i = 1; i < g->ntensors && !rc; i++)
		if (!strcmp(v[i - 1]->name, v[i]->name))
			rc = err_set(-EINVAL, "%s: tensor %s appears twice", c->what, v[i]->name);
	qsort(v, g->ntensors, sizeof(*v), cmp_tensor_off);
	for (size_t i = 0; i < g->ntensors && !rc; i++) {
		const struct gguf_tensor *t = v[i];
		if (t->offset % g->alignment)
			rc = err_set(-EINVAL, "%s: tensor %s: offset %llu is not a multiple of the "
				     "alignment %llu", c->what, t->name,
				     (unsigned long long)t->offset,
				     (unsigned long long)g->alignment);
		else if (t->offset > data_len || t->nbytes > data_len - t->offset)
			rc = err_set(-EINVAL, "%s: tensor %s: bytes [%llu, +%llu) lie beyond the end "
				     "of the data section (%llu bytes; truncated file?)", c->what,
				     t->name, (unsigned long long)t->offset,
				     (unsigned long long)t->nbytes, (unsigned long long)data_len);
		else if (i && v[i - 1]->offset + v[i - 1]->nbytes > t->offset)
			rc = err_set(-EINVAL, "%s: tensors %s and %s overlap", c->what,
				     v[i - 1]->name, t->name);
	}
	free(v);
	return rc;
}

static int cmp_key(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int check_keys(const struct gguf *g)
{
	char **v = xmalloc((g->nkv ? g->nkv : 1) * sizeof(*v));
	int rc = 0;

	for (size_t i = 0; i < g->nkv; i++)
		v[i] = g->kv[i].key;
	qsort(v, g->nkv, sizeof(*v), cmp_key);
	for (size_t i = 1; i < g->nkv && !rc; i++)
		if (!strcmp(v[i - 1], v[i]))
			rc = err_set(-EINVAL, "%s: metadata key %s appears twice", g->path, v[i]);
	free(v);
	return rc;
}

static void release(struct gguf *g)
{
	for (size_t i = 0; i < g->nkv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].str_off);
	}
	free(g->kv);
	for (size_t i = 0; i < g->ntensors; i++)
		free(g->tensors[i].name);
	free(g->tensors);
	free(g->path);
	if (g->map)
		munmap(g->map, g->image_len);
	memset(g, 0, sizeof(*g));
}

int gguf_parse(const void *buf, size_t len, const char *what, struct gguf *g)
{
	struct cur c = { buf, 0, len, what };
	uint64_t nt, nkv;
	int64_t align;
	int rc;

	memset(g, 0, sizeof(*g));
	g->path = xstrdup(what);
	c.what = g->path;
	g->image = buf;
	g->image_len = len;
	if (len < 4 || memcmp(buf, GGUF_MAGIC, 4)) {
		rc = err_set(-EINVAL, "%s: not a GGUF file (no \"GGUF\" magic)", what);
		goto fail;
	}
	c.pos = 4;
	if ((rc = rd_u32(&c, &g->version, "the version")) < 0)
		goto fail;
	if (g->version != 2 && g->version != 3) {
		rc = err_set(-ENOTSUP, "%s: GGUF version %u is not supported (2 and 3 are)", what,
			     g->version);
		goto fail;
	}
	if ((rc = rd_u64(&c, &nt, "the tensor count")) < 0 ||
	    (rc = rd_u64(&c, &nkv, "the metadata count")) < 0)
		goto fail;
	/* a pair takes at least 13 bytes (key length, one key byte, type,
	 * one value byte), a tensor info 29 */
	if (nkv > (len - c.pos) / 13 || nt > (len - c.pos) / 29) {
		rc = err_set(-EINVAL, "%s: %llu metadata pairs and %llu tensors cannot fit in %zu "
			     "bytes (truncated or corrupt)", what, (unsigned long long)nkv,
			     (unsigned long long)nt, len);
		goto fail;
	}
	g->kv = xcalloc((size_t)nkv + 1, sizeof(*g->kv));
	for (; g->nkv < nkv; g->nkv++)
		if ((rc = parse_kv(&c, &g->kv[g->nkv])) < 0) {
			g->nkv++;
			goto fail;
		}
	if ((rc = check_keys(g)) < 0)
		goto fail;
	g->alignment = DEFAULT_ALIGNMENT;
	if ((rc = gguf_get_int(g, "general.alignment", &align)) < 0)
		goto fail;
	if (rc == 1) {
		if (align <= 0 || align > MAX_ALIGNMENT || (align & (align - 1))) {
			rc = err_set(-EINVAL, "%s: general.alignment %lld is not a power of two up "
				     "to %u", what, (long long)align, MAX_ALIGNMENT);
			goto fail;
		}
		g->alignment = (uint64_t)align;
	}
	g->tensors = xcalloc((size_t)nt + 1, sizeof(*g->tensors));
	for (; g->ntensors < nt; g->ntensors++)
		if ((rc = parse_tensor(&c, &g->tensors[g->ntensors])) < 0) {
			g->ntensors++;
			goto fail;
		}
	g->data_start = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
	if (g->data_start > len) {
		if (nt) {
			rc = err_set(-EINVAL, "%s: truncated: the data section would start at byte "
				     "%llu of %zu", what, (unsigned long long)g->data_start, len);
			goto fail;
		}
		g->data_start = len;
	}
	if ((rc = check_tensors(&c, g)) < 0)
		goto fail;
	for (size_t i = 0; i < g->ntensors; i++)
		g->tensors[i].data = g->image + g->data_start + g->tensors[i].offset;
	return 0;
fail:
	release(g);
	return rc < 0 ? rc : -EINVAL;
}

int gguf_open(const char *path, struct gguf *g)
{
	struct stat st;
	void *map;
	int fd, rc;

	memset(g, 0, sizeof(*g));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 4) {
		close(fd);
		return err_set(-EINVAL, "%s: not a GGUF file (not a regular file of 4 bytes or "
			       "more)", path);
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return err_set(-errno, "%s: mmap: %s", path, strerror(errno));
	if ((rc = gguf_parse(map, (size_t)st.st_size, path, g)) < 0) {
		munmap(map, (size_t)st.st_size);
		return rc;
	}
	g->map = map;
	return 0;
}

void gguf_close(struct gguf *g)
{
	release(g);
}

const struct gguf_kv *gguf_find(const struct gguf *g, const char *key)
{
	for (size_t i = 0; i < g->nkv; i++)
		if (!strcmp(g->kv[i].key, key))
			return &g->kv[i];
	return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name)
{
	for (size_t i = 0; i < g->ntensors; i++)
		if (!strcmp(g->tensors[i].name, name))
			return &g->tensors[i];
	return NULL;
}

static int is_int(enum gguf_type t)
{
	return t <= GGUF_I32 || t == GGUF_BOOL || t == GGUF_U64 || t == GGUF_I64;
}

/* An integer of type t at p (is_int(t)). */
static int64_t int_at(const unsigned char *p, enum gguf_type t)
{
	switch (t) {
	case GGUF_U8: case GGUF_BOOL: return p[0];
	case GGUF_I8: return (int8_t)p[0];
	case GGUF_U16: return get_le16(p);
	case GGUF_I16: return (int16_t)get_le16(p);
	case GGUF_U32: return get_le32(p);
	case GGUF_I32: return (int32_t)get_le32(p);
	case GGUF_U64: return get_le64(p) > INT64_MAX ? INT64_MAX : (int64_t)get_le64(p);
	default: return (int64_t)get_le64(p);
	}
}

static double float_at(const unsigned char *p, enum gguf_type t)
{
	if (t == GGUF_F32) {
		uint32_t u = get_le32(p);
		float f;
		memcpy(&f, &u, 4);
		return f;
	}
	uint64_t u = get_le64(p);
	double d;
	memcpy(&d, &u, 8);
	return d;
}

static int wrong_type(const struct gguf *g, const struct gguf_kv *kv, const char *want)
{
	return err_set(-EINVAL, "%s: metadata %s is %s%s, expected %s", g->path, kv->key,
		       kv->type == GGUF_ARRAY ? "an array of " : "a ",
		       gguf_type_name(kv->type == GGUF_ARRAY ? kv->arr_type : kv->type), want);
}

int gguf_get_int(const struct gguf *g, const char *key, int64_t *out)
{
	const struct gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return 0;
	if (!is_int(kv->type))
		return wrong_type(g, kv, "an integer");
	*out = int_at(kv->val, kv->type);
	return 1;
}

int gguf_get_f64(const struct gguf *g, const char *key, double *out)
{
	const struct gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return 0;
	if (kv->type == GGUF_F32 || kv->type == GGUF_F64)
		*out = float_at(kv->val, kv->type);
	else if (is_int(kv->type))
		*out = (double)int_at(kv->val, kv->type);
	else
		return wrong_type(g, kv, "a number");
	return 1;
}

int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out)
{
	const struct gguf_kv *kv = gguf_find(g, key);
	if (!kv)
		return 0;
	if (kv->type != GGUF_STRING)
		return wrong_type(g, kv, "a string");
	out->len = get_le64(kv->val);
	out->s = (const char *)kv->val + 8;
	return 1;
}

int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type kind,
		 const struct gguf_kv **out)
{
	const struct gguf_kv *kv = gguf_find(g, key);
	int ok;

	if (!kv)
		return 0;
	if (kind == GGUF_STRING)
		ok = kv->arr_type == GGUF_STRING;
	else if (kind == GGUF_F32)
		ok = kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64;
	else
		ok = is_int(kv->arr_type);
	if (kv->type != GGUF_ARRAY || !ok)
		return wrong_type(g, kv, kind == GGUF_STRING ? "an array of strings" :
				  kind == GGUF_F32 ? "an array of numbers" : "an array of integers");
	*out = kv;
	return 1;
}

struct gguf_str gguf_arr_str(const struct gguf_kv *kv, uint64_t i)
{
	const unsigned char *p = kv->val + kv->str_off[i];
	return (struct gguf_str){ (const char *)p + 8, get_le64(p) };
}

int64_t gguf_arr_int(const struct gguf_kv *kv, uint64_t i)
{
	return int_at(kv->val + i * type_size[kv->arr_type], kv->arr_type);
}

double gguf_arr_f64(const struct gguf_kv *kv, uint64_t i)
{
	return float_at(kv->val + i * type_size[kv->arr_type], kv->arr_type);
}
