/*
 * bf16.cuh - float32 or bf16 elements in CUDA kernels that compute in
 * float32 (bf16.h): a kernel templated on the element type E reads with
 * lspo_load and writes with lspo_store, which rounds to nearest even.
 * Included by .cu files only, inside their #ifdef STARPU_USE_CUDA.
 */
#ifndef LSPO_BF16_CUH
#define LSPO_BF16_CUH

#include <starpu.h>

#include "bf16.h"

static __device__ __forceinline__ float lspo_load(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ void lspo_store(float *p, size_t i, float v) { p[i] = v; }
static __device__ __forceinline__ float lspo_load(const uint16_t *p, size_t i)
{
	return __uint_as_float((uint32_t)p[i] << 16);
}
static __device__ __forceinline__ void lspo_store(uint16_t *p, size_t i, float v)
{
	p[i] = lspo_bf16_round_bits(__float_as_uint(v));
}

/* The data of a matrix buffer as elements of type E. */
template <typename E>
static inline E *lspo_elems(void *buf)
{
	return (E *)STARPU_MATRIX_GET_PTR(buf);
}

/* 1 when the n buffers are all bf16, 0 when none is, -1 when they mix (the
 * caller then goes through lspo_bf16_cuda_call). */
static inline int lspo_bf16_all(void *buffers[], int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += lspo_bf16_buffer(buffers[i]);
	return k == n ? 1 : k == 0 ? 0 : -1;
}

#endif
