/*
 * xent.c - fused softmax + cross-entropy over the vocabulary, forward only
 * (evaluation) or forward with the logits overwritten by their gradient
 * (training): CPU kernel, codelets and submit helpers.  The CUDA kernels are
 * in xent.cu.
 *
 * Per row: the max m, then s = sum exp(x - m) (exp inlined, summed in double
 * over 8 lanes in a fixed order), loss = m + log s - x[target]; the gradient
 * is (exp(x - m) / s - onehot) * dloss, with exp(x - m) stored in the first
 * pass and scaled in the second, so each element is exponentiated once.
 * A negative target is ignored (PyTorch's ignore_index): its loss and its
 * gradient row are 0; the caller scales dloss by the count of the others.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")  /* vectorises lspo_vexpf's clamps: see gpt2_ops_util.h */
#endif

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "bf16.h"
#include "xent.h"
#include "gpt2_ops_util.h"

#define LANES 8

void xent_cpu(float *losses, float *dlogits, const float *logits, const int32_t *targets,
              int N, int V, float dloss)
{
	for (int i = 0; i < N; i++) {
		const float *x = logits + (size_t)i * V;
		int t = targets[i];
		if (t < 0) {   /* an ignored target (a masked prompt token): no loss, no gradient */
			losses[i] = 0.0f;
			if (dlogits)
				memset(dlogits + (size_t)i * V, 0, (size_t)V * sizeof(float));
			continue;
		}
		float mx[LANES];
		for (int l = 0; l < LANES; l++)
			mx[l] = x[0];
		int j = 0;
		for (; j + LANES <= V; j += LANES)
			for (int l = 0; l < LANES; l++)
				mx[l] = x[j + l] > mx[l] ? x[j + l] : mx[l];
		for (; j < V; j++)
			mx[0] = x[j] > mx[0] ? x[j] : mx[0];
		float m = mx[0];
		for (int l = 1; l < LANES; l++)
			m = mx[l] > m ? mx[l] : m;
		float xt = x[t];  /* before an in-place gradient overwrites it */

		double acc[LANES] = { 0 };
		if (dlogits) {
			float *d = dlogits + (size_t)i * V;
			for (j = 0; j + LANES <= V; j += LANES)
				LSPO_IVDEP
				for (int l = 0; l < LANES; l++) {
					float e = lspo_vexpf(x[j + l] - m);
					d[j + l] = e;
					acc[l] += e;
				}
			for (; j < V; j++) {
				float e = lspo_vexpf(x[j] - m);
				d[j] = e;
				acc[0] += e;
			}
		} else {
			for (j = 0; j + LANES <= V; j += LANES)
				for (int l = 0; l < LANES; l++)
					acc[l] += lspo_vexpf(x[j + l] - m);
			for (; j < V; j++)
				acc[0] += lspo_vexpf(x[j] - m);
		}
		double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
		losses[i] = (float)((double)m + log(s) - (double)xt);
		if (dlogits) {
			float *d = dlogits + (size_t)i * V;
			float scale = (float)(dloss / s);
			for (j = 0; j + LANES <= V; j += LANES)
				for (int l = 0; l < LANES; l++)
					d[j + l] *= scale;
			for (; j < V; j++)
				d[j] *= scale;
			d[t] -= dloss;
		}
	}
}

/* buffers: logits (N, V) R, targets (B, T) int32, losses (1, N). */
static void xent_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	xent_cpu(lspo_mat_ptr(buffers[2]), NULL, lspo_mat_ptr(buffers[0]),
	         (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]),
	         lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]), 0.0f);
}

/* buffers: logits (N, V) RW -> dlogits, targets (B, T) int32, losses (1, N). */
static void xent_fwdbwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_xent_args *args = cl_arg;
	float *logits = lspo_mat_ptr(buffers[0]);
	xent_cpu(lspo_mat_ptr(buffers[2]), logits, logits,
	         (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]),
	         lspo_mat_rows(buffers[0]), lspo_mat_cols(buffers[0]), args->dloss);
}

/* The default footprint hashes every buffer's (rows, cols), i.e. N, B, T and V. */
LSPO_PERFMODEL(xent_fwd_model, "lspo_xent_fwd");
LSPO_PERFMODEL(xent_fwdbwd_model, "lspo_xent_fwdbwd");

static void xent_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(xent_fwd_cpu_codelet, &cl_xent_fwd, b, a);
}

struct starpu_codelet cl_xent_fwd = {
	.cpu_funcs = { xent_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "xent_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(xent_forward_cuda)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_R, STARPU_W },
	.model = &xent_fwd_model,
	.name = "xent_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void xent_fwdbwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(xent_fwdbwd_cpu_codelet, &cl_xent_fwdbwd, b, a);
}

struct starpu_codelet cl_xent_fwdbwd = {
	.cpu_funcs = { xent_fwdbwd_cpu_codelet_any },
	.cpu_funcs_name = { "xent_fwdbwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(xent_backward_cuda)
	.nbuffers = 3,
	.modes = { STARPU_RW, STARPU_R, STARPU_W },
	.model = &xent_fwdbwd_model,
	.name = "xent_fwdbwd",
	.color = LSPO_COLOR_COMPUTE,
};

/* logits (N, V) with N = B*T of the int32 targets (B, T); losses (1, N). */
static int xent_check(starpu_data_handle_t logits, starpu_data_handle_t targets,
                      starpu_data_handle_t losses, const char *name)
{
	int N = lspo_handle_rows(logits), V = lspo_handle_cols(logits);
	int B = lspo_handle_rows(targets), T = lspo_handle_cols(targets);
	if (starpu_matrix_get_elemsize(targets) != sizeof(int32_t))
		LSPO_FAIL(LSPO_EINVAL, "%s: targets must be int32 (elemsize %zu)", name,
		          starpu_matrix_get_elemsize(targets));
	if (N < 1 || V < 1 || N != B * T || lspo_handle_rows(losses) != 1 || lspo_handle_cols(losses) != N)
		LSPO_FAIL(LSPO_EINVAL, "%s: logits %dx%d need targets of B*T = %d tokens (got %dx%d) "
		          "and losses 1x%d (got %dx%d)", name, N, V, N, B, T, N,
		          lspo_handle_rows(losses), lspo_handle_cols(losses));
	if (!lspo_handle_contiguous(logits) || !lspo_handle_contiguous(targets))
		LSPO_FAIL(LSPO_EINVAL, "%s: handles must be contiguous (ld == cols)", name);
	return LSPO_OK;
}

int lspo_xent_fwd_submit(starpu_data_handle_t logits, starpu_data_handle_t targets,
                         starpu_data_handle_t losses, int priority, const char *name)
{
	int rc = xent_check(logits, targets, losses, name);
	if (rc)
		return rc;
	double nv = (double)lspo_handle_rows(logits) * lspo_handle_cols(logits);
	LSPO_STARPU(starpu_task_insert(&cl_xent_fwd,
		STARPU_R, logits, STARPU_R, targets, STARPU_W, losses,
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 4.0 * nv, 0));
	return LSPO_OK;
}

int lspo_xent_fwdbwd_submit(starpu_data_handle_t logits, starpu_data_handle_t targets,
                            starpu_data_handle_t losses, float dloss,
                            int priority, const char *name)
{
	int rc = xent_check(logits, targets, losses, name);
	if (rc)
		return rc;
	struct lspo_xent_args *args = malloc(sizeof(*args));
	if (!args)
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	args->dloss = dloss;
	double nv = (double)lspo_handle_rows(logits) * lspo_handle_cols(logits);
	LSPO_STARPU(starpu_task_insert(&cl_xent_fwdbwd,
		STARPU_RW, logits, STARPU_R, targets, STARPU_W, losses,
		STARPU_CL_ARGS, args, sizeof(*args),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, 6.0 * nv, 0));
	return LSPO_OK;
}
