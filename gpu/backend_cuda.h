/*
 * backend_cuda.h - the CUDA backend (gpu/backend_cuda.c): the "cuda" row
 * of the backend registry (core/engine/backend.h).
 *
 * available() loads the driver and cuBLAS (cuda_api.h) and fails with
 * err_msg() saying why when there is no usable GPU or no kernels built
 * in.  It computes with F32, F16 and BF16 weights as stored (projections:
 * cuBLAS GEMM, BF16/F16 inputs, F32 accumulation); its KV pool is device
 * memory of F32, BF16 or F16 elements.  It uses GPU 0 of those
 * CUDA_VISIBLE_DEVICES leaves.
 */
#ifndef DYN_GPU_BACKEND_CUDA_H
#define DYN_GPU_BACKEND_CUDA_H

#include "core/engine/backend.h"

extern const struct backend_type backend_cuda;

/* --gpu-memory-utilization: the fraction (0, 1] of the GPU's free memory
 * (when the backend is created) that weights and the KV pool may take;
 * the default is 0.9.  Set before engines are created. */
void cuda_backend_set_memory_utilization(double fraction);

/* --cuda-graphs: record decode steps as CUDA graphs and replay them (1,
 * the default) or launch every kernel each step (0). */
void cuda_backend_set_graphs(int on);

#endif
