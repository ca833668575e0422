/*
 * test_bf16.c - --dtype bf16 (issue 13):
 *   - lspo_bf16_from_f32 against a double-precision reference of round to
 *     nearest, ties to even (random bit patterns, every kind of tie, NaN,
 *     infinities, overflow, subnormals): bit for bit;
 *   - codelets on bf16 handles (matmul with bf16 or float32 C, with beta 1
 *     and transposes; residual, layernorm, gelu) against the same rounding
 *     of a double-precision result from the same bf16 inputs;
 *   - GPT-2 and Llama models: the stored weights and activations halve;
 *     bf16 training close to fp32 in native, zero and lsp mode; losses
 *     bit-identical under eager, dmdas and lspo;
 *   - lsp: updates P Delta Q^T far below a weight's bf16 spacing still add
 *     up over steps (fp32 masters where the update is applied).
 * test_bf16_cuda.c runs the same with the codelets on a CUDA worker alone
 * and the models on CPU and CUDA workers under dmdas (no policy check: CPU
 * and GPU kernels differ in the last bits); it skips (77) without a GPU.
 */
#include <string.h>

#include "common.h"
#include "bf16.h"
#include "gelu.h"
#include "layernorm.h"
#include "matmul.h"
#include "residual.h"

#ifndef ON_CUDA
#define ON_CUDA 0
#endif

/* ------------------------------------------------------------------------ */
/* Reference rounding, in double                                            */

static double bf16_value(uint16_t b)
{
	return (double)lspo_bf16_to_f32(b);
}

/* Round to nearest bf16, ties to even, of any double (not NaN): the two
 * neighbours at the spacing of |d|'s binade (2^-133 below 2^-126), the
 * nearer, the even one on a tie; from 2^128 - 2^119 up: infinity, as IEEE
 * rounding with an unbounded exponent gives. */
static uint16_t ref_round(double d)
{
	double a = fabs(d);
	uint16_t sign = signbit(d) ? 0x8000u : 0;
	if (a == 0)
		return sign;
	int e;
	frexp(a, &e);   /* a in [2^(e-1), 2^e) */
	double spacing = ldexp(1.0, (e - 1 > -126 ? e - 1 : -126) - 7);
	double k = floor(a / spacing), lo = k * spacing, hi = lo + spacing;
	double r = a - lo < hi - a ? lo : hi - a < a - lo ? hi : fmod(k, 2.0) == 0 ? lo : hi;
	if (r >= ldexp(1.0, 128))
		return sign | 0x7f80u;
	float f = (float)r;   /* exact: r has at most 8 significant bits */
	uint32_t u;
	memcpy(&u, &f, sizeof(u));
	return sign | (uint16_t)((u >> 16) & 0x7fffu);
}

static float bits_float(uint32_t u)
{
	float x;
	memcpy(&x, &u, sizeof(x));
	return x;
}

static void test_rounding(void)
{
	uint64_t s = 12345;
	long bad = 0, n = 0;
	for (long i = 0; i < 2000000; i++) {
		s ^= s << 13; s ^= s >> 7; s ^= s << 17;
		uint32_t u = (uint32_t)(s >> 16);
		switch (i % 4) {   /* exact ties, just below and just above them */
		case 1: u = (u & 0xffff0000u) | 0x8000u; break;
		case 2: u = (u & 0xffff0000u) | 0x7fffu; break;
		case 3: u = (u & 0xffff0000u) | 0x8001u; break;
		}
		float x = bits_float(u);
		uint16_t got = lspo_bf16_from_f32(x);
		n++;
		if (isnan(x)) {
			bad += !isnan(lspo_bf16_to_f32(got)) || (got & 0x8000u) != ((u >> 16) & 0x8000u);
			continue;
		}
		if (got != ref_round(x) && bad++ < 5)
			fprintf(stderr, "round(%a) = 0x%04x, reference 0x%04x\n", (double)x, got, ref_round(x));
	}
	CHECK(bad == 0, "%ld of %ld roundings differ from the reference", bad, n);
	static const uint32_t special[] = {
		0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0xff7fffffu,  /* inf, max float */
		0x7f7f7fffu, 0x7f7f8000u, 0x7f7f8001u,        /* below, at, above the overflow tie */
		0x00000001u, 0x00008000u, 0x00018000u, 0x00007fffu, 0x007fffffu, 0x00800000u,   /* subnormals */
		0x3f808000u, 0x3f818000u, 0xbf808000u,        /* ties to even, both ways */
	};
	for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
		float x = bits_float(special[i]);
		CHECK(lspo_bf16_from_f32(x) == ref_round(x), "round(%a) = 0x%04x, reference 0x%04x", (double)x,
		      lspo_bf16_from_f32(x), ref_round(x));
	}
	CHECK(lspo_bf16_from_f32(bits_float(0x3f808000u)) == 0x3f80u
	      && lspo_bf16_from_f32(bits_float(0x3f818000u)) == 0x3f82u, "ties to even");
	CHECK(lspo_bf16_from_f32(bits_float(0x7f7f8000u)) == 0x7f80u, "overflow tie rounds to inf");
	CHECK(isnan(lspo_bf16_to_f32(lspo_bf16_from_f32(bits_float(0x7f800001u)))), "signalling NaN stays NaN");
	printf("rounding: %ld values bit for bit against the double reference\n", n);
}

/* ------------------------------------------------------------------------ */
/* Codelets on bf16 handles                                                 */

struct mat {
	int rows, cols, bf16;
	void *p;
	starpu_data_handle_t h;
};

static struct mat mat_new(int rows, int cols, int bf16, uint64_t *s, float scale)
{
	struct mat m = { rows, cols, bf16, NULL, NULL };
	size_t n = (size_t)rows * cols;
	m.p = malloc(n * (bf16 ? 2 : 4) + 4);
	for (size_t i = 0; i < n; i++) {
		float x = scale * test_uniform(s);
		if (bf16)
			((uint16_t *)m.p)[i] = lspo_bf16_from_f32(x);
		else
			((float *)m.p)[i] = x;
	}
	lspo_matrix_register_elem(&m.h, m.p, rows, cols, bf16 ? 2 : 4);
	return m;
}

static double mat_get(const struct mat *m, size_t i)
{
	return m->bf16 ? bf16_value(((uint16_t *)m->p)[i]) : ((float *)m->p)[i];
}

static void mat_free(struct mat *m)
{
	starpu_data_unregister(m->h);
	free(m->p);
}

/* bf16 output `got` against the reference rounding of `ref` (double): every
 * element within one bf16 spacing (the float32 computation may sit on the
 * other side of a rounding boundary), and at least `exact` of them bit for
 * bit (rounding that truncates matches about half). */
static void check_rounded(const char *what, const struct mat *got, const double *ref, double exact)
{
	size_t n = (size_t)got->rows * got->cols, same = 0, far = 0;
	for (size_t i = 0; i < n; i++) {
		uint16_t g = ((uint16_t *)got->p)[i], r = ref_round(ref[i]);
		same += g == r;
		double spacing = fmax(fabs(bf16_value(r)) * 0x1p-7, 0x1p-133);
		far += fabs(bf16_value(g) - bf16_value(r)) > spacing;
	}
	CHECK(far == 0, "%s: %zu of %zu elements beyond one bf16 spacing of the reference", what, far, n);
	CHECK(same >= exact * n, "%s: %zu of %zu elements bit for bit, expected at least %.0f%%", what, same, n,
	      100 * exact);
	printf("%-24s %5zu/%5zu bit for bit, none beyond one spacing\n", what, same, n);
}

static void acquire(struct mat *m)
{
	starpu_data_acquire(m->h, STARPU_R);
	starpu_data_release(m->h);
}

/* C = alpha op(A) op(B) + beta C in double from the stored inputs. */
static void ref_matmul(const struct mat *A, int ta, const struct mat *B, int tb, const double *c0, double beta,
                       int M, int N, int K, double *out)
{
	for (int i = 0; i < M; i++)
		for (int j = 0; j < N; j++) {
			double acc = 0;
			for (int k = 0; k < K; k++)
				acc += mat_get(A, ta ? (size_t)k * A->cols + i : (size_t)i * A->cols + k)
				       * mat_get(B, tb ? (size_t)j * B->cols + k : (size_t)k * B->cols + j);
			out[(size_t)i * N + j] = acc + (beta != 0 ? beta * c0[(size_t)i * N + j] : 0);
		}
}

static void test_codelets(void)
{
	struct lspo_ctx *ctx = ON_CUDA ? test_start("eager", 0, 1) : test_start("eager", 1, 0);
	uint64_t s = 99;
	enum { M = 37, K = 53, N = 29, R = 16, C = 40 };
	double *ref = malloc(sizeof(double) * M * N * 4), *c0 = malloc(sizeof(double) * M * N);

	/* bf16 x bf16 -> bf16, then += (beta 1, C read as bf16), then op(A) = A^T, op(B) = B^T. */
	struct mat A = mat_new(M, K, 1, &s, 1.0f), B = mat_new(K, N, 1, &s, 1.0f), Cm = mat_new(M, N, 1, &s, 1.0f);
	CHECK(lspo_matmul_submit(A.h, B.h, Cm.h, 0, 0, 1.0f, 0.0f, 0, "mm") == LSPO_OK, "matmul");
	acquire(&Cm);
	ref_matmul(&A, 0, &B, 0, NULL, 0, M, N, K, ref);
	check_rounded("matmul bf16", &Cm, ref, 0.97);
	for (size_t i = 0; i < (size_t)M * N; i++)
		c0[i] = mat_get(&Cm, i);
	CHECK(lspo_matmul_submit(A.h, B.h, Cm.h, 0, 0, 0.5f, 1.0f, 0, "mm") == LSPO_OK, "matmul beta 1");
	acquire(&Cm);
	ref_matmul(&A, 0, &B, 0, c0, 1.0, M, N, K, ref);
	for (size_t i = 0; i < (size_t)M * N; i++)   /* alpha 0.5 on the product only */
		ref[i] = c0[i] + 0.5 * (ref[i] - c0[i]);
	check_rounded("matmul bf16 beta 1", &Cm, ref, 0.97);
	struct mat At = mat_new(K, M, 1, &s, 1.0f), Bt = mat_new(N, K, 1, &s, 1.0f);
	CHECK(lspo_matmul_submit(At.h, Bt.h, Cm.h, 1, 1, 1.0f, 0.0f, 0, "mm") == LSPO_OK, "matmul T T");
	acquire(&Cm);
	ref_matmul(&At, 1, &Bt, 1, NULL, 0, M, N, K, ref);
	check_rounded("matmul bf16 T T", &Cm, ref, 0.97);

	/* bf16 operands, float32 C (weight gradients): float32 accumulation. */
	struct mat Cf = mat_new(M, N, 0, &s, 1.0f);
	CHECK(lspo_matmul_submit(A.h, B.h, Cf.h, 0, 0, 1.0f, 0.0f, 0, "mm") == LSPO_OK, "matmul to fp32");
	acquire(&Cf);
	ref_matmul(&A, 0, &B, 0, NULL, 0, M, N, K, ref);
	double worst = 0;
	for (size_t i = 0; i < (size_t)M * N; i++)
		worst = fmax(worst, fabs(((float *)Cf.p)[i] - ref[i]));
	CHECK(worst < 1e-5, "matmul bf16 -> fp32: max error %.3g", worst);

	/* residual: the float32 sum of two bf16 values is exact here, so the
	 * stored sum is the reference rounding, bit for bit. */
	struct mat ra = mat_new(R, C, 1, &s, 1.0f), rb = mat_new(R, C, 1, &s, 0.25f), ro = mat_new(R, C, 1, &s, 0);
	CHECK(lspo_residual_fwd_submit(ra.h, rb.h, ro.h, 0, "res") == LSPO_OK, "residual");
	acquire(&ro);
	for (size_t i = 0; i < (size_t)R * C; i++)
		ref[i] = mat_get(&ra, i) + mat_get(&rb, i);
	check_rounded("residual bf16", &ro, ref, 1.0);

	/* layernorm: bf16 input, weights and output; mean and rstd float32. */
	struct mat x = mat_new(R, C, 1, &s, 2.0f), w = mat_new(1, C, 1, &s, 1.0f), b = mat_new(1, C, 1, &s, 0.5f);
	struct mat y = mat_new(R, C, 1, &s, 0), mean = mat_new(1, R, 0, &s, 0), rstd = mat_new(1, R, 0, &s, 0);
	CHECK(lspo_layernorm_fwd_submit(x.h, w.h, b.h, y.h, mean.h, rstd.h, 0, "ln") == LSPO_OK, "layernorm");
	acquire(&y);
	acquire(&rstd);
	for (int r = 0; r < R; r++) {
		double mu = 0, var = 0;
		for (int c = 0; c < C; c++)
			mu += mat_get(&x, (size_t)r * C + c) / C;
		for (int c = 0; c < C; c++)
			var += pow(mat_get(&x, (size_t)r * C + c) - mu, 2) / C;
		double rs = 1 / sqrt(var + 1e-5);
		CHECK(fabs(((float *)rstd.p)[r] - rs) < 1e-5 * rs, "layernorm rstd row %d: %g, reference %g", r,
		      ((float *)rstd.p)[r], rs);
		for (int c = 0; c < C; c++)
			ref[(size_t)r * C + c] = (mat_get(&x, (size_t)r * C + c) - mu) * rs * mat_get(&w, c)
			                         + mat_get(&b, c);
	}
	check_rounded("layernorm bf16", &y, ref, 0.97);

	/* gelu (tanh form). */
	struct mat g = mat_new(R, C, 1, &s, 0);
	CHECK(lspo_gelu_fwd_submit(x.h, g.h, 0, "gelu") == LSPO_OK, "gelu");
	acquire(&g);
	for (size_t i = 0; i < (size_t)R * C; i++) {
		double v = mat_get(&x, i);
		ref[i] = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)));
	}
	check_rounded("gelu bf16", &g, ref, 0.97);

	struct mat *all[] = { &A, &B, &Cm, &At, &Bt, &Cf, &ra, &rb, &ro, &x, &w, &b, &y, &mean, &rstd, &g };
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		mat_free(all[i]);
	free(ref);
	free(c0);
	lspo_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Models                                                                   */

#define STEPS 5
enum { BATCH = 2, SEQ = 16, LSP_D = 8 };
static const struct lspo_model_config gpt2_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                   .n_layer = 2, .n_head = 2 };
static const struct lspo_model_config llama_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                    .n_layer = 2, .n_head = 4, .family = LSPO_FAMILY_LLAMA,
                                                    .n_kv_head = 2, .n_inner = 48 };

static void batch(int step, int V, int32_t *in, int32_t *tg)
{
	uint64_t s = 17 + (uint64_t)step;
	for (int i = 0; i < BATCH * SEQ; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * V) % V;
		tg[i] = (in[i] * 7 + 3) % V;
	}
}

static struct lspo_model *build(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, enum lspo_dtype dt,
                                enum lspo_mode mode, float *params)
{
	struct lspo_model *m = NULL;
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = mode;
	o.lsp_d = LSP_D;
	o.lsp_r = 2;
	CHECK(lspo_model_init_params(cfg, 5, params) == LSPO_OK, "init");
	CHECK(lspo_model_create_dtype(ctx, cfg, BATCH, SEQ, dt, &m) == LSPO_OK, "create");
	if (!m)
		exit(TEST_ERROR);
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "params");
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "mode");
	return m;
}

/* Losses of STEPS steps (a new batch each step). */
static void train(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, enum lspo_dtype dt,
                  enum lspo_mode mode, double *losses)
{
	float *params = falloc(lspo_model_nparams(cfg));
	struct lspo_model *m = build(ctx, cfg, dt, mode, params);
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 2e-3f;
	opt.weight_decay = 0.01f;
	int32_t in[BATCH * SEQ], tg[BATCH * SEQ];
	for (int s = 0; s < STEPS; s++) {
		struct lspo_step_stats st;
		batch(s, cfg->vocab_size, in, tg);
		CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "step %d", s);
		losses[s] = st.loss;
	}
	lspo_model_free(m);
	free(params);
}

/* The stored tensors the forward and backward read: weights exactly half,
 * activations half but for the float32 statistics (under 10% of them). */
static void test_bytes(const struct lspo_model_config *cfg, const char *name)
{
	struct lspo_ctx *ctx = test_start("eager", -1, ON_CUDA);
	float *params = falloc(lspo_model_nparams(cfg));
	size_t w[2], a[2];
	for (int d = 0; d < 2; d++) {
		struct lspo_model *m = build(ctx, cfg, d ? LSPO_DTYPE_BF16 : LSPO_DTYPE_FP32, LSPO_MODE_NATIVE, params);
		CHECK(lspo_model_dtype(m) == (d ? LSPO_DTYPE_BF16 : LSPO_DTYPE_FP32), "dtype");
		lspo_model_stored_bytes(m, &w[d], &a[d]);
		lspo_model_free(m);
	}
	CHECK(w[0] == 4 * lspo_model_nparams(cfg) && w[1] * 2 == w[0], "%s weights: %zu bytes fp32, %zu bf16", name,
	      w[0], w[1]);
	CHECK(a[1] * 2 > a[0] && a[1] < 0.55 * a[0], "%s activations: %zu bytes fp32, %zu bf16", name, a[0], a[1]);
	printf("%s: stored weights %zu -> %zu bytes, activations %zu -> %zu bytes\n", name, w[0], w[1], a[0], a[1]);
	/* zero: fp32 gradients down, bf16 weights up (bf16 both ways with --offload-dtype bf16). */
	for (int ob = 0; ob < 2; ob++) {
		struct lspo_model *m = build(ctx, cfg, LSPO_DTYPE_BF16, LSPO_MODE_NATIVE, params);
		struct lspo_offload_opts o = lspo_offload_opts_default();
		o.mode = LSPO_MODE_ZERO;
		o.offload_bf16 = ob;
		CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "zero");
		double d2h, h2d, nf = (double)lspo_model_nparams(cfg);
		lspo_model_offload_volume(m, &d2h, &h2d);
		CHECK(d2h == (ob ? 2 : 4) * nf && h2d == 2 * nf, "%s zero bf16 (offload %s): volume %.0f down, %.0f up",
		      name, ob ? "bf16" : "fp32", d2h, h2d);
		lspo_model_stored_bytes(m, &w[1], &a[1]);
		CHECK(w[1] * 2 == w[0], "%s zero: working weights %zu bytes", name, w[1]);
		lspo_model_free(m);
	}
	free(params);
	lspo_ctx_destroy(ctx);
}

/* bf16 close to fp32, and bit-identical under three policies.  Tolerance
 * 2e-3 relative: one bf16 rounding is at most 2^-9 = 2e-3 relative, and the
 * loss averages N V independently rounded terms, so only an error common to
 * every logit (a wrong rounding mode, a lost update) reaches that size; the
 * measured gap is about 1e-4. */
static void test_training(void)
{
	static const char *const scheds[] = { "eager", "dmdas", "lspo" };
	static const enum lspo_mode modes[] = { LSPO_MODE_NATIVE, LSPO_MODE_ZERO, LSPO_MODE_LSP };
	const struct lspo_model_config *cfgs[] = { &gpt2_cfg, &llama_cfg };
	static const char *const names[] = { "gpt2", "llama" };
	static double f32[2][3][STEPS], b16[3][2][3][STEPS];
	int npol = ON_CUDA ? 1 : 3;
	for (int p = 0; p < npol; p++) {   /* one StarPU per policy */
		struct lspo_ctx *ctx = ON_CUDA ? test_start("dmdas", -1, 1) : test_start(scheds[p], -1, 0);
		for (int f = 0; f < 2; f++)
			for (int k = 0; k < 3; k++) {
				if (p == 0)
					train(ctx, cfgs[f], LSPO_DTYPE_FP32, modes[k], f32[f][k]);
				train(ctx, cfgs[f], LSPO_DTYPE_BF16, modes[k], b16[p][f][k]);
			}
		lspo_ctx_destroy(ctx);
	}
	for (int f = 0; f < 2; f++)
		for (int k = 0; k < 3; k++) {
			const char *mode = lspo_mode_name(modes[k]);
			double worst = 0, *b = b16[0][f][k], *r = f32[f][k];
			int differ = 0;
			for (int s = 0; s < STEPS; s++) {
				for (int p = 1; p < npol; p++)
					CHECK(memcmp(&b16[p][f][k][s], &b[s], sizeof(double)) == 0,
					      "%s %s bf16 step %d: %s %.17g, eager %.17g", names[f], mode, s, scheds[p],
					      b16[p][f][k][s], b[s]);
				worst = fmax(worst, fabs(b[s] - r[s]) / r[s]);
				differ += b[s] != r[s];
			}
			CHECK(worst < 2e-3, "%s %s: bf16 losses %.3g relative from fp32", names[f], mode, worst);
			CHECK(differ > 0, "%s %s: bf16 losses equal fp32's: is bf16 in use?", names[f], mode);
			CHECK(b[STEPS - 1] < b[0], "%s %s: bf16 does not train", names[f], mode);
			printf("%-5s %-6s bf16 %.6f ... %.6f, fp32 %.6f ... %.6f, max rel gap %.2e%s\n", names[f], mode, b[0],
			       b[STEPS - 1], r[0], r[STEPS - 1], worst, ON_CUDA ? "" : ", eager/dmdas/lspo bit-identical");
		}
}

/* lsp with a learning rate so small that one step moves almost every
 * compressed weight by less than half its bf16 spacing: rounding each
 * update into bf16 weights would lose it.  The fp32 masters keep them:
 * after K steps on the same batch the weights moved about K times as far,
 * the moves match an fp32 run's, and the bf16 working weights (rounded
 * from the masters) changed too. */
static void test_small_updates(void)
{
	enum { K = 24 };
	const struct lspo_model_config *cfg = &gpt2_cfg;
	struct lspo_ctx *ctx = test_start("eager", -1, ON_CUDA);
	size_t n = lspo_model_nparams(cfg);
	float *p0 = falloc(n), *p1 = falloc(n), *pk = falloc(n);
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 5e-7f;
	opt.clip = 0;
	int32_t in[BATCH * SEQ], tg[BATCH * SEQ];
	batch(0, cfg->vocab_size, in, tg);
	double move32 = 0;
	float *d32 = falloc(n);
	for (int d = 0; d < 2; d++) {
		struct lspo_model *m = build(ctx, cfg, d ? LSPO_DTYPE_BF16 : LSPO_DTYPE_FP32, LSPO_MODE_LSP, p0);
		struct lspo_step_stats st;
		for (int s = 0; s < K; s++) {
			CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "step %d", s);
			if (s == 0)
				lspo_model_get_params(m, p1);
		}
		lspo_model_get_params(m, pk);
		lspo_model_free(m);
		/* The compressed matrices: h.0.attn.c_attn.weight (32 x 96) starts
		 * after wte, wpe and ln_1 (weight, bias). */
		size_t off = (size_t)cfg->vocab_size * 32 + (size_t)cfg->n_positions * 32 + 64, len = 32 * 96;
		size_t below = 0, changed16 = 0;
		double first = 0, total = 0, dot = 0, n32 = 0;
		for (size_t i = off; i < off + len; i++) {
			double u = (double)p1[i] - p0[i], t = (double)pk[i] - p0[i];
			float w = p0[i];
			below += lspo_bf16_from_f32(w + (float)u) == lspo_bf16_from_f32(w);
			changed16 += lspo_bf16_from_f32(pk[i]) != lspo_bf16_from_f32(w);
			first += u * u;
			total += t * t;
			if (!d)
				d32[i] = (float)t;
			dot += t * d32[i];
			n32 += (double)d32[i] * d32[i];
		}
		first = sqrt(first);
		total = sqrt(total);
		if (!d) {
			move32 = total;
			continue;
		}
		CHECK(below >= 0.95 * len, "one step: %zu of %zu updates would survive bf16 rounding", len - below,
		      len);
		CHECK(total > 0.5 * K * first, "after %d steps the weights moved %.3g, one step %.3g", K, total, first);
		double cosine = dot / (total * sqrt(n32));
		CHECK(cosine > 0.95 && fabs(total / move32 - 1) < 0.1,
		      "bf16 moves vs fp32: cosine %.4f, norms %.3g, %.3g", cosine, total, move32);
		CHECK(changed16 > len / 20, "only %zu of %zu bf16 working weights changed", changed16, len);
		printf("lsp small updates: %zu/%zu single updates lost if rounded into bf16 weights; after %d steps "
		       "the masters moved %.3g (%.1f x one step; fp32 run %.3g, cosine %.4f); %zu bf16 weights changed\n",
		       below, len, K, total, total / first, move32, cosine, changed16);
	}
	free(p0); free(p1); free(pk); free(d32);
	lspo_ctx_destroy(ctx);
}

int main(void)
{
	enum lspo_dtype dt;
	CHECK(lspo_dtype_parse("bf16", &dt) == LSPO_OK && dt == LSPO_DTYPE_BF16, "parse bf16");
	CHECK(lspo_dtype_parse("fp32", &dt) == LSPO_OK && dt == LSPO_DTYPE_FP32, "parse fp32");
	CHECK(lspo_dtype_parse("fp16", &dt) == LSPO_EINVAL, "fp16 accepted");
	test_rounding();
	test_codelets();
	test_bytes(&gpt2_cfg, "gpt2");
	test_bytes(&llama_cfg, "llama");
	test_training();
	test_small_updates();
	return test_finish(ON_CUDA ? "test_bf16_cuda" : "test_bf16");
}
