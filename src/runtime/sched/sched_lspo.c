/*
 * sched_lspo.c - the `lspo` scheduling policy: the layer-wise LSP-Offload
 * schedule read from task tags (tag.h), a priority list for every other
 * task.  The rules are in sched_lspo.h; the options, the policy's view of
 * tags and the automatic cut in sched_lspo_opts.c.
 *
 * Ready tasks wait in six lists (one per class), linked through the task's
 * own prev/next fields; task->sched_data caches what the name says.  One
 * mutex protects the policy's state; pop holds it while it picks a task.
 */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sched_lspo.h"

/* C_IDLE: projector learning (issue 12), only on a worker nothing else wants. */
enum cls { C_HEAD = 0, C_BWD, C_LCFS, C_FWD, C_OTHER, C_FCFS, C_IDLE, NCLS };
enum place { P_ANY = 0, P_ACCEL, P_CPU, NPLACE };

/* ------------------------------------------------------------------------ */
/* Per-task cache in task->sched_data: 32 bits, so it fits any uintptr_t.   */
/*   bit 0 valid | 1-3 class | 4-7 stage | 8-9 placement | 10 delayed |     */
/*   11-20 layer | 21-30 trigger layer | 31 has a layer                     */

_Static_assert(LSPO_NSTAGES <= 16, "a stage must fit the cache's 4 bits");
_Static_assert(LSPO_SCHED_MAX_LAYER <= 1023, "a layer must fit the cache's 10 bits");

#define TI_VALID 1u
#define TI_DELAYED (1u << 10)
#define TI_HASLAYER (1u << 31)

static uintptr_t ti_make(enum cls c, enum lspo_stage st, enum place p, int layer, int delayed,
                         int trigger)
{
	uintptr_t v = TI_VALID | ((uintptr_t)c << 1) | ((uintptr_t)st << 4) | ((uintptr_t)p << 8);
	if (delayed)
		v |= TI_DELAYED | ((uintptr_t)trigger << 21);
	if (layer >= 0)
		v |= TI_HASLAYER | ((uintptr_t)layer << 11);
	return v;
}
static inline uintptr_t ti(const struct starpu_task *t) { return (uintptr_t)t->sched_data; }
static inline enum cls ti_cls(uintptr_t v) { return (enum cls)((v >> 1) & 7u); }
static inline enum lspo_stage ti_stage(uintptr_t v) { return (enum lspo_stage)((v >> 4) & 15u); }
static inline enum place ti_place(uintptr_t v) { return (enum place)((v >> 8) & 3u); }
static inline int ti_layer(uintptr_t v) { return v & TI_HASLAYER ? (int)((v >> 11) & 1023u) : -1; }
static inline int ti_trigger(uintptr_t v) { return (int)((v >> 21) & 1023u); }

/* ------------------------------------------------------------------------ */
/* Policy state                                                             */

#define NO_FRONT INT_MAX

struct lspo_sched {
	starpu_pthread_mutex_t lock;
	struct starpu_task_list q[NCLS];
	int nplace[NCLS][NPLACE];      /* queued tasks per class and placement */
	atomic_int nqueued;            /* all lists; read unlocked by pop */
	int ndelayed;                  /* queued tasks that carry a delay */

	struct lspo_sched_opts opts;   /* snapshot, refreshed when the version changes */
	unsigned opts_version;
	int nlayers_seen;              /* max layer + 1 in task names */
	int auto_cut;                  /* from the estimates; -1: none yet */
	atomic_int cut;                /* cut_in_use(), for reads outside the lock */
	int published[2];              /* what lspo_sched_publish was last told */

	/* Backward progress, for delays. */
	int front;                     /* lowest layer whose bwd was popped in this pass */
	int fwd_popped;                /* a fwd task was popped since the last bwd pop */
	int bwd_live;                  /* bwd tasks pushed and not yet retired */
	int retire[STARPU_NMAXWORKERS];/* bwd tasks a worker ran, retired at its next pop */
	atomic_int running[2];         /* tasks popped and not yet done: [0] others, [1] C_IDLE */
	int idle_ok;                   /* pick may hand out C_IDLE tasks (set by pop) */
	atomic_int inflight[STARPU_NMAXWORKERS]; /* tasks a worker popped and has not finished */

	/* Estimates for the automatic cut (microseconds, per layer). */
	int fwd_pushed;                /* a fwd task was pushed since the last bwd push */
	int est_any;
	double est_bwd[LSPO_SCHED_MAX_LAYER + 1];
	double est_pipe[LSPO_SCHED_MAX_LAYER + 1];
};

static int cut_in_use(const struct lspo_sched *s)
{
	if (s->opts.cut >= 0)
		return s->opts.cut;
	if (s->auto_cut >= 0)
		return s->auto_cut;
	int n = s->opts.nlayers > 0 ? s->opts.nlayers : s->nlayers_seen;
	return lspo_sched_default_cut(n);
}

static int delay_of(const struct lspo_sched_opts *o, enum lspo_stage st)
{
	switch (st) {
	case LSPO_STAGE_UPD: return o->delay_upd;
	case LSPO_STAGE_UPLOAD: return o->delay_upload;
	case LSPO_STAGE_APPLY: return o->delay_apply;
	default: return 0;
	}
}

static int is_accel_stage(enum lspo_stage st)
{
	return st == LSPO_STAGE_FWD || st == LSPO_STAGE_BWD || st == LSPO_STAGE_PROJ ||
	       st == LSPO_STAGE_APPLY || st == LSPO_STAGE_RECOMPUTE;
}

static int is_pipeline_stage(enum lspo_stage st)
{
	return st == LSPO_STAGE_PROJ || st == LSPO_STAGE_OFFLOAD || st == LSPO_STAGE_UPD ||
	       st == LSPO_STAGE_UPLOAD || st == LSPO_STAGE_APPLY || st == LSPO_STAGE_REDUCE;
}

/* ------------------------------------------------------------------------ */
/* Sorted lists                                                             */

/* Layer keys: a layer-less bwd sorts as the deepest, a layer-less fwd last. */
static int sort_layer(uintptr_t v) { return v & TI_HASLAYER ? ti_layer(v) : INT_MAX; }

/* 1 if a must run before b (both in class c); equal keys keep arrival order. */
static int goes_before(enum cls c, const struct starpu_task *a, const struct starpu_task *b)
{
	switch (c) {
	case C_BWD: {
		int la = sort_layer(ti(a)), lb = sort_layer(ti(b));
		if (la != lb)
			return la > lb;
		return a->priority > b->priority;
	}
	case C_FWD: {
		int la = sort_layer(ti(a)), lb = sort_layer(ti(b));
		if (la != lb)
			return la < lb;
		return a->priority > b->priority;
	}
	case C_OTHER:
		return a->priority > b->priority;
	default:
		return 0;
	}
}

static void insert(struct starpu_task_list *list, enum cls c, struct starpu_task *task)
{
	if (c == C_LCFS) {
		starpu_task_list_push_front(list, task);
		return;
	}
	/* Walk from the back while the new task goes before (most pushes append). */
	struct starpu_task *t = starpu_task_list_back(list);
	while (t && goes_before(c, task, t))
		t = t->prev;
	if (!t) {
		starpu_task_list_push_front(list, task);
	} else if (t == starpu_task_list_back(list)) {
		starpu_task_list_push_back(list, task);
	} else {
		task->prev = t;
		task->next = t->next;
		t->next->prev = task;
		t->next = task;
	}
}

/* ------------------------------------------------------------------------ */
/* Init                                                                     */

static void init_sched(unsigned ctx)
{
	struct lspo_sched *s = calloc(1, sizeof(*s));
	STARPU_ASSERT_MSG(s, "lspo policy: out of memory");
	for (int c = 0; c < NCLS; c++)
		starpu_task_list_init(&s->q[c]);
	atomic_init(&s->nqueued, 0);
	atomic_init(&s->running[0], 0);
	atomic_init(&s->running[1], 0);
	STARPU_PTHREAD_MUTEX_INIT(&s->lock, NULL);
	s->opts_version = lspo_sched_opts_snapshot(&s->opts);
	s->auto_cut = -1;
	atomic_init(&s->cut, cut_in_use(s));
	s->published[0] = 0;
	s->published[1] = -1;
	s->front = NO_FRONT;
	lspo_sched_publish(0, -1);
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
	for (int c = 0; c < NCLS; c++)
		STARPU_ASSERT(starpu_task_list_empty(&s->q[c]));
	STARPU_PTHREAD_MUTEX_DESTROY(&s->lock);
	free(s);
}

/* ------------------------------------------------------------------------ */
/* Push                                                                     */

/* Expected length of `task` on worker w plus, for pipeline stages, the
 * expected transfer of its inputs to w; NaN when the models cannot tell. */
static double estimate(struct starpu_task *task, unsigned ctx, int w, enum lspo_stage st)
{
	unsigned nimpl;
	if (w < 0 || !starpu_worker_can_execute_task_first_impl((unsigned)w, task, &nimpl))
		return NAN;
	double len = starpu_task_expected_length(task, starpu_worker_get_perf_archtype(w, ctx), nimpl);
	if (!isfinite(len) || len <= 0.0)
		return NAN;
	if (st != LSPO_STAGE_BWD) {
		double xfer = starpu_task_expected_data_transfer_time_for(task, (unsigned)w);
		if (!isfinite(xfer) || xfer < 0.0)
			return NAN;
		len += xfer;
	}
	return len;
}

static void refresh_opts(struct lspo_sched *s)
{
	struct lspo_sched_opts o;
	unsigned v = lspo_sched_opts_snapshot(&o);
	if (v != s->opts_version) {
		s->opts = o;
		s->opts_version = v;
	}
}

static int push_task(struct starpu_task *task)
{
	unsigned ctx = task->sched_ctx;
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	struct starpu_worker_collection *workers = starpu_sched_ctx_get_worker_collection(ctx);
	struct starpu_sched_ctx_iterator it;
	int able[STARPU_NMAXWORKERS], nable = 0, first_cpu = -1, first_acc = -1;

	/* Everything about the task is decided while it is surely alive: once
	 * the lock is released, a worker may pop, run and free it. */
	int layer;
	enum lspo_stage st = lspo_sched_stage_of(task->name, &layer);
	workers->init_iterator(workers, &it);
	while (workers->has_next(workers, &it)) {
		unsigned w = workers->get_next(workers, &it);
		if (!starpu_worker_can_execute_task_first_impl(w, task, NULL))
			continue;
		able[nable++] = (int)w;
		if (starpu_worker_get_type((int)w) == STARPU_CPU_WORKER) {
			if (first_cpu < 0)
				first_cpu = (int)w;
		} else if (first_acc < 0) {
			first_acc = (int)w;
		}
	}
	enum place place = P_ANY;
	/* An update an accelerator may run (native AdamW) stays with its data;
	 * the offloaded ones are restricted to CPU workers by their codelet or
	 * `where`, so no accelerator is able. */
	if ((is_accel_stage(st) || st == LSPO_STAGE_UPD) && first_acc >= 0)
		place = P_ACCEL;
	else if (st == LSPO_STAGE_UPD && first_cpu >= 0)
		place = P_CPU;
	/* A projector's learning is a chain of dependent small tasks on one
	 * gradient: where an accelerator can run them they all stay there, since
	 * a chain that alternates moves the gradient across the bus each time. */
	if (st == LSPO_STAGE_LEARN && first_acc >= 0)
		place = P_ACCEL;
	if (st == LSPO_STAGE_UPD && place == P_ACCEL && first_cpu >= 0 &&
	    lspo_sched_mem_upd_on_cpu(task, first_acc))
		place = P_CPU;   /* memory short: some optimizer states stay home (sched_lspo_mem.c) */
	/* A step-level update (the clipping factor from the norm's partial sums)
	 * is a few scalars: it runs where its inputs are, rather than sending
	 * them across the bus and its result back on the step's critical path. */
	if (st == LSPO_STAGE_UPD && layer < 0 && first_acc >= 0 && first_cpu >= 0)
		place = lspo_sched_inputs_on_host(task) ? P_CPU : P_ACCEL;
	if (st == LSPO_STAGE_UPD && layer >= 0 && first_acc < 0)
		lspo_sched_mem_upd_home(task);   /* offloaded: its gradient goes home */
	/* Memory short: a task whose data the host holds may run there. */
	if ((st == LSPO_STAGE_FWD || st == LSPO_STAGE_BWD || st == LSPO_STAGE_RECOMPUTE) && place == P_ACCEL &&
	    first_cpu >= 0 && lspo_sched_mem_on_host(task, ctx, first_acc, first_cpu)) {
		place = P_CPU;
		lspo_sched_mem_prefetch_later(task, first_acc);
	}
	if (st == LSPO_STAGE_APPLY && place == P_ACCEL && first_cpu >= 0 && lspo_sched_mem_apply_home(task))
		place = P_CPU;   /* its weight would only be written back (sched_lspo_mem.c) */
	int rep = place == P_ACCEL ? first_acc : place == P_CPU ? first_cpu
	        : first_acc >= 0 ? first_acc : first_cpu;   /* who would likely run it */

	struct lspo_sched_opts o;
	lspo_sched_opts_snapshot(&o);
	double est = NAN;
	int want_est = o.cut < 0 && layer >= 0 && st != LSPO_STAGE_FWD;
	if (want_est)
		est = estimate(task, ctx, rep, st);

	/* An apply's input (the update) comes back from host memory: start the
	 * upload now, urgently for shallow layers, when the bus is idle for deep
	 * ones.  Not on a CPU-only machine (place is P_ACCEL only with one). */
	if (st == LSPO_STAGE_APPLY && place == P_ACCEL) {
		if (layer >= 0 && layer >= atomic_load(&s->cut))
			starpu_idle_prefetch_task_input_for(task, (unsigned)first_acc);
		else
			starpu_prefetch_task_input_for_prio(task, (unsigned)first_acc, task->priority);
	}
	/* An update's input (G_hat, or zero's gradient) leaves the accelerator
	 * as soon as it is ready, before a CPU worker is free to run the update. */
	if (st == LSPO_STAGE_UPD && place == P_CPU && starpu_cuda_worker_get_count() > 0)
		starpu_prefetch_task_input_for_prio(task, (unsigned)first_cpu, task->priority);
	lspo_sched_mem_push(task, place == P_ACCEL ? first_acc : -1);   /* sched_lspo_mem.c */

	STARPU_PTHREAD_MUTEX_LOCK(&s->lock);
	refresh_opts(s);
	if (layer >= s->nlayers_seen)
		s->nlayers_seen = layer + 1;

	/* The class. */
	enum cls c = C_OTHER;
	int delayed = 0, trigger = 0;
	if (st == LSPO_STAGE_FWD) {
		c = C_FWD;
	} else if (st == LSPO_STAGE_LEARN) {
		c = C_IDLE;
	} else if (st == LSPO_STAGE_BWD || st == LSPO_STAGE_RECOMPUTE) {
		c = C_BWD;   /* a checkpointed block's forward again, on the backward's path */
	} else if (is_pipeline_stage(st) && layer >= 0) {
		int deep = layer >= cut_in_use(s);
		if (st == LSPO_STAGE_REDUCE)   /* the sums across ranks leave as soon as formed */
			c = C_HEAD;
		else if (!deep)
			c = C_LCFS;
		else if (st == LSPO_STAGE_PROJ || st == LSPO_STAGE_OFFLOAD)
			c = C_HEAD;
		else
			c = C_FCFS;
		int d = delay_of(&s->opts, st);
		if (d > 0) {
			delayed = 1;
			trigger = layer - d > 0 ? layer - d : 0;
		}
	}
	task->sched_data = (void *)ti_make(c, st, place, layer, delayed, trigger);

	/* Estimates of this pass; a bwd pushed after a fwd starts the next. */
	if (st == LSPO_STAGE_FWD) {
		s->fwd_pushed = 1;
	} else if (st == LSPO_STAGE_BWD && s->fwd_pushed) {
		s->fwd_pushed = 0;
		if (s->est_any && s->opts.cut < 0) {
			int n = s->opts.nlayers > 0 ? s->opts.nlayers : s->nlayers_seen;
			if (n > LSPO_SCHED_MAX_LAYER + 1)
				n = LSPO_SCHED_MAX_LAYER + 1;
			s->auto_cut = lspo_sched_auto_cut(n, s->est_bwd, s->est_pipe);
		}
		memset(s->est_bwd, 0, sizeof(s->est_bwd));
		memset(s->est_pipe, 0, sizeof(s->est_pipe));
		s->est_any = 0;
	}
	if (want_est && (st == LSPO_STAGE_BWD || is_pipeline_stage(st))) {
		double *acc = st == LSPO_STAGE_BWD ? s->est_bwd : s->est_pipe;
		acc[layer] += est;   /* NaN poisons the layer: unusable estimates */
		s->est_any = 1;
	}
	atomic_store(&s->cut, cut_in_use(s));
	if (s->published[0] != s->nlayers_seen || s->published[1] != s->auto_cut) {
		s->published[0] = s->nlayers_seen;
		s->published[1] = s->auto_cut;
		lspo_sched_publish(s->nlayers_seen, s->auto_cut);
	}

	if (st == LSPO_STAGE_BWD)
		s->bwd_live++;
	if (delayed)
		s->ndelayed++;
	s->nplace[c][place]++;
	insert(&s->q[c], c, task);
	atomic_fetch_add(&s->nqueued, 1);
	starpu_push_task_end(task);
	STARPU_PTHREAD_MUTEX_UNLOCK(&s->lock);

	/* Wake every worker that may run it.  Waking only the first that
	 * answers leaves the others asleep when several tasks are pushed in a
	 * row (the row blocks of a split product): the one already awake
	 * answers each time and runs them one after the other. */
	for (int i = 0; i < nable; i++) {
		int cpu = starpu_worker_get_type(able[i]) == STARPU_CPU_WORKER;
		if ((place == P_ACCEL && cpu) || (place == P_CPU && !cpu))
			continue;
		starpu_wake_worker_relax_light(able[i]);
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Pop                                                                      */

static int may_take(const struct lspo_sched *s, uintptr_t v, int cpu, int strict)
{
	enum place p = ti_place(v);
	if ((p == P_ACCEL && cpu) || (p == P_CPU && !cpu))
		return 0;
	if (strict && (v & TI_DELAYED) && s->front != NO_FRONT && s->front > ti_trigger(v))
		return 0;
	return 1;
}

/* A CUDA worker asks ahead while its kernels run (StarPU's pipeline, 4 deep
 * under this policy: runtime/ctx.c).  Its second task waits behind one
 * kernel, but a fwd task given as its third or fourth is committed before
 * the forward chain's next task is ready, which then waits behind it: the
 * slots beyond LSPO_SCHED_AHEAD take no fwd task.  (Simulated: the 124M-shaped
 * lsp model of tests/test_sim.sh 14.14 -> 14.01 ms, GPT-2 774M 119.5 -> 119.9.) */
#define LSPO_SCHED_AHEAD 2

static double task_bytes(struct starpu_task *t)
{
	double b = 0.0;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(t); i++)
		b += (double)starpu_data_get_size(STARPU_TASK_GET_HANDLE(t, i));
	return b;
}

/* When the next task a CPU worker may take from a list is an update, it
 * takes the largest update of the list it may run instead: once the
 * clipping factor is known every update is ready at once, and the largest
 * (the embedding's, the head's) started last ends the step on one worker
 * while the others idle (SIMULATED, Llama-shaped 1B, zero, bf16, 4 GiB:
 * 1054 -> 863 ms a step, dmdas 1015).  Bytes stand for the time (AdamW is
 * linear in its data); ties keep the list's order. */
static struct starpu_task *largest_update(struct lspo_sched *s, enum cls c, unsigned worker, int strict)
{
	struct starpu_task *best = NULL;
	double best_bytes = -1.0;
	for (struct starpu_task *t = starpu_task_list_begin(&s->q[c]);
	     t != starpu_task_list_end(&s->q[c]); t = starpu_task_list_next(t)) {
		if (ti_stage(ti(t)) != LSPO_STAGE_UPD || !may_take(s, ti(t), 1, strict) ||
		    !starpu_worker_can_execute_task_first_impl(worker, t, NULL))
			continue;
		double b = task_bytes(t);
		if (b > best_bytes) {
			best = t;
			best_bytes = b;
		}
	}
	return best;
}

static struct starpu_task *pick(struct lspo_sched *s, unsigned worker, int cpu, int strict, int ahead)
{
	for (int c = 0; c < NCLS; c++) {
		if (s->nplace[c][P_ANY] + s->nplace[c][cpu ? P_CPU : P_ACCEL] == 0 || (c == C_IDLE && !s->idle_ok))
			continue;
		if (ahead && c == C_FWD)
			continue;
		for (struct starpu_task *t = starpu_task_list_begin(&s->q[c]);
		     t != starpu_task_list_end(&s->q[c]); t = starpu_task_list_next(t)) {
			unsigned nimpl;
			if (!may_take(s, ti(t), cpu, strict) ||
			    !starpu_worker_can_execute_task_first_impl(worker, t, &nimpl))
				continue;
			if (cpu && (c == C_FCFS || c == C_LCFS) && ti_stage(ti(t)) == LSPO_STAGE_UPD) {
				t = largest_update(s, (enum cls)c, worker, strict);
				starpu_worker_can_execute_task_first_impl(worker, t, &nimpl);
			}
			starpu_task_set_implementation(t, nimpl);
			starpu_task_list_erase(&s->q[c], t);
			return t;
		}
	}
	return NULL;
}

static void wake_others(unsigned ctx, unsigned self)
{
	struct starpu_worker_collection *workers = starpu_sched_ctx_get_worker_collection(ctx);
	struct starpu_sched_ctx_iterator it;
	workers->init_iterator(workers, &it);
	while (workers->has_next(workers, &it)) {
		unsigned w = workers->get_next(workers, &it);
		if (w != self)
			starpu_wake_worker_relax_light((int)w);
	}
}

static struct starpu_task *pop_task(unsigned ctx)
{
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	unsigned worker = starpu_worker_get_id_check();
	/* Unlocked peek: a worker that misses a push is woken by it.  A worker
	 * with bwd tasks to retire must come in (see post_exec_hook). */
	if (atomic_load(&s->nqueued) == 0 && !s->retire[worker])
		return NULL;

	int cpu = starpu_worker_get_type((int)worker) == STARPU_CPU_WORKER;
	int wake = 0;
	STARPU_PTHREAD_MUTEX_LOCK(&s->lock);
	if (s->retire[worker]) {
		/* Its successors have been pushed by now: the bwd is over. */
		s->bwd_live -= s->retire[worker];
		s->retire[worker] = 0;
		wake = s->bwd_live == 0 && s->ndelayed > 0;
	}
	/* Learning fills idle workers: while other tasks run, one worker stays
	 * out of it, free for the next backward or apply. */
	s->idle_ok = atomic_load(&s->running[0]) == 0
	             || atomic_load(&s->running[1]) < (int)starpu_sched_ctx_get_nworkers(ctx) - 1;
	int ahead = !cpu && atomic_load(&s->inflight[worker]) >= LSPO_SCHED_AHEAD;
	struct starpu_task *task = pick(s, worker, cpu, 1, ahead);
	if (!task && s->ndelayed > 0 && s->bwd_live == 0)
		task = pick(s, worker, cpu, 0, ahead);   /* no backward left to wait for */
	if (task) {
		uintptr_t v = ti(task);
		enum cls c = ti_cls(v);
		s->nplace[c][ti_place(v)]--;
		atomic_fetch_sub(&s->nqueued, 1);
		if (v & TI_DELAYED)
			s->ndelayed--;
		atomic_fetch_add(&s->running[c == C_IDLE], 1);
		atomic_fetch_add(&s->inflight[worker], 1);
		enum lspo_stage st = ti_stage(v);
		if (st == LSPO_STAGE_FWD) {
			s->fwd_popped = 1;
		} else if (st == LSPO_STAGE_BWD && ti_layer(v) >= 0) {
			int old = s->front;
			if (s->fwd_popped || s->front == NO_FRONT || ti_layer(v) < s->front)
				s->front = ti_layer(v);
			s->fwd_popped = 0;
			if (s->front != old && s->ndelayed > 0)
				wake = 1;
		}
	}
	STARPU_PTHREAD_MUTEX_UNLOCK(&s->lock);
	if (wake)
		wake_others(ctx, worker);
	return task;
}

/* Runs on the worker that ran the task, before StarPU pushes the tasks that
 * depended on it: a bwd stays "live" until that worker's next pop. */
static void post_exec_hook(struct starpu_task *task, unsigned ctx)
{
	lspo_sched_mem_post_exec(task);   /* sched_lspo_mem.c */
	uintptr_t v = ti(task);
	if (!(v & TI_VALID))
		return;
	struct lspo_sched *s = starpu_sched_ctx_get_policy_data(ctx);
	atomic_fetch_sub(&s->running[ti_cls(v) == C_IDLE], 1);
	int w = starpu_worker_get_id();
	if (w >= 0)
		atomic_fetch_sub(&s->inflight[w], 1);
	if (ti_stage(v) != LSPO_STAGE_BWD)
		return;
	STARPU_PTHREAD_MUTEX_LOCK(&s->lock);
	if (w >= 0)
		s->retire[w]++;
	else
		s->bwd_live--;
	STARPU_PTHREAD_MUTEX_UNLOCK(&s->lock);
}

struct starpu_sched_policy lspo_sched_policy = {
	.init_sched = init_sched,
	.deinit_sched = deinit_sched,
	.push_task = push_task,
	.pop_task = pop_task,
	.post_exec_hook = post_exec_hook,
	.policy_name = "lspo",
	.policy_description = "LSP-Offload layer-wise schedule from task names "
	                      "(backward first, deep layers FCFS, shallow LCFS); priorities otherwise",
	.worker_type = STARPU_WORKER_LIST,
};
