/*
 * proj_learn.h - one Adam iteration of a projector pair's learning on one
 * gradient (issue 12; lsp-offload.md 7.1, 7.2): the analytic gradient of
 * the relative error |P P^T G Q Q^T - G|_F / |G|_F with respect to the
 * non-zero values of P (m, r) and Q (n, r) (ELL, int32 indices into
 * [0, d)), through sparse-dense products only (projector_learn.c), then
 * Adam on the values with bias correction of step t:
 *   m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
 *   x <- x - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps).
 * The moments live in one vector (2 (m + n) r floats): first moments of P
 * then Q, then second moments of P then Q.  A chain of these tasks on one
 * pair gives lspo_proj_learn's values bit for bit.
 */
#ifndef LSPO_PROJ_LEARN_H
#define LSPO_PROJ_LEARN_H

#include <stdint.h>

#include "codelet_util.h"
#include "lspo.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_proj_learn_args {
	int d;                            /* the pair's subspace size */
	int t;                            /* Adam step, 1, 2, ... */
	struct lspo_proj_learn_opts opts; /* lr, beta1, beta2, eps (iters unused) */
};

void proj_learn_cuda(void *buffers[], void *cl_arg);
extern struct starpu_codelet cl_proj_learn;

/* Submits Adam step t of the pair's values on G (m, n) R: pidx, qidx R,
 * pval, qval RW, mom (a vector of 2 (m + n) r floats) RW.  LSPO_EINVAL if
 * the shapes do not agree or t < 1. */
int lspo_proj_learn_submit(starpu_data_handle_t pidx, starpu_data_handle_t pval,
                           starpu_data_handle_t qidx, starpu_data_handle_t qval, int d,
                           starpu_data_handle_t G, starpu_data_handle_t mom, int t,
                           const struct lspo_proj_learn_opts *opts, int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
