/* gelu.h - GELU, tanh approximation (HF "gelu_new"). */
#ifndef LSPO_GELU_H
#define LSPO_GELU_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), n elements. */
void gelu_forward_cpu(float *out, const float *inp, size_t n);
/* dinp = gelu'(inp) * dout (overwrites dinp), n elements. */
void gelu_backward_cpu(float *dinp, const float *inp, const float *dout, size_t n);

void gelu_forward_cuda(void *buffers[], void *cl_arg);
void gelu_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_gelu_fwd, cl_gelu_bwd;

/* Matrices of equal shape; out / dinp written (W). */
int lspo_gelu_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t out,
                         int priority, const char *name);
int lspo_gelu_bwd_submit(starpu_data_handle_t inp, starpu_data_handle_t dout,
                         starpu_data_handle_t dinp, int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
