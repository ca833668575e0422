/*
 * lsp_basis.c - random rotations of the subspace and the moments' move
 * when a check installs a new pair, for --lsp-adam-basis rotated
 * (lsp_basis.h).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "codelet_util.h"
#include "internal.h"
#include "engine/lsp_basis.h"

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Box-Muller on two uniforms in (0, 1]. */
static double gauss(uint64_t *s)
{
	double u = ((double)(splitmix(s) >> 11) + 1.0) * 0x1p-53, v = (double)(splitmix(s) >> 11) * 0x1p-53;
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

int lsp_basis_rotation(int d, uint64_t seed, float *Q)
{
	if (d < 1)
		LSPO_FAIL(LSPO_EINVAL, "lsp basis: rotation of size %d", d);
	double *A = malloc(sizeof(double) * (size_t)d * d);
	if (!A)
		LSPO_FAIL(LSPO_ENOMEM, "lsp basis: cannot allocate a %d x %d rotation", d, d);
	uint64_t s = seed ^ 0x5be0cd19137e2179ull;
	/* rows of A, orthonormalised in order: the Q of A^T = Q R with R's
	 * diagonal positive, Haar-distributed */
	for (size_t i = 0; i < (size_t)d * d; i++)
		A[i] = gauss(&s);
	for (int i = 0; i < d; i++) {
		double *a = A + (size_t)i * d;
		for (int pass = 0; pass < 2; pass++)
			for (int j = 0; j < i; j++) {
				const double *b = A + (size_t)j * d;
				double dot = 0;
				for (int k = 0; k < d; k++)
					dot += a[k] * b[k];
				for (int k = 0; k < d; k++)
					a[k] -= dot * b[k];
			}
		double nrm = 0;
		for (int k = 0; k < d; k++)
			nrm += a[k] * a[k];
		nrm = sqrt(nrm);
		for (int k = 0; k < d; k++)
			a[k] /= nrm;
	}
	for (size_t i = 0; i < (size_t)d * d; i++)
		Q[i] = (float)A[i];
	free(A);
	return LSPO_OK;
}

int lsp_basis_pair_rotations(int d, uint64_t seed, int pair, float *RS)
{
	uint64_t s = seed * 0x2545f4914f6cdd1dull + (uint64_t)pair;
	uint64_t sr = splitmix(&s), ss = splitmix(&s);
	int rc = lsp_basis_rotation(d, sr, RS);
	return rc ? rc : lsp_basis_rotation(d, ss, RS + (size_t)d * d);
}

/* out (d, d) = S_new^T S_old of one side, through the ELL arrays. */
static void cross_gram(const struct lspo_proj *pn, const struct lspo_proj *po, int side, double *acc,
                       float *out)
{
	int m, n, d, r;
	lspo_proj_shape(pn, &m, &n, &d, &r);
	int rows = side ? n : m;
	const int32_t *in, *io;
	const float *vn, *vo;
	lspo_proj_ell(pn, side, &in, &vn);
	lspo_proj_ell(po, side, &io, &vo);
	memset(acc, 0, sizeof(double) * (size_t)d * d);
	for (int i = 0; i < rows; i++)
		for (int a = 0; a < r; a++)
			for (int b = 0; b < r; b++)
				acc[(size_t)in[i * r + a] * d + io[i * r + b]] += (double)vn[i * r + a] * vo[i * r + b];
	for (size_t i = 0; i < (size_t)d * d; i++)
		out[i] = (float)acc[i];
}

static double side_sumsq(const struct lspo_proj *p, int side)
{
	int m, n, d, r;
	lspo_proj_shape(p, &m, &n, &d, &r);
	const int32_t *idx;
	const float *val;
	lspo_proj_ell(p, side, &idx, &val);
	double s = 0;
	for (size_t i = 0; i < (size_t)(side ? n : m) * r; i++)
		s += (double)val[i] * val[i];
	return s;
}

/* X (d, d) <- A^T X A, tmp (d, d). */
static void rotate(int d, const float *A, float *X, float *tmp)
{
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, d, 1.0f, A, d, X, d, 0.0f, tmp, d);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, tmp, d, A, d, 0.0f, X, d);
}

int lsp_basis_reproject(const struct lspo_proj *old_p, const struct lspo_proj *new_p, const float *RS,
                        float *const *M, float *const *V, int count)
{
	int m0, n0, d0, r0, m, n, d, r;
	lspo_proj_shape(old_p, &m0, &n0, &d0, &r0);
	lspo_proj_shape(new_p, &m, &n, &d, &r);
	if (m0 != m || n0 != n || d0 != d || r0 != r)
		LSPO_FAIL(LSPO_EINVAL, "lsp basis: old pair %dx%d (d=%d, r=%d), new %dx%d (d=%d, r=%d)",
		          m0, n0, d0, r0, m, n, d, r);
	if (count < 0 || (count > 0 && (!M || !V || !RS)))
		LSPO_FAIL(LSPO_EINVAL, "lsp basis: %d moment pairs, M, V or the rotations missing", count);
	if (count == 0)
		return LSPO_OK;
	size_t dd = (size_t)d * d;
	double *acc = malloc(sizeof(double) * dd);
	float *L = malloc(sizeof(float) * dd * 5);
	if (!acc || !L) {
		free(acc);
		free(L);
		LSPO_FAIL(LSPO_ENOMEM, "lsp basis: cannot allocate %d x %d work arrays", d, d);
	}
	float *K = L + dd, *L2 = K + dd, *K2 = L2 + dd, *tmp = K2 + dd;
	cross_gram(new_p, old_p, 0, acc, L);
	cross_gram(new_p, old_p, 1, acc, K);
	free(acc);
	rotate(d, RS, L, tmp);        /* L' = R^T L R */
	rotate(d, RS + dd, K, tmp);   /* K' = S^T K S */
	for (size_t i = 0; i < dd; i++) {
		L2[i] = L[i] * L[i];
		K2[i] = K[i] * K[i];
	}
	double sp = side_sumsq(old_p, 0) / d, sq = side_sumsq(old_p, 1) / d;
	float fm = 1.0f, fv = 1.0f;
	if (sp > 0 && sq > 0 && isfinite(sp * sq)) {
		fm = (float)(1.0 / (sp * sq));
		fv = fm * fm;
	}
	for (int k = 0; k < count; k++) {
		if (M[k]) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, L, d, M[k], d, 0.0f, tmp, d);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, tmp, d, K, d, 0.0f, M[k], d);
			for (size_t i = 0; i < dd; i++) {
				float x = M[k][i];
				x = isnan(x) ? 0.0f : isinf(x) ? (x > 0 ? 1.0f : -1.0f) : x;
				M[k][i] = x * fm;
			}
		}
		if (V[k]) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, L2, d, V[k], d, 0.0f, tmp, d);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, tmp, d, K2, d, 0.0f, V[k], d);
			for (size_t i = 0; i < dd; i++) {
				float x = V[k][i];
				x = isnan(x) ? 0.0f : isinf(x) ? (x > 0 ? 1.0f : 0.0f) : x < 0 ? 0.0f : x;
				V[k][i] = x * fv;
			}
		}
	}
	free(L);
	return LSPO_OK;
}

int lsp_basis_maybe_refresh(struct lspo_proj *p, const float *const *check_grads, int ncheck,
                            const struct lspo_proj_refresh_opts *opts, const float *RS,
                            float *const *M, float *const *V, int nmoments,
                            struct lspo_proj_refresh_report *report)
{
	struct lspo_proj *old;
	struct lspo_proj_refresh_report rep;
	int rc = lspo_proj_clone(p, &old);
	if (rc)
		return rc;
	rc = lspo_proj_maybe_refresh(p, check_grads, ncheck, NULL, 0, opts, NULL, NULL, 0, &rep);
	if (!rc && rep.refreshed)
		rc = lsp_basis_reproject(old, p, RS, M, V, nmoments);
	lspo_proj_free(old);
	if (!rc && report)
		*report = rep;
	return rc;
}

struct lsp_basis_rot {
	int count;
	const struct lspo_proj **pair;   /* (count) the registry's pairs, in order */
	float **rs;                      /* (count) RS (2 d, d) each, starpu_malloc'd */
	starpu_data_handle_t *h;         /* (count) */
};

void lsp_basis_rot_free(struct lsp_basis_rot *rot)
{
	if (!rot)
		return;
	for (int i = 0; i < rot->count; i++) {
		if (rot->h && rot->h[i])
			starpu_data_unregister(rot->h[i]);
		if (rot->rs && rot->rs[i])
			starpu_free(rot->rs[i]);
	}
	free(rot->pair);
	free(rot->rs);
	free(rot->h);
	free(rot);
}

int lsp_basis_rot_create(const struct lspo_proj_registry *reg, uint64_t seed, struct lsp_basis_rot **out)
{
	*out = NULL;
	struct lsp_basis_rot *rot = calloc(1, sizeof(*rot));
	int count = lspo_proj_registry_count(reg), n = count ? count : 1;
	if (!rot)
		LSPO_FAIL(LSPO_ENOMEM, "lsp basis: cannot allocate the rotations of %d pairs", count);
	rot->pair = calloc(n, sizeof(*rot->pair));
	rot->rs = calloc(n, sizeof(*rot->rs));
	rot->h = calloc(n, sizeof(*rot->h));
	if (!rot->pair || !rot->rs || !rot->h) {
		lsp_basis_rot_free(rot);
		LSPO_FAIL(LSPO_ENOMEM, "lsp basis: cannot allocate the rotations of %d pairs", count);
	}
	rot->count = count;
	for (int i = 0; i < count; i++) {
		const struct lspo_proj *p = lspo_proj_registry_at(reg, i);
		int d;
		lspo_proj_shape(p, NULL, NULL, &d, NULL);
		rot->pair[i] = p;
		size_t bytes = 2 * (size_t)d * d * sizeof(float);
		int rc = starpu_malloc((void **)&rot->rs[i], bytes) ? LSPO_ENOMEM : LSPO_OK;
		if (rc)
			rot->rs[i] = NULL;
		else
			rc = lsp_basis_pair_rotations(d, seed, i, rot->rs[i]);
		if (rc) {
			lsp_basis_rot_free(rot);
			LSPO_FAIL(rc, "lsp basis: cannot draw the rotations of pair %d (d = %d)", i, d);
		}
		lspo_matrix_register(&rot->h[i], rot->rs[i], 2 * d, d);
	}
	*out = rot;
	return LSPO_OK;
}

static int rot_index(const struct lsp_basis_rot *rot, const struct lspo_proj *p)
{
	for (int i = 0; i < rot->count; i++)
		if (rot->pair[i] == p)
			return i;
	return -1;
}

starpu_data_handle_t lsp_basis_rot_handle(const struct lsp_basis_rot *rot, const struct lspo_proj *p)
{
	int i = rot_index(rot, p);
	return i >= 0 ? rot->h[i] : NULL;
}

const float *lsp_basis_rot_host(const struct lsp_basis_rot *rot, const struct lspo_proj *p)
{
	int i = rot_index(rot, p);
	return i >= 0 ? rot->rs[i] : NULL;
}
