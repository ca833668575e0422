/* layernorm.h - layer normalisation over the last dimension, eps = 1e-5. */
#ifndef LSPO_LAYERNORM_H
#define LSPO_LAYERNORM_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LSPO_LAYERNORM_EPS 1e-5f

/* out = (inp - mean) * rstd * w + b per row; saves mean and rstd for backward.
 * out, inp (N, C); w, b (1, C); mean, rstd (1, N). */
void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C);
/* Accumulates: dinp += d/dinp, dw += d/dw, db += d/db.
 * dinp, dout, inp (N, C); dw, db, w (1, C); mean, rstd (1, N). */
void layernorm_backward_cpu(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C);

void layernorm_forward_cuda(void *buffers[], void *cl_arg);
void layernorm_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_layernorm_fwd, cl_layernorm_bwd;

/* out, mean, rstd written (W); inp, w, b read. */
int lspo_layernorm_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t w,
                              starpu_data_handle_t b, starpu_data_handle_t out,
                              starpu_data_handle_t mean, starpu_data_handle_t rstd,
                              int priority, const char *name);
/* dinp, dw, db accumulated (RW). */
int lspo_layernorm_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t inp,
                              starpu_data_handle_t w, starpu_data_handle_t mean,
                              starpu_data_handle_t rstd, starpu_data_handle_t dinp,
                              starpu_data_handle_t dw, starpu_data_handle_t db,
                              int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
