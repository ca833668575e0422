/*
 * cmd_train.c - `lspo train` and `lspo eval`: training and evaluation of any model
 * from HF checkpoints and llm.c token shards, one line per step.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cli.h"

struct run_opts {
	const char *model, *data, *val, *save, *log, *mode, *offload_dtype, *lsp_cut, *lsp_delays, *resume, *lsp_targets;
	long steps, batch, seq, val_every, val_batches, check_freq, calib_batches, gpu_mem, warmup;
	double lr, min_lr, wd, clip, beta1, beta2, eps, val_fraction;
	enum lspo_lr_decay lr_decay;
	long seed;
	struct lspo_config ctx;
	struct lspo_offload_opts off;
};

static void run_opts_default(struct run_opts *o)
{
	struct lspo_optim d = lspo_optim_default();
	*o = (struct run_opts){ .mode = "native", .offload_dtype = "fp32", .steps = 10, .batch = 4,
		.seq = 64, .val_every = 0, .val_batches = 8, .check_freq = 100, .calib_batches = 4, .lr = d.lr,
		.wd = d.weight_decay, .clip = d.clip, .beta1 = d.beta1, .beta2 = d.beta2, .eps = d.eps,
		.val_fraction = 0.0, .seed = 1, .ctx = lspo_config_default(),
		.off = lspo_offload_opts_default() };
}

#define STATE_FILE "train_state.safetensors"

static const char train_help[] =
	"usage: lspo train --model DIR --data SHARD [OPTIONS]\n"
	"Trains the GPT-2, Llama or Qwen2 checkpoint in DIR (config.json + model.safetensors) on an llm.c token\n"
	"shard; prints one line per step: step, loss (of that step's forward pass), lr, grad norm,\n"
	"ms, tokens/s.\n"
	"  --model DIR        checkpoint to start from (required)\n"
	"  --data SHARD       training tokens, llm.c shard format (required)\n"
	"  --val SHARD        validation tokens (default: --val-fraction of --data's tail)\n"
	"  --val-fraction F   hold out this tail fraction of --data for validation (default 0)\n"
	"  --val-every N      validate every N steps and at the end (default 0: only at the end)\n"
	"  --val-batches N    batches per validation (default 8)\n"
	"  --steps N          optimizer steps (default 10)\n"
	"  --batch B          sequences per step (default 4)\n"
	"  --seq T            tokens per sequence, <= the model's n_positions (default 64)\n"
	"  --lr LR            AdamW learning rate (default 3e-4)\n"
	"  --warmup N         linear warmup over the first N steps (default 0)\n"
	"  --lr-decay KIND    after warmup: none (default), linear or cosine decay to --min-lr\n"
	"                     at the last step\n"
	"  --min-lr LR        floor of the decay (default 0)\n"
	"  --wd WD            decoupled weight decay on 2-D weights (default 0)\n"
	"  --beta1 B1 --beta2 B2 --eps E   AdamW constants (default 0.9, 0.999, 1e-8)\n"
	"  --clip C           global gradient-norm clip, 0 = none (default 1)\n"
	"  --seed S           batch sampling seed (default 1)\n"
	"  --mode MODE        native (all on the accelerator, default), zero (ZeRO-Offload:\n"
	"                     gradients to the host, AdamW on CPU workers) or lsp (LSP-Offload:\n"
	"                     compressed gradients, subspace Adam on CPU workers)\n"
	"  --offload-dtype T  zero: dtype of the gradients and weights that cross the bus:\n"
	"                     fp32 (default) or bf16 (master weights and AdamW stay fp32)\n"
	"  --gpu-mem MiB      cap the accelerator memory StarPU may use (STARPU_LIMIT_CUDA_MEM)\n"
	"  --lsp-d D          lsp: subspace size d, capped at each matrix's smaller side (default 256)\n"
	"  --lsp-r R          lsp: non-zeros per projector row (default 8)\n"
	"  --lsp-alpha A      lsp: re-learn projectors whose error exceeds A (default 0.3)\n"
	"  --check-freq N     lsp: projector check every N steps, from step 1; 0 = never,\n"
	"                     so projectors stay random (default 100)\n"
	"  --lsp-calib-batches N   lsp: calibration batches per check, gradients summed (default 4)\n"
	"  --lsp-learn-iters N --lsp-learn-lr LR   lsp: projector learning (default 100, 0.1)\n"
	"  --lsp-init KIND    lsp: gaussian (default) or sign projector values\n"
	"  --lsp-shared       lsp: one projector pair per matrix role instead of per matrix\n"
	"  --lsp-eps-inside-sqrt   lsp: subspace Adam in the reference code's form\n"
	"  --lsp-plain-apply  lsp: W += P Delta Q^T as the reference code does, without\n"
	"                     scaling by sqrt(m n) / (|P| |Q|), which keeps the step size of\n"
	"                     learned projectors equal to random ones'\n"
	"  --freeze-dense     lsp: embeddings, norms, biases and untargeted maps stay fixed\n"
	"  --lsp-targets LIST lsp: the linear maps to compress, by role (default: all of a block;\n"
	"                     GPT-2: qkv,attn_out,fc,mlp_out; Llama, Qwen2: q,k,v,o,gate,up,down)\n"
	"  --lsp-cut N|auto   lspo policy: layers below N are served LCFS (default auto)\n"
	"  --lsp-delays LIST  lspo policy: stage delays in layers, e.g. upd=2,upload=3,apply=4\n"
	"  --save DIR         write the trained checkpoint to DIR (atomically), with the\n"
	"                     training state (optimizer, step, projectors) in\n"
	"                     DIR/" STATE_FILE "\n"
	"  --resume DIR       continue a run saved with --save DIR, bit for bit, up to\n"
	"                     --steps in all (instead of --model; same data, seed and\n"
	"                     options; --log appends)\n"
	"  --log FILE         also write the per-step lines as CSV\n";

static const char eval_help[] =
	"usage: lspo eval --model DIR --data SHARD [--batch B] [--seq T] [--batches N] [--seed S]\n"
	"Prints the mean cross-entropy and perplexity of the checkpoint on N batches (default 8).\n";

#define CTX_HELP \
	"  --sched NAME       scheduling policy: lspo (default) or any StarPU policy\n" \
	"  --ncpus N --ncuda N   worker counts (default: STARPU_NCPU / STARPU_NCUDA, else all)\n" \
	"  --trace DIR        record tasks.csv and summary.txt (and, with FxT, a StarPU FxT\n" \
	"                     trace) into DIR\n"

enum { O_MODEL = 256, O_DATA, O_VAL, O_VALFRAC, O_VALEVERY, O_VALBATCHES, O_STEPS, O_BATCH, O_SEQ,
       O_LR, O_WD, O_B1, O_B2, O_EPS, O_CLIP, O_SEED, O_MODE, O_SAVE, O_LOG, O_SCHED, O_NCPUS,
       O_NCUDA, O_TRACE, O_HELP, O_ODTYPE, O_GPUMEM, O_LSPD, O_LSPR, O_LSPALPHA, O_CHECKFREQ,
       O_LEARNITERS, O_LEARNLR, O_LSPINIT, O_LSPSHARED, O_EPSIN, O_PLAIN, O_FREEZE, O_TARGETS, O_LSPCUT, O_LSPDELAYS,
       O_CALIB, O_WARMUP, O_LRDECAY, O_MINLR, O_RESUME };

static const struct option train_options[] = {
	{ "model", 1, 0, O_MODEL }, { "data", 1, 0, O_DATA }, { "val", 1, 0, O_VAL },
	{ "val-fraction", 1, 0, O_VALFRAC }, { "val-every", 1, 0, O_VALEVERY },
	{ "val-batches", 1, 0, O_VALBATCHES }, { "batches", 1, 0, O_VALBATCHES },
	{ "steps", 1, 0, O_STEPS }, { "batch", 1, 0, O_BATCH }, { "seq", 1, 0, O_SEQ },
	{ "lr", 1, 0, O_LR }, { "wd", 1, 0, O_WD }, { "beta1", 1, 0, O_B1 }, { "beta2", 1, 0, O_B2 },
	{ "eps", 1, 0, O_EPS }, { "clip", 1, 0, O_CLIP }, { "seed", 1, 0, O_SEED }, { "mode", 1, 0, O_MODE },
	{ "save", 1, 0, O_SAVE }, { "log", 1, 0, O_LOG }, { "sched", 1, 0, O_SCHED },
	{ "ncpus", 1, 0, O_NCPUS }, { "ncuda", 1, 0, O_NCUDA }, { "trace", 1, 0, O_TRACE },
	{ "help", 0, 0, O_HELP }, { "offload-dtype", 1, 0, O_ODTYPE }, { "gpu-mem", 1, 0, O_GPUMEM },
	{ "lsp-d", 1, 0, O_LSPD }, { "lsp-r", 1, 0, O_LSPR }, { "lsp-alpha", 1, 0, O_LSPALPHA },
	{ "check-freq", 1, 0, O_CHECKFREQ }, { "lsp-learn-iters", 1, 0, O_LEARNITERS },
	{ "lsp-learn-lr", 1, 0, O_LEARNLR }, { "lsp-init", 1, 0, O_LSPINIT }, { "lsp-shared", 0, 0, O_LSPSHARED },
	{ "lsp-eps-inside-sqrt", 0, 0, O_EPSIN }, { "lsp-plain-apply", 0, 0, O_PLAIN },
	{ "freeze-dense", 0, 0, O_FREEZE }, { "lsp-targets", 1, 0, O_TARGETS },
	{ "lsp-cut", 1, 0, O_LSPCUT }, { "lsp-delays", 1, 0, O_LSPDELAYS },
	{ "lsp-calib-batches", 1, 0, O_CALIB }, { "warmup", 1, 0, O_WARMUP }, { "lr-decay", 1, 0, O_LRDECAY },
	{ "min-lr", 1, 0, O_MINLR }, { "resume", 1, 0, O_RESUME }, { 0 } };

/* --lsp-cut and --lsp-delays go to the lspo policy. */
static int sched_options(const char *cmd, const struct run_opts *o)
{
	struct lspo_sched_opts so = lspo_sched_opts_default();
	if (o->lsp_cut && strcmp(o->lsp_cut, "auto") != 0) {
		long cut;
		if (cli_parse_int("--lsp-cut", o->lsp_cut, 0, 1 << 20, &cut))
			return CLI_USAGE;
		so.cut = (int)cut;
	}
	if (o->lsp_delays && lspo_sched_parse_delays(o->lsp_delays, &so))
		return cli_usage_error(cmd, "--lsp-delays: cannot use '%s'", o->lsp_delays);
	if (lspo_sched_set_opts(&so))
		return cli_usage_error(cmd, "invalid lspo policy options");
	return -1;
}

/* Parses the options; returns -1 to go on, else the exit code. */
static int parse(const char *cmd, int argc, char **argv, struct run_opts *o)
{
	int opt;
	long v;
	optind = 1;
	opterr = 0;
	while ((opt = getopt_long(argc, argv, "", train_options, NULL)) != -1) {
		int bad = 0;
		switch (opt) {
		case O_MODEL: o->model = optarg; break;
		case O_RESUME: o->resume = optarg; break;
		case O_DATA: o->data = optarg; break;
		case O_VAL: o->val = optarg; break;
		case O_SAVE: o->save = optarg; break;
		case O_LOG: o->log = optarg; break;
		case O_MODE: o->mode = optarg; break;
		case O_VALFRAC: bad = cli_parse_float("--val-fraction", optarg, 0, 0.9, &o->val_fraction); break;
		case O_VALEVERY: bad = cli_parse_int("--val-every", optarg, 0, 1L << 30, &o->val_every); break;
		case O_VALBATCHES: bad = cli_parse_int("--val-batches", optarg, 1, 1L << 20, &o->val_batches); break;
		case O_STEPS: bad = cli_parse_int("--steps", optarg, 0, 1L << 30, &o->steps); break;
		case O_BATCH: bad = cli_parse_int("--batch", optarg, 1, 1 << 16, &o->batch); break;
		case O_SEQ: bad = cli_parse_int("--seq", optarg, 1, 1 << 20, &o->seq); break;
		case O_LR: bad = cli_parse_float("--lr", optarg, 0, 10, &o->lr); break;
		case O_MINLR: bad = cli_parse_float("--min-lr", optarg, 0, 10, &o->min_lr); break;
		case O_WARMUP: bad = cli_parse_int("--warmup", optarg, 0, 1L << 30, &o->warmup); break;
		case O_LRDECAY:
			if (!strcmp(optarg, "none")) o->lr_decay = LSPO_LR_CONSTANT;
			else if (!strcmp(optarg, "linear")) o->lr_decay = LSPO_LR_LINEAR;
			else if (!strcmp(optarg, "cosine")) o->lr_decay = LSPO_LR_COSINE;
			else return cli_usage_error(cmd, "--lr-decay: expected none, linear or cosine, got '%s'", optarg);
			break;
		case O_WD: bad = cli_parse_float("--wd", optarg, 0, 10, &o->wd); break;
		case O_B1: bad = cli_parse_float("--beta1", optarg, 0, 0.999999, &o->beta1); break;
		case O_B2: bad = cli_parse_float("--beta2", optarg, 0, 0.999999999, &o->beta2); break;
		case O_EPS: bad = cli_parse_float("--eps", optarg, 1e-30, 1, &o->eps); break;
		case O_CLIP: bad = cli_parse_float("--clip", optarg, 0, 1e9, &o->clip); break;
		case O_SEED: bad = cli_parse_int("--seed", optarg, 0, 1L << 62, &o->seed); break;
		case O_SCHED: o->ctx.sched = optarg; break;
		case O_NCPUS: bad = cli_parse_int("--ncpus", optarg, 0, 4096, &v); o->ctx.ncpus = (int)v; break;
		case O_NCUDA: bad = cli_parse_int("--ncuda", optarg, 0, 64, &v); o->ctx.ncuda = (int)v; break;
		case O_TRACE: o->ctx.trace_dir = optarg; break;
		case O_ODTYPE: o->offload_dtype = optarg; break;
		case O_GPUMEM: bad = cli_parse_int("--gpu-mem", optarg, 1, 1L << 30, &o->gpu_mem); break;
		case O_LSPD: bad = cli_parse_int("--lsp-d", optarg, 1, 1 << 16, &v); o->off.lsp_d = (int)v; break;
		case O_LSPR: bad = cli_parse_int("--lsp-r", optarg, 1, 1 << 16, &v); o->off.lsp_r = (int)v; break;
		case O_LSPALPHA: bad = cli_parse_float("--lsp-alpha", optarg, 0, 1e6, &o->off.lsp_alpha); break;
		case O_CHECKFREQ: bad = cli_parse_int("--check-freq", optarg, 0, 1L << 30, &o->check_freq); break;
		case O_CALIB: bad = cli_parse_int("--lsp-calib-batches", optarg, 1, 1024, &o->calib_batches); break;
		case O_LEARNITERS: bad = cli_parse_int("--lsp-learn-iters", optarg, 0, 1 << 20, &v);
			o->off.learn.iters = (int)v; break;
		case O_LEARNLR: { double x; bad = cli_parse_float("--lsp-learn-lr", optarg, 0, 100, &x);
			o->off.learn.lr = (float)x; break; }
		case O_LSPINIT:
			if (!strcmp(optarg, "gaussian")) o->off.lsp_init = LSPO_PROJ_GAUSSIAN;
			else if (!strcmp(optarg, "sign")) o->off.lsp_init = LSPO_PROJ_SIGN;
			else return cli_usage_error(cmd, "--lsp-init: expected gaussian or sign, got '%s'", optarg);
			break;
		case O_LSPSHARED: o->off.lsp_shared = 1; break;
		case O_EPSIN: o->off.lsp_eps_inside_sqrt = 1; break;
		case O_PLAIN: o->off.lsp_plain_apply = 1; break;
		case O_FREEZE: o->off.freeze_dense = 1; break;
		case O_TARGETS: o->lsp_targets = optarg; break;
		case O_LSPCUT: o->lsp_cut = optarg; break;
		case O_LSPDELAYS: o->lsp_delays = optarg; break;
		case O_HELP:
			printf("%s" CTX_HELP, strcmp(cmd, "train") ? eval_help : train_help);
			return CLI_OK;
		default:
			return cli_usage_error(cmd, "unknown option or missing value: '%s'", argv[optind - 1]);
		}
		if (bad)
			return CLI_USAGE;
	}
	if (optind < argc)
		return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
	if (o->resume && o->model)
		return cli_usage_error(cmd, "--resume DIR takes the model from DIR: drop --model");
	if (o->resume)
		o->model = o->resume;
	if (!o->model)
		return cli_usage_error(cmd, "--model DIR is required");
	if (!o->data)
		return cli_usage_error(cmd, "--data SHARD is required");
	if (o->lr_decay != LSPO_LR_CONSTANT && o->min_lr > o->lr)
		return cli_usage_error(cmd, "--min-lr %g is above --lr %g", o->min_lr, o->lr);
	if (lspo_mode_parse(o->mode, &o->off.mode))
		return cli_usage_error(cmd, "--mode: expected native, zero or lsp, got '%s'", o->mode);
	if (!strcmp(o->offload_dtype, "bf16"))
		o->off.offload_bf16 = 1;
	else if (strcmp(o->offload_dtype, "fp32") != 0)
		return cli_usage_error(cmd, "--offload-dtype: expected fp32 or bf16, got '%s'", o->offload_dtype);
	if (o->off.offload_bf16 && o->off.mode != LSPO_MODE_ZERO)
		return cli_usage_error(cmd, "--offload-dtype bf16 applies to --mode zero only");
	if (o->off.lsp_r > o->off.lsp_d)
		return cli_usage_error(cmd, "--lsp-r (%d) must not exceed --lsp-d (%d)", o->off.lsp_r, o->off.lsp_d);
	o->off.seed = (uint64_t)o->seed;
	o->ctx.cuda_mem_mib = o->gpu_mem;
	return sched_options(cmd, o);
}

/* Everything a run holds; freed by run_free whatever the state. */
struct run {
	struct lspo_ctx *ctx;
	struct lspo_model *model;
	struct lspo_model_config cfg;
	struct lspo_shard *train, *val;
	struct lspo_loader *train_loader;
	int32_t *inputs, *targets;
	float *params;
	FILE *log;
};

static void run_free(struct run *r)
{
	if (r->log)
		fclose(r->log);
	lspo_loader_free(r->train_loader);
	lspo_model_free(r->model);
	lspo_shard_close(r->train);
	lspo_shard_close(r->val);
	lspo_ctx_destroy(r->ctx);
	free(r->inputs);
	free(r->targets);
	free(r->params);
}

/* Loads the checkpoint and the data and checks they agree; CLI_* on error. */
static int run_open(struct run *r, const struct run_opts *o)
{
	if (lspo_ckpt_read_config(o->model, &r->cfg))
		return CLI_FAIL;
	if (o->seq > r->cfg.n_positions) {
		fprintf(stderr, "lspo: --seq %ld is larger than the model's context: %s/config.json "
		        "n_positions = %d\n", o->seq, o->model, r->cfg.n_positions);
		return CLI_USAGE;
	}
	if (lspo_shard_open(o->data, &r->train) || lspo_shard_check_vocab(r->train, r->cfg.vocab_size))
		return CLI_FAIL;
	if (o->val && (lspo_shard_open(o->val, &r->val) || lspo_shard_check_vocab(r->val, r->cfg.vocab_size)))
		return CLI_FAIL;
	size_t bt = (size_t)o->batch * o->seq;
	r->inputs = malloc(bt * sizeof(int32_t));
	r->targets = malloc(bt * sizeof(int32_t));
	r->params = malloc(lspo_model_nparams(&r->cfg) * sizeof(float));
	if (!r->inputs || !r->targets || !r->params) {
		fprintf(stderr, "lspo: out of memory\n");
		return CLI_FAIL;
	}
	if (lspo_ckpt_load_params(o->model, &r->cfg, r->params))
		return CLI_FAIL;
	struct lspo_offload_opts off = o->off;
	if (o->lsp_targets && lspo_lsp_targets_parse(r->cfg.family, o->lsp_targets, &off.lsp_targets))
		return CLI_USAGE;
	int rc = lspo_ctx_create(&o->ctx, &r->ctx);
	if (rc) {
		fprintf(stderr, "lspo: cannot start StarPU: %s\n", lspo_strerror(rc));
		return rc == LSPO_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	if (lspo_model_create(r->ctx, &r->cfg, (int)o->batch, (int)o->seq, &r->model)
	    || lspo_model_set_params(r->model, r->params) || lspo_model_set_mode(r->model, &off))
		return CLI_FAIL;
	return CLI_OK;
}

/* The next batch of a loader; targets that the shard's mask leaves out of
 * the loss (prompt tokens of instruction data) become -1, which the model
 * ignores.  *counted (may be NULL): the targets that count. */
static int next_batch(struct lspo_loader *ld, size_t bt, int32_t *inputs, int32_t *targets, long *counted)
{
	uint8_t *mask = malloc(bt);
	int rc = !mask || lspo_loader_next_masked(ld, inputs, targets, mask);
	long n = 0;
	for (size_t i = 0; !rc && i < bt; i++) {
		targets[i] = mask[i] ? targets[i] : -1;
		n += mask[i] != 0;
	}
	free(mask);
	if (counted)
		*counted = n;
	return rc;
}

/* Mean loss over nbatches batches of [begin, end) of a shard. */
static int evaluate(struct run *r, const struct run_opts *o, const struct lspo_shard *s, size_t begin,
                    size_t end, double *loss)
{
	struct lspo_loader *ld;
	if (lspo_loader_create(s, (int)o->batch, (int)o->seq, (uint64_t)o->seed + 7777, begin, end, &ld))
		return CLI_FAIL;
	double sum = 0;
	long total = 0;
	int rc = CLI_OK;
	size_t bt = (size_t)o->batch * o->seq;
	for (long b = 0; b < o->val_batches && rc == CLI_OK; b++) {
		double l = 0;
		long n = 0;
		if (next_batch(ld, bt, r->inputs, r->targets, &n) || lspo_model_forward(r->model, r->inputs, r->targets, &l))
			rc = CLI_FAIL;
		sum += l * (double)n;   /* weighted by the targets that count (all, without a mask) */
		total += n;
	}
	lspo_loader_free(ld);
	*loss = total ? sum / (double)total : 0.0;
	return rc;
}

static int validate(struct run *r, const struct run_opts *o, size_t train_end, long step)
{
	double loss;
	int rc = r->val ? evaluate(r, o, r->val, 0, lspo_shard_ntokens(r->val), &loss)
	                : evaluate(r, o, r->train, train_end, lspo_shard_ntokens(r->train), &loss);
	if (rc == CLI_OK)
		printf("val step %ld: loss %.4f, perplexity %.2f\n", step, loss, exp(loss));
	return rc;
}

/* lsp: the projector check on a held-out calibration batch (the validation
 * data, else a batch drawn from the training data with another seed). */
static int lsp_check(struct run *r, const struct run_opts *o, size_t train_end, long step)
{
	struct lspo_loader *ld = NULL;
	const struct lspo_shard *s = r->val ? r->val : r->train;
	size_t begin = r->val ? 0 : (train_end < lspo_shard_ntokens(r->train) ? train_end : 0);
	size_t end = r->val ? lspo_shard_ntokens(r->val) : lspo_shard_ntokens(r->train);
	size_t bt = (size_t)o->batch * o->seq, nb = (size_t)o->calib_batches;
	int32_t *in = malloc(nb * bt * sizeof(int32_t)), *tg = malloc(nb * bt * sizeof(int32_t));
	int rc = !in || !tg || lspo_loader_create(s, (int)o->batch, (int)o->seq,
	                                          (uint64_t)o->seed + 1000 + (uint64_t)step, begin, end, &ld);
	for (size_t b = 0; !rc && b < nb; b++)
		rc = next_batch(ld, bt, in + b * bt, tg + b * bt, NULL);
	struct lspo_lsp_check rep;
	if (!rc)
		rc = lspo_model_lsp_check(r->model, in, tg, (int)nb, &rep);
	lspo_loader_free(ld);
	free(in);
	free(tg);
	if (rc) {
		fprintf(stderr, "lspo: the projector check before step %ld failed\n", step);
		return CLI_FAIL;
	}
	printf("lsp check before step %ld: projector error %.3f on %d matrices (%zu calibration batches), "
	       "%d pair(s) re-learned, error now %.3f\n", step, rep.err_before, rep.nmatrices, nb,
	       rep.refreshed, rep.err_after);
	return CLI_OK;
}

/* --resume: the training state saved beside the checkpoint, and the
 * training batches the saved run had drawn. */
static int resume(struct run *r, const struct run_opts *o, long *start)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", o->resume, STATE_FILE);
	if (lspo_model_load_state(r->model, path))
		return CLI_FAIL;
	*start = lspo_model_step(r->model);
	for (long s = 0; s < *start; s++)
		if (next_batch(r->train_loader, (size_t)o->batch * o->seq, r->inputs, r->targets, NULL))
			return CLI_FAIL;
	printf("resumed from %s at step %ld\n", o->resume, *start);
	return CLI_OK;
}

int cmd_train(int argc, char **argv)
{
	struct run_opts o;
	run_opts_default(&o);
	int rc = parse("train", argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct run r = { 0 };
	if ((rc = run_open(&r, &o)))
		goto out;
	size_t train_end = lspo_shard_ntokens(r.train);
	int has_val = o.val || o.val_fraction > 0;
	if (!o.val && o.val_fraction > 0)
		lspo_shard_split(r.train, o.val_fraction, &train_end);
	rc = CLI_FAIL;
	if (lspo_loader_create(r.train, (int)o.batch, (int)o.seq, (uint64_t)o.seed, 0, train_end, &r.train_loader))
		goto out;
	long start = 0;
	if (o.resume && resume(&r, &o, &start))
		goto out;
	if (o.log && !(r.log = fopen(o.log, start ? "a" : "w"))) {
		fprintf(stderr, "lspo: --log %s: cannot open for writing\n", o.log);
		goto out;
	}
	if (r.log && ftell(r.log) == 0)
		fprintf(r.log, "step,loss,lr,grad_norm,ms,tokens_per_s,bytes_d2h,bytes_h2d\n");
	printf("lspo train: %s, %s, %d layers, %d heads, n_embd %d, vocab %d; B %ld, T %ld, %ld steps, "
	       "mode %s, policy %s, %d CPU + %d CUDA workers\n", o.model, lspo_family_name(r.cfg.family),
	       r.cfg.n_layer, r.cfg.n_head,
	       r.cfg.n_embd, r.cfg.vocab_size, o.batch, o.seq, o.steps, o.mode, lspo_ctx_sched(r.ctx),
	       lspo_ctx_ncpus(r.ctx), lspo_ctx_ncuda(r.ctx));
	if (lspo_ctx_simulated(r.ctx))
		printf("simulated run (StarPU SimGrid): kernels do not run, losses are not computed, "
		       "times are estimates\n");
	struct lspo_optim opt = { .lr = (float)o.lr, .beta1 = (float)o.beta1, .beta2 = (float)o.beta2,
	                          .eps = (float)o.eps, .weight_decay = (float)o.wd, .clip = (float)o.clip };
	struct lspo_lr_schedule sched = { .lr = o.lr, .min_lr = o.min_lr, .warmup = o.warmup,
	                                  .total = o.steps, .decay = o.lr_decay };
	double vd2h, vh2d;
	lspo_model_offload_volume(r.model, &vd2h, &vh2d);
	printf("offload volume per step (from the graph): device->host %.3f MB (%.0f B), "
	       "host->device %.3f MB (%.0f B)\n", vd2h / 1e6, vd2h, vh2d / 1e6, vh2d);
	for (long s = start + 1; s <= o.steps; s++) {
		struct lspo_step_stats st;
		if (o.off.mode == LSPO_MODE_LSP && o.check_freq > 0 && (s - 1) % o.check_freq == 0
		    && lsp_check(&r, &o, train_end, s))
			goto out;
		opt.lr = (float)lspo_lr_at(&sched, s);
		if (next_batch(r.train_loader, (size_t)o.batch * o.seq, r.inputs, r.targets, NULL)
		    || lspo_model_train_step(r.model, r.inputs, r.targets, &opt, &st))
			goto out;
		double tps = (double)o.batch * o.seq / st.seconds;
		printf("step %5d | loss %.6f | lr %.3e | norm %.4f | %8.1f ms | %9.0f tok/s | d2h %.2f MB h2d %.2f MB\n",
		       st.step, st.loss, opt.lr, st.grad_norm, st.seconds * 1e3, tps, st.bytes_d2h / 1e6,
		       st.bytes_h2d / 1e6);
		fflush(stdout);
		if (r.log)
			fprintf(r.log, "%d,%.6f,%.6e,%.6f,%.3f,%.1f,%.0f,%.0f\n", st.step, st.loss, opt.lr,
			        st.grad_norm, st.seconds * 1e3, tps, st.bytes_d2h, st.bytes_h2d);
		if (has_val && o.val_every > 0 && s % o.val_every == 0 && s < o.steps && validate(&r, &o, train_end, s))
			goto out;
	}
	if (has_val && validate(&r, &o, train_end, o.steps))
		goto out;
	if (o.save) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", o.save, STATE_FILE);
		if (lspo_model_get_params(r.model, r.params) || lspo_ckpt_save(o.save, &r.cfg, r.params)
		    || lspo_model_save_state(r.model, path))
			goto out;
		printf("saved %s\n", o.save);
	}
	rc = CLI_OK;
out:
	run_free(&r);
	return rc;
}

int cmd_eval(int argc, char **argv)
{
	struct run_opts o;
	run_opts_default(&o);
	int rc = parse("eval", argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct run r = { 0 };
	double loss;
	if (!(rc = run_open(&r, &o)) && !(rc = evaluate(&r, &o, r.train, 0, lspo_shard_ntokens(r.train), &loss)))
		printf("eval: %s on %s: loss %.4f, perplexity %.2f (%ld batches of %ld x %ld)\n",
		       o.model, o.data, loss, exp(loss), o.val_batches, o.batch, o.seq);
	run_free(&r);
	return rc;
}
