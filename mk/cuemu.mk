# cuemu: the CUDA emulation harness (tests/cuemu, see Makefile.am).
# Every file of CUDA_SOURCES is also rewritten by tests/cuemu/cu2cpp and
# compiled as host C++ against tests/cuemu/cuemu.h (no CUDA toolkit needed);
# tests/test_cuemu runs each CUDA entry point against the codelet's CPU
# function under three thread schedules.  A new .cu file needs no line
# here: its CUDA_SOURCES line brings it in; its cases go in tests/test_cuemu.c.
CUEMU_OBJECTS = $(CUDA_SOURCES:.cu=.cuemu.o) tests/cuemu/selftest.cuemu.o \
	tests/cuemu/mut_barrier.cuemu.o tests/cuemu/mut_smem.cuemu.o tests/cuemu/mut_ld.cuemu.o
CUEMU_CPPFLAGS = -I$(top_srcdir)/tests/cuemu/include -I$(top_srcdir)/tests/cuemu -I$(top_srcdir)/include \
	-I$(top_srcdir)/codelets -I$(top_builddir) $(STARPU_CFLAGS) \
	-DSTARPU_USE_CUDA=1 -DSTARPU_DONT_INCLUDE_CUDA_HEADERS
# LSPO_CFLAGS without its -std (warnings, -Werror, sanitizers); kernels use
# unsigned threadIdx against ints and #pragma unroll, as CUDA code does.
CUEMU_CXXFLAGS = -std=c++17 -O2 $(filter-out -std=%,$(LSPO_CFLAGS)) -Wno-sign-compare -Wno-unknown-pragmas

# The entry points of all the .cu files, renamed cuemu_<f> (rewritten only
# when the list changes, so editing a kernel recompiles that kernel alone).
CUEMU_NAMES = tests/cuemu/cuemu_names.h
$(CUEMU_NAMES): $(CUDA_SOURCES) $(top_srcdir)/tests/cuemu/cu2cpp
	$(AM_V_GEN)mkdir -p $(@D) && \
	$(SHELL) $(top_srcdir)/tests/cuemu/cu2cpp --names $@.tmp $(addprefix $(top_srcdir)/,$(CUDA_SOURCES)) && \
	if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi
%.cuemu.cpp: %.cu $(top_srcdir)/tests/cuemu/cu2cpp
	$(AM_V_GEN)mkdir -p $(@D) && $(SHELL) $(top_srcdir)/tests/cuemu/cu2cpp cuemu_ $< $@ $(CUEMU_NAMES)
%.cuemu.o: %.cuemu.cpp $(CUEMU_NAMES) $(top_srcdir)/tests/cuemu/cuemu.h $(top_srcdir)/tests/cuemu/cuemu_api.h
	$(AM_V_CXX)$(CXX) $(CUEMU_CXXFLAGS) $(CUEMU_CPPFLAGS) -I$(top_builddir)/tests/cuemu -include cuemu.h -c $< -o $@
$(CUEMU_OBJECTS): $(wildcard $(top_srcdir)/codelets/*.h $(top_srcdir)/codelets/*.cuh)

# The self-test's mutants: copies of real kernels with one bug each.  The
# build stops when a mutation no longer applies to its kernel.
tests/cuemu/mut_%.cuemu.cpp: tests/cuemu/mut_%.cu $(top_srcdir)/tests/cuemu/cu2cpp
	$(AM_V_GEN)$(SHELL) $(top_srcdir)/tests/cuemu/cu2cpp cuemu_mut_$*_ $< $@ $(CUEMU_NAMES)
CUEMU_MUTATE = mkdir -p $(@D) && sed -e "$$mutation" $< > $@.tmp && \
	if cmp -s $< $@.tmp; then echo "$<: the self-test's mutation $@ no longer applies" >&2; \
	  rm -f $@.tmp; exit 1; fi && mv $@.tmp $@
tests/cuemu/mut_barrier.cu: $(top_srcdir)/codelets/gradnorm.cu
	$(AM_V_GEN)mutation='/sh\[threadIdx.x\] += sh\[threadIdx.x + s\];/{n;s/__syncthreads();/\/* barrier removed *\//;}'; \
	$(CUEMU_MUTATE)
tests/cuemu/mut_smem.cu: $(top_srcdir)/codelets/attention.cu
	$(AM_V_GEN)mutation='s/\(size_t smem = sizeof(float) \* (2 \* ATT_TILE \* ldq + 2 \* ATT_TILE \* hs\));/\1 - 1);/'; \
	$(CUEMU_MUTATE)
tests/cuemu/mut_ld.cu: $(top_srcdir)/codelets/matmul.cu
	$(AM_V_GEN)mutation='s/lspo_mat_ld(B), lspo_mat_ptr(A), lspo_mat_ld(A)/lspo_mat_ld(A), lspo_mat_ptr(A), lspo_mat_ld(B)/'; \
	$(CUEMU_MUTATE)

check_PROGRAMS += tests/test_cuemu
TESTS += tests/test_cuemu
tests_test_cuemu_SOURCES = tests/test_cuemu.c tests/cuemu/cuemu.cc tests/cuemu/cuemu.h tests/cuemu/cuemu_api.h
tests_test_cuemu_CXXFLAGS = -std=c++17 $(filter-out -std=%,$(LSPO_CFLAGS))
tests_test_cuemu_LDADD = $(CUEMU_OBJECTS) $(LDADD)
tests_test_cuemu_DEPENDENCIES = $(CUEMU_OBJECTS) liblspo-internal.la
EXTRA_DIST += tests/cuemu/README.md tests/cuemu/cu2cpp tests/cuemu/selftest.cu tests/cuemu/include/cublas_v2.h \
	tests/cuemu/include/cuda_runtime.h
CLEANFILES += $(CUEMU_OBJECTS) $(CUEMU_OBJECTS:.o=.cpp) $(CUEMU_NAMES) tests/cuemu/mut_*.cu
# Keep the rewritten sources (for reading a report against them).
.PRECIOUS: %.cuemu.cpp

# nvcc's registers and shared memory for every kernel (scripts/gpu-bundle
# sets them against the launch sizes the emulated tests log).
.PHONY: cuda-resource-usage
cuda-resource-usage:
	@for f in $(CUDA_SOURCES); do \
	  $(NVCC_COMPILE) --resource-usage -c $(top_srcdir)/$$f -o /dev/null 2>&1 || exit 1; done
