/* cast.cu - float32 <-> bfloat16 and float32 copies on the worker's stream. */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "cast.h"

static __global__ void to_bf16(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
		uint32_t u = __float_as_uint(src[i]);
		dst[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u)
		                                         : (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
	}
}

static __global__ void to_f32(float *dst, const uint16_t *src, size_t n)
{
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = __uint_as_float((uint32_t)src[i] << 16);
}

static size_t elements(void *buf)
{
	return (size_t)STARPU_MATRIX_GET_NX(buf) * STARPU_MATRIX_GET_NY(buf);
}

static int blocks(size_t n)
{
	size_t b = (n + 255) / 256;
	return (int)(b < 4096 ? (b ? b : 1) : 4096);
}

static void check_launch(void)
{
	cudaError_t err = cudaGetLastError();
	if (err != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(err);
}

extern "C" void cast_f32_bf16_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = elements(buffers[0]);
	to_bf16<<<blocks(n), 256, 0, starpu_cuda_get_local_stream()>>>(
		(uint16_t *)STARPU_MATRIX_GET_PTR(buffers[1]), (const float *)STARPU_MATRIX_GET_PTR(buffers[0]), n);
	check_launch();
}

extern "C" void cast_bf16_f32_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	size_t n = elements(buffers[0]);
	to_f32<<<blocks(n), 256, 0, starpu_cuda_get_local_stream()>>>(
		(float *)STARPU_MATRIX_GET_PTR(buffers[1]), (const uint16_t *)STARPU_MATRIX_GET_PTR(buffers[0]), n);
	check_launch();
}
#endif
