/*
 * gpt2_params.h - the parameter tensors of GPT-2, in one flat slab.
 *
 * Order and names are HF transformers' state_dict order (without the
 * "transformer." prefix); weights keep HF's Conv1D orientation (in, out), so
 * a linear layer is out (N, out) = inp (N, in) W (in, out) + b in our
 * row-major convention.  1-D tensors are (1, n).
 */
#ifndef LSPO_GPT2_PARAMS_H
#define LSPO_GPT2_PARAMS_H

#include <stddef.h>

#include "lspo.h"

/* Per-layer tensors, in slab order. */
enum gpt2_layer_tensor {
	GPT2_LN1_W, GPT2_LN1_B, GPT2_QKV_W, GPT2_QKV_B, GPT2_ATTPROJ_W, GPT2_ATTPROJ_B,
	GPT2_LN2_W, GPT2_LN2_B, GPT2_FC_W, GPT2_FC_B, GPT2_FCPROJ_W, GPT2_FCPROJ_B,
	GPT2_NLAYER_TENSORS
};

struct gpt2_tensor {
	char name[48];     /* e.g. "h.3.attn.c_attn.weight" */
	int rows, cols;    /* shape; 1-D tensors have rows == 1 */
	size_t offset;     /* in floats, from the start of the slab */
	int layer;         /* block index, -1 for wte, wpe, ln_f */
	int kind;          /* enum gpt2_layer_tensor, or -1 */
};

struct gpt2_layout {
	int ntensors;      /* 2 + 12 L + 2: wte, wpe, h.0.* ... h.(L-1).*, ln_f.weight, ln_f.bias */
	size_t nfloats;    /* slab size */
	struct gpt2_tensor *tensors;
};

/* Fills the layout for cfg (checked); free with gpt2_layout_free. */
int gpt2_layout_build(const struct lspo_gpt2_config *cfg, struct gpt2_layout *out);
void gpt2_layout_free(struct gpt2_layout *layout);

/* Index of the tensor named `name` (HF name without "transformer."), or -1. */
int gpt2_layout_find(const struct gpt2_layout *layout, const char *name);

/* Index helpers: wte = 0, wpe = 1, layer tensors, ln_f weight/bias last two. */
static inline int gpt2_layer_index(int layer, int kind) { return 2 + layer * GPT2_NLAYER_TENSORS + kind; }

#endif
