/* test_proj_codelets_cuda.c - test_proj_codelets on a CUDA worker alone; skips (77) without one. */
#define ON_CUDA 1
#include "test_proj_codelets.c"
