/*
 * safetensors.h - reading and writing HF safetensors files (internal).
 *
 * Format: uint64 little-endian header length N, N bytes of JSON (an object:
 * tensor name -> {"dtype", "shape", "data_offsets": [begin, end)} plus an
 * optional "__metadata__" of strings), then the data buffer; offsets are
 * bytes from the start of the buffer.  The reader maps the file once and
 * validates the whole header before anyone reads a tensor: every error names
 * the file and the tensor or field.  The writer writes float32 and int32.
 */
#ifndef LSPO_SAFETENSORS_H
#define LSPO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8
#define ST_MAX_HEADER ((uint64_t)100 << 20)   /* the reference implementation's limit */

enum st_dtype {
	ST_F32, ST_F16, ST_BF16,   /* convertible to float32 */
	ST_F64, ST_I64, ST_U64, ST_I32, ST_U32, ST_I16, ST_U16, ST_I8, ST_U8, ST_BOOL,
	ST_F8_E4M3, ST_F8_E5M2,    /* known, parsed, but not convertible */
	ST_NDTYPES
};

struct st_tensor {
	char *name;
	enum st_dtype dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	size_t begin, end;         /* bytes, relative to the data buffer */
};

struct st_file {
	char *path;
	size_t ntensors;
	struct st_tensor *tensors; /* in header order */
	const unsigned char *data; /* the data buffer (inside the mapping) */
	size_t data_size;
	void *map;                 /* whole-file mapping */
	size_t map_size;
};

/* Maps and validates `path`.  LSPO_EIO (cannot open/map) or LSPO_EFORMAT. */
int st_open(const char *path, struct st_file **out);
void st_close(struct st_file *f);

const char *st_dtype_name(enum st_dtype d);
size_t st_numel(const struct st_tensor *t);
/* Index of the tensor named `name`, or -1. */
int st_find(const struct st_file *f, const char *name);

/* Converts tensor t (F32, F16 or BF16) into dst (numel floats).  LSPO_EFORMAT
 * naming the file and tensor for any other dtype. */
int st_read_f32(const struct st_file *f, const struct st_tensor *t, float *dst);

/* Scalar conversions, exposed for tests. */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);

/* Copies tensor t, which must be I32 with numel `n`, into dst.  LSPO_EFORMAT
 * naming the file and tensor otherwise. */
int st_read_i32(const struct st_file *f, const struct st_tensor *t, int32_t *dst, size_t n);

/* One tensor to write: row-major, shape[0..ndim), dtype ST_F32 (the zero
 * value) or ST_I32. */
struct st_out_tensor {
	const char *name;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;
	enum st_dtype dtype;
};

/* Writes the tensors, in order, to `path` atomically (temporary file, fsync,
 * rename), with "__metadata__": {"format": "pt"}. */
int st_write(const char *path, const struct st_out_tensor *tensors, size_t n);

#endif
