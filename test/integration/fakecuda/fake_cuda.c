/*
 * fake_cuda.c - a stand-in for libcuda.so.1 and libcublas.so.13 (built
 * twice by cuda_fake.py, once under each name), so that the CUDA backend's
 * host code runs on a machine without a GPU: "device" memory is host
 * memory, kernel launches and GEMMs are counted (and their shapes checked)
 * but compute nothing, graphs record the launches made while capturing.
 * At exit each copy appends what it saw, one JSON line, to $FAKE_CUDA_REPORT.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct graph { int n; };

static long allocs, host_allocs, launches, captured, captures, graph_launches, gemms, errors;
static long ctx_retained, modules;
static int capturing;
static char first_error[256];

static void fail(const char *what)
{
	if (!errors++)
		snprintf(first_error, sizeof(first_error), "%s", what);
}

__attribute__((destructor)) static void report(void)
{
	const char *path = getenv("FAKE_CUDA_REPORT");
	FILE *f;

	if (!path || !(f = fopen(path, "a")))	/* both libraries report */
		return;
	fprintf(f, "{\"allocs\":%ld,\"host_allocs\":%ld,\"launches\":%ld,\"captured\":%ld,"
		"\"captures\":%ld,\"graph_launches\":%ld,\"gemms\":%ld,\"ctx_retained\":%ld,"
		"\"modules\":%ld,\"errors\":%ld,\"first_error\":\"%s\"}\n", allocs, host_allocs,
		launches, captured, captures, graph_launches, gemms, ctx_retained, modules, errors,
		first_error);
	fclose(f);
}

/* driver */
int cuInit(unsigned f) { (void)f; return 0; }
int cuDriverGetVersion(int *v) { *v = 13000; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { *d = i; return i ? 101 : 0; }
int cuDeviceGetName(char *s, int n, int d) { (void)d; snprintf(s, (size_t)n, "Fake GPU"); return 0; }
int cuDeviceGetAttribute(int *v, int a, int d) { (void)d; *v = a == 75 ? 9 : a == 16 ? 132 : 0; return 0; }
int cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)16 << 30; return 0; }
int cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = (void *)1; ctx_retained++; return 0; }
int cuDevicePrimaryCtxRelease_v2(int d) { (void)d; ctx_retained--; return 0; }
int cuCtxSetCurrent(void *c) { (void)c; return 0; }
int cuGetErrorString(int rc, const char **s) { (void)rc; *s = "FAKE_ERROR"; return 0; }

int cuModuleLoadData(void **m, const void *image)
{
	const unsigned char *p = image;	/* the embedded fatbin's magic */
	if (!(p[0] == 0x50 && p[1] == 0xed && p[2] == 0x55 && p[3] == 0xba))
		return 200;	/* CUDA_ERROR_INVALID_IMAGE */
	*m = (void *)2;
	modules++;
	return 0;
}
int cuModuleUnload(void *m) { (void)m; modules--; return 0; }
int cuModuleGetFunction(void **f, void *m, const char *name) { (void)m; *f = (void *)name; return 0; }
int cuFuncSetAttribute(void *f, int a, int v) { (void)f; (void)a; return v > 227 * 1024 ? 1 : 0; }

int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
		   unsigned bz, unsigned shared, void *s, void **args, void **extra)
{
	(void)f; (void)s; (void)args; (void)extra;
	if (!gx || !gy || !gz || !bx || bx * by * bz > 1024 || bx % 32 || shared > 227 * 1024)
		fail("a launch shape no GPU takes");
	if (capturing)
		captured++;
	else
		launches++;
	return 0;
}

int cuMemAlloc_v2(uint64_t *p, size_t n) { *p = (uintptr_t)calloc(1, n ? n : 1); allocs++; return 0; }
int cuMemFree_v2(uint64_t p) { free((void *)(uintptr_t)p); allocs--; return 0; }
int cuMemAllocHost_v2(void **p, size_t n) { *p = calloc(1, n); host_allocs++; return 0; }
int cuMemFreeHost(void *p) { free(p); host_allocs--; return 0; }
static int copy(void *d, const void *s, size_t n)
{
	if (capturing)
		fail("a synchronous copy while a graph records");
	memcpy(d, s, n);
	return 0;
}
int cuMemcpyHtoD_v2(uint64_t d, const void *s, size_t n) { return copy((void *)(uintptr_t)d, s, n); }
int cuMemcpyDtoH_v2(void *d, uint64_t s, size_t n) { return copy(d, (void *)(uintptr_t)s, n); }
int cuMemcpyHtoDAsync_v2(uint64_t d, const void *s, size_t n, void *st) { (void)st; return copy((void *)(uintptr_t)d, s, n); }
int cuMemcpyDtoHAsync_v2(void *d, uint64_t s, size_t n, void *st) { (void)st; return copy(d, (void *)(uintptr_t)s, n); }
int cuMemsetD8Async(uint64_t p, unsigned char v, size_t n, void *s) { (void)s; memset((void *)(uintptr_t)p, v, n); return 0; }
int cuMemGetInfo_v2(size_t *f, size_t *t) { *f = (size_t)8 << 30; *t = (size_t)16 << 30; return 0; }
int cuStreamCreate(void **s, unsigned f) { (void)f; *s = (void *)3; return 0; }
int cuStreamDestroy_v2(void *s) { (void)s; return 0; }
int cuStreamSynchronize(void *s)
{
	(void)s;
	if (capturing)
		fail("a stream synchronize while a graph records");
	return 0;
}
int cuStreamBeginCapture_v2(void *s, int mode) { (void)s; (void)mode; capturing = 1; captures++; return 0; }
int cuStreamEndCapture(void *s, void **g) { (void)s; capturing = 0; *g = malloc(1); return 0; }
int cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long f) { (void)g; (void)f; *e = malloc(1); return 0; }
int cuGraphLaunch(void *e, void *s) { (void)e; (void)s; graph_launches++; return 0; }
int cuGraphExecDestroy(void *e) { free(e); return 0; }
int cuGraphDestroy(void *g) { free(g); return 0; }

/* cuBLAS */
int cublasCreate_v2(void **h) { *h = (void *)4; return 0; }
int cublasDestroy_v2(void *h) { (void)h; return 0; }
int cublasSetStream_v2(void *h, void *s) { (void)h; (void)s; return 0; }
int cublasSetWorkspace_v2(void *h, void *w, size_t n) { (void)h; (void)w; (void)n; return 0; }
int cublasGetProperty(int t, int *v) { *v = t == 0 ? 13 : 0; return 0; }
int cublasGemmEx(void *h, int ta, int tb, int m, int n, int k, const void *alpha, const void *a,
		 int at, int lda, const void *b, int bt, int ldb, const void *beta, void *c, int ct,
		 int ldc, int compute, int algo)
{
	(void)h; (void)alpha; (void)beta; (void)compute; (void)algo;
	/* the backend's one form: y^T = W'^T x^T, W' [k, m], x^T [k, n] */
	if (ta != 1 || tb != 0 || m <= 0 || n <= 0 || k <= 0 || lda < k || ldb < k || ldc < m ||
	    at != bt || ct != 0 || !a || !b || !c)
		fail("a GEMM of a shape or types the backend does not make");
	gemms++;
	return 0;
}
