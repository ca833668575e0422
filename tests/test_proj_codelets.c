/*
 * test_proj_codelets.c - the projector codelets against double-precision
 * references: compress (project_fwd + project_bwd, G_hat accumulated over
 * two micro-batches) equals P^T (X^T dY) Q, decompress-apply equals
 * (1 - lr wd) W + alpha P Delta Q^T, odd sizes included; subspace Adam
 * against the unit values of lsp-offload.md 14.4 and a scalar reference.
 * Built twice: on CPU workers, and (test_proj_codelets_cuda) on a CUDA
 * worker only, where the CPU-only Adam is not run.
 */
#include <starpu.h>

#include "common.h"
#include "proj_apply.h"
#include "project_bwd.h"
#include "project_fwd.h"
#include "projector.h"
#include "subspace_adam.h"

#ifndef ON_CUDA
#define ON_CUDA 0
#endif

/* Dense S (rows, d) in double from a pair's ELL side. */
static double *dense_side(const struct lspo_proj *p, int side)
{
	int m, n, d, r;
	lspo_proj_shape(p, &m, &n, &d, &r);
	int rows = side ? n : m;
	const int32_t *idx;
	const float *val;
	lspo_proj_ell(p, side, &idx, &val);
	double *S = calloc((size_t)rows * d, sizeof(double));
	for (int i = 0; i < rows; i++)
		for (int k = 0; k < r; k++)
			S[(size_t)i * d + idx[i * r + k]] += val[i * r + k];
	return S;
}

/* A (T, m) float, returns X^T Y (m, n) double and |X|^T |Y| in mag. */
static void xty(int T, int m, int n, const float *X, const float *Y, double *G, double *mag)
{
	for (int t = 0; t < T; t++)
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++) {
				G[(size_t)i * n + j] += (double)X[t * m + i] * Y[t * n + j];
				mag[(size_t)i * n + j] += fabs((double)X[t * m + i] * Y[t * n + j]);
			}
}

/* out (d, d) = S1^T G S2 with absolute values when abs_ is set. */
static void compress_ref(int m, int n, int d, const double *P, const double *Q, const double *G,
                         int abs_, double *out)
{
	double *GQ = calloc((size_t)m * d, sizeof(double));
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++)
			for (int c = 0; c < d; c++) {
				double q = abs_ ? fabs(Q[(size_t)j * d + c]) : Q[(size_t)j * d + c];
				GQ[(size_t)i * d + c] += G[(size_t)i * n + j] * q;
			}
	for (int a = 0; a < d; a++)
		for (int c = 0; c < d; c++) {
			double s = 0;
			for (int i = 0; i < m; i++) {
				double p = abs_ ? fabs(P[(size_t)i * d + a]) : P[(size_t)i * d + a];
				s += p * GQ[(size_t)i * d + c];
			}
			out[(size_t)a * d + c] = s;
		}
	free(GQ);
}

static void register_pair(struct lspo_proj *p, starpu_data_handle_t h[4])
{
	CHECK(lspo_proj_register(p) == LSPO_OK, "register");
	lspo_proj_handles(p, &h[0], &h[1], &h[2], &h[3]);
}

static double check_compress(int T, int m, int n, int d, int r, uint64_t *seed)
{
	struct lspo_proj *p;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, *seed, &p) == LSPO_OK, "create");
	starpu_data_handle_t h[4];
	register_pair(p, h);
	float *X[2], *Y[2], *A = malloc(sizeof(float) * d * T), *Gh = malloc(sizeof(float) * d * d);
	starpu_data_handle_t hX[2], hY[2], hA, hG;
	double *G = calloc((size_t)m * n, sizeof(double)), *mag = calloc((size_t)m * n, sizeof(double));
	lspo_matrix_register(&hA, A, d, T);
	lspo_matrix_register(&hG, Gh, d, d);
	for (int b = 0; b < 2; b++) {  /* two micro-batches: beta 0 then 1 */
		X[b] = malloc(sizeof(float) * T * m);
		Y[b] = malloc(sizeof(float) * T * n);
		test_fill(X[b], (size_t)T * m, seed);
		test_fill(Y[b], (size_t)T * n, seed);
		xty(T, m, n, X[b], Y[b], G, mag);
		lspo_matrix_register(&hX[b], X[b], T, m);
		lspo_matrix_register(&hY[b], Y[b], T, n);
		CHECK(lspo_project_fwd_submit(hX[b], h[0], h[1], hA, 0, "project_fwd:L0:test") == LSPO_OK, "fwd");
		CHECK(lspo_project_bwd_submit(hY[b], h[2], h[3], hA, hG, b ? 1.0f : 0.0f, 0,
		                              "project_bwd:L0:test") == LSPO_OK, "bwd");
	}
	for (int b = 0; b < 2; b++) {
		starpu_data_unregister(hX[b]);
		starpu_data_unregister(hY[b]);
	}
	starpu_data_unregister(hA);
	starpu_data_unregister(hG);

	double *Pd = dense_side(p, 0), *Qd = dense_side(p, 1);
	double *ref = malloc(sizeof(double) * d * d), *bound = malloc(sizeof(double) * d * d);
	compress_ref(m, n, d, Pd, Qd, G, 0, ref);
	compress_ref(m, n, d, Pd, Qd, mag, 1, bound);
	double worst = 0;
	for (int i = 0; i < d * d; i++) {
		double e = fabs(Gh[i] - ref[i]) / (bound[i] + 1e-30);
		if (!(e <= worst))
			worst = isnan(e) ? INFINITY : e;
	}
	for (int b = 0; b < 2; b++) {
		free(X[b]);
		free(Y[b]);
	}
	free(A); free(Gh); free(G); free(mag); free(Pd); free(Qd); free(ref); free(bound);
	lspo_proj_free(p);
	(*seed)++;
	return worst;
}

static double check_apply(int m, int n, int d, int r, float alpha, float lr_wd, uint64_t *seed)
{
	struct lspo_proj *p;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_SIGN, *seed, &p) == LSPO_OK, "create");
	starpu_data_handle_t h[4], hW, hD;
	register_pair(p, h);
	float *W = malloc(sizeof(float) * m * n), *W0 = malloc(sizeof(float) * m * n);
	float *D = malloc(sizeof(float) * d * d);
	test_fill(W0, (size_t)m * n, seed);
	test_fill(D, (size_t)d * d, seed);
	for (int i = 0; i < m * n; i++)
		W[i] = W0[i];
	lspo_matrix_register(&hW, W, m, n);
	lspo_matrix_register(&hD, D, d, d);
	CHECK(lspo_proj_apply_submit(hW, h[0], h[1], h[2], h[3], hD, alpha, lr_wd, 0,
	                             "proj_apply:L0:test") == LSPO_OK, "apply");
	starpu_data_unregister(hW);
	starpu_data_unregister(hD);

	double *Pd = dense_side(p, 0), *Qd = dense_side(p, 1);
	double *PD = calloc((size_t)m * d, sizeof(double)), *PDa = calloc((size_t)m * d, sizeof(double));
	for (int i = 0; i < m; i++)
		for (int a = 0; a < d; a++)
			for (int b = 0; b < d; b++) {
				PD[(size_t)i * d + b] += Pd[(size_t)i * d + a] * D[a * d + b];
				PDa[(size_t)i * d + b] += fabs(Pd[(size_t)i * d + a] * D[a * d + b]);
			}
	double worst = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0, sa = 0;
			for (int b = 0; b < d; b++) {
				s += PD[(size_t)i * d + b] * Qd[(size_t)j * d + b];
				sa += PDa[(size_t)i * d + b] * fabs(Qd[(size_t)j * d + b]);
			}
			double ref = (1.0 - (double)lr_wd) * W0[i * n + j] + alpha * s;
			double e = fabs(W[i * n + j] - ref) / (fabs(W0[i * n + j]) + fabs(alpha) * sa + 1e-30);
			if (!(e <= worst))
				worst = isnan(e) ? INFINITY : e;
		}
	free(W); free(W0); free(D); free(Pd); free(Qd); free(PD); free(PDa);
	lspo_proj_free(p);
	(*seed)++;
	return worst;
}

#if !ON_CUDA
/* One element through the codelet (in place when inplace), t = 1, m = v = 0. */
static float adam_one(float g, int inside, int inplace)
{
	float G = g, Dl = NAN, M = 0, V = 0;
	starpu_data_handle_t hg, hd, hm, hv;
	lspo_matrix_register(&hg, &G, 1, 1);
	lspo_matrix_register(&hd, &Dl, 1, 1);
	lspo_matrix_register(&hm, &M, 1, 1);
	lspo_matrix_register(&hv, &V, 1, 1);
	struct lspo_subspace_adam_hparams hp = lspo_subspace_adam_default();
	hp.eps_inside_sqrt = inside;
	CHECK(lspo_subspace_adam_submit(hg, inplace ? NULL : hd, hm, hv, &hp, 0, "subspace_adam:L0:unit")
	      == LSPO_OK, "adam submit");
	starpu_data_unregister(hg);
	starpu_data_unregister(hd);
	starpu_data_unregister(hm);
	starpu_data_unregister(hv);
	CHECK(fabsf(M - 0.1f * g) <= 1e-6f * fabsf(g), "m = %g", M);
	CHECK(fabsf(V - 0.001f * g * g) <= 1e-6f * g * g, "v = %g", V);
	return inplace ? G : Dl;
}

/* The non-finite guard: a compressed gradient holding a NaN or Inf gives a
 * zero step and leaves M and V as they are, in place or not. */
static void adam_nonfinite(int inplace)
{
	enum { R = 3, C = 5 };
	float G[R * C], D[R * C], M[R * C], V[R * C], M0[R * C], V0[R * C];
	for (int i = 0; i < R * C; i++) {
		G[i] = 0.1f * (float)(i + 1);
		D[i] = NAN;
		M[i] = M0[i] = 0.01f * (float)i;
		V[i] = V0[i] = 0.002f * (float)(i + 1);
	}
	G[7] = inplace ? INFINITY : NAN;
	starpu_data_handle_t hg, hd, hm, hv;
	lspo_matrix_register(&hg, G, R, C);
	lspo_matrix_register(&hd, D, R, C);
	lspo_matrix_register(&hm, M, R, C);
	lspo_matrix_register(&hv, V, R, C);
	struct lspo_subspace_adam_hparams hp = lspo_subspace_adam_default();
	CHECK(lspo_subspace_adam_submit(hg, inplace ? NULL : hd, hm, hv, &hp, 0, "subspace_adam:L0:guard")
	      == LSPO_OK, "adam submit");
	starpu_data_unregister(hg);
	starpu_data_unregister(hd);
	starpu_data_unregister(hm);
	starpu_data_unregister(hv);
	const float *delta = inplace ? G : D;
	int zero = 1;
	for (int i = 0; i < R * C; i++)
		zero &= delta[i] == 0.0f;
	CHECK(zero, "subspace adam of a non-finite gradient (inplace %d): the step is not zero", inplace);
	CHECK(!memcmp(M, M0, sizeof(M)) && !memcmp(V, V0, sizeof(V)),
	      "subspace adam of a non-finite gradient (inplace %d) changed M or V", inplace);
}

/* Several matrices (lengths with AVX2 tails), several steps, both forms,
 * against a double reference; all matrices' tasks are independent. */
static double adam_many(int inside, uint64_t *seed)
{
	enum { NMAT = 5, STEPS = 4 };
	static const int dims[NMAT] = { 1, 3, 7, 9, 33 };
	float *g[NMAT], *dl[NMAT], *m[NMAT], *v[NMAT];
	double *rm[NMAT], *rv[NMAT], *rd[NMAT], *ra[NMAT], *rs[NMAT];
	starpu_data_handle_t hg[NMAT], hd[NMAT], hm[NMAT], hv[NMAT];
	struct lspo_subspace_adam_hparams hp = { .lr = 2e-3f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f,
	                                         .eps_inside_sqrt = inside };
	for (int k = 0; k < NMAT; k++) {
		size_t n = (size_t)dims[k] * dims[k];
		g[k] = malloc(sizeof(float) * n); dl[k] = malloc(sizeof(float) * n);
		m[k] = calloc(n, sizeof(float)); v[k] = calloc(n, sizeof(float));
		rm[k] = calloc(n, sizeof(double)); rv[k] = calloc(n, sizeof(double));
		rd[k] = calloc(n, sizeof(double));
		ra[k] = calloc(n, sizeof(double)); rs[k] = calloc(n, sizeof(double));
		lspo_matrix_register(&hg[k], g[k], dims[k], dims[k]);
		lspo_matrix_register(&hd[k], dl[k], dims[k], dims[k]);
		lspo_matrix_register(&hm[k], m[k], dims[k], dims[k]);
		lspo_matrix_register(&hv[k], v[k], dims[k], dims[k]);
	}
	double worst = 0;
	for (int t = 1; t <= STEPS; t++) {
		hp.t = t;
		for (int k = 0; k < NMAT; k++) {
			starpu_data_acquire(hg[k], STARPU_W);
			test_fill(g[k], (size_t)dims[k] * dims[k], seed);
			for (int i = 0; i < dims[k] * dims[k]; i++) {
				double gi = g[k][i] * 0.1;
				g[k][i] = (float)gi;
				rm[k][i] = hp.beta1 * rm[k][i] + (1 - (double)hp.beta1) * gi;
				rv[k][i] = hp.beta2 * rv[k][i] + (1 - (double)hp.beta2) * gi * gi;
				double mh = rm[k][i] / (1 - pow(hp.beta1, t)), vh = rv[k][i] / (1 - pow(hp.beta2, t));
				double den = inside ? sqrt(vh + hp.eps) : sqrt(vh) + hp.eps;
				rd[k][i] = -hp.lr * mh / den;
				/* the same with |g|: the size of the terms that cancel in m */
				ra[k][i] = hp.beta1 * ra[k][i] + (1 - (double)hp.beta1) * fabs(gi);
				rs[k][i] = hp.lr * ra[k][i] / (1 - pow(hp.beta1, t)) / den;
			}
			starpu_data_release(hg[k]);
			CHECK(lspo_subspace_adam_submit(hg[k], (k % 2) ? NULL : hd[k], hm[k], hv[k], &hp, 0,
			                                "subspace_adam:L0:many") == LSPO_OK, "submit");
		}
		for (int k = 0; k < NMAT; k++) {
			float *out = (k % 2) ? g[k] : dl[k];
			starpu_data_handle_t ho = (k % 2) ? hg[k] : hd[k];
			starpu_data_acquire(ho, STARPU_R);
			for (int i = 0; i < dims[k] * dims[k]; i++) {
				double e = fabs(out[i] - rd[k][i]) / (rs[k][i] + 1e-30);
				if (!(e <= worst))
					worst = isnan(e) ? INFINITY : e;
			}
			starpu_data_release(ho);
		}
	}
	for (int k = 0; k < NMAT; k++) {
		starpu_data_unregister(hg[k]); starpu_data_unregister(hd[k]);
		starpu_data_unregister(hm[k]); starpu_data_unregister(hv[k]);
		free(g[k]); free(dl[k]); free(m[k]); free(v[k]); free(rm[k]); free(rv[k]); free(rd[k]);
		free(ra[k]); free(rs[k]);
	}
	return worst;
}
#endif

int main(void)
{
	struct lspo_ctx *ctx = ON_CUDA ? test_start("eager", 0, 1) : test_start("eager", -1, 0);
	uint64_t seed = 2024;
	static const int shapes[][5] = {  /* T, m, n, d, r */
		{ 1, 1, 1, 1, 1 }, { 1, 5, 7, 4, 4 }, { 37, 29, 41, 13, 3 }, { 130, 100, 67, 50, 8 },
		{ 65, 33, 96, 17, 16 }, { 257, 120, 90, 64, 16 },
	};
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		const int *c = shapes[s];
		double e = check_compress(c[0], c[1], c[2], c[3], c[4], &seed);
		CHECK(e < 1e-5, "compress T=%d m=%d n=%d d=%d r=%d: error %.3g", c[0], c[1], c[2], c[3], c[4], e);
		e = check_apply(c[1], c[2], c[3], c[4], 1.0f, 0.0f, &seed);
		CHECK(e < 1e-5, "apply m=%d n=%d d=%d r=%d: error %.3g", c[1], c[2], c[3], c[4], e);
		e = check_apply(c[1], c[2], c[3], c[4], -0.7f, 0.01f, &seed);
		CHECK(e < 1e-5, "apply+wd m=%d n=%d d=%d r=%d: error %.3g", c[1], c[2], c[3], c[4], e);
	}

	/* Mismatched shapes are refused. */
	{
		struct lspo_proj *p;
		starpu_data_handle_t h[4], hX, hA;
		float x[64] = { 0 };
		CHECK(lspo_proj_create(8, 6, 4, 2, LSPO_PROJ_GAUSSIAN, 1, &p) == LSPO_OK, "create");
		register_pair(p, h);
		lspo_matrix_register(&hX, x, 3, 7);  /* m should be 8 */
		lspo_matrix_register(&hA, x + 32, 4, 3);
		CHECK(lspo_project_fwd_submit(hX, h[0], h[1], hA, 0, "project_fwd:L0:bad") == LSPO_EINVAL,
		      "bad X accepted");
		CHECK(lspo_project_bwd_submit(hX, h[2], h[3], hA, hA, 0, 0, "project_bwd:L0:bad") == LSPO_EINVAL,
		      "bad dY accepted");
		CHECK(lspo_proj_apply_submit(hX, h[0], h[1], h[2], h[3], hA, 1, 0, 0, "proj_apply:L0:bad")
		      == LSPO_EINVAL, "bad W accepted");
		starpu_data_unregister(hX);
		starpu_data_unregister(hA);
		lspo_proj_free(p);
	}

#if !ON_CUDA
	/* lsp-offload.md 14.4: t = 1, lr 1e-3, betas 0.9/0.999, eps 1e-4. */
	for (int inplace = 0; inplace < 2; inplace++) {
		adam_nonfinite(inplace);
		float a = adam_one(0.01f, 0, inplace), b = adam_one(0.01f, 1, inplace);
		float c = adam_one(0.5f, 0, inplace), e = adam_one(0.5f, 1, inplace);
		CHECK(fabs(a + 9.9010e-4) < 1e-8, "g=0.01 textbook: %.6g", a);
		CHECK(fabs(b + 7.0711e-4) < 1e-8, "g=0.01 eps inside sqrt: %.6g", b);
		CHECK(fabs(c + 9.998e-4) < 1e-7, "g=0.5 textbook: %.6g", c);
		CHECK(fabs(e + 9.998e-4) < 1e-7, "g=0.5 eps inside sqrt: %.6g", e);
		printf("adam unit (%s): %.5g %.5g %.5g %.5g\n", inplace ? "in place" : "separate", a, b, c, e);
	}
	for (int inside = 0; inside < 2; inside++) {
		double e = adam_many(inside, &seed);
		CHECK(e < 1e-5, "adam many (eps inside %d): error %.3g", inside, e);
	}
	{
		struct lspo_subspace_adam_hparams bad = lspo_subspace_adam_default();
		bad.t = 0;
		float z[1] = { 0 };
		starpu_data_handle_t hz;
		lspo_matrix_register(&hz, z, 1, 1);
		CHECK(lspo_subspace_adam_submit(hz, NULL, hz, hz, &bad, 0, "subspace_adam:L0:bad") == LSPO_EINVAL,
		      "t = 0 accepted");
		starpu_data_unregister(hz);
	}
#endif
	lspo_ctx_destroy(ctx);
	return test_finish(ON_CUDA ? "test_proj_codelets_cuda" : "test_proj_codelets");
}
