/*
 * proj_publish.c - a projector check's choice, moment re-projection and
 * publication of the new pair, for one pair: codelet, perfmodel and submit
 * helper around lspo_proj_refresh_install (projector.c).  CPU only: the
 * moments live in host memory (lsp mode).
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "projector.h"
#include "proj_publish.h"

/* A pair seen through buffers b[0..3]: pidx, pval (m, r), qidx, qval (n, r). */
static struct lspo_proj pair_view(void *b[], int d)
{
	struct lspo_proj p = { .m = lspo_mat_rows(b[0]), .n = lspo_mat_rows(b[2]), .d = d, .r = lspo_mat_cols(b[0]) };
	p.idx[0] = (int32_t *)STARPU_MATRIX_GET_PTR(b[0]);
	p.val[0] = lspo_mat_ptr(b[1]);
	p.idx[1] = (int32_t *)STARPU_MATRIX_GET_PTR(b[2]);
	p.val[1] = lspo_mat_ptr(b[3]);
	return p;
}

/* Mean over slots [first, first + n) of field f (0 error, 1 captured),
 * summed in order as lspo_proj_error does. */
static double slot_mean(const double *e, int first, int n, int f)
{
	double s = 0;
	for (int k = 0; k < n; k++)
		s += e[2 * (first + k) + f];
	return s / n;
}

/* buffers: live[4], fresh[4], learned[4], errs, then (G, M, V) per matrix. */
static void proj_publish_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_proj_publish_args *a = cl_arg;
	int n = a->n;
	struct lspo_proj live = pair_view(buffers, a->d), fresh = pair_view(buffers + 4, a->d),
	                 learned = pair_view(buffers + 8, a->d);
	const double *e = (const double *)STARPU_VECTOR_GET_PTR(buffers[12]);
	const float *G[n ? n : 1];
	float *M[n ? n : 1], *V[n ? n : 1];
	for (int k = 0; k < n; k++) {
		G[k] = lspo_mat_ptr(buffers[13 + 3 * k]);
		M[k] = lspo_mat_ptr(buffers[14 + 3 * k]);
		V[k] = lspo_mat_ptr(buffers[15 + 3 * k]);
	}
	struct lspo_proj_refresh_report *rep = a->report;
	*rep = (struct lspo_proj_refresh_report){
		.err_check = slot_mean(e, 0, n, 0), .captured_before = slot_mean(e, 0, n, 1),
		.err_fresh = slot_mean(e, n, n, 0), .err_candidate = slot_mean(e, 2 * n, n, 0),
		.err_learned = -1, .captured_random = a->d / sqrt((double)live.m * live.n),
	};
	rep->err_after = rep->err_check;
	rep->captured_after = rep->captured_before;
	int rc = lspo_proj_refresh_install(&live, &fresh, &learned, G, n, M, V, n, rep);
	STARPU_ASSERT_MSG(rc == LSPO_OK, "proj_publish: the install failed (%s)", lspo_strerror(rc));
	a->live->gain = 0.0f;   /* the values may have changed */
}

static uint32_t proj_publish_footprint(struct starpu_task *task)
{
	const struct lspo_proj_publish_args *a = task->cl_arg;
	starpu_data_handle_t P = STARPU_TASK_GET_HANDLE(task, 0), Q = STARPU_TASK_GET_HANDLE(task, 2);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(P), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_ny(Q), h);
	h = starpu_hash_crc32c_be((uint32_t)a->n, h);
	return starpu_hash_crc32c_be((uint32_t)a->d, h);
}

static struct starpu_perfmodel proj_publish_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_proj_publish", .footprint = proj_publish_footprint,
};

struct starpu_codelet cl_proj_publish = {
	.cpu_funcs = { proj_publish_cpu_codelet },
	.cpu_funcs_name = { "proj_publish_cpu_codelet" },
	.nbuffers = STARPU_VARIABLE_NBUFFERS,  /* 13 + 3 per matrix */
	.model = &proj_publish_model,
	.name = "proj_publish",
	.color = LSPO_COLOR_UPDATE,
};

int lspo_proj_publish_submit(struct lspo_proj *live_pair, const starpu_data_handle_t live[4],
                             const starpu_data_handle_t fresh[4], const starpu_data_handle_t learned[4],
                             starpu_data_handle_t errs, int n, int d, const starpu_data_handle_t *G,
                             const starpu_data_handle_t *M, const starpu_data_handle_t *V,
                             struct lspo_proj_refresh_report *report, int priority, const char *name)
{
	if (n < 1 || !report || starpu_vector_get_nx(errs) < (uint32_t)(6 * n))
		LSPO_FAIL(LSPO_EINVAL, "%s: %d matrices, an error vector of %u doubles (expected %d)", name, n,
		          starpu_vector_get_nx(errs), 6 * n);
	int m = lspo_handle_rows(live[0]), nn = lspo_handle_rows(live[2]);
	for (int k = 0; k < n; k++)
		if (lspo_handle_rows(G[k]) != m || lspo_handle_cols(G[k]) != nn || lspo_handle_rows(M[k]) != d
		    || lspo_handle_cols(M[k]) != d || lspo_handle_rows(V[k]) != d || lspo_handle_cols(V[k]) != d)
			LSPO_FAIL(LSPO_EINVAL, "%s: matrix %d: G %dx%d, M %dx%d, V %dx%d for a %dx%d pair of d %d",
			          name, k, lspo_handle_rows(G[k]), lspo_handle_cols(G[k]), lspo_handle_rows(M[k]),
			          lspo_handle_cols(M[k]), lspo_handle_rows(V[k]), lspo_handle_cols(V[k]), m, nn, d);
	int nb = 13 + 3 * n;
	struct starpu_data_descr *descr = malloc(sizeof(*descr) * (size_t)nb);
	struct lspo_proj_publish_args *args = malloc(sizeof(*args));
	if (!descr || !args) {
		free(descr);
		free(args);
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	}
	for (int i = 0; i < 4; i++) {
		descr[i] = (struct starpu_data_descr){ .handle = live[i], .mode = STARPU_RW };
		descr[4 + i] = (struct starpu_data_descr){ .handle = fresh[i], .mode = STARPU_R };
		descr[8 + i] = (struct starpu_data_descr){ .handle = learned[i], .mode = STARPU_R };
	}
	descr[12] = (struct starpu_data_descr){ .handle = errs, .mode = STARPU_R };
	for (int k = 0; k < n; k++) {
		descr[13 + 3 * k] = (struct starpu_data_descr){ .handle = G[k], .mode = STARPU_R };
		descr[14 + 3 * k] = (struct starpu_data_descr){ .handle = M[k], .mode = STARPU_RW };
		descr[15 + 3 * k] = (struct starpu_data_descr){ .handle = V[k], .mode = STARPU_RW };
	}
	*args = (struct lspo_proj_publish_args){ .n = n, .d = d, .live = live_pair, .report = report };
	int rc = starpu_task_insert(&cl_proj_publish, STARPU_DATA_MODE_ARRAY, descr, nb,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 8.0 * n * d * d * d, 0);
	free(descr);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
