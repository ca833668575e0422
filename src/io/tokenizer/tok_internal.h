/*
 * tok_internal.h - the parts of a Hugging Face tokenizer.json that lspo
 * implements (see tokenizer.c for the list), as plain C structures, and the
 * helpers the tokenizer's files share.  Internal: the public API is in
 * include/lspo.h.
 *
 * Text is handled as (pointer, byte length) UTF-8 strings, never as C
 * strings: NUL is an ordinary character.  Offsets are not tracked (lspo needs
 * ids, not alignments).
 */
#ifndef LSPO_TOK_INTERNAL_H
#define LSPO_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>

#include "lspo.h"

/* ---------------------------------------------------------------------- */
/* growable byte strings and lists of pieces                              */

struct tstr {
	char *p;
	size_t n, cap;
};

/* A list of pieces of text: piece i is buf[off[i], off[i] + len[i]). */
struct pieces {
	struct tstr buf;
	size_t *off, *len;
	uint8_t *first;      /* 1 if the piece starts at the start of the original text */
	size_t n, cap;
};

int tstr_add(struct tstr *s, const void *p, size_t n);
int pieces_add(struct pieces *l, const char *p, size_t n, int first);
void pieces_clear(struct pieces *l);
void pieces_free(struct pieces *l);

/* UTF-8: length of the character starting at p (1..4), its code point. */
static inline size_t utf8_len(unsigned char c)
{
	return c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
}
uint32_t utf8_get(const char *p, size_t *len);
size_t utf8_put(uint32_t cp, char *out);   /* out has room for 4 bytes */
/* Byte offset of the first invalid UTF-8 sequence in p, or n if valid. */
size_t utf8_check(const char *p, size_t n);
/* Appends p to out, replacing invalid sequences by U+FFFD as Rust's
 * String::from_utf8_lossy does. */
int utf8_lossy(struct tstr *out, const char *p, size_t n);

/* ---------------------------------------------------------------------- */
/* hash maps                                                              */

/* bytes -> uint32 (vocabulary, added tokens) */
struct strmap {
	uint32_t *slot;      /* (cap) index + 1 into keys, 0 = empty */
	size_t cap;
	char **key;          /* (n) copies, owned by the map */
	uint32_t *klen, *val;
	size_t n, kcap;
};
/* Adds a copy of k, or replaces the value of an existing key. */
int strmap_put(struct strmap *m, const char *k, uint32_t klen, uint32_t val);
int strmap_get(const struct strmap *m, const char *k, size_t klen, uint32_t *val);
void strmap_free(struct strmap *m);

/* (left id, right id) -> (rank, merged id) */
struct pairmap {
	uint64_t *key;       /* (cap) (left + 1) << 32 | right, 0 = empty */
	uint32_t *rank, *id;
	size_t cap, n;
};
int pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id);
int pairmap_get(const struct pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *id);
void pairmap_free(struct pairmap *m);

static inline uint64_t tok_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull ^ n;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w;
		__builtin_memcpy(&w, p + i, 8);
		h = (h ^ w) * 0x100000001b3ull;
		h ^= h >> 29;
	}
	for (; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
	h ^= h >> 32;
	h *= 0xd6e8feb86659fd93ull;
	return h ^ (h >> 32);
}

/* ---------------------------------------------------------------------- */
/* pipeline components                                                    */

struct tok_pattern {           /* Split / Replace pattern */
	int is_regex;
	char *str;                 /* literal string, or the regex source */
	size_t len;
	pcre2_code *re;
};

enum norm_type { NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD, NORM_REPLACE, NORM_PREPEND,
                 NORM_LOWERCASE, NORM_STRIP, NORM_SEQUENCE };
struct normalizer {
	enum norm_type type;
	struct tok_pattern pat;            /* Replace */
	char *content;                     /* Replace content, Prepend prepend */
	size_t content_len;
	int strip_left, strip_right;       /* Strip */
	struct normalizer *items;          /* Sequence */
	size_t nitems;
};

enum split_behavior { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT,
                      SPLIT_CONTIGUOUS };
/* Digits, Whitespace, WhitespaceSplit and Punctuation are loaded as the
 * equivalent Split (a one-character or class regex and a behavior). */
enum pre_type { PRE_BYTELEVEL, PRE_SPLIT, PRE_METASPACE, PRE_SEQUENCE };
enum prepend_scheme { PREPEND_ALWAYS, PREPEND_NEVER, PREPEND_FIRST };
struct pretok {
	enum pre_type type;
	int add_prefix_space, use_regex;   /* ByteLevel */
	struct tok_pattern pat;            /* Split; ByteLevel's regex */
	enum split_behavior behavior;      /* Split, Punctuation */
	int invert;                        /* Split */
	char rep[8];                       /* Metaspace replacement (UTF-8) */
	size_t rep_len;
	enum prepend_scheme prepend;       /* Metaspace */
	int split;                         /* Metaspace */
	struct pretok *items;              /* Sequence */
	size_t nitems;
};

enum dec_type { DEC_BYTELEVEL, DEC_METASPACE, DEC_REPLACE, DEC_BYTEFALLBACK, DEC_FUSE, DEC_STRIP,
                DEC_SEQUENCE };
struct decoder {
	enum dec_type type;
	struct tok_pattern pat;            /* Replace */
	char *content;                     /* Replace */
	size_t content_len;
	uint32_t strip_char;               /* Strip */
	int strip_start, strip_stop;       /* Strip */
	char rep[8];                       /* Metaspace */
	size_t rep_len;
	enum prepend_scheme prepend;       /* Metaspace */
	struct decoder *items;             /* Sequence */
	size_t nitems;
};

struct added_token {
	char *content;
	size_t len;
	uint32_t id;
	int special, lstrip, rstrip, single_word, normalized;
};

/* A byte trie of added-token contents, for leftmost-longest matching. */
struct trie {
	struct pairmap edges;      /* (node, byte) -> child */
	int32_t *token;            /* (nnodes) index into added tokens ending here, or -1 */
	uint8_t first[256];        /* 1 for the first bytes of the contents */
	size_t nnodes, cap;
};

/* The immutable part of a tokenizer, shared by its handles. */
struct tok_core {
	char *path;
	int refs;
	/* model: BPE */
	uint32_t vocab_size;               /* 1 + the largest id of vocab and added tokens */
	char **id_str;                     /* (vocab_size) token strings, NULL for holes */
	uint32_t *id_len;
	struct strmap vocab;               /* model vocabulary */
	struct pairmap merges;
	int byte_fallback, ignore_merges, fuse_unk, has_unk;
	uint32_t unk_id;
	char *cont_prefix, *eow_suffix;
	size_t cont_prefix_len, eow_suffix_len;
	int32_t byte_id[256];              /* <0xXX> ids for byte_fallback, -1 if absent */
	/* A word is cut before each U+2581 (▁) that follows another character
	 * before BPE (short words hit the word cache) when few vocabulary
	 * tokens hold such a junction: BPE only makes vocabulary tokens, so it
	 * can merge across a junction only into one of these, and no cut is
	 * made where one of them matches the text across the junction.  Exact. */
	int cut_before_meta;
	struct { const char *s; size_t len, at; } span[64];   /* junction at s + at */
	size_t nspan;
	/* pipeline */
	struct normalizer *norm;           /* NULL: none */
	struct pretok *pre;
	struct decoder *dec;
	/* added tokens */
	struct added_token *added;
	size_t nadded;
	struct trie trie_raw, trie_norm;   /* normalized = false / true tokens */
	uint8_t *is_special;               /* (vocab_size) */
	int32_t bos, eos;
};

/* A word cache per handle: pre-token bytes -> ids. */
struct tok_cache {
	uint64_t *hash;            /* (cap) 0 = empty */
	uint32_t *koff, *klen, *voff, *vlen;
	struct tstr keys;
	uint32_t *ids;
	size_t nids, idcap, n, cap;
};

struct lspo_tokenizer {
	struct tok_core *core;
	struct tok_cache cache;
	struct pieces a, b, c;             /* scratch */
	struct tstr s1, s2;
	pcre2_match_data *md;
	/* BPE scratch: symbols of one word and the merge heap */
	uint32_t *w_id;
	int32_t *w_prev, *w_next;
	struct heap_ent { uint32_t rank, pos, id; } *heap;
	size_t wcap, hcap;
	size_t *m;                         /* pattern match ranges */
	size_t mcap;
};

/* tok_load.c */
int tok_core_load(const char *path, struct tok_core **out);
void tok_core_free(struct tok_core *c);
void pattern_free(struct tok_pattern *p);
void normalizer_free(struct normalizer *n);
void pretok_free(struct pretok *p);
void decoder_free(struct decoder *d);
extern const uint32_t tok_byte_char[256];     /* ByteLevel: byte -> code point */

/* tok_text.c: normalizers and pre-tokenizers.  Each reads `in` and appends
 * its result to `out`. */
int tok_normalize(struct lspo_tokenizer *t, const struct normalizer *n, const char *p, size_t len,
                  struct tstr *out);
int tok_pretokenize(struct lspo_tokenizer *t, const struct pretok *pre, struct pieces *in,
                    struct pieces *out);
/* Appends the [start, end) ranges of pattern matches in (p, n) to *m
 * (pairs), growing it. */
int pattern_find(struct lspo_tokenizer *t, const struct tok_pattern *pat, const char *p, size_t n,
                 size_t **m, size_t *nm, size_t *cap);
int pattern_replace(struct lspo_tokenizer *t, const struct tok_pattern *pat, const char *p,
                    size_t n, const char *rep, size_t rep_len, struct tstr *out);

/* tok_bpe.c: the BPE model on one pre-token; appends ids (tok_bpe_piece
 * first cuts the piece where cut_before_meta allows). */
int tok_bpe_piece(struct lspo_tokenizer *t, const char *p, size_t n, uint32_t **ids, size_t *nids,
                  size_t *cap);
int tok_bpe_word(struct lspo_tokenizer *t, const char *p, size_t n, uint32_t **ids, size_t *nids,
                 size_t *cap);
int trie_add(struct trie *tr, const char *p, size_t n, int32_t token);
void trie_free(struct trie *tr);
/* Longest added token starting at p (max n bytes): its index, or -1. */
int32_t trie_longest(const struct trie *tr, const char *p, size_t n, size_t *len);
void cache_free(struct tok_cache *c);

/* Unicode White_Space (Rust's char::is_whitespace). */
int tok_is_space(uint32_t cp);

/* tok_decode.c */
int tok_decode_tokens(const struct decoder *d, struct tstr *toks, size_t *ntoks);

#endif
