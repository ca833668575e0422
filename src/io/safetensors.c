/*
 * safetensors.c - HF safetensors reader (mmap, full header validation) and
 * float32 writer.  Not a general tensor library: tensors are read into
 * caller-provided float32 buffers, converting F16 and BF16 on the way.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "mapped_file.h"
#include "atomic_file.h"
#include "safetensors.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

static const struct { const char *name; size_t size; } dtypes[ST_NDTYPES] = {
	[ST_F32] = { "F32", 4 }, [ST_F16] = { "F16", 2 }, [ST_BF16] = { "BF16", 2 },
	[ST_F64] = { "F64", 8 }, [ST_I64] = { "I64", 8 }, [ST_U64] = { "U64", 8 },
	[ST_I32] = { "I32", 4 }, [ST_U32] = { "U32", 4 }, [ST_I16] = { "I16", 2 },
	[ST_U16] = { "U16", 2 }, [ST_I8] = { "I8", 1 }, [ST_U8] = { "U8", 1 },
	[ST_BOOL] = { "BOOL", 1 }, [ST_F8_E4M3] = { "F8_E4M3", 1 }, [ST_F8_E5M2] = { "F8_E5M2", 1 },
};

const char *st_dtype_name(enum st_dtype d)
{
	return (unsigned)d < ST_NDTYPES ? dtypes[d].name : "?";
}

size_t st_numel(const struct st_tensor *t)
{
	size_t n = 1;
	for (int i = 0; i < t->ndim; i++)
		n *= (size_t)t->shape[i];
	return n;
}

int st_find(const struct st_file *f, const char *name)
{
	for (size_t i = 0; i < f->ntensors; i++)
		if (strcmp(f->tensors[i].name, name) == 0)
			return (int)i;
	return -1;
}

void st_close(struct st_file *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->ntensors; i++)
		free(f->tensors[i].name);
	free(f->tensors);
	mapped_file_close(f->map, f->map_size);
	free(f->path);
	free(f);
}

/* ---------------------------------------------------------------------- */
/* header validation                                                      */

/* A non-negative JSON integer, or -1. */
static int64_t json_nonneg(const json_t *v)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -1;
	return (int64_t)json_integer_value(v);
}

static int parse_tensor(const char *path, const char *name, json_t *desc, size_t data_size,
                        struct st_tensor *t)
{
	if (!json_is_object(desc))
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
	json_t *dt = json_object_get(desc, "dtype");
	if (!dt)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': missing field 'dtype'", path, name);
	if (!json_is_string(dt))
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': field 'dtype' is not a string", path, name);
	int d;
	for (d = 0; d < ST_NDTYPES; d++)
		if (strcmp(json_string_value(dt), dtypes[d].name) == 0)
			break;
	if (d == ST_NDTYPES)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': unknown dtype '%s' (expected a safetensors "
		          "dtype such as F32, BF16, F16)", path, name, json_string_value(dt));
	t->dtype = (enum st_dtype)d;

	json_t *shape = json_object_get(desc, "shape");
	if (!shape)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': missing field 'shape'", path, name);
	if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': field 'shape' must be an array of at most %d "
		          "non-negative integers", path, name, ST_MAX_DIMS);
	t->ndim = (int)json_array_size(shape);
	uint64_t numel = 1;
	int overflow = 0;
	for (int i = 0; i < t->ndim; i++) {
		int64_t v = json_nonneg(json_array_get(shape, (size_t)i));
		if (v < 0)
			LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer",
			          path, name, i);
		t->shape[i] = v;
		overflow |= __builtin_mul_overflow(numel, (uint64_t)v, &numel);
	}
	uint64_t nbytes;
	overflow |= __builtin_mul_overflow(numel, (uint64_t)dtypes[d].size, &nbytes);

	json_t *offs = json_object_get(desc, "data_offsets");
	if (!offs)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': missing field 'data_offsets'", path, name);
	int64_t b = -1, e = -1;
	if (json_is_array(offs) && json_array_size(offs) == 2) {
		b = json_nonneg(json_array_get(offs, 0));
		e = json_nonneg(json_array_get(offs, 1));
	}
	if (b < 0 || e < 0)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': field 'data_offsets' must be [begin, end] "
		          "with non-negative integers", path, name);
	if (b > e)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] "
		          "has begin > end", path, name, b, e);
	if ((uint64_t)e > data_size)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] out "
		          "of range: the data buffer holds %zu bytes (file truncated?)", path, name, b, e,
		          data_size);
	if (overflow || (uint64_t)(e - b) != nbytes) {
		char buf[160];
		int len = 0;
		for (int i = 0; i < t->ndim && len < (int)sizeof(buf) - 24; i++)
			len += snprintf(buf + len, sizeof(buf) - (size_t)len, "%s%" PRId64, i ? ", " : "",
			                t->shape[i]);
		buf[len] = '\0';
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': data_offsets [%" PRId64 ", %" PRId64 "] span "
		          "%" PRId64 " bytes, but shape [%s] of %s needs %s%" PRIu64, path, name, b, e,
		          e - b, buf, dtypes[d].name, overflow ? "more than 2^64 - 1 = " : "",
		          overflow ? UINT64_MAX : nbytes);
	}
	t->begin = (size_t)b;
	t->end = (size_t)e;
	return LSPO_OK;
}

static int cmp_begin(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int check_overlaps(struct st_file *f)
{
	if (f->ntensors < 2)
		return LSPO_OK;
	const struct st_tensor **order = malloc(f->ntensors * sizeof(*order));
	if (!order)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", f->path);
	for (size_t i = 0; i < f->ntensors; i++)
		order[i] = &f->tensors[i];
	qsort(order, f->ntensors, sizeof(*order), cmp_begin);
	int rc = LSPO_OK;
	for (size_t i = 1; i < f->ntensors && !rc; i++)
		if (order[i]->begin < order[i - 1]->end) {
			lspo_error("%s: tensor '%s': data_offsets [%zu, %zu] overlap those of tensor "
			           "'%s' [%zu, %zu]", f->path, order[i]->name, order[i]->begin,
			           order[i]->end, order[i - 1]->name, order[i - 1]->begin, order[i - 1]->end);
			rc = LSPO_EFORMAT;
		}
	free(order);
	return rc;
}

static int parse_header(struct st_file *f, const char *text, size_t len)
{
	json_error_t err;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
	if (!root)
		LSPO_FAIL(LSPO_EFORMAT, "%s: header is not valid JSON (line %d, column %d: %s)",
		          f->path, err.line, err.column, err.text);
	int rc = LSPO_OK;
	if (!json_is_object(root)) {
		lspo_error("%s: header is not a JSON object", f->path);
		rc = LSPO_EFORMAT;
		goto out;
	}
	f->tensors = calloc(json_object_size(root) + 1, sizeof(*f->tensors));
	if (!f->tensors) {
		lspo_error("%s: out of memory for %zu tensors", f->path, json_object_size(root));
		rc = LSPO_ENOMEM;
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(root, key, val) {
		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			if (!json_is_object(val)) {
				lspo_error("%s: field '__metadata__' is not a JSON object", f->path);
				rc = LSPO_EFORMAT;
				goto out;
			}
			json_object_foreach(val, mk, mv)
				if (!json_is_string(mv)) {
					lspo_error("%s: __metadata__ field '%s' is not a string", f->path, mk);
					rc = LSPO_EFORMAT;
					goto out;
				}
			continue;
		}
		struct st_tensor *t = &f->tensors[f->ntensors];
		rc = parse_tensor(f->path, key, val, f->data_size, t);
		if (rc)
			goto out;
		t->name = strdup(key);
		if (!t->name) {
			lspo_error("%s: out of memory", f->path);
			rc = LSPO_ENOMEM;
			goto out;
		}
		f->ntensors++;
	}
	rc = check_overlaps(f);
out:
	json_decref(root);
	return rc;
}

int st_open(const char *path, struct st_file **out)
{
	*out = NULL;
	struct st_file *f = calloc(1, sizeof(*f));
	if (!f || !(f->path = strdup(path))) {
		free(f);
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory", path);
	}
	int rc = mapped_file_open(path, 8, "too short for the 8-byte header length of a safetensors file",
	                          &f->map, &f->map_size);
	if (rc) {
		st_close(f);
		return rc;
	}
	const unsigned char *p = f->map;
	uint64_t hlen;
	memcpy(&hlen, p, 8);
	uint64_t avail = f->map_size - 8;
	if (hlen == 0 || hlen > avail || hlen > ST_MAX_HEADER) {
		lspo_error("%s: header length %" PRIu64 " is invalid: %s (the file has %" PRIu64 " bytes "
		           "after the 8-byte length field; headers are limited to %" PRIu64 " bytes)", path,
		           hlen, hlen == 0 ? "zero" : hlen > avail ? "beyond the end of the file" : "too large",
		           avail, ST_MAX_HEADER);
		st_close(f);
		return LSPO_EFORMAT;
	}
	f->data = p + 8 + hlen;
	f->data_size = (size_t)(avail - hlen);
	rc = parse_header(f, (const char *)p + 8, (size_t)hlen);
	if (rc) {
		st_close(f);
		return rc;
	}
	*out = f;
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* conversion                                                             */

static inline float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
	if (exp == 0) {
		float v = (float)man * 0x1p-24f;   /* zero or subnormal: exact */
		return sign ? -v : v;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (man << 13);
	else
		bits = sign | ((exp + 112u) << 23) | (man << 13);
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

static inline float bf16_to_f32(uint16_t b)
{
	uint32_t bits = (uint32_t)b << 16;
	float f;
	memcpy(&f, &bits, 4);
	return f;
}

float st_f16_to_f32(uint16_t h) { return f16_to_f32(h); }
float st_bf16_to_f32(uint16_t b) { return bf16_to_f32(b); }

int st_read_f32(const struct st_file *f, const struct st_tensor *t, float *dst)
{
	const unsigned char *src = f->data + t->begin;
	size_t n = st_numel(t);
	switch (t->dtype) {
	case ST_F32:
		memcpy(dst, src, n * sizeof(float));
		return LSPO_OK;
	case ST_BF16:
		for (size_t i = 0; i < n; i++) {
			uint16_t v;
			memcpy(&v, src + 2 * i, 2);
			dst[i] = bf16_to_f32(v);
		}
		return LSPO_OK;
	case ST_F16:
		for (size_t i = 0; i < n; i++) {
			uint16_t v;
			memcpy(&v, src + 2 * i, 2);
			dst[i] = f16_to_f32(v);
		}
		return LSPO_OK;
	default:
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': dtype %s is not supported (expected F32, BF16 "
		          "or F16)", f->path, t->name, st_dtype_name(t->dtype));
	}
}

int st_read_i32(const struct st_file *f, const struct st_tensor *t, int32_t *dst, size_t n)
{
	if (t->dtype != ST_I32 || st_numel(t) != n)
		LSPO_FAIL(LSPO_EFORMAT, "%s: tensor '%s': expected I32 with %zu elements, got %s with %zu",
		          f->path, t->name, n, st_dtype_name(t->dtype), st_numel(t));
	memcpy(dst, f->data + t->begin, n * sizeof(int32_t));
	return LSPO_OK;
}

/* ---------------------------------------------------------------------- */
/* writer                                                                 */

static json_t *header_json(const char *path, const struct st_out_tensor *ts, size_t n)
{
	json_t *root = json_object();
	json_t *meta = json_object();
	if (!root || !meta || json_object_set_new(root, "__metadata__", meta)) {
		json_decref(root);
		LSPO_FAIL(NULL, "%s: out of memory building the header", path);
	}
	json_object_set_new(meta, "format", json_string("pt"));
	uint64_t offset = 0;
	for (size_t i = 0; i < n; i++) {
		const struct st_out_tensor *t = &ts[i];
		uint64_t bytes = sizeof(float);
		int bad = t->ndim < 0 || t->ndim > ST_MAX_DIMS || !t->name || !strcmp(t->name, "__metadata__")
		          || (t->dtype != ST_F32 && t->dtype != ST_I32);
		json_t *shape = json_array();
		for (int d = 0; !bad && d < t->ndim; d++) {
			bad |= t->shape[d] < 0 || __builtin_mul_overflow(bytes, (uint64_t)t->shape[d], &bytes);
			json_array_append_new(shape, json_integer(t->shape[d]));
		}
		if (bad || json_object_get(root, t->name)) {
			json_decref(shape);
			json_decref(root);
			LSPO_FAIL(NULL, "%s: tensor '%s': %s", path, t->name ? t->name : "(null)",
			          bad ? "invalid name or shape" : "duplicate name");
		}
		json_t *desc = json_pack("{s:s, s:o, s:[I, I]}", "dtype", t->dtype == ST_I32 ? "I32" : "F32", "shape", shape,
		                         "data_offsets", (json_int_t)offset, (json_int_t)(offset + bytes));
		if (!desc || json_object_set_new(root, t->name, desc)) {
			json_decref(root);
			LSPO_FAIL(NULL, "%s: out of memory building the header", path);
		}
		offset += bytes;
	}
	return root;
}

int st_write(const char *path, const struct st_out_tensor *ts, size_t n)
{
	json_t *root = header_json(path, ts, n);
	if (!root)
		return LSPO_EINVAL;
	char *text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!text)
		LSPO_FAIL(LSPO_ENOMEM, "%s: out of memory serialising the header", path);
	size_t len = strlen(text);
	uint64_t hlen = (len + 7) / 8 * 8;   /* pad with spaces to 8-byte alignment */
	struct atomic_file af;
	int rc = atomic_open(path, &af);
	if (rc) {
		free(text);
		return rc;
	}
	static const char spaces[8] = "        ";
	rc = atomic_write(&af, &hlen, 8);
	if (!rc)
		rc = atomic_write(&af, text, len);
	if (!rc)
		rc = atomic_write(&af, spaces, (size_t)hlen - len);
	free(text);
	for (size_t i = 0; i < n && !rc; i++) {
		size_t numel = 1;
		for (int d = 0; d < ts[i].ndim; d++)
			numel *= (size_t)ts[i].shape[d];
		rc = atomic_write(&af, ts[i].data, numel * 4);   /* F32 or I32 */
	}
	if (rc) {
		atomic_abort(&af);
		return rc;
	}
	return atomic_commit(&af);
}
