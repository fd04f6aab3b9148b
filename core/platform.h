/*
 * platform.h - what this machine offers at run time: CPU topology (hwloc)
 * and the optional GPU/network runtimes that dyn loads with dlopen()
 * (CUDA driver, cuBLAS, NCCL, UCX), so one binary runs everywhere and can
 * say what it found.
 *
 * platform_probe() fills a plain struct; it is cheap enough to call once
 * at start-up and is thread-safe (no shared state).
 */
#ifndef DYN_PLATFORM_H
#define DYN_PLATFORM_H

struct platform_runtime {
	const char *name;	/* "CUDA driver", "cuBLAS", "NCCL", "UCX" */
	int found;		/* library loaded */
	char library[64];	/* the soname that loaded */
	char detail[128];	/* version / device count, or why not usable */
};

enum { PLATFORM_CUDA, PLATFORM_CUBLAS, PLATFORM_NCCL, PLATFORM_UCX, PLATFORM_NRUNTIMES };

struct platform_info {
	/* CPU topology from hwloc (0 if hwloc could not load it). */
	int packages, numa_nodes, cores, pus;
	char cpu_model[128];
	struct platform_runtime runtimes[PLATFORM_NRUNTIMES];
};

void platform_probe(struct platform_info *info);
/* Physical cores from the topology alone (no runtime libraries loaded:
 * probing CUDA/cuBLAS maps hundreds of MB); 0 if unknown. */
int platform_cores(void);

/* Raise the soft limit on open files to the hard limit: servers and the
 * load generator hold a descriptor per connection, and Debian's soft
 * default (1024) is far below what thousands of streams need.  Returns the
 * limit now in force (-1: unlimited or unknown). */
long platform_raise_nofile(void);

#endif
