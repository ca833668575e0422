/*
 * sim_cost.c - task durations for a SimGrid build of StarPU, where kernels
 * never run: a roofline estimate per task, max(flops / rate, bytes / bandwidth)
 * plus a launch overhead, for a CPU core or a GPU.  Matrix products (and
 * attention) count their flops; every other codelet is bound by the bytes
 * of its buffers.  The rates are assumptions, not measurements; defaults
 * describe one H100 (FP32 GEMM, HBM3) and one core of a recent server CPU,
 * and environment variables change them:
 *   LSPO_SIM_GPU_GFLOPS (40000)  LSPO_SIM_GPU_GBS (2000)  LSPO_SIM_GPU_US (4)
 *   LSPO_SIM_CPU_GFLOPS (50)     LSPO_SIM_CPU_GBS (10)    LSPO_SIM_CPU_US (1)
 * The bus comes from the StarPU platform file (STARPU_HOSTNAME).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#ifdef STARPU_SIMGRID
#include "attention.h"
#include "gqa_attention.h"
#include "codelet_util.h"

struct sim_rates {
	double flops, bytes_per_s, overhead_us;
};

static double env_or(const char *name, double fallback)
{
	const char *v = getenv(name);
	double x = v ? strtod(v, NULL) : 0;
	return x > 0 ? x : fallback;
}

static struct sim_rates rates_of(enum starpu_worker_archtype kind)
{
	if (kind == STARPU_CUDA_WORKER)
		return (struct sim_rates){ env_or("LSPO_SIM_GPU_GFLOPS", 40000) * 1e9,
		                           env_or("LSPO_SIM_GPU_GBS", 2000) * 1e9, env_or("LSPO_SIM_GPU_US", 4) };
	return (struct sim_rates){ env_or("LSPO_SIM_CPU_GFLOPS", 50) * 1e9, env_or("LSPO_SIM_CPU_GBS", 10) * 1e9,
	                           env_or("LSPO_SIM_CPU_US", 1) };
}

static double elements(struct starpu_task *task, unsigned i)
{
	return (double)starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i)) / sizeof(float);
}

/* C = op(A) op(B): sizes mk, kn and mn multiply to (mnk)^2, whatever the transposes. */
static double flops_of(struct starpu_task *task)
{
	const char *name = task->cl->name;
	if (!strcmp(name, "matmul"))
		return 2 * sqrt(elements(task, 0) * elements(task, 1) * elements(task, 2));
	int fwd = !strcmp(name, "attention_fwd");
	if (fwd || !strcmp(name, "attention_bwd")) {
		const struct lspo_attention_args *a = task->cl_arg;
		starpu_data_handle_t qkv = STARPU_TASK_GET_HANDLE(task, fwd ? 0 : 1);
		double T = (double)starpu_matrix_get_ny(qkv) / a->B, C = starpu_matrix_get_nx(qkv) / 3.0;
		/* causal: half of the T x T scores, two products each way; backward 2.5x */
		return (fwd ? 2.0 : 5.0) * a->B * T * T * C;
	}
	int gfwd = !strcmp(name, "gqa_attention_fwd");
	if (gfwd || !strcmp(name, "gqa_attention_bwd")) {   /* the same count, with C = n_head head_dim */
		const struct lspo_gqa_attention_args *a = task->cl_arg;
		starpu_data_handle_t q = STARPU_TASK_GET_HANDLE(task, gfwd ? 0 : 1);
		double T = (double)starpu_matrix_get_ny(q) / a->B, C = (double)a->n_head * a->head_dim;
		return (gfwd ? 2.0 : 5.0) * a->B * T * T * C;
	}
	return 0;
}

double lspo_sim_cost(struct starpu_task *task, struct starpu_perfmodel_arch *arch, unsigned nimpl)
{
	(void)nimpl;
	struct sim_rates r = rates_of(arch->devices[0].type);
	double bytes = 0;
	for (unsigned i = 0; i < STARPU_TASK_GET_NBUFFERS(task); i++)
		bytes += (double)starpu_data_get_size(STARPU_TASK_GET_HANDLE(task, i));
	double flops = flops_of(task);
	if (strstr(task->cl->name, "attention"))
		flops *= 4;   /* a plain (not flash) attention kernel reaches about a quarter of GEMM's rate */
	double seconds = fmax(flops / r.flops, bytes / r.bytes_per_s);
	return r.overhead_us + seconds * 1e6;
}

void lspo_sim_kernel(void *buffers[], void *cl_arg)
{
	(void)buffers;
	(void)cl_arg;
}
#endif /* STARPU_SIMGRID: nothing to compile otherwise */
