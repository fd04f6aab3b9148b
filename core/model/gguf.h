/*
 * gguf.h - reading GGUF files (llama.cpp's single-file checkpoints).
 *
 * The format (versions 2 and 3, little-endian): "GGUF", u32 version, u64
 * tensor count, u64 metadata count; the metadata key/value pairs (a key
 * is a string: u64 length + bytes; a value is a u32 type + its bytes,
 * arrays being u32 element type + u64 count + elements); the tensor infos
 * (name, u32 dims, u64 ne[dims] innermost first, u32 GGML type, u64
 * offset); padding to general.alignment (default 32); the data section,
 * which the offsets are relative to.
 *
 * Everything is checked before it is used: every count against the bytes
 * left (so no count allocates more than the file could describe), every
 * string and array inside the file, versions, value and tensor types,
 * dims, that each tensor's byte span is its element count in its type,
 * aligned, inside the data section and not overlapping another, and that
 * names are unique.  A bad file gives -EINVAL (-ENOTSUP for a version or
 * tensor type we do not read) and an err_msg() naming the file and what
 * is wrong.
 *
 * Tensor types map to dyn's dtypes through one table in gguf.c (F32, F16,
 * BF16, Q8_0); a tensor of another type is refused by name ("Q4_K").
 * A GGUF shape is innermost first: a [rows, cols] matrix has ne = {cols,
 * rows}.
 *
 * The data is memory-mapped read-only and never copied; metadata values
 * are read in place from the image.  Ownership: gguf_open() fills a
 * struct gguf that owns its mapping and arrays until gguf_close(); every
 * pointer obtained from it dies with it.  A parsed file is never modified:
 * any number of threads may read it.
 */
#ifndef DYN_MODEL_GGUF_H
#define DYN_MODEL_GGUF_H

#include "core/model/dtype.h"

#include <stddef.h>
#include <stdint.h>

enum gguf_type {
	GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32,
	GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64,
	GGUF_TYPE_COUNT
};

#define GGUF_MAX_DIMS 4

/* A string inside the image (not NUL-terminated). */
struct gguf_str {
	const char *s;
	uint64_t len;
};

struct gguf_kv {
	char *key;			/* NUL-terminated copy */
	enum gguf_type type;
	enum gguf_type arr_type;	/* GGUF_ARRAY: the elements' type */
	uint64_t n;			/* GGUF_ARRAY: the element count */
	const unsigned char *val;	/* the value (array: its first element) */
	uint64_t *str_off;		/* array of strings: each one's offset from val */
};

struct gguf_tensor {
	char *name;			/* NUL-terminated copy */
	int ndim;
	uint64_t ne[GGUF_MAX_DIMS];	/* innermost first */
	enum dtype dtype;
	uint64_t numel;
	uint64_t offset;		/* within the data section */
	uint64_t nbytes;
	const void *data;		/* in the image */
};

struct gguf {
	char *path;			/* for messages */
	uint32_t version;
	uint64_t alignment;
	struct gguf_kv *kv;
	size_t nkv;
	struct gguf_tensor *tensors;	/* in file order */
	size_t ntensors;
	uint64_t data_start;
	const unsigned char *image;
	size_t image_len;
	void *map;			/* gguf_open's mapping, or NULL */
};

/* Parse a GGUF image held in memory (not copied: it must outlive g).
 * what names it in messages.  On error g is left empty. */
int gguf_parse(const void *buf, size_t len, const char *what, struct gguf *g);
/* Map and parse the file at path. */
int gguf_open(const char *path, struct gguf *g);
void gguf_close(struct gguf *g);

/* The GGML type name of a tensor type number ("Q4_K"), or NULL. */
const char *gguf_ggml_type_name(uint32_t type);
/* "u32", "string", "array" ... */
const char *gguf_type_name(enum gguf_type t);

const struct gguf_kv *gguf_find(const struct gguf *g, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* Scalar getters: 1 found and converted, 0 absent, negative (err_msg set,
 * naming the key) when present with a type that does not fit. */
int gguf_get_int(const struct gguf *g, const char *key, int64_t *out);	/* any integer, bool */
int gguf_get_f64(const struct gguf *g, const char *key, double *out);	/* float or integer */
int gguf_get_str(const struct gguf *g, const char *key, struct gguf_str *out);

/* Element i of an array (i < kv->n; the array's type must match: strings,
 * any integer, or F32/F64 for gguf_arr_f64). */
struct gguf_str gguf_arr_str(const struct gguf_kv *kv, uint64_t i);
int64_t gguf_arr_int(const struct gguf_kv *kv, uint64_t i);
double gguf_arr_f64(const struct gguf_kv *kv, uint64_t i);
/* An array of kind type (GGUF_STRING; or GGUF_I32 meaning any integer;
 * GGUF_F32 meaning F32 or F64): 1 found, 0 absent, negative if key is not
 * such an array. */
int gguf_get_arr(const struct gguf *g, const char *key, enum gguf_type kind,
		 const struct gguf_kv **out);

#endif
