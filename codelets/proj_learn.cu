/*
 * proj_learn.cu - the CUDA side of proj_learn: one Adam iteration of a
 * projector pair's values on one gradient, the analytic gradient through the
 * ELL products of proj_ell.cuh (the CPU kernel's sequence, projector_learn.c
 * loss_grad), then Adam on the worker's stream.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <math.h>

#include "proj_learn.h"
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

static __global__ void pe_adam(float *x, const float *g, float *m, float *v, size_t n, float b1, float b2,
                               float step, float ibc2, float eps)
{
	PE_FOR(i, n) {
		m[i] = b1 * m[i] + (1.0f - b1) * g[i];
		v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
		x[i] -= step * m[i] / (sqrtf(v[i] * ibc2) + eps);
	}
}

/* buffers: pidx, pval (m, r), qidx, qval (n, r), G (m, n), mom, scratch. */
extern "C" void proj_learn_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_proj_learn_args *a = (const struct lspo_proj_learn_args *)cl_arg;
	int m = lspo_mat_rows(buffers[0]), n = lspo_mat_rows(buffers[2]), r = lspo_mat_cols(buffers[0]), d = a->d;
	const int32_t *pi = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[0]);
	const int32_t *qi = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[2]);
	float *pv = lspo_mat_ptr(buffers[1]), *qv = lspo_mat_ptr(buffers[3]);
	const float *G = lspo_mat_ptr(buffers[4]);
	float *mom = (float *)STARPU_VECTOR_GET_PTR(buffers[5]);
	struct pe_ws w = pe_carve((float *)STARPU_VECTOR_GET_PTR(buffers[6]), m, n, d, r, 1);
	cudaStream_t s = starpu_cuda_get_local_stream();
	size_t mn = (size_t)m * n, np = (size_t)m * r, nq = (size_t)n * r;
	pe_residual(m, n, r, pi, pv, qi, qv, d, G, &w, s);
	pe_scale_e<<<pe_blocks(mn), 256, 0, s>>>(w.res, mn, w.acc);                 /* E */
	float *gP = w.g, *gQ = w.g + np;
	const float *E = w.res;
	pe_zero<<<pe_blocks(np + nq), 256, 0, s>>>(w.g, np + nq);
	pe_ell_mdot<<<pe_blocks(np), 256, 0, s>>>(m, r, pi, n, E, w.ptc, gP);
	pe_zero<<<pe_blocks((size_t)d * n), 256, 0, s>>>(w.pte, (size_t)d * n);
	pe_ell_tmul<<<pe_blocks(np * n), 256, 0, s>>>(m, r, pi, pv, n, E, w.pte);       /* P^T E */
	pe_ell_mdot<<<pe_blocks(np), 256, 0, s>>>(m, r, pi, n, w.c, w.pte, gP);
	pe_zero<<<pe_blocks((size_t)d * n), 256, 0, s>>>(w.ptg, (size_t)d * n);
	pe_ell_tmul<<<pe_blocks(np * n), 256, 0, s>>>(m, r, pi, pv, n, G, w.ptg);       /* P^T G */
	pe_ell_mul<<<pe_blocks(mn), 256, 0, s>>>(m, r, pi, pv, n, w.ptg, w.dm);         /* D = A G */
	pe_transpose<<<pe_blocks(mn), 256, 0, s>>>(m, n, w.dm, w.dt);
	pe_transpose<<<pe_blocks(mn), 256, 0, s>>>(m, n, E, w.et);
	pe_zero<<<pe_blocks((size_t)d * m), 256, 0, s>>>(w.eqt, (size_t)d * m);
	pe_ell_tmul<<<pe_blocks(nq * m), 256, 0, s>>>(n, r, qi, qv, m, w.et, w.eqt);    /* (E Q)^T */
	pe_zero<<<pe_blocks((size_t)d * m), 256, 0, s>>>(w.dqt, (size_t)d * m);
	pe_ell_tmul<<<pe_blocks(nq * m), 256, 0, s>>>(n, r, qi, qv, m, w.dt, w.dqt);    /* (D Q)^T */
	pe_ell_mdot<<<pe_blocks(nq), 256, 0, s>>>(n, r, qi, m, w.dt, w.eqt, gQ);
	pe_ell_mdot<<<pe_blocks(nq), 256, 0, s>>>(n, r, qi, m, w.et, w.dqt, gQ);
	const struct lspo_proj_learn_opts *o = &a->opts;
	double bc1 = 1.0 - pow(o->beta1, a->t), bc2 = 1.0 - pow(o->beta2, a->t);
	float step = (float)(o->lr / bc1), ibc2 = (float)(1.0 / bc2);
	float *mP = mom, *mQ = mP + np, *vP = mQ + nq, *vQ = vP + np;
	pe_adam<<<pe_blocks(np), 256, 0, s>>>(pv, gP, mP, vP, np, o->beta1, o->beta2, step, ibc2, o->eps);
	pe_adam<<<pe_blocks(nq), 256, 0, s>>>(qv, gQ, mQ, vQ, nq, o->beta1, o->beta2, step, ibc2, o->eps);
	pe_check();
}
#endif
