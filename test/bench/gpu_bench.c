/*
 * gpu_bench.c - the CUDA backend's throughput against the GPU's limits
 * measured in the same run (test/gpu/device_check.sh; skips without a GPU).
 *
 *   gpu_bench MODEL_DIR...
 *
 * For each model (dummy BF16 weights, F16 KV): decode tokens/s at batch 1,
 * 8 and 64 (128 tokens after a 128-token prompt each), as a fraction of the
 * bandwidth roofline: the bytes a step reads (every weight once, plus each
 * sequence's K and V so far) over the bandwidth a device-to-device copy
 * kernel reaches here; prefill tokens/s of one 512- and one 4096-token
 * prompt, as a fraction of the BF16 rate cuBLAS reaches on an 8192^3 GEMM
 * here (the dense peak this GPU can give) and of the nominal dense peak
 * when the card is known (H100/H200 SXM: 989 TFLOP/s).
 *
 * Prints one line a measurement for test/bench/run.sh:
 *   FIGURE gpu_MODEL_decode_bN TOK_S tok/s FRACTION hbm_roofline
 *   FIGURE gpu_MODEL_prefill_N TOK_S tok/s FRACTION cublas_bf16_peak
 * and the prefill fraction of the nominal peak on a line of its own.
 */
#include "core/engine/engine.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/util.h"
#include "gpu/backend_cuda.h"
#include "gpu/cuda_api.h"
#include "gpu/fatbin.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int n_done, n_req;
static uint64_t t_first, t_last;

static void on_out(void *arg, const struct engine_output *o)
{
	uint64_t now = mono_ns();

	(void)arg;
	pthread_mutex_lock(&mu);
	if (o->token >= 0) {
		if (!t_first)
			t_first = now;
		t_last = now;
	}
	if (o->finish && ++n_done == n_req)
		pthread_cond_signal(&cv);
	pthread_mutex_unlock(&mu);
}

/* n requests of prompt_len tokens generating gen each; seconds from
 * submission to the last token. */
static double run(struct engine *e, int n, int prompt_len, int gen, uint64_t *first)
{
	int32_t *prompt = xcalloc((size_t)prompt_len, sizeof(*prompt));
	uint64_t t0 = mono_ns();

	n_done = 0;
	n_req = n;
	t_first = t_last = 0;
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < prompt_len; k++)
			prompt[k] = (int32_t)((k * 7919 + i * 104729 + 13) % 30000);
		struct engine_request r = { .prompt = prompt, .n_prompt = prompt_len,
					    .on_output = on_out };
		sampling_params_init(&r.params);
		r.params.max_tokens = gen;
		r.params.ignore_eos = 1;
		r.params.temperature = 0;	/* greedy: the host's part of a step stays small */
		if (engine_submit(e, &r, NULL) < 0) {
			fprintf(stderr, "submit: %s\n", err_msg());
			exit(1);
		}
	}
	pthread_mutex_lock(&mu);
	while (n_done < n)
		pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	free(prompt);
	*first = t_first;
	return (double)(t_last - t0) / 1e9;
}

static void ck(CUresult rc, const char *what)
{
	if (rc) {
		fprintf(stderr, "gpu_bench: %s: %s\n", what, cuda_error(rc));
		exit(1);
	}
}

/* Device bandwidth (bytes/s, read + write) of the copy kernel, and the
 * BF16 GEMM rate (FLOP/s) of cuBLAS, on GPU 0. */
static void limits(const struct cuda_api *cu, double *bw, double *flops, char *name, size_t len)
{
	CUdevice d;
	CUcontext ctx;
	CUmodule mod;
	CUfunction copy;
	CUstream s;
	CUdeviceptr a, b, c;
	size_t n4 = (size_t)1 << 27;	/* 2 GiB of float4 each way */
	int dim = 8192;
	cublasHandle_t h;
	const float one = 1, zero = 0;

	ck(cu->cuDeviceGet(&d, 0), "cuDeviceGet");
	cu->cuDeviceGetName(name, (int)len, d);
	ck(cu->cuDevicePrimaryCtxRetain(&ctx, d), "context");
	ck(cu->cuCtxSetCurrent(ctx), "context");
	ck(cu->cuModuleLoadData(&mod, cuda_fatbin), "module");
	ck(cu->cuModuleGetFunction(&copy, mod, "copy_f4"), "copy_f4");
	ck(cu->cuStreamCreate(&s, 0), "stream");
	ck(cu->cuMemAlloc(&a, n4 * 16), "alloc");
	ck(cu->cuMemAlloc(&b, n4 * 16), "alloc");
	ck(cu->cuMemsetD8Async(a, 1, n4 * 16, s), "memset");
	*bw = 0;
	for (int rep = 0; rep < 5; rep++) {
		void *args[] = { &b, &a, &n4 };
		ck(cu->cuStreamSynchronize(s), "sync");
		uint64_t t0 = mono_ns();
		ck(cu->cuLaunchKernel(copy, 132 * 16, 1, 1, 256, 1, 1, 0, s, args, NULL), "copy");
		ck(cu->cuStreamSynchronize(s), "sync");
		double r = 2.0 * (double)n4 * 16 / ((double)(mono_ns() - t0) / 1e9);
		*bw = r > *bw ? r : *bw;
	}
	cu->cuMemFree(b);
	cu->cuMemFree(a);
	size_t mat = (size_t)dim * dim;
	ck(cu->cuMemAlloc(&a, mat * 2), "alloc");
	ck(cu->cuMemAlloc(&b, mat * 2), "alloc");
	ck(cu->cuMemAlloc(&c, mat * 4), "alloc");
	ck(cu->cuMemsetD8Async(a, 0x3c, mat * 2, s), "memset");
	ck(cu->cuMemsetD8Async(b, 0x3c, mat * 2, s), "memset");
	if (cu->cublasCreate(&h) || cu->cublasSetStream(h, s)) {
		fprintf(stderr, "gpu_bench: cuBLAS does not start\n");
		exit(1);
	}
	*flops = 0;
	for (int rep = 0; rep < 6; rep++) {
		ck(cu->cuStreamSynchronize(s), "sync");
		uint64_t t0 = mono_ns();
		for (int i = 0; i < 5; i++)
			cu->cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, dim, dim, dim, &one,
					 (void *)(uintptr_t)a, CUDA_R_16BF, dim, (void *)(uintptr_t)b,
					 CUDA_R_16BF, dim, &zero, (void *)(uintptr_t)c, CUDA_R_32F, dim,
					 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
		ck(cu->cuStreamSynchronize(s), "sync");
		double r = 5 * 2.0 * (double)mat * dim / ((double)(mono_ns() - t0) / 1e9);
		*flops = rep && r > *flops ? r : *flops;	/* the first warms up */
	}
	cu->cublasDestroy(h);
	cu->cuMemFree(a);
	cu->cuMemFree(b);
	cu->cuMemFree(c);
	cu->cuStreamDestroy(s);
	cu->cuModuleUnload(mod);
	cu->cuDevicePrimaryCtxRelease(d);
}

int main(int argc, char **argv)
{
	const struct cuda_api *cu;
	char gpu[96] = "?";
	double bw, peak;

	setvbuf(stdout, NULL, _IOLBF, 0);	/* each figure kept if a time limit stops it */
	if (argc < 2) {
		fprintf(stderr, "usage: gpu_bench MODEL_DIR...\n");
		return 2;
	}
	if (backend_cuda.available() < 0 || !(cu = cuda_load())) {
		printf("SKIP: gpu_bench: %s\n", err_msg());
		return 0;
	}
	limits(cu, &bw, &peak, gpu, sizeof(gpu));
	double nominal = strstr(gpu, "H100") || strstr(gpu, "H200") ? 989.4e12 : 0;
	printf("%s: copy kernel %.0f GB/s, cuBLAS BF16 %.0f TFLOP/s (nominal %.0f)\n", gpu,
	       bw / 1e9, peak / 1e12, nominal / 1e12);
	for (int a = 1; a < argc; a++) {
		struct model *m;
		struct engine *e;
		struct model_load_opts lo = { .format = MODEL_LOAD_DUMMY, .dummy_dtype = DTYPE_BF16 };
		struct engine_opts o;
		engine_opts_init(&o);
		o.backend = "cuda";
		o.max_num_seqs = 64;
		o.max_num_batched_tokens = 4096;
		o.kv_cache_tokens = 64 * 512;
		if (model_load(argv[a], &lo, &m) < 0 || engine_new(m, &o, &e) < 0) {
			fprintf(stderr, "gpu_bench: %s: %s\n", argv[a], err_msg());
			return 1;
		}
		const struct model_desc *d = &m->desc;
		const char *name = strrchr(argv[a], '/') ? strrchr(argv[a], '/') + 1 : argv[a];
		double wbytes = (double)m->weight_bytes;
		double kv_tok = 2.0 * d->num_layers * d->num_kv_heads * d->head_dim * 2;	/* F16 */
		uint64_t first;
		run(e, 1, 16, 8, &first);	/* warm up: graphs, cuBLAS heuristics */
		static const int batches[] = { 1, 8, 64 };
		for (int i = 0; i < 3; i++) {
			int bsz = batches[i], prompt = 128, gen = 128;
			run(e, bsz, prompt, gen, &first);	/* records the graphs */
			double s = run(e, bsz, prompt, gen, &first);
			(void)s;
			double dec = (double)(t_last - first) / 1e9;
			double tok_s = (double)bsz * (gen - 1) / dec;
			/* a step reads the weights and, on average, each
			 * sequence's prompt + gen/2 rows of K and V */
			double step_bytes = wbytes + bsz * (prompt + gen / 2.0) * kv_tok;
			double roof = bsz * bw / step_bytes;
			printf("FIGURE gpu_%s_decode_b%d %.1f tok/s %.3f hbm_roofline\n", name, bsz,
			       tok_s, tok_s / roof);
		}
		static const int lens[] = { 512, 4096 };
		for (int i = 0; i < 2; i++) {
			int len = lens[i];
			double s = run(e, 1, len, 1, &first);
			double tok_s = len / s;
			/* 2 FLOPs a weight a token, plus causal attention */
			double flops = 2.0 * wbytes / 2 * len +
				       2.0 * d->num_layers * d->num_heads * d->head_dim *
					       (double)len * len;
			printf("FIGURE gpu_%s_prefill_%d %.1f tok/s %.3f cublas_bf16_peak\n", name,
			       len, tok_s, flops / s / peak);
			if (nominal)
				printf("  %s prefill %d: %.3f of the nominal dense BF16 peak\n", name,
				       len, flops / s / nominal);
		}
		engine_free(e);
		model_free(m);
	}
	return 0;
}
