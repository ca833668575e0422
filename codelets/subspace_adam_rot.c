/*
 * subspace_adam_rot.c - subspace Adam in a fixed rotation of the subspace
 * (subspace_adam_rot.h): four (d, d) products around the kernel of
 * subspace_adam.c; CPU-only codelet, perfmodel and submit helper.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "internal.h"
#include "subspace_adam_rot.h"

void subspace_adam_rot_cpu(int d, const float *G_hat, float *Delta, float *M, float *V,
                           const float *R, const float *S, float *work,
                           const struct lspo_subspace_adam_hparams *h)
{
	size_t dd = (size_t)d * d;
	float *t = work, *g = work + dd;
	for (size_t i = 0; i < dd; i++)
		if (!isfinite(G_hat[i])) {   /* the non-finite guard of subspace_adam */
			memset(Delta, 0, dd * sizeof(float));
			return;
		}
	/* g = R^T G_hat S */
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, d, 1.0f, R, d, G_hat, d, 0.0f, t, d);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, t, d, S, d, 0.0f, g, d);
	subspace_adam_cpu(g, g, M, V, dd, h);
	/* Delta = R g S^T */
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0f, R, d, g, d, 0.0f, t, d);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, d, 1.0f, t, d, S, d, 0.0f, Delta, d);
}

/* buffers: G_hat R, Delta W, M RW, V RW, RS R, work SCRATCH (2 d, d). */
static void subspace_adam_rot_cpu_codelet(void *buffers[], void *cl_arg)
{
	int d = lspo_mat_rows(buffers[0]);
	for (int i = 0; i < 6; i++)
		STARPU_ASSERT_MSG(lspo_mat_ld(buffers[i]) == d, "subspace_adam_rot: buffer %d is not contiguous", i);
	const float *rs = lspo_mat_ptr(buffers[4]);
	subspace_adam_rot_cpu(d, lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]),
	                      lspo_mat_ptr(buffers[3]), rs, rs + (size_t)d * d, lspo_mat_ptr(buffers[5]),
	                      cl_arg);
}

static uint32_t subspace_adam_rot_footprint(struct starpu_task *task)
{
	return starpu_hash_crc32c_be(starpu_matrix_get_ny(STARPU_TASK_GET_HANDLE(task, 0)), 0);
}

static struct starpu_perfmodel subspace_adam_rot_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_subspace_adam_rot", .footprint = subspace_adam_rot_footprint,
};

struct starpu_codelet cl_subspace_adam_rot = {
	.where = STARPU_CPU,
	.cpu_funcs = { subspace_adam_rot_cpu_codelet },
	.cpu_funcs_name = { "subspace_adam_rot_cpu_codelet" },
	.nbuffers = 6,
	.modes = { STARPU_R, STARPU_W, STARPU_RW, STARPU_RW, STARPU_R, STARPU_SCRATCH },
	.model = &subspace_adam_rot_model,
	.name = "subspace_adam_rot",
	.color = LSPO_COLOR_UPDATE,
};

static int is_dense(starpu_data_handle_t h, int rows, int cols)
{
	return lspo_handle_rows(h) == rows && lspo_handle_cols(h) == cols;
}

int lspo_subspace_adam_rot_submit(starpu_data_handle_t G_hat, starpu_data_handle_t Delta,
                                  starpu_data_handle_t M, starpu_data_handle_t V,
                                  starpu_data_handle_t RS,
                                  const struct lspo_subspace_adam_hparams *h,
                                  int priority, const char *name)
{
	int d = lspo_handle_rows(G_hat);
	if (!is_dense(G_hat, d, d) || !is_dense(Delta, d, d) || !is_dense(M, d, d) || !is_dense(V, d, d)
	    || !is_dense(RS, 2 * d, d))
		LSPO_FAIL(LSPO_EINVAL, "%s: G_hat %dx%d, Delta %dx%d, M %dx%d, V %dx%d, RS %dx%d: expected "
		          "(d, d) matrices and RS (2 d, d)", name, d, lspo_handle_cols(G_hat),
		          lspo_handle_rows(Delta), lspo_handle_cols(Delta), lspo_handle_rows(M),
		          lspo_handle_cols(M), lspo_handle_rows(V), lspo_handle_cols(V), lspo_handle_rows(RS),
		          lspo_handle_cols(RS));
	if (!h || h->t < 1 || !(h->lr >= 0) || !(h->beta1 >= 0 && h->beta1 < 1)
	    || !(h->beta2 >= 0 && h->beta2 < 1) || !(h->eps > 0))
		LSPO_FAIL(LSPO_EINVAL, "%s: invalid Adam hyper-parameters (t >= 1, lr >= 0, "
		          "0 <= betas < 1, eps > 0)", name);
	struct lspo_subspace_adam_hparams *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = *h;
	starpu_data_handle_t work;
	lspo_matrix_register(&work, NULL, 2 * d, d);
	double n = (double)d * d;
	int rc = starpu_task_insert(&cl_subspace_adam_rot,
		STARPU_R, G_hat, STARPU_W, Delta, STARPU_RW, M, STARPU_RW, V, STARPU_R, RS,
		STARPU_SCRATCH, work, STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name, STARPU_FLOPS, 8.0 * n * d + 12.0 * n, 0);
	starpu_data_unregister_submit(work);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
