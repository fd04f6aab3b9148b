/*
 * st_convert.h - for the unit tests: a copy of an F32 checkpoint with
 * every tensor rounded to BF16 or F16 (as a Hugging Face model saved in
 * that dtype), written as DST/model.safetensors beside a copy of the
 * source's config.json and generation_config.json.  The values are
 * rounded to nearest even (f32_to_bf16 / f32_to_f16).
 *
 * st_convert() returns 0, or -1 with a message on stderr.
 */
#ifndef DYN_TEST_ST_CONVERT_H
#define DYN_TEST_ST_CONVERT_H

#include "core/err.h"
#include "core/fsutil.h"
#include "core/model/model.h"
#include "core/strbuf.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_convert_pass {
	struct strbuf *header;	/* first pass: the JSON header */
	int fd;			/* second pass: the data */
	enum dtype dt;
	uint64_t off;
	int failed;
};

static int st_convert_tensor(void *arg, const struct model_tensor *t)
{
	struct st_convert_pass *p = arg;
	uint64_t bytes = t->numel * 2;

	if (p->header) {
		sb_addf(p->header, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld", p->off ? "," : "",
			t->name, dtype_name(p->dt), (long long)t->shape[0]);
		if (t->ndim > 1)
			sb_addf(p->header, ",%lld", (long long)t->shape[1]);
		sb_addf(p->header, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)p->off,
			(unsigned long long)(p->off + bytes));
	} else {
		const float *src = t->data;
		uint16_t *h = malloc(bytes);
		for (uint64_t i = 0; i < t->numel; i++)
			h[i] = p->dt == DTYPE_BF16 ? f32_to_bf16(src[i]) : f32_to_f16(src[i]);
		p->failed |= fd_write_all(p->fd, h, bytes) < 0;
		free(h);
	}
	p->off += bytes;
	return 0;
}

static int st_convert_copy(const char *src_dir, const char *dst_dir, const char *name)
{
	char path[1100];
	struct strbuf sb = STRBUF_INIT;
	int rc = 0;

	snprintf(path, sizeof(path), "%s/%s", src_dir, name);
	if (sb_read_file(&sb, path, 1 << 20) < 0)
		return 0;	/* absent: nothing to copy */
	snprintf(path, sizeof(path), "%s/%s", dst_dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || fd_write_all(fd, sb.buf, sb.len) < 0)
		rc = -1;
	if (fd >= 0)
		close(fd);
	sb_release(&sb);
	return rc;
}

static int st_convert(const char *src_dir, const char *dst_dir, enum dtype dt)
{
	struct model_load_opts lo = { .flags = MODEL_LOAD_F32 };
	struct model *m;
	struct strbuf h = STRBUF_INIT;
	struct st_convert_pass p = { .header = &h, .dt = dt };
	char path[1100];

	if (model_load(src_dir, &lo, &m) < 0) {
		fprintf(stderr, "st_convert: %s\n", err_msg());
		return -1;
	}
	sb_addch(&h, '{');
	model_for_each_tensor(m, st_convert_tensor, &p);
	sb_addch(&h, '}');
	while (h.len % 8)	/* data 8-byte aligned, as safetensors writers do */
		sb_addch(&h, ' ');
	fs_mkdirs(dst_dir, 0755);
	snprintf(path, sizeof(path), "%s/model.safetensors", dst_dir);
	p.fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint64_t hlen = h.len;
	unsigned char le[8];
	for (int i = 0; i < 8; i++)
		le[i] = (unsigned char)(hlen >> (8 * i));
	if (p.fd < 0 || fd_write_all(p.fd, le, 8) < 0 || fd_write_all(p.fd, h.buf, h.len) < 0)
		p.failed = 1;
	p.header = NULL;
	p.off = 0;
	model_for_each_tensor(m, st_convert_tensor, &p);
	if (p.fd >= 0)
		close(p.fd);
	sb_release(&h);
	model_free(m);
	if (p.failed || st_convert_copy(src_dir, dst_dir, "config.json") < 0 ||
	    st_convert_copy(src_dir, dst_dir, "generation_config.json") < 0) {
		fprintf(stderr, "st_convert: cannot write %s\n", dst_dir);
		return -1;
	}
	return 0;
}

#endif
