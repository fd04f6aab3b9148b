/*
 * kernels.h - the CPU backend's hot loops, with a SIMD variant chosen at
 * run time (AVX2+FMA when the CPU has it, else portable C).
 *
 * kernels_init() detects the CPU once (idempotent, thread-safe after the
 * first call returns); the kernels are pure and thread-safe.
 */
#ifndef DYN_CPU_KERNELS_H
#define DYN_CPU_KERNELS_H

#include <stddef.h>

/* Detect features and pick implementations; returns their name. */
const char *kernels_init(void);

/* sum_i a[i] * b[i] */
float kern_dot(const float *a, const float *b, int n);
/* y[i] += s * x[i] */
void kern_axpy(float *y, float s, const float *x, int n);
/*
 * GEMM tile: for rows r in [r0, r1) of W [rows, cols] and tokens t in
 * [0, n): y[t * ldy + r] = dot(x[t * cols ..], W[r * cols ..]) (+ bias[r]).
 */
void kern_gemm(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
	       int r1, const float *bias);

#endif
