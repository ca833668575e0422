/*
 * cuemu.h - what a .cu file sees when the CUDA emulation harness compiles it
 * as host C++ (tests/cuemu/README.md: tests/cuemu/cu2cpp rewrites the launches
 * and `extern __shared__`, then the file is compiled with `-include cuemu.h`).
 *
 * It declares the CUDA language (qualifiers, threadIdx and friends, dim3,
 * __syncthreads, warp shuffles, atomics, the math the kernels use), the CUDA
 * runtime and cuBLAS calls the project's kernels make, and StarPU's CUDA
 * helpers, all as calls into the emulator (cuemu.cc).  Every thread of a
 * block is a fiber; this header never includes a CUDA header, so it builds
 * where no CUDA toolkit is installed.
 *
 * Every symbol the emulator defines starts with cuemu_ (the CUDA names are
 * macros or inline functions of this header): a test linked with a library
 * built by nvcc never interposes the real CUDA runtime or the real kernels.
 */
#ifndef LSPO_CUEMU_H
#define LSPO_CUEMU_H

#ifndef __cplusplus
#error "cuemu.h is for .cu files compiled as C++ by the emulation harness"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cuemu_api.h"

/* The CUDA runtime's and cuBLAS's status codes the kernels see (values as
 * in the CUDA headers). */
typedef enum cudaError {
	cudaSuccess = 0,
	cudaErrorInvalidValue = 1,
	cudaErrorMemoryAllocation = 2,
	cudaErrorInvalidConfiguration = 9,
	cudaErrorInvalidDeviceFunction = 98,
	cudaErrorLaunchOutOfResources = 701,
	cudaErrorLaunchFailure = 719,
} cudaError_t;

typedef enum {
	CUBLAS_STATUS_SUCCESS = 0,
	CUBLAS_STATUS_NOT_INITIALIZED = 1,
	CUBLAS_STATUS_INVALID_VALUE = 7,
} cublasStatus_t;

extern "C" {
/* Runtime stand-ins. */
cudaError_t cuemu_cudaGetLastError(void);
cudaError_t cuemu_cudaPeekAtLastError(void);
const char *cuemu_cudaGetErrorString(cudaError_t e);
cudaError_t cuemu_cudaMemsetAsync(void *p, int value, size_t n, const char *file, int line);
cudaError_t cuemu_cudaMemset2DAsync(void *p, size_t pitch, int value, size_t width, size_t height,
                                    const char *file, int line);
cudaError_t cuemu_cudaMemcpyAsync(void *dst, const void *src, size_t n, const char *file, int line);
void *cuemu_stream(void);
const char *cuemu_cublas_status_string(cublasStatus_t s);

void cuemu_report_status(const char *what, const char *status, const char *file, int line);
}

/* ---------------------------------------------------------------------------
 * Language */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __managed__
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* Static shared arrays: one block runs at a time, so a function-local static
 * is the block's copy (not refilled between blocks: see tests/cuemu/README.md). */
#define __shared__ static

struct uint3 {
	unsigned int x, y, z;
};

struct dim3 {
	unsigned int x, y, z;
	dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
	dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

/* The running fiber (its first member; the rest is the emulator's). */
struct cuemu_thread_pub {
	uint3 tid;
};
extern "C" struct cuemu_thread_pub *cuemu_self;
extern "C" uint3 cuemu_block_idx, cuemu_block_dim, cuemu_grid_dim;

#define threadIdx (static_cast<const uint3 &>(cuemu_self->tid))
#define blockIdx (static_cast<const uint3 &>(cuemu_block_idx))
#define blockDim (static_cast<const uint3 &>(cuemu_block_dim))
#define gridDim (static_cast<const uint3 &>(cuemu_grid_dim))
#define warpSize 32

/* Synchronisation points: the fiber waits there until the others arrive. */
extern "C" void cuemu_syncthreads(const char *file, int line);
extern "C" int cuemu_syncthreads_op(const char *file, int line, int op, int pred);
extern "C" void cuemu_syncwarp(const char *file, int line, unsigned mask);
/* kind: CUEMU_SHFL_*; returns the value of the source lane (bits). */
extern "C" uint64_t cuemu_warp_op(const char *file, int line, int kind, unsigned mask, uint64_t v,
                                  int arg, int width);
enum { CUEMU_SHFL_IDX, CUEMU_SHFL_UP, CUEMU_SHFL_DOWN, CUEMU_SHFL_XOR, CUEMU_BALLOT, CUEMU_ANY,
       CUEMU_ALL, CUEMU_SYNCWARP };

#define __syncthreads() cuemu_syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) cuemu_syncthreads_op(__FILE__, __LINE__, 0, (p) != 0)
#define __syncthreads_and(p) cuemu_syncthreads_op(__FILE__, __LINE__, 1, (p) != 0)
#define __syncthreads_or(p) cuemu_syncthreads_op(__FILE__, __LINE__, 2, (p) != 0)
#define __syncwarp(...) cuemu_syncwarp(__FILE__, __LINE__, cuemu_mask_or_all(__VA_ARGS__ + 0, #__VA_ARGS__))
static inline unsigned cuemu_mask_or_all(unsigned m, const char *text)
{
	return text[0] ? m : 0xffffffffu;
}
#define __threadfence() ((void)0)
#define __threadfence_block() ((void)0)

template <typename T>
static inline T cuemu_shfl(const char *file, int line, int kind, unsigned mask, T v, int arg, int width)
{
	static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
	uint64_t bits = 0;
	memcpy(&bits, &v, sizeof(T));
	bits = cuemu_warp_op(file, line, kind, mask, bits, arg, width);
	T r;
	memcpy(&r, &bits, sizeof(T));
	return r;
}
#define __shfl_sync(m, v, l, ...) cuemu_shfl(__FILE__, __LINE__, CUEMU_SHFL_IDX, m, v, l, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32)
#define __shfl_up_sync(m, v, d, ...) cuemu_shfl(__FILE__, __LINE__, CUEMU_SHFL_UP, m, v, d, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32)
#define __shfl_down_sync(m, v, d, ...) cuemu_shfl(__FILE__, __LINE__, CUEMU_SHFL_DOWN, m, v, d, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32)
#define __shfl_xor_sync(m, v, x, ...) cuemu_shfl(__FILE__, __LINE__, CUEMU_SHFL_XOR, m, v, x, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 32)
#define __ballot_sync(m, p) ((unsigned)cuemu_warp_op(__FILE__, __LINE__, CUEMU_BALLOT, m, (p) != 0, 0, 32))
#define __any_sync(m, p) ((int)cuemu_warp_op(__FILE__, __LINE__, CUEMU_ANY, m, (p) != 0, 0, 32))
#define __all_sync(m, p) ((int)cuemu_warp_op(__FILE__, __LINE__, CUEMU_ALL, m, (p) != 0, 0, 32))
extern "C" unsigned cuemu_activemask(void);
#define __activemask() cuemu_activemask()

/* Dynamic shared memory of the running launch (cu2cpp turns
 * `extern __shared__ T name[];` into `T *name = (T *)cuemu_dynamic_smem();`). */
extern "C" void *cuemu_dynamic_smem(void);

/* ---------------------------------------------------------------------------
 * Atomics: fibers never run at the same time, so a plain read-modify-write is
 * atomic (and a missing atomic is invisible: see tests/cuemu/README.md). */

template <typename T>
static inline T atomicAdd(T *p, T v)
{
	T old = *p;
	*p = old + v;
	return old;
}
template <typename T>
static inline T atomicSub(T *p, T v)
{
	T old = *p;
	*p = old - v;
	return old;
}
template <typename T>
static inline T atomicExch(T *p, T v)
{
	T old = *p;
	*p = v;
	return old;
}
template <typename T>
static inline T atomicMax(T *p, T v)
{
	T old = *p;
	*p = old > v ? old : v;
	return old;
}
template <typename T>
static inline T atomicMin(T *p, T v)
{
	T old = *p;
	*p = old < v ? old : v;
	return old;
}
template <typename T>
static inline T atomicCAS(T *p, T cmp, T v)
{
	T old = *p;
	*p = old == cmp ? v : old;
	return old;
}

/* ---------------------------------------------------------------------------
 * Device math and bit casts (host libm: see tests/cuemu/README.md) */

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
#define __expf(x) expf(x)
#define __logf(x) logf(x)
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline unsigned __float_as_uint(float f) { unsigned u; memcpy(&u, &f, 4); return u; }
static inline float __uint_as_float(unsigned u) { float f; memcpy(&f, &u, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline long long __double_as_longlong(double d) { long long i; memcpy(&i, &d, 8); return i; }
static inline double __longlong_as_double(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
template <typename T>
static inline T __ldg(const T *p) { return *p; }

static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* ---------------------------------------------------------------------------
 * Runtime API */

typedef struct cuemu_stream *cudaStream_t;
enum cudaFuncAttribute {
	cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
	cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

extern "C" cudaError_t cuemu_cudaFuncSetAttribute(const void *func, int attr, int value, const char *file,
                                                 int line);
template <typename K>
static inline cudaError_t cuemu_func_set_attribute(K *kernel, cudaFuncAttribute attr, int value,
                                                   const char *file, int line)
{
	return cuemu_cudaFuncSetAttribute(reinterpret_cast<const void *>(kernel), (int)attr, value, file, line);
}
#define cudaFuncSetAttribute(k, a, v) cuemu_func_set_attribute(k, a, v, __FILE__, __LINE__)
#define cudaGetLastError() cuemu_cudaGetLastError()
#define cudaPeekAtLastError() cuemu_cudaPeekAtLastError()
#define cudaGetErrorString(e) cuemu_cudaGetErrorString(e)
#define cudaMemsetAsync(p, v, n, ...) cuemu_cudaMemsetAsync(p, v, n, __FILE__, __LINE__)
#define cudaMemset(p, v, n) cuemu_cudaMemsetAsync(p, v, n, __FILE__, __LINE__)
#define cudaMemset2DAsync(p, pitch, v, w, h, ...) cuemu_cudaMemset2DAsync(p, pitch, v, w, h, __FILE__, __LINE__)
#define cudaMemcpyAsync(d, s, n, k, ...) cuemu_cudaMemcpyAsync(d, s, n, __FILE__, __LINE__)
#define cudaStreamSynchronize(s) cudaSuccess
#define cudaDeviceSynchronize() cudaSuccess

/* ---------------------------------------------------------------------------
 * StarPU's CUDA helpers (starpu_cuda.h declares them only with the CUDA
 * headers, which the harness never includes) */

#define starpu_cuda_get_local_stream() ((cudaStream_t)cuemu_stream())
#define starpu_cublas_get_local_handle() cuemu_cublas_handle()
#define STARPU_CUDA_REPORT_ERROR(status) cuemu_report_status("CUDA", cuemu_cudaGetErrorString(status), __FILE__, __LINE__)
#define STARPU_CUBLAS_REPORT_ERROR(status) cuemu_report_status("cuBLAS", cuemu_cublas_status_string(status), __FILE__, __LINE__)

/* ---------------------------------------------------------------------------
 * Launches: cu2cpp turns `k<<<grid, block[, smem[, stream]]>>>(args)` into
 * `cuemu_launcher(__FILE__, __LINE__, "k", grid, block[, smem[, stream]]).bind(k)(args)`. */

template <typename... P>
struct cuemu_bound {
	struct cuemu_launch_cfg cfg;
	void (*kernel)(P...);

	/* The arguments convert to the kernel's parameter types here, as in a
	 * call; each fiber then calls the kernel with its own copies. */
	void operator()(P... args)
	{
		cfg.param_bytes = (sizeof(P) + ... + (size_t)0);
		auto body = [&]() { kernel(args...); };
		cuemu_launch(&cfg, reinterpret_cast<const void *>(kernel), &cuemu_bound::run<decltype(body)>, &body);
	}

	template <typename B>
	static void run(void *body)
	{
		(*static_cast<B *>(body))();
	}
};

struct cuemu_launcher {
	struct cuemu_launch_cfg cfg;
	cuemu_launcher(const char *file, int line, const char *name, dim3 grid, dim3 block, size_t smem = 0,
	               cudaStream_t stream = 0)
	{
		cfg.file = file;
		cfg.line = line;
		cfg.name = name;
		cfg.grid[0] = grid.x; cfg.grid[1] = grid.y; cfg.grid[2] = grid.z;
		cfg.block[0] = block.x; cfg.block[1] = block.y; cfg.block[2] = block.z;
		cfg.smem = smem;
		cfg.param_bytes = 0;
		(void)stream;
	}
	template <typename... P>
	cuemu_bound<P...> bind(void (*kernel)(P...))
	{
		return cuemu_bound<P...>{ cfg, kernel };
	}
};

/* ---------------------------------------------------------------------------
 * cuBLAS (checked as cuBLAS documents its arguments, computed by CBLAS) */

typedef struct cuemu_cublas *cublasHandle_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;

extern "C" cublasStatus_t cuemu_cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                            int m, int n, int k, const float *alpha, const float *A, int lda,
                                            const float *B, int ldb, const float *beta, float *C, int ldc,
                                            const char *file, int line);
#define cublasSgemm(h, ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc) \
	cuemu_cublasSgemm(h, ta, tb, m, n, k, al, A, lda, B, ldb, be, C, ldc, __FILE__, __LINE__)
extern "C" cublasHandle_t cuemu_cublas_handle(void);

/* cublasGemmEx for float32 and bf16 storage (values as in the CUDA headers),
 * CUBLAS_COMPUTE_32F only: operands widened to float32, cublasSgemm's
 * checks and product, C rounded to nearest even when it is bf16. */
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68 } cublasComputeType_t;
typedef enum { CUBLAS_GEMM_DEFAULT = -1 } cublasGemmAlgo_t;
extern "C" cublasStatus_t cuemu_cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb,
                                             int m, int n, int k, const void *alpha, const void *A,
                                             cudaDataType at, int lda, const void *B, cudaDataType bt, int ldb,
                                             const void *beta, void *C, cudaDataType ct, int ldc,
                                             cublasComputeType_t compute, cublasGemmAlgo_t algo,
                                             const char *file, int line);
#define cublasGemmEx(h, ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, C, ct, ldc, ctype, algo) \
	cuemu_cublasGemmEx(h, ta, tb, m, n, k, al, A, at, lda, B, bt, ldb, be, C, ct, ldc, ctype, algo, \
	                   __FILE__, __LINE__)

/* Stream-ordered allocation: a plain malloc and free (launches run at once). */
extern "C" cudaError_t cuemu_cudaMallocAsync(void **p, size_t n, const char *file, int line);
extern "C" cudaError_t cuemu_cudaFreeAsync(void *p);
#define cudaMallocAsync(p, n, ...) cuemu_cudaMallocAsync((void **)(p), n, __FILE__, __LINE__)
#define cudaFreeAsync(p, ...) cuemu_cudaFreeAsync(p)

#endif
