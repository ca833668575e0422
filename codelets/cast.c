/*
 * cast.c - float32 <-> bfloat16 and float32 copies: CPU kernels, codelets,
 * submit helpers.  CUDA kernels in cast.cu.  Matrices must be contiguous
 * (lspo registers them so, and StarPU allocates its copies so).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "cast.h"

void cast_f32_bf16_cpu(uint16_t *dst, const float *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &src[i], sizeof(u));
		if ((u & 0x7fffffffu) > 0x7f800000u)     /* NaN: keep it quiet and NaN */
			dst[i] = (uint16_t)((u >> 16) | 0x40u);
		else                                      /* round to nearest, ties to even */
			dst[i] = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
	}
}

void cast_bf16_f32_cpu(float *dst, const uint16_t *src, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = (uint32_t)src[i] << 16;
		memcpy(&dst[i], &u, sizeof(u));
	}
}

static size_t elements(void *buf)
{
	return (size_t)STARPU_MATRIX_GET_NX(buf) * STARPU_MATRIX_GET_NY(buf);
}

static void cast_f32_bf16_codelet(void *buffers[], void *arg)
{
	(void)arg;
	cast_f32_bf16_cpu((uint16_t *)STARPU_MATRIX_GET_PTR(buffers[1]),
	                  (const float *)STARPU_MATRIX_GET_PTR(buffers[0]), elements(buffers[0]));
}

static void cast_bf16_f32_codelet(void *buffers[], void *arg)
{
	(void)arg;
	cast_bf16_f32_cpu((float *)STARPU_MATRIX_GET_PTR(buffers[1]),
	                  (const uint16_t *)STARPU_MATRIX_GET_PTR(buffers[0]), elements(buffers[0]));
}

LSPO_PERFMODEL(to_bf16_model, "lspo_cast_f32_bf16");
LSPO_PERFMODEL(to_f32_model, "lspo_cast_bf16_f32");

struct starpu_codelet cl_cast_f32_bf16 = {
	.cpu_funcs = { cast_f32_bf16_codelet }, .cpu_funcs_name = { "cast_f32_bf16_codelet" },
	LSPO_CUDA_FUNC(cast_f32_bf16_cuda)
	.nbuffers = 2, .modes = { STARPU_R, STARPU_W },
	.model = &to_bf16_model, .name = "cast_f32_bf16", .color = LSPO_COLOR_TRANSFER,
};

struct starpu_codelet cl_cast_bf16_f32 = {
	.cpu_funcs = { cast_bf16_f32_codelet }, .cpu_funcs_name = { "cast_bf16_f32_codelet" },
	LSPO_CUDA_FUNC(cast_bf16_f32_cuda)
	.nbuffers = 2, .modes = { STARPU_R, STARPU_W },
	.model = &to_f32_model, .name = "cast_bf16_f32", .color = LSPO_COLOR_TRANSFER,
};

static int check(starpu_data_handle_t src, starpu_data_handle_t dst, size_t src_elem, size_t dst_elem,
                 const char *name)
{
	if (starpu_matrix_get_nx(src) != starpu_matrix_get_nx(dst) || starpu_matrix_get_ny(src) != starpu_matrix_get_ny(dst)
	    || starpu_matrix_get_elemsize(src) != src_elem || starpu_matrix_get_elemsize(dst) != dst_elem)
		LSPO_FAIL(LSPO_EINVAL, "%s: src (%u, %u) of %zu-byte elements and dst (%u, %u) of %zu-byte "
		          "elements: expected equal shapes of %zu and %zu bytes", name,
		          starpu_matrix_get_ny(src), starpu_matrix_get_nx(src), starpu_matrix_get_elemsize(src),
		          starpu_matrix_get_ny(dst), starpu_matrix_get_nx(dst), starpu_matrix_get_elemsize(dst),
		          src_elem, dst_elem);
	return LSPO_OK;
}

static int submit(struct starpu_codelet *cl, starpu_data_handle_t src, starpu_data_handle_t dst,
                  uint32_t where, int priority, const char *name)
{
	LSPO_STARPU(starpu_task_insert(cl, STARPU_R, src, STARPU_W, dst, STARPU_EXECUTE_WHERE, where,
	                               STARPU_PRIORITY, priority, STARPU_NAME, name, 0));
	return LSPO_OK;
}

int lspo_cast_f32_bf16_submit(starpu_data_handle_t src, starpu_data_handle_t dst, uint32_t where,
                              int priority, const char *name)
{
	int rc = check(src, dst, sizeof(float), sizeof(uint16_t), name);
	return rc ? rc : submit(&cl_cast_f32_bf16, src, dst, where, priority, name);
}

int lspo_cast_bf16_f32_submit(starpu_data_handle_t src, starpu_data_handle_t dst, uint32_t where,
                              int priority, const char *name)
{
	int rc = check(src, dst, sizeof(uint16_t), sizeof(float), name);
	return rc ? rc : submit(&cl_cast_bf16_f32, src, dst, where, priority, name);
}
