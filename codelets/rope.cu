/*
 * rope.cu - the CUDA side of rope: a grid-stride loop with one thread per
 * rotated pair (row, head, j < head_dim / 2), in place.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "rope.h"
#include "gpt2_ops_util.cuh"

static __global__ void rope_kernel(float *x, const float *table, int N, int T, int n_head, int head_dim,
                                   float sign)
{
	int half = head_dim / 2;
	size_t pairs = (size_t)N * n_head * half;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < pairs;
	     i += (size_t)blockDim.x * gridDim.x) {
		int j = (int)(i % half);
		size_t rh = i / half;                    /* row * n_head + head */
		int n = (int)(rh / n_head);
		const float *cs = table + (size_t)(n % T) * head_dim;
		float *x1 = x + rh * head_dim + j, *x2 = x1 + half;
		float a = *x1, b = *x2, c = cs[j], s = sign * cs[half + j];
		*x1 = a * c - b * s;
		*x2 = b * c + a * s;
	}
}

/* buffers: x (N, n_head * head_dim) RW, table (T, head_dim). */
extern "C" void rope_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_rope_args *a = (const struct lspo_rope_args *)cl_arg;
	int N = lspo_mat_rows(buffers[0]), T = lspo_mat_rows(buffers[1]);
	size_t pairs = (size_t)N * a->n_head * (a->head_dim / 2);
	if (pairs == 0)
		return;
	rope_kernel<<<elementwise_blocks(pairs, 256), 256, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[0]), lspo_mat_ptr(buffers[1]), N, T, a->n_head, a->head_dim,
		a->inverse ? -1.0f : 1.0f);
	lspo_cuda_check_launch();
}
#endif
