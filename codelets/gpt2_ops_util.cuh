/*
 * gpt2_ops_util.cuh - device helpers shared by the GPT-2 op kernels (encoder,
 * layernorm, gelu, residual, xent):
 * warp and block reductions by shuffles, launch sizes and the launch-error
 * check.
 * Included by .cu files only, inside their #ifdef STARPU_USE_CUDA.
 */
#ifndef LSPO_GPT2_OPS_UTIL_CUH
#define LSPO_GPT2_OPS_UTIL_CUH

#include <starpu.h>

static __device__ __forceinline__ float warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

/* Sum over the block (blockDim.x a multiple of 32, at most 1024), returned to
 * every thread; `shared` holds 32 floats and may be reused by the next call. */
static __device__ __forceinline__ float block_sum(float v, float *shared)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
	v = warp_sum(v);
	__syncthreads();  /* the previous call's readers are done with `shared` */
	if (lane == 0)
		shared[warp] = v;
	__syncthreads();
	return warp_sum(lane < nwarps ? shared[lane] : 0.0f);
}

static __device__ __forceinline__ float block_max(float v, float *shared)
{
	int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
	v = warp_max(v);
	__syncthreads();
	if (lane == 0)
		shared[warp] = v;
	__syncthreads();
	return warp_max(lane < nwarps ? shared[lane] : -INFINITY);
}

/* Threads per row-block: a multiple of 32, about one per 4 elements, 32..max. */
static inline int row_threads(int n, int max)
{
	int t = ((n + 3) / 4 + 31) / 32 * 32;
	return t < 32 ? 32 : (t > max ? max : t);
}

/* Blocks for a grid-stride loop over n elements: enough to fill the GPU
 * (the loop covers the rest), at least one. */
static inline unsigned elementwise_blocks(size_t n, int threads)
{
	size_t b = (n + threads - 1) / threads;
	return b < 1 ? 1u : (b > 8192 ? 8192u : (unsigned)b);
}

static inline void lspo_cuda_check_launch(void)
{
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(e);
}

#endif
