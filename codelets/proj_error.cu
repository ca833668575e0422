/*
 * proj_error.cu - the CUDA side of proj_error: a projector pair's relative
 * error on one gradient (and the part of its norm the pair keeps) through
 * the ELL products of proj_ell.cuh, into a slot of the pair's vector of
 * doubles, on the worker's stream.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "proj_error.h"
#include "proj_ell.cuh"

static void pe_launch_sumsq(const float *x, size_t n, double *acc, cudaStream_t s)
{
	pe_sumsq<<<pe_blocks(n), 256, 0, s>>>(x, n, acc);
}

/* (The same in proj_learn.cu and proj_error.cu: see proj_ell.cuh.)
 * R = P P^T G Q Q^T - G, then |R|^2 and |G|^2 into acc[0], acc[1]; on the
 * way C = G Q Q^T (w.c) and P^T C (w.ptc). */
static void pe_residual(int m, int n, int r, const int32_t *pi, const float *pv, const int32_t *qi,
                        const float *qv, int d, const float *G, const struct pe_ws *w, cudaStream_t s)
{
	size_t mn = (size_t)m * n;
	pe_zero_d<<<1, 32, 0, s>>>(w->acc, PE_NACC);
	pe_transpose<<<pe_blocks(mn), 256, 0, s>>>(m, n, G, w->gt);
	pe_zero<<<pe_blocks((size_t)d * m), 256, 0, s>>>(w->u, (size_t)d * m);
	pe_ell_tmul<<<pe_blocks((size_t)n * r * m), 256, 0, s>>>(n, r, qi, qv, m, w->gt, w->u);
	pe_ell_mul<<<pe_blocks(mn), 256, 0, s>>>(n, r, qi, qv, m, w->u, w->ct);
	pe_transpose<<<pe_blocks(mn), 256, 0, s>>>(n, m, w->ct, w->c);
	pe_zero<<<pe_blocks((size_t)d * n), 256, 0, s>>>(w->ptc, (size_t)d * n);
	pe_ell_tmul<<<pe_blocks((size_t)m * r * n), 256, 0, s>>>(m, r, pi, pv, n, w->c, w->ptc);
	pe_ell_mul<<<pe_blocks(mn), 256, 0, s>>>(m, r, pi, pv, n, w->ptc, w->res);
	pe_sub<<<pe_blocks(mn), 256, 0, s>>>(w->res, G, mn);
	pe_launch_sumsq(w->res, mn, &w->acc[0], s);
	pe_launch_sumsq(G, mn, &w->acc[1], s);
	pe_check();
}

/* out[0] = |R| / |G| (0 when G = 0); with captured, out[1] =
 * |C| d / (|P| |Q|) / |G| (0 when a norm is 0), acc as pe_carve's. */
static __global__ void pe_finish(const double *acc, int d, int captured, double *out)
{
	if (blockIdx.x != 0 || threadIdx.x != 0)
		return;
	double nr = sqrt(acc[0]), ng = sqrt(acc[1]);
	out[0] = ng == 0 ? 0 : nr / ng;
	if (captured) {
		double np = sqrt(acc[2]), nq = sqrt(acc[3]);
		double unit = np > 0 && nq > 0 ? d / (np * nq) : 0;
		out[1] = ng > 0 ? sqrt(acc[4]) * unit / ng : 0;
	}
}

/* buffers: pidx, pval (m, r), qidx, qval (n, r), G (m, n), out (doubles), scratch. */
extern "C" void proj_error_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_proj_error_args *a = (const struct lspo_proj_error_args *)cl_arg;
	int m = lspo_mat_rows(buffers[0]), n = lspo_mat_rows(buffers[2]), r = lspo_mat_cols(buffers[0]), d = a->d;
	const int32_t *pi = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[0]);
	const int32_t *qi = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[2]);
	const float *pv = lspo_mat_ptr(buffers[1]), *qv = lspo_mat_ptr(buffers[3]);
	const float *G = lspo_mat_ptr(buffers[4]);
	double *out = (double *)STARPU_VECTOR_GET_PTR(buffers[5]) + 2 * a->slot;
	float *block = (float *)STARPU_VECTOR_GET_PTR(buffers[6]);
	struct pe_ws w = pe_carve(block, m, n, d, r, 0);
	cudaStream_t s = starpu_cuda_get_local_stream();
	pe_residual(m, n, r, pi, pv, qi, qv, d, G, &w, s);
	if (a->captured) {   /* C = (P^T G Q)^T (d, d), in the block the residual is done with */
		float *ptg = block, *gtp = ptg + (size_t)d * n, *c = gtp + (size_t)d * n;
		pe_launch_sumsq(pv, (size_t)m * r, &w.acc[2], s);
		pe_launch_sumsq(qv, (size_t)n * r, &w.acc[3], s);
		pe_zero<<<pe_blocks((size_t)d * n), 256, 0, s>>>(ptg, (size_t)d * n);
		pe_ell_tmul<<<pe_blocks((size_t)m * r * n), 256, 0, s>>>(m, r, pi, pv, n, G, ptg);
		pe_transpose<<<pe_blocks((size_t)d * n), 256, 0, s>>>(d, n, ptg, gtp);
		pe_zero<<<pe_blocks((size_t)d * d), 256, 0, s>>>(c, (size_t)d * d);
		pe_ell_tmul<<<pe_blocks((size_t)n * r * d), 256, 0, s>>>(n, r, qi, qv, d, gtp, c);
		pe_launch_sumsq(c, (size_t)d * d, &w.acc[4], s);
	}
	pe_finish<<<1, 32, 0, s>>>(w.acc, d, a->captured, out);
	pe_check();
}
#endif
