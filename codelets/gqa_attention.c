/*
 * gqa_attention.c - causal softmax attention with grouped K/V heads (Llama,
 * Qwen2; n_kv_head == n_head is plain multi-head attention): CPU kernels
 * (CBLAS per (batch, query head)), codelets and submit helpers.  The CUDA
 * kernels are in gqa_attention.cu.
 *
 * q, out (B*T, nh*hd) and k, v (B*T, nkv*hd) are separate matrices (the
 * outputs of q_proj, k_proj, v_proj after rope).  Per (b, h), with the K/V
 * head g = h / (nh / nkv), Q, K, V are (T, hd) views: columns h*hd of q,
 * g*hd of k and v.  K and V are read in place by every query head of their
 * group, never copied.
 * Forward:  S = Q K^T / sqrt(hd) (causal), P = softmax_rows(S), O = P V,
 *           lse[t] = log sum_t2<=t exp(S[t, t2]).
 * Backward: P = exp(S - lse) (recomputed), D[t] = dO[t] . O[t],
 *           dV += P^T dO, dP = dO V^T, dS = P * (dP - D) / sqrt(hd),
 *           dQ = dS K, dK += dS^T Q,
 *           the query heads of a group in increasing order, so dK and dV
 *           are sums in a fixed order.
 * Query rows go in blocks of ATT_ROWS so the masked triangle is mostly
 * skipped, as in attention.c; the (ATT_ROWS, T) scratch is malloc'd per call.
 * Exponentials use the inlined lspo_vexpf (the loops vectorise), row maxima
 * and sums 8 partial results combined in a fixed order.
 */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")  /* vectorises lspo_vexpf's clamps: see gpt2_ops_util.h */
#endif

#include <math.h>
#include <stdlib.h>

#include <cblas.h>

#include "gqa_attention.h"
#include "internal.h"
#include "bf16.h"
#include "gpt2_ops_util.h"

#define ATT_ROWS 64
#define LANES 8

/* Scaled scores of query rows [r0, r0 + nr) against keys [0, nk) into S (ld T). */
static void scores(float *S, int T, const float *Q, int ldq, const float *K, int ldk, int r0, int nr,
                   int nk, int hd, float scale)
{
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, scale, Q + (size_t)r0 * ldq, ldq,
	            K, ldk, 0.0f, S, T);
}

static float row_max(const float *row, int n)
{
	float m[LANES];
	for (int l = 0; l < LANES; l++)
		m[l] = row[0];
	int j = 0;
	for (; j + LANES <= n; j += LANES)
		for (int l = 0; l < LANES; l++)
			m[l] = row[j + l] > m[l] ? row[j + l] : m[l];
	for (; j < n; j++)
		m[0] = row[j] > m[0] ? row[j] : m[0];
	float a = m[0] > m[1] ? m[0] : m[1], b = m[2] > m[3] ? m[2] : m[3];
	float c = m[4] > m[5] ? m[4] : m[5], d = m[6] > m[7] ? m[6] : m[7];
	a = a > b ? a : b;
	c = c > d ? c : d;
	return a > c ? a : c;
}

/* row[j] = exp(row[j] - shift) for j < n; returns their sum. */
static float exp_row(float *row, int n, float shift)
{
	float acc[LANES] = { 0 };
	int j = 0;
	for (; j + LANES <= n; j += LANES) {
		LSPO_IVDEP
		for (int l = 0; l < LANES; l++) {
			row[j + l] = lspo_vexpf(row[j + l] - shift);
			acc[l] += row[j + l];
		}
	}
	for (; j < n; j++) {
		row[j] = lspo_vexpf(row[j] - shift);
		acc[j % LANES] += row[j];
	}
	return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Fills every output of a call that could not get its scratch with NaN, so
 * the failure shows downstream instead of leaving stale data. */
static void fill_nan(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = NAN;
}

void gqa_attention_forward_cpu(float *out, float *lse, const float *q, const float *k, const float *v,
                               int B, int T, int n_head, int n_kv_head, int head_dim)
{
	int hd = head_dim, ldq = n_head * hd, ldk = n_kv_head * hd, rep = n_head / n_kv_head;
	float scale = 1.0f / sqrtf((float)hd);
	float *S = malloc(sizeof(float) * (size_t)ATT_ROWS * T);
	if (!S) {
		lspo_error("gqa attention forward: cannot allocate %d x %d scores", ATT_ROWS, T);
		fill_nan(out, (size_t)B * T * ldq);
		fill_nan(lse, (size_t)B * n_head * T);
		return;
	}
	for (int b = 0; b < B; b++)
		for (int h = 0; h < n_head; h++) {
			int g = h / rep;
			const float *Q = q + (size_t)b * T * ldq + (size_t)h * hd;
			const float *K = k + (size_t)b * T * ldk + (size_t)g * hd;
			const float *V = v + (size_t)b * T * ldk + (size_t)g * hd;
			float *O = out + (size_t)b * T * ldq + (size_t)h * hd;
			float *lse_bh = lse + ((size_t)b * n_head + h) * T;
			for (int r0 = 0; r0 < T; r0 += ATT_ROWS) {
				int nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
				scores(S, T, Q, ldq, K, ldk, r0, nr, nk, hd, scale);
				for (int i = 0; i < nr; i++) {
					int t = r0 + i;
					float *row = S + (size_t)i * T;
					float mx = row_max(row, t + 1);
					float sum = exp_row(row, t + 1, mx), inv = 1.0f / sum;
					for (int j = 0; j <= t; j++)
						row[j] *= inv;
					for (int j = t + 1; j < nk; j++)
						row[j] = 0.0f;
					lse_bh[t] = mx + logf(sum);
				}
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, nk, 1.0f, S, T, V, ldk,
				            0.0f, O + (size_t)r0 * ldq, ldq);
			}
		}
	free(S);
}

void gqa_attention_backward_cpu(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                const float *k, const float *v, const float *out, const float *lse,
                                int B, int T, int n_head, int n_kv_head, int head_dim)
{
	int hd = head_dim, ldq = n_head * hd, ldk = n_kv_head * hd, rep = n_head / n_kv_head;
	float scale = 1.0f / sqrtf((float)hd);
	float *P = malloc(sizeof(float) * 2 * (size_t)ATT_ROWS * T);
	if (!P) {
		lspo_error("gqa attention backward: cannot allocate 2 x %d x %d scratch", ATT_ROWS, T);
		fill_nan(dq, (size_t)B * T * ldq);
		fill_nan(dk, (size_t)B * T * ldk);
		fill_nan(dv, (size_t)B * T * ldk);
		return;
	}
	float *dP = P + (size_t)ATT_ROWS * T;
	int nblocks = (T + ATT_ROWS - 1) / ATT_ROWS;
	for (int b = 0; b < B; b++)
		for (int g = 0; g < n_kv_head; g++)
			for (int i = 0; i < rep; i++) {
				int h = g * rep + i;
				size_t q0 = (size_t)b * T * ldq + (size_t)h * hd, k0 = (size_t)b * T * ldk + (size_t)g * hd;
				const float *Q = q + q0, *dO = dout + q0, *O = out + q0;
				const float *K = k + k0, *V = v + k0;
				float *dQ = dq + q0, *dK = dk + k0, *dV = dv + k0;
				const float *lse_bh = lse + ((size_t)b * n_head + h) * T;
				/* Last block first: it sees every key, so for the first head of
				 * the group its dK, dV products write all T rows (beta 0) and
				 * every later product adds to them. */
				for (int blk = nblocks - 1; blk >= 0; blk--) {
					int r0 = blk * ATT_ROWS, nr = T - r0 < ATT_ROWS ? T - r0 : ATT_ROWS, nk = r0 + nr;
					float beta = i == 0 && blk == nblocks - 1 ? 0.0f : 1.0f;
					const float *dOb = dO + (size_t)r0 * ldq;
					scores(P, T, Q, ldq, K, ldk, r0, nr, nk, hd, scale);
					for (int r = 0; r < nr; r++) {
						int t = r0 + r;
						float *row = P + (size_t)r * T;
						exp_row(row, t + 1, lse_bh[t]);
						for (int j = t + 1; j < nk; j++)
							row[j] = 0.0f;
					}
					/* dV[0:nk] += P^T dO; dP = dO V[0:nk]^T */
					cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nr, 1.0f, P, T, dOb, ldq,
					            beta, dV, ldk);
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nr, nk, hd, 1.0f, dOb, ldq, V, ldk,
					            0.0f, dP, T);
					/* dS = P * (dP - D) * scale, kept in P (zero above the diagonal) */
					for (int r = 0; r < nr; r++) {
						const float *o = O + (size_t)(r0 + r) * ldq, *dot = dOb + (size_t)r * ldq;
						float D = 0.0f;
						for (int d = 0; d < hd; d++)
							D += o[d] * dot[d];
						float *row = P + (size_t)r * T;
						const float *dprow = dP + (size_t)r * T;
						int n = r0 + r + 1, j = 0;
						for (; j + LSPO_BLOCK <= n; j += LSPO_BLOCK) {
							LSPO_IVDEP
							for (int l = j; l < j + LSPO_BLOCK; l++)
								row[l] = row[l] * (dprow[l] - D) * scale;
						}
						for (; j < n; j++)
							row[j] = row[j] * (dprow[j] - D) * scale;
					}
					/* dQ = dS K[0:nk]; dK[0:nk] += dS^T Q */
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nr, hd, nk, 1.0f, P, T, K, ldk,
					            0.0f, dQ + (size_t)r0 * ldq, ldq);
					cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nr, 1.0f, P, T,
					            Q + (size_t)r0 * ldq, ldq, beta, dK, ldk);
				}
			}
	free(P);
}

/* ---------------------------------------------------------------------------
 * Codelets: buffers are matrices with nx = cols; the kernels take them
 * contiguous (ld == cols), as the submit helpers check and as StarPU
 * allocates every copy it makes. */

/* buffers: q, k, v, out, lse. */
static void gqa_attention_fwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_gqa_attention_args *a = cl_arg;
	int T = lspo_mat_rows(buffers[0]) / a->B;
	gqa_attention_forward_cpu(lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[0]),
	                          lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), a->B, T, a->n_head,
	                          a->n_kv_head, a->head_dim);
}

/* buffers: dout, q, k, v, out, lse, dq, dk, dv. */
static void gqa_attention_bwd_cpu_codelet(void *buffers[], void *cl_arg)
{
	const struct lspo_gqa_attention_args *a = cl_arg;
	int T = lspo_mat_rows(buffers[1]) / a->B;
	gqa_attention_backward_cpu(lspo_mat_ptr(buffers[6]), lspo_mat_ptr(buffers[7]), lspo_mat_ptr(buffers[8]),
	                           lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]),
	                           lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[5]),
	                           a->B, T, a->n_head, a->n_kv_head, a->head_dim);
}

/* The cost depends on B, T, n_head, n_kv_head and head_dim. */
static uint32_t gqa_attention_footprint(struct starpu_task *task)
{
	const struct lspo_gqa_attention_args *a = task->cl_arg;
	starpu_data_handle_t q = STARPU_TASK_GET_HANDLE(task, task->cl == &cl_gqa_attention_fwd ? 0 : 1);
	uint32_t h = starpu_hash_crc32c_be((uint32_t)a->B, 0);
	h = starpu_hash_crc32c_be(starpu_matrix_get_ny(q) / (uint32_t)a->B, h);
	h = starpu_hash_crc32c_be((uint32_t)a->n_head, h);
	h = starpu_hash_crc32c_be((uint32_t)a->n_kv_head, h);
	return starpu_hash_crc32c_be((uint32_t)a->head_dim, h);
}

static struct starpu_perfmodel gqa_attention_fwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_gqa_attention_fwd", .footprint = gqa_attention_footprint,
};
static struct starpu_perfmodel gqa_attention_bwd_model = {
	LSPO_MODEL_KIND, .symbol = "lspo_gqa_attention_bwd", .footprint = gqa_attention_footprint,
};

static void gqa_attention_fwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(gqa_attention_fwd_cpu_codelet, &cl_gqa_attention_fwd, b, a);
}

struct starpu_codelet cl_gqa_attention_fwd = {
	.cpu_funcs = { gqa_attention_fwd_cpu_codelet_any },
	.cpu_funcs_name = { "gqa_attention_fwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(gqa_attention_forward_cuda_any)
	.nbuffers = 5,
	.modes = { STARPU_R, STARPU_R, STARPU_R, STARPU_W, STARPU_W },
	.model = &gqa_attention_fwd_model,
	.name = "gqa_attention_fwd",
	.color = LSPO_COLOR_COMPUTE,
};

/* Nine buffers: more than the .modes array holds (STARPU_NMAXBUFS, 8 by default). */
static enum starpu_data_access_mode gqa_attention_bwd_modes[9] = {
	STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_R, STARPU_W, STARPU_W, STARPU_W,
};

static void gqa_attention_bwd_cpu_codelet_any(void *b[], void *a)
{
	lspo_bf16_cpu_call(gqa_attention_bwd_cpu_codelet, &cl_gqa_attention_bwd, b, a);
}

struct starpu_codelet cl_gqa_attention_bwd = {
	.cpu_funcs = { gqa_attention_bwd_cpu_codelet_any },
	.cpu_funcs_name = { "gqa_attention_bwd_cpu_codelet_any" },
	LSPO_CUDA_FUNC(gqa_attention_backward_cuda_any)
	.nbuffers = 9,
	.dyn_modes = gqa_attention_bwd_modes,
	.model = &gqa_attention_bwd_model,
	.name = "gqa_attention_bwd",
	.color = LSPO_COLOR_COMPUTE,
};

static int is_shape(starpu_data_handle_t h, int rows, int cols)
{
	return lspo_handle_rows(h) == rows && lspo_handle_cols(h) == cols && lspo_handle_contiguous(h)
	       && lspo_handle_float(h);
}

/* Checks the head counts, q-like handles (B*T, nh*hd), k-like (B*T, nkv*hd)
 * and lse (1, B*nh*T); sets T. */
static int check_shapes(const char *name, int grads, starpu_data_handle_t q, starpu_data_handle_t k,
                        starpu_data_handle_t v, starpu_data_handle_t out, starpu_data_handle_t lse,
                        int B, int nh, int nkv, int hd, int *T)
{
	const char *d = grads ? "d" : "";   /* the backward's dq, dk, dv, dout */
	int rows = lspo_handle_rows(q);
	if (B < 1 || nh < 1 || nkv < 1 || hd < 1 || nh % nkv != 0 || rows < 1 || rows % B != 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: B=%d n_head=%d n_kv_head=%d head_dim=%d: need positive values, "
		          "n_kv_head dividing n_head and B dividing the %d rows of %sq", name, B, nh, nkv, hd, rows, d);
	*T = rows / B;
	if (!is_shape(q, rows, nh * hd) || !is_shape(out, rows, nh * hd))
		LSPO_FAIL(LSPO_EINVAL, "%s: %sq %dx%d and %sout %dx%d, expected contiguous float (%d, %d)", name, d,
		          lspo_handle_rows(q), lspo_handle_cols(q), d, lspo_handle_rows(out), lspo_handle_cols(out),
		          rows, nh * hd);
	if (!is_shape(k, rows, nkv * hd) || !is_shape(v, rows, nkv * hd))
		LSPO_FAIL(LSPO_EINVAL, "%s: %sk %dx%d and %sv %dx%d, expected contiguous float (%d, %d)", name, d,
		          lspo_handle_rows(k), lspo_handle_cols(k), d, lspo_handle_rows(v), lspo_handle_cols(v),
		          rows, nkv * hd);
	if (!is_shape(lse, 1, B * nh * *T))
		LSPO_FAIL(LSPO_EINVAL, "%s: lse is %dx%d, expected contiguous float (1, %d)", name,
		          lspo_handle_rows(lse), lspo_handle_cols(lse), B * nh * *T);
	return LSPO_OK;
}

static struct lspo_gqa_attention_args *make_args(const char *name, int B, int nh, int nkv, int hd)
{
	struct lspo_gqa_attention_args *a = malloc(sizeof(*a));
	if (!a)
		lspo_error("%s: cannot allocate task arguments", name);
	else
		*a = (struct lspo_gqa_attention_args){ B, nh, nkv, hd };
	return a;
}

int lspo_gqa_attention_fwd_submit(starpu_data_handle_t q, starpu_data_handle_t k,
                                  starpu_data_handle_t v, starpu_data_handle_t out,
                                  starpu_data_handle_t lse, int B, int n_head, int n_kv_head,
                                  int head_dim, int prio, const char *name)
{
	int T;
	int rc = check_shapes(name, 0, q, k, v, out, lse, B, n_head, n_kv_head, head_dim, &T);
	if (rc)
		return rc;
	struct lspo_gqa_attention_args *a = make_args(name, B, n_head, n_kv_head, head_dim);
	if (!a)
		return LSPO_ENOMEM;
	/* two causal (T, T, hd) products per query head: 2 * 2 * T*T*hd / 2 */
	double flops = 2.0 * B * (double)T * T * n_head * head_dim;
	LSPO_STARPU(starpu_task_insert(&cl_gqa_attention_fwd,
		STARPU_R, q, STARPU_R, k, STARPU_R, v, STARPU_W, out, STARPU_W, lse,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, flops, 0));
	return LSPO_OK;
}

int lspo_gqa_attention_bwd_submit(starpu_data_handle_t dout, starpu_data_handle_t q,
                                  starpu_data_handle_t k, starpu_data_handle_t v,
                                  starpu_data_handle_t out, starpu_data_handle_t lse,
                                  starpu_data_handle_t dq, starpu_data_handle_t dk,
                                  starpu_data_handle_t dv, int B, int n_head, int n_kv_head,
                                  int head_dim, int prio, const char *name)
{
	int T;
	int rc = check_shapes(name, 0, q, k, v, out, lse, B, n_head, n_kv_head, head_dim, &T);
	if (rc)
		return rc;
	if (lspo_handle_rows(dq) != lspo_handle_rows(q))
		LSPO_FAIL(LSPO_EINVAL, "%s: dq has %d rows, q %d", name, lspo_handle_rows(dq), lspo_handle_rows(q));
	rc = check_shapes(name, 1, dq, dk, dv, dout, lse, B, n_head, n_kv_head, head_dim, &T);
	if (rc)
		return rc;
	struct lspo_gqa_attention_args *a = make_args(name, B, n_head, n_kv_head, head_dim);
	if (!a)
		return LSPO_ENOMEM;
	/* recompute S plus four causal products */
	double flops = 5.0 * B * (double)T * T * n_head * head_dim;
	LSPO_STARPU(starpu_task_insert(&cl_gqa_attention_bwd,
		STARPU_R, dout, STARPU_R, q, STARPU_R, k, STARPU_R, v, STARPU_R, out, STARPU_R, lse,
		STARPU_W, dq, STARPU_W, dk, STARPU_W, dv,
		STARPU_CL_ARGS, a, sizeof(*a),
		STARPU_PRIORITY, prio, STARPU_NAME, name,
		STARPU_FLOPS, flops, 0));
	return LSPO_OK;
}
