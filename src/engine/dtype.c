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
 * that only bf16 weights cross the bus, else on the accelerator.  New
 * parameters are rounded on a CPU worker whatever the mode (`lspo train`
 * sets them before the mode); setting native or lsp mode then rounds them
 * again on the accelerator, placing the masters there (model_bf16_mode_set).
 *
 * --bf16-update stochastic: no fp32 master on the accelerator.  In native
 * and lsp mode the updates (AdamW, proj_apply) read and write the bf16
 * working weights themselves, computing in float32 and rounding the result
 * stochastically (codelets/bf16.h: unbiased, keyed by the run's seed, the
 * step and the tensor, identical on CPU and CUDA workers), so an update far
 * below a weight's bf16 spacing moves it by the right amount on average.
 * The fp32 slab hp then stays in host memory, refreshed from the bf16
 * weights (exactly) when the host reads the parameters; new parameters are
 * rounded into the working copy (to nearest) on a CPU worker, so hp never
 * reaches the accelerator.  zero mode updates its host masters as before.
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
#include "bf16.h"
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

/* Rounds every master into its working copy on `where`. */
static int refresh(struct lspo_model *m, uint32_t where)
{
	for (int i = 0; i < m->layout.ntensors; i++) {
		const char *stage = where == STARPU_CPU ? "upload" : "apply";
		const char *name = model_name(m, "cast", model_tensor_layer(m, i), stage);
		TRY(lspo_cast_f32_bf16_submit(m->hp[i], m->w16[i], where, 0, name));
	}
	return LSPO_OK;
}

/* New parameters (lspo_model_set_params): the host just wrote the masters,
 * so the cast runs on a CPU worker in every mode and only the bf16 weights
 * go up.  Cast on the accelerator, it would place an fp32 replica of every
 * master there before the mode is known (lspo train sets the mode after the
 * parameters): zero mode, whose masters never reach the accelerator, would
 * hold 4 bytes per parameter more than its footprint (footprint.c) for the
 * whole run, StarPU keeping a replica allocated until memory runs short.
 * Native and lsp mode fetch their masters at their first update instead. */
int model_bf16_refresh(struct lspo_model *m)
{
	return refresh(m, STARPU_CPU);
}

const char *lspo_bf16_update_name(enum lspo_bf16_update u)
{
	return u == LSPO_BF16_STOCHASTIC ? "stochastic" : u == LSPO_BF16_MASTER ? "master" : "unknown";
}

int lspo_bf16_update_parse(const char *text, enum lspo_bf16_update *u)
{
	if (!strcmp(text, "master"))
		*u = LSPO_BF16_MASTER;
	else if (!strcmp(text, "stochastic"))
		*u = LSPO_BF16_STOCHASTIC;
	else
		LSPO_FAIL(LSPO_EINVAL, "unknown bf16 update '%s': expected master or stochastic", text);
	return LSPO_OK;
}

int model_bf16_sr_active(const struct lspo_model *m)
{
	return m->bf16 && m->bf16_sr && m->mode_id != LSPO_MODE_ZERO;
}

uint64_t model_bf16_sr_key(const struct lspo_model *m, int tensor)
{
	return lspo_sr_key(m->sr_seed, (uint64_t)m->step, (uint64_t)tensor);
}

/* A mode was set (lspo_model_set_mode): native and lsp mode update fp32
 * masters on the accelerator, so there the masters are rounded again on
 * the accelerator, which places them where they stay before the first step
 * (the values are those set_params rounded).  zero mode keeps its masters
 * on the host; so does --bf16-update stochastic, whose hp may also be stale
 * (the bf16 weights are the parameters). */
int model_bf16_mode_set(struct lspo_model *m)
{
	if (!m->bf16 || m->bf16_sr || m->mode_id == LSPO_MODE_ZERO || starpu_cuda_worker_get_count() == 0)
		return LSPO_OK;
	return refresh(m, STARPU_CUDA);
}

/* After an update: where the masters were updated (zero: the host). */
int model_bf16_after_update(struct lspo_model *m)
{
	if (model_bf16_sr_active(m))
		return LSPO_OK;
	int host = m->mode_id == LSPO_MODE_ZERO || starpu_cuda_worker_get_count() == 0;
	return refresh(m, host ? STARPU_CPU : STARPU_CUDA);
}

int model_bf16_sync_host(struct lspo_model *m)
{
	if (!model_bf16_sr_active(m))
		return LSPO_OK;
	for (int i = 0; i < m->layout.ntensors; i++)
		TRY(lspo_cast_bf16_f32_submit(m->w16[i], m->hp[i], STARPU_CPU, 0,
		                              model_name(m, "cast", model_tensor_layer(m, i), "upd")));
	return LSPO_OK;
}

int lspo_model_set_bf16_update(struct lspo_model *m, enum lspo_bf16_update u, uint64_t seed)
{
	if (u != LSPO_BF16_MASTER && u != LSPO_BF16_STOCHASTIC)
		LSPO_FAIL(LSPO_EINVAL, "unknown bf16 update %d: expected master or stochastic", (int)u);
	if (!m->bf16 && u == LSPO_BF16_STOCHASTIC)
		LSPO_FAIL(LSPO_EINVAL, "bf16 update 'stochastic' needs bf16 weights (dtype %s)",
		          lspo_dtype_name(lspo_model_dtype(m)));
	if (u == LSPO_BF16_MASTER && model_bf16_sr_active(m))
		TRY(model_bf16_sync_host(m));   /* the masters start from the bf16 weights */
	starpu_task_wait_for_all();
	m->bf16_sr = u == LSPO_BF16_STOCHASTIC;
	m->sr_seed = seed;
	return LSPO_OK;
}

enum lspo_bf16_update lspo_model_bf16_update(const struct lspo_model *m)
{
	return m->bf16_sr ? LSPO_BF16_STOCHASTIC : LSPO_BF16_MASTER;
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
