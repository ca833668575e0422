/*
 * xent.cu - the CUDA side of xent: one block per row.  Each thread keeps an
 * online (max, sum of exp) over its strided elements, the block combines them
 * by shuffles (max, then the rescaled sums), and the gradient pass writes
 * (exp(x - m) / s - onehot) * dloss, in place over the logits.  Logits of
 * --dtype bf16 are read as bf16 and dlogits rounded to bf16 on store
 * (bf16.h), with float32 in between: no float32 copy of the (N, V) logits.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "xent.h"
#include "gpt2_ops_util.cuh"

template <bool GRAD, typename E>
static __global__ void xent_kernel(float *losses, E *dlogits, const E *logits,
                                   const int32_t *targets, int N, int V, float dloss)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const E *x = logits + (size_t)row * V;
		int t = targets[row];
		if (t < 0) {   /* ignored target, the same for the whole block: no loss, no gradient */
			if (threadIdx.x == 0)
				losses[row] = 0.0f;
			if (GRAD)
				for (int j = threadIdx.x; j < V; j += blockDim.x)
					lspo_store(dlogits, (size_t)row * V + j, 0.0f);
			continue;
		}
		float xt = threadIdx.x == 0 ? lspo_load(x, t) : 0.0f;  /* read before any in-place write */
		float m = -INFINITY, s = 0.0f;
		for (int j = threadIdx.x; j < V; j += blockDim.x) {
			float v = lspo_load(x, j);
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
			E *d = dlogits + (size_t)row * V;
			float inv = 1.0f / S;
			for (int j = threadIdx.x; j < V; j += blockDim.x)
				lspo_store(d, j, (expf(lspo_load(x, j) - M) * inv - (j == t ? 1.0f : 0.0f)) * dloss);
		}
		__syncthreads();  /* the next row's reductions reuse `shared` */
	}
}

static int row_grid(int N)
{
	return N < 65535 ? N : 65535;
}

/* buffers: logits (N, V) R (float32 or bf16), targets (B, T) int32, losses (1, N). */
extern "C" void xent_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	int N = lspo_mat_rows(buffers[0]), V = lspo_mat_cols(buffers[0]);
	float *losses = lspo_mat_ptr(buffers[2]);
	const int32_t *targets = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	if (lspo_bf16_buffer(buffers[0]))
		xent_kernel<false, uint16_t><<<row_grid(N), row_threads(V, 1024), 0, stream>>>(
			losses, NULL, (const uint16_t *)STARPU_MATRIX_GET_PTR(buffers[0]), targets, N, V, 0.0f);
	else
		xent_kernel<false, float><<<row_grid(N), row_threads(V, 1024), 0, stream>>>(
			losses, NULL, lspo_mat_ptr(buffers[0]), targets, N, V, 0.0f);
	lspo_cuda_check_launch();
}

/* buffers: logits (N, V) RW -> dlogits (float32 or bf16), targets (B, T) int32, losses (1, N). */
extern "C" void xent_backward_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_xent_args *args = (const struct lspo_xent_args *)cl_arg;
	int N = lspo_mat_rows(buffers[0]), V = lspo_mat_cols(buffers[0]);
	float *losses = lspo_mat_ptr(buffers[2]);
	const int32_t *targets = (const int32_t *)STARPU_MATRIX_GET_PTR(buffers[1]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	if (lspo_bf16_buffer(buffers[0])) {
		uint16_t *logits = (uint16_t *)STARPU_MATRIX_GET_PTR(buffers[0]);
		xent_kernel<true, uint16_t><<<row_grid(N), row_threads(V, 1024), 0, stream>>>(
			losses, logits, logits, targets, N, V, args->dloss);
	} else {
		float *logits = lspo_mat_ptr(buffers[0]);
		xent_kernel<true, float><<<row_grid(N), row_threads(V, 1024), 0, stream>>>(
			losses, logits, logits, targets, N, V, args->dloss);
	}
	lspo_cuda_check_launch();
}
#endif
