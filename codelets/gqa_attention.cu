/*
 * gqa_attention.cu - the CUDA side of gqa_attention: flash-attention style
 * kernels written for clarity, as attention.cu, with separate q, k, v
 * matrices and grouped K/V heads.  One thread owns one row (a query in the
 * forward and dQ kernels, a key in the dK/dV kernel); the rows of a block
 * and the tile of the other side are staged in shared memory.
 *
 *   forward:  block (query tile, b*nh + h); online softmax over key tiles of
 *             K/V head h / (nh / nkv), writes out and lse.
 *   backward: D[t] = dO[t] . O[t] is recomputed where needed, and
 *             dQ kernel:    block (query tile, b*nh + h), loops over key tiles;
 *             dK/dV kernel: block (key tile, b*nkv + g), loops over the
 *                           query heads of group g, then over query tiles.
 *             Each output element is written by exactly one thread, in a
 *             fixed order: no atomics, deterministic.
 *
 * Shared-memory rows that a thread walks alone use an odd stride (hd | 1) so
 * the 32 threads of a warp hit 32 different banks; rows that every thread
 * reads at the same index (a broadcast) are packed with stride hd.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <math.h>

#include "gqa_attention.h"
#include "gpt2_ops_util.cuh"

#define ATT_TILE 32   /* rows per block = threads per block = rows per staged tile */

/* Copies rows [r0, r0 + ATT_TILE) x [0, hd) of src (row stride ld) into
 * dst (row stride ldd), zero past row n; all threads of the block take part. */
__device__ static void load_tile(float *dst, int ldd, const float *src, size_t ld, int r0, int n, int hd)
{
	for (int e = threadIdx.x; e < ATT_TILE * hd; e += blockDim.x) {
		int r = e / hd, d = e % hd;
		dst[r * ldd + d] = r0 + r < n ? src[(size_t)(r0 + r) * ld + d] : 0.0f;
	}
}

/* The reverse: rows < n of src to dst. */
__device__ static void store_tile(float *dst, size_t ld, const float *src, int lds, int r0, int n, int hd)
{
	for (int e = threadIdx.x; e < ATT_TILE * hd; e += blockDim.x) {
		int r = e / hd, d = e % hd;
		if (r0 + r < n)
			dst[(size_t)(r0 + r) * ld + d] = src[r * lds + d];
	}
}

__global__ static void gqa_fwd_kernel(float *out, float *lse, const float *q, const float *k,
                                      const float *v, int T, int nh, int nkv, int hd, float scale)
{
	extern __shared__ float sm[];
	int ldt = hd | 1;
	float *Qs = sm, *Acc = Qs + ATT_TILE * ldt, *Ks = Acc + ATT_TILE * ldt, *Vs = Ks + ATT_TILE * hd;
	int b = blockIdx.y / nh, h = blockIdx.y % nh, g = h / (nh / nkv);
	int q0 = blockIdx.x * ATT_TILE, i = threadIdx.x, t = q0 + i;
	size_t ldq = (size_t)nh * hd, ldk = (size_t)nkv * hd;
	const float *Q = q + (size_t)b * T * ldq + (size_t)h * hd;
	const float *K = k + (size_t)b * T * ldk + (size_t)g * hd, *V = v + (size_t)b * T * ldk + (size_t)g * hd;

	load_tile(Qs, ldt, Q, ldq, q0, T, hd);
	for (int d = 0; d < hd; d++)
		Acc[i * ldt + d] = 0.0f;
	float m = -INFINITY, l = 0.0f;
	int last = min(T, q0 + ATT_TILE) - 1;   /* the last query of the tile sees keys 0..last */
	for (int k0 = 0; k0 <= last; k0 += ATT_TILE) {
		__syncthreads();
		load_tile(Ks, hd, K, ldk, k0, T, hd);
		load_tile(Vs, hd, V, ldk, k0, T, hd);
		__syncthreads();
		int nk = t < T ? min(ATT_TILE, t - k0 + 1) : 0;  /* causal keys of this tile */
		if (nk <= 0)
			continue;
		float s[ATT_TILE], tmax = m;
#pragma unroll
		for (int j = 0; j < ATT_TILE; j++) {
			if (j < nk) {
				float dot = 0.0f;
				for (int d = 0; d < hd; d++)
					dot += Qs[i * ldt + d] * Ks[j * hd + d];
				s[j] = dot * scale;
				tmax = fmaxf(tmax, s[j]);
			}
		}
		float corr = expf(m - tmax);   /* 0 on the first tile (m = -inf) */
		l *= corr;
#pragma unroll
		for (int j = 0; j < ATT_TILE; j++) {
			if (j < nk) {
				s[j] = expf(s[j] - tmax);
				l += s[j];
			}
		}
		for (int d = 0; d < hd; d++) {
			float a = Acc[i * ldt + d] * corr;
#pragma unroll
			for (int j = 0; j < ATT_TILE; j++)
				if (j < nk)
					a += s[j] * Vs[j * hd + d];
			Acc[i * ldt + d] = a;
		}
		m = tmax;
	}
	if (t < T) {
		float inv = 1.0f / l;
		for (int d = 0; d < hd; d++)
			Acc[i * ldt + d] *= inv;
		lse[((size_t)b * nh + h) * T + t] = m + logf(l);
	}
	__syncthreads();
	store_tile(out + (size_t)b * T * ldq + (size_t)h * hd, ldq, Acc, ldt, q0, T, hd);
}

/* dQ[t] = scale * sum_{t2 <= t} P[t, t2] (dP[t, t2] - D[t]) K[t2]. */
__global__ static void gqa_dq_kernel(float *dq, const float *dout, const float *q, const float *k,
                                     const float *v, const float *out, const float *lse,
                                     int T, int nh, int nkv, int hd, float scale)
{
	extern __shared__ float sm[];
	int ldt = hd | 1;
	float *Qs = sm, *dOs = Qs + ATT_TILE * ldt, *dQs = dOs + ATT_TILE * ldt;
	float *Ks = dQs + ATT_TILE * ldt, *Vs = Ks + ATT_TILE * hd;
	int b = blockIdx.y / nh, h = blockIdx.y % nh, g = h / (nh / nkv);
	int q0 = blockIdx.x * ATT_TILE, i = threadIdx.x, t = q0 + i;
	size_t ldq = (size_t)nh * hd, ldk = (size_t)nkv * hd;
	size_t qoff = (size_t)b * T * ldq + (size_t)h * hd, koff = (size_t)b * T * ldk + (size_t)g * hd;
	const float *Q = q + qoff, *dO = dout + qoff, *O = out + qoff, *K = k + koff, *V = v + koff;

	load_tile(Qs, ldt, Q, ldq, q0, T, hd);
	load_tile(dOs, ldt, dO, ldq, q0, T, hd);
	__syncthreads();
	float L = 0.0f, D = 0.0f;
	if (t < T) {
		L = lse[((size_t)b * nh + h) * T + t];
		for (int d = 0; d < hd; d++)
			D += dOs[i * ldt + d] * O[(size_t)t * ldq + d];
	}
	for (int d = 0; d < hd; d++)
		dQs[i * ldt + d] = 0.0f;
	int last = min(T, q0 + ATT_TILE) - 1;
	for (int k0 = 0; k0 <= last; k0 += ATT_TILE) {
		__syncthreads();
		load_tile(Ks, hd, K, ldk, k0, T, hd);
		load_tile(Vs, hd, V, ldk, k0, T, hd);
		__syncthreads();
		int nk = t < T ? min(ATT_TILE, t - k0 + 1) : 0;
		for (int j = 0; j < nk; j++) {
			float qk = 0.0f, dp = 0.0f;
			for (int d = 0; d < hd; d++) {
				qk += Qs[i * ldt + d] * Ks[j * hd + d];
				dp += dOs[i * ldt + d] * Vs[j * hd + d];
			}
			float ds = expf(qk * scale - L) * (dp - D) * scale;
			for (int d = 0; d < hd; d++)
				dQs[i * ldt + d] += ds * Ks[j * hd + d];
		}
	}
	__syncthreads();
	store_tile(dq + qoff, ldq, dQs, ldt, q0, T, hd);
}

/* Over the query heads h of group g and t >= t2:
 *   dV[t2] = sum P[t, t2] dO[t];  dK[t2] = scale * sum P[t, t2] (dP[t, t2] - D[t]) Q[t]. */
__global__ static void gqa_dkv_kernel(float *dk, float *dv, const float *dout, const float *q,
                                      const float *k, const float *v, const float *out, const float *lse,
                                      int T, int nh, int nkv, int hd, float scale)
{
	extern __shared__ float sm[];
	int ldt = hd | 1;
	float *Ks = sm, *Vs = Ks + ATT_TILE * ldt, *dKs = Vs + ATT_TILE * ldt, *dVs = dKs + ATT_TILE * ldt;
	float *Qs = dVs + ATT_TILE * ldt, *dOs = Qs + ATT_TILE * hd;
	float *Ls = dOs + ATT_TILE * hd, *Ds = Ls + ATT_TILE;
	int rep = nh / nkv, b = blockIdx.y / nkv, g = blockIdx.y % nkv;
	int k0 = blockIdx.x * ATT_TILE, j = threadIdx.x, tk = k0 + j;
	size_t ldq = (size_t)nh * hd, ldk = (size_t)nkv * hd;
	size_t koff = (size_t)b * T * ldk + (size_t)g * hd;

	load_tile(Ks, ldt, k + koff, ldk, k0, T, hd);
	load_tile(Vs, ldt, v + koff, ldk, k0, T, hd);
	for (int d = 0; d < hd; d++) {
		dKs[j * ldt + d] = 0.0f;
		dVs[j * ldt + d] = 0.0f;
	}
	for (int h = g * rep; h < (g + 1) * rep; h++) {
		size_t qoff = (size_t)b * T * ldq + (size_t)h * hd;
		const float *Q = q + qoff, *dO = dout + qoff, *O = out + qoff;
		const float *lse_bh = lse + ((size_t)b * nh + h) * T;
		for (int q0 = k0; q0 < T; q0 += ATT_TILE) {   /* queries t >= k0 only */
			__syncthreads();
			load_tile(Qs, hd, Q, ldq, q0, T, hd);
			load_tile(dOs, hd, dO, ldq, q0, T, hd);
			__syncthreads();
			if (q0 + j < T) {   /* thread j prepares query q0 + j */
				float D = 0.0f;
				for (int d = 0; d < hd; d++)
					D += dOs[j * hd + d] * O[(size_t)(q0 + j) * ldq + d];
				Ds[j] = D;
				Ls[j] = lse_bh[q0 + j];
			}
			__syncthreads();
			if (tk >= T)
				continue;
			int r0 = max(0, tk - q0), nq = min(ATT_TILE, T - q0);  /* causal: t >= tk */
			for (int r = r0; r < nq; r++) {
				float qk = 0.0f, dp = 0.0f;
				for (int d = 0; d < hd; d++) {
					qk += Qs[r * hd + d] * Ks[j * ldt + d];
					dp += dOs[r * hd + d] * Vs[j * ldt + d];
				}
				float p = expf(qk * scale - Ls[r]);
				float ds = p * (dp - Ds[r]) * scale;
				for (int d = 0; d < hd; d++) {
					dVs[j * ldt + d] += p * dOs[r * hd + d];
					dKs[j * ldt + d] += ds * Qs[r * hd + d];
				}
			}
		}
	}
	__syncthreads();
	store_tile(dk + koff, ldk, dKs, ldt, k0, T, hd);
	store_tile(dv + koff, ldk, dVs, ldt, k0, T, hd);
}

/* Dynamic shared memory above the default 48 KiB needs an opt-in per kernel. */
template <typename K>
static void allow_smem(K kernel, size_t bytes)
{
	if (bytes > 48 * 1024) {
		cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
		if (e != cudaSuccess)
			STARPU_CUDA_REPORT_ERROR(e);
	}
}

/* buffers: q, k, v, out, lse. */
extern "C" void gqa_attention_forward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_gqa_attention_args *a = (const struct lspo_gqa_attention_args *)cl_arg;
	int T = lspo_mat_rows(buffers[0]) / a->B, hd = a->head_dim, ldt = hd | 1;
	if (T == 0)
		return;
	size_t smem = sizeof(float) * (2 * ATT_TILE * ldt + 2 * ATT_TILE * hd);
	allow_smem(gqa_fwd_kernel, smem);
	dim3 grid((T + ATT_TILE - 1) / ATT_TILE, a->B * a->n_head);
	gqa_fwd_kernel<<<grid, ATT_TILE, smem, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[0]),
		lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), T, a->n_head, a->n_kv_head, hd,
		1.0f / sqrtf((float)hd));
	lspo_cuda_check_launch();
}

/* buffers: dout, q, k, v, out, lse, dq, dk, dv. */
extern "C" void gqa_attention_backward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_gqa_attention_args *a = (const struct lspo_gqa_attention_args *)cl_arg;
	int T = lspo_mat_rows(buffers[1]) / a->B, hd = a->head_dim, ldt = hd | 1;
	if (T == 0)
		return;
	float scale = 1.0f / sqrtf((float)hd);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	const float *dout = lspo_mat_ptr(buffers[0]), *q = lspo_mat_ptr(buffers[1]);
	const float *k = lspo_mat_ptr(buffers[2]), *v = lspo_mat_ptr(buffers[3]);
	const float *out = lspo_mat_ptr(buffers[4]), *lse = lspo_mat_ptr(buffers[5]);
	int ntiles = (T + ATT_TILE - 1) / ATT_TILE;

	size_t smem_q = sizeof(float) * (3 * ATT_TILE * ldt + 2 * ATT_TILE * hd);
	allow_smem(gqa_dq_kernel, smem_q);
	gqa_dq_kernel<<<dim3(ntiles, a->B * a->n_head), ATT_TILE, smem_q, stream>>>(
		lspo_mat_ptr(buffers[6]), dout, q, k, v, out, lse, T, a->n_head, a->n_kv_head, hd, scale);
	lspo_cuda_check_launch();

	size_t smem_kv = sizeof(float) * (4 * ATT_TILE * ldt + 2 * ATT_TILE * hd + 2 * ATT_TILE);
	allow_smem(gqa_dkv_kernel, smem_kv);
	gqa_dkv_kernel<<<dim3(ntiles, a->B * a->n_kv_head), ATT_TILE, smem_kv, stream>>>(
		lspo_mat_ptr(buffers[7]), lspo_mat_ptr(buffers[8]), dout, q, k, v, out, lse, T, a->n_head,
		a->n_kv_head, hd, scale);
	lspo_cuda_check_launch();
}
#endif
