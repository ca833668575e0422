/*
 * adamw.c - AdamW as torch.optim.AdamW (single-tensor path): CPU kernel
 * (AVX2 + FMA when the CPU has them, scalar otherwise and for the tail),
 * codelet and submit helper.  The CUDA kernel is in adamw.cu.
 *
 * Per element, with g = grad * grad_scale:
 *   p = p * (1 - lr * wd)
 *   m = b1 * m + (1 - b1) * g
 *   v = b2 * v + (1 - b2) * g * g
 *   p = p - step * (m / (sqrt(v) / sqrt(bc2) + eps)),   step = lr / bc1,
 * bc1 = 1 - b1^t and bc2 = 1 - b2^t computed in double, as torch does.
 * Each element is independent, so the vector and scalar paths agree to a
 * rounding of the FMA (the vector path rounds b1 * m + (1 - b1) g once).
 */
#include <math.h>
#include <stdlib.h>

#include <immintrin.h>

#include "adamw.h"
#include "internal.h"

/* The per-call constants, in float as the kernels use them. */
struct adamw_consts {
	float decay, b1, omb1, b2, omb2, step, inv_sqrt_bc2, eps, gs;
};

static struct adamw_consts adamw_consts_of(const struct lspo_adamw_hparams *h, float grad_scale)
{
	double bc1 = 1.0 - pow((double)h->beta1, h->t), bc2 = 1.0 - pow((double)h->beta2, h->t);
	return (struct adamw_consts){
		.decay = 1.0f - h->lr * h->weight_decay,
		.b1 = h->beta1, .omb1 = 1.0f - h->beta1,
		.b2 = h->beta2, .omb2 = 1.0f - h->beta2,
		.step = (float)(h->lr / bc1),
		.inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)),
		.eps = h->eps, .gs = grad_scale,
	};
}

static void adamw_scalar(float *p, const float *grad, float *m, float *v, size_t n,
                         const struct adamw_consts *k)
{
	for (size_t i = 0; i < n; i++) {
		float g = grad[i] * k->gs;
		float mi = k->b1 * m[i] + k->omb1 * g;
		float vi = k->b2 * v[i] + k->omb2 * g * g;
		m[i] = mi;
		v[i] = vi;
		p[i] = p[i] * k->decay - k->step * (mi / (sqrtf(vi) * k->inv_sqrt_bc2 + k->eps));
	}
}

/* Handles n - n % 8 elements; returns how many. */
__attribute__((target("avx2,fma")))
static size_t adamw_avx2(float *p, const float *grad, float *m, float *v, size_t n,
                         const struct adamw_consts *k)
{
	const __m256 decay = _mm256_set1_ps(k->decay), b1 = _mm256_set1_ps(k->b1);
	const __m256 omb1 = _mm256_set1_ps(k->omb1), b2 = _mm256_set1_ps(k->b2);
	const __m256 omb2 = _mm256_set1_ps(k->omb2), step = _mm256_set1_ps(k->step);
	const __m256 isb = _mm256_set1_ps(k->inv_sqrt_bc2), eps = _mm256_set1_ps(k->eps);
	const __m256 gs = _mm256_set1_ps(k->gs);
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 g = _mm256_mul_ps(_mm256_loadu_ps(grad + i), gs);
		__m256 mi = _mm256_fmadd_ps(b1, _mm256_loadu_ps(m + i), _mm256_mul_ps(omb1, g));
		__m256 vi = _mm256_fmadd_ps(b2, _mm256_loadu_ps(v + i), _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
		_mm256_storeu_ps(m + i, mi);
		_mm256_storeu_ps(v + i, vi);
		__m256 den = _mm256_add_ps(_mm256_mul_ps(_mm256_sqrt_ps(vi), isb), eps);
		__m256 upd = _mm256_mul_ps(step, _mm256_div_ps(mi, den));
		__m256 pi = _mm256_mul_ps(_mm256_loadu_ps(p + i), decay);
		_mm256_storeu_ps(p + i, _mm256_sub_ps(pi, upd));
	}
	return i;
}

/* libgcc fills the CPU model at start-up; this only reads it. */
static int have_avx2(void)
{
	return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void adamw_cpu(float *p, const float *grad, float *m, float *v, size_t n,
               const struct lspo_adamw_hparams *h, float grad_scale)
{
	struct adamw_consts k = adamw_consts_of(h, grad_scale);
	size_t done = have_avx2() ? adamw_avx2(p, grad, m, v, n, &k) : 0;
	adamw_scalar(p + done, grad + done, m + done, v + done, n - done, &k);
}

/* ------------------------------------------------------------------------- */

/* A bf16 param, rounded back stochastically (adamw.h). */
static void adamw_sr_cpu(uint16_t *p, int ldp, const float *g, int ldg, float *m, int ldm, float *v, int ldv,
                         int rows, int cols, const struct lspo_adamw_hparams *h, float gs)
{
	struct adamw_consts k = adamw_consts_of(h, gs);
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			float *mi = m + (size_t)r * ldm + c, *vi = v + (size_t)r * ldv + c;
			uint16_t *pi = p + (size_t)r * ldp + c;
			float x = lspo_adamw_elem(lspo_bf16_to_f32(*pi), g[(size_t)r * ldg + c] * gs, mi, vi, k.decay, k.b1,
			                          k.b2, k.step, k.inv_sqrt_bc2, k.eps);
			*pi = lspo_bf16_round_sr(x, h->sr_key, (uint64_t)r * (uint64_t)cols + (uint64_t)c);
		}
}

static void adamw_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_adamw_hparams *h = cl_arg;
	void *p = buffers[0], *g = buffers[1], *m = buffers[2], *v = buffers[3], *clip = buffers[4];
	float scale = lspo_mat_ptr(clip)[1];
	if (!isfinite(lspo_mat_ptr(clip)[0]))
		return;   /* non-finite gradient norm: the step is skipped, p, m and v stay */
	int rows = lspo_mat_rows(p), cols = lspo_mat_cols(p);
	if (lspo_bf16_buffer(p)) {
		adamw_sr_cpu((uint16_t *)STARPU_MATRIX_GET_PTR(p), lspo_mat_ld(p), lspo_mat_ptr(g), lspo_mat_ld(g),
		             lspo_mat_ptr(m), lspo_mat_ld(m), lspo_mat_ptr(v), lspo_mat_ld(v), rows, cols, h, scale);
		return;
	}
	if (rows == 1 || (lspo_mat_ld(p) == cols && lspo_mat_ld(g) == cols && lspo_mat_ld(m) == cols
	                  && lspo_mat_ld(v) == cols)) {
		adamw_cpu(lspo_mat_ptr(p), lspo_mat_ptr(g), lspo_mat_ptr(m), lspo_mat_ptr(v),
		          (size_t)rows * cols, h, scale);
		return;
	}
	for (int r = 0; r < rows; r++)
		adamw_cpu(lspo_mat_ptr(p) + (size_t)r * lspo_mat_ld(p), lspo_mat_ptr(g) + (size_t)r * lspo_mat_ld(g),
		          lspo_mat_ptr(m) + (size_t)r * lspo_mat_ld(m), lspo_mat_ptr(v) + (size_t)r * lspo_mat_ld(v),
		          (size_t)cols, h, scale);
}

static uint32_t adamw_footprint(struct starpu_task *task)
{
	starpu_data_handle_t p = STARPU_TASK_GET_HANDLE(task, 0);
	uint64_t n = (uint64_t)starpu_matrix_get_nx(p) * starpu_matrix_get_ny(p);
	return starpu_hash_crc32c_be_n(&n, sizeof(n), 0);
}

static struct starpu_perfmodel adamw_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_adamw", .footprint = adamw_footprint,
};

struct starpu_codelet cl_adamw = {
	.cpu_funcs = { adamw_cpu_codelet },
	.cpu_funcs_name = { "adamw_cpu_codelet" },
	LSPO_CUDA_FUNC(adamw_cuda)
	.nbuffers = 5,
	.modes = { STARPU_RW, STARPU_R, STARPU_RW, STARPU_RW, STARPU_R },
	.model = &adamw_model,
	.name = "adamw",
	.color = LSPO_COLOR_UPDATE,
};

static int same_shape(starpu_data_handle_t a, starpu_data_handle_t b)
{
	return lspo_handle_rows(a) == lspo_handle_rows(b) && lspo_handle_cols(a) == lspo_handle_cols(b)
	       && starpu_matrix_get_elemsize(a) == starpu_matrix_get_elemsize(b);
}

int lspo_adamw_submit(starpu_data_handle_t param, starpu_data_handle_t grad,
                      starpu_data_handle_t m, starpu_data_handle_t v, starpu_data_handle_t clip,
                      const struct lspo_adamw_hparams *h, int priority, const char *name)
{
	return lspo_adamw_submit_where(param, grad, m, v, clip, h, STARPU_CPU | STARPU_CUDA,
	                               priority, name);
}

int lspo_adamw_submit_where(starpu_data_handle_t param, starpu_data_handle_t grad,
                            starpu_data_handle_t m, starpu_data_handle_t v, starpu_data_handle_t clip,
                            const struct lspo_adamw_hparams *h, uint32_t where,
                            int priority, const char *name)
{
	int p16 = starpu_matrix_get_elemsize(param) == sizeof(uint16_t);
	if ((!p16 && starpu_matrix_get_elemsize(param) != sizeof(float)) || !same_shape(grad, m)
	    || !same_shape(grad, v) || starpu_matrix_get_elemsize(grad) != sizeof(float)
	    || lspo_handle_rows(param) != lspo_handle_rows(grad) || lspo_handle_cols(param) != lspo_handle_cols(grad))
		LSPO_FAIL(LSPO_EINVAL, "%s: param (%d, %d), grad (%d, %d), m (%d, %d), v (%d, %d): "
		          "expected four float32 matrices (or a bf16 param) of one shape", name,
		          lspo_handle_rows(param), lspo_handle_cols(param), lspo_handle_rows(grad),
		          lspo_handle_cols(grad), lspo_handle_rows(m), lspo_handle_cols(m),
		          lspo_handle_rows(v), lspo_handle_cols(v));
	if (lspo_handle_rows(clip) != 1 || lspo_handle_cols(clip) != 2
	    || starpu_matrix_get_elemsize(clip) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: clip is (%d, %d), expected a (1, 2) float32 matrix", name,
		          lspo_handle_rows(clip), lspo_handle_cols(clip));
	if (h->t < 1 || !(h->lr >= 0) || !(h->beta1 >= 0 && h->beta1 < 1) || !(h->beta2 >= 0 && h->beta2 < 1)
	    || !(h->eps >= 0) || !(h->weight_decay >= 0))
		LSPO_FAIL(LSPO_EINVAL, "%s: bad AdamW hyper-parameters (t=%d lr=%g betas=%g/%g eps=%g wd=%g)",
		          name, h->t, h->lr, h->beta1, h->beta2, h->eps, h->weight_decay);
	struct lspo_adamw_hparams *a = malloc(sizeof(*a));
	if (!a)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*a = *h;
	double n = (double)lspo_handle_rows(param) * lspo_handle_cols(param);
	LSPO_STARPU(starpu_task_insert(&cl_adamw,
		STARPU_RW, param, STARPU_R, grad, STARPU_RW, m, STARPU_RW, v, STARPU_R, clip,
		STARPU_CL_ARGS, a, sizeof(*a), STARPU_EXECUTE_WHERE, where,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 14.0 * n, 0));
	return LSPO_OK;
}
