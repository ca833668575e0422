/*
 * cuemu_api.h - the CUDA emulator's C interface: what the tests call
 * (schedules, reports) and what cuemu.h's launches call.  C and C++; it
 * declares no CUDA type, so a C test may include it with StarPU's CUDA
 * headers.
 */
#ifndef LSPO_CUEMU_API_H
#define LSPO_CUEMU_API_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Schedules: the order in which the fibers of a block run.
 *   CUEMU_WARP:     each warp runs as far as it goes (to a __syncthreads or
 *                   its end) before the next warp starts;
 *   CUEMU_LOCKSTEP: every thread runs to its next synchronisation point
 *                   before any thread goes past it.
 * and the order of blocks, of warps in a block and of threads in a warp:
 * forward, reverse or random (seeded).  Set from CUEMU_SCHEDULE
 * (warp|lockstep), CUEMU_ORDER (forward|reverse|random) and CUEMU_SEED at
 * the first launch, or by cuemu_set_schedule. */
enum cuemu_mode { CUEMU_WARP, CUEMU_LOCKSTEP };
enum cuemu_order { CUEMU_FORWARD, CUEMU_REVERSE, CUEMU_RANDOM };
void cuemu_set_schedule(enum cuemu_mode mode, enum cuemu_order order, uint64_t seed);
/* 1 when CUEMU_SCHEDULE or CUEMU_ORDER is set in the environment (then
 * cuemu_set_schedule should not override it); fills the schedule it names. */
int cuemu_schedule_from_env(enum cuemu_mode *mode, enum cuemu_order *order, uint64_t *seed);
const char *cuemu_schedule_name(void);

/* Reports: every error the emulator found (launch refused, divergent
 * barrier, bad shuffle, CUDA or cuBLAS error reported by the host code, ...),
 * each one line naming the kernel, block, thread and line.  Printed to
 * stderr as they happen unless cuemu_set_quiet(1). */
int cuemu_report_count(void);
const char *cuemu_report_text(int i);
void cuemu_clear_reports(void);
void cuemu_set_quiet(int quiet);

/* Kernel launches (cuemu.h's launcher calls this). */
struct cuemu_launch_cfg {
	const char *file, *name;
	int line;
	unsigned grid[3], block[3];
	size_t smem;
	size_t param_bytes;   /* the kernel's parameters, at most CUEMU_PARAM_MAX */
};
void cuemu_launch(const struct cuemu_launch_cfg *cfg, const void *kernel, void (*body)(void *), void *arg);
size_t cuemu_launch_count(void);

/* Dynamic shared memory: at most this much without cudaFuncSetAttribute,
 * at most CUEMU_SMEM_OPTIN_MAX with it (sm_80's 163 KiB: the smallest of
 * the architectures lspo builds for). */
#define CUEMU_SMEM_DEFAULT_MAX (48 * 1024)
#define CUEMU_SMEM_OPTIN_MAX (163 * 1024)
/* Kernel parameters: 32764 bytes since CUDA 12.1 on Volta and later. */
#define CUEMU_PARAM_MAX 32764

#ifdef __cplusplus
}
#endif
#endif
