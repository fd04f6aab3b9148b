/*
 * dtype.h - element types of model tensors and conversion to float32.
 *
 * The names are safetensors' ("F32", "BF16", ...); config.json spells them
 * the torch way ("float32", "bfloat16").  Model tensors may be F32, F16 or
 * BF16 (dtype_is_weight()); the other types exist so that a safetensors
 * header naming them parses and then gets a clear "unsupported" error.
 *
 * The CPU engine computes in float32: dtype_to_f32() widens a run of
 * elements, exactly (every F16 and BF16 value is representable in F32).
 *
 * Q8_0 is not a safetensors type but a block type the loader quantizes
 * projection matrices into (--quantize q8_0), as GGML/GGUF define it:
 * blocks of 32 consecutive weights of a row, each stored as one F16 scale
 * d = max|x| / 127 followed by 32 int8 q = round(x / d) (34 bytes, 8.5
 * bits a weight); the weight is d * q.  A block type has no per-element
 * size (dtype_size() is 0): dtype_bytes() sizes runs of whole blocks.
 * Q4_0 (--quantize q4_0) is GGML's 4-bit block: 32 weights as one F16
 * scale d = m / -8, m the block's value of largest magnitude (the first
 * if several), then 16 bytes of q = min(15, trunc(x / d + 8.5)) in 0..15,
 * byte j holding weight j in its low nibble and weight j + 16 in its high
 * one (18 bytes, 4.5 bits a weight); the weight is d * (q - 8).
 * All functions are pure and thread-safe.
 */
#ifndef DYN_MODEL_DTYPE_H
#define DYN_MODEL_DTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum dtype {
	DTYPE_UNKNOWN = 0,
	DTYPE_F32,
	DTYPE_F16,
	DTYPE_BF16,
	DTYPE_F64,
	DTYPE_F8_E4M3,
	DTYPE_F8_E5M2,
	DTYPE_I64,
	DTYPE_I32,
	DTYPE_I16,
	DTYPE_I8,
	DTYPE_U64,
	DTYPE_U32,
	DTYPE_U16,
	DTYPE_U8,
	DTYPE_BOOL,
	DTYPE_Q8_0,	/* GGML blocks (see above); never in a checkpoint */
	DTYPE_Q4_0,
	DTYPE_Q8_0_P8,	/* a matrix of them in 8-row panels (below) */
	DTYPE_Q4_0_P8,
	DTYPE_COUNT
};

/* Bytes per element (0 for DTYPE_UNKNOWN and block types). */
size_t dtype_size(enum dtype t);
/* Elements per block: 32 for Q8_0 and Q4_0, 1 for the others. */
size_t dtype_block(enum dtype t);
/* Bytes of n elements (n a multiple of dtype_block(t)). */
size_t dtype_bytes(enum dtype t, size_t n);
/* safetensors name ("F32"); "?" for DTYPE_UNKNOWN. */
const char *dtype_name(enum dtype t);
/* From a safetensors name; DTYPE_UNKNOWN if not one (so also for "Q8_0"). */
enum dtype dtype_from_name(const char *name);
/* torch name ("float32", "bfloat16", "float16"; "torch.float16" and
 * "half"/"float"/"bf16"/"fp16"/"fp32" are accepted too); DTYPE_UNKNOWN if
 * not a floating type we know. */
enum dtype dtype_from_torch(const char *name);
/* torch name of a floating type ("float32"), or dtype_name() otherwise. */
const char *dtype_torch_name(enum dtype t);
/* 1 if a model weight may have this type: F32, F16, BF16. */
int dtype_is_weight(enum dtype t);

static inline float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

float f16_to_f32(uint16_t h);
/* Round to nearest even; NaN stays NaN (quiet), overflow gives inf. */
uint16_t f32_to_bf16(float f);
uint16_t f32_to_f16(float f);

/* Widen n elements of type t (F32, F16, BF16, or Q8_0 or Q4_0 from a
 * block start with n a multiple of 32) at src into dst.  src need not be aligned.
 * Returns 0, or -EINVAL for another type. */
int dtype_to_f32(float *dst, const void *src, enum dtype t, size_t n);

#define Q8_0_BLOCK 32
#define Q8_0_BLOCK_BYTES 34
/* Quantize n F32 values (n a multiple of 32) into n / 32 Q8_0 blocks at
 * dst, with GGML's arithmetic: amax = max|x|, d = amax / 127, q =
 * roundf(x * (1 / d)) (halfway cases away from zero; q = 0 when d is 0),
 * d stored as F16 (round to nearest even; may overflow to inf or flush to
 * zero, the block's q being computed from the F32 d all the same). */
void q8_0_quantize(void *dst, const float *src, size_t n);

#define Q4_0_BLOCK 32
#define Q4_0_BLOCK_BYTES 18
/* Quantize n F32 values (n a multiple of 32) into n / 32 Q4_0 blocks at
 * dst, with the gguf package's arithmetic (F32 throughout, no fused
 * multiply-add): d = m / -8, id = 1 / d (0 when d is 0), q =
 * trunc(x * id + 8.5) clamped to 0..15 (so halfway cases round up), d
 * stored as F16 as for Q8_0. */
void q4_0_quantize(void *dst, const float *src, size_t n);

/* 1 for the block types the loader quantizes into (Q8_0, Q4_0). */
int dtype_is_quant(enum dtype t);
/* Quantize n F32 values (n a multiple of 32) into blocks of quant type t. */
void dtype_quantize(void *dst, const float *src, enum dtype t, size_t n);

/*
 * Q8_0_P8 and Q4_0_P8: a whole matrix of Q8_0 / Q4_0 rows (never a
 * checkpoint's; the loader makes them for a backend that asks,
 * MODEL_LOAD_PANELS) repacked into the layout the CPU's integer GEMM
 * reads, so that it no longer gathers 8 rows per call (as llama.cpp
 * repacks at load).  Same bytes in all as the rows: rows 8g..8g+7 (g <
 * rows / 8) are panel g, in the 8 rows' place; the last rows % 8 rows
 * stay as they were.  A panel of nb = cols / 32 blocks is, for each
 * block in order, the 8 rows' F16 scales (row order, 16 bytes) then their
 * quants (Q8_0: 256 bytes, byte 32j + 4r + k = row r's weight 4j + k, j <
 * 8; Q4_0: 128 bytes, byte 32j + 4r + k holding row r's weights 4j + k in
 * its low nibble and 16 + 4j + k in its high one, j < 4): one stream, in
 * the order the kernels read it.  Rows are not contiguous: dtype_to_f32
 * refuses them; dtype_bytes sizes whole matrices.
 */
/* The panel type of a block type (Q8_0_P8 of Q8_0), else DTYPE_UNKNOWN. */
enum dtype dtype_panel_of(enum dtype t);
/* The block type of a panel type (Q8_0 of Q8_0_P8), else t. */
enum dtype dtype_unpanel(enum dtype t);
/* Repack rows x cols (cols a multiple of 32) of block type
 * dtype_unpanel(t) at src into panel type t at dst (not overlapping). */
void dtype_repack(void *dst, const void *src, enum dtype t, size_t rows, size_t cols);

#endif
