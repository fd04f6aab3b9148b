/*
 * safetensors.h - reading .safetensors checkpoints, single or sharded.
 *
 * The format: an 8-byte little-endian header length N, N bytes of JSON
 * mapping tensor names to {"dtype", "shape", "data_offsets": [begin, end]}
 * (plus an optional "__metadata__" object of strings), then the data
 * section; offsets are relative to its start (byte 8 + N).
 *
 * Everything in a header is checked before it is used: the length against
 * the file size, the JSON, every dtype and shape, that the byte span of each
 * tensor equals its element count times its element size, that spans lie
 * inside the data section and do not overlap, and that names are unique.
 * A bad file gives a negative code and an err_msg() naming the file and the
 * tensor; nothing reads outside the file.
 *
 * Data is memory-mapped read-only (never copied); a file that is
 * truncated by someone else while mapped can still raise SIGBUS, as with
 * any mapping: checkpoints are treated as immutable, as the hub cache is.
 *
 * Ownership: st_set_open() returns a set that owns its files, maps and
 * names; st_set_close() releases all of it, and every pointer obtained
 * from the set dies with it.  An open set is never modified, so any number
 * of threads may read it at once.
 */
#ifndef DYN_MODEL_SAFETENSORS_H
#define DYN_MODEL_SAFETENSORS_H

#include "core/model/dtype.h"

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_HEADER_MAX (100u << 20)	/* the format's own limit on N */

struct st_file;

struct st_tensor {
	const char *name;
	enum dtype dtype;
	int ndim;
	uint64_t shape[ST_MAX_DIMS];
	uint64_t numel;
	uint64_t offset;	/* of the first byte, within the data section */
	uint64_t nbytes;
	const void *data;	/* NULL unless the file is mapped */
	const struct st_file *file;
};

struct st_file {
	char *path;
	uint64_t file_size;
	uint64_t data_start;		/* 8 + header length */
	struct st_tensor *tensors;	/* in header order */
	size_t ntensors;
	char *format;			/* __metadata__.format ("pt"), or NULL */
	void *map;			/* whole-file mapping, or NULL */
	size_t map_len;
};

/*
 * Parse a safetensors file image held in memory (buf, len).  The tensors'
 * data pointers point into buf.  On error f is left empty.  Used by the
 * file reader below and directly by the fuzzer.
 */
int st_parse_image(const void *buf, size_t len, struct st_file *f);

/*
 * Parse a header: prefix holds the file's first 8 bytes, json its header
 * (json_len == N bytes), file_size the whole file's size.  Fills f (data
 * pointers NULL).
 */
int st_check_prefix(const unsigned char prefix[8], uint64_t file_size, uint64_t *header_len);
int st_parse_header(const char *json, size_t json_len, uint64_t file_size,
		    struct st_file *f);
void st_file_release(struct st_file *f);

/* Open and check one file (f->path is a copy of path); with ST_MAP also
 * map it and point the tensors' data into the mapping. */
int st_file_open(const char *path, int flags, struct st_file *f);

#define ST_MAP 1	/* map the files; otherwise headers only, data NULL */

/* A set of files forming one checkpoint. */
struct st_set {
	struct st_file *files;
	size_t nfiles;
	const struct st_tensor **sorted;	/* all tensors, sorted by name */
	size_t ntensors;
	uint64_t total_bytes;			/* sum of tensor bytes */
};

/*
 * Open a checkpoint.  path is one of:
 *   - a directory: its model.safetensors.index.json if present, else
 *     model.safetensors, else every *.safetensors file in it;
 *   - a "*.safetensors.index.json" file: the shards it names (which must
 *     all exist, hold the tensors the index says, and lie in its folder);
 *   - a single .safetensors file.
 * A tensor name present in two files is an error; a directory without
 * any .safetensors file gives -ENODATA.
 */
int st_set_open(const char *path, int flags, struct st_set **out);
/* A set of the one file f, whose tensors another reader filled (GGUF):
 * takes f over (leaving it empty), even on error (a duplicate name). */
int st_set_adopt(struct st_file *f, struct st_set **out);
const struct st_tensor *st_set_find(const struct st_set *s, const char *name);
void st_set_close(struct st_set *s);

/* 1 if name is acceptable as a shard named by an index: relative, with
 * no empty or ".." component (it must stay inside the index's folder). */
int st_shard_name_ok(const char *name);

#endif
