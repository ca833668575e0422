/*
 * tok_load.c - reads a Hugging Face tokenizer.json (jansson) into the
 * structures of tok_internal.h, checking everything it uses: an unknown or
 * unsupported type, a missing field or a merge naming an unknown token is
 * LSPO_EFORMAT naming the file and the JSON path.  Also reads the BOS/EOS
 * tokens from tokenizer_config.json beside it, when there is one.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "tok_internal.h"

/* ByteLevel's byte -> code point table (GPT-2's bytes_to_unicode): the
 * printable bytes map to themselves, the others to 256, 257, ... in order. */
const uint32_t tok_byte_char[256] = {
	256, 257, 258, 259, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 270, 271,
	272, 273, 274, 275, 276, 277, 278, 279, 280, 281, 282, 283, 284, 285, 286, 287,
	288, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47,
	48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
	64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79,
	80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95,
	96, 97, 98, 99, 100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111,
	112, 113, 114, 115, 116, 117, 118, 119, 120, 121, 122, 123, 124, 125, 126, 289,
	290, 291, 292, 293, 294, 295, 296, 297, 298, 299, 300, 301, 302, 303, 304, 305,
	306, 307, 308, 309, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321,
	322, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172, 323, 174, 175,
	176, 177, 178, 179, 180, 181, 182, 183, 184, 185, 186, 187, 188, 189, 190, 191,
	192, 193, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 204, 205, 206, 207,
	208, 209, 210, 211, 212, 213, 214, 215, 216, 217, 218, 219, 220, 221, 222, 223,
	224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234, 235, 236, 237, 238, 239,
	240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253, 254, 255,
};

/* GPT-2's pre-tokenizer regex, used by ByteLevel with use_regex. */
static const char gpt2_regex[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

#define BAD(...) LSPO_FAIL(LSPO_EFORMAT, __VA_ARGS__)

static char *dupn(const char *p, size_t n)
{
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, p, n);
		s[n] = 0;
	}
	return s;
}

/* A string member; LSPO_EFORMAT if absent or not a string (optional: NULL). */
static int get_str(const char *file, const char *where, json_t *obj, const char *key, int optional,
                   const char **out, size_t *len)
{
	json_t *v = json_object_get(obj, key);
	*out = NULL;
	if (len)
		*len = 0;
	if (!v || json_is_null(v)) {
		if (optional)
			return LSPO_OK;
		BAD("%s: %s.%s is missing (expected a string)", file, where, key);
	}
	if (!json_is_string(v))
		BAD("%s: %s.%s must be a string", file, where, key);
	*out = json_string_value(v);
	if (len)
		*len = json_string_length(v);
	return LSPO_OK;
}

static int get_bool(const char *file, const char *where, json_t *obj, const char *key, int dflt,
                    int *out)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v)) {
		*out = dflt;
		return LSPO_OK;
	}
	if (!json_is_boolean(v))
		BAD("%s: %s.%s must be true or false", file, where, key);
	*out = json_is_true(v);
	return LSPO_OK;
}

void pattern_free(struct tok_pattern *p)
{
	free(p->str);
	if (p->re)
		pcre2_code_free(p->re);
	memset(p, 0, sizeof(*p));
}

static int compile_regex(const char *file, const char *where, const char *src, size_t len,
                         pcre2_code **out)
{
	int err;
	PCRE2_SIZE at;
	*out = pcre2_compile((PCRE2_SPTR)src, len, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err,
	                     &at, NULL);
	if (!*out) {
		PCRE2_UCHAR msg[256];
		pcre2_get_error_message(err, msg, sizeof(msg));
		BAD("%s: %s: cannot compile the regex /%.*s/ at offset %zu: %s", file, where, (int)len,
		    src, (size_t)at, (char *)msg);
	}
	pcre2_jit_compile(*out, PCRE2_JIT_COMPLETE);   /* the interpreter is used if JIT fails */
	return LSPO_OK;
}

/* {"String": s} or {"Regex": r} */
static int parse_pattern(const char *file, const char *where, json_t *obj, struct tok_pattern *p)
{
	json_t *pat = json_object_get(obj, "pattern");
	if (!json_is_object(pat))
		BAD("%s: %s.pattern is missing (expected {\"String\": ...} or {\"Regex\": ...})", file,
		    where);
	json_t *s = json_object_get(pat, "String"), *r = json_object_get(pat, "Regex");
	json_t *v = s ? s : r;
	if (!v || !json_is_string(v) || (s && r))
		BAD("%s: %s.pattern must hold one string, \"String\" or \"Regex\"", file, where);
	p->is_regex = r != NULL;
	p->len = json_string_length(v);
	if (!(p->str = dupn(json_string_value(v), p->len)))
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
	if (p->is_regex)
		return compile_regex(file, where, p->str, p->len, &p->re);
	if (p->len == 0)
		BAD("%s: %s.pattern: an empty string pattern", file, where);
	return LSPO_OK;
}

static int get_type(const char *file, const char *where, json_t *obj, const char **type)
{
	if (!json_is_object(obj))
		BAD("%s: %s must be an object", file, where);
	return get_str(file, where, obj, "type", 0, type, NULL);
}

/* ---------------------------------------------------------------------- */
/* normalizers                                                            */

/* The *_free functions clear a node's contents (items included), not the
 * node itself. */
void normalizer_free(struct normalizer *n)
{
	pattern_free(&n->pat);
	free(n->content);
	for (size_t i = 0; i < n->nitems; i++)
		normalizer_free(&n->items[i]);
	free(n->items);
	memset(n, 0, sizeof(*n));
}

static int parse_normalizer(const char *file, const char *where, json_t *obj, struct normalizer *n)
{
	const char *type;
	int rc = get_type(file, where, obj, &type);
	if (rc)
		return rc;
	char sub[256];
	if (!strcmp(type, "NFC")) {
		n->type = NORM_NFC;
	} else if (!strcmp(type, "NFD")) {
		n->type = NORM_NFD;
	} else if (!strcmp(type, "NFKC")) {
		n->type = NORM_NFKC;
	} else if (!strcmp(type, "NFKD")) {
		n->type = NORM_NFKD;
	} else if (!strcmp(type, "Lowercase")) {
		n->type = NORM_LOWERCASE;
	} else if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
		const char *c;
		size_t len;
		int replace = type[0] == 'R';
		n->type = replace ? NORM_REPLACE : NORM_PREPEND;
		if ((replace && (rc = parse_pattern(file, where, obj, &n->pat))) ||
		    (rc = get_str(file, where, obj, replace ? "content" : "prepend", 0, &c, &len)))
			return rc;
		if (!(n->content = dupn(c, len)))
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		n->content_len = len;
	} else if (!strcmp(type, "Strip")) {
		n->type = NORM_STRIP;
		if ((rc = get_bool(file, where, obj, "strip_left", 1, &n->strip_left)) ||
		    (rc = get_bool(file, where, obj, "strip_right", 1, &n->strip_right)))
			return rc;
	} else if (!strcmp(type, "Sequence")) {
		n->type = NORM_SEQUENCE;
		json_t *a = json_object_get(obj, "normalizers");
		if (!json_is_array(a))
			BAD("%s: %s.normalizers must be an array", file, where);
		n->nitems = json_array_size(a);
		if (n->nitems && !(n->items = calloc(n->nitems, sizeof(*n->items)))) {
			n->nitems = 0;
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		}
		for (size_t i = 0; i < n->nitems; i++) {
			snprintf(sub, sizeof(sub), "%s.normalizers[%zu]", where, i);
			if ((rc = parse_normalizer(file, sub, json_array_get(a, i), &n->items[i])))
				return rc;
		}
	} else {
		BAD("%s: %s.type '%s' is not supported (lspo reads the normalizers NFC, NFD, NFKC, "
		    "NFKD, Lowercase, Replace, Prepend, Strip and Sequence)", file, where, type);
	}
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* pre-tokenizers                                                         */

void pretok_free(struct pretok *p)
{
	pattern_free(&p->pat);
	for (size_t i = 0; i < p->nitems; i++)
		pretok_free(&p->items[i]);
	free(p->items);
	memset(p, 0, sizeof(*p));
}

static int parse_behavior(const char *file, const char *where, json_t *obj, enum split_behavior *b)
{
	const char *s;
	int rc = get_str(file, where, obj, "behavior", 0, &s, NULL);
	if (rc)
		return rc;
	static const char *names[] = { "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
	                               "Contiguous" };
	for (int i = 0; i < 5; i++)
		if (!strcmp(s, names[i])) {
			*b = (enum split_behavior)i;
			return LSPO_OK;
		}
	BAD("%s: %s.behavior '%s' is unknown (expected Removed, Isolated, MergedWithPrevious, "
	    "MergedWithNext or Contiguous)", file, where, s);
}

static int parse_metaspace(const char *file, const char *where, json_t *obj, char *rep,
                           size_t *rep_len, enum prepend_scheme *prepend, int *split)
{
	const char *r;
	size_t len;
	int rc = get_str(file, where, obj, "replacement", 0, &r, &len);
	if (rc)
		return rc;
	if (len == 0 || len > 4 || utf8_len((unsigned char)r[0]) != len || utf8_check(r, len) != len)
		BAD("%s: %s.replacement must be one character", file, where);
	memcpy(rep, r, len);
	*rep_len = len;
	const char *scheme;
	if ((rc = get_str(file, where, obj, "prepend_scheme", 1, &scheme, NULL)))
		return rc;
	if (scheme) {
		if (!strcmp(scheme, "always"))
			*prepend = PREPEND_ALWAYS;
		else if (!strcmp(scheme, "never"))
			*prepend = PREPEND_NEVER;
		else if (!strcmp(scheme, "first"))
			*prepend = PREPEND_FIRST;
		else
			BAD("%s: %s.prepend_scheme '%s' is unknown (expected always, never or first)", file,
			    where, scheme);
	} else {   /* the older form */
		int add;
		if ((rc = get_bool(file, where, obj, "add_prefix_space", 1, &add)))
			return rc;
		*prepend = add ? PREPEND_ALWAYS : PREPEND_NEVER;
	}
	return split ? get_bool(file, where, obj, "split", 1, split) : LSPO_OK;
}

static int parse_pretok(const char *file, const char *where, json_t *obj, struct pretok *p)
{
	const char *type;
	int rc = get_type(file, where, obj, &type);
	if (rc)
		return rc;
	char sub[256];
	if (!strcmp(type, "ByteLevel")) {
		p->type = PRE_BYTELEVEL;
		if ((rc = get_bool(file, where, obj, "add_prefix_space", 1, &p->add_prefix_space)) ||
		    (rc = get_bool(file, where, obj, "use_regex", 1, &p->use_regex)))
			return rc;
		if (p->use_regex) {
			p->pat.is_regex = 1;
			p->behavior = SPLIT_ISOLATED;
			if ((rc = compile_regex(file, where, gpt2_regex, sizeof(gpt2_regex) - 1, &p->pat.re)))
				return rc;
		}
	} else if (!strcmp(type, "Split")) {
		p->type = PRE_SPLIT;
		if ((rc = parse_pattern(file, where, obj, &p->pat)) ||
		    (rc = parse_behavior(file, where, obj, &p->behavior)) ||
		    (rc = get_bool(file, where, obj, "invert", 0, &p->invert)))
			return rc;
	} else if (!strcmp(type, "Metaspace")) {
		p->type = PRE_METASPACE;
		if ((rc = parse_metaspace(file, where, obj, p->rep, &p->rep_len, &p->prepend, &p->split)))
			return rc;
	} else if (!strcmp(type, "Digits")) {
		/* HF: split on char::is_numeric, each digit alone or runs together */
		int individual;
		if ((rc = get_bool(file, where, obj, "individual_digits", 0, &individual)))
			return rc;
		p->type = PRE_SPLIT;
		p->behavior = individual ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
		p->pat.is_regex = 1;
		if ((rc = compile_regex(file, where, "\\p{N}", sizeof("\\p{N}") - 1, &p->pat.re)))
			return rc;
	} else if (!strcmp(type, "Whitespace")) {
		/* HF: the matches of \w+|[^\w\s]+ are the pieces */
		p->type = PRE_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->invert = 1;
		p->pat.is_regex = 1;
		if ((rc = compile_regex(file, where, "\\w+|[^\\w\\s]+", sizeof("\\w+|[^\\w\\s]+") - 1,
		                       &p->pat.re)))
			return rc;
	} else if (!strcmp(type, "WhitespaceSplit")) {
		p->type = PRE_SPLIT;
		p->behavior = SPLIT_REMOVED;
		p->pat.is_regex = 1;
		if ((rc = compile_regex(file, where, "\\s", sizeof("\\s") - 1, &p->pat.re)))
			return rc;
	} else if (!strcmp(type, "Punctuation")) {
		p->type = PRE_SPLIT;
		if (json_object_get(obj, "behavior")) {
			if ((rc = parse_behavior(file, where, obj, &p->behavior)))
				return rc;
		} else {
			p->behavior = SPLIT_ISOLATED;
		}
		p->pat.is_regex = 1;
		static const char punct[] = "[\\p{P}!-/:-@\\[-`{-~]";
		if ((rc = compile_regex(file, where, punct, sizeof(punct) - 1, &p->pat.re)))
			return rc;
	} else if (!strcmp(type, "Sequence")) {
		p->type = PRE_SEQUENCE;
		json_t *a = json_object_get(obj, "pretokenizers");
		if (!json_is_array(a))
			BAD("%s: %s.pretokenizers must be an array", file, where);
		p->nitems = json_array_size(a);
		if (p->nitems && !(p->items = calloc(p->nitems, sizeof(*p->items)))) {
			p->nitems = 0;
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		}
		for (size_t i = 0; i < p->nitems; i++) {
			snprintf(sub, sizeof(sub), "%s.pretokenizers[%zu]", where, i);
			if ((rc = parse_pretok(file, sub, json_array_get(a, i), &p->items[i])))
				return rc;
		}
	} else {
		BAD("%s: %s.type '%s' is not supported (lspo reads the pre-tokenizers ByteLevel, Split, "
		    "Metaspace, Digits, Whitespace, WhitespaceSplit, Punctuation and Sequence)", file,
		    where, type);
	}
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* decoders                                                               */

void decoder_free(struct decoder *d)
{
	pattern_free(&d->pat);
	free(d->content);
	for (size_t i = 0; i < d->nitems; i++)
		decoder_free(&d->items[i]);
	free(d->items);
	memset(d, 0, sizeof(*d));
}

static int parse_decoder(const char *file, const char *where, json_t *obj, struct decoder *d)
{
	const char *type;
	int rc = get_type(file, where, obj, &type);
	if (rc)
		return rc;
	char sub[256];
	if (!strcmp(type, "ByteLevel")) {
		d->type = DEC_BYTELEVEL;
	} else if (!strcmp(type, "ByteFallback")) {
		d->type = DEC_BYTEFALLBACK;
	} else if (!strcmp(type, "Fuse")) {
		d->type = DEC_FUSE;
	} else if (!strcmp(type, "Metaspace")) {
		d->type = DEC_METASPACE;
		if ((rc = parse_metaspace(file, where, obj, d->rep, &d->rep_len, &d->prepend, NULL)))
			return rc;
	} else if (!strcmp(type, "Replace")) {
		d->type = DEC_REPLACE;
		const char *c;
		size_t len;
		if ((rc = parse_pattern(file, where, obj, &d->pat)) ||
		    (rc = get_str(file, where, obj, "content", 0, &c, &len)))
			return rc;
		if (!(d->content = dupn(c, len)))
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		d->content_len = len;
	} else if (!strcmp(type, "Strip")) {
		d->type = DEC_STRIP;
		const char *c;
		size_t len;
		if ((rc = get_str(file, where, obj, "content", 0, &c, &len)))
			return rc;
		size_t cl;
		if (len == 0 || utf8_check(c, len) != len || (d->strip_char = utf8_get(c, &cl), cl != len))
			BAD("%s: %s.content must be one character", file, where);
		json_t *st = json_object_get(obj, "start"), *sp = json_object_get(obj, "stop");
		if (!json_is_integer(st) || !json_is_integer(sp) || json_integer_value(st) < 0 ||
		    json_integer_value(sp) < 0 || json_integer_value(st) > 1000000 ||
		    json_integer_value(sp) > 1000000)
			BAD("%s: %s.start and .stop must be non-negative integers", file, where);
		d->strip_start = (int)json_integer_value(st);
		d->strip_stop = (int)json_integer_value(sp);
	} else if (!strcmp(type, "Sequence")) {
		d->type = DEC_SEQUENCE;
		json_t *a = json_object_get(obj, "decoders");
		if (!json_is_array(a))
			BAD("%s: %s.decoders must be an array", file, where);
		d->nitems = json_array_size(a);
		if (d->nitems && !(d->items = calloc(d->nitems, sizeof(*d->items)))) {
			d->nitems = 0;
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		}
		for (size_t i = 0; i < d->nitems; i++) {
			snprintf(sub, sizeof(sub), "%s.decoders[%zu]", where, i);
			if ((rc = parse_decoder(file, sub, json_array_get(a, i), &d->items[i])))
				return rc;
		}
	} else {
		BAD("%s: %s.type '%s' is not supported (lspo reads the decoders ByteLevel, Metaspace, "
		    "Replace, ByteFallback, Fuse, Strip and Sequence)", file, where, type);
	}
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* model                                                                  */

static int set_token(struct tok_core *c, uint32_t id, const char *s, size_t len)
{
	if (id >= c->vocab_size)
		return LSPO_OK;
	if (c->id_str[id])
		return LSPO_OK;   /* the first name wins (added tokens come first) */
	if (!(c->id_str[id] = dupn(s, len)))
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", c->path);
	c->id_len[id] = (uint32_t)len;
	return LSPO_OK;
}

static int parse_model(const char *file, json_t *m, struct tok_core *c, uint32_t max_added)
{
	const char *type;
	int rc = get_type(file, "model", m, &type);
	if (rc)
		return rc;
	if (strcmp(type, "BPE"))
		BAD("%s: model.type '%s' is not supported (lspo reads BPE models only)", file, type);
	json_t *drop = json_object_get(m, "dropout");
	if (drop && !json_is_null(drop) && !(json_is_number(drop) && json_number_value(drop) == 0))
		BAD("%s: model.dropout: BPE dropout is not supported (lspo encodes deterministically)",
		    file);
	const char *s;
	size_t len;
	if ((rc = get_bool(file, "model", m, "byte_fallback", 0, &c->byte_fallback)) ||
	    (rc = get_bool(file, "model", m, "ignore_merges", 0, &c->ignore_merges)) ||
	    (rc = get_bool(file, "model", m, "fuse_unk", 0, &c->fuse_unk)))
		return rc;
	if ((rc = get_str(file, "model", m, "continuing_subword_prefix", 1, &s, &len)))
		return rc;
	if (s && len && (!(c->cont_prefix = dupn(s, len))))
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
	c->cont_prefix_len = c->cont_prefix ? len : 0;
	if ((rc = get_str(file, "model", m, "end_of_word_suffix", 1, &s, &len)))
		return rc;
	if (s && len && (!(c->eow_suffix = dupn(s, len))))
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
	c->eow_suffix_len = c->eow_suffix ? len : 0;

	json_t *vocab = json_object_get(m, "vocab");
	if (!json_is_object(vocab))
		BAD("%s: model.vocab is missing (expected an object token -> id)", file);
	uint32_t vmax = 0;
	const char *key;
	json_t *v;
	json_object_foreach(vocab, key, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) >= INT32_MAX)
			BAD("%s: model.vocab['%s'] must be an integer id in [0, 2^31-1)", file, key);
		uint32_t id = (uint32_t)json_integer_value(v);
		vmax = id > vmax ? id : vmax;
		if ((rc = strmap_put(&c->vocab, key, (uint32_t)strlen(key), id)))
			LSPO_FAIL(rc, "%s: out of memory", file);
	}
	if (c->vocab.n == 0)
		BAD("%s: model.vocab is empty", file);
	c->vocab_size = (vmax > max_added ? vmax : max_added) + 1;
	c->id_str = calloc(c->vocab_size, sizeof(*c->id_str));
	c->id_len = calloc(c->vocab_size, sizeof(*c->id_len));
	c->is_special = calloc(c->vocab_size, 1);
	if (!c->id_str || !c->id_len || !c->is_special)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory for %u tokens", file, c->vocab_size);
	for (size_t i = 0; i < c->nadded; i++)
		if ((rc = set_token(c, c->added[i].id, c->added[i].content, c->added[i].len)))
			return rc;
	for (size_t i = 0; i < c->vocab.n; i++)
		if ((rc = set_token(c, c->vocab.val[i], c->vocab.key[i], c->vocab.klen[i])))
			return rc;

	if ((rc = get_str(file, "model", m, "unk_token", 1, &s, &len)))
		return rc;
	if (s) {
		if (strmap_get(&c->vocab, s, len, &c->unk_id))
			c->has_unk = 1;
		else
			BAD("%s: model.unk_token '%s' is not in model.vocab", file, s);
	}
	/* the tokens with a junction "character, ▁" (see cut_before_meta) */
	c->cut_before_meta = 1;
	for (size_t i = 0; i < c->vocab.n && c->cut_before_meta; i++) {
		const unsigned char *k = (const unsigned char *)c->vocab.key[i];
		for (size_t j = 1; j + 3 <= c->vocab.klen[i]; j++)
			if (k[j] == 0xe2 && k[j + 1] == 0x96 && k[j + 2] == 0x81 &&
			    !(j >= 3 && k[j - 3] == 0xe2 && k[j - 2] == 0x96 && k[j - 1] == 0x81)) {
				if (c->nspan == sizeof(c->span) / sizeof(c->span[0])) {
					c->cut_before_meta = 0;
					break;
				}
				c->span[c->nspan].s = c->vocab.key[i];
				c->span[c->nspan].len = c->vocab.klen[i];
				c->span[c->nspan++].at = j;
			}
	}
	for (int b = 0; b < 256; b++) {
		char name[8];
		uint32_t id;
		snprintf(name, sizeof(name), "<0x%02X>", b);
		c->byte_id[b] = strmap_get(&c->vocab, name, 6, &id) ? (int32_t)id : -1;
	}

	json_t *merges = json_object_get(m, "merges");
	if (!json_is_array(merges))
		BAD("%s: model.merges is missing (expected an array)", file);
	size_t nm = json_array_size(merges);
	char *buf = NULL;
	size_t bcap = 0;
	for (size_t i = 0; i < nm; i++) {
		json_t *e = json_array_get(merges, i);
		const char *a, *b;
		size_t la, lb;
		if (json_is_string(e)) {   /* "a b" */
			a = json_string_value(e);
			const char *sp = memchr(a, ' ', json_string_length(e));
			if (!sp || memchr(sp + 1, ' ', json_string_length(e) - (size_t)(sp + 1 - a))) {
				free(buf);
				BAD("%s: model.merges[%zu] '%s': expected two tokens separated by one space",
				    file, i, a);
			}
			la = (size_t)(sp - a);
			b = sp + 1;
			lb = json_string_length(e) - la - 1;
		} else if (json_is_array(e) && json_array_size(e) == 2 &&
		           json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
			a = json_string_value(json_array_get(e, 0));
			la = json_string_length(json_array_get(e, 0));
			b = json_string_value(json_array_get(e, 1));
			lb = json_string_length(json_array_get(e, 1));
		} else {
			free(buf);
			BAD("%s: model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", file, i);
		}
		uint32_t ia, ib, inew;
		if (!strmap_get(&c->vocab, a, la, &ia) || !strmap_get(&c->vocab, b, lb, &ib)) {
			int first = !strmap_get(&c->vocab, a, la, &ia);
			free(buf);
			BAD("%s: model.merges[%zu] names the token '%.*s', which is not in model.vocab",
			    file, i, first ? (int)la : (int)lb, first ? a : b);
		}
		size_t skip = 0;
		if (c->cont_prefix && lb >= c->cont_prefix_len &&
		    !memcmp(b, c->cont_prefix, c->cont_prefix_len))
			skip = c->cont_prefix_len;
		if (la + lb - skip > bcap) {
			bcap = 2 * (la + lb) + 64;
			char *nb = realloc(buf, bcap);
			if (!nb) {
				free(buf);
				LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
			}
			buf = nb;
		}
		memcpy(buf, a, la);
		memcpy(buf + la, b + skip, lb - skip);
		if (!strmap_get(&c->vocab, buf, la + lb - skip, &inew)) {
			int l = (int)(la + lb - skip);
			char shown[512];
			snprintf(shown, sizeof(shown), "%.*s", l, buf);
			free(buf);
			BAD("%s: model.merges[%zu]: the merged token '%s' is not in model.vocab", file, i,
			    shown);
		}
		if ((rc = pairmap_put(&c->merges, ia, ib, (uint32_t)i, inew))) {
			free(buf);
			LSPO_FAIL(rc, "%s: out of memory", file);
		}
	}
	free(buf);
	return LSPO_OK;
}

static int parse_added(const char *file, json_t *arr, struct tok_core *c, uint32_t *max_id)
{
	*max_id = 0;
	if (!arr || json_is_null(arr))
		return LSPO_OK;
	if (!json_is_array(arr))
		BAD("%s: added_tokens must be an array", file);
	c->nadded = json_array_size(arr);
	if (c->nadded && !(c->added = calloc(c->nadded, sizeof(*c->added)))) {
		c->nadded = 0;
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
	}
	for (size_t i = 0; i < c->nadded; i++) {
		json_t *e = json_array_get(arr, i);
		char where[64];
		snprintf(where, sizeof(where), "added_tokens[%zu]", i);
		if (!json_is_object(e))
			BAD("%s: %s must be an object", file, where);
		struct added_token *a = &c->added[i];
		json_t *id = json_object_get(e, "id");
		if (!json_is_integer(id) || json_integer_value(id) < 0 ||
		    json_integer_value(id) >= INT32_MAX)
			BAD("%s: %s.id must be an integer id in [0, 2^31-1)", file, where);
		a->id = (uint32_t)json_integer_value(id);
		*max_id = a->id > *max_id ? a->id : *max_id;
		const char *s;
		int rc;
		if ((rc = get_str(file, where, e, "content", 0, &s, &a->len)))
			return rc;
		if (a->len == 0)
			BAD("%s: %s.content is empty", file, where);
		if (!(a->content = dupn(s, a->len)))
			LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", file);
		if ((rc = get_bool(file, where, e, "special", 0, &a->special)) ||
		    (rc = get_bool(file, where, e, "lstrip", 0, &a->lstrip)) ||
		    (rc = get_bool(file, where, e, "rstrip", 0, &a->rstrip)) ||
		    (rc = get_bool(file, where, e, "single_word", 0, &a->single_word)) ||
		    (rc = get_bool(file, where, e, "normalized", !a->special, &a->normalized)))
			return rc;
	}
	return LSPO_OK;
}

/* BOS and EOS: tokenizer_config.json's bos_token / eos_token (a string or
 * {"content": ...}) if the file exists, else well-known names. */
static int32_t find_token(struct tok_core *c, const char *s, size_t len)
{
	for (size_t i = 0; i < c->nadded; i++)
		if (c->added[i].len == len && !memcmp(c->added[i].content, s, len))
			return (int32_t)c->added[i].id;
	uint32_t id;
	return strmap_get(&c->vocab, s, len, &id) ? (int32_t)id : -1;
}

static int read_special(const char *cfg_path, struct tok_core *c)
{
	c->bos = c->eos = -1;
	struct stat st;
	if (cfg_path && stat(cfg_path, &st) == 0) {
		json_error_t err;
		json_t *root = json_load_file(cfg_path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
		if (!root)
			BAD("%s: line %d: not valid JSON: %s", cfg_path, err.line, err.text);
		const char *keys[2] = { "bos_token", "eos_token" };
		int32_t *dst[2] = { &c->bos, &c->eos };
		for (int k = 0; k < 2; k++) {
			json_t *v = json_object_get(root, keys[k]);
			if (json_is_object(v))
				v = json_object_get(v, "content");
			if (!json_is_string(v))
				continue;
			*dst[k] = find_token(c, json_string_value(v), json_string_length(v));
			if (*dst[k] < 0) {
				lspo_error("%s: %s '%s' is not a token of %s", cfg_path, keys[k],
				           json_string_value(v), c->path);
				json_decref(root);
				return LSPO_EFORMAT;
			}
		}
		json_decref(root);
		return LSPO_OK;
	}
	static const char *bos[] = { "<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>" };
	static const char *eos[] = { "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "<|im_end|>" };
	for (size_t i = 0; i < sizeof(bos) / sizeof(*bos) && c->bos < 0; i++)
		c->bos = find_token(c, bos[i], strlen(bos[i]));
	for (size_t i = 0; i < sizeof(eos) / sizeof(*eos) && c->eos < 0; i++)
		c->eos = find_token(c, eos[i], strlen(eos[i]));
	return LSPO_OK;
}

void tok_core_free(struct tok_core *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; c->id_str && i < c->vocab_size; i++)
		free(c->id_str[i]);
	free(c->id_str);
	free(c->id_len);
	free(c->is_special);
	strmap_free(&c->vocab);
	pairmap_free(&c->merges);
	free(c->cont_prefix);
	free(c->eow_suffix);
	if (c->norm) {
		normalizer_free(c->norm);
		free(c->norm);
	}
	if (c->pre) {
		pretok_free(c->pre);
		free(c->pre);
	}
	if (c->dec) {
		decoder_free(c->dec);
		free(c->dec);
	}
	for (size_t i = 0; i < c->nadded; i++)
		free(c->added[i].content);
	free(c->added);
	trie_free(&c->trie_raw);
	trie_free(&c->trie_norm);
	free(c->path);
	free(c);
}

int tok_core_load(const char *path, struct tok_core **out)
{
	*out = NULL;
	struct stat st;
	if (stat(path, &st) != 0)
		LSPO_FAIL(LSPO_EIO, "%s: cannot open: %s", path, strerror(errno));
	size_t plen = strlen(path);
	char *file = malloc(plen + 32), *cfg = malloc(plen + 32);
	if (!file || !cfg) {
		free(file);
		free(cfg);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	if (S_ISDIR(st.st_mode)) {
		snprintf(file, plen + 32, "%s/tokenizer.json", path);
		snprintf(cfg, plen + 32, "%s/tokenizer_config.json", path);
	} else {
		memcpy(file, path, plen + 1);
		const char *slash = strrchr(path, '/');
		size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
		memcpy(cfg, path, dl);
		memcpy(cfg + dl, "tokenizer_config.json", 22);
	}
	struct tok_core *c = calloc(1, sizeof(*c));
	int rc = LSPO_OK;
	json_t *root = NULL;
	json_error_t err;
	if (!c) {
		lspo_error("%s: out of memory", file);
		rc = LSPO_ENOMEM;
		goto done;
	}
	c->path = file;
	file = NULL;
	c->refs = 1;
	if (stat(c->path, &st) != 0) {
		lspo_error("%s: cannot open: %s", c->path, strerror(errno));
		rc = LSPO_EIO;
		goto done;
	}
	root = json_load_file(c->path, JSON_ALLOW_NUL, &err);
	if (!root) {
		lspo_error("%s: line %d, column %d: not valid JSON: %s", c->path, err.line, err.column,
		           err.text);
		rc = LSPO_EFORMAT;
		goto done;
	}
	if (!json_is_object(root)) {
		lspo_error("%s: expected a JSON object (a Hugging Face tokenizer.json)", c->path);
		rc = LSPO_EFORMAT;
		goto done;
	}
	uint32_t max_added;
	json_t *v;
	if ((rc = parse_added(c->path, json_object_get(root, "added_tokens"), c, &max_added)))
		goto done;
	if (!(v = json_object_get(root, "model"))) {
		lspo_error("%s: 'model' is missing", c->path);
		rc = LSPO_EFORMAT;
		goto done;
	}
	if ((rc = parse_model(c->path, v, c, max_added)))
		goto done;
	for (size_t i = 0; i < c->nadded; i++)
		c->is_special[c->added[i].id] = (uint8_t)c->added[i].special;
	if ((v = json_object_get(root, "normalizer")) && !json_is_null(v)) {
		if (!(c->norm = calloc(1, sizeof(*c->norm)))) {
			rc = LSPO_ENOMEM;
			goto done;
		}
		if ((rc = parse_normalizer(c->path, "normalizer", v, c->norm)))
			goto done;
	}
	if ((v = json_object_get(root, "pre_tokenizer")) && !json_is_null(v)) {
		if (!(c->pre = calloc(1, sizeof(*c->pre)))) {
			rc = LSPO_ENOMEM;
			goto done;
		}
		if ((rc = parse_pretok(c->path, "pre_tokenizer", v, c->pre)))
			goto done;
	}
	if ((v = json_object_get(root, "decoder")) && !json_is_null(v)) {
		if (!(c->dec = calloc(1, sizeof(*c->dec)))) {
			rc = LSPO_ENOMEM;
			goto done;
		}
		if ((rc = parse_decoder(c->path, "decoder", v, c->dec)))
			goto done;
	}
	/* added tokens: normalized ones are matched in normalized text, so their
	 * content is normalized too */
	for (size_t i = 0; i < c->nadded && !rc; i++) {
		struct added_token *a = &c->added[i];
		if (!a->normalized || !c->norm) {
			rc = trie_add(&c->trie_raw, a->content, a->len, (int32_t)i);
			continue;
		}
		struct lspo_tokenizer tmp = { .core = c };
		struct tstr s = { 0 };
		rc = tok_normalize(&tmp, c->norm, a->content, a->len, &s);
		if (tmp.md)
			pcre2_match_data_free(tmp.md);
		free(tmp.s1.p);
		free(tmp.s2.p);
		if (!rc && s.n)
			rc = trie_add(&c->trie_norm, s.p, s.n, (int32_t)i);
		free(s.p);
	}
	if (rc) {
		lspo_error("%s: out of memory", c->path);
		goto done;
	}
	rc = read_special(cfg, c);
done:
	if (root)
		json_decref(root);
	free(file);
	free(cfg);
	if (rc) {
		tok_core_free(c);
		return rc;
	}
	*out = c;
	return LSPO_OK;
}
