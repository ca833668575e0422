/*
 * test_llama_ops.c - the ops of Llama-family models against double-precision
 * references written here: RMSNorm, rotary embedding, SwiGLU and causal
 * attention with grouped K/V heads, each forward on odd shapes and each
 * backward against an analytic double reference and by central finite
 * differences of the double loss sum(dout * out); rope forward then inverse
 * gives the input back; proj_apply_t against a dense reference, and as the
 * transpose of proj_apply with P and Q swapped.  Built twice: on CPU workers,
 * and (test_llama_ops_cuda) on a CUDA worker alone, where every result is
 * also compared with the CPU kernel called directly on the same inputs.
 */
#include <string.h>
#include <time.h>

#include <starpu.h>

#include "common.h"
#include "gqa_attention.h"
#include "proj_apply.h"
#include "rmsnorm.h"
#include "rope.h"
#include "swiglu.h"

#ifndef ON_CUDA
#define ON_CUDA 0
#endif

/* Zeroed memory, or the test stops. */
static void *xalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(TEST_ERROR);
	}
	return p;
}

static float *frand(size_t n, float scale, uint64_t *s)
{
	float *p = xalloc(n, sizeof(float));
	test_fill(p, n, s);
	for (size_t i = 0; i < n; i++)
		p[i] *= scale;
	return p;
}

static float *fcopy(const float *x, size_t n)
{
	float *p = xalloc(n, sizeof(float));
	memcpy(p, x, n * sizeof(float));
	return p;
}

static double *dcopy(const float *x, size_t n)
{
	double *p = xalloc(n, sizeof(double));
	for (size_t i = 0; i < n; i++)
		p[i] = x[i];
	return p;
}

/* Largest |a - b| / (|b| + floor) over n (NaN: infinity). */
static double max_rel(const float *a, const double *b, size_t n, double floor)
{
	double worst = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs(a[i] - b[i]) / (fabs(b[i]) + floor);
		if (!(e <= worst))
			worst = isnan(e) ? INFINITY : e;
	}
	return worst;
}

static double max_rel_f(const float *a, const float *b, size_t n, double floor)
{
	double worst = 0;
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + floor);
		if (!(e <= worst))
			worst = isnan(e) ? INFINITY : e;
	}
	return worst;
}

static double max_abs(const double *x, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(x[i]));
	return m;
}

static void unregister_all(starpu_data_handle_t *h, int n)
{
	for (int i = 0; i < n; i++)
		starpu_data_unregister(h[i]);
}

/* Finite differences: the loss as a function of the double inputs. */
typedef double (*loss_fn)(void *ctx);

/* Central differences of loss() in x[i] for about `samples` indices of
 * x[0:n); worst |g[i] - fd| / scale.  x is one of the loss's inputs. */
static double fd_check(loss_fn loss, void *ctx, double *x, size_t n, const float *g, double scale,
                       int samples, uint64_t *seed)
{
	double worst = 0;
	size_t stride = n > (size_t)samples ? n / samples : 1;
	for (size_t i = (size_t)(*seed % stride); i < n; i += stride) {
		double xi = x[i], e = 1e-5 * fmax(1.0, fabs(xi));
		x[i] = xi + e;
		double Lp = loss(ctx);
		x[i] = xi - e;
		double Lm = loss(ctx);
		x[i] = xi;
		double fd = (Lp - Lm) / (2 * e), err = fabs(g[i] - fd) / scale;
		if (!(err <= worst))
			worst = isnan(err) ? INFINITY : err;
	}
	return worst;
}

/* ---------------------------------------------------------------------------
 * RMSNorm */

struct rms_case {
	int N, C;
	double eps, *x, *w, *out, *rstd;
	const float *dout;
};

static void rms_ref(double *out, double *rstd, const double *x, const double *w, int N, int C, double eps)
{
	for (int i = 0; i < N; i++) {
		double ss = 0;
		for (int c = 0; c < C; c++)
			ss += x[(size_t)i * C + c] * x[(size_t)i * C + c];
		double r = 1.0 / sqrt(ss / C + eps);
		for (int c = 0; c < C; c++)
			out[(size_t)i * C + c] = w[c] * x[(size_t)i * C + c] * r;
		rstd[i] = r;
	}
}

static double rms_loss(void *ctx)
{
	struct rms_case *k = ctx;
	rms_ref(k->out, k->rstd, k->x, k->w, k->N, k->C, k->eps);
	double L = 0;
	for (size_t i = 0; i < (size_t)k->N * k->C; i++)
		L += k->out[i] * k->dout[i];
	return L;
}

static void check_rmsnorm(int N, int C, float eps, uint64_t *seed)
{
	size_t nc = (size_t)N * C;
	float *x = frand(nc, 2, seed), *w = frand(C, 1, seed), *dout = frand(nc, 1, seed);
	float *dinp = frand(nc, 1, seed), *dw = frand(C, 1, seed);   /* both accumulate */
	float *dinp0 = fcopy(dinp, nc), *dw0 = fcopy(dw, C);
	float *out = xalloc(nc, sizeof(float)), *rstd = xalloc(N, sizeof(float));
	starpu_data_handle_t h[7];
	lspo_matrix_register(&h[0], x, N, C);
	lspo_matrix_register(&h[1], w, 1, C);
	lspo_matrix_register(&h[2], out, N, C);
	lspo_matrix_register(&h[3], rstd, 1, N);
	lspo_matrix_register(&h[4], dout, N, C);
	lspo_matrix_register(&h[5], dinp, N, C);
	lspo_matrix_register(&h[6], dw, 1, C);
	CHECK(lspo_rmsnorm_fwd_submit(h[0], h[1], h[2], h[3], eps, 0, "rmsnorm:L0:fwd") == LSPO_OK, "fwd");
	CHECK(lspo_rmsnorm_bwd_submit(h[4], h[0], h[1], h[3], h[5], h[6], 0, "rmsnorm:L0:bwd") == LSPO_OK, "bwd");
	unregister_all(h, 7);

	struct rms_case k = { N, C, eps, dcopy(x, nc), dcopy(w, C), xalloc(nc, sizeof(double)),
	                      xalloc(N, sizeof(double)), dout };
	rms_ref(k.out, k.rstd, k.x, k.w, N, C, eps);
	double tol = ON_CUDA ? 5e-6 : 2e-6;
	double eo = max_rel(out, k.out, nc, 1.0), er = max_rel(rstd, k.rstd, N, 0.0);
	CHECK(eo < tol && er < tol, "rmsnorm N=%d C=%d eps=%g: out error %.3g, rstd error %.3g", N, C, eps, eo, er);

	/* analytic double gradients: g = w dout, dx = r (g - x r^2 mean(g x)), dw = sum dout x r;
	 * mx: the same with absolute values, the size of the terms that cancel in dx
	 * (at C = 1, dx is ~eps / x^2 of them) and the scale of its errors */
	double *rdx = xalloc(nc, sizeof(double)), *rdw = xalloc(C, sizeof(double));
	double *mx = xalloc(nc, sizeof(double));
	float *gx = xalloc(nc, sizeof(float)), *gw = xalloc(C, sizeof(float));
	for (int i = 0; i < N; i++) {
		const double *xi = k.x + (size_t)i * C;
		const float *di = dout + (size_t)i * C;
		double r = k.rstd[i], gx_mean = 0, gx_abs = 0;
		for (int c = 0; c < C; c++) {
			gx_mean += k.w[c] * di[c] * xi[c];
			gx_abs += fabs(k.w[c] * di[c] * xi[c]);
		}
		gx_mean /= C;
		gx_abs /= C;
		for (int c = 0; c < C; c++) {
			rdx[(size_t)i * C + c] = r * (k.w[c] * di[c] - xi[c] * r * r * gx_mean);
			mx[(size_t)i * C + c] = r * (fabs(k.w[c] * di[c]) + fabs(xi[c]) * r * r * gx_abs);
			rdw[c] += di[c] * xi[c] * r;
		}
	}
	for (size_t i = 0; i < nc; i++)
		gx[i] = dinp[i] - dinp0[i];   /* the task's own contribution */
	for (int c = 0; c < C; c++)
		gw[c] = dw[c] - dw0[c];
	double sx = max_abs(mx, nc) + 1e-3, sw = max_abs(rdw, C) + 1e-3;
	double ax = max_rel(gx, rdx, nc, sx), aw = max_rel(gw, rdw, C, sw);
	CHECK(ax < 1e-5 && aw < 1e-5, "rmsnorm N=%d C=%d: dinp error %.3g, dw error %.3g (analytic)", N, C, ax, aw);
	double fx = fd_check(rms_loss, &k, k.x, nc, gx, sx, 48, seed);
	double fw = fd_check(rms_loss, &k, k.w, C, gw, sw, 48, seed);
	CHECK(fx < 1e-5 && fw < 1e-5, "rmsnorm N=%d C=%d: dinp error %.3g, dw error %.3g (finite differences)",
	      N, C, fx, fw);

	if (ON_CUDA) {   /* the CPU kernels on the same inputs */
		float *co = xalloc(nc, sizeof(float)), *cr = xalloc(N, sizeof(float));
		float *cdx = fcopy(dinp0, nc), *cdw = fcopy(dw0, C);
		rmsnorm_forward_cpu(co, cr, x, w, N, C, eps);
		rmsnorm_backward_cpu(cdx, cdw, dout, x, w, cr, N, C);
		double e1 = max_rel_f(out, co, nc, 1.0), e2 = max_rel_f(rstd, cr, N, 0.0);
		double e3 = max_rel_f(dinp, cdx, nc, 1.0), e4 = max_rel_f(dw, cdw, C, 1.0);
		CHECK(e1 < tol && e2 < tol && e3 < 1e-5 && e4 < 1e-5, "rmsnorm N=%d C=%d: CUDA vs CPU kernel: out %.3g "
		      "rstd %.3g dinp %.3g dw %.3g", N, C, e1, e2, e3, e4);
		free(co); free(cr); free(cdx); free(cdw);
	}
	free(x); free(w); free(dout); free(dinp); free(dw); free(dinp0); free(dw0); free(out); free(rstd);
	free(k.x); free(k.w); free(k.out); free(k.rstd); free(rdx); free(rdw); free(mx); free(gx); free(gw);
}

/* ---------------------------------------------------------------------------
 * Rotary embedding */

/* table (T, hd): cos(t f_j) then sin(t f_j), f_j = theta^(-2j/hd), in double. */
static float *rope_table(int T, int hd, double theta)
{
	float *tab = xalloc((size_t)T * hd, sizeof(float));
	for (int t = 0; t < T; t++)
		for (int j = 0; j < hd / 2; j++) {
			double a = t * pow(theta, -2.0 * j / hd);
			tab[(size_t)t * hd + j] = (float)cos(a);
			tab[(size_t)t * hd + hd / 2 + j] = (float)sin(a);
		}
	return tab;
}

struct rope_case {
	int N, T, nh, hd;
	const float *tab, *dout;
	double *x, *y;
};

static void rope_ref(double *y, const double *x, const float *tab, int N, int T, int nh, int hd)
{
	int half = hd / 2;
	for (int n = 0; n < N; n++)
		for (int h = 0; h < nh; h++)
			for (int j = 0; j < half; j++) {
				size_t i1 = (size_t)n * nh * hd + (size_t)h * hd + j, i2 = i1 + half;
				double c = tab[(size_t)(n % T) * hd + j], s = tab[(size_t)(n % T) * hd + half + j];
				y[i1] = x[i1] * c - x[i2] * s;
				y[i2] = x[i2] * c + x[i1] * s;
			}
}

static double rope_loss(void *ctx)
{
	struct rope_case *k = ctx;
	rope_ref(k->y, k->x, k->tab, k->N, k->T, k->nh, k->hd);
	double L = 0;
	for (size_t i = 0; i < (size_t)k->N * k->nh * k->hd; i++)
		L += k->y[i] * k->dout[i];
	return L;
}

static void check_rope(int B, int T, int nh, int hd, uint64_t *seed)
{
	int N = B * T, C = nh * hd, half = hd / 2;
	size_t n = (size_t)N * C;
	float *tab = rope_table(T, hd, 10000.0), *x = frand(n, 2, seed), *dout = frand(n, 1, seed);
	float *y = fcopy(x, n), *back = NULL, *g = fcopy(dout, n);
	starpu_data_handle_t h[3];
	lspo_matrix_register(&h[0], y, N, C);
	lspo_matrix_register(&h[1], tab, T, hd);
	lspo_matrix_register(&h[2], g, N, C);
	CHECK(lspo_rope_submit(h[0], h[1], nh, hd, 0, 0, "rope:L0:fwd") == LSPO_OK, "rope fwd");
	CHECK(lspo_rope_submit(h[2], h[1], nh, hd, 1, 0, "rope:L0:bwd") == LSPO_OK, "rope bwd");
	starpu_data_acquire(h[0], STARPU_R);
	back = fcopy(y, n);   /* the forward's result, before the inverse below */
	starpu_data_release(h[0]);
	CHECK(lspo_rope_submit(h[0], h[1], nh, hd, 1, 0, "rope:L0:bwd") == LSPO_OK, "rope inverse");
	unregister_all(h, 3);
	float *fwd = back;
	back = y;   /* now forward then inverse */

	struct rope_case k = { N, T, nh, hd, tab, dout, dcopy(x, n), xalloc(n, sizeof(double)) };
	rope_ref(k.y, k.x, tab, N, T, nh, hd);
	double tol = 1e-6;
	double ef = max_rel(fwd, k.y, n, 1.0), eb = max_rel(back, k.x, n, 1.0);
	CHECK(ef < tol, "rope B=%d T=%d nh=%d hd=%d: forward error %.3g", B, T, nh, hd, ef);
	CHECK(eb < tol, "rope B=%d T=%d nh=%d hd=%d: forward then inverse differs from the input by %.3g",
	      B, T, nh, hd, eb);
	/* d sum(dout * rope(x)) / dx: x1 gets d1 c + d2 s, x2 gets d2 c - d1 s */
	double *rg = xalloc(n, sizeof(double));
	for (int r = 0; r < N; r++)
		for (int hh = 0; hh < nh; hh++)
			for (int j = 0; j < half; j++) {
				size_t i1 = (size_t)r * C + (size_t)hh * hd + j, i2 = i1 + half;
				double c = tab[(size_t)(r % T) * hd + j], s = tab[(size_t)(r % T) * hd + half + j];
				rg[i1] = dout[i1] * c + dout[i2] * s;
				rg[i2] = dout[i2] * c - dout[i1] * s;
			}
	double sg = max_abs(rg, n) + 1e-3;
	double ea = max_rel(g, rg, n, sg), efd = fd_check(rope_loss, &k, k.x, n, g, sg, 48, seed);
	CHECK(ea < 1e-6 && efd < 1e-5, "rope B=%d T=%d nh=%d hd=%d: gradient error %.3g (analytic), %.3g "
	      "(finite differences)", B, T, nh, hd, ea, efd);

	if (ON_CUDA) {
		float *cf = fcopy(x, n), *cg = fcopy(dout, n);
		rope_cpu(cf, tab, N, T, nh, hd, 0);
		rope_cpu(cg, tab, N, T, nh, hd, 1);
		double e1 = max_rel_f(fwd, cf, n, 1.0), e2 = max_rel_f(g, cg, n, 1.0);
		CHECK(e1 < tol && e2 < tol, "rope B=%d T=%d nh=%d hd=%d: CUDA vs CPU kernel: forward %.3g, inverse %.3g",
		      B, T, nh, hd, e1, e2);
		free(cf); free(cg);
	}
	free(tab); free(x); free(dout); free(y); free(fwd); free(g); free(k.x); free(k.y); free(rg);
}

/* ---------------------------------------------------------------------------
 * SwiGLU */

struct swiglu_case {
	size_t n;
	double *g, *u;
	const float *dout;
};

static double silu_d(double g)
{
	return g / (1.0 + exp(-g));
}

static double swiglu_loss(void *ctx)
{
	struct swiglu_case *k = ctx;
	double L = 0;
	for (size_t i = 0; i < k->n; i++)
		L += silu_d(k->g[i]) * k->u[i] * k->dout[i];
	return L;
}

static void check_swiglu(int N, int I, uint64_t *seed)
{
	size_t n = (size_t)N * I;
	float *gate = frand(n, 8, seed), *up = frand(n, 2, seed), *dout = frand(n, 1, seed);
	static const float extremes[] = { 0.0f, 30.0f, -30.0f, 100.0f, -100.0f, 87.5f, -87.5f, 1e-3f };
	for (size_t i = 0; i < n && i < sizeof(extremes) / sizeof(extremes[0]); i++)
		gate[(i * 7919) % n] = extremes[i];
	float *out = xalloc(n, sizeof(float)), *dgate = xalloc(n, sizeof(float)), *dup = xalloc(n, sizeof(float));
	for (size_t i = 0; i < n; i++)
		out[i] = dgate[i] = dup[i] = NAN;   /* written, not accumulated */
	starpu_data_handle_t h[6];
	lspo_matrix_register(&h[0], gate, N, I);
	lspo_matrix_register(&h[1], up, N, I);
	lspo_matrix_register(&h[2], out, N, I);
	lspo_matrix_register(&h[3], dout, N, I);
	lspo_matrix_register(&h[4], dgate, N, I);
	lspo_matrix_register(&h[5], dup, N, I);
	CHECK(lspo_swiglu_fwd_submit(h[0], h[1], h[2], 0, "swiglu:L0:fwd") == LSPO_OK, "swiglu fwd");
	CHECK(lspo_swiglu_bwd_submit(h[0], h[1], h[3], h[4], h[5], 0, "swiglu:L0:bwd") == LSPO_OK, "swiglu bwd");
	unregister_all(h, 6);

	struct swiglu_case k = { n, dcopy(gate, n), dcopy(up, n), dout };
	double *ro = xalloc(n, sizeof(double)), *rdg = xalloc(n, sizeof(double)), *rdu = xalloc(n, sizeof(double));
	for (size_t i = 0; i < n; i++) {
		double g = k.g[i], s = 1.0 / (1.0 + exp(-g));
		ro[i] = g * s * k.u[i];
		rdg[i] = dout[i] * k.u[i] * s * (1.0 + g * (1.0 - s));
		rdu[i] = dout[i] * g * s;
	}
	double tol = ON_CUDA ? 2e-6 : 1e-6;
	double eo = max_rel(out, ro, n, 1.0), eg = max_rel(dgate, rdg, n, 1.0), eu = max_rel(dup, rdu, n, 1.0);
	CHECK(eo < tol && eg < tol && eu < tol, "swiglu N=%d I=%d: out %.3g, dgate %.3g, dup %.3g (analytic)",
	      N, I, eo, eg, eu);
	double sg = max_abs(rdg, n) + 1e-3, su = max_abs(rdu, n) + 1e-3;
	double fg = fd_check(swiglu_loss, &k, k.g, n, dgate, sg, 64, seed);
	double fu = fd_check(swiglu_loss, &k, k.u, n, dup, su, 64, seed);
	CHECK(fg < 1e-5 && fu < 1e-5, "swiglu N=%d I=%d: dgate %.3g, dup %.3g (finite differences)", N, I, fg, fu);

	if (ON_CUDA) {
		float *co = xalloc(n, sizeof(float)), *cg = xalloc(n, sizeof(float)), *cu = xalloc(n, sizeof(float));
		swiglu_forward_cpu(co, gate, up, n);
		swiglu_backward_cpu(cg, cu, gate, up, dout, n);
		double e1 = max_rel_f(out, co, n, 1.0), e2 = max_rel_f(dgate, cg, n, 1.0), e3 = max_rel_f(dup, cu, n, 1.0);
		CHECK(e1 < tol && e2 < tol && e3 < tol, "swiglu N=%d I=%d: CUDA vs CPU kernel: out %.3g dgate %.3g "
		      "dup %.3g", N, I, e1, e2, e3);
		free(co); free(cg); free(cu);
	}
	free(gate); free(up); free(dout); free(out); free(dgate); free(dup);
	free(k.g); free(k.u); free(ro); free(rdg); free(rdu);
}

/* ---------------------------------------------------------------------------
 * Attention with grouped K/V heads */

struct gqa_case {
	int B, T, nh, nkv, hd;
	double *q, *k, *v, *out, *lse;
	const float *dout;
};

/* out (B*T, nh*hd), lse (B*nh*T) from q (B*T, nh*hd), k, v (B*T, nkv*hd). */
static void gqa_ref(double *out, double *lse, const double *q, const double *k, const double *v,
                    int B, int T, int nh, int nkv, int hd)
{
	int ldq = nh * hd, ldk = nkv * hd, rep = nh / nkv;
	double scale = 1.0 / sqrt((double)hd), *s = xalloc(T, sizeof(double));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < nh; h++)
			for (int t = 0; t < T; t++) {
				int g = h / rep;
				const double *qt = q + ((size_t)b * T + t) * ldq + (size_t)h * hd;
				double mx = -INFINITY;
				for (int j = 0; j <= t; j++) {
					const double *kj = k + ((size_t)b * T + j) * ldk + (size_t)g * hd;
					double d = 0;
					for (int e = 0; e < hd; e++)
						d += qt[e] * kj[e];
					s[j] = d * scale;
					mx = fmax(mx, s[j]);
				}
				double sum = 0;
				for (int j = 0; j <= t; j++)
					sum += exp(s[j] - mx);
				double *o = out + ((size_t)b * T + t) * ldq + (size_t)h * hd;
				for (int e = 0; e < hd; e++)
					o[e] = 0;
				for (int j = 0; j <= t; j++) {
					const double *vj = v + ((size_t)b * T + j) * ldk + (size_t)g * hd;
					double p = exp(s[j] - mx) / sum;
					for (int e = 0; e < hd; e++)
						o[e] += p * vj[e];
				}
				lse[((size_t)b * nh + h) * T + t] = mx + log(sum);
			}
	free(s);
}

/* Analytic gradients of sum(dout * out) in double: dS = P (dP - sum_j P dP).
 * mq, mk: dq and dk with every term taken in absolute value, the size of
 * the terms that cancel (dq = dk = 0 at T = 1) and the scale of their errors. */
static void gqa_ref_grad(double *dq, double *dk, double *dv, double *mq, double *mk, const double *q,
                         const double *k, const double *v, const float *dout, int B, int T, int nh,
                         int nkv, int hd)
{
	int ldq = nh * hd, ldk = nkv * hd, rep = nh / nkv;
	double scale = 1.0 / sqrt((double)hd);
	double *p = xalloc(T, sizeof(double)), *dp = xalloc(T, sizeof(double));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < nh; h++)
			for (int t = 0; t < T; t++) {
				int g = h / rep;
				size_t qi = ((size_t)b * T + t) * ldq + (size_t)h * hd;
				double mx = -INFINITY, sum = 0, D = 0;
				for (int j = 0; j <= t; j++) {
					size_t kj = ((size_t)b * T + j) * ldk + (size_t)g * hd;
					double d = 0, e = 0;
					for (int c = 0; c < hd; c++) {
						d += q[qi + c] * k[kj + c];
						e += dout[qi + c] * v[kj + c];
					}
					p[j] = d * scale;
					dp[j] = e;
					mx = fmax(mx, p[j]);
				}
				for (int j = 0; j <= t; j++)
					sum += (p[j] = exp(p[j] - mx));
				for (int j = 0; j <= t; j++) {
					p[j] /= sum;
					D += p[j] * dp[j];
				}
				for (int j = 0; j <= t; j++) {
					size_t kj = ((size_t)b * T + j) * ldk + (size_t)g * hd;
					double ds = p[j] * (dp[j] - D) * scale, ma = p[j] * (fabs(dp[j]) + fabs(D)) * scale;
					for (int c = 0; c < hd; c++) {
						dv[kj + c] += p[j] * dout[qi + c];
						dq[qi + c] += ds * k[kj + c];
						dk[kj + c] += ds * q[qi + c];
						mq[qi + c] += ma * fabs(k[kj + c]);
						mk[kj + c] += ma * fabs(q[qi + c]);
					}
				}
			}
	free(p);
	free(dp);
}

static double gqa_loss(void *ctx)
{
	struct gqa_case *c = ctx;
	gqa_ref(c->out, c->lse, c->q, c->k, c->v, c->B, c->T, c->nh, c->nkv, c->hd);
	double L = 0;
	for (size_t i = 0; i < (size_t)c->B * c->T * c->nh * c->hd; i++)
		L += c->out[i] * c->dout[i];
	return L;
}

/* Forward then backward as tasks. */
static void gqa_tasks(float *out, float *lse, float *dq, float *dk, float *dv, const float *q,
                      const float *k, const float *v, const float *dout, int B, int T, int nh, int nkv, int hd)
{
	int N = B * T;
	starpu_data_handle_t h[10];
	lspo_matrix_register(&h[0], (float *)q, N, nh * hd);
	lspo_matrix_register(&h[1], (float *)k, N, nkv * hd);
	lspo_matrix_register(&h[2], (float *)v, N, nkv * hd);
	lspo_matrix_register(&h[3], out, N, nh * hd);
	lspo_matrix_register(&h[4], lse, 1, B * nh * T);
	lspo_matrix_register(&h[5], (float *)dout, N, nh * hd);
	lspo_matrix_register(&h[6], dq, N, nh * hd);
	lspo_matrix_register(&h[7], dk, N, nkv * hd);
	lspo_matrix_register(&h[8], dv, N, nkv * hd);
	int rc = lspo_gqa_attention_fwd_submit(h[0], h[1], h[2], h[3], h[4], B, nh, nkv, hd, 0,
	                                       "gqa_attention:L0:fwd");
	CHECK(rc == LSPO_OK, "gqa attention fwd submit returned %d", rc);
	rc = lspo_gqa_attention_bwd_submit(h[5], h[0], h[1], h[2], h[3], h[4], h[6], h[7], h[8], B, nh, nkv, hd,
	                                   0, "gqa_attention:L0:bwd");
	CHECK(rc == LSPO_OK, "gqa attention bwd submit returned %d", rc);
	unregister_all(h, 9);
}

static void check_gqa(int B, int T, int nh, int nkv, int hd, int fd_samples, uint64_t *seed)
{
	size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nl = (size_t)B * nh * T;
	float *q = frand(nq, 2, seed), *k = frand(nk, 2, seed), *v = frand(nk, 1, seed);
	float *dout = frand(nq, 1, seed);
	float *out = xalloc(nq, sizeof(float)), *lse = xalloc(nl, sizeof(float));
	float *dq = xalloc(nq, sizeof(float)), *dk = xalloc(nk, sizeof(float)), *dv = xalloc(nk, sizeof(float));
	for (size_t i = 0; i < nq; i++)
		dq[i] = NAN;   /* the backward overwrites every element */
	for (size_t i = 0; i < nk; i++)
		dk[i] = dv[i] = NAN;
	gqa_tasks(out, lse, dq, dk, dv, q, k, v, dout, B, T, nh, nkv, hd);

	struct gqa_case c = { B, T, nh, nkv, hd, dcopy(q, nq), dcopy(k, nk), dcopy(v, nk),
	                      xalloc(nq, sizeof(double)), xalloc(nl, sizeof(double)), dout };
	gqa_ref(c.out, c.lse, c.q, c.k, c.v, B, T, nh, nkv, hd);
	double tol = ON_CUDA ? 5e-6 : 2e-6;
	double eo = max_rel(out, c.out, nq, 1.0), el = max_rel(lse, c.lse, nl, 1.0);
	CHECK(eo < tol && el < tol, "gqa B=%d T=%d nh=%d nkv=%d hd=%d: out error %.3g, lse error %.3g",
	      B, T, nh, nkv, hd, eo, el);

	double *rq = xalloc(nq, sizeof(double)), *rk = xalloc(nk, sizeof(double)), *rv = xalloc(nk, sizeof(double));
	double *mq = xalloc(nq, sizeof(double)), *mk = xalloc(nk, sizeof(double));
	gqa_ref_grad(rq, rk, rv, mq, mk, c.q, c.k, c.v, dout, B, T, nh, nkv, hd);
	double sq = max_abs(mq, nq) + 1e-3, sk = max_abs(mk, nk) + 1e-3, sv = max_abs(rv, nk) + 1e-3;
	double aq = max_rel(dq, rq, nq, sq), ak = max_rel(dk, rk, nk, sk), av = max_rel(dv, rv, nk, sv);
	CHECK(aq < 1e-5 && ak < 1e-5 && av < 1e-5, "gqa B=%d T=%d nh=%d nkv=%d hd=%d: dq %.3g, dk %.3g, dv %.3g "
	      "(analytic)", B, T, nh, nkv, hd, aq, ak, av);
	if (fd_samples > 0) {
		double fq = fd_check(gqa_loss, &c, c.q, nq, dq, sq, fd_samples, seed);
		double fk = fd_check(gqa_loss, &c, c.k, nk, dk, sk, fd_samples, seed);
		double fv = fd_check(gqa_loss, &c, c.v, nk, dv, sv, fd_samples, seed);
		CHECK(fq < 1e-5 && fk < 1e-5 && fv < 1e-5, "gqa B=%d T=%d nh=%d nkv=%d hd=%d: dq %.3g, dk %.3g, "
		      "dv %.3g (finite differences)", B, T, nh, nkv, hd, fq, fk, fv);
	}

	if (ON_CUDA) {   /* the CPU kernels on the same inputs */
		float *co = xalloc(nq, sizeof(float)), *cl = xalloc(nl, sizeof(float));
		float *cq = xalloc(nq, sizeof(float)), *ck = xalloc(nk, sizeof(float)), *cv = xalloc(nk, sizeof(float));
		gqa_attention_forward_cpu(co, cl, q, k, v, B, T, nh, nkv, hd);
		gqa_attention_backward_cpu(cq, ck, cv, dout, q, k, v, co, cl, B, T, nh, nkv, hd);
		double e1 = max_rel_f(out, co, nq, 1.0), e2 = max_rel_f(lse, cl, nl, 1.0);
		double e3 = max_rel_f(dq, cq, nq, sq), e4 = max_rel_f(dk, ck, nk, sk), e5 = max_rel_f(dv, cv, nk, sv);
		CHECK(e1 < tol && e2 < tol && e3 < 1e-5 && e4 < 1e-5 && e5 < 1e-5, "gqa B=%d T=%d nh=%d nkv=%d hd=%d: "
		      "CUDA vs CPU kernel: out %.3g lse %.3g dq %.3g dk %.3g dv %.3g", B, T, nh, nkv, hd,
		      e1, e2, e3, e4, e5);
		free(co); free(cl); free(cq); free(ck); free(cv);
	}
	free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
	free(c.q); free(c.k); free(c.v); free(c.out); free(c.lse); free(rq); free(rk); free(rv); free(mq); free(mk);
}

/* One task per batch row on sub-handles (row blocks of q, k, v, out and
 * their gradients, column blocks of lse), as a caller splitting the work
 * would submit them: the same bits as one task over the whole batch (every
 * (batch, head) is computed alone, in the same order, by both). */
static void check_gqa_split(int B, int T, int nh, int nkv, int hd, uint64_t *seed)
{
	int N = B * T;
	size_t nq = (size_t)N * nh * hd, nk = (size_t)N * nkv * hd, nl = (size_t)B * nh * T;
	float *q = frand(nq, 2, seed), *k = frand(nk, 2, seed), *v = frand(nk, 1, seed), *dout = frand(nq, 1, seed);
	float *o[2], *l[2], *dq[2], *dk[2], *dv[2];
	for (int s = 0; s < 2; s++) {
		o[s] = xalloc(nq, sizeof(float));
		l[s] = xalloc(nl, sizeof(float));
		dq[s] = xalloc(nq, sizeof(float));
		dk[s] = xalloc(nk, sizeof(float));
		dv[s] = xalloc(nk, sizeof(float));
	}
	gqa_tasks(o[0], l[0], dq[0], dk[0], dv[0], q, k, v, dout, B, T, nh, nkv, hd);

	starpu_data_handle_t h[9];
	float *ptr[9] = { q, k, v, o[1], l[1], dout, dq[1], dk[1], dv[1] };
	int cols[9] = { nh * hd, nkv * hd, nkv * hd, nh * hd, 0, nh * hd, nh * hd, nkv * hd, nkv * hd };
	for (int i = 0; i < 9; i++) {
		if (i == 4)
			lspo_matrix_register(&h[i], ptr[i], 1, (int)nl);
		else
			lspo_matrix_register(&h[i], ptr[i], N, cols[i]);
		struct starpu_data_filter f = {
			.filter_func = i == 4 ? starpu_matrix_filter_block : starpu_matrix_filter_vertical_block,
			.nchildren = (unsigned)B,
		};
		starpu_data_partition(h[i], &f);
	}
	for (int b = 0; b < B; b++) {
		starpu_data_handle_t c[9];
		for (int i = 0; i < 9; i++)
			c[i] = starpu_data_get_sub_data(h[i], 1, b);
		CHECK(lspo_gqa_attention_fwd_submit(c[0], c[1], c[2], c[3], c[4], 1, nh, nkv, hd, 0,
		                                    "gqa_attention:L0:fwd") == LSPO_OK, "split fwd");
		CHECK(lspo_gqa_attention_bwd_submit(c[5], c[0], c[1], c[2], c[3], c[4], c[6], c[7], c[8], 1, nh, nkv,
		                                    hd, 0, "gqa_attention:L0:bwd") == LSPO_OK, "split bwd");
	}
	for (int i = 0; i < 9; i++) {
		starpu_data_unpartition(h[i], STARPU_MAIN_RAM);
		starpu_data_unregister(h[i]);
	}
	int same = !memcmp(o[0], o[1], nq * sizeof(float)) && !memcmp(l[0], l[1], nl * sizeof(float))
	           && !memcmp(dq[0], dq[1], nq * sizeof(float)) && !memcmp(dk[0], dk[1], nk * sizeof(float))
	           && !memcmp(dv[0], dv[1], nk * sizeof(float));
	/* On a CUDA worker the two launches differ in grid size only: the same bits too. */
	CHECK(same, "gqa B=%d T=%d nh=%d nkv=%d hd=%d: per-batch tasks on sub-handles differ from one task", B, T,
	      nh, nkv, hd);
	free(q); free(k); free(v); free(dout);
	for (int s = 0; s < 2; s++) {
		free(o[s]); free(l[s]); free(dq[s]); free(dk[s]); free(dv[s]);
	}
}

/* A Llama-like shape (T = 256, 8 heads, 2 K/V heads, hd = 64): forward
 * against the double reference on every output, and the time of one
 * forward and backward. */
static void check_gqa_llama(uint64_t *seed)
{
	int B = 1, T = 256, nh = 8, nkv = 2, hd = 64;
	size_t nq = (size_t)B * T * nh * hd, nk = (size_t)B * T * nkv * hd, nl = (size_t)B * nh * T;
	float *q = frand(nq, 1, seed), *k = frand(nk, 1, seed), *v = frand(nk, 1, seed);
	float *dout = frand(nq, 1, seed);
	float *out = xalloc(nq, sizeof(float)), *lse = xalloc(nl, sizeof(float));
	float *dq = xalloc(nq, sizeof(float)), *dk = xalloc(nk, sizeof(float)), *dv = xalloc(nk, sizeof(float));
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	gqa_tasks(out, lse, dq, dk, dv, q, k, v, dout, B, T, nh, nkv, hd);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("gqa attention B=%d T=%d nh=%d nkv=%d hd=%d: forward + backward tasks %.1f ms (%s)\n", B, T, nh,
	       nkv, hd, (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6, ON_CUDA ? "CUDA" : "CPU");
	double *dqd = dcopy(q, nq), *dkd = dcopy(k, nk), *dvd = dcopy(v, nk);
	double *ro = xalloc(nq, sizeof(double)), *rl = xalloc(nl, sizeof(double));
	gqa_ref(ro, rl, dqd, dkd, dvd, B, T, nh, nkv, hd);
	double eo = max_rel(out, ro, nq, 1.0), el = max_rel(lse, rl, nl, 1.0);
	CHECK(eo < 1e-5 && el < 1e-5, "Llama shape: out error %.3g, lse error %.3g", eo, el);
	double *rq = xalloc(nq, sizeof(double)), *rk = xalloc(nk, sizeof(double)), *rv = xalloc(nk, sizeof(double));
	double *mq = xalloc(nq, sizeof(double)), *mk = xalloc(nk, sizeof(double));
	gqa_ref_grad(rq, rk, rv, mq, mk, dqd, dkd, dvd, dout, B, T, nh, nkv, hd);
	double aq = max_rel(dq, rq, nq, max_abs(mq, nq)), ak = max_rel(dk, rk, nk, max_abs(mk, nk));
	double av = max_rel(dv, rv, nk, max_abs(rv, nk));
	CHECK(aq < 1e-5 && ak < 1e-5 && av < 1e-5, "Llama shape: dq %.3g, dk %.3g, dv %.3g (analytic)", aq, ak, av);
	free(q); free(k); free(v); free(dout); free(out); free(lse); free(dq); free(dk); free(dv);
	free(dqd); free(dkd); free(dvd); free(ro); free(rl); free(rq); free(rk); free(rv); free(mq); free(mk);
}

/* ---------------------------------------------------------------------------
 * proj_apply_t */

/* ELL (rows, r): r distinct column indices in [0, d) per row, values in [-1, 1). */
static void ell_rand(int rows, int d, int r, int32_t *idx, float *val, uint64_t *seed)
{
	for (int i = 0; i < rows; i++)
		for (int kk = 0; kk < r; kk++) {
			int c, dup;
			do {
				c = (int)((test_uniform(seed) + 1.0f) * 0.5f * (float)d);
				c = c < 0 ? 0 : (c >= d ? d - 1 : c);
				dup = 0;
				for (int j = 0; j < kk; j++)
					dup |= idx[(size_t)i * r + j] == c;
			} while (dup);
			idx[(size_t)i * r + kk] = c;
			val[(size_t)i * r + kk] = test_uniform(seed);
		}
}

static double *ell_dense(int rows, int d, int r, const int32_t *idx, const float *val)
{
	double *S = xalloc((size_t)rows * d, sizeof(double));
	for (int i = 0; i < rows; i++)
		for (int kk = 0; kk < r; kk++)
			S[(size_t)i * d + idx[(size_t)i * r + kk]] += val[(size_t)i * r + kk];
	return S;
}

/* One apply task (transposed or not) on W (m, n) with P (m, r) and Q (n, r). */
static void apply_task(int trans, float *W, int m, int n, int d, int r, int32_t *pidx, float *pval,
                       int32_t *qidx, float *qval, float *D, float alpha, float lr_wd)
{
	starpu_data_handle_t h[6];
	lspo_matrix_register(&h[0], W, m, n);
	lspo_matrix_register_elem(&h[1], pidx, m, r, sizeof(int32_t));
	lspo_matrix_register(&h[2], pval, m, r);
	lspo_matrix_register_elem(&h[3], qidx, n, r, sizeof(int32_t));
	lspo_matrix_register(&h[4], qval, n, r);
	lspo_matrix_register(&h[5], D, d, d);
	int rc = trans ? lspo_proj_apply_t_submit(h[0], h[1], h[2], h[3], h[4], h[5], alpha, lr_wd, 0,
	                                          "proj_apply:L0:apply")
	               : lspo_proj_apply_submit(h[0], h[1], h[2], h[3], h[4], h[5], alpha, lr_wd, 0,
	                                        "proj_apply:L0:apply");
	CHECK(rc == LSPO_OK, "proj_apply%s submit returned %d", trans ? "_t" : "", rc);
	unregister_all(h, 6);
}

/* W (m, n) += alpha P Delta^T Q^T after the decay, against a dense double
 * reference; then, as the lead uses it for (out, in) weights, apply_t on
 * W^T (n, m) with Q and P swapped against the transpose of apply on W. */
static void check_apply_t(int m, int n, int d, int r, float alpha, float lr_wd, uint64_t *seed)
{
	int32_t *pidx = xalloc((size_t)m * r, sizeof(int32_t)), *qidx = xalloc((size_t)n * r, sizeof(int32_t));
	float *pval = xalloc((size_t)m * r, sizeof(float)), *qval = xalloc((size_t)n * r, sizeof(float));
	ell_rand(m, d, r, pidx, pval, seed);
	ell_rand(n, d, r, qidx, qval, seed);
	float *W0 = frand((size_t)m * n, 1, seed), *D = frand((size_t)d * d, 1, seed);
	float *W = fcopy(W0, (size_t)m * n);
	apply_task(1, W, m, n, d, r, pidx, pval, qidx, qval, D, alpha, lr_wd);

	double *P = ell_dense(m, d, r, pidx, pval), *Q = ell_dense(n, d, r, qidx, qval);
	double worst = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double s = 0, sa = 0;   /* sum_a,b P[i,a] Delta[b,a] Q[j,b] and its magnitude */
			for (int a = 0; a < d; a++)
				for (int b = 0; b < d; b++) {
					double t = P[(size_t)i * d + a] * D[(size_t)b * d + a] * Q[(size_t)j * d + b];
					s += t;
					sa += fabs(t);
				}
			double w0 = W0[(size_t)i * n + j], ref = (1.0 - (double)lr_wd) * w0 + alpha * s;
			double e = fabs(W[(size_t)i * n + j] - ref) / (fabs(w0) + fabs(alpha) * sa + 1e-30);
			if (!(e <= worst))
				worst = isnan(e) ? INFINITY : e;
		}
	CHECK(worst < 1e-6, "proj_apply_t m=%d n=%d d=%d r=%d alpha=%g lr_wd=%g: error %.3g vs dense P Delta^T Q^T",
	      m, n, d, r, alpha, lr_wd, worst);

	/* W^T (n, m) storage with P and Q swapped: apply_t gives (apply on W)^T */
	float *A = fcopy(W0, (size_t)m * n), *Bt = xalloc((size_t)m * n, sizeof(float));
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++)
			Bt[(size_t)j * m + i] = W0[(size_t)i * n + j];
	apply_task(0, A, m, n, d, r, pidx, pval, qidx, qval, D, alpha, lr_wd);
	apply_task(1, Bt, n, m, d, r, qidx, qval, pidx, pval, D, alpha, lr_wd);
	double wt = 0;
	for (int i = 0; i < m; i++)
		for (int j = 0; j < n; j++) {
			double e = fabs((double)Bt[(size_t)j * m + i] - A[(size_t)i * n + j]) / (fabs(A[(size_t)i * n + j]) + 1.0);
			if (!(e <= wt))
				wt = isnan(e) ? INFINITY : e;
		}
	CHECK(wt < 1e-5, "proj_apply_t m=%d n=%d d=%d r=%d: on W^T with P, Q swapped differs from proj_apply's "
	      "transpose by %.3g", m, n, d, r, wt);

	if (ON_CUDA) {
		float *cw = fcopy(W0, (size_t)m * n), *e = xalloc((size_t)d * n, sizeof(float));
		proj_apply_t_cpu(m, n, d, r, pidx, pval, qidx, qval, D, d, alpha, lr_wd, cw, n, e);
		double ec = max_rel_f(W, cw, (size_t)m * n, 1.0);
		CHECK(ec < 1e-5, "proj_apply_t m=%d n=%d: CUDA vs CPU kernel %.3g", m, n, ec);
		free(cw); free(e);
	}
	free(pidx); free(qidx); free(pval); free(qval); free(W0); free(D); free(W); free(P); free(Q);
	free(A); free(Bt);
}

/* ---------------------------------------------------------------------------
 * Shapes the helpers must refuse */

static void check_refusals(void)
{
	float buf[256] = { 0 };
	starpu_data_handle_t x46, x48, w6, w5, r4, r3, t26, t36, t25, l24, x44;
	lspo_matrix_register(&x46, buf, 4, 6);
	lspo_matrix_register(&x48, buf, 4, 8);
	lspo_matrix_register(&w6, buf, 1, 6);
	lspo_matrix_register(&w5, buf, 1, 5);
	lspo_matrix_register(&r4, buf, 1, 4);
	lspo_matrix_register(&r3, buf, 1, 3);
	lspo_matrix_register(&t26, buf, 2, 6);
	lspo_matrix_register(&t36, buf, 3, 6);
	lspo_matrix_register(&t25, buf, 2, 5);
	lspo_matrix_register(&l24, buf, 1, 24);
	lspo_matrix_register(&x44, buf, 4, 4);
	CHECK(lspo_rmsnorm_fwd_submit(x46, w5, x46, r4, 1e-5f, 0, "rmsnorm:L0:bad") == LSPO_EINVAL, "w 1x5 accepted");
	CHECK(lspo_rmsnorm_fwd_submit(x46, w6, x46, r3, 1e-5f, 0, "rmsnorm:L0:bad") == LSPO_EINVAL, "rstd 1x3 accepted");
	CHECK(lspo_rmsnorm_fwd_submit(x46, w6, x48, r4, 1e-5f, 0, "rmsnorm:L0:bad") == LSPO_EINVAL, "out 4x8 accepted");
	CHECK(lspo_rmsnorm_fwd_submit(x46, w6, x46, r4, 0.0f, 0, "rmsnorm:L0:bad") == LSPO_EINVAL, "eps 0 accepted");
	CHECK(lspo_rmsnorm_bwd_submit(x46, x46, w6, r4, x48, w6, 0, "rmsnorm:L0:bad") == LSPO_EINVAL,
	      "dinp 4x8 accepted");
	CHECK(lspo_rope_submit(x46, t26, 2, 3, 0, 0, "rope:L0:bad") == LSPO_EINVAL, "odd head_dim accepted");
	CHECK(lspo_rope_submit(x46, t36, 1, 6, 0, 0, "rope:L0:bad") == LSPO_EINVAL, "T = 3 not dividing 4 accepted");
	CHECK(lspo_rope_submit(x46, t25, 1, 6, 0, 0, "rope:L0:bad") == LSPO_EINVAL, "table 2x5 accepted");
	CHECK(lspo_rope_submit(x46, t26, 2, 6, 0, 0, "rope:L0:bad") == LSPO_EINVAL, "2 heads of 6 in 6 columns accepted");
	CHECK(lspo_swiglu_fwd_submit(x46, x48, x46, 0, "swiglu:L0:bad") == LSPO_EINVAL, "up 4x8 accepted");
	CHECK(lspo_swiglu_bwd_submit(x46, x46, x46, x46, x48, 0, "swiglu:L0:bad") == LSPO_EINVAL, "dup 4x8 accepted");
	/* q (4, 8): B = 2, T = 2, nh = 4 heads of 2, nkv = 2 -> k (4, 4), lse (1, 16) */
	CHECK(lspo_gqa_attention_fwd_submit(x48, x44, x44, x48, l24, 2, 4, 2, 2, 0, "gqa:L0:bad") == LSPO_EINVAL,
	      "lse 1x24 for 1x16 accepted");
	CHECK(lspo_gqa_attention_fwd_submit(x48, x44, x44, x48, l24, 2, 4, 3, 2, 0, "gqa:L0:bad") == LSPO_EINVAL,
	      "nkv 3 not dividing nh 4 accepted");
	CHECK(lspo_gqa_attention_fwd_submit(x48, x48, x44, x48, l24, 3, 4, 2, 2, 0, "gqa:L0:bad") == LSPO_EINVAL,
	      "B = 3 accepted");
	CHECK(lspo_gqa_attention_fwd_submit(x48, x48, x44, x48, r4, 2, 4, 2, 2, 0, "gqa:L0:bad") == LSPO_EINVAL,
	      "k 4x8 accepted");
	/* the shapes right (on memory of their own: this one runs) */
	float good[32 + 16 + 16 + 32 + 16] = { 0 };
	starpu_data_handle_t g[5], l16;
	lspo_matrix_register(&g[0], good, 4, 8);
	lspo_matrix_register(&g[1], good + 32, 4, 4);
	lspo_matrix_register(&g[2], good + 48, 4, 4);
	lspo_matrix_register(&g[3], good + 64, 4, 8);
	lspo_matrix_register(&g[4], good + 96, 1, 16);
	CHECK(lspo_gqa_attention_fwd_submit(g[0], g[1], g[2], g[3], g[4], 2, 4, 2, 2, 0, "gqa:L0:ok") == LSPO_OK,
	      "q 4x8, k and v 4x4, lse 1x16 refused");
	unregister_all(g, 5);
	lspo_matrix_register(&l16, buf, 1, 16);
	CHECK(lspo_gqa_attention_bwd_submit(x48, x48, x44, x44, x48, l16, x48, x48, x44, 2, 4, 2, 2, 0, "gqa:L0:bad")
	      == LSPO_EINVAL, "dk 4x8 accepted");
	CHECK(lspo_gqa_attention_bwd_submit(x44, x48, x44, x44, x48, l16, x48, x44, x44, 2, 4, 2, 2, 0, "gqa:L0:bad")
	      == LSPO_EINVAL, "dout 4x4 accepted");
	CHECK(lspo_gqa_attention_bwd_submit(x48, x48, x44, x44, x48, l16, x46, x44, x44, 2, 4, 2, 2, 0, "gqa:L0:bad")
	      == LSPO_EINVAL, "dq 4x6 accepted");
	starpu_data_unregister(l16);
	starpu_data_handle_t hs[] = { x46, x48, w6, w5, r4, r3, t26, t36, t25, l24, x44 };
	unregister_all(hs, (int)(sizeof(hs) / sizeof(hs[0])));
}

int main(void)
{
	struct lspo_ctx *ctx = ON_CUDA ? test_start("eager", 0, 1) : test_start("eager", -1, 0);
	uint64_t seed = 4242;
	int cases = 0;

	static const int rms[][2] = { { 1, 1 }, { 3, 5 }, { 7, 17 }, { 5, 64 }, { 11, 129 }, { 2, 1000 } };
	for (int i = 0; i < 6; i++, cases += 2) {
		check_rmsnorm(rms[i][0], rms[i][1], 1e-5f, &seed);
		check_rmsnorm(rms[i][0], rms[i][1], 1e-6f, &seed);
	}

	static const int ropes[][4] = { { 1, 1, 1, 2 }, { 2, 7, 3, 8 }, { 3, 13, 2, 16 }, { 2, 5, 5, 10 },
	                                { 1, 19, 4, 64 } };
	for (int i = 0; i < 5; i++, cases++)
		check_rope(ropes[i][0], ropes[i][1], ropes[i][2], ropes[i][3], &seed);

	static const int sw[][2] = { { 1, 1 }, { 3, 7 }, { 5, 33 }, { 7, 129 } };
	for (int i = 0; i < 4; i++, cases++)
		check_swiglu(sw[i][0], sw[i][1], &seed);

	/* GQA ratios 1, 2, 4 (nkv = nh, nh/2, nh/4), head_dim 8 and 16, T not a
	 * multiple of anything, over the CPU's 64-row blocks and CUDA's 32-row tiles */
	static const int Ts[] = { 1, 5, 19, 70 }, hds[] = { 8, 16 }, nkvs[] = { 4, 2, 1 };
	for (int it = 0; it < 4; it++)
		for (int ih = 0; ih < 2; ih++)
			for (int ik = 0; ik < 3; ik++, cases++) {
				int B = 1 + (it + ik) % 2;
				check_gqa(B, Ts[it], 4, nkvs[ik], hds[ih], Ts[it] > 20 ? 12 : 24, &seed);
			}
	check_gqa(2, 33, 8, 2, 8, 12, &seed);   /* 4 query heads per K/V head, 2 groups */
	check_gqa(1, 9, 3, 3, 16, 12, &seed);
	check_gqa(1, 9, 6, 3, 16, 12, &seed);   /* nh not a power of two */
	check_gqa_split(3, 21, 4, 2, 8, &seed);
	cases += 4;
	check_gqa_llama(&seed);

	static const int ap[][4] = { { 5, 7, 4, 2 }, { 33, 17, 8, 3 }, { 70, 40, 16, 4 }, { 9, 100, 12, 1 } };
	for (int i = 0; i < 4; i++, cases += 2) {
		check_apply_t(ap[i][0], ap[i][1], ap[i][2], ap[i][3], 1.0f, 0.0f, &seed);
		check_apply_t(ap[i][0], ap[i][1], ap[i][2], ap[i][3], -0.37f, 0.01f, &seed);
	}
	check_refusals();

	printf("%d llama op cases on %s\n", cases, ON_CUDA ? "CUDA" : "CPU");
	lspo_ctx_destroy(ctx);
	return test_finish(ON_CUDA ? "test_llama_ops_cuda" : "test_llama_ops");
}
