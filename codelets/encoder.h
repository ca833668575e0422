/* encoder.h - token + position embedding, and its backward scatter-add. */
#ifndef LSPO_ENCODER_H
#define LSPO_ENCODER_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = wte[tok[i]] + wpe[i % T] for the N = B*T tokens.
 * out (N, C), tok (N) int32 in [0, V), wte (V, C), wpe (maxT, C), T <= maxT. */
void encoder_forward_cpu(float *out, const int32_t *tok, const float *wte, const float *wpe,
                         int N, int T, int C);
/* dwte[tok[i]] += dout[i]; dwpe[i % T] += dout[i], in token order (deterministic).
 * dwte (V, C), dwpe (maxT, C), dout (N, C). */
void encoder_backward_cpu(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                          int N, int T, int C);

void encoder_forward_cuda(void *buffers[], void *cl_arg);
void encoder_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_encoder_fwd, cl_encoder_bwd;

/* tok: int32 matrix (B, T); wte (V, C); wpe (maxT, C); out (B*T, C) written. */
int lspo_encoder_fwd_submit(starpu_data_handle_t tok, starpu_data_handle_t wte,
                            starpu_data_handle_t wpe, starpu_data_handle_t out,
                            int priority, const char *name);
/* dwte, dwpe accumulated (RW); dout (B*T, C). */
int lspo_encoder_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t tok,
                            starpu_data_handle_t dwte, starpu_data_handle_t dwpe,
                            int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
