/*
 * test_lsp_basis.c - subspace Adam in a fixed random rotation of each
 * pair's basis (--lsp-adam-basis rotated, issue 15):
 *   - the rotations are orthogonal (|Q^T Q - I| < 1e-5), a function of the
 *     seed only, R and S of a pair differ;
 *   - the codelet's update equals Delta = R Adam(R^T G_hat S) S^T, moments
 *     R^T-rotated, against a double-precision reference over three steps;
 *     with R = S = I it equals subspace_adam bit for bit; a non-finite
 *     G_hat gives a zero step and leaves the moments;
 *   - the moments' move at a refresh: with R = S = I it is the refresh's
 *     own (lspo_proj_reproject_moments, then the old pair's scale undone);
 *     M moves exactly as R M S^T would and rotated back; a check that keeps
 *     the pair leaves the moments bit for bit;
 *   - a tiny GPT-2 trains in lsp mode with the rotated basis, through a
 *     projector check, and its weights differ from the pair basis's.
 */
#include <string.h>

#include <starpu.h>

#include "common.h"
#include "engine/lsp_basis.h"
#include "projector.h"
#include "subspace_adam.h"
#include "subspace_adam_rot.h"

/* C (d, d) = op(A) op(B) in double; ta/tb: transpose. */
static void dmul(int d, const double *A, int ta, const double *B, int tb, double *C)
{
	for (int i = 0; i < d; i++)
		for (int j = 0; j < d; j++) {
			double s = 0;
			for (int k = 0; k < d; k++)
				s += (ta ? A[(size_t)k * d + i] : A[(size_t)i * d + k])
				     * (tb ? B[(size_t)j * d + k] : B[(size_t)k * d + j]);
			C[(size_t)i * d + j] = s;
		}
}

static double *todouble(const float *x, size_t n)
{
	double *y = malloc(n * sizeof(double));
	for (size_t i = 0; i < n; i++)
		y[i] = x[i];
	return y;
}

static void check_rotations(void)
{
	static const int ds[] = { 1, 2, 5, 32, 64 };
	for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
		int d = ds[k];
		float *Q = falloc((size_t)d * d), *Q2 = falloc((size_t)d * d), *RS = falloc(2 * (size_t)d * d);
		CHECK(lsp_basis_rotation(d, 7, Q) == LSPO_OK, "rotation d=%d", d);
		double worst = 0;
		for (int i = 0; i < d; i++)
			for (int j = 0; j < d; j++) {
				double s = 0;
				for (int r = 0; r < d; r++)
					s += (double)Q[(size_t)r * d + i] * Q[(size_t)r * d + j];
				worst = fmax(worst, fabs(s - (i == j)));
			}
		CHECK(worst < 1e-5, "d=%d: |Q^T Q - I| = %.3g", d, worst);
		CHECK(lsp_basis_rotation(d, 7, Q2) == LSPO_OK && !memcmp(Q, Q2, sizeof(float) * d * d),
		      "d=%d: the same seed gives another rotation", d);
		CHECK(lsp_basis_rotation(d, 8, Q2) == LSPO_OK, "rotation");
		if (d > 1)
			CHECK(memcmp(Q, Q2, sizeof(float) * d * d), "d=%d: seeds 7 and 8 give the same rotation", d);
		CHECK(lsp_basis_pair_rotations(d, 3, 0, RS) == LSPO_OK, "pair rotations");
		if (d > 1)
			CHECK(memcmp(RS, RS + (size_t)d * d, sizeof(float) * d * d), "d=%d: R = S", d);
		free(Q);
		free(Q2);
		free(RS);
	}
	float q;
	CHECK(lsp_basis_rotation(0, 1, &q) == LSPO_EINVAL, "d = 0 accepted");
}

/* Three steps through the codelet against R Adam(R^T G S) S^T in double. */
static double check_formula(int d, uint64_t *seed)
{
	size_t dd = (size_t)d * d;
	float *G = falloc(dd), *D = falloc(dd), *M = calloc(dd, sizeof(float)), *V = calloc(dd, sizeof(float));
	float *RS = falloc(2 * dd);
	double *rm = calloc(dd, sizeof(double)), *rv = calloc(dd, sizeof(double));
	double *t = malloc(dd * sizeof(double)), *g = malloc(dd * sizeof(double)), *dl = malloc(dd * sizeof(double));
	double *ref = malloc(dd * sizeof(double));
	CHECK(lsp_basis_pair_rotations(d, *seed, 1, RS) == LSPO_OK, "rotations");
	double *R = todouble(RS, dd), *S = todouble(RS + dd, dd);
	starpu_data_handle_t hg, hd, hm, hv, hr;
	lspo_matrix_register(&hg, G, d, d);
	lspo_matrix_register(&hd, D, d, d);
	lspo_matrix_register(&hm, M, d, d);
	lspo_matrix_register(&hv, V, d, d);
	lspo_matrix_register(&hr, RS, 2 * d, d);
	struct lspo_subspace_adam_hparams hp = { .lr = 2e-3f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-3f };
	double worst = 0;
	for (int step = 1; step <= 3; step++) {
		hp.t = step;
		starpu_data_acquire(hg, STARPU_W);
		test_fill(G, dd, seed);
		double *Gd = todouble(G, dd);
		starpu_data_release(hg);
		dmul(d, R, 1, Gd, 0, t);
		dmul(d, t, 0, S, 0, g);
		for (size_t i = 0; i < dd; i++) {
			rm[i] = hp.beta1 * rm[i] + (1 - (double)hp.beta1) * g[i];
			rv[i] = hp.beta2 * rv[i] + (1 - (double)hp.beta2) * g[i] * g[i];
			double mh = rm[i] / (1 - pow(hp.beta1, step)), vh = rv[i] / (1 - pow(hp.beta2, step));
			dl[i] = -hp.lr * mh / (sqrt(vh) + hp.eps);
		}
		dmul(d, R, 0, dl, 0, t);
		dmul(d, t, 0, S, 1, ref);
		free(Gd);
		CHECK(lspo_subspace_adam_rot_submit(hg, hd, hm, hv, hr, &hp, 0, "subspace_adam:L0:rot") == LSPO_OK,
		      "submit");
		starpu_data_acquire(hd, STARPU_R);
		starpu_data_acquire(hm, STARPU_R);
		double scale = 0, e = 0, em = 0, sm = 0;
		for (size_t i = 0; i < dd; i++) {
			scale = fmax(scale, fabs(ref[i]));
			e = fmax(e, fabs(D[i] - ref[i]));
			sm = fmax(sm, fabs(rm[i]));
			em = fmax(em, fabs(M[i] - rm[i]));
		}
		starpu_data_release(hm);
		starpu_data_release(hd);
		worst = fmax(worst, fmax(e / scale, em / sm));
	}
	starpu_data_handle_t hs[] = { hg, hd, hm, hv, hr };
	for (int i = 0; i < 5; i++)
		starpu_data_unregister(hs[i]);
	free(G); free(D); free(M); free(V); free(RS); free(rm); free(rv); free(t); free(g); free(dl);
	free(ref); free(R); free(S);
	return worst;
}

/* R = S = I: the rotated codelet and subspace_adam agree bit for bit. */
static void check_identity(int d, uint64_t *seed)
{
	size_t dd = (size_t)d * d;
	float *G = falloc(dd), *D[2] = { falloc(dd), falloc(dd) };
	float *M[2] = { calloc(dd, sizeof(float)), calloc(dd, sizeof(float)) };
	float *V[2] = { calloc(dd, sizeof(float)), calloc(dd, sizeof(float)) };
	float *RS = calloc(2 * dd, sizeof(float));
	for (int i = 0; i < d; i++)
		RS[(size_t)i * d + i] = RS[dd + (size_t)i * d + i] = 1.0f;
	starpu_data_handle_t hg, hd[2], hm[2], hv[2], hr;
	lspo_matrix_register(&hg, G, d, d);
	lspo_matrix_register(&hr, RS, 2 * d, d);
	for (int k = 0; k < 2; k++) {
		lspo_matrix_register(&hd[k], D[k], d, d);
		lspo_matrix_register(&hm[k], M[k], d, d);
		lspo_matrix_register(&hv[k], V[k], d, d);
	}
	struct lspo_subspace_adam_hparams hp = lspo_subspace_adam_default();
	int same = 1;
	for (int step = 1; step <= 3; step++) {
		hp.t = step;
		starpu_data_acquire(hg, STARPU_W);
		test_fill(G, dd, seed);
		starpu_data_release(hg);
		CHECK(lspo_subspace_adam_submit(hg, hd[0], hm[0], hv[0], &hp, 0, "subspace_adam:L0:id") == LSPO_OK,
		      "submit");
		CHECK(lspo_subspace_adam_rot_submit(hg, hd[1], hm[1], hv[1], hr, &hp, 0, "subspace_adam:L0:id")
		      == LSPO_OK, "submit");
		starpu_task_wait_for_all();
		for (int k = 0; k < 2; k++) {
			starpu_data_acquire(hd[k], STARPU_R);
			starpu_data_acquire(hm[k], STARPU_R);
			starpu_data_acquire(hv[k], STARPU_R);
		}
		same &= !memcmp(D[0], D[1], dd * sizeof(float)) && !memcmp(M[0], M[1], dd * sizeof(float))
		        && !memcmp(V[0], V[1], dd * sizeof(float));
		for (int k = 0; k < 2; k++) {
			starpu_data_release(hd[k]);
			starpu_data_release(hm[k]);
			starpu_data_release(hv[k]);
		}
	}
	CHECK(same, "d=%d: with R = S = I the rotated update differs from subspace_adam's", d);
	/* the non-finite guard */
	starpu_data_acquire(hg, STARPU_W);
	G[dd / 2] = NAN;
	starpu_data_release(hg);
	starpu_data_acquire(hm[1], STARPU_R);
	float *M0 = falloc(dd);
	memcpy(M0, M[1], dd * sizeof(float));
	starpu_data_release(hm[1]);
	hp.t = 4;
	CHECK(lspo_subspace_adam_rot_submit(hg, hd[1], hm[1], hv[1], hr, &hp, 0, "subspace_adam:L0:guard")
	      == LSPO_OK, "submit");
	starpu_data_acquire(hd[1], STARPU_R);
	starpu_data_acquire(hm[1], STARPU_R);
	int zero = 1;
	for (size_t i = 0; i < dd; i++)
		zero &= D[1][i] == 0.0f;
	CHECK(zero && !memcmp(M0, M[1], dd * sizeof(float)), "d=%d: a non-finite G_hat moved the weights or M", d);
	starpu_data_release(hd[1]);
	starpu_data_release(hm[1]);
	starpu_data_unregister(hg);
	starpu_data_unregister(hr);
	for (int k = 0; k < 2; k++) {
		starpu_data_unregister(hd[k]);
		starpu_data_unregister(hm[k]);
		starpu_data_unregister(hv[k]);
		free(D[k]); free(M[k]); free(V[k]);
	}
	free(G); free(RS); free(M0);
	/* bad shapes */
	float z[8] = { 0 };
	starpu_data_handle_t h2, h3;
	lspo_matrix_register(&h2, z, 2, 2);
	lspo_matrix_register(&h3, z, 2, 2);   /* RS should be (4, 2) */
	CHECK(lspo_subspace_adam_rot_submit(h2, h2, h2, h2, h3, &hp, 0, "subspace_adam:L0:bad") == LSPO_EINVAL,
	      "RS of the wrong shape accepted");
	starpu_data_unregister(h2);
	starpu_data_unregister(h3);
}

static double sumsq_side(const struct lspo_proj *p, int side)
{
	double s = 0;
	for (size_t i = 0; i < (size_t)lspo_proj_rows(p, side) * p->r; i++)
		s += (double)p->val[side][i] * p->val[side][i];
	return s;
}

/* The moments' move between two pairs, rotated and not. */
static void check_reproject(uint64_t *seed)
{
	enum { m = 40, n = 30, d = 8, r = 3 };
	size_t dd = (size_t)d * d;
	struct lspo_proj *po, *pn;
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 11, &po) == LSPO_OK, "old pair");
	CHECK(lspo_proj_create(m, n, d, r, LSPO_PROJ_GAUSSIAN, 12, &pn) == LSPO_OK, "new pair");
	float M[dd], V[dd], M1[dd], V1[dd], RS[2 * dd], I2[2 * dd];
	test_fill(M, dd, seed);
	for (size_t i = 0; i < dd; i++)
		V[i] = M[i] * M[i] + 0.01f;
	memset(I2, 0, sizeof(I2));
	for (int i = 0; i < d; i++)
		I2[i * d + i] = I2[dd + i * d + i] = 1.0f;
	/* identity rotation = the refresh's own re-projection and scale */
	memcpy(M1, M, sizeof(M));
	memcpy(V1, V, sizeof(V));
	float *pm[] = { M1 }, *pv[] = { V1 };
	CHECK(lsp_basis_reproject(po, pn, I2, pm, pv, 1) == LSPO_OK, "reproject");
	float M2[dd], V2[dd];
	memcpy(M2, M, sizeof(M));
	memcpy(V2, V, sizeof(V));
	float *qm[] = { M2 }, *qv[] = { V2 };
	CHECK(lspo_proj_reproject_moments(po, pn, qm, qv, 1) == LSPO_OK, "reproject moments");
	double f = 1.0 / (sumsq_side(po, 0) / d * sumsq_side(po, 1) / d);
	for (size_t i = 0; i < dd; i++) {
		M2[i] = (float)(M2[i] * f);
		V2[i] = (float)(V2[i] * f * f);
	}
	CHECK(test_rel_err(M1, M2, dd) < 1e-5 && test_rel_err(V1, V2, dd) < 1e-5,
	      "identity rotation: M error %.3g, V error %.3g against the refresh's re-projection",
	      test_rel_err(M1, M2, dd), test_rel_err(V1, V2, dd));
	/* rotated: M' moves as R^T reproject(R M' S^T) S */
	CHECK(lsp_basis_pair_rotations(d, 5, 2, RS) == LSPO_OK, "rotations");
	double *R = todouble(RS, dd), *S = todouble(RS + dd, dd), *Md = todouble(M, dd);
	double t[dd], u[dd];
	dmul(d, R, 0, Md, 0, t);
	dmul(d, t, 0, S, 1, u);   /* u = R M S^T */
	for (size_t i = 0; i < dd; i++)
		M2[i] = (float)u[i];
	CHECK(lspo_proj_reproject_moments(po, pn, qm, qv, 1) == LSPO_OK, "reproject moments");
	double *Mu = todouble(M2, dd);
	dmul(d, R, 1, Mu, 0, t);
	dmul(d, t, 0, S, 0, u);   /* R^T (...) S */
	float Mref[dd];
	for (size_t i = 0; i < dd; i++)
		Mref[i] = (float)(u[i] * f);
	memcpy(M1, M, sizeof(M));
	memcpy(V1, V, sizeof(V));
	CHECK(lsp_basis_reproject(po, pn, RS, pm, pv, 1) == LSPO_OK, "reproject");
	CHECK(test_rel_err(M1, Mref, dd) < 1e-4, "rotated M: error %.3g against R^T reproject(R M S^T) S",
	      test_rel_err(M1, Mref, dd));
	int vpos = 1;
	for (size_t i = 0; i < dd; i++)
		vpos &= V1[i] >= 0 && isfinite(V1[i]);
	CHECK(vpos, "rotated V: a negative or non-finite entry");
	CHECK(lsp_basis_reproject(po, pn, RS, pm, pv, -1) == LSPO_EINVAL, "count -1 accepted");
	free(R); free(S); free(Md); free(Mu);

	/* a refresh that keeps the pair (alpha huge) leaves the moments bit for
	 * bit; one that installs a pair moves them as lsp_basis_reproject does */
	float *G = falloc((size_t)m * n);
	test_fill(G, (size_t)m * n, seed);
	const float *grads[] = { G };
	struct lspo_proj_refresh_opts ro = lspo_proj_refresh_opts_default();
	struct lspo_proj_refresh_report rep;
	ro.alpha = 1e9;
	memcpy(M1, M, sizeof(M));
	memcpy(V1, V, sizeof(V));
	CHECK(lsp_basis_maybe_refresh(po, grads, 1, &ro, RS, pm, pv, 1, &rep) == LSPO_OK, "refresh");
	CHECK(!rep.refreshed && !memcmp(M1, M, sizeof(M)) && !memcmp(V1, V, sizeof(V)),
	      "a kept pair changed the moments");
	ro.alpha = 0;
	ro.learn.iters = 20;
	struct lspo_proj *old;
	CHECK(lspo_proj_clone(po, &old) == LSPO_OK, "clone");
	CHECK(lsp_basis_maybe_refresh(po, grads, 1, &ro, RS, pm, pv, 1, &rep) == LSPO_OK, "refresh");
	CHECK(rep.refreshed, "alpha 0: the pair was not refreshed (outcome %s)", lspo_proj_outcome_name(rep.outcome));
	memcpy(M2, M, sizeof(M));
	memcpy(V2, V, sizeof(V));
	CHECK(lsp_basis_reproject(old, po, RS, qm, qv, 1) == LSPO_OK, "reproject");
	CHECK(!memcmp(M1, M2, sizeof(M)) && !memcmp(V1, V2, sizeof(V)),
	      "the refresh moved the moments otherwise than lsp_basis_reproject");
	lspo_proj_free(old);
	lspo_proj_free(po);
	lspo_proj_free(pn);
	free(G);
}

/* A tiny GPT-2, lsp mode, dense parameters frozen: the rotated basis trains,
 * through a check, and ends elsewhere than the pair basis. */
static void check_engine(struct lspo_ctx *ctx)
{
	static const struct lspo_model_config cfg = { .vocab_size = 64, .n_positions = 16, .n_embd = 32,
	                                             .n_layer = 1, .n_head = 2 };
	enum { B = 2, T = 16, STEPS = 12 };
	size_t np = lspo_model_nparams(&cfg);
	float *base = falloc(np), *out[2] = { falloc(np), falloc(np) };
	int32_t in[B * T], tg[B * T], cin[2 * B * T], ctg[2 * B * T];
	uint64_t s = 99;
	for (int i = 0; i < B * T; i++) {
		in[i] = (int32_t)((test_uniform(&s) + 1) * 31.99f);
		tg[i] = (in[i] * 7 + 3) % 64;
	}
	for (int i = 0; i < 2 * B * T; i++) {
		cin[i] = in[i % (B * T)];
		ctg[i] = tg[i % (B * T)];
	}
	struct lspo_model *m;
	CHECK(lspo_model_init_params(&cfg, 5, base) == LSPO_OK, "init");
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "create");
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 1e-2f;
	for (int basis = 0; basis < 2; basis++) {
		struct lspo_offload_opts o = lspo_offload_opts_default();
		o.mode = LSPO_MODE_LSP;
		o.lsp_d = 8;
		o.lsp_r = 4;
		o.freeze_dense = 1;
		o.seed = 3;
		o.lsp_adam_basis = basis ? LSPO_LSP_ADAM_BASIS_ROTATED : LSPO_LSP_ADAM_BASIS_PAIR;
		CHECK(lspo_model_set_params(m, base) == LSPO_OK, "params");
		CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "mode");
		double first = 0, last = 0;
		for (int i = 0; i < STEPS; i++) {
			if (i == STEPS / 2) {
				struct lspo_lsp_check rep;
				CHECK(lspo_model_lsp_check(m, cin, ctg, 2, &rep) == LSPO_OK, "check");
			}
			struct lspo_step_stats st;
			CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "step");
			if (i == 0)
				first = st.loss;
			last = st.loss;
		}
		printf("basis %s: loss %.4f -> %.4f over %d steps\n", basis ? "rotated" : "pair", first, last, STEPS);
		CHECK(isfinite(last) && last < first, "basis %d: loss %.4f -> %.4f", basis, first, last);
		CHECK(lspo_model_get_params(m, out[basis]) == LSPO_OK, "params");
	}
	CHECK(memcmp(out[0], out[1], np * sizeof(float)), "the rotated basis gives the pair basis's weights");
	struct lspo_offload_opts bad = lspo_offload_opts_default();
	bad.mode = LSPO_MODE_LSP;
	bad.lsp_adam_basis = (enum lspo_lsp_adam_basis)7;
	CHECK(lspo_model_set_mode(m, &bad) == LSPO_EINVAL, "an unknown basis accepted");
	lspo_model_free(m);
	free(base); free(out[0]); free(out[1]);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("eager", -1, 0);
	uint64_t seed = 77;
	check_rotations();
	static const int ds[] = { 1, 7, 13, 32 };
	for (size_t k = 0; k < sizeof(ds) / sizeof(ds[0]); k++) {
		double e = check_formula(ds[k], &seed);
		CHECK(e < 1e-4, "d=%d: rotated update against R Adam(R^T G S) S^T: error %.3g", ds[k], e);
		check_identity(ds[k], &seed);
	}
	check_reproject(&seed);
	check_engine(ctx);
	lspo_ctx_destroy(ctx);
	return test_finish("test_lsp_basis");
}
