/*
 * lsp_learn.h - projector checks and learning as StarPU tasks (issue 12):
 * what lsp_learn.c needs of the lsp mode's state (offload.c) and what
 * offload.c calls.
 */
#ifndef LSPO_LSP_LEARN_H
#define LSPO_LSP_LEARN_H

#include <starpu.h>

#include "engine/model.h"

struct lsp_learn;   /* one model's check state (lsp_learn.c) */

/* Matrix k of the lsp mode (offload.c): its pair, its gradient's tensor and
 * layout, its subspace moments. */
struct lsp_check_matrix {
	struct lspo_proj *proj;
	int tensor, layer, m, n, d;
	int transposed;                 /* the weight is stored (out, in) = (n, m) */
	starpu_data_handle_t M, V;      /* (d, d) */
};
struct lsp_check_matrix lsp_check_matrix_at(struct lspo_model *m, int k);
const struct lspo_offload_opts *lsp_check_opts(const struct lspo_model *m);
struct lsp_learn **lsp_check_state(struct lspo_model *m);

/* Calibration batch b's weight gradients (in m->hg after model_dense_grads)
 * added to the check's sums, as tasks (calib_add). */
int lsp_learn_calib_add(struct lspo_model *m, int b);
/* After the calibration: each pair's error (tasks, waited for); then with
 * lag 0 the whole learning, re-projection and publication (tasks, waited
 * for) and *report complete; with lag >= 1, the learning is spread over
 * the next lag calls of lsp_learn_advance. */
int lsp_learn_check(struct lspo_model *m, int lag, struct lspo_lsp_check *report);
int lsp_learn_advance(struct lspo_model *m, int *published, struct lspo_lsp_check *report);
/* A check still in the background published now (before a new one). */
int lsp_learn_flush(struct lspo_model *m);
/* Waits for the tasks and frees the state (from the mode's free). */
void lsp_learn_free(struct lsp_learn *l);

#endif
