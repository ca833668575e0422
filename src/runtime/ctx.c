/*
 * ctx.c - one lspo context = one running StarPU instance.
 *
 * Turns an lspo_config into a starpu_conf (STARPU_* environment variables
 * still override it, as StarPU users expect), installs the scheduling policy
 * by name, creates cuBLAS handles for CUDA workers, and keeps BLAS single
 * threaded: parallelism comes from StarPU workers, one per core.
 *
 * The context owns the state of its run: the lspo policy's options and what
 * the policy learned (struct lspo_sched_state), the trace recorder and the
 * bus ledger (struct lspo_trace).  StarPU runs once per process, so there
 * is at most one context; the API functions without a context argument
 * (lspo_sched_set_opts, lspo_sched_get_cut, lspo_trace_mark_step,
 * lspo_trace_flush) and StarPU's callbacks reach that state through the
 * running context (lspo_ctx_sched_state, lspo_ctx_trace), set from before
 * starpu_init to after starpu_shutdown.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cblas.h>
#include <starpu.h>
#ifdef LSPO_USE_CUDA
#include <starpu_cublas_v2.h>
#endif

#include "internal.h"
#include "runtime/sched/sched_lspo.h"
#include "trace.h"
#include "memstat.h"

struct lspo_ctx {
	struct starpu_conf conf;
	char sched[64];
	int ncpus, ncuda;
	int cublas;            /* starpu_cublas_init() was called */
	struct lspo_sched_state sched_state;   /* the lspo policy's options, what it learned */
	struct lspo_trace *trace;              /* trace recorder and bus ledger */
};

static struct lspo_ctx *ctx_current;   /* the running context, NULL if none */

struct lspo_sched_state *lspo_ctx_sched_state(void)
{
	return ctx_current ? &ctx_current->sched_state : NULL;
}

struct lspo_trace *lspo_ctx_trace(void)
{
	return ctx_current ? ctx_current->trace : NULL;
}

static void ctx_free(struct lspo_ctx *ctx)
{
	lspo_trace_free(ctx->trace);
	lspo_sched_state_destroy(&ctx->sched_state);
	free(ctx);
}

struct lspo_config lspo_config_default(void)
{
	return (struct lspo_config){ .ncpus = -1, .ncuda = -1, .sched = NULL,
	                             .trace_dir = NULL, .profiling = 0, .cuda_mem_mib = 0 };
}

const char *const *lspo_sched_names(void)
{
	static const char *names[64];
	if (!names[0]) {
		struct starpu_sched_policy **builtin = starpu_sched_get_predefined_policies();
		int n = 0;
		names[n++] = lspo_sched_policy.policy_name;
		for (int i = 0; builtin[i] && n < 63; i++)
			names[n++] = builtin[i]->policy_name;
	}
	return names;
}

static struct starpu_sched_policy *find_policy(const char *name)
{
	if (strcmp(name, lspo_sched_policy.policy_name) == 0)
		return &lspo_sched_policy;
	struct starpu_sched_policy **builtin = starpu_sched_get_predefined_policies();
	for (int i = 0; builtin[i]; i++)
		if (strcmp(builtin[i]->policy_name, name) == 0)
			return builtin[i];
	return NULL;
}

/* FxT records by default in StarPU 1.3, into the system temporary directory.
 * Record only where asked: to cfg->trace_dir, or where STARPU_FXT_* say. */
static int setup_fxt(const char *trace_dir)
{
	if (!trace_dir) {
		setenv("STARPU_FXT_TRACE", "0", 0);
		return LSPO_OK;
	}
#ifndef STARPU_USE_FXT
	lspo_info("StarPU has no FxT: no FxT trace in %s", trace_dir);
	return LSPO_OK;
#else
	if (mkdir(trace_dir, 0777) != 0 && errno != EEXIST)
		LSPO_FAIL(LSPO_EIO, "%s: cannot create trace directory: %s", trace_dir, strerror(errno));
	char prefix[4096];
	if ((size_t)snprintf(prefix, sizeof(prefix), "%s/", trace_dir) >= sizeof(prefix))
		LSPO_FAIL(LSPO_EINVAL, "trace directory name too long: %s", trace_dir);
	setenv("STARPU_FXT_PREFIX", prefix, 1);
	setenv("STARPU_FXT_TRACE", "1", 1);
	return LSPO_OK;
#endif
}

/* StarPU 1.3 lets STARPU_SCHED override conf->sched_policy inside
 * starpu_init.  The policy chosen here (--sched before the environment) must
 * win, or the tracing and memory hooks wrap a policy that never runs: hide the
 * variable for the call, then put it back. */
/* The lspo policy picks a task when a worker asks for one, so a CUDA worker
 * has work queued behind its running kernel only as far as it asks ahead:
 * StarPU's CUDA pipeline, 2 tasks by default.  Each task costs its driver
 * thread time before the kernel starts (input fetches, the launch); with
 * hundreds of small kernels a step (biases, norm gains: their norms, AdamW
 * and gradient fills) that cost stays exposed unless more tasks wait behind
 * a long kernel.  Under the lspo policy the pipeline is 4 deep (StarPU's
 * maximum) unless STARPU_CUDA_PIPELINE says otherwise (simulated GPT-2
 * 774M, bf16, B 1 x T 1024: 124.9 -> 119.5 ms a step; bench/RESULTS.md).
 * Set for starpu_init only, which reads it while it starts the workers. */
#define LSPO_SCHED_CUDA_PIPELINE "4"

static int init_starpu_with_policy(struct starpu_conf *conf, int lspo_policy)
{
	const char *env = getenv("STARPU_SCHED");
	char *saved = env ? strdup(env) : NULL;
	if (env && !saved)
		return -ENOMEM;
	int pipeline = lspo_policy && !getenv("STARPU_CUDA_PIPELINE");
	if (pipeline)
		setenv("STARPU_CUDA_PIPELINE", LSPO_SCHED_CUDA_PIPELINE, 1);
	conf->sched_policy_name = NULL;
	unsetenv("STARPU_SCHED");
	int rc = starpu_init(conf);
	if (saved) {
		setenv("STARPU_SCHED", saved, 1);
		free(saved);
	}
	if (pipeline)
		unsetenv("STARPU_CUDA_PIPELINE");
	return rc;
}

int lspo_ctx_create(const struct lspo_config *cfg, struct lspo_ctx **out)
{
	*out = NULL;
	if (ctx_current)
		LSPO_FAIL(LSPO_EBUSY, "an lspo context already exists; destroy it first");
	const char *name = cfg->sched ? cfg->sched : getenv("STARPU_SCHED");
	if (!name || !*name)
		name = lspo_sched_policy.policy_name;
	struct starpu_sched_policy *policy = find_policy(name);
	if (!policy)
		LSPO_FAIL(LSPO_EINVAL, "unknown scheduling policy '%s' (STARPU_SCHED=help lists StarPU's; "
		          "lspo adds 'lspo')", name);
	int rc = setup_fxt(cfg->trace_dir);
	if (rc)
		return rc;
	if (cfg->cuda_mem_mib > 0) {
		char mib[32];
		snprintf(mib, sizeof(mib), "%ld", cfg->cuda_mem_mib);
		setenv("STARPU_LIMIT_CUDA_MEM", mib, 1);
	}

	struct lspo_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx)
		LSPO_FAIL(LSPO_ENOMEM, "cannot allocate the context");
	lspo_sched_state_init(&ctx->sched_state);
	if ((rc = lspo_trace_create(&ctx->trace)) != 0) {
		ctx_free(ctx);
		return rc;
	}
	snprintf(ctx->sched, sizeof(ctx->sched), "%s", policy->policy_name);
	starpu_conf_init(&ctx->conf);
	if (cfg->ncpus >= 0)
		ctx->conf.ncpus = cfg->ncpus;
	if (cfg->ncuda >= 0)
		ctx->conf.ncuda = cfg->ncuda;
	ctx->conf.sched_policy = policy;
	if (cfg->trace_dir && (rc = lspo_trace_begin(ctx->trace, cfg->trace_dir, &ctx->conf.sched_policy)) != 0) {
		ctx_free(ctx);
		return rc;
	}
	lspo_mem_wrap_policy(&ctx->conf.sched_policy);   /* memory peaks, evictions (memstat.h) */
#ifdef HAVE_OPENBLAS_SET_NUM_THREADS
	openblas_set_num_threads(1);
#endif
	ctx_current = ctx;   /* the policy's init and the hooks read its state */
	rc = init_starpu_with_policy(&ctx->conf, policy == &lspo_sched_policy);
	if (rc != 0) {
		lspo_trace_end(ctx->trace, 0);
		ctx_current = NULL;
		ctx_free(ctx);
		LSPO_FAIL(lspo_status_from_starpu(rc), "starpu_init failed (%d)%s", rc,
		          rc == -ENODEV ? ": no worker available" : "");
	}
	ctx->ncpus = (int)starpu_cpu_worker_get_count();
	ctx->ncuda = (int)starpu_cuda_worker_get_count();
	if (cfg->profiling)
		starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
	lspo_trace_started(ctx->trace);   /* profiling on when tracing */
	lspo_mem_started();
#ifdef LSPO_USE_CUDA
	if (ctx->ncuda > 0) {
		starpu_cublas_init();
		ctx->cublas = 1;
	}
#endif
	*out = ctx;
	return LSPO_OK;
}

void lspo_ctx_destroy(struct lspo_ctx *ctx)
{
	if (!ctx)
		return;
	starpu_task_wait_for_all();
	lspo_trace_end(ctx->trace, 1);   /* DIR/tasks.csv, DIR/summary.txt */
	lspo_mem_stopped();
#ifdef LSPO_USE_CUDA
	if (ctx->cublas)
		starpu_cublas_shutdown();
#endif
	starpu_shutdown();
	ctx_current = NULL;
	ctx_free(ctx);
}

int lspo_ctx_ncpus(const struct lspo_ctx *ctx) { return ctx->ncpus; }
int lspo_ctx_ncuda(const struct lspo_ctx *ctx) { return ctx->ncuda; }
const char *lspo_ctx_sched(const struct lspo_ctx *ctx) { return ctx->sched; }

int lspo_ctx_simulated(const struct lspo_ctx *ctx)
{
	(void)ctx;
#ifdef STARPU_SIMGRID
	return 1;
#else
	return 0;
#endif
}

void lspo_ctx_describe(const struct lspo_ctx *ctx, FILE *out)
{
	int major, minor, release;
	starpu_get_version(&major, &minor, &release);
	const char *fxt = "no", *cuda = "no";
#ifdef STARPU_USE_FXT
	fxt = "yes";
#endif
#ifdef LSPO_USE_CUDA
	cuda = "yes";
#endif
	fprintf(out, "StarPU %d.%d.%d (FxT %s, CUDA codelets %s), policy %s\n",
	        major, minor, release, fxt, cuda, ctx->sched);
	if (lspo_ctx_simulated(ctx))
		fprintf(out, "simulation (SimGrid): kernels do not run; task times are estimates "
		        "(src/runtime/sim_cost.c), losses are not computed\n");
	fprintf(out, "%d CPU worker(s), %d CUDA worker(s), %u memory node(s)\n",
	        ctx->ncpus, ctx->ncuda, starpu_memory_nodes_get_count());
	for (unsigned w = 0; w < starpu_worker_get_count(); w++) {
		char name[128];
		starpu_worker_get_name((int)w, name, sizeof(name));
		fprintf(out, "  worker %u: %-24s %s, memory node %u\n", w, name,
		        starpu_worker_get_type_as_string(starpu_worker_get_type((int)w)),
		        starpu_worker_get_memory_node(w));
	}
}
