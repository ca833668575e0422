/*
 * tok_ref_check.c - checks lspo's tokenizer against expected ids: usage
 *   tok_ref_check TOKENIZER CORPUS.json EXPECTED.json
 * CORPUS is a JSON array of strings; EXPECTED is {"cases": [{"ids": [...],
 * "decoded": "..."}]} written by a reference (tests/ref/tokenizer/ref.js;
 * "decoded" is absent in llama.cpp's vectors).
 * For each case: the ids of encode() equal the expected ids; decode() of the
 * expected ids equals the reference's text; and where the reference
 * round-trips (decoded == text), decode(encode(text)) == text.
 * Run by tests/test_tokenizer_ref.sh.
 */
#include <jansson.h>
#include <string.h>

#include "common.h"

static void show(const char *what, const uint32_t *ids, size_t n, size_t at)
{
	size_t a = at > 4 ? at - 4 : 0, b = at + 6 < n ? at + 6 : n;
	fprintf(stderr, "    %s (%zu ids), from %zu:", what, n, a);
	for (size_t i = a; i < b; i++)
		fprintf(stderr, " %u", ids[i]);
	fprintf(stderr, "\n");
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: tok_ref_check TOKENIZER CORPUS.json EXPECTED.json\n");
		return TEST_ERROR;
	}
	struct lspo_tokenizer *t;
	if (lspo_tokenizer_load(argv[1], &t)) {
		fprintf(stderr, "cannot load %s\n", argv[1]);
		return TEST_ERROR;
	}
	json_error_t err;
	json_t *corpus = json_load_file(argv[2], JSON_ALLOW_NUL, &err);
	json_t *exp = json_load_file(argv[3], JSON_ALLOW_NUL, &err);
	json_t *cases = exp ? json_object_get(exp, "cases") : NULL;
	if (!json_is_array(corpus) || !json_is_array(cases) ||
	    json_array_size(corpus) != json_array_size(cases)) {
		fprintf(stderr, "%s / %s: bad corpus or expected file\n", argv[2], argv[3]);
		return TEST_ERROR;
	}
	size_t ncase = json_array_size(corpus), ok = 0, rt = 0, bytes = 0;
	for (size_t c = 0; c < ncase; c++) {
		json_t *text = json_array_get(corpus, c), *e = json_array_get(cases, c);
		json_t *jids = json_object_get(e, "ids"), *dec = json_object_get(e, "decoded");
		const char *s = json_string_value(text);
		size_t len = json_string_length(text);
		bytes += len;
		size_t ne = json_array_size(jids);
		uint32_t *want = malloc((ne + 1) * sizeof(*want));
		for (size_t i = 0; i < ne; i++)
			want[i] = (uint32_t)json_integer_value(json_array_get(jids, i));
		uint32_t *ids = NULL;
		size_t n = 0, cap = 0;
		int rc = lspo_tokenizer_encode(t, s, len, &ids, &n, &cap);
		size_t at = 0;
		while (at < n && at < ne && ids[at] == want[at])
			at++;
		int same = !rc && n == ne && at == n;
		CHECK(same, "case %zu: ids differ from the reference at %zu", c, at);
		if (!same) {
			fprintf(stderr, "    text: %.120s\n", s);
			show("lspo", ids, n, at);
			show("reference", want, ne, at);
		}
		ok += same;
		char *out;
		size_t olen;
		if (!json_is_string(dec)) {   /* ids only (llama.cpp's vectors) */
			free(ids);
			free(want);
			continue;
		}
		rc = lspo_tokenizer_decode(t, want, ne, 0, &out, &olen);
		int dsame = !rc && olen == json_string_length(dec) && !memcmp(out, json_string_value(dec), olen);
		CHECK(dsame, "case %zu: decode of the reference ids differs:\n    lspo:      '%s'\n"
		      "    reference: '%s'", c, rc ? "(error)" : out, json_string_value(dec));
		if (!rc)
			free(out);
		if (json_string_length(dec) == len && !memcmp(json_string_value(dec), s, len)) {
			rc = lspo_tokenizer_decode(t, ids, n, 0, &out, &olen);
			CHECK(!rc && olen == len && !memcmp(out, s, len),
			      "case %zu: decode(encode(text)) != text", c);
			rt += !rc && olen == len && !memcmp(out, s, len);
			if (!rc)
				free(out);
		}
		free(ids);
		free(want);
	}
	printf("%s: %zu/%zu cases identical to the reference (%zu bytes), %zu round trips\n", argv[1],
	       ok, ncase, bytes, rt);
	json_decref(corpus);
	json_decref(exp);
	lspo_tokenizer_free(t);
	return test_finish("tok_ref_check");
}
