/*
 * attention.cu - the CUDA side of attention: flash-attention style kernels,
 * written for clarity.  One thread owns one row (a query in the forward and
 * dQ kernels, a key in the dK/dV kernel); the rows of a block and the tile of
 * the other side are staged in shared memory.
 *
 *   forward:  block (query tile, b*NH + h); online softmax over key tiles,
 *             writes out and lse.
 *   backward: D[t] = dO[t] . O[t] is recomputed where needed, and
 *             dQ kernel:    block (query tile, b*NH + h), loops over key tiles;
 *             dK/dV kernel: block (key tile, b*NH + h), loops over query tiles.
 *             Each output element is written by exactly one thread, in a
 *             fixed order: no atomics, deterministic.
 *
 * Shared-memory rows that a thread walks alone use an odd stride (hs | 1) so
 * the 32 threads of a warp hit 32 different banks; rows that every thread
 * reads at the same index (a broadcast) are packed with stride hs.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <math.h>

#include "attention.h"

#define ATT_TILE 32   /* rows per block = threads per block = rows per staged tile */

/* Copies rows [r0, r0 + ATT_TILE) x [0, hs) of src (row stride ld) into
 * dst (row stride ldd), zero past row n; all threads of the block take part. */
__device__ static void load_tile(float *dst, int ldd, const float *src, size_t ld, int r0, int n, int hs)
{
	for (int e = threadIdx.x; e < ATT_TILE * hs; e += blockDim.x) {
		int r = e / hs, d = e % hs;
		dst[r * ldd + d] = r0 + r < n ? src[(size_t)(r0 + r) * ld + d] : 0.0f;
	}
}

/* The reverse: rows < n of src to dst. */
__device__ static void store_tile(float *dst, size_t ld, const float *src, int lds, int r0, int n, int hs)
{
	for (int e = threadIdx.x; e < ATT_TILE * hs; e += blockDim.x) {
		int r = e / hs, d = e % hs;
		if (r0 + r < n)
			dst[(size_t)(r0 + r) * ld + d] = src[r * lds + d];
	}
}

__global__ static void attention_fwd_kernel(float *out, float *lse, const float *qkv,
                                            int T, int C, int NH, float scale)
{
	extern __shared__ float sm[];
	int hs = C / NH, ldq = hs | 1;
	float *Qs = sm, *Acc = Qs + ATT_TILE * ldq, *Ks = Acc + ATT_TILE * ldq, *Vs = Ks + ATT_TILE * hs;
	int b = blockIdx.y / NH, h = blockIdx.y % NH;
	int q0 = blockIdx.x * ATT_TILE, i = threadIdx.x, t = q0 + i;
	size_t ld = 3 * (size_t)C;
	const float *Q = qkv + (size_t)b * T * ld + h * hs, *K = Q + C, *V = Q + 2 * C;

	load_tile(Qs, ldq, Q, ld, q0, T, hs);
	for (int d = 0; d < hs; d++)
		Acc[i * ldq + d] = 0.0f;
	float m = -INFINITY, l = 0.0f;
	int last = min(T, q0 + ATT_TILE) - 1;   /* the last query of the tile sees keys 0..last */
	for (int k0 = 0; k0 <= last; k0 += ATT_TILE) {
		__syncthreads();
		load_tile(Ks, hs, K, ld, k0, T, hs);
		load_tile(Vs, hs, V, ld, k0, T, hs);
		__syncthreads();
		int nk = t < T ? min(ATT_TILE, t - k0 + 1) : 0;  /* causal keys of this tile */
		if (nk <= 0)
			continue;
		float s[ATT_TILE], tmax = m;
#pragma unroll
		for (int j = 0; j < ATT_TILE; j++) {
			if (j < nk) {
				float dot = 0.0f;
				for (int d = 0; d < hs; d++)
					dot += Qs[i * ldq + d] * Ks[j * hs + d];
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
		for (int d = 0; d < hs; d++) {
			float a = Acc[i * ldq + d] * corr;
#pragma unroll
			for (int j = 0; j < ATT_TILE; j++)
				if (j < nk)
					a += s[j] * Vs[j * hs + d];
			Acc[i * ldq + d] = a;
		}
		m = tmax;
	}
	if (t < T) {
		float inv = 1.0f / l;
		for (int d = 0; d < hs; d++)
			Acc[i * ldq + d] *= inv;
		lse[((size_t)b * NH + h) * T + t] = m + logf(l);
	}
	__syncthreads();
	store_tile(out + (size_t)b * T * C + h * hs, C, Acc, ldq, q0, T, hs);
}

/* dQ[t] = scale * sum_{t2 <= t} P[t, t2] (dP[t, t2] - D[t]) K[t2]. */
__global__ static void attention_dq_kernel(float *dqkv, const float *dout, const float *qkv,
                                           const float *out, const float *lse,
                                           int T, int C, int NH, float scale)
{
	extern __shared__ float sm[];
	int hs = C / NH, ldq = hs | 1;
	float *Qs = sm, *dOs = Qs + ATT_TILE * ldq, *dQs = dOs + ATT_TILE * ldq;
	float *Ks = dQs + ATT_TILE * ldq, *Vs = Ks + ATT_TILE * hs;
	int b = blockIdx.y / NH, h = blockIdx.y % NH;
	int q0 = blockIdx.x * ATT_TILE, i = threadIdx.x, t = q0 + i;
	size_t ld = 3 * (size_t)C;
	const float *Q = qkv + (size_t)b * T * ld + h * hs, *K = Q + C, *V = Q + 2 * C;
	const float *dO = dout + (size_t)b * T * C + h * hs, *O = out + (size_t)b * T * C + h * hs;

	load_tile(Qs, ldq, Q, ld, q0, T, hs);
	load_tile(dOs, ldq, dO, C, q0, T, hs);
	__syncthreads();
	float L = 0.0f, D = 0.0f;
	if (t < T) {
		L = lse[((size_t)b * NH + h) * T + t];
		for (int d = 0; d < hs; d++)
			D += dOs[i * ldq + d] * O[(size_t)t * C + d];
	}
	for (int d = 0; d < hs; d++)
		dQs[i * ldq + d] = 0.0f;
	int last = min(T, q0 + ATT_TILE) - 1;
	for (int k0 = 0; k0 <= last; k0 += ATT_TILE) {
		__syncthreads();
		load_tile(Ks, hs, K, ld, k0, T, hs);
		load_tile(Vs, hs, V, ld, k0, T, hs);
		__syncthreads();
		int nk = t < T ? min(ATT_TILE, t - k0 + 1) : 0;
		for (int j = 0; j < nk; j++) {
			float qk = 0.0f, dp = 0.0f;
			for (int d = 0; d < hs; d++) {
				qk += Qs[i * ldq + d] * Ks[j * hs + d];
				dp += dOs[i * ldq + d] * Vs[j * hs + d];
			}
			float ds = expf(qk * scale - L) * (dp - D) * scale;
			for (int d = 0; d < hs; d++)
				dQs[i * ldq + d] += ds * Ks[j * hs + d];
		}
	}
	__syncthreads();
	store_tile(dqkv + (size_t)b * T * ld + h * hs, ld, dQs, ldq, q0, T, hs);
}

/* dV[t2] = sum_{t >= t2} P[t, t2] dO[t];  dK[t2] = scale * sum_{t >= t2} dS'[t, t2] Q[t]. */
__global__ static void attention_dkv_kernel(float *dqkv, const float *dout, const float *qkv,
                                            const float *out, const float *lse,
                                            int T, int C, int NH, float scale)
{
	extern __shared__ float sm[];
	int hs = C / NH, ldq = hs | 1;
	float *Ks = sm, *Vs = Ks + ATT_TILE * ldq, *dKs = Vs + ATT_TILE * ldq, *dVs = dKs + ATT_TILE * ldq;
	float *Qs = dVs + ATT_TILE * ldq, *dOs = Qs + ATT_TILE * hs;
	float *Ls = dOs + ATT_TILE * hs, *Ds = Ls + ATT_TILE;
	int b = blockIdx.y / NH, h = blockIdx.y % NH;
	int k0 = blockIdx.x * ATT_TILE, j = threadIdx.x, tk = k0 + j;
	size_t ld = 3 * (size_t)C;
	const float *Q = qkv + (size_t)b * T * ld + h * hs, *K = Q + C, *V = Q + 2 * C;
	const float *dO = dout + (size_t)b * T * C + h * hs, *O = out + (size_t)b * T * C + h * hs;
	const float *lse_bh = lse + ((size_t)b * NH + h) * T;

	load_tile(Ks, ldq, K, ld, k0, T, hs);
	load_tile(Vs, ldq, V, ld, k0, T, hs);
	for (int d = 0; d < hs; d++) {
		dKs[j * ldq + d] = 0.0f;
		dVs[j * ldq + d] = 0.0f;
	}
	for (int q0 = k0; q0 < T; q0 += ATT_TILE) {   /* queries t >= k0 only */
		__syncthreads();
		load_tile(Qs, hs, Q, ld, q0, T, hs);
		load_tile(dOs, hs, dO, C, q0, T, hs);
		__syncthreads();
		if (q0 + j < T) {   /* thread j prepares query q0 + j */
			float D = 0.0f;
			for (int d = 0; d < hs; d++)
				D += dOs[j * hs + d] * O[(size_t)(q0 + j) * C + d];
			Ds[j] = D;
			Ls[j] = lse_bh[q0 + j];
		}
		__syncthreads();
		if (tk >= T)
			continue;
		int r0 = max(0, tk - q0), nq = min(ATT_TILE, T - q0);  /* causal: t >= tk */
		for (int r = r0; r < nq; r++) {
			float qk = 0.0f, dp = 0.0f;
			for (int d = 0; d < hs; d++) {
				qk += Qs[r * hs + d] * Ks[j * ldq + d];
				dp += dOs[r * hs + d] * Vs[j * ldq + d];
			}
			float p = expf(qk * scale - Ls[r]);
			float ds = p * (dp - Ds[r]) * scale;
			for (int d = 0; d < hs; d++) {
				dVs[j * ldq + d] += p * dOs[r * hs + d];
				dKs[j * ldq + d] += ds * Qs[r * hs + d];
			}
		}
	}
	__syncthreads();
	store_tile(dqkv + (size_t)b * T * ld + C + h * hs, ld, dKs, ldq, k0, T, hs);
	store_tile(dqkv + (size_t)b * T * ld + 2 * C + h * hs, ld, dVs, ldq, k0, T, hs);
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

static void check_launch(void)
{
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(e);
}

extern "C" void attention_forward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_attention_args *a = (const struct lspo_attention_args *)cl_arg;
	void *qkv = buffers[0], *out = buffers[1], *lse = buffers[2];
	int C = lspo_mat_cols(out), T = lspo_mat_rows(out) / a->B, hs = C / a->NH, ldq = hs | 1;
	if (T == 0)
		return;
	size_t smem = sizeof(float) * (2 * ATT_TILE * ldq + 2 * ATT_TILE * hs);
	allow_smem(attention_fwd_kernel, smem);
	dim3 grid((T + ATT_TILE - 1) / ATT_TILE, a->B * a->NH);
	attention_fwd_kernel<<<grid, ATT_TILE, smem, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(out), lspo_mat_ptr(lse), lspo_mat_ptr(qkv), T, C, a->NH, 1.0f / sqrtf((float)hs));
	check_launch();
}

extern "C" void attention_backward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_attention_args *a = (const struct lspo_attention_args *)cl_arg;
	void *dout = buffers[0], *qkv = buffers[1], *out = buffers[2], *lse = buffers[3];
	void *dqkv = buffers[4];
	int C = lspo_mat_cols(out), T = lspo_mat_rows(out) / a->B, hs = C / a->NH, ldq = hs | 1;
	if (T == 0)
		return;
	float scale = 1.0f / sqrtf((float)hs);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	dim3 grid((T + ATT_TILE - 1) / ATT_TILE, a->B * a->NH);

	size_t smem_q = sizeof(float) * (3 * ATT_TILE * ldq + 2 * ATT_TILE * hs);
	allow_smem(attention_dq_kernel, smem_q);
	attention_dq_kernel<<<grid, ATT_TILE, smem_q, stream>>>(
		lspo_mat_ptr(dqkv), lspo_mat_ptr(dout), lspo_mat_ptr(qkv), lspo_mat_ptr(out),
		lspo_mat_ptr(lse), T, C, a->NH, scale);
	check_launch();

	size_t smem_kv = sizeof(float) * (4 * ATT_TILE * ldq + 2 * ATT_TILE * hs + 2 * ATT_TILE);
	allow_smem(attention_dkv_kernel, smem_kv);
	attention_dkv_kernel<<<grid, ATT_TILE, smem_kv, stream>>>(
		lspo_mat_ptr(dqkv), lspo_mat_ptr(dout), lspo_mat_ptr(qkv), lspo_mat_ptr(out),
		lspo_mat_ptr(lse), T, C, a->NH, scale);
	check_launch();
}
#endif
