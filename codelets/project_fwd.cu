/*
 * project_fwd.cu - the CUDA side of project_fwd: out (d, T) = S^T X^T with
 * S (N, d) in ELL form.  One thread per (token, row of S): it reads X[t, i]
 * (coalesced along i) and adds v * X[t, i] into out[c, t] for the row's r
 * columns with atomicAdd, so the order of the float additions may vary from
 * run to run (the CPU kernel's does not).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "project_fwd.h"

static __global__ void project_fwd_kernel(int T, int N, int r, const int32_t *idx, const float *val,
                                          const float *X, int ldx, float *out, int ldo)
{
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= N)
		return;
	for (int t = blockIdx.y; t < T; t += gridDim.y) {
		float x = X[(size_t)t * ldx + i];
		if (x == 0.0f)
			continue;
		for (int k = 0; k < r; k++)
			atomicAdd(out + (size_t)idx[(size_t)i * r + k] * ldo + t, val[(size_t)i * r + k] * x);
	}
}

extern "C" void project_fwd_cuda_launch(int T, int N, int d, int r, const int32_t *idx, const float *val,
                                        const float *X, int ldx, float *out, int ldo, void *stream)
{
	cudaStream_t s = (cudaStream_t)stream;
	cudaError_t st = cudaMemset2DAsync(out, sizeof(float) * (size_t)ldo, 0, sizeof(float) * (size_t)T,
	                                   (size_t)d, s);
	if (st != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(st);
	if (T == 0 || N == 0)
		return;
	dim3 block(128);
	dim3 grid((N + 127) / 128, T < 65535 ? T : 65535);
	project_fwd_kernel<<<grid, block, 0, s>>>(T, N, r, idx, val, X, ldx, out, ldo);
	st = cudaGetLastError();
	if (st != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(st);
}

extern "C" void project_fwd_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *X = buffers[0], *Ix = buffers[1], *V = buffers[2], *A = buffers[3];
	project_fwd_cuda_launch(lspo_mat_rows(X), lspo_mat_cols(X), lspo_mat_rows(A), lspo_mat_cols(Ix),
	                        (const int32_t *)STARPU_MATRIX_GET_PTR(Ix), lspo_mat_ptr(V),
	                        lspo_mat_ptr(X), lspo_mat_ld(X), lspo_mat_ptr(A), lspo_mat_ld(A),
	                        starpu_cuda_get_local_stream());
}
#endif
