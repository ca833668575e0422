/* cast.h - float32 <-> bfloat16 conversions of whole matrices, for the
 * transfers of the zero mode's --offload-dtype bf16. */
#ifndef LSPO_CAST_H
#define LSPO_CAST_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst[i] = bf16(src[i]), round to nearest even (NaN stays NaN); n elements. */
void cast_f32_bf16_cpu(uint16_t *dst, const float *src, size_t n);
/* dst[i] = float(src[i]) (exact); n elements. */
void cast_bf16_f32_cpu(float *dst, const uint16_t *src, size_t n);

void cast_f32_bf16_cuda(void *buffers[], void *cl_arg);
void cast_bf16_f32_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_cast_f32_bf16, cl_cast_bf16_f32;

/* src float (rows, cols) R -> dst uint16 (rows, cols) W, on the workers in `where`. */
int lspo_cast_f32_bf16_submit(starpu_data_handle_t src, starpu_data_handle_t dst, uint32_t where,
                              int priority, const char *name);
/* src uint16 (rows, cols) R -> dst float (rows, cols) W. */
int lspo_cast_bf16_f32_submit(starpu_data_handle_t src, starpu_data_handle_t dst, uint32_t where,
                              int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
