/*
 * cuda_api.h - the CUDA driver API and cuBLAS, loaded at run time.
 *
 * dyn links against neither: cuda_load() dlopen()s libcuda.so.1 and
 * libcublas.so.* and fills struct cuda_api with the few entry points the
 * backend uses.  The types below are the ABI's (the driver's and cuBLAS's
 * public headers define them the same way), declared here so that this
 * folder's C compiles without the CUDA toolkit.  CUDA_VISIBLE_DEVICES is
 * applied by the driver itself.
 *
 *   const struct cuda_api *cu = cuda_load();   // NULL: err_msg() says why
 *   cuda_describe(&sb);                        // the "CUDA backend:" line
 *
 * Thread-safety: cuda_load() runs once (pthread_once); the table is then
 * read-only.
 */
#ifndef DYN_GPU_CUDA_API_H
#define DYN_GPU_CUDA_API_H

#include "core/strbuf.h"

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;			/* 0: CUDA_SUCCESS */
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef struct CUgraph_st *CUgraph;
typedef struct CUgraphExec_st *CUgraphExec;
typedef struct cublasContext *cublasHandle_t;
typedef int cublasStatus_t;		/* 0: CUBLAS_STATUS_SUCCESS */

/* Values from the driver's and cuBLAS's headers. */
#define CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT 16
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES 8
#define CU_STREAM_NON_BLOCKING 1
#define CU_STREAM_CAPTURE_MODE_THREAD_LOCAL 1
#define CUBLAS_OP_N 0
#define CUBLAS_OP_T 1
#define CUDA_R_32F 0
#define CUDA_R_16F 2
#define CUDA_R_16BF 14
#define CUBLAS_COMPUTE_32F 68
#define CUBLAS_GEMM_DEFAULT (-1)

struct cuda_api {
	/* driver */
	CUresult (*cuInit)(unsigned flags);
	CUresult (*cuDriverGetVersion)(int *v);
	CUresult (*cuDeviceGetCount)(int *n);
	CUresult (*cuDeviceGet)(CUdevice *d, int ordinal);
	CUresult (*cuDeviceGetName)(char *name, int len, CUdevice d);
	CUresult (*cuDeviceGetAttribute)(int *v, int attr, CUdevice d);
	CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice d);
	CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *ctx, CUdevice d);
	CUresult (*cuDevicePrimaryCtxRelease)(CUdevice d);
	CUresult (*cuCtxSetCurrent)(CUcontext ctx);
	CUresult (*cuModuleLoadData)(CUmodule *m, const void *image);
	CUresult (*cuModuleUnload)(CUmodule m);
	CUresult (*cuModuleGetFunction)(CUfunction *f, CUmodule m, const char *name);
	CUresult (*cuFuncSetAttribute)(CUfunction f, int attr, int value);
	CUresult (*cuLaunchKernel)(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
				   unsigned bx, unsigned by, unsigned bz, unsigned shared,
				   CUstream s, void **params, void **extra);
	CUresult (*cuMemAlloc)(CUdeviceptr *p, size_t bytes);
	CUresult (*cuMemFree)(CUdeviceptr p);
	CUresult (*cuMemAllocHost)(void **p, size_t bytes);
	CUresult (*cuMemFreeHost)(void *p);
	CUresult (*cuMemcpyHtoD)(CUdeviceptr dst, const void *src, size_t bytes);
	CUresult (*cuMemcpyDtoH)(void *dst, CUdeviceptr src, size_t bytes);
	CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
	CUresult (*cuMemcpyDtoHAsync)(void *dst, CUdeviceptr src, size_t bytes, CUstream s);
	CUresult (*cuMemsetD8Async)(CUdeviceptr p, unsigned char v, size_t n, CUstream s);
	CUresult (*cuMemGetInfo)(size_t *free_bytes, size_t *total_bytes);
	CUresult (*cuStreamCreate)(CUstream *s, unsigned flags);
	CUresult (*cuStreamDestroy)(CUstream s);
	CUresult (*cuStreamSynchronize)(CUstream s);
	CUresult (*cuStreamBeginCapture)(CUstream s, int mode);
	CUresult (*cuStreamEndCapture)(CUstream s, CUgraph *g);
	CUresult (*cuGraphInstantiate)(CUgraphExec *e, CUgraph g, unsigned long long flags);
	CUresult (*cuGraphLaunch)(CUgraphExec e, CUstream s);
	CUresult (*cuGraphExecDestroy)(CUgraphExec e);
	CUresult (*cuGraphDestroy)(CUgraph g);
	CUresult (*cuGetErrorString)(CUresult rc, const char **s);
	/* cuBLAS */
	cublasStatus_t (*cublasCreate)(cublasHandle_t *h);
	cublasStatus_t (*cublasDestroy)(cublasHandle_t h);
	cublasStatus_t (*cublasSetStream)(cublasHandle_t h, CUstream s);
	cublasStatus_t (*cublasSetWorkspace)(cublasHandle_t h, void *ws, size_t bytes);
	cublasStatus_t (*cublasGetProperty)(int type, int *value);
	cublasStatus_t (*cublasGemmEx)(cublasHandle_t h, int transa, int transb, int m, int n,
				       int k, const void *alpha, const void *a, int a_type, int lda,
				       const void *b, int b_type, int ldb, const void *beta,
				       void *c, int c_type, int ldc, int compute_type, int algo);
	/* what was found */
	int driver_version;		/* 12080: 12.8 */
	int n_devices;
	char cublas_lib[32];		/* soname that loaded */
};

/* The driver and cuBLAS, loaded and cuInit()ed once; NULL with err_msg()
 * ("no libcuda.so.1: ...", "cuInit failed: ...", "no CUDA device") when
 * they cannot be used.  The answer is remembered. */
const struct cuda_api *cuda_load(void);

/* The driver's message for rc ("CUDA_ERROR_OUT_OF_MEMORY"). */
const char *cuda_error(CUresult rc);

/* One line for dyn version, without the "CUDA backend: " label: the
 * kernels built in (archs) and what was found at run time. */
void cuda_describe(struct strbuf *sb);

#endif
