/*
 * bench_sgemm.c - OpenBLAS's single-thread sgemm rate on the matrix products
 * of one GPT-2 training step: the reference that lspo's matmul tasks (one
 * BLAS thread per StarPU worker) are measured against.
 *
 *   bench_sgemm N C V L    N tokens (B*T), width C, vocabulary V, L layers
 * Prints one line per product (shape, GFLOP/s) and the rate weighted by the
 * step's FLOPs: "sgemm-rate <GFLOP/s>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <cblas.h>

#include "config.h"

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + 1e-9 * t.tv_nsec;
}

/* Best time of a few runs of C (m, n) = op(A) op(B), row-major. */
static double time_gemm(int m, int n, int k, int ta, int tb)
{
	float *A = malloc(sizeof(float) * (size_t)m * k), *B = malloc(sizeof(float) * (size_t)k * n);
	float *C = malloc(sizeof(float) * (size_t)m * n);
	for (size_t i = 0; i < (size_t)m * k; i++) A[i] = (float)(i % 7) * 0.1f;
	for (size_t i = 0; i < (size_t)k * n; i++) B[i] = (float)(i % 5) * 0.1f;
	double best = 1e30;
	double flops = 2.0 * m * n * k;
	int reps = flops > 2e10 ? 2 : 4;
	for (int r = 0; r < reps; r++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
		            m, n, k, 1.0f, A, ta ? m : k, B, tb ? k : n, 0.0f, C, n);
		double t = now() - t0;
		best = t < best ? t : best;
	}
	free(A); free(B); free(C);
	return best;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: bench_sgemm N C V L\n");
		return 2;
	}
	int N = atoi(argv[1]), C = atoi(argv[2]), V = atoi(argv[3]), L = atoi(argv[4]);
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
	openblas_set_num_threads(1);
#endif
	/* (m, n, k, transA, transB, per layer?): forward, dinp, dW. */
	struct { const char *what; int m, n, k, ta, tb; double count; } p[] = {
		{ "qkv fwd", N, 3 * C, C, 0, 0, 1 }, { "qkv dinp", N, C, 3 * C, 0, 1, 1 }, { "qkv dW", C, 3 * C, N, 1, 0, 1 },
		{ "proj fwd", N, C, C, 0, 0, 1 }, { "proj dinp", N, C, C, 0, 1, 1 }, { "proj dW", C, C, N, 1, 0, 1 },
		{ "fc fwd", N, 4 * C, C, 0, 0, 1 }, { "fc dinp", N, C, 4 * C, 0, 1, 1 }, { "fc dW", C, 4 * C, N, 1, 0, 1 },
		{ "fcproj fwd", N, C, 4 * C, 0, 0, 1 }, { "fcproj dinp", N, 4 * C, C, 0, 1, 1 },
		{ "fcproj dW", 4 * C, C, N, 1, 0, 1 },
		{ "lm head fwd", N, V, C, 0, 1, 0 }, { "lm dlnf", N, C, V, 0, 0, 0 }, { "lm dwte", V, C, N, 1, 0, 0 },
	};
	double total_flops = 0, total_time = 0;
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		double t = time_gemm(p[i].m, p[i].n, p[i].k, p[i].ta, p[i].tb);
		double f = 2.0 * p[i].m * p[i].n * p[i].k;
		printf("%-12s %6d x %6d x %6d  %7.1f GFLOP/s\n", p[i].what, p[i].m, p[i].n, p[i].k, f / t * 1e-9);
		double times = p[i].count ? L : 1;   /* every block, or the LM head once */
		total_flops += times * f;
		total_time += times * t;
	}
	printf("sgemm-rate %.1f\n", total_flops / total_time * 1e-9);
	return 0;
}
