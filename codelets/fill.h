/* fill.h - set every element of a float matrix to one value (zeroing gradients). */
#ifndef LSPO_FILL_H
#define LSPO_FILL_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x (rows, cols) with row stride ld <- value. */
void fill_cpu(float *x, int rows, int cols, int ld, float value);

void fill_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_fill;

/* x written (W) with `value`. */
int lspo_fill_submit(starpu_data_handle_t x, float value, int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
