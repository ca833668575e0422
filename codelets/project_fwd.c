/*
 * project_fwd.c - A (d, T) = P^T X^T through the ELL structure of P: CPU
 * kernel, codelet, perfmodel and submit helper.  CUDA side in project_fwd.cu.
 *
 * The CPU kernel works on blocks of PROJ_TB tokens: the block of X is
 * transposed into a scratch (N, tb) so that every non-zero (i, c, v) of S
 * becomes one contiguous axpy  out[c, t0:t0+tb] += v * X[t0:t0+tb, i].
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "bf16.h"
#include "project_fwd.h"

#define PROJ_TB 64  /* tokens per block: out block d x 64 floats stays in L2 */

__attribute__((target("avx2,fma")))
static void axpy_avx2(int n, float a, const float *x, float *y)
{
	__m256 va = _mm256_set1_ps(a);
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		__m256 y0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
		__m256 y1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
		_mm256_storeu_ps(y + i, y0);
		_mm256_storeu_ps(y + i + 8, y1);
	}
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

__attribute__((target("avx2,fma")))
static void block_avx2(int tb, int N, int r, const int32_t *idx, const float *val,
                       const float *xt, float *out, int ldo)
{
	for (int i = 0; i < N; i++)
		for (int k = 0; k < r; k++)
			axpy_avx2(tb, val[(size_t)i * r + k], xt + (size_t)i * tb,
			          out + (size_t)idx[(size_t)i * r + k] * ldo);
}

static void block_scalar(int tb, int N, int r, const int32_t *idx, const float *val,
                         const float *xt, float *out, int ldo)
{
	for (int i = 0; i < N; i++)
		for (int k = 0; k < r; k++)
			axpy_scalar(tb, val[(size_t)i * r + k], xt + (size_t)i * tb,
			            out + (size_t)idx[(size_t)i * r + k] * ldo);
}

void project_fwd_cpu(int T, int N, int d, int r, const int32_t *idx, const float *val,
                     const float *X, int ldx, float *out, int ldo)
{
	for (int c = 0; c < d; c++)
		memset(out + (size_t)c * ldo, 0, sizeof(float) * (size_t)T);
	if (T == 0 || N == 0)
		return;
	float *xt = malloc(sizeof(float) * (size_t)N * PROJ_TB);
	STARPU_ASSERT_MSG(xt, "project_fwd: cannot allocate %d x %d scratch", N, PROJ_TB);
	int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
	for (int t0 = 0; t0 < T; t0 += PROJ_TB) {
		int tb = T - t0 < PROJ_TB ? T - t0 : PROJ_TB;
		for (int t = 0; t < tb; t++) {
			const float *x = X + (size_t)(t0 + t) * ldx;
			for (int i = 0; i < N; i++)
				xt[(size_t)i * tb + t] = x[i];
		}
		if (avx2)
			block_avx2(tb, N, r, idx, val, xt, out + t0, ldo);
		else
			block_scalar(tb, N, r, idx, val, xt, out + t0, ldo);
	}
	free(xt);
}

/* buffers: X (T, m), pidx (m, r), pval (m, r), A (d, T). */
static void project_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *X = buffers[0], *Ix = buffers[1], *V = buffers[2], *A = buffers[3];
	STARPU_ASSERT(lspo_mat_ld(Ix) == lspo_mat_cols(Ix) && lspo_mat_ld(V) == lspo_mat_cols(V));
	project_fwd_cpu(lspo_mat_rows(X), lspo_mat_cols(X), lspo_mat_rows(A), lspo_mat_cols(Ix),
	                (const int32_t *)STARPU_MATRIX_GET_PTR(Ix), lspo_mat_ptr(V),
	                lspo_mat_ptr(X), lspo_mat_ld(X), lspo_mat_ptr(A), lspo_mat_ld(A));
}

/* T, m, d and r set the cost. */
static uint32_t project_fwd_footprint(struct starpu_task *task)
{
	starpu_data_handle_t X = STARPU_TASK_GET_HANDLE(task, 0);
	starpu_data_handle_t Ix = STARPU_TASK_GET_HANDLE(task, 1);
	starpu_data_handle_t A = STARPU_TASK_GET_HANDLE(task, 3);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(X), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(X), h);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(Ix), h);
	return starpu_hash_crc32c_be(starpu_matrix_get_ny(A), h);
}

static struct starpu_perfmodel project_fwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_project_fwd", .footprint = project_fwd_footprint,
};

static void project_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(project_fwd_cpu_codelet, &cl_project_fwd, b, a);
}

struct starpu_codelet cl_project_fwd = {
	.cpu_funcs = { project_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "project_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(project_fwd_cuda_any)
	.nbuffers = 4,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_W },
	.model = &project_fwd_model,
	.name = "project_fwd",
	.color = LSPO_COLOR_PROJECT,
};

int lspo_project_fwd_submit(starpu_data_handle_t X, starpu_data_handle_t pidx,
                            starpu_data_handle_t pval, starpu_data_handle_t A,
                            int priority, const char *name)
{
	int T = lspo_handle_rows(X), m = lspo_handle_cols(X);
	int r = lspo_handle_cols(pidx), d = lspo_handle_rows(A);
	if (lspo_handle_rows(pidx) != m || lspo_handle_rows(pval) != m || lspo_handle_cols(pval) != r
	    || lspo_handle_cols(A) != T || r < 1 || r > d
	    || starpu_matrix_get_elemsize(pidx) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: X %dx%d, P %dx%d (values %dx%d), A %dx%d: shapes do not agree",
		          name, T, m, lspo_handle_rows(pidx), r, lspo_handle_rows(pval),
		          lspo_handle_cols(pval), d, lspo_handle_cols(A));
	LSPO_STARPU(starpu_task_insert(&cl_project_fwd,
		STARPU_R, X, STARPU_R, pidx, STARPU_R, pval, STARPU_W, A,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * T * m * r, 0));
	return LSPO_OK;
}
