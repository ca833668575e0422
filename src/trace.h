/*
 * trace.h - per-task timelines and step summaries from StarPU's profiling
 * information (every build, FxT or not), written as DIR/tasks.csv and
 * DIR/summary.txt.  Only src/ctx.c calls these; users see lspo_trace_* in
 * lspo.h.
 */
#ifndef LSPO_TRACE_H
#define LSPO_TRACE_H

#include <starpu.h>

/* Before starpu_init: prepares tracing into `dir` (created if needed) and
 * replaces *policy by a copy whose submit/exec hooks record every task and
 * then call the original hooks.  LSPO_EIO if dir cannot be created. */
int lspo_trace_begin(const char *dir, struct starpu_sched_policy **policy);

/* After starpu_init succeeded: zeroes the bus ledger; when tracing, turns
 * StarPU's task and bus profiling on. */
void lspo_trace_started(void);

/* Before starpu_shutdown (tasks done): writes the files, frees everything.
 * Also the way out when starpu_init failed (then nothing is written).
 * No-op when tracing is off. */
void lspo_trace_end(int write);

/* The bus ledger.  StarPU resets a bus's byte counters whenever anyone
 * reads them (starpu_bus_get_profiling_info), so two readers would steal
 * each other's bytes: every reader in lspo calls this instead and takes
 * differences.  Fills bytes moved since starpu_init by direction (needs
 * profiling on), and optionally the transfer count and StarPU's bus-model
 * estimate of their time in us. */
enum { LSPO_BUS_H2D, LSPO_BUS_D2H, LSPO_BUS_D2D, LSPO_BUS_H2H, LSPO_BUS_NDIRS };
void lspo_bus_totals(long long bytes[LSPO_BUS_NDIRS], long long *transfers, double *model_us);

#endif
