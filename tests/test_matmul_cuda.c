/* test_matmul_cuda.c - test_matmul on a CUDA worker alone; skips (77) without one. */
#define ON_CUDA 1
#include "test_matmul.c"
