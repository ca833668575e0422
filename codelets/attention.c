/*
 * attention.c - causal multi-head softmax attention on HF's fused qkv: CPU
 * kernels (CBLAS per (batch, head)), codelets and submit helpers.  The CUDA
 * kernels are in attention.cu.
 *
 * Per (b, h) with hs = C / NH, Q, K, V are (T, hs) views with row stride 3C
 * into qkv (columns h*hs of the first, second and third C-wide thirds).
 * Forward:  S = Q K^T / sqrt(hs) (causal), P = softmax_rows(S), O = P V,
 *           lse[t] = log sum_t2<=t exp(S[t, t2]).
 * Backward: P = exp(S - lse) (recomputed), D[t] = dO[t] . O[t],
 *           dV = P^T dO, dP = dO V^T, dS = P * (dP - D) / sqrt(hs),
 *           dQ = dS K, dK = dS^T Q.
 * Query rows go in blocks of ATT_ROWS so the masked triangle is mostly
 * skipped.  The scratch (ATT_ROWS, T) matrices are malloc'd per call:
 * nothing is shared between workers, and the summation order (blocks in a
 * fixed order) never depends on the schedule.
 */
#include <math.h>
#include <stdlib.h>

#include <cblas.h>

#include "attention.h"
#include "internal.h"
#include "bf16.h"

/* Query rows are processed in blocks of ATT_ROWS: the rows [r0, r0 + nr)
 * only see the keys [0, r0 + nr), so the products skip most of the masked
 * upper triangle (5/8 of the full T x T work at T = 256). */
#define ATT_ROWS 64

/* Scaled scores of query rows [r0, r0 + nr) against keys [0, nk) into S (ld T). */
static void scores(float *S, int T, const float *Q, const float *K, int r0, int nr, int nk,
                   int hs, int ld)
{
	float scale = 1.0f / sqrtf((float)hs);
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, scale, Q + (size_t)r0 * ld, ld,
	            K, ld, 0.0f, S, T);
}

/* Fills every output of a call that could not get its scratch with NaN, so
 * the failure shows downstream instead of leaving stale data. */
static void fill_nan(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = NAN;
}

void attention_forward_cpu(float *out, float *lse, const float *qkv, int B, int T, int C, int NH)
{
	int hs = C / NH, ld = 3 * C;
	float *S = malloc(sizeof(float) * (size_t)ATT_ROWS * T);
	if (!S) {
		lspo_error("attention forward: cannot allocate %d x %d scores", ATT_ROWS, T);
		fill_nan(out, (size_t)B * T * C);
		fill_nan(lse, (size_t)B * NH * T);
		return;
	}
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			const float *Q = qkv + (size_t)b * T * ld + h * hs;
			const float *K = Q + C, *V = Q + 2 * C;
			float *lse_bh = lse + ((size_t)b * NH + h) * T;
			for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
				int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
				scores(S, T, Q, K, r0, nr, nk, hs, ld);
				for (int i = 0; i < nr; i++) {
					int t = r0 + i;
					float *row = S + (size_t)i * T;
					float mx = row[0];
					for (int j = 1; j <= t; j++)
						mx = row[j] > mx ? row[j] : mx;
					float sum = 0.0f;
					for (int j = 0; j <= t; j++) {
						row[j] = expf(row[j] - mx);
						sum += row[j];
					}
					float inv = 1.0f / sum;
					for (int j = 0; j <= t; j++)
						row[j] *= inv;
					for (int j = t + 1; j < nk; j++)
						row[j] = 0.0f;
					lse_bh[t] = mx + logf(sum);
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk, 1.0f, S, T, V, ld,
				            0.0f, out + ((size_t)b * T + r0) * C + h * hs, C);
			}
		}
	free(S);
}

void attention_backward_cpu(float *dqkv, const float *dout, const float *qkv, const float *out,
                            const float *lse, int B, int T, int C, int NH)
{
	int hs = C / NH, ld = 3 * C;
	float scale = 1.0f / sqrtf((float)hs);
	float *P = malloc(sizeof(float) * 2 * (size_t)ATT_ROWS * T);
	if (!P) {
		lspo_error("attention backward: cannot allocate 2 x %d x %d scratch", ATT_ROWS, T);
		fill_nan(dqkv, (size_t)B * T * ld);
		return;
	}
	float *dP = P + (size_t)ATT_ROWS * T;
	int nblocks = (T + ATT_ROWS - 1) / ATT_ROWS;
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++) {
			size_t q0 = (size_t)b * T * ld + h * hs, o0 = (size_t)b * T * C + h * hs;
			const float *Q = qkv + q0, *K = Q + C, *V = Q + 2 * C;
			const float *dO = dout + o0, *O = out + o0;
			float *dQ = dqkv + q0, *dK = dQ + C, *dV = dQ + 2 * C;
			const float *lse_bh = lse + ((size_t)b * NH + h) * T;
			/* Last block first: it sees every key, so its dK, dV products
			 * write all T rows (beta 0) and the others add to theirs. */
			for (int blk = nblocks - 1; blk >= 0; blk--) {
				int r0 = blk * ATT_ROWS, nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
				float beta = blk == nblocks - 1 ? 0.0f : 1.0f;
				const float *dOb = dO + (size_t)r0 * C;
				scores(P, T, Q, K, r0, nr, nk, hs, ld);
				for (int i = 0; i < nr; i++) {
					int t = r0 + i;
					float *row = P + (size_t)i * T;
					for (int j = 0; j <= t; j++)
						row[j] = expf(row[j] - lse_bh[t]);
					for (int j = t + 1; j < nk; j++)
						row[j] = 0.0f;
				}
				/* dV[0:nk] += P^T dO; dP = dO V[0:nk]^T */
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, 1.0f, P, T, dOb, C,
				            beta, dV, ld);
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hs, 1.0f, dOb, C, V, ld,
				            0.0f, dP, T);
				/* dS = P * (dP - D) * scale, kept in P (zero above the diagonal) */
				for (int i = 0; i < nr; i++) {
					const float *o = O + (size_t)(r0 + i) * C, *dot = dOb + (size_t)i * C;
					float D = 0.0f;
					for (int d = 0; d < hs; d++)
						D += o[d] * dot[d];
					float *row = P + (size_t)i * T;
					const float *dprow = dP + (size_t)i * T;
					for (int j = 0; j <= r0 + i; j++)
						row[j] = row[j] * (dprow[j] - D) * scale;
				}
				/* dQ = dS K[0:nk]; dK[0:nk] += dS^T Q */
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hs, nk, 1.0f, P, T, K, ld,
				            0.0f, dQ + (size_t)r0 * ld, ld);
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nr, 1.0f, P, T,
				            Q + (size_t)r0 * ld, ld, beta, dK, ld);
			}
		}
	free(P);
}

/* ---------------------------------------------------------------------------
 * Codelets: buffers are matrices with nx = cols; the kernels take them
 * contiguous (ld == cols), as lspo registers activations and as StarPU
 * allocates every copy it makes. */

static void attention_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_attention_args *a = cl_arg;
	void *qkv = buffers[0], *out = buffers[1], *lse = buffers[2];
	int T = lspo_mat_rows(out) / a->B;
	attention_forward_cpu(lspo_mat_ptr(out), lspo_mat_ptr(lse), lspo_mat_ptr(qkv), a->B, T,
	                      lspo_mat_cols(out), a->NH);
}

static void attention_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_attention_args *a = cl_arg;
	void *dout = buffers[0], *qkv = buffers[1], *out = buffers[2], *lse = buffers[3];
	void *dqkv = buffers[4];
	int T = lspo_mat_rows(out) / a->B;
	attention_backward_cpu(lspo_mat_ptr(dqkv), lspo_mat_ptr(dout), lspo_mat_ptr(qkv),
	                       lspo_mat_ptr(out), lspo_mat_ptr(lse), a->B, T, lspo_mat_cols(out), a->NH);
}

/* The cost depends on B, T, C and NH (C alone does not fix the head size). */
static uint32_t attention_footprint(struct starpu_task *task)
{
	const struct lspo_attention_args *a = task->cl_arg;
	starpu_data_handle_t qkv = STARPU_TASK_GET_HANDLE(task, task->cl == &cl_attention_fwd ? 0 : 1);
	uint32_t rows = starpu_matrix_get_ny(qkv), C = starpu_matrix_get_nx(qkv) / 3;
	uint32_t h = starpu_hash_crc32c_be((uint32_t)a->B, 0);
	h = starpu_hash_crc32c_be(rows / (uint32_t)a->B, h);
	h = starpu_hash_crc32c_be(C, h);
	return starpu_hash_crc32c_be((uint32_t)a->NH, h);
}

static struct starpu_perfmodel attention_fwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_attention_fwd", .footprint = attention_footprint,
};
static struct starpu_perfmodel attention_bwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_attention_bwd", .footprint = attention_footprint,
};

static void attention_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(attention_fwd_cpu_codelet, &cl_attention_fwd, b, a);
}

struct starpu_codelet cl_attention_fwd = {
	.cpu_funcs = { attention_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "attention_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(attention_forward_cuda_any)
	.nbuffers = 3,
	.modes = { STARPU_R, STARPU_W, STARPU_W },
	.model = &attention_fwd_model,
	.name = "attention_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

static void attention_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(attention_bwd_cpu_codelet, &cl_attention_bwd, b, a);
}

struct starpu_codelet cl_attention_bwd = {
	.cpu_funcs = { attention_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "attention_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(attention_backward_cuda_any)
	.nbuffers = 5,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_W },
	.model = &attention_bwd_model,
	.name = "attention_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

/* Checks qkv (B*T, 3C), out-like (B*T, C) handles and lse (1, B*NH*T). */
static int check_shapes(const char *name, starpu_data_handle_t qkv, starpu_data_handle_t out,
                        starpu_data_handle_t lse, int B, int NH, int *T, int *C)
{
	int rows = lspo_handle_rows(out);
	*C = lspo_handle_cols(out);
	if (B <= 0 || NH <= 0 || rows % B != 0 || *C % NH != 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: B=%d NH=%d do not divide out (%d, %d)", name, B, NH, rows, *C);
	*T = rows / B;
	if (lspo_handle_rows(qkv) != rows || lspo_handle_cols(qkv) != 3 * *C)
		LSPO_FAIL(LSPO_EINVAL, "%s: qkv is (%d, %d), expected (%d, %d)", name,
		          lspo_handle_rows(qkv), lspo_handle_cols(qkv), rows, 3 * *C);
	if (lspo_handle_rows(lse) != 1 || lspo_handle_cols(lse) != B * NH * *T)
		LSPO_FAIL(LSPO_EINVAL, "%s: lse is (%d, %d), expected (1, %d)", name,
		          lspo_handle_rows(lse), lspo_handle_cols(lse), B * NH * *T);
	if (!lspo_handle_float(qkv) || !lspo_handle_float(out) || starpu_matrix_get_elemsize(lse) != sizeof(float))
		LSPO_FAIL(LSPO_EINVAL, "%s: attention works on float32 or bf16 matrices (lse float32)", name);
	return LSPO_OK;
}

static struct lspo_attention_args *make_args(const char *name, int B, int NH)
{
	struct lspo_attention_args *a = malloc(sizeof(*a));
	if (!a)
		lspo_error("%s: cannot allocate task arguments", name);
	else
		*a = (struct lspo_attention_args){ B, NH };
	return a;
}

int lspo_attention_fwd_submit(starpu_data_handle_t qkv, starpu_data_handle_t out,
                              starpu_data_handle_t lse, int B, int NH,
                              int priority, const char *name)
{
	int T, C;
	int rc = check_shapes(name, qkv, out, lse, B, NH, &T, &C);
	if (rc)
		return rc;
	struct lspo_attention_args *a = make_args(name, B, NH);
	if (!a)
		return LSPO_ENOMEM;
	/* two causal (T, T, hs) products: 2 * 2 * T*T*hs / 2 per head */
	double flops = 2.0 * B * (double)T * T * C;
	LSPO_STARPU(starpu_task_insert(&cl_attention_fwd,
		STARPU_R, qkv, STARPU_W, out, STARPU_W, lse,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, flops, 0));
	return LSPO_OK;
}

int lspo_attention_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t qkv,
                              starpu_data_handle_t out, starpu_data_handle_t lse,
                              starpu_data_handle_t dqkv, int B, int NH,
                              int priority, const char *name)
{
	int T, C;
	int rc = check_shapes(name, qkv, out, lse, B, NH, &T, &C);
	if (rc)
		return rc;
	if (lspo_handle_rows(dout) != B * T || lspo_handle_cols(dout) != C)
		LSPO_FAIL(LSPO_EINVAL, "%s: dout is (%d, %d), expected (%d, %d)", name,
		          lspo_handle_rows(dout), lspo_handle_cols(dout), B * T, C);
	if (lspo_handle_rows(dqkv) != B * T || lspo_handle_cols(dqkv) != 3 * C)
		LSPO_FAIL(LSPO_EINVAL, "%s: dqkv is (%d, %d), expected (%d, %d)", name,
		          lspo_handle_rows(dqkv), lspo_handle_cols(dqkv), B * T, 3 * C);
	struct lspo_attention_args *a = make_args(name, B, NH);
	if (!a)
		return LSPO_ENOMEM;
	/* recompute S plus four causal products */
	double flops = 5.0 * B * (double)T * T * C;
	LSPO_STARPU(starpu_task_insert(&cl_attention_bwd,
		STARPU_R, dout, STARPU_R, qkv, STARPU_R, out, STARPU_R, lse, STARPU_W, dqkv,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, priority, STARPU_NAME, name,
		STARPU_FLOPS, flops, 0));
	return LSPO_OK;
}
