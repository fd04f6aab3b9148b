/*
 * test_safetensors.c - the safetensors reader against hand-built files
 * (valid, corrupt and hostile), the half-precision conversions against
 * IEEE 754 values worked out by hand, and the digests against the FIPS
 * 180 test vectors and git's blob ids.
 */
#include "test/unit/check.h"

#include "core/err.h"
#include "core/model/digest.h"
#include "core/model/dtype.h"
#include "core/model/safetensors.h"
#include "core/strbuf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

/* A file image: 8-byte length, header text (padded with spaces), data. */
static void image(struct strbuf *out, const char *header, const void *data, size_t len)
{
	size_t n = strlen(header);
	size_t pad = (8 - n % 8) % 8;
	unsigned char prefix[8];

	for (int i = 0; i < 8; i++)
		prefix[i] = (unsigned char)((uint64_t)(n + pad) >> (8 * i));
	sb_reset(out);
	sb_add(out, prefix, 8);
	sb_adds(out, header);
	for (size_t i = 0; i < pad; i++)
		sb_addch(out, ' ');
	if (len)
		sb_add(out, data, len);
}

static int parse(const char *header, const void *data, size_t len, struct st_file *f)
{
	struct strbuf sb = STRBUF_INIT;
	int rc;

	image(&sb, header, data, len);
	rc = st_parse_image(sb.buf, sb.len, f);
	if (rc == 0)
		st_file_release(f);
	sb_release(&sb);
	return rc;
}

/* The header must be refused with a message containing want. */
#define REFUSED(header, data, len, want)                                              \
	do {                                                                          \
		struct st_file f_;                                                    \
		int rc_ = parse(header, data, len, &f_);                              \
		CHECK_MSG(rc_ < 0, "accepted: %s", header);                           \
		CHECK_MSG(strstr(err_msg(), want), "message '%s' lacks '%s'", err_msg(), \
			  want);                                                      \
	} while (0)

/* Tensor data for the cases: element i holds i. */
static const float data16[16] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15 };

TEST(parses_valid_header)
{
	struct strbuf sb = STRBUF_INIT;
	struct st_file f;

	image(&sb, "{\"__metadata__\":{\"format\":\"pt\"},"
		   "\"b\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
		   "\"a\":{\"dtype\":\"BF16\",\"shape\":[6],\"data_offsets\":[0,12]},"
		   "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]},"
		   "\"e\":{\"dtype\":\"F16\",\"shape\":[0,3],\"data_offsets\":[16,16]}}",
	      data16, 32);
	CHECK_INT(st_parse_image(sb.buf, sb.len, &f), 0);
	CHECK_INT(f.ntensors, 4);
	CHECK_STR(f.format, "pt");
	CHECK_STR(f.tensors[0].name, "b");
	CHECK_INT(f.tensors[0].dtype, DTYPE_F32);
	CHECK_INT(f.tensors[0].ndim, 2);
	CHECK_INT(f.tensors[0].numel, 4);
	CHECK_INT(f.tensors[0].offset, 16);
	CHECK(((const float *)f.tensors[0].data)[1] == 5.0f);
	CHECK_INT(f.tensors[1].dtype, DTYPE_BF16);
	CHECK_INT(f.tensors[2].ndim, 0);	/* a scalar */
	CHECK_INT(f.tensors[2].numel, 1);
	CHECK_INT(f.tensors[3].numel, 0);
	CHECK_INT(f.data_start % 8, 0);
	st_file_release(&f);
	sb_release(&sb);
}

TEST(refuses_bad_length_prefix)
{
	unsigned char buf[16] = { 0 };
	struct st_file f;
	uint64_t n;

	CHECK(st_parse_image(buf, 5, &f) < 0);
	CHECK(strstr(err_msg(), "too short"));
	buf[0] = 200;	/* header of 200 bytes in a 16-byte file */
	CHECK(st_parse_image(buf, sizeof(buf), &f) < 0);
	CHECK(strstr(err_msg(), "past the end"));
	memset(buf, 0xff, 8);	/* 2^64 - 1 */
	CHECK(st_check_prefix(buf, 1000, &n) < 0);
	CHECK(strstr(err_msg(), "limit"));
	memset(buf, 0, 8);
	CHECK(st_check_prefix(buf, 1000, &n) < 0);
	CHECK(strstr(err_msg(), "too small"));
}

TEST(refuses_invalid_json)
{
	REFUSED("{\"a\":{\"dtype\":\"F32\",", NULL, 0, "not valid JSON");
	REFUSED("[1,2,3]", NULL, 0, "not a JSON object");
	REFUSED("{} trailing", NULL, 0, "trailing");
	REFUSED("{\"a\":5}", NULL, 0, "not a JSON object");
	REFUSED("{\"__metadata__\":{\"format\":3}}", NULL, 0, "not a string");
}

TEST(refuses_bad_dtype_and_shape)
{
	REFUSED("{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", data16, 4,
		"unknown dtype");
	REFUSED("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", data16, 4, "dtype");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", data16, 4,
		"non-negative integer");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", data16, 4,
		"non-negative integer");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}", data16, 4,
		"shape");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
		data16, 4, "dimensions");
	/* 2^32 * 2^32 elements overflow 64 bits. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
		"\"data_offsets\":[0,4]}}", data16, 4, "overflows");
	/* Shape and span disagree. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data16, 8,
		"need 12 bytes");
	REFUSED("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", data16, 8,
		"need 4 bytes");
}

TEST(refuses_bad_offsets)
{
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data16, 8,
		"out of range");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", data16, 8,
		"end before");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", data16, 8,
		"two");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,1e300]}}",
		data16, 8, "two");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", data16, 16,
		"overlap");
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", data16, 16,
		"twice");
}

/* The tensors must tile the data section exactly, as the reference parser
 * demands: bytes that belong to no tensor are refused, with their count. */
TEST(refuses_unaccounted_data_bytes)
{
	struct st_file f;

	/* 8 bytes of tensor, 16 in the section: 8 trailing. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data16, 16,
		"8 trailing bytes after the last tensor");
	/* One stray byte after the last tensor. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", data16, 13,
		"1 trailing bytes");
	/* A 4-byte hole between two tensors. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		"\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", data16, 16,
		"4 unused bytes in the data section between tensors 'a' (ends at 8) and 'b'");
	/* A hole before the first tensor. */
	REFUSED("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data16, 8,
		"4 unused bytes at the start");
	/* No tensors, but data bytes. */
	REFUSED("{\"__metadata__\":{\"format\":\"pt\"}}", data16, 4, "4 trailing bytes");
	/* Exact tilings pass, zero-size tensors included, in any header order. */
	CHECK_INT(parse("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]},"
			"\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]},"
			"\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
			data16, 12, &f), 0);
	CHECK_INT(parse("{}", NULL, 0, &f), 0);
}

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
	static char path[512];
	if (!tmpdir[0]) {
		snprintf(tmpdir, sizeof(tmpdir), "%s/dyn-st.XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(tmpdir))
			abort();
	}
	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	return path;
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

TEST(maps_a_file_and_detects_truncation)
{
	struct strbuf sb = STRBUF_INIT;
	struct st_file f;
	const char *path = tmp_path("one.safetensors");

	image(&sb, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4,4],\"data_offsets\":[0,64]}}", data16, 64);
	write_file(path, sb.buf, sb.len);
	CHECK_INT(st_file_open(path, ST_MAP, &f), 0);
	CHECK(f.map != NULL);
	CHECK((const char *)f.tensors[0].data >= (const char *)f.map);
	CHECK(((const float *)f.tensors[0].data)[15] == 15.0f);
	st_file_release(&f);
	CHECK_INT(st_file_open(path, 0, &f), 0);	/* header only */
	CHECK(f.tensors[0].data == NULL);
	st_file_release(&f);
	/* Cut the last byte: the tensor now runs past the end. */
	write_file(path, sb.buf, sb.len - 1);
	CHECK(st_file_open(path, ST_MAP, &f) < 0);
	CHECK(strstr(err_msg(), "out of range"));
	CHECK(strstr(err_msg(), "one.safetensors"));
	/* 100 zero bytes appended: refused, naming the file and the count. */
	{
		struct strbuf big = STRBUF_INIT;
		static const char zeros[100];
		sb_add(&big, sb.buf, sb.len);
		sb_add(&big, zeros, sizeof(zeros));
		write_file(path, big.buf, big.len);
		CHECK(st_file_open(path, ST_MAP, &f) < 0);
		CHECK(strstr(err_msg(), "one.safetensors"));
		CHECK(strstr(err_msg(), "100 trailing bytes"));
		sb_release(&big);
	}
	/* Cut into the header. */
	write_file(path, sb.buf, 20);
	CHECK(st_file_open(path, ST_MAP, &f) < 0);
	CHECK(strstr(err_msg(), "past the end"));
	CHECK(st_file_open(tmp_path("missing.safetensors"), ST_MAP, &f) == -ENOENT);
	sb_release(&sb);
}

TEST(sharded_index)
{
	struct strbuf sb = STRBUF_INIT;
	struct st_set *s;

	image(&sb, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data16, 8);
	write_file(tmp_path("m-1.safetensors"), sb.buf, sb.len);
	image(&sb, "{\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", data16, 16);
	write_file(tmp_path("m-2.safetensors"), sb.buf, sb.len);
	const char *idx = "{\"metadata\":{},\"weight_map\":{\"a\":\"m-1.safetensors\","
			  "\"b\":\"m-2.safetensors\"}}";
	write_file(tmp_path("m.safetensors.index.json"), idx, strlen(idx));
	CHECK_INT(st_set_open(tmp_path("m.safetensors.index.json"), ST_MAP, &s), 0);
	CHECK_INT(s->nfiles, 2);
	CHECK_INT(s->ntensors, 2);
	CHECK(st_set_find(s, "b") && st_set_find(s, "b")->numel == 4);
	CHECK(st_set_find(s, "a") && st_set_find(s, "a")->file == &s->files[0]);
	CHECK(st_set_find(s, "c") == NULL);
	st_set_close(s);

	idx = "{\"weight_map\":{\"a\":\"m-2.safetensors\",\"b\":\"m-2.safetensors\"}}";
	write_file(tmp_path("bad.safetensors.index.json"), idx, strlen(idx));
	CHECK(st_set_open(tmp_path("bad.safetensors.index.json"), 0, &s) < 0);
	CHECK(strstr(err_msg(), "tensor 'a' is listed for m-2.safetensors"));

	idx = "{\"weight_map\":{\"a\":\"m-3.safetensors\"}}";
	write_file(tmp_path("gone.safetensors.index.json"), idx, strlen(idx));
	CHECK(st_set_open(tmp_path("gone.safetensors.index.json"), 0, &s) == -ENOENT);
	CHECK(strstr(err_msg(), "m-3.safetensors"));

	idx = "{\"weight_map\":{\"a\":\"../etc/passwd\"}}";
	write_file(tmp_path("evil.safetensors.index.json"), idx, strlen(idx));
	CHECK(st_set_open(tmp_path("evil.safetensors.index.json"), 0, &s) < 0);
	CHECK(strstr(err_msg(), "bad file name"));

	idx = "{\"weight_map\":";
	write_file(tmp_path("trunc.safetensors.index.json"), idx, strlen(idx));
	CHECK(st_set_open(tmp_path("trunc.safetensors.index.json"), 0, &s) < 0);
	CHECK(strstr(err_msg(), "not valid JSON"));

	/* The same tensor in two files. */
	image(&sb, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data16, 8);
	write_file(tmp_path("m-2.safetensors"), sb.buf, sb.len);
	idx = "{\"weight_map\":{\"a\":\"m-1.safetensors\",\"b\":\"m-2.safetensors\"}}";
	write_file(tmp_path("dup.safetensors.index.json"), idx, strlen(idx));
	CHECK(st_set_open(tmp_path("dup.safetensors.index.json"), 0, &s) < 0);
	CHECK(strstr(err_msg(), "in both"));
	sb_release(&sb);
}

TEST(half_precision_values)
{
	/* binary16: sign, 5-bit exponent (bias 15), 10-bit fraction. */
	CHECK(f16_to_f32(0x3c00) == 1.0f);
	CHECK(f16_to_f32(0xc000) == -2.0f);
	CHECK(f16_to_f32(0x3555) == 0.333251953125f);
	CHECK(f16_to_f32(0x7bff) == 65504.0f);
	CHECK(f16_to_f32(0x0400) == 0x1p-14f);	/* smallest normal */
	CHECK(f16_to_f32(0x0001) == 0x1p-24f);	/* smallest subnormal */
	CHECK(f16_to_f32(0x03ff) == 0x3ffp-24f);	/* largest subnormal */
	CHECK(f16_to_f32(0x8000) == 0.0f && signbit(f16_to_f32(0x8000)));
	CHECK(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
	CHECK(isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
	CHECK(isnan(f16_to_f32(0x7e00)));
	/* bfloat16 is the top half of binary32. */
	CHECK(bf16_to_f32(0x3f80) == 1.0f);
	CHECK(bf16_to_f32(0xc0a0) == -5.0f);
	CHECK(bf16_to_f32(0x0001) == 0x1p-133f);
	CHECK(isinf(bf16_to_f32(0x7f80)));
	/* Rounding to nearest, ties to even. */
	CHECK_INT(f32_to_f16(1.0f + 0x1p-11f), 0x3c00);		/* tie, even stays */
	CHECK_INT(f32_to_f16(1.0f + 0x3p-11f), 0x3c02);		/* tie, rounds up to even */
	CHECK_INT(f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
	CHECK_INT(f32_to_f16(65519.0f), 0x7bff);
	CHECK_INT(f32_to_f16(65520.0f), 0x7c00);			/* overflow */
	CHECK_INT(f32_to_f16(0x1p-25f), 0x0000);			/* tie to even zero */
	CHECK_INT(f32_to_f16(0x1.0001p-25f), 0x0001);
	CHECK_INT(f32_to_f16(0x3p-25f), 0x0002);			/* 1.5 ulp: tie to even */
	CHECK_INT(f32_to_f16(0x1.ffcp-15f), 0x0400);		/* rounds up into normal */
	CHECK_INT(f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);		/* tie, even */
	CHECK_INT(f32_to_bf16(1.0f + 0x3p-8f), 0x3f82);
	CHECK_INT(f32_to_bf16(-5.0f), 0xc0a0);
	CHECK(isnan(bf16_to_f32(f32_to_bf16(NAN))));
	/* Every finite half survives a round trip through float32. */
	for (unsigned h = 0; h < 0x10000; h++) {
		if ((h & 0x7c00) == 0x7c00)
			continue;
		CHECK_MSG(f32_to_f16(f16_to_f32((uint16_t)h)) == h, "half 0x%04x", h);
	}
}

TEST(widening_runs)
{
	uint16_t half[3] = { 0x3c00, 0xc000, 0x3800 }, bf[3] = { 0x3f80, 0xc0a0, 0x3f00 };
	float out[3];
	unsigned char unaligned[7];

	CHECK_INT(dtype_to_f32(out, half, DTYPE_F16, 3), 0);
	CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0.5f);
	CHECK_INT(dtype_to_f32(out, bf, DTYPE_BF16, 3), 0);
	CHECK(out[0] == 1.0f && out[1] == -5.0f && out[2] == 0.5f);
	memcpy(unaligned + 1, bf, 6);
	CHECK_INT(dtype_to_f32(out, unaligned + 1, DTYPE_BF16, 3), 0);
	CHECK(out[1] == -5.0f);
	CHECK_INT(dtype_to_f32(out, bf, DTYPE_I16, 3), -EINVAL);
	CHECK_INT(dtype_from_name("BF16"), DTYPE_BF16);
	CHECK_INT(dtype_from_name("bf16"), DTYPE_UNKNOWN);
	CHECK_INT(dtype_from_torch("torch.bfloat16"), DTYPE_BF16);
	CHECK_INT(dtype_from_torch("float16"), DTYPE_F16);
	CHECK_INT(dtype_size(DTYPE_F8_E4M3), 1);
	CHECK(!dtype_is_weight(DTYPE_I8));
	/* Q8_0: a block type, never a checkpoint's (a header naming it is an
	 * unknown dtype); a hand-made block: scale 0.5 (F16 0x3800), q = i - 16 */
	CHECK_INT(dtype_from_name("Q8_0"), DTYPE_UNKNOWN);
	CHECK(!dtype_is_weight(DTYPE_Q8_0) && !strcmp(dtype_name(DTYPE_Q8_0), "Q8_0"));
	CHECK_INT(dtype_size(DTYPE_Q8_0), 0);
	CHECK_INT(dtype_block(DTYPE_Q8_0), 32);
	CHECK_INT(dtype_block(DTYPE_BF16), 1);
	CHECK_INT(dtype_bytes(DTYPE_Q8_0, 4096), 128 * 34);
	CHECK_INT(dtype_bytes(DTYPE_BF16, 3), 6);
	unsigned char blk[1 + 2 * 34];	/* two blocks at an odd address */
	float deq[64];
	for (int b = 0; b < 2; b++) {
		blk[1 + 34 * b] = 0x00, blk[2 + 34 * b] = b ? 0x3c : 0x38;	/* 0.5, 1.0 */
		for (int i = 0; i < 32; i++)
			blk[3 + 34 * b + i] = (unsigned char)(int8_t)(i - 16);
	}
	CHECK_INT(dtype_to_f32(deq, blk + 1, DTYPE_Q8_0, 64), 0);
	CHECK(deq[0] == -8.0f && deq[17] == 0.5f && deq[31] == 7.5f);
	CHECK(deq[32] == -16.0f && deq[63] == 15.0f);
	/* Q4_0: 18-byte blocks; a hand-made one, scale 0.5, byte j = (15 - j)
	 * << 4 | j: weight j (low nibble) is 0.5 * (j - 8), weight 16 + j
	 * (high) 0.5 * (7 - j) */
	CHECK_INT(dtype_from_name("Q4_0"), DTYPE_UNKNOWN);
	CHECK(dtype_is_quant(DTYPE_Q4_0) && !dtype_is_weight(DTYPE_Q4_0));
	CHECK_INT(dtype_block(DTYPE_Q4_0), 32);
	CHECK_INT(dtype_bytes(DTYPE_Q4_0, 4096), 128 * 18);
	blk[1] = 0x00, blk[2] = 0x38;
	for (int j = 0; j < 16; j++)
		blk[3 + j] = (unsigned char)((15 - j) << 4 | j);
	CHECK_INT(dtype_to_f32(deq, blk + 1, DTYPE_Q4_0, 32), 0);
	CHECK(deq[0] == -4.0f && deq[15] == 3.5f && deq[16] == 3.5f && deq[31] == -4.0f);
}

static void hex_of(const char *s, size_t n, int sha256, char *hex)
{
	unsigned char d[32];
	if (sha256) {
		struct sha256 c;
		sha256_init(&c);
		/* Feed in uneven pieces to exercise the buffering. */
		for (size_t i = 0; i < n; i += 7)
			sha256_update(&c, s + i, n - i < 7 ? n - i : 7);
		sha256_final(&c, d);
		digest_hex(d, 32, hex);
	} else {
		struct sha1 c;
		sha1_init(&c);
		for (size_t i = 0; i < n; i += 13)
			sha1_update(&c, s + i, n - i < 13 ? n - i : 13);
		sha1_final(&c, d);
		digest_hex(d, 20, hex);
	}
}

TEST(digests_match_published_vectors)
{
	char hex[65];
	static char million[1000000];
	const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	hex_of("", 0, 1, hex);
	CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, 1, hex);
	CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of(two, strlen(two), 1, hex);
	CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	memset(million, 'a', sizeof(million));
	hex_of(million, sizeof(million), 1, hex);
	CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	hex_of("abc", 3, 0, hex);
	CHECK_STR(hex, "a9993e364706816aba3e25717850c26c9cd0d89d");
	hex_of(two, strlen(two), 0, hex);
	CHECK_STR(hex, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
	hex_of(million, sizeof(million), 0, hex);
	CHECK_STR(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");

	/* git's blob ids: `printf 'hello\n' | git hash-object --stdin`. */
	write_file(tmp_path("hello"), "hello\n", 6);
	CHECK_INT(digest_file_git_sha1(tmp_path("hello"), hex), 0);
	CHECK_STR(hex, "ce013625030ba8dba906f756967f9e9ca394464a");
	write_file(tmp_path("empty"), "", 0);
	CHECK_INT(digest_file_git_sha1(tmp_path("empty"), hex), 0);
	CHECK_STR(hex, "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
	CHECK_INT(digest_file_sha256(tmp_path("hello"), hex), 0);
	CHECK_STR(hex, "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
	CHECK(digest_file_sha256(tmp_path("nope"), hex) == -ENOENT);
}

static void remove_tmpdir(void)
{
	char cmd[300];

	if (tmpdir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", tmpdir);
	}
}

int main(void)
{
	atexit(remove_tmpdir);
	return RUN_TESTS();
}
