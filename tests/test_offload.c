/*
 * test_offload.c - the three modes as one task graph on CPU workers:
 * losses bit-identical under eager, prio, dmdas and lspo (results do not
 * depend on the schedule); zero equal to native (same update, other
 * workers); lsp training, its offload volume, and its projector check.
 */
#include <string.h>

#include "common.h"
#include "engine/model.h"
#include "models/gpt2.h"
#include "projector.h"

#define STEPS 5
static const struct lspo_model_config cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                             .n_layer = 2, .n_head = 2 };
enum { B = 2, T = 24 };

static void batch(int step, int32_t *in, int32_t *tg)
{
	uint64_t s = 99 + (uint64_t)step;
	for (int i = 0; i < B * T; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * cfg.vocab_size) % cfg.vocab_size;
		tg[i] = (in[i] * 7 + 3) % cfg.vocab_size;   /* a learnable mapping */
	}
}

static struct lspo_ctx *ctx;

/* Runs STEPS steps of `mode` under `sched`; losses out.  With keep, the model
 * and the context stay alive for the caller. */
/* mode 3 stands for zero with bf16 transfers */
static void run(const char *sched, int mode, double *losses, struct lspo_model **keep)
{
	ctx = test_start(sched, -1, 0);
	float *params = malloc(lspo_model_nparams(&cfg) * sizeof(float));
	struct lspo_model *m;
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = mode == 3 ? LSPO_MODE_ZERO : (enum lspo_mode)mode;
	o.offload_bf16 = mode == 3;
	o.lsp_d = 16;
	o.lsp_r = 4;
	CHECK(lspo_model_init_params(&cfg, 5, params) == LSPO_OK, "init");
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "create");
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "params");
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "mode %d", mode);
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 2e-3f;
	opt.weight_decay = 0.01f;
	int32_t in[B * T], tg[B * T];
	for (int s = 0; s < STEPS; s++) {
		struct lspo_step_stats st;
		batch(s, in, tg);
		int rc = lspo_model_train_step(m, in, tg, &opt, &st);
		CHECK(rc == LSPO_OK, "%s mode %d step %d: %s", sched, mode, s, lspo_strerror(rc));
		losses[s] = st.loss;
		CHECK(st.bytes_d2h == 0 && st.bytes_h2d == 0, "bytes on a CPU-only machine");
	}
	if (keep) {
		*keep = m;   /* the caller frees it and the context */
		free(params);
		return;
	}
	lspo_model_free(m);
	free(params);
	lspo_ctx_destroy(ctx);
}

/* Every pair's P scaled by `scale` (a power of two: exact both ways). */
static void scale_projectors(struct lspo_model *m, float scale)
{
	for (int i = 0; i < lsp_state_npairs(m); i++) {
		struct lspo_proj *p = lsp_state_pair(m, i);
		lspo_proj_acquire_rw(p);
		for (size_t k = 0; k < (size_t)p->m * p->r; k++)
			p->val[0][k] *= scale;
		lspo_proj_release(p);
	}
}

/* Parameters after 2 lsp steps from p0 with every P scaled by `scale`. */
static void steps_with_scaled_p(struct lspo_model *m, const float *p0, const struct lspo_optim *opt, float scale,
                                float *out)
{
	CHECK(lspo_model_set_params(m, p0) == LSPO_OK, "params");
	scale_projectors(m, scale);
	for (int s = 0; s < 2; s++) {
		int32_t bi[B * T], bt[B * T];
		struct lspo_step_stats st;
		batch(s, bi, bt);
		CHECK(lspo_model_train_step(m, bi, bt, opt, &st) == LSPO_OK, "scaled P: step %d", s);
	}
	CHECK(lspo_model_get_params(m, out) == LSPO_OK, "params");
	scale_projectors(m, 1.0f / scale);
}

int main(void)
{
	static const char *const scheds[] = { "eager", "prio", "dmdas", "lspo" };
	static const char *const mode_names[] = { "native", "zero", "lsp", "zero/bf16" };
	double ref[4][STEPS];
	for (int mode = 0; mode < 4; mode++)
		for (size_t p = 0; p < sizeof(scheds) / sizeof(scheds[0]); p++) {
			double l[STEPS];
			run(scheds[p], mode, p ? l : ref[mode], NULL);
			for (int s = 0; p && s < STEPS; s++)
				CHECK(memcmp(&l[s], &ref[mode][s], sizeof(double)) == 0,
				      "%s, mode %s, step %d: loss %.17g differs from eager's %.17g", scheds[p],
				      mode_names[mode], s, l[s], ref[mode][s]);
			printf("%-6s %-9s losses %.6f ... %.6f\n", scheds[p], mode_names[mode],
			       (p ? l : ref[mode])[0], (p ? l : ref[mode])[STEPS - 1]);
		}
	for (int s = 0; s < STEPS; s++)
		CHECK(ref[1][s] == ref[0][s], "zero step %d: %.17g, native %.17g", s, ref[1][s], ref[0][s]);
	CHECK(ref[2][0] == ref[0][0], "the first forward does not depend on the mode");
	CHECK(ref[2][STEPS - 1] < ref[2][0], "lsp does not train: %.4f -> %.4f", ref[2][0], ref[2][STEPS - 1]);
	CHECK(ref[2][STEPS - 1] != ref[0][STEPS - 1], "lsp equals native: compression not applied?");
	/* zero/bf16: the accelerator holds bf16 values of the weights from the
	 * start (as ZeRO-Offload's half-precision model), so even the first
	 * forward differs from native, slightly. */
	CHECK(ref[3][0] != ref[0][0] && fabs(ref[3][0] - ref[0][0]) < 1e-3, "zero/bf16 first loss %.7f, native %.7f",
	      ref[3][0], ref[0][0]);
	CHECK(fabs(ref[3][STEPS - 1] - ref[0][STEPS - 1]) < 0.01, "zero/bf16 %.5f far from native %.5f",
	      ref[3][STEPS - 1], ref[0][STEPS - 1]);

	/* Offload volume and the projector check. */
	struct lspo_model *m;
	double l[STEPS], d2h, h2d;
	run("lspo", LSPO_MODE_LSP, l, &m);
	/* New parameters restart the optimizer, subspace moments included:
	 * the same steps again give the same losses. */
	float *p0 = malloc(lspo_model_nparams(&cfg) * sizeof(float));
	CHECK(lspo_model_init_params(&cfg, 5, p0) == LSPO_OK && lspo_model_set_params(m, p0) == LSPO_OK, "reset");
	struct lspo_optim again = lspo_optim_default();
	again.lr = 2e-3f;
	again.weight_decay = 0.01f;
	for (int s = 0; s < STEPS; s++) {
		int32_t bi[B * T], bt[B * T];
		struct lspo_step_stats st;
		batch(s, bi, bt);
		CHECK(lspo_model_train_step(m, bi, bt, &again, &st) == LSPO_OK && st.loss == l[s],
		      "lsp after set_params, step %d: %.17g, first run %.17g", s, st.loss, l[s]);
	}
	/* --freeze-dense: only the four matrices of every block change. */
	struct lspo_offload_opts fo = lspo_offload_opts_default();
	fo.mode = LSPO_MODE_LSP;
	fo.lsp_d = 16;
	fo.lsp_r = 4;
	fo.freeze_dense = 1;
	float *p1 = malloc(lspo_model_nparams(&cfg) * sizeof(float));
	CHECK(lspo_model_set_params(m, p0) == LSPO_OK && lspo_model_set_mode(m, &fo) == LSPO_OK, "freeze-dense");
	double first = 0, last = 0;
	for (int s = 0; s < STEPS; s++) {
		int32_t bi[B * T], bt[B * T];
		struct lspo_step_stats st;
		batch(0, bi, bt);
		CHECK(lspo_model_train_step(m, bi, bt, &again, &st) == LSPO_OK, "frozen step %d", s);
		first = s ? first : st.loss;
		last = st.loss;
	}
	CHECK(last < first, "frozen dense: loss %.4f -> %.4f", first, last);
	CHECK(lspo_model_get_params(m, p1) == LSPO_OK, "params");
	struct model_layout lay;
	CHECK(model_layout_of(&cfg, &lay) == LSPO_OK, "layout");
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		int compressed = t->kind == GPT2_QKV_W || t->kind == GPT2_ATTPROJ_W || t->kind == GPT2_FC_W
		                 || t->kind == GPT2_FCPROJ_W;
		size_t changed = 0, len = (size_t)t->rows * t->cols;
		for (size_t k = 0; k < len; k++)
			changed += p1[t->offset + k] != p0[t->offset + k];
		CHECK(compressed ? changed > len / 2 : changed == 0, "frozen dense: %s: %zu of %zu changed",
		      t->name, changed, len);
	}
	layout_free(&lay);
	/* The step does not follow the projectors' scale: P four times larger
	 * makes G_hat four times larger, leaves subspace Adam's Delta as it is
	 * (but for eps) and divides the apply's gain by four. */
	size_t n = lspo_model_nparams(&cfg);
	float *p4 = malloc(n * sizeof(float));
	steps_with_scaled_p(m, p0, &again, 1.0f, p1);
	steps_with_scaled_p(m, p0, &again, 4.0f, p4);
	double moved = 0, diff = 0;
	for (size_t k = 0; k < n; k++) {
		moved = fmax(moved, fabs((double)p1[k] - p0[k]));
		diff = fmax(diff, fabs((double)p4[k] - p1[k]));
	}
	CHECK(moved > 0 && diff <= 1e-3 * moved, "P scaled by 4: parameters differ by %.3g (steps of %.3g)", diff,
	      moved);
	free(p4);
	free(p1);
	free(p0);
	lspo_model_offload_volume(m, &d2h, &h2d);
	CHECK(d2h == 4.0 * 16 * 16 * 4 * cfg.n_layer && h2d == d2h, "lsp volume %.0f / %.0f bytes", d2h, h2d);
	int32_t in[B * T], tg[B * T];
	batch(1000, in, tg);
	struct lspo_lsp_check rep;
	CHECK(lspo_model_lsp_check(m, in, tg, 1, &rep) == LSPO_OK, "lsp check");
	CHECK(rep.nmatrices == 4 * cfg.n_layer, "%d matrices checked", rep.nmatrices);
	CHECK(rep.err_before > 0.3 && rep.refreshed == rep.nmatrices, "random projectors: error %.3f, %d refreshed",
	      rep.err_before, rep.refreshed);
	CHECK(rep.err_after < 0.5 * rep.err_before, "learning: error %.3f -> %.3f", rep.err_before, rep.err_after);
	printf("lsp check: error %.3f -> %.3f, %d pairs refreshed\n", rep.err_before, rep.err_after, rep.refreshed);
	struct lspo_optim opt = lspo_optim_default();
	struct lspo_step_stats st;
	CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK && st.loss > 0, "step after refresh");
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = LSPO_MODE_ZERO;
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "switch to zero");
	lspo_model_offload_volume(m, &d2h, &h2d);
	CHECK(d2h == 4.0 * lspo_model_nparams(&cfg), "zero volume %.0f", d2h);
	o.offload_bf16 = 1;
	CHECK(lspo_model_set_mode(m, &o) == LSPO_OK, "switch to zero/bf16");
	lspo_model_offload_volume(m, &d2h, &h2d);
	CHECK(d2h == 2.0 * lspo_model_nparams(&cfg) && h2d == d2h, "zero/bf16 volume %.0f", d2h);
	CHECK(lspo_model_train_step(m, in, tg, &opt, &st) == LSPO_OK, "zero/bf16 step after a switch");
	o.offload_bf16 = 0;
	CHECK(lspo_model_lsp_check(m, in, tg, 1, &rep) == LSPO_EINVAL, "check outside lsp mode accepted");
	o.mode = LSPO_MODE_LSP;
	o.offload_bf16 = 1;
	CHECK(lspo_model_set_mode(m, &o) == LSPO_EINVAL, "bf16 lsp accepted");
	o.offload_bf16 = 0;
	o.lsp_r = 40;
	o.lsp_d = 16;
	CHECK(lspo_model_set_mode(m, &o) == LSPO_EINVAL, "r > d accepted");
	lspo_model_free(m);
	lspo_ctx_destroy(ctx);
	return test_finish("test_offload");
}
