/* fill.cu - x <- value on the worker's stream; float32 or bf16 (bf16.cuh). */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "fill.h"

template <typename E>
static __global__ void fill_kernel(E *x, int rows, int cols, int ld, float value)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		lspo_store(x, (i / cols) * ld + i % cols, value);
}

extern "C" void fill_cuda(void *buffers[], void *cl_arg)
{
	float value = *(const float *)cl_arg;
	int rows = lspo_mat_rows(buffers[0]), cols = lspo_mat_cols(buffers[0]), ld = lspo_mat_ld(buffers[0]);
	int bf16 = lspo_bf16_buffer(buffers[0]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	if (value == 0.0f && ld == cols) {
		size_t bytes = (bf16 ? sizeof(uint16_t) : sizeof(float)) * (size_t)rows * cols;
		cudaError_t err = cudaMemsetAsync((void *)STARPU_MATRIX_GET_PTR(buffers[0]), 0, bytes, stream);
		if (err != cudaSuccess)
			STARPU_CUDA_REPORT_ERROR(err);
		return;
	}
	size_t n = (size_t)rows * cols;
	int blocks = (int)((n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096);
	if (blocks > 0 && bf16)
		fill_kernel<uint16_t><<<blocks, 256, 0, stream>>>(lspo_elems<uint16_t>(buffers[0]), rows, cols, ld, value);
	else if (blocks > 0)
		fill_kernel<float><<<blocks, 256, 0, stream>>>(lspo_mat_ptr(buffers[0]), rows, cols, ld, value);
	cudaError_t err = cudaGetLastError();
	if (err != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(err);
}
#endif
