/*
 * lsp_basis.h - the basis lsp's subspace Adam works in (lspo_offload_opts.
 * lsp_adam_basis).  LSPO_LSP_ADAM_BASIS_PAIR: the coordinates of the pair's
 * columns, G_hat = P^T G Q as it is.  LSPO_LSP_ADAM_BASIS_ROTATED: a fixed
 * random rotation (R, S) per pair (subspace_adam_rot.h); this file draws
 * the rotations and keeps the moments consistent when a check installs a
 * new pair.
 */
#ifndef LSPO_LSP_BASIS_H
#define LSPO_LSP_BASIS_H

#include <stdint.h>

#include <starpu.h>

#include "lspo.h"

/* Q (d, d), row-major: an orthogonal matrix drawn from the Haar measure
 * (Gram-Schmidt in double of a Gaussian matrix, twice), a function of
 * (d, seed) only.  LSPO_ENOMEM or LSPO_EINVAL (d < 1). */
int lsp_basis_rotation(int d, uint64_t seed, float *Q);

/* RS (2 d, d): the rotations R (rows 0 .. d-1) and S (rows d .. 2d-1) of
 * the pair of index `pair` in a run of seed `seed`. */
int lsp_basis_pair_rotations(int d, uint64_t seed, int pair, float *RS);

/* The rotations of every pair of a registry, in pinned host memory, with
 * one StarPU handle (2 d, d) each, read-only after creation. */
struct lsp_basis_rot;
int lsp_basis_rot_create(const struct lspo_proj_registry *reg, uint64_t seed, struct lsp_basis_rot **out);
/* NULL is a no-op; StarPU must be running (unregisters the handles). */
void lsp_basis_rot_free(struct lsp_basis_rot *rot);
/* The handle and host array RS of pair p (NULL if p is not in the registry). */
starpu_data_handle_t lsp_basis_rot_handle(const struct lsp_basis_rot *rot, const struct lspo_proj *p);
const float *lsp_basis_rot_host(const struct lsp_basis_rot *rot, const struct lspo_proj *p);

/* Moves moments kept in the rotated coordinates of old_p into those of
 * new_p, same rotation: with L = P_new^T P_old and K = Q_new^T Q_old (the
 * re-projection of lspo_proj_reproject_moments), L' = R^T L R and
 * K' = S^T K S, M <- L' M K'^T / (s_P s_Q) and V <- (L'.^2) V (K'.^2)^T /
 * (s_P s_Q)^2, s_P = |P_old|_F^2 / d (lspo_proj_maybe_refresh's scale);
 * with R = S = I it is the refresh's own re-projection.  M is moved
 * exactly as R M S^T would be moved and rotated back; V, as there, by the
 * squares.  Non-finite entries become 0 (M) or 0 / 1 (V, as there). */
int lsp_basis_reproject(const struct lspo_proj *old_p, const struct lspo_proj *new_p, const float *RS,
                        float *const *M, float *const *V, int count);

/* lspo_proj_maybe_refresh with the moments in the rotated coordinates of
 * RS: the refresh itself leaves them alone, and when it installs a new
 * pair, lsp_basis_reproject moves them. */
int lsp_basis_maybe_refresh(struct lspo_proj *p, const float *const *check_grads, int ncheck,
                            const struct lspo_proj_refresh_opts *opts, const float *RS,
                            float *const *M, float *const *V, int nmoments,
                            struct lspo_proj_refresh_report *report);

#endif
