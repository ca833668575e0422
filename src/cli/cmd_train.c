/*
 * cmd_train.c - `lspo train` and `lspo eval`: training and evaluation of any model
 * from HF checkpoints and llm.c token shards, one line per step.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "cli.h"

struct run_opts {
	const char *model, *data, *val, *save, *log, *mode, *offload_dtype, *lsp_cut, *lsp_delays, *resume, *lsp_targets;
	long steps, batch, seq, val_every, val_batches, check_freq, calib_batches, gpu_mem, warmup;
	double lr, min_lr, wd, clip, beta1, beta2, eps, val_fraction;
	enum lspo_lr_decay lr_decay;
	long seed;
	long save_every, keep, max_bad_steps;
	long grad_accum, ckpt_every;   /* micro-batches per step; checkpointing every N blocks (0: off) */
	double save_every_min, rank_timeout;
	int resume_override, resume_auto;
	int lsp_learn_async;      /* --lsp-learn async (issue 12) */
	long lsp_learn_lag;       /* --lsp-learn-lag: steps from a check to its effect; 0: half of
	                             --check-freq (at least 1) */
	struct lspo_config ctx;
	struct lspo_offload_opts off;
	const char *dtype;           /* --dtype */
	enum lspo_dtype dt;
	const char *bf16_update;     /* --bf16-update */
	enum lspo_bf16_update bu;
	int random_init;             /* --random-init */
};

static void run_opts_default(struct run_opts *o)
{
	struct lspo_optim d = lspo_optim_default();
	*o = (struct run_opts){ .mode = "native", .offload_dtype = "fp32", .steps = 10, .batch = 4,
		.seq = 64, .val_every = 0, .val_batches = 8, .check_freq = 100, .calib_batches = 4, .lr = d.lr,
		.wd = d.weight_decay, .clip = d.clip, .beta1 = d.beta1, .beta2 = d.beta2, .eps = d.eps,
		.val_fraction = 0.0, .seed = 1, .keep = 2, .max_bad_steps = 3, .grad_accum = 1, .ctx = lspo_config_default(),
		.off = lspo_offload_opts_default(), .dtype = "fp32", .rank_timeout = 1800,
		.bf16_update = "master" };
}

#define STATE_FILE "train_state.safetensors"

static const char train_help[] =
	"usage: lspo train --model DIR --data SHARD [OPTIONS]\n"
	"Trains the GPT-2, Llama or Qwen2 checkpoint in DIR (config.json + model.safetensors) on an llm.c token\n"
	"shard; prints one line per step: step, loss (of that step's forward pass), lr, grad norm,\n"
	"ms, tokens/s.\n"
	"  --model DIR        checkpoint to start from (required)\n"
	"  --random-init      start from random weights (seeded by --seed) instead of DIR's:\n"
	"                     DIR needs only config.json.  In a simulated build (SimGrid) the\n"
	"                     weights are not even initialised (kernels compute nothing), so a\n"
	"                     large model's host memory is reserved but never committed\n"
	"  --data SHARD       training tokens, llm.c shard format (required)\n"
	"  --val SHARD        validation tokens (default: --val-fraction of --data's tail)\n"
	"  --val-fraction F   hold out this tail fraction of --data for validation (default 0)\n"
	"  --val-every N      validate every N steps and at the end (default 0: only at the end)\n"
	"  --val-batches N    batches per validation (default 8)\n"
	"  --steps N          optimizer steps (default 10)\n"
	"  --batch B          sequences per step, or per micro-batch with --grad-accum (default 4)\n"
	"  --grad-accum K     K micro-batches of B per optimizer step, gradients summed: one\n"
	"                     offload and one update per step, as a batch of K B (default 1)\n"
	"  --checkpoint-activations [K]   keep only the inputs of segments of K blocks\n"
	"                     (default 1: each block's input) and recompute the rest in the\n"
	"                     backward: less accelerator memory, the same losses, about one\n"
	"                     forward more per step\n"
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
	"  --dtype T          fp32 (default) or bf16: weights and activations stored as bf16\n"
	"                     on the accelerator; masters, gradients, optimizer stay float32\n"
	"  --bf16-update U    with --dtype bf16, native and lsp: master (default: an fp32\n"
	"                     master of every weight on the accelerator takes the updates) or\n"
	"                     stochastic (no fp32 master there: updates rounded into the bf16\n"
	"                     weights stochastically, seeded by --seed; 4 bytes per parameter less)\n"
	"  --gpu-mem MiB      cap the accelerator memory StarPU may use (STARPU_LIMIT_CUDA_MEM)\n"
	"  --lsp-d D          lsp: subspace size d, capped at each matrix's smaller side (default 256)\n"
	"  --lsp-r R          lsp: non-zeros per projector row (default 8)\n"
	"  --lsp-alpha A      lsp: re-learn projectors whose error exceeds A (default 0.3)\n"
	"  --check-freq N     lsp: projector check every N steps, from step 1; 0 = never,\n"
	"                     so projectors stay random (default 100)\n"
	"  --lsp-calib-batches N   lsp: calibration batches per check, gradients summed (default 4)\n"
	"  --lsp-learn-iters N --lsp-learn-lr LR   lsp: projector learning (default 100, 0.1)\n"
	"  --lsp-learn MODE   lsp: sync (default): a check learns its projectors before the\n"
	"                     next step; async: training goes on with the current projectors\n"
	"                     while workers learn new ones beside the next K steps' tasks;\n"
	"                     they take effect (moments re-projected) before step s + K for\n"
	"                     the check before step s (LOG.checks.csv: effective_step)\n"
	"  --lsp-learn-lag K  lsp, async: that K (default: half of --check-freq, at least 1)\n"
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
	"  --save DIR         save checkpoints into DIR: DIR/step-N/ (model, " STATE_FILE ",\n"
	"                     train_config.json, manifest.json with checksums), published\n"
	"                     atomically as DIR/latest; DIR reads as a checkpoint itself\n"
	"  --save-every N     also save every N steps (default 0: only at the end)\n"
	"  --save-every-min M also save when M minutes passed since the last save\n"
	"  --keep K           complete checkpoints kept in DIR (default 2)\n"
	"  --resume DIR|auto  continue a saved run, bit for bit, up to --steps in all\n"
	"                     (instead of --model; --log keeps the rows up to the\n"
	"                     checkpoint); auto: from --save DIR's latest checkpoint when\n"
	"                     there is one, else start from --model.  The data, batch,\n"
	"                     sequence, seed, mode and schedule must match the checkpoint\n"
	"  --resume-override  allow another learning-rate schedule or optimizer constant\n"
	"                     (--lr --min-lr --warmup --lr-decay --steps --wd --clip\n"
	"                     --beta1 --beta2 --eps) than the checkpoint's\n"
	"  --max-bad-steps N  a step with a non-finite loss or gradient norm changes\n"
	"                     nothing; stop after N such steps in a row (default 3)\n"
	"  --log FILE         also write the per-step lines as CSV (flushed every step);\n"
	"                     lsp: each check's per-pair figures go to FILE.checks.csv\n"
	"  --rank-timeout S   under mpirun/srun: a rank without progress (a step, check or\n"
	"                     save) for S seconds stops every rank (default 1800; 0 = never)\n"
	"  --config FILE      options from a JSON object {\"batch\": 8, \"lr\": 1e-4, ...};\n"
	"                     the command line overrides them\n"
	"SIGTERM, SIGINT, SIGUSR1 or SIGUSR2 end the run after the current step with a\n"
	"checkpoint (with --save) and exit status 75; a second signal stops at once.\n";

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
       O_CALIB, O_WARMUP, O_LRDECAY, O_MINLR, O_RESUME, O_SAVEEVERY, O_SAVEMIN, O_KEEP, O_OVERRIDE,
       O_MAXBAD, O_GRADACCUM, O_CKPTACT, O_DTYPE, O_LSPLEARN, O_LSPLAG, O_RANKTIMEOUT,
       O_BF16UPD, O_RANDINIT };

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
	{ "min-lr", 1, 0, O_MINLR }, { "resume", 1, 0, O_RESUME }, { "save-every", 1, 0, O_SAVEEVERY },
	{ "save-every-min", 1, 0, O_SAVEMIN }, { "keep", 1, 0, O_KEEP }, { "resume-override", 0, 0, O_OVERRIDE },
	{ "max-bad-steps", 1, 0, O_MAXBAD }, { "grad-accum", 1, 0, O_GRADACCUM },
	{ "checkpoint-activations", 2, 0, O_CKPTACT }, { "dtype", 1, 0, O_DTYPE }, { "lsp-learn", 1, 0, O_LSPLEARN },
	{ "bf16-update", 1, 0, O_BF16UPD }, { "random-init", 0, 0, O_RANDINIT },
	{ "lsp-learn-lag", 1, 0, O_LSPLAG }, { "rank-timeout", 1, 0, O_RANKTIMEOUT }, { 0 } };

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

/* A word of digits only: the optional value of --checkpoint-activations. */
static int is_count(const char *s)
{
	return s[0] && strspn(s, "0123456789") == strlen(s);
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
		case O_DTYPE: o->dtype = optarg; break;
		case O_BF16UPD: o->bf16_update = optarg; break;
		case O_RANDINIT: o->random_init = 1; break;
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
		case O_LSPLEARN:
			if (!strcmp(optarg, "sync")) o->lsp_learn_async = 0;
			else if (!strcmp(optarg, "async")) o->lsp_learn_async = 1;
			else return cli_usage_error(cmd, "--lsp-learn: expected sync or async, got '%s'", optarg);
			break;
		case O_LSPLAG: bad = cli_parse_int("--lsp-learn-lag", optarg, 1, 1 << 20, &o->lsp_learn_lag); break;
		case O_EPSIN: o->off.lsp_eps_inside_sqrt = 1; break;
		case O_PLAIN: o->off.lsp_plain_apply = 1; break;
		case O_FREEZE: o->off.freeze_dense = 1; break;
		case O_TARGETS: o->lsp_targets = optarg; break;
		case O_LSPCUT: o->lsp_cut = optarg; break;
		case O_LSPDELAYS: o->lsp_delays = optarg; break;
		case O_SAVEEVERY: bad = cli_parse_int("--save-every", optarg, 0, 1L << 30, &o->save_every); break;
		case O_SAVEMIN: bad = cli_parse_float("--save-every-min", optarg, 0, 1e6, &o->save_every_min); break;
		case O_KEEP: bad = cli_parse_int("--keep", optarg, 1, 1 << 20, &o->keep); break;
		case O_OVERRIDE: o->resume_override = 1; break;
		case O_MAXBAD: bad = cli_parse_int("--max-bad-steps", optarg, 0, 1L << 30, &o->max_bad_steps); break;
		case O_GRADACCUM: bad = cli_parse_int("--grad-accum", optarg, 1, 1 << 16, &o->grad_accum); break;
		case O_CKPTACT: {   /* optional K: --checkpoint-activations=K or --checkpoint-activations K */
			const char *k = optarg;
			if (!k && optind < argc && is_count(argv[optind]))
				k = argv[optind++];
			o->ckpt_every = 1;
			if (k)
				bad = cli_parse_int("--checkpoint-activations", k, 1, 1 << 20, &o->ckpt_every);
			break;
		}
		case O_RANKTIMEOUT: bad = cli_parse_float("--rank-timeout", optarg, 0, 1e9, &o->rank_timeout); break;
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
	if (o->resume && !strcmp(o->resume, "auto")) {
		if (!o->save)
			return cli_usage_error(cmd, "--resume auto continues from --save DIR: give --save");
		o->resume_auto = 1;
		o->resume = NULL;
	}
	if (o->resume && o->model)
		return cli_usage_error(cmd, "--resume DIR takes the model from DIR: drop --model");
	if (o->resume)
		o->model = o->resume;
	if ((o->save_every || o->save_every_min > 0) && !o->save)
		return cli_usage_error(cmd, "--save-every and --save-every-min need --save DIR");
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
	if (lspo_dtype_parse(o->dtype, &o->dt))
		return cli_usage_error(cmd, "--dtype: expected fp32 or bf16, got '%s'", o->dtype);
	if (o->off.offload_bf16 && o->off.mode != LSPO_MODE_ZERO)
		return cli_usage_error(cmd, "--offload-dtype bf16 applies to --mode zero only");
	if (lspo_bf16_update_parse(o->bf16_update, &o->bu))
		return cli_usage_error(cmd, "--bf16-update: expected master or stochastic, got '%s'", o->bf16_update);
	if (o->bu == LSPO_BF16_STOCHASTIC && o->dt != LSPO_DTYPE_BF16)
		return cli_usage_error(cmd, "--bf16-update stochastic needs --dtype bf16");
	if (o->bu == LSPO_BF16_STOCHASTIC && o->off.mode == LSPO_MODE_ZERO)
		return cli_usage_error(cmd, "--bf16-update stochastic applies to --mode native and lsp (zero updates "
		                       "fp32 masters in host memory)");
	if (o->grad_accum * o->batch > 1 << 20)
		return cli_usage_error(cmd, "--grad-accum %ld x --batch %ld: more than %d sequences per step",
		                       o->grad_accum, o->batch, 1 << 20);
	if (o->off.lsp_r > o->off.lsp_d)
		return cli_usage_error(cmd, "--lsp-r (%d) must not exceed --lsp-d (%d)", o->off.lsp_r, o->off.lsp_d);
	if (o->lsp_learn_lag == 0)   /* issue 12: a fixed lag, so losses stay deterministic */
		o->lsp_learn_lag = o->check_freq / 2 > 1 ? o->check_freq / 2 : 1;
	if (o->lsp_learn_async && o->check_freq > 0 && o->lsp_learn_lag > o->check_freq)
		return cli_usage_error(cmd, "--lsp-learn-lag %ld exceeds --check-freq %ld: a check would start "
		                       "before the last one took effect", o->lsp_learn_lag, o->check_freq);
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
	size_t params_bytes;
	int params_mapped;           /* params_alloc reserved it with mmap */
	FILE *log;
	char *model_dir;          /* the checkpoint read: --model or --resume, resolved */
	int resuming;             /* model_dir is a saved run to continue */
	struct lspo_ckpt_dir *ckpt;
	long saved_step;          /* of the last checkpoint written or read, else -1 */
	char *run_json;           /* the manifest's "run": what must match on resume */
	char *config_json;        /* the effective options, saved as train_config.json */
	long check_step;          /* lsp, async: the step of the check learning in the background */
	struct lspo_dp *dp;       /* under mpirun/srun: the ranks (NULL: one process) */
	int32_t *ginputs, *gtargets;   /* data parallel: the global batch */
	char *rank_trace;         /* data parallel: rank k > 0 traces into TRACE/rank-k */
	struct dp_watch *watch;   /* data parallel: --rank-timeout */
};

/* The run's fp32 copy of the parameters.  Simulated from config.json alone,
 * nothing reads it: reserved without swap accounting like the engine's slabs
 * (host_slab.c), so models larger than this machine's memory (a Llama 7B's
 * 27 GB) can be simulated; otherwise zeroed pages, untouched until loaded. */
static int params_alloc(struct run *r, int untouched)
{
	r->params_bytes = lspo_model_nparams(&r->cfg) * sizeof(float);
	r->params_mapped = untouched;
	if (untouched) {
		void *m = mmap(NULL, r->params_bytes, PROT_READ | PROT_WRITE,
		               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		r->params = m == MAP_FAILED ? NULL : m;
	} else {
		r->params = calloc(1, r->params_bytes);
	}
	if (!r->params)
		fprintf(stderr, "lspo: out of memory for %zu parameters\n", lspo_model_nparams(&r->cfg));
	return !r->params;
}

static void params_free(struct run *r)
{
	if (r->params && r->params_mapped)
		munmap(r->params, r->params_bytes);
	else
		free(r->params);
	r->params = NULL;
}

static void run_free(struct run *r)
{
	if (r->log)
		fclose(r->log);
	lspo_loader_free(r->train_loader);
	lspo_model_free(r->model);
	lspo_shard_close(r->train);
	lspo_shard_close(r->val);
	dp_watch_stop(r->watch);
	lspo_dp_stop(r->dp);
	lspo_ctx_destroy(r->ctx);
	lspo_dp_free(r->dp);
	free(r->ginputs);
	free(r->gtargets);
	free(r->rank_trace);
	lspo_ckptdir_close(r->ckpt);
	free(r->inputs);
	free(r->targets);
	params_free(r);
	free(r->model_dir);
	free(r->run_json);
	free(r->config_json);
}

static char *path_in(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* --model / --resume / --resume auto -> r->model_dir (a step directory when
 * given a save directory). */
static int resolve_model(struct run *r, const struct run_opts *o)
{
	long step;
	char *dir = NULL;
	if (o->resume_auto) {
		if (lspo_ckpt_resolve(o->save, &dir, &step))
			return CLI_FAIL;
		if (dir) {
			r->resuming = 1;
		} else if (!o->model) {
			fprintf(stderr, "lspo train: --resume auto: %s holds no checkpoint yet and no --model "
			        "DIR says where to start\n", o->save);
			return CLI_USAGE;
		}
	} else if (o->resume) {
		if (lspo_ckpt_resolve(o->resume, &dir, &step))
			return CLI_FAIL;
		if (!dir) {
			fprintf(stderr, "lspo train: --resume %s: no checkpoint there (no latest, manifest.json "
			        "or config.json)\n", o->resume);
			return CLI_FAIL;
		}
		r->resuming = 1;
	}
	if (!dir && o->model) {
		if (lspo_ckpt_resolve(o->model, &dir, &step))
			return CLI_FAIL;
		if (!dir && !(dir = strdup(o->model)))
			return CLI_FAIL;
	}
	r->model_dir = dir;
	return CLI_OK;
}

/* Every input a regular file, every output writable and none of them an
 * input: checked before anything is loaded. */
static int check_paths(struct run *r, const struct run_opts *o)
{
	char *cfg = path_in(r->model_dir, "config.json"), *st = path_in(r->model_dir, "model.safetensors");
	char *state = path_in(r->model_dir, STATE_FILE);
	const char *inputs[] = { o->data, o->val, cfg, st, state, r->model_dir };
	int rc = !cfg || !st || !state ? CLI_FAIL : CLI_OK;
	if (!rc)
		rc = job_check_input("--data", o->data);
	if (!rc && o->val)
		rc = job_check_input("--val", o->val);
	if (!rc && access(r->model_dir, F_OK) == 0) {
		rc = job_check_input(r->resuming ? "--resume" : "--model", cfg);
		if (!rc && r->resuming)
			rc = job_check_input("--resume", state);
	}
	if (!rc && o->log)
		rc = job_check_output_file("--log", o->log, inputs, 5);
	if (!rc && o->save)
		rc = job_check_output_dir("--save", o->save, inputs + 5, 1);
	if (!rc && o->ctx.trace_dir)
		rc = job_check_output_dir("--trace", o->ctx.trace_dir, inputs + 5, 1);
	if (!rc && o->log && o->save && !strcmp(o->log, o->save))
		rc = cli_usage_error("train", "--log and --save name the same path %s", o->log);
	free(cfg);
	free(st);
	free(state);
	return rc;
}

/* Loads the checkpoint and the data and checks they agree; CLI_* on error. */
static int run_open(struct run *r, const struct run_opts *o, const char *cmd)
{
	if (lspo_ckpt_read_config(r->model_dir, &r->cfg))
		return CLI_FAIL;
	/* simulated: the engine's slabs are reserved, never committed (host_slab.c) */
	int sim_untouched = lspo_ctx_simulated(NULL) && o->random_init && !r->resuming;
	int rc = job_check_model_size(cmd, &r->cfg, sim_untouched ? 0 : strcmp(cmd, "train") ? 2 : 5);
	if (rc)
		return rc;
	if (o->seq > r->cfg.n_positions) {
		fprintf(stderr, "lspo: --seq %ld is larger than the model's context: %s/config.json "
		        "n_positions = %d\n", o->seq, r->model_dir, r->cfg.n_positions);
		return CLI_USAGE;
	}
	if (lspo_shard_open(o->data, &r->train) || lspo_shard_check_vocab(r->train, r->cfg.vocab_size))
		return CLI_FAIL;
	if (o->val && (lspo_shard_open(o->val, &r->val) || lspo_shard_check_vocab(r->val, r->cfg.vocab_size)))
		return CLI_FAIL;
	size_t bt = (size_t)o->grad_accum * o->batch * o->seq;   /* a step's micro-batches */
	r->inputs = malloc(bt * sizeof(int32_t));
	r->targets = malloc(bt * sizeof(int32_t));
	if (params_alloc(r, sim_untouched))
		return CLI_FAIL;
	if (!r->inputs || !r->targets) {
		fprintf(stderr, "lspo: out of memory for %zu parameters and a batch of %ld x %ld tokens\n",
		        lspo_model_nparams(&r->cfg), o->batch, o->seq);
		return CLI_FAIL;
	}
	if (job_check_finite_dir(r->model_dir))
		return CLI_FAIL;
	if (o->random_init && !r->resuming) {
		if (!sim_untouched && lspo_model_init_params(&r->cfg, (uint64_t)o->seed, r->params))
			return CLI_FAIL;
	} else if (lspo_ckpt_load_params(r->model_dir, &r->cfg, r->params)) {
		return CLI_FAIL;
	}
	struct lspo_offload_opts off = o->off;
	if (o->lsp_targets && lspo_lsp_targets_parse(r->cfg.family, o->lsp_targets, &off.lsp_targets))
		return CLI_USAGE;
	job_signals_block(1);   /* StarPU's threads start with these signals blocked */
	rc = lspo_ctx_create(&o->ctx, &r->ctx);
	job_signals_block(0);   /* a signal that came meanwhile is delivered now */
	if (rc) {
		fprintf(stderr, "lspo: cannot start StarPU: %s\n", lspo_strerror(rc));
		return rc == LSPO_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	job_signals_install();   /* again: StarPU may have taken SIGINT */
	if (r->dp && lspo_dp_start(r->dp))
		return CLI_FAIL;
	if (lspo_model_create_dtype(r->ctx, &r->cfg, (int)o->batch, (int)o->seq, o->dt, &r->model)
	    || (o->bu != LSPO_BF16_MASTER && lspo_model_set_bf16_update(r->model, o->bu, (uint64_t)o->seed))
	    || lspo_model_set_params(r->model, r->params) || lspo_model_set_mode(r->model, &off)
	    || (o->ckpt_every && lspo_model_set_checkpointing(r->model, (int)o->ckpt_every))
	    || lspo_model_set_dp(r->model, r->dp))
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

/* Ranks (1 without data parallelism). */
static int nranks(const struct run *r) { return lspo_dp_size(r->dp); }

/* The next `rows` training or calibration rows of this rank: its loader
 * draws the global batch (ranks x rows, as one process with that batch
 * would) and rank k keeps rows k rows .. (k + 1) rows - 1. */
static int draw(struct run *r, const struct run_opts *o, struct lspo_loader *ld, long rows, int32_t *inputs,
                int32_t *targets)
{
	size_t bt = (size_t)rows * o->seq, n = (size_t)nranks(r);
	if (n == 1)
		return next_batch(ld, bt, inputs, targets, NULL);
	if (next_batch(ld, bt * n, r->ginputs, r->gtargets, NULL))
		return 1;
	size_t at = bt * (size_t)lspo_dp_rank(r->dp);
	memcpy(inputs, r->ginputs + at, bt * sizeof(int32_t));
	memcpy(targets, r->gtargets + at, bt * sizeof(int32_t));
	return 0;
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

static int report_check(const struct run_opts *o, const struct lspo_lsp_check *report, long step, long effective);

/* lsp: the projector check on a held-out calibration batch (the validation
 * data, else a batch drawn from the training data with another seed);
 * async: started, its report comes when it takes effect (lsp_learn_step). */
static int lsp_check(struct run *r, const struct run_opts *o, size_t train_end, long step)
{
	struct lspo_loader *ld = NULL;
	const struct lspo_shard *s = r->val ? r->val : r->train;
	size_t begin = r->val ? 0 : (train_end < lspo_shard_ntokens(r->train) ? train_end : 0);
	size_t end = r->val ? lspo_shard_ntokens(r->val) : lspo_shard_ntokens(r->train);
	size_t bt = (size_t)o->batch * o->seq, nb = (size_t)o->calib_batches;
	int32_t *in = malloc(nb * bt * sizeof(int32_t)), *tg = malloc(nb * bt * sizeof(int32_t));
	int rc = !in || !tg || lspo_loader_create(s, (int)o->batch * nranks(r), (int)o->seq,
	                                          (uint64_t)o->seed + 1000 + (uint64_t)step, begin, end, &ld);
	for (size_t b = 0; !rc && b < nb; b++)
		rc = draw(r, o, ld, o->batch, in + b * bt, tg + b * bt);
	struct lspo_lsp_check rep;
	if (!rc)
		rc = o->lsp_learn_async
		     ? lspo_model_lsp_check_start(r->model, in, tg, (int)nb, (int)o->lsp_learn_lag, &rep)
		     : lspo_model_lsp_check(r->model, in, tg, (int)nb, &rep);
	lspo_loader_free(ld);
	free(in);
	free(tg);
	if (rc) {
		fprintf(stderr, "lspo: the projector check before step %ld failed\n", step);
		return CLI_FAIL;
	}
	if (o->lsp_learn_async) {
		printf("lsp check before step %ld: projector error %.3f on %d matrices (%zu calibration batches); "
		       "learning in the background, in effect before step %ld\n", step, rep.err_before,
		       rep.nmatrices, nb, step + o->lsp_learn_lag);
		r->check_step = step;
		return CLI_OK;
	}
	printf("lsp check before step %ld: projector error %.3f on %d matrices (%zu calibration batches), "
	       "%d pair(s) learned and accepted, %d rejected, %d replaced, error now %.3f\n", step,
	       rep.err_before, rep.nmatrices, nb, rep.accepted, rep.rejected, rep.refreshed, rep.err_after);
	return report_check(o, &rep, step, step);
}

/* lsp, async: the background learning's share of step `step`, or its
 * publication before it. */
static int lsp_learn_step(struct run *r, const struct run_opts *o, long step)
{
	struct lspo_lsp_check rep;
	int published;
	if (lspo_model_lsp_learn_advance(r->model, &published, &rep)) {
		fprintf(stderr, "lspo: the background projector learning before step %ld failed\n", step);
		return CLI_FAIL;
	}
	if (!published)
		return CLI_OK;
	printf("lsp check before step %ld took effect before step %ld: projector error %.3f on %d matrices, "
	       "%d pair(s) learned and accepted, %d rejected, %d replaced, error now %.3f\n", r->check_step,
	       step, rep.err_before, rep.nmatrices, rep.accepted, rep.rejected, rep.refreshed, rep.err_after);
	return report_check(o, &rep, r->check_step, step);
}

/* The per-pair lines of a check made before step `step`, in effect before
 * step `effective`, and LOG.checks.csv's rows. */
static int report_check(const struct run_opts *o, const struct lspo_lsp_check *report, long step, long effective)
{
	const struct lspo_lsp_check rep = *report;
	int rc;
	/* per pair (issue 15): the mean above can hide a pair that keeps nothing of its gradient */
	FILE *csv = NULL;
	char *path = NULL;
	if (o->log && strcmp(o->log, "/dev/null")) {
		if (asprintf(&path, "%s.checks.csv", o->log) < 0
		    || job_log_open(path, "step,pair,m,n,d,matrices,err_before,err_after,err_candidate,"
		                    "captured_before,captured_after,captured_random,outcome,effective_step", step - 1, &csv)) {
			free(path);
			return CLI_FAIL;
		}
	}
	for (int i = 0; i < rep.npairs; i++) {
		const struct lspo_lsp_pair_check *c = &rep.pairs[i];
		const char *what = lspo_proj_outcome_name(c->outcome);
		printf("  pair %d (%dx%d, d %d, %d %s): error %.3f -> %.3f", c->pair, c->m, c->n, c->d,
		       c->nmatrices, c->nmatrices == 1 ? "matrix" : "matrices", c->err_before, c->err_after);
		if (c->err_candidate >= 0)
			printf(" (learned %.3f)", c->err_candidate);
		printf(", |G^|/|G| %.4f -> %.4f (random ~%.4f), %s\n", c->captured_before, c->captured_after,
		       c->captured_random, what);
		if (c->captured_after < 0.25 * c->captured_random)
			fprintf(stderr, "lspo: warning: lsp check before step %ld: pair %d (%dx%d, d %d) keeps %.4f of "
			        "its gradient's norm, under a quarter of a random pair's %.4f: its matrices train "
			        "almost nothing\n", step, c->pair, c->m, c->n, c->d, c->captured_after,
			        c->captured_random);
		if (csv)
			fprintf(csv, "%ld,%d,%d,%d,%d,%d,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%s,%ld\n", step, c->pair, c->m,
			        c->n, c->d, c->nmatrices, c->err_before, c->err_after, c->err_candidate,
			        c->captured_before, c->captured_after, c->captured_random, what, effective);
	}
	rc = CLI_OK;
	if (csv) {
		rc = job_log_flush(path, csv);
		if (fclose(csv) != 0 && !rc) {
			fprintf(stderr, "lspo: --log %s: write failed\n", path);
			rc = CLI_FAIL;
		}
	}
	free(path);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* what a checkpoint records about the run                                */

static const char *decay_name(enum lspo_lr_decay d)
{
	return d == LSPO_LR_LINEAR ? "linear" : d == LSPO_LR_COSINE ? "cosine" : "none";
}

/* The file's identity: token count and checksum. */
static json_t *data_identity(const struct lspo_shard *s, const char *path)
{
	uint32_t crc;
	uint64_t bytes;
	if (lspo_file_crc32c(path, &crc, &bytes))
		return NULL;
	char hex[16], mhex[16] = "", *mask = NULL;
	snprintf(hex, sizeof(hex), "%08x", crc);
	/* a loss mask beside the shard changes the trajectory too */
	if (asprintf(&mask, "%s.mask", path) >= 0 && access(mask, F_OK) == 0) {
		if (lspo_file_crc32c(mask, &crc, &bytes)) {
			free(mask);
			return NULL;
		}
		snprintf(mhex, sizeof(mhex), "%08x", crc);
	}
	free(mask);
	json_t *id = json_pack("{s:I, s:s}", "tokens", (json_int_t)lspo_shard_ntokens(s), "crc32c", hex);
	if (id && mhex[0])
		json_object_set_new(id, "mask-crc32c", json_string(mhex));
	return id;
}

/* "trajectory": what must match on resume; "schedule": what may differ with
 * --resume-override.  Keys are option names. */
static int describe_run(struct run *r, const struct run_opts *o)
{
	json_t *data = data_identity(r->train, o->data);
	json_t *val = r->val ? data_identity(r->val, o->val) : json_null();
	/* the global batch: a run on N ranks continues one on M ranks when N x
	 * --batch is the same (the loader draws the same rows) */
	json_t *tr = data && val ? json_pack("{s:I, s:I, s:I, s:s, s:s, s:f, s:o, s:o}", "batch",
	                                     (json_int_t)o->batch * nranks(r),
	                                     "seq", (json_int_t)o->seq, "seed", (json_int_t)o->seed, "mode", o->mode,
	                                     "offload-dtype", o->offload_dtype, "val-fraction", o->val_fraction,
	                                     "data", data, "val", val) : NULL;
	if (tr && o->dt != LSPO_DTYPE_FP32)   /* absent for fp32: older checkpoints resume */
		json_object_set_new(tr, "dtype", json_string(o->dtype));
	if (tr && o->bu != LSPO_BF16_MASTER)   /* absent for master: older checkpoints resume */
		json_object_set_new(tr, "bf16-update", json_string(o->bf16_update));
	if (tr && o->off.mode == LSPO_MODE_LSP) {
		json_t *lsp = json_pack("{s:i, s:i, s:f, s:I, s:I, s:i, s:f, s:s, s:b, s:b, s:b, s:b}",
		                        "lsp-d", o->off.lsp_d, "lsp-r", o->off.lsp_r, "lsp-alpha", o->off.lsp_alpha,
		                        "check-freq", (json_int_t)o->check_freq, "lsp-calib-batches",
		                        (json_int_t)o->calib_batches, "lsp-learn-iters", o->off.learn.iters,
		                        "lsp-learn-lr", (double)o->off.learn.lr, "lsp-init",
		                        o->off.lsp_init == LSPO_PROJ_SIGN ? "sign" : "gaussian",
		                        "lsp-shared", o->off.lsp_shared, "lsp-eps-inside-sqrt",
		                        o->off.lsp_eps_inside_sqrt, "lsp-plain-apply", o->off.lsp_plain_apply,
		                        "freeze-dense", o->off.freeze_dense);
		if (lsp && o->lsp_targets)
			json_object_set_new(lsp, "lsp-targets", json_string(o->lsp_targets));
		if (lsp && o->lsp_learn_async)   /* async losses differ from sync ones */
			json_object_set_new(lsp, "lsp-learn-lag", json_integer(o->lsp_learn_lag));
		if (!lsp || json_object_update(tr, lsp)) {
			json_decref(tr);
			tr = NULL;
		}
		json_decref(lsp);
	}
	json_t *sc = json_pack("{s:f, s:f, s:I, s:s, s:f, s:f, s:f, s:f, s:f}", "lr", o->lr, "min-lr", o->min_lr,
	                       "warmup", (json_int_t)o->warmup, "lr-decay", decay_name(o->lr_decay), "wd", o->wd,
	                       "clip", o->clip, "beta1", o->beta1, "beta2", o->beta2, "eps", o->eps);
	if (tr && o->grad_accum > 1)   /* a step's rows; checkpointing changes no value */
		json_object_set_new(tr, "grad-accum", json_integer(o->grad_accum));
	if (sc && o->lr_decay != LSPO_LR_CONSTANT)   /* the decay ends at --steps */
		json_object_set_new(sc, "steps", json_integer(o->steps));
	json_t *root = tr && sc ? json_pack("{s:o, s:o}", "trajectory", tr, "schedule", sc) : NULL;
	if (!root) {
		json_decref(tr);
		json_decref(sc);
	}
	r->run_json = root ? json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	if (!r->run_json) {
		fprintf(stderr, "lspo: cannot describe the run for its checkpoints (data unreadable?)\n");
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* The effective options (the config file's and the command line's, the
 * latter winning), as a JSON object that --config reads back. */
static int effective_config(struct run *r, int argc, char **argv)
{
	json_t *root = json_object();
	for (int i = 1; root && i < argc; i++) {
		if (strncmp(argv[i], "--", 2) != 0)
			continue;
		const char *name = argv[i] + 2, *eq = strchr(name, '='), *value = NULL;
		char key[64];
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		if (len >= sizeof(key))
			continue;
		memcpy(key, name, len);
		key[len] = '\0';
		const struct option *opt = NULL;
		for (const struct option *p = train_options; p->name; p++)
			if (!strcmp(p->name, key))
				opt = p;
		if (!opt || !strcmp(key, "resume") || !strcmp(key, "help"))
			continue;
		if (opt->has_arg == optional_argument)
			value = eq ? eq + 1 : i + 1 < argc && is_count(argv[i + 1]) ? argv[++i] : NULL;
		else if (opt->has_arg)
			value = eq ? eq + 1 : i + 1 < argc ? argv[++i] : NULL;
		json_object_set_new(root, key, value ? json_string(value) : json_true());
	}
	r->config_json = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
	json_decref(root);
	return r->config_json ? CLI_OK : CLI_FAIL;
}

/* On resume: the saved run's description against this one's; names the
 * first option that differs. */
static int compare_run(const char *saved_text, const char *now_text, const struct run_opts *o)
{
	json_t *saved = json_loads(saved_text, 0, NULL), *now = json_loads(now_text, 0, NULL);
	int rc = saved && now ? CLI_OK : CLI_FAIL;
	static const char *const sections[] = { "trajectory", "schedule" };
	for (int s = 0; s < 2 && !rc; s++) {
		json_t *a = json_object_get(saved, sections[s]), *b = json_object_get(now, sections[s]);
		/* the options that shape the run most come first */
		static const char *const first[] = { "mode", "data", "val", "batch", "seq", "seed", "val-fraction",
		                                     "offload-dtype", "lr", "lr-decay", "warmup", "steps" };
		json_t *keys = json_object();
		const char *k;
		json_t *v;
		for (size_t f = 0; f < sizeof(first) / sizeof(first[0]); f++)
			if (json_object_get(a, first[f]) || json_object_get(b, first[f]))
				json_object_set_new(keys, first[f], json_true());
		json_object_foreach(a, k, v) json_object_set(keys, k, json_true());
		json_object_foreach(b, k, v) json_object_set(keys, k, json_true());
		json_object_foreach(keys, k, v) {
			json_t *x = json_object_get(a, k), *y = json_object_get(b, k);
			if (x && y && json_equal(x, y))
				continue;
			char *xs = x ? json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("(absent)");
			char *ys = y ? json_dumps(y, JSON_ENCODE_ANY | JSON_COMPACT) : strdup("(absent)");
			if (s == 1 && o->resume_override) {
				printf("resume: --%s changes from %s to %s (--resume-override)\n", k, xs ? xs : "?",
				       ys ? ys : "?");
			} else {
				fprintf(stderr, "lspo train: --resume: option --%s differs from the checkpoint's: "
				        "%s there, %s now%s\n", k, xs ? xs : "?", ys ? ys : "?", s == 1 ?
				        " (--resume-override accepts a new schedule knowingly)" :
				        " (a resumed run must see the same data in the same order)");
				rc = CLI_USAGE;
			}
			free(xs);
			free(ys);
			if (rc)
				break;
		}
		json_decref(keys);
	}
	json_decref(saved);
	json_decref(now);
	return rc;
}

/* --resume: verifies the checkpoint, loads the training state and replays
 * the training batches the saved run had drawn. */
static int resume(struct run *r, const struct run_opts *o, long *start)
{
	char *manifest = path_in(r->model_dir, "manifest.json"), *state = path_in(r->model_dir, STATE_FILE);
	long mstep = -1;
	char *saved = NULL;
	int rc = manifest && state ? CLI_OK : CLI_FAIL;
	if (!rc && access(manifest, F_OK) != 0) {
		fprintf(stderr, "lspo: warning: %s has no manifest.json (saved before manifests): its files "
		        "cannot be verified\n", r->model_dir);
	} else if (!rc && lspo_ckpt_verify(r->model_dir, &mstep, &saved)) {
		fprintf(stderr, "lspo train: --resume: the checkpoint %s failed verification\n", r->model_dir);
		rc = CLI_FAIL;
	}
	if (!rc && saved)
		rc = compare_run(saved, r->run_json, o);
	long drawn = -1;   /* the data position the manifest records */
	if (!rc && saved) {
		json_t *sv = json_loads(saved, 0, NULL), *pos = json_object_get(sv, "position");
		if (json_is_object(pos) && json_is_integer(json_object_get(pos, "train-batches-drawn")))
			drawn = (long)json_integer_value(json_object_get(pos, "train-batches-drawn"));
		json_decref(sv);
	}
	if (!rc && lspo_st_check_finite(state)) {
		fprintf(stderr, "lspo train: --resume: %s holds non-finite values\n", state);
		rc = CLI_FAIL;
	}
	if (!rc && lspo_model_load_state(r->model, state))
		rc = CLI_FAIL;
	if (!rc) {
		*start = lspo_model_step(r->model);
		if ((mstep >= 0 && *start != mstep) || (drawn >= 0 && drawn != *start)) {
			fprintf(stderr, "lspo train: --resume: %s says step %ld, %s/manifest.json says step %ld "
			        "with %ld training batches drawn\n", state, *start, r->model_dir, mstep, drawn);
			rc = CLI_FAIL;
		} else if (*start > o->steps) {
			fprintf(stderr, "lspo train: --resume: the checkpoint %s is at step %ld, beyond --steps %ld\n",
			        r->model_dir, *start, o->steps);
			rc = CLI_USAGE;
		}
	}
	for (long s = 0; !rc && s < *start; s++)
		if (draw(r, o, r->train_loader, o->grad_accum * o->batch, r->inputs, r->targets))
			rc = CLI_FAIL;
	if (!rc) {
		r->saved_step = *start;
		printf("resumed from %s at step %ld\n", r->model_dir, *start);
	}
	free(manifest);
	free(state);
	free(saved);
	return rc;
}

/* One complete checkpoint of the current step into --save DIR. */
/* Rank 0 (or the only process) writes the checkpoint of `step`. */
static int write_checkpoint(struct run *r, const struct run_opts *o, long step)
{
	const char *tmp;
	if (lspo_ckptdir_begin(r->ckpt, step, &tmp))
		return CLI_FAIL;
	char *state = path_in(tmp, STATE_FILE), *conf = path_in(tmp, "train_config.json");
	int rc = !state || !conf;
	if (!rc)
		rc = lspo_model_get_params(r->model, r->params) || lspo_ckpt_save(tmp, &r->cfg, r->params)
		     || lspo_model_save_state(r->model, state);
	FILE *f = rc ? NULL : fopen(conf, "w");
	if (!rc)
		rc = !f || fprintf(f, "%s\n", r->config_json) < 0 || fflush(f) || fsync(fileno(f));
	if (f && fclose(f))
		rc = 1;
	/* where the data and the generators stand: the loader has drawn `step`
	 * batches of its seeded order; lsp checks draw from seed + 1000 + step */
	json_t *run = rc ? NULL : json_loads(r->run_json, 0, NULL);
	char *text = NULL;
	if (run && !json_object_set_new(run, "position", json_pack("{s:I, s:I, s:I}", "step", (json_int_t)step,
	                                                           "train-batches-drawn", (json_int_t)step,
	                                                           "seed", (json_int_t)o->seed)))
		text = json_dumps(run, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(run);
	if (!rc && !text)
		rc = 1;
	if (!rc)   /* every file the engine and this function wrote */
		rc = lspo_ckptdir_commit(r->ckpt, NULL, 0, text);
	free(text);
	free(state);
	free(conf);
	if (rc) {
		lspo_ckptdir_abort(r->ckpt);
		fprintf(stderr, "lspo: the checkpoint of step %ld could not be saved into %s; the previous "
		        "one stays published\n", step, o->save);
		return CLI_FAIL;
	}
	printf("saved %s/step-%08ld (step %ld)\n", o->save, step, step);
	fflush(stdout);
	return CLI_OK;
}

/* Every rank calls save: the replicas agree on what is saved, rank 0
 * writes it, and no rank goes on before it is published, since a rank that
 * then exits (75 after a signal) makes the launcher kill rank 0 mid-write. */
static int save(struct run *r, const struct run_opts *o, long step)
{
	if (step == r->saved_step)
		return CLI_OK;
	if (lspo_dp_check_params(r->dp, r->model, step))
		return CLI_FAIL;
	long failed = lspo_dp_rank(r->dp) == 0 ? write_checkpoint(r, o, step) != CLI_OK : 0;
	if (lspo_dp_agree_max(r->dp, &failed) || failed)
		return CLI_FAIL;
	r->saved_step = step;
	return CLI_OK;
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The validation data must hold one sequence (T + 1 tokens). */
static int check_val_length(struct run *r, const struct run_opts *o, size_t train_end)
{
	size_t n = r->val ? lspo_shard_ntokens(r->val) : lspo_shard_ntokens(r->train) - train_end;
	if (n >= (size_t)o->seq + 1)
		return CLI_OK;
	if (r->val)
		fprintf(stderr, "lspo train: --val %s: %zu tokens, fewer than one sequence of --seq %ld + 1\n",
		        o->val, n, o->seq);
	else
		fprintf(stderr, "lspo train: --val-fraction %g leaves %zu validation tokens of %s, fewer than "
		        "one sequence of --seq %ld + 1\n", o->val_fraction, n, o->data, o->seq);
	return CLI_USAGE;
}

/* The peak StarPU allocated on the node where the step computes: the
 * accelerator when there is one, else main memory (of the step, or of the
 * run with run = 1). */
static double device_peak(const struct lspo_mem_stats *m, int run)
{
	double peak[2] = { 0, 0 };   /* main memory, accelerators */
	int accel = 0;
	for (int n = 0; n < m->nnodes; n++) {
		double p = run ? m->peak_run[n] : m->peak_step[n];
		int a = m->accel[n] != 0;
		peak[a] = p > peak[a] ? p : peak[a];
		accel |= a;
	}
	return peak[accel];
}

/* The analytic footprint of this run (lspo plan's), before the first step;
 * the lspo policy sizes what it sends home under a memory cap by it. */
static void print_footprint(const struct run *r, const struct run_opts *o)
{
	struct lspo_footprint_opts fo = lspo_footprint_opts_default();
	fo.mode = o->off.mode;
	fo.batch = (int)o->batch;
	fo.seq = (int)o->seq;
	fo.lsp_d = o->off.lsp_d;
	fo.lsp_r = o->off.lsp_r;
	fo.lsp_shared = o->off.lsp_shared;
	fo.freeze_dense = o->off.freeze_dense;
	fo.offload_bf16 = o->off.offload_bf16;
	fo.dtype_bf16 = o->dt == LSPO_DTYPE_BF16;
	fo.bf16_stochastic = o->bu == LSPO_BF16_STOCHASTIC;
	fo.checkpoint_every = (int)o->ckpt_every;
	fo.grad_accum = (int)o->grad_accum;
	if (o->lsp_targets && lspo_lsp_targets_parse(r->cfg.family, o->lsp_targets, &fo.lsp_targets))
		fo.lsp_targets = 0;
	struct lspo_footprint f;
	if (lspo_footprint(&r->cfg, &fo, &f))
		return;
	cli_print_footprint(&f, o->gpu_mem);
	lspo_sched_set_mem_demand(f.allocated > f.device ? f.allocated : f.device);
}

/* Per memory node, the peak StarPU allocated during the run. */
static void print_run_memory(void)
{
	struct lspo_mem_stats m;
	lspo_mem_get(&m);
	printf("memory peak (StarPU's allocations):");
	for (int n = 0; n < m.nnodes; n++)
		printf("%s %s %.1f MiB%s", n ? "," : "", m.name[n], m.peak_run[n] / 1048576.0,
		       m.total[n] > 0 ? "" : " (not counted)");
	printf("\n");
}

#define LOG_HEADER "step,loss,lr,grad_norm,ms,tokens_per_s,bytes_d2h,bytes_h2d,peak_device_bytes,evicted_bytes,refetched_bytes"
/* data parallel: the bytes this rank sent to the others in the step */
#define LOG_HEADER_DP LOG_HEADER ",bytes_ranks"

/* A signal any rank received (all ranks stop after the same step). */
static int agreed_signal(struct run *r)
{
	long sig = job_signal_pending();
	if (lspo_dp_agree_max(r->dp, &sig))
		return -1;
	return (int)sig;
}

/* Says where a run stopped by a signal after `step` stands; CLI_TEMPFAIL (75). */
static int stopped_by_signal(const struct run *r, const struct run_opts *o, int sig, long step)
{
	if (o->save)
		printf("lspo: %s: stopped after step %ld; checkpoint %s/step-%08ld published "
		       "(exit 75: resumable with --resume)\n", job_signal_name(sig), step, o->save, r->saved_step);
	else
		printf("lspo: %s: stopped after step %ld; nothing saved (no --save) (exit 75)\n",
		       job_signal_name(sig), step);
	fflush(stdout);
	return CLI_TEMPFAIL;
}

/* Under mpirun or srun: MPI, and the roles of the ranks.  Rank 0 writes
 * the checkpoints, the log and the step lines; the other ranks print only
 * errors.  With --trace every rank traces (StarPU-MPI's FxT sync points are
 * collective): rank 0 into TRACE, rank k into TRACE/rank-k. */
static int dp_begin(struct run *r, struct run_opts *o)
{
	if (!lspo_dp_launched())
		return CLI_OK;
	if (lspo_dp_create(&r->dp))
		return CLI_FAIL;
	if (lspo_dp_rank(r->dp) > 0) {
		o->log = NULL;
		if (o->ctx.trace_dir) {
			if (asprintf(&r->rank_trace, "%s/rank-%d", o->ctx.trace_dir, lspo_dp_rank(r->dp)) < 0) {
				r->rank_trace = NULL;
				return CLI_FAIL;
			}
			if (mkdir(o->ctx.trace_dir, 0777) != 0 && errno != EEXIST) {
				fprintf(stderr, "lspo train: --trace %s: cannot create it: %s\n", o->ctx.trace_dir,
				        strerror(errno));
				return CLI_FAIL;
			}
			o->ctx.trace_dir = r->rank_trace;
		}
		/* Under SimGrid's SMPI all ranks share one process and its stdout:
		 * there every rank prints (the end-of-run summaries name the rank). */
		if (!lspo_ctx_simulated(NULL) && !freopen("/dev/null", "w", stdout))
			return CLI_FAIL;
	}
	return CLI_OK;
}

static int train(int argc, char **argv)
{
	struct run_opts o;
	run_opts_default(&o);
	int rc = parse("train", argc, argv, &o);
	if (rc >= 0)
		return rc;
	job_signals_install();
	struct run r = { .saved_step = -1 };
	if ((rc = dp_begin(&r, &o)) || (rc = resolve_model(&r, &o)) || (rc = check_paths(&r, &o)))
		goto out;
	if (o.save && lspo_dp_rank(r.dp) == 0 && lspo_ckptdir_open(o.save, (int)o.keep, &r.ckpt)) {
		fprintf(stderr, "lspo train: --save %s: cannot save there\n", o.save);
		rc = CLI_FAIL;
		goto out;
	}
	if (o.save && !r.resuming) {   /* a new run would replace the saved one's checkpoints */
		char *have = NULL;
		long at;
		if (!lspo_ckpt_resolve(o.save, &have, &at) && have && at >= 0) {
			fprintf(stderr, "lspo train: --save %s already holds a run's checkpoints (latest: step %ld): "
			        "continue it with --resume auto, or save a new run elsewhere\n", o.save, at);
			free(have);
			rc = CLI_FAIL;
			goto out;
		}
		free(have);
	}
	if ((rc = run_open(&r, &o, "train")))
		goto out;
	size_t train_end = lspo_shard_ntokens(r.train);
	int has_val = o.val || o.val_fraction > 0;
	if (!o.val && o.val_fraction > 0)
		lspo_shard_split(r.train, o.val_fraction, &train_end);
	if (has_val && (rc = check_val_length(&r, &o, train_end)))
		goto out;
	if ((rc = describe_run(&r, &o)) || (rc = effective_config(&r, argc, argv)))
		goto out;
	rc = CLI_FAIL;
	if (nranks(&r) > 1) {
		size_t gbt = (size_t)nranks(&r) * o.grad_accum * o.batch * o.seq;
		r.ginputs = malloc(gbt * sizeof(int32_t));
		r.gtargets = malloc(gbt * sizeof(int32_t));
		if (!r.ginputs || !r.gtargets)
			goto out;
	}
	/* A step's K micro-batches are the rows of one batch of K B, in order;
	 * on N ranks the loader draws N K B rows and rank k takes the k-th K B. */
	if (lspo_loader_create(r.train, (int)(o.grad_accum * o.batch) * nranks(&r), (int)o.seq, (uint64_t)o.seed, 0,
	                       train_end,
	                       &r.train_loader))
		goto out;
	long start = 0;
	if (r.resuming && (rc = resume(&r, &o, &start)))
		goto out;
	rc = CLI_FAIL;
	if (o.log && job_log_open(o.log, nranks(&r) > 1 ? LOG_HEADER_DP : LOG_HEADER, start, &r.log))
		goto out;
	printf("lspo train: %s, %s, %d layers, %d heads, n_embd %d, vocab %d; B %ld, T %ld, %ld steps, "
	       "mode %s, policy %s, %d CPU + %d CUDA workers\n", r.model_dir, lspo_family_name(r.cfg.family),
	       r.cfg.n_layer, r.cfg.n_head,
	       r.cfg.n_embd, r.cfg.vocab_size, o.batch, o.seq, o.steps, o.mode, lspo_ctx_sched(r.ctx),
	       lspo_ctx_ncpus(r.ctx), lspo_ctx_ncuda(r.ctx));
	if (nranks(&r) > 1)
		printf("data parallel: %d ranks x batch %ld = global batch %ld; gradients summed by a ring "
		       "all-reduce per layer (StarPU-MPI)\n", nranks(&r), o.batch, o.batch * nranks(&r));
	if (o.grad_accum > 1)
		printf("gradient accumulation: %ld micro-batches of %ld sequences per optimizer step\n", o.grad_accum,
		       o.batch);
	if (o.ckpt_every)
		printf("activation checkpointing: segments of %ld block(s), only their inputs kept, the rest "
		       "recomputed in the backward\n", o.ckpt_every);
	if (lspo_ctx_simulated(r.ctx))
		printf("simulated run (StarPU SimGrid): kernels do not run, losses are not computed, "
		       "times are estimates\n");
	if (o.dt == LSPO_DTYPE_BF16) {
		size_t wbytes, abytes;
		lspo_model_stored_bytes(r.model, &wbytes, &abytes);
		printf("dtype bf16: working weights %.2f MiB, activations %.2f MiB (bf16 but for fp32 statistics); "
		       "%s, gradients and optimizer states fp32\n", wbytes / 1048576.0, abytes / 1048576.0,
		       o.bu == LSPO_BF16_STOCHASTIC ? "no master on the accelerator (stochastic rounding)" : "masters");
	}
	struct lspo_optim opt = { .lr = (float)o.lr, .beta1 = (float)o.beta1, .beta2 = (float)o.beta2,
	                          .eps = (float)o.eps, .weight_decay = (float)o.wd, .clip = (float)o.clip };
	struct lspo_lr_schedule sched = { .lr = o.lr, .min_lr = o.min_lr, .warmup = o.warmup,
	                                  .total = o.steps, .decay = o.lr_decay };
	double vd2h, vh2d;
	lspo_model_offload_volume(r.model, &vd2h, &vh2d);
	printf("offload volume per step (from the graph): device->host %.3f MB (%.0f B), "
	       "host->device %.3f MB (%.0f B)\n", vd2h / 1e6, vd2h, vh2d / 1e6, vh2d);
	print_footprint(&r, &o);
	fflush(stdout);
	if (dp_watch_start(r.dp, o.rank_timeout, &r.watch))
		goto out;
	double last_save = now_s();
	long bad = 0, dp_steps = 0;
	struct lspo_dp_bytes dpb0, dpb1, dp_steps_bytes = { 0 };
	for (long s = start + 1; s <= o.steps; s++) {
		int sig = agreed_signal(&r);
		if (sig < 0)
			goto out;
		if (sig && s > start + 1 && o.save) {   /* arrived since the last step's check */
			if (save(&r, &o, s - 1))
				goto out;
			rc = stopped_by_signal(&r, &o, sig, s - 1);
			goto out;
		}
		if (sig) {   /* before the first step (or nothing to save into) */
			printf("lspo: %s before step %ld: stopping (exit 75; resume with --resume)\n",
			       job_signal_name(sig), s);
			rc = CLI_TEMPFAIL;
			goto out;
		}
		struct lspo_step_stats st;
		/* async: a check's learning is handed out before each step, and one
		 * due now takes effect before a new check starts */
		int async = o.off.mode == LSPO_MODE_LSP && o.lsp_learn_async;
		if (async && lsp_learn_step(&r, &o, s))
			goto out;
		if (o.off.mode == LSPO_MODE_LSP && o.check_freq > 0 && (s - 1) % o.check_freq == 0
		    && (lsp_check(&r, &o, train_end, s) || (async && lsp_learn_step(&r, &o, s))))
			goto out;
		dp_watch_beat(r.watch);
		opt.lr = (float)lspo_lr_at(&sched, s);
		lspo_dp_bytes(r.dp, &dpb0);
		if (draw(&r, &o, r.train_loader, o.grad_accum * o.batch, r.inputs, r.targets)
		    || lspo_model_train_step_accum(r.model, r.inputs, r.targets, (int)o.grad_accum, &opt, &st))
			goto out;
		dp_watch_beat(r.watch);
		lspo_dp_bytes(r.dp, &dpb1);
		double ranks_bytes = dpb1.reduce - dpb0.reduce;
		dp_steps++;
		dp_steps_bytes.reduce += ranks_bytes;
		dp_steps_bytes.reduce_analytic += dpb1.reduce_analytic - dpb0.reduce_analytic;
		dp_steps_bytes.payload += dpb1.payload - dpb0.payload;
		double tps = (double)o.grad_accum * o.batch * nranks(&r) * o.seq / st.seconds;
		struct lspo_mem_stats mem;
		lspo_mem_get(&mem);
		double peak = device_peak(&mem, 0);
		printf("step %5d | loss %.6f | lr %.3e | norm %.4f | %8.1f ms | %9.0f tok/s | d2h %.2f MB h2d %.2f MB"
		       " | peak %.1f MiB", st.step, st.loss, opt.lr, st.grad_norm, st.seconds * 1e3, tps,
		       st.bytes_d2h / 1e6, st.bytes_h2d / 1e6, peak / 1048576.0);
		if (mem.evicted > 0 || mem.refetched > 0)
			printf(" (evicted %.2f MB, refetched %.2f MB)", mem.evicted / 1e6, mem.refetched / 1e6);
		if (nranks(&r) > 1)
			printf(" | ranks %.2f MB", ranks_bytes / 1e6);
		printf("\n");
		fflush(stdout);
		if (r.log) {
			fprintf(r.log, "%d,%.6f,%.6e,%.6f,%.3f,%.1f,%.0f,%.0f,%.0f,%.0f,%.0f", st.step, st.loss, opt.lr,
			        st.grad_norm, st.seconds * 1e3, tps, st.bytes_d2h, st.bytes_h2d, peak, mem.evicted,
			        mem.refetched);
			if (nranks(&r) > 1)
				fprintf(r.log, ",%.0f", ranks_bytes);
			fprintf(r.log, "\n");
			if (job_log_flush(o.log, r.log))
				goto out;
		}
		if (nranks(&r) > 1 && o.check_freq > 0 && s % o.check_freq == 0
		    && lspo_dp_check_params(r.dp, r.model, s))
			goto out;
		if (!isfinite(st.loss) || !isfinite(st.grad_norm)) {
			const char *t = lspo_model_nonfinite_grad(r.model);
			long limit = o.max_bad_steps > 0 ? o.max_bad_steps : 1;
			bad++;
			fprintf(stderr, "lspo: warning: step %ld: non-finite %s (%s%s): the update was skipped, "
			        "weights and optimizer state are unchanged (%ld such step(s) in a row, "
			        "--max-bad-steps %ld)\n", s, !isfinite(st.loss) ? "loss" : "gradient norm",
			        t ? "first in the gradient of " : isfinite(st.grad_norm) ? "gradient norm finite" :
			        "in a gradient outside the norm", t ? t : "", bad, o.max_bad_steps);
			if (bad >= limit) {
				fprintf(stderr, "lspo train: %ld step(s) in a row had non-finite values (last: step %ld): "
				        "stopping; nothing was saved after step %ld (try a lower --lr or check the "
				        "data and the checkpoint)\n", bad, s, r.saved_step > 0 ? r.saved_step : 0);
				goto out;
			}
		} else {
			bad = 0;
		}
		sig = agreed_signal(&r);
		if (sig < 0)
			goto out;
		int due = (o.save_every > 0 && s % o.save_every == 0)
		          || (o.save_every_min > 0 && now_s() - last_save >= 60 * o.save_every_min);
		if (o.save && (due || sig) && s < o.steps) {
			if (save(&r, &o, s))
				goto out;
			dp_watch_beat(r.watch);
			last_save = now_s();
		}
		if (sig && s < o.steps) {   /* at the last step, the end of the run saves */
			rc = stopped_by_signal(&r, &o, sig, s);
			goto out;
		}
		if (has_val && o.val_every > 0 && s % o.val_every == 0 && s < o.steps && validate(&r, &o, train_end, s))
			goto out;
	}
	print_run_memory();
	if (start >= o.steps)
		printf("nothing to do: the checkpoint is at step %ld, --steps %ld\n", start, o.steps);
	if (has_val && start < o.steps && validate(&r, &o, train_end, o.steps))
		goto out;
	if (o.save && save(&r, &o, o.steps))
		goto out;
	if (job_signal_pending())   /* nothing left to resume: a requeue would find nothing to do */
		printf("lspo: %s during the last step: the run is complete%s\n",
		       job_signal_name(job_signal_pending()), o.save ? " and saved" : "");
	if (nranks(&r) > 1) {
		struct lspo_dp_bytes all;
		lspo_dp_bytes(r.dp, &all);
		double k = dp_steps ? (double)dp_steps : 1.0;
		printf("inter-rank bytes sent by rank %d: %.0f B per training step (ring all-reduce of %.0f B: "
		       "analytic 2 (N-1)/N x payload = %.0f B, N = %d); run total %.0f B (reductions %.0f B "
		       "incl. projector checks, control %.0f B)\n", lspo_dp_rank(r.dp), dp_steps_bytes.reduce / k,
		       dp_steps_bytes.payload / k, dp_steps_bytes.reduce_analytic / k, nranks(&r),
		       all.reduce + all.control, all.reduce, all.control);
	}
	rc = CLI_OK;
out:
	if (rc != CLI_OK && rc != CLI_TEMPFAIL && nranks(&r) > 1) {
		/* the other ranks may be waiting for this one: end them all */
		fprintf(stderr, "lspo train: rank %d failed (exit %d): stopping every rank\n", lspo_dp_rank(r.dp), rc);
		lspo_dp_abort(r.dp, rc);
	}
	run_free(&r);
	return rc;
}

int cmd_train(int argc, char **argv)
{
	int nargc;
	char **nargv, **owned;
	int rc = job_config_expand("train", argc, argv, &nargc, &nargv, &owned);
	if (rc >= 0)
		return rc;
	rc = train(nargc, nargv);
	job_config_free(nargv, argv, owned);
	return rc;
}

int cmd_eval(int argc, char **argv)
{
	struct run_opts o;
	run_opts_default(&o);
	int rc = parse("eval", argc, argv, &o);
	if (rc >= 0)
		return rc;
	struct run r = { .saved_step = -1 };
	double loss;
	if (!(rc = resolve_model(&r, &o)) && !(rc = check_paths(&r, &o)) && !(rc = run_open(&r, &o, "eval"))
	    && !(rc = evaluate(&r, &o, r.train, 0, lspo_shard_ntokens(r.train), &loss)))
		printf("eval: %s on %s: loss %.4f, perplexity %.2f (%ld batches of %ld x %ld)\n",
		       o.model, o.data, loss, exp(loss), o.val_batches, o.batch, o.seq);
	run_free(&r);
	return rc;
}
