/*
 * fuzz_frame.c - libFuzzer target for the request-plane frame decoder
 * (net/frame.h).  Run with `make fuzz`; seeds in fuzz_frame.seed/.
 *
 * The input is treated as a byte stream from a peer.  Checked for every
 * input, besides the sanitizers' memory checks:
 *  - the stateless decoder walking the buffer and a frame_reader fed the
 *    same bytes in input-dependent pieces return the same frames, and the
 *    same verdict (error code, or need-more) at the end;
 *  - every decoded frame lies inside the input and re-encodes to exactly
 *    the bytes it was decoded from (the format has one encoding);
 *  - a small max payload is honoured.
 */
#include "net/frame.h"
#include "core/strbuf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAYLOAD 4096
#define MAX_FRAMES 4096

struct seen {
	int kind;
	uint16_t flags;
	uint64_t id;
	uint32_t aux, length;
	size_t offset;		/* where in the input the frame started */
};

static void check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_frame: invariant broken: %s\n", what);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct seen frames[MAX_FRAMES];
	size_t nframes = 0, off = 0, used = 0;
	int verdict;
	struct frame f;
	struct strbuf re = STRBUF_INIT;

	/* 1. Stateless walk. */
	for (;;) {
		verdict = frame_decode(data + off, size - off, MAX_PAYLOAD, &f, &used);
		if (verdict != FRAME_OK)
			break;
		check(used >= FRAME_HEADER_SIZE && used <= size - off, "frame inside input");
		check(f.length <= MAX_PAYLOAD, "payload within limit");
		check(f.payload == data + off + FRAME_HEADER_SIZE, "payload position");
		check(used == FRAME_HEADER_SIZE + (size_t)f.length, "frame size");
		if (f.kind == FRAME_REQUEST) {
			check(f.endpoint_len >= 1 && f.endpoint_len <= FRAME_MAX_ENDPOINT,
			      "endpoint length");
			check(f.endpoint_len + f.body_len == f.length, "request split");
			check(frame_endpoint_valid(f.endpoint, f.endpoint_len), "endpoint name");
		}
		sb_reset(&re);
		frame_append(&re, f.kind, f.flags, f.id, f.aux, f.payload, f.length);
		check(re.len == used && memcmp(re.buf, data + off, used) == 0,
		      "re-encoding gives the same bytes");
		if (nframes < MAX_FRAMES)
			frames[nframes++] = (struct seen){ f.kind, f.flags, f.id, f.aux,
							   f.length, off };
		off += used;
	}
	if (verdict == FRAME_NEED_MORE)
		check(used > size - off, "need-more asks for more than there is");

	/* 2. The reader, fed in pieces whose sizes come from the data. */
	struct frame_reader r;
	size_t pos = 0, k = 0;
	int rc = FRAME_NEED_MORE;
	frame_reader_init(&r, MAX_PAYLOAD);
	while (pos < size && rc >= 0) {
		size_t piece = 1 + (data[pos] % 97) * (1 + (size_t)(pos & 3));
		if (piece > size - pos)
			piece = size - pos;
		if (pos & 1) {
			frame_reader_feed(&r, data + pos, piece);
		} else {
			size_t avail;
			void *p = frame_reader_space(&r, piece, &avail);
			check(avail >= piece, "reader space");
			memcpy(p, data + pos, piece);
			frame_reader_commit(&r, piece);
		}
		pos += piece;
		while ((rc = frame_reader_next(&r, &f)) == FRAME_OK) {
			check(k < nframes || nframes == MAX_FRAMES, "reader found an extra frame");
			if (k < nframes && k < MAX_FRAMES) {
				const struct seen *s = &frames[k];
				check((int)f.kind == s->kind && f.flags == s->flags && f.id == s->id &&
				      f.aux == s->aux && f.length == s->length, "same frame");
				check(memcmp(f.payload, data + s->offset + FRAME_HEADER_SIZE,
					     f.length) == 0, "same payload");
			}
			k++;
		}
	}
	if (nframes < MAX_FRAMES) {
		check(k == nframes, "reader found the same number of frames");
		check(rc == verdict || (size == 0 && rc == FRAME_NEED_MORE),
		      "same verdict at the end");
		check(frame_reader_pending(&r) == size - off || rc < 0, "pending bytes");
	}
	frame_reader_release(&r);
	sb_release(&re);
	return 0;
}
