/*
 * st_craft.h - test-only helpers for the checkpoint tests: a safetensors
 * writer independent of the library's (any dtype, tensors in any order,
 * hand-made headers), GPT-2 model files built from the layout, and stderr
 * capture to check that error messages name the file and the field.
 */
#ifndef LSPO_TEST_ST_CRAFT_H
#define LSPO_TEST_ST_CRAFT_H

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "engine/model.h"
#include "models/gpt2.h"

struct craft_t {
	char name[96];
	char dtype[12];
	int ndim;
	long long shape[6];
	const void *data;   /* nbytes of raw little-endian data */
	size_t nbytes;
};

/* Writes 8-byte length hlen, header text (header_len bytes), then data. */
static inline int craft_raw(const char *path, uint64_t hlen, const char *header, size_t header_len,
                     const void *data, size_t nbytes)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fwrite(&hlen, 8, 1, f);
	fwrite(header, 1, header_len, f);
	if (nbytes)
		fwrite(data, 1, nbytes, f);
	return fclose(f);
}

/* Writes a well-formed file of the n entries, data packed in order. */
static inline int craft_write(const char *path, const struct craft_t *e, int n)
{
	size_t cap = 256 + (size_t)n * 256, len = 0, off = 0, total = 0;
	char *h = malloc(cap);
	len += (size_t)snprintf(h + len, cap - len, "{\"__metadata__\": {\"format\": \"pt\"}");
	for (int i = 0; i < n; i++) {
		len += (size_t)snprintf(h + len, cap - len, ", \"%s\": {\"dtype\": \"%s\", \"shape\": [",
		                        e[i].name, e[i].dtype);
		for (int d = 0; d < e[i].ndim; d++)
			len += (size_t)snprintf(h + len, cap - len, "%s%lld", d ? ", " : "", e[i].shape[d]);
		len += (size_t)snprintf(h + len, cap - len, "], \"data_offsets\": [%zu, %zu]}", off,
		                        off + e[i].nbytes);
		off += e[i].nbytes;
	}
	len += (size_t)snprintf(h + len, cap - len, "}");
	while (len % 8)
		h[len++] = ' ';
	unsigned char *data = malloc(off ? off : 1);
	for (int i = 0; i < n; i++) {
		if (e[i].nbytes)
			memcpy(data + total, e[i].data, e[i].nbytes);
		total += e[i].nbytes;
	}
	int rc = craft_raw(path, len, h, len, data, off);
	free(h);
	free(data);
	return rc;
}

/* Entries for every tensor of cfg's layout, F32 from params, HF shapes
 * (1-D tensors as [n]).  Returns the count; room for `extra` more. */
static inline int craft_model(const struct lspo_model_config *cfg, const float *params, int extra,
                       struct craft_t **out)
{
	struct model_layout lay;
	if (model_layout_of(cfg, &lay))
		return -1;
	struct craft_t *e = calloc((size_t)lay.ntensors + (size_t)extra, sizeof(*e));
	for (int i = 0; i < lay.ntensors; i++) {
		const struct model_tensor *t = &lay.tensors[i];
		snprintf(e[i].name, sizeof(e[i].name), "%s", t->name);
		strcpy(e[i].dtype, "F32");
		int two_d = t->layer < 0 ? i < 2 : (t->kind == GPT2_QKV_W || t->kind == GPT2_ATTPROJ_W ||
		                                    t->kind == GPT2_FC_W || t->kind == GPT2_FCPROJ_W);
		if (two_d) {
			e[i].ndim = 2;
			e[i].shape[0] = t->rows;
			e[i].shape[1] = t->cols;
		} else {
			e[i].ndim = 1;
			e[i].shape[0] = t->cols;
		}
		e[i].data = params + t->offset;
		e[i].nbytes = (size_t)t->rows * t->cols * sizeof(float);
	}
	int n = lay.ntensors;
	layout_free(&lay);
	*out = e;
	return n;
}

static inline int craft_find(const struct craft_t *e, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(e[i].name, name))
			return i;
	return -1;
}

static inline int write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	fputs(text, f);
	return fclose(f);
}

/* ---- stderr capture ---------------------------------------------------- */

static char captured[16384];
static int cap_saved = -1;
static char cap_path[4096];

static inline void cap_begin(void)
{
	fflush(stderr);
	cap_saved = dup(2);
	int fd = open(cap_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	dup2(fd, 2);
	close(fd);
}

/* Restores stderr, echoes what was captured (so test logs show it). */
static inline void cap_end(void)
{
	fflush(stderr);
	dup2(cap_saved, 2);
	close(cap_saved);
	FILE *f = fopen(cap_path, "rb");
	size_t n = f ? fread(captured, 1, sizeof(captured) - 1, f) : 0;
	captured[n] = '\0';
	if (f)
		fclose(f);
	fputs(captured, stderr);
}

/* Every NULL-terminated string appears in the captured text. */
static inline int cap_has(const char *first, ...)
{
	va_list ap;
	va_start(ap, first);
	int ok = 1;
	for (const char *s = first; s; s = va_arg(ap, const char *))
		if (!strstr(captured, s)) {
			fprintf(stderr, "  (message lacks '%s')\n", s);
			ok = 0;
		}
	va_end(ap);
	return ok;
}

/* A fresh temporary directory (under $TMPDIR or /tmp); cap_path inside it. */
/* Runs `call` with stderr captured; checks its status and the message. */
#define EXPECT(want, call, ...) do {                                              \
	cap_begin();                                                              \
	int rc_ = (call);                                                         \
	cap_end();                                                                \
	CHECK(rc_ == (want), "%s: got %s, expected %s", #call, lspo_strerror(rc_),  \
	      lspo_strerror(want));                                               \
	CHECK(cap_has(__VA_ARGS__, (const char *)NULL), "%s: message must name the file and field", #call); \
	} while (0)

static inline char *make_tmpdir(const char *tag)
{
	const char *base = getenv("TMPDIR");
	static char dir[2048];
	snprintf(dir, sizeof(dir), "%s/lspo-%s-XXXXXX", base && *base ? base : "/tmp", tag);
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(TEST_ERROR);
	}
	snprintf(cap_path, sizeof(cap_path), "%s/stderr.txt", dir);
	return dir;
}

static inline void remove_tmpdir(const char *dir)
{
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
}

#endif
