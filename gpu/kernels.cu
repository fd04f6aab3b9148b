/*
 * kernels.cu - dyn's own CUDA kernels (the projections go through cuBLAS).
 *
 * Compiled by nvcc for sm_80 and sm_90 into one fatbin embedded in dyn
 * (Makefile); backend_cuda.c finds them by their unmangled names.
 * Activations are F32 like the CPU backend's; weights BF16, F16 or F32
 * (wt: DT_*), the KV pool F32, BF16 or F16 (kt).  Every kernel is a plain
 * grid-stride or one-block-per-row kernel: simple enough to check by eye.
 *
 * Attention (attend): one block per work item of gpu/attn_plan.h (up to
 * ATTN_ROWS query rows = tokens x the query heads of one KV head, one
 * sequence), one warp per row.  Keys come in tiles of 32 (one per lane)
 * through shared memory; each row keeps a running max m, sum l and output
 * acc (online softmax), so no score matrix beyond one tile ever exists.
 * Decode is the same kernel with one token per item.
 */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#define DT_F32 0
#define DT_F16 1
#define DT_BF16 2
#define F16_MAX 65504.0f
#define TILE 32			/* keys per tile: one per lane */
#define MAX_HD 256		/* head_dim limit (backend_cuda.c checks); any size below */

__device__ __forceinline__ float ld(const void *p, size_t i, int t)
{
	if (t == DT_BF16)
		return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
	if (t == DT_F16)
		return __half2float(((const __half *)p)[i]);
	return ((const float *)p)[i];
}

__device__ __forceinline__ void st(void *p, size_t i, int t, float v)
{
	if (t == DT_BF16)
		((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v);
	else if (t == DT_F16)	/* saturate like the CPU backend: inf would poison softmax */
		((__half *)p)[i] = __float2half_rn(fminf(fmaxf(v, -F16_MAX), F16_MAX));
	else
		((float *)p)[i] = v;
}

#define GRID_STRIDE(i, n) \
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); \
	     i += (size_t)gridDim.x * blockDim.x)

/* y[t, :] = emb[ids[t], :] */
extern "C" __global__ void embed(float *y, const void *emb, int wt, const int32_t *ids, int n,
				 int dim)
{
	GRID_STRIDE(i, (size_t)n * dim)
		y[i] = ld(emb, (size_t)ids[i / dim] * dim + i % dim, wt);
}

/* F32 activations to the GEMM input type (BF16 or F16) */
extern "C" __global__ void narrow(void *y, int t, const float *x, size_t n)
{
	GRID_STRIDE(i, n)
		st(y, i, t, x[i]);
}

/* y[t, o] += bias[o] */
extern "C" __global__ void add_bias(float *y, const void *bias, int wt, int n, int rows)
{
	GRID_STRIDE(i, (size_t)n * rows)
		y[i] += ld(bias, i % rows, wt);
}

/* One block per row: y = x / rms(x) * w (y may be x). */
extern "C" __global__ void rmsnorm(float *y, const float *x, const void *w, int wt, int dim,
				   float eps)
{
	__shared__ float part[32];
	const float *xr = x + (size_t)blockIdx.x * dim;
	float *yr = y + (size_t)blockIdx.x * dim;
	float ss = 0;

	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		ss += xr[i] * xr[i];
	for (int o = 16; o; o >>= 1)
		ss += __shfl_xor_sync(0xffffffff, ss, o);
	if ((threadIdx.x & 31) == 0)
		part[threadIdx.x >> 5] = ss;
	__syncthreads();
	ss = 0;
	for (int i = 0; i < (int)(blockDim.x >> 5); i++)
		ss += part[i];
	float inv = rsqrtf(ss / (float)dim + eps);
	for (int i = threadIdx.x; i < dim; i += blockDim.x)
		yr[i] = ld(w, i, wt) * (xr[i] * inv);
}

/* Rotate-half RoPE in place: x[t, h, :] at pos[t] */
extern "C" __global__ void rope(float *x, int n, int n_heads, int hd, const int32_t *pos,
				const float *inv_freq)
{
	int half = hd / 2;

	GRID_STRIDE(i, (size_t)n * n_heads * half) {
		size_t th = i / half;		/* token * n_heads + head */
		int j = i % half, t = th / n_heads;
		float s, c;
		sincosf((float)pos[t] * inv_freq[j], &s, &c);
		float *v = x + th * hd;
		float x0 = v[j], x1 = v[j + half];
		v[j] = x0 * c - x1 * s;
		v[j + half] = x1 * c + x0 * s;
	}
}

extern "C" __global__ void silu_mul(float *gate, const float *up, size_t n)
{
	GRID_STRIDE(i, n) {
		float g = gate[i];
		gate[i] = g / (1.0f + __expf(-g)) * up[i];
	}
}

extern "C" __global__ void add(float *y, const float *x, size_t n)
{
	GRID_STRIDE(i, n)
		y[i] += x[i];
}

/* K and V rows [n, kv_dim] into the pool at slots[t] (slot < 0: skip) */
extern "C" __global__ void kv_write(void *kp, void *vp, int kt, const float *k, const float *v,
				    int n, int kv_dim, const int32_t *slots)
{
	GRID_STRIDE(i, (size_t)n * kv_dim) {
		int t = i / kv_dim;
		if (slots[t] < 0)
			continue;
		size_t dst = (size_t)slots[t] * kv_dim + i % kv_dim;
		st(kp, dst, kt, k[i]);
		st(vp, dst, kt, v[i]);
	}
}

/* dst[i, :] = src[rows[i], :] */
extern "C" __global__ void copy_rows(float *dst, const float *src, size_t width,
				     const int32_t *rows, int n)
{
	GRID_STRIDE(i, (size_t)n * width)
		dst[i] = src[(size_t)rows[i / width] * width + i % width];
}

/* One work item of gpu/attn_plan.h (struct attn_item, mirrored here). */
struct item {
	int32_t first_token, n_tokens, seq, kv_head;
};

/*
 * out[t, h, :] for the item's rows: row r is token first_token + r / group,
 * query head kv_head * group + r % group.  Keys: the sequence's positions
 * lo .. pos[t] of each row (lo from the sliding window), tiles of TILE
 * through the block table tables[seq * table_stride + p / block_size].
 * Shared memory: the rows' queries, then one K and one V tile (K rows
 * padded by one float against bank conflicts).
 */
extern "C" __global__ void attend(float *out, const float *q, const void *kp, const void *vp,
				  int kt, const struct item *items, const int32_t *pos,
				  const int32_t *tables, int table_stride, int block_size,
				  int n_heads, int n_kv_heads, int hd, int window, float scale)
{
	extern __shared__ float sm[];
	const struct item it = items[blockIdx.x];
	int group = n_heads / n_kv_heads, rows = it.n_tokens * group;
	int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, kv_dim = n_kv_heads * hd;
	float *qs = sm, *ks = qs + (size_t)rows * hd, *vs = ks + (size_t)TILE * (hd + 1);
	const int32_t *table = tables + (size_t)it.seq * table_stride;

	/* queries of the item's rows, pre-scaled */
	for (int i = threadIdx.x; i < rows * hd; i += blockDim.x) {
		int r = i / hd, t = it.first_token + r / group, h = it.kv_head * group + r % group;
		qs[i] = q[((size_t)t * n_heads + h) * hd + i % hd] * scale;
	}
	/* this warp's row: its token's position bounds its keys */
	int my_t = it.first_token + warp / group, my_pos = warp < rows ? pos[my_t] : -1;
	int my_lo = window > 0 && my_pos - window + 1 > 0 ? my_pos - window + 1 : 0;
	/* the item's key range: every row's, tokens are in position order */
	int last = pos[it.first_token + it.n_tokens - 1], p0 = pos[it.first_token];
	int first = window > 0 && p0 - window + 1 > 0 ? p0 - window + 1 : 0;
	float m = -INFINITY, l = 0, acc[MAX_HD / 32];

	/* acc stays in registers: loops over it run to the constant MAX_HD / 32,
	 * unrolled, each slot used when it is within hd */
#pragma unroll
	for (int i = 0; i < MAX_HD / 32; i++)
		acc[i] = 0;
	for (int k0 = first - first % TILE; k0 <= last; k0 += TILE) {
		__syncthreads();	/* the previous tile is consumed */
		for (int i = threadIdx.x; i < TILE * hd; i += blockDim.x) {
			int j = i / hd, d = i % hd, p = k0 + j;
			float kv = 0, vv = 0;
			if (p <= last) {
				size_t slot = (size_t)table[p / block_size] * block_size + p % block_size;
				size_t off = slot * kv_dim + (size_t)it.kv_head * hd + d;
				kv = ld(kp, off, kt);
				vv = ld(vp, off, kt);
			}
			ks[j * (hd + 1) + d] = kv;
			vs[j * hd + d] = vv;
		}
		__syncthreads();
		if (warp >= rows)
			continue;
		/* lane j scores key k0 + j for this warp's row */
		int p = k0 + lane;
		float s = -INFINITY;
		if (p >= my_lo && p <= my_pos) {
			const float *qr = qs + (size_t)warp * hd, *kr = ks + lane * (hd + 1);
			s = 0;
			for (int d = 0; d < hd; d++)
				s += qr[d] * kr[d];
		}
		float mt = s;
		for (int o = 16; o; o >>= 1)
			mt = fmaxf(mt, __shfl_xor_sync(0xffffffff, mt, o));
		float m_new = fmaxf(m, mt);
		if (m_new == -INFINITY)		/* no key of this row in the tile yet */
			continue;
		float alpha = __expf(m - m_new), e = __expf(s - m_new), sum = e;
		for (int o = 16; o; o >>= 1)
			sum += __shfl_xor_sync(0xffffffff, sum, o);
		l = l * alpha + sum;
		m = m_new;
#pragma unroll
		for (int i = 0; i < MAX_HD / 32; i++) {
			if (i * 32 >= hd)
				break;
			int d = i * 32 + lane;	/* lanes past a small head_dim idle */
			float a = acc[i] * alpha;
			for (int j = 0; j < TILE; j++)
				a += __shfl_sync(0xffffffff, e, j) * (d < hd ? vs[j * hd + d] : 0);
			acc[i] = a;
		}
	}
	if (warp >= rows)
		return;
	int h = it.kv_head * group + warp % group;
	float *o = out + ((size_t)my_t * n_heads + h) * hd;
#pragma unroll
	for (int i = 0; i < MAX_HD / 32; i++)
		if (i * 32 + lane < hd)
			o[i * 32 + lane] = l > 0 ? acc[i] / l : 0;
}

/* The copy kernel the GPU bench measures the memory bandwidth with. */
extern "C" __global__ void copy_f4(float4 *dst, const float4 *src, size_t n)
{
	GRID_STRIDE(i, n)
		dst[i] = src[i];
}
