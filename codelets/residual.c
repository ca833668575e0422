/*
 * residual.c - element-wise sums of the residual stream: out = a + b
 * (forward) and y += x (gradient accumulation): CPU kernels, codelets and
 * submit helpers.  The CUDA kernels are in residual.cu.
 */
#include "internal.h"
#include "bf16.h"
#include "residual.h"
#include "gpt2_ops_util.h"

void residual_forward_cpu(float *out, const float *a, const float *b, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++)
			out[j] = a[j] + b[j];
	}
	for (; i < n; i++)
		out[i] = a[i] + b[i];
}

void accumulate_cpu(float *y, const float *x, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++)
			y[j] += x[j];
	}
	for (; i < n; i++)
		y[i] += x[i];
}

static size_t numel(void *buf)
{
	return (size_t)lspo_mat_rows(buf) * (size_t)lspo_mat_cols(buf);
}

/* buffers: a, b, out. */
static void residual_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	residual_forward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]),
	                     numel(buffers[0]));
}

/* buffers: x, y (RW). */
static void accumulate_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	accumulate_cpu(lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[0]), numel(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols). */
LSPO_PERFMODEL(residual_fwd_model, "lspo_residual_fwd");
LSPO_PERFMODEL(accumulate_model, "lspo_accumulate");

static void residual_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(residual_fwd_cpu_codelet, &cl_residual_fwd, b, a);
}

struct starpu_codelet cl_residual_fwd = {
	.cpu_funcs = { residual_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "residual_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(residual_forward_cuda)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_W },
	.model = &residual_fwd_model,
	.name = "residual_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void accumulate_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(accumulate_cpu_codelet, &cl_accumulate, b, a);
}

struct starpu_codelet cl_accumulate = {
	.cpu_funcs = { accumulate_cpu_codelet_any },
	.cpu_funcs_name = { "accumulate_cpu_codelet_any" },
	LSPO_CUDA_FUNC(accumulate_cuda)
	.nbuffers = 2,
	.modes = { STARPU_R, STARPU_RW },
	.model = &accumulate_model,
	.name = "accumulate",
	.color = LSPO_COLOR_COMPUTE,
};

static int same_shape(starpu_data_handle_t a, starpu_data_handle_t b)
{
	return lspo_handle_rows(a) == lspo_handle_rows(b) && lspo_handle_cols(a) == lspo_handle_cols(b)
	       && lspo_handle_contiguous(a) && lspo_handle_contiguous(b);
}

int lspo_residual_fwd_submit(starpu_data_handle_t a, starpu_data_handle_t b,
                             starpu_data_handle_t out, int priority, const char *name)
{
	if (!same_shape(a, b) || !same_shape(a, out))
		LSPO_FAIL(LSPO_EINVAL, "%s: a %dx%d, b %dx%d and out %dx%d must be contiguous and of one shape",
		          name, lspo_handle_rows(a), lspo_handle_cols(a), lspo_handle_rows(b),
		          lspo_handle_cols(b), lspo_handle_rows(out), lspo_handle_cols(out));
	LSPO_STARPU(starpu_task_insert(&cl_residual_fwd,
		STARPU_R, a, STARPU_R, b, STARPU_W, out,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)lspo_handle_rows(a) * lspo_handle_cols(a), 0));
	return LSPO_OK;
}

int lspo_accumulate_submit(starpu_data_handle_t x, starpu_data_handle_t y,
                           int priority, const char *name)
{
	if (!same_shape(x, y))
		LSPO_FAIL(LSPO_EINVAL, "%s: x %dx%d and y %dx%d must be contiguous and of one shape", name,
		          lspo_handle_rows(x), lspo_handle_cols(x), lspo_handle_rows(y), lspo_handle_cols(y));
	LSPO_STARPU(starpu_task_insert(&cl_accumulate,
		STARPU_R, x, STARPU_RW, y,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)lspo_handle_rows(x) * lspo_handle_cols(x), 0));
	return LSPO_OK;
}
