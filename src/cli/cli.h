/* cli.h - the `lspo` command: subcommands and the option helpers they share. */
#ifndef LSPO_CLI_H
#define LSPO_CLI_H

#include "lspo.h"

/* Exit codes: 0 success, 1 runtime failure, 2 bad usage. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/* Each subcommand gets argv with argv[0] = its name. */
int cmd_info(int argc, char **argv);
int cmd_selftest(int argc, char **argv);
int cmd_train(int argc, char **argv);     /* cmd_train.c */
int cmd_eval(int argc, char **argv);      /* cmd_train.c */
int cmd_init(int argc, char **argv);      /* cmd_data.c */
int cmd_tokenize(int argc, char **argv);  /* cmd_data.c */
int cmd_check(int argc, char **argv);     /* cmd_data.c */
int cmd_encode(int argc, char **argv);    /* cmd_tok.c */
int cmd_decode(int argc, char **argv);    /* cmd_tok.c */
/* `lspo tokenize --tokenizer` (cmd_tok.c): files as documents, or JSONL
 * prompt/response records with the prompt masked out of the loss. */
int cli_tokenize_text(const char *tokdir, char **in, int nin, const char *out, int bos, int eos,
                      int nthreads);
int cli_tokenize_jsonl(const char *tokdir, const char *jsonl, const char *prompt_field,
                       const char *response_field, const char *template_path, const char *out,
                       int bos, int nthreads);

/* Parses a whole decimal integer in [lo, hi] for option `opt`; on error
 * prints a message and returns -1. */
int cli_parse_int(const char *opt, const char *text, long lo, long hi, long *out);
/* Same for a finite float in [lo, hi]. */
int cli_parse_float(const char *opt, const char *text, double lo, double hi, double *out);

/* Prints `fmt` as "lspo: <msg>" and a hint to run --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
