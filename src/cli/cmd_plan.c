/*
 * cmd_plan.c - `lspo plan`: the memory a training run needs, by kind, and
 * whether it fits an accelerator of --gpu-mem MiB, without running it (no
 * StarPU, no weights read: config.json alone).  `lspo train` prints the same
 * footprint before its first step (cli_print_footprint).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char plan_help[] =
	"usage: lspo plan --model DIR [--mode M] [--gpu-mem MiB] [OPTIONS]\n"
	"Prints the memory a training run of the checkpoint in DIR needs on the accelerator (weights,\n"
	"gradients, optimizer states, activations, projectors, workspace) and on the host, and with\n"
	"--gpu-mem whether it fits; reads DIR/config.json only and runs nothing.\n"
	"  --model DIR        checkpoint (or its config.json) (required)\n"
	"  --mode MODE        native (default), zero or lsp\n"
	"  --gpu-mem MiB      the accelerator's memory: prints whether the run fits\n"
	"  --batch B          sequences per (micro-)batch (default 4)\n"
	"  --seq T            tokens per sequence (default 64)\n"
	"  --lsp-d D --lsp-r R   lsp: subspace size, non-zeros per projector row (default 256, 8)\n"
	"  --lsp-shared       lsp: one projector pair per matrix role\n"
	"  --lsp-targets LIST lsp: the linear maps compressed, by role (default: all of a block)\n"
	"  --freeze-dense     lsp: the other parameters stay fixed\n"
	"  --offload-dtype T  zero: fp32 (default) or bf16 transfers\n"
	"  --dtype T          fp32 (default) or bf16 weights and activations on the accelerator\n"
	"  --bf16-update U    with --dtype bf16: master (default, fp32 masters on the accelerator in\n"
	"                     native and lsp mode) or stochastic (none: stochastic rounding)\n"
	"  --checkpoint-activations [K]   keep the input of every K-th block only (default K 1)\n"
	"  --grad-accum K     micro-batches per optimizer step (default 1)\n"
	"Exit status 0 whether it fits or not (the line 'fits:' says); 1 on a bad checkpoint; 2 on bad usage.\n";

enum { P_MODEL = 256, P_MODE, P_GPUMEM, P_BATCH, P_SEQ, P_LSPD, P_LSPR, P_SHARED, P_TARGETS, P_FREEZE,
       P_ODTYPE, P_DTYPE, P_CKPT, P_ACCUM, P_HELP, P_BF16UPD };

static const struct option plan_options[] = {
	{ "model", 1, 0, P_MODEL }, { "mode", 1, 0, P_MODE }, { "gpu-mem", 1, 0, P_GPUMEM },
	{ "batch", 1, 0, P_BATCH }, { "seq", 1, 0, P_SEQ }, { "lsp-d", 1, 0, P_LSPD }, { "lsp-r", 1, 0, P_LSPR },
	{ "lsp-shared", 0, 0, P_SHARED }, { "lsp-targets", 1, 0, P_TARGETS }, { "freeze-dense", 0, 0, P_FREEZE },
	{ "offload-dtype", 1, 0, P_ODTYPE }, { "dtype", 1, 0, P_DTYPE }, { "bf16-update", 1, 0, P_BF16UPD },
	{ "checkpoint-activations", 2, 0, P_CKPT }, { "grad-accum", 1, 0, P_ACCUM }, { "help", 0, 0, P_HELP },
	{ 0, 0, 0, 0 }
};

static double mib(double bytes) { return bytes / 1048576.0; }

void cli_print_footprint(const struct lspo_footprint *f, long gpu_mem_mib)
{
	printf("accelerator footprint (analytic): weights %.1f MiB, gradients %.1f MiB, optimizer states "
	       "%.1f MiB, activations %.1f MiB, projectors %.1f MiB, workspace %.1f MiB; total %.1f MiB "
	       "(%.0f B), %.1f MiB as StarPU allocates it on an accelerator; host %.1f MiB\n", mib(f->weights),
	       mib(f->gradients), mib(f->optimizer), mib(f->activations), mib(f->projectors), mib(f->workspace),
	       mib(f->device), f->device, mib(f->allocated), mib(f->host));
	printf("footprint bytes: weights %.0f gradients %.0f optimizer %.0f activations %.0f projectors %.0f "
	       "workspace %.0f device %.0f allocated %.0f lazy %.0f host %.0f\n", f->weights, f->gradients,
	       f->optimizer, f->activations, f->projectors, f->workspace, f->device, f->allocated, f->lazy, f->host);
	if (gpu_mem_mib > 0) {
		double cap = (double)gpu_mem_mib * 1048576.0;
		double need = f->allocated > f->device ? f->allocated : f->device;
		if (need <= cap)
			printf("fits: yes, %.1f of %ld MiB (%.1f MiB left)\n", mib(need), gpu_mem_mib, mib(cap - need));
		else
			printf("fits: no, needs %.1f MiB, %.1f MiB more than %ld MiB (StarPU will evict and fetch "
			       "again, or fail)\n", mib(need), mib(need - cap), gpu_mem_mib);
	}
}

static int dtype_is_bf16(const char *opt, const char *text, int *bf16)
{
	if (!strcmp(text, "fp32") || !strcmp(text, "bf16")) {
		*bf16 = !strcmp(text, "bf16");
		return 0;
	}
	fprintf(stderr, "lspo plan: %s: expected fp32 or bf16, got '%s'\n", opt, text);
	return -1;
}

int cmd_plan(int argc, char **argv)
{
	struct lspo_footprint_opts fo = lspo_footprint_opts_default();
	const char *model = NULL, *targets = NULL, *mode = "native";
	long gpu_mem = 0, v;
	int c, bad = 0;
	optind = 1;
	opterr = 0;
	while (!bad && (c = getopt_long(argc, argv, "", plan_options, NULL)) != -1) {
		switch (c) {
		case P_MODEL: model = optarg; break;
		case P_MODE: mode = optarg; break;
		case P_GPUMEM: bad = cli_parse_int("--gpu-mem", optarg, 1, 1L << 30, &gpu_mem); break;
		case P_BATCH: bad = cli_parse_int("--batch", optarg, 1, 1L << 20, &v); fo.batch = (int)v; break;
		case P_SEQ: bad = cli_parse_int("--seq", optarg, 1, 1L << 24, &v); fo.seq = (int)v; break;
		case P_LSPD: bad = cli_parse_int("--lsp-d", optarg, 1, 1L << 16, &v); fo.lsp_d = (int)v; break;
		case P_LSPR: bad = cli_parse_int("--lsp-r", optarg, 1, 1L << 16, &v); fo.lsp_r = (int)v; break;
		case P_SHARED: fo.lsp_shared = 1; break;
		case P_TARGETS: targets = optarg; break;
		case P_FREEZE: fo.freeze_dense = 1; break;
		case P_ODTYPE: bad = dtype_is_bf16("--offload-dtype", optarg, &fo.offload_bf16); break;
		case P_DTYPE: bad = dtype_is_bf16("--dtype", optarg, &fo.dtype_bf16); break;
		case P_BF16UPD: {
			enum lspo_bf16_update u = LSPO_BF16_MASTER;
			bad = lspo_bf16_update_parse(optarg, &u) ? -1 : 0;
			if (bad)
				fprintf(stderr, "lspo plan: --bf16-update: expected master or stochastic, got '%s'\n", optarg);
			fo.bf16_stochastic = u == LSPO_BF16_STOCHASTIC;
			break;
		}
		case P_CKPT: {   /* optional K: --checkpoint-activations=K or --checkpoint-activations K */
			const char *k = optarg;
			if (!k && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
				k = argv[optind++];
			fo.checkpoint_every = 1;
			if (k) {
				bad = cli_parse_int("--checkpoint-activations", k, 1, 1L << 20, &v);
				fo.checkpoint_every = (int)v;
			}
			break;
		}
		case P_ACCUM: bad = cli_parse_int("--grad-accum", optarg, 1, 1L << 20, &v); fo.grad_accum = (int)v; break;
		case P_HELP: fputs(plan_help, stdout); return CLI_OK;
		default:
			return cli_usage_error("plan", "unknown option or missing value: '%s'", argv[optind - 1]);
		}
	}
	if (bad)
		return CLI_USAGE;
	if (optind < argc)
		return cli_usage_error("plan", "unexpected argument '%s'", argv[optind]);
	if (!model)
		return cli_usage_error("plan", "--model DIR is required");
	if (lspo_mode_parse(mode, &fo.mode))
		return cli_usage_error("plan", "--mode: expected native, zero or lsp, got '%s'", mode);
	if (fo.bf16_stochastic && !fo.dtype_bf16)
		return cli_usage_error("plan", "--bf16-update stochastic needs --dtype bf16");
	if (fo.bf16_stochastic && fo.mode == LSPO_MODE_ZERO)
		return cli_usage_error("plan", "--bf16-update stochastic applies to --mode native and lsp");
	if (fo.mode == LSPO_MODE_LSP && fo.lsp_r > fo.lsp_d)
		return cli_usage_error("plan", "--lsp-r %d is larger than --lsp-d %d", fo.lsp_r, fo.lsp_d);

	struct lspo_model_config cfg;
	if (lspo_ckpt_read_config(model, &cfg)) {
		fprintf(stderr, "lspo plan: --model %s: no readable config.json\n", model);
		return CLI_FAIL;
	}
	if (targets && lspo_lsp_targets_parse(cfg.family, targets, &fo.lsp_targets))
		return CLI_USAGE;
	struct lspo_footprint f;
	if (lspo_footprint(&cfg, &fo, &f)) {
		fprintf(stderr, "lspo plan: --model %s: cannot compute the footprint of this run\n", model);
		return CLI_FAIL;
	}
	size_t nparams = lspo_model_nparams(&cfg);
	printf("lspo plan: %s, %s, %d layers, n_embd %d, vocab %d, %.1fM parameters; mode %s, B %d, T %d",
	       model, lspo_family_name(cfg.family), cfg.n_layer, cfg.n_embd, cfg.vocab_size, nparams / 1e6,
	       lspo_mode_name(fo.mode), fo.batch, fo.seq);
	if (fo.mode == LSPO_MODE_LSP)
		printf(", d %d, r %d", fo.lsp_d, fo.lsp_r);
	printf("%s%s%s", fo.dtype_bf16 ? ", bf16" : "", fo.bf16_stochastic ? " (stochastic updates, no fp32 master)" : "",
	       fo.offload_bf16 && fo.mode == LSPO_MODE_ZERO ? ", bf16 offload" : "");
	if (fo.checkpoint_every)
		printf(", checkpointing every %d block(s)", fo.checkpoint_every);
	if (fo.grad_accum > 1)
		printf(", %d micro-batches per step", fo.grad_accum);
	printf("\n");
	cli_print_footprint(&f, gpu_mem);
	return CLI_OK;
}
