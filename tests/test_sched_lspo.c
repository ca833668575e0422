/*
 * test_sched_lspo.c - the `lspo` policy's layer-wise rules on synthetic
 * task sets (CPU workers only; every stage may run on them): name parsing,
 * the --lsp-delays parser, the automatic cut, FCFS above the cut and LCFS
 * below it, the order of the classes, delays, several updates at once, a
 * delayed task that no backward will release, and no task lost.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <starpu.h>

#include "common.h"
#include "gate.h"
#include "runtime/sched/sched_lspo.h"

/* ------------------------------------------------------------------------ */
/* Execution records                                                        */

#define MAXT 256
static atomic_int seq;               /* event counter: starts and ends */
static int start_at[MAXT], end_at[MAXT];
static int order[MAXT];
static atomic_int norder;

static void record(void *arg)
{
	order[atomic_fetch_add(&norder, 1)] = (int)(intptr_t)arg;
}

static void busy_ms(double ms)
{
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	do
		clock_gettime(CLOCK_MONOTONIC, &b);
	while ((b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) * 1e-6 < ms);
}

struct targ { int id; double ms; };

static void timed(void *buffers[], void *arg)
{
	(void)buffers;
	struct targ *a = arg;
	start_at[a->id] = atomic_fetch_add(&seq, 1);
	busy_ms(a->ms);
	end_at[a->id] = atomic_fetch_add(&seq, 1);
}

static void nothing(void *buffers[], void *arg) { (void)buffers; (void)arg; }

static struct starpu_codelet cl_nop = { .cpu_funcs = { nothing }, .nbuffers = 0, .name = "nop" };
static struct starpu_codelet cl_t0 = { .cpu_funcs = { timed }, .nbuffers = 0, .name = "t0" };
static struct starpu_codelet cl_t1 = {
	.cpu_funcs = { timed }, .nbuffers = 1, .modes = { STARPU_RW }, .name = "t1" };
static struct starpu_codelet cl_t2 = {
	.cpu_funcs = { timed }, .nbuffers = 2, .modes = { STARPU_RW, STARPU_RW }, .name = "t2" };

/* Names must outlive their tasks. */
static char names[MAXT][32];

static const char *name(int id, const char *fmt, int layer)
{
	snprintf(names[id], sizeof(names[id]), fmt, layer);
	return names[id];
}

static void submit_nop(int id, const char *nm, int prio)
{
	int rc = starpu_task_insert(&cl_nop, STARPU_NAME, nm, STARPU_PRIORITY, prio,
	                            STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0);
	CHECK(rc == 0, "task_insert returned %d", rc);
}

static void submit_timed(int id, const char *nm, double ms, starpu_data_handle_t a,
                         starpu_data_handle_t b)
{
	struct targ *t = malloc(sizeof(*t));
	t->id = id;
	t->ms = ms;
	struct starpu_codelet *cl = b ? &cl_t2 : a ? &cl_t1 : &cl_t0;
	int rc = b ? starpu_task_insert(cl, STARPU_RW, a, STARPU_RW, b, STARPU_NAME, nm,
	                                STARPU_CL_ARGS, t, sizeof(*t),
	                                STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0)
	    : a ? starpu_task_insert(cl, STARPU_RW, a, STARPU_NAME, nm, STARPU_CL_ARGS, t, sizeof(*t),
	                             STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0)
	        : starpu_task_insert(cl, STARPU_NAME, nm, STARPU_CL_ARGS, t, sizeof(*t),
	                             STARPU_CALLBACK_WITH_ARG_NFREE, record, (void *)(intptr_t)id, 0);
	CHECK(rc == 0, "task_insert returned %d", rc);
}

static void reset_records(void)
{
	atomic_store(&norder, 0);
	atomic_store(&seq, 0);
	memset(start_at, -1, sizeof(start_at));
	memset(end_at, -1, sizeof(end_at));
}

static void set_opts(int cut, int nlayers, int du, int dl, int da)
{
	struct lspo_sched_opts o = lspo_sched_opts_default();
	o.cut = cut;
	o.nlayers = nlayers;
	o.delay_upd = du;
	o.delay_upload = dl;
	o.delay_apply = da;
	CHECK(lspo_sched_set_opts(&o) == LSPO_OK, "set_opts(cut %d) refused", cut);
}

static void check_order(const char *what, const int *expect, int n)
{
	int got = atomic_load(&norder);
	CHECK(got == n, "%s: %d tasks ran, %d submitted", what, got, n);
	for (int i = 0; i < n && i < got; i++)
		CHECK(order[i] == expect[i], "%s: position %d: task %d (%s), expected task %d (%s)",
		      what, i, order[i], names[order[i]], expect[i], names[expect[i]]);
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "test_sched_lspo: timed out (a task never ran?)\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	_exit(1);
}

/* ------------------------------------------------------------------------ */
/* Pure parts                                                               */

static void test_stage_of(void)
{
	int l;
	CHECK(lspo_sched_stage_of("matmul:L3:bwd", &l) == LSPO_STAGE_BWD && l == 3, "matmul:L3:bwd");
	CHECK(lspo_sched_stage_of("subspace_adam:L12:upd", &l) == LSPO_STAGE_UPD && l == 12, "upd");
	CHECK(lspo_sched_stage_of("proj_apply:L0:apply", &l) == LSPO_STAGE_APPLY && l == 0, "apply");
	CHECK(lspo_sched_stage_of("project_bwd:L7:proj", &l) == LSPO_STAGE_PROJ && l == 7, "proj");
	CHECK(lspo_sched_stage_of("cast:L2:offload", &l) == LSPO_STAGE_OFFLOAD && l == 2, "offload");
	CHECK(lspo_sched_stage_of("cast:L2:upload", &l) == LSPO_STAGE_UPLOAD && l == 2, "upload");
	CHECK(lspo_sched_stage_of("layernorm:L5:fwd", &l) == LSPO_STAGE_FWD && l == 5, "fwd");
	CHECK(lspo_sched_stage_of("clip_scale:upd", &l) == LSPO_STAGE_UPD && l == -1, "clip_scale:upd");
	CHECK(lspo_sched_stage_of("xent:fwd", &l) == LSPO_STAGE_FWD && l == -1, "xent:fwd");
	CHECK(lspo_sched_stage_of("fill:ones", &l) == LSPO_STAGE_NONE, "fill:ones");
	CHECK(lspo_sched_stage_of("lspo:overflow", &l) == LSPO_STAGE_NONE, "overflow");
	CHECK(lspo_sched_stage_of("nop", &l) == LSPO_STAGE_NONE, "nop");
	CHECK(lspo_sched_stage_of(NULL, &l) == LSPO_STAGE_NONE, "NULL");
	/* Not tags (tag.h): a malformed layer field makes the name no tag at all. */
	CHECK(lspo_sched_stage_of("x:L:upd", &l) == LSPO_STAGE_NONE && l == -1, "empty layer");
	CHECK(lspo_sched_stage_of("x:L3a:upd", &l) == LSPO_STAGE_NONE && l == -1, "bad layer");
	CHECK(lspo_sched_stage_of("a:b:L3:upd", &l) == LSPO_STAGE_NONE && l == -1, "four fields");
	/* A tag whose layer is beyond the policy's range: its stage, no layer. */
	CHECK(lspo_sched_stage_of("x:L1023:upd", &l) == LSPO_STAGE_UPD && l == 1023, "last layer");
	CHECK(lspo_sched_stage_of("x:L99999:upd", &l) == LSPO_STAGE_UPD && l == -1, "huge layer");
	CHECK(lspo_sched_stage_of("x:L3:check", &l) == LSPO_STAGE_CHECK && l == 3, "check");
	CHECK(lspo_sched_stage_of("x:L3:updx", &l) == LSPO_STAGE_NONE, "bad stage");
	CHECK(lspo_sched_stage_of("L3:upd", &l) == LSPO_STAGE_UPD && l == -1, "no op");
}

static void test_parse_delays(void)
{
	struct lspo_sched_opts o = lspo_sched_opts_default();
	CHECK(o.cut == -1 && o.nlayers == 0 && o.delay_upd == 0 && o.delay_upload == 0 &&
	      o.delay_apply == 0, "defaults");
	CHECK(lspo_sched_parse_delays("upd=2,upload=3,apply=4", &o) == LSPO_OK &&
	      o.delay_upd == 2 && o.delay_upload == 3 && o.delay_apply == 4, "keyed");
	CHECK(lspo_sched_parse_delays("apply=7", &o) == LSPO_OK &&
	      o.delay_upd == 2 && o.delay_upload == 3 && o.delay_apply == 7, "subset keeps the rest");
	CHECK(lspo_sched_parse_delays("1,0,5", &o) == LSPO_OK &&
	      o.delay_upd == 1 && o.delay_upload == 0 && o.delay_apply == 5, "bare");
	static const char *const bad[] = {
		"", "upd", "upd=", "upd=-1", "upd=x", "foo=1", "upd=1,upd=2", "1,2", "1,2,3,4",
		"1,upd=2,3", "upd=1,,apply=2", "upd=2,", "99999999", "upd =1", NULL,
	};
	for (int i = 0; bad[i]; i++) {
		struct lspo_sched_opts b = o;
		CHECK(lspo_sched_parse_delays(bad[i], &b) == LSPO_EINVAL, "'%s' accepted", bad[i]);
		CHECK(b.delay_upd == o.delay_upd && b.delay_upload == o.delay_upload &&
		      b.delay_apply == o.delay_apply, "'%s' changed the options", bad[i]);
	}
	CHECK(lspo_sched_parse_delays(NULL, &o) == LSPO_EINVAL, "NULL accepted");

	struct lspo_sched_opts s = lspo_sched_opts_default();
	s.cut = -2;
	CHECK(lspo_sched_set_opts(&s) == LSPO_EINVAL, "cut -2 accepted");
	s = lspo_sched_opts_default();
	s.delay_apply = -1;
	CHECK(lspo_sched_set_opts(&s) == LSPO_EINVAL, "delay -1 accepted");
	s = lspo_sched_opts_default();
	s.nlayers = -3;
	CHECK(lspo_sched_set_opts(&s) == LSPO_EINVAL, "nlayers -3 accepted");
	CHECK(lspo_sched_set_opts(NULL) == LSPO_EINVAL, "NULL accepted");
	s = lspo_sched_opts_default();
	s.cut = 5;
	CHECK(lspo_sched_set_opts(&s) == LSPO_OK && lspo_sched_get_cut() == 5, "cut 5 not in use");
	s.cut = -1;
	s.nlayers = 13;
	CHECK(lspo_sched_set_opts(&s) == LSPO_OK && lspo_sched_get_cut() == 3,
	      "auto cut without estimates: %d, expected round(13/4) = 3", lspo_sched_get_cut());
	CHECK(lspo_sched_set_opts(&(struct lspo_sched_opts){ .cut = -1 }) == LSPO_OK, "reset");
}

static void test_auto_cut(void)
{
	double bwd[16], pipe[16];
	/* Uniform: 10 ms backward per layer, 35 ms pipeline: layer i hides iff
	 * 35 <= 10 i, so layers 0..3 are LCFS. */
	for (int i = 0; i < 13; i++) {
		bwd[i] = 10e3;
		pipe[i] = 35e3;
	}
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 4, "uniform: cut %d, expected 4",
	      lspo_sched_auto_cut(13, bwd, pipe));
	/* Exactly hidden counts as hidden: 30 ms <= 3 x 10 ms. */
	for (int i = 0; i < 13; i++)
		pipe[i] = 30e3;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 3, "boundary: cut %d, expected 3",
	      lspo_sched_auto_cut(13, bwd, pipe));
	/* Cheap pipeline: only layer 0 (nothing below it) is LCFS. */
	for (int i = 0; i < 13; i++)
		pipe[i] = 1e3;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 1, "cheap: cut %d", lspo_sched_auto_cut(13, bwd, pipe));
	/* A slow deep layer (the LM head) that cannot hide makes every layer LCFS. */
	pipe[12] = 500e3;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 13, "slow head: cut %d",
	      lspo_sched_auto_cut(13, bwd, pipe));
	/* Layers without a pipeline hide. */
	for (int i = 0; i < 13; i++)
		pipe[i] = 0.0;
	pipe[5] = 45e3;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 0, "45 ms at layer 5 (50 ms below): cut %d",
	      lspo_sched_auto_cut(13, bwd, pipe));
	pipe[5] = 55e3;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 6, "55 ms at layer 5: cut %d",
	      lspo_sched_auto_cut(13, bwd, pipe));
	/* Uncalibrated models: the default round(n / 4). */
	pipe[3] = NAN;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 3, "NaN: cut %d", lspo_sched_auto_cut(13, bwd, pipe));
	for (int i = 0; i < 13; i++)
		bwd[i] = pipe[i] = 0.0;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 3, "zeros: cut %d", lspo_sched_auto_cut(13, bwd, pipe));
	bwd[0] = -1.0;
	CHECK(lspo_sched_auto_cut(13, bwd, pipe) == 3, "negative accepted");
	CHECK(lspo_sched_auto_cut(8, NULL, NULL) == 2, "NULL arrays");
	CHECK(lspo_sched_default_cut(1) == 0 && lspo_sched_default_cut(2) == 1 &&
	      lspo_sched_default_cut(6) == 2 && lspo_sched_default_cut(13) == 3 &&
	      lspo_sched_default_cut(0) == 0, "default cut");
}

/* ------------------------------------------------------------------------ */
/* One worker: orders                                                       */

static void test_fcfs_lcfs(void)
{
	/* Ready order of the updates: layers 6 2 7 1 5 3 0 4, cut 4. */
	static const int layers[] = { 6, 2, 7, 1, 5, 3, 0, 4 };
	/* LCFS below the cut (most recent first): 0 3 1 2, then FCFS above it:
	 * 6 7 5 4.  Ids are positions in `layers`. */
	static const int expect[] = { 6, 5, 3, 1, 0, 2, 4, 7 };
	set_opts(4, 8, 0, 0, 0);
	CHECK(lspo_sched_get_cut() == 4, "cut %d in use, expected 4", lspo_sched_get_cut());
	reset_records();
	gate_close();
	for (int i = 0; i < 8; i++)
		submit_nop(i, name(i, "adam:L%d:upd", layers[i]), 0);
	gate_open_all();
	starpu_task_wait_for_all();
	check_order("fcfs/lcfs", expect, 8);
	/* FCFS ignores priorities; LCFS too. */
}

static void test_classes(void)
{
	set_opts(4, 8, 0, 0, 0);
	reset_records();
	gate_close();
	int id = 0;
	submit_nop(id++, name(0, "a:L%d:apply", 5), 0);          /* 0 FCFS */
	submit_nop(id++, name(1, "b:L%d:upd", 6), 9);            /* 1 FCFS */
	submit_nop(id++, name(2, "c:L%d:bwd", 2), 0);            /* 2 BWD */
	submit_nop(id++, name(3, "d:L%d:bwd", 4), 0);            /* 3 BWD */
	submit_nop(id++, name(4, "e:L%d:fwd", 1), 0);            /* 4 FWD */
	submit_nop(id++, name(5, "unknown%d", 0), 3);            /* 5 OTHER */
	submit_nop(id++, name(6, "g:L%d:proj", 6), 0);           /* 6 HEAD */
	submit_nop(id++, name(7, "h:L%d:proj", 1), 0);           /* 7 LCFS */
	submit_nop(id++, name(8, "i:L%d:fwd", 3), 0);            /* 8 FWD */
	submit_nop(id++, name(9, "j:L%d:bwd", 7), -5);           /* 9 BWD */
	submit_nop(id++, name(10, "clip_scale:upd%.0d", 0), 5);  /* 10 OTHER (no layer) */
	submit_nop(id++, name(11, "xent:fwd%.0d", 0), 0);        /* 11 FWD, after the layers */
	submit_nop(id++, name(12, "k:L%d:upload", 0), 0);        /* 12 LCFS */
	submit_nop(id++, name(13, "m:L%d:bwd", 4), 7);           /* 13 BWD, before 3 (priority) */
	submit_nop(id++, name(14, "n:L%d:offload", 5), 0);       /* 14 HEAD */
	submit_nop(id++, name(15, "other%d", 0), 8);             /* 15 OTHER */
	gate_open_all();
	starpu_task_wait_for_all();
	static const int expect[] = {
		6, 14,           /* HEAD: deep proj/offload, ready order */
		9, 13, 3, 2,     /* BWD: L7, L4 (prio 7), L4, L2 */
		12, 7,           /* LCFS: most recent first */
		4, 8, 11,        /* FWD: L1, L3, layer-less */
		15, 10, 5,       /* OTHER: priorities 8, 5, 3 */
		0, 1,            /* FCFS: ready order */
	};
	check_order("classes", expect, id);
}

/* Unknown names only: exactly the priority list of the old policy. */
static void test_priorities(void)
{
	static const int prio[] = { 1, 5, 3, 9, 0, 7, 5, 2 };
	static const int expect[] = { 3, 5, 1, 6, 2, 7, 0, 4 };
	reset_records();
	gate_close();
	for (int i = 0; i < 8; i++)
		submit_nop(i, name(i, "task%d", i), prio[i]);
	gate_open_all();
	starpu_task_wait_for_all();
	check_order("priorities", expect, 8);
}

/* ------------------------------------------------------------------------ */
/* Two workers: delays, concurrency, starvation                             */

/* A backward chain of layers 5..0 (20 ms each) and an update per layer that
 * needs its layer's gradient.  Returns through start_at/end_at; ids: bwd of
 * layer i = i, upd of layer i = 10 + i. */
static void run_chain(int delay_upd)
{
	set_opts(0, 6, delay_upd, 0, 0);
	reset_records();
	int chain = 0, grad[6] = { 0 };
	starpu_data_handle_t hc, hg[6];
	starpu_variable_data_register(&hc, STARPU_MAIN_RAM, (uintptr_t)&chain, sizeof(chain));
	for (int i = 0; i < 6; i++)
		starpu_variable_data_register(&hg[i], STARPU_MAIN_RAM, (uintptr_t)&grad[i], sizeof(int));
	/* A forward first, so that this backward is a new pass. */
	submit_timed(30, name(30, "f:L%d:fwd", 0), 0.0, hc, NULL);
	for (int i = 5; i >= 0; i--) {
		submit_timed(i, name(i, "m:L%d:bwd", i), 20.0, hc, hg[i]);
		submit_timed(10 + i, name(10 + i, "a:L%d:upd", i), 1.0, hg[i], NULL);
	}
	starpu_task_wait_for_all();
	CHECK(atomic_load(&norder) == 13, "chain: %d of 13 tasks ran", atomic_load(&norder));
	starpu_data_unregister(hc);
	for (int i = 0; i < 6; i++)
		starpu_data_unregister(hg[i]);
}

static void test_delays(void)
{
	/* Without delays an update starts while the next bwd runs (the other
	 * worker is free): shows that the delayed run below is not trivial. */
	run_chain(0);
	int overlaps = 0;
	for (int i = 5; i >= 1; i--)
		overlaps += start_at[10 + i] < end_at[i - 1];
	if (!overlaps)
		printf("note: without delays no update overlapped the next backward\n");

	/* delay_upd = 2: the upd of layer i waits until the bwd of layer
	 * t = max(i - 2, 0) was popped, which is after the bwd of layer t + 1
	 * ended (a chain). */
	run_chain(2);
	for (int i = 5; i >= 0; i--) {
		int t = i - 2 > 0 ? i - 2 : 0;
		CHECK(start_at[10 + i] > end_at[t + 1],
		      "delay 2: upd L%d started (event %d) before bwd L%d ended (event %d)",
		      i, start_at[10 + i], t + 1, end_at[t + 1]);
		CHECK(start_at[10 + i] > end_at[i], "upd L%d before its own bwd", i);
	}
}

/* Two updates, each waits (up to 5 s) for the other to start. */
static atomic_int started;

static void meet(void *buffers[], void *arg)
{
	(void)buffers;
	int id = (int)(intptr_t)arg;
	atomic_fetch_add(&started, 1);
	for (int k = 0; k < 5000 && atomic_load(&started) < 2; k++)
		busy_ms(1.0);
	start_at[id] = atomic_load(&started);
}

static struct starpu_codelet cl_meet = { .cpu_funcs = { meet }, .nbuffers = 0, .name = "meet" };

static void test_concurrent_updates(void)
{
	set_opts(0, 8, 0, 0, 0);
	reset_records();
	atomic_store(&started, 0);
	for (int i = 0; i < 2; i++) {
		int rc = starpu_task_insert(&cl_meet, STARPU_NAME, name(i, "a:L%d:upd", 5 + i),
		                            STARPU_CL_ARGS_NFREE, (void *)(intptr_t)i, (size_t)0, 0);
		CHECK(rc == 0, "task_insert %d", rc);
	}
	starpu_task_wait_for_all();
	CHECK(start_at[0] == 2 && start_at[1] == 2, "the two updates did not run at once (%d %d)",
	      start_at[0], start_at[1]);
}

/* A delayed update whose trigger never comes: the backward stops at layer 9
 * (front 9 > trigger 2), no bwd is left; it must run anyway. */
static void test_starvation(void)
{
	set_opts(0, 10, 3, 0, 0);
	reset_records();
	int x = 0;
	starpu_data_handle_t h;
	starpu_variable_data_register(&h, STARPU_MAIN_RAM, (uintptr_t)&x, sizeof(x));
	submit_timed(0, name(0, "f:L%d:fwd", 0), 0.0, h, NULL);
	submit_timed(1, name(1, "m:L%d:bwd", 9), 5.0, h, NULL);
	submit_timed(2, name(2, "a:L%d:upd", 5), 0.0, h, NULL);
	submit_timed(3, name(3, "a:L%d:apply", 5), 0.0, h, NULL);
	starpu_task_wait_for_all();
	starpu_data_unregister(h);
	CHECK(atomic_load(&norder) == 4, "starvation: %d of 4 tasks ran", atomic_load(&norder));
}

/* Many tasks of every kind, random dependencies: all run. */
static void test_no_task_lost(void)
{
	set_opts(-1, 0, 1, 2, 3);
	reset_records();
	enum { NH = 8, NT = 200 };
	int v[NH] = { 0 };
	starpu_data_handle_t h[NH];
	for (int i = 0; i < NH; i++)
		starpu_variable_data_register(&h[i], STARPU_MAIN_RAM, (uintptr_t)&v[i], sizeof(int));
	static const char *const fmts[] = { "x:L%d:fwd", "x:L%d:bwd", "x:L%d:proj", "x:L%d:offload",
	                                    "x:L%d:upd", "x:L%d:upload", "x:L%d:apply", "odd%d" };
	uint64_t rng = 42;
	for (int i = 0; i < NT; i++) {
		int k = (int)((test_uniform(&rng) + 1.0f) * 4.0f) & 7;
		int layer = (int)((test_uniform(&rng) + 1.0f) * 6.0f);
		int a = (int)((test_uniform(&rng) + 1.0f) * NH / 2) % NH;
		int b = (a + 1 + (int)((test_uniform(&rng) + 1.0f) * 3.0f)) % NH;
		submit_timed(i, name(i, fmts[k], layer), 0.0, h[a], i % 3 ? h[b] : NULL);
	}
	starpu_task_wait_for_all();
	for (int i = 0; i < NH; i++)
		starpu_data_unregister(h[i]);
	CHECK(atomic_load(&norder) == NT, "%d of %d tasks ran", atomic_load(&norder), NT);
	int seen[NT] = { 0 };
	for (int i = 0; i < atomic_load(&norder); i++)
		seen[order[i]]++;
	for (int i = 0; i < NT; i++)
		CHECK(seen[i] == 1, "task %d ran %d times", i, seen[i]);
	int cut = lspo_sched_get_cut();
	CHECK(cut >= 0 && cut <= 12, "auto cut %d", cut);
}

int main(void)
{
	signal(SIGALRM, on_alarm);
	alarm(120);
	test_stage_of();
	test_parse_delays();
	test_auto_cut();

	struct lspo_ctx *ctx = test_start("lspo", 1, 0);
	CHECK(strcmp(starpu_sched_ctx_get_sched_policy(0)->policy_name, "lspo") == 0, "not installed");
	test_fcfs_lcfs();
	test_classes();
	test_priorities();
	lspo_ctx_destroy(ctx);

	ctx = test_start("lspo", 2, 0);
	if (lspo_ctx_ncpus(ctx) < 2) {
		fprintf(stderr, "only %d CPU worker: two-worker tests skipped\n", lspo_ctx_ncpus(ctx));
	} else {
		test_delays();
		test_concurrent_updates();
		test_starvation();
		test_no_task_lost();
	}
	lspo_ctx_destroy(ctx);
	lspo_sched_set_opts(&(struct lspo_sched_opts){ .cut = -1 });
	/* What the policy learned (layers seen, automatic cut) belonged to the
	 * context: without one, the cut comes from the options alone. */
	CHECK(lspo_sched_get_cut() == 0, "cut %d with no context, no nlayers: expected 0",
	      lspo_sched_get_cut());
	return test_finish("test_sched_lspo");
}
