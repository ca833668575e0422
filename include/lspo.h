/*
 * lspo.h - the public API of lspo, LSP-Offload fine-tuning on StarPU.
 *
 * lspo trains language models with the weights on the accelerator and the
 * optimizer on the CPU; gradients cross the bus compressed by learned sparse
 * projectors (Chen et al., AAAI 2025).  Every stage of a training step is a
 * StarPU task, so any StarPU scheduling policy can run, trace and simulate it.
 *
 * Usage, in order:
 *   1. struct lspo_config cfg = lspo_config_default();  adjust fields;
 *   2. struct lspo_ctx *ctx;  lspo_ctx_create(&cfg, &ctx);   starts StarPU;
 *   3. build models, run steps (later parts of this header);
 *   4. lspo_ctx_destroy(ctx);                                 stops StarPU.
 *
 * Every function that can fail returns an lspo_status; on failure it has
 * also logged a message naming the file and line where the error was found.
 * No library function ever exits the process.
 *
 * Arrays are row-major float32 unless a comment says otherwise; shapes are
 * written after each array as (rows, cols).
 */
#ifndef LSPO_H
#define LSPO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What this header declares is the library's API and all it exports
 * (liblspo is built with -fvisibility=hidden). */
#pragma GCC visibility push(default)

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */

enum lspo_status {
	LSPO_OK = 0,
	LSPO_EINVAL,   /* invalid argument or configuration value */
	LSPO_ENOMEM,   /* out of memory */
	LSPO_EIO,      /* a file could not be opened, read or written */
	LSPO_EFORMAT,  /* a file was read but its content is malformed */
	LSPO_ENODEV,   /* no worker can run what was asked (e.g. no CUDA worker) */
	LSPO_ESTARPU,  /* StarPU reported an error */
	LSPO_EBUSY,    /* StarPU is already running in this process */
	LSPO_ENOTSUP,  /* not supported by this build */
	LSPO_NSTATUS
};

/* A static, human-readable description of a status code. */
const char *lspo_strerror(int status);

/* ------------------------------------------------------------------------ */
/* Logging                                                                  */

enum lspo_log_level { LSPO_LOG_ERROR = 0, LSPO_LOG_WARN, LSPO_LOG_INFO, LSPO_LOG_DEBUG };

/* Messages at or below this level go to stderr (default LSPO_LOG_WARN,
 * or the value of the LSPO_LOG environment variable: error|warn|info|debug). */
void lspo_log_set_level(enum lspo_log_level level);

/* ------------------------------------------------------------------------ */
/* Context: one StarPU instance                                             */

struct lspo_config {
	int ncpus;             /* CPU workers; -1: STARPU_NCPU, else every core left */
	int ncuda;             /* CUDA workers; -1: STARPU_NCUDA, else every GPU; 0: none */
	const char *sched;     /* policy: "lspo" (ours) or any StarPU policy name;
	                          NULL: STARPU_SCHED if set, else "lspo" */
	const char *trace_dir; /* FxT trace directory (FxT builds); NULL: no FxT trace
	                          unless STARPU_FXT_TRACE / STARPU_FXT_PREFIX say so */
	int profiling;         /* 1: record per-task profiling information */
	long cuda_mem_mib;     /* > 0: cap StarPU's memory per GPU (STARPU_LIMIT_CUDA_MEM) */
};

/* The defaults: every worker StarPU finds, policy from STARPU_SCHED or "lspo". */
struct lspo_config lspo_config_default(void);

struct lspo_ctx;

/* Starts StarPU as cfg says (STARPU_* variables fill what cfg leaves at -1
 * or NULL), creates a cuBLAS handle per CUDA worker, and makes BLAS calls
 * single-threaded so that StarPU workers and BLAS threads never share cores.
 * Returns LSPO_EBUSY if a context already exists, LSPO_EINVAL for an unknown
 * policy name, LSPO_ENODEV if StarPU finds no worker. */
int lspo_ctx_create(const struct lspo_config *cfg, struct lspo_ctx **out);

/* Waits for every submitted task, then shuts StarPU down.  NULL is a no-op. */
void lspo_ctx_destroy(struct lspo_ctx *ctx);

int lspo_ctx_ncpus(const struct lspo_ctx *ctx);   /* CPU workers running */
int lspo_ctx_ncuda(const struct lspo_ctx *ctx);   /* CUDA workers running */
/* 1 when StarPU is its SimGrid variant: kernels do not run, times are simulated
 * (a property of the build: ctx may be NULL). */
int lspo_ctx_simulated(const struct lspo_ctx *ctx);
const char *lspo_ctx_sched(const struct lspo_ctx *ctx);  /* policy in use */

/* Prints StarPU's version and features and one line per worker. */
void lspo_ctx_describe(const struct lspo_ctx *ctx, FILE *out);

/* Names of the policies lspo_config.sched accepts, NULL-terminated. */
const char *const *lspo_sched_names(void);

/* ------------------------------------------------------------------------ */
/* Scheduling policy `lspo` and tracing                                     */

/* The `lspo` policy reads "<op>:L<layer>:<stage>" task names and runs the
 * layer-wise LSP-Offload schedule (src/runtime/sched/sched_lspo.h has the rules):
 * the backward critical path first; the proj/offload/upd/upload/apply
 * pipeline of layers >= cut first come, first served; of layers < cut last
 * come, first served.  Options take effect for tasks pushed from then on. */
struct lspo_sched_opts {
	int cut;          /* layers below it are LCFS; -1 = auto (from the perfmodels) */
	int nlayers;      /* layers 0 .. nlayers-1; 0 = learn from task names */
	int delay_upd, delay_upload, delay_apply;  /* in layers, >= 0: a stage of layer i
	                     waits until the backward of layer i - delay started */
};

/* cut -1 (auto), nlayers 0 (learned), delays 0. */
struct lspo_sched_opts lspo_sched_opts_default(void);

/* Sets the policy's options (before or after lspo_ctx_create).  LSPO_EINVAL,
 * naming the field, if cut < -1, nlayers < 0 or a delay < 0 (or any value
 * above 1 << 20). */
int lspo_sched_set_opts(const struct lspo_sched_opts *o);

/* Parses `--lsp-delays` text into o's delays: "upd=2,upload=3,apply=4" (any
 * subset, any order) or three bare numbers "2,3,4" (upd, upload, apply).
 * LSPO_EINVAL naming the bad item; o is unchanged on failure. */
int lspo_sched_parse_delays(const char *text, struct lspo_sched_opts *o);

/* The accelerator bytes the run needs (lspo_footprint's `allocated`; 0:
 * unknown, the default).  When an accelerator's memory runs short, the
 * policy sends to CPU workers only as many of the updates either kind of
 * worker may run (native AdamW) as the missing bytes call for; with the
 * demand unknown, all of them.  LSPO_EINVAL if bytes < 0 or NaN. */
int lspo_sched_set_mem_demand(double bytes);

/* The cut in use: the set one, or the automatic choice (the default
 * round(nlayers / 4) until the perfmodels give estimates). */
int lspo_sched_get_cut(void);

/* Tracing (lspo_config.trace_dir = DIR, `lspo train --trace DIR`): with an
 * FxT-enabled StarPU the FxT trace goes to DIR/prof_file_*; in every build
 * the context also records every executed task from StarPU's profiling
 * information (any policy) and writes, at lspo_ctx_destroy or
 * lspo_trace_flush:
 *   DIR/tasks.csv    one row per task: step, task, layer, stage, worker,
 *                    worker_kind, submit_us, start_us, end_us, bytes (total
 *                    size of the task's data buffers), job_id, priority;
 *   DIR/summary.txt  per step and overall: wall time, per-worker busy share,
 *                    bytes per bus direction, transfer time hidden behind
 *                    compute, and the critical path (longest chain of
 *                    dependent tasks by measured duration).
 * Recording costs one mutex-protected append per task. */

/* Starts step `step` (> 0): tasks submitted from now on belong to it, until
 * the next mark.  step <= 0 marks work outside training steps (validation,
 * checkpoints).  No-op when the context does not trace. */
void lspo_trace_mark_step(int step);

/* Rewrites DIR/tasks.csv and DIR/summary.txt with every task finished so far
 * (call it after waiting for the tasks).  LSPO_OK, writing nothing, when the
 * context does not trace; LSPO_EIO if a file cannot be written. */
int lspo_trace_flush(void);

/* ------------------------------------------------------------------------ */
/* Self-test: the library's smallest real task graph                        */

struct lspo_selftest_report {
	int ntasks;           /* tasks submitted */
	double max_rel_err;   /* worst relative error against a double reference */
	double seconds;       /* wall time of the graph */
	int tasks_on_cpu;     /* tasks that ran on CPU workers */
	int tasks_on_cuda;    /* tasks that ran on CUDA workers */
};

/* Runs nchains independent chains of depth matrix products on n x n
 * matrices, then a fan-in that sums the chains' ends, all as StarPU tasks
 * ordered only by data dependencies; compares the result with a double
 * precision computation on the host.  LSPO_EINVAL if the error exceeds the
 * float32 tolerance (the report is filled either way). */
int lspo_selftest(struct lspo_ctx *ctx, int n, int nchains, int depth,
                  struct lspo_selftest_report *report);

/* ------------------------------------------------------------------------ */
/* Models: one engine, families as descriptions (GPT-2, Llama, Qwen2)     */

enum lspo_family { LSPO_FAMILY_GPT2 = 0, LSPO_FAMILY_LLAMA, LSPO_FAMILY_QWEN2, LSPO_NFAMILIES };
enum lspo_rope_type { LSPO_ROPE_DEFAULT = 0, LSPO_ROPE_LLAMA3 };

/*
 * A model's sizes and options, read from HF config.json.  The first five
 * fields keep GPT-2's names (a GPT-2 config is { V, P, C, L, NH }); for
 * Llama and Qwen2 they are vocab_size, max_position_embeddings,
 * hidden_size, num_hidden_layers and num_attention_heads.  Fields left 0
 * take their family's default (lspo_model_config_check fills them in).
 */
struct lspo_model_config {
	int vocab_size;   /* V */
	int n_positions;  /* longest sequence */
	int n_embd;       /* C: the residual stream */
	int n_layer;      /* L */
	int n_head;       /* NH: query heads */
	enum lspo_family family;
	int n_kv_head;    /* key/value heads (grouped-query attention); 0: n_head */
	int head_dim;     /* 0: n_embd / n_head */
	int n_inner;      /* MLP width (intermediate_size); 0: 4 n_embd */
	float norm_eps;   /* layer_norm_epsilon / rms_norm_eps; 0: 1e-5 (GPT-2), 1e-6 (Llama, Qwen2) */
	double rope_theta;/* 0: 10000 */
	enum lspo_rope_type rope_type;
	double rope_factor, rope_low_freq_factor, rope_high_freq_factor;   /* llama3 scaling */
	int rope_original_max_positions;
	int tie_word_embeddings;   /* the LM head is the token embedding (GPT-2: always) */
	int attention_bias;        /* Llama: q, k, v and o projections have biases */
	int mlp_bias;              /* Llama: gate, up and down projections have biases */
};

/* Fills the defaults in and checks the config: every size positive, heads
 * dividing what they must; LSPO_EINVAL with a message naming the field. */
int lspo_model_config_check(struct lspo_model_config *cfg);
const char *lspo_family_name(enum lspo_family family);   /* "gpt2", "llama", "qwen2" */
/* "gpt2", "llama", "qwen2" -> family; LSPO_EINVAL naming the text otherwise. */
int lspo_family_parse(const char *text, enum lspo_family *family);

/* ------------------------------------------------------------------------ */
/* Projectors (LSP)                                                         */

/*
 * A (d, r)-sparse projector pair for a trainable matrix W (m, n) (HF Conv1D
 * orientation, Y = X W): P (m, d) on the input side, Q (n, d) on the output
 * side, every row with exactly r distinct non-zeros, stored in ELL form
 * (r int32 column indices + r float values per row, indices sorted).  The
 * compressed gradient is G_hat = P^T G Q (d, d); an update Delta (d, d)
 * becomes W += P Delta Q^T (lsp-offload.md sections 4 to 7).
 */
#include <stdint.h>

struct lspo_proj;

enum lspo_proj_init {
	LSPO_PROJ_GAUSSIAN = 0,  /* values N(0, 1/r) */
	LSPO_PROJ_SIGN,          /* values +-1/sqrt(r), random signs */
};

/* A fresh pair: positions drawn without replacement per row, values as
 * `init` says; the same (m, n, d, r, init, seed) gives the same pair.
 * LSPO_EINVAL unless m, n, d >= 1 and 1 <= r <= d. */
int lspo_proj_create(int m, int n, int d, int r, enum lspo_proj_init init, uint64_t seed,
                     struct lspo_proj **out);
/* NULL is a no-op.  Unregisters the pair's StarPU handles if it has any. */
void lspo_proj_free(struct lspo_proj *p);
/* A deep copy (no StarPU handles). */
int lspo_proj_clone(const struct lspo_proj *p, struct lspo_proj **out);
/* Draws a new pattern and new values in place (as lspo_proj_create). */
int lspo_proj_redraw(struct lspo_proj *p, enum lspo_proj_init init, uint64_t seed);

void lspo_proj_shape(const struct lspo_proj *p, int *m, int *n, int *d, int *r);
/* Read-only views of the ELL arrays: side 0 = P (m, r), side 1 = Q (n, r). */
void lspo_proj_ell(const struct lspo_proj *p, int side, const int32_t **idx, const float **val);

/* *err = mean over the k gradients of ||P P^T G Q Q^T - G||_F / ||G||_F,
 * grads[i] (m, n) row-major.  O(m n r) per gradient. */
int lspo_proj_error(const struct lspo_proj *p, const float *const *grads, int ngrads, double *err);

/* Scales each side's values so that |P|_F^2 = |Q|_F^2 = d: the mean
 * diagonal of P^T P and Q^T Q is 1, P^T P ~ I for a random pair.  A pair of
 * lspo_proj_create has P^T P ~ (m/d) I, error ~ sqrt(m n)/d on any gradient;
 * normalized it starts at about 1.  Waits for tasks using p's handles. */
int lspo_proj_normalize(struct lspo_proj *p);

/* *frac = mean over the gradients of |P^T G Q|_F / |G|_F, P and Q taken at
 * |P|_F^2 = |Q|_F^2 = d (the pair's own scale does not count): the part of
 * the gradient's norm the compressed gradient keeps.  A random pair keeps
 * about d / sqrt(m n), one spanning G's leading singular subspaces close
 * to 1 (a little above when P^T P is not exactly I), a collapsed one about 0. */
int lspo_proj_captured(const struct lspo_proj *p, const float *const *grads, int ngrads, double *frac);

/* Projector learning (lsp-offload.md 7.1, 7.2): Adam on the non-zero values
 * only (pattern fixed), analytic gradients of the relative error; one
 * "iteration" takes one Adam step per gradient. */
struct lspo_proj_learn_opts {
	int iters;                /* iterations over the gradients (100) */
	float lr;                 /* Adam learning rate, constant (0.1) */
	float beta1, beta2, eps;  /* 0.9, 0.999, 1e-8 */
};
struct lspo_proj_learn_opts lspo_proj_learn_opts_default(void);

/* Learns p's values on grads.  err_before / err_after (either may be NULL):
 * mean relative error before the first and after the last step. */
int lspo_proj_learn(struct lspo_proj *p, const float *const *grads, int ngrads,
                    const struct lspo_proj_learn_opts *opts, double *err_before, double *err_after);

/* Re-projects the Adam moments of `count` matrices that used old_p onto
 * new_p (lsp-offload.md 7.4; the moments are kept, never reset):
 *   L = P_new^T P_old,  R = Q_new^T Q_old  (d, d),
 *   M <- L M R^T,  V <- (L o L) V (R o R)^T,
 * then M: NaN -> 0, +-Inf -> +-1; V: NaN -> 0, +Inf -> 1, clamped >= 0.
 * M[i], V[i] (d, d) host arrays (acquire them first if StarPU holds them). */
int lspo_proj_reproject_moments(const struct lspo_proj *old_p, const struct lspo_proj *new_p,
                                float *const *M, float *const *V, int count);

struct lspo_proj_refresh_opts {
	double alpha;             /* refresh when the error exceeds it (0.8, the reference's
	                             default; the paper's runs use 0.2 to 0.8) */
	enum lspo_proj_init init; /* values of the new pattern */
	uint64_t seed;            /* seed of the new pattern (vary it per refresh) */
	struct lspo_proj_learn_opts learn;
};
struct lspo_proj_refresh_opts lspo_proj_refresh_opts_default(void);

/* What the check did with a pair (issue 15: a learned pair is installed
 * only if it beats min(1, the old pair's error)). */
enum lspo_proj_outcome {
	LSPO_PROJ_KEPT = 0,         /* error at or below alpha: nothing changed */
	LSPO_PROJ_LEARNED,          /* the learned pair was accepted and is in place */
	LSPO_PROJ_REJECTED_KEPT,    /* the learned pair was rejected; the old pair stays */
	LSPO_PROJ_REJECTED_RANDOM,  /* rejected, and the old pair was worse than the fresh
	                               random one (normalized, not learned), now in place */
};
/* "kept", "learned", "rejected-kept", "rejected-random". */
const char *lspo_proj_outcome_name(enum lspo_proj_outcome outcome);

struct lspo_proj_refresh_report {
	double err_check;   /* error of the current pair on check_grads */
	int refreshed;      /* 1 if p's pattern and values were replaced (LEARNED or REJECTED_RANDOM) */
	double err_learned; /* error of the new pair on train_grads after learning (else -1) */
	double err_after;   /* error of the pair now in place on check_grads */
	/* added by issue 15 */
	enum lspo_proj_outcome outcome;
	double err_fresh;        /* the fresh, normalized pair on check_grads before learning (else -1) */
	double err_candidate;    /* the learned pair on check_grads, what acceptance compares (else -1) */
	double captured_before;  /* lspo_proj_captured of the old pair on check_grads */
	double captured_after;   /* lspo_proj_captured of the pair now in place */
	double captured_random;  /* d / sqrt(m n): what a random pair captures on average */
};

/* The periodic check (paper Alg. 1, MAYBEUPDATE): measures p's error on the
 * held-out check_grads; if it exceeds alpha, draws a new pattern, scales it
 * with lspo_proj_normalize (starting error about 1), learns it on
 * train_grads (check_grads if NULL) and measures it on check_grads.  The
 * learned pair is accepted only if that error is below min(1, p's error):
 * at smaller d Adam can otherwise "collapse" a pair onto directions
 * orthogonal to the gradient (P^T G Q ~ 0, error exactly 1, zero gradient).
 * A rejected pair is dropped; p stays unless its error exceeds the fresh
 * random pair's, in which case that pair (normalized, unlearned) replaces
 * it.  When p is replaced, the moments of the nmoments matrices using p are
 * re-projected (lspo_proj_reproject_moments, then divided by s_P s_Q for M
 * and (s_P s_Q)^2 for V, s_S = |S_old|_F^2 / d, which undoes the old pair's
 * own scale: the moments then match the new pair's compressed gradients
 * whatever the old pair's scale; s = 1 for a normalized pair), and p's
 * pattern and values change in place (waiting for tasks that use p's
 * handles).  report may be NULL. */
int lspo_proj_maybe_refresh(struct lspo_proj *p, const float *const *check_grads, int ncheck,
                            const float *const *train_grads, int ntrain,
                            const struct lspo_proj_refresh_opts *opts,
                            float *const *M, float *const *V, int nmoments,
                            struct lspo_proj_refresh_report *report);

/* Who owns which projector: per matrix, or shared by all matrices of the
 * same role (the model's name for the map: q, k, ..., qkv, fc, ...) and shape
 * (the pair is then learned on all their gradients). */
struct lspo_proj_registry;

/* shared 1: one pair per (role, m, n); 0: one pair per (role, layer, m, n); role >= 0.
 * Pairs get seeds derived from `seed` and their key, not from call order. */
int lspo_proj_registry_create(int shared, int d, int r, enum lspo_proj_init init, uint64_t seed,
                              struct lspo_proj_registry **out);
/* Frees the registry and every pair it handed out.  NULL is a no-op. */
void lspo_proj_registry_free(struct lspo_proj_registry *reg);
/* The pair for this matrix (created on first request, owned by the
 * registry); the same key always gives the same pair. */
int lspo_proj_registry_get(struct lspo_proj_registry *reg, int role, int layer,
                           int m, int n, struct lspo_proj **out);
int lspo_proj_registry_count(const struct lspo_proj_registry *reg);
struct lspo_proj *lspo_proj_registry_at(const struct lspo_proj_registry *reg, int i);

/* ------------------------------------------------------------------------ */
/* Checkpoints and data                                                     */

/* Checkpoints are HF transformers directories: DIR/config.json and
 * DIR/model.safetensors (or the shards of model.safetensors.index.json)
 * with the family's HF tensor names.  Parameters live in one flat float32
 * slab of lspo_model_nparams(cfg) floats, tensors in HF state_dict order and
 * HF's orientation (GPT-2's Conv1D (in, out), nn.Linear's (out, in)). */
#include <stdint.h>

/* Floats in the parameter slab of cfg; 0 if cfg is invalid (not logged). */
size_t lspo_model_nparams(const struct lspo_model_config *cfg);

/* The family's initialisation, deterministic for `seed` (a counter-based
 * generator, so independent of threads).  GPT-2: wte, wpe, c_attn and c_fc
 * weights N(0, 0.02); attn.c_proj and mlp.c_proj weights
 * N(0, 0.02 / sqrt(2 n_layer)); biases 0; layernorm weights 1 and biases 0.
 * Llama, Qwen2: weights and embeddings N(0, 0.02), biases 0, norm weights 1.
 * params: (lspo_model_nparams(cfg)). */
int lspo_model_init_params(const struct lspo_model_config *cfg, uint64_t seed, float *params);

/* Reads DIR/config.json (or `dir` itself when it names a regular file).
 * The family comes from model_type (else architectures[0]; neither: gpt2);
 * an unsupported one is refused by name.  GPT-2: vocab_size, n_positions
 * (n_ctx accepted when n_positions is absent), n_embd, n_layer, n_head,
 * layer_norm_epsilon.  Llama, Qwen2: vocab_size, max_position_embeddings,
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, head_dim, rms_norm_eps, rope_theta, rope_scaling
 * (null, default or llama3; others refused by name), tie_word_embeddings,
 * attention_bias and mlp_bias (Llama).  LSPO_EIO if the file cannot be
 * read, LSPO_EFORMAT naming the file and the field otherwise. */
int lspo_ckpt_read_config(const char *dir, struct lspo_model_config *cfg);

/* Loads DIR/model.safetensors, or every shard named by
 * DIR/model.safetensors.index.json, into params (lspo_model_nparams(cfg)
 * floats).  Accepts F32/BF16/F16 (converted to float32); GPT-2 names with or
 * without a "transformer." prefix; ignores the buffers HF may save
 * (h.N.attn.bias, h.N.attn.masked_bias, rotary inv_freq); with tied
 * embeddings accepts lm_head.weight only if it equals the embedding.  A missing,
 * unknown or duplicate tensor, a wrong shape or dtype, or a checkpoint that
 * disagrees with cfg (naming the config field) is LSPO_EFORMAT. */
int lspo_ckpt_load_params(const char *dir, const struct lspo_model_config *cfg, float *params);

/* Creates DIR if needed and writes DIR/model.safetensors (F32, HF names, no
 * prefix, no lm_head.weight when tied) and DIR/config.json (the family's HF
 * config: model_type, architectures and every field above), each
 * atomically: temporary file in DIR, fsync, rename, fsync of DIR.  HF
 * transformers loads the directory as it is. */
int lspo_ckpt_save(const char *dir, const struct lspo_model_config *cfg, const float *params);

/* Token shards in llm.c's format: 256 int32 header (magic 20240520,
 * version 1, token count), then the uint16 tokens. */
struct lspo_shard;

/* Maps the shard at `path`.  LSPO_EIO if it cannot be opened; LSPO_EFORMAT
 * naming the file and field for a short header, bad magic or version, an
 * empty shard (count 0) or a size that disagrees with the count. */
int lspo_shard_open(const char *path, struct lspo_shard **out);
void lspo_shard_close(struct lspo_shard *shard);  /* NULL is a no-op */
size_t lspo_shard_ntokens(const struct lspo_shard *shard);
const uint16_t *lspo_shard_tokens(const struct lspo_shard *shard);  /* (ntokens); NULL if uint32 */
const char *lspo_shard_path(const struct lspo_shard *shard);

/* Writes n (1 .. INT32_MAX) tokens as a shard, atomically. */
int lspo_shard_write(const char *path, const uint16_t *tokens, size_t n);

/* LSPO_EFORMAT naming the file, the first offending position and id if a
 * token id is >= vocab_size. */
int lspo_shard_check_vocab(const struct lspo_shard *shard, int vocab_size);

/* Byte-level tokenisation: each byte of in_path becomes one token 0..255 of
 * the shard out_path (written atomically); *ntokens (may be NULL) gets the
 * count.  An empty input is LSPO_EINVAL. */
int lspo_tokenize_bytes(const char *in_path, const char *out_path, size_t *ntokens);

/* Validation split: tokens [0, *train_end) train, [*train_end, n) validate;
 * val_fraction is clamped to [0, 1]. */
void lspo_shard_split(const struct lspo_shard *shard, double val_fraction, size_t *train_end);

/* Batches of B windows of T + 1 consecutive tokens from positions
 * [begin, end) of a shard (which must outlive the loader).  Windows start at
 * begin + k T (every token is a target once per epoch); each epoch visits
 * them in a fresh permutation drawn from `seed`, so the batch sequence
 * depends on the seed only. */
struct lspo_loader;

/* LSPO_EINVAL naming the file if B or T < 1 or [begin, end) is not inside
 * the shard or holds fewer than T + 1 tokens. */
int lspo_loader_create(const struct lspo_shard *shard, int B, int T, uint64_t seed,
                       size_t begin, size_t end, struct lspo_loader **out);
/* Fills the next batch: inputs (B, T) and targets (B, T), targets[b][t] =
 * the token after inputs[b][t]. */
int lspo_loader_next(struct lspo_loader *loader, int32_t *inputs, int32_t *targets);
void lspo_loader_free(struct lspo_loader *loader);  /* NULL is a no-op */

/* ------------------------------------------------------------------------ */
/* Token shards for any vocabulary, loss masks, tokenizers (issue 9)        */

/* A shard's tokens are uint16 (magic 20240520, version 1) or uint32 (magic
 * 20240801, version 7, llm.c's Llama-3 layout); lspo_shard_open reads both.
 * lspo_shard_tokens is NULL for a uint32 shard, lspo_shard_tokens32 for a
 * uint16 one; lspo_shard_token works for both. */
int lspo_shard_token_bytes(const struct lspo_shard *shard);            /* 2 or 4 */
const uint32_t *lspo_shard_tokens32(const struct lspo_shard *shard);   /* (ntokens) */
uint32_t lspo_shard_token(const struct lspo_shard *shard, size_t i);  /* i < ntokens */

/* Loss mask: the file SHARD.mask beside a shard, if it exists, is opened
 * with the shard (LSPO_EFORMAT naming it if it is malformed).  Layout: 256
 * int32 header (magic 20241130, version 1, ntokens = the shard's count, the
 * rest 0), then one byte per token: 1 if the token at that position counts
 * as a prediction target in the loss, 0 if not (prompt tokens of
 * instruction data).  NULL if the shard has no mask. */
const uint8_t *lspo_shard_mask(const struct lspo_shard *shard);       /* (ntokens) */

/* Like lspo_loader_next, and mask (B, T) (may be NULL) gets, for each
 * target, the mask byte of the target's position: mask[b][t] = 1 if
 * targets[b][t] counts in the loss, 0 if it must be ignored; all 1 for a
 * shard without a mask.  A window may be entirely masked.  Both functions
 * draw the same batches from the same loader state. */
int lspo_loader_next_masked(struct lspo_loader *loader, int32_t *inputs, int32_t *targets,
                            uint8_t *mask);

/* Streaming shard writer: tokens are uint16 if vocab_size <= 65535, uint32
 * otherwise; with `masked`, SHARD.mask is written beside it (without, a
 * stale SHARD.mask is removed at commit).  Both files are written
 * atomically at close with commit = 1; an id >= vocab_size is LSPO_EINVAL
 * naming the file and the position.  `target` is the mask byte of the added
 * tokens. */
struct lspo_shard_writer;
int lspo_shard_writer_open(const char *path, uint32_t vocab_size, int masked,
                           struct lspo_shard_writer **out);
int lspo_shard_writer_add(struct lspo_shard_writer *w, const uint32_t *ids, size_t n, int target);
size_t lspo_shard_writer_ntokens(const struct lspo_shard_writer *w);
/* Commits (commit = 1; an empty shard is LSPO_EINVAL) or discards; frees w. */
int lspo_shard_writer_close(struct lspo_shard_writer *w, int commit);

/* A Hugging Face tokenizer.json (BPE models; see src/io/tokenizer/tokenizer.c
 * for the normalizers, pre-tokenizers and decoders read).  A handle holds a
 * word cache and is used by one thread at a time; lspo_tokenizer_dup gives
 * another handle on the same tables for another thread. */
struct lspo_tokenizer;

/* path: a checkpoint directory holding tokenizer.json, or the file itself;
 * tokenizer_config.json beside it, if present, names BOS and EOS.  LSPO_EIO
 * if it cannot be read; LSPO_EFORMAT naming the file and the JSON path for
 * bad JSON, an unsupported type (WordPiece, Unigram, ...), a merge naming an
 * unknown token and the like. */
int lspo_tokenizer_load(const char *path, struct lspo_tokenizer **out);
int lspo_tokenizer_dup(struct lspo_tokenizer *t, struct lspo_tokenizer **out);
void lspo_tokenizer_free(struct lspo_tokenizer *t);   /* NULL is a no-op */
/* 1 + the largest id of the vocabulary and the added tokens. */
uint32_t lspo_tokenizer_vocab_size(const struct lspo_tokenizer *t);
int32_t lspo_tokenizer_bos(const struct lspo_tokenizer *t);   /* -1 if none */
int32_t lspo_tokenizer_eos(const struct lspo_tokenizer *t);   /* -1 if none */
const char *lspo_tokenizer_path(const struct lspo_tokenizer *t);   /* the tokenizer.json */
/* The token's string (as in the vocabulary), or NULL for an unknown id. */
const char *lspo_tokenizer_token(const struct lspo_tokenizer *t, uint32_t id, size_t *len);
/* Appends the ids of text (len bytes of UTF-8; no special tokens added) to
 * the growable array *ids (*n used, *cap allocated; start with NULL, 0, 0;
 * the caller frees it).  Invalid UTF-8 is LSPO_EINVAL naming the byte. */
int lspo_tokenizer_encode(struct lspo_tokenizer *t, const char *text, size_t len, uint32_t **ids,
                          size_t *n, size_t *cap);
/* The text of ids (malloc'd, NUL-terminated, *len bytes), special tokens
 * skipped if skip_special.  An unknown id is LSPO_EINVAL naming its position. */
int lspo_tokenizer_decode(const struct lspo_tokenizer *t, const uint32_t *ids, size_t n,
                          int skip_special, char **text, size_t *len);

/* ------------------------------------------------------------------------ */
/* Training                                                                 */

/* A model of any family registered with StarPU: parameters, gradients and AdamW
 * moments in three flat slabs (layout: HF state_dict order), activations for
 * batches of B sequences of T tokens. */
struct lspo_model;

/* Builds the model (parameters zero) for (B, T), T <= cfg->n_positions. */
int lspo_model_create(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, int B, int T,
                     struct lspo_model **out);
/* Waits for the model's tasks, unregisters and frees everything.  NULL is a no-op. */
void lspo_model_free(struct lspo_model *model);

const struct lspo_model_config *lspo_model_get_config(const struct lspo_model *model);
size_t lspo_model_num_floats(const struct lspo_model *model);   /* parameters in the slab */

/* Copies parameters (num_floats, layout order) in, and restarts the
 * optimizer (moments zero, step 0; in lsp mode the subspace moments too,
 * the projectors stay). */
int lspo_model_set_params(struct lspo_model *model, const float *params);
/* Copies the current parameters / gradients out (num_floats), after the
 * tasks that write them. */
int lspo_model_get_params(struct lspo_model *model, float *params);
int lspo_model_get_grads(struct lspo_model *model, float *grads);
/* Logits (B*T, V) of the last lspo_model_forward. */
int lspo_model_get_logits(struct lspo_model *model, float *logits);

struct lspo_optim {
	float lr, beta1, beta2, eps;
	float weight_decay;   /* on 2-D weights only; biases and norms get none */
	float clip;           /* global gradient-norm clip; <= 0: none */
};
/* lr 3e-4, betas 0.9 / 0.999, eps 1e-8, weight decay 0, clip 1. */
struct lspo_optim lspo_optim_default(void);

/* Learning rate per optimizer step (give lspo_optim.lr the value of each
 * step): linear warmup from lr / warmup at step 1 to lr at step `warmup`,
 * then constant, or a linear or cosine decay reaching min_lr after step
 * `total` (the run's step count). */
enum lspo_lr_decay { LSPO_LR_CONSTANT, LSPO_LR_LINEAR, LSPO_LR_COSINE };
struct lspo_lr_schedule {
	double lr, min_lr;
	long warmup, total;   /* steps; warmup 0: none */
	enum lspo_lr_decay decay;
};
struct lspo_lr_schedule lspo_lr_schedule_constant(double lr);
double lspo_lr_at(const struct lspo_lr_schedule *s, long step);   /* step >= 1 */

struct lspo_step_stats {
	int step;             /* optimizer steps done, this one included */
	double loss;          /* mean cross-entropy of this step's forward pass */
	double grad_norm;     /* global gradient norm before clipping */
	double seconds;       /* wall time from first submission to the end of the step */
	double bytes_d2h, bytes_h2d;  /* measured on the bus this step (0 without accelerator) */
};

/* Where the optimizer runs and what crosses the bus (lsp-offload.md 5, 8):
 *   native: everything on the accelerator, dense AdamW there;
 *   zero:   ZeRO-Offload: full gradients to host memory, AdamW with fp32
 *           master weights on CPU workers, weights back to the accelerator;
 *   lsp:    LSP-Offload: the linear maps of every block send only
 *           G_hat = P^T G Q (d, d) to the host, Adam runs there in the
 *           subspace, Delta comes back and W += P Delta Q^T on the
 *           accelerator; other parameters train densely on the accelerator
 *           (or stay frozen). */
enum lspo_mode { LSPO_MODE_NATIVE = 0, LSPO_MODE_ZERO, LSPO_MODE_LSP };

struct lspo_offload_opts {
	enum lspo_mode mode;
	int offload_bf16;       /* zero: gradients and weights cross the bus in bf16
	                           (master weights and AdamW stay fp32 on the host) */
	int lsp_d;              /* subspace size d (capped at min(m, n) per matrix); 256 */
	int lsp_r;              /* non-zeros per projector row; 8 */
	int lsp_shared;         /* 1: one projector pair per role and shape; 0: per matrix */
	enum lspo_proj_init lsp_init;
	double lsp_alpha;       /* refresh when the projector error exceeds it; 0.3 */
	int lsp_eps_inside_sqrt;/* subspace Adam in the reference code's form */
	int lsp_plain_apply;    /* W += P Delta Q^T as the reference code does; 0 (default):
	                           scaled by sqrt(m n) / (|P|_F |Q|_F), so that learned
	                           projectors keep the step size of random ones */
	struct lspo_proj_learn_opts learn;
	int freeze_dense;       /* lsp: embeddings, norms, biases and untargeted maps stay fixed */
	unsigned lsp_targets;   /* lsp: bit r set compresses the linear maps of role r of the
	                           model (lspo_lsp_targets_parse); 0: the family's default
	                           (every linear map of a block) */
	uint64_t seed;          /* projector patterns */
};
/* native; lsp defaults as commented above. */
struct lspo_offload_opts lspo_offload_opts_default(void);
/* Selects the mode (before the first step, or to switch: the optimizer
 * state of the new mode starts from zero). */
int lspo_model_set_mode(struct lspo_model *model, const struct lspo_offload_opts *opts);
const char *lspo_mode_name(enum lspo_mode mode);
/* "native", "zero", "lsp" -> mode; LSPO_EINVAL otherwise. */
int lspo_mode_parse(const char *text, enum lspo_mode *mode);
/* "q,k,v" -> the lsp_targets mask of the family's roles (GPT-2: qkv,
 * attn_out, fc, mlp_out; Llama and Qwen2: q, k, v, o, gate, up, down);
 * LSPO_EINVAL naming an unknown one. */
int lspo_lsp_targets_parse(enum lspo_family family, const char *text, unsigned *mask);

/* Bytes each training step sends device->host and host->device, from the
 * graph: lsp 4 d^2 per matrix each way, zero 4 m n per tensor each way,
 * native 0.  Measured bus totals are in lspo_step_stats. */
void lspo_model_offload_volume(const struct lspo_model *model, double *d2h, double *h2d);

/* One pair's part of a check (issue 15). */
struct lspo_lsp_pair_check {
	int pair;                        /* the pair's index (creation order) */
	int nmatrices;                   /* compressed matrices using it */
	int m, n, d;                     /* its shape */
	enum lspo_proj_outcome outcome;  /* kept, learned, rejected-kept, rejected-random */
	double err_before, err_after;    /* its error on their calibration gradients */
	double err_candidate;            /* the learned candidate's error there (-1: none learned) */
	double captured_before;          /* |P^T G Q|_F / |G|_F of the old pair (lspo_proj_captured) */
	double captured_after;           /* the same for the pair now in place */
	double captured_random;          /* what a random pair captures on average, d / sqrt(m n) */
};
struct lspo_lsp_check {
	int nmatrices;          /* compressed matrices checked */
	double err_before;      /* mean projector error on the calibration gradients */
	int refreshed;          /* projector pairs replaced (learned, or random after a rejection),
	                           moments re-projected */
	double err_after;       /* mean error of the pairs now in place */
	/* added by issue 15 */
	int accepted;           /* learned pairs installed */
	int rejected;           /* learned pairs rejected (the old or a random pair stays) */
	int npairs;             /* entries of pairs */
	const struct lspo_lsp_pair_check *pairs;  /* per pair; owned by the model, valid until the
	                                             next check, mode change or lspo_model_free */
};
/* lsp: the periodic check (paper Alg. 1): full gradients of the four
 * matrices of every block, summed over nbatches held-out calibration batches
 * (inputs, targets: (nbatches, B, T)); pairs whose error on them exceeds
 * alpha are re-drawn, learned on them and the Adam moments re-projected.
 * Waits for the model's tasks. */
int lspo_model_lsp_check(struct lspo_model *model, const int32_t *inputs, const int32_t *targets,
                        int nbatches, struct lspo_lsp_check *report);

/* The training state besides the weights, so that a job can stop and
 * resume bit for bit: the mode, the optimizer step, the AdamW moments, and in
 * lsp mode every matrix's subspace moments and step count and the projector
 * pairs.  One safetensors file (F32 and I32 tensors), written atomically.
 * Loading needs a model of the same config, mode and lsp options; it checks
 * every tensor (name, dtype, shape, index ranges) before it changes anything:
 * LSPO_EFORMAT naming the file and the tensor.  Both wait for the model. */
int lspo_model_save_state(struct lspo_model *model, const char *path);
int lspo_model_load_state(struct lspo_model *model, const char *path);
/* Optimizer steps done (0 after lspo_model_set_params; restored by load_state). */
int lspo_model_step(const struct lspo_model *model);
/* The non-finite guard: a step whose gradient norm is not finite changes no
 * parameter and no optimizer moment (the clip task writes scale 0 and the
 * optimizer tasks skip; in lsp mode a non-finite compressed gradient makes
 * its subspace step zero); the step counter still advances.  After such a
 * step: the name of the first tensor whose gradient holds a non-finite value
 * (among those in the norm), or NULL. */
const char *lspo_model_nonfinite_grad(struct lspo_model *model);

/* Mean loss of the batch; inputs, targets (B, T) with ids < vocab_size.
 * A negative target is ignored (a masked prompt token, as PyTorch's
 * ignore_index): the loss is the mean over the others, and its gradient is
 * that mean's; a batch whose targets are all ignored has loss 0 and no
 * gradient.  The same holds for the functions below. */
int lspo_model_forward(struct lspo_model *model, const int32_t *inputs, const int32_t *targets,
                      double *loss);
/* Forward and backward: gradients (see lspo_model_get_grads), loss and norm; no update. */
int lspo_model_forward_backward(struct lspo_model *model, const int32_t *inputs,
                               const int32_t *targets, double *loss, double *grad_norm);
/* One training step: forward, backward, global-norm clip and AdamW, all as
 * StarPU tasks ordered by their data; waits once, at the end. */
int lspo_model_train_step(struct lspo_model *model, const int32_t *inputs, const int32_t *targets,
                         const struct lspo_optim *opt, struct lspo_step_stats *stats);

/* ------------------------------------------------------------------------ */
/* Checkpoint directories (jobs: atomic, verified, resumable)               */

/* A save directory OUT holds complete checkpoints OUT/step-NNNNNNNN/, each
 * with a manifest.json (format "lspo-checkpoint", version 1, the step, the
 * size and CRC-32C of every file, and the caller's "run" object), the symlink
 * OUT/latest naming the newest complete one, and the links OUT/config.json,
 * OUT/model.safetensors -> latest/..., so OUT reads as a plain checkpoint.
 * A save writes a hidden OUT/.tmp-step-N.PID, fsyncs it, renames it to
 * OUT/step-N and swaps OUT/latest by a rename: a kill at any moment leaves
 * the previous or the new checkpoint published, never a mix.  Nothing here
 * knows about models: the caller writes its files into the temporary
 * directory and names them. */
struct lspo_ckpt_dir;

/* Creates OUT if needed and takes its lock (LSPO_EBUSY naming OUT if another
 * process saves there), then removes what killed saves left (.tmp-*
 * entries, step directories newer than the published one).  keep >= 1
 * complete checkpoints are kept.  LSPO_EINVAL if OUT holds a config.json or
 * model.safetensors that saves did not write (they would be replaced). */
int lspo_ckptdir_open(const char *out, int keep, struct lspo_ckpt_dir **d);
/* Aborts a save in progress and releases the lock.  NULL is a no-op. */
void lspo_ckptdir_close(struct lspo_ckpt_dir *d);
/* Starts the save of `step`: *tmpdir (owned by d) is an empty directory to
 * write the files into. */
int lspo_ckptdir_begin(struct lspo_ckpt_dir *d, long step, const char **tmpdir);
/* Finishes it: checksums the nfiles files (names inside *tmpdir; files =
 * NULL: every regular file written there, in name order), refuses
 * non-finite values in *.safetensors files (LSPO_EFORMAT naming the tensor),
 * writes the manifest with run_json (a JSON object text, may be NULL),
 * publishes, then removes the oldest checkpoints beyond `keep`.  On failure
 * the temporary directory is removed and the published checkpoint stays. */
int lspo_ckptdir_commit(struct lspo_ckpt_dir *d, const char *const *files, int nfiles,
                        const char *run_json);
/* Drops the save in progress (removes its temporary directory). */
void lspo_ckptdir_abort(struct lspo_ckpt_dir *d);

/* The checkpoint to read in `dir`: DIR/<latest's target> (and *step its
 * step) when DIR has a latest link, else DIR itself when it holds a
 * manifest.json or config.json; *path = NULL (LSPO_OK) when DIR does not
 * exist or holds none.  *path is malloc'd. */
int lspo_ckpt_resolve(const char *dir, char **path, long *step);
/* Checks DIR/manifest.json and every file it lists (present, size, CRC-32C):
 * LSPO_EIO when there is no manifest, LSPO_EFORMAT naming the file
 * otherwise.  *step gets its step, *run_json (may be NULL) a malloc'd
 * compact copy of its "run" object with sorted keys. */
int lspo_ckpt_verify(const char *dir, long *step, char **run_json);
/* LSPO_EFORMAT naming the file, tensor and element of the first non-finite
 * value among the float tensors of a safetensors file. */
int lspo_st_check_finite(const char *path);
/* CRC-32C (Castagnoli) of n bytes continuing `crc` (0 to start); of a file. */
uint32_t lspo_crc32c(uint32_t crc, const void *data, size_t n);
int lspo_file_crc32c(const char *path, uint32_t *crc, uint64_t *bytes);


/* ------------------------------------------------------------------------ */
/* Data parallelism over MPI ranks (StarPU-MPI; src/engine/dp.c)            */

/* `mpirun -np N lspo train`: every rank holds a replica of the model and its
 * own StarPU workers and trains on its share of each global batch.  As soon
 * as a layer's backward has formed its gradients, the engine submits their
 * sum across ranks into the same task graph (a ring all-reduce: pack, N-1
 * reduce-scatter and N-1 all-gather exchanges of StarPU-MPI requests,
 * unpack; tasks tagged with the `reduce` stage), so the traffic overlaps the
 * backward of the layers below.  native and zero reduce the full gradients;
 * lsp reduces G_hat (d, d) of the compressed matrices and the full gradients
 * of the rest.  Each rank sends 2 (N-1)/N of the reduced payload per step.
 * Use:
 *   1. lspo_dp_create (initialises MPI) before lspo_ctx_create;
 *   2. lspo_dp_start after it (StarPU-MPI), lspo_model_set_dp on the model;
 *   3. every rank runs the same steps on its rows of the global batch;
 *   4. lspo_model_free, lspo_dp_stop, lspo_ctx_destroy, lspo_dp_free.
 * Builds without StarPU-MPI return LSPO_ENOTSUP from create. */
struct lspo_dp;

/* 1 if this build has StarPU-MPI. */
int lspo_dp_available(void);
/* 1 if the environment says an MPI launcher (mpirun, srun --mpi=pmix/pmi2)
 * started this process (LSPO_MPI=0 or 1 overrides). */
int lspo_dp_launched(void);
/* MPI_Init_thread (MPI_THREAD_SERIALIZED); rank and size of MPI_COMM_WORLD. */
int lspo_dp_create(struct lspo_dp **out);
int lspo_dp_rank(const struct lspo_dp *dp);
int lspo_dp_size(const struct lspo_dp *dp);
/* Starts StarPU-MPI on the running StarPU (after lspo_ctx_create). */
int lspo_dp_start(struct lspo_dp *dp);
/* From now on the model's steps reduce their gradients across the ranks,
 * its loss is the mean over the global batch and its gradient the global
 * batch's.  A size-1 dp changes nothing. */
int lspo_model_set_dp(struct lspo_model *model, struct lspo_dp *dp);
/* Collective: *value = the largest of the ranks' values. */
int lspo_dp_agree_max(struct lspo_dp *dp, long *value);
/* Collective: checksums the parameters on every rank and compares them;
 * LSPO_EINVAL naming the ranks and checksums when the replicas differ. */
int lspo_dp_check_params(struct lspo_dp *dp, struct lspo_model *model, long step);
/* Bytes this rank sent to other ranks since lspo_dp_start: the gradient
 * reduction (measured: what its requests carried), its analytic volume
 * (2 (N-1)/N x payload), the payload reduced, and the small exchanges
 * (batch counts, losses, checksums, agreements). */
struct lspo_dp_bytes {
	double reduce, reduce_analytic, payload, control;
};
void lspo_dp_bytes(const struct lspo_dp *dp, struct lspo_dp_bytes *out);
/* Stops StarPU-MPI (before lspo_ctx_destroy).  NULL is a no-op. */
void lspo_dp_stop(struct lspo_dp *dp);
/* MPI_Finalize and free.  NULL is a no-op. */
void lspo_dp_free(struct lspo_dp *dp);
/* Ends the processes of every rank (MPI_Abort): for tools, when one rank
 * fails while the others may wait for it. */
void lspo_dp_abort(struct lspo_dp *dp, int code);
/* ------------------------------------------------------------------------ */
/* Memory: the analytic footprint of a run, and what StarPU allocated       */
/* (issue 13).                                                              */

/* What decides a run's footprint.  Options other parts of the engine own are
 * parameters here, so that `lspo plan` covers them. */
struct lspo_footprint_opts {
	enum lspo_mode mode;
	int batch, seq;          /* B, T of one (micro-)batch */
	int lsp_d, lsp_r;        /* lsp: subspace size (capped per matrix), non-zeros per row */
	int lsp_shared;          /* lsp: one projector pair per role and shape */
	unsigned lsp_targets;    /* lsp: roles compressed (lspo_lsp_targets_parse); 0: all of a block */
	int freeze_dense;        /* lsp: the other parameters stay fixed */
	int offload_bf16;        /* zero: gradients and weights cross the bus in bf16 */
	int dtype_bf16;          /* weights and activations stored in bf16 on the accelerator */
	int checkpoint_every;    /* 0: every activation kept; K: block inputs every K blocks, recomputed */
	int grad_accum;          /* micro-batches per optimizer step (0 or 1: none) */
	int bf16_stochastic;     /* with dtype_bf16, native and lsp: no fp32 master on the accelerator
	                            (lspo_model_set_bf16_update) */
};
/* Bytes, by kind, on the accelerator (where a CPU-only run computes: main
 * memory), and the host memory the engine and the mode keep. */
struct lspo_footprint {
	double weights, gradients, optimizer, activations, projectors, workspace;
	double device;           /* the sum of the six */
	double allocated;        /* what StarPU's allocator counts for them on an accelerator: it
	                            serves allocations up to 4 MiB from 32 MiB chunks */
	double lazy;             /* the part StarPU allocates itself wherever the step runs
	                            (activations, scratch, bf16 working copies); in a CPU-only
	                            run, all StarPU allocates: the rest is the engine's host
	                            memory */
	double host;
};
/* native, B 4, T 64, lsp d 256, r 8, the rest off. */
struct lspo_footprint_opts lspo_footprint_opts_default(void);
/* From the model's layout alone (no StarPU); LSPO_EINVAL naming what is wrong. */
int lspo_footprint(const struct lspo_model_config *cfg, const struct lspo_footprint_opts *opts,
                   struct lspo_footprint *out);

/* What StarPU allocated, sampled when tasks start and end and at step ends
 * (starpu_memory_get_total - starpu_memory_get_available: the bytes StarPU
 * allocated on the node through its allocator: replicas of data, scratch
 * buffers; memory the application allocated itself, e.g. lspo's host slabs,
 * is not in it).  Evicted and refetched bytes are per accelerator node: a
 * refetch is host->device traffic of the step beyond what its tasks needed
 * once (data not resident at the step's start, or written elsewhere since
 * the node last had it); evicted bytes are the refetched ones plus the data
 * a node held during the step, unchanged elsewhere, that it no longer holds
 * at the step's end. */
#define LSPO_MEM_MAXNODES 8
struct lspo_mem_stats {
	int nnodes;
	char name[LSPO_MEM_MAXNODES][32];        /* StarPU's node name, e.g. "NUMA 0", "CUDA 0" */
	int accel[LSPO_MEM_MAXNODES];            /* 1: an accelerator's memory, 0: main memory */
	double total[LSPO_MEM_MAXNODES];         /* bytes StarPU may use there (-1: unknown) */
	double peak_step[LSPO_MEM_MAXNODES];     /* peak allocated during the last step */
	double peak_run[LSPO_MEM_MAXNODES];      /* peak since StarPU started */
	double evicted, refetched;               /* of the last step, all accelerator nodes */
	double needed;                           /* host->device bytes the last step needed */
};
/* Fills `out` (zeros when no context runs). */
void lspo_mem_get(struct lspo_mem_stats *out);

/* ------------------------------------------------------------------------ */
/* Activation checkpointing and gradient accumulation (issue 13)            */

/* Activation checkpointing every `every` blocks (>= 1; 0 turns it off): the
 * forward keeps only the input of each segment of `every` blocks, the blocks
 * of a segment write their activations into one shared set, and the
 * backward submits a segment's forward again (tasks of stage "recompute")
 * just before the backward of its blocks.  Losses and gradients are those
 * of the run without it, bit for bit.  Waits for the model's tasks and
 * registers its activations anew (their contents are lost); LSPO_EINVAL
 * for every < 0. */
int lspo_model_set_checkpointing(struct lspo_model *model, int every);
int lspo_model_checkpointing(const struct lspo_model *model);   /* every, or 0 */

/* One optimizer step over micro_batches micro-batches of the model's (B, T):
 * inputs and targets (micro_batches B, T), micro-batch k in rows k B ..
 * (k + 1) B - 1.  The gradients of the micro-batches add up where they are
 * formed (in lsp mode the compressed G_hat, which is linear in the
 * gradient), then one norm, one offload and one update, as for one batch of
 * micro_batches B rows: equal to it within float summation order.  The
 * loss is the mean over the targets of all micro-batches.  1 micro-batch is
 * lspo_model_train_step; LSPO_EINVAL for fewer. */
int lspo_model_train_step_accum(struct lspo_model *model, const int32_t *inputs, const int32_t *targets,
                                int micro_batches, const struct lspo_optim *opt,
                                struct lspo_step_stats *stats);

/* ------------------------------------------------------------------------ */
/* bf16 on the accelerator (lspo train --dtype bf16)                         */

/* fp32: every tensor float32.  bf16: the weights that the forward and
 * backward read and the activations (and their gradients) are stored as
 * bf16, matrix products take bf16 operands with float32 accumulation, every
 * other op computes in float32 between a bf16 load and a bf16 store
 * (rounded to nearest even); float32 stay: the master weights (updated by
 * the optimizers), gradients, optimizer moments, norm statistics, the
 * attention log-sum-exp, the losses, lsp's A, G_hat and projectors. */
enum lspo_dtype { LSPO_DTYPE_FP32 = 0, LSPO_DTYPE_BF16 };

const char *lspo_dtype_name(enum lspo_dtype dtype);
/* "fp32" or "bf16"; LSPO_EINVAL naming the text otherwise. */
int lspo_dtype_parse(const char *text, enum lspo_dtype *dtype);
/* lspo_model_create with the model's dtype. */
int lspo_model_create_dtype(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, int B, int T,
                            enum lspo_dtype dtype, struct lspo_model **out);
enum lspo_dtype lspo_model_dtype(const struct lspo_model *model);
/* Bytes of the stored tensors the forward and backward read: the working
 * weights and every activation handle (element size times elements). */
void lspo_model_stored_bytes(const struct lspo_model *model, size_t *weights, size_t *activations);

/* ------------------------------------------------------------------------ */
/* Projector checks in the background (issue 12)                            */

/* lsp: a check whose learning runs beside the next `lag` (>= 1) training
 * steps.  It starts as lspo_model_lsp_check (calibration gradients, each
 * pair's error; waits for those tasks) and fills *report with the errors
 * before (every pair still "kept"); the learning tasks of the pairs to
 * refresh are then handed out in lag slices by lspo_model_lsp_learn_advance,
 * to be called before every training step: calls 1 to lag submit a slice
 * (it runs at the lowest priority beside that step's tasks, and the step
 * waits for it), call lag + 1 re-projects the moments, publishes the new
 * pairs, waits, sets *published = 1 and fills *report as
 * lspo_model_lsp_check would.  A check started before step s thus takes
 * effect before step s + lag, whatever the timing.  A new check (either
 * kind) publishes a pending one first; saving the training state while one
 * is pending keeps the pairs in place (the pending learning is lost). */
int lspo_model_lsp_check_start(struct lspo_model *model, const int32_t *inputs, const int32_t *targets,
                               int nbatches, int lag, struct lspo_lsp_check *report);
/* *published = 0 and nothing else when no check is pending (or not lsp). */
int lspo_model_lsp_learn_advance(struct lspo_model *model, int *published, struct lspo_lsp_check *report);

/* ------------------------------------------------------------------------ */
/* bf16 weights without an fp32 master (--bf16-update stochastic)            */

/* How bf16 weights take their updates in native and lsp mode.  master (the
 * default): an fp32 master of every weight on the accelerator takes the
 * update (AdamW, lsp's W += s P Delta Q^T) and is rounded to nearest into
 * the bf16 working copy.  stochastic: no fp32 master on the accelerator
 * (4 bytes per parameter less); the update is computed in float32 from the
 * bf16 weight and rounded back stochastically: up with probability equal
 * to the distance from the bf16 value below over the bf16 spacing, so the
 * expected result is the float32 one and updates far below a weight's bf16
 * spacing still add up over steps.  The random bits are a counter-based
 * hash of (seed, optimizer step, tensor, element index), the same on CPU
 * and CUDA workers: runs are deterministic and policy-independent, and
 * resume exactly.  zero mode keeps its fp32 masters in host memory either
 * way.  Call before lspo_model_set_params; LSPO_EINVAL for a stochastic
 * update of fp32 weights. */
enum lspo_bf16_update { LSPO_BF16_MASTER = 0, LSPO_BF16_STOCHASTIC };

const char *lspo_bf16_update_name(enum lspo_bf16_update u);
/* "master" or "stochastic"; LSPO_EINVAL naming the text otherwise. */
int lspo_bf16_update_parse(const char *text, enum lspo_bf16_update *u);
int lspo_model_set_bf16_update(struct lspo_model *model, enum lspo_bf16_update u, uint64_t seed);
enum lspo_bf16_update lspo_model_bf16_update(const struct lspo_model *model);

#ifdef __cplusplus
}
#endif

#pragma GCC visibility pop
#endif /* LSPO_H */
