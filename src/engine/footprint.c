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

/* Floats of one block's activations and of the shared ones (activation
 * gradients, embedding output, final norm), as the family registers them. */
static void activation_floats(const struct lspo_model_config *c, double N, double nstats, double *per_block,
                              double *shared)
{
	double C = c->n_embd, I = c->n_inner;
	if (c->family == LSPO_FAMILY_GPT2) {
		/* ln1 (+ mean, rstd), qkv, atty, lse, attproj, res2, ln2 (+ mean, rstd),
		 * fch, fch_gelu, fcproj, res3 */
		*per_block = N * (C + 2 + 3 * C + C + C + C + C + 2 + 2 * I + C + C) + nstats;
		/* encoded, lnf (+ mean, rstd), dres, dln, datty, dqkv, dfch, dfch_gelu */
		*shared = N * (C + C + 2 + C + C + C + 3 * C + 2 * I);
		return;
	}
	double Q = (double)c->n_head * c->head_dim, K = (double)c->n_kv_head * c->head_dim;
	/* r1, rstd1, q, k, v, att, lse, attproj, res2, r2, rstd2, gate, up, h, down, res3 */
	*per_block = N * (C + 1 + Q + 2 * K + Q + C + C + C + 1 + 3 * I + C + C) + nstats;
	/* x0, rf, rstdf, dres, dln, datt, dq, dk, dv, dh, dgate, dup */
	*shared = N * (C + C + 1 + C + C + Q + Q + 2 * K + 3 * I);
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
                      double N, char *target, struct lspo_footprint *f)
{
	double max_n = 0;
	/* shared pairs: one per (role, in, out); at most nlinears of them */
	int *seen = calloc((size_t)l->nlinears + 1, 3 * sizeof(int));
	int nseen = 0;
	for (int i = 0; i < l->nlinears; i++) {
		const struct model_linear *L = &l->linears[i];
		if (!(targets & (1u << L->role)))
			continue;
		target[L->weight] = 1;
		double d = o->lsp_d < L->in ? o->lsp_d : L->in;
		d = d < L->out ? d : L->out;
		double r = o->lsp_r < d ? o->lsp_r : d;
		f->activations += 4.0 * d * N;                 /* A = P^T X^T, (d, N) */
		f->gradients += 4.0 * d * d;                   /* G_hat, formed on the accelerator */
		f->optimizer += 4.0 * d * d;                   /* Delta, applied there */
		f->host += 4.0 * 4.0 * d * d;                  /* G_hat, Delta, M, V */
		max_n = L->out > max_n ? L->out : max_n;
		int fresh = 1;
		if (o->lsp_shared && seen) {
			for (int k = 0; k < nseen && fresh; k++)
				fresh = !(seen[3 * k] == L->role && seen[3 * k + 1] == L->in && seen[3 * k + 2] == L->out);
			if (fresh) {
				seen[3 * nseen] = L->role;
				seen[3 * nseen + 1] = L->in;
				seen[3 * nseen + 2] = L->out;
				nseen++;
			}
		}
		if (fresh) {   /* P (in, r) and Q (out, r): int32 indices and float values */
			f->projectors += 8.0 * r * ((double)L->in + L->out);
			f->host += 8.0 * r * ((double)L->in + L->out);
		}
	}
	free(seen);
	/* scratch of project_bwd (d, N) and of proj_apply (d, out) */
	double d = o->lsp_d;
	f->workspace += 4.0 * d * N + 4.0 * d * max_n;
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
	double N = (double)o->batch * o->seq, P = (double)l.nfloats;
	double wb = o->dtype_bf16 ? 2.0 : 4.0;        /* bytes of a weight or activation on the accelerator */
	f->host = 16.0 * P;                           /* the engine's slabs: parameters, gradients, m, v */

	/* Activations, logits and losses (one micro-batch). */
	double per_block, shared;
	activation_floats(&c, N, N * c.n_head, &per_block, &shared);
	double blocks = c.n_layer * per_block;
	if (o->checkpoint_every > 0) {
		int k = o->checkpoint_every < c.n_layer ? o->checkpoint_every : c.n_layer;
		double kept = (double)((c.n_layer + k - 1) / k);
		blocks = kept * N * c.n_embd + k * per_block;
	}
	f->activations = wb * (blocks + shared) + 4.0 * (N * c.vocab_size + N);   /* logits, losses in fp32 */

	/* Weights, gradients, optimizer states by mode. */
	double master = o->dtype_bf16 ? 4.0 * P : 0;   /* fp32 masters beside bf16 weights */
	switch (o->mode) {
	case LSPO_MODE_NATIVE:
		f->weights = wb * P + master;
		f->gradients = wb * P;
		f->optimizer = 8.0 * P;
		break;
	case LSPO_MODE_ZERO:
		/* the backward writes each gradient on the accelerator and it moves
		 * to the host; AdamW runs there on the masters */
		f->weights = wb * P;
		f->gradients = wb * P;
		if (o->offload_bf16 && !o->dtype_bf16) {   /* fp32 working weights + bf16 copies crossing */
			f->weights += 2.0 * P;
			f->gradients += 2.0 * P;
		}
		break;
	case LSPO_MODE_LSP: {
		lsp_parts(&l, o, targets, N, target, f);
		f->weights = wb * P;
		for (int i = 0; i < l.ntensors; i++) {
			double n = (double)l.tensors[i].rows * l.tensors[i].cols;
			if (o->dtype_bf16 && target[i])
				f->weights += 4.0 * n;                   /* fp32 master where the apply runs */
			if (target[i] || o->freeze_dense)
				continue;
			if (o->dtype_bf16)
				f->weights += 4.0 * n;
			f->gradients += wb * n;                      /* dense parameters: AdamW on the accelerator */
			f->optimizer += 8.0 * n;
		}
		break;
	}
	}

	/* Inputs and constants: tokens, targets; the ones of biased products;
	 * Llama's rotary table; the norm partials and clip; sumsq scratch. */
	f->workspace += 8.0 * N + (any_bias(&l) ? 8.0 * N : 0) + 8.0 * l.ntensors + 8.0 + 8.0 * 256;
	if (c.family != LSPO_FAMILY_GPT2)
		f->workspace += 4.0 * o->seq * c.head_dim;
	f->device = f->weights + f->gradients + f->optimizer + f->activations + f->projectors + f->workspace;
	free(target);
	layout_free(&l);
	return LSPO_OK;
}
