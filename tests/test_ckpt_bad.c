/*
 * test_ckpt_bad.c - malformed checkpoints: one case per kind of damage.
 * Each case asserts the status code, that the call returned (no crash; ASan
 * builds also catch out-of-bounds reads), and that the logged message names
 * the file and the tensor or field at fault.
 */
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "engine/model.h"
#include "models/gpt2.h"
#include "st_craft.h"

static const struct lspo_model_config tiny = { .vocab_size = 61, .n_positions = 16, .n_embd = 32, .n_layer = 3, .n_head = 4 };
static const char *tmp;
static float *params;   /* (nparams(tiny)) */


/* A case directory DIR/<name>/ holding tiny's config.json. */
static const char *case_dir(const char *name)
{
	static char dir[4200];
	char path[4300];
	snprintf(dir, sizeof(dir), "%s/%s", tmp, name);
	mkdir(dir, 0777);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	write_text(path, "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3, "
	                 "\"n_head\": 4}");
	return dir;
}

static const char *model_path(const char *dir)
{
	static char path[4300];
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	return path;
}

static int load(const char *dir, const struct lspo_model_config *cfg)
{
	float *q = malloc(lspo_model_nparams(cfg) * sizeof(float));
	int rc = lspo_ckpt_load_params(dir, cfg, q);
	free(q);
	return rc;
}

/* A one-file case with a hand-written header and `nbytes` zero data bytes. */
static const char *raw_case(const char *name, const char *header, size_t nbytes)
{
	const char *dir = case_dir(name);
	void *zeros = calloc(1, nbytes + 1);
	craft_raw(model_path(dir), strlen(header), header, strlen(header), zeros, nbytes);
	free(zeros);
	return dir;
}

static void file_level_cases(void)
{
	const char *dir;
	/* truncated: a good file cut short */
	dir = case_dir("truncated");
	lspo_ckpt_save(dir, &tiny, params);
	struct stat st;
	stat(model_path(dir), &st);
	CHECK(truncate(model_path(dir), st.st_size - 100) == 0, "truncate");
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "truncated/model.safetensors", "ln_f.bias", "data_offsets",
	       "truncated");
	CHECK(truncate(model_path(dir), 40) == 0, "truncate into the header");
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "truncated/model.safetensors", "header length",
	       "beyond the end");
	CHECK(truncate(model_path(dir), 5) == 0, "truncate into the length field");
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "truncated/model.safetensors", "header length");

	/* bad header length: absurd, zero */
	dir = case_dir("hlen");
	craft_raw(model_path(dir), (uint64_t)1 << 62, "{}", 2, NULL, 0);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "hlen/model.safetensors", "header length");
	craft_raw(model_path(dir), 0, "{}      ", 8, NULL, 0);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "hlen/model.safetensors", "header length", "zero");

	/* a header length beyond the limit, inside a (sparse) 200 MiB file */
	craft_raw(model_path(dir), (uint64_t)150 << 20, "{}", 2, NULL, 0);
	CHECK(truncate(model_path(dir), (off_t)200 << 20) == 0, "extend");
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "hlen/model.safetensors", "header length", "too large");
	unlink(model_path(dir));

	/* missing file */
	dir = case_dir("nofile");
	EXPECT(LSPO_EIO, load(dir, &tiny), "nofile/model.safetensors", "cannot open");

	/* bad JSON, duplicate keys, not an object */
	dir = raw_case("badjson", "{\"wte.weight\": {\"dtype\": \"F32\", ", 0);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "badjson/model.safetensors", "not valid JSON");
	dir = raw_case("dupkey", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}, "
	                         "\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "dupkey/model.safetensors", "duplicate");
	dir = raw_case("array", "[1, 2, 3]", 0);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "array/model.safetensors", "not a JSON object");
	dir = raw_case("badmeta", "{\"__metadata__\": {\"format\": 1}}", 0);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "badmeta/model.safetensors", "__metadata__", "format");
}

static void header_field_cases(void)
{
	const char *dir;
	dir = raw_case("range", "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [61, 32], "
	                        "\"data_offsets\": [0, 7808]}}", 100);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "range/model.safetensors", "wte.weight", "data_offsets",
	       "out of range");
	dir = raw_case("size", "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], "
	                       "\"data_offsets\": [0, 8]}}", 8);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "size/model.safetensors", "wte.weight", "data_offsets",
	       "needs 16");
	dir = raw_case("overlap", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}, "
	                          "\"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [8, 24]}}", 24);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "overlap/model.safetensors", "'b'", "'a'", "overlap");
	dir = raw_case("reversed", "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}", 8);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "reversed/model.safetensors", "'a'", "begin > end");
	dir = raw_case("negoff", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 8);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "negoff/model.safetensors", "'a'", "data_offsets");
	dir = raw_case("oneoff", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}", 8);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "oneoff/model.safetensors", "'a'", "data_offsets");
	dir = raw_case("unkdtype", "{\"a\": {\"dtype\": \"Q4_K\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "unkdtype/model.safetensors", "'a'", "dtype", "Q4_K");
	dir = raw_case("nodtype", "{\"a\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "nodtype/model.safetensors", "'a'", "missing field 'dtype'");
	dir = raw_case("noshape", "{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "noshape/model.safetensors", "'a'", "missing field 'shape'");
	dir = raw_case("badshape", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "badshape/model.safetensors", "'a'", "shape[0]");
	dir = raw_case("nooffs", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "nooffs/model.safetensors", "'a'",
	       "missing field 'data_offsets'");
	/* a shape whose byte count overflows 64 bits */
	dir = raw_case("huge", "{\"a\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], "
	                       "\"data_offsets\": [0, 4]}}", 4);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "huge/model.safetensors", "'a'", "needs more than");
}

/* A model file built from tiny's layout; `edit` changes the entries. */
static const char *model_case(const char *name, void (*edit)(struct craft_t *e, int *n))
{
	const char *dir = case_dir(name);
	struct craft_t *e = NULL;
	int n = craft_model(&tiny, params, 4, &e);
	edit(e, &n);
	craft_write(model_path(dir), e, n);
	free(e);
	return dir;
}

static void edit_dtype(struct craft_t *e, int *n)
{
	strcpy(e[craft_find(e, *n, "wte.weight")].dtype, "I32");
}

static void edit_missing(struct craft_t *e, int *n)
{
	int k = craft_find(e, *n, "h.1.ln_2.bias");
	memmove(&e[k], &e[k + 1], (size_t)(*n - k - 1) * sizeof(*e));
	(*n)--;
}

static void edit_extra(struct craft_t *e, int *n)
{
	e[*n] = e[0];
	strcpy(e[*n].name, "transformer.foo.weight");
	(*n)++;
}

static void edit_shape(struct craft_t *e, int *n)
{
	struct craft_t *t = &e[craft_find(e, *n, "h.0.mlp.c_fc.weight")];
	long long r = t->shape[0];   /* (out, in) instead of Conv1D (in, out): same bytes */
	t->shape[0] = t->shape[1];
	t->shape[1] = r;
}

static float *lm_copy;
static void edit_lm_head(struct craft_t *e, int *n)
{
	size_t nw = (size_t)tiny.vocab_size * tiny.n_embd;
	lm_copy = malloc(nw * sizeof(float));
	memcpy(lm_copy, params, nw * sizeof(float));
	lm_copy[123] += 1.0f;
	e[*n] = e[0];
	strcpy(e[*n].name, "lm_head.weight");
	e[*n].data = lm_copy;
	(*n)++;
}

static void edit_duplicate(struct craft_t *e, int *n)
{
	e[*n] = e[0];
	strcpy(e[*n].name, "transformer.wte.weight");
	(*n)++;
}

static unsigned char mask_byte;
static void edit_mask_beyond(struct craft_t *e, int *n)
{
	struct craft_t *m = &e[(*n)++];
	memset(m, 0, sizeof(*m));
	strcpy(m->name, "h.7.attn.bias");
	strcpy(m->dtype, "BOOL");
	m->ndim = 1;
	m->shape[0] = 1;
	m->data = &mask_byte;
	m->nbytes = 1;
}

static void edit_none(struct craft_t *e, int *n)
{
	(void)e;
	(void)n;
}

static void tensor_cases(void)
{
	const char *dir;
	dir = model_case("dtype", edit_dtype);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "dtype/model.safetensors", "wte.weight", "I32");
	dir = model_case("missing", edit_missing);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "missing/model.safetensors", "missing tensor",
	       "h.1.ln_2.bias");
	dir = model_case("extra", edit_extra);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "extra/model.safetensors", "unknown tensor",
	       "transformer.foo.weight");
	dir = model_case("shape", edit_shape);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "shape/model.safetensors", "h.0.mlp.c_fc.weight",
	       "[128, 32]", "expected [32, 128]");
	dir = model_case("lmhead", edit_lm_head);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "lmhead/model.safetensors", "lm_head.weight",
	       "element 123");
	free(lm_copy);
	dir = model_case("duplicate", edit_duplicate);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "duplicate/model.safetensors", "wte.weight", "twice");
	dir = model_case("maskbeyond", edit_mask_beyond);
	EXPECT(LSPO_EFORMAT, load(dir, &tiny), "maskbeyond/model.safetensors", "h.7.attn.bias", "n_layer");

	/* a good file, read with configs that disagree with it */
	dir = model_case("disagree", edit_none);
	struct lspo_model_config c = tiny;
	c.n_layer = 2;
	EXPECT(LSPO_EFORMAT, load(dir, &c), "disagree/model.safetensors", "h.2.", "'n_layer' = 2");
	c.n_layer = 4;
	EXPECT(LSPO_EFORMAT, load(dir, &c), "disagree/model.safetensors", "h.3.", "'n_layer' = 4",
	       "3 layer(s)");
	c = tiny;
	c.vocab_size = 60;
	EXPECT(LSPO_EFORMAT, load(dir, &c), "disagree/model.safetensors", "wte.weight", "vocab_size");
	c = tiny;
	c.n_positions = 32;
	EXPECT(LSPO_EFORMAT, load(dir, &c), "disagree/model.safetensors", "wpe.weight", "n_positions");
	c = tiny;
	c.n_embd = 16;
	EXPECT(LSPO_EFORMAT, load(dir, &c), "disagree/model.safetensors", "wte.weight", "n_embd");
	EXPECT(LSPO_EINVAL, lspo_ckpt_load_params(dir, &tiny, NULL), "params is NULL");
	c = tiny;
	c.n_head = 5;
	EXPECT(LSPO_EINVAL, load(dir, &tiny) == LSPO_OK ? lspo_ckpt_load_params(dir, &c, params) : -1,
	       "n_head");
}

static void config_cases(void)
{
	char dir[4200], path[4300];
	snprintf(dir, sizeof(dir), "%s/cfg", tmp);
	mkdir(dir, 0777);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	struct lspo_model_config c;
	EXPECT(LSPO_EIO, lspo_ckpt_read_config(dir, &c), "cfg/config.json");
	static const struct { const char *json, *field; int status; } cases[] = {
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3,", "JSON", LSPO_EFORMAT },
		{ "[61, 16, 32, 3, 4]", "not a JSON object", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3}", "'n_head'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_embd\": 32, \"n_layer\": 3, \"n_head\": 4}", "'n_positions'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": \"32\", \"n_layer\": 3, \"n_head\": 4}", "'n_embd'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32.0, \"n_layer\": 3, \"n_head\": 4}", "'n_embd'", LSPO_EFORMAT },
		{ "{\"vocab_size\": -61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3, \"n_head\": 4}", "'vocab_size'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 1099511627776, \"n_head\": 4}", "'n_layer'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_ctx\": null, \"n_embd\": 32, \"n_layer\": 3, \"n_head\": 4}", "'n_ctx'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3, \"n_head\": 5}", "'n_head'", LSPO_EFORMAT },
		{ "{\"vocab_size\": 61, \"vocab_size\": 62, \"n_positions\": 16, \"n_embd\": 32, \"n_layer\": 3, \"n_head\": 4}", "duplicate", LSPO_EFORMAT },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_text(path, cases[i].json);
		c.vocab_size = -7;
		EXPECT(cases[i].status, lspo_ckpt_read_config(dir, &c), "cfg/config.json", cases[i].field);
		CHECK(c.vocab_size == -7, "case %zu: cfg must be untouched on error", i);
	}
}

static void save_cases(void)
{
	char file[4200], dir[4300];
	snprintf(file, sizeof(file), "%s/plainfile", tmp);
	write_text(file, "x");
	snprintf(dir, sizeof(dir), "%s/sub", file);
	EXPECT(LSPO_EIO, lspo_ckpt_save(dir, &tiny, params), "plainfile");
	EXPECT(LSPO_EIO, lspo_ckpt_save(file, &tiny, params), "plainfile", "not a directory");
	struct lspo_model_config c = tiny;
	c.n_embd = 0;
	EXPECT(LSPO_EINVAL, lspo_ckpt_save(tmp, &c, params), "n_embd");
	EXPECT(LSPO_EINVAL, lspo_ckpt_save(tmp, &tiny, NULL), "params is NULL");
}

int main(void)
{
	tmp = make_tmpdir("ckptbad");
	params = malloc(lspo_model_nparams(&tiny) * sizeof(float));
	lspo_model_init_params(&tiny, 5, params);
	file_level_cases();
	header_field_cases();
	tensor_cases();
	config_cases();
	save_cases();
	free(params);
	if (!test_failures)
		remove_tmpdir(tmp);
	return test_finish("test_ckpt_bad");
}
