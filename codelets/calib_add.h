/*
 * calib_add.h - a projector check's calibration gradient (issue 12): the
 * weight gradient of one compressed linear map in the (in, out) = (m, n)
 * form the projectors see, summed over the calibration batches:
 *   C = G  (first batch),  C += G  (later ones),
 * G read as stored: (m, n), or (n, m) for a weight stored (out, in)
 * (transposed on the way).
 */
#ifndef LSPO_CALIB_ADD_H
#define LSPO_CALIB_ADD_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_calib_add_args {
	int first;      /* 1: C = G; 0: C += G */
	int transpose;  /* 1: G is stored (n, m) */
};

/* C (m, n) row stride ldc; G (m, n), or (n, m) when transpose, row stride ldg. */
void calib_add_cpu(int m, int n, const float *G, int ldg, int transpose, int first, float *C, int ldc);

void calib_add_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_calib_add;

/* Submits C (m, n) W (first) or RW += G R, G (m, n), or (n, m) with transpose.
 * LSPO_EINVAL if the shapes do not agree. */
int lspo_calib_add_submit(starpu_data_handle_t G, int transpose, starpu_data_handle_t C, int first,
                          int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
