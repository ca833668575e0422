/*
 * sched_lspo.h - the `lspo` StarPU scheduling policy: the layer-wise
 * LSP-Offload schedule (lsp-offload.md sections 8 and 16) read from task
 * names, with a priority list as the fallback for every other task.
 *
 * How the engine uses it.  lspo_ctx_create installs it when the policy name
 * is "lspo"; options come from lspo_sched_set_opts (include/lspo.h), before
 * or after the context starts.  The engine only names its tasks
 * "<op>:L<layer>:<stage>" (layers 0 .. L in forward order, 0 = first block
 * and embedding, L = final layernorm and LM head) or "<op>:<stage>", and
 * submits the step in program order: StarPU's data dependencies keep it
 * correct, the policy only chooses among ready tasks.  Priorities still
 * order tasks within a class (see below) and every unrecognised task.
 *
 * Task classes, from its name's tag (tag.h; parsed once per push and
 * cached in task->sched_data, which this policy owns):
 *   stage fwd                    -> FWD   (a layer-less "xent:fwd" sorts last)
 *   stage bwd                    -> BWD   (a layer-less one sorts first)
 *   proj, offload of layer >= cut -> HEAD  (the head of a deep layer's pipeline)
 *   reduce of any layer            -> HEAD  (sums across MPI ranks, engine/dp.c)
 *   upd, upload, apply of layer >= cut -> FCFS
 *   proj .. apply of layer < cut -> LCFS
 *   stage learn                  -> IDLE
 *   anything else (a name that is not a tag, another stage such as check,
 *   layer > LSPO_SCHED_MAX_LAYER, or a step-level pipeline stage such as
 *   "clip_scale:upd") -> OTHER
 * An idle worker takes the first task it may run from the first non-empty
 * class in this order:
 *   1. HEAD   first come, first served (time it became ready): a deep layer's
 *             compressed gradient is formed and leaves as soon as its
 *             backward produced it (the reference's D2H at the end of BWD_i);
 *   2. BWD    deepest layer first, then higher priority, then FIFO;
 *   3. LCFS   last come, first served: the shallow layers, whose pipeline
 *             cannot hide behind the backward, are served in the order the
 *             next forward needs them (most recent gradient = shallowest);
 *   4. FWD    shallowest layer first, then priority, then FIFO;
 *   5. OTHER  higher priority first, FIFO among equals (the old policy);
 *   6. FCFS   first come, first served: the deep layers' update pipeline,
 *             which runs in the gaps (CPU workers have nothing else to run
 *             but LCFS upds and OTHER tasks, so deep upds start at once).
 *   7. IDLE   stage learn (projector learning, issue 12), FIFO: only when
 *             nothing else is queued, and while other tasks run at most
 *             (workers - 1) at once, so a worker stays free for the
 *             backward or an apply the next forward needs.
 * A CUDA worker asks for tasks ahead while its kernels run: under this
 * policy StarPU's CUDA pipeline is 4 deep (runtime/ctx.c, unless
 * STARPU_CUDA_PIPELINE is set), so the driver's per-task cost of small
 * kernels hides behind long ones; a worker that already holds 2 unfinished
 * tasks takes no fwd task (it would be committed before the forward chain's
 * next task is ready, which would then wait behind it).
 * Placement: fwd, bwd, proj, apply and learn go only to non-CPU workers when
 * one of the context's accelerators can run the task (a learning chain that
 * alternated would move its gradient across the bus each time); so does upd (native
 * AdamW stays with its data), while the offloaded updates (subspace Adam,
 * zero's AdamW) are restricted to CPU workers by their codelet or `where`
 * and go to CPU workers only; otherwise (CPU-only machine) any worker that
 * can run it, ordered by the same rules.
 * A step-level upd (no layer: the clipping factor from the norm's partial
 * sums) goes where most of its input bytes are valid, CPU workers or the
 * accelerator, when both kinds can run it.
 * offload, upload and OTHER tasks go to any worker that can run them.
 *
 * Delays (lspo_sched_opts.delay_upd/upload/apply = d > 0): a stage of layer
 * i becomes eligible once a bwd task of a layer <= max(i - d, 0) has been
 * popped in the current backward pass (the pass starts with the first bwd
 * popped after a fwd; with no bwd popped yet, nothing waits).  A worker that
 * finds no eligible task takes a delayed one anyway when no bwd task is
 * queued or running (running ends at the next pop of the worker that ran
 * it, after its successors were pushed), so a delayed task never waits for
 * a backward that will not come.
 *
 * Automatic cut (lspo_sched_opts.cut = -1): while tasks are pushed the
 * policy adds, per layer, the expected lengths (starpu_task_expected_length
 * on the kind of worker the task is placed on) of its bwd tasks, and of its
 * proj/offload/upd/upload/apply tasks plus the expected transfer time of
 * their inputs (starpu_task_expected_data_transfer_time_for).  When the next
 * backward pass starts (first bwd pushed after a fwd was pushed) these sums
 * give the cut for the tasks pushed from then on: lspo_sched_auto_cut.
 * Until a pass gave usable estimates the cut is round(nlayers / 4).  As
 * under dmda, asking a history model that lacks measurements makes StarPU
 * calibrate it during the run (its "forcing calibration" and "too big
 * deviation" warnings come from there); a fixed cut asks nothing.  A task's
 * class is fixed when it is pushed: a new cut applies to later pushes.
 *
 * Prefetch: when an apply task placed on an accelerator becomes ready, its
 * inputs are prefetched to that accelerator's memory (an idle-time prefetch
 * for deep layers, a prioritised one for shallow layers); when an upd task
 * placed on CPU workers becomes ready on a machine with accelerators, its
 * inputs are prefetched to host memory with its priority (the offload
 * starts before a CPU worker is free).
 *
 * Cost: push and pop hold one mutex; lists are sorted by insertion from the
 * back (O(1) for the usual arrival order), pop takes the first suitable task
 * of a class and skips classes holding nothing this kind of worker may run.
 */
#ifndef LSPO_SCHED_LSPO_H
#define LSPO_SCHED_LSPO_H

#include <pthread.h>

#include <starpu.h>

#include "lspo.h"
#include "runtime/tag.h"

extern struct starpu_sched_policy lspo_sched_policy;

/* Layers above it are not layers for the policy (the task goes to OTHER). */
#define LSPO_SCHED_MAX_LAYER 1023

/* The policy's view of a task name: the stage of its tag (tag.h), and in
 * *layer the tag's layer, or -1 when the tag is step-level or its layer is
 * above LSPO_SCHED_MAX_LAYER.  LSPO_STAGE_NONE and -1 when the name is not a
 * tag (NULL, or anything lspo_tag_parse rejects). */
enum lspo_stage lspo_sched_stage_of(const char *name, int *layer);

/* round(n / 4), the cut used while the perfmodels give no estimate. */
int lspo_sched_default_cut(int nlayers);

/*
 * The automatic cut, a pure function.  bwd_us[i] is the expected backward
 * time of layer i, pipe_us[i] the expected latency of its update pipeline
 * (proj + offload transfer + upd + upload transfer + apply), i = 0 .. n-1 in
 * forward order.  The backward runs layers n-1 .. 0, so when layer i's
 * backward ends, R_i = sum_{j < i} bwd_us[j] of backward is still to run.
 * Layer i's pipeline hides behind it iff pipe_us[i] <= R_i.  The cut is one
 * above the deepest layer that does not hide (0 if all hide): layers below it
 * are LCFS.  The estimates are unusable (-> lspo_sched_default_cut(n)) when
 * a value is NaN, infinite or negative, or either total is 0.
 * Example: bwd 10 ms and pipe 35 ms for every layer: R_i = 10 i ms, layers
 * 0..3 do not hide, cut = 4.
 */
int lspo_sched_auto_cut(int nlayers, const double *bwd_us, const double *pipe_us);

/* The policy's options and what the running policy learned: a context's
 * state (struct lspo_ctx holds one, src/runtime/ctx.c).  lspo_sched_set_opts
 * writes the running context's options, and remembers them for contexts
 * created later (options may be set before lspo_ctx_create). */
struct lspo_sched_state {
	pthread_mutex_t lock;
	struct lspo_sched_opts opts;
	unsigned version;              /* changes at every lspo_sched_set_opts */
	int learned_nlayers;           /* max layer + 1 seen in task names */
	int learned_cut;               /* automatic cut from the perfmodels; -1: none yet */
};

/* A new context's state: the options last set (the defaults if none),
 * nothing learned. */
void lspo_sched_state_init(struct lspo_sched_state *s);
void lspo_sched_state_destroy(struct lspo_sched_state *s);

/* The running context's state (src/runtime/ctx.c): set before starpu_init, cleared
 * after starpu_shutdown; NULL when no context runs. */
struct lspo_sched_state *lspo_ctx_sched_state(void);

/* For the policy: a snapshot of the running context's options and their
 * version (changes at every lspo_sched_set_opts).  With no context: the
 * options the next one starts with, version 0. */
unsigned lspo_sched_opts_snapshot(struct lspo_sched_opts *out);
/* For the policy: publishes what it learned (nlayers seen, auto cut or -1)
 * into the running context's state; lspo_sched_get_cut reads them. */
void lspo_sched_publish(int nlayers_seen, int auto_cut);

/* Memory awareness (sched_lspo_mem.c): called by push_task for a task placed
 * on accelerator worker `accel_worker` (-1: not placed on one), and by the
 * post-exec hook for every task. */
void lspo_sched_mem_push(struct starpu_task *task, int accel_worker);
void lspo_sched_mem_post_exec(struct starpu_task *task);
/* 1: the bytes of the task's inputs valid in host memory are at least
 * those that are not (sched_lspo_mem.c). */
int lspo_sched_inputs_on_host(struct starpu_task *task);
/* 1: this update, which either kind of worker may run, goes to a CPU worker
 * rather than to accelerator worker `accel_worker` (memory short). */
int lspo_sched_mem_upd_on_cpu(struct starpu_task *task, int accel_worker);
/* An update bound to CPU workers (an offloaded one): its gradient and states
 * are home, as those upd_on_cpu sends there (memory short). */
void lspo_sched_mem_upd_home(struct starpu_task *task);
/* 1: this forward or backward task goes to CPU worker `cpu_worker` rather
 * than to accelerator worker `accel_worker` (memory short; sched_lspo_mem.c). */
int lspo_sched_mem_on_host(struct starpu_task *task, unsigned ctx, int accel_worker, int cpu_worker);
/* For a task on_host sent to a CPU worker: prefetches to accelerator worker
 * `accel_worker` its read-only inputs that accelerator tasks read later. */
void lspo_sched_mem_prefetch_later(struct starpu_task *task, int accel_worker);
/* 1: this apply goes to a CPU worker, where its weight is valid and the
 * plan would release it from the accelerator anyway (memory short). */
int lspo_sched_mem_apply_home(struct starpu_task *task);

#endif
