/*
 * test_accum.c - gradient accumulation and activation checkpointing
 * (issue 13), on a GPT-2 and a Llama-family model:
 *   - 4 micro-batches of 2 per step against one batch of 8 (the same rows,
 *     some targets masked, unevenly across micro-batches): losses within
 *     1e-6 relative, gradient norms within 1e-5, in native, zero, lsp and
 *     zero with bf16 offload;
 *   - checkpointing every 1 and every 2 blocks (3 blocks: a short last
 *     segment) against none: losses, gradient norms and weights bit for bit,
 *     with and without accumulation, in native and lsp mode; fewer
 *     activation handles registered and fewer activation floats (the
 *     host slab of CPU-only runs has exactly that size);
 *   - both options together, bit for bit across the eager, dmdas and lspo
 *     policies;
 *   - dropping dead activations after their last reader (model_acts_dead,
 *     forced on with one CPU worker: by default only with an accelerator)
 *     changes no bit, under every policy, and leaves them without a copy;
 *   - bad arguments refused.
 */
#include <string.h>

#include "common.h"
#include "engine/model.h"

#define STEPS 3
enum { B = 2, T = 16, K = 4, D = 8 };

static const struct lspo_model_config gpt2_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                   .n_layer = 3, .n_head = 4 };
static const struct lspo_model_config llama_cfg = { .vocab_size = 61, .n_positions = 32, .n_embd = 32,
                                                    .n_layer = 3, .n_head = 4, .family = LSPO_FAMILY_QWEN2,
                                                    .n_kv_head = 2, .n_inner = 40 };

/* Step s's K B rows; every 7th target masked (-1), unevenly across micro-batches. */
static void batch(const struct lspo_model_config *cfg, int step, int32_t *in, int32_t *tg)
{
	uint64_t s = 11 + (uint64_t)step;
	for (int i = 0; i < K * B * T; i++) {
		in[i] = (int)((test_uniform(&s) + 1) * 0.5f * cfg->vocab_size) % cfg->vocab_size;
		tg[i] = i % 7 == 3 || (i < B * T && i % 5 == 1) ? -1 : (in[i] * 5 + 1) % cfg->vocab_size;
	}
}

/* mode 0..2: native, zero, lsp; 3: zero with bf16 offload. */
static struct lspo_offload_opts opts(int mode)
{
	struct lspo_offload_opts o = lspo_offload_opts_default();
	o.mode = mode == 3 ? LSPO_MODE_ZERO : (enum lspo_mode)mode;
	o.offload_bf16 = mode == 3;
	o.lsp_d = D;
	o.lsp_r = 3;
	return o;
}

struct run {
	double loss[STEPS], norm[STEPS];
	float *params;
	int nacts;
	size_t act_floats;   /* activation floats (model_activation_floats) */
	int dropped;         /* activation handles without a valid copy after the run */
};

static int force_drop = -1;   /* >= 0: m->drop_dead for the runs */

/* STEPS steps of micro micro-batches of rows (per micro-batch K B / micro),
 * checkpointing every ckpt blocks. */
static void run(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, int mode, int micro, int ckpt,
                struct run *r)
{
	size_t n = lspo_model_nparams(cfg);
	float *p0 = falloc(n);
	r->params = falloc(n);
	struct lspo_model *m;
	struct lspo_offload_opts o = opts(mode);
	CHECK(lspo_model_init_params(cfg, 5, p0) == LSPO_OK, "init");
	CHECK(lspo_model_create(ctx, cfg, K * B / micro, T, &m) == LSPO_OK, "create");
	CHECK(lspo_model_set_params(m, p0) == LSPO_OK && lspo_model_set_mode(m, &o) == LSPO_OK, "mode %d", mode);
	CHECK(lspo_model_set_checkpointing(m, ckpt) == LSPO_OK && lspo_model_checkpointing(m) == ckpt, "ckpt %d", ckpt);
	if (force_drop >= 0)
		m->drop_dead = force_drop;
	r->nacts = m->nacts;
	r->act_floats = model_activation_floats(m);
	CHECK(m->split < 2 || r->act_floats == m->act_size, "%zu activation floats counted, %zu in the slab",
	      r->act_floats, m->act_size);
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 2e-3f;
	opt.weight_decay = 0.01f;
	int32_t in[K * B * T], tg[K * B * T];
	for (int s = 0; s < STEPS; s++) {
		struct lspo_step_stats st;
		batch(cfg, s, in, tg);
		int rc = micro == 1 ? lspo_model_train_step(m, in, tg, &opt, &st)
		                    : lspo_model_train_step_accum(m, in, tg, micro, &opt, &st);
		CHECK(rc == LSPO_OK && st.step == s + 1, "step %d", s);
		r->loss[s] = st.loss;
		r->norm[s] = st.grad_norm;
	}
	CHECK(lspo_model_get_params(m, r->params) == LSPO_OK, "params");
	r->dropped = 0;
	for (int i = 0; i < m->nacts; i++) {
		int alloc = 0, valid = 0, req = 0;
		starpu_data_query_status(m->acts[i], STARPU_MAIN_RAM, &alloc, &valid, &req);
		r->dropped += !valid;
	}
	lspo_model_free(m);
	free(p0);
}

static double rel(double a, double b) { return fabs(a - b) / fmax(fabs(b), 1e-30); }

static const char *const mode_names[] = { "native", "zero", "lsp", "zero/bf16" };

/* K micro-batches of B against one batch of K B. */
static void check_accum(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, const char *fam)
{
	size_t n = lspo_model_nparams(cfg);
	for (int mode = 0; mode < 4; mode++) {
		struct run big, acc;
		run(ctx, cfg, mode, 1, 0, &big);
		run(ctx, cfg, mode, K, 0, &acc);
		double worst = 0, worst_norm = 0;
		for (int s = 0; s < STEPS; s++) {
			worst = fmax(worst, rel(acc.loss[s], big.loss[s]));
			worst_norm = fmax(worst_norm, rel(acc.norm[s], big.norm[s]));
		}
		double perr = test_rel_err(acc.params, big.params, n);
		CHECK(worst <= 1e-6, "%s %s: accumulated losses differ from the big batch's by %.3g relative",
		      fam, mode_names[mode], worst);
		CHECK(worst_norm <= 1e-5, "%s %s: gradient norms differ by %.3g relative", fam, mode_names[mode],
		      worst_norm);
		CHECK(perr <= 1e-4, "%s %s: weights differ by %.3g relative", fam, mode_names[mode], perr);
		CHECK(big.loss[STEPS - 1] < big.loss[0], "%s %s: does not train", fam, mode_names[mode]);
		printf("%-6s %-9s %d x %d against %d: losses %.6f .. %.6f, worst %.2e (norm %.2e, weights %.2e)\n",
		       fam, mode_names[mode], K, B, K * B, big.loss[0], big.loss[STEPS - 1], worst, worst_norm, perr);
		free(big.params);
		free(acc.params);
	}
}

static int same(const struct run *a, const struct run *b, size_t n)
{
	return !memcmp(a->loss, b->loss, sizeof(a->loss)) && !memcmp(a->norm, b->norm, sizeof(a->norm))
	       && !memcmp(a->params, b->params, n * sizeof(float));
}

/* Checkpointed runs equal the plain ones bit for bit. */
static void check_ckpt(struct lspo_ctx *ctx, const struct lspo_model_config *cfg, const char *fam)
{
	size_t n = lspo_model_nparams(cfg);
	static const int modes[] = { LSPO_MODE_NATIVE, LSPO_MODE_LSP };
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++)
		for (int micro = 1; micro <= K; micro += K - 1) {
			struct run plain, every1, every2;
			run(ctx, cfg, modes[i], micro, 0, &plain);
			run(ctx, cfg, modes[i], micro, 1, &every1);
			run(ctx, cfg, modes[i], micro, 2, &every2);
			CHECK(same(&every1, &plain, n), "%s %s, %d micro-batch(es): checkpointing every block changes the "
			      "run: loss %.17g, plain %.17g", fam, mode_names[modes[i]], micro, every1.loss[STEPS - 1],
			      plain.loss[STEPS - 1]);
			CHECK(same(&every2, &plain, n), "%s %s, %d micro-batch(es): checkpointing every 2 blocks changes "
			      "the run: loss %.17g, plain %.17g", fam, mode_names[modes[i]], micro, every2.loss[STEPS - 1],
			      plain.loss[STEPS - 1]);
			/* 3 blocks: every block keeps its output, shares the rest (1 set); every 2: 2 sets */
			CHECK(every1.nacts < every2.nacts && every2.nacts < plain.nacts, "%s: %d, %d, %d activation handles",
			      fam, every1.nacts, every2.nacts, plain.nacts);
			CHECK(every1.act_floats < every2.act_floats && every2.act_floats < plain.act_floats,
			      "%s: activation slabs of %zu, %zu, %zu floats", fam, every1.act_floats, every2.act_floats,
			      plain.act_floats);
			printf("%-6s %-6s %d micro-batch(es): checkpointed every 1 and 2 blocks = plain, bit for bit "
			       "(%d, %d, %d activation handles; %zu, %zu, %zu activation floats)\n", fam,
			       mode_names[modes[i]], micro, every1.nacts, every2.nacts, plain.nacts, every1.act_floats,
			       every2.act_floats, plain.act_floats);
			free(plain.params);
			free(every1.params);
			free(every2.params);
		}
}

/* One CPU worker (no split products): drops forced on against off, with
 * checkpointing every 2 blocks and K micro-batches, the same bits. */
static void check_drop(const struct lspo_model_config *cfg, const char *fam)
{
	static const char *const scheds[] = { "eager", "dmdas", "lspo" };
	size_t n = lspo_model_nparams(cfg);
	for (size_t p = 0; p < sizeof(scheds) / sizeof(scheds[0]); p++) {
		struct lspo_ctx *ctx = test_start(scheds[p], 1, 0);
		for (int mode = 0; mode < 3; mode++) {
			struct run kept, dropped;
			force_drop = 0;
			run(ctx, cfg, mode, K, 2, &kept);
			force_drop = 1;
			run(ctx, cfg, mode, K, 2, &dropped);
			force_drop = -1;
			CHECK(same(&dropped, &kept, n), "%s %s under %s: dropping dead activations changes the run: "
			      "loss %.17g, kept %.17g", fam, mode_names[mode], scheds[p], dropped.loss[STEPS - 1],
			      kept.loss[STEPS - 1]);
			/* (kept: one slot's output is never written, the segment's own replaces it) */
			CHECK(dropped.dropped > kept.dropped + dropped.nacts / 2,
			      "%s %s under %s: %d of %d activations without a copy (kept: %d)", fam, mode_names[mode],
			      scheds[p], dropped.dropped, dropped.nacts, kept.dropped);
			printf("%-6s %-6s %s: dead activations dropped (%d of %d handles) = kept, bit for bit\n", fam,
			       mode_names[mode], scheds[p], dropped.dropped, dropped.nacts);
			free(kept.params);
			free(dropped.params);
		}
		lspo_ctx_destroy(ctx);
	}
}

static void check_bad(struct lspo_ctx *ctx)
{
	struct lspo_model *m;
	CHECK(lspo_model_create(ctx, &gpt2_cfg, B, T, &m) == LSPO_OK, "create");
	struct lspo_optim opt = lspo_optim_default();
	struct lspo_step_stats st;
	int32_t in[K * B * T], tg[K * B * T];
	batch(&gpt2_cfg, 0, in, tg);
	CHECK(lspo_model_train_step_accum(m, in, tg, 0, &opt, &st) == LSPO_EINVAL, "0 micro-batches accepted");
	CHECK(lspo_model_train_step_accum(m, in, tg, -2, &opt, &st) == LSPO_EINVAL, "-2 micro-batches accepted");
	CHECK(lspo_model_set_checkpointing(m, -1) == LSPO_EINVAL, "checkpointing every -1 blocks accepted");
	in[3 * B * T + 5] = gpt2_cfg.vocab_size;   /* in the last micro-batch */
	CHECK(lspo_model_train_step_accum(m, in, tg, K, &opt, &st) == LSPO_EINVAL, "token outside the vocabulary");
	CHECK(lspo_model_step(m) == 0, "a refused step counted");
	lspo_model_free(m);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("lspo", -1, 0);
	check_accum(ctx, &gpt2_cfg, "gpt2");
	check_accum(ctx, &llama_cfg, "qwen2");
	check_ckpt(ctx, &gpt2_cfg, "gpt2");
	check_ckpt(ctx, &llama_cfg, "qwen2");
	check_bad(ctx);
	lspo_ctx_destroy(ctx);

	check_drop(&gpt2_cfg, "gpt2");
	check_drop(&llama_cfg, "qwen2");

	/* Both options, every policy: the same bits. */
	static const char *const scheds[] = { "eager", "dmdas", "lspo" };
	const struct lspo_model_config *cfgs[] = { &gpt2_cfg, &llama_cfg };
	for (int f = 0; f < 2; f++)
		for (int mode = 0; mode < 3; mode++) {
			struct run ref = { 0 };
			size_t n = lspo_model_nparams(cfgs[f]);
			for (size_t p = 0; p < sizeof(scheds) / sizeof(scheds[0]); p++) {
				struct run r;
				ctx = test_start(scheds[p], -1, 0);
				run(ctx, cfgs[f], mode, K, 1, &r);
				lspo_ctx_destroy(ctx);
				if (!p) {
					ref = r;
					continue;
				}
				CHECK(same(&r, &ref, n), "%s %s, %d micro-batches, checkpointing: %s loss %.17g, eager %.17g",
				      f ? "qwen2" : "gpt2", mode_names[mode], K, scheds[p], r.loss[STEPS - 1],
				      ref.loss[STEPS - 1]);
				free(r.params);
			}
			printf("%-6s %-6s %d micro-batches, checkpointing: eager = dmdas = lspo (loss %.6f)\n",
			       f ? "qwen2" : "gpt2", mode_names[mode], K, ref.loss[STEPS - 1]);
			free(ref.params);
		}
	return test_finish("test_accum");
}
