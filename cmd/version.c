/*
 * version.c - "dyn version": what this binary is and what it found.
 */
#include "cmd/cmd.h"
#include "core/cpu/kernels.h"
#include "core/platform.h"
#include "core/strbuf.h"
#include "gpu/cuda_api.h"
#include "net/kv_xfer.h"

#include <event2/event.h>
#include <hwloc.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static int json_output;

static const struct opt version_opts[] = {
	{ "json", OPT_BOOL, &json_output, NULL, "print one JSON object", 0, 0, NULL },
	{ 0 },
};

static const struct opt_cmd version_cmd = {
	.name = "version",
	.usage = "[--json]",
	.summary = "Print the version, git commit and build options of this dyn binary,\n"
		   "and which optional runtimes (CUDA driver, cuBLAS, NCCL, UCX) and CPU\n"
		   "topology were found on this machine at run time.",
	.opts = version_opts,
};

static void print_json(const struct platform_info *p)
{
	struct strbuf sb = STRBUF_INIT;

	sb_addf(&sb, "{\"version\":\"%s\",\"commit\":\"%s\",\"build\":\"%s\","
		"\"compiler\":\"%s\",\"libevent\":\"%s\",\"sqlite\":\"%s\","
		"\"cpu\":{\"model\":",
		DYN_VERSION, dyn_git_commit, DYN_BUILD_FLAGS, __VERSION__,
		event_get_version(), sqlite3_libversion());
	sb_add_json_str(&sb, p->cpu_model, strlen(p->cpu_model));
	sb_addf(&sb, ",\"packages\":%d,\"numa_nodes\":%d,\"cores\":%d,\"threads\":%d,"
		"\"kernels\":\"%s\"},\"runtimes\":{", p->packages, p->numa_nodes, p->cores,
		p->pus, kernels_init());
	for (int i = 0; i < PLATFORM_NRUNTIMES; i++) {
		const struct platform_runtime *r = &p->runtimes[i];
		sb_addf(&sb, "%s", i ? "," : "");
		sb_add_json_str(&sb, r->name, strlen(r->name));
		sb_addf(&sb, ":{\"found\":%s,\"library\":", r->found ? "true" : "false");
		sb_add_json_str(&sb, r->library, strlen(r->library));
		sb_adds(&sb, ",\"detail\":");
		sb_add_json_str(&sb, r->detail, strlen(r->detail));
		sb_addch(&sb, '}');
	}
	sb_addf(&sb, "},\"kv_transfer\":{\"ucx\":%s,\"detail\":",
		kvx_ucx_available(NULL) ? "true" : "false");
	sb_add_json_str(&sb, kvx_ucx_describe(), strlen(kvx_ucx_describe()));
	sb_adds(&sb, "},\"cuda_backend\":");
	struct strbuf cuda = STRBUF_INIT;
	cuda_describe(&cuda);
	sb_add_json_str(&sb, cuda.buf, cuda.len);
	sb_release(&cuda);
	sb_adds(&sb, "}\n");
	fputs(sb.buf, stdout);
	sb_release(&sb);
}

int cmd_version(int argc, char **argv)
{
	struct platform_info p;
	int rc = cmd_options_only(&version_cmd, argc, argv);
	if (rc >= 0)
		return rc;
	/* The data plane loads UCX first, the way it must be loaded (without
	 * its process-wide malloc hooks); the probe then finds it loaded. */
	kvx_ucx_available(NULL);
	platform_probe(&p);
	if (json_output) {
		print_json(&p);
		return 0;
	}
	printf("dyn %s (commit %s)\n", DYN_VERSION, dyn_git_commit);
	printf("build:     %s, %s, libevent %s, sqlite %s, hwloc API %x\n",
	       DYN_BUILD_FLAGS, "cc " __VERSION__, event_get_version(),
	       sqlite3_libversion(), (unsigned)HWLOC_API_VERSION);
	if (p.pus)
		printf("cpu:       %s: %d package%s, %d NUMA node%s, %d cores, %d threads\n",
		       p.cpu_model[0] ? p.cpu_model : "unknown model",
		       p.packages, p.packages == 1 ? "" : "s",
		       p.numa_nodes, p.numa_nodes == 1 ? "" : "s", p.cores, p.pus);
	else
		printf("cpu:       topology unavailable (hwloc could not load it)\n");
	printf("kernels:   %s (the CPU engine's SIMD path on this machine)\n", kernels_init());
	for (int i = 0; i < PLATFORM_NRUNTIMES; i++) {
		const struct platform_runtime *r = &p.runtimes[i];
		char label[32];
		snprintf(label, sizeof(label), "%s:", r->name);
		if (r->found)
			printf("%-10s %s (%s)\n", label, r->detail[0] ? r->detail : "found",
			       r->library);
		else
			printf("%-10s not found\n", label);
	}
	/* Whether the KV data plane can use UCX: found is not enough. */
	printf("kv-xfer:   tcp%s (%s)\n", kvx_ucx_available(NULL) ? ", ucx" : " only",
	       kvx_ucx_describe());
	struct strbuf cuda = STRBUF_INIT;
	cuda_describe(&cuda);
	printf("CUDA backend: %s\n", cuda.buf);
	sb_release(&cuda);
	return 0;
}
