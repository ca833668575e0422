/* cublas_v2.h for the CUDA emulator: cuBLAS comes from cuemu.h (already
 * included by the harness's compile line); no CUDA toolkit header is used. */
#include "cuemu.h"
