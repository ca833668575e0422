/*
 * tag.c - task tags: the stage words, the one format and the one parse of
 * "<op>:L<layer>:<stage>" / "<op>:<stage>", and the interning table that
 * gives tasks names with stable addresses (tag.h).
 *
 * The table is an open-addressing hash set of string pointers (capacity a
 * power of two, at most half full, linear probing) over strings stored in
 * chunks that are never moved or reallocated: growing the set moves
 * pointers, never the strings a task points at.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tag.h"

/* ------------------------------------------------------------------------ */
/* Stages                                                                   */

static const char *const stage_words[LSPO_NSTAGES] = {
	[LSPO_STAGE_NONE] = "",
	[LSPO_STAGE_FWD] = "fwd",
	[LSPO_STAGE_BWD] = "bwd",
	[LSPO_STAGE_PROJ] = "proj",
	[LSPO_STAGE_OFFLOAD] = "offload",
	[LSPO_STAGE_UPD] = "upd",
	[LSPO_STAGE_UPLOAD] = "upload",
	[LSPO_STAGE_APPLY] = "apply",
	[LSPO_STAGE_CHECK] = "check",
	[LSPO_STAGE_LEARN] = "learn",
	[LSPO_STAGE_REPROJECT] = "reproject",
	[LSPO_STAGE_RECOMPUTE] = "recompute",
	[LSPO_STAGE_REDUCE] = "reduce",
};

const char *lspo_stage_name(enum lspo_stage s)
{
	return (unsigned)s < LSPO_NSTAGES ? stage_words[s] : "";
}

/* The stage spelled by [s, s + n), LSPO_STAGE_NONE if none. */
static enum lspo_stage stage_of(const char *s, size_t n)
{
	for (int i = 1; i < LSPO_NSTAGES; i++)
		if (strlen(stage_words[i]) == n && memcmp(stage_words[i], s, n) == 0)
			return (enum lspo_stage)i;
	return LSPO_STAGE_NONE;
}

int lspo_stage_parse(const char *word, enum lspo_stage *out)
{
	*out = word ? stage_of(word, strlen(word)) : LSPO_STAGE_NONE;
	return *out == LSPO_STAGE_NONE ? LSPO_EINVAL : LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Format and parse                                                         */

static int op_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

/* 1 if [s, s + n) is a valid op. */
static int op_ok(const char *s, size_t n)
{
	if (n < 1 || n > LSPO_TAG_OP_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!op_char(s[i]))
			return 0;
	return 1;
}

int lspo_tag_format(char *buf, size_t len, const char *op, int layer, enum lspo_stage stage)
{
	if (!buf || len == 0)
		LSPO_FAIL(LSPO_EINVAL, "task tag: no buffer");
	buf[0] = 0;
	if (!op || !op_ok(op, strlen(op)))
		LSPO_FAIL(LSPO_EINVAL, "task tag: op '%s' (expected 1 to %d characters of [A-Za-z0-9_.-])",
		          op ? op : "(null)", LSPO_TAG_OP_MAX);
	if (layer > LSPO_TAG_MAX_LAYER)
		LSPO_FAIL(LSPO_EINVAL, "task tag %s: layer %d (expected 0 .. %d, or < 0 for step-level)",
		          op, layer, LSPO_TAG_MAX_LAYER);
	if ((unsigned)stage >= LSPO_NSTAGES || stage == LSPO_STAGE_NONE)
		LSPO_FAIL(LSPO_EINVAL, "task tag %s: stage %d is not a stage", op, (int)stage);
	int n = layer >= 0 ? snprintf(buf, len, "%s:L%d:%s", op, layer, stage_words[stage])
	                   : snprintf(buf, len, "%s:%s", op, stage_words[stage]);
	if (n < 0 || (size_t)n >= len) {
		buf[0] = 0;
		LSPO_FAIL(LSPO_EINVAL, "task tag %s: buffer of %zu bytes too small", op, len);
	}
	return LSPO_OK;
}

/* The layer spelled by [s, s + n): decimal, no sign, no leading zero;
 * -1 if it is not one or exceeds LSPO_TAG_MAX_LAYER. */
static int layer_of(const char *s, size_t n)
{
	if (n < 1 || n > 9 || (n > 1 && s[0] == '0'))
		return -1;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = 10 * v + (s[i] - '0');
	}
	return v <= LSPO_TAG_MAX_LAYER ? v : -1;
}

int lspo_tag_parse(const char *name, struct lspo_tag *out)
{
	*out = (struct lspo_tag){ .op = "", .layer = LSPO_TAG_STEP, .stage = LSPO_STAGE_NONE };
	if (!name)
		return LSPO_EINVAL;
	const char *c1 = strchr(name, ':');
	if (!c1 || !op_ok(name, (size_t)(c1 - name)))
		return LSPO_EINVAL;
	const char *c2 = strchr(c1 + 1, ':');
	int layer = LSPO_TAG_STEP;
	const char *st = c1 + 1;
	if (c2) {   /* "<op>:L<layer>:<stage>" */
		if (c1[1] != 'L' || strchr(c2 + 1, ':'))
			return LSPO_EINVAL;
		layer = layer_of(c1 + 2, (size_t)(c2 - c1 - 2));
		if (layer < 0)
			return LSPO_EINVAL;
		st = c2 + 1;
	}
	enum lspo_stage stage = stage_of(st, strlen(st));
	if (stage == LSPO_STAGE_NONE)
		return LSPO_EINVAL;
	memcpy(out->op, name, (size_t)(c1 - name));
	out->op[c1 - name] = 0;
	out->layer = layer;
	out->stage = stage;
	return LSPO_OK;
}

/* ------------------------------------------------------------------------ */
/* Interning table                                                          */

#define CHUNK_BYTES 4096

struct chunk {
	struct chunk *next;
	size_t used, cap;
	char data[];
};

struct lspo_tags {
	const char **slots;    /* capacity `cap` (a power of two), NULL = empty */
	size_t cap, count;
	struct chunk *chunks;  /* newest first; strings never move */
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;   /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

int lspo_tags_create(struct lspo_tags **out)
{
	*out = NULL;
	struct lspo_tags *t = calloc(1, sizeof(*t));
	if (t) {
		t->cap = 64;
		t->slots = calloc(t->cap, sizeof(*t->slots));
	}
	if (!t || !t->slots) {
		free(t);
		LSPO_FAIL(LSPO_ENOMEM, "task tags: out of memory creating the table");
	}
	*out = t;
	return LSPO_OK;
}

void lspo_tags_free(struct lspo_tags *t)
{
	if (!t)
		return;
	for (struct chunk *c = t->chunks, *next; c; c = next) {
		next = c->next;
		free(c);
	}
	free(t->slots);
	free(t);
}

size_t lspo_tags_count(const struct lspo_tags *t)
{
	return t ? t->count : 0;
}

/* Doubles the set; the table is unchanged on failure. */
static int rehash(struct lspo_tags *t)
{
	size_t cap = t->cap * 2;
	const char **s = calloc(cap, sizeof(*s));
	if (!s)
		return LSPO_ENOMEM;
	for (size_t i = 0; i < t->cap; i++) {
		if (!t->slots[i])
			continue;
		size_t j = hash_str(t->slots[i]) & (cap - 1);
		while (s[j])
			j = (j + 1) & (cap - 1);
		s[j] = t->slots[i];
	}
	free(t->slots);
	t->slots = s;
	t->cap = cap;
	return LSPO_OK;
}

/* A stable copy of s (n bytes + NUL) in the chunks; NULL if out of memory. */
static const char *store(struct lspo_tags *t, const char *s, size_t n)
{
	struct chunk *c = t->chunks;
	if (!c || c->cap - c->used < n + 1) {
		size_t cap = n + 1 > CHUNK_BYTES ? n + 1 : CHUNK_BYTES;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->used = 0;
		c->cap = cap;
		c->next = t->chunks;
		t->chunks = c;
	}
	char *p = c->data + c->used;
	memcpy(p, s, n + 1);
	c->used += n + 1;
	return p;
}

int lspo_tags_intern(struct lspo_tags *t, const char *s, const char **out)
{
	*out = NULL;
	if (!t || !s)
		LSPO_FAIL(LSPO_EINVAL, "task tags: %s", !t ? "no table" : "NULL string");
	uint64_t h = hash_str(s);
	size_t j = h & (t->cap - 1);
	for (; t->slots[j]; j = (j + 1) & (t->cap - 1))
		if (strcmp(t->slots[j], s) == 0) {
			*out = t->slots[j];
			return LSPO_OK;
		}
	if (2 * (t->count + 1) > t->cap) {
		if (rehash(t))
			LSPO_FAIL(LSPO_ENOMEM, "task tags: out of memory growing the table past %zu names",
			          t->count);
		for (j = h & (t->cap - 1); t->slots[j]; j = (j + 1) & (t->cap - 1))
			;
	}
	const char *copy = store(t, s, strlen(s));
	if (!copy)
		LSPO_FAIL(LSPO_ENOMEM, "task tags: out of memory storing name %zu (%s)", t->count + 1, s);
	t->slots[j] = copy;
	t->count++;
	*out = copy;
	return LSPO_OK;
}

int lspo_tags_name(struct lspo_tags *t, const char *op, int layer, enum lspo_stage stage,
                   const char **out)
{
	char buf[LSPO_TAG_NAME_MAX];
	*out = NULL;
	int rc = lspo_tag_format(buf, sizeof(buf), op, layer, stage);
	return rc ? rc : lspo_tags_intern(t, buf, out);
}
