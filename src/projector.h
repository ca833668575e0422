/*
 * projector.h - what the rest of lspo sees of a projector pair beyond the
 * public API: its layout, its StarPU handles, and the dense helpers of the
 * learning code (projector_learn.c).
 */
#ifndef LSPO_PROJECTOR_H
#define LSPO_PROJECTOR_H

#include <stdint.h>

#include <starpu.h>

#include "lspo.h"

struct lspo_proj {
	int m, n, d, r;
	int32_t *idx[2];  /* side 0: P (m, r); side 1: Q (n, r); sorted per row */
	float *val[2];
	int registered;   /* the four handles below exist */
	starpu_data_handle_t h_idx[2], h_val[2];
	float gain;       /* lspo_proj_gain's value; 0 until computed, and after host writes */
};

/* Registers the ELL arrays as StarPU matrix handles (int32 indices, float
 * values, (rows, r)); idempotent; StarPU must be running.  lspo_proj_free
 * unregisters them.  Host changes (learn, redraw, refresh) acquire them. */
int lspo_proj_register(struct lspo_proj *p);
void lspo_proj_handles(const struct lspo_proj *p, starpu_data_handle_t *pidx, starpu_data_handle_t *pval,
                       starpu_data_handle_t *qidx, starpu_data_handle_t *qval);

/* Waits for the tasks using p's handles and takes them for host writes
 * (no-op when not registered); release hands them back. */
void lspo_proj_acquire_rw(struct lspo_proj *p);
void lspo_proj_release(struct lspo_proj *p);

/* sqrt(m n) / (|P|_F |Q|_F), the scale that makes the update P Delta Q^T
 * as large as a random pair's (rows of unit norm) whatever the pair's own
 * scale.  1 for sign pairs (exactly where 1/sqrt(r) is exact: r = 1, 4,
 * 16, ...).  Cached until the next acquire_rw. */
float lspo_proj_gain(struct lspo_proj *p);

/* Rows of side `side` (m for P, n for Q). */
static inline int lspo_proj_rows(const struct lspo_proj *p, int side) { return side ? p->n : p->m; }

/* Sparse products through the ELL structure of S (N, d) (projector_learn.c),
 * each O(N r L), all row operations contiguous:
 *   ell_tmul: Y (d, L) = S^T X,   X (N, L)
 *   ell_mul:  Z (N, L) = S Y,     Y (d, L)
 *   ell_mdot: out[i r + k] += A[i, :] . B[idx[i, k], :],  A (N, L), B (d, L) */
void lspo_ell_tmul(int N, int d, int r, const int32_t *idx, const float *val, int L,
                   const float *X, float *Y);
void lspo_ell_mul(int N, int r, const int32_t *idx, const float *val, int L,
                  const float *Y, float *Z);
void lspo_ell_mdot(int N, int r, const int32_t *idx, int L, const float *A, const float *B,
                   float *out);

/* The relative error of p on G (m, n) and its gradient with respect to the
 * values, gP (m, r) and gQ (n, r): what one learning step uses. */
int lspo_proj_loss_grad(const struct lspo_proj *p, const float *G, float *gP, float *gQ, double *loss);

/* ---- The kernels of the check tasks (issue 12; src/engine/lsp_learn.c). ---- */

/* Floats of `work` for lspo_proj_error_one on an (m, n) pair of subspace d. */
size_t lspo_proj_error_work(int m, int n, int d);
/* The relative error of p on one G (m, n), and (captured not NULL) the part
 * of G's norm it keeps: one term of lspo_proj_error / lspo_proj_captured. */
void lspo_proj_error_one(const struct lspo_proj *p, const float *G, float *work, double *err,
                         double *captured);
/* Floats of `work` for lspo_proj_learn_one. */
size_t lspo_proj_learn_work(int m, int n, int d, int r);
/* One Adam step t (1, 2, ...) of lspo_proj_learn on one G: p's values
 * change; mom (2 (m + n) r) holds the first moments of P and Q, then the
 * second moments of P and Q. */
void lspo_proj_learn_one(struct lspo_proj *p, const float *G, float *work, float *mom, int t,
                         const struct lspo_proj_learn_opts *o);
/* The end of lspo_proj_maybe_refresh once rep holds err_check, err_fresh,
 * err_candidate and captured_before: chooses the outcome, re-projects the
 * moments onto the chosen pair and copies it into p, then measures
 * err_after and captured_after on check_grads (rep's other fields stay). */
int lspo_proj_refresh_install(struct lspo_proj *p, const struct lspo_proj *fresh,
                              const struct lspo_proj *learned, const float *const *check_grads, int ncheck,
                              float *const *M, float *const *V, int nmoments,
                              struct lspo_proj_refresh_report *rep);

#endif
