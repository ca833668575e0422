/*
 * proj_ell.cuh - the device side of a projector pair's relative error and
 * its gradient (proj_error.cu, proj_learn.cu): the sparse-dense products of
 * projector_learn.c through the ELL structure, transposes, norms, on the
 * worker's stream.  Products that scatter (S^T X) add with atomicAdd, so
 * their float sums may come in another order than on the CPU.
 *
 * The work block is laid out as the CPU kernel's (projector_learn.c's
 * ws_carve), then (learning) the gradient's (m + n) r floats, then, at an
 * even offset, PE_NACC doubles of norms.
 *
 * Kernels only: tests/cuemu/cu2cpp rewrites the launches of the .cu file
 * itself, so each .cu launches them (pe_residual is in both).
 */
#ifndef LSPO_PROJ_ELL_CUH
#define LSPO_PROJ_ELL_CUH

#include <stdint.h>
#include <string.h>

#include <starpu.h>

/* Each .cu file uses some of the kernels. */
#define PE_KERNEL static __global__ __attribute__((unused))

#define PE_NACC 6   /* |R|^2, |G|^2, |P|^2, |Q|^2, |C|^2, spare */

static inline int pe_blocks(size_t n)
{
	size_t b = (n + 255) / 256;
	return (int)(b < 1 ? 1 : b < 4096 ? b : 4096);
}

static inline void pe_check(void)
{
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(e);
}

#define PE_FOR(k, n) \
	for (size_t k = blockIdx.x * (size_t)blockDim.x + threadIdx.x; k < (n); k += (size_t)gridDim.x * blockDim.x)

PE_KERNEL void pe_zero(float *x, size_t n)
{
	PE_FOR(k, n)
		x[k] = 0.0f;
}

PE_KERNEL void pe_zero_d(double *x, int n)
{
	PE_FOR(k, (size_t)n)
		x[k] = 0.0;
}

/* dst (cols, rows) = src (rows, cols)^T */
PE_KERNEL void pe_transpose(int rows, int cols, const float *src, float *dst)
{
	PE_FOR(k, (size_t)rows * cols) {
		size_t i = k / cols, j = k % cols;
		dst[j * rows + i] = src[k];
	}
}

/* Y (d, L) += S^T X, X (N, L): Y[idx[i, k], :] += val[i, k] X[i, :] */
PE_KERNEL void pe_ell_tmul(int N, int r, const int32_t *idx, const float *val, int L, const float *X,
                                   float *Y)
{
	PE_FOR(k, (size_t)N * r * L) {
		size_t l = k % L, ik = k / L, i = ik / r;
		atomicAdd(&Y[(size_t)idx[ik] * L + l], val[ik] * X[i * L + l]);
	}
}

/* Z (N, L) = S Y, Y (d, L); the r terms added in order, as on the CPU */
PE_KERNEL void pe_ell_mul(int N, int r, const int32_t *idx, const float *val, int L, const float *Y,
                                  float *Z)
{
	PE_FOR(k, (size_t)N * L) {
		size_t i = k / L, l = k % L;
		float s = 0.0f;
		for (int q = 0; q < r; q++)
			s += val[i * r + q] * Y[(size_t)idx[i * r + q] * L + l];
		Z[k] = s;
	}
}

/* out[i r + q] += A[i, :] . B[idx[i, q], :], A (N, L), B (d, L) */
PE_KERNEL void pe_ell_mdot(int N, int r, const int32_t *idx, int L, const float *A, const float *B,
                                   float *out)
{
	PE_FOR(k, (size_t)N * r) {
		const float *a = A + (k / r) * (size_t)L, *b = B + (size_t)idx[k] * L;
		float s = 0.0f;
		for (int l = 0; l < L; l++)
			s += a[l] * b[l];
		out[k] += s;
	}
}

/* *acc += sum x^2 (a block's partial sum in double, then one atomicAdd) */
PE_KERNEL void pe_sumsq(const float *x, size_t n, double *acc)
{
	__shared__ double sh[256];
	double s = 0;
	PE_FOR(k, n)
		s += (double)x[k] * x[k];
	sh[threadIdx.x] = s;
	__syncthreads();
	for (unsigned h = blockDim.x / 2; h > 0; h /= 2) {
		if (threadIdx.x < h)
			sh[threadIdx.x] += sh[threadIdx.x + h];
		__syncthreads();
	}
	if (threadIdx.x == 0)
		atomicAdd(acc, sh[0]);
}

/* R -= G, then (second launch) E = R / (|R| |G|), or 0 when either is 0 */
PE_KERNEL void pe_sub(float *R, const float *G, size_t n)
{
	PE_FOR(k, n)
		R[k] -= G[k];
}

PE_KERNEL void pe_scale_e(float *R, size_t n, const double *acc)
{
	double nr = sqrt(acc[0]), ng = sqrt(acc[1]);
	float s = ng == 0 || nr == 0 ? 0.0f : (float)(1.0 / (nr * ng));
	PE_FOR(k, n)
		R[k] *= s;
}

/* Offsets into the work block, as projector_learn.c's ws_carve. */
struct pe_ws {
	float *gt, *ct, *c, *u, *ptc, *res, *dm, *dt, *et, *eqt, *dqt, *pte, *ptg;
	float *g;       /* learning: the gradient, (m + n) r */
	double *acc;    /* PE_NACC */
};

static inline struct pe_ws pe_carve(float *block, int m, int n, int d, int r, int grads)
{
	size_t mn = (size_t)m * n, dm = (size_t)d * m, dn = (size_t)d * n;
	struct pe_ws w;
	memset(&w, 0, sizeof(w));
	float *q = block;
	w.gt = q; q += mn;
	w.ct = q; q += mn;
	w.c = q; q += mn;
	w.res = w.ct;
	w.u = q; q += dm;
	w.ptc = q; q += dn;
	if (grads) {
		w.res = q; q += mn;
		w.dm = q; q += mn;
		w.dt = q; q += mn;
		w.et = w.gt;
		w.eqt = q; q += dm;
		w.dqt = q; q += dm;
		w.pte = q; q += dn;
		w.ptg = q; q += dn;
		w.g = q; q += (size_t)(m + n) * r;
	} else {
		size_t cap = 2 * dn + (size_t)d * d;   /* what the captured part needs */
		if ((size_t)(q - block) < cap)
			q = block + cap;
	}
	if ((q - block) & 1)
		q++;
	w.acc = (double *)q;
	return w;
}

#endif
