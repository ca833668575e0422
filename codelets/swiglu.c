/*
 * swiglu.c - SwiGLU, silu(gate) * up (Llama's MLP between gate_proj/up_proj
 * and down_proj): CPU kernels, codelets and submit helpers.  The CUDA
 * kernels are in swiglu.cu.
 *
 * sigmoid(g) = 1 / (1 + exp(-g)) with the inlined lspo_vexpf (about 1 ulp),
 * so the loops vectorise; its clamp of exp(-g) to [1e-38, 2e38] gives
 * sigmoid exactly 1 above g = 87 and ~5e-39 g below g = -88, where the exact
 * values differ by less than a float's resolution or underflow anyway.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")  /* vectorises lspo_vexpf's clamps: see gpt2_ops_util.h */
#endif

#include "internal.h"
#include "bf16.h"
#include "swiglu.h"
#include "gpt2_ops_util.h"

static inline float sigmoid1(float g)
{
	return 1.0f / (1.0f + lspo_vexpf(-g));
}

void swiglu_forward_cpu(float *out, const float *gate, const float *up, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++)
			out[j] = gate[j] * sigmoid1(gate[j]) * up[j];
	}
	for (; i < n; i++)
		out[i] = gate[i] * sigmoid1(gate[i]) * up[i];
}

void swiglu_backward_cpu(float *dgate, float *dup, const float *gate, const float *up,
                         const float *dout, size_t n)
{
	size_t i = 0;
	for (; i + LSPO_BLOCK <= n; i += LSPO_BLOCK) {
		LSPO_IVDEP
		for (size_t j = i; j < i + LSPO_BLOCK; j++) {
			float g = gate[j], s = sigmoid1(g), d = dout[j];
			dgate[j] = d * up[j] * (s * (1.0f + g * (1.0f - s)));
			dup[j] = d * (g * s);
		}
	}
	for (; i < n; i++) {
		float g = gate[i], s = sigmoid1(g), d = dout[i];
		dgate[i] = d * up[i] * (s * (1.0f + g * (1.0f - s)));
		dup[i] = d * (g * s);
	}
}

static size_t numel(void *buf)
{
	return (size_t)lspo_mat_rows(buf) * (size_t)lspo_mat_cols(buf);
}

/* buffers: gate, up, out. */
static void swiglu_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	swiglu_forward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]),
	                   numel(buffers[0]));
}

/* buffers: gate, up, dout, dgate, dup. */
static void swiglu_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	swiglu_backward_cpu(lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[0]),
	                    lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), numel(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols). */
LSPO_PERFMODEL(swiglu_fwd_model, "lspo_swiglu_fwd");
LSPO_PERFMODEL(swiglu_bwd_model, "lspo_swiglu_bwd");

static void swiglu_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(swiglu_fwd_cpu_codelet, &cl_swiglu_fwd, b, a);
}

struct starpu_codelet cl_swiglu_fwd = {
	.cpu_funcs = { swiglu_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "swiglu_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(swiglu_forward_cuda)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_W },
	.model = &swiglu_fwd_model,
	.name = "swiglu_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void swiglu_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(swiglu_bwd_cpu_codelet, &cl_swiglu_bwd, b, a);
}

struct starpu_codelet cl_swiglu_bwd = {
	.cpu_funcs = { swiglu_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "swiglu_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(swiglu_backward_cuda)
	.nbuffers = 5,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_W, STARPU_W },
	.model = &swiglu_bwd_model,
	.name = "swiglu_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

static int same_shape(starpu_data_handle_t a, starpu_data_handle_t b)
{
	return lspo_handle_rows(a) == lspo_handle_rows(b) && lspo_handle_cols(a) == lspo_handle_cols(b)
	       && lspo_handle_contiguous(a) && lspo_handle_contiguous(b)
	       && lspo_handle_float(a) && lspo_handle_float(b);
}

int lspo_swiglu_fwd_submit(starpu_data_handle_t gate, starpu_data_handle_t up,
                           starpu_data_handle_t out, int prio, const char *name)
{
	if (!same_shape(gate, up) || !same_shape(gate, out))
		LSPO_FAIL(LSPO_EINVAL, "%s: gate %dx%d, up %dx%d and out %dx%d must be contiguous float "
		          "matrices of one shape", name, lspo_handle_rows(gate), lspo_handle_cols(gate),
		          lspo_handle_rows(up), lspo_handle_cols(up), lspo_handle_rows(out),
		          lspo_handle_cols(out));
	double n = (double)lspo_handle_rows(gate) * lspo_handle_cols(gate);
	LSPO_STARPU(starpu_task_insert(&cl_swiglu_fwd,
		STARPU_R, gate, STARPU_R, up, STARPU_W, out,
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, 20.0 * n, 0));
	return LSPO_OK;
}

int lspo_swiglu_bwd_submit(starpu_data_handle_t gate, starpu_data_handle_t up,
                           starpu_data_handle_t dout, starpu_data_handle_t dgate,
                           starpu_data_handle_t dup, int prio, const char *name)
{
	if (!same_shape(gate, up) || !same_shape(gate, dout) || !same_shape(gate, dgate)
	    || !same_shape(gate, dup))
		LSPO_FAIL(LSPO_EINVAL, "%s: gate %dx%d, up %dx%d, dout %dx%d, dgate %dx%d and dup %dx%d must "
		          "be contiguous float matrices of one shape", name,
		          lspo_handle_rows(gate), lspo_handle_cols(gate), lspo_handle_rows(up),
		          lspo_handle_cols(up), lspo_handle_rows(dout), lspo_handle_cols(dout),
		          lspo_handle_rows(dgate), lspo_handle_cols(dgate), lspo_handle_rows(dup),
		          lspo_handle_cols(dup));
	double n = (double)lspo_handle_rows(gate) * lspo_handle_cols(gate);
	LSPO_STARPU(starpu_task_insert(&cl_swiglu_bwd,
		STARPU_R, gate, STARPU_R, up, STARPU_R, dout, STARPU_W, dgate, STARPU_W, dup,
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, 25.0 * n, 0));
	return LSPO_OK;
}
