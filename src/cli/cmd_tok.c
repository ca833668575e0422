/*
 * cmd_tok.c - `lspo encode` and `lspo decode` (a tokenizer.json on a text or
 * a list of ids), and the tokenizer side of `lspo tokenize`: documents (files
 * or JSONL records) to a token shard, with BOS/EOS separators, an optional
 * prompt/response template whose prompt tokens are masked out of the loss,
 * and a progress line on long inputs.  No StarPU needed.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Reads a whole file ("-" or NULL: stdin) into a malloc'd buffer. */
static int read_all(const char *path, char **out, size_t *len)
{
	FILE *f = path && strcmp(path, "-") ? fopen(path, "rb") : stdin;
	if (!f) {
		fprintf(stderr, "lspo: %s: cannot open: %s\n", path, strerror(errno));
		return -1;
	}
	size_t cap = 1 << 16, n = 0, got;
	char *buf = malloc(cap + 1);
	while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
		n += got;
		if (n == cap) {
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	int err = ferror(f);
	if (f != stdin)
		fclose(f);
	if (!buf || err) {
		fprintf(stderr, "lspo: %s: %s\n", path ? path : "stdin", buf ? "read error" : "out of memory");
		free(buf);
		return -1;
	}
	buf[n] = 0;
	*out = buf;
	*len = n;
	return 0;
}

static const char tok_help[] =
	"  --tokenizer DIR  a Hugging Face tokenizer: DIR/tokenizer.json (BPE), or the\n"
	"                   file itself; DIR/tokenizer_config.json names BOS and EOS\n";

static int tok_opts(const char *cmd, int argc, char **argv, const char *usage, const char **tok)
{
	static const struct option longopts[] = {
		{ "tokenizer", required_argument, 0, 't' }, { "help", no_argument, 0, 'h' }, { 0 } };
	int opt;
	optind = 1;
	*tok = NULL;
	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'h': printf("%s%s", usage, tok_help); return -1;
		case 't': *tok = optarg; break;
		default: return cli_usage_error(cmd, "unknown or incomplete option");
		}
	}
	if (!*tok)
		return cli_usage_error(cmd, "--tokenizer DIR is required");
	if (argc - optind > 1)
		return cli_usage_error(cmd, "expected at most one FILE, got %d", argc - optind);
	return 0;
}

int cmd_encode(int argc, char **argv)
{
	const char *tokdir;
	int rc = tok_opts("encode", argc, argv,
	                  "usage: lspo encode --tokenizer DIR [FILE]\n"
	                  "Prints the token ids of FILE (default: stdin) encoded as one text,\n"
	                  "space-separated on one line, with no special tokens added.\n", &tokdir);
	if (rc)
		return rc < 0 ? CLI_OK : rc;
	const char *path = optind < argc ? argv[optind] : NULL;
	struct lspo_tokenizer *t;
	if (lspo_tokenizer_load(tokdir, &t)) {
		fprintf(stderr, "lspo encode: cannot load the tokenizer %s\n", tokdir);
		return CLI_FAIL;
	}
	char *text;
	size_t len;
	if (read_all(path, &text, &len)) {
		lspo_tokenizer_free(t);
		return CLI_FAIL;
	}
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	rc = lspo_tokenizer_encode(t, text, len, &ids, &n, &cap);
	if (rc) {
		fprintf(stderr, "lspo encode: cannot encode %s: %s\n", path ? path : "stdin",
		        lspo_strerror(rc));
	} else {
		for (size_t i = 0; i < n; i++)
			printf(i ? " %u" : "%u", ids[i]);
		printf("\n");
	}
	free(ids);
	free(text);
	lspo_tokenizer_free(t);
	return rc || fflush(stdout) ? CLI_FAIL : CLI_OK;
}

int cmd_decode(int argc, char **argv)
{
	const char *tokdir;
	int rc = tok_opts("decode", argc, argv,
	                  "usage: lspo decode --tokenizer DIR [FILE]\n"
	                  "Reads token ids (decimal, separated by white space) from FILE (default:\n"
	                  "stdin) and writes their text, special tokens included, with nothing\n"
	                  "added (no final newline).\n", &tokdir);
	if (rc)
		return rc < 0 ? CLI_OK : rc;
	const char *path = optind < argc ? argv[optind] : NULL;
	char *text;
	size_t len;
	if (read_all(path, &text, &len))
		return CLI_FAIL;
	uint32_t *ids = malloc((len / 2 + 1) * sizeof(*ids));
	size_t n = 0;
	for (char *p = text; ids;) {
		while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
			p++;
		if (!*p)
			break;
		char *end;
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (end == p || errno || v > 0xffffffffUL || *p == '-' || *p == '+' ||
		    (*end && *end != ' ' && *end != '\n' && *end != '\t' && *end != '\r')) {
			fprintf(stderr, "lspo decode: %s: id %zu ('%.20s'): expected a decimal token id\n",
			        path ? path : "stdin", n + 1, p);
			free(ids);
			free(text);
			return CLI_FAIL;
		}
		ids[n++] = (uint32_t)v;
		p = end;
	}
	free(text);
	struct lspo_tokenizer *t;
	if (!ids || lspo_tokenizer_load(tokdir, &t)) {
		fprintf(stderr, "lspo decode: cannot load the tokenizer %s\n", tokdir);
		free(ids);
		return CLI_FAIL;
	}
	char *out;
	rc = lspo_tokenizer_decode(t, ids, n, 0, &out, &len);
	if (rc) {
		fprintf(stderr, "lspo decode: cannot decode %s: %s\n", path ? path : "stdin",
		        lspo_strerror(rc));
	} else {
		fwrite(out, 1, len, stdout);
		free(out);
	}
	free(ids);
	lspo_tokenizer_free(t);
	return rc || fflush(stdout) ? CLI_FAIL : CLI_OK;
}
