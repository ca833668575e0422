/*
 * recompute.c - activation checkpointing: the forward keeps the inputs of
 * segments of K blocks, the backward recomputes the rest.
 *
 * What is saved, and how.  A family registers one set of activation
 * handles per block (model_act: StarPU allocates each where it is first
 * written, or, when CPU-only runs split products, slices of one host slab).
 * With checkpointing every K blocks, block l = s K + j uses the handles of
 * block j (its "slot", model_block_slot): the K slots are the only block
 * activations that exist, whatever the depth, and the handles of blocks
 * >= K are never registered, so no memory is ever allocated for them, on
 * the accelerator or in the slab.  Only the output of a segment's last block
 * (the next segment's input) and of the model's last block (the head's
 * input) get a handle of their own (model_block_keeps_output): those are
 * the block inputs the forward keeps, L / K of them.
 *
 * Segment s's forward overwrites the slots segment s - 1 wrote; StarPU's
 * sequential consistency orders each write after the reads of the previous
 * contents (write-after-read dependencies), so the forward runs as without
 * checkpointing.  In the backward, before the backward of a segment's last
 * block, model_recompute submits the segment's forward again from its kept
 * input: the same tasks, on the same data, hence the same values bit for
 * bit, named with stage "recompute" and given the backward's priorities
 * (the policy treats them as backward work of their layer).  The last
 * segment is not recomputed: the forward left its activations in the slots.
 * lsp mode keeps each map's A = P^T X^T from the forward (d x N, small), so
 * a recompute does not project again.
 */
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"

int model_block_slot(const struct lspo_model *m, int layer)
{
	return m->ckpt_every > 0 ? layer % m->ckpt_every : layer;
}

int model_block_keeps_output(const struct lspo_model *m, int layer)
{
	int K = m->ckpt_every;
	return K <= 0 || layer % K == K - 1 || layer == m->cfg.n_layer - 1;
}

int model_recompute(struct lspo_model *m, int layer)
{
	int K = m->ckpt_every, L = m->cfg.n_layer;
	if (K <= 0 || !model_block_keeps_output(m, layer))
		return LSPO_OK;
	int first = layer - layer % K;
	if (first + K >= L)   /* the last segment: its activations are still in the slots */
		return LSPO_OK;
	int (*prio_fwd)(struct lspo_model *, int) = m->prio_fwd;
	m->prio_fwd = m->prio_bwd;
	m->recomputing = 1;
	int rc = LSPO_OK;
	for (int l = first; l <= layer && !rc; l++)
		rc = m->fam->block_fwd(m, l);
	m->recomputing = 0;
	m->prio_fwd = prio_fwd;
	return rc;
}

/* The partition plans whose parent is an activation (they go with it). */
static void drop_activation_plans(struct lspo_model *m)
{
	int kept = 0;
	for (int i = 0; i < m->nplans; i++) {
		int act = 0;
		for (int a = 0; a < m->nacts && !act; a++)
			act = m->acts[a] == m->plans[i]->parent;
		if (act) {
			starpu_data_partition_clean(m->plans[i]->parent, (unsigned)m->split, m->plans[i]->children);
			free(m->plans[i]);
		} else {
			m->plans[kept++] = m->plans[i];
		}
	}
	m->nplans = kept;
}

int lspo_model_set_checkpointing(struct lspo_model *m, int every)
{
	if (every < 0)
		LSPO_FAIL(LSPO_EINVAL, "activation checkpointing every %d blocks: expected at least 1 (0: off)", every);
	starpu_task_wait_for_all();
	if (every == m->ckpt_every)
		return LSPO_OK;
	drop_activation_plans(m);
	for (int i = 0; i < m->nacts; i++)
		if (m->acts[i])
			starpu_data_unregister(m->acts[i]);
	m->nacts = 0;
	starpu_free(m->act_slab);
	m->act_slab = NULL;
	m->act_used = m->act_size = 0;
	m->ckpt_every = every;
	if (m->split > 1) {   /* as build(): count, then one slab */
		m->counting = 1;
		int rc = model_register_activations(m);
		m->counting = 0;
		TRY(rc);
		if (starpu_malloc((void **)&m->act_slab, (m->act_size ? m->act_size : 1) * sizeof(float)))
			LSPO_FAIL(LSPO_ENOMEM, "cannot allocate %zu MiB of pinned memory for the activations",
			          m->act_size * sizeof(float) >> 20);
		memset(m->act_slab, 0, m->act_size * sizeof(float));
	}
	TRY(model_register_activations(m));
	if (m->act_failed)
		LSPO_FAIL(LSPO_ENOMEM, "cannot register the model's activations");
	return LSPO_OK;
}

int lspo_model_checkpointing(const struct lspo_model *m)
{
	return m->ckpt_every;
}

size_t model_activation_floats(struct lspo_model *m)
{
	size_t size = m->act_size;
	int counting = m->counting;
	m->act_size = 0;
	m->counting = 1;
	model_register_activations(m);   /* counts only: registers nothing, changes no handle */
	size_t n = m->act_size;
	m->act_size = size;
	m->counting = counting;
	return n;
}
