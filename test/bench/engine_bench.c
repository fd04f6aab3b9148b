/*
 * engine_bench.c - CPU engine throughput against the memory-bandwidth
 * limit, measured in the same run ('make bench' via test/bench/engine.sh).
 *
 *   engine_bench [--dtype f32|bf16|f16|q8_0|q4_0] MODEL_DIR THREADS...
 *
 * Loads MODEL_DIR with dummy weights of that dtype (default F32; BF16 and
 * F16 are computed with as they are, 2 bytes a weight; q8_0, q4_0: BF16
 * with the projections quantized at load, as --quantize does) and, for
 * each thread count:
 * prefill tokens/s of one 512-token prompt; decode tokens/s of 128 tokens
 * at batch 1 and batch 8; the machine's read bandwidth with that many
 * threads (best of 3 sweeps over 1 GiB in huge pages); and the decode
 * limit it implies, batch * bandwidth / weight bytes (every weight is
 * read once per step);
 * and the process's peak resident memory while the engine served those
 * requests, less the weights and the KV pool (the peak is reset after the
 * bandwidth sweep through /proc/self/clear_refs, so its buffer is not
 * counted).
 *
 * Besides the table it prints FIGURE lines (test/bench/run.sh) for the
 * ratios to the bandwidth limit and the memory overhead, and one line
 *     DYN shape dtype threads prefill_tok_s decode_b1_tok_s decode_b8_tok_s
 *         bw_ratio_b1 bw_ratio_b8 peak_rss_overhead_mb
 * per thread count for engine.sh to compare with llama.cpp.
 */
#include "core/cpu/kernels.h"
#include "core/cpu/pool.h"
#include "core/engine/engine.h"
#include "core/err.h"
#include "core/model/model.h"
#include "core/util.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

struct track {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_done, n_req;
	uint64_t t_first[8], t_last[8];
	int n_tok[8];
};

static struct track T;

static void on_out(void *arg, const struct engine_output *o)
{
	int i = (int)(intptr_t)arg;
	uint64_t now = mono_ns();
	pthread_mutex_lock(&T.mu);
	if (o->token >= 0) {
		if (!T.n_tok[i]++)
			T.t_first[i] = now;
		T.t_last[i] = now;
	}
	if (o->finish && ++T.n_done == T.n_req)
		pthread_cond_signal(&T.cv);
	pthread_mutex_unlock(&T.mu);
}

/* Submit n requests of prompt_len tokens generating gen tokens; wait. */
static uint64_t run(struct engine *e, int n, int prompt_len, int gen)
{
	static int32_t prompt[1024];
	uint64_t t0 = mono_ns();

	memset(&T.n_tok, 0, sizeof(T.n_tok));
	T.n_done = 0;
	T.n_req = n;
	for (int i = 0; i < n; i++) {
		for (int k = 0; k < prompt_len; k++)
			prompt[k] = (int32_t)((k * 7919 + i * 104729 + 13) % 30000);
		struct engine_request r = { .prompt = prompt, .n_prompt = prompt_len,
					    .on_output = on_out, .arg = (void *)(intptr_t)i };
		sampling_params_init(&r.params);
		r.params.max_tokens = gen;
		r.params.ignore_eos = 1;
		if (engine_submit(e, &r, NULL) < 0) {
			fprintf(stderr, "submit: %s\n", err_msg());
			exit(1);
		}
	}
	pthread_mutex_lock(&T.mu);
	while (T.n_done < n)
		pthread_cond_wait(&T.cv, &T.mu);
	pthread_mutex_unlock(&T.mu);
	return t0;
}

struct bw_job {
	const float *buf;
	size_t n;
	float sums[64];
};

#define BW_CHUNK (1u << 22)

static void bw_task(void *arg, int task, int thread)
{
	struct bw_job *j = arg;
	size_t i0 = (size_t)task * BW_CHUNK;
	size_t n = i0 + BW_CHUNK <= j->n ? BW_CHUNK : j->n - i0;
	j->sums[thread] += kern_dot(j->buf + i0, j->buf + i0, (int)n);
}

/* Read bandwidth in bytes/s with the given threads. */
static double bandwidth(int threads)
{
	size_t n = (size_t)1 << 28;	/* 1 GiB of floats */
	void *mem = NULL;
	if (posix_memalign(&mem, (size_t)2 << 20, n * sizeof(float))) {
		fprintf(stderr, "bandwidth: out of memory\n");
		exit(1);
	}
	float *buf = mem;
#ifdef MADV_HUGEPAGE
	/* huge pages, as the engine gives its weights: the best read
	 * bandwidth, not one lowered by a TLB miss every 4 KB */
	madvise(buf, n * sizeof(float), MADV_HUGEPAGE);
#endif
	struct pool *p;
	double best = 0;

	for (size_t i = 0; i < n; i++)
		buf[i] = (float)(i & 7) * 0.001f;
	pool_new(threads, &p);
	struct bw_job j = { buf, n, { 0 } };
	for (int rep = 0; rep < 3; rep++) {
		uint64_t t0 = mono_ns();
		pool_run(p, (int)(n / BW_CHUNK), bw_task, &j);
		double s = (double)(mono_ns() - t0) / 1e9;
		double bw = (double)(n * sizeof(float)) / s;
		if (bw > best)
			best = bw;
	}
	pool_free(p);
	free(buf);
	return best;
}

/* Reset the peak RSS (VmHWM) to the current RSS; 0 on success. */
static int peak_reset(void)
{
	int fd = open("/proc/self/clear_refs", O_WRONLY);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, "5", 1);
	close(fd);
	return n == 1 ? 0 : -1;
}

/* Peak resident set size in bytes (VmHWM), 0 if unknown. */
static double peak_rss(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	double kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = atof(line + 6);
	fclose(f);
	return kb * 1024;
}

int main(int argc, char **argv)
{
	enum dtype dt = DTYPE_F32, quant = DTYPE_UNKNOWN;
	if (argc > 2 && !strcmp(argv[1], "--dtype") && strcmp(argv[2], "none") &&
	    model_quantize_parse(argv[2], &quant) == 0) {
		dt = DTYPE_BF16;
		argv += 2;
		argc -= 2;
	} else if (argc > 2 && !strcmp(argv[1], "--dtype")) {
		char up[16] = "";	/* "f32": safetensors' name, any case */
		for (size_t i = 0; argv[2][i] && i + 1 < sizeof(up); i++)
			up[i] = (char)toupper((unsigned char)argv[2][i]);
		dt = dtype_is_weight(dtype_from_torch(argv[2])) ? dtype_from_torch(argv[2])
								: dtype_from_name(up);
		argv += 2;
		argc -= 2;
	}
	if (argc < 3 || !dtype_is_weight(dt)) {
		fprintf(stderr, "usage: engine_bench [--dtype f32|bf16|f16|q8_0|q4_0] MODEL_DIR "
			"THREADS...\n");
		return 2;
	}
	const char *simd = kernels_init();
	pthread_mutex_init(&T.mu, NULL);
	pthread_cond_init(&T.cv, NULL);
	struct model *m;
	struct model_load_opts lo = { .format = MODEL_LOAD_DUMMY, .dummy_dtype = dt,
				      .quantize = quant };
	enum dtype shown = quant ? quant : dt;	/* the projections' dtype */
	struct engine_opts lo_eo;
	engine_opts_init(&lo_eo);
	if (engine_weight_load_flags(&lo_eo, &lo.flags) < 0 || model_load(argv[1], &lo, &m) < 0) {
		fprintf(stderr, "load: %s\n", err_msg());
		return 1;
	}
	const char *name = strrchr(argv[1], '/') ? strrchr(argv[1], '/') + 1 : argv[1];
	double wbytes = (double)m->weight_bytes;
	for (int a = 2; a < argc; a++) {
		int threads = atoi(argv[a]);
		double bw = bandwidth(threads);
		int peak_ok = peak_reset() == 0;
		struct engine_opts o;
		engine_opts_init(&o);
		o.threads = threads;
		o.kv_cache_tokens = 8 * 1024;
		o.max_num_batched_tokens = 512;
		o.max_num_seqs = 8;
		o.no_prefix_caching = 1;
		struct engine *e;
		if (engine_new(m, &o, &e) < 0) {
			fprintf(stderr, "engine: %s\n", err_msg());
			return 1;
		}
		/* prefill: 512-token prompt, one token out */
		uint64_t t0 = run(e, 1, 512, 1);
		double prefill = 512.0 / ((double)(T.t_first[0] - t0) / 1e9);
		/* decode batch 1 */
		run(e, 1, 16, 128);
		double d1 = 127.0 / ((double)(T.t_last[0] - T.t_first[0]) / 1e9);
		/* decode batch 8: from the last first token to the last token */
		run(e, 8, 16, 128);
		uint64_t start = 0, end = 0;
		for (int i = 0; i < 8; i++) {
			if (T.t_first[i] > start)
				start = T.t_first[i];
			if (T.t_last[i] > end)
				end = T.t_last[i];
		}
		uint64_t toks = 0;
		for (int i = 0; i < 8; i++)	/* tokens produced after start */
			toks += (uint64_t)T.n_tok[i] - 1;
		double d8 = (double)toks / ((double)(end - start) / 1e9);
		double lim1 = bw / wbytes, lim8 = 8 * bw / wbytes;
		struct engine_stats st;
		engine_stats(e, &st);
		double kvbytes = (double)st.kv_blocks_total * st.block_size * 2.0 *
				 m->desc.num_layers * m->desc.num_kv_heads * m->desc.head_dim *
				 sizeof(float);
		double peak = peak_ok ? peak_rss() : 0;
		printf("%-20s threads %d  weights %.0f MB %s  read bandwidth %.1f GB/s  %s kernels\n",
		       name, threads, wbytes / 1e6, dtype_name(shown), bw / 1e9, simd);
		printf("  prefill 512 tokens     %8.1f tokens/s\n", prefill);
		printf("  decode batch 1         %8.1f tokens/s  limit %7.1f  ratio %.2f\n", d1, lim1,
		       d1 / lim1);
		printf("  decode batch 8         %8.1f tokens/s  limit %7.1f  ratio %.2f\n", d8, lim8,
		       d8 / lim8);
		if (peak > 0)
			printf("  peak RSS               %8.1f MB = weights %.1f + KV pool %.1f + %.1f MB\n",
			       peak / 1e6, wbytes / 1e6, kvbytes / 1e6, (peak - wbytes - kvbytes) / 1e6);
		/* figures of F32 keep their names; other dtypes get a suffix */
		char fig[160], qname[8] = "";
		for (size_t i = 0; quant && dtype_name(quant)[i] && i + 1 < sizeof(qname); i++)
			qname[i] = (char)tolower((unsigned char)dtype_name(quant)[i]);
		snprintf(fig, sizeof(fig), "%s%s%s", name, shown == DTYPE_F32 ? "" : ".",
			 shown == DTYPE_F32 ? "" : quant ? qname : dtype_torch_name(dt));
		printf("FIGURE engine.%s.t%d.decode_b1.bw %.1f tokens/s %.3f bandwidth_limit\n", fig,
		       threads, d1, d1 / lim1);
		printf("FIGURE engine.%s.t%d.decode_b8.bw %.1f tokens/s %.3f bandwidth_limit\n", fig,
		       threads, d8, d8 / lim8);
		if (peak > 0)
			printf("FIGURE engine.%s.t%d.peak_rss_overhead %.1f MB - -\n", fig, threads,
			       (peak - wbytes - kvbytes) / 1e6);
		printf("DYN %s %s %d %.2f %.2f %.2f %.3f %.3f %.1f\n", name, dtype_name(shown),
		       threads, prefill, d1, d8, d1 / lim1, d8 / lim8,
		       peak > 0 ? (peak - wbytes - kvbytes) / 1e6 : -1.0);
		fflush(stdout);
		engine_free(e);
	}
	model_free(m);
	return 0;
}
