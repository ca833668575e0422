/*
 * gelu.c - GELU with the tanh approximation (HF "gelu_new", GPT-2's MLP):
 * CPU kernels, codelets and submit helpers.  The CUDA kernels are in gelu.cu.
 *
 * tanh(u) is computed as 1 - 2 / (exp(2u) + 1) with the inlined lspo_vexpf,
 * so both loops vectorise (libm's tanhf is a call per element); the absolute
 * error of tanh stays below ~1e-7, which keeps gelu's relative error ~1e-7
 * where 1 + tanh is not small and its absolute error ~1e-7 |x| elsewhere.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")  /* vectorises lspo_vexpf's clamps: see gpt2_ops_util.h */
#endif

#include "internal.h"
#include "bf16.h"
#include "gelu.h"
#include "gpt2_ops_util.h"

#define GELU_SCALE 0.7978845608028654f  /* sqrt(2 / pi) */
#define GELU_CUBE 0.044715f

static inline float tanh_inl(float u)
{
	return 1.0f - 2.0f / (lspo_vexpf(2.0f * u) + 1.0f);
}

static inline float gelu1(float x)
{
	float t = tanh_inl(GELU_SCALE * (x + GELU_CUBE * x * x * x));
	return 0.5f * x * (1.0f + t);
}

/* gelu'(x) = (1 + t) / 2 + x (1 - t^2) s (1 + 3 a x^2) / 2, t = tanh(s (x + a x^3)). */
static inline float dgelu1(float x)
{
	float t = tanh_inl(GELU_SCALE * (x + GELU_CUBE * x * x * x));
	float dt = GELU_SCALE * (1.0f + 3.0f * GELU_CUBE * x * x);
	return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dt;
}

void gelu_forward_cpu(float *out, const float *inp, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++)
			out[j] = gelu1(inp[j]);
	}
	for (; i < n; i++)
		out[i] = gelu1(inp[i]);
}

void gelu_backward_cpu(float *dinp, const float *inp, const float *dout, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++)
			dinp[j] = dgelu1(inp[j]) * dout[j];
	}
	for (; i < n; i++)
		dinp[i] = dgelu1(inp[i]) * dout[i];
}

static size_t numel(void *buf)
{
	return (size_t)lspo_mat_rows(buf) * (size_t)lspo_mat_cols(buf);
}

/* buffers: inp, out. */
static void gelu_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	gelu_forward_cpu(lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[0]), numel(buffers[0]));
}

/* buffers: inp, dout, dinp. */
static void gelu_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	gelu_backward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]),
	                  numel(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols). */
LSPO_PERFMODEL(gelu_fwd_model, "lspo_gelu_fwd");
LSPO_PERFMODEL(gelu_bwd_model, "lspo_gelu_bwd");

static void gelu_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(gelu_fwd_cpu_codelet, &cl_gelu_fwd, b, a);
}

struct starpu_codelet cl_gelu_fwd = {
	.cpu_funcs = { gelu_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "gelu_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(gelu_forward_cuda)
	.nbuffers = 2,
	.modes = { STARPU_R, STARPU_W },
	.model = &gelu_fwd_model,
	.name = "gelu_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void gelu_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(gelu_bwd_cpu_codelet, &cl_gelu_bwd, b, a);
}

struct starpu_codelet cl_gelu_bwd = {
	.cpu_funcs = { gelu_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "gelu_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(gelu_backward_cuda)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_W },
	.model = &gelu_bwd_model,
	.name = "gelu_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

static int same_shape(starpu_data_handle_t a, starpu_data_handle_t b)
{
	return lspo_handle_rows(a) == lspo_handle_rows(b) && lspo_handle_cols(a) == lspo_handle_cols(b)
	       && lspo_handle_contiguous(a) && lspo_handle_contiguous(b);
}

int lspo_gelu_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t out,
                         int priority, const char *name)
{
	if (!same_shape(inp, out))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d and out %dx%d must be contiguous and of one shape", name,
		          lspo_handle_rows(inp), lspo_handle_cols(inp), lspo_handle_rows(out),
		          lspo_handle_cols(out));
	double n = (double)lspo_handle_rows(inp) * lspo_handle_cols(inp);
	LSPO_STARPU(starpu_task_insert(&cl_gelu_fwd,
		STARPU_R, inp, STARPU_W, out,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 20.0 * n, 0));
	return LSPO_OK;
}

int lspo_gelu_bwd_submit(starpu_data_handle_t inp, starpu_data_handle_t dout,
                         starpu_data_handle_t dinp, int priority, const char *name)
{
	if (!same_shape(inp, dout) || !same_shape(inp, dinp))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d, dout %dx%d and dinp %dx%d must be contiguous and of "
		          "one shape", name, lspo_handle_rows(inp), lspo_handle_cols(inp),
		          lspo_handle_rows(dout), lspo_handle_cols(dout), lspo_handle_rows(dinp),
		          lspo_handle_cols(dinp));
	double n = (double)lspo_handle_rows(inp) * lspo_handle_cols(inp);
	LSPO_STARPU(starpu_task_insert(&cl_gelu_bwd,
		STARPU_R, inp, STARPU_R, dout, STARPU_W, dinp,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 30.0 * n, 0));
	return LSPO_OK;
}
