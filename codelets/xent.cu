/*
 * xent.cu - the CUDA side of xent: one block per row.  Each thread keeps an
 * online (max, sum of exp) over its strided elements, the block combines them
 * by shuffles (max, then the rescaled sums), and the gradient pass writes
 * (exp(x - m) / s - onehot) * dloss, in place over the logits.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "xent.h"
#include "gpt2_ops_util.cuh"

template <bool GRAD>
static __global__ void xent_kernel(float *losses, float *dlogits, const float *logits,
                                   const int32_t *targets, int N, int V, float dloss)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float *x = logits + (size_t)row * V;
		int t = targets[row];
		if (t < 0) {   /* ignored target, the same for the whole block: no loss, no gradient */
			if (threadIdx.x == 0)
				losses[row] = 0.0f;
			if (GRAD)
				for (int j = threadIdx.x; j < V; j += blockDim.x)
					dlogits[(size_t)row * V + j] = 0.0f;
			continue;
		}
		float xt = threadIdx.x == 0 ? x[t] : 0.0f;  /* read before any in-place write */
		float m = -INFINITY, s = 0.0f;
		for (int j = threadIdx.x; j < V; j += blockDim.x) {
			float v = x[j];
			if (v > m) {
				s = s * expf(m - v) + 1.0f;
				m = v;
			} else if (v != -INFINITY) {  /* -inf - -inf would be NaN */
				s += expf(v - m);
			}
		}
		float M = block_max(m, shared);
		float S = block_sum(m == -INFINITY ? 0.0f : s * expf(m - M), shared);
		if (threadIdx.x == 0)
			losses[row] = M + logf(S) - xt;
		if (GRAD) {
			float *d = dlogits + (size_t)row * V;
			float inv = 1.0f / S;
			for (int j = threadIdx.x; j < V; j += blockDim.x)
				d[j] = (expf(x[j] - M) * inv - (j == t ? 1.0f : 0.0f)) * dloss;
		}
		__syncthreads();  /* the next row's reductions reuse `shared` */
	}
}

static int row_grid(int N)
{
	return N < 65535 ? N : 65535;
}

/* buffers: logits (N, V) R, targets (B, T) int32, losses (1, N). */
extern "C" void xent_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	int N = lspo_mat_rows(buffers[0]), V = lspo_mat_cols(buffers[0]);
	xent_kernel<false><<<row_grid(N), row_threads(V, 1024), 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), NULL, lspo_mat_ptr(buffers[0]),
		(const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]), N, V, 0.0f);
	lspo_cuda_check_launch();
}

/* buffers: logits (N, V) RW -> dlogits, targets (B, T) int32, losses (1, N). */
extern "C" void xent_backward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_xent_args *args = (const struct lspo_xent_args *)cl_arg;
	int N = lspo_mat_rows(buffers[0]), V = lspo_mat_cols(buffers[0]);
	float *logits = lspo_mat_ptr(buffers[0]);
	xent_kernel<true><<<row_grid(N), row_threads(V, 1024), 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[2]), logits, logits,
		(const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]), N, V, args->dloss);
	lspo_cuda_check_launch();
}
#endif
