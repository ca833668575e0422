/*
 * selftest.cu - kernels that each break one CUDA rule the emulator
 * enforces, and kernels whose warp collectives have known results.  Built by
 * the harness like a codelet's .cu file; test_cuemu calls selftest_rules()
 * (cuemu_selftest_rules after cu2cpp's renaming), which returns the number
 * of rules not enforced.
 */
#include <stdio.h>
#include <string.h>

static int failures;

/* The launch just made must have been reported with `needle` in the text. */
static void expect(const char *what, const char *needle)
{
	int found = 0;
	for (int i = 0; i < cuemu_report_count(); i++)
		found |= strstr(cuemu_report_text(i), needle) != NULL;
	if (!found) {
		fprintf(stderr, "selftest: %s: no report with \"%s\" (%d reports%s%s)\n", what, needle,
		        cuemu_report_count(), cuemu_report_count() ? ", the first: " : "",
		        cuemu_report_count() ? cuemu_report_text(0) : "");
		failures++;
	} else {
		printf("self-test [%s]: %s reported: %s\n", cuemu_schedule_name(), what, cuemu_report_text(0));
	}
	cuemu_clear_reports();
}

static void expect_clean(const char *what)
{
	if (cuemu_report_count()) {
		fprintf(stderr, "selftest: %s: unexpected report: %s\n", what, cuemu_report_text(0));
		failures++;
	}
	cuemu_clear_reports();
}

static __global__ void divergent_barrier(int *out)
{
	if (threadIdx.x & 1)
		__syncthreads();
	else
		__syncthreads();
	out[threadIdx.x] = 1;
}

static __global__ void barrier_in_odd_threads(int *out)
{
	if (threadIdx.x & 1)
		__syncthreads();
	out[threadIdx.x] = 1;
}

static __global__ void shuffle_with_exited_lane(float *out)
{
	if (threadIdx.x == 5)
		return;
	out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

static __global__ void shuffle_against_barrier(float *out)
{
	if (threadIdx.x == 3)
		__syncthreads();
	else
		out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (float)threadIdx.x, 1);
}

/* A full-mask reduction in a block whose size is not a multiple of 32. */
static __global__ void warp_sum_partial_warp(float *out)
{
	float v = (float)threadIdx.x;
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	out[threadIdx.x] = v;
}

static __global__ void fill_dynamic(float *out, int n)
{
	extern __shared__ float buf[];
	for (int i = threadIdx.x; i < n; i += blockDim.x)
		buf[i] = (float)i;
	__syncthreads();
	if (threadIdx.x == 0)
		out[0] = buf[n - 1];
}

struct big_params {
	char bytes[40000];
};

static __global__ void takes_big_params(struct big_params p, int *out)
{
	out[0] = p.bytes[0];
}

static __global__ void collectives(int *out)
{
	int t = threadIdx.x;
	out[0 * 64 + t] = __shfl_xor_sync(0xffffffffu, t, 3);
	out[1 * 64 + t] = __shfl_down_sync(0xffffffffu, t, 4, 16);
	out[2 * 64 + t] = __shfl_up_sync(0xffffffffu, t, 1);
	out[3 * 64 + t] = __shfl_sync(0xffffffffu, t, 7);
	out[4 * 64 + t] = (int)__ballot_sync(0xffffffffu, t % 3 == 0);
	out[5 * 64 + t] = __syncthreads_count(t % 2);
	if ((t & 31) < 16)   /* a half-warp collective with its own mask */
		out[6 * 64 + t] = __shfl_xor_sync(0x0000ffffu, t, 8);
	else
		out[6 * 64 + t] = -1;
}

extern "C" int selftest_rules(void)
{
	failures = 0;
	cuemu_clear_reports();
	int ibuf[7 * 64];
	float fbuf[1024];

	divergent_barrier<<<2, 64>>>(ibuf);
	expect("__syncthreads on two lines", "divergent barrier");
	barrier_in_odd_threads<<<1, 64>>>(ibuf);
	expect("__syncthreads in odd threads only", "exited while the other threads wait in __syncthreads");
	shuffle_with_exited_lane<<<1, 32>>>(fbuf);
	expect("a shuffle whose mask names an exited lane", "lane 5 of the mask 0xffffffff has exited");
	shuffle_against_barrier<<<1, 32>>>(fbuf);
	expect("a shuffle while a lane of its mask waits in __syncthreads", "waits in __syncthreads");
	warp_sum_partial_warp<<<1, 48>>>(fbuf);
	expect("a full-mask shuffle in a block of 48 threads", "which does not exist");

	warp_sum_partial_warp<<<1, 1280>>>(fbuf);
	if (cudaGetLastError() != cudaErrorInvalidConfiguration) {
		fprintf(stderr, "selftest: a launch of 1280 threads did not leave cudaErrorInvalidConfiguration\n");
		failures++;
	}
	expect("a block of 1280 threads", "at most 1024");
	warp_sum_partial_warp<<<dim3(1, 70000), 32>>>(fbuf);
	expect("a grid with y = 70000", "y and z at most 65535");

	static struct big_params params;
	takes_big_params<<<1, 32>>>(params, ibuf);
	expect("40000 bytes of kernel parameters", "bytes of kernel parameters");

	static float big[1];
	int n = 64 * 1024 / (int)sizeof(float);
	cudaFuncSetAttribute(fill_dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024);
	fill_dynamic<<<1, 128, 64 * 1024>>>(big, n);
	if (cudaGetLastError() != cudaErrorInvalidValue) {
		fprintf(stderr, "selftest: 64 KiB of dynamic shared memory without the opt-in did not fail\n");
		failures++;
	}
	expect("64 KiB of dynamic shared memory without cudaFuncSetAttribute", "without cudaFuncSetAttribute");
	if (cudaFuncSetAttribute(fill_dynamic, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) != cudaSuccess) {
		fprintf(stderr, "selftest: cudaFuncSetAttribute(64 KiB) refused\n");
		failures++;
	}
	big[0] = 0;
	fill_dynamic<<<1, 128, 64 * 1024>>>(big, n);
	expect_clean("64 KiB of dynamic shared memory after the opt-in");
	if (big[0] != (float)(n - 1) || cudaGetLastError() != cudaSuccess) {
		fprintf(stderr, "selftest: the opted-in kernel did not run (%g)\n", big[0]);
		failures++;
	}

	/* Known results of the collectives: 2 warps. */
	int *o = ibuf;
	collectives<<<1, 64>>>(o);
	expect_clean("warp collectives");
	int wrong = 0;
	for (int t = 0; t < 64; t++) {
		int lane = t % 32, seg = lane & ~15, w = t - lane;
		unsigned ballot = 0;
		for (int l = 0; l < 32; l++)
			ballot |= ((w + l) % 3 == 0) ? 1u << l : 0;
		wrong += o[t] != (t ^ 3);
		wrong += o[64 + t] != (lane + 4 < seg + 16 ? t + 4 : t);
		wrong += o[128 + t] != (lane >= 1 ? t - 1 : t);
		wrong += o[192 + t] != w + 7;
		wrong += o[256 + t] != (int)ballot;
		wrong += o[320 + t] != 32;
		wrong += o[384 + t] != (lane < 16 ? t ^ 8 : -1);
	}
	if (wrong) {
		fprintf(stderr, "selftest: %d wrong results of warp collectives\n", wrong);
		failures++;
	}
	return failures;
}
