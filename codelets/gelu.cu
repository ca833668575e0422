/*
 * gelu.cu - the CUDA side of gelu: grid-stride element-wise loops, tanhf
 * from the CUDA math library.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "gelu.h"
#include "gpt2_ops_util.cuh"

#define GELU_SCALE 0.7978845608028654f  /* sqrt(2 / pi) */
#define GELU_CUBE 0.044715f

static __global__ void gelu_fwd_kernel(float *out, const float *inp, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float x = inp[i];
		float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
		out[i] = 0.5f * x * (1.0f + t);
	}
}

static __global__ void gelu_bwd_kernel(float *dinp, const float *inp, const float *dout, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float x = inp[i];
		float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
		float dt = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
		dinp[i] = (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dt) * dout[i];
	}
}

extern "C" void gelu_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	gelu_fwd_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[0]), n);
	lspo_cuda_check_launch();
}

extern "C" void gelu_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	gelu_bwd_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), n);
	lspo_cuda_check_launch();
}
#endif
