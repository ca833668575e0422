/*
 * test_masked_loss.c - instruction data: targets masked out of the loss
 * (negative ids, as the loader's mask produces them) do not count.  The loss
 * equals the masked mean computed directly from the logits; its gradient
 * matches finite differences of that mean; a batch with every target masked
 * gives loss 0 and no gradient (no NaN); masked training steps give
 * bit-identical losses under eager, dmdas and lspo.  GPT-2 and Llama.
 */
#include <string.h>

#include "common.h"

enum { B = 2, T = 16, N = B * T, STEPS = 3 };

static const struct lspo_model_config configs[] = {
	{ .vocab_size = 53, .n_positions = 32, .n_embd = 16, .n_layer = 2, .n_head = 2 },
	{ .vocab_size = 53, .n_positions = 32, .n_embd = 16, .n_layer = 2, .n_head = 4, .family = LSPO_FAMILY_LLAMA,
	  .n_kv_head = 2, .n_inner = 24 },
};

static void batch(int step, int32_t *in, int32_t *tg, int V)
{
	uint64_t s = 11 + (uint64_t)step;
	for (int i = 0; i < N; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * V) % V;
		tg[i] = (in[i] * 3 + 2) % V;
		if (i % T < 6 + step)    /* the prompt of each row: masked */
			tg[i] = -1;
	}
}

/* sum over counted targets of -log softmax(logits)[t], divided by their count. */
static double masked_mean(const float *logits, const int32_t *tg, int V)
{
	double sum = 0;
	int n = 0;
	for (int i = 0; i < N; i++) {
		if (tg[i] < 0)
			continue;
		const float *x = logits + (size_t)i * V;
		double m = x[0], s = 0;
		for (int j = 1; j < V; j++)
			m = fmax(m, x[j]);
		for (int j = 0; j < V; j++)
			s += exp(x[j] - m);
		sum += m + log(s) - x[tg[i]];
		n++;
	}
	return sum / n;
}

static void check_model(struct lspo_ctx *ctx, const struct lspo_model_config *cfg)
{
	size_t np = lspo_model_nparams(cfg);
	int V = cfg->vocab_size;
	float *p = malloc(np * sizeof(float)), *g = malloc(np * sizeof(float));
	float *logits = malloc((size_t)N * V * sizeof(float));
	int32_t in[N], tg[N], all[N];
	struct lspo_model *m;
	CHECK(lspo_model_init_params(cfg, 4, p) == LSPO_OK, "init");
	CHECK(lspo_model_create(ctx, cfg, B, T, &m) == LSPO_OK && lspo_model_set_params(m, p) == LSPO_OK, "create");
	batch(0, in, tg, V);

	double loss, norm;
	CHECK(lspo_model_forward(m, in, tg, &loss) == LSPO_OK, "masked forward");
	lspo_model_get_logits(m, logits);
	double want = masked_mean(logits, tg, V);
	CHECK(fabs(loss - want) <= 1e-5 * want, "%s: masked loss %.8f, direct %.8f", lspo_family_name(cfg->family),
	      loss, want);
	for (int i = 0; i < N; i++)
		all[i] = (in[i] * 3 + 2) % V;
	double full;
	CHECK(lspo_model_forward(m, in, all, &full) == LSPO_OK && fabs(full - loss) > 1e-6, "the mask changes nothing");

	/* gradient: finite differences of the masked loss on the largest entries */
	CHECK(lspo_model_forward_backward(m, in, tg, &loss, &norm) == LSPO_OK && isfinite(norm) && norm > 0, "fwd+bwd");
	lspo_model_get_grads(m, g);
	size_t largest = 0;
	for (size_t k = 1; k < np; k++)
		largest = fabsf(g[k]) > fabsf(g[largest]) ? k : largest;
	const size_t picks[] = { largest, np / 5, np / 3, np / 2, 2 * np / 3 };
	int checked = 0;
	for (size_t i = 0; i < sizeof(picks) / sizeof(picks[0]); i++) {
		size_t k = picks[i];
		if (fabsf(g[k]) < 1e-3f)
			continue;
		float keep = p[k];
		double lp, lm, h = 1e-2;
		p[k] = keep + (float)h;
		lspo_model_set_params(m, p);
		lspo_model_forward(m, in, tg, &lp);
		p[k] = keep - (float)h;
		lspo_model_set_params(m, p);
		lspo_model_forward(m, in, tg, &lm);
		p[k] = keep;
		double fd = (lp - lm) / (2 * h);
		CHECK(fabs(fd - g[k]) <= 0.05 * fabs(g[k]) + 1e-4, "%s: parameter %zu: gradient %.6g, finite difference %.6g",
		      lspo_family_name(cfg->family), k, (double)g[k], fd);
		checked++;
	}
	CHECK(checked >= 1, "no gradient entry large enough to check");
	lspo_model_set_params(m, p);

	/* every target masked: loss 0, gradient 0, the step leaves finite weights */
	int32_t none[N];
	for (int i = 0; i < N; i++)
		none[i] = -1;
	CHECK(lspo_model_forward_backward(m, in, none, &loss, &norm) == LSPO_OK && loss == 0 && norm == 0,
	      "all masked: loss %g, norm %g", loss, norm);
	struct lspo_optim opt = lspo_optim_default();
	struct lspo_step_stats st;
	CHECK(lspo_model_train_step(m, in, none, &opt, &st) == LSPO_OK && st.loss == 0, "all-masked step");
	lspo_model_get_params(m, g);
	for (size_t k = 0; k < np; k++)
		if (!isfinite(g[k])) {
			CHECK(0, "non-finite parameter %zu after an all-masked step", k);
			break;
		}
	lspo_model_free(m);
	free(p); free(g); free(logits);
}

/* Masked training steps under one policy, in lsp mode. */
static void run(const char *sched, const struct lspo_model_config *cfg, double *losses)
{
	struct lspo_ctx *ctx = test_start(sched, -1, 0);
	float *p = malloc(lspo_model_nparams(cfg) * sizeof(float));
	struct lspo_model *m;
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = LSPO_MODE_LSP;
	o.lsp_d = 8;
	o.lsp_r = 2;
	CHECK(lspo_model_init_params(cfg, 4, p) == LSPO_OK && lspo_model_create(ctx, cfg, B, T, &m) == LSPO_OK
	      && lspo_model_set_params(m, p) == LSPO_OK && lspo_model_set_mode(m, &o) == LSPO_OK, "%s: build", sched);
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 3e-3f;
	for (int s = 0; s < STEPS; s++) {
		int32_t in[N], tg[N];
		struct lspo_step_stats st;
		batch(s, in, tg, cfg->vocab_size);
		CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "%s: step %d", sched, s);
		losses[s] = st.loss;
	}
	lspo_model_free(m);
	free(p);
	lspo_ctx_destroy(ctx);
}

int main(void)
{
	static const char *const scheds[] = { "eager", "dmdas", "lspo" };
	for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
		struct lspo_ctx *ctx = test_start("lspo", -1, 0);
		check_model(ctx, &configs[c]);
		lspo_ctx_destroy(ctx);
		double ref[STEPS], l[STEPS];
		for (size_t k = 0; k < 3; k++) {
			run(scheds[k], &configs[c], k ? l : ref);
			for (int s = 0; k && s < STEPS; s++)
				CHECK(memcmp(&l[s], &ref[s], sizeof(double)) == 0, "%s %s step %d: %.17g, eager %.17g",
				      lspo_family_name(configs[c].family), scheds[k], s, l[s], ref[s]);
		}
		printf("%s: masked lsp losses %.6f %.6f %.6f under eager, dmdas and lspo\n",
		       lspo_family_name(configs[c].family), ref[0], ref[1], ref[2]);
	}
	return test_finish("test_masked_loss");
}
