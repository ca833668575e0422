/*
 * project_fwd.h - compress the input side of a linear layer in the forward
 * pass: A (d, T) = P^T X^T for Y (T, n) = X (T, m) W (m, n), with P (m, d)
 * a (d, r)-sparse projector in ELL form (r column indices and r values per
 * row).  A replaces X as what the backward pass keeps (lsp-offload.md 5.2).
 *
 * ELL handles: the indices are an int32 (rows, r) matrix handle
 * (lspo_matrix_register_elem(.., sizeof(int32_t))), the values a float
 * (rows, r) matrix handle; each row holds r distinct columns in [0, d).
 */
#ifndef LSPO_PROJECT_FWD_H
#define LSPO_PROJECT_FWD_H

#include <stdint.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The pure kernel, shared with project_bwd: out (d, T) = S^T X^T, where
 * S (N, d) is ELL (idx, val: (N, r)) and X is (T, N) with row stride ldx;
 * out has row stride ldo >= T and is overwritten.  Fixed summation order
 * (rows of S in order), AVX2 where the CPU has it: O(N r T). */
void project_fwd_cpu(int T, int N, int d, int r, const int32_t *idx, const float *val,
                     const float *X, int ldx, float *out, int ldo);

/* The CUDA side of the same product on the worker's stream; out is zeroed
 * first and accumulated with atomics (order of float additions not fixed). */
void project_fwd_cuda_launch(int T, int N, int d, int r, const int32_t *idx, const float *val,
                             const float *X, int ldx, float *out, int ldo, void *stream);
void project_fwd_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_project_fwd;

/* Submits A (d, T) = P^T X^T: X (T, m) R, pidx (m, r) int32 R, pval (m, r) R,
 * A (d, T) W.  LSPO_EINVAL if the shapes do not agree. */
int lspo_project_fwd_submit(starpu_data_handle_t X, starpu_data_handle_t pidx,
                            starpu_data_handle_t pval, starpu_data_handle_t A,
                            int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
