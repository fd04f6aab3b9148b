/*
 * dtype.c - tensor element types and float conversions (see dtype.h).
 *
 * The half-precision conversions follow IEEE 754 binary16 directly:
 * 1 sign bit, 5 exponent bits (bias 15), 10 fraction bits; bfloat16 is
 * the top half of a binary32.
 */
#include "core/model/dtype.h"

#include <errno.h>
#include <math.h>
#include <strings.h>

static const struct {
	const char *name;
	const char *torch;
	size_t size;		/* bytes of a block */
	size_t block;		/* elements of a block */
} types[DTYPE_COUNT] = {
	[DTYPE_UNKNOWN] = { "?", "?", 0, 1 },
	[DTYPE_F32] = { "F32", "float32", 4, 1 },
	[DTYPE_F16] = { "F16", "float16", 2, 1 },
	[DTYPE_BF16] = { "BF16", "bfloat16", 2, 1 },
	[DTYPE_F64] = { "F64", "float64", 8, 1 },
	[DTYPE_F8_E4M3] = { "F8_E4M3", "float8_e4m3fn", 1, 1 },
	[DTYPE_F8_E5M2] = { "F8_E5M2", "float8_e5m2", 1, 1 },
	[DTYPE_I64] = { "I64", "int64", 8, 1 },
	[DTYPE_I32] = { "I32", "int32", 4, 1 },
	[DTYPE_I16] = { "I16", "int16", 2, 1 },
	[DTYPE_I8] = { "I8", "int8", 1, 1 },
	[DTYPE_U64] = { "U64", "uint64", 8, 1 },
	[DTYPE_U32] = { "U32", "uint32", 4, 1 },
	[DTYPE_U16] = { "U16", "uint16", 2, 1 },
	[DTYPE_U8] = { "U8", "uint8", 1, 1 },
	[DTYPE_BOOL] = { "BOOL", "bool", 1, 1 },
	[DTYPE_Q8_0] = { "Q8_0", "Q8_0", Q8_0_BLOCK_BYTES, Q8_0_BLOCK },
	[DTYPE_Q4_0] = { "Q4_0", "Q4_0", Q4_0_BLOCK_BYTES, Q4_0_BLOCK },
	[DTYPE_Q8_0_P8] = { "Q8_0_P8", "Q8_0_P8", Q8_0_BLOCK_BYTES, Q8_0_BLOCK },
	[DTYPE_Q4_0_P8] = { "Q4_0_P8", "Q4_0_P8", Q4_0_BLOCK_BYTES, Q4_0_BLOCK },
};

size_t dtype_block(enum dtype t)
{
	return (unsigned)t < DTYPE_COUNT ? types[t].block : 1;
}

size_t dtype_size(enum dtype t)
{
	return dtype_block(t) == 1 && (unsigned)t < DTYPE_COUNT ? types[t].size : 0;
}

size_t dtype_bytes(enum dtype t, size_t n)
{
	return (unsigned)t < DTYPE_COUNT ? n / dtype_block(t) * types[t].size : 0;
}

const char *dtype_name(enum dtype t)
{
	return (unsigned)t < DTYPE_COUNT ? types[t].name : "?";
}

const char *dtype_torch_name(enum dtype t)
{
	return (unsigned)t < DTYPE_COUNT ? types[t].torch : "?";
}

enum dtype dtype_from_name(const char *name)
{
	for (int t = 1; t < DTYPE_COUNT; t++)
		if (types[t].block == 1 && !strcmp(types[t].name, name))
			return (enum dtype)t;
	return DTYPE_UNKNOWN;
}

enum dtype dtype_from_torch(const char *name)
{
	static const struct {
		const char *name;
		enum dtype t;
	} alias[] = {
		{ "float32", DTYPE_F32 }, { "float", DTYPE_F32 }, { "fp32", DTYPE_F32 },
		{ "float16", DTYPE_F16 }, { "half", DTYPE_F16 }, { "fp16", DTYPE_F16 },
		{ "bfloat16", DTYPE_BF16 }, { "bf16", DTYPE_BF16 },
		{ "float64", DTYPE_F64 }, { "double", DTYPE_F64 },
	};

	if (!strncmp(name, "torch.", 6))
		name += 6;
	for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
		if (!strcasecmp(alias[i].name, name))
			return alias[i].t;
	return DTYPE_UNKNOWN;
}

int dtype_is_weight(enum dtype t)
{
	return t == DTYPE_F32 || t == DTYPE_F16 || t == DTYPE_BF16;
}

static float bits_to_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static uint32_t f32_to_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return u;
}

float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t frac = h & 0x3ffu;

	if (exp == 0x1f)	/* inf or NaN: keep the payload */
		return bits_to_f32(sign | 0x7f800000u | (frac << 13));
	if (exp == 0) {
		if (frac == 0)
			return bits_to_f32(sign);
		/* Subnormal: frac * 2^-24, normalised for binary32. */
		int e = -1;
		do {
			frac <<= 1;
			e++;
		} while (!(frac & 0x400u));
		frac &= 0x3ffu;
		return bits_to_f32(sign | ((uint32_t)(127 - 15 - e) << 23) | (frac << 13));
	}
	return bits_to_f32(sign | ((exp + 127 - 15) << 23) | (frac << 13));
}

uint16_t f32_to_bf16(float f)
{
	uint32_t u = f32_to_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)	/* NaN: keep it a (quiet) NaN */
		return (uint16_t)((u >> 16) | 0x40u);
	u += 0x7fffu + ((u >> 16) & 1u);	/* round to nearest even */
	return (uint16_t)(u >> 16);
}

uint16_t f32_to_f16(float f)
{
	uint32_t u = f32_to_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t abs = u & 0x7fffffffu;

	if (abs > 0x7f800000u)
		return sign | 0x7e00u;
	if (abs >= 0x477ff000u)		/* rounds to >= 65520: overflow */
		return sign | 0x7c00u;
	if (abs < 0x38800000u) {	/* below 2^-14: subnormal or zero */
		if (abs < 0x33000000u)	/* below 2^-25: rounds to zero */
			return sign;
		uint32_t e = abs >> 23;			/* 102..112 */
		uint32_t m = (abs & 0x7fffffu) | 0x800000u;
		uint32_t shift = 126 - e;		/* 14..24 */
		uint32_t q = m >> shift;
		uint32_t rem = m & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1u)))
			q++;
		return sign | (uint16_t)q;
	}
	uint32_t e = (abs >> 23) - 127 + 15;
	uint32_t m = abs & 0x7fffffu;
	uint32_t h = (e << 10) | (m >> 13);
	uint32_t rem = m & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
		h++;		/* may carry into the exponent: still correct */
	return sign | (uint16_t)h;
}

int dtype_to_f32(float *dst, const void *src, enum dtype t, size_t n)
{
	const unsigned char *p = src;

	switch (t) {
	case DTYPE_F32:
		memmove(dst, src, n * sizeof(float));
		return 0;
	case DTYPE_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = bf16_to_f32(h);
		}
		return 0;
	case DTYPE_F16:
		for (size_t i = 0; i < n; i++) {
			uint16_t h;
			memcpy(&h, p + 2 * i, 2);
			dst[i] = f16_to_f32(h);
		}
		return 0;
	case DTYPE_Q8_0:
		for (size_t b = 0; b < n / Q8_0_BLOCK; b++, p += Q8_0_BLOCK_BYTES) {
			uint16_t h;
			memcpy(&h, p, 2);
			float d = f16_to_f32(h);
			for (int i = 0; i < Q8_0_BLOCK; i++)
				*dst++ = d * (float)(int8_t)p[2 + i];
		}
		return 0;
	case DTYPE_Q4_0:
		for (size_t b = 0; b < n / Q4_0_BLOCK; b++, p += Q4_0_BLOCK_BYTES, dst += Q4_0_BLOCK) {
			uint16_t h;
			memcpy(&h, p, 2);
			float d = f16_to_f32(h);
			for (int i = 0; i < Q4_0_BLOCK / 2; i++) {
				dst[i] = d * (float)((p[2 + i] & 0xf) - 8);
				dst[i + Q4_0_BLOCK / 2] = d * (float)((p[2 + i] >> 4) - 8);
			}
		}
		return 0;
	default:
		return -EINVAL;
	}
}

void q8_0_quantize(void *dst, const float *src, size_t n)
{
	unsigned char *out = dst;

	for (size_t b = 0; b < n / Q8_0_BLOCK; b++, src += Q8_0_BLOCK, out += Q8_0_BLOCK_BYTES) {
		float amax = 0;
		for (int i = 0; i < Q8_0_BLOCK; i++)
			amax = fabsf(src[i]) > amax ? fabsf(src[i]) : amax;
		/* GGML multiplies by the reciprocal (not x / d): the same
		 * roundings as its reference, so the same bytes */
		float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
		uint16_t h = f32_to_f16(d);
		memcpy(out, &h, 2);
		for (int i = 0; i < Q8_0_BLOCK; i++) {
			float q = roundf(src[i] * id);	/* within +-127 for finite x */
			out[2 + i] = (unsigned char)(int8_t)(q >= 127.0f ? 127 : q <= -127.0f ? -127 :
							     q == q ? (int)q : 0);
		}
	}
}

void q4_0_quantize(void *dst, const float *src, size_t n)
{
	unsigned char *out = dst;

	for (size_t b = 0; b < n / Q4_0_BLOCK; b++, src += Q4_0_BLOCK, out += Q4_0_BLOCK_BYTES) {
		float m = 0;
		for (int i = 0; i < Q4_0_BLOCK; i++)	/* the first of largest magnitude */
			m = fabsf(src[i]) > fabsf(m) ? src[i] : m;
		float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
		uint16_t h = f32_to_f16(d);
		unsigned char q[Q4_0_BLOCK];
		memcpy(out, &h, 2);
		for (int i = 0; i < Q4_0_BLOCK; i++) {
			/* two roundings (product, sum) as the reference's
			 * numpy: separate statements are never fused */
			float xi = src[i] * id;
			float v = truncf(xi + 8.5f);
			q[i] = (unsigned char)(v >= 15.0f ? 15 : v > 0.0f ? (int)v : 0);
		}
		for (int i = 0; i < Q4_0_BLOCK / 2; i++)
			out[2 + i] = (unsigned char)(q[i] | q[i + Q4_0_BLOCK / 2] << 4);
	}
}

int dtype_is_quant(enum dtype t)
{
	return t == DTYPE_Q8_0 || t == DTYPE_Q4_0;
}

void dtype_quantize(void *dst, const float *src, enum dtype t, size_t n)
{
	if (t == DTYPE_Q4_0)
		q4_0_quantize(dst, src, n);
	else
		q8_0_quantize(dst, src, n);
}

enum dtype dtype_panel_of(enum dtype t)
{
	return t == DTYPE_Q8_0 ? DTYPE_Q8_0_P8 : t == DTYPE_Q4_0 ? DTYPE_Q4_0_P8 : DTYPE_UNKNOWN;
}

enum dtype dtype_unpanel(enum dtype t)
{
	return t == DTYPE_Q8_0_P8 ? DTYPE_Q8_0 : t == DTYPE_Q4_0_P8 ? DTYPE_Q4_0 : t;
}

void dtype_repack(void *dst, const void *src, enum dtype t, size_t rows, size_t cols)
{
	enum dtype bt = dtype_unpanel(t);
	size_t nb = cols / 32, bb = types[bt].size, row = nb * bb, qb = (bb - 2) * 8;
	size_t full = rows / 8 * 8;
	const unsigned char *in = src;
	unsigned char *out = dst;

	for (size_t g = 0; g < full; g += 8) {
		const unsigned char *grp = in + g * row;
		unsigned char *d = out + g * row, *q = d + 16;
		for (size_t b = 0; b < nb; b++, q += 8 * bb, d += 8 * bb)
			for (size_t r = 0; r < 8; r++) {
				const unsigned char *blk = grp + r * row + b * bb;
				memcpy(d + 2 * r, blk, 2);
				/* byte i: weight i (Q4_0: and 16 + i), as in the block */
				for (size_t j = 0; j < qb / 32; j++)
					memcpy(q + 32 * j + 4 * r, blk + 2 + 4 * j, 4);
			}
	}
	memcpy(out + full * row, in + full * row, (rows - full) * row);
}
