/*
 * offload.c - the zero and lsp modes of the GPT-2 engine (lsp-offload.md 5, 8, 16).
 *
 * A mode replaces the engine's hooks (gpt2_internal.h); the task graph stays
 * one graph, ordered by data:
 *
 *   zero: every gradient's norm partial runs on a CPU worker, so the gradient
 *         moves to host memory as soon as its layer's backward is done (the
 *         offload overlaps the backward of the layers below); AdamW runs on
 *         CPU workers on the fp32 master weights in the host slab; StarPU
 *         moves the updated weights back before the next forward reads them.
 *   lsp:  for the four matrices of every block, the forward also keeps
 *         A = P^T X^T (d, N); the backward forms dX and G_hat = A (dY Q)
 *         (d, d) into a handle whose home is pinned host memory; subspace
 *         Adam runs on a CPU worker into Delta (host); proj_apply adds
 *         P Delta Q^T to W on the accelerator.  Other parameters follow
 *         native AdamW on the accelerator, or stay frozen.
 *
 * Task stages (the lspo policy reads them from the names): fwd, bwd, proj
 * (G_hat), upd (CPU update), apply (W += P Delta Q^T).
 */
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "gpt2_internal.h"
#include "projector.h"
#include "adamw.h"
#include "cast.h"
#include "fill.h"
#include "gradnorm.h"
#include "matmul.h"
#include "proj_apply.h"
#include "project_bwd.h"
#include "project_fwd.h"
#include "subspace_adam.h"

/* One compressed matrix W (m, n) of block `layer`. */
struct lsp_matrix {
	int tensor, layer, kind, m, n, d;
	struct lspo_proj *proj;                    /* owned by the registry */
	float *host;                               /* G_hat, Delta, M, V: (d, d) each, pinned */
	starpu_data_handle_t A;                    /* (d, N), kept from forward to backward */
	starpu_data_handle_t ghat, delta, M, V;
	int t;                                     /* subspace Adam steps of this matrix */
};

struct offload {
	struct lspo_offload_opts o;
	/* zero with bf16 transfers, per tensor: the accelerator's working weights,
	 * and the bf16 gradient and weights that cross the bus. */
	starpu_data_handle_t *work, *grad16, *weight16;
	struct lspo_proj_registry *reg;
	struct lsp_matrix *mats;                   /* 4 per block, lsp only */
	int nmats;
	int *matrix_of;                            /* tensor -> index in mats, or -1 */
	float *calib;                              /* summed calibration gradients of mats */
	size_t *calib_offset;                      /* (nmats) */
};

static const int compressed_kinds[4] = { GPT2_QKV_W, GPT2_ATTPROJ_W, GPT2_FC_W, GPT2_FCPROJ_W };

static enum lspo_proj_role role_of(int kind)
{
	switch (kind) {
	case GPT2_QKV_W: return LSPO_ROLE_QKV;
	case GPT2_ATTPROJ_W: return LSPO_ROLE_ATTN_OUT;
	case GPT2_FC_W: return LSPO_ROLE_FC;
	case GPT2_FCPROJ_W: return LSPO_ROLE_MLP_PROJ;
	default: return LSPO_ROLE_OTHER;
	}
}

struct lspo_offload_opts lspo_offload_opts_default(void)
{
	return (struct lspo_offload_opts){
		.mode = LSPO_MODE_NATIVE, .lsp_d = 256, .lsp_r = 8, .lsp_shared = 0,
		.lsp_init = LSPO_PROJ_GAUSSIAN, .lsp_alpha = 0.3, .lsp_eps_inside_sqrt = 0,
		.learn = lspo_proj_learn_opts_default(), .freeze_dense = 0, .seed = 1,
	};
}

const char *lspo_mode_name(enum lspo_mode mode)
{
	static const char *const names[] = { "native", "zero", "lsp" };
	return (unsigned)mode < 3 ? names[mode] : "unknown";
}

int lspo_mode_parse(const char *text, enum lspo_mode *mode)
{
	for (int m = 0; m < 3; m++)
		if (strcmp(text, lspo_mode_name((enum lspo_mode)m)) == 0) {
			*mode = (enum lspo_mode)m;
			return LSPO_OK;
		}
	LSPO_FAIL(LSPO_EINVAL, "unknown mode '%s': expected native, zero or lsp", text);
}

/* ------------------------------------------------------------------------ */
/* Priorities for priority-driven policies (prio, dmdas, ...): the backward   */
/* critical path first, then the offload pipeline of the deepest layers      */
/* (their gradients arrive first), the forward last.  The lspo policy orders */
/* by stage and layer itself.                                                */

static int prio_fwd(struct lspo_gpt2 *g, int layer) { (void)g; (void)layer; return 0; }
static int prio_bwd(struct lspo_gpt2 *g, int layer) { return 2 * g->cfg.n_layer + 2 + layer; }
static int prio_pipeline(struct lspo_gpt2 *g, int layer) { (void)g; return 1 + layer; }

/* ------------------------------------------------------------------------ */
/* zero                                                                     */

static int zero_norm_where(struct lspo_gpt2 *g, int i)
{
	(void)g;
	(void)i;
	return 1;
}

/* Accelerator-side stages run on CUDA workers when there are any, so that
 * only the bf16 copies cross the bus. */
static uint32_t accel(void)
{
	return starpu_cuda_worker_get_count() > 0 ? STARPU_CUDA : STARPU_CPU;
}

/* zero/bf16: each gradient crosses the bus as bf16 and becomes fp32 again
 * on the host, before the norm reads it. */
static int zero_bf16_offload(struct lspo_gpt2 *g)
{
	struct offload *o = g->mode;
	for (int i = 0; i < g->layout.ntensors; i++) {
		int l = gpt2_tensor_layer(g, i), prio = prio_pipeline(g, l);
		const char *name = gpt2_name(g, "cast", l, "offload");
		int rc = lspo_cast_f32_bf16_submit(g->hg[i], o->grad16[i], accel(), prio, name);
		if (!rc)
			rc = lspo_cast_bf16_f32_submit(o->grad16[i], g->hg[i], STARPU_CPU, prio, name);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}

/* zero/bf16: master weights of tensor i cross the bus as bf16 into the
 * accelerator's fp32 working copy, which thus always holds bf16 values. */
static int zero_bf16_upload(struct lspo_gpt2 *g, int i, int prio)
{
	struct offload *o = g->mode;
	int layer = gpt2_tensor_layer(g, i);
	int rc = lspo_cast_f32_bf16_submit(g->hp[i], o->weight16[i], STARPU_CPU, prio,
	                                   gpt2_name(g, "cast", layer, "upload"));
	if (!rc)
		rc = lspo_cast_bf16_f32_submit(o->weight16[i], o->work[i], accel(), prio,
		                               gpt2_name(g, "cast", layer, "apply"));
	return rc;
}

/* zero/bf16, after new master weights (build, lspo_gpt2_set_params). */
static int zero_bf16_upload_all(struct lspo_gpt2 *g)
{
	for (int i = 0; i < g->layout.ntensors; i++) {
		int rc = zero_bf16_upload(g, i, 0);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}

static int zero_update(struct lspo_gpt2 *g, const struct lspo_optim *opt)
{
	struct offload *o = g->mode;
	for (int i = 0; i < g->layout.ntensors; i++) {
		int prio = prio_pipeline(g, gpt2_tensor_layer(g, i));
		int rc = gpt2_submit_adamw(g, i, opt, STARPU_CPU, prio);
		if (!rc && o->work)
			rc = zero_bf16_upload(g, i, prio);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* lsp                                                                      */

static struct lsp_matrix *matrix(struct lspo_gpt2 *g, int layer, int kind)
{
	struct offload *o = g->mode;
	int k = o->matrix_of[gpt2_layer_index(layer, kind)];
	return k >= 0 ? &o->mats[k] : NULL;
}

static int lsp_in_norm(struct lspo_gpt2 *g, int i)
{
	struct offload *o = g->mode;
	return o->matrix_of[i] < 0 && !o->o.freeze_dense;
}

static int lsp_linear_fwd(struct lspo_gpt2 *g, int l, int kind, starpu_data_handle_t inp,
                          starpu_data_handle_t out, int prio, const char *name)
{
	int w = gpt2_layer_index(l, kind);
	int rc = gpt2_linear_fwd(g, inp, g->hp[w], g->hp[w + 1], out, prio, name);
	struct lsp_matrix *mx = matrix(g, l, kind);
	if (rc || !mx)
		return rc;
	starpu_data_handle_t pidx, pval;
	lspo_proj_handles(mx->proj, &pidx, &pval, NULL, NULL);
	return lspo_project_fwd_submit(inp, pidx, pval, mx->A, prio, gpt2_name(g, "project_fwd", l, "fwd"));
}

static int lsp_linear_bwd(struct lspo_gpt2 *g, int l, int kind, starpu_data_handle_t inp,
                          starpu_data_handle_t dout, starpu_data_handle_t dinp, int prio)
{
	struct offload *o = g->mode;
	struct lsp_matrix *mx = matrix(g, l, kind);
	int w = gpt2_layer_index(l, kind);
	const char *bwd = gpt2_name(g, "matmul", l, "bwd");
	(void)inp;   /* the compressed A replaces it */
	int rc = gpt2_matmul(g, dout, 0, g->hp[w], 1, dinp, 1.0f, 0.0f, prio, bwd);
	if (!rc && !o->o.freeze_dense)
		rc = lspo_matmul_submit(g->ones_whole, dout, g->hg[w + 1], 1, 0, 1.0f, 0.0f, prio, bwd);
	if (rc)
		return rc;
	starpu_data_handle_t qidx, qval;
	lspo_proj_handles(mx->proj, NULL, NULL, &qidx, &qval);
	return lspo_project_bwd_submit(dout, qidx, qval, mx->A, mx->ghat, 0.0f,
	                               prio_pipeline(g, l) + g->cfg.n_layer,
	                               gpt2_name(g, "project_bwd", l, "proj"));
}

static int lsp_update(struct lspo_gpt2 *g, const struct lspo_optim *opt)
{
	struct offload *o = g->mode;
	/* Deepest layers first: their G_hat arrived first.  The apply scales
	 * P Delta Q^T by the pair's gain (lspo_proj_gain): Delta has entries
	 * of about lr whatever the projectors' scale, so learned pairs, whose
	 * P^T P comes close to the identity, would otherwise take steps about
	 * d / sqrt(m n) as large as random ones (rows of unit norm); with it a
	 * refresh changes the subspace, not the learning rate.  The reference
	 * code applies P Delta Q^T as it is (lsp_plain_apply). */
	for (int k = o->nmats - 1; k >= 0; k--) {
		struct lsp_matrix *mx = &o->mats[k];
		struct lspo_subspace_adam_hparams h = {
			.lr = opt->lr, .beta1 = opt->beta1, .beta2 = opt->beta2, .eps = opt->eps,
			.t = ++mx->t, .eps_inside_sqrt = o->o.lsp_eps_inside_sqrt,
		};
		int prio = prio_pipeline(g, mx->layer);
		int rc = lspo_subspace_adam_submit(mx->ghat, mx->delta, mx->M, mx->V, &h, prio,
		                                   gpt2_name(g, "subspace_adam", mx->layer, "upd"));
		starpu_data_handle_t pidx, pval, qidx, qval;
		lspo_proj_handles(mx->proj, &pidx, &pval, &qidx, &qval);
		if (!rc)
			rc = lspo_proj_apply_submit(g->hp[mx->tensor], pidx, pval, qidx, qval, mx->delta,
			                            o->o.lsp_plain_apply ? 1.0f : lspo_proj_gain(mx->proj),
			                            opt->lr * opt->weight_decay, prio,
			                            gpt2_name(g, "proj_apply", mx->layer, "apply"));
		if (rc)
			return rc;
	}
	if (o->o.freeze_dense)
		return LSPO_OK;
	for (int i = 0; i < g->layout.ntensors; i++)
		if (o->matrix_of[i] < 0) {
			int rc = gpt2_submit_adamw(g, i, opt, STARPU_CPU | STARPU_CUDA, 0);
			if (rc)
				return rc;
		}
	return LSPO_OK;
}

/* New parameters: the subspace moments and step counts start again. */
static int lsp_reset(struct lspo_gpt2 *g)
{
	struct offload *o = g->mode;
	for (int k = 0; k < o->nmats; k++) {
		struct lsp_matrix *mx = &o->mats[k];
		const char *name = gpt2_name(g, "fill", mx->layer, "upd");
		int rc = lspo_fill_submit(mx->M, 0.0f, 0, name);
		if (!rc)
			rc = lspo_fill_submit(mx->V, 0.0f, 0, name);
		if (rc)
			return rc;
		mx->t = 0;
	}
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Build and free                                                           */

static void lsp_matrix_free(struct lsp_matrix *mx)
{
	starpu_data_handle_t h[] = { mx->A, mx->ghat, mx->delta, mx->M, mx->V };
	for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++)
		if (h[i])
			starpu_data_unregister(h[i]);
	starpu_free(mx->host);
}

static void offload_free(struct lspo_gpt2 *g)
{
	struct offload *o = g->mode;
	if (!o)
		return;
	starpu_task_wait_for_all();
	for (int k = 0; k < o->nmats; k++)
		lsp_matrix_free(&o->mats[k]);
	if (o->work) {
		g->hw = g->hp;
		for (int i = 0; i < g->layout.ntensors; i++) {
			starpu_data_unregister(o->work[i]);
			starpu_data_unregister(o->grad16[i]);
			starpu_data_unregister(o->weight16[i]);
		}
		free(o->work);
		free(o->grad16);
		free(o->weight16);
	}
	lspo_proj_registry_free(o->reg);
	free(o->calib);
	free(o->calib_offset);
	free(o->mats);
	free(o->matrix_of);
	free(o);
	g->mode = NULL;
}

static int lsp_matrix_build(struct lspo_gpt2 *g, struct offload *o, struct lsp_matrix *mx,
                            int layer, int kind)
{
	const struct gpt2_tensor *t = &g->layout.tensors[gpt2_layer_index(layer, kind)];
	int d = o->o.lsp_d;
	d = d < t->rows ? d : t->rows;
	d = d < t->cols ? d : t->cols;
	*mx = (struct lsp_matrix){ .tensor = gpt2_layer_index(layer, kind), .layer = layer, .kind = kind,
	                           .m = t->rows, .n = t->cols, .d = d };
	int rc = lspo_proj_registry_get(o->reg, role_of(kind), layer, mx->m, mx->n, &mx->proj);
	if (!rc)
		rc = lspo_proj_register(mx->proj);
	if (rc)
		return rc;
	int pd;
	lspo_proj_shape(mx->proj, NULL, NULL, &pd, NULL);
	if (pd != d)
		LSPO_FAIL(LSPO_EINVAL, "lsp: projector of %s has d = %d, expected %d", t->name, pd, d);
	size_t dd = (size_t)d * d;
	if (starpu_malloc((void **)&mx->host, 4 * dd * sizeof(float)))
		LSPO_FAIL(LSPO_ENOMEM, "lsp: cannot allocate %zu KiB for %s", 4 * dd * sizeof(float) >> 10, t->name);
	memset(mx->host, 0, 4 * dd * sizeof(float));
	lspo_matrix_register(&mx->ghat, mx->host, d, d);
	lspo_matrix_register(&mx->delta, mx->host + dd, d, d);
	lspo_matrix_register(&mx->M, mx->host + 2 * dd, d, d);
	lspo_matrix_register(&mx->V, mx->host + 3 * dd, d, d);
	lspo_matrix_register(&mx->A, NULL, d, g->N);
	return LSPO_OK;
}

static int lsp_build(struct lspo_gpt2 *g, struct offload *o)
{
	const struct lspo_offload_opts *op = &o->o;
	if (op->lsp_d < 1 || op->lsp_r < 1 || op->lsp_r > op->lsp_d)
		LSPO_FAIL(LSPO_EINVAL, "lsp: need d >= 1 and 1 <= r <= d (d = %d, r = %d)", op->lsp_d, op->lsp_r);
	/* Every block matrix has min(m, n) = n_embd: d is capped there, r at d. */
	int C = g->cfg.n_embd;
	int dmin = op->lsp_d < C ? op->lsp_d : C;
	int r = op->lsp_r < dmin ? op->lsp_r : dmin;
	int rc = lspo_proj_registry_create(op->lsp_shared, dmin, r, op->lsp_init, op->seed, &o->reg);
	if (rc)
		return rc;
	o->nmats = 4 * g->cfg.n_layer;
	o->mats = calloc(o->nmats, sizeof(*o->mats));
	if (!o->mats)
		LSPO_FAIL(LSPO_ENOMEM, "lsp: cannot allocate %d matrices", o->nmats);
	for (int l = 0; l < g->cfg.n_layer; l++)
		for (int k = 0; k < 4; k++) {
			struct lsp_matrix *mx = &o->mats[4 * l + k];
			if ((rc = lsp_matrix_build(g, o, mx, l, compressed_kinds[k])))
				return rc;
			o->matrix_of[mx->tensor] = 4 * l + k;
		}
	return LSPO_OK;
}

/* zero/bf16: working weights on the accelerator, bf16 values of the masters. */
static int zero_bf16_build(struct lspo_gpt2 *g, struct offload *o)
{
	int n = g->layout.ntensors;
	o->work = calloc(n, sizeof(*o->work));
	o->grad16 = calloc(n, sizeof(*o->grad16));
	o->weight16 = calloc(n, sizeof(*o->weight16));
	if (!o->work || !o->grad16 || !o->weight16)
		LSPO_FAIL(LSPO_ENOMEM, "zero: cannot allocate the bf16 handles");
	for (int i = 0; i < n; i++) {
		const struct gpt2_tensor *t = &g->layout.tensors[i];
		lspo_matrix_register(&o->work[i], NULL, t->rows, t->cols);
		lspo_matrix_register_elem(&o->grad16[i], NULL, t->rows, t->cols, sizeof(uint16_t));
		lspo_matrix_register_elem(&o->weight16[i], NULL, t->rows, t->cols, sizeof(uint16_t));
	}
	g->hw = o->work;
	return zero_bf16_upload_all(g);
}

static void use_offload_hooks(struct lspo_gpt2 *g, enum lspo_mode mode)
{
	gpt2_use_native(g);
	if (mode == LSPO_MODE_NATIVE)
		return;
	g->prio_fwd = prio_fwd;
	g->prio_bwd = prio_bwd;
	if (mode == LSPO_MODE_ZERO) {
		struct offload *o = g->mode;
		g->norm_on_cpu = zero_norm_where;
		g->update = zero_update;
		g->after_backward = o->work ? zero_bf16_offload : NULL;
		g->after_set_params = o->work ? zero_bf16_upload_all : NULL;
		return;
	}
	g->grad_in_norm = lsp_in_norm;
	g->after_set_params = lsp_reset;
	g->linear_fwd = lsp_linear_fwd;
	g->linear_bwd = lsp_linear_bwd;
	g->update = lsp_update;
}

int lspo_gpt2_set_mode(struct lspo_gpt2 *g, const struct lspo_offload_opts *opts)
{
	if ((unsigned)opts->mode > LSPO_MODE_LSP)
		LSPO_FAIL(LSPO_EINVAL, "unknown mode %d", (int)opts->mode);
	starpu_task_wait_for_all();
	offload_free(g);
	g->free_mode = offload_free;
	struct offload *o = calloc(1, sizeof(*o));
	if (!o || !(o->matrix_of = malloc(g->layout.ntensors * sizeof(int)))) {
		free(o);
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the offload state");
	}
	o->o = *opts;
	for (int i = 0; i < g->layout.ntensors; i++)
		o->matrix_of[i] = -1;
	g->mode = o;
	int rc = LSPO_OK;
	if (opts->offload_bf16 && opts->mode != LSPO_MODE_ZERO) {
		lspo_error("bf16 offload applies to the zero mode only (mode %s)", lspo_mode_name(opts->mode));
		rc = LSPO_EINVAL;
	} else if (opts->mode == LSPO_MODE_LSP) {
		rc = lsp_build(g, o);
	} else if (opts->offload_bf16) {
		rc = zero_bf16_build(g, o);
	}
	if (rc) {
		offload_free(g);
		gpt2_use_native(g);
		g->mode_id = LSPO_MODE_NATIVE;
		return rc;
	}
	use_offload_hooks(g, opts->mode);
	g->mode_id = opts->mode;
	return LSPO_OK;
}

void lspo_gpt2_offload_volume(const struct lspo_gpt2 *g, double *d2h, double *h2d)
{
	const struct offload *o = g->mode;
	double bytes = 0;
	if (g->mode_id == LSPO_MODE_ZERO)
		bytes = (o && o->work ? 2.0 : 4.0) * (double)g->layout.nfloats;
	for (int k = 0; o && g->mode_id == LSPO_MODE_LSP && k < o->nmats; k++)
		bytes += 4.0 * o->mats[k].d * o->mats[k].d;
	*d2h = bytes;
	*h2d = bytes;
}

/* ------------------------------------------------------------------------ */
/* Training state (train_state.c)                                           */

int lsp_state_nmats(const struct lspo_gpt2 *g)
{
	const struct offload *o = g->mode;
	return g->mode_id == LSPO_MODE_LSP && o ? o->nmats : 0;
}

struct lsp_state lsp_state_matrix(struct lspo_gpt2 *g, int k)
{
	struct lsp_matrix *mx = &((struct offload *)g->mode)->mats[k];
	size_t dd = (size_t)mx->d * mx->d;
	return (struct lsp_state){ .d = mx->d, .M = mx->host + 2 * dd, .V = mx->host + 3 * dd,
	                           .hM = mx->M, .hV = mx->V, .t = &mx->t };
}

int lsp_state_npairs(const struct lspo_gpt2 *g)
{
	const struct offload *o = g->mode;
	return g->mode_id == LSPO_MODE_LSP && o ? lspo_proj_registry_count(o->reg) : 0;
}

struct lspo_proj *lsp_state_pair(struct lspo_gpt2 *g, int i)
{
	return lspo_proj_registry_at(((struct offload *)g->mode)->reg, i);
}

/* ------------------------------------------------------------------------ */
/* The projector check (paper Alg. 1, MAYBEUPDATE)                          */

/* Refreshes the pair `p` from the gradients and moments of the matrices using it. */
static int check_pair(struct lspo_gpt2 *g, struct offload *o, struct lspo_proj *p, int seq,
                      struct lspo_lsp_check *report)
{
	const float *grads[4096];
	float *M[4096], *V[4096];
	int n = 0;
	for (int k = 0; k < o->nmats && n < 4096; k++)
		if (o->mats[k].proj == p) {
			struct lsp_matrix *mx = &o->mats[k];
			grads[n] = o->calib + o->calib_offset[k];
			M[n] = mx->host + 2 * (size_t)mx->d * mx->d;
			V[n] = mx->host + 3 * (size_t)mx->d * mx->d;
			starpu_data_acquire(mx->M, STARPU_RW);
			starpu_data_acquire(mx->V, STARPU_RW);
			n++;
		}
	struct lspo_proj_refresh_opts ro = lspo_proj_refresh_opts_default();
	ro.alpha = o->o.lsp_alpha;
	ro.init = o->o.lsp_init;
	ro.learn = o->o.learn;
	ro.seed = o->o.seed * 1000003u + (uint64_t)g->step * 7919u + (uint64_t)seq;
	struct lspo_proj_refresh_report rep;
	int rc = lspo_proj_maybe_refresh(p, grads, n, NULL, 0, &ro, M, V, n, &rep);
	for (int k = 0; k < o->nmats; k++)
		if (o->mats[k].proj == p) {
			starpu_data_release(o->mats[k].M);
			starpu_data_release(o->mats[k].V);
		}
	if (!rc) {
		report->err_before += rep.err_check * n;
		report->err_after += rep.err_after * n;
		report->refreshed += rep.refreshed;
		report->nmatrices += n;
	}
	return rc;
}

/* calib += (or =, first) the dense gradients of the compressed matrices. */
static int add_calibration(struct lspo_gpt2 *g, struct offload *o, int first)
{
	if (!o->calib) {
		size_t total = 0;
		o->calib_offset = malloc(o->nmats * sizeof(*o->calib_offset));
		for (int k = 0; o->calib_offset && k < o->nmats; k++) {
			o->calib_offset[k] = total;
			total += (size_t)o->mats[k].m * o->mats[k].n;
		}
		o->calib = o->calib_offset ? malloc(total * sizeof(float)) : NULL;
		if (!o->calib)
			LSPO_FAIL(LSPO_ENOMEM, "lsp check: cannot allocate %zu MiB of calibration gradients",
			          total * sizeof(float) >> 20);
	}
	for (int k = 0; k < o->nmats; k++) {
		struct lsp_matrix *mx = &o->mats[k];
		size_t len = (size_t)mx->m * mx->n;
		const float *src = g->grads + g->layout.tensors[mx->tensor].offset;
		float *dst = o->calib + o->calib_offset[k];
		starpu_data_acquire(g->hg[mx->tensor], STARPU_R);
		if (first)
			memcpy(dst, src, len * sizeof(float));
		else
			for (size_t i = 0; i < len; i++)
				dst[i] += src[i];
		starpu_data_release(g->hg[mx->tensor]);
	}
	return LSPO_OK;
}

int lspo_gpt2_lsp_check(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets, int nbatches,
                        struct lspo_lsp_check *report)
{
	struct offload *o = g->mode;
	memset(report, 0, sizeof(*report));
	if (g->mode_id != LSPO_MODE_LSP || !o)
		LSPO_FAIL(LSPO_EINVAL, "lspo_gpt2_lsp_check: the model is not in lsp mode");
	if (nbatches < 1)
		LSPO_FAIL(LSPO_EINVAL, "lspo_gpt2_lsp_check: %d calibration batches", nbatches);
	/* Full weight gradients of the calibration batches, as the native graph
	 * forms them, summed (as the reference code does). */
	int rc = LSPO_OK;
	gpt2_use_native(g);
	for (int b = 0; b < nbatches && !rc; b++) {
		size_t at = (size_t)b * g->N;
		rc = gpt2_dense_grads(g, inputs + at, targets + at);
		if (!rc)
			rc = add_calibration(g, o, b == 0);
	}
	use_offload_hooks(g, LSPO_MODE_LSP);
	for (int i = 0; i < lspo_proj_registry_count(o->reg) && !rc; i++)
		rc = check_pair(g, o, lspo_proj_registry_at(o->reg, i), i, report);
	if (report->nmatrices) {
		report->err_before /= report->nmatrices;
		report->err_after /= report->nmatrices;
	}
	return rc;
}
