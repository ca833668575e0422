/*
 * residual.cu - the CUDA side of residual: grid-stride element-wise loops,
 * float32 or bf16 elements (bf16.cuh).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "residual.h"
#include "gpt2_ops_util.cuh"

template <typename E>
static __global__ void residual_fwd_kernel(E *out, const E *a, const E *b, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		lspo_store(out, i, lspo_load(a, i) + lspo_load(b, i));
}

template <typename E>
static __global__ void accumulate_kernel(E *y, const E *x, size_t n)
{
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	     i += (size_t)blockDim.x * gridDim.x)
		lspo_store(y, i, lspo_load(y, i) + lspo_load(x, i));
}

template <typename E>
static void residual_forward(void *buffers[], size_t n)
{
	residual_fwd_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[2]), lspo_elems<E>(buffers[0]), lspo_elems<E>(buffers[1]), n);
	lspo_cuda_check_launch();
}

template <typename E>
static void accumulate(void *buffers[], size_t n)
{
	accumulate_kernel<E><<<elementwise_blocks(n, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[1]), lspo_elems<E>(buffers[0]), n);
	lspo_cuda_check_launch();
}

/* buffers: a, b, out (all float32 or all bf16; mixed ones through float32 copies). */
extern "C" void residual_forward_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 3);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(residual_forward_cuda, &cl_residual_fwd, buffers, cl_arg);
	else if (bf)
		residual_forward<uint16_t>(buffers, n);
	else
		residual_forward<float>(buffers, n);
}

/* buffers: x, y (RW). */
extern "C" void accumulate_cuda(void *buffers[], void *cl_arg)
{
	int bf = lspo_bf16_all(buffers, 2);
	size_t n = (size_t)lspo_mat_rows(buffers[0]) * lspo_mat_cols(buffers[0]);
	if (bf < 0)
		lspo_bf16_cuda_call(accumulate_cuda, &cl_accumulate, buffers, cl_arg);
	else if (bf)
		accumulate<uint16_t>(buffers, n);
	else
		accumulate<float>(buffers, n);
}
#endif
