/*
 * layernorm.cu - the CUDA side of layernorm.  Forward and the dinp part of
 * backward: one block per row, sums by warp shuffles.  dw and db: one thread
 * per (column, row lane) in 32x32 blocks over 32-column tiles, each summing a
 * fixed subset of rows, then a fixed-order sum over the lanes, so the result
 * does not depend on timing (no atomics).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "layernorm.h"
#include "gpt2_ops_util.cuh"

static __global__ void layernorm_fwd_kernel(float *out, float *mean, float *rstd, const float *inp,
                                            const float *w, const float *b, int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float *x = inp + (size_t)row * C;
		float *o = out + (size_t)row * C;
		float s = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			s += x[c];
		float m = block_sum(s, shared) / (float)C;
		float v = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float d = x[c] - m;
			v += d * d;
		}
		float r = rsqrtf(block_sum(v, shared) / (float)C + LSPO_LAYERNORM_EPS);
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			o[c] = (x[c] - m) * r * w[c] + b[c];
		if (threadIdx.x == 0) {
			mean[row] = m;
			rstd[row] = r;
		}
	}
}

static __global__ void layernorm_bwd_dinp_kernel(float *dinp, const float *dout, const float *inp,
                                                 const float *w, const float *mean, const float *rstd,
                                                 int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
		float *di = dinp + (size_t)row * C;
		float m = mean[row], r = rstd[row], sg = 0.0f, sgn = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float g = w[c] * d[c];
			sg += g;
			sgn += g * (x[c] - m) * r;
		}
		float g_mean = block_sum(sg, shared) / (float)C;
		float gn_mean = block_sum(sgn, shared) / (float)C;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			di[c] += r * (w[c] * d[c] - g_mean - (x[c] - m) * r * gn_mean);
	}
}

#define TILE 32
static __global__ void layernorm_bwd_dwdb_kernel(float *dw, float *db, const float *dout,
                                                 const float *inp, const float *mean,
                                                 const float *rstd, int N, int C)
{
	__shared__ float sdw[TILE][TILE + 1], sdb[TILE][TILE + 1];
	int c = blockIdx.x * TILE + threadIdx.x;
	float pw = 0.0f, pb = 0.0f;
	if (c < C)
		for (int row = threadIdx.y; row < N; row += TILE) {
			float d = dout[(size_t)row * C + c];
			pb += d;
			pw += (inp[(size_t)row * C + c] - mean[row]) * rstd[row] * d;
		}
	sdw[threadIdx.y][threadIdx.x] = pw;
	sdb[threadIdx.y][threadIdx.x] = pb;
	__syncthreads();
	if (threadIdx.y == 0 && c < C) {
		float sw = 0.0f, sb = 0.0f;
		for (int l = 0; l < TILE; l++) {
			sw += sdw[l][threadIdx.x];
			sb += sdb[l][threadIdx.x];
		}
		dw[c] += sw;
		db[c] += sb;
	}
}

static int row_grid(int N)
{
	return N < 65535 ? N : 65535;
}

/* buffers: inp (N, C), w (1, C), b (1, C), out (N, C), mean (1, N), rstd (1, N). */
extern "C" void layernorm_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	layernorm_fwd_kernel<<<row_grid(N), row_threads(C, 512), 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[5]),
		lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), N, C);
	lspo_cuda_check_launch();
}

/* buffers: dout, inp (N, C), w (1, C), mean, rstd (1, N), dinp (N, C), dw, db (1, C). */
extern "C" void layernorm_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	const float *dout = lspo_mat_ptr(buffers[0]), *inp = lspo_mat_ptr(buffers[1]);
	const float *w = lspo_mat_ptr(buffers[2]), *mean = lspo_mat_ptr(buffers[3]);
	const float *rstd = lspo_mat_ptr(buffers[4]);
	layernorm_bwd_dinp_kernel<<<row_grid(N), row_threads(C, 512), 0, stream>>>(
		lspo_mat_ptr(buffers[5]), dout, inp, w, mean, rstd, N, C);
	lspo_cuda_check_launch();
	layernorm_bwd_dwdb_kernel<<<(C + TILE - 1) / TILE, dim3(TILE, TILE), 0, stream>>>(
		lspo_mat_ptr(buffers[6]), lspo_mat_ptr(buffers[7]), dout, inp, mean, rstd, N, C);
	lspo_cuda_check_launch();
}
#endif
