/* xent.h - fused softmax + cross-entropy over the vocabulary. */
#ifndef LSPO_XENT_H
#define LSPO_XENT_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* losses[i] = -log softmax(logits[i])[targets[i]].
 * If dlogits is not NULL it receives (softmax(logits[i]) - onehot(targets[i])) * dloss,
 * and may be the same array as logits (in place).
 * logits, dlogits (N, V); targets (N) int32 in [0, V), or negative: ignored (loss and
 * gradient row 0); losses (1, N). */
void xent_cpu(float *losses, float *dlogits, const float *logits, const int32_t *targets,
              int N, int V, float dloss);

/* Task argument of cl_xent_fwdbwd (cl_xent_fwd takes none). */
struct lspo_xent_args {
	float dloss;  /* scale of the gradient: 1/N for a mean loss */
};

void xent_forward_cuda(void *buffers[], void *cl_arg);
void xent_backward_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_xent_fwd, cl_xent_fwdbwd;

/* Forward only (evaluation): logits (N, V) read, targets int32 (B, T), losses (1, N) written. */
int lspo_xent_fwd_submit(starpu_data_handle_t logits, starpu_data_handle_t targets,
                         starpu_data_handle_t losses, int priority, const char *name);
/* Training: logits (N, V) RW, overwritten in place by dlogits = (p - y) * dloss
 * (dloss = 1/N for a mean loss); losses (1, N) written. */
int lspo_xent_fwdbwd_submit(starpu_data_handle_t logits, starpu_data_handle_t targets,
                            starpu_data_handle_t losses, float dloss,
                            int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
