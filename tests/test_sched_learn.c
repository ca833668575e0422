/*
 * test_sched_learn.c - the `lspo` policy and projector learning (issue 12):
 * tasks of stage `learn` wait behind every other class whatever their
 * priority (one worker, all queued at once), and with two workers they fill
 * the worker a backward chain leaves idle while the chain runs on.
 */
#include <stdatomic.h>
#include <string.h>

#include <starpu.h>

#include "common.h"
#include "gate.h"

#define MAXT 64
static int order[MAXT];
static atomic_int norder, seq;
static int start_at[MAXT], end_at[MAXT];
static char names[MAXT][32];

static void record(void *arg)
{
	order[atomic_fetch_add(&norder, 1)] = (int)(intptr_t)arg;
}

struct targ { int id; double ms; };

static void timed(void *buffers[], void *arg)
{
	(void)buffers;
	const struct targ *a = arg;
	start_at[a->id] = atomic_fetch_add(&seq, 1);
	double t0 = starpu_timing_now();
	while (starpu_timing_now() - t0 < a->ms * 1e3)
		;
	end_at[a->id] = atomic_fetch_add(&seq, 1);
}

static struct starpu_codelet cl_t0 = { .cpu_funcs = { timed }, .nbuffers = 0, .name = "t0" };
static struct starpu_codelet cl_t1 = { .cpu_funcs = { timed }, .nbuffers = 1, .modes = { STARPU_RW }, .name = "t1" };

static void submit(int id, const char *fmt, int layer, int prio, double ms, starpu_data_handle_t h)
{
	snprintf(names[id], sizeof(names[id]), fmt, layer);
	struct targ *t = malloc(sizeof(*t));
	*t = (struct targ){ id, ms };
	int rc = h ? starpu_task_insert(&cl_t1, STARPU_RW, h, STARPU_NAME, names[id], STARPU_PRIORITY, prio,
	                                STARPU_CL_ARGS, t, sizeof(*t),
	                                STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0)
	           : starpu_task_insert(&cl_t0, STARPU_NAME, names[id], STARPU_PRIORITY, prio,
	                                STARPU_CL_ARGS, t, sizeof(*t),
	                                STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0);
	CHECK(rc == 0, "task_insert returned %d", rc);
}

static void reset(void)
{
	atomic_store(&norder, 0);
	atomic_store(&seq, 0);
	memset(start_at, -1, sizeof(start_at));
	memset(end_at, -1, sizeof(end_at));
}

/* One worker: learn tasks (any priority) after fwd, bwd, apply, upd and
 * unknown tasks of the lowest priority; among themselves in ready order. */
static void test_last(void)
{
	reset();
	gate_close();
	submit(0, "proj_learn:L%d:learn", 1, 100, 0, NULL);
	submit(1, "matmul:L%d:fwd", 0, 0, 0, NULL);
	submit(2, "proj_learn:L%d:learn", 0, 0, 0, NULL);
	submit(3, "unknown%d", 0, -100, 0, NULL);
	submit(4, "matmul:L%d:bwd", 1, 0, 0, NULL);
	submit(5, "proj_apply:L%d:apply", 1, 0, 0, NULL);
	submit(6, "proj_error:learn%.0d", 0, 50, 0, NULL);
	submit(7, "proj_error:L%d:check", 1, 0, 0, NULL);
	gate_open_all();
	starpu_task_wait_for_all();
	CHECK(atomic_load(&norder) == 8, "%d of 8 tasks ran", atomic_load(&norder));
	for (int i = 0; i < 5; i++)
		CHECK(strstr(names[order[i]], ":learn") == NULL, "position %d: %s before a non-learning task", i,
		      names[order[i]]);
	CHECK(order[5] == 0 && order[6] == 2 && order[7] == 6, "learning tasks in order %d %d %d, expected 0 2 6",
	      order[5], order[6], order[7]);
}

/* Two workers: a backward chain (6 x 20 ms) and 6 independent learning
 * tasks (10 ms), submitted after the chain: learning starts before the
 * chain ends (it fills the idle worker), and every task runs. */
static void test_fills_idle(void)
{
	reset();
	int chain = 0;
	starpu_data_handle_t hc;
	starpu_variable_data_register(&hc, STARPU_MAIN_RAM, (uintptr_t)&chain, sizeof(chain));
	for (int i = 0; i < 6; i++)
		submit(i, "matmul:L%d:bwd", 5 - i, 0, 20.0, hc);
	for (int i = 6; i < 12; i++)
		submit(i, "proj_learn:L%d:learn", i - 6, 0, 10.0, NULL);
	starpu_task_wait_for_all();
	starpu_data_unregister(hc);
	CHECK(atomic_load(&norder) == 12, "%d of 12 tasks ran", atomic_load(&norder));
	int first_learn = MAXT * 2;
	for (int i = 6; i < 12; i++)
		first_learn = start_at[i] < first_learn ? start_at[i] : first_learn;
	CHECK(first_learn < end_at[5], "no learning task started before the chain's end (event %d, end %d)",
	      first_learn, end_at[5]);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("lspo", 1, 0);
	test_last();
	lspo_ctx_destroy(ctx);
	ctx = test_start("lspo", 2, 0);
	if (lspo_ctx_ncpus(ctx) < 2)
		fprintf(stderr, "only %d CPU worker: the two-worker test skipped\n", lspo_ctx_ncpus(ctx));
	else
		test_fills_idle();
	lspo_ctx_destroy(ctx);
	return test_finish("test_sched_learn");
}
