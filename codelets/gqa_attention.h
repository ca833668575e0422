/* gqa_attention.h - causal softmax attention with grouped K/V heads (GQA). */
#ifndef LSPO_GQA_ATTENTION_H
#define LSPO_GQA_ATTENTION_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Task arguments of both codelets (T comes from the buffers: rows / B). */
struct lspo_gqa_attention_args {
	int B, n_head, n_kv_head, head_dim;
};

/* For batch b, query head h, its K/V head g = h / (n_head / n_kv_head) and
 * positions t2 <= t:
 *   out[b,t,h] = sum_t2 softmax_t2(q[b,t,h] . k[b,t2,g] / sqrt(hd)) v[b,t2,g].
 * Saves lse[b,h,t] = log sum_t2 exp(score) for the backward pass.
 * q, out (B*T, n_head*hd); k, v (B*T, n_kv_head*hd); lse (1, B*n_head*T). */
void gqa_attention_forward_cpu(float *out, float *lse, const float *q, const float *k, const float *v,
                               int B, int T, int n_head, int n_kv_head, int head_dim);
/* dq, dk, dv = d/dq, d/dk, d/dv given dout (all three overwritten; dk and dv
 * sum over the query heads of each group); recomputes the probabilities
 * from q, k and lse.  Shapes as the forward, dq and dout as q, dk and dv as k. */
void gqa_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *out, const float *lse,
                                int B, int T, int n_head, int n_kv_head, int head_dim);

void gqa_attention_forward_cuda(void *buffers[], void *cl_arg);
void gqa_attention_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_gqa_attention_fwd, cl_gqa_attention_bwd;

/* q (N, n_head*hd), k and v (N, n_kv_head*hd) read, N = B*T; out (N, n_head*hd)
 * and lse (1, B*n_head*T) written (W).  n_kv_head divides n_head. */
int lspo_gqa_attention_fwd_submit(starpu_data_handle_t q, starpu_data_handle_t k,
                                  starpu_data_handle_t v, starpu_data_handle_t out,
                                  starpu_data_handle_t lse, int B, int n_head, int n_kv_head,
                                  int head_dim, int prio, const char *name);
/* dout, q, k, v, out, lse read; dq (as q), dk and dv (as k) written (W). */
int lspo_gqa_attention_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t q,
                                  starpu_data_handle_t k, starpu_data_handle_t v,
                                  starpu_data_handle_t out, starpu_data_handle_t lse,
                                  starpu_data_handle_t dq, starpu_data_handle_t dk,
                                  starpu_data_handle_t dv, int B, int n_head, int n_kv_head,
                                  int head_dim, int prio, const char *name);

#ifdef __cplusplus
}
#endif
#endif
