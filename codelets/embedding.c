/*
 * embedding.c - the token embedding of Llama-family models, out = wte[token],
 * and its backward scatter-add: CPU kernels, codelets and submit helpers.
 * The CUDA kernels are in embedding.cu.  (GPT-2 adds position embeddings:
 * encoder.c.)
 */
#include <string.h>

#include "internal.h"
#include "bf16.h"
#include "embedding.h"
#include "gpt2_ops_util.h"

void embedding_forward_cpu(float *out, const int32_t *tok, const float *wte, int N, int C)
{
	for (int i = 0; i < N; i++)
		memcpy(out + (size_t)i * C, wte + (size_t)tok[i] * C, (size_t)C * sizeof(float));
}

/* Token order, one row at a time: the same sums in the same order on every run. */
void embedding_backward_cpu(float *dwte, const float *dout, const int32_t *tok, int N, int C)
{
	for (int i = 0; i < N; i++) {
		const float *d = dout + (size_t)i * C;
		float *e = dwte + (size_t)tok[i] * C;
		LSPO_IVDEP
		for (int c = 0; c < C; c++)
			e[c] += d[c];
	}
}

/* buffers: tok (B, T) int32, wte (V, C), out (B*T, C). */
static void embedding_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[0];
	embedding_forward_cpu(lspo_mat_ptr(buffers[2]), (const int32_t *)STARPU_MATRIX_GET_PTR(tok),
	                      lspo_mat_ptr(buffers[1]), lspo_mat_rows(tok) * lspo_mat_cols(tok),
	                      lspo_mat_cols(buffers[2]));
}

/* buffers: dout (B*T, C), tok (B, T) int32, dwte (V, C) RW. */
static void embedding_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[1];
	embedding_backward_cpu(lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]),
	                       (const int32_t *)STARPU_MATRIX_GET_PTR(tok), lspo_mat_rows(tok) * lspo_mat_cols(tok),
	                       lspo_mat_cols(buffers[0]));
}

/* The default footprint hashes every buffer's (rows, cols): B, T, V, C. */
LSPO_PERFMODEL(embedding_fwd_model, "lspo_embedding_fwd");
LSPO_PERFMODEL(embedding_bwd_model, "lspo_embedding_bwd");

static void embedding_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(embedding_fwd_cpu_codelet, &cl_embedding_fwd, b, a);
}

struct starpu_codelet cl_embedding_fwd = {
	.cpu_funcs = { embedding_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "embedding_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(embedding_forward_cuda_any)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_W },
	.model = &embedding_fwd_model,
	.name = "embedding_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void embedding_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(embedding_bwd_cpu_codelet, &cl_embedding_bwd, b, a);
}

struct starpu_codelet cl_embedding_bwd = {
	.cpu_funcs = { embedding_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "embedding_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(embedding_backward_cuda_any)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_RW },
	.model = &embedding_bwd_model,
	.name = "embedding_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

/* tok int32 (B, T); wte (V, C); x (B*T, C); every handle contiguous. */
static int embedding_check(starpu_data_handle_t tok, starpu_data_handle_t wte, starpu_data_handle_t x,
                           const char *name)
{
	int B = lspo_handle_rows(tok), T = lspo_handle_cols(tok), C = lspo_handle_cols(x);
	if (starpu_matrix_get_elemsize(tok) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: tokens must be int32 (elemsize %zu)", name,
		          starpu_matrix_get_elemsize(tok));
	if (B < 1 || T < 1 || C < 1 || lspo_handle_rows(wte) < 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: empty tensor (B %d, T %d, C %d, V %d)", name, B, T, C,
		          lspo_handle_rows(wte));
	if (lspo_handle_rows(x) != B * T || lspo_handle_cols(wte) != C)
		LSPO_FAIL(LSPO_EINVAL, "%s: activations (%d, %d), tokens %dx%d, embedding (%d, %d)", name,
		          lspo_handle_rows(x), C, B, T, lspo_handle_rows(wte), lspo_handle_cols(wte));
	if (!lspo_handle_contiguous(tok) || !lspo_handle_contiguous(wte) || !lspo_handle_contiguous(x))
		LSPO_FAIL(LSPO_EINVAL, "%s: handles must be contiguous (ld == cols)", name);
	return LSPO_OK;
}

int lspo_embedding_fwd_submit(starpu_data_handle_t tok, starpu_data_handle_t wte, starpu_data_handle_t out,
                              int priority, const char *name)
{
	int rc = embedding_check(tok, wte, out, name);
	if (rc)
		return rc;
	LSPO_STARPU(starpu_task_insert(&cl_embedding_fwd,
		STARPU_R, tok, STARPU_R, wte, STARPU_W, out,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)lspo_handle_rows(out) * lspo_handle_cols(out), 0));
	return LSPO_OK;
}

int lspo_embedding_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t tok, starpu_data_handle_t dwte,
                              int priority, const char *name)
{
	int rc = embedding_check(tok, dwte, dout, name);
	if (rc)
		return rc;
	LSPO_STARPU(starpu_task_insert(&cl_embedding_bwd,
		STARPU_R, dout, STARPU_R, tok, STARPU_RW, dwte,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, (double)lspo_handle_rows(dout) * lspo_handle_cols(dout), 0));
	return LSPO_OK;
}
