/*
 * encoder.cu - the CUDA side of the encoder.  Forward: one thread per output
 * element (rows along grid.y, channels along x, both grid-strided).
 * Backward: dwpe is summed over the batch by one thread per (t, c), in batch
 * order (deterministic); dwte uses atomicAdd, since tokens repeat arbitrarily
 * (the order of those float additions, hence the last bits, may vary between
 * runs; the CPU kernel is the deterministic one).
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "encoder.h"
#include "gpt2_ops_util.cuh"

static __global__ void encoder_fwd_kernel(float *out, const int32_t *tok, const float *wte,
                                          const float *wpe, int N, int T, int C)
{
	for (int i = blockIdx.y; i < N; i += gridDim.y) {
		const float *e = wte + (size_t)tok[i] * C, *p = wpe + (size_t)(i % T) * C;
		float *o = out + (size_t)i * C;
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x)
			o[c] = e[c] + p[c];
	}
}

static __global__ void encoder_bwd_wte_kernel(float *dwte, const float *dout, const int32_t *tok,
                                              int N, int C)
{
	for (int i = blockIdx.y; i < N; i += gridDim.y) {
		float *e = dwte + (size_t)tok[i] * C;
		const float *d = dout + (size_t)i * C;
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x)
			atomicAdd(e + c, d[c]);
	}
}

/* dwpe[t] += sum_b dout[b*T + t], b in increasing order. */
static __global__ void encoder_bwd_wpe_kernel(float *dwpe, const float *dout, int B, int T, int C)
{
	for (int t = blockIdx.y; t < T; t += gridDim.y)
		for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < C; c += blockDim.x * gridDim.x) {
			float s = 0.0f;
			for (int b = 0; b < B; b++)
				s += dout[((size_t)b * T + t) * C + c];
			dwpe[(size_t)t * C + c] += s;
		}
}

static dim3 rows_grid(int rows, int C, int threads)
{
	int gx = (C + threads - 1) / threads;
	return dim3(gx < 1 ? 1 : gx, rows < 65535 ? (rows < 1 ? 1 : rows) : 65535);
}

extern "C" void encoder_forward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[0];
	int B = lspo_mat_rows(tok), T = lspo_mat_cols(tok), C = lspo_mat_cols(buffers[3]);
	const int threads = 256;
	encoder_fwd_kernel<<<rows_grid(B * T, C, threads), threads, 0, starpu_cuda_get_local_stream()>>>(
		lspo_mat_ptr(buffers[3]), (const int32_t *)STARPU_MATRIX_GET_PTR(tok),
		lspo_mat_ptr(buffers[1]), lspo_mat_ptr(buffers[2]), B * T, T, C);
	lspo_cuda_check_launch();
}

extern "C" void encoder_backward_cuda(void *buffers[], void *cl_arg)
{
	(void)cl_arg;
	void *tok = buffers[1];
	int B = lspo_mat_rows(tok), T = lspo_mat_cols(tok), C = lspo_mat_cols(buffers[0]);
	const int threads = 256;
	cudaStream_t stream = starpu_cuda_get_local_stream();
	encoder_bwd_wte_kernel<<<rows_grid(B * T, C, threads), threads, 0, stream>>>(
		lspo_mat_ptr(buffers[2]), lspo_mat_ptr(buffers[0]),
		(const int32_t *)STARPU_MATRIX_GET_PTR(tok), B * T, C);
	lspo_cuda_check_launch();
	encoder_bwd_wpe_kernel<<<rows_grid(T, C, threads), threads, 0, stream>>>(
		lspo_mat_ptr(buffers[3]), lspo_mat_ptr(buffers[0]), B, T, C);
	lspo_cuda_check_launch();
}
#endif
