/*
 * test_llama_golden.c - the Llama and Qwen2 models against float64 PyTorch
 * (tests/ref/make_golden_llama.py): for each reference model, loaded from
 * its checkpoint directory, the logits and the loss, every parameter's
 * gradient (by HF name, from grads.safetensors), and the losses, norms and
 * parameters (final.safetensors) of 4 AdamW steps with clipping; then the
 * model saved and loaded back bit for bit, and from shards.  Configs of
 * unsupported families and rope scalings are refused by name.  lspo runs in
 * float32.
 */
#include <sys/stat.h>
#include <string.h>

#include "common.h"
#include "engine/model.h"
#include "io/safetensors.h"

struct golden {
	int hdr[6];             /* magic, version, B, T, V, nsteps */
	float opt[6];           /* lr, beta1, beta2, eps, weight_decay, clip */
	int32_t *inputs, *targets;
	float loss, *logits, step_loss[8], norm[8];
};

static int read_golden(const char *path, struct golden *g)
{
	FILE *f = fopen(path, "rb");
	if (!f || fread(g->hdr, sizeof(int), 6, f) != 6 || g->hdr[0] != 20261130 || g->hdr[1] != 2 || g->hdr[5] > 8) {
		fprintf(stderr, "%s: missing or not a version 2 golden file\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	size_t bt = (size_t)g->hdr[2] * g->hdr[3], v = g->hdr[4], s = g->hdr[5];
	g->inputs = malloc(bt * sizeof(int32_t));
	g->targets = malloc(bt * sizeof(int32_t));
	g->logits = malloc(bt * v * sizeof(float));
	int ok = fread(g->opt, sizeof(float), 6, f) == 6 && fread(g->inputs, 4, bt, f) == bt
		&& fread(g->targets, 4, bt, f) == bt && fread(&g->loss, 4, 1, f) == 1
		&& fread(g->logits, 4, bt * v, f) == bt * v && fread(g->step_loss, 4, s, f) == s
		&& fread(g->norm, 4, s, f) == s;
	fclose(f);
	return ok ? 0 : -1;
}


/* Every tensor of the model's slab against the file's tensor of the same
 * name; the worst relative error. */
static double compare_by_name(const char *dir, const char *file, const struct model_layout *lay,
                              const float *slab, double tol)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	struct st_file *f;
	if (st_open(path, &f) != LSPO_OK) {
		CHECK(0, "cannot open %s", path);
		return INFINITY;
	}
	double worst = 0;
	CHECK((int)f->ntensors == lay->ntensors, "%s: %zu tensors, the model has %d", path, f->ntensors,
	      lay->ntensors);
	for (int i = 0; i < lay->ntensors; i++) {
		const struct model_tensor *t = &lay->tensors[i];
		int k = st_find(f, t->name);
		size_t n = (size_t)t->rows * t->cols;
		if (k < 0 || st_numel(&f->tensors[k]) != n) {
			CHECK(0, "%s: tensor %s missing or of another size", path, t->name);
			continue;
		}
		float *ref = malloc(n * sizeof(float));
		st_read_f32(f, &f->tensors[k], ref);
		double e = test_rel_err(slab + t->offset, ref, n);
		CHECK(e <= tol, "%s: %s: relative error %.3g", path, t->name, e);
		worst = fmax(worst, e);
		free(ref);
	}
	st_close(f);
	return worst;
}

static struct lspo_ctx *ctx;

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "cannot write %s", path);
}

/* The checkpoint cut into two shards with an index, as HF saves large models. */
static void check_shards(const char *dir, const struct lspo_model_config *cfg, const float *params)
{
	char out[4200], path[4400];
	snprintf(out, sizeof(out), "%s/tests/out/llama_shards", getenv("LSPO_BUILDDIR") ? getenv("LSPO_BUILDDIR") : ".");
	mkdir(out, 0777);
	struct model_layout lay;
	CHECK(model_layout_of(cfg, &lay) == LSPO_OK, "layout");
	struct st_out_tensor *ts = calloc((size_t)lay.ntensors, sizeof(*ts));
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		ts[i] = (struct st_out_tensor){ .name = t->name, .ndim = t->hf_ndim, .data = params + t->offset,
		                                .dtype = ST_F32 };
		ts[i].shape[0] = t->hf_ndim == 2 ? t->rows : t->cols;
		ts[i].shape[1] = t->cols;
	}
	int half = lay.ntensors / 2;
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", out);
	CHECK(st_write(path, ts, (size_t)half) == LSPO_OK, "shard 1");
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", out);
	CHECK(st_write(path, ts + half, (size_t)(lay.ntensors - half)) == LSPO_OK, "shard 2");
	size_t cap = 64 + (size_t)lay.ntensors * 160;
	char *index = malloc(cap);
	int at = snprintf(index, cap, "{\"metadata\": {}, \"weight_map\": {");
	for (int i = 0; i < lay.ntensors; i++)
		at += snprintf(index + at, cap - (size_t)at, "%s\"%s\": \"model-0000%d-of-00002.safetensors\"", i ? ", " : "",
		               lay.tensors[i].name, i < half ? 1 : 2);
	snprintf(index + at, cap - (size_t)at, "}}");
	snprintf(path, sizeof(path), "%s/model.safetensors.index.json", out);
	write_text(path, index);
	char src[4400], dst[4400];
	snprintf(src, sizeof(src), "%s/config.json", dir);
	snprintf(dst, sizeof(dst), "%s/config.json", out);
	FILE *in = fopen(src, "r");
	char text[8192];
	size_t len = in ? fread(text, 1, sizeof(text) - 1, in) : 0;
	text[len] = 0;
	if (in)
		fclose(in);
	write_text(dst, text);
	size_t n = lspo_model_nparams(cfg);
	float *back = malloc(n * sizeof(float));
	CHECK(lspo_ckpt_load_params(out, cfg, back) == LSPO_OK && !memcmp(back, params, n * sizeof(float)),
	      "%s: the shards do not load the same parameters", out);
	/* an index that names the first shard only: the second one's tensors are missing */
	at = snprintf(index, cap, "{\"weight_map\": {");
	for (int i = 0; i < half; i++)
		at += snprintf(index + at, cap - (size_t)at, "%s\"%s\": \"model-00001-of-00002.safetensors\"", i ? ", " : "",
		               lay.tensors[i].name);
	snprintf(index + at, cap - (size_t)at, "}}");
	write_text(path, index);
	CHECK(lspo_ckpt_load_params(out, cfg, back) == LSPO_EFORMAT, "%s: a shard missing from the index accepted", out);
	free(back);
	free(index);
	free(ts);
	layout_free(&lay);
}

/* config.json variants that must be refused (exit paths of the CLI). */
static void check_bad_configs(void)
{
	static const char *const bad[] = {
		"{\"model_type\": \"mistral\", \"vocab_size\": 10}",
		"{\"architectures\": [\"PhiForCausalLM\"]}",
		"{\"model_type\": \"llama\", \"vocab_size\": 10, \"max_position_embeddings\": 8, \"hidden_size\": 8, "
		"\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
		"\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 2.0}}",
		"{\"model_type\": \"llama\", \"vocab_size\": 10, \"max_position_embeddings\": 8, \"hidden_size\": 8, "
		"\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 3}",
		"{\"model_type\": \"llama\", \"vocab_size\": 10, \"max_position_embeddings\": 8, \"hidden_size\": 8, "
		"\"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"hidden_act\": \"gelu\"}",
	};
	char path[4200];
	snprintf(path, sizeof(path), "%s/tests/out/bad_config.json", getenv("LSPO_BUILDDIR") ? getenv("LSPO_BUILDDIR") : ".");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lspo_model_config c;
		write_text(path, bad[i]);
		CHECK(lspo_ckpt_read_config(path, &c) == LSPO_EFORMAT, "bad config %zu accepted: %s", i, bad[i]);
	}
}

static void check_model(const char *dir, enum lspo_family family)
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
	CHECK(cfg.family == family && cfg.vocab_size == gd.hdr[4], "%s: family %d, vocab %d", dir, (int)cfg.family,
	      cfg.vocab_size);
	int B = gd.hdr[2], T = gd.hdr[3], V = gd.hdr[4];
	size_t n = lspo_model_nparams(&cfg);
	float *params = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float)), *back = malloc(n * sizeof(float));
	float *logits = malloc((size_t)B * T * V * sizeof(float));
	CHECK(lspo_ckpt_load_params(dir, &cfg, params) == LSPO_OK, "%s: load", dir);
	struct model_layout lay;
	CHECK(model_layout_of(&cfg, &lay) == LSPO_OK, "layout");

	struct lspo_model *m;
	CHECK(lspo_model_create(ctx, &cfg, B, T, &m) == LSPO_OK, "%s: create", dir);
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "set params");

	double loss, norm;
	CHECK(lspo_model_forward(m, gd.inputs, gd.targets, &loss) == LSPO_OK, "forward");
	CHECK(fabs(loss - gd.loss) <= 1e-4 * fabs(gd.loss), "%s: loss %.7f, PyTorch %.7f", dir, loss, gd.loss);
	lspo_model_get_logits(m, logits);
	double elog = test_rel_err(logits, gd.logits, (size_t)B * T * V);
	CHECK(elog <= 1e-4, "%s: logits relative error %.3g", dir, elog);

	CHECK(lspo_model_forward_backward(m, gd.inputs, gd.targets, &loss, &norm) == LSPO_OK, "fwd+bwd");
	CHECK(fabs(norm - gd.norm[0]) <= 1e-4 * gd.norm[0], "%s: grad norm %.7f, PyTorch %.7f", dir, norm, gd.norm[0]);
	lspo_model_get_grads(m, out);
	double egrad = compare_by_name(dir, "grads.safetensors", &lay, out, 1e-4);

	struct lspo_optim opt = { .lr = gd.opt[0], .beta1 = gd.opt[1], .beta2 = gd.opt[2], .eps = gd.opt[3],
	                          .weight_decay = gd.opt[4], .clip = gd.opt[5] };
	CHECK(lspo_model_set_params(m, params) == LSPO_OK, "reset params");
	for (int s = 0; s < gd.hdr[5]; s++) {
		struct lspo_step_stats st;
		CHECK(lspo_model_train_step(m, gd.inputs, gd.targets, &opt, &st) == LSPO_OK, "step %d", s);
		CHECK(fabs(st.loss - gd.step_loss[s]) <= 1e-4 * gd.step_loss[s], "%s: step %d loss %.7f, PyTorch %.7f",
		      dir, s, st.loss, gd.step_loss[s]);
		CHECK(fabs(st.grad_norm - gd.norm[s]) <= 1e-4 * gd.norm[s], "%s: step %d norm %.7f, PyTorch %.7f",
		      dir, s, st.grad_norm, gd.norm[s]);
	}
	lspo_model_get_params(m, out);
	double efinal = compare_by_name(dir, "final.safetensors", &lay, out, 1e-4);

	/* save and load back: same config, same bits */
	char saved[4200];
	snprintf(saved, sizeof(saved), "%s/tests/out/llama_golden_%s", getenv("LSPO_BUILDDIR") ? getenv("LSPO_BUILDDIR") : ".",
	         strrchr(dir, '/') + 1);
	struct lspo_model_config again;
	CHECK(lspo_ckpt_save(saved, &cfg, out) == LSPO_OK, "save %s", saved);
	CHECK(lspo_ckpt_read_config(saved, &again) == LSPO_OK && !memcmp(&again, &cfg, sizeof(cfg)),
	      "%s: config does not round-trip", saved);
	CHECK(lspo_ckpt_load_params(saved, &again, back) == LSPO_OK && !memcmp(back, out, n * sizeof(float)),
	      "%s: parameters do not round-trip", saved);
	printf("%s: loss %.6f (PyTorch %.6f), logits err %.2e, grads err %.2e, %d-step params err %.2e\n",
	       dir, loss, gd.loss, elog, egrad, gd.hdr[5], efinal);

	if (family == LSPO_FAMILY_LLAMA)
		check_shards(dir, &cfg, params);
	lspo_model_free(m);
	layout_free(&lay);
	free(params); free(out); free(back); free(logits);
	free(gd.inputs); free(gd.targets); free(gd.logits);
}

int main(void)
{
	const char *src = getenv("LSPO_SRCDIR");
	ctx = test_start("lspo", -1, 0);
	const struct { const char *name; enum lspo_family family; } refs[] = {
		{ "llama_gqa", LSPO_FAMILY_LLAMA }, { "qwen2_tied", LSPO_FAMILY_QWEN2 }, { "llama_mha", LSPO_FAMILY_LLAMA } };
	char dir[4096];
	for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]); i++) {
		snprintf(dir, sizeof(dir), "%s/tests/ref/%s", src ? src : ".", refs[i].name);
		check_model(dir, refs[i].family);
	}
	check_bad_configs();
	lspo_ctx_destroy(ctx);
	return test_finish("test_llama_golden");
}
