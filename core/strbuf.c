/*
 * strbuf.c - growable byte buffers (see strbuf.h).
 */
#include "core/strbuf.h"
#include "core/err.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char sb_empty[1];

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (!q) {
		fprintf(stderr, "dyn: out of memory (%zu bytes)\n", n);
		abort();
	}
	return q;
}

void sb_init(struct strbuf *sb, size_t hint)
{
	sb->buf = sb_empty;
	sb->len = sb->alloc = 0;
	if (hint)
		sb_grow(sb, hint);
}

void sb_release(struct strbuf *sb)
{
	if (sb->alloc)
		free(sb->buf);
	sb_init(sb, 0);
}

char *sb_detach(struct strbuf *sb, size_t *len)
{
	char *p;
	if (len)
		*len = sb->len;
	if (!sb->alloc)
		sb_grow(sb, 0);
	p = sb->buf;
	sb_init(sb, 0);
	return p;
}

void sb_grow(struct strbuf *sb, size_t extra)
{
	size_t need = sb->len + extra + 1;
	if (need < sb->len) {
		fprintf(stderr, "dyn: strbuf size overflow\n");
		abort();
	}
	if (need <= sb->alloc)
		return;
	size_t n = sb->alloc ? sb->alloc : 64;
	while (n < need)
		n = n < SIZE_MAX / 2 ? n * 2 : need;
	if (!sb->alloc) {
		sb->buf = xrealloc(NULL, n);
		sb->buf[0] = '\0';
	} else {
		sb->buf = xrealloc(sb->buf, n);
	}
	sb->alloc = n;
}

void sb_setlen(struct strbuf *sb, size_t len)
{
	if (!sb->alloc) {
		if (len == 0)
			return;
		sb_grow(sb, len);
	}
	sb->len = len;
	sb->buf[len] = '\0';
}

void sb_add(struct strbuf *sb, const void *data, size_t len)
{
	if (!len)
		return;
	sb_grow(sb, len);
	memcpy(sb->buf + sb->len, data, len);
	sb_setlen(sb, sb->len + len);
}

void sb_adds(struct strbuf *sb, const char *s)
{
	sb_add(sb, s, strlen(s));
}

void sb_addch(struct strbuf *sb, int c)
{
	sb_grow(sb, 1);
	sb->buf[sb->len] = (char)c;
	sb_setlen(sb, sb->len + 1);
}

void sb_vaddf(struct strbuf *sb, const char *fmt, va_list ap)
{
	va_list cp;
	int n;

	va_copy(cp, ap);
	sb_grow(sb, 64);
	n = vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, cp);
	va_end(cp);
	if (n < 0)
		return;
	if ((size_t)n >= sb->alloc - sb->len) {
		sb_grow(sb, (size_t)n);
		vsnprintf(sb->buf + sb->len, sb->alloc - sb->len, fmt, ap);
	}
	sb_setlen(sb, sb->len + (size_t)n);
}

void sb_addf(struct strbuf *sb, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sb_vaddf(sb, fmt, ap);
	va_end(ap);
}

void sb_remove(struct strbuf *sb, size_t pos, size_t n)
{
	if (pos > sb->len)
		return;
	if (n > sb->len - pos)
		n = sb->len - pos;
	if (!n)
		return;	/* also keeps a zeroed (buf == NULL) strbuf away from memmove */
	memmove(sb->buf + pos, sb->buf + pos + n, sb->len - pos - n);
	sb_setlen(sb, sb->len - n);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
	unsigned c = s[0];
	size_t n;
	unsigned min;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; min = 0x80; }
	else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; min = 0x800; }
	else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; min = 0x10000; }
	else
		return 0;
	if (avail < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

void sb_add_json_str(struct strbuf *sb, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	sb_addch(sb, '"');
	while (i < len) {
		unsigned c = p[i];
		if (c >= 0x80) {
			size_t n = utf8_seq_len(p + i, len - i);
			if (n) {
				sb_add(sb, p + i, n);
				i += n;
			} else {
				sb_adds(sb, "\xef\xbf\xbd");
				i++;
			}
			continue;
		}
		switch (c) {
		case '"': sb_adds(sb, "\\\""); break;
		case '\\': sb_adds(sb, "\\\\"); break;
		case '\n': sb_adds(sb, "\\n"); break;
		case '\r': sb_adds(sb, "\\r"); break;
		case '\t': sb_adds(sb, "\\t"); break;
		case '\b': sb_adds(sb, "\\b"); break;
		case '\f': sb_adds(sb, "\\f"); break;
		default:
			if (c < 0x20)
				sb_addf(sb, "\\u%04x", c);
			else
				sb_addch(sb, (int)c);
		}
		i++;
	}
	sb_addch(sb, '"');
}

int sb_read_file(struct strbuf *sb, const char *path, size_t max_bytes)
{
	FILE *f = fopen(path, "rb");
	char tmp[65536];
	size_t n, total = 0;

	if (!f)
		return err_set(-errno, "%s: %s", path, strerror(errno));
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0) {
		total += n;
		if (max_bytes && total > max_bytes) {
			fclose(f);
			return err_set(-EFBIG, "%s: larger than %zu bytes", path,
				       max_bytes);
		}
		sb_add(sb, tmp, n);
	}
	if (ferror(f)) {
		int e = errno;
		fclose(f);
		return err_set(-e, "%s: read error: %s", path, strerror(e));
	}
	fclose(f);
	return 0;
}
