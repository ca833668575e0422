/*
 * swiglu.cu - the CUDA side of swiglu: grid-stride element-wise loops, expf
 * from the CUDA math library.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "swiglu.h"
#include "gpt2_ops_util.cuh"

static __device__ __forceinline__ float sigmoid1(float g)
{
	return 1.0f / (1.0f + expf(-g));
}

static __global__ void swiglu_fwd_kernel(float *out, const float *gate, const float *up, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float g = gate[i];
		out[i] = g * sigmoid1(g) * up[i];
	}
}

static __global__ void swiglu_bwd_kernel(float *dgate, float *dup, const float *gate, const float *up,
                                         const float *dout, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float g = gate[i], s = sigmoid1(g), d = dout[i];
		dgate[i] = d * up[i] * (s * (1.0f + g * (1.0f - s)));
		dup[i] = d * (g * s);
	}
}

/* buffers: gate, up, out. */
extern "C" void swiglu_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	swiglu_fwd_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), n);
	lspo_cuda_check_launch();
}

/* buffers: gate, up, dout, dgate, dup. */
extern "C" void swiglu_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	swiglu_bwd_kernel<<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[0]),
		lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), n);
	lspo_cuda_check_launch();
}
#endif
