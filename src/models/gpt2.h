/* gpt2.h - GPT-2's tensor kinds (struct model_tensor.kind), for tests and tools. */
#ifndef LSPO_MODELS_GPT2_H
#define LSPO_MODELS_GPT2_H

/* Per-layer tensors, in slab order, then the model-level ones. */
enum gpt2_kind {
	GPT2_LN1_W, GPT2_LN1_B, GPT2_QKV_W, GPT2_QKV_B, GPT2_ATTPROJ_W, GPT2_ATTPROJ_B,
	GPT2_LN2_W, GPT2_LN2_B, GPT2_FC_W, GPT2_FC_B, GPT2_FCPROJ_W, GPT2_FCPROJ_B,
	GPT2_NLAYER_TENSORS, GPT2_WTE = GPT2_NLAYER_TENSORS, GPT2_WPE, GPT2_LNF_W, GPT2_LNF_B
};

#endif
