/* test_ops_b_cuda.c - test_ops_b on a CUDA worker alone, every result also
 * compared with the CPU kernel called directly; skips (77) without a GPU. */
#define ON_CUDA 1
#include "test_ops_b.c"
