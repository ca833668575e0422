/*
 * gpt2.c - GPT-2 training as a StarPU task graph (native mode).
 *
 * Parameters, gradients and AdamW moments are three flat slabs in the HF
 * layout of gpt2_params.h; every tensor is a matrix handle viewing its slice.
 * Activations are handles StarPU allocates where they are first written, so
 * on a GPU they never touch host memory.  A step is submitted in program
 * order (forward, backward, norm, clip, AdamW); data dependencies alone order
 * the tasks, and the host waits once, at the end, for the loss.
 *
 * A linear layer out (N, n) = inp (N, m) W (m, n) + b is two matrix products:
 * out = ones (N, 1) b (1, n), then out += inp W.  Its backward is
 * dinp = dout W^T, dW = inp^T dout, db = ones^T dout.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "gpt2_params.h"
#include "gpt2_internal.h"
#include "tag.h"
#include "trace.h"
#include "adamw.h"
#include "attention.h"
#include "cast.h"
#include "encoder.h"
#include "fill.h"
#include "gelu.h"
#include "gradnorm.h"
#include "layernorm.h"
#include "matmul.h"
#include "residual.h"
#include "xent.h"

/* ------------------------------------------------------------------------ */
/* Task names: interned once, they outlive every task that uses them.        */

const char *gpt2_name(struct lspo_gpt2 *g, const char *op, int layer, const char *stage)
{
	enum lspo_stage st;
	const char *name;
	if (lspo_stage_parse(stage, &st)) {
		lspo_error("task %s: unknown stage '%s'", op, stage ? stage : "(null)");
		return NULL;
	}
	return lspo_tags_name(g->tags, op, layer, st, &name) ? NULL : name;   /* logged */
}

/* ------------------------------------------------------------------------ */
/* Build and free                                                           */

/* An activation: StarPU allocates it where first written, unless the model
 * splits products, which needs host memory under the partition plans.  With
 * g->act_slab NULL this only counts the floats the split layout needs. */
static void act(struct lspo_gpt2 *g, starpu_data_handle_t *h, int rows, int cols)
{
	size_t n = (size_t)rows * cols;
	if (g->split < 2) {
		lspo_matrix_register(h, NULL, rows, cols);
	} else if (!g->act_slab) {
		g->act_size += n;
	} else {
		lspo_matrix_register(h, g->act_slab + g->act_used, rows, cols);
		g->act_used += n;
	}
}

#define lazy(h, rows, cols) act(g, h, rows, cols)

static void register_activations(struct lspo_gpt2 *g)
{
	int N = g->N, C = g->cfg.n_embd, V = g->cfg.vocab_size;
	int nstats = g->B * g->cfg.n_head * g->T;
	for (int l = 0; l < g->cfg.n_layer; l++) {
		struct gpt2_acts *a = &g->acts[l];
		lazy(&a->ln1, N, C); lazy(&a->ln1_mean, 1, N); lazy(&a->ln1_rstd, 1, N);
		lazy(&a->qkv, N, 3 * C); lazy(&a->atty, N, C); lazy(&a->lse, 1, nstats);
		lazy(&a->attproj, N, C); lazy(&a->res2, N, C);
		lazy(&a->ln2, N, C); lazy(&a->ln2_mean, 1, N); lazy(&a->ln2_rstd, 1, N);
		lazy(&a->fch, N, 4 * C); lazy(&a->fch_gelu, N, 4 * C);
		lazy(&a->fcproj, N, C); lazy(&a->res3, N, C);
	}
	lazy(&g->encoded, N, C);
	lazy(&g->lnf, N, C); lazy(&g->lnf_mean, 1, N); lazy(&g->lnf_rstd, 1, N);
	lazy(&g->logits, N, V); lazy(&g->losses, 1, N);
	lazy(&g->dres, N, C); lazy(&g->dln, N, C); lazy(&g->datty, N, C);
	lazy(&g->dqkv, N, 3 * C); lazy(&g->dfch, N, 4 * C); lazy(&g->dfch_gelu, N, 4 * C);
}

/* Inputs and constants, in host memory. */
static void register_host_data(struct lspo_gpt2 *g)
{
	for (int i = 0; i < g->N; i++)
		g->ones_buf[i] = 1.0f;
	/* Two handles on the same ones: never written, so they cannot disagree,
	 * and whole-matrix uses do not undo the row partition of the other. */
	lspo_matrix_register(&g->ones, g->ones_buf, g->N, 1);
	lspo_matrix_register(&g->ones_whole, g->ones_buf, g->N, 1);
	lspo_matrix_register_elem(&g->tokens, g->tok_buf, g->B, g->T, sizeof(int32_t));
	lspo_matrix_register_elem(&g->targets, g->tgt_buf, g->B, g->T, sizeof(int32_t));
	lspo_matrix_register_elem(&g->targets_flat, g->tgt_buf, 1, g->N, sizeof(int32_t));
	lspo_matrix_register(&g->clip, g->clip_buf, 1, 2);
}

/* ------------------------------------------------------------------------ */
/* Split products (CPU-only runs)                                            */

/* Row blocks (by_cols 0) or column blocks of h, planned on first use. */
static starpu_data_handle_t *plan(struct lspo_gpt2 *g, starpu_data_handle_t h, int by_cols)
{
	for (int i = 0; i < g->nplans; i++)
		if (g->plans[i].parent == h && g->plans[i].by_cols == by_cols)
			return g->plans[i].children;
	if (g->nplans == g->max_plans)
		return NULL;
	struct gpt2_plan *p = &g->plans[g->nplans++];
	struct starpu_data_filter f = {
		.filter_func = by_cols ? starpu_matrix_filter_block : starpu_matrix_filter_vertical_block,
		.nchildren = (unsigned)g->split,
	};
	p->parent = h;
	p->by_cols = by_cols;
	starpu_data_partition_plan(h, &f, p->children);
	return p->children;
}

int gpt2_matmul(struct lspo_gpt2 *g, starpu_data_handle_t A, int ta, starpu_data_handle_t B, int tb,
                starpu_data_handle_t C, float alpha, float beta, int prio, const char *name)
{
	starpu_data_handle_t *a = NULL, *c = NULL;
	/* Blocks of fewer than 16 rows cost more in tasks than they save. */
	if (g->split > 1 && lspo_handle_rows(C) >= 16 * g->split) {
		a = plan(g, A, ta);
		c = plan(g, C, 0);
	}
	if (!a || !c)
		return lspo_matmul_submit(A, B, C, ta, tb, alpha, beta, prio, name);
	for (int i = 0; i < g->split; i++) {
		int rc = lspo_matmul_submit(a[i], B, c[i], ta, tb, alpha, beta, prio, name);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}

static void register_tensors(struct lspo_gpt2 *g)
{
	for (int i = 0; i < g->layout.ntensors; i++) {
		const struct gpt2_tensor *t = &g->layout.tensors[i];
		lspo_matrix_register(&g->hp[i], g->params + t->offset, t->rows, t->cols);
		lspo_matrix_register(&g->hg[i], g->grads + t->offset, t->rows, t->cols);
		lspo_matrix_register(&g->hm[i], g->m + t->offset, t->rows, t->cols);
		lspo_matrix_register(&g->hv[i], g->v + t->offset, t->rows, t->cols);
		lspo_matrix_register_elem(&g->hpartial[i], &g->partials[i], 1, 1, sizeof(double));
	}
}

static int alloc_slab(float **slab, size_t n)
{
	if (starpu_malloc((void **)slab, n * sizeof(float)) != 0)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate %zu MiB of pinned memory", n * sizeof(float) >> 20);
	memset(*slab, 0, n * sizeof(float));
	return LSPO_OK;
}

int lspo_gpt2_create(struct lspo_ctx *ctx, const struct lspo_gpt2_config *cfg, int B, int T,
                     struct lspo_gpt2 **out)
{
	(void)ctx;
	*out = NULL;
	int rc = lspo_gpt2_config_check(cfg);
	if (rc)
		return rc;
	if (B < 1 || T < 1)
		LSPO_FAIL(LSPO_EINVAL, "batch (%d) and sequence length (%d) must be positive", B, T);
	if (T > cfg->n_positions)
		LSPO_FAIL(LSPO_EINVAL, "sequence length %d exceeds the model's context n_positions = %d",
		          T, cfg->n_positions);
	struct lspo_gpt2 *g = calloc(1, sizeof(*g));
	if (!g)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the model");
	g->cfg = *cfg;
	g->B = B;
	g->T = T;
	g->N = B * T;
	if ((rc = gpt2_layout_build(cfg, &g->layout)))
		goto fail;
	int nt = g->layout.ntensors;
	size_t n = g->layout.nfloats;
	g->hp = calloc(nt, sizeof(*g->hp));
	g->hg = calloc(nt, sizeof(*g->hg));
	g->hm = calloc(nt, sizeof(*g->hm));
	g->hv = calloc(nt, sizeof(*g->hv));
	g->hpartial = calloc(nt, sizeof(*g->hpartial));
	g->partials = calloc(nt, sizeof(*g->partials));
	g->norm_parts = calloc(nt, sizeof(*g->norm_parts));
	g->acts = calloc(cfg->n_layer, sizeof(*g->acts));
	g->tok_buf = calloc(g->N, sizeof(int32_t));
	g->tgt_buf = calloc(g->N, sizeof(int32_t));
	g->ones_buf = calloc(g->N, sizeof(float));
	g->max_plans = 64 + 16 * cfg->n_layer;
	g->plans = calloc(g->max_plans, sizeof(*g->plans));
	if (!g->hp || !g->hg || !g->hm || !g->hv || !g->hpartial || !g->partials || !g->norm_parts || !g->acts
	    || !g->tok_buf || !g->tgt_buf || !g->ones_buf || !g->plans) {
		lspo_error("cannot allocate the model's handles");
		rc = LSPO_ENOMEM;
		goto fail;
	}
	if ((rc = alloc_slab(&g->params, n)) || (rc = alloc_slab(&g->grads, n))
	    || (rc = alloc_slab(&g->m, n)) || (rc = alloc_slab(&g->v, n))
	    || (rc = lspo_tags_create(&g->tags)))
		goto fail;
	/* Bus byte counts per step need StarPU's profiling where there is a bus. */
	if (starpu_cuda_worker_get_count() > 0)
		starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
	int ncpu = (int)starpu_cpu_worker_get_count();
	g->split = starpu_cuda_worker_get_count() == 0 && ncpu > 1 ? (ncpu < GPT2_MAX_SPLIT ? ncpu : GPT2_MAX_SPLIT) : 1;
	if (g->split > 1) {
		register_activations(g);   /* counts */
		if ((rc = alloc_slab(&g->act_slab, g->act_size)))
			goto fail;
	}
	register_tensors(g);
	g->hw = g->hp;
	register_activations(g);
	register_host_data(g);
	g->registered = 1;
	gpt2_use_native(g);
	*out = g;
	return LSPO_OK;
fail:
	lspo_gpt2_free(g);
	return rc;
}

static void unregister_all(struct lspo_gpt2 *g)
{
	for (int i = 0; i < g->nplans; i++)
		starpu_data_partition_clean(g->plans[i].parent, (unsigned)g->split, g->plans[i].children);
	for (int i = 0; i < g->layout.ntensors; i++) {
		starpu_data_unregister(g->hp[i]);
		starpu_data_unregister(g->hg[i]);
		starpu_data_unregister(g->hm[i]);
		starpu_data_unregister(g->hv[i]);
		starpu_data_unregister(g->hpartial[i]);
	}
	for (int l = 0; l < g->cfg.n_layer; l++) {
		starpu_data_handle_t *h = (starpu_data_handle_t *)&g->acts[l];
		for (size_t k = 0; k < sizeof(g->acts[l]) / sizeof(*h); k++)
			starpu_data_unregister(h[k]);
	}
	starpu_data_handle_t rest[] = { g->encoded, g->lnf, g->lnf_mean, g->lnf_rstd, g->logits,
		g->losses, g->ones, g->ones_whole, g->targets_flat, g->dres, g->dln, g->datty, g->dqkv, g->dfch, g->dfch_gelu,
		g->tokens, g->targets, g->clip };
	for (size_t k = 0; k < sizeof(rest) / sizeof(rest[0]); k++)
		starpu_data_unregister(rest[k]);
}

void lspo_gpt2_free(struct lspo_gpt2 *g)
{
	if (!g)
		return;
	starpu_task_wait_for_all();
	if (g->free_mode)
		g->free_mode(g);
	if (g->registered)
		unregister_all(g);
	starpu_free(g->params);
	starpu_free(g->grads);
	starpu_free(g->m);
	starpu_free(g->v);
	free(g->hp); free(g->hg); free(g->hm); free(g->hv); free(g->hpartial); free(g->partials); free(g->norm_parts);
	free(g->acts);
	free(g->tok_buf);
	free(g->tgt_buf);
	free(g->ones_buf);
	free(g->plans);
	starpu_free(g->act_slab);
	gpt2_layout_free(&g->layout);
	lspo_tags_free(g->tags);
	free(g);
}

const struct lspo_gpt2_config *lspo_gpt2_get_config(const struct lspo_gpt2 *g) { return &g->cfg; }
size_t lspo_gpt2_num_floats(const struct lspo_gpt2 *g) { return g->layout.nfloats; }

/* ------------------------------------------------------------------------ */
/* Host access to slabs                                                     */

/* Copies each tensor of a slab in (to_slab) or out, acquiring its handle. */
static void copy_slab(starpu_data_handle_t *h, const struct gpt2_layout *layout, float *slab,
                      float *host, int to_slab)
{
	for (int i = 0; i < layout->ntensors; i++) {
		const struct gpt2_tensor *t = &layout->tensors[i];
		size_t bytes = (size_t)t->rows * t->cols * sizeof(float);
		starpu_data_acquire(h[i], to_slab ? STARPU_W : STARPU_R);
		if (to_slab)
			memcpy(slab + t->offset, host + t->offset, bytes);
		else
			memcpy(host + t->offset, slab + t->offset, bytes);
		starpu_data_release(h[i]);
	}
}

int lspo_gpt2_set_params(struct lspo_gpt2 *g, const float *params)
{
	copy_slab(g->hp, &g->layout, g->params, (float *)params, 1);
	for (int i = 0; i < g->layout.ntensors; i++) {
		const char *name = gpt2_name(g, "fill", -1, "upd");
		int rc = lspo_fill_submit(g->hm[i], 0.0f, 0, name);
		if (!rc)
			rc = lspo_fill_submit(g->hv[i], 0.0f, 0, name);
		if (rc)
			return rc;
	}
	g->step = 0;
	return g->after_set_params ? g->after_set_params(g) : LSPO_OK;
}

int lspo_gpt2_get_params(struct lspo_gpt2 *g, float *params)
{
	copy_slab(g->hp, &g->layout, g->params, params, 0);
	return LSPO_OK;
}

int lspo_gpt2_get_grads(struct lspo_gpt2 *g, float *grads)
{
	copy_slab(g->hg, &g->layout, g->grads, grads, 0);
	return LSPO_OK;
}

int lspo_gpt2_get_logits(struct lspo_gpt2 *g, float *logits)
{
	starpu_data_acquire(g->logits, STARPU_R);
	const float *p = (const float *)starpu_data_get_local_ptr(g->logits);
	memcpy(logits, p, (size_t)g->N * g->cfg.vocab_size * sizeof(float));
	starpu_data_release(g->logits);
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */

#define TRY(call) do { int rc_ = (call); if (rc_) return rc_; } while (0)

int gpt2_linear_fwd(struct lspo_gpt2 *g, starpu_data_handle_t inp, starpu_data_handle_t w,
                    starpu_data_handle_t b, starpu_data_handle_t out, int prio, const char *name)
{
	TRY(gpt2_matmul(g, g->ones, 0, b, 0, out, 1.0f, 0.0f, prio, name));
	return gpt2_matmul(g, inp, 0, w, 0, out, 1.0f, 1.0f, prio, name);
}

static int forward_layer(struct lspo_gpt2 *g, int l, starpu_data_handle_t res_in)
{
	struct gpt2_acts *a = &g->acts[l];
	starpu_data_handle_t *p = &g->hw[gpt2_layer_index(l, 0)];
	int prio = g->prio_fwd(g, l);
	const char *ln = gpt2_name(g, "layernorm", l, "fwd"), *mm = gpt2_name(g, "matmul", l, "fwd");
	TRY(lspo_layernorm_fwd_submit(res_in, p[GPT2_LN1_W], p[GPT2_LN1_B], a->ln1, a->ln1_mean,
	                              a->ln1_rstd, prio, ln));
	TRY(g->linear_fwd(g, l, GPT2_QKV_W, a->ln1, a->qkv, prio, mm));
	TRY(lspo_attention_fwd_submit(a->qkv, a->atty, a->lse, g->B, g->cfg.n_head, prio,
	                              gpt2_name(g, "attention", l, "fwd")));
	TRY(g->linear_fwd(g, l, GPT2_ATTPROJ_W, a->atty, a->attproj, prio, mm));
	TRY(lspo_residual_fwd_submit(res_in, a->attproj, a->res2, prio, gpt2_name(g, "residual", l, "fwd")));
	TRY(lspo_layernorm_fwd_submit(a->res2, p[GPT2_LN2_W], p[GPT2_LN2_B], a->ln2, a->ln2_mean,
	                              a->ln2_rstd, prio, ln));
	TRY(g->linear_fwd(g, l, GPT2_FC_W, a->ln2, a->fch, prio, mm));
	TRY(lspo_gelu_fwd_submit(a->fch, a->fch_gelu, prio, gpt2_name(g, "gelu", l, "fwd")));
	TRY(g->linear_fwd(g, l, GPT2_FCPROJ_W, a->fch_gelu, a->fcproj, prio, mm));
	return lspo_residual_fwd_submit(a->res2, a->fcproj, a->res3, prio, gpt2_name(g, "residual", l, "fwd"));
}

/* Everything up to the logits (N, V); the loss task is the caller's. */
static int submit_forward(struct lspo_gpt2 *g)
{
	int L = g->cfg.n_layer;
	TRY(lspo_encoder_fwd_submit(g->tokens, g->hw[GPT2_WTE], g->hw[GPT2_WPE], g->encoded,
	                            g->prio_fwd(g, 0), gpt2_name(g, "encoder", 0, "fwd")));
	for (int l = 0; l < L; l++)
		TRY(forward_layer(g, l, l == 0 ? g->encoded : g->acts[l - 1].res3));
	int prio = g->prio_fwd(g, L);
	TRY(lspo_layernorm_fwd_submit(g->acts[L - 1].res3, g->hw[gpt2_lnf_index(g)], g->hw[gpt2_lnf_index(g) + 1],
	                              g->lnf, g->lnf_mean, g->lnf_rstd, prio, gpt2_name(g, "layernorm", L, "fwd")));
	/* Tied LM head: logits = lnf wte^T. */
	return gpt2_matmul(g, g->lnf, 0, g->hw[GPT2_WTE], 1, g->logits, 1.0f, 0.0f, prio,
	                   gpt2_name(g, "matmul", L, "fwd"));
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */

int gpt2_linear_bwd(struct lspo_gpt2 *g, starpu_data_handle_t inp, starpu_data_handle_t w,
                    starpu_data_handle_t dout, starpu_data_handle_t dinp, starpu_data_handle_t dw,
                    starpu_data_handle_t db, int prio, const char *name)
{
	TRY(gpt2_matmul(g, dout, 0, w, 1, dinp, 1.0f, 0.0f, prio, name));
	TRY(gpt2_matmul(g, inp, 1, dout, 0, dw, 1.0f, 0.0f, prio, name));
	return lspo_matmul_submit(g->ones_whole, dout, db, 1, 0, 1.0f, 0.0f, prio, name);
}

/* g->dres holds d(res3 of layer l) on entry, d(res_in) on exit. */
static int backward_layer(struct lspo_gpt2 *g, int l, starpu_data_handle_t res_in)
{
	struct gpt2_acts *a = &g->acts[l];
	starpu_data_handle_t *p = &g->hw[gpt2_layer_index(l, 0)];
	starpu_data_handle_t *d = &g->hg[gpt2_layer_index(l, 0)];
	int prio = g->prio_bwd(g, l);
	const char *ln = gpt2_name(g, "layernorm", l, "bwd"), *fill = gpt2_name(g, "fill", l, "bwd");
	TRY(g->linear_bwd(g, l, GPT2_FCPROJ_W, a->fch_gelu, g->dres, g->dfch_gelu, prio));
	TRY(lspo_gelu_bwd_submit(a->fch, g->dfch_gelu, g->dfch, prio, gpt2_name(g, "gelu", l, "bwd")));
	TRY(g->linear_bwd(g, l, GPT2_FC_W, a->ln2, g->dfch, g->dln, prio));
	TRY(lspo_fill_submit(d[GPT2_LN2_W], 0.0f, prio, fill));
	TRY(lspo_fill_submit(d[GPT2_LN2_B], 0.0f, prio, fill));
	TRY(lspo_layernorm_bwd_submit(g->dln, a->res2, p[GPT2_LN2_W], a->ln2_mean, a->ln2_rstd,
	                              g->dres, d[GPT2_LN2_W], d[GPT2_LN2_B], prio, ln));
	TRY(g->linear_bwd(g, l, GPT2_ATTPROJ_W, a->atty, g->dres, g->datty, prio));
	TRY(lspo_attention_bwd_submit(g->datty, a->qkv, a->atty, a->lse, g->dqkv, g->B, g->cfg.n_head,
	                              prio, gpt2_name(g, "attention", l, "bwd")));
	TRY(g->linear_bwd(g, l, GPT2_QKV_W, a->ln1, g->dqkv, g->dln, prio));
	TRY(lspo_fill_submit(d[GPT2_LN1_W], 0.0f, prio, fill));
	TRY(lspo_fill_submit(d[GPT2_LN1_B], 0.0f, prio, fill));
	return lspo_layernorm_bwd_submit(g->dln, res_in, p[GPT2_LN1_W], a->ln1_mean, a->ln1_rstd,
	                                 g->dres, d[GPT2_LN1_W], d[GPT2_LN1_B], prio, ln);
}

/* From dlogits (in g->logits, written by the loss task) to every gradient. */
static int submit_backward(struct lspo_gpt2 *g)
{
	int L = g->cfg.n_layer, f = gpt2_lnf_index(g);
	int prio = g->prio_bwd(g, L);
	const char *mm = gpt2_name(g, "matmul", L, "bwd"), *fill = gpt2_name(g, "fill", L, "bwd");
	/* LM head: dlnf = dlogits wte (row blocks, as the loss left dlogits),
	 * then dwte = dlogits^T lnf (the first write of dwte). */
	TRY(gpt2_matmul(g, g->logits, 0, g->hw[GPT2_WTE], 0, g->dln, 1.0f, 0.0f, prio, mm));
	TRY(gpt2_matmul(g, g->logits, 1, g->lnf, 0, g->hg[GPT2_WTE], 1.0f, 0.0f, prio, mm));
	TRY(lspo_fill_submit(g->dres, 0.0f, prio, fill));
	TRY(lspo_fill_submit(g->hg[f], 0.0f, prio, fill));
	TRY(lspo_fill_submit(g->hg[f + 1], 0.0f, prio, fill));
	TRY(lspo_layernorm_bwd_submit(g->dln, g->acts[L - 1].res3, g->hw[f], g->lnf_mean, g->lnf_rstd,
	                              g->dres, g->hg[f], g->hg[f + 1], prio, gpt2_name(g, "layernorm", L, "bwd")));
	for (int l = L - 1; l >= 0; l--)
		TRY(backward_layer(g, l, l == 0 ? g->encoded : g->acts[l - 1].res3));
	prio = g->prio_bwd(g, 0);
	TRY(lspo_fill_submit(g->hg[GPT2_WPE], 0.0f, prio, gpt2_name(g, "fill", 0, "bwd")));
	return lspo_encoder_bwd_submit(g->dres, g->tokens, g->hg[GPT2_WTE], g->hg[GPT2_WPE], prio,
	                               gpt2_name(g, "encoder", 0, "bwd"));
}

/* Global norm of the gradients the optimizer will see -> g->clip = {norm, scale}. */
int gpt2_submit_norm(struct lspo_gpt2 *g, float max_norm)
{
	int n = 0;
	for (int i = 0; i < g->layout.ntensors; i++) {
		if (!g->grad_in_norm(g, i))
			continue;
		int cpu = g->norm_on_cpu && g->norm_on_cpu(g, i);
		TRY(lspo_sumsq_submit_where(g->hg[i], g->hpartial[i], cpu ? STARPU_CPU : STARPU_CPU | STARPU_CUDA,
		                            0, gpt2_name(g, "sumsq", gpt2_tensor_layer(g, i), "upd")));
		g->norm_parts[n++] = g->hpartial[i];
	}
	if (n == 0) {   /* nothing dense to update (lsp with --freeze-dense): norm 0, no clip */
		starpu_data_acquire(g->clip, STARPU_W);
		g->clip_buf[0] = 0.0f;
		g->clip_buf[1] = 1.0f;
		starpu_data_release(g->clip);
		return LSPO_OK;
	}
	return lspo_clip_scale_submit(g->norm_parts, n, g->clip, max_norm, 0,
	                              gpt2_name(g, "clip_scale", -1, "upd"));
}

/* ------------------------------------------------------------------------ */
/* Native mode: every tensor updated by AdamW where its gradient is.        */

static int native_prio(struct lspo_gpt2 *g, int layer) { (void)g; (void)layer; return 0; }
static int native_in_norm(struct lspo_gpt2 *g, int i) { (void)g; (void)i; return 1; }

static int native_linear_fwd(struct lspo_gpt2 *g, int l, int kind, starpu_data_handle_t inp,
                             starpu_data_handle_t out, int prio, const char *name)
{
	int w = gpt2_layer_index(l, kind);
	return gpt2_linear_fwd(g, inp, g->hw[w], g->hw[w + 1], out, prio, name);
}

static int native_linear_bwd(struct lspo_gpt2 *g, int l, int kind, starpu_data_handle_t inp,
                             starpu_data_handle_t dout, starpu_data_handle_t dinp, int prio)
{
	int w = gpt2_layer_index(l, kind);
	return gpt2_linear_bwd(g, inp, g->hw[w], dout, dinp, g->hg[w], g->hg[w + 1], prio,
	                       gpt2_name(g, "matmul", l, "bwd"));
}

int gpt2_tensor_layer(const struct lspo_gpt2 *g, int i)
{
	int layer = g->layout.tensors[i].layer;
	return layer >= 0 ? layer : (i < 2 ? 0 : g->cfg.n_layer);
}

int gpt2_submit_adamw(struct lspo_gpt2 *g, int i, const struct lspo_optim *opt, uint32_t where, int prio)
{
	const struct gpt2_tensor *t = &g->layout.tensors[i];
	struct lspo_adamw_hparams h = {
		.lr = opt->lr, .beta1 = opt->beta1, .beta2 = opt->beta2, .eps = opt->eps,
		.weight_decay = t->rows > 1 ? opt->weight_decay : 0.0f, .t = g->step,
	};
	return lspo_adamw_submit_where(g->hp[i], g->hg[i], g->hm[i], g->hv[i], g->clip, &h, where, prio,
	                               gpt2_name(g, "adamw", gpt2_tensor_layer(g, i), "upd"));
}

static int native_update(struct lspo_gpt2 *g, const struct lspo_optim *opt)
{
	for (int i = 0; i < g->layout.ntensors; i++)
		TRY(gpt2_submit_adamw(g, i, opt, STARPU_CPU | STARPU_CUDA, 0));
	return LSPO_OK;
}

void gpt2_use_native(struct lspo_gpt2 *g)
{
	g->prio_fwd = native_prio;
	g->prio_bwd = native_prio;
	g->grad_in_norm = native_in_norm;
	g->linear_fwd = native_linear_fwd;
	g->linear_bwd = native_linear_bwd;
	g->update = native_update;
	g->norm_on_cpu = NULL;
	g->after_backward = NULL;
	g->after_set_params = NULL;
}

/* ------------------------------------------------------------------------ */
/* Steps                                                                    */

static int set_batch(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets)
{
	for (int i = 0; i < g->N; i++) {
		if (inputs[i] < 0 || inputs[i] >= g->cfg.vocab_size)
			LSPO_FAIL(LSPO_EINVAL, "input token %d at position %d is outside the vocabulary [0, %d)",
			          inputs[i], i, g->cfg.vocab_size);
		if (targets && (targets[i] < 0 || targets[i] >= g->cfg.vocab_size))
			LSPO_FAIL(LSPO_EINVAL, "target token %d at position %d is outside the vocabulary [0, %d)",
			          targets[i], i, g->cfg.vocab_size);
	}
	starpu_data_acquire(g->tokens, STARPU_W);
	memcpy(g->tok_buf, inputs, (size_t)g->N * sizeof(int32_t));
	starpu_data_release(g->tokens);
	/* targets and targets_flat view the same memory: both are written. */
	starpu_data_acquire(g->targets, STARPU_W);
	starpu_data_acquire(g->targets_flat, STARPU_W);
	memcpy(g->tgt_buf, targets, (size_t)g->N * sizeof(int32_t));
	starpu_data_release(g->targets_flat);
	starpu_data_release(g->targets);
	return LSPO_OK;
}

static double mean_loss(struct lspo_gpt2 *g)
{
	starpu_data_acquire(g->losses, STARPU_R);
	const float *l = (const float *)starpu_data_get_local_ptr(g->losses);
	double sum = 0;
	for (int i = 0; i < g->N; i++)
		sum += l[i];
	starpu_data_release(g->losses);
	return sum / g->N;
}

static double read_norm(struct lspo_gpt2 *g)
{
	starpu_data_acquire(g->clip, STARPU_R);
	double norm = g->clip_buf[0];
	starpu_data_release(g->clip);
	return norm;
}

int lspo_gpt2_forward(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets, double *loss)
{
	lspo_trace_mark_step(0);   /* evaluation is not part of a training step */
	TRY(set_batch(g, inputs, targets));
	TRY(submit_forward(g));
	TRY(lspo_xent_fwd_submit(g->logits, g->targets, g->losses, 0, gpt2_name(g, "xent", -1, "fwd")));
	*loss = mean_loss(g);
	return LSPO_OK;
}

/* Loss and dlogits, in the row blocks the LM head left the logits in. */
static int submit_loss(struct lspo_gpt2 *g)
{
	int prio = g->prio_fwd(g, g->cfg.n_layer);
	const char *name = gpt2_name(g, "xent", -1, "fwd");
	if (g->split < 2 || g->N < 16 * g->split)
		return lspo_xent_fwdbwd_submit(g->logits, g->targets, g->losses, 1.0f / g->N, prio, name);
	starpu_data_handle_t *lg = plan(g, g->logits, 0), *tg = plan(g, g->targets_flat, 1);
	starpu_data_handle_t *ls = plan(g, g->losses, 1);
	if (!lg || !tg || !ls)
		return lspo_xent_fwdbwd_submit(g->logits, g->targets, g->losses, 1.0f / g->N, prio, name);
	for (int i = 0; i < g->split; i++)
		TRY(lspo_xent_fwdbwd_submit(lg[i], tg[i], ls[i], 1.0f / g->N, prio, name));
	return LSPO_OK;
}

static int submit_gradients(struct lspo_gpt2 *g)
{
	TRY(submit_forward(g));
	TRY(submit_loss(g));
	return submit_backward(g);
}

static int submit_forward_backward(struct lspo_gpt2 *g, float clip)
{
	TRY(submit_gradients(g));
	if (g->after_backward)
		TRY(g->after_backward(g));
	return gpt2_submit_norm(g, clip);
}

int gpt2_dense_grads(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets)
{
	lspo_trace_mark_step(0);   /* calibration, not a training step */
	TRY(set_batch(g, inputs, targets));
	TRY(submit_gradients(g));
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

int lspo_gpt2_forward_backward(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets,
                               double *loss, double *grad_norm)
{
	lspo_trace_mark_step(0);
	TRY(set_batch(g, inputs, targets));
	TRY(submit_forward_backward(g, 0.0f));
	starpu_task_wait_for_all();
	*loss = mean_loss(g);
	*grad_norm = read_norm(g);
	return LSPO_OK;
}

int lspo_gpt2_train_step(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets,
                         const struct lspo_optim *opt, struct lspo_step_stats *stats)
{
	double t0 = starpu_timing_now();
	TRY(set_batch(g, inputs, targets));
	double d2h0, h2d0;
	bus_bytes(&d2h0, &h2d0);
	g->step++;
	starpu_iteration_push(g->step);
	lspo_trace_mark_step(g->step);
	int rc = submit_forward_backward(g, opt->clip);
	if (!rc)
		rc = g->update(g, opt);
	starpu_iteration_pop();
	starpu_task_wait_for_all();   /* the step's one wait */
	if (rc)
		return rc;
	stats->step = g->step;
	stats->loss = mean_loss(g);
	stats->grad_norm = read_norm(g);
	stats->seconds = (starpu_timing_now() - t0) * 1e-6;
	bus_bytes(&stats->bytes_d2h, &stats->bytes_h2d);
	stats->bytes_d2h -= d2h0;
	stats->bytes_h2d -= h2d0;
	return LSPO_OK;
}

struct lspo_optim lspo_optim_default(void)
{
	return (struct lspo_optim){ .lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                            .weight_decay = 0.0f, .clip = 1.0f };
}
