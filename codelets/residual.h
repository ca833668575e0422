/* residual.h - element-wise sums of the residual stream. */
#ifndef LSPO_RESIDUAL_H
#define LSPO_RESIDUAL_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out = a + b, n elements. */
void residual_forward_cpu(float *out, const float *a, const float *b, size_t n);
/* y += x, n elements (gradient accumulation along the residual stream). */
void accumulate_cpu(float *y, const float *x, size_t n);

void residual_forward_cuda(void *buffers[], void *cl_arg);
void accumulate_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_residual_fwd, cl_accumulate;

/* Matrices of equal shape.  out written (W). */
int lspo_residual_fwd_submit(starpu_data_handle_t a, starpu_data_handle_t b,
                             starpu_data_handle_t out, int priority, const char *name);
/* y += x (y RW). */
int lspo_accumulate_submit(starpu_data_handle_t x, starpu_data_handle_t y,
                           int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
