/*
 * proj_apply.c - W <- (1 - lr_wd) W + alpha P Delta Q^T, and the transposed
 * variant W <- (1 - lr_wd) W + alpha P Delta^T Q^T (proj_apply_t): CPU
 * kernels, codelets, perfmodels and submit helpers.  CUDA side in
 * proj_apply.cu.
 *
 * CPU: E = Delta Q^T (d, n) is built by blocks of APPLY_JB columns as
 * E^T[j, :] = sum_k qval[j,k] Delta^T[qidx[j,k], :] (contiguous axpys on the
 * transposed Delta; the transposed variant reads the rows of Delta in
 * place), then transposed into place; then every row of W is
 * swept in strips of 64 columns held in registers while the r rows
 * E[pidx[i,k], strip] are added.  Everything streams contiguously.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "bf16.h"
#include "proj_apply.h"

#define APPLY_JB 64

/* Adds the r scaled rows of E selected by (idx, val) into w[0:n]. */
__attribute__((target("avx2,fma")))
static void row_avx2(int n, int r, const int32_t *idx, const float *val, float alpha, float keep,
                     const float *e, float *w)
{
	__m256 vk = _mm256_set1_ps(keep);
	int j = 0;
	for (; j + 32 <= n; j += 32) {
		__m256 a0 = _mm256_mul_ps(vk, _mm256_loadu_ps(w + j));
		__m256 a1 = _mm256_mul_ps(vk, _mm256_loadu_ps(w + j + 8));
		__m256 a2 = _mm256_mul_ps(vk, _mm256_loadu_ps(w + j + 16));
		__m256 a3 = _mm256_mul_ps(vk, _mm256_loadu_ps(w + j + 24));
		for (int k = 0; k < r; k++) {
			const float *er = e + (size_t)idx[k] * n + j;
			__m256 v = _mm256_set1_ps(alpha * val[k]);
			a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(er), a0);
			a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(er + 8), a1);
			a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(er + 16), a2);
			a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(er + 24), a3);
		}
		_mm256_storeu_ps(w + j, a0);
		_mm256_storeu_ps(w + j + 8, a1);
		_mm256_storeu_ps(w + j + 16, a2);
		_mm256_storeu_ps(w + j + 24, a3);
	}
	for (; j < n; j++) {
		float a = keep * w[j];
		for (int k = 0; k < r; k++)
			a = fmaf(alpha * val[k], e[(size_t)idx[k] * n + j], a);
		w[j] = a;
	}
}

static void row_scalar(int n, int r, const int32_t *idx, const float *val, float alpha, float keep,
                       const float *e, float *w)
{
	for (int j = 0; j < n; j++) {
		float a = keep * w[j];
		for (int k = 0; k < r; k++)
			a += alpha * val[k] * e[(size_t)idx[k] * n + j];
		w[j] = a;
	}
}

__attribute__((target("avx2,fma")))
static void axpy_avx2(int n, float a, const float *x, float *y)
{
	__m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
	for (; i < n; i++)
		y[i] = fmaf(a, x[i], y[i]);
}

static void axpy_scalar(int n, float a, const float *x, float *y)
{
	for (int i = 0; i < n; i++)
		y[i] += a * x[i];
}

/* E = Delta Q^T (trans 0) or Delta^T Q^T (trans 1) into e, then the rows of
 * W.  Row j of E^T sums qval[j,k] times a row of Delta^T (trans 0: the
 * transposed copy dt) or of Delta itself (trans 1: read in place). */
static void apply_cpu(int m, int n, int d, int r, const int32_t *pidx, const float *pval,
                      const int32_t *qidx, const float *qval, const float *Delta, int ldd,
                      float alpha, float lr_wd, void *W, int ldw, float *e, int trans,
                      int bf16, uint64_t sr_key)
{
	int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	size_t ndt = trans ? 0 : (size_t)d * d;
	float *dt = malloc(sizeof(float) * (ndt + (size_t)APPLY_JB * d));
	STARPU_ASSERT_MSG(dt, "proj_apply: cannot allocate %d x %d scratch", d, d);
	float *etb = dt + ndt;
	const float *src = trans ? Delta : dt;
	size_t lds = trans ? (size_t)ldd : (size_t)d;
	if (!trans)
		for (int a = 0; a < d; a++)
			for (int b = 0; b < d; b++)
				dt[(size_t)b * d + a] = Delta[(size_t)a * ldd + b];
	for (int j0 = 0; j0 < n; j0 += APPLY_JB) {
		int jb = n - j0 < APPLY_JB ? n - j0 : APPLY_JB;
		for (int jj = 0; jj < jb; jj++) {
			float *row = etb + (size_t)jj * d;
			const int32_t *qi = qidx + (size_t)(j0 + jj) * r;
			const float *qv = qval + (size_t)(j0 + jj) * r;
			for (int c = 0; c < d; c++)
				row[c] = 0.0f;
			for (int k = 0; k < r; k++) {
				if (avx2)
					axpy_avx2(d, qv[k], src + (size_t)qi[k] * lds, row);
				else
					axpy_scalar(d, qv[k], src + (size_t)qi[k] * lds, row);
			}
		}
		for (int c = 0; c < d; c++)
			for (int jj = 0; jj < jb; jj++)
				e[(size_t)c * n + j0 + jj] = etb[(size_t)jj * d + c];
	}
	free(dt);
	float keep = 1.0f - lr_wd;
	/* bf16 W: each row widened into wrow, updated in float32 as a float32
	 * W is, and rounded back stochastically (bf16.h) */
	float *wrow = bf16 ? malloc(sizeof(float) * (n ? (size_t)n : 1)) : NULL;
	STARPU_ASSERT_MSG(!bf16 || wrow, "proj_apply: cannot allocate a row of %d floats", n);
	for (int i = 0; i < m; i++) {
		float *w = bf16 ? wrow : (float *)W + (size_t)i * ldw;
		uint16_t *w16 = bf16 ? (uint16_t *)W + (size_t)i * ldw : NULL;
		for (int j = 0; bf16 && j < n; j++)
			w[j] = lspo_bf16_to_f32(w16[j]);
		if (avx2)
			row_avx2(n, r, pidx + (size_t)i * r, pval + (size_t)i * r, alpha, keep, e, w);
		else
			row_scalar(n, r, pidx + (size_t)i * r, pval + (size_t)i * r, alpha, keep, e, w);
		for (int j = 0; bf16 && j < n; j++)
			w16[j] = lspo_bf16_round_sr(w[j], sr_key, (uint64_t)i * (uint64_t)n + (uint64_t)j);
	}
	free(wrow);
}

void proj_apply_cpu(int m, int n, int d, int r, const int32_t *pidx, const float *pval,
                    const int32_t *qidx, const float *qval, const float *Delta, int ldd,
                    float alpha, float lr_wd, float *W, int ldw, float *e)
{
	apply_cpu(m, n, d, r, pidx, pval, qidx, qval, Delta, ldd, alpha, lr_wd, W, ldw, e, 0, 0, 0);
}

void proj_apply_t_cpu(int m, int n, int d, int r, const int32_t *pidx, const float *pval,
                      const int32_t *qidx, const float *qval, const float *Delta, int ldd,
                      float alpha, float lr_wd, float *W, int ldw, float *e)
{
	apply_cpu(m, n, d, r, pidx, pval, qidx, qval, Delta, ldd, alpha, lr_wd, W, ldw, e, 1, 0, 0);
}

/* buffers: W (m, n), pidx, pval (m, r), qidx, qval (n, r), Delta (d, d), scratch E (d, n). */
static void apply_codelet(void *buffers[], void *cl_arg, int trans)
{
	const struct lspo_proj_apply_args *args = cl_arg;
	void *W = buffers[0], *D = buffers[5], *E = buffers[6];
	STARPU_ASSERT(lspo_mat_ld(E) == lspo_mat_cols(E));
	for (int b = 1; b <= 4; b++)
		STARPU_ASSERT(lspo_mat_ld(buffers[b]) == lspo_mat_cols(buffers[b]));
	apply_cpu(lspo_mat_rows(W), lspo_mat_cols(W), lspo_mat_rows(D), lspo_mat_cols(buffers[1]),
	          (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]), lspo_mat_ptr(buffers[2]),
	          (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[3]), lspo_mat_ptr(buffers[4]),
	          lspo_mat_ptr(D), lspo_mat_ld(D), args->alpha, args->lr_wd,
	          (void *)STARPU_MATRIX_GET_PTR(W), lspo_mat_ld(W), lspo_mat_ptr(E), trans,
	          lspo_bf16_buffer(W), args->sr_key);
}

static void proj_apply_cpu_codelet(void *buffers[], void *cl_arg)
{
	apply_codelet(buffers, cl_arg, 0);
}

static void proj_apply_t_cpu_codelet(void *buffers[], void *cl_arg)
{
	apply_codelet(buffers, cl_arg, 1);
}

static uint32_t proj_apply_footprint(struct starpu_task *task)
{
	starpu_data_handle_t W = STARPU_TASK_GET_HANDLE(task, 0);
	starpu_data_handle_t Ix = STARPU_TASK_GET_HANDLE(task, 1);
	starpu_data_handle_t D = STARPU_TASK_GET_HANDLE(task, 5);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(W), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(W), h);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(Ix), h);
	return starpu_hash_crc32c_be(starpu_matrix_get_ny(D), h);
}

static struct starpu_perfmodel proj_apply_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_proj_apply", .footprint = proj_apply_footprint,
};
static struct starpu_perfmodel proj_apply_t_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_proj_apply_t", .footprint = proj_apply_footprint,
};

struct starpu_codelet cl_proj_apply = {
	.cpu_funcs = { proj_apply_cpu_codelet },
	.cpu_funcs_name = { "proj_apply_cpu_codelet" },
	LSPO_CUDA_FUNC(proj_apply_cuda)
	.nbuffers = 7,
	.modes = { STARPU_RW, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_SCRATCH },
	.model = &proj_apply_model,
	.name = "proj_apply",
	.color = LSPO_COLOR_PROJECT,
};

struct starpu_codelet cl_proj_apply_t = {
	.cpu_funcs = { proj_apply_t_cpu_codelet },
	.cpu_funcs_name = { "proj_apply_t_cpu_codelet" },
	LSPO_CUDA_FUNC(proj_apply_t_cuda)
	.nbuffers = 7,
	.modes = { STARPU_RW, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_SCRATCH },
	.model = &proj_apply_t_model,
	.name = "proj_apply_t",
	.color = LSPO_COLOR_PROJECT,
};

static int apply_submit(struct starpu_codelet *cl, starpu_data_handle_t W, starpu_data_handle_t pidx,
                        starpu_data_handle_t pval, starpu_data_handle_t qidx,
                        starpu_data_handle_t qval, starpu_data_handle_t Delta,
                        float alpha, float lr_wd, uint64_t sr_key, int priority, const char *name)
{
	int m = lspo_handle_rows(W), n = lspo_handle_cols(W), r = lspo_handle_cols(pidx);
	int d = lspo_handle_rows(Delta);
	if (lspo_handle_rows(pidx) != m || lspo_handle_rows(pval) != m || lspo_handle_cols(pval) != r
	    || lspo_handle_rows(qidx) != n || lspo_handle_cols(qidx) != r
	    || lspo_handle_rows(qval) != n || lspo_handle_cols(qval) != r
	    || lspo_handle_cols(Delta) != d || r < 1 || r > d
	    || !lspo_handle_float(W) || starpu_matrix_get_elemsize(pidx) != sizeof(int32_t)
	    || starpu_matrix_get_elemsize(qidx) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: W %dx%d, P %dx%d, Q %dx%d, Delta %dx%d: shapes do not agree",
		          name, m, n, lspo_handle_rows(pidx), r, lspo_handle_rows(qidx),
		          lspo_handle_cols(qidx), d, lspo_handle_cols(Delta));
	struct lspo_proj_apply_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = (struct lspo_proj_apply_args){ alpha, lr_wd, sr_key };
	starpu_data_handle_t e;
	lspo_matrix_register(&e, NULL, d, n);
	int rc = starpu_task_insert(cl,
		STARPU_RW, W, STARPU_R, pidx, STARPU_R, pval, STARPU_R, qidx, STARPU_R, qval,
		STARPU_R, Delta, STARPU_SCRATCH, e,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * m * n * r + 2.0 * n * d * r, 0);
	starpu_data_unregister_submit(e);
	LSPO_STARPU(rc);
	return LSPO_OK;
}

int lspo_proj_apply_submit(starpu_data_handle_t W, starpu_data_handle_t pidx,
                           starpu_data_handle_t pval, starpu_data_handle_t qidx,
                           starpu_data_handle_t qval, starpu_data_handle_t Delta,
                           float alpha, float lr_wd, int priority, const char *name)
{
	if (starpu_matrix_get_elemsize(W) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: W has %zu-byte elements, expected float32 (bf16: lspo_proj_apply_sr_submit)",
		          name, starpu_matrix_get_elemsize(W));
	return apply_submit(&cl_proj_apply, W, pidx, pval, qidx, qval, Delta, alpha, lr_wd, 0, priority, name);
}

int lspo_proj_apply_t_submit(starpu_data_handle_t W, starpu_data_handle_t pidx,
                             starpu_data_handle_t pval, starpu_data_handle_t qidx,
                             starpu_data_handle_t qval, starpu_data_handle_t Delta,
                             float alpha, float lr_wd, int priority, const char *name)
{
	if (starpu_matrix_get_elemsize(W) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: W has %zu-byte elements, expected float32 (bf16: lspo_proj_apply_sr_submit)",
		          name, starpu_matrix_get_elemsize(W));
	return apply_submit(&cl_proj_apply_t, W, pidx, pval, qidx, qval, Delta, alpha, lr_wd, 0, priority, name);
}

int lspo_proj_apply_sr_submit(starpu_data_handle_t W, starpu_data_handle_t pidx, starpu_data_handle_t pval,
                              starpu_data_handle_t qidx, starpu_data_handle_t qval, starpu_data_handle_t Delta,
                              float alpha, float lr_wd, int transposed, uint64_t sr_key, int priority,
                              const char *name)
{
	if (starpu_matrix_get_elemsize(W) != sizeof(uint16_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: W has %zu-byte elements, expected bf16", name, starpu_matrix_get_elemsize(W));
	return apply_submit(transposed ? &cl_proj_apply_t : &cl_proj_apply, W, pidx, pval, qidx, qval, Delta, alpha,
	                    lr_wd, sr_key, priority, name);
}
