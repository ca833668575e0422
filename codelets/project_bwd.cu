/*
 * project_bwd.cu - the CUDA side of project_bwd: B^T (d, T) = Q^T dY^T by
 * the project_fwd kernel into the scratch buffer, then one cuBLAS GEMM
 * G_hat = A B + beta G_hat on the worker's stream.
 *
 * Row-major matrices are column-major transposes: G_hat^T = B A^T, i.e.
 * gemm(op_T(bt viewed (T, d)), op_N(A viewed (T, d))).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <cublas_v2.h>
#include <starpu_cublas_v2.h>

#include "project_bwd.h"
#include "project_fwd.h"

extern "C" void project_bwd_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_project_bwd_args *args = (const struct lspo_project_bwd_args *)cl_arg;
	void *Y = buffers[0], *Ix = buffers[1], *V = buffers[2], *A = buffers[3], *G = buffers[4];
	float *bt = lspo_mat_ptr(buffers[5]);
	int T = lspo_mat_rows(Y), n = lspo_mat_cols(Y), d = lspo_mat_rows(A), r = lspo_mat_cols(Ix);
	project_fwd_cuda_launch(T, n, d, r, (const int32_t *)STARPU_MATRIX_GET_PTR(Ix), lspo_mat_ptr(V),
	                        lspo_mat_ptr(Y), lspo_mat_ld(Y), bt, T, starpu_cuda_get_local_stream());
	float one = 1.0f;
	cublasStatus_t st = cublasSgemm(starpu_cublas_get_local_handle(), CUBLAS_OP_T, CUBLAS_OP_N,
		d, d, T, &one, bt, T > 0 ? T : 1, lspo_mat_ptr(A), lspo_mat_ld(A),
		&args->beta, lspo_mat_ptr(G), lspo_mat_ld(G));
	if (st != CUBLAS_STATUS_SUCCESS)
		STARPU_CUBLAS_REPORT_ERROR(st);
}
#endif
