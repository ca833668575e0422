/*
 * test_tokenizer.c - lspo's tokenizer.json reader on small synthetic
 * tokenizers, one option at a time, with the ids Hugging Face tokenizers'
 * definitions give (derived by hand in the comments): Split behaviours and
 * invert, Metaspace prepend schemes with an added token, byte fallback,
 * unknown tokens with and without fuse_unk, continuing_subword_prefix and
 * end_of_word_suffix, ignore_merges, added tokens with lstrip / rstrip /
 * single_word, normalizers (NFKC, Lowercase, Replace, Prepend, Strip),
 * Digits and Whitespace pre-tokenizers, the decoders; and malformed files
 * (bad JSON, unsupported types, merges naming unknown tokens, truncation),
 * each refused with LSPO_EFORMAT naming the file and the JSON path.  The
 * real tokenizers are checked against the reference by
 * test_tokenizer_ref.sh.
 *
 * The expectations follow Hugging Face tokenizers (the Rust library).  Run
 * through transformers.js (the JavaScript reference of the conformance
 * test), these files agree except where transformers.js departs from it:
 * Split's MergedWithPrevious / MergedWithNext / Contiguous / Removed
 * behaviours (it isolates), Metaspace's prepend on the first piece,
 * single_word, merges with continuing_subword_prefix, and unknown
 * characters without an unk token.  None of these occurs in the real
 * tokenizers of the conformance test.
 */
#include <string.h>

#include "common.h"
#include "st_craft.h"

static const char *tmp;

/* vocabulary shared by the synthetic tokenizers */
static const char VOCAB[] =
	"{\"a\":0,\"b\":1,\"c\":2,\"-\":3,\"a-\":4,\"-b\":5,\"--\":6,\" \":7,\"\xe2\x96\x81\":8,"
	"\"\xe2\x96\x81" "a\":9,\"1\":10,\"2\":11,\"<unk>\":12,\"<0xC3>\":13,\"<0xA9>\":14,\"ab\":15,"
	"\"##b\":16,\"b</w>\":17,\"ab</w>\":18,\"12\":19}";

static const char *write_tok(const char *name, const char *json)
{
	static char path[4400];
	snprintf(path, sizeof(path), "%s/%s.json", tmp, name);
	FILE *f = fopen(path, "wb");
	fputs(json, f);
	fclose(f);
	return path;
}

/* A tokenizer.json from its parts (JSON text; "null" for none). */
static const char *mk(const char *name, const char *model_opts, const char *merges,
                      const char *norm, const char *pre, const char *dec, const char *added)
{
	static char json[8192];
	snprintf(json, sizeof(json),
	         "{\"version\":\"1.0\",\"added_tokens\":%s,\"normalizer\":%s,\"pre_tokenizer\":%s,"
	         "\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"dropout\":null%s%s,\"vocab\":%s,"
	         "\"merges\":%s}}", added, norm, pre, dec, *model_opts ? "," : "", model_opts, VOCAB,
	         merges);
	return write_tok(name, json);
}

static void expect_ids(const char *name, const char *path, const char *text, const uint32_t *want,
                       size_t nwant)
{
	struct lspo_tokenizer *t = NULL;
	CHECK(lspo_tokenizer_load(path, &t) == LSPO_OK, "%s: load", name);
	if (!t)
		return;
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	int rc = lspo_tokenizer_encode(t, text, strlen(text), &ids, &n, &cap);
	int same = !rc && n == nwant && (n == 0 || !memcmp(ids, want, n * 4));
	CHECK(same, "%s: '%s' gave %zu ids, expected %zu", name, text, n, nwant);
	if (!same) {
		fprintf(stderr, "   got:");
		for (size_t i = 0; i < n; i++)
			fprintf(stderr, " %u", ids[i]);
		fprintf(stderr, "\n   want:");
		for (size_t i = 0; i < nwant; i++)
			fprintf(stderr, " %u", want[i]);
		fprintf(stderr, "\n");
	}
	free(ids);
	lspo_tokenizer_free(t);
}

#define IDS(...) (const uint32_t[]){ __VA_ARGS__ }, sizeof((const uint32_t[]){ __VA_ARGS__ }) / 4
#define SPLIT(pat, beh, inv) "{\"type\":\"Split\",\"pattern\":" pat ",\"behavior\":\"" beh \
	"\",\"invert\":" inv "}"
static const char MERGES[] = "[\"a -\",\"- b\",\"- -\",\"a b\",\"1 2\"]";

static void test_split(void)
{
	const char *s = "{\"String\":\"-\"}", *r = "{\"Regex\":\"-\"}";
	(void)r;
	/* "a-b": segments a | - (match) | b */
	expect_ids("isolated", mk("iso", "", MERGES, "null", SPLIT("{\"String\":\"-\"}", "Isolated", "false"), "null", "[]"),
	           "a-b", IDS(0, 3, 1));
	expect_ids("merged_prev", mk("mp", "", MERGES, "null", SPLIT("{\"String\":\"-\"}", "MergedWithPrevious", "false"), "null", "[]"),
	           "a-b", IDS(4, 1));
	expect_ids("merged_next", mk("mn", "", MERGES, "null", SPLIT("{\"String\":\"-\"}", "MergedWithNext", "false"), "null", "[]"),
	           "a-b", IDS(0, 5));
	expect_ids("removed", mk("rm", "", MERGES, "null", SPLIT("{\"String\":\"-\"}", "Removed", "false"), "null", "[]"),
	           "a-b", IDS(0, 1));
	/* "a--b": two adjacent matches */
	expect_ids("contiguous", mk("ct", "", MERGES, "null", SPLIT("{\"Regex\":\"-\"}", "Contiguous", "false"), "null", "[]"),
	           "a--b", IDS(0, 6, 1));
	expect_ids("isolated2", mk("iso2", "", MERGES, "null", SPLIT("{\"Regex\":\"-\"}", "Isolated", "false"), "null", "[]"),
	           "a--b", IDS(0, 3, 3, 1));
	/* the second '-' follows a match, so it is not merged into "a-" */
	expect_ids("merged_prev2", mk("mp2", "", MERGES, "null", SPLIT("{\"Regex\":\"-\"}", "MergedWithPrevious", "false"), "null", "[]"),
	           "a--b", IDS(4, 3, 1));
	expect_ids("merged_next2", mk("mn2", "", MERGES, "null", SPLIT("{\"Regex\":\"-\"}", "MergedWithNext", "false"), "null", "[]"),
	           "a--b", IDS(0, 3, 5));
	/* invert: the non-matches are the delimiters, so Removed keeps '-' */
	expect_ids("invert", mk("inv", "", MERGES, "null", SPLIT("{\"String\":\"-\"}", "Removed", "true"), "null", "[]"),
	           "a-b", IDS(3));
	/* no pre-tokenizer: "a-b" is one word: a,- merge first (rank 0) */
	expect_ids("no_pre", mk("nopre", "", MERGES, "null", "null", "null", "[]"), "a-b", IDS(4, 1));
	(void)s;
	/* Digits: runs together, or each digit alone */
	expect_ids("digits", mk("dg", "", MERGES, "null", "{\"type\":\"Digits\",\"individual_digits\":false}", "null", "[]"),
	           "a12", IDS(0, 19));
	expect_ids("digits1", mk("dg1", "", MERGES, "null", "{\"type\":\"Digits\",\"individual_digits\":true}", "null", "[]"),
	           "a12", IDS(0, 10, 11));
	/* Whitespace: \w+|[^\w\s]+ pieces, spaces dropped: "ab -b" -> ab, - , b */
	expect_ids("whitespace", mk("ws", "", MERGES, "null", "{\"type\":\"Whitespace\"}", "null", "[]"),
	           "ab -b", IDS(15, 3, 1));
}

static const char ADDED_X[] =
	"[{\"id\":30,\"content\":\"<x>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
	"\"normalized\":false,\"special\":true}]";

static void test_metaspace(void)
{
	const char *first = "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true}";
	const char *always = "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}";
	const char *merges = "[\"\xe2\x96\x81 a\"]";
	/* "a<x>a a": "a" (start of text) -> "▁a"; <x>; "a a" -> "a▁a" (not the
	 * start: no prefix with "first") -> "a", "▁a" */
	expect_ids("metaspace_first", mk("msf", "", merges, "null", first, "null", ADDED_X), "a<x>a a",
	           IDS(9, 30, 0, 9));
	expect_ids("metaspace_always", mk("msa", "", merges, "null", always, "null", ADDED_X), "a<x>a a",
	           IDS(9, 30, 9, 9));
	/* Llama-2 style: Prepend + Replace normalizers, no pre-tokenizer; the
	 * normalizers apply to each part between added tokens */
	const char *norm = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
	                   "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]}";
	expect_ids("prepend", mk("pp", "", merges, norm, "null", "null", ADDED_X), "a<x> a",
	           IDS(9, 30, 8, 9));
}

static void test_model(void)
{
	const char *fb = "\"byte_fallback\":true,\"unk_token\":\"<unk>\"";
	/* é is not in the vocabulary: its bytes C3 A9 are */
	expect_ids("byte_fallback", mk("bf", fb, "[]", "null", "null", "null", "[]"), "a\xc3\xa9",
	           IDS(0, 13, 14));
	/* without byte fallback: unknown characters -> <unk>, fused or not */
	expect_ids("fuse_unk", mk("fu", "\"unk_token\":\"<unk>\",\"fuse_unk\":true", "[]", "null", "null", "null", "[]"),
	           "a\xc3\xa9\xc3\xa9" "b", IDS(0, 12, 1));
	expect_ids("no_fuse_unk", mk("nfu", "\"unk_token\":\"<unk>\",\"fuse_unk\":false", "[]", "null", "null", "null", "[]"),
	           "a\xc3\xa9\xc3\xa9" "b", IDS(0, 12, 12, 1));
	/* no unk token: unknown characters are dropped, as HF does */
	expect_ids("no_unk", mk("nu", "", "[]", "null", "null", "null", "[]"), "a\xc3\xa9" "b", IDS(0, 1));
	/* continuing_subword_prefix: "ab" = a + ##b, merged by "a ##b" into "ab" */
	expect_ids("cont_prefix", mk("cp", "\"continuing_subword_prefix\":\"##\"", "[\"a ##b\"]", "null", "null", "null", "[]"),
	           "ab", IDS(15));
	/* end_of_word_suffix: a + b</w> -> ab</w> */
	expect_ids("eow_suffix", mk("eow", "\"end_of_word_suffix\":\"</w>\"", "[[\"a\",\"b</w>\"]]", "null", "null", "null", "[]"),
	           "ab", IDS(18));
	/* merges by rank: "12" is in the vocabulary but no merge makes it... */
	expect_ids("no_merge", mk("nm", "", "[]", "null", "null", "null", "[]"), "12", IDS(10, 11));
	/* ... unless ignore_merges looks the word up first */
	expect_ids("ignore_merges", mk("im", "\"ignore_merges\":true", "[]", "null", "null", "null", "[]"), "12",
	           IDS(19));
	/* equal pairs: the leftmost merges first: "---" -> "--", "-" */
	expect_ids("leftmost", mk("lm", "", MERGES, "null", "null", "null", "[]"), "---", IDS(6, 3));
}

static void test_added(void)
{
	const char *strip = "[{\"id\":30,\"content\":\"<x>\",\"single_word\":false,\"lstrip\":true,"
	                    "\"rstrip\":true,\"normalized\":false,\"special\":true}]";
	expect_ids("no_strip", mk("ns", "", "[]", "null", "null", "null", ADDED_X), "a <x> b",
	           IDS(0, 7, 30, 7, 1));
	expect_ids("strip", mk("st", "", "[]", "null", "null", "null", strip), "a <x> b", IDS(0, 30, 1));
	/* single_word: "ab" is a token only as a whole word */
	const char *sw = "[{\"id\":31,\"content\":\"ab\",\"single_word\":true,\"lstrip\":false,"
	                 "\"rstrip\":false,\"normalized\":false,\"special\":false}]";
	expect_ids("single_word", mk("sw", "", "[]", "null", "null", "null", sw), "ab cab",
	           IDS(31, 7, 2, 0, 1));
	/* '-' and the ideographic full stop are not word characters: "ab"
	 * matches; after the letter é (dropped: not in the vocabulary, no unk
	 * token) it does not */
	expect_ids("single_word2", mk("sw2", "", "[]", "null", "null", "null", sw),
	           "-ab\xe3\x80\x82 \xc3\xa9" "ab", IDS(3, 31, 7, 0, 1));
	/* leftmost-longest: "<x>" and "<x>>" both added */
	const char *two = "[{\"id\":30,\"content\":\"<x>\",\"special\":true},"
	                  "{\"id\":32,\"content\":\"<x>>\",\"special\":true}]";
	expect_ids("longest", mk("lg", "", "[]", "null", "null", "null", two), "<x>>a<x>", IDS(32, 0, 30));
}

static void test_normalizers(void)
{
	const char *n = "{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFKC\"},{\"type\":\"Lowercase\"}]}";
	/* fullwidth Ａ Ｂ -> A B -> a b, merged by "a b" */
	expect_ids("nfkc_lower", mk("nl", "", MERGES, n, "null", "null", "[]"), "\xef\xbc\xa1\xef\xbc\xa2",
	           IDS(15));
	/* NFC: a + combining acute stays two characters (no precomposed á in
	 * the vocabulary either way), byte fallback shows the bytes */
	const char *strip = "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}";
	expect_ids("strip", mk("sn", "", MERGES, strip, "null", "null", "[]"), "  ab \t", IDS(15));
	const char *lstrip = "{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":false}";
	expect_ids("lstrip", mk("snl", "", MERGES, lstrip, "null", "null", "[]"), "  ab ", IDS(15, 7));
}

static void expect_text(const char *name, const char *path, const uint32_t *ids, size_t n,
                        const char *want)
{
	struct lspo_tokenizer *t = NULL;
	CHECK(lspo_tokenizer_load(path, &t) == LSPO_OK, "%s: load", name);
	if (!t)
		return;
	char *out = NULL;
	size_t len;
	int rc = lspo_tokenizer_decode(t, ids, n, 0, &out, &len);
	CHECK(!rc && len == strlen(want) && !memcmp(out, want, len), "%s: decoded '%s', expected '%s'",
	      name, rc ? "(error)" : out, want);
	free(out);
	lspo_tokenizer_free(t);
}

static void test_decoders(void)
{
	const char *bf = "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}";
	/* C3 A9 = é; a lone C3 is invalid: one U+FFFD per byte */
	expect_text("bytefallback", mk("dbf", "", "[]", "null", "null", bf, "[]"), IDS(0, 13, 14, 1, 13, 2),
	            "a\xc3\xa9" "b\xef\xbf\xbd" "c");
	const char *ms = "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"always\",\"split\":true}";
	expect_text("metaspace", mk("dms", "", "[]", "null", "null", ms, "[]"), IDS(9, 9, 8, 0), "a a a");
	const char *st = "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},"
	                 "\"content\":\" \"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]}";
	expect_text("replace_strip", mk("drs", "", "[]", "null", "null", st, "[]"), IDS(9, 9), "a a");
	/* no decoder: tokens joined by spaces */
	expect_text("none", mk("dno", "", "[]", "null", "null", "null", "[]"), IDS(0, 1), "a b");
	struct lspo_tokenizer *t;
	lspo_tokenizer_load(mk("dbad", "", "[]", "null", "null", "null", "[]"), &t);
	if (t) {
		char *out;
		size_t len;
		EXPECT(LSPO_EINVAL, lspo_tokenizer_decode(t, IDS(0, 99), 0, &out, &len), "dbad.json",
		       "token id 99 at position 1");
		uint32_t *ids = NULL;
		size_t n = 0, cap = 0;
		EXPECT(LSPO_EINVAL, lspo_tokenizer_encode(t, "ab\xff", 3, &ids, &n, &cap), "invalid UTF-8",
		       "byte 2");
		free(ids);
		lspo_tokenizer_free(t);
	}
}

static void expect_bad(const char *name, const char *json, const char *what)
{
	struct lspo_tokenizer *t = (struct lspo_tokenizer *)1;
	char file[64];
	snprintf(file, sizeof(file), "%s.json", name);
	EXPECT(LSPO_EFORMAT, lspo_tokenizer_load(write_tok(name, json), &t), file, what);
	CHECK(t == NULL, "%s: no tokenizer on error", name);
}

static void test_malformed(void)
{
	char buf[8192];
	expect_bad("badjson", "{\"model\": {\"type\": \"BPE\",", "not valid JSON");
	expect_bad("notobject", "[1, 2]", "JSON object");
	expect_bad("nomodel", "{\"added_tokens\": []}", "'model' is missing");
	expect_bad("wordpiece", "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "model.type 'WordPiece'");
	expect_bad("unigram", "{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model.type 'Unigram'");
	snprintf(buf, sizeof(buf), "{\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[\"a zz\"]}}", VOCAB);
	expect_bad("mergeunknown", buf, "model.merges[0] names the token 'zz'");
	snprintf(buf, sizeof(buf), "{\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[\"a b\",\"b c\"]}}", VOCAB);
	expect_bad("mergedunknown", buf, "model.merges[1]: the merged token 'bc'");
	snprintf(buf, sizeof(buf), "{\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[\"a  b\"]}}", VOCAB);
	expect_bad("mergeform", buf, "model.merges[0]");
	expect_bad("novocab", "{\"model\":{\"type\":\"BPE\",\"merges\":[]}}", "model.vocab is missing");
	expect_bad("badid", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}", "model.vocab['a']");
	snprintf(buf, sizeof(buf), "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("bertnorm", buf, "normalizer.type 'BertNormalizer'");
	snprintf(buf, sizeof(buf), "{\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"ByteLevel\"},{\"type\":\"CharDelimiterSplit\"}]},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("chardelim", buf, "pre_tokenizer.pretokenizers[1].type 'CharDelimiterSplit'");
	snprintf(buf, sizeof(buf), "{\"decoder\":{\"type\":\"WordPiece\"},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("wpdecoder", buf, "decoder.type 'WordPiece'");
	snprintf(buf, sizeof(buf), "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":\"Isolated\",\"invert\":false},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("badregex", buf, "pre_tokenizer: cannot compile the regex");
	snprintf(buf, sizeof(buf), "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"String\":\"-\"},\"behavior\":\"Sideways\",\"invert\":false},\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("badbehavior", buf, "pre_tokenizer.behavior 'Sideways'");
	snprintf(buf, sizeof(buf), "{\"model\":{\"type\":\"BPE\",\"dropout\":0.1,\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("dropout", buf, "model.dropout");
	snprintf(buf, sizeof(buf), "{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<nope>\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("badunk", buf, "model.unk_token '<nope>'");
	snprintf(buf, sizeof(buf), "{\"added_tokens\":[{\"id\":\"x\",\"content\":\"<x>\"}],\"model\":{\"type\":\"BPE\",\"vocab\":%s,\"merges\":[]}}", VOCAB);
	expect_bad("badadded", buf, "added_tokens[0].id");
	/* a real tokenizer.json cut short */
	const char *good = mk("good", "", MERGES, "null", "null", "null", ADDED_X);
	FILE *f = fopen(good, "rb");
	size_t n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	buf[n / 2] = 0;
	expect_bad("truncated", buf, "not valid JSON");
	struct lspo_tokenizer *t = (struct lspo_tokenizer *)1;
	char missing[4400];
	snprintf(missing, sizeof(missing), "%s/no-such-dir", tmp);
	EXPECT(LSPO_EIO, lspo_tokenizer_load(missing, &t), "no-such-dir", "cannot open");
	EXPECT(LSPO_EIO, lspo_tokenizer_load(tmp, &t), "tokenizer.json", "cannot open");
}

/* One tokenizer, several handles (threads): same ids; the vocabulary size
 * counts added tokens beyond the model's ids. */
static void test_handles(void)
{
	struct lspo_tokenizer *a, *b;
	CHECK(lspo_tokenizer_load(mk("h", "", MERGES, "null", "null", "null", ADDED_X), &a) == LSPO_OK, "load");
	CHECK(lspo_tokenizer_dup(a, &b) == LSPO_OK, "dup");
	CHECK(lspo_tokenizer_vocab_size(a) == 31, "vocab size %u", lspo_tokenizer_vocab_size(a));
	lspo_tokenizer_free(a);   /* b keeps the tables */
	uint32_t *ids = NULL;
	size_t n = 0, cap = 0;
	CHECK(lspo_tokenizer_encode(b, "a-b<x>", 6, &ids, &n, &cap) == LSPO_OK && n == 3 &&
	      ids[0] == 4 && ids[1] == 1 && ids[2] == 30, "encode on a dup'd handle");
	size_t len;
	const char *s = lspo_tokenizer_token(b, 30, &len);
	CHECK(s && len == 3 && !memcmp(s, "<x>", 3), "token 30");
	CHECK(lspo_tokenizer_token(b, 25, &len) == NULL, "hole in the ids");
	CHECK(lspo_tokenizer_bos(b) == -1 && lspo_tokenizer_eos(b) == -1, "no BOS/EOS");
	free(ids);
	lspo_tokenizer_free(b);
	lspo_tokenizer_free(NULL);
}

int main(void)
{
	tmp = make_tmpdir("tokenizer");
	test_split();
	test_metaspace();
	test_model();
	test_added();
	test_normalizers();
	test_decoders();
	test_malformed();
	test_handles();
	if (!test_failures && !getenv("LSPO_KEEP_TMP"))
		remove_tmpdir(tmp);
	return test_finish("test_tokenizer");
}
