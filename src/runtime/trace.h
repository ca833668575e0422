/*
 * trace.h - per-task timelines and step summaries from StarPU's profiling
 * information (every build, FxT or not), written as DIR/tasks.csv and
 * DIR/summary.txt, and the bus ledger.  Each lspo_ctx owns one struct
 * lspo_trace (recorder and ledger); only src/runtime/ctx.c creates, starts, ends
 * and frees it.  Users see lspo_trace_* in lspo.h: those, the StarPU hooks
 * and lspo_bus_totals find the recorder of the running context through
 * lspo_ctx_trace().
 */
#ifndef LSPO_TRACE_H
#define LSPO_TRACE_H

#include <starpu.h>

struct lspo_trace;

/* A recorder that records nothing yet, and an empty ledger.  LSPO_ENOMEM. */
int lspo_trace_create(struct lspo_trace **out);
/* After lspo_trace_end, or when StarPU never started.  NULL is a no-op. */
void lspo_trace_free(struct lspo_trace *t);

/* The running context's recorder (src/runtime/ctx.c): set before starpu_init,
 * cleared after starpu_shutdown; NULL when no context runs. */
struct lspo_trace *lspo_ctx_trace(void);

/* Before starpu_init: prepares tracing into `dir` (created if needed) and
 * replaces *policy by a copy (inside t) whose exec hooks record every task
 * and then call the original hooks.  LSPO_EIO if dir cannot be created. */
int lspo_trace_begin(struct lspo_trace *t, const char *dir, struct starpu_sched_policy **policy);

/* After starpu_init succeeded: zeroes the bus ledger; when tracing, turns
 * StarPU's task and bus profiling on. */
void lspo_trace_started(struct lspo_trace *t);

/* Before starpu_shutdown (tasks done): writes the files, frees the records.
 * Also the way out when starpu_init failed (then nothing is written).
 * Only clears when tracing is off. */
void lspo_trace_end(struct lspo_trace *t, int write);

/* The bus ledger.  StarPU resets a bus's byte counters whenever anyone
 * reads them (starpu_bus_get_profiling_info), so two readers would steal
 * each other's bytes: every reader in lspo calls this instead and takes
 * differences.  Fills bytes moved since starpu_init by direction (needs
 * profiling on), and optionally the transfer count and StarPU's bus-model
 * estimate of their time in us; zeros when no context runs. */
enum { LSPO_BUS_H2D, LSPO_BUS_D2H, LSPO_BUS_D2D, LSPO_BUS_H2H, LSPO_BUS_NDIRS };
void lspo_bus_totals(long long bytes[LSPO_BUS_NDIRS], long long *transfers, double *model_us);

#endif
