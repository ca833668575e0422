/*
 * selftest.c - the smallest real task graph of the library, checked.
 *
 * nchains chains X_{d+1} = X_d M_d of matrix products (order matters: matrix
 * products do not commute, so a broken dependency shows in the result), then
 * a fan-in S = sum_c X_end(c) accumulated by products with the identity.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <starpu.h>

#include "internal.h"
#include "matmul.h"

struct graph {
	int n, nchains, depth;
	float *x0, *m, *ident, *sum;   /* x0 (nchains, n, n), m (nchains, depth, n, n) */
	float *x;                      /* (nchains, depth + 1, n, n), x[c][0] = x0[c] */
	starpu_data_handle_t *hx, *hm, hident, hsum;
	char (*names)[32];             /* task names outlive their tasks */
};

static float uniform(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((*s >> 40) / (double)(1 << 24)) * 2.0f - 1.0f;
}

static size_t mat(const struct graph *g) { return (size_t)g->n * g->n; }

static int graph_build(struct graph *g)
{
	size_t nn = mat(g), nx = (size_t)g->nchains * (g->depth + 1), nm = (size_t)g->nchains * g->depth;
	if (starpu_malloc((void **)&g->x, nx * nn * sizeof(float))
	    || starpu_malloc((void **)&g->m, nm * nn * sizeof(float))
	    || starpu_malloc((void **)&g->ident, nn * sizeof(float))
	    || starpu_malloc((void **)&g->sum, nn * sizeof(float)))
		LSPO_FAIL(LSPO_ENOMEM, "selftest: cannot allocate %zu floats", (nx + nm + 2) * nn);
	g->hx = calloc(nx, sizeof(*g->hx));
	g->hm = calloc(nm, sizeof(*g->hm));
	g->names = calloc(nx + nm, sizeof(*g->names));
	if (!g->hx || !g->hm || !g->names)
		LSPO_FAIL(LSPO_ENOMEM, "selftest: cannot allocate handles");
	uint64_t seed = 42;
	float scale = 1.0f / sqrtf((float)g->n);
	for (size_t i = 0; i < nx * nn; i++)
		g->x[i] = uniform(&seed);
	for (size_t i = 0; i < nm * nn; i++)
		g->m[i] = 2.0f * scale * uniform(&seed);
	for (size_t i = 0; i < nn; i++)
		g->ident[i] = (i % (g->n + 1) == 0) ? 1.0f : 0.0f;
	for (size_t i = 0; i < nx; i++)
		lspo_matrix_register(&g->hx[i], g->x + i * nn, g->n, g->n);
	for (size_t i = 0; i < nm; i++)
		lspo_matrix_register(&g->hm[i], g->m + i * nn, g->n, g->n);
	lspo_matrix_register(&g->hident, g->ident, g->n, g->n);
	lspo_matrix_register(&g->hsum, g->sum, g->n, g->n);
	return LSPO_OK;
}

static void graph_free(struct graph *g)
{
	size_t nx = (size_t)g->nchains * (g->depth + 1), nm = (size_t)g->nchains * g->depth;
	for (size_t i = 0; g->hx && i < nx; i++)
		if (g->hx[i])
			starpu_data_unregister(g->hx[i]);
	for (size_t i = 0; g->hm && i < nm; i++)
		if (g->hm[i])
			starpu_data_unregister(g->hm[i]);
	if (g->hident)
		starpu_data_unregister(g->hident);
	if (g->hsum)
		starpu_data_unregister(g->hsum);
	starpu_free(g->x);
	starpu_free(g->m);
	starpu_free(g->ident);
	starpu_free(g->sum);
	free(g->hx);
	free(g->hm);
	free(g->names);
}

/* Submits every task; only data dependencies order them. */
static int graph_submit(struct graph *g)
{
	int t = 0;
	for (int c = 0; c < g->nchains; c++)
		for (int d = 0; d < g->depth; d++) {
			int i = c * (g->depth + 1) + d;
			snprintf(g->names[t], sizeof(g->names[t]), "matmul:L%d:chain", c);
			int rc = lspo_matmul_submit(g->hx[i], g->hm[c * g->depth + d], g->hx[i + 1],
			                            0, 0, 1.0f, 0.0f, 0, g->names[t++]);
			if (rc)
				return rc;
		}
	for (int c = 0; c < g->nchains; c++) {
		snprintf(g->names[t], sizeof(g->names[t]), "matmul:L%d:sum", c);
		int rc = lspo_matmul_submit(g->hx[c * (g->depth + 1) + g->depth], g->hident, g->hsum,
		                            0, 0, 1.0f, c == 0 ? 0.0f : 1.0f, 0, g->names[t++]);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}

/* Worst |S - ref| / max|ref| with ref computed in double from the inputs. */
static double graph_error(const struct graph *g)
{
	int n = g->n;
	size_t nn = mat(g);
	double *cur = malloc(nn * sizeof(double)), *next = malloc(nn * sizeof(double));
	double *ref = calloc(nn, sizeof(double));
	double err = INFINITY;
	if (!cur || !next || !ref)
		goto out;
	for (int c = 0; c < g->nchains; c++) {
		const float *x0 = g->x + (size_t)c * (g->depth + 1) * nn;
		for (size_t i = 0; i < nn; i++)
			cur[i] = x0[i];
		for (int d = 0; d < g->depth; d++) {
			const float *m = g->m + ((size_t)c * g->depth + d) * nn;
			for (int i = 0; i < n; i++)
				for (int j = 0; j < n; j++) {
					double s = 0;
					for (int l = 0; l < n; l++)
						s += cur[(size_t)i * n + l] * m[(size_t)l * n + j];
					next[(size_t)i * n + j] = s;
				}
			double *tmp = cur; cur = next; next = tmp;
		}
		for (size_t i = 0; i < nn; i++)
			ref[i] += cur[i];
	}
	double worst = 0, scale = 0;
	for (size_t i = 0; i < nn; i++) {
		worst = fmax(worst, fabs(g->sum[i] - ref[i]));
		scale = fmax(scale, fabs(ref[i]));
	}
	err = worst / (scale > 0 ? scale : 1);
out:
	free(cur);
	free(next);
	free(ref);
	return err;
}

static void count_tasks_per_kind(struct lspo_selftest_report *r)
{
	for (unsigned w = 0; w < starpu_worker_get_count(); w++) {
		struct starpu_profiling_worker_info info;
		if (starpu_profiling_worker_get_info((int)w, &info) != 0)
			continue;
		if (starpu_worker_get_type((int)w) == STARPU_CUDA_WORKER)
			r->tasks_on_cuda += info.executed_tasks;
		else
			r->tasks_on_cpu += info.executed_tasks;
	}
}

int lspo_selftest(struct lspo_ctx *ctx, int n, int nchains, int depth,
                  struct lspo_selftest_report *report)
{
	(void)ctx;
	*report = (struct lspo_selftest_report){ 0 };
	if (n < 1 || nchains < 1 || depth < 1)
		LSPO_FAIL(LSPO_EINVAL, "selftest: n, nchains and depth must be positive (got %d, %d, %d)",
		          n, nchains, depth);
	struct graph g = { .n = n, .nchains = nchains, .depth = depth };
	int profiling = starpu_profiling_status_get();
	starpu_profiling_status_set(STARPU_PROFILING_ENABLE);
	struct lspo_selftest_report unused = { 0 };
	count_tasks_per_kind(&unused);  /* reading the counters resets them */

	int rc = graph_build(&g);
	double t0 = starpu_timing_now();
	if (!rc)
		rc = graph_submit(&g);
	starpu_task_wait_for_all();
	report->seconds = (starpu_timing_now() - t0) * 1e-6;
	report->ntasks = nchains * depth + nchains;
	count_tasks_per_kind(report);
	starpu_profiling_status_set(profiling);
	if (!rc) {
		starpu_data_acquire(g.hsum, STARPU_R);
		report->max_rel_err = graph_error(&g);
		starpu_data_release(g.hsum);
		/* float32 products of depth matrices: a few ulps per level. */
		double tol = 1e-5 * (depth + 1) * sqrt((double)n);
		if (!(report->max_rel_err <= tol)) {
			lspo_error("selftest: relative error %.3g exceeds %.3g", report->max_rel_err, tol);
			rc = LSPO_EINVAL;
		}
	}
	graph_free(&g);
	return rc;
}
