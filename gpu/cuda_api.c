/*
 * cuda_api.c - the driver and cuBLAS through dlopen (see cuda_api.h).
 */
#include "gpu/cuda_api.h"
#include "gpu/fatbin.h"
#include "core/err.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each entry point, by the versioned name the library exports (the
 * headers' macros map the plain names onto these). */
#define SYM(field, name) { offsetof(struct cuda_api, field), name }
static const struct {
	size_t off;
	const char *name;
} driver_syms[] = {
	SYM(cuInit, "cuInit"),
	SYM(cuDriverGetVersion, "cuDriverGetVersion"),
	SYM(cuDeviceGetCount, "cuDeviceGetCount"),
	SYM(cuDeviceGet, "cuDeviceGet"),
	SYM(cuDeviceGetName, "cuDeviceGetName"),
	SYM(cuDeviceGetAttribute, "cuDeviceGetAttribute"),
	SYM(cuDeviceTotalMem, "cuDeviceTotalMem_v2"),
	SYM(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
	SYM(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2"),
	SYM(cuCtxSetCurrent, "cuCtxSetCurrent"),
	SYM(cuModuleLoadData, "cuModuleLoadData"),
	SYM(cuModuleUnload, "cuModuleUnload"),
	SYM(cuModuleGetFunction, "cuModuleGetFunction"),
	SYM(cuFuncSetAttribute, "cuFuncSetAttribute"),
	SYM(cuLaunchKernel, "cuLaunchKernel"),
	SYM(cuMemAlloc, "cuMemAlloc_v2"),
	SYM(cuMemFree, "cuMemFree_v2"),
	SYM(cuMemAllocHost, "cuMemAllocHost_v2"),
	SYM(cuMemFreeHost, "cuMemFreeHost"),
	SYM(cuMemcpyHtoD, "cuMemcpyHtoD_v2"),
	SYM(cuMemcpyDtoH, "cuMemcpyDtoH_v2"),
	SYM(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2"),
	SYM(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2"),
	SYM(cuMemsetD8Async, "cuMemsetD8Async"),
	SYM(cuMemGetInfo, "cuMemGetInfo_v2"),
	SYM(cuStreamCreate, "cuStreamCreate"),
	SYM(cuStreamDestroy, "cuStreamDestroy_v2"),
	SYM(cuStreamSynchronize, "cuStreamSynchronize"),
	SYM(cuStreamBeginCapture, "cuStreamBeginCapture_v2"),
	SYM(cuStreamEndCapture, "cuStreamEndCapture"),
	SYM(cuGraphInstantiate, "cuGraphInstantiateWithFlags"),
	SYM(cuGraphLaunch, "cuGraphLaunch"),
	SYM(cuGraphExecDestroy, "cuGraphExecDestroy"),
	SYM(cuGraphDestroy, "cuGraphDestroy"),
	SYM(cuGetErrorString, "cuGetErrorString"),
}, cublas_syms[] = {
	SYM(cublasCreate, "cublasCreate_v2"),
	SYM(cublasDestroy, "cublasDestroy_v2"),
	SYM(cublasSetStream, "cublasSetStream_v2"),
	SYM(cublasSetWorkspace, "cublasSetWorkspace_v2"),
	SYM(cublasGetProperty, "cublasGetProperty"),
	SYM(cublasGemmEx, "cublasGemmEx"),
};

static struct cuda_api api;
static const struct cuda_api *loaded;
static char why[256];			/* when loaded is NULL */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int resolve(void *h, const char *lib, const void *syms, size_t n)
{
	const struct { size_t off; const char *name; } *s = syms;

	for (size_t i = 0; i < n; i++) {
		void *f = dlsym(h, s[i].name);
		if (!f)
			return snprintf(why, sizeof(why), "%s lacks %s (too old?)", lib, s[i].name);
		memcpy((char *)&api + s[i].off, &f, sizeof(f));
	}
	return 0;
}

static void load(void)
{
	static const char *const blas[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so", NULL };
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CUresult rc;

	if (!h) {
		snprintf(why, sizeof(why), "no libcuda.so.1: %s", dlerror());
		return;
	}
	if (resolve(h, "libcuda.so.1", driver_syms, sizeof(driver_syms) / sizeof(driver_syms[0])))
		return;
	api.cuDriverGetVersion(&api.driver_version);
	if ((rc = api.cuInit(0))) {
		snprintf(why, sizeof(why), "cuInit failed: %s", cuda_error(rc));
		return;
	}
	if ((rc = api.cuDeviceGetCount(&api.n_devices)) || !api.n_devices) {
		snprintf(why, sizeof(why), "no CUDA device (driver %d.%d%s)",
			 api.driver_version / 1000, api.driver_version % 1000 / 10,
			 getenv("CUDA_VISIBLE_DEVICES") ? ", CUDA_VISIBLE_DEVICES is set" : "");
		return;
	}
	void *hb = NULL;
	for (int i = 0; blas[i] && !hb; i++)
		if ((hb = dlopen(blas[i], RTLD_NOW | RTLD_LOCAL)))
			snprintf(api.cublas_lib, sizeof(api.cublas_lib), "%s", blas[i]);
	if (!hb) {
		snprintf(why, sizeof(why), "no libcublas.so.13/12: %s", dlerror());
		return;
	}
	if (resolve(hb, api.cublas_lib, cublas_syms, sizeof(cublas_syms) / sizeof(cublas_syms[0])))
		return;
	loaded = &api;
}

const struct cuda_api *cuda_load(void)
{
	pthread_once(&once, load);
	if (!loaded)
		err_set(-ENODEV, "%s", why);
	return loaded;
}

const char *cuda_error(CUresult rc)
{
	const char *s = NULL;

	if (api.cuGetErrorString && !api.cuGetErrorString(rc, &s) && s)
		return s;
	return "unknown CUDA error";
}

void cuda_describe(struct strbuf *sb)
{
	const struct cuda_api *cu = cuda_load();

	if (!*cuda_fatbin_archs) {
		sb_adds(sb, "not built in (built without nvcc, or with CUDA=0)");
		return;
	}
	sb_addf(sb, "built in (%s); ", cuda_fatbin_archs);
	if (!cu) {
		sb_addf(sb, "not usable here: %s", why);
		return;
	}
	sb_addf(sb, "driver %d.%d", cu->driver_version / 1000, cu->driver_version % 1000 / 10);
	for (int i = 0; i < cu->n_devices; i++) {
		CUdevice d;
		char name[96] = "?";
		size_t total = 0;
		int major = 0, minor = 0;
		if (cu->cuDeviceGet(&d, i))
			continue;
		cu->cuDeviceGetName(name, sizeof(name), d);
		cu->cuDeviceTotalMem(&total, d);
		cu->cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, d);
		cu->cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, d);
		sb_addf(sb, ", GPU %d: %s (sm_%d%d, %.1f GiB)", i, name, major, minor,
			(double)total / (1u << 30));
	}
	int v[3] = { 0, 0, 0 };
	for (int i = 0; i < 3; i++)
		cu->cublasGetProperty(i, &v[i]);
	sb_addf(sb, ", cuBLAS %d.%d.%d (%s)", v[0], v[1], v[2], cu->cublas_lib);
}
