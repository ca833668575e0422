/*
 * test_tag.c - task tags (src/runtime/tag.h): every stage's word, format and parse
 * as inverses of each other, names that are not tags rejected, and the
 * interning table: 10000+ distinct names, the same pointer for the same
 * text, strings that stay where they are while the table grows.
 */
#include <string.h>

#include "common.h"
#include "runtime/tag.h"

static void test_stages(void)
{
	for (int s = 1; s < LSPO_NSTAGES; s++) {
		const char *w = lspo_stage_name((enum lspo_stage)s);
		enum lspo_stage back;
		CHECK(w[0] != 0, "stage %d has no word", s);
		CHECK(lspo_stage_parse(w, &back) == LSPO_OK && back == (enum lspo_stage)s,
		      "stage %d '%s' does not parse back", s, w);
		for (int t = 1; t < s; t++)
			CHECK(strcmp(w, lspo_stage_name((enum lspo_stage)t)) != 0, "stages %d and %d share '%s'",
			      s, t, w);
	}
	static const char *const words[] = { "fwd", "bwd", "proj", "offload", "upload", "upd", "apply",
	                                     "check", "learn", "reproject", "recompute", "reduce" };
	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++) {
		enum lspo_stage st;
		CHECK(lspo_stage_parse(words[i], &st) == LSPO_OK && strcmp(lspo_stage_name(st), words[i]) == 0,
		      "stage '%s' missing", words[i]);
	}
	CHECK(strcmp(lspo_stage_name(LSPO_STAGE_NONE), "") == 0, "NONE has a word");
	CHECK(strcmp(lspo_stage_name(LSPO_NSTAGES), "") == 0, "NSTAGES has a word");
	CHECK(strcmp(lspo_stage_name((enum lspo_stage)-3), "") == 0, "-3 has a word");
	enum lspo_stage st = LSPO_STAGE_FWD;
	CHECK(lspo_stage_parse("", &st) == LSPO_EINVAL && st == LSPO_STAGE_NONE, "empty word");
	CHECK(lspo_stage_parse("Fwd", &st) == LSPO_EINVAL, "case matters");
	CHECK(lspo_stage_parse("fwdx", &st) == LSPO_EINVAL, "prefix");
	CHECK(lspo_stage_parse(NULL, &st) == LSPO_EINVAL, "NULL word");
}

static void round_trip(const char *op, int layer, enum lspo_stage st, const char *want)
{
	char buf[LSPO_TAG_NAME_MAX];
	struct lspo_tag tag;
	CHECK(lspo_tag_format(buf, sizeof(buf), op, layer, st) == LSPO_OK, "format %s %d %d", op, layer, st);
	CHECK(strcmp(buf, want) == 0, "format %s %d %d: '%s', expected '%s'", op, layer, st, buf, want);
	CHECK(lspo_tag_parse(buf, &tag) == LSPO_OK, "parse '%s'", buf);
	CHECK(strcmp(tag.op, op) == 0 && tag.layer == (layer < 0 ? LSPO_TAG_STEP : layer) && tag.stage == st,
	      "parse '%s': op '%s' layer %d stage %d", buf, tag.op, tag.layer, tag.stage);
}

static void test_format_parse(void)
{
	round_trip("matmul", 3, LSPO_STAGE_BWD, "matmul:L3:bwd");
	round_trip("matmul", 0, LSPO_STAGE_FWD, "matmul:L0:fwd");
	round_trip("subspace_adam", 95, LSPO_STAGE_UPD, "subspace_adam:L95:upd");
	round_trip("xent", -1, LSPO_STAGE_FWD, "xent:fwd");
	round_trip("clip_scale", -7, LSPO_STAGE_UPD, "clip_scale:upd");   /* any layer < 0: step-level */
	round_trip("L3", -1, LSPO_STAGE_UPD, "L3:upd");                   /* an op may look like a layer */
	round_trip("L3", 4, LSPO_STAGE_UPD, "L3:L4:upd");
	round_trip("a.b-c_9", LSPO_TAG_MAX_LAYER, LSPO_STAGE_REPROJECT, "a.b-c_9:L999999:reproject");
	char longop[LSPO_TAG_OP_MAX + 1];
	memset(longop, 'x', LSPO_TAG_OP_MAX);
	longop[LSPO_TAG_OP_MAX] = 0;
	char want[LSPO_TAG_NAME_MAX + 8];
	snprintf(want, sizeof(want), "%s:L%d:%s", longop, LSPO_TAG_MAX_LAYER, "reproject");
	CHECK(strlen(want) + 1 == LSPO_TAG_NAME_MAX, "LSPO_TAG_NAME_MAX %zu, longest tag %zu",
	      (size_t)LSPO_TAG_NAME_MAX, strlen(want) + 1);
	for (int s = 1; s < LSPO_NSTAGES; s++) {
		snprintf(want, sizeof(want), "%s:L%d:%s", longop, LSPO_TAG_MAX_LAYER,
		         lspo_stage_name((enum lspo_stage)s));
		round_trip(longop, LSPO_TAG_MAX_LAYER, (enum lspo_stage)s, want);
		snprintf(want, sizeof(want), "op:%s", lspo_stage_name((enum lspo_stage)s));
		round_trip("op", -1, (enum lspo_stage)s, want);
	}

	/* Format refuses what would not parse back. */
	char buf[LSPO_TAG_NAME_MAX];
	char toolong[LSPO_TAG_OP_MAX + 2];
	memset(toolong, 'y', sizeof(toolong) - 1);
	toolong[sizeof(toolong) - 1] = 0;
	CHECK(lspo_tag_format(buf, sizeof(buf), toolong, 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "op too long");
	CHECK(lspo_tag_format(buf, sizeof(buf), "", 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "empty op");
	CHECK(lspo_tag_format(buf, sizeof(buf), NULL, 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "NULL op");
	CHECK(lspo_tag_format(buf, sizeof(buf), "a:b", 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "':' in op");
	CHECK(lspo_tag_format(buf, sizeof(buf), "a b", 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "' ' in op");
	CHECK(lspo_tag_format(buf, sizeof(buf), "a,b", 1, LSPO_STAGE_FWD) == LSPO_EINVAL, "',' in op");
	CHECK(lspo_tag_format(buf, sizeof(buf), "op", LSPO_TAG_MAX_LAYER + 1, LSPO_STAGE_FWD) == LSPO_EINVAL,
	      "layer too large");
	CHECK(lspo_tag_format(buf, sizeof(buf), "op", 1, LSPO_STAGE_NONE) == LSPO_EINVAL, "stage NONE");
	CHECK(lspo_tag_format(buf, sizeof(buf), "op", 1, LSPO_NSTAGES) == LSPO_EINVAL, "stage NSTAGES");
	CHECK(lspo_tag_format(buf, 8, "matmul", 1, LSPO_STAGE_FWD) == LSPO_EINVAL && buf[0] == 0,
	      "buffer too small");

	/* Names that are not tags. */
	static const char *const bad[] = {
		"", "nop", ":", "fwd", ":fwd", "op:", "op:L3:", "op:L:fwd", "op:L3a:fwd", "op:L-3:fwd",
		"op:L+3:fwd", "op:L03:fwd", "op:L00:fwd", "op:3:fwd", "op:l3:fwd", "op:L1000000:fwd",
		"op:L99999999999:fwd", "op:L3:fwdx", "op:L3:FWD", "op:L3:fwd ", "op:L3:fwd:", "a:b:L3:fwd",
		"op:L3:L4:fwd", "fill:ones", "lspo:overflow", "matmul:L3:chain", "o p:fwd", "op,x:fwd",
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx:fwd", "op::fwd", "op:L3::fwd", "op:Lx:fwd",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		struct lspo_tag tag;
		memset(&tag, 0x5a, sizeof(tag));
		CHECK(lspo_tag_parse(bad[i], &tag) == LSPO_EINVAL, "'%s' parsed as a tag", bad[i]);
		CHECK(tag.op[0] == 0 && tag.layer == LSPO_TAG_STEP && tag.stage == LSPO_STAGE_NONE,
		      "'%s': rejected but the tag is not cleared", bad[i]);
	}
	struct lspo_tag tag;
	CHECK(lspo_tag_parse(NULL, &tag) == LSPO_EINVAL && tag.stage == LSPO_STAGE_NONE, "NULL name");
}

/* Deterministic op names: "op<i>" or longer ones, all in the alphabet. */
static void op_name(int i, char *buf, size_t len)
{
	static const char *const base[] = { "matmul", "layernorm", "attention", "residual", "gelu",
	                                    "project_fwd", "project_bwd", "proj_apply", "subspace_adam",
	                                    "cast", "fill", "sumsq", "adamw", "rms.norm-x" };
	snprintf(buf, len, "%s%d", base[i % 14], i / 14);
}

static void test_table(void)
{
	struct lspo_tags *t;
	CHECK(lspo_tags_create(&t) == LSPO_OK && t, "create");
	if (!t)
		return;
	CHECK(lspo_tags_count(t) == 0, "fresh table has %zu names", lspo_tags_count(t));
	CHECK(lspo_tags_count(NULL) == 0, "NULL table");

	/* 28 ops x 100 layers x 4 stages + 28 ops x 12 step-level = 11536 names. */
	enum { NOPS = 28, NLAYERS = 100, NST = 4 };
	static const enum lspo_stage sts[NST] = { LSPO_STAGE_FWD, LSPO_STAGE_BWD, LSPO_STAGE_UPD,
	                                          LSPO_STAGE_RECOMPUTE };
	const size_t nlayer_names = (size_t)NOPS * NLAYERS * NST;
	const size_t n = nlayer_names + (size_t)NOPS * (LSPO_NSTAGES - 1);
	CHECK(n >= 10000, "only %zu names", n);
	const char **ptr = calloc(n, sizeof(*ptr));
	char (*copy)[LSPO_TAG_NAME_MAX] = calloc(n, sizeof(*copy));
	if (!ptr || !copy) {
		fprintf(stderr, "out of memory\n");
		exit(TEST_ERROR);
	}
	size_t k = 0;
	int fails = 0;
	for (int o = 0; o < NOPS; o++) {
		char op[32];
		op_name(o, op, sizeof(op));
		for (int l = 0; l < NLAYERS; l++)
			for (int s = 0; s < NST; s++, k++) {
				if (lspo_tags_name(t, op, l, sts[s], &ptr[k]) || !ptr[k]) {
					fails++;
					continue;
				}
				snprintf(copy[k], sizeof(copy[k]), "%s", ptr[k]);
			}
	}
	for (int o = 0; o < NOPS; o++) {
		char op[32];
		op_name(o, op, sizeof(op));
		for (int s = 1; s < LSPO_NSTAGES; s++, k++) {
			if (lspo_tags_name(t, op, -1, (enum lspo_stage)s, &ptr[k]) || !ptr[k]) {
				fails++;
				continue;
			}
			snprintf(copy[k], sizeof(copy[k]), "%s", ptr[k]);
		}
	}
	CHECK(fails == 0, "%d names failed", fails);
	CHECK(lspo_tags_count(t) == n, "%zu distinct names, expected %zu", lspo_tags_count(t), n);

	/* Every string is still where it was and still says the same, every
	 * text gives back the same pointer, and each parses to its tag. */
	int moved = 0, changed = 0, unparsed = 0;
	k = 0;
	for (int o = 0; o < NOPS; o++) {
		char op[32];
		op_name(o, op, sizeof(op));
		for (int l = 0; l < NLAYERS; l++)
			for (int s = 0; s < NST; s++, k++) {
				const char *again = NULL;
				lspo_tags_name(t, op, l, sts[s], &again);
				moved += again != ptr[k];
				changed += !ptr[k] || strcmp(ptr[k], copy[k]) != 0;
				struct lspo_tag tag;
				unparsed += lspo_tag_parse(ptr[k], &tag) != LSPO_OK || strcmp(tag.op, op) != 0 ||
				            tag.layer != l || tag.stage != sts[s];
			}
	}
	for (; k < n; k++) {
		const char *again = NULL;
		lspo_tags_intern(t, copy[k], &again);   /* the same text by the other door */
		moved += again != ptr[k];
		changed += !ptr[k] || strcmp(ptr[k], copy[k]) != 0;
		struct lspo_tag tag;
		unparsed += lspo_tag_parse(ptr[k], &tag) != LSPO_OK || tag.layer != LSPO_TAG_STEP;
	}
	CHECK(moved == 0, "%d names came back at another address", moved);
	CHECK(changed == 0, "%d strings changed while the table grew", changed);
	CHECK(unparsed == 0, "%d interned names do not parse back", unparsed);
	CHECK(lspo_tags_count(t) == n, "lookups added names: %zu", lspo_tags_count(t));
	size_t distinct = 0;
	for (size_t i = 1; i < n; i++)
		distinct += ptr[i] != ptr[i - 1];
	CHECK(distinct == n - 1, "neighbouring names share a pointer");

	/* Arbitrary strings (the trace's copies) and invalid requests. */
	const char *a = NULL, *b = NULL, *c = NULL;
	CHECK(lspo_tags_intern(t, "fill:ones", &a) == LSPO_OK && a && strcmp(a, "fill:ones") == 0, "intern");
	CHECK(lspo_tags_intern(t, "fill:ones", &b) == LSPO_OK && b == a, "intern twice");
	CHECK(lspo_tags_intern(t, "", &c) == LSPO_OK && c && c[0] == 0, "empty string");
	char big[10000];
	memset(big, 'z', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	CHECK(lspo_tags_intern(t, big, &c) == LSPO_OK && c && strcmp(c, big) == 0, "string above a chunk");
	size_t before = lspo_tags_count(t);
	CHECK(before == n + 3, "count after interning 3 strings: %zu", before);
	CHECK(lspo_tags_name(t, "bad op", 1, LSPO_STAGE_FWD, &c) == LSPO_EINVAL && c == NULL, "bad op");
	CHECK(lspo_tags_name(t, "op", 1, LSPO_STAGE_NONE, &c) == LSPO_EINVAL && c == NULL, "bad stage");
	CHECK(lspo_tags_name(t, "op", LSPO_TAG_MAX_LAYER + 1, LSPO_STAGE_FWD, &c) == LSPO_EINVAL, "bad layer");
	CHECK(lspo_tags_intern(t, NULL, &c) == LSPO_EINVAL && c == NULL, "NULL string");
	CHECK(lspo_tags_count(t) == before, "failed calls changed the table");
	CHECK(strcmp(ptr[0], copy[0]) == 0 && strcmp(ptr[n - 1], copy[n - 1]) == 0, "strings intact");

	/* A second table is independent. */
	struct lspo_tags *t2;
	const char *x = NULL;
	CHECK(lspo_tags_create(&t2) == LSPO_OK, "second table");
	CHECK(lspo_tags_name(t2, "matmul", 3, LSPO_STAGE_BWD, &x) == LSPO_OK && x && strcmp(x, "matmul:L3:bwd") == 0,
	      "second table name");
	lspo_tags_name(t, "matmul", 3, LSPO_STAGE_BWD, &a);
	CHECK(x != a && lspo_tags_count(t2) == 1, "tables share strings");
	lspo_tags_free(t2);
	lspo_tags_free(t);
	lspo_tags_free(NULL);
	free(ptr);
	free(copy);
}

int main(void)
{
	test_stages();
	test_format_parse();
	test_table();
	return test_finish("test_tag");
}
