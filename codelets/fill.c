/* fill.c - x <- value: CPU kernel, codelet, submit helper (CUDA in fill.cu). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "bf16.h"
#include "fill.h"

void fill_cpu(float *x, int rows, int cols, int ld, float value)
{
	for (int i = 0; i < rows; i++) {
		float *row = x + (size_t)i * ld;
		if (value == 0.0f) {
			memset(row, 0, sizeof(float) * (size_t)cols);
			continue;
		}
		for (int j = 0; j < cols; j++)
			row[j] = value;
	}
}

static void fill_cpu_codelet(void *buffers[], void *cl_arg)
{
	const float *value = cl_arg;
	fill_cpu(lspo_mat_ptr(buffers[0]), lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]),
	         lspo_mat_ld(buffers[0]), *value);
}

LSPO_PERFMODEL(fill_model, "lspo_fill");

static void fill_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(fill_cpu_codelet, &cl_fill, b, a);
}

struct starpu_codelet cl_fill = {
	.cpu_funcs = { fill_cpu_codelet_any },
	.cpu_funcs_name = { "fill_cpu_codelet_any" },
	LSPO_CUDA_FUNC(fill_cuda)
	.nbuffers = 1,
	.modes = { STARPU_W },
	.model = &fill_model,
	.name = "fill",
	.color = LSPO_COLOR_COMPUTE,
};

int lspo_fill_submit(starpu_data_handle_t x, float value, int priority, const char *name)
{
	float *arg = malloc(sizeof(*arg));
	if (!arg)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	*arg = value;
	LSPO_STARPU(starpu_task_insert(&cl_fill, STARPU_W, x, STARPU_CL_ARGS, arg, sizeof(*arg),
	                               STARPU_PRIORITY, priority, STARPU_NAME, name, 0));
	return LSPO_OK;
}
