/* test_llama_ops_cuda.c - test_llama_ops on a CUDA worker alone, every
 * result also compared with the CPU kernel called directly; skips (77)
 * without a GPU. */
#define ON_CUDA 1
#include "test_llama_ops.c"
