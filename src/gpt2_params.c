/* gpt2_params.c - GPT-2's parameter tensors: names, shapes, slab offsets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "gpt2_params.h"

int lspo_gpt2_config_check(const struct lspo_gpt2_config *c)
{
	const struct { const char *name; int value; } fields[] = {
		{ "vocab_size", c->vocab_size }, { "n_positions", c->n_positions },
		{ "n_embd", c->n_embd }, { "n_layer", c->n_layer }, { "n_head", c->n_head } };
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (fields[i].value <= 0)
			LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: %s must be positive, got %d",
			          fields[i].name, fields[i].value);
	if (c->n_embd % c->n_head)
		LSPO_FAIL(LSPO_EINVAL, "GPT-2 config: n_embd (%d) must be divisible by n_head (%d)",
		          c->n_embd, c->n_head);
	return LSPO_OK;
}

static void add(struct gpt2_layout *l, const char *name, int rows, int cols, int layer, int kind)
{
	struct gpt2_tensor *t = &l->tensors[l->ntensors++];
	snprintf(t->name, sizeof(t->name), "%s", name);
	t->rows = rows;
	t->cols = cols;
	t->offset = l->nfloats;
	t->layer = layer;
	t->kind = kind;
	l->nfloats += (size_t)rows * cols;
}

int gpt2_layout_build(const struct lspo_gpt2_config *cfg, struct gpt2_layout *out)
{
	static const struct { const char *suffix; int rows_c, cols_c; } per_layer[GPT2_NLAYER_TENSORS] = {
		/* shapes as multiples of C; rows 0 means a 1-D tensor */
		[GPT2_LN1_W] = { "ln_1.weight", 0, 1 },        [GPT2_LN1_B] = { "ln_1.bias", 0, 1 },
		[GPT2_QKV_W] = { "attn.c_attn.weight", 1, 3 }, [GPT2_QKV_B] = { "attn.c_attn.bias", 0, 3 },
		[GPT2_ATTPROJ_W] = { "attn.c_proj.weight", 1, 1 }, [GPT2_ATTPROJ_B] = { "attn.c_proj.bias", 0, 1 },
		[GPT2_LN2_W] = { "ln_2.weight", 0, 1 },        [GPT2_LN2_B] = { "ln_2.bias", 0, 1 },
		[GPT2_FC_W] = { "mlp.c_fc.weight", 1, 4 },     [GPT2_FC_B] = { "mlp.c_fc.bias", 0, 4 },
		[GPT2_FCPROJ_W] = { "mlp.c_proj.weight", 4, 1 }, [GPT2_FCPROJ_B] = { "mlp.c_proj.bias", 0, 1 },
	};
	memset(out, 0, sizeof(*out));
	int rc = lspo_gpt2_config_check(cfg);
	if (rc)
		return rc;
	int C = cfg->n_embd;
	out->tensors = calloc((size_t)4 + (size_t)GPT2_NLAYER_TENSORS * cfg->n_layer, sizeof(*out->tensors));
	if (!out->tensors)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the GPT-2 layout (%d layers)", cfg->n_layer);
	add(out, "wte.weight", cfg->vocab_size, C, -1, -1);
	add(out, "wpe.weight", cfg->n_positions, C, -1, -1);
	for (int l = 0; l < cfg->n_layer; l++)
		for (int k = 0; k < GPT2_NLAYER_TENSORS; k++) {
			char name[48];
			snprintf(name, sizeof(name), "h.%d.%s", l, per_layer[k].suffix);
			int rows = per_layer[k].rows_c ? per_layer[k].rows_c * C : 1;
			add(out, name, rows, per_layer[k].cols_c * C, l, k);
		}
	add(out, "ln_f.weight", 1, C, -1, -1);
	add(out, "ln_f.bias", 1, C, -1, -1);
	return LSPO_OK;
}

void gpt2_layout_free(struct gpt2_layout *layout)
{
	free(layout->tensors);
	memset(layout, 0, sizeof(*layout));
}

int gpt2_layout_find(const struct gpt2_layout *layout, const char *name)
{
	for (int i = 0; i < layout->ntensors; i++)
		if (strcmp(layout->tensors[i].name, name) == 0)
			return i;
	return -1;
}
