/*
 * test_bucket.c - the gradient buckets of data parallelism (codelets/bucket.c):
 * tensors of several shapes, some viewed with a row stride larger than their
 * width, packed as tasks into chunks of uneven sizes
 * hold the tensors' elements in order; unpacked into other tensors they give
 * the tensors back, and the padding between rows stays untouched.  Runs
 * without MPI: the ring itself is tests/test_mpi.sh's.
 */
#include <string.h>

#include "common.h"
#include "bucket.h"

#define NT 4
#define NC 4

int main(void)
{
	struct lspo_ctx *ctx = test_start("eager", -1, 0);
	static const int rows[NT] = { 1, 3, 7, 2 }, cols[NT] = { 5, 4, 9, 1 }, ld[NT] = { 5, 6, 9, 3 };
	static const size_t len[NC] = { 7, 30, 1, 44 };   /* 82 elements in all */
	uint64_t seed = 42;
	float *src[NT], *dst[NT], *chunk[NC], *expect = falloc(82);
	starpu_data_handle_t hs[NT], hd[NT], hc[NC];
	size_t at = 0;
	for (int t = 0; t < NT; t++) {
		size_t n = (size_t)rows[t] * ld[t];
		src[t] = falloc(n);
		dst[t] = falloc(n);
		test_fill(src[t], n, &seed);
		for (size_t i = 0; i < n; i++)
			dst[t][i] = 1000.0f + (float)i;   /* padding must keep these */
		for (int i = 0; i < rows[t]; i++)
			for (int j = 0; j < cols[t]; j++)
				expect[at++] = src[t][(size_t)i * ld[t] + j];
		starpu_matrix_data_register(&hs[t], STARPU_MAIN_RAM, (uintptr_t)src[t], (uint32_t)ld[t], (uint32_t)cols[t],
		                            (uint32_t)rows[t], sizeof(float));
		starpu_matrix_data_register(&hd[t], STARPU_MAIN_RAM, (uintptr_t)dst[t], (uint32_t)ld[t], (uint32_t)cols[t],
		                            (uint32_t)rows[t], sizeof(float));
	}
	CHECK(at == 82, "test set-up: %zu elements", at);
	for (int c = 0; c < NC; c++) {
		chunk[c] = falloc(len[c]);
		lspo_matrix_register(&hc[c], chunk[c], 1, (int)len[c]);
	}
	int rc = lspo_bucket_pack_submit(hs, NT, hc, NC, 0, "bucket_pack:L0:reduce");
	starpu_task_wait_for_all();
	CHECK(rc == LSPO_OK, "pack submit: %s", lspo_strerror(rc));
	size_t k = 0;
	int bad = 0;
	for (int c = 0; c < NC; c++) {
		starpu_data_acquire(hc[c], STARPU_R);
		for (size_t i = 0; i < len[c]; i++)
			bad += chunk[c][i] != expect[k++];
		starpu_data_release(hc[c]);
	}
	CHECK(!bad, "%d packed elements out of place", bad);
	rc = lspo_bucket_unpack_submit(hc, NC, hd, NT, 0, "bucket_unpack:L0:reduce");
	starpu_task_wait_for_all();
	CHECK(rc == LSPO_OK, "unpack submit: %s", lspo_strerror(rc));
	bad = 0;
	int pad = 0;
	for (int t = 0; t < NT; t++) {
		starpu_data_acquire(hd[t], STARPU_R);
		for (int i = 0; i < rows[t]; i++)
			for (int j = 0; j < ld[t]; j++) {
				size_t x = (size_t)i * ld[t] + j;
				if (j < cols[t])
					bad += dst[t][x] != src[t][x];
				else
					pad += dst[t][x] != 1000.0f + (float)x;
			}
		starpu_data_release(hd[t]);
	}
	CHECK(!bad, "%d unpacked elements differ", bad);
	CHECK(!pad, "%d padding elements overwritten", pad);
	for (int t = 0; t < NT; t++) {
		starpu_data_unregister(hs[t]);
		starpu_data_unregister(hd[t]);
		free(src[t]);
		free(dst[t]);
	}
	for (int c = 0; c < NC; c++) {
		starpu_data_unregister(hc[c]);
		free(chunk[c]);
	}
	free(expect);
	lspo_ctx_destroy(ctx);
	return test_finish("test_bucket");
}
