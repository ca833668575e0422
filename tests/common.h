/*
 * common.h - what lspo's C tests share: exit codes, checks that count
 * failures, a seeded generator, and starting StarPU or skipping.
 */
#ifndef LSPO_TEST_COMMON_H
#define LSPO_TEST_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lspo.h"

#define TEST_SKIP 77
#define TEST_ERROR 99

static int test_failures;

#define CHECK(cond, ...) do {                                                \
	if (!(cond)) {                                                       \
		test_failures++;                                             \
		fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
		fprintf(stderr, __VA_ARGS__);                                \
		fputc('\n', stderr);                                         \
	} } while (0)

/* Deterministic uniform floats in [-1, 1). */
static inline float test_uniform(uint64_t *s)
{
	*s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
	return (float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static inline void test_fill(float *x, size_t n, uint64_t *s)
{
	for (size_t i = 0; i < n; i++)
		x[i] = test_uniform(s);
}

/* n floats (at least one), or exit TEST_ERROR. */
static inline float *falloc(size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof(float));
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(TEST_ERROR);
	}
	return p;
}

/* Starts StarPU; exits 77 when the asked workers do not exist.  With
 * LSPO_TEST_CUDA=1 (scripts/gpu-check) a test that asks for CPU workers
 * only gets the GPUs too, so its checks cover the CUDA codelets. */
static inline struct lspo_ctx *test_start(const char *sched, int ncpus, int ncuda)
{
	const char *cuda = getenv("LSPO_TEST_CUDA");
	if (ncuda == 0 && ncpus != 0 && cuda && cuda[0] == '1')
		ncuda = -1;
	struct lspo_config cfg = lspo_config_default();
	cfg.sched = sched;
	cfg.ncpus = ncpus;
	cfg.ncuda = ncuda;
	struct lspo_ctx *ctx;
	int rc = lspo_ctx_create(&cfg, &ctx);
	if (rc == LSPO_ENODEV) {
		fprintf(stderr, "skip: no worker of the asked kind\n");
		exit(TEST_SKIP);
	}
	if (rc) {
		fprintf(stderr, "cannot start StarPU: %s\n", lspo_strerror(rc));
		exit(TEST_ERROR);
	}
	return ctx;
}

static inline int test_finish(const char *name)
{
	if (test_failures)
		fprintf(stderr, "%s: %d check(s) failed\n", name, test_failures);
	else
		printf("%s: all checks passed\n", name);
	return test_failures ? 1 : 0;
}

/* max |a - b| over a tensor, relative to max |b| of that tensor (NaN: infinite). */
static inline double test_rel_err(const float *a, const float *b, size_t n)
{
	double worst = 0, scale = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		worst = d > worst || isnan(d) ? (isnan(d) ? INFINITY : d) : worst;
		scale = fmax(scale, fabs((double)b[i]));
	}
	return worst / (scale > 0 ? scale : 1);
}

#endif
