/*
 * test_frame.c - the request-plane wire format (net/frame.h).
 *
 * The reference is the byte layout written out in dyn-rpc(1): the tests
 * build expected headers byte by byte from that table rather than with
 * the encoder under test.
 */
#include "net/frame.h"
#include "core/err.h"
#include "core/strbuf.h"
#include "check.h"

#include <errno.h>
#include <stdint.h>

/* The header as the man page lays it out, written independently. */
static void manual_header(uint8_t h[24], int kind, unsigned flags, uint64_t id,
			  uint32_t length, uint32_t aux)
{
	h[0] = 'D';
	h[1] = 'Y';
	h[2] = 1;
	h[3] = (uint8_t)kind;
	h[4] = flags & 0xff;
	h[5] = (flags >> 8) & 0xff;
	h[6] = h[7] = 0;
	for (int i = 0; i < 8; i++)
		h[8 + i] = (uint8_t)(id >> (8 * i));
	for (int i = 0; i < 4; i++) {
		h[16 + i] = (uint8_t)(length >> (8 * i));
		h[20 + i] = (uint8_t)(aux >> (8 * i));
	}
}

TEST(header_layout_matches_man_page)
{
	struct strbuf sb = STRBUF_INIT;
	uint8_t want[24];

	frame_append(&sb, FRAME_DATA, FRAME_FLAG_BINARY, 0x0102030405060708ull, 0,
		     "abc", 3);
	manual_header(want, 2, 1, 0x0102030405060708ull, 3, 0);
	CHECK_INT(sb.len, 27);
	CHECK(memcmp(sb.buf, want, 24) == 0);
	CHECK(memcmp(sb.buf + 24, "abc", 3) == 0);
	/* Spot-check absolute positions too. */
	CHECK_INT((uint8_t)sb.buf[8], 0x08);
	CHECK_INT((uint8_t)sb.buf[15], 0x01);
	CHECK_INT((uint8_t)sb.buf[16], 3);
	sb_release(&sb);
}

/* The EXAMPLE bytes printed in dyn-rpc(1), WIRE FORMAT. */
TEST(man_page_example_bytes)
{
	static const uint8_t request[] = {
		0x44, 0x59, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x0b, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00, 0x00,
		'n', 's', '/', 'c', '/', 'e', 'c', 'h', 'o', '{', '}',
	};
	static const uint8_t end[] = {
		0x44, 0x59, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		'{', '}',
	};
	struct strbuf sb = STRBUF_INIT;

	CHECK_INT(frame_append_request(&sb, 1, 0, "ns/c/echo", "{}", 2, 1024), 0);
	CHECK_INT(sb.len, sizeof(request));
	CHECK(memcmp(sb.buf, request, sizeof(request)) == 0);
	sb_reset(&sb);
	frame_append(&sb, FRAME_END, 0, 1, 0, "{}", 2);
	CHECK_INT(sb.len, sizeof(end));
	CHECK(memcmp(sb.buf, end, sizeof(end)) == 0);
	sb_release(&sb);
}

TEST(round_trip_every_kind)
{
	static const struct {
		int kind;
		uint64_t id;
		uint32_t aux;
		const char *payload;
	} cases[] = {
		{ FRAME_DATA, 7, 0, "{\"seq\":1}" },
		{ FRAME_END, 7, 0, "" },
		{ FRAME_ERROR, 9, 404, "no such endpoint" },
		{ FRAME_CANCEL, UINT64_MAX, 0, "" },
		{ FRAME_PING, 0, 0, "p" },
		{ FRAME_PONG, 0, 0, "p" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct strbuf sb = STRBUF_INIT;
		struct frame f;
		size_t used = 0, len = strlen(cases[i].payload);

		frame_append(&sb, cases[i].kind, 0, cases[i].id, cases[i].aux,
			     cases[i].payload, len);
		CHECK_INT(frame_decode(sb.buf, sb.len, 1024, &f, &used), FRAME_OK);
		CHECK_INT(used, 24 + len);
		CHECK_INT(f.kind, cases[i].kind);
		CHECK(f.id == cases[i].id);
		CHECK_INT(f.aux, cases[i].aux);
		CHECK_INT(f.length, len);
		CHECK(memcmp(f.payload, cases[i].payload, len) == 0);
		CHECK_STR(frame_kind_name(f.kind), frame_kind_name(cases[i].kind));
		sb_release(&sb);
	}
	CHECK_STR(frame_kind_name(FRAME_REQUEST), "REQUEST");
	CHECK_STR(frame_kind_name(0), "?");
	CHECK_STR(frame_kind_name(8), "?");
}

TEST(request_carries_endpoint_and_body)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame f;
	size_t used;
	uint8_t want[24];

	CHECK_INT(frame_append_request(&sb, 42, 0, "ns/comp/echo", "{\"a\":1}", 7, 1024), 0);
	manual_header(want, 1, 0, 42, 12 + 7, 12);
	CHECK(memcmp(sb.buf, want, 24) == 0);
	CHECK(memcmp(sb.buf + 24, "ns/comp/echo{\"a\":1}", 19) == 0);
	CHECK_INT(frame_decode(sb.buf, sb.len, 1024, &f, &used), FRAME_OK);
	CHECK_INT(f.kind, FRAME_REQUEST);
	CHECK_INT(f.endpoint_len, 12);
	CHECK(memcmp(f.endpoint, "ns/comp/echo", 12) == 0);
	CHECK_INT(f.body_len, 7);
	CHECK(memcmp(f.body, "{\"a\":1}", 7) == 0);

	/* Empty body is fine; bad names and oversize are refused. */
	sb_reset(&sb);
	CHECK_INT(frame_append_request(&sb, 1, 0, "e", NULL, 0, 1024), 0);
	CHECK_INT(frame_decode(sb.buf, sb.len, 1024, &f, &used), FRAME_OK);
	CHECK_INT(f.body_len, 0);
	CHECK_INT(frame_append_request(&sb, 1, 0, "", NULL, 0, 1024), -EINVAL);
	CHECK_INT(frame_append_request(&sb, 1, 0, "a b", NULL, 0, 1024), -EINVAL);
	CHECK_INT(frame_append_request(&sb, 1, 0, "e", "0123456789", 10, 8), -EMSGSIZE);
	sb_release(&sb);
}

TEST(partial_input_byte_by_byte)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame_reader r;
	struct frame f;
	int got = 0;

	frame_append(&sb, FRAME_DATA, 0, 5, 0, "hello", 5);
	frame_append(&sb, FRAME_END, 0, 5, 0, "bye", 3);
	frame_reader_init(&r, 0);
	for (size_t i = 0; i < sb.len; i++) {
		frame_reader_feed(&r, sb.buf + i, 1);
		int rc;
		while ((rc = frame_reader_next(&r, &f)) == FRAME_OK) {
			if (got == 0) {
				CHECK_INT(i, 24 + 5 - 1);
				CHECK_INT(f.kind, FRAME_DATA);
				CHECK(memcmp(f.payload, "hello", 5) == 0);
			} else {
				CHECK_INT(i, sb.len - 1);
				CHECK_INT(f.kind, FRAME_END);
				CHECK(memcmp(f.payload, "bye", 3) == 0);
			}
			got++;
		}
		CHECK_INT(rc, FRAME_NEED_MORE);
	}
	CHECK_INT(got, 2);
	CHECK_INT(frame_reader_pending(&r), 0);
	frame_reader_release(&r);

	/* The stateless decoder on every prefix: need-more, never a frame. */
	for (size_t cut = 0; cut < 24 + 5; cut++) {
		size_t used = 0;
		CHECK_INT(frame_decode(sb.buf, cut, 1024, &f, &used), FRAME_NEED_MORE);
		CHECK_INT(used, cut < 24 ? 24 : 29);
	}
	sb_release(&sb);
}

TEST(truncated_then_completed)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame_reader r;
	struct frame f;

	frame_append(&sb, FRAME_DATA, FRAME_FLAG_BINARY, 3, 0, "\0\1\2\3", 4);
	frame_reader_init(&r, 0);
	frame_reader_feed(&r, sb.buf, sb.len - 1);
	CHECK_INT(frame_reader_next(&r, &f), FRAME_NEED_MORE);
	CHECK_INT(frame_reader_pending(&r), sb.len - 1);
	/* Write the last byte straight into the reader's space. */
	size_t avail;
	char *p = frame_reader_space(&r, 1, &avail);
	CHECK(avail >= 1);
	*p = sb.buf[sb.len - 1];
	frame_reader_commit(&r, 1);
	CHECK_INT(frame_reader_next(&r, &f), FRAME_OK);
	CHECK_INT(f.flags, FRAME_FLAG_BINARY);
	CHECK(memcmp(f.payload, "\0\1\2\3", 4) == 0);
	frame_reader_release(&r);
	sb_release(&sb);
}

TEST(oversized_refused_from_header_alone)
{
	uint8_t h[24];
	struct frame f;
	size_t used;

	manual_header(h, FRAME_DATA, 0, 1, 1025, 0);
	CHECK_INT(frame_decode(h, sizeof(h), 1024, &f, &used), -EMSGSIZE);
	CHECK(strstr(err_msg(), "1025") != NULL);
	manual_header(h, FRAME_DATA, 0, 1, 1024, 0);
	CHECK_INT(frame_decode(h, sizeof(h), 1024, &f, &used), FRAME_NEED_MORE);
	CHECK_INT(used, 24 + 1024);

	/* Default limit: 32 MiB. */
	struct frame_reader r;
	frame_reader_init(&r, 0);
	manual_header(h, FRAME_DATA, 0, 1, (32u << 20) + 1, 0);
	frame_reader_feed(&r, h, sizeof(h));
	CHECK_INT(frame_reader_next(&r, &f), -EMSGSIZE);
	/* Sticky. */
	CHECK_INT(frame_reader_next(&r, &f), -EMSGSIZE);
	frame_reader_release(&r);
	frame_reader_init(&r, 0);
	manual_header(h, FRAME_DATA, 0, 1, 32u << 20, 0);
	frame_reader_feed(&r, h, sizeof(h));
	CHECK_INT(frame_reader_next(&r, &f), FRAME_NEED_MORE);
	frame_reader_release(&r);
}

TEST(garbage_and_bad_fields)
{
	uint8_t h[24];
	struct frame f;
	size_t used;

	/* Bad magic is seen from the very first byte. */
	CHECK_INT(frame_decode("GET / HTTP/1.1\r\n", 16, 1024, &f, &used), -EBADMSG);
	CHECK_INT(frame_decode("X", 1, 1024, &f, &used), -EBADMSG);
	CHECK_INT(frame_decode("DX", 2, 1024, &f, &used), -EBADMSG);
	CHECK_INT(frame_decode("DY", 2, 1024, &f, &used), FRAME_NEED_MORE);

	manual_header(h, FRAME_DATA, 0, 1, 0, 0);
	h[2] = 2;
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTONOSUPPORT);
	manual_header(h, 0, 0, 1, 0, 0);
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, 8, 0, 1, 0, 0);
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, FRAME_DATA, 0x8000, 1, 0, 0);
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, FRAME_DATA, 0, 1, 0, 0);
	h[6] = 1;
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, FRAME_DATA, 0, 0, 0, 0);	/* id 0 */
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, FRAME_PING, 0, 0, 0, 0);	/* id 0 is fine for PING */
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), FRAME_OK);
	manual_header(h, FRAME_DATA, 0, 1, 0, 5);	/* aux on DATA */
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);
	manual_header(h, FRAME_ERROR, 0, 1, 0, 0);	/* ERROR without code */
	CHECK_INT(frame_decode(h, 24, 1024, &f, &used), -EPROTO);

	/* REQUEST: name length 0, longer than the payload, or not ASCII. */
	uint8_t req[24 + 4];
	manual_header(req, FRAME_REQUEST, 0, 1, 4, 0);
	CHECK_INT(frame_decode(req, 24, 1024, &f, &used), -EPROTO);
	manual_header(req, FRAME_REQUEST, 0, 1, 4, 5);
	CHECK_INT(frame_decode(req, 24, 1024, &f, &used), -EPROTO);
	manual_header(req, FRAME_REQUEST, 0, 1, 4, 4);
	memcpy(req + 24, "a\nb", 4);
	CHECK_INT(frame_decode(req, sizeof(req), 1024, &f, &used), -EPROTO);
	memcpy(req + 24, "abcd", 4);
	CHECK_INT(frame_decode(req, sizeof(req), 1024, &f, &used), FRAME_OK);
	CHECK_INT(f.body_len, 0);
}

TEST(many_frames_in_one_buffer)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame_reader r;
	struct frame f;
	char payload[64];
	int n = 0;

	for (int i = 1; i <= 1000; i++) {
		int len = snprintf(payload, sizeof(payload), "{\"seq\":%d}", i);
		frame_append(&sb, FRAME_DATA, 0, 77, 0, payload, (size_t)len);
	}
	frame_append(&sb, FRAME_END, 0, 77, 0, NULL, 0);
	/* Both the stateless decoder walking the buffer ... */
	size_t off = 0, used;
	while (frame_decode(sb.buf + off, sb.len - off, 1024, &f, &used) == FRAME_OK) {
		off += used;
		n++;
	}
	CHECK_INT(n, 1001);
	CHECK_INT(off, sb.len);
	/* ... and the reader fed in uneven chunks give the same frames in order. */
	frame_reader_init(&r, 1024);
	n = 0;
	for (size_t pos = 0; pos < sb.len;) {
		size_t chunk = 1 + (pos * 7919) % 4000;
		if (chunk > sb.len - pos)
			chunk = sb.len - pos;
		frame_reader_feed(&r, sb.buf + pos, chunk);
		pos += chunk;
		while (frame_reader_next(&r, &f) == FRAME_OK) {
			n++;
			if (n <= 1000) {
				int len = snprintf(payload, sizeof(payload), "{\"seq\":%d}", n);
				CHECK_INT(f.kind, FRAME_DATA);
				CHECK_INT(f.length, len);
				CHECK(memcmp(f.payload, payload, (size_t)len) == 0);
			} else {
				CHECK_INT(f.kind, FRAME_END);
			}
		}
	}
	CHECK_INT(n, 1001);
	frame_reader_release(&r);
	sb_release(&sb);
}

TEST(garbage_after_good_frames_fails_only_there)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame_reader r;
	struct frame f;

	frame_append(&sb, FRAME_DATA, 0, 1, 0, "{}", 2);
	sb_adds(&sb, "garbage!garbage!garbage!");
	frame_reader_init(&r, 0);
	frame_reader_feed(&r, sb.buf, sb.len);
	CHECK_INT(frame_reader_next(&r, &f), FRAME_OK);
	CHECK_INT(frame_reader_next(&r, &f), -EBADMSG);
	frame_reader_release(&r);
	sb_release(&sb);
}

TEST(large_frame_through_reader_space)
{
	struct strbuf sb = STRBUF_INIT;
	struct frame_reader r;
	struct frame f;
	size_t big = 3u << 20;
	char *payload = malloc(big);

	for (size_t i = 0; i < big; i++)
		payload[i] = (char)(i * 31);
	frame_append(&sb, FRAME_DATA, FRAME_FLAG_BINARY, 2, 0, payload, big);
	frame_reader_init(&r, 0);
	size_t pos = 0;
	int rc = FRAME_NEED_MORE;
	while (pos < sb.len) {
		size_t avail;
		char *p = frame_reader_space(&r, 65536, &avail);
		size_t n = sb.len - pos < 65536 ? sb.len - pos : 65536;
		CHECK(avail >= n);
		memcpy(p, sb.buf + pos, n);
		frame_reader_commit(&r, n);
		pos += n;
		rc = frame_reader_next(&r, &f);
		if (pos < sb.len)
			CHECK_INT(rc, FRAME_NEED_MORE);
	}
	CHECK_INT(rc, FRAME_OK);
	CHECK_INT(f.length, big);
	CHECK(memcmp(f.payload, payload, big) == 0);
	free(payload);
	frame_reader_release(&r);
	sb_release(&sb);
}

int main(void)
{
	return RUN_TESTS();
}
