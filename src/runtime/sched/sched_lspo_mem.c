/*
 * sched_lspo_mem.c - the lspo policy's memory awareness (issue 13), two
 * hooks sched_lspo.c calls:
 *
 *   at push: a task placed on an accelerator has its inputs prefetched to
 *     that accelerator's memory as soon as it is ready (as dm* policies do
 *     when they queue a task), so that fetches overlap the running task;
 *   after a task ran on an accelerator: each handle it used whose last use
 *     in a training step this is, as the previous step showed, is marked
 *     with starpu_data_wont_use.  StarPU then evicts it first, and a
 *     prefetch may evict it (prefetches evict nothing else), so memory held
 *     by what the rest of the step will not read (a block's activations
 *     after its backward, a layer's weights after its update) makes room
 *     for what the next tasks need.
 *
 *   placement: updates an accelerator or a CPU worker may run (native
 *     AdamW, the gradient norm's partial sums) go to CPU workers, as the
 *     offloaded updates do, so that optimizer states leave the accelerator
 *     (their home is host memory) and the step's gradients follow them.
 *
 * All three act only once an accelerator's memory was short (a step of
 * the run evicted: lspo_mem_short), and the hints only while it still is
 * (the last step evicted): wont_use also writes data back to its home,
 * which costs bus time when nothing needs the room.  With room to spare
 * the schedule is the policy's own.
 *
 * The last use is learned per handle as (task name, count): the name of the
 * last task that used it in the previous step and how many times tasks of
 * that name used it since another name did.  Names are the engine's
 * interned tags, the same pointers every step.  A wrong guess costs a
 * refetch, never a wrong result: wont_use is a hint.  Steps are those of
 * memstat.h (lspo_mem_step).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "sched_lspo.h"
#include "runtime/memstat.h"

struct last_use {
	starpu_data_handle_t h;     /* key; NULL: free */
	const char *name, *learned; /* this step's last user so far; the previous step's last */
	int count, learned_count;   /* uses by `name` in a row; by `learned` at the end */
	int seen, done;             /* uses by `learned` this step; hint given this step */
	int step;                   /* step of name/count */
};

static struct {
	pthread_mutex_t lock;
	struct last_use *tab;
	size_t cap, n;
	int step;
} lu = { .lock = PTHREAD_MUTEX_INITIALIZER };

static size_t slot(starpu_data_handle_t h, size_t cap)
{
	uintptr_t x = (uintptr_t)h;
	x ^= x >> 17;
	x *= (uintptr_t)0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 7) & (cap - 1);
}

static int grow(void)
{
	size_t cap = lu.cap ? 2 * lu.cap : 1024;
	struct last_use *tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -1;
	for (size_t i = 0; i < lu.cap; i++) {
		if (!lu.tab[i].h)
			continue;
		size_t j = slot(lu.tab[i].h, cap);
		while (tab[j].h)
			j = (j + 1) & (cap - 1);
		tab[j] = lu.tab[i];
	}
	free(lu.tab);
	lu.tab = tab;
	lu.cap = cap;
	return 0;
}

static struct last_use *entry(starpu_data_handle_t h)
{
	if (2 * (lu.n + 1) > lu.cap && grow())
		return NULL;
	size_t i = slot(h, lu.cap);
	while (lu.tab[i].h && lu.tab[i].h != h)
		i = (i + 1) & (lu.cap - 1);
	if (!lu.tab[i].h) {
		memset(&lu.tab[i], 0, sizeof(lu.tab[i]));
		lu.tab[i].h = h;
		lu.n++;
	}
	return &lu.tab[i];
}

/* A new step: what the last one ended with becomes what is expected.
 * Outside steps (step 0) nothing is learned and the table is dropped:
 * handles may be unregistered there. */
static void new_step(int step)
{
	if (step <= 0) {
		free(lu.tab);
		lu.tab = NULL;
		lu.cap = lu.n = 0;
	}
	for (size_t i = 0; i < lu.cap; i++) {
		struct last_use *e = &lu.tab[i];
		if (!e->h)
			continue;
		e->learned = e->step == lu.step ? e->name : NULL;
		e->learned_count = e->count;
		e->name = NULL;
		e->count = e->seen = e->done = 0;
	}
	lu.step = step;
}

int lspo_sched_mem_upd_on_cpu(void)
{
	return lspo_mem_short();
}

void lspo_sched_mem_push(struct starpu_task *task, int accel_worker)
{
	if (accel_worker >= 0 && lspo_mem_short())
		starpu_prefetch_task_input_for_prio(task, (unsigned)accel_worker, task->priority);
}

void lspo_sched_mem_post_exec(struct starpu_task *task)
{
	int worker = starpu_worker_get_id();
	if (worker < 0 || starpu_worker_get_type(worker) == STARPU_CPU_WORKER || !task->cl || !task->name)
		return;
	int step = lspo_mem_step(), shrt = lspo_mem_short_now();
	unsigned nb = STARPU_TASK_GET_NBUFFERS(task);
	starpu_data_handle_t hint[STARPU_NMAXBUFS];
	unsigned nhint = 0;
	pthread_mutex_lock(&lu.lock);
	if (step != lu.step)
		new_step(step);
	for (unsigned i = 0; step > 0 && i < nb; i++) {
		int mode = (int)STARPU_TASK_GET_MODE(task, i);
		if (!(mode & (STARPU_R | STARPU_W)))
			continue;   /* scratch */
		struct last_use *e = entry(STARPU_TASK_GET_HANDLE(task, i));
		if (!e)
			break;
		if (e->name == task->name) {
			e->count++;
		} else {
			e->name = task->name;
			e->count = 1;
		}
		e->step = step;
		if (shrt && e->learned == task->name && ++e->seen == e->learned_count && !e->done
		    && nhint < STARPU_NMAXBUFS) {
			e->done = 1;
			hint[nhint++] = e->h;
		}
	}
	pthread_mutex_unlock(&lu.lock);
	for (unsigned i = 0; i < nhint; i++)
		starpu_data_wont_use(hint[i]);
}
