/* attention.h - causal multi-head softmax attention on a fused qkv. */
#ifndef LSPO_ATTENTION_H
#define LSPO_ATTENTION_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Task arguments of both codelets (T and C come from the buffers). */
struct lspo_attention_args {
	int B, NH;
};

/* For batch b, head h (hs = C / NH), positions t2 <= t:
 *   out[b,t,h] = sum_t2 softmax_t2(q[b,t,h] . k[b,t2,h] / sqrt(hs)) v[b,t2,h],
 * with q, k, v the three C-wide thirds of each qkv row (HF c_attn order).
 * Saves lse[b,h,t] = log sum_t2 exp(score) for the backward pass.
 * out (B*T, C); qkv (B*T, 3C); lse (1, B*NH*T). */
void attention_forward_cpu(float *out, float *lse, const float *qkv, int B, int T, int C, int NH);
/* dqkv = d/dqkv given dout (overwrites dqkv); recomputes the probabilities
 * from qkv and lse.  dqkv, qkv (B*T, 3C); dout, out (B*T, C); lse (1, B*NH*T). */
void attention_backward_cpu(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, int B, int T, int C, int NH);

void attention_forward_cuda(void *buffers[], void *cl_arg);
void attention_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_attention_fwd, cl_attention_bwd;

/* B and NH are arguments; T = rows / B, C = cols of out.  out, lse written. */
int lspo_attention_fwd_submit(starpu_data_handle_t qkv, starpu_data_handle_t out,
                              starpu_data_handle_t lse, int B, int NH,
                              int priority, const char *name);
/* dqkv written (W). */
int lspo_attention_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t qkv,
                              starpu_data_handle_t out, starpu_data_handle_t lse,
                              starpu_data_handle_t dqkv, int B, int NH,
                              int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
