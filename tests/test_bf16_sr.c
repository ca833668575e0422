/*
 * test_bf16_sr.c - --bf16-update stochastic (issue 13): bf16 weights updated
 * in place with stochastic rounding, no fp32 master on the accelerator.
 *   - lspo_bf16_round_sr: always one of the two bf16 neighbours of x (x
 *     itself when exact), NaN and infinities kept; over many element indices
 *     it rounds up with probability (x - lower) / spacing (within 5 sigma),
 *     so its mean is x; different keys give independent bits;
 *   - small-update accumulation through the CPU codelets (AdamW and
 *     proj_apply on a bf16 weight): an update 1/100 of the weights' bf16
 *     spacing, which round to nearest loses every time, applied K times moves
 *     the weights by K updates on average, within 5 sigma of the rounding's
 *     own spread (about 2.5 % of the move);
 *   - GPT-2 and Llama models in native and lsp mode: losses and parameters
 *     bit-identical under eager, dmdas and lspo; the parameters read back are
 *     bf16 values; the same seed gives the same run, another seed another;
 *     training tracks the fp32-master run (losses within 2 %) and learns;
 *     zero mode is unaffected (its masters are in host memory);
 *     fp32 weights refuse it.
 * The CUDA kernels are checked against these CPU codelets, bit for bit, in
 * tests/test_cuemu.
 */
#include <string.h>

#include "common.h"
#include "adamw.h"
#include "bf16.h"
#include "proj_apply.h"

/* ------------------------------------------------------------------------ */
/* The rounding itself                                                      */

static float bits_float(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

static void test_rounding(void)
{
	uint64_t s = 99;
	size_t bad = 0, n = 1 << 20;
	for (size_t i = 0; i < n; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		uint32_t u = (uint32_t)(s >> 11);
		if ((u & 0x7fffffffu) >= 0x7f7f0000u)   /* NaN, inf, and the top binade (may overflow): below */
			continue;
		uint16_t r = lspo_bf16_round_sr(bits_float(u), s, i), lo = (uint16_t)(u >> 16);
		if (u & 0xffffu)
			bad += r != lo && r != (uint16_t)(lo + 1);   /* the magnitude below or above */
		else
			bad += r != lo;                               /* exact: unchanged */
	}
	CHECK(bad == 0, "%zu of %zu roundings not to a neighbour", bad, n);
	CHECK(lspo_bf16_round_sr(INFINITY, 1, 2) == 0x7f80u && lspo_bf16_round_sr(-INFINITY, 1, 2) == 0xff80u,
	      "infinities");
	CHECK(isnan(lspo_bf16_to_f32(lspo_bf16_round_sr(NAN, 1, 2))), "NaN");
	CHECK(isnan(lspo_bf16_to_f32(lspo_bf16_round_sr(bits_float(0x7f800001u), 1, 2))), "signalling NaN");

	/* Unbiased: x = lower + f spacing rounds up with probability f. */
	static const double fracs[] = { 0.01, 0.25, 0.5, 0.75, 0.993 };
	static const float bases[] = { 1.5f, -0.3125f, 3.0e-30f, -6.0e20f };
	const int m = 1 << 16;
	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++)
		for (size_t k = 0; k < sizeof(fracs) / sizeof(fracs[0]); k++) {
			uint32_t ub;
			memcpy(&ub, &bases[b], sizeof(ub));
			uint32_t low = (uint32_t)(fracs[k] * 65536.0);
			uint32_t u = (ub & 0xffff0000u) | low;
			double f = low / 65536.0;
			uint64_t key = lspo_sr_key(7, 3, b * 10 + k), key2 = lspo_sr_key(7, 4, b * 10 + k);
			int up = 0, differ = 0;
			double sum = 0;
			for (int i = 0; i < m; i++) {
				uint16_t r = lspo_bf16_round_sr_bits(u, key, (uint64_t)i);
				up += r != (uint16_t)(u >> 16);
				differ += r != lspo_bf16_round_sr_bits(u, key2, (uint64_t)i);
				sum += lspo_bf16_to_f32(r);
			}
			double sigma = sqrt(f * (1 - f) / m);
			double x = bits_float(u), lo = lspo_bf16_to_f32((uint16_t)(u >> 16));
			double spacing = fabs(lspo_bf16_to_f32((uint16_t)((u >> 16) + 1)) - lo);
			CHECK(fabs((double)up / m - f) <= 5 * sigma, "x %.9g: up %d of %d, expected %.4f", x, up, m, f);
			CHECK(fabs(sum / m - x) <= 5 * sigma * spacing, "x %.9g: mean %.9g (spacing %.3g)", x, sum / m,
			      spacing);
			/* two keys: independent, so they disagree with probability 2 f (1 - f) */
			double pd = 2 * f * (1 - f);
			CHECK(fabs((double)differ / m - pd) <= 5 * sqrt(pd * (1 - pd) / m) + 1e-9,
			      "x %.9g: two keys disagree %d of %d times, expected %.4f", x, differ, m, pd);
		}
	printf("stochastic rounding: neighbours only, unbiased within 5 sigma (%d draws each)\n", m);
}

/* ------------------------------------------------------------------------ */
/* Small updates accumulate (CPU codelets called directly)                  */

struct buf {
	struct starpu_matrix_interface mi;
	void *data;
};

static void *buf_init(struct buf *b, int rows, int cols, int ld, size_t elemsize)
{
	memset(b, 0, sizeof(*b));
	b->data = calloc((size_t)rows * ld, elemsize);
	if (!b->data)
		exit(TEST_ERROR);
	b->mi.id = STARPU_MATRIX_INTERFACE_ID;
	b->mi.ptr = b->mi.dev_handle = (uintptr_t)b->data;
	b->mi.nx = (uint32_t)cols;
	b->mi.ny = (uint32_t)rows;
	b->mi.ld = (uint32_t)ld;
	b->mi.elemsize = elemsize;
	b->mi.allocsize = (size_t)rows * ld * elemsize;
	return b->data;
}

/* Weights all w0 in (rows, cols) with row stride ld, after K steps that
 * each should move them by `expect_step` (the float32 update): their mean
 * move against K times that, within 5 sigma of stochastic rounding's
 * spread (per step f (1 - f) spacing^2, f = |update| / spacing). */
static void check_moved(const char *what, const uint16_t *w, int rows, int cols, int ld, float w0, double total,
                        double spacing, double f, int K)
{
	double sum = 0;
	int lost_nearest = lspo_bf16_from_f32(w0 + (float)(total / K)) == lspo_bf16_from_f32(w0);
	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++)
			sum += (double)lspo_bf16_to_f32(w[(size_t)r * ld + c]) - w0;
	double n = (double)rows * cols, mean = sum / n;
	double sigma = spacing * sqrt(K * f * (1 - f) / n);
	CHECK(lost_nearest, "%s: one update survives round to nearest: the test is too easy", what);
	CHECK(fabs(mean - total) <= 5 * sigma, "%s: weights moved %.6g on average, expected %.6g (5 sigma %.3g)", what,
	      mean, total, 5 * sigma);
	printf("%s: update %.3g of the spacing %.3g, %d steps: moved %.6g on average, expected %.6g "
	       "(%.2f %%, 5 sigma %.2f %%); round to nearest would not move\n", what, f, spacing, K, mean, total,
	       100 * (mean / total - 1), 100 * 5 * sigma / fabs(total));
}

static void test_accumulate_adamw(void)
{
	enum { R = 64, C = 64, LD = 70, K = 1000 };
	const float w0 = 1.5f;
	const double spacing = 1.0 / 128;   /* bf16 in [1, 2) */
	struct buf p, g, m, v, clip;
	uint16_t *pw = buf_init(&p, R, C, LD, 2);
	float *gw = buf_init(&g, R, C, C, 4);
	buf_init(&m, R, C, C, 4);
	buf_init(&v, R, C, C, 4);
	float *cw = buf_init(&clip, 1, 2, 2, 4);
	cw[0] = 1.0f;   /* the norm (finite) */
	cw[1] = 1.0f;   /* the gradient scale */
	for (int r = 0; r < R; r++)
		for (int c = 0; c < C; c++) {
			pw[(size_t)r * LD + c] = lspo_bf16_from_f32(w0);
			gw[(size_t)r * C + c] = 0.25f;
		}
	/* constant gradient: every step moves p by lr m_hat / (sqrt(v_hat) + eps), nearly lr */
	struct lspo_adamw_hparams h = { .lr = (float)(spacing / 100), .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f };
	double total = 0, mm = 0, vv = 0;
	void *bufs[] = { &p.mi, &g.mi, &m.mi, &v.mi, &clip.mi };
	for (int t = 1; t <= K; t++) {
		h.t = t;
		h.sr_key = lspo_sr_key(11, (uint64_t)t, 5);
		cl_adamw.cpu_funcs[0](bufs, &h);
		mm = 0.9 * mm + 0.1 * 0.25;
		vv = 0.999 * vv + 0.001 * 0.0625;
		total -= (double)h.lr * (mm / (1 - pow(0.9, t))) / (sqrt(vv / (1 - pow(0.999, t))) + 1e-8);
	}
	check_moved("adamw on bf16", pw, R, C, LD, w0, total, spacing, fabs(total / K) / spacing, K);
	free(p.data); free(g.data); free(m.data); free(v.data); free(clip.data);
}

/* W += alpha P Delta Q^T with P, Q one non-zero 1 per row in column 0 and
 * Delta[0][0] = delta: every weight takes alpha delta. */
static void test_accumulate_apply(int transposed)
{
	enum { M = 48, N = 40, D = 4, K = 1000 };
	const float w0 = -1.25f;
	const double spacing = 1.0 / 128;
	struct buf w, pi, pv, qi, qv, delta, e;
	uint16_t *ww = buf_init(&w, M, N, N, 2);
	buf_init(&pi, M, 1, 1, 4);
	float *pvw = buf_init(&pv, M, 1, 1, 4);
	buf_init(&qi, N, 1, 1, 4);
	float *qvw = buf_init(&qv, N, 1, 1, 4);
	float *dw = buf_init(&delta, D, D, D, 4);
	buf_init(&e, D, N, N, 4);
	for (int i = 0; i < M * N; i++)
		ww[i] = lspo_bf16_from_f32(w0);
	for (int i = 0; i < M; i++)
		pvw[i] = 1.0f;
	for (int j = 0; j < N; j++)
		qvw[j] = 1.0f;
	dw[0] = (float)(spacing / 100);
	struct lspo_proj_apply_args a = { .alpha = 1.0f, .lr_wd = 0.0f };
	void *bufs[] = { &w.mi, &pi.mi, &pv.mi, &qi.mi, &qv.mi, &delta.mi, &e.mi };
	const struct starpu_codelet *cl = transposed ? &cl_proj_apply_t : &cl_proj_apply;
	for (int t = 1; t <= K; t++) {
		a.sr_key = lspo_sr_key(11, (uint64_t)t, 9);
		cl->cpu_funcs[0](bufs, &a);
	}
	check_moved(transposed ? "proj_apply_t on bf16" : "proj_apply on bf16", ww, M, N, N, w0, K * (double)dw[0],
	            spacing, dw[0] / spacing, K);
	free(w.data); free(pi.data); free(pv.data); free(qi.data); free(qv.data); free(delta.data); free(e.data);
}

/* ------------------------------------------------------------------------ */
/* Models                                                                   */

#define STEPS 30
enum { BATCH = 2, SEQ = 16, LSP_D = 8, NSCHED = 3 };

static const struct lspo_model_config gpt2_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                   .n_layer = 2, .n_head = 2 };
static const struct lspo_model_config llama_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                    .n_layer = 2, .n_head = 4, .family = LSPO_FAMILY_LLAMA,
                                                    .n_kv_head = 2, .n_inner = 48 };

/* Four batches in turn, targets a function of the inputs: learnable. */
static void batch(int step, int V, int32_t *in, int32_t *tg)
{
	uint64_t s = 17 + (uint64_t)(step % 4);
	for (int i = 0; i < BATCH * SEQ; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * V) % V;
		tg[i] = (in[i] * 7 + 3) % V;
	}
}

/* STEPS steps; losses and the final parameters. */
static void train(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, enum lspo_mode mode,
                  enum lspo_bf16_update u, uint64_t seed, double *losses, float *params)
{
	struct lspo_model *m = NULL;
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = mode;
	o.lsp_d = LSP_D;
	o.lsp_r = 2;
	CHECK(lspo_model_init_params(cfg, 5, params) == LSPO_OK, "init");
	CHECK(lspo_model_create_dtype(ctx, cfg, BATCH, SEQ, LSPO_DTYPE_BF16, &m) == LSPO_OK, "create");
	if (!m)
		exit(TEST_ERROR);
	CHECK(lspo_model_set_bf16_update(m, u, seed) == LSPO_OK, "set bf16 update");
	CHECK(lspo_model_bf16_update(m) == u, "bf16 update read back");
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "params");
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "mode");
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 3e-3f;
	opt.weight_decay = 0.01f;
	int32_t in[BATCH * SEQ], tg[BATCH * SEQ];
	for (int s = 0; s < STEPS; s++) {
		struct lspo_step_stats st;
		batch(s, cfg->vocab_size, in, tg);
		CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "step %d", s);
		losses[s] = st.loss;
	}
	CHECK(lspo_model_get_params(m, params) == LSPO_OK, "get params");
	lspo_model_free(m);
}

static void test_models(void)
{
	static const char *const scheds[NSCHED] = { "eager", "dmdas", "lspo" };
	static const enum lspo_mode modes[] = { LSPO_MODE_NATIVE, LSPO_MODE_LSP, LSPO_MODE_ZERO };
	const struct lspo_model_config *cfgs[] = { &gpt2_cfg, &llama_cfg };
	static const char *const names[] = { "gpt2", "llama" };
	for (int f = 0; f < 2; f++) {
		size_t n = lspo_model_nparams(cfgs[f]);
		for (int k = 0; k < 3; k++) {
			const char *mode = lspo_mode_name(modes[k]);
			double sr[NSCHED][STEPS], master[STEPS], other[STEPS];
			float *p[NSCHED], *pm = falloc(n), *po = falloc(n);
			for (int q = 0; q < NSCHED; q++) {   /* one StarPU per policy */
				p[q] = falloc(n);
				struct lspo_ctx *ctx = test_start(scheds[q], -1, 0);
				train(ctx, cfgs[f], modes[k], LSPO_BF16_STOCHASTIC, 42, sr[q], p[q]);
				if (q == 0) {
					train(ctx, cfgs[f], modes[k], LSPO_BF16_MASTER, 42, master, pm);
					train(ctx, cfgs[f], modes[k], LSPO_BF16_STOCHASTIC, 43, other, po);
				}
				lspo_ctx_destroy(ctx);
			}
			for (int q = 1; q < NSCHED; q++)
				CHECK(!memcmp(sr[q], sr[0], sizeof(sr[0])) && !memcmp(p[q], p[0], n * sizeof(float)),
				      "%s %s: %s differs from eager (losses or parameters)", names[f], mode, scheds[q]);
			size_t not16 = 0, dseed = 0;
			for (size_t i = 0; i < n; i++) {
				not16 += lspo_bf16_to_f32(lspo_bf16_from_f32(p[0][i])) != p[0][i];
				dseed += po[i] != p[0][i];
			}
			double gap = 0;
			for (int s = 0; s < STEPS; s++)
				gap = fmax(gap, fabs(sr[0][s] - master[s]) / master[s]);
			if (modes[k] == LSPO_MODE_ZERO) {   /* host masters: the option changes nothing */
				CHECK(!memcmp(sr[0], master, sizeof(master)) && !memcmp(p[0], pm, n * sizeof(float)),
				      "%s zero: stochastic differs from master", names[f]);
				CHECK(!memcmp(sr[0], other, sizeof(other)), "%s zero: the seed changed the run", names[f]);
				printf("%-5s zero  : --bf16-update stochastic changes nothing (fp32 masters in host memory)\n",
				       names[f]);
			} else {
				CHECK(not16 == 0, "%s %s: %zu parameters read back are not bf16 values", names[f], mode, not16);
				CHECK(dseed > n / 10, "%s %s: another seed changed only %zu of %zu parameters", names[f], mode,
				      dseed, n);
				CHECK(gap < 0.02, "%s %s: losses %.3g relative from the fp32-master run", names[f], mode, gap);
				CHECK(sr[0][STEPS - 1] < 0.9 * sr[0][0], "%s %s: loss %.4f -> %.4f: does not learn", names[f],
				      mode, sr[0][0], sr[0][STEPS - 1]);
				printf("%-5s %-6s: stochastic %.5f -> %.5f, fp32 master %.5f -> %.5f (max gap %.2e); "
				       "eager/dmdas/lspo bit-identical; another seed moves %zu of %zu parameters\n", names[f],
				       mode, sr[0][0], sr[0][STEPS - 1], master[0], master[STEPS - 1], gap, dseed, n);
			}
			for (int q = 0; q < NSCHED; q++)
				free(p[q]);
			free(pm);
			free(po);
		}
	}
	/* fp32 weights have no bf16 to round into */
	struct lspo_ctx *ctx = test_start("eager", 1, 0);
	struct lspo_model *m = NULL;
	CHECK(lspo_model_create(ctx, &gpt2_cfg, BATCH, SEQ, &m) == LSPO_OK, "create fp32");
	CHECK(m && lspo_model_set_bf16_update(m, LSPO_BF16_STOCHASTIC, 1) == LSPO_EINVAL, "fp32 accepted stochastic");
	CHECK(m && lspo_model_set_bf16_update(m, LSPO_BF16_MASTER, 1) == LSPO_OK, "fp32 refused master");
	lspo_model_free(m);
	lspo_ctx_destroy(ctx);
}

int main(void)
{
	enum lspo_bf16_update u;
	CHECK(lspo_bf16_update_parse("stochastic", &u) == LSPO_OK && u == LSPO_BF16_STOCHASTIC, "parse stochastic");
	CHECK(lspo_bf16_update_parse("master", &u) == LSPO_OK && u == LSPO_BF16_MASTER, "parse master");
	CHECK(lspo_bf16_update_parse("nearest", &u) == LSPO_EINVAL, "nearest accepted");
	CHECK(!strcmp(lspo_bf16_update_name(LSPO_BF16_STOCHASTIC), "stochastic"), "name");
	test_rounding();
	test_accumulate_adamw();
	test_accumulate_apply(0);
	test_accumulate_apply(1);
	test_models();
	return test_finish("test_bf16_sr");
}
