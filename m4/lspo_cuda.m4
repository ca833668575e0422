# LSPO_CHECK_CUDA: find nvcc, the CUDA runtime and cuBLAS.
#   --with-cuda[=DIR]   use CUDA (auto-detected when nvcc is found)
#   --without-cuda      force a CPU-only build
#   --with-cuda-arch=L  space-separated SM list (default "80 90": a fat binary,
#                       with PTX of the highest arch for later GPUs)
# Sets: lspo_have_cuda (yes/no), NVCC, NVCCFLAGS, CUDA_CFLAGS, CUDA_LIBS,
#       CUDA_VERSION, CUDA_ARCHS, NVCC_GENCODE.
AC_DEFUN([LSPO_CHECK_CUDA], [
  AC_ARG_WITH([cuda],
    [AS_HELP_STRING([--with-cuda@<:@=DIR@:>@], [CUDA toolkit directory (default: auto-detect from nvcc)])],
    [], [with_cuda=auto])
  AC_ARG_WITH([cuda-arch],
    [AS_HELP_STRING([--with-cuda-arch=LIST], [SM versions to build for (default: "80 90")])],
    [CUDA_ARCHS=$withval], [CUDA_ARCHS="80 90"])
  AC_ARG_VAR([NVCC], [CUDA compiler])
  AC_ARG_VAR([NVCCFLAGS], [extra flags for nvcc])

  lspo_have_cuda=no
  CUDA_VERSION=none
  AS_IF([test "x$with_cuda" != xno], [
    AS_CASE([$with_cuda],
      [yes|auto], [cuda_path="$PATH:/usr/local/cuda/bin"],
      [cuda_path="$with_cuda/bin"])
    AS_IF([test -z "$NVCC"], [AC_PATH_PROG([NVCC], [nvcc], [], [$cuda_path])])
    AS_IF([test -n "$NVCC"], [
      # nvcc may be a wrapper outside the toolkit (/usr/local/bin/nvcc): ask it
      # for its toolkit root (TOP in its dry run) instead of trusting its path.
      cuda_home=`"$NVCC" --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | sed -n 1p`
      AS_IF([test -z "$cuda_home"], [cuda_home=`dirname "$NVCC"`/..])
      cuda_home=`cd "$cuda_home" && pwd -P`
      AS_IF([test -d "$cuda_home/targets/x86_64-linux/lib"],
            [cuda_libdir="$cuda_home/targets/x86_64-linux/lib"], [cuda_libdir="$cuda_home/lib64"])
      CUDA_CFLAGS="-I$cuda_home/include"
      CUDA_LIBS="-L$cuda_libdir -Wl,-rpath,$cuda_libdir -lcublas -lcudart -lstdc++"
      lspo_save_CPPFLAGS=$CPPFLAGS; lspo_save_LIBS=$LIBS
      CPPFLAGS="$CPPFLAGS $CUDA_CFLAGS"; LIBS="$CUDA_LIBS $LIBS"
      AC_MSG_CHECKING([for the CUDA runtime and cuBLAS])
      AC_LINK_IFELSE([AC_LANG_PROGRAM([[#include <cuda_runtime.h>
#include <cublas_v2.h>]], [[int n; cublasHandle_t h; cudaGetDeviceCount(&n); cublasCreate(&h);]])],
        [lspo_have_cuda=yes], [lspo_have_cuda=no])
      AC_MSG_RESULT([$lspo_have_cuda])
      CPPFLAGS=$lspo_save_CPPFLAGS; LIBS=$lspo_save_LIBS
      CUDA_VERSION=`"$NVCC" --version | sed -n 's/.*release \([[0-9.]]*\).*/\1/p'`
    ])
    AS_IF([test "x$with_cuda" != xauto && test "x$lspo_have_cuda" != xyes],
          [AC_MSG_ERROR([CUDA was requested but nvcc, the CUDA runtime or cuBLAS was not found; use --with-cuda=DIR or --without-cuda])])
  ])
  NVCC_GENCODE=""
  lspo_top_arch=""
  for a in $CUDA_ARCHS; do
    NVCC_GENCODE="$NVCC_GENCODE -gencode arch=compute_$a,code=sm_$a"
    lspo_top_arch=$a
  done
  AS_IF([test -n "$lspo_top_arch"],
        [NVCC_GENCODE="$NVCC_GENCODE -gencode arch=compute_$lspo_top_arch,code=compute_$lspo_top_arch"])
  AC_SUBST([CUDA_CFLAGS])
  AC_SUBST([CUDA_LIBS])
  AC_SUBST([NVCC_GENCODE])
  AC_SUBST([CUDA_VERSION])
  AC_SUBST([CUDA_ARCHS])
])
