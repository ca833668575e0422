/*
 * lspo.c - entry point of the `lspo` command: dispatches to subcommands.
 * Job-script friendly: long options, one line per result, exit code 2 on
 * bad usage, 1 on failure.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cli.h"
#include <starpu.h>   /* with a SimGrid StarPU, renames main so that the simulation starts first */

static const struct {
	const char *name;
	int (*run)(int, char **);
	const char *summary;
} commands[] = {
	{ "info", cmd_info, "print StarPU's workers, features and the policies lspo accepts" },
	{ "selftest", cmd_selftest, "run a small checked task graph of lspo codelets" },
	{ "train", cmd_train, "train a GPT-2, Llama or Qwen2 checkpoint on a token shard" },
	{ "plan", cmd_plan, "the memory a training run needs, and whether it fits (runs nothing)" },
	{ "eval", cmd_eval, "validation loss and perplexity of a checkpoint" },
	{ "init", cmd_init, "write a randomly initialised checkpoint (HF layout)" },
	{ "tokenize", cmd_tokenize, "turn a file into an llm.c token shard" },
	{ "check", cmd_check, "validate a checkpoint and token shards" },
	{ "encode", cmd_encode, "print the token ids of a text (tokenizer.json)" },
	{ "decode", cmd_decode, "print the text of token ids (tokenizer.json)" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: lspo COMMAND [OPTIONS]   (lspo COMMAND --help for its options)\n\n"
	             "LSP-Offload fine-tuning on the StarPU task runtime.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nSTARPU_* environment variables (STARPU_NCPU, STARPU_SCHED, ...) are honoured;\n"
	             "--sched wins over STARPU_SCHED.\n");
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "lspo %s: ", cmd);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(run 'lspo %s --help' for the options)\n", cmd);
	va_end(ap);
	return CLI_USAGE;
}

int cli_parse_int(const char *opt, const char *text, long lo, long hi, long *out)
{
	char *end;
	errno = 0;
	long v = strtol(text, &end, 10);
	if (errno || end == text || *end || v < lo || v > hi) {
		fprintf(stderr, "lspo: %s: expected an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, text);
		return -1;
	}
	*out = v;
	return 0;
}

int cli_parse_float(const char *opt, const char *text, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(text, &end);
	if (errno || end == text || *end || !isfinite(v) || v < lo || v > hi) {
		fprintf(stderr, "lspo: %s: expected a number in [%g, %g], got '%s'\n", opt, lo, hi, text);
		return -1;
	}
	*out = v;
	return 0;
}

/* Visible even under -fvisibility=hidden: a SimGrid StarPU renames main to
 * starpu_main and looks it up by name to start the simulation. */
__attribute__((visibility("default"))) int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return CLI_OK;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("lspo %s\n", PACKAGE_VERSION);
		return CLI_OK;
	}
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "lspo: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return CLI_USAGE;
}
