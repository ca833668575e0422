/*
 * adamw.cu - the CUDA side of AdamW: one thread per element (grid-stride),
 * the clip scale read from the clip buffer on the device, so no host wait
 * sits between the gradient norm and the update.  Same formula as adamw.c.
 */
#include <starpu.h>

#ifdef STARPU_USE_CUDA
#include <math.h>

#include "adamw.h"

struct adamw_dev_consts {
	float decay, b1, omb1, b2, omb2, step, inv_sqrt_bc2, eps;
};

/* rows x cols elements; row r of each buffer starts at r * ld. */
__global__ static void adamw_kernel(float *p, const float *grad, float *m, float *v,
                                    int rows, int cols, int ldp, int ldg, int ldm, int ldv,
                                    const float *clip, struct adamw_dev_consts k)
{
	float gs = clip[1];
	if (!isfinite(clip[0]))
		return;   /* non-finite gradient norm: the step is skipped, p, m and v stay */
	for (int r = blockIdx.y; r < rows; r += gridDim.y) {
		float *pr = p + (size_t)r * ldp, *mr = m + (size_t)r * ldm, *vr = v + (size_t)r * ldv;
		const float *gr = grad + (size_t)r * ldg;
		for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)cols;
		     i += (size_t)gridDim.x * blockDim.x) {
			float g = gr[i] * gs;
			float mi = k.b1 * mr[i] + k.omb1 * g;
			float vi = k.b2 * vr[i] + k.omb2 * g * g;
			mr[i] = mi;
			vr[i] = vi;
			pr[i] = pr[i] * k.decay - k.step * (mi / (sqrtf(vi) * k.inv_sqrt_bc2 + k.eps));
		}
	}
}

/* A bf16 param, rounded back stochastically: lspo_adamw_elem (adamw.h),
 * element (r, c) with index r cols + c, as on the CPU. */
__global__ static void adamw_sr_kernel(uint16_t *p, const float *grad, float *m, float *v, int rows, int cols,
                                       int ldp, int ldg, int ldm, int ldv, const float *clip,
                                       struct adamw_dev_consts k, uint64_t key)
{
	float gs = clip[1];
	if (!isfinite(clip[0]))
		return;   /* non-finite gradient norm: the step is skipped, p, m and v stay */
	for (int r = blockIdx.y; r < rows; r += gridDim.y)
		for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (size_t)cols;
		     i += (size_t)gridDim.x * blockDim.x) {
			uint16_t *pi = p + (size_t)r * ldp + i;
			float x = lspo_adamw_elem(__uint_as_float((uint32_t)*pi << 16), grad[(size_t)r * ldg + i] * gs,
			                          m + (size_t)r * ldm + i, v + (size_t)r * ldv + i, k.decay, k.b1, k.b2,
			                          k.step, k.inv_sqrt_bc2, k.eps);
			*pi = lspo_bf16_round_sr_bits(__float_as_uint(x), key, (uint64_t)r * cols + i);
		}
}

extern "C" void adamw_cuda(void *buffers[], void *cl_arg)
{
	const struct lspo_adamw_hparams *h = (const struct lspo_adamw_hparams *)cl_arg;
	void *p = buffers[0], *g = buffers[1], *m = buffers[2], *v = buffers[3], *clip = buffers[4];
	int rows = lspo_mat_rows(p), cols = lspo_mat_cols(p);
	int ldp = lspo_mat_ld(p), ldg = lspo_mat_ld(g), ldm = lspo_mat_ld(m), ldv = lspo_mat_ld(v);
	if ((size_t)rows * cols == 0)
		return;
	if (ldp == cols && ldg == cols && ldm == cols && ldv == cols && (size_t)rows * cols <= INT32_MAX) {
		cols *= rows;   /* contiguous: one long row */
		rows = 1;
	}
	double bc1 = 1.0 - pow((double)h->beta1, h->t), bc2 = 1.0 - pow((double)h->beta2, h->t);
	struct adamw_dev_consts k = {
		1.0f - h->lr * h->weight_decay, h->beta1, 1.0f - h->beta1, h->beta2, 1.0f - h->beta2,
		(float)(h->lr / bc1), (float)(1.0 / sqrt(bc2)), h->eps,
	};
	int threads = 256;
	int bx = (int)(((size_t)cols + threads - 1) / threads);
	dim3 grid(bx < 4096 ? bx : 4096, rows < 65535 ? rows : 65535);
	if (lspo_bf16_buffer(p))   /* rows and cols as above: a contiguous one long row keeps r cols + c */
		adamw_sr_kernel<<<grid, threads, 0, starpu_cuda_get_local_stream()>>>(
			(uint16_t *)STARPU_MATRIX_GET_PTR(p), lspo_mat_ptr(g), lspo_mat_ptr(m), lspo_mat_ptr(v), rows,
			cols, ldp, ldg, ldm, ldv, lspo_mat_ptr(clip), k, h->sr_key);
	else
		adamw_kernel<<<grid, threads, 0, starpu_cuda_get_local_stream()>>>(
			lspo_mat_ptr(p), lspo_mat_ptr(g), lspo_mat_ptr(m), lspo_mat_ptr(v), rows, cols,
			ldp, ldg, ldm, ldv, lspo_mat_ptr(clip), k);
	cudaError_t e = cudaGetLastError();
	if (e != cudaSuccess)
		STARPU_CUDA_REPORT_ERROR(e);
}
#endif
