/*
 * tokenizer.c - Hugging Face tokenizer.json in C: the public API (load,
 * encode, decode) and the encoding pipeline, in HF tokenizers' order:
 *   1. added tokens with normalized = false are found in the raw text
 *      (leftmost-longest, with lstrip / rstrip / single_word);
 *   2. each other part is normalized, then added tokens with
 *      normalized = true are found in it;
 *   3. the remaining parts are pre-tokenized and each piece goes through
 *      the BPE model (tok_bpe.c).
 * Supported: model BPE (byte_fallback, ignore_merges, unk_token, fuse_unk,
 * continuing_subword_prefix, end_of_word_suffix); normalizers NFC, NFD, NFKC,
 * NFKD, Replace, Prepend, Lowercase, Strip, Sequence; pre-tokenizers
 * ByteLevel, Split, Metaspace, Digits, Whitespace, WhitespaceSplit,
 * Punctuation, Sequence; decoders ByteLevel, Metaspace, Replace,
 * ByteFallback, Fuse, Strip, Sequence.  Anything else is refused at load
 * time naming the type and the file.  Not implemented (not needed for ids):
 * offsets, truncation, padding, post-processors (BOS/EOS are added by the
 * caller, see lspo_tokenizer_bos).
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "internal.h"
#include "tok_internal.h"

int lspo_tokenizer_load(const char *path, struct lspo_tokenizer **out)
{
	*out = NULL;
	struct tok_core *c;
	int rc = tok_core_load(path, &c);
	if (rc)
		return rc;
	struct lspo_tokenizer *t = calloc(1, sizeof(*t));
	if (!t) {
		tok_core_free(c);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	t->core = c;
	*out = t;
	return LSPO_OK;
}

int lspo_tokenizer_dup(struct lspo_tokenizer *t, struct lspo_tokenizer **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", t->core->path);
	(*out)->core = t->core;
	__atomic_add_fetch(&t->core->refs, 1, __ATOMIC_RELAXED);
	return LSPO_OK;
}

void lspo_tokenizer_free(struct lspo_tokenizer *t)
{
	if (!t)
		return;
	if (__atomic_sub_fetch(&t->core->refs, 1, __ATOMIC_ACQ_REL) == 0)
		tok_core_free(t->core);
	cache_free(&t->cache);
	pieces_free(&t->a);
	pieces_free(&t->b);
	pieces_free(&t->c);
	free(t->s1.p);
	free(t->s2.p);
	if (t->md)
		pcre2_match_data_free(t->md);
	free(t->w_id);
	free(t->w_prev);
	free(t->w_next);
	free(t->heap);
	free(t->m);
	free(t);
}

uint32_t lspo_tokenizer_vocab_size(const struct lspo_tokenizer *t) { return t->core->vocab_size; }
int32_t lspo_tokenizer_bos(const struct lspo_tokenizer *t) { return t->core->bos; }
int32_t lspo_tokenizer_eos(const struct lspo_tokenizer *t) { return t->core->eos; }
const char *lspo_tokenizer_path(const struct lspo_tokenizer *t) { return t->core->path; }

const char *lspo_tokenizer_token(const struct lspo_tokenizer *t, uint32_t id, size_t *len)
{
	if (id >= t->core->vocab_size || !t->core->id_str[id])
		return NULL;
	if (len)
		*len = t->core->id_len[id];
	return t->core->id_str[id];
}

/* ---------------------------------------------------------------------- */
/* added tokens                                                           */

/* \w of Unicode regexes (single_word): letters, marks, decimal and letter
 * numbers, connector punctuation. */
static int is_word_char(uint32_t cp)
{
	switch (utf8proc_category((utf8proc_int32_t)cp)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
	case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
	case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
	case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
		return 1;
	default:
		return 0;
	}
}

static uint32_t last_char(const char *p, size_t n)
{
	size_t k = n - 1, l;
	while (k > 0 && ((unsigned char)p[k] & 0xc0) == 0x80)
		k--;
	return utf8_get(p + k, &l);
}

struct added_match { size_t start, stop; uint32_t id; };

/* HF AddedVocabulary::find_matches: leftmost-longest matches of the trie in
 * (p, n), filtered by single_word and widened by lstrip / rstrip. */
static int find_added(const struct tok_core *c, const struct trie *tr, const char *p, size_t n,
                      struct added_match **m, size_t *nm, size_t *cap)
{
	*nm = 0;
	if (!tr->nnodes)
		return LSPO_OK;
	size_t start_offset = 0;
	for (size_t i = 0; i < n;) {
		size_t len = 0;
		int32_t k = trie_longest(tr, p + i, n - i, &len);
		if (k < 0) {
			i++;
			continue;
		}
		const struct added_token *a = &c->added[k];
		size_t start = i, stop = i + len;
		i = stop;
		if (a->single_word) {
			size_t l;
			int before = start > 0 && is_word_char(last_char(p, start));
			int after = stop < n && is_word_char(utf8_get(p + stop, &l));
			if (before || after)
				continue;
		}
		if (a->lstrip) {
			size_t s = start;
			while (s > start_offset) {
				size_t q = s - 1, l;
				while (q > 0 && ((unsigned char)p[q] & 0xc0) == 0x80)
					q--;
				if (!tok_is_space(utf8_get(p + q, &l)))
					break;
				s = q;
			}
			start = s;
		}
		if (a->rstrip) {
			size_t l;
			while (stop < n && tok_is_space(utf8_get(p + stop, &l)))
				stop += l;
			i = stop;
		}
		if (*nm == *cap) {
			size_t nc = *cap ? 2 * *cap : 16;
			struct added_match *q = realloc(*m, nc * sizeof(*q));
			if (!q)
				return LSPO_ENOMEM;
			*m = q;
			*cap = nc;
		}
		(*m)[(*nm)++] = (struct added_match){ start, stop, a->id };
		start_offset = stop;
	}
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* encoding                                                               */

struct out_ids { uint32_t **ids; size_t *n, *cap; };

static int push(struct out_ids *o, uint32_t id)
{
	if (*o->n == *o->cap) {
		size_t nc = *o->cap ? 2 * *o->cap : 1024;
		uint32_t *q = realloc(*o->ids, nc * sizeof(*q));
		if (!q)
			return LSPO_ENOMEM;
		*o->ids = q;
		*o->cap = nc;
	}
	(*o->ids)[(*o->n)++] = id;
	return LSPO_OK;
}

/* Pre-tokenizes and BPE-encodes one normalized part. */
static int encode_normalized(struct lspo_tokenizer *t, const char *p, size_t n, int first,
                             struct out_ids *o)
{
	if (!n)
		return LSPO_OK;
	if (!t->core->pre)
		return tok_bpe_piece(t, p, n, o->ids, o->n, o->cap);
	pieces_clear(&t->b);
	pieces_clear(&t->c);
	int rc = pieces_add(&t->b, p, n, first);
	if (!rc)
		rc = tok_pretokenize(t, t->core->pre, &t->b, &t->c);
	for (size_t i = 0; i < t->c.n && !rc; i++)
		rc = tok_bpe_piece(t, t->c.buf.p + t->c.off[i], t->c.len[i], o->ids, o->n, o->cap);
	return rc;
}

/* Normalizes one part between raw added tokens, then splits it at the
 * normalized added tokens. */
static int encode_part(struct lspo_tokenizer *t, const char *p, size_t n, int first,
                       struct out_ids *o)
{
	const struct tok_core *c = t->core;
	if (!n)
		return LSPO_OK;
	if (!c->norm)
		return encode_normalized(t, p, n, first, o);
	struct tstr s = { 0 };
	int rc = tok_normalize(t, c->norm, p, n, &s);
	struct added_match *m = NULL;
	size_t nm = 0, cap = 0, prev = 0;
	if (!rc)
		rc = find_added(c, &c->trie_norm, s.p, s.n, &m, &nm, &cap);
	for (size_t i = 0; i < nm && !rc; i++) {
		rc = encode_normalized(t, s.p + prev, m[i].start - prev, first && prev == 0, o);
		if (!rc)
			rc = push(o, m[i].id);
		prev = m[i].stop;
	}
	if (!rc)
		rc = encode_normalized(t, s.p + prev, s.n - prev, first && prev == 0, o);
	free(m);
	free(s.p);
	return rc;
}

int lspo_tokenizer_encode(struct lspo_tokenizer *t, const char *text, size_t len, uint32_t **ids,
                          size_t *n, size_t *cap)
{
	size_t bad = utf8_check(text, len);
	if (bad != len)
		LSPO_FAIL(LSPO_EINVAL, "invalid UTF-8 at byte %zu of the text (byte 0x%02x): a "
		          "tokenizer encodes Unicode text", bad, (unsigned char)text[bad]);
	struct out_ids o = { ids, n, cap };
	struct added_match *m = NULL;
	size_t nm = 0, mcap = 0, prev = 0;
	int rc = find_added(t->core, &t->core->trie_raw, text, len, &m, &nm, &mcap);
	for (size_t i = 0; i < nm && !rc; i++) {
		rc = encode_part(t, text + prev, m[i].start - prev, prev == 0, &o);
		if (!rc)
			rc = push(&o, m[i].id);
		prev = m[i].stop;
	}
	if (!rc)
		rc = encode_part(t, text + prev, len - prev, prev == 0, &o);
	free(m);
	if (rc == LSPO_ENOMEM)
		lspo_error("%s: out of memory while encoding", t->core->path);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* decoding                                                               */

int lspo_tokenizer_decode(const struct lspo_tokenizer *t, const uint32_t *ids, size_t n,
                          int skip_special, char **text, size_t *len)
{
	const struct tok_core *c = t->core;
	*text = NULL;
	*len = 0;
	struct tstr *toks = calloc(n ? n : 1, sizeof(*toks));
	if (!toks)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", c->path);
	size_t nt = 0;
	int rc = LSPO_OK;
	for (size_t i = 0; i < n && !rc; i++) {
		if (ids[i] >= c->vocab_size || !c->id_str[ids[i]]) {
			lspo_error("%s: token id %u at position %zu is not in the vocabulary (%u ids)",
			           c->path, ids[i], i, c->vocab_size);
			rc = LSPO_EINVAL;
			break;
		}
		if (skip_special && c->is_special[ids[i]])
			continue;
		rc = tstr_add(&toks[nt++], c->id_str[ids[i]], c->id_len[ids[i]]);
	}
	if (!rc && c->dec)
		rc = tok_decode_tokens(c->dec, toks, &nt);
	struct tstr out = { 0 };
	for (size_t i = 0; i < nt && !rc; i++) {
		if (!c->dec && i > 0)
			rc = tstr_add(&out, " ", 1);
		if (!rc)
			rc = tstr_add(&out, toks[i].p ? toks[i].p : "", toks[i].n);
	}
	if (!rc && !out.p)
		rc = tstr_add(&out, "", 0);
	for (size_t i = 0; i < (n ? n : 1); i++)
		free(toks[i].p);
	free(toks);
	if (rc) {
		free(out.p);
		if (rc == LSPO_ENOMEM)
			lspo_error("%s: out of memory while decoding", c->path);
		return rc;
	}
	*text = out.p;
	*len = out.n;
	return LSPO_OK;
}
