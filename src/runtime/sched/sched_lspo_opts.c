/*
 * sched_lspo_opts.c - the `lspo` policy's options (include/lspo.h), the
 * `--lsp-delays` parser, the policy's view of task tags (tag.h) and the
 * automatic cut: the parts of the policy that are plain functions, testable
 * without StarPU running.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "runtime/sched/sched_lspo.h"

#define OPT_MAX (1 << 20)

/* The options that lspo_sched_set_opts gave last: what every context
 * created from now on starts with (a running context has its own copy in
 * its struct lspo_sched_state). */
static pthread_mutex_t next_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lspo_sched_opts next_opts = { .cut = -1, .nlayers = 0,
                                            .delay_upd = 0, .delay_upload = 0, .delay_apply = 0 };

struct lspo_sched_opts lspo_sched_opts_default(void)
{
	return (struct lspo_sched_opts){ .cut = -1, .nlayers = 0,
	                                 .delay_upd = 0, .delay_upload = 0, .delay_apply = 0 };
}

void lspo_sched_state_init(struct lspo_sched_state *s)
{
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_lock(&next_lock);
	s->opts = next_opts;
	pthread_mutex_unlock(&next_lock);
	s->version = 1;
	s->learned_nlayers = 0;
	s->learned_cut = -1;
}

void lspo_sched_state_destroy(struct lspo_sched_state *s)
{
	pthread_mutex_destroy(&s->lock);
}

int lspo_sched_set_opts(const struct lspo_sched_opts *o)
{
	if (!o)
		LSPO_FAIL(LSPO_EINVAL, "lspo policy options: NULL");
	if (o->cut < -1 || o->cut > OPT_MAX)
		LSPO_FAIL(LSPO_EINVAL, "lspo policy options: cut %d (expected -1 for auto, or 0 .. %d)",
		          o->cut, OPT_MAX);
	if (o->nlayers < 0 || o->nlayers > OPT_MAX)
		LSPO_FAIL(LSPO_EINVAL, "lspo policy options: nlayers %d (expected 0 to learn, or 1 .. %d)",
		          o->nlayers, OPT_MAX);
	const int d[3] = { o->delay_upd, o->delay_upload, o->delay_apply };
	static const char *const dname[3] = { "delay_upd", "delay_upload", "delay_apply" };
	for (int i = 0; i < 3; i++)
		if (d[i] < 0 || d[i] > OPT_MAX)
			LSPO_FAIL(LSPO_EINVAL, "lspo policy options: %s %d (expected 0 .. %d layers)",
			          dname[i], d[i], OPT_MAX);
	pthread_mutex_lock(&next_lock);
	next_opts = *o;
	pthread_mutex_unlock(&next_lock);
	struct lspo_sched_state *s = lspo_ctx_sched_state();
	if (s) {
		pthread_mutex_lock(&s->lock);
		s->opts = *o;
		s->version++;
		pthread_mutex_unlock(&s->lock);
	}
	return LSPO_OK;
}

unsigned lspo_sched_opts_snapshot(struct lspo_sched_opts *out)
{
	struct lspo_sched_state *s = lspo_ctx_sched_state();
	if (!s) {
		pthread_mutex_lock(&next_lock);
		*out = next_opts;
		pthread_mutex_unlock(&next_lock);
		return 0;
	}
	pthread_mutex_lock(&s->lock);
	*out = s->opts;
	unsigned v = s->version;
	pthread_mutex_unlock(&s->lock);
	return v;
}

void lspo_sched_publish(int nlayers_seen, int auto_cut)
{
	struct lspo_sched_state *s = lspo_ctx_sched_state();
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->learned_nlayers = nlayers_seen;
	s->learned_cut = auto_cut;
	pthread_mutex_unlock(&s->lock);
}

int lspo_sched_get_cut(void)
{
	struct lspo_sched_state *s = lspo_ctx_sched_state();
	struct lspo_sched_opts o;
	int learned_nlayers = 0, learned_cut = -1;
	if (s) {
		pthread_mutex_lock(&s->lock);
		o = s->opts;
		learned_nlayers = s->learned_nlayers;
		learned_cut = s->learned_cut;
		pthread_mutex_unlock(&s->lock);
	} else {
		lspo_sched_opts_snapshot(&o);
	}
	if (o.cut >= 0)
		return o.cut;
	return learned_cut >= 0 ? learned_cut
	     : lspo_sched_default_cut(o.nlayers > 0 ? o.nlayers : learned_nlayers);
}

/* ------------------------------------------------------------------------ */
/* --lsp-delays                                                             */

/* A non-negative decimal number filling [s, e); -1 if it is not one. */
static int parse_count(const char *s, const char *e)
{
	if (s == e || e - s > 7)
		return -1;
	int v = 0;
	for (const char *p = s; p < e; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		v = 10 * v + (*p - '0');
	}
	return v <= OPT_MAX ? v : -1;
}

int lspo_sched_parse_delays(const char *text, struct lspo_sched_opts *o)
{
	static const char *const keys[3] = { "upd", "upload", "apply" };
	if (!text || !o)
		LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: no text");
	if (!*text)
		LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: empty (expected e.g. upd=2,upload=3,apply=4 or 2,3,4)");
	int val[3] = { o->delay_upd, o->delay_upload, o->delay_apply };
	int seen[3] = { 0, 0, 0 };
	int nitems = 0, nbare = 0, nkeyed = 0;
	const char *p = text;
	for (;;) {
		const char *end = strchr(p, ',');
		if (!end)
			end = p + strlen(p);
		int len = (int)(end - p);
		const char *eq = memchr(p, '=', (size_t)len);
		nitems++;
		if (eq) {
			int k = -1;
			for (int i = 0; i < 3; i++)
				if ((size_t)(eq - p) == strlen(keys[i]) && strncmp(p, keys[i], (size_t)(eq - p)) == 0)
					k = i;
			if (k < 0)
				LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: item %d '%.*s': unknown stage "
				          "(expected upd, upload or apply)", nitems, len, p);
			if (seen[k])
				LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: item %d '%.*s': %s given twice",
				          nitems, len, p, keys[k]);
			int v = parse_count(eq + 1, end);
			if (v < 0)
				LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: item %d '%.*s': the delay must be a "
				          "number of layers, 0 .. %d", nitems, len, p, OPT_MAX);
			seen[k] = 1;
			val[k] = v;
			nkeyed++;
		} else {
			int v = parse_count(p, end);
			if (v < 0)
				LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: item %d '%.*s': expected a number of "
				          "layers (0 .. %d) or stage=number", nitems, len, p, OPT_MAX);
			if (nbare == 3)
				LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: item %d '%.*s': more than three delays "
				          "(upd, upload, apply)", nitems, len, p);
			val[nbare++] = v;
		}
		if (!*end)
			break;
		p = end + 1;
	}
	if (nbare && nkeyed)
		LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: '%s' mixes stage=number and bare numbers", text);
	if (nbare && nbare != 3)
		LSPO_FAIL(LSPO_EINVAL, "--lsp-delays: '%s' has %d bare numbers; expected three "
		          "(upd,upload,apply)", text, nbare);
	o->delay_upd = val[0];
	o->delay_upload = val[1];
	o->delay_apply = val[2];
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Task tags                                                                */

enum lspo_stage lspo_sched_stage_of(const char *name, int *layer)
{
	struct lspo_tag tag;
	*layer = -1;
	if (lspo_tag_parse(name, &tag))
		return LSPO_STAGE_NONE;
	if (tag.layer >= 0 && tag.layer <= LSPO_SCHED_MAX_LAYER)
		*layer = tag.layer;
	return tag.stage;
}

/* ------------------------------------------------------------------------ */
/* Automatic cut                                                            */

int lspo_sched_default_cut(int nlayers)
{
	return nlayers > 0 ? (nlayers + 2) / 4 : 0;
}

int lspo_sched_auto_cut(int nlayers, const double *bwd_us, const double *pipe_us)
{
	if (nlayers < 1 || !bwd_us || !pipe_us)
		return lspo_sched_default_cut(nlayers);
	double tb = 0.0, tp = 0.0;
	for (int i = 0; i < nlayers; i++) {
		if (!isfinite(bwd_us[i]) || !isfinite(pipe_us[i]) || bwd_us[i] < 0.0 || pipe_us[i] < 0.0)
			return lspo_sched_default_cut(nlayers);
		tb += bwd_us[i];
		tp += pipe_us[i];
	}
	if (!(tb > 0.0) || !(tp > 0.0))
		return lspo_sched_default_cut(nlayers);
	int cut = 0;
	double below = 0.0;   /* R_i: backward of the layers below i */
	for (int i = 0; i < nlayers; i++) {
		if (pipe_us[i] > below)
			cut = i + 1;
		below += bwd_us[i];
	}
	return cut;
}
