/*
 * calib_add.c - C = G or C += G, G optionally transposed: CPU kernel,
 * codelet, perfmodel and submit helper.  CUDA side in calib_add.cu.
 */
#include <stdlib.h>

#include "internal.h"
#include "calib_add.h"

void calib_add_cpu(int m, int n, const float *G, int ldg, int transpose, int first, float *C, int ldc)
{
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			float g = transpose ? G[(size_t)j * ldg + i] : G[(size_t)i * ldg + j];
			float *x = &C[(size_t)i * ldc + j];
			*x = first ? g : *x + g;
		}
}

/* buffers: G, C. */
static void calib_add_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_calib_add_args *a = cl_arg;
	void *G = buffers[0], *C = buffers[1];
	calib_add_cpu(lspo_mat_rows(C), lspo_mat_cols(C), lspo_mat_ptr(G), lspo_mat_ld(G), a->transpose,
	              a->first, lspo_mat_ptr(C), lspo_mat_ld(C));
}

LSPO_PERFMODEL(calib_add_model, "lspo_calib_add");

struct starpu_codelet cl_calib_add = {
	.cpu_funcs = { calib_add_cpu_codelet },
	.cpu_funcs_name = { "calib_add_cpu_codelet" },
	LSPO_CUDA_FUNC(calib_add_cuda)
	.nbuffers = STARPU_VARIABLE_NBUFFERS,  /* C is W or RW, chosen per task */
	.model = &calib_add_model,
	.name = "calib_add",
	.color = LSPO_COLOR_TRANSFER,
};

int lspo_calib_add_submit(starpu_data_handle_t G, int transpose, starpu_data_handle_t C, int first,
                          int priority, const char *name)
{
	int m = lspo_handle_rows(C), n = lspo_handle_cols(C);
	int gr = transpose ? n : m, gc = transpose ? m : n;
	if (lspo_handle_rows(G) != gr || lspo_handle_cols(G) != gc)
		LSPO_FAIL(LSPO_EINVAL, "%s: G %dx%d, expected %dx%d for C %dx%d%s", name, lspo_handle_rows(G),
		          lspo_handle_cols(G), gr, gc, m, n, transpose ? " (transposed)" : "");
	struct lspo_calib_add_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = (struct lspo_calib_add_args){ .first = first != 0, .transpose = transpose != 0 };
	int rc = starpu_task_insert(&cl_calib_add, STARPU_R, G, first ? STARPU_W : STARPU_RW, C,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)m * n, 0);
	LSPO_STARPU(rc);
	return LSPO_OK;
}
