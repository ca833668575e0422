/*
 * test_ops_b.c - attention, AdamW and the gradient norm / clip codelets
 * against double-precision references: attention forward (out and lse) on
 * small odd shapes, its backward by central finite differences of
 * sum(out * R) on the double reference, AdamW after 1 and 3 steps and on the
 * unit vectors of lsp-offload.md section 14.4, sumsq + clip_scale with and
 * without clipping.  Built twice: on CPU workers, and (test_ops_b_cuda) on a
 * CUDA worker alone, where every result is also compared with the CPU kernel
 * called directly on the same inputs.
 */
#include <string.h>
#include <time.h>

#include <starpu.h>

#include "adamw.h"
#include "attention.h"
#include "common.h"
#include "gradnorm.h"

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

/* ---------------------------------------------------------------------------
 * Attention */

/* out (B*T, C), lse (B*NH*T) from qkv (B*T, 3C), all in double. */
static void attn_ref(double *out, double *lse, const double *qkv, int B, int T, int C, int NH)
{
	int hs = C / NH;
	double scale = 1.0 / sqrt((double)hs), *s = xalloc(T, sizeof(double));
	for (int b = 0; b < B; b++)
		for (int h = 0; h < NH; h++)
			for (int t = 0; t < T; t++) {
				const double *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
				double mx = -INFINITY;
				for (int j = 0; j <= t; j++) {
					const double *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
					double d = 0;
					for (int e = 0; e < hs; e++)
						d += q[e] * k[e];
					s[j] = d * scale;
					mx = fmax(mx, s[j]);
				}
				double sum = 0;
				for (int j = 0; j <= t; j++)
					sum += exp(s[j] - mx);
				double *o = out + ((size_t)b * T + t) * C + h * hs;
				for (int e = 0; e < hs; e++)
					o[e] = 0;
				for (int j = 0; j <= t; j++) {
					const double *v = qkv + ((size_t)b * T + j) * 3 * C + 2 * C + h * hs;
					double p = exp(s[j] - mx) / sum;
					for (int e = 0; e < hs; e++)
						o[e] += p * v[e];
				}
				lse[((size_t)b * NH + h) * T + t] = mx + log(sum);
			}
	free(s);
}

static double attn_loss(double *out, double *lse, const double *qkv, const float *R,
                        int B, int T, int C, int NH)
{
	attn_ref(out, lse, qkv, B, T, C, NH);
	double L = 0;
	for (size_t i = 0; i < (size_t)B * T * C; i++)
		L += out[i] * R[i];
	return L;
}

/* Runs forward then backward as tasks; returns out, lse, dqkv. */
static void attn_tasks(float *out, float *lse, float *dqkv, const float *qkv, const float *dout,
                       int B, int T, int C, int NH)
{
	starpu_data_handle_t hq, ho, hl, hd, hdq;
	lspo_matrix_register(&hq, (float *)qkv, B * T, 3 * C);
	lspo_matrix_register(&ho, out, B * T, C);
	lspo_matrix_register(&hl, lse, 1, B * NH * T);
	lspo_matrix_register(&hd, (float *)dout, B * T, C);
	lspo_matrix_register(&hdq, dqkv, B * T, 3 * C);
	int rc = lspo_attention_fwd_submit(hq, ho, hl, B, NH, 0, "attention:L0:fwd");
	CHECK(rc == LSPO_OK, "attention fwd submit returned %d", rc);
	rc = lspo_attention_bwd_submit(hd, hq, ho, hl, hdq, B, NH, 0, "attention:L0:bwd");
	CHECK(rc == LSPO_OK, "attention bwd submit returned %d", rc);
	starpu_data_unregister(hq);
	starpu_data_unregister(ho);
	starpu_data_unregister(hl);
	starpu_data_unregister(hd);
	starpu_data_unregister(hdq);
}

/* Largest |a - b| / (|b| + floor) over n. */
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

static void check_attention(int B, int T, int C, int NH, uint64_t *seed)
{
	size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
	float *qkv = xalloc(nq, sizeof(float)), *R = xalloc(no, sizeof(float));
	float *out = xalloc(no, sizeof(float)), *lse = xalloc(nl, sizeof(float));
	float *dqkv = xalloc(nq, sizeof(float));
	double *dq = xalloc(nq, sizeof(double)), *ro = xalloc(no, sizeof(double));
	double *rl = xalloc(nl, sizeof(double));
	test_fill(qkv, nq, seed);
	for (size_t i = 0; i < nq; i++)
		qkv[i] *= 2.0f;   /* sharper softmax than U(-1, 1) gives */
	test_fill(R, no, seed);
	for (size_t i = 0; i < nq; i++)
		dqkv[i] = NAN;    /* the backward overwrites every element */
	attn_tasks(out, lse, dqkv, qkv, R, B, T, C, NH);

	for (size_t i = 0; i < nq; i++)
		dq[i] = qkv[i];
	attn_ref(ro, rl, dq, B, T, C, NH);
	/* CPU worst case measured 5.4e-7 (out), 2.1e-7 (lse); the CUDA kernel
	 * sums in another order and rescales online */
	double tol = ON_CUDA ? 5e-6 : 2e-6;
	double eo = max_rel(out, ro, no, 1.0), el = max_rel(lse, rl, nl, 1.0);
	CHECK(eo < tol, "B=%d T=%d C=%d NH=%d: out error %.3g", B, T, C, NH, eo);
	CHECK(el < tol, "B=%d T=%d C=%d NH=%d: lse error %.3g", B, T, C, NH, el);

	/* d sum(out * R) / d qkv by central differences on up to 64 elements */
	double gmax = 0, worst = 0;
	for (size_t i = 0; i < nq; i++)
		gmax = fmax(gmax, fabs(dqkv[i]));
	size_t stride = nq > 64 ? nq / 64 : 1;
	for (size_t i = (size_t)(*seed % stride); i < nq; i += stride) {
		double x = dq[i], e = 1e-5;
		dq[i] = x + e;
		double Lp = attn_loss(ro, rl, dq, R, B, T, C, NH);
		dq[i] = x - e;
		double Lm = attn_loss(ro, rl, dq, R, B, T, C, NH);
		dq[i] = x;
		double fd = (Lp - Lm) / (2 * e), err = fabs(dqkv[i] - fd) / (gmax + 1e-3);
		if (!(err <= worst))
			worst = isnan(err) ? INFINITY : err;
	}
	CHECK(worst < 1e-5, "B=%d T=%d C=%d NH=%d: dqkv error %.3g (finite differences)", B, T, C, NH, worst);

	if (ON_CUDA) {   /* the CPU kernels on the same inputs */
		float *co = xalloc(no, sizeof(float)), *cl = xalloc(nl, sizeof(float));
		float *cd = xalloc(nq, sizeof(float));
		attention_forward_cpu(co, cl, qkv, B, T, C, NH);
		attention_backward_cpu(cd, R, qkv, co, cl, B, T, C, NH);
		double e1 = max_rel_f(out, co, no, 1.0), e2 = max_rel_f(lse, cl, nl, 1.0);
		double e3 = max_rel_f(dqkv, cd, nq, gmax + 1e-3);
		CHECK(e1 < tol && e2 < tol && e3 < 1e-5, "B=%d T=%d C=%d NH=%d: CUDA vs CPU kernel: "
		      "out %.3g lse %.3g dqkv %.3g", B, T, C, NH, e1, e2, e3);
		free(co); free(cl); free(cd);
	}
	free(qkv); free(R); free(out); free(lse); free(dqkv); free(dq); free(ro); free(rl);
}

/* GPT-2 small's shape (T = 256, C = 768, NH = 12): forward against the double
 * reference on every output, and the time of one forward and backward. */
static void check_attention_gpt2(uint64_t *seed)
{
	int B = 1, T = 256, C = 768, NH = 12;
	size_t nq = (size_t)B * T * 3 * C, no = (size_t)B * T * C, nl = (size_t)B * NH * T;
	float *qkv = xalloc(nq, sizeof(float)), *dout = xalloc(no, sizeof(float));
	float *out = xalloc(no, sizeof(float)), *lse = xalloc(nl, sizeof(float));
	float *dqkv = xalloc(nq, sizeof(float));
	double *dq = xalloc(nq, sizeof(double)), *ro = xalloc(no, sizeof(double));
	double *rl = xalloc(nl, sizeof(double));
	test_fill(qkv, nq, seed);
	test_fill(dout, no, seed);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	attn_tasks(out, lse, dqkv, qkv, dout, B, T, C, NH);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("attention B=%d T=%d C=%d NH=%d: forward + backward tasks %.1f ms (%s)\n", B, T, C, NH,
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) * 1e-6, ON_CUDA ? "CUDA" : "CPU");
	for (size_t i = 0; i < nq; i++)
		dq[i] = qkv[i];
	attn_ref(ro, rl, dq, B, T, C, NH);
	double eo = max_rel(out, ro, no, 1.0), el = max_rel(lse, rl, nl, 1.0);
	CHECK(eo < 1e-5 && el < 1e-5, "GPT-2 shape: out error %.3g, lse error %.3g", eo, el);
	double s = 0;
	for (size_t i = 0; i < nq; i++)
		s += fabs(dqkv[i]);
	CHECK(isfinite(s) && s > 0, "GPT-2 shape: dqkv not finite or zero (sum |dqkv| = %g)", s);
	free(qkv); free(dout); free(out); free(lse); free(dqkv); free(dq); free(ro); free(rl);
}

/* ---------------------------------------------------------------------------
 * AdamW */

static void adamw_ref(double *p, double *m, double *v, const float *g, size_t n,
                      const struct lspo_adamw_hparams *h, double gs)
{
	double bc1 = 1 - pow(h->beta1, h->t), bc2 = 1 - pow(h->beta2, h->t);
	for (size_t i = 0; i < n; i++) {
		double gi = g[i] * gs;
		p[i] *= 1 - (double)h->lr * h->weight_decay;
		m[i] = h->beta1 * m[i] + (1 - (double)h->beta1) * gi;
		v[i] = h->beta2 * v[i] + (1 - (double)h->beta2) * gi * gi;
		p[i] -= h->lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + h->eps);
	}
}

/* `steps` AdamW steps as tasks on (1, n) tensors; the clip handle scales the gradient. */
static void adamw_tasks(float *p, float *m, float *v, const float *grads, size_t n, int steps,
                        struct lspo_adamw_hparams h, float gs)
{
	float clip[2] = { 123.0f, gs };
	starpu_data_handle_t hp, hm, hv, hc, hg[3];
	lspo_matrix_register(&hp, p, 1, (int)n);
	lspo_matrix_register(&hm, m, 1, (int)n);
	lspo_matrix_register(&hv, v, 1, (int)n);
	lspo_matrix_register(&hc, clip, 1, 2);
	for (int s = 0; s < steps; s++) {
		lspo_matrix_register(&hg[s], (float *)grads + (size_t)s * n, 1, (int)n);
		h.t = s + 1;
		int rc = lspo_adamw_submit(hp, hg[s], hm, hv, hc, &h, 0, "adamw:L0:update");
		CHECK(rc == LSPO_OK, "adamw submit returned %d", rc);
	}
	for (int s = 0; s < steps; s++)
		starpu_data_unregister(hg[s]);
	starpu_data_unregister(hp);
	starpu_data_unregister(hm);
	starpu_data_unregister(hv);
	starpu_data_unregister(hc);
}

static void check_adamw(size_t n, int steps, float wd, float gs, uint64_t *seed)
{
	struct lspo_adamw_hparams h = { .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = wd, .t = 1 };
	float *p = xalloc(n, sizeof(float)), *m = xalloc(n, sizeof(float)), *v = xalloc(n, sizeof(float));
	float *g = xalloc(n * steps, sizeof(float));
	double *rp = xalloc(n, sizeof(double)), *rm = xalloc(n, sizeof(double)), *rv = xalloc(n, sizeof(double));
	test_fill(p, n, seed);
	test_fill(g, n * steps, seed);
	for (size_t i = 0; i < n; i++)
		rp[i] = p[i];
	float *p0 = xalloc(n, sizeof(float));
	memcpy(p0, p, sizeof(float) * n);
	adamw_tasks(p, m, v, g, n, steps, h, gs);
	for (int s = 0; s < steps; s++) {
		h.t = s + 1;
		adamw_ref(rp, rm, rv, g + (size_t)s * n, n, &h, gs);
	}
	/* p: relative to |p| plus the size of an update (lr); m relative to |m|
	 * plus the typical size of one term (1 - b1) |g| (m may cancel to ~0);
	 * v (a sum of positive terms) relative */
	double ep = 0;
	for (size_t i = 0; i < n; i++)
		ep = fmax(ep, fabs(p[i] - rp[i]) / (fabs(rp[i]) + h.lr));
	double em = max_rel(m, rm, n, 0.05 * gs), ev = max_rel(v, rv, n, 1e-30);
	CHECK(ep < 1e-6 && em < 1e-6 && ev < 1e-6, "adamw n=%zu steps=%d wd=%g scale=%g: "
	      "p error %.3g, m error %.3g, v error %.3g", n, steps, wd, gs, ep, em, ev);

	if (ON_CUDA) {   /* the CPU kernel on the same inputs */
		float *cm = xalloc(n, sizeof(float)), *cv = xalloc(n, sizeof(float));
		for (int s = 0; s < steps; s++) {
			h.t = s + 1;
			adamw_cpu(p0, g + (size_t)s * n, cm, cv, n, &h, gs);
		}
		double e1 = max_rel_f(p, p0, n, h.lr), e2 = max_rel_f(m, cm, n, 0.05 * gs);
		double e3 = max_rel_f(v, cv, n, 1e-30);
		CHECK(e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6, "adamw n=%zu: CUDA vs CPU kernel: p %.3g m %.3g v %.3g",
		      n, e1, e2, e3);
		free(cm); free(cv);
	}
	free(p); free(m); free(v); free(g); free(rp); free(rm); free(rv); free(p0);
}

/* lsp-offload.md 14.4: t = 1, betas 0.9/0.999, lr 1e-3, eps 1e-4 (outside
 * the sqrt), m = v = p = 0: g = 0.5 -> -9.998e-4, g = 0.01 -> -9.9010e-4.
 * 18 elements alternating the two, so the vector path and the tail see both. */
static void check_adamw_unit(void)
{
	enum { N = 18 };
	struct lspo_adamw_hparams h = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-4f,
	                                .weight_decay = 0.0f, .t = 1 };
	float p[N] = { 0 }, m[N] = { 0 }, v[N] = { 0 }, g[N];
	for (int i = 0; i < N; i++)
		g[i] = i % 2 ? 0.01f : 0.5f;
	adamw_tasks(p, m, v, g, N, 1, h, 1.0f);
	for (int i = 0; i < N; i++) {
		double want_p = i % 2 ? -9.9010e-4 : -9.998e-4, want_m = i % 2 ? 1e-3 : 0.05;
		double want_v = i % 2 ? 1e-7 : 2.5e-4;
		CHECK(fabs(p[i] - want_p) < 1e-8, "unit vector g=%g: p = %.6g, expected %.5g", g[i], p[i], want_p);
		/* betas are float: 1 - 0.999f is 0.001 * (1 - 1.3e-5), so v is off by that */
		CHECK(fabs(m[i] - want_m) < 1e-6 * want_m && fabs(v[i] - want_v) < 2e-5 * want_v,
		      "unit vector g=%g: m = %.7g (%.7g), v = %.7g (%.7g)", g[i], m[i], want_m, v[i], want_v);
	}
}

/* The non-finite guard: a NaN or Inf norm in the clip buffer makes AdamW
 * leave p, m and v as they are (bit for bit); and clip_scale writes scale 0
 * for a non-finite sum of squares. */
static void check_adamw_nonfinite(void)
{
	enum { N = 19 };
	struct lspo_adamw_hparams h = { .lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = 0.1f, .t = 3 };
	static const float norms[] = { NAN, INFINITY };
	for (int k = 0; k < 2; k++) {
		float p[N], m[N], v[N], g[N], p0[N], m0[N], v0[N];
		for (int i = 0; i < N; i++) {
			p[i] = 0.1f * (float)i - 0.7f;
			m[i] = 0.01f * (float)i;
			v[i] = 0.001f * (float)(i + 1);
			g[i] = i == 5 ? NAN : 0.3f;
		}
		memcpy(p0, p, sizeof(p));
		memcpy(m0, m, sizeof(m));
		memcpy(v0, v, sizeof(v));
		float clip[2] = { norms[k], 0.0f };
		starpu_data_handle_t hp, hm, hv, hc, hg;
		lspo_matrix_register(&hp, p, 1, N);
		lspo_matrix_register(&hm, m, 1, N);
		lspo_matrix_register(&hv, v, 1, N);
		lspo_matrix_register(&hg, g, 1, N);
		lspo_matrix_register(&hc, clip, 1, 2);
		CHECK(lspo_adamw_submit(hp, hg, hm, hv, hc, &h, 0, "adamw:L0:guard") == LSPO_OK, "adamw submit");
		starpu_data_unregister(hp);
		starpu_data_unregister(hm);
		starpu_data_unregister(hv);
		starpu_data_unregister(hg);
		starpu_data_unregister(hc);
		CHECK(!memcmp(p, p0, sizeof(p)) && !memcmp(m, m0, sizeof(m)) && !memcmp(v, v0, sizeof(v)),
		      "adamw with a %g norm changed the parameters or moments", (double)norms[k]);
	}
	/* clip_scale of a tensor holding an Inf: norm Inf, scale 0 */
	float x[5] = { 1, 2, INFINITY, 4, 5 };
	double part = 0;
	float clip[2] = { 0, 0 };
	starpu_data_handle_t hx, hs, hc;
	lspo_matrix_register(&hx, x, 1, 5);
	lspo_matrix_register_elem(&hs, &part, 1, 1, sizeof(double));
	lspo_matrix_register(&hc, clip, 1, 2);
	CHECK(lspo_sumsq_submit(hx, hs, 0, "sumsq:L0:guard") == LSPO_OK, "sumsq submit");
	CHECK(lspo_clip_scale_submit(&hs, 1, hc, 1.0f, 0, "clip_scale:L0:guard") == LSPO_OK, "clip submit");
	starpu_data_unregister(hx);
	starpu_data_unregister(hs);
	starpu_data_unregister(hc);
	CHECK(!isfinite(clip[0]) && clip[1] == 0.0f, "clip of an Inf gradient: norm %g scale %g, expected "
	      "a non-finite norm and scale 0", (double)clip[0], (double)clip[1]);
}

/* ---------------------------------------------------------------------------
 * Gradient norm and clipping */

/* sumsq of each tensor as a task, then clip_scale over all of them. */
static void check_gradnorm(int ntensors, uint64_t *seed)
{
	static const int shapes[][2] = { { 1, 1 }, { 3, 5 }, { 1, 1023 }, { 64, 65 }, { 7, 9 }, { 2, 1000 } };
	int nshapes = (int)(sizeof(shapes) / sizeof(shapes[0]));
	float **x = xalloc(ntensors, sizeof(float *));
	double *part = xalloc(ntensors, sizeof(double)), total = 0;
	starpu_data_handle_t *hx = xalloc(ntensors, sizeof(*hx)), *hp = xalloc(ntensors, sizeof(*hp));
	int worst_i = -1;
	double worst = 0;
	for (int i = 0; i < ntensors; i++) {
		int r = shapes[i % nshapes][0], c = shapes[i % nshapes][1];
		x[i] = xalloc((size_t)r * c, sizeof(float));
		test_fill(x[i], (size_t)r * c, seed);
		part[i] = NAN;
		lspo_matrix_register(&hx[i], x[i], r, c);
		lspo_matrix_register_elem(&hp[i], &part[i], 1, 1, sizeof(double));
		int rc = lspo_sumsq_submit(hx[i], hp[i], 0, "sumsq:L0:norm");
		CHECK(rc == LSPO_OK, "sumsq submit returned %d", rc);
	}
	/* max_norm: no clipping, clipping, 0 and negative (both: no clipping) */
	double ref_total = 0;
	for (int i = 0; i < ntensors; i++) {
		int n = shapes[i % nshapes][0] * shapes[i % nshapes][1];
		for (int j = 0; j < n; j++)
			ref_total += (double)x[i][j] * x[i][j];
	}
	double ref_norm = sqrt(ref_total);
	float max_norms[4] = { (float)(2 * ref_norm), (float)(0.25 * ref_norm), 0.0f, -1.0f };
	float clip[4][2];
	starpu_data_handle_t hc[4];
	for (int k = 0; k < 4; k++) {
		clip[k][0] = clip[k][1] = NAN;
		lspo_matrix_register(&hc[k], clip[k], 1, 2);
		int rc = lspo_clip_scale_submit(hp, ntensors, hc[k], max_norms[k], 0, "clip_scale:L0:norm");
		CHECK(rc == LSPO_OK, "clip_scale submit returned %d", rc);
	}
	for (int k = 0; k < 4; k++)
		starpu_data_unregister(hc[k]);
	for (int i = 0; i < ntensors; i++) {
		starpu_data_unregister(hx[i]);
		starpu_data_unregister(hp[i]);
		int n = shapes[i % nshapes][0] * shapes[i % nshapes][1];
		double ref = 0;
		for (int j = 0; j < n; j++)
			ref += (double)x[i][j] * x[i][j];
		double e = fabs(part[i] - ref) / ref;
		if (!(e <= worst)) {
			worst = isnan(e) ? INFINITY : e;
			worst_i = i;
		}
		if (ON_CUDA) {
			double c = sumsq_cpu(x[i], (size_t)n);
			CHECK(fabs(part[i] - c) <= 1e-13 * c, "sumsq %d: CUDA %.17g vs CPU kernel %.17g", i, part[i], c);
		}
		total += part[i];
	}
	CHECK(worst < 1e-13, "sumsq of tensor %d: relative error %.3g", worst_i, worst);
	for (int k = 0; k < 4; k++) {
		double want = max_norms[k] > 0 ? fmin(1.0, max_norms[k] / (ref_norm + 1e-6)) : 1.0;
		CHECK(fabs(clip[k][0] - ref_norm) <= 1e-6 * ref_norm, "%d tensors: norm %.9g, expected %.9g",
		      ntensors, clip[k][0], ref_norm);
		CHECK(fabs(clip[k][1] - want) <= 1e-6 * want, "%d tensors, max_norm %g: scale %.9g, expected %.9g",
		      ntensors, max_norms[k], clip[k][1], want);
	}
	CHECK(clip[0][1] == 1.0f && clip[2][1] == 1.0f && clip[3][1] == 1.0f && clip[1][1] < 0.26f,
	      "scales %g %g %g %g", clip[0][1], clip[1][1], clip[2][1], clip[3][1]);
	for (int i = 0; i < ntensors; i++)
		free(x[i]);
	free(x); free(part); free(hx); free(hp);
	(void)total;
}

/* sumsq_cpu: any length, the same bits however the lanes are filled. */
static void check_sumsq_lengths(uint64_t *seed)
{
	float x[300];
	test_fill(x, 300, seed);
	for (size_t n = 0; n <= 300; n += (n < 40 ? 1 : 37)) {
		double ref = 0;
		for (size_t i = 0; i < n; i++)
			ref += (double)x[i] * x[i];
		double s = sumsq_cpu(x, n);
		CHECK(fabs(s - ref) <= 1e-14 * ref, "sumsq_cpu n=%zu: %.17g vs %.17g", n, s, ref);
	}
}

/* ---------------------------------------------------------------------------
 * Shapes the helpers must refuse */

static void check_refusals(void)
{
	float buf[64] = { 0 };
	double d = 0;
	starpu_data_handle_t q, o, l, a, b, c2, c3, dd;
	lspo_matrix_register(&q, buf, 4, 12);   /* B*T = 4, C = 4 */
	lspo_matrix_register(&o, buf, 4, 4);
	lspo_matrix_register(&l, buf, 1, 8);    /* B * NH * T with B = 2, NH = 2, T = 2 */
	lspo_matrix_register(&a, buf, 1, 7);
	lspo_matrix_register(&b, buf, 1, 8);
	lspo_matrix_register(&c2, buf, 1, 2);
	lspo_matrix_register(&c3, buf, 1, 3);
	lspo_matrix_register_elem(&dd, &d, 1, 1, sizeof(double));
	CHECK(lspo_attention_fwd_submit(q, o, l, 3, 2, 0, "attention:L0:bad") == LSPO_EINVAL, "B=3 accepted");
	CHECK(lspo_attention_fwd_submit(q, o, l, 2, 3, 0, "attention:L0:bad") == LSPO_EINVAL, "NH=3 accepted");
	CHECK(lspo_attention_fwd_submit(q, o, a, 2, 2, 0, "attention:L0:bad") == LSPO_EINVAL, "short lse accepted");
	CHECK(lspo_attention_bwd_submit(o, q, o, l, o, 2, 2, 0, "attention:L0:bad") == LSPO_EINVAL,
	      "dqkv (4, 4) accepted");
	struct lspo_adamw_hparams h = { 1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1, 0 };
	CHECK(lspo_adamw_submit(a, b, a, a, c2, &h, 0, "adamw:L0:bad") == LSPO_EINVAL, "grad shape accepted");
	CHECK(lspo_adamw_submit(a, a, a, a, c3, &h, 0, "adamw:L0:bad") == LSPO_EINVAL, "clip (1, 3) accepted");
	h.t = 0;
	CHECK(lspo_adamw_submit(a, a, a, a, c2, &h, 0, "adamw:L0:bad") == LSPO_EINVAL, "t = 0 accepted");
	CHECK(lspo_sumsq_submit(a, b, 0, "sumsq:L0:bad") == LSPO_EINVAL, "float out accepted");
	CHECK(lspo_clip_scale_submit(&dd, 1, c3, 1.0f, 0, "clip_scale:L0:bad") == LSPO_EINVAL, "clip (1, 3) accepted");
	CHECK(lspo_clip_scale_submit(&a, 1, c2, 1.0f, 0, "clip_scale:L0:bad") == LSPO_EINVAL, "float partial accepted");
	CHECK(lspo_clip_scale_submit(&dd, 0, c2, 1.0f, 0, "clip_scale:L0:bad") == LSPO_EINVAL, "0 partials accepted");
	starpu_data_unregister(q);
	starpu_data_unregister(o);
	starpu_data_unregister(l);
	starpu_data_unregister(a);
	starpu_data_unregister(b);
	starpu_data_unregister(c2);
	starpu_data_unregister(c3);
	starpu_data_unregister(dd);
}

int main(void)
{
	struct lspo_ctx *ctx = ON_CUDA ? test_start("eager", 0, 1) : test_start("eager", -1, 0);
	uint64_t seed = 2024;
	int cases = 0;
	static const int Bs[] = { 1, 2 }, Ts[] = { 1, 5, 17 }, Cs[] = { 4, 12, 48 }, NHs[] = { 1, 2, 4 };
	for (int ib = 0; ib < 2; ib++)
		for (int it = 0; it < 3; it++)
			for (int ic = 0; ic < 3; ic++)
				for (int ih = 0; ih < 3; ih++) {
					if (Cs[ic] % NHs[ih])
						continue;
					check_attention(Bs[ib], Ts[it], Cs[ic], NHs[ih], &seed);
					cases++;
				}
	check_attention(2, 70, 128, 2, &seed);   /* hs = 64 and several tiles of 32 */
	cases++;
	check_attention_gpt2(&seed);

	static const size_t lens[] = { 1, 7, 8, 9, 1023 };
	for (int i = 0; i < 5; i++)
		for (int steps = 1; steps <= 3; steps += 2) {
			check_adamw(lens[i], steps, 0.0f, 1.0f, &seed);
			check_adamw(lens[i], steps, 0.1f, 0.37f, &seed);
			cases += 2;
		}
	check_adamw_unit();
	check_adamw_nonfinite();

	check_sumsq_lengths(&seed);
	check_gradnorm(1, &seed);
	check_gradnorm(6, &seed);
	check_gradnorm(300, &seed);   /* more partials than STARPU_NMAXBUFS and than one CUDA chunk */
	check_refusals();

	printf("%d attention/adamw cases on %s\n", cases, ON_CUDA ? "CUDA" : "CPU");
	lspo_ctx_destroy(ctx);
	return test_finish(ON_CUDA ? "test_ops_b_cuda" : "test_ops_b");
}
