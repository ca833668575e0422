/*
 * proj_error.h - one term of a projector check (issue 12): the relative
 * error |P P^T G Q Q^T - G|_F / |G|_F of a (d, r)-sparse pair on one
 * gradient G (m, n), and optionally the part of G's norm the pair keeps,
 * |P^T G Q|_F / |G|_F at |P|_F^2 = |Q|_F^2 = d (lspo_proj_captured).
 * Both go to slot `slot` of a per-pair vector of doubles, (err, captured).
 * CPU kernel: projector_learn.c's ELL products, so a check made of these
 * tasks gives lspo_proj_error's numbers bit for bit.
 */
#ifndef LSPO_PROJ_ERROR_H
#define LSPO_PROJ_ERROR_H

#include <stdint.h>

#include "codelet_util.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_proj_error_args {
	int slot;      /* out[2 slot] = error, out[2 slot + 1] = captured */
	int captured;  /* 0: the captured part is not computed (left as it is) */
	int d;         /* the pair's subspace size */
};

void proj_error_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_proj_error;

/* Submits the error of the pair (pidx, pval: (m, r); qidx, qval: (n, r);
 * int32 indices into [0, d)) on G (m, n) R into out (a vector of doubles of
 * at least 2 slot + 2, RW).  LSPO_EINVAL if the shapes do not agree. */
int lspo_proj_error_submit(starpu_data_handle_t pidx, starpu_data_handle_t pval,
                           starpu_data_handle_t qidx, starpu_data_handle_t qval, int d,
                           starpu_data_handle_t G, starpu_data_handle_t out, int slot, int captured,
                           int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
