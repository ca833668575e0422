/*
 * rmsnorm.c - RMS normalisation over the last dimension (Llama's and Qwen2's
 * input_layernorm, post_attention_layernorm and norm): CPU kernels, codelets
 * and submit helpers.  The CUDA kernels are in rmsnorm.cu.
 *
 * As HF's LlamaRMSNorm in fp32: rstd = 1 / sqrt(mean(x^2) + eps), out =
 * w * (x * rstd).  Row sums use 8 partial sums combined in a fixed order: the
 * loops vectorise at -O2 and the result is the same on every run and worker.
 */
#include <math.h>
#include <stdlib.h>

#include "internal.h"
#include "bf16.h"
#include "rmsnorm.h"
#include "gpt2_ops_util.h"

#define LANES 8

static inline float lanes_total(const float *a)
{
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *w, int N, int C,
                         float eps)
{
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		float *o = out + (size_t)i * C;
		float acc[LANES] = { 0 };
		int c = 0;
		for (; c + LANES <= C; c += LANES)
			for (int l = 0; l < LANES; l++)
				acc[l] += x[c + l] * x[c + l];
		for (; c < C; c++)
			acc[c % LANES] += x[c] * x[c];
		float s = 1.0f / sqrtf(lanes_total(acc) / (float)C + eps);
		for (c = 0; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++)
				o[c + l] = w[c + l] * (x[c + l] * s);
		}
		for (; c < C; c++)
			o[c] = w[c] * (x[c] * s);
		rstd[i] = s;
	}
}

/* With n = x rstd and g = w * dout, per row:
 *   dinp += rstd (g - n mean(g n)),  dw += n dout,
 * rows in increasing order. */
void rmsnorm_backward_cpu(float *dinp, float *dw, const float *dout, const float *inp,
                          const float *w, const float *rstd, int N, int C)
{
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
		float *di = dinp + (size_t)i * C;
		float s = rstd[i];
		float sgn[LANES] = { 0 };
		int c = 0;
		for (; c + LANES <= C; c += LANES)
			for (int l = 0; l < LANES; l++)
				sgn[l] += w[c + l] * d[c + l] * (x[c + l] * s);
		for (; c < C; c++)
			sgn[c % LANES] += w[c] * d[c] * (x[c] * s);
		float gn_mean = lanes_total(sgn) / (float)C;
		for (c = 0; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++) {
				float n = x[c + l] * s;
				dw[c + l] += n * d[c + l];
				di[c + l] += s * (w[c + l] * d[c + l] - n * gn_mean);
			}
		}
		for (; c < C; c++) {
			float n = x[c] * s;
			dw[c] += n * d[c];
			di[c] += s * (w[c] * d[c] - n * gn_mean);
		}
	}
}

/* buffers: inp (N, C), w (1, C), out (N, C), rstd (1, N). */
static void rmsnorm_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_rmsnorm_args *a = cl_arg;
	rmsnorm_forward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[0]),
	                    lspo_mat_ptr(buffers[1]), lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]),
	                    a->eps);
}

/* buffers: dout, inp (N, C), w (1, C), rstd (1, N), dinp (N, C), dw (1, C). */
static void rmsnorm_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	rmsnorm_backward_cpu(lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[5]), lspo_mat_ptr(buffers[0]),
	                     lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[3]),
	                     lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols), i.e. N and C. */
LSPO_PERFMODEL(rmsnorm_fwd_model, "lspo_rmsnorm_fwd");
LSPO_PERFMODEL(rmsnorm_bwd_model, "lspo_rmsnorm_bwd");

static void rmsnorm_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(rmsnorm_fwd_cpu_codelet, &cl_rmsnorm_fwd, b, a);
}

struct starpu_codelet cl_rmsnorm_fwd = {
	.cpu_funcs = { rmsnorm_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "rmsnorm_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(rmsnorm_forward_cuda)
	.nbuffers = 4,
	.modes = { STARPU_R, STARPU_R, STARPU_W, STARPU_W },
	.model = &rmsnorm_fwd_model,
	.name = "rmsnorm_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void rmsnorm_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(rmsnorm_bwd_cpu_codelet, &cl_rmsnorm_bwd, b, a);
}

struct starpu_codelet cl_rmsnorm_bwd = {
	.cpu_funcs = { rmsnorm_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "rmsnorm_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(rmsnorm_backward_cuda)
	.nbuffers = 6,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_RW, STARPU_RW },
	.model = &rmsnorm_bwd_model,
	.name = "rmsnorm_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

static int is_shape(starpu_data_handle_t h, int rows, int cols)
{
	return lspo_handle_rows(h) == rows && lspo_handle_cols(h) == cols && lspo_handle_contiguous(h)
	       && lspo_handle_float(h);
}

int lspo_rmsnorm_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t w,
                            starpu_data_handle_t out, starpu_data_handle_t rstd, float eps,
                            int prio, const char *name)
{
	int N = lspo_handle_rows(inp), C = lspo_handle_cols(inp);
	if (N < 1 || C < 1 || !is_shape(inp, N, C) || !is_shape(out, N, C) || !is_shape(w, 1, C)
	    || !is_shape(rstd, 1, N))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d needs contiguous float out %dx%d, w 1x%d, rstd 1x%d "
		          "(got out %dx%d, w %dx%d, rstd %dx%d)", name, N, C, N, C, C, N,
		          lspo_handle_rows(out), lspo_handle_cols(out), lspo_handle_rows(w),
		          lspo_handle_cols(w), lspo_handle_rows(rstd), lspo_handle_cols(rstd));
	if (!(eps > 0.0f) || !isfinite(eps))
		LSPO_FAIL(LSPO_EINVAL, "%s: eps %g must be positive and finite", name, (double)eps);
	struct lspo_rmsnorm_args *a = malloc(sizeof(*a));
	if (!a)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	a->eps = eps;
	LSPO_STARPU(starpu_task_insert(&cl_rmsnorm_fwd,
		STARPU_R, inp, STARPU_R, w, STARPU_W, out, STARPU_W, rstd,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, 4.0 * N * C, 0));
	return LSPO_OK;
}

int lspo_rmsnorm_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t inp,
                            starpu_data_handle_t w, starpu_data_handle_t rstd,
                            starpu_data_handle_t dinp, starpu_data_handle_t dw, int prio,
                            const char *name)
{
	int N = lspo_handle_rows(inp), C = lspo_handle_cols(inp);
	if (N < 1 || C < 1 || !is_shape(inp, N, C) || !is_shape(dout, N, C) || !is_shape(dinp, N, C)
	    || !is_shape(w, 1, C) || !is_shape(dw, 1, C) || !is_shape(rstd, 1, N))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d needs contiguous float dout and dinp %dx%d, w and dw "
		          "1x%d, rstd 1x%d (got dout %dx%d, dinp %dx%d, w %dx%d, dw %dx%d, rstd %dx%d)",
		          name, N, C, N, C, C, N, lspo_handle_rows(dout), lspo_handle_cols(dout),
		          lspo_handle_rows(dinp), lspo_handle_cols(dinp), lspo_handle_rows(w),
		          lspo_handle_cols(w), lspo_handle_rows(dw), lspo_handle_cols(dw),
		          lspo_handle_rows(rstd), lspo_handle_cols(rstd));
	LSPO_STARPU(starpu_task_insert(&cl_rmsnorm_bwd,
		STARPU_R, dout, STARPU_R, inp, STARPU_R, w, STARPU_R, rstd,
		STARPU_RW, dinp, STARPU_RW, dw,
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, 9.0 * N * C, 0));
	return LSPO_OK;
}
