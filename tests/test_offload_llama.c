/*
 * test_offload_llama.c - the modes on a Llama-family model (grouped-query
 * attention, (out, in) weights, biases on q, k, v): losses bit-identical
 * under eager, dmdas and lspo; zero equal to native; lsp's offload volume
 * from its seven maps per block, --lsp-targets, an lsp step equal to
 * s Q Delta^T P^T of the dense gradient for (out, in) weights, the projector
 * check, and resume bit for bit.
 */
#include <string.h>

#include "common.h"
#include "engine/model.h"
#include "projector.h"

#define STEPS 4
static const struct lspo_model_config cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32, .n_layer = 2,
                                             .n_head = 4, .family = LSPO_FAMILY_QWEN2, .n_kv_head = 2,
                                             .n_inner = 40, .tie_word_embeddings = 0 };
enum { B = 2, T = 20, D = 12 };

static void batch(int step, int32_t *in, int32_t *tg)
{
	uint64_t s = 7 + (uint64_t)step;
	for (int i = 0; i < B * T; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * cfg.vocab_size) % cfg.vocab_size;
		tg[i] = (in[i] * 5 + 1) % cfg.vocab_size;
	}
}

static struct lspo_offload_opts opts(int mode, unsigned targets)
{
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = mode == 3 ? LSPO_MODE_ZERO : (enum lspo_mode)mode;
	o.offload_bf16 = mode == 3;
	o.lsp_d = D;
	o.lsp_r = 3;
	o.lsp_targets = targets;
	return o;
}

static struct lspo_optim optim(void)
{
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 2e-3f;
	opt.weight_decay = 0.01f;
	return opt;
}

static struct lspo_model *build(struct lspo_ctx *ctx, const struct lspo_offload_opts *o, float *params)
{
	struct lspo_model *m;
	CHECK(lspo_model_init_params(&cfg, 3, params) == LSPO_OK, "init");
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "create");
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "params");
	CHECK(lspo_model_set_mode(m, o) == LSPO_OK, "mode %d", (int)o->mode);
	return m;
}

static void steps(struct lspo_model *m, int from, int to, double *losses)
{
	struct lspo_optim opt = optim();
	int32_t in[B * T], tg[B * T];
	for (int s = from; s < to; s++) {
		struct lspo_step_stats st;
		batch(s, in, tg);
		CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "step %d", s);
		losses[s] = st.loss;
	}
}

static void run(const char *sched, int mode, double *losses)
{
	struct lspo_ctx *ctx = test_start(sched, -1, 0);
	float *params = malloc(lspo_model_nparams(&cfg) * sizeof(float));
	struct lspo_offload_opts o = opts(mode, 0);
	struct lspo_model *m = build(ctx, &o, params);
	steps(m, 0, STEPS, losses);
	lspo_model_free(m);
	free(params);
	lspo_ctx_destroy(ctx);
}

/* Dense (rows, d) of one side of a pair. */
static double *dense(const struct lspo_proj *p, int side)
{
	const int32_t *idx;
	const float *val;
	int rows = side ? p->n : p->m;
	lspo_proj_ell(p, side, &idx, &val);
	double *x = calloc((size_t)rows * p->d, sizeof(double));
	for (int i = 0; i < rows; i++)
		for (int k = 0; k < p->r; k++)
			x[(size_t)i * p->d + idx[(size_t)i * p->r + k]] = val[(size_t)i * p->r + k];
	return x;
}

/* One lsp step of matrix k (freeze-dense, no decay, from zero moments):
 * Delta = -lr G_hat / (|G_hat| + eps), G_hat = P^T G Q with G (in, out) the
 * dense gradient; the stored (out, in) weight moves by s Q Delta^T P^T. */
static void check_step_formula(struct lspo_ctx *ctx)
{
	size_t n = lspo_model_nparams(&cfg);
	float *p0 = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *p1 = malloc(n * sizeof(float));
	struct lspo_offload_opts o = opts(LSPO_MODE_LSP, 0);
	o.freeze_dense = 1;
	struct lspo_model *m = build(ctx, &o, p0), *dn = build(ctx, &(struct lspo_offload_opts){ .mode = LSPO_MODE_NATIVE }, p0);
	int32_t in[B * T], tg[B * T];
	batch(0, in, tg);
	double loss, norm;
	CHECK(lspo_model_forward_backward(dn, in, tg, &loss, &norm) == LSPO_OK && lspo_model_get_grads(dn, g) == LSPO_OK,
	      "dense gradient");
	struct lspo_optim opt = optim();
	opt.weight_decay = 0;
	struct lspo_step_stats st;
	CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK && lspo_model_get_params(m, p1) == LSPO_OK, "lsp step");
	struct model_layout lay;
	CHECK(model_layout_of(&cfg, &lay) == LSPO_OK, "layout");
	CHECK(lsp_state_npairs(m) == lay.nlinears, "%d pairs for %d maps", lsp_state_npairs(m), lay.nlinears);
	double worst = 0, scale = 0;
	for (int k = 0; k < lay.nlinears; k++) {
		const struct model_linear *L = &lay.linears[k];
		struct lspo_proj *p = lsp_state_pair(m, k);
		int mi = L->in, no = L->out, d = p->d;
		CHECK(p->m == mi && p->n == no, "pair %d is (%d, %d), map (%d, %d)", k, p->m, p->n, mi, no);
		double *P = dense(p, 0), *Q = dense(p, 1), *gh = calloc((size_t)d * d, sizeof(double));
		const float *G = g + lay.tensors[L->weight].offset;      /* (out, in) */
		for (int a = 0; a < d; a++)
			for (int b = 0; b < d; b++) {
				double s = 0;
				for (int i = 0; i < mi; i++)
					for (int j = 0; j < no; j++)
						s += P[(size_t)i * d + a] * G[(size_t)j * mi + i] * Q[(size_t)j * d + b];
				gh[(size_t)a * d + b] = -opt.lr * s / (fabs(s) + opt.eps);
			}
		double gain = lspo_proj_gain(p);
		for (int j = 0; j < no; j++)
			for (int i = 0; i < mi; i++) {
				double e = 0;
				for (int a = 0; a < d; a++)
					for (int b = 0; b < d; b++)
						e += Q[(size_t)j * d + b] * gh[(size_t)a * d + b] * P[(size_t)i * d + a];
				size_t at = lay.tensors[L->weight].offset + (size_t)j * mi + i;
				double got = (double)p1[at] - p0[at];
				worst = fmax(worst, fabs(got - gain * e));
				scale = fmax(scale, fabs(gain * e));
			}
		free(P); free(Q); free(gh);
	}
	CHECK(scale > 0 && worst <= 1e-3 * scale, "lsp step differs from s Q Delta^T P^T by %.3g (steps of %.3g)",
	      worst, scale);
	printf("lsp step of (out, in) weights: max deviation %.2e of %.2e\n", worst, scale);
	layout_free(&lay);
	lspo_model_free(dn);
	lspo_model_free(m);
	free(p0); free(g); free(p1);
}

int main(void)
{
	static const char *const scheds[] = { "eager", "dmdas", "lspo" };
	static const char *const names[] = { "native", "zero", "lsp", "zero/bf16" };
	double ref[4][STEPS];
	for (int mode = 0; mode < 4; mode++)
		for (size_t p = 0; p < sizeof(scheds) / sizeof(scheds[0]); p++) {
			double l[STEPS];
			run(scheds[p], mode, p ? l : ref[mode]);
			for (int s = 0; p && s < STEPS; s++)
				CHECK(memcmp(&l[s], &ref[mode][s], sizeof(double)) == 0, "%s, %s, step %d: %.17g, eager %.17g",
				      scheds[p], names[mode], s, l[s], ref[mode][s]);
			printf("%-6s %-9s losses %.6f ... %.6f\n", scheds[p], names[mode], (p ? l : ref[mode])[0],
			       (p ? l : ref[mode])[STEPS - 1]);
		}
	for (int s = 0; s < STEPS; s++)
		CHECK(ref[1][s] == ref[0][s], "zero step %d: %.17g, native %.17g", s, ref[1][s], ref[0][s]);
	CHECK(ref[2][STEPS - 1] < ref[2][0] && ref[2][STEPS - 1] != ref[0][STEPS - 1], "lsp does not train apart");
	CHECK(fabs(ref[3][STEPS - 1] - ref[0][STEPS - 1]) < 0.01, "zero/bf16 far from native");

	struct lspo_ctx *ctx = test_start("lspo", -1, 0);
	size_t n = lspo_model_nparams(&cfg);
	float *params = malloc(n * sizeof(float));
	double d2h, h2d, l[2 * STEPS], l2[2 * STEPS];

	/* Volume: 4 d^2 per compressed map each way; d capped at min(in, out). */
	struct lspo_offload_opts o = opts(LSPO_MODE_LSP, 0);
	struct lspo_model *m = build(ctx, &o, params);
	lspo_model_offload_volume(m, &d2h, &h2d);
	CHECK(d2h == 4.0 * D * D * 7 * cfg.n_layer && h2d == d2h, "lsp volume %.0f", d2h);
	unsigned mask;
	CHECK(lspo_lsp_targets_parse(LSPO_FAMILY_LLAMA, "q,v,down", &mask) == LSPO_OK && mask == (1u | 4u | 64u),
	      "targets q,v,down -> 0x%x", mask);
	CHECK(lspo_lsp_targets_parse(LSPO_FAMILY_LLAMA, "q,qkv", &mask) == LSPO_EINVAL, "GPT-2 role accepted for Llama");
	CHECK(lspo_lsp_targets_parse(LSPO_FAMILY_GPT2, "qkv,mlp_out", &mask) == LSPO_OK && mask == 9u, "GPT-2 targets");
	o = opts(LSPO_MODE_LSP, 1u | 4u);
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "lsp q,v");
	lspo_model_offload_volume(m, &d2h, &h2d);
	CHECK(d2h == 4.0 * D * D * 2 * cfg.n_layer, "lsp q,v volume %.0f", d2h);
	steps(m, 0, 2, l);

	/* The projector check on (out, in) weights learns. */
	o = opts(LSPO_MODE_LSP, 0);
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "lsp all");
	int32_t in[B * T], tg[B * T];
	batch(100, in, tg);
	struct lspo_lsp_check rep;
	CHECK(lspo_model_lsp_check(m, in, tg, 1, &rep) == LSPO_OK && rep.nmatrices == 7 * cfg.n_layer, "check");
	CHECK(rep.err_after < 0.5 * rep.err_before, "learning: error %.3f -> %.3f", rep.err_before, rep.err_after);
	printf("lsp check: error %.3f -> %.3f over %d matrices\n", rep.err_before, rep.err_after, rep.nmatrices);

	/* Resume: STEPS steps, save, STEPS more == a fresh model loading the state. */
	char path[4200];
	snprintf(path, sizeof(path), "%s/tests/out/llama_state.safetensors",
	         getenv("LSPO_BUILDDIR") ? getenv("LSPO_BUILDDIR") : ".");
	steps(m, 0, STEPS, l);
	float *mid = malloc(n * sizeof(float));
	CHECK(lspo_model_get_params(m, mid) == LSPO_OK && lspo_model_save_state(m, path) == LSPO_OK, "save state");
	steps(m, STEPS, 2 * STEPS, l);
	struct lspo_model *r = build(ctx, &o, params);
	CHECK(lspo_model_set_params(r, mid) == LSPO_OK && lspo_model_load_state(r, path) == LSPO_OK, "load state");
	steps(r, STEPS, 2 * STEPS, l2);
	for (int s = STEPS; s < 2 * STEPS; s++)
		CHECK(memcmp(&l[s], &l2[s], sizeof(double)) == 0, "resumed step %d: %.17g, uninterrupted %.17g", s, l2[s], l[s]);
	lspo_model_free(r);
	lspo_model_free(m);
	free(mid);

	check_step_formula(ctx);
	free(params);
	lspo_ctx_destroy(ctx);
	return test_finish("test_offload_llama");
}
