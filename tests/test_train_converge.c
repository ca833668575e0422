/*
 * test_train_converge.c - a tiny byte-level GPT-2 trained for 200 steps on a
 * small text learns it: the loss falls below 60 % of its start.
 */
#include <stdio.h>
#include <string.h>

#include "common.h"

static const char text[] =
	"The offload engine keeps the weights on the device and the optimizer on the host.\n"
	"Every stage of a training step is a task, and the runtime orders the tasks by their data.\n"
	"A sparse projector compresses the gradient before it crosses the bus, and the host\n"
	"updates the small matrix while the device computes the next layer.\n";

int main(void)
{
	const char *dir = getenv("LSPO_BUILDDIR");
	char txt[4200], shard_path[4200];
	snprintf(txt, sizeof(txt), "%s/tests/out/converge.txt", dir ? dir : ".");
	snprintf(shard_path, sizeof(shard_path), "%s/tests/out/converge.bin", dir ? dir : ".");
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "mkdir -p '%s/tests/out'", dir ? dir : ".");
	if (system(cmd) != 0)
		return TEST_ERROR;
	FILE *f = fopen(txt, "w");
	for (int i = 0; i < 8 && f; i++)
		fputs(text, f);
	if (!f || fclose(f))
		return TEST_ERROR;
	size_t ntok;
	CHECK(lspo_tokenize_bytes(txt, shard_path, &ntok) == LSPO_OK && ntok == 8 * strlen(text), "tokenize");

	struct lspo_ctx *ctx = test_start("lspo", -1, 0);
	struct lspo_model_config cfg = { .vocab_size = 256, .n_positions = 64, .n_embd = 48, .n_layer = 2, .n_head = 4 };
	const int B = 4, T = 32;
	float *params = malloc(lspo_model_nparams(&cfg) * sizeof(float));
	CHECK(lspo_model_init_params(&cfg, 7, params) == LSPO_OK, "init");
	struct lspo_model *m;
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "create");
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "set params");
	struct lspo_shard *shard;
	struct lspo_loader *ld;
	CHECK(lspo_shard_open(shard_path, &shard) == LSPO_OK, "open shard");
	CHECK(lspo_loader_create(shard, B, T, 11, 0, lspo_shard_ntokens(shard), &ld) == LSPO_OK, "loader");

	int32_t in[4 * 32], tg[4 * 32];
	struct lspo_optim opt = lspo_optim_default();
	opt.lr = 3e-3f;
	double first = 0, last = 0;
	for (int s = 0; s < 200; s++) {
		struct lspo_step_stats st;
		CHECK(lspo_loader_next(ld, in, tg) == LSPO_OK, "batch");
		int rc = lspo_model_train_step(m, in, tg, &opt, &st);
		if (rc) {
			CHECK(0, "step %d: %s", s, lspo_strerror(rc));
			break;
		}
		if (s == 0)
			first = st.loss;
		last = st.loss;
		if (s % 50 == 0 || s == 199)
			printf("step %3d loss %.4f norm %.3f\n", st.step, st.loss, st.grad_norm);
	}
	CHECK(first > 5.0 && first < 6.0, "initial loss %.3f, expected about ln 256 = 5.55", first);
	CHECK(last < 0.6 * first, "loss fell from %.3f to %.3f only", first, last);
	lspo_loader_free(ld);
	lspo_shard_close(shard);
	lspo_model_free(m);
	free(params);
	lspo_ctx_destroy(ctx);
	return test_finish("test_train_converge");
}
