/*
 * sched_lspo_mem.c - the lspo policy's memory awareness (issue 13), hooks
 * sched_lspo.c calls:
 *
 *   at push: a task placed on an accelerator has its inputs prefetched to
 *     that accelerator's memory as soon as it is ready (as dm* policies do
 *     when they queue a task), so that fetches overlap the running task;
 *   after a task ran on an accelerator: its handles are recorded, in order,
 *     and when the plan made from the previous step says so, a handle is
 *     marked with starpu_data_wont_use right after this use.  StarPU then
 *     writes it back while the bus is idle and evicts it before anything
 *     else; a prefetch may evict it (prefetches evict nothing else).
 *   placement: updates an accelerator or a CPU worker may run (native
 *     AdamW) go to CPU workers, as the offloaded updates do, as many as the
 *     accelerator lacks memory for (lspo_sched_mem_upd_on_cpu), so that
 *     their optimizer states leave the accelerator; forward and backward
 *     tasks whose data are in host memory and cheap to process there (the
 *     embedding's) run there (lspo_sched_mem_on_host); an apply whose weight
 *     the plan releases anyway runs where the weight is valid in host memory
 *     (lspo_sched_mem_apply_home).
 *
 * The plan (plan()) is Belady's rule applied to the previous step's
 * accesses on the accelerator: with the accelerator's memory, what must go
 * when a task's data do not fit is the data whose next use is farthest,
 * and data whose next use only writes it (an activation after its
 * backward, rewritten by the next forward) before anything.  StarPU's own
 * choice is least recently used, which in a training step is the worst
 * one: in the backward the least recently used activations are the
 * shallow layers' from the forward, the very next ones the backward reads,
 * while the deep layers' that the backward has just finished with stay.
 * The plan leaves free twice the largest datum of the step, within 1/16
 * and 1/4 of the memory: when an allocation does not fit, StarPU frees
 * twice its size from the front of its list, and released data must be
 * there for it, written back already (with 1/16 of it, the simulated GPT-2
 * 124M native step at 4 GiB took 374 ms against 296 with 1/4, its largest
 * datum being 823 MB of logits; the 4-layer test model's 8.9 against 7.9
 * ms).  A fixed 1/4 left a Llama 7B at 80 GiB planning for 60 and
 * releasing, so writing back, 14 GB of moments a step it had room for
 * (SIMULATED: 2772 ms a step against 2261 with the slack of its 0.5 GB
 * moments).
 * A hint is (handle, n): release the handle after its n-th use in the
 * step.  Steps repeat the same graph, so the previous step's order is the
 * forecast; a wrong hint costs a refetch, never a wrong result (wont_use is
 * a hint to StarPU).
 *
 * All three act only once an accelerator's memory was short (a step of
 * the run evicted: lspo_mem_short; counted afresh once the engine drops
 * dead activations, which may make the step fit), the hints only while it
 * still is (the last step evicted): with room to spare the schedule is the
 * policy's own.
 * Steps are those of memstat.h (lspo_mem_step); outside steps everything
 * learned is dropped, handles may be unregistered there.
 */
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "sched_lspo.h"
#include "runtime/memstat.h"
#include "internal.h"

/* A handle the accelerator's tasks used: its uses this step, and the uses
 * after which the plan (from the previous step) releases it. */
#define MAX_HINTS 8
struct hent {
	starpu_data_handle_t h;     /* key; NULL: free */
	size_t size;                /* bytes StarPU allocates for it */
	int uses;                   /* accesses by accelerator tasks this step */
	int used_before;            /* the recorded step's accesses */
	int nhint;                  /* use ordinals (1-based) after which to release it */
	int hint[MAX_HINTS];
	int idx;                    /* planning: dense index; -1 */
	int home;                   /* updates that use it run on CPU workers (upd_on_cpu, apply_home) */
};

/* One access of the recorded step: a handle used by a task, in the order
 * the tasks ended on the accelerator. */
struct access {
	size_t slot;                /* the handle's table slot (updated when the table grows) */
	int task;                   /* sequence number of the task in the step */
	int ord;                    /* this is the handle's ord-th use in the step */
	int wonly;                  /* the task only writes it: the old contents are dead */
};

static struct {
	pthread_mutex_t lock;
	struct hent *tab;
	size_t cap, n;
	int step, ntasks, node, mixed;
	struct access *acc;         /* the open step's accesses */
	size_t nacc, capacc;
	double home_bytes;          /* the handles marked home, in bytes */
} lu = { .lock = PTHREAD_MUTEX_INITIALIZER, .node = -1 };

static size_t slot(starpu_data_handle_t h, size_t cap)
{
	uintptr_t x = (uintptr_t)h;
	x ^= x >> 17;
	x *= (uintptr_t)0x9E3779B97F4A7C15ull;
	return (size_t)(x >> 7) & (cap - 1);
}

static size_t find_slot(const struct hent *tab, size_t cap, starpu_data_handle_t h)
{
	size_t i = slot(h, cap);
	while (tab[i].h && tab[i].h != h)
		i = (i + 1) & (cap - 1);
	return i;
}

static int grow(void)
{
	size_t cap = lu.cap ? 2 * lu.cap : 1024;
	struct hent *tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -1;
	for (size_t i = 0; i < lu.cap; i++)
		if (lu.tab[i].h)
			tab[find_slot(tab, cap, lu.tab[i].h)] = lu.tab[i];
	for (size_t k = 0; k < lu.nacc; k++)   /* the recorded accesses follow their entries */
		lu.acc[k].slot = find_slot(tab, cap, lu.tab[lu.acc[k].slot].h);
	free(lu.tab);
	lu.tab = tab;
	lu.cap = cap;
	return 0;
}

/* The slot of h's entry, created if needed; -1 when out of memory. */
static long entry(starpu_data_handle_t h)
{
	if (2 * (lu.n + 1) > lu.cap && grow())
		return -1;
	size_t i = find_slot(lu.tab, lu.cap, h);
	if (!lu.tab[i].h) {
		memset(&lu.tab[i], 0, sizeof(lu.tab[i]));
		lu.tab[i].h = h;
		lu.tab[i].size = starpu_data_get_alloc_size(h);
		lu.n++;
	}
	return (long)i;
}

/* Under lu.lock: h's entry, NULL when it has none. */
static struct hent *lookup(starpu_data_handle_t h)
{
	if (!lu.tab)
		return NULL;
	struct hent *e = &lu.tab[find_slot(lu.tab, lu.cap, h)];
	return e->h == h ? e : NULL;
}

static void forget_all(void)
{
	free(lu.tab);
	free(lu.acc);
	lu.tab = NULL;
	lu.acc = NULL;
	lu.cap = lu.n = lu.nacc = lu.capacc = 0;
	lu.node = -1;
	lu.mixed = 0;
	lu.home_bytes = 0.0;
}

/*
 * The plan: Belady's rule on the recorded step.  Its accesses, in order,
 * are replayed twice (the second replay starts from what the first left
 * resident, as a step starts from what the previous one left) in
 * `capacity` bytes: a task's handles must all be resident; when they do
 * not fit, the resident handle (not used by this task) whose next use is
 * farthest goes, and a handle whose contents are dead (its next use only
 * writes it) before any other.  Each eviction of the second replay becomes
 * a hint: release the handle right after the use that preceded it.
 */
static void plan(size_t capacity)
{
	size_t n = lu.nacc;
	for (size_t i = 0; i < lu.cap; i++) {
		lu.tab[i].nhint = 0;
		lu.tab[i].idx = -1;
	}
	if (n == 0 || lu.mixed)
		return;
	int nh = 0;
	for (size_t k = 0; k < n; k++) {
		struct hent *e = &lu.tab[lu.acc[k].slot];
		if (e->idx < 0)
			e->idx = nh++;
	}
	const long long INF = LLONG_MAX;
	long long *next = malloc(n * sizeof(*next));        /* distance to the next use; INF: dead */
	long long *first = malloc((size_t)nh * sizeof(*first));
	long long *nextpos = malloc((size_t)nh * sizeof(*nextpos));
	size_t *intask = malloc((size_t)nh * sizeof(*intask));
	int *lastord = malloc((size_t)nh * sizeof(*lastord));
	unsigned char *res = calloc((size_t)nh, 1);
	struct hent **ent = malloc((size_t)nh * sizeof(*ent));
	if (!next || !first || !nextpos || !intask || !lastord || !res || !ent)
		goto out;
	for (int i = 0; i < nh; i++) {
		first[i] = -1;
		intask[i] = SIZE_MAX;
		lastord[i] = 0;
		nextpos[i] = INF;
	}
	for (size_t k = n; k-- > 0;) {   /* position of the handle's following access, -1: none */
		struct hent *e = &lu.tab[lu.acc[k].slot];
		ent[e->idx] = e;
		next[k] = first[e->idx];
		first[e->idx] = (long long)k;
	}
	for (size_t k = 0; k < n; k++) {
		long long f = next[k];
		if (f < 0)   /* the step's last use: the next is the next step's first */
			f = first[lu.tab[lu.acc[k].slot].idx] + (long long)n;
		next[k] = lu.acc[f % (long long)n].wonly ? INF : f - (long long)k;
	}
	size_t used = 0;
	for (size_t p = 0; p < 2 * n;) {
		size_t q = p;   /* the task's accesses: p .. q-1, within one replay */
		int task = lu.acc[p % n].task;
		for (; q < 2 * n && q / n == p / n && lu.acc[q % n].task == task; q++) {
			const struct access *a = &lu.acc[q % n];
			int i = lu.tab[a->slot].idx;
			intask[i] = p;
			if (!res[i]) {
				res[i] = 1;
				used += ent[i]->size;
			}
			nextpos[i] = next[q % n] == INF ? INF : (long long)q + next[q % n];
			lastord[i] = a->ord;
		}
		while (used > capacity) {
			int v = -1;
			for (int i = 0; i < nh; i++)
				if (res[i] && intask[i] != p && (v < 0 || nextpos[i] > nextpos[v]))
					v = i;
			if (v < 0)
				break;   /* the task alone fills the memory */
			res[v] = 0;
			used -= ent[v]->size;
			if (p < n)
				continue;
			struct hent *e = ent[v];
			int dup = 0;
			for (int j = 0; j < e->nhint; j++)
				dup |= e->hint[j] == lastord[v];
			if (!dup && e->nhint < MAX_HINTS)
				e->hint[e->nhint++] = lastord[v];
		}
		p = q;
	}
out:
	free(next);
	free(first);
	free(nextpos);
	free(intask);
	free(lastord);
	free(res);
	free(ent);
}

/* What the plan leaves free: twice the largest datum the step uses (StarPU
 * frees twice an allocation's size when it does not fit), within 1/16 and
 * 1/4 of the memory. */
static size_t plan_slack(size_t total)
{
	size_t largest = 0;
	for (size_t i = 0; i < lu.cap; i++)
		if (lu.tab[i].h && lu.tab[i].uses > 0 && lu.tab[i].size > largest)
			largest = lu.tab[i].size;
	size_t slack = 2 * largest;
	if (slack < total / 16)
		slack = total / 16;
	if (slack > total / 4)
		slack = total / 4;
	return slack;
}

/* A new step: if the accelerator's memory was short in the recorded one,
 * it becomes the plan.  Outside steps (step 0) everything is dropped:
 * handles may be unregistered there. */
static void new_step(int step)
{
	if (step <= 0 || lu.step <= 0) {
		forget_all();
	} else if (lu.node >= 0 && lspo_mem_short_now()) {
		starpu_ssize_t total = starpu_memory_get_total((unsigned)lu.node);
		if (total > 0)
			plan((size_t)total - plan_slack((size_t)total));
	} else {
		for (size_t i = 0; i < lu.cap; i++)
			lu.tab[i].nhint = 0;
	}
	for (size_t i = 0; i < lu.cap; i++) {
		lu.tab[i].used_before = lu.tab[i].uses;
		lu.tab[i].uses = 0;
	}
	lu.nacc = 0;
	lu.ntasks = 0;
	lu.mixed = 0;
	lu.step = step;
}

/* The accelerator bytes the run needs (lspo_sched_set_mem_demand); 0: unknown. */
static _Atomic double demand;

int lspo_sched_set_mem_demand(double bytes)
{
	if (!(bytes >= 0.0))
		LSPO_FAIL(LSPO_EINVAL, "lspo policy: memory demand %g: expected bytes >= 0", bytes);
	atomic_store(&demand, bytes);
	return LSPO_OK;
}

/* An update's own data: its buffers of at least half its largest (a
 * parameter, its gradient, its moments), not the scalars every update
 * shares (the clipping factor), which would tie them all together. */
static int own(struct starpu_task *task, unsigned i, size_t largest)
{
	return 2 * starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i)) >= largest;
}

static size_t largest_datum(struct starpu_task *task)
{
	size_t largest = 0;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		size_t b = starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i));
		largest = b > largest ? b : largest;
	}
	return largest;
}

/* Under lu.lock: entries for the update's own data (creating one may move
 * the others: look them up again after); -1 when out of memory. */
static int own_entries(struct starpu_task *task, size_t largest)
{
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++)
		if (own(task, i, largest) && entry(STARPU_TASK_GET_HANDLE(task, i)) < 0)
			return -1;
	return 0;
}

/* Under lu.lock, after own_entries: marks the update's own data home;
 * `budgeted`: counted in what upd_on_cpu sent home. */
static void mark_home(struct starpu_task *task, size_t largest, int budgeted)
{
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		if (!own(task, i, largest))
			continue;
		struct hent *e = &lu.tab[find_slot(lu.tab, lu.cap, STARPU_TASK_GET_HANDLE(task, i))];
		if (!e->home && budgeted)
			lu.home_bytes += (double)e->size;
		e->home = 1;
	}
}

void lspo_sched_mem_upd_home(struct starpu_task *task)
{
	if (!lspo_mem_short())
		return;
	size_t largest = largest_datum(task);
	pthread_mutex_lock(&lu.lock);
	if (own_entries(task, largest) == 0)
		mark_home(task, largest, 0);
	pthread_mutex_unlock(&lu.lock);
}

/*
 * What goes home: only as much as the accelerator lacks.  An update run on
 * a CPU worker frees its optimizer states on the accelerator for good (8 of
 * native AdamW's 14-16 bytes per parameter) but moves its gradient down and
 * its parameter up at every step; one that stays moves nothing while it
 * fits.  So updates go home in the order they first come (the deep layers'
 * first) until the data they use add up to twice the bytes missing (the
 * demand beyond the accelerator's memory, plus 1/16 of that memory for the
 * activations' peaks).  The choice sticks to the update's data, so that an
 * update does not move its states across the bus again the next step; it
 * lasts while the policy's table does (a run of steps).  A Llama 7B native
 * needing 88 of 80 GiB so sends about a third of its updates home, not all
 * of them.  With the demand unknown, all go.
 */
int lspo_sched_mem_upd_on_cpu(struct starpu_task *task, int accel_worker)
{
	if (!lspo_mem_short())
		return 0;
	double need = atomic_load(&demand);
	starpu_ssize_t cap = starpu_memory_get_total(starpu_worker_get_memory_node((unsigned)accel_worker));
	if (need <= 0.0 || cap <= 0)
		return 1;
	double budget = 2.0 * (need - (double)cap + (double)cap / 16.0);
	if (budget <= 0.0)
		return 0;
	unsigned nb = STARPU_TASK_GET_NBUFFERS(task);
	size_t largest = largest_datum(task);
	double bytes = 0.0, written = 0.0;
	for (unsigned i = 0; i < nb; i++) {
		double b = (double)starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i));
		bytes += b;
		if (STARPU_TASK_GET_MODE(task, i) & STARPU_W)
			written += b;
	}
	/* Only an update that rewrites most of its data (AdamW: the parameter
	 * and both moments) may be sent home; one that reads a gradient into a
	 * few scalars (the norm's partial sums) follows its gradient. */
	int may_claim = 2.0 * written >= bytes;
	int go = 0;
	pthread_mutex_lock(&lu.lock);
	if (own_entries(task, largest) == 0) {
		for (unsigned i = 0; i < nb; i++)
			if (own(task, i, largest))
				go |= lu.tab[find_slot(lu.tab, lu.cap, STARPU_TASK_GET_HANDLE(task, i))].home;
		if (!go && may_claim && lu.home_bytes < budget) {
			go = 1;
			mark_home(task, largest, 1);
		}
	}
	pthread_mutex_unlock(&lu.lock);
	return go;
}

/*
 * An apply (lsp: W += P Delta Q^T) whose weight the plan releases before the
 * next step reads it again runs on a CPU worker, where the weight has a
 * valid copy.  On the accelerator the apply leaves the only valid copy there,
 * so the release that follows is a write-back of the whole weight; on the
 * host it moves nothing (Delta is there already) and the accelerator's copy
 * becomes stale, dropped for free, while the next forward fetches the weight
 * it would have fetched anyway.  The choice sticks to the weight, as an
 * update's does (the step recorded next has no accelerator use of it after
 * the backward, so the plan would no longer release it).  SIMULATED, Llama
 * 7B, lsp, bf16, checkpointing, 8 GiB: 13.8 -> 3.5 GB down a step, 3970 ->
 * 2438 ms (dmdas, which runs a third of the applies on the host as its cost
 * model sees fit: 3562).
 */
int lspo_sched_mem_apply_home(struct starpu_task *task)
{
	if (!lspo_mem_short())
		return 0;
	starpu_data_handle_t w = NULL;   /* the weight: the largest datum written */
	size_t largest = 0;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
		if ((STARPU_TASK_GET_MODE(task, i) & STARPU_W) && starpu_data_get_size(h) > largest) {
			largest = starpu_data_get_size(h);
			w = h;
		}
	}
	if (!w)
		return 0;
	int valid_home = starpu_data_is_on_node(w, STARPU_MAIN_RAM), home = 0;
	pthread_mutex_lock(&lu.lock);
	struct hent *e = lookup(w);
	if (e) {
		/* Its uses so far this step all ended (the apply depends on them):
		 * a release planned after the last of them or after the apply. */
		for (int j = 0; valid_home && !e->home && j < e->nhint; j++)
			e->home = e->hint[j] >= e->uses;
		home = e->home;
	}
	pthread_mutex_unlock(&lu.lock);
	return home;
}

/* 1: updates that use h run on CPU workers. */
static int is_home(starpu_data_handle_t h)
{
	pthread_mutex_lock(&lu.lock);
	const struct hent *e = lookup(h);
	int home = e && e->home;
	pthread_mutex_unlock(&lu.lock);
	return home;
}

/* How many times the accelerator's tasks used h in the recorded step (or
 * in this one, if more). */
static int accel_uses(starpu_data_handle_t h)
{
	pthread_mutex_lock(&lu.lock);
	const struct hent *e = lookup(h);
	int n = !e ? 0 : e->used_before > e->uses ? e->used_before : e->uses;
	pthread_mutex_unlock(&lu.lock);
	return n;
}

/* 1: the recorded step evicted less than the accelerator's memory holds,
 * so that a datum uploaded now can stay until a reader at the forward's end;
 * when the step streams more (the weights do not fit), it would be evicted
 * again before (SIMULATED, GPT-2 774M fp32 lsp in 4 GiB, 7.7 GB evicted a
 * step: the embedding's forward on the host and the table prefetched,
 * 1684.6 -> 1730.1 ms). */
static int keeps_till_later(unsigned node)
{
	return lspo_mem_evicted_now() < (double)starpu_memory_get_total(node);
}

/*
 * A forward or backward task whose data are mostly in host memory and not
 * on the accelerator (a gradient its update took home, a weight the host
 * rewrote) runs on a CPU worker when that moves less than a third of those
 * bytes (its other inputs down, its outputs back up) and its expected time
 * there is under that of the transfers it saves: what it reads would cross
 * the bus once, what it also writes twice (up, and home again for its
 * update).  Inputs that other accelerator tasks read too (used more than
 * once there in the recorded step) cross anyway, for them.  When they are
 * most of the bytes and can stay uploaded until then (keeps_till_later), the
 * task on the host runs while they cross (lspo_sched_mem_prefetch_later);
 * on the accelerator it waits for them, and with the memory full for as
 * much to be freed first, which StarPU does by writing back what it evicts:
 * the transfers then count twice.  (Counting them twice for any input sent
 * the untied embedding's forward of a Llama 1B zero in 8 GiB to the host,
 * its step from 1279 to 1345 ms, SIMULATED.)
 * So run on the host: the embedding's backward, a scatter-add of T rows into
 * a V x C gradient (SIMULATED, GPT-2 1.5B, bf16, lsp, 4 GiB: on the
 * accelerator it waited 121 ms for its 322 MB gradient; median step 820 ->
 * 659 ms, dmdas 669), and where the head is tied, its forward, a gather
 * from the table the host's AdamW has just rewritten; the products stay.
 */
int lspo_sched_mem_on_host(struct starpu_task *task, unsigned ctx, int accel_worker, int cpu_worker)
{
	if (!lspo_mem_short())
		return 0;
	unsigned node = starpu_worker_get_memory_node((unsigned)accel_worker);
	double up = 0.0, crossings = 0.0, other = 0.0;   /* up: bytes that would go up for the accelerator */
	double shared = 0.0;   /* of those, bytes that cross anyway, for other accelerator tasks */
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
		int mode = (int)STARPU_TASK_GET_MODE(task, i);
		double b = (double)starpu_data_get_size(h);
		if (!(mode & STARPU_R) && is_home(h) && !starpu_data_is_on_node(h, node)) {
			up += b;   /* a home gradient zeroed for the step: where its update will read it */
			crossings += 2.0 * b;
		} else if (!(mode & STARPU_R)) {
			other += b;
		} else if (starpu_data_is_on_node(h, STARPU_MAIN_RAM) && !starpu_data_is_on_node(h, node)) {
			up += b;
			crossings += mode & STARPU_W ? 2.0 * b : b;
			if (!(mode & STARPU_W) && accel_uses(h) > 1)
				shared += b;
		} else if (!starpu_data_is_on_node(h, STARPU_MAIN_RAM)) {
			other += b;
		}
	}
	if (up == 0.0 || up < 3.0 * other)
		return 0;
	unsigned nimpl;
	if (!starpu_worker_can_execute_task_first_impl((unsigned)cpu_worker, task, &nimpl))
		return 0;
	double cpu = starpu_task_expected_length(task, starpu_worker_get_perf_archtype(cpu_worker, ctx), nimpl);
	double xfer = starpu_transfer_predict(STARPU_MAIN_RAM, node, (size_t)crossings);
	if (2.0 * shared >= up && keeps_till_later(node) && starpu_memory_get_available(node) < (starpu_ssize_t)up)
		xfer *= 2.0;   /* room first: as many bytes written back */
	return isfinite(cpu) && cpu > 0.0 && isfinite(xfer) && cpu <= xfer;
}

/*
 * A task lspo_sched_mem_on_host sent to a CPU worker: its inputs that it
 * only reads and that other accelerator tasks read too (the embedding's
 * table, which the tied head reads at the forward's end) are
 * prefetched now, while the bus and the accelerator have time, rather than
 * fetched when their reader is ready and the accelerator waits.  A prefetch
 * evicts nothing StarPU may still need; when there is no room it is dropped
 * and the reader fetches as it would have.  (SIMULATED, GPT-2 1.5B, bf16,
 * lsp, 4 GiB: the embedding's forward on the accelerator waited 17 ms for
 * the table, 48 in the steps where its prefetch found no room, about half
 * the runs having such steps, median step 657 or 688 ms; with the forward
 * on the host and this prefetch, 651.7-657.7 ms in 12 runs of 13, 667.9 in
 * one; 3 of their 65 steps 4..8 took 703 ms, this prefetch finding no room.)
 */
void lspo_sched_mem_prefetch_later(struct starpu_task *task, int accel_worker)
{
	unsigned node = starpu_worker_get_memory_node((unsigned)accel_worker);
	if (!keeps_till_later(node))
		return;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
		if (STARPU_TASK_GET_MODE(task, i) == STARPU_R && !starpu_data_is_on_node(h, node) && accel_uses(h) > 1)
			starpu_data_prefetch_on_node_prio(h, node, 1, task->priority);
	}
}

int lspo_sched_inputs_on_host(struct starpu_task *task)
{
	size_t host = 0, away = 0;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++) {
		starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
		if (!(STARPU_TASK_GET_MODE(task, i) & STARPU_R))
			continue;
		if (starpu_data_is_on_node(h, STARPU_MAIN_RAM))
			host += starpu_data_get_size(h);
		else
			away += starpu_data_get_size(h);
	}
	return host >= away;
}

void lspo_sched_mem_push(struct starpu_task *task, int accel_worker)
{
	if (accel_worker >= 0 && lspo_mem_short())
		starpu_prefetch_task_input_for_prio(task, (unsigned)accel_worker, task->priority);
}

void lspo_sched_mem_post_exec(struct starpu_task *task)
{
	int worker = starpu_worker_get_id();
	if (worker < 0 || starpu_worker_get_type(worker) == STARPU_CPU_WORKER || !task->cl)
		return;
	if (!lspo_mem_short())
		return;   /* nothing evicted yet: nothing to record (the first plan comes a step later) */
	int step = lspo_mem_step(), shrt = lspo_mem_short_now();
	int node = (int)starpu_worker_get_memory_node((unsigned)worker);
	unsigned nb = STARPU_TASK_GET_NBUFFERS(task);
	starpu_data_handle_t hint[STARPU_NMAXBUFS];
	unsigned nhint = 0;
	pthread_mutex_lock(&lu.lock);
	if (step != lu.step)
		new_step(step);
	if (step > 0) {
		if (lu.node < 0)
			lu.node = node;
		else if (lu.node != node)
			lu.mixed = 1;   /* several accelerators: one memory is modelled, no plan */
		lu.ntasks++;
	}
	for (unsigned i = 0; step > 0 && i < nb; i++) {
		int mode = (int)STARPU_TASK_GET_MODE(task, i);
		starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
		if (!(mode & (STARPU_R | STARPU_W)))
			continue;   /* scratch */
		int again = 0;
		for (unsigned j = 0; j < i; j++)
			again |= STARPU_TASK_GET_HANDLE(task, j) == h;
		if (again)
			continue;
		if (lu.nacc == lu.capacc) {
			size_t c = lu.capacc ? 2 * lu.capacc : 4096;
			struct access *a = realloc(lu.acc, c * sizeof(*a));
			if (!a)
				break;
			lu.acc = a;
			lu.capacc = c;
		}
		long si = entry(h);
		if (si < 0)
			break;
		struct hent *e = &lu.tab[si];
		e->uses++;
		lu.acc[lu.nacc++] = (struct access){ .slot = (size_t)si, .task = lu.ntasks, .ord = e->uses,
		                                     .wonly = !(mode & STARPU_R) };
		for (int j = 0; shrt && j < e->nhint; j++)
			if (e->hint[j] == e->uses && nhint < STARPU_NMAXBUFS)
				hint[nhint++] = h;
	}
	pthread_mutex_unlock(&lu.lock);
	for (unsigned i = 0; i < nhint; i++)
		starpu_data_wont_use(hint[i]);
}
