/*
 * gpt2.c - GPT-2 (HF transformers' GPT2LMHeadModel) as a model description.
 *
 * Tensors in HF state_dict order without the "transformer." prefix; weights
 * keep HF's Conv1D orientation (in, out), so every linear map is
 * y (N, out) = x (N, in) W + b.  A block (pre-LN):
 *   ln1 = LN(x); qkv = ln1 Wqkv; atty = attention(qkv); x2 = x + atty Wproj
 *   ln2 = LN(x2); fch = ln2 Wfc; x3 = x2 + gelu(fch) Wmlp
 * The LM head is tied to wte: logits = LN_f(x) wte^T.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "models/gpt2.h"
#include "models/init.h"
#include "attention.h"
#include "encoder.h"
#include "fill.h"
#include "gelu.h"
#include "layernorm.h"
#include "matmul.h"
#include "residual.h"

/* Linear-map roles, in each block's order: the names of --lsp-targets. */
enum { ROLE_QKV, ROLE_ATTN_OUT, ROLE_FC, ROLE_MLP_OUT, NROLES };
static const char *const roles[NROLES] = { "qkv", "attn_out", "fc", "mlp_out" };

static inline int tensor(int layer, int kind) { return 2 + layer * GPT2_NLAYER_TENSORS + kind; }
static inline int linear(int layer, int role) { return 4 * layer + role; }

static int config_check(struct lspo_model_config *c)
{
	const struct { const char *name; int value; } fields[] = {
		{ "vocab_size", c->vocab_size }, { "n_positions", c->n_positions },
		{ "n_embd", c->n_embd }, { "n_layer", c->n_layer }, { "n_head", c->n_head } };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].value <= 0)
			LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: %s must be positive, got %d",
			          fields[i].name, fields[i].value);
	if (c->n_embd % c->n_head)
		LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: n_embd (%d) must be divisible by n_head (%d)",
		          c->n_embd, c->n_head);
	if (c->n_embd > INT32_MAX / 4)
		LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: n_embd %d is too large (its MLP has 4 n_embd)", c->n_embd);
	if ((c->n_kv_head && c->n_kv_head != c->n_head) || (c->head_dim && c->head_dim * c->n_head != c->n_embd)
	    || (c->n_inner && c->n_inner != 4 * c->n_embd) || c->rope_type != LSPO_ROPE_DEFAULT
	    || c->attention_bias || c->mlp_bias)
		LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: grouped heads, other head sizes or MLP widths, rotary "
		          "scaling and extra biases are Llama options");
	c->n_kv_head = c->n_head;
	c->head_dim = c->n_embd / c->n_head;
	c->n_inner = 4 * c->n_embd;
	c->norm_eps = c->norm_eps > 0 ? c->norm_eps : 1e-5f;
	c->tie_word_embeddings = 1;
	return LSPO_OK;
}

static int layout(const struct lspo_model_config *cfg, struct model_layout *l)
{
	static const struct { const char *suffix; int rows_c, cols_c; } per_layer[GPT2_NLAYER_TENSORS] = {
		/* shapes as multiples of C; rows 0 means a 1-D tensor */
		[GPT2_LN1_W] = { "ln_1.weight", 0, 1 },        [GPT2_LN1_B] = { "ln_1.bias", 0, 1 },
		[GPT2_QKV_W] = { "attn.c_attn.weight", 1, 3 }, [GPT2_QKV_B] = { "attn.c_attn.bias", 0, 3 },
		[GPT2_ATTPROJ_W] = { "attn.c_proj.weight", 1, 1 }, [GPT2_ATTPROJ_B] = { "attn.c_proj.bias", 0, 1 },
		[GPT2_LN2_W] = { "ln_2.weight", 0, 1 },        [GPT2_LN2_B] = { "ln_2.bias", 0, 1 },
		[GPT2_FC_W] = { "mlp.c_fc.weight", 1, 4 },     [GPT2_FC_B] = { "mlp.c_fc.bias", 0, 4 },
		[GPT2_FCPROJ_W] = { "mlp.c_proj.weight", 4, 1 }, [GPT2_FCPROJ_B] = { "mlp.c_proj.bias", 0, 1 },
	};
	static const int weights[NROLES] = { GPT2_QKV_W, GPT2_ATTPROJ_W, GPT2_FC_W, GPT2_FCPROJ_W };
	int C = cfg->n_embd, L = cfg->n_layer;
	TRY(layout_add_tensor(l, -1, GPT2_WTE, cfg->vocab_size, C, 2, "wte.weight"));
	TRY(layout_add_tensor(l, -1, GPT2_WPE, cfg->n_positions, C, 2, "wpe.weight"));
	for (int b = 0; b < L; b++)
		for (int k = 0; k < GPT2_NLAYER_TENSORS; k++) {
			int rows = per_layer[k].rows_c ? per_layer[k].rows_c * C : 1;
			TRY(layout_add_tensor(l, b, k, rows, per_layer[k].cols_c * C, per_layer[k].rows_c ? 2 : 1,
			                      "h.%d.%s", b, per_layer[k].suffix));
		}
	TRY(layout_add_tensor(l, L, GPT2_LNF_W, 1, C, 1, "ln_f.weight"));
	TRY(layout_add_tensor(l, L, GPT2_LNF_B, 1, C, 1, "ln_f.bias"));
	for (int b = 0; b < L; b++)
		for (int r = 0; r < NROLES; r++)
			TRY(layout_add_linear(l, tensor(b, weights[r]), tensor(b, weights[r]) + 1, b, r, ORIENT_IN_OUT));
	return LSPO_OK;
}

/* wte, wpe, c_attn and c_fc weights N(0, 0.02); the residual projections
 * N(0, 0.02 / sqrt(2 L)); biases 0; layernorm weights 1. */
static int init_params(const struct lspo_model_config *cfg, const struct model_layout *l, uint64_t seed,
                       float *params)
{
	double std = 0.02, resid_std = 0.02 / sqrt(2.0 * cfg->n_layer);
	for (int i = 0; i < l->ntensors; i++) {
		const struct model_tensor *t = &l->tensors[i];
		float *x = params + t->offset;
		size_t n = (size_t)t->rows * t->cols;
		uint64_t key = init_key(seed, i);
		switch (t->kind) {
		case GPT2_WTE: case GPT2_WPE: case GPT2_QKV_W: case GPT2_FC_W: init_normal(x, n, key, std); break;
		case GPT2_ATTPROJ_W: case GPT2_FCPROJ_W: init_normal(x, n, key, resid_std); break;
		case GPT2_LN1_W: case GPT2_LN2_W: case GPT2_LNF_W: init_const(x, n, 1.0f); break;
		default: init_const(x, n, 0.0f); break;   /* biases */
		}
	}
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Activations                                                              */

/* One block's, all (N, C) unless noted. */
struct block_acts {
	starpu_data_handle_t ln1, ln1_mean, ln1_rstd;  /* mean, rstd (1, N) */
	starpu_data_handle_t qkv;                      /* (N, 3C) */
	starpu_data_handle_t atty, lse;                /* lse (1, B*NH*T) */
	starpu_data_handle_t attproj, res2;
	starpu_data_handle_t ln2, ln2_mean, ln2_rstd;
	starpu_data_handle_t fch, fch_gelu;            /* (N, 4C) */
	starpu_data_handle_t fcproj, res3;
};

struct gpt2 {
	struct block_acts *blocks;                     /* n_layer */
	starpu_data_handle_t encoded, lnf, lnf_mean, lnf_rstd;
	/* Gradients of activations, reused by every block. */
	starpu_data_handle_t dres, dln, datty, dqkv, dfch, dfch_gelu;
};

static int build(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	if (!g) {
		g = m->fam_state = calloc(1, sizeof(*g));
		if (!g || !(g->blocks = calloc(m->cfg.n_layer, sizeof(*g->blocks))))
			LSPO_FAIL(LSPO_ENOMEM, "GPT-2: cannot allocate the activations");
	}
	int N = m->N, C = m->cfg.n_embd, nstats = m->B * m->cfg.n_head * m->T;
	for (int l = 0; l < m->cfg.n_layer; l++) {
		struct block_acts *a = &g->blocks[l];
		int slot = model_block_slot(m, l);   /* checkpointing: the shared set (recompute.c) */
		if (slot != l) {   /* (a counting pass leaves the registered handles alone) */
			if (!m->counting)
				*a = g->blocks[slot];
			if (model_block_keeps_output(m, l))
				model_act(m, &a->res3, N, C);
			continue;
		}
		model_act(m, &a->ln1, N, C); model_act_f32(m, &a->ln1_mean, 1, N); model_act_f32(m, &a->ln1_rstd, 1, N);
		model_act(m, &a->qkv, N, 3 * C); model_act(m, &a->atty, N, C); model_act_f32(m, &a->lse, 1, nstats);
		model_act(m, &a->attproj, N, C); model_act(m, &a->res2, N, C);
		model_act(m, &a->ln2, N, C); model_act_f32(m, &a->ln2_mean, 1, N); model_act_f32(m, &a->ln2_rstd, 1, N);
		model_act(m, &a->fch, N, 4 * C); model_act(m, &a->fch_gelu, N, 4 * C);
		model_act(m, &a->fcproj, N, C); model_act(m, &a->res3, N, C);
	}
	model_act(m, &g->encoded, N, C);
	model_act(m, &g->lnf, N, C); model_act_f32(m, &g->lnf_mean, 1, N); model_act_f32(m, &g->lnf_rstd, 1, N);
	model_act(m, &g->dres, N, C); model_act(m, &g->dln, N, C); model_act(m, &g->datty, N, C);
	model_act(m, &g->dqkv, N, 3 * C); model_act(m, &g->dfch, N, 4 * C); model_act(m, &g->dfch_gelu, N, 4 * C);
	return LSPO_OK;
}

static void free_state(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	if (g)
		free(g->blocks);
	free(g);
	m->fam_state = NULL;
}

static starpu_data_handle_t block_input(struct gpt2 *g, int l)
{
	return l == 0 ? g->encoded : g->blocks[l - 1].res3;
}

/* ------------------------------------------------------------------------ */
/* Forward                                                                  */

static int embed_fwd(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	return lspo_encoder_fwd_submit(m->tokens, m->hw[0], m->hw[1], g->encoded, m->prio_fwd(m, 0),
	                               model_name(m, "encoder", 0, "fwd"));
}

static int block_fwd(struct lspo_model *m, int l)
{
	struct gpt2 *g = m->fam_state;
	struct block_acts *a = &g->blocks[l];
	starpu_data_handle_t *p = &m->hw[tensor(l, 0)], res_in = block_input(g, l);
	int prio = m->prio_fwd(m, l);
	const char *ln = model_name(m, "layernorm", l, "fwd"), *res = model_name(m, "residual", l, "fwd");
	TRY(lspo_layernorm_fwd_submit(res_in, p[GPT2_LN1_W], p[GPT2_LN1_B], a->ln1, a->ln1_mean,
	                              a->ln1_rstd, prio, ln));
	TRY(model_linear_fwd(m, linear(l, ROLE_QKV), a->ln1, a->qkv, prio));
	TRY(lspo_attention_fwd_submit(a->qkv, a->atty, a->lse, m->B, m->cfg.n_head, prio,
	                              model_name(m, "attention", l, "fwd")));
	TRY(model_linear_fwd(m, linear(l, ROLE_ATTN_OUT), a->atty, a->attproj, prio));
	TRY(lspo_residual_fwd_submit(res_in, a->attproj, a->res2, prio, res));
	TRY(lspo_layernorm_fwd_submit(a->res2, p[GPT2_LN2_W], p[GPT2_LN2_B], a->ln2, a->ln2_mean,
	                              a->ln2_rstd, prio, ln));
	TRY(model_linear_fwd(m, linear(l, ROLE_FC), a->ln2, a->fch, prio));
	TRY(lspo_gelu_fwd_submit(a->fch, a->fch_gelu, prio, model_name(m, "gelu", l, "fwd")));
	TRY(model_linear_fwd(m, linear(l, ROLE_MLP_OUT), a->fch_gelu, a->fcproj, prio));
	return lspo_residual_fwd_submit(a->res2, a->fcproj, a->res3, prio, res);
}

/* Final layernorm and the tied head: logits = lnf wte^T. */
static int head_fwd(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	int L = m->cfg.n_layer, f = m->layout.ntensors - 2, prio = m->prio_fwd(m, L);
	TRY(lspo_layernorm_fwd_submit(g->blocks[L - 1].res3, m->hw[f], m->hw[f + 1], g->lnf, g->lnf_mean,
	                              g->lnf_rstd, prio, model_name(m, "layernorm", L, "fwd")));
	return model_matmul(m, g->lnf, 0, m->hw[0], 1, m->logits, 1.0f, 0.0f, prio,
	                    model_name(m, "matmul", L, "fwd"));
}

/* ------------------------------------------------------------------------ */
/* Backward                                                                 */

/* dlnf = dlogits wte (row blocks, as the loss left dlogits), then
 * dwte = dlogits^T lnf (the first write of dwte); g->dres = d(res3 of the last block). */
static int head_bwd(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	int L = m->cfg.n_layer, f = m->layout.ntensors - 2, prio = m->prio_bwd(m, L);
	const char *mm = model_name(m, "matmul", L, "bwd"), *fill = model_name(m, "fill", L, "bwd");
	TRY(model_matmul(m, m->logits, 0, m->hw[0], 0, g->dln, 1.0f, 0.0f, prio, mm));
	TRY(model_matmul(m, m->logits, 1, g->lnf, 0, m->hg[0], 1.0f, model_grad_beta(m), prio, mm));
	TRY(lspo_fill_submit(g->dres, 0.0f, prio, fill));
	TRY(model_grad_zero(m, m->hg[f], prio, fill));
	TRY(model_grad_zero(m, m->hg[f + 1], prio, fill));
	TRY(lspo_layernorm_bwd_submit(g->dln, g->blocks[L - 1].res3, m->hw[f], g->lnf_mean, g->lnf_rstd,
	                              g->dres, m->hg[f], m->hg[f + 1], prio, model_name(m, "layernorm", L, "bwd")));
	MODEL_ACTS_DEAD(m, m->logits, g->lnf, g->lnf_mean, g->lnf_rstd, g->blocks[L - 1].res3);
	return LSPO_OK;
}

/* g->dres holds d(res3 of layer l) on entry, d(res_in) on exit. */
static int block_bwd(struct lspo_model *m, int l)
{
	struct gpt2 *g = m->fam_state;
	struct block_acts *a = &g->blocks[l];
	starpu_data_handle_t *p = &m->hw[tensor(l, 0)], *d = &m->hg[tensor(l, 0)], res_in = block_input(g, l);
	int prio = m->prio_bwd(m, l);
	const char *ln = model_name(m, "layernorm", l, "bwd"), *fill = model_name(m, "fill", l, "bwd");
	TRY(model_linear_bwd(m, linear(l, ROLE_MLP_OUT), a->fch_gelu, g->dres, g->dfch_gelu, 0, prio));
	TRY(lspo_gelu_bwd_submit(a->fch, g->dfch_gelu, g->dfch, prio, model_name(m, "gelu", l, "bwd")));
	TRY(model_linear_bwd(m, linear(l, ROLE_FC), a->ln2, g->dfch, g->dln, 0, prio));
	TRY(model_grad_zero(m, d[GPT2_LN2_W], prio, fill));
	TRY(model_grad_zero(m, d[GPT2_LN2_B], prio, fill));
	TRY(lspo_layernorm_bwd_submit(g->dln, a->res2, p[GPT2_LN2_W], a->ln2_mean, a->ln2_rstd,
	                              g->dres, d[GPT2_LN2_W], d[GPT2_LN2_B], prio, ln));
	TRY(model_linear_bwd(m, linear(l, ROLE_ATTN_OUT), a->atty, g->dres, g->datty, 0, prio));
	TRY(lspo_attention_bwd_submit(g->datty, a->qkv, a->atty, a->lse, g->dqkv, m->B, m->cfg.n_head,
	                              prio, model_name(m, "attention", l, "bwd")));
	TRY(model_linear_bwd(m, linear(l, ROLE_QKV), a->ln1, g->dqkv, g->dln, 0, prio));
	TRY(model_grad_zero(m, d[GPT2_LN1_W], prio, fill));
	TRY(model_grad_zero(m, d[GPT2_LN1_B], prio, fill));
	TRY(lspo_layernorm_bwd_submit(g->dln, res_in, p[GPT2_LN1_W], a->ln1_mean, a->ln1_rstd,
	                              g->dres, d[GPT2_LN1_W], d[GPT2_LN1_B], prio, ln));
	/* The block's output is not here: it was the deeper block's input, dropped by that block's backward. */
	MODEL_ACTS_DEAD(m, res_in, a->ln1, a->ln1_mean, a->ln1_rstd, a->qkv, a->atty, a->lse, a->attproj, a->res2,
	                a->ln2, a->ln2_mean, a->ln2_rstd, a->fch, a->fch_gelu, a->fcproj);
	return LSPO_OK;
}

static int embed_bwd(struct lspo_model *m)
{
	struct gpt2 *g = m->fam_state;
	int prio = m->prio_bwd(m, 0);
	TRY(model_grad_zero(m, m->hg[1], prio, model_name(m, "fill", 0, "bwd")));
	return lspo_encoder_bwd_submit(g->dres, m->tokens, m->hg[0], m->hg[1], prio,
	                               model_name(m, "encoder", 0, "bwd"));
}

const struct model_family model_gpt2 = {
	.name = "gpt2", .roles = roles, .nroles = NROLES, .default_targets = (1u << NROLES) - 1,
	.config_check = config_check, .layout = layout, .init_params = init_params,
	.build = build, .free = free_state,
	.embed_fwd = embed_fwd, .block_fwd = block_fwd, .head_fwd = head_fwd,
	.head_bwd = head_bwd, .block_bwd = block_bwd, .embed_bwd = embed_bwd,
};
