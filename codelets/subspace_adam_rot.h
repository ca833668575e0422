/*
 * subspace_adam_rot.h - subspace Adam in a fixed rotation of the subspace
 * (lspo train --lsp-adam-basis rotated).  Adam is not invariant under a
 * change of basis: run on G_hat = P^T G Q it works in the coordinates of
 * the pair's columns.  Here, with orthogonal R, S (d, d) fixed per pair,
 *     G' = R^T G_hat S;   Adam on G' with moments M, V (d, d) kept in the
 *     rotated coordinates;   Delta = R Delta' S^T,
 * which is the update of the pair (P R, Q S) without making P and Q dense.
 * With R = S = I it gives the values of subspace_adam bit for bit.  A
 * non-finite G_hat leaves M and V as they are and makes Delta zero, as
 * subspace_adam does.  CPU only.
 */
#ifndef LSPO_SUBSPACE_ADAM_ROT_H
#define LSPO_SUBSPACE_ADAM_ROT_H

#include "codelet_util.h"
#include "subspace_adam.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The pure kernel, all (d, d) row-major and contiguous: G_hat read, Delta
 * written (may be G_hat), M, V updated, R and S read, work (2 d d) scratch. */
void subspace_adam_rot_cpu(int d, const float *G_hat, float *Delta, float *M, float *V,
                           const float *R, const float *S, float *work,
                           const struct lspo_subspace_adam_hparams *h);

extern struct starpu_codelet cl_subspace_adam_rot;

/* Submits one matrix's update: G_hat (d, d) R, Delta (d, d) W, M, V (d, d)
 * RW, RS (2 d, d) R: R in rows 0 .. d-1, S in rows d .. 2d-1; h is copied.
 * LSPO_EINVAL if the shapes differ or h is invalid. */
int lspo_subspace_adam_rot_submit(starpu_data_handle_t G_hat, starpu_data_handle_t Delta,
                                  starpu_data_handle_t M, starpu_data_handle_t V,
                                  starpu_data_handle_t RS,
                                  const struct lspo_subspace_adam_hparams *h,
                                  int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
