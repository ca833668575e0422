/*
 * gelu.cu - the CUDA side of gelu: grid-stride element-wise loops, tanhf
 * from the CUDA math library; float32 or bf16 elements (bf16.cuh).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "gelu.h"
#include "gpt2_ops_util.cuh"

#define GELU_SCALE 0.7978845608028654f  /* sqrt(2 / pi) */
#define GELU_CUBE 0.044715f

template <typename E>
static __global__ void gelu_fwd_kernel(E *out, const E *inp, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float x = lspo_load(inp, i);
		float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
		lspo_store(out, i, 0.5f * x * (1.0f + t));
	}
}

template <typename E>
static __global__ void gelu_bwd_kernel(E *dinp, const E *inp, const E *dout, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x) {
		float x = lspo_load(inp, i);
		float t = tanhf(GELU_SCALE * (x + GELU_CUBE * x * x * x));
		float dt = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
		lspo_store(dinp, i, (0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dt) * lspo_load(dout, i));
	}
}

template <typename E>
static void gelu_forward(void *buffers[], size_t n)
{
	gelu_fwd_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[1]), lspo_elems<E>(buffers[0]), n);
	lspo_cuda_check_launch();
}

template <typename E>
static void gelu_backward(void *buffers[], size_t n)
{
	gelu_bwd_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[2]), lspo_elems<E>(buffers[0]), lspo_elems<E>(buffers[1]), n);
	lspo_cuda_check_launch();
}

/* buffers: inp, out (all float32 or all bf16; mixed ones through float32 copies). */
extern "C" void gelu_forward_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 2);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(gelu_forward_cuda, &cl_gelu_fwd, buffers, cl_arg);
	else if (bf)
		gelu_forward<uint16_t>(buffers, n);
	else
		gelu_forward<float>(buffers, n);
}

/* buffers: inp, dout, dinp. */
extern "C" void gelu_backward_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 3);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(gelu_backward_cuda, &cl_gelu_bwd, buffers, cl_arg);
	else if (bf)
		gelu_backward<uint16_t>(buffers, n);
	else
		gelu_backward<float>(buffers, n);
}
#endif
