/*
 * tok_text.c - text handling of the tokenizer: UTF-8 helpers, pattern
 * matching (PCRE2 for regexes), the normalizers (utf8proc for Unicode
 * normalisation and case) and the pre-tokenizers, each following Hugging
 * Face tokenizers' definitions (split behaviours, prepend schemes, the
 * ByteLevel byte-to-character map).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "internal.h"
#include "tok_internal.h"

/* ---------------------------------------------------------------------- */
/* strings and pieces                                                     */

int tstr_add(struct tstr *s, const void *p, size_t n)
{
	if (s->n + n + 1 > s->cap) {
		size_t nc = s->cap ? s->cap : 256;
		while (nc < s->n + n + 1)
			nc *= 2;
		char *q = realloc(s->p, nc);
		if (!q)
			return LSPO_ENOMEM;
		s->p = q;
		s->cap = nc;
	}
	if (n)
		memcpy(s->p + s->n, p, n);
	s->n += n;
	s->p[s->n] = 0;
	return LSPO_OK;
}

int pieces_add(struct pieces *l, const char *p, size_t n, int first)
{
	if (n == 0)
		return LSPO_OK;   /* empty pieces are dropped, as in HF */
	if (l->n == l->cap) {
		size_t nc = l->cap ? 2 * l->cap : 64;
		size_t *o = realloc(l->off, nc * sizeof(*o));
		if (o)
			l->off = o;
		size_t *len = realloc(l->len, nc * sizeof(*len));
		if (len)
			l->len = len;
		uint8_t *f = realloc(l->first, nc);
		if (f)
			l->first = f;
		if (!o || !len || !f)
			return LSPO_ENOMEM;
		l->cap = nc;
	}
	l->off[l->n] = l->buf.n;
	l->len[l->n] = n;
	l->first[l->n] = (uint8_t)first;
	l->n++;
	return tstr_add(&l->buf, p, n);
}

void pieces_clear(struct pieces *l)
{
	l->n = 0;
	l->buf.n = 0;
}

void pieces_free(struct pieces *l)
{
	free(l->buf.p);
	free(l->off);
	free(l->len);
	free(l->first);
	memset(l, 0, sizeof(*l));
}

uint32_t utf8_get(const char *p, size_t *len)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t l = utf8_len(s[0]);
	*len = l;
	switch (l) {
	case 1: return s[0];
	case 2: return (uint32_t)(s[0] & 0x1f) << 6 | (s[1] & 0x3f);
	case 3: return (uint32_t)(s[0] & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
	default:
		return (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 |
		       (uint32_t)(s[2] & 0x3f) << 6 | (s[3] & 0x3f);
	}
}

size_t utf8_put(uint32_t cp, char *out)
{
	unsigned char *o = (unsigned char *)out;
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xc0 | cp >> 6);
		o[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xe0 | cp >> 12);
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (unsigned char)(0xf0 | cp >> 18);
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t valid_seq(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	size_t l = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
	if (n < 2)
		return 0;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < l; i++)
		if (i >= n || (s[i] & 0xc0) != 0x80)
			return 0;
	return l;
}

size_t utf8_check(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;
	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t l = valid_seq(s + i, n - i);
		if (!l)
			return i;
		i += l;
	}
	return n;
}

int utf8_lossy(struct tstr *out, const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0, start = 0;
	while (i < n) {
		size_t l = valid_seq(s + i, n - i);
		if (l) {
			i += l;
			continue;
		}
		if (tstr_add(out, p + start, i - start) || tstr_add(out, "\xef\xbf\xbd", 3))
			return LSPO_ENOMEM;
		/* skip the maximal prefix of a valid sequence (at least one byte) */
		size_t k = 1;
		unsigned char c = s[i];
		if (c >= 0xc2 && c <= 0xf4) {
			size_t want = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
			unsigned char lo = 0x80, hi = 0xbf;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
			else if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
			if (i + 1 < n && s[i + 1] >= lo && s[i + 1] <= hi) {
				k = 2;
				while (k < want && i + k < n && (s[i + k] & 0xc0) == 0x80)
					k++;
			}
		}
		i += k;
		start = i;
	}
	return tstr_add(out, p + start, n - start);
}

int tok_is_space(uint32_t cp)
{
	return (cp >= 9 && cp <= 13) || cp == 32 || cp == 0x85 || cp == 0xa0 || cp == 0x1680 ||
	       (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 || cp == 0x202f ||
	       cp == 0x205f || cp == 0x3000;
}

/* ---------------------------------------------------------------------- */
/* patterns                                                               */

static int push_range(size_t **m, size_t *nm, size_t *cap, size_t a, size_t b)
{
	if (*nm + 2 > *cap) {
		size_t nc = *cap ? 2 * *cap : 256;
		size_t *q = realloc(*m, nc * sizeof(*q));
		if (!q)
			return LSPO_ENOMEM;
		*m = q;
		*cap = nc;
	}
	(*m)[(*nm)++] = a;
	(*m)[(*nm)++] = b;
	return LSPO_OK;
}

int pattern_find(struct lspo_tokenizer *t, const struct tok_pattern *pat, const char *p, size_t n,
                 size_t **m, size_t *nm, size_t *cap)
{
	*nm = 0;
	if (!pat->is_regex) {
		for (size_t i = 0; i + pat->len <= n;) {
			const char *hit = memmem(p + i, n - i, pat->str, pat->len);
			if (!hit)
				break;
			size_t a = (size_t)(hit - p);
			if (push_range(m, nm, cap, a, a + pat->len))
				return LSPO_ENOMEM;
			i = a + pat->len;
		}
		return LSPO_OK;
	}
	if (!t->md && !(t->md = pcre2_match_data_create(4, NULL)))
		return LSPO_ENOMEM;
	size_t off = 0;
	while (off <= n) {
		int rc = pcre2_match(pat->re, (PCRE2_SPTR)p, n, off, PCRE2_NO_UTF_CHECK, t->md, NULL);
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0) {
			PCRE2_UCHAR msg[256];
			pcre2_get_error_message(rc, msg, sizeof(msg));
			LSPO_FAIL(LSPO_EINVAL, "%s: regex /%s/ failed: %s", t->core->path,
			          pat->str ? pat->str : "(ByteLevel)", (char *)msg);
		}
		PCRE2_SIZE *ov = pcre2_get_ovector_pointer(t->md);
		if (push_range(m, nm, cap, ov[0], ov[1]))
			return LSPO_ENOMEM;
		if (ov[1] > ov[0]) {
			off = ov[1];
		} else {   /* an empty match: go on after the next character */
			if (ov[1] >= n)
				break;
			off = ov[1] + utf8_len((unsigned char)p[ov[1]]);
		}
	}
	return LSPO_OK;
}

int pattern_replace(struct lspo_tokenizer *t, const struct tok_pattern *pat, const char *p,
                    size_t n, const char *rep, size_t rep_len, struct tstr *out)
{
	size_t nm;
	int rc = pattern_find(t, pat, p, n, &t->m, &nm, &t->mcap);
	if (rc)
		return rc;
	size_t prev = 0;
	for (size_t i = 0; i < nm; i += 2) {
		if (tstr_add(out, p + prev, t->m[i] - prev) || tstr_add(out, rep, rep_len))
			return LSPO_ENOMEM;
		prev = t->m[i + 1];
	}
	return tstr_add(out, p + prev, n - prev);
}

/* ---------------------------------------------------------------------- */
/* normalizers                                                            */

static int unicode_norm(const char *p, size_t n, utf8proc_option_t opt, struct tstr *out)
{
	size_t i = 0;
	while (i < n && (unsigned char)p[i] < 0x80)
		i++;
	if (i == n)   /* ASCII is invariant under NFC, NFD, NFKC and NFKD */
		return tstr_add(out, p, n);
	utf8proc_uint8_t *r = NULL;
	utf8proc_ssize_t len = utf8proc_map((const utf8proc_uint8_t *)p, (utf8proc_ssize_t)n, &r,
	                                    opt | UTF8PROC_STABLE);
	if (len < 0) {
		free(r);
		LSPO_FAIL(LSPO_EINVAL, "unicode normalisation failed: %s", utf8proc_errmsg(len));
	}
	int rc = tstr_add(out, r, (size_t)len);
	free(r);
	return rc;
}

int tok_normalize(struct lspo_tokenizer *t, const struct normalizer *nz, const char *p, size_t n,
                  struct tstr *out)
{
	switch (nz->type) {
	case NORM_NFC: return unicode_norm(p, n, UTF8PROC_COMPOSE, out);
	case NORM_NFD: return unicode_norm(p, n, UTF8PROC_DECOMPOSE, out);
	case NORM_NFKC: return unicode_norm(p, n, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
	case NORM_NFKD: return unicode_norm(p, n, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
	case NORM_REPLACE:
		return pattern_replace(t, &nz->pat, p, n, nz->content, nz->content_len, out);
	case NORM_PREPEND:
		if (n && tstr_add(out, nz->content, nz->content_len))
			return LSPO_ENOMEM;
		return tstr_add(out, p, n);
	case NORM_LOWERCASE:
		for (size_t i = 0; i < n;) {
			size_t l;
			uint32_t cp = utf8_get(p + i, &l);
			char b[8];
			size_t k;
			if (cp == 0x130) {   /* İ lowercases to i + combining dot above */
				k = utf8_put('i', b);
				k += utf8_put(0x307, b + k);
			} else {
				k = utf8_put((uint32_t)utf8proc_tolower((utf8proc_int32_t)cp), b);
			}
			if (tstr_add(out, b, k))
				return LSPO_ENOMEM;
			i += l;
		}
		return LSPO_OK;
	case NORM_STRIP: {
		size_t a = 0, b = n, l;
		while (nz->strip_left && a < b && tok_is_space(utf8_get(p + a, &l)))
			a += l;
		while (nz->strip_right && b > a) {
			size_t k = b - 1;
			while (k > a && ((unsigned char)p[k] & 0xc0) == 0x80)
				k--;
			if (!tok_is_space(utf8_get(p + k, &l)))
				break;
			b = k;
		}
		return tstr_add(out, p + a, b - a);
	}
	case NORM_SEQUENCE: {
		struct tstr cur = { 0 }, next = { 0 };
		int rc = tstr_add(&cur, p, n);
		for (size_t i = 0; i < nz->nitems && !rc; i++) {
			next.n = 0;
			rc = tok_normalize(t, &nz->items[i], cur.p, cur.n, &next);
			struct tstr tmp = cur;
			cur = next;
			next = tmp;
		}
		if (!rc)
			rc = tstr_add(out, cur.p, cur.n);
		free(cur.p);
		free(next.p);
		return rc;
	}
	}
	return LSPO_EINVAL;
}

/* ---------------------------------------------------------------------- */
/* pre-tokenizers                                                         */

/* Splits one piece at the pattern's matches with HF's behaviours. */
static int split_piece(struct lspo_tokenizer *t, const struct tok_pattern *pat,
                       enum split_behavior beh, int invert, const char *p, size_t n, int first,
                       struct pieces *out)
{
	size_t nm;
	int rc = pattern_find(t, pat, p, n, &t->m, &nm, &t->mcap);
	if (rc)
		return rc;
	/* segments (start, end, is_match) covering the piece */
	size_t nseg = 0, *seg = malloc((3 * (nm + 1) + 3) * sizeof(*seg));
	if (!seg)
		return LSPO_ENOMEM;
	size_t prev = 0;
	for (size_t i = 0; i < nm; i += 2) {
		if (t->m[i] != prev) {
			seg[3 * nseg] = prev, seg[3 * nseg + 1] = t->m[i], seg[3 * nseg + 2] = 0;
			nseg++;
		}
		seg[3 * nseg] = t->m[i], seg[3 * nseg + 1] = t->m[i + 1], seg[3 * nseg + 2] = 1;
		nseg++;
		prev = t->m[i + 1];
	}
	if (prev != n) {
		seg[3 * nseg] = prev, seg[3 * nseg + 1] = n, seg[3 * nseg + 2] = 0;
		nseg++;
	}
	if (invert)
		for (size_t i = 0; i < nseg; i++)
			seg[3 * i + 2] ^= 1;
	/* merge in place; each output segment is (start, end) with flag 0 */
	size_t k = 0;
	switch (beh) {
	case SPLIT_REMOVED:
		for (size_t i = 0; i < nseg; i++)
			if (!seg[3 * i + 2]) {
				seg[3 * k] = seg[3 * i], seg[3 * k + 1] = seg[3 * i + 1];
				k++;
			}
		break;
	case SPLIT_ISOLATED:
		k = nseg;
		break;
	case SPLIT_MERGED_PREV: {
		int prev_match = 0;
		for (size_t i = 0; i < nseg; i++) {
			int is = (int)seg[3 * i + 2];
			if (is && !prev_match && k > 0) {
				seg[3 * (k - 1) + 1] = seg[3 * i + 1];
			} else {
				seg[3 * k] = seg[3 * i], seg[3 * k + 1] = seg[3 * i + 1];
				k++;
			}
			prev_match = is;
		}
		break;
	}
	case SPLIT_MERGED_NEXT: {
		/* walk backwards; the output is built from the end of seg */
		int prev_match = 0;
		size_t w = nseg;   /* output slots [w, nseg) */
		for (size_t i = nseg; i-- > 0;) {
			int is = (int)seg[3 * i + 2];
			size_t a = seg[3 * i], b = seg[3 * i + 1];
			if (is && !prev_match && w < nseg) {
				seg[3 * w] = a;
			} else {
				w--;
				seg[3 * w] = a, seg[3 * w + 1] = b;
			}
			prev_match = is;
		}
		for (size_t i = w; i < nseg; i++) {
			seg[3 * k] = seg[3 * i], seg[3 * k + 1] = seg[3 * i + 1];
			k++;
		}
		break;
	}
	case SPLIT_CONTIGUOUS: {
		int prev_flag = -1;
		for (size_t i = 0; i < nseg; i++) {
			int is = (int)seg[3 * i + 2];
			if (is == prev_flag && k > 0) {
				seg[3 * (k - 1) + 1] = seg[3 * i + 1];
			} else {
				seg[3 * k] = seg[3 * i], seg[3 * k + 1] = seg[3 * i + 1];
				k++;
			}
			prev_flag = is;
		}
		break;
	}
	}
	for (size_t i = 0; i < k && !rc; i++)
		rc = pieces_add(out, p + seg[3 * i], seg[3 * i + 1] - seg[3 * i], first && seg[3 * i] == 0);
	free(seg);
	return rc;
}

/* ByteLevel's map of every byte to a character, as UTF-8. */
static char enc[256][2];
static uint8_t enc_len[256];
static pthread_once_t enc_once = PTHREAD_ONCE_INIT;

static void enc_init(void)
{
	for (int b = 0; b < 256; b++)
		enc_len[b] = (uint8_t)utf8_put(tok_byte_char[b], enc[b]);
}

static int byte_map(const char *p, size_t n, struct tstr *out)
{
	pthread_once(&enc_once, enc_init);
	if (out->n + 2 * n + 1 > out->cap) {
		size_t nc = out->cap ? out->cap : 256;
		while (nc < out->n + 2 * n + 1)
			nc *= 2;
		char *q = realloc(out->p, nc);
		if (!q)
			return LSPO_ENOMEM;
		out->p = q;
		out->cap = nc;
	}
	char *o = out->p + out->n;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		o[0] = enc[c][0];
		o[1] = enc[c][1];
		o += enc_len[c];
	}
	out->n = (size_t)(o - out->p);
	out->p[out->n] = 0;
	return LSPO_OK;
}

static int pretok_one(struct lspo_tokenizer *t, const struct pretok *pre, const char *p, size_t n,
                      int first, struct pieces *out)
{
	struct tstr *s = &t->s1;
	int rc = LSPO_OK;
	switch (pre->type) {
	case PRE_SPLIT:
		return split_piece(t, &pre->pat, pre->behavior, pre->invert, p, n, first, out);
	case PRE_BYTELEVEL: {
		s->n = 0;
		if (pre->add_prefix_space && (n == 0 || p[0] != ' ') && tstr_add(s, " ", 1))
			return LSPO_ENOMEM;
		if (tstr_add(s, p, n))
			return LSPO_ENOMEM;
		size_t nm = 0;
		if (pre->use_regex && (rc = pattern_find(t, &pre->pat, s->p, s->n, &t->m, &nm, &t->mcap)))
			return rc;
		/* Isolated: every match and every gap between matches is a piece */
		size_t prev = 0;
		for (size_t i = 0; i <= nm && !rc; i += 2) {
			size_t a = i < nm ? t->m[i] : s->n, b = i < nm ? t->m[i + 1] : s->n;
			for (int k = 0; k < 2 && !rc; k++) {
				size_t x = k ? a : prev, y = k ? b : a;
				if (y <= x)
					continue;
				t->s2.n = 0;
				rc = byte_map(s->p + x, y - x, &t->s2);
				if (!rc)
					rc = pieces_add(out, t->s2.p, t->s2.n, first && x == 0);
			}
			prev = b;
		}
		return rc;
	}
	case PRE_METASPACE: {
		s->n = 0;
		int starts = n >= pre->rep_len && !memcmp(p, pre->rep, pre->rep_len);
		if ((pre->prepend == PREPEND_ALWAYS || (pre->prepend == PREPEND_FIRST && first)) &&
		    !starts && tstr_add(s, pre->rep, pre->rep_len))
			return LSPO_ENOMEM;
		for (size_t i = 0; i < n; i++)
			if ((p[i] == ' ' ? tstr_add(s, pre->rep, pre->rep_len) : tstr_add(s, p + i, 1)))
				return LSPO_ENOMEM;
		if (!pre->split)
			return pieces_add(out, s->p, s->n, first);
		struct tok_pattern rp = { .is_regex = 0, .str = (char *)pre->rep, .len = pre->rep_len };
		return split_piece(t, &rp, SPLIT_MERGED_NEXT, 0, s->p, s->n, first, out);
	}
	case PRE_SEQUENCE: {
		struct pieces cur = { 0 }, next = { 0 };
		rc = pieces_add(&cur, p, n, first);
		for (size_t i = 0; i < pre->nitems && !rc; i++) {
			pieces_clear(&next);
			for (size_t j = 0; j < cur.n && !rc; j++)
				rc = pretok_one(t, &pre->items[i], cur.buf.p + cur.off[j], cur.len[j],
				                cur.first[j], &next);
			struct pieces tmp = cur;
			cur = next;
			next = tmp;
		}
		for (size_t j = 0; j < cur.n && !rc; j++)
			rc = pieces_add(out, cur.buf.p + cur.off[j], cur.len[j], cur.first[j]);
		pieces_free(&cur);
		pieces_free(&next);
		return rc;
	}
	}
	return LSPO_EINVAL;
}

int tok_pretokenize(struct lspo_tokenizer *t, const struct pretok *pre, struct pieces *in,
                    struct pieces *out)
{
	for (size_t i = 0; i < in->n; i++) {
		int rc = pretok_one(t, pre, in->buf.p + in->off[i], in->len[i], in->first[i], out);
		if (rc)
			return rc;
	}
	return LSPO_OK;
}
