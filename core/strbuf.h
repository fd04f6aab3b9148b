/*
 * strbuf.h - growable byte buffers (after git's strbuf).
 *
 * A strbuf always holds a NUL-terminated string in buf[0..len] (the NUL
 * is not counted in len), so buf can be passed to C string functions even
 * when the contents are binary.  Initialise with STRBUF_INIT or
 * sb_init(); release with sb_release().  Allocation failure aborts the
 * process (there is no sane recovery from OOM in a server's hot paths).
 *
 * Not thread-safe: a strbuf belongs to one thread at a time.
 */
#ifndef DYN_STRBUF_H
#define DYN_STRBUF_H

#include <stdarg.h>
#include <stddef.h>

struct strbuf {
	char *buf;
	size_t len;
	size_t alloc;
};

extern char sb_empty[];
#define STRBUF_INIT { sb_empty, 0, 0 }

void sb_init(struct strbuf *sb, size_t hint);
void sb_release(struct strbuf *sb);
/* Hand the buffer to the caller (to free()); sb is left empty. */
char *sb_detach(struct strbuf *sb, size_t *len);

void sb_grow(struct strbuf *sb, size_t extra);
void sb_setlen(struct strbuf *sb, size_t len);
static inline void sb_reset(struct strbuf *sb) { sb_setlen(sb, 0); }

void sb_add(struct strbuf *sb, const void *data, size_t len);
void sb_adds(struct strbuf *sb, const char *s);
void sb_addch(struct strbuf *sb, int c);
void sb_addf(struct strbuf *sb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void sb_vaddf(struct strbuf *sb, const char *fmt, va_list ap);
/* Remove n bytes starting at pos. */
void sb_remove(struct strbuf *sb, size_t pos, size_t n);

/* Append s (len bytes) as a JSON string literal, quotes included.
 * Invalid UTF-8 bytes are replaced with U+FFFD. */
void sb_add_json_str(struct strbuf *sb, const char *s, size_t len);

/* Read a whole file into sb (appending).  Returns 0 or -errno (err.h). */
int sb_read_file(struct strbuf *sb, const char *path, size_t max_bytes);

#endif
