/*
 * sched_lspo.c - the `lspo` scheduling policy.
 *
 * One central list of ready tasks, highest priority first and first come,
 * first served among equal priorities.  An idle worker pops the first task
 * it can execute, so priorities decide the order across the whole machine.
 * The training step graph encodes the LSP-Offload schedule in priorities;
 * this policy is the part that makes StarPU honour them exactly.
 */
#include <limits.h>
#include <stdlib.h>

#include "sched_lspo.h"

struct lspo_sched {
	struct starpu_task_list ready;   /* sorted by decreasing priority */
	starpu_pthread_mutex_t lock;
};

/* Links `task` into `list` just before `next` (NULL: at the back). */
static void list_insert_before(struct starpu_task_list *list, struct starpu_task *task,
                               struct starpu_task *next)
{
	if (!next) {
		starpu_task_list_push_back(list, task);
		return;
	}
	if (next == list->head) {
		starpu_task_list_push_front(list, task);
		return;
	}
	task->next = next;
	task->prev = next->prev;
	next->prev->next = task;
	next->prev = task;
}

/* Keeps the list sorted; most pushes append, so look from the back first. */
static void insert_by_priority(struct starpu_task_list *list, struct starpu_task *task)
{
	struct starpu_task *back = starpu_task_list_back(list);
	if (!back || back->priority >= task->priority) {
		starpu_task_list_push_back(list, task);
		return;
	}
	struct starpu_task *t = starpu_task_list_begin(list);
	while (t != starpu_task_list_end(list) && t->priority >= task->priority)
		t = starpu_task_list_next(t);
	list_insert_before(list, task, t);
}

static void init_sched(unsigned ctx)
{
	struct lspo_sched *s = malloc(sizeof(*s));
	STARPU_ASSERT_MSG(s, "lspo policy: out of memory");
	starpu_task_list_init(&s->ready);
	STARPU_PTHREAD_MUTEX_INIT(&s->lock, NULL);
	starpu_sched_ctx_set_policy_data(ctx, s);
	/* Without this the context's range is 0..0 and priorities collapse. */
	if (!starpu_sched_ctx_min_priority_is_set(ctx))
		starpu_sched_ctx_set_min_priority(ctx, INT_MIN);
	if (!starpu_sched_ctx_max_priority_is_set(ctx))
		starpu_sched_ctx_set_max_priority(ctx, INT_MAX);
}

static void deinit_sched(unsigned ctx)
{
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	STARPU_ASSERT(starpu_task_list_empty(&s->ready));
	STARPU_PTHREAD_MUTEX_DESTROY(&s->lock);
	free(s);
}

static int push_task(struct starpu_task *task)
{
	unsigned ctx = task->sched_ctx;
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	struct starpu_worker_collection *workers = starpu_sched_ctx_get_worker_collection(ctx);
	struct starpu_sched_ctx_iterator it;
	int able[STARPU_NMAXWORKERS], nable = 0;

	/* Decide who can run it while the task is surely alive: once the lock
	 * is released, a worker may pop, run and free it. */
	STARPU_PTHREAD_MUTEX_LOCK(&s->lock);
	workers->init_iterator(workers, &it);
	while (workers->has_next(workers, &it)) {
		unsigned w = workers->get_next(workers, &it);
		if (starpu_worker_can_execute_task_first_impl(w, task, NULL))
			able[nable++] = (int)w;
	}
	insert_by_priority(&s->ready, task);
	starpu_push_task_end(task);
	STARPU_PTHREAD_MUTEX_UNLOCK(&s->lock);

	/* Wake one sleeping worker that can run it. */
	for (int i = 0; i < nable; i++)
		if (starpu_wake_worker_relax_light(able[i]))
			break;
	return 0;
}

static struct starpu_task *pop_task(unsigned ctx)
{
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	/* Unlocked peek: a worker that misses a push is woken by it. */
	if (starpu_task_list_empty(&s->ready))
		return NULL;

	unsigned worker = starpu_worker_get_id_check();
	struct starpu_task *chosen = NULL;
	STARPU_PTHREAD_MUTEX_LOCK(&s->lock);
	for (struct starpu_task *t = starpu_task_list_begin(&s->ready);
	     t != starpu_task_list_end(&s->ready); t = starpu_task_list_next(t)) {
		unsigned nimpl;
		if (starpu_worker_can_execute_task_first_impl(worker, t, &nimpl)) {
			starpu_task_set_implementation(t, nimpl);
			starpu_task_list_erase(&s->ready, t);
			chosen = t;
			break;
		}
	}
	STARPU_PTHREAD_MUTEX_UNLOCK(&s->lock);
	return chosen;
}

struct starpu_sched_policy lspo_sched_policy = {
	.init_sched = init_sched,
	.deinit_sched = deinit_sched,
	.push_task = push_task,
	.pop_task = pop_task,
	.policy_name = "lspo",
	.policy_description = "LSP-Offload: central list by decreasing priority, FIFO among equals",
	.worker_type = STARPU_WORKER_LIST,
};
