/*
 * test_bf16_sr_cuda.c - --bf16-update stochastic on a GPU: AdamW and
 * proj_apply (and proj_apply_t) on a bf16 weight as StarPU tasks on a CUDA
 * worker, against the CPU codelets on the same inputs: the same bits (the
 * rounding's key and element indices are the same on both, and the float32
 * arithmetic of the update is written the same way; the kernels are compiled
 * without fast math).  Skips (77) without a CUDA worker.  tests/test_cuemu
 * runs the same comparison on the emulated kernels.
 */
#include <string.h>

#include <starpu.h>

#include "common.h"
#include "adamw.h"
#include "bf16.h"
#include "proj_apply.h"

static uint64_t seed = 77;

static uint16_t *bf16_buf(size_t n)
{
	uint16_t *p = malloc(n * sizeof(*p));
	if (!p)
		exit(TEST_ERROR);
	for (size_t i = 0; i < n; i++)
		p[i] = lspo_bf16_from_f32(test_uniform(&seed));
	return p;
}

static float *f32_buf(size_t n, float scale)
{
	float *p = falloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = scale * test_uniform(&seed);
	return p;
}

static void mat(struct starpu_matrix_interface *mi, void *data, int rows, int cols, size_t es)
{
	memset(mi, 0, sizeof(*mi));
	mi->id = STARPU_MATRIX_INTERFACE_ID;
	mi->ptr = mi->dev_handle = (uintptr_t)data;
	mi->nx = (uint32_t)cols;
	mi->ny = (uint32_t)rows;
	mi->ld = (uint32_t)cols;
	mi->elemsize = es;
	mi->allocsize = (size_t)rows * cols * es;
}

static void reg(starpu_data_handle_t *h, void *data, int rows, int cols, size_t es)
{
	starpu_matrix_data_register(h, STARPU_MAIN_RAM, (uintptr_t)data, (uint32_t)cols, (uint32_t)cols,
	                            (uint32_t)rows, es);
}

static size_t differ16(const uint16_t *a, const uint16_t *b, size_t n)
{
	size_t d = 0;
	for (size_t i = 0; i < n; i++)
		d += a[i] != b[i];
	return d;
}

static void test_adamw(int rows, int cols, int t)
{
	size_t n = (size_t)rows * cols;
	uint16_t *p = bf16_buf(n), *pc = malloc(n * 2);
	float *g = f32_buf(n, 1.0f), *m = f32_buf(n, 0.1f), *v = f32_buf(n, 0.01f), clip[2] = { 1.0f, 0.5f };
	float *mc = falloc(n), *vc = falloc(n);
	for (size_t i = 0; i < n; i++)
		v[i] = fabsf(v[i]);
	memcpy(pc, p, n * 2);
	memcpy(mc, m, n * 4);
	memcpy(vc, v, n * 4);
	struct lspo_adamw_hparams h = { .lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
	                                .weight_decay = 0.1f, .t = t, .sr_key = lspo_sr_key(5, (uint64_t)t, 2) };
	struct starpu_matrix_interface ip, ig, im, iv, ic;   /* the CPU codelet on the copies */
	mat(&ip, pc, rows, cols, 2);
	mat(&ig, g, rows, cols, 4);
	mat(&im, mc, rows, cols, 4);
	mat(&iv, vc, rows, cols, 4);
	mat(&ic, clip, 1, 2, 4);
	void *bufs[] = { &ip, &ig, &im, &iv, &ic };
	cl_adamw.cpu_funcs[0](bufs, &h);
	starpu_data_handle_t hp, hg, hm, hv, hc;
	reg(&hp, p, rows, cols, 2);
	reg(&hg, g, rows, cols, 4);
	reg(&hm, m, rows, cols, 4);
	reg(&hv, v, rows, cols, 4);
	reg(&hc, clip, 1, 2, 4);
	CHECK(lspo_adamw_submit_where(hp, hg, hm, hv, hc, &h, STARPU_CUDA, 0, "adamw:upd") == LSPO_OK, "submit");
	starpu_task_wait_for_all();
	starpu_data_handle_t hs[] = { hp, hg, hm, hv, hc };
	for (int i = 0; i < 5; i++)
		starpu_data_unregister(hs[i]);
	size_t d = differ16(p, pc, n);
	CHECK(d == 0 && !memcmp(m, mc, n * 4) && !memcmp(v, vc, n * 4),
	      "adamw %dx%d: %zu of %zu bf16 weights differ from the CPU codelet's (or the moments do)", rows, cols, d, n);
	free(p); free(pc); free(g); free(m); free(v); free(mc); free(vc);
}

static void test_apply(int M, int N, int d, int r, int transposed)
{
	size_t n = (size_t)M * N;
	uint16_t *w = bf16_buf(n), *wc = malloc(n * 2);
	memcpy(wc, w, n * 2);
	int32_t *pi = malloc((size_t)M * r * 4), *qi = malloc((size_t)N * r * 4);
	for (int i = 0; i < M * r; i++)
		pi[i] = (i * 7 + i / r) % d;
	for (int j = 0; j < N * r; j++)
		qi[j] = (j * 5 + 3 * (j / r)) % d;
	float *pv = f32_buf((size_t)M * r, 1.0f), *qv = f32_buf((size_t)N * r, 1.0f);
	float *delta = f32_buf((size_t)d * d, 1e-3f), *e = falloc((size_t)d * N);
	struct lspo_proj_apply_args a = { 0.9f, 0.01f, lspo_sr_key(5, 3, (uint64_t)n) };
	struct starpu_matrix_interface iw, ipi, ipv, iqi, iqv, id, ie;
	mat(&iw, wc, M, N, 2);
	mat(&ipi, pi, M, r, 4);
	mat(&ipv, pv, M, r, 4);
	mat(&iqi, qi, N, r, 4);
	mat(&iqv, qv, N, r, 4);
	mat(&id, delta, d, d, 4);
	mat(&ie, e, d, N, 4);
	void *bufs[] = { &iw, &ipi, &ipv, &iqi, &iqv, &id, &ie };
	(transposed ? &cl_proj_apply_t : &cl_proj_apply)->cpu_funcs[0](bufs, &a);
	starpu_data_handle_t hw, hpi, hpv, hqi, hqv, hd;
	reg(&hw, w, M, N, 2);
	reg(&hpi, pi, M, r, 4);
	reg(&hpv, pv, M, r, 4);
	reg(&hqi, qi, N, r, 4);
	reg(&hqv, qv, N, r, 4);
	reg(&hd, delta, d, d, 4);
	/* the CUDA worker is the only one: the task runs there */
	CHECK(lspo_proj_apply_sr_submit(hw, hpi, hpv, hqi, hqv, hd, a.alpha, a.lr_wd, transposed, a.sr_key, 0,
	                                "proj_apply:apply") == LSPO_OK, "submit");
	starpu_task_wait_for_all();
	starpu_data_handle_t hs[] = { hw, hpi, hpv, hqi, hqv, hd };
	for (int i = 0; i < 6; i++)
		starpu_data_unregister(hs[i]);
	size_t df = differ16(w, wc, n);
	CHECK(df == 0, "proj_apply%s %dx%d d %d r %d: %zu of %zu bf16 weights differ from the CPU codelet's",
	      transposed ? "_t" : "", M, N, d, r, df, n);
	free(w); free(wc); free(pi); free(qi); free(pv); free(qv); free(delta); free(e);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("eager", 0, 1);   /* one CUDA worker, no CPU worker: skips without */
	test_adamw(1, 4097, 1);
	test_adamw(33, 129, 3);
	for (int tr = 0; tr < 2; tr++) {
		test_apply(64, 48, 16, 4, tr);
		test_apply(1280, 640, 64, 8, tr);
	}
	lspo_ctx_destroy(ctx);
	return test_finish("test_bf16_sr_cuda");
}
