/*
 * test_sched_prio.c - the `lspo` policy runs ready tasks by decreasing
 * priority, first come first served among equals, and never before their
 * dependencies, observed on a single CPU worker.
 */
#include <starpu.h>
#include <string.h>

#include "common.h"
#include "gate.h"

static int order[64], norder;

static void record(void *arg)
{
	order[norder++] = (int)(intptr_t)arg;   /* one worker: no race */
}

static void nothing(void *buffers[], void *arg) { (void)buffers; (void)arg; }

static struct starpu_codelet cl_nop = { .cpu_funcs = { nothing }, .nbuffers = 0, .name = "nop" };
static struct starpu_codelet cl_touch = {
	.cpu_funcs = { nothing }, .nbuffers = 1, .modes = { STARPU_RW }, .name = "touch" };

static void submit(struct starpu_codelet *cl, starpu_data_handle_t h, int prio, int id)
{
	int rc = h ? starpu_task_insert(cl, STARPU_RW, h, STARPU_PRIORITY, prio,
	                                STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0)
	           : starpu_task_insert(cl, STARPU_PRIORITY, prio,
	                                STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0);
	CHECK(rc == 0, "task_insert returned %d", rc);
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("lspo", 1, 0);
	CHECK(strcmp(starpu_sched_ctx_get_sched_policy(0)->policy_name, "lspo") == 0, "policy not installed");

	/* 1. Independent tasks: id = submission index. */
	static const int prio[] = { 1, 5, 3, 9, 0, 7, 5, 2 };
	static const int expect[] = { 3, 5, 1, 6, 2, 7, 0, 4 };  /* 9 7 5(first) 5 3 2 1 0 */
	gate_close();
	for (int i = 0; i < 8; i++)
		submit(&cl_nop, NULL, prio[i], i);
	gate_open_all();
	starpu_task_wait_for_all();
	CHECK(norder == 8, "%d tasks ran", norder);
	for (int i = 0; i < 8 && i < norder; i++)
		CHECK(order[i] == expect[i], "position %d: task %d (priority %d), expected task %d",
		      i, order[i], prio[order[i]], expect[i]);

	/* 2. A high-priority task waits for its low-priority input. */
	int x = 0;
	starpu_data_handle_t h;
	starpu_variable_data_register(&h, STARPU_MAIN_RAM, (uintptr_t)&x, sizeof(x));
	norder = 0;
	gate_close();
	submit(&cl_touch, h, 0, 100);    /* A */
	submit(&cl_touch, h, 10, 101);   /* B: depends on A */
	submit(&cl_nop, NULL, 5, 102);   /* C: independent */
	gate_open_all();
	starpu_task_wait_for_all();
	starpu_data_unregister(h);
	CHECK(norder == 3 && order[0] == 102 && order[1] == 100 && order[2] == 101,
	      "order %d %d %d, expected 102 100 101", order[0], order[1], order[2]);

	lspo_ctx_destroy(ctx);
	return test_finish("test_sched_prio");
}
