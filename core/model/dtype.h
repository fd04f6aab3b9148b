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
	DTYPE_COUNT
};

/* Bytes per element (0 for DTYPE_UNKNOWN). */
size_t dtype_size(enum dtype t);
/* safetensors name ("F32"); "?" for DTYPE_UNKNOWN. */
const char *dtype_name(enum dtype t);
/* From a safetensors name; DTYPE_UNKNOWN if not one. */
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

/* Widen n elements of type t (F32, F16 or BF16) at src into dst.
 * src need not be aligned.  Returns 0, or -EINVAL for another type. */
int dtype_to_f32(float *dst, const void *src, enum dtype t, size_t n);

#endif
