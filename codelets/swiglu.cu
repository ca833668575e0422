/*
 * swiglu.cu - the CUDA side of swiglu: grid-stride element-wise loops, expf
 * from the CUDA math library; float32 or bf16 elements (bf16.cuh).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "swiglu.h"
#include "gpt2_ops_util.cuh"

static __device__ __forceinline__ float sigmoid1(float g)
{
	return 1.0f / (1.0f + expf(-g));
}

template <typename E>
static __global__ void swiglu_fwd_kernel(E *out, const E *gate, const E *up, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float g = lspo_load(gate, i);
		lspo_store(out, i, g * sigmoid1(g) * lspo_load(up, i));
	}
}

template <typename E>
static __global__ void swiglu_bwd_kernel(E *dgate, E *dup, const E *gate, const E *up, const E *dout, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float g = lspo_load(gate, i), s = sigmoid1(g), d = lspo_load(dout, i);
		lspo_store(dgate, i, d * lspo_load(up, i) * (s * (1.0f + g * (1.0f - s))));
		lspo_store(dup, i, d * (g * s));
	}
}

template <typename E>
static void swiglu_forward(void *buffers[], size_t n)
{
	swiglu_fwd_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[2]), lspo_elems<E>(buffers[0]), lspo_elems<E>(buffers[1]), n);
	lspo_cuda_check_launch();
}

template <typename E>
static void swiglu_backward(void *buffers[], size_t n)
{
	swiglu_bwd_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[3]), lspo_elems<E>(buffers[4]), lspo_elems<E>(buffers[0]),
		lspo_elems<E>(buffers[1]), lspo_elems<E>(buffers[2]), n);
	lspo_cuda_check_launch();
}

/* buffers: gate, up, out (all float32 or all bf16; mixed ones through float32 copies). */
extern "C" void swiglu_forward_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 3);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(swiglu_forward_cuda, &cl_swiglu_fwd, buffers, cl_arg);
	else if (bf)
		swiglu_forward<uint16_t>(buffers, n);
	else
		swiglu_forward<float>(buffers, n);
}

/* buffers: gate, up, dout, dgate, dup. */
extern "C" void swiglu_backward_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 5);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(swiglu_backward_cuda, &cl_swiglu_bwd, buffers, cl_arg);
	else if (bf)
		swiglu_backward<uint16_t>(buffers, n);
	else
		swiglu_backward<float>(buffers, n);
}
#endif
