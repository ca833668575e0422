/* gradnorm.h - global gradient norm and the clipping scale, as tasks. */
#ifndef LSPO_GRADNORM_H
#define LSPO_GRADNORM_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Task arguments of clip_scale: n partial handles, then the clip handle. */
struct lspo_clip_args {
	float max_norm;
	int n;
};

/* Sum of squares of n floats, accumulated in double in a fixed order that
 * depends on n only (16 interleaved partial sums, element i in sum i % 16,
 * added in a fixed tree): deterministic, and the same bits on every CPU. */
double sumsq_cpu(const float *x, size_t n);

void sumsq_cuda(void *buffers[], void *cl_arg);
void clip_scale_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_sumsq, cl_clip_scale;

/* out: a (1, 1) double matrix (elemsize 8) <- sum of squares of x (any matrix). */
int lspo_sumsq_submit(starpu_data_handle_t x, starpu_data_handle_t out,
                      int priority, const char *name);
/* The same, restricted to the workers in `where` (STARPU_CPU: the gradient
 * moves to host memory as soon as it is complete, as ZeRO-Offload's does). */
int lspo_sumsq_submit_where(starpu_data_handle_t x, starpu_data_handle_t out, uint32_t where,
                            int priority, const char *name);
/* clip: (1, 2) float matrix <- { norm, scale } with norm = sqrt(sum of the n
 * partial sums, added in order) and scale = min(1, max_norm / (norm + 1e-6))
 * (torch.nn.utils.clip_grad_norm_); max_norm <= 0 means no clipping (scale 1). */
int lspo_clip_scale_submit(starpu_data_handle_t *partials, int n, starpu_data_handle_t clip,
                           float max_norm, int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
