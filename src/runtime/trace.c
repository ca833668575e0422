/*
 * trace.c - what every build can trace without FxT: one row per executed
 * task (DIR/tasks.csv) and per-step summaries (DIR/summary.txt) from StarPU's
 * profiling information.
 *
 * When lspo_config.trace_dir is set, the context installs a copy of the
 * chosen policy whose pre_exec_hook records the task's name, worker,
 * priority, job id, data handles, access modes and buffer sizes (the data is
 * held then, so the handles are alive), and whose post_exec_hook adds the
 * profiling times; both then call the policy's own hooks.  A hook only
 * appends to growing arrays under one mutex: no I/O, no analysis.
 * lspo_trace_mark_step() opens a step: tasks submitted after it (by their
 * profiling submit time) belong to that step.  Bus byte counts are read (and
 * reset, as StarPU does on read) at every mark, so each step gets its own.
 *
 * The analysis, at flush: per worker, the union of its execution intervals
 * (busy) and of its input-fetch windows (fetch), their overlap (hidden);
 * the critical path: the longest chain of dependent tasks by measured
 * duration, dependencies rebuilt from handles and modes in job-id order.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <starpu.h>

#include "internal.h"
#include "tag.h"
#include "trace.h"
#include "memstat.h"

/* ------------------------------------------------------------------------ */
/* Records                                                                  */

struct trace_access {
	starpu_data_handle_t handle;  /* identity only: never dereferenced after the hook */
	uintptr_t lo, hi;             /* its main-memory extent, 0 0 if it has none */
	int mode;
};

struct trace_rec {
	unsigned long job;
	const char *name;     /* interned in t->names */
	int worker, prio, done;
	size_t bytes;         /* total size of the task's buffers */
	size_t acc, nacc;     /* its accesses: t->acc[acc .. acc + nacc) */
	double submit, fetch0, fetch1, start, end;   /* us since starpu_init */
};

enum { DIR_H2D = LSPO_BUS_H2D, DIR_D2H = LSPO_BUS_D2H, DIR_D2D = LSPO_BUS_D2D,
       DIR_H2H = LSPO_BUS_H2H, NDIRS = LSPO_BUS_NDIRS };
static const char *const dir_names[NDIRS] = { "host->device", "device->host", "device->device",
                                              "host->host" };

/* Bus traffic: cumulative since starpu_init, or a difference of two. */
struct bus_count {
	long long bytes[NDIRS];
	long long transfers;
	double model_us;      /* StarPU's bus model estimate of the transfers' time */
};

/* A segment of the run: from a mark (or the start) to the next mark. */
struct trace_seg {
	int step;             /* > 0: a training step; <= 0: outside steps */
	double t0;            /* us since starpu_init */
	struct bus_count at;  /* ledger totals at t0 */
	struct bus_count bus; /* traffic during the segment (filled at flush) */
};

#define RING 64  /* tasks a worker can hold between pre- and post-exec */
struct trace_ring {
	unsigned long job[RING];
	size_t idx[RING];
	unsigned next;
};

/* A context's recorder and bus ledger (one per lspo_ctx, see trace.h). */
struct lspo_trace {
	pthread_mutex_t lock;                /* guards the recorder's fields */
	int on;
	char *dir;
	struct starpu_sched_policy policy;   /* the copy StarPU runs */
	void (*orig_pre)(struct starpu_task *, unsigned);
	void (*orig_post)(struct starpu_task *, unsigned);
	struct trace_rec *recs;
	size_t nrecs, caprecs;
	struct trace_access *acc;
	size_t nacc, capacc;
	struct trace_seg *segs;
	size_t nsegs, capsegs;
	struct lspo_tags *names;   /* the trace's copies of task names */
	struct trace_ring rings[STARPU_NMAXWORKERS];
	long dropped;         /* records lost to a failed allocation */

	pthread_mutex_t bus_lock;            /* guards bus_total */
	struct bus_count bus_total;          /* bytes moved since starpu_init */
};

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

static const char *task_name(struct starpu_task *task)
{
	if (task->name)
		return task->name;
	if (task->cl && task->cl->name)
		return task->cl->name;
	return "?";
}

/* A new record (under the lock); NULL when out of memory.  The record
 * keeps the trace's own copy of the name: engine names die with their
 * model, before the trace is written. */
static struct trace_rec *new_rec(struct lspo_trace *t, struct starpu_task *task, int worker, size_t *idx)
{
	const char *name;
	if (lspo_tags_intern(t->names, task_name(task), &name)
	    || grow((void **)&t->recs, &t->caprecs, t->nrecs + 1, sizeof(*t->recs))) {
		t->dropped++;
		return NULL;
	}
	*idx = t->nrecs++;
	struct trace_rec *r = &t->recs[*idx];
	*r = (struct trace_rec){ .job = starpu_task_get_job_id(task), .name = name,
	                         .worker = worker, .prio = task->priority, .acc = t->nacc };
	return r;
}

/* A buffer of the task: handle, mode, and the main-memory bytes it spans
 * (partitioned data: a child lies inside its parent, so the critical path
 * sees parent/child dependencies through the overlap). */
static struct trace_access access_of(struct starpu_task *task, unsigned i)
{
	starpu_data_handle_t h = STARPU_TASK_GET_HANDLE(task, i);
	struct trace_access a = { .handle = h, .mode = (int)STARPU_TASK_GET_MODE(task, i) };
	uintptr_t p = (uintptr_t)starpu_data_handle_to_pointer(h, STARPU_MAIN_RAM);
	if (!p)
		return a;
	size_t extent = starpu_data_get_size(h);
	if (starpu_data_get_interface_id(h) == STARPU_MATRIX_INTERFACE_ID) {
		size_t nx = starpu_matrix_get_nx(h), ny = starpu_matrix_get_ny(h);
		size_t ld = starpu_matrix_get_local_ld(h), es = starpu_matrix_get_elemsize(h);
		if (nx && ny)
			extent = ((ny - 1) * ld + nx) * es;
	}
	a.lo = p;
	a.hi = p + extent;
	return a;
}

static void trace_pre_exec(struct starpu_task *task, unsigned sched_ctx)
{
	struct lspo_trace *t = lspo_ctx_trace();   /* hooks run only while a context runs */
	if (!t)
		return;
	int worker = starpu_worker_get_id();
	unsigned n = task->cl ? STARPU_TASK_GET_NBUFFERS(task) : 0;
	size_t bytes = 0;
	for (unsigned i = 0; i < n; i++)
		bytes += starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i));

	pthread_mutex_lock(&t->lock);
	size_t idx;
	struct trace_rec *r = t->on ? new_rec(t, task, worker, &idx) : NULL;   /* off: after the end */
	if (r) {
		r->bytes = bytes;
		if (grow((void **)&t->acc, &t->capacc, t->nacc + n, sizeof(*t->acc)) == 0) {
			for (unsigned i = 0; i < n; i++)
				t->acc[t->nacc + i] = access_of(task, i);
			t->nacc += n;
			r->nacc = n;
		}
		if (worker >= 0 && worker < STARPU_NMAXWORKERS) {
			struct trace_ring *ring = &t->rings[worker];
			ring->job[ring->next % RING] = r->job;
			ring->idx[ring->next % RING] = idx;
			ring->next++;
		}
	}
	pthread_mutex_unlock(&t->lock);
	if (t->orig_pre)
		t->orig_pre(task, sched_ctx);
}

static double ts_us(const struct timespec *ts)
{
	return starpu_timing_timespec_to_us((struct timespec *)ts);
}

static void trace_post_exec(struct starpu_task *task, unsigned sched_ctx)
{
	struct lspo_trace *t = lspo_ctx_trace();
	if (!t)
		return;
	int worker = starpu_worker_get_id();
	unsigned long job = starpu_task_get_job_id(task);
	struct starpu_profiling_task_info *pi = task->profiling_info;

	pthread_mutex_lock(&t->lock);
	struct trace_rec *r = NULL;
	size_t idx;
	if (worker >= 0 && worker < STARPU_NMAXWORKERS) {
		struct trace_ring *ring = &t->rings[worker];
		for (unsigned k = 0; k < RING && k < ring->next; k++) {
			unsigned s = (ring->next - 1 - k) % RING;
			if (ring->job[s] == job && ring->idx[s] < t->nrecs) {
				r = &t->recs[ring->idx[s]];
				ring->job[s] = 0;
				break;
			}
		}
	}
	if (!r && t->on)   /* no pre-exec record: times only */
		r = new_rec(t, task, worker, &idx);
	if (r) {
		if (pi) {
			r->submit = ts_us(&pi->submit_time);
			r->start = ts_us(&pi->start_time);
			r->end = ts_us(&pi->end_time);
			r->fetch0 = ts_us(&pi->acquire_data_start_time);
			r->fetch1 = ts_us(&pi->acquire_data_end_time);
			if (pi->workerid >= 0)
				r->worker = pi->workerid;
		} else {
			r->submit = r->start = r->end = starpu_timing_now();
		}
		r->done = 1;
	}
	pthread_mutex_unlock(&t->lock);
	if (t->orig_post)
		t->orig_post(task, sched_ctx);
}

/* ------------------------------------------------------------------------ */
/* Bus ledger: StarPU resets a bus's counters whenever anyone reads them, so  */
/* every reader in lspo goes through these cumulative totals.               */

static void bus_totals(struct lspo_trace *t, struct bus_count *out)
{
	pthread_mutex_lock(&t->bus_lock);
	int nbus = starpu_bus_get_count();
	for (int b = 0; b < nbus; b++) {
		struct starpu_profiling_bus_info info;
		if (starpu_bus_get_profiling_info(b, &info) != 0 || info.transferred_bytes <= 0)
			continue;
		int src = starpu_bus_get_src(b), dst = starpu_bus_get_dst(b);
		int hs = starpu_node_get_kind((unsigned)src) == STARPU_CPU_RAM;
		int hd = starpu_node_get_kind((unsigned)dst) == STARPU_CPU_RAM;
		int d = hs ? (hd ? DIR_H2H : DIR_H2D) : (hd ? DIR_D2H : DIR_D2D);
		t->bus_total.bytes[d] += info.transferred_bytes;
		t->bus_total.transfers += info.transfer_count;
		if (info.transfer_count > 0) {
			size_t avg = (size_t)(info.transferred_bytes / info.transfer_count);
			double us = starpu_transfer_predict((unsigned)src, (unsigned)dst, avg);
			if (isfinite(us) && us > 0)
				t->bus_total.model_us += us * info.transfer_count;
		}
	}
	*out = t->bus_total;
	pthread_mutex_unlock(&t->bus_lock);
}

void lspo_bus_totals(long long bytes[LSPO_BUS_NDIRS], long long *transfers, double *model_us)
{
	struct bus_count c = { { 0 }, 0, 0.0 };
	struct lspo_trace *t = lspo_ctx_trace();
	if (t)
		bus_totals(t, &c);
	for (int d = 0; d < NDIRS; d++)
		bytes[d] = c.bytes[d];
	if (transfers)
		*transfers = c.transfers;
	if (model_us)
		*model_us = c.model_us;
}

static void bus_diff(const struct bus_count *a, const struct bus_count *b, struct bus_count *out)
{
	for (int d = 0; d < NDIRS; d++)
		out->bytes[d] = b->bytes[d] - a->bytes[d];
	out->transfers = b->transfers - a->transfers;
	out->model_us = b->model_us - a->model_us;
}

static int new_seg(struct lspo_trace *t, int step, double t0)
{
	if (grow((void **)&t->segs, &t->capsegs, t->nsegs + 1, sizeof(*t->segs)))
		return -1;
	struct trace_seg *sg = &t->segs[t->nsegs++];
	*sg = (struct trace_seg){ .step = step, .t0 = t0 };
	bus_totals(t, &sg->at);
	return 0;
}

void lspo_trace_mark_step(int step)
{
	lspo_mem_mark(step);   /* memstat.h: evictions are counted per step */
	struct lspo_trace *t = lspo_ctx_trace();
	if (!t || !t->on)
		return;
	double now = starpu_timing_now();
	pthread_mutex_lock(&t->lock);
	if (new_seg(t, step, now))
		lspo_warn("trace: out of memory: step %d not marked", step);
	pthread_mutex_unlock(&t->lock);
}

/* ------------------------------------------------------------------------ */
/* Analysis                                                                 */

struct ival { double a, b; };

static int cmp_ival(const void *x, const void *y)
{
	const struct ival *p = x, *q = y;
	return (p->a > q->a) - (p->a < q->a);
}

/* Sorts and merges in place; returns the number of disjoint intervals. */
static size_t ival_union(struct ival *v, size_t n)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_ival);
	size_t m = 0;
	for (size_t i = 1; i < n; i++) {
		if (v[i].a <= v[m].b) {
			if (v[i].b > v[m].b)
				v[m].b = v[i].b;
		} else {
			v[++m] = v[i];
		}
	}
	return m + 1;
}

static double ival_measure(const struct ival *v, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += v[i].b - v[i].a;
	return s;
}

/* Measure of (union u) intersected with (union w), both merged and sorted. */
static double ival_overlap(const struct ival *u, size_t nu, const struct ival *w, size_t nw)
{
	double s = 0;
	size_t i = 0, j = 0;
	while (i < nu && j < nw) {
		double a = u[i].a > w[j].a ? u[i].a : w[j].a;
		double b = u[i].b < w[j].b ? u[i].b : w[j].b;
		if (b > a)
			s += b - a;
		if (u[i].b < w[j].b)
			i++;
		else
			j++;
	}
	return s;
}

static int cmp_job(const void *x, const void *y, void *recs)
{
	const struct trace_rec *r = recs, *p = &r[*(const size_t *)x], *q = &r[*(const size_t *)y];
	return (p->job > q->job) - (p->job < q->job);
}

static int cmp_start(const void *x, const void *y, void *recs)
{
	const struct trace_rec *r = recs, *p = &r[*(const size_t *)x], *q = &r[*(const size_t *)y];
	if (p->start != q->start)
		return (p->start > q->start) - (p->start < q->start);
	return (p->job > q->job) - (p->job < q->job);
}

/* Per data region (a handle) while walking a group in job order: the last
 * writer and the reader since that write with the longest path, and the
 * other regions whose main-memory extents overlap it. */
struct region {
	starpu_data_handle_t h;
	uintptr_t lo, hi;
	long writer, reader;
	size_t nbr, nnbr;     /* neighbours: nbrs[nbr .. nbr + nnbr) */
};

struct group_stats {
	size_t ntasks;
	double t0, tend, wall;
	double busy[STARPU_NMAXWORKERS], fetch[STARPU_NMAXWORKERS], hidden[STARPU_NMAXWORKERS];
	size_t nw_tasks[STARPU_NMAXWORKERS];
	double cp;            /* critical path, us */
	size_t cp_len;
	long cp_last;         /* index into the group of its last task */
	long *pred;           /* predecessor on the longest path, per group index */
};

static size_t hmix(starpu_data_handle_t h)
{
	uint64_t x = (uint64_t)(uintptr_t)h;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (size_t)x;
}

/* Open-addressing table handle -> region index (cap a power of two). */
static long *slot_of(long *tab, size_t cap, const struct region *rg, starpu_data_handle_t h)
{
	size_t j = hmix(h) & (cap - 1);
	while (tab[j] >= 0 && rg[tab[j]].h != h)
		j = (j + 1) & (cap - 1);
	return &tab[j];
}

static double dur(const struct trace_rec *r)
{
	return r->end > r->start ? r->end - r->start : 0.0;
}

static int cmp_region_lo(const void *x, const void *y, void *regions)
{
	const struct region *rg = regions;
	uintptr_t a = rg[*(const long *)x].lo, b = rg[*(const long *)y].lo;
	return (a > b) - (a < b);
}

/* Candidate predecessor p of task i: kept if it is longer than the best so
 * far and really finished before i started (a true dependency always did;
 * this also drops overlaps between memory that StarPU does not order). */
static void consider(const struct lspo_trace *t, const size_t *idx, const double *dist, long p, size_t i,
                     double *best, long *bp)
{
	if (p < 0 || (size_t)p == i || dist[p] <= *best)
		return;
	if (t->recs[idx[p]].end > t->recs[idx[i]].start)
		return;
	*best = dist[p];
	*bp = p;
}

/* Longest dependency chain of the group idx[0..n) (sorted by job id). */
static int critical_path(const struct lspo_trace *t, const size_t *idx, size_t n, struct group_stats *st)
{
	size_t nacc = 0;
	for (size_t i = 0; i < n; i++)
		nacc += t->recs[idx[i]].nacc;
	size_t cap = 16;
	while (cap < 2 * nacc + 2)
		cap *= 2;
	long *tab = malloc(cap * sizeof(*tab)), *accr = malloc((nacc + 1) * sizeof(*accr));
	long *order = malloc((nacc + 1) * sizeof(*order));
	struct region *rg = malloc((nacc + 1) * sizeof(*rg));
	double *dist = malloc((n + 1) * sizeof(*dist));
	st->pred = malloc((n + 1) * sizeof(*st->pred));
	long *nbrs = NULL;
	int rc = LSPO_ENOMEM;
	if (!tab || !accr || !order || !rg || !dist || !st->pred)
		goto out;
	for (size_t j = 0; j < cap; j++)
		tab[j] = -1;

	/* Regions: one per distinct handle; accr maps each access to its region. */
	size_t nrg = 0, k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct trace_rec *r = &t->recs[idx[i]];
		for (size_t a = 0; a < r->nacc; a++, k++) {
			const struct trace_access *ac = &t->acc[r->acc + a];
			long *slot = slot_of(tab, cap, rg, ac->handle);
			if (*slot < 0) {
				rg[nrg] = (struct region){ ac->handle, ac->lo, ac->hi, -1, -1, 0, 0 };
				*slot = (long)nrg++;
			}
			accr[k] = *slot;
		}
	}
	/* Neighbours: regions whose main-memory extents overlap (sweep by lo). */
	size_t nram = 0;
	for (size_t j = 0; j < nrg; j++)
		if (rg[j].hi > rg[j].lo)
			order[nram++] = (long)j;
	qsort_r(order, nram, sizeof(*order), cmp_region_lo, rg);
	for (int pass = 0; pass < 2; pass++) {   /* 0: count, 1: fill */
		if (pass == 1) {
			size_t off = 0;
			for (size_t j = 0; j < nrg; j++) {
				rg[j].nbr = off;
				off += rg[j].nnbr;
				rg[j].nnbr = 0;
			}
			nbrs = malloc((off + 1) * sizeof(*nbrs));
			if (!nbrs)
				goto out;
		}
		for (size_t x = 0; x < nram; x++) {
			struct region *ra = &rg[order[x]];
			for (size_t y = x + 1; y < nram && rg[order[y]].lo < ra->hi; y++) {
				struct region *rb = &rg[order[y]];
				if (pass == 1) {
					nbrs[ra->nbr + ra->nnbr] = order[y];
					nbrs[rb->nbr + rb->nnbr] = order[x];
				}
				ra->nnbr++;
				rb->nnbr++;
			}
		}
	}
	st->cp = 0;
	st->cp_last = -1;
	k = 0;
	for (size_t i = 0; i < n; i++) {
		const struct trace_rec *r = &t->recs[idx[i]];
		double best = 0;
		long bp = -1;
		for (size_t a = 0; a < r->nacc; a++) {
			int mode = t->acc[r->acc + a].mode;
			if (!(mode & (STARPU_R | STARPU_W)))
				continue;   /* scratch / reduction: no ordering */
			const struct region *q = &rg[accr[k + a]];
			for (size_t m = 0; m <= q->nnbr; m++) {
				const struct region *e = m == 0 ? q : &rg[nbrs[q->nbr + m - 1]];
				consider(t, idx, dist, e->writer, i, &best, &bp);      /* RAW, WAW */
				if (mode & STARPU_W)
					consider(t, idx, dist, e->reader, i, &best, &bp);  /* WAR */
			}
		}
		dist[i] = best + dur(r);
		st->pred[i] = bp;
		for (size_t a = 0; a < r->nacc; a++) {
			int mode = t->acc[r->acc + a].mode;
			struct region *e = &rg[accr[k + a]];
			if (mode & STARPU_W) {
				e->writer = (long)i;
				e->reader = -1;
			} else if ((mode & STARPU_R) && (e->reader < 0 || dist[i] > dist[e->reader])) {
				e->reader = (long)i;
			}
		}
		k += r->nacc;
		if (dist[i] > st->cp || st->cp_last < 0) {
			st->cp = dist[i];
			st->cp_last = (long)i;
		}
	}
	st->cp_len = 0;
	for (long i = st->cp_last; i >= 0; i = st->pred[i])
		st->cp_len++;
	rc = LSPO_OK;
out:
	free(tab); free(accr); free(order); free(rg); free(dist); free(nbrs);
	if (rc) {
		free(st->pred);
		st->pred = NULL;
		lspo_error("trace: out of memory computing the critical path");
	}
	return rc;
}

/* Everything about one group of records (idx sorted by job id). */
static int analyse(const struct lspo_trace *t, const size_t *idx, size_t n, double t0,
                   struct group_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->ntasks = n;
	st->t0 = t0;
	st->tend = t0;
	for (size_t i = 0; i < n; i++)
		if (t->recs[idx[i]].end > st->tend)
			st->tend = t->recs[idx[i]].end;
	st->wall = st->tend - st->t0;
	struct ival *ex = malloc((n + 1) * sizeof(*ex)), *fe = malloc((n + 1) * sizeof(*fe));
	if (!ex || !fe) {
		free(ex);
		free(fe);
		return LSPO_ENOMEM;
	}
	unsigned nw = starpu_worker_get_count();
	for (unsigned w = 0; w < nw && w < STARPU_NMAXWORKERS; w++) {
		size_t ne = 0, nf = 0;
		for (size_t i = 0; i < n; i++) {
			const struct trace_rec *r = &t->recs[idx[i]];
			if (r->worker != (int)w)
				continue;
			ex[ne++] = (struct ival){ r->start, r->start + dur(r) };
			if (r->fetch1 > r->fetch0 && r->fetch0 > 0)
				fe[nf++] = (struct ival){ r->fetch0, r->fetch1 };
		}
		st->nw_tasks[w] = ne;
		ne = ival_union(ex, ne);
		st->busy[w] = ival_measure(ex, ne);
		/* Input fetches only cross a bus for workers outside main memory. */
		if (starpu_node_get_kind(starpu_worker_get_memory_node(w)) != STARPU_CPU_RAM) {
			nf = ival_union(fe, nf);
			st->fetch[w] = ival_measure(fe, nf);
			st->hidden[w] = ival_overlap(fe, nf, ex, ne);
		}
	}
	free(ex);
	free(fe);
	return critical_path(t, idx, n, st);
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */

static void worker_label(unsigned w, char *buf, size_t len)
{
	char name[64];
	starpu_worker_get_name((int)w, name, sizeof(name));
	snprintf(buf, len, "worker %u %s", w, name);
}

static const char *worker_kind(int w)
{
	if (w < 0)
		return "none";
	switch (starpu_worker_get_type(w)) {
	case STARPU_CPU_WORKER: return "cpu";
	case STARPU_CUDA_WORKER: return "cuda";
	case STARPU_OPENCL_WORKER: return "opencl";
	default: return "other";
	}
}

static void print_bytes(FILE *f, const long long *bytes)
{
	fprintf(f, "  bytes: %s %lld, %s %lld, %s %lld", dir_names[DIR_H2D], bytes[DIR_H2D],
	        dir_names[DIR_D2H], bytes[DIR_D2H], dir_names[DIR_D2D], bytes[DIR_D2D]);
	if (bytes[DIR_H2H])
		fprintf(f, ", %s %lld", dir_names[DIR_H2H], bytes[DIR_H2H]);
	fputc('\n', f);
}

/* Worker, transfer and critical-path lines of a group (or of a sum). */
static void print_workers(FILE *f, const struct group_stats *st, double wall)
{
	unsigned nw = starpu_worker_get_count();
	for (unsigned w = 0; w < nw && w < STARPU_NMAXWORKERS; w++) {
		char label[96];
		worker_label(w, label, sizeof(label));
		fprintf(f, "  %s (%s): busy %.1f%% (%.3f ms, %zu tasks)\n", label, worker_kind((int)w),
		        wall > 0 ? 100.0 * st->busy[w] / wall : 0.0, st->busy[w] * 1e-3, st->nw_tasks[w]);
	}
}

static void print_transfers(FILE *f, const struct group_stats *st, double bus_us, long long ntransfers)
{
	double fetch = 0, hidden = 0;
	unsigned nw = starpu_worker_get_count();
	for (unsigned w = 0; w < nw && w < STARPU_NMAXWORKERS; w++)
		fetch += st->fetch[w], hidden += st->hidden[w];
	fprintf(f, "  transfers: %lld, bus time %.3f ms (bus model), fetch %.3f ms, "
	        "hidden behind compute %.3f ms", ntransfers, bus_us * 1e-3, fetch * 1e-3, hidden * 1e-3);
	if (fetch > 0)
		fprintf(f, " (%.1f%% of fetch)", 100.0 * hidden / fetch);
	fputc('\n', f);
}

static void print_chain(const struct lspo_trace *t, FILE *f, const size_t *idx, const struct group_stats *st)
{
	fprintf(f, "  critical path: %.3f ms = %.1f%% of wall, %zu tasks:", st->cp * 1e-3,
	        st->wall > 0 ? 100.0 * st->cp / st->wall : 0.0, st->cp_len);
	if (st->cp_len == 0) {
		fputc('\n', f);
		return;
	}
	long *chain = malloc(st->cp_len * sizeof(*chain));
	if (!chain) {
		fputs(" (out of memory)\n", f);
		return;
	}
	size_t k = st->cp_len;
	for (long i = st->cp_last; i >= 0 && k > 0; i = st->pred[i])
		chain[--k] = i;
	for (size_t i = 0; i < st->cp_len;) {
		const char *name = t->recs[idx[chain[i]]].name;
		size_t j = i + 1;
		while (j < st->cp_len && t->recs[idx[chain[j]]].name == name)
			j++;
		fprintf(f, "%s %s", i ? " ->" : "", name);
		if (j - i > 1)
			fprintf(f, " x%zu", j - i);
		i = j;
	}
	fputc('\n', f);
	free(chain);
}

static void csv_field(FILE *f, const char *s)
{
	for (; *s; s++)
		fputc(*s == ',' || *s == '\n' || *s == '"' ? ';' : *s, f);
}

static long seg_of(const struct lspo_trace *t, double submit)
{
	long lo = 0, hi = (long)t->nsegs - 1;
	while (lo < hi) {   /* last segment with t0 <= submit */
		long mid = (lo + hi + 1) / 2;
		if (t->segs[mid].t0 <= submit)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static int write_csv(const struct lspo_trace *t, const char *path, const size_t *order, size_t n,
                     const long *seg)
{
	FILE *f = fopen(path, "w");
	if (!f)
		LSPO_FAIL(LSPO_EIO, "%s: cannot write: %s", path, strerror(errno));
	fputs("# lspo tasks.csv: one row per executed task. Times in us since starpu_init (StarPU's clock). "
	      "bytes = total size of the task's data buffers (every buffer it reads or writes, counted once "
	      "per buffer). layer and stage: the task's tag (<op>:L<layer>:<stage>, or <op>:<stage> for a "
	      "step-level task: layer -1); a name that is no tag has layer -1 and an empty stage. "
	      "step 0 = outside training steps.\n", f);
	fputs("step,task,layer,stage,worker,worker_kind,submit_us,start_us,end_us,bytes,job_id,priority\n", f);
	for (size_t k = 0; k < n; k++) {
		const struct trace_rec *r = &t->recs[order[k]];
		struct lspo_tag tag;
		lspo_tag_parse(r->name, &tag);   /* not a tag: layer -1, stage "" */
		int step = t->segs[seg[order[k]]].step;
		fprintf(f, "%d,", step > 0 ? step : 0);
		csv_field(f, r->name);
		fprintf(f, ",%d,%s", tag.layer, lspo_stage_name(tag.stage));
		fprintf(f, ",%d,%s,%.3f,%.3f,%.3f,%zu,%lu,%d\n", r->worker, worker_kind(r->worker),
		        r->submit, r->start, r->end, r->bytes, r->job, r->prio);
	}
	if (fclose(f) != 0)
		LSPO_FAIL(LSPO_EIO, "%s: write failed", path);
	return LSPO_OK;
}

static int cmp_double(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return (a > b) - (a < b);
}

static int write_summary(const struct lspo_trace *t, const char *path, const size_t *byjob, size_t n,
                         const long *seg)
{
	FILE *f = fopen(path, "w");
	if (!f)
		LSPO_FAIL(LSPO_EIO, "%s: cannot write: %s", path, strerror(errno));
	size_t nsteps = 0;
	for (size_t s = 0; s < t->nsegs; s++)
		nsteps += t->segs[s].step > 0;
	unsigned nw = starpu_worker_get_count();
	fprintf(f, "# lspo trace summary: policy %s, %u workers (%u CPU, %u CUDA), %zu steps, %zu tasks\n",
	        t->policy.policy_name ? t->policy.policy_name : "?", nw, starpu_cpu_worker_get_count(),
	        starpu_cuda_worker_get_count(), nsteps, n);
	fputs("# wall: from the step's start (lspo_trace_mark_step) to the end of its last task.\n"
	      "# busy: time the worker executed tasks of the step (union of [start, end]) / wall; idle = 100% - busy.\n"
	      "# bytes: StarPU bus profiling, bytes moved between memory nodes by direction; 0 without an\n"
	      "#   accelerator (CPU-only machine: no bus).  bus time: StarPU's calibrated bus model (latency +\n"
	      "#   size / bandwidth per transfer) applied to those transfers, an estimate (StarPU counts bytes).\n"
	      "# fetch: time accelerator workers had task inputs in flight (union of the tasks'\n"
	      "#   [acquire_data_start, acquire_data_end]); hidden: the part of it during which that same worker\n"
	      "#   was executing a task (transfer overlapped with computation on the destination worker).\n"
	      "# critical path: the longest chain of dependent tasks of the step by measured duration;\n"
	      "#   dependencies rebuilt from the tasks' handles and access modes in job-id (submission) order\n"
	      "#   (read-after-write, write-after-read, write-after-write), within the step.\n", f);
	lspo_mem_print_legend(f);

	struct group_stats *tot = calloc(1, sizeof(*tot)), *st = calloc(1, sizeof(*st));
	size_t *grp = malloc((n + 1) * sizeof(*grp));
	double *walls = malloc((t->nsegs + 1) * sizeof(*walls));
	if (!tot || !st || !grp || !walls) {
		free(tot); free(st); free(grp); free(walls);
		fclose(f);
		LSPO_FAIL(LSPO_ENOMEM, "trace: out of memory writing %s", path);
	}
	long long bytes[NDIRS] = { 0 }, obytes[NDIRS] = { 0 }, ntransfers = 0;
	double bus_us = 0, cp_max = 0;
	int cp_max_step = 0;
	size_t outside = 0, nwalls = 0;
	int rc = LSPO_OK;
	for (size_t s = 0; s < t->nsegs && !rc; s++) {
		struct trace_seg *sg = &t->segs[s];
		size_t m = 0;
		for (size_t k = 0; k < n; k++)
			if (seg[byjob[k]] == (long)s)
				grp[m++] = byjob[k];
		if (sg->step <= 0) {
			outside += m;
			for (int d = 0; d < NDIRS; d++)
				obytes[d] += sg->bus.bytes[d];
			continue;
		}
		rc = analyse(t, grp, m, sg->t0, st);
		if (rc)
			break;
		fprintf(f, "\nstep %d: wall %.3f ms, %zu tasks\n", sg->step, st->wall * 1e-3, m);
		print_workers(f, st, st->wall);
		print_bytes(f, sg->bus.bytes);
		print_transfers(f, st, sg->bus.model_us, sg->bus.transfers);
		lspo_mem_print_step(f, sg->step);   /* memstat.h */
		print_chain(t, f, grp, st);
		free(st->pred);
		st->pred = NULL;
		walls[nwalls++] = st->wall;
		tot->ntasks += m;
		tot->wall += st->wall;
		tot->cp += st->cp;
		for (unsigned w = 0; w < nw && w < STARPU_NMAXWORKERS; w++) {
			tot->busy[w] += st->busy[w];
			tot->fetch[w] += st->fetch[w];
			tot->hidden[w] += st->hidden[w];
			tot->nw_tasks[w] += st->nw_tasks[w];
		}
		for (int d = 0; d < NDIRS; d++)
			bytes[d] += sg->bus.bytes[d];
		ntransfers += sg->bus.transfers;
		bus_us += sg->bus.model_us;
		if (st->cp > cp_max)
			cp_max = st->cp, cp_max_step = sg->step;
	}
	if (!rc) {
		qsort(walls, nwalls, sizeof(*walls), cmp_double);
		double median = nwalls ? (nwalls % 2 ? walls[nwalls / 2]
		                                     : 0.5 * (walls[nwalls / 2 - 1] + walls[nwalls / 2])) : 0;
		fprintf(f, "\noverall: %zu steps, wall %.3f ms (median step %.3f ms), %zu tasks\n", nsteps,
		        tot->wall * 1e-3, median * 1e-3, tot->ntasks);
		print_workers(f, tot, tot->wall);
		print_bytes(f, bytes);
		print_transfers(f, tot, bus_us, ntransfers);
		fprintf(f, "  critical path: %.3f ms summed over steps = %.1f%% of wall; longest %.3f ms (step %d)\n",
		        tot->cp * 1e-3, tot->wall > 0 ? 100.0 * tot->cp / tot->wall : 0.0, cp_max * 1e-3,
		        cp_max_step);
		lspo_mem_print_step(f, 0);
		fprintf(f, "\noutside training steps: %zu tasks\n", outside);
		print_bytes(f, obytes);
		if (t->dropped)
			fprintf(f, "\nwarning: %ld task records lost (out of memory)\n", t->dropped);
	}
	free(tot); free(st); free(grp); free(walls);
	if (fclose(f) != 0 && !rc)
		LSPO_FAIL(LSPO_EIO, "%s: write failed", path);
	return rc;
}

/* Writes path via path.tmp and a rename, so readers never see half a file. */
static int write_both(struct lspo_trace *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->nrecs; i++)
		n += t->recs[i].done;
	size_t *byjob = malloc((n + 1) * sizeof(*byjob)), *bystart = malloc((n + 1) * sizeof(*bystart));
	long *seg = malloc((t->nrecs + 1) * sizeof(*seg));
	size_t plen = strlen(t->dir) + 32;
	char *tmp = malloc(plen), *final = malloc(plen);
	int rc = LSPO_OK;
	if (!byjob || !bystart || !seg || !tmp || !final) {
		rc = LSPO_ENOMEM;
		lspo_error("trace: out of memory writing %s", t->dir);
		goto out;
	}
	n = 0;
	for (size_t i = 0; i < t->nrecs; i++) {
		if (!t->recs[i].done)
			continue;
		byjob[n] = bystart[n] = i;
		seg[i] = seg_of(t, t->recs[i].submit);
		n++;
	}
	qsort_r(byjob, n, sizeof(*byjob), cmp_job, t->recs);
	qsort_r(bystart, n, sizeof(*bystart), cmp_start, t->recs);
	static const char *const files[2] = { "tasks.csv", "summary.txt" };
	for (int k = 0; k < 2 && !rc; k++) {
		snprintf(tmp, plen, "%s/%s.tmp", t->dir, files[k]);
		snprintf(final, plen, "%s/%s", t->dir, files[k]);
		rc = k == 0 ? write_csv(t, tmp, bystart, n, seg) : write_summary(t, tmp, byjob, n, seg);
		if (!rc && rename(tmp, final) != 0) {
			lspo_error("%s: cannot rename to %s: %s", tmp, final, strerror(errno));
			rc = LSPO_EIO;
		}
		if (rc)
			remove(tmp);
	}
out:
	free(byjob); free(bystart); free(seg); free(tmp); free(final);
	return rc;
}

static int flush(struct lspo_trace *t)
{
	if (!t->on)
		return LSPO_OK;
	pthread_mutex_lock(&t->lock);
	struct bus_count now;
	bus_totals(t, &now);
	for (size_t s = 0; s < t->nsegs; s++)
		bus_diff(&t->segs[s].at, s + 1 < t->nsegs ? &t->segs[s + 1].at : &now, &t->segs[s].bus);
	int rc = write_both(t);
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int lspo_trace_flush(void)
{
	struct lspo_trace *t = lspo_ctx_trace();
	return t ? flush(t) : LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Life cycle (src/runtime/ctx.c)                                                   */

static int mkdir_p(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = 0;
		if (mkdir(p, 0777) != 0 && errno != EEXIST) {
			int e = errno;
			free(p);
			return e;
		}
		*s = '/';
	}
	int e = mkdir(p, 0777) != 0 && errno != EEXIST ? errno : 0;
	free(p);
	return e;
}

/* Frees the records (under t->lock once StarPU runs); the policy copy
 * and its chain to the original hooks stay, since StarPU may still call
 * them until it shuts down. */
static void trace_clear(struct lspo_trace *t)
{
	t->on = 0;
	lspo_tags_free(t->names);
	free(t->recs);
	free(t->acc);
	free(t->segs);
	free(t->dir);
	t->names = NULL;
	t->recs = NULL, t->nrecs = t->caprecs = 0;
	t->acc = NULL, t->nacc = t->capacc = 0;
	t->segs = NULL, t->nsegs = t->capsegs = 0;
	t->dir = NULL;
	t->dropped = 0;
	memset(t->rings, 0, sizeof(t->rings));
}

int lspo_trace_create(struct lspo_trace **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		LSPO_FAIL(LSPO_ENOMEM, "trace: out of memory");
	pthread_mutex_init(&(*out)->lock, NULL);
	pthread_mutex_init(&(*out)->bus_lock, NULL);
	return LSPO_OK;
}

void lspo_trace_free(struct lspo_trace *t)
{
	if (!t)
		return;
	trace_clear(t);
	pthread_mutex_destroy(&t->lock);
	pthread_mutex_destroy(&t->bus_lock);
	free(t);
}

int lspo_trace_begin(struct lspo_trace *t, const char *dir, struct starpu_sched_policy **policy)
{
	trace_clear(t);   /* StarPU is not running: no hook can run */
	int e = mkdir_p(dir);
	if (e)
		LSPO_FAIL(LSPO_EIO, "%s: cannot create trace directory: %s", dir, strerror(e));
	t->dir = strdup(dir);
	if (!t->dir)
		LSPO_FAIL(LSPO_ENOMEM, "trace: out of memory");
	int rc = lspo_tags_create(&t->names);
	if (rc) {
		trace_clear(t);
		return rc;
	}
	t->policy = **policy;
	t->orig_pre = t->policy.pre_exec_hook;
	t->orig_post = t->policy.post_exec_hook;
	t->policy.pre_exec_hook = trace_pre_exec;
	t->policy.post_exec_hook = trace_post_exec;
	*policy = &t->policy;
	return LSPO_OK;
}

void lspo_trace_started(struct lspo_trace *t)
{
	pthread_mutex_lock(&t->bus_lock);
	memset(&t->bus_total, 0, sizeof(t->bus_total));   /* a new StarPU instance */
	pthread_mutex_unlock(&t->bus_lock);
	if (!t->dir)
		return;
	starpu_profiling_status_set(STARPU_PROFILING_ENABLE);   /* also resets the bus counters */
	if (new_seg(t, 0, starpu_timing_now()) == 0)
		t->on = 1;
	else
		lspo_warn("trace: out of memory: no trace in %s", t->dir);
}

void lspo_trace_end(struct lspo_trace *t, int write)
{
	if (t->on && write && flush(t) == LSPO_OK)
		lspo_info("trace: wrote %s/tasks.csv and %s/summary.txt", t->dir, t->dir);
	pthread_mutex_lock(&t->lock);
	trace_clear(t);
	pthread_mutex_unlock(&t->lock);
}
