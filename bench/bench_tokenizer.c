/*
 * bench_tokenizer.c - encoding speed of lspo's tokenizer.json implementation.
 *
 *   bench_tokenizer TOKENIZER TEXT [THREADS...]
 *
 * Splits TEXT into documents of about 64 KB at line ends, encodes them all
 * (best of 3 passes, the tokenizer loaded once and its word cache warm after
 * the first pass) with 1 thread and with each THREADS count (threads over
 * documents, one tokenizer handle each), and prints one TSV line per count:
 *   tokenizer threads MB tokens load_s encode_s MB_per_s cpu_s MB_per_cpu_s
 * (wall-clock and process CPU time: on a shared machine, MB per CPU second
 * is the per-core speed).
 * Run by bench/bench-tokenizer, which also times the JavaScript reference.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lspo.h"

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu(void) { return clock_s(CLOCK_PROCESS_CPUTIME_ID); }

struct work {
	struct lspo_tokenizer *t;
	const char *text;
	const size_t *doc;     /* document k = [doc[k], doc[k + 1]) */
	size_t ndoc, first, step, ntok;
	int rc;
};

static void *run(void *arg)
{
	struct work *w = arg;
	uint32_t *ids = NULL;
	size_t cap = 0;
	w->ntok = 0;
	for (size_t k = w->first; k < w->ndoc && !w->rc; k += w->step) {
		size_t n = 0;
		w->rc = lspo_tokenizer_encode(w->t, w->text + w->doc[k], w->doc[k + 1] - w->doc[k], &ids,
		                              &n, &cap);
		w->ntok += n;
	}
	free(ids);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bench_tokenizer TOKENIZER TEXT [THREADS...]\n");
		return 2;
	}
	FILE *f = fopen(argv[2], "rb");
	if (!f || fseek(f, 0, SEEK_END)) {
		fprintf(stderr, "cannot read %s\n", argv[2]);
		return 1;
	}
	size_t len = (size_t)ftell(f);
	char *text = malloc(len + 1);
	rewind(f);
	if (!text || fread(text, 1, len, f) != len) {
		fprintf(stderr, "cannot read %s\n", argv[2]);
		return 1;
	}
	fclose(f);
	size_t *doc = malloc((len / 65536 + 2) * sizeof(*doc)), ndoc = 0;
	doc[0] = 0;
	for (size_t p = 0; p < len;) {
		size_t e = p + 65536 < len ? p + 65536 : len;
		while (e < len && text[e - 1] != '\n')
			e++;
		doc[++ndoc] = e;
		p = e;
	}
	double t0 = now();
	struct lspo_tokenizer *t;
	if (lspo_tokenizer_load(argv[1], &t))
		return 1;
	double load = now() - t0;
	int counts[16] = { 1 }, nc = 1;
	for (int i = 3; i < argc && nc < 16; i++)
		if (atoi(argv[i]) > 1)
			counts[nc++] = atoi(argv[i]);
	printf("tokenizer\tthreads\tMB\ttokens\tload_s\tencode_s\tMB_per_s\tcpu_s\tMB_per_cpu_s\n");
	for (int c = 0; c < nc; c++) {
		int nt = counts[c];
		struct work *w = calloc((size_t)nt, sizeof(*w));
		pthread_t *th = calloc((size_t)nt, sizeof(*th));
		for (int i = 0; i < nt; i++) {
			w[i] = (struct work){ .text = text, .doc = doc, .ndoc = ndoc, .first = (size_t)i,
			                      .step = (size_t)nt };
			if (i == 0)
				w[i].t = t;
			else if (lspo_tokenizer_dup(t, &w[i].t))
				return 1;
		}
		double best = 1e30, best_cpu = 1e30;
		size_t ntok = 0;
		for (int pass = 0; pass < 3; pass++) {
			double s = now(), sc = cpu();
			for (int i = 0; i < nt; i++)
				pthread_create(&th[i], NULL, run, &w[i]);
			ntok = 0;
			for (int i = 0; i < nt; i++) {
				pthread_join(th[i], NULL);
				ntok += w[i].ntok;
				if (w[i].rc)
					return 1;
			}
			double e = now() - s, ec = cpu() - sc;
			best = e < best ? e : best;
			best_cpu = ec < best_cpu ? ec : best_cpu;
		}
		printf("%s\t%d\t%.2f\t%zu\t%.2f\t%.3f\t%.2f\t%.3f\t%.2f\n", argv[1], nt, (double)len / 1e6,
		       ntok, load, best, (double)len / 1e6 / best, best_cpu, (double)len / 1e6 / best_cpu);
		for (int i = 1; i < nt; i++)
			lspo_tokenizer_free(w[i].t);
		free(w);
		free(th);
	}
	lspo_tokenizer_free(t);
	free(doc);
	free(text);
	return 0;
}
