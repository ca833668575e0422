/*
 * memstat.c - the memory StarPU allocated on each node, and what an
 * accelerator evicted and fetched again (issue 13; memstat.h).
 *
 * Peaks.  StarPU 1.3 counts, per memory node, the bytes its allocator holds
 * (data replicas, scratch buffers, the cached buffers of freed data) and
 * exposes them as total - available; the exec hooks sample that before and
 * after every task, and each step's end samples it once more.  Without a
 * cap StarPU frees nothing during a run, so the last sample of a step is its
 * peak; under a cap the peak is the largest sample, at most the cap.
 *
 * Evictions.  StarPU 1.3 neither counts evictions nor reports single
 * transfers without FxT, so a step's refetches are found from its
 * host->device bytes (the bus ledger) minus the bytes its tasks needed:
 * during a step the hooks follow every handle a task uses (not scratch):
 * a write on any node makes other nodes' copies stale, and so does a
 * write of the host outside tasks (the engine tells: lspo_mem_host_wrote); a read on an accelerator node needs the data's bytes
 * unless that node already holds the current version, as it did at the
 * previous step's end (asked from StarPU then) or since a task there used
 * it.
 * Anything moved beyond that was moved because the node had dropped a copy
 * it held: refetched.  Evicted bytes add the copies a node held in the
 * step, current and unused elsewhere, that it no longer holds at the end, unless
 * the engine dropped them (dead activations: lspo_mem_dropped).
 *
 * Handles enter the table only inside training steps, and StarPU is asked
 * about them only at the step's end, for those used in it: then they are
 * sure to be registered (work between steps may unregister others, and
 * lspo_mem_mark(0) forgets everything).  Between steps, task writes to
 * followed handles still count.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "memstat.h"
#include "trace.h"

#define NODES LSPO_MEM_MAXNODES

struct ment {
	starpu_data_handle_t h;    /* key; NULL: free slot */
	size_t size;
	unsigned wver;             /* writes seen */
	int seen;                  /* last step a task used it */
	unsigned char valid[NODES];/* the node holds version vver[node] */
	unsigned vver[NODES];
	int used_on[NODES];        /* last step a task on that node used it */
	int dropped;               /* last step its contents were dropped (lspo_mem_dropped) */
};

static struct {
	pthread_mutex_t lock;
	int on, step;              /* step > 0: inside that training step */
	struct starpu_sched_policy policy;
	void (*orig_pre)(struct starpu_task *, unsigned);
	void (*orig_post)(struct starpu_task *, unsigned);
	struct ment *tab;
	size_t cap, n;
	double needed;             /* host->device bytes the open step needed */
	long long h2d0;            /* bus ledger at the step's opening */
	double peak_step[NODES], peak_run[NODES];
	struct lspo_mem_stats last;
	int was_short;             /* a step of this run evicted (since lspo_mem_forget_short) */
	struct lspo_mem_stats *hist;   /* per step, for the trace summary */
	int *hist_step;
	size_t nhist, caphist;
	char names[NODES][32];
} ms = { .lock = PTHREAD_MUTEX_INITIALIZER };

static unsigned nnodes(void)
{
	unsigned n = starpu_memory_nodes_get_count();
	return n < NODES ? n : NODES;
}

static int is_accel(unsigned node)
{
	return starpu_node_get_kind(node) != STARPU_CPU_RAM;
}

/* Under the lock. */
static void sample(void)
{
	for (unsigned n = 0; n < nnodes(); n++) {
		starpu_ssize_t total = starpu_memory_get_total(n);
		if (total <= 0)
			continue;
		double used = (double)(total - starpu_memory_get_available(n));
		if (used > ms.peak_step[n])
			ms.peak_step[n] = used;
		if (used > ms.peak_run[n])
			ms.peak_run[n] = used;
	}
}

/* ------------------------------------------------------------------------ */
/* The table of followed handles (open addressing, keyed by handle)          */

static size_t slot(starpu_data_handle_t h, size_t cap)
{
	uintptr_t x = (uintptr_t)h;
	x ^= x >> 17;
	x *= (uintptr_t)0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 7) & (cap - 1);
}

static struct ment *find(starpu_data_handle_t h)
{
	if (!ms.cap)
		return NULL;
	for (size_t i = slot(h, ms.cap);; i = (i + 1) & (ms.cap - 1)) {
		if (ms.tab[i].h == h)
			return &ms.tab[i];
		if (!ms.tab[i].h)
			return NULL;
	}
}

/* Rebuilds the table with room for `need` entries, keeping those `keep` accepts. */
static int rebuild(size_t need, int keep_step)
{
	size_t cap = 1024;
	while (cap < 2 * need)
		cap *= 2;
	struct ment *tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -1;
	size_t n = 0;
	for (size_t i = 0; i < ms.cap; i++) {
		struct ment *e = &ms.tab[i];
		if (!e->h || (keep_step && e->seen != keep_step))
			continue;
		size_t j = slot(e->h, cap);
		while (tab[j].h)
			j = (j + 1) & (cap - 1);
		tab[j] = *e;
		n++;
	}
	free(ms.tab);
	ms.tab = tab;
	ms.cap = cap;
	ms.n = n;
	return 0;
}

static struct ment *insert(starpu_data_handle_t h)
{
	struct ment *e = find(h);
	if (e)
		return e;
	if (2 * (ms.n + 1) > ms.cap && rebuild(ms.n + 1, 0))
		return NULL;
	size_t i = slot(h, ms.cap);
	while (ms.tab[i].h)
		i = (i + 1) & (ms.cap - 1);
	e = &ms.tab[i];
	memset(e, 0, sizeof(*e));
	e->h = h;
	e->size = starpu_data_get_size(h);
	ms.n++;
	return e;
}

static void forget(void)
{
	free(ms.tab);
	ms.tab = NULL;
	ms.cap = ms.n = 0;
}

static int holds(struct ment *e, unsigned node)
{
	int alloc = 0, valid = 0, req = 0;
	starpu_data_query_status(e->h, (int)node, &alloc, &valid, &req);
	return valid;
}

/* ------------------------------------------------------------------------ */
/* Hooks                                                                     */

/* Inside a step every handle a task uses is followed; outside steps only
 * the writes to handles already followed count (their copies elsewhere go
 * stale), and nothing new is added. */
static void follow(struct starpu_task *task)
{
	int worker = starpu_worker_get_id();
	unsigned node = worker >= 0 ? starpu_worker_get_memory_node((unsigned)worker) : STARPU_MAIN_RAM;
	int accel = node < NODES && is_accel(node);
	unsigned nb = task->cl ? STARPU_TASK_GET_NBUFFERS(task) : 0;
	for (unsigned i = 0; i < nb; i++) {
		int mode = (int)STARPU_TASK_GET_MODE(task, i);
		if (!(mode & (STARPU_R | STARPU_W)))
			continue;   /* scratch: registered and dropped by the task's submitter */
		struct ment *e = ms.step > 0 ? insert(STARPU_TASK_GET_HANDLE(task, i)) : find(STARPU_TASK_GET_HANDLE(task, i));
		if (!e) {
			if (ms.step > 0)
				return;   /* out of memory: this task is not followed */
			continue;
		}
		if (ms.step <= 0) {
			if (mode & STARPU_W)
				e->wver++;
			continue;
		}
		e->seen = ms.step;
		if (accel && (mode & STARPU_R) && !(e->valid[node] && e->vver[node] == e->wver))
			ms.needed += (double)e->size;
		if (mode & STARPU_W)
			e->wver++;
		if (accel) {
			e->valid[node] = 1;
			e->vver[node] = e->wver;
			e->used_on[node] = ms.step;
		}
	}
}

static void mem_pre_exec(struct starpu_task *task, unsigned sched_ctx)
{
	pthread_mutex_lock(&ms.lock);
	if (ms.on) {
		sample();
		follow(task);
	}
	pthread_mutex_unlock(&ms.lock);
	if (ms.orig_pre)
		ms.orig_pre(task, sched_ctx);
}

static void mem_post_exec(struct starpu_task *task, unsigned sched_ctx)
{
	pthread_mutex_lock(&ms.lock);
	if (ms.on)
		sample();
	pthread_mutex_unlock(&ms.lock);
	if (ms.orig_post)
		ms.orig_post(task, sched_ctx);
}

void lspo_mem_wrap_policy(struct starpu_sched_policy **policy)
{
	ms.policy = **policy;
	ms.orig_pre = ms.policy.pre_exec_hook;
	ms.orig_post = ms.policy.post_exec_hook;
	ms.policy.pre_exec_hook = mem_pre_exec;
	ms.policy.post_exec_hook = mem_post_exec;
	*policy = &ms.policy;
}

void lspo_mem_started(void)
{
	pthread_mutex_lock(&ms.lock);
	forget();
	memset(ms.peak_step, 0, sizeof(ms.peak_step));
	memset(ms.peak_run, 0, sizeof(ms.peak_run));
	memset(&ms.last, 0, sizeof(ms.last));
	ms.was_short = 0;
	ms.step = 0;
	ms.on = 1;
	for (unsigned n = 0; n < nnodes(); n++)
		if (starpu_memory_node_get_name(n, ms.names[n], sizeof(ms.names[n])) < 0)
			snprintf(ms.names[n], sizeof(ms.names[n]), "node %u", n);
	sample();
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_stopped(void)
{
	pthread_mutex_lock(&ms.lock);
	ms.on = 0;
	ms.step = 0;
	forget();
	free(ms.hist);
	free(ms.hist_step);
	ms.hist = NULL;
	ms.hist_step = NULL;
	ms.nhist = ms.caphist = 0;
	pthread_mutex_unlock(&ms.lock);
}

static long long ledger_h2d(void)
{
	long long b[LSPO_BUS_NDIRS];
	lspo_bus_totals(b, NULL, NULL);
	return b[LSPO_BUS_H2D];
}

void lspo_mem_mark(int step)
{
	long long h2d = ledger_h2d();   /* outside our lock: the ledger has its own */
	pthread_mutex_lock(&ms.lock);
	if (!ms.on) {
		pthread_mutex_unlock(&ms.lock);
		return;
	}
	if (step <= 0) {
		forget();
	} else {
		ms.needed = 0;
		ms.h2d0 = h2d;
		memset(ms.peak_step, 0, sizeof(ms.peak_step));
		sample();
	}
	ms.step = step;
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_host_wrote(starpu_data_handle_t h)
{
	pthread_mutex_lock(&ms.lock);
	struct ment *e = ms.on ? find(h) : NULL;
	if (e)
		e->wver++;
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_forget_short(void)
{
	pthread_mutex_lock(&ms.lock);
	ms.was_short = 0;
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_dropped(starpu_data_handle_t h)
{
	pthread_mutex_lock(&ms.lock);
	struct ment *e = ms.on && ms.step > 0 ? insert(h) : NULL;
	if (e)
		e->dropped = ms.step;
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_step_end(void)
{
	long long h2d = ledger_h2d();
	pthread_mutex_lock(&ms.lock);
	if (!ms.on || ms.step <= 0) {
		pthread_mutex_unlock(&ms.lock);
		return;
	}
	sample();
	double left = 0;
	for (size_t i = 0; i < ms.cap; i++) {
		struct ment *e = &ms.tab[i];
		if (!e->h || e->seen != ms.step)
			continue;
		for (unsigned n = 0; n < nnodes(); n++) {
			if (!is_accel(n))
				continue;
			int held = holds(e, n);
			if (e->used_on[n] == ms.step && e->valid[n] && e->vver[n] == e->wver && !held &&
			    e->dropped != ms.step)
				left += (double)e->size;
			/* what the node holds when the next step opens, unless
			 * written meanwhile (wver moves) */
			e->valid[n] = (unsigned char)held;
			e->vver[n] = e->wver;
		}
	}
	double moved = (double)(h2d - ms.h2d0);
	double refetched = moved > ms.needed ? moved - ms.needed : 0;
	struct lspo_mem_stats *s = &ms.last;
	s->nnodes = (int)nnodes();
	for (int n = 0; n < s->nnodes; n++) {
		s->peak_step[n] = ms.peak_step[n];
		s->peak_run[n] = ms.peak_run[n];
	}
	s->needed = ms.needed;
	s->refetched = refetched;
	s->evicted = refetched + left;
	ms.was_short |= s->evicted > 0;
	if (ms.nhist == ms.caphist) {
		size_t cap = ms.caphist ? 2 * ms.caphist : 64;
		struct lspo_mem_stats *h = realloc(ms.hist, cap * sizeof(*h));
		int *hs = h ? realloc(ms.hist_step, cap * sizeof(*hs)) : NULL;
		if (h)
			ms.hist = h;
		if (hs) {
			ms.hist_step = hs;
			ms.caphist = cap;
		}
	}
	if (ms.nhist < ms.caphist) {
		ms.hist[ms.nhist] = *s;
		ms.hist_step[ms.nhist++] = ms.step;
	}
	if (rebuild(ms.n, ms.step))   /* keep what this step used */
		forget();
	ms.step = 0;   /* until the next step opens */
	pthread_mutex_unlock(&ms.lock);
}

void lspo_mem_get(struct lspo_mem_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&ms.lock);
	if (ms.on) {
		*out = ms.last;
		out->nnodes = (int)nnodes();
		for (int n = 0; n < out->nnodes; n++) {
			starpu_ssize_t total = starpu_memory_get_total((unsigned)n);
			out->total[n] = total > 0 ? (double)total : -1;
			out->peak_run[n] = ms.peak_run[n];
			memcpy(out->name[n], ms.names[n], sizeof(out->name[n]));
			out->accel[n] = is_accel((unsigned)n);
		}
	}
	pthread_mutex_unlock(&ms.lock);
}

/* ------------------------------------------------------------------------ */
/* summary.txt                                                               */

void lspo_mem_print_legend(FILE *f)
{
	fputs("# memory: peak bytes StarPU allocated on each memory node (its allocator: data replicas,\n"
	      "#   scratch, cached buffers; not memory the application allocated itself), sampled at every\n"
	      "#   task's start and end.  evicted / refetched: bytes an accelerator dropped / fetched again\n"
	      "#   in the step: refetched = host->device bytes beyond those the step's tasks needed once.\n", f);
}

static void print_peaks(FILE *f, const double *peak, int nnodes)
{
	for (int n = 0; n < nnodes; n++) {
		starpu_ssize_t total = starpu_memory_get_total((unsigned)n);
		fprintf(f, "%s %s %.1f MiB", n ? "," : "", ms.names[n], peak[n] / 1048576.0);
		if (total > 0)
			fprintf(f, " of %.1f MiB", (double)total / 1048576.0);
		else
			fputs(" (not counted)", f);
	}
}

void lspo_mem_print_step(FILE *f, int step)
{
	pthread_mutex_lock(&ms.lock);
	int nn = ms.on ? (int)nnodes() : 0;
	if (step <= 0 && nn) {
		fputs("  memory peak of the run:", f);
		print_peaks(f, ms.peak_run, nn);
		fputc('\n', f);
	}
	for (size_t i = 0; step > 0 && i < ms.nhist; i++) {
		if (ms.hist_step[i] != step)
			continue;
		const struct lspo_mem_stats *s = &ms.hist[i];
		fputs("  memory peak:", f);
		print_peaks(f, s->peak_step, nn);
		fprintf(f, "; evicted %.0f B, refetched %.0f B (needed %.0f B host->device)\n", s->evicted,
		        s->refetched, s->needed);
		break;
	}
	pthread_mutex_unlock(&ms.lock);
}

/* ------------------------------------------------------------------------ */
/* For the lspo policy                                                       */

int lspo_mem_step(void)
{
	return ms.step;   /* an int read without the lock: a hint */
}

int lspo_mem_short_now(void)
{
	pthread_mutex_lock(&ms.lock);
	int shrt = ms.on && ms.last.evicted > 0;
	pthread_mutex_unlock(&ms.lock);
	return shrt;
}

double lspo_mem_evicted_now(void)
{
	pthread_mutex_lock(&ms.lock);
	double b = ms.on ? ms.last.evicted : 0.0;
	pthread_mutex_unlock(&ms.lock);
	return b;
}

int lspo_mem_short(void)
{
	/* Not the peak against the cap: StarPU counts whole 32 MiB chunks, so
	 * a run with room to spare may show its cap reached. */
	pthread_mutex_lock(&ms.lock);
	int shrt = ms.on && ms.was_short;
	pthread_mutex_unlock(&ms.lock);
	return shrt;
}
