/*
 * test_gpt2_golden.c - the GPT-2 engine against PyTorch (tests/ref/make_golden.py):
 * for each reference model, loaded from its safetensors, the logits, the loss,
 * every parameter gradient, and the losses, norms and parameters of 3 AdamW
 * steps with clipping.  The reference ran in float64; lspo runs in float32.
 */
#include <string.h>

#include "common.h"

struct golden {
	int hdr[11];            /* magic, version, V, P, C, L, NH, B, T, nfloats, nsteps */
	float opt[6];           /* lr, beta1, beta2, eps, weight_decay, clip */
	int32_t *inputs, *targets;
	float loss, *logits, *grads, step_loss[8], norm[8], *final;
};

static int read_golden(const char *path, struct golden *g)
{
	FILE *f = fopen(path, "rb");
	if (!f || fread(g->hdr, sizeof(int), 11, f) != 11 || g->hdr[0] != 20251125 || g->hdr[10] > 8) {
		fprintf(stderr, "%s: missing or not a golden file\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	size_t bt = (size_t)g->hdr[7] * g->hdr[8], v = g->hdr[2], n = g->hdr[9], s = g->hdr[10];
	g->inputs = malloc(bt * sizeof(int32_t));
	g->targets = malloc(bt * sizeof(int32_t));
	g->logits = malloc(bt * v * sizeof(float));
	g->grads = malloc(n * sizeof(float));
	g->final = malloc(n * sizeof(float));
	int ok = fread(g->opt, sizeof(float), 6, f) == 6 && fread(g->inputs, 4, bt, f) == bt
		&& fread(g->targets, 4, bt, f) == bt && fread(&g->loss, 4, 1, f) == 1
		&& fread(g->logits, 4, bt * v, f) == bt * v && fread(g->grads, 4, n, f) == n
		&& fread(g->step_loss, 4, s, f) == s && fread(g->norm, 4, s, f) == s
		&& fread(g->final, 4, n, f) == n;
	fclose(f);
	return ok ? 0 : -1;
}


static struct lspo_ctx *ctx;

static void check_model(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/golden.bin", dir);
	struct golden gd;
	if (read_golden(path, &gd)) {
		CHECK(0, "cannot read %s", path);
		return;
	}
	struct lspo_model_config cfg;
	CHECK(lspo_ckpt_read_config(dir, &cfg) == LSPO_OK, "%s: config", dir);
	CHECK(cfg.vocab_size == gd.hdr[2] && cfg.n_positions == gd.hdr[3] && cfg.n_embd == gd.hdr[4]
	      && cfg.n_layer == gd.hdr[5] && cfg.n_head == gd.hdr[6], "%s: config differs from golden", dir);
	int B = gd.hdr[7], T = gd.hdr[8], V = gd.hdr[2];
	size_t n = (size_t)gd.hdr[9];
	CHECK(lspo_model_nparams(&cfg) == n, "%s: %zu parameters, golden has %zu", dir, lspo_model_nparams(&cfg), n);
	float *params = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
	float *logits = malloc((size_t)B * T * V * sizeof(float));
	CHECK(lspo_ckpt_load_params(dir, &cfg, params) == LSPO_OK, "%s: load", dir);

	struct lspo_model *m;
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "%s: create", dir);
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "set params");

	double loss;
	CHECK(lspo_model_forward(m, gd.inputs, gd.targets, &loss) == LSPO_OK, "forward");
	CHECK(fabs(loss - gd.loss) <= 1e-4 * fabs(gd.loss), "%s: loss %.7f, PyTorch %.7f", dir, loss, gd.loss);
	lspo_model_get_logits(m, logits);
	double e = test_rel_err(logits, gd.logits, (size_t)B * T * V);
	CHECK(e <= 1e-4, "%s: logits relative error %.3g", dir, e);

	double norm;
	CHECK(lspo_model_forward_backward(m, gd.inputs, gd.targets, &loss, &norm) == LSPO_OK, "fwd+bwd");
	CHECK(fabs(loss - gd.loss) <= 1e-4 * fabs(gd.loss), "%s: fwd+bwd loss %.7f, PyTorch %.7f", dir, loss, gd.loss);
	CHECK(fabs(norm - gd.norm[0]) <= 1e-4 * gd.norm[0], "%s: grad norm %.7f, PyTorch %.7f", dir, norm, gd.norm[0]);
	lspo_model_get_grads(m, out);
	const float *gref = gd.grads;
	/* per tensor, in layout order (the golden file's order) */
	struct { const char *what; size_t len; } t[] = { { "wte", (size_t)V * cfg.n_embd },
		{ "wpe", (size_t)cfg.n_positions * cfg.n_embd } };
	size_t off = 0;
	for (int i = 0; i < 2; i++) {
		e = test_rel_err(out + off, gref + off, t[i].len);
		CHECK(e <= 1e-4, "%s: gradient of %s: relative error %.3g", dir, t[i].what, e);
		off += t[i].len;
	}
	size_t C = (size_t)cfg.n_embd;
	size_t per_layer[12] = { C, C, C * 3 * C, 3 * C, C * C, C, C, C, C * 4 * C, 4 * C, 4 * C * C, C };
	for (int l = 0; l < cfg.n_layer; l++)
		for (int k = 0; k < 12; k++) {
			e = test_rel_err(out + off, gref + off, per_layer[k]);
			CHECK(e <= 1e-4, "%s: gradient of layer %d tensor %d: relative error %.3g", dir, l, k, e);
			off += per_layer[k];
		}
	e = test_rel_err(out + off, gref + off, 2 * C);
	CHECK(e <= 1e-4 && off + 2 * C == n, "%s: gradient of ln_f: relative error %.3g", dir, e);

	struct lspo_optim opt = { .lr = gd.opt[0], .beta1 = gd.opt[1], .beta2 = gd.opt[2], .eps = gd.opt[3],
	                          .weight_decay = gd.opt[4], .clip = gd.opt[5] };
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "reset params");
	for (int s = 0; s < gd.hdr[10]; s++) {
		struct lspo_step_stats st;
		CHECK(lspo_model_train_step(m, gd.inputs, gd.targets, &opt, &st) == LSPO_OK, "step %d", s);
		CHECK(st.step == s + 1, "step counter %d", st.step);
		CHECK(fabs(st.loss - gd.step_loss[s]) <= 1e-4 * gd.step_loss[s], "%s: step %d loss %.7f, PyTorch %.7f",
		      dir, s, st.loss, gd.step_loss[s]);
		CHECK(fabs(st.grad_norm - gd.norm[s]) <= 1e-4 * gd.norm[s], "%s: step %d norm %.7f, PyTorch %.7f",
		      dir, s, st.grad_norm, gd.norm[s]);
	}
	lspo_model_get_params(m, out);
	double worst = 0;
	size_t at = 0;
	for (size_t i = 0; i < n; i++)
		if (!(fabs((double)out[i] - gd.final[i]) <= worst))
			worst = fabs((double)out[i] - gd.final[i]), at = i;
	CHECK(worst <= 1e-4, "%s: parameters after %d steps differ by %.3g at %zu", dir, gd.hdr[10], worst, at);
	printf("%s: loss %.6f (PyTorch %.6f), logits err %.2e, 3-step params max diff %.2e\n",
	       dir, loss, gd.loss, test_rel_err(logits, gd.logits, (size_t)B * T * V), worst);

	lspo_model_free(m);
	free(params); free(out); free(logits);
	free(gd.inputs); free(gd.targets); free(gd.logits); free(gd.grads); free(gd.final);
}

int main(void)
{
	const char *src = getenv("LSPO_SRCDIR");
	ctx = test_start("lspo", -1, 0);
	char dir[4096];
	for (const char *const *name = (const char *const[]){ "small", "odd", "wide", NULL }; *name; name++) {
		snprintf(dir, sizeof(dir), "%s/tests/ref/%s", src ? src : ".", *name);
		check_model(dir);
	}
	lspo_ctx_destroy(ctx);
	return test_finish("test_gpt2_golden");
}
