/* bucket.c - gradient buckets: pack tensors into the chunks of one flat
 * buffer, unpack them back (CPU kernel, codelets, submit helpers). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "bucket.h"

void bucket_copy_cpu(float *const *tensors, const int *rows, const int *cols, const int *ld, int ntensors,
                     float *const *chunks, const size_t *len, int nchunks, int to_chunks)
{
	int c = 0;
	size_t at = 0;   /* position in chunk c */
	for (int t = 0; t < ntensors; t++)
		for (int i = 0; i < rows[t]; i++) {
			float *row = tensors[t] + (size_t)i * ld[t];
			size_t done = 0, n = (size_t)cols[t];
			while (done < n) {
				while (c < nchunks && at == len[c]) {
					c++;
					at = 0;
				}
				STARPU_ASSERT_MSG(c < nchunks, "bucket: the chunks hold fewer elements than the tensors");
				size_t k = n - done < len[c] - at ? n - done : len[c] - at;
				if (to_chunks)
					memcpy(chunks[c] + at, row + done, k * sizeof(float));
				else
					memcpy(row + done, chunks[c] + at, k * sizeof(float));
				done += k;
				at += k;
			}
		}
}

/* cl_arg: the number of tensors; the buffers are the tensors then the
 * chunks (pack) or the chunks then the tensors (unpack). */
static void bucket_codelet(void *buffers[], void *cl_arg, int to_chunks)
{
	struct starpu_task *task = starpu_task_get_current();
	int nt = *(const int *)cl_arg, nb = (int)STARPU_TASK_GET_NBUFFERS(task), nc = nb - nt;
	int t0 = to_chunks ? 0 : nc, c0 = to_chunks ? nt : 0;
	float **tp = malloc(sizeof(*tp) * (size_t)nt), **cp = malloc(sizeof(*cp) * (size_t)nc);
	int *rows = malloc(sizeof(int) * 3 * (size_t)nt);
	size_t *len = malloc(sizeof(*len) * (size_t)nc);
	STARPU_ASSERT_MSG(tp && cp && rows && len, "bucket: out of memory");
	int *cols = rows + nt, *ld = rows + 2 * nt;
	for (int t = 0; t < nt; t++) {
		tp[t] = lspo_mat_ptr(buffers[t0 + t]);
		rows[t] = lspo_mat_rows(buffers[t0 + t]);
		cols[t] = lspo_mat_cols(buffers[t0 + t]);
		ld[t] = lspo_mat_ld(buffers[t0 + t]);
	}
	for (int c = 0; c < nc; c++) {
		cp[c] = lspo_mat_ptr(buffers[c0 + c]);
		len[c] = (size_t)lspo_mat_rows(buffers[c0 + c]) * lspo_mat_cols(buffers[c0 + c]);
	}
	bucket_copy_cpu(tp, rows, cols, ld, nt, cp, len, nc, to_chunks);
	free(tp);
	free(cp);
	free(rows);
	free(len);
}

static void bucket_pack_cpu_codelet(void *buffers[], void *cl_arg) { bucket_codelet(buffers, cl_arg, 1); }
static void bucket_unpack_cpu_codelet(void *buffers[], void *cl_arg) { bucket_codelet(buffers, cl_arg, 0); }

LSPO_PERFMODEL(bucket_pack_model, "lspo_bucket_pack");
LSPO_PERFMODEL(bucket_unpack_model, "lspo_bucket_unpack");

struct starpu_codelet cl_bucket_pack = {
	.cpu_funcs = { bucket_pack_cpu_codelet },
	.cpu_funcs_name = { "bucket_pack_cpu_codelet" },
	.nbuffers = STARPU_VARIABLE_NBUFFERS,
	.model = &bucket_pack_model,
	.name = "bucket_pack",
	.color = LSPO_COLOR_REDUCE,
};

struct starpu_codelet cl_bucket_unpack = {
	.cpu_funcs = { bucket_unpack_cpu_codelet },
	.cpu_funcs_name = { "bucket_unpack_cpu_codelet" },
	.nbuffers = STARPU_VARIABLE_NBUFFERS,
	.model = &bucket_unpack_model,
	.name = "bucket_unpack",
	.color = LSPO_COLOR_REDUCE,
};

static int submit(struct starpu_codelet *cl, const starpu_data_handle_t *first, int nfirst,
                  enum starpu_data_access_mode first_mode, const starpu_data_handle_t *second, int nsecond,
                  enum starpu_data_access_mode second_mode, int ntensors, int priority, const char *name)
{
	int n = nfirst + nsecond;
	struct starpu_data_descr *d = malloc(sizeof(*d) * (size_t)n);
	int *arg = malloc(sizeof(*arg));
	if (!d || !arg) {
		free(d);
		free(arg);
		LSPO_FAIL(LSPO_ENOMEM, "%s: cannot allocate task arguments", name);
	}
	for (int i = 0; i < nfirst; i++)
		d[i] = (struct starpu_data_descr){ .handle = first[i], .mode = first_mode };
	for (int i = 0; i < nsecond; i++)
		d[nfirst + i] = (struct starpu_data_descr){ .handle = second[i], .mode = second_mode };
	*arg = ntensors;
	int rc = starpu_task_insert(cl, STARPU_DATA_MODE_ARRAY, d, n, STARPU_CL_ARGS, arg, sizeof(*arg),
	                            STARPU_PRIORITY, priority, STARPU_NAME, name, 0);
	free(d);
	LSPO_STARPU(rc);
	return LSPO_OK;
}

int lspo_bucket_pack_submit(const starpu_data_handle_t *tensors, int ntensors, const starpu_data_handle_t *chunks,
                            int nchunks, int priority, const char *name)
{
	return submit(&cl_bucket_pack, tensors, ntensors, STARPU_R, chunks, nchunks, STARPU_W, ntensors, priority,
	              name);
}

int lspo_bucket_unpack_submit(const starpu_data_handle_t *chunks, int nchunks, const starpu_data_handle_t *tensors,
                              int ntensors, int priority, const char *name)
{
	return submit(&cl_bucket_unpack, chunks, nchunks, STARPU_R, tensors, ntensors, STARPU_W, ntensors, priority,
	              name);
}
