/*
 * test_proj_tasks.c - a projector check made of tasks (issue 12) gives what
 * lspo_proj_maybe_refresh gives on the host, bit for bit: one pair shared by
 * two matrices, its errors (proj_error:check), the fresh pair's errors, the
 * learning as iters x 2 proj_learn tasks, the candidate's errors and
 * proj_publish (choice, moments re-projected, pair copied), on two CPU
 * workers; compared: the pair's indices and values, both matrices' M and V,
 * and the report.  Also: two chains on two pairs at once give the same.
 */
#include <string.h>

#include "common.h"
#include "projector.h"
#include "proj_error.h"
#include "proj_learn.h"
#include "proj_publish.h"

enum { M = 48, N = 40, D = 16, R = 4, NG = 2, ITERS = 20 };

struct chain {
	struct lspo_proj *p, *fresh, *learned;
	float *G[NG], *Mo[NG], *V[NG], *mom;
	double errs[6 * NG];
	starpu_data_handle_t hG[NG], hM[NG], hV[NG], herrs, hmom;
	struct lspo_proj_refresh_report rep;
};

static void handles(const struct lspo_proj *p, starpu_data_handle_t h[4])
{
	lspo_proj_handles(p, &h[0], &h[1], &h[2], &h[3]);
}

static void errors(struct chain *c, const struct lspo_proj *q, int first, int captured)
{
	starpu_data_handle_t h[4];
	handles(q, h);
	for (int k = 0; k < NG; k++)
		CHECK(lspo_proj_error_submit(h[0], h[1], h[2], h[3], D, c->hG[k], c->herrs, first + k, captured, 0,
		                             "proj_error:check") == LSPO_OK, "proj_error");
}

/* The task chain of lsp_learn.c on pair c->p (learning assumed needed). */
static void submit_chain(struct chain *c, const struct lspo_proj_learn_opts *lo, uint64_t seed)
{
	CHECK(lspo_proj_register(c->p) == LSPO_OK, "register");
	for (int k = 0; k < NG; k++) {
		lspo_matrix_register(&c->hG[k], c->G[k], M, N);
		lspo_matrix_register(&c->hM[k], c->Mo[k], D, D);
		lspo_matrix_register(&c->hV[k], c->V[k], D, D);
	}
	starpu_vector_data_register(&c->herrs, STARPU_MAIN_RAM, (uintptr_t)c->errs, 6 * NG, sizeof(double));
	errors(c, c->p, 0, 1);
	CHECK(lspo_proj_create(M, N, D, R, LSPO_PROJ_GAUSSIAN, seed, &c->fresh) == LSPO_OK, "fresh");
	lspo_proj_normalize(c->fresh);
	CHECK(lspo_proj_clone(c->fresh, &c->learned) == LSPO_OK, "clone");
	lspo_proj_register(c->fresh);
	lspo_proj_register(c->learned);
	size_t nm = (size_t)2 * (M + N) * R;
	c->mom = calloc(nm, sizeof(float));
	starpu_vector_data_register(&c->hmom, STARPU_MAIN_RAM, (uintptr_t)c->mom, (uint32_t)nm, sizeof(float));
	errors(c, c->fresh, NG, 0);
	starpu_data_handle_t h[4], live[4], fr[4];
	handles(c->learned, h);
	for (int t = 1; t <= ITERS * NG; t++)
		CHECK(lspo_proj_learn_submit(h[0], h[1], h[2], h[3], D, c->hG[(t - 1) % NG], c->hmom, t, lo, -1,
		                             "proj_learn:learn") == LSPO_OK, "proj_learn");
	errors(c, c->learned, 2 * NG, 0);
	handles(c->p, live);
	handles(c->fresh, fr);
	CHECK(lspo_proj_publish_submit(c->p, live, fr, h, c->herrs, NG, D, c->hG, c->hM, c->hV, &c->rep, 0,
	                               "proj_publish:reproject") == LSPO_OK, "proj_publish");
}

static void free_chain(struct chain *c)
{
	for (int k = 0; k < NG; k++) {
		starpu_data_unregister(c->hG[k]);
		starpu_data_unregister(c->hM[k]);
		starpu_data_unregister(c->hV[k]);
	}
	starpu_data_unregister(c->herrs);
	starpu_data_unregister(c->hmom);
	lspo_proj_free(c->fresh);
	lspo_proj_free(c->learned);
	free(c->mom);
}

static void same_pair(const struct lspo_proj *a, const struct lspo_proj *b, const char *what)
{
	for (int side = 0; side < 2; side++) {
		const int32_t *ia, *ib;
		const float *va, *vb;
		lspo_proj_ell(a, side, &ia, &va);
		lspo_proj_ell(b, side, &ib, &vb);
		size_t nz = (size_t)(side ? N : M) * R;
		CHECK(memcmp(ia, ib, nz * sizeof(int32_t)) == 0, "%s: side %d: indices differ", what, side);
		CHECK(memcmp(va, vb, nz * sizeof(float)) == 0, "%s: side %d: values differ", what, side);
	}
}

int main(void)
{
	struct lspo_ctx *ctx = test_start("lspo", 2, 0);
	uint64_t s = 12;
	struct lspo_proj_refresh_opts ro = lspo_proj_refresh_opts_default();
	ro.alpha = 0.1;
	ro.seed = 77;
	ro.learn.iters = ITERS;
	struct chain c[2];
	struct lspo_proj *ref[2];
	float *refM[2][NG], *refV[2][NG];
	struct lspo_proj_refresh_report rrep[2];
	for (int i = 0; i < 2; i++) {
		memset(&c[i], 0, sizeof(c[i]));
		CHECK(lspo_proj_create(M, N, D, R, LSPO_PROJ_GAUSSIAN, 5 + (uint64_t)i, &c[i].p) == LSPO_OK, "create");
		CHECK(lspo_proj_clone(c[i].p, &ref[i]) == LSPO_OK, "clone");
		for (int k = 0; k < NG; k++) {
			c[i].G[k] = falloc((size_t)M * N);
			c[i].Mo[k] = falloc((size_t)D * D);
			c[i].V[k] = falloc((size_t)D * D);
			refM[i][k] = falloc((size_t)D * D);
			refV[i][k] = falloc((size_t)D * D);
			test_fill(c[i].G[k], (size_t)M * N, &s);
			test_fill(c[i].Mo[k], (size_t)D * D, &s);
			test_fill(c[i].V[k], (size_t)D * D, &s);
			for (int j = 0; j < D * D; j++)
				c[i].V[k][j] = fabsf(c[i].V[k][j]);
			memcpy(refM[i][k], c[i].Mo[k], sizeof(float) * D * D);
			memcpy(refV[i][k], c[i].V[k], sizeof(float) * D * D);
		}
		/* the host reference */
		ro.seed = 77 + (uint64_t)i;
		CHECK(lspo_proj_maybe_refresh(ref[i], (const float *const *)c[i].G, NG, NULL, 0, &ro, refM[i], refV[i], NG,
		                              &rrep[i]) == LSPO_OK, "reference refresh");
		CHECK(rrep[i].err_check > ro.alpha && rrep[i].err_candidate >= 0, "pair %d: no learning (error %.3f)", i,
		      rrep[i].err_check);
	}
	/* both chains at once */
	for (int i = 0; i < 2; i++)
		submit_chain(&c[i], &ro.learn, 77 + (uint64_t)i);
	starpu_task_wait_for_all();
	for (int i = 0; i < 2; i++) {
		struct lspo_proj_refresh_report *a = &c[i].rep, *b = &rrep[i];
		CHECK(a->outcome == b->outcome && a->refreshed == b->refreshed && a->err_check == b->err_check
		      && a->err_fresh == b->err_fresh && a->err_candidate == b->err_candidate && a->err_after == b->err_after
		      && a->captured_before == b->captured_before && a->captured_after == b->captured_after
		      && a->captured_random == b->captured_random,
		      "pair %d: task report (%s, error %.9g -> %.9g, candidate %.9g) differs from the host's (%s, %.9g -> "
		      "%.9g, %.9g)", i, lspo_proj_outcome_name(a->outcome), a->err_check, a->err_after, a->err_candidate,
		      lspo_proj_outcome_name(b->outcome), b->err_check, b->err_after, b->err_candidate);
		printf("pair %d: %s, error %.4f -> %.4f (learned %.4f), as on the host\n", i,
		       lspo_proj_outcome_name(a->outcome), a->err_check, a->err_after, a->err_candidate);
		free_chain(&c[i]);   /* unregistering brings the data home */
		same_pair(c[i].p, ref[i], "pair");
		for (int k = 0; k < NG; k++) {
			CHECK(memcmp(c[i].Mo[k], refM[i][k], sizeof(float) * D * D) == 0, "pair %d: M of matrix %d differs", i, k);
			CHECK(memcmp(c[i].V[k], refV[i][k], sizeof(float) * D * D) == 0, "pair %d: V of matrix %d differs", i, k);
		}
	}
	for (int i = 0; i < 2; i++) {
		lspo_proj_free(c[i].p);
		lspo_proj_free(ref[i]);
		for (int k = 0; k < NG; k++) {
			free(c[i].G[k]);
			free(c[i].Mo[k]);
			free(c[i].V[k]);
			free(refM[i][k]);
			free(refV[i][k]);
		}
	}
	lspo_ctx_destroy(ctx);
	return test_finish("test_proj_tasks");
}
