/*
 * layernorm.c - layer normalisation over the last dimension (GPT-2's ln_1,
 * ln_2, ln_f): CPU kernels, codelets and submit helpers.  The CUDA kernels
 * are in layernorm.cu.
 *
 * Row sums use 8 partial sums combined in a fixed order: the loops vectorise
 * at -O2 and the result is the same on every run and every worker.
 */
#include <math.h>

#include "internal.h"
#include "bf16.h"
#include "layernorm.h"
#include "gpt2_ops_util.h"

#define LANES 8

static inline float lanes_total(const float *a)
{
	return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int N, int C)
{
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C;
		float *o = out + (size_t)i * C;
		float acc[LANES] = { 0 };
		int c = 0;
		for (; c + LANES <= C; c += LANES)
			for (int l = 0; l < LANES; l++)
				acc[l] += x[c + l];
		for (; c < C; c++)
			acc[c % LANES] += x[c];
		float m = lanes_total(acc) / (float)C;
		float var[LANES] = { 0 };
		for (c = 0; c + LANES <= C; c += LANES)
			for (int l = 0; l < LANES; l++) {
				float d = x[c + l] - m;
				var[l] += d * d;
			}
		for (; c < C; c++)
			var[c % LANES] += (x[c] - m) * (x[c] - m);
		float s = 1.0f / sqrtf(lanes_total(var) / (float)C + LSPO_LAYERNORM_EPS);
		for (c = 0; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++)
				o[c + l] = (x[c + l] - m) * s * w[c + l] + b[c + l];
		}
		for (; c < C; c++)
			o[c] = (x[c] - m) * s * w[c] + b[c];
		mean[i] = m;
		rstd[i] = s;
	}
}

/* With n = (x - mean) rstd and g = w * dout, per row:
 *   dinp += rstd (g - mean(g) - n mean(g n)),  dw += n dout,  db += dout,
 * rows in increasing order. */
void layernorm_backward_cpu(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean,
                            const float *rstd, int N, int C)
{
	for (int i = 0; i < N; i++) {
		const float *x = inp + (size_t)i * C, *d = dout + (size_t)i * C;
		float *di = dinp + (size_t)i * C;
		float m = mean[i], s = rstd[i];
		float sg[LANES] = { 0 }, sgn[LANES] = { 0 };
		int c = 0;
		for (; c + LANES <= C; c += LANES)
			for (int l = 0; l < LANES; l++) {
				float g = w[c + l] * d[c + l];
				sg[l] += g;
				sgn[l] += g * (x[c + l] - m) * s;
			}
		for (; c < C; c++) {
			float g = w[c] * d[c];
			sg[c % LANES] += g;
			sgn[c % LANES] += g * (x[c] - m) * s;
		}
		float g_mean = lanes_total(sg) / (float)C, gn_mean = lanes_total(sgn) / (float)C;
		for (c = 0; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++) {
				float n = (x[c + l] - m) * s;
				db[c + l] += d[c + l];
				dw[c + l] += n * d[c + l];
				di[c + l] += s * (w[c + l] * d[c + l] - g_mean - n * gn_mean);
			}
		}
		for (; c < C; c++) {
			float n = (x[c] - m) * s;
			db[c] += d[c];
			dw[c] += n * d[c];
			di[c] += s * (w[c] * d[c] - g_mean - n * gn_mean);
		}
	}
}

/* buffers: inp (N, C), w (1, C), b (1, C), out (N, C), mean (1, N), rstd (1, N). */
static void layernorm_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	layernorm_forward_cpu(lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[5]),
	                      lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]),
	                      lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]));
}

/* buffers: dout, inp (N, C), w (1, C), mean, rstd (1, N), dinp (N, C), dw, db (1, C). */
static void layernorm_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	layernorm_backward_cpu(lspo_mat_ptr(buffers[5]), lspo_mat_ptr(buffers[6]), lspo_mat_ptr(buffers[7]),
	                       lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]),
	                       lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]),
	                       lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols), i.e. N and C. */
LSPO_PERFMODEL(layernorm_fwd_model, "lspo_layernorm_fwd");
LSPO_PERFMODEL(layernorm_bwd_model, "lspo_layernorm_bwd");

static void layernorm_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(layernorm_fwd_cpu_codelet, &cl_layernorm_fwd, b, a);
}

struct starpu_codelet cl_layernorm_fwd = {
	.cpu_funcs = { layernorm_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "layernorm_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(layernorm_forward_cuda)
	.nbuffers = 6,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_W, STARPU_W, STARPU_W },
	.model = &layernorm_fwd_model,
	.name = "layernorm_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void layernorm_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(layernorm_bwd_cpu_codelet, &cl_layernorm_bwd, b, a);
}

struct starpu_codelet cl_layernorm_bwd = {
	.cpu_funcs = { layernorm_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "layernorm_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(layernorm_backward_cuda)
	.nbuffers = 8,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_RW, STARPU_RW, STARPU_RW },
	.model = &layernorm_bwd_model,
	.name = "layernorm_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

static int is_shape(starpu_data_handle_t h, int rows, int cols)
{
	return lspo_handle_rows(h) == rows && lspo_handle_cols(h) == cols && lspo_handle_contiguous(h);
}

int lspo_layernorm_fwd_submit(starpu_data_handle_t inp, starpu_data_handle_t w,
                              starpu_data_handle_t b, starpu_data_handle_t out,
                              starpu_data_handle_t mean, starpu_data_handle_t rstd,
                              int priority, const char *name)
{
	int N = lspo_handle_rows(inp), C = lspo_handle_cols(inp);
	if (N < 1 || C < 1 || !is_shape(inp, N, C) || !is_shape(out, N, C) || !is_shape(w, 1, C)
	    || !is_shape(b, 1, C) || !is_shape(mean, 1, N) || !is_shape(rstd, 1, N))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d needs contiguous out %dx%d, w and b 1x%d, mean and rstd "
		          "1x%d (got out %dx%d, w 1x%d, b 1x%d, mean 1x%d, rstd 1x%d)", name, N, C, N, C, C, N,
		          lspo_handle_rows(out), lspo_handle_cols(out), lspo_handle_cols(w),
		          lspo_handle_cols(b), lspo_handle_cols(mean), lspo_handle_cols(rstd));
	LSPO_STARPU(starpu_task_insert(&cl_layernorm_fwd,
		STARPU_R, inp, STARPU_R, w, STARPU_R, b, STARPU_W, out, STARPU_W, mean, STARPU_W, rstd,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 7.0 * N * C, 0));
	return LSPO_OK;
}

int lspo_layernorm_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t inp,
                              starpu_data_handle_t w, starpu_data_handle_t mean,
                              starpu_data_handle_t rstd, starpu_data_handle_t dinp,
                              starpu_data_handle_t dw, starpu_data_handle_t db,
                              int priority, const char *name)
{
	int N = lspo_handle_rows(inp), C = lspo_handle_cols(inp);
	if (N < 1 || C < 1 || !is_shape(inp, N, C) || !is_shape(dout, N, C) || !is_shape(dinp, N, C)
	    || !is_shape(w, 1, C) || !is_shape(dw, 1, C) || !is_shape(db, 1, C) || !is_shape(mean, 1, N)
	    || !is_shape(rstd, 1, N))
		LSPO_FAIL(LSPO_EINVAL, "%s: inp %dx%d needs contiguous dout and dinp %dx%d, w, dw and db 1x%d, "
		          "mean and rstd 1x%d", name, N, C, N, C, C, N);
	LSPO_STARPU(starpu_task_insert(&cl_layernorm_bwd,
		STARPU_R, dout, STARPU_R, inp, STARPU_R, w, STARPU_R, mean, STARPU_R, rstd,
		STARPU_RW, dinp, STARPU_RW, dw, STARPU_RW, db,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 14.0 * N * C, 0));
	return LSPO_OK;
}
