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
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("llama3.bin", 20240801, 6, 10, 20), &sh),
	       "llama3.bin", "version", "uint32");
	EXPECT(LSPO_EFORMAT, lspo_shard_open(bad_shard("trunc32.bin", 20240801, 7, 10, 10), &sh),
	       "trunc32.bin", "ntokens", "truncated");
	CHECK(lspo_shard_open(bad_shard("ok32.bin", 20240801, 7, 10, 20), &sh) == LSPO_OK, "uint32 shard");
	if (sh) {
		CHECK(lspo_shard_token_bytes(sh) == 4 && lspo_shard_token(sh, 3) == 0x00070007u,
		      "uint32 tokens");
		lspo_shard_close(sh);
	}
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

/* Shards for large vocabularies: width chosen from the vocabulary, ids kept
 * exactly, vocabulary checks naming the position, the loader reading both. */
static void test_wide(void)
{
	size_t n = 3000;
	uint32_t *ids = malloc(n * 4);
	for (size_t i = 0; i < n; i++)
		ids[i] = (uint32_t)((i * 2654435761u) % 262144u);
	ids[17] = 262143;
	struct lspo_shard_writer *w;
	const char *path = tpath("wide.bin");
	CHECK(lspo_shard_writer_open(path, 262144, 0, &w) == LSPO_OK, "writer");
	CHECK(lspo_shard_writer_add(w, ids, 1000, 1) == LSPO_OK, "add");
	CHECK(lspo_shard_writer_add(w, ids + 1000, n - 1000, 1) == LSPO_OK, "add");
	CHECK(lspo_shard_writer_close(w, 1) == LSPO_OK, "commit");
	FILE *f = fopen(path, "rb");
	int32_t h[256] = { 0 };
	CHECK(f && fread(h, 4, 256, f) == 256, "read header");
	if (f)
		fclose(f);
	CHECK(h[0] == 20240801 && h[1] == 7 && h[2] == (int32_t)n, "header %d %d %d", h[0], h[1], h[2]);
	struct stat st;
	stat(path, &st);
	CHECK((size_t)st.st_size == 1024 + 4 * n, "file size %lld", (long long)st.st_size);
	struct lspo_shard *sh = NULL;
	CHECK(lspo_shard_open(path, &sh) == LSPO_OK, "open wide");
	if (sh) {
		CHECK(lspo_shard_token_bytes(sh) == 4 && lspo_shard_tokens(sh) == NULL &&
		      lspo_shard_tokens32(sh) && !memcmp(lspo_shard_tokens32(sh), ids, n * 4),
		      "uint32 round trip");
		CHECK(lspo_shard_mask(sh) == NULL, "no mask");
		CHECK(lspo_shard_check_vocab(sh, 262144) == LSPO_OK, "ids < 262144");
		EXPECT(LSPO_EFORMAT, lspo_shard_check_vocab(sh, 262143), "wide.bin", "position 17",
		       "262143");
		struct lspo_loader *l;
		int32_t x[2 * 8], y[2 * 8];
		uint8_t m[2 * 8];
		CHECK(lspo_loader_create(sh, 2, 8, 3, 0, n, &l) == LSPO_OK, "loader");
		int ok = 1;
		for (int k = 0; k < 50; k++) {
			lspo_loader_next_masked(l, x, y, m);
			for (int r = 0; r < 2; r++) {
				size_t p0 = SIZE_MAX;
				for (size_t p = 0; p + 8 < n && p0 == SIZE_MAX; p += 8)
					if ((uint32_t)x[r * 8] == ids[p] && (uint32_t)x[r * 8 + 1] == ids[p + 1])
						p0 = p;
				ok &= p0 != SIZE_MAX;
				for (int t = 0; t < 8 && p0 != SIZE_MAX; t++)
					ok &= (uint32_t)x[r * 8 + t] == ids[p0 + t] &&
					      (uint32_t)y[r * 8 + t] == ids[p0 + t + 1] && m[r * 8 + t] == 1;
			}
		}
		CHECK(ok, "uint32 windows: inputs, targets shifted by one, mask all 1");
		lspo_loader_free(l);
		lspo_shard_close(sh);
	}
	/* the boundary: vocab 65535 fits uint16, 65536 does not */
	CHECK(lspo_shard_writer_open(tpath("w16.bin"), 65535, 0, &w) == LSPO_OK, "writer 65535");
	uint32_t top = 65534;
	lspo_shard_writer_add(w, &top, 1, 1);
	CHECK(lspo_shard_writer_close(w, 1) == LSPO_OK, "commit 65535");
	CHECK(lspo_shard_open(tpath("w16.bin"), &sh) == LSPO_OK && lspo_shard_token_bytes(sh) == 2 &&
	      lspo_shard_token(sh, 0) == 65534, "vocab 65535 -> uint16");
	lspo_shard_close(sh);
	CHECK(lspo_shard_writer_open(tpath("w32.bin"), 65536, 0, &w) == LSPO_OK, "writer 65536");
	top = 65535;
	lspo_shard_writer_add(w, &top, 1, 1);
	CHECK(lspo_shard_writer_close(w, 1) == LSPO_OK, "commit 65536");
	CHECK(lspo_shard_open(tpath("w32.bin"), &sh) == LSPO_OK && lspo_shard_token_bytes(sh) == 4 &&
	      lspo_shard_token(sh, 0) == 65535, "vocab 65536 -> uint32");
	lspo_shard_close(sh);
	/* ids beyond the vocabulary are refused by the writer, naming the position */
	CHECK(lspo_shard_writer_open(tpath("wbad.bin"), 1000, 0, &w) == LSPO_OK, "writer");
	uint32_t bad[3] = { 5, 999, 1000 };
	EXPECT(LSPO_EINVAL, lspo_shard_writer_add(w, bad, 3, 1), "wbad.bin", "position 2", "1000");
	CHECK(lspo_shard_writer_close(w, 1) != LSPO_OK, "a failed writer does not commit");
	CHECK(stat(tpath("wbad.bin"), &st) != 0, "no file from a failed writer");
	CHECK(lspo_shard_writer_open(tpath("wempty.bin"), 1000, 0, &w) == LSPO_OK, "writer");
	EXPECT(LSPO_EINVAL, lspo_shard_writer_close(w, 1), "wempty.bin", "no tokens");
	free(ids);
}

/* Loss masks: SHARD.mask beside the shard, one byte per token; the loader's
 * mask is the mask of each target's position. */
static void test_mask(void)
{
	const char *path = tpath("sft.bin");
	struct lspo_shard_writer *w;
	/* documents of 3 prompt tokens then 5 response tokens; ids = position */
	size_t n = 800;
	CHECK(lspo_shard_writer_open(path, 50000, 1, &w) == LSPO_OK, "writer");
	for (size_t p = 0; p < n; p += 8) {
		uint32_t prompt[3] = { (uint32_t)p, (uint32_t)p + 1, (uint32_t)p + 2 };
		uint32_t resp[5] = { (uint32_t)p + 3, (uint32_t)p + 4, (uint32_t)p + 5, (uint32_t)p + 6,
		                     (uint32_t)p + 7 };
		lspo_shard_writer_add(w, prompt, 3, 0);
		lspo_shard_writer_add(w, resp, 5, 1);
	}
	CHECK(lspo_shard_writer_close(w, 1) == LSPO_OK, "commit");
	char mpath[4400];
	snprintf(mpath, sizeof(mpath), "%s.mask", path);
	FILE *f = fopen(mpath, "rb");
	int32_t h[256] = { 0 };
	uint8_t *bytes = malloc(n + 1);
	CHECK(f && fread(h, 4, 256, f) == 256 && fread(bytes, 1, n + 1, f) == n, "read mask file");
	if (f)
		fclose(f);
	CHECK(h[0] == 20241130 && h[1] == 1 && h[2] == (int32_t)n, "mask header %d %d %d", h[0], h[1],
	      h[2]);
	int zeros = 1, layout = 1;
	for (int i = 3; i < 256; i++)
		zeros &= h[i] == 0;
	for (size_t p = 0; p < n; p++)
		layout &= bytes[p] == (p % 8 >= 3);
	CHECK(zeros && layout, "mask layout: 0 for prompt positions, 1 for response positions");
	free(bytes);

	struct lspo_shard *sh = NULL;
	CHECK(lspo_shard_open(path, &sh) == LSPO_OK, "open masked shard");
	if (!sh)
		return;
	CHECK(lspo_shard_mask(sh) != NULL && lspo_shard_token_bytes(sh) == 2, "mask opened");
	const int B = 3, T = 10;
	struct lspo_loader *a, *b;
	lspo_loader_create(sh, B, T, 9, 0, n, &a);
	lspo_loader_create(sh, B, T, 9, 0, n, &b);
	int32_t x[30], y[30], x2[30], y2[30];
	uint8_t m[30];
	int ok = 1, same = 1;
	size_t counted = 0, total = 0;
	for (int k = 0; k < 40; k++) {
		lspo_loader_next_masked(a, x, y, m);
		lspo_loader_next(b, x2, y2);
		same &= !memcmp(x, x2, sizeof(x)) && !memcmp(y, y2, sizeof(y));
		for (int i = 0; i < B * T; i++) {
			ok &= m[i] == (y[i] % 8 >= 3) && y[i] == x[i] + 1;
			counted += m[i];
			total++;
		}
	}
	CHECK(ok, "mask[b][t] = 1 exactly where the target is a response token");
	CHECK(same, "next and next_masked draw the same batches");
	CHECK(counted > total / 2 && counted < total, "%zu of %zu targets counted", counted, total);
	lspo_loader_free(a);
	lspo_loader_free(b);
	lspo_shard_close(sh);

	/* rewriting the shard without a mask removes the stale one */
	CHECK(lspo_shard_writer_open(path, 50000, 0, &w) == LSPO_OK, "writer");
	uint32_t one[2] = { 1, 2 };
	lspo_shard_writer_add(w, one, 2, 1);
	CHECK(lspo_shard_writer_close(w, 1) == LSPO_OK, "commit");
	struct stat st;
	CHECK(stat(mpath, &st) != 0, "stale mask removed");

	/* malformed masks name the mask file */
	uint16_t tok[4] = { 1, 2, 3, 4 };
	lspo_shard_write(tpath("m.bin"), tok, 4);
	int32_t mh[256] = { 20241130, 1, 5 };
	uint8_t mb[5] = { 0, 1, 1, 1, 1 };
	f = fopen(tpath("m.bin.mask"), "wb");
	fwrite(mh, 4, 256, f);
	fwrite(mb, 1, 4, f);
	fclose(f);
	EXPECT(LSPO_EFORMAT, lspo_shard_open(tpath("m.bin"), &sh), "m.bin.mask", "ntokens");
	mh[2] = 4;
	mb[2] = 7;
	f = fopen(tpath("m.bin.mask"), "wb");
	fwrite(mh, 4, 256, f);
	fwrite(mb, 1, 4, f);
	fclose(f);
	EXPECT(LSPO_EFORMAT, lspo_shard_open(tpath("m.bin"), &sh), "m.bin.mask", "position 2");
	mh[0] = 1;
	f = fopen(tpath("m.bin.mask"), "wb");
	fwrite(mh, 4, 256, f);
	fwrite(mb, 1, 4, f);
	fclose(f);
	EXPECT(LSPO_EFORMAT, lspo_shard_open(tpath("m.bin"), &sh), "m.bin.mask", "magic");
	mh[0] = 20241130;
	f = fopen(tpath("m.bin.mask"), "wb");
	fwrite(mh, 4, 256, f);
	fwrite(mb, 1, 3, f);
	fclose(f);
	EXPECT(LSPO_EFORMAT, lspo_shard_open(tpath("m.bin"), &sh), "m.bin.mask", "truncated");
	CHECK(sh == NULL, "no shard with a bad mask");
}

int main(void)
{
	tmp = make_tmpdir("data");
	test_round_trip();
	test_wide();
	test_mask();
	test_tokenize();
	test_split();
	test_loader();
	test_bad_shards();
	if (!test_failures)
		remove_tmpdir(tmp);
	return test_finish("test_data");
}
