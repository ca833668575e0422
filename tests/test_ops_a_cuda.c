/*
 * test_ops_a_cuda.c - the encoder, layernorm, gelu, residual/accumulate and
 * xent codelets on a CUDA worker alone, through their submit helpers,
 * against the CPU kernels called directly on the same inputs; skips (77)
 * without a CUDA worker.
 *
 * Shapes: the tiny odd ones of test_ops_a, GPT-2 sizes (C 768 and 1600, V
 * 50257: several elements per thread, 1024-thread rows), and more than 65535
 * rows or 2M elements (the grid-stride loops wrap).  Tolerance: normwise
 * relative 1e-4, ||gpu - cpu||_inf <= 1e-4 ||cpu||_inf per output; both
 * sides are float kernels ~1e-6 from the exact result, and the CUDA encoder
 * backward adds with atomics in an arbitrary order.
 */
#include <string.h>

#include <starpu.h>

#include "common.h"
#include "encoder.h"
#include "gelu.h"
#include "layernorm.h"
#include "residual.h"
#include "xent.h"

#define TOL 1e-4

static double worst;

static float *fcopy(const float *x, size_t n)
{
	float *p = falloc(n);
	memcpy(p, x, n * sizeof(float));
	return p;
}

static float *frand(size_t n, float scale, uint64_t *s)
{
	float *p = falloc(n);
	test_fill(p, n, s);
	for (size_t i = 0; i < n; i++)
		p[i] *= scale;
	return p;
}

static int32_t *tokens(size_t n, int V, uint64_t *s)
{
	int32_t *t = malloc((n ? n : 1) * sizeof(int32_t));
	for (size_t i = 0; i < n; i++) {
		int v = (int)((test_uniform(s) + 1.0f) * 0.5f * (float)V);
		t[i] = v < 0 ? 0 : (v >= V ? V - 1 : v);
	}
	return t;
}

/* ||gpu - cpu||_inf / ||cpu||_inf (NaN anywhere: infinity). */
static double rel(const float *gpu, const float *cpu, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)gpu[i] - cpu[i]);
		if (!(d <= num))
			num = isnan(d) ? INFINITY : d;
		den = fmax(den, fabs(cpu[i]));
	}
	double e = num / fmax(den, 1e-30);
	if (!(e <= worst))
		worst = e;
	return e;
}

static void unregister_all(starpu_data_handle_t *h, int n)
{
	for (int i = 0; i < n; i++)
		starpu_data_unregister(h[i]);
}

static void test_encoder(int B, int T, int C, int V, uint64_t *s)
{
	int N = B * T, maxT = T + 3;
	int32_t *tok = tokens((size_t)N, V, s);
	float *wte = frand((size_t)V * C, 1, s), *wpe = frand((size_t)maxT * C, 1, s);
	float *dout = frand((size_t)N * C, 1, s), *dwte = frand((size_t)V * C, 1, s), *dwpe = frand((size_t)maxT * C, 1, s);
	float *out = falloc((size_t)N * C), *c_out = falloc((size_t)N * C);
	float *c_dwte = fcopy(dwte, (size_t)V * C), *c_dwpe = fcopy(dwpe, (size_t)maxT * C);
	encoder_forward_cpu(c_out, tok, wte, wpe, N, T, C);
	encoder_backward_cpu(c_dwte, c_dwpe, dout, tok, N, T, C);

	starpu_data_handle_t h[7];
	lspo_matrix_register_elem(&h[0], tok, B, T, sizeof(int32_t));
	lspo_matrix_register(&h[1], wte, V, C);
	lspo_matrix_register(&h[2], wpe, maxT, C);
	lspo_matrix_register(&h[3], out, N, C);
	lspo_matrix_register(&h[4], dout, N, C);
	lspo_matrix_register(&h[5], dwte, V, C);
	lspo_matrix_register(&h[6], dwpe, maxT, C);
	CHECK(lspo_encoder_fwd_submit(h[0], h[1], h[2], h[3], 0, "encoder:L0:fwd") == LSPO_OK, "encoder fwd");
	CHECK(lspo_encoder_bwd_submit(h[4], h[0], h[5], h[6], 0, "encoder:L0:bwd") == LSPO_OK, "encoder bwd");
	unregister_all(h, 7);

	double e0 = rel(out, c_out, (size_t)N * C), e1 = rel(dwte, c_dwte, (size_t)V * C);
	double e2 = rel(dwpe, c_dwpe, (size_t)maxT * C);
	CHECK(e0 <= TOL && e1 <= TOL && e2 <= TOL, "encoder B=%d T=%d C=%d V=%d: out %.3g, dwte %.3g, dwpe %.3g",
	      B, T, C, V, e0, e1, e2);
	free(tok); free(wte); free(wpe); free(dout); free(dwte); free(dwpe); free(out); free(c_out);
	free(c_dwte); free(c_dwpe);
}

static void test_layernorm(int N, int C, uint64_t *s)
{
	size_t nc = (size_t)N * C;
	float *inp = frand(nc, 2, s), *w = frand(C, 1, s), *b = frand(C, 1, s), *dout = frand(nc, 1, s);
	float *dinp = frand(nc, 1, s), *dw = frand(C, 1, s), *db = frand(C, 1, s);
	float *out = falloc(nc), *mean = falloc(N), *rstd = falloc(N);
	float *c_out = falloc(nc), *c_mean = falloc(N), *c_rstd = falloc(N);
	float *c_dinp = fcopy(dinp, nc), *c_dw = fcopy(dw, C), *c_db = fcopy(db, C);
	layernorm_forward_cpu(c_out, c_mean, c_rstd, inp, w, b, N, C);
	layernorm_backward_cpu(c_dinp, c_dw, c_db, dout, inp, w, c_mean, c_rstd, N, C);

	starpu_data_handle_t h[10];
	lspo_matrix_register(&h[0], inp, N, C);
	lspo_matrix_register(&h[1], w, 1, C);
	lspo_matrix_register(&h[2], b, 1, C);
	lspo_matrix_register(&h[3], out, N, C);
	lspo_matrix_register(&h[4], mean, 1, N);
	lspo_matrix_register(&h[5], rstd, 1, N);
	lspo_matrix_register(&h[6], dout, N, C);
	lspo_matrix_register(&h[7], dinp, N, C);
	lspo_matrix_register(&h[8], dw, 1, C);
	lspo_matrix_register(&h[9], db, 1, C);
	CHECK(lspo_layernorm_fwd_submit(h[0], h[1], h[2], h[3], h[4], h[5], 0, "layernorm:L0:fwd") == LSPO_OK,
	      "layernorm fwd");
	CHECK(lspo_layernorm_bwd_submit(h[6], h[0], h[1], h[4], h[5], h[7], h[8], h[9], 0, "layernorm:L0:bwd")
	      == LSPO_OK, "layernorm bwd");
	unregister_all(h, 10);

	double e[6] = { rel(out, c_out, nc), rel(mean, c_mean, N), rel(rstd, c_rstd, N),
	                rel(dinp, c_dinp, nc), rel(dw, c_dw, C), rel(db, c_db, C) };
	int ok = 1;
	for (int i = 0; i < 6; i++)
		ok &= e[i] <= TOL;
	CHECK(ok, "layernorm N=%d C=%d: out %.3g mean %.3g rstd %.3g dinp %.3g dw %.3g db %.3g", N, C,
	      e[0], e[1], e[2], e[3], e[4], e[5]);
	free(inp); free(w); free(b); free(dout); free(dinp); free(dw); free(db); free(out); free(mean); free(rstd);
	free(c_out); free(c_mean); free(c_rstd); free(c_dinp); free(c_dw); free(c_db);
}

static void test_gelu_residual(int N, int C, uint64_t *s)
{
	size_t n = (size_t)N * C;
	float *x = frand(n, 5, s), *y = frand(n, 1, s), *dout = frand(n, 1, s), *acc = frand(n, 1, s);
	float *out = falloc(n), *dinp = falloc(n), *sum = falloc(n);
	float *c_out = falloc(n), *c_dinp = falloc(n), *c_sum = falloc(n), *c_acc = fcopy(acc, n);
	gelu_forward_cpu(c_out, x, n);
	gelu_backward_cpu(c_dinp, x, dout, n);
	residual_forward_cpu(c_sum, x, y, n);
	accumulate_cpu(c_acc, dout, n);

	starpu_data_handle_t h[7];
	float *bufs[7] = { x, y, dout, acc, out, dinp, sum };
	for (int i = 0; i < 7; i++)
		lspo_matrix_register(&h[i], bufs[i], N, C);
	CHECK(lspo_gelu_fwd_submit(h[0], h[4], 0, "gelu:L0:fwd") == LSPO_OK, "gelu fwd");
	CHECK(lspo_gelu_bwd_submit(h[0], h[2], h[5], 0, "gelu:L0:bwd") == LSPO_OK, "gelu bwd");
	CHECK(lspo_residual_fwd_submit(h[0], h[1], h[6], 0, "residual:L0:fwd") == LSPO_OK, "residual");
	CHECK(lspo_accumulate_submit(h[2], h[3], 0, "accumulate:L0:bwd") == LSPO_OK, "accumulate");
	unregister_all(h, 7);

	double e0 = rel(out, c_out, n), e1 = rel(dinp, c_dinp, n), e2 = rel(sum, c_sum, n), e3 = rel(acc, c_acc, n);
	CHECK(e0 <= TOL && e1 <= TOL && e2 <= TOL && e3 <= TOL,
	      "gelu/residual N=%d C=%d: gelu %.3g, gelu bwd %.3g, residual %.3g, accumulate %.3g", N, C, e0, e1, e2, e3);
	free(x); free(y); free(dout); free(acc); free(out); free(dinp); free(sum);
	free(c_out); free(c_dinp); free(c_sum); free(c_acc);
}

static void test_xent(int B, int T, int V, uint64_t *s)
{
	int N = B * T;
	size_t nv = (size_t)N * V;
	float *logits = frand(nv, 4, s), *work = fcopy(logits, nv);
	if (N > 1)
		logits[V] = work[V] = 70.0f;  /* needs the row max */
	int32_t *tgt = tokens((size_t)N, V, s);
	if (V > 2) {  /* a masked (-inf) logit, not the target: probability 0 */
		logits[1] = work[1] = -INFINITY;
		tgt[0] = tgt[0] == 1 ? 2 : tgt[0];
	}
	float *l1 = falloc(N), *l2 = falloc(N), *c_l1 = falloc(N), *c_l2 = falloc(N), *c_d = falloc(nv);
	float dloss = 1.0f / (float)N;
	xent_cpu(c_l1, NULL, logits, tgt, N, V, 0.0f);
	xent_cpu(c_l2, c_d, logits, tgt, N, V, dloss);

	starpu_data_handle_t h[5];
	lspo_matrix_register(&h[0], logits, N, V);
	lspo_matrix_register(&h[1], work, N, V);
	lspo_matrix_register_elem(&h[2], tgt, B, T, sizeof(int32_t));
	lspo_matrix_register(&h[3], l1, 1, N);
	lspo_matrix_register(&h[4], l2, 1, N);
	CHECK(lspo_xent_fwd_submit(h[0], h[2], h[3], 0, "xent:L0:fwd") == LSPO_OK, "xent fwd");
	CHECK(lspo_xent_fwdbwd_submit(h[1], h[2], h[4], dloss, 0, "xent:L0:fwdbwd") == LSPO_OK, "xent fwdbwd");
	unregister_all(h, 5);

	double e0 = rel(l1, c_l1, N), e1 = rel(l2, c_l2, N), e2 = rel(work, c_d, nv);
	CHECK(e0 <= TOL && e1 <= TOL && e2 <= TOL, "xent B=%d T=%d V=%d: loss %.3g, loss (fwdbwd) %.3g, dlogits %.3g",
	      B, T, V, e0, e1, e2);
	free(logits); free(work); free(tgt); free(l1); free(l2); free(c_l1); free(c_l2); free(c_d);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("eager", 0, 1);
	static const int Bs[] = { 1, 7, 3 }, Ts[] = { 1, 1, 11 }, Cs[] = { 1, 5, 48 }, Vs[] = { 3, 257 };
	uint64_t seed = 777;
	int cases = 0;
	for (int a = 0; a < 3; a++) {
		for (int c = 0; c < 3; c++) {
			for (int v = 0; v < 2; v++, cases++)
				test_encoder(Bs[a], Ts[a], Cs[c], Vs[v], &seed);
			test_layernorm(Bs[a] * Ts[a], Cs[c], &seed);
			test_gelu_residual(Bs[a] * Ts[a], Cs[c], &seed);
			cases += 2;
		}
		for (int v = 0; v < 2; v++, cases++)
			test_xent(Bs[a], Ts[a], Vs[v], &seed);
	}
	/* GPT-2 sizes. */
	test_encoder(4, 64, 768, 1000, &seed);
	test_layernorm(256, 768, &seed);
	test_layernorm(33, 1600, &seed);
	test_gelu_residual(256, 3072, &seed);
	test_xent(3, 11, 50257, &seed);
	/* Grid-stride wrap-around: more than 65535 rows, more than 8192 * 256 elements. */
	test_encoder(700, 100, 5, 7, &seed);
	test_layernorm(70001, 5, &seed);
	test_gelu_residual(4099, 1031, &seed);
	test_xent(70001, 1, 3, &seed);
	cases += 9;
	printf("%d cases on CUDA: worst relative difference to the CPU kernels %.2e (tol %.0e)\n",
	       cases, worst, TOL);
	lspo_ctx_destroy(ctx);
	return test_finish("test_ops_a_cuda");
}
