/*
 * matmul.c - C = alpha * op(A) * op(B) + beta * C: CPU kernel (CBLAS),
 * codelet and submit helper.  The CUDA kernel (cuBLAS) is in matmul.cu.
 */
#include <stdlib.h>

#include <cblas.h>

#include "internal.h"
#include "bf16.h"
#include "matmul.h"

void matmul_cpu(const struct lspo_matmul_args *args, int m, int n, int k,
                const float *A, int lda, const float *B, int ldb, float *C, int ldc)
{
	cblas_sgemm(CblasRowMajor, args->trans_a ? CblasTrans : CblasNoTrans,
	            args->trans_b ? CblasTrans : CblasNoTrans, m, n, k,
	            args->alpha, A, lda, B, ldb, args->beta, C, ldc);
}

static void matmul_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_matmul_args *args = cl_arg;
	void *A = buffers[0], *B = buffers[1], *C = buffers[2];
	int k = args->trans_a ? lspo_mat_rows(A) : lspo_mat_cols(A);
	matmul_cpu(args, lspo_mat_rows(C), lspo_mat_cols(C), k, lspo_mat_ptr(A), lspo_mat_ld(A),
	           lspo_mat_ptr(B), lspo_mat_ld(B), lspo_mat_ptr(C), lspo_mat_ld(C));
}

/* The cost depends on m, n, k and on the transposes, not on buffer sizes
 * alone; and on the element sizes when an operand is bf16 (fp32 products
 * keep their footprints). */
static uint32_t matmul_footprint(struct starpu_task *task)
{
	const struct lspo_matmul_args *args = task->cl_arg;
	starpu_data_handle_t A = STARPU_TASK_GET_HANDLE(task, 0);
	starpu_data_handle_t C = STARPU_TASK_GET_HANDLE(task, 2);
	uint32_t k = args->trans_a ? starpu_matrix_get_ny(A) : starpu_matrix_get_nx(A);
	uint32_t h = starpu_hash_crc32c_be(starpu_matrix_get_ny(C), 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_nx(C), h);
	h = starpu_hash_crc32c_be(k, h);
	size_t ea = starpu_matrix_get_elemsize(A), ec = starpu_matrix_get_elemsize(C);
	if (ea != sizeof(float) || ec != sizeof(float))
		h = starpu_hash_crc32c_be((uint32_t)(ea * 16 + ec), h);
	return starpu_hash_crc32c_be((uint32_t)(args->trans_a * 2 + args->trans_b), h);
}

static struct starpu_perfmodel matmul_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_matmul", .footprint = matmul_footprint,
};

static void matmul_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(matmul_cpu_codelet, &cl_matmul, b, a);
}

struct starpu_codelet cl_matmul = {
	.cpu_funcs = { matmul_cpu_codelet_any },
	.cpu_funcs_name = { "matmul_cpu_codelet_any" },
	LSPO_CUDA_FUNC(matmul_cuda)
	.nbuffers = STARPU_VARIABLE_NBUFFERS,  /* C is W or RW, chosen per task */
	.model = &matmul_model,
	.name = "matmul",
	.color = LSPO_COLOR_COMPUTE,
};

int lspo_matmul_submit(starpu_data_handle_t A, starpu_data_handle_t B, starpu_data_handle_t C,
                       int trans_a, int trans_b, float alpha, float beta,
                       int priority, const char *name)
{
	int m = trans_a ? lspo_handle_cols(A) : lspo_handle_rows(A);
	int k = trans_a ? lspo_handle_rows(A) : lspo_handle_cols(A);
	int kb = trans_b ? lspo_handle_cols(B) : lspo_handle_rows(B);
	int n = trans_b ? lspo_handle_rows(B) : lspo_handle_cols(B);
	if (k != kb || m != lspo_handle_rows(C) || n != lspo_handle_cols(C))
		LSPO_FAIL(LSPO_EINVAL, "%s: op(A) is %dx%d, op(B) %dx%d, C %dx%d: shapes do not agree",
		          name, m, k, kb, n, lspo_handle_rows(C), lspo_handle_cols(C));
	struct lspo_matmul_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*args = (struct lspo_matmul_args){ trans_a != 0, trans_b != 0, alpha, beta };
	LSPO_STARPU(starpu_task_insert(&cl_matmul,
		STARPU_R, A, STARPU_R, B, beta == 0.0f ? STARPU_W : STARPU_RW, C,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * m * n * k, 0));
	return LSPO_OK;
}
