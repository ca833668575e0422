/*
 * accum.c - gradient accumulation: K micro-batches per optimizer step.
 *
 * A step of K micro-batches submits K forward-backward passes, then (in
 * model.c's step) the mode's after_backward, the norm and the update once,
 * all in one task graph with the step's one wait.  The gradients add up where they are
 * formed: the first micro-batch writes them as a step without accumulation
 * does, the others run the same graph with model->accumulating set, which
 * turns each gradient's first write into an addition (model_grad_beta: the
 * products that form a weight's gradient get beta 1, and model_grad_zero
 * drops the zeroing before the kernels that add into a gradient).  In lsp
 * mode the compressed G_hat = P^T G Q, linear in G, adds up the same way in
 * its project_bwd, so what is offloaded is one G_hat (or in zero mode one
 * gradient) per step, as for one batch of K B rows.
 *
 * The loss's gradient is scaled by 1 / (targets of all K micro-batches),
 * the big batch's scale, so the sum is the big batch's gradient within
 * float summation order.  Each micro-batch has its own token, target and
 * loss handles (host memory owned here), so that the host never waits for
 * one micro-batch before submitting the next; the step's loss sums the K
 * loss vectors in the big batch's order.
 */
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "runtime/memstat.h"
#include "fill.h"

/* One micro-batch's inputs and per-target losses (B, T). */
struct micro {
	int32_t *tok, *tgt;
	float *loss;
	starpu_data_handle_t tokens, targets, targets_flat, losses;
};

struct model_accum {
	int n;                                 /* micro-batches with handles */
	struct micro *mb;
};

int model_grad_zero(struct lspo_model *m, starpu_data_handle_t grad, int prio, const char *name)
{
	return m->accumulating ? LSPO_OK : lspo_fill_submit(grad, 0.0f, prio, name);
}

/* Handles for at least K micro-batches. */
static int reserve(struct lspo_model *m, int K)
{
	struct model_accum *a = m->accum;
	if (!a && !(a = m->accum = calloc(1, sizeof(*a))))
		LSPO_FAIL(LSPO_ENOMEM, "gradient accumulation: out of memory");
	if (a->n >= K)
		return LSPO_OK;
	struct micro *mb = realloc(a->mb, (size_t)K * sizeof(*mb));
	if (!mb)
		LSPO_FAIL(LSPO_ENOMEM, "gradient accumulation: out of memory for %d micro-batches", K);
	a->mb = mb;
	size_t N = (size_t)m->N;
	for (; a->n < K; a->n++) {
		struct micro *u = &a->mb[a->n];
		memset(u, 0, sizeof(*u));
		if (starpu_malloc((void **)&u->tok, N * sizeof(int32_t))
		    || starpu_malloc((void **)&u->tgt, N * sizeof(int32_t))
		    || starpu_malloc((void **)&u->loss, N * sizeof(float))) {
			if (u->tok)
				starpu_free(u->tok);
			if (u->tgt)
				starpu_free(u->tgt);
			LSPO_FAIL(LSPO_ENOMEM, "gradient accumulation: out of memory for micro-batch %d", a->n + 1);
		}
		memset(u->loss, 0, N * sizeof(float));
		lspo_matrix_register_elem(&u->tokens, u->tok, m->B, m->T, sizeof(int32_t));
		lspo_matrix_register_elem(&u->targets, u->tgt, m->B, m->T, sizeof(int32_t));
		lspo_matrix_register_elem(&u->targets_flat, u->tgt, 1, m->N, sizeof(int32_t));
		lspo_matrix_register(&u->losses, u->loss, 1, m->N);
	}
	return LSPO_OK;
}

int model_accum_set_batches(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, int K)
{
	size_t N = (size_t)m->N, all = (size_t)K * N;
	for (size_t i = 0; i < all; i++) {
		int k = (int)(i / N), at = (int)(i % N);
		if (inputs[i] < 0 || inputs[i] >= m->cfg.vocab_size)
			LSPO_FAIL(LSPO_EINVAL, "micro-batch %d: input token %d at position %d is outside the "
			          "vocabulary [0, %d)", k + 1, inputs[i], at, m->cfg.vocab_size);
		if (targets && targets[i] >= m->cfg.vocab_size)
			LSPO_FAIL(LSPO_EINVAL, "micro-batch %d: target token %d at position %d is outside the "
			          "vocabulary [0, %d)", k + 1, targets[i], at, m->cfg.vocab_size);
	}
	TRY(reserve(m, K));
	/* Negative targets are ignored; every micro-batch's loss gradient is
	 * scaled by the count of the whole step's. */
	m->ntargets = 0;
	for (size_t i = 0; i < all; i++)
		m->ntargets += !targets || targets[i] >= 0;
	if (m->dp_hooks)   /* data parallel: the count of every rank's micro-batches */
		TRY(m->dp_hooks->batch(m));
	for (int k = 0; k < K; k++) {
		struct micro *u = &m->accum->mb[k];
		starpu_data_acquire(u->tokens, STARPU_W);
		memcpy(u->tok, inputs + k * N, N * sizeof(int32_t));
		starpu_data_release(u->tokens);
		/* targets and targets_flat view the same memory: both are written */
		starpu_data_acquire(u->targets, STARPU_W);
		starpu_data_acquire(u->targets_flat, STARPU_W);
		if (targets)
			memcpy(u->tgt, targets + k * N, N * sizeof(int32_t));
		else
			memset(u->tgt, 0, N * sizeof(int32_t));
		starpu_data_release(u->targets_flat);
		starpu_data_release(u->targets);
		lspo_mem_host_wrote(u->tokens);   /* memstat.h: accelerators' copies are stale */
		lspo_mem_host_wrote(u->targets);
		lspo_mem_host_wrote(u->targets_flat);
	}
	return LSPO_OK;
}

int model_accum_submit(struct lspo_model *m, int K)
{
	starpu_data_handle_t tokens = m->tokens, targets = m->targets, flat = m->targets_flat, losses = m->losses;
	int rc = LSPO_OK;
	for (int k = 0; k < K && !rc; k++) {
		struct micro *u = &m->accum->mb[k];
		m->tokens = u->tokens;
		m->targets = u->targets;
		m->targets_flat = u->targets_flat;
		m->losses = u->losses;
		m->accumulating = k > 0;
		m->dp_defer = k < K - 1;   /* data parallel: reduce the sums, after the last */
		rc = model_submit_gradients(m);
	}
	m->accumulating = 0;
	m->dp_defer = 0;
	m->tokens = tokens;
	m->targets = targets;
	m->targets_flat = flat;
	m->losses = losses;
	return rc;
}

/* The sum in the order of one batch of K B rows, over its targets. */
double model_accum_mean_loss(struct lspo_model *m, int K)
{
	double sum = 0;
	for (int k = 0; k < K; k++) {
		struct micro *u = &m->accum->mb[k];
		starpu_data_acquire(u->losses, STARPU_R);
		for (int i = 0; i < m->N; i++)
			sum += u->loss[i];
		starpu_data_release(u->losses);
	}
	if (m->dp_hooks)
		return m->dp_hooks->loss(m, sum);
	return m->ntargets ? sum / m->ntargets : 0.0;
}

void model_accum_free(struct lspo_model *m)
{
	struct model_accum *a = m->accum;
	if (!a)
		return;
	for (int k = 0; k < a->n; k++) {
		struct micro *u = &a->mb[k];
		starpu_data_unregister(u->tokens);
		starpu_data_unregister(u->targets);
		starpu_data_unregister(u->targets_flat);
		starpu_data_unregister(u->losses);
		starpu_free(u->tok);
		starpu_free(u->tgt);
		starpu_free(u->loss);
	}
	free(a->mb);
	free(a);
	m->accum = NULL;
}
