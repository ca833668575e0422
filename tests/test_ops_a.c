/*
 * test_ops_a.c - the encoder, layernorm, gelu, residual/accumulate and xent
 * codelets on StarPU CPU workers, through their submit helpers, on tiny and
 * odd shapes (N in {1, 7, 33}, C in {1, 5, 48}, V in {3, 257}):
 *   - every forward against a double-precision reference written here;
 *   - every backward against central differences of that double reference,
 *     through a scalar loss L = sum(out * R) with a fixed random R (xent's
 *     interface has one scalar dloss, so there R = dloss everywhere), with
 *     gradient buffers pre-filled so that accumulation (+=) is checked, and
 *     written-only outputs pre-filled with NaN so that overwriting is checked;
 *   - the submit helpers refuse mismatched shapes.
 *
 * Tolerances.  Forward: per element, |got - ref| <= 1e-5 * (magnitude of the
 * terms that formed it); float kernels over at most 257 terms are ~1e-6 off.
 * Backward: ||got - fd||_inf <= 1e-4 * ||fd||_inf (1e-4 as a floor where the
 * gradient is 0).  The differences are taken in double with h = 1e-5 on O(1)
 * inputs, so they are exact to ~1e-10; the float kernels sum at most 48 rows
 * or 257 columns, ~1e-6 relative; a wrong formula is off by O(1).
 */
#include <string.h>

#include <starpu.h>

#include "common.h"
#include "encoder.h"
#include "gelu.h"
#include "layernorm.h"
#include "residual.h"
#include "xent.h"

#define FWD_TOL 1e-5
#define GRAD_TOL 1e-4
#define FD_H 1e-5

static double worst_fwd, worst_grad;

static double *dalloc(size_t n)
{
	double *p = calloc(n ? n : 1, sizeof(double));
	if (!p) {
		fprintf(stderr, "out of memory\n");
		exit(TEST_ERROR);
	}
	return p;
}

static void fill_nan(float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] = NAN;
}

static void to_double(double *d, const float *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		d[i] = f[i];
}

static void fill_tokens(int32_t *tok, int n, int V, uint64_t *s)
{
	for (int i = 0; i < n; i++) {
		int t = (int)((test_uniform(s) + 1.0f) * 0.5f * (float)V);
		tok[i] = t < 0 ? 0 : (t >= V ? V - 1 : t);
	}
}

/* Forward: one element; `mag` is the size of the terms that formed ref. */
static int fwd_ok(double got, double ref, double mag)
{
	double e = fabs(got - ref) / (mag + 1e-30);
	if (!(e <= worst_fwd))
		worst_fwd = isnan(e) ? INFINITY : e;
	return e <= FWD_TOL;
}

/* Backward: got - pre (pre NULL: 0) against want, normwise; returns the error. */
static double grad_err(const float *got, const float *pre, const double *want, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - (pre ? (double)pre[i] : 0.0) - want[i]);
		if (!(d <= num))
			num = isnan(d) ? INFINITY : d;
		den = fmax(den, fabs(want[i]));
	}
	double e = num / fmax(den, 1e-4);
	if (!(e <= worst_grad))
		worst_grad = e;
	return e;
}

/* Central difference of loss(ctx) in the variable *p. */
static double fd(double *p, double (*loss)(void *), void *ctx)
{
	double save = *p;
	*p = save + FD_H;
	double lp = loss(ctx);
	*p = save - FD_H;
	double lm = loss(ctx);
	*p = save;
	return (lp - lm) / (2 * FD_H);
}

/* ------------------------------------------------------------------------ */
/* encoder                                                                  */

struct enc_ref { const int32_t *tok; double *wte, *wpe, *R; int N, T, C; };

static double enc_loss(void *vctx)
{
	const struct enc_ref *r = vctx;
	double L = 0;
	for (int i = 0; i < r->N; i++)
		for (int c = 0; c < r->C; c++)
			L += (r->wte[(size_t)r->tok[i] * r->C + c] + r->wpe[(size_t)(i % r->T) * r->C + c])
			     * r->R[(size_t)i * r->C + c];
	return L;
}

static void test_encoder(int B, int T, int C, int V, uint64_t *seed)
{
	int N = B * T, maxT = T + 2;
	int32_t *tok = malloc(sizeof(int32_t) * N);
	float *wte = falloc((size_t)V * C), *wpe = falloc((size_t)maxT * C), *out = falloc((size_t)N * C);
	float *dout = falloc((size_t)N * C), *dwte = falloc((size_t)V * C), *dwpe = falloc((size_t)maxT * C);
	float *dwte0 = falloc((size_t)V * C), *dwpe0 = falloc((size_t)maxT * C);
	fill_tokens(tok, N, V, seed);
	test_fill(wte, (size_t)V * C, seed);
	test_fill(wpe, (size_t)maxT * C, seed);
	test_fill(dout, (size_t)N * C, seed);
	test_fill(dwte0, (size_t)V * C, seed);
	test_fill(dwpe0, (size_t)maxT * C, seed);
	fill_nan(out, (size_t)N * C);
	memcpy(dwte, dwte0, sizeof(float) * V * C);
	memcpy(dwpe, dwpe0, sizeof(float) * maxT * C);

	starpu_data_handle_t htok, hwte, hwpe, hout, hdout, hdwte, hdwpe;
	lspo_matrix_register_elem(&htok, tok, B, T, sizeof(int32_t));
	lspo_matrix_register(&hwte, wte, V, C);
	lspo_matrix_register(&hwpe, wpe, maxT, C);
	lspo_matrix_register(&hout, out, N, C);
	lspo_matrix_register(&hdout, dout, N, C);
	lspo_matrix_register(&hdwte, dwte, V, C);
	lspo_matrix_register(&hdwpe, dwpe, maxT, C);
	int rc = lspo_encoder_fwd_submit(htok, hwte, hwpe, hout, 0, "encoder:L0:fwd");
	CHECK(rc == LSPO_OK, "encoder fwd submit returned %d", rc);
	rc = lspo_encoder_bwd_submit(hdout, htok, hdwte, hdwpe, 0, "encoder:L0:bwd");
	CHECK(rc == LSPO_OK, "encoder bwd submit returned %d", rc);
	starpu_data_handle_t hs[] = { htok, hwte, hwpe, hout, hdout, hdwte, hdwpe };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		starpu_data_unregister(hs[i]);

	int bad = 0;
	for (int i = 0; i < N; i++)
		for (int c = 0; c < C; c++) {
			double e = wte[(size_t)tok[i] * C + c], p = wpe[(size_t)(i % T) * C + c];
			bad += !fwd_ok(out[(size_t)i * C + c], e + p, fabs(e) + fabs(p));
		}
	CHECK(bad == 0, "encoder fwd B=%d T=%d C=%d V=%d: %d wrong elements", B, T, C, V, bad);

	/* The codelet is the pure kernel, bit for bit (a fixed summation order). */
	float *k_wte = falloc((size_t)V * C), *k_wpe = falloc((size_t)maxT * C);
	memcpy(k_wte, dwte0, sizeof(float) * V * C);
	memcpy(k_wpe, dwpe0, sizeof(float) * maxT * C);
	encoder_backward_cpu(k_wte, k_wpe, dout, tok, N, T, C);
	CHECK(memcmp(k_wte, dwte, sizeof(float) * V * C) == 0 && memcmp(k_wpe, dwpe, sizeof(float) * maxT * C) == 0,
	      "encoder bwd B=%d T=%d C=%d V=%d: codelet differs from the kernel", B, T, C, V);

	struct enc_ref r = { tok, dalloc((size_t)V * C), dalloc((size_t)maxT * C), dalloc((size_t)N * C), N, T, C };
	to_double(r.wte, wte, (size_t)V * C);
	to_double(r.wpe, wpe, (size_t)maxT * C);
	to_double(r.R, dout, (size_t)N * C);
	double *g_wte = dalloc((size_t)V * C), *g_wpe = dalloc((size_t)maxT * C);
	for (size_t k = 0; k < (size_t)V * C; k++)
		g_wte[k] = fd(&r.wte[k], enc_loss, &r);
	for (size_t k = 0; k < (size_t)maxT * C; k++)
		g_wpe[k] = fd(&r.wpe[k], enc_loss, &r);
	double e1 = grad_err(dwte, dwte0, g_wte, (size_t)V * C), e2 = grad_err(dwpe, dwpe0, g_wpe, (size_t)maxT * C);
	CHECK(e1 <= GRAD_TOL && e2 <= GRAD_TOL, "encoder bwd B=%d T=%d C=%d V=%d: dwte error %.3g, dwpe %.3g",
	      B, T, C, V, e1, e2);

	free(r.wte); free(r.wpe); free(r.R); free(g_wte); free(g_wpe); free(k_wte); free(k_wpe);
	free(tok); free(wte); free(wpe); free(out); free(dout); free(dwte); free(dwpe); free(dwte0); free(dwpe0);
}

/* ------------------------------------------------------------------------ */
/* layernorm                                                                */

struct ln_ref { double *inp, *w, *b, *R; int N, C; int row; /* -1: all rows */ };

static void ln_ref_row(const double *x, const double *w, const double *b, int C, double *out,
                       double *mean, double *rstd)
{
	double m = 0, v = 0;
	for (int c = 0; c < C; c++)
		m += x[c];
	m /= C;
	for (int c = 0; c < C; c++)
		v += (x[c] - m) * (x[c] - m);
	double s = 1.0 / sqrt(v / C + (double)LSPO_LAYERNORM_EPS);
	for (int c = 0; c < C; c++)
		out[c] = (x[c] - m) * s * w[c] + b[c];
	if (mean)
		*mean = m;
	if (rstd)
		*rstd = s;
}

static double ln_loss(void *vctx)
{
	const struct ln_ref *r = vctx;
	double L = 0, *o = dalloc((size_t)r->C);
	for (int i = r->row < 0 ? 0 : r->row; i < (r->row < 0 ? r->N : r->row + 1); i++) {
		ln_ref_row(r->inp + (size_t)i * r->C, r->w, r->b, r->C, o, NULL, NULL);
		for (int c = 0; c < r->C; c++)
			L += o[c] * r->R[(size_t)i * r->C + c];
	}
	free(o);
	return L;
}

static void test_layernorm(int N, int C, uint64_t *seed)
{
	size_t nc = (size_t)N * C;
	float *inp = falloc(nc), *w = falloc(C), *b = falloc(C), *out = falloc(nc), *mean = falloc(N);
	float *rstd = falloc(N), *dout = falloc(nc), *dinp = falloc(nc), *dw = falloc(C), *db = falloc(C);
	float *dinp0 = falloc(nc), *dw0 = falloc(C), *db0 = falloc(C);
	test_fill(inp, nc, seed);
	test_fill(w, C, seed);
	for (int c = 0; c < C; c++)
		w[c] = 1.0f + 0.5f * w[c];
	test_fill(b, C, seed);
	test_fill(dout, nc, seed);
	test_fill(dinp0, nc, seed);
	test_fill(dw0, C, seed);
	test_fill(db0, C, seed);
	fill_nan(out, nc);
	fill_nan(mean, N);
	fill_nan(rstd, N);
	memcpy(dinp, dinp0, sizeof(float) * nc);
	memcpy(dw, dw0, sizeof(float) * C);
	memcpy(db, db0, sizeof(float) * C);

	starpu_data_handle_t hinp, hw, hb, hout, hmean, hrstd, hdout, hdinp, hdw, hdb;
	lspo_matrix_register(&hinp, inp, N, C);
	lspo_matrix_register(&hw, w, 1, C);
	lspo_matrix_register(&hb, b, 1, C);
	lspo_matrix_register(&hout, out, N, C);
	lspo_matrix_register(&hmean, mean, 1, N);
	lspo_matrix_register(&hrstd, rstd, 1, N);
	lspo_matrix_register(&hdout, dout, N, C);
	lspo_matrix_register(&hdinp, dinp, N, C);
	lspo_matrix_register(&hdw, dw, 1, C);
	lspo_matrix_register(&hdb, db, 1, C);
	int rc = lspo_layernorm_fwd_submit(hinp, hw, hb, hout, hmean, hrstd, 0, "layernorm:L0:fwd");
	CHECK(rc == LSPO_OK, "layernorm fwd submit returned %d", rc);
	rc = lspo_layernorm_bwd_submit(hdout, hinp, hw, hmean, hrstd, hdinp, hdw, hdb, 0, "layernorm:L0:bwd");
	CHECK(rc == LSPO_OK, "layernorm bwd submit returned %d", rc);
	starpu_data_handle_t hs[] = { hinp, hw, hb, hout, hmean, hrstd, hdout, hdinp, hdw, hdb };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		starpu_data_unregister(hs[i]);

	struct ln_ref r = { dalloc(nc), dalloc(C), dalloc(C), dalloc(nc), N, C, -1 };
	to_double(r.inp, inp, nc);
	to_double(r.w, w, C);
	to_double(r.b, b, C);
	to_double(r.R, dout, nc);
	double *ref = dalloc(C);
	int bad = 0;
	for (int i = 0; i < N; i++) {
		double m, s;
		ln_ref_row(r.inp + (size_t)i * C, r.w, r.b, C, ref, &m, &s);
		bad += !fwd_ok(mean[i], m, 1.0);
		bad += !fwd_ok(rstd[i], s, s);
		for (int c = 0; c < C; c++)
			bad += !fwd_ok(out[(size_t)i * C + c], ref[c],
			               fabs((r.inp[(size_t)i * C + c] - m) * s * r.w[c]) + fabs(r.b[c]) + 1e-3);
	}
	CHECK(bad == 0, "layernorm fwd N=%d C=%d: %d wrong elements", N, C, bad);

	double *g_inp = dalloc(nc), *g_w = dalloc(C), *g_b = dalloc(C);
	for (int i = 0; i < N; i++) {
		r.row = i;  /* a row's input reaches that row's output only */
		for (int c = 0; c < C; c++)
			g_inp[(size_t)i * C + c] = fd(&r.inp[(size_t)i * C + c], ln_loss, &r);
	}
	r.row = -1;
	for (int c = 0; c < C; c++) {
		g_w[c] = fd(&r.w[c], ln_loss, &r);
		g_b[c] = fd(&r.b[c], ln_loss, &r);
	}
	double e1 = grad_err(dinp, dinp0, g_inp, nc), e2 = grad_err(dw, dw0, g_w, C), e3 = grad_err(db, db0, g_b, C);
	CHECK(e1 <= GRAD_TOL && e2 <= GRAD_TOL && e3 <= GRAD_TOL,
	      "layernorm bwd N=%d C=%d: dinp error %.3g, dw %.3g, db %.3g", N, C, e1, e2, e3);

	free(r.inp); free(r.w); free(r.b); free(r.R); free(ref); free(g_inp); free(g_w); free(g_b);
	free(inp); free(w); free(b); free(out); free(mean); free(rstd); free(dout); free(dinp); free(dw); free(db);
	free(dinp0); free(dw0); free(db0);
}

/* ------------------------------------------------------------------------ */
/* gelu                                                                     */

static double gelu_ref(double x)
{
	return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

struct gelu_ref_ctx { double x, R; };

static double gelu_loss(void *vctx)
{
	const struct gelu_ref_ctx *r = vctx;
	return gelu_ref(r->x) * r->R;
}

static void test_gelu(int N, int C, uint64_t *seed)
{
	size_t n = (size_t)N * C;
	float *inp = falloc(n), *out = falloc(n), *dout = falloc(n), *dinp = falloc(n);
	test_fill(inp, n, seed);
	for (size_t i = 0; i < n; i++)
		inp[i] *= 5.0f;  /* both tails and the middle */
	if (n > 3) {
		inp[0] = 0.0f;
		inp[1] = -12.0f;
		inp[2] = 12.0f;
	}
	test_fill(dout, n, seed);
	fill_nan(out, n);
	fill_nan(dinp, n);  /* written, not accumulated */

	starpu_data_handle_t hinp, hout, hdout, hdinp;
	lspo_matrix_register(&hinp, inp, N, C);
	lspo_matrix_register(&hout, out, N, C);
	lspo_matrix_register(&hdout, dout, N, C);
	lspo_matrix_register(&hdinp, dinp, N, C);
	int rc = lspo_gelu_fwd_submit(hinp, hout, 0, "gelu:L0:fwd");
	CHECK(rc == LSPO_OK, "gelu fwd submit returned %d", rc);
	rc = lspo_gelu_bwd_submit(hinp, hdout, hdinp, 0, "gelu:L0:bwd");
	CHECK(rc == LSPO_OK, "gelu bwd submit returned %d", rc);
	starpu_data_unregister(hinp);
	starpu_data_unregister(hout);
	starpu_data_unregister(hdout);
	starpu_data_unregister(hdinp);

	int bad = 0;
	double *g = dalloc(n);
	for (size_t i = 0; i < n; i++) {
		double x = inp[i];
		/* tanh has an absolute error ~1e-7, so gelu's error scales with |x|. */
		bad += !fwd_ok(out[i], gelu_ref(x), fabs(x) + 1e-30);
		struct gelu_ref_ctx r = { x, dout[i] };
		g[i] = fd(&r.x, gelu_loss, &r);
	}
	CHECK(bad == 0, "gelu fwd N=%d C=%d: %d wrong elements", N, C, bad);
	double e = grad_err(dinp, NULL, g, n);
	CHECK(e <= GRAD_TOL, "gelu bwd N=%d C=%d: dinp error %.3g", N, C, e);
	free(g); free(inp); free(out); free(dout); free(dinp);
}

/* ------------------------------------------------------------------------ */
/* residual and accumulate                                                  */

struct res_ref { double *a, *b, *R; size_t n; };

static double res_loss(void *vctx)
{
	const struct res_ref *r = vctx;
	double L = 0;
	for (size_t i = 0; i < r->n; i++)
		L += (r->a[i] + r->b[i]) * r->R[i];
	return L;
}

static void test_residual(int N, int C, uint64_t *seed)
{
	size_t n = (size_t)N * C;
	float *a = falloc(n), *b = falloc(n), *out = falloc(n), *dout = falloc(n), *da = falloc(n), *da0 = falloc(n);
	test_fill(a, n, seed);
	test_fill(b, n, seed);
	test_fill(dout, n, seed);
	test_fill(da0, n, seed);
	fill_nan(out, n);
	memcpy(da, da0, sizeof(float) * n);

	starpu_data_handle_t ha, hb, hout, hdout, hda;
	lspo_matrix_register(&ha, a, N, C);
	lspo_matrix_register(&hb, b, N, C);
	lspo_matrix_register(&hout, out, N, C);
	lspo_matrix_register(&hdout, dout, N, C);
	lspo_matrix_register(&hda, da, N, C);
	int rc = lspo_residual_fwd_submit(ha, hb, hout, 0, "residual:L0:fwd");
	CHECK(rc == LSPO_OK, "residual fwd submit returned %d", rc);
	/* The residual's backward: each branch accumulates dout. */
	rc = lspo_accumulate_submit(hdout, hda, 0, "accumulate:L0:bwd");
	CHECK(rc == LSPO_OK, "accumulate submit returned %d", rc);
	starpu_data_handle_t hs[] = { ha, hb, hout, hdout, hda };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		starpu_data_unregister(hs[i]);

	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		bad += !fwd_ok(out[i], (double)a[i] + b[i], fabs(a[i]) + fabs(b[i]));
		bad += !fwd_ok(da[i], (double)da0[i] + dout[i], fabs(da0[i]) + fabs(dout[i]));
	}
	CHECK(bad == 0, "residual N=%d C=%d: %d wrong elements", N, C, bad);

	struct res_ref r = { dalloc(n), dalloc(n), dalloc(n), n };
	to_double(r.a, a, n);
	to_double(r.b, b, n);
	to_double(r.R, dout, n);
	double *g = dalloc(n);
	for (size_t i = 0; i < n; i++)
		g[i] = fd(&r.a[i], res_loss, &r);
	double e = grad_err(da, da0, g, n);
	CHECK(e <= GRAD_TOL, "residual bwd (accumulate) N=%d C=%d: error %.3g", N, C, e);
	free(r.a); free(r.b); free(r.R); free(g);
	free(a); free(b); free(out); free(dout); free(da); free(da0);
}

/* ------------------------------------------------------------------------ */
/* xent                                                                     */

static double xent_ref_row(const double *x, int t, int V)
{
	double m = x[0], s = 0;
	for (int j = 1; j < V; j++)
		m = fmax(m, x[j]);
	for (int j = 0; j < V; j++)
		s += exp(x[j] - m);
	return m + log(s) - x[t];
}

struct xent_ref { double *x; const int32_t *tgt; int V, row; double dloss; };

static double xent_loss(void *vctx)
{
	const struct xent_ref *r = vctx;  /* a row's logits reach that row's loss only */
	return r->dloss * xent_ref_row(r->x + (size_t)r->row * r->V, r->tgt[r->row], r->V);
}

static void test_xent(int B, int T, int V, uint64_t *seed)
{
	int N = B * T;
	size_t nv = (size_t)N * V;
	float *logits = falloc(nv), *work = falloc(nv), *loss1 = falloc(N), *loss2 = falloc(N);
	int32_t *tgt = malloc(sizeof(int32_t) * N);
	test_fill(logits, nv, seed);
	for (size_t i = 0; i < nv; i++)
		logits[i] *= 4.0f;
	if (N > 1)
		logits[V] = 60.0f;  /* a dominant logit: exp(x) would overflow without the row max */
	fill_tokens(tgt, N, V, seed);
	memcpy(work, logits, sizeof(float) * nv);
	fill_nan(loss1, N);
	fill_nan(loss2, N);
	float dloss = 1.0f / (float)N;

	starpu_data_handle_t hx, hw, ht, hl1, hl2;
	lspo_matrix_register(&hx, logits, N, V);
	lspo_matrix_register(&hw, work, N, V);
	lspo_matrix_register_elem(&ht, tgt, B, T, sizeof(int32_t));
	lspo_matrix_register(&hl1, loss1, 1, N);
	lspo_matrix_register(&hl2, loss2, 1, N);
	int rc = lspo_xent_fwd_submit(hx, ht, hl1, 0, "xent:L0:fwd");
	CHECK(rc == LSPO_OK, "xent fwd submit returned %d", rc);
	rc = lspo_xent_fwdbwd_submit(hw, ht, hl2, dloss, 0, "xent:L0:fwdbwd");
	CHECK(rc == LSPO_OK, "xent fwdbwd submit returned %d", rc);
	starpu_data_handle_t hs[] = { hx, hw, ht, hl1, hl2 };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		starpu_data_unregister(hs[i]);

	struct xent_ref r = { dalloc(nv), tgt, V, 0, dloss };
	to_double(r.x, logits, nv);
	int bad = 0;
	for (int i = 0; i < N; i++) {
		double ref = xent_ref_row(r.x + (size_t)i * V, tgt[i], V);
		bad += !fwd_ok(loss1[i], ref, 1.0 + fabs(ref));
		bad += !fwd_ok(loss2[i], ref, 1.0 + fabs(ref));
	}
	CHECK(bad == 0, "xent fwd B=%d T=%d V=%d: %d wrong losses", B, T, V, bad);

	double *g = dalloc(nv);
	for (int i = 0; i < N; i++) {
		r.row = i;
		for (int j = 0; j < V; j++)
			g[(size_t)i * V + j] = fd(&r.x[(size_t)i * V + j], xent_loss, &r);
	}
	double e = grad_err(work, NULL, g, nv);
	CHECK(e <= GRAD_TOL, "xent bwd B=%d T=%d V=%d: dlogits error %.3g", B, T, V, e);

	/* In place (dlogits == logits) equals a separate output, bit for bit. */
	float *sep = falloc(nv), *inpl = falloc(nv), *l3 = falloc(N), *l4 = falloc(N);
	memcpy(inpl, logits, sizeof(float) * nv);
	xent_cpu(l3, sep, logits, tgt, N, V, dloss);
	xent_cpu(l4, inpl, inpl, tgt, N, V, dloss);
	CHECK(memcmp(sep, inpl, sizeof(float) * nv) == 0 && memcmp(l3, l4, sizeof(float) * N) == 0,
	      "xent B=%d T=%d V=%d: in place differs from a separate dlogits", B, T, V);
	free(sep); free(inpl); free(l3); free(l4);
	free(r.x); free(g); free(logits); free(work); free(loss1); free(loss2); free(tgt);
}

/* ------------------------------------------------------------------------ */
/* shape checks                                                             */

static void test_refusals(void)
{
	float f[64] = { 0 };
	int32_t tok[8] = { 0 };
	int64_t tok64[8] = { 0 };
	starpu_data_handle_t t24, t24l, wte, wpe3, wpe4, x8, x6, w4, w3, m2, m3, l8, l6;
	lspo_matrix_register_elem(&t24, tok, 2, 4, sizeof(int32_t));
	lspo_matrix_register_elem(&t24l, tok64, 2, 4, sizeof(int64_t));
	lspo_matrix_register(&wte, f, 5, 4);
	lspo_matrix_register(&wpe3, f, 3, 4);
	lspo_matrix_register(&wpe4, f, 4, 4);
	lspo_matrix_register(&x8, f, 8, 4);
	lspo_matrix_register(&x6, f, 6, 4);
	lspo_matrix_register(&w4, f, 1, 4);
	lspo_matrix_register(&w3, f, 1, 3);
	lspo_matrix_register(&m2, f, 1, 8);
	lspo_matrix_register(&m3, f, 1, 6);
	lspo_matrix_register(&l8, f, 1, 8);
	lspo_matrix_register(&l6, f, 1, 6);

	CHECK(lspo_encoder_fwd_submit(t24, wte, wpe3, x8, 0, "encoder:bad") == LSPO_EINVAL, "T > maxT accepted");
	CHECK(lspo_encoder_fwd_submit(t24, wte, wpe4, x6, 0, "encoder:bad") == LSPO_EINVAL, "B*T != rows accepted");
	CHECK(lspo_encoder_fwd_submit(t24l, wte, wpe4, x8, 0, "encoder:bad") == LSPO_EINVAL, "int64 tokens accepted");
	CHECK(lspo_encoder_bwd_submit(x8, t24, wte, wpe3, 0, "encoder:bad") == LSPO_EINVAL, "bwd T > maxT accepted");
	CHECK(lspo_layernorm_fwd_submit(x8, w3, w4, x8, m2, m2, 0, "ln:bad") == LSPO_EINVAL, "ln w 1x3 accepted");
	CHECK(lspo_layernorm_fwd_submit(x8, w4, w4, x8, m3, m2, 0, "ln:bad") == LSPO_EINVAL, "ln mean 1x6 accepted");
	CHECK(lspo_layernorm_bwd_submit(x8, x8, w4, m2, m2, x6, w4, w4, 0, "ln:bad") == LSPO_EINVAL,
	      "ln dinp 6x4 accepted");
	CHECK(lspo_gelu_fwd_submit(x8, x6, 0, "gelu:bad") == LSPO_EINVAL, "gelu 8x4 -> 6x4 accepted");
	CHECK(lspo_gelu_bwd_submit(x8, x8, x6, 0, "gelu:bad") == LSPO_EINVAL, "gelu bwd 6x4 accepted");
	CHECK(lspo_residual_fwd_submit(x8, x6, x8, 0, "residual:bad") == LSPO_EINVAL, "residual 8x4 + 6x4 accepted");
	CHECK(lspo_accumulate_submit(x8, x6, 0, "accumulate:bad") == LSPO_EINVAL, "accumulate 8x4 -> 6x4 accepted");
	CHECK(lspo_xent_fwd_submit(x6, t24, l6, 0, "xent:bad") == LSPO_EINVAL, "xent B*T != N accepted");
	CHECK(lspo_xent_fwd_submit(x8, t24, l6, 0, "xent:bad") == LSPO_EINVAL, "xent losses 1x6 accepted");
	CHECK(lspo_xent_fwdbwd_submit(x8, t24l, l8, 1.0f, 0, "xent:bad") == LSPO_EINVAL, "int64 targets accepted");

	/* A handle registered without memory (allocated where first written) is accepted. */
	starpu_data_handle_t lazy;
	lspo_matrix_register(&lazy, NULL, 8, 4);
	CHECK(lspo_gelu_fwd_submit(x8, lazy, 0, "gelu:lazy") == LSPO_OK, "lazily allocated output refused");
	CHECK(lspo_accumulate_submit(x8, lazy, 0, "accumulate:lazy") == LSPO_OK, "lazily allocated y refused");
	starpu_data_unregister(lazy);

	/* A strided view (ld 8 > 4 cols, as a column cut gives) is refused. */
	starpu_data_handle_t strided, s2;
	starpu_matrix_data_register(&strided, STARPU_MAIN_RAM, (uintptr_t)f, 8, 4, 8, sizeof(float));
	lspo_matrix_register(&s2, f, 8, 4);
	CHECK(lspo_residual_fwd_submit(strided, s2, s2, 0, "residual:strided") == LSPO_EINVAL, "strided a accepted");
	starpu_data_unregister(strided);
	starpu_data_unregister(s2);

	starpu_data_handle_t hs[] = { t24, t24l, wte, wpe3, wpe4, x8, x6, w4, w3, m2, m3, l8, l6 };
	for (size_t i = 0; i < sizeof(hs) / sizeof(hs[0]); i++)
		starpu_data_unregister(hs[i]);
}

/* Non-finite inputs: NaN propagates; a -inf logit has probability 0. */
static void test_nonfinite(void)
{
	float x[4] = { NAN, INFINITY, -INFINITY, 1.0f }, g[4], d[4], one[4] = { 1, 1, 1, 1 };
	gelu_forward_cpu(g, x, 4);
	gelu_backward_cpu(d, x, one, 4);
	CHECK(isnan(g[0]) && isnan(d[0]), "gelu(NaN) = %g, gelu'(NaN) = %g", g[0], d[0]);
	CHECK(g[3] > 0.84f && g[3] < 0.85f, "gelu(1) = %g", g[3]);  /* infinities: NaN, as in PyTorch */
	float row[6] = { 0.5f, NAN, 1.0f, -INFINITY, 2.0f, 0.0f }, loss[2], dl[6];
	int32_t tgt[2] = { 0, 1 };
	xent_cpu(loss, NULL, row, tgt, 1, 3, 0.0f);
	CHECK(isnan(loss[0]), "xent with a NaN logit: loss %g", loss[0]);
	xent_cpu(loss, dl, row + 3, tgt + 1, 1, 3, 1.0f);  /* logits (-inf, 2, 0), target 1 */
	double ref = log(1.0 + exp(-2.0));
	CHECK(fabs(loss[0] - ref) < 1e-6 && dl[0] >= 0.0f && dl[0] < 1e-30f, "xent with a -inf logit: loss %g "
	      "(want %g), dlogit %g", loss[0], ref, dl[0]);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("eager", -1, 0);
	static const int Ns[] = { 1, 7, 33 }, Cs[] = { 1, 5, 48 }, Vs[] = { 3, 257 };
	static const int Bs[] = { 1, 7, 3 }, Ts[] = { 1, 1, 11 };  /* B*T = N */
	uint64_t seed = 20240611;
	int cases = 0;
	for (int a = 0; a < 3; a++) {
		for (int c = 0; c < 3; c++) {
			for (int v = 0; v < 2; v++, cases++)
				test_encoder(Bs[a], Ts[a], Cs[c], Vs[v], &seed);
			test_layernorm(Ns[a], Cs[c], &seed);
			test_gelu(Ns[a], Cs[c], &seed);
			test_residual(Ns[a], Cs[c], &seed);
			cases += 3;
		}
		for (int v = 0; v < 2; v++, cases++)
			test_xent(Bs[a], Ts[a], Vs[v], &seed);
	}
	test_encoder(1, 7, 5, 3, &seed);  /* one sequence of 7: positions 0..6 */
	test_xent(1, 7, 257, &seed);
	cases += 2;
	test_refusals();
	test_nonfinite();
	printf("%d cases on CPU: worst forward error %.2e (tol %.0e), worst gradient error %.2e (tol %.0e)\n",
	       cases, worst_fwd, FWD_TOL, worst_grad, GRAD_TOL);
	lspo_ctx_destroy(ctx);
	return test_finish("test_ops_a");
}
