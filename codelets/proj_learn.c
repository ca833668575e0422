/*
 * proj_learn.c - one Adam iteration of a projector pair's learning on one
 * gradient: codelet, perfmodel and submit helper around
 * lspo_proj_learn_one (projector_learn.c).  CUDA side in proj_learn.cu.
 */
#include <stdlib.h>

#include "internal.h"
#include "projector.h"
#include "proj_learn.h"

/* buffers: pidx, pval (m, r), qidx, qval (n, r), G (m, n), mom, scratch. */
static void proj_learn_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_proj_learn_args *a = cl_arg;
	STARPU_ASSERT(lspo_mat_ld(buffers[4]) == lspo_mat_cols(buffers[4]));
	struct lspo_proj p = { .m = lspo_mat_rows(buffers[0]), .n = lspo_mat_rows(buffers[2]), .d = a->d,
	                       .r = lspo_mat_cols(buffers[0]) };
	p.idx[0] = (int32_t *)STARPU_MATRIX_GET_PTR(buffers[0]);
	p.val[0] = lspo_mat_ptr(buffers[1]);
	p.idx[1] = (int32_t *)STARPU_MATRIX_GET_PTR(buffers[2]);
	p.val[1] = lspo_mat_ptr(buffers[3]);
	lspo_proj_learn_one(&p, lspo_mat_ptr(buffers[4]), (float *)STARPU_VECTOR_GET_PTR(buffers[6]),
	                    (float *)STARPU_VECTOR_GET_PTR(buffers[5]), a->t, &a->opts);
}

static uint32_t proj_learn_footprint(struct starpu_task *task)
{
	starpu_data_handle_t P = STARPU_TASK_GET_HANDLE(task, 0), G = STARPU_TASK_GET_HANDLE(task, 4);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(G), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(G), h);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(P), h);
	return starpu_hash_crc32c_be(((const struct lspo_proj_learn_args *)task->cl_arg)->d, h);
}

static struct starpu_perfmodel proj_learn_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_proj_learn", .footprint = proj_learn_footprint,
};

struct starpu_codelet cl_proj_learn = {
	.cpu_funcs = { proj_learn_cpu_codelet },
	.cpu_funcs_name = { "proj_learn_cpu_codelet" },
	LSPO_CUDA_FUNC(proj_learn_cuda)
	.nbuffers = 7,
	.modes = { STARPU_R, STARPU_RW, STARPU_R, STARPU_RW, STARPU_R, STARPU_RW, STARPU_SCRATCH },
	.model = &proj_learn_model,
	.name = "proj_learn",
	.color = LSPO_COLOR_PROJECT,
};

int lspo_proj_learn_submit(starpu_data_handle_t pidx, starpu_data_handle_t pval,
                           starpu_data_handle_t qidx, starpu_data_handle_t qval, int d,
                           starpu_data_handle_t G, starpu_data_handle_t mom, int t,
                           const struct lspo_proj_learn_opts *opts, int priority, const char *name)
{
	int m = lspo_handle_rows(G), n = lspo_handle_cols(G), r = lspo_handle_cols(pidx);
	if (lspo_handle_rows(pidx) != m || lspo_handle_rows(pval) != m || lspo_handle_cols(pval) != r
	    || lspo_handle_rows(qidx) != n || lspo_handle_rows(qval) != n || lspo_handle_cols(qidx) != r
	    || lspo_handle_cols(qval) != r || r < 1 || r > d || t < 1 || !opts
	    || starpu_vector_get_nx(mom) != (uint32_t)(2 * (m + n) * r)
	    || starpu_vector_get_elemsize(mom) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: G %dx%d, P %dx%d, Q %dx%d (values %dx%d, %dx%d), d %d, moments %u, "
		          "step %d: shapes do not agree", name, m, n, lspo_handle_rows(pidx), r,
		          lspo_handle_rows(qidx), lspo_handle_cols(qidx), lspo_handle_rows(pval),
		          lspo_handle_cols(pval), lspo_handle_rows(qval), lspo_handle_cols(qval), d,
		          starpu_vector_get_nx(mom), t);
	struct lspo_proj_learn_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = (struct lspo_proj_learn_args){ .d = d, .t = t, .opts = *opts };
	starpu_data_handle_t work;
	starpu_vector_data_register(&work, -1, 0, (uint32_t)lspo_proj_learn_work(m, n, d, r), sizeof(float));
	int rc = starpu_task_insert(&cl_proj_learn,
		STARPU_R, pidx, STARPU_RW, pval, STARPU_R, qidx, STARPU_RW, qval, STARPU_R, G,
		STARPU_RW, mom, STARPU_SCRATCH, work,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 26.0 * m * n * r, 0);
	starpu_data_unregister_submit(work);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
