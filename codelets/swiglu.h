/* swiglu.h - the gated MLP activation of Llama-family models: silu(gate) * up. */
#ifndef LSPO_SWIGLU_H
#define LSPO_SWIGLU_H

#include <stddef.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = silu(gate) * up element-wise, silu(g) = g / (1 + exp(-g)). n elements. */
void swiglu_forward_cpu(float *out, const float *gate, const float *up, size_t n);
/* With s = sigmoid(gate): dgate = dout * up * s (1 + gate (1 - s)),
 * dup = dout * gate * s (both overwritten).  n elements. */
void swiglu_backward_cpu(float *dgate, float *dup, const float *gate, const float *up,
                         const float *dout, size_t n);

void swiglu_forward_cuda(void *buffers[], void *cl_arg);
void swiglu_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_swiglu_fwd, cl_swiglu_bwd;

/* gate, up (N, I) read; out (N, I) written (W). */
int lspo_swiglu_fwd_submit(starpu_data_handle_t gate, starpu_data_handle_t up,
                           starpu_data_handle_t out, int prio, const char *name);
/* gate, up, dout (N, I) read; dgate, dup (N, I) written (W). */
int lspo_swiglu_bwd_submit(starpu_data_handle_t gate, starpu_data_handle_t up,
                           starpu_data_handle_t dout, starpu_data_handle_t dgate,
                           starpu_data_handle_t dup, int prio, const char *name);

#ifdef __cplusplus
}
#endif
#endif
