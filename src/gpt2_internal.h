/*
 * gpt2_internal.h - the GPT-2 model object, shared by the native engine
 * (gpt2.c) and the offload modes, which replace the hooks below.
 */
#ifndef LSPO_GPT2_INTERNAL_H
#define LSPO_GPT2_INTERNAL_H

#include <starpu.h>

#include "lspo.h"
#include "gpt2_params.h"

#define GPT2_WTE 0
#define GPT2_WPE 1
#define GPT2_MAX_SPLIT 64

/* A partition plan: `parent` cut into row blocks or column blocks. */
struct gpt2_plan {
	starpu_data_handle_t parent;
	int by_cols;
	starpu_data_handle_t children[GPT2_MAX_SPLIT];
};

/* Activations of one block, all (N, C) unless noted; N = B * T. */
struct gpt2_acts {
	starpu_data_handle_t ln1, ln1_mean, ln1_rstd;  /* mean, rstd (1, N) */
	starpu_data_handle_t qkv;                      /* (N, 3C) */
	starpu_data_handle_t atty, lse;                /* lse (1, B*NH*T) */
	starpu_data_handle_t attproj, res2;
	starpu_data_handle_t ln2, ln2_mean, ln2_rstd;
	starpu_data_handle_t fch, fch_gelu;            /* (N, 4C) */
	starpu_data_handle_t fcproj, res3;
};

struct lspo_gpt2 {
	struct lspo_gpt2_config cfg;
	int B, T, N;
	struct gpt2_layout layout;
	float *params, *grads, *m, *v;                 /* slabs (layout.nfloats), pinned */
	starpu_data_handle_t *hp, *hg, *hm, *hv;       /* one per tensor, views of the slabs */
	/* The weights forward and backward read: hp, except where a mode keeps
	 * master weights on the host and working copies on the accelerator. */
	starpu_data_handle_t *hw;
	double *partials;                              /* per-tensor sums of squares */
	starpu_data_handle_t *hpartial;
	starpu_data_handle_t *norm_parts;              /* scratch for the clip task */
	float clip_buf[2];                             /* {norm, scale} */
	starpu_data_handle_t clip;
	int32_t *tok_buf, *tgt_buf;                    /* (B, T) */
	starpu_data_handle_t tokens, targets;
	struct gpt2_acts *acts;                        /* n_layer */
	starpu_data_handle_t encoded, lnf, lnf_mean, lnf_rstd, logits, losses;
	starpu_data_handle_t ones, ones_whole;         /* (N, 1) of 1: split and whole uses */
	float *ones_buf;
	starpu_data_handle_t targets_flat;             /* targets as (1, N), for split losses */
	/* CPU-only runs cut large products into `split` row blocks, one per CPU
	 * worker, so that every core works (BLAS itself stays single-threaded). */
	int split;
	float *act_slab;                               /* host memory of activations when split */
	size_t act_used, act_size;
	struct gpt2_plan *plans;
	int nplans, max_plans;
	/* Gradients of activations, reused by every layer. */
	starpu_data_handle_t dres, dln, datty, dqkv, dfch, dfch_gelu;
	int step;                                      /* optimizer steps done */
	int registered;
	struct lspo_tags *tags;                        /* task names (tag.h) */

	/* Mode hooks (native: gpt2_use_native). */
	int (*prio_fwd)(struct lspo_gpt2 *g, int layer);
	int (*prio_bwd)(struct lspo_gpt2 *g, int layer);
	int (*grad_in_norm)(struct lspo_gpt2 *g, int tensor);
	/* A block's linear layer `kind` (a weight; its bias follows it). */
	int (*linear_fwd)(struct lspo_gpt2 *g, int layer, int kind, starpu_data_handle_t inp,
	                  starpu_data_handle_t out, int prio, const char *name);
	int (*linear_bwd)(struct lspo_gpt2 *g, int layer, int kind, starpu_data_handle_t inp,
	                  starpu_data_handle_t dout, starpu_data_handle_t dinp, int prio);
	int (*update)(struct lspo_gpt2 *g, const struct lspo_optim *opt);
	/* Non-NULL: what the mode redoes after new parameters (lspo_gpt2_set_params):
	 * restart its own optimizer state, refresh its working weights. */
	int (*after_set_params)(struct lspo_gpt2 *g);
	/* Non-NULL: runs between the backward and the gradient norm. */
	int (*after_backward)(struct lspo_gpt2 *g);
	/* Non-NULL and true: tensor i's norm partial runs on a CPU worker. */
	int (*norm_on_cpu)(struct lspo_gpt2 *g, int tensor);
	enum lspo_mode mode_id;
	void *mode;                                    /* the mode's own state (offload.c) */
	void (*free_mode)(struct lspo_gpt2 *g);
};

static inline int gpt2_lnf_index(const struct lspo_gpt2 *g) { return g->layout.ntensors - 2; }

/* Interned task name "<op>:L<layer>:<stage>" ("<op>:<stage>" for layer < 0);
 * NULL (logged) for an unknown stage or when out of memory. */
const char *gpt2_name(struct lspo_gpt2 *g, const char *op, int layer, const char *stage);
void gpt2_use_native(struct lspo_gpt2 *g);
int gpt2_linear_fwd(struct lspo_gpt2 *g, starpu_data_handle_t inp, starpu_data_handle_t w,
                    starpu_data_handle_t b, starpu_data_handle_t out, int prio, const char *name);
int gpt2_linear_bwd(struct lspo_gpt2 *g, starpu_data_handle_t inp, starpu_data_handle_t w,
                    starpu_data_handle_t dout, starpu_data_handle_t dinp, starpu_data_handle_t dw,
                    starpu_data_handle_t db, int prio, const char *name);
int gpt2_submit_norm(struct lspo_gpt2 *g, float max_norm);
/* C = alpha op(A) op(B) + beta C, as `split` tasks on row blocks of C when
 * the model splits (op(A) cut accordingly), else one task. */
int gpt2_matmul(struct lspo_gpt2 *g, starpu_data_handle_t A, int ta, starpu_data_handle_t B, int tb,
                starpu_data_handle_t C, float alpha, float beta, int prio, const char *name);
/* AdamW of one tensor on the workers in `where`, task "adamw:L<layer>:upd". */
int gpt2_submit_adamw(struct lspo_gpt2 *g, int tensor, const struct lspo_optim *opt, uint32_t where,
                      int prio);
/* The layer a tensor belongs to in task names: its block, 0 for the
 * embeddings, n_layer for the final layernorm. */
int gpt2_tensor_layer(const struct lspo_gpt2 *g, int tensor);
/* Forward and backward of one batch with the current hooks; waits. */
int gpt2_dense_grads(struct lspo_gpt2 *g, const int32_t *inputs, const int32_t *targets);

/* lsp mode's training state, for train_state.c (offload.c): matrix k's
 * subspace moments M, V (d, d, in host memory) with their handles and its
 * step count, and the projector pairs.  No matrices or pairs in other modes. */
struct lsp_state {
	int d;
	float *M, *V;
	starpu_data_handle_t hM, hV;
	int *t;
};
int lsp_state_nmats(const struct lspo_gpt2 *g);
struct lsp_state lsp_state_matrix(struct lspo_gpt2 *g, int k);
int lsp_state_npairs(const struct lspo_gpt2 *g);
struct lspo_proj *lsp_state_pair(struct lspo_gpt2 *g, int i);

#endif
