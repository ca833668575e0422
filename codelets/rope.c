/*
 * rope.c - rotary position embedding of Llama-family queries and keys, in
 * place, HF's rotate_half convention (the two halves of each head pair up,
 * not adjacent elements): CPU kernel, codelet and submit helper.  The CUDA
 * kernel is in rope.cu.
 *
 * The cos/sin table (T, head_dim) is the caller's (computed on the host in
 * double, llama3 frequency scaling included), so this file knows nothing of
 * rope_theta.  The backward of a rotation is the inverse rotation, applied
 * to the gradient: the same kernel with the sine negated.
 */
#include <stdlib.h>

#include "internal.h"
#include "bf16.h"
#include "rope.h"
#include "gpt2_ops_util.h"

void rope_cpu(float *x, const float *table, int N, int T, int n_head, int head_dim, int inverse)
{
	int half = head_dim / 2, C = n_head * head_dim;
	float sign = inverse ? -1.0f : 1.0f;
	for (int n = 0; n < N; n++) {
		const float *cs = table + (size_t)(n % T) * head_dim, *sn = cs + half;
		for (int h = 0; h < n_head; h++) {
			float *x1 = x + (size_t)n * C + (size_t)h * head_dim, *x2 = x1 + half;
			int j = 0;
			for (; j + LSPO_BLOCK <= half; j += LSPO_BLOCK) {
				LSPO_IVDEP
				for (int l = j; l < j + LSPO_BLOCK; l++) {
					float a = x1[l], b = x2[l], c = cs[l], s = sign * sn[l];
					x1[l] = a * c - b * s;
					x2[l] = b * c + a * s;
				}
			}
			for (; j < half; j++) {
				float a = x1[j], b = x2[j], c = cs[j], s = sign * sn[j];
				x1[j] = a * c - b * s;
				x2[j] = b * c + a * s;
			}
		}
	}
}

/* buffers: x (N, n_head * head_dim) RW, table (T, head_dim). */
static void rope_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_rope_args *a = cl_arg;
	rope_cpu(lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_rows(buffers[0]),
	         lspo_mat_rows(buffers[1]), a->n_head, a->head_dim, a->inverse);
}

/* The default footprint hashes every buffer's (rows, cols): N, C, T and head_dim. */
LSPO_PERFMODEL(rope_model, "lspo_rope");

static void rope_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(rope_cpu_codelet, &cl_rope, b, a);
}

struct starpu_codelet cl_rope = {
	.cpu_funcs = { rope_cpu_codelet_any },
	.cpu_funcs_name = { "rope_cpu_codelet_any" },
	LSPO_CUDA_FUNC(rope_cuda_any)
	.nbuffers = 2,
	.modes = { STARPU_RW, STARPU_R },
	.model = &rope_model,
	.name = "rope",
	.color = LSPO_COLOR_COMPUTE,
};

int lspo_rope_submit(starpu_data_handle_t x, starpu_data_handle_t table, int n_head, int head_dim,
                     int inverse, int prio, const char *name)
{
	int N = lspo_handle_rows(x), C = lspo_handle_cols(x), T = lspo_handle_rows(table);
	if (n_head < 1 || head_dim < 2 || head_dim % 2 != 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: n_head %d and head_dim %d: need n_head >= 1 and an even head_dim >= 2",
		          name, n_head, head_dim);
	if (N < 1 || C != n_head * head_dim || !lspo_handle_contiguous(x)
	    || !lspo_handle_float(x))
		LSPO_FAIL(LSPO_EINVAL, "%s: x is %dx%d, expected contiguous float (N, %d) for %d heads of %d",
		          name, N, C, n_head * head_dim, n_head, head_dim);
	if (T < 1 || N % T != 0 || lspo_handle_cols(table) != head_dim || !lspo_handle_contiguous(table)
	    || starpu_matrix_get_elemsize(table) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: table is %dx%d, expected contiguous float (T, %d) with T dividing "
		          "the %d rows of x", name, T, lspo_handle_cols(table), head_dim, N);
	struct lspo_rope_args *a = malloc(sizeof(*a));
	if (!a)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*a = (struct lspo_rope_args){ n_head, head_dim, inverse ? 1 : 0 };
	LSPO_STARPU(starpu_task_insert(&cl_rope,
		STARPU_RW, x, STARPU_R, table,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, 3.0 * N * C, 0));
	return LSPO_OK;
}
