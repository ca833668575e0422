/*
 * rmsnorm.cu - the CUDA side of rmsnorm.  Forward and the dinp part of
 * backward: one block per row, sums by warp shuffles.  dw: one thread per
 * (column, row lane) in 32x32 blocks over 32-column tiles, each summing a
 * fixed subset of rows, then a fixed-order sum over the lanes, so the result
 * does not depend on timing (no atomics).  Activations and weights float32
 * or bf16 (bf16.cuh), rstd and the weight gradient float32.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "rmsnorm.h"
#include "gpt2_ops_util.cuh"

template <typename E>
static __global__ void rmsnorm_fwd_kernel(E *out, float *rstd, const E *inp, const E *w, int N, int C, float eps)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const E *x = inp + (size_t)row * C;
		E *o = out + (size_t)row * C;
		float s = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float v = lspo_load(x, c);
			s += v * v;
		}
		float r = rsqrtf(block_sum(s, shared) / (float)C + eps);
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			lspo_store(o, c, lspo_load(w, c) * (lspo_load(x, c) * r));
		if (threadIdx.x == 0)
			rstd[row] = r;
	}
}

template <typename E>
static __global__ void rmsnorm_bwd_dinp_kernel(E *dinp, const E *dout, const E *inp, const E *w,
                                               const float *rstd, int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const E *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
		E *di = dinp + (size_t)row * C;
		float r = rstd[row], sgn = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			sgn += lspo_load(w, c) * lspo_load(d, c) * (lspo_load(x, c) * r);
		float gn_mean = block_sum(sgn, shared) / (float)C;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			lspo_store(di, c, lspo_load(di, c) + r * (lspo_load(w, c) * lspo_load(d, c)
			                                          - lspo_load(x, c) * r * gn_mean));
	}
}

#define TILE 32
template <typename E>
static __global__ void rmsnorm_bwd_dw_kernel(float *dw, const E *dout, const E *inp, const float *rstd, int N,
                                             int C)
{
	__shared__ float sdw[TILE][TILE + 1];
	int c = blockIdx.x * TILE + threadIdx.x;
	float pw = 0.0f;
	if (c < C)
		for (int row = threadIdx.y; row < N; row += TILE)
			pw += lspo_load(inp, (size_t)row * C + c) * rstd[row] * lspo_load(dout, (size_t)row * C + c);
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

template <typename E>
static void rmsnorm_forward(void *buffers[], float eps)
{
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	rmsnorm_fwd_kernel<E><<<row_grid(N), row_threads(C, 512), 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[2]), lspo_mat_ptr(buffers[3]), lspo_elems<E>(buffers[0]),
		lspo_elems<E>(buffers[1]), N, C, eps);
	lspo_cuda_check_launch();
}

template <typename E>
static void rmsnorm_backward(void *buffers[])
{
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	const E *dout = lspo_elems<E>(buffers[0]), *inp = lspo_elems<E>(buffers[1]), *w = lspo_elems<E>(buffers[2]);
	const float *rstd = lspo_mat_ptr(buffers[3]);
	rmsnorm_bwd_dinp_kernel<E><<<row_grid(N), row_threads(C, 512), 0, stream>>>(
		lspo_elems<E>(buffers[4]), dout, inp, w, rstd, N, C);
	lspo_cuda_check_launch();
	rmsnorm_bwd_dw_kernel<E><<<(C + TILE - 1) / TILE, dim3(TILE, TILE), 0, stream>>>(
		lspo_mat_ptr(buffers[5]), dout, inp, rstd, N, C);
	lspo_cuda_check_launch();
}

/* buffers: inp (N, C), w (1, C), out (N, C), rstd (1, N).  inp, w and out
 * all float32 or all bf16 (mixed: through float32 copies); rstd float32. */
extern "C" void rmsnorm_forward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_rmsnorm_args *a = (const struct lspo_rmsnorm_args *)cl_arg;
	void *e[] = { buffers[0], buffers[1], buffers[2] };
	int bf = lspo_bf16_all(e, 3);
	if (bf < 0 || lspo_bf16_buffer(buffers[3]))
		lspo_bf16_cuda_call(rmsnorm_forward_cuda, &cl_rmsnorm_fwd, buffers, cl_arg);
	else if (bf)
		rmsnorm_forward<uint16_t>(buffers, a->eps);
	else
		rmsnorm_forward<float>(buffers, a->eps);
}

/* buffers: dout, inp (N, C), w (1, C), rstd (1, N), dinp (N, C), dw (1, C).
 * dout, inp, w and dinp all float32 or all bf16; rstd and dw float32. */
extern "C" void rmsnorm_backward_cuda(void *buffers[], void *cl_arg)
{
	void *e[] = { buffers[0], buffers[1], buffers[2], buffers[4] };
	int bf = lspo_bf16_all(e, 4);
	if (bf < 0 || lspo_bf16_buffer(buffers[3]) || lspo_bf16_buffer(buffers[5]))
		lspo_bf16_cuda_call(rmsnorm_backward_cuda, &cl_rmsnorm_bwd, buffers, cl_arg);
	else if (bf)
		rmsnorm_backward<uint16_t>(buffers);
	else
		rmsnorm_backward<float>(buffers);
}
#endif
