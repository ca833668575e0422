/*
 * data.c - llm.c token shards (256 int32 header: magic 20240520, version 1,
 * token count; then uint16 tokens), byte-level tokenisation, and a seeded
 * batch loader over a range of a shard.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mapped_file.h"
#include "atomic_file.h"

#define SHARD_MAGIC 20240520
#define SHARD_VERSION 1
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)

struct lspo_shard {
	char *path;
	void *map;
	size_t map_size;
	const uint16_t *tokens;   /* (n) inside the mapping */
	size_t n;
};

void lspo_shard_close(struct lspo_shard *s)
{
	if (!s)
		return;
	mapped_file_close(s->map, s->map_size);
	free(s->path);
	free(s);
}

size_t lspo_shard_ntokens(const struct lspo_shard *s) { return s->n; }
const uint16_t *lspo_shard_tokens(const struct lspo_shard *s) { return s->tokens; }
const char *lspo_shard_path(const struct lspo_shard *s) { return s->path; }

static int check_header(const char *path, const int32_t *h, size_t size, size_t *n)
{
	if (h[0] != SHARD_MAGIC)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'magic' (int32 0) is %d, expected %d (llm.c "
		          "GPT-2 uint16 token shard)%s", path, h[0], SHARD_MAGIC,
		          h[0] == 20240801 ? "; Llama-3 uint32 shards are not supported" : "");
	if (h[1] != SHARD_VERSION)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'version' (int32 1) is %d, expected %d",
		          path, h[1], SHARD_VERSION);
	if (h[2] <= 0)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'ntokens' (int32 2) is %d: %s", path, h[2],
		          h[2] == 0 ? "the shard is empty" : "expected a positive token count");
	size_t want = SHARD_HEADER_BYTES + 2 * (size_t)h[2];
	if (size != want)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'ntokens' says %d tokens (%zu bytes), but the "
		          "file has %zu bytes%s", path, h[2], want, size,
		          size < want ? " (truncated)" : " (trailing bytes)");
	*n = (size_t)h[2];
	return LSPO_OK;
}

int lspo_shard_open(const char *path, struct lspo_shard **out)
{
	*out = NULL;
	struct lspo_shard *s = calloc(1, sizeof(*s));
	if (!s || !(s->path = strdup(path))) {
		free(s);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	int rc = mapped_file_open(path, SHARD_HEADER_BYTES, "short header (a token shard starts with a "
	                          "1024-byte header)", &s->map, &s->map_size);
	if (!rc)
		rc = check_header(path, s->map, s->map_size, &s->n);
	if (rc) {
		lspo_shard_close(s);
		return rc;
	}
	s->tokens = (const uint16_t *)((const char *)s->map + SHARD_HEADER_BYTES);
	*out = s;
	return LSPO_OK;
}

static void make_header(int32_t *h, size_t n)
{
	memset(h, 0, SHARD_HEADER_BYTES);
	h[0] = SHARD_MAGIC;
	h[1] = SHARD_VERSION;
	h[2] = (int32_t)n;
}

int lspo_shard_write(const char *path, const uint16_t *tokens, size_t n)
{
	if (n == 0 || n > INT32_MAX || !tokens)
		LSPO_FAIL(LSPO_EINVAL, "%s: a shard holds 1 to %d tokens, asked to write %zu", path,
		          INT32_MAX, n);
	int32_t h[SHARD_HEADER_INTS];
	make_header(h, n);
	struct atomic_file af;
	int rc = atomic_open(path, &af);
	if (rc)
		return rc;
	rc = atomic_write(&af, h, sizeof(h));
	if (!rc)
		rc = atomic_write(&af, tokens, n * sizeof(uint16_t));
	if (rc) {
		atomic_abort(&af);
		return rc;
	}
	return atomic_commit(&af);
}

int lspo_shard_check_vocab(const struct lspo_shard *s, int vocab_size)
{
	if (vocab_size <= 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: vocab_size must be positive, got %d", s->path, vocab_size);
	uint16_t worst = 0;
	for (size_t i = 0; i < s->n; i++)
		worst = s->tokens[i] > worst ? s->tokens[i] : worst;
	if ((int)worst < vocab_size)
		return LSPO_OK;
	size_t i = 0;
	while ((int)s->tokens[i] < vocab_size)
		i++;
	LSPO_FAIL(LSPO_EFORMAT, "%s: token id %u at position %zu is >= vocab_size %d (largest id in "
	          "the shard: %u)", s->path, s->tokens[i], i, vocab_size, worst);
}

int lspo_tokenize_bytes(const char *in_path, const char *out_path, size_t *ntokens)
{
	FILE *in = fopen(in_path, "rb");
	if (!in)
		LSPO_FAIL(LSPO_EIO, "%s: cannot open: %s", in_path, strerror(errno));
	struct atomic_file af;
	int rc = atomic_open(out_path, &af);
	if (rc) {
		fclose(in);
		return rc;
	}
	int32_t h[SHARD_HEADER_INTS];
	make_header(h, 0);
	rc = atomic_write(&af, h, sizeof(h));
	unsigned char buf[1 << 14];
	uint16_t tok[1 << 14];
	size_t n = 0, got;
	while (!rc && (got = fread(buf, 1, sizeof(buf), in)) > 0) {
		for (size_t i = 0; i < got; i++)
			tok[i] = buf[i];
		n += got;
		if (n > INT32_MAX) {
			lspo_error("%s: more than %d bytes: too large for one shard", in_path, INT32_MAX);
			rc = LSPO_EINVAL;
		} else {
			rc = atomic_write(&af, tok, got * sizeof(uint16_t));
		}
	}
	if (!rc && ferror(in)) {
		lspo_error("%s: read error: %s", in_path, strerror(errno));
		rc = LSPO_EIO;
	}
	fclose(in);
	if (!rc && n == 0) {
		lspo_error("%s: empty input: a shard needs at least one token", in_path);
		rc = LSPO_EINVAL;
	}
	if (!rc) {
		make_header(h, n);
		if (fseek(af.fp, 0, SEEK_SET) != 0) {
			lspo_error("%s: seek failed: %s", out_path, strerror(errno));
			rc = LSPO_EIO;
		} else {
			rc = atomic_write(&af, h, sizeof(h));
		}
	}
	if (rc) {
		atomic_abort(&af);
		return rc;
	}
	rc = atomic_commit(&af);
	if (!rc && ntokens)
		*ntokens = n;
	return rc;
}

void lspo_shard_split(const struct lspo_shard *s, double val_fraction, size_t *train_end)
{
	double f = val_fraction > 0 ? (val_fraction < 1 ? val_fraction : 1) : 0;  /* NaN -> 0 */
	size_t nval = (size_t)llround(f * (double)s->n);
	*train_end = s->n - (nval < s->n ? nval : s->n);
}

/* ---------------------------------------------------------------------- */
/* batch loader                                                           */

struct lspo_loader {
	const struct lspo_shard *shard;
	int B, T;
	uint64_t seed;
	size_t begin;
	size_t nwin;      /* windows per epoch: start begin + k T, k < nwin */
	size_t *perm;     /* (nwin) this epoch's order */
	size_t pos;       /* next index into perm */
	uint64_t epoch;
};

static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Fisher-Yates permutation of the windows, from (seed, epoch) only. */
static void shuffle(struct lspo_loader *l)
{
	uint64_t state = mix64(l->seed) ^ mix64(0x65706f6368000000ull + l->epoch);
	for (size_t i = 0; i < l->nwin; i++)
		l->perm[i] = i;
	for (size_t i = l->nwin; i > 1; i--) {
		state = mix64(state);
		size_t j = (size_t)(((unsigned __int128)state * i) >> 64);   /* uniform in [0, i) */
		size_t t = l->perm[i - 1];
		l->perm[i - 1] = l->perm[j];
		l->perm[j] = t;
	}
	l->pos = 0;
}

int lspo_loader_create(const struct lspo_shard *s, int B, int T, uint64_t seed, size_t begin,
                       size_t end, struct lspo_loader **out)
{
	*out = NULL;
	if (B < 1 || T < 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: batch size B (%d) and sequence length T (%d) must be positive",
		          s->path, B, T);
	if (begin > end || end > s->n)
		LSPO_FAIL(LSPO_EINVAL, "%s: token range [%zu, %zu) is not inside the shard's %zu tokens",
		          s->path, begin, end, s->n);
	if (end - begin < (size_t)T + 1)
		LSPO_FAIL(LSPO_EINVAL, "%s: token range [%zu, %zu) holds %zu tokens, fewer than T + 1 = %d",
		          s->path, begin, end, end - begin, T + 1);
	struct lspo_loader *l = calloc(1, sizeof(*l));
	size_t nwin = (end - begin - 1) / (size_t)T;
	if (l)
		l->perm = malloc(nwin * sizeof(*l->perm));
	if (!l || !l->perm) {
		free(l);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory for a loader of %zu windows", s->path, nwin);
	}
	l->shard = s;
	l->B = B;
	l->T = T;
	l->seed = seed;
	l->begin = begin;
	l->nwin = nwin;
	shuffle(l);
	*out = l;
	return LSPO_OK;
}

int lspo_loader_next(struct lspo_loader *l, int32_t *inputs, int32_t *targets)
{
	if (!l || !inputs || !targets)
		LSPO_FAIL(LSPO_EINVAL, "lspo_loader_next: NULL argument");
	const uint16_t *tok = l->shard->tokens;
	size_t T = (size_t)l->T;
	for (int b = 0; b < l->B; b++) {
		if (l->pos == l->nwin) {
			l->epoch++;
			shuffle(l);
		}
		const uint16_t *w = tok + l->begin + l->perm[l->pos++] * T;
		int32_t *x = inputs + (size_t)b * T, *y = targets + (size_t)b * T;
		for (size_t t = 0; t < T; t++) {
			x[t] = w[t];
			y[t] = w[t + 1];
		}
	}
	return LSPO_OK;
}

void lspo_loader_free(struct lspo_loader *l)
{
	if (!l)
		return;
	free(l->perm);
	free(l);
}
