/* adamw.h - AdamW (decoupled weight decay) on one parameter tensor. */
#ifndef LSPO_ADAMW_H
#define LSPO_ADAMW_H

#include <math.h>
#include <stdint.h>

#include "codelet_util.h"
#include "bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_adamw_hparams {
	float lr, beta1, beta2, eps, weight_decay;
	int t;  /* step number, from 1: bias corrections 1 - beta^t */
	uint64_t sr_key;  /* a bf16 param: the key of its stochastic rounding (bf16.h) */
};

/* One element of AdamW on a bf16 parameter (--bf16-update stochastic): the
 * float32 arithmetic of the CPU and CUDA codelets, every product-sum an
 * explicit fmaf so that no compiler contracts it differently; returns the
 * new parameter (before rounding), updates *m and *v.  decay = 1 - lr wd,
 * step = lr / (1 - b1^t), isb = 1 / sqrt(1 - b2^t). */
static inline LSPO_HD float lspo_adamw_elem(float p, float g, float *m, float *v, float decay, float b1,
                                            float b2, float step, float isb, float eps)
{
	float mi = fmaf(b1, *m, (1.0f - b1) * g);
	float vi = fmaf(b2, *v, ((1.0f - b2) * g) * g);
	*m = mi;
	*v = vi;
	return fmaf(-step, mi / fmaf(sqrtf(vi), isb, eps), p * decay);
}

/* As torch.optim.AdamW: g = grad * grad_scale;
 *   p -= lr * wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
 * AVX2 where the CPU has it, scalar tail: any n works.  p, grad, m, v (n).
 * The codelet also takes a bf16 param (2-byte elements; grad, m, v float32):
 * lspo_adamw_elem per element, rounded back stochastically with h->sr_key,
 * element (r, c) with index r cols + c. */
void adamw_cpu(float *p, const float *grad, float *m, float *v, size_t n,
               const struct lspo_adamw_hparams *h, float grad_scale);

void adamw_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_adamw;

/* param, m, v RW; grad R; clip R: a (1, 2) matrix {norm, scale} written by
 * lspo_clip_scale_submit, whose scale multiplies the gradient (the clip is
 * data, so no host wait sits between the norm and the update).  All of
 * param, grad, m, v have the same shape. */
int lspo_adamw_submit(starpu_data_handle_t param, starpu_data_handle_t grad,
                      starpu_data_handle_t m, starpu_data_handle_t v, starpu_data_handle_t clip,
                      const struct lspo_adamw_hparams *h, int priority, const char *name);

/* The same, restricted to the workers in `where` (STARPU_CPU: ZeRO-Offload's
 * CPU update). */
int lspo_adamw_submit_where(starpu_data_handle_t param, starpu_data_handle_t grad,
                            starpu_data_handle_t m, starpu_data_handle_t v, starpu_data_handle_t clip,
                            const struct lspo_adamw_hparams *h, uint32_t where,
                            int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
