/* cmd_info.c - `lspo info` and `lspo selftest`: StarPU as lspo sees it. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "cli.h"

/* Options every StarPU-running subcommand shares. */
#define CTX_OPTIONS_HELP \
	"  --sched NAME     scheduling policy: lspo (default) or any StarPU policy\n" \
	"  --ncpus N        CPU workers (default: STARPU_NCPU or every core)\n" \
	"  --ncuda N        CUDA workers (default: STARPU_NCUDA or every GPU)\n" \
	"  --trace DIR      record tasks.csv and summary.txt (and, with FxT, a StarPU FxT\n" \
	"                   trace) into DIR\n"

static int parse_ctx_option(const char *cmd, int opt, struct lspo_config *cfg)
{
	long v;
	switch (opt) {
	case 's': cfg->sched = optarg; return 0;
	case 'c': if (cli_parse_int("--ncpus", optarg, 0, 4096, &v)) return CLI_USAGE;
		  cfg->ncpus = (int)v; return 0;
	case 'g': if (cli_parse_int("--ncuda", optarg, 0, 64, &v)) return CLI_USAGE;
		  cfg->ncuda = (int)v; return 0;
	case 't': cfg->trace_dir = optarg; return 0;
	default: return cli_usage_error(cmd, "unknown or incomplete option");
	}
}

static int start(const struct lspo_config *cfg, struct lspo_ctx **ctx)
{
	int rc = lspo_ctx_create(cfg, ctx);
	if (rc) {
		fprintf(stderr, "lspo: cannot start StarPU: %s\n", lspo_strerror(rc));
		return rc == LSPO_EINVAL ? CLI_USAGE : CLI_FAIL;
	}
	return CLI_OK;
}

int cmd_info(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "sched", required_argument, 0, 's' }, { "ncpus", required_argument, 0, 'c' },
		{ "ncuda", required_argument, 0, 'g' }, { "help", no_argument, 0, 'h' }, { 0 } };
	struct lspo_config cfg = lspo_config_default();
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (opt == 'h') {
			printf("usage: lspo info [--sched NAME] [--ncpus N] [--ncuda N]\n" CTX_OPTIONS_HELP);
			return CLI_OK;
		}
		int rc = parse_ctx_option("info", opt, &cfg);
		if (rc)
			return rc;
	}
	if (optind < argc)
		return cli_usage_error("info", "unexpected argument '%s'", argv[optind]);
	struct lspo_ctx *ctx;
	int rc = start(&cfg, &ctx);
	if (rc)
		return rc;
	printf("lspo %s\n", PACKAGE_VERSION);
	lspo_ctx_describe(ctx, stdout);
	printf("policies:");
	for (const char *const *n = lspo_sched_names(); *n; n++)
		printf(" %s", *n);
	printf("\n");
	lspo_ctx_destroy(ctx);
	return CLI_OK;
}

int cmd_selftest(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "n", required_argument, 0, 'n' }, { "chains", required_argument, 0, 'C' },
		{ "depth", required_argument, 0, 'D' }, { "sched", required_argument, 0, 's' },
		{ "ncpus", required_argument, 0, 'c' }, { "ncuda", required_argument, 0, 'g' },
		{ "trace", required_argument, 0, 't' }, { "help", no_argument, 0, 'h' }, { 0 } };
	struct lspo_config cfg = lspo_config_default();
	long n = 256, chains = 8, depth = 6;
	int opt;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		int bad = 0;
		switch (opt) {
		case 'h':
			printf("usage: lspo selftest [OPTIONS]\n"
			       "Runs CHAINS chains of DEPTH N x N matrix products and a fan-in as StarPU\n"
			       "tasks, checks the result against double precision, prints the workers.\n"
			       "  --n N            matrix size (default 256)\n"
			       "  --chains C       independent chains (default 8)\n"
			       "  --depth D        products per chain (default 6)\n" CTX_OPTIONS_HELP);
			return CLI_OK;
		case 'n': bad = cli_parse_int("--n", optarg, 1, 8192, &n); break;
		case 'C': bad = cli_parse_int("--chains", optarg, 1, 1024, &chains); break;
		case 'D': bad = cli_parse_int("--depth", optarg, 1, 1024, &depth); break;
		default: {
			int rc = parse_ctx_option("selftest", opt, &cfg);
			if (rc)
				return rc;
		}
		}
		if (bad)
			return CLI_USAGE;
	}
	if (optind < argc)
		return cli_usage_error("selftest", "unexpected argument '%s'", argv[optind]);
	struct lspo_ctx *ctx;
	int rc = start(&cfg, &ctx);
	if (rc)
		return rc;
	lspo_ctx_describe(ctx, stdout);
	struct lspo_selftest_report r;
	rc = lspo_selftest(ctx, (int)n, (int)chains, (int)depth, &r);
	printf("selftest: %d matmul tasks (%d on CPU, %d on CUDA), %ldx%ld, %.3f s, "
	       "max relative error %.2e -> %s\n", r.ntasks, r.tasks_on_cpu, r.tasks_on_cuda,
	       n, n, r.seconds, r.max_rel_err, rc ? "FAILED" : "OK");
	lspo_ctx_destroy(ctx);
	if (cfg.trace_dir)
		printf("FxT trace in %s (convert to a time-ordered paje.trace: scripts/paje-trace %s)\n",
		       cfg.trace_dir, cfg.trace_dir);
	return rc ? CLI_FAIL : CLI_OK;
}
