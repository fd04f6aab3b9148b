/*
 * platform.c - run-time discovery of CPU topology and optional runtimes.
 *
 * Each optional library is looked up by its usual sonames and asked for
 * its version through a symbol every release has; nothing else is
 * initialised here (the CUDA backend does that when it is used).
 */
#include "core/platform.h"
#include "core/util.h"

#include <dlfcn.h>
#include <hwloc.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static void *open_any(const char *const *names, struct platform_runtime *rt)
{
	for (; *names; names++) {
		void *h = dlopen(*names, RTLD_NOW | RTLD_LOCAL);
		if (h) {
			snprintf(rt->library, sizeof(rt->library), "%s", *names);
			rt->found = 1;
			return h;
		}
	}
	snprintf(rt->detail, sizeof(rt->detail), "not found");
	return NULL;
}

static void probe_cuda(struct platform_runtime *rt)
{
	static const char *const names[] = { "libcuda.so.1", "libcuda.so", NULL };
	typedef int (*int_fn)(int *);
	typedef int (*init_fn)(unsigned);
	void *h;

	rt->name = "CUDA driver";
	if (!(h = open_any(names, rt)))
		return;
	init_fn cu_init = (init_fn)dlsym(h, "cuInit");
	int_fn get_version = (int_fn)dlsym(h, "cuDriverGetVersion");
	int_fn get_count = (int_fn)dlsym(h, "cuDeviceGetCount");
	int version = 0, count = 0;
	if (get_version && get_version(&version) == 0)
		snprintf(rt->detail, sizeof(rt->detail), "version %d.%d",
			 version / 1000, version % 1000 / 10);
	if (cu_init && get_count && cu_init(0) == 0 && get_count(&count) == 0) {
		size_t n = strlen(rt->detail);
		snprintf(rt->detail + n, sizeof(rt->detail) - n, ", %d device%s",
			 count, count == 1 ? "" : "s");
	} else {
		size_t n = strlen(rt->detail);
		snprintf(rt->detail + n, sizeof(rt->detail) - n, ", no usable device");
	}
	/* The handle stays open: the CUDA backend will use it. */
}

static void probe_cublas(struct platform_runtime *rt)
{
	static const char *const names[] = {
		"libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
		"libcublas.so", NULL,
	};
	typedef int (*prop_fn)(int type, int *value);
	void *h;

	rt->name = "cuBLAS";
	if (!(h = open_any(names, rt)))
		return;
	prop_fn get = (prop_fn)dlsym(h, "cublasGetProperty");
	int major = 0, minor = 0, patch = 0;
	/* libraryPropertyType: MAJOR_VERSION=0, MINOR_VERSION=1, PATCH_LEVEL=2 */
	if (get && !get(0, &major) && !get(1, &minor) && !get(2, &patch))
		snprintf(rt->detail, sizeof(rt->detail), "version %d.%d.%d",
			 major, minor, patch);
}

static void probe_nccl(struct platform_runtime *rt)
{
	static const char *const names[] = { "libnccl.so.2", "libnccl.so", NULL };
	typedef int (*ver_fn)(int *);
	void *h;

	rt->name = "NCCL";
	if (!(h = open_any(names, rt)))
		return;
	ver_fn get = (ver_fn)dlsym(h, "ncclGetVersion");
	int v = 0;
	/* NCCL >= 2.9 encodes major*10000 + minor*100 + patch. */
	if (get && get(&v) == 0)
		snprintf(rt->detail, sizeof(rt->detail), "version %d.%d.%d",
			 v / 10000, v % 10000 / 100, v % 100);
}

static void probe_ucx(struct platform_runtime *rt)
{
	static const char *const names[] = { "libucp.so.0", "libucp.so", NULL };
	typedef void (*ver_fn)(unsigned *, unsigned *, unsigned *);
	void *h;

	rt->name = "UCX";
	if (!(h = open_any(names, rt)))
		return;
	ver_fn get = (ver_fn)dlsym(h, "ucp_get_version");
	unsigned major = 0, minor = 0, release = 0;
	if (get) {
		get(&major, &minor, &release);
		snprintf(rt->detail, sizeof(rt->detail), "version %u.%u.%u",
			 major, minor, release);
	}
}

static void probe_topology(struct platform_info *info)
{
	hwloc_topology_t topo;

	if (hwloc_topology_init(&topo) < 0)
		return;
	if (hwloc_topology_load(topo) == 0) {
		info->packages = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PACKAGE);
		info->numa_nodes = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
		info->cores = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
		info->pus = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_PU);
		hwloc_obj_t pkg = hwloc_get_obj_by_type(topo, HWLOC_OBJ_PACKAGE, 0);
		const char *model = pkg ? hwloc_obj_get_info_by_name(pkg, "CPUModel") : NULL;
		if (model)
			snprintf(info->cpu_model, sizeof(info->cpu_model), "%s", model);
	}
	hwloc_topology_destroy(topo);
}

int platform_cores(void)
{
	struct platform_info info;

	memset(&info, 0, sizeof(info));
	probe_topology(&info);
	return info.cores;
}

void platform_probe(struct platform_info *info)
{
	memset(info, 0, sizeof(*info));
	probe_topology(info);
	probe_cuda(&info->runtimes[PLATFORM_CUDA]);
	probe_cublas(&info->runtimes[PLATFORM_CUBLAS]);
	probe_nccl(&info->runtimes[PLATFORM_NCCL]);
	probe_ucx(&info->runtimes[PLATFORM_UCX]);
}

long platform_raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -1;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur == RLIM_INFINITY ? -1 : (long)rl.rlim_cur;
}
