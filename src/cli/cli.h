/* cli.h - the `lspo` command: subcommands and the option helpers they share. */
#ifndef LSPO_CLI_H
#define LSPO_CLI_H

#include "lspo.h"

/* Exit codes: 0 success, 1 runtime failure, 2 bad usage, 75 (EX_TEMPFAIL)
 * interrupted by a signal after a checkpoint: resumable. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_TEMPFAIL = 75 };

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
int cmd_plan(int argc, char **argv);      /* cmd_plan.c */
/* The footprint's line, and with gpu_mem_mib > 0 whether it fits (cmd_plan.c). */
void cli_print_footprint(const struct lspo_footprint *f, long gpu_mem_mib);
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

/* ---- job.c: safety of batch jobs ---------------------------------------- */
/* SIGTERM, SIGINT, SIGUSR1, SIGUSR2 set a flag (job_signal_pending returns
 * the signal); a second one exits at once with CLI_TEMPFAIL. */
void job_signals_install(void);
int job_signal_pending(void);
/* Blocks (1) or unblocks (0) those signals in the calling thread; threads
 * started meanwhile (StarPU's workers) inherit the mask, so the handler runs
 * in the main thread only. */
void job_signals_block(int block);
const char *job_signal_name(int sig);
/* CLI_FAIL with a message naming the option unless `path` is a regular file. */
int job_check_input(const char *opt, const char *path);
/* CLI_FAIL naming the file and tensor when any DIR/ *.safetensors file (model
 * shards, training state) holds a non-finite value. */
int job_check_finite_dir(const char *dir);
/* An output file: creatable or writable, a regular file (or /dev/null),
 * and not the same file (device and inode) as any of the inputs. */
int job_check_output_file(const char *opt, const char *path, const char *const *inputs, int ninputs);
/* An output directory: writable, or creatable under a writable ancestor;
 * not the same directory as any of the inputs. */
int job_check_output_dir(const char *opt, const char *dir, const char *const *inputs, int ninputs);
/* Opens the CSV log: header, then the complete rows of steps 1..upto that
 * the file already holds (upto 0: a new log); later rows are dropped. */
int job_log_open(const char *path, const char *header, long upto, FILE **fp);
/* Flushes the log after a row; CLI_FAIL naming the file on a write error. */
int job_log_flush(const char *path, FILE *f);
/* CLI_USAGE naming the config field when `copies` float32 copies of the
 * parameters cannot be addressed or exceed the machine's memory. */
int job_check_model_size(const char *cmd, const struct lspo_model_config *cfg, double copies);
/* --config FILE (a JSON object of option names and values) becomes options
 * placed before the command line's, which override them.  Returns -1 to go
 * on (with nargc and nargv to parse), else the exit code. */
int job_config_expand(const char *cmd, int argc, char **argv, int *nargc, char ***nargv, char ***owned);
void job_config_free(char **nargv, char **argv, char **owned);

/* Data parallel runs (dp_watch.c): a rank without progress (a beat) for
 * `seconds` stops every rank.  No-op (out NULL) for one rank or seconds <= 0. */
struct dp_watch;
int dp_watch_start(struct lspo_dp *dp, double seconds, struct dp_watch **out);
void dp_watch_beat(struct dp_watch *w);   /* NULL: no-op */
void dp_watch_stop(struct dp_watch *w);   /* NULL: no-op */

#endif
