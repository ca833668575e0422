/*
 * encoder.c - GPT-2's input embedding, out = wte[token] + wpe[position], and
 * its backward scatter-add: CPU kernels, codelets and submit helpers.  The
 * CUDA kernels are in encoder.cu.
 *
 * The sizes travel in the buffers: N = B*T and T are the token handle's
 * rows*cols and cols, C the cols of out, so no task argument is needed.
 */
#include "internal.h"
#include "bf16.h"
#include "encoder.h"
#include "gpt2_ops_util.h"

void encoder_forward_cpu(float *out, const int32_t *tok, const float *wte, const float *wpe,
                         int N, int T, int C)
{
	for (int i = 0; i < N; i++) {
		float *o = out + (size_t)i * C;
		const float *e = wte + (size_t)tok[i] * C, *p = wpe + (size_t)(i % T) * C;
		int c = 0;
		for (; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++)
				o[c + l] = e[c + l] + p[c + l];
		}
		for (; c < C; c++)
			o[c] = e[c] + p[c];
	}
}

/* Token order, one row at a time: the same sums in the same order on every run. */
void encoder_backward_cpu(float *dwte, float *dwpe, const float *dout, const int32_t *tok,
                          int N, int T, int C)
{
	for (int i = 0; i < N; i++) {
		const float *d = dout + (size_t)i * C;
		float *e = dwte + (size_t)tok[i] * C, *p = dwpe + (size_t)(i % T) * C;
		int c = 0;
		for (; c + LSPO_BLOCK <= C; c += LSPO_BLOCK) {
			LSPO_IVDEP
			for (int l = 0; l < LSPO_BLOCK; l++) {
				e[c + l] += d[c + l];
				p[c + l] += d[c + l];
			}
		}
		for (; c < C; c++) {
			e[c] += d[c];
			p[c] += d[c];
		}
	}
}

/* buffers: tok (B, T) int32, wte (V, C), wpe (maxT, C), out (B*T, C). */
static void encoder_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[0];
	encoder_forward_cpu(lspo_mat_ptr(buffers[3]), (const int32_t *)STARPU_MATRIX_GET_PTR(tok),
	                    lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]),
	                    lspo_mat_rows(tok) * lspo_mat_cols(tok), lspo_mat_cols(tok),
	                    lspo_mat_cols(buffers[3]));
}

/* buffers: dout (B*T, C), tok (B, T) int32, dwte (V, C) RW, dwpe (maxT, C) RW. */
static void encoder_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[1];
	encoder_backward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[0]),
	                     (const int32_t *)STARPU_MATRIX_GET_PTR(tok),
	                     lspo_mat_rows(tok) * lspo_mat_cols(tok), lspo_mat_cols(tok),
	                     lspo_mat_cols(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols): N, T, V, maxT, C. */
LSPO_PERFMODEL(encoder_fwd_model, "lspo_encoder_fwd");
LSPO_PERFMODEL(encoder_bwd_model, "lspo_encoder_bwd");

static void encoder_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(encoder_fwd_cpu_codelet, &cl_encoder_fwd, b, a);
}

struct starpu_codelet cl_encoder_fwd = {
	.cpu_funcs = { encoder_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "encoder_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(encoder_forward_cuda_any)
	.nbuffers = 4,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_W },
	.model = &encoder_fwd_model,
	.name = "encoder_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void encoder_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(encoder_bwd_cpu_codelet, &cl_encoder_bwd, b, a);
}

struct starpu_codelet cl_encoder_bwd = {
	.cpu_funcs = { encoder_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "encoder_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(encoder_backward_cuda_any)
	.nbuffers = 4,
	.modes = { STARPU_R, STARPU_R, STARPU_RW, STARPU_RW },
	.model = &encoder_bwd_model,
	.name = "encoder_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

/* Shared shape checks: tok int32 (B, T); wte (V, C); wpe (maxT, C) with
 * T <= maxT; x (B*T, C); every handle contiguous. */
static int encoder_check(starpu_data_handle_t tok, starpu_data_handle_t wte, starpu_data_handle_t wpe,
                         starpu_data_handle_t x, const char *name)
{
	int B = lspo_handle_rows(tok), T = lspo_handle_cols(tok), C = lspo_handle_cols(x);
	if (starpu_matrix_get_elemsize(tok) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: tokens must be int32 (elemsize %zu)", name,
		          starpu_matrix_get_elemsize(tok));
	if (B < 1 || T < 1 || C < 1 || lspo_handle_rows(wte) < 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: empty tensor (B %d, T %d, C %d, V %d)", name, B, T, C,
		          lspo_handle_rows(wte));
	if (lspo_handle_rows(x) != B * T)
		LSPO_FAIL(LSPO_EINVAL, "%s: activations have %d rows, tokens are %dx%d", name,
		          lspo_handle_rows(x), B, T);
	if (lspo_handle_cols(wte) != C || lspo_handle_cols(wpe) != C)
		LSPO_FAIL(LSPO_EINVAL, "%s: wte has %d cols, wpe %d, activations %d", name,
		          lspo_handle_cols(wte), lspo_handle_cols(wpe), C);
	if (T > lspo_handle_rows(wpe))
		LSPO_FAIL(LSPO_EINVAL, "%s: sequence length %d exceeds the %d positions of wpe", name, T,
		          lspo_handle_rows(wpe));
	if (!lspo_handle_contiguous(tok) || !lspo_handle_contiguous(wte) || !lspo_handle_contiguous(wpe)
	    || !lspo_handle_contiguous(x))
		LSPO_FAIL(LSPO_EINVAL, "%s: handles must be contiguous (ld == cols)", name);
	return LSPO_OK;
}

int lspo_encoder_fwd_submit(starpu_data_handle_t tok, starpu_data_handle_t wte,
                            starpu_data_handle_t wpe, starpu_data_handle_t out,
                            int priority, const char *name)
{
	int rc = encoder_check(tok, wte, wpe, out, name);
	if (rc)
		return rc;
	double nc = (double)lspo_handle_rows(out) * lspo_handle_cols(out);
	LSPO_STARPU(starpu_task_insert(&cl_encoder_fwd,
		STARPU_R, tok, STARPU_R, wte, STARPU_R, wpe, STARPU_W, out,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, nc, 0));
	return LSPO_OK;
}

int lspo_encoder_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t tok,
                            starpu_data_handle_t dwte, starpu_data_handle_t dwpe,
                            int priority, const char *name)
{
	int rc = encoder_check(tok, dwte, dwpe, dout, name);
	if (rc)
		return rc;
	double nc = (double)lspo_handle_rows(dout) * lspo_handle_cols(dout);
	LSPO_STARPU(starpu_task_insert(&cl_encoder_bwd,
		STARPU_R, dout, STARPU_R, tok, STARPU_RW, dwte, STARPU_RW, dwpe,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 2.0 * nc, 0));
	return LSPO_OK;
}
