/*
 * proj_apply.h - decompress a subspace update and apply it to the weight:
 *     W (m, n) <- (1 - lr_wd) * W + alpha * P Delta Q^T
 * with P (m, d), Q (n, d) ELL projectors (project_fwd.h) and Delta (d, d).
 * Cost O(m n r + n d r) through the sparse structure, never through dense P
 * or Q: E = Delta Q^T (d, n) goes to a scratch buffer, then each row of W
 * takes r axpys of rows of E.  lr_wd = lr * weight_decay is the optional
 * decoupled weight decay (0: none), applied before the update, as AdamW.
 * proj_apply_t is the same with Delta read transposed,
 *     W (m, n) <- (1 - lr_wd) * W + alpha * P Delta^T Q^T,
 * for weights stored (out, in) as nn.Linear's: called with the pair's P and Q
 * swapped it applies (P Delta Q^T)^T to W^T's storage.  A bf16 W (2-byte
 * elements) is updated in float32 and rounded back stochastically.
 */
#ifndef LSPO_PROJ_APPLY_H
#define LSPO_PROJ_APPLY_H

#include <stdint.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_proj_apply_args {
	float alpha;  /* scale of P Delta Q^T: 1 when Delta already holds -lr */
	float lr_wd;  /* W *= 1 - lr_wd before the update */
	uint64_t sr_key;  /* a bf16 W: the key of its stochastic rounding (bf16.h) */
};

/* The pure kernel.  W row stride ldw, Delta row stride ldd; e is a (d, n)
 * scratch (row stride n).  Fixed summation order, AVX2 where available. */
void proj_apply_cpu(int m, int n, int d, int r, const int32_t *pidx, const float *pval,
                    const int32_t *qidx, const float *qval, const float *Delta, int ldd,
                    float alpha, float lr_wd, float *W, int ldw, float *e);

/* The same with Delta read transposed: W += alpha P Delta^T Q^T. */
void proj_apply_t_cpu(int m, int n, int d, int r, const int32_t *pidx, const float *pval,
                      const int32_t *qidx, const float *qval, const float *Delta, int ldd,
                      float alpha, float lr_wd, float *W, int ldw, float *e);

void proj_apply_cuda(void *buffers[], void *cl_arg);
void proj_apply_t_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_proj_apply, cl_proj_apply_t;

/* Submits the update: W (m, n) RW, pidx/pval (m, r) R, qidx/qval (n, r) R,
 * Delta (d, d) R.  LSPO_EINVAL if the shapes do not agree. */
int lspo_proj_apply_submit(starpu_data_handle_t W, starpu_data_handle_t pidx,
                           starpu_data_handle_t pval, starpu_data_handle_t qidx,
                           starpu_data_handle_t qval, starpu_data_handle_t Delta,
                           float alpha, float lr_wd, int priority, const char *name);
/* The same arguments and checks; W (m, n) += alpha P Delta^T Q^T after the decay. */
int lspo_proj_apply_t_submit(starpu_data_handle_t W, starpu_data_handle_t pidx,
                             starpu_data_handle_t pval, starpu_data_handle_t qidx,
                             starpu_data_handle_t qval, starpu_data_handle_t Delta,
                             float alpha, float lr_wd, int priority, const char *name);

/* --bf16-update stochastic: the same update (transposed 0: proj_apply,
 * 1: proj_apply_t) on a bf16 W, computed in float32 as for a float32 W and
 * rounded back stochastically with sr_key (bf16.h: lspo_sr_key), element
 * (i, j) with index i n + j; CPU and CUDA codelets give the same bits. */
int lspo_proj_apply_sr_submit(starpu_data_handle_t W, starpu_data_handle_t pidx, starpu_data_handle_t pval,
                              starpu_data_handle_t qidx, starpu_data_handle_t qval, starpu_data_handle_t Delta,
                              float alpha, float lr_wd, int transposed, uint64_t sr_key, int priority,
                              const char *name);

#ifdef __cplusplus
}
#endif
#endif
