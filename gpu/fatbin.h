/*
 * fatbin.h - the kernels of gpu/kernels.cu as nvcc built them: one fatbin
 * (a cubin per arch) embedded in the executable by the Makefile, given to
 * cuModuleLoadData as it is.  A build without nvcc embeds an empty blob
 * and an empty arch list.
 */
#ifndef DYN_GPU_FATBIN_H
#define DYN_GPU_FATBIN_H

#include <stddef.h>

extern const unsigned char cuda_fatbin[];
extern const size_t cuda_fatbin_size;
/* "sm_80, sm_90"; "" when no kernels are built in. */
extern const char cuda_fatbin_archs[];

/* The compute capabilities (80, 90) of the cubins inside the fatbin
 * blob, read from the ELF headers it wraps: up to cap of them into sm;
 * returns how many there are, or -1 when blob is no fatbin. */
int cuda_fatbin_cubins(const unsigned char *blob, size_t size, int *sm, int cap);

#endif
