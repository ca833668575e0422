/*
 * test_proj_learn.c - projector pairs as library objects (no StarPU tasks):
 * sampling (distinct sorted positions, value scale, reproducibility),
 * analytic gradients of the relative error against finite differences,
 * random-projector error against the closed form of lsp-offload.md 14.2,
 * learning on synthetic low-rank gradients (14.3), moment re-projection
 * (14.5, 7.4), the refresh decision, and the sharing registry.
 */
#include <string.h>

#include "common.h"
#include "projector.h"

/* ---- synthetic gradients (lsp-offload.md 14.3) ------------------------ */

static double gauss(uint64_t *s)
{
	double u1 = (test_uniform(s) + 1.0) * 0.5, u2 = (test_uniform(s) + 1.0) * 0.5;
	return sqrt(-2.0 * log(1.0 - u1 * 0.999999)) * cos(6.283185307179586 * u2);
}

/* (rows, k) with orthonormal columns, Gram-Schmidt twice, in double. */
static double *orthonormal(int rows, int k, uint64_t *s)
{
	double *U = malloc(sizeof(double) * rows * k);
	for (int i = 0; i < rows * k; i++)
		U[i] = gauss(s);
	for (int c = 0; c < k; c++)
		for (int pass = 0; pass < 2; pass++) {
			for (int b = 0; b < c; b++) {
				double dot = 0;
				for (int i = 0; i < rows; i++)
					dot += U[i * k + c] * U[i * k + b];
				for (int i = 0; i < rows; i++)
					U[i * k + c] -= dot * U[i * k + b];
			}
			double nr = 0;
			for (int i = 0; i < rows; i++)
				nr += U[i * k + c] * U[i * k + c];
			nr = sqrt(nr);
			for (int i = 0; i < rows; i++)
				U[i * k + c] /= nr;
		}
	return U;
}

/* G = U diag(s) V^T + noise * |.| / sqrt(m n) * N(0, 1), s_i = exp(0.3 z) / i. */
static float *lowrank(int m, int n, int k, const double *U, const double *V, double noise, uint64_t *s)
{
	double *sv = malloc(sizeof(double) * k), *G = calloc((size_t)m * n, sizeof(double));
	for (int i = 0; i < k; i++)
		sv[i] = exp(0.3 * gauss(s)) / (i + 1);
	for (int i = 0; i < m; i++)
		for (int c = 0; c < k; c++) {
			double a = U[i * k + c] * sv[c];
			for (int j = 0; j < n; j++)
				G[(size_t)i * n + j] += a * V[j * k + c];
		}
	double nr = 0;
	for (size_t i = 0; i < (size_t)m * n; i++)
		nr += G[i] * G[i];
	double scale = noise * sqrt(nr) / sqrt((double)m * n);
	float *out = malloc(sizeof(float) * m * n);
	for (size_t i = 0; i < (size_t)m * n; i++)
		out[i] = (float)(G[i] + scale * gauss(s));
	free(sv);
	free(G);
	return out;
}

/* ---- sampling ---------------------------------------------------------- */

static void test_sampling(void)
{
	struct lspo_proj *a, *b, *c;
	int m = 300, n = 200, d = 64, r = 8;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 7, &a) == LSPO_OK, "create");
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 7, &b) == LSPO_OK, "create");
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_SIGN, 8, &c) == LSPO_OK, "create");
	for (int side = 0; side < 2; side++) {
		int rows = side ? n : m;
		const int32_t *ia, *ib, *ic;
		const float *va, *vb, *vc;
		lspo_proj_ell(a, side, &ia, &va);
		lspo_proj_ell(b, side, &ib, &vb);
		lspo_proj_ell(c, side, &ic, &vc);
		CHECK(!memcmp(ia, ib, sizeof(int32_t) * rows * r) && !memcmp(va, vb, sizeof(float) * rows * r),
		      "same seed, different pair");
		int bad = 0, neg = 0, badsign = 0;
		double s2 = 0;
		for (int i = 0; i < rows; i++)
			for (int k = 0; k < r; k++) {
				int x = ia[i * r + k], y = ic[i * r + k];
				bad += x < 0 || x >= d || (k && x <= ia[i * r + k - 1]);
				bad += y < 0 || y >= d || (k && y <= ic[i * r + k - 1]);
				s2 += (double)va[i * r + k] * va[i * r + k];
				neg += vc[i * r + k] < 0;
				badsign += fabsf(fabsf(vc[i * r + k]) - 1.0f / sqrtf((float)r)) > 1e-7f;
			}
		CHECK(bad == 0, "side %d: %d rows without r distinct sorted positions in [0, d)", side, bad);
		double var = s2 / (rows * r);
		CHECK(fabs(var * r - 1.0) < 0.06, "side %d: gaussian variance %.4f, want 1/r = %.4f", side, var,
		      1.0 / r);
		CHECK(badsign == 0, "side %d: %d sign values not +-1/sqrt(r)", side, badsign);
		CHECK(neg > rows * r * 2 / 5 && neg < rows * r * 3 / 5, "side %d: %d negative signs of %d", side,
		      neg, rows * r);
	}
	lspo_proj_free(a);
	lspo_proj_free(b);
	lspo_proj_free(c);
	struct lspo_proj *x;
	CHECK(lspo_proj_create(10, 10, 4, 5, LSPO_PROJ_GAUSSIAN, 1, &x) == LSPO_EINVAL && !x, "r > d accepted");
	CHECK(lspo_proj_create(0, 10, 4, 2, LSPO_PROJ_GAUSSIAN, 1, &x) == LSPO_EINVAL, "m = 0 accepted");
	CHECK(lspo_proj_create(4, 4, 4, 4, LSPO_PROJ_SIGN, 1, &x) == LSPO_OK, "r = d refused");
	lspo_proj_free(x);
}

/* ---- gradients against finite differences ----------------------------- */

static void test_gradcheck(void)
{
	int m = 14, n = 11, d = 6, r = 3;
	uint64_t s = 99;
	struct lspo_proj *p;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 5, &p) == LSPO_OK, "create");
	float *G = malloc(sizeof(float) * m * n);
	test_fill(G, (size_t)m * n, &s);
	const float *grads[1] = { G };
	/* one Adam step with tiny lr moves each value by about -lr sign(grad):
	 * compare the loss change with the first-order prediction instead of
	 * poking values, through the public API only */
	double e0;
	CHECK(lspo_proj_error(p, grads, 1, &e0) == LSPO_OK, "error");
	/* finite differences on the internal arrays */
	float *gP = calloc((size_t)(m + n) * r, sizeof(float)), *gQ = gP + m * r;
	struct lspo_proj_learn_opts o = lspo_proj_learn_opts_default();
	(void)o;
	double worst = 0;
	for (int side = 0; side < 2; side++) {
		int rows = side ? n : m;
		for (int e = 0; e < rows * r; e += 5) {
			float keep = p->val[side][e];
			double h = 1e-2, lp, lm;
			p->val[side][e] = keep + (float)h;
			lspo_proj_error(p, grads, 1, &lp);
			p->val[side][e] = keep - (float)h;
			lspo_proj_error(p, grads, 1, &lm);
			p->val[side][e] = keep;
			(side ? gQ : gP)[e] = (float)((lp - lm) / (2 * h));
		}
	}
	/* analytic gradient: a learning pass of one step with lr 0 leaves the
	 * values alone; use the exported sparse helpers to rebuild it instead */
	{
		/* Dense double: R = P P^T G Q Q^T - G, E = R / (|R||G|),
		 * grad_P = (E C^T + C E^T) P, grad_Q = (D^T E + E^T D) Q */
		double *P = calloc((size_t)m * d, sizeof(double)), *Q = calloc((size_t)n * d, sizeof(double));
		for (int i = 0; i < m; i++)
			for (int k = 0; k < r; k++)
				P[i * d + p->idx[0][i * r + k]] = p->val[0][i * r + k];
		for (int j = 0; j < n; j++)
			for (int k = 0; k < r; k++)
				Q[j * d + p->idx[1][j * r + k]] = p->val[1][j * r + k];
		double *A = calloc((size_t)m * m, sizeof(double)), *B = calloc((size_t)n * n, sizeof(double));
		for (int i = 0; i < m; i++)
			for (int l = 0; l < m; l++)
				for (int c = 0; c < d; c++)
					A[i * m + l] += P[i * d + c] * P[l * d + c];
		for (int i = 0; i < n; i++)
			for (int l = 0; l < n; l++)
				for (int c = 0; c < d; c++)
					B[i * n + l] += Q[i * d + c] * Q[l * d + c];
		double *C = calloc((size_t)m * n, sizeof(double)), *D = calloc((size_t)m * n, sizeof(double));
		double *R = calloc((size_t)m * n, sizeof(double));
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++)
				for (int l = 0; l < n; l++)
					C[i * n + j] += G[i * n + l] * B[l * n + j];
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++)
				for (int l = 0; l < m; l++) {
					R[i * n + j] += A[i * m + l] * C[l * n + j];
					D[i * n + j] += A[i * m + l] * G[l * n + j];
				}
		double nr = 0, ng = 0;
		for (int i = 0; i < m * n; i++) {
			R[i] -= G[i];
			nr += R[i] * R[i];
			ng += (double)G[i] * G[i];
		}
		for (int i = 0; i < m * n; i++)
			R[i] /= sqrt(nr) * sqrt(ng);  /* E */
		for (int e = 0; e < m * r; e += 5) {
			int i = e / r, c = p->idx[0][e];
			double g = 0;
			for (int l = 0; l < m; l++) {
				double ecl = 0, cel = 0;  /* (E C^T)[i,l], (C E^T)[i,l] */
				for (int j = 0; j < n; j++) {
					ecl += R[i * n + j] * C[l * n + j];
					cel += C[i * n + j] * R[l * n + j];
				}
				g += (ecl + cel) * P[l * d + c];
			}
			double err = fabs(g - gP[e]) / (fabs(g) + 1e-3);
			worst = err > worst ? err : worst;
		}
		for (int e = 0; e < n * r; e += 5) {
			int j = e / r, c = p->idx[1][e];
			double g = 0;
			for (int l = 0; l < n; l++) {
				double de = 0, ed = 0;  /* (D^T E)[j,l], (E^T D)[j,l] */
				for (int i = 0; i < m; i++) {
					de += D[i * n + j] * R[i * n + l];
					ed += R[i * n + j] * D[i * n + l];
				}
				g += (de + ed) * Q[l * d + c];
			}
			double err = fabs(g - gQ[e]) / (fabs(g) + 1e-3);
			worst = err > worst ? err : worst;
		}
		free(P); free(Q); free(A); free(B); free(C); free(D); free(R);
	}
	CHECK(worst < 2e-2, "analytic (doc 7.1, dense double) vs finite differences: %.3g", worst);
	printf("gradient formula vs finite differences: worst relative difference %.2g\n", worst);
	/* the library's sparse formulation against the same finite differences */
	float *lP = calloc((size_t)(m + n) * r, sizeof(float)), *lQ = lP + m * r;
	double loss;
	CHECK(lspo_proj_loss_grad(p, G, lP, lQ, &loss) == LSPO_OK, "loss_grad");
	CHECK(fabs(loss - e0) < 1e-6, "loss %.8f vs error %.8f", loss, e0);
	worst = 0;
	for (int e = 0; e < m * r; e += 5)
		worst = fmax(worst, fabs(lP[e] - gP[e]) / (fabs(gP[e]) + 1e-3));
	for (int e = 0; e < n * r; e += 5)
		worst = fmax(worst, fabs(lQ[e] - gQ[e]) / (fabs(gQ[e]) + 1e-3));
	CHECK(worst < 2e-2, "library gradient vs finite differences: %.3g", worst);
	printf("library gradient vs finite differences: worst relative difference %.2g\n", worst);
	free(lP);
	free(gP);
	free(G);
	lspo_proj_free(p);
}

/* ---- learning gradient used by the library ---------------------------- */

/* The library's sparse gradient must drive the loss down at once: one
 * learning step with a small lr lowers the error on a small problem. */
static void test_descent(void)
{
	int m = 40, n = 30, d = 12, r = 3;
	uint64_t s = 3;
	struct lspo_proj *p;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 11, &p) == LSPO_OK, "create");
	float *G = malloc(sizeof(float) * m * n);
	test_fill(G, (size_t)m * n, &s);
	const float *grads[1] = { G };
	struct lspo_proj_learn_opts o = lspo_proj_learn_opts_default();
	o.iters = 1;
	o.lr = 1e-3f;
	double before, after;
	CHECK(lspo_proj_learn(p, grads, 1, &o, &before, &after) == LSPO_OK, "learn");
	CHECK(after < before, "one step did not descend: %.6f -> %.6f", before, after);
	free(G);
	lspo_proj_free(p);
}

/* ---- closed form of the random error (14.2) --------------------------- */

static void test_closed_form(const double *U, const double *V)
{
	static const int dr[2][2] = { { 256, 8 }, { 512, 16 } };
	int m = 768, n = 768, nseeds = 24;  /* per-seed spread of the error is ~5 % */
	for (int c = 0; c < 2; c++) {
		int d = dr[c][0], r = dr[c][1];
		double sq = 0, sum = 0;
		for (int k = 0; k < nseeds; k++) {
			uint64_t s = 1000 + 17 * k;
			float *G = lowrank(m, n, 64, U, V, 0.05, &s);
			const float *grads[1] = { G };
			struct lspo_proj *p;
			CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 500 + k, &p) == LSPO_OK, "create");
			double e;
			CHECK(lspo_proj_error(p, grads, 1, &e) == LSPO_OK, "error");
			sq += e * e;
			sum += e;
			lspo_proj_free(p);
			free(G);
		}
		double theory = (1 + 2.0 / r + (m - 1.0) / d) * (1 + 2.0 / r + (n - 1.0) / d) - 1;
		double ms = sq / nseeds;
		printf("random error d=%d r=%d: mean %.3f, mean square %.3f; closed form %.3f (sqrt %.3f)\n",
		       d, r, sum / nseeds, ms, theory, sqrt(theory));
		CHECK(fabs(ms / theory - 1) < 0.05, "d=%d r=%d: mean squared error %.3f vs closed form %.3f",
		      d, r, ms, theory);
	}
}

/* ---- learning (14.3) ---------------------------------------------------- */

/* Three projector seeds (one optimisation can plateau: seed 0 stops at
 * 6.7x, seeds 1 to 9 reach 8.9x to 12.3x); the median must meet the bar. */
static void test_learning(const double *U, const double *V)
{
	enum { NS = 3 };
	int m = 768, n = 768, d = 512, r = 16;
	uint64_t s = 42;
	float *Gtr = lowrank(m, n, 64, U, V, 0.05, &s), *Gte = lowrank(m, n, 64, U, V, 0.05, &s);
	const float *tr[1] = { Gtr }, *te[1] = { Gte };
	double fold[NS], test[NS];
	for (int k = 0; k < NS; k++) {
		struct lspo_proj *p;
		CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, (uint64_t)k, &p) == LSPO_OK, "create");
		struct lspo_proj_learn_opts o = lspo_proj_learn_opts_default();  /* 100 steps, lr 0.1 */
		double before, after, test_before;
		CHECK(lspo_proj_error(p, te, 1, &test_before) == LSPO_OK, "error");
		CHECK(lspo_proj_learn(p, tr, 1, &o, &before, &after) == LSPO_OK, "learn");
		CHECK(lspo_proj_error(p, te, 1, &test[k]) == LSPO_OK, "error");
		fold[k] = before / after;
		printf("learning 768x768 d=512 r=16 rank 64 + 5%% noise, 100 Adam steps, seed %d: train "
		       "%.3f -> %.3f (%.1fx), held-out %.3f -> %.3f\n", k, before, after, fold[k], test_before,
		       test[k]);
		CHECK(fold[k] >= 4, "seed %d: training error fell only %.1f-fold", k, fold[k]);
		lspo_proj_free(p);
	}
	for (int i = 0; i < NS; i++)  /* sort both for the medians */
		for (int j = i + 1; j < NS; j++) {
			double t;
			if (fold[j] < fold[i]) { t = fold[i]; fold[i] = fold[j]; fold[j] = t; }
			if (test[j] < test[i]) { t = test[i]; test[i] = test[j]; test[j] = t; }
		}
	printf("learning: median fall %.1fx, median held-out error %.3f\n", fold[NS / 2], test[NS / 2]);
	CHECK(fold[NS / 2] >= 8, "median training error fall %.1f-fold < 8", fold[NS / 2]);
	CHECK(test[NS / 2] < 0.35, "median held-out error %.3f >= 0.35", test[NS / 2]);
	free(Gtr);
	free(Gte);
}

/* ---- moment re-projection (14.5, 7.4) ------------------------------------ */

static void dense(const struct lspo_proj *p, int side, double *S)
{
	int rows = side ? p->n : p->m;
	memset(S, 0, sizeof(double) * rows * p->d);
	for (int i = 0; i < rows; i++)
		for (int k = 0; k < p->r; k++)
			S[i * p->d + p->idx[side][i * p->r + k]] = p->val[side][i * p->r + k];
}

/* out (d, d) = Pn^T (Po X Qo^T) Qn in double, optionally on squared factors. */
static void ref_reproject(int m, int n, int d, const double *Pn, const double *Po, const double *Qn,
                          const double *Qo, const float *X, int squared, double *out)
{
	double *L = calloc((size_t)d * d, sizeof(double)), *R = calloc((size_t)d * d, sizeof(double));
	for (int a = 0; a < d; a++)
		for (int b = 0; b < d; b++) {
			for (int i = 0; i < m; i++)
				L[a * d + b] += Pn[i * d + a] * Po[i * d + b];
			for (int j = 0; j < n; j++)
				R[a * d + b] += Qn[j * d + a] * Qo[j * d + b];
			if (squared) {
				L[a * d + b] *= L[a * d + b];
				R[a * d + b] *= R[a * d + b];
			}
		}
	for (int a = 0; a < d; a++)
		for (int b = 0; b < d; b++) {
			double s = 0;
			for (int x = 0; x < d; x++)
				for (int y = 0; y < d; y++)
					s += L[a * d + x] * X[x * d + y] * R[b * d + y];
			out[a * d + b] = s;
		}
	free(L);
	free(R);
}

static void test_reproject(void)
{
	int m = 40, n = 30, d = 12, r = 3;
	uint64_t s = 77;
	struct lspo_proj *po, *pn;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 1, &po) == LSPO_OK, "create");
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 2, &pn) == LSPO_OK, "create");
	double *Po = malloc(sizeof(double) * m * d), *Qo = malloc(sizeof(double) * n * d);
	double *Pn = malloc(sizeof(double) * m * d), *Qn = malloc(sizeof(double) * n * d);
	dense(po, 0, Po); dense(po, 1, Qo); dense(pn, 0, Pn); dense(pn, 1, Qn);
	float M[144], V[144], M0[144], V0[144];
	double ref[144];
	for (int same = 1; same >= 0; same--) {
		const struct lspo_proj *dst = same ? po : pn;
		test_fill(M0, 144, &s);
		test_fill(V0, 144, &s);
		for (int i = 0; i < 144; i++) {
			V0[i] = V0[i] * V0[i];
			M[i] = M0[i];
			V[i] = V0[i];
		}
		float *Ms[1] = { M }, *Vs[1] = { V };
		CHECK(lspo_proj_reproject_moments(po, dst, Ms, Vs, 1) == LSPO_OK, "reproject");
		/* same pair: compress(decompress(M)) = P^T (P M Q^T) Q */
		ref_reproject(m, n, d, same ? Po : Pn, Po, same ? Qo : Qn, Qo, M0, 0, ref);
		double worst = 0, scale = 0;
		for (int i = 0; i < 144; i++)
			scale = fmax(scale, fabs(ref[i]));
		for (int i = 0; i < 144; i++)
			worst = fmax(worst, fabs(M[i] - ref[i]) / scale);
		CHECK(worst < 1e-5, "M re-projection (same pair %d): error %.3g", same, worst);
		ref_reproject(m, n, d, same ? Po : Pn, Po, same ? Qo : Qn, Qo, V0, 1, ref);
		worst = scale = 0;
		int neg = 0;
		for (int i = 0; i < 144; i++)
			scale = fmax(scale, fabs(ref[i]));
		for (int i = 0; i < 144; i++) {
			worst = fmax(worst, fabs(V[i] - ref[i]) / scale);
			neg += !(V[i] >= 0);
		}
		CHECK(worst < 1e-5, "V re-projection (same pair %d): error %.3g", same, worst);
		CHECK(neg == 0, "%d negative entries of V", neg);
	}
	/* NaN / Inf become safe values, V stays >= 0 */
	for (int i = 0; i < 144; i++) {
		M[i] = 0.1f;
		V[i] = 0.1f;
	}
	M[5] = NAN; M[7] = INFINITY; V[3] = NAN; V[9] = INFINITY;
	float *Ms[1] = { M }, *Vs[1] = { V };
	CHECK(lspo_proj_reproject_moments(po, pn, Ms, Vs, 1) == LSPO_OK, "reproject");
	int bad = 0;
	for (int i = 0; i < 144; i++)
		bad += !isfinite(M[i]) || !isfinite(V[i]) || V[i] < 0 || fabsf(M[i]) > 1e30f;
	CHECK(bad == 0, "%d non-finite or negative entries after re-projecting NaN/Inf", bad);
	struct lspo_proj *other;
	CHECK(lspo_proj_create(m, n, d + 1, r, LSPO_PROJ_GAUSSIAN, 1, &other) == LSPO_OK, "create");
	CHECK(lspo_proj_reproject_moments(po, other, Ms, Vs, 1) == LSPO_EINVAL, "mismatched pairs accepted");
	lspo_proj_free(other);
	free(Po); free(Qo); free(Pn); free(Qn);
	lspo_proj_free(po);
	lspo_proj_free(pn);
}

/* ---- refresh decision ------------------------------------------------------ */

static void test_refresh(void)
{
	int m = 192, n = 160, d = 96, r = 8;
	uint64_t s = 5;
	double *U = orthonormal(m, 16, &s), *V = orthonormal(n, 16, &s);
	float *Gc = lowrank(m, n, 16, U, V, 0.05, &s), *Gt = lowrank(m, n, 16, U, V, 0.05, &s);
	const float *check[1] = { Gc }, *train[1] = { Gt };
	struct lspo_proj *p, *copy;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 9, &p) == LSPO_OK, "create");
	CHECK(lspo_proj_clone(p, &copy) == LSPO_OK, "clone");
	float *M = malloc(sizeof(float) * d * d), *Vm = malloc(sizeof(float) * d * d);
	float *M0 = malloc(sizeof(float) * d * d);
	test_fill(M, (size_t)d * d, &s);
	for (int i = 0; i < d * d; i++) {
		Vm[i] = M[i] * M[i];
		M0[i] = M[i];
	}
	float *Ms[1] = { M }, *Vs[1] = { Vm };
	struct lspo_proj_refresh_opts o = lspo_proj_refresh_opts_default();
	o.learn.iters = 40;
	o.alpha = 1e9;  /* never exceeded: nothing changes */
	struct lspo_proj_refresh_report rep;
	CHECK(lspo_proj_maybe_refresh(p, check, 1, train, 1, &o, Ms, Vs, 1, &rep) == LSPO_OK, "refresh");
	CHECK(!rep.refreshed && !memcmp(p->val[0], copy->val[0], sizeof(float) * m * r)
	      && !memcmp(M, M0, sizeof(float) * d * d), "refreshed below the threshold");
	o.alpha = 0.5;  /* a random pair is far above it */
	o.seed = 1234;
	CHECK(lspo_proj_maybe_refresh(p, check, 1, train, 1, &o, Ms, Vs, 1, &rep) == LSPO_OK, "refresh");
	printf("refresh: check error %.3f > alpha %.2f -> refreshed %d, learned %.3f, check after %.3f\n",
	       rep.err_check, o.alpha, rep.refreshed, rep.err_learned, rep.err_after);
	CHECK(rep.refreshed, "not refreshed at error %.3f > %.2f", rep.err_check, o.alpha);
	CHECK(rep.err_after < rep.err_check / 3, "refresh did not help: %.3f -> %.3f", rep.err_check,
	      rep.err_after);
	CHECK(memcmp(p->idx[0], copy->idx[0], sizeof(int32_t) * m * r), "pattern not redrawn");
	/* moments re-projected (not reset, not kept): M = L M0 R^T with the old and new pairs */
	float *Mref = malloc(sizeof(float) * d * d), *Vref = malloc(sizeof(float) * d * d);
	for (int i = 0; i < d * d; i++) {
		Mref[i] = M0[i];
		Vref[i] = M0[i] * M0[i];
	}
	float *Mr[1] = { Mref }, *Vr[1] = { Vref };
	CHECK(lspo_proj_reproject_moments(copy, p, Mr, Vr, 1) == LSPO_OK, "reproject");
	/* ... with the old pair's own scale undone: s_P s_Q for M, squared for V */
	double sp = 0, sq = 0;
	for (int i = 0; i < m * r; i++)
		sp += (double)copy->val[0][i] * copy->val[0][i];
	for (int i = 0; i < n * r; i++)
		sq += (double)copy->val[1][i] * copy->val[1][i];
	float fm = (float)(1.0 / ((sp / d) * (sq / d)));
	for (int i = 0; i < d * d; i++) {
		Mref[i] *= fm;
		Vref[i] *= fm * fm;
	}
	double worst = 0, nm = 0;
	for (int i = 0; i < d * d; i++) {
		worst = fmax(worst, fabs(M[i] - Mref[i]) + fabs(Vm[i] - Vref[i]));
		nm += fabs(M[i]);
	}
	CHECK(worst == 0 && nm > 0, "moments are not the re-projection of the old ones (diff %.3g)", worst);
	free(M); free(Vm); free(M0); free(Mref); free(Vref); free(U); free(V); free(Gc); free(Gt);
	lspo_proj_free(p);
	lspo_proj_free(copy);
}

/* ---- no collapse (issue 15) ------------------------------------------------ */

/* |P^T G Q| / |G| by dense products, at the pair's own scale. */
static double dense_captured(const struct lspo_proj *p, const float *G)
{
	int m = p->m, n = p->n, d = p->d;
	double *P = malloc(sizeof(double) * m * d), *Q = malloc(sizeof(double) * n * d), s = 0, g = 0;
	dense(p, 0, P);
	dense(p, 1, Q);
	for (int a = 0; a < d; a++)
		for (int b = 0; b < d; b++) {
			double x = 0;
			for (int i = 0; i < m; i++)
				for (int j = 0; j < n; j++)
					x += P[i * d + a] * G[i * n + j] * Q[j * d + b];
			s += x * x;
		}
	for (int i = 0; i < m * n; i++)
		g += (double)G[i] * G[i];
	free(P);
	free(Q);
	return sqrt(s / g);
}

/* lspo_proj_normalize and lspo_proj_captured against their definitions. */
static void test_normalize_captured(void)
{
	int m = 40, n = 30, d = 12, r = 3;
	uint64_t s = 31;
	struct lspo_proj *p;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 4, &p) == LSPO_OK, "create");
	float *G = malloc(sizeof(float) * m * n);
	test_fill(G, (size_t)m * n, &s);
	const float *grads[1] = { G };
	double c0, c1, e0, e1;
	CHECK(lspo_proj_captured(p, grads, 1, &c0) == LSPO_OK && lspo_proj_error(p, grads, 1, &e0) == LSPO_OK,
	      "captured");
	CHECK(lspo_proj_normalize(p) == LSPO_OK, "normalize");
	double sp = 0, sq = 0;
	for (int i = 0; i < m * r; i++)
		sp += (double)p->val[0][i] * p->val[0][i];
	for (int i = 0; i < n * r; i++)
		sq += (double)p->val[1][i] * p->val[1][i];
	CHECK(fabs(sp / d - 1) < 1e-5 && fabs(sq / d - 1) < 1e-5, "normalized |P|^2/d %.6f, |Q|^2/d %.6f", sp / d,
	      sq / d);
	CHECK(lspo_proj_captured(p, grads, 1, &c1) == LSPO_OK && lspo_proj_error(p, grads, 1, &e1) == LSPO_OK,
	      "captured");
	double ref = dense_captured(p, G);
	printf("normalize: 40x30 d=12 r=3: error %.3f -> %.3f, captured %.4f = %.4f (dense %.4f)\n", e0, e1, c0,
	       c1, ref);
	CHECK(fabs(c1 - ref) < 1e-4 * ref && fabs(c0 - c1) < 1e-4 * c1, "captured %.6f / %.6f, dense %.6f", c0, c1,
	      ref);
	CHECK(e0 > 1.5 && fabs(e1 - 1) < 0.5, "error of the paper's scale %.3f, normalized %.3f", e0, e1);
	free(G);
	lspo_proj_free(p);
}

/* Synthetic gradients of effective rank 4 (lsp-offload.md 14.3 with k = 4),
 * d / min(m, n) from 1/64 to 1/2: after a check the error is below
 * min(1, before) or the learned pair was rejected, and a pair in place
 * always captures a part of the gradient.  Rejection is forced by checking
 * on gradients whose subspace the learning never saw. */
static void test_no_collapse(void)
{
	int m = 256, n = 256, r = 4;
	uint64_t s = 99;
	double *U = orthonormal(m, 8, &s), *V = orthonormal(n, 8, &s);
	double *U2 = malloc(sizeof(double) * m * 4), *V2 = malloc(sizeof(double) * n * 4);
	for (int i = 0; i < m; i++)   /* columns 4..7: orthogonal to the first four */
		for (int c = 0; c < 4; c++) {
			U2[i * 4 + c] = U[i * 8 + 4 + c];
			V2[i * 4 + c] = V[i * 8 + 4 + c];
		}
	for (int i = 0; i < m; i++)
		for (int c = 0; c < 4; c++) {
			U[i * 4 + c] = U[i * 8 + c];
			V[i * 4 + c] = V[i * 8 + c];
		}
	float *Gt = lowrank(m, n, 4, U, V, 0.05, &s), *Gc = lowrank(m, n, 4, U, V, 0.05, &s);
	float *Go = lowrank(m, n, 4, U2, V2, 0.05, &s);
	const float *train[1] = { Gt }, *check[1] = { Gc }, *other[1] = { Go };
	int collapsed_paper = 0, ncases = 0;
	for (int d = 4; d <= 128; d *= 2, ncases++) {
		int rd = r < d ? r : d;
		float *M = malloc(sizeof(float) * d * d), *Vm = malloc(sizeof(float) * d * d);
		float *Ms[1] = { M }, *Vs[1] = { Vm };
		struct lspo_proj_refresh_opts o = lspo_proj_refresh_opts_default();
		o.alpha = 0;   /* always try a new pair */
		o.seed = 700 + d;

		/* the learning path, from a pair at lspo_proj_create's scale */
		struct lspo_proj *p, *paper;
		CHECK(lspo_proj_create(m, n, d, rd, LSPO_PROJ_GAUSSIAN, 50 + d, &p) == LSPO_OK, "create");
		CHECK(lspo_proj_create(m, n, d, rd, LSPO_PROJ_GAUSSIAN, o.seed, &paper) == LSPO_OK, "create");
		struct lspo_proj_refresh_report rep;
		memset(M, 0, sizeof(float) * d * d);
		memset(Vm, 0, sizeof(float) * d * d);
		CHECK(lspo_proj_maybe_refresh(p, check, 1, train, 1, &o, Ms, Vs, 1, &rep) == LSPO_OK, "refresh");
		/* the paper's procedure, for the record: the same pattern learned at create's scale */
		double pb, pa, pc;
		CHECK(lspo_proj_learn(paper, train, 1, &o.learn, &pb, &pa) == LSPO_OK
		      && lspo_proj_captured(paper, check, 1, &pc) == LSPO_OK, "paper learning");
		collapsed_paper += pc < 0.25 * rep.captured_random;
		printf("d/min(m,n) = 1/%d: before %.3f (captured %.4f), fresh %.3f, learned %.3f -> %s, after %.3f "
		       "(captured %.4f, random ~%.4f); create's scale learned: %.3f -> %.3f, captured %.4f\n",
		       256 / d, rep.err_check, rep.captured_before, rep.err_fresh, rep.err_candidate,
		       lspo_proj_outcome_name(rep.outcome), rep.err_after, rep.captured_after, rep.captured_random,
		       pb, pa, pc);
		double bar = fmin(1.0, rep.err_check);
		int rejected = rep.outcome == LSPO_PROJ_REJECTED_KEPT || rep.outcome == LSPO_PROJ_REJECTED_RANDOM;
		CHECK(rep.outcome != LSPO_PROJ_KEPT, "d=%d: alpha 0 kept the pair", d);
		CHECK(rejected || (rep.outcome == LSPO_PROJ_LEARNED && rep.err_after < bar),
		      "d=%d: learned pair with error %.4f installed, before %.4f", d, rep.err_after, rep.err_check);
		CHECK(!rejected || rep.err_candidate >= bar, "d=%d: a learned pair at %.4f < %.4f was rejected", d,
		      rep.err_candidate, bar);
		CHECK(rep.err_after <= rep.err_check, "d=%d: the check made the error worse: %.4f -> %.4f", d,
		      rep.err_check, rep.err_after);
		CHECK(rep.captured_after > 0.25 * rep.captured_random,
		      "d=%d: the pair in place keeps %.5f of the gradient (random ~%.4f)", d, rep.captured_after,
		      rep.captured_random);

		/* rejection, old pair better: keep p (a pair learned on the check subspace) */
		struct lspo_proj *good, *copy;
		CHECK(lspo_proj_clone(p, &good) == LSPO_OK, "clone");
		uint64_t ms = 5 + d;
		test_fill(M, (size_t)d * d, &ms);
		for (int i = 0; i < d * d; i++)
			Vm[i] = M[i] * M[i];
		float *M0 = malloc(sizeof(float) * d * d * 2), *V0 = M0 + d * d;
		memcpy(M0, M, sizeof(float) * d * d);
		memcpy(V0, Vm, sizeof(float) * d * d);
		CHECK(lspo_proj_clone(good, &copy) == LSPO_OK, "clone");
		o.seed++;
		CHECK(lspo_proj_maybe_refresh(good, check, 1, other, 1, &o, Ms, Vs, 1, &rep) == LSPO_OK, "refresh");
		printf("    learned on another subspace: before %.3f, learned %.3f, fresh %.3f -> %s, after %.3f\n",
		       rep.err_check, rep.err_candidate, rep.err_fresh, lspo_proj_outcome_name(rep.outcome),
		       rep.err_after);
		if (rep.err_check < fmin(1.0, rep.err_fresh)) {
			CHECK(rep.outcome == LSPO_PROJ_REJECTED_KEPT && !rep.refreshed, "d=%d: %s, want rejected-kept", d,
			      lspo_proj_outcome_name(rep.outcome));
			CHECK(!memcmp(good->idx[0], copy->idx[0], sizeof(int32_t) * m * rd)
			      && !memcmp(good->val[1], copy->val[1], sizeof(float) * n * rd)
			      && !memcmp(M, M0, sizeof(float) * d * d) && !memcmp(Vm, V0, sizeof(float) * d * d)
			      && rep.err_after == rep.err_check, "d=%d: a kept pair or its moments changed", d);
		} else {
			CHECK(rep.outcome != LSPO_PROJ_LEARNED || rep.err_after < fmin(1.0, rep.err_check),
			      "d=%d: learned pair with error %.4f installed, before %.4f", d, rep.err_after,
			      rep.err_check);
		}

		/* rejection, old pair worse: a pair at create's scale gives way to the fresh random one */
		struct lspo_proj *bad;
		CHECK(lspo_proj_create(m, n, d, rd, LSPO_PROJ_GAUSSIAN, 900 + d, &bad) == LSPO_OK, "create");
		lspo_proj_free(copy);
		CHECK(lspo_proj_clone(bad, &copy) == LSPO_OK, "clone");
		memcpy(M, M0, sizeof(float) * d * d);
		memcpy(Vm, V0, sizeof(float) * d * d);
		o.seed++;
		CHECK(lspo_proj_maybe_refresh(bad, check, 1, other, 1, &o, Ms, Vs, 1, &rep) == LSPO_OK, "refresh");
		printf("    old pair at create's scale: before %.3f, learned %.3f, fresh %.3f -> %s, after %.3f\n",
		       rep.err_check, rep.err_candidate, rep.err_fresh, lspo_proj_outcome_name(rep.outcome),
		       rep.err_after);
		CHECK(rep.err_check > 1.5, "d=%d: create's scale has error %.3f", d, rep.err_check);
		if (rep.err_candidate >= 1.0) {
			CHECK(rep.outcome == LSPO_PROJ_REJECTED_RANDOM && rep.refreshed && rep.err_after == rep.err_fresh,
			      "d=%d: %s (after %.4f, fresh %.4f), want rejected-random", d,
			      lspo_proj_outcome_name(rep.outcome), rep.err_after, rep.err_fresh);
			/* moments re-projected from the old pair (scale undone) to the random one */
			float *Mr[1] = { M0 }, *Vr[1] = { V0 };
			CHECK(lspo_proj_reproject_moments(copy, bad, Mr, Vr, 1) == LSPO_OK, "reproject");
			double sp = 0, sq = 0, worst = 0;
			for (int i = 0; i < m * rd; i++)
				sp += (double)copy->val[0][i] * copy->val[0][i];
			for (int i = 0; i < n * rd; i++)
				sq += (double)copy->val[1][i] * copy->val[1][i];
			float fm = (float)(1.0 / ((sp / d) * (sq / d)));
			for (int i = 0; i < d * d; i++)
				worst = fmax(worst, fabs(M[i] - M0[i] * fm) + fabs(Vm[i] - V0[i] * (fm * fm)));
			CHECK(worst == 0, "d=%d: moments not re-projected to the random pair (diff %.3g)", d, worst);
		} else {
			CHECK(rep.outcome == LSPO_PROJ_LEARNED && rep.err_after < 1.0, "d=%d: %s at %.4f", d,
			      lspo_proj_outcome_name(rep.outcome), rep.err_after);
		}
		lspo_proj_free(bad);
		lspo_proj_free(copy);
		lspo_proj_free(good);
		lspo_proj_free(paper);
		lspo_proj_free(p);
		free(M0);
		free(M);
		free(Vm);
	}
	printf("no collapse: learned at create's scale (no normalization), %d of %d pairs keep under a quarter "
	       "of a random pair's share\n", collapsed_paper, ncases);
	free(U); free(V); free(U2); free(V2); free(Gt); free(Gc); free(Go);
}

/* ---- registry ------------------------------------------------------------- */

static void test_registry(void)
{
	struct lspo_proj_registry *sh, *pm, *sh2;
	CHECK(lspo_proj_registry_create(1, 64, 4, LSPO_PROJ_GAUSSIAN, 3, &sh) == LSPO_OK, "create");
	CHECK(lspo_proj_registry_create(0, 64, 4, LSPO_PROJ_GAUSSIAN, 3, &pm) == LSPO_OK, "create");
	CHECK(lspo_proj_registry_create(1, 64, 4, LSPO_PROJ_GAUSSIAN, 3, &sh2) == LSPO_OK, "create");
	struct lspo_proj *a, *b, *c, *e, *f, *g;
	lspo_proj_registry_get(sh, 0, 0, 96, 288, &a);
	lspo_proj_registry_get(sh, 0, 5, 96, 288, &b);
	lspo_proj_registry_get(sh, 1, 0, 96, 96, &c);
	CHECK(a && a == b, "shared: same role and shape, different pairs");
	CHECK(c && c != a, "shared: different roles, same pair");
	lspo_proj_registry_get(pm, 0, 0, 96, 288, &e);
	lspo_proj_registry_get(pm, 0, 5, 96, 288, &f);
	lspo_proj_registry_get(pm, 0, 0, 96, 288, &g);
	CHECK(e && f && e != f && e == g, "per matrix: pairs not one per key");
	CHECK(lspo_proj_registry_count(sh) == 2 && lspo_proj_registry_count(pm) == 2, "counts %d %d",
	      lspo_proj_registry_count(sh), lspo_proj_registry_count(pm));
	CHECK(lspo_proj_registry_at(sh, 1) == c && lspo_proj_registry_at(sh, 2) == NULL, "registry_at");
	/* seeds depend on the key, not on the order of requests */
	struct lspo_proj *c2, *a2;
	lspo_proj_registry_get(sh2, 1, 3, 96, 96, &c2);
	lspo_proj_registry_get(sh2, 0, 1, 96, 288, &a2);
	CHECK(!memcmp(c2->val[0], c->val[0], sizeof(float) * 96 * 4)
	      && !memcmp(a2->idx[1], a->idx[1], sizeof(int32_t) * 288 * 4), "registry not reproducible");
	CHECK(memcmp(e->val[0], f->val[0], sizeof(float) * 96 * 4), "per-matrix pairs identical");
	struct lspo_proj *bad;
	CHECK(lspo_proj_registry_get(sh, -1, 0, 8, 8, &bad) == LSPO_EINVAL, "negative role accepted");
	lspo_proj_registry_free(sh);
	lspo_proj_registry_free(pm);
	lspo_proj_registry_free(sh2);
}

int main(void)
{
	test_sampling();
	test_gradcheck();
	test_descent();
	test_reproject();
	test_registry();
	test_refresh();
	test_normalize_captured();
	test_no_collapse();
	uint64_t s = 2025;
	double *U = orthonormal(768, 64, &s), *V = orthonormal(768, 64, &s);
	test_closed_form(U, V);
	test_learning(U, V);
	free(U);
	free(V);
	return test_finish("test_proj_learn");
}
