/*
 * ckpt.c - GPT-2 checkpoints as HF transformers directories (config.json +
 * model.safetensors) and the GPT-2 initialisation of the parameter slab.
 */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "atomic_file.h"
#include "gpt2_params.h"
#include "safetensors.h"

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, name);
	return p;
}

/* ---------------------------------------------------------------------- */
/* sizes and initialisation                                               */

size_t lspo_gpt2_nparams(const struct lspo_gpt2_config *c)
{
	if (!c || c->vocab_size <= 0 || c->n_positions <= 0 || c->n_embd <= 0 || c->n_layer <= 0 ||
	    c->n_head <= 0 || c->n_embd % c->n_head)
		return 0;
	/* (V + P) C + L (12 C^2 + 13 C) + 2 C, with overflow checks */
	size_t C = (size_t)c->n_embd, emb, layer, all;
	if (__builtin_mul_overflow((size_t)c->vocab_size + (size_t)c->n_positions, C, &emb) ||
	    __builtin_mul_overflow(12 * C + 13, C, &layer) ||
	    __builtin_mul_overflow(layer, (size_t)c->n_layer, &layer) ||
	    __builtin_add_overflow(emb, layer, &all) || __builtin_add_overflow(all, 2 * C, &all))
		return 0;
	return all;
}

/* gpt2_layout_build, refusing configs whose slab size overflows size_t. */
static int layout_for(const struct lspo_gpt2_config *cfg, struct gpt2_layout *lay)
{
	memset(lay, 0, sizeof(*lay));
	int rc = lspo_gpt2_config_check(cfg);
	if (rc)
		return rc;
	if (lspo_gpt2_nparams(cfg) == 0)
		LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: %d layers of n_embd %d with vocab_size %d is too "
		          "large to address", cfg->n_layer, cfg->n_embd, cfg->vocab_size);
	return gpt2_layout_build(cfg, lay);
}

static inline uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* N(0, std) for elements [0, n) of the stream `key`: element 2k and 2k+1
 * are the Box-Muller pair of counters 2k, 2k+1, so any element depends only
 * on (key, index). */
static void fill_normal(float *x, size_t n, uint64_t key, double std)
{
	const double two_pi = 6.283185307179586476925286766559;
	for (size_t i = 0; i < n; i += 2) {
		uint64_t a = splitmix64(key ^ splitmix64(i));
		uint64_t b = splitmix64(key ^ splitmix64(i + 1));
		double u1 = ((double)(a >> 11) + 1.0) * 0x1p-53;   /* (0, 1] */
		double u2 = (double)(b >> 11) * 0x1p-53;           /* [0, 1) */
		double r = std * sqrt(-2.0 * log(u1));
		x[i] = (float)(r * cos(two_pi * u2));
		if (i + 1 < n)
			x[i + 1] = (float)(r * sin(two_pi * u2));
	}
}

static void fill_const(float *x, size_t n, float v)
{
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}

int lspo_gpt2_init_params(const struct lspo_gpt2_config *cfg, uint64_t seed, float *params)
{
	struct gpt2_layout lay;
	int rc = layout_for(cfg, &lay);
	if (rc)
		return rc;
	if (!params) {
		gpt2_layout_free(&lay);
		LSPO_FAIL(LSPO_EINVAL, "lspo_gpt2_init_params: params is NULL");
	}
	double std = 0.02, resid_std = 0.02 / sqrt(2.0 * cfg->n_layer);
	for (int i = 0; i < lay.ntensors; i++) {
		const struct gpt2_tensor *t = &lay.tensors[i];
		float *x = params + t->offset;
		size_t n = (size_t)t->rows * t->cols;
		uint64_t key = splitmix64(seed) ^ splitmix64(0x6c73706f00000000ull + (uint64_t)i);
		if (t->layer < 0) {
			if (i < 2)                          /* wte, wpe */
				fill_normal(x, n, key, std);
			else                                /* ln_f weight, bias */
				fill_const(x, n, i == lay.ntensors - 2 ? 1.0f : 0.0f);
			continue;
		}
		switch (t->kind) {
		case GPT2_QKV_W: case GPT2_FC_W: fill_normal(x, n, key, std); break;
		case GPT2_ATTPROJ_W: case GPT2_FCPROJ_W: fill_normal(x, n, key, resid_std); break;
		case GPT2_LN1_W: case GPT2_LN2_W: fill_const(x, n, 1.0f); break;
		default: fill_const(x, n, 0.0f); break;   /* biases */
		}
	}
	gpt2_layout_free(&lay);
	return LSPO_OK;
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

int lspo_ckpt_read_config(const char *dir, struct lspo_gpt2_config *cfg)
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
	struct lspo_gpt2_config c = { 0 };
	if (!json_is_object(root)) {
		lspo_error("%s: not a JSON object", path);
		rc = LSPO_EFORMAT;
	}
	if (!rc)
		rc = read_int_field(path, root, "vocab_size", &c.vocab_size);
	if (!rc)
		rc = read_int_field(path, root, json_object_get(root, "n_positions") ? "n_positions" :
		                    json_object_get(root, "n_ctx") ? "n_ctx" : "n_positions",
		                    &c.n_positions);
	if (!rc)
		rc = read_int_field(path, root, "n_embd", &c.n_embd);
	if (!rc)
		rc = read_int_field(path, root, "n_layer", &c.n_layer);
	if (!rc)
		rc = read_int_field(path, root, "n_head", &c.n_head);
	if (!rc && c.n_embd % c.n_head) {
		lspo_error("%s: field 'n_embd' (%d) must be divisible by field 'n_head' (%d)", path,
		           c.n_embd, c.n_head);
		rc = LSPO_EFORMAT;
	}
	json_decref(root);
	free(path);
	if (!rc)
		*cfg = c;
	return rc;
}

static int write_config(const char *path, const struct lspo_gpt2_config *c)
{
	json_t *root = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f}",
	                         "architectures", "GPT2LMHeadModel", "model_type", "gpt2",
	                         "vocab_size", c->vocab_size, "n_positions", c->n_positions,
	                         "n_ctx", c->n_positions, "n_embd", c->n_embd,
	                         "n_layer", c->n_layer, "n_head", c->n_head,
	                         "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5);
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

/* HF stores 1-D tensors (biases, layernorms) with shape [n]. */
static int is_2d(const struct gpt2_tensor *t, int index)
{
	if (t->layer < 0)
		return index < 2;   /* wte, wpe */
	return t->kind == GPT2_QKV_W || t->kind == GPT2_ATTPROJ_W || t->kind == GPT2_FC_W ||
	       t->kind == GPT2_FCPROJ_W;
}

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

int lspo_ckpt_save(const char *dir, const struct lspo_gpt2_config *cfg, const float *params)
{
	struct gpt2_layout lay;
	int rc = layout_for(cfg, &lay);
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
	for (int i = 0; i < lay.ntensors; i++) {
		const struct gpt2_tensor *t = &lay.tensors[i];
		ts[i].name = t->name;
		ts[i].data = params + t->offset;
		if (is_2d(t, i)) {
			ts[i].ndim = 2;
			ts[i].shape[0] = t->rows;
			ts[i].shape[1] = t->cols;
		} else {
			ts[i].ndim = 1;
			ts[i].shape[0] = t->cols;
		}
	}
	rc = mkdir_p(dir);
	if (!rc)
		rc = st_write(st_path, ts, (size_t)lay.ntensors);
	if (!rc)
		rc = write_config(cfg_path, cfg);
out:
	free(ts);
	free(st_path);
	free(cfg_path);
	gpt2_layout_free(&lay);
	return rc;
}

/* "h.<n>.<rest>": the layer number, or -1; *rest points after the dot. */
static long layer_of(const char *name, const char **rest)
{
	if (strncmp(name, "h.", 2) != 0 || name[2] < '0' || name[2] > '9')
		return -1;
	char *end;
	errno = 0;
	long l = strtol(name + 2, &end, 10);
	if (errno || *end != '.')
		return -1;
	*rest = end + 1;
	return l;
}

static const char *strip_prefix(const char *name)
{
	return strncmp(name, "transformer.", 12) == 0 ? name + 12 : name;
}

static void shape_str(char *buf, size_t size, int ndim, const int64_t *shape)
{
	int len = snprintf(buf, size, "[");
	for (int i = 0; i < ndim && len < (int)size; i++)
		len += snprintf(buf + len, size - (size_t)len, "%s%lld", i ? ", " : "", (long long)shape[i]);
	if (len < (int)size)
		snprintf(buf + len, size - (size_t)len, "]");
}

/* The config field a shape mismatch of layout tensor i points at, or NULL
 * when the file's shape is not that of GPT-2 with another value of a field
 * (e.g. a transposed weight). */
static const char *mismatch_field(const struct gpt2_layout *lay, int i, const struct st_tensor *t,
                                  int want_ndim, int C)
{
	const struct gpt2_tensor *g = &lay->tensors[i];
	if (t->ndim != want_ndim)
		return NULL;
	if (i < 2)   /* wte (V, C), wpe (P, C) */
		return t->shape[1] != C ? "n_embd" : i == 0 ? "vocab_size" : "n_positions";
	int64_t mc = g->cols / C, last = t->shape[want_ndim - 1];
	if (last % mc)
		return NULL;
	int64_t Cp = last / mc;   /* the n_embd the file's tensor was made for */
	return want_ndim == 1 || t->shape[0] == (int64_t)(g->rows / C) * Cp ? "n_embd" : NULL;
}

static int check_tensor(const char *path, const struct gpt2_layout *lay, int i,
                        const struct lspo_gpt2_config *cfg, const struct st_tensor *t)
{
	const struct gpt2_tensor *g = &lay->tensors[i];
	int64_t want[2];
	int nd = is_2d(g, i) ? 2 : 1;
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
		const char *field = mismatch_field(lay, i, t, nd, cfg->n_embd);
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

/* Maps every file tensor to a layout index (>= 0), or -1 (ignored mask
 * buffer), or -2 (lm_head.weight); rejects unknown and duplicate tensors. */
static int match_tensors(const struct st_file *f, const struct gpt2_layout *lay,
                         const struct lspo_gpt2_config *cfg, int *map, int *seen, int *lm_head)
{
	*lm_head = -1;
	for (size_t k = 0; k < f->ntensors; k++) {
		const struct st_tensor *t = &f->tensors[k];
		const char *name = strip_prefix(t->name), *rest = NULL;
		long layer = layer_of(name, &rest);
		int idx = gpt2_layout_find(lay, name);
		if (idx >= 0) {
			if (seen[idx] >= 0)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' appears twice (as '%s' and '%s')",
				          f->path, name, f->tensors[seen[idx]].name, t->name);
			seen[idx] = (int)k;
			map[k] = idx;
			int rc = check_tensor(f->path, lay, idx, cfg, t);
			if (rc)
				return rc;
			continue;
		}
		if (layer >= 0 && (!strcmp(rest, "attn.bias") || !strcmp(rest, "attn.masked_bias"))) {
			if (layer >= cfg->n_layer)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' belongs to layer %ld, but config field "
				          "'n_layer' = %d", f->path, t->name, layer, cfg->n_layer);
			map[k] = -1;
			continue;
		}
		if (!strcmp(t->name, "lm_head.weight")) {
			if (*lm_head >= 0)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor 'lm_head.weight' appears twice", f->path);
			*lm_head = (int)k;
			map[k] = -2;
			continue;
		}
		if (layer >= cfg->n_layer) {
			/* a real layer tensor name, for a layer the config does not have? */
			char probe[64];
			snprintf(probe, sizeof(probe), "h.0.%s", rest);
			if (gpt2_layout_find(lay, probe) >= 0)
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' belongs to layer %ld, but config field "
				          "'n_layer' = %d", f->path, t->name, layer, cfg->n_layer);
		}
		LSPO_FAIL(LSPO_EFORMAT, "%s: unknown tensor '%s' (not a GPT-2 parameter)", f->path, t->name);
	}
	return LSPO_OK;
}

static int check_lm_head(const struct st_file *f, const struct st_tensor *t,
                         const struct gpt2_layout *lay, const float *wte)
{
	const struct gpt2_tensor *g = &lay->tensors[0];
	if (t->ndim != 2 || t->shape[0] != g->rows || t->shape[1] != g->cols) {
		char have[128];
		shape_str(have, sizeof(have), t->ndim, t->shape);
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s' has shape %s, expected [%d, %d] (tied to wte)",
		          f->path, t->name, have, g->rows, g->cols);
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
		lspo_error("%s: tensor '%s' differs from wte.weight (first at element %zu: %g vs %g); "
		           "lspo ties the output projection to wte", f->path, t->name, i, (double)tmp[i],
		           (double)wte[i]);
		rc = LSPO_EFORMAT;
	}
	free(tmp);
	return rc;
}

int lspo_ckpt_load_params(const char *dir, const struct lspo_gpt2_config *cfg, float *params)
{
	struct gpt2_layout lay;
	int rc = layout_for(cfg, &lay);
	if (rc)
		return rc;
	char *path = join(dir, "model.safetensors");
	struct st_file *f = NULL;
	int *map = NULL, *seen = NULL;
	if (!path) {
		lspo_error("%s: out of memory", dir);
		rc = LSPO_ENOMEM;
		goto out;
	}
	if (!params) {
		lspo_error("lspo_ckpt_load_params(%s): params is NULL", dir);
		rc = LSPO_EINVAL;
		goto out;
	}
	rc = st_open(path, &f);
	if (rc)
		goto out;
	map = malloc((f->ntensors + 1) * sizeof(*map));
	seen = malloc((size_t)lay.ntensors * sizeof(*seen));
	if (!map || !seen) {
		lspo_error("%s: out of memory", path);
		rc = LSPO_ENOMEM;
		goto out;
	}
	for (int i = 0; i < lay.ntensors; i++)
		seen[i] = -1;
	int lm_head;
	rc = match_tensors(f, &lay, cfg, map, seen, &lm_head);
	if (rc)
		goto out;
	/* highest layer present, to tell a short checkpoint from a missing tensor */
	int top = -1;
	for (int i = 0; i < lay.ntensors; i++)
		if (seen[i] >= 0 && lay.tensors[i].layer > top)
			top = lay.tensors[i].layer;
	for (int i = 0; i < lay.ntensors; i++)
		if (seen[i] < 0) {
			const struct gpt2_tensor *g = &lay.tensors[i];
			if (g->layer > top)
				lspo_error("%s: missing tensor '%s': config field 'n_layer' = %d but the "
				           "checkpoint has %d layer(s)", path, g->name, cfg->n_layer, top + 1);
			else
				lspo_error("%s: missing tensor '%s'", path, g->name);
			rc = LSPO_EFORMAT;
			goto out;
		}
	for (size_t k = 0; k < f->ntensors && !rc; k++)
		if (map[k] >= 0)
			rc = st_read_f32(f, &f->tensors[k], params + lay.tensors[map[k]].offset);
	if (!rc && lm_head >= 0)
		rc = check_lm_head(f, &f->tensors[lm_head], &lay, params);
out:
	free(map);
	free(seen);
	st_close(f);
	free(path);
	gpt2_layout_free(&lay);
	return rc;
}
