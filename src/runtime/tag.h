/*
 * tag.h - a task's tag: which operation, of which layer (or of the whole
 * step), in which stage of a training step.  The engine names every task
 * with its tag; the `lspo` policy schedules by it and the trace writes it.
 * This module is the one place that formats and parses tags.
 *
 * A tag's text is "<op>:L<layer>:<stage>" for a layer's task (layers 0 .. L
 * in forward order) or "<op>:<stage>" for a step-level task (one that
 * belongs to no layer, e.g. the loss or the gradient clip).  op is 1 to
 * LSPO_TAG_OP_MAX characters from [A-Za-z0-9_.-]; layer is decimal without
 * leading zeros, 0 .. LSPO_TAG_MAX_LAYER; stage is one of lspo_stage_name's
 * words.  Every tag has exactly one text and every text at most one tag:
 * lspo_tag_parse(format(tag)) == tag and format(parse(text)) == text.
 *
 * StarPU tasks keep a pointer to their name, so the engine takes names from
 * an interning table (struct lspo_tags) whose strings stay at the same
 * address until the table is freed; the table grows as needed and reports
 * running out of memory (it has no size limit and no fallback name).
 * A table is not thread-safe: its owner serialises calls.
 */
#ifndef LSPO_TAG_H
#define LSPO_TAG_H

#include <stddef.h>

/* Stages of a training step.  The values are internal (the policy packs
 * them into 4 bits, so at most 16); names are what tags and traces use. */
enum lspo_stage {
	LSPO_STAGE_NONE = 0,   /* not a stage: what a name that is no tag has */
	LSPO_STAGE_FWD,        /* "fwd"       forward pass, loss */
	LSPO_STAGE_BWD,        /* "bwd"       backward pass */
	LSPO_STAGE_PROJ,       /* "proj"      gradient compression G_hat = P^T G Q */
	LSPO_STAGE_OFFLOAD,    /* "offload"   what sends a gradient to host memory */
	LSPO_STAGE_UPD,        /* "upd"       optimizer update (and its norm, clip) */
	LSPO_STAGE_UPLOAD,     /* "upload"    what sends an update back */
	LSPO_STAGE_APPLY,      /* "apply"     W += P Delta Q^T, or weights put in place */
	LSPO_STAGE_CHECK,      /* "check"     projector error checks */
	LSPO_STAGE_LEARN,      /* "learn"     projector learning */
	LSPO_STAGE_REPROJECT,  /* "reproject" moments carried to a new projector */
	LSPO_STAGE_RECOMPUTE,  /* "recompute" activations recomputed for the backward */
	LSPO_STAGE_REDUCE,     /* "reduce"    reductions across workers or micro-batches */
	LSPO_NSTAGES
};

#define LSPO_TAG_STEP (-1)           /* the layer of a step-level tag */
#define LSPO_TAG_MAX_LAYER 999999    /* largest layer a tag can carry */
#define LSPO_TAG_OP_MAX 31           /* longest op, in characters */
/* Longest tag text, terminating NUL included. */
#define LSPO_TAG_NAME_MAX (LSPO_TAG_OP_MAX + sizeof(":L999999:") + sizeof("reproject") - 1)

struct lspo_tag {
	char op[LSPO_TAG_OP_MAX + 1];
	int layer;                     /* 0 .. LSPO_TAG_MAX_LAYER, or LSPO_TAG_STEP */
	enum lspo_stage stage;         /* never LSPO_STAGE_NONE */
};

/* The stage's word ("fwd", "upd", ...); "" for LSPO_STAGE_NONE and for a
 * value that is no stage. */
const char *lspo_stage_name(enum lspo_stage s);

/* A stage's word -> the stage.  LSPO_EINVAL (not logged) for anything else,
 * NULL included; *out is then LSPO_STAGE_NONE. */
int lspo_stage_parse(const char *word, enum lspo_stage *out);

/* Writes the tag's text into buf (len bytes, LSPO_TAG_NAME_MAX always
 * suffices).  layer < 0 means step-level.  LSPO_EINVAL, logged and naming
 * what is wrong, for an op outside the alphabet or too long, a layer above
 * LSPO_TAG_MAX_LAYER, a stage that is not one, or a buffer too small. */
int lspo_tag_format(char *buf, size_t len, const char *op, int layer, enum lspo_stage stage);

/* Parses a tag's text.  LSPO_EINVAL, not logged (the policy asks about
 * every task, named or not), when name is NULL or is not exactly a tag's
 * text; *out is then { "", LSPO_TAG_STEP, LSPO_STAGE_NONE }. */
int lspo_tag_parse(const char *name, struct lspo_tag *out);

/* ------------------------------------------------------------------------ */
/* Interned task names                                                      */

struct lspo_tags;

/* An empty table.  LSPO_ENOMEM if it cannot be allocated. */
int lspo_tags_create(struct lspo_tags **out);

/* Frees the table and every string it handed out.  NULL is a no-op. */
void lspo_tags_free(struct lspo_tags *t);

/* *out = the interned text of the tag (op, layer, stage), as
 * lspo_tag_format writes it; layer < 0 means step-level.  The same text
 * always gives the same pointer, valid until lspo_tags_free.  LSPO_EINVAL
 * as lspo_tag_format; LSPO_ENOMEM (logged) if the table cannot grow.  On
 * failure *out is NULL and the table is unchanged. */
int lspo_tags_name(struct lspo_tags *t, const char *op, int layer, enum lspo_stage stage,
                   const char **out);

/* *out = the interned copy of any string s (for names that are not tags,
 * e.g. the trace's copy of every task name).  Same guarantees and errors as
 * lspo_tags_name; LSPO_EINVAL if s is NULL. */
int lspo_tags_intern(struct lspo_tags *t, const char *s, const char **out);

/* Distinct strings in the table. */
size_t lspo_tags_count(const struct lspo_tags *t);

#endif
