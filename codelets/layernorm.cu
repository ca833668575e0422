/*
 * layernorm.cu - the CUDA side of layernorm.  Forward and the dinp part of
 * backward: one block per row, sums by warp shuffles.  dw and db: one thread
 * per (column, row lane) in 32x32 blocks over 32-column tiles, each summing a
 * fixed subset of rows, then a fixed-order sum over the lanes, so the result
 * does not depend on timing (no atomics).  Activations and weights float32
 * or bf16 (bf16.cuh), statistics and weight gradients float32.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include "bf16.cuh"
#include "layernorm.h"
#include "gpt2_ops_util.cuh"

template <typename E>
static __global__ void layernorm_fwd_kernel(E *out, float *mean, float *rstd, const E *inp, const E *w,
                                            const E *b, int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const E *x = inp + (size_t)row * C;
		E *o = out + (size_t)row * C;
		float s = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			s += lspo_load(x, c);
		float m = block_sum(s, shared) / (float)C;
		float v = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float d = lspo_load(x, c) - m;
			v += d * d;
		}
		float r = rsqrtf(block_sum(v, shared) / (float)C + LSPO_LAYERNORM_EPS);
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			lspo_store(o, c, (lspo_load(x, c) - m) * r * lspo_load(w, c) + lspo_load(b, c));
		if (threadIdx.x == 0) {
			mean[row] = m;
			rstd[row] = r;
		}
	}
}

template <typename E>
static __global__ void layernorm_bwd_dinp_kernel(E *dinp, const E *dout, const E *inp, const E *w,
                                                 const float *mean, const float *rstd, int N, int C)
{
	__shared__ float shared[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const E *x = inp + (size_t)row * C, *d = dout + (size_t)row * C;
		E *di = dinp + (size_t)row * C;
		float m = mean[row], r = rstd[row], sg = 0.0f, sgn = 0.0f;
		for (int c = threadIdx.x; c < C; c += blockDim.x) {
			float g = lspo_load(w, c) * lspo_load(d, c);
			sg += g;
			sgn += g * (lspo_load(x, c) - m) * r;
		}
		float g_mean = block_sum(sg, shared) / (float)C;
		float gn_mean = block_sum(sgn, shared) / (float)C;
		for (int c = threadIdx.x; c < C; c += blockDim.x)
			lspo_store(di, c, lspo_load(di, c) + r * (lspo_load(w, c) * lspo_load(d, c) - g_mean
			                                          - (lspo_load(x, c) - m) * r * gn_mean));
	}
}

#define TILE 32
template <typename E>
static __global__ void layernorm_bwd_dwdb_kernel(float *dw, float *db, const E *dout, const E *inp,
                                                 const float *mean, const float *rstd, int N, int C)
{
	__shared__ float sdw[TILE][TILE + 1], sdb[TILE][TILE + 1];
	int c = blockIdx.x * TILE + threadIdx.x;
	float pw = 0.0f, pb = 0.0f;
	if (c < C)
		for (int row = threadIdx.y; row < N; row += TILE) {
			float d = lspo_load(dout, (size_t)row * C + c);
			pb += d;
			pw += (lspo_load(inp, (size_t)row * C + c) - mean[row]) * rstd[row] * d;
		}
	sdw[threadIdx.y][threadIdx.x] = pw;
	sdb[threadIdx.y][threadIdx.x] = pb;
	__syncthreads();
	if (threadIdx.y == 0 && c < C) {
		float sw = 0.0f, sb = 0.0f;
		for (int l = 0; l < TILE; l++) {
			sw += sdw[l][threadIdx.x];
			sb += sdb[l][threadIdx.x];
		}
		dw[c] += sw;
		db[c] += sb;
	}
}

static int row_grid(int N)
{
	return N < 65535 ? N : 65535;
}

template <typename E>
static void layernorm_forward(void *buffers[])
{
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	layernorm_fwd_kernel<E><<<row_grid(N), row_threads(C, 512), 0, starpu_cuda_get_local_stream()>>>(
		lspo_elems<E>(buffers[3]), lspo_mat_ptr(buffers[4]), lspo_mat_ptr(buffers[5]),
		lspo_elems<E>(buffers[0]), lspo_elems<E>(buffers[1]), lspo_elems<E>(buffers[2]), N, C);
	lspo_cuda_check_launch();
}

template <typename E>
static void layernorm_backward(void *buffers[])
{
	int N = lspo_mat_rows(buffers[0]), C = lspo_mat_cols(buffers[0]);
	cudaStream_t stream = starpu_cuda_get_local_stream();
	const E *dout = lspo_elems<E>(buffers[0]), *inp = lspo_elems<E>(buffers[1]), *w = lspo_elems<E>(buffers[2]);
	const float *mean = lspo_mat_ptr(buffers[3]), *rstd = lspo_mat_ptr(buffers[4]);
	layernorm_bwd_dinp_kernel<E><<<row_grid(N), row_threads(C, 512), 0, stream>>>(
		lspo_elems<E>(buffers[5]), dout, inp, w, mean, rstd, N, C);
	lspo_cuda_check_launch();
	layernorm_bwd_dwdb_kernel<E><<<(C + TILE - 1) / TILE, dim3(TILE, TILE), 0, stream>>>(
		lspo_mat_ptr(buffers[6]), lspo_mat_ptr(buffers[7]), dout, inp, mean, rstd, N, C);
	lspo_cuda_check_launch();
}

/* buffers: inp (N, C), w (1, C), b (1, C), out (N, C), mean (1, N), rstd (1, N).
 * inp, w, b and out all float32 or all bf16 (mixed: through float32 copies);
 * mean and rstd float32. */
extern "C" void layernorm_forward_cuda(void *buffers[], void *cl_arg)
{
	void *e[] = { buffers[0], buffers[1], buffers[2], buffers[3] };
	int bf = lspo_bf16_all(e, 4);
	if (bf < 0 || lspo_bf16_buffer(buffers[4]) || lspo_bf16_buffer(buffers[5]))
		lspo_bf16_cuda_call(layernorm_forward_cuda, &cl_layernorm_fwd, buffers, cl_arg);
	else if (bf)
		layernorm_forward<uint16_t>(buffers);
	else
		layernorm_forward<float>(buffers);
}

/* buffers: dout, inp (N, C), w (1, C), mean, rstd (1, N), dinp (N, C), dw, db (1, C).
 * dout, inp, w and dinp all float32 or all bf16; the others float32. */
extern "C" void layernorm_backward_cuda(void *buffers[], void *cl_arg)
{
	void *e[] = { buffers[0], buffers[1], buffers[2], buffers[5] };
	int bf = lspo_bf16_all(e, 4), f32 = 1;
	for (int i = 3; i < 8; i++)
		f32 &= i == 5 || !lspo_bf16_buffer(buffers[i]);
	if (bf < 0 || !f32)
		lspo_bf16_cuda_call(layernorm_backward_cuda, &cl_layernorm_bwd, buffers, cl_arg);
	else if (bf)
		layernorm_backward<uint16_t>(buffers);
	else
		layernorm_backward<float>(buffers);
}
#endif
