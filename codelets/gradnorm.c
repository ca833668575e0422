/*
 * gradnorm.c - the global gradient norm as tasks: sumsq (sum of squares of
 * one tensor, in double) and clip_scale (adds the partial sums in order and
 * writes { norm, scale } as torch.nn.utils.clip_grad_norm_ would use them).
 * CPU kernels, codelets and submit helpers; the CUDA kernels are in
 * gradnorm.cu.
 *
 * sumsq_cpu keeps SUMSQ_LANES interleaved double accumulators (element i
 * goes to lane i % SUMSQ_LANES), combined in a fixed tree at the end: the
 * order never depends on the machine or the schedule, and the AVX2 path and
 * the scalar path give the same bits (a float squared is exact in double, so
 * an FMA rounds exactly as the separate add does).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <immintrin.h>

#include "gradnorm.h"
#include "internal.h"

#define SUMSQ_LANES 16
#define SUMSQ_CUDA_BLOCKS 256   /* first-stage blocks of the CUDA reduction = scratch doubles */

static double combine_lanes(const double *l)
{
	double s8[8];
	for (int i = 0; i < 8; i++)
		s8[i] = l[i] + l[i + 8];
	return ((s8[0] + s8[4]) + (s8[2] + s8[6])) + ((s8[1] + s8[5]) + (s8[3] + s8[7]));
}

/* Lanes of elements [from, n), continuing the pattern i % SUMSQ_LANES. */
static void sumsq_scalar(double *lanes, const float *x, size_t from, size_t n)
{
	for (size_t i = from; i < n; i++)
		lanes[i % SUMSQ_LANES] += (double)x[i] * x[i];
}

/* Whole groups of SUMSQ_LANES elements; returns how many elements it took. */
__attribute__((target("avx2,fma")))
static size_t sumsq_avx2(double *lanes, const float *x, size_t n)
{
	__m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
	size_t i = 0;
	for (; i + SUMSQ_LANES <= n; i += SUMSQ_LANES) {
		__m256 u = _mm256_loadu_ps(x + i), w = _mm256_loadu_ps(x + i + 8);
		__m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(u));
		__m256d d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(u, 1));
		__m256d d2 = _mm256_cvtps_pd(_mm256_castps256_ps128(w));
		__m256d d3 = _mm256_cvtps_pd(_mm256_extractf128_ps(w, 1));
		a0 = _mm256_fmadd_pd(d0, d0, a0);
		a1 = _mm256_fmadd_pd(d1, d1, a1);
		a2 = _mm256_fmadd_pd(d2, d2, a2);
		a3 = _mm256_fmadd_pd(d3, d3, a3);
	}
	_mm256_storeu_pd(lanes, a0);
	_mm256_storeu_pd(lanes + 4, a1);
	_mm256_storeu_pd(lanes + 8, a2);
	_mm256_storeu_pd(lanes + 12, a3);
	return i;
}

double sumsq_cpu(const float *x, size_t n)
{
	double lanes[SUMSQ_LANES] = { 0 };
	size_t done = 0;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		done = sumsq_avx2(lanes, x, n);
	sumsq_scalar(lanes, x, done, n);
	return combine_lanes(lanes);
}

/* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), at most 1.
 * A non-finite norm gives scale 0 and stays in clip[0]: the optimizer
 * codelets read it as "skip this update" (the non-finite guard). */
static void clip_of(float *clip, double sum, float max_norm)
{
	double norm = sqrt(sum);
	double scale = max_norm > 0 ? (double)max_norm / (norm + 1e-6) : 1.0;
	clip[0] = (float)norm;
	clip[1] = !isfinite(clip[0]) ? 0.0f : scale < 1.0 ? (float)scale : 1.0f;
}

/* ------------------------------------------------------------------------- */

static void sumsq_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *x = buffers[0];
	double *out = (double *)STARPU_MATRIX_GET_PTR(buffers[1]);
	int rows = lspo_mat_rows(x), cols = lspo_mat_cols(x), ld = lspo_mat_ld(x);
	if (rows == 1 || ld == cols) {
		*out = sumsq_cpu(lspo_mat_ptr(x), (size_t)rows * cols);
		return;
	}
	double s = 0.0;   /* a strided matrix: rows in order */
	for (int r = 0; r < rows; r++)
		s += sumsq_cpu(lspo_mat_ptr(x) + (size_t)r * ld, (size_t)cols);
	*out = s;
}

static void clip_scale_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_clip_args *a = cl_arg;
	double sum = 0.0;
	for (int i = 0; i < a->n; i++)
		sum += *(const double *)STARPU_MATRIX_GET_PTR(buffers[i]);
	clip_of(lspo_mat_ptr(buffers[a->n]), sum, a->max_norm);
}

static uint32_t sumsq_footprint(struct starpu_task *task)
{
	starpu_data_handle_t x = STARPU_TASK_GET_HANDLE(task, 0);
	uint64_t n = (uint64_t)starpu_matrix_get_nx(x) * starpu_matrix_get_ny(x);
	return starpu_hash_crc32c_be_n(&n, sizeof(n), 0);
}

static uint32_t clip_scale_footprint(struct starpu_task *task)
{
	const struct lspo_clip_args *a = task->cl_arg;
	return starpu_hash_crc32c_be((uint32_t)a->n, 0);
}

static struct starpu_perfmodel sumsq_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_sumsq", .footprint = sumsq_footprint,
};
static struct starpu_perfmodel clip_scale_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_clip_scale", .footprint = clip_scale_footprint,
};

/* buffers: x (R), out (W), a SCRATCH vector of SUMSQ_CUDA_BLOCKS doubles for
 * the first stage of the CUDA reduction (unused on the CPU). */
struct starpu_codelet cl_sumsq = {
	.cpu_funcs = { sumsq_cpu_codelet },
	.cpu_funcs_name = { "sumsq_cpu_codelet" },
	LSPO_CUDA_FUNC(sumsq_cuda)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_W, STARPU_SCRATCH },
	.model = &sumsq_model,
	.name = "sumsq",
	.color = LSPO_COLOR_REDUCE,
};

/* buffers: n partials (R), then clip (W). */
struct starpu_codelet cl_clip_scale = {
	.cpu_funcs = { clip_scale_cpu_codelet },
	.cpu_funcs_name = { "clip_scale_cpu_codelet" },
	LSPO_CUDA_FUNC(clip_scale_cuda)
	.nbuffers = STARPU_VARIABLE_NBUFFERS,
	.model = &clip_scale_model,
	.name = "clip_scale",
	.color = LSPO_COLOR_REDUCE,
};

static int is_double_scalar(starpu_data_handle_t h)
{
	return lspo_handle_rows(h) == 1 && lspo_handle_cols(h) == 1
	       && starpu_matrix_get_elemsize(h) == sizeof(double);
}

int lspo_sumsq_submit(starpu_data_handle_t x, starpu_data_handle_t out,
                      int priority, const char *name)
{
	return lspo_sumsq_submit_where(x, out, STARPU_CPU | STARPU_CUDA, priority, name);
}

int lspo_sumsq_submit_where(starpu_data_handle_t x, starpu_data_handle_t out, uint32_t where,
                            int priority, const char *name)
{
	if (starpu_matrix_get_elemsize(x) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: x must be a float32 matrix", name);
	if (!is_double_scalar(out))
		LSPO_FAIL(LSPO_EINVAL, "%s: out must be a (1, 1) double matrix (elemsize 8)", name);
	/* Temporary scratch, released once the task has run. */
	starpu_data_handle_t scratch;
	starpu_vector_data_register(&scratch, -1, 0, SUMSQ_CUDA_BLOCKS, sizeof(double));
	double n = (double)lspo_handle_rows(x) * lspo_handle_cols(x);
	int rc = starpu_task_insert(&cl_sumsq,
		STARPU_R, x, STARPU_W, out, STARPU_SCRATCH, scratch,
		STARPU_EXECUTE_WHERE, where, STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * n, 0);
	starpu_data_unregister_submit(scratch);
	LSPO_STARPU(rc);
	return LSPO_OK;
}

int lspo_clip_scale_submit(starpu_data_handle_t *partials, int n, starpu_data_handle_t clip,
                           float max_norm, int priority, const char *name)
{
	if (n < 1 || !partials)
		LSPO_FAIL(LSPO_EINVAL, "%s: %d partial sums: need at least one", name, n);
	for (int i = 0; i < n; i++)
		if (!is_double_scalar(partials[i]))
			LSPO_FAIL(LSPO_EINVAL, "%s: partial %d is not a (1, 1) double matrix", name, i);
	if (lspo_handle_rows(clip) != 1 || lspo_handle_cols(clip) != 2
	    || starpu_matrix_get_elemsize(clip) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: clip must be a (1, 2) float32 matrix", name);
	struct starpu_data_descr *descr = malloc(sizeof(*descr) * ((size_t)n + 1));
	struct lspo_clip_args *a = malloc(sizeof(*a));
	if (!descr || !a) {
		free(descr);
		free(a);
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	}
	for (int i = 0; i < n; i++)
		descr[i] = (struct starpu_data_descr){ .handle = partials[i], .mode = STARPU_R };
	descr[n] = (struct starpu_data_descr){ .handle = clip, .mode = STARPU_W };
	*a = (struct lspo_clip_args){ max_norm, n };
	int rc = starpu_task_insert(&cl_clip_scale,
		STARPU_DATA_MODE_ARRAY, descr, n + 1,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)n + 4.0, 0);
	free(descr);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
