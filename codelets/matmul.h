/* matmul.h - C = alpha * op(A) * op(B) + beta * C on row-major float matrices. */
#ifndef LSPO_MATMUL_H
#define LSPO_MATMUL_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_matmul_args {
	int trans_a, trans_b;  /* 1: use the transpose */
	float alpha, beta;
};

/* The pure kernel: C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C,
 * row-major with leading dimensions lda, ldb, ldc; beta == 0 never reads C. */
void matmul_cpu(const struct lspo_matmul_args *args, int m, int n, int k,
                const float *A, int lda, const float *B, int ldb, float *C, int ldc);

void matmul_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_matmul;

/* Submits C = alpha * op(A) * op(B) + beta * C as task `name` (a string that
 * outlives the task) with `priority`.  C is written only (no read, no
 * transfer in) when beta == 0.  LSPO_EINVAL if the shapes do not agree. */
int lspo_matmul_submit(starpu_data_handle_t A, starpu_data_handle_t B, starpu_data_handle_t C,
                       int trans_a, int trans_b, float alpha, float beta,
                       int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
