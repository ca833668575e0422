/*
 * rmsnorm.cu - the CUDA side of rmsnorm.  Forward and the dinp part of
 * backward: one block per row, sums by warp shuffles.  dw: one thread per
 * (column, row lane) in 32x32 blocks over 32-column tiles, each summing a
 * fixed subset of rows, then a fixed-order sum over the lanes, so the result
 * does not depend on timing (no atomics).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "rmsnorm.h"
#include "gpt2_ops_util.cuh"

static __global__ void rmsnorm_fwd_kernel(float *out, float *rstd, const float *inp, const float *w,
                                          int N, int C, float eps)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float *x = inp + (size_t)row * C;
		float *o = out + (size_t)row * C;
		float s = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			s += x[c] * x[c];
		float r = rsqrtf(block_sum(s, shared) / (float)C + eps);
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			o[c] = w[c] * (x[c] * r);
		if (threadIdx.x == 0)
			rstd[row] = r;
	}
}

static __global__ void rmsnorm_bwd_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                               const float *w, const float *rstd, int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
		float *di = dinp + (size_t)row * C;
		float r = rstd[row], sgn = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			sgn += w[c] * d[c] * (x[c] * r);
		float gn_mean = block_sum(sgn, shared) / (float)C;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			di[c] += r * (w[c] * d[c] - x[c] * r * gn_mean);
	}
}

#define TILE 32
static __global__ void rmsnorm_bwd_dw_kernel(float *dw, const float *dout, const float *inp,
                                             const float *rstd, int N, int C)
{
	__shared__ float sdw[TILE][TILE + 1];
	int c = blockIdx.x * TILE + threadIdx.x;
	float pw = 0.0f;
	if (c < C)
		for (int row = threadIdx.y; row < N; row += TILE)
			pw += inp[(size_t)row * C + c] * rstd[row] * dout[(size_t)row * C + c];
	sdw[threadIdx.y][threadIdx.x] = pw;
	__syncthreads();
	if (threadIdx.y == 0 && c < C) {
		float sw = 0.0f;
		for (int l = 0; l < TILE; l++)
			sw += sdw[l][threadIdx.x];
		dw[c] += sw;
	}
}

static int row_grid(int N)
{
	return N < 65535 ? N : 65535;
}

/* buffers: inp (N, C), w (1, C), out (N, C), rstd (1, N). */
extern "C" void rmsnorm_forward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_rmsnorm_args *a = (const struct lspo_rmsnorm_args *)cl_arg;
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	rmsnorm_fwd_kernel<<<row_grid(N), row_threads(C, 512), 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[0]),
		lspo_mat_ptr(buffers[1]), N, C, a->eps);
	lspo_cuda_check_launch();
}

/* buffers: dout, inp (N, C), w (1, C), rstd (1, N), dinp (N, C), dw (1, C). */
extern "C" void rmsnorm_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	const float *dout = lspo_mat_ptr(buffers[0]), *inp = lspo_mat_ptr(buffers[1]);
	const float *w = lspo_mat_ptr(buffers[2]), *rstd = lspo_mat_ptr(buffers[3]);
	rmsnorm_bwd_dinp_kernel<<<row_grid(N), row_threads(C, 512), 0, stream>>>(
		lspo_mat_ptr(buffers[4]), dout, inp, w, rstd, N, C);
	lspo_cuda_check_launch();
	rmsnorm_bwd_dw_kernel<<<(C + TILE - 1) / TILE, dim3(TILE, TILE), 0, stream>>>(
		lspo_mat_ptr(buffers[5]), dout, inp, rstd, N, C);
	lspo_cuda_check_launch();
}
#endif
