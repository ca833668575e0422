/*
 * job.c - what makes `lspo train` safe in a batch job: signals that end a
 * run with a checkpoint (exit 75, resumable), checks of every input and
 * output before training starts (regular files, writable, never the same
 * file as an input), a CSV log that never loses or repeats a step across
 * resumes, sizes checked in 64 bits, and `--config FILE`.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* ---------------------------------------------------------------------- */
/* signals                                                                */

static volatile sig_atomic_t pending_signal;

static void on_signal(int sig)
{
	if (pending_signal) {
		static const char msg[] = "lspo: second signal: stopping at once; the last published "
		                          "checkpoint stays as it was\n";
		ssize_t w = write(STDERR_FILENO, msg, sizeof(msg) - 1);
		(void)w;
		_exit(CLI_TEMPFAIL);
	}
	pending_signal = sig;
}

void job_signals_install(void)
{
	static const int sigs[] = { SIGTERM, SIGINT, SIGUSR1, SIGUSR2 };
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
}

static sigset_t job_set(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	return set;
}

void job_signals_block(int block)
{
	sigset_t set = job_set();
	pthread_sigmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

int job_signal_pending(void)
{
	return pending_signal;
}

const char *job_signal_name(int sig)
{
	switch (sig) {
	case SIGTERM: return "SIGTERM";
	case SIGINT: return "SIGINT";
	case SIGUSR1: return "SIGUSR1";
	case SIGUSR2: return "SIGUSR2";
	default: return "a signal";
	}
}

/* ---------------------------------------------------------------------- */
/* inputs and outputs                                                     */

int job_check_input(const char *opt, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		fprintf(stderr, "lspo: %s %s: cannot open: %s\n", opt, path, strerror(errno));
		return CLI_FAIL;
	}
	if (!S_ISREG(st.st_mode)) {
		fprintf(stderr, "lspo: %s %s: not a regular file (a %s): inputs must be regular files\n", opt,
		        path, S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO" :
		        S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "device" : "special file");
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* The directory part of `path` ("." when none). */
static char *parent_of(const char *path)
{
	char *d = strdup(path);
	if (!d)
		return NULL;
	char *slash = strrchr(d, '/');
	if (!slash)
		strcpy(d, ".");
	else if (slash == d)
		slash[1] = '\0';
	else
		*slash = '\0';
	return d;
}

int job_check_output_file(const char *opt, const char *path, const char *const *inputs, int ninputs)
{
	struct stat st;
	if (stat(path, &st) == 0) {
		if (!strcmp(path, "/dev/null"))
			return CLI_OK;
		if (!S_ISREG(st.st_mode)) {
			fprintf(stderr, "lspo: %s %s: not a regular file (a %s): refusing to write there\n", opt,
			        path, S_ISDIR(st.st_mode) ? "directory" : S_ISFIFO(st.st_mode) ? "FIFO" :
			        S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "device" : "special file");
			return CLI_FAIL;
		}
		for (int i = 0; i < ninputs; i++) {
			struct stat in;
			if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
				fprintf(stderr, "lspo: %s %s: is the same file as the input %s: refusing to "
				        "overwrite an input\n", opt, path, inputs[i]);
				return CLI_FAIL;
			}
		}
		if (access(path, W_OK) != 0) {
			fprintf(stderr, "lspo: %s %s: not writable: %s\n", opt, path, strerror(errno));
			return CLI_FAIL;
		}
		return CLI_OK;
	}
	char *dir = parent_of(path);
	int ok = dir && access(dir, W_OK | X_OK) == 0;
	int e = errno;
	if (!ok)
		fprintf(stderr, "lspo: %s %s: cannot create it: directory %s: %s\n", opt, path, dir ? dir : "?",
		        strerror(e));
	free(dir);
	return ok ? CLI_OK : CLI_FAIL;
}

int job_check_output_dir(const char *opt, const char *dir, const char *const *inputs, int ninputs)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			fprintf(stderr, "lspo: %s %s: exists and is not a directory\n", opt, dir);
			return CLI_FAIL;
		}
		for (int i = 0; i < ninputs; i++) {
			struct stat in;
			if (inputs[i] && stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
				fprintf(stderr, "lspo: %s %s: is the input directory %s: refusing to write into "
				        "an input\n", opt, dir, inputs[i]);
				return CLI_FAIL;
			}
		}
		if (access(dir, W_OK | X_OK) != 0) {
			fprintf(stderr, "lspo: %s %s: not writable: %s\n", opt, dir, strerror(errno));
			return CLI_FAIL;
		}
		return CLI_OK;
	}
	/* the nearest existing ancestor must be a writable directory */
	char *p = strdup(dir);
	int rc = CLI_FAIL;
	while (p) {
		char *up = parent_of(p);
		free(p);
		p = up;
		if (!p)
			break;
		if (stat(p, &st) == 0) {
			if (S_ISDIR(st.st_mode) && access(p, W_OK | X_OK) == 0)
				rc = CLI_OK;
			else
				fprintf(stderr, "lspo: %s %s: cannot create it: %s is not a writable directory\n",
				        opt, dir, p);
			break;
		}
		if (!strcmp(p, ".") || !strcmp(p, "/"))
			break;
	}
	free(p);
	return rc;
}

int job_check_finite_dir(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return CLI_OK;   /* the loader names what is missing */
	struct dirent *e;
	int rc = CLI_OK;
	while (!rc && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors"))
			continue;
		char *p;
		if (asprintf(&p, "%s/%s", dir, e->d_name) < 0)
			rc = CLI_FAIL;
		else if (lspo_st_check_finite(p))
			rc = CLI_FAIL;
		if (rc)
			fprintf(stderr, "lspo: %s: holds non-finite values: refusing to use it\n", p);
		free(p);
	}
	closedir(d);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* the CSV log                                                            */

/* Keeps the header and the complete rows of steps <= upto; appends after. */
int job_log_open(const char *path, const char *header, long upto, FILE **fp)
{
	*fp = NULL;
	char *keep = NULL;
	size_t keep_len = 0;
	FILE *old = upto > 0 ? fopen(path, "r") : NULL;
	if (old) {
		FILE *mem = open_memstream(&keep, &keep_len);
		char *line = NULL;
		size_t cap = 0;
		ssize_t n;
		long dropped = 0;
		while (mem && (n = getline(&line, &cap, old)) > 0) {
			if (line[n - 1] != '\n') {   /* a row cut by a kill */
				dropped++;
				continue;
			}
			char *end;
			long step = strtol(line, &end, 10);
			if (end != line && *end == ',' && step >= 1 && step <= upto)
				fputs(line, mem);
			else if (end != line)
				dropped++;
		}
		free(line);
		fclose(old);
		if (!mem) {
			fprintf(stderr, "lspo: --log %s: out of memory\n", path);
			return CLI_FAIL;
		}
		fclose(mem);
		if (dropped)
			printf("log %s: %ld row(s) after step %ld dropped (written after the checkpoint)\n", path,
			       dropped, upto);
	}
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "lspo: --log %s: cannot open for writing: %s\n", path, strerror(errno));
		free(keep);
		return CLI_FAIL;
	}
	fprintf(f, "%s\n", header);
	if (keep_len)
		fwrite(keep, 1, keep_len, f);
	free(keep);
	if (fflush(f) != 0 || ferror(f)) {
		fprintf(stderr, "lspo: --log %s: write failed: %s\n", path, strerror(errno));
		fclose(f);
		return CLI_FAIL;
	}
	*fp = f;
	return CLI_OK;
}

int job_log_flush(const char *path, FILE *f)
{
	if (fflush(f) != 0 || ferror(f)) {
		fprintf(stderr, "lspo: --log %s: write failed: %s\n", path, strerror(errno));
		return CLI_FAIL;
	}
	return CLI_OK;
}

/* ---------------------------------------------------------------------- */
/* sizes                                                                  */

int job_check_model_size(const char *cmd, const struct lspo_model_config *c, double copies)
{
	/* in long double, before any library size computation: nothing wraps */
	long double C = c->n_embd, V = c->vocab_size, P = c->n_positions, L = c->n_layer, H = c->n_head;
	long double hd = c->head_dim > 0 ? c->head_dim : (H > 0 ? C / H : C);
	long double q = H * hd, kv = (c->n_kv_head > 0 ? c->n_kv_head : H) * hd;
	long double inner = c->n_inner > 0 ? c->n_inner : 4 * C;
	int gpt2 = c->family == LSPO_FAMILY_GPT2;
	long double emb = V * C * (gpt2 || c->tie_word_embeddings ? 1 : 2) + (gpt2 ? P * C : 0);
	long double attn = L * (C * q + 2 * C * kv + q * C), mlp = L * (gpt2 ? 2 : 3) * C * inner;
	long double params = emb + attn + mlp + L * 16 * C + 2 * C;
	long double bytes = params * 4.0L * (long double)copies;
	long double widest = q + 2 * kv > inner ? q + 2 * kv : inner;
	if (4 * C > widest)
		widest = 4 * C;
	const char *field = emb >= attn && emb >= mlp ? "vocab_size" : mlp > attn && c->n_inner > 0 ?
	                    "intermediate_size" : "n_embd";
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	long double mem = pages > 0 && psize > 0 ? (long double)pages * psize : 0;
	if (widest > INT_MAX || V > INT_MAX || params * 4 > (long double)SIZE_MAX / 8) {
		fprintf(stderr, "lspo %s: field '%s': vocab_size %d, n_embd %d, n_layer %d cannot be addressed "
		        "(every tensor dimension must stay below 2^31); it would need %.3Lg bytes\n", cmd, field,
		        c->vocab_size, c->n_embd, c->n_layer, bytes);
		return CLI_USAGE;
	}
	if (mem > 0 && bytes > mem) {
		fprintf(stderr, "lspo %s: field '%s': vocab_size %d, n_positions %d, n_embd %d, n_layer %d "
		        "need %.3Lg bytes (%.3Lg parameters, %g float32 copies), the machine has %.3Lg "
		        "bytes of memory\n", cmd, field, c->vocab_size, c->n_positions, c->n_embd,
		        c->n_layer, bytes, params, copies, mem);
		return CLI_USAGE;
	}
	return CLI_OK;
}

/* ---------------------------------------------------------------------- */
/* --config FILE                                                          */

/* Appends "--key[=value]" strings of the JSON object at `path`. */
static int config_args(const char *cmd, const char *path, char ***args, int *n, int *cap)
{
	if (job_check_input("--config", path))
		return CLI_FAIL;
	json_error_t err;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		fprintf(stderr, "lspo %s: --config %s: not valid JSON (line %d, column %d: %s)\n", cmd, path,
		        err.line, err.column, err.text);
		return CLI_FAIL;
	}
	if (!json_is_object(root)) {
		json_decref(root);
		fprintf(stderr, "lspo %s: --config %s: expected a JSON object of option names and values\n",
		        cmd, path);
		return CLI_FAIL;
	}
	const char *key;
	json_t *v;
	int rc = CLI_OK;
	json_object_foreach(root, key, v) {
		char *name = NULL, *arg = NULL;
		if (asprintf(&name, "--%s", key[0] == '-' && key[1] == '-' ? key + 2 : key) < 0) {
			rc = CLI_FAIL;
			break;
		}
		for (char *p = name + 2; *p; p++)
			if (*p == '_')
				*p = '-';
		int r = 0;
		if (!strcmp(name, "--config") || !strcmp(name, "--help")) {
			fprintf(stderr, "lspo %s: --config %s: field '%s' is not allowed in a config file\n", cmd,
			        path, key);
			free(name);
			rc = CLI_USAGE;
			break;
		} else if (json_is_true(v)) {
			arg = name;
			name = NULL;
		} else if (json_is_false(v) || json_is_null(v)) {
			free(name);
			continue;
		} else if (json_is_string(v)) {
			r = asprintf(&arg, "%s=%s", name, json_string_value(v));
		} else if (json_is_integer(v)) {
			r = asprintf(&arg, "%s=%lld", name, (long long)json_integer_value(v));
		} else if (json_is_real(v)) {
			r = asprintf(&arg, "%s=%.17g", name, json_real_value(v));
		} else {
			fprintf(stderr, "lspo %s: --config %s: field '%s': expected a string, number or "
			        "boolean\n", cmd, path, key);
			free(name);
			rc = CLI_USAGE;
			break;
		}
		free(name);
		if (r < 0 || !arg) {
			rc = CLI_FAIL;
			break;
		}
		if (*n + 2 > *cap) {
			char **t = realloc(*args, (size_t)(*cap = 2 * *cap + 16) * sizeof(char *));
			if (!t) {
				free(arg);
				rc = CLI_FAIL;
				break;
			}
			*args = t;
		}
		(*args)[(*n)++] = arg;
	}
	json_decref(root);
	return rc;
}

int job_config_expand(const char *cmd, int argc, char **argv, int *nargc, char ***nargv, char ***owned)
{
	*nargc = argc;
	*nargv = argv;
	*owned = NULL;
	const char *file = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config") && i + 1 < argc)
			file = argv[i + 1];
		else if (!strncmp(argv[i], "--config=", 9))
			file = argv[i] + 9;
		else if (!strcmp(argv[i], "--config"))
			return cli_usage_error(cmd, "--config needs a FILE");
	}
	if (!file)
		return -1;
	char **args = NULL;
	int n = 0, cap = 0;
	int rc = config_args(cmd, file, &args, &n, &cap);
	char **v = rc ? NULL : malloc((size_t)(argc + n + 1) * sizeof(char *));
	if (!v) {
		for (int i = 0; i < n; i++)
			free(args[i]);
		free(args);
		return rc ? rc : CLI_FAIL;
	}
	/* argv[0], the file's options, then the command line's (which win) */
	int k = 0;
	v[k++] = argv[0];
	for (int i = 0; i < n; i++)
		v[k++] = args[i];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--config")) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--config=", 9))
			continue;
		v[k++] = argv[i];
	}
	v[k] = NULL;
	args = realloc(args, (size_t)(n + 1) * sizeof(char *));
	if (args)
		args[n] = NULL;
	*nargc = k;
	*nargv = v;
	*owned = args;
	return -1;
}

void job_config_free(char **nargv, char **argv, char **owned)
{
	if (owned)
		for (char **p = owned; *p; p++)
			free(*p);
	free(owned);
	if (nargv != argv)
		free(nargv);
}
