/*
 * ckpt.c - checkpoints as HF transformers directories: config.json (the
 * family from model_type / architectures) and model.safetensors (or shards
 * listed in model.safetensors.index.json), tensors under HF names, read
 * into and written from the engine's parameter slab.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "io/atomic_file.h"
#include "engine/model.h"
#include "io/safetensors.h"

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* ---------------------------------------------------------------------- */
/* config.json                                                            */

static int read_int_field(const char *path, json_t *root, const char *field, int *out)
{
	json_t *v = json_object_get(root, field);
	if (!v)
		LSPO_FAIL(LSPO_EFORMAT, "%s: missing field '%s' (a positive integer)", path, field);
	if (!json_is_integer(v))
		LSPO_FAIL(LSPO_EFORMAT, "%s: field '%s' must be an integer", path, field);
	json_int_t x = json_integer_value(v);
	if (x <= 0 || x > INT_MAX)
		LSPO_FAIL(LSPO_EFORMAT, "%s: field '%s' must be a positive integer below 2^31, got %lld",
		          path, field, (long long)x);
	*out = (int)x;
	return LSPO_OK;
}

/* An optional field: absent or null keeps *out. */
static int opt_int_field(const char *path, json_t *root, const char *field, int *out)
{
	json_t *v = json_object_get(root, field);
	return v && !json_is_null(v) ? read_int_field(path, root, field, out) : LSPO_OK;
}

static int opt_real_field(const char *path, json_t *root, const char *field, double *out)
{
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v))
		return LSPO_OK;
	if (!json_is_number(v) || json_number_value(v) <= 0)
		LSPO_FAIL(LSPO_EFORMAT, "%s: field '%s' must be a positive number", path, field);
	*out = json_number_value(v);
	return LSPO_OK;
}

static int opt_bool_field(const char *path, json_t *root, const char *field, int *out)
{
	json_t *v = json_object_get(root, field);
	if (!v || json_is_null(v))
		return LSPO_OK;
	if (!json_is_boolean(v))
		LSPO_FAIL(LSPO_EFORMAT, "%s: field '%s' must be true or false", path, field);
	*out = json_is_true(v);
	return LSPO_OK;
}

/* The family from model_type, else from architectures[0]; configs with
 * neither are GPT-2's (llm.c and older lspo checkpoints). */
static int read_family(const char *path, json_t *root, enum lspo_family *f)
{
	static const struct { const char *arch; enum lspo_family f; } archs[] = {
		{ "GPT2LMHeadModel", LSPO_FAMILY_GPT2 }, { "LlamaForCausalLM", LSPO_FAMILY_LLAMA },
		{ "Qwen2ForCausalLM", LSPO_FAMILY_QWEN2 } };
	json_t *mt = json_object_get(root, "model_type"), *ar = json_object_get(root, "architectures");
	*f = LSPO_FAMILY_GPT2;
	if (mt) {
		if (!json_is_string(mt))
			LSPO_FAIL(LSPO_EFORMAT, "%s: field 'model_type' must be a string", path);
		for (int i = 0; i < LSPO_NFAMILIES; i++)
			if (strcmp(json_string_value(mt), lspo_family_name((enum lspo_family)i)) == 0) {
				*f = (enum lspo_family)i;
				return LSPO_OK;
			}
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'model_type': model family '%s' is not supported "
		          "(lspo trains gpt2, llama and qwen2)", path, json_string_value(mt));
	}
	json_t *a0 = json_is_array(ar) ? json_array_get(ar, 0) : NULL;
	if (!a0)
		return LSPO_OK;
	for (size_t i = 0; i < sizeof(archs) / sizeof(archs[0]); i++)
		if (json_is_string(a0) && strcmp(json_string_value(a0), archs[i].arch) == 0) {
			*f = archs[i].f;
			return LSPO_OK;
		}
	LSPO_FAIL(LSPO_EFORMAT, "%s: field 'architectures': architecture '%s' is not supported (lspo trains "
	          "GPT2LMHeadModel, LlamaForCausalLM and Qwen2ForCausalLM)", path,
	          json_is_string(a0) ? json_string_value(a0) : "(not a string)");
}

static int read_gpt2(const char *path, json_t *root, struct lspo_model_config *c)
{
	TRY(read_int_field(path, root, "vocab_size", &c->vocab_size));
	TRY(read_int_field(path, root, json_object_get(root, "n_positions") ? "n_positions" :
	                   json_object_get(root, "n_ctx") ? "n_ctx" : "n_positions", &c->n_positions));
	TRY(read_int_field(path, root, "n_embd", &c->n_embd));
	TRY(read_int_field(path, root, "n_layer", &c->n_layer));
	TRY(read_int_field(path, root, "n_head", &c->n_head));
	if (c->n_embd % c->n_head)
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'n_embd' (%d) must be divisible by field 'n_head' (%d)", path,
		          c->n_embd, c->n_head);
	double eps = 1e-5;
	TRY(opt_real_field(path, root, "layer_norm_epsilon", &eps));
	c->norm_eps = (float)eps;
	return LSPO_OK;
}

/* rope_scaling: null, or {"rope_type" (or "type"): "default" | "llama3", ...}. */
static int read_rope_scaling(const char *path, json_t *root, struct lspo_model_config *c)
{
	json_t *rs = json_object_get(root, "rope_scaling");
	if (!rs || json_is_null(rs))
		return LSPO_OK;
	json_t *type = json_object_get(rs, "rope_type");
	type = type ? type : json_object_get(rs, "type");
	if (!json_is_object(rs) || !json_is_string(type))
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'rope_scaling' must be null or an object with a 'rope_type'", path);
	const char *t = json_string_value(type);
	if (strcmp(t, "default") == 0)
		return LSPO_OK;
	if (strcmp(t, "llama3") != 0)
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'rope_scaling': rope_type '%s' is not supported (lspo "
		          "implements none, 'default' and 'llama3')", path, t);
	c->rope_type = LSPO_ROPE_LLAMA3;
	const struct { const char *name; double *out; } f[] = {
		{ "factor", &c->rope_factor }, { "low_freq_factor", &c->rope_low_freq_factor },
		{ "high_freq_factor", &c->rope_high_freq_factor } };
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		if (!json_object_get(rs, f[i].name))
			LSPO_FAIL(LSPO_EFORMAT, "%s: field 'rope_scaling.%s' is missing (llama3 scaling)", path, f[i].name);
		char name[64];
		snprintf(name, sizeof(name), "rope_scaling.%s", f[i].name);
		json_t *v = json_object_get(rs, f[i].name);
		if (!json_is_number(v) || json_number_value(v) <= 0)
			LSPO_FAIL(LSPO_EFORMAT, "%s: field '%s' must be a positive number", path, name);
		*f[i].out = json_number_value(v);
	}
	json_t *omp = json_object_get(rs, "original_max_position_embeddings");
	if (!json_is_integer(omp) || json_integer_value(omp) <= 0 || json_integer_value(omp) > INT_MAX)
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'rope_scaling.original_max_position_embeddings' must be a "
		          "positive integer", path);
	c->rope_original_max_positions = (int)json_integer_value(omp);
	return LSPO_OK;
}

static int read_llama(const char *path, json_t *root, struct lspo_model_config *c)
{
	json_t *act = json_object_get(root, "hidden_act");
	if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0))
		LSPO_FAIL(LSPO_EFORMAT, "%s: field 'hidden_act': only 'silu' is supported", path);
	TRY(read_int_field(path, root, "vocab_size", &c->vocab_size));
	TRY(read_int_field(path, root, "max_position_embeddings", &c->n_positions));
	TRY(read_int_field(path, root, "hidden_size", &c->n_embd));
	TRY(read_int_field(path, root, "num_hidden_layers", &c->n_layer));
	TRY(read_int_field(path, root, "num_attention_heads", &c->n_head));
	TRY(read_int_field(path, root, "intermediate_size", &c->n_inner));
	c->n_kv_head = c->n_head;
	TRY(opt_int_field(path, root, "num_key_value_heads", &c->n_kv_head));
	TRY(opt_int_field(path, root, "head_dim", &c->head_dim));
	double eps = 1e-6, theta = 10000;
	TRY(opt_real_field(path, root, "rms_norm_eps", &eps));
	TRY(opt_real_field(path, root, "rope_theta", &theta));
	c->norm_eps = (float)eps;
	c->rope_theta = theta;
	TRY(read_rope_scaling(path, root, c));
	TRY(opt_bool_field(path, root, "tie_word_embeddings", &c->tie_word_embeddings));
	if (c->family == LSPO_FAMILY_LLAMA) {
		TRY(opt_bool_field(path, root, "attention_bias", &c->attention_bias));
		TRY(opt_bool_field(path, root, "mlp_bias", &c->mlp_bias));
	}
	return LSPO_OK;
}

int lspo_ckpt_read_config(const char *dir, struct lspo_model_config *cfg)
{
	struct stat st;
	char *path = (stat(dir, &st) == 0 && S_ISREG(st.st_mode)) ? strdup(dir) : join(dir, "config.json");
	if (!path)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	json_error_t err;
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
	int rc = LSPO_OK;
	if (!root) {
		/* jansson reports an unopenable file as a line -1 error */
		if (err.line < 0) {
			lspo_error("%s: cannot read: %s", path, err.text);
			rc = LSPO_EIO;
		} else {
			lspo_error("%s: not valid JSON (line %d, column %d: %s)", path, err.line,
			           err.column, err.text);
			rc = LSPO_EFORMAT;
		}
		free(path);
		return rc;
	}
	struct lspo_model_config c = { 0 };
	if (!json_is_object(root)) {
		lspo_error("%s: not a JSON object", path);
		rc = LSPO_EFORMAT;
	}
	if (!rc)
		rc = read_family(path, root, &c.family);
	if (!rc)
		rc = c.family == LSPO_FAMILY_GPT2 ? read_gpt2(path, root, &c) : read_llama(path, root, &c);
	if (!rc) {
		lspo_log_level_push_quiet();
		int bad = lspo_model_config_check(&c);
		lspo_log_level_pop();
		if (bad) {   /* say it again, naming the file */
			lspo_error("%s: the configuration is not valid:", path);
			lspo_model_config_check(&c);
			rc = LSPO_EFORMAT;
		}
	}
	json_decref(root);
	free(path);
	if (!rc)
		*cfg = c;
	return rc;
}

static json_t *gpt2_config_json(const struct lspo_model_config *c)
{
	return json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f}",
	                 "architectures", "GPT2LMHeadModel", "model_type", "gpt2",
	                 "vocab_size", c->vocab_size, "n_positions", c->n_positions,
	                 "n_ctx", c->n_positions, "n_embd", c->n_embd,
	                 "n_layer", c->n_layer, "n_head", c->n_head,
	                 "activation_function", "gelu_new", "layer_norm_epsilon", (double)c->norm_eps);
}

static json_t *llama_config_json(const struct lspo_model_config *c)
{
	int qwen = c->family == LSPO_FAMILY_QWEN2;
	json_t *root = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:s, s:s}",
	                         "architectures", qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM",
	                         "model_type", lspo_family_name(c->family), "vocab_size", c->vocab_size,
	                         "max_position_embeddings", c->n_positions, "hidden_size", c->n_embd,
	                         "intermediate_size", c->n_inner, "num_hidden_layers", c->n_layer,
	                         "num_attention_heads", c->n_head, "num_key_value_heads", c->n_kv_head,
	                         "head_dim", c->head_dim, "rms_norm_eps", (double)c->norm_eps,
	                         "rope_theta", c->rope_theta, "tie_word_embeddings", c->tie_word_embeddings,
	                         "hidden_act", "silu", "torch_dtype", "float32");
	if (!root)
		return NULL;
	json_t *rs = c->rope_type == LSPO_ROPE_LLAMA3 ?
		json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor", c->rope_factor,
		          "low_freq_factor", c->rope_low_freq_factor, "high_freq_factor", c->rope_high_freq_factor,
		          "original_max_position_embeddings", c->rope_original_max_positions) : json_null();
	json_object_set_new(root, "rope_scaling", rs);
	if (!qwen) {
		json_object_set_new(root, "attention_bias", json_boolean(c->attention_bias));
		json_object_set_new(root, "mlp_bias", json_boolean(c->mlp_bias));
	}
	return root;
}

static int write_config(const char *path, const struct lspo_model_config *c)
{
	json_t *root = c->family == LSPO_FAMILY_GPT2 ? gpt2_config_json(c) : llama_config_json(c);
	char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9)) : NULL;
	json_decref(root);
	if (!text)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	struct atomic_file af;
	int rc = atomic_open(path, &af);
	if (!rc) {
		rc = atomic_write(&af, text, strlen(text));
		if (!rc)
			rc = atomic_write(&af, "\n", 1);
		if (rc)
			atomic_abort(&af);
		else
			rc = atomic_commit(&af);
	}
	free(text);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* model.safetensors                                                      */

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", dir);
	int rc = LSPO_OK;
	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s != '\0')
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, 0777) != 0 && errno != EEXIST) {
			lspo_error("%s: cannot create directory %s: %s", dir, p, strerror(errno));
			rc = LSPO_EIO;
			break;
		}
		*s = c;
		if (c == '\0')
			break;
	}
	struct stat st;
	if (!rc && (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))) {
		lspo_error("%s: not a directory", dir);
		rc = LSPO_EIO;
	}
	free(p);
	return rc;
}

int lspo_ckpt_save(const char *dir, const struct lspo_model_config *cfg, const float *params)
{
	struct lspo_model_config c;
	struct model_layout lay;
	int rc = model_layout_for(cfg, &c, &lay);
	if (rc)
		return rc;
	struct st_out_tensor *ts = calloc((size_t)lay.ntensors, sizeof(*ts));
	char *st_path = join(dir, "model.safetensors"), *cfg_path = join(dir, "config.json");
	if (!ts || !st_path || !cfg_path) {
		lspo_error("%s: out of memory", dir);
		rc = LSPO_ENOMEM;
		goto out;
	}
	if (!params) {
		lspo_error("lspo_ckpt_save(%s): params is NULL", dir);
		rc = LSPO_EINVAL;
		goto out;
	}
	/* HF stores 1-D tensors (biases, norms) with shape [n]. */
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		ts[i].name = t->name;
		ts[i].data = params + t->offset;
		ts[i].ndim = t->hf_ndim;
		ts[i].shape[0] = t->hf_ndim == 2 ? t->rows : t->cols;
		ts[i].shape[1] = t->cols;
	}
	rc = mkdir_p(dir);
	if (!rc)
		rc = st_write(st_path, ts, (size_t)lay.ntensors);
	if (!rc)
		rc = write_config(cfg_path, &c);
out:
	free(ts);
	free(st_path);
	free(cfg_path);
	layout_free(&lay);
	return rc;
}

/* How a family names its tensors in HF checkpoints. */
struct hf_names {
	const char *prefix;          /* stripped when present ("transformer.") */
	const char *layer;           /* "h." or "model.layers." */
	const char *buffers[3];      /* per-layer buffers HF may save, ignored */
};

static const struct hf_names *hf_names_of(enum lspo_family f)
{
	static const struct hf_names gpt2 = { "transformer.", "h.", { "attn.bias", "attn.masked_bias", NULL } };
	static const struct hf_names llama = { NULL, "model.layers.", { "self_attn.rotary_emb.inv_freq", NULL, NULL } };
	return f == LSPO_FAMILY_GPT2 ? &gpt2 : &llama;
}

/* "<layer prefix><n>.<rest>": the layer number, or -1; *rest points after the dot. */
static long layer_of(const struct hf_names *hf, const char *name, const char **rest)
{
	size_t n = strlen(hf->layer);
	if (strncmp(name, hf->layer, n) != 0 || name[n] < '0' || name[n] > '9')
		return -1;
	char *end;
	errno = 0;
	long l = strtol(name + n, &end, 10);
	if (errno || *end != '.')
		return -1;
	*rest = end + 1;
	return l;
}

static const char *strip_prefix(const struct hf_names *hf, const char *name)
{
	size_t n = hf->prefix ? strlen(hf->prefix) : 0;
	return n && strncmp(name, hf->prefix, n) == 0 ? name + n : name;
}

static int is_buffer(const struct hf_names *hf, const char *rest)
{
	for (int i = 0; i < 3 && hf->buffers[i]; i++)
		if (strcmp(rest, hf->buffers[i]) == 0)
			return 1;
	return 0;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
	int len = snprintf(buf, size, "[");
	for (int i = 0; i < ndim && len < (int)size; i++)
		len += snprintf(buf + len, size - (size_t)len, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (len < (int)size)
		snprintf(buf + len, size - (size_t)len, "]");
}

/* GPT-2: the config field a shape mismatch of layout tensor i points at, or
 * NULL when the file's shape is not that of GPT-2 with another value of a
 * field (e.g. a transposed weight). */
static const char *mismatch_field(const struct lspo_model_config *cfg, const struct model_layout *lay, int i,
                                  const struct st_tensor *t, int want_ndim)
{
	const struct model_tensor *g = &lay->tensors[i];
	int C = cfg->n_embd;
	if (cfg->family != LSPO_FAMILY_GPT2 || t->ndim != want_ndim)
		return NULL;
	if (i < 2)   /* wte (V, C), wpe (P, C) */
		return t->shape[1] != C ? "n_embd" : i == 0 ? "vocab_size" : "n_positions";
	int64_t mc = g->cols / C, last = t->shape[want_ndim - 1];
	if (last % mc)
		return NULL;
	int64_t Cp = last / mc;   /* the n_embd the file's tensor was made for */
	return want_ndim == 1 || t->shape[0] == (int64_t)(g->rows / C) * Cp ? "n_embd" : NULL;
}

static int check_tensor(const char *path, const struct model_layout *lay, int i,
                        const struct lspo_model_config *cfg, const struct st_tensor *t)
{
	const struct model_tensor *g = &lay->tensors[i];
	int64_t want[2];
	int nd = g->hf_ndim;
	if (nd == 2) {
		want[0] = g->rows;
		want[1] = g->cols;
	} else {
		want[0] = g->cols;
	}
	int ok = t->ndim == nd;
	for (int d = 0; ok && d < nd; d++)
		ok = t->shape[d] == want[d];
	if (!ok) {
		char have[128], exp[64];
		shape_str(have, sizeof(have), t->ndim, t->shape);
		shape_str(exp, sizeof(exp), nd, want);
		const char *field = mismatch_field(cfg, lay, i, t, nd);
		if (field) {
			int v = !strcmp(field, "vocab_size") ? cfg->vocab_size :
			        !strcmp(field, "n_positions") ? cfg->n_positions : cfg->n_embd;
			LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' has shape %s, expected %s: the checkpoint "
			          "disagrees with config field '%s' = %d", path, t->name, have, exp, field, v);
		}
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", path, t->name, have, exp);
	}
	if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': dtype %s is not supported (expected F32, BF16 "
		          "or F16)", path, t->name, st_dtype_name(t->dtype));
	return LSPO_OK;
}

/* What a checkpoint file holds, matched against the layout. */
struct ckpt_files {
	struct st_file **f;
	int n;
	int **map;        /* per file and tensor: layout index, -1 ignored buffer, -2 tied head */
	int *seen;        /* per layout tensor: file * 2^20 + tensor + 1, or 0 */
	int head_file, head_tensor;   /* a tied lm_head.weight to compare, or -1 */
};

/* Maps every tensor of file `fi` to a layout index; rejects unknown and
 * duplicate tensors. */
static int match_tensors(struct ckpt_files *cf, int fi, const struct model_layout *lay,
                         const struct lspo_model_config *cfg)
{
	const struct st_file *f = cf->f[fi];
	const struct hf_names *hf = hf_names_of(cfg->family);
	const char *what = lspo_family_name(cfg->family);
	for (size_t k = 0; k < f->ntensors; k++) {
		const struct st_tensor *t = &f->tensors[k];
		const char *name = strip_prefix(hf, t->name), *rest = NULL;
		long layer = layer_of(hf, name, &rest);
		int idx = layout_find(lay, name);
		if (idx >= 0) {
			if (cf->seen[idx]) {
				int pf = (cf->seen[idx] - 1) >> 20, pk = (cf->seen[idx] - 1) & 0xfffff;
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' appears twice (as '%s' and '%s')",
				          f->path, name, cf->f[pf]->tensors[pk].name, t->name);
			}
			cf->seen[idx] = (fi << 20) + (int)k + 1;
			cf->map[fi][k] = idx;
			TRY(check_tensor(f->path, lay, idx, cfg, t));
			continue;
		}
		if (layer >= 0 && is_buffer(hf, rest)) {
			if (layer >= cfg->n_layer)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' belongs to layer %ld, but config field "
				          "'n_layer' = %d", f->path, t->name, layer, cfg->n_layer);
			cf->map[fi][k] = -1;
			continue;
		}
		if (!strcmp(t->name, "lm_head.weight") && cfg->tie_word_embeddings) {
			if (cf->head_file >= 0)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor 'lm_head.weight' appears twice", f->path);
			cf->head_file = fi;
			cf->head_tensor = (int)k;
			cf->map[fi][k] = -2;
			continue;
		}
		if (layer >= cfg->n_layer) {
			/* a real layer tensor name, for a layer the config does not have? */
			char probe[MODEL_NAME_LEN + 32];
			snprintf(probe, sizeof(probe), "%s0.%s", hf->layer, rest);
			if (layout_find(lay, probe) >= 0)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' belongs to layer %ld, but config field "
				          "'n_layer' = %d", f->path, t->name, layer, cfg->n_layer);
		}
		LSPO_FAIL(LSPO_EFORMAT, "%s: unknown tensor '%s' (not a %s parameter with this config)", f->path,
		          t->name, what);
	}
	return LSPO_OK;
}

/* A tied model may still store its head: it must equal the embedding. */
static int check_lm_head(const struct st_file *f, const struct st_tensor *t,
                         const struct model_layout *lay, const float *wte)
{
	const struct model_tensor *g = &lay->tensors[0];
	if (t->ndim != 2 || t->shape[0] != g->rows || t->shape[1] != g->cols) {
		char have[128];
		shape_str(have, sizeof(have), t->ndim, t->shape);
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' has shape %s, expected [%d, %d] (tied to %s)",
		          f->path, t->name, have, g->rows, g->cols, g->name);
	}
	size_t n = (size_t)g->rows * g->cols;
	float *tmp = malloc(n * sizeof(float));
	if (!tmp)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory comparing lm_head.weight", f->path);
	int rc = st_read_f32(f, t, tmp);
	if (!rc && memcmp(tmp, wte, n * sizeof(float)) != 0) {
		size_t i = 0;
		while (i < n && memcmp(&tmp[i], &wte[i], sizeof(float)) == 0)
			i++;
		lspo_error("%s: tensor '%s' differs from %s (first at element %zu: %g vs %g); "
		           "the config ties the output projection to the embedding", f->path, t->name, g->name, i,
		           (double)tmp[i], (double)wte[i]);
		rc = LSPO_EFORMAT;
	}
	free(tmp);
	return rc;
}

/* The shard files of DIR: model.safetensors, or the files named by the
 * weight_map of model.safetensors.index.json (each once, in order). */
static int list_shards(const char *dir, char ***names, int *n)
{
	*names = NULL;
	*n = 0;
	char *single = join(dir, "model.safetensors"), *index = join(dir, "model.safetensors.index.json");
	struct stat st;
	int rc = LSPO_OK;
	if (!single || !index) {
		rc = LSPO_ENOMEM;
	} else if (stat(single, &st) == 0 || stat(index, &st) != 0) {
		*names = malloc(sizeof(char *));
		if (*names) {
			(*names)[(*n)++] = single;
			single = NULL;
		} else {
			rc = LSPO_ENOMEM;
		}
	} else {
		json_error_t err;
		json_t *root = json_load_file(index, 0, &err), *wm = root ? json_object_get(root, "weight_map") : NULL;
		if (!json_is_object(wm)) {
			lspo_error("%s: %s", index, root ? "field 'weight_map' is missing or not an object" : err.text);
			rc = LSPO_EFORMAT;
		} else {
			*names = calloc(json_object_size(wm) + 1, sizeof(char *));
			const char *key;
			json_t *v;
			json_object_foreach(wm, key, v) {
				if (rc || !*names)
					break;
				if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
					lspo_error("%s: field 'weight_map.%s' must name a file of the directory", index, key);
					rc = LSPO_EFORMAT;
					break;
				}
				int dup = 0;
				for (int i = 0; i < *n && !dup; i++)
					dup = strcmp(strrchr((*names)[i], '/') + 1, json_string_value(v)) == 0;
				if (!dup && !((*names)[(*n)++] = join(dir, json_string_value(v))))
					rc = LSPO_ENOMEM;
			}
			if (!*names)
				rc = LSPO_ENOMEM;
		}
		json_decref(root);
	}
	if (rc == LSPO_ENOMEM)
		lspo_error("%s: out of memory", dir);
	free(single);
	free(index);
	return rc;
}

static void files_free(struct ckpt_files *cf)
{
	for (int i = 0; i < cf->n; i++) {
		st_close(cf->f[i]);
		free(cf->map[i]);
	}
	free(cf->f);
	free(cf->map);
	free(cf->seen);
}

static int files_open(const char *dir, const struct model_layout *lay, const struct lspo_model_config *cfg,
                      struct ckpt_files *cf)
{
	char **names;
	int n;
	memset(cf, 0, sizeof(*cf));
	cf->head_file = cf->head_tensor = -1;
	TRY(list_shards(dir, &names, &n));
	int rc = LSPO_OK;
	cf->f = calloc((size_t)n + 1, sizeof(*cf->f));
	cf->map = calloc((size_t)n + 1, sizeof(*cf->map));
	cf->seen = calloc((size_t)lay->ntensors, sizeof(*cf->seen));
	if (!cf->f || !cf->map || !cf->seen || n >= 2048) {
		lspo_error("%s: out of memory (or more than 2047 shards)", dir);
		rc = LSPO_ENOMEM;
	}
	for (int i = 0; i < n && !rc; i++) {
		rc = st_open(names[i], &cf->f[i]);
		if (!rc) {
			cf->n++;
			cf->map[i] = malloc((cf->f[i]->ntensors + 1) * sizeof(int));
			if (!cf->map[i] || cf->f[i]->ntensors >= (1u << 20)) {
				lspo_error("%s: out of memory", names[i]);
				rc = LSPO_ENOMEM;
			}
		}
		if (!rc)
			rc = match_tensors(cf, i, lay, cfg);
	}
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int lspo_ckpt_load_params(const char *dir, const struct lspo_model_config *cfg, float *params)
{
	struct lspo_model_config c;
	struct model_layout lay;
	struct ckpt_files cf;
	int rc = model_layout_for(cfg, &c, &lay);
	if (rc)
		return rc;
	if (!params) {
		layout_free(&lay);
		LSPO_FAIL(LSPO_EINVAL, "lspo_ckpt_load_params(%s): params is NULL", dir);
	}
	rc = files_open(dir, &lay, &c, &cf);
	/* highest block present, to tell a short checkpoint from a missing tensor */
	int top = -1;
	for (int i = 0; !rc && i < lay.ntensors; i++)
		if (cf.seen[i] && lay.tensors[i].layer < c.n_layer && lay.tensors[i].layer > top)
			top = lay.tensors[i].layer;
	for (int i = 0; !rc && i < lay.ntensors; i++)
		if (!cf.seen[i]) {
			const struct model_tensor *g = &lay.tensors[i];
			const char *path = cf.n == 1 ? cf.f[0]->path : dir;
			if (g->layer > top && g->layer < c.n_layer)
				lspo_error("%s: missing tensor '%s': config field 'n_layer' = %d but the "
				           "checkpoint has %d layer(s)", path, g->name, c.n_layer, top + 1);
			else
				lspo_error("%s: missing tensor '%s'", path, g->name);
			rc = LSPO_EFORMAT;
		}
	for (int fi = 0; fi < cf.n && !rc; fi++)
		for (size_t k = 0; k < cf.f[fi]->ntensors && !rc; k++)
			if (cf.map[fi][k] >= 0)
				rc = st_read_f32(cf.f[fi], &cf.f[fi]->tensors[k], params + lay.tensors[cf.map[fi][k]].offset);
	if (!rc && cf.head_file >= 0)
		rc = check_lm_head(cf.f[cf.head_file], &cf.f[cf.head_file]->tensors[cf.head_tensor], &lay, params);
	files_free(&cf);
	layout_free(&lay);
	return rc;
}
