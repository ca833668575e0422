/*
 * projector.c - (d, r)-sparse projector pairs: creation (seeded, positions
 * without replacement), copies, StarPU handles, moment re-projection, the
 * periodic refresh decision, and the registry that shares pairs by role.
 * The learning math is in projector_learn.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "codelet_util.h"
#include "internal.h"
#include "projector.h"

/* ---------------------------------------------------------------------- */
/* Seeded random numbers: splitmix64                                       */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static double rng_uniform(uint64_t *s)  /* [0, 1) */
{
	return (double)(rng_next(s) >> 11) * 0x1p-53;
}

static int rng_below(uint64_t *s, int n)  /* [0, n) */
{
	return (int)(((rng_next(s) >> 32) * (uint64_t)n) >> 32);
}

static double rng_gauss(uint64_t *s)
{
	double u1 = 1.0 - rng_uniform(s), u2 = rng_uniform(s);
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* ---------------------------------------------------------------------- */
/* Creation                                                                */

/* r distinct columns of [0, d) (Floyd's algorithm), sorted; values by init. */
static void draw_side(int rows, int d, int r, enum lspo_proj_init init, uint64_t *s,
                      int32_t *idx, float *val)
{
	float scale = (float)(1.0 / sqrt((double)r));
	for (int i = 0; i < rows; i++) {
		int32_t *row = idx + (size_t)i * r;
		int cnt = 0;
		for (int j = d - r; j < d; j++) {
			int t = rng_below(s, j + 1), seen = 0;
			for (int q = 0; q < cnt; q++)
				seen |= row[q] == t;
			int v = seen ? j : t;
			int q = cnt++;  /* insertion keeps the row sorted */
			while (q > 0 && row[q - 1] > v) {
				row[q] = row[q - 1];
				q--;
			}
			row[q] = v;
		}
		for (int k = 0; k < r; k++)
			val[(size_t)i * r + k] = init == LSPO_PROJ_SIGN
				? ((rng_next(s) >> 63) ? scale : -scale)
				: (float)(rng_gauss(s) * scale);
	}
}

static int proj_alloc(int m, int n, int d, int r, struct lspo_proj **out)
{
	*out = NULL;
	if (m < 1 || n < 1 || d < 1 || r < 1 || r > d)
		LSPO_FAIL(LSPO_EINVAL, "projector: m=%d n=%d d=%d r=%d: need m, n, d >= 1 and 1 <= r <= d",
		          m, n, d, r);
	struct lspo_proj *p = calloc(1, sizeof(*p));
	if (!p)
		LSPO_FAIL(LSPO_ENOMEM, "projector: out of memory");
	*p = (struct lspo_proj){ .m = m, .n = n, .d = d, .r = r };
	for (int s = 0; s < 2; s++) {
		size_t nz = (size_t)(s ? n : m) * r;
		p->idx[s] = malloc(sizeof(int32_t) * nz);
		p->val[s] = malloc(sizeof(float) * nz);
		if (!p->idx[s] || !p->val[s]) {
			lspo_proj_free(p);
			LSPO_FAIL(LSPO_ENOMEM, "projector: cannot allocate %dx%d ELL arrays", s ? n : m, r);
		}
	}
	*out = p;
	return LSPO_OK;
}

static void proj_draw(struct lspo_proj *p, enum lspo_proj_init init, uint64_t seed)
{
	uint64_t s = seed;
	draw_side(p->m, p->d, p->r, init, &s, p->idx[0], p->val[0]);
	draw_side(p->n, p->d, p->r, init, &s, p->idx[1], p->val[1]);
}

int lspo_proj_create(int m, int n, int d, int r, enum lspo_proj_init init, uint64_t seed,
                     struct lspo_proj **out)
{
	if (init != LSPO_PROJ_GAUSSIAN && init != LSPO_PROJ_SIGN)
		LSPO_FAIL(LSPO_EINVAL, "projector: unknown init kind %d", (int)init);
	int rc = proj_alloc(m, n, d, r, out);
	if (rc)
		return rc;
	proj_draw(*out, init, seed);
	return LSPO_OK;
}

void lspo_proj_free(struct lspo_proj *p)
{
	if (!p)
		return;
	if (p->registered)
		for (int s = 0; s < 2; s++) {
			starpu_data_unregister(p->h_idx[s]);
			starpu_data_unregister(p->h_val[s]);
		}
	for (int s = 0; s < 2; s++) {
		free(p->idx[s]);
		free(p->val[s]);
	}
	free(p);
}

static void proj_copy_arrays(struct lspo_proj *dst, const struct lspo_proj *src)
{
	for (int s = 0; s < 2; s++) {
		size_t nz = (size_t)lspo_proj_rows(src, s) * src->r;
		memcpy(dst->idx[s], src->idx[s], sizeof(int32_t) * nz);
		memcpy(dst->val[s], src->val[s], sizeof(float) * nz);
	}
}

int lspo_proj_clone(const struct lspo_proj *p, struct lspo_proj **out)
{
	int rc = proj_alloc(p->m, p->n, p->d, p->r, out);
	if (rc)
		return rc;
	proj_copy_arrays(*out, p);
	return LSPO_OK;
}

/* Sum of squares of one side's values. */
static double side_sumsq(const struct lspo_proj *p, int side)
{
	double s = 0;
	size_t len = (size_t)lspo_proj_rows(p, side) * p->r;
	for (size_t i = 0; i < len; i++)
		s += (double)p->val[side][i] * p->val[side][i];
	return s;
}

int lspo_proj_normalize(struct lspo_proj *p)
{
	lspo_proj_acquire_rw(p);
	for (int side = 0; side < 2; side++) {
		double ss = side_sumsq(p, side);
		if (!(ss > 0) || !isfinite(ss))
			continue;   /* all zero (never drawn so): nothing to scale */
		float f = (float)sqrt(p->d / ss);
		size_t len = (size_t)lspo_proj_rows(p, side) * p->r;
		for (size_t i = 0; i < len; i++)
			p->val[side][i] *= f;
	}
	lspo_proj_release(p);
	return LSPO_OK;
}

int lspo_proj_redraw(struct lspo_proj *p, enum lspo_proj_init init, uint64_t seed)
{
	if (init != LSPO_PROJ_GAUSSIAN && init != LSPO_PROJ_SIGN)
		LSPO_FAIL(LSPO_EINVAL, "projector: unknown init kind %d", (int)init);
	lspo_proj_acquire_rw(p);
	proj_draw(p, init, seed);
	lspo_proj_release(p);
	return LSPO_OK;
}

void lspo_proj_shape(const struct lspo_proj *p, int *m, int *n, int *d, int *r)
{
	if (m) *m = p->m;
	if (n) *n = p->n;
	if (d) *d = p->d;
	if (r) *r = p->r;
}

void lspo_proj_ell(const struct lspo_proj *p, int side, const int32_t **idx, const float **val)
{
	side = side != 0;
	if (idx) *idx = p->idx[side];
	if (val) *val = p->val[side];
}

/* ---------------------------------------------------------------------- */
/* StarPU handles                                                          */

int lspo_proj_register(struct lspo_proj *p)
{
	if (p->registered)
		return LSPO_OK;
	for (int s = 0; s < 2; s++) {
		lspo_matrix_register_elem(&p->h_idx[s], p->idx[s], lspo_proj_rows(p, s), p->r,
		                          sizeof(int32_t));
		lspo_matrix_register_elem(&p->h_val[s], p->val[s], lspo_proj_rows(p, s), p->r,
		                          sizeof(float));
	}
	p->registered = 1;
	return LSPO_OK;
}

void lspo_proj_handles(const struct lspo_proj *p, starpu_data_handle_t *pidx, starpu_data_handle_t *pval,
                       starpu_data_handle_t *qidx, starpu_data_handle_t *qval)
{
	STARPU_ASSERT_MSG(p->registered, "projector: lspo_proj_register first");
	if (pidx) *pidx = p->h_idx[0];
	if (pval) *pval = p->h_val[0];
	if (qidx) *qidx = p->h_idx[1];
	if (qval) *qval = p->h_val[1];
}

void lspo_proj_acquire_rw(struct lspo_proj *p)
{
	p->gain = 0.0f;   /* the values may change */
	if (!p->registered)
		return;
	for (int s = 0; s < 2; s++) {
		starpu_data_acquire(p->h_idx[s], STARPU_RW);
		starpu_data_acquire(p->h_val[s], STARPU_RW);
	}
}

float lspo_proj_gain(struct lspo_proj *p)
{
	if (p->gain > 0.0f)
		return p->gain;
	double sumsq[2] = { 0, 0 };
	for (int side = 0; side < 2; side++) {
		size_t len = (size_t)lspo_proj_rows(p, side) * p->r;
		for (size_t i = 0; i < len; i++)
			sumsq[side] += (double)p->val[side][i] * p->val[side][i];
	}
	double norms2 = sumsq[0] * sumsq[1];
	/* All-zero values (never drawn so) would leave P Delta Q^T zero anyway. */
	p->gain = norms2 > 0 && isfinite(norms2) ? (float)sqrt((double)p->m * p->n / norms2) : 1.0f;
	return p->gain;
}

void lspo_proj_release(struct lspo_proj *p)
{
	if (!p->registered)
		return;
	for (int s = 0; s < 2; s++) {
		starpu_data_release(p->h_idx[s]);
		starpu_data_release(p->h_val[s]);
	}
}

/* ---------------------------------------------------------------------- */
/* Moment re-projection                                                    */

/* out (d, d) = S_new^T S_old, through the r x r products of each row. */
static void cross_gram(const struct lspo_proj *pn, const struct lspo_proj *po, int side, double *acc,
                       float *out)
{
	int d = pn->d, r = pn->r, rows = lspo_proj_rows(pn, side);
	memset(acc, 0, sizeof(double) * (size_t)d * d);
	for (int i = 0; i < rows; i++) {
		const int32_t *in = pn->idx[side] + (size_t)i * r, *io = po->idx[side] + (size_t)i * r;
		const float *vn = pn->val[side] + (size_t)i * r, *vo = po->val[side] + (size_t)i * r;
		for (int a = 0; a < r; a++)
			for (int b = 0; b < r; b++)
				acc[(size_t)in[a] * d + io[b]] += (double)vn[a] * vo[b];
	}
	for (size_t i = 0; i < (size_t)d * d; i++)
		out[i] = (float)acc[i];
}

int lspo_proj_reproject_moments(const struct lspo_proj *old_p, const struct lspo_proj *new_p,
                                float *const *M, float *const *V, int count)
{
	if (old_p->m != new_p->m || old_p->n != new_p->n || old_p->d != new_p->d || old_p->r != new_p->r)
		LSPO_FAIL(LSPO_EINVAL, "reproject: old pair %dx%d (d=%d, r=%d), new %dx%d (d=%d, r=%d)",
		          old_p->m, old_p->n, old_p->d, old_p->r, new_p->m, new_p->n, new_p->d, new_p->r);
	if (count < 0 || (count > 0 && (!M || !V)))
		LSPO_FAIL(LSPO_EINVAL, "reproject: %d moment pairs, M or V missing", count);
	if (count == 0)
		return LSPO_OK;
	size_t dd = (size_t)new_p->d * new_p->d;
	int d = new_p->d;
	double *acc = malloc(sizeof(double) * dd);
	float *L = malloc(sizeof(float) * dd * 5);
	if (!acc || !L) {
		free(acc);
		free(L);
		LSPO_FAIL(LSPO_ENOMEM, "reproject: cannot allocate %d x %d work arrays", d, d);
	}
	float *R = L + dd, *L2 = R + dd, *R2 = L2 + dd, *tmp = R2 + dd;
	cross_gram(new_p, old_p, 0, acc, L);
	cross_gram(new_p, old_p, 1, acc, R);
	free(acc);
	for (size_t i = 0; i < dd; i++) {
		L2[i] = L[i] * L[i];
		R2[i] = R[i] * R[i];
	}
	for (int k = 0; k < count; k++) {
		if (M[k]) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, L, d, M[k], d,
			            0.0f, tmp, d);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, tmp, d, R, d,
			            0.0f, M[k], d);
			for (size_t i = 0; i < dd; i++) {
				float x = M[k][i];
				M[k][i] = isnan(x) ? 0.0f : isinf(x) ? (x > 0 ? 1.0f : -1.0f) : x;
			}
		}
		if (V[k]) {
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, L2, d, V[k], d,
			            0.0f, tmp, d);
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, tmp, d, R2, d,
			            0.0f, V[k], d);
			for (size_t i = 0; i < dd; i++) {
				float x = V[k][i];
				V[k][i] = isnan(x) ? 0.0f : isinf(x) ? (x > 0 ? 1.0f : 0.0f) : x < 0 ? 0.0f : x;
			}
		}
	}
	free(L);
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* Refresh                                                                 */

struct lspo_proj_refresh_opts lspo_proj_refresh_opts_default(void)
{
	return (struct lspo_proj_refresh_opts){
		.alpha = 0.8, .init = LSPO_PROJ_GAUSSIAN, .seed = 1, .learn = lspo_proj_learn_opts_default(),
	};
}

const char *lspo_proj_outcome_name(enum lspo_proj_outcome outcome)
{
	static const char *const names[] = { "kept", "learned", "rejected-kept", "rejected-random" };
	return (unsigned)outcome <= LSPO_PROJ_REJECTED_RANDOM ? names[outcome] : "unknown";
}

/* Moves the moments of old_p's matrices into new_p's subspace: the paper's
 * re-projection, then the old pair's own scale undone (lspo.h). */
static int reproject_scaled(const struct lspo_proj *old_p, const struct lspo_proj *new_p,
                            float *const *M, float *const *V, int count)
{
	int rc = lspo_proj_reproject_moments(old_p, new_p, M, V, count);
	if (rc)
		return rc;
	double sp = side_sumsq(old_p, 0) / old_p->d, sq = side_sumsq(old_p, 1) / old_p->d;
	if (!(sp > 0) || !(sq > 0) || !isfinite(sp * sq))
		return LSPO_OK;   /* an all-zero old pair left M = V = 0 already */
	float fm = (float)(1.0 / (sp * sq)), fv = fm * fm;
	size_t dd = (size_t)new_p->d * new_p->d;
	for (int k = 0; k < count; k++)
		for (size_t i = 0; i < dd; i++) {
			if (M[k])
				M[k][i] *= fm;
			if (V[k])
				V[k][i] *= fv;
		}
	return LSPO_OK;
}

int lspo_proj_refresh_install(struct lspo_proj *p, const struct lspo_proj *fresh,
                              const struct lspo_proj *learned, const float *const *check_grads, int ncheck,
                              float *const *M, float *const *V, int nmoments,
                              struct lspo_proj_refresh_report *rep)
{
	const struct lspo_proj *install = NULL;
	double bar = rep->err_check < 1.0 ? rep->err_check : 1.0;
	if (rep->err_candidate < bar) {
		install = learned;
		rep->outcome = LSPO_PROJ_LEARNED;
	} else if (rep->err_fresh < rep->err_check) {
		install = fresh;
		rep->outcome = LSPO_PROJ_REJECTED_RANDOM;
	} else {
		rep->outcome = LSPO_PROJ_REJECTED_KEPT;
	}
	if (!install)
		return LSPO_OK;
	int rc = reproject_scaled(p, install, M, V, nmoments);
	if (rc)
		return rc;
	lspo_proj_acquire_rw(p);
	proj_copy_arrays(p, install);
	lspo_proj_release(p);
	rep->refreshed = 1;
	rc = lspo_proj_error(p, check_grads, ncheck, &rep->err_after);
	if (!rc)
		rc = lspo_proj_captured(p, check_grads, ncheck, &rep->captured_after);
	return rc;
}

int lspo_proj_maybe_refresh(struct lspo_proj *p, const float *const *check_grads, int ncheck,
                            const float *const *train_grads, int ntrain,
                            const struct lspo_proj_refresh_opts *opts,
                            float *const *M, float *const *V, int nmoments,
                            struct lspo_proj_refresh_report *report)
{
	struct lspo_proj_refresh_report rep = { .err_learned = -1, .err_fresh = -1, .err_candidate = -1,
	                                        .outcome = LSPO_PROJ_KEPT };
	if (!opts)
		LSPO_FAIL(LSPO_EINVAL, "refresh: no options");
	if (!train_grads) {
		train_grads = check_grads;
		ntrain = ncheck;
	}
	rep.captured_random = p->d / sqrt((double)p->m * p->n);
	int rc = lspo_proj_error(p, check_grads, ncheck, &rep.err_check);
	if (!rc)
		rc = lspo_proj_captured(p, check_grads, ncheck, &rep.captured_before);
	if (rc)
		return rc;
	rep.err_after = rep.err_check;
	rep.captured_after = rep.captured_before;
	if (rep.err_check > opts->alpha) {
		struct lspo_proj *fresh, *learned = NULL;
		rc = lspo_proj_create(p->m, p->n, p->d, p->r, opts->init, opts->seed, &fresh);
		if (rc)
			return rc;
		lspo_proj_normalize(fresh);
		rc = lspo_proj_error(fresh, check_grads, ncheck, &rep.err_fresh);
		if (!rc)
			rc = lspo_proj_clone(fresh, &learned);
		if (!rc)
			rc = lspo_proj_learn(learned, train_grads, ntrain, &opts->learn, NULL, &rep.err_learned);
		if (!rc)
			rc = lspo_proj_error(learned, check_grads, ncheck, &rep.err_candidate);
		if (!rc)
			rc = lspo_proj_refresh_install(p, fresh, learned, check_grads, ncheck, M, V, nmoments, &rep);
		lspo_proj_free(learned);
		lspo_proj_free(fresh);
	}
	if (report)
		*report = rep;
	return rc;
}

/* ---------------------------------------------------------------------- */
/* Registry                                                                */

struct proj_entry {
	int role, layer, m, n;
	struct lspo_proj *p;
};

struct lspo_proj_registry {
	int shared, d, r;
	enum lspo_proj_init init;
	uint64_t seed;
	int count, cap;
	struct proj_entry *e;
};

int lspo_proj_registry_create(int shared, int d, int r, enum lspo_proj_init init, uint64_t seed,
                              struct lspo_proj_registry **out)
{
	*out = NULL;
	if (d < 1 || r < 1 || r > d)
		LSPO_FAIL(LSPO_EINVAL, "projector registry: d=%d r=%d: need 1 <= r <= d", d, r);
	if (init != LSPO_PROJ_GAUSSIAN && init != LSPO_PROJ_SIGN)
		LSPO_FAIL(LSPO_EINVAL, "projector registry: unknown init kind %d", (int)init);
	struct lspo_proj_registry *reg = calloc(1, sizeof(*reg));
	if (!reg)
		LSPO_FAIL(LSPO_ENOMEM, "projector registry: out of memory");
	*reg = (struct lspo_proj_registry){ .shared = shared != 0, .d = d, .r = r, .init = init, .seed = seed };
	*out = reg;
	return LSPO_OK;
}

void lspo_proj_registry_free(struct lspo_proj_registry *reg)
{
	if (!reg)
		return;
	for (int i = 0; i < reg->count; i++)
		lspo_proj_free(reg->e[i].p);
	free(reg->e);
	free(reg);
}

int lspo_proj_registry_get(struct lspo_proj_registry *reg, int role, int layer,
                           int m, int n, struct lspo_proj **out)
{
	*out = NULL;
	if (role < 0 || layer < 0 || m < 1 || n < 1)
		LSPO_FAIL(LSPO_EINVAL, "projector registry: role %d, layer %d", (int)role, layer);
	int key_layer = reg->shared ? -1 : layer;
	for (int i = 0; i < reg->count; i++) {
		struct proj_entry *e = &reg->e[i];
		if (e->role == (int)role && e->layer == key_layer && e->m == m && e->n == n) {
			*out = e->p;
			return LSPO_OK;
		}
	}
	if (reg->count == reg->cap) {
		int cap = reg->cap ? 2 * reg->cap : 16;
		struct proj_entry *ne = realloc(reg->e, sizeof(*ne) * (size_t)cap);
		if (!ne)
			LSPO_FAIL(LSPO_ENOMEM, "projector registry: out of memory");
		reg->e = ne;
		reg->cap = cap;
	}
	/* the seed depends on the key only, so call order does not matter */
	uint64_t s = reg->seed ^ 0x6a09e667f3bcc909ull;
	uint64_t key[4] = { (uint64_t)role, (uint64_t)(int64_t)key_layer, (uint64_t)m, (uint64_t)n };
	for (int i = 0; i < 4; i++) {
		s ^= key[i];
		s = rng_next(&s);
	}
	struct lspo_proj *p;
	/* d is capped at the matrix's smaller side, r at d */
	int d = reg->d < m ? reg->d : m;
	d = d < n ? d : n;
	int rc = lspo_proj_create(m, n, d, reg->r < d ? reg->r : d, reg->init, s, &p);
	if (rc)
		return rc;
	reg->e[reg->count++] = (struct proj_entry){ (int)role, key_layer, m, n, p };
	*out = p;
	return LSPO_OK;
}

int lspo_proj_registry_count(const struct lspo_proj_registry *reg)
{
	return reg->count;
}

struct lspo_proj *lspo_proj_registry_at(const struct lspo_proj_registry *reg, int i)
{
	return i >= 0 && i < reg->count ? reg->e[i].p : NULL;
}
