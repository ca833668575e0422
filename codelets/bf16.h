/*
 * bf16.h - bfloat16 storage for the codelets (lspo train --dtype bf16).
 *
 * A bf16 tensor is a StarPU matrix of 2-byte elements holding the upper 16
 * bits of a float32.  Codelets compute in float32 either way: a bf16
 * operand is widened on load (exact) and a bf16 result is rounded to the
 * nearest bf16, ties to even, on store, once per task.  The matrix products
 * take bf16 operands directly (cublasGemmEx with CUBLAS_COMPUTE_32F, fp32
 * accumulation, one rounding of the result; on the CPU the same in
 * float32 through sgemm); the CUDA kernels of the cross-entropy, gelu,
 * swiglu, layernorm, rmsnorm, the residual adds and fill load and store bf16 themselves (bf16.cuh),
 * so no float32 copy of their operands exists; every other op goes through
 * lspo_bf16_cpu_call / lspo_bf16_cuda_call, which hand the op's fp32 kernel
 * float32 copies of its bf16 buffers (transient, one task's operands) and
 * round its outputs back.  A task without bf16 buffers calls the kernel
 * directly, so fp32 runs are unchanged.
 */
#ifndef LSPO_BF16_H
#define LSPO_BF16_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __CUDACC__
#define LSPO_HD __host__ __device__
#else
#define LSPO_HD
#endif

/* float32 bits -> bf16 bits, round to nearest, ties to even; a NaN stays a
 * (quiet) NaN, +-inf stay infinite, values that round past the largest
 * finite bf16 become inf, as IEEE rounding does. */
static inline LSPO_HD uint16_t lspo_bf16_round_bits(uint32_t u)
{
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* Stochastic rounding (--bf16-update stochastic: bf16 weights updated in
 * place, no float32 master).  A float32 x lies between two neighbouring
 * bf16 values; it becomes the upper one with probability (distance from
 * the lower) / (their spacing), so that its expected bf16 value is x: an
 * update far below a weight's bf16 spacing still moves it on average.  The
 * 16 random bits are a counter-based hash of (key, element index): the key
 * (lspo_sr_key) names the seed, the optimizer step and the tensor, the
 * index is the element's row * cols + column in the logical matrix, so the
 * CPU and CUDA codelets round every element alike, whatever the worker,
 * the task order or the layout in memory.  NaN and +-inf as
 * lspo_bf16_round_bits; a value above the largest finite bf16 may become
 * inf. */
static inline LSPO_HD uint64_t lspo_sr_mix(uint64_t z)
{
	/* splitmix64's finalizer: every input bit reaches every output bit */
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static inline LSPO_HD uint64_t lspo_sr_key(uint64_t seed, uint64_t step, uint64_t tensor)
{
	return lspo_sr_mix(seed ^ lspo_sr_mix(step * 0x9e3779b97f4a7c15ull ^ lspo_sr_mix(tensor + 0x632be59bd9b4e019ull)));
}

static inline LSPO_HD uint16_t lspo_bf16_round_sr_bits(uint32_t u, uint64_t key, uint64_t index)
{
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	uint32_t r = (uint32_t)(lspo_sr_mix(key + index * 0x9e3779b97f4a7c15ull) >> 48);
	return (uint16_t)((u + r) >> 16);
}

#ifndef __CUDACC__
static inline uint16_t lspo_bf16_round_sr(float x, uint64_t key, uint64_t index)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return lspo_bf16_round_sr_bits(u, key, index);
}

static inline uint16_t lspo_bf16_from_f32(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return lspo_bf16_round_bits(u);
}

static inline float lspo_bf16_to_f32(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float x;
	memcpy(&x, &u, sizeof(x));
	return x;
}
#endif

/* A matrix of floats: float32, or bf16 (which the codelets convert). */
static inline int lspo_handle_float(starpu_data_handle_t h)
{
	size_t e = starpu_matrix_get_elemsize(h);
	return e == sizeof(float) || e == sizeof(uint16_t);
}

/* A buffer of a task is bf16 when it is a matrix of 2-byte elements. */
int lspo_bf16_buffer(void *buf);

typedef void (*lspo_kernel_func)(void *buffers[], void *cl_arg);

/* Runs fn, the fp32 function of codelet cl, on the current task's buffers:
 * bf16 buffers are widened into float32 copies (those the task reads), fn
 * runs on them, and the copies of buffers it writes are rounded back.
 * Without a current task (a kernel called directly by a test) the number
 * and modes of the buffers are cl's (a variable count: matmul's A, B, C,
 * C read and written). */
void lspo_bf16_cpu_call(lspo_kernel_func fn, const struct starpu_codelet *cl, void *buffers[], void *cl_arg);
/* The same on the worker's CUDA stream (codelets/bf16.cu), float32 copies
 * from cudaMallocAsync. */
void lspo_bf16_cuda_call(lspo_kernel_func fn, const struct starpu_codelet *cl, void *buffers[], void *cl_arg);

/* Buffers and modes of the current task, else cl's (see above). */
int lspo_bf16_nbuffers(const struct starpu_codelet *cl);
int lspo_bf16_mode(const struct starpu_codelet *cl, int i);

/* The CUDA functions of the ops, through lspo_bf16_cuda_call (bf16.cu). */
void attention_forward_cuda_any(void *b[], void *a);
void attention_backward_cuda_any(void *b[], void *a);
void embedding_forward_cuda_any(void *b[], void *a);
void embedding_backward_cuda_any(void *b[], void *a);
void encoder_forward_cuda_any(void *b[], void *a);
void encoder_backward_cuda_any(void *b[], void *a);
void gqa_attention_forward_cuda_any(void *b[], void *a);
void gqa_attention_backward_cuda_any(void *b[], void *a);
void project_fwd_cuda_any(void *b[], void *a);
void project_bwd_cuda_any(void *b[], void *a);
void rope_cuda_any(void *b[], void *a);

#ifdef __cplusplus
}
#endif
#endif
