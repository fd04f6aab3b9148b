/*
 * kernels_impl.h - internal to core/cpu: one table of kernel functions per
 * instruction set (kernels.c: portable C; kernels_avx2.c: AVX2+FMA;
 * kernels_avx512.c: AVX-512F).  kernels.c picks one at run time; each SIMD
 * file compiles its functions with __attribute__((target)) so the build
 * needs no -m flags and runs on any x86-64.
 *
 * Every table computes the same things as kernels.h describes; they differ
 * only in summation order (float rounding).
 */
#ifndef DYN_CPU_KERNELS_IMPL_H
#define DYN_CPU_KERNELS_IMPL_H

#if defined(__x86_64__) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 8))
#define KERN_X86 1
#else
#define KERN_X86 0
#endif

struct kern_impl {
	const char *name;
	/* nonzero when this CPU can run the table (checked by cpuid) */
	int (*supported)(void);
	float (*dot)(const float *a, const float *b, int n);
	void (*axpy)(float *y, float s, const float *x, int n);
	void (*gemm)(float *y, int ldy, const float *x, int n, const float *w, int cols, int r0,
		     int r1, const float *bias);
	/* attention halves (kern_attend does the softmax between them):
	 * s[g * lds + i] = scale * q[g] . k[i]; o[g] = sum_i p[g * ldp + i] v[i]
	 * for g < group heads of hd floats (contiguous in q and o) */
	void (*qk)(float *s, int lds, const float *q, int group, int hd, const float *const *k,
		   int n, float scale);
	void (*pv)(float *o, const float *p, int ldp, int group, int hd, const float *const *v,
		   int n);
};

extern const struct kern_impl kern_portable;
#if KERN_X86
extern const struct kern_impl kern_avx2;
extern const struct kern_impl kern_avx512;
/* The AVX2 prefill GEMM (16-row packed panels), shared by the AVX-512
 * table: rows [r0, r1) must be a multiple of 16 apart. */
void kern_avx2_gemm_packed(float *y, int ldy, const float *x, int n, const float *w, int cols,
			   int r0, int r1, const float *bias);
#endif

/* Tokens from which gemm switches to the packed prefill kernel. */
#define KERN_PACKED_MIN_TOKENS 12

#endif
