/* test_bf16_cuda.c - test_bf16 with the codelets on a CUDA worker alone and
 * the models on CPU and CUDA workers; skips (77) without a GPU. */
#define ON_CUDA 1
#include "test_bf16.c"
