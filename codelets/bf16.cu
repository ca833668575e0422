/*
 * bf16.cu - bf16 operands of the fp32 codelets on CUDA workers (bf16.h):
 * float32 copies from cudaMallocAsync on the worker's stream, widened from
 * bf16 (exact), the op's fp32 CUDA function on them, its outputs rounded
 * back to nearest even, the copies freed on the stream: all asynchronous.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.h"
#include "attention.h"
#include "embedding.h"
#include "encoder.h"
#include "gqa_attention.h"
#include "matmul.h"
#include "project_bwd.h"
#include "project_fwd.h"
#include "rope.h"

/* (rows, cols) with leading dimension ld <-> contiguous float32. */
static __global__ void widen_kernel(float *dst, const uint16_t *src, int rows, int cols, int ld)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[i] = __uint_as_float((uint32_t)src[(i / cols) * ld + i % cols] << 16);
}

static __global__ void narrow_kernel(uint16_t *dst, const float *src, int rows, int cols, int ld)
{
	size_t n = (size_t)rows * cols;
	for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
		dst[(i / cols) * ld + i % cols] = lspo_bf16_round_bits(__float_as_uint(src[i]));
}

static int blocks(size_t n)
{
	size_t b = (n + 255) / 256;
	return (int)(b < 4096 ? (b ? b : 1) : 4096);
}

static void check(cudaError_t err)
{
	if (err != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(err);
}

extern "C" void lspo_bf16_cuda_call(lspo_kernel_func fn, const struct starpu_codelet *cl, void *buffers[],
                                    void *cl_arg)
{
	int n = lspo_bf16_nbuffers(cl), any = 0;
	for (int i = 0; i < n && !any; i++)
		any = lspo_bf16_buffer(buffers[i]);
	if (!any) {
		fn(buffers, cl_arg);
		return;
	}
	cudaStream_t stream = starpu_cuda_get_local_stream();
	struct starpu_matrix_interface copy[STARPU_NMAXBUFS];
	void *bufs[STARPU_NMAXBUFS];
	float *f32[STARPU_NMAXBUFS];
	STARPU_ASSERT_MSG(n <= STARPU_NMAXBUFS, "lspo_bf16_cuda_call: %d buffers", n);
	for (int i = 0; i < n; i++) {
		bufs[i] = buffers[i];
		f32[i] = NULL;
		if (!lspo_bf16_buffer(buffers[i]))
			continue;
		const struct starpu_matrix_interface *mi = (const struct starpu_matrix_interface *)buffers[i];
		size_t elems = (size_t)mi->nx * mi->ny;
		check(cudaMallocAsync((void **)&f32[i], (elems ? elems : 1) * sizeof(float), stream));
		if ((lspo_bf16_mode(cl, i) & STARPU_R) && elems) {
			widen_kernel<<<blocks(elems), 256, 0, stream>>>(f32[i], (const uint16_t *)mi->ptr, (int)mi->ny,
			                                                (int)mi->nx, (int)mi->ld);
			check(cudaGetLastError());
		}
		copy[i] = *mi;
		copy[i].ptr = copy[i].dev_handle = (uintptr_t)f32[i];
		copy[i].offset = 0;
		copy[i].ld = mi->nx;
		copy[i].elemsize = sizeof(float);
		copy[i].allocsize = elems * sizeof(float);
		bufs[i] = &copy[i];
	}
	fn(bufs, cl_arg);
	for (int i = 0; i < n; i++) {
		if (!f32[i])
			continue;
		const struct starpu_matrix_interface *mi = (const struct starpu_matrix_interface *)buffers[i];
		size_t elems = (size_t)mi->nx * mi->ny;
		if ((lspo_bf16_mode(cl, i) & STARPU_W) && elems) {
			narrow_kernel<<<blocks(elems), 256, 0, stream>>>((uint16_t *)mi->ptr, f32[i], (int)mi->ny,
			                                                 (int)mi->nx, (int)mi->ld);
			check(cudaGetLastError());
		}
		check(cudaFreeAsync(f32[i], stream));
	}
}

/* Each op's fp32 CUDA function through the conversion. */
extern "C" void attention_forward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(attention_forward_cuda, &cl_attention_fwd, b, a);
}

extern "C" void attention_backward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(attention_backward_cuda, &cl_attention_bwd, b, a);
}

extern "C" void embedding_forward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(embedding_forward_cuda, &cl_embedding_fwd, b, a);
}

extern "C" void embedding_backward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(embedding_backward_cuda, &cl_embedding_bwd, b, a);
}

extern "C" void encoder_forward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(encoder_forward_cuda, &cl_encoder_fwd, b, a);
}

extern "C" void encoder_backward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(encoder_backward_cuda, &cl_encoder_bwd, b, a);
}

extern "C" void gqa_attention_forward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(gqa_attention_forward_cuda, &cl_gqa_attention_fwd, b, a);
}

extern "C" void gqa_attention_backward_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(gqa_attention_backward_cuda, &cl_gqa_attention_bwd, b, a);
}

extern "C" void project_fwd_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(project_fwd_cuda, &cl_project_fwd, b, a);
}

extern "C" void project_bwd_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(project_bwd_cuda, &cl_project_bwd, b, a);
}

extern "C" void rope_cuda_any(void *b[], void *a)
{
	lspo_bf16_cuda_call(rope_cuda, &cl_rope, b, a);
}
#endif
