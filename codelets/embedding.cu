/*
 * embedding.cu - the CUDA side of the token embedding.  Forward: one thread
 * per output element (rows along grid.y, channels along x, both
 * grid-strided).  Backward: atomicAdd into dwte, since tokens repeat
 * arbitrarily (the order of those float additions, hence the last bits, may
 * vary between runs; the CPU kernel is the deterministic one).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "embedding.h"
#include "gpt2_ops_util.cuh"

static __global__ void embedding_fwd_kernel(float *out, const int32_t *tok, const float *wte, int N, int C)
{
	for (int i = blockIdx.y; i < N; i += gridDim.y) {
		const float *e = wte + (size_t)tok[i] * C;
		float *o = out + (size_t)i * C;
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x)
			o[c] = e[c];
	}
}

static __global__ void embedding_bwd_kernel(float *dwte, const float *dout, const int32_t *tok, int N, int C)
{
	for (int i = blockIdx.y; i < N; i += gridDim.y) {
		float *e = dwte + (size_t)tok[i] * C;
		const float *d = dout + (size_t)i * C;
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x)
			atomicAdd(e + c, d[c]);
	}
}

static dim3 rows_grid(int rows, int C, int threads)
{
	int gx = (C + threads - 1) / threads;
	return dim3(gx < 1 ? 1 : gx, rows < 65535 ? (rows < 1 ? 1 : rows) : 65535);
}

extern "C" void embedding_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[0];
	int N = lspo_mat_rows(tok) * lspo_mat_cols(tok), C = lspo_mat_cols(buffers[2]);
	const int threads = 256;
	embedding_fwd_kernel<<<rows_grid(N, C, threads), threads, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), (const int32_t *)STARPU_MATRIX_GET_PTR(tok), lspo_mat_ptr(buffers[1]), N, C);
	lspo_cuda_check_launch();
}

extern "C" void embedding_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[1];
	int N = lspo_mat_rows(tok) * lspo_mat_cols(tok), C = lspo_mat_cols(buffers[0]);
	const int threads = 256;
	embedding_bwd_kernel<<<rows_grid(N, C, threads), threads, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), (const int32_t *)STARPU_MATRIX_GET_PTR(tok), N, C);
	lspo_cuda_check_launch();
}
#endif
