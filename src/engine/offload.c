/*
 * offload.c - the zero and lsp modes of the engine (lsp-offload.md 5, 8, 16).
 *
 * A mode replaces the engine's hooks (engine/model.h); the task graph stays
 * one graph, ordered by data:
 *
 *   zero: every gradient's norm partial runs on a CPU worker, so the gradient
 *         moves to host memory as soon as its layer's backward is done (the
 *         offload overlaps the backward of the layers below); AdamW runs on
 *         CPU workers on the fp32 master weights in the host slab; StarPU
 *         moves the updated weights back before the next forward reads them.
 *   lsp:  for the linear maps of the targeted roles (by default every
 *         linear map of a block), each seen as W (in, out) with y = x W,
 *         the forward also keeps A = P^T X^T (d, N); the backward forms dX
 *         and G_hat = A (dY Q) (d, d) into a handle whose home is pinned
 *         host memory; subspace Adam runs on a CPU worker into Delta
 *         (host); proj_apply adds P Delta Q^T to W on the accelerator (to
 *         a weight stored (out, in): Q Delta^T P^T).  Other parameters
 *         follow native AdamW on the accelerator, or stay frozen.
 *
 * Task stages (the lspo policy reads them from the names): fwd, bwd, proj
 * (G_hat), upd (CPU update), apply (W += P Delta Q^T).
 */
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "engine/lsp_learn.h"
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

/* One compressed linear map, W seen as (m, n) = (in, out). */
struct lsp_matrix {
	int lin, tensor, layer, m, n, d;
	enum model_orient orient;
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
	struct lsp_matrix *mats;                   /* lsp only, in linear-map order */
	int nmats;
	int *matrix_of_tensor;                     /* tensor -> index in mats, or -1 */
	int *matrix_of_linear;                     /* linear map -> index in mats, or -1 */
	struct lsp_learn *learn;                   /* the projector check's state (lsp_learn.c) */
};

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

int lspo_lsp_targets_parse(enum lspo_family family, const char *text, unsigned *mask)
{
	const struct model_family *fam = model_family_of(family);
	if (!fam)
		LSPO_FAIL(LSPO_EINVAL, "unknown model family %d", (int)family);
	*mask = 0;
	const char *p = text;
	while (*p) {
		size_t len = strcspn(p, ",");
		int found = -1;
		for (int r = 0; r < fam->nroles && found < 0; r++)
			if (strlen(fam->roles[r]) == len && strncmp(fam->roles[r], p, len) == 0)
				found = r;
		if (found < 0) {
			char list[256] = "";
			for (int r = 0; r < fam->nroles; r++)
				snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", r ? "," : "", fam->roles[r]);
			LSPO_FAIL(LSPO_EINVAL, "--lsp-targets: unknown target '%.*s' for %s models (expected some of %s)",
			          (int)len, p, fam->name, list);
		}
		*mask |= 1u << found;
		p += len + (p[len] == ',');
	}
	if (!*mask)
		LSPO_FAIL(LSPO_EINVAL, "--lsp-targets: no target given");
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Priorities for priority-driven policies (prio, dmdas, ...): the backward   */
/* critical path first, then the offload pipeline of the deepest layers      */
/* (their gradients arrive first), the forward last.  The lspo policy orders */
/* by stage and layer itself.                                                */

static int prio_fwd(struct lspo_model *m, int layer) { (void)m; (void)layer; return 0; }
static int prio_bwd(struct lspo_model *m, int layer) { return 2 * m->cfg.n_layer + 2 + layer; }
static int prio_pipeline(struct lspo_model *m, int layer) { (void)m; return 1 + layer; }

/* ------------------------------------------------------------------------ */
/* zero                                                                     */

static int zero_norm_where(struct lspo_model *m, int i)
{
	(void)m;
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
static int zero_bf16_offload(struct lspo_model *m)
{
	struct offload *o = m->mode;
	for (int i = 0; i < m->layout.ntensors; i++) {
		int l = model_tensor_layer(m, i), prio = prio_pipeline(m, l);
		const char *name = model_name(m, "cast", l, "offload");
		TRY(lspo_cast_f32_bf16_submit(m->hg[i], o->grad16[i], accel(), prio, name));
		TRY(lspo_cast_bf16_f32_submit(o->grad16[i], m->hg[i], STARPU_CPU, prio, name));
	}
	return LSPO_OK;
}

/* zero/bf16: master weights of tensor i cross the bus as bf16 into the
 * accelerator's fp32 working copy, which thus always holds bf16 values. */
static int zero_bf16_upload(struct lspo_model *m, int i, int prio)
{
	struct offload *o = m->mode;
	int layer = model_tensor_layer(m, i);
	TRY(lspo_cast_f32_bf16_submit(m->hp[i], o->weight16[i], STARPU_CPU, prio,
	                              model_name(m, "cast", layer, "upload")));
	return lspo_cast_bf16_f32_submit(o->weight16[i], o->work[i], accel(), prio,
	                                 model_name(m, "cast", layer, "apply"));
}

/* zero/bf16, after new master weights (build, lspo_model_set_params). */
static int zero_bf16_upload_all(struct lspo_model *m)
{
	for (int i = 0; i < m->layout.ntensors; i++)
		TRY(zero_bf16_upload(m, i, 0));
	return LSPO_OK;
}

static int zero_update(struct lspo_model *m, const struct lspo_optim *opt)
{
	struct offload *o = m->mode;
	for (int i = 0; i < m->layout.ntensors; i++) {
		int prio = prio_pipeline(m, model_tensor_layer(m, i));
		TRY(model_submit_adamw(m, i, opt, STARPU_CPU, prio));
		if (o->work)
			TRY(zero_bf16_upload(m, i, prio));
	}
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* lsp                                                                      */

static struct lsp_matrix *matrix(struct lspo_model *m, int lin)
{
	struct offload *o = m->mode;
	int k = o->matrix_of_linear[lin];
	return k >= 0 ? &o->mats[k] : NULL;
}

static int lsp_in_norm(struct lspo_model *m, int i)
{
	struct offload *o = m->mode;
	return o->matrix_of_tensor[i] < 0 && !o->o.freeze_dense;
}

static int lsp_linear_fwd(struct lspo_model *m, int lin, starpu_data_handle_t inp, starpu_data_handle_t out,
                          int prio)
{
	TRY(model_linear_dense_fwd(m, lin, inp, out, prio));
	struct lsp_matrix *mx = matrix(m, lin);
	if (!mx || m->recomputing)   /* A kept from the forward (recompute.c) */
		return LSPO_OK;
	starpu_data_handle_t pidx, pval;
	lspo_proj_handles(mx->proj, &pidx, &pval, NULL, NULL);
	return lspo_project_fwd_submit(inp, pidx, pval, mx->A, prio, model_name(m, "project_fwd", mx->layer, "fwd"));
}

static int lsp_linear_bwd(struct lspo_model *m, int lin, starpu_data_handle_t inp, starpu_data_handle_t dout,
                          starpu_data_handle_t dinp, int accumulate, int prio)
{
	struct offload *o = m->mode;
	struct lsp_matrix *mx = matrix(m, lin);
	const struct model_linear *L = &m->layout.linears[lin];
	TRY(model_linear_dinp(m, lin, dout, dinp, accumulate, prio));
	if (!mx)   /* not a target: dense gradients, as native */
		return model_linear_dweights(m, lin, inp, dout, m->hg[L->weight],
		                             L->bias >= 0 ? m->hg[L->bias] : NULL, prio);
	/* the compressed A replaces the input */
	if (!o->o.freeze_dense && L->bias >= 0)
		TRY(model_linear_dweights(m, lin, inp, dout, NULL, m->hg[L->bias], prio));
	starpu_data_handle_t qidx, qval;
	lspo_proj_handles(mx->proj, NULL, NULL, &qidx, &qval);
	return lspo_project_bwd_submit(dout, qidx, qval, mx->A, mx->ghat, model_grad_beta(m),
	                               prio_pipeline(m, mx->layer) + m->cfg.n_layer,
	                               model_name(m, "project_bwd", mx->layer, "proj"));
}

/* W += s P Delta Q^T, or for a weight stored (out, in), W += s Q Delta^T P^T. */
static int lsp_apply(struct lspo_model *m, struct lsp_matrix *mx, const struct lspo_optim *opt, int prio)
{
	struct offload *o = m->mode;
	starpu_data_handle_t pidx, pval, qidx, qval;
	lspo_proj_handles(mx->proj, &pidx, &pval, &qidx, &qval);
	float gain = o->o.lsp_plain_apply ? 1.0f : lspo_proj_gain(mx->proj);
	const char *name = model_name(m, "proj_apply", mx->layer, "apply");
	if (model_bf16_sr_active(m)) {   /* --bf16-update stochastic: into the bf16 weight (dtype.c) */
		uint64_t key = model_bf16_sr_key(m, mx->tensor);
		float wd = opt->lr * opt->weight_decay;
		if (mx->orient == ORIENT_IN_OUT)
			return lspo_proj_apply_sr_submit(m->w16[mx->tensor], pidx, pval, qidx, qval, mx->delta, gain, wd, 0,
			                                 key, prio, name);
		return lspo_proj_apply_sr_submit(m->w16[mx->tensor], qidx, qval, pidx, pval, mx->delta, gain, wd, 1, key,
		                                 prio, name);
	}
	if (mx->orient == ORIENT_IN_OUT)
		return lspo_proj_apply_submit(m->hp[mx->tensor], pidx, pval, qidx, qval, mx->delta, gain,
		                              opt->lr * opt->weight_decay, prio, name);
	return lspo_proj_apply_t_submit(m->hp[mx->tensor], qidx, qval, pidx, pval, mx->delta, gain,
	                                opt->lr * opt->weight_decay, prio, name);
}

static int lsp_update(struct lspo_model *m, const struct lspo_optim *opt)
{
	struct offload *o = m->mode;
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
		int prio = prio_pipeline(m, mx->layer);
		TRY(lspo_subspace_adam_submit(mx->ghat, mx->delta, mx->M, mx->V, &h, prio,
		                              model_name(m, "subspace_adam", mx->layer, "upd")));
		TRY(lsp_apply(m, mx, opt, prio));
	}
	if (o->o.freeze_dense)
		return LSPO_OK;
	for (int i = 0; i < m->layout.ntensors; i++)
		if (o->matrix_of_tensor[i] < 0)
			TRY(model_submit_adamw(m, i, opt, STARPU_CPU | STARPU_CUDA, 0));
	return LSPO_OK;
}

/* New parameters: the subspace moments and step counts start again. */
static int lsp_reset(struct lspo_model *m)
{
	struct offload *o = m->mode;
	for (int k = 0; k < o->nmats; k++) {
		struct lsp_matrix *mx = &o->mats[k];
		const char *name = model_name(m, "fill", mx->layer, "upd");
		TRY(lspo_fill_submit(mx->M, 0.0f, 0, name));
		TRY(lspo_fill_submit(mx->V, 0.0f, 0, name));
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
	model_host_free(mx->host, 4 * (size_t)mx->d * mx->d * sizeof(float));
}

static void offload_free(struct lspo_model *m)
{
	struct offload *o = m->mode;
	if (!o)
		return;
	starpu_task_wait_for_all();
	lsp_learn_free(o->learn);
	for (int k = 0; k < o->nmats; k++)
		lsp_matrix_free(&o->mats[k]);
	if (o->grad16) {
		if (o->work)
			m->hw = m->hp;
		for (int i = 0; i < m->layout.ntensors; i++) {
			if (o->work && o->work[i])
				starpu_data_unregister(o->work[i]);
			if (o->grad16[i])
				starpu_data_unregister(o->grad16[i]);
			if (o->weight16 && o->weight16[i])
				starpu_data_unregister(o->weight16[i]);
		}
		free(o->work);
		free(o->grad16);
		free(o->weight16);
	}
	lspo_proj_registry_free(o->reg);
	free(o->mats);
	free(o->matrix_of_tensor);
	free(o->matrix_of_linear);
	free(o);
	m->mode = NULL;
}

static int lsp_matrix_build(struct lspo_model *m, struct offload *o, struct lsp_matrix *mx, int lin)
{
	const struct model_linear *L = &m->layout.linears[lin];
	const struct model_tensor *t = &m->layout.tensors[L->weight];
	int d = o->o.lsp_d;
	d = d < L->in ? d : L->in;
	d = d < L->out ? d : L->out;
	*mx = (struct lsp_matrix){ .lin = lin, .tensor = L->weight, .layer = L->layer, .m = L->in, .n = L->out,
	                           .d = d, .orient = L->orient };
	TRY(lspo_proj_registry_get(o->reg, L->role, L->layer, mx->m, mx->n, &mx->proj));
	TRY(lspo_proj_register(mx->proj));
	int pd;
	lspo_proj_shape(mx->proj, NULL, NULL, &pd, NULL);
	if (pd != d)
		LSPO_FAIL(LSPO_EINVAL, "lsp: projector of %s has d = %d, expected %d", t->name, pd, d);
	size_t dd = (size_t)d * d;
	TRY(model_host_alloc((void **)&mx->host, 4 * dd * sizeof(float), t->name));
	lspo_matrix_register(&mx->ghat, mx->host, d, d);
	lspo_matrix_register(&mx->delta, mx->host + dd, d, d);
	lspo_matrix_register(&mx->M, mx->host + 2 * dd, d, d);
	lspo_matrix_register(&mx->V, mx->host + 3 * dd, d, d);
	lspo_matrix_register(&mx->A, NULL, d, m->N);
	return LSPO_OK;
}

static int lsp_build(struct lspo_model *m, struct offload *o)
{
	const struct lspo_offload_opts *op = &o->o;
	if (op->lsp_d < 1 || op->lsp_r < 1 || op->lsp_r > op->lsp_d)
		LSPO_FAIL(LSPO_EINVAL, "lsp: need d >= 1 and 1 <= r <= d (d = %d, r = %d)", op->lsp_d, op->lsp_r);
	unsigned targets = op->lsp_targets ? op->lsp_targets : m->fam->default_targets;
	if (targets >> m->fam->nroles)
		LSPO_FAIL(LSPO_EINVAL, "lsp: target mask 0x%x names roles %s models do not have", targets,
		          m->fam->name);
	/* d is capped at each matrix's smaller side (lsp_matrix_build), r at d. */
	TRY(lspo_proj_registry_create(op->lsp_shared, op->lsp_d, op->lsp_r, op->lsp_init, op->seed, &o->reg));
	o->mats = calloc(m->layout.nlinears ? m->layout.nlinears : 1, sizeof(*o->mats));
	if (!o->mats)
		LSPO_FAIL(LSPO_ENOMEM, "lsp: cannot allocate %d matrices", m->layout.nlinears);
	for (int i = 0; i < m->layout.nlinears; i++) {
		const struct model_linear *L = &m->layout.linears[i];
		if (!(targets & (1u << L->role)))
			continue;
		struct lsp_matrix *mx = &o->mats[o->nmats];
		TRY(lsp_matrix_build(m, o, mx, i));
		o->matrix_of_tensor[mx->tensor] = o->nmats;
		o->matrix_of_linear[i] = o->nmats++;
	}
	return LSPO_OK;
}

/* zero/bf16: working weights on the accelerator, bf16 values of the masters. */
static int zero_bf16_build(struct lspo_model *m, struct offload *o)
{
	int n = m->layout.ntensors;
	o->grad16 = calloc(n, sizeof(*o->grad16));
	if (!o->grad16)
		LSPO_FAIL(LSPO_ENOMEM, "zero: cannot allocate the bf16 handles");
	for (int i = 0; i < n; i++) {
		const struct model_tensor *t = &m->layout.tensors[i];
		lspo_matrix_register_elem(&o->grad16[i], NULL, t->rows, t->cols, sizeof(uint16_t));
	}
	if (m->bf16)   /* --dtype bf16: the working weights are already bf16 (dtype.c) */
		return LSPO_OK;
	o->work = calloc(n, sizeof(*o->work));
	o->weight16 = calloc(n, sizeof(*o->weight16));
	if (!o->work || !o->weight16)
		LSPO_FAIL(LSPO_ENOMEM, "zero: cannot allocate the bf16 handles");
	for (int i = 0; i < n; i++) {
		const struct model_tensor *t = &m->layout.tensors[i];
		lspo_matrix_register(&o->work[i], NULL, t->rows, t->cols);
		lspo_matrix_register_elem(&o->weight16[i], NULL, t->rows, t->cols, sizeof(uint16_t));
	}
	m->hw = o->work;
	return zero_bf16_upload_all(m);
}

static void use_offload_hooks(struct lspo_model *m, enum lspo_mode mode)
{
	model_use_native(m);
	if (mode == LSPO_MODE_NATIVE)
		return;
	m->prio_fwd = prio_fwd;
	m->prio_bwd = prio_bwd;
	if (mode == LSPO_MODE_ZERO) {
		struct offload *o = m->mode;
		m->norm_on_cpu = zero_norm_where;
		m->update = zero_update;
		m->after_backward = o->grad16 ? zero_bf16_offload : NULL;
		m->after_set_params = o->work ? zero_bf16_upload_all : NULL;
		return;
	}
	m->grad_in_norm = lsp_in_norm;
	m->after_set_params = lsp_reset;
	m->linear_fwd = lsp_linear_fwd;
	m->linear_bwd = lsp_linear_bwd;
	m->update = lsp_update;
}

static int alloc_index(int **p, int n)
{
	*p = malloc((size_t)(n ? n : 1) * sizeof(int));
	if (!*p)
		return LSPO_ENOMEM;
	for (int i = 0; i < n; i++)
		(*p)[i] = -1;
	return LSPO_OK;
}

int lspo_model_set_mode(struct lspo_model *m, const struct lspo_offload_opts *opts)
{
	if ((unsigned)opts->mode > LSPO_MODE_LSP)
		LSPO_FAIL(LSPO_EINVAL, "unknown mode %d", (int)opts->mode);
	starpu_task_wait_for_all();
	offload_free(m);
	m->free_mode = offload_free;
	struct offload *o = calloc(1, sizeof(*o));
	if (!o)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the offload state");
	m->mode = o;
	o->o = *opts;
	int rc = LSPO_OK;
	if (alloc_index(&o->matrix_of_tensor, m->layout.ntensors) || alloc_index(&o->matrix_of_linear, m->layout.nlinears)) {
		lspo_error("cannot allocate the offload state");
		rc = LSPO_ENOMEM;
	} else if (opts->offload_bf16 && opts->mode != LSPO_MODE_ZERO) {
		lspo_error("bf16 offload applies to the zero mode only (mode %s)", lspo_mode_name(opts->mode));
		rc = LSPO_EINVAL;
	} else if (opts->mode == LSPO_MODE_LSP) {
		rc = lsp_build(m, o);
	} else if (opts->offload_bf16) {
		rc = zero_bf16_build(m, o);
	}
	if (rc) {
		offload_free(m);
		model_use_native(m);
		m->mode_id = LSPO_MODE_NATIVE;
		return rc;
	}
	use_offload_hooks(m, opts->mode);
	m->mode_id = opts->mode;
	return model_bf16_mode_set(m);   /* --dtype bf16: the masters where the mode keeps them */
}

void lspo_model_offload_volume(const struct lspo_model *m, double *d2h, double *h2d)
{
	const struct offload *o = m->mode;
	double bytes = 0, up = 0;
	if (m->mode_id == LSPO_MODE_ZERO) {   /* gradients down; weights up, bf16 under --dtype bf16 */
		bytes = (o && o->grad16 ? 2.0 : 4.0) * (double)m->layout.nfloats;
		up = (o && o->work) || m->bf16 ? 2.0 * (double)m->layout.nfloats : bytes;
	}
	for (int k = 0; o && m->mode_id == LSPO_MODE_LSP && k < o->nmats; k++)
		bytes += 4.0 * o->mats[k].d * o->mats[k].d;
	*d2h = bytes;
	*h2d = m->mode_id == LSPO_MODE_ZERO ? up : bytes;
}

/* ------------------------------------------------------------------------ */
/* Training state (train_state.c)                                           */

int lsp_state_nmats(const struct lspo_model *m)
{
	const struct offload *o = m->mode;
	return m->mode_id == LSPO_MODE_LSP && o ? o->nmats : 0;
}

struct lsp_state lsp_state_matrix(struct lspo_model *m, int k)
{
	struct lsp_matrix *mx = &((struct offload *)m->mode)->mats[k];
	size_t dd = (size_t)mx->d * mx->d;
	return (struct lsp_state){ .d = mx->d, .M = mx->host + 2 * dd, .V = mx->host + 3 * dd,
	                           .hM = mx->M, .hV = mx->V, .t = &mx->t, .tensor = mx->tensor,
	                           .layer = mx->layer, .ghat = mx->ghat };
}

int lsp_hooks_active(const struct lspo_model *m)
{
	return m->mode_id == LSPO_MODE_LSP && m->linear_bwd == lsp_linear_bwd;
}

int lsp_state_npairs(const struct lspo_model *m)
{
	const struct offload *o = m->mode;
	return m->mode_id == LSPO_MODE_LSP && o ? lspo_proj_registry_count(o->reg) : 0;
}

struct lspo_proj *lsp_state_pair(struct lspo_model *m, int i)
{
	return lspo_proj_registry_at(((struct offload *)m->mode)->reg, i);
}

/* ------------------------------------------------------------------------ */
/* The projector check (paper Alg. 1, MAYBEUPDATE): tasks, in lsp_learn.c    */

struct lsp_check_matrix lsp_check_matrix_at(struct lspo_model *m, int k)
{
	struct lsp_matrix *mx = &((struct offload *)m->mode)->mats[k];
	return (struct lsp_check_matrix){ .proj = mx->proj, .tensor = mx->tensor, .layer = mx->layer, .m = mx->m,
	                                  .n = mx->n, .d = mx->d, .transposed = mx->orient != ORIENT_IN_OUT,
	                                  .M = mx->M, .V = mx->V };
}

const struct lspo_offload_opts *lsp_check_opts(const struct lspo_model *m)
{
	return &((const struct offload *)m->mode)->o;
}

struct lsp_learn **lsp_check_state(struct lspo_model *m)
{
	return &((struct offload *)m->mode)->learn;
}

/* Full weight gradients of the calibration batches, as the native graph
 * forms them, summed (as the reference code does) by tasks. */
static int lsp_calibrate(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, int nbatches,
                         const char *what)
{
	if (m->mode_id != LSPO_MODE_LSP || !m->mode)
		LSPO_FAIL(LSPO_EINVAL, "%s: the model is not in lsp mode", what);
	if (nbatches < 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: %d calibration batches", what, nbatches);
	TRY(lsp_learn_flush(m));
	int rc = LSPO_OK;
	model_use_native(m);
	for (int b = 0; b < nbatches && !rc; b++) {
		size_t at = (size_t)b * m->N;
		rc = model_dense_grads(m, inputs + at, targets + at);
		if (!rc)
			rc = lsp_learn_calib_add(m, b);
	}
	use_offload_hooks(m, LSPO_MODE_LSP);
	return rc;
}

int lspo_model_lsp_check(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, int nbatches,
                         struct lspo_lsp_check *report)
{
	memset(report, 0, sizeof(*report));
	TRY(lsp_calibrate(m, inputs, targets, nbatches, "lspo_model_lsp_check"));
	return lsp_learn_check(m, 0, report);
}

int lspo_model_lsp_check_start(struct lspo_model *m, const int32_t *inputs, const int32_t *targets,
                               int nbatches, int lag, struct lspo_lsp_check *report)
{
	memset(report, 0, sizeof(*report));
	if (lag < 1)
		LSPO_FAIL(LSPO_EINVAL, "lspo_model_lsp_check_start: lag %d (expected >= 1)", lag);
	TRY(lsp_calibrate(m, inputs, targets, nbatches, "lspo_model_lsp_check_start"));
	return lsp_learn_check(m, lag, report);
}

int lspo_model_lsp_learn_advance(struct lspo_model *m, int *published, struct lspo_lsp_check *report)
{
	*published = 0;
	if (m->mode_id != LSPO_MODE_LSP || !m->mode)
		return LSPO_OK;
	return lsp_learn_advance(m, published, report);
}
