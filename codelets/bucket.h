/* bucket.h - a gradient bucket: several tensors copied into (pack) or out
 * of (unpack) consecutive chunks of one flat buffer, for the data-parallel
 * reduction (src/engine/dp.c).  CPU only: StarPU-MPI sends from host memory. */
#ifndef LSPO_BUCKET_H
#define LSPO_BUCKET_H

#include "codelet_util.h"

/* Copies the concatenation of the ntensors matrices (row-major, rows x cols,
 * each with its ld) into the nchunks (1, len) chunks, in order
 * (to_chunks 1), or back (to_chunks 0).  The element counts must agree. */
void bucket_copy_cpu(float *const *tensors, const int *rows, const int *cols, const int *ld, int ntensors,
                     float *const *chunks, const size_t *len, int nchunks, int to_chunks);

extern struct starpu_codelet cl_bucket_pack, cl_bucket_unpack;

/* Submits the pack (tensors R, chunks W) or the unpack (chunks R, tensors W). */
int lspo_bucket_pack_submit(const starpu_data_handle_t *tensors, int ntensors, const starpu_data_handle_t *chunks,
                            int nchunks, int priority, const char *name);
int lspo_bucket_unpack_submit(const starpu_data_handle_t *chunks, int nchunks, const starpu_data_handle_t *tensors,
                              int ntensors, int priority, const char *name);

#endif
