/*
 * train_state.c - what a training job needs besides the weights to stop and
 * resume bit for bit: the mode, the optimizer step, the AdamW moments, and in
 * lsp mode each matrix's subspace moments and step count and the projector
 * pairs.  One safetensors file of F32 and I32 tensors:
 *   mode (1) I32, step (1) I32, adamw.m / adamw.v (nfloats) F32,
 *   lsp.t (nmats) I32, lsp.<k>.M / lsp.<k>.V (d, d) F32,
 *   proj.<i>.<P|Q>.idx (rows, r) I32, proj.<i>.<P|Q>.val (rows, r) F32.
 * Loading checks every tensor before it changes anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <starpu.h>

#include "internal.h"
#include "engine/model.h"
#include "projector.h"
#include "io/safetensors.h"

#define NAME_LEN 48
enum { T_MODE, T_STEP };   /* the first two tensors of every state */

/* The tensors of a state, described once for both directions. */
struct state_tensor {
	char name[NAME_LEN];
	enum st_dtype dtype;
	int ndim;
	int64_t shape[2];
	void *data;
	int32_t bound;        /* I32 values must lie in [0, bound); 0: any value >= 0 */
};

struct state_desc {
	struct state_tensor *t;
	int n;
	int32_t head[2];      /* mode, step */
	int32_t *lsp_t;       /* (nmats) */
};

static struct state_tensor *add(struct state_desc *s, enum st_dtype dtype, void *data, int64_t rows,
                                int64_t cols, const char *fmt, int i)
{
	struct state_tensor *t = &s->t[s->n++];
	snprintf(t->name, NAME_LEN, fmt, i);
	t->dtype = dtype;
	t->data = data;
	t->ndim = cols ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->bound = 0;
	return t;
}

static void desc_free(struct state_desc *s)
{
	free(s->t);
	free(s->lsp_t);
}

static int describe(struct lspo_model *g, struct state_desc *s)
{
	int nmats = lsp_state_nmats(g), npairs = lsp_state_npairs(g);
	memset(s, 0, sizeof(*s));
	s->t = calloc(5 + 2 * (size_t)nmats + 4 * (size_t)npairs, sizeof(*s->t));
	s->lsp_t = calloc(nmats ? (size_t)nmats : 1, sizeof(int32_t));
	if (!s->t || !s->lsp_t) {
		desc_free(s);
		LSPO_FAIL(LSPO_ENOMEM, "training state: out of memory");
	}
	s->head[0] = (int32_t)g->mode_id;
	s->head[1] = g->step;
	add(s, ST_I32, &s->head[0], 1, 0, "mode", 0);
	add(s, ST_I32, &s->head[1], 1, 0, "step", 0);
	add(s, ST_F32, g->m, (int64_t)g->layout.nfloats, 0, "adamw.m", 0);
	add(s, ST_F32, g->v, (int64_t)g->layout.nfloats, 0, "adamw.v", 0);
	if (!nmats)
		return LSPO_OK;
	add(s, ST_I32, s->lsp_t, nmats, 0, "lsp.t", 0);
	for (int k = 0; k < nmats; k++) {
		struct lsp_state ls = lsp_state_matrix(g, k);
		s->lsp_t[k] = *ls.t;
		add(s, ST_F32, ls.M, ls.d, ls.d, "lsp.%d.M", k);
		add(s, ST_F32, ls.V, ls.d, ls.d, "lsp.%d.V", k);
	}
	for (int i = 0; i < npairs; i++) {
		struct lspo_proj *p = lsp_state_pair(g, i);
		add(s, ST_I32, p->idx[0], p->m, p->r, "proj.%d.P.idx", i)->bound = p->d;
		add(s, ST_F32, p->val[0], p->m, p->r, "proj.%d.P.val", i);
		add(s, ST_I32, p->idx[1], p->n, p->r, "proj.%d.Q.idx", i)->bound = p->d;
		add(s, ST_F32, p->val[1], p->n, p->r, "proj.%d.Q.val", i);
	}
	return LSPO_OK;
}

static void take_handle(starpu_data_handle_t h, enum starpu_data_access_mode mode, int take)
{
	if (take)
		starpu_data_acquire(h, mode);
	else
		starpu_data_release(h);
}

/* Takes (or gives back) every handle whose host memory the state covers. */
static void take_handles(struct lspo_model *g, enum starpu_data_access_mode mode, int take)
{
	for (int i = 0; i < g->layout.ntensors; i++) {
		starpu_data_handle_t h[2] = { g->hm[i], g->hv[i] };
		for (int j = 0; j < 2; j++)
			take_handle(h[j], mode, take);
	}
	for (int k = 0; k < lsp_state_nmats(g); k++) {
		struct lsp_state ls = lsp_state_matrix(g, k);
		take_handle(ls.hM, mode, take);
		take_handle(ls.hV, mode, take);
	}
	for (int i = 0; i < lsp_state_npairs(g); i++) {
		if (take)
			lspo_proj_acquire_rw(lsp_state_pair(g, i));
		else
			lspo_proj_release(lsp_state_pair(g, i));
	}
}

int lspo_model_save_state(struct lspo_model *g, const char *path)
{
	struct state_desc s;
	int rc = describe(g, &s);
	if (rc)
		return rc;
	struct st_out_tensor *out = calloc((size_t)s.n, sizeof(*out));
	if (!out) {
		desc_free(&s);
		LSPO_FAIL(LSPO_ENOMEM, "training state: out of memory");
	}
	for (int i = 0; i < s.n; i++)
		out[i] = (struct st_out_tensor){ .name = s.t[i].name, .ndim = s.t[i].ndim, .data = s.t[i].data,
		                                 .dtype = s.t[i].dtype, .shape = { s.t[i].shape[0], s.t[i].shape[1] } };
	take_handles(g, STARPU_R, 1);
	rc = st_write(path, out, (size_t)s.n);
	take_handles(g, STARPU_R, 0);
	free(out);
	desc_free(&s);
	return rc;
}

static void shape_text(char *buf, size_t len, int ndim, const int64_t *shape)
{
	int at = snprintf(buf, len, "(");
	for (int d = 0; d < ndim && at > 0 && (size_t)at < len; d++)
		at += snprintf(buf + at, len - (size_t)at, d ? ", %lld" : "%lld", (long long)shape[d]);
	if (at > 0 && (size_t)at < len)
		snprintf(buf + at, len - (size_t)at, ")");
}

/* The file's tensor for t, with t's dtype and shape, or NULL after a message. */
static const struct st_tensor *find(const struct st_file *f, const struct state_tensor *t)
{
	int i = st_find(f, t->name);
	if (i < 0) {
		lspo_log_at(LSPO_LOG_ERROR, __FILE__, __LINE__, "%s: tensor '%s' is missing", f->path, t->name);
		return NULL;
	}
	const struct st_tensor *ft = &f->tensors[i];
	int ok = ft->dtype == t->dtype && ft->ndim == t->ndim;
	for (int d = 0; ok && d < t->ndim; d++)
		ok = ft->shape[d] == t->shape[d];
	if (!ok) {
		char want[64], got[8 * 24];
		shape_text(want, sizeof(want), t->ndim, t->shape);
		shape_text(got, sizeof(got), ft->ndim, ft->shape);
		lspo_log_at(LSPO_LOG_ERROR, __FILE__, __LINE__, "%s: tensor '%s': expected %s %s, got %s %s "
		            "(does the state belong to this model and these options?)", f->path, t->name,
		            st_dtype_name(t->dtype), want, st_dtype_name(ft->dtype), got);
		return NULL;
	}
	return ft;
}

/* Every check before anything changes: tensors, mode, step counts, and
 * projector indices (in [0, d), strictly increasing along each row). */
static int validate(const struct st_file *f, const struct state_desc *s, struct lspo_model *g)
{
	for (int i = 0; i < s->n; i++)
		if (!find(f, &s->t[i]))
			return LSPO_EFORMAT;
	int32_t mode, *buf = NULL;
	st_read_i32(f, find(f, &s->t[T_MODE]), &mode, 1);
	if (mode != (int32_t)g->mode_id)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor 'mode': the state is of mode %s, the model runs in mode %s",
		          f->path, lspo_mode_name((enum lspo_mode)mode), lspo_mode_name(g->mode_id));
	for (int i = T_STEP; i < s->n; i++) {
		const struct state_tensor *t = &s->t[i];
		if (t->dtype != ST_I32)
			continue;
		size_t n = (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
		int32_t *b = realloc(buf, n * sizeof(int32_t));
		if (!b) {
			free(buf);
			LSPO_FAIL(LSPO_ENOMEM, "training state: out of memory");
		}
		buf = b;
		st_read_i32(f, find(f, t), buf, n);
		size_t r = t->ndim == 2 ? (size_t)t->shape[1] : 1;
		for (size_t j = 0; j < n; j++) {
			int bad = buf[j] < 0 || (t->bound && (buf[j] >= t->bound || (j % r && buf[j] <= buf[j - 1])));
			if (bad) {
				int32_t v = buf[j];
				free(buf);
				if (t->bound)
					LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': element %zu = %d: indices must lie in "
					          "[0, %d) and increase along each row", f->path, t->name, j, v, t->bound);
				LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': element %zu = %d is negative", f->path,
				          t->name, j, v);
			}
		}
	}
	free(buf);
	return LSPO_OK;
}

int lspo_model_load_state(struct lspo_model *g, const char *path)
{
	struct state_desc s;
	struct st_file *f;
	int rc = describe(g, &s);
	if (rc)
		return rc;
	if ((rc = st_open(path, &f))) {
		desc_free(&s);
		return rc;
	}
	rc = validate(f, &s, g);
	if (!rc) {
		starpu_task_wait_for_all();
		take_handles(g, STARPU_W, 1);
		for (int i = T_STEP + 1; i < s.n; i++) {
			const struct st_tensor *ft = find(f, &s.t[i]);
			if (s.t[i].dtype == ST_F32)
				st_read_f32(f, ft, s.t[i].data);
			else
				st_read_i32(f, ft, s.t[i].data, st_numel(ft));
		}
		take_handles(g, STARPU_W, 0);
		int32_t step;
		st_read_i32(f, find(f, &s.t[T_STEP]), &step, 1);
		g->step = step;
		for (int k = 0; k < lsp_state_nmats(g); k++)
			*lsp_state_matrix(g, k).t = s.lsp_t[k];
	}
	st_close(f);
	desc_free(&s);
	return rc;
}

int lspo_model_step(const struct lspo_model *g)
{
	return g->step;
}
