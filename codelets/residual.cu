/*
 * residual.cu - the CUDA side of residual: grid-stride element-wise loops.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "residual.h"
#include "gpt2_ops_util.cuh"

static __global__ void residual_fwd_kernel(float *out, const float *a, const float *b, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		out[i] = a[i] + b[i];
}

static __global__ void accumulate_kernel(float *y, const float *x, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		y[i] += x[i];
}

/* buffers: a, b, out. */
extern "C" void residual_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	residual_fwd_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), n);
	lspo_cuda_check_launch();
}

/* buffers: x, y (RW). */
extern "C" void accumulate_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	accumulate_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[0]), n);
	lspo_cuda_check_launch();
}
#endif
