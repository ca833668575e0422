/*
 * footprint.c - the analytic memory footprint of a training run: what each
 * mode keeps on the accelerator (weights, gradients, optimizer states,
 * activations, projectors, workspace) and in host memory, computed from the
 * model's layout without starting StarPU (`lspo plan`, and the line `lspo
 * train` prints before its first step).
 *
 * The accelerator side counts every handle a step's accelerator tasks touch,
 * because StarPU keeps a replica allocated where it was used until memory
 * runs short (it evicts then, and fetches again): without a cap, the
 * accelerator's peak is this sum.  Activations mirror the families' build()
 * (models/gpt2.c, models/llama.c: one handle per block activation, one set
 * of activation gradients shared by the blocks); tests/test_mem.sh compares
 * the sum with the peak StarPU reports.
 *
 * Options that other parts of the engine add are parameters here, so that a
 * plan covers them:
 *   dtype_bf16        weights and activations stored as bf16 on the
 *                     accelerator (2 bytes), fp32 masters where the update
 *                     is applied (native: on the accelerator; zero: on the
 *                     host; lsp: the compressed maps' masters on the
 *                     accelerator, as the apply runs there);
 *   bf16_stochastic   with dtype_bf16 in native and lsp mode: no fp32 master
 *                     on the accelerator, the updates round the bf16 weights
 *                     stochastically (engine/dtype.c);
 *   checkpoint_every  K > 0: the forward keeps the input of every K-th
 *                     block only; a segment of K blocks is recomputed
 *                     before its backward, so K blocks' activations live
 *                     at a time;
 *   grad_accum        K micro-batches per step: activations are those of
 *                     one micro-batch; gradients (lsp: G_hat) accumulate in
 *                     place, so no extra buffer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/model.h"

struct lspo_footprint_opts lspo_footprint_opts_default(void)
{
	struct lspo_offload_opts d = lspo_offload_opts_default();
	return (struct lspo_footprint_opts){ .mode = LSPO_MODE_NATIVE, .batch = 4, .seq = 64, .lsp_d = d.lsp_d,
	                                     .lsp_r = d.lsp_r, .grad_accum = 1 };
}

/* StarPU's allocator (1.3, datawizard/malloc.c) serves an accelerator's
 * allocations of at most 4 MiB from 32 MiB chunks in 16 KiB blocks, and
 * counts whole chunks against the node's memory; larger ones exactly. */
#define CHUNK (32.0 * 1048576.0)
#define CHUNK_ALLOC_MAX (CHUNK / 8)
#define CHUNK_BLOCK (16.0 * 1024.0)

struct acc {
	double small_blocks;     /* bytes of small allocations, rounded up to blocks */
	double big;              /* bytes of large allocations */
};

/* `count` handles of `bytes` each, of the kind `*kind`, on the accelerator. */
static void add(struct acc *a, double *kind, double bytes, double count)
{
	if (bytes <= 0 || count <= 0)
		return;
	*kind += bytes * count;
	if (bytes <= CHUNK_ALLOC_MAX)
		a->small_blocks += count * CHUNK_BLOCK * (double)(long long)((bytes + CHUNK_BLOCK - 1) / CHUNK_BLOCK);
	else
		a->big += bytes * count;
}

/* One block's activations (`per_block` times) and the shared ones
 * (activation gradients, embedding output, final norm), handle by handle
 * as the family registers them: `eb` bytes per element, except the norm
 * statistics and attention's log-sum-exp, always fp32. */
static void activations(const struct lspo_model_config *c, double N, double nstats, double per_block,
                        double eb, struct acc *a, double *kind)
{
	double C = c->n_embd, I = c->n_inner;
	double Q = (double)c->n_head * c->head_dim, K = (double)c->n_kv_head * c->head_dim;
	int gpt2 = c->family == LSPO_FAMILY_GPT2;
	/* GPT-2: ln1, qkv, atty, attproj, res2, ln2, fch, fch_gelu, fcproj, res3;
	 * Llama: r1, q, k, v, att, attproj, res2, r2, gate, up, h, down, res3 */
	const double g_blk[] = { N * C, 3 * N * C, N * C, N * C, N * C, N * C, N * I, N * I, N * C, N * C };
	const double l_blk[] = { N * C, N * Q, N * K, N * K, N * Q, N * C, N * C, N * C, N * I, N * I, N * I, N * C,
	                         N * C };
	/* GPT-2: ln1 mean, rstd, lse, ln2 mean, rstd; Llama: rstd1, lse, rstd2 */
	const double g_stat[] = { N, N, nstats, N, N }, l_stat[] = { N, nstats, N };
	/* GPT-2: encoded, lnf, dres, dln, datty, dqkv, dfch, dfch_gelu;
	 * Llama: x0, rf, dres, dln, datt, dq, dk, dv, dh, dgate, dup */
	const double g_sh[] = { N * C, N * C, N * C, N * C, N * C, 3 * N * C, N * I, N * I };
	const double l_sh[] = { N * C, N * C, N * C, N * C, N * Q, N * Q, N * K, N * K, N * I, N * I, N * I };
	/* GPT-2: lnf mean, rstd; Llama: rstdf */
	const double g_shstat[] = { N, N }, l_shstat[] = { N };
#define EACH(arr, bytes, count) \
	for (size_t i_ = 0; i_ < sizeof(arr) / sizeof(arr[0]); i_++) add(a, kind, (bytes) * arr[i_], count)
	if (gpt2) {
		EACH(g_blk, eb, per_block);
		EACH(g_stat, 4.0, per_block);
		EACH(g_sh, eb, 1);
		EACH(g_shstat, 4.0, 1);
	} else {
		EACH(l_blk, eb, per_block);
		EACH(l_stat, 4.0, per_block);
		EACH(l_sh, eb, 1);
		EACH(l_shstat, 4.0, 1);
	}
#undef EACH
}

static int any_bias(const struct model_layout *l)
{
	for (int i = 0; i < l->nlinears; i++)
		if (l->linears[i].bias >= 0)
			return 1;
	return 0;
}

/* lsp: what the compressed maps keep; marks their weights in `target`. */
static void lsp_parts(const struct model_layout *l, const struct lspo_footprint_opts *o, unsigned targets,
                      double N, char *target, struct acc *a, struct lspo_footprint *f, double *scratch)
{
	/* shared pairs: one per (role, in, out) */
	int *seen = calloc((size_t)l->nlinears + 1, 3 * sizeof(int));
	int nseen = 0;
	/* proj_apply's scratch E (d, n), n the columns of W as stored (out for
	 * a weight stored (in, out), in for one stored (out, in)): a task's
	 * scratch handle is freed after it, and StarPU reuses the buffer for
	 * the next of the same shape, whatever the role */
	int *shapes = calloc((size_t)l->nlinears + 1, 2 * sizeof(int));
	int nshapes = 0;
	double dmax = 0;
	for (int i = 0; i < l->nlinears; i++) {
		const struct model_linear *L = &l->linears[i];
		if (!(targets & (1u << L->role)))
			continue;
		target[L->weight] = 1;
		double d = o->lsp_d < L->in ? o->lsp_d : L->in;
		d = d < L->out ? d : L->out;
		double r = o->lsp_r < d ? o->lsp_r : d;
		dmax = d > dmax ? d : dmax;
		/* A = P^T X^T (d, N), fp32, kept from forward to backward (also
		 * with checkpointing: a recompute does not project again) */
		add(a, &f->activations, 4.0 * d * N, 1);
		add(a, &f->gradients, 4.0 * d * d, 1);       /* G_hat, formed on the accelerator */
		add(a, &f->optimizer, 4.0 * d * d, 1);       /* Delta, applied there */
		f->host += 4.0 * 4.0 * d * d;                /* G_hat, Delta, M, V */
		int fresh = 1, k;
		for (k = 0; seen && k < nseen && fresh; k++)
			fresh = !(seen[3 * k] == L->role && seen[3 * k + 1] == L->in && seen[3 * k + 2] == L->out);
		if (seen && fresh) {
			seen[3 * nseen] = L->role;
			seen[3 * nseen + 1] = L->in;
			seen[3 * nseen + 2] = L->out;
			nseen++;
		}
		int cols = L->orient == ORIENT_IN_OUT ? L->out : L->in, new_shape = 1;
		for (k = 0; shapes && k < nshapes && new_shape; k++)
			new_shape = !(shapes[2 * k] == (int)d && shapes[2 * k + 1] == cols);
		if (shapes && new_shape) {
			shapes[2 * nshapes] = (int)d;
			shapes[2 * nshapes + 1] = cols;
			nshapes++;
			add(a, &f->workspace, 4.0 * d * cols, 1);
			*scratch = 4.0 * d * cols > *scratch ? 4.0 * d * cols : *scratch;
		}
		if (fresh || !o->lsp_shared) {   /* P (in, r), Q (out, r): int32 indices, float values */
			add(a, &f->projectors, 4.0 * r * L->in, 2);
			add(a, &f->projectors, 4.0 * r * L->out, 2);
			f->host += 8.0 * r * ((double)L->in + L->out);
		}
	}
	free(seen);
	free(shapes);
	add(a, &f->workspace, 4.0 * dmax * N, 1);        /* project_bwd's scratch (d, N) */
	*scratch = 4.0 * dmax * N > *scratch ? 4.0 * dmax * N : *scratch;
}

int lspo_footprint(const struct lspo_model_config *cfg, const struct lspo_footprint_opts *o,
                   struct lspo_footprint *out)
{
	memset(out, 0, sizeof(*out));
	if (!cfg || !o)
		LSPO_FAIL(LSPO_EINVAL, "footprint: no config or options");
	if (o->batch < 1 || o->seq < 1)
		LSPO_FAIL(LSPO_EINVAL, "footprint: batch (%d) and sequence (%d) must be positive", o->batch, o->seq);
	if (o->mode != LSPO_MODE_NATIVE && o->mode != LSPO_MODE_ZERO && o->mode != LSPO_MODE_LSP)
		LSPO_FAIL(LSPO_EINVAL, "footprint: unknown mode %d", (int)o->mode);
	if (o->mode == LSPO_MODE_LSP && (o->lsp_d < 1 || o->lsp_r < 1 || o->lsp_r > o->lsp_d))
		LSPO_FAIL(LSPO_EINVAL, "footprint: lsp needs d >= 1 and 1 <= r <= d (d = %d, r = %d)", o->lsp_d,
		          o->lsp_r);
	if (o->checkpoint_every < 0 || o->grad_accum < 0)
		LSPO_FAIL(LSPO_EINVAL, "footprint: checkpoint interval (%d) and gradient accumulation (%d) "
		          "must not be negative", o->checkpoint_every, o->grad_accum);
	struct lspo_model_config c;
	struct model_layout l;
	TRY(model_layout_for(cfg, &c, &l));
	int rc = LSPO_OK;
	if (o->seq > c.n_positions) {
		lspo_error("footprint: sequence length %d exceeds the model's context (n_positions = %d)", o->seq,
		           c.n_positions);
		rc = LSPO_EINVAL;
	}
	const struct model_family *fam = model_family_of(c.family);
	unsigned targets = o->lsp_targets ? o->lsp_targets : fam->default_targets;
	if (!rc && o->mode == LSPO_MODE_LSP && (targets >> fam->nroles)) {
		lspo_error("footprint: target mask 0x%x names roles %s models do not have", targets, fam->name);
		rc = LSPO_EINVAL;
	}
	char *target = rc ? NULL : calloc((size_t)l.ntensors + 1, 1);
	if (!rc && !target) {
		lspo_error("footprint: out of memory");
		rc = LSPO_ENOMEM;
	}
	if (rc) {
		layout_free(&l);
		return rc;
	}

	struct lspo_footprint *f = out;
	struct acc a = { 0, 0 };
	double scratch = 8.0 * 256;              /* the largest scratch buffer (sumsq's at least) */
	double N = (double)o->batch * o->seq;
	double eb = o->dtype_bf16 ? 2.0 : 4.0;   /* bytes of a weight or activation on the accelerator */
	f->host = 16.0 * (double)l.nfloats;      /* the engine's slabs: parameters, gradients, m, v */

	/* Activations (one micro-batch): every block's, or with checkpointing
	 * every K blocks (engine/recompute.c) K blocks' slots reused by every
	 * segment, plus the output each segment keeps for the next. */
	double per_block = c.n_layer;
	if (o->checkpoint_every > 0) {
		int k = o->checkpoint_every < c.n_layer ? o->checkpoint_every : c.n_layer;
		per_block = k;
		/* the kept outputs replace the last slot's output (never written) */
		add(&a, &f->activations, eb * N * c.n_embd, (c.n_layer + k - 1) / k - 1);
	}
	activations(&c, N, N * c.n_head, per_block, eb, &a, &f->activations);
	add(&a, &f->activations, eb * N * c.vocab_size, 1);   /* logits, then dlogits */
	add(&a, &f->activations, 4.0 * N, 1);                 /* losses */

	if (o->mode == LSPO_MODE_LSP)
		lsp_parts(&l, o, targets, N, target, &a, f, &scratch);
	/* Weights, gradients, optimizer states by mode, tensor by tensor. */
	for (int i = 0; i < l.ntensors; i++) {
		double n = (double)l.tensors[i].rows * l.tensors[i].cols;
		switch (o->mode) {
		case LSPO_MODE_NATIVE:       /* everything on the accelerator */
			add(&a, &f->weights, eb * n, 1);
			if (o->dtype_bf16 && !o->bf16_stochastic)
				add(&a, &f->weights, 4.0 * n, 1);     /* fp32 master, bf16 working copy */
			add(&a, &f->gradients, 4.0 * n, 1);
			add(&a, &f->optimizer, 4.0 * n, 2);
			break;
		case LSPO_MODE_ZERO:         /* gradients leave, AdamW on the host's masters */
			add(&a, &f->weights, eb * n, 1);
			add(&a, &f->gradients, 4.0 * n, 1);
			if (o->offload_bf16) {                    /* bf16 copies crossing the bus */
				add(&a, &f->gradients, 2.0 * n, 1);
				if (!o->dtype_bf16)
					add(&a, &f->weights, 2.0 * n, 1);  /* the bf16 copy of the fp32 working weights */
			}
			break;
		case LSPO_MODE_LSP:
			add(&a, &f->weights, eb * n, 1);
			if (o->dtype_bf16 && !o->bf16_stochastic)
				add(&a, &f->weights, 4.0 * n, 1);     /* fp32 master where the update is applied */
			if (!target[i] && !o->freeze_dense) { /* dense: AdamW on the accelerator */
				add(&a, &f->gradients, 4.0 * n, 1);
				add(&a, &f->optimizer, 4.0 * n, 2);
			}
			break;
		}
	}

	/* Inputs and constants: tokens, targets; the ones of biased products;
	 * Llama's rotary table; the norm partials, the clip pair, sumsq's scratch. */
	add(&a, &f->workspace, 4.0 * N, 2);
	if (any_bias(&l))
		add(&a, &f->workspace, 4.0 * N, 2);
	if (c.family != LSPO_FAMILY_GPT2)
		add(&a, &f->workspace, 4.0 * o->seq * c.head_dim, 1);
	add(&a, &f->workspace, 8.0, l.ntensors);
	add(&a, &f->workspace, 8.0, 1);
	add(&a, &f->workspace, 8.0 * 256, 1);
	/* A CPU worker's scratch is freed after its task: one at a time.  The
	 * bf16 working weights (and zero's bf16 transfer copies) have no host
	 * memory of their own either: StarPU allocates them. */
	f->lazy = f->activations + scratch;
	if (o->dtype_bf16)
		f->lazy += 2.0 * (double)l.nfloats;
	if (o->mode == LSPO_MODE_ZERO && o->offload_bf16)
		f->lazy += (o->dtype_bf16 ? 2.0 : 8.0) * (double)l.nfloats;
	f->device = f->weights + f->gradients + f->optimizer + f->activations + f->projectors + f->workspace;
	f->allocated = a.big + CHUNK * (double)(long long)((a.small_blocks + CHUNK - 1) / CHUNK);
	free(target);
	layout_free(&l);
	return LSPO_OK;
}
