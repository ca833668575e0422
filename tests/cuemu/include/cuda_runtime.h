/* cuda_runtime.h for the CUDA emulator: the runtime comes from cuemu.h
 * (already included by the harness's compile line); no CUDA toolkit header
 * is used. */
#include "cuemu.h"
