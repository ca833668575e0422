/*
 * dtype.c - --dtype bf16: the bf16 working weights of the engine.
 *
 * The forward and backward read m->hw; under bf16 these are w16, one bf16
 * handle per tensor, allocated where first written.  The fp32 masters (hp)
 * stay where each mode updates them: on the accelerator in native and lsp
 * mode (AdamW, and W += s P Delta Q^T applied to the fp32 master, so
 * updates far below a weight's bf16 spacing still add up), in host memory
 * in zero mode.  After each update a cast task rounds every master into
 * its working copy (to nearest even): on a CPU worker in zero mode, so
 * that only bf16 weights cross the bus, else on the accelerator.
 *
 * What is stored as bf16 on the accelerator: the working weights and the
 * activations (and activation gradients, logits and dlogits) the families
 * register with model_act.  What stays fp32: masters, gradients, AdamW
 * moments, norm statistics, log-sum-exp and losses (model_act_f32), lsp's
 * A, G_hat, Delta and projectors.
 */
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "cast.h"

const char *lspo_dtype_name(enum lspo_dtype dtype)
{
	return dtype == LSPO_DTYPE_BF16 ? "bf16" : dtype == LSPO_DTYPE_FP32 ? "fp32" : "unknown";
}

int lspo_dtype_parse(const char *text, enum lspo_dtype *dtype)
{
	if (!strcmp(text, "fp32"))
		*dtype = LSPO_DTYPE_FP32;
	else if (!strcmp(text, "bf16"))
		*dtype = LSPO_DTYPE_BF16;
	else
		LSPO_FAIL(LSPO_EINVAL, "unknown dtype '%s': expected fp32 or bf16", text);
	return LSPO_OK;
}

enum lspo_dtype lspo_model_dtype(const struct lspo_model *m)
{
	return m->bf16 ? LSPO_DTYPE_BF16 : LSPO_DTYPE_FP32;
}

int model_bf16_build(struct lspo_model *m)
{
	int n = m->layout.ntensors;
	m->w16 = calloc((size_t)n, sizeof(*m->w16));
	if (!m->w16)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the bf16 weight handles");
	for (int i = 0; i < n; i++) {
		const struct model_tensor *t = &m->layout.tensors[i];
		lspo_matrix_register_elem(&m->w16[i], NULL, t->rows, t->cols, sizeof(uint16_t));
	}
	m->hw = m->w16;
	return LSPO_OK;
}

int model_bf16_refresh(struct lspo_model *m)
{
	int zero = m->mode_id == LSPO_MODE_ZERO;
	uint32_t where = zero || starpu_cuda_worker_get_count() == 0 ? STARPU_CPU : STARPU_CUDA;
	for (int i = 0; i < m->layout.ntensors; i++) {
		const char *name = model_name(m, "cast", model_tensor_layer(m, i), zero ? "upload" : "apply");
		TRY(lspo_cast_f32_bf16_submit(m->hp[i], m->w16[i], where, 0, name));
	}
	return LSPO_OK;
}

void model_bf16_free(struct lspo_model *m)
{
	if (!m->w16)
		return;
	for (int i = 0; i < m->layout.ntensors; i++)
		if (m->w16[i])
			starpu_data_unregister(m->w16[i]);
	free(m->w16);
	m->w16 = NULL;
	m->hw = m->hp;
}

static size_t handle_bytes(starpu_data_handle_t h)
{
	return h ? (size_t)starpu_matrix_get_nx(h) * starpu_matrix_get_ny(h) * starpu_matrix_get_elemsize(h) : 0;
}

void lspo_model_stored_bytes(const struct lspo_model *m, size_t *weights, size_t *activations)
{
	*weights = 0;
	*activations = 0;
	for (int i = 0; i < m->layout.ntensors; i++)
		*weights += handle_bytes(m->hw[i]);
	for (int i = 0; i < m->nacts; i++)
		*activations += handle_bytes(m->acts[i]);
}
