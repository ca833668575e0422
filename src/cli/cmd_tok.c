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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* ---------------------------------------------------------------------- */
/* lspo tokenize --tokenizer                                              */

struct progress {
	size_t total, done, ntok;
	double t0, last;
	int active, tty;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Inputs larger than this get a progress line: LSPO_PROGRESS_BYTES, or 16 MB. */
static size_t progress_min(void)
{
	const char *e = getenv("LSPO_PROGRESS_BYTES");
	char *end;
	unsigned long long v = e ? strtoull(e, &end, 10) : 0;
	return e && *e && !*end ? (size_t)v : (size_t)16 << 20;
}

/* A progress line on stderr for large inputs: rewritten in place on a
 * terminal every second, a new line every 10 s otherwise, and at the end. */
static void progress_tick(struct progress *p, int final)
{
	double t = now_s();
	if (!p->active || (!final && t - p->last < (p->tty ? 1.0 : 10.0)))
		return;
	p->last = t;
	double mb = (double)p->done / 1e6, el = t - p->t0 > 1e-9 ? t - p->t0 : 1e-9;
	fprintf(stderr, "%stokenize: %.1f of %.1f MB (%.0f%%), %.1f MB/s, %zu tokens%s",
	        p->tty ? "\r" : "", mb, (double)p->total / 1e6,
	        p->total ? 100.0 * (double)p->done / (double)p->total : 100.0, mb / el, p->ntok,
	        p->tty && !final ? "" : "\n");
}

/* Texts encoded by a pool of threads, one tokenizer handle each (threads
 * over documents); the results are written in input order, so the shard
 * does not depend on the thread count. */
struct enc_item {
	const char *text;
	size_t len;
	uint32_t *ids;
	size_t n, cap;
	int rc;
};

struct pool {
	struct lspo_tokenizer **h;   /* (nthreads); h[0] is the loaded one */
	int nthreads;                /* 1 .. 64 */
	struct enc_item *items;      /* (nitems) */
	size_t nitems, nrun;         /* allocated, encoded by pool_run */
};

struct worker { struct pool *p; int k, step; };

static void *encode_worker(void *arg)
{
	struct worker *w = arg;
	struct pool *p = w->p;
	for (size_t i = (size_t)w->k; i < p->nrun; i += (size_t)w->step) {
		struct enc_item *it = &p->items[i];
		it->n = 0;
		it->rc = lspo_tokenizer_encode(p->h[w->k], it->text, it->len, &it->ids, &it->n, &it->cap);
	}
	return NULL;
}

static int pool_open(struct pool *p, const char *tokdir, int nthreads)
{
	memset(p, 0, sizeof(*p));
	nthreads = nthreads < 1 ? 1 : nthreads > 64 ? 64 : nthreads;
	p->h = calloc((size_t)nthreads, sizeof(*p->h));
	if (!p->h || lspo_tokenizer_load(tokdir, &p->h[0])) {
		fprintf(stderr, "lspo tokenize: cannot load the tokenizer %s\n", tokdir);
		free(p->h);
		p->h = NULL;
		return CLI_FAIL;
	}
	p->nthreads = 1;
	for (int i = 1; i < nthreads; i++, p->nthreads++)
		if (lspo_tokenizer_dup(p->h[0], &p->h[i]))
			return CLI_FAIL;
	return CLI_OK;
}

static void pool_close(struct pool *p)
{
	for (int i = 0; p->h && i < p->nthreads; i++)
		lspo_tokenizer_free(p->h[i]);
	free(p->h);
	for (size_t i = 0; i < p->nitems; i++)
		free(p->items[i].ids);
	free(p->items);
}

/* Encodes items [0, n): item i by thread i mod (threads used); a thread
 * that cannot be created has its share done by the calling thread. */
static int pool_run(struct pool *p, size_t n)
{
	p->nrun = n;
	int nt = p->nthreads < (int)n ? p->nthreads : (int)n;
	pthread_t th[64];
	struct worker w[64];
	int made[64] = { 0 };
	for (int k = 0; k < nt; k++) {
		w[k] = (struct worker){ p, k, nt };
		if (k > 0)
			made[k] = pthread_create(&th[k], NULL, encode_worker, &w[k]) == 0;
	}
	for (int k = 0; k < nt; k++)
		if (!made[k])
			encode_worker(&w[k]);
	for (int k = 1; k < nt; k++)
		if (made[k])
			pthread_join(th[k], NULL);
	for (size_t i = 0; i < n; i++)
		if (p->items[i].rc)
			return p->items[i].rc;
	return LSPO_OK;
}

static int pool_items(struct pool *p, size_t n)
{
	if (n <= p->nitems)
		return CLI_OK;
	struct enc_item *q = realloc(p->items, n * sizeof(*q));
	if (!q)
		return CLI_FAIL;
	memset(q + p->nitems, 0, (n - p->nitems) * sizeof(*q));
	p->items = q;
	p->nitems = n;
	return CLI_OK;
}

struct tk_job {
	struct pool pool;
	struct lspo_shard_writer *w;
	struct progress prog;
};

static int put_ids(struct tk_job *j, const uint32_t *ids, size_t n, int target)
{
	if (lspo_shard_writer_add(j->w, ids, n, target))
		return CLI_FAIL;
	j->prog.ntok += n;
	return CLI_OK;
}

static int put_id(struct tk_job *j, int32_t id, int target)
{
	uint32_t u = (uint32_t)id;
	return put_ids(j, &u, 1, target);
}

int cli_tokenize_text(const char *tokdir, char **in, int nin, const char *out, int bos, int eos,
                      int nthreads)
{
	struct tk_job j = { 0 };
	if (pool_open(&j.pool, tokdir, nthreads)) {
		pool_close(&j.pool);
		return CLI_FAIL;
	}
	struct lspo_tokenizer *t = j.pool.h[0];
	int32_t b = lspo_tokenizer_bos(t), e = lspo_tokenizer_eos(t);
	int between = !bos && !eos && e >= 0;
	int rc = CLI_OK;
	if ((bos && b < 0) || (eos && e < 0)) {
		fprintf(stderr, "lspo tokenize: %s has no %s token (tokenizer_config.json names none, "
		        "and none of the usual names is in the vocabulary)\n", tokdir, bos && b < 0 ? "BOS" : "EOS");
		pool_close(&j.pool);
		return CLI_FAIL;
	}
	for (int i = 0; i < nin; i++) {
		FILE *f = fopen(in[i], "rb");
		if (!f || fseek(f, 0, SEEK_END) != 0) {
			fprintf(stderr, "lspo tokenize: %s: cannot open: %s\n", in[i], strerror(errno));
			if (f)
				fclose(f);
			pool_close(&j.pool);
			return CLI_FAIL;
		}
		long sz = ftell(f);
		j.prog.total += sz > 0 ? (size_t)sz : 0;
		fclose(f);
	}
	j.prog.active = j.prog.total > progress_min();
	j.prog.tty = isatty(2);
	j.prog.t0 = j.prog.last = now_s();
	if (lspo_shard_writer_open(out, lspo_tokenizer_vocab_size(t), 0, &j.w)) {
		pool_close(&j.pool);
		return CLI_FAIL;
	}
	/* files in groups of one per thread */
	size_t group = (size_t)j.pool.nthreads;
	if (pool_items(&j.pool, group))
		rc = CLI_FAIL;
	for (int i0 = 0; i0 < nin && !rc; i0 += (int)group) {
		size_t ng = 0;
		for (int i = i0; i < nin && ng < group && !rc; i++, ng++) {
			char *text;
			size_t len;
			if (read_all(in[i], &text, &len))
				rc = CLI_FAIL;
			else
				j.pool.items[ng].text = text, j.pool.items[ng].len = len;
		}
		if (!rc && pool_run(&j.pool, ng) != LSPO_OK) {
			for (size_t k = 0; k < ng; k++)
				if (j.pool.items[k].rc)
					fprintf(stderr, "lspo tokenize: cannot encode %s: %s\n", in[i0 + (int)k],
					        lspo_strerror(j.pool.items[k].rc));
			rc = CLI_FAIL;
		}
		for (size_t k = 0; k < ng && !rc; k++) {
			struct enc_item *it = &j.pool.items[k];
			if (between && i0 + k > 0)
				rc = put_id(&j, e, 1);
			if (!rc && bos)
				rc = put_id(&j, b, 1);
			if (!rc)
				rc = put_ids(&j, it->ids, it->n, 1);
			if (!rc && eos)
				rc = put_id(&j, e, 1);
			j.prog.done += it->len;
		}
		for (size_t k = 0; k < ng; k++) {
			free((char *)j.pool.items[k].text);
			j.pool.items[k].text = NULL;
		}
		progress_tick(&j.prog, 0);
	}
	size_t n = lspo_shard_writer_ntokens(j.w);
	if (lspo_shard_writer_close(j.w, rc == CLI_OK))
		rc = CLI_FAIL;
	progress_tick(&j.prog, 1);
	if (!rc)
		printf("tokenize: %d file(s), %zu bytes -> %s: %zu tokens (uint%d, vocab %u)%s%s%s\n", nin,
		       j.prog.total, out, n, lspo_tokenizer_vocab_size(t) > 65535 ? 32 : 16,
		       lspo_tokenizer_vocab_size(t), bos ? ", BOS before each" : "",
		       eos ? ", EOS after each" : "", between ? ", EOS between documents" : "");
	else
		fprintf(stderr, "lspo tokenize: no shard written to %s\n", out);
	pool_close(&j.pool);
	return rc;
}

/* Splits a template at "{prompt}" and "{response}" (once each, in that
 * order) into pre, mid (between them) and post. */
static int split_template(const char *path, const char *tpl, const char *parts[3], size_t len[3])
{
	const char *p = strstr(tpl, "{prompt}"), *r = strstr(tpl, "{response}");
	if (!p || !r || r < p || strstr(p + 1, "{prompt}") || strstr(r + 1, "{response}")) {
		fprintf(stderr, "lspo tokenize: %s: a template holds {prompt} and then {response}, once "
		        "each\n", path);
		return -1;
	}
	parts[0] = tpl, len[0] = (size_t)(p - tpl);
	parts[1] = p + 8, len[1] = (size_t)(r - (p + 8));
	parts[2] = r + 10, len[2] = strlen(r + 10);
	return 0;
}

static char *concat(const char *const *s, const size_t *l, int n, size_t *len)
{
	size_t t = 0;
	for (int i = 0; i < n; i++)
		t += l[i];
	char *o = malloc(t + 1);
	if (!o)
		return NULL;
	t = 0;
	for (int i = 0; i < n; i++) {
		memcpy(o + t, s[i], l[i]);
		t += l[i];
	}
	o[t] = 0;
	*len = t;
	return o;
}

#define JSONL_BATCH 2048   /* examples encoded together */

int cli_tokenize_jsonl(const char *tokdir, const char *jsonl, const char *pf, const char *rf,
                       const char *template_path, const char *out, int bos, int nthreads)
{
	struct tk_job j = { 0 };
	char *tpl = NULL, *data = NULL;
	size_t dlen, tlen;
	const char *parts[3] = { "", "", "" };
	size_t plen[3] = { 0, 0, 0 };
	if (template_path && (read_all(template_path, &tpl, &tlen) ||
	                      split_template(template_path, tpl, parts, plen))) {
		free(tpl);
		return CLI_FAIL;
	}
	if (read_all(jsonl, &data, &dlen)) {
		free(tpl);
		return CLI_FAIL;
	}
	if (pool_open(&j.pool, tokdir, nthreads)) {
		pool_close(&j.pool);
		free(tpl);
		free(data);
		return CLI_FAIL;
	}
	struct lspo_tokenizer *t = j.pool.h[0];
	int32_t b = lspo_tokenizer_bos(t), e = lspo_tokenizer_eos(t);
	int rc = CLI_OK;
	if (bos && b < 0) {
		fprintf(stderr, "lspo tokenize: %s has no BOS token\n", tokdir);
		rc = CLI_FAIL;
	}
	j.prog.total = dlen;
	j.prog.active = dlen > progress_min();
	j.prog.tty = isatty(2);
	j.prog.t0 = j.prog.last = now_s();
	if (!rc && lspo_shard_writer_open(out, lspo_tokenizer_vocab_size(t), 1, &j.w))
		rc = CLI_FAIL;
	if (!rc && pool_items(&j.pool, 2 * JSONL_BATCH))
		rc = CLI_FAIL;
	size_t lines[JSONL_BATCH];
	size_t nex = 0, line = 0, masked = 0, nb = 0;
	for (char *p = data; !rc && (p < data + dlen || nb);) {
		if (p < data + dlen) {
			char *nl = memchr(p, '\n', (size_t)(data + dlen - p));
			size_t ll = nl ? (size_t)(nl - p) : (size_t)(data + dlen - p);
			line++;
			char *next = nl ? nl + 1 : data + dlen;
			size_t k = 0;
			while (k < ll && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'))
				k++;
			if (k < ll) {
				json_error_t err;
				json_t *rec = json_loadb(p, ll, JSON_ALLOW_NUL, &err);
				json_t *jp = rec ? json_object_get(rec, pf) : NULL;
				json_t *jr = rec ? json_object_get(rec, rf) : NULL;
				if (!rec || !json_is_object(rec)) {
					fprintf(stderr, "lspo tokenize: %s: line %zu: not a JSON object%s%s\n", jsonl,
					        line, rec ? "" : ": ", rec ? "" : err.text);
					rc = CLI_FAIL;
				} else if (!json_is_string(jp) || !json_is_string(jr)) {
					fprintf(stderr, "lspo tokenize: %s: line %zu: field '%s' %s (expected a "
					        "string)\n", jsonl, line, json_is_string(jp) ? rf : pf,
					        (json_is_string(jp) ? jr : jp) ? "is not a string" : "is missing");
					rc = CLI_FAIL;
				} else {
					/* prompt part = pre + prompt + mid; response part = response + post */
					const char *ps[3] = { parts[0], json_string_value(jp), parts[1] };
					size_t pl[3] = { plen[0], json_string_length(jp), plen[1] };
					const char *rs[2] = { json_string_value(jr), parts[2] };
					size_t rl[2] = { json_string_length(jr), plen[2] };
					struct enc_item *ip = &j.pool.items[2 * nb], *ir = ip + 1;
					ip->text = concat(ps, pl, 3, &ip->len);
					ir->text = concat(rs, rl, 2, &ir->len);
					if (!ip->text || !ir->text)
						rc = CLI_FAIL;
					lines[nb++] = line;
				}
				if (rec)
					json_decref(rec);
			}
			p = next;
			j.prog.done = (size_t)(p - data);
			if (nb < JSONL_BATCH && p < data + dlen && !rc)
				continue;
		}
		/* a full batch, or the end of the file */
		if (!rc && nb && pool_run(&j.pool, 2 * nb) != LSPO_OK) {
			for (size_t k = 0; k < 2 * nb; k++)
				if (j.pool.items[k].rc) {
					fprintf(stderr, "lspo tokenize: %s: cannot encode line %zu: %s\n", jsonl,
					        lines[k / 2], lspo_strerror(j.pool.items[k].rc));
					break;
				}
			rc = CLI_FAIL;
		}
		for (size_t k = 0; k < nb && !rc; k++) {
			struct enc_item *ip = &j.pool.items[2 * k], *ir = ip + 1;
			if (bos)
				rc = put_id(&j, b, 0);
			if (!rc)
				rc = put_ids(&j, ip->ids, ip->n, 0);
			masked += ip->n + (bos != 0);
			if (!rc)
				rc = put_ids(&j, ir->ids, ir->n, 1);
			if (!rc && e >= 0)
				rc = put_id(&j, e, 1);
			nex++;
		}
		for (size_t k = 0; k < 2 * nb; k++) {
			free((char *)j.pool.items[k].text);
			j.pool.items[k].text = NULL;
		}
		nb = 0;
		progress_tick(&j.prog, 0);
	}
	if (!rc && nex == 0) {
		fprintf(stderr, "lspo tokenize: %s: no records\n", jsonl);
		rc = CLI_FAIL;
	}
	size_t n = j.w ? lspo_shard_writer_ntokens(j.w) : 0;
	if (j.w && lspo_shard_writer_close(j.w, rc == CLI_OK))
		rc = CLI_FAIL;
	progress_tick(&j.prog, 1);
	if (!rc)
		printf("tokenize: %s: %zu examples -> %s: %zu tokens (uint%d, vocab %u), %zu prompt "
		       "tokens masked in %s.mask%s\n", jsonl, nex, out, n,
		       lspo_tokenizer_vocab_size(t) > 65535 ? 32 : 16, lspo_tokenizer_vocab_size(t),
		       masked, out, e >= 0 ? ", EOS after each response" : ", no EOS token");
	else
		fprintf(stderr, "lspo tokenize: no shard written to %s\n", out);
	pool_close(&j.pool);
	free(tpl);
	free(data);
	return rc;
}
