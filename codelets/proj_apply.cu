/*
 * proj_apply.cu - the CUDA side of proj_apply, two kernels on the worker's
 * stream: E[a, j] = sum_k Delta[a, qidx[j,k]] qval[j,k] into the scratch
 * (d, n), then W[i, j] = (1 - lr_wd) W[i, j] + alpha sum_k pval[i,k]
 * E[pidx[i,k], j].  One thread per output, j fastest: coalesced, and the
 * summation order is fixed.  proj_apply_t reads Delta transposed:
 * E[a, j] = sum_k Delta[qidx[j,k], a] qval[j,k] (the same kernel with the
 * strides of Delta swapped).  A bf16 W: the same sums, rounded back
 * stochastically (apply_w_sr_kernel).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.h"
#include "proj_apply.h"

/* Delta (a, c) is read at Delta[a * sa + c * sc]. */
static __global__ void apply_e_kernel(int n, int d, int r, const int32_t *qidx, const float *qval,
                                      const float *Delta, size_t sa, size_t sc, float *e)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= n)
		return;
	for (int a = blockIdx.y; a < d; a += gridDim.y) {
		float s = 0.0f;
		for (int k = 0; k < r; k++)
			s = fmaf(Delta[(size_t)a * sa + (size_t)qidx[(size_t)j * r + k] * sc], qval[(size_t)j * r + k], s);
		e[(size_t)a * n + j] = s;
	}
}

static __global__ void apply_w_kernel(int m, int n, int r, const int32_t *pidx, const float *pval,
                                      const float *e, float alpha, float keep, float *W, int ldw)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= n)
		return;
	for (int i = blockIdx.y; i < m; i += gridDim.y) {
		float s = keep * W[(size_t)i * ldw + j];
		for (int k = 0; k < r; k++)
			s = fmaf(alpha * pval[(size_t)i * r + k], e[(size_t)pidx[(size_t)i * r + k] * n + j], s);
		W[(size_t)i * ldw + j] = s;
	}
}

/* The same on a bf16 W, rounded back stochastically (bf16.h): element
 * (i, j) has index i n + j, as on the CPU. */
static __global__ void apply_w_sr_kernel(int m, int n, int r, const int32_t *pidx, const float *pval,
                                         const float *e, float alpha, float keep, uint16_t *W, int ldw,
                                         uint64_t key)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= n)
		return;
	for (int i = blockIdx.y; i < m; i += gridDim.y) {
		float s = keep * __uint_as_float((uint32_t)W[(size_t)i * ldw + j] << 16);
		for (int k = 0; k < r; k++)
			s = fmaf(alpha * pval[(size_t)i * r + k], e[(size_t)pidx[(size_t)i * r + k] * n + j], s);
		W[(size_t)i * ldw + j] = lspo_bf16_round_sr_bits(__float_as_uint(s), key, (uint64_t)i * n + j);
	}
}

static void apply_cuda(void *buffers[], void *cl_arg, int trans)
{
	const struct lspo_proj_apply_args *args = (const struct lspo_proj_apply_args *)cl_arg;
	void *W = buffers[0], *D = buffers[5];
	int m = lspo_mat_rows(W), n = lspo_mat_cols(W), d = lspo_mat_rows(D);
	int r = lspo_mat_cols(buffers[1]);
	float *e = lspo_mat_ptr(buffers[6]);
	cudaStream_t s = starpu_cuda_get_local_stream();
	if (m == 0 || n == 0)
		return;
	size_t ldd = (size_t)lspo_mat_ld(D), sa = trans ? 1 : ldd, sc = trans ? ldd : 1;
	dim3 block(128);
	dim3 ge((n + 127) / 128, d < 65535 ? d : 65535);
	apply_e_kernel<<<ge, block, 0, s>>>(n, d, r, (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[3]),
	                                    lspo_mat_ptr(buffers[4]), lspo_mat_ptr(D), sa, sc, e);
	dim3 gw((n + 127) / 128, m < 65535 ? m : 65535);
	if (lspo_bf16_buffer(W))
		apply_w_sr_kernel<<<gw, block, 0, s>>>(m, n, r, (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]),
		                                       lspo_mat_ptr(buffers[2]), e, args->alpha, 1.0f - args->lr_wd,
		                                       (uint16_t *)STARPU_MATRIX_GET_PTR(W), lspo_mat_ld(W),
		                                       args->sr_key);
	else
		apply_w_kernel<<<gw, block, 0, s>>>(m, n, r, (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]),
		                                    lspo_mat_ptr(buffers[2]), e, args->alpha, 1.0f - args->lr_wd,
		                                    lspo_mat_ptr(W), lspo_mat_ld(W));
	cudaError_t st = cudaGetLastError();
	if (st != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(st);
}

extern "C" void proj_apply_cuda(void *buffers[], void *cl_arg)
{
	apply_cuda(buffers, cl_arg, 0);
}

extern "C" void proj_apply_t_cuda(void *buffers[], void *cl_arg)
{
	apply_cuda(buffers, cl_arg, 1);
}
#endif
