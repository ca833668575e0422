/*
 * test_ckpt.c - checkpoints: parameter counts, GPT-2 init statistics and
 * determinism, save -> load bit-exact, config.json contents, BF16/F16
 * conversion (exhaustive for F16), and HF variants (transformer. prefix,
 * attention-mask buffers, tied lm_head.weight).  No StarPU needed.
 */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "engine/model.h"
#include "models/gpt2.h"
#include "io/safetensors.h"
#include "st_craft.h"

static const struct lspo_model_config tiny = { .vocab_size = 61, .n_positions = 16, .n_embd = 32, .n_layer = 3, .n_head = 4 };

/* Equal once both have their family's defaults filled in. */
static int same_config(const struct lspo_model_config *a, const struct lspo_model_config *b)
{
	struct lspo_model_config x = *a, y = *b;
	return !lspo_model_config_check(&x) && !lspo_model_config_check(&y) && !memcmp(&x, &y, sizeof(x));
}

static void test_nparams(void)
{
	const struct lspo_model_config cfgs[] = { { .vocab_size = 50257, .n_positions = 1024, .n_embd = 768, .n_layer = 12, .n_head = 12 }, { .vocab_size = 61, .n_positions = 16, .n_embd = 32, .n_layer = 3, .n_head = 4 },
	                                         { .vocab_size = 1, .n_positions = 1, .n_embd = 1, .n_layer = 1, .n_head = 1 } };
	for (size_t i = 0; i < sizeof(cfgs) / sizeof(cfgs[0]); i++) {
		struct model_layout lay;
		CHECK(model_layout_of(&cfgs[i], &lay) == LSPO_OK, "layout %zu", i);
		CHECK(lspo_model_nparams(&cfgs[i]) == lay.nfloats, "nparams %zu vs layout %zu",
		      lspo_model_nparams(&cfgs[i]), lay.nfloats);
		layout_free(&lay);
	}
	/* llm.c's GPT-2 124M count is with the vocab padded to 50304 */
	CHECK(lspo_model_nparams(&cfgs[0]) == 124475904u - (50304u - 50257u) * 768u, "124M count %zu",
	      lspo_model_nparams(&cfgs[0]));
	struct lspo_model_config bad = tiny;
	bad.n_head = 5;
	CHECK(lspo_model_nparams(&bad) == 0, "n_embd %% n_head != 0 must give 0");
	bad = tiny;
	bad.n_layer = 0;
	CHECK(lspo_model_nparams(&bad) == 0, "n_layer 0 must give 0");
	CHECK(lspo_model_nparams(NULL) == 0, "NULL must give 0");
	struct lspo_model_config huge = { .vocab_size = 2147483647, .n_positions = 2147483647, .n_embd = 2147483646, .n_layer = 2147483647, .n_head = 2 };
	CHECK(lspo_model_nparams(&huge) == 0, "a count beyond size_t must give 0");
	float dummy;
	CHECK(lspo_model_init_params(&huge, 1, &dummy) == LSPO_EINVAL, "init of a config too large");
}

/* mean and standard deviation, in double */
static void moments(const float *x, size_t n, double *mean, double *std)
{
	double s = 0, s2 = 0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	*mean = s / (double)n;
	for (size_t i = 0; i < n; i++)
		s2 += (x[i] - *mean) * (x[i] - *mean);
	*std = sqrt(s2 / (double)n);
}

static void test_init(void)
{
	struct lspo_model_config cfg = { .vocab_size = 256, .n_positions = 64, .n_embd = 64, .n_layer = 4, .n_head = 4 };
	size_t n = lspo_model_nparams(&cfg);
	float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
	CHECK(lspo_model_init_params(&cfg, 42, a) == LSPO_OK, "init");
	CHECK(lspo_model_init_params(&cfg, 42, b) == LSPO_OK, "init again");
	CHECK(lspo_model_init_params(&cfg, 43, c) == LSPO_OK, "init seed 43");
	CHECK(memcmp(a, b, n * sizeof(float)) == 0, "same seed must give identical parameters");
	size_t same = 0;
	for (size_t i = 0; i < n; i++)
		same += a[i] == c[i];
	struct model_layout lay;
	model_layout_of(&cfg, &lay);
	size_t nconst = 0;   /* biases and layernorms are the same for every seed */
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		int w = i < 2 || t->kind == GPT2_QKV_W || t->kind == GPT2_ATTPROJ_W || t->kind == GPT2_FC_W ||
		        t->kind == GPT2_FCPROJ_W;
		if (!w)
			nconst += (size_t)t->rows * t->cols;
	}
	CHECK(same == nconst, "seeds 42 and 43: %zu equal values, expected only the %zu constants",
	      same, nconst);
	double resid = 0.02 / sqrt(2.0 * cfg.n_layer);
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		const float *x = a + t->offset;
		size_t m = (size_t)t->rows * t->cols;
		double mean, std, want_std = -1, want_const = 0;
		if (i < 2 || t->kind == GPT2_QKV_W || t->kind == GPT2_FC_W)
			want_std = 0.02;
		else if (t->kind == GPT2_ATTPROJ_W || t->kind == GPT2_FCPROJ_W)
			want_std = resid;
		else if (t->kind == GPT2_LN1_W || t->kind == GPT2_LN2_W || i == lay.ntensors - 2)
			want_const = 1.0;
		if (want_std > 0) {
			moments(x, m, &mean, &std);
			/* 5 sigma bounds for the sample mean and standard deviation */
			CHECK(fabs(mean) < 5 * want_std / sqrt((double)m), "%s: mean %g", t->name, mean);
			CHECK(fabs(std - want_std) < 5 * want_std / sqrt(2.0 * m), "%s: std %g, expected %g",
			      t->name, std, want_std);
			size_t tail = 0;   /* normal, not uniform: |x| > 2 sigma about 4.55 % */
			for (size_t k = 0; k < m; k++)
				tail += fabs(x[k]) > 2 * want_std;
			double frac = (double)tail / (double)m;
			CHECK(fabs(frac - 0.0455) < 5 * sqrt(0.0455 * 0.9545 / (double)m) + 1e-3,
			      "%s: %.4f beyond 2 sigma", t->name, frac);
		} else {
			size_t bad = 0;
			for (size_t k = 0; k < m; k++)
				bad += x[k] != (float)want_const;
			CHECK(bad == 0, "%s: %zu values differ from %g", t->name, bad, want_const);
		}
	}
	/* init is per tensor and position: a deeper model keeps wte bit-identical */
	struct lspo_model_config deeper = cfg;
	deeper.n_layer = 5;
	float *d = malloc(lspo_model_nparams(&deeper) * sizeof(float));
	CHECK(lspo_model_init_params(&deeper, 42, d) == LSPO_OK, "init deeper");
	CHECK(memcmp(a, d, (size_t)cfg.vocab_size * cfg.n_embd * sizeof(float)) == 0,
	      "wte must not depend on n_layer");
	free(d);
	layout_free(&lay);
	struct lspo_model_config bad = cfg;
	bad.n_head = 3;
	CHECK(lspo_model_init_params(&bad, 1, a) == LSPO_EINVAL, "invalid config");
	free(a);
	free(b);
	free(c);
}

static size_t count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

static void test_round_trip(const char *tmp)
{
	char dir[4200], path[4300];
	snprintf(dir, sizeof(dir), "%s/rt/sub", tmp);
	size_t n = lspo_model_nparams(&tiny);
	float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
	lspo_model_init_params(&tiny, 7, p);
	CHECK(lspo_ckpt_save(dir, &tiny, p) == LSPO_OK, "save");
	CHECK(lspo_ckpt_save(dir, &tiny, p) == LSPO_OK, "save again over the same files");
	CHECK(count_entries(dir) == 2, "%s holds %zu files, expected 2 (no temporaries)", dir,
	      count_entries(dir));
	struct lspo_model_config c;
	CHECK(lspo_ckpt_read_config(dir, &c) == LSPO_OK, "read config");
	CHECK(same_config(&c, &tiny), "config round trip: %d %d %d %d %d", c.vocab_size,
	      c.n_positions, c.n_embd, c.n_layer, c.n_head);
	memset(q, 0xff, n * sizeof(float));
	CHECK(lspo_ckpt_load_params(dir, &c, q) == LSPO_OK, "load");
	CHECK(memcmp(p, q, n * sizeof(float)) == 0, "save -> load must be bit-exact");

	/* config.json, read back with jansson */
	snprintf(path, sizeof(path), "%s/config.json", dir);
	json_error_t err;
	json_t *root = json_load_file(path, 0, &err);
	CHECK(root != NULL, "config.json is JSON: %s", err.text);
	if (root) {
		CHECK(!strcmp(json_string_value(json_object_get(root, "model_type")), "gpt2"), "model_type");
		CHECK(!strcmp(json_string_value(json_object_get(root, "activation_function")), "gelu_new"),
		      "activation_function");
		CHECK(!strcmp(json_string_value(json_array_get(json_object_get(root, "architectures"), 0)),
		              "GPT2LMHeadModel"), "architectures");
		CHECK(json_integer_value(json_object_get(root, "n_ctx")) == tiny.n_positions, "n_ctx");
		CHECK(json_integer_value(json_object_get(root, "vocab_size")) == tiny.vocab_size, "vocab");
		CHECK(json_integer_value(json_object_get(root, "n_embd")) == tiny.n_embd, "n_embd");
		CHECK(json_integer_value(json_object_get(root, "n_layer")) == tiny.n_layer, "n_layer");
		CHECK(json_integer_value(json_object_get(root, "n_head")) == tiny.n_head, "n_head");
		CHECK(fabs(json_real_value(json_object_get(root, "layer_norm_epsilon")) - 1e-5) < 1e-12,
		      "layer_norm_epsilon");
		json_decref(root);
	}
	/* the config file path itself is accepted too */
	CHECK(lspo_ckpt_read_config(path, &c) == LSPO_OK && same_config(&c, &tiny),
	      "read config by file name");

	/* model.safetensors: independent check of the header with the internal reader */
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	struct st_file *f;
	CHECK(st_open(path, &f) == LSPO_OK, "st_open");
	if (f) {
		CHECK(f->ntensors == (size_t)(4 + 12 * tiny.n_layer), "%zu tensors", f->ntensors);
		CHECK(!strcmp(f->tensors[0].name, "wte.weight") && f->tensors[0].ndim == 2 &&
		      f->tensors[0].shape[0] == tiny.vocab_size, "first tensor wte [V, C]");
		int k = st_find(f, "h.2.mlp.c_fc.bias");
		CHECK(k >= 0 && f->tensors[k].ndim == 1 && f->tensors[k].shape[0] == 4 * tiny.n_embd,
		      "biases are 1-D [4C]");
		k = st_find(f, "h.1.mlp.c_proj.weight");
		CHECK(k >= 0 && f->tensors[k].shape[0] == 4 * tiny.n_embd &&
		      f->tensors[k].shape[1] == tiny.n_embd, "mlp.c_proj.weight is Conv1D (4C, C)");
		CHECK(f->tensors[k].dtype == ST_F32, "F32");
		CHECK(((8 + (size_t)(f->data - (const unsigned char *)f->map) - 8) % 8) == 0,
		      "header padded to 8 bytes");
		st_close(f);
	}
	free(p);
	free(q);
}

static float f32_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static void test_f16_exhaustive(void)
{
	size_t bad = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
		float got = st_f16_to_f32((uint16_t)h);
		double want;
		if (e == 31) {
			if (m) {
				bad += !isnan(got);
				continue;
			}
			want = INFINITY;
		} else if (e == 0) {
			want = ldexp(m, -24);
		} else {
			want = ldexp(1024 + m, e - 25);
		}
		want = s ? -want : want;
		if ((double)got != want || !!signbit(got) != (s != 0))
			bad++;
	}
	CHECK(bad == 0, "%zu F16 values converted wrongly", bad);
	size_t badb = 0;
	for (uint32_t b = 0; b < 65536; b++) {
		float got = st_bf16_to_f32((uint16_t)b), want = f32_bits(b << 16);
		badb += memcmp(&got, &want, 4) != 0;
	}
	CHECK(badb == 0, "%zu BF16 values converted wrongly", badb);
}

/* Exact float -> F16 for values representable as normal halves (or 0). */
static uint16_t to_f16_exact(float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	if ((u & 0x7fffffffu) == 0)
		return (uint16_t)(u >> 16);
	int e = (int)((u >> 23) & 255) - 127;
	return (uint16_t)(((u >> 16) & 0x8000u) | (uint32_t)(e + 15) << 10 | ((u >> 13) & 1023u));
}

static void test_half_checkpoint(const char *tmp)
{
	char dir[4200], path[4300];
	snprintf(dir, sizeof(dir), "%s/half", tmp);
	mkdir(dir, 0777);
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	size_t n = lspo_model_nparams(&tiny);
	float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
	lspo_model_init_params(&tiny, 9, p);
	struct craft_t *e = NULL;
	int ne = craft_model(&tiny, p, 0, &e);
	/* wte as BF16: the expected floats are the values truncated to bf16 */
	int iw = craft_find(e, ne, "wte.weight");
	size_t nw = (size_t)tiny.vocab_size * tiny.n_embd;
	uint16_t *wte16 = malloc(nw * 2);
	for (size_t i = 0; i < nw; i++) {
		uint32_t u;
		memcpy(&u, &p[i], 4);
		wte16[i] = (uint16_t)(u >> 16);
		p[i] = f32_bits(u & 0xffff0000u);
	}
	strcpy(e[iw].dtype, "BF16");
	e[iw].data = wte16;
	e[iw].nbytes = nw * 2;
	/* wpe and h.1.attn.c_attn.weight as F16: special values, then multiples of 1/64 */
	static const struct { uint16_t h; float f; } special[] = {
		{ 0x0001, 0x1p-24f }, { 0x03ff, 1023 * 0x1p-24f }, { 0x0400, 0x1p-14f },
		{ 0x7bff, 65504.0f }, { 0xfc00, -INFINITY }, { 0x8000, -0.0f }, { 0x3c00, 1.0f },
		{ 0xc000, -2.0f }, { 0x3555, 0x1.554p-2f } };
	const char *half_names[] = { "wpe.weight", "h.1.attn.c_attn.weight" };
	uint16_t *bufs[2];
	for (int t = 0; t < 2; t++) {
		int k = craft_find(e, ne, half_names[t]);
		size_t m = e[k].nbytes / 4;
		float *dst = (float *)e[k].data;   /* points into p */
		bufs[t] = malloc(m * 2);
		for (size_t i = 0; i < m; i++) {
			if (t == 0 && i < sizeof(special) / sizeof(special[0])) {
				bufs[t][i] = special[i].h;
				dst[i] = special[i].f;
			} else {
				dst[i] = (float)((int)((i * 37) % 401) - 200) / 64.0f;
				bufs[t][i] = to_f16_exact(dst[i]);
			}
		}
		strcpy(e[k].dtype, "F16");
		e[k].data = bufs[t];
		e[k].nbytes = m * 2;
	}
	CHECK(craft_write(path, e, ne) == 0, "write %s", path);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	write_text(path, "{\"vocab_size\": 61, \"n_ctx\": 16, \"n_embd\": 32, \"n_layer\": 3, "
	                 "\"n_head\": 4}");
	struct lspo_model_config c;
	CHECK(lspo_ckpt_read_config(dir, &c) == LSPO_OK && same_config(&c, &tiny),
	      "n_ctx accepted when n_positions is absent");
	memset(q, 0, n * sizeof(float));
	CHECK(lspo_ckpt_load_params(dir, &tiny, q) == LSPO_OK, "load BF16/F16 checkpoint");
	size_t bad = 0;
	for (size_t i = 0; i < n; i++)
		bad += memcmp(&p[i], &q[i], 4) != 0;
	CHECK(bad == 0, "%zu values differ after BF16/F16 conversion", bad);
	free(wte16);
	free(bufs[0]);
	free(bufs[1]);
	free(e);
	free(p);
	free(q);
}

static void test_hf_variants(const char *tmp)
{
	char dir[4200], path[4300];
	snprintf(dir, sizeof(dir), "%s/hf", tmp);
	mkdir(dir, 0777);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	/* n_positions wins over a different n_ctx; unknown keys are ignored */
	write_text(path, "{\"vocab_size\": 61, \"n_positions\": 16, \"n_ctx\": 99, \"n_embd\": 32, "
	                 "\"n_layer\": 3, \"n_head\": 4, \"resid_pdrop\": 0.1, \"model_type\": \"gpt2\"}");
	struct lspo_model_config c;
	CHECK(lspo_ckpt_read_config(dir, &c) == LSPO_OK && c.n_positions == 16,
	      "n_positions preferred over n_ctx");
	size_t n = lspo_model_nparams(&tiny);
	float *p = malloc(n * sizeof(float)), *q = malloc(n * sizeof(float));
	lspo_model_init_params(&tiny, 11, p);
	struct craft_t *e = NULL;
	int ne = craft_model(&tiny, p, 2 * tiny.n_layer + 1, &e);
	for (int i = 0; i < ne; i++) {   /* HF's GPT2LMHeadModel names */
		size_t len = strlen(e[i].name);   /* layout names are < 48 characters */
		memmove(e[i].name + 12, e[i].name, len + 1);
		memcpy(e[i].name, "transformer.", 12);
	}
	/* attention-mask buffers: BOOL (1, 1, P, P) and an F32 scalar */
	size_t P = (size_t)tiny.n_positions;
	unsigned char *mask = malloc(P * P);
	for (size_t i = 0; i < P * P; i++)
		mask[i] = (i % P) <= (i / P);
	static const float masked_bias = -1e4f;
	for (int l = 0; l < tiny.n_layer; l++) {
		struct craft_t *m = &e[ne++];
		snprintf(m->name, sizeof(m->name), "transformer.h.%d.attn.bias", l);
		strcpy(m->dtype, "BOOL");
		m->ndim = 4;
		m->shape[0] = m->shape[1] = 1;
		m->shape[2] = m->shape[3] = (long long)P;
		m->data = mask;
		m->nbytes = P * P;
		m = &e[ne++];
		snprintf(m->name, sizeof(m->name), "h.%d.attn.masked_bias", l);
		strcpy(m->dtype, "F32");
		m->ndim = 0;
		m->data = &masked_bias;
		m->nbytes = 4;
	}
	struct craft_t *lm = &e[ne++];
	strcpy(lm->name, "lm_head.weight");
	strcpy(lm->dtype, "F32");
	lm->ndim = 2;
	lm->shape[0] = tiny.vocab_size;
	lm->shape[1] = tiny.n_embd;
	lm->data = p;
	lm->nbytes = (size_t)tiny.vocab_size * tiny.n_embd * 4;
	/* a reader must not assume sorted order: reverse the entries */
	for (int i = 0; i < ne / 2; i++) {
		struct craft_t t = e[i];
		e[i] = e[ne - 1 - i];
		e[ne - 1 - i] = t;
	}
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	CHECK(craft_write(path, e, ne) == 0, "write");
	CHECK(lspo_ckpt_load_params(dir, &tiny, q) == LSPO_OK, "prefix, mask buffers, tied lm_head");
	CHECK(memcmp(p, q, n * sizeof(float)) == 0, "loaded values must equal the written ones");
	free(mask);
	free(e);
	free(p);
	free(q);
}

int main(void)
{
	char *tmp = make_tmpdir("ckpt");
	test_nparams();
	test_init();
	test_round_trip(tmp);
	test_f16_exhaustive();
	test_half_checkpoint(tmp);
	test_hf_variants(tmp);
	if (!test_failures)
		remove_tmpdir(tmp);
	return test_finish("test_ckpt");
}
