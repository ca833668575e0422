/*
 * projector_learn.c - the relative error of a projector pair and its
 * learning by Adam on the non-zero values (lsp-offload.md 7.1, 7.2).
 *
 * Everything goes through the ELL structure, O(m n r) per product, never
 * through dense P or Q.  For one gradient G (m, n), with A = P P^T and
 * B = Q Q^T:
 *   C = G B            via U = Q^T G^T (d, m), C^T = Q U
 *   R = A C - G        via P^T C (d, n)
 *   loss = |R| / |G|,  E = R / (|R| |G|)
 *   grad_P[i, k] = E[i,:] . (P^T C)[c,:] + C[i,:] . (P^T E)[c,:]      c = pidx[i, k]
 *   grad_Q[j, k] = D^T[j,:] . (Q^T E^T)[c,:] + E^T[j,:] . (Q^T D^T)[c,:]  c = qidx[j, k]
 * with D = A G; these are the masked entries of (E C^T + C E^T) P and
 * (D^T E + E^T D) Q.  About 13 m n r multiply-adds and 4 transposes per step.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"
#include "projector.h"

void lspo_ell_tmul(int N, int d, int r, const int32_t *idx, const float *val, int L,
                   const float *X, float *Y)
{
	memset(Y, 0, sizeof(float) * (size_t)d * L);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < r; k++)
			cblas_saxpy(L, val[(size_t)i * r + k], X + (size_t)i * L, 1,
			            Y + (size_t)idx[(size_t)i * r + k] * L, 1);
}

void lspo_ell_mul(int N, int r, const int32_t *idx, const float *val, int L,
                  const float *Y, float *Z)
{
	memset(Z, 0, sizeof(float) * (size_t)N * L);
	for (int i = 0; i < N; i++)
		for (int k = 0; k < r; k++)
			cblas_saxpy(L, val[(size_t)i * r + k], Y + (size_t)idx[(size_t)i * r + k] * L, 1,
			            Z + (size_t)i * L, 1);
}

void lspo_ell_mdot(int N, int r, const int32_t *idx, int L, const float *A, const float *B,
                   float *out)
{
	for (int i = 0; i < N; i++)
		for (int k = 0; k < r; k++)
			out[(size_t)i * r + k] += cblas_sdot(L, A + (size_t)i * L, 1,
			                                     B + (size_t)idx[(size_t)i * r + k] * L, 1);
}

/* dst (cols, rows) = src (rows, cols)^T, by 32 x 32 blocks. */
static void transpose(int rows, int cols, const float *src, float *dst)
{
	for (int i0 = 0; i0 < rows; i0 += 32)
		for (int j0 = 0; j0 < cols; j0 += 32) {
			int i1 = i0 + 32 < rows ? i0 + 32 : rows, j1 = j0 + 32 < cols ? j0 + 32 : cols;
			for (int i = i0; i < i1; i++)
				for (int j = j0; j < j1; j++)
					dst[(size_t)j * rows + i] = src[(size_t)i * cols + j];
		}
}

static double norm2(size_t n, const float *x)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)x[i] * x[i];
	return sqrt(s);
}

/* Work arrays for one (m, n, d). */
struct learn_ws {
	float *gt, *u, *ct, *c, *ptc, *res, *pte, *ptg, *dm, *dt, *et, *eqt, *dqt;
	float *block;
};

/* Floats of the work arrays of loss_grad for one (m, n, d); grads: with
 * the gradient's own arrays. */
static size_t ws_floats(int m, int n, int d, int grads)
{
	size_t mn = (size_t)m * n, dm = (size_t)d * m, dn = (size_t)d * n;
	return grads ? 6 * mn + 4 * dm + 3 * dn : 3 * mn + dm + dn;
}

/* Carves w's arrays out of block (ws_floats(m, n, d, grads) floats). */
static void ws_carve(struct learn_ws *w, float *block, int m, int n, int d, int grads)
{
	size_t mn = (size_t)m * n, dm = (size_t)d * m, dn = (size_t)d * n;
	memset(w, 0, sizeof(*w));
	float *q = block;
	w->gt = q; q += mn;
	w->ct = q; q += mn;
	w->c = q; q += mn;
	w->res = w->ct;  /* C^T is dead once C exists */
	w->u = q; q += dm;
	w->ptc = q; q += dn;
	if (grads) {
		w->res = q; q += mn;
		w->dm = q; q += mn;
		w->dt = q; q += mn;
		w->et = w->gt;  /* G^T is dead after U */
		w->eqt = q; q += dm;
		w->dqt = q; q += dm;
		w->pte = q; q += dn;
		w->ptg = q; q += dn;
		(void)q;
	}
}

static void ws_free(struct learn_ws *w)
{
	free(w->block);
	memset(w, 0, sizeof(*w));
}

static int ws_alloc(struct learn_ws *w, int m, int n, int d, int grads)
{
	size_t total = ws_floats(m, n, d, grads);
	float *block = malloc(sizeof(float) * total);
	if (!block)
		LSPO_FAIL(LSPO_ENOMEM, "projector learning: cannot allocate %.1f MB of work arrays",
		          4.0 * total / 1e6);
	ws_carve(w, block, m, n, d, grads);
	w->block = block;
	return LSPO_OK;
}

/* Relative error of p on G; with gP, gQ (zeroed by the caller, (m r), (n r)),
 * also the gradient of that error with respect to the values. */
static double loss_grad(const struct lspo_proj *p, const float *G, struct learn_ws *w,
                        float *gP, float *gQ)
{
	int m = p->m, n = p->n, d = p->d, r = p->r;
	const int32_t *pi = p->idx[0], *qi = p->idx[1];
	const float *pv = p->val[0], *qv = p->val[1];
	size_t mn = (size_t)m * n;
	transpose(m, n, G, w->gt);
	lspo_ell_tmul(n, d, r, qi, qv, m, w->gt, w->u);      /* U = Q^T G^T (d, m) */
	lspo_ell_mul(n, r, qi, qv, m, w->u, w->ct);          /* C^T = Q U (n, m) */
	transpose(n, m, w->ct, w->c);                        /* C = G Q Q^T (m, n) */
	lspo_ell_tmul(m, d, r, pi, pv, n, w->c, w->ptc);     /* P^T C (d, n) */
	lspo_ell_mul(m, r, pi, pv, n, w->ptc, w->res);       /* A C (m, n) */
	for (size_t i = 0; i < mn; i++)
		w->res[i] -= G[i];
	double nr = norm2(mn, w->res), ng = norm2(mn, G);
	if (ng == 0)
		return 0;
	if (!gP || nr == 0)
		return nr / ng;
	float s = (float)(1.0 / (nr * ng));
	for (size_t i = 0; i < mn; i++)
		w->res[i] *= s;                                  /* E */
	const float *E = w->res;
	lspo_ell_mdot(m, r, pi, n, E, w->ptc, gP);
	lspo_ell_tmul(m, d, r, pi, pv, n, E, w->pte);        /* P^T E (d, n) */
	lspo_ell_mdot(m, r, pi, n, w->c, w->pte, gP);
	lspo_ell_tmul(m, d, r, pi, pv, n, G, w->ptg);        /* P^T G (d, n) */
	lspo_ell_mul(m, r, pi, pv, n, w->ptg, w->dm);        /* D = A G (m, n) */
	transpose(m, n, w->dm, w->dt);                       /* D^T (n, m) */
	transpose(m, n, E, w->et);                           /* E^T (n, m) */
	lspo_ell_tmul(n, d, r, qi, qv, m, w->et, w->eqt);    /* (E Q)^T (d, m) */
	lspo_ell_tmul(n, d, r, qi, qv, m, w->dt, w->dqt);    /* (D Q)^T (d, m) */
	lspo_ell_mdot(n, r, qi, m, w->dt, w->eqt, gQ);
	lspo_ell_mdot(n, r, qi, m, w->et, w->dqt, gQ);
	return nr / ng;
}

static int check_grads(const struct lspo_proj *p, const float *const *grads, int ngrads)
{
	if (ngrads < 1 || !grads)
		LSPO_FAIL(LSPO_EINVAL, "projector: no gradients given");
	for (int k = 0; k < ngrads; k++)
		if (!grads[k])
			LSPO_FAIL(LSPO_EINVAL, "projector: gradient %d is NULL", k);
	(void)p;
	return LSPO_OK;
}

int lspo_proj_error(const struct lspo_proj *p, const float *const *grads, int ngrads, double *err)
{
	int rc = check_grads(p, grads, ngrads);
	if (rc)
		return rc;
	struct learn_ws w;
	rc = ws_alloc(&w, p->m, p->n, p->d, 0);
	if (rc)
		return rc;
	double s = 0;
	for (int k = 0; k < ngrads; k++)
		s += loss_grad(p, grads[k], &w, NULL, NULL);
	ws_free(&w);
	*err = s / ngrads;
	return LSPO_OK;
}

/* |P^T G Q|_F / |G|_F at |P|_F^2 = |Q|_F^2 = d for one G; work (2 d n + d d). */
static double captured_one(const struct lspo_proj *p, const float *G, float *work)
{
	int m = p->m, n = p->n, d = p->d, r = p->r;
	float *ptg = work, *gtp = ptg + (size_t)d * n, *c = gtp + (size_t)d * n;
	double np = norm2((size_t)m * r, p->val[0]), nq = norm2((size_t)n * r, p->val[1]);
	double unit = np > 0 && nq > 0 ? d / (np * nq) : 0;
	lspo_ell_tmul(m, d, r, p->idx[0], p->val[0], n, G, ptg);   /* P^T G (d, n) */
	transpose(d, n, ptg, gtp);                                /* G^T P (n, d) */
	lspo_ell_tmul(n, d, r, p->idx[1], p->val[1], d, gtp, c);  /* (P^T G Q)^T (d, d) */
	double ng = norm2((size_t)m * n, G);
	return ng > 0 ? norm2((size_t)d * d, c) * unit / ng : 0;
}

int lspo_proj_captured(const struct lspo_proj *p, const float *const *grads, int ngrads, double *frac)
{
	int rc = check_grads(p, grads, ngrads);
	if (rc)
		return rc;
	int n = p->n, d = p->d;
	float *work = malloc(sizeof(float) * ((size_t)2 * d * n + (size_t)d * d));
	if (!work)
		LSPO_FAIL(LSPO_ENOMEM, "projector: cannot allocate %dx%d work arrays", d, n);
	double s = 0;
	for (int k = 0; k < ngrads; k++)
		s += captured_one(p, grads[k], work);
	free(work);
	*frac = s / ngrads;
	return LSPO_OK;
}

int lspo_proj_loss_grad(const struct lspo_proj *p, const float *G, float *gP, float *gQ, double *loss)
{
	struct learn_ws w;
	int rc = ws_alloc(&w, p->m, p->n, p->d, 1);
	if (rc)
		return rc;
	memset(gP, 0, sizeof(float) * (size_t)p->m * p->r);
	memset(gQ, 0, sizeof(float) * (size_t)p->n * p->r);
	*loss = loss_grad(p, G, &w, gP, gQ);
	ws_free(&w);
	return LSPO_OK;
}

struct lspo_proj_learn_opts lspo_proj_learn_opts_default(void)
{
	return (struct lspo_proj_learn_opts){ .iters = 100, .lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f,
	                                      .eps = 1e-8f };
}

static void adam_values(float *x, const float *g, float *m, float *v, size_t n, int t,
                        const struct lspo_proj_learn_opts *o)
{
	double bc1 = 1.0 - pow(o->beta1, t), bc2 = 1.0 - pow(o->beta2, t);
	float step = (float)(o->lr / bc1), ibc2 = (float)(1.0 / bc2);
	for (size_t i = 0; i < n; i++) {
		m[i] = o->beta1 * m[i] + (1.0f - o->beta1) * g[i];
		v[i] = o->beta2 * v[i] + (1.0f - o->beta2) * g[i] * g[i];
		x[i] -= step * m[i] / (sqrtf(v[i] * ibc2) + o->eps);
	}
}

/* One Adam step of p's values on G: g (m r + n r) the gradient's room,
 * mom (2 (m r + n r)): first moments of P, Q, then second moments of P, Q. */
static void learn_step(struct lspo_proj *p, const float *G, struct learn_ws *w, float *g, float *mom,
                       int t, const struct lspo_proj_learn_opts *o)
{
	size_t np = (size_t)p->m * p->r, nq = (size_t)p->n * p->r;
	float *mP = mom, *mQ = mP + np, *vP = mQ + nq, *vQ = vP + np;
	memset(g, 0, sizeof(float) * (np + nq));
	loss_grad(p, G, w, g, g + np);
	adam_values(p->val[0], g, mP, vP, np, t, o);
	adam_values(p->val[1], g + np, mQ, vQ, nq, t, o);
}

/* ---------------------------------------------------------------------- */
/* The kernels of the check tasks (codelets/proj_error.c, proj_learn.c)    */

size_t lspo_proj_error_work(int m, int n, int d)
{
	size_t a = ws_floats(m, n, d, 0), b = (size_t)2 * d * n + (size_t)d * d;
	return (a > b ? a : b) + 16;   /* + the CUDA kernel's norms (codelets/proj_ell.cuh) */
}

void lspo_proj_error_one(const struct lspo_proj *p, const float *G, float *work, double *err,
                         double *captured)
{
	struct learn_ws w;
	ws_carve(&w, work, p->m, p->n, p->d, 0);
	*err = loss_grad(p, G, &w, NULL, NULL);
	if (captured)
		*captured = captured_one(p, G, work);
}

size_t lspo_proj_learn_work(int m, int n, int d, int r)
{
	return ws_floats(m, n, d, 1) + (size_t)(m + n) * r + 16;   /* + as lspo_proj_error_work */
}

void lspo_proj_learn_one(struct lspo_proj *p, const float *G, float *work, float *mom, int t,
                         const struct lspo_proj_learn_opts *o)
{
	struct learn_ws w;
	ws_carve(&w, work, p->m, p->n, p->d, 1);
	learn_step(p, G, &w, work + ws_floats(p->m, p->n, p->d, 1), mom, t, o);
}

int lspo_proj_learn(struct lspo_proj *p, const float *const *grads, int ngrads,
                    const struct lspo_proj_learn_opts *opts, double *err_before, double *err_after)
{
	int rc = check_grads(p, grads, ngrads);
	if (rc)
		return rc;
	if (!opts || opts->iters < 0 || !(opts->lr >= 0) || !(opts->beta1 >= 0 && opts->beta1 < 1)
	    || !(opts->beta2 >= 0 && opts->beta2 < 1) || !(opts->eps > 0))
		LSPO_FAIL(LSPO_EINVAL, "projector learning: invalid options");
	if (err_before && (rc = lspo_proj_error(p, grads, ngrads, err_before)))
		return rc;
	size_t np = (size_t)p->m * p->r, nq = (size_t)p->n * p->r;
	float *st = calloc(3 * (np + nq), sizeof(float));
	struct learn_ws w;
	if (!st)
		LSPO_FAIL(LSPO_ENOMEM, "projector learning: out of memory");
	if ((rc = ws_alloc(&w, p->m, p->n, p->d, 1))) {
		free(st);
		return rc;
	}
	lspo_proj_acquire_rw(p);
	int t = 0;
	for (int it = 0; it < opts->iters; it++)
		for (int k = 0; k < ngrads; k++)
			learn_step(p, grads[k], &w, st, st + np + nq, ++t, opts);
	lspo_proj_release(p);
	ws_free(&w);
	free(st);
	if (err_after)
		return lspo_proj_error(p, grads, ngrads, err_after);
	return LSPO_OK;
}
