/* rope.h - rotary position embedding (HF rotate_half convention), in place. */
#ifndef LSPO_ROPE_H
#define LSPO_ROPE_H

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Task arguments (N, T come from the buffers). */
struct lspo_rope_args {
	int n_head, head_dim, inverse;
};

/* Rotates x (N, n_head * head_dim) in place.  Row n has position t = n % T;
 * per head, with x1 = x[0:hd/2], x2 = x[hd/2:hd], c = table[t, j] and
 * s = table[t, hd/2 + j]:
 *   forward: x1' = x1 c - x2 s,  x2' = x2 c + x1 s;
 *   inverse: x1' = x1 c + x2 s,  x2' = x2 c - x1 s  (the backward of forward).
 * table (T, head_dim). */
void rope_cpu(float *x, const float *table, int N, int T, int n_head, int head_dim, int inverse);

void rope_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_rope;

/* x (N, n_head * head_dim) RW with N a multiple of T; table (T, head_dim) R,
 * row t holding cos(t f_j) for j < head_dim / 2, then sin(t f_j).
 * inverse 0: forward rotation; 1: its inverse (for the gradient). */
int lspo_rope_submit(starpu_data_handle_t x, starpu_data_handle_t table, int n_head, int head_dim,
                     int inverse, int prio, const char *name);

#ifdef __cplusplus
}
#endif
#endif
