/*
 * subspace_adam.h - Adam on a compressed gradient G_hat (d, d) with moments
 * M, V (d, d, fp32, host memory), producing the subspace update
 *     M = b1 M + (1 - b1) g;   V = b2 V + (1 - b2) g^2;
 *     Delta = -lr * (M / (1 - b1^t)) / (sqrt(V / (1 - b2^t)) + eps)
 * or, with eps_inside_sqrt (the reference CPU kernel's form, lsp-offload.md
 * 5.4), Delta = -lr * m_hat / sqrt(v_hat + eps).  CPU only: one task per
 * matrix, so several matrices' updates run on different CPU workers.
 */
#ifndef LSPO_SUBSPACE_ADAM_H
#define LSPO_SUBSPACE_ADAM_H

#include <stddef.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_subspace_adam_hparams {
	float lr, beta1, beta2, eps;
	int t;                /* this matrix's step number, from 1 */
	int eps_inside_sqrt;  /* 1: sqrt(v_hat + eps) (reference CPU kernel) */
};

/* lr 1e-3, betas 0.9 / 0.999, eps 1e-4 (the reference's), t 1, textbook form. */
struct lspo_subspace_adam_hparams lspo_subspace_adam_default(void);

/* The pure kernel over n elements: g (n) is read, delta (n) written (delta
 * may be g: in place), m, v (n) updated.  AVX2 with a scalar tail: any n. */
void subspace_adam_cpu(const float *g, float *delta, float *m, float *v, size_t n,
                       const struct lspo_subspace_adam_hparams *h);

extern struct starpu_codelet cl_subspace_adam;
extern struct starpu_codelet cl_subspace_adam_inplace;

/* Submits one matrix's update: G_hat (d, d) R, Delta (d, d) W, M, V (d, d)
 * RW; Delta NULL: in place (G_hat RW becomes Delta).  h is copied.
 * LSPO_EINVAL if the shapes differ or h is invalid (t < 1, lr, betas, eps). */
int lspo_subspace_adam_submit(starpu_data_handle_t G_hat, starpu_data_handle_t Delta,
                              starpu_data_handle_t M, starpu_data_handle_t V,
                              const struct lspo_subspace_adam_hparams *h,
                              int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
