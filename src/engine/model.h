/*
 * model.h - the step engine and the model descriptions it reads.
 *
 * The engine (engine/model.c, engine/offload.c, engine/train_state.c,
 * io/ckpt.c) owns what every model shares: the parameter, gradient and AdamW
 * slabs with a handle per tensor, the batch, the loss, the global norm and
 * clip, the optimizer, the modes native/zero/lsp, the projector checks, the
 * training state and checkpoint I/O.  A model family (models/gpt2.c,
 * models/llama.c) is a description the engine reads:
 *   - its tensors (HF names, shapes, slab offsets, the block they belong to),
 *   - its linear maps (weight, optional bias, block, role, in, out and the
 *     orientation HF stores the weight in), which the modes offload or
 *     compress,
 *   - functions that register its activations and submit the embedding, one
 *     block and the head, forward and backward.
 * A block's code calls model_linear_fwd / model_linear_bwd for each linear
 * map, and the mode decides what they submit.
 */
#ifndef LSPO_ENGINE_MODEL_H
#define LSPO_ENGINE_MODEL_H

#include <starpu.h>

#include "lspo.h"

#define MODEL_MAX_SPLIT 64
#define MODEL_NAME_LEN 96

/* ------------------------------------------------------------------------ */
/* Descriptions                                                             */

struct model_tensor {
	char name[MODEL_NAME_LEN];   /* HF name, e.g. "h.3.attn.c_attn.weight" */
	int rows, cols;              /* 1-D tensors: rows == 1 */
	int hf_ndim;                 /* how HF stores it: 1 (biases, norms) or 2 */
	size_t offset;               /* in floats, from the start of the slab */
	int layer;                   /* block, or -1 (embeddings), or n_layer (final norm, head) */
	int kind;                    /* the family's own tag of a tensor, for init and errors */
};

/* How HF stores a linear map's weight:
 *   IN_OUT (GPT-2's Conv1D): W (in, out), y = x W;
 *   OUT_IN (nn.Linear):      W (out, in), y = x W^T. */
enum model_orient { ORIENT_IN_OUT = 0, ORIENT_OUT_IN };

/* y (N, out) = x (N, in) W (+ b).  lsp compresses it as the (in, out)
 * matrix of the IN_OUT form: P (in, d), Q (out, d). */
struct model_linear {
	int weight, bias;            /* tensor indices; bias -1: none */
	int layer, role;             /* role: index into family->roles */
	int in, out;
	enum model_orient orient;
};

struct model_layout {
	int ntensors, nlinears;
	size_t nfloats;              /* slab size */
	struct model_tensor *tensors;
	struct model_linear *linears;
	int cap_tensors, cap_linears;
};

int layout_add_tensor(struct model_layout *l, int layer, int kind, int rows, int cols, int hf_ndim,
                      const char *fmt, ...) __attribute__((format(printf, 7, 8)));
int layout_add_linear(struct model_layout *l, int weight, int bias, int layer, int role,
                      enum model_orient orient);
void layout_free(struct model_layout *l);
int layout_find(const struct model_layout *l, const char *name);   /* index or -1 */

struct lspo_model;

/* What a family gives the engine.  Every submit function returns a status. */
struct model_family {
	const char *name;                     /* config.json model_type */
	const char *const *roles;             /* names of linear-map roles (--lsp-targets) */
	int nroles;
	unsigned default_targets;             /* roles lsp compresses by default (bit mask) */
	/* Fills defaults and checks cfg, naming the field. */
	int (*config_check)(struct lspo_model_config *cfg);
	int (*layout)(const struct lspo_model_config *cfg, struct model_layout *out);
	int (*init_params)(const struct lspo_model_config *cfg, const struct model_layout *l,
	                   uint64_t seed, float *params);
	/* Activations (through model_act) and the family's own state. */
	int (*build)(struct lspo_model *m);
	void (*free)(struct lspo_model *m);
	int (*embed_fwd)(struct lspo_model *m);                  /* tokens -> x */
	int (*block_fwd)(struct lspo_model *m, int layer);
	int (*head_fwd)(struct lspo_model *m);                   /* x -> logits */
	int (*head_bwd)(struct lspo_model *m);                   /* dlogits -> dx */
	int (*block_bwd)(struct lspo_model *m, int layer);
	int (*embed_bwd)(struct lspo_model *m);
};

extern const struct model_family model_gpt2, model_llama;
const struct model_family *model_family_of(enum lspo_family family);

/* ------------------------------------------------------------------------ */
/* The model object                                                          */

struct model_plan {                               /* `parent` cut into row or column blocks */
	starpu_data_handle_t parent;
	int by_cols;
	starpu_data_handle_t children[MODEL_MAX_SPLIT];
};

struct lspo_model {
	struct lspo_model_config cfg;
	const struct model_family *fam;
	int B, T, N;
	struct model_layout layout;
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
	int ntargets;                                  /* targets of the batch not ignored (>= 0) */
	starpu_data_handle_t tokens, targets, targets_flat;   /* targets_flat: (1, N), for split losses */
	starpu_data_handle_t logits, losses;           /* (N, V), (1, N) */
	starpu_data_handle_t ones, ones_whole;         /* (N, 1) of 1: split and whole uses */
	float *ones_buf;
	void *fam_state;                               /* the family's activations */
	/* Activation handles, unregistered by the engine. */
	starpu_data_handle_t *acts;
	int nacts, cap_acts;
	int act_failed;                                /* out of memory registering one */
	/* CPU-only runs cut large products into `split` row blocks, one per CPU
	 * worker, so that every core works (BLAS itself stays single-threaded). */
	int split;
	/* model_acts_dead drops dead activations while drop_dead is set: after
	 * a step on an accelerator evicted (drop_base bytes), from the next step
	 * on, until a step evicts an eighth of that (then never again in the
	 * run; drop_tried).  Dropped
	 * activations are allocated again at every step, from StarPU's cache of
	 * freed buffers: that pays where it spares the step the writeback and
	 * refetch of activations and so makes it fit; where the step overflows
	 * anyway, allocations under pressure empty that cache, each cudaFree
	 * stalling the device; and with room to spare it changes nothing but
	 * the peak (SIMULATED, GPT-2 124M, B 4 x T 1024, 4 GiB, dropping in
	 * every step: lsp 724 -> 100 ms a step, native 337 -> 938). */
	int drop_dead, drop_tried;
	double drop_base;
	int counting;                                  /* model_act only counts floats */
	float *act_slab;                               /* host memory of activations when split */
	size_t act_used, act_size;
	struct model_plan **plans;                     /* each allocated once (model.c plan) */
	int nplans, max_plans;
	int step;                                      /* optimizer steps done */
	int registered;
	struct lspo_tags *tags;                        /* interned task names (tag.h) */
	int name_failed;                               /* a task got no tag (model_name) */

	/* Mode hooks (native: model_use_native). */
	int (*prio_fwd)(struct lspo_model *m, int layer);
	int (*prio_bwd)(struct lspo_model *m, int layer);
	int (*grad_in_norm)(struct lspo_model *m, int tensor);
	int (*linear_fwd)(struct lspo_model *m, int lin, starpu_data_handle_t inp, starpu_data_handle_t out,
	                  int prio);
	/* dinp = (or += when accumulate) dout W^T in the IN_OUT form. */
	int (*linear_bwd)(struct lspo_model *m, int lin, starpu_data_handle_t inp, starpu_data_handle_t dout,
	                  starpu_data_handle_t dinp, int accumulate, int prio);
	int (*update)(struct lspo_model *m, const struct lspo_optim *opt);
	/* Non-NULL: what the mode redoes after new parameters (lspo_model_set_params):
	 * restart its own optimizer state, refresh its working weights. */
	int (*after_set_params)(struct lspo_model *m);
	/* Non-NULL: runs between the backward and the gradient norm. */
	int (*after_backward)(struct lspo_model *m);
	/* Non-NULL and true: tensor i's norm partial runs on a CPU worker. */
	int (*norm_on_cpu)(struct lspo_model *m, int tensor);
	/* --dtype bf16 (engine/dtype.c): w16 are the bf16 working weights (hw),
	 * refreshed from the fp32 masters hp after every update; activations
	 * are bf16 unless registered by model_act_f32. */
	int bf16, act_f32;
	starpu_data_handle_t *w16;
	/* --bf16-update stochastic (dtype.c): updates on the accelerator write
	 * w16 with stochastic rounding keyed by (sr_seed, step, tensor); hp is
	 * then the host's copy, refreshed from w16 when read. */
	int bf16_sr;
	uint64_t sr_seed;
	enum lspo_mode mode_id;
	void *mode;                                    /* the mode's own state (offload.c) */
	void (*free_mode)(struct lspo_model *m);

	/* Activation checkpointing (engine/recompute.c): every `ckpt_every`
	 * blocks, 0 off; `recomputing` while a block's forward is submitted
	 * again for its backward (its tasks then have stage "recompute"). */
	int ckpt_every, recomputing;
	/* Gradient accumulation (engine/accum.c): `accumulating` while a
	 * micro-batch after a step's first adds its gradients to the others. */
	int accumulating;
	struct model_accum *accum;                     /* micro-batch inputs and losses */
	/* Data parallelism (engine/dp.c): NULL in a single process. */
	const struct model_dp_hooks *dp_hooks;
	void *dp;
	int ntargets_all;                              /* targets counted on all ranks */
	int dp_defer;                                  /* a micro-batch before the step's last */
};

/* What data parallelism adds to a step (engine/dp.c): after set_batch,
 * the global target count; after the backward of `layer` (-1: the
 * embeddings, n_layer: the head), the reduction of its gradients; the
 * global mean loss from this rank's sum; and freeing its state. */
struct model_dp_hooks {
	int (*batch)(struct lspo_model *m);
	int (*reduce)(struct lspo_model *m, int layer);
	double (*loss)(struct lspo_model *m, double sum);
	void (*free)(struct lspo_model *m);
};

#define TRY(call) do { int rc_ = (call); if (rc_) return rc_; } while (0)

/* Interned task name "<op>:L<layer>:<stage>" ("<op>:<stage>" for layer < 0);
 * NULL (logged) for an unknown stage or when out of memory, which the submit
 * then reports.  The names are the model's struct lspo_tags (tag.h). */
const char *model_name(struct lspo_model *m, const char *op, int layer, const char *stage);

/* An activation (rows, cols): StarPU allocates it where first written,
 * unless the model splits products (host memory under partition plans).
 * The engine unregisters it. */
void model_act(struct lspo_model *m, starpu_data_handle_t *h, int rows, int cols);

/* Forward activations whose last reader of the step has been submitted
 * (in the backward): their contents are dead until the next forward writes
 * them, so StarPU drops every copy after that reader and an accelerator
 * frees them without writing them back (under a memory cap, evicting them
 * copied dead bytes across the bus and refetched the live ones they had
 * pushed out).  A read submitted before the next write fails StarPU's
 * check that a handle is initialized.  The backward's own buffers (the
 * gradients of activations, reused by every block) stay: the forward's end
 * remains the step's peak, as the footprint says. */
void model_acts_dead(const struct lspo_model *m, const starpu_data_handle_t *h, int n);
#define MODEL_ACTS_DEAD(m, ...) \
	model_acts_dead((m), (const starpu_data_handle_t[]){ __VA_ARGS__ }, \
	                (int)(sizeof((starpu_data_handle_t[]){ __VA_ARGS__ }) / sizeof(starpu_data_handle_t)))

/* An activation that stays float32 under --dtype bf16 (statistics that
 * numerics need: norm means and rstd, log-sum-exp, losses). */
void model_act_f32(struct lspo_model *m, starpu_data_handle_t *h, int rows, int cols);

/* --dtype bf16 (engine/dtype.c): builds the bf16 working weights (hw),
 * rounds the fp32 masters into them (after new parameters on CPU workers,
 * where the host wrote them; after every update on CPU workers in zero
 * mode, where the masters are, else on the accelerator; after a mode is
 * set, on the accelerator if the mode's masters live there),
 * unregisters them. */
int model_bf16_build(struct lspo_model *m);
int model_bf16_refresh(struct lspo_model *m);
int model_bf16_mode_set(struct lspo_model *m);
void model_bf16_free(struct lspo_model *m);
/* --bf16-update stochastic (dtype.c).  Active in native and lsp mode: the
 * weight an update writes (AdamW's param, lsp's apply target) is w16 and
 * the rounding key of tensor i at this step is model_bf16_sr_key; after the
 * update nothing is refreshed; before the host reads the parameters
 * (lspo_model_get_params) the host copies hp take w16's values (exact). */
int model_bf16_sr_active(const struct lspo_model *m);
uint64_t model_bf16_sr_key(const struct lspo_model *m, int tensor);
int model_bf16_after_update(struct lspo_model *m);
int model_bf16_sync_host(struct lspo_model *m);

/* C = alpha op(A) op(B) + beta C, as `split` tasks on row blocks of C when
 * the model splits (op(A) cut accordingly), else one task. */
int model_matmul(struct lspo_model *m, starpu_data_handle_t A, int ta, starpu_data_handle_t B, int tb,
                 starpu_data_handle_t C, float alpha, float beta, int prio, const char *name);

/* A linear map of the layout through the mode's hooks. */
static inline int model_linear_fwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                                   starpu_data_handle_t out, int prio)
{
	return m->linear_fwd(m, lin, inp, out, prio);
}
static inline int model_linear_bwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                                   starpu_data_handle_t dout, starpu_data_handle_t dinp, int accumulate,
                                   int prio)
{
	return m->linear_bwd(m, lin, inp, dout, dinp, accumulate, prio);
}

/* The dense pieces of a linear map, for the modes: y = x W (+ b); and
 * dinp = dout W^T (beta 0 or 1), dW = x^T dout, db = 1^T dout, each skipped
 * when its handle is NULL. */
int model_linear_dense_fwd(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                           starpu_data_handle_t out, int prio);
int model_linear_dinp(struct lspo_model *m, int lin, starpu_data_handle_t dout, starpu_data_handle_t dinp,
                      int accumulate, int prio);
int model_linear_dweights(struct lspo_model *m, int lin, starpu_data_handle_t inp,
                          starpu_data_handle_t dout, starpu_data_handle_t dw, starpu_data_handle_t db,
                          int prio);

void model_use_native(struct lspo_model *m);
int model_submit_norm(struct lspo_model *m, float max_norm);
/* AdamW of one tensor on the workers in `where`, task "adamw:L<layer>:upd". */
int model_submit_adamw(struct lspo_model *m, int tensor, const struct lspo_optim *opt, uint32_t where,
                       int prio);
/* The layer a tensor belongs to in task names: its block, 0 for the
 * embeddings, n_layer for the final norm and the head. */
int model_tensor_layer(const struct lspo_model *m, int tensor);
/* Forward and backward of one batch with the current hooks; waits. */
int model_dense_grads(struct lspo_model *m, const int32_t *inputs, const int32_t *targets);

/* Config: the family's defaults and checks, then the slab size with
 * overflow checks.  The layout of a checked config. */
int model_layout_for(const struct lspo_model_config *cfg, struct lspo_model_config *resolved,
                     struct model_layout *out);

/* The same, for callers that need only the layout. */
int model_layout_of(const struct lspo_model_config *cfg, struct model_layout *out);

/* lsp mode's training state, for train_state.c (offload.c): matrix k's
 * subspace moments M, V (d, d, in host memory) with their handles and its
 * step count, and the projector pairs.  No matrices or pairs in other modes. */
struct lsp_state {
	int d;
	float *M, *V;
	starpu_data_handle_t hM, hV;
	int *t;
	int tensor, layer;                 /* the weight it compresses, its block */
	starpu_data_handle_t ghat;         /* G_hat (d, d), written by the backward */
};
/* 1 while lsp's hooks form G_hat (not during a check's dense gradients). */
int lsp_hooks_active(const struct lspo_model *m);
int lsp_state_nmats(const struct lspo_model *m);
struct lsp_state lsp_state_matrix(struct lspo_model *m, int k);
int lsp_state_npairs(const struct lspo_model *m);
struct lspo_proj *lsp_state_pair(struct lspo_model *m, int i);

/* The engine's large host buffers (host_slab.c): `bytes` zeroed bytes,
 * pinned in a real run; in a simulated run reserved, never touched
 * (model_host_untouched: 1, and the engine writes nothing into them).
 * Free with the same size. */
int model_host_alloc(void **p, size_t bytes, const char *what);
void model_host_free(void *p, size_t bytes);
int model_host_untouched(void);

/* ------------------------------------------------------------------------ */
/* Activation checkpointing (recompute.c) and gradient accumulation (accum.c) */

/* The first write of a gradient: the beta of the product that forms it
 * (0, or 1 while accumulating micro-batches, so that it adds), and the
 * zeroing before a kernel that adds into it (no task while accumulating). */
static inline float model_grad_beta(const struct lspo_model *m) { return m->accumulating ? 1.0f : 0.0f; }
int model_grad_zero(struct lspo_model *m, starpu_data_handle_t grad, int prio, const char *name);

/* For a family's build: the block whose activation handles block `layer`
 * uses (itself without checkpointing), and whether its output (the next
 * block's input) has a handle of its own, kept from forward to backward. */
int model_block_slot(const struct lspo_model *m, int layer);
int model_block_keeps_output(const struct lspo_model *m, int layer);
/* Just before block `layer`'s backward: with checkpointing, when `layer`
 * ends a segment whose activations were overwritten, submits the segment's
 * forward again (stage "recompute"). */
int model_recompute(struct lspo_model *m, int layer);

/* Floats of the activations the model registers with its current
 * checkpointing (logits, losses, the family's): the analytic activation
 * footprint, in float elements. */
size_t model_activation_floats(struct lspo_model *m);

/* model.c for recompute.c and accum.c. */
int model_register_activations(struct lspo_model *m);
int model_submit_gradients(struct lspo_model *m);       /* forward, loss, backward of the batch */
/* accum.c for the step: the K micro-batches' inputs (K B, T) into their own
 * handles; their forward and backward, gradients summed (model.c's step
 * then submits what follows the gradients once); the mean loss of the K
 * micro-batches. */
int model_accum_set_batches(struct lspo_model *m, const int32_t *inputs, const int32_t *targets, int K);
int model_accum_submit(struct lspo_model *m, int K);
double model_accum_mean_loss(struct lspo_model *m, int K);
void model_accum_free(struct lspo_model *m);

#endif
