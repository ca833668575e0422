/*
 * llama.c - Llama (LlamaForCausalLM) and Qwen2 (Qwen2ForCausalLM) as a
 * model description.  Qwen2 is Llama with biases on q, k and v.
 *
 * Tensors in HF state_dict order under HF names; weights in nn.Linear
 * orientation (out, in), so a linear map is y (N, out) = x (N, in) W^T + b.
 * A block (pre-norm), with Q = NH hd and K = NKV hd:
 *   r1 = RMSNorm(x); q = r1 Wq^T (N, Q); k = r1 Wk^T, v = r1 Wv^T (N, K)
 *   q, k rotated in place (rotary embedding of each position)
 *   att = causal softmax(q k^T / sqrt(hd)) v, head h reading K/V head h / (NH / NKV)
 *   x2 = x + att Wo^T
 *   r2 = RMSNorm(x2); h = silu(r2 Wgate^T) * (r2 Wup^T) (N, I); x3 = x2 + h Wdown^T
 * The head: logits = RMSNorm(x) W^T, W = lm_head.weight, or the embedding
 * when tie_word_embeddings.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "models/init.h"
#include "embedding.h"
#include "fill.h"
#include "gqa_attention.h"
#include "matmul.h"
#include "residual.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

/* Linear-map roles, in each block's order: the names of --lsp-targets. */
enum { ROLE_Q, ROLE_K, ROLE_V, ROLE_O, ROLE_GATE, ROLE_UP, ROLE_DOWN, NROLES };
static const char *const roles[NROLES] = { "q", "k", "v", "o", "gate", "up", "down" };
enum { KIND_WEIGHT, KIND_BIAS, KIND_NORM, KIND_EMBED, KIND_HEAD };

/* ------------------------------------------------------------------------ */
/* Config, layout, initialisation                                           */

static int config_check(struct lspo_model_config *c)
{
	const char *fam = lspo_family_name(c->family);
	const struct { const char *name; int value; } fields[] = {
		{ "vocab_size", c->vocab_size }, { "max_position_embeddings", c->n_positions },
		{ "hidden_size", c->n_embd }, { "num_hidden_layers", c->n_layer },
		{ "num_attention_heads", c->n_head }, { "intermediate_size", c->n_inner } };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].value <= 0)
			LSPO_FAIL(LSPO_EINVAL, "%s config: %s must be positive, got %d", fam, fields[i].name,
			          fields[i].value);
	c->n_kv_head = c->n_kv_head > 0 ? c->n_kv_head : c->n_head;
	if (c->n_head % c->n_kv_head)
		LSPO_FAIL(LSPO_EINVAL, "%s config: num_attention_heads (%d) must be a multiple of "
		          "num_key_value_heads (%d)", fam, c->n_head, c->n_kv_head);
	if (!c->head_dim && c->n_embd % c->n_head)
		LSPO_FAIL(LSPO_EINVAL, "%s config: hidden_size (%d) must be divisible by num_attention_heads "
		          "(%d) when head_dim is not given", fam, c->n_embd, c->n_head);
	c->head_dim = c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head;
	if (c->head_dim % 2)
		LSPO_FAIL(LSPO_EINVAL, "%s config: head_dim (%d) must be even (rotary embedding)", fam, c->head_dim);
	if ((long long)c->head_dim * c->n_head > INT32_MAX / 4 || c->n_inner > INT32_MAX / 4)
		LSPO_FAIL(LSPO_EINVAL, "%s config: head_dim x num_attention_heads or intermediate_size is too large",
		          fam);
	c->norm_eps = c->norm_eps > 0 ? c->norm_eps : 1e-6f;
	c->rope_theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
	if (c->rope_type == LSPO_ROPE_LLAMA3
	    && (c->rope_factor <= 0 || c->rope_low_freq_factor <= 0
	        || c->rope_high_freq_factor <= c->rope_low_freq_factor || c->rope_original_max_positions <= 0))
		LSPO_FAIL(LSPO_EINVAL, "%s config: rope_scaling llama3 needs factor > 0, 0 < low_freq_factor < "
		          "high_freq_factor and original_max_position_embeddings > 0", fam);
	if (c->rope_type != LSPO_ROPE_DEFAULT && c->rope_type != LSPO_ROPE_LLAMA3)
		LSPO_FAIL(LSPO_EINVAL, "%s config: unknown rope scaling %d", fam, (int)c->rope_type);
	if (c->family == LSPO_FAMILY_QWEN2 && (c->attention_bias || c->mlp_bias))
		LSPO_FAIL(LSPO_EINVAL, "qwen2 config: attention_bias and mlp_bias are Llama options (Qwen2 "
		          "has q, k and v biases)");
	return LSPO_OK;
}

static int has_bias(const struct lspo_model_config *c, int role)
{
	if (c->family == LSPO_FAMILY_QWEN2)
		return role == ROLE_Q || role == ROLE_K || role == ROLE_V;
	return role <= ROLE_O ? c->attention_bias : c->mlp_bias;
}

static int layout(const struct lspo_model_config *c, struct model_layout *l)
{
	static const char *const names[NROLES] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
		"self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
	int C = c->n_embd, Q = c->n_head * c->head_dim, K = c->n_kv_head * c->head_dim, I = c->n_inner;
	/* (out, in) of each role */
	const int shape[NROLES][2] = { { Q, C }, { K, C }, { K, C }, { C, Q }, { I, C }, { I, C }, { C, I } };
	TRY(layout_add_tensor(l, -1, KIND_EMBED, c->vocab_size, C, 2, "model.embed_tokens.weight"));
	for (int b = 0; b < c->n_layer; b++) {
		for (int r = 0; r < NROLES; r++) {
			int w = l->ntensors, bias = -1;
			TRY(layout_add_tensor(l, b, KIND_WEIGHT, shape[r][0], shape[r][1], 2, "model.layers.%d.%s.weight",
			                      b, names[r]));
			if (has_bias(c, r)) {
				bias = l->ntensors;
				TRY(layout_add_tensor(l, b, KIND_BIAS, 1, shape[r][0], 1, "model.layers.%d.%s.bias", b,
				                      names[r]));
			}
			TRY(layout_add_linear(l, w, bias, b, r, ORIENT_OUT_IN));
		}
		TRY(layout_add_tensor(l, b, KIND_NORM, 1, C, 1, "model.layers.%d.input_layernorm.weight", b));
		TRY(layout_add_tensor(l, b, KIND_NORM, 1, C, 1, "model.layers.%d.post_attention_layernorm.weight", b));
	}
	TRY(layout_add_tensor(l, c->n_layer, KIND_NORM, 1, C, 1, "model.norm.weight"));
	if (!c->tie_word_embeddings)
		TRY(layout_add_tensor(l, c->n_layer, KIND_HEAD, c->vocab_size, C, 2, "lm_head.weight"));
	return LSPO_OK;
}

/* As HF's _init_weights: weights and embeddings N(0, 0.02), biases 0, norms 1. */
static int init_params(const struct lspo_model_config *c, const struct model_layout *l, uint64_t seed,
                       float *params)
{
	(void)c;
	for (int i = 0; i < l->ntensors; i++) {
		const struct model_tensor *t = &l->tensors[i];
		float *x = params + t->offset;
		size_t n = (size_t)t->rows * t->cols;
		if (t->kind == KIND_BIAS)
			init_const(x, n, 0.0f);
		else if (t->kind == KIND_NORM)
			init_const(x, n, 1.0f);
		else
			init_normal(x, n, init_key(seed, i), 0.02);
	}
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Activations and the rotary table                                         */

struct block_acts {
	starpu_data_handle_t r1, rstd1;                /* (N, C), (1, N) */
	starpu_data_handle_t q, k, v;                  /* (N, Q), (N, K), (N, K); q, k rotated */
	starpu_data_handle_t att, lse;                 /* (N, Q), (1, B NH T) */
	starpu_data_handle_t attproj, res2;            /* (N, C) */
	starpu_data_handle_t r2, rstd2;
	starpu_data_handle_t gate, up, h;              /* (N, I) */
	starpu_data_handle_t down, res3;               /* (N, C) */
};

struct llama {
	struct block_acts *blocks;                     /* n_layer */
	starpu_data_handle_t x0, rf, rstdf;            /* embedding out, final norm */
	float *rope_buf;                               /* (T, hd): cos then sin of each position */
	starpu_data_handle_t rope;
	/* Gradients of activations, reused by every block. */
	starpu_data_handle_t dres, dln, datt, dq, dk, dv, dh, dgate, dup;
	int head;                                      /* the head's weight: lm_head or the embedding */
	int final_norm;
};

/* HF's inverse frequencies theta^(-2j/hd), and llama3's rescaling of them:
 * long wavelengths divided by `factor`, short ones kept, the band between
 * interpolated smoothly. */
static double inv_freq(const struct lspo_model_config *c, int j)
{
	double f = pow(c->rope_theta, -2.0 * j / c->head_dim);
	if (c->rope_type != LSPO_ROPE_LLAMA3)
		return f;
	const double pi = 3.14159265358979323846;
	double old = c->rope_original_max_positions, wavelen = 2.0 * pi / f;
	double low_wavelen = old / c->rope_low_freq_factor, high_wavelen = old / c->rope_high_freq_factor;
	if (wavelen < high_wavelen)
		return f;
	if (wavelen > low_wavelen)
		return f / c->rope_factor;
	double smooth = (old / wavelen - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
	return (1.0 - smooth) * f / c->rope_factor + smooth * f;
}

static int rope_table(struct lspo_model *m, struct llama *s)
{
	int T = m->T, hd = m->cfg.head_dim;
	if (starpu_malloc((void **)&s->rope_buf, (size_t)T * hd * sizeof(float)))
		LSPO_FAIL(LSPO_ENOMEM, "llama: cannot allocate the rotary table");
	for (int t = 0; t < T; t++)
		for (int j = 0; j < hd / 2; j++) {
			double a = t * inv_freq(&m->cfg, j);
			s->rope_buf[(size_t)t * hd + j] = (float)cos(a);
			s->rope_buf[(size_t)t * hd + hd / 2 + j] = (float)sin(a);
		}
	lspo_matrix_register(&s->rope, s->rope_buf, T, hd);
	return LSPO_OK;
}

static int build(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	const struct lspo_model_config *c = &m->cfg;
	if (!s) {
		s = m->fam_state = calloc(1, sizeof(*s));
		if (!s || !(s->blocks = calloc(c->n_layer, sizeof(*s->blocks))))
			LSPO_FAIL(LSPO_ENOMEM, "llama: cannot allocate the activations");
		TRY(rope_table(m, s));
		s->final_norm = layout_find(&m->layout, "model.norm.weight");
		s->head = c->tie_word_embeddings ? 0 : layout_find(&m->layout, "lm_head.weight");
	}
	int N = m->N, C = c->n_embd, Q = c->n_head * c->head_dim, K = c->n_kv_head * c->head_dim, I = c->n_inner;
	for (int l = 0; l < c->n_layer; l++) {
		struct block_acts *a = &s->blocks[l];
		int slot = model_block_slot(m, l);   /* checkpointing: the shared set (recompute.c) */
		if (slot != l) {   /* (a counting pass leaves the registered handles alone) */
			if (!m->counting)
				*a = s->blocks[slot];
			if (model_block_keeps_output(m, l))
				model_act(m, &a->res3, N, C);
			continue;
		}
		model_act(m, &a->r1, N, C); model_act_f32(m, &a->rstd1, 1, N);
		model_act(m, &a->q, N, Q); model_act(m, &a->k, N, K); model_act(m, &a->v, N, K);
		model_act(m, &a->att, N, Q); model_act_f32(m, &a->lse, 1, m->B * c->n_head * m->T);
		model_act(m, &a->attproj, N, C); model_act(m, &a->res2, N, C);
		model_act(m, &a->r2, N, C); model_act_f32(m, &a->rstd2, 1, N);
		model_act(m, &a->gate, N, I); model_act(m, &a->up, N, I); model_act(m, &a->h, N, I);
		model_act(m, &a->down, N, C); model_act(m, &a->res3, N, C);
	}
	model_act(m, &s->x0, N, C); model_act(m, &s->rf, N, C); model_act_f32(m, &s->rstdf, 1, N);
	model_act(m, &s->dres, N, C); model_act(m, &s->dln, N, C); model_act(m, &s->datt, N, Q);
	model_act(m, &s->dq, N, Q); model_act(m, &s->dk, N, K); model_act(m, &s->dv, N, K);
	model_act(m, &s->dh, N, I); model_act(m, &s->dgate, N, I); model_act(m, &s->dup, N, I);
	return LSPO_OK;
}

static void free_state(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	if (!s)
		return;
	if (s->rope)
		starpu_data_unregister(s->rope);
	starpu_free(s->rope_buf);
	free(s->blocks);
	free(s);
	m->fam_state = NULL;
}

/* ------------------------------------------------------------------------ */
/* Forward and backward                                                     */

static starpu_data_handle_t block_input(struct llama *s, int l)
{
	return l == 0 ? s->x0 : s->blocks[l - 1].res3;
}

/* The linear map of role r in block l, and the block's two norm weights. */
static inline int lin(int l, int r) { return NROLES * l + r; }

static int norm_tensor(struct lspo_model *m, int l, int which)
{
	/* the two norms follow the block's last linear map (and its bias) */
	const struct model_linear *down = &m->layout.linears[lin(l, ROLE_DOWN)];
	int last = down->bias >= 0 ? down->bias : down->weight;
	return last + 1 + which;
}

static int embed_fwd(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	return lspo_embedding_fwd_submit(m->tokens, m->hw[0], s->x0, m->prio_fwd(m, 0),
	                                 model_name(m, "embedding", 0, "fwd"));
}

static int block_fwd(struct lspo_model *m, int l)
{
	struct llama *s = m->fam_state;
	struct block_acts *a = &s->blocks[l];
	const struct lspo_model_config *c = &m->cfg;
	starpu_data_handle_t x = block_input(s, l);
	int prio = m->prio_fwd(m, l);
	const char *norm = model_name(m, "rmsnorm", l, "fwd"), *res = model_name(m, "residual", l, "fwd");
	const char *rope = model_name(m, "rope", l, "fwd");
	TRY(lspo_rmsnorm_fwd_submit(x, m->hw[norm_tensor(m, l, 0)], a->r1, a->rstd1, c->norm_eps, prio, norm));
	TRY(model_linear_fwd(m, lin(l, ROLE_Q), a->r1, a->q, prio));
	TRY(model_linear_fwd(m, lin(l, ROLE_K), a->r1, a->k, prio));
	TRY(model_linear_fwd(m, lin(l, ROLE_V), a->r1, a->v, prio));
	TRY(lspo_rope_submit(a->q, s->rope, c->n_head, c->head_dim, 0, prio, rope));
	TRY(lspo_rope_submit(a->k, s->rope, c->n_kv_head, c->head_dim, 0, prio, rope));
	TRY(lspo_gqa_attention_fwd_submit(a->q, a->k, a->v, a->att, a->lse, m->B, c->n_head, c->n_kv_head,
	                                  c->head_dim, prio, model_name(m, "attention", l, "fwd")));
	TRY(model_linear_fwd(m, lin(l, ROLE_O), a->att, a->attproj, prio));
	TRY(lspo_residual_fwd_submit(x, a->attproj, a->res2, prio, res));
	TRY(lspo_rmsnorm_fwd_submit(a->res2, m->hw[norm_tensor(m, l, 1)], a->r2, a->rstd2, c->norm_eps, prio, norm));
	TRY(model_linear_fwd(m, lin(l, ROLE_GATE), a->r2, a->gate, prio));
	TRY(model_linear_fwd(m, lin(l, ROLE_UP), a->r2, a->up, prio));
	TRY(lspo_swiglu_fwd_submit(a->gate, a->up, a->h, prio, model_name(m, "swiglu", l, "fwd")));
	TRY(model_linear_fwd(m, lin(l, ROLE_DOWN), a->h, a->down, prio));
	return lspo_residual_fwd_submit(a->res2, a->down, a->res3, prio, res);
}

static int head_fwd(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	int L = m->cfg.n_layer, prio = m->prio_fwd(m, L);
	TRY(lspo_rmsnorm_fwd_submit(s->blocks[L - 1].res3, m->hw[s->final_norm], s->rf, s->rstdf, m->cfg.norm_eps,
	                            prio, model_name(m, "rmsnorm", L, "fwd")));
	return model_matmul(m, s->rf, 0, m->hw[s->head], 1, m->logits, 1.0f, 0.0f, prio,
	                    model_name(m, "matmul", L, "fwd"));
}

/* drf = dlogits W, dW = dlogits^T rf (the first write of dW); s->dres =
 * d(res3 of the last block).  An untied embedding's gradient starts at 0
 * here: the embedding backward accumulates into it. */
static int head_bwd(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	int L = m->cfg.n_layer, prio = m->prio_bwd(m, L);
	const char *mm = model_name(m, "matmul", L, "bwd"), *fill = model_name(m, "fill", L, "bwd");
	TRY(model_matmul(m, m->logits, 0, m->hw[s->head], 0, s->dln, 1.0f, 0.0f, prio, mm));
	TRY(model_matmul(m, m->logits, 1, s->rf, 0, m->hg[s->head], 1.0f, model_grad_beta(m), prio, mm));
	if (s->head != 0)
		TRY(model_grad_zero(m, m->hg[0], prio, fill));
	TRY(lspo_fill_submit(s->dres, 0.0f, prio, fill));
	TRY(model_grad_zero(m, m->hg[s->final_norm], prio, fill));
	TRY(lspo_rmsnorm_bwd_submit(s->dln, s->blocks[L - 1].res3, m->hw[s->final_norm], s->rstdf, s->dres,
	                            m->hg[s->final_norm], prio, model_name(m, "rmsnorm", L, "bwd")));
	MODEL_ACTS_DEAD(m, m->logits, s->rf, s->rstdf, s->blocks[L - 1].res3);
	return LSPO_OK;
}

/* s->dres holds d(res3 of block l) on entry, d(block input) on exit. */
static int block_bwd(struct lspo_model *m, int l)
{
	struct llama *s = m->fam_state;
	struct block_acts *a = &s->blocks[l];
	const struct lspo_model_config *c = &m->cfg;
	starpu_data_handle_t x = block_input(s, l);
	int prio = m->prio_bwd(m, l), n1 = norm_tensor(m, l, 0), n2 = norm_tensor(m, l, 1);
	const char *norm = model_name(m, "rmsnorm", l, "bwd"), *fill = model_name(m, "fill", l, "bwd");
	const char *rope = model_name(m, "rope", l, "bwd");
	TRY(model_linear_bwd(m, lin(l, ROLE_DOWN), a->h, s->dres, s->dh, 0, prio));
	TRY(lspo_swiglu_bwd_submit(a->gate, a->up, s->dh, s->dgate, s->dup, prio, model_name(m, "swiglu", l, "bwd")));
	TRY(model_linear_bwd(m, lin(l, ROLE_GATE), a->r2, s->dgate, s->dln, 0, prio));
	TRY(model_linear_bwd(m, lin(l, ROLE_UP), a->r2, s->dup, s->dln, 1, prio));
	TRY(model_grad_zero(m, m->hg[n2], prio, fill));
	TRY(lspo_rmsnorm_bwd_submit(s->dln, a->res2, m->hw[n2], a->rstd2, s->dres, m->hg[n2], prio, norm));
	TRY(model_linear_bwd(m, lin(l, ROLE_O), a->att, s->dres, s->datt, 0, prio));
	TRY(lspo_gqa_attention_bwd_submit(s->datt, a->q, a->k, a->v, a->att, a->lse, s->dq, s->dk, s->dv, m->B,
	                                  c->n_head, c->n_kv_head, c->head_dim, prio,
	                                  model_name(m, "attention", l, "bwd")));
	TRY(lspo_rope_submit(s->dq, s->rope, c->n_head, c->head_dim, 1, prio, rope));
	TRY(lspo_rope_submit(s->dk, s->rope, c->n_kv_head, c->head_dim, 1, prio, rope));
	TRY(model_linear_bwd(m, lin(l, ROLE_Q), a->r1, s->dq, s->dln, 0, prio));
	TRY(model_linear_bwd(m, lin(l, ROLE_K), a->r1, s->dk, s->dln, 1, prio));
	TRY(model_linear_bwd(m, lin(l, ROLE_V), a->r1, s->dv, s->dln, 1, prio));
	TRY(model_grad_zero(m, m->hg[n1], prio, fill));
	TRY(lspo_rmsnorm_bwd_submit(s->dln, x, m->hw[n1], a->rstd1, s->dres, m->hg[n1], prio, norm));
	/* The block's output is not here: it was the deeper block's input, dropped by that block's backward. */
	MODEL_ACTS_DEAD(m, x, a->r1, a->rstd1, a->q, a->k, a->v, a->att, a->lse, a->attproj, a->res2, a->r2,
	                a->rstd2, a->gate, a->up, a->h, a->down);
	return LSPO_OK;
}

static int embed_bwd(struct lspo_model *m)
{
	struct llama *s = m->fam_state;
	return lspo_embedding_bwd_submit(s->dres, m->tokens, m->hg[0], m->prio_bwd(m, 0),
	                                 model_name(m, "embedding", 0, "bwd"));
}

const struct model_family model_llama = {
	.name = "llama", .roles = roles, .nroles = NROLES, .default_targets = (1u << NROLES) - 1,
	.config_check = config_check, .layout = layout, .init_params = init_params,
	.build = build, .free = free_state,
	.embed_fwd = embed_fwd, .block_fwd = block_fwd, .head_fwd = head_fwd,
	.head_bwd = head_bwd, .block_bwd = block_bwd, .embed_bwd = embed_bwd,
};
