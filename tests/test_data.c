/*
 * test_data.c - token shards: write/read round trip and the exact llm.c byte
 * layout, byte-level tokenisation, vocabulary check, train/validation split,
 * the batch loader (determinism per seed, targets = inputs shifted by one,
 * window coverage per epoch), and malformed shards (status and message).
 */
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "st_craft.h"

static const char *tmp;

static const char *tpath(const char *name)
{
	static char path[4][4300];
	static int k;
	k = (k + 1) % 4;
	snprintf(path[k], sizeof(path[k]), "%s/%s", tmp, name);
	return path[k];
}


static void test_round_trip(void)
{
	size_t n = 5000;
	uint16_t *tok = malloc(n * 2);
	uint64_t s = 99;
	for (size_t i = 0; i < n; i++)
		tok[i] = (uint16_t)((test_uniform(&s) + 1.0f) * 25000.0f);
	tok[0] = 65535;
	const char *path = tpath("rt.bin");
	CHECK(lspo_shard_write(path, tok, n) == LSPO_OK, "write");
	/* the exact llm.c layout: 256 int32 header then uint16 tokens */
	FILE *f = fopen(path, "rb");
	int32_t h[256];
	CHECK(f && fread(h, 4, 256, f) == 256, "read header");
	CHECK(h[0] == 20240520 && h[1] == 1 && h[2] == (int32_t)n, "header %d %d %d", h[0], h[1], h[2]);
	int zeros = 1;
	for (int i = 3; i < 256; i++)
		zeros &= h[i] == 0;
	CHECK(zeros, "unused header slots must be zero");
	if (f)
		fclose(f);
	struct stat st;
	stat(path, &st);
	CHECK((size_t)st.st_size == 1024 + 2 * n, "file size %lld", (long long)st.st_size);
	struct lspo_shard *sh;
	CHECK(lspo_shard_open(path, &sh) == LSPO_OK, "open");
	if (sh) {
		CHECK(lspo_shard_ntokens(sh) == n, "ntokens %zu", lspo_shard_ntokens(sh));
		CHECK(memcmp(lspo_shard_tokens(sh), tok, n * 2) == 0, "tokens round trip");
		CHECK(!strcmp(lspo_shard_path(sh), path), "path");
		CHECK(lspo_shard_check_vocab(sh, 65536) == LSPO_OK, "all ids < 65536");
		lspo_shard_close(sh);
	}
	lspo_shard_close(NULL);
	EXPECT(LSPO_EINVAL, lspo_shard_write(tpath("zero.bin"), tok, 0), "zero.bin");
	free(tok);
}

static void test_tokenize(void)
{
	unsigned char text[700];
	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (unsigned char)(i * 7 + 3);   /* every byte value, NULs included */
	FILE *f = fopen(tpath("in.txt"), "wb");
	fwrite(text, 1, sizeof(text), f);
	fclose(f);
	size_t n = 0;
	CHECK(lspo_tokenize_bytes(tpath("in.txt"), tpath("bytes.bin"), &n) == LSPO_OK, "tokenize");
	CHECK(n == sizeof(text), "n %zu", n);
	struct lspo_shard *sh;
	CHECK(lspo_shard_open(tpath("bytes.bin"), &sh) == LSPO_OK, "open");
	if (sh) {
		const uint16_t *t = lspo_shard_tokens(sh);
		size_t bad = 0;
		for (size_t i = 0; i < sizeof(text); i++)
			bad += t[i] != text[i];
		CHECK(lspo_shard_ntokens(sh) == sizeof(text) && bad == 0, "byte tokens differ: %zu", bad);
		CHECK(lspo_shard_check_vocab(sh, 256) == LSPO_OK, "byte ids < 256");
		lspo_shard_close(sh);
	}
	/* larger than the internal buffer */
	size_t big = 100000;
	unsigned char *b = malloc(big);
	for (size_t i = 0; i < big; i++)
		b[i] = (unsigned char)(i % 251);
	f = fopen(tpath("big.txt"), "wb");
	fwrite(b, 1, big, f);
	fclose(f);
	CHECK(lspo_tokenize_bytes(tpath("big.txt"), tpath("big.bin"), &n) == LSPO_OK && n == big,
	      "tokenize big");
	if (lspo_shard_open(tpath("big.bin"), &sh) == LSPO_OK) {
		size_t bad = 0;
		for (size_t i = 0; i < big; i++)
			bad += lspo_shard_tokens(sh)[i] != b[i];
		CHECK(bad == 0, "big: %zu tokens differ", bad);
		lspo_shard_close(sh);
	}
	free(b);
	write_text(tpath("empty.txt"), "");
	EXPECT(LSPO_EINVAL, lspo_tokenize_bytes(tpath("empty.txt"), tpath("empty.bin"), &n),
	       "empty.txt", "empty");
	struct stat st;
	CHECK(stat(tpath("empty.bin"), &st) != 0, "no output for an empty input");
	EXPECT(LSPO_EIO, lspo_tokenize_bytes(tpath("nonexistent.txt"), tpath("x.bin"), &n),
	       "nonexistent.txt");
}

static struct lspo_shard *ramp_shard(const char *name, size_t n)
{
	uint16_t *tok = malloc(n * 2);
	for (size_t i = 0; i < n; i++)
		tok[i] = (uint16_t)i;   /* the token at position p is p: windows are easy to read */
	lspo_shard_write(tpath(name), tok, n);
	free(tok);
	struct lspo_shard *sh = NULL;
	CHECK(lspo_shard_open(tpath(name), &sh) == LSPO_OK, "open %s", name);
	return sh;
}

static void test_split(void)
{
	struct lspo_shard *sh = ramp_shard("split.bin", 1000);
	size_t e;
	lspo_shard_split(sh, 0.1, &e);
	CHECK(e == 900, "10%% validation: train_end %zu", e);
	lspo_shard_split(sh, 0.0, &e);
	CHECK(e == 1000, "no validation: %zu", e);
	lspo_shard_split(sh, 1.0, &e);
	CHECK(e == 0, "all validation: %zu", e);
	lspo_shard_split(sh, 2.5, &e);
	CHECK(e == 0, "clamped above: %zu", e);
	lspo_shard_split(sh, -1, &e);
	CHECK(e == 1000, "clamped below: %zu", e);
	lspo_shard_split(sh, 0.0333, &e);
	CHECK(e == 967, "rounded: %zu", e);
	lspo_shard_close(sh);
}

static void test_loader(void)
{
	const size_t n = 2000;
	const int B = 4, T = 16;
	struct lspo_shard *sh = ramp_shard("ramp.bin", n);
	if (!sh)
		return;
	size_t begin = 100, end = 1700;
	size_t nwin = (end - begin - 1) / T;   /* 99 windows per epoch */
	struct lspo_loader *a, *b, *c;
	CHECK(lspo_loader_create(sh, B, T, 5, begin, end, &a) == LSPO_OK, "create a");
	CHECK(lspo_loader_create(sh, B, T, 5, begin, end, &b) == LSPO_OK, "create b");
	CHECK(lspo_loader_create(sh, B, T, 6, begin, end, &c) == LSPO_OK, "create c");
	int32_t x[4 * 16], y[4 * 16], x2[4 * 16], y2[4 * 16], x3[4 * 16], y3[4 * 16];
	int nbatch = 3 * (int)nwin / B + 2;   /* a bit more than three epochs */
	int same_as_c = 0, shifted = 1, in_range = 1, aligned = 1, ab_equal = 1;
	unsigned *seen = calloc(nwin, sizeof(*seen));
	size_t drawn = 0;
	for (int k = 0; k < nbatch; k++) {
		lspo_loader_next(a, x, y);
		lspo_loader_next(b, x2, y2);
		lspo_loader_next(c, x3, y3);
		ab_equal &= !memcmp(x, x2, sizeof(x)) && !memcmp(y, y2, sizeof(y));
		same_as_c += !memcmp(x, x3, sizeof(x));
		for (int r = 0; r < B; r++) {
			const int32_t *xi = x + r * T, *yi = y + r * T;
			for (int t = 0; t < T; t++) {
				shifted &= yi[t] == xi[t] + 1 && (t == 0 || xi[t] == xi[t - 1] + 1);
				in_range &= xi[t] >= (int32_t)begin && yi[t] < (int32_t)end;
			}
			aligned &= (xi[0] - (int32_t)begin) % T == 0;
			if (drawn < 3 * nwin)   /* count window starts over exactly three epochs */
				seen[(size_t)(xi[0] - (int32_t)begin) / (size_t)T]++;
			drawn++;
		}
	}
	CHECK(ab_equal, "same seed must give the same batches");
	CHECK(same_as_c < nbatch / 4, "seeds 5 and 6 gave %d identical batches of %d", same_as_c, nbatch);
	CHECK(shifted, "targets must be the inputs shifted by one (consecutive tokens)");
	CHECK(in_range, "windows must stay inside [begin, end)");
	CHECK(aligned, "window starts must be begin + k T");
	size_t bad = 0;
	for (size_t w = 0; w < nwin; w++)
		bad += seen[w] != 3;
	CHECK(bad == 0, "every window must appear once per epoch (%zu wrong counts)", bad);
	/* epochs are permuted differently: the first windows of epoch 0 and 1 differ */
	struct lspo_loader *d;
	lspo_loader_create(sh, (int)nwin, T, 5, begin, end, &d);
	int32_t *e0 = malloc(nwin * T * 4), *e1 = malloc(nwin * T * 4), *ty = malloc(nwin * T * 4);
	lspo_loader_next(d, e0, ty);
	lspo_loader_next(d, e1, ty);
	CHECK(memcmp(e0, e1, nwin * T * 4) != 0, "each epoch must draw a fresh permutation");
	int sequential = 1;
	for (size_t w = 0; w < nwin; w++)
		sequential &= e0[w * T] == (int32_t)(begin + w * T);
	CHECK(!sequential, "windows must be shuffled");
	free(e0);
	free(e1);
	free(ty);
	free(seen);
	lspo_loader_free(a);
	lspo_loader_free(b);
	lspo_loader_free(c);
	lspo_loader_free(d);
	lspo_loader_free(NULL);

	/* the smallest range: exactly T + 1 tokens, one window */
	CHECK(lspo_loader_create(sh, 2, T, 1, 10, 10 + T + 1, &a) == LSPO_OK, "T + 1 tokens");
	lspo_loader_next(a, x, y);
	CHECK(x[0] == 10 && y[T - 1] == 10 + T && x[T] == 10, "one window, repeated");
	lspo_loader_free(a);
	/* validation range = the tail */
	size_t tr;
	lspo_shard_split(sh, 0.1, &tr);
	CHECK(lspo_loader_create(sh, 1, T, 1, tr, n, &a) == LSPO_OK, "validation loader");
	lspo_loader_next(a, x, y);
	CHECK(x[0] >= (int32_t)tr, "validation window starts in the tail");
	lspo_loader_free(a);

	EXPECT(LSPO_EINVAL, lspo_loader_create(sh, B, T, 1, 10, 10 + T, &a), "ramp.bin", "T + 1");
	CHECK(a == NULL, "no loader on error");
	EXPECT(LSPO_EINVAL, lspo_loader_create(sh, B, T, 1, 10, n + 1, &a), "ramp.bin", "not inside");
	EXPECT(LSPO_EINVAL, lspo_loader_create(sh, 0, T, 1, 0, n, &a), "ramp.bin", "B");
	EXPECT(LSPO_EINVAL, lspo_loader_create(sh, B, 0, 1, 0, n, &a), "ramp.bin", "T");
	lspo_shard_close(sh);
}

/* Writes a shard file with header (magic, version, count) and nbytes of tokens. */
static const char *bad_shard(const char *name, int32_t magic, int32_t version, int32_t count,
                             size_t ntok)
{
	const char *path = tpath(name);
	FILE *f = fopen(path, "wb");
	int32_t h[256] = { magic, version, count };
	fwrite(h, 4, 256, f);
	uint16_t t = 7;
	for (size_t i = 0; i < ntok; i++)
		fwrite(&t, 2, 1, f);
	fclose(f);
	return path;
}

static void test_bad_shards(void)
{
	struct lspo_shard *sh = (struct lspo_shard *)1;
	EXPECT(LSPO_EIO, lspo_shard_open(tpath("missing.bin"), &sh), "missing.bin", "cannot open");
	CHECK(sh == NULL, "out set to NULL on error");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("empty.bin", 20240520, 1, 0, 0), &sh),
	       "empty.bin", "ntokens", "empty");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("trunc.bin", 20240520, 1, 100, 60), &sh),
	       "trunc.bin", "ntokens", "truncated");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("long.bin", 20240520, 1, 10, 60), &sh),
	       "long.bin", "ntokens", "trailing");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("magic.bin", 20240326, 1, 10, 10), &sh),
	       "magic.bin", "magic", "20240326");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("llama3.bin", 20240801, 7, 10, 20), &sh),
	       "llama3.bin", "magic", "Llama-3");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("version.bin", 20240520, 2, 10, 10), &sh),
	       "version.bin", "version");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("neg.bin", 20240520, 1, -5, 10), &sh),
	       "neg.bin", "ntokens");
	write_text(tpath("short.bin"), "abc");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(tpath("short.bin"), &sh), "short.bin", "short header");
	EXPECT(LSPO_EIO, lspo_shard_open(tmp, &sh), "not a regular file");

	uint16_t tok[6] = { 1, 2, 300, 4, 255, 256 };
	lspo_shard_write(tpath("vocab.bin"), tok, 6);
	CHECK(lspo_shard_open(tpath("vocab.bin"), &sh) == LSPO_OK, "open vocab.bin");
	if (sh) {
		EXPECT(LSPO_EFORMAT, lspo_shard_check_vocab(sh, 256), "vocab.bin", "position 2", "300",
		       "vocab_size 256");
		CHECK(lspo_shard_check_vocab(sh, 301) == LSPO_OK, "ids < 301");
		EXPECT(LSPO_EINVAL, lspo_shard_check_vocab(sh, 0), "vocab.bin", "vocab_size");
		lspo_shard_close(sh);
	}
}

int main(void)
{
	tmp = make_tmpdir("data");
	test_round_trip();
	test_tokenize();
	test_split();
	test_loader();
	test_bad_shards();
	if (!test_failures)
		remove_tmpdir(tmp);
	return test_finish("test_data");
}
