/*
 * codelet_util.h - what every codelet file shares: matrix handles in lspo's
 * row-major convention, task colours by class, and the perfmodel macro.
 *
 * A row-major (rows, cols) float matrix is a StarPU matrix with nx = cols
 * (the contiguous dimension), ny = rows and ld = the row stride.
 */
#ifndef LSPO_CODELET_UTIL_H
#define LSPO_CODELET_UTIL_H

#include <stdint.h>
#include <starpu.h>

/* Every codelet's model: history-based, keyed by the task footprint (the
 * symbol names the file under $STARPU_HOME/.starpu/sampling, so it never
 * changes).  With a SimGrid StarPU, kernels never run: tasks take the time
 * of a roofline estimate instead (src/runtime/sim_cost.c), and a declared CUDA
 * function lets StarPU place them on simulated GPUs. */
#ifdef STARPU_SIMGRID
double lspo_sim_cost(struct starpu_task *task, struct starpu_perfmodel_arch *arch, unsigned nimpl);
void lspo_sim_kernel(void *buffers[], void *cl_arg);
#define LSPO_MODEL_KIND .type = STARPU_PER_ARCH, .arch_cost_function = lspo_sim_cost
#define LSPO_CUDA_FUNC(fn) .cuda_funcs = { lspo_sim_kernel }, .cuda_flags = { STARPU_CUDA_ASYNC },
#else
#define LSPO_MODEL_KIND .type = STARPU_HISTORY_BASED
#ifdef LSPO_USE_CUDA
#define LSPO_CUDA_FUNC(fn) .cuda_funcs = { fn }, .cuda_flags = { STARPU_CUDA_ASYNC },
#else
#define LSPO_CUDA_FUNC(fn)
#endif
#endif

#define LSPO_PERFMODEL(var, sym) \
	static struct starpu_perfmodel var = { LSPO_MODEL_KIND, .symbol = (sym) }

/* Colours by task class, so traces read at a glance (ViTE, dag.dot). */
#define LSPO_COLOR_COMPUTE   0x4e79a7u  /* blue: forward/backward math */
#define LSPO_COLOR_PROJECT   0xf28e2bu  /* orange: sparse projections */
#define LSPO_COLOR_TRANSFER  0x59a14fu  /* green: packing and casts for transfers */
#define LSPO_COLOR_UPDATE    0xe15759u  /* red: optimizer updates */
#define LSPO_COLOR_REDUCE    0xb07aa1u  /* purple: norms and reductions */

/* Interface accessors for a row-major matrix buffer. */
static inline float *lspo_mat_ptr(void *buf) { return (float *)STARPU_MATRIX_GET_PTR(buf); }
static inline int lspo_mat_rows(void *buf) { return (int)STARPU_MATRIX_GET_NY(buf); }
static inline int lspo_mat_cols(void *buf) { return (int)STARPU_MATRIX_GET_NX(buf); }
static inline int lspo_mat_ld(void *buf) { return (int)STARPU_MATRIX_GET_LD(buf); }

/* Shape of a registered matrix handle. */
static inline int lspo_handle_rows(starpu_data_handle_t h) { return (int)starpu_matrix_get_ny(h); }
static inline int lspo_handle_cols(starpu_data_handle_t h) { return (int)starpu_matrix_get_nx(h); }

/* Registers `ptr` (rows, cols) of elemsize-byte elements, contiguous, in main
 * memory; ptr NULL lets StarPU allocate it where first written. */
static inline void lspo_matrix_register_elem(starpu_data_handle_t *h, void *ptr, int rows, int cols,
                                             size_t elemsize)
{
	starpu_matrix_data_register(h, ptr ? STARPU_MAIN_RAM : -1, (uintptr_t)ptr,
	                            (uint32_t)cols, (uint32_t)cols, (uint32_t)rows, elemsize);
}

/* float32 (rows, cols); 1-D tensors are (1, n), tokens are int32 (B, T). */
static inline void lspo_matrix_register(starpu_data_handle_t *h, float *ptr, int rows, int cols)
{
	lspo_matrix_register_elem(h, ptr, rows, cols, sizeof(float));
}

#endif
