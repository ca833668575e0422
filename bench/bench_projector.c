/*
 * bench_projector.c - the compression path of one linear layer against its
 * dense weight-gradient GEMM, and the subspace Adam's bandwidth against a
 * plain memory copy, on one CPU core (the pure kernels, no StarPU).
 *
 *   bench_projector [--short] [--tokens T]
 *
 * Layer Y (T, n) = X (T, m) W (m, n): path = project_fwd (A = P^T X^T) +
 * project_bwd (G_hat = A (dY Q)) + proj_apply (W += P Delta Q^T), against
 * G = X^T dY (m x T x n, cblas_sgemm).  One TSV line per configuration:
 *   layer m n d r T fwd_ms bwd_ms apply_ms path_ms dense_ms ratio target
 * target = yes where r <= 16 and d <= min(m, n) / 2 (the region).
 * Then: adam elements GB/s, copy GB/s, and their ratio.  Best of 3 runs.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>

#include "lspo.h"
#include "proj_apply.h"
#include "project_bwd.h"
#include "project_fwd.h"
#include "subspace_adam.h"

void openblas_set_num_threads(int);

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static float *randf(size_t n, uint64_t *s)
{
	float *x = malloc(sizeof(float) * n);
	for (size_t i = 0; i < n; i++) {
		*s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
		x[i] = (float)((*s >> 40) / (double)(1 << 24)) - 0.5f;
	}
	return x;
}

static double dense_ms(int T, int m, int n, const float *X, const float *dY, float *G, int reps)
{
	double best = 1e30;
	for (int k = 0; k < reps; k++) {
		double t0 = now();
		cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, m, n, T, 1.0f, X, m, dY, n, 0.0f, G, n);
		double t = now() - t0;
		best = t < best ? t : best;
	}
	return best * 1e3;
}

static void bench_layer(const char *layer, int m, int n, int d, int r, int T, const float *X,
                        const float *dY, float *W, double dms, int reps)
{
	struct lspo_proj *p;
	if (lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 1, &p))
		return;
	const int32_t *pi, *qi;
	const float *pv, *qv;
	lspo_proj_ell(p, 0, &pi, &pv);
	lspo_proj_ell(p, 1, &qi, &qv);
	float *A = malloc(sizeof(float) * d * T), *bt = malloc(sizeof(float) * d * T);
	float *G = malloc(sizeof(float) * d * d), *e = malloc(sizeof(float) * (size_t)d * n);
	double bf = 1e30, bb = 1e30, ba = 1e30;
	for (int k = 0; k < reps; k++) {
		double t0 = now();
		project_fwd_cpu(T, m, d, r, pi, pv, X, m, A, T);
		double t1 = now();
		project_bwd_cpu(T, n, d, r, qi, qv, dY, n, A, T, 0.0f, G, d, bt);
		double t2 = now();
		for (int i = 0; i < d * d; i++)
			G[i] *= 1e-6f;
		double t3 = now();
		proj_apply_cpu(m, n, d, r, pi, pv, qi, qv, G, d, 1.0f, 0.0f, W, n, e);
		double t4 = now();
		bf = t1 - t0 < bf ? t1 - t0 : bf;
		bb = t2 - t1 < bb ? t2 - t1 : bb;
		ba = t4 - t3 < ba ? t4 - t3 : ba;
	}
	double path = (bf + bb + ba) * 1e3;
	printf("%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%s\n", layer, m, n, d, r, T,
	       bf * 1e3, bb * 1e3, ba * 1e3, path, dms, path / dms,
	       (r <= 16 && 2 * d <= (m < n ? m : n)) ? "yes" : "no");
	fflush(stdout);
	free(A); free(bt); free(G); free(e);
	lspo_proj_free(p);
}

static void bench_adam(size_t n, int reps)
{
	uint64_t s = 9;
	float *g = randf(n, &s), *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
	float *dl = malloc(sizeof(float) * n), *src = randf(n, &s), *dst = malloc(sizeof(float) * n);
	struct lspo_subspace_adam_hparams h = lspo_subspace_adam_default();
	subspace_adam_cpu(g, dl, m, v, n, &h);  /* touch every page */
	memcpy(dst, src, sizeof(float) * n);
	double ba = 1e30, bc = 1e30;
	for (int k = 0; k < reps; k++) {
		h.t = k + 2;
		double t0 = now();
		subspace_adam_cpu(g, dl, m, v, n, &h);
		double t1 = now();
		memcpy(dst, src, sizeof(float) * n);
		double t2 = now();
		ba = t1 - t0 < ba ? t1 - t0 : ba;
		bc = t2 - t1 < bc ? t2 - t1 : bc;
	}
	double adam_gbs = 24.0 * n / ba / 1e9, copy_gbs = 8.0 * n / bc / 1e9;
	printf("adam\t%zu\t%.2f\t%.2f\t%.2f\t(%.3f ms; copy %.3f ms)\n", n, adam_gbs, copy_gbs,
	       adam_gbs / copy_gbs, ba * 1e3, bc * 1e3);
	free(g); free(m); free(v); free(dl); free(src); free(dst);
}

int main(int argc, char **argv)
{
	int quick = 0, T = 1024;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--short"))
			quick = 1;
		else if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
			T = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: %s [--short] [--tokens T]\n", argv[0]);
			return 2;
		}
	}
	openblas_set_num_threads(1);
	static const int hidden[] = { 768, 1024, 1280, 1600 };
	static const int ds[] = { 256, 512, 1024 }, rs[] = { 4, 8, 16 };
	int nh = quick ? 1 : 4, nd = quick ? 2 : 3, reps = quick ? 2 : 3;
	printf("layer\tm\tn\td\tr\tT\tfwd_ms\tbwd_ms\tapply_ms\tpath_ms\tdense_ms\tratio\ttarget\n");
	uint64_t s = 1;
	for (int h = 0; h < nh; h++) {
		int C = hidden[h];
		int shapes[3][2] = { { C, C }, { C, 4 * C }, { 4 * C, C } };
		const char *names[3] = { "attn_out", "fc", "mlp_proj" };
		for (int k = 0; k < 3; k++) {
			int m = shapes[k][0], n = shapes[k][1];
			float *X = randf((size_t)T * m, &s), *dY = randf((size_t)T * n, &s);
			float *W = randf((size_t)m * n, &s);
			double dms = dense_ms(T, m, n, X, dY, W, reps);
			for (int a = 0; a < nd; a++)
				for (int b = quick ? 1 : 0; b < 3; b++)
					bench_layer(names[k], m, n, ds[a], rs[b], T, X, dY, W, dms, reps);
			free(X); free(dY); free(W);
		}
	}
	printf("op\telements\tadam_GB/s\tcopy_GB/s\tratio\n");
	bench_adam((size_t)256 * 256, 20);
	bench_adam((size_t)1024 * 1024, 10);
	if (!quick)
		bench_adam((size_t)16 << 20, 5);
	return 0;
}
