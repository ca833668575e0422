/*
 * project_bwd.h - compress the weight gradient of a linear layer in the
 * backward pass without forming it: for Y (T, n) = X (T, m) W (m, n) with
 * A (d, T) = P^T X^T kept by project_fwd,
 *     B (T, d) = dY Q,   G_hat (d, d) = A B + beta * G_hat  (= P^T X^T dY Q).
 * beta = 1 accumulates over micro-batches.  Q (n, d) is ELL like P
 * (project_fwd.h).  B lives only in a StarPU scratch buffer, as its
 * transpose (d, T), produced by the project_fwd kernel.
 */
#ifndef LSPO_PROJECT_BWD_H
#define LSPO_PROJECT_BWD_H

#include <stdint.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_project_bwd_args {
	float beta;  /* 0: overwrite G_hat (never read); 1: accumulate */
};

/* The pure kernel: G (d, d) = A (d, T) (dY (T, n) Q)  + beta * G, with
 * Q (n, d) ELL (qidx, qval: (n, r)) and bt a (d, T) scratch (row stride T).
 * Row strides lda, ldy, ldg. */
void project_bwd_cpu(int T, int n, int d, int r, const int32_t *qidx, const float *qval,
                     const float *dY, int ldy, const float *A, int lda, float beta,
                     float *G, int ldg, float *bt);

void project_bwd_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_project_bwd;

/* Submits G_hat = A (dY Q) + beta * G_hat: dY (T, n) R, qidx (n, r) int32 R,
 * qval (n, r) R, A (d, T) R, G_hat (d, d) W when beta == 0, else RW.
 * LSPO_EINVAL if the shapes do not agree. */
int lspo_project_bwd_submit(starpu_data_handle_t dY, starpu_data_handle_t qidx,
                            starpu_data_handle_t qval, starpu_data_handle_t A,
                            starpu_data_handle_t G_hat, float beta,
                            int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
