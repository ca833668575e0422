/*
 * memstat.h - memory of a run as StarPU sees it (issue 13): the peak bytes
 * StarPU allocated on each memory node, per step and per run, and the bytes
 * an accelerator evicted and fetched again in a step.  Users read it with
 * lspo_mem_get (lspo.h); the context (ctx.c), the step marks (trace.c) and
 * the engine's step (model.c) drive it.  StarPU runs once per process, so
 * the state is the process's.
 */
#ifndef LSPO_MEMSTAT_H
#define LSPO_MEMSTAT_H

#include <starpu.h>

/* Before starpu_init: replaces *policy by a copy whose exec hooks sample
 * memory and follow data, then call the original hooks. */
void lspo_mem_wrap_policy(struct starpu_sched_policy **policy);
/* After starpu_init succeeded / before starpu_shutdown. */
void lspo_mem_started(void);
void lspo_mem_stopped(void);

/* A mark of trace.c: step > 0 opens a training step, step <= 0 work
 * outside steps (the data followed so far is forgotten). */
void lspo_mem_mark(int step);
/* The host wrote h outside a task (starpu_data_acquire W): copies on the
 * accelerators are stale. */
void lspo_mem_host_wrote(starpu_data_handle_t h);
/* The engine dropped h's contents in this step (starpu_data_invalidate_submit
 * after its last reader): copies gone at the step's end are not evicted. */
void lspo_mem_dropped(starpu_data_handle_t h);
/* After the step's tasks ended: its peaks, evicted and refetched bytes. */
void lspo_mem_step_end(void);

/* For the lspo policy: the training step running (0: none), and whether an
 * accelerator's memory is short: a step of the run evicted (the footprint
 * does not change from step to step, so it stays short). */
int lspo_mem_step(void);
int lspo_mem_short(void);
/* The last step evicted; the bytes it evicted. */
int lspo_mem_short_now(void);
double lspo_mem_evicted_now(void);
/* The engine changed how it uses memory (engine/model.c, drop_dead): the
 * evictions so far say nothing of what follows; lspo_mem_short is 0 until
 * a step evicts again. */
void lspo_mem_forget_short(void);

/* summary.txt (trace.c): the legend of the memory lines, and the line of
 * a step (step 0: the run's peaks). */
#include <stdio.h>
void lspo_mem_print_legend(FILE *f);
void lspo_mem_print_step(FILE *f, int step);

#endif
