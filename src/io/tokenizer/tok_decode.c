/*
 * tok_decode.c - the decoders of a tokenizer.json, on a list of token
 * strings, as Hugging Face tokenizers' decode_chain: ByteLevel (characters
 * back to bytes, then lossy UTF-8), Metaspace, Replace, ByteFallback
 * (<0xXX> runs to text, U+FFFD per byte if invalid), Fuse, Strip, Sequence.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tok_internal.h"

static int16_t inv[324];
static pthread_once_t inv_once = PTHREAD_ONCE_INIT;

static void inv_init(void)
{
	for (int i = 0; i < 324; i++)
		inv[i] = -1;
	for (int b = 0; b < 256; b++)
		inv[tok_byte_char[b]] = (int16_t)b;
}

static int byte_of_char(uint32_t cp)
{
	pthread_once(&inv_once, inv_init);
	return cp < 324 ? inv[cp] : -1;
}

static int fuse(struct tstr *toks, size_t *n)
{
	for (size_t i = 1; i < *n; i++) {
		if (tstr_add(&toks[0], toks[i].p, toks[i].n))
			return LSPO_ENOMEM;
		toks[i].n = 0;
	}
	if (*n && !toks[0].p && tstr_add(&toks[0], "", 0))
		return LSPO_ENOMEM;
	if (*n > 1)
		*n = 1;
	return LSPO_OK;
}

static int set_tok(struct tstr *t, const struct tstr *src)
{
	t->n = 0;
	return tstr_add(t, src->p ? src->p : "", src->n);
}

int tok_decode_tokens(const struct decoder *d, struct tstr *toks, size_t *n)
{
	struct tstr s = { 0 };
	int rc = LSPO_OK;
	switch (d->type) {
	case DEC_FUSE:
		return fuse(toks, n);
	case DEC_BYTELEVEL: {
		struct tstr raw = { 0 };
		for (size_t i = 0; i < *n && !rc; i++) {
			/* a token whose characters all map back gives bytes, else its text */
			int all = 1;
			for (size_t k = 0; k < toks[i].n && all;) {
				size_t l;
				all = byte_of_char(utf8_get(toks[i].p + k, &l)) >= 0;
				k += l;
			}
			for (size_t k = 0; k < toks[i].n && !rc;) {
				size_t l;
				uint32_t cp = utf8_get(toks[i].p + k, &l);
				if (all) {
					char b = (char)byte_of_char(cp);
					rc = tstr_add(&raw, &b, 1);
				} else {
					rc = tstr_add(&raw, toks[i].p + k, l);
				}
				k += l;
			}
		}
		if (!rc)
			rc = utf8_lossy(&s, raw.p ? raw.p : "", raw.n);
		free(raw.p);
		if (!rc && *n) {
			rc = set_tok(&toks[0], &s);
			*n = 1;
		}
		free(s.p);
		return rc;
	}
	case DEC_METASPACE:
		for (size_t i = 0; i < *n && !rc; i++) {
			s.n = 0;
			for (size_t k = 0; k < toks[i].n && !rc;) {
				if (toks[i].n - k >= d->rep_len && !memcmp(toks[i].p + k, d->rep, d->rep_len)) {
					if (!(i == 0 && d->prepend != PREPEND_NEVER))
						rc = tstr_add(&s, " ", 1);
					k += d->rep_len;
				} else {
					rc = tstr_add(&s, toks[i].p + k, 1);
					k++;
				}
			}
			if (!rc)
				rc = set_tok(&toks[i], &s);
		}
		free(s.p);
		return rc;
	case DEC_REPLACE: {
		struct lspo_tokenizer scratch = { 0 };
		struct tok_core core = { .path = (char *)"decoder" };
		scratch.core = &core;
		for (size_t i = 0; i < *n && !rc; i++) {
			s.n = 0;
			rc = pattern_replace(&scratch, &d->pat, toks[i].p ? toks[i].p : "", toks[i].n,
			                     d->content, d->content_len, &s);
			if (!rc)
				rc = set_tok(&toks[i], &s);
		}
		if (scratch.md)
			pcre2_match_data_free(scratch.md);
		free(scratch.m);
		free(s.p);
		return rc;
	}
	case DEC_BYTEFALLBACK: {
		size_t w = 0;
		struct tstr bytes = { 0 };
		for (size_t i = 0; i <= *n && !rc; i++) {
			int byte = -1;
			if (i < *n && toks[i].n == 6 && !memcmp(toks[i].p, "<0x", 3) && toks[i].p[5] == '>') {
				char hex[3] = { toks[i].p[3], toks[i].p[4], 0 }, *end;
				long v = strtol(hex, &end, 16);
				if (*end == 0 && end == hex + 2 && hex[0] != '-' && hex[0] != '+' && hex[0] != ' ')
					byte = (int)v;
			}
			if (byte >= 0) {
				char b = (char)byte;
				rc = tstr_add(&bytes, &b, 1);
				continue;
			}
			if (bytes.n) {
				/* flushed as one token if valid UTF-8, else one U+FFFD per byte;
				 * the output never outgrows the input (w <= i - bytes.n + ...) */
				if (utf8_check(bytes.p, bytes.n) == bytes.n) {
					toks[w].n = 0;
					rc = tstr_add(&toks[w++], bytes.p, bytes.n);
				} else {
					for (size_t k = 0; k < bytes.n && !rc; k++) {
						toks[w].n = 0;
						rc = tstr_add(&toks[w++], "\xef\xbf\xbd", 3);
					}
				}
				bytes.n = 0;
			}
			if (i < *n && w != i) {
				struct tstr tmp = toks[w];
				toks[w] = toks[i];
				toks[i] = tmp;
			}
			if (i < *n)
				w++;
		}
		free(bytes.p);
		*n = w;
		return rc;
	}
	case DEC_STRIP:
		for (size_t i = 0; i < *n; i++) {
			const char *p = toks[i].p;
			size_t a = 0, b = toks[i].n, l;
			for (int k = 0; k < d->strip_start && a < b; k++) {
				if (utf8_get(p + a, &l) != d->strip_char)
					break;
				a += l;
			}
			for (int k = 0; k < d->strip_stop && b > a; k++) {
				size_t j = b - 1;
				while (j > a && ((unsigned char)p[j] & 0xc0) == 0x80)
					j--;
				if (utf8_get(p + j, &l) != d->strip_char)
					break;
				b = j;
			}
			memmove(toks[i].p, p + a, b - a);
			toks[i].n = b - a;
			if (toks[i].p)
				toks[i].p[toks[i].n] = 0;
		}
		return LSPO_OK;
	case DEC_SEQUENCE:
		for (size_t i = 0; i < d->nitems && !rc; i++)
			rc = tok_decode_tokens(&d->items[i], toks, n);
		return rc;
	}
	return LSPO_EINVAL;
}
