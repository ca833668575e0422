/*
 * project_bwd.c - G_hat = A (dY Q) + beta G_hat: CPU kernel (the sparse
 * product by project_fwd_cpu, then one CBLAS GEMM), codelet, perfmodel and
 * submit helper.  CUDA side in project_bwd.cu.
 */
#include <stdlib.h>

#include <cblas.h>

#include "internal.h"
#include "bf16.h"
#include "project_bwd.h"
#include "project_fwd.h"

void project_bwd_cpu(int T, int n, int d, int r, const int32_t *qidx, const float *qval,
                     const float *dY, int ldy, const float *A, int lda, float beta,
                     float *G, int ldg, float *bt)
{
	/* bt (d, T) = Q^T dY^T = B^T */
	project_fwd_cpu(T, n, d, r, qidx, qval, dY, ldy, bt, T);
	if (T == 0) {
		for (int a = 0; a < d; a++)
			for (int b = 0; b < d; b++)
				G[(size_t)a * ldg + b] = beta == 0.0f ? 0.0f : beta * G[(size_t)a * ldg + b];
		return;
	}
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, d, d, T, 1.0f, A, lda, bt, T,
	            beta, G, ldg);
}

/* buffers: dY (T, n), qidx (n, r), qval (n, r), A (d, T), G_hat (d, d), scratch (d, T). */
static void project_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_project_bwd_args *args = cl_arg;
	void *Y = buffers[0], *Ix = buffers[1], *V = buffers[2], *A = buffers[3], *G = buffers[4];
	STARPU_ASSERT(lspo_mat_ld(Ix) == lspo_mat_cols(Ix) && lspo_mat_ld(V) == lspo_mat_cols(V));
	STARPU_ASSERT(lspo_mat_ld(buffers[5]) == lspo_mat_cols(A));
	project_bwd_cpu(lspo_mat_rows(Y), lspo_mat_cols(Y), lspo_mat_rows(A), lspo_mat_cols(Ix),
	                (const int32_t *)STARPU_MATRIX_GET_PTR(Ix), lspo_mat_ptr(V),
	                lspo_mat_ptr(Y), lspo_mat_ld(Y), lspo_mat_ptr(A), lspo_mat_ld(A), args->beta,
	                lspo_mat_ptr(G), lspo_mat_ld(G), lspo_mat_ptr(buffers[5]));
}

static uint32_t project_bwd_footprint(struct starpu_task *task)
{
	starpu_data_handle_t Y = STARPU_TASK_GET_HANDLE(task, 0);
	starpu_data_handle_t Ix = STARPU_TASK_GET_HANDLE(task, 1);
	starpu_data_handle_t A = STARPU_TASK_GET_HANDLE(task, 3);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(Y), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(Y), h);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(Ix), h);
	return starpu_hash_crc32c_be(starpu_matrix_get_ny(A), h);
}

static struct starpu_perfmodel project_bwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_project_bwd", .footprint = project_bwd_footprint,
};

static void project_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(project_bwd_cpu_codelet, &cl_project_bwd, b, a);
}

struct starpu_codelet cl_project_bwd = {
	.cpu_funcs = { project_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "project_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(project_bwd_cuda_any)
	.nbuffers = STARPU_VARIABLE_NBUFFERS,  /* G_hat is W or RW, chosen per task */
	.model = &project_bwd_model,
	.name = "project_bwd",
	.color = LSPO_COLOR_PROJECT,
};

int lspo_project_bwd_submit(starpu_data_handle_t dY, starpu_data_handle_t qidx,
                            starpu_data_handle_t qval, starpu_data_handle_t A,
                            starpu_data_handle_t G_hat, float beta,
                            int priority, const char *name)
{
	int T = lspo_handle_rows(dY), n = lspo_handle_cols(dY);
	int r = lspo_handle_cols(qidx), d = lspo_handle_rows(A);
	if (lspo_handle_rows(qidx) != n || lspo_handle_rows(qval) != n || lspo_handle_cols(qval) != r
	    || lspo_handle_cols(A) != T || lspo_handle_rows(G_hat) != d || lspo_handle_cols(G_hat) != d
	    || r < 1 || r > d || starpu_matrix_get_elemsize(qidx) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: dY %dx%d, Q %dx%d (values %dx%d), A %dx%d, G_hat %dx%d: "
		          "shapes do not agree", name, T, n, lspo_handle_rows(qidx), r,
		          lspo_handle_rows(qval), lspo_handle_cols(qval), d, lspo_handle_cols(A),
		          lspo_handle_rows(G_hat), lspo_handle_cols(G_hat));
	struct lspo_project_bwd_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	args->beta = beta;
	starpu_data_handle_t bt;
	lspo_matrix_register(&bt, NULL, d, T);
	int rc = starpu_task_insert(&cl_project_bwd,
		STARPU_R, dY, STARPU_R, qidx, STARPU_R, qval, STARPU_R, A,
		beta == 0.0f ? STARPU_W : STARPU_RW, G_hat, STARPU_SCRATCH, bt,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * T * n * r + 2.0 * d * d * T, 0);
	starpu_data_unregister_submit(bt);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
