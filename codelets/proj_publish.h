/*
 * proj_publish.h - the end of a projector check for one pair (issue 12,
 * stage reproject): from the errors the check's proj_error tasks left in
 * the pair's vector (slots 0..n-1: the pair in place, n..2n-1: the fresh
 * random pair, 2n..3n-1: the learned candidate, each (error, captured)),
 * chooses what to install (lspo_proj_refresh_install: learned if it beats
 * min(1, the old error), else the fresh pair if it beats the old one, else
 * nothing), re-projects the Adam moments of the pair's n matrices onto the
 * chosen pair and copies it into the pair in place (publication); then the
 * new pair's error and captured part on the same gradients.
 */
#ifndef LSPO_PROJ_PUBLISH_H
#define LSPO_PROJ_PUBLISH_H

#include "codelet_util.h"
#include "lspo.h"

#ifdef __cplusplus
extern "C" {
#endif

struct lspo_proj;

struct lspo_proj_publish_args {
	int n;                                   /* matrices using the pair */
	int d;                                   /* its subspace size */
	struct lspo_proj *live;                  /* the pair in place (its cached gain is reset) */
	struct lspo_proj_refresh_report *report; /* written by the task (host memory) */
};

extern struct starpu_codelet cl_proj_publish;

/* live[4], fresh[4], learned[4]: (pidx, pval, qidx, qval) of each pair
 * (live RW, the others R); errs: the pair's vector of 6 n doubles, R;
 * G[k] (m, n) R, M[k], V[k] (d, d) RW for the n matrices.  *report is
 * written when the task runs. */
int lspo_proj_publish_submit(struct lspo_proj *live_pair, const starpu_data_handle_t live[4],
                             const starpu_data_handle_t fresh[4], const starpu_data_handle_t learned[4],
                             starpu_data_handle_t errs, int n, int d, const starpu_data_handle_t *G,
                             const starpu_data_handle_t *M, const starpu_data_handle_t *V,
                             struct lspo_proj_refresh_report *report, int priority, const char *name);

#ifdef __cplusplus
}
#endif
#endif
