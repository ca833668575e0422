/*
 * subspace_adam.c - Adam in the d x d subspace on a CPU worker: AVX2 kernel
 * with a scalar tail, CPU-only codelets (separate output or in place),
 * perfmodel and submit helper.
 *
 * Per element: 3 floats read (g, m, v), 3 written (delta, m, v): the
 * kernel is bandwidth bound; sqrt and division are the exact IEEE ones so
 * the AVX2 body and the scalar tail give the same values.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "subspace_adam.h"

struct lspo_subspace_adam_hparams lspo_subspace_adam_default(void)
{
	return (struct lspo_subspace_adam_hparams){
		.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-4f, .t = 1, .eps_inside_sqrt = 0,
	};
}

/* Constants of one call, so that the vector body and the tail agree. */
struct adam_consts {
	float b1, c1, b2, c2, step, ibc2, eps;
};

static struct adam_consts adam_consts(const struct lspo_subspace_adam_hparams *h)
{
	double bc1 = 1.0 - pow((double)h->beta1, h->t), bc2 = 1.0 - pow((double)h->beta2, h->t);
	return (struct adam_consts){
		.b1 = h->beta1, .c1 = 1.0f - h->beta1, .b2 = h->beta2, .c2 = 1.0f - h->beta2,
		.step = (float)(h->lr / bc1), .ibc2 = (float)(1.0 / bc2), .eps = h->eps,
	};
}

static inline void adam_scalar(const float *g, float *delta, float *m, float *v, size_t i0, size_t n,
                               const struct adam_consts *k, int inside)
{
	for (size_t i = i0; i < n; i++) {
		float gi = g[i];
		float mi = k->b1 * m[i] + k->c1 * gi;
		float vi = k->b2 * v[i] + k->c2 * (gi * gi);
		m[i] = mi;
		v[i] = vi;
		float vh = vi * k->ibc2;
		float den = inside ? sqrtf(vh + k->eps) : sqrtf(vh) + k->eps;
		delta[i] = -(k->step * mi) / den;
	}
}

__attribute__((target("avx2,fma")))
static size_t adam_avx2(const float *g, float *delta, float *m, float *v, size_t n,
                        const struct adam_consts *k, int inside)
{
	__m256 b1 = _mm256_set1_ps(k->b1), c1 = _mm256_set1_ps(k->c1);
	__m256 b2 = _mm256_set1_ps(k->b2), c2 = _mm256_set1_ps(k->c2);
	__m256 nstep = _mm256_set1_ps(-k->step), ibc2 = _mm256_set1_ps(k->ibc2);
	__m256 eps = _mm256_set1_ps(k->eps);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 gi = _mm256_loadu_ps(g + i);
		/* written as the scalar tail computes it, without contraction */
		__m256 mi = _mm256_add_ps(_mm256_mul_ps(b1, _mm256_loadu_ps(m + i)), _mm256_mul_ps(c1, gi));
		__m256 vi = _mm256_add_ps(_mm256_mul_ps(b2, _mm256_loadu_ps(v + i)),
		                          _mm256_mul_ps(c2, _mm256_mul_ps(gi, gi)));
		_mm256_storeu_ps(m + i, mi);
		_mm256_storeu_ps(v + i, vi);
		__m256 vh = _mm256_mul_ps(vi, ibc2);
		__m256 den = inside ? _mm256_sqrt_ps(_mm256_add_ps(vh, eps))
		                    : _mm256_add_ps(_mm256_sqrt_ps(vh), eps);
		_mm256_storeu_ps(delta + i, _mm256_div_ps(_mm256_mul_ps(nstep, mi), den));
	}
	return i;
}

void subspace_adam_cpu(const float *g, float *delta, float *m, float *v, size_t n,
                       const struct lspo_subspace_adam_hparams *h)
{
	struct adam_consts k = adam_consts(h);
	size_t i = 0;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		i = adam_avx2(g, delta, m, v, n, &k, h->eps_inside_sqrt);
	adam_scalar(g, delta, m, v, i, n, &k, h->eps_inside_sqrt);
}

/* Runs the kernel row by row when a buffer is not contiguous. */
static void adam_buffers(void *G, void *D, void *M, void *V, const struct lspo_subspace_adam_hparams *h)
{
	int rows = lspo_mat_rows(G), cols = lspo_mat_cols(G);
	/* the non-finite guard: a non-finite compressed gradient leaves M and V
	 * as they are and makes Delta zero, so the apply adds nothing */
	for (int i = 0; i < rows; i++) {
		const float *g = lspo_mat_ptr(G) + (size_t)i * lspo_mat_ld(G);
		int finite = 1;
		for (int j = 0; j < cols; j++)
			finite &= isfinite(g[j]) != 0;
		if (finite)
			continue;
		for (int r = 0; r < rows; r++)
			memset(lspo_mat_ptr(D) + (size_t)r * lspo_mat_ld(D), 0, (size_t)cols * sizeof(float));
		return;
	}
	if (lspo_mat_ld(G) == cols && lspo_mat_ld(D) == cols && lspo_mat_ld(M) == cols
	    && lspo_mat_ld(V) == cols) {
		subspace_adam_cpu(lspo_mat_ptr(G), lspo_mat_ptr(D), lspo_mat_ptr(M), lspo_mat_ptr(V),
		                  (size_t)rows * cols, h);
		return;
	}
	for (int i = 0; i < rows; i++)
		subspace_adam_cpu(lspo_mat_ptr(G) + (size_t)i * lspo_mat_ld(G),
		                  lspo_mat_ptr(D) + (size_t)i * lspo_mat_ld(D),
		                  lspo_mat_ptr(M) + (size_t)i * lspo_mat_ld(M),
		                  lspo_mat_ptr(V) + (size_t)i * lspo_mat_ld(V), (size_t)cols, h);
}

/* buffers: G_hat R, Delta W, M RW, V RW. */
static void subspace_adam_cpu_codelet(void *buffers[], void *cl_arg)
{
	adam_buffers(buffers[0], buffers[1], buffers[2], buffers[3], cl_arg);
}

/* buffers: G_hat RW (becomes Delta), M RW, V RW. */
static void subspace_adam_inplace_cpu_codelet(void *buffers[], void *cl_arg)
{
	adam_buffers(buffers[0], buffers[0], buffers[1], buffers[2], cl_arg);
}

static uint32_t subspace_adam_footprint(struct starpu_task *task)
{
	starpu_data_handle_t G = STARPU_TASK_GET_HANDLE(task, 0);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(G), 0);
	return starpu_hash_crc32c_be(starpu_matrix_get_nx(G), h);
}

static struct starpu_perfmodel subspace_adam_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_subspace_adam", .footprint = subspace_adam_footprint,
};

struct starpu_codelet cl_subspace_adam = {
	.where = STARPU_CPU,
	.cpu_funcs = { subspace_adam_cpu_codelet },
	.cpu_funcs_name = { "subspace_adam_cpu_codelet" },
	.nbuffers = 4,
	.modes = { STARPU_R, STARPU_W, STARPU_RW, STARPU_RW },
	.model = &subspace_adam_model,
	.name = "subspace_adam",
	.color = LSPO_COLOR_UPDATE,
};

struct starpu_codelet cl_subspace_adam_inplace = {
	.where = STARPU_CPU,
	.cpu_funcs = { subspace_adam_inplace_cpu_codelet },
	.cpu_funcs_name = { "subspace_adam_inplace_cpu_codelet" },
	.nbuffers = 3,
	.modes = { STARPU_RW, STARPU_RW, STARPU_RW },
	.model = &subspace_adam_model,
	.name = "subspace_adam",
	.color = LSPO_COLOR_UPDATE,
};

static int same_shape(starpu_data_handle_t a, starpu_data_handle_t b)
{
	return lspo_handle_rows(a) == lspo_handle_rows(b) && lspo_handle_cols(a) == lspo_handle_cols(b);
}

int lspo_subspace_adam_submit(starpu_data_handle_t G_hat, starpu_data_handle_t Delta,
                              starpu_data_handle_t M, starpu_data_handle_t V,
                              const struct lspo_subspace_adam_hparams *h,
                              int priority, const char *name)
{
	if (!same_shape(G_hat, M) || !same_shape(G_hat, V) || (Delta && !same_shape(G_hat, Delta)))
		LSPO_FAIL(LSPO_EINVAL, "%s: G_hat %dx%d, M %dx%d, V %dx%d: shapes differ", name,
		          lspo_handle_rows(G_hat), lspo_handle_cols(G_hat), lspo_handle_rows(M),
		          lspo_handle_cols(M), lspo_handle_rows(V), lspo_handle_cols(V));
	if (!h || h->t < 1 || !(h->lr >= 0) || !(h->beta1 >= 0 && h->beta1 < 1)
	    || !(h->beta2 >= 0 && h->beta2 < 1) || !(h->eps > 0))
		LSPO_FAIL(LSPO_EINVAL, "%s: invalid Adam hyper-parameters (t >= 1, lr >= 0, "
		          "0 <= betas < 1, eps > 0)", name);
	struct lspo_subspace_adam_hparams *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = *h;
	double n = (double)lspo_handle_rows(G_hat) * lspo_handle_cols(G_hat);
	if (Delta)
		LSPO_STARPU(starpu_task_insert(&cl_subspace_adam,
			STARPU_R, G_hat, STARPU_W, Delta, STARPU_RW, M, STARPU_RW, V,
			STARPU_CL_ARGS, args, sizeof(*args),
			STARPU_PRIORITY, priority, STARPU_NAME, name, STARPU_FLOPS, 12.0 * n, 0));
	else
		LSPO_STARPU(starpu_task_insert(&cl_subspace_adam_inplace,
			STARPU_RW, G_hat, STARPU_RW, M, STARPU_RW, V,
			STARPU_CL_ARGS, args, sizeof(*args),
			STARPU_PRIORITY, priority, STARPU_NAME, name, STARPU_FLOPS, 12.0 * n, 0));
	return LSPO_OK;
}
