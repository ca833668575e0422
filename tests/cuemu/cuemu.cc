/*
 * cuemu.cc - the CUDA emulator's runtime: kernel launches run synchronously
 * on the calling thread, one block after another; each CUDA thread of the
 * block is a fiber with its own stack (guard page below) that runs until a
 * synchronisation point (__syncthreads, a warp collective) or its end.  The
 * scheduler releases a barrier when every thread of the block waits there, a
 * warp collective when every lane of its mask arrived, and reports what a
 * GPU would only survive by chance (divergent barriers, exited or absent
 * lanes, deadlocks, launch limits) with kernel, block, thread and line.
 *
 * Context switches: a few instructions of assembly on x86-64 (the callee-
 * saved registers and the stack pointer), ucontext elsewhere; both are
 * announced to AddressSanitizer.  Dynamic shared memory ends exactly at a
 * PROT_NONE page, so the first byte past it faults, and the fault handler
 * names the kernel, block and thread.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cblas.h>

#include "cuemu.h"

#if defined(__SANITIZE_ADDRESS__)
#define CUEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUEMU_ASAN 1
#endif
#endif
#ifdef CUEMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_STACK (512 * 1024)
#else
#define CUEMU_STACK (128 * 1024)
#endif

#if defined(__x86_64__) && !defined(CUEMU_UCONTEXT)
#define CUEMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#define MAX_THREADS 1024
#define MAX_REPORTS 64

enum state { READY, AT_BARRIER, AT_WARP, DONE };

struct cuemu_thread {
	struct cuemu_thread_pub pub;   /* first: cuemu.h reads threadIdx here */
#ifdef CUEMU_ASM_SWITCH
	void *sp;
#else
	ucontext_t uc;
#endif
	char *stack;                   /* usable [stack, stack + CUEMU_STACK), guard page below */
	int linear, warp, lane;
	enum state state;
	int dirty;                     /* abandoned mid-kernel: its stack shadow needs a reset */
	const char *file;              /* where it waits */
	int line;
	int kind, arg, width, op;      /* the collective or barrier it waits in */
	unsigned mask;
	uint64_t val, result;
	void *fake_stack;
};

extern "C" {
struct cuemu_thread_pub *cuemu_self;
uint3 cuemu_block_idx, cuemu_block_dim, cuemu_grid_dim;
}

static struct cuemu_thread threads[MAX_THREADS];
static int nthreads, nwarps;

/* The launch in progress. */
static const struct cuemu_launch_cfg *cur_cfg;
static void (*cur_body)(void *);
static void *cur_arg;
static int aborted;                   /* an error stopped the launch */
static char *smem_base;               /* dynamic shared memory: [smem_base, smem_guard) */
static char *smem_guard, *smem_map;
static size_t smem_size, smem_map_len;

static enum cuemu_mode mode = CUEMU_WARP;
static enum cuemu_order order = CUEMU_FORWARD;
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static int initialised, quiet;
static cudaError_t last_error = cudaSuccess;
static size_t launches;
static size_t page;

static char *reports[MAX_REPORTS];
static int nreports;

/* Kernels that opted in to more dynamic shared memory. */
static struct {
	const void *kernel;
	int bytes;
} optin[64];
static int noptin;

/* ---------------------------------------------------------------------------
 * Reports */

static void add_report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add_report(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (!quiet)
		fprintf(stderr, "cuemu: %s\n", buf);
	if (nreports < MAX_REPORTS)
		reports[nreports] = strdup(buf);
	nreports++;
}

/* An error of thread t (its current line), which stops the launch. */
static void thread_error(const struct cuemu_thread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void thread_error(const struct cuemu_thread *t, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	add_report("%s:%d: kernel %s (launched at %s:%d), block (%u,%u,%u), thread (%u,%u,%u): %s",
	           t->file ? t->file : cur_cfg->file, t->file ? t->line : cur_cfg->line, cur_cfg->name,
	           cur_cfg->file, cur_cfg->line, cuemu_block_idx.x, cuemu_block_idx.y, cuemu_block_idx.z,
	           t->pub.tid.x, t->pub.tid.y, t->pub.tid.z, msg);
	aborted = 1;
}

extern "C" int cuemu_report_count(void)
{
	return nreports;
}

extern "C" const char *cuemu_report_text(int i)
{
	return i >= 0 && i < nreports && i < MAX_REPORTS ? reports[i] : "(report not kept)";
}

extern "C" void cuemu_clear_reports(void)
{
	for (int i = 0; i < nreports && i < MAX_REPORTS; i++)
		free(reports[i]);
	nreports = 0;
	last_error = cudaSuccess;
}

extern "C" void cuemu_set_quiet(int q)
{
	quiet = q;
}

extern "C" void cuemu_report_status(const char *what, const char *status, const char *file, int line)
{
	add_report("%s:%d: the host code reports a %s error: %s", file, line, what, status);
}

/* ---------------------------------------------------------------------------
 * Schedules */

static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

extern "C" int cuemu_schedule_from_env(enum cuemu_mode *m, enum cuemu_order *o, uint64_t *seed)
{
	const char *s = getenv("CUEMU_SCHEDULE"), *r = getenv("CUEMU_ORDER"), *e = getenv("CUEMU_SEED");
	*m = CUEMU_WARP;
	*o = CUEMU_FORWARD;
	*seed = e ? strtoull(e, NULL, 0) : 1;
	if (s && !strcmp(s, "lockstep"))
		*m = CUEMU_LOCKSTEP;
	else if (s && *s && strcmp(s, "warp"))
		fprintf(stderr, "cuemu: CUEMU_SCHEDULE=%s: expected warp or lockstep; using warp\n", s);
	if (r && !strcmp(r, "reverse"))
		*o = CUEMU_REVERSE;
	else if (r && !strcmp(r, "random"))
		*o = CUEMU_RANDOM;
	else if (r && *r && strcmp(r, "forward"))
		fprintf(stderr, "cuemu: CUEMU_ORDER=%s: expected forward, reverse or random; using forward\n", r);
	return (s && *s) || (r && *r);
}

extern "C" void cuemu_set_schedule(enum cuemu_mode m, enum cuemu_order o, uint64_t seed)
{
	mode = m;
	order = o;
	rng = seed * 0x9e3779b97f4a7c15ull + 0x2545f4914f6cdd1dull;
	if (!rng)
		rng = 1;
}

extern "C" const char *cuemu_schedule_name(void)
{
	static const char *names[2][3] = {
		{ "warp/forward", "warp/reverse", "warp/random" },
		{ "lockstep/forward", "lockstep/reverse", "lockstep/random" },
	};
	return names[mode][order];
}

/* Fills p[0..n) with 0..n-1 in the schedule's order. */
static void make_order(int *p, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = order == CUEMU_REVERSE ? n - 1 - i : i;
	if (order == CUEMU_RANDOM)
		for (int i = n - 1; i > 0; i--) {
			int j = (int)(next_rand() % (uint64_t)(i + 1)), tmp = p[i];
			p[i] = p[j];
			p[j] = tmp;
		}
}

/* ---------------------------------------------------------------------------
 * Fibers */

#ifdef CUEMU_ASM_SWITCH
/* cuemu_switch(save, to): pushes the callee-saved registers, stores the stack
 * pointer in *save, loads `to` and pops the other side's registers.  A new
 * fiber's stack holds six register slots (r13 = entry, r12 = argument) and
 * cuemu_fiber_start as the return address. */
extern "C" void cuemu_switch(void **save, void *to);
extern "C" void cuemu_fiber_start(void);
asm(".text\n"
    ".globl cuemu_switch\n.hidden cuemu_switch\n.type cuemu_switch,@function\n"
    "cuemu_switch:\n"
    "\tpushq %rbp\n\tpushq %rbx\n\tpushq %r12\n\tpushq %r13\n\tpushq %r14\n\tpushq %r15\n"
    "\tmovq %rsp, (%rdi)\n\tmovq %rsi, %rsp\n"
    "\tpopq %r15\n\tpopq %r14\n\tpopq %r13\n\tpopq %r12\n\tpopq %rbx\n\tpopq %rbp\n"
    "\tret\n"
    ".size cuemu_switch, .-cuemu_switch\n"
    ".globl cuemu_fiber_start\n.hidden cuemu_fiber_start\n.type cuemu_fiber_start,@function\n"
    "cuemu_fiber_start:\n"
    "\tmovq %r12, %rdi\n\tcallq *%r13\n\tud2\n"
    ".size cuemu_fiber_start, .-cuemu_fiber_start\n");
static void *main_sp;
#else
static ucontext_t main_uc;
#endif

#ifdef CUEMU_ASAN
static const void *main_stack_bottom;
static size_t main_stack_size;
static void *main_fake_stack;
#endif

static void fiber_main(struct cuemu_thread *t);

#ifndef CUEMU_ASM_SWITCH
static void fiber_entry_ucontext(unsigned hi, unsigned lo)
{
	fiber_main((struct cuemu_thread *)(((uintptr_t)hi << 32) | lo));
}
#endif

static void fiber_init(struct cuemu_thread *t)
{
	if (!t->stack) {
		char *m = (char *)mmap(NULL, CUEMU_STACK + page, PROT_READ | PROT_WRITE,
		                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			perror("cuemu: fiber stack");
			abort();
		}
		mprotect(m, page, PROT_NONE);
		t->stack = m + page;
	}
#ifdef CUEMU_ASAN
	if (t->dirty)
		ASAN_UNPOISON_MEMORY_REGION(t->stack, CUEMU_STACK);
#endif
	t->dirty = 0;
#ifdef CUEMU_ASM_SWITCH
	uintptr_t top = ((uintptr_t)t->stack + CUEMU_STACK) & ~(uintptr_t)15;
	void **sp = (void **)(top - 72);
	sp[0] = 0;                               /* r15 */
	sp[1] = 0;                               /* r14 */
	sp[2] = (void *)&fiber_main;             /* r13: entry */
	sp[3] = t;                               /* r12: its argument */
	sp[4] = 0;                               /* rbx */
	sp[5] = 0;                               /* rbp */
	sp[6] = (void *)&cuemu_fiber_start;      /* return address */
	t->sp = sp;
#else
	getcontext(&t->uc);
	t->uc.uc_stack.ss_sp = t->stack;
	t->uc.uc_stack.ss_size = CUEMU_STACK;
	t->uc.uc_link = NULL;
	makecontext(&t->uc, (void (*)(void))fiber_entry_ucontext, 2, (unsigned)((uintptr_t)t >> 32),
	            (unsigned)(uintptr_t)t);
#endif
}

/* Main context -> fiber t, until t waits or ends. */
static void resume(struct cuemu_thread *t)
{
	cuemu_self = &t->pub;
#ifdef CUEMU_ASAN
	__sanitizer_start_switch_fiber(&main_fake_stack, t->stack, CUEMU_STACK);
#endif
#ifdef CUEMU_ASM_SWITCH
	cuemu_switch(&main_sp, t->sp);
#else
	swapcontext(&main_uc, &t->uc);
#endif
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(main_fake_stack, NULL, NULL);
#endif
	cuemu_self = NULL;
}

/* Fiber t -> main context; returns when the scheduler resumes t. */
static void yield_to_main(struct cuemu_thread *t, int ending)
{
#ifdef CUEMU_ASAN
	__sanitizer_start_switch_fiber(ending ? NULL : &t->fake_stack, main_stack_bottom, main_stack_size);
#else
	(void)ending;
#endif
#ifdef CUEMU_ASM_SWITCH
	cuemu_switch(&t->sp, main_sp);
#else
	swapcontext(&t->uc, &main_uc);
#endif
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(t->fake_stack, &main_stack_bottom, &main_stack_size);
#endif
}

static void fiber_main(struct cuemu_thread *t)
{
#ifdef CUEMU_ASAN
	__sanitizer_finish_switch_fiber(NULL, &main_stack_bottom, &main_stack_size);
#endif
	cur_body(cur_arg);
	t->state = DONE;
	t->file = NULL;
	yield_to_main(t, 1);
	abort();   /* never resumed */
}

static struct cuemu_thread *current(const char *what, const char *file, int line)
{
	if (!cuemu_self) {
		fprintf(stderr, "cuemu: %s:%d: %s outside a kernel\n", file, line, what);
		abort();
	}
	return (struct cuemu_thread *)cuemu_self;
}

/* ---------------------------------------------------------------------------
 * Synchronisation points (called by the fibers) */

extern "C" int cuemu_syncthreads_op(const char *file, int line, int op, int pred)
{
	struct cuemu_thread *t = current("__syncthreads", file, line);
	t->state = AT_BARRIER;
	t->file = file;
	t->line = line;
	t->op = op;
	t->val = (uint64_t)pred;
	yield_to_main(t, 0);
	return (int)t->result;
}

extern "C" void cuemu_syncthreads(const char *file, int line)
{
	cuemu_syncthreads_op(file, line, -1, 0);
}

extern "C" uint64_t cuemu_warp_op(const char *file, int line, int kind, unsigned mask, uint64_t v, int arg,
                                  int width)
{
	struct cuemu_thread *t = current("a warp collective", file, line);
	t->state = AT_WARP;
	t->file = file;
	t->line = line;
	t->kind = kind;
	t->mask = mask;
	t->val = v;
	t->arg = arg;
	t->width = width;
	yield_to_main(t, 0);
	return t->result;
}

extern "C" void cuemu_syncwarp(const char *file, int line, unsigned mask)
{
	cuemu_warp_op(file, line, CUEMU_SYNCWARP, mask, 0, 0, 32);
}

extern "C" unsigned cuemu_activemask(void)
{
	struct cuemu_thread *t = current("__activemask", "?", 0);
	unsigned m = 0;
	for (int l = 0; l < 32 && t->warp * 32 + l < nthreads; l++)
		if (threads[t->warp * 32 + l].state != DONE)
			m |= 1u << l;
	return m;
}

extern "C" void *cuemu_dynamic_smem(void)
{
	current("extern __shared__", "?", 0);
	return smem_base;
}

static const char *kind_name(int kind)
{
	static const char *names[] = { "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
	                               "__ballot_sync", "__any_sync", "__all_sync", "__syncwarp" };
	return names[kind];
}

/* Completes the collectives of warp w whose lanes all arrived; reports the
 * ones that can never complete.  Returns the number of lanes released. */
static int resolve_warp(int w)
{
	int released = 0;
	for (int l = 0; l < 32 && w * 32 + l < nthreads && !aborted; l++) {
		struct cuemu_thread *t = &threads[w * 32 + l];
		if (t->state != AT_WARP)
			continue;
		unsigned M = t->mask;
		if (!(M & (1u << l))) {
			thread_error(t, "%s: lane %d is not in its mask 0x%08x", kind_name(t->kind), l, M);
			return released;
		}
		int complete = 1;
		for (int b = 0; b < 32 && complete; b++) {
			if (!(M & (1u << b)))
				continue;
			if (w * 32 + b >= nthreads) {
				thread_error(t, "%s: mask 0x%08x names lane %d, which does not exist (the block has %d threads)",
				             kind_name(t->kind), M, b, nthreads);
				return released;
			}
			struct cuemu_thread *u = &threads[w * 32 + b];
			switch (u->state) {
			case READY:
				complete = 0;
				break;
			case DONE:
				thread_error(t, "%s: lane %d of the mask 0x%08x has exited", kind_name(t->kind), b, M);
				return released;
			case AT_BARRIER:
				thread_error(t, "%s: lane %d of the mask 0x%08x waits in __syncthreads at %s:%d "
				             "(a deadlock on a GPU)", kind_name(t->kind), b, M, u->file, u->line);
				return released;
			case AT_WARP:
				if (u->kind != t->kind || u->mask != M || u->line != t->line || u->file != t->file) {
					thread_error(t, "%s with mask 0x%08x while lane %d of the mask is in %s with mask "
					             "0x%08x at %s:%d (divergent warp collectives)", kind_name(t->kind), M, b,
					             kind_name(u->kind), u->mask, u->file, u->line);
					return released;
				}
				break;
			}
		}
		if (!complete)
			continue;
		/* Every lane of M is here: compute each one's result. */
		int width = t->width;
		if (width < 1 || width > 32 || (width & (width - 1))) {
			thread_error(t, "%s: width %d is not a power of 2 in [1, 32]", kind_name(t->kind), width);
			return released;
		}
		uint64_t ballot = 0;
		for (int b = 0; b < 32; b++)
			if ((M & (1u << b)) && threads[w * 32 + b].val)
				ballot |= 1u << b;
		for (int b = 0; b < 32; b++) {
			if (!(M & (1u << b)))
				continue;
			struct cuemu_thread *u = &threads[w * 32 + b];
			int seg = b & ~(width - 1), src = b;
			switch (u->kind) {
			case CUEMU_SHFL_IDX: src = seg + (u->arg & (width - 1)); break;
			case CUEMU_SHFL_UP: src = b - u->arg < seg ? b : b - u->arg; break;
			case CUEMU_SHFL_DOWN: src = b + u->arg >= seg + width ? b : b + u->arg; break;
			case CUEMU_SHFL_XOR: src = (b ^ u->arg) >= seg + width ? b : (b ^ u->arg); break;
			default: break;
			}
			if (u->kind <= CUEMU_SHFL_XOR) {
				if (src < 0 || src > 31 || !(M & (1u << src))) {
					thread_error(u, "%s: lane %d reads lane %d, which is not in the mask 0x%08x "
					             "(undefined value)", kind_name(u->kind), b, src, M);
					return released;
				}
				u->result = threads[w * 32 + src].val;
			} else if (u->kind == CUEMU_BALLOT) {
				u->result = ballot;
			} else if (u->kind == CUEMU_ANY) {
				u->result = ballot != 0;
			} else if (u->kind == CUEMU_ALL) {
				u->result = ballot == (uint64_t)M;
			}
		}
		for (int b = 0; b < 32; b++)
			if (M & (1u << b)) {
				threads[w * 32 + b].state = READY;
				released++;
			}
	}
	return released;
}

/* Every live thread waits in __syncthreads: check it is the same one, then
 * release them. */
static void release_barrier(void)
{
	struct cuemu_thread *first = NULL;
	int count = 0, all = 1, any = 0;
	for (int i = 0; i < nthreads; i++) {
		struct cuemu_thread *t = &threads[i];
		if (t->state != AT_BARRIER)
			continue;
		if (!first)
			first = t;
		else if (t->line != first->line || t->file != first->file || t->op != first->op) {
			thread_error(t, "__syncthreads at %s:%d while thread (%u,%u,%u) waits in the one at %s:%d "
			             "(divergent barrier)", t->file, t->line, first->pub.tid.x, first->pub.tid.y,
			             first->pub.tid.z, first->file, first->line);
			return;
		}
		count += t->val != 0;
		all &= t->val != 0;
		any |= t->val != 0;
	}
	for (int i = 0; i < nthreads; i++)
		if (threads[i].state == DONE) {
			thread_error(&threads[i], "exited while the other threads wait in __syncthreads at %s:%d "
			             "(a barrier must be reached by every thread of the block)", first->file, first->line);
			return;
		}
	uint64_t r = first->op == 0 ? (uint64_t)count : first->op == 1 ? (uint64_t)all : (uint64_t)any;
	for (int i = 0; i < nthreads; i++) {
		threads[i].state = READY;
		threads[i].result = r;
	}
}

/* ---------------------------------------------------------------------------
 * Blocks and launches */

static int warp_order[MAX_THREADS / 32], lane_order[MAX_THREADS / 32][32];

static int run_warp_once(int w)
{
	int ran = 0;
	for (int i = 0; i < 32 && !aborted; i++) {
		int l = lane_order[w][i];
		if (w * 32 + l >= nthreads)
			continue;
		struct cuemu_thread *t = &threads[w * 32 + l];
		if (t->state == READY) {
			resume(t);
			ran++;
		}
	}
	return ran;
}

static void run_block(unsigned bx, unsigned by, unsigned bz)
{
	cuemu_block_idx.x = bx;
	cuemu_block_idx.y = by;
	cuemu_block_idx.z = bz;
	for (int i = 0; i < nthreads; i++) {
		struct cuemu_thread *t = &threads[i];
		unsigned dx = cuemu_block_dim.x, dy = cuemu_block_dim.y;
		t->pub.tid.x = (unsigned)i % dx;
		t->pub.tid.y = (unsigned)i / dx % dy;
		t->pub.tid.z = (unsigned)i / (dx * dy);
		t->linear = i;
		t->warp = i / 32;
		t->lane = i % 32;
		t->state = READY;
		t->file = NULL;
		t->line = 0;
		t->fake_stack = NULL;
		fiber_init(t);
	}
	if (smem_size)
		memset(smem_base, 0xff, smem_size);   /* NaN in every float and double */
	make_order(warp_order, nwarps);
	for (int w = 0; w < nwarps; w++)
		make_order(lane_order[w], 32);

	for (;;) {
		if (mode == CUEMU_WARP) {
			for (int i = 0; i < nwarps && !aborted; i++) {
				int w = warp_order[i];
				while (!aborted && (run_warp_once(w) | resolve_warp(w)))
					;
			}
		} else {
			int ran = 0;
			for (int i = 0; i < nwarps && !aborted; i++)
				ran |= run_warp_once(warp_order[i]);
			for (int w = 0; w < nwarps && !aborted; w++)
				ran |= resolve_warp(w);
			if (ran)
				continue;
		}
		if (aborted)
			break;
		int ready = 0, at_warp = -1, at_barrier = 0;
		for (int i = 0; i < nthreads; i++) {
			ready += threads[i].state == READY;
			at_barrier += threads[i].state == AT_BARRIER;
			if (threads[i].state == AT_WARP && at_warp < 0)
				at_warp = i;
		}
		if (ready)
			continue;
		if (at_warp >= 0) {   /* resolve_warp reports these; in case it could not */
			thread_error(&threads[at_warp], "%s never completes (deadlock)", kind_name(threads[at_warp].kind));
			break;
		}
		if (!at_barrier)
			break;   /* every thread ended */
		release_barrier();
		if (aborted)
			break;
	}
	if (aborted)
		for (int i = 0; i < nthreads; i++)
			if (threads[i].state != DONE)
				threads[i].dirty = 1;
}

static const char *launch_where(void)
{
	static char buf[512];
	snprintf(buf, sizeof(buf), "%s:%d: launch of %s<<<(%u,%u,%u), (%u,%u,%u), %zu>>>", cur_cfg->file,
	         cur_cfg->line, cur_cfg->name, cur_cfg->grid[0], cur_cfg->grid[1], cur_cfg->grid[2],
	         cur_cfg->block[0], cur_cfg->block[1], cur_cfg->block[2], cur_cfg->smem);
	return buf;
}

static void launch_error(cudaError_t e, const char *why)
{
	add_report("%s: %s (%s)", launch_where(), why, cuemu_cudaGetErrorString(e));
	if (last_error == cudaSuccess)
		last_error = e;
}

static void on_fault(int sig, siginfo_t *si, void *uc);
static struct sigaction old_segv, old_bus;

static void init(void)
{
	if (initialised)
		return;
	initialised = 1;
	page = (size_t)sysconf(_SC_PAGESIZE);
	enum cuemu_mode m;
	enum cuemu_order o;
	uint64_t seed;
	cuemu_schedule_from_env(&m, &o, &seed);
	cuemu_set_schedule(m, o, seed);
	/* Faults in a kernel are reported on an alternate stack (a fiber's own
	 * may be the one that overflowed). */
	static char altstack[64 * 1024];
	stack_t ss;
	memset(&ss, 0, sizeof(ss));
	ss.ss_sp = altstack;
	ss.ss_size = sizeof(altstack);
	sigaltstack(&ss, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGSEGV, &sa, &old_segv);
	sigaction(SIGBUS, &sa, &old_bus);
}

/* Says which kernel, block and thread touched what, then lets the fault
 * happen again under the previous handler (the default one, or the
 * sanitizer's, which adds a stack trace). */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	char buf[1024];
	const char *what = "an invalid address";
	char *a = (char *)si->si_addr;
	long off = 0;
	if (cur_cfg && smem_guard && a >= smem_guard && a < smem_guard + page) {
		what = "dynamic shared memory overrun";
		off = (long)(a - smem_guard);
	} else if (cur_cfg && a >= smem_map && a < smem_base) {
		what = "dynamic shared memory underrun";
		off = (long)(smem_base - a);
	}
	for (int i = 0; i < MAX_THREADS && cur_cfg; i++)
		if (threads[i].stack && a >= threads[i].stack - page && a < threads[i].stack)
			what = "stack overflow of a fiber";
	if (cur_cfg) {
		const struct cuemu_thread *t = (const struct cuemu_thread *)cuemu_self;
		int n = snprintf(buf, sizeof(buf), "cuemu: %s: %s: address %p (%ld bytes %s the %zu bytes of dynamic "
		                 "shared memory), in block (%u,%u,%u), thread (%u,%u,%u)\n", launch_where(), what,
		                 (void *)a, off, a >= smem_guard ? "past" : "before", smem_size, cuemu_block_idx.x,
		                 cuemu_block_idx.y, cuemu_block_idx.z, t ? t->pub.tid.x : 0, t ? t->pub.tid.y : 0,
		                 t ? t->pub.tid.z : 0);
		if (n > 0 && write(2, buf, (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1) < 0)
			_exit(3);
	}
	sigaction(sig, sig == SIGSEGV ? &old_segv : &old_bus, NULL);
}

/* The largest launch of each kernel, written at exit to $CUEMU_LAUNCH_LOG
 * ("kernel<TAB>threads per block<TAB>dynamic shared memory bytes" lines):
 * scripts/gpu-check sets the registers nvcc reports against it. */
static struct {
	const char *name;
	unsigned threads;
	size_t smem;
} sizes[256];
static int nsizes;

static void write_launch_log(void)
{
	const char *path = getenv("CUEMU_LAUNCH_LOG");
	FILE *f = path && *path ? fopen(path, "w") : NULL;
	if (!f)
		return;
	for (int i = 0; i < nsizes; i++)
		fprintf(f, "%s\t%u\t%zu\n", sizes[i].name, sizes[i].threads, sizes[i].smem);
	fclose(f);
}

static void note_size(const struct cuemu_launch_cfg *cfg, unsigned threads)
{
	int i = 0;
	while (i < nsizes && strcmp(sizes[i].name, cfg->name))
		i++;
	if (i == nsizes) {
		if (nsizes == (int)(sizeof(sizes) / sizeof(sizes[0])))
			return;
		if (!nsizes)
			atexit(write_launch_log);
		sizes[nsizes++].name = cfg->name;
	}
	sizes[i].threads = threads > sizes[i].threads ? threads : sizes[i].threads;
	sizes[i].smem = cfg->smem > sizes[i].smem ? cfg->smem : sizes[i].smem;
}

static int optin_bytes(const void *kernel)
{
	for (int i = 0; i < noptin; i++)
		if (optin[i].kernel == kernel)
			return optin[i].bytes;
	return CUEMU_SMEM_DEFAULT_MAX;
}

extern "C" void cuemu_launch(const struct cuemu_launch_cfg *cfg, const void *kernel, void (*body)(void *),
                             void *arg)
{
	init();
	if (cur_cfg) {
		add_report("%s:%d: kernel %s launched while %s runs (no dynamic parallelism here)", cfg->file,
		           cfg->line, cfg->name, cur_cfg->name);
		return;
	}
	cur_cfg = cfg;
	launches++;
	const unsigned *g = cfg->grid, *b = cfg->block;
	unsigned long long nt = (unsigned long long)b[0] * b[1] * b[2];
	char why[256];
	if (!g[0] || !g[1] || !g[2] || !b[0] || !b[1] || !b[2]) {
		launch_error(cudaErrorInvalidConfiguration, "a grid or block dimension is 0");
	} else if (b[0] > 1024 || b[1] > 1024 || b[2] > 64 || nt > 1024) {
		snprintf(why, sizeof(why), "%llu threads per block, block (%u,%u,%u): at most 1024, "
		         "x and y at most 1024, z at most 64", nt, b[0], b[1], b[2]);
		launch_error(cudaErrorInvalidConfiguration, why);
	} else if (g[0] > 0x7fffffffu || g[1] > 65535 || g[2] > 65535) {
		launch_error(cudaErrorInvalidConfiguration, "grid x at most 2^31 - 1, y and z at most 65535");
	} else if (cfg->param_bytes > CUEMU_PARAM_MAX) {
		snprintf(why, sizeof(why), "%zu bytes of kernel parameters, more than %d", cfg->param_bytes,
		         CUEMU_PARAM_MAX);
		launch_error(cudaErrorInvalidValue, why);
	} else if (cfg->smem > (size_t)optin_bytes(kernel)) {
		snprintf(why, sizeof(why), "%zu bytes of dynamic shared memory, more than the %d allowed%s",
		         cfg->smem, optin_bytes(kernel), optin_bytes(kernel) == CUEMU_SMEM_DEFAULT_MAX ?
		         " without cudaFuncSetAttribute(cudaFuncAttributeMaxDynamicSharedMemorySize)" : "");
		launch_error(cudaErrorInvalidValue, why);
	} else {
		/* The dynamic shared memory ends where a PROT_NONE page begins;
		 * its start keeps the alignment its size allows (up to 16). */
		smem_size = cfg->smem;
		smem_map_len = (smem_size + page - 1) / page * page + page;
		smem_map = (char *)mmap(NULL, smem_map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (smem_map == MAP_FAILED) {
			perror("cuemu: shared memory");
			abort();
		}
		smem_guard = smem_map + smem_map_len - page;
		mprotect(smem_guard, page, PROT_NONE);
		size_t align = smem_size & 15 ? (size_t)1 << __builtin_ctzll(smem_size | 16) : 16;
		smem_base = smem_guard - smem_size;
		smem_base -= (uintptr_t)smem_base % align;
		note_size(cfg, (unsigned)nt);
		cur_body = body;
		cur_arg = arg;
		cuemu_grid_dim.x = g[0];
		cuemu_grid_dim.y = g[1];
		cuemu_grid_dim.z = g[2];
		cuemu_block_dim.x = b[0];
		cuemu_block_dim.y = b[1];
		cuemu_block_dim.z = b[2];
		nthreads = (int)nt;
		nwarps = (nthreads + 31) / 32;
		aborted = 0;
		/* Blocks in the schedule's order; random: an affine permutation
		 * i -> (a i + c) mod n with a coprime to n. */
		unsigned long long n = (unsigned long long)g[0] * g[1] * g[2], a = 1, c = 0;
		if (order == CUEMU_RANDOM && n > 1) {
			c = next_rand() % n;
			do {
				a = 1 + next_rand() % (n - 1);
				unsigned long long x = a, y = n;
				while (y) {
					unsigned long long r = x % y;
					x = y;
					y = r;
				}
				if (x == 1)
					break;
			} while (1);
		}
		for (unsigned long long i = 0; i < n && !aborted; i++) {
			unsigned long long j = order == CUEMU_REVERSE ? n - 1 - i
			                     : order == CUEMU_RANDOM ? (unsigned long long)(((unsigned __int128)a * i + c) % n) : i;
			run_block((unsigned)(j % g[0]), (unsigned)(j / g[0] % g[1]), (unsigned)(j / g[0] / g[1]));
		}
		if (aborted && last_error == cudaSuccess)
			last_error = cudaErrorLaunchFailure;
		munmap(smem_map, smem_map_len);
		smem_map = smem_guard = smem_base = NULL;
		smem_size = 0;
	}
	cur_cfg = NULL;
}

extern "C" size_t cuemu_launch_count(void)
{
	return launches;
}

/* ---------------------------------------------------------------------------
 * Runtime stand-ins */

extern "C" cudaError_t cuemu_cudaGetLastError(void)
{
	cudaError_t e = last_error;
	last_error = cudaSuccess;
	return e;
}

extern "C" cudaError_t cuemu_cudaPeekAtLastError(void)
{
	return last_error;
}

extern "C" const char *cuemu_cudaGetErrorString(cudaError_t e)
{
	switch (e) {
	case cudaSuccess: return "no error";
	case cudaErrorInvalidValue: return "invalid argument";
	case cudaErrorMemoryAllocation: return "out of memory";
	case cudaErrorInvalidConfiguration: return "invalid configuration argument";
	case cudaErrorInvalidDeviceFunction: return "invalid device function";
	case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
	case cudaErrorLaunchFailure: return "unspecified launch failure";
	}
	return "unknown error";
}

extern "C" const char *cuemu_cublas_status_string(cublasStatus_t s)
{
	switch (s) {
	case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
	case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
	case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
	}
	return "unknown cuBLAS status";
}

extern "C" cudaError_t cuemu_cudaMemsetAsync(void *p, int value, size_t n, const char *file, int line)
{
	if (n && !p) {
		add_report("%s:%d: cudaMemsetAsync of %zu bytes at NULL", file, line, n);
		return cudaErrorInvalidValue;
	}
	if (n)
		memset(p, value, n);
	return cudaSuccess;
}

extern "C" cudaError_t cuemu_cudaMemset2DAsync(void *p, size_t pitch, int value, size_t width, size_t height,
                                               const char *file, int line)
{
	if (!width || !height)
		return cudaSuccess;
	if (!p || pitch < width) {
		add_report("%s:%d: cudaMemset2DAsync(%p, pitch %zu, width %zu, height %zu): %s", file, line, p, pitch,
		           width, height, p ? "the pitch is less than the width" : "NULL pointer");
		return cudaErrorInvalidValue;
	}
	for (size_t r = 0; r < height; r++)
		memset((char *)p + r * pitch, value, width);
	return cudaSuccess;
}

extern "C" cudaError_t cuemu_cudaMemcpyAsync(void *dst, const void *src, size_t n, const char *file, int line)
{
	if (n && (!dst || !src)) {
		add_report("%s:%d: cudaMemcpyAsync of %zu bytes with a NULL pointer", file, line, n);
		return cudaErrorInvalidValue;
	}
	if (n)
		memmove(dst, src, n);
	return cudaSuccess;
}

extern "C" void *cuemu_stream(void)
{
	static char stream;
	return &stream;
}

extern "C" cudaError_t cuemu_cudaFuncSetAttribute(const void *func, int attr, int value, const char *file,
                                                 int line)
{
	if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize)
		return cudaSuccess;
	if (value < 0 || value > CUEMU_SMEM_OPTIN_MAX) {
		add_report("%s:%d: cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): more than the %d bytes a "
		           "block may have on sm_80", file, line, value, CUEMU_SMEM_OPTIN_MAX);
		return cudaErrorInvalidValue;
	}
	for (int i = 0; i < noptin; i++)
		if (optin[i].kernel == func) {
			optin[i].bytes = value;
			return cudaSuccess;
		}
	if (noptin < (int)(sizeof(optin) / sizeof(optin[0]))) {
		optin[noptin].kernel = func;
		optin[noptin++].bytes = value;
	}
	return cudaSuccess;
}

/* ---------------------------------------------------------------------------
 * cuBLAS */

static char cublas_handle;

extern "C" cublasHandle_t cuemu_cublas_handle(void)
{
	return (cublasHandle_t)(void *)&cublas_handle;
}

static float widen_bf16(uint16_t b)
{
	uint32_t u = (uint32_t)b << 16;
	float x;
	memcpy(&x, &u, sizeof(x));
	return x;
}

static uint16_t round_bf16(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x40u);
	return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* A column-major (ld, cols) matrix of `type` as float32 (malloc'd). */
static float *widen_matrix(const void *p, cudaDataType type, int ld, int cols)
{
	size_t n = (size_t)(ld > 0 ? ld : 1) * (size_t)(cols > 0 ? cols : 1);
	float *f = (float *)malloc(n * sizeof(float));
	for (size_t i = 0; f && p && i < (size_t)(ld > 0 ? ld : 0) * (size_t)(cols > 0 ? cols : 0); i++)
		f[i] = type == CUDA_R_16BF ? widen_bf16(((const uint16_t *)p)[i]) : ((const float *)p)[i];
	return f;
}

extern "C" cublasStatus_t cuemu_cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                             int m, int n, int k, const void *alpha, const void *A,
                                             cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
                                             const void *beta, void *C, cudaDataType ct, int ldc,
                                             cublasComputeType_t compute, cublasGemmAlgo_t algo,
                                             const char *file, int line)
{
	(void)algo;
	int known = (at == CUDA_R_32F || at == CUDA_R_16BF) && (ct == CUDA_R_32F || ct == CUDA_R_16BF);
	if (!known || at != bt || compute != CUBLAS_COMPUTE_32F || (at == CUDA_R_32F && ct != CUDA_R_32F)) {
		add_report("%s:%d: cublasGemmEx: types A %d, B %d, C %d, compute %d: not a combination cuBLAS "
		           "supports with CUBLAS_COMPUTE_32F here (CUBLAS_STATUS_NOT_SUPPORTED)", file, line, (int)at,
		           (int)bt, (int)ct, (int)compute);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	int ca = ta == CUBLAS_OP_N ? k : m, cb = tb == CUBLAS_OP_N ? n : k;
	float *fa = widen_matrix(A, at, lda, ca), *fb = widen_matrix(B, bt, ldb, cb);
	float *fc = widen_matrix(C, ct, ldc, n);
	cublasStatus_t st = CUBLAS_STATUS_INVALID_VALUE;
	if (fa && fb && fc)
		st = cuemu_cublasSgemm(h, ta, tb, m, n, k, (const float *)alpha, fa, lda, fb, ldb, (const float *)beta,
		                       fc, ldc, file, line);
	if (st == CUBLAS_STATUS_SUCCESS)
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++) {
				size_t at_ = (size_t)j * ldc + i;
				if (ct == CUDA_R_16BF)
					((uint16_t *)C)[at_] = round_bf16(fc[at_]);
				else
					((float *)C)[at_] = fc[at_];
			}
	free(fa);
	free(fb);
	free(fc);
	return st;
}

extern "C" cudaError_t cuemu_cudaMallocAsync(void **p, size_t n, const char *file, int line)
{
	*p = malloc(n ? n : 1);
	if (!*p) {
		add_report("%s:%d: cudaMallocAsync of %zu bytes: out of memory", file, line, n);
		return cudaErrorMemoryAllocation;
	}
	memset(*p, 0xff, n);   /* NaN, as the emulator's fresh shared memory: a read before a write shows */
	return cudaSuccess;
}

extern "C" cudaError_t cuemu_cudaFreeAsync(void *p)
{
	free(p);
	return cudaSuccess;
}

/* cublasSgemm's checks, as its documentation lists them: m, n, k >= 0,
 * known transposes, lda >= max(1, rows of A as stored) (m for N, k for T),
 * ldb >= max(1, k for N, n for T), ldc >= max(1, m); alpha and beta host
 * pointers.  Then C = alpha op(A) op(B) + beta C in column-major order, C
 * not read when beta is 0. */
extern "C" cublasStatus_t cuemu_cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                            int m, int n, int k, const float *alpha, const float *A, int lda,
                                            const float *B, int ldb, const float *beta, float *C, int ldc,
                                            const char *file, int line)
{
	char why[256] = "";
	int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
	if (h != cuemu_cublas_handle())
		return cuemu_report_status("cuBLAS", "cublasSgemm: not a cuBLAS handle", file, line),
		       CUBLAS_STATUS_NOT_INITIALIZED;
	if (m < 0 || n < 0 || k < 0)
		snprintf(why, sizeof(why), "m = %d, n = %d, k = %d: negative", m, n, k);
	else if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T && ta != CUBLAS_OP_C) ||
	         (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T && tb != CUBLAS_OP_C))
		snprintf(why, sizeof(why), "transa %d, transb %d: not an operation", (int)ta, (int)tb);
	else if (lda < (ra > 1 ? ra : 1))
		snprintf(why, sizeof(why), "lda = %d, less than max(1, %s) = %d", lda, ta == CUBLAS_OP_N ? "m" : "k",
		         ra > 1 ? ra : 1);
	else if (ldb < (rb > 1 ? rb : 1))
		snprintf(why, sizeof(why), "ldb = %d, less than max(1, %s) = %d", ldb, tb == CUBLAS_OP_N ? "k" : "n",
		         rb > 1 ? rb : 1);
	else if (ldc < (m > 1 ? m : 1))
		snprintf(why, sizeof(why), "ldc = %d, less than max(1, m) = %d", ldc, m > 1 ? m : 1);
	else if (!alpha || !beta)
		snprintf(why, sizeof(why), "alpha or beta is NULL");
	if (why[0]) {
		add_report("%s:%d: cublasSgemm(%c, %c, m %d, n %d, k %d, lda %d, ldb %d, ldc %d): %s "
		           "(CUBLAS_STATUS_INVALID_VALUE)", file, line, "NTC"[ta % 3], "NTC"[tb % 3], m, n, k, lda,
		           ldb, ldc, why);
		return CUBLAS_STATUS_INVALID_VALUE;
	}
	if (!m || !n)
		return CUBLAS_STATUS_SUCCESS;
	if (!k || *alpha == 0.0f) {
		for (int j = 0; j < n; j++)
			for (int i = 0; i < m; i++)
				C[(size_t)j * ldc + i] = *beta == 0.0f ? 0.0f : *beta * C[(size_t)j * ldc + i];
		return CUBLAS_STATUS_SUCCESS;
	}
	if (*beta == 0.0f)   /* never read C, whatever OpenBLAS does with 0 * NaN */
		for (int j = 0; j < n; j++)
			memset(C + (size_t)j * ldc, 0, sizeof(float) * (size_t)m);
	cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
	            tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
	return CUBLAS_STATUS_SUCCESS;
}
