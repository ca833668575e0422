/*
 * matmul.cu - the CUDA side of matmul: one cuBLAS call on the worker's stream.
 *
 * cuBLAS is column-major and our matrices are row-major: a row-major X is the
 * column-major X^T, so C^T = op(B)^T op(A)^T is computed with A and B swapped.
 * bf16 operands (bf16.h): A and B both bf16 go to cublasGemmEx with
 * CUBLAS_COMPUTE_32F (fp32 accumulation, C bf16 or float32, as PyTorch's
 * autocast does); other mixes widen the bf16 ones into float32 copies.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <cublas_v2.h>
#include <starpu_cublas_v2.h>

#include "bf16.h"
#include "matmul.h"

static void matmul_sgemm(void *buffers[], void *cl_arg)
{
	const struct lspo_matmul_args *args = (const struct lspo_matmul_args *)cl_arg;
	void *A = buffers[0], *B = buffers[1], *C = buffers[2];
	int m = lspo_mat_rows(C), n = lspo_mat_cols(C);
	int k = args->trans_a ? lspo_mat_rows(A) : lspo_mat_cols(A);
	cublasStatus_t st = cublasSgemm(starpu_cublas_get_local_handle(),
		args->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, args->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
		n, m, k, &args->alpha, lspo_mat_ptr(B), lspo_mat_ld(B), lspo_mat_ptr(A), lspo_mat_ld(A),
		&args->beta, lspo_mat_ptr(C), lspo_mat_ld(C));
	if (st != CUBLAS_STATUS_SUCCESS)
		STARPU_CUBLAS_REPORT_ERROR(st);
}

extern "C" void matmul_cuda(void *buffers[], void *cl_arg)
{
	void *A = buffers[0], *B = buffers[1], *C = buffers[2];
	if (!lspo_bf16_buffer(A) || !lspo_bf16_buffer(B)) {
		lspo_bf16_cuda_call(matmul_sgemm, &cl_matmul, buffers, cl_arg);
		return;
	}
	const struct lspo_matmul_args *args = (const struct lspo_matmul_args *)cl_arg;
	int m = lspo_mat_rows(C), n = lspo_mat_cols(C);
	int k = args->trans_a ? lspo_mat_rows(A) : lspo_mat_cols(A);
	cublasStatus_t st = cublasGemmEx(starpu_cublas_get_local_handle(),
		args->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, args->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
		n, m, k, &args->alpha, (const void *)STARPU_MATRIX_GET_PTR(B), CUDA_R_16BF, lspo_mat_ld(B),
		(const void *)STARPU_MATRIX_GET_PTR(A), CUDA_R_16BF, lspo_mat_ld(A), &args->beta,
		(void *)STARPU_MATRIX_GET_PTR(C), lspo_bf16_buffer(C) ? CUDA_R_16BF : CUDA_R_32F, lspo_mat_ld(C),
		CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
	if (st != CUBLAS_STATUS_SUCCESS)
		STARPU_CUBLAS_REPORT_ERROR(st);
}
#endif
