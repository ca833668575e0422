/*
 * gate.h - holds every CPU worker of a running StarPU busy while a test
 * submits tasks, so that they all wait in the policy's queues and the
 * order they run in is the policy's choice.  starpu_pause() does not do
 * this: it does not wait for the workers to stop, and a worker already in
 * its pop can take the first task submitted after it.
 */
#ifndef LSPO_TEST_GATE_H
#define LSPO_TEST_GATE_H

#include <sched.h>
#include <stdatomic.h>

#include <starpu.h>

static atomic_int gate_open, gate_running;

static void gate_wait(void *buffers[], void *arg)
{
	(void)buffers;
	(void)arg;
	atomic_fetch_add(&gate_running, 1);
	while (!atomic_load(&gate_open))
		sched_yield();
}

static struct starpu_codelet gate_cl = { .cpu_funcs = { gate_wait }, .nbuffers = 0, .name = "gate" };

/* Returns once every CPU worker runs a gate task. */
static inline void gate_close(void)
{
	int n = (int)starpu_cpu_worker_get_count();
	atomic_store(&gate_open, 0);
	atomic_store(&gate_running, 0);
	for (int i = 0; i < n; i++)
		if (starpu_task_insert(&gate_cl, STARPU_NAME, "gate", 0) != 0) {
			fprintf(stderr, "gate: cannot submit\n");
			exit(99);
		}
	while (atomic_load(&gate_running) < n)
		sched_yield();
}

static inline void gate_open_all(void)
{
	atomic_store(&gate_open, 1);
}

#endif
