/* rmsnorm.h - RMS normalisation over the last dimension (HF LlamaRMSNorm). */
#ifndef LSPO_RMSNORM_H
#define LSPO_RMSNORM_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Task argument of the forward codelet. */
struct lspo_rmsnorm_args {
	float eps;
};

/* out = w * (inp * rstd) per row, rstd = 1 / sqrt(mean(inp^2) + eps) in fp32;
 * saves rstd for backward.  out, inp (N, C); w (1, C); rstd (1, N). */
void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                         float eps);
/* Accumulates: dinp += d/dinp, dw += d/dw (rows in increasing order).
 * dinp, dout, inp (N, C); dw, w (1, C); rstd (1, N). */
void rmsnorm_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int C);

void rmsnorm_forward_cuda(void *buffers[], void *cl_arg);
void rmsnorm_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_rmsnorm_fwd, cl_rmsnorm_bwd;

/* inp (N, C), w (1, C) read; out (N, C) and rstd (1, N) written (W). */
int lspo_rmsnorm_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t w,
                            starpu_data_handle_t out, starpu_data_handle_t rstd, float eps,
                            int prio, const char *name);
/* dinp (N, C) and dw (1, C) accumulated (RW; the caller zero-fills dw). */
int lspo_rmsnorm_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t inp,
                            starpu_data_handle_t w, starpu_data_handle_t rstd,
                            starpu_data_handle_t dinp, starpu_data_handle_t dw, int prio,
                            const char *name);

#ifdef __cplusplus
}
#endif
#endif
