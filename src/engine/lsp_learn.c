/*
 * lsp_learn.c - the projector check (paper Alg. 1, MAYBEUPDATE) as StarPU
 * tasks (issue 12), one independent chain per projector pair:
 *
 *   calib_add:check       the calibration gradients, summed over batches,
 *                         from the step's own forward/backward tasks
 *   proj_error:check      the pair's error (and captured part) on each of
 *                         its matrices' gradients; the host then decides
 *                         which pairs exceed alpha (the one wait)
 *   proj_error:learn      the fresh random pair's error (pairs to refresh)
 *   proj_learn:learn      iters x n Adam iterations on a copy of the fresh
 *                         pair, one task each (lowest priority)
 *   proj_error:learn      the learned candidate's error
 *   proj_publish:reproject  the choice, the moments re-projected, the new
 *                         pair copied into the one in place
 *
 * Chains of different pairs share nothing, so the workers learn many pairs
 * at once.  Each task runs the kernels lspo_proj_maybe_refresh runs, in the
 * same order on the same data, so a check gives the same pairs, moments
 * and report bit for bit.
 *
 * Synchronous (lag 0): everything is submitted and waited for before the
 * next step.  In the background (lag k >= 1): the learning tasks are handed
 * out in k slices, one before each of the next k steps, so they run beside
 * the step's own tasks on idle workers (each step waits for its slice); the
 * k+1-th call publishes, so a check made before step s takes effect before
 * step s + k whatever the timing: losses stay deterministic.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "engine/lsp_learn.h"
#include "projector.h"
#include "calib_add.h"
#include "proj_error.h"
#include "proj_learn.h"
#include "proj_publish.h"

#define PRIO_CHECK 0
#define PRIO_LEARN (-1)   /* below every task of a step (lowest priority) */

struct pair_job {
	struct lspo_proj *p;                 /* the pair in place (the registry's) */
	int seq, n, layer;                   /* registry index, matrices, layer (-1: several) */
	int *mats;                           /* (n) indices of its matrices */
	double *errs;                        /* (3 n, 2): slots of the proj_error tasks */
	starpu_data_handle_t herrs;
	int learning;                        /* its error exceeded alpha */
	struct lspo_proj *fresh, *learned;   /* learning only */
	float *mom;                          /* Adam moments of the learned values */
	starpu_data_handle_t hmom;
	int t_done, t_total;                 /* learning tasks submitted, in all */
	struct lspo_proj_refresh_report rep; /* written by the publish task */
};

struct lsp_learn {
	int nmats;
	float *calib;                        /* summed calibration gradients, (m, n) each */
	starpu_data_handle_t *hcalib;
	int njobs;
	struct pair_job *jobs;
	int pending, lag, slices;            /* a check in the background, slices handed out */
	struct lspo_lsp_pair_check *checks;  /* the last check's per-pair report */
	int checks_cap;
};

/* ------------------------------------------------------------------------ */
/* State                                                                    */

static void job_free(struct pair_job *j)
{
	if (j->herrs)
		starpu_data_unregister(j->herrs);
	if (j->hmom)
		starpu_data_unregister(j->hmom);
	lspo_proj_free(j->fresh);
	lspo_proj_free(j->learned);
	free(j->errs);
	free(j->mom);
	free(j->mats);
	memset(j, 0, sizeof(*j));
}

static void jobs_free(struct lsp_learn *l)
{
	for (int i = 0; i < l->njobs; i++)
		job_free(&l->jobs[i]);
	free(l->jobs);
	l->jobs = NULL;
	l->njobs = 0;
	l->pending = 0;
}

void lsp_learn_free(struct lsp_learn *l)
{
	if (!l)
		return;
	starpu_task_wait_for_all();
	jobs_free(l);
	for (int k = 0; k < l->nmats; k++)
		if (l->hcalib && l->hcalib[k])
			starpu_data_unregister(l->hcalib[k]);
	free(l->hcalib);
	free(l->calib);
	free(l->checks);
	free(l);
}

static int state(struct lspo_model *m, struct lsp_learn **out)
{
	struct lsp_learn **slot = lsp_check_state(m);
	if (*slot) {
		*out = *slot;
		return LSPO_OK;
	}
	int nmats = lsp_state_nmats(m);
	struct lsp_learn *l = calloc(1, sizeof(*l));
	size_t total = 0;
	for (int k = 0; k < nmats; k++) {
		struct lsp_check_matrix c = lsp_check_matrix_at(m, k);
		total += (size_t)c.m * c.n;
	}
	if (l) {
		l->calib = malloc((total ? total : 1) * sizeof(float));
		l->hcalib = calloc(nmats > 0 ? (size_t)nmats : 1, sizeof(*l->hcalib));
	}
	if (!l || !l->calib || !l->hcalib) {
		if (l) {
			free(l->calib);
			free(l->hcalib);
		}
		free(l);
		LSPO_FAIL(LSPO_ENOMEM, "lsp check: cannot allocate %zu MiB of calibration gradients",
		          total * sizeof(float) >> 20);
	}
	l->nmats = nmats;
	total = 0;
	for (int k = 0; k < nmats; k++) {
		struct lsp_check_matrix c = lsp_check_matrix_at(m, k);
		lspo_matrix_register(&l->hcalib[k], l->calib + total, c.m, c.n);
		total += (size_t)c.m * c.n;
	}
	*slot = *out = l;
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Tasks                                                                    */

static void pair_handles(const struct lspo_proj *p, starpu_data_handle_t h[4])
{
	lspo_proj_handles(p, &h[0], &h[1], &h[2], &h[3]);
}

/* proj_error tasks of pair q on job j's gradients into slots [first, first + n). */
static int submit_errors(struct lspo_model *m, struct lsp_learn *l, struct pair_job *j,
                         const struct lspo_proj *q, int first, int captured, int prio, const char *stage)
{
	starpu_data_handle_t h[4];
	pair_handles(q, h);
	int d;
	lspo_proj_shape(q, NULL, NULL, &d, NULL);
	for (int k = 0; k < j->n; k++)
		TRY(lspo_proj_error_submit(h[0], h[1], h[2], h[3], d, l->hcalib[j->mats[k]], j->herrs, first + k,
		                           captured, prio, model_name(m, "proj_error", j->layer, stage)));
	return LSPO_OK;
}

/* Learning tasks of job j up to step `upto` (of t_total). */
static int submit_learning(struct lspo_model *m, struct lsp_learn *l, struct pair_job *j, int upto)
{
	const struct lspo_offload_opts *op = lsp_check_opts(m);
	starpu_data_handle_t h[4];
	pair_handles(j->learned, h);
	for (int t = j->t_done + 1; t <= upto; t++)
		TRY(lspo_proj_learn_submit(h[0], h[1], h[2], h[3], j->p->d, l->hcalib[j->mats[(t - 1) % j->n]],
		                           j->hmom, t, &op->learn, PRIO_LEARN,
		                           model_name(m, "proj_learn", j->layer, "learn")));
	if (upto > j->t_done)
		j->t_done = upto;
	return LSPO_OK;
}

static int submit_publish(struct lspo_model *m, struct lsp_learn *l, struct pair_job *j)
{
	starpu_data_handle_t live[4], fresh[4], learned[4];
	starpu_data_handle_t *G = malloc(sizeof(*G) * 3 * (size_t)j->n);
	if (!G)
		LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
	starpu_data_handle_t *M = G + j->n, *V = M + j->n;
	for (int k = 0; k < j->n; k++) {
		struct lsp_check_matrix c = lsp_check_matrix_at(m, j->mats[k]);
		G[k] = l->hcalib[j->mats[k]];
		M[k] = c.M;
		V[k] = c.V;
	}
	pair_handles(j->p, live);
	pair_handles(j->fresh, fresh);
	pair_handles(j->learned, learned);
	int rc = lspo_proj_publish_submit(j->p, live, fresh, learned, j->herrs, j->n, j->p->d, G, M, V, &j->rep,
	                                  PRIO_CHECK, model_name(m, "proj_publish", j->layer, "reproject"));
	free(G);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The check                                                                */

int lsp_learn_calib_add(struct lspo_model *m, int b)
{
	struct lsp_learn *l;
	TRY(state(m, &l));
	for (int k = 0; k < l->nmats; k++) {
		struct lsp_check_matrix c = lsp_check_matrix_at(m, k);
		TRY(lspo_calib_add_submit(m->hg[c.tensor], c.transposed, l->hcalib[k], b == 0, PRIO_CHECK,
		                          model_name(m, "calib_add", c.layer, "check")));
	}
	return LSPO_OK;
}

/* Mean of field f of slots [0, n), summed in order (lspo_proj_error's sum). */
static double mean_slots(const double *e, int n, int f)
{
	double s = 0;
	for (int k = 0; k < n; k++)
		s += e[2 * k + f];
	return s / n;
}

/* The pairs and their matrices, in registry order. */
static int make_jobs(struct lspo_model *m, struct lsp_learn *l)
{
	jobs_free(l);
	int npairs = lsp_state_npairs(m);
	l->jobs = calloc(npairs > 0 ? (size_t)npairs : 1, sizeof(*l->jobs));
	if (!l->jobs)
		LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
	l->njobs = npairs;
	for (int i = 0; i < npairs; i++) {
		struct pair_job *j = &l->jobs[i];
		j->p = lsp_state_pair(m, i);
		j->seq = i;
		j->layer = -2;
		j->mats = malloc(sizeof(int) * (l->nmats > 0 ? (size_t)l->nmats : 1));
		if (!j->mats)
			LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
		for (int k = 0; k < l->nmats; k++) {
			struct lsp_check_matrix c = lsp_check_matrix_at(m, k);
			if (c.proj != j->p)
				continue;
			j->mats[j->n++] = k;
			j->layer = j->layer == -2 || j->layer == c.layer ? c.layer : -1;
		}
		if (j->n == 0)
			LSPO_FAIL(LSPO_EINVAL, "lsp check: projector pair %d has no matrix", i);
		j->errs = calloc((size_t)6 * j->n, sizeof(double));
		if (!j->errs)
			LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
		starpu_vector_data_register(&j->herrs, STARPU_MAIN_RAM, (uintptr_t)j->errs, (uint32_t)(6 * j->n),
		                            sizeof(double));
	}
	return LSPO_OK;
}

/* A pair to refresh: the fresh random pair (seeded as lspo_model_lsp_check
 * always has), its copy to learn, the learning's moments. */
static int start_learning(struct lspo_model *m, struct lsp_learn *l, struct pair_job *j)
{
	const struct lspo_offload_opts *op = lsp_check_opts(m);
	struct lspo_proj *p = j->p;
	uint64_t seed = op->seed * 1000003u + (uint64_t)m->step * 7919u + (uint64_t)j->seq;
	TRY(lspo_proj_create(p->m, p->n, p->d, p->r, op->lsp_init, seed, &j->fresh));
	TRY(lspo_proj_normalize(j->fresh));
	TRY(lspo_proj_clone(j->fresh, &j->learned));
	TRY(lspo_proj_register(j->fresh));
	TRY(lspo_proj_register(j->learned));
	size_t nmom = (size_t)2 * (p->m + p->n) * p->r;
	j->mom = calloc(nmom, sizeof(float));
	if (!j->mom)
		LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
	starpu_vector_data_register(&j->hmom, STARPU_MAIN_RAM, (uintptr_t)j->mom, (uint32_t)nmom, sizeof(float));
	j->learning = 1;
	j->t_total = op->learn.iters * j->n;
	return submit_errors(m, l, j, j->fresh, j->n, 0, PRIO_LEARN, "learn");
}

/* The report of the check, as lspo_model_lsp_check has always made it. */
static int collect(struct lsp_learn *l, struct lspo_lsp_check *report)
{
	memset(report, 0, sizeof(*report));
	if (l->njobs > l->checks_cap) {
		struct lspo_lsp_pair_check *nc = realloc(l->checks, sizeof(*nc) * (size_t)l->njobs);
		if (!nc)
			LSPO_FAIL(LSPO_ENOMEM, "lsp check: out of memory");
		l->checks = nc;
		l->checks_cap = l->njobs;
	}
	for (int i = 0; i < l->njobs; i++) {
		struct pair_job *j = &l->jobs[i];
		struct lspo_proj_refresh_report rep = j->rep;
		if (!j->learning || l->pending) {   /* kept, or not decided yet */
			rep = (struct lspo_proj_refresh_report){
				.err_check = mean_slots(j->errs, j->n, 0), .captured_before = mean_slots(j->errs, j->n, 1),
				.err_fresh = -1, .err_candidate = -1, .err_learned = -1, .outcome = LSPO_PROJ_KEPT,
				.captured_random = j->p->d / sqrt((double)j->p->m * j->p->n),
			};
			rep.err_after = rep.err_check;
			rep.captured_after = rep.captured_before;
		}
		int n = j->n;
		report->err_before += rep.err_check * n;
		report->err_after += rep.err_after * n;
		report->refreshed += rep.refreshed;
		report->accepted += rep.outcome == LSPO_PROJ_LEARNED;
		report->rejected += rep.outcome == LSPO_PROJ_REJECTED_KEPT || rep.outcome == LSPO_PROJ_REJECTED_RANDOM;
		report->nmatrices += n;
		l->checks[i] = (struct lspo_lsp_pair_check){
			.pair = j->seq, .nmatrices = n, .m = j->p->m, .n = j->p->n, .d = j->p->d, .outcome = rep.outcome,
			.err_before = rep.err_check, .err_after = rep.err_after, .err_candidate = rep.err_candidate,
			.captured_before = rep.captured_before, .captured_after = rep.captured_after,
			.captured_random = rep.captured_random,
		};
	}
	report->npairs = l->njobs;
	report->pairs = l->checks;
	if (report->nmatrices) {
		report->err_before /= report->nmatrices;
		report->err_after /= report->nmatrices;
	}
	return LSPO_OK;
}

/* The end of every chain: candidates' errors, publication; waits. */
static int publish(struct lspo_model *m, struct lsp_learn *l, struct lspo_lsp_check *report)
{
	for (int i = 0; i < l->njobs; i++) {
		struct pair_job *j = &l->jobs[i];
		if (!j->learning)
			continue;
		TRY(submit_learning(m, l, j, j->t_total));
		if (l->slices < l->lag || !l->lag)   /* else the last slice submitted them */
			TRY(submit_errors(m, l, j, j->learned, 2 * j->n, 0, PRIO_LEARN, "learn"));
		TRY(submit_publish(m, l, j));
	}
	starpu_task_wait_for_all();
	l->pending = 0;
	int rc = collect(l, report);
	for (int i = 0; i < l->njobs; i++)   /* the candidates are no longer needed */
		if (l->jobs[i].learning) {
			struct pair_job *j = &l->jobs[i];
			lspo_proj_free(j->fresh);
			lspo_proj_free(j->learned);
			j->fresh = j->learned = NULL;
		}
	return rc;
}

/* Whether a pair's check error calls for learning.  Under SimGrid the
 * kernels compute nothing and the error is not known: a simulated check
 * learns every pair, the most work a check can cause. */
static int must_learn(double err, double alpha)
{
#ifdef STARPU_SIMGRID
	(void)err;
	(void)alpha;
	return 1;
#else
	return err > alpha;
#endif
}

int lsp_learn_check(struct lspo_model *m, int lag, struct lspo_lsp_check *report)
{
	struct lsp_learn *l;
	TRY(state(m, &l));
	TRY(make_jobs(m, l));
	for (int i = 0; i < l->njobs; i++)
		TRY(submit_errors(m, l, &l->jobs[i], l->jobs[i].p, 0, 1, PRIO_CHECK, "check"));
	for (int i = 0; i < l->njobs; i++) {   /* the check's one wait */
		starpu_data_acquire(l->jobs[i].herrs, STARPU_R);
		starpu_data_release(l->jobs[i].herrs);
	}
	double alpha = lsp_check_opts(m)->lsp_alpha;
	for (int i = 0; i < l->njobs; i++)
		if (must_learn(mean_slots(l->jobs[i].errs, l->jobs[i].n, 0), alpha))
			TRY(start_learning(m, l, &l->jobs[i]));
	l->lag = lag > 0 ? lag : 0;
	l->slices = 0;
	if (l->lag == 0)
		return publish(m, l, report);
	l->pending = 1;
	return collect(l, report);
}

int lsp_learn_advance(struct lspo_model *m, int *published, struct lspo_lsp_check *report)
{
	struct lsp_learn *l = *lsp_check_state(m);
	*published = 0;
	if (!l || !l->pending)
		return LSPO_OK;
	if (l->slices == l->lag) {
		*published = 1;
		lspo_trace_mark_step(0);   /* traces: between steps, as the check */
		return publish(m, l, report);
	}
	l->slices++;
	lspo_trace_mark_step(m->step + 1);   /* traces: the slice belongs to the coming step */
	for (int i = 0; i < l->njobs; i++) {
		struct pair_job *j = &l->jobs[i];
		if (!j->learning)
			continue;
		TRY(submit_learning(m, l, j, (int)((long)j->t_total * l->slices / l->lag)));
		if (l->slices == l->lag)
			TRY(submit_errors(m, l, j, j->learned, 2 * j->n, 0, PRIO_LEARN, "learn"));
	}
	return LSPO_OK;
}

/* A background check still pending when a new one starts: published now. */
int lsp_learn_flush(struct lspo_model *m)
{
	struct lsp_learn *l = *lsp_check_state(m);
	struct lspo_lsp_check rep;
	if (!l || !l->pending)
		return LSPO_OK;
	return publish(m, l, &rep);
}
