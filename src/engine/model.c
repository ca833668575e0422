/*
 * model.c - the step engine: a model's training step as a StarPU task graph.
 *
 * Parameters, gradients and AdamW moments are three flat slabs in the
 * family's layout (HF state_dict order); every tensor is a matrix handle
 * viewing its slice.  Activations are handles StarPU allocates where they
 * are first written, so on a GPU they never touch host memory.  A step is
 * submitted in program order (embedding, blocks, head, loss, head backward,
 * blocks backward, embedding backward, norm, clip, optimizer); data
 * dependencies alone order the tasks, and the host waits once, at the end.
 *
 * A linear map y (N, out) = x (N, in) W + b is matrix products: y = 1 b,
 * then y += x W (x W^T for weights stored (out, in)).  Its backward is
 * dx = dy W^T, dW = x^T dy (dy^T x), db = 1^T dy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "runtime/tag.h"
#include "runtime/trace.h"
#include "runtime/memstat.h"
#include "adamw.h"
#include "cast.h"
#include "fill.h"
#include "gradnorm.h"
#include "matmul.h"
#include "xent.h"

/* ------------------------------------------------------------------------ */
/* Task names: interned once, they outlive every task that uses them.        */

const char *model_name(struct lspo_model *m, const char *op, int layer, const char *stage)
{
	enum lspo_stage st;
	const char *name;
	if (m->recomputing && stage && !strcmp(stage, "fwd"))
		stage = "recompute";   /* a checkpointed block's forward, again (recompute.c) */
	if (lspo_stage_parse(stage, &st)) {
		lspo_error("task %s: unknown stage '%s'", op, stage ? stage : "(null)");
		m->name_failed = 1;
		return NULL;
	}
	if ((!m->tags && lspo_tags_create(&m->tags)) || lspo_tags_name(m->tags, op, layer, st, &name)) {
		m->name_failed = 1;   /* logged; the step that submitted the task fails */
		return NULL;
	}
	return name;
}

/* LSPO_ENOMEM if a task of the graph just submitted got no tag: the
 * policy could not place it by its rules, so the step is not run as asked. */
static int check_names(struct lspo_model *m)
{
	if (!m->name_failed)
		return LSPO_OK;
	m->name_failed = 0;
	LSPO_FAIL(LSPO_ENOMEM, "out of memory for task tags: the step's tasks are not all tagged");
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */

void model_act(struct lspo_model *m, starpu_data_handle_t *h, int rows, int cols)
{
	size_t n = (size_t)rows * cols, esz = m->bf16 && !m->act_f32 ? sizeof(uint16_t) : sizeof(float);
	size_t floats = (n * esz + sizeof(float) - 1) / sizeof(float);   /* bf16: half */
	if (m->counting) {
		m->act_size += floats;
		return;
	}
	if (m->nacts == m->cap_acts) {
		int cap = m->cap_acts ? 2 * m->cap_acts : 256;
		starpu_data_handle_t *p = realloc(m->acts, (size_t)cap * sizeof(*p));
		if (!p) {   /* build() reports it */
			*h = NULL;
			m->act_failed = 1;
			return;
		}
		m->acts = p;
		m->cap_acts = cap;
	}
	if (m->split < 2) {
		lspo_matrix_register_elem(h, NULL, rows, cols, esz);
	} else {
		lspo_matrix_register_elem(h, m->act_slab + m->act_used, rows, cols, esz);
		m->act_used += floats;
	}
	m->acts[m->nacts++] = *h;
}

void model_acts_dead(const struct lspo_model *m, const starpu_data_handle_t *h, int n)
{
	/* Split products keep activations in a host slab: there is nothing to
	 * free, and with partition plans on the handles the results came out
	 * wrong (tests/test_accum with 2 CPU workers; not investigated). */
	if (!m->drop_dead || m->split > 1)
		return;
	for (int i = 0; i < n; i++)
		if (h[i]) {
			lspo_mem_dropped(h[i]);
			starpu_data_invalidate_submit(h[i]);
		}
}

void model_act_f32(struct lspo_model *m, starpu_data_handle_t *h, int rows, int cols)
{
	m->act_f32 = 1;
	model_act(m, h, rows, cols);
	m->act_f32 = 0;
}

/* Logits, losses and the family's activations: counted first when the
 * model splits products (they then need host memory), then registered. */
int model_register_activations(struct lspo_model *m)
{
	model_act(m, &m->logits, m->N, m->cfg.vocab_size);
	model_act_f32(m, &m->losses, 1, m->N);
	return m->fam->build(m);
}

/* Inputs and constants, in host memory. */
static void register_host_data(struct lspo_model *m)
{
	for (int i = 0; i < m->N; i++)
		m->ones_buf[i] = 1.0f;
	/* bf16: 1 in bf16 (0x3f80) in the first half of the buffer, so that
	 * bias products have bf16 operands only. */
	size_t esz = m->bf16 ? sizeof(uint16_t) : sizeof(float);
	for (int i = 0; m->bf16 && i < m->N; i++)
		((uint16_t *)m->ones_buf)[i] = 0x3f80u;
	/* Two handles on the same ones: never written, so they cannot disagree,
	 * and whole-matrix uses do not undo the row partition of the other. */
	lspo_matrix_register_elem(&m->ones, m->ones_buf, m->N, 1, esz);
	lspo_matrix_register_elem(&m->ones_whole, m->ones_buf, m->N, 1, esz);
	lspo_matrix_register_elem(&m->tokens, m->tok_buf, m->B, m->T, sizeof(int32_t));
	lspo_matrix_register_elem(&m->targets, m->tgt_buf, m->B, m->T, sizeof(int32_t));
	lspo_matrix_register_elem(&m->targets_flat, m->tgt_buf, 1, m->N, sizeof(int32_t));
	lspo_matrix_register(&m->clip, m->clip_buf, 1, 2);
}

/* ------------------------------------------------------------------------ */
/* Split products (CPU-only runs)                                            */

/* Row blocks (by_cols 0) or column blocks of h, planned on first use.  Each
 * plan is allocated once, so the children returned stay where they are
 * while later calls add plans (callers hold two or three at a time). */
static starpu_data_handle_t *plan(struct lspo_model *m, starpu_data_handle_t h, int by_cols)
{
	for (int i = 0; i < m->nplans; i++)
		if (m->plans[i]->parent == h && m->plans[i]->by_cols == by_cols)
			return m->plans[i]->children;
	if (m->nplans == m->max_plans) {
		int cap = m->max_plans ? 2 * m->max_plans : 64;
		struct model_plan **pp = realloc(m->plans, (size_t)cap * sizeof(*pp));
		if (!pp)
			return NULL;   /* the product then runs as one task */
		m->plans = pp;
		m->max_plans = cap;
	}
	struct model_plan *p = malloc(sizeof(*p));
	if (!p)
		return NULL;
	m->plans[m->nplans++] = p;
	struct starpu_data_filter f = {
		.filter_func = by_cols ? starpu_matrix_filter_block : starpu_matrix_filter_vertical_block,
		.nchildren = (unsigned)m->split,
	};
	p->parent = h;
	p->by_cols = by_cols;
	starpu_data_partition_plan(h, &f, p->children);
	return p->children;
}

int model_matmul(struct lspo_model *m, starpu_data_handle_t A, int ta, starpu_data_handle_t B, int tb,
                 starpu_data_handle_t C, float alpha, float beta, int prio, const char *name)
{
	starpu_data_handle_t *a = NULL, *c = NULL;
	/* Blocks of fewer than 16 rows cost more in tasks than they save. */
	if (m->split > 1 && lspo_handle_rows(C) >= 16 * m->split) {
		a = plan(m, A, ta);
		c = plan(m, C, 0);
	}
	if (!a || !c)
		return lspo_matmul_submit(A, B, C, ta, tb, alpha, beta, prio, name);
	for (int i = 0; i < m->split; i++)
		TRY(lspo_matmul_submit(a[i], B, c[i], ta, tb, alpha, beta, prio, name));
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Build and free                                                           */

static void register_tensors(struct lspo_model *m)
{
	for (int i = 0; i < m->layout.ntensors; i++) {
		const struct model_tensor *t = &m->layout.tensors[i];
		lspo_matrix_register(&m->hp[i], m->params + t->offset, t->rows, t->cols);
		lspo_matrix_register(&m->hg[i], m->grads + t->offset, t->rows, t->cols);
		lspo_matrix_register(&m->hm[i], m->m + t->offset, t->rows, t->cols);
		lspo_matrix_register(&m->hv[i], m->v + t->offset, t->rows, t->cols);
		lspo_matrix_register_elem(&m->hpartial[i], &m->partials[i], 1, 1, sizeof(double));
	}
}

static int alloc_slab(float **slab, size_t n)
{
	return model_host_alloc((void **)slab, n * sizeof(float), "a parameter-sized slab");
}

static int alloc_handles(struct lspo_model *m)
{
	int nt = m->layout.ntensors;
	m->hp = calloc(nt, sizeof(*m->hp));
	m->hg = calloc(nt, sizeof(*m->hg));
	m->hm = calloc(nt, sizeof(*m->hm));
	m->hv = calloc(nt, sizeof(*m->hv));
	m->hpartial = calloc(nt, sizeof(*m->hpartial));
	m->partials = calloc(nt, sizeof(*m->partials));
	m->norm_parts = calloc(nt, sizeof(*m->norm_parts));
	m->tok_buf = calloc(m->N, sizeof(int32_t));
	m->tgt_buf = calloc(m->N, sizeof(int32_t));
	m->ones_buf = calloc(m->N, sizeof(float));
	if (!m->hp || !m->hg || !m->hm || !m->hv || !m->hpartial || !m->partials || !m->norm_parts
	    || !m->tok_buf || !m->tgt_buf || !m->ones_buf)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the model's handles");
	size_t n = m->layout.nfloats;
	TRY(alloc_slab(&m->params, n));
	TRY(alloc_slab(&m->grads, n));
	TRY(alloc_slab(&m->m, n));
	return alloc_slab(&m->v, n);
}

static int build(struct lspo_model *m)
{
	TRY(alloc_handles(m));
	/* Bus byte counts per step need StarPU's profiling where there is a bus. */
	if (starpu_cuda_worker_get_count() > 0)
		starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
	int ncpu = (int)starpu_cpu_worker_get_count();
	m->split = starpu_cuda_worker_get_count() == 0 && ncpu > 1 ? (ncpu < MODEL_MAX_SPLIT ? ncpu : MODEL_MAX_SPLIT) : 1;
	m->drop_dead = 0;
	m->drop_tried = starpu_cuda_worker_get_count() == 0;   /* only an accelerator's memory is short */
	if (m->split > 1) {
		m->counting = 1;
		TRY(model_register_activations(m));
		m->counting = 0;
		TRY(alloc_slab(&m->act_slab, m->act_size));
	}
	register_tensors(m);
	m->hw = m->hp;
	m->registered = 1;
	if (m->bf16)
		TRY(model_bf16_build(m));
	register_host_data(m);
	TRY(model_register_activations(m));
	if (m->act_failed)
		LSPO_FAIL(LSPO_ENOMEM, "cannot register the model's activations");
	model_use_native(m);
	return LSPO_OK;
}

int lspo_model_create(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, int B, int T,
                      struct lspo_model **out)
{
	return lspo_model_create_dtype(ctx, cfg, B, T, LSPO_DTYPE_FP32, out);
}

int lspo_model_create_dtype(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, int B, int T,
                            enum lspo_dtype dtype, struct lspo_model **out)
{
	(void)ctx;
	*out = NULL;
	if (B < 1 || T < 1)
		LSPO_FAIL(LSPO_EINVAL, "batch (%d) and sequence length (%d) must be positive", B, T);
	if (dtype != LSPO_DTYPE_FP32 && dtype != LSPO_DTYPE_BF16)
		LSPO_FAIL(LSPO_EINVAL, "unknown dtype %d: expected fp32 or bf16", (int)dtype);
	struct lspo_model *m = calloc(1, sizeof(*m));
	if (!m)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the model");
	int rc = model_layout_for(cfg, &m->cfg, &m->layout);
	if (rc) {
		free(m);
		return rc;
	}
	m->fam = model_family_of(m->cfg.family);
	m->bf16 = dtype == LSPO_DTYPE_BF16;
	if (T > m->cfg.n_positions) {
		lspo_error("sequence length %d exceeds the model's context (n_positions = %d)", T,
		           m->cfg.n_positions);
		rc = LSPO_EINVAL;
	} else if ((size_t)B * (size_t)T > (size_t)INT32_MAX / 2) {
		lspo_error("batch %d x sequence %d is too large", B, T);
		rc = LSPO_EINVAL;
	}
	m->B = B;
	m->T = T;
	m->N = B * T;
	if (!rc)
		rc = build(m);
	if (rc) {
		lspo_model_free(m);
		return rc;
	}
	*out = m;
	return LSPO_OK;
}

static void unregister_all(struct lspo_model *m)
{
	for (int i = 0; i < m->nplans; i++) {
		starpu_data_partition_clean(m->plans[i]->parent, (unsigned)m->split, m->plans[i]->children);
		free(m->plans[i]);
	}
	m->nplans = 0;
	for (int i = 0; i < m->layout.ntensors; i++) {
		starpu_data_unregister(m->hp[i]);
		starpu_data_unregister(m->hg[i]);
		starpu_data_unregister(m->hm[i]);
		starpu_data_unregister(m->hv[i]);
		starpu_data_unregister(m->hpartial[i]);
	}
	for (int i = 0; i < m->nacts; i++)
		if (m->acts[i])
			starpu_data_unregister(m->acts[i]);
	model_bf16_free(m);
	starpu_data_handle_t rest[] = { m->ones, m->ones_whole, m->targets_flat, m->tokens, m->targets, m->clip };
	for (size_t k = 0; k < sizeof(rest) / sizeof(rest[0]); k++)
		starpu_data_unregister(rest[k]);
}

void lspo_model_free(struct lspo_model *m)
{
	if (!m)
		return;
	starpu_task_wait_for_all();
	if (m->dp_hooks)
		m->dp_hooks->free(m);
	if (m->free_mode)
		m->free_mode(m);
	if (m->registered)
		unregister_all(m);
	model_accum_free(m);   /* after unregister_all: it cleaned the plans on its handles */
	if (m->fam && m->fam->free)
		m->fam->free(m);
	model_host_free(m->params, m->layout.nfloats * sizeof(float));
	model_host_free(m->grads, m->layout.nfloats * sizeof(float));
	model_host_free(m->m, m->layout.nfloats * sizeof(float));
	model_host_free(m->v, m->layout.nfloats * sizeof(float));
	free(m->hp); free(m->hg); free(m->hm); free(m->hv); free(m->hpartial); free(m->partials); free(m->norm_parts);
	free(m->acts);
	free(m->tok_buf);
	free(m->tgt_buf);
	free(m->ones_buf);
	free(m->plans);
	starpu_free(m->act_slab);
	lspo_tags_free(m->tags);
	layout_free(&m->layout);
	free(m);
}

const struct lspo_model_config *lspo_model_get_config(const struct lspo_model *m) { return &m->cfg; }
size_t lspo_model_num_floats(const struct lspo_model *m) { return m->layout.nfloats; }

/* ------------------------------------------------------------------------ */
/* Host access to slabs                                                     */

/* Copies each tensor of a slab in (to_slab) or out, acquiring its handle. */
static void copy_slab(starpu_data_handle_t *h, const struct model_layout *layout, float *slab,
                      float *host, int to_slab)
{
	for (int i = 0; i < layout->ntensors; i++) {
		const struct model_tensor *t = &layout->tensors[i];
		size_t bytes = (size_t)t->rows * t->cols * sizeof(float);
		starpu_data_acquire(h[i], to_slab ? STARPU_W : STARPU_R);
		if (to_slab && !model_host_untouched())   /* simulated: no kernel reads them (host_slab.c) */
			memcpy(slab + t->offset, host + t->offset, bytes);
		else if (!to_slab)
			memcpy(host + t->offset, slab + t->offset, bytes);
		starpu_data_release(h[i]);
	}
}

int lspo_model_set_params(struct lspo_model *m, const float *params)
{
	copy_slab(m->hp, &m->layout, m->params, (float *)params, 1);
	/* The moments start at zero in host memory, their home: zeroed by a
	 * task, they would take accelerator memory (8 bytes per parameter)
	 * in the modes whose optimizer runs on the host. */
	for (int i = 0; i < m->layout.ntensors; i++) {
		const struct model_tensor *t = &m->layout.tensors[i];
		size_t bytes = (size_t)t->rows * t->cols * sizeof(float);
		starpu_data_acquire(m->hm[i], STARPU_W);
		if (!model_host_untouched())
			memset(m->m + t->offset, 0, bytes);
		starpu_data_release(m->hm[i]);
		starpu_data_acquire(m->hv[i], STARPU_W);
		if (!model_host_untouched())
			memset(m->v + t->offset, 0, bytes);
		starpu_data_release(m->hv[i]);
	}
	m->step = 0;
	if (m->bf16)
		TRY(model_bf16_refresh(m));
	return m->after_set_params ? m->after_set_params(m) : LSPO_OK;
}

int lspo_model_get_params(struct lspo_model *m, float *params)
{
	TRY(model_bf16_sync_host(m));   /* --bf16-update stochastic: hp from the bf16 weights */
	copy_slab(m->hp, &m->layout, m->params, params, 0);
	return LSPO_OK;
}

int lspo_model_get_grads(struct lspo_model *m, float *grads)
{
	copy_slab(m->hg, &m->layout, m->grads, grads, 0);
	return LSPO_OK;
}

int lspo_model_get_logits(struct lspo_model *m, float *logits)
{
	size_t n = (size_t)m->N * m->cfg.vocab_size;
	starpu_data_acquire(m->logits, STARPU_R);
	const void *p = starpu_data_get_local_ptr(m->logits);
	if (starpu_matrix_get_elemsize(m->logits) == sizeof(uint16_t))
		cast_bf16_f32_cpu(logits, p, n);
	else
		memcpy(logits, p, n * sizeof(float));
	starpu_data_release(m->logits);
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Linear maps                                                              */

int model_linear_dense_fwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                           starpu_data_handle_t out, int prio)
{
	const struct model_linear *L = &m->layout.linears[lin];
	const char *name = model_name(m, "matmul", L->layer, "fwd");
	float beta = 0.0f;
	if (L->bias >= 0) {
		TRY(model_matmul(m, m->ones, 0, m->hw[L->bias], 0, out, 1.0f, 0.0f, prio, name));
		beta = 1.0f;
	}
	return model_matmul(m, inp, 0, m->hw[L->weight], L->orient == ORIENT_OUT_IN, out, 1.0f, beta, prio,
	                    name);
}

int model_linear_dinp(struct lspo_model *m, int lin, starpu_data_handle_t dout, starpu_data_handle_t dinp,
                      int accumulate, int prio)
{
	const struct model_linear *L = &m->layout.linears[lin];
	return model_matmul(m, dout, 0, m->hw[L->weight], L->orient == ORIENT_IN_OUT, dinp, 1.0f,
	                    accumulate ? 1.0f : 0.0f, prio, model_name(m, "matmul", L->layer, "bwd"));
}

int model_linear_dweights(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                          starpu_data_handle_t dout, starpu_data_handle_t dw, starpu_data_handle_t db,
                          int prio)
{
	const struct model_linear *L = &m->layout.linears[lin];
	const char *name = model_name(m, "matmul", L->layer, "bwd");
	if (dw && L->orient == ORIENT_IN_OUT)
		TRY(model_matmul(m, inp, 1, dout, 0, dw, 1.0f, model_grad_beta(m), prio, name));
	else if (dw)
		TRY(model_matmul(m, dout, 1, inp, 0, dw, 1.0f, model_grad_beta(m), prio, name));
	if (db && L->bias >= 0)
		TRY(lspo_matmul_submit(m->ones_whole, dout, db, 1, 0, 1.0f, model_grad_beta(m), prio, name));
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                     */

static int submit_forward(struct lspo_model *m)
{
	TRY(m->fam->embed_fwd(m));
	for (int l = 0; l < m->cfg.n_layer; l++)
		TRY(m->fam->block_fwd(m, l));
	return m->fam->head_fwd(m);
}

/* From dlogits (in m->logits, written by the loss task) to every gradient. */
static int submit_backward(struct lspo_model *m)
{
	TRY(m->fam->head_bwd(m));
	if (m->dp_hooks)   /* each layer's gradients go to the other ranks as soon as formed */
		TRY(m->dp_hooks->reduce(m, m->cfg.n_layer));
	for (int l = m->cfg.n_layer - 1; l >= 0; l--) {
		TRY(model_recompute(m, l));   /* nothing without checkpointing */
		TRY(m->fam->block_bwd(m, l));
		if (m->dp_hooks)
			TRY(m->dp_hooks->reduce(m, l));
	}
	TRY(m->fam->embed_bwd(m));
	return m->dp_hooks ? m->dp_hooks->reduce(m, -1) : LSPO_OK;
}

/* Global norm of the gradients the optimizer will see -> m->clip = {norm, scale}. */
int model_submit_norm(struct lspo_model *m, float max_norm)
{
	int n = 0;
	for (int i = 0; i < m->layout.ntensors; i++) {
		if (!m->grad_in_norm(m, i))
			continue;
		int cpu = m->norm_on_cpu && m->norm_on_cpu(m, i);
		TRY(lspo_sumsq_submit_where(m->hg[i], m->hpartial[i], cpu ? STARPU_CPU : STARPU_CPU | STARPU_CUDA,
		                            0, model_name(m, "sumsq", model_tensor_layer(m, i), "upd")));
		m->norm_parts[n++] = m->hpartial[i];
	}
	if (n == 0) {   /* nothing dense to update (lsp with --freeze-dense): norm 0, no clip */
		starpu_data_acquire(m->clip, STARPU_W);
		m->clip_buf[0] = 0.0f;
		m->clip_buf[1] = 1.0f;
		starpu_data_release(m->clip);
		return LSPO_OK;
	}
	return lspo_clip_scale_submit(m->norm_parts, n, m->clip, max_norm, 0,
	                              model_name(m, "clip_scale", -1, "upd"));
}

/* ------------------------------------------------------------------------ */
/* Native mode: every tensor updated by AdamW where its gradient is.        */

static int native_prio(struct lspo_model *m, int layer) { (void)m; (void)layer; return 0; }
static int native_in_norm(struct lspo_model *m, int i) { (void)m; (void)i; return 1; }

static int native_linear_fwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                             starpu_data_handle_t out, int prio)
{
	return model_linear_dense_fwd(m, lin, inp, out, prio);
}

static int native_linear_bwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                             starpu_data_handle_t dout, starpu_data_handle_t dinp, int accumulate, int prio)
{
	const struct model_linear *L = &m->layout.linears[lin];
	TRY(model_linear_dinp(m, lin, dout, dinp, accumulate, prio));
	return model_linear_dweights(m, lin, inp, dout, m->hg[L->weight], L->bias >= 0 ? m->hg[L->bias] : NULL,
	                             prio);
}

int model_tensor_layer(const struct lspo_model *m, int i)
{
	int layer = m->layout.tensors[i].layer;
	return layer < 0 ? 0 : layer;
}

int model_submit_adamw(struct lspo_model *m, int i, const struct lspo_optim *opt, uint32_t where, int prio)
{
	const struct model_tensor *t = &m->layout.tensors[i];
	struct lspo_adamw_hparams h = {
		.lr = opt->lr, .beta1 = opt->beta1, .beta2 = opt->beta2, .eps = opt->eps,
		.weight_decay = t->rows > 1 ? opt->weight_decay : 0.0f, .t = m->step,
	};
	int sr = model_bf16_sr_active(m);   /* --bf16-update stochastic: the bf16 weight itself */
	h.sr_key = sr ? model_bf16_sr_key(m, i) : 0;
	return lspo_adamw_submit_where(sr ? m->w16[i] : m->hp[i], m->hg[i], m->hm[i], m->hv[i], m->clip, &h, where,
	                               prio, model_name(m, "adamw", model_tensor_layer(m, i), "upd"));
}

static int native_update(struct lspo_model *m, const struct lspo_optim *opt)
{
	for (int i = 0; i < m->layout.ntensors; i++)
		TRY(model_submit_adamw(m, i, opt, STARPU_CPU | STARPU_CUDA, 0));
	return LSPO_OK;
}

void model_use_native(struct lspo_model *m)
{
	m->prio_fwd = native_prio;
	m->prio_bwd = native_prio;
	m->grad_in_norm = native_in_norm;
	m->linear_fwd = native_linear_fwd;
	m->linear_bwd = native_linear_bwd;
	m->update = native_update;
	m->norm_on_cpu = NULL;
	m->after_backward = NULL;
	m->after_set_params = NULL;
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                    */

static int set_batch(struct lspo_model *m, const int32_t *inputs, const int32_t *targets)
{
	for (int i = 0; i < m->N; i++) {
		if (inputs[i] < 0 || inputs[i] >= m->cfg.vocab_size)
			LSPO_FAIL(LSPO_EINVAL, "input token %d at position %d is outside the vocabulary [0, %d)",
			          inputs[i], i, m->cfg.vocab_size);
		if (targets && targets[i] >= m->cfg.vocab_size)
			LSPO_FAIL(LSPO_EINVAL, "target token %d at position %d is outside the vocabulary [0, %d)",
			          targets[i], i, m->cfg.vocab_size);
	}
	/* Negative targets are ignored (masked prompt tokens): the loss is the
	 * mean over the others, and a batch of ignored targets only has loss 0
	 * and gradient 0. */
	m->ntargets = 0;
	for (int i = 0; i < m->N; i++)
		m->ntargets += !targets || targets[i] >= 0;
	starpu_data_acquire(m->tokens, STARPU_W);
	memcpy(m->tok_buf, inputs, (size_t)m->N * sizeof(int32_t));
	starpu_data_release(m->tokens);
	/* targets and targets_flat view the same memory: both are written. */
	starpu_data_acquire(m->targets, STARPU_W);
	starpu_data_acquire(m->targets_flat, STARPU_W);
	memcpy(m->tgt_buf, targets, (size_t)m->N * sizeof(int32_t));
	starpu_data_release(m->targets_flat);
	starpu_data_release(m->targets);
	lspo_mem_host_wrote(m->tokens);   /* memstat.h: accelerators' copies are stale */
	lspo_mem_host_wrote(m->targets);
	lspo_mem_host_wrote(m->targets_flat);
	return m->dp_hooks ? m->dp_hooks->batch(m) : LSPO_OK;
}

/* d(mean loss)/d(loss of one target). */
static float dloss(const struct lspo_model *m)
{
	int n = m->dp_hooks ? m->ntargets_all : m->ntargets;   /* over the global batch */
	return n ? 1.0f / n : 0.0f;
}

static double mean_loss(struct lspo_model *m)
{
	starpu_data_acquire(m->losses, STARPU_R);
	const float *l = (const float *)starpu_data_get_local_ptr(m->losses);
	double sum = 0;
	for (int i = 0; i < m->N; i++)
		sum += l[i];
	starpu_data_release(m->losses);
	if (m->dp_hooks)
		return m->dp_hooks->loss(m, sum);
	return m->ntargets ? sum / m->ntargets : 0.0;
}

static double read_norm(struct lspo_model *m)
{
	starpu_data_acquire(m->clip, STARPU_R);
	double norm = m->clip_buf[0];
	starpu_data_release(m->clip);
	return norm;
}

const char *lspo_model_nonfinite_grad(struct lspo_model *m)
{
	for (int i = 0; i < m->layout.ntensors; i++) {
		if (!m->grad_in_norm(m, i))
			continue;
		starpu_data_acquire(m->hpartial[i], STARPU_R);
		double v = m->partials[i];
		starpu_data_release(m->hpartial[i]);
		if (!isfinite(v))
			return m->layout.tensors[i].name;
	}
	return NULL;
}

int lspo_model_forward(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, double *loss)
{
	lspo_trace_mark_step(0);   /* evaluation is not part of a training step */
	TRY(set_batch(m, inputs, targets));
	TRY(submit_forward(m));
	TRY(lspo_xent_fwd_submit(m->logits, m->targets, m->losses, 0, model_name(m, "xent", m->cfg.n_layer, "fwd")));
	*loss = mean_loss(m);
	return LSPO_OK;
}

/* Loss and dlogits, in the row blocks the LM head left the logits in. */
static int submit_loss(struct lspo_model *m)
{
	int prio = m->prio_fwd(m, m->cfg.n_layer);
	const char *name = model_name(m, "xent", m->cfg.n_layer, "fwd");
	if (m->split < 2 || m->N < 16 * m->split)
		return lspo_xent_fwdbwd_submit(m->logits, m->targets, m->losses, dloss(m), prio, name);
	starpu_data_handle_t *lg = plan(m, m->logits, 0), *tg = plan(m, m->targets_flat, 1);
	starpu_data_handle_t *ls = plan(m, m->losses, 1);
	if (!lg || !tg || !ls)
		return lspo_xent_fwdbwd_submit(m->logits, m->targets, m->losses, dloss(m), prio, name);
	for (int i = 0; i < m->split; i++)
		TRY(lspo_xent_fwdbwd_submit(lg[i], tg[i], ls[i], dloss(m), prio, name));
	return LSPO_OK;
}

static int submit_gradients(struct lspo_model *m)
{
	TRY(submit_forward(m));
	TRY(submit_loss(m));
	return submit_backward(m);
}

int model_submit_gradients(struct lspo_model *m)
{
	return submit_gradients(m);
}

/* What follows a step's gradients (of one batch or of K micro-batches). */
static int submit_after_gradients(struct lspo_model *m, float clip)
{
	if (m->after_backward)
		TRY(m->after_backward(m));
	return model_submit_norm(m, clip);
}

static int submit_forward_backward(struct lspo_model *m, float clip)
{
	TRY(submit_gradients(m));
	return submit_after_gradients(m, clip);
}

int model_dense_grads(struct lspo_model *m, const int32_t *inputs, const int32_t *targets)
{
	lspo_trace_mark_step(0);   /* calibration, not a training step */
	TRY(set_batch(m, inputs, targets));
	TRY(submit_gradients(m));
	starpu_task_wait_for_all();
	return LSPO_OK;
}

/* Cumulative bytes moved by the buses, by direction (trace.c's ledger:
 * reading StarPU's counters resets them, so only the ledger reads them). */
static void bus_bytes(double *d2h, double *h2d)
{
	long long b[LSPO_BUS_NDIRS];
	lspo_bus_totals(b, NULL, NULL);
	*d2h = (double)b[LSPO_BUS_D2H];
	*h2d = (double)b[LSPO_BUS_H2D];
}

int lspo_model_forward_backward(struct lspo_model *m, const int32_t *inputs, const int32_t *targets,
                                double *loss, double *grad_norm)
{
	lspo_trace_mark_step(0);
	TRY(set_batch(m, inputs, targets));
	TRY(submit_forward_backward(m, 0.0f));
	starpu_task_wait_for_all();
	TRY(check_names(m));
	*loss = mean_loss(m);
	*grad_norm = read_norm(m);
	return LSPO_OK;
}

/* After a step that evicted more than an eighth of the accelerator's
 * memory (a step that lacks less pays less for it than dropping costs:
 * SIMULATED, tests/test_sim.sh's lsp under 64 MiB evicts 3 MB in its first
 * step, then runs 4.33 ms a step, 4.88 dropping) and no more than the
 * activations hold (dropping them cannot make up for more: GPT-2 1.5B with
 * bf16 and checkpointing evicts 2.6 GB of weights and states in 4 GiB, its
 * activations are 0.7 GB), dropping dead activations (model_acts_dead) is
 * tried once, from the next step on, and given up after a step that still
 * evicts more than an eighth of what that step did (model.h, drop_dead).
 * The trial's first step starts from the memory the step without drops
 * left, and may have to make room for it.  As the trial starts, the lspo
 * policy is told the memory is no longer known short. */
static double accel_memory(void)
{
	int w = starpu_worker_get_by_type(STARPU_CUDA_WORKER, 0);
	starpu_ssize_t total = w < 0 ? 0 : starpu_memory_get_total(starpu_worker_get_memory_node((unsigned)w));
	return total > 0 ? (double)total : 0.0;
}

static double activation_bytes(const struct lspo_model *m)
{
	double b = 0.0;
	for (int i = 0; i < m->nacts; i++)
		b += (double)starpu_data_get_size(m->acts[i]);
	return b;
}

static void drop_dead_or_not(struct lspo_model *m)
{
	double evicted = lspo_mem_evicted_now();
	if (m->drop_dead) {
		if (evicted > m->drop_base / 8.0)
			m->drop_dead = 0;
	} else if (!m->drop_tried && evicted > accel_memory() / 8.0 && evicted <= activation_bytes(m)) {
		m->drop_dead = 1;
		m->drop_tried = 1;
		m->drop_base = evicted;
		lspo_mem_forget_short();
	}
}

/* A step of `micro` micro-batches of (B, T) (accum.c when more than one). */
static int train_step(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, int micro,
                      const struct lspo_optim *opt, struct lspo_step_stats *stats)
{
	double t0 = starpu_timing_now();
	TRY(micro > 1 ? model_accum_set_batches(m, inputs, targets, micro) : set_batch(m, inputs, targets));
	double d2h0, h2d0;
	bus_bytes(&d2h0, &h2d0);
	m->step++;
	starpu_iteration_push(m->step);
	lspo_trace_mark_step(m->step);
	int rc = micro > 1 ? model_accum_submit(m, micro) : submit_gradients(m);
	if (!rc)
		rc = submit_after_gradients(m, opt->clip);
	if (!rc)
		rc = m->update(m, opt);
	if (!rc && m->bf16)
		rc = model_bf16_after_update(m);
	starpu_iteration_pop();
	starpu_task_wait_for_all();   /* the step's one wait */
	lspo_mem_step_end();          /* its memory peaks, evicted and refetched bytes */
	drop_dead_or_not(m);
	if (!rc)
		rc = check_names(m);
	if (rc)
		return rc;
	stats->step = m->step;
	stats->loss = micro > 1 ? model_accum_mean_loss(m, micro) : mean_loss(m);
	stats->grad_norm = read_norm(m);
	stats->seconds = (starpu_timing_now() - t0) * 1e-6;
	bus_bytes(&stats->bytes_d2h, &stats->bytes_h2d);
	stats->bytes_d2h -= d2h0;
	stats->bytes_h2d -= h2d0;
	return LSPO_OK;
}

int lspo_model_train_step(struct lspo_model *m, const int32_t *inputs, const int32_t *targets,
                          const struct lspo_optim *opt, struct lspo_step_stats *stats)
{
	return train_step(m, inputs, targets, 1, opt, stats);
}

int lspo_model_train_step_accum(struct lspo_model *m, const int32_t *inputs, const int32_t *targets,
                                int micro_batches, const struct lspo_optim *opt, struct lspo_step_stats *stats)
{
	if (micro_batches < 1)
		LSPO_FAIL(LSPO_EINVAL, "gradient accumulation: %d micro-batches per step, expected at least 1",
		          micro_batches);
	return train_step(m, inputs, targets, micro_batches, opt, stats);
}

struct lspo_optim lspo_optim_default(void)
{
	return (struct lspo_optim){ .lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                            .weight_decay = 0.0f, .clip = 1.0f };
}
