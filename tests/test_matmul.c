/*
 * test_matmul.c - the matmul codelet against a double-precision reference:
 * odd and random shapes, all four transpose combinations, beta = 0 and not.
 * Built twice: on CPU workers, and (test_matmul_cuda) on a CUDA worker only.
 */
#include <starpu.h>

#include "common.h"
#include "matmul.h"

#ifndef ON_CUDA
#define ON_CUDA 0
#endif

/* Elementwise error scaled by the magnitude of the terms that formed it. */
static double check_one(int m, int n, int k, int ta, int tb, float alpha, float beta, uint64_t *seed)
{
	int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
	float *A = malloc(sizeof(float) * ar * ac), *B = malloc(sizeof(float) * br * bc);
	float *C = malloc(sizeof(float) * m * n), *C0 = malloc(sizeof(float) * m * n);
	test_fill(A, (size_t)ar * ac, seed);
	test_fill(B, (size_t)br * bc, seed);
	test_fill(C0, (size_t)m * n, seed);
	for (int i = 0; i < m * n; i++)
		C[i] = beta == 0.0f ? NAN : C0[i];   /* beta == 0 must not read C */

	starpu_data_handle_t hA, hB, hC;
	lspo_matrix_register(&hA, A, ar, ac);
	lspo_matrix_register(&hB, B, br, bc);
	lspo_matrix_register(&hC, C, m, n);
	int rc = lspo_matmul_submit(hA, hB, hC, ta, tb, alpha, beta, 0, "matmul:L0:test");
	CHECK(rc == LSPO_OK, "submit returned %d", rc);
	starpu_data_unregister(hA);
	starpu_data_unregister(hB);
	starpu_data_unregister(hC);

	double worst = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0, mag = 0;
			for (int l = 0; l < k; l++) {
				double a = ta ? A[l * ac + i] : A[i * ac + l];
				double b = tb ? B[j * bc + l] : B[l * bc + j];
				s += a * b;
				mag += fabs(a * b);
			}
			double ref = alpha * s + (beta != 0.0f ? beta * (double)C0[i * n + j] : 0.0);
			double scale = fabs(alpha) * mag + fabs(beta * (double)C0[i * n + j]) + 1e-30;
			double e = fabs(C[i * n + j] - ref) / scale;
			if (!(e <= worst))
				worst = isnan(e) ? INFINITY : e;
		}
	free(A); free(B); free(C); free(C0);
	return worst;
}

int main(void)
{
	struct lspo_ctx *ctx = ON_CUDA ? test_start("eager", 0, 1) : test_start("eager", -1, 0);
	static const int sizes[] = { 1, 7, 33, 127 };
	uint64_t seed = 12345;
	int cases = 0;
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			for (int a = 0; a < 4; a++)
				for (int b = 0; b < 4; b++)
					for (int c = 0; c < 4; c++) {
						float beta = (a + b + c) % 2 ? 0.5f : 0.0f;
						double e = check_one(sizes[a], sizes[b], sizes[c], ta, tb, 1.25f, beta, &seed);
						CHECK(e < 1e-5, "m=%d n=%d k=%d ta=%d tb=%d: error %.3g",
						      sizes[a], sizes[b], sizes[c], ta, tb, e);
						cases++;
					}
			for (int r = 0; r < 6; r++) {  /* random shapes */
				int m = 1 + (int)((test_uniform(&seed) + 1) * 100), n = 1 + (int)((test_uniform(&seed) + 1) * 100);
				int k = 1 + (int)((test_uniform(&seed) + 1) * 100);
				double e = check_one(m, n, k, ta, tb, -0.75f, 2.0f, &seed);
				CHECK(e < 1e-5, "m=%d n=%d k=%d ta=%d tb=%d: error %.3g", m, n, k, ta, tb, e);
				cases++;
			}
		}

	/* Mismatched shapes are refused, not run. */
	float x[6] = { 0 };
	starpu_data_handle_t h1, h2, h3;
	lspo_matrix_register(&h1, x, 2, 3);
	lspo_matrix_register(&h2, x, 2, 3);
	lspo_matrix_register(&h3, x, 2, 2);
	CHECK(lspo_matmul_submit(h1, h2, h3, 0, 0, 1, 0, 0, "matmul:L0:bad") == LSPO_EINVAL, "bad shapes accepted");
	CHECK(lspo_matmul_submit(h1, h2, h3, 0, 1, 1, 0, 0, "matmul:L0:ok") == LSPO_OK, "A B^T refused");
	starpu_data_unregister(h1);
	starpu_data_unregister(h2);
	starpu_data_unregister(h3);

	printf("%d matmul cases on %s\n", cases, ON_CUDA ? "CUDA" : "CPU");
	lspo_ctx_destroy(ctx);
	return test_finish(ON_CUDA ? "test_matmul_cuda" : "test_matmul");
}
