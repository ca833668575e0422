/*
 * data.c - llm.c token shards (256 int32 header: magic, version, token count;
 * then the tokens: magic 20240520 version 1 = uint16, magic 20240801
 * version 7 = uint32, as llm.c's GPT-2 and Llama-3 shards), optional loss
 * masks beside a shard (SHARD.mask), a streaming shard writer that picks the
 * token width from the vocabulary, byte-level tokenisation, and a seeded
 * batch loader over a range of a shard.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "mapped_file.h"
#include "atomic_file.h"

#define SHARD_MAGIC 20240520        /* llm.c GPT-2 shards: uint16 tokens */
#define SHARD_VERSION 1
#define SHARD32_MAGIC 20240801      /* llm.c Llama-3 shards: uint32 tokens */
#define SHARD32_VERSION 7
#define SHARD_HEADER_INTS 256
#define SHARD_HEADER_BYTES (SHARD_HEADER_INTS * 4)
#define MASK_MAGIC 20241130         /* lspo loss masks, beside a shard (SHARD.mask) */
#define MASK_VERSION 1

struct lspo_shard {
	char *path;
	void *map;
	size_t map_size;
	const void *tokens;       /* (n) uint16 or uint32 inside the mapping */
	int width;                /* bytes per token: 2 or 4 */
	size_t n;
	char *mask_path;          /* NULL if the shard has no mask file */
	void *mask_map;
	size_t mask_map_size;
	const uint8_t *mask;      /* (n) 1 = the token counts as a target, or NULL */
};

void lspo_shard_close(struct lspo_shard *s)
{
	if (!s)
		return;
	mapped_file_close(s->map, s->map_size);
	mapped_file_close(s->mask_map, s->mask_map_size);
	free(s->mask_path);
	free(s->path);
	free(s);
}

size_t lspo_shard_ntokens(const struct lspo_shard *s) { return s->n; }
const uint16_t *lspo_shard_tokens(const struct lspo_shard *s)
{
	return s->width == 2 ? s->tokens : NULL;
}
const uint32_t *lspo_shard_tokens32(const struct lspo_shard *s)
{
	return s->width == 4 ? s->tokens : NULL;
}
int lspo_shard_token_bytes(const struct lspo_shard *s) { return s->width; }
const char *lspo_shard_path(const struct lspo_shard *s) { return s->path; }
const uint8_t *lspo_shard_mask(const struct lspo_shard *s) { return s->mask; }

static inline uint32_t token_at(const struct lspo_shard *s, size_t i)
{
	return s->width == 2 ? ((const uint16_t *)s->tokens)[i] : ((const uint32_t *)s->tokens)[i];
}

uint32_t lspo_shard_token(const struct lspo_shard *s, size_t i) { return token_at(s, i); }

static int check_header(const char *path, const int32_t *h, size_t size, size_t *n, int *width)
{
	if (h[0] == SHARD_MAGIC) {
		if (h[1] != SHARD_VERSION)
			LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'version' (int32 1) is %d, expected %d "
			          "(uint16 tokens) for magic %d", path, h[1], SHARD_VERSION, SHARD_MAGIC);
		*width = 2;
	} else if (h[0] == SHARD32_MAGIC) {
		if (h[1] != SHARD32_VERSION)
			LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'version' (int32 1) is %d, expected %d "
			          "(uint32 tokens) for magic %d", path, h[1], SHARD32_VERSION, SHARD32_MAGIC);
		*width = 4;
	} else {
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'magic' (int32 0) is %d, expected %d (llm.c "
		          "uint16 token shard) or %d (uint32 token shard)", path, h[0], SHARD_MAGIC,
		          SHARD32_MAGIC);
	}
	if (h[2] <= 0)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'ntokens' (int32 2) is %d: %s", path, h[2],
		          h[2] == 0 ? "the shard is empty" : "expected a positive token count");
	size_t want = SHARD_HEADER_BYTES + (size_t)*width * (size_t)h[2];
	if (size != want)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'ntokens' says %d tokens (%zu bytes), but the "
		          "file has %zu bytes%s", path, h[2], want, size,
		          size < want ? " (truncated)" : " (trailing bytes)");
	*n = (size_t)h[2];
	return LSPO_OK;
}

static int open_mask(struct lspo_shard *s)
{
	size_t len = strlen(s->path);
	s->mask_path = malloc(len + 6);
	if (!s->mask_path)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", s->path);
	memcpy(s->mask_path, s->path, len);
	memcpy(s->mask_path + len, ".mask", 6);
	if (access(s->mask_path, F_OK) != 0) {
		free(s->mask_path);
		s->mask_path = NULL;
		return LSPO_OK;
	}
	int rc = mapped_file_open(s->mask_path, SHARD_HEADER_BYTES, "short header (a loss mask "
	                          "starts with a 1024-byte header)", &s->mask_map, &s->mask_map_size);
	if (rc)
		return rc;
	const int32_t *h = s->mask_map;
	if (h[0] != MASK_MAGIC)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'magic' (int32 0) is %d, expected %d (lspo "
		          "loss mask)", s->mask_path, h[0], MASK_MAGIC);
	if (h[1] != MASK_VERSION)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'version' (int32 1) is %d, expected %d",
		          s->mask_path, h[1], MASK_VERSION);
	if (h[2] < 0 || (size_t)h[2] != s->n)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header field 'ntokens' (int32 2) is %d, but its shard %s "
		          "has %zu tokens", s->mask_path, h[2], s->path, s->n);
	if (s->mask_map_size != SHARD_HEADER_BYTES + s->n)
		LSPO_FAIL(LSPO_EFORMAT, "%s: %zu bytes, expected %zu (header and one byte per token)%s",
		          s->mask_path, s->mask_map_size, SHARD_HEADER_BYTES + s->n,
		          s->mask_map_size < SHARD_HEADER_BYTES + s->n ? " (truncated)" : "");
	s->mask = (const uint8_t *)s->mask_map + SHARD_HEADER_BYTES;
	for (size_t i = 0; i < s->n; i++)
		if (s->mask[i] > 1)
			LSPO_FAIL(LSPO_EFORMAT, "%s: byte %u at position %zu: a mask holds 0 or 1",
			          s->mask_path, s->mask[i], i);
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
		rc = check_header(path, s->map, s->map_size, &s->n, &s->width);
	if (!rc) {
		s->tokens = (const char *)s->map + SHARD_HEADER_BYTES;
		rc = open_mask(s);
	}
	if (rc) {
		lspo_shard_close(s);
		return rc;
	}
	*out = s;
	return LSPO_OK;
}

static void make_header(int32_t *h, size_t n, int width)
{
	memset(h, 0, SHARD_HEADER_BYTES);
	h[0] = width == 4 ? SHARD32_MAGIC : SHARD_MAGIC;
	h[1] = width == 4 ? SHARD32_VERSION : SHARD_VERSION;
	h[2] = (int32_t)n;
}

int lspo_shard_write(const char *path, const uint16_t *tokens, size_t n)
{
	if (n == 0 || n > INT32_MAX || !tokens)
		LSPO_FAIL(LSPO_EINVAL, "%s: a shard holds 1 to %d tokens, asked to write %zu", path,
		          INT32_MAX, n);
	int32_t h[SHARD_HEADER_INTS];
	make_header(h, n, 2);
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

/* ---------------------------------------------------------------------- */
/* streaming shard writer (any vocabulary, optional loss mask)            */

struct lspo_shard_writer {
	struct atomic_file af, mf;
	int width, masked, failed;
	uint32_t vocab_size;
	size_t n;
	char *path;
};

int lspo_shard_writer_open(const char *path, uint32_t vocab_size, int masked,
                           struct lspo_shard_writer **out)
{
	*out = NULL;
	if (vocab_size == 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: vocab_size must be positive", path);
	struct lspo_shard_writer *w = calloc(1, sizeof(*w));
	if (!w || !(w->path = strdup(path))) {
		free(w);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	w->width = vocab_size > 65535 ? 4 : 2;
	w->vocab_size = vocab_size;
	w->masked = masked;
	int32_t h[SHARD_HEADER_INTS];
	make_header(h, 0, w->width);
	int rc = atomic_open(path, &w->af);
	if (!rc && (rc = atomic_write(&w->af, h, sizeof(h))))
		atomic_abort(&w->af);
	if (!rc && masked) {
		size_t len = strlen(path);
		char *mp = malloc(len + 6);
		if (!mp) {
			atomic_abort(&w->af);
			rc = LSPO_ENOMEM;
			lspo_error("%s: out of memory", path);
		} else {
			memcpy(mp, path, len);
			memcpy(mp + len, ".mask", 6);
			rc = atomic_open(mp, &w->mf);
			free(mp);
			if (!rc && (rc = atomic_write(&w->mf, h, sizeof(h))))
				atomic_abort(&w->mf);
			if (rc)
				atomic_abort(&w->af);
		}
	}
	if (rc) {
		free(w->path);
		free(w);
		return rc;
	}
	*out = w;
	return LSPO_OK;
}

int lspo_shard_writer_add(struct lspo_shard_writer *w, const uint32_t *ids, size_t n, int target)
{
	if (w->failed)
		LSPO_FAIL(LSPO_EINVAL, "%s: the writer failed before", w->path);
	if (n > (size_t)INT32_MAX - w->n) {
		w->failed = 1;
		LSPO_FAIL(LSPO_EINVAL, "%s: more than %d tokens: too many for one shard", w->path,
		          INT32_MAX);
	}
	uint16_t b16[4096];
	uint8_t bm[4096];
	memset(bm, target ? 1 : 0, sizeof(bm));
	int rc = LSPO_OK;
	for (size_t i = 0; i < n && !rc; i += 4096) {
		size_t k = n - i < 4096 ? n - i : 4096;
		for (size_t j = 0; j < k; j++)
			if (ids[i + j] >= w->vocab_size) {
				w->failed = 1;
				LSPO_FAIL(LSPO_EINVAL, "%s: token id %u at position %zu is >= vocab_size %u",
				          w->path, ids[i + j], w->n + i + j, w->vocab_size);
			}
		if (w->width == 2) {
			for (size_t j = 0; j < k; j++)
				b16[j] = (uint16_t)ids[i + j];
			rc = atomic_write(&w->af, b16, k * 2);
		} else {
			rc = atomic_write(&w->af, ids + i, k * 4);
		}
		if (!rc && w->masked)
			rc = atomic_write(&w->mf, bm, k);
	}
	if (rc)
		w->failed = 1;
	else
		w->n += n;
	return rc;
}

size_t lspo_shard_writer_ntokens(const struct lspo_shard_writer *w) { return w->n; }

static int finish_file(struct atomic_file *af, const int32_t *h)
{
	if (fseek(af->fp, 0, SEEK_SET) != 0) {
		lspo_error("%s: seek failed: %s", af->path, strerror(errno));
		atomic_abort(af);
		return LSPO_EIO;
	}
	int rc = atomic_write(af, h, SHARD_HEADER_BYTES);
	if (rc) {
		atomic_abort(af);
		return rc;
	}
	return atomic_commit(af);
}

int lspo_shard_writer_close(struct lspo_shard_writer *w, int commit)
{
	if (!w)
		return LSPO_OK;
	int rc = LSPO_OK;
	if (commit && !w->failed && w->n == 0) {
		lspo_error("%s: no tokens: a shard needs at least one", w->path);
		rc = LSPO_EINVAL;
	}
	if (!commit || w->failed || rc) {
		atomic_abort(&w->af);
		if (w->masked)
			atomic_abort(&w->mf);
		if (commit && !rc)
			rc = LSPO_EINVAL;
	} else {
		int32_t h[SHARD_HEADER_INTS];
		if (w->masked) {
			make_header(h, w->n, 2);
			h[0] = MASK_MAGIC;
			h[1] = MASK_VERSION;
			rc = finish_file(&w->mf, h);
		} else {
			/* an unmasked shard must not pick up the mask of an earlier one */
			size_t len = strlen(w->path);
			char *mp = malloc(len + 6);
			if (mp) {
				memcpy(mp, w->path, len);
				memcpy(mp + len, ".mask", 6);
				if (unlink(mp) != 0 && errno != ENOENT) {
					lspo_error("%s: cannot remove the stale mask: %s", mp, strerror(errno));
					rc = LSPO_EIO;
				}
				free(mp);
			}
		}
		make_header(h, w->n, w->width);
		if (rc)
			atomic_abort(&w->af);
		else
			rc = finish_file(&w->af, h);
	}
	free(w->path);
	free(w);
	return rc;
}

int lspo_shard_check_vocab(const struct lspo_shard *s, int vocab_size)
{
	if (vocab_size <= 0)
		LSPO_FAIL(LSPO_EINVAL, "%s: vocab_size must be positive, got %d", s->path, vocab_size);
	uint32_t worst = 0;
	for (size_t i = 0; i < s->n; i++) {
		uint32_t t = token_at(s, i);
		worst = t > worst ? t : worst;
	}
	if (worst < (uint32_t)vocab_size)
		return LSPO_OK;
	size_t i = 0;
	while (token_at(s, i) < (uint32_t)vocab_size)
		i++;
	LSPO_FAIL(LSPO_EFORMAT, "%s: token id %u at position %zu is >= vocab_size %d (largest id in "
	          "the shard: %u)", s->path, token_at(s, i), i, vocab_size, worst);
}

int lspo_tokenize_bytes(const char *in_path, const char *out_path, size_t *ntokens)
{
	FILE *in = fopen(in_path, "rb");
	if (!in)
		LSPO_FAIL(LSPO_EIO, "%s: cannot open: %s", in_path, strerror(errno));
	struct lspo_shard_writer *w;
	int rc = lspo_shard_writer_open(out_path, 256, 0, &w);
	if (rc) {
		fclose(in);
		return rc;
	}
	unsigned char buf[1 << 14];
	uint32_t tok[1 << 14];
	size_t got;
	while (!rc && (got = fread(buf, 1, sizeof(buf), in)) > 0) {
		for (size_t i = 0; i < got; i++)
			tok[i] = buf[i];
		rc = lspo_shard_writer_add(w, tok, got, 1);
	}
	if (!rc && ferror(in)) {
		lspo_error("%s: read error: %s", in_path, strerror(errno));
		rc = LSPO_EIO;
	}
	fclose(in);
	size_t n = lspo_shard_writer_ntokens(w);
	if (!rc && n == 0) {
		lspo_error("%s: empty input: a shard needs at least one token", in_path);
		rc = LSPO_EINVAL;
	}
	int crc = lspo_shard_writer_close(w, !rc);
	rc = rc ? rc : crc;
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

int lspo_loader_next_masked(struct lspo_loader *l, int32_t *inputs, int32_t *targets,
                            uint8_t *mask)
{
	if (!l || !inputs || !targets)
		LSPO_FAIL(LSPO_EINVAL, "lspo_loader_next: NULL argument");
	const struct lspo_shard *s = l->shard;
	size_t T = (size_t)l->T;
	for (int b = 0; b < l->B; b++) {
		if (l->pos == l->nwin) {
			l->epoch++;
			shuffle(l);
		}
		size_t w = l->begin + l->perm[l->pos++] * T;
		int32_t *x = inputs + (size_t)b * T, *y = targets + (size_t)b * T;
		if (s->width == 2) {
			const uint16_t *tok = (const uint16_t *)s->tokens + w;
			for (size_t t = 0; t < T; t++) {
				x[t] = tok[t];
				y[t] = tok[t + 1];
			}
		} else {
			const uint32_t *tok = (const uint32_t *)s->tokens + w;
			for (size_t t = 0; t < T; t++) {
				x[t] = (int32_t)tok[t];
				y[t] = (int32_t)tok[t + 1];
			}
		}
		if (mask) {
			uint8_t *m = mask + (size_t)b * T;
			if (s->mask)
				memcpy(m, s->mask + w + 1, T);   /* the mask of each target's position */
			else
				memset(m, 1, T);
		}
	}
	return LSPO_OK;
}

int lspo_loader_next(struct lspo_loader *l, int32_t *inputs, int32_t *targets)
{
	return lspo_loader_next_masked(l, inputs, targets, NULL);
}

void lspo_loader_free(struct lspo_loader *l)
{
	if (!l)
		return;
	free(l->perm);
	free(l);
}
