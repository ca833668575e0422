/*
 * layout.c - a model's tensors and linear maps, and the families by name.
 * Tensors are carved from one flat slab in the order they are added (HF's
 * state_dict order), so a checkpoint is read and written tensor by tensor.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/model.h"

static int grow(void **p, int *cap, int need, size_t size)
{
	if (need <= *cap)
		return LSPO_OK;
	int n = *cap ? 2 * *cap : 64;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, (size_t)n * size);
	if (!q)
		LSPO_FAIL(LSPO_ENOMEM, "model layout: out of memory (%d entries)", n);
	*p = q;
	*cap = n;
	return LSPO_OK;
}

int layout_add_tensor(struct model_layout *l, int layer, int kind, int rows, int cols, int hf_ndim,
                      const char *fmt, ...)
{
	TRY(grow((void **)&l->tensors, &l->cap_tensors, l->ntensors + 1, sizeof(*l->tensors)));
	struct model_tensor *t = &l->tensors[l->ntensors++];
	memset(t, 0, sizeof(*t));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->name, sizeof(t->name), fmt, ap);
	va_end(ap);
	t->rows = rows;
	t->cols = cols;
	t->hf_ndim = hf_ndim;
	t->offset = l->nfloats;
	t->layer = layer;
	t->kind = kind;
	size_t n = (size_t)rows * (size_t)cols;
	if (rows <= 0 || cols <= 0 || __builtin_add_overflow(l->nfloats, n, &l->nfloats))
		LSPO_FAIL(LSPO_EINVAL, "model layout: tensor %s (%d, %d) does not fit in memory addresses",
		          t->name, rows, cols);
	return LSPO_OK;
}

int layout_add_linear(struct model_layout *l, int weight, int bias, int layer, int role,
                      enum model_orient orient)
{
	TRY(grow((void **)&l->linears, &l->cap_linears, l->nlinears + 1, sizeof(*l->linears)));
	const struct model_tensor *w = &l->tensors[weight];
	struct model_linear *lin = &l->linears[l->nlinears++];
	*lin = (struct model_linear){ .weight = weight, .bias = bias, .layer = layer, .role = role,
	                              .orient = orient };
	lin->in = orient == ORIENT_IN_OUT ? w->rows : w->cols;
	lin->out = orient == ORIENT_IN_OUT ? w->cols : w->rows;
	return LSPO_OK;
}

void layout_free(struct model_layout *l)
{
	free(l->tensors);
	free(l->linears);
	memset(l, 0, sizeof(*l));
}

int layout_find(const struct model_layout *l, const char *name)
{
	for (int i = 0; i < l->ntensors; i++)
		if (strcmp(l->tensors[i].name, name) == 0)
			return i;
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Families                                                                 */

static const char *const family_names[LSPO_NFAMILIES] = { "gpt2", "llama", "qwen2" };

const char *lspo_family_name(enum lspo_family f)
{
	return (unsigned)f < LSPO_NFAMILIES ? family_names[f] : "unknown";
}

int lspo_family_parse(const char *text, enum lspo_family *f)
{
	for (int i = 0; i < LSPO_NFAMILIES; i++)
		if (strcmp(text, family_names[i]) == 0) {
			*f = (enum lspo_family)i;
			return LSPO_OK;
		}
	LSPO_FAIL(LSPO_EINVAL, "unsupported model family '%s': lspo trains gpt2, llama and qwen2", text);
}

const struct model_family *model_family_of(enum lspo_family f)
{
	switch (f) {
	case LSPO_FAMILY_GPT2: return &model_gpt2;
	case LSPO_FAMILY_LLAMA: case LSPO_FAMILY_QWEN2: return &model_llama;
	default: return NULL;
	}
}

int lspo_model_config_check(struct lspo_model_config *cfg)
{
	const struct model_family *fam = model_family_of(cfg->family);
	if (!fam)
		LSPO_FAIL(LSPO_EINVAL, "model config: unknown family %d", (int)cfg->family);
	return fam->config_check(cfg);
}

int model_layout_for(const struct lspo_model_config *cfg, struct lspo_model_config *resolved,
                     struct model_layout *out)
{
	memset(out, 0, sizeof(*out));
	*resolved = *cfg;
	TRY(lspo_model_config_check(resolved));
	int rc = model_family_of(resolved->family)->layout(resolved, out);
	if (rc)
		layout_free(out);
	return rc;
}

int model_layout_of(const struct lspo_model_config *cfg, struct model_layout *out)
{
	struct lspo_model_config c;
	return model_layout_for(cfg, &c, out);
}

size_t lspo_model_nparams(const struct lspo_model_config *cfg)
{
	struct lspo_model_config c;
	struct model_layout l;
	if (!cfg)
		return 0;
	lspo_log_level_push_quiet();
	int rc = model_layout_for(cfg, &c, &l);
	lspo_log_level_pop();
	size_t n = rc ? 0 : l.nfloats;
	layout_free(&l);
	return n;
}

int lspo_model_init_params(const struct lspo_model_config *cfg, uint64_t seed, float *params)
{
	struct lspo_model_config c;
	struct model_layout l;
	TRY(model_layout_for(cfg, &c, &l));
	int rc = LSPO_OK;
	if (!params) {
		lspo_error("lspo_model_init_params: params is NULL");
		rc = LSPO_EINVAL;
	} else {
		rc = model_family_of(c.family)->init_params(&c, &l, seed, params);
	}
	layout_free(&l);
	return rc;
}
