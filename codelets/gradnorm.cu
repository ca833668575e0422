/*
 * gradnorm.cu - the CUDA side of sumsq and clip_scale, deterministic:
 *   sumsq: a fixed grid of blocks (one per double of the task's scratch
 *          buffer) each reduce a fixed grid-stride slice in double, then one
 *          block adds the block sums in a fixed tree.  No atomics.
 *   clip_scale: one thread adds the partial sums in order.  The device
 *          pointers travel as kernel arguments, CLIP_CHUNK at a time; with
 *          more partials than that, the running double sum waits between
 *          launches in the 8 bytes of the (1, 2) float clip buffer itself,
 *          which the last launch overwrites with { norm, scale }.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <stdint.h>

#include "gradnorm.h"

#define SUMSQ_THREADS 256
#define CLIP_CHUNK 256

/* Tree sum of SUMSQ_THREADS doubles in shared memory; thread 0 gets it. */
__device__ static double block_sum(double *sh, double v)
{
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = SUMSQ_THREADS / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	return sh[0];
}

__global__ static void sumsq_stage1(double *partial, const float *x, size_t rows, size_t cols, size_t ld)
{
	__shared__ double sh[SUMSQ_THREADS];
	size_t n = rows * cols;
	double s = 0.0;
	for (size_t i = blockIdx.x * (size_t)SUMSQ_THREADS + threadIdx.x; i < n;
	     i += (size_t)gridDim.x * SUMSQ_THREADS) {
		float v = ld == cols ? x[i] : x[(i / cols) * ld + i % cols];
		s += (double)v * v;
	}
	double b = block_sum(sh, s);
	if (threadIdx.x == 0)
		partial[blockIdx.x] = b;
}

__global__ static void sumsq_stage2(double *out, const double *partial, int nblocks)
{
	__shared__ double sh[SUMSQ_THREADS];
	double s = 0.0;
	for (int i = threadIdx.x; i < nblocks; i += SUMSQ_THREADS)
		s += partial[i];
	double b = block_sum(sh, s);
	if (threadIdx.x == 0)
		*out = b;
}

static void check_launch(void)
{
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(e);
}

extern "C" void sumsq_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *x = buffers[0];
	double *out = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
	double *partial = (double *)STARPU_VECTOR_GET_PTR(buffers[2]);
	int nblocks = (int)STARPU_VECTOR_GET_NX(buffers[2]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	sumsq_stage1<<<nblocks, SUMSQ_THREADS, 0, stream>>>(partial, lspo_mat_ptr(x),
		(size_t)lspo_mat_rows(x), (size_t)lspo_mat_cols(x), (size_t)lspo_mat_ld(x));
	check_launch();
	sumsq_stage2<<<1, SUMSQ_THREADS, 0, stream>>>(out, partial, nblocks);
	check_launch();
}

struct clip_chunk {
	const double *p[CLIP_CHUNK];
	int n;
};

__global__ static void clip_scale_kernel(struct clip_chunk c, int first, int last, float max_norm,
                                         float *clip)
{
	double *acc = (double *)clip;
	double s = first ? 0.0 : *acc;
	for (int i = 0; i < c.n; i++)
		s += *c.p[i];
	if (!last) {
		*acc = s;
		return;
	}
	double norm = sqrt(s);
	double scale = max_norm > 0 ? (double)max_norm / (norm + 1e-6) : 1.0;
	clip[0] = (float)norm;
	clip[1] = !isfinite(clip[0]) ? 0.0f : scale < 1.0 ? (float)scale : 1.0f;   /* 0: skip (see gradnorm.c) */
}

extern "C" void clip_scale_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_clip_args *a = (const struct lspo_clip_args *)cl_arg;
	float *clip = lspo_mat_ptr(buffers[a->n]);
	STARPU_ASSERT_MSG(a->n <= CLIP_CHUNK || (uintptr_t)clip % sizeof(double) == 0,
	                  "clip_scale: the clip buffer must be 8-byte aligned for more than %d partials",
	                  CLIP_CHUNK);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	for (int i0 = 0; i0 < a->n; i0 += CLIP_CHUNK) {
		struct clip_chunk c;
		c.n = a->n - i0 < CLIP_CHUNK ? a->n - i0 : CLIP_CHUNK;
		for (int i = 0; i < c.n; i++)
			c.p[i] = (const double *)STARPU_MATRIX_GET_PTR(buffers[i0 + i]);
		clip_scale_kernel<<<1, 1, 0, stream>>>(c, i0 == 0, i0 + CLIP_CHUNK >= a->n, a->max_norm, clip);
		check_launch();
	}
}
#endif
