/*
 * tok_bpe.c - the BPE model of a tokenizer.json on one pre-token, as Hugging
 * Face's tokenizers does it: characters (with continuing_subword_prefix /
 * end_of_word_suffix) looked up in the vocabulary, else byte-fallback
 * <0xXX> tokens, else the unknown token (fused if fuse_unk); then merges
 * applied lowest rank first, leftmost first among equal ranks.  Also the
 * hash maps, the added-token trie and the per-handle word cache.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "tok_internal.h"

/* ---------------------------------------------------------------------- */
/* hash maps                                                              */

static int strmap_grow(struct strmap *m)
{
	size_t cap = m->cap ? 2 * m->cap : 1024;
	uint32_t *slot = calloc(cap, sizeof(*slot));
	if (!slot)
		return LSPO_ENOMEM;
	for (size_t i = 0; i < m->n; i++) {
		size_t h = tok_hash(m->key[i], m->klen[i]) & (cap - 1);
		while (slot[h])
			h = (h + 1) & (cap - 1);
		slot[h] = (uint32_t)i + 1;
	}
	free(m->slot);
	m->slot = slot;
	m->cap = cap;
	return LSPO_OK;
}

int strmap_get(const struct strmap *m, const char *k, size_t klen, uint32_t *val)
{
	if (!m->cap)
		return 0;
	size_t h = tok_hash(k, klen) & (m->cap - 1);
	for (uint32_t e; (e = m->slot[h]); h = (h + 1) & (m->cap - 1))
		if (m->klen[e - 1] == klen && !memcmp(m->key[e - 1], k, klen)) {
			*val = m->val[e - 1];
			return 1;
		}
	return 0;
}

int strmap_put(struct strmap *m, const char *k, uint32_t klen, uint32_t val)
{
	if (2 * (m->n + 1) > m->cap && strmap_grow(m))
		return LSPO_ENOMEM;
	size_t h = tok_hash(k, klen) & (m->cap - 1);
	for (uint32_t e; (e = m->slot[h]); h = (h + 1) & (m->cap - 1))
		if (m->klen[e - 1] == klen && !memcmp(m->key[e - 1], k, klen)) {
			m->val[e - 1] = val;
			return LSPO_OK;
		}
	if (m->n == m->kcap) {
		size_t kc = m->kcap ? 2 * m->kcap : 1024;
		char **key = realloc(m->key, kc * sizeof(*key));
		if (key)
			m->key = key;
		uint32_t *kl = realloc(m->klen, kc * sizeof(*kl));
		if (kl)
			m->klen = kl;
		uint32_t *v = realloc(m->val, kc * sizeof(*v));
		if (v)
			m->val = v;
		if (!key || !kl || !v)
			return LSPO_ENOMEM;
		m->kcap = kc;
	}
	char *copy = malloc(klen + 1);
	if (!copy)
		return LSPO_ENOMEM;
	memcpy(copy, k, klen);
	copy[klen] = 0;
	m->key[m->n] = copy;
	m->klen[m->n] = klen;
	m->val[m->n] = val;
	m->slot[h] = (uint32_t)++m->n;
	return LSPO_OK;
}

void strmap_free(struct strmap *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->key[i]);
	free(m->slot);
	free(m->key);
	free(m->klen);
	free(m->val);
	memset(m, 0, sizeof(*m));
}

static inline uint64_t pair_key(uint32_t a, uint32_t b) { return ((uint64_t)a + 1) << 32 | b; }

static inline size_t pair_slot(uint64_t k, size_t cap)
{
	k ^= k >> 31;
	k *= 0x9e3779b97f4a7c15ull;
	return (size_t)(k >> 17) & (cap - 1);
}

int pairmap_put(struct pairmap *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t id)
{
	if (2 * (m->n + 1) > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 1024;
		uint64_t *key = calloc(cap, sizeof(*key));
		uint32_t *r = malloc(cap * sizeof(*r)), *v = malloc(cap * sizeof(*v));
		if (!key || !r || !v) {
			free(key);
			free(r);
			free(v);
			return LSPO_ENOMEM;
		}
		for (size_t i = 0; i < m->cap; i++)
			if (m->key[i]) {
				size_t h = pair_slot(m->key[i], cap);
				while (key[h])
					h = (h + 1) & (cap - 1);
				key[h] = m->key[i];
				r[h] = m->rank[i];
				v[h] = m->id[i];
			}
		free(m->key);
		free(m->rank);
		free(m->id);
		m->key = key;
		m->rank = r;
		m->id = v;
		m->cap = cap;
	}
	uint64_t k = pair_key(a, b);
	size_t h = pair_slot(k, m->cap);
	while (m->key[h] && m->key[h] != k)
		h = (h + 1) & (m->cap - 1);
	if (!m->key[h])
		m->n++;
	m->key[h] = k;
	m->rank[h] = rank;
	m->id[h] = id;
	return LSPO_OK;
}

int pairmap_get(const struct pairmap *m, uint32_t a, uint32_t b, uint32_t *rank, uint32_t *id)
{
	if (!m->cap)
		return 0;
	uint64_t k = pair_key(a, b);
	for (size_t h = pair_slot(k, m->cap); m->key[h]; h = (h + 1) & (m->cap - 1))
		if (m->key[h] == k) {
			*rank = m->rank[h];
			*id = m->id[h];
			return 1;
		}
	return 0;
}

void pairmap_free(struct pairmap *m)
{
	free(m->key);
	free(m->rank);
	free(m->id);
	memset(m, 0, sizeof(*m));
}

/* ---------------------------------------------------------------------- */
/* added-token trie                                                       */

int trie_add(struct trie *tr, const char *p, size_t n, int32_t token)
{
	if (!tr->nnodes) {
		tr->cap = 64;
		if (!(tr->token = malloc(tr->cap * sizeof(*tr->token))))
			return LSPO_ENOMEM;
		tr->token[0] = -1;
		tr->nnodes = 1;
	}
	uint32_t node = 0;
	if (n)
		tr->first[(unsigned char)p[0]] = 1;
	for (size_t i = 0; i < n; i++) {
		uint32_t r, child;
		if (pairmap_get(&tr->edges, node, (unsigned char)p[i], &r, &child)) {
			node = child;
			continue;
		}
		if (tr->nnodes == tr->cap) {
			int32_t *t = realloc(tr->token, 2 * tr->cap * sizeof(*t));
			if (!t)
				return LSPO_ENOMEM;
			tr->token = t;
			tr->cap *= 2;
		}
		child = (uint32_t)tr->nnodes++;
		tr->token[child] = -1;
		if (pairmap_put(&tr->edges, node, (unsigned char)p[i], 0, child))
			return LSPO_ENOMEM;
		node = child;
	}
	if (tr->token[node] < 0)   /* the first of duplicate contents wins */
		tr->token[node] = token;
	return LSPO_OK;
}

int32_t trie_longest(const struct trie *tr, const char *p, size_t n, size_t *len)
{
	int32_t best = -1;
	uint32_t node = 0, r, child;
	if (!tr->nnodes || !n || !tr->first[(unsigned char)p[0]])
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (!pairmap_get(&tr->edges, node, (unsigned char)p[i], &r, &child))
			break;
		node = child;
		if (tr->token[node] >= 0) {
			best = tr->token[node];
			*len = i + 1;
		}
	}
	return best;
}

void trie_free(struct trie *tr)
{
	pairmap_free(&tr->edges);
	free(tr->token);
	memset(tr, 0, sizeof(*tr));
}

/* ---------------------------------------------------------------------- */
/* word cache                                                             */

#define CACHE_MAX_WORD 256
#define CACHE_SLOTS (1u << 17)

void cache_free(struct tok_cache *c)
{
	free(c->hash);
	free(c->koff);
	free(c->klen);
	free(c->voff);
	free(c->vlen);
	free(c->keys.p);
	free(c->ids);
	memset(c, 0, sizeof(*c));
}

static void cache_clear(struct tok_cache *c)
{
	memset(c->hash, 0, c->cap * sizeof(*c->hash));
	c->n = 0;
	c->keys.n = 0;
	c->nids = 0;
}

static int cache_get(const struct tok_cache *c, uint64_t h, const char *p, size_t n,
                     const uint32_t **ids, size_t *nids)
{
	if (!c->cap)
		return 0;
	for (size_t s = h & (c->cap - 1); c->hash[s]; s = (s + 1) & (c->cap - 1))
		if (c->hash[s] == h && c->klen[s] == n && !memcmp(c->keys.p + c->koff[s], p, n)) {
			*ids = c->ids + c->voff[s];
			*nids = c->vlen[s];
			return 1;
		}
	return 0;
}

static void cache_put(struct tok_cache *c, uint64_t h, const char *p, size_t n,
                      const uint32_t *ids, size_t nids)
{
	if (!c->cap) {
		c->cap = CACHE_SLOTS;
		c->hash = calloc(c->cap, sizeof(*c->hash));
		c->koff = malloc(c->cap * sizeof(*c->koff));
		c->klen = malloc(c->cap * sizeof(*c->klen));
		c->voff = malloc(c->cap * sizeof(*c->voff));
		c->vlen = malloc(c->cap * sizeof(*c->vlen));
		c->idcap = 4 * c->cap;
		c->ids = malloc(c->idcap * sizeof(*c->ids));
		if (!c->hash || !c->koff || !c->klen || !c->voff || !c->vlen || !c->ids) {
			cache_free(c);
			return;   /* no cache: slower, still correct */
		}
	}
	if (2 * (c->n + 1) > c->cap || c->nids + nids > c->idcap || c->keys.n + n > (1u << 30))
		cache_clear(c);
	if (c->nids + nids > c->idcap || tstr_add(&c->keys, p, n))
		return;
	size_t s = h & (c->cap - 1);
	while (c->hash[s])
		s = (s + 1) & (c->cap - 1);
	c->hash[s] = h;
	c->koff[s] = (uint32_t)(c->keys.n - n);
	c->klen[s] = (uint32_t)n;
	c->voff[s] = (uint32_t)c->nids;
	c->vlen[s] = (uint32_t)nids;
	memcpy(c->ids + c->nids, ids, nids * sizeof(*ids));
	c->nids += nids;
	c->n++;
}

/* ---------------------------------------------------------------------- */
/* BPE                                                                    */

static int push_id(uint32_t **ids, size_t *n, size_t *cap, uint32_t id)
{
	if (*n == *cap) {
		size_t nc = *cap ? 2 * *cap : 256;
		uint32_t *p = realloc(*ids, nc * sizeof(*p));
		if (!p)
			return LSPO_ENOMEM;
		*ids = p;
		*cap = nc;
	}
	(*ids)[(*n)++] = id;
	return LSPO_OK;
}

static inline int heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
	return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(struct lspo_tokenizer *t, size_t *n, struct heap_ent e)
{
	if (*n == t->hcap) {
		size_t nc = t->hcap ? 2 * t->hcap : 256;
		struct heap_ent *h = realloc(t->heap, nc * sizeof(*h));
		if (!h)
			return LSPO_ENOMEM;
		t->heap = h;
		t->hcap = nc;
	}
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&e, &t->heap[p]))
			break;
		t->heap[i] = t->heap[p];
		i = p;
	}
	t->heap[i] = e;
	return LSPO_OK;
}

static struct heap_ent heap_pop(struct lspo_tokenizer *t, size_t *n)
{
	struct heap_ent top = t->heap[0], last = t->heap[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && heap_less(&t->heap[c + 1], &t->heap[c]))
			c++;
		if (!heap_less(&t->heap[c], &last))
			break;
		t->heap[i] = t->heap[c];
		i = c;
	}
	if (*n)
		t->heap[i] = last;
	return top;
}

static int add_sym(struct lspo_tokenizer *t, size_t *ns, uint32_t id)
{
	if (*ns == t->wcap) {
		size_t nc = t->wcap ? 2 * t->wcap : 256;
		uint32_t *a = realloc(t->w_id, nc * sizeof(*a));
		if (a)
			t->w_id = a;
		int32_t *b = realloc(t->w_prev, nc * sizeof(*b));
		if (b)
			t->w_prev = b;
		int32_t *c = realloc(t->w_next, nc * sizeof(*c));
		if (c)
			t->w_next = c;
		if (!a || !b || !c)
			return LSPO_ENOMEM;
		t->wcap = nc;
	}
	t->w_id[*ns] = id;
	t->w_prev[*ns] = (int32_t)*ns - 1;
	t->w_next[*ns] = (int32_t)*ns + 1;
	++*ns;
	return LSPO_OK;
}

static int try_pair(struct lspo_tokenizer *t, size_t *nh, int32_t pos)
{
	uint32_t rank, id;
	int32_t nx = t->w_next[pos];
	if (nx < 0 || !pairmap_get(&t->core->merges, t->w_id[pos], t->w_id[nx], &rank, &id))
		return LSPO_OK;
	return heap_push(t, nh, (struct heap_ent){ rank, (uint32_t)pos, id });
}

int tok_bpe_word(struct lspo_tokenizer *t, const char *p, size_t n, uint32_t **ids, size_t *nids,
                 size_t *cap)
{
	const struct tok_core *c = t->core;
	uint32_t id;
	if (n == 0)
		return LSPO_OK;
	if (c->ignore_merges && strmap_get(&c->vocab, p, n, &id))
		return push_id(ids, nids, cap, id);
	uint64_t h = 0;
	if (n <= CACHE_MAX_WORD) {
		const uint32_t *hit;
		size_t nhit;
		h = tok_hash(p, n) | 1;
		if (cache_get(&t->cache, h, p, n, &hit, &nhit)) {
			for (size_t i = 0; i < nhit; i++)
				if (push_id(ids, nids, cap, hit[i]))
					return LSPO_ENOMEM;
			return LSPO_OK;
		}
	}
	/* the symbols */
	size_t ns = 0;
	int have_unk = 0;
	uint32_t unk = c->unk_id;
	char sbuf[64];
	for (size_t i = 0; i < n;) {
		size_t cl = utf8_len((unsigned char)p[i]);
		if (i + cl > n)
			cl = n - i;
		int first = i == 0, last = i + cl == n;
		const char *s = p + i;
		size_t sl = cl;
		char *heapbuf = NULL;
		if ((c->cont_prefix && !first) || (c->eow_suffix && last)) {
			size_t need = cl + (first ? 0 : c->cont_prefix_len) + (last ? c->eow_suffix_len : 0);
			char *b = need <= sizeof(sbuf) ? sbuf : (heapbuf = malloc(need));
			if (!b)
				return LSPO_ENOMEM;
			sl = 0;
			if (c->cont_prefix && !first) {
				memcpy(b, c->cont_prefix, c->cont_prefix_len);
				sl = c->cont_prefix_len;
			}
			memcpy(b + sl, p + i, cl);
			sl += cl;
			if (c->eow_suffix && last) {
				memcpy(b + sl, c->eow_suffix, c->eow_suffix_len);
				sl += c->eow_suffix_len;
			}
			s = b;
		}
		int rc = LSPO_OK;
		if (strmap_get(&c->vocab, s, sl, &id)) {
			if (have_unk)
				rc = add_sym(t, &ns, unk);
			have_unk = 0;
			if (!rc)
				rc = add_sym(t, &ns, id);
		} else {
			int fell_back = 0;
			if (c->byte_fallback) {
				size_t k = 0;
				while (k < sl && c->byte_id[(unsigned char)s[k]] >= 0)
					k++;
				if (k == sl) {
					for (k = 0; k < sl && !rc; k++)
						rc = add_sym(t, &ns, (uint32_t)c->byte_id[(unsigned char)s[k]]);
					fell_back = 1;
				}
			}
			if (!fell_back && c->has_unk) {
				if (have_unk && !c->fuse_unk)
					rc = add_sym(t, &ns, unk);
				have_unk = 1;
			}
		}
		free(heapbuf);
		if (rc)
			return rc;
		i += cl;
	}
	if (have_unk && add_sym(t, &ns, unk))
		return LSPO_ENOMEM;
	if (ns == 0)
		return LSPO_OK;
	t->w_next[ns - 1] = -1;
	/* the merges */
	size_t nh = 0;
	for (size_t i = 0; i + 1 < ns; i++)
		if (try_pair(t, &nh, (int32_t)i))
			return LSPO_ENOMEM;
	while (nh) {
		struct heap_ent e = heap_pop(t, &nh);
		int32_t pos = (int32_t)e.pos, nx = t->w_next[pos];
		uint32_t rank, nid;
		if (t->w_id[pos] == UINT32_MAX || nx < 0 ||
		    !pairmap_get(&c->merges, t->w_id[pos], t->w_id[nx], &rank, &nid) || nid != e.id)
			continue;
		t->w_id[pos] = nid;
		t->w_id[nx] = UINT32_MAX;   /* removed */
		t->w_next[pos] = t->w_next[nx];
		if (t->w_next[nx] >= 0)
			t->w_prev[t->w_next[nx]] = pos;
		if (t->w_prev[pos] >= 0 && try_pair(t, &nh, t->w_prev[pos]))
			return LSPO_ENOMEM;
		if (try_pair(t, &nh, pos))
			return LSPO_ENOMEM;
	}
	size_t start = *nids;
	for (int32_t i = 0; i >= 0; i = t->w_next[i])
		if (push_id(ids, nids, cap, t->w_id[i]))
			return LSPO_ENOMEM;
	if (h)
		cache_put(&t->cache, h, p, n, *ids + start, *nids - start);
	return LSPO_OK;
}

int tok_bpe_piece(struct lspo_tokenizer *t, const char *p, size_t n, uint32_t **ids, size_t *nids,
                  size_t *cap)
{
	if (!t->core->cut_before_meta || n < 4)
		return tok_bpe_word(t, p, n, ids, nids, cap);
	const struct tok_core *c = t->core;
	size_t start = 0;
	for (size_t i = 1; i + 3 <= n; i++)
		if ((unsigned char)p[i] == 0xe2 && (unsigned char)p[i + 1] == 0x96 &&
		    (unsigned char)p[i + 2] == 0x81 &&
		    !(i >= 3 && (unsigned char)p[i - 3] == 0xe2 && (unsigned char)p[i - 2] == 0x96 &&
		      (unsigned char)p[i - 1] == 0x81)) {
			int spanned = 0;
			for (size_t k = 0; k < c->nspan && !spanned; k++)
				spanned = i >= c->span[k].at && i - c->span[k].at + c->span[k].len <= n &&
				          !memcmp(p + i - c->span[k].at, c->span[k].s, c->span[k].len);
			if (spanned)
				continue;   /* a token may merge across: no cut here */
			int rc = tok_bpe_word(t, p + start, i - start, ids, nids, cap);
			if (rc)
				return rc;
			start = i;
			i += 2;
		}
	return tok_bpe_word(t, p + start, n - start, ids, nids, cap);
}
