/* calib_add.cu - C = G or C += G (G optionally transposed) on the worker's stream. */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "calib_add.h"

static __global__ void calib_add_kernel(int m, int n, const float *G, int ldg, int transpose, int first,
                                        float *C, int ldc)
{
	size_t total = (size_t)m * n;
	for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < total; k += (size_t)gridDim.x * blockDim.x) {
		int i = (int)(k / n), j = (int)(k % n);
		float g = transpose ? G[(size_t)j * ldg + i] : G[(size_t)i * ldg + j];
		float *x = &C[(size_t)i * ldc + j];
		*x = first ? g : *x + g;
	}
}

extern "C" void calib_add_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_calib_add_args *a = (const struct lspo_calib_add_args *)cl_arg;
	void *G = buffers[0], *C = buffers[1];
	int m = lspo_mat_rows(C), n = lspo_mat_cols(C);
	size_t total = (size_t)m * n;
	int blocks = (int)((total + 255) / 256 < 4096 ? (total + 255) / 256 : 4096);
	if (blocks > 0)
		calib_add_kernel<<<blocks, 256, 0, starpu_cuda_get_local_stream()>>>(
			m, n, lspo_mat_ptr(G), lspo_mat_ld(G), a->transpose, a->first, lspo_mat_ptr(C), lspo_mat_ld(C));
	cudaError_t err = cudaGetLastError();
	if (err != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(err);
}
#endif
