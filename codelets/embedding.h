/* embedding.h - token embedding (Llama, Qwen2), and its backward scatter-add. */
#ifndef LSPO_EMBEDDING_H
#define LSPO_EMBEDDING_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[i] = wte[tok[i]] for the N tokens; out (N, C), tok (N) int32 in [0, V), wte (V, C). */
void embedding_forward_cpu(float *out, const int32_t *tok, const float *wte, int N, int C);
/* dwte[tok[i]] += dout[i], in token order (deterministic); dwte (V, C), dout (N, C). */
void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tok, int N, int C);

void embedding_forward_cuda(void *buffers[], void *cl_arg);
void embedding_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_embedding_fwd, cl_embedding_bwd;

/* tok: int32 matrix (B, T); wte (V, C); out (B*T, C) written. */
int lspo_embedding_fwd_submit(starpu_data_handle_t tok, starpu_data_handle_t wte, starpu_data_handle_t out,
                              int priority, const char *name);
/* dwte accumulated (RW); dout (B*T, C). */
int lspo_embedding_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t tok, starpu_data_handle_t dwte,
                              int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
